"""The dbt project next door in Python: its marts (and what they read) as tasks, and a
dashboard refreshed whenever dbt rebuilds ``shop.customer_revenue`` (an asset).

    durable up --workflows examples/dbt_shop/workflows
    durable run dbt_shop_marts --workflows examples/dbt_shop/workflows --here
"""

from __future__ import annotations

from durable import TaskContext, Workflow

wf = Workflow("dbt_shop_marts", description="The shop's marts and what they read, by dbt.")

# relative paths are relative to this file; "+tag:mart": the marts and their ancestors
shop = wf.dbt("..", select=["+tag:mart"], mode="watched", retries=1)


@wf.task(after=[shop["daily_revenue"]])
def announce(ctx: TaskContext) -> str:
    """Runs once daily_revenue and its tests are done (not waiting for the rest)."""
    ctx.log.info("daily revenue rebuilt")
    return "daily revenue rebuilt"


dashboard = Workflow("shop_dashboard", on_assets=["shop.customer_revenue"])
dashboard.sql(
    "refresh",
    "SELECT count(*) AS customers, sum(revenue_eur) AS revenue_eur FROM shop.customer_revenue",
)

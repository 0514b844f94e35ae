"""The daily sales pipeline: the example `durable run daily_sales --here` runs.

    prepare ─────────────────────────────┐
    fetch_orders ──┐                      ├─> load ──┐
    fetch_refunds ─┴─> transform ─────────┘          ├─> report
                           └─> check_volume ─> alert ┘   (switch: alert only on a big day)

Orders and refunds are generated from the date (no network needed), so a run is
repeatable; `load` writes into the table `sales_daily` of durable's own database in the
same transaction as its completion event, and upserts the date's rows, so running a
date again never duplicates it.
"""

from __future__ import annotations

import random
from typing import Any

from durable import Param, TaskContext, Workflow

wf = Workflow(
    "daily_sales",
    params={
        "date": Param("date", required=True, description="the day to process, YYYY-MM-DD"),
        "regions": Param("json", default=["eu", "us", "apac"]),
        "alert_over_eur": Param("float", default=30_000.0),
    },
    max_active_runs=4,
    description="Daily revenue per region, loaded idempotently per date.",
)

prepare = wf.sql(
    "prepare",
    """CREATE TABLE IF NOT EXISTS sales_daily (
           day date NOT NULL, region text NOT NULL, orders int NOT NULL,
           revenue_eur numeric NOT NULL, refunds_eur numeric NOT NULL,
           loaded_by text NOT NULL, PRIMARY KEY (day, region))""",
)


def _rng(day: str, salt: str) -> random.Random:
    return random.Random(f"{day}:{salt}")  # the same date always gives the same data


@wf.task(retries=3, timeout=60)
async def fetch_orders(ctx: TaskContext, date: str, regions: list[str]) -> list[dict[str, Any]]:
    """Orders of the day (a stand-in for an API or a bucket of files)."""
    rng = _rng(date, "orders")
    orders = [
        {"region": rng.choice(regions), "amount_eur": round(rng.uniform(5, 400), 2)}
        for _ in range(rng.randint(150, 250))
    ]
    ctx.log.info("fetched %d orders for %s", len(orders), date)
    return orders


@wf.task(retries=3, timeout=60)
def fetch_refunds(ctx: TaskContext, date: str, regions: list[str]) -> list[dict[str, Any]]:
    """Refunds of the day; a plain function runs in a thread, off the event loop."""
    rng = _rng(date, "refunds")
    refunds = [
        {"region": rng.choice(regions), "amount_eur": round(rng.uniform(5, 200), 2)}
        for _ in range(rng.randint(5, 20))
    ]
    ctx.log.info("fetched %d refunds", len(refunds))
    return refunds


@wf.task(after=[fetch_orders, fetch_refunds])
def transform(
    ctx: TaskContext, fetch_orders: list[dict[str, Any]], fetch_refunds: list[dict[str, Any]]
) -> dict[str, Any]:
    """Revenue and refunds per region."""
    by_region: dict[str, dict[str, Any]] = {}
    for o in fetch_orders:
        r = by_region.setdefault(
            o["region"],
            {"region": o["region"], "orders": 0, "revenue_eur": 0.0, "refunds_eur": 0.0},
        )
        r["orders"] += 1
        r["revenue_eur"] = round(r["revenue_eur"] + o["amount_eur"], 2)
    for f in fetch_refunds:
        if f["region"] in by_region:
            r = by_region[f["region"]]
            r["refunds_eur"] = round(r["refunds_eur"] + f["amount_eur"], 2)
    rows = sorted(by_region.values(), key=lambda r: r["region"])
    total = round(sum(r["revenue_eur"] - r["refunds_eur"] for r in rows), 2)
    ctx.log.info("net revenue %.2f EUR over %d regions", total, len(rows))
    return {"rows": rows, "net_eur": total}


load = wf.sql(
    "load",
    """INSERT INTO sales_daily (day, region, orders, revenue_eur, refunds_eur, loaded_by)
       SELECT $1::date, r.region, r.orders, r.revenue_eur, r.refunds_eur, $3
       FROM jsonb_to_recordset($2::jsonb)
            AS r(region text, orders int, revenue_eur numeric, refunds_eur numeric)
       ON CONFLICT (day, region) DO UPDATE SET
           orders = excluded.orders, revenue_eur = excluded.revenue_eur,
           refunds_eur = excluded.refunds_eur, loaded_by = excluded.loaded_by""",
    args=["${params.date}", "${upstream.transform.rows}", "${idempotency_key}"],
    after=[prepare, transform],
    transactional=True,  # rows and completion commit together: loaded exactly once
)


alert = wf.shell(
    "alert",
    'echo "big day ${params.date}: ${upstream.transform.net_eur} EUR net"',
    after=[transform],
)


@wf.switch(after=[transform], cases={"high": [alert], "normal": []})
def check_volume(transform: dict[str, Any], alert_over_eur: float) -> str:
    return "high" if transform["net_eur"] > alert_over_eur else "normal"


@wf.task(after=[transform, load, alert], trigger_rule="none_failed")
def report(ctx: TaskContext, transform: dict[str, Any], load: dict[str, Any]) -> dict[str, Any]:
    """The day's summary (what a data team would mail)."""
    ctx.log.info("report for %s: %s", ctx.params["date"], load["status"])
    return {
        "date": ctx.params["date"],
        "net_eur": transform["net_eur"],
        "regions": len(transform["rows"]),
        "big_day": ctx.upstream.get("alert") is not None,
    }

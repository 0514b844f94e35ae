"""Data-aware triggers: a task's update of an asset runs the workflows depending on it."""

from __future__ import annotations

import asyncio
from pathlib import Path

from click.testing import CliRunner

from durable.application.runs import create_run
from durable.cli import main
from durable.runtime.triggers.assets import AssetService
from durable.store import PostgresEventStore, RunFilter
from tests.executing import running_executor, wait_for_run

PRODUCER = """
from durable import Workflow
produce = Workflow("load_sales")
produce.sql("load", "SELECT 1", produces=["warehouse.sales_daily"])
produce.shell("log", "true", after=["load"])
consume = Workflow("refresh_dashboard", on_assets=["warehouse.sales_daily"])
consume.shell("refresh", "true")
"""


async def test_an_asset_update_runs_its_consumers_once(
    pg_store: PostgresEventStore, database_url: str, tmp_path: Path
) -> None:
    (tmp_path / "flows.py").write_text(PRODUCER)
    from durable.workflows import load_workflows

    registry = load_workflows(tmp_path / "flows.py")
    producer = registry.get("load_sales").spec
    async with running_executor(pg_store, registry):
        first, _ = await create_run(pg_store, producer, {})
        await wait_for_run(pg_store, first)
        service = AssetService(pg_store, registry)
        await service.catch_up()
        await service.catch_up()  # reading again starts nothing new
        second, _ = await create_run(pg_store, producer, {})
        await wait_for_run(pg_store, second)
        again = AssetService(pg_store, registry)  # a restart: continues from its position
        await again.catch_up()
        async with pg_store._pool.acquire() as conn:  # and a full re-read from the start
            await conn.execute("UPDATE durable.log_positions SET position = 0")
        await again.catch_up()
        consumers = await pg_store.list_runs(RunFilter(workflow="refresh_dashboard"))
        for run in consumers:
            await wait_for_run(pg_store, run.run_id)
    assert len(consumers) == 2  # one per update, none doubled
    assert {r.trigger_kind for r in consumers} == {"asset"}
    out = await asyncio.to_thread(
        lambda: (
            CliRunner()
            .invoke(main, ["--database-url", database_url, "assets", "--workflows", str(tmp_path)])
            .output
        )
    )
    assert out.startswith("warehouse.sales_daily  updated ")
    assert f"by load_sales.load in run {second}; triggers: refresh_dashboard" in out

"""Backfills: one run per interval, idempotent, throttled, pausable, cancellable."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from durable import Param, Schedule, TaskContext, Workflow
from durable.application.backfills import (
    backfill_progress,
    cancel_backfill,
    load_backfill,
    request_backfill,
)
from durable.application.runs import create_run, register_versions
from durable.cli import main
from durable.runtime.scheduler import Scheduler
from durable.store import PostgresEventStore, RunFilter
from tests.executing import registry_of, running_executor, wait_for_run
from tests.signs import claim_rounds_pass, eventually

DAILY = Schedule(cron="0 2 * * *", timezone="UTC", catchup="all")


def nightly(behaviour: dict[str, Any]) -> Workflow:
    wf = Workflow("nightly", params={"date": Param("date", required=True)}, schedule=DAILY)

    @wf.task(retries=0)
    async def load(ctx: TaskContext, date: str) -> str:
        behaviour["active"] = behaviour.get("active", 0) + 1
        behaviour["peak"] = max(behaviour.get("peak", 0), behaviour["active"])
        try:
            await asyncio.sleep(behaviour.get("sleep", 0))
            if date in behaviour.get("fail", set()):
                raise ValueError(f"no data for {date}")
            behaviour.setdefault("ran", []).append(date)
            return date
        finally:
            behaviour["active"] -= 1

    return wf


async def _all_done(store: PostgresEventStore, backfill_id: str, total: int) -> Any:
    state = await load_backfill(store, backfill_id)
    for _ in range(400):
        progress = await backfill_progress(store, state)
        if sum(progress[s] for s in ("succeeded", "failed", "cancelled")) >= total:
            return progress
        await asyncio.sleep(0.05)
    raise AssertionError(f"backfill not done: {progress}")


async def _running(store: PostgresEventStore, n: int) -> None:
    async def started() -> bool:
        runs = await store.list_runs(RunFilter(workflow="nightly"))
        return sum(r.status == "running" for r in runs) >= n

    await eventually(started, f"{n} of the backfill's runs are running")


async def test_backfill_is_idempotent_and_reprocesses_failures(
    pg_store: PostgresEventStore, database_url: str, tmp_path: Path
) -> None:
    behaviour: dict[str, Any] = {"fail": {"2026-11-03"}}
    wf = nightly(behaviour)
    registry = registry_of(wf)
    start, end = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 6, tzinfo=UTC)
    async with running_executor(pg_store, registry):
        first, plan = await request_backfill(pg_store, wf.spec(), start, end)
        assert plan.counts() == {"create": 5}
        progress = await _all_done(pg_store, first, 5)
        assert progress == {"succeeded": 4, "failed": 1}
        assert sorted(behaviour["ran"]) == ["2026-11-01", "2026-11-02", "2026-11-04", "2026-11-05"]

        # the same intervals again: nothing new
        _, plan = await request_backfill(pg_store, wf.spec(), start, end)
        assert plan.counts() == {"skip": 5}
        # the schedule goes on after the backfilled intervals, without redoing any of them
        await register_versions(pg_store, registry)
        scheduler = Scheduler(
            pg_store, registry, clock=lambda: datetime(2026, 11, 7, 3, tzinfo=UTC)
        )
        created = await scheduler.tick()
        assert len(created) == 1
        assert (await wait_for_run(pg_store, created[0])).params == {"date": "2026-11-06"}

        behaviour["fail"] = set()
        behaviour["ran"] = []
        third, plan = await request_backfill(pg_store, wf.spec(), start, end, reprocess="failed")
        assert plan.counts() == {"skip": 4, "rerun": 1}
        progress = await _all_done(pg_store, third, 5)
        for _ in range(100):
            if (await backfill_progress(pg_store, await load_backfill(pg_store, third)))[
                "succeeded"
            ] == 5:
                break
            await asyncio.sleep(0.05)
    assert behaviour["ran"] == ["2026-11-03"]  # only the failed interval ran again
    runs = {r.params["date"]: r for r in await pg_store.list_runs(RunFilter(workflow="nightly"))}
    assert runs["2026-11-03"].status == "succeeded"
    assert len(runs) == 6  # reprocessing reran in place: still one run per interval


async def test_max_parallel_cancel_and_no_stuck_runs(
    pg_store: PostgresEventStore,
) -> None:
    behaviour: dict[str, Any] = {"sleep": 1.0}
    wf = nightly(behaviour)
    async with running_executor(pg_store, registry_of(wf)) as executor:
        backfill_id, _ = await request_backfill(
            pg_store,
            wf.spec(),
            datetime(2026, 10, 1, tzinfo=UTC),
            datetime(2026, 10, 11, tzinfo=UTC),
            max_parallel=2,
        )
        # two runs are running, and the executor went on claiming: the eight others had
        # their chance to start and wait for a place
        await _running(pg_store, 2)
        await claim_rounds_pass(executor)
        cancelled = await cancel_backfill(pg_store, backfill_id, "ops")
        progress = await _all_done(pg_store, backfill_id, 10)
    assert behaviour["peak"] == 2
    # this call, or an executor that saw the backfill cancelled first, cancelled the rest
    assert 1 <= cancelled <= progress["cancelled"]
    assert progress["cancelled"] >= 8 and sum(progress.values()) == 10
    assert set(progress) <= {"succeeded", "cancelled"}
    runs = await pg_store.list_runs(RunFilter(workflow="nightly"))
    assert all(r.status in ("succeeded", "cancelled") for r in runs)  # none stuck


async def test_live_runs_go_before_backfill_runs(pg_store: PostgresEventStore) -> None:
    behaviour: dict[str, Any] = {"sleep": 0.2}
    wf = nightly(behaviour)
    async with running_executor(pg_store, registry_of(wf), max_runs=1):
        await request_backfill(
            pg_store, wf.spec(), datetime(2026, 9, 1, tzinfo=UTC), datetime(2026, 9, 6, tzinfo=UTC)
        )
        await _running(pg_store, 1)  # the executor's one place is taken by the backfill
        live, _ = await create_run(pg_store, wf.spec(), {"date": "2026-11-22"})
        await wait_for_run(pg_store, live)
        runs = await pg_store.list_runs(RunFilter(workflow="nightly"))
        backfill_runs = [r for r in runs if r.trigger_kind == "backfill"]
        unfinished = [r for r in backfill_runs if r.status != "succeeded"]
    # the live run did not wait for the 5-run backfill: most of it was still to run
    assert len(unfinished) >= 3


def test_backfill_cli_dry_run_and_listing(database_url: str, tmp_path: Path) -> None:
    (tmp_path / "nightly.yaml").write_text(
        "workflow: nightly\nparams:\n  date: {type: date, required: true}\n"
        "schedule: {cron: '0 2 * * *', timezone: Europe/Paris}\n"
        "tasks:\n  load:\n    shell: echo ${params.date}\n"
    )
    runner = CliRunner()

    def cli(*args: str) -> Any:
        return runner.invoke(main, ["--database-url", database_url, *args])

    dry = cli(
        "backfill",
        "nightly",
        "--workflows",
        str(tmp_path),
        "--start",
        "2026-11-01",
        "--end",
        "2026-11-04",
        "--dry-run",
    )
    assert dry.exit_code == 0, dry.output
    lines = dry.output.splitlines()
    assert lines[0] == "2026-11-01 01:00 → 2026-11-02 01:00  create"  # 02:00 Paris, in UTC
    assert lines[-1] == "3 intervals: 3 create"
    made = cli(
        "backfill",
        "nightly",
        "--workflows",
        str(tmp_path),
        "--start",
        "2026-11-01",
        "--end",
        "2026-11-04",
        "--max-parallel",
        "1",
    )
    assert made.exit_code == 0, made.output
    backfill_id = made.output.split()[1].rstrip(":")
    assert made.output.strip().endswith("3 intervals; 3 create")
    listing = cli("backfills")
    assert backfill_id in listing.output and "nightly" in listing.output
    assert cli("backfills", "pause", backfill_id).output.strip() == f"paused backfill {backfill_id}"
    assert (
        cli("backfills", "resume", backfill_id).output.strip() == f"resumed backfill {backfill_id}"
    )
    out = cli("backfills", "cancel", backfill_id).output.strip()
    assert out == f"cancelled backfill {backfill_id} and 3 unfinished runs"
    bad = cli(
        "backfill",
        "nightly",
        "--workflows",
        str(tmp_path),
        "--start",
        "yesterday",
        "--end",
        "2026-11-04",
    )
    assert bad.exit_code == 2 and "'yesterday' is not a date or time" in bad.output

"""What `durable backfills` says a backfill amounts to: running while runs remain, then
succeeded or failed (with its counts); a repeated identical request is shown as one."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from click.testing import CliRunner

from durable import Param, Schedule, TaskContext, Workflow
from durable.application.backfills import (
    backfill_progress,
    backfill_summaries,
    cancel_backfill,
    load_backfill,
    request_backfill,
)
from durable.cli import main
from durable.core.backfill import (
    CancelBackfill,
    PauseBackfill,
    backfill_outcome,
    backfill_state,
    decide_backfill,
)
from durable.core.events import BackfillRequested
from durable.store import PostgresEventStore
from tests.executing import registry_of, running_executor

DAILY = Schedule(cron="0 2 * * *", timezone="UTC", catchup="all")
START = datetime(2026, 11, 1, tzinfo=UTC)


def _request(intervals: int = 3) -> BackfillRequested:
    return BackfillRequested(
        backfill_id="bf-1",
        workflow="nightly",
        start=START,
        end=datetime(2026, 11, 4, tzinfo=UTC),
        intervals=intervals,
        max_parallel=None,
        reprocess="none",
        by=None,
    )


def test_the_outcome_follows_the_runs() -> None:
    state = backfill_state([_request()])
    assert state is not None
    assert backfill_outcome(state, {}) == "running"
    assert backfill_outcome(state, {"succeeded": 2, "running": 1}) == "running"
    assert backfill_outcome(state, {"succeeded": 3}) == "succeeded"
    assert backfill_outcome(state, {"succeeded": 2, "failed": 1}) == "failed"
    assert backfill_outcome(state, {"succeeded": 2, "cancelled": 1}) == "failed"
    paused = backfill_state([_request(), *decide_backfill(state, PauseBackfill())])
    assert paused is not None
    assert backfill_outcome(paused, {"succeeded": 1, "pending": 2}) == "paused"
    assert backfill_outcome(paused, {"succeeded": 3}) == "succeeded"  # nothing left to pause
    cancelled = backfill_state([_request(), *decide_backfill(state, CancelBackfill())])
    assert cancelled is not None
    assert backfill_outcome(cancelled, {"succeeded": 3}) == "cancelled"


def nightly(fail: set[str], gate: asyncio.Event) -> Workflow:
    wf = Workflow("nightly", params={"date": Param("date", required=True)}, schedule=DAILY)

    @wf.task(retries=0)
    async def load(ctx: TaskContext, date: str) -> str:
        await gate.wait()
        if date in fail:
            raise ValueError(f"no data for {date}")
        return date

    return wf


async def _ended(store: PostgresEventStore, backfill_id: str, total: int) -> None:
    state = await load_backfill(store, backfill_id)
    for _ in range(600):
        progress = await backfill_progress(store, state)
        if sum(progress[s] for s in ("succeeded", "failed", "cancelled")) >= total:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"backfill {backfill_id} not done: {progress}")


def _rows(database_url: str) -> dict[str, list[str]]:
    result = CliRunner().invoke(main, ["--database-url", database_url, "backfills"])
    assert result.exit_code == 0, result.output
    rows = {}
    for line in result.output.splitlines():
        cells = [c.strip() for c in line.split("│")]
        if cells[0].startswith("bf-"):
            rows[cells[0]] = cells
    return rows


def state(row: list[str]) -> str:
    """The state cell of a `durable backfills` row (backfill, workflow, from, to, state,
    then the counts)."""
    return row[4]


def counts(row: list[str]) -> list[str]:
    """intervals, succeeded, failed, running, waiting"""
    return row[5:]


async def test_backfills_show_how_they_ended(
    pg_store: PostgresEventStore, database_url: str
) -> None:
    gate = asyncio.Event()
    wf = nightly({"2026-11-02"}, gate)
    spec = wf.spec()
    registry = registry_of(wf)
    async with running_executor(pg_store, registry):
        first, _ = await request_backfill(pg_store, spec, START, datetime(2026, 11, 4, tzinfo=UTC))
        rows = await asyncio.to_thread(_rows, database_url)
        assert state(rows[first]) == "running"  # its runs wait at the gate
        gate.set()
        await _ended(pg_store, first, 3)
        repeat, plan = await request_backfill(
            pg_store, spec, START, datetime(2026, 11, 4, tzinfo=UTC)
        )
        assert plan.counts() == {"skip": 3}
        fine, _ = await request_backfill(
            pg_store, spec, datetime(2026, 11, 5, tzinfo=UTC), datetime(2026, 11, 7, tzinfo=UTC)
        )
        await _ended(pg_store, fine, 2)
        gate.clear()
        stopped, _ = await request_backfill(
            pg_store, spec, datetime(2026, 11, 8, tzinfo=UTC), datetime(2026, 11, 10, tzinfo=UTC)
        )
        await cancel_backfill(pg_store, stopped, None)
        gate.set()
        await _ended(pg_store, stopped, 2)

    summaries = {s.state.request.backfill_id: s for s in await backfill_summaries(pg_store)}
    assert summaries[first].status == "failed" and summaries[first].repeat_of is None
    assert summaries[repeat].status == "failed" and summaries[repeat].repeat_of == first
    assert summaries[fine].status == "succeeded" and summaries[fine].repeat_of is None
    assert summaries[stopped].status == "cancelled"

    rows = await asyncio.to_thread(_rows, database_url)

    assert state(rows[first]) == "failed"
    assert counts(rows[first]) == ["3", "2", "1", "0", "0"]
    assert state(rows[repeat]) == f"failed (repeats {first})"
    assert counts(rows[repeat]) == ["3", "2", "1", "0", "0"]
    assert state(rows[fine]) == "succeeded"
    assert counts(rows[fine]) == ["2", "2", "0", "0", "0"]
    assert state(rows[stopped]) == "cancelled"

"""A transactional SQL task's completion is stamped when it is recorded, not when its
transaction began: its duration is the time its SQL took."""

from __future__ import annotations

from datetime import timedelta

from durable import Workflow
from durable.store import PostgresEventStore
from tests.executing import run_to_end


async def test_a_transactional_sql_task_records_its_real_duration(
    pg_store: PostgresEventStore,
) -> None:
    wf = Workflow("slow_sql")
    wf.sql("load", "SELECT pg_sleep(1)", transactional=True)
    wf.sql("plain", "SELECT pg_sleep(1)", after=["load"])  # the same, not transactional
    state = await run_to_end(pg_store, wf)
    assert state.status == "succeeded"
    for name in ("load", "plain"):
        task = state.tasks[name]
        assert task.started_at is not None and task.finished_at is not None
        took = task.finished_at - task.started_at
        assert timedelta(seconds=1) <= took < timedelta(seconds=10), (name, took)
    # the run's read model agrees with its log
    row = await pg_store.get_run(state.run_id)
    assert row is not None and row.finished_at is not None
    assert row.finished_at >= state.tasks["load"].finished_at

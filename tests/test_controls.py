"""Cancel, pause, resume; per-workflow run limits; per-run max duration."""

from __future__ import annotations

import asyncio
from pathlib import Path

from click.testing import CliRunner

from durable import Workflow
from durable.application.runs import create_run
from durable.cli import main
from durable.core.events import RunPaused, RunResumed, TaskStarted, run_stream
from durable.core.fold import fold
from durable.store import PostgresEventStore
from tests.executing import registry_of, running_executor, wait_for_run
from tests.processes import alive
from tests.signs import claim_rounds_pass, let_go


async def _until(store: PostgresEventStore, run_id: str, check, timeout: float = 20) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        state = fold(await store.read_stream(run_stream(run_id)))
        if state is not None and check(state):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached")


def _cli(database_url: str, *args: str) -> str:
    result = CliRunner().invoke(main, ["--database-url", database_url, *args])
    assert result.exit_code == 0, result.output
    return result.output


async def test_cancel_stops_a_running_shell_task(
    pg_store: PostgresEventStore, database_url: str, tmp_path: Path
) -> None:
    marker = tmp_path / "pid"
    wf = Workflow("long")
    wf.shell("wait", f"echo $$ > {marker}; sleep 60")
    wf.task(name="never", after=["wait"])(lambda: None)
    async with running_executor(pg_store, registry_of(wf)):
        run_id, _ = await create_run(pg_store, wf.spec(), {})
        await _until(pg_store, run_id, lambda s: s.tasks["wait"].status == "running")
        for _ in range(100):
            if marker.exists() and marker.read_text().strip():
                break
            await asyncio.sleep(0.05)
        out = await asyncio.to_thread(_cli, database_url, "cancel", run_id, "--reason", "wrong day")
        assert out.strip() == f"cancelled run {run_id}"
        state = await wait_for_run(pg_store, run_id)
        pid = int(marker.read_text())
        for _ in range(100):
            if not alive(pid):
                break
            await asyncio.sleep(0.05)
        assert not alive(pid), "the shell kept running after cancel"
    assert state.status == "cancelled" and state.reason == "wrong day"
    assert state.tasks["wait"].status == "cancelled"
    assert state.tasks["never"].status == "cancelled"
    again = await asyncio.to_thread(_cli, database_url, "cancel", run_id)
    assert again.strip() == f"run {run_id} is already cancelled"


async def test_pause_holds_new_tasks_and_resume_continues(
    pg_store: PostgresEventStore, database_url: str
) -> None:
    wf = Workflow("pausable")
    gate = asyncio.Event()
    ran: list[str] = []

    @wf.task
    async def first() -> None:
        ran.append("first")
        await gate.wait()

    @wf.task(after=[first])
    async def second() -> None:
        ran.append("second")

    async with running_executor(pg_store, registry_of(wf)) as executor:
        run_id, _ = await create_run(pg_store, wf.spec(), {})
        await _until(pg_store, run_id, lambda s: s.tasks["first"].status == "running")
        await asyncio.to_thread(
            _cli, database_url, "pause", run_id, "--reason", "warehouse maintenance"
        )
        gate.set()  # the running task finishes while paused...
        await _until(pg_store, run_id, lambda s: s.tasks["first"].status == "succeeded")
        # the executor decided what follows the success and let go of the paused run, and
        # went on claiming: had it wrongly taken the run up again, it had the chance
        await let_go(executor, run_id)
        await claim_rounds_pass(executor)
        state = fold(await pg_store.read_stream(run_stream(run_id)))
        assert state is not None and state.status == "paused"
        assert state.tasks["second"].status == "pending"  # ...but nothing new starts
        assert ran == ["first"]
        await asyncio.to_thread(_cli, database_url, "resume", run_id)
        state = await wait_for_run(pg_store, run_id)
    assert state.status == "succeeded" and ran == ["first", "second"]
    events = [r.event for r in await pg_store.read_stream(run_stream(run_id))]
    paused_at = next(i for i, e in enumerate(events) if isinstance(e, RunPaused))
    resumed_at = next(i for i, e in enumerate(events) if isinstance(e, RunResumed))
    second_start = next(
        i for i, e in enumerate(events) if isinstance(e, TaskStarted) and e.task == "second"
    )
    assert paused_at < resumed_at < second_start


async def test_max_active_runs_queues_extra_runs(pg_store: PostgresEventStore) -> None:
    wf = Workflow("limited", max_active_runs=2)
    active = 0
    peak = 0

    @wf.task
    async def work() -> None:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.3)
        active -= 1

    async with running_executor(pg_store, registry_of(wf), poll_interval=0.1):
        runs = [(await create_run(pg_store, wf.spec(), {}))[0] for _ in range(6)]
        # well under the lease TTL (30 s): a run stalled on an orphaned lease fails this
        states = [await wait_for_run(pg_store, r, timeout=15) for r in runs]
    assert {s.status for s in states} == {"succeeded"}
    assert peak == 2


async def test_max_duration_fails_a_run_that_runs_too_long(pg_store: PostgresEventStore) -> None:
    wf = Workflow("bounded", max_duration=0.5)

    @wf.task(timeout=30)
    async def forever() -> None:
        await asyncio.sleep(30)

    async with running_executor(pg_store, registry_of(wf)):
        run_id, _ = await create_run(pg_store, wf.spec(), {})
        # the executor wakes up for the deadline even while the task is still running
        state = await wait_for_run(pg_store, run_id, timeout=10)
    assert state.status == "failed"
    assert state.reason == "the run exceeded its max_duration of 0.5 s"
    assert state.tasks["forever"].status == "cancelled"

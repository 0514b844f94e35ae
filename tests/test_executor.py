"""The executor on real PostgreSQL: tasks run, outputs flow, failures retry."""

from __future__ import annotations

import asyncio
from typing import Any

from durable import Param, TaskContext, Workflow
from durable.application.runs import create_run
from durable.core.errors import TaskError
from durable.core.events import TaskRetryScheduled, TaskStarted, run_stream
from durable.core.fold import fold
from durable.core.retry import RetryPolicy
from durable.store import PostgresEventStore
from tests.executing import registry_of, run_to_end, running_executor, wait_for_run


async def test_a_dag_runs_with_outputs_passed_downstream(pg_store: PostgresEventStore) -> None:
    wf = Workflow("diamond", params={"n": Param("int", default=3)})
    calls: list[str] = []

    @wf.task
    async def source(ctx: TaskContext) -> dict[str, Any]:
        calls.append("source")
        return {"n": ctx.params["n"]}

    @wf.task(after=[source])
    def double(source: dict[str, Any]) -> int:  # sync: runs in a thread
        calls.append("double")
        return int(source["n"]) * 2

    @wf.task(after=[source])
    async def square(source: dict[str, Any]) -> int:
        calls.append("square")
        return int(source["n"]) ** 2

    @wf.task(after=[double, square])
    async def total(double: int, square: int) -> int:
        calls.append("total")
        return double + square

    state = await run_to_end(pg_store, wf, {"n": 4})
    assert state.status == "succeeded"
    assert state.tasks["total"].output == 8 + 16
    assert sorted(calls) == ["double", "source", "square", "total"]
    assert all(t.executions == 1 for t in state.tasks.values())
    assert state.params == {"n": 4}


async def test_retries_with_backoff_then_success(pg_store: PostgresEventStore) -> None:
    wf = Workflow("flaky")
    attempts: list[int] = []

    @wf.task(retry=RetryPolicy(max_attempts=4, initial_delay=0.1, backoff=3.0, jitter=0.2))
    async def flaky(ctx: TaskContext) -> str:
        attempts.append(ctx.attempt)
        if ctx.attempt < 3:
            raise ConnectionError(f"try {ctx.attempt}")
        return "ok"

    state = await run_to_end(pg_store, wf)
    assert state.status == "succeeded"
    assert state.tasks["flaky"].output == "ok"
    assert attempts == [1, 2, 3]
    records = await pg_store.read_stream(run_stream(state.run_id))
    retries = [r for r in records if isinstance(r.event, TaskRetryScheduled)]
    assert [r.event.attempt for r in retries] == [1, 2]  # type: ignore[attr-defined]
    assert retries[0].event.error.type == "ConnectionError"  # type: ignore[attr-defined]
    assert retries[0].event.error.message == "try 1"  # type: ignore[attr-defined]
    # exponential backoff with jitter: 0.1 s then 0.3 s, each plus at most 20 % (measured
    # from the commit, which comes a moment after the decision: a little slack below)
    delays = [(r.event.retry_at - r.recorded_at).total_seconds() for r in retries]  # type: ignore[attr-defined]
    assert 0.1 - 0.02 <= delays[0] <= 0.12 + 0.01
    assert 0.3 - 0.02 <= delays[1] <= 0.36 + 0.01
    # and the next attempt did not start before its time
    starts = [r for r in records if isinstance(r.event, TaskStarted)]
    for retry, start in zip(retries, starts[1:], strict=True):
        assert start.recorded_at >= retry.event.retry_at  # type: ignore[attr-defined]


async def test_non_retryable_errors_fail_at_once(pg_store: PostgresEventStore) -> None:
    wf = Workflow("strict")
    attempts: list[int] = []

    @wf.task(retries=5)
    async def validate(ctx: TaskContext) -> None:
        attempts.append(ctx.attempt)
        raise TaskError("column 'currency' missing", retryable=False)

    @wf.task(after=[validate])
    async def after_validate() -> None:
        raise AssertionError("must not run")

    state = await run_to_end(pg_store, wf)
    assert state.status == "failed"
    assert attempts == [1]
    assert state.tasks["validate"].error is not None
    assert state.tasks["validate"].error.retryable is False
    assert state.tasks["after_validate"].status == "skipped"
    assert state.reason == "task validate failed"


async def test_a_task_timeout_is_a_failed_attempt(pg_store: PostgresEventStore) -> None:
    wf = Workflow("slow")

    @wf.task(retries=0, timeout=0.2)
    async def sleepy() -> None:
        await asyncio.sleep(30)

    state = await run_to_end(pg_store, wf)
    assert state.status == "failed"
    assert state.tasks["sleepy"].error is not None
    assert state.tasks["sleepy"].error.type == "TaskTimeout"


async def test_durable_sleep_waits_for_its_recorded_time(pg_store: PostgresEventStore) -> None:
    wf = Workflow("nap")
    first = wf.task(name="first")(lambda: 1)
    nap = wf.sleep("nap", seconds=0.5, after=[first])
    wf.task(name="last", after=[nap])(lambda: 2)
    state = await run_to_end(pg_store, wf)
    assert state.status == "succeeded"
    waited = state.tasks["last"].started_at - state.tasks["first"].finished_at  # type: ignore[operator]
    assert waited.total_seconds() >= 0.5
    assert state.tasks["nap"].not_before is not None


async def test_the_executor_runs_at_most_max_tasks_at_once(pg_store: PostgresEventStore) -> None:
    wf = Workflow("wide")
    active = 0
    peak = 0

    async def work() -> None:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.1)
        active -= 1

    for i in range(6):
        wf.task(work, name=f"w{i}")
    state = await run_to_end(pg_store, wf, max_tasks=2)
    assert state.status == "succeeded"
    assert peak == 2


async def test_a_shell_task_over_its_memory_limit_fails(pg_store: PostgresEventStore) -> None:
    wf = Workflow("hungry")
    wf.shell("hog", "python3 -c 'x = bytearray(400 * 1024 * 1024)'", max_memory_mb=200, retries=0)
    wf.shell("fits", "python3 -c 'x = bytearray(10 * 1024 * 1024)'", max_memory_mb=200)
    state = await run_to_end(pg_store, wf)
    assert state.tasks["fits"].status == "succeeded"
    hog = state.tasks["hog"]
    assert hog.status == "failed" and hog.error is not None
    assert "MemoryError" in hog.error.message


async def test_a_durable_sleep_keeps_its_wake_up_time_across_a_restart(
    pg_store: PostgresEventStore,
) -> None:
    wf = Workflow("nap_restart")
    first = wf.task(name="first")(lambda: 1)
    nap = wf.sleep("nap", seconds=1.5, after=[first])
    wf.task(name="last", after=[nap])(lambda: 2)
    registry = registry_of(wf)
    async with running_executor(pg_store, registry):
        run_id, _ = await create_run(pg_store, wf.spec(), {})
        for _ in range(100):
            state = fold(await pg_store.read_stream(run_stream(run_id)))
            if state is not None and state.tasks["nap"].not_before is not None:
                break
            await asyncio.sleep(0.05)
    wake = state.tasks["nap"].not_before  # recorded before the executor stopped
    assert wake is not None and state.tasks["last"].status == "pending"
    async with running_executor(pg_store, registry):  # a new executor picks it up
        done = await wait_for_run(pg_store, run_id)
    assert done.status == "succeeded"
    assert done.tasks["nap"].not_before == wake
    assert done.tasks["nap"].started_at is not None and done.tasks["nap"].started_at >= wake

"""Histories of runs built by hand, for tests and benchmarks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from durable.core.events import (
    ErrorInfo,
    Event,
    Recorded,
    RunCreated,
    RunFailed,
    RunStarted,
    RunSucceeded,
    TaskFailed,
    TaskNode,
    TaskRetryScheduled,
    TaskScheduled,
    TaskStarted,
    TaskSucceeded,
    Trigger,
    run_stream,
)

T0 = datetime(2026, 11, 21, 2, 0, tzinfo=UTC)


def chain(names: list[str]) -> tuple[TaskNode, ...]:
    return tuple(
        TaskNode(name=n, upstream=(names[i - 1],) if i else ()) for i, n in enumerate(names)
    )


def created(
    run_id: str,
    names: list[str] | None = None,
    *,
    workflow: str = "daily_sales",
    key: str | None = None,
    params: dict[str, object] | None = None,
) -> RunCreated:
    return RunCreated(
        run_id=run_id,
        workflow=workflow,
        version="v1",
        tasks=chain(names or ["fetch", "transform", "load", "report"]),
        params=params or {"date": "2026-11-21"},
        trigger=Trigger(kind="manual", logical_time=T0),
        idempotency_key=key,
    )


def task_ok(name: str, output: object = None, *, generation: int = 1) -> list[Event]:
    return [
        TaskScheduled(task=name, generation=generation, attempt=1),
        TaskStarted(task=name, generation=generation, attempt=1, executor="e1"),
        TaskSucceeded(task=name, generation=generation, attempt=1, output=output),
    ]


def task_retry_then_fail(name: str, *, generation: int = 1) -> list[Event]:
    err = ErrorInfo(type="ConnectionError", message="warehouse unreachable")
    return [
        TaskScheduled(task=name, generation=generation, attempt=1),
        TaskStarted(task=name, generation=generation, attempt=1),
        TaskRetryScheduled(
            task=name,
            generation=generation,
            attempt=1,
            error=err,
            retry_at=T0 + timedelta(seconds=30),
        ),
        TaskScheduled(task=name, generation=generation, attempt=2),
        TaskStarted(task=name, generation=generation, attempt=2),
        TaskFailed(task=name, generation=generation, attempt=2, error=err),
    ]


def succeeded_run(run_id: str, names: list[str] | None = None, **kw: object) -> list[Event]:
    names = names or ["fetch", "transform", "load", "report"]
    events: list[Event] = [created(run_id, names, **kw), RunStarted(executor="e1")]  # type: ignore[arg-type]
    for i, n in enumerate(names):
        events += task_ok(n, {"rows": 100 * (i + 1)})
    return [*events, RunSucceeded()]


def failed_run(run_id: str, **kw: object) -> list[Event]:
    """fetch, transform and load succeed; report fails after a retry."""
    events: list[Event] = [created(run_id, **kw), RunStarted(executor="e1")]  # type: ignore[arg-type]
    for i, n in enumerate(["fetch", "transform", "load"]):
        events += task_ok(n, {"rows": 100 * (i + 1)})
    events += task_retry_then_fail("report")
    return [*events, RunFailed(reason="task report failed", failed_tasks=("report",))]


def recorded(run_id: str, events: list[Event], *, start: datetime = T0) -> list[Recorded]:
    return [
        Recorded(
            stream_id=run_stream(run_id),
            seq=i,
            position=i,
            recorded_at=start + timedelta(milliseconds=10 * i),
            event=e,
        )
        for i, e in enumerate(events, start=1)
    ]

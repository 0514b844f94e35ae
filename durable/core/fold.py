"""The run fold: ``evolve(state, recorded) -> state``, pure, total and exhaustive.

It reads a run's stream only: the envelope's event is first narrowed to a
:data:`~durable.core.events.RunEvent` (a schedule's or a backfill's event in a run's
stream is an :class:`InvalidTransition`), then matched exhaustively on that union.
Which fold applies to a stream is its kind's business
(:func:`~durable.core.events.stream_kind`); the backfill fold is
:func:`durable.core.backfill.backfill_state`.

An event that cannot happen in the state it meets raises :class:`InvalidTransition`
naming the run, the seq and the event: the history is inconsistent, and folding on
would hide it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NoReturn, assert_never

from msgspec.structs import replace

from durable.core.errors import InvalidTransition
from durable.core.events import (
    RUN_EVENT_TYPES,
    Event,
    NotificationFailed,
    NotificationRequested,
    NotificationSent,
    Recorded,
    RerunQueued,
    RerunRequested,
    RunCancelled,
    RunCreated,
    RunEvent,
    RunFailed,
    RunPaused,
    RunResumed,
    RunStarted,
    RunSucceeded,
    SlaMissed,
    TaskCancelled,
    TaskFailed,
    TaskMapped,
    TaskRetryScheduled,
    TaskScheduled,
    TaskSkipped,
    TaskStarted,
    TaskSucceeded,
    TaskWaiting,
    event_type,
)
from durable.core.state import (
    ACTIVE_TASK,
    DONE_TASK,
    TERMINAL_RUN,
    RunState,
    RunStatus,
    TaskState,
    rerun_plan,
)

__all__ = ["evolve", "fold", "run_status_after"]


def run_status_after(event: Event) -> RunStatus | None:
    """The run status an event leads to, or ``None`` when it leaves the status alone.

    Shared by the fold and the ``runs`` read model, so the two cannot disagree.
    """
    match event:
        case RunCreated():
            return "pending"
        case RunStarted() | RunResumed() | RerunRequested():
            return "running"
        case RunPaused():
            return "paused"
        case RunSucceeded():
            return "succeeded"
        case RunFailed():
            return "failed"
        case RunCancelled():
            return "cancelled"
        case _:
            return None


def fold(records: Iterable[Recorded], state: RunState | None = None) -> RunState | None:
    """Fold ``records`` onto ``state`` (``None``: from the start of the stream)."""
    for recorded in records:
        state = evolve(state, recorded)
    return state


def evolve(state: RunState | None, recorded: Recorded) -> RunState:
    """The state after ``recorded``. Raises :class:`InvalidTransition` when impossible,
    or when the event is not a run's event."""
    event = recorded.event
    if not isinstance(event, RUN_EVENT_TYPES):
        _invalid(recorded, "a schedule's or backfill's event cannot be in a run's stream")
    return _evolve(state, recorded, event)


def _evolve(state: RunState | None, recorded: Recorded, event: RunEvent) -> RunState:
    """The state after ``event`` (the event of ``recorded``, already a run's event)."""
    if state is None:
        if not isinstance(event, RunCreated):
            _invalid(recorded, "the first event of a run must be run_created")
        if recorded.seq != 1:
            _invalid(recorded, f"a run's first event has seq 1, not {recorded.seq}")
        return _created(recorded, event)
    if recorded.seq != state.last_seq + 1:
        _invalid(recorded, f"expected seq {state.last_seq + 1} after {state.last_seq}")
    at = recorded.recorded_at
    match event:
        case TaskScheduled():
            _need_run(state, recorded, "running")
            task = _task(state, recorded, event.task, event.generation)
            if (task.status == "pending" and event.attempt == 1) or (
                task.status == "retrying" and event.attempt == task.attempt + 1
            ):
                pass
            else:
                _invalid(
                    recorded,
                    f"task {task.name} is {task.status} at attempt {task.attempt}; "
                    f"cannot schedule attempt {event.attempt}",
                )
            if state.ready(task) is not True:
                ups = ", ".join(f"{u} {state.tasks[u].status}" for u in task.upstream)
                _invalid(recorded, f"task {task.name} ({task.trigger_rule}) cannot run: {ups}")
            new = replace(
                task,
                status="scheduled",
                attempt=event.attempt,
                scheduled_at=at,
                retry_at=None,
                not_before=event.not_before,
            )
            return _with_task(state, recorded, new)
        case TaskMapped():
            _need_run(state, recorded, "running")
            task = _task(state, recorded, event.task, event.generation)
            if task.status != "pending" or state.ready(task) is not True:
                _invalid(recorded, f"task {task.name} is {task.status}; only a ready task fans out")
            if event.count < 0:
                _invalid(recorded, f"a map cannot fan out into {event.count} tasks")
            tasks = dict(state.tasks)
            tasks[task.name] = replace(
                task, status="running", attempt=1, mapped=event.count, started_at=at
            )
            for i in range(event.count):
                child = f"{task.name}[{i}]"
                tasks[child] = TaskState(
                    name=child,
                    upstream=task.upstream,
                    generation=task.generation,
                    parent=task.name,
                )
            return replace(state, tasks=tasks, last_seq=recorded.seq, updated_at=at)
        case TaskStarted():
            _need_run(state, recorded, "running", "paused")
            task = _task(state, recorded, event.task, event.generation)
            _need_task(task, recorded, event.attempt, "scheduled")
            new = replace(
                task,
                status="running",
                started_at=at,
                executions=task.executions + 1,
                job=None,
                waiting_since=None,
            )
            return _with_task(state, recorded, new)
        case TaskWaiting():
            _need_run(state, recorded, "running", "paused")
            task = _task(state, recorded, event.task, event.generation)
            _need_task(task, recorded, event.attempt, "running")
            new = replace(task, job=event.job, waiting_since=task.waiting_since or at)
            return _with_task(state, recorded, new)
        case TaskSucceeded():
            _need_run(state, recorded, "running", "paused")
            task = _task(state, recorded, event.task, event.generation)
            _need_task(task, recorded, event.attempt, "running")
            new = replace(task, status="succeeded", output=event.output, error=None, finished_at=at)
            return _with_task(state, recorded, new)
        case TaskRetryScheduled():
            _need_run(state, recorded, "running", "paused")
            task = _task(state, recorded, event.task, event.generation)
            _need_task(task, recorded, event.attempt, "running")
            new = replace(task, status="retrying", error=event.error, retry_at=event.retry_at)
            return _with_task(state, recorded, new)
        case TaskFailed():
            _need_run(state, recorded, "running", "paused")
            task = _task(state, recorded, event.task, event.generation)
            _need_task(task, recorded, event.attempt, "scheduled", "running")
            new = replace(task, status="failed", error=event.error, finished_at=at)
            return _with_task(state, recorded, new)
        case TaskSkipped():
            _need_run(state, recorded, "running", "paused")
            task = _task(state, recorded, event.task, event.generation)
            if event.attempt is not None:  # a running attempt gave up softly
                _need_task(task, recorded, event.attempt, "running")
            elif task.status != "pending":
                _invalid(recorded, f"task {task.name} is {task.status}; only pending tasks skip")
            new = replace(task, status="skipped", reason=event.reason, finished_at=at)
            return _with_task(state, recorded, new)
        case TaskCancelled():
            _need_run(state, recorded, "pending", "running", "paused")
            task = _task(state, recorded, event.task, event.generation)
            if task.status not in ACTIVE_TASK and task.status != "pending":
                _invalid(recorded, f"task {task.name} is already {task.status}")
            new = replace(
                task, status="cancelled", reason=event.reason or "cancelled", finished_at=at
            )
            return _with_task(state, recorded, new)
        case RunCreated():
            _invalid(recorded, "the run already exists")
        case RunStarted():
            _need_run(state, recorded, "pending")
            return replace(
                state, status="running", started_at=at, last_seq=recorded.seq, updated_at=at
            )
        case RunPaused():
            _need_run(state, recorded, "pending", "running")
            return replace(
                state,
                status="paused",
                reason=event.reason or None,
                last_seq=recorded.seq,
                updated_at=at,
            )
        case RunResumed():
            _need_run(state, recorded, "paused")
            return replace(
                state, status="running", reason=None, last_seq=recorded.seq, updated_at=at
            )
        case RunSucceeded():
            _need_run(state, recorded, "running")
            unfinished = [t.name for t in state.tasks.values() if t.status not in DONE_TASK]
            if unfinished:
                _invalid(recorded, f"tasks not done: {', '.join(unfinished)}")
            return replace(
                state, status="succeeded", finished_at=at, last_seq=recorded.seq, updated_at=at
            )
        case RunFailed():
            _need_run(state, recorded, "pending", "running", "paused")
            return _ended(state, recorded, "failed", event.reason)
        case RunCancelled():
            _need_run(state, recorded, "pending", "running", "paused")
            return _ended(state, recorded, "cancelled", event.reason or "cancelled")
        case RerunRequested():
            return _rerun(state, recorded, event)
        case RerunQueued():
            _need_run(state, recorded, "pending", "running", "paused")
            if event.request_id in state.reruns or any(
                q.request_id == event.request_id for q in state.queued
            ):
                _invalid(recorded, f"rerun request {event.request_id!r} is already known")
            unknown = [t for t in event.tasks if t not in state.tasks]
            if unknown or not event.tasks:
                _invalid(recorded, f"unknown tasks: {', '.join(unknown) or '(none given)'}")
            return replace(
                state,
                queued=(*state.queued, event),
                last_seq=recorded.seq,
                updated_at=recorded.recorded_at,
            )
        case NotificationRequested():
            # the outbox never changes what the run does; a PagerDuty incident it opens
            # is remembered so the run's success resolves it
            incidents = tuple(r for r in state.incidents if r != event.rule)
            if event.action == "trigger":
                incidents = (*incidents, event.rule)
            return replace(state, incidents=incidents, last_seq=recorded.seq, updated_at=at)
        case NotificationSent() | NotificationFailed():
            return replace(state, last_seq=recorded.seq, updated_at=at)
        case SlaMissed():
            if event.key in state.sla_missed:
                _invalid(recorded, f"the SLA miss {event.key!r} is already recorded")
            return replace(
                state,
                sla_missed=(*state.sla_missed, event.key),
                last_seq=recorded.seq,
                updated_at=at,
            )
        case _:
            assert_never(event)


# ---------------------------------------------------------------------------------------


def _created(recorded: Recorded, event: RunCreated) -> RunState:
    tasks: dict[str, TaskState] = {}
    for node in event.tasks:
        if node.name in tasks:
            _invalid(recorded, f"task {node.name!r} is declared twice")
        missing = [u for u in node.upstream if u not in tasks]
        if missing:
            _invalid(
                recorded,
                f"task {node.name!r} depends on {', '.join(missing)}, "
                "which is not declared before it",
            )
        tasks[node.name] = TaskState(
            name=node.name, upstream=node.upstream, trigger_rule=node.trigger_rule
        )
    return RunState(
        run_id=event.run_id,
        stream_id=recorded.stream_id,
        workflow=event.workflow,
        version=event.version,
        params=event.params,
        trigger=event.trigger,
        idempotency_key=event.idempotency_key,
        tasks=tasks,
        created_at=recorded.recorded_at,
        updated_at=recorded.recorded_at,
        last_seq=recorded.seq,
    )


def _with_task(state: RunState, recorded: Recorded, task: TaskState) -> RunState:
    tasks = dict(state.tasks)
    tasks[task.name] = task
    return replace(state, tasks=tasks, last_seq=recorded.seq, updated_at=recorded.recorded_at)


def _ended(state: RunState, recorded: Recorded, status: RunStatus, reason: str) -> RunState:
    # A run that ends takes its unfinished tasks with it: they are cancelled.
    at = recorded.recorded_at
    tasks = {
        name: (
            replace(t, status="cancelled", reason=f"run {status}", finished_at=at)
            if t.status in ACTIVE_TASK or t.status == "pending"
            else t
        )
        for name, t in state.tasks.items()
    }
    return replace(
        state,
        status=status,
        reason=reason,
        tasks=tasks,
        queued=() if status == "cancelled" else state.queued,  # a cancel drops queued reruns
        finished_at=at,
        last_seq=recorded.seq,
        updated_at=at,
    )


def _rerun(state: RunState, recorded: Recorded, event: RerunRequested) -> RunState:
    if state.status not in TERMINAL_RUN:
        _invalid(recorded, f"the run is {state.status}; only a finished run can be rerun")
    if event.request_id in state.reruns:
        _invalid(recorded, f"rerun request {event.request_id!r} was already applied")
    unknown = [t for t in event.tasks if t not in state.tasks]
    if unknown or not event.tasks:
        _invalid(recorded, f"unknown tasks: {', '.join(unknown) or '(none given)'}")
    chosen, _ = rerun_plan(
        state, event.tasks, downstream=event.downstream, failed_only=event.failed_only
    )
    generation = state.generation + 1
    tasks = {
        name: t for name, t in state.tasks.items() if t.parent is None or t.parent not in chosen
    }
    for name in chosen:
        old = tasks[name]
        tasks[name] = TaskState(
            name=name,
            upstream=old.upstream,
            trigger_rule=old.trigger_rule,
            generation=generation,
            executions=old.executions,
        )
    return replace(
        state,
        status="running",
        generation=generation,
        reason=None,
        reruns=(*state.reruns, event.request_id),
        queued=tuple(q for q in state.queued if q.request_id != event.request_id),
        tasks=tasks,
        finished_at=None,
        last_seq=recorded.seq,
        updated_at=recorded.recorded_at,
    )


def _task(state: RunState, recorded: Recorded, name: str, generation: int) -> TaskState:
    task = state.tasks.get(name)
    if task is None:
        _invalid(recorded, f"the run has no task {name!r}")
    if generation != task.generation:
        _invalid(
            recorded,
            f"task {name} is in generation {task.generation}, the event is for {generation}",
        )
    return task


def _need_run(state: RunState, recorded: Recorded, *allowed: RunStatus) -> None:
    if state.status not in allowed:
        _invalid(recorded, f"the run is {state.status} (needs {' or '.join(allowed)})")


def _need_task(task: TaskState, recorded: Recorded, attempt: int, *allowed: str) -> None:
    if task.status not in allowed:
        _invalid(recorded, f"task {task.name} is {task.status} (needs {' or '.join(allowed)})")
    if attempt != task.attempt:
        _invalid(recorded, f"task {task.name} is at attempt {task.attempt}, not {attempt}")


def _invalid(recorded: Recorded, reason: str) -> NoReturn:
    raise InvalidTransition(recorded.stream_id, recorded.seq, event_type(recorded.event), reason)

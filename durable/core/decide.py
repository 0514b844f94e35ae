"""Decisions: given a run's state (and its workflow), the events that move it forward.

Pure: no I/O, no clock (``now`` is passed in), no randomness. A decision taken again on
the same state gives the same events; a command already applied gives ``[]``, so a
redelivered command is a no-op.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, TypeVar

import msgspec

from durable.core.errors import DurableError
from durable.core.events import (
    ErrorInfo,
    Event,
    RerunQueued,
    RerunRequested,
    RunCancelled,
    RunFailed,
    RunPaused,
    RunResumed,
    RunStarted,
    RunSucceeded,
    TaskFailed,
    TaskMapped,
    TaskRetryScheduled,
    TaskScheduled,
    TaskSkipped,
    TaskSucceeded,
)
from durable.core.retry import retry_at
from durable.core.spec import WorkflowSpec
from durable.core.state import DONE_TASK, RunState, TaskState, rerun_plan, rule_verdict

__all__ = [
    "Cancel",
    "Command",
    "CommandRejected",
    "Pause",
    "Rerun",
    "Resume",
    "attempt_failed",
    "decide",
    "decide_command",
    "lost_attempts",
    "map_items",
    "next_wakeup",
]

EXECUTOR_LOST = "ExecutorLost"


class CommandRejected(DurableError):
    """A command that cannot apply to the run in its current state."""


class Cancel(msgspec.Struct, frozen=True, kw_only=True):
    reason: str = "cancelled by user"
    by: str | None = None


class Pause(msgspec.Struct, frozen=True, kw_only=True):
    reason: str = ""
    by: str | None = None


class Resume(msgspec.Struct, frozen=True, kw_only=True):
    by: str | None = None


class Rerun(msgspec.Struct, frozen=True, kw_only=True):
    """Run ``tasks`` again (with ``downstream``: all that depends on them too); the
    ``request_id`` makes the request idempotent."""

    request_id: str
    tasks: tuple[str, ...]
    downstream: bool = False
    failed_only: bool = False
    by: str | None = None
    queue: bool = False
    """If the run is still going: apply the rerun once it succeeds or fails (instead of
    refusing it)."""


Command = Cancel | Pause | Resume | Rerun


def decide_command(state: RunState, command: Command) -> list[Event]:
    """The events of an operator's command; ``[]`` when it is already in effect."""
    match command:
        case Cancel():
            if state.status == "cancelled":
                return []
            if state.is_terminal:
                raise CommandRejected(
                    f"run {state.run_id} already {state.status}; there is nothing to cancel"
                )
            return [RunCancelled(reason=command.reason, by=command.by)]
        case Pause():
            if state.status == "paused":
                return []
            if state.is_terminal:
                raise CommandRejected(f"run {state.run_id} is {state.status}; it cannot pause")
            return [RunPaused(reason=command.reason, by=command.by)]
        case Rerun():
            if command.request_id in state.reruns or any(
                q.request_id == command.request_id for q in state.queued
            ):
                return []  # already applied or queued: a redelivered request reruns nothing
            top = [n for n, t in state.tasks.items() if t.parent is None]
            unknown = [t for t in command.tasks if t not in top]
            if unknown or not command.tasks:
                raise CommandRejected(
                    f"run {state.run_id} has no task {', '.join(unknown) or '(none given)'}",
                    hint=f"tasks: {', '.join(top)}",
                )
            if not state.is_terminal:
                if command.queue and state.status != "cancelled":
                    return [_rerun_event(RerunQueued, command)]
                raise CommandRejected(
                    f"run {state.run_id} is {state.status}; a rerun needs a finished run",
                    hint="wait for it to finish, cancel it first, or queue the rerun "
                    '(--queue; "queue": true) to apply it when the run ends',
                )
            chosen, _ = rerun_plan(
                state,
                command.tasks,
                downstream=command.downstream,
                failed_only=command.failed_only,
            )
            if not chosen:
                raise CommandRejected(
                    f"nothing to rerun in run {state.run_id}: the selected tasks all succeeded",
                    hint="drop --failed-only to rerun them anyway",
                )
            return [_rerun_event(RerunRequested, command)]
        case Resume():
            if state.status in ("running", "pending"):
                return []
            if state.status != "paused":
                raise CommandRejected(
                    f"run {state.run_id} is {state.status}; only a paused run resumes"
                )
            return [RunResumed(by=command.by)]


_R = TypeVar("_R", RerunRequested, RerunQueued)


def _rerun_event(kind: type[_R], asked: Rerun | RerunQueued) -> _R:
    return kind(
        request_id=asked.request_id,
        tasks=asked.tasks,
        downstream=asked.downstream,
        failed_only=asked.failed_only,
        by=asked.by,
    )


def decide(
    state: RunState, spec: WorkflowSpec, now: datetime, *, executor: str | None = None
) -> list[Event]:
    """What the run does next at ``now``: start, schedule, skip, finish — or nothing."""
    if state.queued and state.status in ("succeeded", "failed"):
        # the run ended with a rerun queued: apply it now
        return [_rerun_event(RerunRequested, state.queued[0])]
    if state.status == "pending":
        return [RunStarted(executor=executor)]
    if state.status != "running":
        return []
    if (
        spec.max_duration is not None
        and state.started_at is not None
        and now - state.started_at > timedelta(seconds=spec.max_duration)
    ):
        return [RunFailed(reason=f"the run exceeded its max_duration of {spec.max_duration:g} s")]
    events: list[Event] = []
    status: dict[str, str] = {name: t.status for name, t in state.tasks.items()}
    untaken = _untaken_branches(state, spec)
    children: dict[str, list[TaskState]] = {}
    room: dict[str, float] = {}
    for t in state.tasks.values():
        if t.parent is not None:
            children.setdefault(t.parent, []).append(t)
    for parent, kids in children.items():  # free places of each map with max_parallel
        limit = spec.task(parent).config.get("max_parallel")
        active = sum(1 for c in kids if c.status in ("scheduled", "running", "retrying"))
        room[parent] = float("inf") if limit is None else int(limit) - active
    for t in state.tasks.values():  # topological order, map children last
        if t.parent is not None:
            if t.status == "pending" and room[t.parent] > 0:
                events.append(TaskScheduled(task=t.name, generation=t.generation, attempt=1))
                status[t.name] = "scheduled"
                room[t.parent] -= 1
            elif t.status == "retrying" and t.retry_at is not None and t.retry_at <= now:
                events.append(
                    TaskScheduled(task=t.name, generation=t.generation, attempt=t.attempt + 1)
                )
                status[t.name] = "scheduled"
            continue
        if t.mapped is not None and t.status == "running":
            done = _map_done(t, children.get(t.name, []), status)
            if done is not None:
                events.append(done)
                status[t.name] = "succeeded" if isinstance(done, TaskSucceeded) else "failed"
            continue
        if (
            t.status == "pending"
            and spec.task(t.name).kind == "map"
            and t.name not in untaken
            and rule_verdict(t.trigger_rule, [status[u] for u in t.upstream]) is True
        ):
            events += _fan_out(state, spec, t)
            status[t.name] = "failed" if isinstance(events[-1], TaskFailed) else "running"
            continue
        if t.status == "pending":
            if t.name in untaken:
                events.append(
                    TaskSkipped(task=t.name, generation=t.generation, reason=untaken[t.name])
                )
                status[t.name] = "skipped"
                continue
            verdict = rule_verdict(t.trigger_rule, [status[u] for u in t.upstream])
            if verdict is True:
                events.append(
                    TaskScheduled(
                        task=t.name,
                        generation=t.generation,
                        attempt=1,
                        not_before=_sleep_until(spec, t.name, now),
                    )
                )
                status[t.name] = "scheduled"
            elif verdict is False:
                events.append(
                    TaskSkipped(task=t.name, generation=t.generation, reason=_why_skip(t, status))
                )
                status[t.name] = "skipped"
        elif t.status == "retrying" and t.retry_at is not None and t.retry_at <= now:
            events.append(
                TaskScheduled(task=t.name, generation=t.generation, attempt=t.attempt + 1)
            )
            status[t.name] = "scheduled"
    if all(s in DONE_TASK for s in status.values()):
        unhandled = [
            name
            for name, s in status.items()
            if s in ("failed", "cancelled")
            and state.tasks[name].parent is None  # a map task stands for its children
            and not _handled(state, name, status)
        ]
        if unhandled:
            events.append(
                RunFailed(
                    reason=f"task {', '.join(unhandled)} failed", failed_tasks=tuple(unhandled)
                )
            )
        else:
            events.append(RunSucceeded())
    return events


def attempt_failed(
    state: RunState, spec: WorkflowSpec, task: str, error: ErrorInfo, now: datetime
) -> Event:
    """A failed attempt becomes a scheduled retry, or a final failure."""
    t = state.tasks[task]
    policy = spec.task(task).retry  # a map child retries as its map task says
    when = (
        retry_at(policy, t.attempt, f"{state.run_id}/{task}/{t.generation}", now)
        if error.retryable
        else None
    )
    if when is None:
        return TaskFailed(task=task, generation=t.generation, attempt=t.attempt, error=error)
    return TaskRetryScheduled(
        task=task, generation=t.generation, attempt=t.attempt, error=error, retry_at=when
    )


def lost_attempts(state: RunState, spec: WorkflowSpec, now: datetime) -> list[Event]:
    """For a run just claimed: attempts marked running whose executor is gone.

    Their outcome is unknown — the body may or may not have run — so each counts as a
    failed, retryable attempt: the task runs at least once, its completion is recorded
    once.
    """
    if state.is_terminal:
        return []
    lost = ErrorInfo(
        type=EXECUTOR_LOST,
        message="the executor running this attempt stopped before recording its outcome",
        retryable=True,
    )
    return [
        attempt_failed(state, spec, t.name, lost, now)
        for t in state.tasks.values()
        if t.status == "running"
    ]


def next_wakeup(state: RunState, spec: WorkflowSpec) -> datetime | None:
    """The earliest time a timer of the run fires (a retry, a sleep, its max duration)."""
    times = [t.retry_at for t in state.tasks.values() if t.status == "retrying" and t.retry_at]
    times += [
        t.not_before for t in state.tasks.values() if t.status == "scheduled" and t.not_before
    ]
    if spec.max_duration is not None and state.started_at is not None and not state.is_terminal:
        # just past the deadline: decide() fails the run when it is *exceeded*
        times.append(state.started_at + timedelta(seconds=spec.max_duration, milliseconds=1))
    return min(times) if times else None


def map_items(state: RunState, spec: WorkflowSpec, name: str) -> list[Any] | str:
    """The items a map task fans out over, or why there are none to take."""
    config = spec.task(name).config
    value: Any = state.tasks[config["over"]].output
    key = config.get("key")
    if key is not None:
        value = value.get(key) if isinstance(value, dict) else None
    if not isinstance(value, list):
        what = f"{config['over']}.{key}" if key else config["over"]
        return f"map {name} needs a list from {what}, got {type(value).__name__}"
    return value


def _fan_out(state: RunState, spec: WorkflowSpec, t: Any) -> list[Event]:
    items = map_items(state, spec, t.name)
    if isinstance(items, str):
        error = ErrorInfo(type="MapError", message=items, retryable=False)
        return [
            TaskScheduled(task=t.name, generation=t.generation, attempt=1),
            TaskFailed(task=t.name, generation=t.generation, attempt=1, error=error),
        ]
    return [TaskMapped(task=t.name, generation=t.generation, count=len(items))]


def _map_done(t: Any, children: list[TaskState], status: dict[str, str]) -> Event | None:
    if any(status[c.name] not in DONE_TASK for c in children):
        return None
    failed = [c for c in children if status[c.name] != "succeeded"]
    if not failed:
        return TaskSucceeded(
            task=t.name,
            generation=t.generation,
            attempt=t.attempt,
            output=[c.output for c in children],
        )
    first = failed[0]
    detail = f": {first.error.type}: {first.error.message}" if first.error else ""
    error = ErrorInfo(
        type="MapItemFailed",
        message=f"{len(failed)} of {len(children)} items failed; first {first.name}{detail}",
        retryable=False,
    )
    return TaskFailed(task=t.name, generation=t.generation, attempt=t.attempt, error=error)


def _sleep_until(spec: WorkflowSpec, name: str, now: datetime) -> datetime | None:
    task = spec.task(name)
    if task.kind != "sleep":
        return None
    if "until" in task.config:
        until = datetime.fromisoformat(str(task.config["until"]))
        return until if until.tzinfo else until.replace(tzinfo=now.tzinfo)
    return now + timedelta(seconds=float(task.config["seconds"]))


def _untaken_branches(state: RunState, spec: WorkflowSpec) -> dict[str, str]:
    """Tasks routed away from by a finished switch: name -> why."""
    untaken: dict[str, str] = {}
    for t in spec.tasks:
        if t.kind != "switch" or state.tasks[t.name].status != "succeeded":
            continue
        cases: dict[str, list[str]] = t.config["cases"]
        default: list[str] = t.config.get("default") or []
        output: Any = state.tasks[t.name].output
        chosen_keys = [str(k) for k in (output if isinstance(output, list) else [output])]
        chosen = {target for k in chosen_keys for target in cases.get(k, [])}
        if not any(k in cases for k in chosen_keys):
            chosen = set(default)
        for branch in [*cases.values(), default]:
            for target in branch:
                if target not in chosen:
                    untaken[target] = f"switch {t.name} chose {', '.join(chosen_keys)}"
    return untaken


def _why_skip(task: Any, status: dict[str, str]) -> str:
    bad = [f"{u} {status[u]}" for u in task.upstream if status[u] != "succeeded"]
    return f"upstream {', '.join(bad)}" if bad else "trigger rule not met"


def _handled(state: RunState, name: str, status: dict[str, str]) -> bool:
    # A failure is handled when a catch task (one_failed) downstream of it succeeded.
    return any(
        t.trigger_rule == "one_failed" and name in t.upstream and status[t.name] == "succeeded"
        for t in state.tasks.values()
    )

"""``step``: the one pure entry point of a run's life.

``step(state, spec, inputs, now) -> events``: given a run's state, its workflow, what
happened (the :data:`Input` s: a timer, an attempt's result, attempts lost in a crash, an
operator's command, the executor's free slots) and the time, the events to append —
every one of them, ``TaskStarted`` included. The inputs are answered first, in order;
then the rules of :mod:`durable.core.rules` run pass after pass until one decides
nothing (a start schedules tasks, a fan-out schedules children, the last child finishes
its map…); last, scheduled attempts start within the free slots.

Each event a notification rule answers (the run's end, a task's final failure) is
followed by its ``notification_requested`` (:func:`durable.core.notify.with_notifications`),
so the outbox commits with its cause.

Pure: no I/O, no clock, no randomness. The same arguments give the same events, and an
input already answered (a redelivered result, a command in effect) gives none.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeAlias

import msgspec

from durable.core.commands import (
    Cancel,
    Command,
    CommandRejected,
    Pause,
    Rerun,
    Resume,
    decide_command,
)
from durable.core.events import (
    ErrorInfo,
    Event,
    NotifyRule,
    Recorded,
    TaskFailed,
    TaskRetryScheduled,
    TaskSkipped,
    TaskSucceeded,
    TaskWaiting,
)
from durable.core.fold import evolve
from durable.core.notify import keyed_rules, with_notifications
from durable.core.retry import retry_at
from durable.core.rules import (
    decide_pass,
    map_items,
    next_wakeup,
    start_within_slots,
    task_index,
)
from durable.core.spec import WorkflowSpec
from durable.core.state import RunState

__all__ = [
    "EXECUTOR_LOST",
    "AttemptFailed",
    "AttemptSkipped",
    "AttemptSucceeded",
    "AttemptWaiting",
    "AttemptsLost",
    "Cancel",
    "Command",
    "CommandRejected",
    "Input",
    "Pause",
    "Rerun",
    "Resume",
    "SlotsAvailable",
    "Tick",
    "answer",
    "map_items",
    "next_wakeup",
    "step",
]

EXECUTOR_LOST = "ExecutorLost"
MAX_PASSES = 10_000
"""A guard: no run needs this many passes of the rules to settle."""


class Tick(msgspec.Struct, frozen=True, kw_only=True, tag="tick"):
    """Time passed (a timer fired, the run was claimed, something may be due)."""


class AttemptSucceeded(msgspec.Struct, frozen=True, kw_only=True, tag="attempt_succeeded"):
    """An attempt of a task returned ``output``."""

    task: str
    generation: int
    attempt: int
    output: Any = None


class AttemptFailed(msgspec.Struct, frozen=True, kw_only=True, tag="attempt_failed"):
    """An attempt of a task failed with ``error``."""

    task: str
    generation: int
    attempt: int
    error: ErrorInfo


class AttemptWaiting(msgspec.Struct, frozen=True, kw_only=True, tag="attempt_waiting"):
    """An attempt submitted its work elsewhere (or began waiting on a condition):
    ``job`` finds it again; the attempt waits for it without a slot."""

    task: str
    generation: int
    attempt: int
    job: dict[str, Any]
    state: str = ""


class AttemptSkipped(msgspec.Struct, frozen=True, kw_only=True, tag="attempt_skipped"):
    """An attempt gave up softly (a ``soft_fail`` sensor out of time): the task is
    skipped, and the skip propagates as a skip does."""

    task: str
    generation: int
    attempt: int
    reason: str


class AttemptsLost(msgspec.Struct, frozen=True, kw_only=True, tag="attempts_lost"):
    """Attempts marked running have no executor any more: all of them (the run was taken
    over), or those of ``tasks`` (their start was recorded, but the executor never heard
    it was: the database went away while it committed)."""

    tasks: tuple[str, ...] | None = None


class SlotsAvailable(msgspec.Struct, frozen=True, kw_only=True, tag="slots_available"):
    """How many attempts the executor ``executor`` may start now."""

    free: int
    executor: str | None = None


Input: TypeAlias = (
    Tick
    | AttemptSucceeded
    | AttemptFailed
    | AttemptWaiting
    | AttemptSkipped
    | AttemptsLost
    | Cancel
    | Pause
    | Resume
    | Rerun
    | SlotsAvailable
)


def step(
    state: RunState,
    spec: WorkflowSpec,
    inputs: Sequence[Input],
    now: datetime,
    *,
    notify: Sequence[NotifyRule] = (),
) -> list[Event]:
    """Every event that follows from ``inputs`` at ``now``, in the order to append them.

    ``notify``: the global notification rules, answered after the workflow's own.
    Raises :class:`CommandRejected` for a command that cannot apply.
    """
    before = state
    free = 0
    executor: str | None = None
    events: list[Event] = []
    for item in inputs:
        if isinstance(item, SlotsAvailable):
            free += item.free
            executor = item.executor
            continue
        answered = answer(state, spec, item, now)
        state = _applied(state, answered, now)
        events += answered
    specs = task_index(spec)
    for _ in range(MAX_PASSES):
        decided = decide_pass(state, spec, now, executor, specs)
        if not decided:
            break
        state = _applied(state, decided, now)
        events += decided
    events += start_within_slots(state, now, free, executor)
    if spec.notify or notify:
        events = with_notifications(before, state, events, keyed_rules(spec.notify, notify))
    return events


def answer(state: RunState, spec: WorkflowSpec, item: Input, now: datetime) -> list[Event]:
    """The events an input makes by itself, before the rules run: an attempt's outcome,
    the fate of lost attempts, a command's event. ``[]`` when it was already answered."""
    match item:
        case AttemptSucceeded():
            if not _current(state, item.task, item.generation, item.attempt):
                return []  # the log moved on (cancelled, given up, recorded already)
            produces = spec.task(item.task).produces
            return [
                TaskSucceeded(
                    task=item.task,
                    generation=item.generation,
                    attempt=item.attempt,
                    output=item.output,
                    assets=produces,
                )
            ]
        case AttemptFailed():
            if not _current(state, item.task, item.generation, item.attempt):
                return []
            return [_attempt_failed(state, spec, item.task, item.error, now)]
        case AttemptWaiting():
            if not _current(state, item.task, item.generation, item.attempt):
                return []
            t = state.tasks[item.task]
            if t.job == item.job:
                return []  # recorded already
            return [
                TaskWaiting(
                    task=item.task,
                    generation=item.generation,
                    attempt=item.attempt,
                    job=item.job,
                    state=item.state,
                )
            ]
        case AttemptSkipped():
            if not _current(state, item.task, item.generation, item.attempt):
                return []
            return [
                TaskSkipped(
                    task=item.task,
                    generation=item.generation,
                    reason=item.reason,
                    attempt=item.attempt,
                )
            ]
        case AttemptsLost():
            return _lost_attempts(state, spec, now, item.tasks)
        case Cancel() | Pause() | Resume() | Rerun():
            return decide_command(state, item)
        case Tick() | SlotsAvailable():
            return []


def _current(state: RunState, task: str, generation: int, attempt: int) -> bool:
    t = state.tasks.get(task)
    return (
        t is not None
        and t.status == "running"
        and (t.generation, t.attempt)
        == (
            generation,
            attempt,
        )
    )


def _attempt_failed(
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


def _lost_attempts(
    state: RunState, spec: WorkflowSpec, now: datetime, tasks: tuple[str, ...] | None = None
) -> list[Event]:
    # Their outcome is unknown — the body may or may not have run — so each counts as a
    # failed, retryable attempt: the task runs at least once, its completion is recorded
    # once. An attempt waiting on recorded work elsewhere (``job``) is not lost: the
    # executor that has the run now polls that work again.
    if state.is_terminal:
        return []
    lost = ErrorInfo(
        type=EXECUTOR_LOST,
        message="the executor running this attempt stopped before recording its outcome",
        retryable=True,
    )
    return [
        _attempt_failed(state, spec, t.name, lost, now)
        for t in state.tasks.values()
        # a map task that fanned out runs no attempt of its own: its items do
        if t.status == "running"
        and t.mapped is None
        and t.job is None
        and (tasks is None or t.name in tasks)
    ]


def _applied(state: RunState, events: list[Event], now: datetime) -> RunState:
    # In memory only: the store gives the real seq, position and commit time on append.
    for event in events:
        state = evolve(
            state,
            Recorded(
                stream_id=state.stream_id,
                seq=state.last_seq + 1,
                position=0,
                recorded_at=now,
                event=event,
            ),
        )
    return state

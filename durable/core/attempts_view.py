"""Every attempt of every task of a run, in every generation: the rows of a Gantt chart,
derived from the run's events.

Pure. The run's state (:func:`~durable.core.fold.evolve`) is folded alongside, so an
inconsistent history raises exactly as the fold does, and the run's end knows which
tasks it took with it. Each attempt is one :class:`Attempt`, from its ``task_scheduled``
(queued) through ``task_started`` (running) to its outcome:

- ``task_succeeded``: succeeded
- ``task_retry_scheduled`` / ``task_failed``: failed, or lost when the executor running it
  went away (the error an ``AttemptsLost`` input records, :data:`EXECUTOR_LOST`)
- ``task_cancelled``, or the run failing or being cancelled while it is queued or running:
  cancelled

A map task's fan-out (``task_mapped``) is its attempt 1, running until the map ends; its
items are tasks of their own (``name[i]``). A task that ended without any attempt in a
generation — skipped, or cancelled before its first — is one entry with ``attempt`` 0.
Reruns start new generations; the attempts of earlier ones stay.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Literal, TypeAlias, assert_never

import msgspec
from msgspec.structs import replace

from durable.core.events import (
    ErrorInfo,
    NotificationFailed,
    NotificationRequested,
    NotificationSent,
    Recorded,
    RerunQueued,
    RerunRequested,
    RunCancelled,
    RunCreated,
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
    run_event,
)
from durable.core.fold import evolve
from durable.core.state import RunState
from durable.core.step import EXECUTOR_LOST

__all__ = ["Attempt", "AttemptStatus", "AttemptsView", "attempts_of"]

AttemptStatus: TypeAlias = Literal[
    "queued", "running", "succeeded", "failed", "lost", "cancelled", "skipped"
]

_Key = tuple[str, int, int]  # (task, generation, attempt)


class Attempt(msgspec.Struct, frozen=True, kw_only=True):
    """One attempt of a task in one generation (``attempt`` 0: the task ended without
    any, skipped or cancelled before its first)."""

    task: str
    generation: int
    attempt: int
    status: AttemptStatus
    scheduled_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: ErrorInfo | None = None


class AttemptsView(msgspec.Struct, frozen=True, kw_only=True):
    """A run's attempts in the order they were scheduled, and the run's own span."""

    attempts: tuple[Attempt, ...]
    created_at: datetime
    finished_at: datetime | None
    """None while the run goes on (a rerun reopens it)."""


def attempts_of(records: Iterable[Recorded]) -> AttemptsView | None:
    """The attempts of the run whose events are ``records`` (its whole stream, or a
    prefix of it); ``None`` when there are none. Raises
    :class:`~durable.core.errors.InvalidTransition` for an inconsistent history."""
    found: dict[_Key, Attempt] = {}
    unfinished: dict[str, _Key] = {}  # task -> its queued or running attempt
    state: RunState | None = None

    def end(task: str, status: AttemptStatus, at: datetime, error: ErrorInfo | None) -> None:
        key = unfinished.pop(task, None)
        if key is not None:
            found[key] = replace(found[key], status=status, finished_at=at, error=error)

    def without_attempt(task: str, generation: int, status: AttemptStatus, at: datetime) -> None:
        found[(task, generation, 0)] = Attempt(
            task=task, generation=generation, attempt=0, status=status, finished_at=at
        )

    for recorded in records:
        before = state
        state = evolve(state, recorded)  # raises first if the event cannot happen here
        event = run_event(recorded.event, where=f"{recorded.stream_id} seq {recorded.seq}")
        at = recorded.recorded_at
        match event:
            case TaskScheduled():
                key = (event.task, event.generation, event.attempt)
                found[key] = Attempt(
                    task=event.task,
                    generation=event.generation,
                    attempt=event.attempt,
                    status="queued",
                    scheduled_at=at,
                )
                unfinished[event.task] = key
            case TaskMapped():
                key = (event.task, event.generation, 1)
                found[key] = Attempt(
                    task=event.task,
                    generation=event.generation,
                    attempt=1,
                    status="running",
                    scheduled_at=at,
                    started_at=at,
                )
                unfinished[event.task] = key
            case TaskStarted():
                key = unfinished[event.task]  # the fold checked it is scheduled
                found[key] = replace(found[key], status="running", started_at=at)
            case TaskSucceeded():
                end(event.task, "succeeded", at, None)
            case TaskRetryScheduled() | TaskFailed():
                lost = event.error.type == EXECUTOR_LOST
                end(event.task, "lost" if lost else "failed", at, event.error)
            case TaskSkipped() if event.attempt is not None and event.task in unfinished:
                end(event.task, "skipped", at, None)  # a soft_fail sensor ran out of time
            case TaskSkipped():
                without_attempt(event.task, event.generation, "skipped", at)
            case TaskCancelled():
                if event.task in unfinished:
                    end(event.task, "cancelled", at, None)
                elif before is not None and before.tasks[event.task].status == "pending":
                    without_attempt(event.task, event.generation, "cancelled", at)
            case RunFailed() | RunCancelled():
                # the run takes its unfinished tasks with it (as the fold does); a task
                # waiting to retry has no attempt left open: its last one already ended
                for t in before.tasks.values() if before is not None else ():
                    if t.name in unfinished:
                        end(t.name, "cancelled", at, None)
                    elif t.status == "pending":
                        without_attempt(t.name, t.generation, "cancelled", at)
            case (
                RunCreated()
                | TaskWaiting()
                | RunStarted()
                | RunPaused()
                | RunResumed()
                | RunSucceeded()
                | RerunRequested()
                | RerunQueued()
                | NotificationRequested()
                | NotificationSent()
                | NotificationFailed()
                | SlaMissed()
            ):
                pass
            case _:
                assert_never(event)
    if state is None:
        return None
    return AttemptsView(
        attempts=tuple(found.values()), created_at=state.created_at, finished_at=state.finished_at
    )

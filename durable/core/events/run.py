"""The events of a run's stream (``run:{run_id}``): its creation, its tasks' attempts,
its end, pause and resume, partial reruns, and its notifications and SLA misses
(:mod:`~durable.core.events.notify`). The run fold
(:func:`durable.core.fold.evolve`) reads only these.

Pure. A tag is never renamed; a changed shape gets a version and an upcaster
(:mod:`durable.core.events.codec`).
"""

from __future__ import annotations

import typing
from datetime import datetime
from typing import Any, TypeAlias

from durable.core.events.notify import (
    NotificationFailed,
    NotificationRequested,
    NotificationSent,
    SlaMissed,
)
from durable.core.events.values import ErrorInfo, EventBase, TaskNode, Trigger

__all__ = [
    "RUN_EVENT_TYPES",
    "RerunQueued",
    "RerunRequested",
    "RunCancelled",
    "RunCreated",
    "RunEvent",
    "RunFailed",
    "RunPaused",
    "RunResumed",
    "RunStarted",
    "RunSucceeded",
    "TaskCancelled",
    "TaskFailed",
    "TaskMapped",
    "TaskRetryScheduled",
    "TaskScheduled",
    "TaskSkipped",
    "TaskStarted",
    "TaskSucceeded",
    "TaskWaiting",
    "run_stream",
]


def run_stream(run_id: str) -> str:
    """The stream id of a run's log."""
    return f"run:{run_id}"


class RunCreated(EventBase, frozen=True, kw_only=True, tag="run_created"):
    """A run came into being, pinned to one version of its workflow."""

    run_id: str
    workflow: str
    version: str
    tasks: tuple[TaskNode, ...]
    params: dict[str, Any] = {}  # noqa: RUF012 (a Struct copies an empty default per instance)
    trigger: Trigger = Trigger(kind="manual")
    idempotency_key: str | None = None


class RunStarted(EventBase, frozen=True, kw_only=True, tag="run_started"):
    """An executor began working on the run."""

    executor: str | None = None


class TaskScheduled(EventBase, frozen=True, kw_only=True, tag="task_scheduled"):
    """An attempt of a task is ready to run (its upstream tasks are done).

    ``not_before``: the attempt must not start earlier (a durable sleep, recorded so a
    restart keeps the same wake-up time).
    """

    task: str
    generation: int
    attempt: int
    not_before: datetime | None = None


class TaskMapped(EventBase, frozen=True, kw_only=True, tag="task_mapped"):
    """A map task fanned out into ``count`` child tasks, ``task[0]`` … ``task[count-1]``,
    one per item of its upstream list; it succeeds with their outputs once all did."""

    task: str
    generation: int
    count: int


class TaskStarted(EventBase, frozen=True, kw_only=True, tag="task_started"):
    """An executor started an attempt of a task."""

    task: str
    generation: int
    attempt: int
    executor: str | None = None


class TaskWaiting(EventBase, frozen=True, kw_only=True, tag="task_waiting"):
    """A running attempt handed its work to something else (an external job submitted,
    a sensor's first poke) and waits for it without holding a slot. ``job`` is what it
    needs to find that work again (the job's id, its status URL, a process's files):
    an executor that takes the run over polls the same job, never submits another."""

    task: str
    generation: int
    attempt: int
    job: dict[str, Any] = {}  # noqa: RUF012 (a Struct copies an empty default per instance)
    state: str = ""
    """The external state when it was submitted (``PENDING``), for people."""


class TaskSucceeded(EventBase, frozen=True, kw_only=True, tag="task_succeeded"):
    """A task attempt finished; its output is recorded exactly once."""

    task: str
    generation: int
    attempt: int
    output: Any = None
    assets: tuple[str, ...] = ()
    """Assets (tables, files) the task declares it produces: updated by this completion."""


class TaskRetryScheduled(EventBase, frozen=True, kw_only=True, tag="task_retry_scheduled"):
    """A task attempt failed and will be retried at ``retry_at``."""

    task: str
    generation: int
    attempt: int
    error: ErrorInfo
    retry_at: datetime


class TaskFailed(EventBase, frozen=True, kw_only=True, tag="task_failed"):
    """A task attempt failed for good (no retries left, or not retryable)."""

    task: str
    generation: int
    attempt: int
    error: ErrorInfo


class TaskSkipped(EventBase, frozen=True, kw_only=True, tag="task_skipped"):
    """A task will not run in this generation (untaken branch, failed upstream), or its
    running ``attempt`` gave up softly (a sensor with ``soft_fail`` out of time)."""

    task: str
    generation: int
    reason: str
    attempt: int | None = None


class TaskCancelled(EventBase, frozen=True, kw_only=True, tag="task_cancelled"):
    """A pending or running task was cancelled with its run."""

    task: str
    generation: int
    reason: str = ""


class RunSucceeded(EventBase, frozen=True, kw_only=True, tag="run_succeeded"):
    """Every task of the run succeeded or was skipped."""


class RunFailed(EventBase, frozen=True, kw_only=True, tag="run_failed"):
    """The run ended because a task failed for good, or it ran out of time."""

    reason: str
    failed_tasks: tuple[str, ...] = ()


class RunCancelled(EventBase, frozen=True, kw_only=True, tag="run_cancelled"):
    """The run was cancelled by a user or a policy."""

    reason: str = ""
    by: str | None = None


class RunPaused(EventBase, frozen=True, kw_only=True, tag="run_paused"):
    """No new task is scheduled until the run is resumed; running tasks may finish."""

    reason: str = ""
    by: str | None = None


class RunResumed(EventBase, frozen=True, kw_only=True, tag="run_resumed"):
    """A paused run continues from its log."""

    by: str | None = None


class RerunRequested(EventBase, frozen=True, kw_only=True, tag="rerun_requested"):
    """Run ``tasks`` again (and, with ``downstream``, all that depends on them).

    The fold moves them to a new generation; upstream outputs are kept. A request id is
    applied once.
    """

    request_id: str
    tasks: tuple[str, ...]
    downstream: bool = False
    failed_only: bool = False
    by: str | None = None


class RerunQueued(EventBase, frozen=True, kw_only=True, tag="rerun_queued"):
    """A rerun asked for while the run was still going: it is applied (as a
    ``RerunRequested`` with the same request id) once the run succeeds or fails, and
    dropped if the run is cancelled."""

    request_id: str
    tasks: tuple[str, ...]
    downstream: bool = False
    failed_only: bool = False
    by: str | None = None


RunEvent: TypeAlias = (
    RunCreated
    | RunStarted
    | TaskScheduled
    | TaskMapped
    | TaskStarted
    | TaskWaiting
    | TaskSucceeded
    | TaskRetryScheduled
    | TaskFailed
    | TaskSkipped
    | TaskCancelled
    | RunSucceeded
    | RunFailed
    | RunCancelled
    | RunPaused
    | RunResumed
    | RerunRequested
    | RerunQueued
    | NotificationRequested
    | NotificationSent
    | NotificationFailed
    | SlaMissed
)
"""Every event a run's stream may hold (the notification outbox's and ``sla_missed`` too:
they never change what the run does)."""

RUN_EVENT_TYPES: tuple[type[RunEvent], ...] = typing.get_args(RunEvent)

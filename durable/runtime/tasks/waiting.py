"""Task kinds that hand their work to something else and wait for it: external jobs
(``job``), Spark applications (``spark``), sensors (``sensor``).

An attempt of such a kind runs in two phases. With a slot, it *submits* (sends the job,
starts the process; a sensor has nothing to submit) and the driver records what finds
that work again — the job's id, its status URL, a process's files — in a
``task_waiting`` event, committed before any wait. Then it gives its slot back and
*polls* between timers, holding neither a slot nor a thread, until the work is done,
has failed, or the attempt's ``timeout`` (counted from its recorded start, so a restart
keeps it) runs out. An executor that takes the run over finds the recorded job and
polls it again: it never submits a second one. A cancelled run (or a timeout) cancels
the work; an executor that only stops leaves it running for the next one.

Each kind is a :class:`Waiter`: ``submit``, ``poll``, ``cancel`` and the interval
between polls. :func:`waiter_for` finds a task's.

A submission carries an idempotency key (:func:`submission_key`) that a server honouring
it uses to start at most one job per key. It is ``run/task/generation/attempt``, except
that an attempt following one that may have submitted without recording it (its
executor was lost, its submission got no answer or timed out) reuses that attempt's
key: a crash between the server's answer and the commit of ``task_waiting`` then finds
the same job again instead of starting a second one.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol

import msgspec

from durable.core.events import Recorded, TaskRetryScheduled, TaskStarted, TaskWaiting
from durable.core.step import EXECUTOR_LOST
from durable.core.tasks import TaskSpec

if TYPE_CHECKING:
    from durable.runtime.tasks import Resources
    from durable.workflows.context import TaskContext

__all__ = [
    "UNANSWERED",
    "Done",
    "Pending",
    "Submitted",
    "Waiter",
    "backoff",
    "register",
    "submission_attempt",
    "submission_key",
    "waiter_for",
]

UNANSWERED = "SubmitUnanswered"
"""The error type of an attempt whose submission got no answer (it may have started the
work): the next attempt submits with the same key."""
REUSE_KEY: frozenset[str] = frozenset({EXECUTOR_LOST, UNANSWERED, "TaskTimeout"})
"""Ends of an attempt after which its submission may exist unrecorded (when it recorded
no ``task_waiting``: a timeout while submitting, say, not while polling)."""

_KEY: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "durable_submission_key", default=None
)


class Submitted(msgspec.Struct, frozen=True, kw_only=True):
    """What a submission started: ``job`` (plain JSON data) finds it again; ``state`` is
    its state as the other side said it, for people."""

    job: dict[str, Any]
    state: str = ""


class Pending(msgspec.Struct, frozen=True, kw_only=True):
    """Not done yet (``state``: the other side's word for it, for people)."""

    state: str = ""


class Done(msgspec.Struct, frozen=True, kw_only=True):
    """Done: the attempt succeeds with ``output`` (JSON data)."""

    output: Any = None


class Waiter(Protocol):
    """How one kind submits, polls and cancels its work. A poll that finds the work
    failed raises :class:`~durable.core.errors.TaskError` (``retryable`` says whether a
    new attempt, submitting again, can help); any other exception from a poll is a
    passing trouble: it is logged and the next poll tries again.

    A waiter with ``replays_log = True`` writes its work's whole output again when an
    attempt is resumed after a takeover, numbered from line 1: the driver then does not
    continue the attempt's log numbering after the lines stored before."""

    async def submit(self, spec: Any, ctx: TaskContext, resources: Resources) -> Submitted: ...

    async def poll(
        self, spec: Any, job: dict[str, Any], ctx: TaskContext, resources: Resources
    ) -> Pending | Done: ...

    async def cancel(
        self, spec: Any, job: dict[str, Any], ctx: TaskContext, resources: Resources
    ) -> None: ...

    def interval(self, spec: Any, polls: int) -> float:
        """Seconds before poll number ``polls`` (0: the first after submitting)."""
        ...


_WAITERS: dict[str, Waiter] = {}
_loaded: list[bool] = []


def register(kind: str, waiter: Waiter) -> None:
    """Make ``waiter`` run the tasks of ``kind``."""
    _WAITERS[kind] = waiter


def waiter_for(spec: TaskSpec) -> Waiter | None:
    """The waiter of ``spec``'s kind, or None when its attempts run in one go."""
    if not _loaded:  # not "no waiter yet": one module may have been imported directly
        _load()
        _loaded.append(True)
    return _WAITERS.get(spec.kind)


def submission_key(ctx: TaskContext) -> str:
    """The idempotency key of the submission the current attempt makes: the one the driver
    chose (:func:`submission_attempt`), else ``run/task/generation/attempt``."""
    return _KEY.get() or f"{ctx.idempotency_key}/{ctx.attempt}"


def use_submission_key(key: str) -> None:
    """Set the key of the current attempt's submission (the driver, in the attempt's own
    asyncio task, before it calls ``submit``)."""
    _KEY.set(key)


def submission_attempt(
    records: Iterable[Recorded], task: str, generation: int, attempt: int
) -> int:
    """The attempt whose key ``attempt`` of ``task`` submits with: its own, or that of the
    attempt before when that one may have submitted without recording it (it ended lost,
    unanswered or timed out — :data:`REUSE_KEY` — with no ``task_waiting``), and so on
    back. Pure."""
    waited: set[int] = set()
    ended: dict[int, str] = {}
    started: set[int] = set()
    for r in records:
        e = r.event
        if getattr(e, "task", None) != task or getattr(e, "generation", None) != generation:
            continue
        if isinstance(e, TaskStarted):
            started.add(e.attempt)
        elif isinstance(e, TaskWaiting):
            waited.add(e.attempt)
        elif isinstance(e, TaskRetryScheduled):
            ended[e.attempt] = e.error.type
    key = attempt
    while (
        key > 1
        and (key - 1) in started
        and (key - 1) not in waited
        and ended.get(key - 1) in REUSE_KEY
    ):
        key -= 1
    return key


def _load() -> None:
    # each module registers its waiter on import
    import importlib

    for module in ("job", "spark", "sensors"):
        try:
            importlib.import_module(f"durable.runtime.tasks.{module}")
        except ModuleNotFoundError as exc:
            if exc.name != f"durable.runtime.tasks.{module}":
                raise


def backoff(first: float, factor: float, cap: float, polls: int) -> float:
    """``first``, then ``factor`` times longer each poll, at most ``cap``."""
    return float(min(cap, first * factor ** min(polls, 64)))

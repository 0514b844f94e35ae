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
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import msgspec

from durable.core.tasks import TaskSpec

if TYPE_CHECKING:
    from durable.runtime.tasks import Resources
    from durable.workflows.context import TaskContext

__all__ = ["Done", "Pending", "Submitted", "Waiter", "waiter_for"]


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
    passing trouble: it is logged and the next poll tries again."""

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


def register(kind: str, waiter: Waiter) -> None:
    """Make ``waiter`` run the tasks of ``kind``."""
    _WAITERS[kind] = waiter


def waiter_for(spec: TaskSpec) -> Waiter | None:
    """The waiter of ``spec``'s kind, or None when its attempts run in one go."""
    if not _WAITERS:
        _load()
    return _WAITERS.get(spec.kind)


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

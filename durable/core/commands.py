"""Operators' commands on a run (cancel, pause, resume, rerun) and the events they make.

Pure. :func:`decide_command` is what the application layer appends for a command; a
command already in effect gives ``[]`` (a redelivered command is a no-op), one that
cannot apply raises :class:`CommandRejected`. The commands are also inputs of
:func:`durable.core.step.step`.
"""

from __future__ import annotations

from typing import TypeAlias, TypeVar

import msgspec

from durable.core.errors import DurableError
from durable.core.events import (
    Event,
    RerunQueued,
    RerunRequested,
    RunCancelled,
    RunPaused,
    RunResumed,
)
from durable.core.state import RunState, rerun_plan

__all__ = [
    "Cancel",
    "Command",
    "CommandRejected",
    "Pause",
    "Rerun",
    "Resume",
    "UnknownTask",
    "decide_command",
    "rerun_event",
]


class CommandRejected(DurableError):
    """A command that cannot apply to the run in its current state."""


class UnknownTask(CommandRejected):
    """A command naming a task the run does not have: the request is wrong, not the
    run's state (the API answers 400, not 409)."""


class Cancel(msgspec.Struct, frozen=True, kw_only=True, tag="cancel"):
    reason: str = "cancelled by user"
    by: str | None = None


class Pause(msgspec.Struct, frozen=True, kw_only=True, tag="pause"):
    reason: str = ""
    by: str | None = None


class Resume(msgspec.Struct, frozen=True, kw_only=True, tag="resume"):
    by: str | None = None


class Rerun(msgspec.Struct, frozen=True, kw_only=True, tag="rerun"):
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


Command: TypeAlias = Cancel | Pause | Resume | Rerun


def decide_command(state: RunState, command: Command) -> list[Event]:
    """The events of an operator's command; ``[]`` when it is already in effect."""
    match command:
        case Cancel():
            return _cancel(state, command)
        case Pause():
            return _pause(state, command)
        case Resume():
            return _resume(state, command)
        case Rerun():
            return _rerun(state, command)


def _cancel(state: RunState, command: Cancel) -> list[Event]:
    if state.status == "cancelled":
        return []
    if state.is_terminal:
        raise CommandRejected(
            f"run {state.run_id} already {state.status}; there is nothing to cancel"
        )
    return [RunCancelled(reason=command.reason, by=command.by)]


def _pause(state: RunState, command: Pause) -> list[Event]:
    if state.status == "paused":
        return []
    if state.is_terminal:
        raise CommandRejected(f"run {state.run_id} is {state.status}; it cannot pause")
    return [RunPaused(reason=command.reason, by=command.by)]


def _resume(state: RunState, command: Resume) -> list[Event]:
    if state.status in ("running", "pending"):
        return []
    if state.status != "paused":
        raise CommandRejected(f"run {state.run_id} is {state.status}; only a paused run resumes")
    return [RunResumed(by=command.by)]


def _rerun(state: RunState, command: Rerun) -> list[Event]:
    if command.request_id in state.reruns or any(
        q.request_id == command.request_id for q in state.queued
    ):
        return []  # already applied or queued: a redelivered request reruns nothing
    top = [n for n, t in state.tasks.items() if t.parent is None]
    unknown = [t for t in command.tasks if t not in top]
    if unknown or not command.tasks:
        raise UnknownTask(
            f"run {state.run_id} has no task {', '.join(unknown) or '(none given)'}",
            hint=f"tasks: {', '.join(top)}",
        )
    if not state.is_terminal:
        if command.queue and state.status != "cancelled":
            return [rerun_event(RerunQueued, command)]
        raise CommandRejected(
            f"run {state.run_id} is {state.status}; a rerun needs a finished run",
            hint="wait for it to finish, cancel it first, or queue the rerun "
            '(--queue; "queue": true) to apply it when the run ends',
        )
    chosen, _ = rerun_plan(
        state, command.tasks, downstream=command.downstream, failed_only=command.failed_only
    )
    if not chosen:
        raise CommandRejected(
            f"nothing to rerun in run {state.run_id}: the selected tasks all succeeded",
            hint="drop --failed-only to rerun them anyway",
        )
    return [rerun_event(RerunRequested, command)]


_R = TypeVar("_R", RerunRequested, RerunQueued)


def rerun_event(kind: type[_R], asked: Rerun | RerunQueued) -> _R:
    """A rerun request (or a queued one) as the event ``kind``."""
    return kind(
        request_id=asked.request_id,
        tasks=asked.tasks,
        downstream=asked.downstream,
        failed_only=asked.failed_only,
        by=asked.by,
    )

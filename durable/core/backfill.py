"""Backfills as data: which intervals a backfill covers, and its state from its stream.

Pure. A backfill's runs use the schedule's dedup key (``schedule:{workflow}:{logical
time}``), so asking again for intervals already covered creates no new runs; what
happens to existing runs is the backfill's ``reprocess`` policy.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Literal, TypeAlias, assert_never

import msgspec

from durable.core.errors import DurableError
from durable.core.events import (
    BackfillCancelled,
    BackfillEvent,
    BackfillFinished,
    BackfillPaused,
    BackfillRequested,
    BackfillResumed,
    Event,
    NotificationFailed,
    NotificationRequested,
    NotificationSent,
    backfill_event,
    backfill_stream,
)
from durable.core.notify import KeyedRule, requests_for, summary_of
from durable.core.schedule import Schedule, Tick, fire_times, next_fire

__all__ = [
    "BackfillCommand",
    "BackfillState",
    "CancelBackfill",
    "FinishBackfill",
    "PauseBackfill",
    "RequestBackfill",
    "ResumeBackfill",
    "backfill_outcome",
    "backfill_state",
    "decide_backfill",
    "evolve_backfill",
    "intervals",
    "same_request",
]


def intervals(schedule: Schedule, start: datetime, end: datetime) -> list[Tick]:
    """The schedule's intervals whose logical time (their start) is in ``[start, end)``."""
    tiny = timedelta(microseconds=1)
    starts = fire_times(schedule, start - tiny, end - tiny)
    if not starts:
        return []
    ends = [*starts[1:], next_fire(schedule, starts[-1])]
    return [Tick(start=s, end=e) for s, e in zip(starts, ends, strict=True)]


class BackfillState(msgspec.Struct, frozen=True, kw_only=True):
    request: BackfillRequested
    status: str  # running | paused | cancelled
    finished: str | None = None
    """Once every interval's run ended: succeeded, failed or cancelled (recorded once)."""
    last_seq: int = 1


def backfill_state(events: Iterable[Event]) -> BackfillState | None:
    """Fold a backfill's stream; ``None`` before its request.

    Raises :class:`~durable.core.errors.MalformedEvent` for an event that is not a
    backfill's (a run's or a schedule's event cannot be in a backfill's stream).
    """
    state: BackfillState | None = None
    for e in events:
        state = evolve_backfill(state, backfill_event(e, where="a backfill's stream"))
    return state


def evolve_backfill(state: BackfillState | None, event: BackfillEvent) -> BackfillState | None:
    """The backfill's state after ``event``. A pause, resume or cancel that does not
    apply (nothing requested yet, already paused, ...) leaves the state as it is."""
    if state is not None:
        state = msgspec.structs.replace(state, last_seq=state.last_seq + 1)
    match event:
        case BackfillRequested():
            return BackfillState(request=event, status="running")
        case BackfillPaused():
            if state is not None and state.status == "running":
                return msgspec.structs.replace(state, status="paused")
            return state
        case BackfillResumed():
            if state is not None and state.status == "paused":
                return msgspec.structs.replace(state, status="running")
            return state
        case BackfillCancelled():
            if state is not None:
                return msgspec.structs.replace(state, status="cancelled")
            return state
        case BackfillFinished():
            if state is not None:
                return msgspec.structs.replace(state, finished=event.status)
            return state
        case NotificationRequested() | NotificationSent() | NotificationFailed():
            return state
        case _:
            assert_never(event)


_ENDED = ("succeeded", "failed", "cancelled")


def backfill_outcome(state: BackfillState, progress: Mapping[str, int]) -> str:
    """What a backfill amounts to, given the statuses of the runs covering its intervals
    (``progress``): ``running`` or ``paused`` while runs remain, ``cancelled`` once
    cancelled, and, once every interval's run ended, ``succeeded`` — or ``failed`` when
    any of them failed or was cancelled."""
    if state.status == "cancelled":
        return "cancelled"
    if sum(progress.get(s, 0) for s in _ENDED) < state.request.intervals:
        return state.status
    return "failed" if progress.get("failed", 0) or progress.get("cancelled", 0) else "succeeded"


def same_request(a: BackfillRequested, b: BackfillRequested) -> bool:
    """Whether two requests ask for the same thing (a repeat creates no new runs unless
    its ``reprocess`` reruns them)."""
    return (a.workflow, a.start, a.end, a.reprocess, a.max_parallel) == (
        b.workflow,
        b.start,
        b.end,
        b.reprocess,
        b.max_parallel,
    )


# -- decisions on a backfill's stream ---------------------------------------------------


class RequestBackfill(msgspec.Struct, frozen=True, kw_only=True):
    request: BackfillRequested


class PauseBackfill(msgspec.Struct, frozen=True, kw_only=True):
    by: str | None = None


class ResumeBackfill(msgspec.Struct, frozen=True, kw_only=True):
    by: str | None = None


class CancelBackfill(msgspec.Struct, frozen=True, kw_only=True):
    by: str | None = None


class FinishBackfill(msgspec.Struct, frozen=True, kw_only=True):
    """Record the backfill's end if its runs all ended (``progress``: their statuses),
    with a notification per rule of its workflow that listens to ``backfill_finished``."""

    progress: dict[str, int]
    rules: tuple[KeyedRule, ...] = ()


BackfillCommand: TypeAlias = (
    RequestBackfill | PauseBackfill | ResumeBackfill | CancelBackfill | FinishBackfill
)


def decide_backfill(state: BackfillState | None, command: BackfillCommand) -> list[Event]:
    """The events a command appends to a backfill's stream; ``[]`` when already in
    effect. Raises :class:`DurableError` when it cannot apply (no such backfill, or
    resuming a cancelled one)."""
    if isinstance(command, RequestBackfill):
        return [command.request] if state is None else []
    if state is None:
        raise DurableError("no such backfill", hint="`durable backfills` lists them")
    bid = state.request.backfill_id
    match command:
        case FinishBackfill():
            return _finish(state, command)
        case CancelBackfill():
            return [] if state.status == "cancelled" else [BackfillCancelled(by=command.by)]
        case PauseBackfill() | ResumeBackfill():
            wanted = "paused" if isinstance(command, PauseBackfill) else "running"
            if state.status == wanted:
                return []
            if state.status == "cancelled":
                raise DurableError(f"backfill {bid} was cancelled")
            if isinstance(command, PauseBackfill):
                return [BackfillPaused(by=command.by)]
            return [BackfillResumed(by=command.by)]
        case RequestBackfill():  # pragma: no cover - answered above
            return []


def _finish(state: BackfillState, command: FinishBackfill) -> list[Event]:
    if state.finished is not None:
        return []
    progress = command.progress
    if state.status == "cancelled":
        if any(progress.get(s, 0) for s in ("pending", "running", "paused")):
            return []
        status: Literal["succeeded", "failed", "cancelled"] = "cancelled"
    else:
        outcome = backfill_outcome(state, progress)
        if outcome not in ("succeeded", "failed"):
            return []
        status = "succeeded" if outcome == "succeeded" else "failed"
    r = state.request
    runs = {k: v for k, v in sorted(progress.items()) if v}
    fields = {
        "workflow": r.workflow,
        "backfill_id": r.backfill_id,
        "status": status,
        "event": "backfill_finished",
        "runs": runs,
        "logical_time": f"{r.start.isoformat()} to {r.end.isoformat()}",
    }
    fields["summary"] = summary_of("backfill_finished", fields)
    return [
        BackfillFinished(status=status, runs=runs),
        *requests_for(
            backfill_stream(r.backfill_id),
            state.last_seq + 1,
            "backfill_finished",
            fields,
            command.rules,
            incident=f"durable:{r.workflow}:{r.backfill_id}",
            failed=status != "succeeded",
        ),
    ]

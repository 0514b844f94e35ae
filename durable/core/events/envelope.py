"""Every event of every stream, the envelope the store records them in, and which kind
of stream a stream id names.

There are three kinds of stream, each with its own union of events: a run
(:data:`~durable.core.events.run.RunEvent`), a schedule
(:data:`~durable.core.events.schedule.ScheduleEvent`) and a backfill
(:data:`~durable.core.events.backfill.BackfillEvent`). The store and the codec deal in
:data:`Event`, the union of all three; a fold first narrows an event to its stream's
union (:func:`run_event`, :func:`schedule_event`, :func:`backfill_event`) and then
matches exhaustively on that.

Pure. Times are the store's commit times and arrive in the envelope (:class:`Recorded`).
"""

from __future__ import annotations

import typing
from datetime import datetime
from typing import Literal, TypeAlias

import msgspec

from durable.core.errors import MalformedEvent
from durable.core.events.backfill import BACKFILL_EVENT_TYPES, BackfillEvent
from durable.core.events.run import RUN_EVENT_TYPES, RunEvent
from durable.core.events.schedule import SCHEDULE_EVENT_TYPES, ScheduleEvent

__all__ = [
    "EVENT_TYPES",
    "STREAM_KINDS",
    "Event",
    "Recorded",
    "StreamKind",
    "backfill_event",
    "event_type",
    "run_event",
    "schedule_event",
    "stream_kind",
]

Event: TypeAlias = RunEvent | ScheduleEvent | BackfillEvent
"""Every event durable stores, whatever its stream (the store's and the codec's union).

The notification outbox's events are in both a run's and a backfill's union: here they
count once, where a run's union has them."""

EVENT_TYPES: tuple[type[Event], ...] = typing.get_args(Event)

StreamKind: TypeAlias = Literal["run", "schedule", "backfill"]

STREAM_KINDS: dict[StreamKind, tuple[type[Event], ...]] = {
    "run": RUN_EVENT_TYPES,
    "schedule": SCHEDULE_EVENT_TYPES,
    "backfill": BACKFILL_EVENT_TYPES,
}
"""The event classes each kind of stream may hold."""


def stream_kind(stream_id: str) -> StreamKind:
    """The kind of a stream, from its id's prefix (``run:``, ``schedule:``, ``backfill:``).

    Raises :class:`MalformedEvent` for an id of no known kind.
    """
    prefix, sep, rest = stream_id.partition(":")
    if sep and rest:
        for kind in STREAM_KINDS:
            if prefix == kind:
                return kind
    raise MalformedEvent(
        f"stream id {stream_id!r}",
        "names no kind of stream",
        hint="a stream id is run:{run_id}, schedule:{workflow} or backfill:{backfill_id}",
    )


def event_type(event: Event) -> str:
    """The stable tag of an event, e.g. ``"task_succeeded"``."""
    return type(event).__struct_config__.tag  # type: ignore[return-value,unused-ignore]


def run_event(event: Event, *, where: str) -> RunEvent:
    """``event`` as a run's event; :class:`MalformedEvent` naming ``where`` if it is not."""
    if isinstance(event, RUN_EVENT_TYPES):
        return event
    raise _foreign(event, "run", where)


def schedule_event(event: Event, *, where: str) -> ScheduleEvent:
    """``event`` as a schedule's event; :class:`MalformedEvent` naming ``where`` if not."""
    if isinstance(event, SCHEDULE_EVENT_TYPES):
        return event
    raise _foreign(event, "schedule", where)


def backfill_event(event: Event, *, where: str) -> BackfillEvent:
    """``event`` as a backfill's event; :class:`MalformedEvent` naming ``where`` if not."""
    if isinstance(event, BACKFILL_EVENT_TYPES):
        return event
    raise _foreign(event, "backfill", where)


def _foreign(event: Event, kind: StreamKind, where: str) -> MalformedEvent:
    return MalformedEvent(
        where,
        f"{event_type(event)} is not an event of a {kind}'s stream",
        hint=f"a {kind}'s stream holds only {', '.join(_tags(kind))}",
    )


def _tags(kind: StreamKind) -> list[str]:
    return [t.__struct_config__.tag for t in STREAM_KINDS[kind]]  # type: ignore[misc]


class Recorded(msgspec.Struct, frozen=True, kw_only=True):
    """An event as the store recorded it.

    ``seq`` numbers the events of one stream from 1; ``position`` orders all events of
    the store by commit; ``recorded_at`` is the commit time.
    """

    stream_id: str
    seq: int
    position: int
    recorded_at: datetime
    event: Event

"""The events of a backfill's stream (``backfill:{backfill_id}``): the request, pause,
resume, cancel and end, and the end's notifications. The backfill fold (:func:`durable.core.backfill.backfill_state`)
reads only these.

Pure. A tag is never renamed; a changed shape gets a version and an upcaster.
"""

from __future__ import annotations

import typing
from datetime import datetime
from typing import Literal, TypeAlias

from durable.core.events.notify import NotificationFailed, NotificationRequested, NotificationSent
from durable.core.events.values import EventBase

__all__ = [
    "BACKFILL_EVENT_TYPES",
    "BackfillCancelled",
    "BackfillEvent",
    "BackfillFinished",
    "BackfillPaused",
    "BackfillRequested",
    "BackfillResumed",
    "backfill_stream",
]


def backfill_stream(backfill_id: str) -> str:
    """The stream id of a backfill."""
    return f"backfill:{backfill_id}"


class BackfillRequested(EventBase, frozen=True, kw_only=True, tag="backfill_requested"):
    """A backfill: one run per schedule interval whose logical time is in [start, end)."""

    backfill_id: str
    workflow: str
    start: datetime
    end: datetime
    intervals: int
    max_parallel: int | None = None
    reprocess: Literal["none", "failed", "all"] = "none"
    by: str | None = None


class BackfillPaused(EventBase, frozen=True, kw_only=True, tag="backfill_paused"):
    """No new run of the backfill starts; running ones finish."""

    by: str | None = None


class BackfillResumed(EventBase, frozen=True, kw_only=True, tag="backfill_resumed"):
    by: str | None = None


class BackfillCancelled(EventBase, frozen=True, kw_only=True, tag="backfill_cancelled"):
    """The backfill stops; its unfinished runs are cancelled."""

    by: str | None = None


class BackfillFinished(EventBase, frozen=True, kw_only=True, tag="backfill_finished"):
    """Every interval's run ended: ``status`` is ``succeeded``, or ``failed`` when any of
    them failed or was cancelled; ``runs`` counts them by status. Recorded once, by the
    notifier, with the notifications it causes."""

    status: Literal["succeeded", "failed", "cancelled"]
    runs: dict[str, int] = {}  # noqa: RUF012 (a Struct copies an empty default per instance)


BackfillEvent: TypeAlias = (
    BackfillRequested
    | BackfillPaused
    | BackfillResumed
    | BackfillCancelled
    | BackfillFinished
    | NotificationRequested
    | NotificationSent
    | NotificationFailed
)
"""Every event a backfill's stream may hold."""

BACKFILL_EVENT_TYPES: tuple[type[BackfillEvent], ...] = typing.get_args(BackfillEvent)

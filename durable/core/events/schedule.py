"""The events of a schedule's stream (``schedule:{workflow}``): pause and resume.

Pure. The stream holds only these; a schedule's runs live in their own run streams.
"""

from __future__ import annotations

import typing
from typing import TypeAlias

from durable.core.events.values import EventBase

__all__ = [
    "SCHEDULE_EVENT_TYPES",
    "ScheduleEvent",
    "SchedulePaused",
    "ScheduleResumed",
    "schedule_stream",
]


def schedule_stream(workflow: str) -> str:
    """The stream id of a workflow's schedule."""
    return f"schedule:{workflow}"


class SchedulePaused(EventBase, frozen=True, kw_only=True, tag="schedule_paused"):
    """A schedule stops creating runs (in the ``schedule:{workflow}`` stream)."""

    reason: str = ""
    by: str | None = None


class ScheduleResumed(EventBase, frozen=True, kw_only=True, tag="schedule_resumed"):
    """A paused schedule creates runs again (missed ticks: as its catch-up policy says)."""

    by: str | None = None


ScheduleEvent: TypeAlias = SchedulePaused | ScheduleResumed
"""Every event a schedule's stream may hold."""

SCHEDULE_EVENT_TYPES: tuple[type[ScheduleEvent], ...] = typing.get_args(ScheduleEvent)

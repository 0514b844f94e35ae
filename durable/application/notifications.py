"""Notifications as an operator sees them: what was asked for, what was sent, what failed
and why — read from the log (``durable notifications``, ``GET /api/v1/notifications``)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Literal

import msgspec

from durable.core.events import (
    NotificationFailed,
    NotificationRequested,
    NotificationSent,
    Recorded,
    run_stream,
)
from durable.store.base import EventStore

__all__ = ["NotificationView", "list_notifications", "notifications_of"]

PAGE = 5000


class NotificationView(msgspec.Struct, kw_only=True):
    """One notification: its cause, its channel, and where its delivery is."""

    notification_id: str
    stream_id: str
    on: str
    channel: str
    rule: str
    status: Literal["pending", "sent", "failed"]
    workflow: str
    summary: str
    requested_at: datetime
    run_id: str | None = None
    action: str | None = None
    settled_at: datetime | None = None
    attempts: int = 0
    detail: str = ""
    """What the receiver said (sent), or why it failed."""


def notifications_of(records: Iterable[Recorded]) -> list[NotificationView]:
    """The notifications in ``records`` (any streams, in commit order), oldest first."""
    found: dict[str, NotificationView] = {}
    for r in records:
        e = r.event
        if isinstance(e, NotificationRequested):
            run_id = e.fields.get("run_id")
            found[e.notification_id] = NotificationView(
                notification_id=e.notification_id,
                stream_id=r.stream_id,
                on=e.on,
                channel=e.channel.channel,
                rule=e.rule,
                status="pending",
                workflow=str(e.fields.get("workflow", "")),
                summary=str(e.fields.get("summary", "")),
                requested_at=r.recorded_at,
                run_id=str(run_id) if run_id else None,
                action=e.action,
            )
        elif isinstance(e, NotificationSent | NotificationFailed):
            view = found.get(e.notification_id)
            if view is None:
                continue
            view.status = "sent" if isinstance(e, NotificationSent) else "failed"
            view.settled_at = r.recorded_at
            view.attempts = e.attempts
            view.detail = e.detail if isinstance(e, NotificationSent) else e.reason
    return list(found.values())


async def list_notifications(
    store: EventStore,
    *,
    run_id: str | None = None,
    failed_only: bool = False,
    limit: int = 100,
) -> list[NotificationView]:
    """The newest notifications first (a run's, if ``run_id``); only the failed ones
    with ``failed_only``."""
    if run_id is not None:
        records = await store.read_stream(run_stream(run_id))
    else:
        records = []
        position = 0
        while True:
            page = await store.notification_events(position, PAGE)
            records += page
            if len(page) < PAGE:
                break
            position = page[-1].position
    views = notifications_of(records)
    if failed_only:
        views = [v for v in views if v.status == "failed"]
    return list(reversed(views))[:limit]

"""``/api/v1/notifications``: what was sent, what failed and why, what is pending
(newest first; a run's with ``?run=``, only the failed with ``?failed=true``)."""

from __future__ import annotations

import msgspec

from durable.api import schemas as s
from durable.api.routing import V1, Call, resource, route
from durable.application.notifications import NotificationView, list_notifications

__all__ = ["ROUTES", "NotificationList", "NotificationsQuery"]


class NotificationsQuery(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    run: str | None = None
    """Only this run's notifications."""
    failed: bool = False
    """Only those that could not be delivered."""
    limit: s.Limit = 50


class NotificationList(msgspec.Struct, kw_only=True):
    notifications: list[NotificationView]
    """Newest first."""


@route(
    "GET",
    f"{V1}/notifications",
    summary="Notifications, newest first: sent, failed (with the reason), pending",
    scope="read",
    query=NotificationsQuery,
    responses={200: NotificationList},
)
async def get_notifications(call: Call[None, NotificationsQuery]) -> NotificationList:
    q = call.query
    found = await list_notifications(
        call.deps.store, run_id=q.run, failed_only=q.failed, limit=q.limit
    )
    return NotificationList(notifications=found)


ROUTES = resource("notifications", get_notifications)

"""Every route of the HTTP API, in the order they are served and described: the one
list the application (:func:`durable.api.create_app`) and ``proto/openapi.yaml``
(:mod:`durable.api.openapi`) are both made from. Each resource module declares its
routes next to their handlers (:func:`durable.api.routing.route`)."""

from __future__ import annotations

from durable.api import (
    assets,
    backfills,
    dead_letters,
    health,
    history,
    hooks,
    logs,
    notifications,
    reruns,
    runs,
    schedules,
    session,
    tokens,
    workflows,
)
from durable.api.routing import Route

__all__ = ["ROUTES"]

ROUTES: tuple[Route, ...] = (
    *workflows.ROUTES,
    *runs.ROUTES,
    *history.ROUTES,
    *logs.ROUTES,
    *reruns.ROUTES,
    *backfills.ROUTES,
    *schedules.ROUTES,
    *assets.ROUTES,
    *dead_letters.ROUTES,
    *notifications.ROUTES,
    *tokens.ROUTES,
    *health.ROUTES,
    *hooks.ROUTES,
    *session.ROUTES,
)

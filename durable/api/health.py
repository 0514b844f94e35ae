"""Operations: ``/healthz`` (liveness), ``/readyz`` (the database answers) and
``/metrics`` (Prometheus text format)."""

from __future__ import annotations

from aiohttp import web

from durable.api import schemas as s
from durable.api.metrics import render_metrics
from durable.api.routing import ApiError, Call, resource, route

__all__ = ["ROUTES"]


@route(
    "GET",
    "/metrics",
    summary="Prometheus metrics (text exposition format)",
    scope="read",
    stream="text/plain; version=0.0.4",
)
async def metrics(call: Call[None, None]) -> web.Response:
    text = await render_metrics(call.deps.store, call.deps.http)
    return web.Response(text=text, content_type="text/plain", charset="utf-8")


@route(
    "GET",
    "/healthz",
    summary="Liveness: the process answers",
    scope=None,
    responses={200: s.Health},
)
async def healthz(call: Call[None, None]) -> s.Health:
    return s.Health(status="ok")


@route(
    "GET",
    "/readyz",
    summary="Readiness: the database answers",
    scope=None,
    responses={200: s.Health},
    errors=(503,),
)
async def readyz(call: Call[None, None]) -> s.Health:
    try:
        await call.deps.store.last_position()
    except Exception as exc:  # any failure to reach the database means "not ready"
        raise ApiError(503, "database unreachable", str(exc)) from exc
    return s.Health(status="ready")


ROUTES = resource("operations", metrics, healthz, readyz)

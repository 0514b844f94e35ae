"""Operations: ``/healthz`` (liveness), ``/readyz`` (the database answers) and
``/metrics`` (Prometheus text format, from the process's OpenTelemetry meter)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from durable.api import schemas as s
from durable.api.routing import Call, resource, route
from durable.core.errors import StoreError, StoreUnavailable

__all__ = ["ROUTES"]


@route(
    "GET",
    "/metrics",
    summary="Prometheus metrics (text exposition format)",
    scope="read",
    stream="text/plain; version=0.0.4",
)
async def metrics(call: Call[None, None]) -> web.Response:
    telemetry = call.deps.telemetry
    # the database's figures first, here: when it is away the page is a 503, as every route
    try:
        async with asyncio.timeout(10):
            telemetry.store.update(await call.deps.store.metrics_counts())
    except TimeoutError:
        raise StoreUnavailable("the database did not answer within 10 s") from None
    text = await asyncio.to_thread(telemetry.render)  # collecting runs gauges' callbacks
    return web.Response(body=text, content_type="text/plain", charset="utf-8")


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
        async with asyncio.timeout(5):
            await call.deps.store.last_position()
    except (StoreError, TimeoutError) as exc:  # any failure to reach it: "not ready"
        # answered 503 with Retry-After, as every route while the database is away
        raise StoreUnavailable(f"the database does not answer: {exc or 'timed out'}") from exc
    return s.Health(status="ready")


ROUTES = resource("operations", metrics, healthz, readyz)

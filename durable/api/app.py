"""The HTTP API application: every declared route (``durable.api.routes``) served by
aiohttp, with authentication, validation and errors done once for all of them.

Every answer but health needs a bearer token with the route's scope (webhooks with an
HMAC secret take their signature instead). Errors are ``application/problem+json`` with
a title and a detail naming the field. A run is durable before the caller hears
"accepted": the response is sent only after the run's creation has committed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import msgspec
from aiohttp import web

from durable.api.routes import ROUTES
from durable.api.routing import MAX_BODY, Answer, ApiError, Call, Deps, Route, bearer, problem
from durable.application.archive import ArchiveReader
from durable.core.commands import CommandRejected, UnknownTask
from durable.core.errors import (
    ArchiveError,
    ConcurrencyConflict,
    DurableError,
    MalformedEvent,
    RunArchived,
    StoreUnavailable,
    StreamNotFound,
)
from durable.core.spec import DefinitionError
from durable.store.base import EventStore
from durable.telemetry import HttpMetrics, Telemetry
from durable.ui import mount
from durable.workflows.loader import WorkflowRegistry

__all__ = ["create_app"]

log = logging.getLogger("durable.api")

Endpoint = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _utc_now() -> datetime:
    return datetime.now(UTC)


def create_app(
    store: EventStore,
    registry: WorkflowRegistry,
    *,
    environ: Mapping[str, str] | None = None,
    clock: Callable[[], datetime] = _utc_now,
    console: bool = True,
    telemetry: Telemetry | None = None,
) -> web.Application:
    """The API application; dependencies are passed in, nothing is global. With
    ``console``, it also serves the web console (:mod:`durable.ui`) on ``/ui/``.

    ``telemetry``: the process's metrics, shared with its executor (``durable up``);
    without it the application makes its own from ``environ`` and shuts it down with
    itself."""
    env = os.environ if environ is None else environ
    owned = telemetry is None
    metrics = Telemetry(env) if telemetry is None else telemetry
    deps = Deps(
        store=store,
        registry=registry,
        clock=clock,
        environ=env,
        telemetry=metrics,
        archives=ArchiveReader(env),
    )
    app = web.Application(client_max_size=MAX_BODY, middlewares=[_errors(metrics.http)])
    for r in ROUTES:
        app.router.add_route(r.method, r.path, _endpoint(deps, r))
    if console:
        mount(app)

    async def watch_store(app: web.Application) -> None:
        metrics.store.watch(store)  # on the loop that serves: the gauges read from it

    app.on_startup.append(watch_store)

    async def close_archives(app: web.Application) -> None:
        await deps.archives.close()  # its S3 clients

    app.on_cleanup.append(close_archives)
    if owned:

        async def shut_down(app: web.Application) -> None:
            await asyncio.to_thread(metrics.shutdown)  # blocks: a last OTLP export

        app.on_cleanup.append(shut_down)
    return app


def _endpoint(deps: Deps, route: Route) -> Endpoint:
    """The aiohttp handler of a route: authenticate, validate, call, encode."""
    query_type, scope = route.query, route.scope
    body_decoder = (
        msgspec.json.Decoder(route.body) if route.body is not None and not route.raw else None
    )

    async def handle(request: web.Request) -> web.StreamResponse:
        token = None
        if route.auth == "bearer" and scope is not None:  # route() makes bearer need a scope
            checked = await bearer(deps, request, scope)
            if isinstance(checked, web.Response):
                return checked
            token = checked
        query = None
        if query_type is not None:
            try:
                query = msgspec.convert(dict(request.query), query_type, strict=False)
            except msgspec.ValidationError as exc:
                raise ApiError(400, "bad query string", str(exc).replace("$.", "")) from None
        elif request.query and not route.raw:
            raise ApiError(
                400,
                "bad query string",
                f"this endpoint takes no query parameters, got {', '.join(request.query)}",
            )
        body = None
        if body_decoder is not None:
            raw = await request.read()
            if raw.strip() or not route.optional_body:
                try:
                    body = body_decoder.decode(raw)
                except msgspec.ValidationError as exc:
                    raise ApiError(400, "invalid body", str(exc)) from None
                except msgspec.DecodeError as exc:
                    raise ApiError(400, "body is not JSON", str(exc)) from None
        call: Call[Any, Any] = Call(deps=deps, request=request, body=body, query=query, token=token)
        result = await route.handler(call)
        if isinstance(result, web.StreamResponse):
            return result
        if isinstance(result, Answer):
            return web.Response(
                body=msgspec.json.encode(result.body),
                status=result.status,
                content_type="application/json",
                headers=result.headers,
            )
        return web.Response(
            body=msgspec.json.encode(result),
            status=route.status,
            content_type="application/json",
        )

    return handle


def _errors(http: HttpMetrics) -> Any:
    """Every failure as problem+json; nothing escapes as a bare 500 page."""

    @web.middleware
    async def middleware(request: web.Request, handler: Endpoint) -> web.StreamResponse:
        started = time.perf_counter()
        if "\x00" in request.path or "%00" in request.raw_path:
            response: web.StreamResponse = problem(
                400, "bad request", "a NUL byte is not allowed in the URL"
            )
        else:
            response = await _answer(request, handler)
        info = request.match_info.route.resource
        route = info.canonical if info is not None else None
        http.observe(request.method, route, response.status, time.perf_counter() - started)
        return response

    return middleware


async def _answer(request: web.Request, handler: Endpoint) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return problem(exc.status, exc.title, exc.detail)
    except web.HTTPRequestEntityTooLarge:
        return problem(413, "body too large", f"the body is over {MAX_BODY} bytes")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return problem(exc.status, exc.reason, exc.text or exc.reason)
    except StreamNotFound as exc:
        return problem(404, "not found", str(exc))
    except UnknownTask as exc:
        return problem(400, "no such task", str(exc))
    except CommandRejected as exc:
        return problem(409, "not possible now", str(exc))
    except ConcurrencyConflict as exc:
        return problem(409, "conflict", str(exc))
    except RunArchived as exc:
        return problem(409, "run archived", str(exc))
    except ArchiveError as exc:
        response = problem(503, "archive unavailable", str(exc))
        if exc.retryable:
            response.headers["Retry-After"] = "5"
        return response
    except StoreUnavailable as exc:
        response = problem(503, "database unavailable", str(exc))
        response.headers["Retry-After"] = "1"
        return response
    except (MalformedEvent, DefinitionError) as exc:
        return problem(400, "bad request", str(exc))
    except DurableError as exc:
        return problem(400, "bad request", str(exc))
    except ConnectionResetError:
        raise
    except Exception:
        log.exception("unexpected error answering %s %s", request.method, request.path)
        return problem(500, "internal error", "an unexpected error; the server log has the details")

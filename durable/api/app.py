"""The HTTP API application: the ``/api/v1`` routes, webhooks, health and metrics.

Every answer but health needs a bearer token with the route's scope (webhooks with an
HMAC secret take their signature instead). Errors are ``application/problem+json`` with
a title and a detail naming the field. A run is durable before the caller hears
"accepted": the response is sent only after the run's creation has committed.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import msgspec
from aiohttp import web

from durable.api.auth import authenticate, grants
from durable.api.metrics import HttpMetrics, render_metrics
from durable.api.routes import ROUTES, TOKEN, Api, ApiError, Route
from durable.application.runs import start_run
from durable.core.decide import CommandRejected
from durable.core.errors import (
    ConcurrencyConflict,
    DurableError,
    MalformedEvent,
    StoreUnavailable,
    StreamNotFound,
)
from durable.core.events import Trigger
from durable.core.kafka import Message, evaluate_s3_event
from durable.core.spec import DefinitionError
from durable.store.postgres import PostgresEventStore
from durable.workflows.loader import WorkflowRegistry

__all__ = ["create_app", "problem"]

log = logging.getLogger("durable.api")

MAX_BODY = 1024 * 1024
SIGNATURE_HEADER = "X-Durable-Signature"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def problem(status: int, title: str, detail: str) -> web.Response:
    return web.Response(
        status=status,
        body=msgspec.json.encode(
            {"type": "about:blank", "title": title, "status": status, "detail": detail}
        ),
        content_type="application/problem+json",
    )


def create_app(
    store: PostgresEventStore,
    registry: WorkflowRegistry,
    *,
    environ: Mapping[str, str] | None = None,
) -> web.Application:
    """The API application; dependencies are passed in, nothing is global."""
    env = os.environ if environ is None else environ
    http = HttpMetrics()
    api = Api(store, registry, metrics_text=lambda: render_metrics(store, http))
    app = web.Application(client_max_size=MAX_BODY, middlewares=[_errors(http)])
    for route in ROUTES:
        app.router.add_route(route.method, route.path, _endpoint(api, route))

    async def hook(request: web.Request) -> web.Response:
        name = request.match_info["workflow"]
        checked = await _checked_body(request, name)
        if isinstance(checked, web.Response):
            return checked
        loaded, body = checked
        try:
            params: Any = msgspec.json.decode(body) if body else {}
        except msgspec.DecodeError as exc:
            return problem(400, "body is not JSON", str(exc))
        if not isinstance(params, dict):
            return problem(400, "bad body", "the body must be a JSON object of run params")
        key = request.headers.get("Idempotency-Key")
        try:
            run_id, created = await start_run(
                store,
                loaded.spec,
                params,
                idempotency_key=f"http:{name}:{key}" if key else None,
                trigger=Trigger(
                    kind="http",
                    source=request.remote,
                    traceparent=request.headers.get("traceparent"),
                ),
            )
        except DefinitionError as exc:
            return problem(400, "bad params", exc.message)
        return web.json_response(
            {"run_id": run_id, "created": created}, status=202 if created else 200
        )

    async def s3_events(request: web.Request) -> web.Response:
        """S3 event notifications (the AWS/MinIO JSON shape) posted by the storage: one run
        per created object version, deduplicated with polling and Kafka notifications."""
        name = request.match_info["workflow"]
        checked = await _checked_body(request, name)
        if isinstance(checked, web.Response):
            return checked
        loaded, body = checked
        message = Message(
            topic="http",
            partition=0,
            offset=0,
            value=body,
            headers={k.lower(): v for k, v in request.headers.items()},
        )
        outcome = evaluate_s3_event(message, name, list(loaded.spec.params))
        if not isinstance(outcome, list):
            return problem(400, "not an S3 event notification", outcome.reason)
        runs = []
        for accepted in outcome:
            try:
                run_id, created = await start_run(
                    store,
                    loaded.spec,
                    accepted.params,
                    idempotency_key=accepted.dedup_key,
                    trigger=Trigger(
                        kind="s3", source=request.remote, traceparent=accepted.traceparent
                    ),
                )
            except DefinitionError as exc:
                return problem(400, "bad params", exc.message)
            runs.append({"run_id": run_id, "created": created})
        return web.json_response({"runs": runs}, status=202)

    async def _checked_body(request: web.Request, name: str) -> Any:
        try:
            loaded = registry.get(name)
        except DefinitionError:
            return problem(404, "no such workflow", f"workflow {name!r} is not defined")
        webhook = loaded.spec.webhook
        if webhook is None:
            return problem(404, "no webhook", f"workflow {name!r} declares no webhook trigger")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return problem(413, "body too large", f"the body is over {MAX_BODY} bytes")
        if not webhook.secret_env:
            token = await authenticate(store.pool, request.headers.get("Authorization"))
            if token is None or not grants(token.scopes, "trigger"):
                return _unauthorized(token is not None, "trigger")
        else:
            secret = env.get(webhook.secret_env)
            if not secret:
                return problem(
                    503,
                    "webhook not configured",
                    f"set {webhook.secret_env} to the webhook's secret",
                )
            given = request.headers.get(SIGNATURE_HEADER, "")
            wanted = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
            if not hmac.compare_digest(given, wanted):
                return problem(
                    401,
                    "bad signature",
                    f"{SIGNATURE_HEADER} must be sha256=<HMAC-SHA256 of the body>",
                )
        return loaded, body

    app.router.add_post("/api/v1/hooks/{workflow}/s3-events", s3_events)
    app.router.add_post("/api/v1/hooks/{workflow}", hook)
    return app


def _unauthorized(has_token: bool, scope: str) -> web.Response:
    if has_token:
        return problem(403, "insufficient scope", f"this needs a token with the {scope!r} scope")
    response = problem(
        401,
        "unauthorized",
        "send Authorization: Bearer <token>; `durable tokens create` makes one",
    )
    response.headers["WWW-Authenticate"] = 'Bearer realm="durable"'
    return response


def _endpoint(api: Api, route: Route) -> Handler:
    """The aiohttp handler of a route: authenticate, validate, call, encode."""
    method = getattr(api, route.handler)
    query_decoder = route.query
    body_decoder = msgspec.json.Decoder(route.body) if route.body is not None else None

    async def handle(request: web.Request) -> web.StreamResponse:
        if route.scope is not None:
            token = await authenticate(api.store.pool, request.headers.get("Authorization"))
            if token is None or not grants(token.scopes, route.scope):
                return _unauthorized(token is not None, route.scope)
            request[TOKEN] = token
        query = None
        if query_decoder is not None:
            try:
                query = msgspec.convert(dict(request.query), query_decoder, strict=False)
            except msgspec.ValidationError as exc:
                raise ApiError(400, "bad query string", str(exc).replace("$.", "")) from None
        elif request.query:
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
        result = await method(request, body, query)
        if isinstance(result, web.StreamResponse):
            return result
        return web.Response(
            body=msgspec.json.encode(result),
            status=route.status,
            content_type="application/json",
        )

    return handle


def _errors(http: HttpMetrics) -> Any:
    """Every failure as problem+json; nothing escapes as a bare 500 page."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        if "\x00" in request.path or "%00" in request.raw_path:
            response: web.StreamResponse = problem(
                400, "bad request", "a NUL byte is not allowed in the URL"
            )
        else:
            response = await _answer(request, handler)
        info = request.match_info.route.resource
        route = info.canonical if info is not None else "unmatched"
        http.observe(request.method, route, response.status, time.perf_counter() - started)
        return response

    return middleware


async def _answer(request: web.Request, handler: Handler) -> web.StreamResponse:
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
    except CommandRejected as exc:
        return problem(409, "not possible now", str(exc))
    except ConcurrencyConflict as exc:
        return problem(409, "conflict", str(exc))
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

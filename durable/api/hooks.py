"""``/api/v1/hooks/{workflow}``: runs started by other systems. The webhook's JSON body
is the run's params (``Idempotency-Key`` as on ``POST .../runs``); ``.../s3-events``
takes S3 event notifications, one run per created object version (deduplicated with
polling and Kafka notifications).

Their auth is the workflow's webhook rule (route ``auth="hmac"``): with a secret
(``secret_env``), ``X-Durable-Signature: sha256=<HMAC-SHA256 of the body>``; without
one, a bearer token with the ``trigger`` scope. Only workflows that declare a webhook
trigger have hooks.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import msgspec
from aiohttp import web

from durable.api import schemas as s
from durable.api.idempotency import start_http_run
from durable.api.routing import (
    IDEMPOTENCY_KEY,
    MAX_BODY,
    V1,
    Answer,
    ApiError,
    Call,
    Header,
    bearer,
    resource,
    route,
)
from durable.application.runs import create_run
from durable.core.errors import IdempotencyConflict
from durable.core.events import Trigger
from durable.core.kafka import Message, evaluate_s3_event
from durable.core.spec import DefinitionError, WorkflowSpec

__all__ = ["ROUTES", "SIGNATURE", "signature_of"]

SIGNATURE = Header(
    name="X-Durable-Signature",
    description="sha256=<hex HMAC-SHA256 of the body with the webhook's secret>; needed "
    "when the workflow's webhook has a secret (then no bearer token is needed)",
    pattern=r"^sha256=[0-9a-f]{64}$",
)


def signature_of(secret: str, body: bytes) -> str:
    """The ``X-Durable-Signature`` value of ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


async def _hooked(call: Call[Any, Any]) -> WorkflowSpec | web.Response:
    """The workflow once the request may start its runs; else the answer to give."""
    name = call.request.match_info["workflow"]
    try:
        spec = call.deps.registry.get(name).spec
    except DefinitionError:
        raise ApiError(404, "no such workflow", f"workflow {name!r} is not defined") from None
    webhook = spec.webhook
    if webhook is None:
        raise ApiError(404, "no webhook", f"workflow {name!r} declares no webhook trigger")
    try:
        body = await call.request.read()
    except web.HTTPRequestEntityTooLarge:
        raise ApiError(413, "body too large", f"the body is over {MAX_BODY} bytes") from None
    if not webhook.secret_env:
        checked = await bearer(call.deps, call.request, "trigger")
        return checked if isinstance(checked, web.Response) else spec
    secret = call.deps.environ.get(webhook.secret_env)
    if not secret:
        raise ApiError(
            503, "webhook not configured", f"set {webhook.secret_env} to the webhook's secret"
        )
    given = call.request.headers.get(SIGNATURE.name, "")
    if not hmac.compare_digest(given, signature_of(secret, body)):
        raise ApiError(
            401,
            "bad signature",
            f"{SIGNATURE.name} must be sha256=<HMAC-SHA256 of the body>",
        )
    return spec


@route(
    "POST",
    f"{V1}/hooks/{{workflow}}/s3-events",
    summary="S3 event notifications posted by the storage: one run per created object "
    "version, deduplicated with polling and Kafka notifications",
    scope="trigger",
    auth="hmac",
    body=s.S3EventNotification,
    responses={202: s.HookRuns},
    errors=(400, 404, 413, 503),
    headers=(SIGNATURE,),
    raw=True,
)
async def s3_events(call: Call[None, None]) -> web.Response | s.HookRuns:
    spec = await _hooked(call)
    if isinstance(spec, web.Response):
        return spec
    request = call.request
    message = Message(
        topic="http",
        partition=0,
        offset=0,
        value=await request.read(),
        headers={k.lower(): v for k, v in request.headers.items()},
    )
    outcome = evaluate_s3_event(message, spec.name, list(spec.params))
    if not isinstance(outcome, list):
        raise ApiError(400, "not an S3 event notification", outcome.reason)
    runs = []
    for accepted in outcome:
        try:
            run_id, created = await create_run(
                call.deps.store,
                spec,
                accepted.params,
                idempotency_key=accepted.dedup_key,
                trigger=Trigger(kind="s3", source=request.remote, traceparent=accepted.traceparent),
                params_from="text",  # an object's key and fields are text
            )
        except DefinitionError as exc:
            raise ApiError(400, "bad params", exc.message) from None
        except IdempotencyConflict as exc:
            raise ApiError(409, "idempotency key reused", exc.message) from None
        runs.append(s.TriggerResult(run_id=run_id, created=created))
    return s.HookRuns(runs=runs)


@route(
    "POST",
    f"{V1}/hooks/{{workflow}}",
    summary="Start a run from a webhook: the JSON body is the run's params; "
    "Idempotency-Key makes retries safe",
    scope="trigger",
    auth="hmac",
    body=s.WebhookParams,
    optional_body=True,
    responses={
        202: s.TriggerResult,
        200: (s.TriggerResult, "The Idempotency-Key had already started this run"),
    },
    errors=(400, 404, 409, 413, 503),
    headers=(SIGNATURE, IDEMPOTENCY_KEY),
    raw=True,
)
async def webhook(call: Call[None, None]) -> web.Response | Answer:
    spec = await _hooked(call)
    if isinstance(spec, web.Response):
        return spec
    request = call.request
    body = await request.read()
    try:
        params: Any = msgspec.json.decode(body) if body else {}
    except msgspec.DecodeError as exc:
        raise ApiError(400, "body is not JSON", str(exc)) from None
    if not isinstance(params, dict):
        raise ApiError(400, "bad body", "the body must be a JSON object of run params")
    run_id, created = await start_http_run(
        call.deps.store,
        spec,
        params,
        key=request.headers.get(IDEMPOTENCY_KEY.name),
        trigger=Trigger(
            kind="http", source=request.remote, traceparent=request.headers.get("traceparent")
        ),
    )
    return Answer(
        body=s.TriggerResult(run_id=run_id, created=created), status=202 if created else 200
    )


ROUTES = resource("hooks", s3_events, webhook)

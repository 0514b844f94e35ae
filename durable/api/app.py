"""The HTTP API: health, and webhook triggers (``/api/v1/hooks/{workflow}``).

Errors are ``application/problem+json`` with a title and a detail naming the field. A
run is durable before the caller hears "accepted": the response is sent only after the
run's creation has committed.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping
from typing import Any

import msgspec
from aiohttp import web

from durable.dag import DefinitionError
from durable.events import Trigger
from durable.executor import start_run
from durable.kafka_rules import Message, evaluate_s3_event
from durable.store.postgres import PostgresEventStore
from durable.workflows.loader import WorkflowRegistry

__all__ = ["create_app", "problem"]

MAX_BODY = 1024 * 1024
SIGNATURE_HEADER = "X-Durable-Signature"


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
    app = web.Application(client_max_size=MAX_BODY)

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        try:
            await store.last_position()
        except Exception as exc:  # any failure to reach the database means "not ready"
            return problem(503, "database unreachable", str(exc))
        return web.json_response({"status": "ready"})

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
        if webhook.secret_env:
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

    app.router.add_get("/healthz", healthz)
    app.router.add_post("/api/v1/hooks/{workflow}/s3-events", s3_events)
    app.router.add_get("/readyz", readyz)
    app.router.add_post("/api/v1/hooks/{workflow}", hook)
    return app

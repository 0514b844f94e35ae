"""The OpenAPI 3.1 description of the HTTP API, generated from :data:`ROUTES` and the
msgspec types of its bodies (``proto/openapi.yaml``; ``python -m durable.contracts``)."""

from __future__ import annotations

import re
from typing import Any

import msgspec

from durable.api import schemas as s
from durable.api.routes import ID_PATTERN, ROUTES, Route

__all__ = ["openapi_spec"]

_REF = "#/components/schemas/{name}"
_PROBLEM = "application/problem+json"
_STATUS_TEXT = {
    400: "The request is invalid: the detail names the field and the value",
    401: "No valid bearer token",
    403: "The token lacks the scope this needs",
    404: "No such workflow, run, backfill, schedule or token",
    409: "Not possible in the current state, or an idempotency key reused with another body",
    413: "The body is over 1 MiB",
    503: "The database is unreachable; retry later",
}


def _not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter is absent rather than null."""
    options = schema.get("anyOf")
    if options:
        rest = [o for o in options if o.get("type") != "null"]
        if len(rest) == 1:
            return {**{k: v for k, v in schema.items() if k != "anyOf"}, **rest[0]}
    return schema


def _operation(route: Route, components: dict[str, Any]) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": route.handler,
        "summary": route.summary,
        "tags": [route.tag],
    }
    parameters = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": {"type": "string", "pattern": ID_PATTERN},
        }
        for name in re.findall(r"{(\w+)}", route.path)
    ]
    if route.query is not None:
        schema = components[route.query.__name__]
        required = set(schema.get("required", []))
        for name, prop in schema["properties"].items():
            param = {"name": name, "in": "query", "required": name in required}
            if "description" in prop:
                param["description"] = prop["description"]
            param["schema"] = _not_null({k: v for k, v in prop.items() if k != "description"})
            parameters.append(param)
    if route.handler in ("trigger", "rerun_run"):
        parameters.append(
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "description": "The same key always means the same request (retries are safe).",
                "schema": {"type": "string", "pattern": ID_PATTERN},
            }
        )
    if parameters:
        op["parameters"] = parameters
    if route.body is not None:
        op["requestBody"] = {
            "required": not route.optional_body,
            "content": {
                "application/json": {"schema": {"$ref": _REF.format(name=route.body.__name__)}}
            },
        }
    ok: dict[str, Any] = {"description": "OK"}
    if route.response is not None:
        ok["content"] = {
            "application/json": {"schema": {"$ref": _REF.format(name=route.response.__name__)}}
        }
    elif route.stream == "text/event-stream":
        event = {
            "type": "object",
            "description": "id: the event's seq; event: its type (or `end`, data "
            '{"status": ...}, when the run ends); data: an ExportedEvent as JSON',
            "properties": {
                "id": {"type": "string"},
                "event": {"type": "string"},
                "data": {"type": "string"},
            },
        }
        ok["content"] = {route.stream: {"schema": event}}
    elif route.stream is not None:
        ok["content"] = {route.stream.split(";")[0]: {"schema": {"type": "string"}}}
    responses: dict[str, Any] = {str(route.status): ok}
    if route.handler == "trigger":
        responses["200"] = {
            "description": "The Idempotency-Key had already started this run",
            "content": ok["content"],
        }
    if route.handler == "create_backfill":
        responses["200"] = {"description": "A dry run's plan", "content": ok["content"]}
    errors = set(route.errors)
    if route.scope is not None:
        errors |= {401, 403}
        op["security"] = [{"bearer": [route.scope]}]
        op["description"] = f"Needs a token with the `{route.scope}` scope."
    else:
        op["security"] = []
    if route.body is not None or route.query is not None:
        errors.add(400)
    if route.body is not None:
        errors.add(413)
    for status in sorted(errors):
        responses[str(status)] = {
            "description": _STATUS_TEXT[status],
            "content": {_PROBLEM: {"schema": {"$ref": _REF.format(name="Problem")}}},
        }
    op["responses"] = responses
    return op


def openapi_spec() -> dict[str, Any]:
    types: list[Any] = [s.Problem]
    for route in ROUTES:
        types += [t for t in (route.body, route.query, route.response) if t is not None]
    _, components = msgspec.json.schema_components(types, ref_template=_REF)
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, components)
    for route in ROUTES:  # query structs are parameters, not schemas
        if route.query is not None:
            components.pop(route.query.__name__, None)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "durable",
            "version": "1",
            "description": (
                "Durable, event-sourced workflow orchestration. Every endpoint but /healthz "
                "and /readyz needs `Authorization: Bearer <token>`; scopes: read, trigger "
                "(and read), operate (and read), admin (everything). Errors are "
                "application/problem+json. Generated from durable/api; do not edit."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": dict(sorted(components.items())),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }

"""The OpenAPI 3.1 description of the HTTP API, generated from the declared routes
(:data:`durable.api.routes.ROUTES`) and the msgspec types of their bodies
(``proto/openapi.yaml``; ``python -m durable.contracts``)."""

from __future__ import annotations

import copy
import re
from typing import Any

import msgspec

from durable.api import schemas as s
from durable.api.routes import ROUTES
from durable.api.routing import ID_PATTERN, Route

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
_HOOK_STATUS_TEXT = {
    401: "A bad X-Durable-Signature, or (without a webhook secret) no valid bearer token",
    403: "Without a webhook secret: the token lacks the scope this needs",
    404: "No such workflow, or it declares no webhook trigger",
    503: "The webhook's secret is not set on the server, or the database is unreachable",
}
_SSE_EVENT = {
    "type": "object",
    "description": "id: the event's seq; event: its type (or `end`, data "
    '{"status": ...}, when the run ends); data: an ExportedEvent as JSON',
    "properties": {
        "id": {"type": "string"},
        "event": {"type": "string"},
        "data": {"type": "string"},
    },
}


def _not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter is absent rather than null."""
    options = schema.get("anyOf")
    if options:
        rest = [o for o in options if o.get("type") != "null"]
        if len(rest) == 1:
            return {**{k: v for k, v in schema.items() if k != "anyOf"}, **rest[0]}
    return schema


def _content(schema: dict[str, Any] | None) -> dict[str, Any] | None:
    # a copy each time: shared objects would come out as YAML anchors
    return {"application/json": {"schema": copy.deepcopy(schema)}} if schema is not None else None


def _operation(route: Route, schemas: dict[Any, dict[str, Any]]) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": route.operation_id,
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
        schema = schemas[route.query]
        required = set(schema.get("required", []))
        for name, prop in schema["properties"].items():
            param = {"name": name, "in": "query", "required": name in required}
            if "description" in prop:
                param["description"] = prop["description"]
            param["schema"] = _not_null({k: v for k, v in prop.items() if k != "description"})
            parameters.append(param)
    for header in route.headers:
        parameters.append(
            {
                "name": header.name,
                "in": "header",
                "required": False,
                "description": header.description,
                "schema": {"type": "string"}
                | ({"pattern": header.pattern} if header.pattern else {}),
            }
        )
    if parameters:
        op["parameters"] = parameters
    if route.body is not None:
        op["requestBody"] = {
            "required": not route.optional_body,
            "content": _content(schemas[route.body]),
        }
    responses: dict[str, Any] = {}
    for status, declared in route.responses.items():
        kind, description = declared if isinstance(declared, tuple) else (declared, "OK")
        ok: dict[str, Any] = {"description": description}
        if kind is not None:
            ok["content"] = _content(schemas[kind])
        elif route.stream == "text/event-stream":
            events = {**_SSE_EVENT, "description": route.sse} if route.sse else _SSE_EVENT
            ok["content"] = {route.stream: {"schema": copy.deepcopy(events)}}
        elif route.stream is not None:
            ok["content"] = {route.stream.split(";")[0]: {"schema": {"type": "string"}}}
        responses[str(status)] = ok
    errors = set(route.errors)
    if route.auth == "bearer":
        errors |= {401, 403}
        op["security"] = [{"bearer": [route.scope]}]
        op["description"] = f"Needs a token with the `{route.scope}` scope."
    elif route.auth == "hmac":
        errors |= {401, 403}
        op["security"] = [{"hmac": []}, {"bearer": [route.scope]}]
        op["description"] = (
            "For a workflow whose webhook has a secret: the `X-Durable-Signature` header "
            "(HMAC-SHA256 of the body), no token. Otherwise: a token with the "
            f"`{route.scope}` scope. Only workflows that declare a webhook trigger have hooks."
        )
    else:
        op["security"] = []
    if route.body is not None or route.query is not None:
        errors.add(400)
    if route.body is not None:
        errors.add(413)
    for status in sorted(errors):
        text = _STATUS_TEXT[status]
        if route.auth == "hmac" and status in _HOOK_STATUS_TEXT:
            text = _HOOK_STATUS_TEXT[status]
        responses[str(status)] = {
            "description": text,
            "content": {_PROBLEM: {"schema": {"$ref": _REF.format(name="Problem")}}},
        }
    op["responses"] = responses
    return op


def _types(route: Route) -> list[Any]:
    out = [t for t in (route.body, route.query) if t is not None]
    for declared in route.responses.values():
        kind = declared[0] if isinstance(declared, tuple) else declared
        if kind is not None:
            out.append(kind)
    return out


def openapi_spec() -> dict[str, Any]:
    """The OpenAPI description of every route in :data:`ROUTES`."""
    types: list[Any] = [s.Problem]
    for route in ROUTES:
        types += [t for t in _types(route) if t not in types]
    refs, components = msgspec.json.schema_components(types, ref_template=_REF)
    schemas = dict(zip(types, refs, strict=True))
    for query in {r.query for r in ROUTES if r.query is not None}:
        schemas[query] = components.pop(query.__name__)  # parameters, not schemas
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, schemas)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "durable",
            "version": "1",
            "description": (
                "Durable, event-sourced workflow orchestration. Every endpoint but /healthz, "
                "/readyz and the hooks needs `Authorization: Bearer <token>`; scopes: read, "
                "trigger (and read), operate (and read), admin (everything). A hook takes "
                "the X-Durable-Signature of its body when the workflow's webhook has a "
                "secret, else a trigger token. Errors are application/problem+json. "
                "Generated from durable/api; do not edit."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": dict(sorted(components.items())),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "hmac": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-Durable-Signature",
                    "description": "sha256=<hex HMAC-SHA256 of the body with the webhook's secret>",
                },
            },
        },
    }

"""How an endpoint is declared: the ``@route`` decorator, the :class:`Call` a handler gets,
and the dependencies every handler shares.

A resource module declares each route next to its handler::

    @route("POST", "/api/v1/workflows/{workflow}/runs", scope="trigger",
           body=s.TriggerBody, responses={202: s.TriggerResult, 200: (s.TriggerResult, "...")})
    async def trigger(call: Call[s.TriggerBody, None]) -> Answer: ...

and lists its routes in ``ROUTES = resource("workflows", list_workflows, ...)``. The
application (``durable.api.app``) and the OpenAPI generator (``durable.api.openapi``)
both read those declarations; nothing is bound by name.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

import msgspec
from aiohttp import web

from durable.application.archive import ArchiveReader
from durable.application.tokens import TokenInfo, authenticate, grants
from durable.core.spec import DefinitionError, WorkflowSpec
from durable.store.base import EventStore
from durable.telemetry import Telemetry
from durable.workflows.loader import LoadedWorkflow, WorkflowRegistry

__all__ = [
    "CSRF_COOKIE",
    "CSRF_HEADER",
    "IDEMPOTENCY_KEY",
    "ID_PATTERN",
    "MAX_BODY",
    "SESSION_COOKIE",
    "V1",
    "Answer",
    "ApiError",
    "Auth",
    "Call",
    "Deps",
    "Handler",
    "Header",
    "Route",
    "bearer",
    "csrf_failure",
    "event_stream",
    "problem",
    "resource",
    "route",
    "unauthorized",
    "valid_id",
]

V1 = "/api/v1"
MAX_BODY = 1024 * 1024
"""The largest request body (1 MiB): more is a 413."""
ID_PATTERN = r"^[A-Za-z0-9_.:@-]{1,200}$"
_ID = re.compile(ID_PATTERN)

Auth = Literal["bearer", "hmac", "none"]
"""``bearer``: a token with the route's scope, checked before the handler runs.
``hmac``: the workflow's webhook rule, checked by the handler once it knows the workflow:
``X-Durable-Signature`` (HMAC-SHA256 of the body) when the webhook has a secret, else a
bearer token with the route's scope. ``none``: anyone (health)."""

B = TypeVar("B")
Q = TypeVar("Q")


class ApiError(Exception):
    """An error answered as problem+json."""

    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail


def valid_id(value: str) -> bool:
    """Whether ``value`` is a well-formed id (:data:`ID_PATTERN`)."""
    return _ID.match(value) is not None


def unauthorized(has_token: bool, scope: str) -> web.Response:
    """401 without a valid token (with the bearer challenge), 403 with too small a scope."""
    if has_token:
        return problem(403, "insufficient scope", f"this needs a token with the {scope!r} scope")
    response = problem(
        401,
        "unauthorized",
        "send Authorization: Bearer <token>; `durable tokens create` makes one",
    )
    response.headers["WWW-Authenticate"] = 'Bearer realm="durable"'
    return response


SESSION_COOKIE = "durable_session"
"""The console's session: the API token, in an HttpOnly, SameSite=Strict cookie."""
CSRF_COOKIE = "durable_csrf"
CSRF_HEADER = "X-CSRF-Token"
"""A browser session's unsafe requests repeat the ``durable_csrf`` cookie's value in this
header (double submit): another site can make the browser send the cookie, never read it."""
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def csrf_failure(request: web.Request) -> web.Response | None:
    """The 403 for an unsafe request of a browser session without the CSRF header."""
    if request.method in _SAFE_METHODS:
        return None
    cookie = request.cookies.get(CSRF_COOKIE, "")
    header = request.headers.get(CSRF_HEADER, "")
    if cookie and hmac.compare_digest(cookie.encode(), header.encode()):
        return None
    return problem(
        403,
        "CSRF check failed",
        f"a browser session must send the {CSRF_HEADER} header with the {CSRF_COOKIE} "
        "cookie's value; reload the page",
    )


async def bearer(deps: Deps, request: web.Request, scope: str) -> TokenInfo | web.Response:
    """The request's live token when it grants ``scope``; else the 401/403 to answer.

    The token comes from ``Authorization: Bearer``, or else from the console's session
    cookie (whose unsafe requests must pass the CSRF check)."""
    authorization = request.headers.get("Authorization")
    if authorization is None and (session := request.cookies.get(SESSION_COOKIE)):
        refused = csrf_failure(request)
        if refused is not None:
            return refused
        authorization = f"Bearer {session}"
    token = await authenticate(deps.store.tokens, authorization)
    if token is None or not grants(token.scopes, scope):
        return unauthorized(token is not None, scope)
    return token


async def event_stream(request: web.Request) -> web.StreamResponse:
    """A server-sent event answer, its headers sent (nothing buffered on the way)."""
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    return response


def problem(status: int, title: str, detail: str) -> web.Response:
    """An RFC 9457 ``application/problem+json`` answer."""
    return web.Response(
        status=status,
        body=msgspec.json.encode(
            {"type": "about:blank", "title": title, "status": status, "detail": detail}
        ),
        content_type="application/problem+json",
    )


@dataclass(frozen=True, kw_only=True)
class Deps:
    """What handlers work with; passed into ``create_app``, nothing is global."""

    store: EventStore
    registry: WorkflowRegistry
    clock: Callable[[], datetime]
    """The wall clock (aware datetimes); injected so handlers never read the time."""
    environ: Mapping[str, str]
    """Where webhook secrets are read from."""
    telemetry: Telemetry
    """The process's metrics (``/metrics`` renders them)."""
    archives: ArchiveReader = field(default_factory=ArchiveReader)
    """Reads archived runs back (and keeps the last ones read)."""


@dataclass(frozen=True, kw_only=True)
class Call(Generic[B, Q]):
    """One request as a handler sees it: body and query already validated."""

    deps: Deps
    request: web.Request
    body: B
    query: Q
    token: TokenInfo | None = None
    """The bearer token that authorized the call (None on health and signed hooks)."""

    @property
    def by(self) -> str | None:
        """Who asks, as recorded in events."""
        return f"token:{self.token.name}" if self.token else None

    def path_id(self, name: str, what: str) -> str:
        """A path parameter that must look like an id (else: no such thing, 404)."""
        value = self.request.match_info[name]
        if not valid_id(value):
            raise ApiError(404, f"no such {what}", f"{what} {value!r} does not exist")
        return value

    def workflow(self) -> WorkflowSpec:
        """The loaded workflow named in the path (404 when none)."""
        return self.loaded_workflow().spec

    def loaded_workflow(self) -> LoadedWorkflow:
        """The loaded workflow named in the path, with its code and file text (404 when
        none)."""
        value = self.request.match_info["workflow"]
        try:
            return self.deps.registry.get(value)
        except DefinitionError:
            raise ApiError(
                404,
                "no such workflow",
                f"workflow {value!r} is not loaded; GET /api/v1/workflows lists them",
            ) from None


@dataclass(frozen=True, kw_only=True)
class Answer:
    """A JSON answer with a status or headers other than the route's default."""

    body: Any
    status: int
    headers: Mapping[str, str] | None = None


Handler = Callable[[Call[Any, Any]], Awaitable[Any]]
"""Returns a msgspec struct (JSON, the route's first status), an :class:`Answer`, or an
aiohttp response it made itself (event streams, metrics text)."""


class Header(msgspec.Struct, frozen=True, kw_only=True):
    """A request header the route reads (documented as an OpenAPI parameter)."""

    name: str
    description: str
    pattern: str | None = None


IDEMPOTENCY_KEY = Header(
    name="Idempotency-Key",
    description="The same key always means the same request (retries are safe).",
    pattern=ID_PATTERN,
)

Response = Any | tuple[Any, str]
"""A response body type (None: no JSON body), or ``(type, description)``."""


class Route(msgspec.Struct, frozen=True, kw_only=True):
    """One endpoint: what it answers, who may call it, and its typed handler."""

    method: str
    path: str
    handler: Handler
    summary: str
    scope: str | None
    """The token scope needed (for ``hmac`` routes: when the webhook has no secret)."""
    auth: Auth
    body: Any = None
    """The body type (decoded for the handler; only documented on ``raw`` routes)."""
    query: Any = None
    responses: dict[int, Response] = {}
    """Success answers by status; the first is the default of a struct answer."""
    errors: tuple[int, ...] = ()
    stream: str | None = None
    """Content type of a non-JSON answer (server-sent events, metrics text)."""
    sse: str = ""
    """What the server-sent events of a ``text/event-stream`` answer are (for OpenAPI)."""
    headers: tuple[Header, ...] = ()
    tag: str = ""
    optional_body: bool = False
    raw: bool = False
    """The handler reads the body and the query itself (hooks sign the exact bytes)."""

    @property
    def operation_id(self) -> str:
        return self.handler.__name__

    @property
    def status(self) -> int:
        """The status of a plain struct answer."""
        return next(iter(self.responses), 200)


def route(
    method: str,
    path: str,
    *,
    summary: str,
    scope: str | None,
    auth: Auth | None = None,
    body: Any = None,
    query: Any = None,
    responses: dict[int, Response] | None = None,
    errors: tuple[int, ...] = (),
    stream: str | None = None,
    sse: str = "",
    headers: tuple[Header, ...] = (),
    optional_body: bool = False,
    raw: bool = False,
) -> Callable[[Handler], Route]:
    """Declare the decorated handler's route; ``auth`` defaults to ``bearer`` when a scope
    is given, else ``none``."""

    chosen: Auth = auth or ("bearer" if scope else "none")
    if chosen != "none" and scope is None:
        raise ValueError(f"{method} {path}: auth {chosen!r} needs a scope")

    def declare(handler: Handler) -> Route:
        return Route(
            method=method,
            path=path,
            handler=handler,
            summary=summary,
            scope=scope,
            auth=chosen,
            body=body,
            query=query,
            responses=responses if responses is not None else {200: None},
            errors=errors,
            stream=stream,
            sse=sse,
            headers=headers,
            optional_body=optional_body,
            raw=raw,
        )

    return declare


def resource(tag: str, *routes: Route) -> tuple[Route, ...]:
    """A resource's routes, in the order they are served and described, under ``tag``."""
    return tuple(msgspec.structs.replace(r, tag=tag) for r in routes)

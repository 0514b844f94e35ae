"""``/api/v1/session``: the web console's login and logout.

Logging in checks an API token and keeps it in an HttpOnly, SameSite=Strict cookie the
page's scripts cannot read; every API route then accepts the cookie as it accepts a
bearer token, with the same scopes (read sees, trigger and operate act). Unsafe requests
of a session also repeat the CSRF cookie in a header (:func:`durable.api.routing.
csrf_failure`). A revoked token ends every session that holds it at the next request.
"""

from __future__ import annotations

import secrets
from typing import Annotated

import msgspec
from aiohttp import web

from durable.api.routing import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    V1,
    ApiError,
    Call,
    resource,
    route,
)
from durable.application.tokens import Scope, TokenInfo, authenticate

__all__ = ["ROUTES", "Login", "SessionView"]


class Login(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    token: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    """An API token (``durable tokens create``, or the one ``durable up`` printed)."""


class SessionView(msgspec.Struct, kw_only=True):
    name: str
    """The token's name."""
    token_id: str
    scopes: list[Scope]
    csrf: str | None = None
    """The value to send in ``X-CSRF-Token`` (also in the ``durable_csrf`` cookie)."""


def _view(token: TokenInfo, csrf: str | None) -> SessionView:
    return SessionView(name=token.name, token_id=token.token_id, scopes=token.scopes, csrf=csrf)


def _json(body: SessionView, status: int = 200) -> web.Response:
    return web.Response(
        body=msgspec.json.encode(body),
        status=status,
        content_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


@route(
    "POST",
    f"{V1}/session",
    summary="Log in to the console with an API token (sets the session cookies)",
    scope=None,
    body=Login,
    responses={200: SessionView},
    errors=(400, 401),
)
async def log_in(call: Call[Login, None]) -> web.Response:
    token = await authenticate(call.deps.store.tokens, f"Bearer {call.body.token.strip()}")
    if token is None:
        raise ApiError(
            401,
            "not a valid token",
            "that token is unknown or revoked; `durable tokens create NAME --scope read` "
            "makes one (the first start of `durable up` printed an admin token)",
        )
    csrf = secrets.token_urlsafe(24)
    response = _json(_view(token, csrf))
    secure = call.request.secure
    response.set_cookie(
        SESSION_COOKIE,
        call.body.token.strip(),
        httponly=True,
        samesite="Strict",
        secure=secure,
        path="/",
    )
    response.set_cookie(CSRF_COOKIE, csrf, samesite="Strict", secure=secure, path="/")
    return response


@route(
    "GET",
    f"{V1}/session",
    summary="Who the console (or a bearer token) is logged in as",
    scope="read",
    responses={200: SessionView},
    errors=(401,),
)
async def who_am_i(call: Call[None, None]) -> SessionView:
    assert call.token is not None  # a bearer route: checked before the handler runs
    return _view(call.token, call.request.cookies.get(CSRF_COOKIE))


@route(
    "DELETE",
    f"{V1}/session",
    summary="Log out of the console (clears the session cookies)",
    scope=None,
    responses={204: None},
)
async def log_out(call: Call[None, None]) -> web.Response:
    response = web.Response(status=204)
    response.del_cookie(SESSION_COOKIE, path="/")
    response.del_cookie(CSRF_COOKIE, path="/")
    return response


ROUTES = resource("session", log_in, who_am_i, log_out)

"""``/api/v1/tokens``: API tokens, listed (never their secrets), created (the secret is
shown once) and revoked. Admin only."""

from __future__ import annotations

import msgspec

from durable.api import schemas as s
from durable.api.routing import V1, ApiError, Call, resource, route
from durable.application import tokens as auth
from durable.core.errors import DurableError

__all__ = ["ROUTES"]


@route(
    "GET",
    f"{V1}/tokens",
    summary="API tokens (never their secrets)",
    scope="admin",
    responses={200: s.TokenList},
)
async def list_tokens(call: Call[None, None]) -> s.TokenList:
    tokens = await auth.list_tokens(call.deps.store.tokens, include_revoked=True)
    return s.TokenList(tokens=[s.TokenView(**msgspec.structs.asdict(t)) for t in tokens])


@route(
    "POST",
    f"{V1}/tokens",
    summary="Create a token; its secret is shown once",
    scope="admin",
    body=s.TokenCreate,
    responses={201: s.TokenCreated},
    errors=(400,),
)
async def create_token(call: Call[s.TokenCreate, None]) -> s.TokenCreated:
    info, token = await auth.create_token(
        call.deps.store.tokens, call.body.name, call.body.scopes, by=call.by
    )
    return s.TokenCreated(**msgspec.structs.asdict(info), token=token)


@route(
    "DELETE",
    f"{V1}/tokens/{{token_id}}",
    summary="Revoke a token: it stops working at once",
    scope="admin",
    responses={200: s.TokenView},
    errors=(404,),
)
async def revoke_token(call: Call[None, None]) -> s.TokenView:
    token_id = call.path_id("token_id", "token")
    try:
        info = await auth.revoke_token(call.deps.store.tokens, token_id)
    except DurableError as exc:
        raise ApiError(404, "no such token", str(exc)) from None
    return s.TokenView(**msgspec.structs.asdict(info))


ROUTES = resource("tokens", list_tokens, create_token, revoke_token)

"""API bearer tokens: created with scopes, stored hashed, revocable.

A token reads ``dtk_<id>_<secret>``. Only the SHA-256 of the secret is stored; the
secrets are 256 random bits, so a fast hash is as safe as a slow one here (the same
choice as GitHub's and PyPI's API tokens) and keeps the check well under a millisecond.

Scopes: ``read`` (look at workflows, runs, events, logs, backfills, schedules,
metrics), ``trigger`` (start runs), ``operate`` (cancel, pause, resume, rerun,
backfills, schedules), ``admin`` (tokens, and everything else). ``trigger`` and
``operate`` include ``read``; ``admin`` includes every scope.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from datetime import datetime
from typing import Literal, get_args

import asyncpg
import msgspec

from durable.core.errors import DurableError
from durable.store.postgres import PostgresEventStore

__all__ = [
    "SCOPES",
    "Scope",
    "TokenInfo",
    "authenticate",
    "create_token",
    "ensure_first_token",
    "grants",
    "list_tokens",
    "revoke_token",
    "tokens_db",
]

Scope = Literal["read", "trigger", "operate", "admin"]
SCOPES: tuple[str, ...] = get_args(Scope)
_IMPLIED: dict[str, frozenset[str]] = {
    "read": frozenset({"read"}),
    "trigger": frozenset({"trigger", "read"}),
    "operate": frozenset({"operate", "read"}),
    "admin": frozenset(SCOPES),
}
_TOKEN = re.compile(r"^dtk_([0-9a-f]{12})_([A-Za-z0-9_-]{20,100})$")
_NAME = re.compile(r"^[A-Za-z0-9_.@:-]{1,100}$")


class TokenInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A token as listed: never its secret."""

    token_id: str
    name: str
    scopes: list[Scope]
    created_at: datetime
    created_by: str | None = None
    revoked_at: datetime | None = None


def tokens_db(store: PostgresEventStore) -> asyncpg.Pool:
    """The API's one way to the token table: the store's pool (to become the store's
    tokens protocol). Every token read and write of the API goes through it."""
    return store.pool


def grants(scopes: Sequence[str], needed: str) -> bool:
    """Whether a token with ``scopes`` may do what needs scope ``needed``."""
    return any(needed in _IMPLIED.get(s, frozenset()) for s in scopes)


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def _info(r: asyncpg.Record) -> TokenInfo:
    return TokenInfo(
        token_id=r["token_id"],
        name=r["name"],
        scopes=list(r["scopes"]),
        created_at=r["created_at"],
        created_by=r["created_by"],
        revoked_at=r["revoked_at"],
    )


async def create_token(
    conn: asyncpg.Connection | asyncpg.Pool,
    name: str,
    scopes: Sequence[str],
    *,
    by: str | None = None,
) -> tuple[TokenInfo, str]:
    """A new token and its secret (shown once: only its hash is kept)."""
    if not _NAME.match(name):
        raise DurableError(
            f"token name {name!r} is invalid", hint="use 1-100 letters, digits and _ . @ : -"
        )
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown or not scopes:
        raise DurableError(
            f"token scopes {list(scopes)!r} are invalid",
            hint=f"give one or more of: {', '.join(SCOPES)}",
        )
    token_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    row = await conn.fetchrow(
        "INSERT INTO durable.api_tokens (token_id, name, scopes, secret_sha256, created_by) "
        "VALUES ($1, $2, $3, $4, $5) RETURNING *",
        token_id,
        name,
        sorted(set(scopes), key=SCOPES.index),
        _digest(secret),
        by,
    )
    return _info(row), f"dtk_{token_id}_{secret}"


async def list_tokens(pool: asyncpg.Pool, *, include_revoked: bool = False) -> list[TokenInfo]:
    rows = await pool.fetch(
        "SELECT * FROM durable.api_tokens WHERE $1 OR revoked_at IS NULL ORDER BY created_at",
        include_revoked,
    )
    return [_info(r) for r in rows]


async def revoke_token(pool: asyncpg.Pool, token_id: str) -> TokenInfo:
    """Revoke a token (by id, or by name when the name is unique); it stops working at once."""
    rows = await pool.fetch(
        "SELECT * FROM durable.api_tokens WHERE token_id = $1 OR name = $1", token_id
    )
    if not rows:
        raise DurableError(f"no token {token_id!r}", hint="`durable tokens list` shows them")
    if len(rows) > 1:
        raise DurableError(
            f"{len(rows)} tokens are named {token_id!r}", hint="revoke one by its id"
        )
    row = await pool.fetchrow(
        "UPDATE durable.api_tokens SET revoked_at = coalesce(revoked_at, now()) "
        "WHERE token_id = $1 RETURNING *",
        rows[0]["token_id"],
    )
    return _info(row)


async def authenticate(pool: asyncpg.Pool, authorization: str | None) -> TokenInfo | None:
    """The live token an ``Authorization: Bearer ...`` header carries, or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    match = _TOKEN.match(token.strip()) if scheme.lower() == "bearer" else None
    if match is None:
        return None
    row = await pool.fetchrow(
        "SELECT * FROM durable.api_tokens WHERE token_id = $1 AND revoked_at IS NULL",
        match.group(1),
    )
    if row is None or not hmac.compare_digest(bytes(row["secret_sha256"]), _digest(match.group(2))):
        return None
    return _info(row)


async def ensure_first_token(pool: asyncpg.Pool) -> str | None:
    """At the first start of a service: create an admin token and return it (to print
    once); None when any token was ever created."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('durable.api_tokens'))")
        if await conn.fetchval("SELECT count(*) FROM durable.api_tokens"):
            return None
        _, token = await create_token(conn, "first-admin", ["admin"], by="durable up")
        return token

"""Connections to PostgreSQL, and the one place driver errors become durable's errors.

Every PostgreSQL operation of the store runs inside :func:`translated`: a lost connection
becomes :class:`~durable.core.errors.StoreUnavailable`, any other refusal of the server
:class:`~durable.core.errors.StoreError` — by exception class, never by message text.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg

from durable.core.errors import StoreError, StoreUnavailable

__all__ = ["CONNECTION_ERRORS", "create_pool", "init_connection", "translated"]

CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
)


@contextmanager
def translated(what: str) -> Iterator[None]:
    """Run a store operation; driver errors leave as StoreUnavailable or StoreError."""
    try:
        yield
    except CONNECTION_ERRORS as exc:
        raise StoreUnavailable(f"PostgreSQL unavailable ({what}): {exc}") from exc
    except asyncpg.PostgresError as exc:
        raise StoreError(f"{what} failed: {type(exc).__name__}: {exc}") from exc


async def init_connection(conn: asyncpg.Connection) -> None:
    # jsonb as raw JSON bytes both ways: msgspec encodes and decodes, not the driver.
    await conn.set_type_codec(
        "jsonb",
        schema="pg_catalog",
        encoder=lambda data: b"\x01" + data,
        decoder=lambda data: data[1:],
        format="binary",
    )


async def create_pool(
    dsn: str, *, min_size: int, max_size: int, connect_timeout: float
) -> asyncpg.Pool:
    try:
        return await asyncpg.create_pool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            init=init_connection,
            timeout=connect_timeout,
            # The append statement's custom plans cost more to make (0.4 ms a batch) than
            # they save; its generic plan is as good, and reads are index lookups.
            server_settings={"plan_cache_mode": "force_generic_plan"},
        )
    except CONNECTION_ERRORS as exc:
        raise StoreUnavailable(
            f"cannot connect to PostgreSQL: {exc}",
            hint="check DURABLE_DATABASE_URL, or unset it to use the embedded database",
        ) from exc

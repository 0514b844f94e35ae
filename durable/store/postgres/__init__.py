"""The PostgreSQL store (asyncpg): group-committed event log, runs view, and the tables
beside them. :func:`connect` opens it; the pool never leaves it."""

from __future__ import annotations

from durable.core.events import REGISTRY, EventRegistry
from durable.store.migrate import apply_migrations
from durable.store.postgres.connection import create_pool, translated
from durable.store.postgres.coordination import CONTROL_CHANNEL, RUNS_CHANNEL
from durable.store.postgres.store import NOTIFY_CHANNEL, PostgresEventStore

__all__ = ["CONTROL_CHANNEL", "NOTIFY_CHANNEL", "RUNS_CHANNEL", "PostgresEventStore", "connect"]


async def connect(
    dsn: str,
    *,
    migrate: bool = True,
    # 0: no floor of idle connections to restore while PostgreSQL is away (asyncpg logs
    # a traceback each time it fails to); connections still stay open while in use
    min_size: int = 0,
    max_size: int = 10,
    registry: EventRegistry = REGISTRY,
    connect_timeout: float = 10.0,
) -> PostgresEventStore:
    """Open a pool on ``dsn``, apply migrations, and return the store."""
    pool = await create_pool(
        dsn, min_size=min_size, max_size=max_size, connect_timeout=connect_timeout
    )
    if migrate:
        with translated("migrating"):
            async with pool.acquire() as conn:
                await apply_migrations(conn)
    return PostgresEventStore(pool, dsn=dsn, registry=registry)

"""Test fixtures: one real PostgreSQL (pgserver) per session, a fresh database per test."""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import logging
import os
import warnings
from collections.abc import AsyncIterator, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest

from durable.store import PostgresEventStore, connect
from durable.store.migrate import apply_migrations

TEMPLATE = "durable_template"
T = TypeVar("T")
_counter = itertools.count()


class PgServer:
    def __init__(self, server: object, datadir: Path) -> None:
        self.server = server
        self.datadir = datadir

    def url(self, database: str = "postgres") -> str:
        return str(self.server.get_uri(database))  # type: ignore[attr-defined]


def run_sync(awaitable: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to its end from synchronous code, in a thread of its own: the
    browser tests' sync Playwright already runs an event loop in the main thread."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, awaitable).result()


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgServer]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.getLogger("pgserver").setLevel(logging.WARNING)
        import pgserver

        datadir = tmp_path_factory.mktemp("pg") / "data"
        server = pgserver.get_server(datadir, cleanup_mode="delete")
    srv = PgServer(server, datadir)

    async def make_template() -> None:
        conn = await asyncpg.connect(srv.url())
        try:
            await conn.execute(f"DROP DATABASE IF EXISTS {TEMPLATE}")
            await conn.execute(f"CREATE DATABASE {TEMPLATE}")
        finally:
            await conn.close()
        conn = await asyncpg.connect(srv.url(TEMPLATE))
        try:
            await apply_migrations(conn)
        finally:
            await conn.close()

    run_sync(make_template())
    yield srv
    server.cleanup()  # type: ignore[attr-defined]


async def create_database(pg: PgServer, *, template: str = TEMPLATE) -> str:
    name = f"t_{os.getpid()}_{next(_counter)}"
    conn = await asyncpg.connect(pg.url())
    try:
        await conn.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
    finally:
        await conn.close()
    return name


async def drop_database(pg: PgServer, name: str) -> None:
    conn = await asyncpg.connect(pg.url())
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await conn.close()


@pytest.fixture
async def database_url(pg_server: PgServer) -> AsyncIterator[str]:
    """A fresh, migrated database on the session's real PostgreSQL."""
    name = await create_database(pg_server)
    yield pg_server.url(name)
    await drop_database(pg_server, name)


@pytest.fixture
async def empty_database_url(pg_server: PgServer) -> AsyncIterator[str]:
    """A fresh database with no durable schema at all."""
    name = await create_database(pg_server, template="template1")
    yield pg_server.url(name)
    await drop_database(pg_server, name)


@pytest.fixture
async def pg_store(database_url: str) -> AsyncIterator[PostgresEventStore]:
    store = await connect(database_url)
    yield store
    await store.close()

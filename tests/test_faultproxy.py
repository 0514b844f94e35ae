"""The fault proxy itself, against the session's real PostgreSQL: it forwards, it cuts,
it stalls, it refuses, and it heals."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import asyncpg
import pytest

from tests.conftest import PgServer
from tests.faultproxy import FaultProxy


def _via(proxy: FaultProxy, database_url: str) -> str:
    database = urlsplit(database_url).path.lstrip("/")
    return f"postgresql://postgres@127.0.0.1:{proxy.port}/{database}"


async def test_cut_stall_refuse_and_heal(pg_server: PgServer, database_url: str) -> None:
    proxy = await FaultProxy.start(unix_path=str(pg_server.datadir / ".s.PGSQL.5432"))
    try:
        conn = await asyncpg.connect(_via(proxy, database_url), timeout=10)
        assert await conn.fetchval("SELECT 41 + 1") == 42

        proxy.cut()
        with pytest.raises((asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError)):
            await asyncio.wait_for(conn.fetchval("SELECT 1"), 5)
        conn.terminate()

        conn = await asyncpg.connect(_via(proxy, database_url), timeout=10)
        proxy.stall(True)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(conn.fetchval("SELECT 1"), 0.5)
        proxy.stall(False)
        conn.terminate()

        proxy.refuse(True)
        before = proxy.accepted
        with pytest.raises((OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError)):
            await asyncpg.connect(_via(proxy, database_url), timeout=5)
        assert proxy.accepted > before

        proxy.heal()
        conn = await asyncpg.connect(_via(proxy, database_url), timeout=10)
        assert await conn.fetchval("SELECT 1") == 1
        await conn.close()
    finally:
        await proxy.close()

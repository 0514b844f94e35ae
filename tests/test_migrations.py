from __future__ import annotations

import asyncio

import asyncpg
import pytest

from durable.core.errors import MigrationError
from durable.store.migrate import Migration, apply_migrations, load_migrations


async def _applied(url: str) -> list[tuple[int, str]]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT version, name FROM durable.schema_migrations ORDER BY 1")
        return [(r["version"], r["name"]) for r in rows]
    finally:
        await conn.close()


async def test_migrations_apply_once_then_are_a_no_op(empty_database_url: str) -> None:
    conn = await asyncpg.connect(empty_database_url)
    try:
        first = await apply_migrations(conn)
        second = await apply_migrations(conn)
    finally:
        await conn.close()
    assert first == [m.name for m in load_migrations()]
    assert second == []
    assert await _applied(empty_database_url) == [(m.version, m.name) for m in load_migrations()]


async def test_concurrent_starts_apply_each_migration_once(empty_database_url: str) -> None:
    conns = [await asyncpg.connect(empty_database_url) for _ in range(6)]
    try:
        results = await asyncio.gather(*(apply_migrations(c) for c in conns))
    finally:
        for c in conns:
            await c.close()
    applied_by = [r for r in results if r]
    assert len(applied_by) == 1  # one process did the work, the others found it done
    assert await _applied(empty_database_url) == [(m.version, m.name) for m in load_migrations()]


async def test_an_edited_applied_migration_is_refused(empty_database_url: str) -> None:
    conn = await asyncpg.connect(empty_database_url)
    try:
        original = [Migration(1, "0001_t.sql", "CREATE TABLE durable.t (a int);")]
        await apply_migrations(conn, original)
        edited = [Migration(1, "0001_t.sql", "CREATE TABLE durable.t (a bigint);")]
        with pytest.raises(
            MigrationError, match=r"0001_t\.sql was applied, but its file has changed"
        ):
            await apply_migrations(conn, edited)
    finally:
        await conn.close()


async def test_a_database_from_a_newer_durable_is_refused(empty_database_url: str) -> None:
    conn = await asyncpg.connect(empty_database_url)
    try:
        two = [
            Migration(1, "0001_a.sql", "CREATE TABLE durable.a (x int);"),
            Migration(2, "0002_b.sql", "CREATE TABLE durable.b (x int);"),
        ]
        await apply_migrations(conn, two)
        with pytest.raises(MigrationError, match="newer than this durable knows"):
            await apply_migrations(conn, two[:1])
    finally:
        await conn.close()

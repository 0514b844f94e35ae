from __future__ import annotations

import asyncio

import asyncpg
import pytest

from durable.core.errors import MigrationError
from durable.store.migrate import Migration, apply_migrations, check_numbering, load_migrations


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


def test_numbers_are_unique_and_may_leave_gaps() -> None:
    # parallel branches each take a number of their own: 0009 may ship before 0008
    gap = [
        Migration(9, "0009_b.sql", "SELECT 1;"),
        Migration(1, "0001_a.sql", "SELECT 1;"),
    ]
    assert [m.version for m in check_numbering(gap)] == [1, 9]
    twice = [*gap, Migration(9, "0009_c.sql", "SELECT 1;")]
    with pytest.raises(MigrationError, match=r"0009_b\.sql and 0009_c\.sql have the same"):
        check_numbering(twice)
    shipped = [m.version for m in load_migrations()]
    assert shipped == sorted(set(shipped))


async def test_a_lower_number_arriving_later_is_applied_then(empty_database_url: str) -> None:
    conn = await asyncpg.connect(empty_database_url)
    try:
        first = [
            Migration(1, "0001_a.sql", "CREATE TABLE durable.a (x int);"),
            Migration(3, "0003_c.sql", "CREATE TABLE durable.c (x int);"),
        ]
        assert await apply_migrations(conn, first) == ["0001_a.sql", "0003_c.sql"]
        late = Migration(2, "0002_b.sql", "CREATE TABLE durable.b (x int);")
        assert await apply_migrations(conn, check_numbering([*first, late])) == ["0002_b.sql"]
    finally:
        await conn.close()
    assert await _applied(empty_database_url) == [
        (1, "0001_a.sql"),
        (2, "0002_b.sql"),
        (3, "0003_c.sql"),
    ]

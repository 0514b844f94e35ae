"""The store contract on real PostgreSQL, plus what only the Postgres store does."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from durable.core.errors import ConcurrencyConflict
from durable.core.events import RunPaused, RunStarted, run_stream
from durable.store import PostgresEventStore, connect
from durable.store.postgres.connection import init_connection as _init_connection
from tests.histories import created, succeeded_run
from tests.store_contract import StoreContract
from tests.store_tables_contract import TablesContract


class TestPostgresStore(StoreContract):
    @pytest.fixture
    async def store(self, pg_store: PostgresEventStore) -> PostgresEventStore:
        return pg_store


class TestPostgresTables(TablesContract):
    @pytest.fixture
    async def store(self, pg_store: PostgresEventStore) -> PostgresEventStore:
        return pg_store


@pytest.fixture
async def slow_poll_store(database_url: str) -> AsyncIterator[PostgresEventStore]:
    store = await connect(database_url)
    store._poll_interval = 60.0  # only a notification can wake a waiter in time
    yield store
    await store.close()


async def test_group_commit_batches_concurrent_appends_into_few_transactions(
    pg_store: PostgresEventStore,
) -> None:
    for i in range(64):
        await pg_store.append(run_stream(f"r{i}"), 0, [created(f"r{i}")])
    results = await asyncio.gather(
        *(pg_store.append(run_stream(f"r{i}"), 1, [RunStarted()]) for i in range(64)),
        pg_store.append(run_stream("r3"), 0, [RunPaused()]),  # stale: conflicts
        return_exceptions=True,
    )
    assert isinstance(results[-1], ConcurrencyConflict)
    # events of one transaction share now(): 64 appends committed in a handful of batches
    commit_times = {r[0].recorded_at for r in results[:-1] if isinstance(r, list)}
    assert len([r for r in results[:-1] if isinstance(r, list)]) == 64
    assert len(commit_times) <= 4


async def test_a_notification_from_another_process_wakes_a_waiter(
    slow_poll_store: PostgresEventStore, database_url: str
) -> None:
    other = await connect(database_url)
    try:
        await other.append(run_stream("r1"), 0, [created("r1")])
        last = await slow_poll_store.last_position()
        await slow_poll_store.wait_for_events(last, 0.01)  # starts the listener

        async def later() -> None:
            await asyncio.sleep(0.1)
            await other.append(run_stream("r1"), 1, [RunStarted()])

        task = asyncio.create_task(later())
        # poll interval is 60 s and the timeout 30 s: only NOTIFY can make this True
        assert await slow_poll_store.wait_for_events(last, 30) is True
        await task
    finally:
        await other.close()


async def test_polling_finds_events_whose_notification_was_lost(
    pg_store: PostgresEventStore, database_url: str
) -> None:
    await pg_store.append(run_stream("r1"), 0, [created("r1")])
    last = await pg_store.last_position()
    pg_store._poll_interval = 0.1
    conn = await asyncpg.connect(database_url)
    await _init_connection(conn)
    try:
        # an insert that sends no NOTIFY, as if the notification were lost
        await conn.execute(
            "INSERT INTO durable.events (stream_id, seq, type, version, data) "
            "VALUES ('run:r1', 2, 'run_started', 1, $1)",
            b'{"type":"run_started"}',
        )
    finally:
        await conn.close()
    assert await pg_store.wait_for_events(last, 30) is True
    assert (await pg_store.read_all(last))[0].event == RunStarted()


async def test_rebuild_repairs_a_damaged_read_model(
    pg_store: PostgresEventStore, database_url: str
) -> None:
    await pg_store.append(run_stream("r1"), 0, succeeded_run("r1"))
    good = await pg_store.get_run("r1")
    async with pg_store._pool.acquire() as conn:
        await conn.execute("UPDATE durable.runs SET status = 'running', last_seq = 3")
    assert (await pg_store.get_run("r1")) != good
    await pg_store.rebuild_runs()
    assert await pg_store.get_run("r1") == good


async def test_events_survive_a_new_connection(database_url: str) -> None:
    first = await connect(database_url)
    await first.append(run_stream("r1"), 0, succeeded_run("r1"))
    await first.close()
    second = await connect(database_url)
    try:
        assert [r.event for r in await second.read_stream(run_stream("r1"))] == succeeded_run("r1")
    finally:
        await second.close()

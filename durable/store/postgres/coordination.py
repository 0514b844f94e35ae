"""Coordination through PostgreSQL: wake-ups (LISTEN/NOTIFY) and leadership (a session
advisory lock on a connection of its own: when the leader dies, PostgreSQL drops the
lock with the connection and a standby takes over)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import asyncpg

from durable.store.postgres.connection import CONNECTION_ERRORS, translated

__all__ = ["CONTROL_CHANNEL", "RUNS_CHANNEL", "PgLead", "PgLeadership", "PgWakeUps"]

RUNS_CHANNEL = "durable_runs"  # a run was created: executors look for work
CONTROL_CHANNEL = "durable_control"  # an operator changed a run (payload: run id)
# pg_try_advisory_lock keys, one per role ("durable scheduler", "durable notifier")
_ROLES = {
    "scheduler": 0x6475_7261_626C_7301,
    "notifier": 0x6475_7261_626C_6E01,
    # one process exports the spans derived from the log (durable.runtime.tracing)
    "traces": 0x6475_7261_626C_7302,
    # one process archives finished runs on a schedule (durable.runtime.archive)
    "archiver": 0x6475_7261_626C_7303,
}


class _PgWatch:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn
        self.closing = False

    @property
    def lost(self) -> bool:
        """The connection dropped: wake-ups are no longer heard."""
        return self._conn.is_closed() and not self.closing

    async def close(self) -> None:
        self.closing = True
        with contextlib.suppress(*CONNECTION_ERRORS, asyncpg.PostgresError):
            await self._conn.close(timeout=5)


class PgWakeUps:
    def __init__(self, pool: asyncpg.Pool, dsn: str) -> None:
        self._pool = pool
        self._dsn = dsn

    async def watch(
        self, on_runs: Callable[[], None], on_control: Callable[[str], None]
    ) -> _PgWatch:
        def control(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
            on_control(payload)

        def terminated(_conn: Any) -> None:
            # wake-ups sent from now on are missed: the watcher looks for work, and
            # finds the watch lost
            if not watch.closing:
                on_runs()

        with translated("listening for wake-ups"):
            conn = await asyncpg.connect(self._dsn, timeout=10)
            try:
                async with asyncio.timeout(10):
                    await conn.add_listener(RUNS_CHANNEL, lambda *_: on_runs())
                    await conn.add_listener(CONTROL_CHANNEL, control)
            except BaseException:
                conn.terminate()
                raise
        watch = _PgWatch(conn)
        conn.add_termination_listener(terminated)
        return watch

    async def notify_runs(self, reason: str) -> None:
        await self._notify(RUNS_CHANNEL, reason)

    async def notify_control(self, run_id: str) -> None:
        await self._notify(CONTROL_CHANNEL, run_id)

    async def _notify(self, channel: str, payload: str) -> None:
        # its own transaction: sent at once
        with translated("sending a wake-up"):
            await self._pool.execute("SELECT pg_notify($1, $2)", channel, payload)


class PgLead:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def check(self) -> None:
        """Still connected, so still leading; StoreUnavailable otherwise."""
        with translated("checking leadership"):
            await self._conn.fetchval("SELECT 1", timeout=10)

    async def release(self) -> None:
        with contextlib.suppress(*CONNECTION_ERRORS, asyncpg.PostgresError):
            await self._conn.close(timeout=5)


class PgLeadership:
    def __init__(self, dsn: str) -> None:
        self._dsn = dsn

    async def try_lead(self, role: str) -> PgLead | None:
        key = _ROLES.get(role)
        if key is None:
            raise ValueError(f"no leadership role {role!r}; known: {', '.join(_ROLES)}")
        with translated(f"electing the {role}"):
            conn = await asyncpg.connect(self._dsn, timeout=10)
            try:
                led = await conn.fetchval("SELECT pg_try_advisory_lock($1)", key, timeout=10)
            except BaseException:
                conn.terminate()
                raise
        if not led:
            await PgLead(conn).release()
            return None
        return PgLead(conn)

"""What sensors read of durable's own tables: a workflow's runs at a logical time, and an
asset's latest update.

Two narrow reads, on either store: PostgreSQL answers with one indexed query each; the
in-memory store (pure executor tests) answers from its runs view and tracking.
"""

from __future__ import annotations

from datetime import datetime

from durable.core.runs_view import RunRow
from durable.store.base import EventStore, RunFilter
from durable.store.postgres.append import RUN_COLUMNS, run_row
from durable.store.postgres.connection import translated
from durable.store.postgres.store import PostgresEventStore
from durable.store.rows import AssetUpdate

__all__ = ["asset_update", "runs_at"]

_MAX_RUNS = 100


async def runs_at(store: EventStore, workflow: str, start: datetime, end: datetime) -> list[RunRow]:
    """The runs of ``workflow`` whose logical time is in ``[start, end)``, newest first
    (at most 100)."""
    if isinstance(store, PostgresEventStore):
        with translated("reading runs by logical time"):
            async with store.sql_pool().acquire() as conn:
                rows = await conn.fetch(
                    f"SELECT {RUN_COLUMNS} FROM durable.runs WHERE workflow = $1 "
                    "AND logical_time >= $2 AND logical_time < $3 "
                    "ORDER BY created_at DESC, run_id DESC LIMIT $4",
                    workflow,
                    start,
                    end,
                    _MAX_RUNS,
                )
        return [run_row(r) for r in rows]
    everything = await store.list_runs(RunFilter(workflow=workflow, limit=2**31))
    found = [r for r in everything if r.logical_time and start <= r.logical_time < end]
    return found[:_MAX_RUNS]


async def asset_update(store: EventStore, asset: str) -> AssetUpdate | None:
    """The asset's latest recorded update, or None when none was recorded."""
    if isinstance(store, PostgresEventStore):
        with translated("reading an asset"):
            async with store.sql_pool().acquire() as conn:
                row = await conn.fetchrow(
                    "SELECT asset, workflow, run_id, task, generation, updated_at, position "
                    "FROM durable.assets WHERE asset = $1",
                    asset,
                )
        return AssetUpdate(**dict(row)) if row is not None else None
    return next((a for a in await store.tracking.assets() if a.asset == asset), None)

"""Archived runs on PostgreSQL: which finished runs may go, their tombstones, and the
two transactions that move a run's events and task logs out (``record``) and back in
(``restore``).

Both lock the run's ``runs`` row first. ``record`` sets ``runs.archived``, which the
append fence checks: an append decided on the run before it was archived waits on the
row lock, then finds the row archived and is refused (``RunArchived``) instead of
landing in a stream whose events have left.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from durable.core.errors import StoreError
from durable.core.events import EventRegistry, Recorded, run_stream
from durable.core.runs_view import RunRow
from durable.store.codec import encode_event
from durable.store.postgres.append import RUN_COLUMNS, run_row
from durable.store.postgres.connection import translated
from durable.store.rows import ArchivedLogLine, ArchivedRun, NewArchive

__all__ = ["ARCHIVE_COLUMNS", "PgArchives", "archived_run"]

ARCHIVE_COLUMNS = (
    "run_id, workflow, status, created_at, finished_at, uri, events, sha256, bytes, "
    "logs_uri, log_lines, logs_sha256, archived_at, restored_at"
)
_FIELDS = [c.strip() for c in ARCHIVE_COLUMNS.split(",")]

_TERMINAL = "('succeeded', 'failed', 'cancelled')"
# The partial index runs_archivable (0012) serves both pages: its predicate is here.
_ARCHIVABLE = (
    f"SELECT {', '.join('r.' + c.strip() for c in RUN_COLUMNS.split(','))} "
    "FROM durable.runs r WHERE r.finished_at IS NOT NULL AND NOT r.archived "
    f"AND r.finished_at < $1 AND r.status IN {_TERMINAL} {{cursor}}"
    "AND NOT EXISTS (SELECT 1 FROM durable.leases l "
    "WHERE l.run_id = r.run_id AND l.expires_at > now()) "
    "AND NOT EXISTS (SELECT 1 FROM durable.archives a "
    "WHERE a.run_id = r.run_id AND a.restored_at >= $1) "
)
_PAGE = _ARCHIVABLE.format(cursor="") + "ORDER BY r.finished_at, r.run_id LIMIT $2"
_PAGE_AFTER = (
    _ARCHIVABLE.format(cursor="AND (r.finished_at, r.run_id) > ($3, $4::text) ")
    + "ORDER BY r.finished_at, r.run_id LIMIT $2"
)
_COUNT = "SELECT count(*) FROM (" + _ARCHIVABLE.format(cursor="") + ") AS archivable"

# The task-log writer's lock (tables.py): no batch of the run commits while it is held.
_LOGS_LOCK = "SELECT pg_advisory_xact_lock(hashtext('durable.task_logs:' || $1::text))"

_LOGS_LOCKS = (
    "SELECT pg_advisory_xact_lock(hashtext('durable.task_logs:' || id)) "
    "FROM (SELECT id FROM unnest($1::text[]) AS id ORDER BY id) AS ids"
)
# The runs to archive, locked in run_id order, with what must still hold for each.
_CHECK = (
    "SELECT r.run_id, r.status, r.last_seq, r.archived, "
    "EXISTS (SELECT 1 FROM durable.leases l "
    "WHERE l.run_id = r.run_id AND l.expires_at > now()) AS leased, "
    "(SELECT count(*) FROM durable.task_logs t WHERE t.run_id = r.run_id) AS lines, "
    "(SELECT coalesce(max(id), 0) FROM durable.task_logs t WHERE t.run_id = r.run_id) "
    "AS last_line FROM durable.runs r WHERE r.run_id = ANY($1::text[]) "
    "ORDER BY r.run_id FOR UPDATE OF r"
)
_TYPES = [
    "text", "text", "text", "timestamptz", "timestamptz", "text", "int", "text", "bigint",
    "text", "int", "text",
]  # fmt: skip
_RECORD = (
    f"INSERT INTO durable.archives ({', '.join(_FIELDS[:-2])}) "
    f"SELECT * FROM unnest({', '.join(f'${n}::{t}[]' for n, t in enumerate(_TYPES, start=1))}) "
    "ON CONFLICT (run_id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _FIELDS[1:-2])
    + ", archived_at = now(), restored_at = NULL "
    f"RETURNING {ARCHIVE_COLUMNS}"
)


def archived_run(r: asyncpg.Record) -> ArchivedRun:
    return ArchivedRun(**{name: r[name] for name in _FIELDS})


class PgArchives:
    def __init__(self, pool: asyncpg.Pool, registry: EventRegistry) -> None:
        self._pool = pool
        self._registry = registry

    async def archivable(
        self,
        finished_before: datetime,
        *,
        after: tuple[datetime, str] | None = None,
        limit: int = 100,
    ) -> list[RunRow]:
        with translated("listing runs to archive"):
            if after is None:
                rows = await self._pool.fetch(_PAGE, finished_before, limit)
            else:
                rows = await self._pool.fetch(_PAGE_AFTER, finished_before, limit, *after)
        return [run_row(r) for r in rows]

    async def count_archivable(self, finished_before: datetime) -> int:
        with translated("counting runs to archive"):
            return int(await self._pool.fetchval(_COUNT, finished_before))

    async def task_logs(self, run_ids: Sequence[str]) -> dict[str, list[ArchivedLogLine]]:
        with translated("reading task logs"):
            rows = await self._pool.fetch(
                "SELECT run_id, task, generation, attempt, line, at, stream, message, id "
                "FROM durable.task_logs WHERE run_id = ANY($1::text[]) ORDER BY run_id, id",
                list(run_ids),
            )
        out: dict[str, list[ArchivedLogLine]] = {}
        for r in rows:
            fields = dict(r)
            out.setdefault(fields.pop("run_id"), []).append(ArchivedLogLine(**fields))
        return out

    async def record(self, archives: Sequence[NewArchive]) -> list[ArchivedRun | None]:
        if not archives:
            return []
        wanted = {a.run_id: a for a in archives}
        ids = sorted(wanted)  # one lock order for every archiver: no deadlock
        recorded: dict[str, ArchivedRun] = {}
        with translated("recording archived runs"):
            async with self._pool.acquire() as conn, conn.transaction():
                # no log batch of these runs commits until this does (tables.py)
                await conn.execute(_LOGS_LOCKS, ids)
                runs = await conn.fetch(_CHECK, ids)
                ok = [
                    r["run_id"]
                    for r in runs
                    if not r["archived"]
                    and not r["leased"]
                    and r["status"] in ("succeeded", "failed", "cancelled")
                    and (wanted[r["run_id"]].events, wanted[r["run_id"]].log_lines)
                    == (r["last_seq"], r["lines"])
                    and wanted[r["run_id"]].last_log_id == r["last_line"]
                ]
                if ok:
                    deleted = dict(
                        await conn.fetch(
                            "WITH d AS (DELETE FROM durable.events "
                            "WHERE stream_id = ANY($1::text[]) RETURNING stream_id) "
                            "SELECT stream_id, count(*) FROM d GROUP BY stream_id",
                            [run_stream(i) for i in ok],
                        )
                    )
                    for i in ok:
                        if deleted.get(run_stream(i), 0) != wanted[i].events:
                            # the row says N events, the log holds another number
                            raise StoreError(
                                f"run {i}: its read model says {wanted[i].events} events, "
                                f"the log holds {deleted.get(run_stream(i), 0)}; nothing archived",
                                hint=f"`durable replay {i} --verify` shows the difference",
                                retryable=False,
                            )
                    await conn.execute(
                        "DELETE FROM durable.task_logs WHERE run_id = ANY($1::text[])", ok
                    )
                    await conn.execute(
                        "UPDATE durable.runs SET archived = true WHERE run_id = ANY($1::text[])",
                        ok,
                    )
                    rows = await conn.fetch(
                        _RECORD, *([getattr(wanted[i], f) for i in ok] for f in _FIELDS[:-2])
                    )
                    recorded = {r["run_id"]: archived_run(r) for r in rows}
        return [recorded.get(a.run_id) for a in archives]

    async def get(self, run_id: str) -> ArchivedRun | None:
        found = await self.of([run_id])
        return found.get(run_id)

    async def of(self, run_ids: Sequence[str]) -> dict[str, ArchivedRun]:
        if not run_ids:
            return {}
        with translated("reading archived runs"):
            rows = await self._pool.fetch(
                f"SELECT {ARCHIVE_COLUMNS} FROM durable.archives "
                "WHERE run_id = ANY($1::text[]) AND restored_at IS NULL",
                list(run_ids),
            )
        return {r["run_id"]: archived_run(r) for r in rows}

    async def restore(
        self,
        archive: ArchivedRun,
        records: Sequence[Recorded],
        logs: Sequence[ArchivedLogLine],
    ) -> bool:
        stream = run_stream(archive.run_id)
        if any(r.stream_id != stream for r in records):
            raise ValueError(f"restore of {archive.run_id} takes events of {stream} only")
        encoded = [encode_event(self._registry, stream, r.event) for r in records]
        with translated("restoring an archived run"):
            async with self._pool.acquire() as conn, conn.transaction():
                await conn.execute(_LOGS_LOCK, archive.run_id)  # record's order: no deadlock
                run = await conn.fetchrow(
                    "SELECT last_seq, archived FROM durable.runs WHERE run_id = $1 FOR UPDATE",
                    archive.run_id,
                )
                current = await conn.fetchval(
                    "SELECT sha256 FROM durable.archives "
                    "WHERE run_id = $1 AND restored_at IS NULL FOR UPDATE",
                    archive.run_id,
                )
                if run is None or not run["archived"] or current != archive.sha256:
                    return False
                if run["last_seq"] != len(records):
                    raise StoreError(
                        f"run {archive.run_id}: its read model says {run['last_seq']} events, "
                        f"its archive holds {len(records)}; nothing restored",
                        retryable=False,
                    )
                # Their own positions: the events are where they were in the log, so
                # readers that already went past them (notifier, traces, assets) do not
                # see them again; positions are never reused, so they are free.
                await conn.execute(
                    "INSERT INTO durable.events "
                    "(position, stream_id, seq, type, version, data, recorded_at) "
                    "OVERRIDING SYSTEM VALUE SELECT p, $1, seq, type, version, data, at "
                    "FROM unnest($2::bigint[], $3::int[], $4::text[], $5::int2[], "
                    "$6::jsonb[], $7::timestamptz[]) AS e(p, seq, type, version, data, at)",
                    stream,
                    [r.position for r in records],
                    [r.seq for r in records],
                    [t for t, _, _ in encoded],
                    [v for _, v, _ in encoded],
                    [d for _, _, d in encoded],
                    [r.recorded_at for r in records],
                )
                if logs:
                    await conn.execute(
                        "INSERT INTO durable.task_logs (id, run_id, task, generation, "
                        "attempt, line, at, stream, message) OVERRIDING SYSTEM VALUE "
                        "SELECT i, $1, t, g, a, n, at, s, m FROM unnest($2::bigint[], "
                        "$3::text[], $4::int[], $5::int[], $6::int[], $7::timestamptz[], "
                        "$8::text[], $9::text[]) AS l(i, t, g, a, n, at, s, m) "
                        "ON CONFLICT DO NOTHING",
                        archive.run_id,
                        *_log_columns(logs),
                    )
                await conn.execute(
                    "UPDATE durable.runs SET archived = false WHERE run_id = $1", archive.run_id
                )
                await conn.execute(
                    "UPDATE durable.archives SET restored_at = now() WHERE run_id = $1",
                    archive.run_id,
                )
        return True


def _log_columns(logs: Sequence[ArchivedLogLine]) -> list[list[Any]]:
    return [
        [x.id for x in logs],
        [x.task for x in logs],
        [x.generation for x in logs],
        [x.attempt for x in logs],
        [x.line for x in logs],
        [x.at for x in logs],
        [x.stream for x in logs],
        [x.message for x in logs],
    ]

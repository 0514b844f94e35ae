"""Group commit: appends from many concurrent callers batched into one transaction.

Each caller's ``await`` returns only after its batch committed. The batch is clocked by
the database: while one batch commits, the next one gathers, so an idle store commits a
lone append at once and a busy one commits large batches. One stream's conflict rejects
that append alone; the rest of the batch commits. The batch statement is tuned: one
round trip does the lock, dedup, fencing, events, read model and notification.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from durable.core.errors import ConcurrencyConflict, DuplicateRun, RunArchived, StoreUnavailable
from durable.core.events import Event, Recorded, RunCreated
from durable.core.runs_view import RunRow, delta_of
from durable.store.base import CommitObserver
from durable.store.postgres.connection import CONNECTION_ERRORS

__all__ = [
    "APPEND_LOCK",
    "EVENT_COLUMNS",
    "LOCK_SQL",
    "RUN_COLUMNS",
    "RUN_COLUMN_NAMES",
    "Append",
    "GroupCommit",
    "current_seq",
    "run_record",
    "run_row",
    "write_batch",
]

# pg_advisory_xact_lock key held from assigning positions to commit ("durable append")
APPEND_LOCK = 0x6475_7261_626C_6101

LOCK_SQL = "SELECT pg_advisory_xact_lock($1)"

# One statement, one round trip, one commit: the batch's lock, dedup, fencing, events,
# read model and notification. Every row inserted depends on `lock`, so positions are
# assigned only once the lock is held; it is released at commit, so a smaller position
# can never become visible after a larger one.
_APPEND_BATCH_SQL = """
WITH lock AS (
    SELECT pg_advisory_xact_lock($1) AS held
), new_runs AS (
    -- a new run: its row is the dedup key (idempotency_key UNIQUE) and its fence
    INSERT INTO durable.runs (run_id, workflow, version, status, trigger_kind,
                              idempotency_key, params, logical_time, created_at, started_at,
                              finished_at, updated_at, last_seq, trigger_source)
    SELECT r.run_id, r.workflow, r.version, r.status, r.trigger_kind, r.idempotency_key,
           r.params, r.logical_time, now(), CASE WHEN r.started THEN now() END,
           CASE WHEN r.finished THEN now() END, now(), r.last_seq, r.trigger_source
    FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                $8::jsonb[], $9::timestamptz[], $10::bool[], $11::bool[], $12::int[],
                $27::text[])
         AS r(run_id, workflow, version, status, trigger_kind, idempotency_key, params,
              logical_time, started, finished, last_seq, trigger_source)
    CROSS JOIN lock
    ON CONFLICT DO NOTHING
    RETURNING 'run:' || run_id AS stream_id
), runs_claimed AS (
    -- an existing run: runs.last_seq is the fence, moved in the same row update
    UPDATE durable.runs r SET
        status = COALESCE(u.status, r.status),
        last_seq = u.last_seq,
        updated_at = now(),
        started_at = CASE WHEN u.started THEN COALESCE(r.started_at, now())
                          ELSE r.started_at END,
        finished_at = CASE u.finish WHEN 1 THEN now() WHEN -1 THEN NULL
                                    ELSE r.finished_at END
    FROM unnest($13::text[], $14::int[], $15::text[], $16::int[], $17::bool[], $18::int2[])
         AS u(run_id, expected, status, last_seq, started, finish)
    CROSS JOIN lock
    WHERE r.run_id = u.run_id AND r.last_seq = u.expected AND NOT r.archived
    RETURNING 'run:' || r.run_id AS stream_id
), req AS (
    -- any other stream (schedules, backfills): fenced by durable.streams
    SELECT q.stream_id, q.expected, q.last_seq
    FROM unnest($19::text[], $20::int[], $21::int[]) AS q(stream_id, expected, last_seq)
    CROSS JOIN lock
), streams_claimed AS (
    UPDATE durable.streams s SET last_seq = req.last_seq FROM req
    WHERE s.stream_id = req.stream_id AND req.expected > 0 AND s.last_seq = req.expected
    RETURNING s.stream_id
), streams_created AS (
    INSERT INTO durable.streams (stream_id, last_seq)
    SELECT stream_id, last_seq FROM req WHERE expected = 0
    ON CONFLICT DO NOTHING
    RETURNING stream_id
), claimed AS (
    SELECT stream_id FROM new_runs
    UNION ALL SELECT stream_id FROM runs_claimed
    UNION ALL SELECT stream_id FROM streams_claimed
    UNION ALL SELECT stream_id FROM streams_created
), appended AS (
    INSERT INTO durable.events (stream_id, seq, type, version, data)
    SELECT e.stream_id, e.seq, e.type, e.version, e.data
    FROM unnest($22::text[], $23::int[], $24::text[], $25::int2[], $26::jsonb[])
         WITH ORDINALITY AS e(stream_id, seq, type, version, data, n)
    WHERE e.stream_id IN (SELECT stream_id FROM claimed)
    ORDER BY e.n
    RETURNING stream_id, seq, position, recorded_at
)
SELECT a.stream_id, a.seq, a.position, a.recorded_at,
       (SELECT pg_notify('durable_events', max(position)::text) FROM appended) AS notified,
       (SELECT pg_notify('durable_runs', count(*)::text) FROM new_runs
        HAVING count(*) > 0) AS runs_notified
FROM appended a
"""

# Inside a caller's transaction (a transactional SQL task), now() is when that
# transaction began, before the task's own SQL ran: its completion is stamped with the
# time of the append statement instead. The events' recorded_at is set explicitly (its
# column default is now()). Group commits keep the statement above, unchanged.
_APPEND_IN_TRANSACTION_SQL = _APPEND_BATCH_SQL.replace("now()", "statement_timestamp()").replace(
    """INSERT INTO durable.events (stream_id, seq, type, version, data)
    SELECT e.stream_id, e.seq, e.type, e.version, e.data""",
    """INSERT INTO durable.events (stream_id, seq, type, version, data, recorded_at)
    SELECT e.stream_id, e.seq, e.type, e.version, e.data, statement_timestamp()""",
)
assert "now()" not in _APPEND_IN_TRANSACTION_SQL and "recorded_at)" in _APPEND_IN_TRANSACTION_SQL

RUN_COLUMNS = (
    "run_id, workflow, version, status, trigger_kind, idempotency_key, params, logical_time, "
    "created_at, started_at, finished_at, updated_at, last_seq, trigger_source"
)
RUN_COLUMN_NAMES = [c.strip() for c in RUN_COLUMNS.split(",")]
EVENT_COLUMNS = "stream_id, seq, position, recorded_at, type, version, data"


class Append:
    __slots__ = ("created", "encoded", "events", "expected", "future", "stream_id", "submitted")

    def __init__(
        self,
        stream_id: str,
        expected: int,
        events: Sequence[Event],
        encoded: list[tuple[str, int, bytes]],
        future: asyncio.Future[list[Recorded]],
    ) -> None:
        self.stream_id = stream_id
        self.expected = expected
        self.events = events
        self.encoded = encoded
        self.future = future
        self.submitted = time.perf_counter()
        first = events[0]
        self.created = first if isinstance(first, RunCreated) else None


class GroupCommit:
    """The queue of appends and the loop that commits them in batches on ``pool``."""

    def __init__(
        self, pool: asyncpg.Pool, *, max_batch_events: int, max_inflight_batches: int
    ) -> None:
        self._pool = pool
        self._max_batch = max_batch_events
        self._queue: deque[Append] = deque()
        self._wake = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        # Two batches in flight: Python prepares one while PostgreSQL commits the other
        # (they still commit one after the other, in the append lock's order).
        self._inflight = asyncio.Semaphore(max_inflight_batches)
        self._commits: set[asyncio.Task[None]] = set()
        self._closed = False
        self.observer: CommitObserver | None = None
        """Told of each committed batch (telemetry)."""

    def submit(self, item: Append) -> None:
        self._queue.append(item)
        self._wake.set()
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_loop(), name="durable-group-commit")

    async def close(self) -> None:
        """Commit what is queued, then stop."""
        self._closed = True
        self._wake.set()
        if self._flusher is not None:
            with contextlib.suppress(Exception):  # each caller got its own outcome
                await self._flusher
        if self._commits:
            await asyncio.gather(*self._commits, return_exceptions=True)

    async def _flush_loop(self) -> None:
        while self._queue or not self._closed:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            # Take the batch only once a commit slot is free: it gathers meanwhile.
            await self._inflight.acquire()
            batch = self._take_batch()
            if not batch:
                self._inflight.release()
                continue
            task = asyncio.create_task(self._commit_then_release(batch))
            self._commits.add(task)
            task.add_done_callback(self._commits.discard)

    async def _commit_then_release(self, batch: list[Append]) -> None:
        try:
            await self._commit(batch)
        finally:
            self._inflight.release()

    def _take_batch(self) -> list[Append]:
        batch: list[Append] = []
        streams: set[str] = set()
        deferred: list[Append] = []
        size = 0
        while self._queue and size < self._max_batch:
            item = self._queue.popleft()
            if item.future.done():  # its caller was cancelled before we got to it
                continue
            if item.stream_id in streams:
                deferred.append(item)  # one append per stream per batch: it waits a turn
                continue
            streams.add(item.stream_id)
            batch.append(item)
            size += len(item.events)
        self._queue.extendleft(reversed(deferred))
        return batch

    async def _commit(self, batch: list[Append]) -> None:
        if not batch:
            return
        try:
            async with self._pool.acquire() as conn:
                began = time.perf_counter()
                outcomes = await write_batch(conn, batch)
                took = time.perf_counter() - began
        except CONNECTION_ERRORS as exc:
            error = StoreUnavailable(
                f"PostgreSQL unavailable, the append may or may not have committed: {exc}"
            )
            for item in batch:
                _settle(item.future, error)
            return
        except asyncpg.PostgresError as exc:
            if len(batch) > 1:
                # Something in one append broke the batch: retry each alone so the one
                # at fault fails and the others commit.
                for item in batch:
                    await self._commit([item])
                return
            _settle(batch[0].future, StoreUnavailable(f"append failed: {exc}"))
            return
        for item, outcome in zip(batch, outcomes, strict=True):
            _settle(item.future, outcome)
        if self.observer is not None:  # the appends that committed (not the rejected)
            written = [(i, o) for i, o in zip(batch, outcomes, strict=True) if type(o) is list]
            if written:
                self.observer.committed(
                    len(written),
                    sum(len(o) for _, o in written),
                    took,
                    began + took - min(i.submitted for i, _ in written),
                )


async def write_batch(
    conn: asyncpg.Connection, batch: list[Append]
) -> list[list[Recorded] | BaseException]:
    params = _batch_parameters(batch)
    sql = _APPEND_IN_TRANSACTION_SQL if conn.is_in_transaction() else _APPEND_BATCH_SQL
    rows = await conn.fetch(sql, APPEND_LOCK, *params)
    placed: dict[str, list[tuple[int, datetime]]] = {}
    for r in rows:
        placed.setdefault(r[0], []).append((r[2], r[3]))
    outcomes: list[list[Recorded] | BaseException] = []
    for a in batch:
        spots = placed.get(a.stream_id)
        if spots is None:
            outcomes.append(await _rejection(conn, a))
            continue
        outcomes.append(
            [
                Recorded(
                    stream_id=a.stream_id,
                    seq=seq,
                    position=position,
                    recorded_at=at,
                    event=event,
                )
                for seq, event, (position, at) in zip(
                    range(a.expected + 1, a.expected + 1 + len(a.events)),
                    a.events,
                    sorted(spots),
                    strict=True,
                )
            ]
        )
    return outcomes


async def _rejection(conn: asyncpg.Connection, a: Append) -> BaseException:
    """Why an append of the batch was not written (asked after the commit)."""
    key = a.created.idempotency_key if a.created is not None else None
    if key is not None:
        existing = await conn.fetchval(
            "SELECT run_id FROM durable.runs WHERE idempotency_key = $1", key
        )
        if existing is not None and a.created is not None and existing != a.created.run_id:
            return DuplicateRun(key, existing)
    if a.created is None and a.stream_id.startswith("run:"):
        archived = await conn.fetchrow(
            "SELECT a.uri, a.archived_at FROM durable.runs r JOIN durable.archives a "
            "USING (run_id) WHERE r.run_id = $1 AND r.archived",
            a.stream_id[4:],
        )
        if archived is not None:
            return RunArchived(a.stream_id[4:], archived["uri"], archived["archived_at"])
    return ConcurrencyConflict(a.stream_id, a.expected, await current_seq(conn, a.stream_id))


def _settle(
    future: asyncio.Future[list[Recorded]], outcome: list[Recorded] | BaseException
) -> None:
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


def _batch_parameters(batch: list[Append]) -> list[list[Any]]:
    """The arrays of the batch statement's parameters $2..$27, in order."""
    new_runs: list[list[Any]] = [[] for _ in range(11)]
    sources: list[str | None] = []
    run_appends: list[list[Any]] = [[] for _ in range(6)]
    others: list[list[Any]] = [[], [], []]
    events: list[list[Any]] = [[], [], [], [], []]
    for a in batch:
        last_seq = a.expected + len(a.events)
        c = a.created
        row: tuple[Any, ...]
        if c is not None:
            # the whole append folds into the new row
            d = delta_of(a.events[1:], last_seq)
            row = (
                c.run_id,
                c.workflow,
                c.version,
                d.status or "pending",
                c.trigger.kind,
                c.idempotency_key,
                msgspec.json.encode(c.params),
                c.trigger.logical_time,
                d.started,
                d.finish == 1,
                last_seq,
            )
            _add_row(new_runs, row)
            sources.append(c.trigger.source)
        elif a.stream_id.startswith("run:"):
            d = delta_of(a.events, last_seq)
            row = (a.stream_id[4:], a.expected, d.status, last_seq, d.started, d.finish)
            _add_row(run_appends, row)
        else:
            _add_row(others, (a.stream_id, a.expected, last_seq))
        for n, (tag, version, data) in enumerate(a.encoded, start=a.expected + 1):
            _add_row(events, (a.stream_id, n, tag, version, data))
    return [*new_runs, *run_appends, *others, *events, sources]


def _add_row(columns: list[list[Any]], row: tuple[Any, ...]) -> None:
    for column, value in zip(columns, row, strict=True):
        column.append(value)


async def current_seq(conn: asyncpg.Connection, stream_id: str) -> int:
    """Where a stream is: a run's fence is its runs row, any other stream's its streams row."""
    if stream_id.startswith("run:"):
        value = await conn.fetchval(
            "SELECT last_seq FROM durable.runs WHERE run_id = $1", stream_id[4:]
        )
    else:
        value = await conn.fetchval(
            "SELECT last_seq FROM durable.streams WHERE stream_id = $1", stream_id
        )
    return int(value or 0)


def run_record(row: RunRow) -> tuple[Any, ...]:
    # COPY goes through the binary jsonb codec too: params as JSON bytes
    return tuple(
        msgspec.json.encode(row.params) if name == "params" else getattr(row, name)
        for name in RUN_COLUMN_NAMES
    )


def run_row(r: asyncpg.Record) -> RunRow:
    return RunRow(
        run_id=r["run_id"],
        workflow=r["workflow"],
        version=r["version"],
        status=r["status"],
        trigger_kind=r["trigger_kind"],
        trigger_source=r["trigger_source"],
        idempotency_key=r["idempotency_key"],
        params=msgspec.json.decode(r["params"]),
        logical_time=r["logical_time"],
        created_at=r["created_at"],
        started_at=r["started_at"],
        finished_at=r["finished_at"],
        updated_at=r["updated_at"],
        last_seq=r["last_seq"],
    )

"""The PostgreSQL event store (asyncpg), with group commit.

Appends from many concurrent callers are batched into one transaction — one fsync for
the batch — and each caller's ``await`` returns only after its batch committed. The
batch is clocked by the database: while one batch commits, the next one gathers, so an
idle store commits a lone append at once and a busy one commits large batches. One
stream's conflict rejects that append alone; the rest of the batch commits.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from durable.core.errors import (
    ConcurrencyConflict,
    DuplicateRun,
    MalformedEvent,
    StoreUnavailable,
    StreamNotFound,
)
from durable.core.events import REGISTRY, Event, EventRegistry, Recorded, RunCreated, run_stream
from durable.core.fold import fold
from durable.core.runs_view import RunRow, delta_of, row_from_state
from durable.store.base import Progress, RunFilter, check_stream_id
from durable.store.migrate import apply_migrations

__all__ = ["CONTROL_CHANNEL", "NOTIFY_CHANNEL", "RUNS_CHANNEL", "PostgresEventStore", "connect"]

NOTIFY_CHANNEL = "durable_events"
RUNS_CHANNEL = "durable_runs"  # a run was created: executors look for work
CONTROL_CHANNEL = "durable_control"  # an operator changed a run (payload: run id)
# pg_advisory_xact_lock key held from assigning positions to commit ("durable append")
_APPEND_LOCK = 0x6475_7261_626C_6101

_CONNECTION_ERRORS = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
)

_LOCK_SQL = "SELECT pg_advisory_xact_lock($1)"

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
    WHERE r.run_id = u.run_id AND r.last_seq = u.expected
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

_RUN_COLUMNS = (
    "run_id, workflow, version, status, trigger_kind, idempotency_key, params, logical_time, "
    "created_at, started_at, finished_at, updated_at, last_seq, trigger_source"
)
_RUN_COLUMN_NAMES = [c.strip() for c in _RUN_COLUMNS.split(",")]
_EVENT_COLUMNS = "stream_id, seq, position, recorded_at, type, version, data"


async def _init_connection(conn: asyncpg.Connection) -> None:
    # jsonb as raw JSON bytes both ways: msgspec encodes and decodes, not the driver.
    await conn.set_type_codec(
        "jsonb",
        schema="pg_catalog",
        encoder=lambda data: b"\x01" + data,
        decoder=lambda data: data[1:],
        format="binary",
    )


async def connect(
    dsn: str,
    *,
    migrate: bool = True,
    min_size: int = 2,
    max_size: int = 10,
    registry: EventRegistry = REGISTRY,
    connect_timeout: float = 10.0,
) -> PostgresEventStore:
    """Open a pool on ``dsn``, apply migrations, and return the store."""
    try:
        pool = await asyncpg.create_pool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            init=_init_connection,
            timeout=connect_timeout,
            # The append statement's custom plans cost more to make (0.4 ms a batch) than
            # they save; its generic plan is as good, and reads are index lookups.
            server_settings={"plan_cache_mode": "force_generic_plan"},
        )
    except _CONNECTION_ERRORS as exc:
        raise StoreUnavailable(
            f"cannot connect to PostgreSQL: {exc}",
            hint="check DURABLE_DATABASE_URL, or unset it to use the embedded database",
        ) from exc
    if migrate:
        async with pool.acquire() as conn:
            await apply_migrations(conn)
    return PostgresEventStore(pool, dsn=dsn, registry=registry)


class _Append:
    __slots__ = ("created", "encoded", "events", "expected", "future", "stream_id")

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
        first = events[0]
        self.created = first if isinstance(first, RunCreated) else None


class PostgresEventStore:
    """The event store on PostgreSQL. Build it with :func:`connect`."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        dsn: str,
        registry: EventRegistry = REGISTRY,
        max_batch_events: int = 2000,
        max_inflight_batches: int = 2,
        poll_interval: float = 1.0,
    ) -> None:
        self._pool = pool
        self._dsn = dsn
        self._registry = registry
        self._max_batch = max_batch_events
        self._poll_interval = poll_interval
        self._queue: deque[_Append] = deque()
        self._wake = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        # Two batches in flight: Python prepares one while PostgreSQL commits the other
        # (they still commit one after the other, in the append lock's order).
        self._inflight = asyncio.Semaphore(max_inflight_batches)
        self._commits: set[asyncio.Task[None]] = set()
        self._listener: asyncpg.Connection | None = None
        self._listener_lock = asyncio.Lock()
        self._notified = asyncio.Event()
        self._closed = False

    @property
    def pool(self) -> asyncpg.Pool:
        return self._pool

    @property
    def dsn(self) -> str:
        return self._dsn

    # -- appending --------------------------------------------------------------------

    async def append(
        self, stream_id: str, expected_seq: int, events: Sequence[Event]
    ) -> list[Recorded]:
        if self._closed:
            raise StoreUnavailable("the store is closed")
        check_stream_id(stream_id)
        if expected_seq < 0:
            raise ValueError(f"expected_seq must be >= 0, not {expected_seq}")
        if not events:
            raise ValueError("append needs at least one event")
        encoded = [self._encode(stream_id, e) for e in events]
        for i, e in enumerate(events):
            if isinstance(e, RunCreated) and (
                i != 0 or expected_seq != 0 or stream_id != run_stream(e.run_id)
            ):
                raise MalformedEvent(
                    f"stream {stream_id!r}",
                    f"run_created for run {e.run_id!r} must be the first event of stream "
                    f"{run_stream(e.run_id)!r} (expected_seq 0)",
                    hint="create each run in its own new stream",
                )
        future: asyncio.Future[list[Recorded]] = asyncio.get_running_loop().create_future()
        self._queue.append(_Append(stream_id, expected_seq, events, encoded, future))
        self._wake.set()
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_loop(), name="durable-group-commit")
        return await future

    async def append_on(
        self, conn: asyncpg.Connection, stream_id: str, expected_seq: int, events: Sequence[Event]
    ) -> list[Recorded]:
        """Append inside the caller's transaction on ``conn`` (not group-committed).

        The events commit with whatever else the transaction wrote, or not at all: a
        SQL task's rows and its completion event are one atomic fact.
        """
        check_stream_id(stream_id)
        encoded = [self._encode(stream_id, e) for e in events]
        loop = asyncio.get_running_loop()
        item = _Append(stream_id, expected_seq, events, encoded, loop.create_future())
        outcome = (await self._write(conn, [item]))[0]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    async def append_many_on(
        self, conn: asyncpg.Connection, appends: Sequence[tuple[str, int, Sequence[Event]]]
    ) -> list[list[Recorded] | BaseException]:
        """Several appends in one statement inside the caller's transaction; each outcome
        is its records or its error (a duplicate run, a conflict) — one does not fail the
        others. The caller commits them together with whatever else it wrote."""
        loop = asyncio.get_running_loop()
        items = [
            _Append(
                stream_id,
                expected,
                events,
                [self._encode(stream_id, e) for e in events],
                loop.create_future(),
            )
            for stream_id, expected, events in appends
        ]
        for item in items:
            check_stream_id(item.stream_id)
        if len({i.stream_id for i in items}) != len(items):
            raise ValueError("append_many_on takes one append per stream")
        return await self._write(conn, items) if items else []

    async def notify(self, channel: str, payload: str) -> None:
        """Send a notification (committed at once: it is its own transaction)."""
        async with self._pool.acquire() as conn:
            await conn.execute("SELECT pg_notify($1, $2)", channel, payload)

    def _encode(self, stream_id: str, event: Event) -> tuple[str, int, bytes]:
        tag, version, data = self._registry.encode(event)
        if b"\\u0000" in data:
            # PostgreSQL's jsonb cannot hold NUL; refuse it here rather than fail a batch.
            raise MalformedEvent(
                f"stream {stream_id!r} event {tag}",
                "contains a NUL character (\\u0000), which PostgreSQL cannot store",
                hint="strip NUL characters from outputs and params",
            )
        return tag, version, data

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

    async def _commit_then_release(self, batch: list[_Append]) -> None:
        try:
            await self._commit(batch)
        finally:
            self._inflight.release()

    def _take_batch(self) -> list[_Append]:
        batch: list[_Append] = []
        streams: set[str] = set()
        deferred: list[_Append] = []
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

    async def _commit(self, batch: list[_Append]) -> None:
        if not batch:
            return
        try:
            async with self._pool.acquire() as conn:
                outcomes = await self._write(conn, batch)
        except _CONNECTION_ERRORS as exc:
            error = StoreUnavailable(f"PostgreSQL unavailable, nothing appended: {exc}")
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

    async def _write(
        self, conn: asyncpg.Connection, batch: list[_Append]
    ) -> list[list[Recorded] | BaseException]:
        params = _batch_parameters(batch)
        rows = await conn.fetch(_APPEND_BATCH_SQL, _APPEND_LOCK, *params)
        placed: dict[str, list[tuple[int, datetime]]] = {}
        for r in rows:
            placed.setdefault(r[0], []).append((r[2], r[3]))
        outcomes: list[list[Recorded] | BaseException] = []
        for a in batch:
            spots = placed.get(a.stream_id)
            if spots is None:
                outcomes.append(await self._rejection(conn, a))
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

    async def _rejection(self, conn: asyncpg.Connection, a: _Append) -> BaseException:
        """Why an append of the batch was not written (asked after the commit)."""
        key = a.created.idempotency_key if a.created is not None else None
        if key is not None:
            existing = await conn.fetchval(
                "SELECT run_id FROM durable.runs WHERE idempotency_key = $1", key
            )
            if existing is not None and a.created is not None and existing != a.created.run_id:
                return DuplicateRun(key, existing)
        return ConcurrencyConflict(a.stream_id, a.expected, await _last_seq(conn, a.stream_id))

    async def import_stream(self, stream_id: str, records: Sequence[Recorded]) -> list[Recorded]:
        check_stream_id(stream_id)
        if not records or any(r.stream_id != stream_id for r in records):
            raise MalformedEvent(f"import of {stream_id!r}", "needs events of that stream only")
        state = fold(records) if stream_id.startswith("run:") else None  # refuses bad logs
        encoded = [self._encode(stream_id, r.event) for r in records]
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                await conn.execute(_LOCK_SQL, _APPEND_LOCK)
                if await _last_seq(conn, stream_id):
                    raise ConcurrencyConflict(stream_id, 0, await _last_seq(conn, stream_id))
                if state is None:
                    await conn.execute(
                        "INSERT INTO durable.streams (stream_id, last_seq) VALUES ($1, $2)",
                        stream_id,
                        len(records),
                    )
                rows = await conn.fetch(
                    "INSERT INTO durable.events (stream_id, seq, type, version, data, recorded_at) "
                    "SELECT $1, seq, type, version, data, at FROM unnest($2::int[], $3::text[], "
                    "$4::int2[], $5::jsonb[], $6::timestamptz[]) WITH ORDINALITY "
                    "AS e(seq, type, version, data, at, n) ORDER BY n RETURNING seq, position",
                    stream_id,
                    [r.seq for r in records],
                    [t for t, _, _ in encoded],
                    [v for _, v, _ in encoded],
                    [d for _, _, d in encoded],
                    [r.recorded_at for r in records],
                )
                if state is not None:
                    row = row_from_state(state)
                    await conn.copy_records_to_table(
                        "runs",
                        schema_name="durable",
                        columns=_RUN_COLUMN_NAMES,
                        records=[_run_record(row)],
                    )
                await conn.execute(
                    "SELECT pg_notify($1, $2)",
                    NOTIFY_CHANNEL,
                    str(max(r["position"] for r in rows)),
                )
        except asyncpg.UniqueViolationError as exc:
            raise DuplicateRun(
                state.idempotency_key if state and state.idempotency_key else stream_id,
                "another run",
            ) from exc
        except _CONNECTION_ERRORS as exc:
            raise StoreUnavailable(f"PostgreSQL unavailable, nothing imported: {exc}") from exc
        positions = {r["seq"]: r["position"] for r in rows}
        return [msgspec.structs.replace(r, position=positions[r.seq]) for r in records]

    # -- reading ----------------------------------------------------------------------

    async def read_stream(self, stream_id: str, after_seq: int = 0) -> list[Recorded]:
        return self._recorded(
            await self._fetch(
                f"SELECT {_EVENT_COLUMNS} FROM durable.events "
                "WHERE stream_id = $1 AND seq > $2 ORDER BY seq",
                stream_id,
                after_seq,
            )
        )

    async def read_streams(self, stream_ids: Sequence[str]) -> dict[str, list[Recorded]]:
        records = self._recorded(
            await self._fetch(
                f"SELECT {_EVENT_COLUMNS} FROM durable.events "
                "WHERE stream_id = ANY($1::text[]) ORDER BY stream_id, seq",
                list(stream_ids),
            )
        )
        out: dict[str, list[Recorded]] = {s: [] for s in stream_ids}
        for r in records:
            out[r.stream_id].append(r)
        return out

    async def read_all(self, after_position: int = 0, limit: int = 1000) -> list[Recorded]:
        return self._recorded(
            await self._fetch(
                f"SELECT {_EVENT_COLUMNS} FROM durable.events "
                "WHERE position > $1 ORDER BY position LIMIT $2",
                after_position,
                limit,
            )
        )

    def _recorded(self, rows: Sequence[asyncpg.Record]) -> list[Recorded]:
        """Rows of ``_EVENT_COLUMNS`` as recorded events, decoded (and upcast)."""
        decode = self._registry.decode
        return [
            Recorded(
                stream_id=r[0],
                seq=r[1],
                position=r[2],
                recorded_at=r[3],
                event=decode(r[4], r[5], r[6], where=f"{r[0]} seq {r[1]}"),
            )
            for r in rows
        ]

    async def last_position(self) -> int:
        value = await self._fetchval("SELECT COALESCE(max(position), 0) FROM durable.events")
        return int(value)

    async def wait_for_events(self, after_position: int, timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        await self._ensure_listener()
        while True:
            self._notified.clear()
            if await self.last_position() > after_position:
                return True
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            # A lost notification costs at most one poll interval.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._notified.wait(), min(remaining, self._poll_interval))

    async def subscribe(self, after_position: int = 0) -> AsyncIterator[Recorded]:
        position = after_position
        while True:
            batch = await self.read_all(position, 1000)
            for recorded in batch:
                position = recorded.position
                yield recorded
            if not batch:
                await self.wait_for_events(position, self._poll_interval * 10)

    async def _ensure_listener(self) -> None:
        async with self._listener_lock:
            if self._listener is not None and not self._listener.is_closed():
                return
            try:
                self._listener = await asyncpg.connect(self._dsn, timeout=10)
                await self._listener.add_listener(NOTIFY_CHANNEL, self._on_notify)
            except _CONNECTION_ERRORS:
                self._listener = None  # polling still works without it

    def _on_notify(self, *_: Any) -> None:
        self._notified.set()

    # -- the runs read model ----------------------------------------------------------

    async def get_run(self, run_id: str) -> RunRow | None:
        rows = await self._fetch(
            f"SELECT {_RUN_COLUMNS} FROM durable.runs WHERE run_id = $1", run_id
        )
        return _run_row(rows[0]) if rows else None

    async def list_runs(self, filter: RunFilter | None = None) -> list[RunRow]:
        f = filter or RunFilter()
        rows = await self._fetch(
            f"SELECT {_RUN_COLUMNS} FROM durable.runs "
            "WHERE ($1::text IS NULL OR workflow = $1) AND ($2::text IS NULL OR status = $2) "
            "AND ($3::timestamptz IS NULL OR created_at >= $3) "
            "AND ($5::text IS NULL OR trigger_kind = $5) "
            "AND ($6::timestamptz IS NULL OR (created_at, run_id) < ($6, $7::text)) "
            "ORDER BY created_at DESC, run_id DESC LIMIT $4",
            f.workflow,
            f.status,
            f.since,
            f.limit,
            f.trigger_kind,
            f.before[0] if f.before else None,
            f.before[1] if f.before else None,
        )
        return [_run_row(r) for r in rows]

    async def task_logs(
        self,
        run_id: str,
        task: str | None = None,
        attempt: int | None = None,
        limit: int | None = None,
    ) -> list[asyncpg.Record]:
        """Stored log lines of a run's task attempts, in time order."""
        return await self._fetch(
            "SELECT task, generation, attempt, at, stream, message FROM durable.task_logs "
            "WHERE run_id = $1 AND ($2::text IS NULL OR task = $2) "
            "AND ($3::int IS NULL OR attempt = $3) ORDER BY at, task, line LIMIT $4",
            run_id,
            task,
            attempt,
            limit,
        )

    async def rebuild_runs(self, progress: Progress | None = None) -> int:
        async with self._pool.acquire() as conn, conn.transaction():
            # Hold the append lock: no append may interleave with the rebuild.
            await conn.execute(_LOCK_SQL, _APPEND_LOCK)
            streams = [
                r["stream_id"]
                for r in await conn.fetch(
                    "SELECT stream_id FROM durable.events "
                    "WHERE seq = 1 AND stream_id LIKE 'run:%' ORDER BY stream_id"
                )
            ]
            await conn.execute("DELETE FROM durable.runs")
            rows: list[tuple[Any, ...]] = []
            for done, stream_id in enumerate(streams, start=1):
                state = fold(await self._read_stream_on(conn, stream_id))
                if state is not None:
                    rows.append(_run_record(row_from_state(state)))
                if progress is not None:
                    progress(done, len(streams))
            await conn.copy_records_to_table(
                "runs", schema_name="durable", columns=_RUN_COLUMN_NAMES, records=rows
            )
        return len(rows)

    async def _read_stream_on(self, conn: asyncpg.Connection, stream_id: str) -> list[Recorded]:
        return self._recorded(
            await conn.fetch(
                f"SELECT {_EVENT_COLUMNS} FROM durable.events WHERE stream_id = $1 ORDER BY seq",
                stream_id,
            )
        )

    async def require_stream(self, stream_id: str) -> list[Recorded]:
        """The whole stream; :class:`StreamNotFound` when it has no events."""
        records = await self.read_stream(stream_id)
        if not records:
            raise StreamNotFound(stream_id)
        return records

    # -- plumbing ---------------------------------------------------------------------

    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        try:
            async with self._pool.acquire() as conn:
                return list(await conn.fetch(sql, *args))
        except _CONNECTION_ERRORS as exc:
            raise StoreUnavailable(f"PostgreSQL unavailable: {exc}") from exc

    async def _fetchval(self, sql: str, *args: Any) -> Any:
        rows = await self._fetch(sql, *args)
        return rows[0][0] if rows else None

    async def close(self) -> None:
        self._closed = True
        self._wake.set()
        if self._flusher is not None:
            with contextlib.suppress(Exception):
                await self._flusher
        if self._commits:
            await asyncio.gather(*self._commits, return_exceptions=True)
        if self._listener is not None and not self._listener.is_closed():
            await self._listener.close()
        await self._pool.close()


def _settle(
    future: asyncio.Future[list[Recorded]], outcome: list[Recorded] | BaseException
) -> None:
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


def _batch_parameters(batch: list[_Append]) -> list[list[Any]]:
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


async def _last_seq(conn: asyncpg.Connection, stream_id: str) -> int:
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


def _run_record(row: RunRow) -> tuple[Any, ...]:
    # COPY goes through the binary jsonb codec too: params as JSON bytes
    return tuple(
        msgspec.json.encode(row.params) if name == "params" else getattr(row, name)
        for name in _RUN_COLUMN_NAMES
    )


def _run_row(r: asyncpg.Record) -> RunRow:
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

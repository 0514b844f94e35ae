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
from typing import Any

import asyncpg
import msgspec

from durable.errors import (
    ConcurrencyConflict,
    DuplicateRun,
    MalformedEvent,
    StoreUnavailable,
    StreamNotFound,
)
from durable.events import REGISTRY, Event, EventRegistry, Recorded, RunCreated, run_stream
from durable.fold import fold
from durable.runs_view import RunRow, delta_of, row_from_state
from durable.store.base import Progress, RunFilter, check_stream_id
from durable.store.migrate import apply_migrations

__all__ = ["NOTIFY_CHANNEL", "PostgresEventStore", "connect"]

NOTIFY_CHANNEL = "durable_events"
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

_CLAIM_STREAMS_SQL = """
WITH req AS (
    SELECT * FROM unnest($1::text[], $2::int[], $3::int[]) AS r(stream_id, expected, last_seq)
), upd AS (
    UPDATE durable.streams s SET last_seq = req.last_seq FROM req
    WHERE s.stream_id = req.stream_id AND req.expected > 0 AND s.last_seq = req.expected
    RETURNING s.stream_id
), ins AS (
    INSERT INTO durable.streams (stream_id, last_seq)
    SELECT stream_id, last_seq FROM req WHERE expected = 0
    ON CONFLICT DO NOTHING
    RETURNING stream_id
)
SELECT stream_id FROM upd UNION ALL SELECT stream_id FROM ins
"""

_INSERT_EVENTS_SQL = """
INSERT INTO durable.events (stream_id, seq, type, version, data)
SELECT stream_id, seq, type, version, data
FROM unnest($1::text[], $2::int[], $3::text[], $4::int2[], $5::jsonb[])
     WITH ORDINALITY AS e(stream_id, seq, type, version, data, n)
ORDER BY n
RETURNING stream_id, seq, position, recorded_at
"""

_INSERT_RUNS_SQL = """
INSERT INTO durable.runs (run_id, workflow, version, status, trigger_kind, idempotency_key,
                          params, logical_time, created_at, updated_at, last_seq)
SELECT run_id, workflow, version, 'pending', trigger_kind, idempotency_key, params,
       logical_time, now(), now(), 1
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::jsonb[],
            $7::timestamptz[])
     AS r(run_id, workflow, version, trigger_kind, idempotency_key, params, logical_time)
ON CONFLICT DO NOTHING
RETURNING run_id
"""

_UPDATE_RUNS_SQL = """
UPDATE durable.runs r SET
    status = COALESCE(u.status, r.status),
    last_seq = u.last_seq,
    updated_at = now(),
    started_at = CASE WHEN u.started THEN COALESCE(r.started_at, now()) ELSE r.started_at END,
    finished_at = CASE u.finish WHEN 1 THEN now() WHEN -1 THEN NULL ELSE r.finished_at END
FROM unnest($1::text[], $2::text[], $3::int[], $4::bool[], $5::int2[])
     AS u(run_id, status, last_seq, started, finish)
WHERE r.run_id = u.run_id
"""

_RUN_COLUMNS = (
    "run_id, workflow, version, status, trigger_kind, idempotency_key, params, logical_time, "
    "created_at, started_at, finished_at, updated_at, last_seq"
)


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
        self._listener: asyncpg.Connection | None = None
        self._listener_lock = asyncio.Lock()
        self._notified = asyncio.Event()
        self._closed = False

    @property
    def pool(self) -> asyncpg.Pool:
        return self._pool

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
            batch = self._take_batch()
            await self._commit(batch)

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
        outcomes: dict[int, list[Recorded] | BaseException] = {}
        async with conn.transaction():
            await conn.execute(_LOCK_SQL, _APPEND_LOCK)
            creations = [(i, a) for i, a in enumerate(batch) if a.created is not None]
            failed_creations: list[str] = []
            if creations:
                inserted = {
                    r["run_id"]
                    for r in await conn.fetch(_INSERT_RUNS_SQL, *_run_columns(creations))
                }
                for i, a in creations:
                    if a.created is not None and a.created.run_id not in inserted:
                        outcomes[i] = await self._creation_conflict(conn, a.stream_id, a.created)
            live = [(i, a) for i, a in enumerate(batch) if i not in outcomes]
            claimed: set[str] = set()
            if live:
                rows = await conn.fetch(
                    _CLAIM_STREAMS_SQL,
                    [a.stream_id for _, a in live],
                    [a.expected for _, a in live],
                    [a.expected + len(a.events) for _, a in live],
                )
                claimed = {r["stream_id"] for r in rows}
            for i, a in live:
                if a.stream_id not in claimed:
                    actual = await conn.fetchval(
                        "SELECT last_seq FROM durable.streams WHERE stream_id = $1", a.stream_id
                    )
                    outcomes[i] = ConcurrencyConflict(a.stream_id, a.expected, actual or 0)
                    if a.created is not None:
                        failed_creations.append(a.created.run_id)
            if failed_creations:
                await conn.execute(
                    "DELETE FROM durable.runs WHERE run_id = ANY($1::text[])", failed_creations
                )
            winners = [(i, a) for i, a in live if i not in outcomes]
            if not winners:
                return [outcomes[i] for i in range(len(batch))]
            ids: list[str] = []
            seqs: list[int] = []
            types: list[str] = []
            versions: list[int] = []
            datas: list[bytes] = []
            for _, a in winners:
                for n, (tag, version, data) in enumerate(a.encoded, start=a.expected + 1):
                    ids.append(a.stream_id)
                    seqs.append(n)
                    types.append(tag)
                    versions.append(version)
                    datas.append(data)
            rows = await conn.fetch(_INSERT_EVENTS_SQL, ids, seqs, types, versions, datas)
            placed = {(r["stream_id"], r["seq"]): (r["position"], r["recorded_at"]) for r in rows}
            await self._update_runs(conn, winners)
            await conn.execute(
                "SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, str(max(p for p, _ in placed.values()))
            )
        for i, a in winners:
            recorded = []
            for n, event in enumerate(a.events, start=a.expected + 1):
                position, at = placed[(a.stream_id, n)]
                recorded.append(
                    Recorded(
                        stream_id=a.stream_id, seq=n, position=position, recorded_at=at, event=event
                    )
                )
            outcomes[i] = recorded
        return [outcomes[i] for i in range(len(batch))]

    async def _creation_conflict(
        self, conn: asyncpg.Connection, stream_id: str, created: RunCreated
    ) -> BaseException:
        key = created.idempotency_key
        if key is not None:
            existing = await conn.fetchval(
                "SELECT run_id FROM durable.runs WHERE idempotency_key = $1", key
            )
            if existing is not None and existing != created.run_id:
                return DuplicateRun(key, existing)
        actual = await conn.fetchval(
            "SELECT last_seq FROM durable.streams WHERE stream_id = $1", stream_id
        )
        return ConcurrencyConflict(stream_id, 0, actual)

    async def _update_runs(self, conn: asyncpg.Connection, winners: list[tuple[int, _Append]]) -> None:
        run_ids: list[str] = []
        statuses: list[str | None] = []
        last_seqs: list[int] = []
        started: list[bool] = []
        finish: list[int] = []
        for _, a in winners:
            if not a.stream_id.startswith("run:"):
                continue
            events = a.events[1:] if a.created is not None else a.events
            if not events:
                continue
            delta = delta_of(events, a.expected + len(a.events))
            run_ids.append(a.stream_id[4:])
            statuses.append(delta.status)
            last_seqs.append(delta.last_seq)
            started.append(delta.started)
            finish.append(delta.finish)
        if run_ids:
            await conn.execute(_UPDATE_RUNS_SQL, run_ids, statuses, last_seqs, started, finish)

    # -- reading ----------------------------------------------------------------------

    async def read_stream(self, stream_id: str, after_seq: int = 0) -> list[Recorded]:
        rows = await self._fetch(
            "SELECT seq, position, recorded_at, type, version, data FROM durable.events "
            "WHERE stream_id = $1 AND seq > $2 ORDER BY seq",
            stream_id,
            after_seq,
        )
        decode = self._registry.decode
        return [
            Recorded(
                stream_id=stream_id,
                seq=r[0],
                position=r[1],
                recorded_at=r[2],
                event=decode(r[3], r[4], r[5], where=f"{stream_id} seq {r[0]}"),
            )
            for r in rows
        ]

    async def read_all(self, after_position: int = 0, limit: int = 1000) -> list[Recorded]:
        rows = await self._fetch(
            "SELECT stream_id, seq, position, recorded_at, type, version, data "
            "FROM durable.events WHERE position > $1 ORDER BY position LIMIT $2",
            after_position,
            limit,
        )
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
                await asyncio.wait_for(
                    self._notified.wait(), min(remaining, self._poll_interval)
                )

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
            "ORDER BY created_at DESC, run_id DESC LIMIT $4",
            f.workflow,
            f.status,
            f.since,
            f.limit,
        )
        return [_run_row(r) for r in rows]

    async def rebuild_runs(self, progress: Progress | None = None) -> int:
        async with self._pool.acquire() as conn, conn.transaction():
            # Hold the append lock: no append may interleave with the rebuild.
            await conn.execute(_LOCK_SQL, _APPEND_LOCK)
            streams = [
                r["stream_id"]
                for r in await conn.fetch(
                    "SELECT stream_id FROM durable.streams WHERE stream_id LIKE 'run:%' "
                    "ORDER BY stream_id"
                )
            ]
            await conn.execute("DELETE FROM durable.runs")
            rows: list[tuple[Any, ...]] = []
            for done, stream_id in enumerate(streams, start=1):
                records = await self._read_stream_on(conn, stream_id)
                state = fold(records)
                if state is not None:
                    row = row_from_state(state)
                    rows.append(tuple(getattr(row, c.strip()) for c in _RUN_COLUMNS.split(",")))
                if progress is not None:
                    progress(done, len(streams))
            await conn.copy_records_to_table(
                "runs",
                schema_name="durable",
                columns=[c.strip() for c in _RUN_COLUMNS.split(",")],
                records=[_encode_params(r) for r in rows],
            )
        return len(rows)

    async def _read_stream_on(self, conn: asyncpg.Connection, stream_id: str) -> list[Recorded]:
        rows = await conn.fetch(
            "SELECT seq, position, recorded_at, type, version, data FROM durable.events "
            "WHERE stream_id = $1 ORDER BY seq",
            stream_id,
        )
        return [
            Recorded(
                stream_id=stream_id,
                seq=r[0],
                position=r[1],
                recorded_at=r[2],
                event=self._registry.decode(r[3], r[4], r[5], where=f"{stream_id} seq {r[0]}"),
            )
            for r in rows
        ]

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
        if self._listener is not None and not self._listener.is_closed():
            await self._listener.close()
        await self._pool.close()


def _settle(future: asyncio.Future[list[Recorded]], outcome: list[Recorded] | BaseException) -> None:
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


def _run_columns(creations: list[tuple[int, _Append]]) -> list[list[Any]]:
    cols: list[list[Any]] = [[], [], [], [], [], [], []]
    for _, a in creations:
        c = a.created
        if c is None:
            continue
        values = (
            c.run_id,
            c.workflow,
            c.version,
            c.trigger.kind,
            c.idempotency_key,
            msgspec.json.encode(c.params),
            c.trigger.logical_time,
        )
        for col, value in zip(cols, values, strict=True):
            col.append(value)
    return cols


def _encode_params(row: tuple[Any, ...]) -> tuple[Any, ...]:
    # params is the 7th column; COPY goes through the binary jsonb codec too
    return (*row[:6], msgspec.json.encode(row[6]), *row[7:])


def _run_row(r: asyncpg.Record) -> RunRow:
    return RunRow(
        run_id=r["run_id"],
        workflow=r["workflow"],
        version=r["version"],
        status=r["status"],
        trigger_kind=r["trigger_kind"],
        idempotency_key=r["idempotency_key"],
        params=msgspec.json.decode(r["params"]),
        logical_time=r["logical_time"],
        created_at=r["created_at"],
        started_at=r["started_at"],
        finished_at=r["finished_at"],
        updated_at=r["updated_at"],
        last_seq=r["last_seq"],
    )


"""The in-memory store: the event log and runs view over Python lists.

For pure executor tests; it passes the same contract suites as PostgreSQL. Not durable,
and not for production: nothing survives the process.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec

from durable.core.errors import (
    ConcurrencyConflict,
    DuplicateRun,
    MalformedEvent,
    RunArchived,
    StoreError,
    StreamNotFound,
)
from durable.core.events import (
    NOTIFICATION_EVENT_TYPES,
    REGISTRY,
    Event,
    EventRegistry,
    Recorded,
    RunCreated,
)
from durable.core.fold import fold
from durable.core.runs_view import RunRow, apply_delta, delta_of, row_from_created, row_from_state
from durable.core.state import TERMINAL_RUN
from durable.store.base import CommitObserver, Progress, RunFilter, TransactionBody
from durable.store.codec import check_append, check_stream_id, encode_event
from durable.store.memory.archives import MemoryArchives
from durable.store.memory.tables import (
    MemoryLeadership,
    MemoryLeases,
    MemoryTaskLogs,
    MemoryTokens,
    MemoryTracking,
    MemoryVersions,
    MemoryWakeUps,
)
from durable.store.rows import MetricsCounts

__all__ = ["MemoryEventStore"]

_NOTIFICATIONS = NOTIFICATION_EVENT_TYPES


def _utcnow() -> datetime:
    return datetime.now(UTC)


class MemoryEventStore:
    """The store protocol over Python lists; ``clock`` gives commit times."""

    def __init__(
        self, *, clock: Callable[[], datetime] = _utcnow, registry: EventRegistry = REGISTRY
    ) -> None:
        self._clock = clock
        self._registry = registry
        self._streams: dict[str, list[Recorded]] = {}
        self._log: list[Recorded] = []  # in position order
        self._position = 0  # the last position given: never reused (archives delete)
        self.archived: set[str] = set()  # runs whose stream is closed (archived)
        self._runs: dict[str, RunRow] = {}
        self._keys: dict[str, str] = {}
        self._changed = asyncio.Condition()
        self.versions = MemoryVersions(self)
        self.logs = MemoryTaskLogs()
        self.archives = MemoryArchives(self, clock)
        self.tokens = MemoryTokens(clock)
        self.tracking = MemoryTracking(self, clock)
        self.wakeups = MemoryWakeUps()
        self.leadership = MemoryLeadership()
        self.lease_table: dict[str, tuple[str, datetime, bool]] = {}  # run: owner, expiry, slot
        self._observer: CommitObserver | None = None

    def now(self) -> datetime:
        return self._clock()

    @property
    def registry(self) -> EventRegistry:
        return self._registry

    async def append(
        self, stream_id: str, expected_seq: int, events: Sequence[Event]
    ) -> list[Recorded]:
        began = time.perf_counter()
        check_append(stream_id, expected_seq, events)
        for e in events:
            encode_event(self._registry, stream_id, e)  # the same validation as PostgreSQL
        self.check_free(stream_id, expected_seq, events)
        recorded = self.write(stream_id, expected_seq, events)
        if self._observer is not None:  # each append is its own "batch" here
            took = time.perf_counter() - began
            self._observer.committed(1, len(recorded), took, took)
        async with self._changed:
            self._changed.notify_all()
        if isinstance(events[0], RunCreated):
            self.wakeups.runs_created()
        return recorded

    def check_free(self, stream_id: str, expected_seq: int, events: Sequence[Event]) -> None:
        """Raise what an append would: a stale expected seq, a taken idempotency key."""
        stream = self._streams.get(stream_id, [])
        created = events[0] if isinstance(events[0], RunCreated) else None
        archived = self._runs.get(stream_id[4:]) if stream_id[4:] in self.archived else None
        if archived is not None and stream_id.startswith("run:"):
            if created is not None:  # the run exists: its stream is not new
                raise ConcurrencyConflict(stream_id, expected_seq, archived.last_seq)
            tomb = self.archives.tombstones[archived.run_id]
            raise RunArchived(tomb.run_id, tomb.uri, tomb.archived_at)
        if len(stream) != expected_seq:
            raise ConcurrencyConflict(stream_id, expected_seq, len(stream))
        if created is not None and created.idempotency_key is not None:
            existing = self._keys.get(created.idempotency_key)
            if existing is not None:
                raise DuplicateRun(created.idempotency_key, existing)

    def write(self, stream_id: str, expected_seq: int, events: Sequence[Event]) -> list[Recorded]:
        """Append, already checked (``check_free``); no wake-up."""
        stream = self._streams.get(stream_id, [])
        created = events[0] if isinstance(events[0], RunCreated) else None
        at = self._clock()
        recorded = [
            Recorded(
                stream_id=stream_id,
                seq=expected_seq + n,
                position=self._position + n,
                recorded_at=at,
                event=e,
            )
            for n, e in enumerate(events, start=1)
        ]
        self._streams[stream_id] = [*stream, *recorded]
        self._log.extend(recorded)
        self._position += len(recorded)
        if stream_id.startswith("run:"):
            rest = events
            if created is not None:
                self._runs[created.run_id] = row_from_created(created, at)
                if created.idempotency_key is not None:
                    self._keys[created.idempotency_key] = created.run_id
                rest = events[1:]
            row = self._runs.get(stream_id[4:])
            if row is not None and rest:
                delta = delta_of(rest, expected_seq + len(events))
                self._runs[row.run_id] = apply_delta(row, delta, at)
        return recorded

    async def transact(
        self, stream_id: str, expected_seq: int, body: TransactionBody
    ) -> list[Recorded]:
        raise StoreError(
            "a transactional SQL task needs PostgreSQL",
            hint="run it on the PostgreSQL store, or drop transactional: true",
            retryable=False,
        )

    def sql_pool(self) -> Any:
        raise StoreError(
            "SQL tasks on durable's own database need PostgreSQL",
            hint="give the task another connection, or run on the PostgreSQL store",
            retryable=False,
        )

    def leases(self, owner: str, *, ttl: float = 30.0) -> MemoryLeases:
        return MemoryLeases(self, owner, ttl)

    async def notify_changed(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def import_stream(self, stream_id: str, records: Sequence[Recorded]) -> list[Recorded]:
        check_stream_id(stream_id)
        if not records or any(r.stream_id != stream_id for r in records):
            raise MalformedEvent(f"import of {stream_id!r}", "needs events of that stream only")
        state = fold(records) if stream_id.startswith("run:") else None
        if stream_id in self._streams:
            raise ConcurrencyConflict(stream_id, 0, len(self._streams[stream_id]))
        row = self._runs.get(stream_id[4:]) if stream_id.startswith("run:") else None
        if row is not None:  # archived: its row stays, at its last seq
            raise ConcurrencyConflict(stream_id, 0, row.last_seq)
        if state is not None and state.idempotency_key in self._keys:
            raise DuplicateRun(state.idempotency_key, self._keys[state.idempotency_key])
        placed = [
            msgspec.structs.replace(r, position=self._position + n)
            for n, r in enumerate(records, start=1)
        ]
        self._streams[stream_id] = placed
        self._log.extend(placed)
        self._position += len(placed)
        if state is not None:
            self._runs[state.run_id] = row_from_state(state)
            if state.idempotency_key is not None:
                self._keys[state.idempotency_key] = state.run_id
        async with self._changed:
            self._changed.notify_all()
        return placed

    def drop_stream(self, stream_id: str) -> None:
        """Delete a stream's events (archived); its run's row stays."""
        gone = {id(r) for r in self._streams.pop(stream_id, [])}
        self._log = [r for r in self._log if id(r) not in gone]

    def put_back(self, records: Sequence[Recorded]) -> None:
        """Restore a stream's events at their own positions (archive restored)."""
        self._streams[records[0].stream_id] = list(records)
        for r in records:
            bisect.insort(self._log, r, key=lambda x: x.position)

    async def read_stream(self, stream_id: str, after_seq: int = 0) -> list[Recorded]:
        return list(self._streams.get(stream_id, [])[after_seq:])

    async def read_streams(self, stream_ids: Sequence[str]) -> dict[str, list[Recorded]]:
        return {s: list(self._streams.get(s, [])) for s in stream_ids}

    async def read_all(self, after_position: int = 0, limit: int = 1000) -> list[Recorded]:
        start = bisect.bisect_right([r.position for r in self._log], after_position)
        return self._log[start : start + limit]

    async def notification_events(
        self, after_position: int = 0, limit: int = 1000
    ) -> list[Recorded]:
        start = bisect.bisect_right([r.position for r in self._log], after_position)
        found = [r for r in self._log[start:] if isinstance(r.event, _NOTIFICATIONS)]
        return found[:limit]

    async def last_position(self) -> int:
        return self._log[-1].position if self._log else 0

    async def wait_for_events(self, after_position: int, timeout: float) -> bool:
        async with self._changed:
            try:
                await asyncio.wait_for(
                    self._changed.wait_for(
                        lambda: bool(self._log) and self._log[-1].position > after_position
                    ),
                    timeout,
                )
            except TimeoutError:
                return False
        return True

    async def subscribe(self, after_position: int = 0) -> AsyncIterator[Recorded]:
        position = after_position
        while True:
            for recorded in await self.read_all(position):
                position = recorded.position
                yield recorded
            await self.wait_for_events(position, 10.0)

    async def get_run(self, run_id: str) -> RunRow | None:
        return self._runs.get(run_id)

    async def list_runs(self, filter: RunFilter | None = None) -> list[RunRow]:
        f = filter or RunFilter()
        rows = [
            r
            for r in self._runs.values()
            if (f.workflow is None or r.workflow == f.workflow)
            and (f.status is None or r.status == f.status)
            and (f.since is None or r.created_at >= f.since)
            and (f.until is None or r.created_at < f.until)
            and (f.trigger_kind is None or r.trigger_kind == f.trigger_kind)
            and (f.before is None or (r.created_at, r.run_id) < f.before)
        ]
        rows.sort(key=lambda r: (r.created_at, r.run_id), reverse=True)
        return rows[: f.limit]

    async def rebuild_runs(self, progress: Progress | None = None) -> int:
        streams = sorted(s for s in self._streams if s.startswith("run:"))
        # an archived run's events are in its archive: its row is kept as it is
        runs: dict[str, RunRow] = {i: self._runs[i] for i in self.archived if i in self._runs}
        for done, stream_id in enumerate(streams, start=1):
            state = fold(self._streams[stream_id])
            if state is not None:
                runs[state.run_id] = row_from_state(state)
            if progress is not None:
                progress(done, len(streams))
        self._runs = runs
        return len(runs) - len(self.archived & set(runs))

    async def require_stream(self, stream_id: str) -> list[Recorded]:
        records = await self.read_stream(stream_id)
        if not records:
            raise StreamNotFound(stream_id)
        return records

    async def stream_ids(self, prefix: str, limit: int = 100) -> list[str]:
        firsts = [s[0] for sid, s in self._streams.items() if sid.startswith(prefix) and s]
        firsts.sort(key=lambda r: r.position, reverse=True)
        return [r.stream_id for r in firsts[:limit]]

    async def runs_by_keys(self, keys: Sequence[str]) -> dict[str, RunRow]:
        return {k: self._runs[self._keys[k]] for k in keys if k in self._keys}

    async def latest_interval(self, workflow: str) -> datetime | None:
        times = [r.logical_time for r in self._scheduled(workflow) if r.logical_time is not None]
        return max(times, default=None)

    async def interval_statuses(
        self, workflow: str, start: datetime, end: datetime
    ) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self._scheduled(workflow):
            if r.logical_time is not None and start <= r.logical_time < end:
                counts[r.status] = counts.get(r.status, 0) + 1
        return counts

    def _scheduled(self, workflow: str) -> list[RunRow]:
        return [
            r
            for r in self._runs.values()
            if r.workflow == workflow and r.trigger_kind in ("schedule", "backfill")
        ]

    async def unfinished_backfill_runs(self, backfill_id: str) -> list[str]:
        return sorted(
            r.run_id
            for r in self._runs.values()
            if r.trigger_kind == "backfill"
            and r.trigger_source == backfill_id
            and r.status not in TERMINAL_RUN
        )

    def runs(self) -> list[RunRow]:
        """Every run row (for the tables beside the log)."""
        return list(self._runs.values())

    async def metrics_counts(self) -> MetricsCounts:
        counts: dict[tuple[str, str], int] = {}
        for r in self._runs.values():
            counts[(r.workflow, r.status)] = counts.get((r.workflow, r.status), 0) + 1
        now = self._clock()
        return MetricsCounts(
            runs=[(w, s, n) for (w, s), n in sorted(counts.items())],
            position=self._log[-1].position if self._log else 0,
            dead_letters=len(self.tracking.letters),
            live_leases=sum(1 for _, expiry, _ in self.lease_table.values() if expiry > now),
        )

    def observe_commits(self, observer: CommitObserver | None) -> None:
        self._observer = observer

    async def close(self) -> None:
        return None

"""An in-memory event store for pure executor tests; it passes the same contract suite.

Not durable, and not for production: nothing survives the process.
"""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime

import msgspec

from durable.core.errors import ConcurrencyConflict, DuplicateRun, MalformedEvent, StreamNotFound
from durable.core.events import REGISTRY, Event, EventRegistry, Recorded, RunCreated, run_stream
from durable.core.fold import fold
from durable.core.runs_view import RunRow, apply_delta, delta_of, row_from_created, row_from_state
from durable.store.base import Progress, RunFilter, check_stream_id

__all__ = ["MemoryEventStore"]


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
        self._log: list[Recorded] = []
        self._runs: dict[str, RunRow] = {}
        self._keys: dict[str, str] = {}
        self._changed = asyncio.Condition()

    async def append(
        self, stream_id: str, expected_seq: int, events: Sequence[Event]
    ) -> list[Recorded]:
        check_stream_id(stream_id)
        if expected_seq < 0:
            raise ValueError(f"expected_seq must be >= 0, not {expected_seq}")
        if not events:
            raise ValueError("append needs at least one event")
        for i, e in enumerate(events):
            tag, _version, data = self._registry.encode(e)  # same validation as the real store
            if b"\\u0000" in data:
                raise MalformedEvent(f"stream {stream_id!r} event {tag}", "contains NUL")
            if isinstance(e, RunCreated) and (
                i != 0 or expected_seq != 0 or stream_id != run_stream(e.run_id)
            ):
                raise MalformedEvent(
                    f"stream {stream_id!r}", "run_created must start a new run stream"
                )
        stream = self._streams.get(stream_id, [])
        if len(stream) != expected_seq:
            raise ConcurrencyConflict(stream_id, expected_seq, len(stream))
        created = events[0] if isinstance(events[0], RunCreated) else None
        if created is not None and created.idempotency_key is not None:
            existing = self._keys.get(created.idempotency_key)
            if existing is not None:
                raise DuplicateRun(created.idempotency_key, existing)
        at = self._clock()
        recorded = [
            Recorded(
                stream_id=stream_id,
                seq=expected_seq + n,
                position=len(self._log) + n,
                recorded_at=at,
                event=e,
            )
            for n, e in enumerate(events, start=1)
        ]
        self._streams[stream_id] = [*stream, *recorded]
        self._log.extend(recorded)
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
        async with self._changed:
            self._changed.notify_all()
        return recorded

    async def import_stream(self, stream_id: str, records: Sequence[Recorded]) -> list[Recorded]:
        check_stream_id(stream_id)
        if not records or any(r.stream_id != stream_id for r in records):
            raise MalformedEvent(f"import of {stream_id!r}", "needs events of that stream only")
        state = fold(records) if stream_id.startswith("run:") else None
        if stream_id in self._streams:
            raise ConcurrencyConflict(stream_id, 0, len(self._streams[stream_id]))
        if state is not None and state.idempotency_key in self._keys:
            raise DuplicateRun(state.idempotency_key, self._keys[state.idempotency_key])
        placed = [
            msgspec.structs.replace(r, position=len(self._log) + n)
            for n, r in enumerate(records, start=1)
        ]
        self._streams[stream_id] = placed
        self._log.extend(placed)
        if state is not None:
            self._runs[state.run_id] = row_from_state(state)
            if state.idempotency_key is not None:
                self._keys[state.idempotency_key] = state.run_id
        async with self._changed:
            self._changed.notify_all()
        return placed

    async def read_stream(self, stream_id: str, after_seq: int = 0) -> list[Recorded]:
        return list(self._streams.get(stream_id, [])[after_seq:])

    async def read_streams(self, stream_ids: Sequence[str]) -> dict[str, list[Recorded]]:
        return {s: list(self._streams.get(s, [])) for s in stream_ids}

    async def read_all(self, after_position: int = 0, limit: int = 1000) -> list[Recorded]:
        start = bisect.bisect_right([r.position for r in self._log], after_position)
        return self._log[start : start + limit]

    async def last_position(self) -> int:
        return len(self._log)

    async def wait_for_events(self, after_position: int, timeout: float) -> bool:
        async with self._changed:
            try:
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: len(self._log) > after_position), timeout
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
            and (f.trigger_kind is None or r.trigger_kind == f.trigger_kind)
            and (f.before is None or (r.created_at, r.run_id) < f.before)
        ]
        rows.sort(key=lambda r: (r.created_at, r.run_id), reverse=True)
        return rows[: f.limit]

    async def rebuild_runs(self, progress: Progress | None = None) -> int:
        streams = sorted(s for s in self._streams if s.startswith("run:"))
        runs: dict[str, RunRow] = {}
        for done, stream_id in enumerate(streams, start=1):
            state = fold(self._streams[stream_id])
            if state is not None:
                runs[state.run_id] = row_from_state(state)
            if progress is not None:
                progress(done, len(streams))
        self._runs = runs
        return len(runs)

    async def require_stream(self, stream_id: str) -> list[Recorded]:
        records = await self.read_stream(stream_id)
        if not records:
            raise StreamNotFound(stream_id)
        return records

    async def close(self) -> None:
        return None

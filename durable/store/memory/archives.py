"""Archived runs in memory: the same contract as PostgreSQL's (``tests/test_archive.py``
runs it against both)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

import msgspec

from durable.core.errors import StoreError
from durable.core.events import Recorded, run_stream
from durable.core.runs_view import RunRow
from durable.core.state import TERMINAL_RUN
from durable.store.codec import encode_event
from durable.store.rows import ArchivedLogLine, ArchivedRun, NewArchive

if TYPE_CHECKING:
    from durable.store.memory.log import MemoryEventStore

__all__ = ["MemoryArchives"]


class MemoryArchives:
    def __init__(self, store: MemoryEventStore, clock: Callable[[], datetime]) -> None:
        self._store = store
        self._clock = clock
        self.tombstones: dict[str, ArchivedRun] = {}

    def _archivable(self, finished_before: datetime) -> list[RunRow]:
        leases = self._store.lease_table
        now = self._clock()
        rows = []
        for r in self._store.runs():
            tomb = self.tombstones.get(r.run_id)
            if (
                r.finished_at is None
                or r.finished_at >= finished_before
                or r.status not in TERMINAL_RUN
                or r.run_id in self._store.archived
                or (r.run_id in leases and leases[r.run_id][1] > now)
                or (tomb is not None and tomb.restored_at and tomb.restored_at >= finished_before)
            ):
                continue
            rows.append(r)
        rows.sort(key=lambda r: (r.finished_at, r.run_id))
        return rows

    async def archivable(
        self,
        finished_before: datetime,
        *,
        after: tuple[datetime, str] | None = None,
        limit: int = 100,
    ) -> list[RunRow]:
        rows = self._archivable(finished_before)
        if after is not None:
            rows = [
                r for r in rows if r.finished_at is not None and (r.finished_at, r.run_id) > after
            ]
        return rows[:limit]

    async def count_archivable(self, finished_before: datetime) -> int:
        return len(self._archivable(finished_before))

    async def task_logs(self, run_ids: Sequence[str]) -> dict[str, list[ArchivedLogLine]]:
        wanted = set(run_ids)
        out: dict[str, list[ArchivedLogLine]] = {}
        for key, line in sorted(self._store.logs.lines.items(), key=lambda kv: kv[1].id):
            if key[0] in wanted:
                fields = msgspec.structs.asdict(line)
                out.setdefault(key[0], []).append(ArchivedLogLine(line=key[4], **fields))
        return out

    async def record(self, archives: Sequence[NewArchive]) -> list[ArchivedRun | None]:
        logs = await self.task_logs([a.run_id for a in archives])
        leases = self._store.lease_table
        out: list[ArchivedRun | None] = []
        for a in archives:
            row = await self._store.get_run(a.run_id)
            lines = logs.get(a.run_id, [])
            if (
                row is None
                or a.run_id in self._store.archived
                or row.last_seq != a.events
                or row.status not in TERMINAL_RUN
                or (a.run_id in leases and leases[a.run_id][1] > self._clock())
                or (len(lines), lines[-1].id if lines else 0) != (a.log_lines, a.last_log_id)
            ):
                out.append(None)
                continue
            if len(await self._store.read_stream(run_stream(a.run_id))) != a.events:
                raise StoreError(f"run {a.run_id}: the log does not hold {a.events} events")
            self._store.drop_stream(run_stream(a.run_id))
            self._store.logs.drop(a.run_id)
            self._store.archived.add(a.run_id)
            fields = msgspec.structs.asdict(a)
            del fields["last_log_id"]
            tomb = ArchivedRun(**fields, archived_at=self._clock())
            self.tombstones[a.run_id] = tomb
            out.append(tomb)
        return out

    async def get(self, run_id: str) -> ArchivedRun | None:
        return (await self.of([run_id])).get(run_id)

    async def of(self, run_ids: Sequence[str]) -> dict[str, ArchivedRun]:
        found = {i: self.tombstones.get(i) for i in run_ids}
        return {i: t for i, t in found.items() if t is not None and t.restored_at is None}

    async def restore(
        self,
        archive: ArchivedRun,
        records: Sequence[Recorded],
        logs: Sequence[ArchivedLogLine],
    ) -> bool:
        stream = run_stream(archive.run_id)
        if any(r.stream_id != stream for r in records):
            raise ValueError(f"restore of {archive.run_id} takes events of {stream} only")
        for r in records:
            encode_event(self._store.registry, stream, r.event)  # as PostgreSQL checks
        current = await self.get(archive.run_id)
        row = await self._store.get_run(archive.run_id)
        if current is None or current.sha256 != archive.sha256 or row is None:
            return False
        if archive.run_id not in self._store.archived:
            return False
        if row.last_seq != len(records):
            raise StoreError(f"run {archive.run_id}: its archive holds {len(records)} events")
        self._store.put_back(records)
        self._store.logs.put_back(archive.run_id, logs)
        self._store.archived.discard(archive.run_id)
        self.tombstones[archive.run_id] = msgspec.structs.replace(
            current, restored_at=self._clock()
        )
        return True

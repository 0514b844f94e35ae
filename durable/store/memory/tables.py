"""The in-memory tables beside the log: versions, task logs, tokens, trigger tracking,
leases and slots, wake-ups and leadership — the same contracts as PostgreSQL's."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import msgspec

from durable.core.errors import DuplicateRun, IdempotencyConflict
from durable.core.events import RunCreated, run_stream
from durable.core.runs_view import same_request
from durable.core.state import TERMINAL_RUN
from durable.store.base import KafkaOutcome
from durable.store.codec import check_append, encode_event
from durable.store.rows import (
    ArchivedLogLine,
    AssetUpdate,
    DeadLetter,
    KafkaPosition,
    LogLine,
    NewDeadLetter,
    NewVersion,
    SlotLimit,
    TokenRow,
    VersionRow,
)

if TYPE_CHECKING:
    from durable.store.memory.log import MemoryEventStore

__all__ = [
    "MemoryLeadership",
    "MemoryLeases",
    "MemoryTaskLogs",
    "MemoryTokens",
    "MemoryTracking",
    "MemoryVersions",
    "MemoryWakeUps",
]


class MemoryVersions:
    def __init__(self, store: MemoryEventStore) -> None:
        self._store = store
        self._rows: dict[tuple[str, str], tuple[NewVersion, datetime]] = {}

    async def register(self, versions: Sequence[NewVersion]) -> None:
        now = self._store.now()
        for v in versions:
            key = (v.workflow, v.version)
            known = self._rows.get(key)
            if known is None:
                self._rows[key] = (v, now)
            elif known[0].source_text is None:  # the first text recorded is kept
                self._rows[key] = (
                    msgspec.structs.replace(known[0], source_text=v.source_text),
                    known[1],
                )

    async def of(self, workflow: str) -> list[VersionRow]:
        runs = self._store.runs()
        rows = [
            VersionRow(
                workflow=v.workflow,
                version=v.version,
                definition=v.definition,
                source=v.source,
                first_seen=at,
                source_text=v.source_text,
                runs=sum(1 for r in runs if (r.workflow, r.version) == (v.workflow, v.version)),
            )
            for (name, _), (v, at) in self._rows.items()
            if name == workflow
        ]
        return sorted(rows, key=lambda r: r.first_seen)

    async def first_seen(self, workflow: str) -> datetime | None:
        return min(
            (at for (name, _), (_, at) in self._rows.items() if name == workflow), default=None
        )


class MemoryTaskLogs:
    def __init__(self) -> None:
        self.lines: dict[tuple[str, str, int, int, int], LogLine] = {}
        """By (run, task, generation, attempt, line number)."""
        self._last_id = 0

    def drop(self, run_id: str) -> None:
        """Delete a run's lines (archived)."""
        self.lines = {k: v for k, v in self.lines.items() if k[0] != run_id}

    def put_back(self, run_id: str, lines: Sequence[ArchivedLogLine]) -> None:
        """Restore a run's lines with their ids (archive restored)."""
        for x in lines:
            key = (run_id, x.task, x.generation, x.attempt, x.line)
            self.lines.setdefault(key, x.log_line())

    async def write(
        self,
        run_id: str,
        task: str,
        generation: int,
        attempt: int,
        lines: Sequence[tuple[datetime, str, str]],
        first_line: int = 1,
    ) -> None:
        for n, (at, stream, message) in enumerate(lines, start=first_line):
            key = (run_id, task, generation, attempt, n)
            if key in self.lines:
                continue  # a retried batch: the line is kept as first written
            self._last_id += 1
            self.lines[key] = LogLine(
                task=task,
                generation=generation,
                attempt=attempt,
                at=at,
                stream=stream,
                message=message.replace("\x00", ""),
                id=self._last_id,
            )

    async def read(
        self,
        run_id: str,
        task: str | None = None,
        attempt: int | None = None,
        limit: int | None = None,
        after_id: int = 0,
    ) -> list[LogLine]:
        lines = sorted(
            (
                line
                for k, line in self.lines.items()
                if k[0] == run_id
                and line.id > after_id
                and (task is None or line.task == task)
                and (attempt is None or line.attempt == attempt)
            ),
            key=lambda line: line.id,
        )
        return lines if limit is None else lines[:limit]


class MemoryTokens:
    def __init__(self, clock: Callable[[], datetime]) -> None:
        self._clock = clock
        self._rows: dict[str, TokenRow] = {}

    async def insert(
        self, token_id: str, name: str, scopes: Sequence[str], secret_sha256: bytes, by: str | None
    ) -> TokenRow:
        if token_id in self._rows:
            raise DuplicateRun(token_id, token_id)  # ids are random: never in practice
        row = TokenRow(
            token_id=token_id,
            name=name,
            scopes=list(scopes),
            secret_sha256=secret_sha256,
            created_at=self._clock(),
            created_by=by,
        )
        self._rows[token_id] = row
        return row

    async def insert_first(
        self, token_id: str, name: str, scopes: Sequence[str], secret_sha256: bytes, by: str | None
    ) -> TokenRow | None:
        if self._rows:
            return None
        return await self.insert(token_id, name, scopes, secret_sha256, by)

    async def all(self, *, include_revoked: bool = False) -> list[TokenRow]:
        rows = [r for r in self._rows.values() if include_revoked or r.revoked_at is None]
        return sorted(rows, key=lambda r: r.created_at)

    async def find(self, id_or_name: str) -> list[TokenRow]:
        rows = [r for r in self._rows.values() if id_or_name in (r.token_id, r.name)]
        return sorted(rows, key=lambda r: r.created_at)

    async def revoke(self, token_id: str) -> TokenRow | None:
        row = self._rows.get(token_id)
        if row is None:
            return None
        if row.revoked_at is None:
            row = self._rows[token_id] = msgspec.structs.replace(row, revoked_at=self._clock())
        return row

    async def live(self, token_id: str) -> TokenRow | None:
        row = self._rows.get(token_id)
        return row if row is not None and row.revoked_at is None else None


class MemoryTracking:
    def __init__(self, store: MemoryEventStore, clock: Callable[[], datetime]) -> None:
        self._store = store
        self._clock = clock
        self._offsets: dict[tuple[str, str, int], int] = {}
        self._epochs: dict[tuple[str, str, int], int] = {}
        self._fingerprints: dict[tuple[str, str, int], str] = {}
        self.letters: dict[tuple[str, str, int, int, str | None, int], DeadLetter] = {}
        self._ids = itertools.count(1)
        self._positions: dict[str, int] = {}
        self._assets: dict[str, AssetUpdate] = {}

    async def kafka_offsets(
        self, group_id: str, topics: Sequence[str]
    ) -> dict[tuple[str, int], int]:
        return {
            (t, p): n for (g, t, p), n in self._offsets.items() if g == group_id and t in topics
        }

    async def kafka_positions(
        self, group_id: str, topics: Sequence[str]
    ) -> dict[tuple[str, int], KafkaPosition]:
        return {
            (t, p): KafkaPosition(
                next_offset=n,
                epoch=self._epochs.get((g, t, p), 0),
                last_fingerprint=self._fingerprints.get((g, t, p)),
            )
            for (g, t, p), n in self._offsets.items()
            if g == group_id and t in topics
        }

    async def reset_kafka_partition(self, group_id: str, topic: str, partition: int) -> int:
        k = (group_id, topic, partition)
        self._offsets[k] = 0
        self._epochs[k] = self._epochs.get(k, 0) + 1
        self._fingerprints.pop(k, None)
        return self._epochs[k]

    async def record_kafka_batch(
        self,
        group_id: str,
        runs: Sequence[tuple[RunCreated, NewDeadLetter | None]],
        dead_letters: Sequence[NewDeadLetter],
        offsets: dict[tuple[str, int], int],
        fingerprints: dict[tuple[str, int], str] | None = None,
    ) -> list[KafkaOutcome]:
        store = self._store
        if len({c.run_id for c, _ in runs}) != len(runs):
            raise ValueError("record_kafka_batch takes one new run per run id")
        # everything is checked before anything is written: all or nothing
        outcomes: list[KafkaOutcome | None] = []
        refused: list[tuple[NewDeadLetter, str]] = []
        keys: set[str] = set()
        for created, letter in runs:
            stream = run_stream(created.run_id)
            check_append(stream, 0, [created])
            encode_event(store.registry, stream, created)
            key = created.idempotency_key
            if key is not None and key in keys:
                raise ValueError(f"idempotency key {key!r} twice in one batch")
            try:
                store.check_free(stream, 0, [created])
            except DuplicateRun as dup:
                existing = (await store.runs_by_keys([dup.idempotency_key]))[dup.idempotency_key]
                if same_request(existing, created.workflow, created.params, None):
                    outcomes.append(dup)
                else:
                    conflict = IdempotencyConflict(dup.idempotency_key, dup.existing_run_id)
                    if letter is not None:
                        refused.append((letter, str(conflict)))
                    outcomes.append(conflict)
                continue
            if key is not None:
                keys.add(key)
            outcomes.append(None)
        done: list[KafkaOutcome] = []
        for (created, _), outcome in zip(runs, outcomes, strict=True):
            done.append(
                outcome
                if outcome is not None
                else store.write(run_stream(created.run_id), 0, [created])
            )
        for letter in dead_letters:
            self._letter(letter, letter.reason)
        for letter, reason in refused:
            self._letter(letter, reason)
        for (topic, partition), n in offsets.items():
            k = (group_id, topic, partition)
            self._offsets[k] = max(self._offsets.get(k, n), n)
        for (topic, partition), fp in (fingerprints or {}).items():
            k = (group_id, topic, partition)
            if self._offsets.get(k) == int(fp.partition(":")[0]) + 1:
                self._fingerprints[k] = fp
        if any(isinstance(o, list) for o in done):
            await store.notify_changed()
            store.wakeups.runs_created()
        return done

    def _letter(self, d: NewDeadLetter, reason: str) -> None:
        key = (d.source, d.topic, d.partition, d.offset, d.workflow, d.epoch)
        if key in self.letters:
            return
        self.letters[key] = DeadLetter(
            id=next(self._ids),
            source=d.source,
            topic=d.topic,
            partition=d.partition,
            offset=d.offset,
            key=d.key,
            value=d.value,
            headers=dict(d.headers),
            workflow=d.workflow,
            reason=reason,
            received_at=self._clock(),
            epoch=d.epoch,
        )

    async def dead_letters(self, limit: int = 50) -> list[DeadLetter]:
        return sorted(self.letters.values(), key=lambda d: d.id, reverse=True)[:limit]

    async def log_position(self, reader: str) -> int:
        return self._positions.get(reader, 0)

    async def set_log_position(self, reader: str, position: int) -> None:
        self._positions[reader] = position

    async def upsert_assets(self, updates: Sequence[AssetUpdate]) -> None:
        for u in updates:
            old = self._assets.get(u.asset)
            if old is None or old.position < u.position:
                self._assets[u.asset] = u

    async def assets(self) -> list[AssetUpdate]:
        return [self._assets[a] for a in sorted(self._assets)]


class MemoryLeases:
    def __init__(self, store: MemoryEventStore, owner: str, ttl: float) -> None:
        self._store = store
        self._table = store.lease_table
        self.owner = owner
        self.ttl = ttl

    def _live(self, run_id: str) -> bool:
        lease = self._table.get(run_id)
        return lease is not None and lease[1] >= self._store.now()

    async def claim(self, versions: Sequence[str], limit: int) -> list[str]:
        if limit <= 0 or not versions:
            return []
        wanted = set(versions)
        candidates = sorted(
            (
                r
                for r in self._store.runs()
                if r.status in ("pending", "running")
                and f"{r.workflow}@{r.version}" in wanted
                and not self._live(r.run_id)
            ),
            # the live lane first: backfill runs never starve scheduled and triggered ones
            key=lambda r: (r.trigger_kind == "backfill", r.created_at),
        )[:limit]
        expiry = self._store.now() + timedelta(seconds=self.ttl)
        for r in candidates:
            self._table[r.run_id] = (self.owner, expiry, False)
        return [r.run_id for r in candidates]

    async def renew(self, run_ids: Sequence[str]) -> set[str]:
        expiry = self._store.now() + timedelta(seconds=self.ttl)
        held = set()
        for run_id in run_ids:
            lease = self._table.get(run_id)
            if lease is not None and lease[0] == self.owner:
                self._table[run_id] = (self.owner, expiry, lease[2])
                held.add(run_id)
        return held

    async def release(self, run_id: str) -> None:
        lease = self._table.get(run_id)
        if lease is not None and lease[0] == self.owner:
            del self._table[run_id]

    async def take_slot(self, run_id: str, limits: Sequence[SlotLimit]) -> bool:
        runs = {r.run_id: r for r in self._store.runs()}
        for kind, key, limit in limits:
            taken = 0
            for other, (_, _, slot) in self._table.items():
                r = runs.get(other)
                if not slot or other == run_id or r is None or r.status in TERMINAL_RUN:
                    continue
                if (r.workflow if kind == "workflow" else r.trigger_source) == key:
                    taken += 1
            if taken >= limit:
                return False
        lease = self._table.get(run_id)
        if lease is None or lease[0] != self.owner:
            return False
        self._table[run_id] = (lease[0], lease[1], True)
        return True


class _MemoryWatch:
    def __init__(self, wakeups: MemoryWakeUps, key: int) -> None:
        self._wakeups = wakeups
        self._key = key

    @property
    def lost(self) -> bool:
        return False  # nothing to lose in memory

    async def close(self) -> None:
        self._wakeups.watchers.pop(self._key, None)


class MemoryWakeUps:
    def __init__(self) -> None:
        self.watchers: dict[int, tuple[Callable[[], None], Callable[[str], None]]] = {}
        self._ids = itertools.count()

    async def watch(
        self, on_runs: Callable[[], None], on_control: Callable[[str], None]
    ) -> _MemoryWatch:
        key = next(self._ids)
        self.watchers[key] = (on_runs, on_control)
        return _MemoryWatch(self, key)

    def runs_created(self) -> None:
        for on_runs, _ in list(self.watchers.values()):
            on_runs()

    async def notify_runs(self, reason: str) -> None:
        self.runs_created()

    async def notify_control(self, run_id: str) -> None:
        for _, on_control in list(self.watchers.values()):
            on_control(run_id)


class _MemoryLead:
    def __init__(self, leadership: MemoryLeadership, role: str) -> None:
        self._leadership = leadership
        self._role = role

    async def check(self) -> None:
        return None

    async def release(self) -> None:
        self._leadership.leaders.discard(self._role)


class MemoryLeadership:
    def __init__(self) -> None:
        self.leaders: set[str] = set()

    async def try_lead(self, role: str) -> _MemoryLead | None:
        if role in self.leaders:
            return None
        self.leaders.add(role)
        return _MemoryLead(self, role)

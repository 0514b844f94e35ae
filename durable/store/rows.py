"""The rows the store's protocols take and give: typed, frozen, never a driver's record."""

from __future__ import annotations

from datetime import datetime

import msgspec

__all__ = [
    "ArchivedLogLine",
    "ArchivedRun",
    "AssetUpdate",
    "DeadLetter",
    "LogLine",
    "MetricsCounts",
    "NewArchive",
    "NewDeadLetter",
    "NewVersion",
    "SlotLimit",
    "TokenRow",
    "VersionRow",
]

SlotLimit = tuple[str, str, int]
"""``(kind, key, limit)``: kind ``workflow`` (its max_active_runs) or ``trigger_source``
(a backfill's max_parallel)."""


class NewVersion(msgspec.Struct, frozen=True, kw_only=True):
    """A workflow version a process serves, to record (``definition``: its spec as JSON;
    ``source``: the path of its file, ``source_text``: the file's text)."""

    workflow: str
    version: str
    definition: bytes
    source: str = ""
    source_text: str | None = None


class VersionRow(msgspec.Struct, frozen=True, kw_only=True):
    """A recorded workflow version and how many runs are pinned to it."""

    workflow: str
    version: str
    definition: bytes
    source: str
    first_seen: datetime
    runs: int
    source_text: str | None = None
    """The text of its file, as first recorded (None: recorded without one)."""


class LogLine(msgspec.Struct, frozen=True, kw_only=True):
    """One stored log line of a task attempt; ``id`` grows in the order lines were
    written (a reader resumes after the last one it saw)."""

    task: str
    generation: int
    attempt: int
    at: datetime
    stream: str
    message: str
    id: int


class ArchivedLogLine(msgspec.Struct, frozen=True, kw_only=True):
    """A task log line as archived: every column, so a restore puts it back as it was
    (``line`` numbers an attempt's lines; ``id`` orders the run's)."""

    task: str
    generation: int
    attempt: int
    line: int
    at: datetime
    stream: str
    message: str
    id: int

    def log_line(self) -> LogLine:
        return LogLine(
            task=self.task,
            generation=self.generation,
            attempt=self.attempt,
            at=self.at,
            stream=self.stream,
            message=self.message,
            id=self.id,
        )


class NewArchive(msgspec.Struct, frozen=True, kw_only=True):
    """A run's history written to its archive files and read back, to record: the
    tombstone, and what the run must still be for its events to be deleted (at seq
    ``events``, with ``log_lines`` lines, the last ``last_log_id``)."""

    run_id: str
    workflow: str
    status: str
    created_at: datetime
    finished_at: datetime | None
    uri: str
    events: int
    sha256: str
    bytes: int
    logs_uri: str | None = None
    log_lines: int = 0
    logs_sha256: str | None = None
    last_log_id: int = 0


class ArchivedRun(msgspec.Struct, frozen=True, kw_only=True):
    """The tombstone of an archived run: where its files are and what they hold."""

    run_id: str
    workflow: str
    status: str
    created_at: datetime
    finished_at: datetime | None
    uri: str
    """The events file: gzip JSON lines in the export format."""
    events: int
    sha256: str
    """Of the events file's bytes."""
    bytes: int
    logs_uri: str | None = None
    """The task log lines file (None: the run had no lines)."""
    log_lines: int = 0
    logs_sha256: str | None = None
    archived_at: datetime
    restored_at: datetime | None = None
    """When ``durable restore`` brought the events back (None: archived now)."""


class TokenRow(msgspec.Struct, frozen=True, kw_only=True):
    """An API token as stored: the SHA-256 of its secret, never the secret."""

    token_id: str
    name: str
    scopes: list[str]
    secret_sha256: bytes
    created_at: datetime
    created_by: str | None = None
    revoked_at: datetime | None = None


class NewDeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    """A trigger message that could not start a run, and why."""

    source: str = "kafka"
    topic: str
    partition: int
    offset: int
    key: bytes | None = None
    value: bytes | None = None
    headers: dict[str, str] = {}
    workflow: str | None = None
    reason: str = ""
    epoch: int = 0
    """The incarnation of the partition's log (a broker that lost its log reuses offsets)."""


class KafkaPosition(msgspec.Struct, frozen=True, kw_only=True):
    """Where a consumer group is in one partition, and which incarnation of its log."""

    next_offset: int
    epoch: int = 0
    last_fingerprint: str | None = None
    """``offset:hash`` of the last message consumed, to recognise the log by."""


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    """A stored dead letter (newest have the largest ``id``)."""

    id: int
    source: str
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, str]
    workflow: str | None
    reason: str
    received_at: datetime
    epoch: int = 0


class AssetUpdate(msgspec.Struct, frozen=True, kw_only=True):
    """An asset's latest update: the run and task that produced it (lineage)."""

    asset: str
    workflow: str
    run_id: str
    task: str
    generation: int
    updated_at: datetime
    position: int


class MetricsCounts(msgspec.Struct, frozen=True, kw_only=True):
    """What ``/metrics`` reports from the store."""

    runs: list[tuple[str, str, int]]  # (workflow, status, count)
    position: int
    dead_letters: int
    live_leases: int

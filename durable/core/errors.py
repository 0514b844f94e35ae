"""Errors of durable: each carries its fields and says how to fix or whether to retry.

Pure: no I/O. Storage, CLI and API layers translate their own failures into these
once, at their boundary.
"""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = [
    "ArchiveError",
    "ConcurrencyConflict",
    "DuplicateRun",
    "DurableError",
    "IdempotencyConflict",
    "InvalidTransition",
    "MalformedEvent",
    "MigrationError",
    "RunArchived",
    "StoreError",
    "StoreUnavailable",
    "StreamNotFound",
    "TaskError",
    "UnknownEventType",
]


class DurableError(Exception):
    """Base of every error durable raises on purpose.

    ``hint`` says what the user can do about it; ``retryable`` whether trying the same
    thing again can succeed.
    """

    retryable: bool = False

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class ConcurrencyConflict(DurableError):
    """Another writer extended the stream first: the append's ``expected_seq`` is stale.

    This is the fence that stops a zombie executor: re-read the stream and decide again.
    """

    retryable = True

    def __init__(self, stream_id: str, expected_seq: int, actual_seq: int | None = None) -> None:
        actual = "unknown" if actual_seq is None else str(actual_seq)
        super().__init__(
            f"stream {stream_id!r}: expected to append after seq {expected_seq}, "
            f"but the stream is at seq {actual}",
            hint="another writer appended first; re-read the stream and decide again",
        )
        self.stream_id = stream_id
        self.expected_seq = expected_seq
        self.actual_seq = actual_seq


class DuplicateRun(DurableError):
    """A run with the same idempotency key already exists."""

    def __init__(self, idempotency_key: str, existing_run_id: str) -> None:
        super().__init__(
            f"a run with idempotency key {idempotency_key!r} already exists: {existing_run_id}",
            hint="this is the exactly-once guarantee; use the existing run",
        )
        self.idempotency_key = idempotency_key
        self.existing_run_id = existing_run_id


class StreamNotFound(DurableError):
    """No events exist for the stream (for example an unknown run id)."""

    def __init__(self, stream_id: str, *, what: str | None = None, hint: str | None = None) -> None:
        super().__init__(
            f"no {what}" if what else f"no events for stream {stream_id!r}",
            hint=hint or "check the id; `durable runs` lists the runs",
        )
        self.stream_id = stream_id


class InvalidTransition(DurableError):
    """An event that cannot happen in the state it is applied to.

    Raised by the fold: the log (or a hand-edited export) is inconsistent.
    """

    def __init__(self, stream_id: str, seq: int, event_type: str, reason: str) -> None:
        super().__init__(
            f"run {stream_id!r} seq {seq}: {event_type} is impossible here: {reason}",
            hint="the history is inconsistent; `durable history` shows the events before it",
        )
        self.stream_id = stream_id
        self.seq = seq
        self.event_type = event_type
        self.reason = reason


class UnknownEventType(DurableError):
    """A stored or imported event whose type (tag) this version of durable does not know."""

    def __init__(self, event_type: str, known: list[str], *, where: str = "") -> None:
        prefix = f"{where}: " if where else ""
        super().__init__(
            f"{prefix}unknown event type {event_type!r}",
            hint=f"known types: {', '.join(sorted(known))}; was it written by a newer durable?",
        )
        self.event_type = event_type


class MalformedEvent(DurableError):
    """An event record that does not decode: bad JSON, missing or mistyped fields."""

    def __init__(self, where: str, problem: str, *, hint: str | None = None) -> None:
        super().__init__(
            f"{where}: {problem}",
            hint=hint or "each line must be one event as written by `durable export`",
        )
        self.where = where
        self.problem = problem


class MigrationError(DurableError):
    """The database schema cannot be brought up to date safely."""


class IdempotencyConflict(DurableError):
    """An idempotency key already started a run with other params (or of another workflow).

    The same key must always mean the same request: every door refuses the reuse, and
    nothing is recorded.
    """

    def __init__(self, idempotency_key: str, existing_run_id: str) -> None:
        super().__init__(
            f"idempotency key {idempotency_key!r} already started run {existing_run_id} "
            "with other params",
            hint="use a new key for a different request",
        )
        self.idempotency_key = idempotency_key
        self.existing_run_id = existing_run_id


class RunArchived(DurableError):
    """A write to a run whose history was archived: it can be read, not changed."""

    def __init__(self, run_id: str, uri: str, archived_at: datetime) -> None:
        super().__init__(
            f"run {run_id} is archived at {uri} (since {archived_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC): "
            "it can be read but not changed",
            hint=f"`durable restore {run_id}` brings it back",
        )
        self.run_id = run_id
        self.uri = uri
        self.archived_at = archived_at


class ArchiveError(DurableError):
    """An archive file could not be written or read back: the object storage or the
    directory is away, or a file is missing or does not match its checksum."""

    def __init__(self, message: str, *, hint: str | None = None, retryable: bool = True) -> None:
        super().__init__(message, hint=hint)
        self.retryable = retryable


class StoreError(DurableError):
    """The store refused an operation (a lost connection is StoreUnavailable)."""

    def __init__(self, message: str, *, hint: str | None = None, retryable: bool = True) -> None:
        super().__init__(message, hint=hint)
        self.retryable = retryable


class StoreUnavailable(StoreError):
    """The database could not be reached or the transaction failed; nothing was recorded."""

    retryable = True


class TaskError(DurableError):
    """Raised by (or for) a task attempt: ``retryable=False`` stops the retries.

    A task may raise it to say a retry cannot help (bad input, missing data); any other
    exception a task raises is a retryable failure.
    """

    def __init__(self, message: str, *, retryable: bool = True, type: str | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.type = type or "TaskError"

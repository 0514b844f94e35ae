"""The store protocol: what every event store (Postgres, in-memory) provides.

One contract test suite (``tests/store_contract.py``) runs against every implementation.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime
from typing import Protocol

from durable.core.errors import MalformedEvent
from durable.core.events import Event, Recorded
from durable.core.runs_view import RunRow
from durable.core.state import RunStatus

__all__ = ["EventStore", "Progress", "RunFilter", "check_stream_id"]

Progress = Callable[[int, int], None]
"""``progress(done, total)``: called by long operations (rebuilds)."""


class RunFilter:
    """Filters of :meth:`EventStore.list_runs`."""

    __slots__ = ("before", "limit", "since", "status", "trigger_kind", "workflow")

    def __init__(
        self,
        *,
        workflow: str | None = None,
        status: RunStatus | None = None,
        since: datetime | None = None,
        limit: int = 100,
        trigger_kind: str | None = None,
        before: tuple[datetime, str] | None = None,
    ) -> None:
        """``before`` is a cursor: only runs older than ``(created_at, run_id)``."""
        self.workflow = workflow
        self.trigger_kind = trigger_kind
        self.before = before
        self.status = status
        self.since = since
        self.limit = limit


def check_stream_id(stream_id: str) -> None:
    if not stream_id or "\x00" in stream_id or len(stream_id) > 512:
        raise MalformedEvent(
            f"stream id {stream_id!r}", "must be 1 to 512 characters with no NUL byte"
        )


class EventStore(Protocol):
    """An append-only log of streams of events, with the ``runs`` read model beside it."""

    async def append(
        self, stream_id: str, expected_seq: int, events: Sequence[Event]
    ) -> list[Recorded]:
        """Append ``events`` after seq ``expected_seq`` (0: a new stream).

        Returns the events as recorded once they are committed. Raises
        :class:`~durable.core.errors.ConcurrencyConflict` when the stream is not at
        ``expected_seq``, and :class:`~durable.core.errors.DuplicateRun` when a ``RunCreated``
        carries an idempotency key that another run already has.
        """
        ...

    async def import_stream(self, stream_id: str, records: Sequence[Recorded]) -> list[Recorded]:
        """Write a whole exported history as a new stream, keeping its commit times.

        The history must fold (it is checked first); the ``runs`` row is derived from the
        fold. Raises :class:`~durable.core.errors.ConcurrencyConflict` if the stream exists.
        """
        ...

    async def read_stream(self, stream_id: str, after_seq: int = 0) -> list[Recorded]:
        """The stream's events with seq > ``after_seq``, in order."""
        ...

    async def read_streams(self, stream_ids: Sequence[str]) -> dict[str, list[Recorded]]:
        """Several whole streams in one read (an executor recovering many runs at once)."""
        ...

    async def read_all(self, after_position: int = 0, limit: int = 1000) -> list[Recorded]:
        """Events of all streams with position > ``after_position``, in commit order."""
        ...

    async def require_stream(self, stream_id: str) -> list[Recorded]:
        """The whole stream; :class:`~durable.core.errors.StreamNotFound` when it has no events."""
        ...

    async def last_position(self) -> int:
        """The position of the last committed event (0 when empty)."""
        ...

    async def wait_for_events(self, after_position: int, timeout: float) -> bool:
        """Wait until an event past ``after_position`` is committed; False on timeout."""
        ...

    def subscribe(self, after_position: int = 0) -> AsyncIterator[Recorded]:
        """Every event past ``after_position`` in commit order, waiting for new ones."""
        ...

    async def get_run(self, run_id: str) -> RunRow | None:
        """The read-model row of a run."""
        ...

    async def list_runs(self, filter: RunFilter | None = None) -> list[RunRow]:
        """Runs newest first."""
        ...

    async def rebuild_runs(self, progress: Progress | None = None) -> int:
        """Rebuild the ``runs`` read model from the log; returns the number of runs."""
        ...

    async def close(self) -> None: ...

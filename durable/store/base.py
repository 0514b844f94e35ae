"""The store protocols: what every store (PostgreSQL, in-memory) provides.

The store owns every table. Each concern is a narrow typed protocol: the event log and
the runs view beside it (they commit together, so they are the store's own methods),
then workflow versions, task logs, API tokens, trigger tracking, leases and slots,
wake-ups and leadership, each reached through an attribute of the store. One contract
test suite per protocol runs against both implementations (``tests/store_contract.py``,
``tests/store_tables_contract.py``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, Protocol

from durable.core.errors import DuplicateRun, IdempotencyConflict
from durable.core.events import Event, Recorded, RunCreated
from durable.core.runs_view import RunRow
from durable.core.state import RunStatus
from durable.store.rows import (
    ArchivedLogLine,
    ArchivedRun,
    AssetUpdate,
    DeadLetter,
    KafkaPosition,
    LogLine,
    MetricsCounts,
    NewArchive,
    NewDeadLetter,
    NewVersion,
    SlotLimit,
    TokenRow,
    VersionRow,
)

__all__ = [
    "Archives",
    "CommitObserver",
    "EventLog",
    "EventStore",
    "KafkaOutcome",
    "Lead",
    "Leadership",
    "Leases",
    "Progress",
    "RunFilter",
    "RunsView",
    "TaskLogs",
    "Tokens",
    "Tracking",
    "TransactionBody",
    "Versions",
    "WakeUps",
    "Watch",
]

Progress = Callable[[int, int], None]
"""``progress(done, total)``: called by long operations (rebuilds)."""


class RunFilter:
    """Filters of :meth:`EventStore.list_runs`."""

    __slots__ = ("before", "limit", "since", "status", "trigger_kind", "until", "workflow")

    def __init__(
        self,
        *,
        workflow: str | None = None,
        status: RunStatus | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
        trigger_kind: str | None = None,
        before: tuple[datetime, str] | None = None,
    ) -> None:
        """``since``/``until``: created at or after ``since``, strictly before ``until``.
        ``before`` is a cursor: only runs older than ``(created_at, run_id)``."""
        self.workflow = workflow
        self.trigger_kind = trigger_kind
        self.before = before
        self.status = status
        self.since = since
        self.until = until
        self.limit = limit


class EventLog(Protocol):
    """An append-only log of streams of events (one per run, schedule, backfill)."""

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

    async def notification_events(
        self, after_position: int = 0, limit: int = 1000
    ) -> list[Recorded]:
        """The notification outbox's events (requested, sent, failed) of every stream
        with position > ``after_position``, in commit order (an index holds only them)."""
        ...

    async def stream_ids(self, prefix: str, limit: int = 100) -> list[str]:
        """Ids of the streams starting with ``prefix``, the newest stream first."""
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


class RunsView(Protocol):
    """The ``runs`` read model: one row per run, written with the run's events."""

    async def get_run(self, run_id: str) -> RunRow | None:
        """The read-model row of a run."""
        ...

    async def list_runs(self, filter: RunFilter | None = None) -> list[RunRow]:
        """Runs newest first."""
        ...

    async def runs_by_keys(self, keys: Sequence[str]) -> dict[str, RunRow]:
        """The runs holding these idempotency keys, by key (absent keys: no run)."""
        ...

    async def latest_interval(self, workflow: str) -> datetime | None:
        """The latest logical time of the workflow's schedule and backfill runs."""
        ...

    async def interval_statuses(
        self, workflow: str, start: datetime, end: datetime
    ) -> dict[str, int]:
        """How many schedule and backfill runs with logical time in ``[start, end)`` are
        in each status."""
        ...

    async def unfinished_backfill_runs(self, backfill_id: str) -> list[str]:
        """Ids of the backfill's runs that have not finished."""
        ...

    async def rebuild_runs(self, progress: Progress | None = None) -> int:
        """Rebuild the ``runs`` read model from the log (archived runs' rows are kept as
        they are: their events are in their archives); returns the number rebuilt."""
        ...


class Versions(Protocol):
    """The workflow versions processes have served (each run is pinned to one)."""

    async def register(self, versions: Sequence[NewVersion]) -> None:
        """Record versions (already recorded ones keep their first_seen, and the source
        text they were first recorded with; one recorded without any gets this one's)."""
        ...

    async def of(self, workflow: str) -> list[VersionRow]:
        """A workflow's versions, oldest first, each with its run count."""
        ...

    async def first_seen(self, workflow: str) -> datetime | None:
        """When any version of the workflow was first recorded."""
        ...


class TaskLogs(Protocol):
    """Log lines of task attempts, written in batches while they run, read incrementally."""

    async def write(
        self,
        run_id: str,
        task: str,
        generation: int,
        attempt: int,
        lines: Sequence[tuple[datetime, str, str]],
        first_line: int = 1,
    ) -> None:
        """Store a batch of an attempt's ``(at, stream, message)`` lines, numbered in order
        from ``first_line``; a line whose number is already stored is kept (a retried
        batch is a no-op). Each new line gets an id past every id of the run committed
        before it."""
        ...

    async def read(
        self,
        run_id: str,
        task: str | None = None,
        attempt: int | None = None,
        limit: int | None = None,
        after_id: int = 0,
    ) -> list[LogLine]:
        """A run's stored lines with id > ``after_id``, in the order they were written
        (by id), of one task / attempt if given; at most ``limit``."""
        ...


class Archives(Protocol):
    """Finished runs whose events and task logs moved out of the hot tables into archive
    files (written and read by :mod:`durable.application.archive`), and back.

    An archived run keeps its ``runs`` row (marked archived: its stream is closed to
    appends) and gets a tombstone saying where its files are. Recording the tombstone
    and deleting the events is one transaction: a run is intact or archived, never
    half of each.
    """

    async def archivable(
        self,
        finished_before: datetime,
        *,
        after: tuple[datetime, str] | None = None,
        limit: int = 100,
    ) -> list[RunRow]:
        """Finished runs not archived that ended before ``finished_before``, with no live
        lease and not restored since then, oldest end first; ``after`` is the
        ``(finished_at, run_id)`` of the last one of the previous page."""
        ...

    async def count_archivable(self, finished_before: datetime) -> int:
        """How many runs :meth:`archivable` would give in all."""
        ...

    async def task_logs(self, run_ids: Sequence[str]) -> dict[str, list[ArchivedLogLine]]:
        """Every stored log line of these runs, by run (runs without lines left out),
        each run's by id, with all their columns."""
        ...

    async def record(self, archives: Sequence[NewArchive]) -> list[ArchivedRun | None]:
        """One transaction: for each run still as it was archived, record its tombstone,
        mark it archived and delete its events and task logs. A run that is no longer
        what was archived — not finished, not at seq ``events``, leased, already
        archived, its log lines changed — is left as it is (None in its place)."""
        ...

    async def get(self, run_id: str) -> ArchivedRun | None:
        """The tombstone of a run archived now (None: not archived, or restored)."""
        ...

    async def of(self, run_ids: Sequence[str]) -> dict[str, ArchivedRun]:
        """The tombstones of those of ``run_ids`` archived now, by run id."""
        ...

    async def restore(
        self,
        archive: ArchivedRun,
        records: Sequence[Recorded],
        logs: Sequence[ArchivedLogLine],
    ) -> bool:
        """One transaction: the events back with their seqs and positions, the log lines
        with their ids, the run no longer archived, the tombstone marked restored. False,
        and nothing done, when the run is not archived by ``archive`` any more."""
        ...


class Tokens(Protocol):
    """API tokens as stored (hashes only); formats and hashing live in the application."""

    async def insert(
        self, token_id: str, name: str, scopes: Sequence[str], secret_sha256: bytes, by: str | None
    ) -> TokenRow: ...

    async def insert_first(
        self, token_id: str, name: str, scopes: Sequence[str], secret_sha256: bytes, by: str | None
    ) -> TokenRow | None:
        """Insert only if no token was ever created (atomically); else None."""
        ...

    async def all(self, *, include_revoked: bool = False) -> list[TokenRow]:
        """Tokens, oldest first."""
        ...

    async def find(self, id_or_name: str) -> list[TokenRow]:
        """Tokens whose id or name is ``id_or_name`` (revoked ones too)."""
        ...

    async def revoke(self, token_id: str) -> TokenRow | None:
        """Revoke (keeping the first revocation time); None when there is no such token."""
        ...

    async def live(self, token_id: str) -> TokenRow | None:
        """The token if it exists and is not revoked."""
        ...


KafkaOutcome = list[Recorded] | DuplicateRun | IdempotencyConflict


class Tracking(Protocol):
    """Trigger tracking: how far each trigger got, recorded with what it did."""

    async def kafka_offsets(
        self, group_id: str, topics: Sequence[str]
    ) -> dict[tuple[str, int], int]:
        """The next offset to read of each ``(topic, partition)`` stored for the group."""
        ...

    async def kafka_positions(
        self, group_id: str, topics: Sequence[str]
    ) -> dict[tuple[str, int], KafkaPosition]:
        """Each stored ``(topic, partition)``'s position, epoch and last fingerprint."""
        ...

    async def reset_kafka_partition(self, group_id: str, topic: str, partition: int) -> int:
        """A new incarnation of the partition's log: from offset 0 under the next epoch,
        which is returned."""
        ...

    async def record_kafka_batch(
        self,
        group_id: str,
        runs: Sequence[tuple[RunCreated, NewDeadLetter | None]],
        dead_letters: Sequence[NewDeadLetter],
        offsets: dict[tuple[str, int], int],
        fingerprints: dict[tuple[str, int], str] | None = None,
    ) -> list[KafkaOutcome]:
        """One transaction: create the runs, record the dead letters and move the offsets
        (never backwards), remembering each partition's last message ``fingerprints``. Each run comes with the dead letter to record if its
        idempotency key already started a different run (the reason is filled in; None:
        refused without one);
        a key that started the same run is a duplicate, recorded nothing. Any other
        failure records nothing at all. Returns each run's outcome."""
        ...

    async def dead_letters(self, limit: int = 50) -> list[DeadLetter]:
        """Newest first."""
        ...

    async def log_position(self, reader: str) -> int:
        """How far a log-tailing reader got (0: from the start)."""
        ...

    async def set_log_position(self, reader: str, position: int) -> None: ...

    async def upsert_assets(self, updates: Sequence[AssetUpdate]) -> None:
        """Record asset updates; an asset keeps its newest update (by log position)."""
        ...

    async def assets(self) -> list[AssetUpdate]:
        """Every asset's latest update, by name."""
        ...


class Leases(Protocol):
    """One executor's (``owner``) leases on runs, and the concurrency slots they hold.

    Correctness does not rest on leases: every append is fenced by the run's seq.
    """

    owner: str
    ttl: float

    async def claim(self, versions: Sequence[str], limit: int) -> list[str]:
        """Lease up to ``limit`` runs needing work, of ``workflow@version`` we can run;
        never a run another live lease holds (the live lane first: backfills last)."""
        ...

    async def renew(self, run_ids: Sequence[str]) -> set[str]:
        """Extend our leases; returns the runs we still hold (the others were lost)."""
        ...

    async def release(self, run_id: str) -> None: ...

    async def take_slot(self, run_id: str, limits: Sequence[SlotLimit]) -> bool:
        """Count the run against each limit; False, and nothing taken, when any is full."""
        ...


class Watch(Protocol):
    """A subscription to wake-ups; ``close`` ends it."""

    @property
    def lost(self) -> bool:
        """Its connection dropped: wake-ups are missed until the caller watches again
        (``on_runs`` is called once when it drops)."""
        ...

    async def close(self) -> None: ...


class WakeUps(Protocol):
    """Wake-ups between processes: a run was created, an operator changed a run.

    Best effort: a lost wake-up costs the listener one poll interval.
    """

    async def watch(self, on_runs: Callable[[], None], on_control: Callable[[str], None]) -> Watch:
        """Call ``on_runs()`` when runs were created and ``on_control(run_id)`` when a run
        was changed by an operator. Raises StoreUnavailable when it cannot listen."""
        ...

    async def notify_runs(self, reason: str) -> None:
        """Tell executors there are runs to look at (a backfill created or resumed some)."""
        ...

    async def notify_control(self, run_id: str) -> None:
        """Tell the executor driving ``run_id`` that an operator changed it."""
        ...


class Lead(Protocol):
    """Leadership held: ``check`` raises StoreUnavailable once it is lost."""

    async def check(self) -> None: ...

    async def release(self) -> None: ...


class Leadership(Protocol):
    """At most one leader per role across processes (e.g. the scheduler)."""

    async def try_lead(self, role: str) -> Lead | None:
        """Lead ``role`` if nobody does; None when another process leads it."""
        ...


class CommitObserver(Protocol):
    """Told of every committed batch of appends (telemetry hooks in here: the store
    imports no telemetry library). Called on the event loop: it must be quick."""

    def committed(self, appends: int, events: int, seconds: float, waited: float) -> None:
        """A batch of ``appends`` appends (``events`` events) committed; its statement took
        ``seconds``; its oldest append ``waited`` seconds from submission to commit."""
        ...


TransactionBody = Callable[[Any], Awaitable[Sequence[Event]]]
"""Runs inside the store's transaction with its connection; returns the events to append
in that same transaction."""


class EventStore(EventLog, RunsView, Protocol):
    """The whole store: the event log and runs view, and the other tables by concern."""

    @property
    def versions(self) -> Versions:
        """Workflow versions."""
        ...

    @property
    def logs(self) -> TaskLogs:
        """Task attempts' log lines."""
        ...

    @property
    def archives(self) -> Archives:
        """Archived runs' tombstones."""
        ...

    @property
    def tokens(self) -> Tokens:
        """API tokens."""
        ...

    @property
    def tracking(self) -> Tracking:
        """Trigger tracking."""
        ...

    @property
    def wakeups(self) -> WakeUps:
        """Wake-ups between processes."""
        ...

    @property
    def leadership(self) -> Leadership:
        """Leader election."""
        ...

    def leases(self, owner: str, *, ttl: float = 30.0) -> Leases:
        """The leases of executor ``owner`` (a lease lasts ``ttl`` seconds unrenewed)."""
        ...

    async def transact(
        self, stream_id: str, expected_seq: int, body: TransactionBody
    ) -> list[Recorded]:
        """Run ``body`` in a transaction and append the events it returns in it: its
        writes and the events commit together or not at all. Raises ConcurrencyConflict
        (everything rolled back) when the stream moved; the body's own errors pass
        through. The in-memory store raises StoreError: this needs PostgreSQL."""
        ...

    def sql_pool(self) -> Any:
        """The connection pool SQL tasks on durable's own database use (PostgreSQL only)."""
        ...

    async def metrics_counts(self) -> MetricsCounts:
        """What ``/metrics`` reports from the store."""
        ...

    def observe_commits(self, observer: CommitObserver | None) -> None:
        """Tell ``observer`` of each batch of appends committed from now on (None: stop)."""
        ...

    async def close(self) -> None: ...

"""The log's life cycle: finished runs' histories moved out of PostgreSQL into archive
files, read back from there wherever a run is read, and restored.

Archiving goes a page of runs at a time. Each run's events are written as gzip JSON
lines in the export format (``durable replay --file`` and ``durable import`` read them),
its task log lines as a second file when it has any; each file is read back and checked
(sha256, line count); the page's files are made durable; and only then, in one
transaction, the page's tombstones are recorded and their events and lines deleted. A
crash anywhere leaves each run intact (a file may be written already: the next pass
writes the same bytes under the same name) or archived, never neither.

Files are named by their content: ``<workflow>/<run>.<sha256 prefix>.jsonl.gz`` (and
``….logs.jsonl.gz``). Two passes archiving the same history write the same bytes to the
same name, and a file a tombstone names is never overwritten by other bytes.

Only finished runs are archived, and not those an operator or the notifier may still
write to: a queued rerun, a notification not yet sent or failed, a live lease.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from urllib.parse import quote

import msgspec

from durable.core.errors import ArchiveError, DurableError, StreamNotFound
from durable.core.events import (
    NotificationFailed,
    NotificationRequested,
    NotificationSent,
    Recorded,
    run_stream,
)
from durable.core.fold import fold
from durable.core.history import dump_line, read_history_lines
from durable.core.runs_view import RunRow
from durable.core.state import RunState
from durable.store.base import EventStore
from durable.store.objects import ObjectStore, open_objects, read_object, split_s3_uri
from durable.store.rows import ArchivedLogLine, ArchivedRun, LogLine, NewArchive

__all__ = [
    "ArchiveReader",
    "ArchiveReport",
    "archive_key",
    "archive_runs",
    "decode_events",
    "decode_logs",
    "encode_events",
    "encode_logs",
    "restore_run",
    "run_history",
    "run_logs",
    "why_kept",
    "write_archive",
]

PAGE = 100
"""Runs read from the database at a time."""

_logs_encoder = msgspec.json.Encoder()
_logs_decoder = msgspec.json.Decoder(ArchivedLogLine)


def encode_events(records: Sequence[Recorded]) -> bytes:
    """A history as an archive file: export lines, gzipped; the same records always
    give the same bytes (no time in the gzip header)."""
    return gzip.compress(b"".join(dump_line(r) for r in records), mtime=0)


def decode_events(data: bytes, *, source: str) -> list[Recorded]:
    """The events of an archive file (errors name ``source`` and the line)."""
    return list(read_history_lines(_gunzip(data, source).splitlines(), source=source))


def encode_logs(lines: Sequence[ArchivedLogLine]) -> bytes:
    """A run's task log lines as an archive file: one JSON object a line, gzipped."""
    return gzip.compress(b"".join(_logs_encoder.encode(x) + b"\n" for x in lines), mtime=0)


def decode_logs(data: bytes, *, source: str) -> list[ArchivedLogLine]:
    try:
        return [_logs_decoder.decode(x) for x in _gunzip(data, source).splitlines() if x]
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ArchiveError(
            f"{source}: not an archive of log lines: {exc}", retryable=False
        ) from None


def _gunzip(data: bytes, source: str) -> bytes:
    try:
        return gzip.decompress(data)
    except (OSError, EOFError) as exc:
        raise ArchiveError(f"{source}: not a gzip file: {exc}", retryable=False) from None


def _name(part: str) -> str:
    safe = quote(part, safe="-_.~@+=,")
    return "%2E" + safe[1:] if safe.startswith(".") else safe


def archive_key(workflow: str, run_id: str, digest: str, *, logs: bool = False) -> str:
    """Where a run's file goes under the archive's base, named by its content."""
    return f"{_name(workflow)}/{_name(run_id)}.{digest[:16]}{'.logs' if logs else ''}.jsonl.gz"


def why_kept(records: Sequence[Recorded], state: RunState | None) -> str | None:
    """Why a run must stay in PostgreSQL for now (None: it may be archived): it has not
    finished (``state``: its events folded), a rerun is queued on it, or a notification
    of it is not settled (the notifier will append its outcome to the run's stream)."""
    if state is None or not state.is_terminal:
        return "not finished"
    if state.queued:
        return "a rerun is queued"
    pending: set[str] = set()
    for r in records:
        if isinstance(r.event, NotificationRequested):
            pending.add(r.event.notification_id)
        elif isinstance(r.event, NotificationSent | NotificationFailed):
            pending.discard(r.event.notification_id)
    if pending:
        return "a notification is not sent yet"
    return None


class ArchiveReport(msgspec.Struct, kw_only=True):
    """What an archive pass did."""

    archived: int = 0
    events: int = 0
    log_lines: int = 0
    bytes: int = 0
    kept: dict[str, int] = {}
    """Runs left in PostgreSQL, by reason."""
    seconds: float = 0.0

    def keep(self, reason: str) -> None:
        self.kept[reason] = self.kept.get(reason, 0) + 1


async def _write(objects: ObjectStore, key: str, data: bytes, digest: str, count: int) -> str:
    """Write a file, read it back and check it: its bytes (sha256) and its line count."""
    uri = await objects.put(key, data)
    back = await objects.get(key)
    if hashlib.sha256(back).hexdigest() != digest:
        raise ArchiveError(f"{uri} read back differs from what was written")
    if _gunzip(back, uri).count(b"\n") != count:
        raise ArchiveError(f"{uri} read back does not hold {count} lines")
    return uri


async def write_archive(
    objects: ObjectStore,
    row: RunRow,
    records: Sequence[Recorded],
    lines: Sequence[ArchivedLogLine],
) -> NewArchive | str:
    """Write a run's files and check them (``records``: its events, ``lines``: its task
    log lines); returns the tombstone to record, or why the run stays."""
    state = fold(records)
    reason = why_kept(records, state)
    if reason is not None:
        return reason
    assert state is not None  # why_kept says so
    if len(records) != row.last_seq:
        return "changed while archived"
    data = encode_events(records)
    digest = hashlib.sha256(data).hexdigest()
    key = archive_key(row.workflow, row.run_id, digest)
    uri = await _write(objects, key, data, digest, len(records))
    logs_uri = logs_digest = None
    if lines:
        logs = encode_logs(lines)
        logs_digest = hashlib.sha256(logs).hexdigest()
        logs_key = archive_key(row.workflow, row.run_id, logs_digest, logs=True)
        logs_uri = await _write(objects, logs_key, logs, logs_digest, len(lines))
    return NewArchive(
        run_id=row.run_id,
        workflow=row.workflow,
        status=state.status,
        created_at=row.created_at,
        finished_at=row.finished_at,
        uri=uri,
        events=len(records),
        sha256=digest,
        bytes=len(data),
        logs_uri=logs_uri,
        log_lines=len(lines),
        logs_sha256=logs_digest,
        last_log_id=lines[-1].id if lines else 0,
    )


async def archive_runs(
    store: EventStore,
    objects: ObjectStore,
    finished_before: datetime,
    *,
    limit: int | None = None,
    concurrency: int = 16,
    progress: Callable[[int, int, ArchiveReport], None] | None = None,
) -> ArchiveReport:
    """Archive the runs that finished before ``finished_before`` (at most ``limit``), a
    page at a time: the page's files written and checked (``concurrency`` at a time)
    and made durable, then its tombstones recorded and its events deleted in one
    transaction. ``progress(done, total, report)`` after each page.

    Resumable: a pass stopped anywhere (killed, the storage away) is finished by the
    next one. The first storage failure stops the pass (ArchiveError): the runs not
    archived yet are intact."""
    began = time.monotonic()
    report = ArchiveReport()
    total = await store.archives.count_archivable(finished_before)
    if limit is not None:
        total = min(total, limit)
    done = 0
    after: tuple[datetime, str] | None = None
    gate = asyncio.Semaphore(concurrency)

    async def write(
        row: RunRow, records: list[Recorded], lines: list[ArchivedLogLine]
    ) -> NewArchive | str:
        async with gate:
            return await write_archive(objects, row, records, lines)

    while limit is None or report.archived < limit:
        size = PAGE if limit is None else min(PAGE, limit - report.archived)
        rows = await store.archives.archivable(finished_before, after=after, limit=size)
        if not rows:
            break
        last = rows[-1]
        assert last.finished_at is not None  # archivable runs have finished
        after = (last.finished_at, last.run_id)
        ids = [r.run_id for r in rows]
        streams = await store.read_streams([run_stream(i) for i in ids])
        logs = await store.archives.task_logs(ids)
        tasks = [
            asyncio.create_task(write(r, streams[run_stream(r.run_id)], logs.get(r.run_id, [])))
            for r in rows
        ]
        try:
            written = await asyncio.gather(*tasks)
        except BaseException:  # the first failure stops the others, and the pass
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        await objects.sync()  # the files are durable before any event is deleted
        ready = [w for w in written if not isinstance(w, str)]
        for w in written:
            if isinstance(w, str):
                report.keep(w)
        for tomb in await store.archives.record(ready):
            if tomb is None:
                report.keep("changed while archived")
                continue
            report.archived += 1
            report.events += tomb.events
            report.log_lines += tomb.log_lines
            report.bytes += tomb.bytes
        done += len(rows)
        if progress is not None:
            progress(done, total, report)
    report.seconds = time.monotonic() - began
    return report


class ArchiveReader:
    """Reads archived runs back, each file checked against its tombstone (sha256 and
    count); keeps the last ``cache`` files read (an archived run's files never change)
    and one S3 client per bucket, open until :meth:`close`."""

    def __init__(self, environ: Mapping[str, str] | None = None, *, cache: int = 64) -> None:
        self._environ = environ
        self._size = cache
        self._cache: OrderedDict[tuple[str, str], list[Recorded] | list[ArchivedLogLine]] = (
            OrderedDict()
        )
        self._buckets: dict[str, ObjectStore] = {}
        self._opening = asyncio.Lock()

    async def __aenter__(self) -> ArchiveReader:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the S3 clients it opened."""
        buckets, self._buckets = self._buckets, {}
        for objects in buckets.values():
            await objects.__aexit__(None, None, None)

    async def _fetch(self, uri: str) -> bytes:
        if not uri.startswith("s3://"):
            return await read_object(uri, self._environ)
        bucket, key = split_s3_uri(uri)
        objects = self._buckets.get(bucket)
        if objects is None:
            async with self._opening:
                objects = self._buckets.get(bucket)
                if objects is None:
                    objects = await open_objects(f"s3://{bucket}", self._environ).__aenter__()
                    self._buckets[bucket] = objects
        return await objects.get(key)

    async def _read(self, uri: str, digest: str) -> bytes:
        data = await self._fetch(uri)
        if hashlib.sha256(data).hexdigest() != digest:
            raise ArchiveError(
                f"the archive file {uri} does not match its checksum: it was changed or damaged",
                hint="put the file back from a backup",
                retryable=False,
            )
        return data

    def _remember(
        self, key: tuple[str, str], value: list[Recorded] | list[ArchivedLogLine]
    ) -> None:
        self._cache[key] = value
        while len(self._cache) > self._size:
            self._cache.popitem(last=False)

    async def events(self, archive: ArchivedRun) -> list[Recorded]:
        """The run's events, as they were in the log (seqs, positions, commit times)."""
        key = (archive.uri, archive.sha256)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return list(cached)  # type: ignore[arg-type]
        records = decode_events(await self._read(archive.uri, archive.sha256), source=archive.uri)
        stream = run_stream(archive.run_id)
        if len(records) != archive.events or any(
            r.stream_id != stream or r.seq != n for n, r in enumerate(records, start=1)
        ):
            raise ArchiveError(
                f"the archive file {archive.uri} does not hold the {archive.events} events "
                f"of {stream}",
                retryable=False,
            )
        self._remember(key, records)
        return list(records)

    async def logs(self, archive: ArchivedRun) -> list[ArchivedLogLine]:
        """The run's task log lines, by id (none when it had none)."""
        if archive.logs_uri is None or archive.logs_sha256 is None:
            return []
        key = (archive.logs_uri, archive.logs_sha256)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return list(cached)  # type: ignore[arg-type]
        lines = decode_logs(
            await self._read(archive.logs_uri, archive.logs_sha256), source=archive.logs_uri
        )
        if len(lines) != archive.log_lines:
            raise ArchiveError(
                f"the archive file {archive.logs_uri} does not hold {archive.log_lines} lines",
                retryable=False,
            )
        self._remember(key, lines)
        return list(lines)


async def run_history(
    store: EventStore, run_id: str, reader: ArchiveReader
) -> tuple[list[Recorded], ArchivedRun | None]:
    """A run's events, from the log or from its archive, and its tombstone when it is
    archived (``[]``: no such run)."""
    stream = run_stream(run_id)
    records = await store.read_stream(stream)
    if records:
        return records, None
    archive = await store.archives.get(run_id)
    if archive is None:  # no such run; or restored since the read above
        return await store.read_stream(stream), None
    return await reader.events(archive), archive


async def run_logs(
    store: EventStore,
    run_id: str,
    reader: ArchiveReader,
    *,
    task: str | None = None,
    attempt: int | None = None,
    limit: int | None = None,
    after: int = 0,
    archive: ArchivedRun | None = None,
) -> list[LogLine]:
    """A run's stored log lines (as :meth:`TaskLogs.read`), from its archive when it is
    archived (``archive``: its tombstone, when known)."""
    if archive is None:
        archive = await store.archives.get(run_id)
    stored = await store.logs.read(run_id, task, attempt, limit, after)
    if archive is None:
        return stored
    lines = [
        x.log_line()
        for x in await reader.logs(archive)
        if x.id > after
        and (task is None or x.task == task)
        and (attempt is None or x.attempt == attempt)
    ]
    known = {x.id for x in lines}
    merged = sorted([*lines, *(x for x in stored if x.id not in known)], key=lambda x: x.id)
    return merged if limit is None else merged[:limit]


async def restore_run(store: EventStore, run_id: str, reader: ArchiveReader) -> ArchivedRun:
    """Bring an archived run's events and log lines back into PostgreSQL, as they were;
    returns the tombstone it was restored from."""
    archive = await store.archives.get(run_id)
    if archive is None:
        if await store.get_run(run_id) is None:
            raise StreamNotFound(run_stream(run_id), what=f"run {run_id!r}")
        raise DurableError(
            f"run {run_id} is not archived: its events are in PostgreSQL",
            hint=f"`durable history {run_id}` shows them",
        )
    records = await reader.events(archive)
    logs = await reader.logs(archive)
    if not await store.archives.restore(archive, records, logs):
        raise DurableError(
            f"run {run_id} was restored meanwhile, by another process",
            hint=f"`durable history {run_id}` shows its events",
        )
    return archive

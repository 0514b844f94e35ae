"""``/api/v1/runs``: listing runs, a run's detail, events (pages and a live server-sent
event stream), waiting for the end, and the operator's commands (cancel, pause, resume).
Task logs are in :mod:`durable.api.logs`, reruns in :mod:`durable.api.reruns`.

An archived run reads the same, from its archive (its ``archived`` field says where);
a command on it is refused (409)."""

from __future__ import annotations

import base64
import binascii
import time
from datetime import datetime
from typing import Any

import msgspec
from aiohttp import web

from durable.api import schemas as s
from durable.api.history import trigger_view
from durable.api.routing import V1, ApiError, Call, event_stream, resource, route
from durable.application.archive import ArchiveReader, run_history
from durable.application.commands import apply_command
from durable.core.decide import Cancel, Command, Pause, Resume
from durable.core.events import REGISTRY, Recorded, run_stream
from durable.core.fold import evolve, fold
from durable.core.history import ExportedEvent
from durable.core.runs_view import RunRow, row_from_state
from durable.core.state import RunState
from durable.store.base import EventStore, RunFilter
from durable.store.rows import ArchivedRun

__all__ = [
    "ROUTES",
    "archive_view",
    "exported",
    "load_run",
    "load_state",
    "run_detail",
    "run_id_of",
]

_COMMAND_ERRORS = (400, 404, 409)


async def load_run(
    store: EventStore, archives: ArchiveReader, run_id: str, at_seq: int | None = None
) -> tuple[RunState, ArchivedRun | None]:
    """The run's state folded from its log (or its archive), or from its events up to
    ``at_seq`` (404 when it has none), and its tombstone when it is archived."""
    records, archive = await run_history(store, run_id, archives)
    if at_seq is not None:
        records = [r for r in records if r.seq <= at_seq]
    state = fold(records)
    if state is None:
        raise ApiError(404, "no such run", f"run {run_id!r} does not exist")
    return state, archive


async def load_state(
    store: EventStore, run_id: str, at_seq: int | None = None, *, archives: ArchiveReader
) -> RunState:
    """The run's state folded from its log or archive (:func:`load_run`)."""
    return (await load_run(store, archives, run_id, at_seq))[0]


def archive_view(archive: ArchivedRun | None) -> s.ArchiveView | None:
    if archive is None:
        return None
    return s.ArchiveView(
        uri=archive.uri,
        archived_at=archive.archived_at,
        events=archive.events,
        logs_uri=archive.logs_uri,
    )


def run_id_of(call: Call[Any, Any]) -> str:
    """The run id of the path."""
    return call.path_id("run_id", "run")


def run_detail(state: RunState, archive: ArchivedRun | None = None) -> s.RunDetail:
    """A run as the API shows it: its row and every task's status, timing and output,
    and where it is archived, if it is."""
    tasks = []
    for t in state.tasks.values():
        took = (
            (t.finished_at - t.started_at).total_seconds()
            if t.started_at and t.finished_at
            else None
        )
        tasks.append(
            s.TaskView(
                name=t.name,
                status=t.status,
                upstream=list(t.upstream),
                generation=t.generation,
                attempt=t.attempt,
                executions=t.executions,
                scheduled_at=t.scheduled_at,
                started_at=t.started_at,
                finished_at=t.finished_at,
                duration_seconds=took,
                output=t.output,
                error=s.ErrorView(
                    type=t.error.type, message=t.error.message, retryable=t.error.retryable
                )
                if t.error
                else None,
                reason=t.reason,
                retry_at=t.retry_at,
                parent=t.parent,
                mapped=t.mapped,
            )
        )
    return s.RunDetail(
        **msgspec.structs.asdict(row_from_state(state)),
        generation=state.generation,
        reason=state.reason,
        reruns=list(state.reruns),
        tasks=tasks,
        trigger=trigger_view(state),
        archived=archive_view(archive),
    )


def exported(r: Recorded) -> ExportedEvent:
    """A recorded event in the export format."""
    tag, version, data = REGISTRY.encode(r.event)
    return ExportedEvent(
        stream_id=r.stream_id,
        seq=r.seq,
        position=r.position,
        recorded_at=r.recorded_at,
        type=tag,
        version=version,
        data=msgspec.Raw(data),
    )


def _encode_cursor(row: RunRow) -> str:
    raw = msgspec.json.encode([row.created_at, row.run_id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, run_id = msgspec.json.decode(raw, type=tuple[datetime, str])
    except (binascii.Error, ValueError, msgspec.DecodeError, msgspec.ValidationError):
        raise ApiError(
            400, "bad cursor", f"cursor {cursor!r} is not a next_cursor this API gave"
        ) from None
    return created_at, run_id


@route(
    "GET",
    f"{V1}/runs",
    summary="List runs, newest first, with filters and a cursor",
    scope="read",
    query=s.RunsQuery,
    responses={200: s.RunPage},
    errors=(400,),
)
async def list_runs(call: Call[None, s.RunsQuery]) -> s.RunPage:
    query = call.query
    before = _decode_cursor(query.cursor) if query.cursor else None
    rows = await call.deps.store.list_runs(
        RunFilter(
            workflow=query.workflow,
            status=query.status,
            since=query.since,
            until=query.until,
            trigger_kind=query.trigger,
            limit=query.limit + 1,
            before=before,
        )
    )
    page = rows[: query.limit]
    more = len(rows) > query.limit
    archived = await call.deps.store.archives.of([r.run_id for r in page])
    return s.RunPage(
        runs=[
            s.RunSummary(**msgspec.structs.asdict(r), archived=archive_view(archived.get(r.run_id)))
            for r in page
        ],
        next_cursor=_encode_cursor(page[-1]) if more else None,
    )


@route(
    "GET",
    f"{V1}/runs/{{run_id}}",
    summary="A run: status, trigger, and its tasks with attempts, durations and outputs "
    "(?at_seq=N: as it was after event N)",
    scope="read",
    query=s.RunQuery,
    responses={200: s.RunDetail},
    errors=(400, 404),
)
async def get_run(call: Call[None, s.RunQuery]) -> s.RunDetail:
    deps = call.deps
    return run_detail(
        *await load_run(deps.store, deps.archives, run_id_of(call), call.query.at_seq)
    )


@route(
    "GET",
    f"{V1}/runs/{{run_id}}/events",
    summary="A run's events, in pages",
    scope="read",
    query=s.EventsQuery,
    responses={200: s.EventPage},
    errors=(400, 404),
)
async def run_events(call: Call[None, s.EventsQuery]) -> s.EventPage:
    run_id, store, query = run_id_of(call), call.deps.store, call.query
    records = await store.read_stream(run_stream(run_id), query.after)
    if not records:
        row = await store.get_run(run_id)
        if row is None:
            raise ApiError(404, "no such run", f"run {run_id!r} does not exist")
        if row.last_seq > query.after:  # archived: its events are in its archive
            everything, _ = await run_history(store, run_id, call.deps.archives)
            records = [r for r in everything if r.seq > query.after]
    page = records[: query.limit]
    return s.EventPage(
        events=[exported(r) for r in page],
        next_after=page[-1].seq if page else query.after,
        more=len(records) > query.limit,
    )


@route(
    "GET",
    f"{V1}/runs/{{run_id}}/events/stream",
    summary="A run's events as server-sent events, live until the run ends "
    "(Last-Event-ID or ?after= resumes)",
    scope="read",
    query=s.EventsQuery,
    stream="text/event-stream",
    errors=(400, 404),
)
async def run_event_stream(call: Call[None, s.EventsQuery]) -> web.StreamResponse:
    run_id, store, request = run_id_of(call), call.deps.store, call.request
    stream = run_stream(run_id)
    records, _ = await run_history(store, run_id, call.deps.archives)  # archived: it has ended
    if not records:
        raise ApiError(404, "no such run", f"run {run_id!r} does not exist")
    after = call.query.after
    last_id = request.headers.get("Last-Event-ID", "")
    if last_id.isdigit():
        after = max(after, int(last_id))
    response = await event_stream(request)
    state: RunState | None = None
    encoder = msgspec.json.Encoder()
    while True:
        chunks = []
        for r in records:
            state = evolve(state, r)
            if r.seq > after:
                e = exported(r)
                chunks.append(
                    f"id: {r.seq}\nevent: {e.type}\ndata: ".encode() + encoder.encode(e) + b"\n\n"
                )
                after = r.seq
        if chunks:
            await response.write(b"".join(chunks))
        if state is not None and state.is_terminal:
            await response.write(f'event: end\ndata: {{"status": "{state.status}"}}\n\n'.encode())
            break
        position = await store.last_position()
        if not await store.wait_for_events(position, 15.0):
            await response.write(b": keep-alive\n\n")
        records = await store.read_stream(stream, state.last_seq if state else 0)
    await response.write_eof()
    return response


@route(
    "GET",
    f"{V1}/runs/{{run_id}}/wait",
    summary="Wait (long-poll) until the run ends or the timeout passes; returns the run",
    scope="read",
    query=s.WaitQuery,
    responses={200: s.RunDetail},
    errors=(400, 404),
)
async def wait_run(call: Call[None, s.WaitQuery]) -> s.RunDetail:
    run_id, store = run_id_of(call), call.deps.store
    # a duration, not a time of day: the monotonic clock, unaffected by clock changes
    deadline = time.monotonic() + call.query.timeout
    while True:
        position = await store.last_position()
        row = await store.get_run(run_id)
        if row is None:
            raise ApiError(404, "no such run", f"run {run_id!r} does not exist")
        left = deadline - time.monotonic()
        if row.status in ("succeeded", "failed", "cancelled") or left <= 0:
            return run_detail(*await load_run(store, call.deps.archives, run_id))
        await store.wait_for_events(position, min(left, 5.0))


async def _command(call: Call[Any, Any], command: Command) -> s.CommandResult:
    run_id = run_id_of(call)
    state, appended = await apply_command(call.deps.store, run_id, command)
    after = fold(appended, state) or state
    return s.CommandResult(run_id=run_id, status=after.status, applied=bool(appended))


@route(
    "POST",
    f"{V1}/runs/{{run_id}}/cancel",
    summary="Cancel a run: running tasks are stopped",
    scope="operate",
    body=s.CommandBody,
    optional_body=True,
    responses={200: s.CommandResult},
    errors=_COMMAND_ERRORS,
)
async def cancel_run(call: Call[s.CommandBody | None, None]) -> s.CommandResult:
    body = call.body
    reason = body.reason if body and body.reason else "cancelled through the API"
    return await _command(call, Cancel(reason=reason, by=call.by))


@route(
    "POST",
    f"{V1}/runs/{{run_id}}/pause",
    summary="Pause a run: no new task starts",
    scope="operate",
    body=s.CommandBody,
    optional_body=True,
    responses={200: s.CommandResult},
    errors=_COMMAND_ERRORS,
)
async def pause_run(call: Call[s.CommandBody | None, None]) -> s.CommandResult:
    body = call.body
    reason = body.reason if body and body.reason else ""
    return await _command(call, Pause(reason=reason, by=call.by))


@route(
    "POST",
    f"{V1}/runs/{{run_id}}/resume",
    summary="Resume a paused run",
    scope="operate",
    body=s.CommandBody,
    optional_body=True,
    responses={200: s.CommandResult},
    errors=_COMMAND_ERRORS,
)
async def resume_run(call: Call[s.CommandBody | None, None]) -> s.CommandResult:
    return await _command(call, Resume(by=call.by))


ROUTES = resource(
    "runs",
    list_runs,
    get_run,
    run_events,
    run_event_stream,
    wait_run,
    cancel_run,
    pause_run,
    resume_run,
)

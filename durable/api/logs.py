"""``/api/v1/runs/{run_id}/logs``: the task log lines of a run, in pages after an id, and
live as server-sent events until the run (or the task) ends."""

from __future__ import annotations

import contextlib
import time

import msgspec
from aiohttp import web

from durable.api import schemas as s
from durable.api.routing import V1, ApiError, Call, Header, Route, event_stream, resource, route
from durable.api.runs import load_run, run_id_of
from durable.application.archive import run_logs as stored_lines
from durable.application.logs import LogsEnded, follow_logs
from durable.core.state import RunState
from durable.store.rows import LogLine as StoredLine

__all__ = ["KEEP_ALIVE", "ROUTES"]

_MAX_ID = 2**63 - 1
KEEP_ALIVE = 15.0
"""Seconds of silence after which the stream sends a comment (proxies keep it open)."""

_LAST_EVENT_ID = Header(
    name="Last-Event-ID",
    description="Resume after this line id (the last `id:` received); wins over ?after= "
    "when further",
    pattern=r"^[0-9]{1,19}$",
)
_STREAM_EVENTS = (
    "`event: line`, one per log line: `id:` the line's id, data: a LogLine as JSON; "
    "then `event: end`, data: a LogStreamEnd as JSON ({status, task, task_status}), once "
    "the run (or the task asked for) has ended and every line stored before was sent"
)


def _check_task(state: RunState, task: str | None) -> None:
    if task is not None and task not in state.tasks:
        raise ApiError(
            404,
            "no such task",
            f"run {state.run_id} has no task {task!r}; tasks: {', '.join(state.tasks)}",
        )


def _line(r: StoredLine) -> s.LogLine:
    return s.LogLine(**msgspec.structs.asdict(r))


@route(
    "GET",
    f"{V1}/runs/{{run_id}}/logs",
    summary="The stored log lines of a run's tasks, in the order written; ?after= pages "
    "(and looks for new ones)",
    scope="read",
    query=s.LogsQuery,
    responses={200: s.LogPage},
    errors=(400, 404),
)
async def run_logs(call: Call[None, s.LogsQuery]) -> s.LogPage:
    query, store, archives = call.query, call.deps.store, call.deps.archives
    state, archive = await load_run(store, archives, run_id_of(call))
    _check_task(state, query.task)
    found = await stored_lines(
        store,
        state.run_id,
        archives,
        task=query.task,
        attempt=query.attempt,
        limit=query.limit + 1,
        after=query.after,
        archive=archive,
    )
    page = found[: query.limit]
    return s.LogPage(
        lines=[_line(r) for r in page],
        next_after=page[-1].id if page else query.after,
        more=len(found) > query.limit,
    )


@route(
    "GET",
    f"{V1}/runs/{{run_id}}/logs/stream",
    summary="A run's log lines as server-sent events, live until the run (or the task) "
    "ends (Last-Event-ID or ?after= resumes)",
    scope="read",
    query=s.LogStreamQuery,
    stream="text/event-stream",
    sse=_STREAM_EVENTS,
    headers=(_LAST_EVENT_ID,),
    errors=(400, 404),
)
async def run_log_stream(call: Call[None, s.LogStreamQuery]) -> web.StreamResponse:
    query, store, request = call.query, call.deps.store, call.request
    state, _ = await load_run(store, call.deps.archives, run_id_of(call))
    _check_task(state, query.task)
    after = query.after
    last_id = request.headers.get("Last-Event-ID", "").strip()
    if last_id:
        if not last_id.isdigit() or int(last_id) > _MAX_ID:
            raise ApiError(
                400, "bad Last-Event-ID", f"Last-Event-ID {last_id[:40]!r} is not a line id"
            )
        after = max(after, int(last_id))
    response = await event_stream(request)
    encoder = msgspec.json.Encoder()
    quiet_since = time.monotonic()
    following = follow_logs(
        store,
        state.run_id,
        task=query.task,
        attempt=query.attempt,
        after=after,
        archives=call.deps.archives,
    )
    with contextlib.suppress(ConnectionResetError):  # the client left mid-write
        async with contextlib.aclosing(following):
            async for found in following:
                if request.transport is None:
                    return response  # the client has gone: stop reading for it
                if isinstance(found, LogsEnded):
                    end = s.LogStreamEnd(
                        status=found.status, task=found.task, task_status=found.task_status
                    )
                    await response.write(b"event: end\ndata: " + encoder.encode(end) + b"\n\n")
                    break
                if found:
                    await response.write(b"".join(_event(encoder, r) for r in found))
                    quiet_since = time.monotonic()
                elif time.monotonic() - quiet_since >= KEEP_ALIVE:
                    await response.write(b": keep-alive\n\n")
                    quiet_since = time.monotonic()
        await response.write_eof()
    return response


def _event(encoder: msgspec.json.Encoder, r: StoredLine) -> bytes:
    return f"id: {r.id}\nevent: line\ndata: ".encode() + encoder.encode(_line(r)) + b"\n\n"


ROUTES: tuple[Route, ...] = resource("runs", run_logs, run_log_stream)

"""The ``/api/v1`` endpoints: one table of routes, from which the app and
``proto/openapi.yaml`` are both made.

Each handler gets its request body and query string already validated into msgspec
structs (a wrong type, an unknown field or a bad value is a 400 naming the field) and
returns a struct (JSON) or a response. Everything a handler changes goes through the
same functions as the CLI: ``start_run``, ``apply_command``, ``request_backfill``...
"""

from __future__ import annotations

import base64
import binascii
import re
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import msgspec
from aiohttp import web

from durable.api import schemas as s
from durable.api.auth import TokenInfo, create_token, list_tokens, revoke_token
from durable.application.backfills import (
    backfill_progress,
    cancel_backfill,
    list_backfills,
    load_backfill,
    plan_backfill,
    request_backfill,
    set_backfill_paused,
)
from durable.application.commands import apply_command
from durable.application.ids import new_run_id
from durable.application.runs import start_run
from durable.application.schedules import schedule_status, set_schedule_paused
from durable.core.backfill import BackfillState
from durable.core.decide import Cancel, Command, Pause, Rerun, Resume, decide_command
from durable.core.errors import DurableError, StreamNotFound
from durable.core.events import REGISTRY, Recorded, RerunQueued, RerunRequested, Trigger, run_stream
from durable.core.fold import evolve, fold
from durable.core.history import ExportedEvent
from durable.core.runs_view import RunRow, row_from_state
from durable.core.schedule import next_fire
from durable.core.spec import DefinitionError, WorkflowSpec, coerce_params
from durable.core.state import RunState, rerun_plan
from durable.store.base import RunFilter
from durable.store.postgres import PostgresEventStore
from durable.workflows.loader import WorkflowRegistry

__all__ = ["ID_PATTERN", "ROUTES", "TOKEN", "Api", "ApiError", "Route"]

TOKEN = web.RequestKey("token", TokenInfo)
"""The authenticated token of a request."""

ID_PATTERN = r"^[A-Za-z0-9_.:@-]{1,200}$"
_ID = re.compile(ID_PATTERN)


class ApiError(Exception):
    """An error answered as problem+json."""

    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail


class Route(msgspec.Struct, frozen=True, kw_only=True):
    method: str
    path: str
    handler: str
    """The name of the :class:`Api` method."""
    summary: str
    scope: str | None
    """The token scope needed; None: no token (health)."""
    body: Any = None
    query: Any = None
    response: Any = None
    status: int = 200
    errors: tuple[int, ...] = ()
    stream: str | None = None
    """Content type of a non-JSON response (server-sent events, metrics text)."""
    tag: str = "runs"
    optional_body: bool = False


def _route(
    method: str, path: str, handler: str, summary: str, scope: str | None, **kw: Any
) -> Route:
    return Route(method=method, path=path, handler=handler, summary=summary, scope=scope, **kw)


V1 = "/api/v1"
ROUTES: tuple[Route, ...] = (
    # workflows
    _route(
        "GET",
        f"{V1}/workflows",
        "list_workflows",
        "List the loaded workflows",
        "read",
        response=s.WorkflowList,
        tag="workflows",
    ),
    _route(
        "GET",
        f"{V1}/workflows/{{workflow}}",
        "get_workflow",
        "A workflow's definition, graph (nodes and edges) and versions",
        "read",
        response=s.WorkflowDetail,
        errors=(404,),
        tag="workflows",
    ),
    _route(
        "POST",
        f"{V1}/workflows/{{workflow}}/runs",
        "trigger",
        "Start a run (durable before the answer); Idempotency-Key makes retries safe",
        "trigger",
        body=s.TriggerBody,
        response=s.TriggerResult,
        status=202,
        errors=(400, 404, 409, 413),
        tag="workflows",
    ),
    # runs
    _route(
        "GET",
        f"{V1}/runs",
        "list_runs",
        "List runs, newest first, with filters and a cursor",
        "read",
        query=s.RunsQuery,
        response=s.RunPage,
        errors=(400,),
    ),
    _route(
        "GET",
        f"{V1}/runs/{{run_id}}",
        "get_run",
        "A run: status, and its tasks with attempts, durations and outputs",
        "read",
        response=s.RunDetail,
        errors=(404,),
    ),
    _route(
        "GET",
        f"{V1}/runs/{{run_id}}/events",
        "run_events",
        "A run's events, in pages",
        "read",
        query=s.EventsQuery,
        response=s.EventPage,
        errors=(400, 404),
    ),
    _route(
        "GET",
        f"{V1}/runs/{{run_id}}/events/stream",
        "run_event_stream",
        "A run's events as server-sent events, live until the run ends "
        "(Last-Event-ID or ?after= resumes)",
        "read",
        query=s.EventsQuery,
        stream="text/event-stream",
        errors=(400, 404),
    ),
    _route(
        "GET",
        f"{V1}/runs/{{run_id}}/logs",
        "run_logs",
        "The stored log lines of a run's tasks",
        "read",
        query=s.LogsQuery,
        response=s.LogPage,
        errors=(400, 404),
    ),
    _route(
        "GET",
        f"{V1}/runs/{{run_id}}/wait",
        "wait_run",
        "Wait (long-poll) until the run ends or the timeout passes; returns the run",
        "read",
        query=s.WaitQuery,
        response=s.RunDetail,
        errors=(400, 404),
    ),
    _route(
        "POST",
        f"{V1}/runs/{{run_id}}/cancel",
        "cancel_run",
        "Cancel a run: running tasks are stopped",
        "operate",
        body=s.CommandBody,
        optional_body=True,
        response=s.CommandResult,
        errors=(400, 404, 409),
    ),
    _route(
        "POST",
        f"{V1}/runs/{{run_id}}/pause",
        "pause_run",
        "Pause a run: no new task starts",
        "operate",
        body=s.CommandBody,
        optional_body=True,
        response=s.CommandResult,
        errors=(400, 404, 409),
    ),
    _route(
        "POST",
        f"{V1}/runs/{{run_id}}/resume",
        "resume_run",
        "Resume a paused run",
        "operate",
        body=s.CommandBody,
        optional_body=True,
        response=s.CommandResult,
        errors=(400, 404, 409),
    ),
    _route(
        "POST",
        f"{V1}/runs/{{run_id}}/rerun",
        "rerun_run",
        "Rerun tasks of a finished run as a new generation (dry_run: only the plan)",
        "operate",
        body=s.RerunBody,
        response=s.RerunResult,
        errors=(400, 404, 409),
    ),
    # backfills
    _route(
        "GET",
        f"{V1}/backfills",
        "list_backfills",
        "Backfills with their progress",
        "read",
        response=s.BackfillList,
        tag="backfills",
    ),
    _route(
        "POST",
        f"{V1}/backfills",
        "create_backfill",
        "Run a workflow once per schedule interval in [start, end) (dry_run: the plan)",
        "operate",
        body=s.BackfillCreate,
        response=s.BackfillView,
        status=202,
        errors=(400, 404),
        tag="backfills",
    ),
    _route(
        "GET",
        f"{V1}/backfills/{{backfill_id}}",
        "get_backfill",
        "A backfill's progress",
        "read",
        response=s.BackfillView,
        errors=(404,),
        tag="backfills",
    ),
    _route(
        "POST",
        f"{V1}/backfills/{{backfill_id}}/pause",
        "pause_backfill",
        "No new run of the backfill starts",
        "operate",
        response=s.BackfillView,
        errors=(404, 409),
        tag="backfills",
    ),
    _route(
        "POST",
        f"{V1}/backfills/{{backfill_id}}/resume",
        "resume_backfill",
        "Continue a paused backfill",
        "operate",
        response=s.BackfillView,
        errors=(404, 409),
        tag="backfills",
    ),
    _route(
        "POST",
        f"{V1}/backfills/{{backfill_id}}/cancel",
        "cancel_backfill",
        "Cancel the backfill and its unfinished runs",
        "operate",
        response=s.BackfillView,
        errors=(404,),
        tag="backfills",
    ),
    # schedules
    _route(
        "GET",
        f"{V1}/schedules",
        "list_schedules",
        "Schedules and their next fire times",
        "read",
        response=s.ScheduleList,
        tag="schedules",
    ),
    _route(
        "GET",
        f"{V1}/schedules/{{workflow}}",
        "get_schedule",
        "One workflow's schedule",
        "read",
        response=s.ScheduleView,
        errors=(404,),
        tag="schedules",
    ),
    _route(
        "POST",
        f"{V1}/schedules/{{workflow}}/pause",
        "pause_schedule",
        "Stop a schedule from creating runs",
        "operate",
        body=s.CommandBody,
        optional_body=True,
        response=s.ScheduleView,
        errors=(400, 404),
        tag="schedules",
    ),
    _route(
        "POST",
        f"{V1}/schedules/{{workflow}}/resume",
        "resume_schedule",
        "Let a paused schedule create runs again",
        "operate",
        response=s.ScheduleView,
        errors=(404,),
        tag="schedules",
    ),
    # tokens
    _route(
        "GET",
        f"{V1}/tokens",
        "list_tokens",
        "API tokens (never their secrets)",
        "admin",
        response=s.TokenList,
        tag="tokens",
    ),
    _route(
        "POST",
        f"{V1}/tokens",
        "create_token",
        "Create a token; its secret is shown once",
        "admin",
        body=s.TokenCreate,
        response=s.TokenCreated,
        status=201,
        errors=(400,),
        tag="tokens",
    ),
    _route(
        "DELETE",
        f"{V1}/tokens/{{token_id}}",
        "revoke_token",
        "Revoke a token: it stops working at once",
        "admin",
        response=s.TokenView,
        errors=(404,),
        tag="tokens",
    ),
    # operations
    _route(
        "GET",
        "/metrics",
        "metrics",
        "Prometheus metrics (text exposition format)",
        "read",
        stream="text/plain; version=0.0.4",
        tag="operations",
    ),
    _route(
        "GET",
        "/healthz",
        "healthz",
        "Liveness: the process answers",
        None,
        response=s.Health,
        tag="operations",
    ),
    _route(
        "GET",
        "/readyz",
        "readyz",
        "Readiness: the database answers",
        None,
        response=s.Health,
        errors=(503,),
        tag="operations",
    ),
)


def _path_id(request: web.Request, name: str, what: str) -> str:
    value = request.match_info[name]
    if not _ID.match(value):
        raise ApiError(404, f"no such {what}", f"{what} {value!r} does not exist")
    return value


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


def graph_of(spec: WorkflowSpec) -> s.Graph:
    return s.Graph(
        nodes=[s.GraphNode(id=t.name, kind=t.kind) for t in spec.tasks],
        edges=[s.GraphEdge(source=u, target=t.name) for t in spec.tasks for u in t.upstream],
    )


def triggers_of(spec: WorkflowSpec) -> list[str]:
    found = {
        "schedule": spec.schedule is not None,
        "kafka": bool(spec.kafka),
        "s3": bool(spec.s3),
        "webhook": spec.webhook is not None,
        "assets": bool(spec.on_assets),
    }
    return [name for name, present in found.items() if present]


def summary_of(state: RunState) -> dict[str, Any]:
    return msgspec.structs.asdict(row_from_state(state))


def run_detail(state: RunState) -> s.RunDetail:
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
        **summary_of(state),
        generation=state.generation,
        reason=state.reason,
        reruns=list(state.reruns),
        tasks=tasks,
    )


def exported(r: Recorded) -> ExportedEvent:
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


def _backfill_view(state: BackfillState, runs: dict[str, int]) -> s.BackfillView:
    r = state.request
    return s.BackfillView(
        backfill_id=r.backfill_id,
        workflow=r.workflow,
        start=r.start,
        end=r.end,
        status=state.status,
        intervals=r.intervals,
        max_parallel=r.max_parallel,
        reprocess=r.reprocess,
        runs=dict(runs),
    )


class Api:
    """The handlers; dependencies are passed in, nothing is global."""

    def __init__(
        self,
        store: PostgresEventStore,
        registry: WorkflowRegistry,
        metrics_text: Callable[[], Awaitable[str]] | None = None,
    ) -> None:
        self.store = store
        self.registry = registry
        self._metrics_text = metrics_text

    # -- helpers -------------------------------------------------------------------------

    def _workflow(self, request: web.Request, name: str = "workflow") -> WorkflowSpec:
        value = request.match_info[name]
        try:
            return self.registry.get(value).spec
        except DefinitionError:
            raise ApiError(
                404,
                "no such workflow",
                f"workflow {value!r} is not loaded; GET /api/v1/workflows lists them",
            ) from None

    async def _state(self, run_id: str) -> RunState:
        state = fold(await self.store.read_stream(run_stream(run_id)))
        if state is None:
            raise ApiError(404, "no such run", f"run {run_id!r} does not exist")
        return state

    def _run_id(self, request: web.Request) -> str:
        return _path_id(request, "run_id", "run")

    # -- health and metrics --------------------------------------------------------------

    async def healthz(self, request: web.Request, body: Any, query: Any) -> Any:
        return s.Health(status="ok")

    async def readyz(self, request: web.Request, body: Any, query: Any) -> Any:
        try:
            await self.store.last_position()
        except Exception as exc:  # any failure to reach the database means "not ready"
            raise ApiError(503, "database unreachable", str(exc)) from exc
        return s.Health(status="ready")

    async def metrics(self, request: web.Request, body: Any, query: Any) -> Any:
        assert self._metrics_text is not None
        return web.Response(
            text=await self._metrics_text(), content_type="text/plain", charset="utf-8"
        )

    # -- workflows -----------------------------------------------------------------------

    async def list_workflows(self, request: web.Request, body: Any, query: Any) -> Any:
        return s.WorkflowList(
            workflows=[
                s.WorkflowSummary(
                    name=w.spec.name,
                    version=w.spec.version,
                    description=w.spec.description,
                    params={k: msgspec.to_builtins(p) for k, p in w.spec.params.items()},
                    tasks=len(w.spec.tasks),
                    triggers=triggers_of(w.spec),
                )
                for w in self.registry
            ]
        )

    async def get_workflow(self, request: web.Request, body: Any, query: Any) -> Any:
        spec = self._workflow(request)
        async with self.store.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT v.version, v.first_seen, v.source, "
                "(SELECT count(*) FROM durable.runs r WHERE r.workflow = v.workflow "
                " AND r.version = v.version) AS runs "
                "FROM durable.workflow_versions v WHERE v.workflow = $1 ORDER BY v.first_seen",
                spec.name,
            )
        return s.WorkflowDetail(
            name=spec.name,
            version=spec.version,
            definition=spec.to_dict(),
            graph=graph_of(spec),
            versions=[
                s.VersionView(
                    version=r["version"],
                    first_seen=r["first_seen"],
                    source=r["source"],
                    runs=r["runs"],
                )
                for r in rows
            ],
        )

    async def trigger(self, request: web.Request, body: s.TriggerBody, query: Any) -> Any:
        spec = self._workflow(request)
        key = request.headers.get("Idempotency-Key")
        if key is not None and not _ID.match(key):
            raise ApiError(
                400,
                "bad Idempotency-Key",
                "use 1-200 letters, digits and _ . : @ - (a UUID is fine)",
            )
        token: TokenInfo | None = request.get(TOKEN)
        try:
            values = coerce_params(spec.params, body.params, where="params")
        except DefinitionError as exc:
            raise ApiError(400, "bad params", str(exc)) from None
        run_id, created = await start_run(
            self.store,
            spec,
            values,
            idempotency_key=f"http:{spec.name}:{key}" if key else None,
            trigger=Trigger(
                kind="api",
                source=f"token:{token.name}" if token else request.remote,
                logical_time=body.logical_date,
                traceparent=request.headers.get("traceparent"),
            ),
        )
        if not created:
            row = await self.store.get_run(run_id)
            assert row is not None
            same = _canonical(row.params) == _canonical(values) and (
                row.logical_time == body.logical_date
            )
            if not same:
                raise ApiError(
                    409,
                    "idempotency key reused",
                    f"Idempotency-Key {key!r} already started run {run_id} with other params "
                    f"or logical_date; use a new key for a different request",
                )
        return web.Response(
            body=msgspec.json.encode(s.TriggerResult(run_id=run_id, created=created)),
            status=202 if created else 200,
            content_type="application/json",
            headers={"Location": f"{V1}/runs/{run_id}"},
        )

    # -- runs ----------------------------------------------------------------------------

    async def list_runs(self, request: web.Request, body: Any, query: s.RunsQuery) -> Any:
        before = _decode_cursor(query.cursor) if query.cursor else None
        rows = await self.store.list_runs(
            RunFilter(
                workflow=query.workflow,
                status=query.status,
                since=query.since,
                trigger_kind=query.trigger,
                limit=query.limit + 1,
                before=before,
            )
        )
        page = rows[: query.limit]
        more = len(rows) > query.limit
        return s.RunPage(
            runs=page,
            next_cursor=_encode_cursor(page[-1]) if more else None,
        )

    async def get_run(self, request: web.Request, body: Any, query: Any) -> Any:
        return run_detail(await self._state(self._run_id(request)))

    async def run_events(self, request: web.Request, body: Any, query: s.EventsQuery) -> Any:
        run_id = self._run_id(request)
        records = await self.store.read_stream(run_stream(run_id), query.after)
        if not records and not await self.store.get_run(run_id):
            raise ApiError(404, "no such run", f"run {run_id!r} does not exist")
        page = records[: query.limit]
        return s.EventPage(
            events=[exported(r) for r in page],
            next_after=page[-1].seq if page else query.after,
            more=len(records) > query.limit,
        )

    async def run_event_stream(self, request: web.Request, body: Any, query: s.EventsQuery) -> Any:
        run_id = self._run_id(request)
        stream = run_stream(run_id)
        records = await self.store.read_stream(stream)
        if not records:
            raise ApiError(404, "no such run", f"run {run_id!r} does not exist")
        after = query.after
        last_id = request.headers.get("Last-Event-ID", "")
        if last_id.isdigit():
            after = max(after, int(last_id))
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        state: RunState | None = None
        encoder = msgspec.json.Encoder()
        while True:
            chunks = []
            for r in records:
                state = evolve(state, r)
                if r.seq > after:
                    e = exported(r)
                    chunks.append(
                        f"id: {r.seq}\nevent: {e.type}\ndata: ".encode()
                        + encoder.encode(e)
                        + b"\n\n"
                    )
                    after = r.seq
            if chunks:
                await response.write(b"".join(chunks))
            if state is not None and state.is_terminal:
                await response.write(
                    f'event: end\ndata: {{"status": "{state.status}"}}\n\n'.encode()
                )
                break
            position = await self.store.last_position()
            if not await self.store.wait_for_events(position, 15.0):
                await response.write(b": keep-alive\n\n")
            records = await self.store.read_stream(stream, state.last_seq if state else 0)
        await response.write_eof()
        return response

    async def run_logs(self, request: web.Request, body: Any, query: s.LogsQuery) -> Any:
        state = await self._state(self._run_id(request))
        if query.task is not None and query.task not in state.tasks:
            raise ApiError(
                404,
                "no such task",
                f"run {state.run_id} has no task {query.task!r}; tasks: {', '.join(state.tasks)}",
            )
        rows = await self.store.task_logs(state.run_id, query.task, query.attempt, query.limit)
        return s.LogPage(lines=[s.LogLine(**dict(r)) for r in rows])

    async def wait_run(self, request: web.Request, body: Any, query: s.WaitQuery) -> Any:
        run_id = self._run_id(request)
        deadline = time.monotonic() + query.timeout
        while True:
            position = await self.store.last_position()
            row = await self.store.get_run(run_id)
            if row is None:
                raise ApiError(404, "no such run", f"run {run_id!r} does not exist")
            left = deadline - time.monotonic()
            if row.status in ("succeeded", "failed", "cancelled") or left <= 0:
                return run_detail(await self._state(run_id))
            await self.store.wait_for_events(position, min(left, 5.0))

    async def _command(self, request: web.Request, command: Command) -> Any:
        run_id = self._run_id(request)
        state, appended = await apply_command(self.store, run_id, command)
        after = fold(appended, state) or state
        status = after.status
        return s.CommandResult(run_id=run_id, status=status, applied=bool(appended))

    async def cancel_run(self, request: web.Request, body: s.CommandBody | None, query: Any) -> Any:
        reason = body.reason if body and body.reason else "cancelled through the API"
        return await self._command(request, Cancel(reason=reason, by=_by(request)))

    async def pause_run(self, request: web.Request, body: s.CommandBody | None, query: Any) -> Any:
        reason = body.reason if body and body.reason else ""
        return await self._command(request, Pause(reason=reason, by=_by(request)))

    async def resume_run(self, request: web.Request, body: s.CommandBody | None, query: Any) -> Any:
        return await self._command(request, Resume(by=_by(request)))

    async def rerun_run(self, request: web.Request, body: s.RerunBody, query: Any) -> Any:
        run_id = self._run_id(request)
        request_id = body.request_id or request.headers.get("Idempotency-Key")
        if request_id is not None and not _ID.match(request_id):
            raise ApiError(400, "bad request_id", "use 1-200 letters, digits and _ . : @ -")
        command = Rerun(
            request_id=request_id or f"rerun-{new_run_id()}",
            tasks=tuple(body.tasks),
            downstream=body.downstream,
            failed_only=body.failed_only,
            by=_by(request),
            queue=body.queue,
        )
        state = await self._state(run_id)
        if body.dry_run:
            decide_command(state, command)  # refuses what the real rerun would refuse
            chosen, kept = rerun_plan(
                state, command.tasks, downstream=body.downstream, failed_only=body.failed_only
            )
            return s.RerunResult(
                run_id=run_id,
                request_id=command.request_id,
                generation=state.generation + 1,
                rerun=chosen,
                reused=kept,
                applied=False,
            )
        before, appended = await apply_command(self.store, run_id, command)
        if appended:
            chosen, kept = rerun_plan(
                before, command.tasks, downstream=body.downstream, failed_only=body.failed_only
            )
            return s.RerunResult(
                run_id=run_id,
                request_id=command.request_id,
                generation=before.generation + 1,
                rerun=chosen,
                reused=kept,
                applied=True,
                queued=isinstance(appended[-1].event, RerunQueued),
            )
        # already applied: answer with what that request did
        return await self._earlier_rerun(run_id, command.request_id)

    async def _earlier_rerun(self, run_id: str, request_id: str) -> s.RerunResult:
        """What an already known rerun request did (or, if still queued, will do)."""
        state: RunState | None = None
        queued: RerunQueued | None = None
        for r in await self.store.read_stream(run_stream(run_id)):
            event = r.event
            if isinstance(event, RerunQueued) and event.request_id == request_id:
                queued = event
            if (
                isinstance(event, RerunRequested)
                and event.request_id == request_id
                and state is not None
            ):
                return self._rerun_result(state, event, applied=False)
            state = evolve(state, r)
        if queued is not None and state is not None:
            return self._rerun_result(state, queued, applied=False, queued=True)
        raise StreamNotFound(run_stream(run_id), what=f"rerun {request_id!r} of run {run_id}")

    @staticmethod
    def _rerun_result(
        state: RunState,
        event: RerunRequested | RerunQueued,
        *,
        applied: bool,
        queued: bool = False,
    ) -> s.RerunResult:
        chosen, kept = rerun_plan(
            state, event.tasks, downstream=event.downstream, failed_only=event.failed_only
        )
        return s.RerunResult(
            run_id=state.run_id,
            request_id=event.request_id,
            generation=state.generation + 1,
            rerun=chosen,
            reused=kept,
            applied=applied,
            queued=queued,
        )

    # -- backfills -----------------------------------------------------------------------

    async def list_backfills(self, request: web.Request, body: Any, query: Any) -> Any:
        rows = await list_backfills(self.store)
        return s.BackfillList(backfills=[_backfill_view(st, runs) for st, runs in rows])

    async def _backfill(self, request: web.Request) -> BackfillState:
        backfill_id = _path_id(request, "backfill_id", "backfill")
        try:
            return await load_backfill(self.store, backfill_id)
        except DurableError:
            raise ApiError(
                404, "no such backfill", f"backfill {backfill_id!r} does not exist"
            ) from None

    async def _backfill_view(self, backfill_id: str) -> s.BackfillView:
        state = await load_backfill(self.store, backfill_id)
        return _backfill_view(state, await backfill_progress(self.store, state))

    async def create_backfill(
        self, request: web.Request, body: s.BackfillCreate, query: Any
    ) -> Any:
        try:
            spec = self.registry.get(body.workflow).spec
        except DefinitionError:
            raise ApiError(
                404,
                "no such workflow",
                f"workflow {body.workflow!r} (field workflow) is not loaded",
            ) from None
        start, end = _aware(body.start, "start"), _aware(body.end, "end")
        if body.dry_run:
            plan = await plan_backfill(self.store, spec, start, end, body.reprocess)
            return web.json_response(
                msgspec.to_builtins(
                    s.BackfillView(
                        backfill_id=None,
                        workflow=spec.name,
                        start=start,
                        end=end,
                        status="planned",
                        intervals=len(plan.intervals),
                        max_parallel=body.max_parallel,
                        reprocess=body.reprocess,
                        runs={},
                        plan=[
                            s.IntervalView(start=t.start, end=t.end, action=a)
                            for t, a in zip(plan.intervals, plan.actions, strict=True)
                        ],
                    )
                ),
                status=200,
            )
        backfill_id, _ = await request_backfill(
            self.store,
            spec,
            start,
            end,
            max_parallel=body.max_parallel,
            reprocess=body.reprocess,
            by=_by(request),
        )
        return await self._backfill_view(backfill_id)

    async def get_backfill(self, request: web.Request, body: Any, query: Any) -> Any:
        state = await self._backfill(request)
        return _backfill_view(state, await backfill_progress(self.store, state))

    async def pause_backfill(self, request: web.Request, body: Any, query: Any) -> Any:
        state = await self._backfill(request)
        await set_backfill_paused(self.store, state.request.backfill_id, True, _by(request))
        return await self._backfill_view(state.request.backfill_id)

    async def resume_backfill(self, request: web.Request, body: Any, query: Any) -> Any:
        state = await self._backfill(request)
        await set_backfill_paused(self.store, state.request.backfill_id, False, _by(request))
        return await self._backfill_view(state.request.backfill_id)

    async def cancel_backfill(self, request: web.Request, body: Any, query: Any) -> Any:
        state = await self._backfill(request)
        await cancel_backfill(self.store, state.request.backfill_id, _by(request))
        return await self._backfill_view(state.request.backfill_id)

    # -- schedules -----------------------------------------------------------------------

    async def _schedule_view(self, spec: WorkflowSpec) -> s.ScheduleView:
        sched = spec.schedule
        assert sched is not None
        status = await schedule_status(self.store, spec)
        now = datetime.now(UTC)
        return s.ScheduleView(
            workflow=spec.name,
            cron=sched.cron,
            every_seconds=sched.every,
            timezone=sched.timezone,
            catchup=sched.catchup,
            paused=status["paused"],
            last_logical_time=status["last_logical_time"],
            next_fire=next_fire(sched, max(now, status["last_end"] or now)),
        )

    def _scheduled(self, request: web.Request) -> WorkflowSpec:
        spec = self._workflow(request)
        if spec.schedule is None:
            raise ApiError(404, "no schedule", f"workflow {spec.name!r} has no schedule")
        return spec

    async def list_schedules(self, request: web.Request, body: Any, query: Any) -> Any:
        specs = [w.spec for w in self.registry if w.spec.schedule is not None]
        return s.ScheduleList(schedules=[await self._schedule_view(spec) for spec in specs])

    async def get_schedule(self, request: web.Request, body: Any, query: Any) -> Any:
        return await self._schedule_view(self._scheduled(request))

    async def pause_schedule(
        self, request: web.Request, body: s.CommandBody | None, query: Any
    ) -> Any:
        spec = self._scheduled(request)
        reason = body.reason if body and body.reason else ""
        await set_schedule_paused(self.store, spec.name, True, reason=reason, by=_by(request))
        return await self._schedule_view(spec)

    async def resume_schedule(self, request: web.Request, body: Any, query: Any) -> Any:
        spec = self._scheduled(request)
        await set_schedule_paused(self.store, spec.name, False, by=_by(request))
        return await self._schedule_view(spec)

    # -- tokens --------------------------------------------------------------------------

    async def list_tokens(self, request: web.Request, body: Any, query: Any) -> Any:
        tokens = await list_tokens(self.store.pool, include_revoked=True)
        return s.TokenList(tokens=[s.TokenView(**msgspec.structs.asdict(t)) for t in tokens])

    async def create_token(self, request: web.Request, body: s.TokenCreate, query: Any) -> Any:
        info, token = await create_token(self.store.pool, body.name, body.scopes, by=_by(request))
        created = s.TokenCreated(**msgspec.structs.asdict(info), token=token)
        return web.Response(
            body=msgspec.json.encode(created), status=201, content_type="application/json"
        )

    async def revoke_token(self, request: web.Request, body: Any, query: Any) -> Any:
        token_id = _path_id(request, "token_id", "token")
        try:
            info = await revoke_token(self.store.pool, token_id)
        except DurableError as exc:
            raise ApiError(404, "no such token", str(exc)) from None
        return s.TokenView(**msgspec.structs.asdict(info))


def _by(request: web.Request) -> str | None:
    token: TokenInfo | None = request.get(TOKEN)
    return f"token:{token.name}" if token else None


def _canonical(params: dict[str, Any]) -> bytes:
    return msgspec.json.encode(msgspec.json.decode(msgspec.json.encode(params)), order="sorted")


def _aware(value: datetime, field: str) -> datetime:
    if value.tzinfo is None:
        raise ApiError(
            400,
            "bad time",
            f"field {field} ({value.isoformat()}) needs a time zone, e.g. Z or +01:00",
        )
    return value

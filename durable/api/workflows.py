"""``/api/v1/workflows``: the loaded workflows with how their runs went lately, their
graphs, grids of recent runs, source and versions, and starting a run (durable before
the answer; ``Idempotency-Key`` makes retries safe)."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec

from durable.api import schemas as s
from durable.api.idempotency import start_http_run
from durable.api.routing import (
    IDEMPOTENCY_KEY,
    V1,
    Answer,
    ApiError,
    Call,
    Deps,
    resource,
    route,
    valid_id,
)
from durable.api.schedules import schedule_view
from durable.core.events import Trigger, run_stream
from durable.core.fold import fold
from durable.core.spec import WorkflowSpec
from durable.core.state import RunStatus
from durable.core.tasks import MapTask, SwitchTask, TaskSpec
from durable.store.base import EventStore, RunFilter

__all__ = ["ROUTES", "graph_of", "triggers_of", "workflow_versions"]

RECENT = 10
"""Runs whose statuses a workflow's summary lists."""
RATE_OVER = 20
"""Finished runs a workflow's success rate is computed over."""
_ENDED: tuple[RunStatus, ...] = ("succeeded", "failed", "cancelled")


def _branches(t: TaskSpec) -> list[list[str]]:
    if not isinstance(t, SwitchTask):
        return []
    return [*t.cases.values(), t.default if isinstance(t.default, list) else []]


def graph_of(spec: WorkflowSpec) -> s.Graph:
    """The workflow's DAG as nodes and edges; a switch's branches and a map's list are on
    their nodes, and each branch's task names its switch as its group."""
    group = {target: t.name for t in spec.tasks for b in _branches(t) for target in b}
    return s.Graph(
        nodes=[
            s.GraphNode(
                id=t.name,
                kind=t.kind,
                trigger_rule=t.trigger_rule,
                group=group.get(t.name),
                branches=dict(t.cases) if isinstance(t, SwitchTask) else None,
                default_branch=t.default
                if isinstance(t, SwitchTask) and isinstance(t.default, list)
                else None,
                over=t.over if isinstance(t, MapTask) else None,
            )
            for t in spec.tasks
        ],
        edges=[s.GraphEdge(source=u, target=t.name) for t in spec.tasks for u in t.upstream],
    )


def _params(spec: WorkflowSpec) -> dict[str, Any]:
    return {k: msgspec.to_builtins(p) for k, p in spec.params.items()}


def triggers_of(spec: WorkflowSpec) -> list[str]:
    """What starts the workflow's runs besides the API."""
    found = {
        "schedule": spec.schedule is not None,
        "kafka": bool(spec.kafka),
        "s3": bool(spec.s3),
        "webhook": spec.webhook is not None,
        "assets": bool(spec.on_assets),
    }
    return [name for name, present in found.items() if present]


async def workflow_versions(store: EventStore, workflow: str) -> list[s.VersionView]:
    """The recorded versions of ``workflow`` with their run counts, oldest first."""
    return [
        s.VersionView(version=v.version, first_seen=v.first_seen, source=v.source, runs=v.runs)
        for v in await store.versions.of(workflow)
    ]


async def _summary(deps: Deps, spec: WorkflowSpec) -> s.WorkflowSummary:
    store = deps.store
    recent = await store.list_runs(RunFilter(workflow=spec.name, limit=RECENT))
    # the latest finished runs, whatever else is running: the newest of each end status
    finished = sorted(
        [
            row
            for status in _ENDED
            for row in await store.list_runs(
                RunFilter(workflow=spec.name, status=status, limit=RATE_OVER)
            )
        ],
        key=lambda r: (r.created_at, r.run_id),
        reverse=True,
    )[:RATE_OVER]
    last = recent[0] if recent else None
    return s.WorkflowSummary(
        name=spec.name,
        version=spec.version,
        description=spec.description,
        params=_params(spec),
        tasks=len(spec.tasks),
        triggers=triggers_of(spec),
        last_run=s.LastRun(run_id=last.run_id, status=last.status, created_at=last.created_at)
        if last
        else None,
        next_fire=(await schedule_view(deps, spec)).next_fire if spec.schedule else None,
        success_rate=sum(r.status == "succeeded" for r in finished) / len(finished)
        if finished
        else None,
        recent=[r.status for r in recent],
    )


@route(
    "GET",
    f"{V1}/workflows",
    summary="List the loaded workflows, with their last run, recent statuses, success rate "
    "and next scheduled fire",
    scope="read",
    responses={200: s.WorkflowList},
)
async def list_workflows(call: Call[None, None]) -> s.WorkflowList:
    summaries = [_summary(call.deps, w.spec) for w in call.deps.registry]
    return s.WorkflowList(workflows=list(await asyncio.gather(*summaries)))


@route(
    "GET",
    f"{V1}/workflows/{{workflow}}",
    summary="A workflow's definition, graph (nodes and edges) and versions",
    scope="read",
    responses={200: s.WorkflowDetail},
    errors=(404,),
)
async def get_workflow(call: Call[None, None]) -> s.WorkflowDetail:
    spec = call.workflow()
    return s.WorkflowDetail(
        name=spec.name,
        version=spec.version,
        definition=spec.to_dict(),
        graph=graph_of(spec),
        versions=await workflow_versions(call.deps.store, spec.name),
        schedule=await schedule_view(call.deps, spec) if spec.schedule else None,
        triggers=triggers_of(spec),
        params=_params(spec),
    )


@route(
    "GET",
    f"{V1}/workflows/{{workflow}}/grid",
    summary="Its latest runs, newest first, with each task's status and attempt",
    scope="read",
    query=s.GridQuery,
    responses={200: s.Grid},
    errors=(400, 404),
)
async def workflow_grid(call: Call[None, s.GridQuery]) -> s.Grid:
    spec, store = call.workflow(), call.deps.store
    rows = await store.list_runs(RunFilter(workflow=spec.name, limit=call.query.limit))
    streams = await store.read_streams([run_stream(r.run_id) for r in rows])
    runs = []
    for row in rows:
        state = fold(streams.get(run_stream(row.run_id), []))
        if state is None:  # a row is written with its run's first event: never
            continue
        runs.append(
            s.GridRun(
                run_id=state.run_id,
                status=state.status,
                created_at=state.created_at,
                logical_time=state.trigger.logical_time,
                generation=state.generation,
                cells={
                    t.name: s.GridCell(status=t.status, attempt=t.attempt)
                    for t in state.tasks.values()
                    if t.parent is None
                },
            )
        )
    return s.Grid(tasks=[t.name for t in spec.tasks], runs=runs)


@route(
    "GET",
    f"{V1}/workflows/{{workflow}}/source",
    summary="The text of the file the loaded version was defined in",
    scope="read",
    responses={200: s.WorkflowSource},
    errors=(404,),
)
async def workflow_source(call: Call[None, None]) -> s.WorkflowSource:
    loaded = call.loaded_workflow()
    spec, text = loaded.spec, loaded.source_text
    if text is None:  # defined in code, not loaded from a file: it may have been recorded
        known = await call.deps.store.versions.of(spec.name)
        text = next((v.source_text for v in known if v.version == spec.version), None)
    if text is None:
        raise ApiError(
            404,
            "no source",
            f"workflow {spec.name!r} was not loaded from a file, and no text of it is recorded",
        )
    return s.WorkflowSource(
        path=spec.source or None,
        language="yaml" if spec.source.endswith((".yaml", ".yml")) else "python",
        text=text,
    )


@route(
    "GET",
    f"{V1}/workflows/{{workflow}}/versions/{{version}}",
    summary="A recorded version: its definition, its runs and the text of its file",
    scope="read",
    responses={200: s.VersionDetail},
    errors=(404,),
)
async def get_version(call: Call[None, None]) -> s.VersionDetail:
    workflow = call.path_id("workflow", "workflow")
    version = call.path_id("version", "version")
    known = await call.deps.store.versions.of(workflow)
    row = next((v for v in known if v.version == version), None)
    if row is None:
        raise ApiError(
            404,
            "no such version",
            f"workflow {workflow!r} has no recorded version {version!r}; "
            f"GET {V1}/workflows/{workflow} lists them",
        )
    return s.VersionDetail(
        version=row.version,
        first_seen=row.first_seen,
        runs=row.runs,
        definition=msgspec.json.decode(row.definition),
        source_text=row.source_text,
    )


@route(
    "POST",
    f"{V1}/workflows/{{workflow}}/runs",
    summary="Start a run (durable before the answer); Idempotency-Key makes retries safe",
    scope="trigger",
    body=s.TriggerBody,
    responses={
        202: s.TriggerResult,
        200: (s.TriggerResult, "The Idempotency-Key had already started this run"),
    },
    errors=(400, 404, 409, 413),
    headers=(IDEMPOTENCY_KEY,),
)
async def trigger(call: Call[s.TriggerBody, None]) -> Answer:
    spec = call.workflow()
    key = call.request.headers.get("Idempotency-Key")
    if key is not None and not valid_id(key):
        raise ApiError(
            400,
            "bad Idempotency-Key",
            "use 1-200 letters, digits and _ . : @ - (a UUID is fine)",
        )
    run_id, created = await start_http_run(
        call.deps.store,
        spec,
        call.body.params,
        key=key,
        trigger=Trigger(
            kind="api",
            source=call.by or call.request.remote,
            logical_time=call.body.logical_date,
            traceparent=call.request.headers.get("traceparent"),
        ),
    )
    return Answer(
        body=s.TriggerResult(run_id=run_id, created=created),
        status=202 if created else 200,
        headers={"Location": f"{V1}/runs/{run_id}"},
    )


ROUTES = resource(
    "workflows",
    list_workflows,
    get_workflow,
    workflow_grid,
    workflow_source,
    get_version,
    trigger,
)

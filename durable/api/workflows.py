"""``/api/v1/workflows``: the loaded workflows, their graphs and versions, and starting
a run (durable before the answer; ``Idempotency-Key`` makes retries safe)."""

from __future__ import annotations

import msgspec

from durable.api import schemas as s
from durable.api.idempotency import start_http_run
from durable.api.routing import (
    IDEMPOTENCY_KEY,
    V1,
    Answer,
    ApiError,
    Call,
    resource,
    route,
    valid_id,
)
from durable.core.events import Trigger
from durable.core.spec import WorkflowSpec
from durable.store.base import EventStore

__all__ = ["ROUTES", "graph_of", "triggers_of", "workflow_versions"]


def graph_of(spec: WorkflowSpec) -> s.Graph:
    """The workflow's DAG as nodes and edges."""
    return s.Graph(
        nodes=[s.GraphNode(id=t.name, kind=t.kind) for t in spec.tasks],
        edges=[s.GraphEdge(source=u, target=t.name) for t in spec.tasks for u in t.upstream],
    )


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


@route(
    "GET",
    f"{V1}/workflows",
    summary="List the loaded workflows",
    scope="read",
    responses={200: s.WorkflowList},
)
async def list_workflows(call: Call[None, None]) -> s.WorkflowList:
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
            for w in call.deps.registry
        ]
    )


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


ROUTES = resource("workflows", list_workflows, get_workflow, trigger)

"""A run's history as a UI draws it: what started it (:func:`trigger_view`) and every
attempt of its tasks on a time line (``GET /api/v1/runs/{run_id}/attempts``). The state
at any point of the history is ``GET /api/v1/runs/{run_id}?at_seq=N``
(:mod:`durable.api.runs`)."""

from __future__ import annotations

from typing import Any

from durable.api import schemas as s
from durable.api.routing import V1, ApiError, Call, resource, route
from durable.application.archive import run_history
from durable.core.attempts_view import AttemptsView, attempts_of
from durable.core.events import Trigger
from durable.core.state import RunState

__all__ = ["ROUTES", "trigger_detail", "trigger_view"]


def trigger_view(state: RunState) -> s.TriggerView:
    """What started the run, with what its door recorded in ``detail``."""
    t = state.trigger
    return s.TriggerView(
        kind=t.kind,
        source=t.source,
        key=state.idempotency_key,
        logical_time=t.logical_time,
        data_interval_start=t.data_interval_start,
        data_interval_end=t.data_interval_end,
        detail=trigger_detail(t, state.idempotency_key, state.workflow),
    )


def trigger_detail(trigger: Trigger, key: str | None, workflow: str) -> dict[str, Any]:
    """The parts of a trigger's ``source`` and the run's idempotency key, in the forms
    the doors write them (``durable.runtime.triggers``, ``durable.api.idempotency``):

    - kafka: source ``topic/partition/offset``; a producer's key is the ``request_key``,
      an offset's key may name the ``epoch`` of the partition's log
    - s3: key ``s3:{workflow}:{bucket}:{key}:{version or etag}``, or source ``s3://bucket/key``
    - schedule: source is the cron or ``every N s``; backfill: the backfill id
    - asset: source ``asset@run_id`` of the run that updated it
    - api, http (webhooks): key ``http:{workflow}:{Idempotency-Key}``
    - any: the W3C ``traceparent`` of the source

    A part that does not have its form is left out, never guessed."""
    detail: dict[str, Any] = {}
    source = trigger.source or ""
    match trigger.kind:
        case "kafka":
            head, _, offset = source.rpartition("/")
            topic, _, partition = head.rpartition("/")
            if topic and partition.isdigit() and offset.isdigit():
                detail.update(topic=topic, partition=int(partition), offset=int(offset))
            own = f"kafka:{workflow}:{topic}:{partition}:{offset}"
            if key and key.startswith(f"kafka:{workflow}:"):
                if key.startswith(f"{own}@") and key[len(own) + 1 :].isdigit():
                    detail["epoch"] = int(key[len(own) + 1 :])
                elif key != own:
                    detail["request_key"] = key.removeprefix(f"kafka:{workflow}:")
        case "s3":
            if key and key.startswith(f"s3:{workflow}:"):
                bucket, _, rest = key.removeprefix(f"s3:{workflow}:").partition(":")
                name, _, version = rest.rpartition(":")
                detail.update(bucket=bucket, key=name, version=version)
            elif source.startswith("s3://"):
                bucket, _, name = source.removeprefix("s3://").partition("/")
                detail.update(bucket=bucket, key=name)
        case "schedule":
            detail["schedule"] = source
        case "backfill":
            detail["backfill_id"] = source
        case "asset":
            asset, at, run_id = source.rpartition("@")
            if at:
                detail.update(asset=asset, run_id=run_id)
        case "api" | "http":
            if key and key.startswith(f"http:{workflow}:"):
                detail["request_key"] = key.removeprefix(f"http:{workflow}:")
    if trigger.traceparent:
        detail["traceparent"] = trigger.traceparent
    return detail


@route(
    "GET",
    f"{V1}/runs/{{run_id}}/attempts",
    summary="Every attempt of every task in every generation, with its times (a Gantt chart)",
    scope="read",
    responses={200: s.AttemptList},
    errors=(404,),
)
async def run_attempts(call: Call[None, None]) -> AttemptsView:
    run_id = call.path_id("run_id", "run")
    records, _ = await run_history(call.deps.store, run_id, call.deps.archives)
    view = attempts_of(records)
    if view is None:
        raise ApiError(404, "no such run", f"run {run_id!r} does not exist")
    return view


ROUTES = resource("runs", run_attempts)

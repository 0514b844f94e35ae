"""``/api/v1/backfills``: run a scheduled workflow once per interval of a window, with
progress, pause, resume and cancel (a dry run answers with the plan)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from durable.api import schemas as s
from durable.api.routing import V1, Answer, ApiError, Call, resource, route
from durable.application import backfills as use
from durable.core.backfill import BackfillState, backfill_outcome
from durable.core.errors import DurableError
from durable.core.spec import DefinitionError
from durable.store.base import EventStore

__all__ = ["ROUTES"]


def _view(
    state: BackfillState, runs: Mapping[str, int], *, status: str | None = None
) -> s.BackfillView:
    r = state.request
    return s.BackfillView(
        backfill_id=r.backfill_id,
        workflow=r.workflow,
        start=r.start,
        end=r.end,
        status=status or backfill_outcome(state, runs),
        intervals=r.intervals,
        max_parallel=r.max_parallel,
        reprocess=r.reprocess,
        runs=dict(runs),
    )


async def _current(store: EventStore, backfill_id: str) -> s.BackfillView:
    state = await use.load_backfill(store, backfill_id)
    return _view(state, await use.backfill_progress(store, state))


async def _backfill(call: Call[Any, Any]) -> BackfillState:
    backfill_id = call.path_id("backfill_id", "backfill")
    try:
        return await use.load_backfill(call.deps.store, backfill_id)
    except DurableError:
        raise ApiError(
            404, "no such backfill", f"backfill {backfill_id!r} does not exist"
        ) from None


def _aware(value: datetime, field: str) -> datetime:
    if value.tzinfo is None:
        raise ApiError(
            400,
            "bad time",
            f"field {field} ({value.isoformat()}) needs a time zone, e.g. Z or +01:00",
        )
    return value


@route(
    "GET",
    f"{V1}/backfills",
    summary="Backfills with their progress",
    scope="read",
    responses={200: s.BackfillList},
)
async def list_backfills(call: Call[None, None]) -> s.BackfillList:
    rows = await use.backfill_summaries(call.deps.store)
    return s.BackfillList(backfills=[_view(r.state, r.progress, status=r.status) for r in rows])


@route(
    "POST",
    f"{V1}/backfills",
    summary="Run a workflow once per schedule interval in [start, end) (dry_run: the plan)",
    scope="operate",
    body=s.BackfillCreate,
    responses={202: s.BackfillView, 200: (s.BackfillView, "A dry run's plan")},
    errors=(400, 404),
)
async def create_backfill(call: Call[s.BackfillCreate, None]) -> s.BackfillView | Answer:
    body, store = call.body, call.deps.store
    try:
        spec = call.deps.registry.get(body.workflow).spec
    except DefinitionError:
        raise ApiError(
            404,
            "no such workflow",
            f"workflow {body.workflow!r} (field workflow) is not loaded",
        ) from None
    start, end = _aware(body.start, "start"), _aware(body.end, "end")
    if body.dry_run:
        plan = await use.plan_backfill(store, spec, start, end, body.reprocess)
        view = s.BackfillView(
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
        return Answer(body=view, status=200)
    backfill_id, _ = await use.request_backfill(
        store,
        spec,
        start,
        end,
        max_parallel=body.max_parallel,
        reprocess=body.reprocess,
        by=call.by,
    )
    return await _current(store, backfill_id)


@route(
    "GET",
    f"{V1}/backfills/{{backfill_id}}",
    summary="A backfill's progress",
    scope="read",
    responses={200: s.BackfillView},
    errors=(404,),
)
async def get_backfill(call: Call[None, None]) -> s.BackfillView:
    state = await _backfill(call)
    return _view(state, await use.backfill_progress(call.deps.store, state))


@route(
    "POST",
    f"{V1}/backfills/{{backfill_id}}/pause",
    summary="No new run of the backfill starts",
    scope="operate",
    responses={200: s.BackfillView},
    errors=(404, 409),
)
async def pause_backfill(call: Call[None, None]) -> s.BackfillView:
    backfill_id = (await _backfill(call)).request.backfill_id
    await use.set_backfill_paused(call.deps.store, backfill_id, True, call.by)
    return await _current(call.deps.store, backfill_id)


@route(
    "POST",
    f"{V1}/backfills/{{backfill_id}}/resume",
    summary="Continue a paused backfill",
    scope="operate",
    responses={200: s.BackfillView},
    errors=(404, 409),
)
async def resume_backfill(call: Call[None, None]) -> s.BackfillView:
    backfill_id = (await _backfill(call)).request.backfill_id
    await use.set_backfill_paused(call.deps.store, backfill_id, False, call.by)
    return await _current(call.deps.store, backfill_id)


@route(
    "POST",
    f"{V1}/backfills/{{backfill_id}}/cancel",
    summary="Cancel the backfill and its unfinished runs",
    scope="operate",
    responses={200: s.BackfillView},
    errors=(404,),
)
async def cancel_backfill(call: Call[None, None]) -> s.BackfillView:
    backfill_id = (await _backfill(call)).request.backfill_id
    await use.cancel_backfill(call.deps.store, backfill_id, call.by)
    return await _current(call.deps.store, backfill_id)


ROUTES = resource(
    "backfills",
    list_backfills,
    create_backfill,
    get_backfill,
    pause_backfill,
    resume_backfill,
    cancel_backfill,
)

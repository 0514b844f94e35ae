"""``/api/v1/schedules``: the workflows' schedules, their next fire times, pause and
resume. "Now" comes from the app's injected clock."""

from __future__ import annotations

from typing import Any

from durable.api import schemas as s
from durable.api.routing import V1, ApiError, Call, Deps, resource, route
from durable.application.schedules import schedule_status, set_schedule_paused
from durable.core.schedule import next_fire
from durable.core.spec import WorkflowSpec

__all__ = ["ROUTES", "schedule_view"]


async def schedule_view(deps: Deps, spec: WorkflowSpec) -> s.ScheduleView:
    """A scheduled workflow's schedule: paused or not, its last interval, when it fires
    next (from the injected clock)."""
    sched = spec.schedule
    if sched is None:  # callers pass scheduled workflows only
        raise ApiError(404, "no schedule", f"workflow {spec.name!r} has no schedule")
    status = await schedule_status(deps.store, spec)
    now = deps.clock()
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


def _scheduled(call: Call[Any, Any]) -> WorkflowSpec:
    spec = call.workflow()
    if spec.schedule is None:
        raise ApiError(404, "no schedule", f"workflow {spec.name!r} has no schedule")
    return spec


@route(
    "GET",
    f"{V1}/schedules",
    summary="Schedules and their next fire times",
    scope="read",
    responses={200: s.ScheduleList},
)
async def list_schedules(call: Call[None, None]) -> s.ScheduleList:
    specs = [w.spec for w in call.deps.registry if w.spec.schedule is not None]
    return s.ScheduleList(schedules=[await schedule_view(call.deps, spec) for spec in specs])


@route(
    "GET",
    f"{V1}/schedules/{{workflow}}",
    summary="One workflow's schedule",
    scope="read",
    responses={200: s.ScheduleView},
    errors=(404,),
)
async def get_schedule(call: Call[None, None]) -> s.ScheduleView:
    return await schedule_view(call.deps, _scheduled(call))


@route(
    "POST",
    f"{V1}/schedules/{{workflow}}/pause",
    summary="Stop a schedule from creating runs",
    scope="operate",
    body=s.CommandBody,
    optional_body=True,
    responses={200: s.ScheduleView},
    errors=(400, 404),
)
async def pause_schedule(call: Call[s.CommandBody | None, None]) -> s.ScheduleView:
    spec = _scheduled(call)
    body = call.body
    reason = body.reason if body and body.reason else ""
    await set_schedule_paused(call.deps.store, spec.name, True, reason=reason, by=call.by)
    return await schedule_view(call.deps, spec)


@route(
    "POST",
    f"{V1}/schedules/{{workflow}}/resume",
    summary="Let a paused schedule create runs again",
    scope="operate",
    responses={200: s.ScheduleView},
    errors=(404,),
)
async def resume_schedule(call: Call[None, None]) -> s.ScheduleView:
    spec = _scheduled(call)
    await set_schedule_paused(call.deps.store, spec.name, False, by=call.by)
    return await schedule_view(call.deps, spec)


ROUTES = resource("schedules", list_schedules, get_schedule, pause_schedule, resume_schedule)

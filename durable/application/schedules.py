"""Schedules as use cases: their status (cursor, next fire), pause and resume, and the
params of a scheduled run. The runtime's :class:`~durable.runtime.scheduler.Scheduler`
fires the ticks; the CLI and the API read and change schedules through here."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from durable.application.streams import apply_to_stream
from durable.core.events import schedule_stream
from durable.core.schedule import (
    PauseSchedule,
    ResumeSchedule,
    Tick,
    decide_schedule,
    next_fire,
    schedule_state,
)
from durable.core.spec import WorkflowSpec
from durable.store.base import EventStore

__all__ = ["schedule_status", "scheduled_params", "set_schedule_paused"]


async def schedule_status(store: EventStore, spec: WorkflowSpec) -> dict[str, Any]:
    """Whether a schedule is paused, where its cursor is, and when it fires next."""
    assert spec.schedule is not None
    state = schedule_state(r.event for r in await store.read_stream(schedule_stream(spec.name)))
    # a backfill's runs are the schedule's intervals too: the schedule goes on after the
    # latest interval either of them covered
    last = await store.latest_interval(spec.name)
    first_seen = await store.versions.first_seen(spec.name)
    last_end = next_fire(spec.schedule, last) if last is not None else None
    return {
        "paused": state.paused,
        "last_logical_time": last,
        "last_end": last_end,
        "first_seen": first_seen,
    }


async def set_schedule_paused(
    store: EventStore, workflow: str, paused: bool, *, reason: str = "", by: str | None
) -> bool:
    """Pause or resume a workflow's schedule; False when it already was."""
    command = PauseSchedule(reason=reason, by=by) if paused else ResumeSchedule(by=by)
    _, appended = await apply_to_stream(
        store,
        schedule_stream(workflow),
        lambda records: schedule_state(r.event for r in records),
        lambda state: decide_schedule(state, command),
    )
    return bool(appended)


def scheduled_params(spec: WorkflowSpec, tick: Tick) -> dict[str, Any]:
    """A scheduled run's params: defaults, and the logical date (in the schedule's zone)
    for each required ``date`` param."""
    assert spec.schedule is not None
    day = tick.start.astimezone(ZoneInfo(spec.schedule.timezone)).date().isoformat()
    return {
        name: day
        for name, p in spec.params.items()
        if p.type == "date" and p.required and p.default is None
    }

"""Schedules as use cases: their status (cursor, next fire), pause and resume, and the
params of a scheduled run. The runtime's :class:`~durable.runtime.scheduler.Scheduler`
fires the ticks; the CLI and the API read and change schedules through here."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from durable.core.errors import ConcurrencyConflict
from durable.core.events import SchedulePaused, ScheduleResumed, schedule_stream
from durable.core.schedule import Tick, next_fire
from durable.core.spec import WorkflowSpec
from durable.store.postgres import PostgresEventStore

__all__ = ["schedule_status", "scheduled_params", "set_schedule_paused"]


async def schedule_status(store: PostgresEventStore, spec: WorkflowSpec) -> dict[str, Any]:
    """Whether a schedule is paused, where its cursor is, and when it fires next."""
    assert spec.schedule is not None
    events = [r.event for r in await store.read_stream(schedule_stream(spec.name))]
    paused = bool(events) and isinstance(events[-1], SchedulePaused)
    async with store.pool.acquire() as conn:
        last = await conn.fetchval(
            # a backfill's runs are the schedule's intervals too: the schedule goes on
            # after the latest interval either of them covered
            "SELECT max(logical_time) FROM durable.runs "
            "WHERE workflow = $1 AND trigger_kind IN ('schedule', 'backfill')",
            spec.name,
        )
        first_seen = await conn.fetchval(
            "SELECT min(first_seen) FROM durable.workflow_versions WHERE workflow = $1",
            spec.name,
        )
    last_end = next_fire(spec.schedule, last) if last is not None else None
    return {
        "paused": paused,
        "last_logical_time": last,
        "last_end": last_end,
        "first_seen": first_seen,
    }


async def set_schedule_paused(
    store: PostgresEventStore, workflow: str, paused: bool, *, reason: str = "", by: str | None
) -> bool:
    """Pause or resume a workflow's schedule; False when it already was."""
    stream = schedule_stream(workflow)
    event = SchedulePaused(reason=reason, by=by) if paused else ScheduleResumed(by=by)
    for _ in range(10):
        records = await store.read_stream(stream)
        if records and type(records[-1].event) is type(event):
            return False
        if not records and not paused:
            return False  # never paused: already running
        try:
            await store.append(stream, len(records), [event])
        except ConcurrencyConflict:
            continue
        return True
    raise ConcurrencyConflict(stream, -1)


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

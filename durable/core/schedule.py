"""Schedules: when a workflow's runs come due, and for which data interval.

Pure: the current time is passed in. Cron expressions are read in the schedule's time
zone (croniter over naive local times) with a stated DST policy:

- a local time that happens twice (clocks go back) runs once, at its first occurrence;
- a local time that does not exist (clocks go forward) runs at the next valid instant,
  the moment the clocks jump.

Each tick covers a data interval ``[start, end)``: it fires at ``end``, and its logical
time is ``start`` — the run at 2026-11-22 02:00 processes 2026-11-21, so a task can
write ``output/date=2026-11-21/`` idempotently.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Literal, TypeAlias
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
from croniter import croniter

from durable.core.errors import DurableError
from durable.core.events import Event, SchedulePaused, ScheduleResumed

__all__ = [
    "CatchUp",
    "PauseSchedule",
    "ResumeSchedule",
    "Schedule",
    "ScheduleCommand",
    "ScheduleError",
    "ScheduleState",
    "Tick",
    "decide_schedule",
    "due_ticks",
    "fire_times",
    "next_fire",
    "previous_fire",
    "schedule_state",
    "validate_schedule",
]

CatchUp: TypeAlias = Literal["all", "latest", "none"]
_MAX_TICKS = 100_000


class ScheduleError(DurableError):
    """A schedule that cannot be read (bad cron, unknown zone)."""


class Schedule(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A cron expression (``cron``) or a fixed interval in seconds (``every``).

    ``catchup`` after downtime: ``all`` missed intervals, only the ``latest``, or ``none``.
    ``start``: the first data interval starts here (default: when first scheduled).
    """

    cron: str | None = None
    every: float | None = None
    timezone: str = "UTC"
    catchup: CatchUp = "latest"
    start: datetime | None = None


class Tick(msgspec.Struct, frozen=True, kw_only=True):
    """One due run: its logical time (= interval start) and data interval."""

    start: datetime
    end: datetime

    @property
    def logical_time(self) -> datetime:
        return self.start


def validate_schedule(schedule: Schedule, where: str) -> None:
    if (schedule.cron is None) == (schedule.every is None):
        raise ScheduleError(f"{where}: a schedule has either 'cron' or 'every'")
    if schedule.every is not None and schedule.every <= 0:
        raise ScheduleError(f"{where}: 'every' must be > 0 seconds, not {schedule.every}")
    _zone(schedule, where)
    if schedule.cron is not None and not croniter.is_valid(schedule.cron):
        raise ScheduleError(
            f"{where}: {schedule.cron!r} is not a cron expression",
            hint="five fields: minute hour day-of-month month day-of-week, e.g. '0 2 * * *'",
        )


def _zone(schedule: Schedule, where: str = "schedule") -> ZoneInfo:
    try:
        return ZoneInfo(schedule.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(
            f"{where}: unknown time zone {schedule.timezone!r}",
            hint="an IANA name such as Europe/Paris or America/New_York",
        ) from None


def _localize(naive: datetime, zone: ZoneInfo) -> datetime:
    """The UTC instant of a local wall time, by the DST policy above."""
    first = naive.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if first.astimezone(zone).replace(tzinfo=None) == naive:
        return first  # exists (if it happens twice, this is its first occurrence)
    # In a gap: the first instant whose local time is at or after `naive`.
    low = naive.replace(tzinfo=zone, fold=1).astimezone(UTC)
    high = first
    while high - low > timedelta(seconds=1):
        mid = low + (high - low) / 2
        if mid.astimezone(zone).replace(tzinfo=None) >= naive:
            high = mid
        else:
            low = mid
    return high.replace(microsecond=0)


def fire_times(schedule: Schedule, after: datetime, until: datetime) -> list[datetime]:
    """The UTC instants the schedule fires at, in ``(after, until]``."""
    if schedule.every is not None:
        step = timedelta(seconds=schedule.every)
        anchor = schedule.start or datetime(1970, 1, 1, tzinfo=UTC)
        k = max(0, (after - anchor) // step + 1)
        fixed: list[datetime] = []
        while anchor + k * step <= until and len(fixed) < _MAX_TICKS:
            if anchor + k * step > after:
                fixed.append(anchor + k * step)
            k += 1
        return fixed
    zone = _zone(schedule)
    # Iterate wall times from a little before `after` (a gap can move a time later).
    local = after.astimezone(zone).replace(tzinfo=None) - timedelta(hours=4)
    it = croniter(schedule.cron, local)
    out: list[datetime] = []
    while len(out) < _MAX_TICKS:
        instant = _localize(it.get_next(datetime), zone)
        if instant > until:
            break
        if instant > after and (not out or instant > out[-1]):
            out.append(instant)
    return out


def next_fire(schedule: Schedule, after: datetime) -> datetime:
    """The first fire instant after ``after``."""
    if schedule.every is not None:
        step = timedelta(seconds=schedule.every)
        anchor = schedule.start or datetime(1970, 1, 1, tzinfo=UTC)
        k = (after - anchor) // step
        return anchor + (k + 1) * step
    horizon = after + timedelta(days=400)  # every cron fires within a (leap) year
    times = fire_times(schedule, after, horizon)
    if not times:
        raise ScheduleError(f"schedule {schedule.cron!r} never fires")
    return times[0]


def previous_fire(schedule: Schedule, before: datetime) -> datetime:
    """The last fire instant before ``before`` (the start of its data interval)."""
    if schedule.every is not None:
        step = timedelta(seconds=schedule.every)
        anchor = schedule.start or datetime(1970, 1, 1, tzinfo=UTC)
        k = int((before - anchor) / step)
        candidate = anchor + k * step
        return candidate if candidate < before else candidate - step
    for days in (2, 40, 400):  # cron: look back until a fire is found
        times = fire_times(
            schedule, before - timedelta(days=days), before - timedelta(microseconds=1)
        )
        if times:
            return times[-1]
    raise ScheduleError(f"schedule {schedule.cron!r} never fires")


def due_ticks(
    schedule: Schedule,
    last_end: datetime | None,
    now: datetime,
    *,
    first_seen: datetime,
    tolerance: timedelta = timedelta(seconds=60),
) -> list[Tick]:
    """The ticks to run at ``now``, given the end of the last interval already run.

    With no run yet, intervals start at ``schedule.start``, or else at ``first_seen``.
    ``tolerance``: how late a tick may be and still count as on time (``none`` policy).
    """
    after = last_end or schedule.start or first_seen
    fires = fire_times(schedule, after, now)
    if not fires:
        return []
    starts = [last_end or previous_fire(schedule, fires[0]), *fires[:-1]]
    ticks = [Tick(start=s, end=e) for s, e in zip(starts, fires, strict=True)]
    match schedule.catchup:
        case "all":
            return ticks
        case "latest":
            return ticks[-1:]
        case "none":
            return [t for t in ticks if now - t.end <= tolerance]


# -- a schedule's own stream (``schedule:{workflow}``): pause and resume ----------------


class ScheduleState(msgspec.Struct, frozen=True, kw_only=True):
    """A schedule as its stream says: paused or not (it fires when not)."""

    paused: bool = False


class PauseSchedule(msgspec.Struct, frozen=True, kw_only=True):
    reason: str = ""
    by: str | None = None


class ResumeSchedule(msgspec.Struct, frozen=True, kw_only=True):
    by: str | None = None


ScheduleCommand: TypeAlias = PauseSchedule | ResumeSchedule


def schedule_state(events: Iterable[Event]) -> ScheduleState:
    """Fold a schedule's stream: the last pause or resume wins (no stream: running)."""
    paused = False
    for e in events:
        if isinstance(e, SchedulePaused):
            paused = True
        elif isinstance(e, ScheduleResumed):
            paused = False
    return ScheduleState(paused=paused)


def decide_schedule(state: ScheduleState, command: ScheduleCommand) -> list[Event]:
    """The events a command appends to a schedule's stream; ``[]`` when already in effect."""
    match command:
        case PauseSchedule():
            return [] if state.paused else [SchedulePaused(reason=command.reason, by=command.by)]
        case ResumeSchedule():
            return [ScheduleResumed(by=command.by)] if state.paused else []

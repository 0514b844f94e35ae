"""SLAs and freshness: when a workflow's runs are expected done, and how fresh the assets
it cares about must be; the misses they lead to.

- ``finish_by`` (``"06:00"`` in ``timezone``): a scheduled run is expected done by the
  first such time after its data interval ends (its logical time when it has no
  interval). Backfills and runs started by hand have no ``finish_by``.
- ``max_duration`` (seconds): a run is expected done that long after it started. Unlike
  the workflow's own ``max_duration``, which fails the run, a miss only records and
  notifies.
- ``max_staleness`` (``{asset: seconds}``): an asset is expected updated again within
  that time of its last update. The miss goes to the stream of the run that last updated
  it (the asset's lineage).

A miss is an :class:`~durable.core.events.SlaMissed` with the notifications it asks for,
decided once per key from the log: the deadlines follow from the run's events, so they
survive restarts. Pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from durable.core.errors import DurableError
from durable.core.events import Event, SlaKind, SlaMissed, Trigger
from durable.core.notify import KeyedRule, deadline_text, requests_for, run_fields, summary_of
from durable.core.state import RunState

__all__ = [
    "Sla",
    "SlaError",
    "check_sla",
    "duration_deadline",
    "finish_deadline",
    "next_deadline",
    "sla_events",
    "staleness_events",
]


class Sla(
    msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, forbid_unknown_fields=True
):
    """A workflow's service levels: ``Sla(finish_by="06:00", timezone="Europe/Paris")``,
    ``Sla(max_duration=3600)``, ``Sla(max_staleness={"warehouse.sales": 26 * 3600})``."""

    finish_by: str | None = None
    """A time of day, ``HH:MM``: scheduled runs are expected done by then, after their
    interval ends."""
    timezone: str = "UTC"
    """The IANA time zone of ``finish_by``."""
    max_duration: float | None = None
    """Seconds a run is expected to take at most, from its start."""
    max_staleness: dict[str, float] = {}
    """Seconds each asset may go without an update."""


class SlaError(DurableError):
    """An SLA that cannot be checked; ``problem`` names the field."""

    def __init__(self, problem: str, *, hint: str | None = None) -> None:
        super().__init__(problem, hint=hint)
        self.problem = problem


def check_sla(sla: Sla, field: str = "sla") -> None:
    """Raise :class:`SlaError` naming the field of ``sla`` that is wrong."""
    if sla.finish_by is None and sla.max_duration is None and not sla.max_staleness:
        raise SlaError(f"{field}: sets none of finish_by, max_duration, max_staleness")
    if sla.finish_by is not None:
        _time_of_day(sla.finish_by, f"{field}.finish_by")
    _zone(sla.timezone, f"{field}.timezone")
    if sla.max_duration is not None and not sla.max_duration > 0:
        raise SlaError(f"{field}.max_duration: must be > 0 seconds, not {sla.max_duration!r}")
    for asset, limit in sla.max_staleness.items():
        if not asset:
            raise SlaError(f"{field}.max_staleness: an asset has no name")
        if not limit > 0:
            raise SlaError(f"{field}.max_staleness[{asset!r}]: must be > 0 seconds, not {limit!r}")


def _time_of_day(text: str, field: str) -> time:
    try:
        parsed = time.fromisoformat(text)
    except (ValueError, TypeError):
        raise SlaError(
            f"{field}: {text!r} is not a time of day", hint="HH:MM, e.g. 06:00"
        ) from None
    if parsed.tzinfo is not None:
        raise SlaError(f"{field}: {text!r} has an offset", hint="give the zone in timezone")
    return parsed


def _zone(name: str, field: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise SlaError(
            f"{field}: unknown time zone {name!r}",
            hint="an IANA name such as Europe/Paris or America/New_York",
        ) from None


# -- deadlines ------------------------------------------------------------------------------


def finish_deadline(sla: Sla, trigger: Trigger) -> datetime | None:
    """When a run started by ``trigger`` is expected done (``None``: no ``finish_by``, or
    not a scheduled run)."""
    if sla.finish_by is None or trigger.kind != "schedule":
        return None
    after = trigger.data_interval_end or trigger.logical_time
    if after is None:
        return None
    zone = _zone(sla.timezone, "sla.timezone")
    at = _time_of_day(sla.finish_by, "sla.finish_by")
    day = after.astimezone(zone).date()
    deadline = datetime.combine(day, at, tzinfo=zone)
    if deadline <= after:
        deadline = datetime.combine(day + timedelta(days=1), at, tzinfo=zone)
    return deadline.astimezone(UTC)


def duration_deadline(sla: Sla, started_at: datetime | None) -> datetime | None:
    """When a run that started at ``started_at`` is expected done."""
    if sla.max_duration is None or started_at is None:
        return None
    return started_at + timedelta(seconds=sla.max_duration)


def _deadlines(state: RunState, sla: Sla) -> list[tuple[SlaKind, datetime]]:
    found: list[tuple[SlaKind, datetime]] = []
    finish = finish_deadline(sla, state.trigger)
    if finish is not None:
        found.append(("finish_by", finish))
    duration = duration_deadline(sla, state.started_at)
    if duration is not None:
        found.append(("max_duration", duration))
    return [(kind, at) for kind, at in found if kind not in state.sla_missed]


def next_deadline(state: RunState, sla: Sla) -> datetime | None:
    """The earliest deadline of an unfinished run not yet missed (its next timer)."""
    if state.is_terminal:
        return None
    return min((at for _, at in _deadlines(state, sla)), default=None)


# -- misses ---------------------------------------------------------------------------------


def sla_events(state: RunState, sla: Sla, now: datetime, rules: Sequence[KeyedRule]) -> list[Event]:
    """The misses of ``state`` at ``now``, each with its notifications: a deadline past
    while the run goes on, or a run that ended after it. ``[]`` once recorded."""
    out: list[Event] = []
    for kind, deadline in _deadlines(state, sla):
        end = state.finished_at if state.is_terminal else None
        if end is not None and end > deadline:
            late = _duration(end - deadline)
            detail = f"{kind} {deadline_text(deadline)}: the run ended {late} late ({state.status})"
        elif end is None and now > deadline:
            detail = f"{kind} {deadline_text(deadline)}: the run is still {state.status}"
        else:
            continue
        out += _miss(state, state.workflow, kind, kind, deadline, detail, rules, len(out))
    return out


def staleness_events(
    producer: RunState,
    workflow: str,
    asset: str,
    limit: float,
    updated_at: datetime,
    position: int,
    now: datetime,
    rules: Sequence[KeyedRule],
) -> list[Event]:
    """``asset``, last updated at ``updated_at`` (log ``position``) by the run
    ``producer``, past ``workflow``'s ``max_staleness`` ``limit`` at ``now``: the miss,
    recorded on the producer's stream, once per update."""
    key = f"max_staleness:{asset}@{position}"
    deadline = updated_at + timedelta(seconds=limit)
    if key in producer.sla_missed or now <= deadline:
        return []
    detail = (
        f"asset {asset} not updated since {deadline_text(updated_at)} "
        f"(max staleness {_duration(timedelta(seconds=limit))})"
    )
    return _miss(producer, workflow, key, "max_staleness", deadline, detail, rules, 0, asset)


def _miss(
    state: RunState,
    workflow: str,
    key: str,
    kind: SlaKind,
    deadline: datetime,
    detail: str,
    rules: Sequence[KeyedRule],
    before: int,
    asset: str | None = None,
) -> list[Event]:
    missed = SlaMissed(
        key=key, sla=kind, workflow=workflow, deadline=deadline, detail=detail, asset=asset
    )
    fields = run_fields(state, "sla_missed")
    fields.update(
        workflow=workflow,
        sla=kind,
        deadline=deadline_text(deadline),
        detail=detail,
        asset=asset or "",
    )
    fields["summary"] = summary_of("sla_missed", fields)
    requests = requests_for(
        state.stream_id,
        state.last_seq + before + 1,
        "sla_missed",
        fields,
        rules,
        incident=f"durable:{state.workflow}:{state.run_id}",
        open_incidents=state.incidents,
    )
    return [missed, *requests]


def _duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{max(seconds, 0)} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"

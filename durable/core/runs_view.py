"""The ``runs`` read model: one row per run, for listing and filtering.

Pure. A store keeps the row in the same transaction as the events that change it, by
applying :func:`delta_of` of the appended events; :func:`row_from_state` derives the
same row from a folded run, which is how ``durable replay --verify`` and the rebuild
check the read model against the log.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import msgspec

from durable.core.events import Event, RerunRequested, RunCreated, RunStarted
from durable.core.fold import run_status_after
from durable.core.state import TERMINAL_RUN, RunState, RunStatus

__all__ = [
    "RunDelta",
    "RunRow",
    "apply_delta",
    "delta_of",
    "row_from_created",
    "row_from_state",
    "same_request",
]


class RunRow(msgspec.Struct, frozen=True, kw_only=True):
    """A row of the ``runs`` read model."""

    run_id: str
    workflow: str
    version: str
    status: RunStatus
    trigger_kind: str
    trigger_source: str | None
    idempotency_key: str | None
    params: dict[str, Any]
    logical_time: datetime | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime
    last_seq: int


class RunDelta(msgspec.Struct, frozen=True, kw_only=True):
    """What a run's newly appended events change in its row.

    ``finish`` is +1 when the run ended (finished_at := now), -1 when a rerun reopened it
    (finished_at := NULL), 0 otherwise.
    """

    status: RunStatus | None
    last_seq: int
    started: bool
    finish: int


def delta_of(events: Sequence[Event], last_seq: int) -> RunDelta:
    """The change to a run's row made by ``events``, the last of which has ``last_seq``."""
    status: RunStatus | None = None
    started = False
    finish = 0
    for event in events:
        status = run_status_after(event) or status
        if isinstance(event, RunStarted):
            started = True
        if isinstance(event, RerunRequested):
            finish = -1
        elif status in TERMINAL_RUN and run_status_after(event) is not None:
            finish = 1
    return RunDelta(status=status, last_seq=last_seq, started=started, finish=finish)


def row_from_created(event: RunCreated, at: datetime) -> RunRow:
    return RunRow(
        run_id=event.run_id,
        workflow=event.workflow,
        version=event.version,
        status="pending",
        trigger_kind=event.trigger.kind,
        trigger_source=event.trigger.source,
        idempotency_key=event.idempotency_key,
        params=event.params,
        logical_time=event.trigger.logical_time,
        created_at=at,
        started_at=None,
        finished_at=None,
        updated_at=at,
        last_seq=1,
    )


def apply_delta(row: RunRow, delta: RunDelta, at: datetime) -> RunRow:
    finished_at = {1: at, -1: None}.get(delta.finish, row.finished_at)
    return msgspec.structs.replace(
        row,
        status=delta.status or row.status,
        last_seq=delta.last_seq,
        updated_at=at,
        started_at=row.started_at or (at if delta.started else None),
        finished_at=finished_at,
    )


def row_from_state(run: RunState) -> RunRow:
    """The row the read model should hold for ``run``."""
    return RunRow(
        run_id=run.run_id,
        workflow=run.workflow,
        version=run.version,
        status=run.status,
        trigger_kind=run.trigger.kind,
        trigger_source=run.trigger.source,
        idempotency_key=run.idempotency_key,
        params=run.params,
        logical_time=run.trigger.logical_time,
        created_at=run.created_at,
        started_at=run.started_at,
        finished_at=run.finished_at,
        updated_at=run.updated_at,
        last_seq=run.last_seq,
    )


def same_request(
    row: RunRow, workflow: str, params: dict[str, Any], logical_time: datetime | None
) -> bool:
    """Whether a run with an idempotency key already taken asks for the same run as
    ``row`` (the run that key started): same workflow, same params (compared as JSON),
    and the same logical time when the new request gives one."""
    return (
        row.workflow == workflow
        and _canonical(row.params) == _canonical(params)
        and (logical_time is None or row.logical_time == logical_time)
    )


def _canonical(params: dict[str, Any]) -> bytes:
    return msgspec.json.encode(msgspec.json.decode(msgspec.json.encode(params)), order="sorted")

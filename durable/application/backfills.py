"""Backfills at work: creating a backfill's runs, its progress, pause/resume/cancel.

A backfill is a durable object with its own stream (``backfill:{id}``). Its runs are
created with the schedule's dedup key, so an interval already covered is never run twice
by accident; ``reprocess`` says what to do with existing runs: nothing (``none``), rerun
the ``failed`` ones, or rerun ``all`` of them — in place, as a new generation.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

import msgspec

from durable.application.commands import apply_command
from durable.application.ids import new_run_id
from durable.application.runs import create_run
from durable.application.schedules import scheduled_params
from durable.application.streams import apply_to_stream
from durable.core.backfill import (
    BackfillCommand,
    BackfillState,
    CancelBackfill,
    PauseBackfill,
    RequestBackfill,
    ResumeBackfill,
    backfill_outcome,
    backfill_state,
    decide_backfill,
    intervals,
    same_request,
)
from durable.core.decide import Cancel, CommandRejected, Rerun
from durable.core.errors import DurableError, IdempotencyConflict
from durable.core.events import BackfillRequested, Event, Recorded, Trigger, backfill_stream
from durable.core.schedule import Tick
from durable.core.spec import DefinitionError, WorkflowSpec
from durable.store.base import EventStore

__all__ = [
    "BackfillPlan",
    "BackfillSummary",
    "backfill_progress",
    "backfill_summaries",
    "cancel_backfill",
    "list_backfills",
    "plan_backfill",
    "request_backfill",
    "set_backfill_paused",
]

Reprocess = Literal["none", "failed", "all"]
MAX_INTERVALS = 100_000


class BackfillPlan(msgspec.Struct, kw_only=True):
    """What a backfill does to each interval: ``create``, ``skip`` or ``rerun``."""

    intervals: list[Tick]
    actions: list[str]

    def counts(self) -> Counter[str]:
        return Counter(a.split(" ")[0] for a in self.actions)


async def plan_backfill(
    store: EventStore,
    spec: WorkflowSpec,
    start: datetime,
    end: datetime,
    reprocess: Reprocess,
) -> BackfillPlan:
    """The intervals in ``[start, end)`` and what would happen to each (a dry run)."""
    if spec.schedule is None:
        raise DefinitionError(
            f"workflow {spec.name!r}",
            "has no schedule, so no intervals to backfill",
            hint="give it schedule: {cron: ...} or {every: ...}",
        )
    if end <= start:
        raise DurableError(f"the backfill's end {end.isoformat()} is not after its start")
    ticks = intervals(spec.schedule, start, end)
    if len(ticks) >= MAX_INTERVALS:
        raise DurableError(
            f"the backfill of {spec.name} from {start.isoformat()} to {end.isoformat()} covers "
            f"{MAX_INTERVALS:,} intervals or more",
            hint="split it into several backfills",
        )
    keys = [_key(spec, t) for t in ticks]
    existing = {k: r.status for k, r in (await store.runs_by_keys(keys)).items()}
    actions = []
    for key in keys:
        status = existing.get(key)
        if status is None:
            actions.append("create")
        elif status in ("pending", "running", "paused"):
            actions.append(f"skip ({status})")
        elif reprocess == "all" or (reprocess == "failed" and status in ("failed", "cancelled")):
            actions.append(f"rerun ({status})")
        else:
            actions.append(f"skip ({status})")
    return BackfillPlan(intervals=ticks, actions=actions)


def _key(spec: WorkflowSpec, tick: Tick) -> str:
    return f"schedule:{spec.name}:{tick.start.isoformat()}"


async def request_backfill(
    store: EventStore,
    spec: WorkflowSpec,
    start: datetime,
    end: datetime,
    *,
    max_parallel: int | None = None,
    reprocess: Reprocess = "none",
    by: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[str, BackfillPlan]:
    """Record the backfill, then create (or rerun) its runs; returns its id and plan."""
    plan = await plan_backfill(store, spec, start, end, reprocess)
    backfill_id = f"bf-{new_run_id()}"
    request = BackfillRequested(
        backfill_id=backfill_id,
        workflow=spec.name,
        start=start,
        end=end,
        intervals=len(plan.intervals),
        max_parallel=max_parallel,
        reprocess=reprocess,
        by=by,
    )
    await _decide(store, backfill_id, RequestBackfill(request=request))
    done = 0
    todo = list(zip(plan.intervals, plan.actions, strict=True))
    for chunk_start in range(0, len(todo), 500):  # concurrently: group commit batches them
        chunk = todo[chunk_start : chunk_start + 500]
        await asyncio.gather(*(_apply(store, spec, backfill_id, t, a, by) for t, a in chunk))
        done += len(chunk)
        if progress is not None:
            progress(done, len(todo))
    await store.wakeups.notify_runs(backfill_id)
    return backfill_id, plan


async def _apply(
    store: EventStore,
    spec: WorkflowSpec,
    backfill_id: str,
    tick: Tick,
    action: str,
    by: str | None,
) -> None:
    if action == "create":
        # the interval's key is deterministic: a run made with other params (an older
        # version's defaults) covers the interval all the same
        with contextlib.suppress(IdempotencyConflict):
            await create_run(
                store,
                spec,
                scheduled_params(spec, tick),
                idempotency_key=_key(spec, tick),
                trigger=Trigger(
                    kind="backfill",
                    source=backfill_id,
                    logical_time=tick.start,
                    data_interval_start=tick.start,
                    data_interval_end=tick.end,
                ),
            )
    elif action.startswith("rerun"):
        run_id = (await store.runs_by_keys([_key(spec, tick)]))[_key(spec, tick)].run_id
        roots = tuple(t.name for t in spec.tasks if not t.upstream)
        await _command(
            store,
            run_id,
            Rerun(request_id=f"{backfill_id}:{run_id}", tasks=roots, downstream=True, by=by),
        )


async def _command(store: EventStore, run_id: str, command: Any) -> bool:
    """Apply a command to one of the backfill's runs; False if refused or already applied."""
    try:
        _, appended = await apply_command(store, run_id, command)
    except CommandRejected:
        return False
    return bool(appended)


async def _decide(
    store: EventStore, backfill_id: str, command: BackfillCommand
) -> tuple[BackfillState | None, list[Recorded]]:
    def decide(state: BackfillState | None) -> list[Event]:
        try:
            return decide_backfill(state, command)
        except DurableError as exc:
            if state is None:
                raise DurableError(
                    f"no backfill {backfill_id!r}", hint="`durable backfills` lists them"
                ) from None
            raise exc

    return await apply_to_stream(
        store,
        backfill_stream(backfill_id),
        lambda records: backfill_state(r.event for r in records),
        decide,
    )


async def load_backfill(store: EventStore, backfill_id: str) -> BackfillState:
    state = backfill_state(r.event for r in await store.read_stream(backfill_stream(backfill_id)))
    if state is None:
        raise DurableError(f"no backfill {backfill_id!r}", hint="`durable backfills` lists them")
    return state


async def backfill_progress(store: EventStore, state: BackfillState) -> Counter[str]:
    """The statuses of the runs covering the backfill's intervals."""
    r = state.request
    return Counter(await store.interval_statuses(r.workflow, r.start, r.end))


async def list_backfills(store: EventStore) -> list[tuple[BackfillState, Counter[str]]]:
    out = []
    for stream_id in await store.stream_ids("backfill:", 100):
        state = await load_backfill(store, stream_id.split(":", 1)[1])
        out.append((state, await backfill_progress(store, state)))
    return out


class BackfillSummary(msgspec.Struct, kw_only=True):
    """A backfill as an operator sees it: its state, the statuses of its intervals'
    runs, what it amounts to (:func:`~durable.core.backfill.backfill_outcome`), and the
    earlier identical request it repeats, if any."""

    state: BackfillState
    progress: dict[str, int]
    status: str
    repeat_of: str | None = None


async def backfill_summaries(store: EventStore) -> list[BackfillSummary]:
    """The latest backfills, newest first, each with its outcome so far."""
    rows = await list_backfills(store)
    summaries = [
        BackfillSummary(state=state, progress=progress, status=backfill_outcome(state, progress))
        for state, progress in rows
    ]
    earlier: list[BackfillSummary] = []
    for summary in reversed(summaries):  # oldest first
        original = next(
            (e for e in earlier if same_request(e.state.request, summary.state.request)), None
        )
        if original is not None:
            summary.repeat_of = original.state.request.backfill_id
        earlier.append(summary)
    return summaries


async def set_backfill_paused(
    store: EventStore, backfill_id: str, paused: bool, by: str | None
) -> str:
    command = PauseBackfill(by=by) if paused else ResumeBackfill(by=by)
    _, appended = await _decide(store, backfill_id, command)
    if not appended:
        return f"backfill {backfill_id} is already {'paused' if paused else 'running'}"
    await store.wakeups.notify_runs(backfill_id)
    return f"{'paused' if paused else 'resumed'} backfill {backfill_id}"


async def cancel_backfill(store: EventStore, backfill_id: str, by: str | None) -> int:
    """Cancel the backfill and every unfinished run it created; returns how many."""
    await _decide(store, backfill_id, CancelBackfill(by=by))
    run_ids = await store.unfinished_backfill_runs(backfill_id)
    results = await asyncio.gather(
        *(
            _command(store, r, Cancel(reason=f"backfill {backfill_id} cancelled", by=by))
            for r in run_ids
        )
    )
    return sum(results)

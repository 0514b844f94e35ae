"""Backfills at work: creating a backfill's runs, its progress, pause/resume/cancel.

A backfill is a durable object with its own stream (``backfill:{id}``). Its runs are
created with the schedule's dedup key, so an interval already covered is never run twice
by accident; ``reprocess`` says what to do with existing runs: nothing (``none``), rerun
the ``failed`` ones, or rerun ``all`` of them — in place, as a new generation.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

import msgspec

from durable.application.commands import apply_command
from durable.application.ids import new_run_id
from durable.application.runs import start_run
from durable.application.schedules import scheduled_params
from durable.core.backfill import BackfillState, backfill_state, intervals
from durable.core.decide import Cancel, CommandRejected, Rerun
from durable.core.errors import ConcurrencyConflict, DurableError
from durable.core.events import (
    BackfillCancelled,
    BackfillPaused,
    BackfillRequested,
    BackfillResumed,
    Trigger,
    backfill_stream,
)
from durable.core.schedule import Tick
from durable.core.spec import DefinitionError, WorkflowSpec
from durable.store.postgres import RUNS_CHANNEL, PostgresEventStore

__all__ = [
    "BackfillPlan",
    "backfill_progress",
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
    store: PostgresEventStore,
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
    async with store.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT idempotency_key, status FROM durable.runs WHERE idempotency_key = ANY($1::text[])",
            keys,
        )
    existing = {r["idempotency_key"]: r["status"] for r in rows}
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
    store: PostgresEventStore,
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
    await store.append(
        backfill_stream(backfill_id),
        0,
        [
            BackfillRequested(
                backfill_id=backfill_id,
                workflow=spec.name,
                start=start,
                end=end,
                intervals=len(plan.intervals),
                max_parallel=max_parallel,
                reprocess=reprocess,
                by=by,
            )
        ],
    )
    done = 0
    todo = list(zip(plan.intervals, plan.actions, strict=True))
    for chunk_start in range(0, len(todo), 500):  # concurrently: group commit batches them
        chunk = todo[chunk_start : chunk_start + 500]
        await asyncio.gather(*(_apply(store, spec, backfill_id, t, a, by) for t, a in chunk))
        done += len(chunk)
        if progress is not None:
            progress(done, len(todo))
    await store.notify(RUNS_CHANNEL, backfill_id)
    return backfill_id, plan


async def _apply(
    store: PostgresEventStore,
    spec: WorkflowSpec,
    backfill_id: str,
    tick: Tick,
    action: str,
    by: str | None,
) -> None:
    if action == "create":
        await start_run(
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
        async with store.pool.acquire() as conn:
            run_id = await conn.fetchval(
                "SELECT run_id FROM durable.runs WHERE idempotency_key = $1", _key(spec, tick)
            )
        roots = tuple(t.name for t in spec.tasks if not t.upstream)
        await _command(
            store,
            run_id,
            Rerun(request_id=f"{backfill_id}:{run_id}", tasks=roots, downstream=True, by=by),
        )


async def _command(store: PostgresEventStore, run_id: str, command: Any) -> bool:
    """Apply a command to one of the backfill's runs; False if refused or already applied."""
    try:
        _, appended = await apply_command(store, run_id, command)
    except CommandRejected:
        return False
    return bool(appended)


async def load_backfill(store: PostgresEventStore, backfill_id: str) -> BackfillState:
    state = backfill_state(r.event for r in await store.read_stream(backfill_stream(backfill_id)))
    if state is None:
        raise DurableError(f"no backfill {backfill_id!r}", hint="`durable backfills` lists them")
    return state


async def backfill_progress(store: PostgresEventStore, state: BackfillState) -> Counter[str]:
    """The statuses of the runs covering the backfill's intervals."""
    r = state.request
    async with store.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT status, count(*) AS n FROM durable.runs WHERE workflow = $1 "
            "AND logical_time >= $2 AND logical_time < $3 "
            "AND trigger_kind IN ('schedule', 'backfill') GROUP BY status",
            r.workflow,
            r.start,
            r.end,
        )
    return Counter({row["status"]: row["n"] for row in rows})


async def list_backfills(store: PostgresEventStore) -> list[tuple[BackfillState, Counter[str]]]:
    async with store.pool.acquire() as conn:
        ids = [
            r["stream_id"]
            for r in await conn.fetch(
                "SELECT stream_id FROM durable.events WHERE stream_id LIKE 'backfill:%' AND seq = 1 "
                "ORDER BY position DESC LIMIT 100"
            )
        ]
    out = []
    for stream_id in ids:
        state = await load_backfill(store, stream_id.split(":", 1)[1])
        out.append((state, await backfill_progress(store, state)))
    return out


async def set_backfill_paused(
    store: PostgresEventStore, backfill_id: str, paused: bool, by: str | None
) -> str:
    for _ in range(10):
        records = await store.read_stream(backfill_stream(backfill_id))
        state = backfill_state(r.event for r in records)
        if state is None:
            raise DurableError(
                f"no backfill {backfill_id!r}", hint="`durable backfills` lists them"
            )
        wanted = "paused" if paused else "running"
        if state.status == wanted:
            return f"backfill {backfill_id} is already {wanted}"
        if state.status == "cancelled":
            raise DurableError(f"backfill {backfill_id} was cancelled")
        event = BackfillPaused(by=by) if paused else BackfillResumed(by=by)
        try:
            await store.append(backfill_stream(backfill_id), len(records), [event])
        except ConcurrencyConflict:
            continue
        await store.notify(RUNS_CHANNEL, backfill_id)
        return f"{'paused' if paused else 'resumed'} backfill {backfill_id}"
    raise ConcurrencyConflict(backfill_stream(backfill_id), -1)


async def cancel_backfill(store: PostgresEventStore, backfill_id: str, by: str | None) -> int:
    """Cancel the backfill and every unfinished run it created; returns how many."""
    records = await store.read_stream(backfill_stream(backfill_id))
    state = backfill_state(r.event for r in records)
    if state is None:
        raise DurableError(f"no backfill {backfill_id!r}", hint="`durable backfills` lists them")
    if state.status != "cancelled":
        await store.append(backfill_stream(backfill_id), len(records), [BackfillCancelled(by=by)])
    async with store.pool.acquire() as conn:
        run_ids = [
            r["run_id"]
            for r in await conn.fetch(
                "SELECT run_id FROM durable.runs WHERE trigger_kind = 'backfill' "
                "AND trigger_source = $1 AND status NOT IN ('succeeded', 'failed', 'cancelled')",
                backfill_id,
            )
        ]
    results = await asyncio.gather(
        *(
            _command(store, r, Cancel(reason=f"backfill {backfill_id} cancelled", by=by))
            for r in run_ids
        )
    )
    return sum(results)

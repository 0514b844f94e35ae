"""Watching SLAs and backfills for the notifier: a run past a deadline, a run that ended
late, an asset gone stale, a backfill whose runs all ended — each recorded once, by a
pure decision (:mod:`durable.core.sla`, :func:`durable.core.backfill.decide_backfill`)
appended fenced to the stream it concerns, with the notifications it asks for."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from durable.application.backfills import backfill_progress
from durable.application.streams import apply_to_stream
from durable.core.backfill import FinishBackfill, backfill_state, decide_backfill
from durable.core.events import Event, backfill_stream, run_stream
from durable.core.fold import fold
from durable.core.notify import KeyedRule, keyed_rules
from durable.core.sla import next_deadline, sla_events, staleness_events
from durable.core.spec import WorkflowSpec
from durable.core.state import RunState
from durable.store.base import EventStore, RunFilter
from durable.store.rows import AssetUpdate
from durable.workflows.loader import WorkflowRegistry

__all__ = ["Watch", "poke"]


async def poke(store: EventStore, stream_id: str) -> None:
    """A run's stream changed from outside its driver: the driver, if any, reads the log
    again now rather than at its next append."""
    if stream_id.startswith("run:"):
        await store.wakeups.notify_control(stream_id.removeprefix("run:"))


class Watch:
    """The SLAs of ``registry``'s workflows, and backfills' ends."""

    def __init__(
        self, store: EventStore, registry: WorkflowRegistry, *, clock: Callable[[], datetime]
    ) -> None:
        self.store = store
        self.registry = registry
        self.clock = clock
        self._deadlines: dict[str, tuple[int, datetime | None]] = {}
        self._stale_done: set[tuple[str, int]] = set()
        self.watches_ends = any(
            (w.spec.sla is not None and (w.spec.sla.finish_by or w.spec.sla.max_duration))
            or any("backfill_finished" in r.on for r in w.spec.notify)
            for w in registry
        ) or any("backfill_finished" in r.on for r in registry.notify)
        """Whether a run's end may matter (an SLA to check, a backfill's end to notify)."""

    def _spec(self, workflow: str, version: str | None = None) -> WorkflowSpec | None:
        """The run's pinned version, if loaded (an SLA is the one its run was created
        under); with no version, the workflow's current one."""
        if version is not None:
            loaded = self.registry.version(workflow, version)
        else:
            loaded = next((w for w in self.registry if w.spec.name == workflow), None)
        return loaded.spec if loaded is not None else None

    def _rules(self, spec: WorkflowSpec | None) -> list[KeyedRule]:
        return keyed_rules(spec.notify if spec is not None else (), self.registry.notify)

    async def run_ended(self, run_id: str) -> None:
        """A run ended: record its late finish, and its backfill's end if it was the last."""
        row = await self.store.get_run(run_id)
        if row is None:
            return
        spec = self._spec(row.workflow, row.version)
        if spec is not None and spec.sla is not None:
            await self._check_run(run_id, spec)
        if row.trigger_kind == "backfill" and row.trigger_source:
            await self._finish_backfill(row.trigger_source)

    async def _check_run(self, run_id: str, spec: WorkflowSpec) -> RunState | None:
        """Record the run's SLA misses due now; the run's state after."""
        sla = spec.sla
        assert sla is not None
        rules = self._rules(spec)
        now = self.clock()

        def decide(state: RunState | None) -> Sequence[Event]:
            return sla_events(state, sla, now, rules) if state is not None else []

        state, appended = await apply_to_stream(self.store, run_stream(run_id), fold, decide)
        if appended:
            await poke(self.store, run_stream(run_id))
            return fold((r for r in appended), state)
        return state

    async def check_slas(self) -> None:
        """Record the misses of unfinished runs past a deadline, and of stale assets."""
        now = self.clock()
        assets: dict[str, AssetUpdate] | None = None
        seen: set[str] = set()
        for loaded in list(self.registry):
            sla = loaded.spec.sla
            if sla is None:
                continue
            if sla.finish_by or sla.max_duration:
                for status in ("pending", "running", "paused"):
                    rows = await self.store.list_runs(
                        RunFilter(workflow=loaded.spec.name, status=status, limit=1000)
                    )
                    for row in rows:
                        seen.add(row.run_id)
                        cached = self._deadlines.get(row.run_id)
                        if (
                            cached is not None
                            and cached[0] == row.last_seq
                            and (cached[1] is None or cached[1] >= now)
                        ):
                            continue
                        spec = self._spec(row.workflow, row.version)
                        if spec is None or spec.sla is None:
                            self._deadlines[row.run_id] = (row.last_seq, None)
                            continue
                        state = await self._check_run(row.run_id, spec)
                        if state is not None:
                            self._deadlines[row.run_id] = (
                                state.last_seq,
                                next_deadline(state, spec.sla),
                            )
            for asset, limit in sla.max_staleness.items():
                if assets is None:
                    assets = {a.asset: a for a in await self.store.tracking.assets()}
                update = assets.get(asset)
                if update is not None:
                    await self._check_asset(loaded.spec, asset, limit, update, now)
        for run_id in set(self._deadlines) - seen:
            del self._deadlines[run_id]  # ended: its late finish is checked when read

    async def _check_asset(
        self, spec: WorkflowSpec, asset: str, limit: float, update: AssetUpdate, now: datetime
    ) -> None:
        if (asset, update.position) in self._stale_done:
            return
        if now <= update.updated_at + timedelta(seconds=limit):
            return
        rules = self._rules(spec)

        def decide(state: RunState | None) -> Sequence[Event]:
            if state is None:
                return []
            return staleness_events(
                state, spec.name, asset, limit, update.updated_at, update.position, now, rules
            )

        _, appended = await apply_to_stream(self.store, run_stream(update.run_id), fold, decide)
        self._stale_done.add((asset, update.position))
        if appended:
            await poke(self.store, run_stream(update.run_id))

    async def _finish_backfill(self, backfill_id: str) -> None:
        stream = backfill_stream(backfill_id)
        state = backfill_state(r.event for r in await self.store.read_stream(stream))
        if state is None or state.finished is not None:
            return
        progress = dict(await backfill_progress(self.store, state))
        command = FinishBackfill(
            progress=progress, rules=tuple(self._rules(self._spec(state.request.workflow)))
        )

        def decide(current: Any) -> Sequence[Event]:
            return decide_backfill(current, command) if current is not None else []

        await apply_to_stream(
            self.store, stream, lambda records: backfill_state(r.event for r in records), decide
        )

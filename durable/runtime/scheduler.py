"""The scheduler: creates the runs of scheduled workflows, exactly once per tick.

One scheduler is active at a time across processes: the store elects the leader (on
PostgreSQL, a session-level advisory lock on a connection of its own; when the leader
dies, the lock goes with its connection and a standby takes over). Exactly-once does not rest on the leadership:
every tick's run is created with the dedup key ``schedule:{workflow}:{logical time}``,
and the schedule's cursor is derived from the runs themselves (the latest logical time
run), so a leader killed mid-tick neither loses nor doubles a tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from durable.application.runs import create_run
from durable.application.schedules import schedule_status, scheduled_params
from durable.core.errors import IdempotencyConflict, StoreError
from durable.core.events import Trigger
from durable.core.schedule import due_ticks
from durable.core.spec import WorkflowSpec
from durable.runtime.outage import Outage
from durable.store.base import EventStore, Lead
from durable.workflows.loader import WorkflowRegistry

__all__ = ["Scheduler"]

log = logging.getLogger("durable.runtime.scheduler")

STORE_TIMEOUT = 30.0
"""Seconds an election or a leadership check may take before it counts as PostgreSQL being away."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Scheduler:
    """Fires the ticks of every scheduled workflow in ``registry`` while it leads."""

    def __init__(
        self,
        store: EventStore,
        registry: WorkflowRegistry,
        *,
        clock: Callable[[], datetime] = _utcnow,
        poll_interval: float = 1.0,
        tolerance: timedelta = timedelta(seconds=60),
        database: Outage | None = None,
    ) -> None:
        self.store = store
        self.registry = registry
        self.clock = clock
        self.poll_interval = poll_interval
        self.tolerance = tolerance
        self.leading = asyncio.Event()
        self.standby_rounds = 0  # times it found another scheduler leading (a test's sign)
        self.database = database or Outage("PostgreSQL (scheduler)", log)
        """Where outages are reported: pass the executor's to share its lines."""

    @property
    def scheduled(self) -> list[WorkflowSpec]:
        return [w.spec for w in self.registry if w.spec.schedule is not None]

    async def run(self, stop: asyncio.Event) -> None:
        """Stand by until this process leads, then tick every ``poll_interval``.

        PostgreSQL going away takes the leadership with it (the lock lives on a
        connection): the scheduler stops leading, reports the outage once, and stands
        for election again once the database is back.
        """
        while not stop.is_set():
            try:
                await self._stand(stop)
            except (StoreError, TimeoutError) as exc:
                self.database.failed(exc)
                await self.database.backoff(stop)

    async def _stand(self, stop: asyncio.Event) -> None:
        """One election, and the leadership it brings until it is lost."""
        lead: Lead | None = None
        try:
            async with asyncio.timeout(STORE_TIMEOUT):
                lead = await self.store.leadership.try_lead("scheduler")
            self.database.ok()
            if lead is None:
                self.standby_rounds += 1
                await _wait(stop, self.poll_interval)
                return
            self.leading.set()
            log.info("scheduler: leading")
            while not stop.is_set():
                await self.tick()  # the store's calls carry their own timeouts
                async with asyncio.timeout(STORE_TIMEOUT):
                    await lead.check()  # still connected, still leading
                self.database.ok()
                await _wait(stop, self.poll_interval)
        finally:
            if self.leading.is_set():
                self.leading.clear()
                if not stop.is_set():
                    log.info("scheduler: no longer leading")
            if lead is not None:
                await lead.release()

    async def tick(self) -> list[str]:
        """Create the runs due now; returns the ids of runs created by this call."""
        created: list[str] = []
        now = self.clock()
        for spec in self.scheduled:
            assert spec.schedule is not None
            status = await schedule_status(self.store, spec)
            if status["paused"]:
                continue
            ticks = due_ticks(
                spec.schedule,
                status["last_end"],
                now,
                first_seen=status["first_seen"] or now,
                tolerance=self.tolerance,
            )
            for tick in ticks:
                try:
                    run_id, new = await create_run(
                        self.store,
                        spec,
                        scheduled_params(spec, tick),
                        idempotency_key=f"schedule:{spec.name}:{tick.start.isoformat()}",
                        trigger=Trigger(
                            kind="schedule",
                            source=spec.schedule.cron or f"every {spec.schedule.every:g} s",
                            logical_time=tick.start,
                            data_interval_start=tick.start,
                            data_interval_end=tick.end,
                        ),
                    )
                except IdempotencyConflict:
                    # the tick's key is deterministic: a run made with other params (an
                    # older version's defaults) already covers this interval
                    continue
                if new:
                    created.append(run_id)
        return created


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)

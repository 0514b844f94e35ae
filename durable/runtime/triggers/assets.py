"""Data-aware triggers: when a task updates an asset, the workflows that depend on it run.

The log says which assets each completion updated (``TaskSucceeded.assets``). This service
tails the log from a position it stores, keeps ``durable.assets`` (each asset's latest
update and the run and task that produced it: lineage), and starts the dependent
workflows' runs with the dedup key ``asset:{workflow}:{asset}:{stream}:{seq}`` — exactly
once per update, however often the log is re-read.
"""

from __future__ import annotations

import asyncio
import logging

from durable.application.runs import create_run
from durable.core.errors import IdempotencyConflict, StoreError
from durable.core.events import Recorded, RunCreated, TaskSucceeded, Trigger
from durable.core.spec import WorkflowSpec
from durable.runtime.outage import Outage
from durable.store.base import EventStore
from durable.store.rows import AssetUpdate
from durable.workflows.loader import WorkflowRegistry

__all__ = ["AssetService"]

log = logging.getLogger("durable.runtime.triggers.assets")
READER = "assets"


class AssetService:
    def __init__(
        self,
        store: EventStore,
        registry: WorkflowRegistry,
        *,
        poll_interval: float = 1.0,
        database: Outage | None = None,
    ) -> None:
        self.store = store
        self.poll_interval = poll_interval
        self.consumers: dict[str, list[WorkflowSpec]] = {}
        for loaded in registry:
            for asset in loaded.spec.on_assets:
                self.consumers.setdefault(asset, []).append(loaded.spec)
        self.position = 0
        self.database = database or Outage("PostgreSQL (asset trigger)", log)

    async def run(self, stop: asyncio.Event) -> None:
        """Follow the log until ``stop``; PostgreSQL going away is reported once, and the
        log is read on from the stored position once it is back."""
        while not stop.is_set():
            try:
                read = await self.catch_up()
                self.database.ok()
                if not read:
                    await self.store.wait_for_events(self.position, self.poll_interval)
            except StoreError as exc:
                self.database.failed(exc)
                await self.database.backoff(stop)

    async def catch_up(self) -> int:
        """Process one page of the log past the stored position; returns events read."""
        self.position = await self.store.tracking.log_position(READER)
        page = await self.store.read_all(self.position, 5000)
        updates = [r for r in page if isinstance(r.event, TaskSucceeded) and r.event.assets]
        for recorded in updates:
            await self._updated(recorded)
        if page:
            await self.store.tracking.set_log_position(READER, page[-1].position)
            self.position = page[-1].position
        return len(page)

    async def _updated(self, recorded: Recorded) -> None:
        event = recorded.event
        assert isinstance(event, TaskSucceeded)
        run_id = recorded.stream_id.removeprefix("run:")
        first = (await self.store.read_stream(recorded.stream_id))[0].event
        workflow = first.workflow if isinstance(first, RunCreated) else "?"
        await self.store.tracking.upsert_assets(
            [
                AssetUpdate(
                    asset=a,
                    workflow=workflow,
                    run_id=run_id,
                    task=event.task,
                    generation=event.generation,
                    updated_at=recorded.recorded_at,
                    position=recorded.position,
                )
                for a in event.assets
            ]
        )
        for asset in event.assets:
            for spec in self.consumers.get(asset, []):
                try:
                    await create_run(
                        self.store,
                        spec,
                        {},
                        idempotency_key=f"asset:{spec.name}:{asset}:{recorded.stream_id}:{recorded.seq}",
                        trigger=Trigger(kind="asset", source=f"{asset}@{run_id}"),
                    )
                except IdempotencyConflict as exc:
                    # the key names one update: a run with other params (an older version's
                    # defaults) already answered it
                    log.warning("asset trigger: %s; not started again", exc)

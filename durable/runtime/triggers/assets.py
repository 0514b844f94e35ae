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

import asyncpg

from durable.application.runs import start_run
from durable.core.events import Recorded, RunCreated, TaskSucceeded, Trigger
from durable.core.spec import WorkflowSpec
from durable.store.postgres import PostgresEventStore
from durable.workflows.loader import WorkflowRegistry

__all__ = ["AssetService"]

log = logging.getLogger("durable.runtime.triggers.assets")
READER = "assets"


class AssetService:
    def __init__(
        self, store: PostgresEventStore, registry: WorkflowRegistry, *, poll_interval: float = 1.0
    ) -> None:
        self.store = store
        self.poll_interval = poll_interval
        self.consumers: dict[str, list[WorkflowSpec]] = {}
        for loaded in registry:
            for asset in loaded.spec.on_assets:
                self.consumers.setdefault(asset, []).append(loaded.spec)
        self.position = 0

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                if not await self.catch_up():
                    await self.store.wait_for_events(self.position, self.poll_interval)
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("asset trigger: %s; retrying", exc)
                await asyncio.sleep(self.poll_interval)

    async def catch_up(self) -> int:
        """Process one page of the log past the stored position; returns events read."""
        async with self.store.pool.acquire() as conn:
            self.position = int(
                await conn.fetchval(
                    "SELECT COALESCE((SELECT position FROM durable.log_positions WHERE reader = $1), 0)",
                    READER,
                )
            )
        page = await self.store.read_all(self.position, 5000)
        updates = [r for r in page if isinstance(r.event, TaskSucceeded) and r.event.assets]
        for recorded in updates:
            await self._updated(recorded)
        if page:
            async with self.store.pool.acquire() as conn:
                await conn.execute(
                    "INSERT INTO durable.log_positions (reader, position) VALUES ($1, $2) "
                    "ON CONFLICT (reader) DO UPDATE SET position = excluded.position",
                    READER,
                    page[-1].position,
                )
            self.position = page[-1].position
        return len(page)

    async def _updated(self, recorded: Recorded) -> None:
        event = recorded.event
        assert isinstance(event, TaskSucceeded)
        run_id = recorded.stream_id.removeprefix("run:")
        first = (await self.store.read_stream(recorded.stream_id))[0].event
        workflow = first.workflow if isinstance(first, RunCreated) else "?"
        async with self.store.pool.acquire() as conn:
            await conn.executemany(
                "INSERT INTO durable.assets (asset, workflow, run_id, task, generation, updated_at, "
                "position) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (asset) DO UPDATE SET "
                "workflow = excluded.workflow, run_id = excluded.run_id, task = excluded.task, "
                "generation = excluded.generation, updated_at = excluded.updated_at, "
                "position = excluded.position WHERE durable.assets.position < excluded.position",
                [
                    (
                        a,
                        workflow,
                        run_id,
                        event.task,
                        event.generation,
                        recorded.recorded_at,
                        recorded.position,
                    )
                    for a in event.assets
                ],
            )
        for asset in event.assets:
            for spec in self.consumers.get(asset, []):
                await start_run(
                    self.store,
                    spec,
                    {},
                    idempotency_key=f"asset:{spec.name}:{asset}:{recorded.stream_id}:{recorded.seq}",
                    trigger=Trigger(kind="asset", source=f"{asset}@{run_id}"),
                )

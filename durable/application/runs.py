"""Runs as use cases: creating a run (for every door: API, webhooks, Kafka, S3,
schedules, backfills, the CLI) and recording the workflow versions a process serves."""

from __future__ import annotations

from typing import Any

import asyncpg
import msgspec

from durable.application.ids import new_run_id
from durable.core.errors import DuplicateRun
from durable.core.events import RunCreated, Trigger, run_stream
from durable.core.spec import WorkflowSpec, coerce_params
from durable.store.postgres import PostgresEventStore
from durable.workflows.loader import WorkflowRegistry

__all__ = ["register_versions", "start_run"]


async def register_versions(pool: asyncpg.Pool, registry: WorkflowRegistry) -> None:
    """Record every loaded workflow version (``durable versions`` lists them)."""
    rows = [
        (w.spec.name, w.spec.version, msgspec.json.encode(w.spec.to_dict()), w.spec.source)
        for w in registry
    ]
    async with pool.acquire() as conn:
        await conn.executemany(
            "INSERT INTO durable.workflow_versions (workflow, version, definition, source) "
            "VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            rows,
        )


async def start_run(
    store: PostgresEventStore,
    spec: WorkflowSpec,
    params: dict[str, Any],
    *,
    run_id: str | None = None,
    idempotency_key: str | None = None,
    trigger: Trigger | None = None,
) -> tuple[str, bool]:
    """Create a run of ``spec``: durable once this returns. ``(run_id, created)``; with
    an idempotency key already used, the existing run's id and ``False``."""
    values = coerce_params(spec.params, params, where=f"workflow {spec.name!r}")
    run_id = run_id or new_run_id()
    created = RunCreated(
        run_id=run_id,
        workflow=spec.name,
        version=spec.version,
        tasks=spec.nodes(),
        params=values,
        trigger=trigger or Trigger(kind="manual"),
        idempotency_key=idempotency_key,
    )
    try:
        await store.append(run_stream(run_id), 0, [created])
    except DuplicateRun as exc:
        return exc.existing_run_id, False
    return run_id, True

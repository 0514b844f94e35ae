"""Runs as use cases: creating a run (for every door: API, webhooks, Kafka, S3,
schedules, backfills, the CLI) and recording the workflow versions a process serves."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from durable.application.ids import new_run_id
from durable.core.errors import DuplicateRun, IdempotencyConflict
from durable.core.events import RunCreated, Trigger, run_stream
from durable.core.params import parse_text_params, validate_params
from durable.core.runs_view import same_request
from durable.core.spec import WorkflowSpec
from durable.store.base import EventStore
from durable.store.rows import NewVersion
from durable.workflows.loader import WorkflowRegistry

__all__ = ["create_run", "register_versions"]


async def register_versions(store: EventStore, registry: WorkflowRegistry) -> None:
    """Record every loaded workflow version with the text of its file (``durable
    versions`` lists them)."""
    await store.versions.register(
        [
            NewVersion(
                workflow=w.spec.name,
                version=w.spec.version,
                definition=msgspec.json.encode(w.spec.to_dict()),
                source=w.spec.source,
                source_text=w.source_text,
            )
            for w in registry
        ]
    )


async def create_run(
    store: EventStore,
    spec: WorkflowSpec,
    params: dict[str, Any],
    *,
    run_id: str | None = None,
    idempotency_key: str | None = None,
    trigger: Trigger | None = None,
    params_from: Literal["json", "text"] = "json",
) -> tuple[str, bool]:
    """Create a run of ``spec``: durable once this returns. ``(run_id, created)``.

    ``params`` are JSON values validated against their declared types, never converted
    (``params_from="json"``: the API, webhooks, Kafka payloads), or text parsed into them
    (``"text"``: the CLI's ``--param``, query strings, Kafka headers, S3 keys); a value
    that does not fit raises :class:`~durable.core.params.ParamError` and records
    nothing. An
    idempotency key already used for the same request (workflow, params, logical time)
    gives the existing run's id and ``False``; used for another request, it raises
    :class:`~durable.core.errors.IdempotencyConflict` and records nothing.
    """
    where = f"workflow {spec.name!r}"
    values = (
        parse_text_params(spec.params, params, where=where)
        if params_from == "text"
        else validate_params(spec.params, params, where=where)
    )
    run_id = run_id or new_run_id()
    trigger = trigger or Trigger(kind="manual")
    created = RunCreated(
        run_id=run_id,
        workflow=spec.name,
        version=spec.version,
        tasks=spec.nodes(),
        params=values,
        trigger=trigger,
        idempotency_key=idempotency_key,
    )
    try:
        await store.append(run_stream(run_id), 0, [created])
    except DuplicateRun as exc:
        existing = (await store.runs_by_keys([exc.idempotency_key])).get(exc.idempotency_key)
        if existing is not None and not same_request(
            existing, spec.name, values, trigger.logical_time
        ):
            raise IdempotencyConflict(exc.idempotency_key, exc.existing_run_id) from None
        return exc.existing_run_id, False
    return run_id, True

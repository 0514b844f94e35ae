"""Starting a run through an HTTP door (``POST .../runs`` and the webhook) with the
``Idempotency-Key`` rule they share: the same key is the same run; the same key with
other params (or another logical time) is refused with a 409 naming the key, and
nothing is recorded.
"""

from __future__ import annotations

from typing import Any

import msgspec

from durable.api.routing import ApiError
from durable.application.runs import start_run
from durable.core.errors import StreamNotFound
from durable.core.events import Trigger, run_stream
from durable.core.spec import WorkflowSpec
from durable.store.postgres import PostgresEventStore

__all__ = ["start_http_run"]


async def start_http_run(
    store: PostgresEventStore,
    spec: WorkflowSpec,
    values: dict[str, Any],
    *,
    key: str | None,
    trigger: Trigger,
) -> tuple[str, bool]:
    """``(run_id, created)`` of the run ``key`` names (``values`` already coerced);
    :class:`ApiError` 409 when that key started a run with other params."""
    run_id, created = await start_run(
        store,
        spec,
        values,
        idempotency_key=f"http:{spec.name}:{key}" if key else None,
        trigger=trigger,
    )
    if created:
        return run_id, created
    row = await store.get_run(run_id)
    if row is None:  # start_run just found the key's run: only a deleted run gets here
        raise StreamNotFound(run_stream(run_id), what=f"run {run_id} of Idempotency-Key {key!r}")
    same = _canonical(row.params) == _canonical(values) and (
        row.logical_time == trigger.logical_time
    )
    if not same:
        raise ApiError(
            409,
            "idempotency key reused",
            f"Idempotency-Key {key!r} already started run {run_id} with other params "
            f"or logical_date; use a new key for a different request",
        )
    return run_id, created


def _canonical(params: dict[str, Any]) -> bytes:
    return msgspec.json.encode(msgspec.json.decode(msgspec.json.encode(params)), order="sorted")

"""Starting a run through an HTTP door (``POST .../runs`` and the webhook) with the
``Idempotency-Key`` rule every door shares (:func:`~durable.application.runs.create_run`):
the same key is the same run; the same key with other params (or another logical time)
is refused with a 409 naming the key, and nothing is recorded.
"""

from __future__ import annotations

from typing import Any

from durable.api.routing import ApiError
from durable.application.runs import create_run
from durable.core.errors import IdempotencyConflict
from durable.core.events import Trigger
from durable.core.spec import DefinitionError, WorkflowSpec
from durable.store.base import EventStore

__all__ = ["start_http_run"]


async def start_http_run(
    store: EventStore,
    spec: WorkflowSpec,
    params: dict[str, Any],
    *,
    key: str | None,
    trigger: Trigger,
) -> tuple[str, bool]:
    """``(run_id, created)`` of the run ``key`` names; ``params`` are the body's JSON
    values, validated against their declared types (400 naming field, type and value);
    :class:`ApiError` 409 when that key started a run with other params."""
    try:
        return await create_run(
            store,
            spec,
            params,
            idempotency_key=f"http:{spec.name}:{key}" if key else None,
            trigger=trigger,
        )
    except DefinitionError as exc:  # ParamError included: field, type and value
        raise ApiError(400, "bad params", exc.message) from None
    except IdempotencyConflict as exc:
        raise ApiError(
            409,
            "idempotency key reused",
            f"Idempotency-Key {key!r} already started run {exc.existing_run_id} with other "
            "params or logical_date; use a new key for a different request",
        ) from None

"""``/api/v1/dead-letters``: trigger messages that could not start a run, and why
(newest first), with a readable preview of their key and value."""

from __future__ import annotations

from durable.api import schemas as s
from durable.api.routing import V1, Call, resource, route

__all__ = ["ROUTES", "preview"]

PREVIEW = 500
"""Characters of a key or value shown."""


def preview(data: bytes | None) -> str | None:
    """The first :data:`PREVIEW` characters of ``data`` read as UTF-8, undecodable bytes
    replaced (a binary payload still shows, and never fails the answer)."""
    if data is None:
        return None
    # a character is at most 4 bytes: the cut falls after the last character shown
    return data[: 4 * PREVIEW].decode("utf-8", errors="replace")[:PREVIEW]


@route(
    "GET",
    f"{V1}/dead-letters",
    summary="Trigger messages that could not start a run, newest first",
    scope="read",
    query=s.DeadLettersQuery,
    responses={200: s.DeadLetterList},
)
async def list_dead_letters(call: Call[None, s.DeadLettersQuery]) -> s.DeadLetterList:
    rows = await call.deps.store.tracking.dead_letters(call.query.limit)
    return s.DeadLetterList(
        dead_letters=[
            s.DeadLetterView(
                id=d.id,
                source=d.source,
                topic=d.topic,
                partition=d.partition,
                offset=d.offset,
                workflow=d.workflow,
                reason=d.reason,
                recorded_at=d.received_at,
                key_preview=preview(d.key),
                value_preview=preview(d.value),
                headers=d.headers,
            )
            for d in rows
        ]
    )


ROUTES = resource("dead-letters", list_dead_letters)

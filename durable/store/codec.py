"""Events on their way into a store: validated and encoded once, the same for every store.

The registry's codec turns an event into ``(tag, version, JSON)``; this adds what every
store refuses the same way (a NUL the database cannot hold, a misplaced ``RunCreated``).
"""

from __future__ import annotations

from collections.abc import Sequence

from durable.core.errors import MalformedEvent
from durable.core.events import Event, EventRegistry, RunCreated, run_stream

__all__ = ["check_append", "check_stream_id", "encode_event"]


def check_stream_id(stream_id: str) -> None:
    if not stream_id or "\x00" in stream_id or len(stream_id) > 512:
        raise MalformedEvent(
            f"stream id {stream_id!r}", "must be 1 to 512 characters with no NUL byte"
        )


def check_append(stream_id: str, expected_seq: int, events: Sequence[Event]) -> None:
    """What an append must be, whatever the store: a valid stream, at least one event,
    and a ``RunCreated`` only as the first event of its own new run stream."""
    check_stream_id(stream_id)
    if expected_seq < 0:
        raise ValueError(f"expected_seq must be >= 0, not {expected_seq}")
    if not events:
        raise ValueError("append needs at least one event")
    for i, e in enumerate(events):
        if isinstance(e, RunCreated) and (
            i != 0 or expected_seq != 0 or stream_id != run_stream(e.run_id)
        ):
            raise MalformedEvent(
                f"stream {stream_id!r}",
                f"run_created for run {e.run_id!r} must be the first event of stream "
                f"{run_stream(e.run_id)!r} (expected_seq 0)",
                hint="create each run in its own new stream",
            )


def encode_event(registry: EventRegistry, stream_id: str, event: Event) -> tuple[str, int, bytes]:
    """``(tag, version, JSON)`` of an event to store."""
    tag, version, data = registry.encode(event)
    if b"\\u0000" in data:
        # PostgreSQL's jsonb cannot hold NUL; every store refuses it alike.
        raise MalformedEvent(
            f"stream {stream_id!r} event {tag}",
            "contains a NUL character (\\u0000), which PostgreSQL cannot store",
            hint="strip NUL characters from outputs and params",
        )
    return tag, version, data

"""Applying a decision to a stream: load, fold, decide, append fenced; on a conflict,
load again and decide again on the new state.

Operator commands on runs, schedules and backfills all change their stream this way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from durable.core.errors import ConcurrencyConflict
from durable.core.events import Event, Recorded
from durable.store.base import EventLog

__all__ = ["apply_to_stream"]

S = TypeVar("S")


async def apply_to_stream(
    store: EventLog,
    stream_id: str,
    fold: Callable[[Sequence[Recorded]], S],
    decide: Callable[[S], Sequence[Event]],
    *,
    attempts: int = 10,
) -> tuple[S, list[Recorded]]:
    """The state ``decide`` was last asked on, and what was appended (``[]``: the
    decision was already in effect). ``decide`` raises when the command cannot apply;
    after ``attempts`` conflicts in a row, ConcurrencyConflict."""
    for _ in range(attempts):
        records = await store.read_stream(stream_id)
        state = fold(records)
        events = list(decide(state))
        if not events:
            return state, []
        try:
            recorded = await store.append(stream_id, records[-1].seq if records else 0, events)
        except ConcurrencyConflict:
            continue  # another writer appended meanwhile: decide again on the new state
        return state, recorded
    raise ConcurrencyConflict(stream_id, -1)

"""Applying an operator's command to a run: decide, append fenced, wake its executor."""

from __future__ import annotations

from durable.core.decide import Command, decide_command
from durable.core.errors import ConcurrencyConflict, StreamNotFound
from durable.core.events import Recorded, run_stream
from durable.core.fold import fold
from durable.core.state import RunState
from durable.store.postgres import CONTROL_CHANNEL, PostgresEventStore

__all__ = ["apply_command"]


async def apply_command(
    store: PostgresEventStore, run_id: str, command: Command
) -> tuple[RunState, list[Recorded]]:
    """The run's state the command was decided on, and the events it appended (``[]``
    when it was already in effect). Raises ``CommandRejected`` when it cannot apply."""
    for _ in range(10):
        state = fold(await store.read_stream(run_stream(run_id)))
        if state is None:
            raise StreamNotFound(run_stream(run_id), what=f"run {run_id!r}")
        events = decide_command(state, command)
        if not events:
            return state, []
        try:
            recorded = await store.append(run_stream(run_id), state.last_seq, events)
        except ConcurrencyConflict:
            continue  # the executor appended meanwhile: decide again on the new state
        await store.notify(CONTROL_CHANNEL, run_id)
        return state, recorded
    raise ConcurrencyConflict(run_stream(run_id), -1)

"""Applying an operator's command to a run: decide, append fenced, wake its executor."""

from __future__ import annotations

from collections.abc import Sequence

from durable.application.streams import apply_to_stream
from durable.core.decide import Command, decide_command
from durable.core.errors import RunArchived, StreamNotFound
from durable.core.events import Event, Recorded, run_stream
from durable.core.fold import fold
from durable.core.state import RunState
from durable.store.base import EventStore

__all__ = ["apply_command"]


async def apply_command(
    store: EventStore, run_id: str, command: Command
) -> tuple[RunState, list[Recorded]]:
    """The run's state the command was decided on, and the events it appended (``[]``
    when it was already in effect). Raises ``CommandRejected`` when it cannot apply,
    ``RunArchived`` when the run is archived."""

    def fold_run(records: Sequence[Recorded]) -> RunState:
        state = fold(records)
        if state is None:
            raise StreamNotFound(run_stream(run_id), what=f"run {run_id!r}")
        return state

    def decide(state: RunState) -> list[Event]:
        return decide_command(state, command)

    try:
        state, recorded = await apply_to_stream(store, run_stream(run_id), fold_run, decide)
    except StreamNotFound:
        archive = await store.archives.get(run_id)
        if archive is not None:  # its events left the log: it cannot change
            raise RunArchived(run_id, archive.uri, archive.archived_at) from None
        raise
    if recorded:
        await store.wakeups.notify_control(run_id)
    return state, recorded

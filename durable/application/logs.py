"""Following a run's task logs: the lines as they are stored, until the run (or the task
followed) has ended and every line stored before that was given.

The HTTP API's log stream and ``durable logs --follow`` both follow this way. Lines are
polled (there is no wake-up per log batch): a short interval, each round two indexed
reads — the run's new events and the lines after the last id given.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from dataclasses import dataclass

from durable.application.archive import ArchiveReader, run_logs
from durable.core.errors import StreamNotFound
from durable.core.events import run_stream
from durable.core.fold import evolve, fold
from durable.core.state import RunState, RunStatus, TaskStatus
from durable.store.base import EventStore
from durable.store.rows import LogLine

__all__ = ["POLL_INTERVAL", "LogsEnded", "follow_logs", "logs_ended"]

POLL_INTERVAL = 0.25
"""Seconds between two looks for new lines."""
_PAGE = 1000
_FINISHED_TASK: frozenset[str] = frozenset({"succeeded", "failed", "skipped", "cancelled"})


@dataclass(frozen=True, kw_only=True)
class LogsEnded:
    """The run (or the task followed) ended; every line stored before was given."""

    status: RunStatus
    """The run's status."""
    task: str | None = None
    task_status: TaskStatus | None = None


def logs_ended(state: RunState, task: str | None) -> LogsEnded | None:
    """Whether no more lines can come: the run has ended, or ``task`` is neither running
    nor waiting to run (pending, scheduled, retrying) any more."""
    t = state.tasks.get(task) if task is not None else None
    ended = state.is_terminal or (t is not None and t.status in _FINISHED_TASK)
    if not ended:
        return None
    return LogsEnded(
        status=state.status, task=task, task_status=t.status if t is not None else None
    )


async def follow_logs(
    store: EventStore,
    run_id: str,
    *,
    task: str | None = None,
    attempt: int | None = None,
    after: int = 0,
    poll: float = POLL_INTERVAL,
    archives: ArchiveReader | None = None,
) -> AsyncGenerator[list[LogLine] | LogsEnded, None]:
    """The run's lines with id > ``after`` (of ``task`` / ``attempt`` if given) as they
    are stored: a list of lines each round (empty when none came: the caller may send a
    keep-alive, or see that its client left), then :class:`LogsEnded` once the run or the
    task has ended and the lines stored before that were all given.

    An attempt's last lines are stored before its outcome is appended, so the lines read
    after seeing the end are all there are (but those of an attempt stopped by a cancel,
    stored as it stops). An archived run's lines are read from its archive (with
    ``archives``), then its end. Raises StreamNotFound when the run does not exist.
    """
    stream = run_stream(run_id)
    state: RunState | None = None
    while True:
        # the run's state first, its lines after: an end seen here has all its lines in
        for r in await store.read_stream(stream, state.last_seq if state else 0):
            state = evolve(state, r)
        if state is None:
            archive = await store.archives.get(run_id)
            if archive is None:
                raise StreamNotFound(stream, what=f"run {run_id}")
            # archived: it has ended, every line is in its archive
            reader = archives or ArchiveReader()
            try:
                state = fold(await reader.events(archive))
                assert state is not None  # an archive holds a whole run
                lines = await run_logs(
                    store, run_id, reader, task=task, attempt=attempt, after=after, archive=archive
                )
            finally:
                if archives is None:  # its own: closed here
                    await reader.close()
            if lines:
                yield lines
            yield logs_ended(state, task) or LogsEnded(status=state.status, task=task)
            return
        ended = logs_ended(state, task)
        while True:
            lines = await store.logs.read(run_id, task, attempt, _PAGE, after)
            if lines:
                after = lines[-1].id
                yield lines
            if len(lines) < _PAGE:
                break
        if ended is not None:
            yield ended
            return
        if not lines:
            yield lines
        await asyncio.sleep(poll)

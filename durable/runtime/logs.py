"""Task logs on their way to the store: written while the attempt runs, in small batches.

Each attempt's :class:`~durable.workflows.context.TaskLog` only buffers (a task never
waits on the database to log a line); its :class:`LiveLog` writes what waits 200 ms after
the first line of a batch, or as soon as 100 lines wait, one write at a time per attempt.
The executor's :class:`LogWriter` bounds how many batches are written at once (one by
default, of at most 5,000 lines), so however chatty the tasks, their logs take at most
one of the pool's connections, and one PostgreSQL backend, from the executor's appends: a
backlog only makes the next batches bigger. (Four tasks logging as fast as they can with
a 1 GB cap, on 2 cores: 300 runs beside them took 18 s with one writer, 29 s with two,
34 s with three; 1.3 s alone.)

Writes are best effort and never fail a task: a batch that met an outage waits again (the
attempt's byte cap bounds what can wait) and goes with the next flush; one PostgreSQL
refused is dropped with a warning. An attempt's last batch is written before its outcome
is appended (the driver tries again before each try of the outcome), so when a run is
seen finished, its lines are in the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading

from durable.core.errors import StoreUnavailable
from durable.runtime.outage import Outage
from durable.store.base import TaskLogs
from durable.workflows.context import DEFAULT_LOG_MAX_BYTES, LogLineTuple, TaskLog

__all__ = ["FLUSH_INTERVAL", "FLUSH_LINES", "LiveLog", "LogWriter"]

log = logging.getLogger("durable.runtime.logs")

FLUSH_INTERVAL = 0.2
"""Seconds a line may wait before its batch is written."""
FLUSH_LINES = 100
"""Lines that make a batch worth writing at once."""
WRITE_TIMEOUT = 10.0
"""Seconds a batch's write may take before PostgreSQL counts as away (each write times
out, so a turn is never waited for forever)."""
MAX_BATCH = 5000
"""Lines written in one statement at most (a backlog goes in several)."""
MAX_BACKOFF = 5.0


class LogWriter:
    """The executor's writer of task logs: the store, the cap, and the bound on how many
    batches are written at once."""

    def __init__(
        self,
        logs: TaskLogs,
        *,
        max_bytes: int = DEFAULT_LOG_MAX_BYTES,
        concurrency: int = 1,
        interval: float = FLUSH_INTERVAL,
        batch: int = FLUSH_LINES,
        outage: Outage | None = None,
    ) -> None:
        self.logs = logs
        self.max_bytes = max_bytes
        self.interval = interval
        self.batch = batch
        self.outage = outage
        """Told when PostgreSQL is away (one line for the whole executor)."""
        self.turns = asyncio.Semaphore(concurrency)

    def open(self, run_id: str, task: str, generation: int, attempt: int) -> LiveLog:
        """The log of one attempt (not yet flushing: :meth:`LiveLog.start`)."""
        return LiveLog(self, run_id, task, generation, attempt)


class LiveLog:
    """One attempt's log and its background flusher."""

    def __init__(
        self, writer: LogWriter, run_id: str, task: str, generation: int, attempt: int
    ) -> None:
        self._writer = writer
        self._key = (run_id, task, generation, attempt)
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self._waiting = asyncio.Event()  # a line waits
        self._full = asyncio.Event()  # a batch waits
        self._one_write = asyncio.Lock()  # an attempt's batches in order: numbers, ids
        self._task: asyncio.Task[None] | None = None
        self._failures = 0
        self._warned = False
        self.log = TaskLog(max_bytes=writer.max_bytes, batch=writer.batch, notify=self._notify)
        """What the task writes to (``ctx.log``)."""

    @property
    def unsent(self) -> bool:
        """Lines wait that are not stored yet."""
        return bool(self.log.lines)

    def _notify(self, full: bool) -> None:
        if threading.get_ident() == self._thread:
            self._wake(full)
        else:
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody flushes
                self._loop.call_soon_threadsafe(self._wake, full)

    def _wake(self, full: bool) -> None:
        self._waiting.set()
        if full:
            self._full.set()

    def start(self) -> None:
        """Flush in the background until :meth:`close`."""
        run_id, task, _, attempt = self._key
        self._task = asyncio.create_task(
            self._flushing(), name=f"durable-log-{run_id}-{task}-{attempt}"
        )

    async def _flushing(self) -> None:
        writer = self._writer
        while True:
            await self._waiting.wait()
            if not self._full.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), writer.interval)
            if not await self.flush():
                await asyncio.sleep(min(MAX_BACKOFF, writer.interval * 2.0**self._failures))

    async def flush(self) -> bool:
        """Write the lines that wait, in batches of at most :data:`MAX_BATCH`; False when
        they could not all be: PostgreSQL away (they wait again), or refused (a refused
        batch is lost, with one warning per attempt)."""
        async with self._one_write:
            self._waiting.clear()
            self._full.clear()
            while True:
                first, lines = self.log.take(MAX_BATCH)
                if not lines:
                    self._failures = 0
                    return True
                if not await self._write(first, lines):
                    return False

    async def _write(self, first: int, lines: list[LogLineTuple]) -> bool:
        try:
            async with self._writer.turns, asyncio.timeout(WRITE_TIMEOUT):
                await self._writer.logs.write(*self._key, lines, first)
        except (StoreUnavailable, TimeoutError, asyncio.CancelledError) as exc:
            # unknown whether they were stored: written again, their line numbers make
            # the second write a no-op if the first one was
            self.log.give_back(first, lines)
            self._waiting.set()
            if isinstance(exc, asyncio.CancelledError):
                raise
            self._failures += 1
            if self._writer.outage is not None:
                self._writer.outage.failed(exc)
            return False
        except Exception as exc:  # refused, not away: trying again would not help
            if not self._warned:
                self._warned = True
                run_id, task, _, attempt = self._key
                log.warning(
                    "run %s: task %s#%d: %d log line(s) not stored: %s: %s",
                    run_id,
                    task,
                    attempt,
                    len(lines),
                    type(exc).__name__,
                    exc,
                )
            return False
        return True

    async def close(self) -> bool:
        """The attempt ended: stop flushing in the background and write what is left, the
        count of dropped lines included; False when that failed (:attr:`unsent`)."""
        if self._task is not None:
            task, self._task = self._task, None
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self.log.close()
        return await self.flush()

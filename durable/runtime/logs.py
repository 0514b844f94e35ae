"""Task logs on their way to the store: written while the attempt runs, in small batches.

Each attempt's :class:`~durable.workflows.context.TaskLog` only buffers (a task never
waits on the database to log a line); its :class:`LiveLog` writes what waits 200 ms after
the first line of a batch, or as soon as 100 lines wait, one write at a time per attempt.
The executor's :class:`LogWriter` writes one batch (of at most 5,000 lines) at a time,
so however chatty the tasks, their logs take at most one of the pool's connections, and
one PostgreSQL backend, from the executor's appends: a backlog only makes the next
batches bigger. (Four tasks logging as fast as they can with a 1 GB cap, on 2 cores: 300
runs beside them took 18 s with one writer, 29 s with two, 34 s with three; 1.3 s alone.)

Writes are best effort and never fail a task: a batch that met an outage waits again (the
attempt's byte cap bounds what can wait) and goes with the next flush; a batch PostgreSQL
refuses is dropped with a warning. An attempt's last batch is written before its outcome
is appended (the driver tries again before each try of the outcome), so when a run is
seen finished, its lines are in the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time

from durable.core.errors import StoreUnavailable
from durable.core.log_lines import LogLines
from durable.runtime.outage import Outage
from durable.store.base import TaskLogs
from durable.workflows.context import DEFAULT_LOG_MAX_BYTES, TaskLog

__all__ = ["FLUSH_INTERVAL", "FLUSH_LINES", "LiveLog", "LogWriter", "NotWritten"]

log = logging.getLogger("durable.runtime.logs")

FLUSH_INTERVAL = 0.2
"""Seconds a line may wait before its batch is written."""
FLUSH_LINES = 100
"""Lines that make a batch worth writing at once."""
WRITE_TIMEOUT = 10.0
"""Seconds a batch's write (or the wait for its turn) may take before it counts as
failed."""
MAX_BATCH = 5000
"""Lines written in one statement at most (a backlog goes in several)."""
MAX_BACKOFF = 5.0
MIN_GAP = 0.1
"""An attempt's batches are at least this far apart (seconds): at most 10 writes a second
per attempt, however fast it prints (tests/bench/bench_logs.py)."""

LogKey = tuple[str, str, int, int]
"""``(run_id, task, generation, attempt)``."""


class NotWritten(Exception):
    """A batch was not written: PostgreSQL is away, or known to be a moment ago (then the
    batch was not even tried)."""


class LogWriter:
    """The executor's writer of task logs: the store, the cap, and the turn.

    One batch is written at a time, all attempts taking turns: whatever the tasks log,
    their logs hold at most one of the pool's connections (and one PostgreSQL backend)
    that the appends could use, and an attempt's batches commit in order. A write that
    times out is left to finish on its own (asyncpg may take a minute to give up a stalled
    connection), keeping the turn until it does: the next batches wait for it, or give up
    waiting and wait again, but never pile up on a stalled server.
    """

    def __init__(
        self,
        logs: TaskLogs,
        *,
        max_bytes: int = DEFAULT_LOG_MAX_BYTES,
        interval: float = FLUSH_INTERVAL,
        batch: int = FLUSH_LINES,
        outage: Outage | None = None,
        write_timeout: float = WRITE_TIMEOUT,
    ) -> None:
        self.logs = logs
        self.max_bytes = max_bytes
        self.interval = interval
        self.batch = batch
        self.outage = outage
        """Told when PostgreSQL is away (one line for the whole executor)."""
        self.write_timeout = write_timeout
        self.failed_writes = 0
        """Batches PostgreSQL was found away for (a test's positive sign)."""
        self._turn = asyncio.Lock()
        self._away_until = 0.0

    @property
    def away(self) -> bool:
        """A write found PostgreSQL away a moment ago, and nobody heard from it since (the
        outage is not over): the next batches wait for the next try rather than each wait
        out its own timeout (an executor stopping during an outage stops at once)."""
        if self.outage is not None and not self.outage.down:
            return False
        return time.monotonic() < self._away_until

    def open(self, run_id: str, task: str, generation: int, attempt: int) -> LiveLog:
        """The log of one attempt (not yet flushing: :meth:`LiveLog.start`)."""
        return LiveLog(self, (run_id, task, generation, attempt))

    async def write(self, key: LogKey, lines: LogLines, first: int) -> None:
        """Write one batch in its turn; raises NotWritten (it may still be written, if
        its write was only slow) and what PostgreSQL refused."""
        if self.away:
            raise NotWritten("PostgreSQL is away")
        try:
            async with asyncio.timeout(self.write_timeout):
                await self._turn.acquire()
        except TimeoutError:
            raise NotWritten("a stalled write still has the turn") from None
        if self.away:
            self._turn.release()
            raise NotWritten("PostgreSQL is away")
        write = asyncio.create_task(self.logs.write(*key, lines, first))
        write.add_done_callback(self._written)
        try:
            async with asyncio.timeout(self.write_timeout):
                await asyncio.shield(write)
        except (StoreUnavailable, TimeoutError) as exc:
            self.failed_writes += 1
            if self.outage is not None:
                self.outage.failed(exc)
            delay = self.outage.delay() if self.outage is not None else self.interval
            self._away_until = time.monotonic() + delay
            raise NotWritten(str(exc) or type(exc).__name__) from exc
        self._away_until = 0.0
        if self.outage is not None:
            self.outage.ok()

    def _written(self, write: asyncio.Task[None]) -> None:
        self._turn.release()
        if not write.cancelled():
            write.exception()  # seen by whoever waited, or late: nobody to tell


class LiveLog:
    """One attempt's log and its background flusher."""

    def __init__(self, writer: LogWriter, key: LogKey) -> None:
        self._writer = writer
        self._key = key
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
        return self.log.waiting > 0

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
        loop = asyncio.get_running_loop()
        last = -MIN_GAP
        while True:
            await self._waiting.wait()
            if not self._full.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), writer.interval)
            # a flood of output: fewer, larger batches, not one INSERT after another
            # competing with the event appends for PostgreSQL
            gap = last + MIN_GAP - loop.time()
            if gap > 0:
                await asyncio.sleep(gap)
            written = await self.flush()
            last = loop.time()
            if not written:
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

    async def _write(self, first: int, lines: LogLines) -> bool:
        try:
            await self._writer.write(self._key, lines, first)
        except (NotWritten, asyncio.CancelledError) as exc:
            # unknown whether they were stored: written again, their line numbers make
            # the second write a no-op if the first one was
            self._give_back(first, lines)
            if isinstance(exc, asyncio.CancelledError):
                raise
            self._failures += 1
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

    def _give_back(self, first: int, lines: LogLines) -> None:
        self.log.give_back(first, lines)
        self._waiting.set()

    async def close(self) -> bool:
        """The attempt ended: stop flushing in the background and write what is left, the
        count of dropped lines included; False when that failed (:attr:`unsent`)."""
        if self._task is not None:
            task, self._task = self._task, None
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self.log.close()
        return await self.flush()

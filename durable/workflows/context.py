"""What a task sees while it runs: the task context, and its log."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from durable.core.log_lines import LogLines, LogLineTuple, LogRun

__all__ = ["DEFAULT_LOG_MAX_BYTES", "LogLineTuple", "TaskContext", "TaskLog"]

DEFAULT_LOG_MAX_BYTES = 2 * 1024 * 1024
"""An attempt's log cap by default (2 MiB of message text)."""


class TaskLog:
    """A task attempt's log: its lines, in order, held until the executor stores them
    (while the attempt runs, in small batches).

    At most ``max_bytes`` of message text (a newline each counted) are kept per attempt;
    past that, one line says the log was truncated and further lines are only counted,
    and :meth:`close` adds one line saying how many were dropped. Safe to write from any
    thread (a sync task runs in one). ``notify(full)`` is called (from the writing thread)
    when the first line waits to be stored, and when ``batch`` lines wait.

    Time stamps are read from the clock at most once a millisecond: lines written faster
    share one (their order is their line number). Lines of one time stamp and one stream
    wait as one run (:mod:`durable.core.log_lines`), not a tuple each: a flood of lines
    stays cheap to hold, to count for the garbage collector, and to store.
    """

    def __init__(
        self,
        *,
        max_bytes: int = DEFAULT_LOG_MAX_BYTES,
        batch: int = 100,
        notify: Callable[[bool], None] | None = None,
    ) -> None:
        self.max_bytes = max_bytes
        self._batch = batch
        self._notify = notify
        self._lock = threading.Lock()
        self._pending: deque[LogRun] = deque()
        self._waiting = 0  # lines in _pending
        self._open: LogRun | None = None  # the last run, while lines may still join it
        self._next = 1  # the line number of the first line waiting
        self._bytes = 0
        self._dropped = 0
        self._closed = False
        self._clock = 0.0  # when _at was read (time.time())
        self._at = datetime.fromtimestamp(0, UTC)

    @property
    def lines(self) -> list[LogLineTuple]:
        """The lines not yet taken to be stored (all of them, when no executor stores
        this log: a task called in a unit test)."""
        with self._lock:
            return list(LogLines(list(self._pending)))

    @property
    def waiting(self) -> int:
        """How many lines wait to be stored."""
        return self._waiting

    @property
    def dropped(self) -> int:
        """How many lines were dropped past the cap."""
        return self._dropped

    def _now(self) -> datetime:
        now = time.time()
        if not 0.0 <= now - self._clock < 0.001:  # (a clock set back: read again)
            self._at = datetime.fromtimestamp(now, UTC)
            self._clock = now
        return self._at

    def _add(self, at: datetime, stream: str, messages: list[str]) -> None:
        """Lines wait (the lock held): in the open run if they share its time stamp and
        stream, else in a run of their own, open to the next lines."""
        run = self._open
        if run is not None and run[0] is at and run[1] == stream:
            run[2].extend(messages)
        else:
            self._open = run = (at, stream, messages)
            self._pending.append(run)
        self._waiting += len(messages)

    def write(self, stream: str, message: str) -> None:
        """One line (a trailing newline is dropped)."""
        self._line(stream, message, ())

    def _line(self, stream: str, message: str, args: tuple[Any, ...]) -> None:
        # the path of every ctx.log call: a sync task logging in a loop holds the GIL
        # while in here, so it does as little as it can
        if self._dropped or self._closed:
            self._only_count(1)  # not even formatted
            return
        text = (message % args if args else message).rstrip("\n")
        if text.isascii():  # (known without reading it: bytes as many as characters)
            size = len(text) + 1
        else:
            try:
                size = len(text.encode()) + 1
            except UnicodeEncodeError:  # a lone surrogate (PostgreSQL would refuse it): "?"
                text = text.encode("utf-8", "replace").decode()
                size = len(text.encode()) + 1
        at = self._now()
        with self._lock:
            if self._closed:
                return
            if self._dropped or self._bytes + size > self.max_bytes:
                self._dropped += 1
                if self._dropped > 1:
                    return  # only counted
                self._add(at, "log", [_truncated(self.max_bytes)])
            else:
                self._bytes += size
                run = self._open
                if run is not None and run[0] is at and run[1] == stream:
                    run[2].append(text)  # (_add, without a list for one line)
                    self._waiting += 1
                else:
                    self._add(at, stream, [text])
            waiting = self._waiting
        if self._notify is not None and waiting in (1, self._batch):
            self._notify(waiting >= self._batch)

    def write_many(self, stream: str, messages: Sequence[str]) -> None:
        """Several lines at once (a chunk of a command's output), as :meth:`write` would
        one by one, but with one time stamp, one lock and one size count for them all:
        the lines that fit under the cap, then (if some do not) the line saying the log
        was truncated, the rest only counted."""
        if not messages or self._only_count(len(messages)):
            return
        text = "\n".join(messages)
        if text.count("\n") != len(messages) - 1:  # some hold newlines: trailing ones go
            messages = [m.rstrip("\n") for m in messages]
            text = "\n".join(messages)
        try:
            size = len(text.encode()) + 1  # each line's text and a newline
        except UnicodeEncodeError:  # a lone surrogate (PostgreSQL would refuse it): a "?"
            messages = [m.encode("utf-8", "replace").decode() for m in messages]
            size = len("\n".join(messages).encode()) + 1
        at = self._now()
        with self._lock:
            if self._closed:
                return
            before = self._waiting
            if not self._dropped and self._bytes + size <= self.max_bytes:
                self._bytes += size
                self._add(at, stream, list(messages))
            else:
                kept = 0
                if not self._dropped:  # the cap falls among these lines: those before it
                    for m in messages:
                        line_size = len(m.encode()) + 1
                        if self._bytes + line_size > self.max_bytes:
                            break
                        self._bytes += line_size
                        kept += 1
                    self._add(at, stream, list(messages[:kept]))
                    self._add(at, "log", [_truncated(self.max_bytes)])
                self._dropped += len(messages) - kept
            waiting = self._waiting
        if self._notify is not None and (before == 0 < waiting or before < self._batch <= waiting):
            self._notify(waiting >= self._batch)

    def info(self, message: str, *args: Any) -> None:
        self._line("log", message, args)

    def warning(self, message: str, *args: Any) -> None:
        self._line("warning", message, args)

    def error(self, message: str, *args: Any) -> None:
        self._line("error", message, args)

    def count_dropped(self, lines: int) -> None:
        """Count ``lines`` more lines dropped past the cap, never read one by one (the rest
        of a flood of output)."""
        with self._lock:
            if not self._closed:
                self._dropped += lines

    def _only_count(self, lines: int) -> bool:
        """Past the cap (or closed): the lines are only counted, cheaply (a flood does
        this for every line), not even formatted."""
        if not (self._dropped or self._closed):
            return False
        with self._lock:
            if not self._closed:
                self._dropped += lines
        return True

    def take(self, limit: int) -> tuple[int, LogLines]:
        """The (first ``limit``) lines waiting to be stored and the line number of the
        first; they are no longer waiting (:meth:`give_back` if storing them failed)."""
        with self._lock:
            first, taken, room = self._next, [], limit
            self._open = None  # what is taken changes no more
            while self._pending and room > 0:
                at, stream, messages = self._pending[0]
                if len(messages) <= room:
                    taken.append(self._pending.popleft())
                else:  # a run cut: its first lines go, the rest waits
                    taken.append((at, stream, messages[:room]))
                    self._pending[0] = (at, stream, messages[room:])
                room -= len(taken[-1][2])
            lines = LogLines(taken)
            self._next += len(lines)
            self._waiting -= len(lines)
            return first, lines

    def give_back(self, first: int, lines: Sequence[LogLineTuple]) -> None:
        """Lines of the last :meth:`take` that could not be stored: they wait again, first."""
        runs = LogLines.of(lines).runs
        with self._lock:
            self._pending.extendleft(reversed(runs))
            self._waiting += sum(len(messages) for _, _, messages in runs)
            self._next = first

    def close(self) -> None:
        """The attempt ended: say how many lines were dropped; later writes are ignored
        (a sync task's thread may outlive its attempt's timeout)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._dropped:
                s = "" if self._dropped == 1 else "s"
                self._open = None
                self._add(
                    datetime.now(UTC), "log", [f"[log truncated: {self._dropped} line{s} dropped]"]
                )


def _truncated(max_bytes: int) -> str:
    return f"[log truncated: the attempt's log is over {max_bytes} bytes; further lines dropped]"


class TaskContext:
    """Passed to a task as ``ctx``: who and what this attempt is.

    ``idempotency_key`` (``run/task/generation``) is stable across retries of the same
    generation: give it to the sinks a task writes to. ``traceparent`` is this attempt's
    span in its run's trace (W3C): hand it on to what the task calls, so their spans join
    the run's trace.
    """

    def __init__(
        self,
        *,
        run_id: str,
        workflow: str,
        task: str,
        attempt: int,
        generation: int,
        params: dict[str, Any],
        upstream: dict[str, Any],
        logical_time: datetime | None,
        data_interval_start: datetime | None,
        data_interval_end: datetime | None,
        log: TaskLog,
        item: Any = None,
        index: int | None = None,
        traceparent: str | None = None,
    ) -> None:
        self.item = item
        """For a child of a map task: its item of the list (and ``index``, its place)."""
        self.index = index
        self.run_id = run_id
        self.workflow = workflow
        self.task = task
        self.attempt = attempt
        self.generation = generation
        self.params = params
        self.upstream = upstream
        self.logical_time = logical_time
        self.data_interval_start = data_interval_start
        self.data_interval_end = data_interval_end
        self.log = log
        self.traceparent = traceparent
        """``00-{trace id}-{this attempt's span id}-{flags}``; None outside an executor."""

    @property
    def idempotency_key(self) -> str:
        return f"{self.run_id}/{self.task}/{self.generation}"

    @property
    def logical_date(self) -> str | None:
        """The logical time's date, ``YYYY-MM-DD`` (for partitioned outputs)."""
        return self.logical_time.date().isoformat() if self.logical_time else None

    def template_values(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "workflow": self.workflow,
            "task": self.task,
            "attempt": self.attempt,
            "idempotency_key": self.idempotency_key,
            "params": self.params,
            "item": self.item,
            "index": self.index,
            "upstream": self.upstream,
            "logical_date": self.logical_date,
            "logical_time": self.logical_time.isoformat() if self.logical_time else None,
            "data_interval_start": (
                self.data_interval_start.isoformat() if self.data_interval_start else None
            ),
            "data_interval_end": (
                self.data_interval_end.isoformat() if self.data_interval_end else None
            ),
        }

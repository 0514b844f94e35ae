"""A batch of task log lines, held as runs of lines that share a time stamp and a stream.

A chunk of a command's output is read at one instant from one stream, and a task logging
in a loop writes many lines within a millisecond: storing such lines as ``(at, stream,
[messages])`` runs costs one object per run, not a tuple per line (for a flood of output,
less work and much less for Python's garbage collector to count). :class:`LogLines` is
still the sequence of ``(at, stream, message)`` lines the store protocol speaks; a store
that knows it can use its runs directly (PostgreSQL's COPY formats each run's time stamp
and stream once).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from itertools import chain, repeat
from typing import overload

__all__ = ["LogLineTuple", "LogLines", "LogRun"]

LogLineTuple = tuple[datetime, str, str]
"""``(at, stream, message)``."""
LogRun = tuple[datetime, str, list[str]]
"""Lines of one time stamp and one stream: ``(at, stream, messages)``."""


class LogLines(Sequence[LogLineTuple]):
    """Lines in order, as runs (never mutated once made into a batch)."""

    __slots__ = ("_length", "runs")

    def __init__(self, runs: Sequence[LogRun] = ()) -> None:
        self.runs: tuple[LogRun, ...] = tuple(run for run in runs if run[2])
        self._length = sum(len(messages) for _, _, messages in self.runs)

    @classmethod
    def of(cls, lines: Iterable[LogLineTuple]) -> LogLines:
        """Lines in runs (consecutive lines of one time stamp and stream share one)."""
        if isinstance(lines, LogLines):
            return lines
        runs: list[LogRun] = []
        for at, stream, message in lines:
            if runs and runs[-1][0] == at and runs[-1][1] == stream:
                runs[-1][2].append(message)
            else:
                runs.append((at, stream, [message]))
        return cls(runs)

    def __len__(self) -> int:
        return self._length

    def __iter__(self) -> Iterator[LogLineTuple]:
        return chain.from_iterable(
            zip(repeat(at), repeat(stream), messages, strict=False)
            for at, stream, messages in self.runs
        )

    @property
    def messages(self) -> Iterator[str]:
        return chain.from_iterable(messages for _, _, messages in self.runs)

    @overload
    def __getitem__(self, index: int) -> LogLineTuple: ...
    @overload
    def __getitem__(self, index: slice) -> LogLines: ...
    def __getitem__(self, index: int | slice) -> LogLineTuple | LogLines:
        if isinstance(index, slice):
            start, stop, step = index.indices(self._length)
            if step != 1:
                return LogLines.of(list(self)[index])
            return self._between(start, stop)
        i = index + self._length if index < 0 else index
        if not 0 <= i < self._length:
            raise IndexError("log line index out of range")
        for at, stream, messages in self.runs:
            if i < len(messages):
                return (at, stream, messages[i])
            i -= len(messages)
        raise AssertionError("unreachable")

    def _between(self, start: int, stop: int) -> LogLines:
        runs: list[LogRun] = []
        offset = 0
        for at, stream, messages in self.runs:
            end = offset + len(messages)
            if end > start and offset < stop:
                runs.append((at, stream, messages[max(0, start - offset) : stop - offset]))
            offset = end
        return LogLines(runs)

    def __repr__(self) -> str:
        return f"LogLines({list(self)!r})"

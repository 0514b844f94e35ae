"""A Kafka broker's outages, as the trigger service reports them: one line when the broker
goes away, one when it is back (with the outage's length), a reminder every minute between.

aiokafka retries on its own and logs every failed attempt (dozens of lines a second while a
broker is down, some with tracebacks). :class:`MuteDuringOutage` is a logging filter put on
aiokafka's loggers: the first record that shows the broker unreachable opens the outage,
and while it lasts every aiokafka warning or error is dropped — the outage lines say it
all. Once the broker answers again aiokafka's lines pass through as before.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from typing import TypeVar

from aiokafka.errors import (
    KafkaConnectionError,
    NodeNotReadyError,
    RequestTimedOutError,
)

__all__ = [
    "BrokerOutage",
    "MuteDuringOutage",
    "backoff",
    "muted_during",
    "sleep_unless_stopped",
    "unless_stopped",
]

log = logging.getLogger("durable.runtime.triggers.kafka")

T = TypeVar("T")

# what aiokafka says when it cannot reach a broker (its messages, not its exception types,
# are all a log record carries for most of them)
_SYMPTOMS = (
    "connect",
    "nodenotready",
    "coordinator dead",
    "coordinator request failed",
    "coordinatornotavailable",
    "update metadata",
    "failed fetch messages",
    "heartbeat send request failed",
    "timed out",
    "timeout",
)
_UNREACHABLE = (KafkaConnectionError, NodeNotReadyError, RequestTimedOutError, OSError)


class BrokerOutage:
    """Whether the broker at ``bootstrap`` answers, and the lines that say when it stops."""

    def __init__(
        self,
        bootstrap: str,
        *,
        remind_every: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.bootstrap = bootstrap
        self.remind_every = remind_every
        self.clock = clock
        self.since: float | None = None
        self._noted = 0.0

    @property
    def active(self) -> bool:
        return self.since is not None

    def lost(self, reason: str) -> None:
        """The broker did not answer: opens the outage (one line), or reminds."""
        if self.since is None:
            self.since = self._noted = self.clock()
            log.warning(
                "Kafka broker %s unreachable (%s); retrying until it is back "
                "(the Kafka client's own warnings are muted meanwhile)",
                self.bootstrap,
                reason[:200],
            )
        else:
            self.remind()

    def remind(self) -> None:
        """During an outage: a line every ``remind_every`` seconds."""
        if self.since is not None and self.clock() - self._noted >= self.remind_every:
            self._noted = self.clock()
            log.warning(
                "Kafka broker %s still unreachable, for %s now",
                self.bootstrap,
                _duration(self._noted - self.since),
            )

    def back(self) -> None:
        """The broker answered: closes the outage (one line) if there was one."""
        if self.since is not None:
            log.warning(
                "Kafka broker %s is back after %s unreachable",
                self.bootstrap,
                _duration(self.clock() - self.since),
            )
            self.since = None


class MuteDuringOutage(logging.Filter):
    """On aiokafka's loggers: turns its first 'cannot reach the broker' record into the
    outage's one line, and drops its warnings and errors while the outage lasts."""

    def __init__(self, outage: BrokerOutage) -> None:
        super().__init__()
        self.outage = outage
        self.muted = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        if not self.outage.active:
            reason = _symptom(record)
            if reason is None:
                return True
            self.outage.lost(reason)
        self.muted += 1
        return False


def _symptom(record: logging.LogRecord) -> str | None:
    """Why ``record`` shows the broker unreachable, or None if it does not."""
    if record.exc_info and isinstance(record.exc_info[1], _UNREACHABLE):
        return f"{type(record.exc_info[1]).__name__}: {record.exc_info[1]}"
    try:
        message = record.getMessage()
    except (TypeError, ValueError):
        return None
    lowered = message.lower()
    return message if any(s in lowered for s in _SYMPTOMS) else None


@contextmanager
def muted_during(outage: BrokerOutage) -> Iterator[MuteDuringOutage]:
    """Puts a :class:`MuteDuringOutage` on every aiokafka logger for the block's length.

    A logger's filters see only the records logged on it, not those its children pass
    up, hence one filter on each of them rather than on ``aiokafka`` alone."""
    muter = MuteDuringOutage(outage)
    loggers = [
        logger
        for name, logger in logging.root.manager.loggerDict.items()
        if (name == "aiokafka" or name.startswith("aiokafka."))
        and isinstance(logger, logging.Logger)
    ]
    for logger in loggers:
        logger.addFilter(muter)
    try:
        yield muter
    finally:
        for logger in loggers:
            logger.removeFilter(muter)


def backoff(attempt: int, *, first: float = 0.25, cap: float = 10.0) -> float:
    """Seconds before retry number ``attempt`` (0-based): exponential, capped, with jitter
    (between half and all of it) so that many services do not retry in step."""
    ceiling = min(cap, first * 2 ** min(attempt, 30))
    return random.uniform(ceiling / 2, ceiling)


async def unless_stopped(work: Awaitable[T], stop: asyncio.Event, timeout: float) -> T | None:
    """``work``'s result; None if ``stop`` was set first (``work`` is then cancelled).

    Raises ``TimeoutError`` after ``timeout`` seconds, and whatever ``work`` raised."""
    task = asyncio.ensure_future(work)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        done, _ = await asyncio.wait(
            {task, stopping}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if task in done:
            return task.result()
        if stopping in done:
            return None
        raise TimeoutError(f"no answer within {timeout:g} s")
    finally:
        stopping.cancel()
        if not task.done():
            task.cancel()
            await asyncio.wait({task})  # let it clean up; its CancelledError is its own
        if not task.cancelled():
            task.exception()  # seen: a failure that lost the race is not "never retrieved"


async def sleep_unless_stopped(stop: asyncio.Event, seconds: float) -> None:
    """Waits ``seconds``, or less if ``stop`` is set meanwhile."""
    with suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 120:
        return f"{minutes} min {secs} s"
    return f"{minutes // 60} h {minutes % 60} min"

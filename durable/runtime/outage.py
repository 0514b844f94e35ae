"""Telling the operator about a dependency that went away: one line, not a flood.

Every I/O loop (the executor, its LISTEN connection, the scheduler, the Kafka consumer,
the S3 poller, the asset tracker) reports its dependency's failures and successes to an
:class:`Outage`. The first failure logs one warning naming the dependency and why; while
it stays away, a reminder every ``remind_every`` seconds; the first success after that logs
one line saying it is back and how long it was away. Expected outages never log a
traceback. Loops wait between tries with :meth:`Outage.backoff`: capped exponential, with
jitter, and cut short by ``stop``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable

__all__ = ["Outage"]


class Outage:
    """The state of one dependency as one loop sees it."""

    def __init__(
        self,
        what: str,
        log: logging.Logger,
        *,
        remind_every: float = 60.0,
        first_delay: float = 0.2,
        max_delay: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.what = what
        self.log = log
        self.remind_every = remind_every
        self.first_delay = first_delay
        self.max_delay = max_delay
        self._clock = clock
        self.since: float | None = None
        self._reminded = 0.0
        self._failures = 0
        self.outages = 0
        """How many outages were seen (a test's positive marker)."""

    @property
    def down(self) -> bool:
        return self.since is not None

    def failed(self, exc: BaseException | str) -> None:
        """The dependency failed (again)."""
        now = self._clock()
        self._failures += 1
        reason = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}".rstrip(": ")
        if self.since is None:
            self.since = self._reminded = now
            self.outages += 1
            self.log.warning("%s unavailable (%s); retrying", self.what, reason)
        elif now - self._reminded >= self.remind_every:
            self._reminded = now
            self.log.warning(
                "%s still unavailable after %.0f s (%s)", self.what, now - self.since, reason
            )

    def ok(self) -> None:
        """The dependency answered."""
        if self.since is not None:
            self.log.warning("%s back after %.1f s", self.what, self._clock() - self.since)
            self.since = None
        self._failures = 0

    def delay(self) -> float:
        """How long to wait before the next try: capped exponential, with jitter."""
        base = min(self.max_delay, self.first_delay * 2.0 ** min(self._failures, 16))
        return base * random.uniform(0.5, 1.0)

    async def backoff(self, stop: asyncio.Event | None = None) -> None:
        """Wait :meth:`delay` seconds, or less if ``stop`` is set meanwhile."""
        seconds = self.delay()
        if stop is None:
            await asyncio.sleep(seconds)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)

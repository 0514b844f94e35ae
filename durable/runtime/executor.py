"""The durable executor: claims runs, replays their logs, runs their tasks, records it all.

One :class:`RunDriver` per claimed run is the only writer of that run's stream: it folds
the log into state, asks the pure :func:`~durable.core.step.step` what to do, appends the
events, and starts the task attempts they name. Every append is fenced by the run's seq, so an
executor that lost its lease can never record a completion; after a crash, the next
executor replays the log and retries the attempts whose outcome was not recorded.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import socket
from collections.abc import Callable
from datetime import UTC, datetime

from durable.application.runs import register_versions
from durable.core.errors import StoreError
from durable.runtime.driver import RunDriver
from durable.runtime.logs import LogWriter
from durable.runtime.outage import Outage
from durable.runtime.tasks import Resources
from durable.store.base import EventStore, Watch
from durable.telemetry import Telemetry
from durable.workflows.context import DEFAULT_LOG_MAX_BYTES
from durable.workflows.loader import WorkflowRegistry

__all__ = ["Executor", "Slots"]

log = logging.getLogger("durable.runtime.executor")

STORE_TIMEOUT = 30.0
"""Seconds a claim may take before it counts as PostgreSQL being away."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Slots:
    """Free task slots: a non-blocking take, and a fair blocking one."""

    def __init__(self, size: int) -> None:
        self._free = size
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    @property
    def free(self) -> int:
        """How many slots :meth:`try_take` would get now (none while others wait)."""
        return 0 if self._waiters else self._free

    def try_take(self) -> bool:
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return True
        return False

    async def take(self) -> None:
        if self.try_take():
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.give()  # handed a slot just as we were cancelled: pass it on
            raise

    def give(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot goes straight to the waiter
                return
        self._free += 1


class Executor:
    """Runs workflows: any number of executors share one database."""

    def __init__(
        self,
        store: EventStore,
        registry: WorkflowRegistry,
        *,
        executor_id: str | None = None,
        max_tasks: int = 64,
        max_runs: int = 10_000,
        lease_seconds: float = 30.0,
        poll_interval: float = 1.0,
        clock: Callable[[], datetime] = _utcnow,
        task_log_max_bytes: int = DEFAULT_LOG_MAX_BYTES,
        telemetry: Telemetry | None = None,
    ) -> None:
        """``task_log_max_bytes``: each attempt's log cap (message text); past it, lines
        are counted and dropped. ``telemetry``: the process's metrics (None: not counted)."""
        self.store = store
        self.registry = registry
        self.id = executor_id or f"{socket.gethostname()}:{os.getpid()}"
        self.leases = store.leases(self.id, ttl=lease_seconds)
        self.slots = Slots(max_tasks)
        self.max_runs = max_runs
        self.poll_interval = poll_interval
        self.clock = clock
        self.resources = Resources(store.sql_pool, threads=max_tasks)
        self.drivers: dict[str, RunDriver] = {}
        self.claim_rounds = 0  # claim rounds done, failed ones too (a test's sign)
        self._wake = asyncio.Event()
        self._watch: Watch | None = None
        self.database = Outage("PostgreSQL", log)
        """The executor's view of PostgreSQL, shared by its loops and its run drivers:
        one line when it goes, one when it is back, for the whole executor."""
        self.wakeups = Outage("PostgreSQL wake-ups (LISTEN)", log)
        self.logs = LogWriter(store.logs, max_bytes=task_log_max_bytes, outage=self.database)
        """Writes task attempts' logs while they run."""
        self.telemetry = telemetry
        if telemetry is not None:
            telemetry.executors.watch(lambda: len(self.drivers))

    @property
    def listening(self) -> bool:
        """Wake-ups are heard (else the claim loop polls at the outage's pace)."""
        return self._watch is not None and not self._watch.lost

    async def run(self, stop: asyncio.Event) -> None:
        """Work until ``stop`` is set; then stop every run cleanly and let go of them."""
        await register_versions(self.store, self.registry)
        await self._listen()
        heartbeat = asyncio.create_task(self._heartbeat(), name="durable-heartbeat")
        try:
            while not stop.is_set():
                self._wake.clear()  # before claiming: a wake-up during the claim counts
                try:
                    async with asyncio.timeout(STORE_TIMEOUT):
                        await self._claim()
                except (StoreError, TimeoutError) as exc:
                    self.database.failed(exc)
                else:
                    self.database.ok()
                    if not self.listening:
                        await self._listen()
                self.claim_rounds += 1
                await self._pause(stop)
        finally:
            heartbeat.cancel()
            await asyncio.gather(heartbeat, return_exceptions=True)
            drivers = list(self.drivers.values())
            for driver in drivers:
                driver.shutdown()
            await asyncio.gather(*(d.done for d in drivers), return_exceptions=True)
            if self._watch is not None:
                with contextlib.suppress(StoreError):
                    await self._watch.close()
            await self.resources.close()

    async def _pause(self, stop: asyncio.Event) -> None:
        """Until a wake-up, ``stop``, or the next poll: sooner while PostgreSQL or the
        wake-ups are away (the poll is all there is then)."""
        timeout = self.poll_interval
        if self.database.down:
            timeout = min(timeout, self.database.delay())
        elif not self.listening:
            timeout = min(timeout, self.wakeups.delay())
        waiter = asyncio.create_task(self._wake.wait())
        stopper = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait(
                {waiter, stopper}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            waiter.cancel()
            stopper.cancel()

    async def _listen(self) -> None:
        """Subscribe to wake-ups (again, after the connection was lost); the poll finds the
        work meanwhile."""
        again = self._watch is not None or self.wakeups.down
        if self._watch is not None:
            with contextlib.suppress(StoreError):
                await self._watch.close()
            self._watch = None
        try:
            self._watch = await self.store.wakeups.watch(self._wake.set, self._on_control)
        except StoreError as exc:
            self.wakeups.failed(exc)
            return
        self.wakeups.ok()
        if again:
            self._wake.set()  # wake-ups sent while nobody listened are lost: look again

    def _on_control(self, run_id: str) -> None:
        driver = self.drivers.get(run_id)
        if driver is not None:
            driver.poke()
        else:
            self._wake.set()  # a resumed run needs an executor

    async def _claim(self) -> None:
        free = self.max_runs - len(self.drivers)
        keys = [f"{name}@{version}" for name, version in self.registry.versions()]
        letting_go = []
        for run_id in await self.leases.claim(keys, min(free, 200)):
            if run_id in self.drivers:
                # Its driver is letting go right now (it released the lease, it has not
                # left yet): give the claim back, the next poll takes the run properly.
                # Kept, the lease would have no driver to renew it, and stall the run.
                letting_go.append(run_id)
                continue
            driver = RunDriver(self, run_id)
            self.drivers[run_id] = driver
            driver.start()
        for run_id in letting_go:
            await self.leases.release(run_id)

    async def _heartbeat(self) -> None:
        every = self.leases.ttl / 3
        wait = every
        while True:
            await asyncio.sleep(wait)
            wait = every
            run_ids = list(self.drivers)
            if not run_ids:
                continue  # nothing to renew, and nothing asked of PostgreSQL
            try:
                async with asyncio.timeout(self.leases.ttl):  # past it, the leases lapse
                    held = await self.leases.renew(run_ids)
            except (StoreError, TimeoutError) as exc:
                # renewed as soon as PostgreSQL is back, before other executors take
                # the expired leases over
                self.database.failed(exc)
                wait = min(every, self.database.delay())
                continue
            self.database.ok()
            lost = [
                (run_id, driver)
                for run_id, driver in list(self.drivers.items())
                if run_id not in held and driver.started_before_heartbeat
            ]
            if lost:  # one line, however many: after a long outage it is all of them
                log.warning(
                    "lost the lease on %d run(s) (%s%s); stopping them here, the log fences "
                    "them, and they are claimed again",
                    len(lost),
                    ", ".join(r for r, _ in lost[:3]),
                    ", …" if len(lost) > 3 else "",
                )
            for _, driver in lost:
                driver.lease_lost()
            for driver in self.drivers.values():
                driver.started_before_heartbeat = True

    def forget(self, run_id: str) -> None:
        self.drivers.pop(run_id, None)
        self._wake.set()  # room for another run

"""The notifier: delivers the log's notifications, and records SLA misses and backfills'
ends.

Notifications are an outbox in the log: a ``notification_requested`` commits with the
event that causes it (see :mod:`durable.core.notify`). The notifier tails the log from a
position it stores — the position just before the oldest notification not yet settled,
so after a crash every pending one is read again — delivers each with retries and
exponential backoff, and appends ``notification_sent`` or ``notification_failed`` (with
the reason) to the notification's own stream. Delivery is at least once; a receiver that
takes a key (webhooks' ``Idempotency-Key``, PagerDuty's ``dedup_key``, the mail's
``Message-ID``) sees the same key again, so a notification is never acted on twice.

One notifier delivers at a time across processes: the store elects it (role
``notifier``), as it does the scheduler. On a timer, it also records the SLA misses of
unfinished runs (:mod:`durable.core.sla`: deadlines follow from the log, so they survive
restarts) and of assets gone stale; when it reads a run's end it records a late finish,
and a backfill's end once its runs all ended (:mod:`durable.runtime.watch`). None of it
changes what a run does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from durable.application.streams import apply_to_stream
from durable.core.errors import StoreError
from durable.core.events import (
    NotificationFailed,
    NotificationRequested,
    NotificationSent,
    Recorded,
    RunCancelled,
    RunFailed,
    RunSucceeded,
)
from durable.core.notify import record_outcome, render_message
from durable.core.templates import TemplateError
from durable.runtime.outage import Outage
from durable.runtime.senders import SendError, Senders
from durable.runtime.watch import Watch, poke
from durable.store.base import EventStore, Lead
from durable.workflows.loader import WorkflowRegistry

__all__ = ["Notifier", "wanted"]

log = logging.getLogger("durable.runtime.notifier")

READER = "notifier"
PAGE = 2000
STORE_TIMEOUT = 30.0
MAX_IN_FLIGHT = 16
LOOKBACK = timedelta(days=1)
"""A run's end older than this when first read (a first start on an old log) records no
late finish nor backfill end: the notifier tells what happens, not ancient history."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


def wanted(registry: WorkflowRegistry) -> bool:
    """Whether anything needs a notifier: a rule (a workflow's or global) or an SLA."""
    return bool(registry.notify) or any(w.spec.notify or w.spec.sla for w in registry)


class _Pending:
    """A requested notification not settled yet: its tries, and its outcome once known
    (recorded as soon as the store takes it: never delivered again meanwhile)."""

    __slots__ = (
        "attempts",
        "last_error",
        "next_at",
        "outcome",
        "position",
        "request",
        "stream_id",
        "task",
    )

    def __init__(self, stream_id: str, position: int, request: NotificationRequested) -> None:
        self.stream_id = stream_id
        self.position = position
        self.request = request
        self.attempts = 0
        self.next_at = 0.0
        self.last_error = ""
        self.outcome: NotificationSent | NotificationFailed | None = None
        self.task: asyncio.Task[None] | None = None


class Notifier:
    """Delivers notifications and watches SLAs while it leads.

    ``base_url``: where the console is reached (links to runs in messages);
    ``max_attempts`` tries per notification, ``first_delay`` seconds after the first
    failure, doubling up to ``max_delay``; SLAs are checked every ``check_interval``.
    """

    def __init__(
        self,
        store: EventStore,
        registry: WorkflowRegistry,
        *,
        base_url: str = "",
        senders: Senders | None = None,
        poll_interval: float = 1.0,
        check_interval: float = 5.0,
        max_attempts: int = 6,
        first_delay: float = 1.0,
        max_delay: float = 60.0,
        clock: Callable[[], datetime] = _utcnow,
        database: Outage | None = None,
    ) -> None:
        self.store = store
        self.registry = registry
        self.base_url = base_url.rstrip("/")
        self.senders = senders or Senders()
        self.poll_interval = poll_interval
        self.check_interval = check_interval
        self.max_attempts = max_attempts
        self.first_delay = first_delay
        self.max_delay = max_delay
        self.clock = clock
        self.database = database or Outage("PostgreSQL (notifier)", log)
        self.leading = asyncio.Event()
        self.rounds = 0
        """Rounds done while leading (a test's sign that the notifier went round)."""
        self.standby_rounds = 0
        self.recorded = 0
        """Outcomes (sent or failed) this notifier recorded."""
        self.pending: dict[str, _Pending] = {}
        self._read = 0
        self._saved = -1
        self._next_check = 0.0
        self._wake = asyncio.Event()
        self.watch = Watch(store, registry, clock=clock)
        """SLA misses and backfills' ends."""

    # -- leading ----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Stand for election until ``stop``; deliver while leading. PostgreSQL going away
        is reported once; the notifier stands again once it is back."""
        try:
            while not stop.is_set():
                try:
                    await self._stand(stop)
                except (StoreError, TimeoutError) as exc:
                    self.database.failed(exc)
                    await self.database.backoff(stop)
        finally:
            await self.senders.close()

    async def _stand(self, stop: asyncio.Event) -> None:
        lead: Lead | None = None
        try:
            async with asyncio.timeout(STORE_TIMEOUT):
                lead = await self.store.leadership.try_lead("notifier")
            self.database.ok()
            if lead is None:
                self.standby_rounds += 1
                await _wait(stop, self.poll_interval)
                return
            self.leading.set()
            log.info("notifier: leading")
            # pending ones are read again from the stored position; an outcome known but
            # not yet recorded stays (it must not be delivered again)
            self._read = self._saved = await self.store.tracking.log_position(READER)
            while not stop.is_set():
                await self.round()
                async with asyncio.timeout(STORE_TIMEOUT):
                    await lead.check()
                self.database.ok()
                await self._pause(stop)
        finally:
            await self._stop_deliveries()
            if self.leading.is_set():
                self.leading.clear()
                if not stop.is_set():
                    log.info("notifier: no longer leading")
            if lead is not None:
                with contextlib.suppress(StoreError):
                    await lead.release()

    async def _pause(self, stop: asyncio.Event) -> None:
        """Until new events, a delivery's end, a retry's time, the next SLA check, or
        ``stop``."""
        now = time.monotonic()
        in_flight = sum(1 for p in self.pending.values() if p.task is not None)
        # at the cap, the next start waits for a delivery to end (which wakes us)
        due = [
            p.next_at
            for p in self.pending.values()
            if p.outcome is None and p.task is None and in_flight < MAX_IN_FLIGHT
        ]
        timeout = min([self.poll_interval, self._next_check - now, *(d - now for d in due)])
        if timeout <= 0 or self._wake.is_set():
            self._wake.clear()
            return
        waits = {
            asyncio.create_task(self.store.wait_for_events(self._read, timeout)),
            asyncio.create_task(self._wake.wait()),
            asyncio.create_task(stop.wait()),
        }
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
            await asyncio.gather(*waits, return_exceptions=True)
        self._wake.clear()

    async def _stop_deliveries(self) -> None:
        tasks = [p.task for p in self.pending.values() if p.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- one round --------------------------------------------------------------------------

    async def round(self) -> None:
        """Read the log on, record the outcomes known, check SLAs when due, start the
        deliveries due, and store how far every notification before is settled."""
        while True:
            page = await self.store.read_all(self._read, PAGE)
            for recorded in page:
                await self._seen(recorded)
            if page:
                self._read = page[-1].position
            if len(page) < PAGE:
                break
        for p in [p for p in self.pending.values() if p.outcome is not None]:
            await self._record(p)
        if time.monotonic() >= self._next_check:
            self._next_check = time.monotonic() + self.check_interval
            await self.watch.check_slas()
        self._start_due()
        settled = min((p.position - 1 for p in self.pending.values()), default=self._read)
        if settled != self._saved:
            await self.store.tracking.set_log_position(READER, settled)
            self._saved = settled
        self.rounds += 1

    async def _seen(self, recorded: Recorded) -> None:
        event = recorded.event
        if isinstance(event, NotificationRequested):
            if event.notification_id not in self.pending:
                self.pending[event.notification_id] = _Pending(
                    recorded.stream_id, recorded.position, event
                )
        elif isinstance(event, NotificationSent | NotificationFailed):
            settled = self.pending.pop(event.notification_id, None)
            if settled is not None and settled.task is not None:
                settled.task.cancel()  # another notifier settled it
        elif (
            isinstance(event, RunSucceeded | RunFailed | RunCancelled)
            and self.watch.watches_ends
            and recorded.recorded_at > self.clock() - LOOKBACK
        ):
            await self.watch.run_ended(recorded.stream_id.removeprefix("run:"))

    # -- delivering -------------------------------------------------------------------------

    def _start_due(self) -> None:
        now = time.monotonic()
        running = sum(1 for p in self.pending.values() if p.task is not None)
        for p in sorted(self.pending.values(), key=lambda p: p.position):
            if running >= MAX_IN_FLIGHT:
                break
            if p.outcome is None and p.task is None and p.next_at <= now:
                p.task = asyncio.create_task(
                    self._attempt(p), name=f"durable-notify-{p.request.notification_id}"
                )
                running += 1

    def run_url(self, request: NotificationRequested) -> str:
        """The page of the run (or the backfills) the notification is about."""
        if not self.base_url:
            return ""
        run_id = request.fields.get("run_id")
        if run_id:
            return f"{self.base_url}/ui/runs/{run_id}"
        return f"{self.base_url}/ui/backfills"

    async def _attempt(self, p: _Pending) -> None:
        request = p.request
        try:
            url = self.run_url(request)
            try:
                subject, body = render_message(request, url)
            except TemplateError as exc:
                p.outcome = NotificationFailed(
                    notification_id=request.notification_id,
                    attempts=p.attempts,
                    reason=f"template: {exc}",
                )
                return
            p.attempts += 1
            try:
                detail = await self.senders.send(request, subject, body, url)
            except SendError as exc:
                reason, retryable = exc.reason, exc.retryable
            except Exception as exc:  # a sender's bug is a failed try, never the notifier's end
                log.exception("notification %s: sending failed", request.notification_id)
                reason, retryable = f"{type(exc).__name__}: {exc}", True
            else:
                p.outcome = NotificationSent(
                    notification_id=request.notification_id, attempts=p.attempts, detail=detail
                )
                return
            if retryable and p.attempts < self.max_attempts:
                delay = min(self.max_delay, self.first_delay * 2 ** (p.attempts - 1))
                p.next_at = time.monotonic() + delay
                p.last_error = reason
                log.info(
                    "notification %s (%s) not delivered (%s); try %d of %d in %.1f s",
                    request.notification_id,
                    request.channel.channel,
                    reason,
                    p.attempts + 1,
                    self.max_attempts,
                    delay,
                )
                return
            log.warning(
                "notification %s (%s) failed after %d attempt(s): %s",
                request.notification_id,
                request.channel.channel,
                p.attempts,
                reason,
            )
            p.outcome = NotificationFailed(
                notification_id=request.notification_id, attempts=p.attempts, reason=reason
            )
        finally:
            p.task = None
            self._wake.set()

    async def _record(self, p: _Pending) -> None:
        outcome = p.outcome
        assert outcome is not None
        _, appended = await apply_to_stream(
            self.store,
            p.stream_id,
            lambda records: [r.event for r in records],
            lambda events: record_outcome(events, outcome),
        )
        self.pending.pop(outcome.notification_id, None)
        if appended:
            self.recorded += 1
            await self._poke(p.stream_id)

    async def _poke(self, stream_id: str) -> None:
        await poke(self.store, stream_id)


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)

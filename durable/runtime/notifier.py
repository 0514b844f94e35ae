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
and a backfill's end once its runs all ended. None of it changes what a run does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from durable.application.backfills import backfill_progress
from durable.application.streams import apply_to_stream
from durable.core.backfill import FinishBackfill, backfill_state, decide_backfill
from durable.core.errors import StoreError
from durable.core.events import (
    Event,
    NotificationFailed,
    NotificationRequested,
    NotificationSent,
    Recorded,
    RunCancelled,
    RunFailed,
    RunSucceeded,
    backfill_stream,
    run_stream,
)
from durable.core.fold import fold
from durable.core.notify import KeyedRule, keyed_rules, record_outcome, render_message
from durable.core.sla import next_deadline, sla_events, staleness_events
from durable.core.spec import WorkflowSpec
from durable.core.state import RunState
from durable.core.templates import TemplateError
from durable.runtime.outage import Outage
from durable.runtime.senders import SendError, Senders
from durable.store.base import EventStore, Lead, RunFilter
from durable.store.rows import AssetUpdate
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
        self._deadlines: dict[str, tuple[int, datetime | None]] = {}
        self._stale_done: set[tuple[str, int]] = set()
        self._watch_ends = any(
            (w.spec.sla is not None and (w.spec.sla.finish_by or w.spec.sla.max_duration))
            or any("backfill_finished" in r.on for r in w.spec.notify)
            for w in registry
        ) or any("backfill_finished" in r.on for r in registry.notify)

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
        due = [p.next_at for p in self.pending.values() if p.outcome is None and p.task is None]
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
            await self.check_slas()
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
            and self._watch_ends
            and recorded.recorded_at > self.clock() - LOOKBACK
        ):
            await self._run_ended(recorded.stream_id.removeprefix("run:"))

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
        # the run's driver, if any, reads the log again now rather than at its next append
        if stream_id.startswith("run:"):
            await self.store.wakeups.notify_control(stream_id.removeprefix("run:"))

    # -- SLAs and backfills ----------------------------------------------------------------

    def _spec(self, workflow: str, version: str | None = None) -> WorkflowSpec | None:
        """The run's pinned version, if loaded (an SLA is the one its run was created
        under); with no version, the workflow's current one."""
        if version is not None:
            loaded = self.registry.version(workflow, version)
        else:
            loaded = next((w for w in self.registry if w.spec.name == workflow), None)
        return loaded.spec if loaded is not None else None

    def _rules(self, spec: WorkflowSpec | None) -> list[KeyedRule]:
        return keyed_rules(spec.notify if spec is not None else (), self.registry.notify)

    async def _run_ended(self, run_id: str) -> None:
        row = await self.store.get_run(run_id)
        if row is None:
            return
        spec = self._spec(row.workflow, row.version)
        if spec is not None and spec.sla is not None:
            await self._check_run(run_id, spec)
        if row.trigger_kind == "backfill" and row.trigger_source:
            await self._finish_backfill(row.trigger_source)

    async def _check_run(self, run_id: str, spec: WorkflowSpec) -> RunState | None:
        """Record the run's SLA misses due now; the run's state after."""
        sla = spec.sla
        assert sla is not None
        rules = self._rules(spec)
        now = self.clock()

        def decide(state: RunState | None) -> Sequence[Event]:
            return sla_events(state, sla, now, rules) if state is not None else []

        state, appended = await apply_to_stream(self.store, run_stream(run_id), fold, decide)
        if appended:
            await self._poke(run_stream(run_id))
            return fold((r for r in appended), state)
        return state

    async def check_slas(self) -> None:
        """Record the misses of unfinished runs past a deadline, and of stale assets."""
        now = self.clock()
        assets: dict[str, AssetUpdate] | None = None
        seen: set[str] = set()
        for loaded in list(self.registry):
            sla = loaded.spec.sla
            if sla is None:
                continue
            if sla.finish_by or sla.max_duration:
                for status in ("pending", "running", "paused"):
                    rows = await self.store.list_runs(
                        RunFilter(workflow=loaded.spec.name, status=status, limit=1000)
                    )
                    for row in rows:
                        seen.add(row.run_id)
                        cached = self._deadlines.get(row.run_id)
                        if (
                            cached is not None
                            and cached[0] == row.last_seq
                            and (cached[1] is None or cached[1] >= now)
                        ):
                            continue
                        spec = self._spec(row.workflow, row.version)
                        if spec is None or spec.sla is None:
                            self._deadlines[row.run_id] = (row.last_seq, None)
                            continue
                        state = await self._check_run(row.run_id, spec)
                        if state is not None:
                            self._deadlines[row.run_id] = (
                                state.last_seq,
                                next_deadline(state, spec.sla),
                            )
            for asset, limit in sla.max_staleness.items():
                if assets is None:
                    assets = {a.asset: a for a in await self.store.tracking.assets()}
                update = assets.get(asset)
                if update is not None:
                    await self._check_asset(loaded.spec, asset, limit, update, now)
        for run_id in set(self._deadlines) - seen:
            del self._deadlines[run_id]  # ended: its late finish is checked when read

    async def _check_asset(
        self, spec: WorkflowSpec, asset: str, limit: float, update: AssetUpdate, now: datetime
    ) -> None:
        if (asset, update.position) in self._stale_done:
            return
        if now <= update.updated_at + timedelta(seconds=limit):
            return
        rules = self._rules(spec)

        def decide(state: RunState | None) -> Sequence[Event]:
            if state is None:
                return []
            return staleness_events(
                state, spec.name, asset, limit, update.updated_at, update.position, now, rules
            )

        _, appended = await apply_to_stream(self.store, run_stream(update.run_id), fold, decide)
        self._stale_done.add((asset, update.position))
        if appended:
            await self._poke(run_stream(update.run_id))

    async def _finish_backfill(self, backfill_id: str) -> None:
        stream = backfill_stream(backfill_id)
        state = backfill_state(r.event for r in await self.store.read_stream(stream))
        if state is None or state.finished is not None:
            return
        progress = dict(await backfill_progress(self.store, state))
        command = FinishBackfill(
            progress=progress, rules=tuple(self._rules(self._spec(state.request.workflow)))
        )

        def decide(current: Any) -> Sequence[Event]:
            return decide_backfill(current, command) if current is not None else []

        await apply_to_stream(
            self.store, stream, lambda records: backfill_state(r.event for r in records), decide
        )


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)

"""Retention: ``durable up --archive-older-than 30d --archive-to URI`` archives the runs
that finished more than that long ago, every ``--archive-every`` seconds.

One process archives at a time across processes (leadership ``archiver``); a pass is
resumable anyway (:mod:`durable.application.archive`), so a leader killed mid-pass
loses and doubles nothing: the next one finishes it. PostgreSQL or the object storage
going away is reported once, and the next round tries again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta

from durable.application.archive import ArchiveReport, archive_runs
from durable.core.errors import ArchiveError, StoreError
from durable.runtime.outage import Outage
from durable.store.base import EventStore, Lead
from durable.store.objects import open_objects

__all__ = ["ArchiveService"]

log = logging.getLogger("durable.runtime.archive")

STORE_TIMEOUT = 30.0
"""Seconds an election or a leadership check may take."""
BATCH = 1000
"""Runs archived per pass at most: a large backlog goes in several rounds, each short."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


class ArchiveService:
    """Archives finished runs older than ``older_than`` to ``to``, every ``every``
    seconds, while it leads."""

    def __init__(
        self,
        store: EventStore,
        *,
        to: str,
        older_than: timedelta,
        every: float = 3600.0,
        clock: Callable[[], datetime] = _utc_now,
        environ: Mapping[str, str] | None = None,
        database: Outage | None = None,
    ) -> None:
        self.store = store
        self.to = to
        self.older_than = older_than
        self.every = every
        self.clock = clock
        self.environ = environ
        self.leading = asyncio.Event()
        self.rounds = 0
        """Passes done (a test's sign that it had its chance)."""
        self.archived = 0
        self.database = database or Outage("PostgreSQL (archive)", log)
        self.storage = Outage(f"archive storage {to}", log)

    async def run(self, stop: asyncio.Event) -> None:
        """Stand by until this process leads, then archive every ``every`` seconds."""
        while not stop.is_set():
            try:
                await self._stand(stop)
            except (StoreError, TimeoutError) as exc:
                self.database.failed(exc)
                await self.database.backoff(stop)

    async def _stand(self, stop: asyncio.Event) -> None:
        lead: Lead | None = None
        try:
            async with asyncio.timeout(STORE_TIMEOUT):
                lead = await self.store.leadership.try_lead("archiver")
            self.database.ok()
            if lead is None:  # another process archives
                await _wait(stop, min(self.every, 60.0))
                return
            self.leading.set()
            while not stop.is_set():
                full = await self.round()
                async with asyncio.timeout(STORE_TIMEOUT):
                    await lead.check()
                self.database.ok()
                if self.storage.down:
                    await self.storage.backoff(stop)
                elif not full:  # a full batch: more are waiting, go on at once
                    await _wait(stop, self.every)
        finally:
            self.leading.clear()
            if lead is not None:
                await lead.release()

    async def round(self) -> bool:
        """One pass; True when it archived a full batch (more may be waiting)."""
        report = ArchiveReport()
        try:
            async with open_objects(self.to, self.environ) as objects:
                report = await archive_runs(
                    self.store, objects, self.clock() - self.older_than, limit=BATCH
                )
            self.storage.ok()
        except ArchiveError as exc:
            self.storage.failed(exc)
        finally:
            self.rounds += 1
        self.archived += report.archived
        if report.archived:
            log.info(
                "archive: %d runs (%d events) to %s in %.1f s",
                report.archived,
                report.events,
                self.to,
                report.seconds,
            )
        return report.archived >= BATCH


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)

"""Traces derived from the log, exported over OTLP/HTTP while runs go on.

**Configuration** is the standard ``OTEL_*`` environment, nothing else
(:func:`traces_config`): tracing is on when ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_ENDPOINT`` is set (or ``OTEL_TRACES_EXPORTER=otlp``, to
``http://localhost:4318``), and off — no service, no reader of the log — otherwise, or
with ``OTEL_TRACES_EXPORTER=none`` or ``OTEL_SDK_DISABLED=true``. The exporter is the
SDK's ``OTLPSpanExporter`` (HTTP/protobuf: ``OTEL_EXPORTER_OTLP_*_HEADERS``, ``_TIMEOUT``,
``_COMPRESSION``, certificates apply); the resource comes from ``OTEL_SERVICE_NAME`` and
``OTEL_RESOURCE_ATTRIBUTES`` (``service.name`` defaults to ``durable``); the sampler from
``OTEL_TRACES_SAMPLER`` (by default a producer's unsampled ``traceparent`` is honoured).

**Spans** with the ids the log gives them: :mod:`durable.runtime.spans`. Everything runs
on the event loop; only the exporter's blocking calls go to a thread.

**Export** (:class:`TraceService`, in ``durable up``): one process at a time (leadership
``traces``) tails the log from a stored reader position, every ``OTEL_BSP_SCHEDULE_DELAY``
ms (5,000 by default); for what it read (up to 20,000 events at a time) it exports the
span of each attempt and of each run that ended there, in requests of
``OTEL_BSP_MAX_EXPORT_BATCH_SIZE`` spans (512), and stores the position once the collector
accepted them. No ``BatchSpanProcessor``: its queue lives in memory (lost in a crash), is
bounded (drops spans under load) and drops a batch that failed to export; here the log
is the queue, so a collector that is away delays spans and loses none, and a restart goes
on where the last export ended. The one window: a crash after the collector accepted
spans and before their position is stored sends them again, with the same ids. A partial
rerun is a span of its own, sent when the rerun ends; the run's span, ended at the run's
first end, is not sent again. The first start begins at the end of the log; ``durable trace RUN_ID
--export`` sends any past run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator, Mapping, Sequence

import msgspec
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from durable.core.errors import DurableError, StoreError
from durable.core.events import (
    Recorded,
    RunCancelled,
    RunFailed,
    RunSucceeded,
    TaskCancelled,
    TaskFailed,
    TaskRetryScheduled,
    TaskSucceeded,
)
from durable.core.trace import trace_of
from durable.runtime.outage import Outage
from durable.runtime.spans import SpanBuilder
from durable.store.base import EventStore, Lead

__all__ = [
    "TraceService",
    "TracesConfig",
    "export_spans",
    "make_exporter",
    "traces_config",
]

log = logging.getLogger("durable.runtime.tracing")

READER = "traces"
"""The log reader position of the exported spans."""
STARTED = "traces.started"
"""Set (to 1) once tracing first started: a position of 0 is then a real one."""
PAGE = 5000
"""Events read from the log at once."""
ROUND = 20_000
"""Events at most whose spans are derived and exported together: a run whose events span
several pages is derived once a round, not once a page."""
MAX_RUNS = 10_000
"""Histories of runs in flight kept in memory (a run evicted is read again when needed)."""
STORE_TIMEOUT = 30.0
_EXPORTER_LOGGER = "opentelemetry.exporter.otlp.proto.http.trace_exporter"
_ENDS = (
    TaskSucceeded,
    TaskRetryScheduled,
    TaskFailed,
    TaskCancelled,
    RunSucceeded,
    RunFailed,
    RunCancelled,
)
"""The events that can end a span."""


# -- configuration -----------------------------------------------------------------------


class TracesConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Where and how often to export, from the ``OTEL_*`` environment."""

    endpoint: str
    """The full URL spans are POSTed to (``…/v1/traces``)."""
    delay: float = 5.0
    """Seconds between two reads of the log (``OTEL_BSP_SCHEDULE_DELAY``)."""
    batch: int = 512
    """Spans per export request at most (``OTEL_BSP_MAX_EXPORT_BATCH_SIZE``)."""


def traces_config(environ: Mapping[str, str]) -> TracesConfig | None:
    """The trace export the standard variables in ``environ`` ask for; None when off.

    Raises :class:`DurableError` for what durable cannot do (another exporter, gRPC).
    """
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    exporters = {e.strip().lower() for e in environ.get("OTEL_TRACES_EXPORTER", "").split(",")}
    exporters.discard("")
    if "none" in exporters:
        return None
    if exporters - {"otlp"}:
        raise DurableError(
            f"OTEL_TRACES_EXPORTER={environ['OTEL_TRACES_EXPORTER']}: durable exports traces "
            "over OTLP only",
            hint="set it to otlp (or none), and OTEL_EXPORTER_OTLP_ENDPOINT",
        )
    endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    if not endpoint and (base := environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()):
        endpoint = base.rstrip("/") + "/v1/traces"
    if not endpoint and not exporters:
        return None
    protocol = (
        environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).strip()
    if protocol != "http/protobuf":
        raise DurableError(
            f"OTLP protocol {protocol!r}: durable exports traces over http/protobuf only",
            hint="unset OTEL_EXPORTER_OTLP_PROTOCOL, and point the endpoint at the "
            "collector's OTLP/HTTP port (4318)",
        )
    return TracesConfig(
        endpoint=endpoint or "http://localhost:4318/v1/traces",
        delay=_positive(environ, "OTEL_BSP_SCHEDULE_DELAY", 5000) / 1000,
        batch=_positive(environ, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512),
    )


def _positive(environ: Mapping[str, str], name: str, default: int) -> int:
    text = environ.get(name, "").strip()
    if not text:
        return default
    if not text.isdigit() or int(text) < 1:
        raise DurableError(
            f"{name}={text!r} is not a positive whole number", hint=f"e.g. {default}"
        )
    return int(text)


def make_exporter(config: TracesConfig) -> SpanExporter:
    """The SDK's OTLP/HTTP span exporter for ``config`` (imported only when tracing is on)."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=config.endpoint)


def export_spans(exporter: SpanExporter, spans: Sequence[ReadableSpan], batch: int) -> bool:
    """Export ``spans`` in requests of ``batch`` at most (blocking: call it in a thread);
    False as soon as one is refused."""
    for i in range(0, len(spans), batch):
        if exporter.export(spans[i : i + batch]) is not SpanExportResult.SUCCESS:
            return False
    return True


# -- the export service ------------------------------------------------------------------


class TraceService:
    """Exports the spans that end in the log, from a stored position (see the module)."""

    def __init__(
        self,
        store: EventStore,
        config: TracesConfig,
        *,
        exporter: SpanExporter | None = None,
        database: Outage | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.exporter = exporter or make_exporter(config)
        self.builder = SpanBuilder()
        self.database = database or Outage("PostgreSQL (traces)", log)
        self.collector = Outage(f"OTLP collector {config.endpoint}", log, max_delay=30.0)
        self.position = 0
        self.exported = 0
        """Spans the collector accepted (a test's sign)."""
        self.leading = asyncio.Event()
        self._runs: dict[str, list[Recorded]] = {}  # histories of runs in flight, by stream
        self._complaints: list[str] = []
        self._shut = False

    async def run(self, stop: asyncio.Event) -> None:
        """Export until ``stop`` (then once more, up to the end of the log), while this
        process leads; PostgreSQL and the collector going away are reported once each."""
        interrupting = asyncio.create_task(self._interrupt(stop))
        try:
            with _exporter_complaints() as self._complaints:
                while not stop.is_set():
                    try:
                        await self._stand(stop)
                    except (StoreError, TimeoutError) as exc:
                        self.database.failed(exc)
                        await self.database.backoff(stop)
        finally:
            interrupting.cancel()
            await asyncio.to_thread(self._shutdown)

    async def _interrupt(self, stop: asyncio.Event) -> None:
        """Stopping while the collector is away: an export retrying in its thread gives up
        now rather than at its timeout (its spans are sent at the next start)."""
        await stop.wait()
        if self.collector.down:
            await asyncio.to_thread(self._shutdown)

    def _shutdown(self) -> None:
        if not self._shut:
            self._shut = True
            self.exporter.shutdown()

    async def _stand(self, stop: asyncio.Event) -> None:
        lead: Lead | None = None
        try:
            async with asyncio.timeout(STORE_TIMEOUT):
                lead = await self.store.leadership.try_lead("traces")
            self.database.ok()
            if lead is None:  # another process exports
                await _wait(stop, max(self.config.delay, 1.0))
                return
            await self._start_position()
            self.leading.set()
            while True:
                stopping = stop.is_set()
                if stopping and self.collector.down:
                    return  # not another wait for its timeout: the next start sends them
                if not await self.catch_up():
                    if stopping:
                        return  # left for the next start: the stored position says where
                    await self.collector.backoff(stop)
                    continue
                async with asyncio.timeout(STORE_TIMEOUT):
                    await lead.check()
                self.database.ok()
                if stopping:
                    return
                await _wait(stop, self.config.delay)
        finally:
            self.leading.clear()
            if lead is not None:
                await lead.release()

    async def _start_position(self) -> None:
        tracking = self.store.tracking
        self.position = await tracking.log_position(READER)
        if self.position == 0 and not await tracking.log_position(STARTED):
            # the first start: spans that end from now on (older runs: `durable trace`)
            self.position = await self.store.last_position()
            await tracking.set_log_position(READER, self.position)
            await tracking.set_log_position(STARTED, 1)
        self._runs.clear()

    async def catch_up(self) -> bool:
        """Export what ended in the log past the stored position, a round of pages at a
        time, storing the position after each; False when the collector refused a round."""
        while True:
            events: list[Recorded] = []
            caught_up = False
            while len(events) < ROUND and not caught_up:
                after = events[-1].position if events else self.position
                page = await self.store.read_all(after, PAGE)
                events += page
                caught_up = len(page) < PAGE
            if not events:
                return True
            spans = await self._ended_in(events)
            if spans:
                self._complaints.clear()
                exported = await asyncio.to_thread(
                    export_spans, self.exporter, spans, self.config.batch
                )
                if not exported:
                    # the collector's answer when one came, rather than the give-up line
                    why = next(
                        (c for c in self._complaints if not c.startswith("Failed to export")),
                        self._complaints[0] if self._complaints else "refused",
                    )
                    self.collector.failed(f"{len(spans)} spans not sent: {_short(why)}")
                    return False
                self.collector.ok()
                self.exported += len(spans)
            await self.store.tracking.set_log_position(READER, events[-1].position)
            self.position = events[-1].position
            if caught_up:
                return True

    async def _ended_in(self, events: list[Recorded]) -> list[ReadableSpan]:
        """The spans that end in ``events``, each run's history completed from the store
        when this process has not seen its beginning."""
        by_run: dict[str, list[Recorded]] = {}
        for r in events:
            if r.stream_id.startswith("run:"):
                by_run.setdefault(r.stream_id, []).append(r)
        ending = {s for s, recs in by_run.items() if any(isinstance(r.event, _ENDS) for r in recs)}
        unknown: list[str] = []
        for stream, recs in by_run.items():
            known = self._runs.pop(stream, None)  # put back last: the newest are kept
            if known is not None and known[-1].seq == recs[0].seq - 1:
                known.extend(recs)
                self._runs[stream] = known
            elif recs[0].seq == 1:
                self._runs[stream] = list(recs)
            elif stream in ending:
                unknown.append(stream)
        if unknown:
            read = await self.store.read_streams(unknown)
            for stream in unknown:
                last = by_run[stream][-1].seq
                self._runs[stream] = [r for r in read.get(stream, []) if r.seq <= last]
        spans: list[ReadableSpan] = []
        for stream in ending:
            history = self._runs.get(stream)
            if not history:
                continue
            first, last = by_run[stream][0].seq, by_run[stream][-1].seq
            try:
                trace = trace_of(history)
            except DurableError as exc:  # an inconsistent history cannot stop the others
                log.warning("traces: %s skipped: %s", stream, exc)
                del self._runs[stream]
                continue
            if trace is None:
                continue
            ended = [s for s in trace.spans if s.end_seq is not None and first <= s.end_seq <= last]
            spans += self.builder.build(trace, ended)
            if trace.run.end is not None:
                del self._runs[stream]  # a rerun that reopens it reads it again
            await asyncio.sleep(0)  # a round of many runs does not hold the event loop
        while len(self._runs) > MAX_RUNS:
            del self._runs[next(iter(self._runs))]
        return spans


class _Complaints(logging.Handler):
    """The OTLP exporter's log lines, kept instead of printed: it logs every retry of every
    request, while the outage line says once that the collector is away, and why."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.said: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.said.append(record.getMessage())


@contextlib.contextmanager
def _exporter_complaints() -> Iterator[list[str]]:
    logger = logging.getLogger(_EXPORTER_LOGGER)
    handler, propagate = _Complaints(), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield handler.said
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= 160 else f"{text[:70]} … {text[-80:]}"


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)

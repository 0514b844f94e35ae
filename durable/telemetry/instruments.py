"""The instruments of everything but the runs: HTTP requests, group commits, Kafka, and
the gauges read when metrics are collected (the store's whole-system figures, the
executor's runs in flight).

Each class owns its instruments and hands its users one method; attribute sets are built
once per distinct value and reused. A synchronous measurement still costs the SDK about
10 µs (it cleans and hashes the attributes each time), so the hot paths take as few as
they can: per batch, not per append; integers read by observable instruments for counts
(:mod:`durable.telemetry.runs`). Observable callbacks run on the collecting thread (a Prometheus scrape's worker thread,
the OTLP exporter's thread), never on the event loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping
from typing import Any

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from durable.store.base import EventStore
from durable.store.rows import MetricsCounts

__all__ = [
    "CommitMetrics",
    "ExecutorGauges",
    "HttpMetrics",
    "KafkaMetrics",
    "StoreGauges",
]

log = logging.getLogger("durable.telemetry")

Attributes = Mapping[str, str | int]

# The OTel HTTP semantic conventions' advice for http.server.request.duration.
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)
_METHODS = frozenset(
    ("CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "QUERY", "TRACE")
)
APPEND_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)


class HttpMetrics:
    """``http.server.request.duration`` (semantic conventions): every answer of the API."""

    def __init__(self, meter: Meter) -> None:
        self._duration = meter.create_histogram(
            "http.server.request.duration",
            unit="s",
            description="Duration of HTTP server requests.",
            explicit_bucket_boundaries_advisory=HTTP_BUCKETS,
        )
        self._attributes: dict[tuple[str, str | None, int], Attributes] = {}

    def observe(self, method: str, route: str | None, status: int, seconds: float) -> None:
        """One request answered. ``route`` is the matched route's template (None when no
        route matched: it is left out, as the conventions say, not made up)."""
        key = (method, route, status)
        attributes = self._attributes.get(key)
        if attributes is None:
            attributes = self._attributes[key] = _http_attributes(method, route, status)
        self._duration.record(seconds, attributes)


def _http_attributes(method: str, route: str | None, status: int) -> Attributes:
    # any other method is _OTHER: a client must not grow the series without bound
    attributes: dict[str, str | int] = {
        "http.request.method": method if method in _METHODS else "_OTHER",
        "http.response.status_code": status,
    }
    if route is not None:
        attributes["http.route"] = route
    if status >= 500:
        attributes["error.type"] = str(status)
    return attributes


class CommitMetrics:
    """The store's group commit (a :class:`~durable.store.base.CommitObserver`): batch
    sizes, the batch statement's duration, and the longest wait of an append for its
    commit — measured per batch, not per append: a busy store commits few, large batches,
    and each measurement costs the SDK microseconds."""

    def __init__(self, meter: Meter) -> None:
        self._size = meter.create_histogram(
            "durable.store.commit.batch.size",
            unit="{event}",
            description="Events written by one group commit (one transaction).",
            explicit_bucket_boundaries_advisory=BATCH_BUCKETS,
        )
        self._duration = meter.create_histogram(
            "durable.store.commit.duration",
            unit="s",
            description="Time of one group commit's statement, commit included.",
            explicit_bucket_boundaries_advisory=APPEND_BUCKETS,
        )
        self._waited = meter.create_histogram(
            "durable.store.append.duration",
            unit="s",
            description="Append latency: from the submission of a batch's oldest append "
            "to the batch's commit (the longest an append of the batch waited).",
            explicit_bucket_boundaries_advisory=APPEND_BUCKETS,
        )

    def committed(self, appends: int, events: int, seconds: float, waited: float) -> None:
        self._size.record(events)
        self._duration.record(seconds)
        self._waited.record(waited)


class KafkaMetrics:
    """The Kafka trigger's consumption: messages, dead letters, and lag per partition."""

    def __init__(self, meter: Meter) -> None:
        # messaging semantic conventions: the consumer's messages, by topic
        self._consumed = meter.create_counter(
            "messaging.client.consumed.messages",
            unit="{message}",
            description="Kafka messages the trigger service consumed and recorded.",
        )
        self._dead = meter.create_counter(
            "durable.kafka.dead_letters",
            unit="{message}",
            description="Kafka messages that could not start a run, stored as dead letters.",
        )
        self._lag: dict[tuple[str, int], int] = {}
        meter.create_observable_gauge(
            "durable.kafka.consumer.lag",
            callbacks=[self._observe_lag],
            unit="{message}",
            description="Messages in a partition past the consumer's recorded position.",
        )
        self._attributes: dict[tuple[str, str, str], Attributes] = {}

    def consumed(self, group: str, topic: str, count: int) -> None:
        self._consumed.add(count, self._attrs(group, topic, ""))

    def dead_lettered(self, group: str, topic: str, workflow: str, count: int = 1) -> None:
        self._dead.add(count, self._attrs(group, topic, workflow))

    def lag(self, lags: Mapping[tuple[str, int], int]) -> None:
        """The lag of every assigned partition (``(topic, partition) -> messages``)."""
        self._lag = dict(lags)  # replaced whole: the collecting thread reads a snapshot

    def _attrs(self, group: str, topic: str, workflow: str) -> Attributes:
        key = (group, topic, workflow)
        found = self._attributes.get(key)
        if found is None:
            found = {
                "messaging.system": "kafka",
                "messaging.consumer.group.name": group,
                "messaging.destination.name": topic,
            }
            if workflow:
                found["workflow"] = workflow
            self._attributes[key] = found
        return found

    def _observe_lag(self, options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(
                lag,
                {"messaging.destination.name": topic, "messaging.destination.partition.id": str(p)},
            )
            for (topic, p), lag in self._lag.items()
        ]


class StoreGauges:
    """What only the database knows, read when metrics are collected: runs by workflow and
    status, the log's position, dead letters, live leases (whole-system figures).

    The collecting thread asks the event loop for :meth:`EventStore.metrics_counts` (one
    read serves the four gauges of a collection); ``/metrics`` reads them first itself and
    hands them over with :meth:`update`, so a database that is away answers 503 there.
    """

    FRESH = 1.0
    """Seconds a read serves later collections."""
    TIMEOUT = 5.0

    def __init__(self, meter: Meter) -> None:
        self._source: tuple[EventStore, asyncio.AbstractEventLoop] | None = None
        self._counts: tuple[float, MetricsCounts] | None = None
        self._lock = threading.Lock()
        meter.create_observable_gauge(
            "durable.runs",
            callbacks=[self._runs],
            unit="{run}",
            description="Runs by workflow and status.",
        )
        meter.create_observable_gauge(
            "durable.log.position",
            callbacks=[self._gauge(lambda c: c.position)],
            description="The position of the newest event in the log.",
        )
        meter.create_observable_gauge(
            "durable.dead_letters",
            callbacks=[self._gauge(lambda c: c.dead_letters)],
            unit="{message}",
            description="Trigger messages that could not start a run (stored).",
        )
        meter.create_observable_gauge(
            "durable.leases.live",
            callbacks=[self._gauge(lambda c: c.live_leases)],
            unit="{run}",
            description="Runs currently held by an executor (live leases).",
        )

    def watch(self, store: EventStore) -> None:
        """Report ``store``'s figures, read on the running event loop (call it there)."""
        self._source = (store, asyncio.get_running_loop())

    def update(self, counts: MetricsCounts) -> None:
        """Figures just read (by ``/metrics``): the next collection uses them."""
        self._counts = (time.monotonic(), counts)

    def _current(self) -> MetricsCounts | None:
        with self._lock:  # one read for the gauges of one collection
            cached = self._counts
            if cached is not None and time.monotonic() - cached[0] < self.FRESH:
                return cached[1]
            if self._source is None:
                return None
            store, loop = self._source
            counts = _on_loop(loop, store.metrics_counts, self.TIMEOUT)
            if counts is not None:
                self.update(counts)
            return counts

    def _runs(self, options: CallbackOptions) -> Iterable[Observation]:
        counts = self._current()
        if counts is None:
            return []
        return [Observation(n, {"workflow": w, "status": s}) for w, s, n in counts.runs]

    def _gauge(
        self, value: Callable[[MetricsCounts], int]
    ) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            counts = self._current()
            return [] if counts is None else [Observation(value(counts))]

        return observe


def _on_loop(
    loop: asyncio.AbstractEventLoop,
    read: Callable[[], Coroutine[Any, Any, MetricsCounts]],
    timeout: float,
) -> MetricsCounts | None:
    """Run ``read()`` on ``loop`` from another thread and wait; None if it cannot."""
    if loop.is_closed() or not loop.is_running():
        return None
    try:
        if asyncio.get_running_loop() is loop:
            return None  # called on the loop itself: waiting would deadlock it
    except RuntimeError:
        pass  # no loop in this thread: the usual case
    future = asyncio.run_coroutine_threadsafe(read(), loop)
    try:
        return future.result(timeout)
    except concurrent.futures.TimeoutError:
        future.cancel()
        log.warning("metrics: the store's figures took over %g s; left out", timeout)
    except Exception as exc:  # the database away: the gauges are left out this time
        log.warning("metrics: could not read the store's figures: %s", exc)
    return None


class ExecutorGauges:
    """The executors of this process: runs in flight (the leases they hold and drive);
    attempts running are :class:`~durable.telemetry.runs.RunMetrics`' ``running``."""

    def __init__(self, meter: Meter) -> None:
        self._sources: list[Callable[[], int]] = []
        meter.create_observable_gauge(
            "durable.executor.runs",
            callbacks=[self._runs],
            unit="{run}",
            description="Runs in flight here: leased and driven by this process's executor.",
        )

    def watch(self, runs_in_flight: Callable[[], int]) -> None:
        """Report an executor's runs in flight, as ``runs_in_flight()`` counts them."""
        self._sources.append(runs_in_flight)

    def _runs(self, options: CallbackOptions) -> Iterable[Observation]:
        if not self._sources:
            return []
        return [Observation(sum(count() for count in list(self._sources)))]

"""One OpenTelemetry ``MeterProvider`` per process, and where its metrics go.

Two readers: a Prometheus reader on a registry of its own (``/metrics`` renders it), and
an OTLP/HTTP exporter every ``OTEL_METRIC_EXPORT_INTERVAL`` when an endpoint is set
(``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_METRICS_ENDPOINT``;
``OTEL_METRICS_EXPORTER=none`` turns it off). Nothing is global: the process's
entry point makes one :class:`Telemetry` and passes it to the executor, the API and the
store; a test makes as many isolated ones as it likes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics import Meter
from opentelemetry.sdk.metrics import (
    AlwaysOffExemplarFilter,
    AlwaysOnExemplarFilter,
    ExemplarFilter,
    MeterProvider,
    TraceBasedExemplarFilter,
)
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from prometheus_client import CollectorRegistry, generate_latest

from durable import __version__
from durable.store.base import EventStore
from durable.telemetry.instruments import (
    CommitMetrics,
    ExecutorGauges,
    HttpMetrics,
    KafkaMetrics,
    StoreGauges,
)
from durable.telemetry.runs import RunMetrics

__all__ = ["Telemetry", "otlp_endpoint"]

log = logging.getLogger("durable.telemetry")

SCOPE = "durable"


def otlp_endpoint(environ: Mapping[str, str]) -> str | None:
    """Where OTLP/HTTP metrics go, from the standard variables; None: not exported."""
    exporters = {
        name.strip().lower()
        for name in environ.get("OTEL_METRICS_EXPORTER", "otlp").split(",")
        if name.strip()
    }
    if "none" in exporters or "otlp" not in exporters:
        return None
    protocol = environ.get(
        "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "")
    )
    if protocol and protocol != "http/protobuf":
        log.warning("OTEL_EXPORTER_OTLP_PROTOCOL=%s: metrics are sent as http/protobuf", protocol)
    own = environ.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "").strip()
    if own:
        return own  # the signal's own variable is used as it is
    base = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    if base:
        return base.rstrip("/") + "/v1/metrics"
    return None


class Telemetry:
    """The process's metrics: a meter, its instruments, and the readers they feed.

    ``environ`` (default ``os.environ``) holds the ``OTEL_*`` variables.
    """

    def __init__(
        self,
        environ: Mapping[str, str] | None = None,
        *,
        service_name: str | None = None,
    ) -> None:
        env = os.environ if environ is None else environ
        self.registry = CollectorRegistry(auto_describe=True)
        """The Prometheus registry of this provider alone (not prometheus_client's global)."""
        readers: list[MetricReader] = [
            # one instrumentation scope: its labels on every line would say nothing
            PrometheusMetricReader(registry=self.registry, scope_info_enabled=False)
        ]
        self.otlp = otlp_endpoint(env)
        """The OTLP/HTTP metrics endpoint, if metrics are exported there."""
        if self.otlp is not None:
            readers.append(
                PeriodicExportingMetricReader(
                    OTLPMetricExporter(endpoint=self.otlp),
                    export_interval_millis=_millis(env, "OTEL_METRIC_EXPORT_INTERVAL", 60_000),
                    export_timeout_millis=_millis(env, "OTEL_METRIC_EXPORT_TIMEOUT", 30_000),
                )
            )
        name = service_name or env.get("OTEL_SERVICE_NAME") or "durable"
        self.provider = MeterProvider(
            metric_readers=readers,
            resource=Resource.create({SERVICE_NAME: name, SERVICE_VERSION: __version__}),
            exemplar_filter=_exemplar_filter(env),
            shutdown_on_exit=False,  # shut down by its owner: many per test process
        )
        self.meter: Meter = self.provider.get_meter(SCOPE, __version__)
        self.http = HttpMetrics(self.meter)
        self.runs = RunMetrics(self.meter)
        self.commits = CommitMetrics(self.meter)
        self.kafka = KafkaMetrics(self.meter)
        self.store = StoreGauges(self.meter)
        self.executors = ExecutorGauges(self.meter)
        self._shut = False

    def observe(self, store: EventStore) -> None:
        """Count ``store``'s group commits and report its figures (call it on the event
        loop that serves the store)."""
        store.observe_commits(self.commits)
        self.store.watch(store)

    def render(self) -> bytes:
        """The Prometheus text of every instrument. Blocking (observable gauges' callbacks
        run here): call it off the event loop (``asyncio.to_thread``)."""
        return generate_latest(self.registry)

    def shutdown(self) -> None:
        """Export what is left (OTLP) and stop the readers. Blocking, like :meth:`render`;
        idempotent."""
        if self._shut:
            return
        self._shut = True
        self.provider.shutdown(timeout_millis=10_000)


def _exemplar_filter(environ: Mapping[str, str]) -> ExemplarFilter:
    """Off unless ``OTEL_METRICS_EXEMPLAR_FILTER`` asks: durable's measurements are taken
    from the log, outside any span, so the SDK's default (trace_based) would find no trace
    to link and cost every measurement its look for one."""
    chosen = environ.get("OTEL_METRICS_EXEMPLAR_FILTER", "always_off").strip().lower()
    if chosen == "always_on":
        return AlwaysOnExemplarFilter()
    if chosen == "trace_based":
        return TraceBasedExemplarFilter()
    return AlwaysOffExemplarFilter()


def _millis(environ: Mapping[str, str], name: str, default: float) -> float:
    raw = environ.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        log.warning("%s=%r is not a number of milliseconds; using %g", name, raw, default)
        return default
    return value if value > 0 else default

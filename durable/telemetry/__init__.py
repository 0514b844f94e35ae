"""Telemetry: the process's OpenTelemetry metrics (``/metrics`` and OTLP export).

A layer of its own, beside the application: the runtime (executor, Kafka trigger) and
the API (HTTP requests, ``/metrics``) both count into it, and the API may not import the
runtime. It imports the core (the events it counts) and the store's protocols (the
figures only the database knows), nothing above.
"""

from durable.telemetry.instruments import (
    CommitMetrics,
    ExecutorGauges,
    HttpMetrics,
    KafkaMetrics,
    StoreGauges,
)
from durable.telemetry.provider import Telemetry, otlp_endpoint
from durable.telemetry.runs import RunCounter, RunMetrics

__all__ = [
    "CommitMetrics",
    "ExecutorGauges",
    "HttpMetrics",
    "KafkaMetrics",
    "RunCounter",
    "RunMetrics",
    "StoreGauges",
    "Telemetry",
    "otlp_endpoint",
]

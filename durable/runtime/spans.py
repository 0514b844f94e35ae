"""OpenTelemetry SDK spans from a run's trace as derived from its log, ids included.

:func:`durable.core.trace.trace_of` computes the spans as plain data, ids included
(hashes of the run id, or the producer's trace id). :class:`SpanBuilder` makes SDK spans
of them through the SDK's own ``Tracer``: ``start_span`` asks the provider's
``IdGenerator`` for the new span's id (and, for a root, for the trace id), so a generator
that hands out the id just derived (:class:`_GivenIds`, set before each call) is all it
takes; the parent is passed as a context holding a ``NonRecordingSpan`` of the derived
parent ``SpanContext``; start and end times, events and status are given explicitly.
Going through the tracer, rather than building ``ReadableSpan`` s by hand (which the SDK
reserves to itself), keeps the SDK's resource (``OTEL_SERVICE_NAME``,
``OTEL_RESOURCE_ATTRIBUTES``), sampler (``OTEL_TRACES_SAMPLER``) and span limits. The run
span's sampling decision is taken once and its children follow it, so a trace is whole
or absent whichever process exports which span.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import Decision, Sampler
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    set_span_in_context,
)

from durable.core.trace import RunTrace, SpanData

__all__ = ["SpanBuilder", "default_resource"]


class _GivenIds(IdGenerator):
    """Hands out the ids set just before ``start_span`` asks for them."""

    def __init__(self) -> None:
        self.trace_id = 0
        self.span_id = 0

    def generate_trace_id(self) -> int:
        return self.trace_id

    def generate_span_id(self) -> int:
        return self.span_id


class _Collect(SpanProcessor):
    """Keeps every ended span, to be exported together."""

    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def on_end(self, span: ReadableSpan) -> None:
        self.spans.append(span)


_KINDS = {"internal": SpanKind.INTERNAL, "consumer": SpanKind.CONSUMER}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _ns(at: datetime) -> int:
    return (at - _EPOCH) // timedelta(microseconds=1) * 1000


def default_resource() -> Resource:
    """The resource the ``OTEL_*`` variables describe; ``service.name`` ``durable`` unless
    they name one."""
    detected = Resource.create({})
    if str(detected.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        return detected.merge(Resource({SERVICE_NAME: "durable"}))
    return detected


class SpanBuilder:
    """SDK spans (``ReadableSpan``) from a run's derived trace: its ids, times, events."""

    def __init__(self, resource: Resource | None = None, sampler: Sampler | None = None) -> None:
        self._ids = _GivenIds()
        self._ended = _Collect()
        self._provider = TracerProvider(
            sampler=sampler,  # None: OTEL_TRACES_SAMPLER's, parent-based by default
            resource=resource or default_resource(),
            id_generator=self._ids,
            shutdown_on_exit=False,
        )
        self._provider.add_span_processor(self._ended)
        self._tracer = self._provider.get_tracer("durable")

    @property
    def resource(self) -> Resource:
        return self._provider.resource

    def build(self, trace: RunTrace, spans: Iterable[SpanData] | None = None) -> list[ReadableSpan]:
        """The ended ones of ``spans`` (all the trace's by default) as SDK spans; none when
        the sampler does not record the trace."""
        run = trace.run
        producer = Context()
        if trace.parent is not None:
            remote = SpanContext(
                trace.trace_id,
                trace.parent.span_id,
                is_remote=True,
                trace_flags=TraceFlags(trace.parent.flags & TraceFlags.SAMPLED),
            )
            producer = set_span_in_context(NonRecordingSpan(remote), Context())
        # the run span's sampling decision, taken once: its children follow it
        decision = self._provider.sampler.should_sample(
            producer, trace.trace_id, run.name, _KINDS[run.kind], run.attributes
        ).decision
        flags = TraceFlags(
            TraceFlags.SAMPLED if decision is Decision.RECORD_AND_SAMPLE else TraceFlags.DEFAULT
        )
        for span in trace.spans if spans is None else spans:
            if span.end is None:
                continue
            context = producer
            if span is not run and span.parent_span_id is not None:
                parent = SpanContext(trace.trace_id, span.parent_span_id, False, flags)
                context = set_span_in_context(NonRecordingSpan(parent), Context())
            self._ids.trace_id, self._ids.span_id = trace.trace_id, span.span_id
            sdk_span = self._tracer.start_span(
                span.name,
                context=context,
                kind=_KINDS[span.kind],
                attributes=span.attributes,
                start_time=_ns(span.start),
            )
            for event in span.events:
                sdk_span.add_event(event.name, event.attributes, _ns(event.at))
            if span.status == "error":
                sdk_span.set_status(Status(StatusCode.ERROR, span.status_message or None))
            sdk_span.end(_ns(span.end))
        built, self._ended.spans = self._ended.spans, []
        return built

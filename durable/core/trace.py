"""A run's trace, derived from its events: one span for the run, one per task attempt.

Pure: spans are plain structs (:class:`SpanData`); the runtime turns them into
OpenTelemetry spans (:mod:`durable.runtime.tracing`), the CLI prints them. The log is the
trace, so any process computing the trace of a run — the executor that took it over
after a crash, ``durable trace`` a year later on an exported file — gets the same spans
with the same ids:

- the trace id is a hash of the run id, unless the run's trigger carried a W3C
  ``traceparent`` (an HTTP header, a Kafka header): then it is the producer's trace id,
  and the run span's parent is the producer's span;
- the run span's id is a hash of the run id; an attempt span's id a hash of the run id,
  the task, the generation and the attempt number — known before the attempt runs, so it
  is handed to the task (:func:`attempt_traceparent`) and whatever the task calls joins
  the trace.

The run span lasts from ``run_created`` to the run's first terminal event, and is never
reopened: once it ended it is sent once. A partial rerun (generation 2, 3…) is a span of
its own, ``rerun {workflow}``, a child of the run span from ``rerun_requested`` to the
end it came to, carrying the rerun's request. Each attempt
(:mod:`durable.core.attempts_view`) is a child span of its generation's span (the run's,
or its rerun's) from its start (or, if it never started, its scheduling) to its outcome;
a map task's items are children of the map's span. What happened to the run is recorded as events on its span: ``run_started``,
``attempt_lost`` (the executor running it went away), ``takeover`` (another executor
carried on), ``paused``/``resumed``, ``rerun_queued``/``rerun``, the ends that a rerun
the rerun's span carries, ``sla_missed``, and its notifications (``notification_requested``, ``_sent``,
``_failed``). Attribute names follow the OpenTelemetry semantic conventions where one exists
(``error.type``, the ``exception`` event); the rest are namespaced ``durable.*``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from typing import Literal, TypeAlias, assert_never

import msgspec

from durable.core.attempts_view import Attempt, attempts_of
from durable.core.events import (
    ErrorInfo,
    NotificationFailed,
    NotificationRequested,
    NotificationSent,
    Recorded,
    RerunQueued,
    RerunRequested,
    RunCancelled,
    RunCreated,
    RunFailed,
    RunPaused,
    RunResumed,
    RunStarted,
    RunSucceeded,
    SlaMissed,
    TaskCancelled,
    TaskFailed,
    TaskMapped,
    TaskRetryScheduled,
    TaskScheduled,
    TaskSkipped,
    TaskStarted,
    TaskSucceeded,
    TaskWaiting,
    run_event,
)
from durable.core.step import EXECUTOR_LOST

__all__ = [
    "AttributeValue",
    "RunTrace",
    "SpanData",
    "SpanEvent",
    "TraceParent",
    "attempt_span_id",
    "attempt_traceparent",
    "format_traceparent",
    "parse_traceparent",
    "rerun_span_id",
    "run_span_id",
    "run_trace_id",
    "trace_of",
]

AttributeValue: TypeAlias = str | bool | int | float | tuple[str, ...]
SpanKind: TypeAlias = Literal["internal", "consumer"]
SpanStatus: TypeAlias = Literal["unset", "error"]

_SAMPLED = 0x01


class TraceParent(msgspec.Struct, frozen=True, kw_only=True):
    """A W3C trace context: the trace, the parent span, and the trace flags."""

    trace_id: int
    span_id: int
    flags: int = _SAMPLED

    @property
    def sampled(self) -> bool:
        return bool(self.flags & _SAMPLED)


class SpanEvent(msgspec.Struct, frozen=True, kw_only=True):
    """Something that happened at one moment of a span."""

    name: str
    at: datetime
    attributes: dict[str, AttributeValue] = {}  # a Struct copies an empty default


class SpanData(msgspec.Struct, frozen=True, kw_only=True):
    """One span of a run's trace, as plain data.

    ``end`` is None while what it stands for goes on; ``end_seq`` is the seq of the
    event that ended it (an exporter sends a span once the log has it).
    """

    name: str
    span_id: int
    parent_span_id: int | None
    kind: SpanKind
    start: datetime
    end: datetime | None
    end_seq: int | None
    attributes: dict[str, AttributeValue]
    events: tuple[SpanEvent, ...] = ()
    status: SpanStatus = "unset"
    status_message: str = ""


class RunTrace(msgspec.Struct, frozen=True, kw_only=True):
    """A run's trace: its run span and its attempts' spans, in the order scheduled.

    ``parent`` is the producer's context when the trigger carried one; ``sampled`` says
    whether the producer wants the trace recorded (always, without a producer).
    """

    trace_id: int
    run: SpanData
    attempts: tuple[SpanData, ...]
    parent: TraceParent | None = None
    reruns: tuple[SpanData, ...] = ()
    """One span per partial rerun (generation 2, 3…), children of the run span."""

    @property
    def sampled(self) -> bool:
        return self.parent is None or self.parent.sampled

    @property
    def spans(self) -> tuple[SpanData, ...]:
        return (self.run, *self.reruns, *self.attempts)


# -- ids ---------------------------------------------------------------------------------


def _digest(size: int, *parts: str) -> int:
    # \x1f cannot occur in a run id or a task name: no two inputs hash the same text
    value = hashlib.sha256("\x1f".join(("durable", *parts)).encode()).digest()[:size]
    return int.from_bytes(value, "big") or 1  # an all-zero id is invalid in W3C


def run_trace_id(run_id: str) -> int:
    """The trace id of a run whose trigger carried no trace context (128 bits)."""
    return _digest(16, "trace", run_id)


def run_span_id(run_id: str) -> int:
    """The id of a run's span (64 bits)."""
    return _digest(8, "run", run_id)


def rerun_span_id(run_id: str, generation: int) -> int:
    """The id of the span of a run's partial rerun that made ``generation`` (64 bits)."""
    return _digest(8, "rerun", run_id, str(generation))


def attempt_span_id(run_id: str, task: str, generation: int, attempt: int) -> int:
    """The id of an attempt's span (64 bits), known before the attempt runs."""
    return _digest(8, "attempt", run_id, task, str(generation), str(attempt))


def parse_traceparent(value: str | None) -> TraceParent | None:
    """A W3C ``traceparent`` header's context; None when absent or malformed (then the
    run starts a trace of its own, as a W3C receiver must)."""
    if not value:
        return None
    parts = value.strip().split("-")
    if len(parts) < 4 or (parts[0] == "00" and len(parts) != 4):
        return None
    version, trace, span, flags = parts[:4]
    if (len(version), len(trace), len(span), len(flags)) != (2, 32, 16, 2):
        return None
    if version == "ff" or not all(_is_hex(p) for p in (version, trace, span, flags)):
        return None
    trace_id, span_id = int(trace, 16), int(span, 16)
    if not trace_id or not span_id:
        return None
    return TraceParent(trace_id=trace_id, span_id=span_id, flags=int(flags, 16))


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)


def format_traceparent(trace_id: int, span_id: int, flags: int = _SAMPLED) -> str:
    """A W3C ``traceparent`` header (version 00)."""
    return f"00-{trace_id:032x}-{span_id:016x}-{flags & 0xFF:02x}"


def _context(run_id: str, traceparent: str | None) -> tuple[int, TraceParent | None]:
    parent = parse_traceparent(traceparent)
    return (parent.trace_id if parent else run_trace_id(run_id)), parent


def attempt_traceparent(
    run_id: str, trigger_traceparent: str | None, task: str, generation: int, attempt: int
) -> str:
    """The ``traceparent`` an attempt hands on (``TRACEPARENT``, an HTTP header,
    ``ctx.traceparent``): its own span in its run's trace."""
    trace_id, parent = _context(run_id, trigger_traceparent)
    flags = parent.flags if parent else _SAMPLED
    return format_traceparent(trace_id, attempt_span_id(run_id, task, generation, attempt), flags)


# -- the derivation ----------------------------------------------------------------------

_Key = tuple[str, int, int]  # (task, generation, attempt)

_ENDED = {RunSucceeded: "succeeded", RunFailed: "failed", RunCancelled: "cancelled"}


class _Walk:
    """What the attempts view does not keep: who ran each attempt, which event ended it,
    the map each item belongs to, and what happened to the run as a whole."""

    def __init__(self) -> None:
        self.open: dict[str, _Key] = {}  # task -> its queued or running attempt
        self.executor: dict[_Key, str] = {}
        self.end_seq: dict[_Key, int] = {}
        self.retry_at: dict[_Key, datetime] = {}
        self.waiting: dict[_Key, SpanEvent] = {}  # an attempt's task_waiting, as its event
        self.map_of: dict[tuple[str, int], _Key] = {}  # (item, generation) -> map's attempt
        self.events: list[SpanEvent] = []
        self.ends: list[tuple[int, SpanEvent]] = []  # (seq, the run's end), each time it ended
        self.reruns: list[tuple[int, datetime, RerunRequested]] = []  # (generation, at, it)
        self.failed_at: list[tuple[str, ...]] = []  # each end's failed tasks
        self.running_on: str | None = None
        self.status = "pending"

    def see(self, r: Recorded) -> None:
        event = run_event(r.event, where=f"{r.stream_id} seq {r.seq}")
        at, seq = r.recorded_at, r.seq
        match event:
            case TaskScheduled():
                self.open[event.task] = (event.task, event.generation, event.attempt)
            case TaskMapped():
                fan_out = (event.task, event.generation, 1)
                self.open[event.task] = fan_out
                for i in range(event.count):
                    self.map_of[(f"{event.task}[{i}]", event.generation)] = fan_out
            case TaskStarted():
                if event.executor:
                    self.executor[self.open[event.task]] = event.executor
                    self._running_on(event.executor, at)
            case TaskSucceeded():
                self._ended(event.task, seq)
            case TaskRetryScheduled() | TaskFailed():
                ended = self._ended(event.task, seq)
                if ended is not None and isinstance(event, TaskRetryScheduled):
                    self.retry_at[ended] = event.retry_at
                if ended is not None and event.error.type == EXECUTOR_LOST:
                    self._lost(ended, at)
            case TaskCancelled():
                self._ended(event.task, seq)
            case RunStarted():
                self.status = "running"
                self._event("run_started", at, executor=event.executor)
                self.running_on = event.executor or self.running_on
            case RunPaused():
                self.status = "paused"
                self._event("paused", at, reason=event.reason, by=event.by)
            case RunResumed():
                self.status = "running"
                self._event("resumed", at, by=event.by)
            case RerunQueued():
                self._event("rerun_queued", at, **_rerun(event))
            case RerunRequested():
                self.status = "running"
                self.reruns.append((len(self.reruns) + 2, at, event))
            case RunSucceeded() | RunFailed() | RunCancelled():
                for task in list(self.open):  # the run takes its unfinished attempts along
                    self._ended(task, seq)
                self.status = _ENDED[type(event)]
                attrs: dict[str, AttributeValue] = {}
                self.failed_at.append(event.failed_tasks if isinstance(event, RunFailed) else ())
                if not isinstance(event, RunSucceeded) and event.reason:
                    attrs["durable.reason"] = event.reason
                self.ends.append(
                    (seq, SpanEvent(name=f"run_{self.status}", at=at, attributes=attrs))
                )
            case SlaMissed():
                sla = {"sla.key": event.key, "sla.deadline": event.deadline.isoformat()}
                self._event("sla_missed", at, sla=event.sla, detail=event.detail, **sla)
            case NotificationRequested():
                self._event(
                    "notification_requested",
                    at,
                    **{
                        "notification.id": event.notification_id,
                        "notification.on": event.on,
                        "notification.channel": event.channel.channel,
                    },
                )
            case NotificationSent() | NotificationFailed():
                delivery: dict[str, AttributeValue | None] = {
                    "notification.id": event.notification_id,
                    "notification.attempts": event.attempts,
                }
                if isinstance(event, NotificationFailed):
                    self._event("notification_failed", at, reason=event.reason, **delivery)
                else:
                    self._event("notification_sent", at, **delivery)
            case TaskSkipped() if event.attempt is not None:
                self._ended(event.task, seq)  # a soft_fail sensor's attempt gave up
            case TaskWaiting():
                key = self.open.get(event.task)
                if key is not None:
                    job: dict[str, AttributeValue] = {"durable.job": _json(event.job)}
                    if "id" in event.job:
                        job["durable.job.id"] = str(event.job["id"])
                    if event.state:
                        job["durable.job.state"] = event.state
                    self.waiting[key] = SpanEvent(name="waiting", at=at, attributes=job)
            case RunCreated() | TaskSkipped():
                pass
            case _:
                assert_never(event)

    def _ended(self, task: str, seq: int) -> _Key | None:
        key = self.open.pop(task, None)
        if key is not None:
            self.end_seq[key] = seq
        return key

    def _lost(self, key: _Key, at: datetime) -> None:
        task, generation, attempt = key
        self._event(
            "attempt_lost",
            at,
            task=task,
            generation=generation,
            attempt=attempt,
            executor=self.executor.get(key),
        )

    def _running_on(self, executor: str, at: datetime) -> None:
        if self.running_on is not None and executor != self.running_on:
            self._event("takeover", at, executor=executor, **{"executor.previous": self.running_on})
        self.running_on = executor

    def _event(self, name: str, at: datetime, **values: AttributeValue | None) -> None:
        attrs = {f"durable.{k}": v for k, v in values.items() if v is not None and v != ""}
        self.events.append(SpanEvent(name=name, at=at, attributes=attrs))


def _rerun(event: RerunRequested | RerunQueued) -> dict[str, AttributeValue | None]:
    return {
        "rerun.request_id": event.request_id,
        "rerun.tasks": tuple(event.tasks),
        "rerun.downstream": event.downstream,
        "rerun.failed_only": event.failed_only,
        "by": event.by,
    }


def trace_of(records: Sequence[Recorded]) -> RunTrace | None:
    """The trace of the run whose events are ``records`` (its whole stream, or a prefix:
    a span whose end is not among them is open, ``end`` None); None for no records.

    Raises :class:`~durable.core.errors.InvalidTransition` for an inconsistent history.
    """
    view = attempts_of(records)
    if view is None:
        return None
    created = run_event(records[0].event, where=f"{records[0].stream_id} seq 1")
    assert isinstance(created, RunCreated)  # the fold checked it
    trace_id, parent = _context(created.run_id, created.trigger.traceparent)
    walk = _Walk()
    for r in records:
        walk.see(r)
    run_id = run_span_id(created.run_id)
    owner = {g: rerun_span_id(created.run_id, g) for g, _, _ in walk.reruns}
    attempts = tuple(
        _attempt_span(created, a, walk, owner.get(a.generation, run_id))
        for a in view.attempts
        if a.attempt > 0
    )
    return RunTrace(
        trace_id=trace_id,
        parent=parent,
        run=_run_span(created, view.created_at, walk, parent, view.attempts),
        attempts=attempts,
        reruns=tuple(_rerun_span(created, i, walk, view.attempts) for i in range(len(walk.reruns))),
    )


def _end_after(walk: _Walk, seq: int, until: datetime | None) -> int | None:
    """The index in ``walk.ends`` of the first end after ``seq`` (and before ``until``,
    the next rerun), or None while that part of the run goes on."""
    for i, (end_seq, end) in enumerate(walk.ends):
        if end_seq > seq and (until is None or end.at <= until):
            return i
    return None


def _span_events(walk: _Walk, start: datetime | None, until: datetime | None) -> list[SpanEvent]:
    """The run's events from ``start`` (None: the beginning) to ``until`` (None: the
    end): each goes to the span of the generation it happened in."""
    return [
        e
        for e in walk.events
        if (start is None or e.at >= start) and (until is None or e.at < until)
    ]


def _rerun_span(
    created: RunCreated, index: int, walk: _Walk, attempts: tuple[Attempt, ...]
) -> SpanData:
    generation, start, request = walk.reruns[index]
    until = walk.reruns[index + 1][1] if index + 1 < len(walk.reruns) else None
    # a rerun follows an end of the run: its own end is the next one
    seq = max((s for s, e in walk.ends if e.at <= start), default=0)
    ended = _end_after(walk, seq, until)
    attrs: dict[str, AttributeValue] = {
        "durable.run.id": created.run_id,
        "durable.workflow": created.workflow,
        "durable.generation": generation,
    }
    attrs.update(
        {f"durable.{k}": v for k, v in _rerun(request).items() if v is not None and v != ""}
    )
    end = end_seq = None
    status: SpanStatus = "unset"
    message = ""
    events = _span_events(walk, start, until)
    if ended is not None:
        end_seq, last = walk.ends[ended]
        end = last.at
        attrs["durable.run.status"] = last.name.removeprefix("run_")
        if last.name == "run_failed":
            status = "error"
            message = str(last.attributes.get("durable.reason", ""))
            attrs["error.type"] = _failure_type(walk.failed_at[ended], attempts)
    return SpanData(
        name=f"rerun {created.workflow}",
        span_id=rerun_span_id(created.run_id, generation),
        parent_span_id=run_span_id(created.run_id),
        kind="internal",
        start=start,
        end=end,
        end_seq=end_seq,
        attributes=attrs,
        events=tuple(sorted(events, key=lambda e: e.at)),
        status=status,
        status_message=message,
    )


def _run_span(
    created: RunCreated,
    created_at: datetime,
    walk: _Walk,
    parent: TraceParent | None,
    attempts: tuple[Attempt, ...],
) -> SpanData:
    trigger = created.trigger
    attrs: dict[str, AttributeValue] = {
        "durable.run.id": created.run_id,
        "durable.workflow": created.workflow,
        "durable.workflow.version": created.version,
        "durable.trigger.kind": trigger.kind,
        "durable.run.status": walk.status if not walk.ends else walk.ends[0][1].name[4:],
        "durable.generation": 1,
    }
    if trigger.source:
        attrs["durable.trigger.source"] = trigger.source
    if trigger.logical_time is not None:
        attrs["durable.logical_time"] = trigger.logical_time.isoformat()
    until = walk.reruns[0][1] if walk.reruns else None
    events = _span_events(walk, None, until)
    end: datetime | None = None
    end_seq: int | None = None
    status: SpanStatus = "unset"
    message = ""
    if walk.ends:  # its first end: a rerun is a span of its own
        end_seq, last = walk.ends[0]
        end = last.at
        if last.name == "run_failed":
            status = "error"
            message = str(last.attributes.get("durable.reason", ""))
            attrs["error.type"] = _failure_type(walk.failed_at[0], attempts)
    return SpanData(
        name=f"run {created.workflow}",
        span_id=run_span_id(created.run_id),
        parent_span_id=parent.span_id if parent else None,
        # CONSUMER: the run is the asynchronous child of a producer's request (an API
        # call, a Kafka message: answered before the run executes); without a producer
        # the run is a root of its own: INTERNAL.
        kind="consumer" if parent else "internal",
        start=created_at,
        end=end,
        end_seq=end_seq,
        attributes=attrs,
        events=tuple(sorted(events, key=lambda e: e.at)),
        status=status,
        status_message=message,
    )


def _failure_type(failed_tasks: tuple[str, ...], attempts: tuple[Attempt, ...]) -> str:
    """``error.type`` of a failed run: the error of its first failed task's last attempt."""
    for a in reversed(attempts):
        if failed_tasks and a.task == failed_tasks[0] and a.error is not None:
            return a.error.type
    return "RunFailed"


def _attempt_span(created: RunCreated, a: Attempt, walk: _Walk, run_span: int) -> SpanData:
    key = (a.task, a.generation, a.attempt)
    attrs: dict[str, AttributeValue] = {
        "durable.run.id": created.run_id,
        "durable.workflow": created.workflow,
        "durable.task": a.task,
        "durable.generation": a.generation,
        "durable.attempt": a.attempt,
        "durable.attempt.status": a.status,
    }
    if key in walk.executor:
        attrs["durable.executor"] = walk.executor[key]
    if a.started_at is not None and a.scheduled_at is not None:
        attrs["durable.queue.duration"] = (a.started_at - a.scheduled_at).total_seconds()
    if key in walk.retry_at:
        attrs["durable.retry_at"] = walk.retry_at[key].isoformat()
    start = a.started_at or a.scheduled_at
    assert start is not None  # an attempt with a number was scheduled
    events: tuple[SpanEvent, ...] = ()
    status: SpanStatus = "unset"
    message = ""
    waiting = walk.waiting.get(key)
    if waiting is not None:  # it handed its work elsewhere (a job) and waited for it
        events = (waiting,)
        if "durable.job.id" in waiting.attributes:
            attrs["durable.job.id"] = waiting.attributes["durable.job.id"]
    if a.error is not None and a.status in ("failed", "lost"):
        attrs["error.type"] = a.error.type
        status, message = "error", a.error.message
        events = (*events, _exception(a.error, a.finished_at or start))
    parent = walk.map_of.get((a.task, a.generation))
    return SpanData(
        name=f"task {a.task}",
        span_id=attempt_span_id(created.run_id, *key),
        parent_span_id=attempt_span_id(created.run_id, *parent) if parent else run_span,
        kind="internal",
        start=start,
        end=a.finished_at,
        end_seq=walk.end_seq.get(key) if a.finished_at is not None else None,
        attributes=attrs,
        events=events,
        status=status,
        status_message=message,
    )


def _json(value: object) -> str:
    return msgspec.json.encode(value).decode()


def _exception(error: ErrorInfo, at: datetime) -> SpanEvent:
    """The semantic conventions' ``exception`` event."""
    attrs: dict[str, AttributeValue] = {
        "exception.type": error.type,
        "exception.message": error.message,
        "durable.retryable": error.retryable,
    }
    if error.traceback:
        attrs["exception.stacktrace"] = error.traceback
    return SpanEvent(name="exception", at=at, attributes=attrs)

"""Run metrics, counted from the events an executor appends: runs started and finished,
task attempt durations, queue time, trigger-to-start latency.

Durations are differences of commit times in the log (``recorded_at``): a task attempt
lasts from its ``task_started`` to its outcome, queue time from ``task_scheduled`` (or the
time it was allowed to start) to ``task_started``, and a run waited from ``run_created``
to ``run_started``. An executor that takes a run over after a crash measures from the
same events, so a takeover's attempt is timed from its own start.

The driver calls :meth:`RunCounter.record` once per appended event, with the run's state
before it: a type check; an addition for a run's start and end; one histogram ``record``,
on an attribute set built once per workflow version, for each attempt's start and end.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from durable.core.events import (
    Recorded,
    RunCancelled,
    RunFailed,
    RunStarted,
    RunSucceeded,
    TaskFailed,
    TaskRetryScheduled,
    TaskStarted,
    TaskSucceeded,
)
from durable.core.spec import WorkflowSpec
from durable.core.state import RunState

__all__ = ["ATTEMPT_BUCKETS", "WAIT_BUCKETS", "RunCounter", "RunMetrics"]

ATTEMPT_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600,
)  # fmt: skip
"""Seconds: a no-op task to an hour-long job."""
WAIT_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600,
)  # fmt: skip
"""Seconds: queue time and trigger-to-start latency, from at once to an hour in a queue."""

_ENDED: dict[type, str] = {
    RunSucceeded: "succeeded",
    RunFailed: "failed",
    RunCancelled: "cancelled",
}
_OUTCOME: dict[type, str] = {
    TaskSucceeded: "succeeded",
    TaskFailed: "failed",
    TaskRetryScheduled: "retried",
}


class RunMetrics:
    """The run instruments of one meter; :meth:`counter` gives a run's driver its own.

    The counters are plain integers read when metrics are collected (observable
    instruments): counting costs an addition. The SDK's ``record`` costs microseconds (it
    cleans and hashes the attributes of every measurement), so only the durations, which
    need its histograms, pay it.
    """

    def __init__(self, meter: Meter) -> None:
        self.started: dict[str, int] = {}
        self.finished: dict[tuple[str, str], int] = {}
        self.running = 0
        """Task attempts running in this process."""
        meter.create_observable_counter(
            "durable.runs.started",
            callbacks=[self._observe_started],
            unit="{run}",
            description="Runs an executor started.",
        )
        meter.create_observable_counter(
            "durable.runs.finished",
            callbacks=[self._observe_finished],
            unit="{run}",
            description="Runs that ended, by status (succeeded, failed, cancelled).",
        )
        meter.create_observable_up_down_counter(
            "durable.executor.attempts",
            callbacks=[lambda options: [Observation(self.running)]],
            unit="{attempt}",
            description="Task attempts running in this process.",
        )
        self.attempt = meter.create_histogram(
            "durable.task.attempt.duration",
            unit="s",
            description="Task attempts, from task_started to their outcome "
            "(succeeded, failed, retried).",
            explicit_bucket_boundaries_advisory=ATTEMPT_BUCKETS,
        )
        self.queued = meter.create_histogram(
            "durable.task.queue.duration",
            unit="s",
            description="Time a task attempt waited, from scheduled (and due) to started.",
            explicit_bucket_boundaries_advisory=WAIT_BUCKETS,
        )
        self.trigger = meter.create_histogram(
            "durable.run.start.latency",
            unit="s",
            description="Time from a run's creation (its trigger) to its start.",
            explicit_bucket_boundaries_advisory=WAIT_BUCKETS,
        )
        self._workflows: dict[int, _WorkflowAttributes] = {}

    def counter(self, spec: WorkflowSpec) -> RunCounter:
        """What a run of ``spec`` counts with (its attribute sets are shared by every run of
        the workflow version)."""
        # by identity: a spec's version is a hash, computed on each read
        found = self._workflows.get(id(spec))
        if found is None or found.spec is not spec:
            found = self._workflows[id(spec)] = _WorkflowAttributes(spec)
        return RunCounter(self, found)

    # the collecting thread reads copies: dict() of a dict is atomic under the GIL
    def _observe_started(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(n, {"workflow": w}) for w, n in dict(self.started).items()]

    def _observe_finished(self, options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(n, {"workflow": w, "status": status})
            for (w, status), n in dict(self.finished).items()
        ]


class _WorkflowAttributes:
    """The attribute sets of one workflow's measurements, made once each."""

    __slots__ = ("attempts", "finished", "kinds", "name", "queued", "spec", "triggers")

    def __init__(self, spec: WorkflowSpec) -> None:
        self.spec = spec
        self.name = spec.name
        self.finished = {status: (spec.name, status) for status in _ENDED.values()}
        self.kinds: dict[str, str] = {}
        self.attempts: dict[tuple[str, str], dict[str, str]] = {}
        self.queued: dict[str, dict[str, str]] = {}
        self.triggers: dict[str, dict[str, str]] = {}

    def kind(self, task: str) -> str:
        kind = self.kinds.get(task)
        if kind is None:
            try:
                kind = str(type(self.spec.task(task)).__struct_config__.tag)
            except KeyError:
                kind = "unknown"
            self.kinds[task] = kind
        return kind

    def attempt(self, task: str, outcome: str) -> dict[str, str]:
        kind = self.kind(task)
        found = self.attempts.get((kind, outcome))
        if found is None:
            found = self.attempts[(kind, outcome)] = {
                "workflow": self.spec.name,
                "task_kind": kind,
                "outcome": outcome,
            }
        return found

    def queue(self, task: str) -> dict[str, str]:
        kind = self.kind(task)
        found = self.queued.get(kind)
        if found is None:
            found = self.queued[kind] = {"workflow": self.spec.name, "task_kind": kind}
        return found

    def trigger(self, kind: str) -> dict[str, str]:
        found = self.triggers.get(kind)
        if found is None:
            found = self.triggers[kind] = {"workflow": self.spec.name, "trigger": kind}
        return found


class RunCounter:
    """Counts one run's appended events (one per run driver)."""

    __slots__ = ("_a", "_m")

    def __init__(self, metrics: RunMetrics, attributes: _WorkflowAttributes) -> None:
        self._m = metrics
        self._a = attributes

    def record(self, state: RunState, recorded: Recorded) -> None:
        """Count ``recorded``, just appended to the run whose state before it is ``state``."""
        event = recorded.event
        if isinstance(event, TaskStarted):
            task = state.tasks.get(event.task)
            if task is not None and task.scheduled_at is not None:
                due = task.scheduled_at
                if task.not_before is not None and task.not_before > due:
                    due = task.not_before  # a durable sleep's wait is not queueing
                self._m.queued.record(
                    _seconds(due, recorded.recorded_at), self._a.queue(event.task)
                )
        elif isinstance(event, TaskSucceeded | TaskFailed | TaskRetryScheduled):
            task = state.tasks.get(event.task)
            if task is not None and task.started_at is not None:
                self._m.attempt.record(
                    _seconds(task.started_at, recorded.recorded_at),
                    self._a.attempt(event.task, _OUTCOME[type(event)]),
                )
        elif isinstance(event, RunStarted):
            started = self._m.started
            started[self._a.name] = started.get(self._a.name, 0) + 1
            self._m.trigger.record(
                _seconds(state.created_at, recorded.recorded_at),
                self._a.trigger(state.trigger.kind),
            )
        elif type(event) in _ENDED:
            self._end(type(event))

    def seen(self, state: RunState, recorded: Recorded) -> None:
        """``recorded`` was read from the log, not appended here (an operator's command,
        say): only a cancellation counts, the run ends with it."""
        if type(recorded.event) is RunCancelled:
            self._end(RunCancelled)

    def began(self) -> None:
        """A task attempt of the run began here."""
        self._m.running += 1

    def ended(self) -> None:
        """A task attempt of the run ended here (however)."""
        self._m.running -= 1

    def _end(self, kind: type) -> None:
        key = self._a.finished[_ENDED[kind]]
        self._m.finished[key] = self._m.finished.get(key, 0) + 1


def _seconds(start: datetime, end: datetime) -> float:
    return max(0.0, (end - start).total_seconds())

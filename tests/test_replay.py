"""Decision replay: committed histories re-decided by today's ``step``.

The histories in ``tests/golden/*.jsonl`` were recorded by running the workflows next to
them on the code from before the renovation (``tests/golden/record.py`` says how). For
each history, the test folds the events one at a time; at each event that starts a
segment it recognises the *input* the recorded event represents, asks ``step`` what it
decides, and requires the same events as recorded:

- ``task_succeeded`` of a running attempt (not a map's fan-in): the attempt's result,
  :class:`AttemptSucceeded` with the recorded output;
- ``task_retry_scheduled`` / ``task_failed`` of a running attempt: :class:`AttemptFailed`
  with the recorded error — or, when the error is ``ExecutorLost``, :class:`AttemptsLost`
  (a takeover after a crash);
- ``run_cancelled`` / ``run_paused`` / ``run_resumed`` / ``rerun_queued`` /
  ``rerun_requested`` (unless it applies a queued rerun): the operator's command;
- anything else (``run_started``, ``task_scheduled``, ``task_started`` of a due retry or
  sleep, a map's fan-in, ``run_failed`` past ``max_duration``…): a timer, :class:`Tick`.

The time of a decision is the commit time of its events, except where a recorded event
carries a time computed from it: ``retry_at`` (minus the policy's deterministic delay)
and a sleep's ``not_before`` (minus its seconds). The executor named in the input is the
one the next ``run_started``/``task_started`` names, and it is offered more slots than the
workflows have tasks (the histories were recorded with slots to spare).

``step`` runs to a fixpoint, so it may decide in one go what the old executor appended
in two commits (a takeover's lost attempts and what follows); it must never decide less
than the commit it starts in, nor anything else than what was recorded.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from durable.core.events import (
    Event,
    Recorded,
    RerunQueued,
    RerunRequested,
    RunCancelled,
    RunCreated,
    RunPaused,
    RunResumed,
    RunStarted,
    TaskFailed,
    TaskRetryScheduled,
    TaskScheduled,
    TaskStarted,
    TaskSucceeded,
)
from durable.core.fold import evolve
from durable.core.history import read_history_file
from durable.core.spec import WorkflowSpec
from durable.core.state import RunState
from durable.core.step import (
    EXECUTOR_LOST,
    AttemptFailed,
    AttemptsLost,
    AttemptSucceeded,
    Cancel,
    Input,
    Pause,
    Rerun,
    Resume,
    SlotsAvailable,
    Tick,
    step,
)
from durable.core.tasks import SleepTask
from durable.workflows.loader import load_workflows

GOLDEN = Path(__file__).parent / "golden"
HISTORIES = sorted(GOLDEN.glob("*.jsonl"))
PLENTY = 1_000


def test_there_are_golden_histories_of_every_shape() -> None:
    names = {h.stem for h in HISTORIES}
    assert {
        "retries_rerun",
        "map",
        "switch_sleep",
        "pause_resume_cancel",
        "queued_rerun",
        "timeout",
        "takeover",
    } <= names


@pytest.fixture(scope="module")
def specs() -> dict[str, WorkflowSpec]:
    return {w.spec.name: w.spec for w in load_workflows(GOLDEN)}


@pytest.mark.parametrize("history", HISTORIES, ids=lambda p: p.stem)
def test_today_decides_what_the_history_recorded(
    history: Path, specs: dict[str, WorkflowSpec]
) -> None:
    records = read_history_file(history)
    created = records[0].event
    assert isinstance(created, RunCreated)
    spec = specs[created.workflow]
    # the definition that recorded the history has the same version today
    assert spec.version == created.version, f"{history.name}: the workflow's version changed"
    replay(history.name, records, spec)


def replay(name: str, records: list[Recorded], spec: WorkflowSpec) -> None:
    state = evolve(None, records[0])  # run_created: create_run's, not a decision
    i = 1
    while i < len(records):
        given = input_for(state, records[i])
        now = decision_time(state, spec, records, i)
        slots = SlotsAvailable(free=PLENTY, executor=executor_for(records, i))
        decided = step(state, spec, [given, slots], now)
        span = records[i : i + len(decided)]
        batch = commit(records, i)
        if decided != [r.event for r in span] or len(decided) < len(batch):
            pytest.fail(
                f"{name}: at seq {records[i].seq}, on {given!r} at {now.isoformat()}, "
                f"today's step decides\n  {_lines(decided)}\nthe history recorded\n  "
                f"{_lines([r.event for r in records[i : i + max(len(decided), len(batch))]])}"
            )
        for r in span:
            state = evolve(state, r)
        i += len(decided)


def input_for(state: RunState, recorded: Recorded) -> Input:
    """The input a recorded event stands for (see the module's docstring)."""
    e = recorded.event
    match e:
        case TaskSucceeded() | TaskRetryScheduled() | TaskFailed() if _attempt_ran(state, e.task):
            if isinstance(e, TaskSucceeded):
                return AttemptSucceeded(
                    task=e.task, generation=e.generation, attempt=e.attempt, output=e.output
                )
            if e.error.type == EXECUTOR_LOST:
                return AttemptsLost()
            return AttemptFailed(
                task=e.task, generation=e.generation, attempt=e.attempt, error=e.error
            )
        case RunCancelled():
            return Cancel(reason=e.reason, by=e.by)
        case RunPaused():
            return Pause(reason=e.reason, by=e.by)
        case RunResumed():
            return Resume(by=e.by)
        case RerunQueued():
            return Rerun(
                request_id=e.request_id,
                tasks=e.tasks,
                downstream=e.downstream,
                failed_only=e.failed_only,
                by=e.by,
                queue=True,
            )
        case RerunRequested() if not any(q.request_id == e.request_id for q in state.queued):
            return Rerun(
                request_id=e.request_id,
                tasks=e.tasks,
                downstream=e.downstream,
                failed_only=e.failed_only,
                by=e.by,
            )
        case _:
            return Tick()


def decision_time(state: RunState, spec: WorkflowSpec, records: list[Recorded], i: int) -> datetime:
    for r in commit(records, i):
        e = r.event
        if isinstance(e, TaskRetryScheduled):
            key = f"{state.run_id}/{e.task}/{e.generation}"
            delay = spec.task(e.task).retry.delay(e.attempt, key)
            return e.retry_at - timedelta(seconds=delay)
        if isinstance(e, TaskScheduled) and e.not_before is not None:
            task = spec.task(e.task)
            if isinstance(task, SleepTask) and task.seconds:
                return e.not_before - timedelta(seconds=float(task.seconds))
    return records[i].recorded_at


def commit(records: list[Recorded], i: int) -> list[Recorded]:
    """The events appended together with ``records[i]`` from it on (one commit time)."""
    end = i
    while end < len(records) and records[end].recorded_at == records[i].recorded_at:
        end += 1
    return records[i:end]


def executor_for(records: list[Recorded], i: int) -> str | None:
    for r in records[i:]:
        if isinstance(r.event, RunStarted | TaskStarted):
            return r.event.executor
    return None


def _attempt_ran(state: RunState, task: str) -> bool:
    t = state.tasks.get(task)
    return t is not None and t.status == "running" and t.mapped is None


def _lines(events: list[Event]) -> str:
    return "\n  ".join(repr(e) for e in events) or "(nothing)"

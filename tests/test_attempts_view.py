"""The attempts view (durable.core.attempts_view): every attempt of every task in every
generation, from events built here and from the committed golden histories."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import msgspec
import pytest
from hypothesis import given

from durable.core.attempts_view import Attempt, attempts_of
from durable.core.errors import InvalidTransition
from durable.core.events import (
    ErrorInfo,
    Event,
    Recorded,
    RerunRequested,
    RunCancelled,
    RunStarted,
    RunSucceeded,
    TaskCancelled,
    TaskFailed,
    TaskNode,
    TaskRetryScheduled,
    TaskScheduled,
    TaskSkipped,
    TaskStarted,
    stream_kind,
)
from durable.core.fold import fold
from durable.core.history import read_history_file
from durable.core.step import EXECUTOR_LOST
from tests.histories import T0, created, recorded, task_ok
from tests.test_fold_properties import histories

GOLDEN = Path(__file__).parent / "golden"
_BESIDE = (".states.jsonl", ".old_reexport.jsonl", ".old_db_export.jsonl")  # not histories
HISTORIES = sorted(
    p
    for p in [*GOLDEN.glob("*.jsonl"), *GOLDEN.glob("pre_renovation/*.jsonl")]
    if not p.name.endswith(_BESIDE)
)

BOOM = ErrorInfo(type="ConnectionError", message="warehouse unreachable", traceback="tb")
LOST = ErrorInfo(type=EXECUTOR_LOST, message="the executor stopped")


def _at(records: list[Recorded], seq: int) -> object:
    return records[seq - 1].recorded_at


def _rows(attempts: tuple[Attempt, ...]) -> list[tuple[str, int, int, str]]:
    return [(a.task, a.generation, a.attempt, a.status) for a in attempts]


def test_retries_a_lost_attempt_and_a_rerun_generation_are_all_visible() -> None:
    events: list[Event] = [
        created("r", ["fetch", "load"]),
        RunStarted(),
        *task_ok("fetch"),
        TaskScheduled(task="load", generation=1, attempt=1),
        TaskStarted(task="load", generation=1, attempt=1),
        TaskRetryScheduled(
            task="load", generation=1, attempt=1, error=BOOM, retry_at=T0 + timedelta(seconds=5)
        ),
        TaskScheduled(task="load", generation=1, attempt=2),
        TaskStarted(task="load", generation=1, attempt=2),
        TaskRetryScheduled(task="load", generation=1, attempt=2, error=LOST, retry_at=T0),
        TaskScheduled(task="load", generation=1, attempt=3),
        TaskStarted(task="load", generation=1, attempt=3),
        TaskFailed(task="load", generation=1, attempt=3, error=BOOM),
        RunCancelled(reason="given up"),
        RerunRequested(request_id="again", tasks=("load",)),
        *task_ok("load", generation=2),
        RunSucceeded(),
    ]
    records = recorded("r", events)
    view = attempts_of(records)
    assert view is not None
    assert _rows(view.attempts) == [
        ("fetch", 1, 1, "succeeded"),
        ("load", 1, 1, "failed"),
        ("load", 1, 2, "lost"),
        ("load", 1, 3, "failed"),
        ("load", 2, 1, "succeeded"),
    ]
    first_load = view.attempts[1]
    assert (first_load.scheduled_at, first_load.started_at, first_load.finished_at) == (
        _at(records, 6),
        _at(records, 7),
        _at(records, 8),
    )
    assert first_load.error == BOOM and first_load.error.traceback == "tb"
    assert view.attempts[2].error == LOST
    assert view.attempts[-1].error is None
    assert view.created_at == records[0].recorded_at
    assert view.finished_at == records[-1].recorded_at


def test_skipped_and_cancelled_tasks_and_a_prefix_of_the_history() -> None:
    tasks = (
        TaskNode(name="a"),
        TaskNode(name="b", upstream=("a",)),
        TaskNode(name="c", upstream=("a",)),
        TaskNode(name="d"),
        TaskNode(name="e", upstream=("d",)),
    )
    events: list[Event] = [
        msgspec.structs.replace(created("r"), tasks=tasks),
        RunStarted(),
        *task_ok("a"),
        TaskSkipped(task="b", generation=1, reason="branch not taken"),
        TaskScheduled(task="c", generation=1, attempt=1),
        TaskScheduled(task="d", generation=1, attempt=1),
        TaskStarted(task="d", generation=1, attempt=1),
        TaskCancelled(task="c", generation=1, reason="operator"),
        RunCancelled(reason="enough"),
    ]
    records = recorded("r", events)
    view = attempts_of(records)
    assert view is not None
    assert _rows(view.attempts) == [
        ("a", 1, 1, "succeeded"),
        ("b", 1, 0, "skipped"),
        ("c", 1, 1, "cancelled"),
        ("d", 1, 1, "cancelled"),  # running when the run was cancelled
        ("e", 1, 0, "cancelled"),  # never attempted: taken with the run
    ]
    skipped = view.attempts[1]
    assert skipped.scheduled_at is None and skipped.finished_at == _at(records, 6)
    assert view.attempts[3].finished_at == view.finished_at == records[-1].recorded_at
    # the history up to seq 9: c queued, d running, the run not finished
    early = attempts_of(records[:9])
    assert early is not None and early.finished_at is None
    assert _rows(early.attempts)[2:] == [("c", 1, 1, "queued"), ("d", 1, 1, "running")]
    assert early.attempts[3].started_at is not None and early.attempts[3].finished_at is None
    assert attempts_of([]) is None


def test_an_inconsistent_history_is_refused_as_the_fold_refuses_it() -> None:
    events: list[Event] = [
        created("r"),
        RunStarted(),
        TaskStarted(task="fetch", generation=1, attempt=1),
    ]
    with pytest.raises(InvalidTransition, match="fetch is pending"):
        attempts_of(recorded("r", events))


# -- golden histories ------------------------------------------------------------------------


def _runs(path: Path) -> dict[str, list[Recorded]]:
    streams: dict[str, list[Recorded]] = {}
    for r in read_history_file(path):
        if stream_kind(r.stream_id) == "run":
            streams.setdefault(r.stream_id, []).append(r)
    return streams


_LAST = {  # a task's status -> what its last attempt in its generation may say
    "scheduled": {"queued"},
    "running": {"running"},
    "failed": {"failed", "lost"},
    "succeeded": {"succeeded"},
    "skipped": {"skipped"},
    "cancelled": {"cancelled"},
}


def _agrees_with_the_fold(records: list[Recorded]) -> None:
    state, view = fold(records), attempts_of(records)
    assert state is not None and view is not None
    assert view.finished_at == state.finished_at and view.created_at == state.created_at
    keys = [(a.task, a.generation, a.attempt) for a in view.attempts]
    assert len(keys) == len(set(keys))
    for task in state.tasks.values():
        mine = [a for a in view.attempts if a.task == task.name]
        current = [a for a in mine if a.generation == task.generation]
        # a map's fan-out is no execution of its body; a rerun map's items start anew
        counted = mine if task.parent is None else current
        if task.mapped is None:
            assert sum(a.started_at is not None for a in counted) == task.executions, task
        if task.status == "pending":
            assert current == [], task
            continue
        last = current[-1]
        if task.status == "retrying" or (task.status == "cancelled" and last.error):
            assert last.status in ("failed", "lost"), (task, last)
            continue  # waiting to retry (or cancelled then): its last attempt had ended
        assert last.status in _LAST[task.status], (task, last)
        assert (last.attempt, last.finished_at) == (task.attempt, task.finished_at), task


RUN_HISTORIES = [p for p in HISTORIES if _runs(p)]


@pytest.mark.parametrize("path", RUN_HISTORIES, ids=lambda p: str(p.relative_to(GOLDEN)))
def test_golden_histories_agree_with_the_fold(path: Path) -> None:
    for records in _runs(path).values():
        _agrees_with_the_fold(records)


@given(histories())
def test_random_histories_agree_with_the_fold_at_every_prefix(history: list[Recorded]) -> None:
    for end in range(1, len(history) + 1):
        _agrees_with_the_fold(history[:end])


def test_golden_takeover_shows_the_lost_attempt() -> None:
    ((records),) = _runs(GOLDEN / "takeover.jsonl").values()
    view = attempts_of(records)
    assert view is not None
    assert _rows(view.attempts) == [
        ("long", 1, 1, "lost"),
        ("long", 1, 2, "succeeded"),
        ("after_long", 1, 1, "succeeded"),
    ]
    assert view.attempts[0].error is not None and view.attempts[0].error.type == EXECUTOR_LOST


def test_golden_retries_and_rerun_show_both_generations() -> None:
    ((records),) = _runs(GOLDEN / "retries_rerun.jsonl").values()
    view = attempts_of(records)
    assert view is not None
    flaky = [(a.generation, a.attempt, a.status) for a in view.attempts if a.task == "flaky"]
    assert flaky == [
        (1, 1, "failed"),
        (1, 2, "failed"),
        (1, 3, "succeeded"),
        (2, 1, "failed"),
        (2, 2, "failed"),
        (2, 3, "succeeded"),
    ]
    assert ("never", 1, 0, "skipped") in _rows(view.attempts)
    assert ("broken", 1, 1, "failed") in _rows(view.attempts)


def test_golden_map_shows_the_fan_out_and_its_items() -> None:
    ((records),) = _runs(GOLDEN / "map.jsonl").values()
    view = attempts_of(records)
    assert view is not None
    rows = _rows(view.attempts)
    assert ("square", 1, 1, "succeeded") in rows
    assert [r for r in rows if r[0] == "square[2]"] == [
        ("square[2]", 1, 1, "failed"),
        ("square[2]", 1, 2, "succeeded"),
    ]
    not_a_list = next(a for a in view.attempts if a.task == "not_a_list")
    assert not_a_list.status == "failed" and not_a_list.started_at is None

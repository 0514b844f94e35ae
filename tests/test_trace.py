"""The trace of a run derived from its events (durable.core.trace): spans, their ids, and
what they show of retries, reruns and takeovers — on the committed golden histories, on
histories built here, and on random valid histories at every prefix."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
from hypothesis import given

from durable.core.events import (
    Event,
    NotificationFailed,
    NotificationRequested,
    NotificationSent,
    NotifyRule,
    Recorded,
    RunStarted,
    RunSucceeded,
    SlaMissed,
    Trigger,
    stream_kind,
)
from durable.core.history import read_history_file
from durable.core.trace import (
    RunTrace,
    SpanData,
    attempt_span_id,
    attempt_traceparent,
    format_traceparent,
    parse_traceparent,
    rerun_span_id,
    run_span_id,
    run_trace_id,
    trace_of,
)
from tests.histories import T0, created, failed_run, recorded, succeeded_run, task_ok
from tests.test_fold_properties import SETTINGS, histories

GOLDEN = Path(__file__).parent / "golden"
PRODUCER = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
ENDING = {
    "task_succeeded",
    "task_retry_scheduled",
    "task_failed",
    "task_cancelled",
    "task_skipped",  # a running attempt that gave up softly (a soft_fail sensor)
    "run_succeeded",
    "run_failed",
    "run_cancelled",
}


def _golden(name: str) -> list[Recorded]:
    (records,) = _runs(GOLDEN / name).values()
    return records


def _runs(path: Path) -> dict[str, list[Recorded]]:
    streams: dict[str, list[Recorded]] = {}
    for r in read_history_file(path):
        if stream_kind(r.stream_id) == "run":
            streams.setdefault(r.stream_id, []).append(r)
    return streams


def _trace(records: list[Recorded]) -> RunTrace:
    built = trace_of(records)
    assert built is not None
    return built


def _attempts(built: RunTrace, task: str) -> list[tuple[int, int, str, str]]:
    return [
        (
            int(s.attributes["durable.generation"]),
            int(s.attributes["durable.attempt"]),
            str(s.attributes["durable.attempt.status"]),
            s.status,
        )
        for s in built.attempts
        if s.attributes["durable.task"] == task
    ]


def _event(span: SpanData, name: str) -> dict[str, object]:
    (found,) = [e for e in span.events if e.name == name]
    return dict(found.attributes)


def _well_formed(records: list[Recorded], built: RunTrace) -> None:
    """What every trace satisfies: unique ids, parents in the trace (or the producer), each
    ended span's end the commit time of an event that can end it."""
    ids = [s.span_id for s in built.spans]
    assert len(ids) == len(set(ids)) and all(0 < i < 2**64 for i in ids)
    assert 0 < built.trace_id < 2**128
    run = built.run
    assert run.parent_span_id == (built.parent.span_id if built.parent else None)
    assert run.start == records[0].recorded_at
    for span in built.attempts:
        assert span.parent_span_id in ids
        assert span.start >= run.start
    for span in built.spans:
        if span.end is None:
            assert span.end_seq is None
            continue
        assert span.end_seq is not None and span.end >= span.start
        ender = records[span.end_seq - 1]
        assert ender.recorded_at == span.end
        assert ender.event.__struct_config__.tag in ENDING


# -- ids -------------------------------------------------------------------------------------


def test_ids_come_from_the_run_id_alone() -> None:
    assert run_trace_id("r1") == run_trace_id("r1") != run_trace_id("r2")
    assert run_span_id("r1") != run_span_id("r2")
    keys = [("r1", "load", 1, 1), ("r1", "load", 1, 2), ("r1", "load", 2, 1), ("r1", "fetch", 1, 1)]
    assert len({attempt_span_id(*k) for k in keys}) == len(keys)
    assert attempt_span_id("r1", "load", 1, 1) == attempt_span_id("r1", "load", 1, 1)
    # no name can be made to hash like another by moving the separators
    assert attempt_span_id("r", "a1", 1, 1) != attempt_span_id("r", "a", 11, 1)


def test_traceparent_headers_are_read_as_w3c_says() -> None:
    parent = parse_traceparent(PRODUCER)
    assert parent is not None and parent.sampled
    assert (parent.trace_id, parent.span_id) == (
        0x4BF92F3577B34DA6A3CE929D0E0E4736,
        0x00F067AA0BA902B7,
    )
    assert format_traceparent(parent.trace_id, parent.span_id, parent.flags) == PRODUCER
    unsampled = parse_traceparent(PRODUCER[:-2] + "00")
    assert unsampled is not None and not unsampled.sampled
    future = parse_traceparent("01" + PRODUCER[2:] + "-whatever-comes-next")
    assert future is not None and future.trace_id == parent.trace_id
    for bad in (
        None,
        "",
        "garbage",
        PRODUCER.upper(),
        "ff" + PRODUCER[2:],
        PRODUCER + "-extra",  # version 00 has exactly four fields
        "00-" + "0" * 32 + "-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-" + "0" * 16 + "-01",
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
    ):
        assert parse_traceparent(bad) is None, bad


# -- histories built here --------------------------------------------------------------------


def test_a_run_without_a_producer_is_a_trace_of_its_own() -> None:
    records = recorded("r", succeeded_run("r", ["fetch", "load"]))
    built = _trace(records)
    _well_formed(records, built)
    assert built.trace_id == run_trace_id("r") and built.parent is None and built.sampled
    run = built.run
    assert (run.name, run.kind, run.status) == ("run daily_sales", "internal", "unset")
    assert run.end == records[-1].recorded_at and run.end_seq == len(records)
    assert run.attributes == {
        "durable.run.id": "r",
        "durable.workflow": "daily_sales",
        "durable.workflow.version": "v1",
        "durable.trigger.kind": "manual",
        "durable.run.status": "succeeded",
        "durable.generation": 1,
        "durable.logical_time": "2026-11-21T02:00:00+00:00",
    }
    fetch = built.attempts[0]
    assert fetch.name == "task fetch" and fetch.span_id == attempt_span_id("r", "fetch", 1, 1)
    assert fetch.parent_span_id == run.span_id == run_span_id("r")
    assert (fetch.start, fetch.end) == (records[3].recorded_at, records[4].recorded_at)
    assert fetch.attributes == {
        "durable.run.id": "r",
        "durable.workflow": "daily_sales",
        "durable.task": "fetch",
        "durable.generation": 1,
        "durable.attempt": 1,
        "durable.attempt.status": "succeeded",
        "durable.executor": "e1",
        "durable.queue.duration": 0.01,
    }


def test_a_producer_traceparent_continues_the_producers_trace() -> None:
    events = succeeded_run("r", ["fetch"])
    events[0] = msgspec.structs.replace(
        events[0], trigger=Trigger(kind="api", traceparent=PRODUCER)
    )
    built = _trace(recorded("r", events))
    producer = parse_traceparent(PRODUCER)
    assert producer is not None
    assert built.trace_id == producer.trace_id and built.parent == producer
    assert built.run.parent_span_id == producer.span_id and built.run.kind == "consumer"
    # what the attempt was handed is its own span, in the producer's trace
    handed = parse_traceparent(attempt_traceparent("r", PRODUCER, "fetch", 1, 1))
    assert handed is not None
    assert (handed.trace_id, handed.span_id) == (built.trace_id, built.attempts[0].span_id)
    # an unsampled producer: the flag goes on, the trace says it is not to be recorded
    quiet = PRODUCER[:-2] + "00"
    assert attempt_traceparent("r", quiet, "fetch", 1, 1).endswith("-00")
    events[0] = msgspec.structs.replace(events[0], trigger=Trigger(kind="api", traceparent=quiet))
    assert not _trace(recorded("r", events)).sampled
    # a malformed one is ignored: the run's own trace
    events[0] = msgspec.structs.replace(events[0], trigger=Trigger(kind="api", traceparent="x"))
    assert _trace(recorded("r", events)).trace_id == run_trace_id("r")
    assert attempt_traceparent("r", None, "fetch", 1, 1) == format_traceparent(
        run_trace_id("r"), attempt_span_id("r", "fetch", 1, 1)
    )


def test_a_failed_run_and_its_retried_task() -> None:
    records = recorded("r", failed_run("r"))
    built = _trace(records)
    _well_formed(records, built)
    assert _attempts(built, "report") == [(1, 1, "failed", "error"), (1, 2, "failed", "error")]
    first = next(s for s in built.attempts if s.attributes["durable.task"] == "report")
    assert first.attributes["error.type"] == "ConnectionError"
    assert first.status_message == "warehouse unreachable"
    assert first.attributes["durable.retry_at"] == "2026-11-21T02:00:30+00:00"
    assert _event(first, "exception") == {
        "exception.type": "ConnectionError",
        "exception.message": "warehouse unreachable",
        "durable.retryable": True,
    }
    run = built.run
    assert (run.status, run.status_message) == ("error", "task report failed")
    assert run.attributes["error.type"] == "ConnectionError"
    assert run.attributes["durable.run.status"] == "failed"


def test_a_run_going_on_has_open_spans() -> None:
    events: list[Event] = [created("r", ["fetch", "load"]), RunStarted(executor="e1")]
    events += [*task_ok("fetch"), *task_ok("load")[:2]]
    records = recorded("r", events)
    built = _trace(records)
    _well_formed(records, built)
    assert built.run.end is None and built.run.attributes["durable.run.status"] == "running"
    assert [s.end is None for s in built.attempts] == [False, True]
    done = _trace(recorded("r", [*events, *task_ok("load")[2:], RunSucceeded()]))
    assert done.attempts[0] == built.attempts[0]  # an ended span never changes


def test_sla_misses_and_notifications_are_events_of_the_run_span() -> None:
    events = failed_run("r")
    slack = NotifyRule(channel="slack", target="${SLACK_WEBHOOK_URL}")
    events[-1:-1] = [
        SlaMissed(key="max_duration", sla="max_duration", workflow="daily_sales", deadline=T0)
    ]
    events += [
        NotificationRequested(
            notification_id="run:r:27:w0", on="run_failed", rule="w0", channel=slack
        ),
        NotificationRequested(
            notification_id="run:r:27:w1", on="run_failed", rule="w1", channel=slack
        ),
        NotificationSent(notification_id="run:r:27:w0", attempts=2),
        NotificationFailed(notification_id="run:r:27:w1", attempts=5, reason="503 from Slack"),
    ]
    records = recorded("r", events)
    built = _trace(records)
    _well_formed(records, built)
    run = built.run
    assert run.end == records[-5].recorded_at  # the run's end, not its notifications'
    assert _event(run, "sla_missed") == {
        "durable.sla": "max_duration",
        "durable.sla.key": "max_duration",
        "durable.sla.deadline": "2026-11-21T02:00:00+00:00",
    }
    assert [e.name for e in run.events][-4:] == [
        "notification_requested",
        "notification_requested",
        "notification_sent",
        "notification_failed",
    ]
    assert run.events[-4].attributes == {
        "durable.notification.id": "run:r:27:w0",
        "durable.notification.on": "run_failed",
        "durable.notification.channel": "slack",
    }
    assert _event(run, "notification_failed") == {
        "durable.reason": "503 from Slack",
        "durable.notification.id": "run:r:27:w1",
        "durable.notification.attempts": 5,
    }


# -- the golden histories --------------------------------------------------------------------

RUN_HISTORIES = [p for p in sorted(GOLDEN.glob("*.jsonl")) if _runs(p)]


@pytest.mark.parametrize("path", RUN_HISTORIES, ids=lambda p: p.name)
def test_golden_histories_give_well_formed_traces(path: Path) -> None:
    for records in _runs(path).values():
        built = _trace(records)
        _well_formed(records, built)
        assert built.trace_id == run_trace_id(str(built.run.attributes["durable.run.id"]))


def test_golden_retries_and_a_rerun() -> None:
    records = _golden("retries_rerun.jsonl")
    built = _trace(records)
    flaky = [(1, 1), (1, 2), (1, 3), (2, 1), (2, 2), (2, 3)]
    assert [(g, a) for g, a, _, _ in _attempts(built, "flaky")] == flaky
    assert [s for _, _, s, _ in _attempts(built, "flaky")] == ["failed", "failed", "succeeded"] * 2
    assert "never" not in {s.attributes["durable.task"] for s in built.attempts}  # skipped
    run = built.run
    first_end = next(r for r in records if isinstance(r.event, RunSucceeded))
    # the run span ends at the first end and is never reopened (sent once)
    assert run.attributes["durable.generation"] == 1
    assert (run.end, run.end_seq) == (first_end.recorded_at, first_end.seq)
    assert [e.name for e in run.events] == ["run_started"]
    # the rerun is a span of its own, the run's child, parent of generation 2's attempts
    (rerun,) = built.reruns
    assert rerun.name == run.name.replace("run ", "rerun ", 1)
    assert rerun.parent_span_id == run.span_id
    assert rerun.span_id == rerun_span_id(str(run.attributes["durable.run.id"]), 2)
    assert (rerun.end, rerun.end_seq) == (records[-1].recorded_at, records[-1].seq)
    assert rerun.start > first_end.recorded_at
    assert {
        k: v for k, v in rerun.attributes.items() if k.startswith(("durable.rerun", "durable.by"))
    } == {
        "durable.rerun.request_id": "again-1",
        "durable.rerun.tasks": ("flaky",),
        "durable.rerun.downstream": True,
        "durable.rerun.failed_only": False,
        "durable.by": "cli",
    }
    assert rerun.attributes["durable.generation"] == 2
    assert rerun.attributes["durable.run.status"] == "succeeded"
    assert rerun.events == ()
    parents = {
        s.attributes["durable.generation"]: s.parent_span_id
        for s in built.attempts
        if s.attributes["durable.task"] == "flaky"
    }
    assert parents == {1: run.span_id, 2: rerun.span_id}


def test_golden_takeover_shows_the_lost_attempt_and_the_new_executor() -> None:
    records = _golden("takeover.jsonl")
    built = _trace(records)
    assert _attempts(built, "long") == [(1, 1, "lost", "error"), (1, 2, "succeeded", "unset")]
    lost, again = built.attempts[:2]
    assert lost.attributes["error.type"] == "ExecutorLost"
    assert lost.attributes["durable.executor"] == "vm:31277"
    assert again.attributes["durable.executor"] == "vm:31734"
    run = built.run
    assert _event(run, "attempt_lost") == {
        "durable.task": "long",
        "durable.generation": 1,
        "durable.attempt": 1,
        "durable.executor": "vm:31277",
    }
    assert _event(run, "takeover") == {
        "durable.executor": "vm:31734",
        "durable.executor.previous": "vm:31277",
    }
    assert run.status == "unset" and run.attributes["durable.run.status"] == "succeeded"


def test_golden_map_items_are_children_of_the_maps_span() -> None:
    built = _trace(_golden("map.jsonl"))
    square = next(s for s in built.attempts if s.name == "task square")
    items = [s for s in built.attempts if s.name.startswith("task square[")]
    assert len(items) == 6 and {s.parent_span_id for s in items} == {square.span_id}
    assert square.parent_span_id == built.run.span_id


def test_golden_pause_resume_and_cancel() -> None:
    built = _trace(_golden("pause_resume_cancel.jsonl"))
    run = built.run
    assert [e.name for e in run.events] == ["run_started", "paused", "resumed"]
    assert _event(run, "paused") == {"durable.reason": "maintenance", "durable.by": "cli"}
    assert run.status == "unset" and run.attributes["durable.run.status"] == "cancelled"
    assert _attempts(built, "next") == [(1, 1, "cancelled", "unset")]


def test_golden_timeout_a_run_failed_by_no_task() -> None:
    built = _trace(_golden("timeout.jsonl"))
    run = built.run
    assert (run.status, run.status_message) == ("error", "the run exceeded its max_duration of 3 s")
    assert run.attributes["error.type"] == "RunFailed"
    assert {s.attributes.get("error.type") for s in built.attempts if s.status == "error"} == {
        "TaskTimeout"
    }


# -- random histories ------------------------------------------------------------------------


@SETTINGS
@given(histories())
def test_at_every_prefix_the_trace_is_well_formed_and_ended_spans_are_final(
    history: list[Recorded],
) -> None:
    final = _trace(history)
    spans = {s.span_id: s for s in final.attempts}
    for end in range(1, len(history) + 1):
        built = _trace(history[:end])
        _well_formed(history[:end], built)
        for span in built.attempts:
            if span.end is not None:
                assert spans[span.span_id] == span  # what was exported stays true

"""The event unions per stream kind: run, schedule, backfill; ``Event`` is all three."""

from __future__ import annotations

import typing
from datetime import UTC, datetime

import pytest

import durable.core.events as events
from durable.core.backfill import backfill_state
from durable.core.errors import InvalidTransition, MalformedEvent
from durable.core.events import (
    BACKFILL_EVENT_TYPES,
    EVENT_TYPES,
    NOTIFICATION_EVENT_TYPES,
    REGISTRY,
    RUN_EVENT_TYPES,
    SCHEDULE_EVENT_TYPES,
    STREAM_KINDS,
    BackfillPaused,
    BackfillRequested,
    Event,
    Recorded,
    RunStarted,
    SchedulePaused,
    backfill_event,
    backfill_stream,
    run_event,
    run_stream,
    schedule_event,
    schedule_stream,
    stream_kind,
)
from durable.core.fold import fold
from tests.histories import T0, created

# every name `durable.core.events` exported before it became a package
BEFORE = {
    "EVENT_TYPES", "REGISTRY", "BackfillCancelled", "BackfillPaused", "BackfillRequested",
    "BackfillResumed", "ErrorInfo", "Event", "EventRegistry", "Recorded", "RerunQueued",
    "RerunRequested", "RunCancelled", "RunCreated", "RunFailed", "RunPaused", "RunResumed",
    "RunStarted", "RunSucceeded", "SchedulePaused", "ScheduleResumed", "TaskCancelled",
    "TaskFailed", "TaskMapped", "TaskNode", "TaskRetryScheduled", "TaskScheduled",
    "TaskSkipped", "TaskStarted", "TaskSucceeded", "Trigger", "TriggerRule", "Upcaster",
    "backfill_stream", "event_type", "run_stream", "schedule_stream",
}  # fmt: skip


def _tags(types: tuple[type[Event], ...]) -> list[str]:
    return [t.__struct_config__.tag for t in types]  # type: ignore[misc]


def test_every_name_importable_before_still_is() -> None:
    assert set(events.__all__) >= BEFORE
    for name in events.__all__:
        assert hasattr(events, name), name


def test_the_three_unions_split_event_in_its_old_order() -> None:
    # the notification outbox's events are in a run's and a backfill's union: they
    # count once in Event, where the run's union has them
    shared = NOTIFICATION_EVENT_TYPES
    assert set(shared) <= set(RUN_EVENT_TYPES) & set(BACKFILL_EVENT_TYPES)
    own_backfill = tuple(t for t in BACKFILL_EVENT_TYPES if t not in shared)
    in_order = RUN_EVENT_TYPES + SCHEDULE_EVENT_TYPES + own_backfill
    assert in_order == EVENT_TYPES
    assert typing.get_args(Event) == EVENT_TYPES
    assert len(set(EVENT_TYPES)) == len(EVENT_TYPES) == len(REGISTRY.tags) == 29
    assert _tags(SCHEDULE_EVENT_TYPES) == ["schedule_paused", "schedule_resumed"]
    assert _tags(BACKFILL_EVENT_TYPES) == [
        "backfill_requested",
        "backfill_paused",
        "backfill_resumed",
        "backfill_cancelled",
        "backfill_finished",
        "notification_requested",
        "notification_sent",
        "notification_failed",
    ]
    assert dict(STREAM_KINDS) == {
        "run": RUN_EVENT_TYPES,
        "schedule": SCHEDULE_EVENT_TYPES,
        "backfill": BACKFILL_EVENT_TYPES,
    }


def test_stream_kind_comes_from_the_stream_id() -> None:
    assert stream_kind(run_stream("01J")) == "run"
    assert stream_kind(schedule_stream("daily_sales")) == "schedule"
    assert stream_kind(backfill_stream("bf-1")) == "backfill"
    assert stream_kind("run:a:b") == "run"  # only the first colon separates the kind
    for bad in ("run:", "runs:1", "kafka:x", "nothing", ""):
        with pytest.raises(MalformedEvent, match="names no kind of stream"):
            stream_kind(bad)


def test_narrowing_to_a_stream_kind_names_what_does_not_belong() -> None:
    paused = SchedulePaused(reason="r")
    assert schedule_event(paused, where="w") is paused
    with pytest.raises(MalformedEvent, match=r"w: schedule_paused is not an event of a run's"):
        run_event(paused, where="w")
    with pytest.raises(MalformedEvent, match="a backfill's stream holds only backfill_requested"):
        backfill_event(RunStarted(), where="w")
    started = RunStarted()
    assert run_event(started, where="w") is started


def test_each_fold_reads_only_its_own_stream() -> None:
    run = [
        Recorded(stream_id="run:r", seq=1, position=1, recorded_at=T0, event=created("r")),
        Recorded(
            stream_id="run:r", seq=2, position=2, recorded_at=T0, event=BackfillPaused(by="x")
        ),
    ]
    with pytest.raises(InvalidTransition, match="backfill_paused is impossible here: a sche"):
        fold(run)
    request = BackfillRequested(
        backfill_id="b",
        workflow="w",
        start=datetime(2026, 11, 1, tzinfo=UTC),
        end=datetime(2026, 11, 2, tzinfo=UTC),
        intervals=1,
    )
    state = backfill_state([request, BackfillPaused()])
    assert state is not None and state.status == "paused"
    with pytest.raises(MalformedEvent, match="run_created is not an event of a backfill"):
        backfill_state([request, created("r")])

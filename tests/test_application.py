"""The application layer on both stores: creating runs at every door (idempotency
conflicts refused), and the generic load-fold-decide-append loop under real conflicts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from durable import Param, TaskContext, Workflow
from durable.application.backfills import cancel_backfill, set_backfill_paused
from durable.application.runs import create_run
from durable.application.schedules import schedule_status, set_schedule_paused
from durable.application.streams import apply_to_stream
from durable.core.backfill import (
    CancelBackfill,
    PauseBackfill,
    RequestBackfill,
    ResumeBackfill,
    backfill_state,
    decide_backfill,
)
from durable.core.errors import DurableError, IdempotencyConflict
from durable.core.events import (
    BackfillRequested,
    Event,
    Recorded,
    SchedulePaused,
    ScheduleResumed,
    Trigger,
    backfill_stream,
    schedule_stream,
)
from durable.core.schedule import (
    PauseSchedule,
    ResumeSchedule,
    ScheduleState,
    decide_schedule,
    schedule_state,
)
from durable.store import EventStore, MemoryEventStore, PostgresEventStore
from tests.executing import run_to_end
from tests.histories import T0


@pytest.fixture(params=["memory", "postgres"])
def store(request: pytest.FixtureRequest) -> EventStore:
    if request.param == "memory":
        return MemoryEventStore()
    pg: PostgresEventStore = request.getfixturevalue("pg_store")
    return pg


def _workflow() -> Workflow:
    wf = Workflow("orders", params={"n": Param("int", default=1)})

    @wf.task
    async def load(ctx: TaskContext) -> int:
        return int(ctx.params["n"])

    return wf


async def test_one_key_same_request_is_one_run(store: EventStore) -> None:
    spec = _workflow().spec()
    first, created = await create_run(
        store, spec, {"n": "2"}, idempotency_key="http:orders:k", params_from="text"
    )
    assert created
    # the same request through another door: the text "2" (CLI) and the JSON 2 (API)
    again, created = await create_run(store, spec, {"n": 2}, idempotency_key="http:orders:k")
    assert (again, created) == (first, False)
    assert len(await store.list_runs()) == 1


async def test_one_key_other_params_is_refused_and_records_nothing(store: EventStore) -> None:
    spec = _workflow().spec()
    first, _ = await create_run(store, spec, {"n": 2}, idempotency_key="http:orders:k")
    position = await store.last_position()
    with pytest.raises(IdempotencyConflict) as info:
        await create_run(store, spec, {"n": 3}, idempotency_key="http:orders:k")
    assert info.value.idempotency_key == "http:orders:k"
    assert info.value.existing_run_id == first
    assert info.value.hint and "new key" in info.value.hint
    other = Workflow("other", params={"n": Param("int", default=1)})

    @other.task
    async def t() -> int:
        return 1

    with pytest.raises(IdempotencyConflict):  # another workflow, same key
        await create_run(store, other.spec(), {"n": 2}, idempotency_key="http:orders:k")
    with pytest.raises(IdempotencyConflict):  # another logical time
        await create_run(
            store,
            spec,
            {"n": 2},
            idempotency_key="http:orders:k",
            trigger=Trigger(kind="api", logical_time=T0),
        )
    assert await store.last_position() == position
    assert [r.run_id for r in await store.list_runs()] == [first]


async def test_apply_to_stream_decides_again_after_a_real_conflict(store: EventStore) -> None:
    stream = "schedule:orders"
    asked: list[int] = []

    def fold(records: Sequence[Recorded]) -> int:
        return len(records)

    async def competing() -> None:
        await store.append(stream, 0, [SchedulePaused(reason="the other writer")])

    pending = [competing]

    def decide(seen: int) -> list[Event]:
        asked.append(seen)
        return [ScheduleResumed()] if seen else [SchedulePaused(reason="me")]

    # the other writer appends between our read and our append: our append conflicts
    original = store.read_stream

    async def read_then_lose_the_race(stream_id: str, after_seq: int = 0) -> list[Recorded]:
        records = await original(stream_id, after_seq)
        if pending:
            await pending.pop()()
        return records

    store.read_stream = read_then_lose_the_race  # type: ignore[method-assign]
    state, appended = await apply_to_stream(store, stream, fold, decide)
    assert asked == [0, 1]  # decided again on the state the conflict revealed
    assert state == 1 and [r.seq for r in appended] == [2]
    events = [r.event for r in await original(stream)]
    assert events == [SchedulePaused(reason="the other writer"), ScheduleResumed()]


async def test_apply_to_stream_appends_nothing_when_already_in_effect(store: EventStore) -> None:
    state, appended = await apply_to_stream(store, "schedule:x", lambda r: len(r), lambda seen: [])
    assert (state, appended) == (0, [])
    assert await store.read_stream("schedule:x") == []


async def test_schedules_pause_and_resume_once(store: EventStore) -> None:
    assert await set_schedule_paused(store, "orders", False, by="me") is False  # never paused
    assert await set_schedule_paused(store, "orders", True, reason="maintenance", by="me")
    assert await set_schedule_paused(store, "orders", True, by="me") is False
    events = [r.event for r in await store.read_stream(schedule_stream("orders"))]
    assert events == [SchedulePaused(reason="maintenance", by="me")]
    assert await set_schedule_paused(store, "orders", False, by="me")


async def test_backfill_commands_through_the_store(store: EventStore) -> None:
    request = BackfillRequested(
        backfill_id="bf-1", workflow="orders", start=T0, end=T0, intervals=0
    )
    await store.append(backfill_stream("bf-1"), 0, [request])
    assert await set_backfill_paused(store, "bf-1", True, "me") == "paused backfill bf-1"
    assert await set_backfill_paused(store, "bf-1", True, "me") == "backfill bf-1 is already paused"
    assert await cancel_backfill(store, "bf-1", "me") == 0
    assert await cancel_backfill(store, "bf-1", "me") == 0  # again: nothing more appended
    with pytest.raises(DurableError, match="cancelled"):
        await set_backfill_paused(store, "bf-1", False, "me")
    with pytest.raises(DurableError, match="no backfill 'nope'"):
        await set_backfill_paused(store, "nope", True, "me")
    assert len(await store.read_stream(backfill_stream("bf-1"))) == 3


def test_schedule_decisions_are_pure_and_idempotent() -> None:
    running = ScheduleState()
    paused = schedule_state([SchedulePaused()])
    assert decide_schedule(running, PauseSchedule(reason="r")) == [SchedulePaused(reason="r")]
    assert decide_schedule(paused, PauseSchedule()) == []
    assert decide_schedule(paused, ResumeSchedule(by="me")) == [ScheduleResumed(by="me")]
    assert decide_schedule(running, ResumeSchedule()) == []
    assert schedule_state([SchedulePaused(), ScheduleResumed()]) == running


def test_backfill_decisions_are_pure_and_idempotent() -> None:
    request = BackfillRequested(backfill_id="b", workflow="w", start=T0, end=T0, intervals=1)
    assert decide_backfill(None, RequestBackfill(request=request)) == [request]
    state = backfill_state([request])
    assert decide_backfill(state, RequestBackfill(request=request)) == []
    assert decide_backfill(state, ResumeBackfill()) == []
    paused_events = decide_backfill(state, PauseBackfill(by="me"))
    paused = backfill_state([request, *paused_events])
    assert paused is not None and paused.status == "paused"
    assert decide_backfill(paused, PauseBackfill()) == []
    cancelled = backfill_state([request, *decide_backfill(paused, CancelBackfill())])
    assert decide_backfill(cancelled, CancelBackfill()) == []
    with pytest.raises(DurableError):
        decide_backfill(cancelled, ResumeBackfill())
    with pytest.raises(DurableError):
        decide_backfill(None, PauseBackfill())


async def test_a_workflow_runs_end_to_end_on_the_memory_store() -> None:
    """A pure executor test: no database anywhere."""
    store = MemoryEventStore()
    wf = Workflow("pure", params={"n": Param("int", default=3)})

    @wf.task
    async def source(ctx: TaskContext) -> int:
        ctx.log.info("source says %s", ctx.params["n"])
        return int(ctx.params["n"])

    @wf.task(after=[source])
    def double(source: int) -> int:
        return source * 2

    @wf.task(after=[source, double])
    async def total(source: int, double: int) -> int:
        return source + double

    state = await run_to_end(store, wf, {"n": 5})
    assert state.status == "succeeded"
    assert state.tasks["total"].output == 15
    assert all(t.executions == 1 for t in state.tasks.values())
    rows = await store.list_runs()
    assert [(r.workflow, r.status) for r in rows] == [("pure", "succeeded")]
    lines = await store.logs.read(state.run_id, "source")
    assert [line.message for line in lines] == ["source says 5"]
    assert (await store.versions.of("pure"))[0].runs == 1
    assert (await store.metrics_counts()).live_leases == 0  # released at the end


async def test_schedule_status_reads_the_store(store: EventStore) -> None:
    from durable.core.schedule import Schedule

    wf = Workflow("nightly", schedule=Schedule(cron="0 2 * * *"))

    @wf.task
    async def t() -> int:
        return 1

    spec = wf.spec()
    status: dict[str, Any] = await schedule_status(store, spec)
    assert status == {
        "paused": False,
        "last_logical_time": None,
        "last_end": None,
        "first_seen": None,
    }
    await create_run(
        store,
        spec,
        {},
        idempotency_key="schedule:nightly:x",
        trigger=Trigger(kind="schedule", logical_time=T0),
    )
    await store.append(schedule_stream("nightly"), 0, [SchedulePaused()])
    status = await schedule_status(store, spec)
    assert status["paused"] and status["last_logical_time"] == T0
    assert status["last_end"] is not None and status["last_end"] > T0

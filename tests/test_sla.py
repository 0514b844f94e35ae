"""SLAs and freshness: deadlines follow from the log; a miss is recorded once, in the run's
stream, and notified; backfills' ends are recorded and notified. Pure deadline math
first, then the notifier on the real PostgreSQL with a webhook receiver on loopback."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from durable import Schedule, Sla, Webhook, Workflow
from durable.application.backfills import request_backfill
from durable.application.runs import create_run
from durable.core.events import (
    BackfillFinished,
    NotificationRequested,
    NotificationSent,
    Recorded,
    RunStarted,
    RunSucceeded,
    SlaMissed,
    Trigger,
    backfill_stream,
    run_stream,
)
from durable.core.fold import fold
from durable.core.notify import keyed_rules
from durable.core.sla import finish_deadline, next_deadline, sla_events
from durable.runtime.notifier import READER
from durable.runtime.triggers.assets import AssetService
from durable.store import EventStore, PostgresEventStore
from tests.executing import registry_of, running_executor, wait_for_run
from tests.histories import created, task_ok
from tests.receivers import HttpReceiver
from tests.signs import counter_grows, eventually
from tests.test_notifications import notifying

PARIS = Sla(finish_by="06:00", timezone="Europe/Paris")


def scheduled(end: datetime, kind: str = "schedule") -> Trigger:
    return Trigger(
        kind=kind,
        logical_time=end - timedelta(days=1),
        data_interval_start=end - timedelta(days=1),
        data_interval_end=end,
    )


def test_finish_by_is_the_first_such_local_time_after_the_interval_ends() -> None:
    winter = datetime(2026, 1, 10, 23, 0, tzinfo=UTC)  # midnight in Paris (UTC+1)
    assert finish_deadline(PARIS, scheduled(winter)) == datetime(2026, 1, 11, 5, 0, tzinfo=UTC)
    summer = datetime(2026, 7, 9, 22, 0, tzinfo=UTC)  # midnight in Paris (UTC+2)
    assert finish_deadline(PARIS, scheduled(summer)) == datetime(2026, 7, 10, 4, 0, tzinfo=UTC)
    # the night the clocks go forward: 06:00 is still 06:00 on the wall
    dst = datetime(2026, 3, 28, 23, 0, tzinfo=UTC)
    assert finish_deadline(PARIS, scheduled(dst)) == datetime(2026, 3, 29, 4, 0, tzinfo=UTC)
    # an interval ending at 06:00 is due at 06:00 the next day, not at once
    six = datetime(2026, 1, 11, 5, 0, tzinfo=UTC)
    assert finish_deadline(PARIS, scheduled(six)) == datetime(2026, 1, 12, 5, 0, tzinfo=UTC)
    # backfills and runs started by hand have no finish_by
    assert finish_deadline(PARIS, scheduled(winter, "backfill")) is None
    assert finish_deadline(PARIS, Trigger(kind="manual")) is None


def _run(
    trigger: Trigger, events: list[Any], at: datetime, end: datetime | None = None
) -> list[Recorded]:
    """A run of one task ``a`` with ``trigger``: ``events`` after its creation, at
    ``at`` (the last one at ``end``, if given)."""
    first = msgspec.structs.replace(created("r1", ["a"], workflow="sales"), trigger=trigger)
    return [
        Recorded(
            stream_id="run:r1",
            seq=i,
            position=i,
            recorded_at=end if end is not None and i == len(events) + 1 else at,
            event=e,
        )
        for i, e in enumerate([first, *events], start=1)
    ]


def test_a_miss_is_decided_once_and_a_late_finish_is_one_too() -> None:
    end = datetime(2026, 1, 10, 23, 0, tzinfo=UTC)
    deadline = datetime(2026, 1, 11, 5, 0, tzinfo=UTC)
    rules = keyed_rules([Webhook("http://example.com/x", on=["sla_missed"])], [])
    state = fold(_run(scheduled(end), [RunStarted()], end))
    assert state is not None and next_deadline(state, PARIS) == deadline
    assert sla_events(state, PARIS, deadline, rules) == []  # not past it yet
    missed, request = sla_events(state, PARIS, deadline + timedelta(seconds=1), rules)
    assert isinstance(missed, SlaMissed) and missed.key == "finish_by"
    assert missed.deadline == deadline and "still running" in missed.detail
    assert isinstance(request, NotificationRequested)
    assert request.notification_id == "run:r1:3:w0" and request.fields["sla"] == "finish_by"
    after = fold(_run(scheduled(end), [RunStarted(), missed, request], end))
    assert after is not None and after.sla_missed == ("finish_by",)
    assert sla_events(after, PARIS, deadline + timedelta(hours=9), rules) == []
    assert next_deadline(after, PARIS) is None
    # a run that ends after its deadline, no miss recorded yet: a late finish
    done = [RunStarted(), *task_ok("a"), RunSucceeded()]
    late = fold(_run(scheduled(end), done, end, deadline + timedelta(minutes=30)))
    assert late is not None and late.status == "succeeded"
    [missed] = sla_events(late, PARIS, deadline + timedelta(hours=2), [])
    assert isinstance(missed, SlaMissed) and "ended 30 min late (succeeded)" in missed.detail
    on_time = fold(_run(scheduled(end), done, end, deadline - timedelta(minutes=1)))
    assert (
        on_time is not None and sla_events(on_time, PARIS, deadline + timedelta(days=1), []) == []
    )


async def _sla_notifications(store: EventStore, run_id: str) -> list[Recorded]:
    return [
        r
        for r in await store.read_stream(run_stream(run_id))
        if isinstance(r.event, SlaMissed | NotificationRequested | NotificationSent)
    ]


RELEASE: dict[str, asyncio.Event] = {}


async def hold(ctx: Any) -> str:
    await RELEASE["slow"].wait()
    return "late"


async def test_a_run_past_its_max_duration_misses_its_sla_once_and_goes_on(
    pg_store: PostgresEventStore,
) -> None:
    RELEASE["slow"] = asyncio.Event()
    hook = await HttpReceiver().start()
    wf = Workflow(
        "slow",
        sla=Sla(max_duration=0.3),
        notify=[Webhook(f"{hook.url}/sla", on=["sla_missed"])],
    )
    wf.task(hold, name="wait")
    registry = registry_of(wf)
    try:
        async with (
            running_executor(pg_store, registry),
            notifying(pg_store, registry, check_interval=0.1) as notifier,
        ):
            run_id, _ = await create_run(pg_store, wf.spec(), {})

            async def missed() -> bool:
                return any(
                    isinstance(r.event, SlaMissed)
                    for r in await _sla_notifications(pg_store, run_id)
                )

            await eventually(missed, "the SLA miss was recorded")
            await hook.wait_for(1)
            RELEASE["slow"].set()  # the run goes on, and ends after its deadline
            state = await wait_for_run(pg_store, run_id)
            end = next(
                r
                for r in await pg_store.read_stream(run_stream(run_id))
                if isinstance(r.event, RunSucceeded)
            )

            async def read_past_the_end() -> bool:
                position = await pg_store.tracking.log_position(READER)
                return position >= end.position and not notifier.pending

            await eventually(read_past_the_end, "the notifier read the run's end")
            await counter_grows(lambda: notifier.rounds, 2, "the notifier went round")
    finally:
        await hook.stop()
    assert state.status == "succeeded"  # a miss never changes the run
    misses = [
        r.event
        for r in await pg_store.read_stream(run_stream(run_id))
        if isinstance(r.event, SlaMissed)
    ]
    assert len(misses) == 1 and misses[0].sla == "max_duration"
    assert state.sla_missed == ("max_duration",)
    [got] = hook.received
    assert got.json["fields"]["sla"] == "max_duration" and got.json["event"] == "sla_missed"
    assert got.json["subject"] == f"[durable] slow missed its SLA: {misses[0].detail}"


async def test_a_scheduled_run_not_done_by_its_finish_by_is_recorded_once_even_pending(
    pg_store: PostgresEventStore,
) -> None:
    hook = await HttpReceiver().start()
    wf = Workflow("nightly", sla=PARIS, notify=[Webhook(f"{hook.url}/sla", on=["sla_missed"])])
    wf.shell("load", "true")
    registry = registry_of(wf)
    end = datetime(2026, 1, 10, 23, 0, tzinfo=UTC)
    try:
        # no executor: the run waits, pending, and its deadline passes
        async with notifying(pg_store, registry, check_interval=0.05) as notifier:
            run_id, _ = await create_run(pg_store, wf.spec(), {}, trigger=scheduled(end))
            await hook.wait_for(1)
            await counter_grows(lambda: notifier.rounds, 5, "the notifier kept checking")
    finally:
        await hook.stop()
    state = fold(await pg_store.read_stream(run_stream(run_id)))
    assert state is not None and state.status == "pending"
    misses = [
        r.event
        for r in await pg_store.read_stream(run_stream(run_id))
        if isinstance(r.event, SlaMissed)
    ]
    assert [(m.key, m.deadline) for m in misses] == [
        ("finish_by", datetime(2026, 1, 11, 5, 0, tzinfo=UTC))
    ]
    assert len(hook.received) == 1


def daily(ctx: Any) -> str:
    return "ok"


async def test_a_backfills_end_is_recorded_once_and_notified(pg_store: PostgresEventStore) -> None:
    hook = await HttpReceiver().start()
    wf = Workflow(
        "daily",
        schedule=Schedule(cron="0 2 * * *"),
        notify=[Webhook(f"{hook.url}/done", on=["backfill_finished"])],
    )
    wf.task(daily, name="load")
    registry = registry_of(wf)
    start = datetime(2026, 11, 1, tzinfo=UTC)
    try:
        async with running_executor(pg_store, registry), notifying(pg_store, registry):
            backfill_id, plan = await request_backfill(
                pg_store, wf.spec(), start, start + timedelta(days=2)
            )
            [got] = await hook.wait_for(1)
    finally:
        await hook.stop()
    assert len(plan.intervals) == 2
    payload = got.json
    assert payload["event"] == "backfill_finished"
    assert payload["fields"]["backfill_id"] == backfill_id
    assert payload["fields"]["status"] == "succeeded"
    assert payload["fields"]["runs"] == {"succeeded": 2}
    assert payload["subject"] == f"[durable] backfill {backfill_id} of daily succeeded"
    assert payload["run_url"] == "http://durable.test:8080/ui/backfills"
    records = await pg_store.read_stream(backfill_stream(backfill_id))
    finished = [r for r in records if isinstance(r.event, BackfillFinished)]
    assert len(finished) == 1
    assert payload["notification_id"] == f"backfill:{backfill_id}:{finished[0].seq}:w0"


async def test_an_asset_past_its_max_staleness_is_a_miss_on_the_run_that_last_updated_it(
    pg_store: PostgresEventStore,
) -> None:
    hook = await HttpReceiver().start()
    producer = Workflow("load_sales")
    producer.shell("load", "true", produces=["warehouse.sales"])
    watcher = Workflow(
        "dashboard",
        sla=Sla(max_staleness={"warehouse.sales": 0.2}),
        notify=[Webhook(f"{hook.url}/stale", on=["sla_missed"])],
    )
    watcher.shell("refresh", "true")
    registry = registry_of(producer, watcher)
    try:
        async with running_executor(pg_store, registry):
            run_id, _ = await create_run(pg_store, producer.spec(), {})
            await wait_for_run(pg_store, run_id)
        await AssetService(pg_store, registry).catch_up()  # the asset's latest update
        async with notifying(pg_store, registry, check_interval=0.05) as notifier:
            [got] = await hook.wait_for(1)
            await counter_grows(lambda: notifier.rounds, 5, "the notifier kept checking")
    finally:
        await hook.stop()
    misses = [
        r.event
        for r in await pg_store.read_stream(run_stream(run_id))
        if isinstance(r.event, SlaMissed)
    ]
    [miss] = misses
    assert miss.sla == "max_staleness" and miss.asset == "warehouse.sales"
    assert miss.workflow == "dashboard" and miss.key.startswith("max_staleness:warehouse.sales@")
    assert got.json["fields"]["asset"] == "warehouse.sales"
    assert got.json["fields"]["workflow"] == "dashboard" and got.json["fields"]["run_id"] == run_id
    assert len(hook.received) == 1

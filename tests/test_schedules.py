"""Schedules: cron in a time zone across real DST transitions, catch-up, exactly-once ticks."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from durable import Param, Schedule, Workflow
from durable.application.runs import register_versions
from durable.cli import main
from durable.core.schedule import Tick, due_ticks, fire_times
from durable.core.spec import DefinitionError
from durable.runtime.scheduler import Scheduler
from durable.store import PostgresEventStore, RunFilter
from tests.executing import registry_of
from tests.signs import counter_grows

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def local(times: list[datetime], zone: ZoneInfo) -> list[str]:
    return [t.astimezone(zone).strftime("%m-%d %H:%M %Z") for t in times]


def test_a_local_time_that_does_not_exist_runs_at_the_next_valid_instant() -> None:
    daily = Schedule(cron="30 2 * * *", timezone="Europe/Paris")
    fires = fire_times(daily, utc(2026, 3, 27), utc(2026, 3, 31))
    # 2026-03-29: clocks jump 02:00 -> 03:00; 02:30 does not exist -> 03:00 CEST
    assert local(fires, PARIS) == [
        "03-27 02:30 CET",
        "03-28 02:30 CET",
        "03-29 03:00 CEST",
        "03-30 02:30 CEST",
    ]


def test_a_local_time_that_happens_twice_runs_once() -> None:
    daily = Schedule(cron="30 1 * * *", timezone="America/New_York")
    fires = fire_times(daily, utc(2026, 10, 31), utc(2026, 11, 3))
    # 2026-11-01: 01:30 happens twice in New York; it runs once, the first time (EDT)
    assert local(fires, NEW_YORK) == ["10-31 01:30 EDT", "11-01 01:30 EDT", "11-02 01:30 EST"]
    hourly = Schedule(cron="0 * * * *", timezone="Europe/Paris")
    fires = fire_times(hourly, utc(2026, 10, 24, 22, 30), utc(2026, 10, 25, 3, 0))
    assert local(fires, PARIS) == [
        "10-25 01:00 CEST",
        "10-25 02:00 CEST",
        "10-25 03:00 CET",
        "10-25 04:00 CET",
    ]


def test_ticks_cover_contiguous_data_intervals() -> None:
    daily = Schedule(cron="0 2 * * *", timezone="Europe/Paris", catchup="all")
    ticks = due_ticks(daily, None, utc(2026, 11, 22, 3), first_seen=utc(2026, 11, 19, 12))
    assert [t.logical_time.astimezone(PARIS).date().isoformat() for t in ticks] == [
        "2026-11-19",
        "2026-11-20",
        "2026-11-21",
    ]
    for a, b in itertools.pairwise(ticks):
        assert a.end == b.start
    assert all(t.end - t.start == timedelta(days=1) for t in ticks)


@pytest.mark.parametrize(("policy", "expected"), [("all", 4), ("latest", 1), ("none", 0)])
def test_catch_up_policies_after_downtime(policy: str, expected: int) -> None:
    sched = Schedule(cron="0 * * * *", catchup=policy)  # type: ignore[arg-type]
    last_end = utc(2026, 11, 22, 8)
    ticks = due_ticks(sched, last_end, utc(2026, 11, 22, 12, 30), first_seen=last_end)
    assert len(ticks) == expected
    if ticks:
        assert ticks[-1] == Tick(start=utc(2026, 11, 22, 11), end=utc(2026, 11, 22, 12))
    on_time = due_ticks(sched, last_end, utc(2026, 11, 22, 9, 0, 10), first_seen=last_end)
    assert len(on_time) == 1  # a tick that is just due runs under every policy


def test_a_fixed_interval_schedule() -> None:
    every = Schedule(every=900, start=utc(2026, 11, 22))
    assert fire_times(every, utc(2026, 11, 22), utc(2026, 11, 22, 1)) == [
        utc(2026, 11, 22, 0, 15),
        utc(2026, 11, 22, 0, 30),
        utc(2026, 11, 22, 0, 45),
        utc(2026, 11, 22, 1),
    ]


def test_scheduled_workflows_must_fill_their_params() -> None:
    wf = Workflow(
        "bad_sched", params={"region": Param(required=True)}, schedule=Schedule(cron="0 2 * * *")
    )
    wf.shell("a", "true")
    with pytest.raises(DefinitionError, match="scheduled runs cannot fill required param 'region'"):
        wf.spec()


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def test_each_tick_creates_its_run_exactly_once(
    pg_store: PostgresEventStore, database_url: str, tmp_path: Path
) -> None:
    wf = Workflow(
        "nightly",
        params={"date": Param("date", required=True)},
        schedule=Schedule(
            cron="0 2 * * *", timezone="Europe/Paris", catchup="all", start=utc(2026, 11, 18, 1)
        ),
    )
    wf.shell("load", "echo ${params.date}")
    registry = registry_of(wf)
    await register_versions(pg_store, registry)
    clock = Clock(utc(2026, 11, 21, 3))
    scheduler = Scheduler(pg_store, registry, clock=clock)
    created = await scheduler.tick()
    assert len(created) == 3  # 18th, 19th, 20th: caught up
    assert await scheduler.tick() == []  # the same instant again: nothing new
    other = Scheduler(pg_store, registry, clock=clock)
    assert await other.tick() == []  # another process at the same time: nothing new
    runs = sorted(
        await pg_store.list_runs(RunFilter(workflow="nightly")), key=lambda r: r.created_at
    )
    assert [r.params["date"] for r in runs] == ["2026-11-18", "2026-11-19", "2026-11-20"]
    assert {r.idempotency_key for r in runs} == {
        f"schedule:nightly:{d}T01:00:00+00:00" for d in ("2026-11-18", "2026-11-19", "2026-11-20")
    }

    def cli(*args: str) -> str:
        result = CliRunner().invoke(main, ["--database-url", database_url, *args])
        assert result.exit_code == 0, result.output
        return result.output

    folder = tmp_path / "wfs"
    folder.mkdir()
    (folder / "nightly.yaml").write_text(
        "workflow: nightly\nparams:\n  date: {type: date, required: true}\n"
        "schedule: {cron: '0 2 * * *', timezone: Europe/Paris, catchup: all, "
        "start: '2026-11-18T01:00:00Z'}\n"
        "tasks:\n  load:\n    shell: echo ${params.date}\n"
    )
    assert (
        await asyncio.to_thread(cli, "schedules", "--workflows", str(folder), "pause", "nightly")
        == "paused the schedule of nightly\n"
    )
    clock.now = utc(2026, 11, 23, 3)
    assert await scheduler.tick() == []  # paused
    listing = await asyncio.to_thread(cli, "schedules", "--workflows", str(folder))
    assert "nightly" in listing and "paused" in listing and "Europe/Paris" in listing
    await asyncio.to_thread(cli, "schedules", "--workflows", str(folder), "resume", "nightly")
    created = await scheduler.tick()
    assert len(created) == 2  # the 21st and 22nd, missed while paused: catch-up all
    dates = sorted(
        r.params["date"] for r in await pg_store.list_runs(RunFilter(workflow="nightly"))
    )
    assert dates == ["2026-11-18", "2026-11-19", "2026-11-20", "2026-11-21", "2026-11-22"]


async def test_one_scheduler_leads_and_another_takes_over(pg_store: PostgresEventStore) -> None:
    wf = Workflow("led", schedule=Schedule(every=3600))
    wf.shell("a", "true")
    registry = registry_of(wf)
    first, second = (Scheduler(pg_store, registry, poll_interval=0.1) for _ in range(2))
    stop_first, stop_second = asyncio.Event(), asyncio.Event()
    t1 = asyncio.create_task(first.run(stop_first))
    await asyncio.wait_for(first.leading.wait(), 10)
    t2 = asyncio.create_task(second.run(stop_second))
    # the second has tried for the lead, twice, and found it taken
    await counter_grows(lambda: second.standby_rounds, 2, "the second scheduler tried to lead")
    assert first.leading.is_set() and not second.leading.is_set()
    stop_first.set()  # the leader goes away: its connection, and so its lock, with it
    await t1
    await asyncio.wait_for(second.leading.wait(), 10)
    stop_second.set()
    await t2

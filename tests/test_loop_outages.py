"""The I/O loops outlive their dependencies: PostgreSQL restarted for real (and the S3
endpoint replaced) under the executor's claim loop and LISTEN connection, the scheduler,
the S3 poller and the asset tracker. Each resumes by itself, loses and doubles nothing,
and says so in one line when the dependency goes and one when it is back — no
traceback, no flood."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest

from durable import Param, S3Trigger, Schedule, Workflow
from durable.application.runs import create_run, register_versions
from durable.core.errors import StoreError
from durable.runtime.scheduler import Scheduler
from durable.runtime.triggers.assets import AssetService
from durable.runtime.triggers.s3 import S3PollingService
from durable.store import PostgresEventStore, RunFilter, connect
from durable.workflows import load_workflows
from tests.executing import registry_of, running_executor, wait_for_run
from tests.own_postgres import Postgres, own_postgres_in
from tests.test_s3 import s3

pytestmark = pytest.mark.slow

T = TypeVar("T")
BACK_WITHIN = 30.0  # seconds after the dependency is back by which work must resume


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator[Postgres]:
    yield from own_postgres_in(tmp_path)


@pytest.fixture
async def store(own_postgres: Postgres) -> AsyncIterator[PostgresEventStore]:
    s = await connect(own_postgres.url)
    yield s
    await s.close()


async def eventually(
    check: Callable[[], Awaitable[bool] | bool], what: str, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = check()
            if not isinstance(result, bool):
                result = await result
            if result:
                return
        except StoreError:
            pass  # the database is still coming back
        await asyncio.sleep(0.05)
    raise AssertionError(f"not within {timeout:.0f} s: {what}")


async def retrying(call: Callable[[], Awaitable[T]], timeout: float = BACK_WITHIN) -> T:
    """The test's own store calls, retried while the database comes back."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await call()
        except StoreError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


class Lines:
    """The log lines of one logger (and its children) from a given moment on."""

    def __init__(self, caplog: pytest.LogCaptureFixture, logger: str) -> None:
        self.caplog = caplog
        self.logger = logger
        self.start = len(caplog.records)

    def records(self) -> list[logging.LogRecord]:
        return self.caplog.records[self.start :]

    def check(self, *, outages: int, bound: int) -> list[str]:
        """``outages`` dependencies went and came back, each told once; nothing else
        beyond ``bound`` lines, and never a traceback (from any logger)."""
        ours = [r for r in self.records() if r.name.startswith(("durable", "asyncio"))]
        assert not [r for r in ours if r.exc_info], self.text()
        assert not [r for r in ours if "Traceback" in r.getMessage()], self.text()
        mine = [
            r.getMessage()
            for r in self.records()
            if r.name.startswith(self.logger) and r.levelno >= logging.WARNING
        ]
        went = [m for m in mine if " unavailable (" in m]
        back = [m for m in mine if " back after " in m]
        assert len(went) == outages and len(back) == outages, "\n".join(mine)
        assert len(mine) <= bound, "\n".join(mine)
        return mine

    def text(self) -> str:
        return "\n".join(f"{r.name}: {r.getMessage()}" for r in self.records())


# -- the executor -----------------------------------------------------------------------


async def test_the_executor_listens_again_after_a_restart(
    own_postgres: Postgres, store: PostgresEventStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    wf = Workflow("quick")
    wf.shell("a", "true")
    registry = registry_of(wf)
    await register_versions(store, registry)
    # a long poll: only a wake-up can start a run quickly
    async with running_executor(store, registry, poll_interval=30) as executor:
        first, _ = await create_run(store, wf.spec(), {})
        await wait_for_run(store, first, timeout=5)  # heard, before the restart
        lines = Lines(caplog, "durable.runtime.executor")
        own_postgres.stop()
        # the lost LISTEN connection wakes the claim loop, which finds PostgreSQL away
        await eventually(lambda: executor.database.down, "the executor saw the outage", 15)
        await asyncio.sleep(2)
        own_postgres.start()
        back = time.monotonic()
        await eventually(
            lambda: not executor.database.down,
            "the executor saw PostgreSQL back",
            BACK_WITHIN,
        )
        await eventually(
            lambda: executor.listening,
            "listening again",
            BACK_WITHIN,
        )
        assert time.monotonic() - back < BACK_WITHIN
        second, _ = await retrying(lambda: create_run(store, wf.spec(), {}))
        created = time.monotonic()
        state = await wait_for_run(store, second, timeout=5)
        assert state.status == "succeeded"
        assert time.monotonic() - created < 3, "the run waited for the poll: not re-listened"
    lines.check(outages=1, bound=3)


# -- the scheduler ----------------------------------------------------------------------


async def _logical_times(store: PostgresEventStore) -> list[Any]:
    runs = await store.list_runs(RunFilter(workflow="ticking", limit=1000))
    return sorted(r.logical_time for r in runs)


async def test_the_scheduler_leads_again_after_a_restart_and_ticks_exactly_once(
    own_postgres: Postgres, store: PostgresEventStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    wf = Workflow("ticking", schedule=Schedule(every=1, catchup="all"))
    wf.shell("a", "true")
    registry = registry_of(wf)
    await register_versions(store, registry)
    scheduler = Scheduler(store, registry, poll_interval=0.2)
    stop = asyncio.Event()
    task = asyncio.create_task(scheduler.run(stop))
    try:
        await asyncio.wait_for(scheduler.leading.wait(), 10)
        await eventually(lambda: _count_at_least(store, 3), "three ticks before", 15)
        lines = Lines(caplog, "durable.runtime.scheduler")
        own_postgres.stop()
        await eventually(lambda: scheduler.database.down, "the scheduler saw the outage", 15)
        await eventually(lambda: not scheduler.leading.is_set(), "it stopped leading", 5)
        went = datetime.now(UTC)
        await asyncio.sleep(3)  # three ticks fall due meanwhile
        own_postgres.start()
        back = time.monotonic()
        back_at = datetime.now(UTC)
        await asyncio.wait_for(scheduler.leading.wait(), BACK_WITHIN)
        await eventually(
            lambda: _ticked_after(store, back_at + timedelta(seconds=2)),
            "ticks after the restart",
            BACK_WITHIN,
        )
        assert time.monotonic() - back < BACK_WITHIN
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    times = await _logical_times(store)
    assert len(times) == len(set(times)), "a tick was doubled"
    assert times == [times[0] + timedelta(seconds=i) for i in range(len(times))], (
        f"a tick was lost: {times}"
    )
    assert times[0] < went - timedelta(seconds=2)  # ticks before, during and after
    lines.check(outages=1, bound=4)


async def _count_at_least(store: PostgresEventStore, n: int) -> bool:
    return len(await _logical_times(store)) >= n


async def _ticked_after(store: PostgresEventStore, moment: datetime) -> bool:
    times = await _logical_times(store)
    return bool(times) and times[-1] >= moment


# -- the S3 poller ----------------------------------------------------------------------


class Moto:
    """An S3 endpoint that can go away and come back on the same port, objects kept
    (moto keeps its state process-wide, across server instances)."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self._server_class = ThreadedMotoServer
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server: Any = None
        self.start()
        urllib.request.urlopen(
            urllib.request.Request(f"{self.url}/moto-api/reset", method="POST"), timeout=10
        ).close()

    def start(self) -> None:
        self.server = self._server_class(ip_address="127.0.0.1", port=self.port)
        self.server.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


@pytest.fixture
def moto(monkeypatch: pytest.MonkeyPatch) -> Iterator[Moto]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    server = Moto()
    yield server
    server.stop()


async def _put(endpoint: str, *keys: str) -> None:
    async with s3(endpoint) as client:
        for key in keys:
            await client.put_object(Bucket="landing", Key=key, Body=key.encode())


async def _runs_by_key(store: PostgresEventStore) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in await store.list_runs(RunFilter(workflow="ingest", limit=1000)):
        out[str(r.params["key"])] = out.get(str(r.params["key"]), 0) + 1
    return out


async def _keys_started(store: PostgresEventStore, n: int) -> bool:
    return len(await _runs_by_key(store)) >= n


async def test_the_s3_poller_outlives_its_endpoint_and_postgres(
    own_postgres: Postgres,
    store: PostgresEventStore,
    moto: Moto,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    wf = Workflow(
        "ingest",
        params={
            "bucket": Param(),
            "key": Param(),
            "size": Param("int", default=0),
            "etag": Param(),
        },
        s3=[S3Trigger(bucket="landing", prefix="in/")],
    )
    wf.shell("load", "true")
    async with s3(moto.url) as client:
        await client.create_bucket(Bucket="landing")
    await _put(moto.url, "in/0", "in/1")
    service = S3PollingService(store, registry_of(wf), endpoint_url=moto.url, poll_interval=0.1)
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    try:
        await eventually(lambda: _keys_started(store, 2), "the first objects", 15)
        lines = Lines(caplog, "durable.runtime.triggers.s3")

        moto.stop()  # the endpoint goes away
        await eventually(lambda: service.endpoint.down, "the poller saw the endpoint go", 30)
        await asyncio.sleep(1)
        moto.start()
        back = time.monotonic()
        await _put(moto.url, "in/2", "in/3")
        await eventually(lambda: _keys_started(store, 4), "objects after it", BACK_WITHIN)
        assert not service.endpoint.down

        own_postgres.stop()  # then PostgreSQL does
        await eventually(lambda: service.database.down, "the poller saw PostgreSQL go", 15)
        await _put(moto.url, "in/4")  # put while PostgreSQL is away
        await asyncio.sleep(1)
        own_postgres.start()
        back = time.monotonic()
        await _put(moto.url, "in/5")
        await eventually(lambda: _keys_started(store, 6), "objects after it", BACK_WITHIN)
        assert time.monotonic() - back < BACK_WITHIN
        polls = service.polls
        await eventually(lambda: service.polls >= polls + 5, "more polls", 15)  # a chance to double
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    assert await _runs_by_key(store) == {f"in/{i}": 1 for i in range(6)}
    lines.check(outages=2, bound=6)


# -- the asset tracker ------------------------------------------------------------------

ASSETS = """
from durable import Workflow
produce = Workflow("load_sales")
produce.sql("load", "SELECT 1", produces=["warehouse.sales_daily"])
consume = Workflow("refresh_dashboard", on_assets=["warehouse.sales_daily"])
consume.shell("refresh", "true")
"""


async def _consumers(store: PostgresEventStore) -> list[str]:
    return [r.run_id for r in await store.list_runs(RunFilter(workflow="refresh_dashboard"))]


async def _produce(store: PostgresEventStore, registry: Any) -> None:
    """One producer run, to its end, by an executor that lives only as long."""
    producers = registry_of()
    producers.add(registry.get("load_sales"))
    async with running_executor(store, producers):
        run_id, _ = await retrying(lambda: create_run(store, registry.get("load_sales").spec, {}))
        assert (await wait_for_run(store, run_id)).status == "succeeded"


async def test_the_asset_tracker_outlives_a_postgres_restart(
    own_postgres: Postgres,
    store: PostgresEventStore,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    (tmp_path / "flows.py").write_text(ASSETS)
    registry = load_workflows(tmp_path / "flows.py")
    await register_versions(store, registry)
    service = AssetService(store, registry, poll_interval=0.2)
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    try:
        await _produce(store, registry)
        await eventually(lambda: _count(store, 1), "the first update's consumer", 15)
        lines = Lines(caplog, "durable.runtime.triggers.assets")
        own_postgres.stop()
        await eventually(lambda: service.database.down, "the tracker saw the outage", 15)
        await asyncio.sleep(2)
        own_postgres.start()
        back = time.monotonic()
        await _produce(store, registry)
        await eventually(lambda: _count(store, 2), "the next update's consumer", BACK_WITHIN)
        assert time.monotonic() - back < BACK_WITHIN
        last = await store.last_position()
        await eventually(lambda: service.position >= last, "the tracker read it all", 15)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    assert len(await _consumers(store)) == 2  # one per update, none doubled
    lines.check(outages=1, bound=3)


async def _count(store: PostgresEventStore, n: int) -> bool:
    return len(await _consumers(store)) >= n

"""Sensors against the real things: PostgreSQL (pgserver) and an S3 server (moto).

Each kind waits — a positive sign says it poked and found nothing — then fires once its
condition holds; a run of 100 waiting sensors on an executor of 4 slots still runs its
other task; a sensor's timeout survives a SIGKILL of its executor (it ends at the
original deadline, not one counted from the restart); ``soft_fail`` skips it and its
downstream; bad definitions are refused at load time naming file, task and field.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiobotocore.session import get_session

from durable import Param, Workflow
from durable.application.runs import create_run
from durable.core.events import (
    Recorded,
    TaskFailed,
    TaskSkipped,
    TaskStarted,
    TaskSucceeded,
    TaskWaiting,
    Trigger,
    run_stream,
)
from durable.core.spec import DefinitionError
from durable.runtime.executor import Executor
from durable.runtime.tasks.sensors import SensorWaiter
from durable.runtime.triggers.assets import AssetService
from durable.store import EventStore, MemoryEventStore, PostgresEventStore
from durable.workflows import load_workflows
from durable.workflows.loader import WorkflowRegistry
from tests.executing import registry_of, running_executor, wait_for_run
from tests.signs import eventually

pytestmark = pytest.mark.slow

DAY = datetime(2026, 11, 22, tzinfo=UTC)
FAST = {"poke_interval": 0.2, "backoff": 1}


@pytest.fixture
def s3_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per request otherwise
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    # moto keeps its state process-wide, across server instances: start empty
    urllib.request.urlopen(
        urllib.request.Request(f"http://127.0.0.1:{port}/moto-api/reset", method="POST"), timeout=10
    ).close()
    endpoint = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("DURABLE_S3_ENDPOINT", endpoint)
    yield endpoint
    server.stop()


@asynccontextmanager
async def s3(endpoint: str) -> AsyncIterator[Any]:
    async with get_session().create_client(
        "s3", endpoint_url=endpoint, region_name="us-east-1"
    ) as client:
        yield client


@asynccontextmanager
async def executing(
    store: EventStore, registry: WorkflowRegistry, **kw: Any
) -> AsyncIterator[Executor]:
    """An executor with the asset tracker `durable up` runs beside it."""
    stop = asyncio.Event()
    tracker = asyncio.create_task(AssetService(store, registry, poll_interval=0.1).run(stop))
    try:
        async with running_executor(store, registry, **kw) as executor:
            yield executor
    finally:
        stop.set()
        await asyncio.wait_for(tracker, 30)


async def events(store: EventStore, run_id: str) -> list[Recorded]:
    return await store.read_stream(run_stream(run_id))


async def waiting_tasks(store: EventStore, run_id: str) -> set[str]:
    return {r.event.task for r in await events(store, run_id) if isinstance(r.event, TaskWaiting)}


async def log_text(store: EventStore, run_id: str, task: str) -> str:
    return "\n".join(line.message for line in await store.logs.read(run_id, task))


async def poked_and_waiting(store: EventStore, run_id: str, says: dict[str, str]) -> None:
    """A positive sign: each task's log says its poke found nothing (``says``)."""

    async def seen() -> bool:
        texts = {t: await log_text(store, run_id, t) for t in says}
        return all(needle in texts[t] for t, needle in says.items())

    await eventually(seen, f"the sensors poked and found nothing: {says}", timeout=30)


def upstream_workflow() -> Workflow:
    up = Workflow("upstream")

    @up.task
    def extract() -> str:
        return "extracted"

    return up


def producer_workflow(assets: list[str]) -> Workflow:
    producer = Workflow("producer")

    @producer.task(produces=assets)
    def publish() -> str:
        return "published"

    return producer


async def scheduled(store: EventStore, wf: Workflow, at: datetime) -> str:
    """A run of ``wf`` for the logical time ``at``, as its schedule would start it."""
    run_id, _ = await create_run(
        store,
        wf.spec(),
        {},
        idempotency_key=f"schedule:{wf.name}:{at.isoformat()}",
        trigger=Trigger(kind="schedule", logical_time=at, data_interval_start=at),
    )
    return run_id


# -- each kind waits, then fires ---------------------------------------------------------


async def test_each_kind_waits_then_fires_with_what_it_found(
    pg_store: PostgresEventStore, s3_endpoint: str
) -> None:
    async with pg_store.sql_pool().acquire() as conn:
        await conn.execute("CREATE TABLE loads (day date PRIMARY KEY, rows int NOT NULL)")
    wf = Workflow("consumer")
    s3_wait = wf.sensor(
        "csv",
        timeout=120,
        s3={"bucket": "landing", "key": "sales/${logical_date}.csv", "min_size": 4},
        **FAST,
    )
    sql_wait = wf.sensor(
        "loaded",
        timeout=120,
        sql={"query": "SELECT rows FROM loads WHERE day = $1", "args": ["${logical_date}"]},
        **FAST,
    )
    run_wait = wf.sensor("upstream_done", timeout=120, run={"workflow": "upstream"}, **FAST)
    asset_wait = wf.sensor("fresh", timeout=120, asset={"asset": "warehouse.sales"}, **FAST)

    @wf.task(after=[s3_wait, sql_wait, run_wait, asset_wait])
    def report(csv: Any, loaded: Any, upstream_done: Any, fresh: Any) -> dict[str, Any]:
        return {"csv": csv, "loaded": loaded, "upstream_done": upstream_done, "fresh": fresh}

    up, producer = upstream_workflow(), producer_workflow(["warehouse.sales"])
    registry = registry_of(wf, up, producer)
    async with s3(s3_endpoint) as client, executing(pg_store, registry):
        await client.create_bucket(Bucket="landing")
        await client.put_object(Bucket="landing", Key="sales/2026-11-22.csv", Body=b"a")
        run_id = await scheduled(pg_store, wf, DAY)
        await poked_and_waiting(
            pg_store,
            run_id,
            {
                "csv": "has 1 bytes, waiting for 4",
                "loaded": "state: no rows",
                "upstream_done": "state: no run of upstream at 2026-11-22T00:00:00+00:00 yet",
                "fresh": "state: warehouse.sales was never updated",
            },
        )
        state = await wait_for_run(pg_store, run_id, statuses=("running",))
        assert {n: t.status for n, t in state.tasks.items()} == {
            "csv": "running",
            "loaded": "running",
            "upstream_done": "running",
            "fresh": "running",
            "report": "pending",
        }
        # the job recorded what the templates said, once
        recorded = {
            r.event.task: r.event.job
            for r in await events(pg_store, run_id)
            if isinstance(r.event, TaskWaiting)
        }
        assert recorded["csv"] == {
            "sensor": "s3",
            "bucket": "landing",
            "key": "sales/2026-11-22.csv",
            "min_size": 4,
        }
        assert recorded["loaded"] == {
            "sensor": "sql",
            "connection": "durable",
            "args": ["2026-11-22"],
        }

        # now make each condition true
        await client.put_object(Bucket="landing", Key="sales/2026-11-22.csv", Body=b"a,b\n1,2\n")
        async with pg_store.sql_pool().acquire() as conn:
            await conn.execute("INSERT INTO loads VALUES ('2026-11-22', 0)")
        await poked_and_waiting(pg_store, run_id, {"loaded": "state: first column is 0"})
        async with pg_store.sql_pool().acquire() as conn:
            await conn.execute("UPDATE loads SET rows = 42")
        upstream_run = await scheduled(pg_store, up, DAY)
        producer_run, _ = await create_run(pg_store, producer.spec(), {})
        state = await wait_for_run(pg_store, run_id, timeout=60)

    assert state.status == "succeeded", state
    out = state.tasks["report"].output
    assert out["csv"]["key"] == "sales/2026-11-22.csv" and out["csv"]["size"] == 8
    assert out["loaded"] == {"row": {"rows": 42}}
    assert out["upstream_done"]["run_id"] == upstream_run
    assert out["upstream_done"]["status"] == "succeeded"
    assert out["fresh"]["run_id"] == producer_run and out["fresh"]["task"] == "publish"


# -- a hundred waiting sensors hold no slot ----------------------------------------------


async def test_a_hundred_waiting_sensors_hold_no_slot(
    pg_store: PostgresEventStore, s3_endpoint: str
) -> None:
    async with pg_store.sql_pool().acquire() as conn:
        await conn.execute("CREATE TABLE flags (id int PRIMARY KEY)")
    wf = Workflow("many")
    steady = {"timeout": 300, "poke_interval": 1, "backoff": 1}
    for i in range(25):
        wf.sensor(f"s3_{i}", s3={"bucket": "landing", "key": f"many/{i}.csv"}, **steady)
        wf.sensor(
            f"sql_{i}",
            sql={"query": "SELECT EXISTS (SELECT 1 FROM flags WHERE id = $1)", "args": [i]},
            **steady,
        )
        wf.sensor(f"run_{i}", run={"workflow": "upstream"}, **steady)
        wf.sensor(f"asset_{i}", asset={"asset": f"asset.{i}"}, **steady)

    @wf.task(retries=0)
    async def busy(ctx: Any) -> int:
        """Runs (holding one of the 4 slots) until all 100 sensors wait beside it: were a
        waiting sensor to hold a slot, at most 3 could, and this would time out."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 120
        while len(found := await waiting_tasks(pg_store, ctx.run_id)) < 100:
            if loop.time() > deadline:
                raise AssertionError(f"only {len(found)} sensors waiting")
            await asyncio.sleep(0.1)
        return len(found)

    up, producer = upstream_workflow(), producer_workflow([f"asset.{i}" for i in range(25)])
    registry = registry_of(wf, up, producer)
    async with s3(s3_endpoint) as client, executing(pg_store, registry, max_tasks=4) as executor:
        await client.create_bucket(Bucket="landing")
        run_id = await scheduled(pg_store, wf, DAY)

        async def busy_done() -> bool:
            return any(
                isinstance(r.event, TaskSucceeded) and r.event.task == "busy"
                for r in await events(pg_store, run_id)
            )

        await eventually(busy_done, "busy ran while the sensors waited", timeout=150)
        state = await wait_for_run(pg_store, run_id, statuses=("running",))
        assert state.tasks["busy"].output == 100
        sensors = [n for n in state.tasks if n != "busy"]
        assert all(state.tasks[n].status == "running" for n in sensors)
        assert executor.slots.free == 4  # 100 sensors wait, no slot taken

        for i in range(25):
            await client.put_object(Bucket="landing", Key=f"many/{i}.csv", Body=b"x")
        async with pg_store.sql_pool().acquire() as conn:
            await conn.executemany("INSERT INTO flags VALUES ($1)", [(i,) for i in range(25)])
        await scheduled(pg_store, up, DAY)
        await create_run(pg_store, producer.spec(), {})
        state = await wait_for_run(pg_store, run_id, timeout=120)
    assert state.status == "succeeded", {n: t.status for n, t in state.tasks.items()}
    starts = [r.event for r in await events(pg_store, run_id) if isinstance(r.event, TaskStarted)]
    assert len(starts) == 101  # one attempt each: nothing was submitted twice


# -- the timeout survives a SIGKILL ------------------------------------------------------

PATIENT = """\
workflow: patient
tasks:
  csv:
    sensor: {s3: {bucket: landing, prefix: "never/"}}
    timeout: TIMEOUT
    poke_interval: 0.5
    backoff: 1
  row:
    sensor: {sql: {query: "SELECT false"}}
    timeout: TIMEOUT
    poke_interval: 0.5
    backoff: 1
  upstream:
    sensor: {run: {workflow: nobody}}
    timeout: TIMEOUT
    poke_interval: 0.5
    backoff: 1
  fresh:
    sensor: {asset: {asset: never.updated}}
    timeout: TIMEOUT
    poke_interval: 0.5
    backoff: 1
  after_all:
    shell: "echo never"
    after: [csv, row, upstream, fresh]
"""


def executor_process(database_url: str, workflows: Path, name: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "durable",
            "--database-url",
            database_url,
            "up",
            "--no-http",
            "--workflows",
            str(workflows),
            "--lease",
            "2",
            "--max-tasks",
            "4",
        ],
        env={**os.environ, "HOSTNAME": name},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def test_the_timeout_survives_a_sigkill_of_the_executor(
    pg_store: PostgresEventStore, database_url: str, s3_endpoint: str, tmp_path: Path
) -> None:
    timeout = 12.0
    path = tmp_path / "patient.yaml"
    path.write_text(PATIENT.replace("TIMEOUT", str(timeout)))
    spec = load_workflows(path).get("patient").spec
    async with s3(s3_endpoint) as client:
        await client.create_bucket(Bucket="landing")
    run_id, _ = await create_run(
        pg_store, spec, {}, trigger=Trigger(kind="schedule", logical_time=DAY)
    )
    sensors = {"csv", "row", "upstream", "fresh"}

    first = executor_process(database_url, path, "first")
    try:

        async def all_waiting() -> bool:
            return await waiting_tasks(pg_store, run_id) == sensors

        await eventually(all_waiting, "the four sensors wait", timeout=60)
        started = {
            r.event.task: r.recorded_at
            for r in await events(pg_store, run_id)
            if isinstance(r.event, TaskStarted)
        }
        # SIGKILL halfway: a timer counted afresh by the next executor would end at
        # least timeout/2 later than the original deadline
        await asyncio.sleep(
            max(0.0, (max(started.values()) - datetime.now(UTC)).total_seconds() + timeout / 2)
        )
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        killed_at = datetime.now(UTC)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert killed_at < min(started.values()) + timedelta(seconds=timeout), "killed too late"
    state = await wait_for_run(pg_store, run_id, statuses=("running",))
    assert {state.tasks[n].status for n in sensors} == {"running"}

    second = executor_process(database_url, path, "second")
    try:
        state = await wait_for_run(pg_store, run_id, timeout=90)
    finally:
        stop(second)
    assert state.status == "failed"
    records = await events(pg_store, run_id)
    failed = {
        r.event.task: (r.recorded_at, r.event) for r in records if isinstance(r.event, TaskFailed)
    }
    assert set(failed) == sensors
    for name in sensors:
        at, event = failed[name]
        assert event.attempt == 1 and event.error.type == "TaskTimeout", event
        took = (at - started[name]).total_seconds()
        # the original deadline (started + timeout), not the restart + timeout
        assert timeout <= took < timeout + 4, (name, took)
        assert at > killed_at  # by the second executor: the first was dead
    assert sum(isinstance(r.event, TaskStarted) for r in records) == 4  # no new attempt
    assert state.tasks["after_all"].status == "skipped"


# -- soft_fail ---------------------------------------------------------------------------


async def test_soft_fail_skips_the_sensor_and_its_downstream(pg_store: PostgresEventStore) -> None:
    soft = Workflow("soft")
    wait = soft.sensor("wait", timeout=1.5, soft_fail=True, sql={"query": "SELECT false"}, **FAST)
    soft.shell("load", "echo loaded", after=[wait])
    hard = Workflow("hard")
    wait = hard.sensor("wait", timeout=1.5, sql={"query": "SELECT false"}, **FAST)
    hard.shell("load", "echo loaded", after=[wait])
    async with executing(pg_store, registry_of(soft, hard)):
        soft_run, _ = await create_run(pg_store, soft.spec(), {})
        hard_run, _ = await create_run(pg_store, hard.spec(), {})
        soft_state = await wait_for_run(pg_store, soft_run)
        hard_state = await wait_for_run(pg_store, hard_run)

    assert soft_state.status == "succeeded"
    assert {n: t.status for n, t in soft_state.tasks.items()} == {
        "wait": "skipped",
        "load": "skipped",
    }
    skipped = [
        r.event for r in await events(pg_store, soft_run) if isinstance(r.event, TaskSkipped)
    ]
    assert skipped[0].task == "wait" and skipped[0].reason == (
        "timed out after 1.5 s (from its recorded start) (soft_fail)"
    )
    assert hard_state.status == "failed"
    assert hard_state.tasks["wait"].status == "failed"
    assert hard_state.tasks["wait"].error is not None
    assert hard_state.tasks["wait"].error.type == "TaskTimeout"
    assert hard_state.tasks["load"].status == "skipped"
    reasons = [
        [
            r.event.reason
            for r in await events(pg_store, run_id)
            if isinstance(r.event, TaskSkipped) and r.event.task == "load"
        ]
        for run_id in (soft_run, hard_run)
    ]
    assert reasons == [["upstream wait skipped"], ["upstream wait failed"]]


# -- a broken condition fails at once, not at the timeout -------------------------------


async def test_a_broken_sql_condition_fails_at_once(pg_store: PostgresEventStore) -> None:
    wf = Workflow("broken")
    wf.sensor("typo", timeout=3600, sql={"query": "SELEC 1"}, **FAST)
    wf.sensor("update", timeout=3600, sql={"query": "CREATE TEMP TABLE t (x int)"}, **FAST)
    wf.sensor("orphan", timeout=3600, run={"workflow": "upstream"}, **FAST)
    async with executing(pg_store, registry_of(wf)):
        run_id, _ = await create_run(pg_store, wf.spec(), {})
        state = await wait_for_run(pg_store, run_id)
    errors = {n: t.error for n, t in state.tasks.items()}
    assert errors["typo"] is not None and errors["typo"].type == "SQLError"
    assert "syntax error" in errors["typo"].message
    assert errors["update"] is not None and "returns no rows" in errors["update"].message
    assert errors["orphan"] is not None and "has no logical time" in errors["orphan"].message


# -- the in-memory store answers the same ------------------------------------------------


async def test_run_and_asset_conditions_on_the_memory_store() -> None:
    store = MemoryEventStore()
    wf = Workflow("consumer")
    wf.sensor(
        "upstream_done",
        timeout=120,
        run={"workflow": "upstream", "logical_time": "${params.day}"},
        **FAST,
    )
    wf.sensor(
        "fresh", timeout=120, asset={"asset": "warehouse.sales", "after": "2026-11-01"}, **FAST
    )
    wf.params["day"] = Param("date", required=True)
    up, producer = upstream_workflow(), producer_workflow(["warehouse.sales"])
    async with executing(store, registry_of(wf, up, producer)):
        run_id, _ = await create_run(store, wf.spec(), {"day": "2026-11-22"})
        await poked_and_waiting(
            store,
            run_id,
            {
                "upstream_done": "state: no run of upstream at 2026-11-22 yet",
                "fresh": "state: warehouse.sales was never updated",
            },
        )
        await scheduled(store, up, DAY + timedelta(hours=6))  # any time that day
        await create_run(store, producer.spec(), {})
        state = await wait_for_run(store, run_id)
    assert state.status == "succeeded"
    assert state.tasks["upstream_done"].output["logical_time"] == "2026-11-22T06:00:00+00:00"
    assert state.tasks["fresh"].output["task"] == "publish"


async def test_an_asset_update_within_the_runs_interval_is_not_fresh_enough() -> None:
    """A daily run for day D starts as D ends, as does its producer's run for D: the
    producer's update for D - 1 came during D, after D's logical time but before its
    end, and must not count."""
    store = MemoryEventStore()
    wf = Workflow("consumer")
    wf.sensor("fresh", timeout=120, asset={"asset": "warehouse.sales"}, **FAST)
    producer = producer_workflow(["warehouse.sales"])
    now = datetime.now(UTC)
    start, end = now - timedelta(hours=23), now + timedelta(hours=1)
    async with executing(store, registry_of(wf, producer)):
        produced, _ = await create_run(store, producer.spec(), {})
        assert (await wait_for_run(store, produced)).status == "succeeded"

        async def recorded() -> bool:
            return bool(await store.tracking.assets())

        await eventually(recorded, "the asset tracker recorded the update")
        run_id, _ = await create_run(
            store,
            wf.spec(),
            {},
            trigger=Trigger(
                kind="schedule",
                logical_time=start,
                data_interval_start=start,
                data_interval_end=end,
            ),
        )
        await poked_and_waiting(store, run_id, {"fresh": "state: warehouse.sales last updated at"})
    jobs = [r.event.job for r in await events(store, run_id) if isinstance(r.event, TaskWaiting)]
    assert jobs == [{"sensor": "asset", "asset": "warehouse.sales", "after": end.isoformat()}]


# -- the examples run ------------------------------------------------------------------

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


async def test_the_examples_load_and_report(pg_store: PostgresEventStore, s3_endpoint: str) -> None:
    registry = load_workflows(EXAMPLES)
    # their schedules' logical time two days ago: that interval has ended
    day = datetime.now(UTC).replace(hour=6, minute=0, second=0, microsecond=0) - timedelta(days=2)
    date = day.date().isoformat()
    async with s3(s3_endpoint) as client, executing(pg_store, registry):
        await client.create_bucket(Bucket="landing")
        csv = b"region,amount_eur\neu,120.5\nus,99\n"
        await client.put_object(Bucket="landing", Key=f"sales/{date}.csv", Body=csv)
        await client.put_object(Bucket="landing", Key=f"refunds/{date}/r1.csv", Body=b"x")
        # (their pokes are minutes apart: the conditions hold at the first one here;
        # the other tests show each kind waiting)
        ingest = await scheduled_spec(pg_store, registry.get("csv_ingest").spec, day)
        sales, _ = await create_run(pg_store, registry.get("daily_sales").spec, {"date": date})
        assert (await wait_for_run(pg_store, ingest)).status == "succeeded"
        assert (await wait_for_run(pg_store, sales)).status == "succeeded"

        async def recorded() -> bool:
            return any(a.asset == "warehouse.sales_csv" for a in await pg_store.tracking.assets())

        await eventually(recorded, "the asset tracker recorded warehouse.sales_csv")
        # every condition holds now: the report's sensors fire at their first poke
        report = await scheduled_spec(pg_store, registry.get("sales_report").spec, day)
        state = await wait_for_run(pg_store, report)
    assert state.status == "succeeded", {n: (t.status, t.error) for n, t in state.tasks.items()}
    assert state.tasks["csv_ingested"].output["run_id"] == ingest
    assert state.tasks["csv_fresh"].output["run_id"] == ingest
    assert state.tasks["refunds"].output["key"] == f"refunds/{date}/r1.csv"
    rows = state.tasks["report"].output["rows"]
    assert rows[0]["day"] == date and rows[0]["csv_eur"] == 219.5
    assert rows[0]["daily_eur"] > 0


async def scheduled_spec(store: EventStore, spec: Any, at: datetime) -> str:
    """A run as the schedule starts it: its logical time, its logical date as ``date``."""
    run_id, _ = await create_run(
        store,
        spec,
        {"date": at.date().isoformat()},
        trigger=Trigger(
            kind="schedule",
            logical_time=at,
            data_interval_start=at,
            data_interval_end=at + timedelta(days=1),
        ),
    )
    return run_id


# -- the poke interval -------------------------------------------------------------------


def test_pokes_start_at_once_then_back_off_to_the_cap() -> None:
    waiter = SensorWaiter()
    spec = _sensor(timeout=3600, sql={"query": "SELECT 1"})
    gaps = [waiter.interval(spec, n) for n in range(8)]
    assert gaps[0] == 0  # the first poke at once
    # 60 s doubling, capped at 10 x 60 s; each up to 10% shorter (jitter)
    for gap, nominal in zip(gaps[1:], [60, 120, 240, 480, 600, 600, 600], strict=True):
        assert nominal * 0.9 <= gap <= nominal
    steady = _sensor(timeout=60, sql={"query": "SELECT 1"}, poke_interval=5, backoff=1)
    assert all(4.5 <= waiter.interval(steady, n) <= 5 for n in range(1, 20))
    capped = _sensor(
        timeout=60, sql={"query": "SELECT 1"}, poke_interval=1, backoff=3, max_poke_interval=7
    )
    for n, nominal in ((1, 1), (2, 3), (3, 7), (50, 7)):
        assert nominal * 0.9 <= waiter.interval(capped, n) <= nominal


def _sensor(**options: Any) -> Any:
    wf = Workflow("w")
    wf.sensor("s", **options)
    return wf.spec().task("s")


# -- bad definitions ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("task", "message"),
    [
        (
            "    sensor: {s3: {bucket: landing, key: a.csv}}\n",
            "w.yaml:4: sensor 'wait' has no timeout: it could wait forever",
        ),
        (
            "    sensor: {}\n    timeout: 60\n",
            "w.yaml:4: sensor 'wait' needs exactly one condition (found none)",
        ),
        (
            "    sensor: {sql: {query: SELECT 1}, asset: {asset: a}}\n    timeout: 60\n",
            "w.yaml:4: sensor 'wait' needs exactly one condition (found sql, asset)",
        ),
        (
            "    sensor: {s3: {bucket: landing}}\n    timeout: 60\n",
            "w.yaml:4: sensor 'wait': s3 needs exactly one of 'key' and 'prefix'",
        ),
        (
            "    sensor: {s3: {bucket: landing, key: a.csv, size: 3}}\n    timeout: 60\n",
            "w.yaml:4: sensor 'wait': unknown field 'size' in s3 (s3 takes: bucket, key, "
            "prefix, min_size, endpoint_url)",
        ),
        (
            "    sensor: {s3: {bucket: landing, key: a.csv}}\n    timeout: 60\n    poke: 5\n",
            "w.yaml:4: task 'wait': unknown option 'poke' for a sensor task",
        ),
        (
            "    sensor: {run: {workflow: upstream, status: done}}\n    timeout: 60\n",
            "w.yaml:4: sensor 'wait': run.status 'done' is not a run status (one of pending, "
            "running, paused, succeeded, failed, cancelled)",
        ),
        (
            "    sensor: {s3: {bucket: landing, key: a.csv, min_size: big}}\n    timeout: 60\n",
            "w.yaml:4: sensor 'wait': s3.min_size: expected int, got str",
        ),
        (
            "    sensor: {sql: {query: SELECT 1}}\n    timeout: 60\n    poke_interval: 0\n",
            "w.yaml:4: sensor 'wait': poke_interval must be > 0, not 0",
        ),
    ],
)
def test_bad_sensors_are_refused_at_load_time(tmp_path: Path, task: str, message: str) -> None:
    path = tmp_path / "w.yaml"
    path.write_text("workflow: w\ntasks:\n  wait:\n" + task)
    with pytest.raises(DefinitionError) as info:
        load_workflows(path)
    assert message in str(info.value), str(info.value)
    assert "Traceback" not in str(info.value)


def test_the_python_spelling_is_checked_too() -> None:
    wf = Workflow("w")
    with pytest.raises(DefinitionError, match="sensor 'wait' has no timeout"):
        wf.sensor("wait", timeout=None, s3={"bucket": "b", "key": "k"})  # type: ignore[arg-type]
        wf.spec()


async def test_a_resumed_sensor_keeps_logging(pg_store: PostgresEventStore) -> None:
    wf = Workflow("resumed")
    wf.sensor("wait", timeout=60, sql={"query": "SELECT false"}, **FAST)
    registry = registry_of(wf)
    async with executing(pg_store, registry):
        run_id, _ = await create_run(pg_store, wf.spec(), {})
        await poked_and_waiting(pg_store, run_id, {"wait": "state: first column is False"})
    # the first executor stopped (leaving the sensor waiting); the next one resumes it
    async with executing(pg_store, registry):

        async def resumed() -> bool:
            return "resumed waiting on" in await log_text(pg_store, run_id, "wait")

        await eventually(resumed, "the second executor logged its resumption", timeout=10)

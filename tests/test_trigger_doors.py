"""The trigger doors on the in-memory store (no broker, no database): a Kafka batch is
recorded in one go, and a producer's idempotency key reused for another run is
dead-lettered, never a second run."""

from __future__ import annotations

import msgspec
from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from durable import Param, Workflow
from durable.core.kafka import KafkaTrigger
from durable.runtime.triggers.kafka import KafkaTriggerService
from durable.store import MemoryEventStore
from tests.executing import registry_of


def consumer_record(
    offset: int, value: dict[str, object], key: str | None, topic: str = "orders"
) -> ConsumerRecord[bytes, bytes]:
    """A record as aiokafka hands it over; ``key``: the producer's idempotency key."""
    data = msgspec.json.encode(value)
    return ConsumerRecord(
        topic=topic,
        partition=0,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=None,
        value=data,
        checksum=None,
        serialized_key_size=0,
        serialized_value_size=len(data),
        headers=[("idempotency-key", key.encode())] if key else [],
    )


async def test_a_reused_producer_key_is_dead_lettered_not_run_twice() -> None:
    store = MemoryEventStore()
    wf = Workflow(
        "orders",
        params={"order_id": Param(required=True)},
        kafka=[KafkaTrigger(topic="orders", params={"order_id": "value.id"})],
    )
    wf.shell("book", "echo ${params.order_id}")
    service = KafkaTriggerService(store, registry_of(wf), bootstrap="unused:9092")
    tp = TopicPartition("orders", 0)
    offsets = await service.process(
        {tp: [consumer_record(0, {"id": "a"}, "k1"), consumer_record(1, {"id": "b"}, "k2")]}
    )
    assert offsets == {tp: 2}
    # redelivered (same key, same params), and a key reused for another order
    offsets = await service.process(
        {tp: [consumer_record(2, {"id": "a"}, "k1"), consumer_record(3, {"id": "other"}, "k2")]}
    )
    assert offsets == {tp: 4}
    runs = await store.list_runs()
    assert sorted(r.params["order_id"] for r in runs) == ["a", "b"]
    letters = await store.tracking.dead_letters()
    assert [(d.offset, d.workflow) for d in letters] == [(3, "orders")]
    b = next(r for r in runs if r.params["order_id"] == "b")
    assert f"already started run {b.run_id} with other params" in letters[0].reason
    assert await store.tracking.kafka_offsets("durable", [tp.topic]) == {
        (tp.topic, tp.partition): 4
    }


async def test_kafka_params_are_typed_json_from_the_payload_and_text_from_headers() -> None:
    store = MemoryEventStore()
    wf = Workflow(
        "orders",
        params={"count": Param("int", required=True), "region": Param("str", required=True)},
        kafka=[
            KafkaTrigger(topic="orders", params={"count": "value.n", "region": "header.region"})
        ],
    )
    wf.shell("book", "echo ${params.count}")
    service = KafkaTriggerService(store, registry_of(wf), bootstrap="unused:9092")
    tp = TopicPartition("orders", 0)

    def record(offset: int, n: object, region: str) -> ConsumerRecord[bytes, bytes]:
        rec = consumer_record(offset, {"n": n}, f"k{offset}")
        rec.headers = [*rec.headers, ("region", region.encode())]
        return rec

    await service.process(
        {tp: [record(0, 7, "eu"), record(1, 1.9, "us"), record(2, "7", "apac"), record(3, 5, "7")]}
    )
    runs = sorted((r.params["count"], r.params["region"]) for r in await store.list_runs())
    assert runs == [(5, "7"), (7, "eu")]  # a header "7" is the text "7" for a str param
    letters = sorted((d.offset, d.reason) for d in await store.tracking.dead_letters())
    assert [offset for offset, _ in letters] == [1, 2]
    assert "param 'count': expected int, got 1.9 (a number)" in letters[0][1]
    assert "param 'count': expected int, got \"7\" (a string)" in letters[1][1]

"""Positive signs that the system had its chance to act, for tests that then assert that
nothing (more) happened.

A test that sleeps and then asserts an absence passes vacuously on a slow machine: the
thing it means to rule out may simply not have had its turn yet. These helpers wait,
within a timeout, for a marker that the service really went round past the moment that
matters (claim rounds of an executor, poll cycles of a trigger, a consumer's stored
offsets at the topic's end); only then is "nothing happened" worth asserting.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer, TopicPartition

from durable.runtime.executor import Executor
from durable.store import PostgresEventStore

__all__ = [
    "claim_rounds_pass",
    "consumed_to_high_water",
    "counter_grows",
    "eventually",
    "high_water",
    "let_go",
]


async def eventually(
    check: Callable[[], Awaitable[bool]], what: str, *, timeout: float = 15
) -> None:
    """Wait until ``check()`` is true; fail naming ``what`` after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"no sign within {timeout:g} s that {what}")
        await asyncio.sleep(0.02)


async def counter_grows(
    read: Callable[[], int], by: int, what: str, *, timeout: float = 15
) -> None:
    """Wait until the counter ``read()`` has grown by ``by`` from now."""
    start = read()

    async def grown() -> bool:
        return read() >= start + by

    await eventually(grown, f"{what} (at least {by} more from {start})", timeout=timeout)


async def claim_rounds_pass(executor: Executor, rounds: int = 2, *, timeout: float = 15) -> None:
    """Wait until ``executor`` has gone through ``rounds`` more claim rounds: any run
    claimable from now on has had its chance to be claimed."""
    await counter_grows(
        lambda: executor.claim_rounds, rounds, "the executor kept claiming", timeout=timeout
    )


async def let_go(executor: Executor, run_id: str, *, timeout: float = 15) -> None:
    """Wait until ``executor`` no longer drives ``run_id``: its driver decided all it
    would decide about the run and left."""

    async def gone() -> bool:
        return run_id not in executor.drivers

    await eventually(gone, f"the executor let go of run {run_id}", timeout=timeout)


async def high_water(bootstrap: str, topic: str) -> dict[int, int]:
    """The broker's end offset (high-water mark) of each partition of ``topic``."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await asyncio.wait_for(consumer.start(), 30)
    try:
        await asyncio.wait_for(consumer.topics(), 30)  # fetches the cluster's metadata
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        ends = await asyncio.wait_for(consumer.end_offsets(tps), 30)
    finally:
        await asyncio.wait_for(consumer.stop(), 30)
    return {tp.partition: n for tp, n in ends.items()}


async def consumed_to_high_water(
    store: PostgresEventStore, bootstrap: str, topic: str, *, timeout: float = 30
) -> None:
    """Wait until the offsets stored in PostgreSQL reach ``topic``'s high-water mark on
    every partition: every message there is has been recorded, in the same transaction
    as whatever it did (a run, a dead letter, or nothing)."""
    ends = await high_water(bootstrap, topic)
    assert ends, f"topic {topic} has no partitions"

    async def caught_up() -> bool:
        async with store._pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT partition, max(next_offset) AS n FROM durable.kafka_offsets "
                "WHERE topic = $1 GROUP BY partition",
                topic,
            )
        stored = {r["partition"]: r["n"] for r in rows}
        return all(stored.get(p, 0) >= n for p, n in ends.items())

    await eventually(
        caught_up, f"the consumer's stored offsets reached {topic}'s end {ends}", timeout=timeout
    )

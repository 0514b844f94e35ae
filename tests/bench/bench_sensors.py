"""Benchmark of sensors: many waiting at once on an executor of 4 task slots.

    python -m tests.bench.bench_sensors            # 250 runs x 4 sensors (1,000 sensors)
    python -m tests.bench.bench_sensors --quick    # 25 runs x 4 sensors

Real components: PostgreSQL (pgserver, synchronous_commit on) and an S3 server (moto, in
a process of its own, so its CPU is not counted as the executor's). Each run has one
sensor of each kind (s3 key, sql query, another workflow's run, an asset), poking every
10 s (``--pace``; backoff 1; ``--quick``: every second). Reported: how fast the sensors
get to waiting (each takes a slot to render and record its ``task_waiting``); while all
wait, the slots free (all 4), the threads, the pokes per second against those asked, the
executor's CPU per poke, each kind's poke time; then, once every condition holds, how
long until every run has succeeded.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiobotocore.session import get_session
from rich.console import Console

from durable import Workflow
from durable.application.runs import create_run
from durable.core.events import Trigger
from durable.runtime.executor import Executor
from durable.runtime.tasks import waiting
from durable.runtime.triggers.assets import AssetService
from durable.store import PostgresEventStore, connect
from tests.bench.bench_core import start_server
from tests.bench.bench_executor import make_databases
from tests.executing import registry_of
from tests.processes import free_port

err = Console(stderr=True)
DAY = datetime(2026, 11, 22, tzinfo=UTC)


def workflows(pace: float) -> list[Workflow]:
    steady = {"timeout": 3600, "poke_interval": pace, "backoff": 1}
    many = Workflow("many")
    many.sensor("s3", s3={"bucket": "landing", "key": "many/${run_id}.csv"}, **steady)
    many.sensor(
        "sql",
        sql={
            "query": "SELECT EXISTS (SELECT 1 FROM flags WHERE run_id = $1)",
            "args": ["${run_id}"],
        },
        **steady,
    )
    many.sensor("run", run={"workflow": "upstream"}, **steady)
    many.sensor("asset", asset={"asset": "bench.asset"}, **steady)
    upstream = Workflow("upstream")
    upstream.task(name="done")(_nothing)
    producer = Workflow("producer")
    producer.task(name="publish", produces=["bench.asset"])(_nothing)
    return [many, upstream, producer]


def _nothing() -> None:
    return None


class Counting:
    """The sensor waiter, counting pokes and their wall time by kind."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.pokes: dict[str, list[float]] = defaultdict(list)
        self.failed = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def poll(self, spec: Any, job: dict[str, Any], ctx: Any, resources: Any) -> Any:
        began = time.perf_counter()
        try:
            return await self.inner.poll(spec, job, ctx, resources)
        except Exception:
            self.failed += 1
            raise
        finally:
            self.pokes[job["sensor"]].append(time.perf_counter() - began)


async def count(store: PostgresEventStore, sql: str) -> int:
    async with store.sql_pool().acquire() as conn:
        return int(await conn.fetchval(sql))


async def until(store: PostgresEventStore, sql: str, target: int) -> float:
    began = time.perf_counter()
    while True:
        if await count(store, sql) >= target:
            return time.perf_counter() - began
        await asyncio.sleep(0.05)


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def bench(url: str, endpoint: str, runs: int, window: float, pace: float) -> dict[str, Any]:
    waiting._load()
    counting = Counting(waiting._WAITERS["sensor"])
    waiting.register("sensor", counting)
    store = await connect(url)
    async with store.sql_pool().acquire() as conn:
        await conn.execute("CREATE TABLE flags (run_id text PRIMARY KEY)")
    many, upstream, producer = workflows(pace)
    registry = registry_of(many, upstream, producer)
    stop = asyncio.Event()
    executor = Executor(store, registry, max_tasks=4, poll_interval=0.2)
    tasks = [
        asyncio.create_task(executor.run(stop)),
        asyncio.create_task(AssetService(store, registry, poll_interval=0.2).run(stop)),
    ]
    out: dict[str, Any] = {"sensors": runs * 4}
    try:
        async with get_session().create_client(
            "s3", endpoint_url=endpoint, region_name="us-east-1"
        ) as s3:
            await s3.create_bucket(Bucket="landing")
            threads = threading.active_count()
            trigger = Trigger(kind="schedule", logical_time=DAY)
            began = time.perf_counter()
            ids = [
                (await create_run(store, many.spec(), {}, trigger=trigger))[0] for _ in range(runs)
            ]
            waited = "SELECT count(*) FROM durable.events WHERE type = 'task_waiting'"
            await until(store, waited, runs * 4)
            out["to_waiting_s"] = time.perf_counter() - began
            await asyncio.sleep(pace + 1)  # past the first pokes' burst
            for kind in counting.pokes:
                counting.pokes[kind].clear()
            cpu0, wall0 = cpu(), time.perf_counter()
            await asyncio.sleep(window)
            cpu1, wall1 = cpu(), time.perf_counter()
            pokes = {k: list(v) for k, v in counting.pokes.items()}
            total = sum(len(v) for v in pokes.values())
            out["free_slots"] = executor.slots.free
            out["extra_threads"] = threading.active_count() - threads
            out["pokes_per_s"] = total / (wall1 - wall0)
            out["cpu_share"] = (cpu1 - cpu0) / (wall1 - wall0)
            out["cpu_ms_per_poke"] = 1000 * (cpu1 - cpu0) / max(total, 1)
            out["poke_ms_p50"] = {k: 1000 * statistics.median(v) for k, v in pokes.items() if v}
            out["failed_pokes"] = counting.failed

            began = time.perf_counter()
            for run_id in ids:
                await s3.put_object(Bucket="landing", Key=f"many/{run_id}.csv", Body=b"x")
            async with store.sql_pool().acquire() as conn:
                await conn.executemany("INSERT INTO flags VALUES ($1)", [(r,) for r in ids])
            await create_run(store, upstream.spec(), {}, trigger=trigger)
            await create_run(store, producer.spec(), {})
            done = (
                "SELECT count(*) FROM durable.runs WHERE workflow = 'many' AND status = 'succeeded'"
            )
            await until(store, done, runs)
            out["to_done_s"] = time.perf_counter() - began
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        await store.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smoke size")
    parser.add_argument("--runs", type=int, default=250, help="runs of 4 sensors each")
    parser.add_argument("--window", type=float, default=30.0, help="seconds measured waiting")
    parser.add_argument("--pace", type=float, default=10.0, help="seconds between pokes")
    args = parser.parse_args()
    runs = 25 if args.quick else args.runs
    window = 5.0 if args.quick else args.window
    pace = 1.0 if args.quick else args.pace
    port = free_port()
    moto = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    endpoint = f"http://127.0.0.1:{port}"
    os.environ["DURABLE_S3_ENDPOINT"] = endpoint
    with tempfile.TemporaryDirectory(prefix="durable-bench-") as tmp:
        server = start_server(Path(tmp) / "data")
        try:
            asyncio.run(make_databases(server.get_uri(), ["sensors_bench"]))
            time.sleep(1)  # moto_server's start
            out = asyncio.run(bench(server.get_uri("sensors_bench"), endpoint, runs, window, pace))
        finally:
            server.cleanup()
            moto.terminate()
            moto.wait()
    console = Console(width=160)
    console.print(
        f"Sensors benchmark: {out['sensors']} sensors ({runs} runs x s3, sql, run, asset), "
        "executor with 4 task slots, PostgreSQL synchronous_commit=on, moto S3 in its own process"
    )
    console.print(
        f"  all waiting (task_waiting recorded) {out['to_waiting_s']:.1f} s after the runs "
        f"were created ({out['sensors'] / out['to_waiting_s']:.0f} sensors/s)"
    )
    console.print(
        f"  while waiting: {out['free_slots']}/4 slots free, {out['extra_threads']} extra "
        f"threads; {out['pokes_per_s']:.0f} pokes/s (one per {pace:g} s each: "
        f"{out['sensors'] / pace:.0f}/s asked); executor CPU "
        f"{100 * out['cpu_share']:.0f}% of a core, {out['cpu_ms_per_poke']:.2f} ms per poke"
    )
    console.print(
        "  poke wall time p50 (its turn included): "
        + ", ".join(f"{k} {v:.1f} ms" for k, v in sorted(out["poke_ms_p50"].items()))
        + f"; failed pokes (all along): {out['failed_pokes']}"
    )
    console.print(f"  every condition made true -> all runs succeeded in {out['to_done_s']:.1f} s")


if __name__ == "__main__":
    main()

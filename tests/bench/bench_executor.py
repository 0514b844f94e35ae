"""Benchmark of the executor, side by side with DBOS Transact on the same PostgreSQL.

    pip install -e '.[bench]'                       # dbos, the peer (bench-only extra)
    python -m tests.bench.bench_executor            # N = 1000 runs (~1-2 min)
    python -m tests.bench.bench_executor --quick    # smoke size

Both run N concurrent runs of a 10-step no-op chain, on one embedded PostgreSQL
(pgserver, fsync and synchronous_commit on), each in a database of its own, in the same
process run. Reported: runs per second for each and their ratio; for durable also the
p50/p99 latency from `create_run` returning to the first task's body starting, under a
steady stream of runs.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg
from rich.console import Console

from durable import Workflow
from durable.application.runs import create_run
from durable.runtime.executor import Executor
from durable.store import connect
from durable.workflows import WorkflowRegistry
from durable.workflows.loader import LoadedWorkflow
from tests.bench.bench_core import start_server

err = Console(stderr=True)
STEPS = 10


def chain_workflow(started: dict[str, float]) -> Workflow:
    wf = Workflow("chain10")
    prev = None
    for i in range(STEPS):

        async def step(ctx: Any, _i: int = i) -> int:
            if _i == 0:
                started.setdefault(ctx.run_id, time.perf_counter())
            return _i

        step.__qualname__ = step.__name__ = f"step{i}"
        prev = wf.task(step, name=f"step{i}", after=[prev] if prev else None)
    return wf


async def bench_durable(url: str, runs: int) -> dict[str, float]:
    started: dict[str, float] = {}
    wf = chain_workflow(started)
    registry = WorkflowRegistry()
    registry.add(LoadedWorkflow(wf.spec(), dict(wf.callables)))
    store = await connect(url, max_size=20)
    executor = Executor(store, registry, max_tasks=2000, poll_interval=0.2)
    stop = asyncio.Event()
    running = asyncio.create_task(executor.run(stop))
    spec = wf.spec()
    try:
        # warm up: one run end to end
        await _finish(store, [(await create_run(store, spec, {}))[0]])
        t0 = time.perf_counter()
        ids = await asyncio.gather(*(create_run(store, spec, {}) for _ in range(runs)))
        await _finish(store, [i for i, _ in ids])
        throughput = runs / (time.perf_counter() - t0)

        # latency: a steady stream (one run every 10 ms), create_run -> first task body
        latencies: list[float] = []
        pending = []
        for _ in range(200 if runs >= 500 else 50):
            t = time.perf_counter()
            run_id, _ = await create_run(store, spec, {})
            pending.append((run_id, time.perf_counter(), t))
            await asyncio.sleep(0.01)
        await _finish(store, [r for r, _, _ in pending])
        for run_id, returned, _ in pending:
            latencies.append(started[run_id] - returned)
        q = statistics.quantiles(latencies, n=100)
    finally:
        stop.set()
        await running
        await store.close()
    return {"runs_per_s": throughput, "p50_ms": q[49] * 1e3, "p99_ms": q[98] * 1e3}


async def _finish(store: Any, run_ids: list[str]) -> None:
    while True:
        async with store._pool.acquire() as conn:
            done = await conn.fetchval(
                "SELECT count(*) FROM durable.runs WHERE run_id = ANY($1::text[]) "
                "AND status IN ('succeeded', 'failed', 'cancelled')",
                run_ids,
            )
            failed = await conn.fetchval(
                "SELECT count(*) FROM durable.runs WHERE run_id = ANY($1::text[]) "
                "AND status <> 'succeeded' AND status IN ('failed', 'cancelled')",
                run_ids,
            )
        if failed:
            raise RuntimeError(f"{failed} benchmark runs failed")
        if done == len(run_ids):
            return
        await asyncio.sleep(0.05)


def bench_dbos(url: str, runs: int) -> dict[str, float] | None:
    try:
        from dbos import DBOS
    except ImportError:
        err.print("dbos is not installed (pip install -e '.[bench]'): peer skipped")
        return None

    DBOS(
        config={
            "name": "durable-bench",
            "system_database_url": url,
            "sys_db_pool_size": 40,
            "log_level": "WARNING",
        }
    )

    @DBOS.step()
    async def noop(i: int) -> int:
        return i

    @DBOS.workflow()
    async def chain10() -> int:
        total = 0
        for i in range(STEPS):
            total += await noop(i)
        return total

    DBOS.launch()

    async def go() -> float:
        handle = await DBOS.start_workflow_async(chain10)
        await handle.get_result()
        t0 = time.perf_counter()
        handles = await asyncio.gather(*(DBOS.start_workflow_async(chain10) for _ in range(runs)))
        await asyncio.gather(*(h.get_result() for h in handles))
        return runs / (time.perf_counter() - t0)

    try:
        return {"runs_per_s": asyncio.run(go())}
    finally:
        DBOS.destroy()


async def make_databases(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("CREATE DATABASE durable_bench")
        await conn.execute("CREATE DATABASE dbos_bench")
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smoke size")
    parser.add_argument("--runs", type=int, default=1000)
    args = parser.parse_args()
    runs = 100 if args.quick else args.runs
    with tempfile.TemporaryDirectory(prefix="durable-bench-") as tmp:
        server = start_server(Path(tmp) / "data")
        try:
            asyncio.run(make_databases(server.get_uri()))
            err.print(f"durable: {runs} runs of a {STEPS}-task chain…")
            ours = asyncio.run(bench_durable(server.get_uri("durable_bench"), runs))
            err.print(f"DBOS: {runs} workflows of {STEPS} steps…")
            peer = bench_dbos(server.get_uri("dbos_bench"), runs)
        finally:
            server.cleanup()
    out = Console(width=160)
    out.print(
        f"executor benchmark: {runs} concurrent runs of a {STEPS}-task no-op chain, "
        "same PostgreSQL (synchronous_commit=on)"
    )
    out.print(
        f"  durable        {ours['runs_per_s']:>9,.0f} runs/s   "
        f"create_run -> first task: p50 {ours['p50_ms']:.1f} ms, p99 {ours['p99_ms']:.1f} ms"
    )
    if peer is not None:
        out.print(f"  DBOS Transact  {peer['runs_per_s']:>9,.0f} runs/s")
        out.print(
            f"  ratio          {ours['runs_per_s'] / peer['runs_per_s']:>9.1f}x DBOS "
            "(target >= 15x; >= 500 runs/s)"
        )


if __name__ == "__main__":
    sys.exit(main())

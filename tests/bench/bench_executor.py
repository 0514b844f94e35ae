"""Benchmark of the executor, side by side with DBOS Transact on the same PostgreSQL.

    pip install -e '.[bench]'                       # dbos, the peer (bench-only extra)
    python -m tests.bench.bench_executor            # N = 1000 runs (~1-2 min)
    python -m tests.bench.bench_executor --quick    # smoke size
    python -m tests.bench.bench_executor --metrics both   # the cost of metrics: off vs on

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
from durable.telemetry import Telemetry
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


async def bench_durable(url: str, runs: int, *, metrics: bool = True) -> dict[str, float]:
    """``metrics``: the executor and the store count into OpenTelemetry instruments, as in
    `durable up` (a Prometheus reader; nothing exported unless scraped)."""
    started: dict[str, float] = {}
    wf = chain_workflow(started)
    registry = WorkflowRegistry()
    registry.add(LoadedWorkflow(wf.spec(), dict(wf.callables)))
    store = await connect(url, max_size=20)
    telemetry = Telemetry({}) if metrics else None
    if telemetry is not None:
        telemetry.observe(store)
    executor = Executor(store, registry, max_tasks=2000, poll_interval=0.2, telemetry=telemetry)
    stop = asyncio.Event()
    running = asyncio.create_task(executor.run(stop))
    spec = wf.spec()
    try:
        # warm up: one run end to end
        await _finish(store, [(await create_run(store, spec, {}))[0]])
        t0, cpu0 = time.perf_counter(), time.process_time()
        ids = await asyncio.gather(*(create_run(store, spec, {}) for _ in range(runs)))
        await _finish(store, [i for i, _ in ids])
        throughput = runs / (time.perf_counter() - t0)
        # this process's CPU per run (PostgreSQL's excluded): steadier than the wall clock
        # on a machine others use
        cpu_ms = (time.process_time() - cpu0) / runs * 1e3

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
        if telemetry is not None:
            await asyncio.to_thread(telemetry.shutdown)
    return {
        "runs_per_s": throughput,
        "p50_ms": q[49] * 1e3,
        "p99_ms": q[98] * 1e3,
        "cpu_ms": cpu_ms,
    }


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


async def make_databases(url: str, names: list[str]) -> None:
    conn = await asyncpg.connect(url)
    try:
        for name in names:
            await conn.execute(f"CREATE DATABASE {name}")
    finally:
        await conn.close()


def metrics_cost(url: Any, runs: int, rounds: int) -> None:
    """Metrics off and on, alternately, ``rounds`` times each, in the same process and on
    the same PostgreSQL: the median throughput and CPU per run of each, and their ratios."""
    asyncio.run(
        make_databases(url(), [f"durable_{m}_{i}" for i in range(rounds) for m in ("off", "on")])
    )
    results: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
    for i in range(rounds):
        for mode in ("off", "on") if i % 2 == 0 else ("on", "off"):  # neither always first
            err.print(f"durable, metrics {mode} ({i + 1}/{rounds}): {runs} runs…")
            got = asyncio.run(bench_durable(url(f"durable_{mode}_{i}"), runs, metrics=mode == "on"))
            results[mode].append(got)
    out = Console(width=160)
    out.print(
        f"cost of metrics: {runs} concurrent runs of a {STEPS}-task chain, {rounds} rounds each"
    )
    medians: dict[str, dict[str, float]] = {}
    for mode, got in results.items():
        medians[mode] = {k: statistics.median(r[k] for r in got) for k in got[0]}
        each = ", ".join(f"{r['runs_per_s']:,.0f}" for r in got)
        m = medians[mode]
        out.print(
            f"  metrics {mode:<3}  median {m['runs_per_s']:>7,.0f} runs/s ({each}); "
            f"CPU {m['cpu_ms']:.2f} ms/run; p50 {m['p50_ms']:.1f} ms"
        )
    on, off = medians["on"], medians["off"]
    out.print(
        f"  on / off     throughput {on['runs_per_s'] / off['runs_per_s']:.3f}, "
        f"CPU per run {on['cpu_ms'] / off['cpu_ms']:.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smoke size")
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument(
        "--metrics",
        choices=("on", "off", "both"),
        default="on",
        help="OpenTelemetry metrics in the executor (on, as in `durable up`); both: off "
        "and on alternately, the peer skipped",
    )
    parser.add_argument("--rounds", type=int, default=3, help="with --metrics both")
    args = parser.parse_args()
    runs = 100 if args.quick else args.runs
    with tempfile.TemporaryDirectory(prefix="durable-bench-") as tmp:
        server = start_server(Path(tmp) / "data")
        if args.metrics == "both":
            try:
                metrics_cost(server.get_uri, runs, args.rounds)
            finally:
                server.cleanup()
            return
        try:
            asyncio.run(make_databases(server.get_uri(), ["durable_bench", "dbos_bench"]))
            err.print(f"durable: {runs} runs of a {STEPS}-task chain…")
            ours = asyncio.run(
                bench_durable(server.get_uri("durable_bench"), runs, metrics=args.metrics == "on")
            )
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

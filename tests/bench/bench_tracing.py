"""The cost of tracing on the executor benchmark: the same workload with tracing off and
on, in the same process run, each on a database of its own.

    python -m tests.bench.bench_tracing --quick    # 100 runs a round
    python -m tests.bench.bench_tracing            # 1,000 runs a round

The workload is tests/bench/bench_executor.py's: N concurrent runs of a 10-task no-op
chain, then a steady stream (one run every 10 ms) for the create_run -> first task
latency (once the burst's spans are out: steady state). "on" runs the trace exporter of `durable up` (durable.runtime.tracing) beside the
executor, exporting every span over OTLP/HTTP to a receiver in another process on
loopback that accepts and drops them (python -m tests.otlp); it is measured at the
standard export delay (OTEL_BSP_SCHEDULE_DELAY 5,000 ms) and at 200 ms, where exports
fall inside the measured window. Rounds alternate off and on; the best of each is
reported, with this process's CPU per run counted until every span was accepted.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console

from durable.application.runs import create_run
from durable.runtime.executor import Executor
from durable.runtime.tracing import TraceService, traces_config
from durable.store import connect
from durable.workflows import WorkflowRegistry
from durable.workflows.loader import LoadedWorkflow
from tests.bench.bench_core import start_server
from tests.bench.bench_executor import STEPS, _finish, chain_workflow, make_databases
from tests.processes import free_port

err = Console(stderr=True)


async def bench(url: str, runs: int, endpoint: str | None, delay_ms: int) -> dict[str, float]:
    started: dict[str, float] = {}
    wf = chain_workflow(started)
    registry = WorkflowRegistry()
    registry.add(LoadedWorkflow(wf.spec(), dict(wf.callables)))
    store = await connect(url, max_size=20)
    executor = Executor(store, registry, max_tasks=2000, poll_interval=0.2)
    stop = asyncio.Event()
    tracer = None
    tasks = []
    if endpoint is not None:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_BSP_SCHEDULE_DELAY": str(delay_ms)}
        config = traces_config(env)
        assert config is not None
        tracer = TraceService(store, config)
        tasks.append(asyncio.create_task(tracer.run(stop)))
        await tracer.leading.wait()  # its first position is taken: spans count from here
    tasks.append(asyncio.create_task(executor.run(stop)))
    spec = wf.spec()

    async def exported(runs: int) -> float:
        """Seconds until the spans of ``runs`` runs (11 each) were accepted."""
        t, deadline = time.perf_counter(), time.perf_counter() + 120
        while tracer is not None and tracer.exported < runs * (STEPS + 1):
            if time.perf_counter() > deadline:
                raise RuntimeError(f"{tracer.exported} of {runs * (STEPS + 1)} spans exported")
            await asyncio.sleep(0.02)
        return time.perf_counter() - t

    try:
        await _finish(store, [(await create_run(store, spec, {}))[0]])  # warm up
        t0, cpu0 = time.perf_counter(), time.process_time()
        ids = await asyncio.gather(*(create_run(store, spec, {}) for _ in range(runs)))
        await _finish(store, [i for i, _ in ids])
        throughput = runs / (time.perf_counter() - t0)
        lag = await exported(1 + runs)  # the burst's spans out before the steady stream

        pending = []
        for _ in range(200 if runs >= 500 else 50):
            run_id, _ = await create_run(store, spec, {})
            pending.append((run_id, time.perf_counter()))
            await asyncio.sleep(0.01)
        await _finish(store, [r for r, _ in pending])
        q = statistics.quantiles([started[r] - returned for r, returned in pending], n=100)
        await exported(1 + runs + len(pending))  # every span out before the CPU clock stops
        cpu_ms = (time.process_time() - cpu0) / (runs + len(pending)) * 1e3
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        await store.close()
    return {
        "runs_per_s": throughput,
        "p50_ms": q[49] * 1e3,
        "p99_ms": q[98] * 1e3,
        "cpu_ms": cpu_ms,
        "lag_s": lag,
        "spans": float(tracer.exported if tracer else 0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smoke size")
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    runs = 100 if args.quick else args.runs
    modes: list[tuple[str, int]] = [("off", 0), ("on, 5 s delay", 5000), ("on, 200 ms delay", 200)]
    results: dict[str, list[dict[str, float]]] = {m: [] for m, _ in modes}
    port = free_port()
    receiver = subprocess.Popen(
        [sys.executable, "-m", "tests.otlp", "--port", str(port)], stdout=subprocess.PIPE
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        assert receiver.stdout is not None
        receiver.stdout.readline()  # it prints its URL once it listens
        with tempfile.TemporaryDirectory(prefix="durable-bench-") as tmp:
            server = start_server(Path(tmp) / "data")
            try:
                names = [f"trace_bench_{r}_{i}" for r in range(args.rounds) for i in range(3)]
                asyncio.run(make_databases(server.get_uri(), names))
                for r in range(args.rounds):
                    for i, (mode, delay) in enumerate(modes):
                        err.print(f"round {r + 1}: tracing {mode}, {runs} runs…")
                        url = server.get_uri(f"trace_bench_{r}_{i}")
                        results[mode].append(
                            asyncio.run(bench(url, runs, endpoint if delay else None, delay))
                        )
            finally:
                server.cleanup()
    finally:
        receiver.terminate()
        receiver.wait(10)
    out = Console(width=160)
    out.print(
        f"tracing cost: {runs} concurrent runs of a {STEPS}-task no-op chain, best of "
        f"{args.rounds} rounds, same PostgreSQL (synchronous_commit=on), spans to a "
        "loopback OTLP/HTTP receiver"
    )
    base = max(results["off"], key=lambda x: x["runs_per_s"])
    for mode, _ in modes:
        best = max(results[mode], key=lambda x: x["runs_per_s"])
        cpu = min(x["cpu_ms"] for x in results[mode])
        cost = (1 - best["runs_per_s"] / base["runs_per_s"]) * 100
        out.print(
            f"  tracing {mode:<17} {best['runs_per_s']:>7,.0f} runs/s ({cost:+5.1f}% cost)  "
            f"first task p50 {best['p50_ms']:.1f} ms, p99 {best['p99_ms']:.1f} ms  "
            f"CPU {cpu:.2f} ms/run  spans {best['spans']:,.0f}, the burst's out "
            f"{best['lag_s']:.1f} s after it"
        )


if __name__ == "__main__":
    sys.exit(main())

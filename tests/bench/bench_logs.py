"""Benchmark: a very chatty task next to the executor benchmark.

    python -m tests.bench.bench_logs            # 1,000 runs, tasks printing 100,000 lines
    python -m tests.bench.bench_logs --quick    # smoke size

The executor benchmark's workload (N concurrent runs of a 10-task no-op chain, one
executor, embedded PostgreSQL with synchronous_commit on) is timed alone and with two
chatty tasks started just before it in the same executor: a shell task printing 100,000
lines as fast as it can (`seq`) and a Python task logging 100,000 lines in a loop. Task
logs are written while the attempt runs, in batches; the target is that the chatty tasks
cost the benchmark at most 10%. Alone and chatty alternate (A B A B) and the medians are
compared: the machine is shared and noisy. Also reported: how many of the chatty lines
were stored, and how long after the tasks ended the last line was.
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

from durable import Param, TaskContext, Workflow
from durable.application.runs import create_run
from durable.runtime.executor import Executor
from durable.store import connect
from durable.workflows import WorkflowRegistry
from durable.workflows.loader import LoadedWorkflow
from tests.bench.bench_core import start_server
from tests.bench.bench_executor import _finish, chain_workflow, make_databases

err = Console(stderr=True)


def chatty_workflow(lines: int, kind: str) -> Workflow:
    wf = Workflow("chatty", params={"n": Param("int", required=True)})
    if kind in ("shell", "both"):
        wf.shell("printer", f"seq 1 {lines}", retries=0)
    if kind in ("python", "both"):

        @wf.task(retries=0)
        def logger(ctx: TaskContext, n: int) -> int:
            for i in range(n):
                ctx.log.info("line %d of a chatty python task", i)
            return n

    return wf


async def one_round(store: Any, chain: Any, chatty: Any, runs: int, lines: int | None) -> float:
    chatty_id = None
    if lines is not None:
        chatty_id, _ = await create_run(store, chatty, {"n": lines})
        await asyncio.sleep(0.2)  # both chatty tasks have started and print
    t0 = time.perf_counter()
    ids = await asyncio.gather(*(create_run(store, chain, {}) for _ in range(runs)))
    await _finish(store, [i for i, _ in ids])
    took = time.perf_counter() - t0
    if chatty_id is not None:
        await _finish(store, [chatty_id])
    return runs / took


async def bench(url: str, runs: int, lines: int, kind: str) -> dict[str, Any]:
    started: dict[str, float] = {}
    chain_wf = chain_workflow(started)
    chatty_wf = chatty_workflow(lines, kind)
    registry = WorkflowRegistry()
    for wf in (chain_wf, chatty_wf):
        registry.add(LoadedWorkflow(wf.spec(), dict(wf.callables)))
    store = await connect(url, max_size=20)
    executor = Executor(store, registry, max_tasks=2000, poll_interval=0.2)
    stop = asyncio.Event()
    running = asyncio.create_task(executor.run(stop))
    chain, chatty = chain_wf.spec(), chatty_wf.spec()
    alone: list[float] = []
    noisy: list[float] = []
    try:
        await one_round(store, chain, chatty, 10, None)  # warm up
        for i in range(4):
            with_logs = i % 2 == 1
            err.print(f"round {i + 1}/4: {runs} runs{' + chatty tasks' if with_logs else ''}…")
            rate = await one_round(store, chain, chatty, runs, lines if with_logs else None)
            (noisy if with_logs else alone).append(rate)
    finally:
        stop.set()
        await running
        await store.close()
    conn = await asyncpg.connect(url)
    try:
        stored = await conn.fetchval("SELECT count(*) FROM durable.task_logs")
    finally:
        await conn.close()
    return {"alone": alone, "noisy": noisy, "stored": stored}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smoke size")
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument(
        "--kind",
        choices=["shell", "python", "both"],
        default="both",
        help="the chatty tasks: a shell task (seq), a Python task in a thread, or both",
    )
    args = parser.parse_args()
    runs, lines = (100, 10_000) if args.quick else (args.runs, args.lines)
    with tempfile.TemporaryDirectory(prefix="durable-bench-") as tmp:
        server = start_server(Path(tmp) / "data")
        try:
            asyncio.run(make_databases(server.get_uri(), ["logs_bench"]))
            result = asyncio.run(bench(server.get_uri("logs_bench"), runs, lines, args.kind))
        finally:
            server.cleanup()
    alone = statistics.median(result["alone"])
    noisy = statistics.median(result["noisy"])
    out = Console(width=160)
    out.print(
        f"task-log volume benchmark: {runs} runs of a 10-task chain, alone and next to "
        f"chatty tasks ({args.kind}) printing {lines:,} lines each"
    )
    out.print(f"  alone          {alone:>9,.0f} runs/s   (rounds: {result['alone']})")
    out.print(f"  with chatty    {noisy:>9,.0f} runs/s   (rounds: {result['noisy']})")
    out.print(
        f"  cost           {100 * (1 - noisy / alone):>8.1f} %  (target <= 10 %); "
        f"lines stored: {result['stored']:,} (the cap is 2 MiB per attempt)"
    )


if __name__ == "__main__":
    sys.exit(main())

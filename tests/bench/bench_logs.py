"""Benchmark: a very chatty task next to the executor benchmark.

    python -m tests.bench.bench_logs                  # 1,000 runs; shell and Python tasks
    python -m tests.bench.bench_logs --kind shell     # only the shell task (seq)
    python -m tests.bench.bench_logs --kind python    # only the Python task (ctx.log)
    python -m tests.bench.bench_logs --kind spin      # the control: Python, not logging
    python -m tests.bench.bench_logs --quick          # smoke size

The executor benchmark's workload (N concurrent runs of a 10-task no-op chain, one
executor, embedded PostgreSQL with synchronous_commit on) is timed alone and with chatty
tasks started just before it in the same executor: a shell task printing 100,000 lines
as fast as it can (`seq`) and/or a Python task logging 100,000 lines in a loop. Task logs
are written while the attempt runs, in batches; the target is that the chatty tasks cost
the benchmark at most 10%.

A Python task holds the GIL while it loops, whether it logs or not: `--kind spin` runs
the same loop (formatting the same lines) without logging them, so the cost of logging
is the difference between `--kind python` and `--kind spin`.

Alone and chatty alternate in pairs, the order flipping each pair (A B, B A, …): the
machine is shared and noisy, so the median rates are compared, and each pair's own
ratio is shown for the spread. Before each round the database is vacuumed and
checkpointed (no round pays for another's dirty pages). Also reported: the CPU seconds this process (the
executor; the Python task's thread included) and PostgreSQL spent per round, which move
less than the wall clock, and how many lines were stored.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
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

KINDS = ["shell", "python", "both", "spin"]


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

    if kind == "spin":

        @wf.task(retries=0)
        def spinner(ctx: TaskContext, n: int) -> int:
            # the logger's loop, its lines formatted but not logged
            length = 0
            for i in range(n):
                length += len("line %d of a chatty python task" % i)  # noqa: UP031 (as ctx.log)
            return length

    return wf


def postgres_cpu(datadir: Path) -> float:
    """CPU seconds the PostgreSQL server (postmaster and backends) has used so far."""
    postmaster = (datadir / "postmaster.pid").read_text().split("\n", 1)[0].strip()
    ticks = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if postmaster in (pid, fields[1]):  # the postmaster or one of its children
            ticks += int(fields[11]) + int(fields[12])  # utime + stime
    return ticks / os.sysconf("SC_CLK_TCK")


async def settle(store: Any) -> None:
    """Every round starts alike: statistics fresh, dirty pages written (a checkpoint in
    the middle of one round, and the full-page images after it, would slow that round
    alone), Python's garbage collected."""
    async with store._pool.acquire() as conn:
        await conn.execute("VACUUM ANALYZE")
        await conn.execute("CHECKPOINT")
    gc.collect()


async def one_round(
    store: Any, chain: Any, chatty: Any, runs: int, lines: int | None, datadir: Path
) -> dict[str, float]:
    await settle(store)
    cpu0, pg0 = time.process_time(), postgres_cpu(datadir)
    chatty_id = None
    if lines is not None:
        chatty_id, _ = await create_run(store, chatty, {"n": lines})
        await asyncio.sleep(0.2)  # the chatty tasks have started and print
    t0 = time.perf_counter()
    ids = await asyncio.gather(*(create_run(store, chain, {}) for _ in range(runs)))
    await _finish(store, [i for i, _ in ids])
    took = time.perf_counter() - t0
    if chatty_id is not None:
        await _finish(store, [chatty_id])
    return {
        "rate": runs / took,
        "cpu": time.process_time() - cpu0,
        "pg_cpu": postgres_cpu(datadir) - pg0,
    }


async def bench(
    url: str, datadir: Path, runs: int, lines: int, kind: str, pairs: int
) -> dict[str, Any]:
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
    alone: list[dict[str, float]] = []
    noisy: list[dict[str, float]] = []
    try:
        await one_round(store, chain, chatty, 10, None, datadir)  # warm up
        for i in range(pairs):
            for with_logs in (False, True) if i % 2 == 0 else (True, False):
                what = " + chatty tasks" if with_logs else ""
                err.print(f"pair {i + 1}/{pairs}: {runs} runs{what}…")
                got = await one_round(
                    store, chain, chatty, runs, lines if with_logs else None, datadir
                )
                (noisy if with_logs else alone).append(got)
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
    parser.add_argument("--pairs", type=int, default=5, help="rounds alone/chatty (pairs)")
    parser.add_argument(
        "--kind",
        choices=KINDS,
        default="both",
        help="the chatty tasks: a shell task (seq), a Python task in a thread, both, "
        "or the control: a Python task looping as the logger does, without logging",
    )
    args = parser.parse_args()
    runs, lines, pairs = (100, 10_000, 1) if args.quick else (args.runs, args.lines, args.pairs)
    with tempfile.TemporaryDirectory(prefix="durable-bench-") as tmp:
        datadir = Path(tmp) / "data"
        server = start_server(datadir)
        try:
            asyncio.run(make_databases(server.get_uri(), ["logs_bench"]))
            result = asyncio.run(
                bench(server.get_uri("logs_bench"), datadir, runs, lines, args.kind, pairs)
            )
        finally:
            server.cleanup()
    alone, noisy = result["alone"], result["noisy"]

    def median(rounds: list[dict[str, float]], key: str) -> float:
        return statistics.median(r[key] for r in rounds)

    costs = [100 * (1 - n["rate"] / a["rate"]) for a, n in zip(alone, noisy, strict=True)]
    cost = 100 * (1 - median(noisy, "rate") / median(alone, "rate"))
    out = Console(width=160)
    out.print(
        f"task-log volume benchmark: {runs} runs of a 10-task chain, alone and next to "
        f"chatty tasks ({args.kind}) printing {lines:,} lines each; {pairs} pair(s) of rounds"
    )
    for name, rounds in (("alone", alone), ("with chatty", noisy)):
        rates = ", ".join(f"{r['rate']:.0f}" for r in rounds)
        out.print(
            f"  {name:<12} {median(rounds, 'rate'):>7,.0f} runs/s  (rounds: {rates}); "
            f"CPU per round: executor {median(rounds, 'cpu'):.2f} s, "
            f"PostgreSQL {median(rounds, 'pg_cpu'):.2f} s"
        )
    out.print(
        f"  cost         {cost:>7.1f} %       (target <= 10 %); each pair: "
        + ", ".join(f"{c:.1f}" for c in costs)
        + f" %; extra CPU per round: executor "
        f"{median(noisy, 'cpu') - median(alone, 'cpu'):+.2f} s, PostgreSQL "
        f"{median(noisy, 'pg_cpu') - median(alone, 'pg_cpu'):+.2f} s"
    )
    out.print(
        f"  lines stored: {result['stored'] / pairs:,.0f} per chatty round (the cap is 2 MiB "
        "of text per attempt; past it, lines are only counted)"
    )


if __name__ == "__main__":
    sys.exit(main())

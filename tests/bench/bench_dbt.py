"""Benchmark: the example dbt project (examples/dbt_shop) per node vs watched.

    python -m tests.bench.bench_dbt               # 2 rounds of each mode, alternated
    python -m tests.bench.bench_dbt --rounds 1    # quicker
    python -m tests.bench.bench_dbt --loop-lag    # also: dbtRunner in-process vs a subprocess

The whole project (3 seeds, 6 models, 11 tests: 20 tasks) as one durable run, one executor,
on an embedded PostgreSQL (pgserver), dbt writing into a database of its own per run.
``node``: one ``dbt build`` per node (what Astronomer Cosmos does); ``watched``: one
``dbt build`` for the whole DAG, followed node by node. Reported: the wall time of each
run, from ``create_run`` to its end, the medians and their ratio. The modes alternate
(A B A B): the machine is shared and noisy. The project is parsed once first, so both
modes start from dbt's partial parse.

``--loop-lag`` measures why watched mode runs dbt in a subprocess rather than through
``dbtRunner`` in the executor's process: the executor's event loop's worst stall (a 10 ms
ticker) while one ``dbt build`` of the project runs in a thread, and while it runs as a
subprocess.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from durable import Workflow
from durable.application.runs import create_run
from durable.core.events import run_stream
from durable.core.fold import fold
from durable.runtime.executor import Executor
from durable.store import connect
from durable.workflows import WorkflowRegistry
from durable.workflows.dbt import dbt_executable, expand
from durable.workflows.loader import LoadedWorkflow
from tests.bench.bench_core import start_server
from tests.bench.bench_executor import make_databases

err = Console(stderr=True)
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "dbt_shop"


async def one_run(url: str, project: Path, mode: str) -> tuple[float, str]:
    wf = Workflow(f"shop_{mode}")
    wf.dbt(project, mode=mode)
    registry = WorkflowRegistry()
    registry.add(LoadedWorkflow(wf.spec(), {}))
    store = await connect(url)
    executor = Executor(store, registry, max_tasks=64, poll_interval=0.2)
    stop = asyncio.Event()
    task = asyncio.create_task(executor.run(stop))
    try:
        t0 = time.perf_counter()
        run_id, _ = await create_run(store, wf.spec(), {})
        while True:
            state = fold(await store.read_stream(run_stream(run_id)))
            if state is not None and state.is_terminal:
                break
            await asyncio.sleep(0.05)
        took = time.perf_counter() - t0
    finally:
        stop.set()
        await task
        await store.close()
    return took, state.status


async def loop_lag(during: Any) -> tuple[float, float]:
    """(wall time of ``during()``, the worst delay of a 10 ms ticker meanwhile)."""
    worst = 0.0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal worst
        loop = asyncio.get_running_loop()
        while not done.is_set():
            t = loop.time()
            await asyncio.sleep(0.01)
            worst = max(worst, loop.time() - t - 0.01)

    tick = asyncio.create_task(ticker())
    t0 = time.perf_counter()
    await during()
    took = time.perf_counter() - t0
    done.set()
    await tick
    return took, worst


def in_process_vs_subprocess(project: Path, out: Console) -> None:
    target = tempfile.mkdtemp(prefix="bench-dbt-")
    args = ["build", "--project-dir", str(project), "--target-path", target, "--quiet"]

    async def in_thread() -> None:
        from dbt.cli.main import dbtRunner

        result = await asyncio.to_thread(dbtRunner().invoke, args)
        assert result.success, result.exception

    async def in_subprocess() -> None:
        proc = await asyncio.create_subprocess_exec(
            dbt_executable(), *args, stdout=asyncio.subprocess.DEVNULL
        )
        assert await proc.wait() == 0

    sub = asyncio.run(loop_lag(in_subprocess))
    thread = asyncio.run(loop_lag(in_thread))  # the first dbtRunner call imports dbt too
    thread2 = asyncio.run(loop_lag(in_thread))
    shutil.rmtree(target, ignore_errors=True)
    out.print("one `dbt build` of the project, the executor's loop ticking every 10 ms:")
    for label, (took, worst) in (
        ("subprocess", sub),
        ("dbtRunner in a thread, 1st call", thread),
        ("dbtRunner in a thread, 2nd call", thread2),
    ):
        out.print(f"  {label:34} {took:6.1f} s, worst loop stall {worst * 1000:7.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--loop-lag", action="store_true")
    args = parser.parse_args()
    out = Console(width=120)
    with tempfile.TemporaryDirectory(prefix="bench-dbt-") as tmp:
        server = start_server(Path(tmp) / "pg")
        url = server.get_uri()
        project = Path(tmp) / "dbt_shop"
        shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("target", "logs"))
        host = url.split("host=")[1]
        os.environ.update(
            SHOP_PG_HOST=host, SHOP_PG_DBNAME="warehouse", DBT_SEND_ANONYMOUS_USAGE_STATS="false"
        )
        asyncio.run(make_databases(url, ["warehouse"]))
        err.print("dbt parse…")
        expand(project)
        modes = ("node", "watched")
        names = [f"durable_{m}_{i}" for i in range(args.rounds) for m in modes]
        asyncio.run(make_databases(url, names))
        times: dict[str, list[float]] = {m: [] for m in modes}
        for i in range(args.rounds):
            for mode in modes if i % 2 == 0 else modes[::-1]:
                err.print(f"{mode} ({i + 1}/{args.rounds})…")
                took, status = asyncio.run(
                    one_run(url.replace("/postgres?", f"/durable_{mode}_{i}?"), project, mode)
                )
                if status != "succeeded":
                    sys.exit(f"the {mode} run {status}")
                times[mode].append(took)
        out.print(
            f"the example dbt project (20 nodes) as one run, {args.rounds} round(s) per mode, "
            f"{os.cpu_count()} CPUs:"
        )
        for mode in modes:
            each = ", ".join(f"{t:.1f}" for t in times[mode])
            out.print(f"  {mode:8} median {statistics.median(times[mode]):6.1f} s  ({each})")
        ratio = statistics.median(times["node"]) / statistics.median(times["watched"])
        out.print(f"  per node / watched: {ratio:.1f}x")
        if args.loop_lag:
            in_process_vs_subprocess(project, out)
        server.cleanup()


if __name__ == "__main__":
    main()

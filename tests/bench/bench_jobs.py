"""Benchmark of external jobs waiting without task slots.

    python -m tests.bench.bench_jobs            # N = 500 runs, 4 task slots
    python -m tests.bench.bench_jobs --quick    # N = 50

N runs of one ``job`` task each, on one executor with 4 task slots, against the loopback
job server of the tests (tests/jobserver.py) on an embedded PostgreSQL (fsync on). The
jobs run until released: every one of them must be submitted, recorded
(``task_waiting``) and polled while the others wait, though only 4 slots exist. Reported:
how long until all N wait at once (and submissions per second), the executor process's
thread count while they wait against before, then how long from releasing them to every
run succeeded (polls back off from 0.2 s to 1 s).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import threading
import time
from pathlib import Path

from rich.console import Console

from durable import Workflow
from durable.application.runs import create_run
from durable.core.events import run_stream
from durable.core.fold import fold
from durable.runtime.executor import Executor
from durable.store import connect
from durable.workflows import WorkflowRegistry
from durable.workflows.loader import LoadedWorkflow
from tests.bench.bench_core import start_server
from tests.bench.bench_executor import make_databases
from tests.jobserver import JobServer

err = Console(stderr=True)
SLOTS = 4


async def bench(url: str, runs: int) -> dict[str, float]:
    jobs = await JobServer().start()
    wf = Workflow("waits")
    wf.job(
        "train",
        submit_url=f"{jobs.url}/jobs",
        json={},  # until released
        job_id="job.id",
        status_url=f"{jobs.url}/jobs/${{job.id}}",
        state="state",
        succeeded=["SUCCEEDED"],
        failed=["FAILED"],
        poll_interval=0.2,
        max_poll_interval=1.0,
    )
    registry = WorkflowRegistry()
    registry.add(LoadedWorkflow(wf.spec(), dict(wf.callables)))
    store = await connect(url, max_size=20)
    executor = Executor(store, registry, max_tasks=SLOTS, poll_interval=0.2)
    stop = asyncio.Event()
    running = asyncio.create_task(executor.run(stop))
    threads_before = threading.active_count()
    try:
        t0 = time.perf_counter()
        ids = [
            i
            for i, _ in await asyncio.gather(
                *(create_run(store, wf.spec(), {}) for _ in range(runs))
            )
        ]
        while True:  # until every job was polled once: submitted, recorded, waiting
            if sum(1 for j in jobs.jobs.values() if j.polls >= 1) >= runs:
                break
            await asyncio.sleep(0.05)
        all_waiting = time.perf_counter() - t0
        threads_waiting = threading.active_count()
        free = executor.slots.free
        t1 = time.perf_counter()
        for job_id in list(jobs.jobs):
            jobs.finish(job_id)
        for run_id in ids:
            while True:
                state = fold(await store.read_stream(run_stream(run_id)))
                if state is not None and state.is_terminal:
                    assert state.status == "succeeded", state.tasks["train"].error
                    break
                await asyncio.sleep(0.05)
        finished = time.perf_counter() - t1
    finally:
        stop.set()
        await asyncio.wait_for(running, 60)
        await store.close()
        await jobs.stop()
    assert jobs.submissions == runs
    return {
        "all_waiting_s": all_waiting,
        "submissions_per_s": runs / all_waiting,
        "threads_before": threads_before,
        "threads_waiting": threads_waiting,
        "free_slots_waiting": free,
        "finished_s": finished,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smoke size")
    parser.add_argument("--runs", type=int, default=500)
    args = parser.parse_args()
    runs = 50 if args.quick else args.runs
    with tempfile.TemporaryDirectory(prefix="durable-bench-") as tmp:
        server = start_server(Path(tmp) / "data")
        try:
            asyncio.run(make_databases(server.get_uri(), ["durable_jobs"]))
            err.print(f"{runs} runs of one job each, {SLOTS} task slots…")
            got = asyncio.run(bench(server.get_uri("durable_jobs"), runs))
        finally:
            server.cleanup()
    out = Console(width=160)
    out.print(
        f"{runs} jobs waiting at once on {SLOTS} task slots (ratio {runs / SLOTS:.0f}): "
        f"all submitted, recorded and polled in {got['all_waiting_s']:.2f} s "
        f"({got['submissions_per_s']:.0f} submissions/s); "
        f"{got['free_slots_waiting']:.0f} of {SLOTS} slots free while they wait; "
        f"threads {got['threads_before']:.0f} before, {got['threads_waiting']:.0f} while waiting; "
        f"all {runs} runs succeeded {got['finished_s']:.2f} s after release"
    )


if __name__ == "__main__":
    sys.exit(main())

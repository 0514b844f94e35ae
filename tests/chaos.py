"""The chaos loop: many runs, real executor processes killed at random, PostgreSQL restarted.

DBOS tests durable execution this way; so do we. Only invariants are asserted, from the
log, once every run has ended:

- every run reached a terminal state;
- no task completion (``task_succeeded`` per task and generation) recorded twice;
- the transactional SQL task's rows exist exactly once per succeeded run;
- every run folds without error, and the ``runs`` read model matches the fold
  (``durable replay --verify``).

    python -m tests.chaos                     # full size: 500 runs, 2 executors
    python -m tests.chaos --runs 60 --seconds 120 --pg-restarts 1   # the CI smoke size

It starts its own PostgreSQL (pgserver) in a temporary directory, so it can restart it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg
import msgspec

from durable.application.runs import create_run
from durable.core.events import TaskSucceeded, run_stream
from durable.core.fold import fold
from durable.core.runs_view import row_from_state
from durable.store import connect
from durable.workflows import load_workflows
from tests import pgcontrol

WORKFLOW = '''
"""A mixed pipeline for the chaos loop: retries, a map, a switch, a sleep, and a
transactional SQL task."""
import time
from durable import Param, TaskError, Workflow

wf = Workflow("chaos", params={"n": Param("int", required=True)})

@wf.task(retries=4)
def extract(ctx, n):
    if n % 3 == 0 and ctx.attempt == 1:
        raise RuntimeError("flaky source: retried")
    time.sleep(0.05)
    return {"items": list(range(n % 4 + 1)), "big": n % 2 == 0}

@wf.map(over=extract, key="items", max_parallel=2, retries=4)
def each(ctx, item):
    time.sleep(0.02)
    return item * 2

pause = wf.sleep("pause", seconds=0.3, after=[extract])

@wf.task(retries=4)
def big_path(ctx):
    return "big"

@wf.task(retries=4)
def small_path(ctx):
    return "small"

@wf.switch(after=[extract], cases={"big": [big_path], "small": [small_path]})
def route(extract):
    return "big" if extract["big"] else "small"

load = wf.sql("load", "INSERT INTO chaos_rows (run_id) VALUES ($1)", args=["${run_id}"],
              after=[each, pause], transactional=True, retries=6)

@wf.task(after=[load, big_path, small_path], trigger_rule="none_failed", retries=4)
def report(ctx):
    return "done"
'''

TERMINAL = ("succeeded", "failed", "cancelled")


class Chaos:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.rng = random.Random(args.seed)
        self.executors: list[subprocess.Popen[bytes] | None] = []
        self.faults: Counter[str] = Counter()
        self.failed: list[str] = []
        self.url = ""
        self.datadir = workdir / "pg"
        self.workflow = workdir / "chaos_workflow.py"

    def say(self, line: str) -> None:
        print(f"[chaos {time.strftime('%H:%M:%S')}] {line}", flush=True)

    # -- processes ------------------------------------------------------------------

    def start_executor(self, i: int) -> None:
        log = open(self.workdir / f"executor-{i}.log", "ab")  # noqa: SIM115 - the child keeps it
        self.executors[i] = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "durable",
                "--database-url",
                self.url,
                "up",
                "--no-http",
                "--workflows",
                str(self.workflow),
                "--lease",
                "3",
                "--max-tasks",
                "32",
            ],
            stdout=log,
            stderr=log,
            env={**os.environ, "HOSTNAME": f"chaos-{i}"},
        )

    def kill_one(self) -> None:
        i = self.rng.randrange(len(self.executors))
        proc = self.executors[i]
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            self.faults["executor SIGKILL"] += 1
        self.start_executor(i)

    def restart_postgres(self) -> None:
        pgcontrol.stop(self.datadir)
        self.faults["PostgreSQL restart"] += 1
        time.sleep(self.rng.uniform(1.0, 3.0))
        pgcontrol.start(self.datadir)

    def stop_all(self) -> None:
        for proc in self.executors:
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.executors:
            if proc is not None:
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

    # -- the loop -------------------------------------------------------------------

    async def counts(self) -> Counter[str]:
        conn = await asyncpg.connect(self.url, timeout=5)
        try:
            rows = await conn.fetch("SELECT status, count(*) AS n FROM durable.runs GROUP BY 1")
        finally:
            await conn.close()
        return Counter({r["status"]: r["n"] for r in rows})

    async def run(self) -> int:
        import pgserver

        server = pgserver.get_server(  # type: ignore[attr-defined]
            self.datadir, cleanup_mode="stop"
        )
        self.url = str(server.get_uri())
        self.workflow.write_text(WORKFLOW)
        store = await connect(self.url)
        try:
            await store._pool.execute("CREATE TABLE IF NOT EXISTS chaos_rows (run_id text)")
            spec = load_workflows(self.workflow).get("chaos").spec
            runs = [
                (await create_run(store, spec, {"n": n}, idempotency_key=f"chaos:{n}"))[0]
                for n in range(self.args.runs)
            ]
        finally:
            await store.close()
        self.say(f"{len(runs)} runs created; starting {self.args.executors} executors")
        self.executors = [None] * self.args.executors
        for i in range(self.args.executors):
            self.start_executor(i)

        start = time.monotonic()
        deadline = start + self.args.seconds
        # PostgreSQL restarts when given fractions of the runs have ended: mid-run, always
        restarts_at = [
            (k + 1) / (self.args.pg_restarts + 1) * len(runs) for k in range(self.args.pg_restarts)
        ]
        next_kill = start + self.args.kill_every
        done = 0
        try:
            while time.monotonic() < deadline:
                await asyncio.sleep(0.5)
                now = time.monotonic()
                if restarts_at and done >= restarts_at[0]:
                    restarts_at.pop(0)
                    self.say(
                        f"{done} runs ended: restarting PostgreSQL "
                        "(pg_ctl stop -m immediate, then start)"
                    )
                    await asyncio.to_thread(self.restart_postgres)
                if now >= next_kill:
                    next_kill = now + self.rng.uniform(0.5, 1.5) * self.args.kill_every
                    self.kill_one()
                try:
                    counts = await self.counts()
                except (OSError, asyncpg.PostgresError, TimeoutError):
                    continue
                done = sum(counts[s] for s in TERMINAL)
                if done == len(runs):
                    break
            self.say(f"{done} of {len(runs)} runs ended after {time.monotonic() - start:.0f} s")
        finally:
            self.stop_all()
        try:
            return await self.check(runs)
        finally:
            # pgserver's handle knows the first postmaster only: stop the one running now
            with contextlib.suppress(subprocess.CalledProcessError):
                pgcontrol.stop(self.datadir)

    async def check(self, runs: list[str]) -> int:
        store = await connect(self.url)
        failures: list[str] = []
        statuses: Counter[str] = Counter()
        try:
            rows_by_run = Counter(
                r["run_id"] for r in await store._pool.fetch("SELECT run_id FROM chaos_rows")
            )
            streams = await store.read_streams([run_stream(r) for r in runs])
            for run_id in runs:
                records = streams.get(run_stream(run_id), [])
                try:
                    state = fold(records)
                except Exception as exc:
                    failures.append(f"run {run_id} does not fold: {exc}")
                    continue
                assert state is not None
                statuses[state.status] += 1
                if state.status == "failed" and len(self.failed) < 5:
                    errors = [
                        f"{t.name}: {t.error.type}: {t.error.message}"
                        for t in state.tasks.values()
                        if t.error is not None and t.status == "failed"
                    ]
                    self.failed.append(f"run {run_id} failed ({state.reason}): {errors}")
                if state.status not in TERMINAL:
                    failures.append(f"run {run_id} never ended: {state.status}")
                completions = Counter(
                    (r.event.task, r.event.generation)
                    for r in records
                    if isinstance(r.event, TaskSucceeded)
                )
                doubled = [k for k, n in completions.items() if n > 1]
                if doubled:
                    failures.append(f"run {run_id}: completions recorded twice: {doubled}")
                loaded = state.tasks["load"].status == "succeeded"
                if rows_by_run[run_id] != (1 if loaded else 0):
                    failures.append(
                        f"run {run_id}: {rows_by_run[run_id]} transactional rows, load "
                        f"{state.tasks['load'].status}"
                    )
                row = await store.get_run(run_id)
                if row != row_from_state(state):
                    failures.append(f"run {run_id}: read model differs from the log")
        finally:
            await store.close()
        self.say(f"faults injected: {dict(self.faults)}")
        self.say(f"runs by status: {dict(statuses)}")
        for line in self.failed:
            self.say(line)
        invariants = [
            "every run ended",
            "no completion recorded twice",
            "transactional rows exactly once",
            "every run folds; read model matches (replay --verify)",
        ]
        if failures:
            for line in failures[:20]:
                self.say(f"VIOLATED: {line}")
            self.say(f"{len(failures)} violations")
            return 1
        self.say("invariants held: " + "; ".join(invariants))
        print(msgspec.json.encode({"faults": self.faults, "statuses": statuses}).decode())
        return 0


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--runs", type=int, default=500)
    p.add_argument("--executors", type=int, default=2)
    p.add_argument("--seconds", type=float, default=300, help="bound on the whole loop")
    p.add_argument("--kill-every", type=float, default=4.0, help="seconds between SIGKILLs")
    p.add_argument("--pg-restarts", type=int, default=3)
    p.add_argument("--seed", type=int, default=None)
    return p.parse_args(argv)


async def main(argv: list[str] | None = None, workdir: Path | None = None) -> int:
    args = parse(argv)
    if workdir is not None:
        return await Chaos(args, workdir).run()
    with tempfile.TemporaryDirectory(prefix="durable-chaos-") as tmp:
        return await Chaos(args, Path(tmp)).run()


def _run(argv: Any = None) -> None:
    sys.exit(asyncio.run(main(argv)))


if __name__ == "__main__":
    _run()

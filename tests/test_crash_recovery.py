"""Crash recovery and scale-out with real executor processes (`durable up`).

An executor is killed with SIGKILL while tasks run — inside a task, and between a task's
side effect and its completion event. After a new executor starts, every run finishes,
no task completion is recorded twice, and the transactional SQL task's rows exist once.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from durable.application.runs import create_run
from durable.core.events import TaskStarted, TaskSucceeded, run_stream
from durable.core.fold import fold
from durable.store import PostgresEventStore
from durable.workflows import load_workflows
from tests.executing import wait_for_run

pytestmark = pytest.mark.slow

WORKFLOW = """
import os, time
from durable import Workflow

def effect(line):
    with open(os.environ["EFFECTS_FILE"], "a") as f:
        f.write(line + "\\n")
        f.flush()
        os.fsync(f.fileno())

wf = Workflow("crashy")

@wf.task
def extract(ctx):
    effect(f"{ctx.run_id} extract {ctx.attempt}")
    return {"rows": 3}

@wf.task(after=["extract"], retries=5)
def slow(ctx):
    effect(f"{ctx.run_id} slow-started {ctx.attempt}")
    time.sleep(1.5)          # killed in here: the task is running
    return "slow done"

@wf.task(after=["extract"], retries=5)
def side_effect_then_pause(ctx):
    effect(f"{ctx.run_id} side-effect {ctx.attempt}")
    time.sleep(1.5)          # killed in here: the effect happened, its completion did not
    return "effect done"

load = wf.sql("load", "INSERT INTO crash_rows VALUES ($1)", args=["${run_id}"],
              after=["slow", "side_effect_then_pause"], transactional=True, retries=5)

@wf.task(after=[load])
def finish(ctx):
    return "finished"
"""


@pytest.fixture
def crashy(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "crashy.py"
    path.write_text(WORKFLOW)
    yield path


def executor_process(
    database_url: str, workflows: Path, effects: Path, name: str, max_runs: int = 1000
) -> subprocess.Popen[bytes]:
    env = {**os.environ, "EFFECTS_FILE": str(effects), "HOSTNAME": name}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "durable",
            "--database-url",
            database_url,
            "up",
            "--no-http",
            "--workflows",
            str(workflows),
            "--lease",
            "2",
            "--max-tasks",
            "64",
            "--max-runs",
            str(max_runs),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _count(path: Path, needle: str) -> int:
    return path.read_text().count(needle) if path.exists() else 0


async def wait_for_line(effects: Path, needle: str, count: int, timeout: float = 30) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if _count(effects, needle) >= count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{needle!r} seen fewer than {count} times")


async def test_sigkill_mid_run_loses_and_doubles_nothing(
    pg_store: PostgresEventStore, database_url: str, crashy: Path, tmp_path: Path
) -> None:
    async with pg_store._pool.acquire() as conn:
        await conn.execute("CREATE TABLE crash_rows (run_id text)")
    spec = load_workflows(crashy).get("crashy").spec
    effects = tmp_path / "effects.log"
    runs = [(await create_run(pg_store, spec, {}))[0] for _ in range(6)]

    first = executor_process(database_url, crashy, effects, "first")
    try:
        # every run is inside `slow` and past the side effect of `side_effect_then_pause`
        await wait_for_line(effects, "slow-started 1", len(runs))
        await wait_for_line(effects, "side-effect 1", len(runs))
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    states = [fold(await pg_store.read_stream(run_stream(r))) for r in runs]
    for s in states:  # the kill landed where it should: both tasks mid-flight
        assert s is not None
        assert s.tasks["slow"].status == "running"
        assert s.tasks["side_effect_then_pause"].status == "running"

    second = executor_process(database_url, crashy, effects, "second")
    try:
        finished = [await wait_for_run(pg_store, r, timeout=60) for r in runs]
    finally:
        second.terminate()
        second.wait(20)

    assert [s.status for s in finished] == ["succeeded"] * len(runs)
    lines = effects.read_text().splitlines()
    for run_id, state in zip(runs, finished, strict=True):
        events = [r.event for r in await pg_store.read_stream(run_stream(run_id))]
        completions = Counter(e.task for e in events if isinstance(e, TaskSucceeded))
        assert set(completions.values()) == {1}, completions  # recorded exactly once
        # the bodies caught by the kill ran again (at least once), the others once
        assert state.tasks["slow"].executions == 2
        assert state.tasks["side_effect_then_pause"].executions == 2
        assert state.tasks["extract"].executions == 1
        assert sum(1 for line in lines if line.startswith(f"{run_id} side-effect")) == 2
        assert state.tasks["slow"].output == "slow done"
        retried = [e for e in events if isinstance(e, TaskStarted) and e.task == "slow"]
        assert [e.attempt for e in retried] == [1, 2]
    async with pg_store._pool.acquire() as conn:
        rows = Counter(r["run_id"] for r in await conn.fetch("SELECT run_id FROM crash_rows"))
    assert rows == {r: 1 for r in runs}  # the transactional SQL task's rows: exactly once


async def test_sigkill_during_the_transactional_sql_task(
    pg_store: PostgresEventStore, database_url: str, tmp_path: Path
) -> None:
    """Killed while the SQL task's transaction is open: its rows roll back with it."""
    async with pg_store._pool.acquire() as conn:
        await conn.execute("CREATE TABLE slow_rows (run_id text)")
    path = tmp_path / "txkill.py"
    path.write_text(
        "from durable import Workflow\n"
        "wf = Workflow('txkill')\n"
        "wf.sql('load', \"INSERT INTO slow_rows SELECT $1 FROM pg_sleep(1.5)\", "
        "args=['${run_id}'], transactional=True, retries=5)\n"
    )
    effects = tmp_path / "effects.log"
    spec = load_workflows(path).get("txkill").spec
    runs = [(await create_run(pg_store, spec, {}))[0] for _ in range(4)]
    first = executor_process(database_url, path, effects, "first")
    try:
        for _ in range(200):  # wait until the inserts are in flight
            async with pg_store._pool.acquire() as conn:
                active = await conn.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'INSERT INTO slow_rows%'"
                )
            if active >= len(runs):
                break
            await asyncio.sleep(0.05)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    second = executor_process(database_url, path, effects, "second")
    try:
        finished = [await wait_for_run(pg_store, r, timeout=60) for r in runs]
    finally:
        second.terminate()
        second.wait(20)
    assert {s.status for s in finished} == {"succeeded"}
    async with pg_store._pool.acquire() as conn:
        rows = Counter(r["run_id"] for r in await conn.fetch("SELECT run_id FROM slow_rows"))
    assert rows == {r: 1 for r in runs}
    assert all(s.tasks["load"].executions == 2 for s in finished)


async def test_two_executors_share_the_work_and_complete_each_task_once(
    pg_store: PostgresEventStore, database_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "shared.py"
    path.write_text(
        "import time\n"
        "from durable import Workflow\n"
        "wf = Workflow('shared')\n"
        "prev = None\n"
        "for i in range(5):\n"
        "    prev = wf.task(name=f's{i}', after=[prev] if prev else None)(lambda: time.sleep(0.05))\n"
    )
    spec = load_workflows(path).get("shared").spec
    effects = tmp_path / "effects.log"
    procs = [
        executor_process(database_url, path, effects, f"exec{i}", max_runs=8) for i in range(2)
    ]
    try:
        runs = [(await create_run(pg_store, spec, {}))[0] for _ in range(30)]
        finished = [await wait_for_run(pg_store, r, timeout=60) for r in runs]
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(20)
    assert {s.status for s in finished} == {"succeeded"}
    executors: Counter[str] = Counter()
    for run_id in runs:
        events = [r.event for r in await pg_store.read_stream(run_stream(run_id))]
        completions = Counter(e.task for e in events if isinstance(e, TaskSucceeded))
        assert completions == {f"s{i}": 1 for i in range(5)}
        executors.update(e.executor for e in events if isinstance(e, TaskStarted))
    assert len(executors) == 2, executors  # both processes did work


async def test_sigkill_of_the_scheduler_mid_tick_neither_loses_nor_doubles(
    pg_store: PostgresEventStore, database_url: str, tmp_path: Path
) -> None:
    from datetime import UTC, datetime, timedelta

    start = (datetime.now(UTC) - timedelta(minutes=400)).replace(second=0, microsecond=0)
    path = tmp_path / "ticking.py"
    path.write_text(
        "from datetime import datetime\n"
        "from durable import Schedule, Workflow\n"
        f"wf = Workflow('ticking', schedule=Schedule(every=60, catchup='all', "
        f"start=datetime.fromisoformat('{start.isoformat()}')))\n"
        "wf.task(name='noop')(lambda: None)\n"
    )
    effects = tmp_path / "effects.log"

    async def runs() -> tuple[int, int, list[datetime]]:
        async with pg_store._pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT logical_time FROM durable.runs WHERE workflow = 'ticking' ORDER BY 1"
            )
        times = [r["logical_time"] for r in rows]
        return len(times), len(set(times)), times

    first = executor_process(database_url, path, effects, "first")
    try:
        for _ in range(600):  # until the catch-up is under way, then kill it mid-tick
            if (await runs())[0] >= 40:
                break
            await asyncio.sleep(0.02)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    killed_at = (await runs())[0]
    assert 40 <= killed_at < 399, killed_at  # it really was mid-tick

    second = executor_process(database_url, path, effects, "second")
    try:
        for _ in range(600):
            if (await runs())[0] >= 399:
                break
            await asyncio.sleep(0.05)
    finally:
        second.terminate()
        second.wait(20)
    count, distinct, times = await runs()
    assert count == distinct  # no tick doubled
    assert times[0] == start
    assert all(b - a == timedelta(minutes=1) for a, b in itertools.pairwise(times))
    assert count >= 399  # no tick lost

"""Outages of PostgreSQL under a running `durable up`: a real restart, and a cut, a stall
and a slow link through the fault proxy. Work resumes by itself, nothing is lost or
doubled, and the operator sees a line when the database goes and one when it is back —
no tracebacks, no flood."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from durable.application.runs import create_run
from durable.core.events import TaskSucceeded, run_stream
from durable.core.fold import fold
from durable.store import connect
from durable.workflows import load_workflows
from tests import pgcontrol
from tests.faultproxy import FaultProxy
from tests.own_postgres import Postgres, own_postgres_in
from tests.processes import free_port

pytestmark = pytest.mark.slow

CHAIN = """
from durable import Param, Workflow

wf = Workflow("chain", params={"n": Param("int", required=True)})

@wf.task(retries=2)
def t1(n):
    return n

@wf.task(after=["t1"], retries=2)
def t2(t1):
    return t1 + 1

@wf.task(after=["t2"], retries=2)
def t3(t2):
    return t2 + 1

@wf.task(after=["t3"], retries=2)
def t4(t3):
    return t3 + 1

@wf.task(after=["t4"], retries=2)
def t5(t4):
    return t4 + 1
"""
TERMINAL = ("succeeded", "failed", "cancelled")


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator[Postgres]:
    yield from own_postgres_in(tmp_path)


class Up:
    """`durable up` as a process, its stderr kept line by line with arrival times."""

    def __init__(self, url: str, workflows: Path, *extra: str) -> None:
        self.lines: list[tuple[float, str]] = []
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "durable",
                "--database-url",
                url,
                "up",
                "--workflows",
                str(workflows),
                "--lease",
                "5",
                *extra,
                *(() if "--http" in extra else ("--no-http",)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append((time.monotonic(), line.rstrip("\n")))

    def since(self, t: float) -> list[str]:
        return [line for at, line in list(self.lines) if at >= t]

    def wait_for(self, needle: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(needle in line for _, line in list(self.lines)):
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"no {needle!r} in:\n" + "\n".join(s for _, s in self.lines))

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(5)
        return self.process.returncode


async def _statuses(url: str) -> Counter[str]:
    conn = await asyncpg.connect(url, timeout=5)
    try:
        rows = await conn.fetch("SELECT status, count(*) AS n FROM durable.runs GROUP BY 1")
    finally:
        await conn.close()
    return Counter({r["status"]: r["n"] for r in rows})


async def _wait_ended(url: str, at_least: int) -> None:
    for _ in range(1200):
        counts = await _statuses(url)
        if sum(counts[s] for s in TERMINAL) >= at_least:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"fewer than {at_least} runs ended in 60 s")


async def _wait_all_ended(url: str, total: int, timeout: float) -> float:
    """Seconds until every run ended (fails past ``timeout``)."""
    start = time.monotonic()
    counts: Counter[str] = Counter()
    while time.monotonic() - start < timeout:
        try:
            counts = await _statuses(url)
        except (OSError, asyncpg.PostgresError, TimeoutError):
            counts = Counter()
        if sum(counts[s] for s in TERMINAL) == total:
            return time.monotonic() - start
        await asyncio.sleep(0.2)
    raise AssertionError(f"after {timeout:.0f} s: {dict(counts)} of {total} runs")


async def _create_runs(url: str, workflows: Path, n: int) -> list[str]:
    store = await connect(url)
    try:
        spec = load_workflows(workflows).get("chain").spec
        return [
            (await create_run(store, spec, {"n": i}, idempotency_key=f"chain:{i}"))[0]
            for i in range(n)
        ]
    finally:
        await store.close()


async def _check_log(url: str, runs: list[str]) -> Counter[str]:
    store = await connect(url)
    try:
        streams = await store.read_streams([run_stream(r) for r in runs])
    finally:
        await store.close()
    statuses: Counter[str] = Counter()
    for run_id in runs:
        records = streams[run_stream(run_id)]
        state = fold(records)
        assert state is not None
        statuses[state.status] += 1
        done = Counter(
            (r.event.task, r.event.generation)
            for r in records
            if isinstance(r.event, TaskSucceeded)
        )
        assert all(n == 1 for n in done.values()), f"run {run_id}: a completion recorded twice"
    return statuses


@pytest.fixture
def chain(tmp_path: Path) -> Path:
    path = tmp_path / "chain.py"
    path.write_text(CHAIN)
    return path


def _quiet(lines: list[str], bound: int) -> None:
    assert not [line for line in lines if "Traceback" in line], "\n".join(lines)
    assert len(lines) <= bound, f"{len(lines)} lines:\n" + "\n".join(lines[:60])


async def test_postgres_restart_under_load_costs_a_pause(
    own_postgres: Postgres, chain: Path
) -> None:
    url = own_postgres.url
    # migrations first, so that runs can be created before the service starts
    await (await connect(url)).close()
    up = Up(url, chain, "--max-tasks", "64")
    try:
        up.wait_for("executor")
        runs = await _create_runs(url, chain, 200)
        await _wait_ended(url, 20)  # mid-run, for sure
        went = time.monotonic()
        pgcontrol.stop(own_postgres.datadir)
        await asyncio.sleep(5)
        pgcontrol.start(own_postgres.datadir)
        took = await _wait_all_ended(url, len(runs), timeout=30)
        statuses = await _check_log(url, runs)
        assert statuses == Counter(succeeded=200), statuses
        lines = up.since(went)
        _quiet(lines, bound=12)
        assert any("back" in line for line in lines), "\n".join(lines)
        print(f"all 200 runs ended {took:.1f} s after PostgreSQL came back")
    finally:
        assert up.stop() == 0


async def _health(session: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, Any]]:
    async with session.get(f"{url}/readyz", timeout=aiohttp.ClientTimeout(total=5)) as r:
        return r.status, dict(r.headers)


@pytest.fixture
async def proxy(own_postgres: Postgres) -> AsyncIterator[FaultProxy]:
    p = await FaultProxy.start(unix_path=own_postgres.socket)
    yield p
    await p.close()


@pytest.mark.parametrize("fault", ["cut", "stall", "slow"])
async def test_connection_faults_mid_run(
    own_postgres: Postgres, proxy: FaultProxy, chain: Path, fault: str
) -> None:
    direct = own_postgres.url
    via = f"postgresql://postgres@127.0.0.1:{proxy.port}/postgres"
    await (await connect(direct)).close()
    port = free_port()
    up = Up(via, chain, "--max-tasks", "64", "--http", f"127.0.0.1:{port}")
    api = f"http://127.0.0.1:{port}"
    try:
        await asyncio.to_thread(
            up.wait_for, "HTTP API and console on"
        )  # the proxy runs on this loop
        runs = await _create_runs(direct, chain, 100)
        await _wait_ended(direct, 10)
        went = time.monotonic()
        async with aiohttp.ClientSession() as session:
            if fault == "cut":
                proxy.refuse(True)
                proxy.cut()
                await asyncio.sleep(3)
                status, headers = await _health(session, api)
                assert status == 503 and "Retry-After" in headers
                proxy.refuse(False)
            elif fault == "stall":
                proxy.stall(True)
                await asyncio.sleep(3)
                proxy.stall(False)
            else:
                proxy.slow(0.02)
                await asyncio.sleep(3)
                proxy.slow(0)
            try:
                took = await _wait_all_ended(direct, len(runs), timeout=30)
            except AssertionError as exc:
                raise AssertionError(
                    f"{exc}; durable up said:\n" + "\n".join(up.since(0))
                ) from None
            status, _ = await _health(session, api)
            assert status == 200
        statuses = await _check_log(direct, runs)
        assert statuses == Counter(succeeded=100), statuses
        _quiet(up.since(went), bound=12)
        print(f"{fault}: all 100 runs ended {took:.1f} s after the link healed")
    finally:
        assert await asyncio.to_thread(up.stop) == 0

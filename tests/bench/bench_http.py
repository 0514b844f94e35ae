"""Benchmark of the HTTP API: trigger -> first task start latency, and triggers per second.

    python -m tests.bench.bench_http            # 20 s at 100 req/s, then 10 s flat out
    python -m tests.bench.bench_http --quick    # smoke size

The service is a real `durable up --http` process (API + executor) on an embedded
PostgreSQL (pgserver, fsync and synchronous_commit on); the load comes from this
benchmark, a separate process.

Latency: a steady (open-loop) stream of `POST /api/v1/workflows/ping/runs`, each with an
Idempotency-Key, measured from the request being sent to the commit time of the run's
first `task_started` event (same machine clock). Targets: p50 <= 5 ms, p99 <= 25 ms.

Throughput: closed loop, 32 requests in flight, triggers answered per second. The
reference is a bare aiohttp app answering the same POST with a fixed JSON body, driven by
the same client on the same machine: the ratio says how much of the HTTP stack's
ceiling a durable trigger (auth, validation, a committed run) keeps.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from rich.console import Console
from rich.progress import Progress

from tests.bench.bench_core import start_server
from tests.bench.bench_executor import make_databases
from tests.processes import free_port, start_service

err = Console(stderr=True)

WORKFLOW = """
from durable import Workflow

ping = Workflow("ping", description="one no-op task: the HTTP benchmark's workload")


@ping.task
def pong() -> int:
    return 1
"""

BARE = """
import sys
from aiohttp import web

async def runs(request):
    await request.read()
    return web.json_response({"run_id": "01J00000000000000000000000", "created": True}, status=202)

app = web.Application()
app.router.add_post("/api/v1/workflows/{workflow}/runs", runs)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def steady(url: str, token: str, rate: float, seconds: float) -> dict[str, Any]:
    """Open loop: one trigger every 1/rate s. Returns the send times and answer times."""
    sent: dict[str, float] = {}
    answered: list[float] = []
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(headers=headers) as http:

        async def one() -> None:
            key = str(uuid.uuid4())
            t0 = time.time()
            async with http.post(
                f"{url}/api/v1/workflows/ping/runs",
                json={"params": {}},
                headers={"Idempotency-Key": key},
            ) as response:
                body = await response.json()
                assert response.status == 202, body
            answered.append((time.time() - t0) * 1000)
            sent[body["run_id"]] = t0

        n = int(rate * seconds)
        start = time.perf_counter()
        pending = []
        with Progress(console=err, transient=True) as bar:
            task = bar.add_task("steady load", total=n)
            for i in range(n):
                delay = start + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                pending.append(asyncio.create_task(one()))
                bar.update(task, completed=i + 1)
            await asyncio.gather(*pending)
    return {"sent": sent, "answered": answered}


async def first_task_latency(db_url: str, sent: dict[str, float]) -> list[float]:
    conn = await asyncpg.connect(db_url)
    try:
        for _ in range(600):
            rows = await conn.fetch(
                "SELECT stream_id, min(recorded_at) AS at FROM durable.events "
                "WHERE type = 'task_started' AND stream_id = ANY($1::text[]) GROUP BY stream_id",
                [f"run:{r}" for r in sent],
            )
            if len(rows) == len(sent):
                break
            await asyncio.sleep(0.1)
    finally:
        await conn.close()
    at: dict[str, datetime] = {r["stream_id"][4:]: r["at"] for r in rows}
    return [(at[r].timestamp() - t0) * 1000 for r, t0 in sent.items() if r in at]


async def closed_loop(url: str, token: str | None, seconds: float, inflight: int) -> float:
    """Triggers answered per second with ``inflight`` requests always outstanding."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    done = 0
    deadline = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=inflight)
    async with aiohttp.ClientSession(headers=headers, connector=connector) as http:

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                async with http.post(
                    f"{url}/api/v1/workflows/ping/runs",
                    json={"params": {}},
                    headers={"Idempotency-Key": str(uuid.uuid4())},
                ) as response:
                    await response.read()
                    assert response.status == 202, response.status
                done += 1

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(inflight)))
        return done / (time.perf_counter() - began)


def bare_aiohttp(seconds: float, inflight: int) -> float:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-c", BARE, str(port)])
    try:
        url = f"http://127.0.0.1:{port}"

        async def go() -> float:
            async with aiohttp.ClientSession() as http:
                for _ in range(100):
                    try:
                        async with http.post(f"{url}/api/v1/workflows/ping/runs", json={}):
                            break
                    except aiohttp.ClientConnectionError:
                        await asyncio.sleep(0.1)
            return await closed_loop(url, None, seconds, inflight)

        return asyncio.run(go())
    finally:
        process.terminate()
        process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smoke size")
    parser.add_argument("--rate", type=float, default=100.0, help="steady load, requests/s")
    parser.add_argument("--seconds", type=float, default=20.0, help="steady load duration")
    args = parser.parse_args()
    seconds = 3.0 if args.quick else args.seconds
    flat_out = 3.0 if args.quick else 10.0
    inflight = 32
    with tempfile.TemporaryDirectory(prefix="durable-bench-") as tmp:
        server = start_server(Path(tmp) / "data")
        service = None
        try:
            asyncio.run(make_databases(server.get_uri(), ["http_bench"]))
            db_url = server.get_uri("http_bench")
            workflows = Path(tmp) / "ping.py"
            workflows.write_text(WORKFLOW)
            os.environ.pop("DURABLE_WORKFLOWS", None)
            service = start_service(db_url, workflows)
            err.print(f"steady load: {args.rate:g} triggers/s for {seconds:g} s…")
            load = asyncio.run(steady(service.url, service.token, args.rate, seconds))
            latencies = asyncio.run(first_task_latency(db_url, load["sent"]))
            err.print(f"flat out: {inflight} in flight for {flat_out:g} s…")
            ours = asyncio.run(closed_loop(service.url, service.token, flat_out, inflight))
        finally:
            if service is not None:
                service.stop()
            server.cleanup()
    err.print(f"reference: bare aiohttp, {inflight} in flight for {flat_out:g} s…")
    bare = bare_aiohttp(flat_out, inflight)
    out = Console(width=160)
    out.print(
        "HTTP API benchmark: `durable up --http` process, load from a separate process, "
        "PostgreSQL synchronous_commit=on"
    )
    out.print(
        f"  trigger -> first task start ({len(latencies)} runs at {args.rate:g}/s): "
        f"p50 {statistics.median(latencies):.1f} ms, p99 {percentile(latencies, 0.99):.1f} ms "
        "(targets 5 / 25 ms)"
    )
    answered = load["answered"]
    out.print(
        f"  trigger answered (202, run committed):          "
        f"p50 {statistics.median(answered):.1f} ms, p99 {percentile(answered, 0.99):.1f} ms"
    )
    out.print(f"  triggers per second, {inflight} in flight:        {ours:>9,.0f} req/s")
    out.print(
        f"  bare aiohttp, same client:                     {bare:>9,.0f} req/s "
        f"(durable keeps {ours / bare:.2f}x of it)"
    )


if __name__ == "__main__":
    sys.exit(main())

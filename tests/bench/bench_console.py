"""Benchmark of the console's pages with many runs in the database.

    python -m tests.bench.bench_console             # 100,000 runs
    python -m tests.bench.bench_console --quick     # 5,000 runs (smoke size)

The console draws its pages in the browser from the HTTP API, so a page's server time is
the time of the API answers it waits for. This benchmark starts a real `durable up`
process on an embedded PostgreSQL (synchronous_commit on), runs the example pipeline
once for real, then imports copies of that run's history (~35 events each) under new
ids with spread-out creation times until the database holds N finished runs. It then
times, on loopback, each call a page makes (p50 and p99 of repeated loads) and the sum
per page, the bound when the calls are made one after another (the browser overlaps
some). Target: runs list and run page each under 300 ms at 100,000 runs.

The reference is the same pages on the same service before the import (a database with
one run): the ratio says what 100,000 runs cost a page.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import aiohttp
import asyncpg
import msgspec
from rich.console import Console
from rich.progress import Progress

from durable.core.events import RunCreated, run_stream
from durable.store import connect
from tests.bench.bench_core import start_server
from tests.bench.bench_executor import make_databases
from tests.bench.bench_http import percentile
from tests.processes import start_service

err = Console(stderr=True)
ROOT = Path(__file__).resolve().parents[2]
REPEAT = 30


def pages(run_id: str) -> dict[str, list[str]]:
    """The API calls each page waits for before it is drawn."""
    return {
        "workflows": ["/api/v1/session", "/api/v1/workflows"],
        "runs list": ["/api/v1/workflows", "/api/v1/runs?limit=50"],
        "runs list, filtered": [
            "/api/v1/workflows",
            "/api/v1/runs?limit=50&workflow=daily_sales&status=succeeded&trigger=api",
        ],
        "run page": [
            f"/api/v1/runs/{run_id}",
            "/api/v1/workflows/daily_sales",
            f"/api/v1/runs/{run_id}/events?limit=1000",
            f"/api/v1/runs/{run_id}/attempts",
        ],
        "run page, time travel": [f"/api/v1/runs/{run_id}?at_seq=12"],
        "grid": ["/api/v1/workflows/daily_sales", "/api/v1/workflows/daily_sales/grid?limit=25"],
    }


async def time_pages(url: str, token: str, run_id: str) -> dict[str, dict[str, list[float]]]:
    """Milliseconds of each call of each page, REPEAT times (after one warm-up)."""
    out: dict[str, dict[str, list[float]]] = {}
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
        for page, calls in pages(run_id).items():
            out[page] = {c: [] for c in calls}
            for i in range(REPEAT + 1):
                for c in calls:
                    t0 = time.perf_counter()
                    async with http.get(url + c) as response:
                        await response.read()
                        assert response.status == 200, (c, response.status)
                    if i:
                        out[page][c].append((time.perf_counter() - t0) * 1000)
    return out


async def first_run(url: str, token: str) -> str:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
        async with http.post(
            f"{url}/api/v1/workflows/daily_sales/runs", json={"params": {"date": "2026-11-20"}}
        ) as response:
            run_id = str((await response.json())["run_id"])
        async with http.get(f"{url}/api/v1/runs/{run_id}/wait?timeout=120") as response:
            status = (await response.json())["status"]
    assert status == "succeeded", status
    return run_id


async def fill(db_url: str, template: str, n: int) -> None:
    """``n`` copies of the template run's history, one created every 30 s back in time."""
    store = await connect(db_url)
    try:
        records = await store.read_stream(run_stream(template))
        with Progress(console=err, transient=True) as bar:
            task = bar.add_task(f"importing {n:,} runs", total=n)
            sem = asyncio.Semaphore(8)

            async def one(i: int) -> None:
                run_id = f"bulk-{i:07d}"
                shift = timedelta(seconds=30 * (i + 1))
                copies = []
                for r in records:
                    event = r.event
                    if isinstance(event, RunCreated):
                        event = msgspec.structs.replace(event, run_id=run_id, idempotency_key=None)
                    copies.append(
                        msgspec.structs.replace(
                            r, stream_id=run_stream(run_id), event=event,
                            recorded_at=r.recorded_at - shift,
                        )
                    )  # fmt: skip
                async with sem:
                    await store.import_stream(run_stream(run_id), copies)
                bar.advance(task)

            for start in range(0, n, 1000):
                await asyncio.gather(*(one(i) for i in range(start, min(n, start + 1000))))
    finally:
        await store.close()


async def sizes(db_url: str) -> list[tuple[str, str]]:
    conn = await asyncpg.connect(db_url)
    try:
        rows = await conn.fetch(
            "SELECT relname, pg_size_pretty(pg_total_relation_size(c.oid)) AS size "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'durable' AND c.relkind = 'r' "
            "ORDER BY pg_total_relation_size(c.oid) DESC LIMIT 4"
        )
        return [(r["relname"], r["size"]) for r in rows]
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smoke size: 5,000 runs")
    parser.add_argument("--runs", type=int, default=100_000)
    args = parser.parse_args()
    n = 5_000 if args.quick else args.runs
    with tempfile.TemporaryDirectory(prefix="durable-bench-") as tmp:
        server = start_server(Path(tmp) / "data")
        service = None
        try:
            asyncio.run(make_databases(server.get_uri(), ["console_bench"]))
            db_url = server.get_uri("console_bench")
            os.environ.pop("DURABLE_WORKFLOWS", None)
            service = start_service(db_url, ROOT / "examples" / "daily_sales.py")
            template = asyncio.run(first_run(service.url, service.token))
            err.print("timing the pages with one run…")
            empty = asyncio.run(time_pages(service.url, service.token, template))
            asyncio.run(fill(db_url, template, n))
            err.print(f"timing the pages with {n + 1:,} runs…")
            full = asyncio.run(time_pages(service.url, service.token, f"bulk-{n // 2:07d}"))
            table_sizes = asyncio.run(sizes(db_url))
        finally:
            if service is not None:
                service.stop()
            server.cleanup()
    out = Console(width=160)
    out.print(
        f"Console pages: API answer time on loopback, `durable up` process, {n + 1:,} finished "
        f"runs (~{n * 35 / 1e6:.1f}M events), {REPEAT} loads each; reference: the same pages "
        "with 1 run"
    )
    out.print(f"  {'page':<24}{'p50 ms':>9}{'p99 ms':>9}{'1 run p50':>11}{'ratio':>8}   calls")
    for page, calls in full.items():
        per_load = [sum(v[i] for v in calls.values()) for i in range(REPEAT)]
        reference = [sum(v[i] for v in empty[page].values()) for i in range(REPEAT)]
        p50 = statistics.median(per_load)
        ref = statistics.median(reference)
        out.print(
            f"  {page:<24}{p50:>9.1f}{percentile(per_load, 0.99):>9.1f}{ref:>11.1f}"
            f"{p50 / ref:>8.2f}   {len(calls)} (target < 300 ms)"
        )
    out.print("  largest tables: " + ", ".join(f"{t} {s}" for t, s in table_sizes))


if __name__ == "__main__":
    sys.exit(main())

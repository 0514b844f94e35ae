"""Benchmark: archiving finished runs out of PostgreSQL, reading them back, restoring.

    python -m tests.bench.bench_archive            # 10,000 runs
    python -m tests.bench.bench_archive --quick    # 1,000 runs
    python -m tests.bench.bench_archive --s3       # also to moto's S3 server (slow: Python)

N finished runs (15-23 events each, three task log lines on every other run) in a fresh
database of the embedded PostgreSQL (fsync on), archived to a local directory by
``archive_runs`` as ``durable archive`` does. Reported: runs and events archived per
second; the size the runs took in PostgreSQL (events and task_logs, rows and indexes,
``pg_total_relation_size`` before, then after a VACUUM) against the size of their
archive files; how long reading one run's history takes from PostgreSQL, from its
archive file (first read, checked against its checksum) and from the reader's cache;
runs restored per second.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from rich.console import Console

from durable.application.archive import ArchiveReader, archive_runs, restore_run, run_history
from durable.core.events import run_stream
from durable.store import connect
from durable.store.objects import open_objects
from tests.bench.bench_core import start_server
from tests.test_archive import add_runs

err = Console(stderr=True)
_SIZE = (
    "SELECT pg_total_relation_size('durable.events') + pg_total_relation_size('durable.task_logs')"
)


async def _size(url: str, vacuum: bool = False) -> int:
    conn = await asyncpg.connect(url)
    try:
        if vacuum:
            await conn.execute("VACUUM durable.events, durable.task_logs")
        return int(await conn.fetchval(_SIZE))
    finally:
        await conn.close()


async def bench(url: str, runs: int, to: str) -> dict[str, Any]:
    store = await connect(url, max_size=4)  # as the CLI opens it
    try:
        ids = [f"bench-{n:06d}" for n in range(runs)]
        err.print(f"creating {runs} finished runs…")
        for start in range(0, runs, 2000):
            await add_runs(store, ids[start : start + 2000])
        events = await store.last_position()
        size_before = await _size(url, vacuum=True)
        sample = ids[:: max(1, runs // 50)][:50]
        t0 = time.perf_counter()
        for i in sample:
            await store.read_stream(run_stream(i))
        from_pg = (time.perf_counter() - t0) / len(sample)

        err.print(f"archiving to {to}…")
        async with open_objects(to) as objects:
            t0 = time.perf_counter()
            report = await archive_runs(store, objects, datetime.now(UTC))
            took = time.perf_counter() - t0
        assert report.archived == runs, report
        size_after = await _size(url, vacuum=True)

        reader = ArchiveReader()
        await run_history(store, ids[-1], reader)  # an S3 client is opened once
        t0 = time.perf_counter()
        for i in sample:
            await run_history(store, i, reader)
        first = (time.perf_counter() - t0) / len(sample)
        t0 = time.perf_counter()
        for i in sample:
            await run_history(store, i, reader)
        cached = (time.perf_counter() - t0) / len(sample)

        await reader.close()
        async with ArchiveReader() as fresh:
            t0 = time.perf_counter()
            for i in sample:
                await restore_run(store, i, fresh)
            restore = len(sample) / (time.perf_counter() - t0)
        return {
            "runs": runs,
            "events": events,
            "runs/s": runs / took,
            "events/s": events / took,
            "pg bytes": size_before,
            "pg bytes after": size_after,
            "archive bytes": report.bytes,
            "read pg ms": from_pg * 1000,
            "read archive ms": first * 1000,
            "read cached ms": cached * 1000,
            "restores/s": restore,
        }
    finally:
        await store.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--quick", action="store_true", help="1,000 runs")
    parser.add_argument("--s3", action="store_true", help="also archive to moto's S3 server")
    args = parser.parse_args(argv)
    runs = 1000 if args.quick else args.runs
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(Path(tmp) / "pg")
        targets = {"directory": str(Path(tmp) / "archive")}
        moto = None
        if args.s3:
            moto = _moto(targets)
        results = {}
        for n, (name, to) in enumerate(targets.items()):
            db = f"bench_archive_{n}"
            asyncio.run(_create(server.get_uri(), db))
            results[name] = asyncio.run(bench(server.get_uri(db), runs, to))
        if moto is not None:
            moto.stop()
    out = Console(width=140)
    for name, r in results.items():
        out.print(
            f"[bold]archive to a {name}[/]: {r['runs']} runs ({r['events']} events) at "
            f"{r['runs/s']:.0f} runs/s ({r['events/s']:.0f} events/s)"
        )
        out.print(
            f"  size: {r['pg bytes'] / 1e6:.1f} MB in PostgreSQL (events + task logs, with "
            f"indexes) → {r['archive bytes'] / 1e6:.2f} MB of archive files "
            f"({r['pg bytes'] / r['archive bytes']:.0f}x smaller); after a VACUUM the tables "
            f"hold {r['pg bytes after'] / 1e6:.1f} MB (free space kept for reuse)"
        )
        out.print(
            f"  one run's history: {r['read pg ms']:.2f} ms from PostgreSQL, "
            f"{r['read archive ms']:.2f} ms from its archive (checked), "
            f"{r['read cached ms']:.3f} ms cached ({r['read archive ms'] / r['read pg ms']:.1f}x "
            f"PostgreSQL's time); restore: {r['restores/s']:.0f} runs/s"
        )


async def _create(url: str, name: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f"CREATE DATABASE {name}")
    finally:
        await conn.close()


def _moto(targets: dict[str, str]) -> Any:
    import os
    import socket

    import boto3
    from moto.server import ThreadedMotoServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", DURABLE_S3_ENDPOINT=endpoint
    )
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="bench")
    targets["S3 bucket (moto)"] = "s3://bench/archive"
    return server


if __name__ == "__main__":
    main(sys.argv[1:])

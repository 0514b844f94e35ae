"""Benchmark of the event-sourced core: appends, group commit, replay.

    python -m tests.bench.bench_core            # the figures for the issue note (~1 min)
    python -m tests.bench.bench_core --quick    # smoke size, as CI runs it

Starts its own real PostgreSQL (pgserver; fsync and synchronous_commit on) and runs
pgbench against that same server as the physical reference: one-row INSERT
transactions from 1 and from 64 clients. durable's figures are printed beside it as
ratios, because these machines are shared and noisy: absolute numbers move, ratios
less so.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from durable.core.events import Event, TaskSucceeded, run_stream
from durable.core.fold import fold
from durable.store import PostgresEventStore, connect
from tests.histories import created, recorded, succeeded_run

err = Console(stderr=True)
TEN_TASKS = [f"task_{i}" for i in range(10)]

PGBENCH_SETUP = """
DROP TABLE IF EXISTS ref_events;
CREATE TABLE ref_events (
    position bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stream_id text NOT NULL,
    seq integer NOT NULL,
    data jsonb NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
"""
PGBENCH_SCRIPT = (
    "INSERT INTO ref_events (stream_id, seq, data) VALUES "
    '(\'run:\' || :client_id, 1, \'{"type":"task_succeeded","task":"load",'
    '"generation":1,"attempt":1,"output":{"rows":17818}}\');\n'
)


def progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    )


def start_server(datadir: Path) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.getLogger("pgserver").setLevel(logging.WARNING)
        import pgserver

        return pgserver.get_server(datadir, cleanup_mode="delete")


def pgbench(url: str, clients: int, seconds: int) -> float:
    """Transactions per second of one-row INSERTs, from pgbench on the same server."""
    from pgserver._commands import POSTGRES_BIN_PATH

    parsed = urlparse(url)
    host = parse_qs(parsed.query)["host"][0]
    db = parsed.path.lstrip("/") or "postgres"
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        f.write(PGBENCH_SCRIPT)
        script = f.name
    threads = min(clients, 2)
    out = subprocess.run(
        [
            str(POSTGRES_BIN_PATH / "pgbench"),
            "-n",
            "-h",
            host,
            "-U",
            "postgres",
            "-f",
            script,
            "-c",
            str(clients),
            "-j",
            str(threads),
            "-T",
            str(seconds),
            db,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    match = re.search(r"tps = ([\d.]+)", out)
    if match is None:
        raise RuntimeError(f"pgbench printed no tps:\n{out}")
    return float(match.group(1))


async def bench_appends(
    store: PostgresEventStore, writers: int, seconds: float, prefix: str = "w"
) -> dict[str, float]:
    """``writers`` concurrent writers, each appending one event per call to its own stream."""
    prefix = f"{prefix}{writers}-"
    for w in range(writers):
        await store.append(run_stream(f"{prefix}{w}"), 0, [created(f"{prefix}{w}")])
    latencies: list[float] = []
    stop = time.perf_counter() + seconds
    event: Event = TaskSucceeded(task="load", generation=1, attempt=1, output={"rows": 17818})

    async def writer(w: int) -> int:
        seq = 1
        stream = run_stream(f"{prefix}{w}")
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            await store.append(stream, seq, [event])
            latencies.append(time.perf_counter() - t0)
            seq += 1
        return seq - 1

    t0 = time.perf_counter()
    counts = await asyncio.gather(*(writer(w) for w in range(writers)))
    elapsed = time.perf_counter() - t0
    q = statistics.quantiles(latencies, n=100)
    return {"events_per_s": sum(counts) / elapsed, "p50_ms": q[49] * 1e3, "p99_ms": q[98] * 1e3}


def bench_fold_memory(runs: int) -> float:
    histories = [recorded(f"m{i}", succeeded_run(f"m{i}", TEN_TASKS)) for i in range(runs)]
    events = sum(len(h) for h in histories)
    best = 0.0
    for _ in range(3):
        t0 = time.perf_counter()
        for h in histories:
            fold(h)
        best = max(best, events / (time.perf_counter() - t0))
    return best


async def load_runs(store: PostgresEventStore, runs: int) -> int:
    total = 0
    with progress() as bar:
        task = bar.add_task("writing runs to replay", total=runs)
        for start in range(0, runs, 200):
            batch = range(start, min(start + 200, runs))
            results = await asyncio.gather(
                *(
                    store.append(run_stream(f"p{i}"), 0, succeeded_run(f"p{i}", TEN_TASKS))
                    for i in batch
                )
            )
            total += sum(len(r) for r in results)
            bar.advance(task, len(batch))
    return total


async def bench_replay_per_run(store: PostgresEventStore, runs: int) -> float:
    """An operator replaying runs one by one: read_stream + decode + fold each."""
    t0 = time.perf_counter()
    events = 0
    for i in range(runs):
        records = await store.read_stream(run_stream(f"p{i}"))
        state = fold(records)
        if state is None or state.status != "succeeded":
            raise RuntimeError(f"run p{i} did not replay to succeeded")
        events += len(records)
    return events / (time.perf_counter() - t0)


async def bench_replay_batched(store: PostgresEventStore, runs: int, per_read: int = 100) -> float:
    """An executor recovering claimed runs: read_streams of 100 runs per query, fold each."""
    t0 = time.perf_counter()
    events = 0
    for start in range(0, runs, per_read):
        ids = [run_stream(f"p{i}") for i in range(start, min(start + per_read, runs))]
        for records in (await store.read_streams(ids)).values():
            state = fold(records)
            if state is None or state.status != "succeeded":
                raise RuntimeError("a run did not replay to succeeded")
            events += len(records)
    return events / (time.perf_counter() - t0)


async def bench_replay_log(store: PostgresEventStore) -> float:
    """A projection rebuilding everything: read_all in pages, fold per stream."""
    t0 = time.perf_counter()
    states: dict[str, Any] = {}
    position = 0
    events = 0
    while True:
        page = await store.read_all(position, 10_000)
        if not page:
            break
        for r in page:
            states[r.stream_id] = fold([r], states.get(r.stream_id))
        events += len(page)
        position = page[-1].position
    return events / (time.perf_counter() - t0)


async def run(args: argparse.Namespace) -> None:
    seconds = 2 if args.quick else 5
    replay_runs = 300 if args.quick else 3000
    with tempfile.TemporaryDirectory(prefix="durable-bench-") as tmp:
        server = start_server(Path(tmp) / "data")
        url = server.get_uri()
        try:
            import asyncpg

            conn = await asyncpg.connect(url)
            settings = {
                k: await conn.fetchval(f"SHOW {k}") for k in ("fsync", "synchronous_commit")
            }
            await conn.execute(PGBENCH_SETUP)
            await conn.close()
            err.print(f"PostgreSQL {url} {settings}; pgbench reference…")
            ref1 = pgbench(url, 1, seconds)
            ref64 = pgbench(url, 64, seconds)

            store = await connect(url)
            err.print("durable appends…")
            one = await bench_appends(store, 1, seconds)
            many = await bench_appends(store, args.writers, seconds)
            await store.close()
            err.print("replay…")
            mem = bench_fold_memory(300 if args.quick else 3000)
            # the append phase wrote streams that are not run histories: replay elsewhere
            conn = await asyncpg.connect(url)
            await conn.execute("CREATE DATABASE replay")
            await conn.close()
            store = await connect(server.get_uri("replay"))
            await load_runs(store, replay_runs)
            per_run = await bench_replay_per_run(store, replay_runs)
            batched = await bench_replay_batched(store, replay_runs)
            log = await bench_replay_log(store)
            await store.close()
        finally:
            server.cleanup()

    w = args.writers
    rows = [
        ("pgbench, 1 client, 1-row INSERT tx", f"{ref1:,.0f} tx/s", "reference", ""),
        ("pgbench, 64 clients, 1-row INSERT tx", f"{ref64:,.0f} tx/s", "reference", ""),
        (
            "append, 1 writer, 1 event/append",
            f"{one['events_per_s']:,.0f} ev/s",
            f"{one['events_per_s'] / ref1:.2f}x pgbench -c1",
            f"p50 {one['p50_ms']:.2f} ms, p99 {one['p99_ms']:.2f} ms",
        ),
        (
            f"append, {w} writers, group commit",
            f"{many['events_per_s']:,.0f} ev/s",
            f"{many['events_per_s'] / ref64:.2f}x pgbench -c64",
            f"p50 {many['p50_ms']:.2f} ms, p99 {many['p99_ms']:.2f} ms; target >= 30,000",
        ),
        ("replay from memory (fold)", f"{mem:,.0f} ev/s", "", "target >= 500,000"),
        (
            "replay from PostgreSQL, run by run",
            f"{per_run:,.0f} ev/s",
            "",
            "read_stream + decode + fold; target >= 150,000",
        ),
        (
            "replay from PostgreSQL, 100 runs/read",
            f"{batched:,.0f} ev/s",
            "",
            "read_streams + decode + fold (executor recovery); target >= 150,000",
        ),
        ("replay from PostgreSQL, whole log", f"{log:,.0f} ev/s", "", "read_all pages + fold"),
    ]
    out = Console(width=160)
    out.print(
        f"durable core benchmark ({'quick' if args.quick else 'full'}; "
        f"{seconds} s per append phase, {replay_runs} runs of 10 tasks replayed)"
    )
    for name, value, ratio, note in rows:
        out.print(f"  {name:<40} {value:>16}  {ratio:<22} {note}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes (CI smoke run)")
    parser.add_argument("--writers", type=int, default=64)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())

"""The log's life cycle: finished runs archived out of PostgreSQL into compressed export
files (a directory, and a real S3 endpoint), read back wherever a run is read, refused
any change, restored as they were; a real `durable archive` killed with SIGKILL midway
loses and doubles nothing; `durable up` archives on a schedule."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
from click.testing import CliRunner

from durable.api import create_app
from durable.application.archive import (
    ArchiveReader,
    archive_key,
    archive_runs,
    restore_run,
    run_history,
)
from durable.application.tokens import create_token
from durable.cli import main
from durable.core.errors import ConcurrencyConflict, RunArchived
from durable.core.events import (
    NotificationRequested,
    NotificationSent,
    NotifyRule,
    RunStarted,
    TaskScheduled,
    run_stream,
)
from durable.core.fold import fold
from durable.runtime.archive import ArchiveService
from durable.store import EventStore, MemoryEventStore, PostgresEventStore, RunFilter, connect
from durable.store.objects import open_objects
from durable.store.rows import NewArchive
from tests.conftest import run_sync
from tests.executing import registry_of
from tests.histories import created, failed_run, succeeded_run
from tests.processes import free_port, start_service
from tests.signs import eventually

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "daily_sales_history.jsonl"
EXAMPLE_RUN = "01JDSALES20261121"  # failed, then a rerun of report as generation 2
OTHER_EXAMPLE = "01JDSALES20261120"  # the file holds the day before too
T = TypeVar("T")
AT = datetime(2026, 11, 21, 2, 0, tzinfo=UTC)


async def add_runs(store: EventStore, ids: list[str], *, logs: bool = True) -> None:
    """Finished runs (every third failed), with task log lines on every other one."""
    await asyncio.gather(
        *(
            store.append(run_stream(i), 0, failed_run(i) if n % 3 == 2 else succeeded_run(i))
            for n, i in enumerate(ids)
        )
    )
    if logs:
        for n, i in enumerate(ids):
            if n % 2 == 0:
                lines = [(AT, "stdout", f"{i} line {k}") for k in range(3)]
                await store.logs.write(i, "fetch", 1, 1, lines)
                await store.logs.write(i, "load", 1, 1, [(AT, "stderr", "warning: slow")])


def with_store(url: str, work: Callable[[PostgresEventStore], Awaitable[T]]) -> T:
    """Run ``work`` with a store of its own (sync tests: the CLI runs its own loop)."""

    async def go() -> T:
        store = await connect(url)
        try:
            return await work(store)
        finally:
            await store.close()

    return run_sync(go())


# -- the store's contract (PostgreSQL and in memory) ---------------------------------------


class ArchivesContract:
    """What every store's ``archives`` does; subclassed with a ``store`` fixture."""

    async def archive(self, store: Any, run_id: str, *, logs: int = 0) -> Any:
        row = await store.get_run(run_id)
        lines = (await store.archives.task_logs([run_id])).get(run_id, [])
        [tomb] = await store.archives.record(
            [
                NewArchive(
                    run_id=run_id,
                    workflow=row.workflow,
                    status=row.status,
                    created_at=row.created_at,
                    finished_at=row.finished_at,
                    uri=f"/archive/{run_id}.jsonl.gz",
                    events=row.last_seq,
                    sha256="ab" * 32,
                    bytes=123,
                    logs_uri="/archive/logs" if lines else None,
                    log_lines=len(lines) if logs == 0 else logs,
                    last_log_id=lines[-1].id if lines else 0,
                )
            ]
        )
        return tomb

    async def test_record_moves_events_and_logs_out_and_keeps_the_row(self, store: Any) -> None:
        await add_runs(store, ["r1", "r2"])
        before = await store.read_stream(run_stream("r1"))
        row = await store.get_run("r1")
        tomb = await self.archive(store, "r1")
        assert tomb is not None and tomb.events == len(before) and tomb.restored_at is None
        assert tomb.log_lines == 4 and tomb.logs_uri == "/archive/logs"
        assert await store.read_stream(run_stream("r1")) == []
        assert await store.logs.read("r1") == []
        assert await store.get_run("r1") == row  # the read model keeps it, unchanged
        assert [r.run_id for r in await store.list_runs()] == ["r2", "r1"]
        assert await store.archives.get("r1") == tomb
        assert set(await store.archives.of(["r1", "r2", "nope"])) == {"r1"}
        assert len(await store.read_stream(run_stream("r2"))) > 0  # the other is intact
        # its stream is closed: an append decided before it was archived is refused
        with pytest.raises(RunArchived, match=r"run r1 is archived at /archive/r1\.jsonl\.gz"):
            await store.append(
                run_stream("r1"),
                len(before),
                [TaskScheduled(task="fetch", generation=2, attempt=1)],
            )
        with pytest.raises(ConcurrencyConflict):  # and the run cannot be created again
            await store.append(run_stream("r1"), 0, [created("r1")])
        # its row outlives a rebuild of the read model (its events are in its archive)
        assert await store.rebuild_runs() == 1
        assert await store.get_run("r1") == row

    async def test_only_finished_runs_as_they_were_read_are_archived(self, store: Any) -> None:
        await add_runs(store, ["done"])
        await store.append(run_stream("going"), 0, [created("going"), RunStarted(executor="e")])
        cutoff = datetime.now(UTC) + timedelta(seconds=1)
        assert [r.run_id for r in await store.archives.archivable(cutoff)] == ["done"]
        assert await store.archives.count_archivable(cutoff) == 1
        assert await store.archives.archivable(datetime.now(UTC) - timedelta(hours=1)) == []
        assert await self.archive(store, "going") is None  # not finished
        assert await self.archive(store, "done", logs=5) is None  # its lines changed since
        assert len(await store.read_stream(run_stream("done"))) > 0
        leases = store.leases("executor-1", ttl=60)
        assert await self.archive(store, "done") is not None
        assert await self.archive(store, "done") is None  # already archived
        assert await store.archives.archivable(cutoff) == []
        assert await leases.claim(["daily_sales@v1"], 10) == ["going"]

    async def test_a_batch_archives_the_runs_that_still_qualify(self, store: Any) -> None:
        await add_runs(store, ["a", "b", "c"])
        wanted = {}
        for run_id in ("a", "b", "c"):
            row = await store.get_run(run_id)
            lines = (await store.archives.task_logs([run_id])).get(run_id, [])
            wanted[run_id] = NewArchive(
                run_id=run_id,
                workflow=row.workflow,
                status=row.status,
                created_at=row.created_at,
                finished_at=row.finished_at,
                uri=f"/archive/{run_id}",
                events=row.last_seq,
                sha256="cd" * 32,
                bytes=1,
                log_lines=len(lines),
                last_log_id=lines[-1].id if lines else 0,
            )
        # b moved on after its files were written: it stays, the others go
        seq = (await store.get_run("b")).last_seq
        await store.append(run_stream("b"), seq, [TaskScheduled(task="x", generation=2, attempt=1)])
        tombs = await store.archives.record([wanted["c"], wanted["b"], wanted["a"]])
        assert [t.run_id if t else None for t in tombs] == ["c", None, "a"]
        assert len(await store.read_stream(run_stream("b"))) == seq + 1
        assert await store.read_stream(run_stream("a")) == []
        assert set(await store.archives.of(["a", "b", "c"])) == {"a", "c"}

    async def test_restore_puts_everything_back_as_it_was(self, store: Any) -> None:
        await add_runs(store, ["r1", "r2"])
        records = await store.read_stream(run_stream("r1"))
        logs = (await store.archives.task_logs(["r1"]))["r1"]
        reader_at = await store.last_position()  # a log reader that read everything
        tomb = await self.archive(store, "r1")
        await store.append(run_stream("r3"), 0, succeeded_run("r3"))
        after = await store.read_all(reader_at)
        assert after and min(r.position for r in after) > max(r.position for r in records)
        assert await store.archives.restore(tomb, records, logs) is True
        assert await store.read_stream(run_stream("r1")) == records  # seqs, positions, times
        assert (await store.archives.task_logs(["r1"]))["r1"] == logs  # ids, line numbers
        assert await store.archives.get("r1") is None
        # the reader that had gone past them is not handed them again
        assert [r.stream_id for r in await store.read_all(reader_at)] == [run_stream("r3")] * len(
            after
        )
        assert await store.archives.restore(tomb, records, logs) is False  # done already
        await store.append(
            run_stream("r1"), len(records), [TaskScheduled(task="fetch", generation=2, attempt=1)]
        )
        # restored within the retention window: left alone by the next passes
        cutoff = datetime.now(UTC) - timedelta(hours=1)
        assert "r1" not in [r.run_id for r in await store.archives.archivable(cutoff)]


class TestMemoryArchives(ArchivesContract):
    @pytest.fixture
    def store(self) -> MemoryEventStore:
        return MemoryEventStore()


class TestPostgresArchives(ArchivesContract):
    @pytest.fixture
    def store(self, pg_store: PostgresEventStore) -> PostgresEventStore:
        return pg_store


# -- round trips through the CLI ------------------------------------------------------------


@pytest.fixture
def cli(database_url: str) -> Callable[..., Any]:
    runner = CliRunner()

    def invoke(*args: str) -> Any:
        return runner.invoke(main, ["--database-url", database_url, *args])

    assert invoke("import", str(EXAMPLE)).exit_code == 0
    return invoke


def _views(cli: Callable[..., Any], run_id: str) -> dict[str, str]:
    """Everything the CLI shows of a run, as it prints it on stdout."""
    views = {
        "history": cli("history", run_id, "--json"),
        "export": cli("export", run_id),
        "replay": cli("replay", run_id, "--json"),
        "at": cli("replay", run_id, "--at", "14", "--json"),
        "table": cli("history", run_id),
        "logs": cli("logs", run_id),
        "load logs": cli("logs", run_id, "load", "--attempt", "1"),
        "follow": cli("logs", run_id, "--follow"),
        "trace": cli("trace", run_id, "--json"),
    }
    for name, result in views.items():
        assert result.exit_code == 0, (name, result.output)
    return {name: result.stdout for name, result in views.items()}


def test_round_trip_through_a_directory(cli: Any, database_url: str, tmp_path: Path) -> None:
    ids = [f"run-{n}" for n in range(6)]
    with_store(database_url, lambda store: add_runs(store, ids))
    before = {i: _views(cli, i) for i in [EXAMPLE_RUN, *ids]}
    assert "line 2" in before["run-0"]["logs"] and "warning: slow" in before["run-0"]["follow"]

    done = cli("archive", "--older-than", "0s", "--to", str(tmp_path / "archive"))
    assert done.exit_code == 0, done.output
    assert "archived 8 runs" in done.stdout and "runs/s" in done.stdout

    for run_id, views in before.items():
        assert _views(cli, run_id) == views, run_id  # read back from the archive, identical
        verify = cli("replay", run_id, "--verify")
        assert verify.exit_code == 0 and "verified" in verify.stdout, verify.output
        assert f"run {run_id} is archived at {tmp_path / 'archive'}" in verify.stderr
    listed = cli("runs")
    assert listed.stdout.count("(archived)") == 8
    assert json.loads(cli("runs", "--json").stdout.splitlines()[0])["archived"]["uri"]

    # the files: one export per run (and one of log lines per run that had any)
    files = sorted(p.relative_to(tmp_path / "archive") for p in (tmp_path / "archive").rglob("*"))
    events = [f for f in files if f.name.endswith(".jsonl.gz") and ".logs." not in f.name]
    assert len(events) == 8 and len([f for f in files if ".logs." in f.name]) == 3
    assert all(str(f).startswith("daily_sales/") for f in events)
    one = next(f for f in events if f.name.startswith(EXAMPLE_RUN))
    path = tmp_path / "archive" / one
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert str(one) == archive_key("daily_sales", EXAMPLE_RUN, digest)  # named by its content
    assert gzip.decompress(path.read_bytes()).decode() == before[EXAMPLE_RUN]["export"]
    replayed = cli("replay", "--file", str(path), "--json")  # an archive file is an export
    assert replayed.stdout == before[EXAMPLE_RUN]["replay"]

    again = cli("archive", "--older-than", "0s", "--to", str(tmp_path / "archive"))
    assert "archived 0 runs" in again.stdout  # nothing twice
    assert sorted(p.name for p in (tmp_path / "archive").rglob("*")) == sorted(
        p.name for p in files
    )
    # the read model still rebuilds (archived rows are kept as they are)
    assert cli("rebuild").exit_code == 0
    assert cli("replay", EXAMPLE_RUN, "--verify").exit_code == 0

    restored = cli("restore", EXAMPLE_RUN)
    assert restored.exit_code == 0, restored.output
    assert f"restored run {EXAMPLE_RUN}: 26 events back in PostgreSQL" in restored.stdout
    assert cli("restore", "run-0").exit_code == 0
    for run_id in (EXAMPLE_RUN, "run-0"):
        views = _views(cli, run_id)
        assert views == before[run_id]  # export identical: seqs, positions, commit times
        assert "archived" not in cli("history", run_id).stderr
    assert cli("replay", "run-0", "--verify").exit_code == 0
    again = cli("restore", "run-0")
    assert again.exit_code == 2 and "run run-0 is not archived" in again.stderr
    assert cli("runs").stdout.count("(archived)") == 6


def test_a_change_to_an_archived_run_is_refused_clearly(
    cli: Any, database_url: str, tmp_path: Path
) -> None:
    assert cli("archive", "--older-than", "0s", "--to", str(tmp_path)).exit_code == 0
    for args in (("rerun", EXAMPLE_RUN, "report"), ("cancel", EXAMPLE_RUN)):
        refused = cli(*args)
        assert refused.exit_code == 2, refused.output
        assert f"error: run {EXAMPLE_RUN} is archived at {tmp_path}/daily_sales/" in refused.stderr
        assert f"`durable restore {EXAMPLE_RUN}` brings it back" in refused.stderr
    assert cli("restore", EXAMPLE_RUN).exit_code == 0
    rerun = cli("rerun", EXAMPLE_RUN, "report", "--request-id", "after-restore")
    assert rerun.exit_code == 0 and "rerun requested" in rerun.stdout, rerun.output


def test_runs_that_may_still_change_stay(cli: Any, database_url: str, tmp_path: Path) -> None:
    async def setup(store: PostgresEventStore) -> None:
        await add_runs(store, ["old", "noisy", "told"], logs=False)
        await store.append(run_stream("going"), 0, [created("going"), RunStarted(executor="e")])
        rule = NotifyRule(channel="webhook", target="http://127.0.0.1:1/hook")
        for run_id in ("noisy", "told"):
            note = NotificationRequested(
                notification_id=f"run:{run_id}:15:w0", on="run_failed", rule="w0", channel=rule
            )
            seq = (await store.get_run(run_id)).last_seq  # type: ignore[union-attr]
            await store.append(run_stream(run_id), seq, [note])
        await store.append(
            run_stream("told"), seq + 1, [NotificationSent(notification_id="run:told:15:w0")]
        )

    with_store(database_url, setup)
    # the examples ended on 2026-11-21 and 22, the others now
    assert "archived 0 runs" in cli("archive", "--older-than", "7d", "--to", str(tmp_path)).stdout
    assert "archived 2 runs" in cli("archive", "--older-than", "1h", "--to", str(tmp_path)).stdout
    dry = cli("archive", "--older-than", "0s", "--dry-run")
    assert dry.exit_code == 0 and "would archive 3 runs" in dry.stdout
    done = cli("archive", "--older-than", "0s", "--to", str(tmp_path))
    assert "archived 2 runs" in done.stdout, done.output  # old and told
    assert "kept in PostgreSQL: 1 a notification is not sent yet" in done.stdout
    listed = cli("runs").stdout
    assert [line.split()[0] for line in listed.splitlines() if "(archived)" in line] == sorted(
        [EXAMPLE_RUN, OTHER_EXAMPLE, "old", "told"], key=lambda i: listed.index(i)
    )


def test_bad_input_is_one_clear_line(cli: Any, tmp_path: Path) -> None:
    bad = cli("archive", "--older-than", "30x", "--to", str(tmp_path))
    assert bad.exit_code == 2 and "'30x' is not an age; use a number and a unit" in bad.stderr
    nowhere = cli("archive", "--older-than", "30d")
    assert nowhere.exit_code == 2 and "give --to DIR or --to s3://BUCKET/PREFIX" in nowhere.stderr
    assert "no run 'nope'" in cli("restore", "nope").stderr
    half = cli("up", "--archive-older-than", "30d")
    assert half.exit_code == 2 and "--archive-older-than needs --archive-to" in half.stderr
    odd = cli("up", "--archive-older-than", "a month", "--archive-to", str(tmp_path))
    assert odd.exit_code == 2 and "'a month' is not an age" in odd.stderr
    (tmp_path / "file").write_text("")
    blocked = cli("archive", "--older-than", "0s", "--to", str(tmp_path / "file"))
    assert blocked.exit_code == 2 and "Traceback" not in blocked.output
    assert f"cannot write {tmp_path / 'file'}/daily_sales/" in blocked.stderr
    assert cli("history", EXAMPLE_RUN).exit_code == 0  # nothing was archived


def test_a_missing_or_damaged_archive_file_is_said(
    cli: Any, database_url: str, tmp_path: Path
) -> None:
    assert cli("archive", "--older-than", "0s", "--to", str(tmp_path)).exit_code == 0
    [path] = [p for p in tmp_path.rglob(f"{EXAMPLE_RUN}.*.jsonl.gz")]
    data = path.read_bytes()
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    damaged = cli("history", EXAMPLE_RUN)
    assert damaged.exit_code == 2
    assert f"the archive file {path} does not match its checksum" in damaged.stderr
    path.unlink()
    missing = cli("replay", EXAMPLE_RUN)
    assert missing.exit_code == 2 and f"the archive file {path} is missing" in missing.stderr
    path.write_bytes(data)
    assert cli("replay", EXAMPLE_RUN, "--verify").exit_code == 0


# -- the API -------------------------------------------------------------------------------


async def _api(store: PostgresEventStore) -> tuple[Any, str, dict[str, str]]:
    _, token = await create_token(store.tokens, "admin", ["admin"])
    app = create_app(store, registry_of())
    from aiohttp import web

    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}/api/v1", {"Authorization": f"Bearer {token}"}


async def test_the_api_reads_an_archived_run_and_says_so(
    pg_store: PostgresEventStore, tmp_path: Path
) -> None:
    await add_runs(pg_store, ["a1", "a2"])
    runner, url, auth = await _api(pg_store)
    paths = [
        "/runs/a1",
        "/runs/a1?at_seq=5",
        "/runs/a1/events?limit=7",
        "/runs/a1/events?after=7",
        "/runs/a1/attempts",
        "/runs/a1/logs",
        "/runs/a1/logs?task=load",
        "/runs/a1/wait?timeout=0",
    ]
    streams = ["/runs/a1/events/stream", "/runs/a1/logs/stream"]
    try:
        async with aiohttp.ClientSession(headers=auth) as http:

            async def get(path: str) -> Any:
                async with http.get(url + path) as response:
                    assert response.status == 200, (path, await response.text())
                    if path in streams:
                        return await response.text()
                    return await response.json()

            before = {p: await get(p) for p in [*paths, *streams]}
            async with open_objects(str(tmp_path)) as objects:
                report = await archive_runs(pg_store, objects, datetime.now(UTC))
            assert report.archived == 2
            after = {p: await get(p) for p in [*paths, *streams]}
            archived = after["/runs/a1"].pop("archived")
            assert archived["uri"].startswith(f"{tmp_path}/daily_sales/a1.")
            assert archived["events"] == 15 and archived["logs_uri"].endswith(".logs.jsonl.gz")
            for p in ("/runs/a1?at_seq=5", "/runs/a1/wait?timeout=0"):
                assert after[p].pop("archived") == archived
            for p in ("/runs/a1", "/runs/a1?at_seq=5", "/runs/a1/wait?timeout=0"):
                assert before[p].pop("archived") is None
            assert after == before  # the same answers, from the archive
            page = await get("/runs")
            assert [r["archived"] is not None for r in page["runs"]] == [True, True]

            async with http.post(url + "/runs/a1/cancel") as response:
                assert response.status == 409
                problem = await response.json(content_type=None)
                assert problem["title"] == "run archived"
                assert "`durable restore a1` brings it back" in problem["detail"]
            async with http.post(url + "/runs/a1/rerun", json={"tasks": ["load"]}) as response:
                assert response.status == 409, await response.text()
            async with http.get(url + "/runs/nope/events") as response:
                assert response.status == 404
    finally:
        await runner.cleanup()


# -- crash mid-archive ---------------------------------------------------------------------


def _archive_process(database_url: str, to: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "durable",
            "--database-url",
            database_url,
            "archive",
            "--older-than",
            "0s",
            "--to",
            str(to),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


async def _check_each_run_once(
    store: PostgresEventStore, to: Path, originals: dict[str, list[Any]]
) -> tuple[int, int]:
    """Every run intact in PostgreSQL or archived once with a readable file; never both,
    never neither. Returns (intact, archived)."""
    rows = {r.run_id: r for r in await store.list_runs(RunFilter(limit=len(originals) + 1))}
    assert set(rows) == set(originals)  # no run lost
    tombs = await store.archives.of(list(rows))
    streams = await store.read_streams([run_stream(i) for i in rows])
    reader = ArchiveReader()
    files = list(to.rglob("*.jsonl.gz"))  # noqa: ASYNC240 (a test's look at a directory)
    for run_id, row in rows.items():
        in_log = streams[run_stream(run_id)]
        if run_id in tombs:
            assert in_log == [], run_id  # not both
            assert await reader.events(tombs[run_id]) == originals[run_id]  # sha checked
            mine = [p for p in files if p.name.startswith(f"{run_id}.")]
            assert (
                len([p for p in mine if ".logs." not in p.name and not p.name.endswith(".partial")])
                == 1
            )
        else:
            assert in_log == originals[run_id], run_id  # intact
        assert row.last_seq == len(originals[run_id])
    return len(rows) - len(tombs), len(tombs)


@pytest.mark.slow
async def test_sigkill_mid_archive_loses_and_doubles_nothing(
    pg_store: PostgresEventStore, database_url: str, tmp_path: Path
) -> None:
    ids = [f"k{n:04d}" for n in range(1500)]
    await add_runs(pg_store, ids)
    originals = await pg_store.read_streams([run_stream(i) for i in ids])
    originals = {i: originals[run_stream(i)] for i in ids}
    to = tmp_path / "archive"
    process = _archive_process(database_url, to)

    async def some_archived() -> bool:
        assert process.poll() is None, process.communicate()
        return bool(await pg_store._pool.fetchval("SELECT count(*) >= 25 FROM durable.archives"))

    try:
        await eventually(some_archived, "the archive process archived some runs", timeout=60)
        process.send_signal(signal.SIGKILL)
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)  # its pipes closed
    intact, archived = await _check_each_run_once(pg_store, to, originals)
    assert archived >= 25 and intact > 0, (intact, archived)  # killed midway

    again = _archive_process(database_url, to)
    out, err = again.communicate(timeout=120)
    assert again.returncode == 0, err
    assert f"archived {intact} runs" in out, out
    assert await _check_each_run_once(pg_store, to, originals) == (0, len(ids))
    assert not list(to.rglob("*.partial"))
    events_files = [p for p in to.rglob("*.jsonl.gz") if ".logs." not in p.name]
    assert len(events_files) == len(ids)  # each archived once: no second copy of any


# -- S3 ------------------------------------------------------------------------------------


@pytest.fixture
def s3_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    # moto keeps its state process-wide, across server instances: start empty
    urllib.request.urlopen(
        urllib.request.Request(f"http://127.0.0.1:{port}/moto-api/reset", method="POST"), timeout=10
    ).close()
    endpoint = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("DURABLE_S3_ENDPOINT", endpoint)
    yield endpoint
    server.stop()


async def _bucket(endpoint: str, name: str) -> list[str]:
    from aiobotocore.session import get_session

    async with get_session().create_client(
        "s3", endpoint_url=endpoint, region_name="us-east-1"
    ) as s3:
        try:
            await s3.create_bucket(Bucket=name)
        except Exception as exc:  # already there
            if "BucketAlreadyOwnedByYou" not in str(exc):
                raise
        listed = await s3.list_objects_v2(Bucket=name)
        return sorted(o["Key"] for o in listed.get("Contents", []))


@pytest.mark.slow
def test_round_trip_through_s3(cli: Any, database_url: str, s3_endpoint: str) -> None:
    with_store(database_url, lambda store: add_runs(store, ["s1", "s2"]))
    run_sync(_bucket(s3_endpoint, "archive"))
    before = {i: _views(cli, i) for i in (EXAMPLE_RUN, "s1")}
    done = cli("archive", "--older-than", "0s", "--to", "s3://archive/durable/prod")
    assert done.exit_code == 0 and "archived 4 runs" in done.stdout, done.output
    assert "to s3://archive/durable/prod" in done.stdout
    keys = run_sync(_bucket(s3_endpoint, "archive"))
    assert len(keys) == 4 + 1 and all(k.startswith("durable/prod/daily_sales/") for k in keys)
    for run_id, views in before.items():
        assert _views(cli, run_id) == views
        assert (
            "is archived at s3://archive/durable/prod/daily_sales/" in cli("history", run_id).stderr
        )
    assert cli("replay", "s1", "--verify").exit_code == 0
    assert cli("restore", "s1").exit_code == 0
    assert _views(cli, "s1") == before["s1"]
    nowhere = cli("archive", "--older-than", "0s", "--to", "s3://no-such-bucket/x")
    assert nowhere.exit_code == 2 and "NoSuchBucket" in nowhere.stderr


# -- retention in `durable up` -------------------------------------------------------------


async def test_the_archive_service_archives_on_its_schedule_and_leads_alone(
    pg_store: PostgresEventStore, tmp_path: Path
) -> None:
    await add_runs(pg_store, ["old1", "old2"], logs=False)
    first = ArchiveService(pg_store, to=str(tmp_path), older_than=timedelta(0), every=0.05)
    second = ArchiveService(pg_store, to=str(tmp_path), older_than=timedelta(0), every=0.05)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(s.run(stop)) for s in (first, second)]
    try:
        await eventually(
            lambda: _true(first.leading.is_set() or second.leading.is_set()), "one service leads"
        )
        leader, other = (first, second) if first.leading.is_set() else (second, first)
        rounds = leader.rounds
        await eventually(lambda: _true(leader.rounds >= rounds + 2), "two passes went by")
        assert leader.archived == 2 and not other.leading.is_set() and other.rounds == 0
        await add_runs(pg_store, ["new"], logs=False)
        await eventually(lambda: _true(leader.archived == 3), "the new run is archived")
        records, archive = await run_history(pg_store, "new", ArchiveReader())
        assert archive is not None and fold(records) is not None
    finally:
        stop.set()
        await asyncio.gather(*tasks)


async def _true(value: bool) -> bool:
    return value


@pytest.mark.slow
def test_durable_up_applies_retention(database_url: str, tmp_path: Path) -> None:
    workflows = tmp_path / "flows.py"
    workflows.write_text(
        "from durable import Workflow\n"
        "quick = Workflow('quick')\n"
        "@quick.task\n"
        "def one(ctx):\n"
        "    ctx.log.info('hello from one')\n"
        "    return 1\n"
    )
    service = start_service(
        database_url,
        workflows,
        "--archive-older-than",
        "0s",
        "--archive-to",
        str(tmp_path / "archive"),
        "--archive-every",
        "0.2",
        port=free_port(),
    )

    async def go() -> None:
        auth = {"Authorization": f"Bearer {service.token}"}
        async with aiohttp.ClientSession(headers=auth) as http:
            async with http.post(f"{service.url}/api/v1/workflows/quick/runs", json={}) as r:
                run_id = (await r.json())["run_id"]

            async def archived() -> bool:
                async with http.get(f"{service.url}/api/v1/runs/{run_id}") as r:
                    return (await r.json())["archived"] is not None

            await eventually(archived, "durable up archived the finished run", timeout=30)
            async with http.get(f"{service.url}/api/v1/runs/{run_id}/logs") as r:
                lines = (await r.json())["lines"]
            assert [x["message"] for x in lines] == ["hello from one"]

    try:
        run_sync(go())
    finally:
        service.stop()
    assert len(list((tmp_path / "archive").rglob("*.jsonl.gz"))) == 2


def test_restore_of_an_unknown_or_live_run(database_url: str) -> None:
    async def go(store: PostgresEventStore) -> None:
        await add_runs(store, ["live"], logs=False)
        with pytest.raises(Exception, match="run live is not archived"):
            await restore_run(store, "live", ArchiveReader())

    with_store(database_url, go)

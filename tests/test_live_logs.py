"""Task logs are stored while the attempt runs, in small batches, on real PostgreSQL with a
real executor: visible before the attempt ends, kept when the executor is killed, capped,
retried after an outage, followed live through the API's stream and `durable logs -f`."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiohttp import web

from durable import TaskContext, Workflow
from durable.api import create_app
from durable.application.runs import create_run, register_versions
from durable.application.tokens import create_token
from durable.core.events import run_stream
from durable.core.fold import fold
from durable.runtime.logs import LogWriter
from durable.runtime.outage import Outage
from durable.store import PostgresEventStore, connect
from durable.workflows import load_workflows
from tests.conftest import PgServer
from tests.executing import registry_of, run_to_end, running_executor, wait_for_run
from tests.faultproxy import FaultProxy
from tests.signs import eventually


async def _lines(store: PostgresEventStore, run_id: str, task: str | None = None) -> list[str]:
    return [line.message for line in await store.logs.read(run_id, task)]


async def _running(store: PostgresEventStore, run_id: str, task: str) -> bool:
    state = fold(await store.read_stream(run_stream(run_id)))
    return state is not None and state.tasks[task].status == "running"


# -- stored while the attempt runs ---------------------------------------------------------


async def test_a_shell_tasks_lines_are_stored_while_it_runs(
    pg_store: PostgresEventStore, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    wf = Workflow("talker")
    wf.shell(
        "talk",
        'echo first; while [ ! -e "$GATE" ]; do sleep 0.02; done; echo second; echo third >&2',
        env={"GATE": str(gate)},
        retries=0,
    )
    async with running_executor(pg_store, registry_of(wf)):
        run_id, _ = await create_run(pg_store, wf.spec(), {})

        async def first_stored() -> bool:
            return await _lines(pg_store, run_id) == ["first"]

        await eventually(first_stored, "the first line was stored")
        # the command cannot end before the gate exists: the line came while it ran
        assert not gate.exists() and await _running(pg_store, run_id, "talk")
        gate.touch()
        state = await wait_for_run(pg_store, run_id)
    assert state.status == "succeeded"
    lines = await pg_store.logs.read(run_id, "talk")
    assert [(line.stream, line.message) for line in lines] in (
        [("stdout", "first"), ("stdout", "second"), ("stderr", "third")],
        [("stdout", "first"), ("stderr", "third"), ("stdout", "second")],  # two pipes
    )
    assert [line.id for line in lines] == sorted({line.id for line in lines})


async def test_a_chatty_sync_task_keeps_every_line_in_order(pg_store: PostgresEventStore) -> None:
    wf = Workflow("chatty")

    @wf.task
    def chatter(ctx: TaskContext) -> int:  # sync: writes from its thread
        for i in range(3000):
            ctx.log.info("line %04d", i)
        return 3000

    state = await run_to_end(pg_store, wf)
    assert state.status == "succeeded"
    assert await _lines(pg_store, state.run_id) == [f"line {i:04d}" for i in range(3000)]


async def test_past_the_cap_one_line_says_so_and_the_dropped_are_counted(
    pg_store: PostgresEventStore,
) -> None:
    wf = Workflow("capped")

    @wf.task
    def flood(ctx: TaskContext) -> str:
        for i in range(100):
            ctx.log.info("%03d %s", i, "x" * 45)  # 49 bytes, 50 with its newline
        return "flooded"

    state = await run_to_end(pg_store, wf, task_log_max_bytes=1000)
    assert state.status == "succeeded" and state.tasks["flood"].output == "flooded"
    lines = await pg_store.logs.read(state.run_id, "flood")
    assert [line.message for line in lines[:20]] == [f"{i:03d} {'x' * 45}" for i in range(20)]
    assert [(line.stream, line.message) for line in lines[20:]] == [
        (
            "log",
            "[log truncated: the attempt's log is over 1000 bytes; further lines dropped]",
        ),
        ("log", "[log truncated: 80 lines dropped]"),
    ]


async def test_a_shell_flood_past_the_cap_is_counted_line_for_line(
    pg_store: PostgresEventStore,
) -> None:
    wf = Workflow("flood")
    wf.shell("flood", "seq 1 200000; printf no-newline", retries=0)
    state = await run_to_end(pg_store, wf, task_log_max_bytes=1000)
    assert state.status == "succeeded"
    lines = await _lines(pg_store, state.run_id)
    kept = lines[:-2]
    assert kept == [str(i) for i in range(1, len(kept) + 1)] and 250 < len(kept) < 300
    assert lines[-2:] == [
        "[log truncated: the attempt's log is over 1000 bytes; further lines dropped]",
        f"[log truncated: {200001 - len(kept)} lines dropped]",
    ]
    # the output's tail is the true end of the output, not of what was stored
    tail = [str(i) for i in range(199982, 200001)] + ["no-newline"]
    assert state.tasks["flood"].output == {"exit_code": 0, "stdout": tail}


async def test_text_postgresql_would_refuse_is_stored_cleaned(pg_store: PostgresEventStore) -> None:
    wf = Workflow("odd")

    @wf.task
    def odd(ctx: TaskContext) -> str:
        ctx.log.info("a lone surrogate \udc80 and a NUL \x00 byte")
        ctx.log.info("and the next line")
        return "ok"

    state = await run_to_end(pg_store, wf)
    assert state.status == "succeeded"
    assert await _lines(pg_store, state.run_id) == [
        "a lone surrogate ? and a NUL  byte",
        "and the next line",
    ]


# -- best effort: an outage does not lose the lines, nor fail the task -----------------------


async def test_a_batch_that_could_not_be_stored_goes_with_the_next_flush(
    pg_server: PgServer, pg_store: PostgresEventStore, database_url: str
) -> None:
    proxy = await FaultProxy.start(unix_path=str(pg_server.datadir / ".s.PGSQL.5432"))
    database = urlsplit(database_url).path.lstrip("/")
    store = await connect(f"postgresql://postgres@127.0.0.1:{proxy.port}/{database}")
    outage = Outage("PostgreSQL", logging.getLogger("test"))
    writer = LogWriter(store.logs, outage=outage, write_timeout=1.0)
    load, save = writer.open("r1", "load", 1, 1), writer.open("r1", "save", 1, 1)
    try:
        load.log.info("one")
        load.log.info("two")
        save.log.info("saved")
        proxy.stall(True)
        assert not await load.flush()  # timed out: PostgreSQL counts as away
        assert outage.down and writer.away and load.unsent
        # the next batch is not tried while away (it would only wait out its own timeout)
        assert not await save.flush() and save.unsent
        load.log.info("three")
        proxy.heal()

        async def flushed() -> bool:
            return await load.flush() and await save.flush()

        await eventually(flushed, "the lines were stored once PostgreSQL was back")
        assert await load.close() and await save.close()
        assert not writer.away and not outage.down
    finally:
        await store.close()
        await proxy.close()
    assert await _lines(pg_store, "r1", "load") == ["one", "two", "three"]
    assert await _lines(pg_store, "r1", "save") == ["saved"]


async def test_lines_an_outage_held_back_are_stored_before_the_outcome(
    pg_server: PgServer, pg_store: PostgresEventStore, database_url: str
) -> None:
    proxy = await FaultProxy.start(unix_path=str(pg_server.datadir / ".s.PGSQL.5432"))
    database = urlsplit(database_url).path.lstrip("/")
    store = await connect(f"postgresql://postgres@127.0.0.1:{proxy.port}/{database}")
    gate = asyncio.Event()
    failed_before: list[int] = []
    wf = Workflow("outage")

    @wf.task
    async def talk(ctx: TaskContext) -> int:
        ctx.log.info("before")
        await gate.wait()
        ctx.log.info("during the outage")
        failed_before.append(executor.logs.failed_writes)
        return 1

    try:
        async with running_executor(store, registry_of(wf)) as executor:
            run_id, _ = await create_run(store, wf.spec(), {})

            async def before() -> bool:
                return await _lines(pg_store, run_id) == ["before"]

            await eventually(before, "the first line was stored")
            proxy.refuse(True)
            proxy.cut()
            gate.set()

            async def held_back() -> bool:
                return bool(failed_before) and executor.logs.failed_writes > failed_before[0]

            await eventually(held_back, "the attempt ended and its last lines met the outage")
            assert await _lines(pg_store, run_id) == ["before"]
            proxy.heal()
            state = await wait_for_run(pg_store, run_id)
            # seen finished: its lines are all there
            assert await _lines(pg_store, run_id) == ["before", "during the outage"]
    finally:
        await store.close()
        await proxy.close()
    assert state.status == "succeeded"


# -- kept when the executor is killed ------------------------------------------------------

CRASHING = """
import time
from durable import Workflow

wf = Workflow("crash_logs")

@wf.task(retries=3)
def talk(ctx):
    for i in range(3):
        ctx.log.info("attempt %d line %d", ctx.attempt, i)
    while ctx.attempt == 1:
        time.sleep(0.05)     # killed in here
    return "done"
"""


def _executor(database_url: str, workflows: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as err:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "durable",
                "--database-url",
                database_url,
                "up",
                "--workflows",
                str(workflows),
                "--lease",
                "2",
            ],
            stdout=subprocess.DEVNULL,
            stderr=err,
        )


@pytest.mark.slow
async def test_lines_stored_before_a_sigkill_are_kept(
    pg_store: PostgresEventStore, database_url: str, tmp_path: Path
) -> None:
    workflows = tmp_path / "crash_logs.py"
    workflows.write_text(CRASHING)
    spec = load_workflows(workflows).get("crash_logs").spec
    first = _executor(database_url, workflows, tmp_path / "first.log")
    second = None
    try:
        run_id, _ = await create_run(pg_store, spec, {})

        async def stored() -> bool:
            return len(await pg_store.logs.read(run_id, "talk", attempt=1)) == 3

        await eventually(stored, "attempt 1's lines were stored while it ran", timeout=60)
        before = await pg_store.logs.read(run_id, "talk")
        first.send_signal(signal.SIGKILL)
        first.wait(30)
        assert await pg_store.logs.read(run_id, "talk") == before
        second = _executor(database_url, workflows, tmp_path / "second.log")
        state = await wait_for_run(pg_store, run_id, timeout=90)
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(30)
    assert state.status == "succeeded", (tmp_path / "second.log").read_text()
    after = await pg_store.logs.read(run_id, "talk")
    assert after[:3] == before  # the killed attempt's lines, as they were
    assert [(line.attempt, line.message) for line in after[3:]] == [
        (state.tasks["talk"].attempt, f"attempt {state.tasks['talk'].attempt} line {i}")
        for i in range(3)
    ]


# -- followed live: the API's stream -------------------------------------------------------


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


async def _events(response: aiohttp.ClientResponse) -> AsyncIterator[tuple[str, str, Any]]:
    """(event, id, data) of a text/event-stream; comments skipped."""
    kind, ident, data = "message", "", ""
    async for raw in response.content:
        line = raw.decode().rstrip("\n")
        if not line:
            if data:
                yield kind, ident, json.loads(data)
            kind, ident, data = "message", "", ""
        elif line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("id: "):
            ident = line[4:]
        elif line.startswith("data: "):
            data += line[6:]


def _gated() -> tuple[Workflow, dict[str, asyncio.Event]]:
    gates = {"talk": asyncio.Event(), "hold": asyncio.Event()}
    wf = Workflow("streamed")

    @wf.task
    async def talk(ctx: TaskContext) -> int:
        ctx.log.info("before the gate")
        await gates["talk"].wait()
        ctx.log.warning("after the gate")
        return 1

    @wf.task(after=[talk])
    async def hold(ctx: TaskContext) -> int:
        ctx.log.info("holding")
        await gates["hold"].wait()
        return 2

    return wf, gates


async def test_the_log_stream_sends_lines_live_and_ends_with_the_run(
    pg_store: PostgresEventStore,
) -> None:
    wf, gates = _gated()
    registry = registry_of(wf)
    await register_versions(pg_store, registry)
    _, token = await create_token(pg_store.tokens, "reader", ["read"])
    runner, url = await _serve(create_app(pg_store, registry))
    auth = {"Authorization": f"Bearer {token}"}
    try:
        async with (
            running_executor(pg_store, registry),
            aiohttp.ClientSession(headers=auth) as http,
            asyncio.timeout(60),
        ):
            run_id, _ = await create_run(pg_store, wf.spec(), {})
            stream = f"{url}/api/v1/runs/{run_id}/logs/stream"
            got: list[tuple[str, str, Any]] = []
            talk_only: list[tuple[str, str, Any]] = []
            async with http.get(stream) as response:
                assert response.status == 200
                assert response.headers["Content-Type"].startswith("text/event-stream")
                async for kind, ident, data in _events(response):
                    got.append((kind, ident, data))
                    message = data.get("message")
                    if message == "before the gate":
                        gates["talk"].set()  # the task goes on once its line came through
                    elif message == "holding":
                        # one task's stream ends when that task has, the run still going
                        async with http.get(stream, params={"task": "talk"}) as one:
                            talk_only = [e async for e in _events(one)]
                        gates["hold"].set()
            # resuming after the first line gives the rest, then the end
            first_id = got[0][1]
            async with http.get(stream, headers={"Last-Event-ID": first_id}) as response:
                resumed = [e async for e in _events(response)]
            _, page = await _get(http, f"{url}/api/v1/runs/{run_id}/logs?after={first_id}")
            _, one = await _get(http, f"{url}/api/v1/runs/{run_id}/logs?limit=1")
            missing, _ = await _get(http, f"{stream}?task=nope")
            bad, _ = await _get(http, f"{stream}?after=-1")
            async with http.get(stream, headers={"Last-Event-ID": "9" * 20}) as response:
                bad_id = response.status
    finally:
        for gate in gates.values():
            gate.set()
        await runner.cleanup()
    assert [(k, d.get("message")) for k, _, d in got] == [
        ("line", "before the gate"),
        ("line", "after the gate"),
        ("line", "holding"),
        ("end", None),
    ]
    lines = [d for k, _, d in got if k == "line"]
    assert [i for k, i, _ in got if k == "line"] == [str(d["id"]) for d in lines]
    assert [d["id"] for d in lines] == sorted({d["id"] for d in lines})
    assert set(lines[1]) == {"task", "generation", "attempt", "at", "stream", "message", "id"}
    assert (lines[1]["task"], lines[1]["attempt"], lines[1]["stream"]) == ("talk", 1, "warning")
    assert got[-1][2] == {"status": "succeeded", "task": None, "task_status": None}
    assert [d.get("message") for _, _, d in talk_only] == [
        "before the gate",
        "after the gate",
        None,
    ]
    assert talk_only[-1][2] == {"status": "running", "task": "talk", "task_status": "succeeded"}
    assert [d.get("message") for _, _, d in resumed] == ["after the gate", "holding", None]
    assert [line["message"] for line in page["lines"]] == ["after the gate", "holding"]
    assert page["next_after"] == lines[-1]["id"] and page["more"] is False
    assert len(one["lines"]) == 1 and one["more"] is True
    assert one["next_after"] == lines[0]["id"]
    assert (missing, bad, bad_id) == (404, 400, 400)


async def _get(http: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with http.get(url) as response:
        return response.status, await response.json(content_type=None)


# -- followed live: `durable logs --follow` --------------------------------------------------


async def test_durable_logs_follow_prints_lines_written_while_it_follows(
    pg_store: PostgresEventStore, database_url: str
) -> None:
    wf, gates = _gated()
    gates["hold"].set()
    registry = registry_of(wf)
    async with running_executor(pg_store, registry):
        run_id, _ = await create_run(pg_store, wf.spec(), {})
        cli = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "durable",
            "--database-url",
            database_url,
            "logs",
            run_id,
            "--follow",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={k: v for k, v in os.environ.items() if k != "DURABLE_DATABASE_URL"},
        )
        assert cli.stdout is not None and cli.stderr is not None
        printed: list[str] = []
        try:
            async with asyncio.timeout(60):
                while not any("before the gate" in line for line in printed):
                    raw = await cli.stdout.readline()
                    assert raw, "durable logs --follow ended early: " + "".join(printed)
                    printed.append(raw.decode())
                gates["talk"].set()  # only now, the command following, come the next lines
                out, err = await cli.communicate()
        finally:
            gates["talk"].set()
            if cli.returncode is None:
                cli.kill()
                await cli.wait()
    printed += out.decode().splitlines(keepends=True)
    assert cli.returncode == 0, err.decode()
    assert [line.split(" ", 1)[1].rstrip("\n") for line in printed] == [
        "talk#1 log: before the gate",
        "talk#1 warning: after the gate",
        "hold#1 log: holding",
    ]
    assert f"run {run_id} succeeded" in err.decode()

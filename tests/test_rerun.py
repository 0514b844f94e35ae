"""Partial reruns, exactly once: rerun one task (and what depends on it) of a finished run."""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from typing import Any

import pytest
from click.testing import CliRunner

from durable import TaskContext, Workflow
from durable.application.runs import create_run
from durable.cli import main
from durable.core.decide import CommandRejected, Rerun, decide_command
from durable.core.events import RerunRequested, TaskStarted, run_stream
from durable.core.fold import fold
from durable.store import PostgresEventStore
from tests.executing import registry_of, running_executor, wait_for_run
from tests.signs import claim_rounds_pass, let_go


def pipeline(executed: Counter[str], report_fails: dict[str, bool]) -> Workflow:
    wf = Workflow("sales")

    @wf.task
    def fetch() -> dict[str, int]:
        executed["fetch"] += 1
        return {"rows": 10}

    @wf.task(after=[fetch])
    def transform(fetch: dict[str, int]) -> dict[str, int]:
        executed["transform"] += 1
        return {"rows": fetch["rows"] * 2}

    @wf.task(after=[transform])
    def load(transform: dict[str, int]) -> int:
        executed["load"] += 1
        return transform["rows"]

    @wf.task(after=[load], retries=0)
    def report(ctx: TaskContext, load: int) -> str:
        executed["report"] += 1
        if report_fails["yes"]:
            raise ValueError("currency missing")
        return f"{load} rows in generation {ctx.generation}"

    return wf


def cli(database_url: str, *args: str) -> Any:
    return CliRunner().invoke(main, ["--database-url", database_url, *args])


async def test_rerun_one_task_reuses_upstream_outputs(
    pg_store: PostgresEventStore, database_url: str
) -> None:
    executed: Counter[str] = Counter()
    fails = {"yes": True}
    wf = pipeline(executed, fails)
    async with running_executor(pg_store, registry_of(wf)):
        run_id, _ = await create_run(pg_store, wf.spec(), {})
        failed = await wait_for_run(pg_store, run_id)
        assert failed.status == "failed" and failed.tasks["report"].status == "failed"

        plan = await asyncio.to_thread(cli, database_url, "rerun", run_id, "report", "--dry-run")
        assert plan.exit_code == 0, plan.output
        assert plan.output.splitlines() == [
            "would rerun as generation 2: report",
            "would reuse the outputs of: fetch, transform, load",
        ]
        assert fold(await pg_store.read_stream(run_stream(run_id))) == failed  # dry: no change

        fails["yes"] = False
        result = await asyncio.to_thread(cli, database_url, "rerun", run_id, "report")
        assert result.exit_code == 0, result.output
        assert result.output.strip() == f"rerun requested for run {run_id}"
        done = await wait_for_run(pg_store, run_id, statuses=("succeeded",))
    assert executed == Counter(fetch=1, transform=1, load=1, report=2)  # upstream not again
    assert done.tasks["report"].output == "20 rows in generation 2"
    assert done.tasks["report"].generation == 2 and done.tasks["load"].generation == 1
    assert done.generation == 2
    history = (await asyncio.to_thread(cli, database_url, "history", run_id)).output
    assert "request rerun-" in history and "report → generation 2" in history
    starts = [
        (r.event.task, r.event.generation)
        for r in await pg_store.read_stream(run_stream(run_id))
        if isinstance(r.event, TaskStarted)
    ]
    assert starts[-1] == ("report", 2)


async def test_rerun_with_downstream_from_the_middle(
    pg_store: PostgresEventStore, database_url: str
) -> None:
    executed: Counter[str] = Counter()
    wf = pipeline(executed, {"yes": False})
    async with running_executor(pg_store, registry_of(wf)):
        run_id, _ = await create_run(pg_store, wf.spec(), {})
        await wait_for_run(pg_store, run_id)
        result = await asyncio.to_thread(
            cli, database_url, "rerun", run_id, "transform", "--downstream", "--wait"
        )
        assert result.exit_code == 0, result.output
    assert executed == Counter(fetch=1, transform=2, load=2, report=2)
    state = fold(await pg_store.read_stream(run_stream(run_id)))
    assert state is not None and state.status == "succeeded"
    assert {n: t.generation for n, t in state.tasks.items()} == {
        "fetch": 1,
        "transform": 2,
        "load": 2,
        "report": 2,
    }


async def test_the_same_request_twice_concurrently_reruns_once(
    pg_store: PostgresEventStore, database_url: str
) -> None:
    executed: Counter[str] = Counter()
    wf = pipeline(executed, {"yes": False})
    async with running_executor(pg_store, registry_of(wf)) as executor:
        run_id, _ = await create_run(pg_store, wf.spec(), {})
        await wait_for_run(pg_store, run_id)
        # four operators at once, each its own process, sending the same request
        procs = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "durable",
                "--database-url",
                database_url,
                "rerun",
                run_id,
                "report",
                "--request-id",
                "rr-1",
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            for _ in range(4)
        ]
        results = [await p.communicate() for p in procs]
        assert [p.returncode for p in procs] == [0] * 4, results
        outputs = sorted(out.decode().strip() for out, _ in results)
        assert outputs.count(f"rerun requested for run {run_id}") == 1
        assert outputs.count(f"rerun request rr-1 was already applied to run {run_id}") == 3
        await wait_for_run(pg_store, run_id, statuses=("succeeded",))
        # the rerun's generation is done and the executor let go of the run, then kept
        # claiming: a second application of the request had every chance to show
        await let_go(executor, run_id)
        await claim_rounds_pass(executor)
    events = [r.event for r in await pg_store.read_stream(run_stream(run_id))]
    assert sum(isinstance(e, RerunRequested) for e in events) == 1
    assert executed["report"] == 2


async def test_reruns_are_refused_clearly(pg_store: PostgresEventStore, database_url: str) -> None:
    wf = Workflow("slowpoke")
    gate = asyncio.Event()

    @wf.task
    async def wait() -> None:
        await gate.wait()

    async with running_executor(pg_store, registry_of(wf)):
        run_id, _ = await create_run(pg_store, wf.spec(), {})
        for _ in range(100):
            state = fold(await pg_store.read_stream(run_stream(run_id)))
            if state is not None and state.tasks["wait"].status == "running":
                break
            await asyncio.sleep(0.05)
        busy = await asyncio.to_thread(cli, database_url, "rerun", run_id, "wait")
        assert busy.exit_code == 2
        assert f"run {run_id} is running; a rerun needs a finished run" in busy.output
        gate.set()
        done = await wait_for_run(pg_store, run_id)
    with pytest.raises(CommandRejected, match="has no task ghost"):
        decide_command(done, Rerun(request_id="x", tasks=("ghost",)))
    with pytest.raises(CommandRejected, match="the selected tasks all succeeded"):
        decide_command(done, Rerun(request_id="x", tasks=("wait",), failed_only=True))


async def test_the_read_model_matches_the_log_after_executed_runs(
    pg_store: PostgresEventStore, database_url: str
) -> None:
    """`durable replay --verify` holds for what the executor wrote: retries, map, reruns."""
    executed: Counter[str] = Counter()
    fails = {"yes": True}
    wf = pipeline(executed, fails)
    fan = Workflow("fan_verify")
    src = fan.task(name="src")(lambda: [1, 2, 3])
    fan.map(over=src, name="each")(lambda item: item * 2)
    async with running_executor(pg_store, registry_of(wf, fan)):
        first, _ = await create_run(pg_store, wf.spec(), {})
        second, _ = await create_run(pg_store, fan.spec(), {})
        await wait_for_run(pg_store, first)
        await wait_for_run(pg_store, second)
        fails["yes"] = False
        await asyncio.to_thread(cli, database_url, "rerun", first, "report", "--wait")
    for run_id in (first, second):
        result = await asyncio.to_thread(cli, database_url, "replay", run_id, "--verify")
        assert result.exit_code == 0, result.output
        assert "verified: the runs read model matches the log" in result.output


async def test_a_queued_rerun_is_applied_when_the_run_ends_and_dropped_by_a_cancel(
    pg_store: PostgresEventStore, database_url: str
) -> None:
    executed: Counter[str] = Counter()
    gate = asyncio.Event()
    wf = Workflow("gated")

    @wf.task
    async def first() -> int:
        executed["first"] += 1
        await gate.wait()
        return 1

    @wf.task(after=[first])
    def second(first: int) -> int:
        executed["second"] += 1
        return first + 1

    async with running_executor(pg_store, registry_of(wf)):
        run_id, _ = await create_run(pg_store, wf.spec(), {})
        await wait_for_run(pg_store, run_id, statuses=("running",))
        refused = await asyncio.to_thread(cli, database_url, "rerun", run_id, "second")
        assert refused.exit_code == 2 and "--queue" in refused.output
        queued = await asyncio.to_thread(
            cli, database_url, "rerun", run_id, "second", "--queue", "--request-id", "q1"
        )
        assert queued.exit_code == 0 and "rerun queued" in queued.output, queued.output
        again = await asyncio.to_thread(
            cli, database_url, "rerun", run_id, "second", "--queue", "--request-id", "q1"
        )
        assert "already queued" in again.output
        gate.set()
        done = await wait_for_run(pg_store, run_id, statuses=("succeeded",))
        for _ in range(100):
            done = await wait_for_run(pg_store, run_id, statuses=("succeeded",))
            if done.generation == 2 and done.status == "succeeded":
                break
            await asyncio.sleep(0.05)
        assert done.generation == 2 and done.queued == () and done.reruns == ("q1",)
        assert executed == Counter(first=1, second=2)

        # a cancel drops a queued rerun
        gate.clear()
        other, _ = await create_run(pg_store, wf.spec(), {})
        await wait_for_run(pg_store, other, statuses=("running",))
        await asyncio.to_thread(cli, database_url, "rerun", other, "second", "--queue")
        await asyncio.to_thread(cli, database_url, "cancel", other)
        cancelled = await wait_for_run(pg_store, other)
        gate.set()
    assert cancelled.status == "cancelled" and cancelled.queued == () and cancelled.reruns == ()
    history = await asyncio.to_thread(cli, database_url, "history", run_id)
    assert "rerun_queued" in history.output and "applied when the run ends" in history.output
    verify = await asyncio.to_thread(cli, database_url, "replay", run_id, "--verify")
    assert verify.exit_code == 0, verify.output

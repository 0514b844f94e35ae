"""Logic tasks (switch, fan-in, try-catch-finally) and every action task type."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web

from durable import Param, TaskContext, Workflow
from durable.core.retry import RetryPolicy
from durable.store import PostgresEventStore
from tests.executing import run_to_end
from tests.processes import alive


async def test_switch_skips_untaken_branches_and_joins_after(pg_store: PostgresEventStore) -> None:
    wf = Workflow("route")
    ran: list[str] = []

    @wf.task
    def measure() -> dict[str, int]:
        return {"rows": 5000}

    @wf.task
    def big_load() -> None:
        ran.append("big_load")

    @wf.task
    def small_load() -> None:
        ran.append("small_load")

    @wf.task(after=[small_load])
    def after_small() -> None:
        ran.append("after_small")

    @wf.switch(after=[measure], cases={"big": [big_load], "small": [small_load]})
    def size(measure: dict[str, int]) -> str:
        return "big" if measure["rows"] > 1000 else "small"

    @wf.task(after=[big_load, after_small], trigger_rule="none_failed")
    def report() -> str:
        ran.append("report")
        return "done"

    state = await run_to_end(pg_store, wf)
    assert state.status == "succeeded"
    assert ran == ["big_load", "report"]
    assert state.tasks["size"].output == "big"
    assert state.tasks["small_load"].status == "skipped"
    assert state.tasks["small_load"].reason == "switch size chose big"
    assert state.tasks["after_small"].status == "skipped"  # the skip propagated
    assert state.tasks["report"].status == "succeeded"


async def test_try_catch_finally(pg_store: PostgresEventStore) -> None:
    wf = Workflow("guarded")
    ran: list[str] = []

    @wf.task(retries=0)
    def risky() -> None:
        ran.append("risky")
        raise ValueError("bad batch")

    @wf.task(after=[risky], trigger_rule="one_failed")
    def handle(ctx: TaskContext) -> str:
        ran.append("handle")
        return "quarantined"

    @wf.task(after=[risky, handle], trigger_rule="all_done")
    def cleanup() -> None:
        ran.append("cleanup")

    state = await run_to_end(pg_store, wf)
    assert ran == ["risky", "handle", "cleanup"]
    assert state.tasks["risky"].status == "failed"
    # the failure was handled by the catch task: the run continues and succeeds
    assert state.status == "succeeded"


async def test_an_unhandled_failure_still_runs_finally_then_fails(
    pg_store: PostgresEventStore,
) -> None:
    wf = Workflow("unguarded")

    @wf.task(retries=0)
    def risky() -> None:
        raise ValueError("bad batch")

    @wf.task(after=[risky], trigger_rule="all_done")
    def cleanup() -> str:
        return "cleaned"

    state = await run_to_end(pg_store, wf)
    assert state.tasks["cleanup"].output == "cleaned"
    assert state.status == "failed"
    assert state.tasks["risky"].error is not None
    assert state.tasks["risky"].error.message == "bad batch"


async def test_shell_task_env_cwd_output_and_log(
    pg_store: PostgresEventStore, tmp_path: Path
) -> None:
    wf = Workflow("sh")
    wf.shell(
        "hello",
        "echo day=${params.day} key=$DURABLE_IDEMPOTENCY_KEY; echo warn >&2; pwd; echo $GREETING",
        env={"GREETING": "hi"},
        cwd=str(tmp_path),
    )
    wf.params["day"] = Param("date", required=True)
    state = await run_to_end(pg_store, wf, {"day": "2026-11-21"})
    assert state.status == "succeeded", state.tasks["hello"].error
    out = state.tasks["hello"].output
    assert out["exit_code"] == 0
    assert out["stdout"] == [
        f"day=2026-11-21 key={state.run_id}/hello/1",
        str(tmp_path),
        "hi",
    ]
    async with pg_store._pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT stream, message FROM durable.task_logs WHERE run_id = $1 ORDER BY line",
            state.run_id,
        )
    assert ("stderr", "warn") in [(r["stream"], r["message"]) for r in rows]


async def test_shell_failure_and_timeout_kill_the_process_group(
    pg_store: PostgresEventStore, tmp_path: Path
) -> None:
    marker = tmp_path / "child.pid"
    wf = Workflow("sh_fail")
    wf.shell("bad", "echo oops >&2; exit 3", retries=0)
    # the shell starts a grandchild; a timeout must take it down too
    wf.shell("hang", f"sleep 60 & echo $! > {marker}; wait", retries=0, timeout=0.5)
    state = await run_to_end(pg_store, wf)
    assert state.status == "failed"
    assert state.tasks["bad"].error.message == "command exited with 3: oops"  # type: ignore[union-attr]
    assert state.tasks["hang"].error.type == "TaskTimeout"  # type: ignore[union-attr]
    child = int(marker.read_text())
    for _ in range(50):
        if not alive(child):
            break
        await asyncio.sleep(0.1)
    assert not alive(child), "the grandchild survived the timeout"


async def test_http_task_retries_5xx_and_records_the_body(pg_store: PostgresEventStore) -> None:
    hits: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        hits.append(request.headers.get("Idempotency-Key", ""))
        if len(hits) == 1:
            return web.Response(status=503, text="warming up")
        return web.json_response({"loaded": await request.json()})

    async def not_found(request: web.Request) -> web.Response:
        return web.Response(status=404, text="no such table")

    app = web.Application()
    app.router.add_post("/load", handler)
    app.router.add_get("/missing", not_found)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        wf = Workflow("calls")
        wf.http(
            "load",
            f"http://127.0.0.1:{port}/load",
            method="POST",
            json={"day": "${run_id}"},
            retry=RetryPolicy(max_attempts=3, initial_delay=0.05),
        )
        wf.http("missing", f"http://127.0.0.1:{port}/missing", retries=3)
        state = await run_to_end(pg_store, wf)
    finally:
        await runner.cleanup()
    assert state.tasks["load"].status == "succeeded"
    assert state.tasks["load"].output == {"status": 200, "body": {"loaded": {"day": state.run_id}}}
    assert state.tasks["load"].attempt == 2  # 503 was retried
    assert hits == [f"{state.run_id}/load/1"] * 2  # same idempotency key on the retry
    missing = state.tasks["missing"]
    assert missing.status == "failed" and missing.attempt == 1  # 404: no retry
    assert missing.error is not None and "404" in missing.error.message


async def test_sql_tasks_query_and_write(pg_store: PostgresEventStore) -> None:
    async with pg_store._pool.acquire() as conn:
        await conn.execute("CREATE TABLE sales (day date, amount numeric)")
    wf = Workflow("sql")
    load = wf.sql(
        "load", "INSERT INTO sales VALUES ($1::date, $2::numeric)", args=["2026-11-21", "12.5"]
    )
    wf.sql("check", "SELECT count(*) AS n, sum(amount)::float AS total FROM sales", after=[load])
    wf.sql("broken", "SELECT * FROM no_such_table", retries=3)
    state = await run_to_end(pg_store, wf)
    assert state.tasks["load"].output == {"status": "INSERT 0 1"}
    assert state.tasks["check"].output["rows"] == [{"n": 1, "total": 12.5}]
    broken = state.tasks["broken"]
    assert broken.status == "failed" and broken.attempt == 1  # a missing table will not appear
    assert broken.error is not None and "no_such_table" in broken.error.message


async def test_transactional_sql_commits_with_its_completion(pg_store: PostgresEventStore) -> None:
    async with pg_store._pool.acquire() as conn:
        await conn.execute("CREATE TABLE loaded (run_id text, day date)")
    wf = Workflow("tx")
    wf.sql(
        "load",
        "INSERT INTO loaded VALUES ($1, $2::date)",
        args=["${run_id}", "2026-11-21"],
        transactional=True,
    )
    state = await run_to_end(pg_store, wf)
    assert state.status == "succeeded"
    async with pg_store._pool.acquire() as conn:
        rows = await conn.fetch("SELECT run_id FROM loaded")
    assert [r["run_id"] for r in rows] == [state.run_id]


async def test_a_task_output_that_is_not_json_fails_clearly(pg_store: PostgresEventStore) -> None:
    wf = Workflow("odd")
    wf.task(name="odd", retries=0)(lambda: {"when": object()})
    state = await run_to_end(pg_store, wf)
    assert state.status == "failed"
    assert state.tasks["odd"].error is not None
    assert state.tasks["odd"].error.type == "TypeError"

"""The trace context goes out of tasks: ``TRACEPARENT`` in a shell task's environment, a
``traceparent`` header on an HTTP task's request, ``ctx.traceparent`` in a Python task —
each naming the attempt's own span of the trace later derived from the log."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web

from durable import Workflow
from durable.application.runs import create_run
from durable.core.events import Trigger, run_stream
from durable.core.trace import format_traceparent, parse_traceparent, trace_of
from durable.store import PostgresEventStore
from tests.executing import registry_of, running_executor, wait_for_run

PRODUCER = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


async def test_each_kind_of_task_hands_on_its_attempts_span(
    pg_store: PostgresEventStore, tmp_path: Path
) -> None:
    seen_headers: list[str | None] = []

    async def handler(request: web.Request) -> web.Response:
        seen_headers.append(request.headers.get("traceparent"))
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_get("/hook", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    wf = Workflow("propagate")
    # attempt 1 fails: a retry is a span of its own, and hands on its own id
    wf.shell(
        "sh",
        f'echo "$TRACEPARENT" >> {tmp_path}/"$DURABLE_RUN_ID"; test "$DURABLE_ATTEMPT" -gt 1',
        retries=1,
    )
    wf.http("call", f"http://127.0.0.1:{port}/hook", after=["sh"])

    def python(ctx: Any) -> str | None:
        return ctx.traceparent  # type: ignore[no-any-return]

    wf.task(python, name="py", after=["call"])
    try:
        async with running_executor(pg_store, registry_of(wf)):
            plain, _ = await create_run(pg_store, wf.spec(), {})
            produced, _ = await create_run(
                pg_store, wf.spec(), {}, trigger=Trigger(kind="api", traceparent=PRODUCER)
            )
            for run_id in (plain, produced):
                state = await wait_for_run(pg_store, run_id)
                assert state.status == "succeeded", state.tasks
    finally:
        await runner.cleanup()

    for run_id in (plain, produced):
        trace = trace_of(await pg_store.read_stream(run_stream(run_id)))
        assert trace is not None

        def handed(task: str, attempt: int, trace: Any = trace) -> str:
            (span,) = [
                s
                for s in trace.attempts
                if (s.attributes["durable.task"], s.attributes["durable.attempt"])
                == (task, attempt)
            ]
            return format_traceparent(trace.trace_id, span.span_id)

        shell_lines = (tmp_path / run_id).read_text().split()
        assert shell_lines == [handed("sh", 1), handed("sh", 2)]
        assert handed("call", 1) in seen_headers
        state = await wait_for_run(pg_store, run_id)
        assert state.tasks["py"].output == handed("py", 1)
    # the producer's run: every span in the producer's trace
    producer = parse_traceparent(PRODUCER)
    assert producer is not None
    assert [
        got.trace_id == producer.trace_id
        for got in map(parse_traceparent, (tmp_path / produced).read_text().split())
        if got is not None
    ] == [True, True]
    assert len(seen_headers) == 2 and len(set(seen_headers)) == 2

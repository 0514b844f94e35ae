"""Traces exported while runs go on, by real `durable up` processes, to a real OTLP/HTTP
receiver on loopback (tests/otlp.py decodes the protobuf as a collector does): the span
tree of a run with a retry; a takeover after SIGKILL keeps one trace; a run triggered
over HTTP continues its caller's trace; a restart sends nothing twice; a collector that
is away loses nothing; without an endpoint nothing starts."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

from durable.application.commands import apply_command
from durable.application.runs import create_run
from durable.core.commands import Rerun
from durable.core.errors import DurableError
from durable.core.events import Recorded, TaskRetryScheduled, TaskSucceeded, run_stream
from durable.core.trace import RunTrace, parse_traceparent, run_span_id, run_trace_id, trace_of
from durable.runtime.tracing import STARTED, TracesConfig, TraceService, traces_config
from durable.store import PostgresEventStore
from durable.workflows import WorkflowRegistry, load_workflows
from durable.workflows.loader import LoadedWorkflow
from tests.executing import running_executor, wait_for_run
from tests.otlp import Receiver, Span
from tests.processes import start_service

pytestmark = pytest.mark.slow

TRACED = """
from durable import Workflow
from durable.core.retry import RetryPolicy

wf = Workflow("traced")

@wf.task(retry=RetryPolicy(max_attempts=3, initial_delay=0.05))
def flaky(ctx):
    if ctx.attempt == 1:
        raise ConnectionError("warehouse unreachable")
    return "ok"

@wf.task(after=["flaky"])
def report(ctx):
    return "done"
"""

CRASHY = """
import os, time
from durable import Workflow

wf = Workflow("crashy")

@wf.task
def first(ctx):
    return 1

@wf.task(after=["first"], retries=3)
def slow(ctx):
    if ctx.attempt == 1:
        with open(os.environ["MARKER"], "w") as f:
            f.write(ctx.run_id)
        time.sleep(120)      # SIGKILLed in here
    return "slow done"
"""


def otel(receiver: Receiver) -> dict[str, str]:
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_SERVICE_NAME": "durable-test",
    }


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without any OTEL_* or DURABLE_* setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "DURABLE_"))}
    return {**env, **extra}


class Up:
    """A `durable up --no-http` process; its stderr lines collected as they come."""

    def __init__(self, database_url: str, workflows: Path, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "durable",
                "--database-url",
                database_url,
                "up",
                "--no-http",
                "--workflows",
                str(workflows),
                "--lease",
                "2",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        threading.Thread(target=self._drain, daemon=True).start()
        self.executor = f"{socket.gethostname()}:{self.process.pid}"

    def _drain(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)

    async def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        # in a thread: the receiver on this loop answers the last export meanwhile
        return await asyncio.to_thread(self.process.wait, 30)


async def until(
    check: Callable[[], Awaitable[bool] | bool], what: str, timeout: float = 30
) -> None:
    """Poll ``check`` until it holds; AssertionError naming ``what`` after ``timeout``."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        done = check()
        if done if isinstance(done, bool) else await done:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s")
        await asyncio.sleep(0.05)


async def tracing_started(store: PostgresEventStore) -> None:
    """Until the trace exporter has taken its first position (from then on, every span
    that ends is exported)."""

    async def started() -> bool:
        return await store.tracking.log_position(STARTED) == 1

    await until(started, "the trace exporter started")


def by_name(spans: list[Span]) -> dict[str, list[Span]]:
    found: dict[str, list[Span]] = {}
    for s in sorted(spans, key=lambda s: s.start_ns):
        found.setdefault(s.name, []).append(s)
    return found


def same_as_derived(spans: list[Span], derived: RunTrace) -> None:
    """The received spans are the trace derived from the log: same ids, same parents,
    each received once."""
    assert Counter(s.span_id for s in spans) == Counter(f"{d.span_id:016x}" for d in derived.spans)
    parents = {f"{d.span_id:016x}": d.parent_span_id for d in derived.spans}
    for s in spans:
        want = parents[s.span_id]
        assert s.parent_span_id == (f"{want:016x}" if want is not None else "")
        assert s.trace_id == f"{derived.trace_id:032x}"


def _derived(records: list[Recorded]) -> RunTrace:
    derived = trace_of(records)
    assert derived is not None
    return derived


def registry_of_loaded(loaded: LoadedWorkflow) -> WorkflowRegistry:
    registry = WorkflowRegistry()
    registry.add(loaded)
    return registry


async def test_durable_up_exports_the_span_tree_of_a_run_with_a_retry(
    pg_store: PostgresEventStore, database_url: str, tmp_path: Path
) -> None:
    receiver = Receiver()
    await receiver.start()
    path = tmp_path / "traced.py"
    path.write_text(TRACED)
    spec = load_workflows(path).get("traced").spec
    up = Up(database_url, path, clean_env(**otel(receiver)))
    again = None
    try:
        await tracing_started(pg_store)
        run_id, _ = await create_run(pg_store, spec, {})
        assert (await wait_for_run(pg_store, run_id)).status == "succeeded"
        trace_id = run_trace_id(run_id)
        await receiver.wait_for(lambda: "run traced" in by_name(receiver.of_trace(trace_id)))
        spans = receiver.of_trace(trace_id)
        named = by_name(spans)
        (run,) = named["run traced"]
        assert run.parent_span_id == "" and run.kind == 1  # a root, INTERNAL
        assert run.span_id == f"{run_span_id(run_id):016x}"
        assert run.attributes["durable.run.id"] == run_id
        assert run.attributes["durable.run.status"] == "succeeded"
        assert run.resource["service.name"] == "durable-test"  # OTEL_SERVICE_NAME
        failed, retried = named["task flaky"]
        assert failed.attributes["durable.attempt"] == 1 and failed.status == 2  # ERROR
        assert failed.attributes["error.type"] == "ConnectionError"
        assert failed.status_message == "warehouse unreachable"
        assert [name for name, _ in failed.events] == ["exception"]
        assert retried.attributes["durable.attempt"] == 2 and retried.status == 0
        (report,) = named["task report"]
        for attempt in (failed, retried, report):
            assert attempt.parent_span_id == run.span_id
            assert attempt.attributes["durable.executor"] == up.executor
            assert run.start_ns <= attempt.start_ns <= attempt.end_ns <= run.end_ns
        same_as_derived(spans, _derived(await pg_store.read_stream(run_stream(run_id))))

        # a restart goes on from the stored position: nothing is sent twice
        assert await up.stop() == 0
        again = Up(database_url, path, clean_env(**otel(receiver)))
        second, _ = await create_run(pg_store, spec, {})
        await wait_for_run(pg_store, second)
        await receiver.wait_for(
            lambda: "run traced" in by_name(receiver.of_trace(run_trace_id(second)))
        )
        assert Counter(s.span_id for s in receiver.spans).most_common(1)[0][1] == 1
        assert len(receiver.of_trace(trace_id)) == 4

        # a partial rerun is a span of its own: the run's span is not sent again
        await apply_command(pg_store, run_id, Rerun(request_id="again", tasks=("report",)))
        await receiver.wait_for(lambda: "rerun traced" in by_name(receiver.of_trace(trace_id)))
        spans = receiver.of_trace(trace_id)
        named = by_name(spans)
        assert [s.span_id for s in named["run traced"]] == [run.span_id]  # once
        (rerun,) = named["rerun traced"]
        assert rerun.parent_span_id == run.span_id and rerun.start_ns > run.end_ns
        assert rerun.attributes["durable.rerun.tasks"] == ("report",)
        first, second_report = named["task report"]
        assert (first.parent_span_id, second_report.parent_span_id) == (
            run.span_id,
            rerun.span_id,
        )
        assert second_report.attributes["durable.generation"] == 2
        same_as_derived(spans, _derived(await pg_store.read_stream(run_stream(run_id))))
    finally:
        await up.stop()
        if again is not None:
            await again.stop()
        await receiver.stop()
    assert any("exporting traces to" in line for line in up.lines)


async def test_a_takeover_after_sigkill_keeps_one_trace_and_shows_the_lost_attempt(
    pg_store: PostgresEventStore, database_url: str, tmp_path: Path
) -> None:
    receiver = Receiver()
    await receiver.start()
    path = tmp_path / "crashy.py"
    path.write_text(CRASHY)
    marker = tmp_path / "marker"
    spec = load_workflows(path).get("crashy").spec
    env = clean_env(**otel(receiver), MARKER=str(marker))
    first = Up(database_url, path, env)
    second = None
    try:
        await tracing_started(pg_store)
        run_id, _ = await create_run(pg_store, spec, {})
        trace_id = run_trace_id(run_id)
        await until(marker.exists, "the slow attempt started")
        # `first` ended before the kill: its span is out and its position stored
        await receiver.wait_for(lambda: "task first" in by_name(receiver.of_trace(trace_id)))
        records = await pg_store.read_stream(run_stream(run_id))
        done = next(r for r in records if isinstance(r.event, TaskSucceeded))

        async def stored() -> bool:
            return await pg_store.tracking.log_position("traces") >= done.position

        await until(stored, "the exported position stored")
        assert await first.stop(signal.SIGKILL) == -signal.SIGKILL

        second = Up(database_url, path, env)
        assert (await wait_for_run(pg_store, run_id, timeout=60)).status == "succeeded"
        await receiver.wait_for(lambda: "run crashy" in by_name(receiver.of_trace(trace_id)))
    finally:
        await first.stop(signal.SIGKILL)
        if second is not None:
            await second.stop()
        await receiver.stop()
    spans = receiver.of_trace(trace_id)
    same_as_derived(spans, _derived(await pg_store.read_stream(run_stream(run_id))))
    named = by_name(spans)
    (run,) = named["run crashy"]  # one run span, in the trace the first executor began
    lost, retried = named["task slow"]
    assert lost.status == 2 and lost.attributes["error.type"] == "ExecutorLost"
    assert lost.attributes["durable.attempt.status"] == "lost"
    assert lost.attributes["durable.executor"] == first.executor
    assert retried.attributes["durable.executor"] == second.executor
    events = dict(run.events)
    assert events["attempt_lost"] == {
        "durable.task": "slow",
        "durable.generation": 1,
        "durable.attempt": 1,
        "durable.executor": first.executor,
    }
    assert events["takeover"] == {
        "durable.executor": second.executor,
        "durable.executor.previous": first.executor,
    }
    assert named["task first"][0].attributes["durable.executor"] == first.executor


async def test_a_run_triggered_over_http_continues_the_callers_trace(
    pg_store: PostgresEventStore, database_url: str, tmp_path: Path
) -> None:
    receiver = Receiver()
    await receiver.start()
    path = tmp_path / "traced.py"
    path.write_text(TRACED)
    caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    service = await asyncio.to_thread(start_service, database_url, path, env=otel(receiver))
    try:
        await tracing_started(pg_store)
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"{service.url}/api/v1/workflows/traced/runs",
                json={},
                headers={"Authorization": f"Bearer {service.token}", "traceparent": caller},
            ) as response,
        ):
            assert response.status == 202, await response.text()
            run_id = (await response.json())["run_id"]
        await wait_for_run(pg_store, run_id)
        producer = parse_traceparent(caller)
        assert producer is not None
        await receiver.wait_for(
            lambda: "run traced" in by_name(receiver.of_trace(producer.trace_id))
        )
    finally:
        await asyncio.to_thread(service.stop)
        await receiver.stop()
    spans = receiver.of_trace(producer.trace_id)
    (run,) = by_name(spans)["run traced"]
    assert run.parent_span_id == f"{producer.span_id:016x}"  # the caller's span
    assert run.kind == 5  # CONSUMER
    assert run.attributes["durable.trigger.kind"] == "api"
    assert len(spans) == 4 and {s.parent_span_id for s in spans if s is not run} == {run.span_id}
    assert not receiver.of_trace(run_trace_id(run_id))  # no trace of its own
    same_as_derived(spans, _derived(await pg_store.read_stream(run_stream(run_id))))


async def test_a_collector_away_delays_spans_and_loses_none(
    pg_store: PostgresEventStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "traced.py"
    path.write_text(TRACED)
    loaded = load_workflows(path).get("traced")
    receiver = Receiver()
    await receiver.start()
    receiver.refuse = True
    config = TracesConfig(endpoint=f"{receiver.url}/v1/traces", delay=0.05)
    # a short export timeout: each refused export gives up after about two seconds
    exporter = OTLPSpanExporter(endpoint=config.endpoint, timeout=2)
    service = TraceService(pg_store, config, exporter=exporter)
    stop = asyncio.Event()
    exporting = asyncio.create_task(service.run(stop))
    try:
        await tracing_started(pg_store)
        start = await pg_store.tracking.log_position("traces")
        async with running_executor(pg_store, registry_of_loaded(loaded)):
            run_id, _ = await create_run(pg_store, loaded.spec, {})
            await wait_for_run(pg_store, run_id)
        await until(lambda: service.collector.down, "the collector seen away")
        records = await pg_store.read_stream(run_stream(run_id))
        first_end = next(r for r in records if isinstance(r.event, TaskRetryScheduled))
        # the position stays short of the first span's end while the collector refuses
        assert start <= await pg_store.tracking.log_position("traces") < first_end.position
        receiver.refuse = False
        await receiver.wait_for(lambda: "run traced" in by_name(receiver.spans))
    finally:
        stop.set()
        await exporting
        await receiver.stop()
    same_as_derived(receiver.spans, _derived(await pg_store.read_stream(run_stream(run_id))))
    assert service.exported == 4 and not service.collector.down
    assert await pg_store.tracking.log_position("traces") == await pg_store.last_position()
    # said once when it went (with the reason) and once when it was back; the exporter's
    # own line for each retry is not printed
    said = [r.getMessage() for r in caplog.records if r.name.startswith(("durable", "opentel"))]
    assert len(said) == 2, said
    assert said[0].startswith(f"OTLP collector {config.endpoint} unavailable (")
    assert "Service Unavailable" in said[0]
    assert said[1].startswith(f"OTLP collector {config.endpoint} back after")


async def test_without_an_endpoint_nothing_starts(
    pg_store: PostgresEventStore, database_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "traced.py"
    path.write_text(TRACED)
    spec = load_workflows(path).get("traced").spec
    up = Up(database_url, path, clean_env())
    try:
        run_id, _ = await create_run(pg_store, spec, {})
        assert (await wait_for_run(pg_store, run_id)).status == "succeeded"
    finally:
        assert await up.stop() == 0
    assert not [line for line in up.lines if "exporting traces" in line]
    assert any("durable up: stopped" in line for line in up.lines)
    # the exporter never ran: it never even took a position in the log
    assert await pg_store.tracking.log_position(STARTED) == 0
    assert await pg_store.tracking.log_position("traces") == 0


def test_only_the_standard_variables_turn_tracing_on() -> None:
    endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/"}
    assert traces_config({}) is None
    assert traces_config({"OTEL_SERVICE_NAME": "x"}) is None
    on = traces_config(endpoint)
    assert on == TracesConfig(endpoint="http://collector:4318/v1/traces", delay=5.0, batch=512)
    assert traces_config(
        {**endpoint, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://other:4318/traces"}
    ) == TracesConfig(endpoint="http://other:4318/traces")
    assert traces_config({"OTEL_TRACES_EXPORTER": "otlp"}) == TracesConfig(
        endpoint="http://localhost:4318/v1/traces"
    )
    assert traces_config({**endpoint, "OTEL_TRACES_EXPORTER": "none"}) is None
    assert traces_config({**endpoint, "OTEL_SDK_DISABLED": "true"}) is None
    tuned = {**endpoint, "OTEL_BSP_SCHEDULE_DELAY": "250", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "64"}
    assert traces_config(tuned) == TracesConfig(
        endpoint="http://collector:4318/v1/traces", delay=0.25, batch=64
    )
    with pytest.raises(DurableError, match="http/protobuf only"):
        traces_config({**endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
    with pytest.raises(DurableError, match="OTLP only"):
        traces_config({**endpoint, "OTEL_TRACES_EXPORTER": "zipkin"})
    with pytest.raises(DurableError, match="not a positive whole number"):
        traces_config({**endpoint, "OTEL_BSP_SCHEDULE_DELAY": "soon"})


def test_durable_up_refuses_a_protocol_it_cannot_speak(tmp_path: Path) -> None:
    path = tmp_path / "traced.py"
    path.write_text(TRACED)
    env = clean_env(
        OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:4317", OTEL_EXPORTER_OTLP_PROTOCOL="grpc"
    )
    done = subprocess.run(
        [sys.executable, "-m", "durable", "up", "--workflows", str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "error: OTLP protocol 'grpc': durable exports traces over http/protobuf only" in (
        done.stderr
    )

"""`durable trace RUN_ID`: a past run's trace rebuilt from its history — printed as a tree,
as OTLP JSON, from an exported file offline, and exported to a real OTLP receiver."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from google.protobuf.json_format import ParseDict
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from durable.cli import main
from durable.core.history import read_history_file
from durable.core.trace import RunTrace, run_trace_id, trace_of
from tests.otlp import Receiver

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "daily_sales_history.jsonl"
RUN = "01JDSALES20261121"  # failed on `report`, then rerun: generation 2 succeeded
NOWHERE = "postgresql://nobody@127.0.0.1:1/nothing"  # no database answers there


@pytest.fixture
def cli(database_url: str):  # type: ignore[no-untyped-def]
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(main, ["--database-url", database_url, *args])

    result = invoke("import", str(EXAMPLE))
    assert result.exit_code == 0, result.output
    return invoke


def derived() -> RunTrace:
    records = [r for r in read_history_file(EXAMPLE) if r.stream_id == f"run:{RUN}"]
    built = trace_of(records)
    assert built is not None
    return built


def test_trace_prints_the_run_as_a_tree(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("trace", RUN)
    assert result.exit_code == 0, result.output
    lines = [line.rstrip() for line in result.output.splitlines()]
    assert lines[0] == (
        f"trace {run_trace_id(RUN):032x}     +0.000 s  run daily_sales  (run {RUN})  "
        "failed  16.78 s  KeyError: task report failed"
    )
    body = "\n".join(lines[1:])
    for expected in (
        "├──    +0.012 s  ⚑ run_started  executor=host-a:4711",
        "├──    +2.484 s  task load #1  failed  2.10 s  (queued 3 ms)  "
        "ConnectionError: warehouse closed the connection",
        "├──   +14.587 s  task load #2  succeeded  1.80 s  (queued 3 ms)",
        "├──   +16.395 s  task report #1  failed  380 ms  (queued 3 ms)  "
        "KeyError: 'currency' missing in 3 rows",
        # the rerun: a span of its own (the run's first end is its span's end)
        "└── +3616.779 s  rerun daily_sales g2  (rr-7d2e: report, by alice)  succeeded  462 ms",
        "    └── +3616.787 s  task report #1 g2  succeeded  450 ms  (queued 3 ms)",
    ):
        assert expected in body, expected
    # the run, its rerun, their attempts, 1 event
    assert len(lines) == 1 + 1 + len(derived().attempts) + 1


def test_trace_file_works_offline_on_an_exported_history(
    cli,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    exported = cli("export", RUN)
    path = tmp_path / "run.jsonl"
    path.write_text(exported.output)
    online = cli("trace", RUN).output
    runner = CliRunner()
    offline = runner.invoke(main, ["--database-url", NOWHERE, "trace", "--file", str(path)])
    assert offline.exit_code == 0, offline.output
    assert offline.output == online
    piped = runner.invoke(
        main, ["--database-url", NOWHERE, "trace", "--file", "-"], input=exported.output
    )
    assert piped.output == online
    # a file of several runs: say which
    both = runner.invoke(main, ["trace", "--file", str(EXAMPLE)])
    assert both.exit_code == 2
    assert "holds 2 runs; say which one (runs in it: 01JDSALES20261120, 01JDSALES20261121)" in (
        both.output
    )
    one = runner.invoke(main, ["trace", RUN, "--file", str(EXAMPLE)])
    assert one.exit_code == 0 and one.output == online
    missing = runner.invoke(main, ["trace", "01NOPE", "--file", str(EXAMPLE)])
    assert missing.exit_code == 2 and "holds no run 01NOPE" in missing.output


def test_trace_of_an_unknown_run_is_one_clear_error(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("trace", "01NOPE")
    assert result.exit_code == 2
    assert result.output.startswith("error: ") and "01NOPE" in result.output


def test_trace_json_is_the_otlp_request_a_collector_takes(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("trace", RUN, "--json")
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    (resource,) = body["resourceSpans"]
    service = {a["key"]: a["value"] for a in resource["resource"]["attributes"]}["service.name"]
    assert service == {"stringValue": "durable"}
    (scope,) = resource["scopeSpans"]
    spans = scope["spans"]
    want = derived()
    assert [s["spanId"] for s in spans] == [f"{d.span_id:016x}" for d in want.spans]
    assert {s["traceId"] for s in spans} == {f"{want.trace_id:032x}"}
    run, rerun, *attempts = spans
    assert "parentSpanId" not in run and run["kind"] == 1  # INTERNAL, an OTLP enum number
    assert rerun["parentSpanId"] == run["spanId"] and rerun["name"] == "rerun daily_sales"
    # generation 1's attempts are the run's children, generation 2's the rerun's
    assert [a["parentSpanId"] for a in attempts] == [run["spanId"]] * (len(attempts) - 1) + [
        rerun["spanId"]
    ]
    failed = [a for a in attempts if a.get("status", {}).get("code") == 2]
    assert [a["name"] for a in failed] == ["task load", "task report"]
    # hex ids back to bytes: the rest is protobuf's JSON mapping, which parses as the proto
    for span in spans:
        for field in ("traceId", "spanId", "parentSpanId"):
            if field in span:
                span[field] = base64.b64encode(bytes.fromhex(span[field])).decode()
    request = ParseDict(body, ExportTraceServiceRequest())
    parsed = request.resource_spans[0].scope_spans[0].spans
    assert [s.name for s in parsed] == [d.name for d in want.spans]
    assert parsed[0].end_time_unix_nano - parsed[0].start_time_unix_nano == 16_779_000_000


async def _durable(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "durable",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_trace_export_sends_a_past_run_to_the_collector(database_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "DURABLE_"))}
    code, _, err = await _durable("--database-url", database_url, "import", str(EXAMPLE), env=env)
    assert code == 0, err
    code, _, err = await _durable("--database-url", database_url, "trace", RUN, "--export", env=env)
    assert code == 2
    assert "error: no OTLP endpoint to export to (set OTEL_EXPORTER_OTLP_ENDPOINT" in err
    receiver = Receiver()
    await receiver.start()
    try:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = receiver.url
        code, out, err = await _durable(
            "--database-url", database_url, "trace", RUN, "--export", env=env
        )
    finally:
        await receiver.stop()
    assert code == 0, err
    want = derived()
    assert out == (
        f"exported {len(want.spans)} spans of trace {want.trace_id:032x} to "
        f"{receiver.url}/v1/traces\n"
    )
    assert [s.span_id for s in receiver.spans] == [f"{d.span_id:016x}" for d in want.spans]
    assert receiver.requests == 1


async def test_run_here_sends_its_trace_and_metrics(database_url: str) -> None:
    from tests.test_metrics import Receiver as MetricsReceiver

    traces, metrics = Receiver(), MetricsReceiver()
    await traces.start()
    await metrics.start()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "DURABLE_"))}
    env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = f"{traces.url}/v1/traces"
    env["OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"] = f"{metrics.url}/v1/metrics"
    try:
        code, out, err = await _durable(
            "--database-url",
            database_url,
            "run",
            "daily_sales",
            "--workflows",
            str(ROOT / "examples" / "daily_sales.py"),
            "--param",
            "date=2026-11-21",
            "--here",
            env=env,
        )
    finally:
        await traces.stop()
        await metrics.stop()
    assert code == 0, err
    run_id = out.split()[2]  # "started run ID of …"
    assert f"exported the run's trace ({len(traces.spans)} spans)" in out
    names = [s.name for s in traces.of_trace(run_trace_id(run_id))]
    assert names[0] == "run daily_sales", names
    assert {"task fetch_orders", "task report"} <= set(names), names
    finished = metrics.points("durable.runs.finished")
    assert [(a, p.as_int) for a, p in finished] == [
        ({"workflow": "daily_sales", "status": "succeeded"}, 1)
    ]

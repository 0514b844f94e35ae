"""``durable trace RUN_ID``: a run's trace, rebuilt from its history (the log is the trace).

Printed as a tree of spans (the run, its attempts, what happened to it), as OTLP JSON
(``--json``: an ``ExportTraceServiceRequest`` a collector's ``/v1/traces`` accepts with
``Content-Type: application/json``), or sent to the OTLP endpoint of the ``OTEL_*``
variables (``--export``). ``--file`` works offline on an exported history.
"""

from __future__ import annotations

import base64
import json
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from rich.text import Text
from rich.tree import Tree

from durable.cli import Context, main, pass_context
from durable.cli.inspect import console, run_records
from durable.core.errors import DurableError, MalformedEvent
from durable.core.events import Recorded, run_stream
from durable.core.history import read_history_file, read_history_lines
from durable.core.trace import RunTrace, SpanData, trace_of
from durable.store.base import EventStore

__all__ = ["otlp_json", "trace", "trace_tree"]


@main.command()
@click.argument("run_id", required=False)
@click.option(
    "--file",
    "file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Rebuild from an exported history (.jsonl, or - for stdin), offline.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the spans as OTLP JSON.")
@click.option(
    "--export",
    "send",
    is_flag=True,
    help="Send the trace to the OTLP endpoint of OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT.",
)
@pass_context
def trace(ctx: Context, run_id: str | None, file: Path | None, as_json: bool, send: bool) -> None:
    """Rebuild the trace of a run from its history: the run's span, one span per task
    attempt (retries, reruns, attempts lost in a crash), with their durations and status."""
    if run_id is None and file is None:
        raise click.UsageError("give a RUN_ID, or --file (and a RUN_ID if it holds several runs)")
    if file is not None:
        records = _from_file(file, run_id)
    else:
        assert run_id is not None

        async def load(store: EventStore) -> list[Recorded]:
            return await run_records(store, run_id)

        records = ctx.run(load)
    built = trace_of(records)
    if built is None:  # pragma: no cover - a run's history is never empty here
        raise DurableError("no events to trace")
    open_spans = sum(s.end is None for s in built.spans)
    if open_spans and (as_json or send):
        click.echo(
            f"{open_spans} span(s) still open (the run goes on): left out until they end",
            err=True,
        )
    if send:
        _export(built)
    if as_json:
        sys.stdout.write(json.dumps(otlp_json(built)) + "\n")
    elif not send:
        console().print(trace_tree(built))


def _from_file(file: Path, run_id: str | None) -> list[Recorded]:
    if str(file) == "-":
        records = list(read_history_lines(sys.stdin.buffer, source="<stdin>"))
    else:
        records = read_history_file(file)
    runs = sorted({r.stream_id for r in records if r.stream_id.startswith("run:")})
    if run_id is not None:
        if run_stream(run_id) not in runs:
            raise MalformedEvent(str(file), f"holds no run {run_id}", hint=_which(runs))
        return [r for r in records if r.stream_id == run_stream(run_id)]
    if len(runs) != 1:
        raise MalformedEvent(str(file), f"holds {len(runs)} runs; say which one", hint=_which(runs))
    return [r for r in records if r.stream_id == runs[0]]


def _which(runs: list[str]) -> str:
    if not runs:
        return "export a run with `durable export RUN_ID`"
    shown = ", ".join(r.removeprefix("run:") for r in runs[:5])
    return f"runs in it: {shown}{', …' if len(runs) > 5 else ''}"


def _export(built: RunTrace) -> None:
    from durable.runtime import tracing
    from durable.runtime.spans import SpanBuilder

    config = tracing.traces_config(os.environ)
    if config is None:
        raise DurableError(
            "no OTLP endpoint to export to",
            hint="set OTEL_EXPORTER_OTLP_ENDPOINT, e.g. http://localhost:4318",
        )
    spans = SpanBuilder().build(built)
    exporter = tracing.make_exporter(config)
    try:
        if not tracing.export_spans(exporter, spans, config.batch):
            raise DurableError(
                f"the collector at {config.endpoint} did not accept the trace",
                hint="is it running? the OTEL_EXPORTER_OTLP_* settings right?",
            )
    finally:
        exporter.shutdown()
    if not spans and built.spans:
        click.echo(
            "the sampler (OTEL_TRACES_SAMPLER, or the producer's traceparent) "
            "drops this trace: nothing exported",
            err=True,
        )
        return
    click.echo(f"exported {len(spans)} spans of trace {built.trace_id:032x} to {config.endpoint}")


# -- the tree ----------------------------------------------------------------------------


def trace_tree(built: RunTrace) -> Tree:
    """The trace as a tree: the run, then its attempts and events in time order (a map's
    items under the map's span)."""
    run = built.run
    origin = run.start
    root = Tree(
        Text.assemble(
            (f"trace {built.trace_id:032x}", "dim"),
            f"  {_span_line(run, origin)}",
        )
    )
    children: dict[int, list[SpanData]] = {}
    for span in (*built.reruns, *built.attempts):
        children.setdefault(span.parent_span_id or 0, []).append(span)

    def grow(node: Tree, span: SpanData) -> None:
        entries: list[tuple[datetime, int, Any]] = [
            (c.start, 1, c) for c in children.get(span.span_id, [])
        ]
        if span is run or span in built.reruns:
            entries += [(e.at, 0, e) for e in span.events]
        for _, _, entry in sorted(entries, key=lambda x: (x[0], x[1])):
            if isinstance(entry, SpanData):
                grow(node.add(_span_line(entry, origin)), entry)
            else:
                details = " ".join(
                    f"{k.removeprefix('durable.')}={_value(v)}" for k, v in entry.attributes.items()
                )
                node.add(Text(f"{_offset(entry.at, origin)}  ⚑ {entry.name}  {details}", "cyan"))

    grow(root, run)
    return root


def _span_line(span: SpanData, origin: datetime) -> Text:
    attrs = span.attributes
    if "durable.rerun.request_id" in attrs:
        tasks = attrs.get("durable.rerun.tasks") or ()
        label = (
            f"{span.name} g{attrs['durable.generation']}  ({attrs['durable.rerun.request_id']}: "
            f"{', '.join(tasks) if isinstance(tasks, tuple) else tasks}"
            + (" and downstream" if attrs.get("durable.rerun.downstream") else "")
            + (f", by {attrs['durable.by']}" if attrs.get("durable.by") else "")
            + ")"
        )
        status = str(attrs.get("durable.run.status", "running"))
    elif span.parent_span_id is None or "durable.task" not in attrs:
        label = f"{span.name}  (run {attrs['durable.run.id']})"
        status = str(attrs["durable.run.status"])
    else:
        generation = attrs["durable.generation"]
        label = f"{span.name} #{attrs['durable.attempt']}" + (
            f" g{generation}" if generation != 1 else ""
        )
        status = str(attrs["durable.attempt.status"])
    took = _duration((span.end - span.start).total_seconds()) if span.end else "…"
    style = "red" if span.status == "error" else "green" if status == "succeeded" else ""
    text = Text.assemble(f"{_offset(span.start, origin)}  {label}  ", (status, style), f"  {took}")
    queued = attrs.get("durable.queue.duration")
    if isinstance(queued, float) and queued >= 0.001:
        text.append(f"  (queued {_duration(queued)})", "dim")
    if span.status == "error":
        message = span.status_message.replace("\n", " ")
        what = (
            f"{attrs.get('error.type', 'error')}: {message}" if message else attrs.get("error.type")
        )
        text.append(f"  {str(what)[:100]}", "red")
    return text


def _offset(at: datetime, origin: datetime) -> str:
    return f"+{(at - origin).total_seconds():.3f} s".rjust(11)


def _duration(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _value(value: object) -> str:
    return ",".join(value) if isinstance(value, tuple) else str(value)


# -- OTLP JSON ---------------------------------------------------------------------------


def otlp_json(built: RunTrace) -> dict[str, Any]:
    """The trace's ended spans as an OTLP/JSON ``ExportTraceServiceRequest``: the
    protobuf the exporter sends, in the JSON mapping with OTLP's own rules (hex ids,
    integer enums)."""
    from google.protobuf.json_format import MessageToDict
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON

    from durable.runtime.spans import SpanBuilder

    # every span, whatever a sampler would keep: this is a reading of the history
    request = encode_spans(SpanBuilder(sampler=ALWAYS_ON).build(built))
    body: dict[str, Any] = MessageToDict(request, use_integers_for_enums=True)
    for resource in body.get("resourceSpans", []):
        for scope in resource.get("scopeSpans", []):
            for span in scope.get("spans", []):
                for field in ("traceId", "spanId", "parentSpanId"):
                    if field in span:
                        span[field] = base64.b64decode(span[field]).hex()
    return body

"""Running workflows: run, logs, cancel, pause, resume, rerun (`durable up` is in up.py)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import click

from durable.application.archive import ArchiveReader, run_logs
from durable.application.commands import apply_command
from durable.application.ids import new_run_id
from durable.application.logs import LogsEnded, follow_logs
from durable.application.runs import create_run, register_versions
from durable.cli import Context, main, pass_context
from durable.cli.inspect import archived_note, load_run, run_records
from durable.cli.render import short_json, waiting_on, when
from durable.core.decide import Cancel, Command, Pause, Rerun, Resume, decide_command
from durable.core.events import (
    RerunQueued,
    RunCancelled,
    RunFailed,
    RunPaused,
    RunResumed,
    RunStarted,
    RunSucceeded,
    TaskFailed,
    TaskRetryScheduled,
    TaskSkipped,
    TaskStarted,
    TaskSucceeded,
    TaskWaiting,
    run_stream,
)
from durable.core.fold import evolve, fold
from durable.core.spec import DefinitionError
from durable.core.state import TERMINAL_RUN, rerun_plan
from durable.runtime.executor import Executor
from durable.store.base import EventStore
from durable.store.rows import ArchivedRun, LogLine
from durable.workflows.loader import WorkflowRegistry, load_workflows

__all__ = [
    "cancel",
    "follow",
    "load",
    "logs",
    "parse_params",
    "pause",
    "rerun",
    "resume",
    "run",
    "workflows_option",
]

WORKFLOWS_HELP = "File or folder of workflow definitions (.py, .yaml) [env DURABLE_WORKFLOWS]."


def workflows_option(f: Any) -> Any:
    return click.option(
        "--workflows",
        "workflows_path",
        type=click.Path(path_type=Path),
        envvar="DURABLE_WORKFLOWS",
        default="workflows",
        show_default=True,
        help=WORKFLOWS_HELP,
    )(f)


def load(path: Path) -> WorkflowRegistry:
    registry = load_workflows(path)
    if not len(registry):
        raise DefinitionError(
            str(path),
            "defines no workflow",
            hint="a .py file with a Workflow(...), or a .yaml file",
        )
    from durable.runtime.tasks import spark

    for loaded in registry:  # what a Spark task needs here: refused now, not when it runs
        spark.check_workflow(loaded.spec)
    return registry


def parse_params(values: tuple[str, ...]) -> dict[str, str]:
    params: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not key=value", param_hint="--param")
        params[key] = value
    return params


@main.command()
@click.argument("workflow")
@workflows_option
@click.option(
    "--param", "-p", "params", multiple=True, metavar="KEY=VALUE", help="A run parameter (repeat)."
)
@click.option("--idempotency-key", help="The same key always means the same run.")
@click.option(
    "--wait", is_flag=True, help="Stream task progress; exit 0 if the run succeeds, 1 if not."
)
@click.option("--here", is_flag=True, help="Also execute the run in this process (implies --wait).")
@pass_context
def run(
    ctx: Context,
    workflow: str,
    workflows_path: Path,
    params: tuple[str, ...],
    idempotency_key: str | None,
    wait: bool,
    here: bool,
) -> None:
    """Start a run of WORKFLOW (durable before this returns)."""
    registry = load(workflows_path)
    loaded = registry.get(workflow)
    given = parse_params(params)

    async def go(store: EventStore) -> str:
        await register_versions(store, registry)
        run_id, created = await create_run(
            store, loaded.spec, given, idempotency_key=idempotency_key, params_from="text"
        )
        click.echo(
            f"{'started' if created else 'already exists:'} run {run_id} of {workflow}@{loaded.spec.version}"
        )
        if not (wait or here):
            return "started"
        stop = asyncio.Event()
        executing = None
        telemetry = None
        if here:
            telemetry = _here_telemetry()
            executor = Executor(store, registry, poll_interval=0.2, telemetry=telemetry)
            executing = asyncio.create_task(executor.run(stop))
        try:
            status = await follow(store, run_id)
        finally:
            stop.set()
            if executing is not None:
                await executing
            if telemetry is not None:
                await asyncio.to_thread(telemetry.shutdown)  # its metrics' last export
        click.echo(f"run {run_id} {status}; `durable history {run_id}` shows every event")
        if here and status in TERMINAL_RUN:
            await _export_trace(store, run_id)
        return status

    status = ctx.run(go)
    if status not in ("started", "succeeded"):
        sys.exit(1)


def _here_telemetry() -> Any:
    """The OpenTelemetry metrics of a run executed here, when OTLP export is configured
    (``OTEL_EXPORTER_OTLP_ENDPOINT``…): sent when the run ends. None otherwise."""
    from durable.telemetry import Telemetry, otlp_endpoint

    if otlp_endpoint(os.environ) is None:
        return None
    return Telemetry()


async def _export_trace(store: EventStore, run_id: str) -> None:
    """Send the run's trace (derived from its log) when OTLP trace export is configured;
    a collector that is away is said, never fatal: ``durable trace RUN --export`` sends it
    later."""
    from durable.core.trace import trace_of
    from durable.runtime import tracing

    config = tracing.traces_config(os.environ)
    if config is None:
        return
    from durable.runtime.spans import SpanBuilder

    built = trace_of(await run_records(store, run_id))
    if built is None:
        return
    spans = SpanBuilder().build(built)
    exporter = tracing.make_exporter(config)
    try:
        sent = await asyncio.to_thread(tracing.export_spans, exporter, spans, config.batch)
    finally:
        exporter.shutdown()
    if sent:
        click.echo(f"exported the run's trace ({len(spans)} spans) to {config.endpoint}")
    else:
        click.echo(
            f"the collector at {config.endpoint} did not take the run's trace; "
            f"`durable trace {run_id} --export` sends it again",
            err=True,
        )


async def follow(store: EventStore, run_id: str) -> str:
    """Print a run's task progress until it ends; returns its final status."""
    stream = run_stream(run_id)
    state = None
    seq = 0
    while True:
        records = await store.read_stream(stream, seq)
        for r in records:
            state = evolve(state, r)
            seq = r.seq
            line = _progress_line(state, r.event)
            if line:
                click.echo(f"{when(r.recorded_at)[11:]}  {line}")
        if state is not None and state.is_terminal:
            return state.status
        await store.wait_for_events(await store.last_position(), 1.0)


def _progress_line(state: Any, event: Any) -> str:
    match event:
        case RunStarted():
            return f"run started on {event.executor}"
        case TaskStarted():
            again = f" (attempt {event.attempt})" if event.attempt > 1 else ""
            return f"▶ {event.task}{again}"
        case TaskWaiting():
            return f"⧗ {event.task} {waiting_on(event.job, event.state)}"
        case TaskSucceeded():
            t = state.tasks[event.task]
            took = (t.finished_at - t.started_at).total_seconds() if t.started_at else 0
            return f"✔ {event.task} in {took:.2f} s → {short_json(event.output, 70)}"
        case TaskRetryScheduled():
            return f"↻ {event.task} failed ({event.error.type}: {event.error.message}); retry at {when(event.retry_at)[11:]}"
        case TaskFailed():
            return f"✘ {event.task} failed: {event.error.type}: {event.error.message}"
        case TaskSkipped():
            return f"⤼ {event.task} skipped: {event.reason}"
        case RunSucceeded():
            return "run succeeded"
        case RunFailed():
            return f"run failed: {event.reason}"
        case RunCancelled() | RunPaused():
            return f"run {'cancelled' if isinstance(event, RunCancelled) else 'paused'}: {event.reason}"
        case RunResumed():
            return "run resumed"
    return ""


@main.command()
@click.argument("run_id")
@click.argument("task", required=False)
@click.option("--attempt", type=int, help="Only this attempt.")
@click.option(
    "--follow",
    "-f",
    is_flag=True,
    help="Print the lines as they are written, until the run (or TASK) ends.",
)
@pass_context
def logs(ctx: Context, run_id: str, task: str | None, attempt: int | None, follow: bool) -> None:
    """Print the stored logs of a run's tasks (stdout, stderr, ctx.log)."""

    async def check(store: EventStore) -> ArchivedRun | None:
        records, archive = await load_run(store, run_id)
        state = fold(records)
        if task is not None and state is not None and task not in state.tasks:
            raise DefinitionError(
                f"run {run_id}", f"has no task {task!r}", hint=f"tasks: {', '.join(state.tasks)}"
            )
        return archive

    async def read(store: EventStore) -> list[LogLine]:
        archive = await check(store)
        archived_note(archive)
        async with ArchiveReader() as reader:
            return await run_logs(
                store, run_id, reader, task=task, attempt=attempt, archive=archive
            )

    async def tail(store: EventStore) -> None:
        await check(store)
        async for found in follow_logs(store, run_id, task=task, attempt=attempt):
            if isinstance(found, LogsEnded):
                what = f"task {task}" if task else f"run {run_id}"
                status = found.task_status if task and found.task_status else found.status
                click.echo(f"{what} {status}", err=True)
                return
            for r in found:
                _print_line(r)

    if follow:
        ctx.run(tail)
        return
    rows = ctx.run(read)
    if not rows:
        click.echo("no log lines stored", err=True)
    for r in rows:
        _print_line(r)


def _print_line(r: LogLine) -> None:
    tag = f"{r.task}#{r.attempt}" + (f" g{r.generation}" if r.generation > 1 else "")
    click.echo(f"{when(r.at)[11:]} {tag} {r.stream}: {r.message}")


def _command(
    ctx: Context, run_id: str, command: Command, verb: str, *, follow_run: bool = False
) -> None:
    async def go(store: EventStore) -> str:
        state, appended = await apply_command(store, run_id, command)
        if not appended:
            if isinstance(command, Rerun):
                if any(q.request_id == command.request_id for q in state.queued):
                    return f"rerun request {command.request_id} is already queued on run {run_id}"
                return f"rerun request {command.request_id} was already applied to run {run_id}"
            return f"run {run_id} is already {state.status}"
        said = verb
        if isinstance(appended[-1].event, RerunQueued):
            said = f"rerun queued (applied when the run ends; it is {state.status}) for"
        if follow_run:
            click.echo(f"{said} run {run_id}")
            return await follow(store, run_id)
        return f"{said} run {run_id}"

    outcome = ctx.run(go)
    if follow_run:
        if outcome != "succeeded":
            sys.exit(1)
        return
    click.echo(outcome)


OPERATOR = os.environ.get("USER") or "cli"


@main.command()
@click.argument("run_id")
@click.argument("tasks", nargs=-1, required=True)
@click.option("--downstream", is_flag=True, help="Also rerun every task that depends on them.")
@click.option("--failed-only", is_flag=True, help="Only the selected tasks that did not succeed.")
@click.option("--dry-run", is_flag=True, help="Show what would run again and what is reused.")
@click.option("--request-id", help="Idempotency: the same id never reruns twice (default: new).")
@click.option(
    "--queue", is_flag=True, help="If the run is still going, rerun when it ends (not refuse)."
)
@click.option("--wait", is_flag=True, help="Follow the rerun; exit 0 if the run succeeds.")
@pass_context
def rerun(
    ctx: Context,
    run_id: str,
    tasks: tuple[str, ...],
    downstream: bool,
    failed_only: bool,
    dry_run: bool,
    request_id: str | None,
    queue: bool,
    wait: bool,
) -> None:
    """Rerun TASKS of a finished run as a new generation; upstream outputs are reused."""
    command = Rerun(
        request_id=request_id or f"rerun-{new_run_id()}",
        tasks=tasks,
        downstream=downstream,
        failed_only=failed_only,
        by=OPERATOR,
        queue=queue,
    )
    if dry_run:

        async def plan(store: EventStore) -> str:
            state = fold(await run_records(store, run_id))
            assert state is not None
            decide_command(state, command)  # refuses what the real rerun would refuse
            chosen, kept = rerun_plan(state, tasks, downstream=downstream, failed_only=failed_only)
            return (
                f"would rerun as generation {state.generation + 1}: {', '.join(chosen)}\n"
                f"would reuse the outputs of: {', '.join(kept) or '-'}"
            )

        click.echo(ctx.run(plan))
        return
    _command(ctx, run_id, command, "rerun requested for", follow_run=wait)


@main.command()
@click.argument("run_id")
@click.option("--reason", default="cancelled by user")
@pass_context
def cancel(ctx: Context, run_id: str, reason: str) -> None:
    """Cancel a run: running tasks are stopped (shell commands killed)."""
    _command(ctx, run_id, Cancel(reason=reason, by=OPERATOR), "cancelled")


@main.command()
@click.argument("run_id")
@click.option("--reason", default="")
@pass_context
def pause(ctx: Context, run_id: str, reason: str) -> None:
    """Pause a run: no new task starts; running ones finish."""
    _command(ctx, run_id, Pause(reason=reason, by=OPERATOR), "paused")


@main.command()
@click.argument("run_id")
@pass_context
def resume(ctx: Context, run_id: str) -> None:
    """Resume a paused run from its log."""
    _command(ctx, run_id, Resume(by=OPERATOR), "resumed")

"""``durable up``: the service — executor, scheduler, triggers, trace exporter, notifier,
the HTTP API and the web console — in one process, against the (embedded) database."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import click
from aiohttp import web

from durable.api import create_app
from durable.application.tokens import ensure_first_token
from durable.cli import Context, main, pass_context
from durable.cli.archive import parse_age
from durable.cli.notifications import (
    configure_notifications,
    notifications_option,
    start_notifier,
)
from durable.cli.service import load, workflows_option
from durable.runtime.archive import ArchiveService
from durable.runtime.executor import Executor
from durable.runtime.scheduler import Scheduler
from durable.runtime.triggers.assets import AssetService
from durable.runtime.triggers.kafka import KafkaTriggerService
from durable.runtime.triggers.s3 import S3PollingService
from durable.store.base import EventStore
from durable.telemetry import Telemetry
from durable.workflows.context import DEFAULT_LOG_MAX_BYTES

__all__ = ["http_endpoint", "up"]


@main.command()
@workflows_option
@click.option(
    "--max-tasks",
    default=64,
    show_default=True,
    envvar="DURABLE_MAX_TASKS",
    help="Concurrent task attempts [env DURABLE_MAX_TASKS].",
)
@click.option(
    "--max-runs",
    default=1000,
    show_default=True,
    envvar="DURABLE_MAX_RUNS",
    help="Runs held at once; the rest is left to other executors [env DURABLE_MAX_RUNS].",
)
@click.option(
    "--lease",
    default=30.0,
    show_default=True,
    envvar="DURABLE_LEASE_SECONDS",
    help="Lease of a claimed run, seconds [env DURABLE_LEASE_SECONDS].",
)
@click.option(
    "--task-log-max-bytes",
    type=click.IntRange(min=1),
    default=DEFAULT_LOG_MAX_BYTES,
    show_default=True,
    envvar="DURABLE_TASK_LOG_MAX_BYTES",
    help="Each task attempt's log cap (message text); past it, lines are dropped and "
    "counted [env DURABLE_TASK_LOG_MAX_BYTES].",
)
@click.option(
    "--kafka",
    "kafka_bootstrap",
    envvar="DURABLE_KAFKA_BOOTSTRAP",
    metavar="HOST:PORT",
    help="Kafka bootstrap servers, for workflows with kafka triggers "
    "[env DURABLE_KAFKA_BOOTSTRAP].",
)
@click.option(
    "--http",
    "http_address",
    envvar="DURABLE_HTTP",
    metavar="HOST:PORT",
    default="127.0.0.1:8080",
    show_default=True,
    help="Serve the HTTP API and the web console here [env DURABLE_HTTP].",
)
@click.option("--no-http", is_flag=True, help="Serve neither the HTTP API nor the console.")
@notifications_option
@click.option(
    "--archive-older-than",
    envvar="DURABLE_ARCHIVE_OLDER_THAN",
    metavar="AGE",
    help="Retention: archive the runs that finished more than AGE ago (30d, 12h, ...) to "
    "--archive-to, every --archive-every [env DURABLE_ARCHIVE_OLDER_THAN].",
)
@click.option(
    "--archive-to",
    envvar="DURABLE_ARCHIVE_TO",
    metavar="DIR|s3://BUCKET/PREFIX",
    help="Where retention archives runs [env DURABLE_ARCHIVE_TO].",
)
@click.option(
    "--archive-every",
    type=click.FloatRange(min=0.1),
    default=3600.0,
    show_default=True,
    envvar="DURABLE_ARCHIVE_EVERY",
    metavar="SECONDS",
    help="Seconds between two retention passes [env DURABLE_ARCHIVE_EVERY].",
)
@pass_context
def up(
    ctx: Context,
    workflows_path: Path,
    max_tasks: int,
    max_runs: int,
    lease: float,
    task_log_max_bytes: int,
    kafka_bootstrap: str | None,
    http_address: str,
    no_http: bool,
    notifications_path: Path | None,
    archive_older_than: str | None,
    archive_to: str | None,
    archive_every: float,
) -> None:
    """Run the durable service: executor, scheduler, triggers, the HTTP API and the web
    console (http://127.0.0.1:8080 unless --http or --no-http), against the (embedded)
    database."""
    retention = None
    if archive_older_than is not None:
        if not archive_to:
            raise click.UsageError(
                "--archive-older-than needs --archive-to DIR or s3://BUCKET/PREFIX"
            )
        retention = parse_age(archive_older_than, "--archive-older-than")
    registry = load(workflows_path)
    listen = None if no_http else http_endpoint(http_address)
    from durable.runtime import tracing  # the OpenTelemetry SDK: only `durable up` needs it

    traces = tracing.traces_config(os.environ)  # None: no OTEL_* endpoint, no tracing
    base_url = configure_notifications(registry, notifications_path, listen)

    async def go(store: EventStore) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        telemetry = Telemetry()  # the process's metrics: /metrics, and OTLP if configured
        telemetry.observe(store)
        executor = Executor(
            store,
            registry,
            max_tasks=max_tasks,
            max_runs=max_runs,
            lease_seconds=lease,
            task_log_max_bytes=task_log_max_bytes,
            telemetry=telemetry,
        )
        scheduler = Scheduler(store, registry, database=executor.database)
        scheduling = asyncio.create_task(scheduler.run(stop)) if scheduler.scheduled else None
        consuming = None
        if any(w.spec.kafka for w in registry):
            if not kafka_bootstrap:
                click.echo(
                    "durable up: kafka triggers defined but no --kafka / "
                    "DURABLE_KAFKA_BOOTSTRAP: they are not consumed",
                    err=True,
                )
            else:
                service = KafkaTriggerService(
                    store, registry, bootstrap=kafka_bootstrap, metrics=telemetry.kafka
                )
                consuming = asyncio.create_task(service.run(stop))
        names = ", ".join(f"{w.spec.name}@{w.spec.version}" for w in registry)
        click.echo(
            f"durable up: executor {executor.id} on {ctx.description}; workflows: {names}", err=True
        )
        exporting = None
        if traces is not None:  # first: the first start exports what ends from now on
            exporter = tracing.TraceService(store, traces, database=executor.database)
            exporting = asyncio.create_task(exporter.run(stop))
            click.echo(f"durable up: exporting traces to {traces.endpoint} (OTLP)", err=True)
        executing = asyncio.create_task(executor.run(stop))
        web_runner = None
        if listen is not None:
            host, port = listen
            first = await ensure_first_token(store.tokens)
            if first is not None:
                click.echo(
                    "durable up: first start: created an admin API token; it is shown once, "
                    "keep it (`durable tokens` manages tokens); log in to the console with "
                    f"it:\n{first}",
                    err=True,
                )
            app = create_app(store, registry, telemetry=telemetry)
            web_runner = web.AppRunner(app, access_log=None)
            await web_runner.setup()
            try:
                await web.TCPSite(web_runner, host, port).start()
            except OSError as exc:
                stop.set()
                await executing
                raise click.ClickException(
                    f"cannot serve HTTP on {host}:{port}: {exc.strerror}; "
                    "choose another address with --http HOST:PORT, or --no-http"
                ) from None
            shown = f"[{host}]" if ":" in host else host
            click.echo(
                f"durable up: HTTP API and console on http://{shown}:{port} "
                f"(open http://{shown}:{port}/ui/)",
                err=True,
            )
        polling = None
        if any(w.spec.s3 for w in registry):
            polling = asyncio.create_task(
                S3PollingService(store, registry, database=executor.database).run(stop)
            )
        tracking = None
        if any(w.spec.on_assets or any(t.produces for t in w.spec.tasks) for w in registry):
            tracking = asyncio.create_task(
                AssetService(store, registry, database=executor.database).run(stop)
            )
        notifying = start_notifier(
            store, registry, stop, base_url=base_url, database=executor.database
        )
        archiving = None
        if retention is not None and archive_to:
            archiver = ArchiveService(
                store,
                to=archive_to,
                older_than=retention,
                every=archive_every,
                database=executor.database,
            )
            archiving = asyncio.create_task(archiver.run(stop))
            click.echo(
                f"durable up: archiving runs finished over {archive_older_than} ago to "
                f"{archive_to}, every {archive_every:g} s",
                err=True,
            )
        for background in (
            executing,
            scheduling,
            consuming,
            polling,
            tracking,
            notifying,
            exporting,
            archiving,
        ):
            if background is not None:
                await background
        if web_runner is not None:
            await web_runner.cleanup()
        await asyncio.to_thread(telemetry.shutdown)  # the last OTLP export, if any
        click.echo("durable up: stopped", err=True)

    ctx.run(go)


def http_endpoint(address: str) -> tuple[str, int]:
    """``HOST:PORT`` (or ``:PORT``, on 127.0.0.1) as a host and a port number."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise click.BadParameter(
            f"{address!r} is not HOST:PORT (e.g. 127.0.0.1:8080)", param_hint="--http"
        )
    return host.strip("[]") or "127.0.0.1", int(port)

"""Notifications from the command line: ``durable notifications``; and the notifier that
``durable up`` starts (with the global rules of ``--notifications``)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import click
from rich.table import Table
from rich.text import Text

from durable.application.notifications import list_notifications
from durable.cli import Context, main, pass_context
from durable.cli.inspect import console
from durable.cli.render import STATUS_STYLE, when
from durable.runtime.notifier import Notifier, wanted
from durable.runtime.outage import Outage
from durable.store.base import EventStore
from durable.workflows.loader import WorkflowRegistry
from durable.workflows.notify import load_global_notifications

__all__ = ["configure_notifications", "notifications", "notifications_option", "start_notifier"]

STATUS_STYLE_SENT = {**STATUS_STYLE, "sent": "green", "pending": "yellow"}


def notifications_option(f: click.decorators.FC) -> click.decorators.FC:
    return click.option(
        "--notifications",
        "notifications_path",
        type=click.Path(path_type=Path, dir_okay=False),
        envvar="DURABLE_NOTIFICATIONS",
        help="Global notification rules for every workflow, and the console's base_url "
        "for links (a notifications.yaml) [env DURABLE_NOTIFICATIONS].",
    )(f)


def configure_notifications(
    registry: WorkflowRegistry, path: Path | None, http: tuple[str, int] | None
) -> str:
    """Load the global rules of ``path`` into ``registry`` (refusing a bad file before
    anything starts); returns the base URL of links in messages: ``base_url`` from the
    file, else ``$DURABLE_BASE_URL``, else the address ``durable up`` serves HTTP on."""
    base_url = os.environ.get("DURABLE_BASE_URL", "")
    if path is not None:
        found = load_global_notifications(path)
        registry.notify = found.notify
        base_url = found.base_url or base_url
    if not base_url and http is not None:
        host, port = http
        base_url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
    return base_url


def start_notifier(
    store: EventStore,
    registry: WorkflowRegistry,
    stop: asyncio.Event,
    *,
    base_url: str,
    database: Outage | None = None,
) -> asyncio.Task[None] | None:
    """Start the notifier if any rule or SLA needs it."""
    if not wanted(registry):
        return None
    rules = len(registry.notify) + sum(len(w.spec.notify) for w in registry)
    slas = sum(1 for w in registry if w.spec.sla is not None)
    click.echo(
        f"durable up: notifier on ({rules} rule(s), {slas} SLA(s)); links to "
        f"{base_url or '(no base URL: messages carry no links)'}",
        err=True,
    )
    notifier = Notifier(store, registry, base_url=base_url, database=database)
    return asyncio.create_task(notifier.run(stop), name="durable-notifier")


@main.command()
@click.option("--run", "run_id", metavar="RUN_ID", help="Only this run's notifications.")
@click.option("--failed", is_flag=True, help="Only the notifications that could not be sent.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1))
@pass_context
def notifications(ctx: Context, run_id: str | None, failed: bool, limit: int) -> None:
    """List notifications, newest first: what was sent, what failed and why, what is
    still pending."""
    views = ctx.run(
        lambda store: list_notifications(store, run_id=run_id, failed_only=failed, limit=limit)
    )
    if not views:
        click.echo("no notifications" + (" failed" if failed else ""), err=True)
        return
    table = Table(show_edge=False, pad_edge=False, header_style="bold")
    for name in ("requested (UTC)", "on", "channel", "status", "tries", "run", "detail"):
        table.add_column(name, overflow="fold")
    for v in views:
        channel = v.channel + (f" ({v.action})" if v.action else "")
        table.add_row(
            when(v.requested_at),
            v.on,
            channel,
            Text(v.status, style=STATUS_STYLE_SENT.get(v.status, "")),
            str(v.attempts) if v.attempts else "-",
            v.run_id or v.stream_id,
            v.detail or v.summary,
        )
    console().print(table)

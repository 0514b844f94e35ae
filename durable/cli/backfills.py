"""Backfills from the command line: backfill, backfills (pause, resume, cancel)."""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import click
from rich.table import Table

from durable.application.backfills import (
    backfill_progress,
    backfill_summaries,
    cancel_backfill,
    load_backfill,
    plan_backfill,
    request_backfill,
    set_backfill_paused,
)
from durable.application.runs import register_versions
from durable.cli import Context, main, pass_context
from durable.cli.inspect import console, progress_bar
from durable.cli.render import when
from durable.cli.service import OPERATOR, load, workflows_option
from durable.store.base import EventStore

__all__ = ["backfill", "backfills", "backfills_cancel", "backfills_pause", "backfills_resume"]


def _moment(value: str, zone: str, option: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a date or time; use ISO 8601 (2026-11-01 or 2026-11-01T06:00)",
            param_hint=option,
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=ZoneInfo(zone))


@main.command()
@click.argument("workflow")
@workflows_option
@click.option(
    "--start", required=True, help="First logical time (ISO; the schedule's zone if none)."
)
@click.option("--end", required=True, help="End, excluded (ISO; the schedule's zone if none).")
@click.option("--max-parallel", type=click.IntRange(1), help="Runs of this backfill at once.")
@click.option(
    "--reprocess",
    type=click.Choice(["none", "failed", "all"]),
    default="none",
    show_default=True,
    help="What to do with intervals that already have a run.",
)
@click.option("--dry-run", is_flag=True, help="List the intervals and what would happen to each.")
@click.option("--wait", is_flag=True, help="Show progress until every interval has finished.")
@pass_context
def backfill(
    ctx: Context,
    workflow: str,
    workflows_path: Path,
    start: str,
    end: str,
    max_parallel: int | None,
    reprocess: Any,
    dry_run: bool,
    wait: bool,
) -> None:
    """Run WORKFLOW once per schedule interval in [--start, --end)."""
    registry = load(workflows_path)
    spec = registry.get(workflow).spec
    zone = spec.schedule.timezone if spec.schedule else "UTC"
    begin, finish = _moment(start, zone, "--start"), _moment(end, zone, "--end")

    async def go(store: EventStore) -> int:
        await register_versions(store, registry)
        if dry_run:
            plan = await plan_backfill(store, spec, begin, finish, reprocess)
            for tick, action in zip(plan.intervals, plan.actions, strict=True):
                click.echo(f"{when(tick.start)[:16]} → {when(tick.end)[:16]}  {action}")
            counts = plan.counts()
            click.echo(
                f"{len(plan.intervals)} intervals: "
                + ", ".join(f"{n} {a}" for a, n in sorted(counts.items()))
            )
            return 0
        with progress_bar(f"backfill {workflow}: creating runs") as bar:
            task = bar.add_task("create", total=None)
            backfill_id, plan = await request_backfill(
                store,
                spec,
                begin,
                finish,
                max_parallel=max_parallel,
                reprocess=reprocess,
                by=OPERATOR,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
        counts = plan.counts()
        click.echo(
            f"backfill {backfill_id}: {len(plan.intervals)} intervals; "
            + ", ".join(f"{n} {a}" for a, n in sorted(counts.items()))
        )
        if not wait:
            return 0
        state = await load_backfill(store, backfill_id)
        total = len(plan.intervals)
        with progress_bar(f"backfill {backfill_id}") as bar:
            task = bar.add_task("runs", total=total)
            while True:
                progress = await backfill_progress(store, state)
                finished = sum(progress[s] for s in ("succeeded", "failed", "cancelled"))
                bar.update(task, completed=finished)
                if finished >= total:
                    break
                await asyncio.sleep(0.5)
        click.echo(
            f"backfill {backfill_id} done: "
            + ", ".join(f"{n} {s}" for s, n in sorted(progress.items()))
        )
        return 1 if progress["failed"] or progress["cancelled"] else 0

    if ctx.run(go):
        sys.exit(1)


@main.group(invoke_without_command=True)
@click.pass_context
def backfills(click_ctx: click.Context) -> None:
    """List backfills with their progress; pause, resume or cancel one."""
    if click_ctx.invoked_subcommand is not None:
        return
    ctx: Context = click_ctx.obj

    async def go(store: EventStore) -> list[Any]:
        return await backfill_summaries(store)

    rows = ctx.run(go)
    if not rows:
        click.echo("no backfills", err=True)
        return
    table = Table(show_edge=False, pad_edge=False, header_style="bold")
    for name in (
        "backfill",
        "workflow",
        "from",
        "to",
        "state",
        "intervals",
        "succeeded",
        "failed",
        "running",
        "waiting",
    ):
        table.add_column(name)
    for summary in rows:
        r = summary.state.request
        progress = Counter(summary.progress)
        waiting = max(0, r.intervals - sum(progress.values()) + progress["pending"])
        status = summary.status
        if summary.repeat_of is not None:
            status += f" (repeats {summary.repeat_of})"
        table.add_row(
            r.backfill_id,
            r.workflow,
            when(r.start)[:16],
            when(r.end)[:16],
            status,
            str(r.intervals),
            str(progress["succeeded"]),
            str(progress["failed"] + progress["cancelled"]),
            str(progress["running"] + progress["paused"]),
            str(waiting),
        )
    console().print(table)


@backfills.command(name="pause")
@click.argument("backfill_id")
@click.pass_obj
def backfills_pause(ctx: Context, backfill_id: str) -> None:
    """No new run of the backfill starts; running ones finish."""
    click.echo(ctx.run(lambda s: set_backfill_paused(s, backfill_id, True, OPERATOR)))


@backfills.command(name="resume")
@click.argument("backfill_id")
@click.pass_obj
def backfills_resume(ctx: Context, backfill_id: str) -> None:
    """Continue a paused backfill."""
    click.echo(ctx.run(lambda s: set_backfill_paused(s, backfill_id, False, OPERATOR)))


@backfills.command(name="cancel")
@click.argument("backfill_id")
@click.pass_obj
def backfills_cancel(ctx: Context, backfill_id: str) -> None:
    """Cancel the backfill and every unfinished run of it (none is left stuck)."""
    count = ctx.run(lambda s: cancel_backfill(s, backfill_id, OPERATOR))
    click.echo(f"cancelled backfill {backfill_id} and {count} unfinished runs")

"""The log's life cycle: ``durable archive`` moves finished runs' histories out of
PostgreSQL into compressed files (a directory, or ``s3://bucket/prefix``), ``durable
restore`` brings one back. Archived runs still read the same (history, replay, export,
logs, the API): from their archive."""

from __future__ import annotations

import re
import sys
import time
from datetime import UTC, datetime, timedelta

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from durable.application.archive import ArchiveReader, ArchiveReport, archive_runs, restore_run
from durable.cli import Context, main, pass_context
from durable.store.base import EventStore
from durable.store.objects import open_objects
from durable.store.rows import ArchivedRun

__all__ = ["AGE_HELP", "archive", "parse_age", "restore", "summary"]

_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
AGE_HELP = "a number and a unit: 45s, 90m, 12h, 30d, 2w"
TO_HELP = "Where the files go: a directory, or s3://BUCKET/PREFIX [env DURABLE_ARCHIVE_TO]."


def parse_age(value: str, param: str) -> timedelta:
    """``30d`` as a timedelta; a clear error naming ``param`` otherwise."""
    match = _AGE.match(value)
    if match is None:
        raise click.BadParameter(f"{value!r} is not an age; use {AGE_HELP}", param_hint=param)
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


def summary(report: ArchiveReport, where: str) -> str:
    """What a pass did, in one line (and why runs were kept, if any were)."""
    rate = report.archived / report.seconds if report.seconds > 0 else 0.0
    line = (
        f"archived {report.archived} runs ({report.events} events, {report.log_lines} log "
        f"lines, {report.bytes / 1e6:.1f} MB compressed) to {where} in {report.seconds:.1f} s "
        f"({rate:.0f} runs/s)"
    )
    if report.kept:
        reasons = ", ".join(f"{n} {why}" for why, n in sorted(report.kept.items()))
        line += f"; kept in PostgreSQL: {reasons}"
    return line


class _Progress:
    """Archive progress on stderr: a bar on a terminal, else a line every few seconds."""

    def __init__(self) -> None:
        self.bar: Progress | None = None
        self.task: TaskID | None = None
        self.said = time.monotonic()
        self.began = time.monotonic()

    def __enter__(self) -> _Progress:
        if sys.stderr.isatty():
            self.bar = Progress(
                TextColumn("archiving"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("runs, {task.fields[rate]}"),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self.bar.__enter__()
            self.task = self.bar.add_task("archive", total=None, rate="")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)

    def __call__(self, done: int, total: int, report: ArchiveReport) -> None:
        now = time.monotonic()
        rate = f"{done / (now - self.began):.0f} runs/s" if now > self.began else ""
        if self.bar is not None and self.task is not None:
            self.bar.update(self.task, completed=done, total=total, rate=rate)
        elif now - self.said >= 5.0 or done == total:
            self.said = now
            click.echo(f"archiving: {done} of {total} runs done, {rate}", err=True)


@main.command()
@click.option(
    "--older-than",
    "older_than",
    required=True,
    metavar="AGE",
    help=f"Archive the runs that finished more than AGE ago: {AGE_HELP}.",
)
@click.option(
    "--to", "to", envvar="DURABLE_ARCHIVE_TO", metavar="DIR|s3://BUCKET/PREFIX", help=TO_HELP
)
@click.option("--limit", type=click.IntRange(min=1), help="Archive at most this many runs.")
@click.option(
    "--dry-run", is_flag=True, help="Say how many runs would be archived; change nothing."
)
@pass_context
def archive(
    ctx: Context, older_than: str, to: str | None, limit: int | None, dry_run: bool
) -> None:
    """Move finished runs' histories out of PostgreSQL into compressed files.

    Each run's events (and task logs) are written as gzip JSON lines in the export
    format, read back and checked, then deleted from PostgreSQL; a tombstone says where
    they are. Archived runs still read the same (history, replay, export, logs, the
    API); `durable restore RUN` brings one back. Safe to stop at any point and to run
    again: nothing is lost, nothing archived twice.
    """
    age = parse_age(older_than, "--older-than")
    if not to and not dry_run:
        raise click.UsageError("give --to DIR or --to s3://BUCKET/PREFIX (or DURABLE_ARCHIVE_TO)")
    before = datetime.now(UTC) - age

    async def count(store: EventStore) -> int:
        return await store.archives.count_archivable(before)

    if dry_run:
        n = ctx.run(count)
        if limit is not None:
            n = min(n, limit)
        click.echo(f"would archive {n} runs that finished before {before:%Y-%m-%d %H:%M:%S} UTC")
        return
    assert to is not None

    async def go(store: EventStore) -> tuple[ArchiveReport, str]:
        async with open_objects(to) as objects:
            with _Progress() as progress:
                report = await archive_runs(store, objects, before, limit=limit, progress=progress)
            return report, objects.base

    report, where = ctx.run(go)
    click.echo(summary(report, where))


@main.command()
@click.argument("run_id")
@pass_context
def restore(ctx: Context, run_id: str) -> None:
    """Bring an archived run's events and task logs back into PostgreSQL, as they were
    (same seqs, positions and commit times). Its archive files are left in place."""

    async def go(store: EventStore) -> ArchivedRun:
        async with ArchiveReader() as reader:
            return await restore_run(store, run_id, reader)

    done = ctx.run(go)
    logs = f" and {done.log_lines} log lines" if done.log_lines else ""
    click.echo(
        f"restored run {run_id}: {done.events} events{logs} back in PostgreSQL from {done.uri}"
    )

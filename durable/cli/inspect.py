"""Operator commands: history, replay, export, import, runs, rebuild.

An archived run reads the same (from its archive), and says so on stderr."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
import msgspec
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from durable.application.archive import ArchiveReader, run_history
from durable.cli import Context, main, parse_since, pass_context
from durable.cli.render import history_table, runs_table, state_view, when
from durable.core.errors import DurableError, MalformedEvent, StreamNotFound
from durable.core.events import Recorded, run_stream
from durable.core.fold import fold
from durable.core.history import check_streams, dump_line, read_history_file, read_history_lines
from durable.core.runs_view import RunRow, row_from_state
from durable.core.state import RunState
from durable.store import RunFilter
from durable.store.base import EventStore
from durable.store.rows import ArchivedRun

__all__ = [
    "archived_note",
    "console",
    "export",
    "history",
    "import_",
    "load_run",
    "progress_bar",
    "rebuild",
    "replay",
    "run_records",
    "runs",
]

_json = msgspec.json.Encoder()


def console() -> Console:
    # Not a terminal (a pipe, a file, a test): wide enough that tables do not wrap.
    return Console(width=None if sys.stdout.isatty() else 200, highlight=False)


def progress_bar(description: str) -> Progress:
    return Progress(
        TextColumn(description),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )


async def load_run(store: EventStore, run_id: str) -> tuple[list[Recorded], ArchivedRun | None]:
    """A run's whole history, from the log or its archive, and its tombstone when it is
    archived; an unknown id is one clear error naming the run."""
    async with ArchiveReader() as reader:
        records, archive = await run_history(store, run_id, reader)
    if not records:
        raise StreamNotFound(run_stream(run_id), what=f"run {run_id!r}")
    return records, archive


async def run_records(store: EventStore, run_id: str) -> list[Recorded]:
    """A run's whole history (:func:`load_run`)."""
    return (await load_run(store, run_id))[0]


def archived_note(archive: ArchivedRun | None) -> None:
    """Say on stderr that the run was read from its archive."""
    if archive is not None:
        click.echo(
            f"run {archive.run_id} is archived at {archive.uri} (since "
            f"{when(archive.archived_at)} UTC); read from there. `durable restore "
            f"{archive.run_id}` brings it back",
            err=True,
        )


@main.command()
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per event.")
@pass_context
def history(ctx: Context, run_id: str, as_json: bool) -> None:
    """Show a run's events: seq, time, type, task, generation, attempt, summary."""
    records, archive = ctx.run(lambda store: load_run(store, run_id))
    if as_json:
        out = sys.stdout.buffer
        for r in records:
            out.write(dump_line(r))
        out.flush()
    else:
        console().print(history_table(records))
    archived_note(archive)


@main.command()
@click.argument("run_id", required=False)
@click.option("--at", "at_seq", type=int, metavar="SEQ", help="Show the state after event SEQ.")
@click.option(
    "--file",
    "file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Replay an exported history (.jsonl, or - for stdin) instead of the database.",
)
@click.option("--verify", is_flag=True, help="Compare the fold with the runs read model.")
@click.option("--json", "as_json", is_flag=True, help="Print the state as JSON.")
@pass_context
def replay(
    ctx: Context,
    run_id: str | None,
    at_seq: int | None,
    file: Path | None,
    verify: bool,
    as_json: bool,
) -> None:
    """Fold a run's log and show its state, at the end or at --at SEQ."""
    if (run_id is None) == (file is None):
        raise click.UsageError("give a RUN_ID or --file, not both or neither")
    if verify and (file is not None or at_seq is not None):
        raise click.UsageError(
            "--verify checks the database's read model: use it with RUN_ID alone"
        )
    if at_seq is not None and at_seq < 1:
        raise click.BadParameter(f"{at_seq} is not a seq; seqs start at 1", param_hint="--at")

    row: RunRow | None = None
    archive: ArchivedRun | None = None
    if file is not None:
        records = _read_file(file)
        streams = sorted({r.stream_id for r in records})
        if len(streams) != 1:
            raise MalformedEvent(
                str(file),
                f"holds {len(streams)} streams ({', '.join(streams[:5])}); replay takes one run",
                hint="export one run with `durable export RUN_ID`",
            )
    else:
        assert run_id is not None  # checked above

        async def load(
            store: EventStore,
        ) -> tuple[list[Recorded], ArchivedRun | None, RunRow | None]:
            records, archive = await load_run(store, run_id)
            return records, archive, (await store.get_run(run_id) if verify else None)

        records, archive, row = ctx.run(load)
    total = len(records)
    if at_seq is not None:
        if at_seq > total:
            raise click.BadParameter(
                f"the run has {total} events; --at {at_seq} is past its end", param_hint="--at"
            )
        records = records[:at_seq]
    state = fold(records)
    if state is None:  # pragma: no cover - records is never empty here
        raise DurableError("nothing to replay")
    if as_json:
        sys.stdout.write(_json.encode(state).decode() + "\n")
    else:
        out = console()
        for line in state_view(state, total_events=total):
            out.print(line)
    archived_note(archive)
    if verify:
        _verify(state, row)


def _verify(state: RunState, row: RunRow | None) -> None:
    expected = row_from_state(state)
    if row == expected:
        click.echo(f"verified: the runs read model matches the log ({state.last_seq} events)")
        return
    click.echo("MISMATCH between the runs read model and the log:", err=True)
    if row is None:
        click.echo(f"  the read model has no row for run {state.run_id}", err=True)
    else:
        for field in expected.__struct_fields__:
            have, want = getattr(row, field), getattr(expected, field)
            if have != want:
                click.echo(f"  {field}: read model {have!r}, log says {want!r}", err=True)
    click.echo("  `durable rebuild` rebuilds the read model from the log", err=True)
    sys.exit(1)


def _read_file(file: Path) -> list[Recorded]:
    if str(file) == "-":
        return list(read_history_lines(sys.stdin.buffer, source="<stdin>"))
    return read_history_file(file)


@main.command()
@click.argument("run_id")
@pass_context
def export(ctx: Context, run_id: str) -> None:
    """Write a run's history as JSON lines to stdout (durable replay --file reads it)."""
    records, archive = ctx.run(lambda store: load_run(store, run_id))
    out = sys.stdout.buffer
    for r in records:
        out.write(dump_line(r))
    out.flush()
    archived_note(archive)


@main.command(name="import")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@pass_context
def import_(ctx: Context, file: Path) -> None:
    """Append exported histories to the database (each stream must be new).

    Histories are checked by folding them first. Events keep their seq, content and
    commit times; they get new positions in this database's log.
    """
    records = _read_file(file)
    streams = check_streams(records)  # refuse an inconsistent history before writing any

    async def go(store: EventStore) -> None:
        with progress_bar(f"importing {file}") as bar:
            task = bar.add_task("import", total=len(records))
            for stream_id, recs in streams.items():
                existing = await store.read_stream(stream_id)
                archive = None
                if not existing and stream_id.startswith("run:"):
                    archive = await store.archives.get(stream_id[4:])
                if archive is not None:
                    async with ArchiveReader() as reader:
                        existing = await reader.events(archive)
                if existing:
                    if [r.event for r in existing] == [r.event for r in recs]:
                        said = "archived" if archive is not None else "imported"
                        click.echo(f"{stream_id}: already {said}, unchanged", err=True)
                        bar.advance(task, len(recs))
                        continue
                    raise DurableError(
                        f"{stream_id} already exists with other events",
                        hint="import into another database, or give the run a new id",
                    )
                await store.import_stream(stream_id, recs)
                bar.advance(task, len(recs))
                click.echo(f"{stream_id}: imported {len(recs)} events", err=True)

    ctx.run(go)


@main.command()
@click.option("--workflow", help="Only runs of this workflow.")
@click.option(
    "--status",
    type=click.Choice(["pending", "running", "paused", "succeeded", "failed", "cancelled"]),
    help="Only runs in this status.",
)
@click.option("--since", help="Only runs created at or after this ISO date/time (UTC if no zone).")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per run.")
@pass_context
def runs(
    ctx: Context, workflow: str | None, status: Any, since: str | None, limit: int, as_json: bool
) -> None:
    """List runs, newest first."""
    filter = RunFilter(workflow=workflow, status=status, since=parse_since(since), limit=limit)

    async def go(store: EventStore) -> tuple[list[RunRow], dict[str, ArchivedRun]]:
        rows = await store.list_runs(filter)
        return rows, await store.archives.of([r.run_id for r in rows])

    rows, archived = ctx.run(go)
    if as_json:
        for row in rows:
            a = archived.get(row.run_id)
            line = msgspec.structs.asdict(row) | {
                "archived": {"uri": a.uri, "archived_at": a.archived_at} if a else None
            }
            sys.stdout.write(_json.encode(line).decode() + "\n")
        return
    if not rows:
        click.echo("no runs match", err=True)
        return
    console().print(runs_table(rows, archived=set(archived)))


@main.command()
@pass_context
def rebuild(ctx: Context) -> None:
    """Rebuild the runs read model from the log (appends wait while it runs)."""

    async def go(store: EventStore) -> int:
        with progress_bar("rebuilding runs") as bar:
            task = bar.add_task("rebuild", total=None)
            return await store.rebuild_runs(
                lambda done, total: bar.update(task, completed=done, total=total)
            )

    count = ctx.run(go)
    click.echo(f"rebuilt {count} runs from the log")

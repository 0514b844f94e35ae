"""What the triggers left behind: dead letters (messages that started no run) and the
assets tasks updated (lineage)."""

from __future__ import annotations

from pathlib import Path

import click
import msgspec

from durable.cli import Context, main, pass_context
from durable.cli.render import when
from durable.cli.service import load, workflows_option
from durable.store.base import EventStore
from durable.store.rows import AssetUpdate, DeadLetter

__all__ = ["assets", "dead_letters"]


@main.command(name="dead-letters")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per message.")
@pass_context
def dead_letters(ctx: Context, limit: int, as_json: bool) -> None:
    """Trigger messages that could not start a run, with the reason, newest first."""

    async def go(store: EventStore) -> list[DeadLetter]:
        return await store.tracking.dead_letters(limit)

    rows = ctx.run(go)
    if not rows:
        click.echo("no dead letters", err=True)
    for r in rows:
        value = (r.value or b"").decode(errors="replace")
        if as_json:
            click.echo(
                msgspec.json.encode(
                    {
                        "id": r.id,
                        "source": r.source,
                        "topic": r.topic,
                        "partition": r.partition,
                        "offset": r.offset,
                        "workflow": r.workflow,
                        "reason": r.reason,
                        "value": value,
                        "received_at": r.received_at.isoformat(),
                    }
                ).decode()
            )
        else:
            click.echo(
                f"{when(r.received_at)} {r.source}:{r.topic}/{r.partition}/"
                f"{r.offset} -> {r.workflow}: {r.reason}  value={value[:80]!r}"
            )


@main.command()
@workflows_option
@pass_context
def assets(ctx: Context, workflows_path: Path) -> None:
    """Assets with their last update, the run and task that produced it, and consumers."""
    registry = load(workflows_path) if workflows_path.exists() else None
    consumers: dict[str, list[str]] = {}
    for loaded in registry or []:
        for asset in loaded.spec.on_assets:
            consumers.setdefault(asset, []).append(loaded.spec.name)

    async def go(store: EventStore) -> list[AssetUpdate]:
        return await store.tracking.assets()

    rows = ctx.run(go)
    if not rows:
        click.echo("no asset updated yet", err=True)
    for r in rows:
        gen = f" (generation {r.generation})" if r.generation > 1 else ""
        used = ", ".join(consumers.get(r.asset, [])) or "-"
        click.echo(
            f"{r.asset}  updated {when(r.updated_at)} by {r.workflow}.{r.task}"
            f"{gen} in run {r.run_id}; triggers: {used}"
        )

"""Looking at definitions: show, graph, versions."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import click
from rich.table import Table
from rich.tree import Tree

from durable.application.runs import register_versions
from durable.application.schedules import schedule_status, set_schedule_paused
from durable.cli import Context, main, pass_context
from durable.cli.inspect import console
from durable.cli.render import when
from durable.cli.service import OPERATOR, load, workflows_option
from durable.core.schedule import next_fire
from durable.core.spec import DefinitionError, WorkflowSpec, diff_specs, spec_from_json
from durable.core.tasks import SwitchTask
from durable.store.base import EventStore
from durable.store.rows import VersionRow
from durable.workflows.yaml import spec_to_yaml

__all__ = [
    "graph",
    "schedules",
    "schedules_pause",
    "schedules_resume",
    "show",
    "to_dot",
    "to_mermaid",
    "to_tree",
    "versions",
]


@main.command()
@click.argument("workflow")
@workflows_option
def show(workflow: str, workflows_path: Path) -> None:
    """Print a workflow's definition as YAML (Python-defined ones too)."""
    click.echo(spec_to_yaml(load(workflows_path).get(workflow).spec), nl=False)


@main.command()
@click.argument("workflow")
@workflows_option
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["tree", "dot", "mermaid"]),
    default="tree",
    show_default=True,
)
def graph(workflow: str, workflows_path: Path, fmt: str) -> None:
    """Draw a workflow's DAG: in the terminal, or as Graphviz dot / Mermaid."""
    spec = load(workflows_path).get(workflow).spec
    if fmt == "dot":
        click.echo(to_dot(spec), nl=False)
    elif fmt == "mermaid":
        click.echo(to_mermaid(spec), nl=False)
    else:
        console().print(to_tree(spec))


def _label(spec: WorkflowSpec, name: str) -> str:
    t = spec.task(name)
    rule = "" if t.trigger_rule == "all_success" else f", {t.trigger_rule}"
    return f"{name} [dim]({t.kind}{rule})[/dim]"


def to_tree(spec: WorkflowSpec) -> Tree:
    """The DAG as a tree from its roots; a task with several upstreams is drawn in full
    under its first one and referred to under the others."""
    downstream: dict[str, list[str]] = {t.name: [] for t in spec.tasks}
    for t in spec.tasks:
        for u in t.upstream:
            downstream[u].append(t.name)
    root = Tree(f"[bold]{spec.name}[/bold] [dim]version {spec.version}[/dim]")
    drawn: set[str] = set()

    def add(parent: Tree, name: str) -> None:
        if name in drawn:
            parent.add(
                f"{name} [dim](↑ drawn above; after {', '.join(spec.task(name).upstream)})[/dim]"
            )
            return
        drawn.add(name)
        node = parent.add(_label(spec, name))
        for child in downstream[name]:
            add(node, child)

    for t in spec.tasks:
        if not t.upstream:
            add(root, t.name)
    return root


def to_dot(spec: WorkflowSpec) -> str:
    lines = [f'digraph "{spec.name}" {{', "  rankdir=LR;"]
    for t in spec.tasks:
        shape = "diamond" if isinstance(t, SwitchTask) else "box"
        lines.append(f'  "{t.name}" [shape={shape}, label="{t.name}\\n({t.kind})"];')
    for t in spec.tasks:
        for u in t.upstream:
            style = "" if t.trigger_rule == "all_success" else f' [label="{t.trigger_rule}"]'
            lines.append(f'  "{u}" -> "{t.name}"{style};')
    return "\n".join([*lines, "}"]) + "\n"


def to_mermaid(spec: WorkflowSpec) -> str:
    lines = ["flowchart LR"]
    for t in spec.tasks:
        node = f"{{{t.name}}}" if t.kind == "switch" else f"[{t.name}]"
        lines.append(f"  {t.name}{node}")
    for t in spec.tasks:
        for u in t.upstream:
            arrow = "-->" if t.trigger_rule == "all_success" else f"-->|{t.trigger_rule}|"
            lines.append(f"  {u} {arrow} {t.name}")
    return "\n".join(lines) + "\n"


@main.command()
@click.argument("workflow")
@workflows_option
@click.option("--diff", nargs=2, metavar="A B", help="What changed from version A to version B.")
@pass_context
def versions(
    ctx: Context, workflow: str, workflows_path: Path, diff: tuple[str, str] | None
) -> None:
    """List a workflow's versions (each run is pinned to one), or diff two of them."""

    registry = load(workflows_path) if workflows_path.exists() else None

    async def go(store: EventStore) -> list[VersionRow]:
        if registry is not None:
            await register_versions(store, registry)
        return await store.versions.of(workflow)

    rows = ctx.run(go)
    if not rows:
        raise DefinitionError(f"workflow {workflow!r}", "has no recorded versions")
    if diff:
        specs = {
            r.version: spec_from_json(
                r.definition, where=f"workflow {workflow!r} version {r.version}"
            )
            for r in rows
        }
        for v in diff:
            if v not in specs:
                raise DefinitionError(
                    f"workflow {workflow!r}",
                    f"has no version {v!r}",
                    hint=f"versions: {', '.join(specs)}",
                )
        changes = diff_specs(specs[diff[0]], specs[diff[1]])
        click.echo("\n".join(changes) if changes else "no differences")
        return
    for r in rows:
        click.echo(f"{r.version}  first seen {when(r.first_seen)}  {r.runs:>6} runs  {r.source}")


@main.group(invoke_without_command=True)
@workflows_option
@click.pass_context
def schedules(click_ctx: click.Context, workflows_path: Path) -> None:
    """List schedules with their next fire times (in their zone and UTC); pause, resume."""
    click_ctx.ensure_object(Context)
    click_ctx.meta["workflows_path"] = workflows_path
    if click_ctx.invoked_subcommand is not None:
        return
    registry = load(workflows_path)
    specs = [w.spec for w in registry if w.spec.schedule is not None]
    if not specs:
        click.echo("no scheduled workflows", err=True)
        return
    ctx: Context = click_ctx.obj

    async def go(store: EventStore) -> list[tuple[WorkflowSpec, dict[str, Any]]]:
        await register_versions(store, registry)
        return [(s, await schedule_status(store, s)) for s in specs]

    table = Table(show_edge=False, pad_edge=False, header_style="bold")
    for name in (
        "workflow",
        "schedule",
        "zone",
        "catch-up",
        "state",
        "last logical time",
        "next fire (zone)",
        "next fire (UTC)",
    ):
        table.add_column(name)
    now = datetime.now(UTC)
    for spec, status in ctx.run(go):
        sched = spec.schedule
        assert sched is not None
        nxt = next_fire(sched, max(now, status["last_end"] or now))
        table.add_row(
            spec.name,
            sched.cron or f"every {sched.every:g} s",
            sched.timezone,
            sched.catchup,
            "paused" if status["paused"] else "active",
            when(status["last_logical_time"]),
            nxt.astimezone(ZoneInfo(sched.timezone)).strftime("%Y-%m-%d %H:%M %Z"),
            when(nxt)[:16],
        )
    console().print(table)


def _set_paused(click_ctx: click.Context, workflow: str, paused: bool, reason: str = "") -> None:
    registry = load(click_ctx.meta["workflows_path"])
    spec = registry.get(workflow).spec
    if spec.schedule is None:
        raise DefinitionError(f"workflow {workflow!r}", "has no schedule")
    ctx: Context = click_ctx.obj
    verb = "paused" if paused else "resumed"
    changed = ctx.run(
        lambda store: set_schedule_paused(store, workflow, paused, reason=reason, by=OPERATOR)
    )
    click.echo(
        f"{verb} the schedule of {workflow}"
        if changed
        else f"schedule of {workflow} is already {'paused' if paused else 'active'}"
    )


@schedules.command(name="pause")
@click.argument("workflow")
@click.option("--reason", default="")
@click.pass_context
def schedules_pause(click_ctx: click.Context, workflow: str, reason: str) -> None:
    """Stop a schedule from creating runs."""
    _set_paused(click_ctx, workflow, True, reason)


@schedules.command(name="resume")
@click.argument("workflow")
@click.pass_context
def schedules_resume(click_ctx: click.Context, workflow: str) -> None:
    """Let a paused schedule create runs again (missed ticks: per its catch-up policy)."""
    _set_paused(click_ctx, workflow, False)

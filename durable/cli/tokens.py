"""API tokens: create, list, revoke (``durable tokens``)."""

from __future__ import annotations

import click
from rich.table import Table

from durable.application.tokens import SCOPES, create_token, list_tokens, revoke_token
from durable.cli import Context, main
from durable.cli.inspect import console
from durable.cli.render import when
from durable.cli.service import OPERATOR

__all__ = ["tokens", "tokens_create", "tokens_list", "tokens_revoke"]


@main.group()
def tokens() -> None:
    """Bearer tokens of the HTTP API (scopes: read, trigger, operate, admin)."""


@tokens.command(name="create")
@click.argument("name")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    type=click.Choice(SCOPES),
    default=("read",),
    show_default=True,
    help="Repeat for several. trigger and operate include read; admin includes all.",
)
@click.pass_obj
def tokens_create(ctx: Context, name: str, scopes: tuple[str, ...]) -> None:
    """Create a token; it is printed once (only its hash is stored)."""
    info, token = ctx.run(lambda s: create_token(s.tokens, name, scopes, by=OPERATOR))
    click.echo(
        f"created token {info.token_id} ({name}; {', '.join(info.scopes)}); it is shown once:",
        err=True,
    )
    click.echo(token)


@tokens.command(name="list")
@click.option("--all", "include_revoked", is_flag=True, help="Also the revoked ones.")
@click.pass_obj
def tokens_list(ctx: Context, include_revoked: bool) -> None:
    """List tokens (never their secrets)."""
    rows = ctx.run(lambda s: list_tokens(s.tokens, include_revoked=include_revoked))
    if not rows:
        click.echo("no tokens; `durable tokens create NAME --scope ...` makes one", err=True)
        return
    table = Table(show_edge=False, pad_edge=False, header_style="bold")
    for column in ("id", "name", "scopes", "created", "by", "revoked"):
        table.add_column(column)
    for t in rows:
        table.add_row(
            t.token_id,
            t.name,
            ", ".join(t.scopes),
            when(t.created_at),
            t.created_by or "-",
            when(t.revoked_at) if t.revoked_at else "-",
        )
    console().print(table)


@tokens.command(name="revoke")
@click.argument("token")
@click.pass_obj
def tokens_revoke(ctx: Context, token: str) -> None:
    """Revoke TOKEN (its id, or its name when unique): it stops working at once."""
    info = ctx.run(lambda s: revoke_token(s.tokens, token))
    click.echo(f"revoked token {info.token_id} ({info.name})")

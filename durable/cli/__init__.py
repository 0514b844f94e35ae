"""The ``durable`` command line.

Operator commands work straight against the database (no server needed): with no
configuration, the embedded PostgreSQL under ``$DURABLE_HOME``; with
``DURABLE_DATABASE_URL`` (or ``--database-url``), any PostgreSQL.

Bad input never shows a traceback: one line saying what is wrong and what to do, and a
non-zero exit (2; 1 is kept for "the check ran and found a difference").
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import click

from durable.core.errors import DurableError
from durable.store.base import EventStore

__all__ = ["main"]

T = TypeVar("T")


class Context:
    def __init__(self, database_url: str | None) -> None:
        self.database_url = database_url
        self.description = ""

    def run(self, work: Callable[[EventStore], Awaitable[T]]) -> T:
        """Open the store, run ``work`` with it, close it."""

        async def go() -> T:
            from durable.store import connect, resolve_database

            env = dict(__import__("os").environ)
            if self.database_url:
                env["DURABLE_DATABASE_URL"] = self.database_url
            database = resolve_database(env)
            self.description = database.description
            store = await connect(database.url, max_size=4)
            try:
                return await work(store)
            finally:
                await store.close()

        return asyncio.run(go())


pass_context = click.make_pass_decorator(Context)


class DurableGroup(click.Group):
    """Turns DurableError and usage errors into one clear line and exit status 2."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        try:
            result = super().main(*args, **kwargs)
        except click.UsageError as exc:
            command = exc.ctx.command_path if exc.ctx is not None else "durable"
            click.echo(f"error: {exc.format_message()} (see '{command} --help')", err=True)
            sys.exit(2)
        except click.ClickException as exc:
            click.echo(f"error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("interrupted", err=True)
            sys.exit(130)
        sys.exit(result if isinstance(result, int) else 0)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DurableError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)


@click.group(cls=DurableGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--database-url",
    envvar="DURABLE_DATABASE_URL",
    metavar="URL",
    help="PostgreSQL to use (default: the embedded one in $DURABLE_HOME, ./.durable).",
)
@click.version_option(package_name="durable-pipelines", prog_name="durable")
@click.pass_context
def main(ctx: click.Context, database_url: str | None) -> None:
    """durable: durable, event-sourced workflow orchestration for data pipelines."""
    ctx.obj = Context(database_url)


def parse_since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a date or time; use ISO 8601, e.g. 2026-11-21 or "
            "2026-11-21T06:00:00+01:00",
            param_hint="--since",
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


from durable.cli import archive as _archive  # noqa: E402,F401
from durable.cli import backfills as _backfills  # noqa: E402,F401
from durable.cli import inspect as _inspect  # noqa: E402,F401  (registers the commands)
from durable.cli import notifications as _notifications  # noqa: E402,F401
from durable.cli import service as _service  # noqa: E402,F401
from durable.cli import tokens as _tokens  # noqa: E402,F401
from durable.cli import trace as _trace  # noqa: E402,F401
from durable.cli import triggers as _triggers  # noqa: E402,F401
from durable.cli import up as _up  # noqa: E402,F401
from durable.cli import workflows as _workflows  # noqa: E402,F401

"""SQL tasks (asyncpg) on a named connection."""

from __future__ import annotations

from typing import Any

import asyncpg
import msgspec

from durable.dag import TaskSpec
from durable.errors import TaskError
from durable.workflows.context import TaskContext

__all__ = ["execute", "run"]

_MAX_ROWS = 1000


async def run(spec: TaskSpec, ctx: TaskContext, resources: Any) -> Any:
    pool = await resources.sql_pool(spec.config.get("connection", "durable"))
    async with pool.acquire() as conn:
        return await execute(conn, spec, ctx)


async def execute(conn: asyncpg.Connection, spec: TaskSpec, ctx: TaskContext) -> Any:
    """Run the task's statement on ``conn``: rows of a query, or the command status."""
    from durable.tasks import render

    args = render(spec.config.get("args") or [], ctx)
    try:
        statement = await conn.prepare(spec.config["query"])
        rows = await statement.fetch(*args)
    except (
        asyncpg.PostgresSyntaxError,
        asyncpg.UndefinedTableError,
        asyncpg.UndefinedColumnError,
        asyncpg.DataError,
    ) as exc:
        raise TaskError(f"{type(exc).__name__}: {exc}", retryable=False, type="SQLError") from None
    except asyncpg.PostgresError as exc:
        raise TaskError(f"{type(exc).__name__}: {exc}", type="SQLError") from None
    status = statement.get_statusmsg()
    ctx.log.info("%s", status)
    if not statement.get_attributes():
        return {"status": status}
    out = [{k: _plain(v) for k, v in dict(r).items()} for r in rows[:_MAX_ROWS]]
    return {"status": status, "rows": out, "truncated": len(rows) > _MAX_ROWS}


def _plain(value: Any) -> Any:
    try:
        return msgspec.to_builtins(value)
    except TypeError:
        return str(value)

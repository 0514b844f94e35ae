"""SQL tasks (asyncpg) on a named connection."""

from __future__ import annotations

import datetime
import decimal
import uuid
from typing import Any

import asyncpg
import msgspec

from durable.core.errors import TaskError
from durable.core.tasks import SqlTask
from durable.workflows.context import TaskContext

__all__ = ["execute", "run"]

_MAX_ROWS = 1000


async def run(spec: SqlTask, ctx: TaskContext, resources: Any) -> Any:
    pool = await resources.sql_pool(spec.connection_name)
    async with pool.acquire() as conn:
        return await execute(conn, spec, ctx)


async def execute(conn: asyncpg.Connection, spec: SqlTask, ctx: TaskContext) -> Any:
    """Run the task's statement on ``conn``: rows of a query, or the command status."""
    from durable.runtime.tasks import render

    args = render(spec.args or [], ctx)
    try:
        statement = await conn.prepare(spec.query)
        types = [t.name for t in statement.get_parameters()]
        if len(args) != len(types):
            raise TaskError(
                f"the query takes {len(types)} parameters, args gives {len(args)}",
                retryable=False,
                type="SQLError",
            )
        rows = await statement.fetch(*[_convert(a, t) for a, t in zip(args, types, strict=True)])
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


def _convert(value: Any, type_name: str) -> Any:
    """A templated (string) argument as the Python value asyncpg sends for ``type_name``."""
    if not isinstance(value, str):
        return msgspec.json.encode(value) if type_name in ("json", "jsonb") else value
    try:
        match type_name:
            case "int2" | "int4" | "int8":
                return int(value)
            case "float4" | "float8":
                return float(value)
            case "numeric":
                return decimal.Decimal(value)
            case "bool":
                return value.strip().lower() in ("true", "t", "1", "yes", "on")
            case "date":
                return datetime.date.fromisoformat(value)
            case "timestamp" | "timestamptz":
                return datetime.datetime.fromisoformat(value)
            case "uuid":
                return uuid.UUID(value)
            case "json" | "jsonb":
                return value.encode()
    except (ValueError, decimal.InvalidOperation) as exc:
        raise TaskError(
            f"argument {value!r} is not a valid {type_name}: {exc}",
            retryable=False,
            type="SQLError",
        ) from None
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):  # json/jsonb come back as raw JSON on durable's pool
        try:
            return msgspec.json.decode(value)
        except msgspec.DecodeError:
            return value.decode(errors="replace")
    if isinstance(value, decimal.Decimal):
        return float(value)
    try:
        return msgspec.to_builtins(value)
    except TypeError:
        return str(value)

"""SQL tasks (asyncpg) on a named connection, and the pools of those connections.

The SQL task runner is the one place outside durable/store/ that speaks to a database:
the SQL it runs is its users'.
"""

from __future__ import annotations

import datetime
import decimal
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg
import msgspec

from durable.core.errors import DurableError, TaskError
from durable.core.tasks import SqlTask
from durable.workflows.context import TaskContext

__all__ = ["SqlConnections", "execute", "run"]

_MAX_ROWS = 1000


class SqlConnections:
    """The pools of SQL tasks' named connections: ``durable`` is durable's own database
    (the store's pool); any other name is the URL in ``DURABLE_SQL_<NAME>``."""

    def __init__(self, durable_pool: Callable[[], Any], environ: dict[str, str]) -> None:
        self._durable_pool = durable_pool
        self._environ = environ
        self._pools: dict[str, asyncpg.Pool] = {}

    async def pool(self, name: str) -> Any:
        if name == "durable":
            try:
                return self._durable_pool()
            except DurableError as exc:  # the in-memory store has no database
                raise TaskError(str(exc), retryable=False, type="ConfigurationError") from None
        pool = self._pools.get(name)
        if pool is None:
            url = self._environ.get(f"DURABLE_SQL_{name.upper()}")
            if not url:
                raise TaskError(
                    f"no SQL connection named {name!r}: set DURABLE_SQL_{name.upper()} to its URL",
                    retryable=False,
                    type="ConfigurationError",
                )
            pool = await asyncpg.create_pool(url, min_size=0, max_size=4, timeout=10)
            self._pools[name] = pool
        return pool

    async def close(self) -> None:
        for pool in self._pools.values():
            await pool.close()


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

"""Task runners: what runs one attempt of each kind of task.

A runner returns the attempt's output (JSON-able) or raises. ``TaskError`` says whether
a retry can help; any other exception is a retryable failure of the attempt, never a
crash of the executor.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import inspect
import os
from collections.abc import Callable
from datetime import datetime
from typing import Any

import aiohttp

from durable.core.errors import TaskError
from durable.core.tasks import (
    DbtTask,
    HttpTask,
    MapTask,
    NoopTask,
    PythonTask,
    ShellTask,
    SleepTask,
    SqlTask,
    SwitchTask,
    TaskSpec,
)
from durable.core.templates import Place, TemplateError
from durable.core.templates import render as render_template
from durable.runtime.tasks.dbt import DbtBuilds
from durable.runtime.tasks.sql import SqlConnections
from durable.workflows.context import TaskContext

__all__ = ["Resources", "call_python", "render", "run_task"]


class Resources:
    """What tasks share within an executor: HTTP session, SQL connection pools, dbt
    builds.

    ``store``: the executor's event store, which a dbt build in watched mode reads to know
    what is due in the run (default: the store whose ``sql_pool`` ``durable_pool`` is).
    """

    def __init__(
        self,
        durable_pool: Callable[[], Any],
        *,
        threads: int = 64,
        environ: dict[str, str] | None = None,
        store: Any = None,
    ) -> None:
        self.durable_pool = durable_pool
        if store is None:
            owner = getattr(durable_pool, "__self__", None)  # the bound store.sql_pool
            store = owner if hasattr(owner, "read_stream") and hasattr(owner, "versions") else None
        self.dbt = DbtBuilds(store)
        """dbt builds (watched mode: one per run and project, followed by its nodes)."""
        # Sync task functions run here: as many threads as the executor runs tasks (the
        # default pool has cores + 4, which would queue sync tasks far below the limit).
        self.threads = concurrent.futures.ThreadPoolExecutor(
            max_workers=threads, thread_name_prefix="durable-task"
        )
        self.sql = SqlConnections(durable_pool, dict(os.environ if environ is None else environ))
        self._http: aiohttp.ClientSession | None = None

    async def http(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession()
        return self._http

    async def sql_pool(self, name: str) -> Any:
        """The pool of the SQL connection ``name`` (:class:`~.sql.SqlConnections`)."""
        return await self.sql.pool(name)

    async def close(self) -> None:
        await self.dbt.close()
        self.threads.shutdown(wait=False, cancel_futures=True)
        if self._http is not None:
            await self._http.close()
        await self.sql.close()


def render(value: Any, ctx: TaskContext, place: Place = "text") -> Any:
    """Templates (``${params.date}``) in strings, lists and dicts of a task's config,
    each value made safe for the ``place`` it lands in (:mod:`durable.core.templates`)."""
    if isinstance(value, str):
        try:
            return render_template(value, ctx.template_values(), place)
        except TemplateError as exc:
            raise TaskError(
                f"{exc.message} (params: {', '.join(ctx.params) or '-'})",
                retryable=False,
                type="TemplateError",
            ) from None
    if isinstance(value, list):
        return [render(v, ctx, place) for v in value]
    if isinstance(value, dict):
        return {k: render(v, ctx, place) for k, v in value.items()}
    return value


@functools.lru_cache(maxsize=4096)
def _parameters(fn: Callable[..., Any]) -> Any:
    return inspect.signature(fn).parameters


async def call_python(
    fn: Callable[..., Any],
    ctx: TaskContext,
    threads: concurrent.futures.ThreadPoolExecutor | None = None,
) -> Any:
    """Call a task function: ``ctx`` and upstream outputs are passed by parameter name;
    a sync function runs in a thread, off the event loop."""
    kwargs: dict[str, Any] = {}
    for name, p in _parameters(fn).items():
        if name in ("ctx", "context"):
            kwargs[name] = ctx
        elif name in ("item", "index") and ctx.index is not None:
            kwargs[name] = ctx.item if name == "item" else ctx.index
        elif name in ctx.upstream:
            kwargs[name] = ctx.upstream[name]
        elif name in ctx.params:
            kwargs[name] = ctx.params[name]
        elif p.default is inspect.Parameter.empty and p.kind not in (
            inspect.Parameter.VAR_KEYWORD,
            inspect.Parameter.VAR_POSITIONAL,
        ):
            raise TaskError(
                f"{fn.__qualname__}() needs {name!r}, which is neither ctx, an upstream task, "
                "nor a param",
                retryable=False,
                type="SignatureError",
            )
    if inspect.iscoroutinefunction(fn):
        return await fn(**kwargs)
    loop = asyncio.get_running_loop()
    call = functools.partial(contextvars.copy_context().run, fn, **kwargs)
    return await loop.run_in_executor(threads, call)


async def run_task(
    spec: TaskSpec,
    ctx: TaskContext,
    *,
    resources: Resources,
    callable_for: Callable[[str], Callable[..., Any]],
    not_before: datetime | None = None,
) -> Any:
    """Run one attempt of ``spec``; returns its output."""
    from durable.runtime.tasks import dbt, http, shell, sql

    match spec:
        case PythonTask() | MapTask():
            return await call_python(callable_for(spec.name), ctx, resources.threads)
        case ShellTask():
            return await shell.run(spec, ctx)
        case HttpTask():
            return await http.run(spec, ctx, await resources.http())
        case SqlTask():
            return await sql.run(spec, ctx, resources)
        case SwitchTask():
            if spec.callable:
                return await call_python(callable_for(spec.name), ctx, resources.threads)
            value = ctx.upstream.get(spec.on or "")
            if spec.key:
                value = value.get(spec.key) if isinstance(value, dict) else None
            return value if isinstance(value, list) else str(value)
        case SleepTask():
            return {"slept_until": not_before.isoformat() if not_before else None}
        case NoopTask():
            return None
        case DbtTask():
            return await dbt.run(spec, ctx, resources.dbt)
    raise TaskError(f"unknown task type {spec.kind!r}", retryable=False)  # pragma: no cover

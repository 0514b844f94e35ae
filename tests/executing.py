"""Helpers to run an executor inside a test and wait for runs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from durable.application.runs import create_run
from durable.core.events import run_stream
from durable.core.fold import fold
from durable.core.state import RunState
from durable.runtime.executor import Executor
from durable.store import EventStore
from durable.workflows import Workflow, WorkflowRegistry
from durable.workflows.loader import LoadedWorkflow


def registry_of(*workflows: Workflow) -> WorkflowRegistry:
    registry = WorkflowRegistry()
    for wf in workflows:
        registry.add(LoadedWorkflow(wf.spec(), dict(wf.callables)))
    return registry


@asynccontextmanager
async def running_executor(
    store: EventStore, registry: WorkflowRegistry, **kw: Any
) -> AsyncIterator[Executor]:
    kw.setdefault("poll_interval", 0.2)
    executor = Executor(store, registry, **kw)
    stop = asyncio.Event()
    task = asyncio.create_task(executor.run(stop))
    try:
        yield executor
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def wait_for_run(
    store: EventStore,
    run_id: str,
    *,
    statuses: tuple[str, ...] = ("succeeded", "failed", "cancelled"),
    timeout: float = 30,
) -> RunState:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        state = fold(await store.read_stream(run_stream(run_id)))
        if state is not None and state.status in statuses:
            return state
        if loop.time() > deadline:
            raise AssertionError(f"run {run_id} still {state.status if state else 'absent'}")
        await asyncio.sleep(0.05)


async def run_to_end(
    store: EventStore, wf: Workflow, params: dict[str, Any] | None = None, **kw: Any
) -> RunState:
    registry = registry_of(wf)
    async with running_executor(store, registry, **kw):
        run_id, _ = await create_run(store, wf.spec(), params or {})
        return await wait_for_run(store, run_id)

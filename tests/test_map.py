"""Dynamic fan-out (map): one task per item of an upstream list, each retried on its own."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from durable import TaskContext, Workflow
from durable.core.events import TaskMapped, TaskStarted, run_stream
from durable.core.retry import RetryPolicy
from durable.store import PostgresEventStore
from durable.workflows import load_workflows
from tests.executing import run_to_end


async def test_map_runs_one_task_per_item_and_collects_outputs(
    pg_store: PostgresEventStore,
) -> None:
    wf = Workflow("fan")
    tries: dict[int, int] = {}

    @wf.task
    def files() -> list[str]:
        return ["a.csv", "b.csv", "c.csv", "d.csv"]

    @wf.map(over=files, retry=RetryPolicy(max_attempts=3, initial_delay=0.05))
    async def process(ctx: TaskContext, item: str, index: int) -> dict[str, Any]:
        tries[index] = tries.get(index, 0) + 1
        if item == "c.csv" and ctx.attempt == 1:
            raise ConnectionError("bucket hiccup")
        return {"file": item, "rows": index * 10}

    @wf.task(after=[process])
    def total(process: list[dict[str, Any]]) -> int:
        return sum(p["rows"] for p in process)

    state = await run_to_end(pg_store, wf)
    assert state.status == "succeeded"
    assert state.tasks["process"].output == [
        {"file": f, "rows": i * 10} for i, f in enumerate(["a.csv", "b.csv", "c.csv", "d.csv"])
    ]
    assert state.tasks["total"].output == 60
    assert tries == {0: 1, 1: 1, 2: 2, 3: 1}  # only the failed item ran again
    assert state.tasks["process[2]"].attempt == 2
    events = [r.event for r in await pg_store.read_stream(run_stream(state.run_id))]
    assert [e for e in events if isinstance(e, TaskMapped)] == [
        TaskMapped(task="process", generation=1, count=4)
    ]


async def test_max_parallel_bounds_the_fan_out(pg_store: PostgresEventStore) -> None:
    wf = Workflow("bounded_fan")
    active = 0
    peak = 0

    @wf.task
    def items() -> list[int]:
        return list(range(8))

    @wf.map(over=items, max_parallel=2)
    async def work(item: int) -> int:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.05)
        active -= 1
        return item * item

    state = await run_to_end(pg_store, wf)
    assert state.tasks["work"].output == [i * i for i in range(8)]
    assert peak == 2


async def test_empty_and_malformed_fan_outs(pg_store: PostgresEventStore) -> None:
    empty = Workflow("empty_fan")
    nothing = empty.task(name="nothing")(lambda: [])
    empty.map(over=nothing, name="each")(lambda item: item)
    state = await run_to_end(pg_store, empty)
    assert state.status == "succeeded" and state.tasks["each"].output == []

    bad = Workflow("bad_fan")
    not_a_list = bad.task(name="src")(lambda: {"rows": 3})
    bad.map(over=not_a_list, name="each")(lambda item: item)
    state = await run_to_end(pg_store, bad)
    assert state.status == "failed"
    error = state.tasks["each"].error
    assert error is not None and error.type == "MapError"
    assert error.message == "map each needs a list from src, got dict"


async def test_a_failed_item_fails_the_map_task(pg_store: PostgresEventStore) -> None:
    wf = Workflow("bad_item")
    src = wf.task(name="src")(lambda: [1, 0, 2])

    @wf.map(over=src, retries=0)
    def invert(item: int) -> float:
        return 1 / item

    wf.task(name="after", after=["invert"])(lambda: None)
    state = await run_to_end(pg_store, wf)
    assert state.status == "failed"
    assert state.reason == "task invert failed"
    error = state.tasks["invert"].error
    assert error is not None and error.message.startswith(
        "1 of 3 items failed; first invert[1]: ZeroDivisionError"
    )
    assert state.tasks["after"].status == "skipped"
    assert state.tasks["invert[0]"].status == "succeeded"


async def test_map_in_yaml(pg_store: PostgresEventStore, tmp_path: Path) -> None:
    (tmp_path / "fan_code.py").write_text(
        "def listing():\n    return {'keys': ['x', 'y']}\n\n"
        "def upper(item):\n    return item.upper()\n"
    )
    (tmp_path / "fan.yaml").write_text(
        "workflow: yaml_fan\ntasks:\n  listing:\n    python: fan_code:listing\n"
        "  upper:\n    map: fan_code:upper\n    over: listing\n    key: keys\n    max_parallel: 1\n"
    )
    loaded = load_workflows(tmp_path / "fan.yaml").get("yaml_fan")
    from durable.application.runs import create_run
    from durable.workflows import WorkflowRegistry
    from tests.executing import running_executor, wait_for_run

    registry = WorkflowRegistry()
    registry.add(loaded)
    async with running_executor(pg_store, registry):
        run_id, _ = await create_run(pg_store, loaded.spec, {})
        state = await wait_for_run(pg_store, run_id)
    assert state.tasks["upper"].output == ["X", "Y"]
    starts = [
        r.event.task
        for r in await pg_store.read_stream(run_stream(run_id))
        if isinstance(r.event, TaskStarted)
    ]
    assert starts == ["listing", "upper[0]", "upper[1]"]

"""Golden history: map fan-out with max_parallel, a retried item, an empty map, a map
over a value that is not a list (caught), fan-in."""

from __future__ import annotations

from typing import Any

from _compat import QUICK

from durable import Workflow

wf = Workflow("golden_map")


@wf.task
def source(ctx: Any) -> dict[str, Any]:
    return {"items": [1, 2, 3, 4, 5], "none": [], "scalar": 7}


@wf.map(over=source, key="items", max_parallel=2, retry=QUICK)
def square(ctx: Any, item: int) -> int:
    if item == 3 and ctx.attempt == 1:
        raise RuntimeError("item 3 fails once")
    return item * item


@wf.map(over=source, key="none")
def nothing(item: Any) -> Any:
    return item


@wf.map(over=source, key="scalar")
def not_a_list(item: Any) -> Any:
    return item


@wf.task(after=[square, nothing])
def total(square: list[int], nothing: list[Any]) -> int:
    return sum(square) + len(nothing)


@wf.task(after=[not_a_list], trigger_rule="one_failed")
def report_bad_map(ctx: Any) -> str:
    return "map over a scalar failed"

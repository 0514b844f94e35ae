"""Golden history: retries, a non-retryable failure, skips, a catch and a finally task."""

from __future__ import annotations

from typing import Any

from _compat import QUICK, TaskError

from durable import Workflow

wf = Workflow("golden_retries")


@wf.task(retry=QUICK)
def flaky(ctx: Any) -> dict[str, int]:
    if ctx.attempt < 3:
        raise ConnectionError(f"attempt {ctx.attempt}: warehouse unreachable")
    return {"attempts": ctx.attempt}


@wf.task(retries=0)
def broken(ctx: Any) -> None:
    raise TaskError("bad input file", retryable=False, type="BadInput")


@wf.task(after=[flaky])
def after_flaky(flaky: dict[str, int]) -> int:
    return flaky["attempts"]


@wf.task(after=[broken])
def never(broken: Any) -> None:
    return None


@wf.task(after=[broken], trigger_rule="one_failed")
def catch(ctx: Any) -> str:
    return "caught"


@wf.task(after=[after_flaky, never], trigger_rule="all_done")
def cleanup(ctx: Any) -> str:
    return "cleaned"

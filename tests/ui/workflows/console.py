"""Workflows the browser tests drive, next to the daily_sales example.

``chatty`` logs a line, then waits until the test opens its gate file (so the test sees
lines arrive while the task runs), then logs more. ``nightly`` has a schedule (the
schedules and backfill views). ``publish`` produces an asset ``refresh`` consumes (the
lineage view). ``alerting`` notifies two webhooks when it ends: one the tests' receiver
accepts, one it refuses (the notifications view).
"""

from __future__ import annotations

import asyncio
import os

from durable import Param, Schedule, TaskContext, Webhook, Workflow

chatty = Workflow(
    "chatty",
    params={"gate": Param("str", required=True, description="a file to wait for")},
    description="Logs while it waits for a gate file.",
)


@chatty.task(retries=0, timeout=120)
async def talk(ctx: TaskContext, gate: str) -> int:
    ctx.log.info("first line, before the gate")
    n = 0
    while not os.path.exists(gate):  # noqa: ASYNC240 (a tiny stat, 20 times a second)
        await asyncio.sleep(0.05)
        n += 1
    for i in range(3):
        ctx.log.info("after the gate: line %d", i)
    return n


@chatty.task(after=talk, retries=0)
def wrap_up(ctx: TaskContext) -> str:
    return "done"


nightly = Workflow(
    "nightly",
    schedule=Schedule(cron="0 3 * * *", timezone="Europe/Paris", catchup="none"),
    description="A nightly job: the schedules and backfill views.",
)


@nightly.task(retries=0)
def nightly_step(ctx: TaskContext) -> str | None:
    return ctx.logical_date


publish = Workflow("publish", description="Produces the asset warehouse.orders.")


@publish.task(produces=["warehouse.orders"], retries=0)
def write_orders(ctx: TaskContext) -> int:
    return 42


refresh = Workflow(
    "refresh", on_assets=["warehouse.orders"], description="Runs when orders are updated."
)


@refresh.task(retries=0)
def rebuild(ctx: TaskContext) -> str:
    return "rebuilt"


HOOK = os.environ.get("DURABLE_UI_HOOK", "http://127.0.0.1:9")  # the tests' receiver
alerting = Workflow(
    "alerting",
    params={"fail": Param("bool", default=False)},
    notify=[
        Webhook(f"{HOOK}/accept", on=("run_failed", "run_succeeded")),
        Webhook(f"{HOOK}/refuse", on=("run_failed",)),
    ],
    description="Notifies webhooks when it ends.",
)


@alerting.task(retries=0)
def maybe_fail(ctx: TaskContext, fail: bool) -> str:
    if fail:
        raise RuntimeError("asked to fail")
    return "fine"

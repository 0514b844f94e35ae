"""The run history a UI draws, over HTTP on a real store with a real executor: a run as
it was at any seq, what triggered it, every attempt of every task (retries and rerun
generations), a workflow's grid of recent runs, and the runs list's ``until``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
import pytest

from durable import Param, Schedule, Workflow
from durable.api.history import trigger_detail
from durable.core.attempts_view import attempts_of
from durable.core.events import TaskStarted, Trigger, run_stream
from durable.core.fold import fold
from durable.core.kafka import Accepted, KafkaTrigger, Message, evaluate
from durable.core.retry import RetryPolicy
from durable.core.s3 import S3Object, object_dedup_key
from durable.store import PostgresEventStore
from tests.executing import registry_of
from tests.ui_api import Ui, serving

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@dataclass
class Flags:
    extract_failures: int = 0
    report_fails: bool = False


def pipelines(f: Flags) -> list[Workflow]:
    etl = Workflow("etl", params={"day": Param("date", default="2026-11-21")})

    @etl.task(retry=RetryPolicy(max_attempts=3, initial_delay=0.05))
    def extract() -> list[int]:
        if f.extract_failures > 0:
            f.extract_failures -= 1
            raise ConnectionError("warehouse unreachable")
        return [1, 2, 3]

    @etl.task(after=[extract], produces=["warehouse.sales"])
    def transform(extract: list[int]) -> int:
        return sum(extract)

    @etl.task(after=[transform], retries=0)
    def report(transform: int) -> str:
        if f.report_fails:
            raise ValueError("currency missing")
        return f"{transform} sold"

    fanout = Workflow("fanout")

    @fanout.task
    def items() -> list[int]:
        return [1, 2]

    @fanout.map(over=items)
    def double(item: int) -> int:
        return 2 * item

    nightly = Workflow(
        "nightly",
        params={"date": Param("date", required=True)},
        schedule=Schedule(cron="0 2 * * *", timezone="UTC", catchup="none"),
    )

    @nightly.task
    def night(date: str) -> str:
        return date

    return [etl, fanout, nightly]


@dataclass
class Env:
    ui: Ui
    flags: Flags


@pytest.fixture
async def env(pg_store: PostgresEventStore) -> AsyncIterator[Env]:
    flags = Flags()
    async with serving(pg_store, registry_of(*pipelines(flags))) as ui:
        yield Env(ui, flags)


def _tasks(run: dict[str, Any]) -> dict[str, tuple[str, int]]:
    return {t["name"]: (t["status"], t["attempt"]) for t in run["tasks"]}


# -- a run at any seq, and its trigger -------------------------------------------------------


async def test_a_run_as_it_was_after_each_of_its_events(env: Env) -> None:
    ui = env.ui
    run_id = await ui.start(
        "etl",
        {"day": "2026-11-21"},
        headers={"Idempotency-Key": "order-7", "traceparent": TRACEPARENT},
    )
    done = await ui.finished(run_id)
    assert done["status"] == "succeeded"
    records = await ui.store.read_stream(run_stream(run_id))
    assert done["last_seq"] == len(records) and (await ui.get(f"/api/v1/runs/{run_id}")) == done
    for n in range(1, len(records) + 1):
        at = await ui.get(f"/api/v1/runs/{run_id}?at_seq={n}")
        then = fold(records[:n])
        assert then is not None
        assert (at["last_seq"], at["status"]) == (n, then.status)
        assert (at["finished_at"] is None) == (then.finished_at is None) == (n < len(records))
        assert _tasks(at) == {t.name: (t.status, t.attempt) for t in then.tasks.values()}
    first = await ui.get(f"/api/v1/runs/{run_id}?at_seq=1")
    assert first["status"] == "pending" and first["started_at"] is None
    assert set(_tasks(first).values()) == {("pending", 0)}
    started = next(r.seq for r in records if isinstance(r.event, TaskStarted))
    at_start = await ui.get(f"/api/v1/runs/{run_id}?at_seq={started}")
    assert _tasks(at_start)["extract"] == ("running", 1)
    # past the end: the run as it is
    assert await ui.get(f"/api/v1/runs/{run_id}?at_seq={len(records) + 50}") == done
    for bad in ("0", "-1", "x", "2147483648"):
        status, problem = await ui.call("GET", f"/api/v1/runs/{run_id}?at_seq={bad}")
        assert status == 400 and "at_seq" in problem["detail"], bad
    status, problem = await ui.call("GET", "/api/v1/runs/nope?at_seq=3")
    assert status == 404 and problem["title"] == "no such run"


async def test_the_trigger_of_a_run_started_through_the_api(env: Env) -> None:
    ui = env.ui
    run_id = await ui.start(
        "etl", headers={"Idempotency-Key": "order-8", "traceparent": TRACEPARENT}
    )
    run = await ui.finished(run_id)
    assert run["trigger"] == {
        "kind": "api",
        "source": "token:ui-trigger",
        "key": "http:etl:order-8",
        "logical_time": None,
        "data_interval_start": None,
        "data_interval_end": None,
        "detail": {"request_key": "order-8", "traceparent": TRACEPARENT},
    }
    plain = await ui.finished(await ui.start("etl"))
    assert plain["trigger"]["key"] is None and plain["trigger"]["detail"] == {}


async def test_the_trigger_of_a_backfilled_run(env: Env) -> None:
    ui = env.ui
    window = {
        "workflow": "nightly",
        "start": "2026-11-01T02:00:00Z",
        "end": "2026-11-02T02:00:00Z",
    }
    status, backfill = await ui.call("POST", "/api/v1/backfills", scope="operate", json=window)
    assert status == 202, backfill
    (row,) = await ui.store.list_runs()
    run = await ui.finished(row.run_id)
    trigger = run["trigger"]
    assert (trigger["kind"], trigger["source"]) == ("backfill", backfill["backfill_id"])
    assert trigger["detail"] == {"backfill_id": backfill["backfill_id"]}
    assert datetime.fromisoformat(trigger["logical_time"]) == datetime.fromisoformat(
        window["start"]
    )
    assert trigger["data_interval_start"] == trigger["logical_time"]
    assert datetime.fromisoformat(trigger["data_interval_end"]) == datetime.fromisoformat(
        window["end"]
    )


def test_trigger_details_in_the_forms_each_door_records() -> None:
    rule = KafkaTrigger(topic="orders")
    by_offset = evaluate(rule, Message(topic="orders", partition=3, offset=42, value=b"{}"), "w")
    by_producer = evaluate(
        rule,
        Message(
            topic="orders", partition=3, offset=43, value=b"{}", headers={"idempotency-key": "p-1"}
        ),
        "w",
    )
    assert isinstance(by_offset, Accepted) and isinstance(by_producer, Accepted)
    kafka = Trigger(kind="kafka", source="orders/3/42", traceparent=TRACEPARENT)
    assert trigger_detail(kafka, by_offset.dedup_key, "w") == {
        "topic": "orders",
        "partition": 3,
        "offset": 42,
        "traceparent": TRACEPARENT,
    }
    after_reset = trigger_detail(kafka, f"{by_offset.dedup_key}@2", "w")
    assert after_reset["epoch"] == 2 and "request_key" not in after_reset
    produced = trigger_detail(
        Trigger(kind="kafka", source="orders/3/43"), by_producer.dedup_key, "w"
    )
    assert produced["request_key"] == "p-1" and produced["offset"] == 43

    obj = S3Object(bucket="drop", key="in/2026:11:21.csv", size=1, etag='"e1"', version_id="v9")
    polled = Trigger(kind="s3", source="s3://drop/in/2026:11:21.csv")
    assert trigger_detail(polled, object_dedup_key("w", obj), "w") == {
        "bucket": "drop",
        "key": "in/2026:11:21.csv",
        "version": "v9",
    }
    assert trigger_detail(polled, None, "w") == {"bucket": "drop", "key": "in/2026:11:21.csv"}

    assert trigger_detail(Trigger(kind="schedule", source="0 2 * * *"), None, "w") == {
        "schedule": "0 2 * * *"
    }
    assert trigger_detail(Trigger(kind="asset", source="db.sales@01RUN"), None, "w") == {
        "asset": "db.sales",
        "run_id": "01RUN",
    }
    hook = Trigger(kind="http", source="10.0.0.1")
    assert trigger_detail(hook, "http:w:abc", "w") == {"request_key": "abc"}
    # a source not in its door's form is left out, not guessed
    assert trigger_detail(Trigger(kind="kafka", source="odd"), None, "w") == {}
    assert trigger_detail(Trigger(kind="manual"), None, "w") == {}


# -- attempts ------------------------------------------------------------------------------


async def test_attempts_show_retries_and_rerun_generations(env: Env) -> None:
    ui, flags = env.ui, env.flags
    flags.extract_failures, flags.report_fails = 1, True
    run_id = await ui.start("etl")
    assert (await ui.finished(run_id))["status"] == "failed"
    flags.report_fails = False
    status, _ = await ui.call(
        "POST", f"/api/v1/runs/{run_id}/rerun", scope="operate", json={"tasks": ["report"]}
    )
    assert status == 200
    run = await ui.finished(run_id)
    assert run["status"] == "succeeded" and run["generation"] == 2

    body = await ui.get(f"/api/v1/runs/{run_id}/attempts")
    rows = [(a["task"], a["generation"], a["attempt"], a["status"]) for a in body["attempts"]]
    assert rows == [
        ("extract", 1, 1, "failed"),
        ("extract", 1, 2, "succeeded"),
        ("transform", 1, 1, "succeeded"),
        ("report", 1, 1, "failed"),
        ("report", 2, 1, "succeeded"),
    ]
    error = body["attempts"][0]["error"]
    assert (error["type"], error["message"], error["retryable"]) == (
        "ConnectionError",
        "warehouse unreachable",
        True,
    )
    assert "ConnectionError" in error["traceback"]
    assert body["attempts"][3]["error"]["type"] == "ValueError"
    for a in body["attempts"]:
        times = [
            datetime.fromisoformat(a[k]) for k in ("scheduled_at", "started_at", "finished_at")
        ]
        assert times == sorted(times), a
    assert (body["created_at"], body["finished_at"]) == (run["created_at"], run["finished_at"])
    # the answer is the pure view of the log, as JSON
    view = attempts_of(await ui.store.read_stream(run_stream(run_id)))
    assert body == msgspec.json.decode(msgspec.json.encode(view))

    status, problem = await ui.call("GET", "/api/v1/runs/nope/attempts")
    assert status == 404 and problem["title"] == "no such run"


# -- grid ------------------------------------------------------------------------------------


async def test_grid_of_recent_runs(env: Env) -> None:
    ui, flags = env.ui, env.flags
    flags.report_fails = True
    failed = await ui.start("etl", {"day": "2026-11-01"})
    await ui.finished(failed)
    flags.report_fails = False
    ok = [await ui.start("etl", {"day": f"2026-11-0{i}"}) for i in (2, 3)]
    for run_id in ok:
        await ui.finished(run_id)

    grid = await ui.get("/api/v1/workflows/etl/grid")
    assert grid["tasks"] == ["extract", "transform", "report"]
    assert [r["run_id"] for r in grid["runs"]] == [*reversed(ok), failed]
    oldest = grid["runs"][-1]
    assert (oldest["status"], oldest["generation"], oldest["logical_time"]) == ("failed", 1, None)
    assert oldest["cells"] == {
        "extract": {"status": "succeeded", "attempt": 1},
        "transform": {"status": "succeeded", "attempt": 1},
        "report": {"status": "failed", "attempt": 1},
    }
    assert grid["runs"][0]["status"] == "succeeded"
    top = await ui.get("/api/v1/workflows/etl/grid?limit=1")
    assert [r["run_id"] for r in top["runs"]] == [ok[-1]]

    mapped = await ui.start("fanout")
    assert (await ui.finished(mapped))["status"] == "succeeded"
    fan = await ui.get("/api/v1/workflows/fanout/grid")
    assert fan["tasks"] == ["items", "double"]
    assert set(fan["runs"][0]["cells"]) == {"items", "double"}  # no map items

    for bad in ("0", "101", "x"):
        status, problem = await ui.call("GET", f"/api/v1/workflows/etl/grid?limit={bad}")
        assert status == 400 and "limit" in problem["detail"], bad
    status, _ = await ui.call("GET", "/api/v1/workflows/nope/grid")
    assert status == 404
    assert (await ui.get("/api/v1/workflows/nightly/grid"))["runs"] == []


# -- runs list: until -------------------------------------------------------------------------


async def test_runs_list_until(env: Env) -> None:
    ui = env.ui
    started = [await ui.start("etl", {"day": f"2026-11-1{i}"}) for i in range(3)]
    rows = {r.run_id: r for r in await ui.store.list_runs()}
    middle = rows[started[1]].created_at
    page = await ui.get(f"/api/v1/runs?until={middle.isoformat().replace('+', '%2B')}")
    assert [r["run_id"] for r in page["runs"]] == [started[0]]
    since = rows[started[0]].created_at.isoformat().replace("+", "%2B")
    until = rows[started[2]].created_at.isoformat().replace("+", "%2B")
    window = await ui.get(f"/api/v1/runs?since={since}&until={until}&workflow=etl")
    assert [r["run_id"] for r in window["runs"]] == [started[1], started[0]]
    status, problem = await ui.call("GET", "/api/v1/runs?until=yesterday")
    assert status == 400 and "until" in problem["detail"]

"""The HTTP API through a real aiohttp server on loopback, with a real executor and
PostgreSQL: every endpoint, auth, idempotency, pagination, SSE, reruns."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from durable import Param, Schedule, TaskContext, Workflow
from durable.api import create_app
from durable.api import schemas as s
from durable.api.routes import ROUTES
from durable.application.runs import register_versions
from durable.application.tokens import create_token
from durable.client import ApiError as ClientError
from durable.client import Client
from durable.core.events import run_stream
from durable.core.fold import fold
from durable.store import PostgresEventStore
from tests.executing import registry_of, running_executor

DAILY = Schedule(cron="0 2 * * *", timezone="UTC", catchup="none")


@dataclass
class Behaviour:
    executed: Counter[str] = field(default_factory=Counter)
    report_fails: bool = True
    gate: asyncio.Event = field(default_factory=asyncio.Event)


def workflows(b: Behaviour) -> list[Workflow]:
    etl = Workflow(
        "etl", params={"day": Param("date", required=True), "n": Param("int", default=1)}
    )

    @etl.task
    def fetch(ctx: TaskContext, n: int) -> dict[str, int]:
        b.executed["fetch"] += 1
        ctx.log.info("fetched %d rows", n * 10)
        return {"rows": n * 10}

    @etl.task(after=[fetch])
    def transform(fetch: dict[str, int]) -> dict[str, int]:
        b.executed["transform"] += 1
        return {"rows": fetch["rows"] * 2}

    @etl.task(after=[transform])
    def load(transform: dict[str, int]) -> int:
        b.executed["load"] += 1
        return transform["rows"]

    @etl.task(after=[load], retries=0)
    def report(ctx: TaskContext, load: int) -> str:
        b.executed["report"] += 1
        if b.report_fails:
            raise ValueError("currency missing")
        return f"{load} rows in generation {ctx.generation}"

    slow = Workflow("slow")

    @slow.task
    async def wait_gate() -> str:
        await b.gate.wait()
        return "opened"

    @slow.task(after=[wait_gate])
    def after_gate() -> str:
        return "done"

    nightly = Workflow("nightly", params={"date": Param("date", required=True)}, schedule=DAILY)

    @nightly.task
    def night(date: str) -> str:
        return date

    quick = Workflow("quick")

    @quick.task
    def one() -> int:
        return 1

    return [etl, slow, nightly, quick]


@dataclass
class Api:
    url: str
    http: aiohttp.ClientSession
    tokens: dict[str, str]
    store: PostgresEventStore
    b: Behaviour

    async def call(
        self,
        method: str,
        path: str,
        *,
        scope: str | None = "admin",
        json: Any = None,
        headers: dict[str, str] | None = None,
        **kw: Any,
    ) -> tuple[int, Any]:
        h = dict(headers or {})
        if scope is not None:
            h["Authorization"] = f"Bearer {self.tokens[scope]}"
        async with self.http.request(
            method, self.url + path, json=json, headers=h, **kw
        ) as response:
            if response.content_type in ("application/json", "application/problem+json"):
                return response.status, await response.json(content_type=None)
            return response.status, await response.text()

    async def finished(self, run_id: str) -> dict[str, Any]:
        status, run = await self.call("GET", f"/api/v1/runs/{run_id}/wait?timeout=30", scope="read")
        assert status == 200 and run["status"] in ("succeeded", "failed", "cancelled"), run
        return run  # type: ignore[no-any-return]


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


@pytest.fixture
async def api(pg_store: PostgresEventStore) -> AsyncIterator[Api]:
    b = Behaviour()
    registry = registry_of(*workflows(b))
    await register_versions(pg_store, registry)
    tokens = {}
    for scope in ("read", "trigger", "operate", "admin"):
        _, tokens[scope] = await create_token(pg_store.tokens, f"test-{scope}", [scope])
    runner, url = await serve(create_app(pg_store, registry))
    async with running_executor(pg_store, registry), aiohttp.ClientSession() as http:
        yield Api(url, http, tokens, pg_store, b)
        b.gate.set()
    await runner.cleanup()


# -- auth -----------------------------------------------------------------------------------


async def test_health_answers_without_a_token_and_nothing_else_does(api: Api) -> None:
    assert await api.call("GET", "/healthz", scope=None) == (200, {"status": "ok"})
    assert await api.call("GET", "/readyz", scope=None) == (200, {"status": "ready"})
    for route in ROUTES:
        if route.auth != "bearer":  # health is open; hooks check the workflow's rule
            continue
        path = re.sub(r"{\w+}", "x", route.path)
        async with api.http.request(route.method, api.url + path) as response:
            assert response.status == 401, (route.method, path)
            assert response.content_type == "application/problem+json"
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
        bad = {"Authorization": "Bearer dtk_000000000000_" + "x" * 43}
        async with api.http.request(route.method, api.url + path, headers=bad) as response:
            assert response.status == 401, (route.method, path)


async def test_scopes_are_enforced(api: Api) -> None:
    status, body = await api.call(
        "POST", "/api/v1/workflows/quick/runs", scope="read", json={"params": {}}
    )
    assert status == 403 and "trigger" in body["detail"]
    status, run = await api.call("POST", "/api/v1/workflows/quick/runs", scope="trigger", json={})
    assert status == 202
    assert (await api.call("GET", f"/api/v1/runs/{run['run_id']}", scope="trigger"))[0] == 200
    status, _ = await api.call("POST", f"/api/v1/runs/{run['run_id']}/cancel", scope="trigger")
    assert status == 403
    assert (await api.call("GET", "/api/v1/tokens", scope="operate"))[0] == 403
    assert (await api.call("GET", "/metrics", scope="read"))[0] == 200


async def test_tokens_are_created_listed_and_revoked(api: Api) -> None:
    status, created = await api.call(
        "POST", "/api/v1/tokens", json={"name": "svc-orders", "scopes": ["trigger"]}
    )
    assert status == 201 and created["token"].startswith("dtk_")
    secret_hash = await api.store._pool.fetchval(
        "SELECT secret_sha256 FROM durable.api_tokens WHERE token_id = $1", created["token_id"]
    )
    assert created["token"].encode() not in bytes(secret_hash)  # stored hashed
    auth = {"Authorization": f"Bearer {created['token']}"}
    async with api.http.get(f"{api.url}/api/v1/workflows", headers=auth) as response:
        assert response.status == 200
    status, listed = await api.call("GET", "/api/v1/tokens")
    assert "token" not in str(listed["tokens"][0].keys() - {"token_id"})
    assert "svc-orders" in {t["name"] for t in listed["tokens"]}
    status, revoked = await api.call("DELETE", f"/api/v1/tokens/{created['token_id']}")
    assert status == 200 and revoked["revoked_at"] is not None
    async with api.http.get(f"{api.url}/api/v1/workflows", headers=auth) as response:
        assert response.status == 401  # revoked: refused at once
    assert (await api.call("DELETE", "/api/v1/tokens/nope"))[0] == 404
    status, bad = await api.call("POST", "/api/v1/tokens", json={"name": "x", "scopes": ["root"]})
    assert status == 400 and "scopes" in bad["detail"]


# -- workflows and triggering -----------------------------------------------------------------


async def test_workflows_list_and_get_with_graph_and_versions(api: Api) -> None:
    status, listed = await api.call("GET", "/api/v1/workflows", scope="read")
    assert status == 200
    by_name = {w["name"]: w for w in listed["workflows"]}
    assert set(by_name) == {"etl", "slow", "nightly", "quick"}
    assert by_name["nightly"]["triggers"] == ["schedule"]
    assert by_name["etl"]["params"]["day"] == {"type": "date", "required": True}
    status, etl = await api.call("GET", "/api/v1/workflows/etl", scope="read")
    assert status == 200
    assert [n["id"] for n in etl["graph"]["nodes"]] == ["fetch", "transform", "load", "report"]
    assert {(e["source"], e["target"]) for e in etl["graph"]["edges"]} == {
        ("fetch", "transform"),
        ("transform", "load"),
        ("load", "report"),
    }
    assert [v["version"] for v in etl["versions"]] == [etl["version"]]
    assert etl["definition"]["name"] == "etl"
    status, missing = await api.call("GET", "/api/v1/workflows/nope", scope="read")
    assert status == 404 and "nope" in missing["detail"]


async def test_trigger_is_durable_and_idempotent(api: Api) -> None:
    body = {"params": {"day": "2026-11-21", "n": 2}}
    key = {"Idempotency-Key": "order-42"}
    async with api.http.post(
        f"{api.url}/api/v1/workflows/etl/runs",
        json=body,
        headers={**key, "Authorization": f"Bearer {api.tokens['trigger']}"},
    ) as response:
        assert response.status == 202
        first = await response.json()
        assert response.headers["Location"] == f"/api/v1/runs/{first['run_id']}"
    assert await api.store.get_run(first["run_id"]) is not None  # committed before the 202
    status, again = await api.call(
        "POST", "/api/v1/workflows/etl/runs", scope="trigger", json=body, headers=key
    )
    assert (status, again) == (200, {"run_id": first["run_id"], "created": False})
    status, conflict = await api.call(
        "POST",
        "/api/v1/workflows/etl/runs",
        scope="trigger",
        json={"params": {"day": "2026-11-22", "n": 2}},
        headers=key,
    )
    assert status == 409 and "order-42" in conflict["detail"]
    runs = await api.store.list_runs()
    assert len(runs) == 1


@pytest.mark.parametrize(
    ("body", "status", "names"),
    [
        ({"params": {"day": "2026-11-21", "n": "many"}}, 400, "n"),
        # typed params are validated, never converted (a number is not a date, ...)
        ({"params": {"day": 20261121}}, 400, "param 'day': expected date, got 20261121"),
        ({"params": {"day": "2026-11-21", "n": 1.9}}, 400, "param 'n': expected int, got 1.9"),
        ({"params": {"day": "2026-11-21", "n": True}}, 400, "param 'n': expected int, got true"),
        ({"params": {"day": None}}, 400, "param 'day': expected date, got null"),
        ({"params": {"n": 1}}, 400, "day"),
        ({"params": {"day": "2026-11-21"}, "priority": 3}, 400, "priority"),
        ({"params": []}, 400, "params"),
        ({"params": {"day": "2026-11-21"}, "logical_date": "yesterday"}, 400, "logical_date"),
    ],
)
async def test_bad_trigger_bodies_get_400_naming_the_field(
    api: Api, body: Any, status: int, names: str
) -> None:
    got, problem = await api.call("POST", "/api/v1/workflows/etl/runs", scope="trigger", json=body)
    assert got == status, problem
    assert names in problem["detail"], problem
    assert await api.store.list_runs() == []


async def test_not_json_and_too_large_bodies(api: Api) -> None:
    headers = {"Authorization": f"Bearer {api.tokens['trigger']}"}
    async with api.http.post(
        f"{api.url}/api/v1/workflows/quick/runs", data=b"{nope", headers=headers
    ) as response:
        assert response.status == 400
        assert (await response.json(content_type=None))["title"] == "body is not JSON"
    big = b'{"params": {"x": "' + b"a" * (2 * 1024 * 1024) + b'"}}'
    async with api.http.post(
        f"{api.url}/api/v1/workflows/quick/runs", data=big, headers=headers
    ) as response:
        assert response.status == 413
        assert "1048576" in (await response.json(content_type=None))["detail"]


# -- runs -----------------------------------------------------------------------------------


async def test_runs_list_filters_and_cursor_pagination(api: Api) -> None:
    created = set()
    for i in range(7):
        _, run = await api.call(
            "POST",
            "/api/v1/workflows/etl/runs",
            scope="trigger",
            json={"params": {"day": f"2026-11-{i + 1:02d}"}},
        )
        created.add(run["run_id"])
    _, quick = await api.call("POST", "/api/v1/workflows/quick/runs", scope="trigger", json={})
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        query = "?workflow=etl&limit=3" + (f"&cursor={cursor}" if cursor else "")
        status, page = await api.call("GET", f"/api/v1/runs{query}", scope="read")
        assert status == 200, page
        seen += [r["run_id"] for r in page["runs"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3 and len(seen) == 7 and set(seen) == created
    await api.finished(quick["run_id"])
    _, done = await api.call("GET", "/api/v1/runs?status=succeeded&trigger=api", scope="read")
    assert [r["run_id"] for r in done["runs"]] == [quick["run_id"]]
    status, bad = await api.call("GET", "/api/v1/runs?limit=0", scope="read")
    assert status == 400 and "limit" in bad["detail"]
    status, bad = await api.call("GET", "/api/v1/runs?cursor=zzz", scope="read")
    assert status == 400 and "cursor" in bad["detail"]
    status, bad = await api.call("GET", "/api/v1/runs?status=sleeping", scope="read")
    assert status == 400 and "status" in bad["detail"]
    status, bad = await api.call("GET", "/api/v1/runs?colour=red", scope="read")
    assert status == 400 and "colour" in bad["detail"]


async def test_run_detail_events_logs_and_wait(api: Api) -> None:
    api.b.report_fails = False
    _, run = await api.call(
        "POST",
        "/api/v1/workflows/etl/runs",
        scope="trigger",
        json={"params": {"day": "2026-11-21", "n": 3}},
    )
    run_id = run["run_id"]
    done = await api.finished(run_id)
    assert done["status"] == "succeeded"
    tasks = {t["name"]: t for t in done["tasks"]}
    assert tasks["load"]["output"] == 60 and tasks["report"]["attempt"] == 1
    assert tasks["fetch"]["duration_seconds"] >= 0 and tasks["fetch"]["executions"] == 1
    status, first = await api.call("GET", f"/api/v1/runs/{run_id}/events?limit=4", scope="read")
    assert status == 200 and first["more"] and [e["seq"] for e in first["events"]] == [1, 2, 3, 4]
    assert first["events"][0]["type"] == "run_created"
    _, rest = await api.call(
        "GET", f"/api/v1/runs/{run_id}/events?after={first['next_after']}&limit=1000", scope="read"
    )
    assert not rest["more"] and rest["events"][0]["seq"] == 5
    assert rest["events"][-1]["type"] == "run_succeeded"
    _, logs = await api.call("GET", f"/api/v1/runs/{run_id}/logs?task=fetch", scope="read")
    assert "fetched 30 rows" in [line["message"] for line in logs["lines"]]
    assert (await api.call("GET", f"/api/v1/runs/{run_id}/logs?task=nope", scope="read"))[0] == 404
    for path in ("", "/events", "/logs", "/wait"):
        status, problem = await api.call("GET", f"/api/v1/runs/no-such-run{path}", scope="read")
        assert status == 404 and problem["title"] == "no such run", path


async def test_wait_times_out_then_pause_resume_cancel(api: Api) -> None:
    _, run = await api.call("POST", "/api/v1/workflows/slow/runs", scope="trigger", json={})
    run_id = run["run_id"]
    status, waited = await api.call("GET", f"/api/v1/runs/{run_id}/wait?timeout=0.3", scope="read")
    assert status == 200 and waited["status"] in ("pending", "running")
    status, paused = await api.call("POST", f"/api/v1/runs/{run_id}/pause", scope="operate")
    assert status == 200 and paused == {"run_id": run_id, "status": "paused", "applied": True}
    status, again = await api.call("POST", f"/api/v1/runs/{run_id}/pause", scope="operate")
    assert again["applied"] is False
    status, resumed = await api.call("POST", f"/api/v1/runs/{run_id}/resume", scope="operate")
    assert resumed["status"] == "running" and resumed["applied"]
    status, cancelled = await api.call(
        "POST", f"/api/v1/runs/{run_id}/cancel", scope="operate", json={"reason": "wrong day"}
    )
    assert status == 200 and cancelled["status"] == "cancelled"
    done = await api.finished(run_id)
    assert done["status"] == "cancelled" and done["reason"] == "wrong day"
    status, refused = await api.call("POST", f"/api/v1/runs/{run_id}/pause", scope="operate")
    assert status == 409 and "cancelled" in refused["detail"]
    status, bad = await api.call(
        "POST", f"/api/v1/runs/{run_id}/cancel", scope="operate", json={"reason": 5}
    )
    assert status == 400 and "reason" in bad["detail"]


async def test_events_stream_delivers_live_events(api: Api) -> None:
    _, run = await api.call("POST", "/api/v1/workflows/slow/runs", scope="trigger", json={})
    run_id = run["run_id"]
    headers = {"Authorization": f"Bearer {api.tokens['read']}"}
    received: list[tuple[str, str]] = []
    async with api.http.get(
        f"{api.url}/api/v1/runs/{run_id}/events/stream", headers=headers
    ) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        kind = seq = ""
        async for raw in response.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("id: "):
                seq = line[4:]
            elif line.startswith("data: ") and kind != "end":
                received.append((seq, kind))
                if kind == "task_started" and not api.b.gate.is_set():
                    api.b.gate.set()  # the run goes on only once the stream is live
            if kind == "end":
                break
    kinds = [k for _, k in received]
    assert kinds[0] == "run_created" and kinds[-1] == "run_succeeded"
    assert kinds.count("task_succeeded") == 2
    assert [int(i) for i, _ in received] == list(range(1, len(received) + 1))
    # resuming after the last event seen gives only the rest
    async with api.http.get(
        f"{api.url}/api/v1/runs/{run_id}/events/stream",
        headers={**headers, "Last-Event-ID": str(len(received) - 1)},
    ) as response:
        text = await response.text()
    assert text.count("id: ") == 1 and "event: run_succeeded" in text and "event: end" in text


# -- reruns ---------------------------------------------------------------------------------


async def test_rerun_through_the_api(api: Api) -> None:
    _, run = await api.call(
        "POST",
        "/api/v1/workflows/etl/runs",
        scope="trigger",
        json={"params": {"day": "2026-11-21"}},
    )
    run_id = run["run_id"]
    failed = await api.finished(run_id)
    assert failed["status"] == "failed"
    before = fold(await api.store.read_stream(run_stream(run_id)))
    status, plan = await api.call(
        "POST",
        f"/api/v1/runs/{run_id}/rerun",
        scope="operate",
        json={"tasks": ["report"], "dry_run": True},
    )
    assert status == 200
    assert (plan["rerun"], plan["reused"], plan["generation"], plan["applied"]) == (
        ["report"],
        ["fetch", "transform", "load"],
        2,
        False,
    )
    assert (
        fold(await api.store.read_stream(run_stream(run_id))) == before
    )  # a dry run changes nothing
    api.b.report_fails = False
    body = {"tasks": ["report"], "request_id": "fix-currency"}
    answers = await asyncio.gather(
        *(
            api.call("POST", f"/api/v1/runs/{run_id}/rerun", scope="operate", json=body)
            for _ in range(2)
        )
    )
    assert sorted(a[1]["applied"] for a in answers) == [False, True]  # the same request: once
    assert all(a[0] == 200 and a[1]["rerun"] == ["report"] for a in answers)
    done = await api.finished(run_id)
    assert done["status"] == "succeeded" and done["generation"] == 2
    assert api.b.executed == Counter(fetch=1, transform=1, load=1, report=2)
    # downstream from transform: transform, load, report run again; fetch is reused
    status, second = await api.call(
        "POST",
        f"/api/v1/runs/{run_id}/rerun",
        scope="operate",
        json={"tasks": ["transform"], "downstream": True},
        headers={"Idempotency-Key": "from-transform"},
    )
    assert status == 200 and second["rerun"] == ["transform", "load", "report"]
    assert second["request_id"] == "from-transform"
    await asyncio.sleep(0)
    done = await api.finished(run_id)
    assert done["generation"] == 3
    assert api.b.executed == Counter(fetch=1, transform=2, load=2, report=3)
    # refusals: unknown task; a run still running
    status, bad = await api.call(
        "POST", f"/api/v1/runs/{run_id}/rerun", scope="operate", json={"tasks": ["nope"]}
    )
    # the request is wrong, not the run's state: 400 naming the task and the ones it has
    assert status == 400 and "has no task nope" in bad["detail"]
    assert "report" in bad["detail"]
    _, slow = await api.call("POST", "/api/v1/workflows/slow/runs", scope="trigger", json={})
    status, refused = await api.call(
        "POST",
        f"/api/v1/runs/{slow['run_id']}/rerun",
        scope="operate",
        json={"tasks": ["wait_gate"]},
    )
    assert status == 409 and "finished run" in refused["detail"] and "queue" in refused["detail"]
    # ... unless asked to queue it: it is applied once the run ends
    queue = {"tasks": ["after_gate"], "queue": True, "request_id": "after-slow"}
    status, queued = await api.call(
        "POST", f"/api/v1/runs/{slow['run_id']}/rerun", scope="operate", json=queue
    )
    assert status == 200 and queued["queued"] and queued["applied"], queued
    status, again = await api.call(
        "POST", f"/api/v1/runs/{slow['run_id']}/rerun", scope="operate", json=queue
    )
    assert again["queued"] and not again["applied"]
    api.b.gate.set()
    finished = await api.finished(slow["run_id"])
    assert finished["status"] == "succeeded" and finished["generation"] == 2
    gens = {t["name"]: t["generation"] for t in finished["tasks"]}
    assert gens == {"wait_gate": 1, "after_gate": 2}
    _, events = await api.call(
        "GET", f"/api/v1/runs/{slow['run_id']}/events?limit=1000", scope="read"
    )
    kinds = [e["type"] for e in events["events"]]
    assert kinds.count("rerun_queued") == 1 and kinds.count("rerun_requested") == 1
    assert kinds.index("run_succeeded") < kinds.index("rerun_requested")
    status, bad = await api.call(
        "POST", f"/api/v1/runs/{run_id}/rerun", scope="operate", json={"tasks": []}
    )
    assert status == 400 and "tasks" in bad["detail"]


# -- backfills, schedules, metrics ----------------------------------------------------------


async def test_backfills_and_schedules(api: Api) -> None:
    window = {"workflow": "nightly", "start": "2026-11-01T00:00:00Z", "end": "2026-11-04T00:00:00Z"}
    status, plan = await api.call(
        "POST", "/api/v1/backfills", scope="operate", json={**window, "dry_run": True}
    )
    assert status == 200 and plan["backfill_id"] is None
    assert [p["action"] for p in plan["plan"]] == ["create"] * 3
    assert await api.store.list_runs() == []
    status, created = await api.call("POST", "/api/v1/backfills", scope="operate", json=window)
    assert status == 202 and created["intervals"] == 3
    backfill_id = created["backfill_id"]
    for _ in range(200):
        _, got = await api.call("GET", f"/api/v1/backfills/{backfill_id}", scope="read")
        if got["runs"].get("succeeded") == 3:
            break
        await asyncio.sleep(0.05)
    assert got["runs"] == {"succeeded": 3}
    _, listed = await api.call("GET", "/api/v1/backfills", scope="read")
    assert [b["backfill_id"] for b in listed["backfills"]] == [backfill_id]
    # every interval's run ended: the backfill says how it ended, not "running"
    assert [b["status"] for b in listed["backfills"]] == ["succeeded"]
    status, paused = await api.call(
        "POST", f"/api/v1/backfills/{backfill_id}/pause", scope="operate"
    )
    assert status == 200 and paused["status"] == "succeeded"  # nothing left to pause
    status, resumed = await api.call(
        "POST", f"/api/v1/backfills/{backfill_id}/resume", scope="operate"
    )
    assert resumed["status"] == "succeeded"
    status, cancelled = await api.call(
        "POST", f"/api/v1/backfills/{backfill_id}/cancel", scope="operate"
    )
    assert cancelled["status"] == "cancelled"
    status, refused = await api.call(
        "POST", f"/api/v1/backfills/{backfill_id}/pause", scope="operate"
    )
    assert status == 400 and "cancelled" in refused["detail"]
    assert (await api.call("GET", "/api/v1/backfills/bf-nope", scope="read"))[0] == 404
    status, bad = await api.call(
        "POST", "/api/v1/backfills", scope="operate", json={**window, "workflow": "quick"}
    )
    assert status == 400 and "no schedule" in bad["detail"]
    status, bad = await api.call(
        "POST",
        "/api/v1/backfills",
        scope="operate",
        json={**window, "start": "2026-11-01T00:00:00"},
    )
    assert status == 400 and "start" in bad["detail"]

    status, schedules = await api.call("GET", "/api/v1/schedules", scope="read")
    assert [s["workflow"] for s in schedules["schedules"]] == ["nightly"]
    assert schedules["schedules"][0]["cron"] == "0 2 * * *"
    status, paused = await api.call(
        "POST", "/api/v1/schedules/nightly/pause", scope="operate", json={"reason": "migration"}
    )
    assert status == 200 and paused["paused"] is True
    _, got = await api.call("GET", "/api/v1/schedules/nightly", scope="read")
    assert got["paused"] is True
    _, resumed = await api.call("POST", "/api/v1/schedules/nightly/resume", scope="operate")
    assert resumed["paused"] is False
    assert (await api.call("GET", "/api/v1/schedules/quick", scope="read"))[0] == 404


async def test_metrics_in_prometheus_format(api: Api) -> None:
    _, run = await api.call("POST", "/api/v1/workflows/quick/runs", scope="trigger", json={})
    await api.finished(run["run_id"])
    status, text = await api.call("GET", "/metrics", scope="read")
    assert status == 200
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("durable_runs", (("status", "succeeded"), ("workflow", "quick")))] == 1
    # the OTel HTTP semantic conventions: the route's template, the method, the status
    posted = (
        ("http_request_method", "POST"),
        ("http_response_status_code", "202"),
        ("http_route", "/api/v1/workflows/{workflow}/runs"),
    )
    assert samples[("http_server_request_duration_seconds_count", posted)] == 1
    assert samples[("http_server_request_duration_seconds_bucket", (*posted, ("le", "+Inf")))] == 1


async def test_schedules_read_now_from_the_injected_clock(api: Api) -> None:
    later = datetime(2030, 1, 1, 0, 30, tzinfo=UTC)
    registry = registry_of(*workflows(Behaviour()))
    runner, url = await serve(create_app(api.store, registry, clock=lambda: later))
    try:
        headers = {"Authorization": f"Bearer {api.tokens['read']}"}
        async with api.http.get(f"{url}/api/v1/schedules/nightly", headers=headers) as response:
            assert response.status == 200
            view = await response.json()
    finally:
        await runner.cleanup()
    assert datetime.fromisoformat(view["next_fire"]) == datetime(2030, 1, 1, 2, tzinfo=UTC)
    _, today = await api.call("GET", "/api/v1/schedules/nightly", scope="read")
    assert datetime.fromisoformat(today["next_fire"]).year < 2030  # the default: the real time


# -- the Python client ----------------------------------------------------------------------


async def test_client_trigger_wait_outputs_events_cancel(api: Api) -> None:
    api.b.report_fails = False
    async with (
        Client(api.url, token=api.tokens["operate"]) as operator,
        Client(api.url, token=api.tokens["trigger"]) as client,
    ):
        started = await client.trigger("etl", {"day": "2026-11-21", "n": 2}, idempotency_key="c-1")
        again = await client.trigger("etl", {"day": "2026-11-21", "n": 2}, idempotency_key="c-1")
        assert started.created and again == s.TriggerResult(run_id=started.run_id, created=False)
        with pytest.raises(ClientError) as conflict:
            await client.trigger("etl", {"day": "2026-11-22"}, idempotency_key="c-1")
        assert conflict.value.status == 409
        run = await client.wait(started.run_id, timeout=30)
        assert run.status == "succeeded"
        assert await client.outputs(started.run_id) == {
            "fetch": {"rows": 20},
            "transform": {"rows": 40},
            "load": 40,
            "report": "40 rows in generation 1",
        }
        kinds = [e.type async for e in client.events(started.run_id)]
        assert kinds[0] == "run_created" and kinds[-1] == "run_succeeded"
        listed = [r.run_id async for r in client.list_runs(workflow="etl", limit=1)]
        assert listed == [started.run_id]

        slow = await client.trigger("slow")
        with pytest.raises(TimeoutError):
            await client.wait(slow.run_id, timeout=0.2, poll=0.1)
        cancelled = await operator.cancel(slow.run_id, reason="not needed")
        assert cancelled.status == "cancelled"
        assert (await client.wait(slow.run_id)).status == "cancelled"
        with pytest.raises(ClientError) as missing:
            await client.get_run("no-such-run")
        assert missing.value.status == 404 and not missing.value.retryable


async def test_client_retries_honour_idempotency(api: Api) -> None:
    """A trigger whose answer is lost (the run was created, the caller got a 503) is
    retried with the same key: still one run. Connection errors are retried too."""
    lost = {"answers": 2}

    async def front(request: web.Request) -> web.StreamResponse:
        async with api.http.request(
            request.method,
            api.url + request.path_qs,
            data=await request.read(),
            headers={k: v for k, v in request.headers.items() if k.lower() != "host"},
        ) as upstream:
            body = await upstream.read()
            if lost["answers"] > 0 and request.method == "POST":
                lost["answers"] -= 1  # the work happened, the answer is lost
                return web.Response(status=503, headers={"Retry-After": "0"})
            return web.Response(
                body=body, status=upstream.status, content_type=upstream.content_type
            )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", front)
    runner, url = await serve(app)
    try:
        async with Client(url, token=api.tokens["trigger"], backoff=0.01) as client:
            result = await client.trigger("quick")
        assert lost["answers"] == 0 and result.created is False  # the retry found the run
        runs = await api.store.list_runs()
        assert [r.run_id for r in runs] == [result.run_id]
    finally:
        await runner.cleanup()

    # nothing listens at first: connection errors are retried until the server is up
    port = int(url.rsplit(":", 1)[1])
    later = web.Application()
    later.router.add_route("*", "/{tail:.*}", front)
    later_runner = web.AppRunner(later)

    async def start_later() -> None:
        await asyncio.sleep(0.3)
        await later_runner.setup()
        await web.TCPSite(later_runner, "127.0.0.1", port).start()

    starting = asyncio.create_task(start_later())
    try:
        async with Client(url, token=api.tokens["trigger"], backoff=0.05) as client:
            second = await client.trigger("quick", idempotency_key="after-outage")
        assert second.created is True
    finally:
        await starting
        await later_runner.cleanup()

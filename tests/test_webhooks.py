"""Webhook triggers through a real HTTP server on loopback."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from durable import Param, Workflow
from durable.api import create_app
from durable.application.tokens import create_token
from durable.core.s3 import WebhookTrigger
from durable.store import PostgresEventStore
from tests.executing import registry_of

SECRET = "s3cr3t"
TOKENS: dict[str, str] = {}


def session(scope: str | None = "trigger") -> aiohttp.ClientSession:
    """Hooks without an HMAC secret take a bearer token with the trigger scope."""
    headers = {"Authorization": f"Bearer {TOKENS[scope]}"} if scope else {}
    return aiohttp.ClientSession(headers=headers)


@pytest.fixture
async def api(pg_store: PostgresEventStore) -> AsyncIterator[str]:
    _, TOKENS["trigger"] = await create_token(pg_store.tokens, "hooks", ["trigger"])
    _, TOKENS["read"] = await create_token(pg_store.tokens, "reader", ["read"])
    signed = Workflow(
        "signed",
        params={"day": Param("date", required=True)},
        webhook=WebhookTrigger(secret_env="HOOK_SECRET"),
    )
    signed.shell("a", "true")
    open_hook = Workflow("open", params={"n": Param("int", default=1)}, webhook=WebhookTrigger())
    open_hook.shell("a", "true")
    no_hook = Workflow("closed")
    no_hook.shell("a", "true")
    app = create_app(
        pg_store, registry_of(signed, open_hook, no_hook), environ={"HOOK_SECRET": SECRET}
    )
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


def sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


async def test_signed_webhooks_start_runs_once_per_key(
    api: str, pg_store: PostgresEventStore
) -> None:
    body = b'{"day": "2026-11-21"}'
    async with aiohttp.ClientSession() as http:
        headers = {"X-Durable-Signature": sign(body), "Idempotency-Key": "k-1"}
        first = await http.post(f"{api}/api/v1/hooks/signed", data=body, headers=headers)
        assert first.status == 202
        run = await first.json()
        assert run["created"] is True
        state = await pg_store.get_run(run["run_id"])  # durable before the 202
        assert state is not None and state.params == {"day": "2026-11-21"}
        again = await http.post(f"{api}/api/v1/hooks/signed", data=body, headers=headers)
        assert again.status == 200 and (await again.json()) == {
            "run_id": run["run_id"],
            "created": False,
        }

        bad = await http.post(
            f"{api}/api/v1/hooks/signed",
            data=body,
            headers={"X-Durable-Signature": sign(body, "wrong")},
        )
        assert bad.status == 401
        assert bad.content_type == "application/problem+json"
        assert (await bad.json())["title"] == "bad signature"
        missing = await http.post(f"{api}/api/v1/hooks/signed", data=body)
        assert missing.status == 401
    assert len(await pg_store.list_runs()) == 1  # nothing recorded for bad signatures


async def test_webhook_errors_are_problem_details(api: str) -> None:
    async with session() as http:
        cases = [
            ("open", b"{not json", 400, "body is not JSON"),
            ("open", b"[1, 2]", 400, "bad body"),
            ("open", b'{"n": "many"}', 400, "bad params"),
            ("open", b'{"m": 1}', 400, "bad params"),
            ("ghost", b"{}", 404, "no such workflow"),
            ("closed", b"{}", 404, "no webhook"),
        ]
        for workflow, body, status, title in cases:
            response = await http.post(f"{api}/api/v1/hooks/{workflow}", data=body)
            assert response.status == status, (workflow, body)
            detail = await response.json()
            assert detail["title"] == title
        params = await (await http.post(f"{api}/api/v1/hooks/open", data=b'{"n": "many"}')).json()
        assert (
            params["detail"] == "workflow 'open': param 'n': expected int, got \"many\" (a string)"
        )
        ok = await http.post(f"{api}/api/v1/hooks/open", data=b'{"n": 3}')
        assert ok.status == 202
        assert (await (await http.get(f"{api}/healthz")).json()) == {"status": "ok"}
        assert (await (await http.get(f"{api}/readyz")).json()) == {"status": "ready"}
        big = await http.post(f"{api}/api/v1/hooks/open", data=b"x" * (2 * 1024 * 1024))
        assert big.status == 413


async def test_s3_event_notifications_over_http(api: str, pg_store: PostgresEventStore) -> None:
    note = (
        b'{"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "lake"},'
        b' "object": {"key": "in/a+b.csv", "size": 5, "eTag": "e1"}}}]}'
    )
    async with session() as http:
        for _ in range(2):  # the storage retries its notification
            response = await http.post(f"{api}/api/v1/hooks/open/s3-events", data=note)
            assert response.status == 202
        body = await response.json()
        assert [r["created"] for r in body["runs"]] == [False]
        bad = await http.post(
            f"{api}/api/v1/hooks/open/s3-events",
            data=b'{"Records": [{"eventName": "ObjectCreated:Put"}]}',
        )
        assert bad.status == 400 and (await bad.json())["title"] == "not an S3 event notification"
    runs = [r for r in await pg_store.list_runs() if r.trigger_kind == "s3"]
    assert len(runs) == 1
    assert runs[0].idempotency_key == "s3:open:lake:in/a b.csv:e1"


async def test_hooks_without_a_secret_need_a_trigger_token(
    api: str, pg_store: PostgresEventStore
) -> None:
    for scope, status in ((None, 401), ("read", 403), ("trigger", 202)):
        async with session(scope) as http:
            response = await http.post(f"{api}/api/v1/hooks/open", data=b'{"n": 2}')
            assert response.status == status, scope
    assert len(await pg_store.list_runs()) == 1


async def test_a_reused_idempotency_key_with_another_body_is_refused(
    api: str, pg_store: PostgresEventStore
) -> None:
    """The rule of every HTTP door: the same key with other params is a 409 naming the
    key, and nothing is recorded; the same key with the same params is the same run."""
    first_body, other_body = b'{"day": "2026-11-21"}', b'{"day": "2026-11-22"}'
    url = f"{api}/api/v1/hooks/signed"
    async with aiohttp.ClientSession() as http:

        async def post(body: bytes) -> aiohttp.ClientResponse:
            headers = {"X-Durable-Signature": sign(body), "Idempotency-Key": "order-7"}
            return await http.post(url, data=body, headers=headers)

        first = await post(first_body)
        assert first.status == 202
        run_id = (await first.json())["run_id"]
        conflict = await post(other_body)
        assert conflict.status == 409
        assert conflict.content_type == "application/problem+json"
        problem = await conflict.json()
        assert problem["title"] == "idempotency key reused"
        assert "'order-7'" in problem["detail"] and run_id in problem["detail"]
        again = await post(first_body)  # the conflict changed nothing: the key still works
        assert again.status == 200 and (await again.json())["run_id"] == run_id
    runs = await pg_store.list_runs()
    assert [(r.run_id, r.params) for r in runs] == [(run_id, {"day": "2026-11-21"})]


async def test_the_webhook_and_the_runs_endpoint_share_idempotency_keys(
    api: str, pg_store: PostgresEventStore
) -> None:
    async with session() as http:
        hooked = await http.post(
            f"{api}/api/v1/hooks/open", data=b'{"n": 2}', headers={"Idempotency-Key": "shared"}
        )
        assert hooked.status == 202
        run_id = (await hooked.json())["run_id"]
        same = await http.post(
            f"{api}/api/v1/workflows/open/runs",
            json={"params": {"n": 2}},
            headers={"Idempotency-Key": "shared"},
        )
        assert same.status == 200 and (await same.json()) == {"run_id": run_id, "created": False}
        other = await http.post(
            f"{api}/api/v1/workflows/open/runs",
            json={"params": {"n": 3}},
            headers={"Idempotency-Key": "shared"},
        )
        assert other.status == 409 and "'shared'" in (await other.json())["detail"]
        back = await http.post(
            f"{api}/api/v1/hooks/open", data=b'{"n": 4}', headers={"Idempotency-Key": "shared"}
        )
        assert back.status == 409 and "'shared'" in (await back.json())["detail"]
    assert [r.run_id for r in await pg_store.list_runs()] == [run_id]

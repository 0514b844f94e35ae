"""The API as the web UI reads it, in tests: a real aiohttp server on loopback over a
real PostgreSQL store, with (optionally) a real executor driving the runs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp

from durable.api import create_app
from durable.application.runs import register_versions
from durable.application.tokens import create_token
from durable.store import PostgresEventStore
from durable.workflows import WorkflowRegistry
from tests.executing import running_executor
from tests.test_api import serve

TERMINAL = ("succeeded", "failed", "cancelled")


@dataclass
class Ui:
    url: str
    http: aiohttp.ClientSession
    tokens: dict[str, str]
    store: PostgresEventStore

    async def call(
        self,
        method: str,
        path: str,
        *,
        scope: str = "read",
        json: Any = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        h = {"Authorization": f"Bearer {self.tokens[scope]}", **(headers or {})}
        async with self.http.request(method, self.url + path, json=json, headers=h) as response:
            return response.status, await response.json(content_type=None)

    async def get(self, path: str) -> Any:
        """The 200 answer's body (anything else fails the test)."""
        status, body = await self.call("GET", path)
        assert status == 200, (path, status, body)
        return body

    async def start(self, workflow: str, params: dict[str, Any] | None = None, **kw: Any) -> str:
        status, body = await self.call(
            "POST",
            f"/api/v1/workflows/{workflow}/runs",
            scope="trigger",
            json={"params": params or {}},
            **kw,
        )
        assert status in (200, 202), body
        return str(body["run_id"])

    async def finished(self, run_id: str) -> dict[str, Any]:
        run = await self.get(f"/api/v1/runs/{run_id}/wait?timeout=30")
        assert run["status"] in TERMINAL, run
        return run  # type: ignore[no-any-return]


@asynccontextmanager
async def serving(
    store: PostgresEventStore,
    registry: WorkflowRegistry,
    *,
    execute: bool = True,
    clock: Callable[[], datetime] | None = None,
) -> AsyncIterator[Ui]:
    """The API over ``store`` serving ``registry`` (its versions recorded), with an
    executor running its workflows when ``execute``."""
    await register_versions(store, registry)
    tokens = {}
    for scope in ("read", "trigger", "operate"):
        _, tokens[scope] = await create_token(store.tokens, f"ui-{scope}", [scope])
    app = create_app(store, registry, **({"clock": clock} if clock else {}))
    runner, url = await serve(app)
    try:
        async with AsyncExitStack() as stack:
            if execute:
                await stack.enter_async_context(running_executor(store, registry))
            http = await stack.enter_async_context(aiohttp.ClientSession())
            yield Ui(url, http, tokens, store)
    finally:
        await runner.cleanup()

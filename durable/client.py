"""A Python client of the durable HTTP API, for services.

    async with Client("http://durable:8080", token=os.environ["DURABLE_TOKEN"]) as client:
        run = await client.trigger("daily_sales", {"date": "2026-11-21"}, idempotency_key=order_id)
        done = await client.wait(run.run_id)
        print(done.status, done.outputs())

Retries: connection errors, timeouts and 502/503/504 are retried with exponential backoff
and jitter (``Retry-After`` is honoured). A retry never doubles an effect: ``trigger``
always sends an ``Idempotency-Key`` (a new UUID when none is given, the same one on every
retry), ``rerun`` a request id, and cancel/pause/resume are idempotent by nature.
"""

from __future__ import annotations

import asyncio
import os
import random
import uuid
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any

import aiohttp
import msgspec

from durable.api import schemas as s
from durable.core.errors import DurableError

__all__ = ["ApiError", "Client", "Run", "RunEvent"]


class ApiError(DurableError):
    """The API answered with an error (a problem+json body)."""

    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(f"{status} {title}: {detail}")
        self.status = status
        self.title = title
        self.detail = detail
        self.retryable = status in _RETRY_STATUSES


class Run(s.RunDetail, frozen=True, kw_only=True):
    """A run as the API returns it."""

    @property
    def done(self) -> bool:
        return self.status in ("succeeded", "failed", "cancelled")

    def outputs(self) -> dict[str, Any]:
        """Each succeeded task's output."""
        return {t.name: t.output for t in self.tasks if t.status == "succeeded"}


class RunEvent(msgspec.Struct, kw_only=True):
    seq: int
    type: str
    recorded_at: datetime
    data: dict[str, Any]


_RETRY_STATUSES = frozenset({502, 503, 504})
_CONNECTION_ERRORS = (aiohttp.ClientConnectionError, asyncio.TimeoutError)


class Client:
    """Async client of ``/api/v1``; one per service, shared by its tasks."""

    def __init__(
        self,
        base_url: str | None = None,
        *,
        token: str | None = None,
        retries: int = 5,
        backoff: float = 0.1,
        max_backoff: float = 5.0,
        timeout: float = 30.0,
    ) -> None:
        self.base_url = (base_url or os.environ.get("DURABLE_URL", "http://127.0.0.1:8080")).rstrip(
            "/"
        )
        self.token = token or os.environ.get("DURABLE_TOKEN")
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
            self._session = aiohttp.ClientSession(headers=headers)
        return self._session

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Any:
        """The decoded JSON answer; retried on connection errors and 502/503/504."""
        body = msgspec.json.encode(json) if json is not None else None
        query = {k: str(v) for k, v in (params or {}).items() if v is not None}
        sent_headers = dict(headers or {})
        if body is not None:
            sent_headers["Content-Type"] = "application/json"
        delay = self.backoff
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                async with self._http().request(
                    method,
                    self.base_url + path,
                    data=body,
                    params=query,
                    headers=sent_headers,
                    timeout=aiohttp.ClientTimeout(total=timeout or self.timeout),
                ) as response:
                    raw = await response.read()
                    if response.status < 400:
                        return msgspec.json.decode(raw) if raw else None
                    error = _error(response.status, raw)
                    if not error.retryable or last:
                        raise error
                    wait = _retry_after(response.headers.get("Retry-After"), delay)
            except _CONNECTION_ERRORS as exc:
                if last:
                    raise ApiError(
                        503, "unreachable", f"{method} {self.base_url}{path}: {exc!r}"
                    ) from exc
                wait = delay
            await asyncio.sleep(wait * (0.5 + random.random() / 2))
            delay = min(delay * 2, self.max_backoff)
        raise AssertionError("unreachable")  # the loop returns or raises

    # -- runs ----------------------------------------------------------------------------

    async def trigger(
        self,
        workflow: str,
        params: Mapping[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
        logical_date: datetime | None = None,
    ) -> s.TriggerResult:
        """Start a run; durable when this returns. The same key always means the same run."""
        key = idempotency_key or str(uuid.uuid4())
        body: dict[str, Any] = {"params": dict(params or {})}
        if logical_date is not None:
            body["logical_date"] = logical_date
        data = await self._request(
            "POST",
            f"/api/v1/workflows/{workflow}/runs",
            json=body,
            headers={"Idempotency-Key": key},
        )
        return msgspec.convert(data, s.TriggerResult)

    async def get_run(self, run_id: str) -> Run:
        return msgspec.convert(await self._request("GET", f"/api/v1/runs/{run_id}"), Run)

    async def wait(self, run_id: str, timeout: float | None = None, *, poll: float = 30.0) -> Run:
        """Wait until the run ends (long-polls of ``poll`` seconds); ``TimeoutError``
        after ``timeout`` seconds (None: no limit)."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            left = poll if deadline is None else max(0.0, min(poll, deadline - loop.time()))
            data = await self._request(
                "GET",
                f"/api/v1/runs/{run_id}/wait",
                params={"timeout": left},
                timeout=left + self.timeout,
            )
            run = msgspec.convert(data, Run)
            if run.done:
                return run
            if deadline is not None and loop.time() >= deadline:
                raise TimeoutError(f"run {run_id} is still {run.status} after {timeout} s")

    async def outputs(self, run_id: str) -> dict[str, Any]:
        return (await self.get_run(run_id)).outputs()

    async def list_runs(self, **filters: Any) -> AsyncIterator[s.RunSummary]:
        """Every run matching ``filters`` (workflow, status, trigger, since, until), page by
        page."""
        cursor = None
        while True:
            data = await self._request("GET", "/api/v1/runs", params={**filters, "cursor": cursor})
            page = msgspec.convert(data, s.RunPage)
            for run in page.runs:
                yield run
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def cancel(self, run_id: str, reason: str | None = None) -> s.CommandResult:
        return await self._command(run_id, "cancel", reason)

    async def pause(self, run_id: str, reason: str | None = None) -> s.CommandResult:
        return await self._command(run_id, "pause", reason)

    async def resume(self, run_id: str) -> s.CommandResult:
        return await self._command(run_id, "resume", None)

    async def _command(self, run_id: str, verb: str, reason: str | None) -> s.CommandResult:
        data = await self._request(
            "POST", f"/api/v1/runs/{run_id}/{verb}", json={"reason": reason} if reason else {}
        )
        return msgspec.convert(data, s.CommandResult)

    async def rerun(
        self,
        run_id: str,
        tasks: list[str],
        *,
        downstream: bool = False,
        failed_only: bool = False,
        dry_run: bool = False,
        request_id: str | None = None,
    ) -> s.RerunResult:
        """Rerun ``tasks`` of a finished run; the request id makes retries safe."""
        data = await self._request(
            "POST",
            f"/api/v1/runs/{run_id}/rerun",
            json={
                "tasks": tasks,
                "downstream": downstream,
                "failed_only": failed_only,
                "dry_run": dry_run,
                "request_id": request_id or f"rerun-{uuid.uuid4()}",
            },
        )
        return msgspec.convert(data, s.RerunResult)

    async def events(self, run_id: str, *, after: int = 0) -> AsyncIterator[RunEvent]:
        """The run's events, then the new ones live (server-sent events) until it ends.
        A dropped connection resumes after the last event received."""
        delay = self.backoff
        failures = 0
        while True:
            try:
                async with self._http().get(
                    f"{self.base_url}/api/v1/runs/{run_id}/events/stream",
                    params={"after": str(after)},
                    timeout=aiohttp.ClientTimeout(total=None, sock_read=60),
                ) as response:
                    if response.status >= 400:
                        error = _error(response.status, await response.read())
                        if not error.retryable:
                            raise error
                        raise aiohttp.ClientConnectionError(str(error))
                    async for kind, data in _sse(response.content):
                        failures = 0
                        if kind == "end":
                            return
                        line = msgspec.json.decode(data)
                        after = line["seq"]
                        yield RunEvent(
                            seq=line["seq"],
                            type=line["type"],
                            recorded_at=msgspec.convert(line["recorded_at"], datetime),
                            data=line["data"],
                        )
                    return
            except _CONNECTION_ERRORS:
                failures += 1
                if failures > self.retries:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_backoff)


async def _sse(content: aiohttp.StreamReader) -> AsyncIterator[tuple[str, bytes]]:
    """(event, data) of a text/event-stream."""
    kind, data = "message", b""
    async for raw in content:
        line = raw.rstrip(b"\r\n")
        if not line:
            if data:
                yield kind, data
            kind, data = "message", b""
        elif line.startswith(b"event:"):
            kind = line[6:].strip().decode()
        elif line.startswith(b"data:"):
            data += line[5:].strip()


def _error(status: int, raw: bytes) -> ApiError:
    try:
        problem = msgspec.json.decode(raw, type=s.Problem)
        return ApiError(status, problem.title, problem.detail)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return ApiError(status, "error", raw[:500].decode(errors="replace"))


def _retry_after(header: str | None, default: float) -> float:
    try:
        return max(0.0, min(float(header), 60.0)) if header else default
    except ValueError:
        return default

"""HTTP tasks (aiohttp): 5xx and connection errors retry; other unexpected statuses don't."""

from __future__ import annotations

from typing import Any

import aiohttp
from msgspec import UNSET

from durable.core.errors import TaskError
from durable.core.tasks import HttpTask
from durable.workflows.context import TaskContext

__all__ = ["run"]

_MAX_BODY = 1_000_000


async def run(spec: HttpTask, ctx: TaskContext, session: aiohttp.ClientSession) -> Any:
    from durable.runtime.tasks import render

    url: str = render(spec.url, ctx, "url")
    method: str = "GET" if spec.method is UNSET else render(spec.method, ctx, "header")
    expect = spec.expect or list(range(200, 300))
    custom: dict[str, str] = render(spec.headers or {}, ctx, "header")
    headers = {"Idempotency-Key": ctx.idempotency_key}
    if ctx.traceparent and not any(k.lower() == "traceparent" for k in custom):
        headers["traceparent"] = ctx.traceparent  # the server's spans join the run's trace
    headers.update(custom)
    timeout = aiohttp.ClientTimeout(total=spec.timeout or 30)
    try:
        async with session.request(
            method,
            url,
            headers=headers,
            json=None if spec.json is UNSET else render(spec.json, ctx),
            data=None if spec.body is UNSET else render(spec.body, ctx),
            timeout=timeout,
        ) as response:
            raw = await response.content.read(_MAX_BODY)
            status = response.status
            is_json = response.content_type == "application/json"
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise TaskError(f"{url}: {type(exc).__name__}: {exc}", type="HTTPConnectionError") from None
    text = raw.decode(errors="replace")
    ctx.log.info("%s %s -> %s", method, url, status)
    if status not in expect:
        raise TaskError(
            f"{url} answered {status}: {text[:200]}",
            retryable=status >= 500 or status == 429,
            type="HTTPStatusError",
        )
    body: Any = text
    if is_json:
        import msgspec

        try:
            body = msgspec.json.decode(raw)
        except msgspec.DecodeError:
            body = text
    return {"status": status, "body": body}

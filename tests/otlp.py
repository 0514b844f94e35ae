"""A real OTLP/HTTP trace receiver on loopback, for tests and the benchmark.

An aiohttp app serving ``POST /v1/traces``: each body is decoded as the
``ExportTraceServiceRequest`` protobuf (opentelemetry-proto), as a collector would, and
its spans kept. Run as a module it is a receiver that accepts and drops every request
without decoding it (the benchmark's: a collector's work is not durable's cost)::

    python -m tests.otlp --port 4318
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue


def value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return tuple(value(x) for x in v.array_value.values)
    return getattr(v, kind) if kind else None


def attributes(kvs: Any) -> dict[str, Any]:
    return {kv.key: value(kv.value) for kv in kvs}


@dataclass(frozen=True)
class Span:
    """One received span, decoded: ids as hex, attributes as a dict."""

    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: int  # 1 internal, 5 consumer (the OTLP enum)
    status: int  # 0 unset, 2 error
    status_message: str
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    events: list[tuple[str, dict[str, Any]]]
    resource: dict[str, Any] = field(default_factory=dict)


class Receiver:
    """The receiver: ``url`` once started; ``spans`` as received, in order."""

    def __init__(self, *, discard: bool = False) -> None:
        self.discard = discard
        self.requests = 0
        self.spans: list[Span] = []
        self.refuse = False
        """Answer 503 (the collector is unwell): the exporter retries, then gives up."""
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._arrived = asyncio.Event()

    async def start(self, port: int = 0) -> str:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/traces", self._traces)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _traces(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.refuse:
            return web.Response(status=503, text="not now")
        if self.discard:
            self.requests += 1
            return web.Response(body=b"", content_type="application/x-protobuf")
        decoded = ExportTraceServiceRequest.FromString(body)
        self.requests += 1
        for rs in decoded.resource_spans:
            resource = attributes(rs.resource.attributes)
            for ss in rs.scope_spans:
                for s in ss.spans:
                    self.spans.append(
                        Span(
                            name=s.name,
                            trace_id=s.trace_id.hex(),
                            span_id=s.span_id.hex(),
                            parent_span_id=s.parent_span_id.hex(),
                            kind=s.kind,
                            status=s.status.code,
                            status_message=s.status.message,
                            start_ns=s.start_time_unix_nano,
                            end_ns=s.end_time_unix_nano,
                            attributes=attributes(s.attributes),
                            events=[(e.name, attributes(e.attributes)) for e in s.events],
                            resource=resource,
                        )
                    )
        self._arrived.set()
        return web.Response(
            body=ExportTraceServiceResponse().SerializeToString(),
            content_type="application/x-protobuf",
        )

    def of_trace(self, trace_id: int) -> list[Span]:
        return [s for s in self.spans if s.trace_id == f"{trace_id:032x}"]

    async def wait_for(self, ready: Callable[[], bool], timeout: float = 30) -> None:
        """Until ``ready()`` holds (checked as requests arrive); TimeoutError at ``timeout``."""
        async with asyncio.timeout(timeout):
            while not ready():
                self._arrived.clear()
                await self._arrived.wait()


async def _serve(port: int) -> None:
    receiver = Receiver(discard=True)
    await receiver.start(port)
    print(receiver.url, flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await receiver.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=4318)
    args = parser.parse_args()
    asyncio.run(_serve(args.port))


if __name__ == "__main__":
    main()

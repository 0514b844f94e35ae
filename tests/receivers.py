"""Real receivers on loopback for the notification tests: an SMTP sink (aiosmtpd) and
HTTP servers standing in for Slack, webhook receivers and PagerDuty's Events API.

Each runs on the test's own event loop; nothing is mocked: the senders speak SMTP and
HTTP to them over TCP.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
import warnings
from collections.abc import Awaitable, Callable
from email.message import EmailMessage
from typing import Any

import msgspec
from aiohttp import web
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

__all__ = ["HttpReceiver", "Received", "SmtpSink"]

logging.getLogger("mail.log").setLevel(logging.ERROR)  # aiosmtpd's warnings about the above


class SmtpSink:
    """An SMTP server keeping every message it accepts; with ``user``/``password`` it
    requires that login (over plain TCP: it is loopback)."""

    def __init__(self, *, user: str | None = None, password: str | None = None) -> None:
        self.user = user
        self.password = password
        self.messages: list[EmailMessage] = []
        self.envelopes: list[Envelope] = []
        self.logins: list[str] = []
        self.port = 0
        self._server: asyncio.Server | None = None
        self.arrived = asyncio.Event()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        raw = envelope.content if isinstance(envelope.content, bytes) else b""
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        self.arrived.set()
        return "250 Message accepted for delivery"

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = (
            isinstance(data, LoginPassword)
            and data.login.decode() == self.user
            and data.password.decode() == self.password
        )
        if ok:
            self.logins.append(data.login.decode())
        return AuthResult(success=ok)

    async def start(self) -> SmtpSink:
        loop = asyncio.get_running_loop()
        auth = self.user is not None

        def protocol() -> SMTP:
            with warnings.catch_warnings():  # AUTH without TLS: it is loopback
                warnings.simplefilter("ignore")
                return SMTP(
                    self,
                    authenticator=self._authenticate if auth else None,
                    auth_required=auth,
                    auth_require_tls=False,
                )

        self._server = await loop.create_server(protocol, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


class Received(msgspec.Struct, kw_only=True):
    """A request as a receiver got it."""

    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return msgspec.json.decode(self.body)


Responder = Callable[[Received], Awaitable[web.StreamResponse]]


class HttpReceiver:
    """An HTTP server recording every POST; ``respond`` says what to answer (default:
    ``status``). ``port``: a port to bind (a receiver that comes up later on the address
    a rule names)."""

    def __init__(
        self, *, status: int = 200, port: int = 0, respond: Responder | None = None
    ) -> None:
        self.status = status
        self.port = port
        self.respond = respond
        self.received: list[Received] = []
        self.arrived = asyncio.Condition()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        got = Received(path=request.path, headers=dict(request.headers), body=await request.read())
        self.received.append(got)
        async with self.arrived:
            self.arrived.notify_all()
        if self.respond is not None:
            return await self.respond(got)
        return web.Response(status=self.status, text="ok")

    async def start(self) -> HttpReceiver:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        return self

    async def wait_for(self, count: int, timeout: float = 20) -> list[Received]:
        """Until ``count`` requests arrived; fails after ``timeout`` seconds."""
        async with self.arrived:
            try:
                await asyncio.wait_for(
                    self.arrived.wait_for(lambda: len(self.received) >= count), timeout
                )
            except TimeoutError:
                raise AssertionError(
                    f"the receiver got {len(self.received)} request(s), not {count}, "
                    f"within {timeout:g} s"
                ) from None
        return self.received

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

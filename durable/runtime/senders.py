"""The four channels' senders: email (SMTP, through aiosmtplib), Slack (incoming webhook,
Block Kit), webhooks (signed JSON), PagerDuty (Events API v2).

Hand-written rather than through apprise: every address here is configurable — the SMTP
host, the webhook URLs, PagerDuty's API base URL — so each sender is tested against a
real receiver on loopback (apprise hard-codes Slack's and PagerDuty's hosts).

``${NAME}`` in a rule's target or URL is read from the environment here, at delivery, so
secrets never enter the definition or the log. A failure is a :class:`SendError` saying
whether trying again can help (a receiver down, a 5xx, a 429) or not (a 4xx, a
recipient refused, a variable not set).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import re
from collections.abc import Mapping
from email.message import EmailMessage
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import aiohttp
import aiosmtplib
import msgspec

from durable.core.events import NotificationRequested

__all__ = ["PAGERDUTY_URL", "SendError", "Senders", "expand", "signature"]

PAGERDUTY_URL = "https://events.pagerduty.com"
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class SendError(Exception):
    """A delivery that did not go through: ``reason``, and whether to try again."""

    def __init__(self, reason: str, *, retryable: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


def expand(text: str, env: Mapping[str, str]) -> str:
    """``text`` with each ``${NAME}`` replaced by the environment variable's value."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in env:
            raise SendError(f"environment variable {name} is not set", retryable=False)
        return env[name]

    return _ENV.sub(value, text)


def signature(secret: str, body: bytes) -> str:
    """The ``X-Durable-Signature`` of a webhook's body: ``sha256=<hex HMAC-SHA256>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class Senders:
    """Delivers a notification on its channel; one HTTP session for all of them.

    ``env``: where ``${NAME}`` references are read (default: the process environment);
    ``timeout``: seconds each network call may take.
    """

    def __init__(
        self,
        *,
        env: Mapping[str, str] | None = None,
        timeout: float = 10.0,
        pagerduty_url: str = PAGERDUTY_URL,
    ) -> None:
        self.env = env if env is not None else os.environ
        self.timeout = timeout
        self.pagerduty_url = pagerduty_url
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(
        self, request: NotificationRequested, subject: str, body: str, run_url: str
    ) -> str:
        """Deliver; returns what the receiver said. Raises :class:`SendError`."""
        try:
            match request.channel.channel:
                case "email":
                    return await self._email(request, subject, body)
                case "slack":
                    return await self._slack(request, subject, body, run_url)
                case "webhook":
                    return await self._webhook(request, subject, body, run_url)
                case "pagerduty":
                    return await self._pagerduty(request, subject, body, run_url)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise SendError(_reason(exc)) from None
        raise SendError(f"unknown channel {request.channel.channel!r}", retryable=False)

    # -- email ----------------------------------------------------------------------------

    async def _email(self, request: NotificationRequested, subject: str, body: str) -> str:
        url = urlsplit(expand(request.channel.target, self.env))
        if url.scheme not in ("smtp", "smtps") or not url.hostname:
            raise SendError("the SMTP URL has no host", retryable=False)
        query = parse_qs(url.query)
        to = [a.strip() for v in query.get("to", []) for a in v.split(",") if a.strip()]
        if not to:
            raise SendError("the SMTP URL says no recipient (?to=…)", retryable=False)
        sender = query.get("from", [f"durable@{url.hostname}"])[0]
        starttls = {"true": True, "false": False}.get(query.get("starttls", [""])[0].lower())
        message = EmailMessage()
        message["Subject"] = subject
        message["From"] = sender
        message["To"] = ", ".join(to)
        # the same notification always has the same Message-ID: a mail reader shows a
        # redelivery (after a crash between sending and recording) as one message
        message["Message-ID"] = (
            f"<{re.sub(r'[^A-Za-z0-9.-]', '.', request.notification_id)}@durable>"
        )
        message["X-Durable-Notification"] = request.notification_id
        message.set_content(body)
        try:
            errors, said = await aiosmtplib.send(
                message,
                hostname=url.hostname,
                port=url.port or (465 if url.scheme == "smtps" else 25),
                username=unquote(url.username) if url.username else None,
                password=unquote(url.password) if url.password else None,
                use_tls=url.scheme == "smtps",
                start_tls=False if url.scheme == "smtps" else starttls,
                timeout=float(query.get("timeout", [self.timeout])[0]),
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            raise SendError(f"SMTP refused every recipient: {exc}", retryable=False) from None
        except aiosmtplib.SMTPResponseException as exc:
            # 4xx: try again later; 5xx (auth refused, mailbox unknown): it will not help
            raise SendError(f"SMTP {exc.code}: {exc.message}", retryable=exc.code < 500) from None
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise SendError(f"SMTP: {_reason(exc)}") from None
        refused = f" (refused: {', '.join(errors)})" if errors else ""
        return f"SMTP: {said.strip()}{refused}"

    # -- HTTP -----------------------------------------------------------------------------

    async def _post(self, url: str, payload: Any, headers: dict[str, str] | None = None) -> str:
        data = msgspec.json.encode(payload)
        head = {"Content-Type": "application/json", "User-Agent": "durable", **(headers or {})}
        session = self._session
        if session is None or session.closed:
            session = self._session = aiohttp.ClientSession()
        async with session.post(
            url, data=data, headers=head, timeout=aiohttp.ClientTimeout(total=self.timeout)
        ) as response:
            text = (await response.text(errors="replace"))[:300]
            if response.status < 300:
                return f"HTTP {response.status}"
            # a 4xx says the request is wrong (but 408, 409 and 429: not now)
            retryable = response.status >= 500 or response.status in (408, 409, 429)
            raise SendError(f"HTTP {response.status}: {text.strip()}", retryable=retryable)

    async def _slack(
        self, request: NotificationRequested, subject: str, body: str, run_url: str
    ) -> str:
        return await self._post(
            expand(request.channel.target, self.env),
            slack_message(request, subject, body, run_url),
        )

    async def _webhook(
        self, request: NotificationRequested, subject: str, body: str, run_url: str
    ) -> str:
        payload = {
            "notification_id": request.notification_id,
            "event": request.on,
            "subject": subject,
            "body": body,
            "run_url": run_url,
            "fields": request.fields,
        }
        data = msgspec.json.encode(payload)
        headers = {"Idempotency-Key": request.notification_id, "X-Durable-Event": request.on}
        secret_env = request.channel.secret_env
        if secret_env:
            secret = self.env.get(secret_env)
            if not secret:
                raise SendError(f"environment variable {secret_env} is not set", retryable=False)
            headers["X-Durable-Signature"] = signature(secret, data)
        return await self._post(
            expand(request.channel.target, self.env), msgspec.Raw(data), headers
        )

    async def _pagerduty(
        self, request: NotificationRequested, subject: str, body: str, run_url: str
    ) -> str:
        rule = request.channel
        base = expand(rule.url or self.pagerduty_url, self.env).rstrip("/")
        event: dict[str, Any] = {
            "routing_key": expand(rule.target, self.env),
            "event_action": request.action or "trigger",
            "dedup_key": request.dedup_key or request.notification_id,
        }
        if event["event_action"] == "trigger":
            fields = request.fields
            event["payload"] = {
                "summary": subject[:1024],
                "source": f"durable/{fields.get('workflow', '')}",
                "severity": rule.severity,
                "component": fields.get("task") or fields.get("workflow", ""),
                "group": fields.get("workflow", ""),
                "class": request.on,
                "custom_details": {**fields, "body": body},
            }
            event["client"] = "durable"
            if run_url:
                event["client_url"] = run_url
                event["links"] = [{"href": run_url, "text": "The run in durable"}]
        return await self._post(f"{base}/v2/enqueue", event)


def slack_message(
    request: NotificationRequested, subject: str, body: str, run_url: str
) -> dict[str, Any]:
    """A Block Kit message: what happened, the workflow, the run (linked), the failed
    task and its error, and a button to the run's page."""
    f = request.fields
    run = f.get("run_id") or f.get("backfill_id") or ""
    run_text = f"<{run_url}|{run}>" if run_url and run else run
    facts = [("Workflow", f.get("workflow")), ("Run", run_text), ("Status", f.get("status"))]
    facts += [
        ("Task", f.get("task")),
        ("SLA", f.get("detail")),
        ("Logical time", f.get("logical_time")),
    ]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _cut(subject, 150)}},
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": _cut(f"*{name}*\n{value}", 2000)}
                for name, value in facts
                if value
            ][:10],
        },
    ]
    if f.get("error"):
        error = _cut(str(f["error"]), 2800).replace("```", "'''")
        blocks.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*Error*\n```{error}```"}}
        )
    if request.channel.body:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _cut(body, 3000)}})
    if run_url:
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "Open the run"},
                        "url": run_url,
                    }
                ],
            }
        )
    blocks.append(
        {
            "type": "context",
            "elements": [
                {"type": "mrkdwn", "text": f"durable · {request.on} · {request.notification_id}"}
            ],
        }
    )
    return {"text": _cut(subject, 3000), "blocks": blocks}


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return "timed out"
    return f"{type(exc).__name__}: {exc}".rstrip(": ")

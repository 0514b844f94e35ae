"""Declaring notifications and SLAs: the Python helpers, the YAML spelling, and the global
rules of ``notifications.yaml``.

Python::

    from durable import Email, PagerDuty, Slack, Sla, Webhook, Workflow

    wf = Workflow(
        "daily_sales",
        notify=[
            Email("smtp://bot:${SMTP_PASSWORD}@mail.example.com:587?from=bot@example.com&to=data@example.com",
                  on=["run_failed", "sla_missed"]),
            Slack("${SLACK_WEBHOOK_URL}"),
            Webhook("https://hooks.example.com/durable", secret_env="HOOK_SECRET", on=["run_succeeded"]),
            PagerDuty("${PD_ROUTING_KEY}"),
        ],
        sla=Sla(finish_by="06:00", timezone="Europe/Paris", max_duration=3600),
    )

YAML: the same under ``notify:`` (a list; each item names its channel as its first key:
``- email: smtp://…``) and ``sla:``. ``notifications.yaml`` (``durable up
--notifications``) holds ``notify:`` rules for every workflow, and ``base_url:``, where the
console is reached (the links in messages).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import msgspec
import yaml

from durable.core.events import NOTIFY_ON, NotifyOn, NotifyRule
from durable.core.notify import CHANNELS, RuleError, check_rule
from durable.core.sla import Sla
from durable.core.spec import DefinitionError

__all__ = [
    "Email",
    "GlobalNotifications",
    "PagerDuty",
    "Slack",
    "Webhook",
    "load_global_notifications",
    "rule_from_yaml",
    "rule_to_yaml",
    "sla_from_yaml",
]

Events = Sequence[NotifyOn] | NotifyOn


def _on(on: Events) -> tuple[NotifyOn, ...]:
    return (on,) if isinstance(on, str) else tuple(on)


def Email(
    url: str, *, on: Events = ("run_failed",), subject: str = "", body: str = ""
) -> NotifyRule:
    """Mail through SMTP: ``smtp://user:password@host:port?from=…&to=a@x,b@y``
    (``smtps://`` for TLS from the start; ``starttls=false`` to never upgrade)."""
    return NotifyRule(channel="email", target=url, on=_on(on), subject=subject, body=body)


def Slack(
    url: str, *, on: Events = ("run_failed",), subject: str = "", body: str = ""
) -> NotifyRule:
    """A Slack incoming webhook: a Block Kit message with the failed task, its error and a
    link to the run."""
    return NotifyRule(channel="slack", target=url, on=_on(on), subject=subject, body=body)


def Webhook(
    url: str,
    *,
    on: Events = ("run_failed",),
    secret_env: str | None = None,
    subject: str = "",
    body: str = "",
) -> NotifyRule:
    """A JSON POST; with ``secret_env``, signed (``X-Durable-Signature: sha256=<HMAC>``);
    always with ``Idempotency-Key: <notification id>``."""
    return NotifyRule(
        channel="webhook", target=url, on=_on(on), secret_env=secret_env, subject=subject, body=body
    )


def PagerDuty(
    routing_key: str,
    *,
    on: Events = ("run_failed",),
    url: str | None = None,
    dedup: Literal["run", "workflow"] = "run",
    severity: Literal["critical", "error", "warning", "info"] = "error",
    subject: str = "",
) -> NotifyRule:
    """PagerDuty's Events API v2: one incident per run (``dedup="workflow"``: per
    workflow), resolved by a later success. ``url``: the API's base URL."""
    return NotifyRule(
        channel="pagerduty",
        target=routing_key,
        on=_on(on),
        url=url,
        dedup=dedup,
        severity=severity,
        subject=subject,
    )


# -- YAML -----------------------------------------------------------------------------------

_RULE_KEYS = {"on", "subject", "body", "url", "secret_env", "dedup", "severity"}


def rule_from_yaml(item: Any, where: str, field: str) -> NotifyRule:
    """One item of a ``notify:`` list: ``{email: URL, on: [...], subject: ...}``."""
    if not isinstance(item, dict):
        raise DefinitionError(where, f"{field}: expected a mapping such as {{slack: URL}}")
    # YAML 1.1 reads a bare `on:` key as true: it means the rule's `on`
    body = {("on" if k in (True, "True") else k): v for k, v in item.items() if k != "__line__"}
    channels = [k for k in body if k not in _RULE_KEYS]
    if len(channels) != 1:
        found = ", ".join(channels) or "none"
        raise DefinitionError(
            where,
            f"{field}: needs exactly one channel key (found {found})",
            hint=f"channels: {', '.join(CHANNELS)}",
        )
    channel = channels[0]
    if channel not in CHANNELS:
        raise DefinitionError(
            where,
            f"{field}: unknown channel type {channel!r}",
            hint=f"channels: {', '.join(CHANNELS)}",
        )
    raw = {k: v for k, v in body.items() if k != channel}
    if isinstance(raw.get("on"), str):
        raw["on"] = [raw["on"]]
    for on in raw.get("on") or ():
        if on not in NOTIFY_ON:
            raise DefinitionError(
                where, f"{field}.on: unknown event {on!r}", hint=f"events: {', '.join(NOTIFY_ON)}"
            )
    raw.update(channel=channel, target=body[channel])
    try:
        return msgspec.convert(raw, NotifyRule)
    except msgspec.ValidationError as exc:
        raise DefinitionError(where, f"{field}: {exc}") from None


def rule_to_yaml(rule: NotifyRule) -> dict[str, Any]:
    data: dict[str, Any] = msgspec.to_builtins(rule)
    channel = data.pop("channel")
    target = data.pop("target")
    return {channel: target, **data}


def sla_from_yaml(raw: Any, where: str) -> Sla:
    if not isinstance(raw, dict):
        raise DefinitionError(where, "sla: expected a mapping", hint="sla: {finish_by: '06:00'}")
    plain = {k: v for k, v in raw.items() if k != "__line__"}
    if isinstance(plain.get("max_staleness"), dict):
        plain["max_staleness"] = {
            k: v for k, v in plain["max_staleness"].items() if k != "__line__"
        }
    try:
        return msgspec.convert(plain, Sla)
    except msgspec.ValidationError as exc:
        raise DefinitionError(where, f"sla: {exc}") from None


# -- the global rules -------------------------------------------------------------------------


class GlobalNotifications(msgspec.Struct, frozen=True, kw_only=True):
    """What ``notifications.yaml`` says: rules for every workflow, and the console's URL."""

    notify: tuple[NotifyRule, ...] = ()
    base_url: str | None = None


def load_global_notifications(path: Path) -> GlobalNotifications:
    """Read ``notifications.yaml``::

        base_url: https://durable.example.com
        notify:
          - slack: ${SLACK_WEBHOOK_URL}
            on: [run_failed, sla_missed, backfill_finished]

    Raises :class:`DefinitionError` naming the file and the field.
    """
    where = str(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise DefinitionError(where, f"cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise DefinitionError(where, f"invalid YAML: {exc}") from None
    if doc is None:
        return GlobalNotifications()
    if not isinstance(doc, dict):
        raise DefinitionError(where, "expected a mapping with 'notify:'")
    unknown = sorted(set(doc) - {"notify", "base_url"})
    if unknown:
        raise DefinitionError(
            where, f"unknown key {unknown[0]!r}", hint="known keys: base_url, notify"
        )
    items = doc.get("notify") or []
    if not isinstance(items, list):
        raise DefinitionError(where, "notify: expected a list of rules")
    rules = []
    for i, item in enumerate(items):
        rule = rule_from_yaml(item, where, f"notify[{i}]")
        try:
            check_rule(rule, f"notify[{i}]")
        except RuleError as exc:
            raise DefinitionError(where, exc.problem, hint=exc.hint) from None
        rules.append(rule)
    base_url = doc.get("base_url")
    if base_url is not None and not (isinstance(base_url, str) and base_url.startswith("http")):
        raise DefinitionError(where, f"base_url: {base_url!r} is not an http(s) URL")
    return GlobalNotifications(notify=tuple(rules), base_url=base_url)

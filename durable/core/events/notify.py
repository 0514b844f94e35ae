"""The events of notifications and SLAs: an outbox in the log.

A ``notification_requested`` is appended in the same commit as the event that causes it
(a run's end, a task's final failure, an SLA miss, a backfill's end); the notifier
delivers it and appends ``notification_sent`` or ``notification_failed`` to the same
stream. ``sla_missed`` records a missed deadline once. These events may be in a run's
stream and in a backfill's; they never change what the run or backfill does.

Pure. A tag is never renamed; a changed shape gets a version and an upcaster.
"""

from __future__ import annotations

import typing
from datetime import datetime
from typing import Any, Literal, TypeAlias

import msgspec

from durable.core.events.values import EventBase

__all__ = [
    "NOTIFICATION_EVENT_TYPES",
    "NOTIFY_ON",
    "ChannelKind",
    "NotificationEvent",
    "NotificationFailed",
    "NotificationRequested",
    "NotificationSent",
    "NotifyOn",
    "NotifyRule",
    "SlaKind",
    "SlaMissed",
]

NotifyOn: TypeAlias = Literal[
    "run_failed", "run_succeeded", "retried_out", "sla_missed", "backfill_finished"
]
"""What a notification rule listens to: a run failed or succeeded, a task failed with no
retry left, an SLA was missed, a backfill's runs all ended."""

NOTIFY_ON: tuple[str, ...] = typing.get_args(NotifyOn)

ChannelKind: TypeAlias = Literal["email", "slack", "webhook", "pagerduty"]

SlaKind: TypeAlias = Literal["finish_by", "max_duration", "max_staleness"]

_DEFAULT_ON: tuple[NotifyOn, ...] = ("run_failed",)


class NotifyRule(
    msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, forbid_unknown_fields=True
):
    """A notification rule: on which events, to which channel, with which message.

    ``target`` is the channel's address: an SMTP URL
    (``smtp://user:pass@host:port?from=…&to=…``), a Slack incoming-webhook URL, a
    webhook URL, or a PagerDuty routing key. ``${NAME}`` in ``target``, ``url`` and
    ``secret_env``'s variable are read from the notifier's environment at delivery, so
    secrets stay out of the definition and the log. ``subject`` and ``body`` are
    templates over the run's fields (``${workflow}``, ``${run_id}``, ``${status}``, …).
    """

    channel: ChannelKind
    target: str
    on: tuple[NotifyOn, ...] = _DEFAULT_ON
    subject: str = ""
    """Empty: the default subject (``[durable] ${workflow} ${event}``)."""
    body: str = ""
    """Empty: the default body (the run, its status, the failed task and its error)."""
    url: str | None = None
    """PagerDuty's Events API base URL (default https://events.pagerduty.com)."""
    secret_env: str | None = None
    """Webhook: the environment variable holding the HMAC-SHA256 secret."""
    dedup: Literal["run", "workflow"] = "run"
    """PagerDuty: one incident per run (a rerun's success resolves it), or one per
    workflow (any later success resolves it)."""
    severity: Literal["critical", "error", "warning", "info"] = "error"
    """PagerDuty: the alert's severity."""

    def __post_init__(self) -> None:
        # the default spelled out is the default: the same rule encodes (and hashes into
        # the workflow's version) the same, however it was written
        on = tuple(self.on)
        msgspec.structs.force_setattr(self, "on", _DEFAULT_ON if on == _DEFAULT_ON else on)


class NotificationRequested(EventBase, frozen=True, kw_only=True, tag="notification_requested"):
    """A notification to deliver, committed with the event that causes it.

    ``notification_id`` is ``{stream}:{seq of the cause}:{rule}``: the same cause and
    rule always give the same id, which receivers get as their dedup key
    (``Idempotency-Key``, PagerDuty's ``dedup_key`` per run or workflow). ``fields`` are
    the values its templates are rendered with.
    """

    notification_id: str
    on: NotifyOn
    rule: str
    """Which rule asked for it: ``w{i}`` the workflow's i-th, ``g{i}`` the global i-th."""
    channel: NotifyRule
    fields: dict[str, Any] = {}  # noqa: RUF012 (a Struct copies an empty default per instance)
    action: Literal["trigger", "resolve"] | None = None
    """PagerDuty only: open (or update) the incident, or resolve it."""
    dedup_key: str | None = None
    """PagerDuty only: the incident's key."""


class NotificationSent(EventBase, frozen=True, kw_only=True, tag="notification_sent"):
    """The receiver accepted the notification (after ``attempts`` tries)."""

    notification_id: str
    attempts: int = 1
    detail: str = ""


class NotificationFailed(EventBase, frozen=True, kw_only=True, tag="notification_failed"):
    """The notification could not be delivered: ``reason`` says why (the last error)."""

    notification_id: str
    attempts: int
    reason: str


class SlaMissed(EventBase, frozen=True, kw_only=True, tag="sla_missed"):
    """A deadline passed: the run was not done by its ``finish_by`` time, ran longer than
    its SLA's ``max_duration``, or an asset it produced went stale. ``key`` is recorded
    once per run (``finish_by``, ``max_duration``, ``max_staleness:{asset}@{position}``).
    """

    key: str
    sla: SlaKind
    workflow: str
    deadline: datetime
    detail: str = ""
    asset: str | None = None


NotificationEvent: TypeAlias = NotificationRequested | NotificationSent | NotificationFailed
"""The notification outbox's events, in a run's or a backfill's stream."""

NOTIFICATION_EVENT_TYPES: tuple[type[NotificationEvent], ...] = typing.get_args(NotificationEvent)

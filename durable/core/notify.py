"""Notification rules: their checks, which events they answer, and their messages.

A rule (:class:`~durable.core.events.NotifyRule`) is declared by a workflow (``w0``,
``w1``, … in the order declared) or globally (``g0``, …). When a run's decision
(:func:`durable.core.step.step`) appends an event a rule listens to, it appends a
:class:`~durable.core.events.NotificationRequested` per matching rule right after it, in
the same commit: :func:`with_notifications`. Its id, ``{stream}:{seq}:{rule}``, follows
from the log, so deciding again decides the same ids.

Pure: the notifier (``durable.runtime.notifier``) renders the message
(:func:`render_message`) and delivers it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from durable.core.errors import DurableError
from durable.core.events import (
    NOTIFY_ON,
    Event,
    NotificationFailed,
    NotificationRequested,
    NotificationSent,
    NotifyOn,
    NotifyRule,
    RunFailed,
    RunSucceeded,
    TaskFailed,
)
from durable.core.state import RunState
from durable.core.templates import render

__all__ = [
    "CHANNELS",
    "FIELDS",
    "KeyedRule",
    "RuleError",
    "check_rule",
    "deadline_text",
    "keyed_rules",
    "record_outcome",
    "render_message",
    "requests_for",
    "run_fields",
    "summary_of",
    "with_notifications",
]

CHANNELS = ("email", "slack", "webhook", "pagerduty")

FIELDS: dict[str, str] = {
    "workflow": "the workflow's name",
    "version": "the workflow version the run is pinned to",
    "run_id": "the run's id",
    "status": "the run's status (a backfill's outcome)",
    "event": "what happened: run_failed, run_succeeded, retried_out, sla_missed, …",
    "summary": "one line saying what happened (the default subject)",
    "reason": "why the run failed",
    "task": "the failed task",
    "error": "the failed task's error (type: message)",
    "attempt": "the failed task's last attempt",
    "logical_time": "the run's logical time (scheduled and backfill runs)",
    "trigger": "what started the run (schedule, api, kafka, …)",
    "params": "the run's params (${params.date})",
    "run_url": "the run's page in the console ({base_url}/ui/runs/{run_id})",
    "notification_id": "the notification's id (its receivers' dedup key)",
    "sla": "the missed SLA: finish_by, max_duration or max_staleness",
    "deadline": "the missed deadline",
    "detail": "more about the miss",
    "asset": "the stale asset",
    "backfill_id": "the backfill's id",
    "runs": "a backfill's runs by status",
}
"""The fields a subject or body template may name, with what they hold."""

_TEMPLATE = re.compile(r"\$\{([A-Za-z0-9_.\-]+)\}")
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

KeyedRule = tuple[str, NotifyRule]


class RuleError(DurableError):
    """A notification rule that cannot work; ``problem`` names the field (the caller
    adds where the definition is)."""

    def __init__(self, problem: str, *, hint: str | None = None) -> None:
        super().__init__(problem, hint=hint)
        self.problem = problem


# -- checks at load time --------------------------------------------------------------------


def check_rule(rule: NotifyRule, field: str, params: Iterable[str] | None = None) -> None:
    """Check a rule; :class:`RuleError` naming ``field`` (e.g. ``notify[0]``) and what is
    wrong. ``params``: the workflow's params (``None``: any, for a global rule)."""
    if rule.channel not in CHANNELS:
        raise RuleError(
            f"{field}: unknown channel type {rule.channel!r}",
            hint=f"channels: {', '.join(CHANNELS)}",
        )
    if not rule.on:
        raise RuleError(f"{field}.on: listens to nothing", hint=f"events: {', '.join(NOTIFY_ON)}")
    for on in rule.on:
        if on not in NOTIFY_ON:
            raise RuleError(
                f"{field}.on: unknown event {on!r}", hint=f"events: {', '.join(NOTIFY_ON)}"
            )
    if not rule.target.strip():
        raise RuleError(f"{field}.{rule.channel}: is empty")
    where = f"{field}.{rule.channel}"
    match rule.channel:
        case "email":
            _check_smtp(rule.target, where)
        case "slack" | "webhook":
            _check_http(rule.target, where)
        case "pagerduty":
            if rule.url is not None:
                _check_http(rule.url, f"{field}.url")
    if rule.secret_env is not None and not _ENV_NAME.match(rule.secret_env):
        raise RuleError(
            f"{field}.secret_env: {rule.secret_env!r} is not an environment variable name"
        )
    if rule.dedup not in ("run", "workflow"):
        raise RuleError(f"{field}.dedup: {rule.dedup!r} is not run or workflow")
    if rule.severity not in ("critical", "error", "warning", "info"):
        raise RuleError(
            f"{field}.severity: {rule.severity!r} is not critical, error, warning or info"
        )
    for name in ("subject", "body"):
        for ref in _TEMPLATE.findall(getattr(rule, name)):
            head, _, rest = ref.partition(".")
            known = head in FIELDS and (not rest or head == "params")
            if known and head == "params" and params is not None:
                known = rest.split(".")[0] in set(params)
            if not known:
                hint = f"fields: {', '.join(FIELDS)}"
                if head == "params":
                    hint = f"declared params: {', '.join(params or ()) or '(none)'}"
                raise RuleError(f"{field}.{name}: template ${{{ref}}} names no field", hint=hint)


def _literal(text: str) -> str | None:
    """``text`` with its ``${NAME}`` references made checkable; None when all of it is
    one reference (checked at delivery, once the notifier reads the variable)."""
    if _ENV.fullmatch(text.strip()):
        return None
    return _ENV.sub("1", text)


def _check_smtp(target: str, where: str) -> None:
    text = _literal(target)
    if text is None:
        return
    hint = "smtp://user:password@host:port?from=me@example.com&to=you@example.com"
    url = urlsplit(text)
    if url.scheme not in ("smtp", "smtps"):
        raise RuleError(f"{where}: {target!r} is not an smtp:// or smtps:// URL", hint=hint)
    if not url.hostname:
        raise RuleError(f"{where}: the SMTP URL {target!r} has no host", hint=hint)
    try:
        url.port  # noqa: B018 (raises on a port that is not a number)
    except ValueError:
        raise RuleError(f"{where}: the SMTP URL {target!r} has a bad port", hint=hint) from None
    query = parse_qs(url.query)
    if not any(a.strip() for v in query.get("to", []) for a in v.split(",")):
        raise RuleError(f"{where}: the SMTP URL {target!r} says no recipient (?to=…)", hint=hint)
    unknown = sorted(set(query) - {"from", "to", "starttls", "timeout"})
    if unknown:
        raise RuleError(
            f"{where}: unknown SMTP URL option {unknown[0]!r}",
            hint="options: from, to, starttls, timeout",
        )


def _check_http(target: str, where: str) -> None:
    text = _literal(target)
    if text is None:
        return
    url = urlsplit(text)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise RuleError(f"{where}: {target!r} is not an http(s):// URL with a host")


# -- which rules answer which events ---------------------------------------------------------


def keyed_rules(workflow: Sequence[NotifyRule], global_: Sequence[NotifyRule]) -> list[KeyedRule]:
    """The rules with their keys: the workflow's ``w{i}``, then the global ``g{i}``."""
    return [(f"w{i}", r) for i, r in enumerate(workflow)] + [
        (f"g{i}", r) for i, r in enumerate(global_)
    ]


def requests_for(
    stream_id: str,
    seq: int,
    on: NotifyOn,
    fields: dict[str, Any],
    rules: Sequence[KeyedRule],
    *,
    incident: str,
    open_incidents: Sequence[str] = (),
    failed: bool = True,
) -> list[NotificationRequested]:
    """The notifications the event at ``seq`` of ``stream_id`` asks for.

    ``incident``: the PagerDuty dedup key of the run (or backfill) per run; a rule with
    ``dedup="workflow"`` keys on the workflow. A success resolves the incidents of
    ``open_incidents`` (and every incident of a per-workflow rule); ``failed=False`` for
    an event that is good news (a backfill that succeeded): PagerDuty is not paged.
    """
    out: list[NotificationRequested] = []
    for key, rule in rules:
        action: Any = None
        dedup: str | None = None
        if rule.channel == "pagerduty":
            dedup = (
                f"durable:{fields.get('workflow', '')}" if rule.dedup == "workflow" else incident
            )
            if on == "run_succeeded" or not failed:
                if rule.dedup != "workflow" and key not in open_incidents:
                    continue
                action = "resolve"
            elif on in rule.on:
                action = "trigger"
            else:
                continue
        elif on not in rule.on:
            continue
        nid = f"{stream_id}:{seq}:{key}"
        out.append(
            NotificationRequested(
                notification_id=nid,
                on=on,
                rule=key,
                channel=rule,
                fields={**fields, "notification_id": nid},
                action=action,
                dedup_key=dedup,
            )
        )
    return out


def run_fields(state: RunState, on: NotifyOn, event: Event | None = None) -> dict[str, Any]:
    """A run's template fields when ``on`` happens (``event`` the cause, if a run's)."""
    task = ""
    if isinstance(event, TaskFailed):
        task = event.task
    elif isinstance(event, RunFailed):
        failed = event.failed_tasks or tuple(
            t.name for t in state.tasks.values() if t.status == "failed" and t.parent is None
        )
        task = failed[0] if failed else ""
    t = state.tasks.get(task)
    error = f"{t.error.type}: {t.error.message}" if t is not None and t.error else ""
    if isinstance(event, TaskFailed):
        error = f"{event.error.type}: {event.error.message}"
    reason = event.reason if isinstance(event, RunFailed) else (state.reason or "")
    logical = state.trigger.logical_time
    fields: dict[str, Any] = {
        "workflow": state.workflow,
        "version": state.version,
        "run_id": state.run_id,
        "status": state.status,
        "event": on,
        "reason": reason,
        "task": task,
        "error": error,
        "attempt": t.attempt if t is not None and task else "",
        "logical_time": logical.isoformat() if logical else "",
        "trigger": state.trigger.kind,
        "params": state.params,
    }
    fields["summary"] = _summary(on, fields)
    return fields


def _summary(on: NotifyOn, f: Mapping[str, Any]) -> str:
    match on:
        case "run_failed":
            return f"{f['workflow']} run {f['run_id']} failed: {f['reason']}"
        case "run_succeeded":
            return f"{f['workflow']} run {f['run_id']} succeeded"
        case "retried_out":
            return f"{f['workflow']}: task {f['task']} of run {f['run_id']} failed for good"
        case "sla_missed":
            return f"{f['workflow']} missed its SLA: {f.get('detail', '')}"
        case "backfill_finished":
            return f"backfill {f.get('backfill_id', '')} of {f['workflow']} {f['status']}"
    return on  # pragma: no cover - every event is matched above


def summary_of(on: NotifyOn, fields: Mapping[str, Any]) -> str:
    """The one-line summary of ``on`` with ``fields`` (the default subject)."""
    return _summary(on, fields)


def with_notifications(
    before: RunState,
    after: RunState,
    events: list[Event],
    rules: Sequence[KeyedRule],
) -> list[Event]:
    """``events`` (decided on ``before``, leading to ``after``) with a
    ``notification_requested`` after each event a rule answers: a run's end, a task's
    final failure (not a map's item: its map fails for it)."""
    out: list[Event] = []
    incidents = list(before.incidents)
    for event in events:
        out.append(event)
        on: NotifyOn | None = None
        if isinstance(event, RunFailed):
            on = "run_failed"
        elif isinstance(event, RunSucceeded):
            on = "run_succeeded"
        elif isinstance(event, TaskFailed) and after.tasks[event.task].parent is None:
            on = "retried_out"
        if on is None:
            continue
        requests = requests_for(
            before.stream_id,
            before.last_seq + len(out),
            on,
            run_fields(after, on, event),
            rules,
            incident=f"durable:{after.workflow}:{after.run_id}",
            open_incidents=incidents,
        )
        for r in requests:
            if r.action == "trigger" and r.rule not in incidents:
                incidents.append(r.rule)
            elif r.action == "resolve" and r.rule in incidents:
                incidents.remove(r.rule)
        out += requests
    return out


def record_outcome(
    events: Iterable[Event], outcome: NotificationSent | NotificationFailed
) -> list[Event]:
    """``[outcome]`` for a stream holding ``events``; ``[]`` when the notification's
    outcome is already recorded (by another notifier), or it was never requested there."""
    requested = False
    for e in events:
        if isinstance(e, NotificationSent | NotificationFailed):
            if e.notification_id == outcome.notification_id:
                return []
        elif isinstance(e, NotificationRequested) and e.notification_id == outcome.notification_id:
            requested = True
    return [outcome] if requested else []


# -- the message ------------------------------------------------------------------------------


def render_message(request: NotificationRequested, run_url: str) -> tuple[str, str]:
    """The subject and body of a notification, its templates rendered with its fields.

    Raises :class:`~durable.core.templates.TemplateError` for a template naming a param
    the run does not have.
    """
    values: dict[str, Any] = {name: "" for name in FIELDS}
    values.update(request.fields)
    values["run_url"] = run_url
    values.setdefault("summary", _summary(request.on, values))
    rule = request.channel
    subject = render(rule.subject, values) if rule.subject else f"[durable] {values['summary']}"
    if rule.body:
        body = render(rule.body, values)
    else:
        lines = [str(values["summary"]), ""]
        for name in ("workflow", "run_id", "status", "task", "error", "logical_time", "detail"):
            if values.get(name) not in ("", None):
                lines.append(f"{name.replace('_', ' ')}: {_text(values[name])}")
        if run_url:
            lines += ["", run_url]
        body = "\n".join(lines)
    return subject, body


def _text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


def deadline_text(at: datetime) -> str:
    """A deadline as it appears in messages."""
    return at.isoformat(timespec="seconds")

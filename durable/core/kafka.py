"""Kafka trigger rules: what a message means for a workflow. Pure.

A rule names a topic, how to fill the run's params from the message, and an optional
filter. A message is *accepted* (params, dedup key, trace context), *skipped* (the filter
does not match), or *rejected* with a reason (not JSON, a field missing): rejected
messages go to the dead letters, never stopping the consumer.

Sources of a value: ``value`` (the JSON payload), ``value.a.b`` (a field in it), ``key``,
``header.NAME``, ``topic``, ``partition``, ``offset``.
"""

from __future__ import annotations

import re
from typing import Any, Literal
from urllib.parse import unquote_plus

import msgspec

__all__ = [
    "Accepted",
    "KafkaTrigger",
    "Message",
    "Rejected",
    "Skipped",
    "evaluate",
    "evaluate_s3_event",
]

IDEMPOTENCY_HEADER = "idempotency-key"


class KafkaTrigger(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Start a run of the workflow for each message on ``topic`` matching ``filter``."""

    topic: str = ""
    pattern: str = ""
    """A regular expression matching topic names (instead of ``topic``)."""
    params: dict[str, str] = {}
    filter: dict[str, Any] = {}
    format: Literal["json", "s3-event"] = "json"

    def matches(self, topic: str) -> bool:
        return topic == self.topic if self.topic else re.fullmatch(self.pattern, topic) is not None

    """``s3-event``: the message is an S3 event notification (the AWS/MinIO JSON shape);
    each ObjectCreated record starts a run, deduplicated with the polling trigger."""


class Message(msgspec.Struct, frozen=True, kw_only=True):
    topic: str
    partition: int
    offset: int
    key: bytes | None = None
    value: bytes | None = None
    headers: dict[str, str] = {}


class Accepted(msgspec.Struct, frozen=True, kw_only=True):
    params: dict[str, Any]
    dedup_key: str
    traceparent: str | None
    text: frozenset[str] = frozenset()
    """The params whose values are text (the key, headers, an object's key): parsed into
    their declared types; the others are JSON values, validated."""


class Skipped(msgspec.Struct, frozen=True):
    reason: str


class Rejected(msgspec.Struct, frozen=True):
    reason: str


class _Missing(Exception):
    pass


def evaluate(rule: KafkaTrigger, message: Message, workflow: str) -> Accepted | Skipped | Rejected:
    payload: Any = _NOT_DECODED
    sources = [*rule.params.values(), *rule.filter]
    if any(s == "value" or s.startswith("value.") for s in sources):
        try:
            payload = msgspec.json.decode(message.value or b"")
        except msgspec.DecodeError as exc:
            return Rejected(f"value is not JSON: {exc}")
    try:
        for source, wanted in rule.filter.items():
            if _lookup(message, payload, source) != wanted:
                return Skipped(f"filter {source} != {wanted!r}")
        params = {name: _lookup(message, payload, source) for name, source in rule.params.items()}
    except _Missing as exc:
        return Rejected(f"{exc.args[0]} is missing from the message")
    key = message.headers.get(IDEMPOTENCY_HEADER)
    dedup = (
        f"kafka:{workflow}:{key}"
        if key
        else f"kafka:{workflow}:{message.topic}:{message.partition}:{message.offset}"
    )
    text = frozenset(
        name
        for name, source in rule.params.items()
        if source == "key" or source.startswith("header.")
    )
    return Accepted(
        params=params,
        dedup_key=dedup,
        traceparent=message.headers.get("traceparent"),
        text=text,
    )


_NOT_DECODED = object()


def _lookup(message: Message, payload: Any, source: str) -> Any:
    if source == "key":
        return message.key.decode(errors="replace") if message.key is not None else None
    if source in ("topic", "partition", "offset"):
        return getattr(message, source)
    if source.startswith("header."):
        name = source[len("header.") :]
        if name not in message.headers:
            raise _Missing(source)
        return message.headers[name]
    if source == "value":
        return payload
    if source.startswith("value."):
        value = payload
        for part in source[len("value.") :].split("."):
            if not isinstance(value, dict) or part not in value:
                raise _Missing(source)
            value = value[part]
        return value
    raise _Missing(source)


def evaluate_s3_event(
    message: Message, workflow: str, declared: list[str]
) -> list[Accepted] | Rejected:
    """An S3 event notification: one accepted run per ObjectCreated record."""
    from durable.core.s3 import S3Object, S3Trigger, object_dedup_key, object_params

    try:
        doc = msgspec.json.decode(message.value or b"")
        records = doc["Records"]
        out = []
        for record in records:
            if "ObjectCreated" not in str(record.get("eventName", "")):
                continue
            obj = record["s3"]["object"]
            found = S3Object(
                bucket=record["s3"]["bucket"]["name"],
                key=unquote_plus(obj["key"]),  # keys arrive URL-encoded
                size=int(obj.get("size", 0)),
                etag=str(obj.get("eTag") or obj.get("etag") or "").strip('"'),
                version_id=obj.get("versionId"),
            )
            out.append(
                Accepted(
                    params=(
                        params := object_params(S3Trigger(bucket=found.bucket), declared, found)
                    ),
                    dedup_key=object_dedup_key(workflow, found),
                    traceparent=message.headers.get("traceparent"),
                    text=frozenset(params),
                )
            )
        return out
    except msgspec.DecodeError as exc:
        return Rejected(f"value is not JSON: {exc}")
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        return Rejected(f"not an S3 event notification: missing or bad {exc}")

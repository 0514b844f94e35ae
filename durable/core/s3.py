"""Object-storage and webhook trigger rules: which events start runs, with which params.

Pure.
"""

from __future__ import annotations

import msgspec

__all__ = ["S3Object", "S3Trigger", "WebhookTrigger", "object_dedup_key", "object_params"]

FIELDS = ("bucket", "key", "size", "etag", "version_id", "last_modified")


class S3Trigger(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Start a run for each new object (or new version of one) under ``prefix``.

    ``params`` maps a workflow param to an object field (bucket, key, size, etag,
    version_id, last_modified); by default each declared param named like a field gets it.
    """

    bucket: str
    prefix: str = ""
    suffix: str = ""
    params: dict[str, str] = {}


class S3Object(msgspec.Struct, frozen=True, kw_only=True):
    bucket: str
    key: str
    size: int
    etag: str
    version_id: str | None = None
    last_modified: str | None = None


def object_dedup_key(workflow: str, obj: S3Object) -> str:
    """One run per object version, whoever reports it (polling, event notifications)."""
    return f"s3:{workflow}:{obj.bucket}:{obj.key}:{obj.version_id or obj.etag}"


def object_params(rule: S3Trigger, declared: list[str], obj: S3Object) -> dict[str, str]:
    """The run's params from the object's fields, as text (a key is text: the declared
    types parse it, strictly); a field the object lacks leaves its param's default."""
    mapping = rule.params or {name: name for name in declared if name in FIELDS}
    values = {param: getattr(obj, field) for param, field in mapping.items()}
    return {param: str(v) for param, v in values.items() if v is not None}


class WebhookTrigger(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Start runs from ``POST /api/v1/hooks/{workflow}``; the JSON body gives the params.

    ``secret_env`` names the environment variable holding the HMAC-SHA256 secret: then a
    request must carry ``X-Durable-Signature: sha256=<hex digest of the body>``.
    """

    secret_env: str | None = None

"""The object-storage trigger: polls buckets (any S3 API: AWS, MinIO, Scaleway).

Each poll lists the rule's prefix (paginated) and starts one run per object version not
seen before. The runs' dedup keys (``s3:{workflow}:{bucket}:{key}:{etag or version}``)
are the persisted cursor: a restart loses nothing and doubles nothing, and an object
overwritten with new content (a new etag) is a new version, so it starts a run too.
The endpoint or PostgreSQL going away never stops the service: each is reported once
when it goes and once when it is back (:class:`~durable.runtime.outage.Outage`), and
the poll resumes by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from durable.application.runs import create_run
from durable.core.errors import IdempotencyConflict, StoreError
from durable.core.events import Trigger
from durable.core.s3 import S3Object, S3Trigger, object_dedup_key, object_params
from durable.core.spec import DefinitionError, WorkflowSpec
from durable.runtime.outage import Outage
from durable.store.base import EventStore
from durable.workflows.loader import WorkflowRegistry

__all__ = ["S3PollingService"]

log = logging.getLogger("durable.runtime.triggers.s3")

# An endpoint that stalls fails the poll in seconds, not minutes.
_CLIENT_CONFIG = AioConfig(connect_timeout=10, read_timeout=30, retries={"max_attempts": 2})


class S3PollingService:
    def __init__(
        self,
        store: EventStore,
        registry: WorkflowRegistry,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        poll_interval: float = 5.0,
        database: Outage | None = None,
    ) -> None:
        self.store = store
        self.endpoint_url = endpoint_url or os.environ.get("DURABLE_S3_ENDPOINT")
        self.region = region or os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
        self.poll_interval = poll_interval
        self.rules = [(w.spec, rule) for w in registry for rule in w.spec.s3]
        self.polls = 0
        self.endpoint = Outage(f"object storage ({self.endpoint_url or 'AWS'})", log)
        self.database = database or Outage("PostgreSQL (S3 trigger)", log)

    async def run(self, stop: asyncio.Event) -> None:
        if not self.rules:
            return
        session = get_session()
        while not stop.is_set():
            try:
                async with session.create_client(
                    "s3",
                    endpoint_url=self.endpoint_url,
                    region_name=self.region,
                    config=_CLIENT_CONFIG,
                ) as client:
                    while not stop.is_set():
                        if not await self._pass(client):
                            break  # a fresh client (and connections) for the next try
                        self.polls += 1
                        await self._pause(stop)
            except (BotoCoreError, ClientError, OSError) as exc:  # e.g. no credentials
                self.endpoint.failed(exc)
            self.polls += 1
            await self._pause(stop)

    async def _pass(self, client: Any) -> bool:
        """Poll every rule once; False when the endpoint failed."""
        endpoint_failed = database_failed = False
        for spec, rule in self.rules:
            try:
                await self.poll(client, spec, rule)
            except StoreError as exc:
                self.database.failed(exc)
                database_failed = True
            except (BotoCoreError, ClientError, OSError) as exc:
                self.endpoint.failed(f"s3://{rule.bucket}/{rule.prefix}: {exc}")
                endpoint_failed = True
        if not endpoint_failed:
            self.endpoint.ok()
        if not database_failed:
            self.database.ok()
        return not endpoint_failed

    async def _pause(self, stop: asyncio.Event) -> None:
        seconds = self.poll_interval
        for outage in (self.endpoint, self.database):
            if outage.down:  # back off while away, however short the poll interval
                seconds = max(seconds, outage.delay())
        await _pause(stop, seconds)

    async def poll(self, client: Any, spec: WorkflowSpec, rule: S3Trigger) -> list[str]:
        """One pass over the prefix; returns the ids of the runs it started."""
        started: list[str] = []
        paginator = client.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=rule.bucket, Prefix=rule.prefix):
            objects = [
                S3Object(
                    bucket=rule.bucket,
                    key=o["Key"],
                    size=int(o["Size"]),
                    etag=str(o["ETag"]).strip('"'),
                    last_modified=o["LastModified"].isoformat() if o.get("LastModified") else None,
                )
                for o in page.get("Contents", [])
                if o["Key"].endswith(rule.suffix)
            ]
            keys = {object_dedup_key(spec.name, o): o for o in objects}
            seen = set(await self.store.runs_by_keys(list(keys)))
            new = [(k, o) for k, o in keys.items() if k not in seen]
            results = await asyncio.gather(*(self._start(spec, rule, k, o) for k, o in new))
            started += [r for r in results if r]
        return started

    async def _start(
        self, spec: WorkflowSpec, rule: S3Trigger, key: str, obj: S3Object
    ) -> str | None:
        try:
            run_id, created = await create_run(
                self.store,
                spec,
                object_params(rule, list(spec.params), obj),
                idempotency_key=key,
                trigger=Trigger(kind="s3", source=f"s3://{obj.bucket}/{obj.key}"),
                params_from="text",
            )
        except (DefinitionError, IdempotencyConflict) as exc:
            # object storage has no dead letters: the object stays where it is, and the
            # warning says why it started nothing
            log.warning("s3://%s/%s cannot start %s: %s", obj.bucket, obj.key, spec.name, exc)
            return None
        return run_id if created else None


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)

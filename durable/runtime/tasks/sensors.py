"""Sensors: tasks that wait for a condition, poking it between durable timers.

A sensor has nothing to submit: its *submission* renders its templates once (the key,
the SQL args, the logical time to look for) into the recorded ``job``, so every poke —
and every executor that takes the run over — looks for the same thing. Then the driver
pokes it (:mod:`durable.runtime.tasks.waiting`) holding no slot between pokes, the
first poke at once, then every ``poke_interval`` seconds growing by ``backoff`` up to
``max_poke_interval``, until the condition holds (the task succeeds with what was
found) or the attempt's ``timeout`` runs out (it fails, or is skipped with
``soft_fail``).

The conditions:

- ``s3``: an object at ``key`` (a HEAD), or any object under ``prefix`` (a listing),
  of at least ``min_size`` bytes; the endpoint and credentials are the S3 trigger's
  (``endpoint_url``, else ``DURABLE_S3_ENDPOINT``; the AWS environment variables);
- ``sql``: a query on a named connection (as the SQL task's) whose first row's first
  column is truthy;
- ``run``: a run of another workflow for the same logical time (or ``logical_time``: a
  time, or a date for any run that day, UTC) in ``status`` (``succeeded``);
- ``asset``: an asset whose latest update is after ``after`` (the end of the run's data
  interval, else its logical time, else the time the sensor started).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import weakref
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession, get_session
from botocore.exceptions import ClientError, NoCredentialsError
from msgspec import UnsetType

from durable.core.errors import TaskError
from durable.core.tasks import (
    AssetCondition,
    RunCondition,
    S3Condition,
    SensorTask,
    SqlCondition,
    SqlTask,
)
from durable.runtime.tasks import sql as sql_task
from durable.runtime.tasks import waiting
from durable.runtime.tasks.waiting import Done, Pending, Submitted
from durable.store import conditions
from durable.store.base import EventStore
from durable.workflows.context import TaskContext, TaskLog

if TYPE_CHECKING:
    from durable.runtime.tasks import Resources

__all__ = [
    "DEFAULT_BACKOFF",
    "DEFAULT_POKE_INTERVAL",
    "DURABLE_POKES",
    "OTHER_POKES",
    "POKE_TIMEOUT",
    "SensorWaiter",
]

DEFAULT_POKE_INTERVAL = 60.0
"""Seconds between the first pokes, unless ``poke_interval`` says."""
DEFAULT_BACKOFF = 2.0
"""Each interval is this many times the last, unless ``backoff`` says (1: a steady pace).
Doubling: a condition that holds soon is seen soon, one that takes hours costs a
handful of pokes an hour, not one a minute."""
DEFAULT_CAP_FACTOR = 10.0
"""``max_poke_interval`` defaults to ten times ``poke_interval`` (10 minutes by default):
the backoff never makes a sensor see its condition more than ten times later than the
pace it was given."""
POKE_TIMEOUT = 30.0
"""Seconds one poke may take, its turn among the executor's pokes included; a slower one
is a passing trouble (logged; the next poke tries)."""

DURABLE_POKES = 3
"""Pokes reading durable's own database at once, per executor (its pool has 10)."""
OTHER_POKES = 32
"""Other pokes (S3, SQL on other connections) at once, per executor."""

T = TypeVar("T")

_S3_CONFIG = AioConfig(connect_timeout=10, read_timeout=20, retries={"max_attempts": 2})
_MISSING = ("404", "NoSuchKey", "NotFound")
_MAX_OBJECTS = 100


class PokeFailed(Exception):
    """A poke that could not tell (the database refused for a passing reason): the driver
    logs it and pokes again."""


class SensorWaiter:
    """The :class:`~durable.runtime.tasks.waiting.Waiter` of ``sensor`` tasks."""

    async def submit(self, spec: SensorTask, ctx: TaskContext, resources: Resources) -> Submitted:
        """Render the condition's templates once, into the job every poke reads."""
        from durable.runtime.tasks import render

        condition = spec.condition
        job: dict[str, Any]
        match condition:
            case S3Condition():
                job = {"sensor": "s3", "bucket": render(condition.bucket, ctx)}
                for field in ("key", "prefix", "endpoint_url"):
                    value = getattr(condition, field)
                    if not isinstance(value, UnsetType):
                        job[field] = render(value, ctx)
                job["min_size"] = _given(condition.min_size, 0)
                where = f"s3://{job['bucket']}/{job.get('key', job.get('prefix', ''))}"
                state = f"for {where}" + (" (prefix)" if "prefix" in job else "")
            case SqlCondition():
                job = {
                    "sensor": "sql",
                    "connection": _given(condition.connection, "durable"),
                    "args": render(_given(condition.args, []), ctx),
                }
                state = f"for a truthy row on {job['connection']}"
            case RunCondition():
                status = _given(condition.status, "succeeded")  # checked at load time
                start, end = _logical_span(spec, condition, ctx)
                job = {
                    "sensor": "run",
                    "workflow": render(condition.workflow, ctx),
                    "status": status,
                    "from": start.isoformat(),
                    "to": end.isoformat(),
                }
                state = f"for a {status} run of {job['workflow']} at {_span(job)}"
            case AssetCondition():
                if isinstance(condition.after, UnsetType):
                    # the end of the run's data interval: a daily run for day D starts
                    # as D ends, and so does the producer's run for D; its update for
                    # D - 1 came a day earlier, yet after D's logical time (D's start)
                    after = ctx.data_interval_end or ctx.logical_time or datetime.now(UTC)
                else:
                    after = _time(render(condition.after, ctx), spec.name, "asset.after")
                job = {
                    "sensor": "asset",
                    "asset": render(condition.asset, ctx),
                    "after": after.isoformat(),
                }
                state = f"for {job['asset']} updated after {job['after']}"
        return Submitted(job=job, state=state)

    async def poll(
        self, spec: SensorTask, job: dict[str, Any], ctx: TaskContext, resources: Resources
    ) -> Pending | Done:
        """One poke: Done with what was found, or Pending saying what is missing."""
        try:
            async with asyncio.timeout(POKE_TIMEOUT):
                match job["sensor"]:
                    case "s3":
                        return await _poke_s3(job, resources)
                    case "sql":
                        return await _poke_sql(spec, job, ctx, resources)
                    case "run":
                        return await _poke_run(job, resources)
                    case "asset":
                        return await _poke_asset(job, resources)
        except TimeoutError:
            raise PokeFailed(f"the poke took over {POKE_TIMEOUT:g} s") from None
        raise TaskError(  # pragma: no cover - a job this module did not write
            f"unknown sensor job {job!r}", retryable=False, type="ConfigurationError"
        )

    async def cancel(
        self, spec: SensorTask, job: dict[str, Any], ctx: TaskContext, resources: Resources
    ) -> None:
        """Nothing runs elsewhere: there is nothing to stop."""

    def interval(self, spec: SensorTask, polls: int) -> float:
        """The first poke at once; then ``poke_interval``, ``backoff`` times longer each
        time up to ``max_poke_interval``, each up to 10% shorter at random so that many
        sensors started together spread their pokes."""
        if polls == 0:
            return 0.0
        first = float(_given(spec.poke_interval, DEFAULT_POKE_INTERVAL))
        factor = float(_given(spec.backoff, DEFAULT_BACKOFF))
        cap = max(first, float(_given(spec.max_poke_interval, first * DEFAULT_CAP_FACTOR)))
        jitter = 1.0 - 0.1 * random.random()
        return waiting.backoff(first, factor, cap, polls - 1) * jitter


def _given(value: Any, default: Any) -> Any:
    return default if isinstance(value, UnsetType) else value


# -- s3 --------------------------------------------------------------------------------


async def _poke_s3(job: dict[str, Any], resources: Resources) -> Pending | Done:
    client = await _shared(resources).s3(job.get("endpoint_url"))
    bucket, min_size = job["bucket"], int(job["min_size"])
    try:
        async with _shared(resources).other:
            if "key" in job:
                return await _poke_key(client, bucket, job["key"], min_size)
            return await _poke_prefix(client, bucket, job["prefix"], min_size)
    except NoCredentialsError:
        raise TaskError(
            "no credentials for S3: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or "
            "AWS_PROFILE) in the executor's environment",
            retryable=False,
            type="ConfigurationError",
        ) from None
    except ClientError as exc:
        if _code(exc) == "NoSuchBucket":
            return Pending(state=f"no bucket {bucket!r}")
        raise


async def _poke_key(client: Any, bucket: str, key: str, min_size: int) -> Pending | Done:
    try:
        head = await client.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if _code(exc) in _MISSING:
            return Pending(state=f"no s3://{bucket}/{key} yet")
        raise
    size = int(head["ContentLength"])
    if size < min_size:
        return Pending(state=f"s3://{bucket}/{key} has {size} bytes, waiting for {min_size}")
    return Done(
        output={
            "bucket": bucket,
            "key": key,
            "size": size,
            "etag": str(head.get("ETag", "")).strip('"'),
            "last_modified": _iso(head.get("LastModified")),
        }
    )


async def _poke_prefix(client: Any, bucket: str, prefix: str, min_size: int) -> Pending | Done:
    """The first page of the listing with objects of ``min_size`` says it: the output
    names the first of them (``key``, ``size``) and lists up to 100."""
    seen = 0
    paginator = client.get_paginator("list_objects_v2")
    async for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        contents = page.get("Contents", [])
        seen += len(contents)
        found = [
            {
                "key": o["Key"],
                "size": int(o["Size"]),
                "etag": str(o.get("ETag", "")).strip('"'),
                "last_modified": _iso(o.get("LastModified")),
            }
            for o in contents
            if int(o["Size"]) >= min_size
        ]
        if found:
            return Done(
                output={
                    "bucket": bucket,
                    "prefix": prefix,
                    "key": found[0]["key"],
                    "size": found[0]["size"],
                    "objects": found[:_MAX_OBJECTS],
                }
            )
    where = f"s3://{bucket}/{prefix}"
    if seen:
        return Pending(state=f"{seen} object(s) under {where}, none of {min_size} bytes or more")
    return Pending(state=f"nothing under {where} yet")


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else None


class _Shared:
    """What the sensors of one executor share: their S3 clients, one per endpoint, made
    once (a client costs ~80 ms of CPU to make, a HEAD through a made one ~10 ms); how
    many pokes may be under way at once; and the reads of durable's tables under way.

    Pokes that read durable's own database (run and asset conditions, SQL on
    ``durable``) share 3 of the store's 10 connections: a thousand sensors poking never
    starve the executor's own appends, claims and lease renewals, which would take the
    database for gone. Sensors asking the same of durable's tables at the same time (a
    hundred runs waiting on one upstream run) share one read. Closed with the executor's
    resources."""

    def __init__(self) -> None:
        self.durable = asyncio.Semaphore(DURABLE_POKES)
        self.other = asyncio.Semaphore(OTHER_POKES)
        self._session: AioSession | None = None
        self._stack = contextlib.AsyncExitStack()
        self._clients: dict[str | None, Any] = {}
        self._lock = asyncio.Lock()
        self._reads: dict[tuple[Any, ...], asyncio.Future[Any]] = {}

    async def once(self, key: tuple[Any, ...], read: Callable[[], Awaitable[T]]) -> T:
        """``read()`` (of durable's database, in its turn), shared by the pokes asking the
        same (``key``) while it is under way."""
        future = self._reads.get(key)
        if future is None:

            async def in_turn() -> T:
                async with self.durable:
                    return await read()

            future = self._reads[key] = asyncio.ensure_future(in_turn())

            def done(f: asyncio.Future[Any]) -> None:
                del self._reads[key]
                if not f.cancelled():
                    f.exception()  # its waiters have it (or have all gone)

            future.add_done_callback(done)
        # shielded: a poke that times out leaves the read to the others
        return await asyncio.shield(future)

    async def s3(self, endpoint_url: str | None) -> Any:
        endpoint = endpoint_url or os.environ.get("DURABLE_S3_ENDPOINT") or None
        client = self._clients.get(endpoint)
        if client is not None:
            return client
        async with self._lock:
            if endpoint not in self._clients:
                self._session = self._session or get_session()
                self._clients[endpoint] = await self._stack.enter_async_context(
                    self._session.create_client(
                        "s3",
                        endpoint_url=endpoint,
                        region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
                        config=_S3_CONFIG,
                    )
                )
            return self._clients[endpoint]

    async def close(self) -> None:
        for read in list(self._reads.values()):
            read.cancel()
        self._clients.clear()
        await self._stack.aclose()


_SHARED: weakref.WeakKeyDictionary[Any, _Shared] = weakref.WeakKeyDictionary()


def _shared(resources: Resources) -> _Shared:
    """The sensors' share of ``resources``, closed when they are."""
    shared = _SHARED.get(resources)
    if shared is None:
        shared = _SHARED[resources] = _Shared()
        close = resources.close

        async def close_all() -> None:
            try:
                await shared.close()
            finally:
                await close()

        resources.close = close_all  # type: ignore[method-assign]
    return shared


# -- sql -------------------------------------------------------------------------------


async def _poke_sql(
    spec: SensorTask, job: dict[str, Any], ctx: TaskContext, resources: Resources
) -> Pending | Done:
    condition = spec.sql
    assert isinstance(condition, SqlCondition)
    statement = SqlTask(
        name=spec.name, query=condition.query, connection=job["connection"], args=condition.args
    )
    shared = _shared(resources)
    pool = await resources.sql_pool(job["connection"])
    try:
        async with (
            shared.durable if job["connection"] == "durable" else shared.other,
            pool.acquire() as conn,
        ):
            result = await sql_task.execute(conn, statement, _quiet(ctx))
    except TaskError as exc:
        if exc.retryable:  # a lock timeout, a restarting server: the next poke tries
            raise PokeFailed(exc.message) from None
        raise
    if "rows" not in result:
        raise TaskError(
            f"sensor {spec.name!r}: its statement returns no rows ({result['status']}); "
            "a sql sensor needs a query whose first column says yes or no",
            retryable=False,
            type="ConfigurationError",
        )
    rows = result["rows"]
    first = rows[0] if rows else None
    value = next(iter(first.values()), None) if first else None
    if not value:
        return Pending(state="no rows" if first is None else f"first column is {value!r}")
    return Done(output={"row": first})


def _quiet(ctx: TaskContext) -> TaskContext:
    """``ctx`` with a log nobody stores: the SQL runner logs each statement's status, a
    line per poke that would only repeat itself."""
    return TaskContext(
        run_id=ctx.run_id,
        workflow=ctx.workflow,
        task=ctx.task,
        attempt=ctx.attempt,
        generation=ctx.generation,
        params=ctx.params,
        upstream=ctx.upstream,
        logical_time=ctx.logical_time,
        data_interval_start=ctx.data_interval_start,
        data_interval_end=ctx.data_interval_end,
        log=TaskLog(max_bytes=0),
        item=ctx.item,
        index=ctx.index,
        traceparent=ctx.traceparent,
    )


# -- run -------------------------------------------------------------------------------


def _logical_span(
    spec: SensorTask, condition: RunCondition, ctx: TaskContext
) -> tuple[datetime, datetime]:
    """The logical times to look for: one time, or a whole (UTC) day for a date."""
    if isinstance(condition.logical_time, UnsetType):
        if ctx.logical_time is None:
            raise TaskError(
                f"sensor {spec.name!r}: this run has no logical time (it was not started by "
                "a schedule or a backfill), so run.logical_time must say which one to "
                "wait for",
                retryable=False,
                type="ConfigurationError",
            )
        at = ctx.logical_time
    else:
        from durable.runtime.tasks import render

        text = render(condition.logical_time, ctx)
        with contextlib.suppress(ValueError):
            day = date.fromisoformat(text)
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return start, start + timedelta(days=1)
        at = _time(text, spec.name, "run.logical_time")
    return at, at + timedelta(microseconds=1)


def _span(job: dict[str, Any]) -> str:
    start, end = datetime.fromisoformat(job["from"]), datetime.fromisoformat(job["to"])
    return start.date().isoformat() if end - start == timedelta(days=1) else job["from"]


async def _poke_run(job: dict[str, Any], resources: Resources) -> Pending | Done:
    workflow, start, end = (
        job["workflow"],
        datetime.fromisoformat(job["from"]),
        datetime.fromisoformat(job["to"]),
    )
    store = _store(resources)
    runs = await _shared(resources).once(
        ("run", workflow, start, end), lambda: conditions.runs_at(store, workflow, start, end)
    )
    for run in runs:
        if run.status == job["status"]:
            return Done(
                output={
                    "workflow": run.workflow,
                    "run_id": run.run_id,
                    "status": run.status,
                    "logical_time": _iso(run.logical_time),
                    "finished_at": _iso(run.finished_at),
                }
            )
    if not runs:
        return Pending(state=f"no run of {job['workflow']} at {_span(job)} yet")
    latest = runs[0]
    return Pending(state=f"run {latest.run_id} of {job['workflow']} is {latest.status}")


# -- asset -----------------------------------------------------------------------------


async def _poke_asset(job: dict[str, Any], resources: Resources) -> Pending | Done:
    store, asset = _store(resources), job["asset"]
    update = await _shared(resources).once(
        ("asset", asset), lambda: conditions.asset_update(store, asset)
    )
    after = datetime.fromisoformat(job["after"])
    if update is None:
        return Pending(state=f"{job['asset']} was never updated")
    if update.updated_at <= after:
        return Pending(state=f"{job['asset']} last updated at {update.updated_at.isoformat()}")
    return Done(
        output={
            "asset": update.asset,
            "updated_at": update.updated_at.isoformat(),
            "workflow": update.workflow,
            "run_id": update.run_id,
            "task": update.task,
        }
    )


# -- shared ----------------------------------------------------------------------------


def _time(text: str, task: str, field: str) -> datetime:
    """An ISO date or time as an aware time (UTC when it gives no offset)."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise TaskError(
            f"sensor {task!r}: {field} {text!r} is not an ISO date or time "
            "(e.g. 2026-11-23 or 2026-11-23T06:00:00+00:00)",
            retryable=False,
            type="ConfigurationError",
        ) from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _store(resources: Resources) -> EventStore:
    """Durable's store, which the run and asset conditions read."""
    store = getattr(resources, "store", None)
    if store is None:
        # Resources is made from the store's bound ``sql_pool``: the store is its owner
        store = getattr(resources.durable_pool, "__self__", None)
    if store is None:  # pragma: no cover - every executor's resources have one
        raise TaskError(
            "this executor gives tasks no store to read runs and assets from",
            retryable=False,
            type="ConfigurationError",
        )
    return store  # type: ignore[no-any-return]


waiting.register("sensor", SensorWaiter())

"""Object-storage triggers against an S3-compatible HTTP server (moto): each object
version starts exactly one run — objects made before, during and across a restart."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import pytest
from aiobotocore.session import get_session

from durable import Param, Workflow
from durable.core.s3 import S3Trigger
from durable.runtime.triggers.s3 import S3PollingService
from durable.store import PostgresEventStore, RunFilter
from tests.executing import registry_of

pytestmark = pytest.mark.slow


@pytest.fixture
def s3_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    import urllib.request

    # moto keeps its state process-wide, across server instances: start empty
    urllib.request.urlopen(
        urllib.request.Request(f"http://127.0.0.1:{port}/moto-api/reset", method="POST"), timeout=10
    ).close()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    yield f"http://127.0.0.1:{port}"
    server.stop()


@asynccontextmanager
async def s3(endpoint: str) -> AsyncIterator[object]:
    async with get_session().create_client(
        "s3", endpoint_url=endpoint, region_name="us-east-1"
    ) as c:
        yield c


@asynccontextmanager
async def polling(
    store: PostgresEventStore, wf: Workflow, endpoint: str
) -> AsyncIterator[S3PollingService]:
    service = S3PollingService(store, registry_of(wf), endpoint_url=endpoint, poll_interval=0.1)
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    try:
        yield service
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def runs_by_key(store: PostgresEventStore) -> dict[str, list[dict[str, object]]]:
    out: dict[str, list[dict[str, object]]] = {}
    for r in await store.list_runs(RunFilter(workflow="ingest", limit=1000)):
        out.setdefault(str(r.params["key"]), []).append(r.params)
    return out


async def settle(service: S3PollingService, polls: int = 3) -> None:
    start = service.polls
    for _ in range(300):
        if service.polls >= start + polls:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the poller stopped polling")


async def test_each_object_version_starts_one_run(
    pg_store: PostgresEventStore, s3_endpoint: str
) -> None:
    wf = Workflow(
        "ingest",
        params={
            "bucket": Param(),
            "key": Param(),
            "size": Param("int", default=0),
            "etag": Param(),
        },
        s3=[S3Trigger(bucket="landing", prefix="sales/", suffix=".csv")],
    )
    wf.shell("load", "echo ${params.key}")
    async with s3(s3_endpoint) as client:
        await client.create_bucket(Bucket="landing")  # type: ignore[attr-defined]
        for i in range(3):  # before the service starts
            await client.put_object(
                Bucket="landing", Key=f"sales/day-{i}.csv", Body=b"a,b\n" * (i + 1)
            )  # type: ignore[attr-defined]
        await client.put_object(Bucket="landing", Key="sales/readme.txt", Body=b"x")  # type: ignore[attr-defined]
        await client.put_object(Bucket="landing", Key="other/day-9.csv", Body=b"x")  # type: ignore[attr-defined]

        async with polling(pg_store, wf, s3_endpoint) as service:
            await settle(service)
            assert sorted(await runs_by_key(pg_store)) == [f"sales/day-{i}.csv" for i in range(3)]
            for i in range(3, 5):  # while it runs
                await client.put_object(Bucket="landing", Key=f"sales/day-{i}.csv", Body=b"c\n")  # type: ignore[attr-defined]
            await settle(service)
        assert len(await runs_by_key(pg_store)) == 5

        for i in range(5, 7):  # while it is stopped (a restart)
            await client.put_object(Bucket="landing", Key=f"sales/day-{i}.csv", Body=b"d\n")  # type: ignore[attr-defined]
        await client.put_object(Bucket="landing", Key="sales/day-0.csv", Body=b"new content\n")  # type: ignore[attr-defined]
        async with polling(pg_store, wf, s3_endpoint) as service:
            await settle(service, polls=5)
    runs = await runs_by_key(pg_store)
    assert sorted(runs) == [f"sales/day-{i}.csv" for i in range(7)]
    assert [len(v) for k, v in sorted(runs.items())] == [
        2,
        1,
        1,
        1,
        1,
        1,
        1,
    ]  # day-0 got a new version
    first = sorted(runs["sales/day-1.csv"][0].items())
    assert first[0] == ("bucket", "landing") and ("size", 8) in first


async def test_an_unreachable_endpoint_does_not_stop_the_service(
    pg_store: PostgresEventStore,
) -> None:
    wf = Workflow("ingest", params={"key": Param()}, s3=[S3Trigger(bucket="nowhere")])
    wf.shell("load", "true")
    service = S3PollingService(
        pg_store, registry_of(wf), endpoint_url="http://127.0.0.1:9", poll_interval=0.05
    )
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    await settle(service, polls=2)
    stop.set()
    await asyncio.wait_for(task, 30)
    assert await pg_store.list_runs() == []


async def test_event_notifications_and_polling_start_one_run_per_object(
    pg_store: PostgresEventStore, s3_endpoint: str
) -> None:
    import msgspec

    from durable.core.kafka import KafkaTrigger
    from durable.runtime.triggers.kafka import KafkaTriggerService
    from tests.signs import consumed_to_high_water
    from tests.test_kafka import TOPIC, Broker, create_topic, produce

    wf = Workflow(
        "ingest",
        params={
            "bucket": Param(),
            "key": Param(),
            "size": Param("int", default=0),
            "etag": Param(),
        },
        s3=[S3Trigger(bucket="landing", prefix="sales/")],
        kafka=[KafkaTrigger(topic=TOPIC, format="s3-event")],
    )
    wf.shell("load", "true")
    async with s3(s3_endpoint) as client:
        await client.create_bucket(Bucket="landing")  # type: ignore[attr-defined]
        put = await client.put_object(Bucket="landing", Key="sales/day 1.csv", Body=b"a\n")  # type: ignore[attr-defined]
    etag = put["ETag"].strip('"')

    def notification(key: str, tag: str) -> bytes:  # the AWS / MinIO shape; keys URL-encoded
        return msgspec.json.encode(
            {
                "Records": [
                    {
                        "eventName": "s3:ObjectCreated:Put",
                        "s3": {
                            "bucket": {"name": "landing"},
                            "object": {"key": key, "size": 2, "eTag": tag},
                        },
                    }
                ]
            }
        )

    broker = Broker()
    broker.start()
    try:
        await create_topic(broker.bootstrap)
        await produce(
            broker.bootstrap,
            [
                (notification("sales/day+1.csv", etag), {}),  # the object in the bucket
                (notification("sales/day+1.csv", etag), {}),  # delivered twice
                (notification("sales/day-2.csv", "abc"), {}),  # only announced
                (b'{"Records": [{"eventName": "s3:ObjectCreated:Put"}]}', {}),  # malformed
            ],
        )
        service = KafkaTriggerService(pg_store, registry_of(wf), bootstrap=broker.bootstrap)
        stop = asyncio.Event()
        task = asyncio.create_task(service.run(stop))
        # every notification recorded (a run, a dead letter, or a duplicate's nothing)
        await consumed_to_high_water(pg_store, broker.bootstrap, TOPIC)
        stop.set()
        await asyncio.wait_for(task, 30)
    finally:
        broker.stop()
    async with polling(pg_store, wf, s3_endpoint) as poller:
        await settle(poller)
    runs = await runs_by_key(pg_store)
    assert sorted(runs) == ["sales/day 1.csv", "sales/day-2.csv"]
    assert [len(v) for v in runs.values()] == [1, 1]  # reported twice + polled: one run
    async with pg_store._pool.acquire() as conn:
        reasons = [r["reason"] for r in await conn.fetch("SELECT reason FROM durable.dead_letters")]
    assert reasons == ["not an S3 event notification: missing or bad 's3'"]

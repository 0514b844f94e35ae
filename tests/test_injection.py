"""Hostile values through every door never run as code in a shell task.

The values arrive through the HTTP API, a webhook, the CLI's text door, a Kafka message
and an S3 object key; a real executor runs the shell task ``printf '%s|' ${params.name}``.
Each run prints its value unchanged, as one word, and no injected command ran (the
marker file an injection would create is absent once every run has ended: the positive
sign that the commands had their chance).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiokafka import TopicPartition

from durable import KafkaTrigger, Param, WebhookTrigger, Workflow
from durable.api import create_app
from durable.application.runs import create_run
from durable.application.tokens import create_token
from durable.core.s3 import S3Object, S3Trigger, object_dedup_key, object_params
from durable.runtime.triggers.kafka import KafkaTriggerService
from durable.store import PostgresEventStore
from tests.executing import registry_of, running_executor, wait_for_run
from tests.test_trigger_doors import consumer_record

HOSTILE = [
    "x; touch {m}",
    "$(touch {m})",
    "`touch {m}`",
    "a\ntouch {m}",
    'it\'s "quoted" && touch {m}',
    "| touch {m}",
]


def workflow() -> Workflow:
    wf = Workflow(
        "inj",
        params={"name": Param("str", required=True), "key": Param("str", default="")},
        webhook=WebhookTrigger(),
        kafka=[KafkaTrigger(topic="names", params={"name": "value.name"})],
    )
    wf.shell("say", "printf '%s|' ${params.name}")
    return wf


@pytest.fixture
async def api(pg_store: PostgresEventStore) -> AsyncIterator[tuple[str, str]]:
    _, token = await create_token(pg_store.tokens, "inj", ["trigger"])
    runner = web.AppRunner(create_app(pg_store, registry_of(workflow())))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}", token
    await runner.cleanup()


async def test_hostile_values_through_every_door_stay_data(
    pg_store: PostgresEventStore, api: tuple[str, str], tmp_path: Path
) -> None:
    marker = tmp_path / "INJECTED"
    values = [v.format(m=marker) for v in HOSTILE]
    wf = workflow()
    spec = wf.spec()
    runs: dict[str, str] = {}  # run id -> the value it was given
    url, token = api
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
        for value in values:
            async with http.post(
                f"{url}/api/v1/workflows/inj/runs", json={"params": {"name": value}}
            ) as r:
                assert r.status == 202, await r.text()
                runs[(await r.json())["run_id"]] = value
            async with http.post(f"{url}/api/v1/hooks/inj", json={"name": value}) as r:
                assert r.status == 202, await r.text()
                runs[(await r.json())["run_id"]] = value
    for value in values:  # the CLI's door: `--param name=...` is text
        run_id, _ = await create_run(pg_store, spec, {"name": value}, params_from="text")
        runs[run_id] = value
    service = KafkaTriggerService(pg_store, registry_of(wf), bootstrap="unused:9092")
    tp = TopicPartition("names", 0)
    await service.process(
        {tp: [consumer_record(i, {"name": v}, None, "names") for i, v in enumerate(values)]}
    )
    rule = S3Trigger(bucket="landing", params={"name": "key"})
    for i, value in enumerate(values):  # an object's key is text too
        obj = S3Object(bucket="landing", key=value, size=1, etag=f"e{i}")
        run_id, _ = await create_run(
            pg_store,
            spec,
            object_params(rule, ["name"], obj),
            idempotency_key=object_dedup_key("inj", obj),
            params_from="text",
        )
        runs[run_id] = value
    by_kafka = [r for r in await pg_store.list_runs() if r.run_id not in runs]
    assert len(by_kafka) == len(values)
    runs |= {r.run_id: r.params["name"] for r in by_kafka}
    assert sorted(runs.values()) == sorted(values * 5)

    async with running_executor(pg_store, registry_of(wf), max_tasks=16):
        for run_id, value in runs.items():
            state = await wait_for_run(pg_store, run_id, timeout=60)
            assert state.status == "succeeded", (value, state.tasks["say"].error)
            assert "\n".join(state.tasks["say"].output["stdout"]) == f"{value}|", value
    assert not marker.exists(), "an injected command ran"

"""Metrics as OpenTelemetry instruments, seen from outside: ``/metrics`` of a real
`durable up` process scraped and parsed after runs, the same figures exported over
OTLP/HTTP to a receiver on loopback, and the Kafka trigger's consumption, dead letters and
lag against a real broker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
from aiohttp import web
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from prometheus_client.parser import text_string_to_metric_families

from durable import Param, Workflow
from durable.core.kafka import KafkaTrigger
from durable.runtime.triggers.kafka import KafkaTriggerService
from durable.store import PostgresEventStore
from durable.telemetry import Telemetry, otlp_endpoint
from tests.executing import registry_of
from tests.processes import Service, start_service
from tests.signs import eventually
from tests.test_kafka import TOPIC, Broker, create_topic, order, produce

WORKFLOWS = """
from pathlib import Path

from durable import TaskContext, Workflow
from durable.core.retry import RetryPolicy

HERE = Path(__file__).parent

ok = Workflow("ok")


@ok.task
def first() -> int:
    return 1


ok.shell("nap", "sleep 0.3", after=[first])

flaky = Workflow("flaky")


@flaky.task(retry=RetryPolicy(max_attempts=2, initial_delay=0.2, jitter=0))
def wobbly(ctx: TaskContext) -> str:
    mark = HERE / f"{ctx.run_id}.failed"
    if not mark.exists():
        mark.write_text("once")
        raise RuntimeError("the first attempt fails")
    return "second time lucky"


sleepy = Workflow("sleepy")
sleepy.shell("doze", "sleep 60")

broken = Workflow("broken")


@broken.task(retries=0)
def boom() -> None:
    raise ValueError("always")
"""

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """A sample's value; fails listing the series of ``name`` there are."""
    key = (name, frozenset(labels.items()))
    if key not in samples:
        there = [dict(k[1]) for k in samples if k[0] == name]
        raise AssertionError(f"no {name}{labels}; there are: {there}")
    return samples[key]


@pytest.fixture
def workflows(tmp_path: Path) -> Path:
    folder = tmp_path / "workflows"
    folder.mkdir()
    (folder / "metrics_flows.py").write_text(WORKFLOWS)
    return folder


class Client:
    def __init__(self, service: Service, http: aiohttp.ClientSession) -> None:
        self.url = service.url
        self.http = http
        self.headers = {"Authorization": f"Bearer {service.token}"}

    async def run(self, workflow: str) -> dict[str, Any]:
        """Start a run of ``workflow`` and wait for its end."""
        async with self.http.post(
            f"{self.url}/api/v1/workflows/{workflow}/runs", json={}, headers=self.headers
        ) as response:
            assert response.status == 202, await response.text()
            run_id = (await response.json())["run_id"]
        async with self.http.get(
            f"{self.url}/api/v1/runs/{run_id}/wait?timeout=60", headers=self.headers
        ) as response:
            run: dict[str, Any] = await response.json()
        assert run["status"] in ("succeeded", "failed"), run
        return run

    async def cancel_once_running(self, workflow: str) -> None:
        """Start a run of ``workflow``, cancel it (through the API) once its first task
        runs, and wait until it is cancelled."""
        async with self.http.post(
            f"{self.url}/api/v1/workflows/{workflow}/runs", json={}, headers=self.headers
        ) as response:
            run_id = (await response.json())["run_id"]

        async def running() -> bool:
            async with self.http.get(
                f"{self.url}/api/v1/runs/{run_id}", headers=self.headers
            ) as response:
                run = await response.json()
            return any(t["status"] == "running" for t in run["tasks"])

        await eventually(running, f"a task of run {run_id} runs")
        async with self.http.post(
            f"{self.url}/api/v1/runs/{run_id}/cancel", json={}, headers=self.headers
        ) as response:
            assert response.status == 200, await response.text()
        async with self.http.get(
            f"{self.url}/api/v1/runs/{run_id}/wait?timeout=60", headers=self.headers
        ) as response:
            assert (await response.json())["status"] == "cancelled"

    async def scrape(self) -> Samples:
        async with self.http.get(f"{self.url}/metrics", headers=self.headers) as response:
            assert response.status == 200, await response.text()
            assert response.content_type == "text/plain"
            return parse(await response.text())


@pytest.fixture
async def service(database_url: str, workflows: Path) -> AsyncIterator[Service]:
    started = await asyncio.to_thread(start_service, database_url, workflows)
    yield started
    await asyncio.to_thread(started.stop)


async def test_metrics_of_a_running_service(service: Service) -> None:
    async with aiohttp.ClientSession() as http:
        client = Client(service, http)
        runs = await asyncio.gather(
            *(client.run("ok") for _ in range(3)),
            client.run("flaky"),
            *(client.run("broken") for _ in range(2)),
        )
        assert [r["status"] for r in runs] == ["succeeded"] * 4 + ["failed"] * 2
        await client.cancel_once_running("sleepy")  # appended by the API, seen by the driver

        async def drivers_left() -> bool:  # a driver leaves just after its run's last event
            got = await client.scrape()
            return value(got, "durable_executor_runs") == 0

        await eventually(drivers_left, "the executor let go of every run")
        m = await client.scrape()

    # runs started and finished, by workflow and status
    for workflow, n in (("ok", 3), ("flaky", 1), ("broken", 2)):
        assert value(m, "durable_runs_started_total", workflow=workflow) == n
    assert value(m, "durable_runs_finished_total", workflow="ok", status="succeeded") == 3
    assert value(m, "durable_runs_finished_total", workflow="flaky", status="succeeded") == 1
    assert value(m, "durable_runs_finished_total", workflow="broken", status="failed") == 2
    assert value(m, "durable_runs_finished_total", workflow="sleepy", status="cancelled") == 1
    # and what only the database knows, as before
    assert value(m, "durable_runs", workflow="ok", status="succeeded") == 3
    assert value(m, "durable_runs", workflow="broken", status="failed") == 2
    assert value(m, "durable_dead_letters") == 0

    # task attempts: by workflow, task kind and outcome; timed from the log's commit times
    attempts = "durable_task_attempt_duration_seconds"
    shell = {"workflow": "ok", "task_kind": "shell", "outcome": "succeeded"}
    assert value(m, f"{attempts}_count", **shell) == 3
    assert value(m, f"{attempts}_sum", **shell) >= 3 * 0.3  # each slept 0.3 s
    assert value(m, f"{attempts}_bucket", **shell, le="0.25") == 0
    python = {"workflow": "ok", "task_kind": "python"}
    assert value(m, f"{attempts}_count", **python, outcome="succeeded") == 3
    flaky = {"workflow": "flaky", "task_kind": "python"}
    assert value(m, f"{attempts}_count", **flaky, outcome="retried") == 1
    assert value(m, f"{attempts}_count", **flaky, outcome="succeeded") == 1
    broken = {"workflow": "broken", "task_kind": "python", "outcome": "failed"}
    assert value(m, f"{attempts}_count", **broken) == 2
    assert value(m, "durable_executor_attempts") == 0

    # queue time (scheduled -> started): one per attempt; trigger -> start: one per run
    queued = "durable_task_queue_duration_seconds_count"
    assert value(m, queued, workflow="ok", task_kind="shell") == 3
    assert value(m, queued, workflow="flaky", task_kind="python") == 2
    latency = "durable_run_start_latency_seconds_count"
    assert value(m, latency, workflow="ok", trigger="api") == 3

    # the group commit wrote every event of this fresh database's log
    assert value(m, "durable_store_commit_batch_size_sum") == value(m, "durable_log_position")
    batches = value(m, "durable_store_commit_batch_size_count")
    assert value(m, "durable_store_commit_duration_seconds_count") == batches
    assert value(m, "durable_store_append_duration_seconds_count") == batches  # per batch
    assert batches >= 1

    # HTTP: the OTel semantic conventions, the route's template
    posted = {
        "http_request_method": "POST",
        "http_route": "/api/v1/workflows/{workflow}/runs",
        "http_response_status_code": "202",
    }
    assert value(m, "http_server_request_duration_seconds_count", **posted) == 7
    assert value(m, "http_server_request_duration_seconds_bucket", **posted, le="+Inf") == 7
    scrapes = {"http_request_method": "GET", "http_route": "/metrics"}
    scraped = value(
        m,
        "http_server_request_duration_seconds_count",
        **scrapes,
        **{"http_response_status_code": "200"},
    )
    assert scraped >= 1
    info = [dict(k[1]) for k in m if k[0] == "target_info"]
    assert info and info[0]["service_name"] == "durable"


# -- OTLP/HTTP ------------------------------------------------------------------------------


class Receiver:
    """An OTLP/HTTP metrics receiver on loopback: keeps every decoded export."""

    def __init__(self) -> None:
        self.exports: list[ExportMetricsServiceRequest] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/metrics", self._receive)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _receive(self, request: web.Request) -> web.Response:
        assert request.content_type == "application/x-protobuf"
        self.exports.append(ExportMetricsServiceRequest.FromString(await request.read()))
        return web.Response(
            body=ExportMetricsServiceResponse().SerializeToString(),
            content_type="application/x-protobuf",
        )

    def points(self, name: str) -> list[tuple[dict[str, Any], Any]]:
        """The data points of metric ``name`` in the latest export that has it."""
        for export in reversed(self.exports):
            found = [
                (_attributes(p.attributes), p)
                for rm in export.resource_metrics
                for sm in rm.scope_metrics
                for metric in sm.metrics
                if metric.name == name
                for p in _data_points(metric)
            ]
            if found:
                return found
        return []

    def resource(self) -> dict[str, Any]:
        return _attributes(self.exports[-1].resource_metrics[0].resource.attributes)


def _data_points(metric: Any) -> Iterable[Any]:
    kind = metric.WhichOneof("data")
    return list(getattr(metric, kind).data_points)


def _attributes(pairs: Iterable[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in pairs:
        v = kv.value
        out[kv.key] = getattr(v, v.WhichOneof("value"))
    return out


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    yield r
    await r.stop()


async def test_the_same_metrics_are_exported_over_otlp(
    database_url: str, workflows: Path, receiver: Receiver
) -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_METRIC_EXPORT_INTERVAL": "200"}
    service = await asyncio.to_thread(start_service, database_url, workflows, env=env)
    try:
        async with aiohttp.ClientSession() as http:
            client = Client(service, http)
            for _ in range(2):
                await client.run("ok")
            await client.run("broken")

            def finished() -> dict[tuple[str, str], int]:
                return {
                    (a["workflow"], a["status"]): p.as_int
                    for a, p in receiver.points("durable.runs.finished")
                }

            async def exported() -> bool:
                return finished() == {("ok", "succeeded"): 2, ("broken", "failed"): 1}

            await eventually(exported, "the runs' counts were exported", timeout=30)
            scraped = await client.scrape()
    finally:
        # stopped while the receiver listens: its last export is not retried for seconds
        await asyncio.to_thread(service.stop)
    assert service.process.returncode == 0, "".join(service.log)
    assert receiver.resource()["service.name"] == "durable"

    attempts = {
        (a["workflow"], a["task_kind"], a["outcome"]): p.count
        for a, p in receiver.points("durable.task.attempt.duration")
    }
    assert attempts[("ok", "shell", "succeeded")] == 2
    assert attempts[("broken", "python", "failed")] == 1
    shell = {"workflow": "ok", "task_kind": "shell", "outcome": "succeeded"}
    # the same instrument, read by both readers
    assert value(scraped, "durable_task_attempt_duration_seconds_count", **shell) == 2
    routes = {
        (a["http.request.method"], a.get("http.route"), a["http.response.status_code"]): p.count
        for a, p in receiver.points("http.server.request.duration")
    }
    assert routes[("POST", "/api/v1/workflows/{workflow}/runs", 202)] == 3
    gauges = {a.get("workflow"): p.as_int for a, p in receiver.points("durable.runs")}
    assert gauges["ok"] == 2  # read from the database by the exporter's thread
    assert receiver.points("durable.store.commit.batch.size")


def test_otlp_export_follows_the_standard_variables() -> None:
    assert otlp_endpoint({}) is None  # nothing configured: nothing exported
    assert otlp_endpoint({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/"}) == (
        "http://c:4318/v1/metrics"
    )
    own = "http://m:9000/custom"
    both = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318",
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": own,
    }
    assert otlp_endpoint(both) == own
    assert otlp_endpoint({**both, "OTEL_METRICS_EXPORTER": "none"}) is None
    assert otlp_endpoint({**both, "OTEL_METRICS_EXPORTER": "console"}) is None
    assert otlp_endpoint({**both, "OTEL_METRICS_EXPORTER": "console, otlp"}) == own


def test_each_telemetry_has_its_own_registry() -> None:
    one, two = Telemetry({}), Telemetry({})
    try:
        assert one.otlp is None
        one.http.observe("GET", "/x/{id}", 200, 0.01)
        one.http.observe("BREW", None, 404, 0.01)  # an unknown method, no route matched
        first, second = parse(one.render().decode()), parse(two.render().decode())
    finally:
        one.shutdown()
        two.shutdown()
    name = "http_server_request_duration_seconds_count"
    labels = {"http_request_method": "GET", "http_route": "/x/{id}"}
    assert value(first, name, **labels, http_response_status_code="200") == 1
    # no route: left out of the attributes (Prometheus fills the label in, empty)
    other = {"http_request_method": "_OTHER", "http_route": ""}
    assert value(first, name, **other, http_response_status_code="404") == 1
    assert not [k for k in second if k[0] == name]


# -- Kafka ----------------------------------------------------------------------------------


@pytest.mark.slow
async def test_kafka_consumption_dead_letters_and_lag(
    pg_store: PostgresEventStore, broker: Broker
) -> None:
    wf = Workflow(
        "orders",
        params={"order_id": Param(required=True)},
        kafka=[KafkaTrigger(topic=TOPIC, params={"order_id": "value.id"})],
    )
    wf.shell("book", "true")
    await create_topic(broker.bootstrap)
    good = [(order(i), {}) for i in range(27)]
    bad = [(b"not json", {}), (msgspec.json.encode({"kind": "order"}), {}), (b"{", {})]
    await produce(broker.bootstrap, good + bad)
    total = len(good) + len(bad)
    telemetry = Telemetry({})
    # one message per batch: the consumer is behind for a while, long enough to see it
    service = KafkaTriggerService(
        pg_store,
        registry_of(wf),
        bootstrap=broker.bootstrap,
        group_id="g1",
        max_records=1,
        metrics=telemetry.kafka,
    )
    stop = asyncio.Event()
    consuming = asyncio.create_task(service.run(stop))

    def read(name: str) -> dict[str, float]:
        """Series of ``name`` by topic/partition (lag) or topic (counters)."""
        got = parse(telemetry.render().decode())
        return {
            dict(k[1]).get("messaging_destination_partition_id", "")
            or dict(k[1]).get("workflow", ""): v
            for k, v in got.items()
            if k[0] == name
        }

    try:

        async def consumed(n: int) -> bool:
            return sum(read("messaging_client_consumed_messages_total").values()) >= n

        await eventually(
            lambda: consumed(2), "the consumer recorded its first messages", timeout=30
        )
        # the consumer holds this lock from poll to transaction: the figures stand still
        async with service._lock:
            behind = sum(read("durable_kafka_consumer_lag").values())
            done = sum(read("messaging_client_consumed_messages_total").values())
        assert 0 < behind <= total - done

        await eventually(lambda: consumed(total), "every message was recorded", timeout=60)

        async def caught_up() -> bool:
            lag = read("durable_kafka_consumer_lag")
            return len(lag) == 3 and sum(lag.values()) == 0

        await eventually(caught_up, "every partition's lag came down to 0", timeout=30)
        dead = read("durable_kafka_dead_letters_total")
        assert dead == {"orders": 3}  # by workflow (and topic, and consumer group)
        assert sum(read("messaging_client_consumed_messages_total").values()) == total
    finally:
        stop.set()
        await asyncio.wait_for(consuming, 30)
        await asyncio.to_thread(telemetry.shutdown)


@pytest.fixture
def broker() -> Iterable[Broker]:
    b = Broker()
    b.start()
    yield b
    b.stop()

"""What a UI shows of the workflows and the triggers' tracking, over HTTP on a real store:
the workflow list with how its runs went lately, a workflow's graph and schedule, its
source file and recorded versions, asset lineage and dead letters."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from durable import Param, Schedule, Workflow
from durable.application.runs import register_versions
from durable.core.events import run_stream
from durable.core.retry import RetryPolicy
from durable.runtime.triggers.assets import AssetService
from durable.store import PostgresEventStore
from durable.store.rows import AssetUpdate, NewDeadLetter
from durable.workflows import WorkflowRegistry, load_workflows
from durable.workflows.loader import LoadedWorkflow
from tests.executing import registry_of
from tests.histories import created, failed_run, succeeded_run
from tests.ui_api import Ui, serving

LATER = datetime(2030, 1, 1, 0, 30, tzinfo=UTC)


def catalog() -> list[Workflow]:
    etl = Workflow("etl", params={"day": Param("date", default="2026-11-21")})

    @etl.task
    def extract() -> list[int]:
        return [1, 2, 3]

    @etl.task(after=[extract], produces=["warehouse.sales"])
    def transform(extract: list[int]) -> int:
        return sum(extract)

    refresh = Workflow("refresh", on_assets=["warehouse.sales", "external.feed"])

    @refresh.task
    def redraw() -> str:
        return "redrawn"

    archive = Workflow("archive")

    @archive.task(produces=["archive.cold"])
    def freeze() -> None:
        return None

    router = Workflow("router")

    @router.task
    def size() -> list[int]:
        return [1, 2]

    @router.task(after=[size])
    def small() -> str:
        return "small"

    @router.task(after=[size])
    def large() -> str:
        return "large"

    @router.task(after=[size])
    def unknown() -> str:
        return "?"

    @router.switch(cases={"s": [small], "l": [large]}, default=[unknown], after=[size])
    def choose(size: list[int]) -> str:
        return "s"

    @router.map(over=size, retry=RetryPolicy(max_attempts=1))
    def each(item: int) -> int:
        return item

    @router.task(after=[each], trigger_rule="one_failed")
    def on_error() -> str:
        return "caught"

    nightly = Workflow(
        "nightly",
        params={"date": Param("date", required=True)},
        schedule=Schedule(cron="0 2 * * *", timezone="UTC", catchup="none"),
    )

    @nightly.task
    def night(date: str) -> str:
        return date

    quick = Workflow("quick")

    @quick.task
    def one() -> int:
        return 1

    return [etl, refresh, archive, router, nightly, quick]


@pytest.fixture
def registry() -> WorkflowRegistry:
    return registry_of(*catalog())


@pytest.fixture
async def idle(pg_store: PostgresEventStore, registry: WorkflowRegistry) -> AsyncIterator[Ui]:
    """The API with no executor: runs stay as the test writes them; "now" is LATER."""
    async with serving(pg_store, registry, execute=False, clock=lambda: LATER) as ui:
        yield ui


def _by_name(listed: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {w["name"]: w for w in listed["workflows"]}


# -- the workflow list and a workflow ----------------------------------------------------------


async def test_workflow_list_has_last_run_recent_statuses_success_rate_and_next_fire(
    idle: Ui,
) -> None:
    store = idle.store
    await store.append(run_stream("q00"), 0, failed_run("q00", workflow="quick"))
    for i in range(1, 21):
        await store.append(run_stream(f"q{i:02}"), 0, succeeded_run(f"q{i:02}", workflow="quick"))
    await store.append(run_stream("q21"), 0, [created("q21", workflow="quick")])

    quick = _by_name(await idle.get("/api/v1/workflows"))["quick"]
    newest = await store.get_run("q21")
    assert newest is not None
    assert quick["last_run"] == {
        "run_id": "q21",
        "status": "pending",
        "created_at": newest.created_at.isoformat().replace("+00:00", "Z"),
    }
    assert quick["recent"] == ["pending"] + ["succeeded"] * 9
    assert quick["success_rate"] == 1.0  # the failed one is the 21st finished run back

    await store.append(run_stream("q22"), 0, failed_run("q22", workflow="quick"))
    listed = _by_name(await idle.get("/api/v1/workflows"))
    quick = listed["quick"]
    assert quick["last_run"]["run_id"] == "q22" and quick["last_run"]["status"] == "failed"
    assert quick["recent"][:2] == ["failed", "pending"] and len(quick["recent"]) == 10
    assert quick["success_rate"] == 19 / 20

    nightly = listed["nightly"]
    schedule = await idle.get("/api/v1/schedules/nightly")
    assert nightly["next_fire"] == schedule["next_fire"]
    assert datetime.fromisoformat(nightly["next_fire"]) == datetime(2030, 1, 1, 2, tzinfo=UTC)
    assert nightly["triggers"] == ["schedule"]
    for name in ("etl", "router", "archive", "refresh"):
        w = listed[name]
        assert (w["last_run"], w["recent"], w["success_rate"], w["next_fire"]) == (
            None,
            [],
            None,
            None,
        ), name
    assert listed["refresh"]["triggers"] == ["assets"]


async def test_workflow_detail_has_schedule_triggers_params_and_shaped_graph(idle: Ui) -> None:
    router = await idle.get("/api/v1/workflows/router")
    nodes = {n["id"]: n for n in router["graph"]["nodes"]}
    assert nodes["choose"] == {
        "id": "choose",
        "kind": "switch",
        "trigger_rule": "all_success",
        "group": None,
        "branches": {"s": ["small"], "l": ["large"]},
        "default_branch": ["unknown"],
        "over": None,
    }
    assert {n: nodes[n]["group"] for n in ("small", "large", "unknown", "size")} == {
        "small": "choose",
        "large": "choose",
        "unknown": "choose",
        "size": None,
    }
    assert (nodes["each"]["kind"], nodes["each"]["over"]) == ("map", "size")
    assert nodes["on_error"]["trigger_rule"] == "one_failed"
    assert router["schedule"] is None and router["triggers"] == [] and router["params"] == {}

    nightly = await idle.get("/api/v1/workflows/nightly")
    assert nightly["schedule"] == await idle.get("/api/v1/schedules/nightly")
    assert nightly["schedule"]["cron"] == "0 2 * * *"
    assert nightly["triggers"] == ["schedule"]
    assert nightly["params"] == {"date": {"type": "date", "required": True}}


# -- source and versions -----------------------------------------------------------------------

YAML = """\
# sweeps the landing zone
workflow: cleanup
tasks:
  sweep:
    shell: "echo swept"
"""

PYTHON = '''\
"""Mail the report."""
from durable import Workflow

mailer = Workflow("mailer")


@mailer.task
def send() -> str:
    return "sent"
'''


async def test_source_text_and_versions_of_loaded_workflows(
    pg_store: PostgresEventStore, tmp_path: Path
) -> None:
    (tmp_path / "cleanup.yaml").write_text(YAML)
    (tmp_path / "ui_catalog_mailer.py").write_text(PYTHON)
    loaded = load_workflows(tmp_path)
    assert loaded.get("cleanup").source_text == YAML
    assert loaded.get("mailer").source_text == PYTHON
    for wf in catalog()[-1:]:  # one defined in code: no file, no text
        loaded.add(LoadedWorkflow(wf.spec(), dict(wf.callables)))
    async with serving(pg_store, loaded, execute=False) as ui:
        assert await ui.get("/api/v1/workflows/cleanup/source") == {
            "path": str(tmp_path / "cleanup.yaml"),
            "language": "yaml",
            "text": YAML,
        }
        mailer = await ui.get("/api/v1/workflows/mailer/source")
        assert (mailer["language"], mailer["text"]) == ("python", PYTHON)
        assert mailer["path"].endswith("ui_catalog_mailer.py")
        status, problem = await ui.call("GET", "/api/v1/workflows/quick/source")
        assert status == 404 and problem["title"] == "no source"
        assert (await ui.call("GET", "/api/v1/workflows/nope/source"))[0] == 404

        detail = await ui.get("/api/v1/workflows/cleanup")
        version = detail["version"]
        path = f"/api/v1/workflows/cleanup/versions/{version}"
        got = await ui.get(path)
        assert set(got) == {"version", "first_seen", "runs", "definition", "source_text"}
        assert (got["version"], got["runs"], got["source_text"]) == (version, 0, YAML)
        assert got["definition"] == detail["definition"]
        assert got["first_seen"] == detail["versions"][0]["first_seen"]
        await ui.start("cleanup")
        assert (await ui.get(path))["runs"] == 1
        for missing in ("/cleanup/versions/000000000000", "/nope/versions/" + version):
            status, problem = await ui.call("GET", f"/api/v1/workflows{missing}")
            assert status == 404 and problem["title"] == "no such version", missing

    # a process serving the same version without its file: the recorded text is shown
    again = WorkflowRegistry()
    again.add(LoadedWorkflow(loaded.get("cleanup").spec, {}))
    async with serving(pg_store, again, execute=False) as ui:
        source = await ui.get("/api/v1/workflows/cleanup/source")
        assert (source["language"], source["text"]) == ("yaml", YAML)


async def test_versions_recorded_before_source_texts_keep_none(
    pg_store: PostgresEventStore,
) -> None:
    quick = catalog()[-1]
    without = WorkflowRegistry()
    without.add(LoadedWorkflow(quick.spec(), dict(quick.callables)))
    await register_versions(pg_store, without)
    async with serving(pg_store, without, execute=False) as ui:
        version = quick.spec().version
        got = await ui.get(f"/api/v1/workflows/quick/versions/{version}")
        assert got["source_text"] is None
        assert got["definition"] == (await ui.get("/api/v1/workflows/quick"))["definition"]


# -- assets and dead letters --------------------------------------------------------------------


async def test_assets_join_recorded_updates_with_declared_producers_and_consumers(
    pg_store: PostgresEventStore, registry: WorkflowRegistry
) -> None:
    async with serving(pg_store, registry) as ui:
        run_id = await ui.start("etl")
        assert (await ui.finished(run_id))["status"] == "succeeded"
        await AssetService(pg_store, registry).catch_up()  # the asset trigger's one pass
        gone = AssetUpdate(
            asset="legacy.table", workflow="retired", run_id="r0", task="dump", generation=1,
            updated_at=datetime(2026, 1, 1, tzinfo=UTC), position=1,
        )  # fmt: skip
        await pg_store.tracking.upsert_assets([gone])  # from a workflow no longer loaded

        listed = (await ui.get("/api/v1/assets"))["assets"]
        by_name = {a["asset"]: a for a in listed}
        assert [a["asset"] for a in listed] == sorted(by_name)
        assert set(by_name) == {"warehouse.sales", "external.feed", "archive.cold", "legacy.table"}
        sales = by_name["warehouse.sales"]
        update = sales["last_update"]
        assert (update["workflow"], update["run_id"], update["task"], update["generation"]) == (
            "etl",
            run_id,
            "transform",
            1,
        )
        assert sales["producers"] == [{"workflow": "etl", "task": "transform"}]
        assert sales["consumers"] == ["refresh"]
        assert by_name["external.feed"] == {
            "asset": "external.feed",
            "last_update": None,
            "producers": [],
            "consumers": ["refresh"],
        }
        assert by_name["archive.cold"]["producers"] == [{"workflow": "archive", "task": "freeze"}]
        assert by_name["archive.cold"]["last_update"] is None
        legacy = by_name["legacy.table"]
        assert (legacy["last_update"]["workflow"], legacy["producers"], legacy["consumers"]) == (
            "retired",
            [],
            [],
        )

        # the update started the consumer: its trigger says which asset and run
        (row,) = [r for r in await pg_store.list_runs() if r.workflow == "refresh"]
        trigger = (await ui.get(f"/api/v1/runs/{row.run_id}"))["trigger"]
        assert trigger["kind"] == "asset"
        assert trigger["detail"] == {"asset": "warehouse.sales", "run_id": run_id}


async def test_dead_letters_newest_first_with_readable_previews(idle: Ui) -> None:
    long_text = ("é" * 600).encode()
    letters = [
        NewDeadLetter(
            topic="orders", partition=0, offset=7, key=b"k-7", value=b"{not json",
            headers={"trace": "t1"}, workflow="etl", reason="value is not JSON",
        ),
        NewDeadLetter(
            topic="orders", partition=1, offset=8, key=None, value=b"\xff\xfe" + long_text,
            workflow=None, reason="no workflow matched",
        ),
    ]  # fmt: skip
    await idle.store.tracking.record_kafka_batch("g", [], letters, {("orders", 0): 8})
    stored = await idle.store.tracking.dead_letters()

    listed = (await idle.get("/api/v1/dead-letters"))["dead_letters"]
    assert [d["offset"] for d in listed] == [8, 7]
    binary, text = listed
    assert binary["key_preview"] is None and binary["workflow"] is None
    assert len(binary["value_preview"]) == 500
    assert binary["value_preview"] == "\ufffd\ufffd" + "é" * 498
    assert text == {
        "id": stored[1].id,
        "source": "kafka",
        "topic": "orders",
        "partition": 0,
        "offset": 7,
        "workflow": "etl",
        "reason": "value is not JSON",
        "recorded_at": stored[1].received_at.isoformat().replace("+00:00", "Z"),
        "key_preview": "k-7",
        "value_preview": "{not json",
        "headers": {"trace": "t1"},
    }
    one = (await idle.get("/api/v1/dead-letters?limit=1"))["dead_letters"]
    assert [d["offset"] for d in one] == [8]
    for bad in ("0", "1001", "many"):
        status, problem = await idle.call("GET", f"/api/v1/dead-letters?limit={bad}")
        assert status == 400 and "limit" in problem["detail"], bad

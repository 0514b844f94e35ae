"""dbt projects as tasks, for real: dbt-core + dbt-postgres building the example project
(examples/dbt_shop) into the test's own PostgreSQL database.

The manifest becomes one task per node with the manifest's dependencies; watched mode runs
one ``dbt build`` and records each node's start and outcome as dbt reports it; a model
that fails is fixed and rerun alone (it and what depends on it, one build selecting just
those); node mode runs a dbt call per node; bad projects and selectors are refused at
load time, naming the workflow, the dbt entry and the option.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner

from durable import Workflow
from durable.application.runs import create_run
from durable.cli import main
from durable.core.events import (
    RunCancelled,
    TaskFailed,
    TaskStarted,
    TaskSucceeded,
    run_stream,
)
from durable.core.fold import fold
from durable.core.spec import DefinitionError
from durable.runtime.triggers.assets import AssetService
from durable.store import PostgresEventStore, RunFilter
from durable.workflows import load_workflows
from durable.workflows.dbt import DbtProjectError, dbt_executable, expand
from tests.conftest import PgServer
from tests.executing import registry_of, running_executor, wait_for_run
from tests.signs import eventually

try:  # durable runs the dbt executable (CI installs it in a virtualenv of its own)
    dbt_executable()
except DbtProjectError:
    pytest.skip(
        "dbt is not installed: pip install 'dbt-core<1.12' dbt-postgres", allow_module_level=True
    )

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "dbt_shop"
SEEDS = ["raw_customers", "raw_orders", "raw_payments"]
MODELS = [
    "stg_customers",
    "stg_orders",
    "stg_payments",
    "int_order_payments",
    "customer_revenue",
    "daily_revenue",
]
RUN_TIMEOUT = 300.0  # dbt on a shared, loaded machine: a build can take a minute


@pytest.fixture(scope="module")
def parsed_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example project, copied and parsed once (``dbt parse`` takes seconds)."""
    project = tmp_path_factory.mktemp("dbt") / "dbt_shop"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("target", "logs"))
    expand(project)  # parses: target/manifest.json
    assert (project / "target" / "manifest.json").exists()
    return project


@pytest.fixture
def shop(parsed_project: Path, tmp_path: Path) -> Path:
    """A copy of the parsed project this test may change (mtimes kept: still parsed)."""
    project = tmp_path / "dbt_shop"
    shutil.copytree(parsed_project, project, copy_function=shutil.copy2)
    return project


@pytest.fixture
def warehouse(
    pg_server: PgServer, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """The example profile pointed at this test's database (schema ``shop``)."""
    dbname = urlsplit(database_url).path.lstrip("/")
    monkeypatch.setenv("SHOP_PG_HOST", str(pg_server.datadir))
    monkeypatch.setenv("SHOP_PG_DBNAME", dbname)
    monkeypatch.setenv("SHOP_PG_SCHEMA", "shop")
    monkeypatch.setenv("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    yield dbname


async def history(store: PostgresEventStore, run_id: str) -> list[Any]:
    return [r.event for r in await store.read_stream(run_stream(run_id))]


async def task_log(store: PostgresEventStore, run_id: str, task: str) -> list[str]:
    return [line.message for line in await store.logs.read(run_id, task)]


def cli(database_url: str, *args: str) -> Any:
    return CliRunner().invoke(main, ["--database-url", database_url, *args])


# -- the manifest as tasks -------------------------------------------------------------


def test_the_manifest_becomes_one_task_per_node(parsed_project: Path) -> None:
    wf = Workflow("shop")
    shop = wf.dbt(parsed_project)
    spec = wf.spec()
    tasks = {t.name: t for t in spec.tasks}
    tests = [n for n in tasks if n not in SEEDS + MODELS]
    assert sorted(n for n in tasks if n in SEEDS + MODELS) == sorted(SEEDS + MODELS)
    assert len(tests) == 11 and "unique_stg_orders_order_id" in tests
    # upstream from depends_on.nodes; a test after its model
    assert tasks["stg_orders"].upstream == ("raw_orders",)
    assert tasks["not_null_stg_orders_order_id"].upstream == ("stg_orders",)
    # as `dbt build` orders them: a model after its parents and their tests
    assert set(tasks["daily_revenue"].upstream) == {
        "int_order_payments",
        "unique_int_order_payments_order_id",
    }
    assert "accepted_values_stg_orders_status__placed__shipped__completed__returned" in (
        tasks["int_order_payments"].upstream
    )
    # each model, seed (a relation) an asset; tests none
    assert tasks["customer_revenue"].produces == ("shop.customer_revenue",)
    assert tasks["raw_orders"].produces == ("shop.raw_orders",)
    assert tasks["unique_stg_orders_order_id"].produces == ()
    config = tasks["stg_orders"].config()
    assert config == {"project_dir": str(parsed_project), "node": "model.dbt_shop.stg_orders"}
    # the project as refs: a node's task, its roots and leaves
    assert shop["stg_orders"].name == "stg_orders"
    assert shop["model.dbt_shop.daily_revenue"].name == "daily_revenue"
    assert {r.name for r in shop.roots} == set(SEEDS)
    assert {leaf.name for leaf in shop.leaves} == {
        "unique_customer_revenue_customer_id",
        "not_null_customer_revenue_customer_id",
        "unique_daily_revenue_order_date",
    }
    # parents first, in layers
    order = [t.name for t in spec.tasks]
    assert order[:3] == sorted(order[:3]) or set(order[:3]) == set(SEEDS)


def test_selection_forms(parsed_project: Path) -> None:
    def names(**kw: Any) -> list[str]:
        return [t.name for t in expand(parsed_project, **kw).tasks]

    assert names(select="daily_revenue") == ["daily_revenue", "unique_daily_revenue_order_date"]
    assert set(names(select=["tag:mart"])) == {
        "customer_revenue",
        "daily_revenue",
        "unique_customer_revenue_customer_id",
        "not_null_customer_revenue_customer_id",
        "unique_daily_revenue_order_date",
    }
    staging = names(select="path:models/staging", exclude="resource_type:test")
    assert sorted(staging) == ["stg_customers", "stg_orders", "stg_payments"]
    assert set(names(select="+stg_orders")) == {
        "raw_orders",
        "stg_orders",
        "unique_stg_orders_order_id",
        "not_null_stg_orders_order_id",
        "accepted_values_stg_orders_status__placed__shipped__completed__returned",
    }
    down = names(select="int_order_payments+", exclude="resource_type:test")
    assert sorted(down) == ["customer_revenue", "daily_revenue", "int_order_payments"]
    assert names(select="resource_type:seed") == SEEDS or sorted(
        names(select="resource_type:seed")
    ) == sorted(SEEDS)
    # a selection's upstream stays within it: the marts alone wait for nothing
    alone = {t.name: t.upstream for t in expand(parsed_project, select="tag:mart").tasks}
    assert alone["daily_revenue"] == ()


def test_the_example_workflows_load_in_yaml_and_python(
    parsed_project: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "workflows"
    shutil.copytree(EXAMPLE / "workflows", folder)
    # the examples point at the project beside them
    (tmp_path / "dbt_shop").symlink_to(parsed_project)
    for file in folder.iterdir():
        file.write_text(file.read_text().replace('"..",', '"../dbt_shop",'))
    (folder / "dbt_shop.yaml").write_text(
        (folder / "dbt_shop.yaml")
        .read_text()
        .replace("project_dir: ..", "project_dir: ../dbt_shop")
    )
    registry = load_workflows(folder)
    yaml_spec = registry.get("dbt_shop").spec
    py_spec = registry.get("dbt_shop_marts").spec
    assert registry.get("shop_dashboard").spec.on_assets == ("shop.customer_revenue",)
    nodes = [t.name for t in yaml_spec.tasks if t.kind == "dbt"]
    assert len(nodes) == 20
    assert set(yaml_spec.task("report").upstream) == {
        "unique_customer_revenue_customer_id",
        "not_null_customer_revenue_customer_id",
        "unique_daily_revenue_order_date",
    }
    assert yaml_spec.task("stg_orders").retry.max_attempts == 2
    assert py_spec.task("announce").upstream == ("daily_revenue",)
    # "+tag:mart": the marts and all they read
    assert {t.name for t in py_spec.tasks if t.kind == "dbt"} == set(nodes)
    # `durable show` prints what loads back to the same version
    from durable.workflows.yaml import load_yaml_spec, spec_to_yaml

    shown = tmp_path / "shown.yaml"
    shown.write_text(spec_to_yaml(yaml_spec))
    assert load_yaml_spec(shown).version == yaml_spec.version


# -- watched mode ----------------------------------------------------------------------


async def test_watched_mode_one_build_each_node_its_own_events(
    pg_store: PostgresEventStore, shop: Path, warehouse: str
) -> None:
    wf = Workflow("shop")
    wf.dbt(shop, mode="watched")
    consumer = Workflow("dashboard", on_assets=["shop.customer_revenue"])
    consumer.sql("refresh", "SELECT count(*) AS customers FROM shop.customer_revenue")
    registry = registry_of(wf, consumer)
    async with running_executor(pg_store, registry):
        run_id, _ = await create_run(pg_store, wf.spec(), {})
        state = await wait_for_run(pg_store, run_id, timeout=RUN_TIMEOUT)
        assert state.status == "succeeded", {
            n: (t.status, t.error) for n, t in state.tasks.items() if t.status != "succeeded"
        }
        # each node: its own task_started and task_succeeded, upstream before downstream
        events = await history(pg_store, run_id)
        started = [e.task for e in events if isinstance(e, TaskStarted)]
        done = [e for e in events if isinstance(e, TaskSucceeded)]
        assert sorted(started) == sorted(state.tasks) == sorted(e.task for e in done)
        position = {e.task: i for i, e in enumerate(done)}
        for t in wf.spec().tasks:
            for u in t.upstream:
                assert position[u] < position[t.name], (u, t.name)
        # what dbt reported of each node
        assert state.tasks["stg_orders"].output["status"] == "success"
        assert state.tasks["raw_orders"].output["rows_affected"] == 10
        assert state.tasks["unique_stg_orders_order_id"].output["status"] == "pass"
        # all of it one dbt build, started by the first seed to come
        pids = set()
        for name in state.tasks:
            lines = await task_log(pg_store, run_id, name)
            follows = [x for x in lines if x.startswith("following dbt build (pid ")]
            assert follows, (name, lines)
            pids.add(follows[0].split("(pid ")[1].split(")")[0])
        assert len(pids) == 1
        launched = [
            x
            for name in SEEDS
            for x in await task_log(pg_store, run_id, name)
            if x.startswith("dbt build (pid ")
        ]
        assert len(launched) == 1 and " of 20 nodes: " in launched[0]
        # each node's own lines in its own log
        mart = await task_log(pg_store, run_id, "customer_revenue")
        assert any("OK created sql table model shop.customer_revenue" in x for x in mart)
        assert not any("stg_orders" in x and "OK created" in x for x in mart)
        # the models are assets: recorded by their tasks' completions, and they trigger
        assets = {a for e in done for a in e.assets}
        assert assets == {f"shop.{n}" for n in SEEDS + MODELS}
        service = AssetService(pg_store, registry)
        await service.catch_up()
        recorded = {a.asset: a for a in await pg_store.tracking.assets()}
        assert recorded["shop.customer_revenue"].task == "customer_revenue"
        consumers = await pg_store.list_runs(RunFilter(workflow="dashboard"))
        assert len(consumers) == 1
        refreshed = await wait_for_run(pg_store, consumers[0].run_id)
        assert refreshed.tasks["refresh"].output["rows"] == [{"customers": 6}]


async def test_a_failed_model_fixed_and_rerun_alone(
    pg_store: PostgresEventStore, database_url: str, shop: Path, warehouse: str
) -> None:
    model = shop / "models" / "marts" / "daily_revenue.sql"
    good = model.read_text()
    model.write_text(good.replace("sum(amount_eur)", "sum(amount_eurx)"))
    wf = Workflow("shop")
    wf.dbt(shop, mode="watched")
    async with running_executor(pg_store, registry_of(wf)):
        run_id, _ = await create_run(pg_store, wf.spec(), {})
        failed = await wait_for_run(pg_store, run_id, timeout=RUN_TIMEOUT)
        assert failed.status == "failed"
        error = failed.tasks["daily_revenue"].error
        assert error is not None and error.type == "DbtError"
        assert 'column "amount_eurx" does not exist' in error.message
        assert "daily_revenue" in error.message
        assert failed.tasks["unique_daily_revenue_order_date"].status == "skipped"
        assert failed.tasks["customer_revenue"].status == "succeeded"  # the other branch
        log = await task_log(pg_store, run_id, "daily_revenue")
        assert any("ERROR creating sql table model shop.daily_revenue" in x for x in log)

        model.write_text(good)  # fixed
        result = await asyncio.to_thread(
            cli, database_url, "rerun", run_id, "daily_revenue", "--downstream", "--wait"
        )
        assert result.exit_code == 0, result.output
    state = await wait_for_run(pg_store, run_id)
    assert state.status == "succeeded"
    again = {n for n, t in state.tasks.items() if t.generation == 2}
    assert again == {"daily_revenue", "unique_daily_revenue_order_date"}
    assert {n: t.executions for n, t in state.tasks.items() if t.executions != 1} == {
        "daily_revenue": 2
    }
    # the rerun's one build selected just those two nodes (dbt's --select)
    lines = [
        line.message
        for line in await pg_store.logs.read(run_id, "daily_revenue")
        if line.generation == 2
    ]
    built = [x for x in lines if x.startswith("dbt build (pid ")]
    assert len(built) == 1 and built[0].endswith(
        "of 2 nodes: daily_revenue, unique_daily_revenue_order_date"
    ), lines
    assert any("1 of 2 OK created sql table model shop.daily_revenue" in x for x in lines)
    started = [
        (e.task, e.generation)
        for e in await history(pg_store, run_id)
        if isinstance(e, TaskStarted)
    ]
    assert started[-2:] == [("daily_revenue", 2), ("unique_daily_revenue_order_date", 2)]


# -- a project with more to it: a flaky model, a slow one, a broken one -----------------

EXTRA = {
    "flaky.sql": "{{ config(materialized='table') }}\n"
    "select 1 / (nextval('public.flaky_attempts') - 1) as x\n",  # fails the first time
    "flaky_child.sql": "select x from {{ ref('flaky') }}\n",
    "slow.sql": "{{ config(materialized='table') }}\nselect 1 as x from pg_sleep(600)\n",
    "broken.sql": "selec 1 as x\n",
    "of_the_day.sql": "{{ config(materialized='table') }}\n"
    'select \'{{ var("day", "unset") }}\'::text as day\n',
}


@pytest.fixture(scope="module")
def extended_project(parsed_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = tmp_path_factory.mktemp("dbt-extra") / "dbt_shop"
    shutil.copytree(parsed_project, project, copy_function=shutil.copy2)
    (project / "models" / "extra").mkdir()
    for name, sql in EXTRA.items():
        (project / "models" / "extra" / name).write_text(sql)
    expand(project, select="path:models/extra")  # parses again: the project changed
    return project


async def test_a_retry_builds_the_failed_node_and_what_waits_on_it(
    pg_store: PostgresEventStore, database_url: str, extended_project: Path, warehouse: str
) -> None:
    import asyncpg

    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("CREATE SEQUENCE public.flaky_attempts")
    finally:
        await conn.close()
    wf = Workflow("flaky")
    wf.dbt(extended_project, select=["raw_customers", "flaky+"], retries=1)
    async with running_executor(pg_store, registry_of(wf)):
        run_id, _ = await create_run(pg_store, wf.spec(), {})
        state = await wait_for_run(pg_store, run_id, timeout=RUN_TIMEOUT)
    assert state.status == "succeeded", [(n, t.status, t.error) for n, t in state.tasks.items()]
    assert state.tasks["flaky"].attempt == 2 and state.tasks["flaky_child"].attempt == 1
    logs = await pg_store.logs.read(run_id, "flaky")
    first = [x.message for x in logs if x.attempt == 1]
    second = [x.message for x in logs if x.attempt == 2]
    assert any("division by zero" in x for x in first)
    built = [x for x in second if x.startswith("dbt build (pid ")]
    assert len(built) == 1 and built[0].endswith("of 2 nodes: flaky, flaky_child"), second
    events = await history(pg_store, run_id)
    failures = [e for e in events if isinstance(e, TaskFailed)]
    assert failures == []  # the first failure was retried, not final


async def test_cancelling_the_run_stops_its_build(
    pg_store: PostgresEventStore, database_url: str, extended_project: Path, warehouse: str
) -> None:
    from tests.processes import alive

    wf = Workflow("slow")
    wf.dbt(extended_project, select=["slow", "raw_customers"])
    async with running_executor(pg_store, registry_of(wf)):
        run_id, _ = await create_run(pg_store, wf.spec(), {})
        pid: list[int] = []

        async def building() -> bool:
            lines = await task_log(pg_store, run_id, "slow")
            follows = [x for x in lines if x.startswith("following dbt build (pid ")]
            if follows and not pid:
                pid.append(int(follows[0].split("(pid ")[1].split(")")[0]))
            state = fold(await pg_store.read_stream(run_stream(run_id)))
            seeded = state is not None and state.tasks["raw_customers"].status == "succeeded"
            return seeded and any("START sql table model shop.slow" in x for x in lines)

        await eventually(building, "dbt started building the slow model", timeout=RUN_TIMEOUT)
        # the seed's success is in the log while its build still runs: followed live
        assert alive(pid[0])
        result = await asyncio.to_thread(cli, database_url, "cancel", run_id)
        assert result.exit_code == 0, result.output
        await eventually(lambda: _gone(pid[0]), "the dbt build was stopped", timeout=30)
        state = await wait_for_run(pg_store, run_id)
    assert state.status == "cancelled"
    assert any(isinstance(e, RunCancelled) for e in await history(pg_store, run_id))


async def _gone(pid: int) -> bool:
    from tests.processes import alive

    return not alive(pid)


# -- node mode -------------------------------------------------------------------------


async def test_node_mode_one_dbt_call_per_node(
    pg_store: PostgresEventStore, extended_project: Path, warehouse: str
) -> None:
    wf = Workflow("per_node")
    wf.dbt(extended_project, select=["+stg_orders", "broken"], mode="node")
    async with running_executor(pg_store, registry_of(wf)):
        run_id, _ = await create_run(pg_store, wf.spec(), {})
        state = await wait_for_run(pg_store, run_id, timeout=RUN_TIMEOUT)
    assert state.status == "failed"  # broken
    error = state.tasks["broken"].error
    assert error is not None and 'syntax error at or near "selec"' in error.message
    ok = [n for n, t in state.tasks.items() if t.status == "succeeded"]
    assert sorted(ok) == sorted(
        [
            "raw_orders",
            "stg_orders",
            "unique_stg_orders_order_id",
            "not_null_stg_orders_order_id",
            "accepted_values_stg_orders_status__placed__shipped__completed__returned",
        ]
    )
    pids = set()
    for name in ok:
        lines = await task_log(pg_store, run_id, name)
        calls = [x for x in lines if x.startswith("dbt build (pid ")]
        assert len(calls) == 1, lines
        pids.add(calls[0])
        assert any(x.startswith("Done. PASS=1 ") for x in lines), lines  # its call alone
    assert len(pids) == len(ok)
    assert state.tasks["stg_orders"].output["status"] == "success"


# -- bad input -------------------------------------------------------------------------


def _yaml(folder: Path, project: Path, dbt: str) -> Path:
    folder.mkdir(exist_ok=True)
    file = folder / "flow.yaml"
    file.write_text(
        f"workflow: flow\ntasks:\n  first:\n    noop: null\n  shop:\n    dbt: {dbt}\n"
        f"    after: [first]\n"
    )
    (folder / "p").symlink_to(project)
    return file


def test_a_project_that_does_not_parse_is_refused_at_load(
    parsed_project: Path, tmp_path: Path
) -> None:
    project = tmp_path / "dbt_shop"
    shutil.copytree(parsed_project, project, copy_function=shutil.copy2)
    (project / "models" / "oops.sql").write_text("select * from {{ ref('no_such_model') }}\n")
    file = _yaml(tmp_path / "flows", project, "{project_dir: p}")
    result = subprocess.run(
        [sys.executable, "-m", "durable", "show", "flow", "--workflows", str(file)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**__import__("os").environ, "DURABLE_HOME": str(tmp_path / ".durable")},
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert f"{file}:6: dbt 'shop': the dbt project " in result.stderr
    assert "does not parse" in result.stderr
    assert "depends on a node named 'no_such_model' which was not found" in result.stderr
    assert "dbt parse --project-dir" in result.stderr  # the hint


@pytest.mark.parametrize(
    ("dbt", "problem"),
    [
        (
            "{project_dir: p, select: [tag:mart, tag:nope]}",
            "dbt 'shop': select 'tag:nope' matches no node of the dbt project 'dbt_shop'",
        ),
        (
            "{project_dir: p, select: 'nope+'}",
            "dbt 'shop': select 'nope+' matches no node of the dbt project 'dbt_shop'",
        ),
        (
            "{project_dir: p, select: 'state:modified'}",
            "dbt 'shop': select 'state:modified': unknown selector method 'state'",
        ),
        (
            "{project_dir: p, exclude: [tag:nope]}",
            "dbt 'shop': exclude 'tag:nope' matches no node",
        ),
        (
            "{project_dir: p, mode: fast}",
            "dbt 'shop': mode must be 'node' or 'watched', not 'fast'",
        ),
        ("{project_dir: p, threads: 4}", "dbt 'shop': unknown option 'threads'"),
        ("{project_dir: p/models}", "dbt 'shop': project_dir '"),
        ("{mode: node}", "dbt 'shop' needs project_dir"),
    ],
)
def test_bad_dbt_entries_are_refused_naming_the_option(
    parsed_project: Path, tmp_path: Path, dbt: str, problem: str
) -> None:
    file = _yaml(tmp_path / "flows", parsed_project, dbt)
    with pytest.raises(DefinitionError) as caught:
        load_workflows(file)
    assert str(caught.value).startswith(f"{file}:6: "), str(caught.value)
    assert problem in str(caught.value)


def test_bad_selection_in_python_names_the_workflow(parsed_project: Path) -> None:
    wf = Workflow("shop_py")
    with pytest.raises(DefinitionError) as caught:
        wf.dbt(parsed_project, select=["stg_orders", "stg_nope"], name="warehouse")
    assert str(caught.value).startswith(
        "workflow 'shop_py': dbt 'warehouse': select 'stg_nope' matches no node of the dbt "
        "project 'dbt_shop'"
    )
    assert "its models: " in str(caught.value)  # the hint


async def test_vars_take_the_runs_params(
    pg_store: PostgresEventStore, database_url: str, extended_project: Path, warehouse: str
) -> None:
    import asyncpg

    from durable import Param

    wf = Workflow("daily", params={"day": Param("date", required=True)})
    wf.dbt(extended_project, select="of_the_day", vars={"day": "${params.day}"})
    async with running_executor(pg_store, registry_of(wf)):
        run_id, _ = await create_run(pg_store, wf.spec(), {"day": "2026-11-23"})
        state = await wait_for_run(pg_store, run_id, timeout=RUN_TIMEOUT)
    assert state.status == "succeeded", state.tasks["of_the_day"].error
    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.fetchval("SELECT day FROM shop.of_the_day") == "2026-11-23"
    finally:
        await conn.close()

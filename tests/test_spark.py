"""Spark tasks with real Spark: ``spark-submit`` of the installed ``pyspark``, the machine's
JDK, ``local[1]``.

The example job (examples/spark) writes a date's orders as Parquet partitioned by date; a
SIGKILL of the executor while it runs leaves it running, a new executor follows the same
process (one driver launch for the attempt), and each line of its output reaches the task
log once; the same date run again leaves no duplicates. A failing job fails its task with
its exit code and last lines; a cancelled run stops the job's processes; spark-submit or
Java missing is named at load time and fails the task without retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from durable.application.commands import apply_command
from durable.application.runs import create_run
from durable.core.commands import Cancel
from durable.core.events import TaskStarted, TaskWaiting, Trigger, run_stream
from durable.core.fold import fold
from durable.core.spec import DefinitionError
from durable.core.state import RunState
from durable.core.tasks import SparkTask, task_spec
from durable.runtime.tasks import Resources
from durable.runtime.tasks.spark import SparkWaiter, check_workflow
from durable.store import PostgresEventStore
from durable.workflows import Param, Workflow, load_workflows
from durable.workflows.context import TaskContext, TaskLog
from tests.executing import registry_of, running_executor, wait_for_run
from tests.processes import alive, free_port

if importlib.util.find_spec("pyspark") is None:
    pytest.skip(
        'pyspark is not installed: pip install "pyspark[connect]==4.3.0" "pandas<3" '
        "(and a JDK 17: apt-get install openjdk-17-jre-headless)",
        allow_module_level=True,
    )

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "spark"
JOB = EXAMPLES / "jobs" / "sales_to_parquet.py"
DATE = "2026-11-19"
ROWS_OF_DATE = sum(1 for line in (EXAMPLES / "orders.csv").read_text().splitlines() if DATE in line)
QUICK = {
    "spark.ui.enabled": "false",
    "spark.sql.shuffle.partitions": "1",
    "spark.driver.memory": "512m",
}

# the example job, counting its driver's launches in $LAUNCHES
COUNTING_JOB = f"""
import os, runpy, sys
with open(os.environ["LAUNCHES"], "a") as f:
    f.write(f"{{os.getpid()}}\\n")
sys.argv[0] = {str(JOB)!r}
runpy.run_path({str(JOB)!r}, run_name="__main__")
"""

CRASH_WORKFLOW = """
from durable import Param, Workflow
wf = Workflow("spark_crash", params={{"date": Param("date", required=True)}})
wf.spark(
    "load_orders",
    {job!r},
    args=["--input", {input!r}, "--output", {output!r}, "--date", "${{params.date}}"],
    master="local[1]",
    conf={conf!r},
    env={{"LAUNCHES": {launches!r}}},
    retries=2,
)
"""


@pytest.fixture(autouse=True)
def spark_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Spark on the loopback address; the attempts' folders in the test's folder."""
    work = tmp_path / "spark-work"
    monkeypatch.setenv("SPARK_LOCAL_IP", "127.0.0.1")
    monkeypatch.setenv("DURABLE_SPARK_DIR", str(work))
    yield work


def _executor(database_url: str, workflows: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "durable",
            "--database-url",
            database_url,
            "up",
            "--no-http",
            "--workflows",
            str(workflows),
            "--lease",
            "2",
        ],
        env=dict(os.environ),  # SPARK_LOCAL_IP, DURABLE_SPARK_DIR
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def _until(
    store: PostgresEventStore, run_id: str, check: Any, what: str, timeout: float = 120
) -> RunState:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        state = fold(await store.read_stream(run_stream(run_id)))
        if state is not None and check(state):
            return state
        await asyncio.sleep(0.1)
    raise AssertionError(f"no sign within {timeout:g} s that {what}")


def _rows_by_date(dataset: Path) -> dict[str, list[int]]:
    import pyarrow.dataset as ds

    table = ds.dataset(dataset, format="parquet", partitioning="hive").to_table()
    by_date: dict[str, list[int]] = {}
    for date, order in zip(
        table.column("date").to_pylist(), table.column("order_id").to_pylist(), strict=True
    ):
        by_date.setdefault(str(date), []).append(order)
    return by_date


async def _output_lines(store: PostgresEventStore, run_id: str, task: str) -> list[str]:
    return [line.message for line in await store.logs.read(run_id, task) if line.stream == "output"]


async def test_sigkill_mid_job_reattaches_and_a_rerun_of_the_date_duplicates_nothing(
    pg_store: PostgresEventStore,
    database_url: str,
    tmp_path: Path,
    spark_env: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    output = tmp_path / "sales_parquet"
    other_day = output / "date=2026-11-18"  # another date's partition, already there
    other_day.mkdir(parents=True)
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(
        pa.table({"order_id": [900, 901], "region": ["eu", "us"], "amount_eur": [1.0, 2.0]}),
        other_day / "part-0.parquet",
    )
    launches = tmp_path / "launches"
    job = tmp_path / "jobs" / "counting_job.py"
    job.parent.mkdir()
    job.write_text(COUNTING_JOB)
    workflows = tmp_path / "workflows"
    workflows.mkdir()
    (workflows / "spark_crash.py").write_text(
        CRASH_WORKFLOW.format(
            job=str(job),
            input=str(EXAMPLES / "orders.csv"),
            output=str(output),
            conf=QUICK,
            launches=str(launches),
        )
    )
    spec = load_workflows(workflows).get("spark_crash").spec
    run_id, _ = await create_run(pg_store, spec, {"date": DATE})

    first = _executor(database_url, workflows)
    try:
        waiting = await _until(
            pg_store,
            run_id,
            lambda s: s.tasks["load_orders"].job is not None,
            "the submission was recorded",
        )
        for _ in range(600):  # the driver runs (Spark is starting inside it), and its
            # first lines are stored: the next executor must not store them again
            stored = await _output_lines(pg_store, run_id, "load_orders")
            if launches.exists() and launches.read_text().strip() and len(stored) >= 2:
                break
            await asyncio.sleep(0.1)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    job_record = waiting.tasks["load_orders"].job
    assert job_record is not None
    assert alive(job_record["pid"]), "the Spark job died with its executor"
    assert not (Path(job_record["dir"]) / "exit").exists()  # killed mid-job
    assert len(stored) >= 2 and stored[0].startswith("$ ")

    second = _executor(database_url, workflows)
    try:
        done = await wait_for_run(pg_store, run_id, timeout=300)
    finally:
        second.terminate()
        second.wait(20)
    task = done.tasks["load_orders"]
    assert done.status == "succeeded", task.error
    assert task.output == {"date": DATE, "rows": ROWS_OF_DATE, "path": str(output / f"date={DATE}")}
    events = [r.event for r in await pg_store.read_stream(run_stream(run_id))]
    assert [e.attempt for e in events if isinstance(e, TaskStarted)] == [1]
    assert len([e for e in events if isinstance(e, TaskWaiting)]) == 1
    assert len(launches.read_text().split()) == 1, "a second driver ran for the attempt"
    assert [p.name for p in (spark_env / run_id / "load_orders").iterdir()] == ["1-1"]
    # the output reached the log once, in order, across the two executors
    out = (Path(job_record["dir"]) / "output").read_text().splitlines()
    assert await _output_lines(pg_store, run_id, "load_orders") == out
    assert any(f"wrote {ROWS_OF_DATE} orders of {DATE}" in line for line in out)
    logged = [line.message for line in await pg_store.logs.read(run_id, "load_orders")]
    assert any(m.startswith("spark application local-") for m in logged), logged[-3:]
    first_rows = _rows_by_date(output)
    assert len(first_rows[DATE]) == ROWS_OF_DATE

    # the same date again, by the YAML example (in this process): no duplicates
    monkeypatch.chdir(ROOT)  # its paths are relative to the repository's root
    registry = load_workflows(EXAMPLES / "spark_sales.yaml")
    yaml_spec = registry.get("spark_sales_yaml").spec
    async with running_executor(pg_store, registry):
        again, _ = await create_run(
            pg_store, yaml_spec, {"date": DATE, "output": str(output), "master": "local[1]"}
        )
        rerun = await wait_for_run(pg_store, again, timeout=300)
    assert rerun.status == "succeeded", rerun.tasks["load_orders"].error
    assert rerun.tasks["report"].output["stdout"] == [
        f"{ROWS_OF_DATE} orders of {DATE} in {output / f'date={DATE}'}"
    ]
    rows = _rows_by_date(output)
    assert sorted(rows[DATE]) == sorted(first_rows[DATE])  # replaced, not appended
    assert len(set(rows[DATE])) == ROWS_OF_DATE
    assert sorted(rows["2026-11-18"]) == [900, 901]  # other dates untouched


async def test_a_failing_job_fails_with_its_exit_code_and_last_lines(
    pg_store: PostgresEventStore, tmp_path: Path
) -> None:
    app = tmp_path / "failing.py"
    app.write_text(
        "import os, sys\n"
        "print('args', sys.argv[1:], flush=True)\n"
        "for k in ('DURABLE_TASK', 'DURABLE_LOGICAL_DATE', 'DURABLE_DATA_INTERVAL_START',\n"
        "          'DURABLE_DATA_INTERVAL_END', 'DURABLE_IDEMPOTENCY_KEY', 'REGION'):\n"
        "    print(k, os.environ[k], flush=True)\n"
        "for i in range(30):\n"
        "    print(f'step {i}', flush=True)\n"
        "print('no such table: sales', file=sys.stderr, flush=True)\n"
        "sys.exit(3)\n"
    )
    wf = Workflow("spark_fails", params={"region": Param(default="eu")})
    wf.spark(
        "job",
        str(app),
        args=["--date", "${logical_date}", "--region", "${params.region}"],
        env={"REGION": "${params.region}"},
        master="local[1]",
        conf=QUICK,
    )
    day = datetime(2026, 11, 19, tzinfo=UTC)
    trigger = Trigger(
        kind="schedule",
        logical_time=day,
        data_interval_start=day,
        data_interval_end=day + timedelta(days=1),
    )
    async with running_executor(pg_store, registry_of(wf)):
        run_id, _ = await create_run(pg_store, wf.spec(), {"region": "us"}, trigger=trigger)
        state = await wait_for_run(pg_store, run_id, timeout=120)
    task = state.tasks["job"]
    assert state.status == "failed" and task.status == "failed"
    assert task.error is not None and task.error.type == "SparkError"
    assert task.error.message.startswith("spark-submit exited with 3; last lines:")
    assert "no such table: sales" in task.error.message
    lines = await _output_lines(pg_store, run_id, "job")
    assert lines[0].startswith("$ ") and "spark-submit" in lines[0]
    assert [f"step {i}" for i in range(30)] == [m for m in lines if m.startswith("step ")]
    assert "args ['--date', '2026-11-19', '--region', 'us']" in lines
    for line in (
        "DURABLE_TASK job",
        "DURABLE_LOGICAL_DATE 2026-11-19",
        "DURABLE_DATA_INTERVAL_START 2026-11-19T00:00:00+00:00",
        "DURABLE_DATA_INTERVAL_END 2026-11-20T00:00:00+00:00",
        f"DURABLE_IDEMPOTENCY_KEY {run_id}/job/1",
        "REGION us",
    ):
        assert line in lines


async def test_cancelling_the_run_stops_the_job(
    pg_store: PostgresEventStore, tmp_path: Path
) -> None:
    pid_file = tmp_path / "driver.pid"
    app = tmp_path / "sleeping.py"
    app.write_text(
        "import os, time\n"
        f"open({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
        "print('sleeping', flush=True)\n"
        "time.sleep(600)\n"
    )
    wf = Workflow("spark_sleeps")
    wf.spark("job", str(app), master="local[1]", conf=QUICK)
    async with running_executor(pg_store, registry_of(wf)):
        run_id, _ = await create_run(pg_store, wf.spec(), {})
        waiting = await _until(
            pg_store, run_id, lambda s: s.tasks["job"].job is not None, "it was submitted"
        )
        for _ in range(600):
            if "sleeping" in await _output_lines(pg_store, run_id, "job"):
                break
            await asyncio.sleep(0.1)
        driver = int(pid_file.read_text())
        await apply_command(pg_store, run_id, Cancel(reason="wrong day"))
        state = await wait_for_run(pg_store, run_id)
        job = waiting.tasks["job"].job
        assert job is not None
        for _ in range(300):  # the executor stops the job after the cancel is recorded
            if not alive(driver) and not alive(job["pid"]):
                break
            await asyncio.sleep(0.05)
    assert state.status == "cancelled"
    assert not alive(driver), "the driver kept running after cancel"
    assert not alive(job["pid"]), "spark-submit's wrapper kept running after cancel"


def _context(attempt: int, log: TaskLog) -> TaskContext:
    return TaskContext(
        run_id="01SPARKSUBMITTWICE",
        workflow="w",
        task="job",
        attempt=attempt,
        generation=1,
        params={},
        upstream={},
        logical_time=None,
        data_interval_start=None,
        data_interval_end=None,
        log=log,
    )


async def test_an_attempt_launches_once_and_a_new_attempt_stops_the_old_one(
    tmp_path: Path, spark_env: Path
) -> None:
    """submit again for an attempt that launched (its job not recorded) follows that
    launch; the next attempt stops a launch nobody follows before starting its own."""
    app = tmp_path / "sleeping.py"
    app.write_text("import time\ntime.sleep(600)\n")
    spec = task_spec("spark", {"application": str(app), "master": "local[1]"}, name="job")
    assert isinstance(spec, SparkTask)
    waiter = SparkWaiter()
    resources = Resources(lambda: None)
    try:
        first = await waiter.submit(spec, _context(1, TaskLog()), resources)
        again = await waiter.submit(spec, _context(1, TaskLog()), resources)
        assert again.job == first.job  # the same process: no second spark-submit
        folder = Path(first.job["dir"])
        assert folder == spark_env / "01SPARKSUBMITTWICE" / "job" / "1-1"
        assert (folder / "output").read_text().count("$ ") == 1
        assert alive(first.job["pid"])

        second = await waiter.submit(spec, _context(2, TaskLog()), resources)
        assert not alive(first.job["pid"]), "attempt 1's spark-submit still runs"
        assert alive(second.job["pid"])
        assert (
            (Path(second.job["dir"]) / "output")
            .read_text()
            .startswith(f"durable: stopped spark-submit {first.job['pid']} of attempt 1-1\n$ ")
        )
        await waiter.cancel(spec, second.job, _context(2, TaskLog()), resources)
        assert not alive(second.job["pid"])
    finally:
        await resources.close()


async def test_missing_spark_submit_or_java_is_named_at_load_and_fails_without_retry(
    pg_store: PostgresEventStore, tmp_path: Path
) -> None:
    wf = Workflow("spark_setup")
    wf.spark("job", "app.py", spark_submit="/opt/nowhere/spark-submit", retries=3)
    with pytest.raises(DefinitionError) as caught:
        check_workflow(wf.spec())
    assert str(caught.value).startswith(
        "workflow 'spark_setup': task 'job': spark_submit: '/opt/nowhere/spark-submit' is not "
        "an executable file"
    )

    yaml_file = tmp_path / "nojava.yaml"
    yaml_file.write_text("workflow: nojava\ntasks:\n  load:\n    spark: app.py\n")
    spec = load_workflows(yaml_file).get("nojava").spec
    check_workflow(spec)  # pyspark's spark-submit and the machine's java: fine
    with pytest.raises(DefinitionError) as caught:
        check_workflow(spec, {"PATH": str(tmp_path)})  # no java on this PATH
    assert str(caught.value).startswith(
        f"{yaml_file}: workflow 'nojava': task 'load': no Java for spark-submit"
    )
    assert "JAVA_HOME" in str(caught.value)

    async with running_executor(pg_store, registry_of(wf)):
        run_id, _ = await create_run(pg_store, wf.spec(), {})
        state = await wait_for_run(pg_store, run_id)
    task = state.tasks["job"]
    assert task.status == "failed" and task.attempt == 1  # not retried: it cannot help
    assert task.error is not None and task.error.type == "SparkSetupError"
    assert task.error.message.startswith(
        "spark task 'job': spark_submit: '/opt/nowhere/spark-submit' is not an executable file"
    )


def test_the_examples_define_the_same_spark_task() -> None:
    python = load_workflows(EXAMPLES / "spark_sales.py").get("spark_sales").spec
    yaml = load_workflows(EXAMPLES / "spark_sales.yaml").get("spark_sales_yaml").spec
    for spec in (python, yaml):
        check_workflow(spec)
    a, b = python.task("load_orders"), yaml.task("load_orders")
    assert isinstance(a, SparkTask) and isinstance(b, SparkTask)
    assert (a.args, a.conf, a.master, a.retry, a.timeout) == (
        b.args,
        b.conf,
        b.master,
        b.retry,
        b.timeout,
    )
    assert Path(a.application) == ROOT / b.application


HELLO = """
public class Hello {
  public static void main(String[] args) throws Exception {
    System.out.println("hello from the driver");
    Thread.sleep(Long.parseLong(args[0]));
    if (args.length > 1) System.exit(Integer.parseInt(args[1]));
  }
}
"""


@pytest.fixture
def standalone(tmp_path: Path) -> Iterator[str]:
    """A Spark standalone master (its REST server on) and one worker, from pyspark's jars;
    yields the master's REST URL (``spark://127.0.0.1:<port>``)."""
    import pyspark

    spark_home = Path(pyspark.__file__).parent
    rpc, rest, ui, worker_ui = (str(free_port()) for _ in range(4))
    conf = tmp_path / "master.conf"
    conf.write_text(
        f"spark.master.rest.enabled true\nspark.master.rest.port {rest}\n"
        "spark.master.rest.host 127.0.0.1\n"
    )
    env = {**os.environ, "SPARK_HOME": str(spark_home), "SPARK_LOCAL_IP": "127.0.0.1"}
    spark_class = str(spark_home / "bin" / "spark-class")
    logs = tmp_path / "worker.log"
    processes = [
        subprocess.Popen(
            [spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
             "--port", rpc, "--webui-port", ui, "--properties-file", str(conf)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        ),
        subprocess.Popen(
            [spark_class, "org.apache.spark.deploy.worker.Worker", f"spark://127.0.0.1:{rpc}",
             "--host", "127.0.0.1", "--webui-port", worker_ui, "--cores", "4", "--memory", "4g",
             "--work-dir", str(tmp_path / "worker")],
            env=env, stdout=subprocess.DEVNULL, stderr=logs.open("w"),
            start_new_session=True,  # the drivers it starts are in its group: stopped with it
        ),
    ]  # fmt: skip
    try:
        for _ in range(1200):
            if "Successfully registered with master" in logs.read_text(errors="replace"):
                break
            time.sleep(0.1)
        else:
            raise AssertionError("the Spark worker did not register with its master")
        yield f"spark://127.0.0.1:{rest}"
    finally:
        for p in processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait(10)


@pytest.fixture
def hello_jar(tmp_path: Path) -> str:
    """A JAR whose main prints, sleeps ``args[0]`` ms, and exits with ``args[1]``, if given
    (a standalone master runs no Python application in cluster mode)."""
    if shutil.which("javac") is None or shutil.which("jar") is None:
        pytest.skip("needs javac and jar to build a JAR: apt-get install openjdk-17-jdk-headless")
    (tmp_path / "Hello.java").write_text(HELLO)
    subprocess.run(["javac", "Hello.java"], cwd=tmp_path, check=True)
    subprocess.run(["jar", "cf", "hello.jar", "Hello.class"], cwd=tmp_path, check=True)
    return str(tmp_path / "hello.jar")


async def test_cluster_mode_follows_the_driver_at_the_master(
    pg_store: PostgresEventStore, hello_jar: str, standalone: str
) -> None:
    """A driver submitted to a standalone master: its end (finished, failed) from the
    master's REST API; a cancelled run kills it there."""
    jar = hello_jar
    wf = Workflow("spark_cluster")
    common: dict[str, Any] = {
        "main_class": "Hello",
        "master": standalone,
        "deploy_mode": "cluster",
        "conf": {"spark.driver.memory": "512m"},
        "poll_interval": 0.5,
    }
    wf.spark("ok", jar, args=["500"], **common)
    wf.spark("fails", jar, args=["500", "3"], **common)
    wf.spark("long", jar, args=["600000"], **common)

    def ended(s: RunState) -> bool:
        return s.tasks["ok"].status == "succeeded" and s.tasks["fails"].status == "failed"

    async with running_executor(pg_store, registry_of(wf)):
        run_id, _ = await create_run(pg_store, wf.spec(), {})
        state = await _until(pg_store, run_id, ended, "the short drivers ended", timeout=240)
        running = ""
        for _ in range(1200):
            lines = await _output_lines(pg_store, run_id, "long")
            # durable: driver <submission id> is RUNNING
            running = next((m.split()[2] for m in lines if m.endswith(" is RUNNING")), "")
            if running:
                break
            await asyncio.sleep(0.1)
        assert running, lines[-5:]
        await apply_command(pg_store, run_id, Cancel(reason="enough"))
        cancelled = await wait_for_run(pg_store, run_id)
        # the kill goes to the master after the cancel is recorded: still here to send it
        status = await _driver_state(standalone, running, "KILLED")
    assert status == "KILLED"
    assert cancelled.status == "cancelled"
    ok = state.tasks["ok"].output
    assert ok["driver_state"] == "FINISHED" and ok["submission_id"].startswith("driver-")
    error = state.tasks["fails"].error
    assert error is not None and error.type == "SparkError"
    assert error.message.startswith("the driver driver-") and " ended FAILED" in error.message


async def _driver_state(master: str, submission: str, until: str) -> str:
    """The driver's state at the master, once it is ``until`` (or after 30 s)."""
    import aiohttp

    url = master.replace("spark://", "http://") + f"/v1/submissions/status/{submission}"
    state = ""
    async with aiohttp.ClientSession() as session:
        for _ in range(300):
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=10)) as response:
                state = (await response.json(content_type=None))["driverState"]
            if state == until:
                break
            await asyncio.sleep(0.1)
    return state


def test_the_cli_refuses_a_spark_task_it_cannot_run_when_it_loads(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from durable.cli import main

    path = tmp_path / "w.yaml"
    path.write_text(
        "workflow: w\ntasks:\n  job:\n    spark:\n      application: app.py\n"
        "      spark_submit: /opt/nowhere/spark-submit\n"
    )
    result = CliRunner().invoke(main, ["show", "w", "--workflows", str(path)])
    assert result.exit_code == 2, result.output
    assert "workflow 'w': task 'job'" in result.output
    assert "spark_submit: '/opt/nowhere/spark-submit' is not an executable file" in result.output
    assert "Traceback" not in result.output

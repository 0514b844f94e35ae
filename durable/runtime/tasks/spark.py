"""Spark tasks: an application submitted by ``spark-submit``, waited on without a slot.

``spark-submit`` runs detached (:mod:`durable.runtime.tasks.detached`) with its files in
a folder of its own per attempt, ``<work>/<run>/<task>/<generation>-<attempt>/``
(``<work>``: ``$DURABLE_SPARK_DIR``, else ``$DURABLE_HOME/spark``, else
``./.durable/spark``). The job recorded in the log is that folder and the wrapper's
process: an executor that takes the run over follows the same process, whose driver
(local and client mode) keeps running through the crash; a submission for an attempt
whose folder already holds a launch follows it too. Never is a second ``spark-submit``
started for one attempt.

Everything that goes to the task log comes from the folder's ``output`` file, in order:
an executor that opens the attempt's log afresh (a takeover) reads it again from its
start, and the log's line numbers make the lines already stored no-ops.

Standalone cluster mode (``deploy_mode: cluster`` on a ``spark://`` master, whose REST
server must be on: ``spark.master.rest.enabled``) returns once the driver is submitted;
its submission id is then polled at the master's REST API, and killed there on cancel.
YARN and Kubernetes cluster mode wait for the application by default, like client mode.

The job may write its result, as JSON, to the file named by ``$DURABLE_RESULT``: that is
the task's output; otherwise ``{"application_id": ..., "exit_code": 0}``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shutil
import sys
import time
import weakref
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import msgspec
from msgspec import UnsetType

from durable.core.errors import TaskError
from durable.core.spec import DefinitionError, WorkflowSpec
from durable.core.tasks import SparkTask
from durable.runtime.tasks import render
from durable.runtime.tasks.detached import Detached, launch, wait_for_pid
from durable.runtime.tasks.waiting import Done, Pending, Submitted, register
from durable.store.database import DEFAULT_HOME
from durable.workflows.context import TaskContext, TaskLog

if TYPE_CHECKING:
    from durable.runtime.tasks import Resources

__all__ = ["SparkWaiter", "check_workflow", "resolve_spark_submit", "work_root"]

TAIL = 20
"""Lines of the driver's output quoted in a failure."""
_READ = 4 * 1024 * 1024
"""Bytes of output read per poll at most (the rest at the next)."""
_APP_ID = re.compile(r"\b(application_\d+_\d+|app-\d{14}-\d{4}|local-\d{13}|spark-[0-9a-f]{32})\b")
_SUBMISSION = re.compile(r"\b(driver-\d{14}-\d{4})\b")
_STATUS_EVERY = 10.0
"""Seconds between two status requests to a standalone master (cluster mode), unless the
task's ``poll_interval`` says."""


class SparkSetupError(TaskError):
    """spark-submit or Java is missing: a retry cannot help."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False, type="SparkSetupError")


def work_root(environ: dict[str, str] | None = None) -> Path:
    """Where the attempts' folders go."""
    env = os.environ if environ is None else environ
    if env.get("DURABLE_SPARK_DIR"):
        return Path(env["DURABLE_SPARK_DIR"]).expanduser().resolve()
    return (Path(env.get("DURABLE_HOME") or DEFAULT_HOME).expanduser() / "spark").resolve()


def resolve_spark_submit(spec: SparkTask, environ: dict[str, str]) -> tuple[str, str]:
    """The ``spark-submit`` to run and where it came from (for messages): the task's
    ``spark_submit``, else ``$SPARK_HOME/bin/spark-submit``, else the installed
    ``pyspark``'s. Raises :class:`SparkSetupError` naming the field and the fix; also when
    no Java is found (``$JAVA_HOME/bin/java``, else ``java`` on the ``PATH``)."""
    if not isinstance(spec.spark_submit, UnsetType):
        given = os.path.expanduser(spec.spark_submit)
        found = shutil.which(given, path=environ.get("PATH")) if "/" not in given else given
        if not found or not os.access(found, os.X_OK):
            raise SparkSetupError(
                f"spark_submit: {spec.spark_submit!r} is not an executable file "
                "(fix the path, or leave spark_submit out to use $SPARK_HOME or pyspark's)"
            )
        where = "spark_submit"
    elif environ.get("SPARK_HOME"):
        found = os.path.join(environ["SPARK_HOME"], "bin", "spark-submit")
        if not os.access(found, os.X_OK):
            raise SparkSetupError(
                f"$SPARK_HOME is {environ['SPARK_HOME']!r}, which has no bin/spark-submit "
                "(set SPARK_HOME to a Spark installation, or the task's spark_submit)"
            )
        where = "$SPARK_HOME"
    else:
        package = importlib.util.find_spec("pyspark")
        origin = package.origin if package is not None else None
        found = os.path.join(os.path.dirname(origin), "bin", "spark-submit") if origin else ""
        if not found or not os.access(found, os.X_OK):
            raise SparkSetupError(
                "no spark-submit: the task sets no spark_submit, $SPARK_HOME is not set, and "
                f"pyspark is not installed for {sys.executable} "
                '(pip install "pyspark==4.*", or set SPARK_HOME or the task\'s spark_submit)'
            )
        where = "pyspark"
    java = (
        os.path.join(environ["JAVA_HOME"], "bin", "java")
        if environ.get("JAVA_HOME")
        else shutil.which("java", path=environ.get("PATH"))
    )
    if not java or not os.access(java, os.X_OK):
        place = f"$JAVA_HOME ({environ['JAVA_HOME']})" if environ.get("JAVA_HOME") else "PATH"
        raise SparkSetupError(
            f"no Java for spark-submit: no java in {place} (install a JDK 17 or 21, e.g. "
            "apt-get install openjdk-17-jre-headless, or set JAVA_HOME in the task's env)"
        )
    return found, where


def check_workflow(spec: WorkflowSpec, environ: dict[str, str] | None = None) -> None:
    """Check at load time that each Spark task of ``spec`` can find spark-submit and Java
    here; raises :class:`~durable.core.spec.DefinitionError` naming the workflow, the
    task and the field."""
    env = dict(os.environ if environ is None else environ)
    for task in spec.tasks:
        if not isinstance(task, SparkTask):
            continue
        own = {k: v for k, v in (task.env or {}).items() if "${" not in v}
        if "${" in (task.spark_submit or ""):
            continue  # known only when it runs
        try:
            resolve_spark_submit(task, {**env, **own})
        except SparkSetupError as exc:
            source = f"{spec.source}: " if spec.source else ""
            where = f"{source}workflow {spec.name!r}: task {task.name!r}"
            raise DefinitionError(where, exc.message) from None


class _Reading:
    """How far one log of an attempt has read its output."""

    def __init__(self) -> None:
        self.offset = 0
        self.partial = b""
        self.tail: deque[str] = deque(maxlen=TAIL)
        self.app_id: str | None = None
        self.submission: str | None = None
        self.cluster = False  # following a driver submitted to a standalone master
        self.driver_state = ""
        self.next_status = 0.0
        self.finished = False


class SparkWaiter:
    """Submits with ``spark-submit``, follows its process, streams its output."""

    replays_log = True
    """A resumed attempt reads the output file from its start, its lines numbered from 1
    again: the lines stored before are no-ops (the driver does not continue the log's
    numbering after them)."""

    def __init__(self) -> None:
        # per log, not per attempt: a log opened afresh reads the output from its start
        self._readings: weakref.WeakKeyDictionary[TaskLog, _Reading] = weakref.WeakKeyDictionary()

    def interval(self, spec: Any, polls: int) -> float:
        every = 1.0 if isinstance(spec.poll_interval, UnsetType) else float(spec.poll_interval)
        return min(every, 0.5) if polls == 0 else every

    async def submit(self, spec: Any, ctx: TaskContext, resources: Resources) -> Submitted:
        assert isinstance(spec, SparkTask)
        env = _environment(spec, ctx)
        try:
            spark_submit, origin = resolve_spark_submit(spec, env)
        except SparkSetupError as exc:
            raise SparkSetupError(f"spark task {spec.name!r}: {exc.message}") from None
        if origin == "pyspark":
            # its Python workers and driver: this one, which has pyspark
            env.setdefault("PYSPARK_PYTHON", sys.executable)
        folder = attempt_folder(work_root(env), ctx)
        job = {"master": _master(spec, ctx), "deploy_mode": _deploy_mode(spec)}
        if job["master"].startswith("sc://"):
            env["SPARK_REMOTE"] = job["master"]  # the application's session connects there
        try:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "launched").touch(exist_ok=False)
        except FileExistsError:
            # this attempt launched already (its submission was not recorded): follow it
            found = await wait_for_pid(folder, 10.0)
            if found is None:
                raise TaskError(
                    f"this attempt's spark-submit was launched but never started ({folder})"
                ) from None
            return Submitted(job={**found.to_job(), **job}, state="RUNNING")
        except OSError as exc:
            raise TaskError(
                f"spark task {spec.name!r}: cannot create its folder {folder}: {exc} (set "
                "DURABLE_SPARK_DIR, or DURABLE_HOME, to a writable folder)",
                retryable=False,
                type="SparkSetupError",
            ) from None
        env["DURABLE_RESULT"] = str(folder / "result.json")
        command = _command(spec, ctx, spark_submit, job["master"], folder, env)
        await _stop_earlier_attempts(folder)
        try:
            process = await launch(folder, command, env=env)
        except OSError as exc:
            raise TaskError(f"could not start spark-submit: {exc}") from None
        return Submitted(job={**process.to_job(), **job}, state="SUBMITTED")

    async def poll(
        self, spec: Any, job: dict[str, Any], ctx: TaskContext, resources: Resources
    ) -> Pending | Done:
        process = Detached.from_job(job)
        reading = self._readings.setdefault(ctx.log, _Reading())
        if reading.cluster:
            return await self._poll_cluster(spec, job, process, reading, ctx, resources)
        code = process.exit_code()
        if code is None and process.alive():
            _pump(process, reading, ctx.log, final=False)
            return Pending()
        if code is None and process.elsewhere:
            if not process.folder.exists():
                raise TaskError(
                    f"spark-submit runs on {process.host}, and its folder {process.folder} is "
                    "not on this machine: it cannot be followed from here",
                    type="SparkLost",
                )
            _pump(process, reading, ctx.log, final=False)  # a shared folder: wait for `exit`
            return Pending(state=f"running on {process.host}")
        code = process.exit_code()  # it may have ended between the two looks
        _pump(process, reading, ctx.log, final=True)
        if code is None:
            raise TaskError(
                f"spark-submit (pid {process.pid}) is gone without an exit status: killed, or "
                f"its machine restarted{_last_lines(reading)}",
                type="SparkLost",
            )
        if code != 0:
            killed = f" (killed by signal {-code})" if code < 0 else ""
            raise TaskError(
                f"spark-submit exited with {code}{killed}{_last_lines(reading)}", type="SparkError"
            )
        if _standalone_cluster(job) and not _waits_for_app(spec, ctx):
            if reading.submission is None:
                raise TaskError(
                    "spark-submit ended without a submission id (driver-…) in its output"
                    f"{_last_lines(reading)}",
                    type="SparkError",
                )
            reading.cluster = True
            return await self._poll_cluster(spec, job, process, reading, ctx, resources)
        return Done(output=_result(process, reading, ctx.log))

    async def _poll_cluster(
        self,
        spec: Any,
        job: dict[str, Any],
        process: Detached,
        reading: _Reading,
        ctx: TaskContext,
        resources: Resources,
    ) -> Pending | Done:
        """A driver submitted to a standalone master: its state from the REST API."""
        _pump(process, reading, ctx.log, final=True)  # a state noted by an earlier executor
        assert reading.submission is not None
        if time.monotonic() < reading.next_status:
            return Pending()
        every = _STATUS_EVERY if isinstance(spec.poll_interval, UnsetType) else spec.poll_interval
        reading.next_status = time.monotonic() + every
        answer = await _rest(resources, job["master"], f"status/{reading.submission}", "GET")
        if answer.get("success") is False:
            raise TaskError(
                f"the master does not know the driver {reading.submission}: "
                f"{answer.get('message') or answer}",
                type="SparkLost",
            )
        state = str(answer.get("driverState") or "UNKNOWN")
        if state != reading.driver_state:
            _note(process, f"durable: driver {reading.submission} is {state}")
            _pump(process, reading, ctx.log, final=True)
        if state == "FINISHED":
            return Done(output={"submission_id": reading.submission, "driver_state": state})
        if state in ("FAILED", "ERROR", "KILLED"):
            detail = answer.get("message") or ""
            raise TaskError(
                f"the driver {reading.submission} ended {state}"
                + (f": {str(detail)[-500:]}" if detail else ""),
                type="SparkError",
            )
        return Pending()

    async def cancel(
        self, spec: Any, job: dict[str, Any], ctx: TaskContext, resources: Resources
    ) -> None:
        process = Detached.from_job(job)
        await process.stop()
        submission = _submission_in(process) if _standalone_cluster(job) else None
        if submission is not None:
            await _rest(resources, job["master"], f"kill/{submission}", "POST")


def attempt_folder(root: Path, ctx: TaskContext) -> Path:
    """``<root>/<run>/<task>/<generation>-<attempt>`` (the task's name made safe)."""
    task = re.sub(r"[^A-Za-z0-9_.\-\[\]]", "_", ctx.task).lstrip(".") or "_"
    return root / ctx.run_id / task / f"{ctx.generation}-{ctx.attempt}"


async def _stop_earlier_attempts(folder: Path) -> None:
    """An earlier attempt of the task whose spark-submit still runs was lost before its
    submission was recorded: nobody follows it, so it is stopped before this one starts
    (noted at the top of this attempt's output)."""
    for other in folder.parent.iterdir():
        if other == folder or not other.is_dir():
            continue
        found = await wait_for_pid(other, 0.0)
        if found is None or found.exit_code() is not None or not found.alive():
            continue
        await found.stop()
        _note_in(folder, f"durable: stopped spark-submit {found.pid} of attempt {other.name}")


def _environment(spec: SparkTask, ctx: TaskContext) -> dict[str, str]:
    interval = (ctx.data_interval_start, ctx.data_interval_end)
    return {
        **os.environ,
        **({"TRACEPARENT": ctx.traceparent} if ctx.traceparent else {}),
        **render(spec.env or {}, ctx),
        "DURABLE_RUN_ID": ctx.run_id,
        "DURABLE_WORKFLOW": ctx.workflow,
        "DURABLE_TASK": ctx.task,
        "DURABLE_ATTEMPT": str(ctx.attempt),
        "DURABLE_IDEMPOTENCY_KEY": ctx.idempotency_key,
        "DURABLE_LOGICAL_DATE": ctx.logical_date or "",
        "DURABLE_LOGICAL_TIME": ctx.logical_time.isoformat() if ctx.logical_time else "",
        "DURABLE_DATA_INTERVAL_START": interval[0].isoformat() if interval[0] else "",
        "DURABLE_DATA_INTERVAL_END": interval[1].isoformat() if interval[1] else "",
    }


def _master(spec: SparkTask, ctx: TaskContext) -> str:
    return "local[*]" if isinstance(spec.master, UnsetType) else str(render(spec.master, ctx))


def _deploy_mode(spec: SparkTask) -> str:
    return "client" if isinstance(spec.deploy_mode, UnsetType) else spec.deploy_mode


def _standalone_cluster(job: dict[str, Any]) -> bool:
    return job["deploy_mode"] == "cluster" and str(job["master"]).startswith("spark://")


def _submission_in(process: Detached) -> str | None:
    """The submission id spark-submit printed (standalone cluster mode)."""
    with contextlib.suppress(OSError):
        found = _SUBMISSION.search(process.output.read_text(errors="replace"))
        return found.group(1) if found else None
    return None


def _waits_for_app(spec: SparkTask, ctx: TaskContext) -> bool:
    conf = render(spec.conf or {}, ctx)
    return str(conf.get("spark.standalone.submit.waitAppCompletion", "")).lower() == "true"


def _event_log_configured(conf: dict[str, str], env: dict[str, str], spark_submit: str) -> bool:
    """Whether the user set up Spark's event log (in the task's conf, or in
    ``spark-defaults.conf``): then it is theirs, and left alone."""
    if any(k.startswith("spark.eventLog.") for k in conf):
        return True
    folder = env.get("SPARK_CONF_DIR") or os.path.join(
        env.get("SPARK_HOME") or os.path.dirname(os.path.dirname(spark_submit)), "conf"
    )
    try:
        defaults = Path(folder, "spark-defaults.conf").read_text(errors="replace")
    except OSError:
        return False
    return re.search(r"^\s*spark\.eventLog\.", defaults, re.MULTILINE) is not None


def _command(
    spec: SparkTask,
    ctx: TaskContext,
    spark_submit: str,
    master: str,
    folder: Path,
    env: dict[str, str],
) -> list[str]:
    conf: dict[str, str] = {k: str(v) for k, v in render(spec.conf or {}, ctx).items()}
    deploy_mode = _deploy_mode(spec)
    if deploy_mode == "cluster" and master.startswith("spark://"):
        # a standalone master's driver is followed (and killed) at its REST API
        conf.setdefault("spark.master.rest.enabled", "true")
    here = deploy_mode != "cluster" and not master.startswith("sc://")
    if here and not _event_log_configured(conf, env, spark_submit):
        # the driver is here: its event log names the application (a local one says its
        # id nowhere else), and the history server can read it
        (folder / "events").mkdir(exist_ok=True)
        conf["spark.eventLog.enabled"] = "true"
        conf["spark.eventLog.dir"] = (folder / "events").as_uri()
    command = [spark_submit]
    command += ["--remote", master] if master.startswith("sc://") else ["--master", master]
    if not isinstance(spec.deploy_mode, UnsetType):
        command += ["--deploy-mode", spec.deploy_mode]
    if not isinstance(spec.main_class, UnsetType):
        command += ["--class", render(spec.main_class, ctx)]
    if "spark.app.name" not in conf:
        command += ["--name", f"{ctx.workflow}.{ctx.task}"]
    for key, value in conf.items():
        command += ["--conf", f"{key}={value}"]
    if spec.py_files:
        command += ["--py-files", ",".join(render(spec.py_files, ctx, "path"))]
    if spec.jars:
        command += ["--jars", ",".join(render(spec.jars, ctx, "path"))]
    command.append(render(spec.application, ctx, "path"))
    command += [str(a) for a in render(spec.args or [], ctx)]
    return command


def _pump(process: Detached, reading: _Reading, log: TaskLog, *, final: bool) -> None:
    """New lines of the output into the log; ``final``: all of it, the last line too."""
    if reading.finished:
        return
    try:
        with process.output.open("rb") as f:
            f.seek(reading.offset)
            while True:
                chunk = f.read(_READ)
                reading.offset += len(chunk)
                lines = (reading.partial + chunk).split(b"\n")
                reading.partial = lines.pop()
                for raw in lines:
                    _line(reading, log, raw.decode(errors="replace"))
                if not chunk or not final:
                    break
    except FileNotFoundError:
        return
    if final and reading.partial:
        _line(reading, log, reading.partial.decode(errors="replace"))
        reading.partial = b""


def _line(reading: _Reading, log: TaskLog, text: str) -> None:
    text = text.rstrip("\r")
    log.write("output", text)
    reading.tail.append(text)
    if reading.app_id is None and (found := _APP_ID.search(text)):
        reading.app_id = found.group(1)
    if reading.submission is None and (found := _SUBMISSION.search(text)):
        reading.submission = found.group(1)


def _note(process: Detached, text: str) -> None:
    _note_in(process.folder, text)


def _note_in(folder: Path, text: str) -> None:
    """A line of durable's own in the output, so that it reaches the log in its place."""
    with (folder / "output").open("a") as f:
        f.write(text + "\n")


def _application_id(process: Detached, reading: _Reading) -> str | None:
    with contextlib.suppress(OSError):
        for entry in sorted((process.folder / "events").iterdir()):
            # eventlog_v2_local-1700000000000/ (rolling), local-1700000000000[.zstd][.inprogress]
            return entry.name.removeprefix("eventlog_v2_").split(".", 1)[0]
    return reading.app_id


def _result(process: Detached, reading: _Reading, log: TaskLog) -> Any:
    app_id = _application_id(process, reading)
    if not reading.finished:
        reading.finished = True
        log.write("log", f"spark application {app_id or '(id not seen)'} finished")
    path = process.folder / "result.json"
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {"application_id": app_id, "exit_code": 0}
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise TaskError(
            f"the job's result ($DURABLE_RESULT, {path}) is not JSON: {exc}",
            retryable=False,
            type="SparkResultError",
        ) from None


def _last_lines(reading: _Reading) -> str:
    return ("; last lines:\n" + "\n".join(reading.tail)) if reading.tail else ""


async def _rest(resources: Resources, master: str, action: str, method: str) -> dict[str, Any]:
    """A request to a standalone master's REST submission API (``spark://host:6066``)."""
    base = "http://" + master.removeprefix("spark://").split(",")[0]
    session = await resources.http()
    url = f"{base}/v1/submissions/{action}"
    try:
        async with session.request(
            method, url, timeout=aiohttp.ClientTimeout(total=30)
        ) as response:
            answer = await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise OSError(f"{url}: {type(exc).__name__}: {exc}") from None
    return answer if isinstance(answer, dict) else {}


register("spark", SparkWaiter())

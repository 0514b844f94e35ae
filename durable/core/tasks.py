"""Task specs: one frozen struct per kind of task, a tagged union on ``kind``.

Pure. A task's options are typed fields, checked once when the workflow is defined
(:func:`task_spec`), so the executor and the runners read ``spec.command``, never
``config["command"]``. An option left out is ``UNSET``, not its default: the encoded
definition (:meth:`TaskSpecBase.config`, the ``config`` of :meth:`WorkflowSpec.to_dict`
and of the version hash) holds exactly what was written, so a definition's version does
not change with this typed form.
"""

from __future__ import annotations

from typing import Any, ClassVar, TypeAlias, get_args

import msgspec
from msgspec import UNSET, UnsetType

from durable.core.errors import DurableError
from durable.core.events import TriggerRule
from durable.core.retry import RetryPolicy
from durable.core.state import RunStatus

__all__ = [
    "COMMON_FIELDS",
    "TASK_KINDS",
    "TASK_TYPES",
    "WAITING_KINDS",
    "AssetCondition",
    "DbtTask",
    "HttpTask",
    "JobTask",
    "MapTask",
    "NoopTask",
    "PythonTask",
    "RunCondition",
    "S3Condition",
    "SensorTask",
    "ShellTask",
    "SleepTask",
    "SparkTask",
    "SqlCondition",
    "SqlTask",
    "SwitchTask",
    "TaskDefinitionError",
    "TaskSpec",
    "TaskSpecBase",
    "task_spec",
]

TASK_KINDS: tuple[str, ...] = (
    "python",
    "shell",
    "http",
    "sql",
    "switch",
    "map",
    "sleep",
    "noop",
    "job",
    "spark",
    "dbt",
    "sensor",
)


class TaskDefinitionError(DurableError):
    """A task's options that cannot run; ``problem`` names the task and the option (the
    caller adds where the definition is)."""

    def __init__(self, problem: str, *, hint: str | None = None) -> None:
        super().__init__(problem, hint=hint)
        self.problem = problem


class TaskSpecBase(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind"):
    """What every task has: a name, its upstream tasks, and its policies."""

    kind: ClassVar[str]
    name: str
    upstream: tuple[str, ...] = ()
    retry: RetryPolicy = RetryPolicy()
    timeout: float | None = None
    trigger_rule: TriggerRule = "all_success"
    produces: tuple[str, ...] = ()
    """Assets (tables, files) this task writes; its success updates them."""
    description: str = ""

    def config(self) -> dict[str, Any]:
        """The kind's options as written (``UNSET`` ones left out), as plain data."""
        out: dict[str, Any] = {}
        for name in type(self).__struct_fields__:
            if name in COMMON_FIELDS:
                continue
            value = getattr(self, name)
            if value is not UNSET:
                out[name] = msgspec.to_builtins(value)
        return out


COMMON_FIELDS: frozenset[str] = frozenset(TaskSpecBase.__struct_fields__)


class PythonTask(TaskSpecBase, frozen=True, kw_only=True, tag="python"):
    """A Python function (``module:function``), sync or async."""

    kind: ClassVar[str] = "python"
    callable: str


class ShellTask(TaskSpecBase, frozen=True, kw_only=True, tag="shell"):
    """A shell command in its own process group."""

    kind: ClassVar[str] = "shell"
    command: str
    env: dict[str, str] | UnsetType = UNSET
    cwd: str | UnsetType = UNSET
    max_memory_mb: int | UnsetType = UNSET


class HttpTask(TaskSpecBase, frozen=True, kw_only=True, tag="http"):
    """An HTTP call; 5xx and connection errors retry, other unexpected statuses don't."""

    kind: ClassVar[str] = "http"
    url: str
    method: str | UnsetType = UNSET
    headers: dict[str, str] | UnsetType = UNSET
    json: Any = UNSET
    body: str | UnsetType = UNSET
    expect: list[int] | UnsetType = UNSET


class SqlTask(TaskSpecBase, frozen=True, kw_only=True, tag="sql"):
    """A SQL statement on a named connection (``durable``: durable's own database)."""

    kind: ClassVar[str] = "sql"
    query: str
    connection: str | UnsetType = UNSET
    args: list[Any] | UnsetType = UNSET
    transactional: bool | UnsetType = UNSET

    @property
    def connection_name(self) -> str:
        return self.connection if isinstance(self.connection, str) else "durable"


class SwitchTask(TaskSpecBase, frozen=True, kw_only=True, tag="switch"):
    """Routes to the tasks of one case (by a function's result, or an upstream value);
    the other branches are skipped."""

    kind: ClassVar[str] = "switch"
    cases: dict[str, list[str]]
    default: list[str] | UnsetType = UNSET
    callable: str | UnsetType = UNSET
    on: str | UnsetType = UNSET
    key: str | UnsetType = UNSET


class MapTask(TaskSpecBase, frozen=True, kw_only=True, tag="map"):
    """Runs a function once per item of an upstream task's list (``over``, its field
    ``key``), at most ``max_parallel`` at a time."""

    kind: ClassVar[str] = "map"
    callable: str
    over: str
    key: str | UnsetType = UNSET
    max_parallel: int | UnsetType = UNSET


class SleepTask(TaskSpecBase, frozen=True, kw_only=True, tag="sleep"):
    """A durable sleep: ``seconds`` from when it is scheduled, or ``until`` a time."""

    kind: ClassVar[str] = "sleep"
    seconds: float | UnsetType = UNSET
    until: str | UnsetType = UNSET
    """An ISO date or time (a YAML date or time arrives in its ISO form)."""


class NoopTask(TaskSpecBase, frozen=True, kw_only=True, tag="noop"):
    """Does nothing (a join point)."""

    kind: ClassVar[str] = "noop"


class JobTask(TaskSpecBase, frozen=True, kw_only=True, tag="job"):
    """Work that runs elsewhere behind an HTTP API (a serverless job or function, a
    Databricks or Livy job): submitted once, its id recorded in the log before any wait,
    then polled between durable timers until it reaches a terminal state. An executor
    that takes the run over keeps polling the same job; it never submits a second one.

    Paths (``job_id``, ``state``, ``result``) are dotted paths into the JSON responses
    (``run.id``, ``items.0.state``); ``status_url`` and ``cancel_url`` may use
    ``${job.id}``.
    """

    kind: ClassVar[str] = "job"
    submit_url: str
    method: str | UnsetType = UNSET
    headers: dict[str, str] | UnsetType = UNSET
    json: Any = UNSET
    body: str | UnsetType = UNSET
    job_id: str
    status_url: str
    state: str
    succeeded: list[str]
    failed: list[str]
    result: str | UnsetType = UNSET
    message: str | UnsetType = UNSET
    """A path to the job's error message in a failed status."""
    cancel_url: str | UnsetType = UNSET
    cancel_method: str | UnsetType = UNSET
    poll_interval: float | UnsetType = UNSET
    max_poll_interval: float | UnsetType = UNSET


class SparkTask(TaskSpecBase, frozen=True, kw_only=True, tag="spark"):
    """A Spark application (a PySpark script or a JAR) submitted by ``spark-submit`` to
    ``master`` (``local[*]`` unless set). Its application is recorded in the log, so an
    executor that takes the run over reattaches to it rather than submitting again; its
    driver's output goes to the task log."""

    kind: ClassVar[str] = "spark"
    application: str
    main_class: str | UnsetType = UNSET
    args: list[str] | UnsetType = UNSET
    conf: dict[str, str] | UnsetType = UNSET
    master: str | UnsetType = UNSET
    deploy_mode: str | UnsetType = UNSET
    py_files: list[str] | UnsetType = UNSET
    jars: list[str] | UnsetType = UNSET
    env: dict[str, str] | UnsetType = UNSET
    spark_submit: str | UnsetType = UNSET
    """The ``spark-submit`` to run (default: ``$SPARK_HOME/bin/spark-submit``, else the one
    of the installed ``pyspark``)."""
    poll_interval: float | UnsetType = UNSET


class DbtTask(TaskSpecBase, frozen=True, kw_only=True, tag="dbt"):
    """One node (model, seed, snapshot or test) of a dbt project, as read from its
    ``manifest.json``. ``mode``: ``node`` runs one dbt invocation per node; ``watched``
    runs one ``dbt build`` for the nodes due together and follows its per-node events."""

    kind: ClassVar[str] = "dbt"
    project_dir: str
    node: str
    """The node's ``unique_id`` (``model.shop.stg_orders``)."""
    mode: str | UnsetType = UNSET
    profiles_dir: str | UnsetType = UNSET
    target: str | UnsetType = UNSET
    vars: dict[str, Any] | UnsetType = UNSET
    full_refresh: bool | UnsetType = UNSET
    dbt: str | UnsetType = UNSET
    """The dbt executable (default: the ``dbt`` next to this Python)."""


class S3Condition(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An object in S3: ``key``, or any object under ``prefix``, at least ``min_size``
    bytes."""

    bucket: str
    key: str | UnsetType = UNSET
    prefix: str | UnsetType = UNSET
    min_size: int | UnsetType = UNSET
    endpoint_url: str | UnsetType = UNSET


class SqlCondition(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A query whose first row's first column is truthy."""

    query: str
    connection: str | UnsetType = UNSET
    args: list[Any] | UnsetType = UNSET


class RunCondition(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A run of ``workflow`` for the same logical time (or ``logical_time``) in
    ``status`` (``succeeded`` unless set)."""

    workflow: str
    status: str | UnsetType = UNSET
    logical_time: str | UnsetType = UNSET


class AssetCondition(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An asset updated after ``after`` (an ISO time; unless set, the end of the run's
    data interval, else its logical time, else when the sensor started)."""

    asset: str
    after: str | UnsetType = UNSET


class SensorTask(TaskSpecBase, frozen=True, kw_only=True, tag="sensor"):
    """Waits for a condition (exactly one of ``s3``, ``sql``, ``run``, ``asset``) without
    holding a slot or a thread between pokes. ``timeout`` (required) counts from the
    attempt's recorded start, so a restart keeps it; ``soft_fail`` skips the task
    instead of failing it when it runs out."""

    kind: ClassVar[str] = "sensor"
    s3: S3Condition | UnsetType = UNSET
    sql: SqlCondition | UnsetType = UNSET
    run: RunCondition | UnsetType = UNSET
    asset: AssetCondition | UnsetType = UNSET
    poke_interval: float | UnsetType = UNSET
    max_poke_interval: float | UnsetType = UNSET
    backoff: float | UnsetType = UNSET
    soft_fail: bool | UnsetType = UNSET

    @property
    def condition(self) -> S3Condition | SqlCondition | RunCondition | AssetCondition:
        for value in (self.s3, self.sql, self.run, self.asset):
            if not isinstance(value, UnsetType):
                return value
        raise TaskDefinitionError(f"sensor {self.name!r} has no condition")  # pragma: no cover


SENSOR_CONDITIONS: tuple[str, ...] = ("s3", "sql", "run", "asset")


TaskSpec: TypeAlias = (
    PythonTask
    | ShellTask
    | HttpTask
    | SqlTask
    | SwitchTask
    | MapTask
    | SleepTask
    | NoopTask
    | JobTask
    | SparkTask
    | DbtTask
    | SensorTask
)
TASK_TYPES: dict[str, type[TaskSpec]] = {
    "python": PythonTask,
    "shell": ShellTask,
    "http": HttpTask,
    "sql": SqlTask,
    "switch": SwitchTask,
    "map": MapTask,
    "sleep": SleepTask,
    "noop": NoopTask,
    "job": JobTask,
    "spark": SparkTask,
    "dbt": DbtTask,
    "sensor": SensorTask,
}
WAITING_KINDS: frozenset[str] = frozenset({"job", "spark", "sensor"})
"""Kinds whose attempt submits (or starts) its work, records it, then waits for it between
durable timers without holding a slot (:class:`~durable.core.events.TaskWaiting`)."""
_NESTED: dict[str, type[msgspec.Struct]] = {
    "s3": S3Condition,
    "sql": SqlCondition,
    "run": RunCondition,
    "asset": AssetCondition,
}


def task_spec(kind: str, config: dict[str, Any], **common: Any) -> TaskSpec:
    """The typed spec of a task of ``kind`` with options ``config`` (as written) and the
    common fields ``common`` (``name``, ``upstream``, ``retry``…).

    Raises :class:`TaskDefinitionError` naming the task and the option. Values are kept
    as given (``5`` stays an int where a float is allowed), so the encoded definition is
    the one written.
    """
    name = common.get("name")
    cls = TASK_TYPES.get(kind)
    if cls is None:
        raise TaskDefinitionError(
            f"task {name!r} has unknown type {kind!r}", hint=f"known types: {', '.join(TASK_KINDS)}"
        )
    # as plain data (a YAML date becomes its ISO string: the same JSON as before)
    try:
        config = msgspec.to_builtins(config)
    except TypeError as exc:
        raise TaskDefinitionError(f"task {name!r}: an option is not plain data: {exc}") from None
    _check_required(cls, name, config)
    unknown = sorted(set(config) - set(cls.__struct_fields__) | set(config) & COMMON_FIELDS)
    if unknown:
        options = sorted(set(cls.__struct_fields__) - COMMON_FIELDS)
        raise TaskDefinitionError(
            f"task {name!r}: unknown option {unknown[0]!r} for a {kind} task",
            hint=f"options: {', '.join(options) or '(none)'}",
        )
    if cls is SensorTask:
        config = _sensor_conditions(name, config)
    try:
        task = cls(**common, **config)
    except TypeError as exc:
        raise TaskDefinitionError(f"task {name!r}: {exc}") from None
    try:  # types, checked once here; the task keeps the values as given
        msgspec.convert(msgspec.to_builtins(task), cls)
    except msgspec.ValidationError as exc:
        raise TaskDefinitionError(f"task {name!r}: {_field_error(exc)}") from None
    _check_values(task)
    return task


def _check_values(task: TaskSpec) -> None:
    """What the types alone do not say."""
    match task:
        case SensorTask():
            if task.timeout is None:
                raise TaskDefinitionError(
                    f"sensor {task.name!r} has no timeout: it could wait forever",
                    hint="give it one in seconds, e.g. timeout: 3600 (and soft_fail: true to "
                    "skip rather than fail when it runs out)",
                )
            for field in ("poke_interval", "max_poke_interval"):
                value = getattr(task, field)
                if not isinstance(value, UnsetType) and value <= 0:
                    raise TaskDefinitionError(
                        f"sensor {task.name!r}: {field} must be > 0, not {value!r}"
                    )
            if not isinstance(task.backoff, UnsetType) and task.backoff < 1:
                raise TaskDefinitionError(
                    f"sensor {task.name!r}: backoff must be >= 1, not {task.backoff!r}"
                )
            s3 = task.s3
            if not isinstance(s3, UnsetType) and isinstance(s3.key, UnsetType) == isinstance(
                s3.prefix, UnsetType
            ):
                raise TaskDefinitionError(
                    f"sensor {task.name!r}: s3 needs exactly one of 'key' and 'prefix'"
                )
            min_size = UNSET if isinstance(s3, UnsetType) else s3.min_size
            if not isinstance(min_size, UnsetType) and min_size < 0:
                raise TaskDefinitionError(
                    f"sensor {task.name!r}: s3.min_size must be >= 0, not {min_size!r}"
                )
            status = UNSET if isinstance(task.run, UnsetType) else task.run.status
            statuses = get_args(RunStatus)
            if not isinstance(status, UnsetType) and status not in statuses:
                raise TaskDefinitionError(
                    f"sensor {task.name!r}: run.status {status!r} is not a run status",
                    hint=f"one of {', '.join(statuses)}",
                )
        case DbtTask():
            if not isinstance(task.mode, UnsetType) and task.mode not in ("node", "watched"):
                raise TaskDefinitionError(
                    f"dbt task {task.name!r}: mode must be 'node' or 'watched', not {task.mode!r}"
                )
        case SparkTask():
            if not isinstance(task.deploy_mode, UnsetType) and task.deploy_mode not in (
                "client",
                "cluster",
            ):
                raise TaskDefinitionError(
                    f"spark task {task.name!r}: deploy_mode must be 'client' or 'cluster', "
                    f"not {task.deploy_mode!r}"
                )
        case JobTask() | SparkTask():
            pass
    for field in ("poll_interval", "max_poll_interval"):
        value = getattr(task, field, UNSET)
        if not isinstance(value, UnsetType) and value <= 0:
            raise TaskDefinitionError(f"task {task.name!r}: {field} must be > 0, not {value!r}")


def _check_required(cls: type[TaskSpec], name: Any, config: dict[str, Any]) -> None:
    if cls is SwitchTask:
        if not isinstance(config.get("cases"), dict) or not config["cases"]:
            raise TaskDefinitionError(f"switch {name!r} needs 'cases': value -> [tasks]")
    elif cls is MapTask:
        if not config.get("callable") or not config.get("over"):
            raise TaskDefinitionError(f"map {name!r} needs 'callable' and 'over' (a task)")
        limit = config.get("max_parallel")
        if limit is not None and (not isinstance(limit, int) or limit < 1):
            raise TaskDefinitionError(f"map {name!r}: max_parallel must be >= 1, not {limit!r}")
    elif cls is SleepTask:
        if "seconds" not in config and "until" not in config:
            raise TaskDefinitionError(f"sleep {name!r} needs 'seconds' or 'until'")
    elif cls is SensorTask:
        given = [c for c in SENSOR_CONDITIONS if c in config]
        if len(given) != 1:
            raise TaskDefinitionError(
                f"sensor {name!r} needs exactly one condition (found {', '.join(given) or 'none'})",
                hint=f"conditions: {', '.join(SENSOR_CONDITIONS)}",
            )
    elif cls is JobTask:
        missing = [f for f in ("submit_url", "job_id", "status_url", "state") if not config.get(f)]
        if missing:
            raise TaskDefinitionError(f"job {name!r} needs {missing[0]!r}")
        for field in ("succeeded", "failed"):
            if not isinstance(config.get(field), list) or not config[field]:
                raise TaskDefinitionError(
                    f"job {name!r} needs {field!r}: a list of the job's terminal states",
                    hint="e.g. succeeded: [SUCCEEDED], failed: [FAILED, CANCELLED]",
                )
    else:
        need: dict[type[TaskSpec], str] = {
            PythonTask: "callable",
            ShellTask: "command",
            HttpTask: "url",
            SqlTask: "query",
            SparkTask: "application",
            DbtTask: "node",
        }
        field = need.get(cls, "")
        if field and not config.get(field):
            raise TaskDefinitionError(f"task {name!r} ({cls.kind}) needs {field!r}")


def _sensor_conditions(name: Any, config: dict[str, Any]) -> dict[str, Any]:
    """A sensor's condition as its struct (checked here, kept as written)."""
    out = dict(config)
    for field, struct in _NESTED.items():
        if field not in out:
            continue
        try:
            out[field] = msgspec.convert(out[field], struct)
        except msgspec.ValidationError as exc:
            text = str(exc)
            fields = ", ".join(struct.__struct_fields__)
            for problem, say in (
                ("Object contains unknown field `", "unknown field {} in {}"),
                ("Object missing required field `", "{1} needs {0}"),
            ):
                if text.startswith(problem):
                    what = repr(text.removeprefix(problem).rstrip("`"))
                    raise TaskDefinitionError(
                        f"sensor {name!r}: {say.format(what, field)}",
                        hint=f"{field} takes: {fields}",
                    ) from None
            if text.startswith("Expected `object`"):
                raise TaskDefinitionError(
                    f"sensor {name!r}: {field} must be a mapping, not {out[field]!r}",
                    hint=f"{field} takes: {fields}",
                ) from None
            raise TaskDefinitionError(f"sensor {name!r}: {field}.{_field_error(exc)}") from None
    return out


def _field_error(exc: msgspec.ValidationError) -> str:
    # "Expected `int`, got `str` - at `$.max_memory_mb`" -> "max_memory_mb: expected int…"
    text = str(exc)
    message, _, path = text.partition(" - at `$.")
    if not path:
        return text
    return f"{path.rstrip('`')}: {message[0].lower()}{message[1:]}".replace("`", "")

"""Task specs: one frozen struct per kind of task, a tagged union on ``kind``.

Pure. A task's options are typed fields, checked once when the workflow is defined
(:func:`task_spec`), so the executor and the runners read ``spec.command``, never
``config["command"]``. An option left out is ``UNSET``, not its default: the encoded
definition (:meth:`TaskSpecBase.config`, the ``config`` of :meth:`WorkflowSpec.to_dict`
and of the version hash) holds exactly what was written, so a definition's version does
not change with this typed form.
"""

from __future__ import annotations

from typing import Any, ClassVar, TypeAlias

import msgspec
from msgspec import UNSET, UnsetType

from durable.core.errors import DurableError
from durable.core.events import TriggerRule
from durable.core.retry import RetryPolicy

__all__ = [
    "COMMON_FIELDS",
    "TASK_KINDS",
    "TASK_TYPES",
    "HttpTask",
    "MapTask",
    "NoopTask",
    "PythonTask",
    "ShellTask",
    "SleepTask",
    "SqlTask",
    "SwitchTask",
    "TaskDefinitionError",
    "TaskSpec",
    "TaskSpecBase",
    "task_spec",
]

TASK_KINDS: tuple[str, ...] = ("python", "shell", "http", "sql", "switch", "map", "sleep", "noop")


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


TaskSpec: TypeAlias = (
    PythonTask | ShellTask | HttpTask | SqlTask | SwitchTask | MapTask | SleepTask | NoopTask
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
    try:
        task = cls(**common, **config)
    except TypeError as exc:
        raise TaskDefinitionError(f"task {name!r}: {exc}") from None
    try:  # types, checked once here; the task keeps the values as given
        msgspec.convert(msgspec.to_builtins(task), cls)
    except msgspec.ValidationError as exc:
        raise TaskDefinitionError(f"task {name!r}: {_field_error(exc)}") from None
    return task


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
    else:
        need = {PythonTask: "callable", ShellTask: "command", HttpTask: "url", SqlTask: "query"}
        field = need.get(cls)
        if field and not config.get(field):
            raise TaskDefinitionError(f"task {name!r} ({cls.kind}) needs {field!r}")


def _field_error(exc: msgspec.ValidationError) -> str:
    # "Expected `int`, got `str` - at `$.max_memory_mb`" -> "max_memory_mb: expected int…"
    text = str(exc)
    message, _, path = text.partition(" - at `$.")
    if not path:
        return text
    return f"{path.rstrip('`')}: {message[0].lower()}{message[1:]}".replace("`", "")

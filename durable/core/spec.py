"""Workflow definitions as data: tasks, dependencies, policies; validation and versions.

Pure. Python (``durable.workflows.python``) and YAML (``durable.workflows.yaml``) both
build a :class:`WorkflowSpec` of typed task specs (:mod:`durable.core.tasks`);
everything downstream — the version hash, ``durable show``, the decisions of a run —
sees only this. The encoded definition (:meth:`WorkflowSpec.to_dict`, the version hash)
keeps the shape it always had — each task's options under ``config`` — so versions of
unchanged definitions never change.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from typing import Any, Literal, TypeAlias

import msgspec

from durable.core.errors import DurableError
from durable.core.events import NotifyRule, TaskNode, TriggerRule
from durable.core.kafka import KafkaTrigger
from durable.core.notify import RuleError, check_rule
from durable.core.retry import RetryPolicy
from durable.core.s3 import S3Trigger, WebhookTrigger
from durable.core.schedule import Schedule, ScheduleError, validate_schedule
from durable.core.sla import Sla, SlaError, check_sla
from durable.core.tasks import (
    TASK_KINDS,
    MapTask,
    SwitchTask,
    TaskDefinitionError,
    TaskSpec,
    task_spec,
)

__all__ = [
    "TASK_KINDS",
    "DefinitionError",
    "ParamSpec",
    "TaskKind",
    "TaskSpec",
    "WorkflowSpec",
    "coerce_params",
    "diff_specs",
    "spec_from_json",
    "validate",
]

TaskKind: TypeAlias = Literal[
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
]
ParamType: TypeAlias = Literal["str", "int", "float", "bool", "date", "json"]


class DefinitionError(DurableError):
    """A workflow definition that cannot run; ``where`` names the file/workflow/task."""

    def __init__(self, where: str, problem: str, *, hint: str | None = None) -> None:
        super().__init__(f"{where}: {problem}", hint=hint)
        self.where = where
        self.problem = problem


class ParamSpec(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A workflow parameter: its type and, if optional, its default."""

    type: ParamType = "str"
    default: Any = None
    required: bool = False
    description: str = ""


class _EncodedTask(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A task as the definition is encoded (hashed, stored, shown): options in ``config``."""

    name: str
    kind: TaskKind
    upstream: tuple[str, ...] = ()
    config: dict[str, Any] = {}
    retry: RetryPolicy = RetryPolicy()
    timeout: float | None = None
    trigger_rule: TriggerRule = "all_success"
    produces: tuple[str, ...] = ()
    description: str = ""


class _EncodedWorkflow(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A workflow as its definition is encoded: the fields of :class:`WorkflowSpec`."""

    name: str
    tasks: tuple[_EncodedTask, ...]
    params: dict[str, ParamSpec] = {}
    max_active_runs: int | None = None
    max_duration: float | None = None
    schedule: Schedule | None = None
    kafka: tuple[KafkaTrigger, ...] = ()
    s3: tuple[S3Trigger, ...] = ()
    webhook: WebhookTrigger | None = None
    on_assets: tuple[str, ...] = ()
    description: str = ""
    source: str = ""
    notify: tuple[NotifyRule, ...] = ()
    sla: Sla | None = None


def _encoded_task(t: TaskSpec) -> _EncodedTask:
    return _EncodedTask(
        name=t.name,
        kind=t.kind,  # type: ignore[arg-type]
        upstream=t.upstream,
        config=t.config(),
        retry=t.retry,
        timeout=t.timeout,
        trigger_rule=t.trigger_rule,
        produces=t.produces,
        description=t.description,
    )


class WorkflowSpec(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A workflow definition. Its :attr:`version` is the hash of its content."""

    name: str
    tasks: tuple[TaskSpec, ...]
    params: dict[str, ParamSpec] = {}
    max_active_runs: int | None = None
    max_duration: float | None = None
    schedule: Schedule | None = None
    kafka: tuple[KafkaTrigger, ...] = ()
    s3: tuple[S3Trigger, ...] = ()
    webhook: WebhookTrigger | None = None
    on_assets: tuple[str, ...] = ()
    """Run whenever one of these assets is updated (data-aware trigger)."""
    description: str = ""
    source: str = ""
    notify: tuple[NotifyRule, ...] = ()
    """Who is told what, and how (:mod:`durable.core.notify`)."""
    sla: Sla | None = None
    """When runs are expected done, and how fresh assets must be (:mod:`durable.core.sla`)."""

    @property
    def version(self) -> str:
        """12 hex digits of the SHA-256 of the definition (``source`` excluded)."""
        content = msgspec.json.encode(self._encoded(source=""), order="sorted")
        return hashlib.sha256(content).hexdigest()[:12]

    def _encoded(self, *, source: str) -> _EncodedWorkflow:
        fields = {f: getattr(self, f) for f in _EncodedWorkflow.__struct_fields__}
        fields.update(source=source, tasks=tuple(_encoded_task(t) for t in self.tasks))
        return _EncodedWorkflow(**fields)

    def task(self, name: str) -> TaskSpec:
        """A task's spec; a map's child ``name[i]`` has its map task's spec."""
        for t in self.tasks:
            if t.name == name:
                return t
        if name.endswith("]") and "[" in name:
            return self.task(name[: name.rindex("[")])
        raise KeyError(name)

    def nodes(self) -> tuple[TaskNode, ...]:
        """The DAG as recorded in a run's ``run_created`` event."""
        return tuple(
            TaskNode(name=t.name, upstream=t.upstream, trigger_rule=t.trigger_rule)
            for t in self.tasks
        )

    def to_dict(self) -> dict[str, Any]:
        """The definition as plain data (the code view of ``durable show``)."""
        data: dict[str, Any] = msgspec.to_builtins(self._encoded(source=""))
        return data


def spec_from_json(data: bytes | str, *, where: str = "definition") -> WorkflowSpec:
    """A definition from its encoded form (:meth:`WorkflowSpec.to_dict` as JSON, e.g. a
    recorded version). Raises :class:`DefinitionError` naming ``where`` and the task."""
    try:
        encoded = msgspec.json.decode(data, type=_EncodedWorkflow)
    except msgspec.DecodeError as exc:  # ValidationError too
        raise DefinitionError(where, f"not a workflow definition: {exc}") from None
    tasks = []
    for t in encoded.tasks:
        common = {f: getattr(t, f) for f in _EncodedTask.__struct_fields__}
        del common["kind"], common["config"]
        try:
            tasks.append(task_spec(t.kind, t.config, **common))
        except TaskDefinitionError as exc:
            raise DefinitionError(where, exc.problem, hint=exc.hint) from None
    fields = {f: getattr(encoded, f) for f in _EncodedWorkflow.__struct_fields__}
    fields["tasks"] = tuple(tasks)
    return WorkflowSpec(**fields)


def validate(spec: WorkflowSpec) -> WorkflowSpec:
    """Check a definition and return it with tasks in topological order.

    Raises :class:`DefinitionError` naming the workflow, the task and the problem.
    """
    where = spec.source or f"workflow {spec.name!r}"
    if not spec.name or not _is_name(spec.name):
        raise DefinitionError(
            where, f"workflow name {spec.name!r} is invalid", hint="use letters, digits, _ . -"
        )
    if not spec.tasks:
        raise DefinitionError(where, "the workflow has no tasks")
    names: dict[str, TaskSpec] = {}
    for t in spec.tasks:
        if not _is_name(t.name):
            raise DefinitionError(
                where, f"task name {t.name!r} is invalid", hint="use letters, digits, _ . -"
            )
        if t.name in names:
            raise DefinitionError(where, f"task {t.name!r} is declared twice", hint="rename one")
        if t.timeout is not None and t.timeout <= 0:
            raise DefinitionError(where, f"task {t.name!r}: timeout must be > 0, not {t.timeout}")
        names[t.name] = t
    for t in spec.tasks:
        for u in t.upstream:
            if u not in names:
                raise DefinitionError(
                    where,
                    f"task {t.name!r} depends on unknown task {u!r}",
                    hint=f"tasks are: {', '.join(names)}",
                )
            if u == t.name:
                raise DefinitionError(where, f"task {t.name!r} depends on itself")
        _check_kind(where, t, names)
    for name, p in spec.params.items():
        if p.default is not None:
            try:
                coerce_params({name: p}, {name: p.default}, where=where)
            except DefinitionError as exc:
                raise DefinitionError(where, f"param {name!r}: default {exc.problem}") from None
    if spec.schedule is not None:
        unfilled = [
            n
            for n, p in spec.params.items()
            if p.required and p.default is None and p.type != "date"
        ]
        if unfilled:
            raise DefinitionError(
                where,
                f"scheduled runs cannot fill required param {unfilled[0]!r}",
                hint="give it a default (required date params get the logical date)",
            )
        try:
            validate_schedule(spec.schedule, where)
        except ScheduleError as exc:
            raise DefinitionError(where, exc.message.split(": ", 1)[-1], hint=exc.hint) from None
    for rule in spec.kafka:
        if bool(rule.topic) == bool(rule.pattern):
            raise DefinitionError(where, "a kafka trigger has either 'topic' or 'pattern'")
        if rule.pattern:
            try:
                re.compile(rule.pattern)
            except re.error as exc:
                raise DefinitionError(where, f"kafka pattern {rule.pattern!r}: {exc}") from None
        bad = sorted(set(rule.params) - set(spec.params))
        if bad:
            raise DefinitionError(
                where,
                f"kafka trigger on {rule.topic!r} fills unknown param {bad[0]!r}",
                hint=f"declared params: {', '.join(spec.params) or '(none)'}",
            )
    for i, notify_rule in enumerate(spec.notify):
        try:
            check_rule(notify_rule, f"notify[{i}]", spec.params)
        except RuleError as exc:
            raise DefinitionError(where, exc.problem, hint=exc.hint) from None
    if spec.sla is not None:
        try:
            check_sla(spec.sla)
        except SlaError as exc:
            raise DefinitionError(where, exc.problem, hint=exc.hint) from None
    if spec.max_active_runs is not None and spec.max_active_runs < 1:
        raise DefinitionError(where, f"max_active_runs must be >= 1, not {spec.max_active_runs}")
    ordered = _topological(where, spec.tasks)
    return msgspec.structs.replace(spec, tasks=ordered)


def _check_kind(where: str, t: TaskSpec, names: dict[str, TaskSpec]) -> None:
    # A task's own options were checked when it was built (durable.core.tasks.task_spec);
    # here, what they say about the other tasks.
    if isinstance(t, SwitchTask):
        for branch in [*t.cases.values(), t.default or []]:
            for target in branch:
                if target not in names:
                    raise DefinitionError(
                        where, f"switch {t.name!r} routes to unknown task {target!r}"
                    )
                if t.name not in names[target].upstream:
                    raise DefinitionError(
                        where,
                        f"switch {t.name!r} routes to {target!r}, which does not depend on it",
                        hint=f"add {t.name!r} to the upstream of {target!r}",
                    )
    if isinstance(t, MapTask) and t.over not in t.upstream:
        raise DefinitionError(
            where,
            f"map {t.name!r} maps over {t.over!r}, which is not upstream of it",
            hint=f"add {t.over!r} to its upstream (after:)",
        )


def _topological(where: str, tasks: Iterable[TaskSpec]) -> tuple[TaskSpec, ...]:
    by_name = {t.name: t for t in tasks}
    order: list[TaskSpec] = []
    state: dict[str, int] = {}  # 1 visiting, 2 done
    path: list[str] = []

    def visit(name: str) -> None:
        mark = state.get(name)
        if mark == 2:
            return
        if mark == 1:
            cycle = [*path[path.index(name) :], name]
            raise DefinitionError(
                where, f"cycle: {' -> '.join(cycle)}", hint="a workflow must be a DAG"
            )
        state[name] = 1
        path.append(name)
        for u in by_name[name].upstream:
            visit(u)
        path.pop()
        state[name] = 2
        order.append(by_name[name])

    for name in by_name:  # declaration order, so the result is stable
        visit(name)
    return tuple(order)


def _is_name(name: str) -> bool:
    return bool(name) and len(name) <= 200 and all(c.isalnum() or c in "_.-" for c in name)


def coerce_params(
    specs: dict[str, ParamSpec], given: dict[str, Any], *, where: str = "params"
) -> dict[str, Any]:
    """Check and convert run params against their specs, filling in defaults."""
    unknown = sorted(set(given) - set(specs))
    if unknown:
        raise DefinitionError(
            where,
            f"unknown param {unknown[0]!r}",
            hint=f"declared params: {', '.join(specs) or '(none)'}",
        )
    out: dict[str, Any] = {}
    for name, spec in specs.items():
        if name not in given:
            if spec.required:
                raise DefinitionError(
                    where, f"param {name!r} is required", hint=f"pass --param {name}=…"
                )
            out[name] = spec.default
            continue
        out[name] = _coerce(where, name, spec.type, given[name])
    return out


def _coerce(where: str, name: str, type_: str, value: Any) -> Any:
    import datetime as dt

    try:
        match type_:
            case "str":
                return str(value)
            case "int":
                if isinstance(value, bool):
                    raise ValueError
                return int(value)
            case "float":
                return float(value)
            case "bool":
                if isinstance(value, bool):
                    return value
                lowered = str(value).lower()
                if lowered in ("true", "1", "yes"):
                    return True
                if lowered in ("false", "0", "no"):
                    return False
                raise ValueError
            case "date":
                return dt.date.fromisoformat(str(value)).isoformat()
            case "json":
                return msgspec.json.decode(value) if isinstance(value, str) else value
    except (ValueError, TypeError, msgspec.DecodeError):
        pass
    raise DefinitionError(
        where,
        f"param {name!r}: {value!r} is not a valid {type_}",
        hint="dates are YYYY-MM-DD" if type_ == "date" else None,
    )


def diff_specs(old: WorkflowSpec, new: WorkflowSpec) -> list[str]:
    """What changed from ``old`` to ``new``, one line per change."""
    lines: list[str] = []
    a = {t.name: t for t in old.tasks}
    b = {t.name: t for t in new.tasks}
    for name in b.keys() - a.keys():
        lines.append(f"+ task {name} ({b[name].kind}, after {', '.join(b[name].upstream) or '-'})")
    for name in a.keys() - b.keys():
        lines.append(f"- task {name}")
    for name in sorted(a.keys() & b.keys()):
        before = msgspec.to_builtins(_encoded_task(a[name]))
        after = msgspec.to_builtins(_encoded_task(b[name]))
        for key in sorted(set(before) | set(after)):
            if before.get(key) != after.get(key):
                lines.append(f"~ task {name}.{key}: {before.get(key)!r} -> {after.get(key)!r}")
    for field in (
        "params",
        "max_active_runs",
        "max_duration",
        "schedule",
        "description",
        "notify",
        "sla",
    ):
        x, y = msgspec.to_builtins(getattr(old, field)), msgspec.to_builtins(getattr(new, field))
        if x != y:
            lines.append(f"~ {field}: {x!r} -> {y!r}")
    return sorted(lines, key=lambda line: line[2:])

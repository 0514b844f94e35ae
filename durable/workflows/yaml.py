"""YAML workflow definitions: the same model, for pipelines of ready-made task types.

    workflow: daily_sales
    params:
      date: {type: date, required: true}
    tasks:
      fetch:
        python: daily_sales:fetch          # module:function, importable from the file's folder
        retries: 3
      export:
        shell: "echo ${params.date}"
        after: [fetch]
      shop:                                # a dbt project: one task per selected node
        dbt: {project_dir: dbt_shop, select: [tag:nightly], mode: watched}
        after: [fetch]

Every error names the file, the line, the task and the option, and what would be valid.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import yaml

from durable.core.kafka import KafkaTrigger
from durable.core.notify import RuleError, check_rule
from durable.core.retry import RetryPolicy
from durable.core.s3 import S3Trigger, WebhookTrigger
from durable.core.schedule import Schedule
from durable.core.spec import DefinitionError, ParamSpec, WorkflowSpec, validate
from durable.core.tasks import TASK_KINDS, TaskDefinitionError, TaskSpec, task_spec
from durable.workflows.dbt import DBT_OPTIONS, DbtProjectError, Expansion, expand
from durable.workflows.notify import rule_from_yaml, rule_to_yaml, sla_from_yaml

__all__ = ["load_yaml_spec", "spec_to_yaml"]

_COMMON = {
    "after",
    "retries",
    "retry",
    "timeout",
    "trigger_rule",
    "description",
    "name",
    "produces",
}
_OPTIONS: dict[str, set[str]] = {
    "python": set(),
    "shell": {"env", "cwd", "max_memory_mb"},
    "http": {"method", "headers", "json", "body", "expect"},
    "sql": {"connection", "args", "transactional"},
    "switch": {"cases", "default", "on", "key"},
    "map": {"over", "key", "max_parallel"},
    "sleep": {"seconds", "until"},
    "noop": set(),
    "job": {"poll_interval", "max_poll_interval"},
    "spark": {
        "main_class",
        "args",
        "conf",
        "master",
        "deploy_mode",
        "py_files",
        "jars",
        "env",
        "spark_submit",
        "poll_interval",
    },
    "dbt": {"mode", "profiles_dir", "target", "vars", "full_refresh", "dbt"},
    "sensor": {"poke_interval", "max_poke_interval", "backoff", "soft_fail"},
}
_MAPPING_KINDS = {"job", "dbt", "sensor", "spark"}
"""Kinds whose type key may hold their options as a mapping (``sensor: {s3: {...}}``)."""
_MAIN_KEY = {
    "python": "callable",
    "map": "callable",
    "shell": "command",
    "http": "url",
    "sql": "query",
    "spark": "application",
}
_TOP = {
    "workflow",
    "description",
    "params",
    "max_active_runs",
    "max_duration",
    "schedule",
    "kafka",
    "s3",
    "webhook",
    "on_assets",
    "tasks",
    "notify",
    "sla",
}


class _LineLoader(yaml.SafeLoader):
    """Keeps each mapping's line number under the key ``__line__``."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> dict[str, Any]:
    mapping: dict[str, Any] = {
        str(k): v for k, v in loader.construct_mapping(node, deep=True).items()
    }
    mapping["__line__"] = node.start_mark.line + 1
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml_spec(path: Path) -> WorkflowSpec:
    """Read and validate one YAML workflow file."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise DefinitionError(str(path), f"cannot read: {exc.strerror}") from None
    try:
        doc = yaml.load(text, Loader=_LineLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise DefinitionError(where, f"invalid YAML: {problem}") from None
    if not isinstance(doc, dict):
        raise DefinitionError(str(path), "expected a mapping with 'workflow:' and 'tasks:'")
    at = _at(path, doc)
    # `version:` is what `durable show` prints: derived from the content, never read
    unknown = sorted(set(doc) - _TOP - {"__line__", "version"})
    if unknown:
        raise DefinitionError(
            at, f"unknown key {unknown[0]!r}", hint=f"known keys: {', '.join(sorted(_TOP))}"
        )
    name = doc.get("workflow")
    if not isinstance(name, str):
        raise DefinitionError(at, "'workflow:' must give the workflow's name")
    tasks_doc = doc.get("tasks")
    if isinstance(tasks_doc, dict):
        items = [(k, v) for k, v in tasks_doc.items() if k != "__line__"]
    elif isinstance(tasks_doc, list):
        items = [(t.get("name") if isinstance(t, dict) else None, t) for t in tasks_doc]
    else:
        raise DefinitionError(at, "'tasks:' must be a mapping of task name to task")
    groups: dict[str, Expansion] = {}
    tasks: list[TaskSpec] = []
    for task_name, body in items:
        if _is_dbt_project(body):
            expansion, expanded = _dbt_project(path, task_name, body)
            groups[task_name] = expansion
            tasks += expanded
        else:
            tasks.append(_task(path, task_name, body))
    tasks = _groups_resolved(path, tasks, groups)
    params = {
        k: _param(path, k, v, doc["params"])
        for k, v in (doc.get("params") or {}).items()
        if k != "__line__"
    }
    schedule = None
    if doc.get("schedule") is not None:
        raw = doc["schedule"]
        raw = {"cron": raw} if isinstance(raw, str) else _plain(raw)
        try:
            schedule = msgspec.convert(raw, Schedule)
        except msgspec.ValidationError as exc:
            raise DefinitionError(
                _at(path, doc["schedule"]) if isinstance(doc["schedule"], dict) else at,
                f"schedule: {exc}",
            ) from None
    kafka: tuple[KafkaTrigger, ...] = ()
    if doc.get("kafka") is not None:
        try:
            kafka = tuple(msgspec.convert(_plain(r), KafkaTrigger) for r in doc["kafka"])
        except (msgspec.ValidationError, TypeError) as exc:
            raise DefinitionError(
                at, f"kafka: {exc}", hint="a list of {topic:, params: {name: source}, filter:}"
            ) from None
    s3: tuple[S3Trigger, ...] = ()
    if doc.get("s3") is not None:
        try:
            s3 = tuple(msgspec.convert(_plain(r), S3Trigger) for r in doc["s3"])
        except (msgspec.ValidationError, TypeError) as exc:
            raise DefinitionError(
                at, f"s3: {exc}", hint="a list of {bucket:, prefix:, suffix:, params:}"
            ) from None
    webhook = None
    if doc.get("webhook") is not None:
        raw_hook = doc["webhook"]
        try:
            webhook = msgspec.convert({} if raw_hook is True else _plain(raw_hook), WebhookTrigger)
        except (msgspec.ValidationError, TypeError) as exc:
            raise DefinitionError(
                at, f"webhook: {exc}", hint="webhook: {secret_env: NAME}"
            ) from None
    notify_doc = doc.get("notify") or []
    if not isinstance(notify_doc, list):
        raise DefinitionError(at, "notify: expected a list of rules", hint="notify: [{slack: URL}]")
    notify = []
    for i, item in enumerate(notify_doc):
        rule = rule_from_yaml(item, _at(path, item), f"notify[{i}]")
        try:
            check_rule(
                rule, f"notify[{i}]", [k for k in doc.get("params") or {} if k != "__line__"]
            )
        except RuleError as exc:
            raise DefinitionError(_at(path, item), exc.problem, hint=exc.hint) from None
        notify.append(rule)
    sla = None
    if doc.get("sla") is not None:
        sla = sla_from_yaml(doc["sla"], _at(path, doc["sla"]))
    try:
        spec = WorkflowSpec(
            notify=tuple(notify),
            sla=sla,
            on_assets=tuple(doc.get("on_assets") or ()),
            webhook=webhook,
            s3=s3,
            kafka=kafka,
            schedule=schedule,
            name=name,
            tasks=tuple(tasks),
            params=params,
            max_active_runs=doc.get("max_active_runs"),
            max_duration=doc.get("max_duration"),
            description=doc.get("description") or "",
            source=str(path),
        )
    except TypeError as exc:
        raise DefinitionError(at, str(exc)) from None
    return validate(spec)


def _at(path: Path, node: Any) -> str:
    line = node.get("__line__") if isinstance(node, dict) else None
    return f"{path}:{line}" if line else str(path)


def _task(path: Path, name: Any, body: Any) -> TaskSpec:
    if not isinstance(body, dict):
        raise DefinitionError(str(path), f"task {name!r} must be a mapping")
    at = _at(path, body)
    if not isinstance(name, str):
        raise DefinitionError(at, "every task needs a name")
    kinds = [k for k in TASK_KINDS if k in body]
    if len(kinds) != 1:
        found = ", ".join(kinds) if kinds else "none"
        raise DefinitionError(
            at,
            f"task {name!r} must have exactly one type key (found {found})",
            hint=f"task types: {', '.join(TASK_KINDS)}",
        )
    kind = kinds[0]
    allowed = _COMMON | _OPTIONS[kind] | {kind, "__line__"}
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise DefinitionError(
            at,
            f"task {name!r}: unknown option {unknown[0]!r} for a {kind} task",
            hint=f"options: {', '.join(sorted(allowed - {'__line__', kind}))}",
        )
    config: dict[str, Any] = {k: _plain(v) for k, v in body.items() if k in _OPTIONS[kind]}
    main = body[kind]
    if kind in _MAPPING_KINDS and isinstance(main, dict):
        config.pop(kind, None)  # dbt's `dbt` option (its executable) goes inside the mapping
        config.update({k: _plain(v) for k, v in main.items() if k != "__line__"})
    elif kind in _MAIN_KEY:
        config[_MAIN_KEY[kind]] = main
    elif kind == "switch" and isinstance(main, dict):
        config.update(_plain(main))
    elif kind == "switch" and isinstance(main, str):
        config["callable"] = main
    elif kind == "sleep" and isinstance(main, int | float):
        config["seconds"] = main
    if kind == "dbt":  # folders relative to this file, as for a whole project
        for key in ("project_dir", "profiles_dir"):
            if isinstance(config.get(key), str):
                folder = Path(config[key]).expanduser()
                config[key] = str((path.resolve().parent / folder).resolve())
    if kind == "switch" and "on" in config:
        config.setdefault("callable", "")
    after = body.get("after") or []
    after = [after] if isinstance(after, str) else after
    if kind == "map" and config.get("over") and config["over"] not in after:
        after = [config["over"], *after]
    if kind == "switch":
        targets = [t for branch in (config.get("cases") or {}).values() for t in branch]
        targets += config.get("default") or []
        config.setdefault("default", [])
    retry = body.get("retry")
    retries = body.get("retries", 2)
    if not isinstance(retries, int) or retries < 0:
        raise DefinitionError(
            at, f"task {name!r}: retries must be a whole number >= 0, not {retries!r}"
        )
    try:
        policy = (
            RetryPolicy(**{k: v for k, v in retry.items() if k != "__line__"})
            if isinstance(retry, dict)
            else RetryPolicy(max_attempts=retries + 1)
        )
    except TypeError as exc:
        raise DefinitionError(at, f"task {name!r}: {exc}") from None
    try:
        return task_spec(
            kind,
            config,
            name=name,
            upstream=tuple(str(a) for a in after),
            retry=policy,
            timeout=body.get("timeout"),
            trigger_rule=body.get("trigger_rule", "all_success"),
            produces=tuple(body.get("produces") or ()),
            description=body.get("description") or "",
        )
    except TaskDefinitionError as exc:
        raise DefinitionError(at, exc.problem, hint=exc.hint) from None


def _is_dbt_project(body: Any) -> bool:
    """A ``dbt:`` entry without a ``node``: a whole project (a string is its folder)."""
    if not isinstance(body, dict) or "dbt" not in body:
        return False
    main = body["dbt"]
    return isinstance(main, str) or (isinstance(main, dict) and "node" not in main)


_DBT_PROJECT_KEYS = {"project_dir", "select", "exclude", "prefix", *DBT_OPTIONS}
_DBT_COMMON = {"after", "retries", "retry", "timeout", "description"}


def _dbt_project(path: Path, name: Any, body: dict[str, Any]) -> tuple[Expansion, list[TaskSpec]]:
    """A ``dbt:`` project entry: its nodes as tasks (paths relative to this file)."""
    at = _at(path, body)
    if not isinstance(name, str):
        raise DefinitionError(at, "every task needs a name")
    main = body["dbt"]
    given = {"project_dir": main} if isinstance(main, str) else _plain(main)
    extra = {k: _plain(v) for k, v in body.items() if k in DBT_OPTIONS and k != "dbt"}
    options = {**extra, **given}
    unknown = sorted(set(options) - _DBT_PROJECT_KEYS) + sorted(
        set(body) - _DBT_COMMON - set(DBT_OPTIONS) - {"dbt", "__line__"}
    )
    if unknown:
        raise DefinitionError(
            at,
            f"dbt {name!r}: unknown option {unknown[0]!r}",
            hint=f"dbt: {{{', '.join(sorted(_DBT_PROJECT_KEYS))}}}; beside it: "
            f"{', '.join(sorted(_DBT_COMMON))}",
        )
    if not options.get("project_dir") or not isinstance(options["project_dir"], str):
        raise DefinitionError(at, f"dbt {name!r} needs project_dir: the dbt project's folder")
    base = path.resolve().parent
    for key in ("project_dir", "profiles_dir"):
        if isinstance(options.get(key), str):
            options[key] = str((base / Path(options[key]).expanduser()).resolve())
    prefix = options.pop("prefix", "") or ""
    try:
        expansion = expand(
            options.pop("project_dir"),
            select=options.pop("select", None),
            exclude=options.pop("exclude", None),
            prefix=str(prefix),
            options=options,
        )
    except DbtProjectError as exc:
        raise DefinitionError(at, f"dbt {name!r}: {exc.problem}", hint=exc.hint) from None
    after = body.get("after") or []
    after = [after] if isinstance(after, str) else after
    retries = body.get("retries", 0)
    if not isinstance(retries, int) or retries < 0:
        raise DefinitionError(
            at, f"dbt {name!r}: retries must be a whole number >= 0, not {retries!r}"
        )
    retry = body.get("retry")
    try:
        policy = (
            RetryPolicy(**{k: v for k, v in retry.items() if k != "__line__"})
            if isinstance(retry, dict)
            else RetryPolicy(max_attempts=retries + 1)
        )
    except TypeError as exc:
        raise DefinitionError(at, f"dbt {name!r}: {exc}") from None
    roots = set(expansion.roots)
    tasks = []
    for t in expansion.tasks:
        try:
            tasks.append(
                task_spec(
                    "dbt",
                    {**expansion.config, "node": t.node},
                    name=t.name,
                    upstream=(*t.upstream, *(str(a) for a in after if t.name in roots)),
                    retry=policy,
                    timeout=body.get("timeout"),
                    produces=t.produces,
                    description=t.description or body.get("description") or "",
                )
            )
        except TaskDefinitionError as exc:
            raise DefinitionError(at, f"dbt {name!r}: {exc.problem}", hint=exc.hint) from None
    return expansion, tasks


def _groups_resolved(
    path: Path, tasks: list[TaskSpec], groups: dict[str, Expansion]
) -> list[TaskSpec]:
    """A dbt project's name in ``after`` stands for its last tasks (its leaves)."""
    if not groups:
        return tasks
    names = {t.name for t in tasks}
    for group in groups:
        if group in names:
            raise DefinitionError(
                str(path),
                f"{group!r} names both a dbt project and one of its tasks or another",
                hint="rename the dbt entry, or give it a prefix:",
            )
    out = []
    for t in tasks:
        if any(u in groups for u in t.upstream):
            upstream: list[str] = []
            for u in t.upstream:
                for name in groups[u].leaves if u in groups else [u]:
                    if name not in upstream:
                        upstream.append(name)
            t = msgspec.structs.replace(t, upstream=tuple(upstream))
        out.append(t)
    return out


def _param(path: Path, name: str, body: Any, parent: Any) -> ParamSpec:
    if isinstance(body, str):
        body = {"type": body}
    if not isinstance(body, dict):
        raise DefinitionError(_at(path, parent), f"param {name!r} must be a type or a mapping")
    fields = {k: v for k, v in body.items() if k != "__line__"}
    try:
        import msgspec

        return msgspec.convert(fields, ParamSpec)
    except Exception as exc:
        raise DefinitionError(_at(path, body), f"param {name!r}: {exc}") from None


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if k != "__line__"}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def spec_to_yaml(spec: WorkflowSpec) -> str:
    """The definition as YAML (``durable show``): the same shape the YAML loader reads."""
    doc: dict[str, Any] = {"workflow": spec.name}
    if spec.description:
        doc["description"] = spec.description
    doc["version"] = spec.version
    if spec.params:
        doc["params"] = {k: _without_defaults(v) for k, v in spec.params.items()}
    for key in ("max_active_runs", "max_duration"):
        if getattr(spec, key) is not None:
            doc[key] = getattr(spec, key)
    if spec.schedule is not None:
        doc["schedule"] = msgspec.to_builtins(spec.schedule)
    if spec.kafka:
        doc["kafka"] = msgspec.to_builtins(spec.kafka)
    if spec.s3:
        doc["s3"] = msgspec.to_builtins(spec.s3)
    if spec.webhook is not None:
        doc["webhook"] = msgspec.to_builtins(spec.webhook)
    if spec.on_assets:
        doc["on_assets"] = list(spec.on_assets)
    if spec.notify:
        doc["notify"] = [rule_to_yaml(r) for r in spec.notify]
    if spec.sla is not None:
        doc["sla"] = msgspec.to_builtins(spec.sla)
    tasks: dict[str, Any] = {}
    for t in spec.tasks:
        body: dict[str, Any] = {}
        config = t.config()
        main_key = _MAIN_KEY.get(t.kind)
        if t.kind in ("dbt", "job", "sensor"):  # their options under their type key
            body[t.kind] = config
            config = {}
        elif main_key:
            body[t.kind] = config.pop(main_key)
        elif t.kind == "switch":
            body["switch"] = {
                k: config.pop(k) for k in ("callable", "cases", "default") if k in config
            }
        else:
            body[t.kind] = config.pop("seconds", None) if t.kind == "sleep" else None
        body.update(config)
        if t.upstream:
            body["after"] = list(t.upstream)
        if t.retry != RetryPolicy():
            body["retry"] = _without_defaults(t.retry)
        if t.timeout is not None:
            body["timeout"] = t.timeout
        if t.trigger_rule != "all_success":
            body["trigger_rule"] = t.trigger_rule
        if t.produces:
            body["produces"] = list(t.produces)
        if t.description:
            body["description"] = t.description
        tasks[t.name] = body
    doc["tasks"] = tasks
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, width=100)


def _without_defaults(value: Any) -> Any:
    import msgspec

    return msgspec.to_builtins(value)

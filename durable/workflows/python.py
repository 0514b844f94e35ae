"""The Python API: declare a workflow and its tasks with decorators.

from durable import Workflow, Param

wf = Workflow("daily_sales", params={"date": Param("date", required=True)})

@wf.task(retries=3, timeout=60)
async def fetch(ctx):
    return {"rows": 100}

@wf.task(after=[fetch])
def transform(ctx, fetch):          # upstream outputs arrive by parameter name
    return {"rows": fetch["rows"]}

fetch >> transform                  # the same dependency, written as a chain

shop = wf.dbt("dbt_shop", select=["path:models/marts"])   # a dbt project: a task per node
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeAlias

import msgspec

from durable.core.events import NotifyRule, TriggerRule
from durable.core.kafka import KafkaTrigger
from durable.core.retry import RetryPolicy
from durable.core.s3 import S3Trigger, WebhookTrigger
from durable.core.schedule import Schedule
from durable.core.sla import Sla
from durable.core.spec import DefinitionError, ParamSpec, WorkflowSpec, validate
from durable.core.tasks import TaskDefinitionError, TaskSpec, task_spec
from durable.workflows.dbt import DbtProjectError, Expansion, expand

__all__ = ["DbtProject", "Param", "TaskRef", "Workflow"]


def Param(
    type: str = "str", *, default: Any = None, required: bool = False, description: str = ""
) -> ParamSpec:
    """A workflow parameter: ``Param("date", required=True)``, ``Param("int", default=7)``."""
    return ParamSpec(type=type, default=default, required=required, description=description)  # type: ignore[arg-type]


class TaskRef:
    """A declared task; ``a >> b`` makes ``b`` run after ``a``."""

    def __init__(self, workflow: Workflow, name: str) -> None:
        self.workflow = workflow
        self.name = name

    def __rshift__(self, other: Chained) -> Chained:
        for target in _firsts(other):
            self.workflow._add_upstream(target.name, self.name)
        return other

    def __rrshift__(self, other: list[TaskRef | DbtProject]) -> TaskRef:
        for source in _lasts(other):
            self.workflow._add_upstream(self.name, source.name)
        return self

    def __repr__(self) -> str:
        return f"<task {self.workflow.name}.{self.name}>"


class DbtProject:
    """The tasks of a dbt project in a workflow (:meth:`Workflow.dbt`), one per node.

    ``shop["stg_orders"]`` is a node's task (by task name, node name or unique id). In
    ``after=`` and on the left of ``>>`` the project stands for its last tasks (its
    leaves); ``extract >> shop`` runs its first tasks (its roots) after ``extract``.
    """

    def __init__(self, workflow: Workflow, name: str, expansion: Expansion) -> None:
        self.workflow = workflow
        self.name = name
        self.expansion = expansion
        self.tasks = {t.name: TaskRef(workflow, t.name) for t in expansion.tasks}
        self._by_node = {t.node: t.name for t in expansion.tasks}
        self._by_node_name = {t.node.split(".")[2]: t.name for t in expansion.tasks}

    def __getitem__(self, key: str) -> TaskRef:
        name = self._by_node.get(key) or key
        if name not in self.tasks:
            name = self._by_node_name.get(key, name)
        if name not in self.tasks:
            raise KeyError(
                f"dbt {self.name!r} has no task for {key!r} (tasks: {', '.join(self.tasks)})"
            )
        return self.tasks[name]

    def __iter__(self) -> Iterator[TaskRef]:
        return iter(self.tasks.values())

    def __len__(self) -> int:
        return len(self.tasks)

    @property
    def roots(self) -> list[TaskRef]:
        return [self.tasks[n] for n in self.expansion.roots]

    @property
    def leaves(self) -> list[TaskRef]:
        return [self.tasks[n] for n in self.expansion.leaves]

    def __rshift__(self, other: Chained) -> Chained:
        for target in _firsts(other):
            for leaf in self.leaves:
                self.workflow._add_upstream(target.name, leaf.name)
        return other

    def __rrshift__(self, other: list[TaskRef | DbtProject]) -> DbtProject:
        for source in _lasts(other):
            for root in self.roots:
                self.workflow._add_upstream(root.name, source.name)
        return self

    def __repr__(self) -> str:
        return f"<dbt {self.workflow.name}.{self.name}: {len(self.tasks)} tasks>"


Chained: TypeAlias = "TaskRef | DbtProject | list[TaskRef | DbtProject]"
Upstream: TypeAlias = "Iterable[TaskRef | DbtProject | str] | TaskRef | DbtProject | str | None"


class Workflow:
    """A workflow under construction; :meth:`spec` gives the validated definition."""

    def __init__(
        self,
        name: str,
        *,
        params: dict[str, ParamSpec] | None = None,
        max_active_runs: int | None = None,
        max_duration: float | None = None,
        schedule: Schedule | None = None,
        kafka: list[KafkaTrigger] | None = None,
        s3: list[S3Trigger] | None = None,
        webhook: WebhookTrigger | None = None,
        on_assets: list[str] | None = None,
        description: str = "",
        notify: list[NotifyRule] | None = None,
        sla: Sla | None = None,
    ) -> None:
        """``notify``: who is told what (:func:`~durable.Email`, :func:`~durable.Slack`,
        :func:`~durable.Webhook`, :func:`~durable.PagerDuty`); ``sla``: when runs are
        expected done and how fresh assets must be (:class:`~durable.Sla`)."""
        self.name = name
        self.notify = tuple(notify or ())
        # as YAML reads it (seconds as floats): the same SLA gives the same version
        self.sla = msgspec.convert(msgspec.to_builtins(sla), Sla) if sla is not None else None
        self.schedule = schedule
        self.kafka = tuple(kafka or ())
        self.s3 = tuple(s3 or ())
        self.webhook = webhook
        self.on_assets = tuple(on_assets or ())
        self.params = dict(params or {})
        self.max_active_runs = max_active_runs
        self.max_duration = max_duration
        self.description = description
        self._tasks: dict[str, dict[str, Any]] = {}
        self._groups: dict[str, DbtProject] = {}
        self.callables: dict[str, Callable[..., Any]] = {}
        self.source = ""

    # -- task declarations ---------------------------------------------------------------

    def task(
        self,
        fn: Callable[..., Any] | None = None,
        *,
        name: str | None = None,
        after: Upstream = None,
        retries: int = 2,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        trigger_rule: TriggerRule = "all_success",
        produces: list[str] | None = None,
    ) -> Any:
        """Declare a Python task (sync or async). Use bare or with options."""

        def register(f: Callable[..., Any]) -> TaskRef:
            task_name = name or f.__name__
            self.callables[task_name] = f
            ref = f"{f.__module__}:{f.__qualname__}"
            return self._declare(
                task_name,
                "python",
                {"callable": ref},
                after,
                retries,
                retry,
                timeout,
                trigger_rule,
                description=inspect.getdoc(f) or "",
                produces=produces,
            )

        return register(fn) if fn is not None else register

    def switch(
        self,
        *,
        cases: dict[str, list[TaskRef | str]],
        default: list[TaskRef | str] | None = None,
        after: Upstream = None,
        name: str | None = None,
    ) -> Callable[[Callable[..., Any]], TaskRef]:
        """A switch: the function returns a case key (or a list of keys); tasks in the
        other branches are skipped, and the skips propagate."""

        def register(f: Callable[..., Any]) -> TaskRef:
            task_name = name or f.__name__
            self.callables[task_name] = f
            config = {
                "callable": f"{f.__module__}:{f.__qualname__}",
                "cases": {str(k): [_name(t) for t in v] for k, v in cases.items()},
                "default": [_name(t) for t in default or []],
            }
            ref = self._declare(task_name, "switch", config, after, 1, None, None, "all_success")
            for targets in [*cases.values(), default or []]:
                for target in targets:
                    if _name(target) not in self._tasks:
                        raise DefinitionError(
                            f"workflow {self.name!r}",
                            f"switch {task_name!r} routes to unknown task {_name(target)!r}",
                            hint="declare the branch tasks before the switch",
                        )
                    self._add_upstream(_name(target), task_name)
            return ref

        return register

    def map(
        self,
        *,
        over: TaskRef | str,
        key: str | None = None,
        max_parallel: int | None = None,
        after: Upstream = None,
        name: str | None = None,
        retries: int = 2,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
    ) -> Callable[[Callable[..., Any]], TaskRef]:
        """Dynamic fan-out: the function runs once per item of ``over``'s output (a list,
        or its field ``key``), each as a task of its own with its own attempts; the map
        task's output is the list of their outputs. The function takes ``item``."""

        def register(f: Callable[..., Any]) -> TaskRef:
            task_name = name or f.__name__
            self.callables[task_name] = f
            config: dict[str, Any] = {
                "callable": f"{f.__module__}:{f.__qualname__}",
                "over": _name(over),
            }
            if key is not None:
                config["key"] = key
            if max_parallel is not None:
                config["max_parallel"] = max_parallel
            upstream = [over, *[a for a in _as_list(after) if _name(a) != _name(over)]]
            return self._declare(
                task_name,
                "map",
                config,
                upstream,
                retries,
                retry,
                timeout,
                "all_success",
                description=inspect.getdoc(f) or "",
            )

        return register

    def shell(
        self,
        name: str,
        command: str,
        *,
        after: Upstream = None,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        max_memory_mb: int | None = None,
        retries: int = 2,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        trigger_rule: TriggerRule = "all_success",
        produces: list[str] | None = None,
    ) -> TaskRef:
        """A shell command; stdout/stderr go to the task log; non-zero exit fails."""
        config: dict[str, Any] = {"command": command}
        if env:
            config["env"] = env
        if cwd:
            config["cwd"] = cwd
        if max_memory_mb:
            config["max_memory_mb"] = max_memory_mb
        return self._declare(
            name,
            "shell",
            config,
            after,
            retries,
            retry,
            timeout,
            trigger_rule,
            produces=produces,
        )

    def http(
        self,
        name: str,
        url: str,
        *,
        method: str = "GET",
        after: Upstream = None,
        headers: dict[str, str] | None = None,
        json: Any = None,
        body: str | None = None,
        expect: list[int] | None = None,
        retries: int = 2,
        retry: RetryPolicy | None = None,
        timeout: float | None = 30.0,
        trigger_rule: TriggerRule = "all_success",
    ) -> TaskRef:
        """An HTTP call; 5xx and connection errors are retried, 4xx are not."""
        config: dict[str, Any] = {"url": url, "method": method}
        for key, value in (
            ("headers", headers),
            ("json", json),
            ("body", body),
            ("expect", expect),
        ):
            if value is not None:
                config[key] = value
        return self._declare(name, "http", config, after, retries, retry, timeout, trigger_rule)

    def sql(
        self,
        name: str,
        query: str,
        *,
        after: Upstream = None,
        connection: str = "durable",
        args: list[Any] | None = None,
        transactional: bool = False,
        retries: int = 2,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        trigger_rule: TriggerRule = "all_success",
        produces: list[str] | None = None,
    ) -> TaskRef:
        """SQL on a named connection. ``transactional=True`` (durable's own database only):
        the statement and the task's completion commit together — exactly-once effects."""
        config: dict[str, Any] = {"query": query, "connection": connection}
        if args:
            config["args"] = args
        if transactional:
            config["transactional"] = True
        return self._declare(
            name,
            "sql",
            config,
            after,
            retries,
            retry,
            timeout,
            trigger_rule,
            produces=produces,
        )

    def sleep(
        self,
        name: str,
        *,
        seconds: float | None = None,
        until: str | None = None,
        after: Upstream = None,
    ) -> TaskRef:
        """A durable sleep: the wake-up time is recorded, so a restart keeps it."""
        config: dict[str, Any] = {"seconds": seconds} if seconds is not None else {"until": until}
        return self._declare(name, "sleep", config, after, 1, None, None, "all_success")

    def job(
        self,
        name: str,
        *,
        submit_url: str,
        job_id: str,
        status_url: str,
        state: str,
        succeeded: list[str],
        failed: list[str],
        method: str | None = None,
        headers: dict[str, str] | None = None,
        json: Any = None,
        body: str | None = None,
        result: str | None = None,
        message: str | None = None,
        cancel_url: str | None = None,
        cancel_method: str | None = None,
        poll_interval: float | None = None,
        max_poll_interval: float | None = None,
        after: Upstream = None,
        retries: int = 0,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        trigger_rule: TriggerRule = "all_success",
        produces: list[str] | None = None,
    ) -> TaskRef:
        """An external job behind an HTTP API: submitted once (its id recorded before any
        wait), then polled at ``status_url`` until its ``state`` is one of ``succeeded``
        or ``failed``. A restart polls the same job; it never submits a second one."""
        config = _given(
            submit_url=submit_url,
            job_id=job_id,
            status_url=status_url,
            state=state,
            succeeded=succeeded,
            failed=failed,
            method=method,
            headers=headers,
            json=json,
            body=body,
            result=result,
            message=message,
            cancel_url=cancel_url,
            cancel_method=cancel_method,
            poll_interval=poll_interval,
            max_poll_interval=max_poll_interval,
        )
        return self._declare(
            name, "job", config, after, retries, retry, timeout, trigger_rule, produces=produces
        )

    def spark(
        self,
        name: str,
        application: str,
        *,
        args: list[str] | None = None,
        conf: dict[str, str] | None = None,
        master: str | None = None,
        deploy_mode: str | None = None,
        main_class: str | None = None,
        py_files: list[str] | None = None,
        jars: list[str] | None = None,
        env: dict[str, str] | None = None,
        spark_submit: str | None = None,
        poll_interval: float | None = None,
        after: Upstream = None,
        retries: int = 0,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        trigger_rule: TriggerRule = "all_success",
        produces: list[str] | None = None,
    ) -> TaskRef:
        """A Spark application (a PySpark script or a JAR) run by ``spark-submit``; its
        driver's output goes to the task log; a restart reattaches to it."""
        config = _given(
            application=application,
            args=args,
            conf=conf,
            master=master,
            deploy_mode=deploy_mode,
            main_class=main_class,
            py_files=py_files,
            jars=jars,
            env=env,
            spark_submit=spark_submit,
            poll_interval=poll_interval,
        )
        return self._declare(
            name, "spark", config, after, retries, retry, timeout, trigger_rule, produces=produces
        )

    def sensor(
        self,
        name: str,
        *,
        timeout: float,
        s3: dict[str, Any] | None = None,
        sql: dict[str, Any] | None = None,
        run: dict[str, Any] | None = None,
        asset: dict[str, Any] | None = None,
        poke_interval: float | None = None,
        max_poke_interval: float | None = None,
        backoff: float | None = None,
        soft_fail: bool | None = None,
        after: Upstream = None,
        retries: int = 0,
        trigger_rule: TriggerRule = "all_success",
    ) -> TaskRef:
        """Wait for a condition — ``s3`` (an object), ``sql`` (a truthy row), ``run``
        (another workflow's run for the same logical time), ``asset`` (updated after a
        time) — poking with backoff, holding no slot in between, for at most
        ``timeout`` seconds (kept across restarts); ``soft_fail`` skips instead of
        failing when time runs out."""
        config = _given(
            s3=s3,
            sql=sql,
            run=run,
            asset=asset,
            poke_interval=poke_interval,
            max_poke_interval=max_poke_interval,
            backoff=backoff,
            soft_fail=soft_fail,
        )
        return self._declare(name, "sensor", config, after, retries, None, timeout, trigger_rule)

    def dbt(
        self,
        project_dir: str | Path,
        *,
        select: list[str] | str | None = None,
        exclude: list[str] | str | None = None,
        mode: str | None = None,
        profiles_dir: str | Path | None = None,
        target: str | None = None,
        vars: dict[str, Any] | None = None,
        full_refresh: bool | None = None,
        dbt: str | None = None,
        prefix: str = "",
        name: str | None = None,
        after: Upstream = None,
        retries: int = 0,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
    ) -> DbtProject:
        """A dbt project as tasks: one per selected model, seed, snapshot and test, with
        the dependencies of its ``manifest.json`` (``dbt parse`` runs first when it is
        missing or stale). Each model, seed and snapshot produces the asset of its
        relation (``schema.alias``).

        ``select``/``exclude``: dbt's simple selectors (names, ``tag:``, ``path:``,
        ``resource_type:``, ``+`` for ancestors/descendants); every selector must match.
        ``mode``: ``watched`` (default: one ``dbt build`` for the nodes due together,
        followed node by node) or ``node`` (one dbt call per node). ``after``: what the
        project's first tasks wait for. Relative paths are relative to the file that
        declares the workflow. ``retries``, ``retry`` and ``timeout`` apply to each node.
        """
        base = _caller_folder()
        project = _resolved(project_dir, base)
        label = name or project.name
        options: dict[str, Any] = _given(
            mode=mode,
            profiles_dir=str(_resolved(profiles_dir, base)) if profiles_dir else None,
            target=target,
            vars=vars,
            full_refresh=full_refresh,
            dbt=dbt,
        )
        try:
            expansion = expand(
                project, select=select, exclude=exclude, prefix=prefix, options=options
            )
        except DbtProjectError as exc:
            raise DefinitionError(
                f"workflow {self.name!r}", f"dbt {label!r}: {exc.problem}", hint=exc.hint
            ) from None
        if label in self._groups or label in self._tasks:
            raise DefinitionError(
                f"workflow {self.name!r}",
                f"dbt {label!r}: the name is taken by another task or dbt project",
                hint="give this one another name=",
            )
        roots = set(expansion.roots)
        for t in expansion.tasks:
            self._declare(
                t.name,
                "dbt",
                {**expansion.config, "node": t.node},
                [*t.upstream, *(_as_list(after) if t.name in roots else [])],
                retries,
                retry,
                timeout,
                "all_success",
                description=t.description,
                produces=list(t.produces),
            )
        project_ref = DbtProject(self, label, expansion)
        self._groups[label] = project_ref
        return project_ref

    # -- building --------------------------------------------------------------------------

    def _declare(
        self,
        name: str,
        kind: str,
        config: dict[str, Any],
        after: Upstream,
        retries: int,
        retry: RetryPolicy | None,
        timeout: float | None,
        trigger_rule: TriggerRule,
        description: str = "",
        produces: list[str] | None = None,
    ) -> TaskRef:
        if name in self._tasks:
            raise DefinitionError(f"workflow {self.name!r}", f"task {name!r} is declared twice")
        if name in self._groups:
            raise DefinitionError(
                f"workflow {self.name!r}", f"task {name!r}: the name is a dbt project's"
            )
        if retries < 0:
            raise DefinitionError(f"workflow {self.name!r}", f"task {name!r}: retries must be >= 0")
        upstream = [_name(a) for a in _as_list(after)]
        self._tasks[name] = {
            "name": name,
            "kind": kind,
            "upstream": upstream,
            "config": config,
            "retry": retry or RetryPolicy(max_attempts=retries + 1),
            "timeout": timeout,
            "trigger_rule": trigger_rule,
            "produces": tuple(produces or ()),
            "description": description,
        }
        return TaskRef(self, name)

    def _add_upstream(self, task: str, upstream: str) -> None:
        if task not in self._tasks:
            raise DefinitionError(f"workflow {self.name!r}", f"unknown task {task!r}")
        if upstream not in self._tasks[task]["upstream"]:
            self._tasks[task]["upstream"].append(upstream)

    def spec(self) -> WorkflowSpec:
        """The validated definition (raises :class:`DefinitionError`)."""
        where = self.source or f"workflow {self.name!r}"
        tasks: list[TaskSpec] = []
        for t in self._tasks.values():
            common = {k: v for k, v in t.items() if k not in ("kind", "config")}
            # a dbt project named as upstream stands for its leaves
            upstream: list[str] = []
            for u in t["upstream"]:
                group = self._groups.get(u)
                for name in [leaf.name for leaf in group.leaves] if group else [u]:
                    if name not in upstream:
                        upstream.append(name)
            try:
                tasks.append(
                    task_spec(t["kind"], t["config"], **{**common, "upstream": tuple(upstream)})
                )
            except TaskDefinitionError as exc:
                raise DefinitionError(where, exc.problem, hint=exc.hint) from None
        return validate(
            WorkflowSpec(
                name=self.name,
                tasks=tuple(tasks),
                params=self.params,
                max_active_runs=self.max_active_runs,
                max_duration=self.max_duration,
                schedule=self.schedule,
                kafka=self.kafka,
                s3=self.s3,
                webhook=self.webhook,
                on_assets=self.on_assets,
                description=self.description,
                source=self.source,
                notify=self.notify,
                sla=self.sla,
            )
        )


def _name(ref: TaskRef | str) -> str:
    return ref.name if isinstance(ref, TaskRef) else ref


def _as_list(after: Upstream) -> list[TaskRef | str]:
    """Upstream tasks as given; a dbt project stands for its leaves."""
    if after is None:
        return []
    items = [after] if isinstance(after, TaskRef | DbtProject | str) else list(after)
    return [leaf for item in items for leaf in _lasts(item)]


def _lasts(item: Any) -> list[Any]:
    """What runs last of an item of a chain: a project's leaves, a task itself."""
    if isinstance(item, list):
        return [x for i in item for x in _lasts(i)]
    return item.leaves if isinstance(item, DbtProject) else [item]


def _firsts(item: Any) -> list[TaskRef]:
    """What runs first of an item of a chain: a project's roots, a task itself."""
    if isinstance(item, list):
        return [x for i in item for x in _firsts(i)]
    return item.roots if isinstance(item, DbtProject) else [item]


def _caller_folder() -> Path:
    """The folder of the file that called the method calling this (a workflow file)."""
    frame = sys._getframe(2)
    file = frame.f_globals.get("__file__")
    return Path(file).resolve().parent if file else Path.cwd()


def _resolved(path: str | Path, base: Path) -> Path:
    p = Path(path).expanduser()
    return (p if p.is_absolute() else base / p).resolve()


def _given(**options: Any) -> dict[str, Any]:
    """The options given (not None): a definition holds what was written."""
    return {k: v for k, v in options.items() if v is not None}

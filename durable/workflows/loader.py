"""Finding workflows: Python files and YAML files under a path, into a registry."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from durable.core.events import NotifyRule
from durable.core.spec import DefinitionError, WorkflowSpec
from durable.core.tasks import MapTask, PythonTask, SwitchTask
from durable.workflows.python import Workflow
from durable.workflows.yaml import load_yaml_spec

__all__ = ["LoadedWorkflow", "WorkflowRegistry", "load_workflows"]


class LoadedWorkflow:
    """A workflow's definition, the code that runs its Python tasks, and the text of the
    file it was loaded from (None when it was not loaded from a file)."""

    def __init__(
        self,
        spec: WorkflowSpec,
        callables: dict[str, Callable[..., Any]],
        source_text: str | None = None,
    ) -> None:
        self.spec = spec
        self.callables = callables
        self.source_text = source_text

    def callable_for(self, task: str) -> Callable[..., Any]:
        fn = self.callables.get(task)
        if fn is not None:
            return fn
        spec = self.spec.task(task)
        ref = ""
        if isinstance(spec, PythonTask | MapTask | SwitchTask) and spec.callable:
            ref = spec.callable
        fn = resolve_callable(ref, where=f"{self.spec.source or self.spec.name}: task {task!r}")
        self.callables[task] = fn
        return fn


class WorkflowRegistry:
    """Workflows by name, and every loaded version by (name, version).

    ``notify``: the global notification rules (``notifications.yaml``), answered for
    every workflow after its own.
    """

    def __init__(self, notify: tuple[NotifyRule, ...] = ()) -> None:
        self._by_name: dict[str, LoadedWorkflow] = {}
        self._by_version: dict[tuple[str, str], LoadedWorkflow] = {}
        self.notify = notify

    def add(self, loaded: LoadedWorkflow) -> None:
        spec = loaded.spec
        existing = self._by_name.get(spec.name)
        if existing is not None and existing.spec.version != spec.version:
            raise DefinitionError(
                spec.source or spec.name,
                f"workflow {spec.name!r} is also defined in {existing.spec.source or '?'}",
                hint="workflow names must be unique",
            )
        self._by_name[spec.name] = loaded
        self._by_version[(spec.name, spec.version)] = loaded

    def get(self, name: str) -> LoadedWorkflow:
        try:
            return self._by_name[name]
        except KeyError:
            known = ", ".join(sorted(self._by_name)) or "(none loaded)"
            raise DefinitionError(
                f"workflow {name!r}", "is not defined", hint=f"known workflows: {known}"
            ) from None

    def version(self, name: str, version: str) -> LoadedWorkflow | None:
        return self._by_version.get((name, version))

    def versions(self) -> list[tuple[str, str]]:
        return sorted(self._by_version)

    def __iter__(self) -> Any:
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)


def load_workflows(*paths: Path) -> WorkflowRegistry:
    """Load every workflow in ``paths`` (files, or folders of .py/.yaml/.yml files)."""
    registry = WorkflowRegistry()
    for path in paths:
        if not path.exists():
            raise DefinitionError(str(path), "no such file or folder")
        files = sorted(path.iterdir()) if path.is_dir() else [path]
        for file in files:
            if file.suffix == ".py" and not file.name.startswith("_"):
                for loaded in _load_python(file):
                    registry.add(loaded)
            elif file.suffix in (".yaml", ".yml"):
                _importable(file.parent)  # `python: module:function` resolves from here
                spec = load_yaml_spec(file)
                registry.add(LoadedWorkflow(spec, {}, _text(file)))
    return registry


def _text(file: Path) -> str:
    # the text as loaded, shown by the UI and kept with the version; never fails a load
    return file.read_bytes().decode("utf-8", errors="replace")


def _importable(folder: Path) -> None:
    path = str(folder.resolve())
    if path not in sys.path:
        sys.path.insert(0, path)


def _load_python(file: Path) -> list[LoadedWorkflow]:
    _importable(file.parent)  # so the file's own imports, and YAML refs, resolve
    module_name = file.stem
    try:
        spec = importlib.util.spec_from_file_location(module_name, file)
        if spec is None or spec.loader is None:
            raise DefinitionError(str(file), "cannot be imported")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module  # `module:function` references resolve to it
        spec.loader.exec_module(module)
    except DefinitionError:
        raise
    except Exception as exc:
        frames = traceback.extract_tb(exc.__traceback__)
        line = next((f.lineno for f in reversed(frames) if f.filename == str(file)), None)
        where = f"{file}:{line}" if line else str(file)
        raise DefinitionError(where, f"{type(exc).__name__}: {exc}") from None
    found = []
    text = _text(file)
    for value in vars(module).values():
        if isinstance(value, Workflow):
            value.source = str(file)
            found.append(LoadedWorkflow(value.spec(), dict(value.callables), text))
    return found


def resolve_callable(ref: str, *, where: str) -> Callable[..., Any]:
    """Import ``module:function`` (``module.attr:Class.method`` works too)."""
    module_name, _, attr = ref.partition(":")
    if not module_name or not attr:
        raise DefinitionError(where, f"callable {ref!r} must look like module:function")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise DefinitionError(where, f"cannot import {ref!r}: {exc}") from None
    if not callable(obj):
        raise DefinitionError(where, f"{ref!r} is not callable")
    return obj  # type: ignore[no-any-return]

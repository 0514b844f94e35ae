"""dbt projects as tasks: a project's ``manifest.json`` turned into one task per node.

At load time (so a workflow's version pins the DAG), :func:`expand` reads the project's
``target/manifest.json`` — running ``dbt parse`` first when it is missing or older than the
project's files — selects nodes (:func:`select_nodes`, dbt's simplest selector forms), and
describes one :class:`~durable.core.tasks.DbtTask` per selected model, seed, snapshot and
test: its upstream tasks are its parents in the manifest (tests after their model, and, as
``dbt build`` orders them, a node after the tests of its parents), and each model, seed and
snapshot produces the asset of its relation, ``schema.alias``.

Errors name the workflow, the dbt entry, the option and its value (:class:`DbtProjectError`).
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import msgspec
import yaml

from durable.core.errors import DurableError

__all__ = [
    "DBT_OPTIONS",
    "SELECTABLE",
    "DbtNode",
    "DbtProjectError",
    "Expansion",
    "Manifest",
    "NodeTask",
    "dbt_executable",
    "expand",
    "load_manifest",
    "node_selectors",
    "plain_text",
    "select_nodes",
    "target_dir",
]

SELECTABLE: tuple[str, ...] = ("model", "seed", "snapshot", "test")
"""The resource types that become tasks (``dbt build`` runs these)."""
DBT_OPTIONS: tuple[str, ...] = ("mode", "profiles_dir", "target", "vars", "full_refresh", "dbt")
"""Options every task of a project shares (those of :class:`~durable.core.tasks.DbtTask`)."""
_METHODS = ("fqn", "tag", "path", "resource_type", "package", "config.materialized")
_PARSE_TIMEOUT = 600.0
_SKIP_DIRS = {"dbt_packages", "logs", "target", "node_modules", "__pycache__"}
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_CLOCK = re.compile(r"^\d\d:\d\d:\d\d(\.\d+)?\s+")


class DbtProjectError(DurableError):
    """A dbt project, or what a workflow selects of it, that cannot become tasks.
    ``problem`` names the dbt entry and the option; the caller adds the workflow."""

    def __init__(self, problem: str, *, hint: str | None = None) -> None:
        super().__init__(problem, hint=hint)
        self.problem = problem


class DependsOn(msgspec.Struct, frozen=True):
    nodes: tuple[str, ...] = ()


class NodeConfig(msgspec.Struct, frozen=True):
    materialized: str | None = None
    enabled: bool = True


class DbtNode(msgspec.Struct, frozen=True):
    """What durable reads of one node of a manifest."""

    unique_id: str
    resource_type: str
    name: str
    package_name: str
    fqn: tuple[str, ...]
    original_file_path: str = ""
    depends_on: DependsOn = DependsOn()
    config: NodeConfig = NodeConfig()
    tags: tuple[str, ...] = ()
    database: str | None = None
    schema: str | None = None
    alias: str | None = None
    description: str = ""

    @property
    def ephemeral(self) -> bool:
        return self.resource_type == "model" and self.config.materialized == "ephemeral"

    @property
    def relation(self) -> str | None:
        """The asset this node writes: ``schema.alias`` (None for tests)."""
        if self.resource_type == "test" or self.ephemeral or not self.schema:
            return None
        return f"{self.schema}.{self.alias or self.name}"


class Metadata(msgspec.Struct, frozen=True):
    project_name: str = ""
    dbt_version: str = ""


class Manifest(msgspec.Struct, frozen=True):
    """The nodes of a dbt project's ``manifest.json`` (in its order), and their children."""

    metadata: Metadata
    nodes: dict[str, DbtNode]

    @property
    def project(self) -> str:
        return self.metadata.project_name

    def parents(self, uid: str) -> list[str]:
        """The node's parents among the manifest's nodes, through ephemeral models (which
        run inline, never as nodes of their own)."""
        out: list[str] = []
        for p in self.nodes[uid].depends_on.nodes:
            node = self.nodes.get(p)
            if node is None:
                continue  # a source, a metric: nothing to run
            if node.ephemeral:
                out += [q for q in self.parents(p) if q not in out]
            elif p not in out:
                out.append(p)
        return out

    def children(self) -> dict[str, list[str]]:
        kids: dict[str, list[str]] = {uid: [] for uid in self.nodes}
        for uid in self.nodes:
            for p in self.parents(uid):
                kids[p].append(uid)
        return kids


class NodeTask(msgspec.Struct, frozen=True, kw_only=True):
    """One task of an expanded project: its name, node, upstream tasks and asset."""

    name: str
    node: str
    resource_type: str
    upstream: tuple[str, ...]
    produces: tuple[str, ...]
    description: str


class Expansion(msgspec.Struct, frozen=True, kw_only=True):
    """The tasks of a project, in dependency order; ``roots`` have no upstream within the
    project, ``leaves`` nothing of the project after them."""

    project: str
    project_dir: str
    tasks: tuple[NodeTask, ...]
    config: dict[str, Any]
    """The options every task gets (``project_dir`` absolute, and :data:`DBT_OPTIONS`)."""

    @property
    def roots(self) -> list[str]:
        return [t.name for t in self.tasks if not t.upstream]

    @property
    def leaves(self) -> list[str]:
        used = {u for t in self.tasks for u in t.upstream}
        return [t.name for t in self.tasks if t.name not in used]


# -- the manifest ----------------------------------------------------------------------


def dbt_executable(given: str | None = None) -> str:
    """The dbt to run: ``given`` (a path or a name on PATH), else the ``dbt`` next to this
    Python, else the one on PATH."""
    if given:
        found = shutil.which(given) if os.sep not in given else given
        if found is None or not os.path.exists(found):
            raise DbtProjectError(
                f"dbt executable {given!r} not found", hint="give its path, or install dbt-core"
            )
        return found
    beside = Path(sys.executable).parent / "dbt"
    if beside.exists():
        return str(beside)
    found = shutil.which("dbt")
    if found is None:
        raise DbtProjectError(
            "dbt is not installed (no 'dbt' next to this Python nor on PATH)",
            hint='pip install "dbt-core<1.12" dbt-postgres (or your adapter)',
        )
    return found


def load_manifest(
    project_dir: str | Path,
    *,
    profiles_dir: str | None = None,
    target: str | None = None,
    vars: dict[str, Any] | None = None,
    dbt: str | None = None,
    parse: bool = True,
) -> Manifest:
    """The project's manifest, parsed again first (``dbt parse``) when it is missing or
    older than the project's files (and ``parse``)."""
    project = Path(project_dir)
    if not (project / "dbt_project.yml").is_file():
        raise DbtProjectError(
            f"project_dir {str(project_dir)!r} is not a dbt project (no dbt_project.yml)",
            hint="give the folder that holds dbt_project.yml",
        )
    manifest = target_dir(project) / "manifest.json"
    if parse and _stale(manifest, project, profiles_dir):
        _parse(project, manifest, profiles_dir=profiles_dir, target=target, vars=vars, dbt=dbt)
    try:
        return msgspec.json.decode(manifest.read_bytes(), type=Manifest)
    except OSError as exc:
        raise DbtProjectError(
            f"cannot read the manifest {str(manifest)!r}: {exc.strerror}",
            hint=f"run `dbt parse --project-dir {project}`",
        ) from None
    except msgspec.DecodeError as exc:
        raise DbtProjectError(
            f"{str(manifest)!r} is not a dbt manifest durable can read: {exc}",
            hint="durable reads manifests of dbt 1.5 and later; run `dbt parse` again",
        ) from None


def target_dir(project: Path) -> Path:
    """Where dbt writes its artifacts: ``DBT_TARGET_PATH``, the project's ``target-path``,
    else ``target``."""
    path = os.environ.get("DBT_TARGET_PATH")
    if not path:
        try:
            config = yaml.safe_load((project / "dbt_project.yml").read_text()) or {}
        except (OSError, yaml.YAMLError):
            config = {}
        path = config.get("target-path") if isinstance(config, dict) else None
    return project / str(path or "target")


def _stale(manifest: Path, project: Path, profiles_dir: str | None) -> bool:
    try:
        built = manifest.stat().st_mtime
    except OSError:
        return True
    skip = {target_dir(project).resolve()}
    for root, dirs, files in os.walk(project):
        here = Path(root)
        dirs[:] = [
            d
            for d in dirs
            if d not in _SKIP_DIRS and not d.startswith(".") and (here / d).resolve() not in skip
        ]
        for f in files:
            with contextlib.suppress(OSError):
                if (here / f).stat().st_mtime > built:
                    return True
    profiles = Path(profiles_dir) / "profiles.yml" if profiles_dir else None
    with contextlib.suppress(OSError):
        if profiles is not None and profiles.stat().st_mtime > built:
            return True
    return False


def _parse(
    project: Path,
    manifest: Path,
    *,
    profiles_dir: str | None,
    target: str | None,
    vars: dict[str, Any] | None,
    dbt: str | None,
) -> None:
    """``dbt parse`` into a folder of its own, then its manifest into the target folder
    in one rename: a reader never sees half a manifest, two loaders never mix theirs."""
    manifest.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".durable-parse-", dir=manifest.parent))
    try:
        seed = manifest.parent / "partial_parse.msgpack"
        if seed.exists():  # dbt's partial parsing: only what changed is parsed again
            shutil.copy2(seed, scratch / seed.name)
        argv = [dbt_executable(dbt), "parse", "--project-dir", str(project)]
        argv += ["--target-path", str(scratch), "--log-path", str(scratch)]
        argv += ["--log-format", "json", "--no-use-colors"]
        argv += common_flags(profiles_dir=profiles_dir, target=target, vars=vars)
        try:
            done = subprocess.run(
                argv,
                cwd=project,
                env=dbt_environment(),
                capture_output=True,
                text=True,
                timeout=_PARSE_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise DbtProjectError(
                f"`dbt parse` of {str(project)!r} took over {_PARSE_TIMEOUT:g} s"
            ) from None
        except OSError as exc:
            raise DbtProjectError(f"cannot run dbt ({argv[0]}): {exc.strerror}") from None
        if done.returncode != 0 or not (scratch / "manifest.json").exists():
            message = errors_of(done.stdout) or plain_text(done.stderr)[-1:]
            raise DbtProjectError(
                f"the dbt project {str(project)!r} does not parse: "
                + (" ".join(message) or f"dbt parse exited with {done.returncode}"),
                hint=f"run `dbt parse --project-dir {project}` to see it whole",
            )
        for name in ("partial_parse.msgpack", "manifest.json"):  # the manifest last
            if (scratch / name).exists():
                os.replace(scratch / name, manifest.parent / name)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def common_flags(
    *, profiles_dir: str | None, target: str | None, vars: dict[str, Any] | None
) -> list[str]:
    """The flags every dbt call of a project gets."""
    out: list[str] = []
    if profiles_dir:
        out += ["--profiles-dir", profiles_dir]
    if target:
        out += ["--target", target]
    if vars:
        out += ["--vars", msgspec.json.encode(vars).decode()]
    return out


def dbt_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment dbt runs in: this process's, without usage statistics sent home
    unless asked for."""
    env = dict(os.environ)
    env.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    env.update(extra or {})
    return env


def errors_of(output: str) -> list[str]:
    """The error messages in dbt's ``--log-format json`` output."""
    out = []
    for line in output.splitlines():
        try:
            event = msgspec.json.decode(line)
        except msgspec.DecodeError:
            continue
        info = event.get("info") if isinstance(event, dict) else None
        if isinstance(info, dict) and info.get("level") == "error" and info.get("msg"):
            out.append(" ".join(t.strip() for t in plain_text(str(info["msg"]))))
    return out


def plain_text(text: str) -> list[str]:
    """dbt's output as plain lines: no colours, no clock, no blank lines (indents kept:
    they are SQL's)."""
    lines = (_CLOCK.sub("", _ANSI.sub("", line)).rstrip() for line in text.splitlines())
    return [line for line in lines if line.strip()]


# -- selection -------------------------------------------------------------------------


def select_nodes(
    manifest: Manifest, select: Sequence[str] | None, exclude: Sequence[str] | None = None
) -> list[str]:
    """The nodes to run, in manifest order: those ``select`` matches (all when None) less
    those ``exclude`` matches, and the tests of what they select (tests whose parents
    are all selected: dbt's "cautious" indirect selection).

    Forms: a name (``stg_orders``, or a dotted fqn path), ``tag:``, ``path:`` (a file or
    a folder of the project), ``resource_type:``, ``package:``, ``config.materialized:``,
    ``fqn:``; ``+x`` adds x's ancestors, ``x+`` its descendants; ``a,b`` is the
    intersection; several selectors (or words of one string) their union.
    """
    runnable = {
        uid
        for uid, n in manifest.nodes.items()
        if n.resource_type in SELECTABLE and n.config.enabled and not n.ephemeral
    }
    chosen = set(runnable) if not select else _union(manifest, select, "select") & runnable
    if exclude:
        chosen -= _union(manifest, exclude, "exclude")
    if select:
        for uid in runnable - chosen:
            node = manifest.nodes[uid]
            parents = manifest.parents(uid)
            if node.resource_type == "test" and parents and all(p in chosen for p in parents):
                chosen.add(uid)
        if exclude:
            chosen -= _union(manifest, exclude, "exclude")
    return [uid for uid in manifest.nodes if uid in chosen]


def _union(manifest: Manifest, selectors: Sequence[str], option: str) -> set[str]:
    out: set[str] = set()
    for text in selectors:
        if not isinstance(text, str):
            raise DbtProjectError(f"{option}: {text!r} is not a selector (a string)")
        for word in text.split():
            out |= _intersection(manifest, word, option)
    return out


def _intersection(manifest: Manifest, word: str, option: str) -> set[str]:
    parts = word.split(",")
    result: set[str] | None = None
    for part in parts:
        found = _atom(manifest, part, option)
        result = found if result is None else result & found
    assert result is not None
    if not result:
        raise DbtProjectError(
            f"{option} {word!r} matches no node of the dbt project {manifest.project!r}",
            hint=_some_names(manifest),
        )
    return result


def _atom(manifest: Manifest, atom: str, option: str) -> set[str]:
    up = atom.startswith("+")
    down = atom.endswith("+") and len(atom) > 1
    core = atom[1 if up else 0 : -1 if down else None]
    method, sep, value = core.partition(":")
    if not sep:
        method, value = "fqn", core
    if method not in _METHODS or not value:
        raise DbtProjectError(
            f"{option} {atom!r}: unknown selector method {method!r}"
            if method not in _METHODS
            else f"{option} {atom!r} selects nothing (empty value)",
            hint=f"durable reads: a name, {', '.join(m + ':' for m in _METHODS)}, "
            "with + for ancestors/descendants, a,b for both",
        )
    found = {uid for uid, node in manifest.nodes.items() if _matches(node, method, value)}
    if not found:
        raise DbtProjectError(
            f"{option} {atom!r} matches no node of the dbt project {manifest.project!r}",
            hint=_some_names(manifest),
        )
    if up:
        found |= _closure(found, lambda uid: manifest.parents(uid))
    if down:
        kids = manifest.children()
        found |= _closure(found, lambda uid: kids[uid])
    return found


def _matches(node: DbtNode, method: str, value: str) -> bool:
    match method:
        case "fqn":
            return fqn_matches(node.fqn, value)
        case "tag":
            return any(fnmatch.fnmatchcase(t, value) for t in node.tags)
        case "path":
            path = value.rstrip("/")
            file = node.original_file_path
            return file == path or file.startswith(path + "/") or fnmatch.fnmatchcase(file, path)
        case "resource_type":
            return node.resource_type == value
        case "package":
            return fnmatch.fnmatchcase(node.package_name, value)
        case "config.materialized":
            return node.config.materialized == value
    return False  # pragma: no cover - methods are checked first


def fqn_matches(fqn: Sequence[str], selector: str) -> bool:
    """dbt's name/fqn matching: the node's name, or a dotted prefix of its fqn (with or
    without the package), ``*`` wildcards allowed."""
    for names in (list(fqn), list(fqn[1:])):
        if not names:
            continue
        if fnmatch.fnmatchcase(names[-1], selector):
            return True
        parts = selector.split(".")
        if len(parts) <= len(names) and all(
            fnmatch.fnmatchcase(n, p) for n, p in zip(names, parts, strict=False)
        ):
            return True
    return False


def _closure(start: set[str], step: Any) -> set[str]:
    seen: set[str] = set()
    todo = list(start)
    while todo:
        for nxt in step(todo.pop()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def _some_names(manifest: Manifest) -> str:
    models = [n.name for n in manifest.nodes.values() if n.resource_type == "model"]
    more = ", …" if len(models) > 8 else ""
    return f"its models: {', '.join(models[:8])}{more}" if models else "it has no models"


def node_selectors(manifest: Manifest, nodes: Iterable[str]) -> tuple[list[str], list[str]]:
    """``--select`` and ``--exclude`` arguments that pick exactly ``nodes`` (unique ids):
    each by its full fqn (``fqn:shop.staging.stg_orders``); a node whose fqn another's
    extends (a folder named like a model) is excluded by its own."""
    wanted = list(dict.fromkeys(nodes))
    select = [f"fqn:{'.'.join(manifest.nodes[uid].fqn)}" for uid in wanted]
    extra = {
        uid
        for uid, node in manifest.nodes.items()
        if uid not in wanted
        and node.resource_type in SELECTABLE
        and any(fqn_matches(node.fqn, s[4:]) for s in select)
    }
    exclude = [f"fqn:{'.'.join(manifest.nodes[uid].fqn)}" for uid in sorted(extra)]
    return select, exclude


# -- the tasks -------------------------------------------------------------------------


def expand(
    project_dir: str | Path,
    *,
    select: Sequence[str] | str | None = None,
    exclude: Sequence[str] | str | None = None,
    prefix: str = "",
    options: dict[str, Any] | None = None,
) -> Expansion:
    """The tasks of the selected nodes of the project in ``project_dir`` (absolute, or
    relative to the current folder). ``options``: :data:`DBT_OPTIONS` given (paths in
    them absolute already); ``prefix`` goes before every task name."""
    options = dict(options or {})
    unknown = sorted(set(options) - set(DBT_OPTIONS))
    if unknown:
        raise DbtProjectError(
            f"unknown option {unknown[0]!r}",
            hint=f"options: select, exclude, prefix, {', '.join(DBT_OPTIONS)}",
        )
    mode = options.get("mode")
    if mode is not None and mode not in ("node", "watched"):
        raise DbtProjectError(f"mode must be 'node' or 'watched', not {mode!r}")
    vars = options.get("vars")
    if vars is not None and not isinstance(vars, dict):
        raise DbtProjectError(f"vars must be a mapping, not {vars!r}")
    project = Path(project_dir).resolve()
    manifest = load_manifest(
        project,
        profiles_dir=options.get("profiles_dir"),
        target=options.get("target"),
        vars=vars,
        dbt=options.get("dbt"),
    )
    selected = select_nodes(manifest, _listed(select, "select"), _listed(exclude, "exclude"))
    if not selected:
        raise DbtProjectError(
            f"nothing to run in the dbt project {manifest.project!r}: no enabled model, "
            "seed, snapshot or test is selected",
            hint=_some_names(manifest),
        )
    names = _task_names(manifest, selected, prefix)
    chosen = set(selected)
    tests_of: dict[str, list[str]] = {}
    for uid in selected:
        if manifest.nodes[uid].resource_type == "test":
            for p in manifest.parents(uid):
                tests_of.setdefault(p, []).append(uid)
    ancestors: dict[str, set[str]] = {}
    tasks = []
    for uid in selected:
        node = manifest.nodes[uid]
        parents = manifest.parents(uid)
        upstream = [p for p in parents if p in chosen]
        if node.resource_type != "test":
            # as `dbt build`: after the tests of its parents (those whose every parent
            # is an ancestor of this node: no cycle is possible then)
            mine = _ancestors(manifest, uid, ancestors)
            for p in parents:
                for test in tests_of.get(p, []):
                    if test not in upstream and set(manifest.parents(test)) <= mine:
                        upstream.append(test)
        relation = node.relation
        tasks.append(
            NodeTask(
                name=names[uid],
                node=uid,
                resource_type=node.resource_type,
                upstream=tuple(names[u] for u in upstream),
                produces=(relation,) if relation else (),
                description=node.description,
            )
        )
    config: dict[str, Any] = {"project_dir": str(project)}
    config.update({k: options[k] for k in DBT_OPTIONS if options.get(k) is not None})
    return Expansion(
        project=manifest.project,
        project_dir=str(project),
        tasks=tuple(_ordered(tasks)),
        config=config,
    )


def _listed(value: Sequence[str] | str | None, option: str) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise DbtProjectError(f"{option} must be a selector or a list of them, not {value!r}")
    return list(value)


def _ancestors(manifest: Manifest, uid: str, memo: dict[str, set[str]]) -> set[str]:
    if uid not in memo:
        out: set[str] = set()
        for p in manifest.parents(uid):
            out.add(p)
            out |= _ancestors(manifest, p, memo)
        memo[uid] = out
    return memo[uid]


def _task_names(manifest: Manifest, selected: list[str], prefix: str) -> dict[str, str]:
    """Readable, unique task names: the node's name; ``package.name`` when two share it;
    the unique id when even that is shared."""

    def clean(text: str) -> str:
        return prefix + re.sub(r"[^A-Za-z0-9_.-]", "_", text)

    counts: dict[str, int] = {}
    for uid in selected:
        counts[manifest.nodes[uid].name] = counts.get(manifest.nodes[uid].name, 0) + 1
    names: dict[str, str] = {}
    for uid in selected:
        node = manifest.nodes[uid]
        name = node.name if counts[node.name] == 1 else f"{node.package_name}.{node.name}"
        names[uid] = clean(name)
    if len(set(names.values())) < len(names):
        names = {uid: clean(uid) for uid in selected}
    return names


def _ordered(tasks: list[NodeTask]) -> list[NodeTask]:
    """Parents first, layer by layer (seeds, then what reads them…), in the manifest's
    order within a layer."""
    placed: set[str] = set()
    out: list[NodeTask] = []
    rest = list(tasks)
    while rest:
        ready = [t for t in rest if all(u in placed for u in t.upstream)]
        if not ready:  # pragma: no cover - a manifest's graph has no cycle
            raise DbtProjectError("the manifest's nodes depend on each other in a cycle")
        out += ready
        placed.update(t.name for t in ready)
        rest = [t for t in rest if t.name not in placed]
    return out

"""dbt tasks: one node of a dbt project per task, run by ``dbt build`` in a subprocess.

Mode ``node``: each attempt runs ``dbt build`` selecting its node alone; dbt's output goes
to the task log, and the attempt fails with the node's error.

Mode ``watched`` (the default): the first attempt of a run's nodes that finds no build to
follow starts one ``dbt build`` selecting every node of the project that is due in the run
— running or scheduled, or pending behind only due or succeeded tasks; not retrying, not
done — and each node's attempt follows that build: its lines go to the node's task log
(those written before the attempt came are replayed), and the node's ``NodeFinished``
event ends the attempt. One process, so one dbt start-up and one parse for the whole DAG,
and still a task, an outcome and a log per node. A retry, or a partial rerun, finds no
build covering its node and starts a new one selecting what is due then (its node and
what waits on it). While a build runs, an attempt it does not cover waits for it to end
(two builds of one project in one run never run at once). A build whose last following
attempt is cancelled (the run was cancelled, the executor stops) is stopped.

Why a subprocess (``--log-format json --log-level debug``) rather than ``dbtRunner`` in
this process: dbt keeps global state (flags, adapters, its event manager), so two builds
in one process would mix; a thread running dbt cannot be stopped; and dbt's parsing and
compiling hold the GIL, stalling the executor's loop (heartbeats, appends) for every other
run. The start-up of a process (a few seconds) is paid once per build.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
from msgspec import UNSET

from durable.core.errors import TaskError
from durable.core.events import run_stream
from durable.core.fold import fold
from durable.core.tasks import DbtTask
from durable.workflows.context import TaskContext, TaskLog
from durable.workflows.dbt import (
    DbtProjectError,
    Manifest,
    common_flags,
    dbt_environment,
    dbt_executable,
    load_manifest,
    node_selectors,
    plain_text,
    target_dir,
)

__all__ = ["Build", "DbtBuilds", "NodeResult", "run"]

_LINE_LIMIT = 64 * 1024 * 1024  # one JSON event (a big model's SQL) fits
_BUFFERED = 2000  # lines of a node kept until its attempt comes
_TAIL = 20
_KEEP_FINISHED = 3600.0  # seconds a finished build's unclaimed results are kept
_OK = frozenset({"success", "pass", "warn"})
_DEBUG_SHOWN = frozenset({"SQLQuery", "CatchableExceptionOnRun"})


class NodeResult(msgspec.Struct, frozen=True, kw_only=True):
    """What dbt reported of a node (its ``NodeFinished`` event)."""

    status: str
    message: str = ""
    execution_time: float | None = None
    failures: int | None = None
    adapter_response: dict[str, Any] = {}


class _NodeInfo(msgspec.Struct):
    unique_id: str = ""


class _RunResult(msgspec.Struct):
    status: str = ""
    message: str | None = None
    execution_time: float | None = None
    num_failures: int | None = None
    adapter_response: dict[str, Any] = {}


class _Data(msgspec.Struct):
    node_info: _NodeInfo | None = None
    run_result: _RunResult | None = None


class _Info(msgspec.Struct):
    name: str = ""
    level: str = "info"
    msg: str = ""


class _Event(msgspec.Struct):
    info: _Info
    data: _Data = msgspec.field(default_factory=_Data)


_decode_event = msgspec.json.Decoder(_Event).decode


class _Slot:
    """A node a build selected: its result, and the attempt that follows it."""

    def __init__(self, generation: int) -> None:
        self.generation = generation
        self.claimed_by: tuple[int, int] | None = None  # (generation, attempt)
        self.result: NodeResult | None = None
        self.void = False  # never to be given to an attempt (skipped, never reported)
        self.lines: list[tuple[str, str]] = []
        self.dropped = 0
        self.sink: TaskLog | None = None
        self.waiter: asyncio.Future[NodeResult | None] | None = None


class Build:
    """One ``dbt build`` process and what it reports, node by node.

    ``slots``: the selected nodes (unique ids) and the generation each was selected in.
    Lines about a node go to the log of the attempt following it (kept until it comes);
    other lines go to every attempt following the build.
    """

    def __init__(
        self,
        argv: list[str],
        *,
        cwd: str,
        env: dict[str, str],
        slots: dict[str, int],
        seed: Path | None = None,
    ) -> None:
        self.argv = argv
        self.cwd = cwd
        self.env = env
        self.slots = {uid: _Slot(g) for uid, g in slots.items()}
        self.seed = seed
        self.pid: int | None = None
        self.exit_code: int | None = None
        self.finished_at: float | None = None
        self.tail: list[str] = []
        self.errors: list[str] = []
        self._proc: asyncio.subprocess.Process | None = None
        self._ended = asyncio.Event()
        self._pump: asyncio.Task[None] | None = None
        self._scratch: str | None = None
        self._stopping: asyncio.Task[None] | None = None

    @property
    def live(self) -> bool:
        return not self._ended.is_set()

    async def start(self) -> None:
        """Start the process (in a scratch target folder of its own: builds never share
        dbt's artifacts), and read its output until it exits."""
        self._scratch = tempfile.mkdtemp(prefix="durable-dbt-")
        if self.seed is not None and self.seed.exists():  # dbt's partial parsing
            with contextlib.suppress(OSError):
                shutil.copy2(self.seed, Path(self._scratch) / self.seed.name)
        argv = [*self.argv, "--target-path", self._scratch, "--log-path", self._scratch]
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *argv,
                cwd=self.cwd,
                env=self.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                limit=_LINE_LIMIT,
                start_new_session=True,  # its own process group: stopped together
                preexec_fn=_die_with_parent,
            )
        except OSError as exc:
            self._finish(None)
            raise TaskError(
                f"cannot run dbt ({argv[0]}): {exc.strerror}", type="DbtError", retryable=False
            ) from None
        self.pid = self._proc.pid
        self._pump = asyncio.create_task(self._read(), name=f"durable-dbt-{self.pid}")

    async def ended(self) -> None:
        await self._ended.wait()

    def covers(self, uid: str, generation: int) -> bool:
        """Whether the build has a result to give an attempt of ``uid`` in
        ``generation`` (now or when it comes)."""
        slot = self.slots.get(uid)
        return (
            slot is not None
            and slot.generation == generation
            and slot.claimed_by is None
            and not slot.void
        )

    def claim(
        self, uid: str, log: TaskLog, attempt: tuple[int, int]
    ) -> asyncio.Future[NodeResult | None]:
        """Follow ``uid``: its lines so far go to ``log``, its later ones too; the future
        is its result (None: the build ended without one)."""
        slot = self.slots[uid]
        slot.claimed_by = attempt
        slot.sink = log
        for stream, text in slot.lines:
            log.write(stream, text)
        if slot.dropped:
            log.warning(f"[{slot.dropped} earlier dbt lines of this node dropped]")
        slot.lines = []
        waiter: asyncio.Future[NodeResult | None] = asyncio.get_running_loop().create_future()
        if slot.result is not None or not self.live:
            waiter.set_result(slot.result)
        else:
            slot.waiter = waiter
        return waiter

    def release(self, uid: str, *, cancelled: bool) -> None:
        """The attempt following ``uid`` is done with it. Cancelled, and the last one
        following a running build: the build is stopped (nobody wants it)."""
        slot = self.slots[uid]
        slot.sink = None
        slot.waiter = None
        if cancelled and self.live and not any(s.sink for s in self.slots.values()):
            self._stopping = asyncio.create_task(self.stop())

    async def stop(self) -> None:
        """Stop the process group (SIGTERM, then SIGKILL after 5 s)."""
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(proc.wait()), 5)
        except (TimeoutError, asyncio.CancelledError):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

    def failure(self, uid: str) -> str:
        """Why the build gave no result for ``uid``."""
        code = self.exit_code
        how = f"exited with {code}" if code is not None and code >= 0 else "was stopped"
        detail = self.errors[-1] if self.errors else (self.tail[-1] if self.tail else "")
        return f"the dbt build (pid {self.pid}) {how} without a result for {uid}" + (
            f": {detail}" if detail else ""
        )

    # -- its output ----------------------------------------------------------------------

    async def _read(self) -> None:
        proc = self._proc
        assert proc is not None and proc.stdout is not None and proc.stderr is not None
        code: int | None = None
        try:
            await asyncio.gather(self._stdout(proc.stdout), self._stderr(proc.stderr))
            code = await proc.wait()
        except asyncio.CancelledError:
            await self.stop()
            code = proc.returncode
        except Exception as exc:  # an unreadable output: stop, and say why
            self.errors.append(f"durable could not read dbt's output: {exc}")
            await self.stop()
            code = proc.returncode
        finally:
            self._finish(code)

    async def _stdout(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            self._event(line)

    async def _stderr(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            for text in plain_text(line.decode(errors="replace")):
                self._general("stderr", text)
                self.errors.append(text.strip())
                del self.errors[:-_TAIL]

    def _event(self, line: bytes) -> None:
        try:
            event = _decode_event(line)
        except msgspec.DecodeError:  # not an event: a library's print, a traceback
            for text in plain_text(line.decode(errors="replace")):
                self._general("stdout", text)
            return
        info = event.info
        uid = event.data.node_info.unique_id if event.data.node_info else ""
        slot = self.slots.get(uid) if uid else None
        if info.name == "NodeFinished" and slot is not None and event.data.run_result:
            self._finished(slot, event.data.run_result)
        if info.level == "debug" and (slot is None or info.name not in _DEBUG_SHOWN):
            return  # of debug events, a node's SQL and exceptions only
        stream = "stderr" if info.level in ("warn", "error") else "stdout"
        texts = plain_text(info.msg)
        if info.level == "error" and texts:
            self.errors.append(" ".join(t.strip() for t in texts))
            del self.errors[:-_TAIL]
        for text in texts:
            if slot is not None:
                self._node_line(slot, stream, text)
            else:
                self._general(stream, text)

    def _node_line(self, slot: _Slot, stream: str, text: str) -> None:
        if slot.sink is not None:
            slot.sink.write(stream, text)
        elif len(slot.lines) < _BUFFERED:
            slot.lines.append((stream, text))
        else:
            slot.dropped += 1

    def _general(self, stream: str, text: str) -> None:
        self.tail.append(text)
        del self.tail[:-_TAIL]
        for slot in self.slots.values():
            if slot.sink is not None:
                slot.sink.write(stream, text)

    def _finished(self, slot: _Slot, run: _RunResult) -> None:
        result = NodeResult(
            status=run.status,
            message=" ".join(t.strip() for t in plain_text(run.message or "")),
            execution_time=run.execution_time,
            failures=run.num_failures,
            adapter_response=run.adapter_response,
        )
        if result.status == "skipped" and slot.claimed_by is None:
            slot.void = True  # an upstream node failed: a later build runs it
            return
        slot.result = result
        if slot.waiter is not None and not slot.waiter.done():
            slot.waiter.set_result(result)

    def _finish(self, code: int | None) -> None:
        self.exit_code = code
        self.finished_at = time.monotonic()
        for slot in self.slots.values():
            if slot.result is None:
                slot.void = slot.claimed_by is None
                if slot.waiter is not None and not slot.waiter.done():
                    slot.waiter.set_result(None)
        self._ended.set()
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)


def _die_with_parent() -> None:  # in the child, before exec
    """Linux: dbt is stopped if the executor dies (SIGKILL included), so a build never
    outlives the process that follows it."""
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


_PRCTL: Callable[..., int] | None = None
if sys.platform.startswith("linux"):
    with contextlib.suppress(OSError, AttributeError):
        _PRCTL = ctypes.CDLL(None, use_errno=True).prctl


# -- an executor's builds --------------------------------------------------------------


class _Tracker:
    """The builds of one project (one set of dbt options) in one run."""

    def __init__(self) -> None:
        self.builds: list[Build] = []
        self.lock = asyncio.Lock()

    def covering(self, uid: str, generation: int) -> Build | None:
        for build in reversed(self.builds):
            if build.covers(uid, generation):
                return build
        return None

    def live(self) -> Build | None:
        return next((b for b in self.builds if b.live), None)

    def prune(self, now: float) -> None:
        """Forget finished builds with nothing left to give (or given up on)."""
        self.builds = [
            b
            for b in self.builds
            if b.live
            or (
                b.finished_at is not None
                and now - b.finished_at < _KEEP_FINISHED
                and any(s.claimed_by is None and not s.void for s in b.slots.values())
            )
        ]


class DbtBuilds:
    """The dbt builds of an executor (in :class:`~durable.runtime.tasks.Resources`), and
    what they need: the projects' manifests, the run's log and definition."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self._trackers: dict[tuple[Any, ...], _Tracker] = {}
        self._manifests: dict[str, tuple[float, Manifest]] = {}
        self._definitions: dict[tuple[str, str], list[dict[str, Any]]] = {}

    def tracker(self, key: tuple[Any, ...]) -> _Tracker:
        now = time.monotonic()
        for k in [k for k, t in self._trackers.items() if k != key]:
            self._trackers[k].prune(now)
            if not self._trackers[k].builds:
                del self._trackers[k]
        return self._trackers.setdefault(key, _Tracker())

    @property
    def builds(self) -> list[Build]:
        """The builds known (live, or with results still to give)."""
        return [b for t in self._trackers.values() for b in t.builds]

    async def manifest(self, spec: DbtTask) -> Manifest:
        """The project's manifest (read again when the file changed; parsed again when
        the project changed since)."""
        project = spec.project_dir
        try:
            return await asyncio.to_thread(self._manifest, spec)
        except DbtProjectError as exc:
            raise TaskError(
                f"dbt project {project!r}: {exc.problem}", type="DbtError", retryable=False
            ) from None

    def _manifest(self, spec: DbtTask) -> Manifest:
        file = target_dir(Path(spec.project_dir)) / "manifest.json"
        with contextlib.suppress(OSError):
            mtime = file.stat().st_mtime
            cached = self._manifests.get(str(file))
            if cached is not None and cached[0] == mtime and spec.node in cached[1].nodes:
                return cached[1]
        manifest = load_manifest(
            spec.project_dir,
            profiles_dir=_opt(spec.profiles_dir),
            target=_opt(spec.target),
            vars=_opt(spec.vars),
            dbt=_opt(spec.dbt),
            parse=False,
        )
        with contextlib.suppress(OSError):
            self._manifests[str(file)] = (file.stat().st_mtime, manifest)
        if spec.node not in manifest.nodes:  # changed since the workflow was loaded
            manifest = load_manifest(
                spec.project_dir,
                profiles_dir=_opt(spec.profiles_dir),
                target=_opt(spec.target),
                vars=_opt(spec.vars),
                dbt=_opt(spec.dbt),
            )
        if spec.node not in manifest.nodes:
            raise DbtProjectError(
                f"the project has no node {spec.node!r} any more",
                hint="load the workflow again (a new version) to follow the project",
            )
        return manifest

    async def definition(self, workflow: str, version: str) -> list[dict[str, Any]]:
        """The tasks of a recorded workflow version, as encoded (name, kind, upstream,
        config), in order (parents first)."""
        key = (workflow, version)
        if key not in self._definitions:
            rows = await self.store.versions.of(workflow)
            row = next((r for r in rows if r.version == version), None)
            if row is None:
                raise TaskError(
                    f"version {version} of workflow {workflow!r} is not recorded",
                    type="DbtError",
                )
            tasks = msgspec.json.decode(row.definition).get("tasks") or []
            self._definitions[key] = [t for t in tasks if isinstance(t, dict)]
        return self._definitions[key]

    async def close(self) -> None:
        live = [b for b in self.builds if b.live]
        await asyncio.gather(*(b.stop() for b in live), return_exceptions=True)


def _opt(value: Any) -> Any:
    return None if value is UNSET else value


def _key_of(config: dict[str, Any]) -> tuple[Any, ...]:
    """What a build shares: the project and the options of the dbt call."""
    return (
        config.get("project_dir"),
        config.get("profiles_dir"),
        config.get("target"),
        msgspec.json.encode(config.get("vars") or {}, order="sorted"),
        bool(config.get("full_refresh")),
        config.get("dbt"),
    )


def _argv(spec: DbtTask, ctx: TaskContext) -> list[str]:
    from durable.runtime.tasks import render

    argv = [dbt_executable(_opt(spec.dbt)), "build", "--project-dir", spec.project_dir]
    argv += ["--log-format", "json", "--log-level", "debug", "--log-level-file", "none"]
    argv += ["--no-use-colors", "--indirect-selection", "empty"]
    # vars may hold templates (`${logical_date}`, `${params.x}`): values, never code
    vars = render(_opt(spec.vars), ctx)
    argv += common_flags(profiles_dir=_opt(spec.profiles_dir), target=_opt(spec.target), vars=vars)
    if spec.full_refresh is True:
        argv.append("--full-refresh")
    return argv


def _selection(manifest: Manifest, nodes: list[str]) -> list[str]:
    select, exclude = node_selectors(manifest, nodes)
    return ["--select", *select, *(["--exclude", *exclude] if exclude else [])]


def _new_build(spec: DbtTask, manifest: Manifest, slots: dict[str, int], ctx: TaskContext) -> Build:
    try:
        argv = _argv(spec, ctx) + _selection(manifest, list(slots))
    except DbtProjectError as exc:
        raise TaskError(exc.problem, type="DbtError", retryable=False) from None
    env = dbt_environment(
        {
            "DURABLE_RUN_ID": ctx.run_id,
            "DURABLE_LOGICAL_DATE": ctx.logical_date or "",
            **({"TRACEPARENT": ctx.traceparent} if ctx.traceparent else {}),
        }
    )
    seed = target_dir(Path(spec.project_dir)) / "partial_parse.msgpack"
    return Build(argv, cwd=spec.project_dir, env=env, slots=slots, seed=seed)


# -- running a node --------------------------------------------------------------------


async def run(spec: DbtTask, ctx: TaskContext, builds: DbtBuilds) -> Any:
    """Run one attempt of a dbt node task; its output is what dbt reported of it."""
    if spec.mode == "node":
        result, build = await _own_build(spec, ctx, builds)
    else:
        result, build = await _followed_build(spec, ctx, builds)
    return _outcome(spec, result, build)


async def _own_build(
    spec: DbtTask, ctx: TaskContext, builds: DbtBuilds
) -> tuple[NodeResult | None, Build]:
    """Mode node: ``dbt build`` of this node alone."""
    manifest = await builds.manifest(spec)
    build = _new_build(spec, manifest, {spec.node: ctx.generation}, ctx)
    waiter = build.claim(spec.node, ctx.log, (ctx.generation, ctx.attempt))
    await build.start()
    ctx.log.info(f"dbt build (pid {build.pid}): {spec.node}")
    try:
        result = await waiter
        await build.ended()
    except BaseException:
        await asyncio.shield(build.stop())
        raise
    return result, build


async def _followed_build(
    spec: DbtTask, ctx: TaskContext, builds: DbtBuilds
) -> tuple[NodeResult | None, Build]:
    """Mode watched: follow the run's build that covers this node, or start one."""
    tracker = builds.tracker((ctx.run_id, *_key_of(spec.config())))
    while True:
        async with tracker.lock:
            build = tracker.covering(spec.node, ctx.generation)
            live = tracker.live() if build is None else None
            if build is None and live is None:
                build = await _launch(spec, ctx, builds, tracker)
        if build is not None:
            break
        assert live is not None
        ctx.log.info(
            f"waiting for the dbt build (pid {live.pid}) to end: it does not cover this node"
        )
        await live.ended()
    if build.pid is not None and ctx.log is not None:
        ctx.log.info(f"following dbt build (pid {build.pid}) for {spec.node}")
    waiter = build.claim(spec.node, ctx.log, (ctx.generation, ctx.attempt))
    cancelled = False
    try:
        return await waiter, build
    except asyncio.CancelledError:
        cancelled = True
        raise
    finally:
        build.release(spec.node, cancelled=cancelled)


async def _launch(spec: DbtTask, ctx: TaskContext, builds: DbtBuilds, tracker: _Tracker) -> Build:
    """Start the build of what is due in the run (under the tracker's lock)."""
    if builds.store is None:
        raise TaskError(
            "watched mode needs the executor's event store (Resources(store=…))",
            type="ConfigurationError",
            retryable=False,
        )
    manifest = await builds.manifest(spec)
    state = fold(await builds.store.read_stream(run_stream(ctx.run_id)))
    if state is None:  # pragma: no cover - the attempt's run exists
        raise TaskError(f"run {ctx.run_id} not found", type="DbtError")
    key = _key_of(spec.config())
    project = {
        t["name"]: t
        for t in await builds.definition(state.workflow, state.version)
        if t.get("kind") == "dbt"
        and t.get("config", {}).get("mode", "watched") == "watched"
        and _key_of(t.get("config", {})) == key
    }
    # what earlier builds of this run still have to give, and who took their results
    pending: dict[str, _Slot] = {}
    taken: set[tuple[str, int, int]] = set()
    for b in tracker.builds:
        for uid, slot in b.slots.items():
            if slot.claimed_by is not None:
                taken.add((uid, *slot.claimed_by))
            elif not slot.void:
                pending[uid] = slot

    def promised(node: Any, generation: int) -> _Slot | None:
        """An earlier build's result for the node's current generation, not taken yet."""
        slot = pending.get(node) if isinstance(node, str) else None
        return slot if slot is not None and slot.generation == generation else None

    due: dict[str, int] = {}  # node -> generation
    due_names: set[str] = set()
    for name, task in project.items():
        t = state.tasks.get(name)
        node = task.get("config", {}).get("node")
        if t is None or not isinstance(node, str) or node not in manifest.nodes:
            continue
        if promised(node, t.generation) is not None:
            continue
        if t.status == "running" and (node, t.generation, t.attempt) in taken:
            continue  # its attempt has its result already
        if t.status in ("running", "scheduled"):
            pass
        elif t.status == "pending":

            def ready(u: str) -> bool:
                up = state.tasks.get(u)
                if u in due_names:
                    return True
                if up is not None and up.status == "succeeded":
                    return True
                unode = project.get(u, {}).get("config", {}).get("node")
                slot = promised(unode, up.generation) if up is not None else None
                return slot is not None and slot.result is not None and slot.result.status in _OK

            if not all(ready(u) for u in task.get("upstream") or ()):
                continue
        else:
            continue
        due[node] = t.generation
        due_names.add(name)
    if spec.node not in due:
        raise TaskError(
            f"{spec.node} is not due in run {ctx.run_id} (the log moved on)", type="DbtError"
        )
    build = _new_build(spec, manifest, due, ctx)
    await build.start()
    tracker.builds.append(build)
    names = [manifest.nodes[uid].name for uid in due]
    ctx.log.info(f"dbt build (pid {build.pid}) of {len(names)} nodes: {', '.join(names)}")
    return build


def _outcome(spec: DbtTask, result: NodeResult | None, build: Build) -> dict[str, Any]:
    if result is None:
        raise TaskError(build.failure(spec.node), type="DbtError")
    if result.status in _OK:
        out: dict[str, Any] = {"node": spec.node, "status": result.status}
        if result.message:
            out["message"] = result.message
        if result.execution_time is not None:
            out["execution_time"] = round(result.execution_time, 3)
        if result.failures is not None and spec.node.startswith("test."):
            out["failures"] = result.failures
        rows = result.adapter_response.get("rows_affected")
        if isinstance(rows, int | float) and rows >= 0:
            out["rows_affected"] = int(rows)
        return out
    if result.status == "skipped":
        raise TaskError(
            f"dbt skipped {spec.node}: a node it depends on failed in the same build",
            type="DbtSkipped",
        )
    if result.status == "fail":  # a test that found rows: running it again finds them again
        raise TaskError(
            f"test failed: {result.message or spec.node}", type="DbtTestFailed", retryable=False
        )
    raise TaskError(result.message or f"dbt reported {result.status!r}", type="DbtError")

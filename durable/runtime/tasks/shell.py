"""Shell tasks: a subprocess in its own process group, killed with it on timeout/cancel."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
from typing import Any

from durable.core.errors import TaskError
from durable.core.tasks import ShellTask
from durable.workflows.context import TaskContext

__all__ = ["run"]

_TAIL = 20
_CHUNK = 256 * 1024
_NEWLINE = ord("\n")


async def run(spec: ShellTask, ctx: TaskContext) -> Any:
    from durable.runtime.tasks import render

    # values are quoted for the shell: each is one word, never code
    command = render(spec.command, ctx, "shell")
    env = {
        **os.environ,
        # the attempt's span (W3C): what the command calls joins the run's trace
        **({"TRACEPARENT": ctx.traceparent} if ctx.traceparent else {}),
        **render(spec.env or {}, ctx),
        "DURABLE_RUN_ID": ctx.run_id,
        "DURABLE_TASK": ctx.task,
        "DURABLE_ATTEMPT": str(ctx.attempt),
        "DURABLE_IDEMPOTENCY_KEY": ctx.idempotency_key,
        "DURABLE_LOGICAL_DATE": ctx.logical_date or "",
    }
    limit_mb = spec.max_memory_mb or None

    def limits() -> None:  # runs in the child, before exec
        if limit_mb:
            size = int(limit_mb) * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (size, size))

    proc = await asyncio.create_subprocess_exec(
        "/bin/sh",
        "-c",
        command,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
        cwd=render(spec.cwd, ctx, "path") if spec.cwd else None,
        env=env,
        start_new_session=True,  # its own process group: killed together
        preexec_fn=limits if limit_mb else None,
    )
    stdout_tail: list[str] = []
    stderr_tail: list[str] = []

    async def pump(stream: asyncio.StreamReader | None, name: str, tail: list[str]) -> None:
        # read in chunks, not line by line, and hand each chunk's lines to the log at once
        # (decoded once, one time stamp, one lock): a flood of output costs the event loop
        # a few operations per chunk, not per line (tests/bench/bench_logs.py)
        if stream is None:
            return
        partial = b""
        while chunk := await stream.read(_CHUNK):
            data = partial + chunk
            cut = data.rfind(b"\n") + 1
            if len(data) - cut > _CHUNK:  # a giant line: written in pieces
                cut = len(data)
            elif not cut:  # no line ends yet
                partial = data
                continue
            # decoding the lines together decodes each alike: an undecodable byte never
            # takes a newline with it
            lines = data[:cut].decode(errors="replace").split("\n")
            if data[cut - 1] == _NEWLINE:
                lines.pop()  # the nothing after the last newline
            partial = data[cut:]
            ctx.log.write_many(name, lines)
            _keep(tail, lines)
            if ctx.log.dropped:  # past the cap: the rest is only counted
                await _count_the_rest(stream, ctx, tail, partial)
                return
        if partial:
            line = partial.decode(errors="replace")
            ctx.log.write(name, line)
            _keep(tail, [line])

    try:
        await asyncio.gather(
            pump(proc.stdout, "stdout", stdout_tail), pump(proc.stderr, "stderr", stderr_tail)
        )
        code = await proc.wait()
    except BaseException:
        # Timeout or cancel: the whole process group goes, not just the shell.
        await _kill_group(proc)
        raise
    if code != 0:
        detail = f": {stderr_tail[-1]}" if stderr_tail else ""
        killed = f" (killed by signal {-code})" if code < 0 else ""
        raise TaskError(f"command exited with {code}{killed}{detail}", type="ShellError")
    return {"exit_code": code, "stdout": stdout_tail[-_TAIL:]}


def _keep(tail: list[str], lines: list[str]) -> None:
    """The last lines of the output, for the task's result."""
    tail.extend(lines[-_TAIL:])
    del tail[:-_TAIL]


async def _count_the_rest(
    stream: asyncio.StreamReader, ctx: TaskContext, tail: list[str], partial: bytes = b""
) -> None:
    """Past the log's cap, lines are only counted (the tail is kept)."""
    while chunk := await stream.read(_CHUNK):
        lines = (partial + chunk).split(b"\n")
        partial = lines.pop()[-_CHUNK:]  # of a giant line, its end is enough
        if lines:
            ctx.log.count_dropped(len(lines))
            tail.extend(raw.decode(errors="replace") for raw in lines[-_TAIL:])
            del tail[:-_TAIL]
    if partial:
        ctx.log.count_dropped(1)
        tail.append(partial.decode(errors="replace"))
        del tail[:-_TAIL]


async def _kill_group(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(asyncio.shield(proc.wait()), 5)
    except (TimeoutError, asyncio.CancelledError):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(proc.wait()), 5)

"""A command run detached from the executor, found again by its files.

The command runs under a small wrapper in a session of its own, so it outlives the
executor that started it (a SIGKILL of the executor does not reach it). The wrapper
keeps everything a later executor needs in the attempt's folder:

- ``pid``: the wrapper's process id (it leads the command's process group);
- ``output``: the command line, then the command's stdout and stderr, as it runs;
- ``exit``: the command's exit status when it ended (negative: killed by that signal).

A process is told apart from a later one that got the same pid by its start time
(``/proc/<pid>/stat``) and the machine's boot id.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["Detached", "launch"]

_WRAPPER = r"""
import os, shlex, signal, subprocess, sys
folder, command = sys.argv[1], sys.argv[2:]
if os.fork():
    os._exit(0)  # the launcher returns at once: the wrapper is nobody's child here
os.setsid()  # its own session: neither the executor's death nor its terminal reaches it
null = os.open(os.devnull, os.O_RDWR)
for fd in (0, 1, 2):
    os.dup2(null, fd)  # the launcher's pipes close: it is done

def put(name, text):
    with open(os.path.join(folder, name + ".tmp"), "w") as f:
        f.write(text)
    os.replace(os.path.join(folder, name + ".tmp"), os.path.join(folder, name))

# a signal to the group ends the command; the wrapper stays to record how it ended
# (a handler, not SIG_IGN: the command gets the default back when it execs)
for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(s, lambda *_: None)
with open(os.path.join(folder, "output"), "ab", buffering=0) as out:
    out.write(("$ " + shlex.join(command) + "\n").encode())
    try:  # who it is: its pid, when it started (a later process may get the pid), this boot
        stat = open("/proc/self/stat").read()
        started = stat[stat.rindex(")") + 2 :].split()[19]
        boot = open("/proc/sys/kernel/random/boot_id").read().strip()
    except OSError:
        started = boot = ""
    put("pid", f"{os.getpid()} {started} {boot}")
    try:
        code = subprocess.call(
            command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
        )
    except OSError as exc:
        out.write(f"cannot run {command[0]}: {exc}\n".encode())
        code = 127
put("exit", str(code))
"""


class Detached:
    """A command started by :func:`launch` (in this process or an earlier one), by its
    folder and the identity of its wrapper process."""

    def __init__(
        self,
        folder: Path,
        pid: int,
        started: int | None = None,
        boot: str | None = None,
        host: str | None = None,
    ) -> None:
        self.folder = folder
        self.pid = pid
        self.started = started
        self.boot = boot
        self.host = host or socket.gethostname()

    @classmethod
    def from_job(cls, job: dict[str, Any]) -> Detached:
        return cls(
            Path(job["dir"]), int(job["pid"]), job.get("started"), job.get("boot"), job.get("host")
        )

    def to_job(self) -> dict[str, Any]:
        return {
            "dir": str(self.folder),
            "pid": self.pid,
            "started": self.started,
            "boot": self.boot,
            "host": self.host,
        }

    @property
    def elsewhere(self) -> bool:
        """Whether it was started on another machine (its process cannot be checked from
        here; its files can, if its folder is shared)."""
        return self.host != socket.gethostname()

    @property
    def output(self) -> Path:
        return self.folder / "output"

    def exit_code(self) -> int | None:
        """Its exit status, once it ended (None: still running, or gone without one)."""
        try:
            return int((self.folder / "exit").read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def alive(self) -> bool:
        """Whether its wrapper still runs (not a zombie, not a later process with its pid)."""
        if self.elsewhere or (self.boot is not None and self.boot != boot_id()):
            return False  # not checkable here, or gone with a reboot
        started = start_time(self.pid)
        if started is None:
            return _exists(self.pid) if not Path("/proc").is_dir() else False
        return self.started is None or started == self.started

    async def stop(self, grace: float = 10.0) -> None:
        """End the command's process group: SIGTERM, then SIGKILL after ``grace`` s."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if not self.alive():
                return
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, sig)
            for _ in range(int(grace / 0.1)):
                if not self.alive():
                    return
                await asyncio.sleep(0.1)


async def launch(
    folder: Path, command: list[str], *, env: dict[str, str], cwd: str | None = None
) -> Detached:
    """Start ``command`` detached, its files in ``folder`` (which exists, and has no
    ``pid`` yet); returns once its wrapper wrote its pid."""
    launcher = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", _WRAPPER, str(folder), *command],
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
        timeout=60,
        check=False,
    )
    if launcher.returncode != 0:
        raise OSError(f"the launcher failed: {launcher.stderr.decode(errors='replace')[-500:]}")
    found = await wait_for_pid(folder, 30.0)
    if found is None:
        raise OSError(f"the wrapper wrote no pid in {folder} within 30 s")
    return found


async def wait_for_pid(folder: Path, timeout: float) -> Detached | None:
    """The process whose wrapper wrote ``folder/pid`` (waiting up to ``timeout`` s for it:
    a launch may be under way)."""
    for _ in range(max(1, int(timeout / 0.05))):
        try:
            pid, *rest = (folder / "pid").read_text().split()
        except (FileNotFoundError, ValueError):
            await asyncio.sleep(0.05)
            continue
        started = int(rest[0]) if rest else None
        return Detached(folder, int(pid), started, rest[1] if len(rest) > 1 else None)
    return None


def start_time(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks after boot); None when it is gone, a
    zombie, or this system has no ``/proc``."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after the command name, which may hold spaces
    if fields[0] == "Z":
        return None
    return int(fields[19])


def boot_id() -> str | None:
    """This boot of this machine (a pid means nothing across a reboot)."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

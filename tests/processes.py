"""Helpers for tests that run durable as a user does: as processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any


def durable(*args: str, home: Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the `durable` command on the embedded database in ``home``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DURABLE_DATABASE_URL", "DURABLE_WORKFLOWS")
    }
    env["DURABLE_HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-m", "durable", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


def alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (a zombie awaiting its parent does not)."""
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().split()[2] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Service:
    """A `durable up --http` process: its URL, and the admin token it printed at first start."""

    def __init__(self, process: subprocess.Popen[str], url: str, token: str) -> None:
        self.process = process
        self.url = url
        self.token = token
        self.log: list[str] = []

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_service(
    database_url: str,
    workflows: Path,
    *extra: str,
    port: int | None = None,
    env: dict[str, str] | None = None,
) -> Service:
    """Start `durable up --http` on a fresh database and wait until it answers; ``env``
    adds to (or overrides) this process's environment."""
    port = port or free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "durable",
            "--database-url",
            database_url,
            "up",
            "--workflows",
            str(workflows),
            "--http",
            f"127.0.0.1:{port}",
            *extra,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env} if env else None,
    )
    assert process.stderr is not None
    token = ""
    lines = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            raise AssertionError("durable up exited:\n" + "".join(lines))
        lines.append(line)
        if line.startswith("dtk_"):
            token = line.strip()
        if "HTTP API and console on" in line:
            break
    assert token, "durable up printed no first token:\n" + "".join(lines)
    service = Service(process, f"http://127.0.0.1:{port}", token)
    threading.Thread(target=_drain, args=(process.stderr, service.log), daemon=True).start()
    return service


def _drain(stream: Any, into: list[str]) -> None:
    for line in stream:
        into.append(line)

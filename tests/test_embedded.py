"""The embedded PostgreSQL's life cycle across processes, SIGKILL included."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import pytest

from tests.processes import alive, durable

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


def _postmaster(pgdata: Path) -> int | None:
    pidfile = pgdata / "postmaster.pid"
    return int(pidfile.read_text().split()[0]) if pidfile.exists() else None


def test_a_sigkilled_process_does_not_keep_the_server_forever(tmp_path: Path) -> None:
    home = tmp_path / ".durable"
    env = {k: v for k, v in os.environ.items() if k != "DURABLE_DATABASE_URL"}
    env["DURABLE_HOME"] = str(home)
    up = subprocess.Popen(
        [sys.executable, "-m", "durable", "up", "--no-http", "--workflows", str(ROOT / "examples")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert up.stderr is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # positive sign: the service is up
            line = up.stderr.readline()
            if not line or "executor" in line.lower():
                break
        pgdata = home / "pgdata"
        postmaster = _postmaster(pgdata)
        assert postmaster is not None and alive(postmaster)
        handles = msgspec.json.decode((pgdata / ".handle_pids.json").read_bytes())
        assert up.pid in handles
    finally:
        up.send_signal(signal.SIGKILL)
        up.wait(10)
    assert alive(postmaster)  # SIGKILL: nobody stopped it

    listed = durable("runs", home=home)  # joins the server, then is its last handle
    assert listed.returncode == 0, listed.stderr
    deadline = time.monotonic() + 30
    while alive(postmaster) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(postmaster), "the last live process did not stop the embedded server"

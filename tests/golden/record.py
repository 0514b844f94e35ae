"""How the golden histories were recorded: real runs on the pre-renovation code.

    git worktree add /tmp/old e855c10     # the code before the renovation
    DURABLE_CODE=/tmp/old python tests/golden/record.py

Runs ``durable up`` (the code at ``$DURABLE_CODE``, an embedded PostgreSQL in a
temporary ``DURABLE_HOME``) over this folder, drives each scenario with the operators'
CLI (run, pause, resume, cancel, rerun, and a ``kill -9`` of the service for a
takeover), and writes each run's ``durable export`` next to this file. The histories
are then committed: ``tests/test_replay.py`` re-decides them with today's rules.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CODE = os.environ.get("DURABLE_CODE", str(HERE.parent.parent))
ENV = {**os.environ, "PYTHONPATH": CODE, "DURABLE_HOME": tempfile.mkdtemp(prefix="golden-")}
DURABLE = [sys.executable, "-m", "durable"]


def cli(*args: str) -> str:
    done = subprocess.run(
        [*DURABLE, *args],
        env=ENV,
        cwd=CODE,  # `python -m` puts the working directory first on sys.path
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode not in (0, 1):
        raise SystemExit(f"durable {' '.join(args)}: {done.stdout}{done.stderr}")
    return done.stdout


def up() -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            *DURABLE,
            "up",
            "--no-http",
            "--workflows",
            str(HERE),
            "--lease",
            "2",
            "--max-tasks",
            "32",
        ],
        env=ENV,
        cwd=CODE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def start(workflow: str, *params: str) -> str:
    out = cli("run", workflow, "--workflows", str(HERE), *[f"--param={p}" for p in params])
    return out.split()[2]  # "started run RUN_ID of workflow@version"


def status(run_id: str) -> str:
    for line in cli("runs", "--json", "--limit", "100").splitlines():
        row = json.loads(line)
        if row.get("run_id") == run_id:
            return str(row["status"])
    return "unknown"


def wait(run_id: str, *done: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while (s := status(run_id)) not in (done or ("succeeded", "failed", "cancelled")):
        if time.monotonic() > deadline:
            raise SystemExit(f"run {run_id} still {s}")
        time.sleep(0.5)


def export(run_id: str, name: str) -> None:
    (HERE / f"{name}.jsonl").write_text(cli("export", run_id))
    print(f"{name}.jsonl: run {run_id} {status(run_id)}")


def main() -> None:
    service = up()
    time.sleep(8)  # the embedded PostgreSQL and the service come up
    try:
        retries = start("golden_retries")
        mapped = start("golden_map")
        switch = start("golden_switch", "route=slow")
        timeout = start("golden_timeout")
        control = start("golden_control")
        queued = start("golden_queue")
        cli("rerun", queued, "work", "--queue", "--request-id", "queued-1")
        wait(control, "running")
        time.sleep(0.5)
        cli("pause", control, "--reason", "maintenance")
        time.sleep(3)  # hold finishes while paused: nothing new starts
        cli("resume", control)
        time.sleep(1.5)
        cli("cancel", control, "--reason", "not needed today")
        for run_id in (retries, mapped, switch, timeout, control, queued):
            wait(run_id)
        cli("rerun", retries, "flaky", "--downstream", "--request-id", "again-1")
        wait(retries)
        export(retries, "retries_rerun")
        export(mapped, "map")
        export(switch, "switch_sleep")
        export(timeout, "timeout")
        export(control, "pause_resume_cancel")
        export(queued, "queued_rerun")
        crash = start("golden_crash")
        wait(crash, "running")
        time.sleep(1.5)  # `long` is running
        service.send_signal(signal.SIGKILL)
        service.wait()
        service = up()  # takes the run over once the dead executor's lease expired
        wait(crash)
        export(crash, "takeover")
    finally:
        service.send_signal(signal.SIGTERM)
        service.wait(timeout=30)


if __name__ == "__main__":
    main()

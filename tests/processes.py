"""Helpers for tests that run durable as a user does: as processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


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

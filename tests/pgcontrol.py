"""Stopping and starting a pgserver PostgreSQL for outage tests, as an operator would.

``stop(datadir)`` is ``pg_ctl stop -m immediate`` (a crash, as far as clients can tell);
``start(datadir)`` brings the same server back on the same data directory and socket.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

__all__ = ["start", "stop"]


def _pg_ctl(datadir: Path, *args: str, timeout: float = 60) -> None:
    import pgserver

    pg_ctl = Path(pgserver.__file__).parent / "pginstall" / "bin" / "pg_ctl"
    command = [str(pg_ctl), "-D", str(datadir), *args]
    if os.geteuid() == 0:  # pgserver runs the server as its own user when we are root
        command = ["runuser", "-u", "pgserver", "--", *command]
    subprocess.run(command, check=True, timeout=timeout, capture_output=True)


def stop(datadir: Path) -> None:
    """Stop the server now, without a checkpoint: clients see their connections drop."""
    _pg_ctl(datadir, "-m", "immediate", "stop")


def start(datadir: Path) -> None:
    """Start the server again on the same data directory and unix socket."""
    for attempt in range(3):
        try:
            _pg_ctl(
                datadir,
                "-w",
                "-o",
                '-h ""',
                "-o",
                f"-k {datadir}",
                "-l",
                str(datadir / "log"),
                "start",
            )
            return
        except subprocess.CalledProcessError:
            if attempt == 2:
                raise
            time.sleep(1.0)

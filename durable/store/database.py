"""Where the database is: ``DURABLE_DATABASE_URL``, or the embedded PostgreSQL.

With no configuration durable starts a real PostgreSQL from the ``pgserver`` wheel with
its data under ``$DURABLE_HOME/pgdata`` (default ``./.durable``), and reuses a server
already running there (another ``durable`` process started it). The last process to let
go of an embedded server it started stops it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

from durable.core.errors import StoreUnavailable

__all__ = ["Database", "resolve_database"]

DEFAULT_HOME = ".durable"


class Database:
    """A resolved database: its URL, and the embedded server handle if there is one."""

    def __init__(self, url: str, *, embedded: Any = None, home: Path | None = None) -> None:
        self.url = url
        self.embedded = embedded
        self.home = home

    @property
    def description(self) -> str:
        if self.embedded is not None:
            return f"embedded PostgreSQL in {self.home}"
        return _redact(self.url)


def resolve_database(environ: Mapping[str, str] | None = None) -> Database:
    """The database durable should use, starting the embedded one when needed."""
    env = os.environ if environ is None else environ
    url = env.get("DURABLE_DATABASE_URL")
    if url:
        return Database(url)
    home = Path(env.get("DURABLE_HOME") or DEFAULT_HOME).expanduser().resolve()
    return Database(start_embedded(home / "pgdata"), embedded=True, home=home)


def start_embedded(pgdata: Path) -> str:
    """Start (or join) the embedded PostgreSQL whose data lives in ``pgdata``."""
    try:
        pgdata.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreUnavailable(
            f"cannot create {pgdata.parent}: {exc}",
            hint="set DURABLE_HOME to a writable directory",
        ) from exc
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset; pgserver copes without it.
        warnings.simplefilter("ignore")
        logging.getLogger("pgserver").setLevel(logging.WARNING)
        import pgserver

        _forget_dead_handles(pgserver, pgdata)
        for attempt in range(3):
            try:
                server = pgserver.get_server(pgdata, cleanup_mode="stop")  # type: ignore[attr-defined]
                break
            except subprocess.TimeoutExpired:
                # pgserver gives `pg_ctl start -w` 10 s; on a loaded machine the server can
                # come up just after that. Forget the half-made handle and join it.
                pgserver.PostgresServer._instances.pop(pgdata.resolve(), None)  # type: ignore[attr-defined]
                if attempt == 2:
                    raise StoreUnavailable(
                        f"the embedded PostgreSQL in {pgdata} did not start in 30 s",
                        hint=f"see {pgdata / 'log'}",
                    ) from None
                time.sleep(1.0)
            except Exception as exc:  # pgserver raises plain errors from initdb / pg_ctl
                log = pgdata / "log"
                raise StoreUnavailable(
                    f"the embedded PostgreSQL in {pgdata} did not start: {exc}",
                    hint=f"see {log}" if log.exists() else "is the directory writable?",
                ) from exc
    return str(server.get_uri())


def _forget_dead_handles(pgserver: Any, pgdata: Path) -> None:
    """Drop the pids of dead processes from pgserver's list of handles.

    pgserver stops the server when the last process holding a handle exits; a process
    killed with SIGKILL never takes its pid off the list, and then no process after it
    ever stops the server. Under pgserver's own inter-process lock.
    """
    handles = pgdata / ".handle_pids.json"
    if not handles.exists():
        return
    with pgserver.PostgresServer._lock:
        try:
            pids = [int(p) for p in msgspec.json.decode(handles.read_bytes())]
        except (OSError, ValueError, TypeError, msgspec.DecodeError):
            return
        alive = [p for p in pids if _alive(p)]
        if alive != pids:
            handles.write_bytes(msgspec.json.encode(alive))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    with contextlib.suppress(OSError, IndexError):
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is dead
    return True


def _redact(url: str) -> str:
    # postgresql://user:secret@host/db -> postgresql://user:***@host/db
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        if ":" in creds:
            creds = creds.split(":", 1)[0] + ":***"
        return f"{scheme}://{creds}@{host}"
    return url

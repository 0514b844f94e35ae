"""A PostgreSQL of a test's own, which the test may stop and start (outage tests).

A test module's fixture: ``yield from own_postgres_in(tmp_path)``; the test stops and
starts the server with :meth:`Postgres.stop` and :meth:`Postgres.start`.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

from tests import pgcontrol

__all__ = ["Postgres", "own_postgres_in"]


class Postgres:
    """A PostgreSQL of the test's own, which it may stop and start."""

    def __init__(self, datadir: Path, url: str) -> None:
        self.datadir = datadir
        self.url = url

    @property
    def socket(self) -> str:
        return str(self.datadir / ".s.PGSQL.5432")

    def stop(self) -> None:
        """A crash, as far as clients can tell (``pg_ctl stop -m immediate``)."""
        pgcontrol.stop(self.datadir)

    def start(self) -> None:
        pgcontrol.start(self.datadir)


def own_postgres_in(tmp_path: Path) -> Iterator[Postgres]:
    """A fresh server under ``tmp_path``, stopped afterwards (whatever state it is in)."""
    import pgserver

    datadir = tmp_path / "pg"
    server = pgserver.get_server(datadir, cleanup_mode=None)  # type: ignore[attr-defined]
    yield Postgres(datadir, str(server.get_uri()))
    with contextlib.suppress(subprocess.CalledProcessError):
        pgcontrol.stop(datadir)

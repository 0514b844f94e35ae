"""Schema migrations: numbered ``.sql`` files applied once each, in order.

Safe when several processes start at once: the whole run holds a transaction-scoped
advisory lock, so one process applies and the others find the work done. An applied
file whose text later changed is refused rather than silently skipped.

Numbers are unique but may leave gaps: migrations written on parallel branches take
numbers of their own, and a lower-numbered file that arrives after a higher one was
applied is applied then (each migration stands alone: it never relies on a later one).
"""

from __future__ import annotations

import hashlib
import re
from importlib import resources
from itertools import pairwise
from typing import Any

import msgspec

from durable.core.errors import MigrationError

__all__ = ["Migration", "apply_migrations", "check_numbering", "load_migrations"]

# pg_advisory_xact_lock key of the migrator ("durable migrations")
_MIGRATION_LOCK = 0x6475_7261_626C_6D01
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


class Migration(msgspec.Struct, frozen=True):
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations() -> list[Migration]:
    """The migrations shipped with this version of durable, in order."""
    found: list[Migration] = []
    for entry in resources.files("durable.store").joinpath("migrations").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), entry.name, entry.read_text()))
    return check_numbering(found)


def check_numbering(migrations: list[Migration]) -> list[Migration]:
    """``migrations`` in order of their numbers; MigrationError when two share one."""
    ordered = sorted(migrations, key=lambda m: m.version)
    for before, m in pairwise(ordered):
        if m.version == before.version:
            raise MigrationError(
                f"migrations {before.name} and {m.name} have the same number",
                hint="give the newer file the next free number",
            )
    return ordered


async def apply_migrations(conn: Any, migrations: list[Migration] | None = None) -> list[str]:
    """Bring the ``durable`` schema up to date; return the names of files applied now."""
    migrations = load_migrations() if migrations is None else migrations
    applied_now: list[str] = []
    async with conn.transaction():
        # Lock before touching anything: CREATE ... IF NOT EXISTS races without it.
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
        await conn.execute("CREATE SCHEMA IF NOT EXISTS durable")
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS durable.schema_migrations (
                   version integer PRIMARY KEY,
                   name text NOT NULL,
                   checksum text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        rows = await conn.fetch("SELECT version, name, checksum FROM durable.schema_migrations")
        done = {r["version"]: r for r in rows}
        known = {m.version for m in migrations}
        newer = sorted(v for v in done if v not in known)
        if newer:
            raise MigrationError(
                f"the database has migration {newer[-1]:04d}, newer than this durable knows",
                hint="upgrade durable, or point it at another database",
            )
        for m in migrations:
            row = done.get(m.version)
            if row is not None:
                if row["checksum"] != m.checksum:
                    raise MigrationError(
                        f"migration {m.name} was applied, but its file has changed since",
                        hint="never edit an applied migration; add a new numbered file",
                    )
                continue
            await conn.execute(m.sql)
            await conn.execute(
                "INSERT INTO durable.schema_migrations (version, name, checksum) "
                "VALUES ($1, $2, $3)",
                m.version,
                m.name,
                m.checksum,
            )
            applied_now.append(m.name)
    return applied_now

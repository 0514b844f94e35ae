"""Task logs in PostgreSQL: batches of an attempt's lines, read incrementally by id.

A small batch (a task logging now and then) is one statement. A large one (a flood of
output, 100,000 lines a second) is a COPY, about half PostgreSQL's work per line of an
``INSERT … ON CONFLICT`` (no speculative insertion, rows inserted many at a time) and a
third of the executor's (the rows go as one text buffer built from joined strings, not
encoded value by value). tests/bench/bench_logs.py measures both.

Either way the run's advisory lock is taken before the ids are drawn and held until
commit, so two batches of one run never commit out of id order and "lines after id N"
is complete (migration 0008).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import asyncpg

from durable.core.log_lines import LogLines
from durable.store.postgres.connection import translated
from durable.store.rows import LogLine

__all__ = ["COPY_LINES", "PgTaskLogs", "copy_text"]

COPY_LINES = 500
"""Batches of at least this many lines are written with COPY (fewer: one INSERT, a
single round trip)."""

# The CTE runs first (the rows to insert come out of it): the lock is held before any id
# is drawn. ON CONFLICT: a retried batch (its first write's answer was lost) is a no-op.
_INSERT = (
    "WITH locked AS (SELECT pg_advisory_xact_lock(hashtext('durable.task_logs:' || $1::text))) "
    "INSERT INTO durable.task_logs "
    "(run_id, task, generation, attempt, line, at, stream, message) "
    "SELECT $1, $2, $3, $4, $5 + n - 1, at, stream, message "
    "FROM locked, unnest($6::timestamptz[], $7::text[], $8::text[]) WITH ORDINALITY "
    "AS l(at, stream, message, n) ON CONFLICT DO NOTHING"
)
_LOCK = "SELECT pg_advisory_xact_lock(hashtext('durable.task_logs:' || $1::text))"
# After the lock, in a statement of its own (a snapshot taken once the lock is held sees
# every batch committed before): an attempt's batches are written in order, so what a
# retried batch already stored is a prefix of it.
# ORDER BY … LIMIT 1, not max(): an aggregate may be planned as a scan of all the
# attempt's lines (fresh rows have no statistics), one per batch of a flood.
_STORED = (
    "SELECT line FROM durable.task_logs "
    "WHERE run_id = $1 AND task = $2 AND generation = $3 AND attempt = $4 "
    "ORDER BY line DESC LIMIT 1"
)
_COLUMNS = ["run_id", "task", "generation", "attempt", "line", "at", "stream", "message"]

# COPY's text format: a backslash, tab, newline or carriage return in a value is escaped
_ESCAPES = (("\\", "\\\\"), ("\t", "\\t"), ("\n", "\\n"), ("\r", "\\r"))


def _escaped(text: str) -> str:
    for raw, escape in _ESCAPES:
        if raw in text:
            text = text.replace(raw, escape)
    return text


def copy_text(
    run_id: str,
    task: str,
    generation: int,
    attempt: int,
    lines: Sequence[tuple[datetime, str, str]],
    first_line: int,
) -> bytes:
    """The rows of ``lines`` in COPY's text format, numbered from ``first_line``; NUL
    characters (which PostgreSQL text cannot hold) dropped.

    Per line only one f-string: the messages are cleaned and escaped all at once (joined
    by NUL, which no message keeps), and each run of lines sharing a time stamp and a
    stream (:class:`~durable.core.log_lines.LogLines`) has them formatted once.
    """
    batch = LogLines.of(lines)
    joined = "\0".join(batch.messages)
    if joined.count("\0") != len(batch) - 1:  # a message holds a NUL: dropped
        joined = "\0".join(m.replace("\0", "") for m in batch.messages)
    messages = _escaped(joined).split("\0")
    prefix = f"{_escaped(run_id)}\t{_escaped(task)}\t{generation}\t{attempt}\t"
    rows: list[str] = []
    n = 0
    for at, stream, run in batch.runs:
        # time stamps as asyncpg sends them: a naive one is local time
        middle = f"\t{at.astimezone(UTC).isoformat()}\t{_escaped(stream)}\t"
        numbers = range(first_line + n, first_line + n + len(run))
        rows += [
            f"{prefix}{number}{middle}{message}\n"
            for number, message in zip(numbers, messages[n : n + len(run)], strict=True)
        ]
        n += len(run)
    return "".join(rows).encode()


class PgTaskLogs:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def write(
        self,
        run_id: str,
        task: str,
        generation: int,
        attempt: int,
        lines: Sequence[tuple[datetime, str, str]],
        first_line: int = 1,
    ) -> None:
        if not lines:
            return
        with translated("writing task logs"):
            if len(lines) < COPY_LINES:
                await self._pool.execute(
                    _INSERT,
                    run_id,
                    task,
                    generation,
                    attempt,
                    first_line,
                    [at for at, _, _ in lines],
                    [s for _, s, _ in lines],
                    [m.replace("\x00", "") for _, _, m in lines],
                )
                return
            async with self._pool.acquire() as conn, conn.transaction():
                await conn.execute(_LOCK, run_id)
                stored = await conn.fetchval(_STORED, run_id, task, generation, attempt)
                skip = max(0, (stored or 0) - first_line + 1)
                if skip >= len(lines):
                    return
                batch = LogLines.of(lines)
                if skip:
                    batch = batch[skip:]
                data = copy_text(run_id, task, generation, attempt, batch, first_line + skip)
                await conn.copy_to_table(
                    "task_logs",
                    schema_name="durable",
                    columns=_COLUMNS,
                    source=memoryview(data),  # bytes would be taken for a path
                    format="text",
                )

    async def read(
        self,
        run_id: str,
        task: str | None = None,
        attempt: int | None = None,
        limit: int | None = None,
        after_id: int = 0,
    ) -> list[LogLine]:
        with translated("reading task logs"):
            rows = await self._pool.fetch(
                "SELECT task, generation, attempt, at, stream, message, id "
                "FROM durable.task_logs WHERE run_id = $1 AND id > $2 "
                "AND ($3::text IS NULL OR task = $3) AND ($4::int IS NULL OR attempt = $4) "
                "ORDER BY id LIMIT $5",
                run_id,
                after_id,
                task,
                attempt,
                limit,
            )
        return [LogLine(**dict(r)) for r in rows]

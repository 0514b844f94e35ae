"""Leases: which executor works on which run, and concurrency slots per workflow.

Claiming uses ``FOR UPDATE SKIP LOCKED``: an executor never waits on a run another one
is claiming. A lease is renewed by heartbeats; one that expired is taken over. The
lease is about *who should work*; correctness does not rest on it — every append is
fenced by the run's seq, so a zombie that lost its lease cannot record anything.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

__all__ = ["LeaseManager"]

_CLAIM_SQL = """
WITH candidates AS (
    SELECT r.run_id
    FROM durable.runs r
    LEFT JOIN durable.leases l ON l.run_id = r.run_id
    WHERE r.status IN ('pending', 'running')
      AND r.workflow || '@' || r.version = ANY($1::text[])
      AND (l.run_id IS NULL OR l.expires_at < now())
    ORDER BY r.created_at
    LIMIT $2
    FOR UPDATE OF r SKIP LOCKED
)
INSERT INTO durable.leases (run_id, owner, expires_at)
SELECT run_id, $3, now() + make_interval(secs => $4) FROM candidates
ON CONFLICT (run_id) DO UPDATE
    SET owner = excluded.owner, expires_at = excluded.expires_at
    WHERE durable.leases.expires_at < now()
RETURNING run_id
"""

_RENEW_SQL = """
UPDATE durable.leases SET expires_at = now() + make_interval(secs => $3)
WHERE run_id = ANY($1::text[]) AND owner = $2
RETURNING run_id
"""

# Taken in its own statement first: the counting statement's snapshot must come after
# the lock is held, or two executors could both count the same free slot.
_SLOT_LOCK_SQL = "SELECT pg_advisory_xact_lock(hashtext('durable.slot:' || $1::text))"

_SLOT_SQL = """
UPDATE durable.leases l SET holds_slot = true
WHERE l.run_id = $2 AND l.owner = $3
  AND (l.holds_slot OR (
        SELECT count(*) FROM durable.leases o JOIN durable.runs r ON r.run_id = o.run_id
        WHERE o.holds_slot AND r.workflow = $1
          AND r.status NOT IN ('succeeded', 'failed', 'cancelled')) < $4)
RETURNING l.run_id
"""


class LeaseManager:
    """Leases of one executor (``owner``) on a pool of the durable database."""

    def __init__(self, pool: asyncpg.Pool, owner: str, *, ttl: float = 30.0) -> None:
        self._pool = pool
        self.owner = owner
        self.ttl = ttl

    async def claim(self, versions: Sequence[str], limit: int) -> list[str]:
        """Lease up to ``limit`` runs needing work, of ``workflow@version`` we can run."""
        if limit <= 0 or not versions:
            return []
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(_CLAIM_SQL, list(versions), limit, self.owner, self.ttl)
        return [r["run_id"] for r in rows]

    async def renew(self, run_ids: Sequence[str]) -> set[str]:
        """Extend our leases; returns the runs we still hold (the others were lost)."""
        if not run_ids:
            return set()
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(_RENEW_SQL, list(run_ids), self.owner, self.ttl)
        return {r["run_id"] for r in rows}

    async def release(self, run_id: str) -> None:
        async with self._pool.acquire() as conn:
            await conn.execute(
                "DELETE FROM durable.leases WHERE run_id = $1 AND owner = $2", run_id, self.owner
            )

    async def take_slot(self, workflow: str, run_id: str, limit: int) -> bool:
        """Count the run against ``workflow``'s max_active_runs; False when all are taken."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(_SLOT_LOCK_SQL, workflow)
            row = await conn.fetchrow(_SLOT_SQL, workflow, run_id, self.owner, limit)
        return row is not None

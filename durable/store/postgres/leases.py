"""Leases on PostgreSQL: which executor works on which run, and concurrency slots per workflow.

Claiming uses ``FOR UPDATE SKIP LOCKED``: an executor never waits on a run another one
is claiming. A lease is renewed by heartbeats; one that expired is taken over. The
lease is about *who should work*; correctness does not rest on it — every append is
fenced by the run's seq, so a zombie that lost its lease cannot record anything.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from durable.store.postgres.connection import translated
from durable.store.rows import SlotLimit

__all__ = ["LeaseManager"]

_CLAIM_SQL = """
WITH candidates AS (
    SELECT r.run_id
    FROM durable.runs r
    LEFT JOIN durable.leases l ON l.run_id = r.run_id
    WHERE r.status IN ('pending', 'running')
      AND r.workflow || '@' || r.version = ANY($1::text[])
      AND (l.run_id IS NULL OR l.expires_at < now())
    -- the live lane first: backfill runs never starve scheduled and triggered ones
    ORDER BY (r.trigger_kind = 'backfill'), r.created_at
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

# Each lock is taken in its own statement first: the counting statement's snapshot must
# come after the locks are held, or two executors could both count the same free slot.
_SLOT_LOCK_SQL = "SELECT pg_advisory_xact_lock(hashtext('durable.slot:' || $1::text))"

_SLOT_COUNT_SQL = {
    "workflow": "SELECT count(*) FROM durable.leases o JOIN durable.runs r ON r.run_id = o.run_id "
    "WHERE o.holds_slot AND r.workflow = $1 AND o.run_id <> $2 "
    "AND r.status NOT IN ('succeeded', 'failed', 'cancelled')",
    "trigger_source": "SELECT count(*) FROM durable.leases o JOIN durable.runs r "
    "ON r.run_id = o.run_id WHERE o.holds_slot AND r.trigger_source = $1 AND o.run_id <> $2 "
    "AND r.status NOT IN ('succeeded', 'failed', 'cancelled')",
}


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
        with translated("claiming runs"):
            rows = await self._pool.fetch(_CLAIM_SQL, list(versions), limit, self.owner, self.ttl)
        return [r["run_id"] for r in rows]

    async def renew(self, run_ids: Sequence[str]) -> set[str]:
        """Extend our leases; returns the runs we still hold (the others were lost)."""
        if not run_ids:
            return set()
        with translated("renewing leases"):
            rows = await self._pool.fetch(_RENEW_SQL, list(run_ids), self.owner, self.ttl)
        return {r["run_id"] for r in rows}

    async def release(self, run_id: str) -> None:
        with translated("releasing a lease"):
            await self._pool.execute(
                "DELETE FROM durable.leases WHERE run_id = $1 AND owner = $2", run_id, self.owner
            )

    async def take_slot(self, run_id: str, limits: Sequence[SlotLimit]) -> bool:
        """Count the run against each ``(kind, key, limit)`` — kind ``workflow`` (its
        max_active_runs) or ``trigger_source`` (a backfill's max_parallel); False, and
        nothing taken, when any is full."""
        with translated("taking a slot"):
            async with self._pool.acquire() as conn, conn.transaction():
                for kind, key, _ in sorted(limits):
                    await conn.execute(_SLOT_LOCK_SQL, f"{kind}:{key}")
                for kind, key, limit in limits:
                    if await conn.fetchval(_SLOT_COUNT_SQL[kind], key, run_id) >= limit:
                        return False
                row = await conn.fetchrow(
                    "UPDATE durable.leases SET holds_slot = true WHERE run_id = $1 "
                    "AND owner = $2 RETURNING run_id",
                    run_id,
                    self.owner,
                )
        return row is not None

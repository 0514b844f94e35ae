"""The PostgreSQL tables beside the log: workflow versions, task logs, API tokens, and
trigger tracking (Kafka offsets, dead letters, log-reader positions, assets)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from durable.core.errors import DuplicateRun, IdempotencyConflict
from durable.core.events import EventRegistry, RunCreated, run_stream
from durable.core.runs_view import same_request
from durable.store.base import KafkaOutcome
from durable.store.codec import check_append, encode_event
from durable.store.postgres.append import RUN_COLUMNS, Append, run_row, write_batch
from durable.store.postgres.connection import translated
from durable.store.postgres.task_logs import PgTaskLogs
from durable.store.rows import (
    AssetUpdate,
    DeadLetter,
    KafkaPosition,
    NewDeadLetter,
    NewVersion,
    TokenRow,
    VersionRow,
)

__all__ = ["PgTaskLogs", "PgTokens", "PgTracking", "PgVersions"]


class PgVersions:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def register(self, versions: Sequence[NewVersion]) -> None:
        with translated("recording workflow versions"):
            async with self._pool.acquire() as conn:
                await conn.executemany(
                    "INSERT INTO durable.workflow_versions "
                    "(workflow, version, definition, source, source_text) "
                    "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (workflow, version) DO UPDATE "
                    "SET source_text = excluded.source_text "
                    "WHERE durable.workflow_versions.source_text IS NULL",
                    [
                        (v.workflow, v.version, v.definition, v.source, v.source_text)
                        for v in versions
                    ],
                )

    async def of(self, workflow: str) -> list[VersionRow]:
        with translated("listing workflow versions"):
            rows = await self._pool.fetch(
                "SELECT v.workflow, v.version, v.first_seen, v.source, v.definition, "
                "v.source_text, "
                "(SELECT count(*) FROM durable.runs r WHERE r.workflow = v.workflow "
                " AND r.version = v.version) AS runs "
                "FROM durable.workflow_versions v WHERE v.workflow = $1 ORDER BY v.first_seen",
                workflow,
            )
        return [
            VersionRow(
                workflow=r["workflow"],
                version=r["version"],
                definition=bytes(r["definition"]),
                source=r["source"],
                first_seen=r["first_seen"],
                runs=r["runs"],
                source_text=r["source_text"],
            )
            for r in rows
        ]

    async def first_seen(self, workflow: str) -> datetime | None:
        with translated("reading workflow versions"):
            value: datetime | None = await self._pool.fetchval(
                "SELECT min(first_seen) FROM durable.workflow_versions WHERE workflow = $1",
                workflow,
            )
        return value


_TOKEN_COLUMNS = "token_id, name, scopes, secret_sha256, created_at, created_by, revoked_at"


def _token(r: asyncpg.Record) -> TokenRow:
    return TokenRow(
        token_id=r["token_id"],
        name=r["name"],
        scopes=list(r["scopes"]),
        secret_sha256=bytes(r["secret_sha256"]),
        created_at=r["created_at"],
        created_by=r["created_by"],
        revoked_at=r["revoked_at"],
    )


class PgTokens:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def insert(
        self, token_id: str, name: str, scopes: Sequence[str], secret_sha256: bytes, by: str | None
    ) -> TokenRow:
        with translated("creating a token"):
            return await self._insert(self._pool, token_id, name, scopes, secret_sha256, by)

    async def insert_first(
        self, token_id: str, name: str, scopes: Sequence[str], secret_sha256: bytes, by: str | None
    ) -> TokenRow | None:
        with translated("creating the first token"):
            async with self._pool.acquire() as conn, conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext('durable.api_tokens'))")
                if await conn.fetchval("SELECT count(*) FROM durable.api_tokens"):
                    return None
                return await self._insert(conn, token_id, name, scopes, secret_sha256, by)

    @staticmethod
    async def _insert(
        conn: asyncpg.Connection | asyncpg.Pool,
        token_id: str,
        name: str,
        scopes: Sequence[str],
        secret_sha256: bytes,
        by: str | None,
    ) -> TokenRow:
        row = await conn.fetchrow(
            "INSERT INTO durable.api_tokens (token_id, name, scopes, secret_sha256, created_by) "
            f"VALUES ($1, $2, $3, $4, $5) RETURNING {_TOKEN_COLUMNS}",
            token_id,
            name,
            list(scopes),
            secret_sha256,
            by,
        )
        return _token(row)

    async def all(self, *, include_revoked: bool = False) -> list[TokenRow]:
        with translated("listing tokens"):
            rows = await self._pool.fetch(
                f"SELECT {_TOKEN_COLUMNS} FROM durable.api_tokens "
                "WHERE $1 OR revoked_at IS NULL ORDER BY created_at",
                include_revoked,
            )
        return [_token(r) for r in rows]

    async def find(self, id_or_name: str) -> list[TokenRow]:
        with translated("finding a token"):
            rows = await self._pool.fetch(
                f"SELECT {_TOKEN_COLUMNS} FROM durable.api_tokens "
                "WHERE token_id = $1 OR name = $1 ORDER BY created_at",
                id_or_name,
            )
        return [_token(r) for r in rows]

    async def revoke(self, token_id: str) -> TokenRow | None:
        with translated("revoking a token"):
            row = await self._pool.fetchrow(
                "UPDATE durable.api_tokens SET revoked_at = coalesce(revoked_at, now()) "
                f"WHERE token_id = $1 RETURNING {_TOKEN_COLUMNS}",
                token_id,
            )
        return _token(row) if row is not None else None

    async def live(self, token_id: str) -> TokenRow | None:
        with translated("checking a token"):
            row = await self._pool.fetchrow(
                f"SELECT {_TOKEN_COLUMNS} FROM durable.api_tokens "
                "WHERE token_id = $1 AND revoked_at IS NULL",
                token_id,
            )
        return _token(row) if row is not None else None


_DEAD_LETTER_SQL = (
    'INSERT INTO durable.dead_letters (source, topic, partition, "offset", key, value, '
    "headers, workflow, reason, epoch) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) "
    "ON CONFLICT DO NOTHING"
)


def _dead_row(d: NewDeadLetter, reason: str | None = None) -> tuple[Any, ...]:
    return (
        d.source,
        d.topic,
        d.partition,
        d.offset,
        d.key,
        d.value,
        msgspec.json.encode(d.headers),
        d.workflow,
        reason or d.reason,
        d.epoch,
    )


class PgTracking:
    def __init__(self, pool: asyncpg.Pool, registry: EventRegistry) -> None:
        self._pool = pool
        self._registry = registry

    async def kafka_offsets(
        self, group_id: str, topics: Sequence[str]
    ) -> dict[tuple[str, int], int]:
        with translated("reading Kafka offsets"):
            rows = await self._pool.fetch(
                "SELECT topic, partition, next_offset FROM durable.kafka_offsets "
                "WHERE group_id = $1 AND topic = ANY($2::text[])",
                group_id,
                list(topics),
            )
        return {(r["topic"], r["partition"]): r["next_offset"] for r in rows}

    async def kafka_positions(
        self, group_id: str, topics: Sequence[str]
    ) -> dict[tuple[str, int], KafkaPosition]:
        with translated("reading Kafka offsets"):
            rows = await self._pool.fetch(
                "SELECT topic, partition, next_offset, epoch, last_fingerprint "
                "FROM durable.kafka_offsets WHERE group_id = $1 AND topic = ANY($2::text[])",
                group_id,
                list(topics),
            )
        return {
            (r["topic"], r["partition"]): KafkaPosition(
                next_offset=r["next_offset"],
                epoch=r["epoch"],
                last_fingerprint=r["last_fingerprint"],
            )
            for r in rows
        }

    async def reset_kafka_partition(self, group_id: str, topic: str, partition: int) -> int:
        with translated("resetting a Kafka partition's offsets"):
            epoch: int = await self._pool.fetchval(
                "INSERT INTO durable.kafka_offsets (group_id, topic, partition, next_offset, "
                "epoch) VALUES ($1, $2, $3, 0, 1) ON CONFLICT (group_id, topic, partition) "
                "DO UPDATE SET next_offset = 0, epoch = durable.kafka_offsets.epoch + 1, "
                "last_fingerprint = NULL, updated_at = now() RETURNING epoch",
                group_id,
                topic,
                partition,
            )
        return epoch

    async def record_kafka_batch(
        self,
        group_id: str,
        runs: Sequence[tuple[RunCreated, NewDeadLetter | None]],
        dead_letters: Sequence[NewDeadLetter],
        offsets: dict[tuple[str, int], int],
        fingerprints: dict[tuple[str, int], str] | None = None,
    ) -> list[KafkaOutcome]:
        loop = asyncio.get_running_loop()
        items = []
        for created, _ in runs:
            stream = run_stream(created.run_id)
            check_append(stream, 0, [created])
            encoded = [encode_event(self._registry, stream, created)]
            items.append(Append(stream, 0, [created], encoded, loop.create_future()))
        if len({i.stream_id for i in items}) != len(items):
            raise ValueError("record_kafka_batch takes one new run per run id")
        outcomes: list[KafkaOutcome] = []
        with translated("recording a Kafka batch"):
            async with self._pool.acquire() as conn, conn.transaction():
                results = await write_batch(conn, items) if items else []
                refused: list[tuple[Any, ...]] = []
                duplicates = {r.idempotency_key: r for r in results if isinstance(r, DuplicateRun)}
                existing = await self._runs_by_keys(conn, list(duplicates)) if duplicates else {}
                for (created, letter), result in zip(runs, results, strict=True):
                    if isinstance(result, DuplicateRun):
                        row = existing.get(result.idempotency_key)
                        if row is not None and not same_request(
                            row, created.workflow, created.params, None
                        ):
                            conflict = IdempotencyConflict(result.idempotency_key, row.run_id)
                            if letter is not None:
                                refused.append(_dead_row(letter, str(conflict)))
                            outcomes.append(conflict)
                            continue
                        outcomes.append(result)
                    elif isinstance(result, BaseException):
                        raise result  # roll back: nothing of this batch, offsets included
                    else:
                        outcomes.append(result)
                rows = [_dead_row(d) for d in dead_letters] + refused
                if rows:
                    await conn.executemany(_DEAD_LETTER_SQL, rows)
                if offsets:
                    # one statement: the offsets (never backwards) and the fingerprint of
                    # the message each one follows (the log's identity, see the Kafka
                    # trigger), which moves with its offset
                    prints = fingerprints or {}
                    await conn.execute(
                        "INSERT INTO durable.kafka_offsets (group_id, topic, partition, "
                        "next_offset, last_fingerprint) SELECT $1, t, p, n, f FROM "
                        "unnest($2::text[], $3::int[], $4::bigint[], $5::text[]) "
                        "AS o(t, p, n, f) ON CONFLICT (group_id, topic, partition) DO UPDATE "
                        "SET next_offset = GREATEST(durable.kafka_offsets.next_offset, "
                        "excluded.next_offset), last_fingerprint = CASE WHEN "
                        "excluded.next_offset >= durable.kafka_offsets.next_offset THEN "
                        "excluded.last_fingerprint ELSE durable.kafka_offsets.last_fingerprint "
                        "END, updated_at = now()",
                        group_id,
                        [t for t, _ in offsets],
                        [p for _, p in offsets],
                        list(offsets.values()),
                        [prints.get(k) for k in offsets],
                    )
        return outcomes

    @staticmethod
    async def _runs_by_keys(conn: asyncpg.Connection, keys: list[str]) -> dict[str, Any]:
        rows = await conn.fetch(
            f"SELECT {RUN_COLUMNS} FROM durable.runs WHERE idempotency_key = ANY($1::text[])",
            keys,
        )
        return {r["idempotency_key"]: run_row(r) for r in rows}

    async def dead_letters(self, limit: int = 50) -> list[DeadLetter]:
        with translated("listing dead letters"):
            rows = await self._pool.fetch(
                'SELECT id, source, topic, partition, "offset", key, value, headers, workflow, '
                "reason, received_at, epoch FROM durable.dead_letters ORDER BY id DESC LIMIT $1",
                limit,
            )
        return [
            DeadLetter(
                id=r["id"],
                source=r["source"],
                topic=r["topic"],
                partition=r["partition"],
                offset=r["offset"],
                key=r["key"],
                value=r["value"],
                headers=msgspec.json.decode(r["headers"]),
                workflow=r["workflow"],
                reason=r["reason"],
                received_at=r["received_at"],
                epoch=r["epoch"],
            )
            for r in rows
        ]

    async def log_position(self, reader: str) -> int:
        with translated("reading a log position"):
            value = await self._pool.fetchval(
                "SELECT position FROM durable.log_positions WHERE reader = $1", reader
            )
        return int(value or 0)

    async def set_log_position(self, reader: str, position: int) -> None:
        with translated("storing a log position"):
            await self._pool.execute(
                "INSERT INTO durable.log_positions (reader, position) VALUES ($1, $2) "
                "ON CONFLICT (reader) DO UPDATE SET position = excluded.position",
                reader,
                position,
            )

    async def upsert_assets(self, updates: Sequence[AssetUpdate]) -> None:
        if not updates:
            return
        with translated("recording asset updates"):
            await self._pool.executemany(
                "INSERT INTO durable.assets (asset, workflow, run_id, task, generation, "
                "updated_at, position) VALUES ($1, $2, $3, $4, $5, $6, $7) "
                "ON CONFLICT (asset) DO UPDATE SET workflow = excluded.workflow, "
                "run_id = excluded.run_id, task = excluded.task, "
                "generation = excluded.generation, updated_at = excluded.updated_at, "
                "position = excluded.position WHERE durable.assets.position < excluded.position",
                [
                    (u.asset, u.workflow, u.run_id, u.task, u.generation, u.updated_at, u.position)
                    for u in updates
                ],
            )

    async def assets(self) -> list[AssetUpdate]:
        with translated("listing assets"):
            rows = await self._pool.fetch(
                "SELECT asset, workflow, run_id, task, generation, updated_at, position "
                "FROM durable.assets ORDER BY asset"
            )
        return [AssetUpdate(**dict(r)) for r in rows]

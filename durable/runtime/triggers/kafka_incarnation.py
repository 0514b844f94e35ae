"""Which incarnation of a partition's log the Kafka trigger reads.

A broker that lost its log (a new cluster, a topic deleted and recreated) hands its
offsets out again, to new messages. With each partition's stored offset the service keeps
the fingerprint of the last message consumed (to recognise the log when it reads that
message again) and an *epoch*: how many times the log was found to be a new incarnation.
From the first reset on, the epoch joins offset-based dedup keys, so that a new message is
not taken for the old one that had its offset; keys of epoch 0 are unchanged.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeAlias

import asyncpg
import msgspec
from aiokafka import ConsumerRecord, TopicPartition

from durable.core.kafka import IDEMPOTENCY_HEADER, Accepted, Message, Rejected, Skipped

__all__ = [
    "PartitionLog",
    "Record",
    "Stored",
    "fingerprint",
    "in_incarnation",
    "remember_last",
    "reset_partition",
    "stored_positions",
]

Record: TypeAlias = ConsumerRecord[Any, Any]


@dataclass
class PartitionLog:
    """What the service knows of one assigned partition's log."""

    epoch: int = 0
    anchor: tuple[int, str] | None = None
    """(offset, fingerprint) of the message to find first: the last one consumed."""
    expected: int | None = None
    """The next offset; a lower one means the log went back (a new incarnation)."""
    last: tuple[int, str] | None = None
    """(offset, fingerprint) of the last message recorded."""


def in_incarnation(
    outcome: Accepted | Skipped | Rejected, message: Message, epoch: int
) -> Accepted | Skipped | Rejected:
    """From a partition's first reset on, an offset-based dedup key names the log's
    incarnation: its offsets were handed out again. A producer's key stays as it is."""
    if epoch and isinstance(outcome, Accepted) and not message.headers.get(IDEMPOTENCY_HEADER):
        return msgspec.structs.replace(outcome, dedup_key=f"{outcome.dedup_key}@{epoch}")
    return outcome


def fingerprint(rec: Record) -> str:
    """Tells a message from another at the same offset: ``offset:hash``."""
    digest = hashlib.blake2b(int(rec.timestamp).to_bytes(8, "big", signed=True), digest_size=8)
    for part in (rec.key, rec.value):
        digest.update(b"-" if part is None else b"+%d:" % len(part) + bytes(part))
    return f"{rec.offset}:{digest.hexdigest()}"


# -- Stored state (SQL: to move into durable/store/ with the rest) ------------------------


class Stored(NamedTuple):
    next_offset: int
    epoch: int
    anchor: tuple[int, str] | None
    """The last consumed message, (offset, fingerprint), if it is the one before
    ``next_offset`` (offsets rewound by hand have none)."""


async def stored_positions(
    pool: asyncpg.Pool, group_id: str, partitions: Iterable[TopicPartition]
) -> dict[TopicPartition, Stored]:
    wanted = list(partitions)
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT topic, partition, next_offset, epoch, last_fingerprint "
            "FROM durable.kafka_offsets WHERE group_id = $1 AND topic = ANY($2::text[])",
            group_id,
            sorted({tp.topic for tp in wanted}),
        )
    found: dict[TopicPartition, Stored] = {}
    for r in rows:
        fingerprint, anchor = r["last_fingerprint"], None
        if fingerprint and fingerprint.partition(":")[0] == str(r["next_offset"] - 1):
            anchor = (r["next_offset"] - 1, fingerprint)
        found[TopicPartition(r["topic"], r["partition"])] = Stored(
            r["next_offset"], r["epoch"], anchor
        )
    return {tp: found[tp] for tp in wanted if tp in found}


async def remember_last(
    conn: Any, group_id: str, lasts: dict[TopicPartition, tuple[int, str]]
) -> None:
    """In a batch's transaction: the fingerprint of each partition's last message."""
    await conn.execute(
        "UPDATE durable.kafka_offsets AS o SET last_fingerprint = l.f "
        "FROM unnest($2::text[], $3::int[], $4::bigint[], $5::text[]) AS l(t, p, n, f) "
        "WHERE o.group_id = $1 AND o.topic = l.t AND o.partition = l.p AND o.next_offset = l.n",
        group_id,
        [tp.topic for tp in lasts],
        [tp.partition for tp in lasts],
        [offset + 1 for offset, _ in lasts.values()],
        [fingerprint for _, fingerprint in lasts.values()],
    )


async def reset_partition(pool: asyncpg.Pool, group_id: str, tp: TopicPartition) -> int:
    """A new incarnation of the partition's log: from offset 0, under the next epoch."""
    async with pool.acquire() as conn:
        epoch: int = await conn.fetchval(
            "INSERT INTO durable.kafka_offsets (group_id, topic, partition, next_offset, epoch) "
            "VALUES ($1, $2, $3, 0, 1) ON CONFLICT (group_id, topic, partition) DO UPDATE "
            "SET next_offset = 0, epoch = durable.kafka_offsets.epoch + 1, "
            "last_fingerprint = NULL, updated_at = now() RETURNING epoch",
            group_id,
            tp.topic,
            tp.partition,
        )
    return epoch

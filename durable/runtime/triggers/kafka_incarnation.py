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

import msgspec
from aiokafka import ConsumerRecord, TopicPartition

from durable.core.kafka import IDEMPOTENCY_HEADER, Accepted, Message, Rejected, Skipped
from durable.store.base import EventStore

__all__ = [
    "PartitionLog",
    "Record",
    "Stored",
    "fingerprint",
    "in_incarnation",
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


# -- Stored state ---------------------------------------------------------------------


class Stored(NamedTuple):
    next_offset: int
    epoch: int
    anchor: tuple[int, str] | None
    """The last consumed message, (offset, fingerprint), if it is the one before
    ``next_offset`` (offsets rewound by hand have none)."""


async def stored_positions(
    store: EventStore, group_id: str, partitions: Iterable[TopicPartition]
) -> dict[TopicPartition, Stored]:
    """The stored position of each partition, with the message to recognise the log by."""
    wanted = list(partitions)
    rows = await store.tracking.kafka_positions(group_id, sorted({tp.topic for tp in wanted}))
    found: dict[TopicPartition, Stored] = {}
    for tp in wanted:
        row = rows.get((tp.topic, tp.partition))
        if row is None:
            continue
        fp, anchor = row.last_fingerprint, None
        if fp and fp.partition(":")[0] == str(row.next_offset - 1):
            anchor = (row.next_offset - 1, fp)
        found[tp] = Stored(row.next_offset, row.epoch, anchor)
    return found

"""The Kafka trigger service: messages start runs, exactly once per message.

Per polled batch, one PostgreSQL transaction writes the runs (each with its dedup key),
the dead letters of malformed messages, and the consumer's next offsets; offsets are
committed to Kafka only after that commit. On partition assignment the consumer seeks to
the offsets stored in PostgreSQL, so a crash anywhere — before the commit, between the
commit and Kafka's, after both — neither loses a message nor starts a run twice.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterable
from typing import Any

import asyncpg
import msgspec
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener

from durable.application.ids import new_run_id
from durable.core.errors import DuplicateRun
from durable.core.events import Event, RunCreated, TaskNode, Trigger, run_stream
from durable.core.kafka import (
    Accepted,
    KafkaTrigger,
    Message,
    Rejected,
    Skipped,
    evaluate,
    evaluate_s3_event,
)
from durable.core.spec import DefinitionError, WorkflowSpec, coerce_params
from durable.store.postgres import PostgresEventStore
from durable.workflows.loader import WorkflowRegistry

__all__ = ["KafkaTriggerService"]

log = logging.getLogger("durable.runtime.triggers.kafka")


class KafkaTriggerService:
    """Consumes the topics of every Kafka trigger rule in ``registry``."""

    def __init__(
        self,
        store: PostgresEventStore,
        registry: WorkflowRegistry,
        *,
        bootstrap: str,
        group_id: str = "durable",
        max_records: int = 1000,
    ) -> None:
        self.store = store
        self.bootstrap = bootstrap
        self.group_id = group_id
        self.max_records = max_records
        self.rules: list[tuple[WorkflowSpec, KafkaTrigger]] = []
        self._by_topic: dict[str, list[tuple[WorkflowSpec, KafkaTrigger]]] = {}
        self._pinned: dict[str, tuple[str, tuple[TaskNode, ...]]] = {}
        for loaded in registry:
            for rule in loaded.spec.kafka:
                self.rules.append((loaded.spec, rule))
                # hashed once, not per message
                self._pinned[loaded.spec.name] = (loaded.spec.version, loaded.spec.nodes())
        self.ready = asyncio.Event()
        self.consumer: AIOKafkaConsumer | None = None
        self.polls = 0  # poll cycles begun; all but the last have finished (a test's sign)

    async def run(self, stop: asyncio.Event) -> None:
        if not self.rules:
            return
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=50,  # a trigger wants its message now, not a fuller fetch
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        self.consumer = consumer
        listener = _SeekToStored(self, consumer)
        if any(rule.pattern for _, rule in self.rules):
            # one subscription: the named topics and the patterns, as one expression
            parts = [re.escape(r.topic) if r.topic else f"(?:{r.pattern})" for _, r in self.rules]
            consumer.subscribe(pattern=f"^(?:{'|'.join(parts)})$", listener=listener)
        else:
            consumer.subscribe(sorted({r.topic for _, r in self.rules}), listener=listener)
        await consumer.start()
        try:
            while not stop.is_set():
                self.polls += 1
                batch = await consumer.getmany(timeout_ms=200, max_records=self.max_records)
                if consumer.assignment():
                    self.ready.set()
                if not batch:
                    continue
                await self._gather_more(consumer, batch)
                offsets = await self.process(batch)
                await consumer.commit({tp: n for tp, n in offsets.items()})
        finally:
            await consumer.stop()

    async def _gather_more(
        self, consumer: AIOKafkaConsumer, batch: dict[TopicPartition, list[Any]]
    ) -> None:
        """Under load, wait up to 20 ms for more records: one transaction then records
        hundreds of messages instead of a handful (a few ms of latency for throughput)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 0.02
        count = sum(len(r) for r in batch.values())
        while count < self.max_records and loop.time() < deadline:
            more = await consumer.getmany(timeout_ms=5, max_records=self.max_records - count)
            if not more:
                break
            for tp, records in more.items():
                batch.setdefault(tp, []).extend(records)
                count += len(records)

    def _rules_for(self, topic: str) -> list[tuple[WorkflowSpec, KafkaTrigger]]:
        rules = self._by_topic.get(topic)
        if rules is None:
            rules = self._by_topic[topic] = [(s, r) for s, r in self.rules if r.matches(topic)]
        return rules

    async def stored_offsets(
        self, partitions: Iterable[TopicPartition]
    ) -> dict[TopicPartition, int]:
        wanted = list(partitions)
        async with self.store.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT topic, partition, next_offset FROM durable.kafka_offsets "
                "WHERE group_id = $1 AND topic = ANY($2::text[])",
                self.group_id,
                [tp.topic for tp in wanted],
            )
        stored = {TopicPartition(r["topic"], r["partition"]): r["next_offset"] for r in rows}
        return {tp: stored[tp] for tp in wanted if tp in stored}

    async def process(
        self, batch: dict[TopicPartition, list[ConsumerRecord[Any, Any]]]
    ) -> dict[TopicPartition, int]:
        """Record one polled batch; returns the next offset of each partition."""
        appends: dict[str, tuple[str, int, list[Event]]] = {}
        seen_keys: set[str] = set()
        dead: list[tuple[Any, ...]] = []
        offsets: dict[TopicPartition, int] = {}
        for tp, records in batch.items():
            for rec in records:
                offsets[tp] = rec.offset + 1
                message = Message(
                    topic=rec.topic,
                    partition=rec.partition,
                    offset=rec.offset,
                    key=rec.key,
                    value=rec.value,
                    headers={k: v.decode(errors="replace") for k, v in (rec.headers or [])},
                )
                for spec, rule in self._rules_for(rec.topic):
                    outcomes: list[Accepted | Skipped | Rejected]
                    if rule.format == "s3-event":
                        many = evaluate_s3_event(message, spec.name, list(spec.params))
                        outcomes = list(many) if isinstance(many, list) else [many]
                    else:
                        outcomes = [evaluate(rule, message, spec.name)]
                    for outcome in outcomes:
                        if isinstance(outcome, Accepted):
                            try:
                                params = coerce_params(
                                    spec.params, outcome.params, where=f"workflow {spec.name!r}"
                                )
                            except DefinitionError as exc:
                                outcome = Rejected(str(exc))
                        if isinstance(outcome, Rejected):
                            dead.append(_dead_letter(message, spec.name, outcome.reason))
                        elif isinstance(outcome, Accepted) and outcome.dedup_key not in seen_keys:
                            seen_keys.add(outcome.dedup_key)
                            run_id = new_run_id()
                            version, nodes = self._pinned[spec.name]
                            created = RunCreated(
                                run_id=run_id,
                                workflow=spec.name,
                                version=version,
                                tasks=nodes,
                                params=params,
                                idempotency_key=outcome.dedup_key,
                                trigger=Trigger(
                                    kind="kafka",
                                    source=f"{rec.topic}/{rec.partition}/{rec.offset}",
                                    traceparent=outcome.traceparent,
                                ),
                            )
                            appends[run_id] = (run_stream(run_id), 0, [created])
        async with self.store.pool.acquire() as conn, conn.transaction():
            results = await self.store.append_many_on(conn, list(appends.values()))
            for result in results:
                if isinstance(result, BaseException) and not isinstance(result, DuplicateRun):
                    raise result  # roll back: nothing of this batch, offsets included
            if dead:
                await conn.executemany(
                    'INSERT INTO durable.dead_letters (source, topic, partition, "offset", key, '
                    "value, headers, workflow, reason) VALUES ('kafka', $1, $2, $3, $4, $5, $6, $7, $8) "
                    "ON CONFLICT DO NOTHING",
                    dead,
                )
            await conn.execute(
                "INSERT INTO durable.kafka_offsets (group_id, topic, partition, next_offset) "
                "SELECT $1, t, p, n FROM unnest($2::text[], $3::int[], $4::bigint[]) AS o(t, p, n) "
                "ON CONFLICT (group_id, topic, partition) DO UPDATE "
                "SET next_offset = GREATEST(durable.kafka_offsets.next_offset, excluded.next_offset), "
                "updated_at = now()",
                self.group_id,
                [tp.topic for tp in offsets],
                [tp.partition for tp in offsets],
                list(offsets.values()),
            )
        return offsets


def _dead_letter(message: Message, workflow: str, reason: str) -> tuple[Any, ...]:
    return (
        message.topic,
        message.partition,
        message.offset,
        message.key,
        message.value,
        msgspec.json.encode(message.headers),
        workflow,
        reason,
    )


class _SeekToStored(ConsumerRebalanceListener):  # type: ignore[misc]
    """On assignment, continue from the offsets PostgreSQL has, not Kafka's."""

    def __init__(self, service: KafkaTriggerService, consumer: AIOKafkaConsumer) -> None:
        self.service = service
        self.consumer = consumer

    async def on_partitions_revoked(self, revoked: Any) -> None:
        return None

    async def on_partitions_assigned(self, assigned: Any) -> None:
        try:
            stored = await self.service.stored_offsets(assigned)
            ends = await self.consumer.end_offsets(list(stored)) if stored else {}
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("could not read stored offsets (%s); using Kafka's", exc)
            return
        for tp, offset in stored.items():
            if offset > ends.get(tp, offset):
                # the log is shorter than we remember (a new or emptied topic): from its
                # start; producer idempotency keys still keep runs exactly-once
                log.warning(
                    "%s: stored offset %d is past the log's end; reading from the start", tp, offset
                )
                await self.consumer.seek_to_beginning(tp)
            else:
                self.consumer.seek(tp, offset)

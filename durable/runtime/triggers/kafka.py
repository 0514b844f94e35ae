"""The Kafka trigger service: messages start runs, exactly once per message.

Per polled batch, one store transaction writes the runs (each with its dedup key), the
dead letters of malformed messages, and the consumer's next offsets; offsets are
committed to Kafka only after that commit. A producer's idempotency key reused for a
different run (other params, another workflow) is refused like a malformed message: it
goes to the dead letters with the reason, and the consumer moves on. On partition assignment the consumer seeks to
the offsets stored in PostgreSQL, so a crash anywhere — before the commit, between the
commit and Kafka's, after both — neither loses a message nor starts a run twice.

The broker may be away (when the service starts, or for a while) and may come back
without its log (a new cluster, a topic deleted and recreated: its offsets are handed out
again, to new messages). The service retries with capped backoff, says so in a few lines
(:mod:`.kafka_outage`), and checks that the log it reads is the one its stored offsets
belong to: with the offsets it stores the fingerprint of the last message consumed, and
on assignment and after every outage it reads that message again first. A log shorter
than the stored position, or holding another message there, is a new incarnation: the
partition is read from its start under the next *epoch*, which joins offset-based dedup
keys from the first reset on (``kafka:{workflow}:{topic}:{partition}:{offset}@{epoch}``),
so that new messages are not taken for the old ones that had their offsets.
"""

from __future__ import annotations

import asyncio
import logging
import re
from contextlib import suppress
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import KafkaError

from durable.application.ids import new_run_id
from durable.core.errors import IdempotencyConflict, StoreError
from durable.core.events import RunCreated, TaskNode, Trigger
from durable.core.kafka import (
    IDEMPOTENCY_HEADER,
    Accepted,
    KafkaTrigger,
    Message,
    Rejected,
    Skipped,
    evaluate,
    evaluate_s3_event,
)
from durable.core.params import check_params
from durable.core.spec import DefinitionError, WorkflowSpec
from durable.runtime.triggers.kafka_incarnation import (
    PartitionLog,
    Record,
    fingerprint,
    in_incarnation,
    stored_positions,
)
from durable.runtime.triggers.kafka_outage import (
    BrokerOutage,
    backoff,
    muted_during,
    sleep_unless_stopped,
    unless_stopped,
)
from durable.store.base import EventStore
from durable.store.rows import NewDeadLetter
from durable.telemetry import KafkaMetrics
from durable.workflows.loader import WorkflowRegistry

__all__ = ["KafkaTriggerService"]

log = logging.getLogger("durable.runtime.triggers.kafka")


_TIMEOUT = 10.0  # seconds: each call to the broker or the database outside a batch
_START_TIMEOUT = 30.0
_PROBE_EVERY = 1.0  # seconds between "is it back?" questions during an outage


class KafkaTriggerService:
    """Consumes the topics of every Kafka trigger rule in ``registry``."""

    def __init__(
        self,
        store: EventStore,
        registry: WorkflowRegistry,
        *,
        bootstrap: str,
        group_id: str = "durable",
        max_records: int = 1000,
        reconnect_max: float = 10.0,
        metrics: KafkaMetrics | None = None,
    ) -> None:
        """``metrics``: where consumption, dead letters and lag are counted (None: not)."""
        self.store = store
        self.metrics = metrics
        self.bootstrap = bootstrap
        self.group_id = group_id
        self.max_records = max_records
        self.reconnect_max = reconnect_max
        """The longest wait, in seconds, between two attempts to reach the broker."""
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
        self.outage = BrokerOutage(bootstrap)
        self._parts: dict[TopicPartition, PartitionLog] = {}
        # held by a batch (poll, checks, transaction) and by the rebalance listener: a seek
        # never lands between a batch's poll and its transaction
        self._lock = asyncio.Lock()
        self._probe_at = 0.0
        self.polls = 0  # poll cycles begun; all but the last have finished (a test's sign)

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set, whatever the broker does meanwhile."""
        if not self.rules:
            return
        with muted_during(self.outage):
            failures = 0
            while not stop.is_set():
                consumer = self._new_consumer()
                try:
                    if await self._started(consumer, stop):
                        self.outage.back()
                        failures = 0
                        await self._consume(consumer, stop)
                except KafkaError as exc:
                    self.outage.lost(f"{type(exc).__name__}: {exc}")
                finally:
                    await self._close(consumer)
                if not stop.is_set():
                    await sleep_unless_stopped(stop, backoff(failures, cap=self.reconnect_max))
                    failures += 1

    def _new_consumer(self) -> AIOKafkaConsumer:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=50,  # a trigger wants its message now, not a fuller fetch
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        self.consumer = consumer
        self._parts = {}
        listener = _SeekToStored(self, consumer)
        if any(rule.pattern for _, rule in self.rules):
            # one subscription: the named topics and the patterns, as one expression
            parts = [re.escape(r.topic) if r.topic else f"(?:{r.pattern})" for _, r in self.rules]
            consumer.subscribe(pattern=f"^(?:{'|'.join(parts)})$", listener=listener)
        else:
            consumer.subscribe(sorted({r.topic for _, r in self.rules}), listener=listener)
        return consumer

    async def _started(self, consumer: AIOKafkaConsumer, stop: asyncio.Event) -> bool:
        """Starts ``consumer``; False if the broker did not answer or ``stop`` came first."""
        try:
            await unless_stopped(consumer.start(), stop, _START_TIMEOUT)
        except (KafkaError, OSError) as exc:  # OSError: TimeoutError included
            self.outage.lost(f"{type(exc).__name__}: {exc}")
            return False
        return not stop.is_set()

    async def _close(self, consumer: AIOKafkaConsumer) -> None:
        try:
            await asyncio.wait_for(consumer.stop(), _TIMEOUT)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is None or task.cancelling():
                raise  # ours: we are cancelled
            # aiokafka 0.14's fetcher, closed while retrying an unreachable broker, lets
            # the cancellation of its own retry sleep out of stop(): finish stop's work
            with suppress(KafkaError, OSError):
                await asyncio.wait_for(consumer._client.close(), _TIMEOUT)
        except (KafkaError, OSError) as exc:
            log.debug("Kafka consumer stopped uncleanly: %s", exc)
        self.consumer = None

    async def _consume(self, consumer: AIOKafkaConsumer, stop: asyncio.Event) -> None:
        while not stop.is_set():
            offsets: dict[TopicPartition, int] = {}
            async with self._lock:
                self.polls += 1
                batch = await consumer.getmany(timeout_ms=200, max_records=self.max_records)
                if consumer.assignment():
                    self.ready.set()
                if self.outage.active:
                    # records read again once checked: the broker may have lost its log
                    await self._check_back(consumer, bool(batch))
                    continue
                if not batch:
                    continue
                await self._gather_more(consumer, batch)
                batch = await self._verified(consumer, batch)
                if batch:
                    offsets = await self.process(batch)
                if self.metrics is not None:
                    self._observe_lag(consumer)
            if offsets:
                await self._commit(consumer, offsets)

    def _observe_lag(self, consumer: AIOKafkaConsumer) -> None:
        """Each assigned partition's lag: its high watermark (from the last fetch, no
        request) past the next offset recorded."""
        assert self.metrics is not None
        lags: dict[tuple[str, int], int] = {}
        for tp in consumer.assignment():
            part, high = self._parts.get(tp), consumer.highwater(tp)
            if part is not None and part.expected is not None and high is not None:
                lags[(tp.topic, tp.partition)] = max(0, high - part.expected)
        self.metrics.lag(lags)

    async def _check_back(self, consumer: AIOKafkaConsumer, got_records: bool) -> None:
        """During an outage: is the broker back? Then re-check every partition's log."""
        now = asyncio.get_running_loop().time()
        if not got_records:
            if now < self._probe_at:
                self.outage.remind()
                return
            self._probe_at = now + _PROBE_EVERY
            try:
                await asyncio.wait_for(consumer.topics(), _TIMEOUT / 2)
            except (KafkaError, OSError):
                self.outage.remind()
                return
        self.outage.back()
        for tp in consumer.assignment():
            part = self._parts.get(tp)
            mark = part and (part.last or part.anchor)
            if part is not None and mark:
                consumer.seek(tp, mark[0])
                part.anchor, part.expected = mark, None

    async def _commit(self, consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int]) -> None:
        """Kafka's copy of the offsets, for tools that read it: PostgreSQL's is the truth."""
        try:
            await asyncio.wait_for(consumer.commit(offsets), _TIMEOUT)
        except (KafkaError, OSError) as exc:
            log.debug("offsets not committed to Kafka (%s); PostgreSQL has them", exc)

    async def _assigned(self, consumer: AIOKafkaConsumer, partitions: list[TopicPartition]) -> None:
        """Seek each partition to where PostgreSQL says, one message early where the last
        consumed message can be recognised, and detect a log shorter than that."""
        try:
            stored = await asyncio.wait_for(
                stored_positions(self.store, self.group_id, partitions), _TIMEOUT
            )
        except (OSError, StoreError) as exc:
            log.warning("could not read stored offsets (%s); using Kafka's", exc)
            return
        ends: dict[TopicPartition, int] = {}
        if stored:
            with suppress(KafkaError, OSError):  # if not, the anchors tell once records come
                ends = await asyncio.wait_for(consumer.end_offsets(list(stored)), _TIMEOUT)
        for tp in partitions:
            row = stored.get(tp)
            part = self._parts[tp] = PartitionLog(epoch=row.epoch if row else 0)
            if row is None:
                continue  # never consumed: Kafka's position
            if row.next_offset > ends.get(tp, row.next_offset):
                why = f"stored offset {row.next_offset} is past the log's end {ends[tp]}"
                await self._new_incarnation(consumer, tp, why)
            elif row.anchor is not None:
                consumer.seek(tp, row.anchor[0])
                part.anchor = row.anchor
            else:
                consumer.seek(tp, row.next_offset)
                part.expected = row.next_offset

    async def _verified(
        self, consumer: AIOKafkaConsumer, batch: dict[TopicPartition, list[Record]]
    ) -> dict[TopicPartition, list[Record]]:
        """The batch without anchor messages, and without partitions found to be a new
        incarnation of their log (those are read again from their start)."""
        kept: dict[TopicPartition, list[Record]] = {}
        for tp, records in batch.items():
            part = self._parts.setdefault(tp, PartitionLog())
            first, why = records[0], None
            if part.anchor is not None:
                at, known = part.anchor
                if first.offset < at:
                    why = f"the log restarts at offset {first.offset}, below {at + 1}"
                elif first.offset > at:  # the message went (retention, compaction): trust
                    part.anchor, part.expected = None, first.offset
                elif fingerprint(first) != known:
                    why = f"offset {at} holds another message than the one consumed"
                else:
                    part.anchor, part.expected = None, at + 1
                    records = records[1:]
            elif part.expected is not None and first.offset < part.expected:
                why = f"offset {first.offset} came after {part.expected}"
            if why is not None:
                await self._new_incarnation(consumer, tp, why)
            elif records:
                kept[tp] = records
        return kept

    async def _new_incarnation(
        self, consumer: AIOKafkaConsumer, tp: TopicPartition, why: str
    ) -> None:
        epoch = await self.store.tracking.reset_kafka_partition(
            self.group_id, tp.topic, tp.partition
        )
        self._parts[tp] = PartitionLog(epoch=epoch, expected=0)
        consumer.seek(tp, 0)  # out of range if the log starts later: then from its start
        log.warning(
            "%s/%d: %s: the broker lost the log the stored offsets belong to (a new cluster, "
            "or the topic recreated); reading the partition from its start, as incarnation %d",
            tp.topic,
            tp.partition,
            why,
            epoch,
        )

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

    async def process(
        self, batch: dict[TopicPartition, list[ConsumerRecord[Any, Any]]]
    ) -> dict[TopicPartition, int]:
        """Record one polled batch; returns the next offset of each partition."""
        runs: list[tuple[RunCreated, NewDeadLetter | None]] = []
        seen_keys: set[str] = set()
        dead: list[NewDeadLetter] = []
        offsets: dict[TopicPartition, int] = {}
        for tp, records in batch.items():
            epoch = self._parts[tp].epoch if tp in self._parts else 0
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
                        outcomes = [
                            in_incarnation(evaluate(rule, message, spec.name), message, epoch)
                        ]
                    for outcome in outcomes:
                        if isinstance(outcome, Accepted):
                            try:
                                params = check_params(
                                    spec.params,
                                    outcome.params,
                                    text=outcome.text,
                                    where=f"workflow {spec.name!r}",
                                )
                            except DefinitionError as exc:
                                outcome = Rejected(str(exc))
                        if isinstance(outcome, Rejected):
                            dead.append(_dead_letter(message, spec.name, outcome.reason, epoch))
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
                            # a producer's key reused for another run is its mistake: a dead
                            # letter; an offset's key taken by another message means the log
                            # was replaced under us, which the incarnation checks handle
                            producer_key = IDEMPOTENCY_HEADER in message.headers
                            letter = (
                                _dead_letter(message, spec.name, "", epoch)
                                if producer_key
                                else None
                            )
                            runs.append((created, letter))
        lasts = {tp: (r[-1].offset, fingerprint(r[-1])) for tp, r in batch.items() if r}
        # one transaction: the runs, the dead letters (a key reused for another run is
        # one), the offsets and the last messages' fingerprints; a failure records
        # nothing of the batch
        recorded = await self.store.tracking.record_kafka_batch(
            self.group_id,
            runs,
            dead,
            {(tp.topic, tp.partition): n for tp, n in offsets.items()},
            {(tp.topic, tp.partition): fp for tp, (_, fp) in lasts.items()},
        )
        refused: list[NewDeadLetter] = []  # a producer's key reused: dead letters too
        for (created, letter), result in zip(runs, recorded, strict=True):
            if isinstance(result, IdempotencyConflict):
                if letter is not None:
                    log.warning("kafka: %s; dead-lettered", result)
                    refused.append(letter)
                else:
                    log.debug("kafka: %s (%s)", result, created.trigger.source)
        if self.metrics is not None:
            for tp, records in batch.items():
                self.metrics.consumed(self.group_id, tp.topic, len(records))
            for letter in [*dead, *refused]:
                self.metrics.dead_lettered(self.group_id, letter.topic, letter.workflow or "")
        for tp, last in lasts.items():
            part = self._parts.setdefault(tp, PartitionLog())
            part.expected, part.last = last[0] + 1, last
        return offsets


def _dead_letter(message: Message, workflow: str, reason: str, epoch: int) -> NewDeadLetter:
    return NewDeadLetter(
        source="kafka",
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        value=message.value,
        headers=message.headers,
        workflow=workflow,
        reason=reason,
        epoch=epoch,
    )


class _SeekToStored(ConsumerRebalanceListener):  # type: ignore[misc]
    """On assignment, continue from the offsets PostgreSQL has, not Kafka's (and check
    that the log is still the one they belong to)."""

    def __init__(self, service: KafkaTriggerService, consumer: AIOKafkaConsumer) -> None:
        self.service = service
        self.consumer = consumer

    async def on_partitions_revoked(self, revoked: Any) -> None:
        async with self.service._lock:  # after the batch in hand, if any
            for tp in revoked:
                self.service._parts.pop(tp, None)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        async with self.service._lock:
            await self.service._assigned(self.consumer, list(assigned))

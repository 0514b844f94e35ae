"""The contract of the store's protocols beside the event log: the runs view's queries,
versions, task logs, tokens, trigger tracking, leases and slots, wake-ups, leadership,
transactions and metrics. Every store passes it (test_store_memory.py,
test_store_postgres.py subclass it with their ``store`` fixture).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from durable.core.errors import (
    ConcurrencyConflict,
    DuplicateRun,
    IdempotencyConflict,
    StoreError,
)
from durable.core.events import (
    RunCancelled,
    RunCreated,
    RunStarted,
    RunSucceeded,
    TaskSucceeded,
    Trigger,
    run_stream,
)
from durable.store.rows import AssetUpdate, NewDeadLetter, NewVersion
from tests.histories import chain, created

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def scheduled(
    run_id: str, day: int, *, kind: str = "schedule", source: str = "0 2 * * *"
) -> RunCreated:
    at = T0 + timedelta(days=day)
    return RunCreated(
        run_id=run_id,
        workflow="daily_sales",
        version="v1",
        tasks=chain(["fetch"]),
        params={"date": at.date().isoformat()},
        trigger=Trigger(kind=kind, source=source, logical_time=at),
        idempotency_key=f"schedule:daily_sales:{at.isoformat()}",
    )


def letter(offset: int, reason: str = "") -> NewDeadLetter:
    return NewDeadLetter(
        topic="orders",
        partition=0,
        offset=offset,
        key=b"k",
        value=b"{}",
        headers={"h": "1"},
        workflow="daily_sales",
        reason=reason,
    )


class TablesContract:
    transactional = True  # whether the store runs transactional SQL tasks

    # -- the runs view's queries -------------------------------------------------------

    async def test_runs_by_keys_latest_interval_and_statuses(self, store: Any) -> None:
        await store.append(run_stream("s0"), 0, [scheduled("s0", 0), RunStarted()])
        await store.append(run_stream("s1"), 0, [scheduled("s1", 1, kind="backfill")])
        await store.append(run_stream("s2"), 0, [scheduled("s2", 2), RunStarted(), RunSucceeded()])
        await store.append(run_stream("m"), 0, [created("m", key="http:x")])  # manual: not counted
        keys = [f"schedule:daily_sales:{(T0 + timedelta(days=d)).isoformat()}" for d in (0, 1, 5)]
        found = await store.runs_by_keys([*keys, "http:x"])
        assert {k: r.run_id for k, r in found.items()} == {
            keys[0]: "s0",
            keys[1]: "s1",
            "http:x": "m",
        }
        assert found[keys[0]].status == "running" and found[keys[0]].params == {
            "date": "2026-11-01"
        }
        assert await store.latest_interval("daily_sales") == T0 + timedelta(days=2)
        assert await store.latest_interval("nothing") is None
        statuses = await store.interval_statuses("daily_sales", T0, T0 + timedelta(days=2))
        assert statuses == {"running": 1, "pending": 1}

    async def test_unfinished_backfill_runs(self, store: Any) -> None:
        await store.append(
            run_stream("b0"), 0, [scheduled("b0", 0, kind="backfill", source="bf-1")]
        )
        await store.append(
            run_stream("b1"),
            0,
            [scheduled("b1", 1, kind="backfill", source="bf-1"), RunCancelled()],
        )
        await store.append(
            run_stream("b2"), 0, [scheduled("b2", 2, kind="backfill", source="bf-2")]
        )
        assert await store.unfinished_backfill_runs("bf-1") == ["b0"]
        assert await store.unfinished_backfill_runs("bf-3") == []

    async def test_stream_ids_by_prefix_newest_first(self, store: Any) -> None:
        await store.append("backfill:a", 0, [RunStarted()])
        await store.append(run_stream("r"), 0, [created("r")])
        await store.append("backfill:b", 0, [RunStarted()])
        await store.append("backfill:a", 1, [RunStarted()])
        assert await store.stream_ids("backfill:") == ["backfill:b", "backfill:a"]
        assert await store.stream_ids("backfill:", 1) == ["backfill:b"]

    # -- versions ----------------------------------------------------------------------

    async def test_versions_are_recorded_once_with_run_counts(self, store: Any) -> None:
        v1 = NewVersion(workflow="daily_sales", version="v1", definition=b'{"a":1}', source="f.py")
        assert await store.versions.first_seen("daily_sales") is None
        await store.versions.register([v1])
        first = await store.versions.first_seen("daily_sales")
        assert first is not None
        await asyncio.sleep(0.01)
        v2 = NewVersion(workflow="daily_sales", version="v2", definition=b'{"a":2}')
        await store.versions.register([v1, v2])
        await store.append(run_stream("r1"), 0, [created("r1")])  # pinned to v1
        rows = await store.versions.of("daily_sales")
        assert [(r.version, r.runs, msgspec.json.decode(r.definition)) for r in rows] == [
            ("v1", 1, {"a": 1}),
            ("v2", 0, {"a": 2}),
        ]
        assert rows[0].first_seen == first and rows[0].source == "f.py"
        assert await store.versions.first_seen("daily_sales") == first
        assert await store.versions.of("other") == []

    async def test_a_version_keeps_the_first_source_text_recorded(self, store: Any) -> None:
        def version(text: str | None) -> NewVersion:
            return NewVersion(
                workflow="w", version="v1", definition=b"{}", source="w.py", source_text=text
            )

        await store.versions.register([version(None)])  # recorded before texts were kept
        (row,) = await store.versions.of("w")
        assert row.source_text is None
        await store.versions.register([version("wf = Workflow('w')\n")])
        await store.versions.register([version("# edited comment\nwf = Workflow('w')\n")])
        (again,) = await store.versions.of("w")
        assert again.source_text == "wf = Workflow('w')\n"
        assert again.first_seen == row.first_seen

    # -- task logs ---------------------------------------------------------------------

    async def test_task_logs_in_write_order_filtered_and_written_once(self, store: Any) -> None:
        at = [T0 + timedelta(seconds=i) for i in range(4)]
        await store.logs.write(
            "r1", "fetch", 1, 1, [(at[0], "stdout", "a"), (at[2], "stderr", "b\x00")]
        )
        await store.logs.write("r1", "fetch", 1, 1, [(at[0], "stdout", "a")])  # retried: no-op
        await store.logs.write("r1", "load", 1, 2, [(at[1], "log", "c")])
        await store.logs.write("r2", "fetch", 1, 1, [(at[3], "stdout", "other run")])
        lines = await store.logs.read("r1")
        assert [(line.task, line.attempt, line.message) for line in lines] == [
            ("fetch", 1, "a"),
            ("fetch", 1, "b"),
            ("load", 2, "c"),
        ]
        assert [line.message for line in await store.logs.read("r1", "fetch")] == ["a", "b"]
        assert [line.message for line in await store.logs.read("r1", attempt=2)] == ["c"]
        assert len(await store.logs.read("r1", limit=1)) == 1
        assert lines[0].at == at[0] and lines[0].stream == "stdout" and lines[0].generation == 1

    async def test_task_logs_appended_in_batches_are_read_after_an_id(self, store: Any) -> None:
        at = [T0 + timedelta(seconds=i) for i in range(6)]
        await store.logs.write(
            "r1", "fetch", 1, 1, [(at[0], "stdout", "1"), (at[1], "stdout", "2")]
        )
        first = await store.logs.read("r1")
        assert [line.message for line in first] == ["1", "2"]
        seen = first[-1].id
        assert await store.logs.read("r1", after_id=seen) == []
        # the attempt goes on: its next batches continue its numbering
        await store.logs.write("r1", "fetch", 1, 1, [(at[2], "stdout", "3")], first_line=3)
        await store.logs.write("r1", "other", 1, 1, [(at[3], "log", "x")])
        await store.logs.write(
            "r1", "fetch", 1, 1, [(at[4], "stdout", "4"), (at[5], "stderr", "5")], first_line=4
        )
        # a batch whose answer was lost, written again: nothing doubles, no id moves
        await store.logs.write("r1", "fetch", 1, 1, [(at[2], "stdout", "3")], first_line=3)
        after = await store.logs.read("r1", after_id=seen)
        assert [line.message for line in after] == ["3", "x", "4", "5"]
        ids = [line.id for line in first + after]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
        fetch = await store.logs.read("r1", "fetch", attempt=1, after_id=seen)
        assert [line.message for line in fetch] == ["3", "4", "5"]
        page = await store.logs.read("r1", after_id=seen, limit=2)
        assert [line.message for line in page] == ["3", "x"]
        rest = await store.logs.read("r1", after_id=page[-1].id)
        assert [line.message for line in rest] == ["4", "5"]
        assert [line.message for line in await store.logs.read("r1")] == [
            "1", "2", "3", "x", "4", "5"
        ]  # fmt: skip

    async def test_a_reader_following_a_run_misses_no_line_of_concurrent_writers(
        self, store: Any
    ) -> None:
        """Many attempts of one run write at once; a reader that only ever asks for the
        lines after the last id it saw still gets every line (ids commit in order)."""
        writers, batches, size = 8, 12, 5

        async def write(w: int) -> None:
            for b in range(batches):
                lines = [(T0, "stdout", f"{w}.{b}.{i}") for i in range(size)]
                await store.logs.write("r1", f"t{w}", 1, 1, lines, first_line=b * size + 1)
                await asyncio.sleep(0)

        writing = asyncio.gather(*(write(w) for w in range(writers)))
        seen: list[str] = []
        last = 0
        while True:
            done = writing.done()
            for line in await store.logs.read("r1", after_id=last):
                seen.append(line.message)
                last = line.id
            if done:
                break
            await asyncio.sleep(0)
        await writing
        everything = [line.message for line in await store.logs.read("r1")]
        assert len(everything) == writers * batches * size
        assert seen == everything

    # -- tokens ------------------------------------------------------------------------

    async def test_tokens_insert_find_revoke_and_live(self, store: Any) -> None:
        a = await store.tokens.insert("aaaaaaaaaaaa", "ci", ["read"], b"h" * 32, "me")
        await store.tokens.insert("bbbbbbbbbbbb", "ops", ["operate", "read"], b"g" * 32, None)
        assert a.scopes == ["read"] and a.created_by == "me" and a.revoked_at is None
        assert (await store.tokens.live("aaaaaaaaaaaa")) == a
        assert [t.token_id for t in await store.tokens.find("ops")] == ["bbbbbbbbbbbb"]
        revoked = await store.tokens.revoke("aaaaaaaaaaaa")
        assert revoked is not None and revoked.revoked_at is not None
        again = await store.tokens.revoke("aaaaaaaaaaaa")
        assert again is not None and again.revoked_at == revoked.revoked_at  # the first time stays
        assert await store.tokens.revoke("nope") is None
        assert await store.tokens.live("aaaaaaaaaaaa") is None
        assert [t.name for t in await store.tokens.all()] == ["ops"]
        assert [t.name for t in await store.tokens.all(include_revoked=True)] == ["ci", "ops"]

    async def test_only_the_first_token_is_created_by_insert_first(self, store: Any) -> None:
        results = await asyncio.gather(
            *(
                store.tokens.insert_first(f"{i:012x}", "first-admin", ["admin"], b"s" * 32, "up")
                for i in range(4)
            )
        )
        assert sum(r is not None for r in results) == 1
        assert await store.tokens.insert_first("ffffffffffff", "x", ["admin"], b"s", None) is None
        assert len(await store.tokens.all(include_revoked=True)) == 1

    # -- trigger tracking ---------------------------------------------------------------

    async def test_a_kafka_batch_records_runs_dead_letters_and_offsets(self, store: Any) -> None:
        one = created("k1", key="kafka:orders:0:1")
        outcomes = await store.tracking.record_kafka_batch(
            "g", [(one, letter(1))], [letter(2, "bad json")], {("orders", 0): 3}
        )
        assert isinstance(outcomes[0], list) and outcomes[0][0].event == one
        assert await store.tracking.kafka_offsets("g", ["orders"]) == {("orders", 0): 3}
        # the same message again (a redelivery), a key reused for another run, a new run
        same = created("k2", key="kafka:orders:0:1")
        other = created("k3", key="kafka:orders:0:1", params={"date": "2030-01-01"})
        new = created("k4", key="kafka:orders:0:4")
        outcomes = await store.tracking.record_kafka_batch(
            "g", [(same, letter(1)), (other, letter(3)), (new, letter(4))], [], {("orders", 0): 2}
        )
        assert isinstance(outcomes[0], DuplicateRun)
        assert isinstance(outcomes[1], IdempotencyConflict) and outcomes[1].existing_run_id == "k1"
        assert isinstance(outcomes[2], list)
        assert await store.get_run("k2") is None and await store.get_run("k3") is None
        assert (await store.get_run("k4")) is not None
        # offsets never go backwards
        assert await store.tracking.kafka_offsets("g", ["orders"]) == {("orders", 0): 3}
        assert await store.tracking.kafka_offsets("other", ["orders"]) == {}
        letters = await store.tracking.dead_letters()
        assert [(d.offset, d.reason) for d in letters][1] == (2, "bad json")
        assert letters[0].offset == 3 and "already started run k1" in letters[0].reason
        assert letters[0].headers == {"h": "1"} and letters[0].key == b"k"
        assert (await store.metrics_counts()).dead_letters == 2

    async def test_a_failed_kafka_batch_records_nothing(self, store: Any) -> None:
        await store.append(run_stream("taken"), 0, [created("taken")])
        with pytest.raises(ConcurrencyConflict):
            await store.tracking.record_kafka_batch(
                "g",
                [(created("fresh", key="kafka:x"), letter(1)), (created("taken"), letter(2))],
                [letter(3, "bad")],
                {("orders", 0): 4},
            )
        assert await store.get_run("fresh") is None
        assert await store.tracking.dead_letters() == []
        assert await store.tracking.kafka_offsets("g", ["orders"]) == {}

    async def test_log_positions_and_assets(self, store: Any) -> None:
        assert await store.tracking.log_position("assets") == 0
        await store.tracking.set_log_position("assets", 42)
        await store.tracking.set_log_position("assets", 43)
        assert await store.tracking.log_position("assets") == 43

        def update(asset: str, run: str, position: int) -> AssetUpdate:
            return AssetUpdate(
                asset=asset, workflow="w", run_id=run, task="t", generation=1,
                updated_at=T0, position=position,
            )  # fmt: skip

        await store.tracking.upsert_assets([update("b", "r2", 5), update("a", "r1", 3)])
        await store.tracking.upsert_assets([update("b", "old", 4)])  # older: ignored
        assert [(a.asset, a.run_id) for a in await store.tracking.assets()] == [
            ("a", "r1"),
            ("b", "r2"),
        ]

    # -- leases and slots ----------------------------------------------------------------

    async def test_leases_claim_renew_release_and_expire(self, store: Any) -> None:
        for i in range(3):
            await store.append(run_stream(f"r{i}"), 0, [created(f"r{i}")])
        await store.append(run_stream("done"), 0, [created("done"), RunCancelled()])
        a = store.leases("a", ttl=30)
        b = store.leases("b", ttl=30)
        assert await a.claim(["daily_sales@v2"], 10) == []
        got = await a.claim(["daily_sales@v1"], 2)
        assert len(got) == 2
        rest = await b.claim(["daily_sales@v1"], 10)
        assert len(rest) == 1 and not set(rest) & set(got)
        assert await a.renew([*got, *rest]) == set(got)
        await a.release(got[0])
        assert await b.claim(["daily_sales@v1"], 10) == [got[0]]
        short = store.leases("c", ttl=0.05)
        await b.release(got[0])
        assert await short.claim(["daily_sales@v1"], 10) == [got[0]]
        await asyncio.sleep(0.2)
        assert await a.claim(["daily_sales@v1"], 10) == [got[0]]  # expired: taken over
        assert await short.renew([got[0]]) == set()

    async def test_backfill_runs_are_claimed_last(self, store: Any) -> None:
        await store.append(
            run_stream("bf"), 0, [scheduled("bf", 0, kind="backfill", source="bf-1")]
        )
        await store.append(run_stream("live"), 0, [scheduled("live", 1)])
        assert await store.leases("a").claim(["daily_sales@v1"], 1) == ["live"]

    async def test_slots_count_runs_holding_one(self, store: Any) -> None:
        for i in range(3):
            await store.append(run_stream(f"r{i}"), 0, [created(f"r{i}")])
        leases = store.leases("a")
        assert len(await leases.claim(["daily_sales@v1"], 3)) == 3
        limit = [("workflow", "daily_sales", 2)]
        assert await leases.take_slot("r0", limit) is True
        assert await leases.take_slot("r1", limit) is True
        assert await leases.take_slot("r2", limit) is False
        assert await leases.take_slot("r0", limit) is True  # a run does not count against itself
        await store.append(run_stream("r0"), 1, [RunCancelled()])  # a finished run frees its slot
        assert await leases.take_slot("r2", limit) is True
        assert await store.leases("other").take_slot("r2", []) is False  # not our lease

    # -- wake-ups and leadership -----------------------------------------------------------

    async def test_wake_ups_reach_a_watcher(self, store: Any) -> None:
        runs = asyncio.Event()
        controls: asyncio.Queue[str] = asyncio.Queue()
        watch = await store.wakeups.watch(runs.set, controls.put_nowait)
        try:
            await store.append(run_stream("r1"), 0, [created("r1")])
            await asyncio.wait_for(runs.wait(), 10)
            runs.clear()
            await store.wakeups.notify_runs("bf-1")
            await asyncio.wait_for(runs.wait(), 10)
            await store.wakeups.notify_control("r1")
            assert await asyncio.wait_for(controls.get(), 10) == "r1"
        finally:
            await watch.close()

    async def test_one_leader_per_role(self, store: Any) -> None:
        first = await store.leadership.try_lead("scheduler")
        assert first is not None
        try:
            assert await store.leadership.try_lead("scheduler") is None
            await first.check()
        finally:
            await first.release()
        second = await store.leadership.try_lead("scheduler")
        assert second is not None
        await second.release()

    # -- transactions and metrics -----------------------------------------------------------

    async def test_transact_commits_the_body_with_its_events_or_nothing(self, store: Any) -> None:
        await store.append(run_stream("r1"), 0, [created("r1"), RunStarted()])
        done = TaskSucceeded(task="fetch", generation=1, attempt=1, output={"n": 1})
        calls: list[Any] = []

        async def body(conn: Any) -> list[Any]:
            calls.append(conn)
            return [done]

        if not self.transactional:
            with pytest.raises(StoreError) as info:
                await store.transact(run_stream("r1"), 2, body)
            assert "PostgreSQL" in str(info.value) and not info.value.retryable
            return
        recorded = await store.transact(run_stream("r1"), 2, body)
        assert [r.seq for r in recorded] == [3] and recorded[0].event == done
        with pytest.raises(ConcurrencyConflict):
            await store.transact(run_stream("r1"), 2, body)

        class Boom(Exception):
            pass

        async def failing(conn: Any) -> list[Any]:
            raise Boom

        with pytest.raises(Boom):
            await store.transact(run_stream("r1"), 3, failing)
        assert len(await store.read_stream(run_stream("r1"))) == 3

    async def test_metrics_counts(self, store: Any) -> None:
        await store.append(run_stream("r1"), 0, [created("r1")])
        await store.append(run_stream("r2"), 0, [created("r2"), RunStarted()])
        await store.append(run_stream("r3"), 0, [created("r3", workflow="other")])
        await store.leases("a").claim(["daily_sales@v1"], 1)
        counts = await store.metrics_counts()
        assert counts.runs == [
            ("daily_sales", "pending", 1),
            ("daily_sales", "running", 1),
            ("other", "pending", 1),
        ]
        assert counts.position == await store.last_position()
        assert counts.live_leases == 1 and counts.dead_letters == 0

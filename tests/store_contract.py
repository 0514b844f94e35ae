"""The store contract: every EventStore implementation passes these tests.

A subclass provides the ``store`` fixture (see test_store_postgres.py, test_store_memory.py).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from durable.core.errors import ConcurrencyConflict, DuplicateRun, MalformedEvent, StreamNotFound
from durable.core.events import (
    RerunRequested,
    RunPaused,
    RunResumed,
    RunStarted,
    TaskSucceeded,
    run_stream,
)
from durable.core.fold import fold
from durable.core.runs_view import row_from_state
from durable.store import RunFilter
from tests.histories import created, failed_run, recorded, succeeded_run


class StoreContract:
    store: Any

    async def test_append_numbers_events_and_reads_them_back(self, store: Any) -> None:
        events = succeeded_run("r1")
        first = await store.append(run_stream("r1"), 0, events[:2])
        rest = await store.append(run_stream("r1"), 2, events[2:])
        assert [r.seq for r in first + rest] == list(range(1, len(events) + 1))
        positions = [r.position for r in first + rest]
        assert positions == sorted(positions) and len(set(positions)) == len(positions)
        back = await store.read_stream(run_stream("r1"))
        assert [r.event for r in back] == events
        assert [r.position for r in back] == positions
        assert [r.event for r in await store.read_stream(run_stream("r1"), 5)] == events[5:]

    async def test_stale_expected_seq_is_a_conflict_and_writes_nothing(self, store: Any) -> None:
        await store.append(run_stream("r1"), 0, [created("r1"), RunStarted()])
        for expected in (0, 1, 3):
            with pytest.raises(ConcurrencyConflict) as info:
                await store.append(run_stream("r1"), expected, [RunPaused()])
            assert info.value.stream_id == "run:r1"
            assert info.value.expected_seq == expected
            assert info.value.actual_seq == 2
        assert len(await store.read_stream(run_stream("r1"))) == 2

    async def test_only_one_of_competing_writers_extends_a_stream(self, store: Any) -> None:
        await store.append(run_stream("r1"), 0, [created("r1"), RunStarted()])
        results = await asyncio.gather(
            *(store.append(run_stream("r1"), 2, [RunPaused(by=f"w{i}")]) for i in range(8)),
            return_exceptions=True,
        )
        winners = [r for r in results if not isinstance(r, BaseException)]
        losers = [r for r in results if isinstance(r, BaseException)]
        assert len(winners) == 1
        assert all(isinstance(e, ConcurrencyConflict) for e in losers)
        stream = await store.read_stream(run_stream("r1"))
        assert len(stream) == 3 and stream[-1].event == winners[0][0].event

    async def test_conflict_inside_a_batch_fails_only_that_append(self, store: Any) -> None:
        for i in range(20):
            await store.append(run_stream(f"r{i}"), 0, [created(f"r{i}")])
        stale = store.append(run_stream("r7"), 0, [RunStarted()])
        fresh = [store.append(run_stream(f"r{i}"), 1, [RunStarted()]) for i in range(20) if i != 7]
        results = await asyncio.gather(stale, *fresh, return_exceptions=True)
        assert isinstance(results[0], ConcurrencyConflict)
        assert all(isinstance(r, list) and r[0].seq == 2 for r in results[1:])
        assert len(await store.read_stream(run_stream("r7"))) == 1

    async def test_idempotency_key_creates_one_run(self, store: Any) -> None:
        await store.append(run_stream("a"), 0, [created("a", key="kafka:orders:0:42")])
        with pytest.raises(DuplicateRun) as info:
            await store.append(run_stream("b"), 0, [created("b", key="kafka:orders:0:42")])
        assert info.value.existing_run_id == "a"
        assert await store.read_stream(run_stream("b")) == []
        assert await store.get_run("b") is None
        # the failed creation leaves nothing behind: the run id can still be created
        await store.append(run_stream("b"), 0, [created("b", key="other")])

    async def test_concurrent_creations_with_one_key_create_one_run(self, store: Any) -> None:
        results = await asyncio.gather(
            *(
                store.append(run_stream(f"c{i}"), 0, [created(f"c{i}", key="same")])
                for i in range(6)
            ),
            return_exceptions=True,
        )
        assert sum(isinstance(r, list) for r in results) == 1
        assert all(isinstance(r, list | DuplicateRun) for r in results)
        assert len(await store.list_runs()) == 1

    async def test_bad_events_are_refused_alone(self, store: Any) -> None:
        await store.append(run_stream("r1"), 0, [created("r1"), RunStarted()])
        nul = TaskSucceeded(task="fetch", generation=1, attempt=1, output="a\x00b")
        good, bad = await asyncio.gather(
            store.append(run_stream("r2"), 0, [created("r2")]),
            store.append(run_stream("r1"), 2, [nul]),
            return_exceptions=True,
        )
        assert isinstance(bad, MalformedEvent) and "NUL" in str(bad)
        assert isinstance(good, list)
        with pytest.raises(MalformedEvent):
            await store.append(run_stream("r3"), 0, [RunStarted(), created("r3")])
        with pytest.raises(MalformedEvent):
            await store.append(run_stream("other"), 0, [created("r4")])

    async def test_read_all_is_in_commit_order_from_any_position(self, store: Any) -> None:
        await asyncio.gather(
            *(store.append(run_stream(f"r{i}"), 0, succeeded_run(f"r{i}")) for i in range(10))
        )
        everything = await store.read_all(0, 10_000)
        assert len(everything) == 10 * len(succeeded_run("x"))
        positions = [r.position for r in everything]
        assert positions == sorted(positions)
        per_stream: dict[str, list[int]] = {}
        for r in everything:
            per_stream.setdefault(r.stream_id, []).append(r.seq)
        assert all(seqs == list(range(1, len(seqs) + 1)) for seqs in per_stream.values())
        middle = positions[len(positions) // 2]
        assert await store.read_all(middle, 10_000) == [
            r for r in everything if r.position > middle
        ]
        assert len(await store.read_all(0, 7)) == 7
        assert await store.last_position() == positions[-1]

    async def test_wait_for_events_wakes_on_append_and_times_out_without(self, store: Any) -> None:
        await store.append(run_stream("r1"), 0, [created("r1")])
        last = await store.last_position()
        assert await store.wait_for_events(last, 0.2) is False

        async def later() -> None:
            await asyncio.sleep(0.1)
            await store.append(run_stream("r1"), 1, [RunStarted()])

        task = asyncio.create_task(later())
        assert await store.wait_for_events(last, 20) is True
        await task

    async def test_subscribe_yields_existing_then_new_events(self, store: Any) -> None:
        await store.append(run_stream("r1"), 0, [created("r1"), RunStarted()])
        seen: list[int] = []

        async def consume() -> None:
            async for r in store.subscribe(0):
                seen.append(r.seq)
                if len(seen) == 4:
                    return

        task = asyncio.create_task(consume())
        await asyncio.sleep(0.05)
        await store.append(run_stream("r1"), 2, [RunPaused(), RunResumed()])
        await asyncio.wait_for(task, 20)
        assert seen == [1, 2, 3, 4]

    async def test_runs_read_model_follows_the_log(self, store: Any) -> None:
        await store.append(run_stream("ok"), 0, succeeded_run("ok", key="k-ok"))
        await store.append(run_stream("bad"), 0, failed_run("bad"))
        await store.append(run_stream("other"), 0, [created("other", workflow="clicks")])
        await store.append(run_stream("other"), 1, [RunStarted(), RunPaused(reason="ops")])
        for run_id in ("ok", "bad", "other"):
            state = fold(await store.read_stream(run_stream(run_id)))
            assert state is not None
            assert await store.get_run(run_id) == row_from_state(state)
        ok = await store.get_run("ok")
        assert ok.status == "succeeded" and ok.idempotency_key == "k-ok"
        assert ok.finished_at is not None and ok.started_at is not None
        assert (await store.get_run("other")).status == "paused"
        assert await store.get_run("missing") is None

        assert {r.run_id for r in await store.list_runs()} == {"ok", "bad", "other"}
        assert [r.run_id for r in await store.list_runs(RunFilter(status="failed"))] == ["bad"]
        assert [r.run_id for r in await store.list_runs(RunFilter(workflow="clicks"))] == ["other"]
        assert len(await store.list_runs(RunFilter(limit=2))) == 2
        newest = (await store.list_runs())[0]
        later = newest.created_at + timedelta(seconds=1)
        assert await store.list_runs(RunFilter(since=later)) == []

    async def test_list_runs_until_keeps_runs_created_strictly_before(self, store: Any) -> None:
        for i in range(3):
            await store.append(run_stream(f"u{i}"), 0, [created(f"u{i}")])
        every = await store.list_runs()
        oldest, newest = every[-1].created_at, every[0].created_at
        older = await store.list_runs(RunFilter(until=newest))
        assert every[0] not in older
        assert older == [r for r in every if r.created_at < newest]
        assert await store.list_runs(RunFilter(until=oldest)) == []
        assert await store.list_runs(RunFilter(until=newest + timedelta(seconds=1))) == every
        window = RunFilter(since=oldest, until=newest, workflow="daily_sales", limit=10)
        assert await store.list_runs(window) == [
            r for r in every if oldest <= r.created_at < newest
        ]

    async def test_rebuild_runs_from_the_log(self, store: Any) -> None:
        for i in range(5):
            await store.append(run_stream(f"r{i}"), 0, succeeded_run(f"r{i}"))
        await store.append(run_stream("f"), 0, failed_run("f"))
        before = await store.list_runs()
        calls: list[tuple[int, int]] = []
        assert await store.rebuild_runs(lambda done, total: calls.append((done, total))) == 6
        assert calls[-1] == (6, 6)
        assert await store.list_runs() == before

    async def test_require_stream_names_an_unknown_stream(self, store: Any) -> None:
        with pytest.raises(StreamNotFound) as info:
            await store.require_stream(run_stream("nope"))
        assert "run:nope" in str(info.value)

    async def test_import_keeps_times_and_derives_the_run_row(self, store: Any) -> None:
        records = recorded("imp", failed_run("imp", key="k-imp"))
        placed = await store.import_stream(run_stream("imp"), records)
        assert [(r.seq, r.recorded_at, r.event) for r in placed] == [
            (r.seq, r.recorded_at, r.event) for r in records
        ]
        back = await store.read_stream(run_stream("imp"))
        assert [(r.seq, r.recorded_at, r.event) for r in back] == [
            (r.seq, r.recorded_at, r.event) for r in records
        ]
        assert await store.get_run("imp") == row_from_state(fold(records))
        with pytest.raises(ConcurrencyConflict):
            await store.import_stream(run_stream("imp"), records)
        # the imported run continues like any other
        await store.append(
            run_stream("imp"), len(records), [RerunRequested(request_id="r1", tasks=("report",))]
        )
        assert (await store.get_run("imp")).status == "running"

    async def test_read_streams_reads_many_streams_at_once(self, store: Any) -> None:
        for i in range(5):
            await store.append(run_stream(f"r{i}"), 0, succeeded_run(f"r{i}"))
        wanted = [run_stream("r3"), run_stream("r0"), run_stream("missing")]
        got = await store.read_streams(wanted)
        assert set(got) == set(wanted)
        assert got[run_stream("missing")] == []
        for stream in wanted[:2]:
            assert got[stream] == await store.read_stream(stream)

    async def test_streams_other_than_runs_are_fenced_too(self, store: Any) -> None:
        """Schedules and backfills have streams of their own, with the same contract."""
        stream = "schedule:daily_sales"
        first = await store.append(stream, 0, [RunPaused(reason="a"), RunResumed()])
        assert [r.seq for r in first] == [1, 2]
        with pytest.raises(ConcurrencyConflict) as info:
            await store.append(stream, 0, [RunPaused()])
        assert info.value.actual_seq == 2
        results = await asyncio.gather(
            *(store.append(stream, 2, [RunPaused(by=str(i))]) for i in range(5)),
            store.append(run_stream("r1"), 0, [created("r1")]),
            return_exceptions=True,
        )
        assert sum(isinstance(r, list) for r in results[:5]) == 1
        assert isinstance(results[5], list)
        assert [r.seq for r in await store.read_stream(stream)] == [1, 2, 3]
        assert await store.get_run("r1") is not None

    async def test_a_commit_observer_hears_every_committed_append(self, store: Any) -> None:
        """Telemetry's hook: each commit says how many appends and events it wrote, how
        long it took and its oldest append waited; a rejected append is not counted."""
        heard: list[tuple[int, int, float, float]] = []

        class Observer:
            def committed(self, appends: int, events: int, seconds: float, waited: float) -> None:
                heard.append((appends, events, seconds, waited))

        store.observe_commits(Observer())
        for i in range(10):
            await store.append(run_stream(f"r{i}"), 0, [created(f"r{i}")])
        results = await asyncio.gather(
            *(store.append(run_stream(f"r{i}"), 1, [RunStarted(), RunPaused()]) for i in range(10)),
            store.append(run_stream("r3"), 0, [RunStarted()]),  # stale: refused
            return_exceptions=True,
        )
        assert isinstance(results[-1], ConcurrencyConflict)
        assert sum(appends for appends, _, _, _ in heard) == 20
        assert sum(events for _, events, _, _ in heard) == 10 + 20
        assert all(0 <= seconds <= waited for _, _, seconds, waited in heard)
        store.observe_commits(None)
        await store.append(run_stream("r0"), 3, [RunResumed()])
        assert sum(appends for appends, _, _, _ in heard) == 20  # no longer told

    async def test_notification_events_are_the_outboxs_events_of_every_stream(
        self, store: Any
    ) -> None:
        from durable.core.events import (
            NotificationFailed,
            NotificationRequested,
            NotificationSent,
            NotifyRule,
        )

        rule = NotifyRule(channel="webhook", target="https://example.com/hook")

        def asked(nid: str) -> NotificationRequested:
            return NotificationRequested(
                notification_id=nid, on="run_failed", rule="w0", channel=rule
            )

        await store.append(run_stream("r1"), 0, [*failed_run("r1"), asked("a")])
        await store.append(run_stream("r2"), 0, [*succeeded_run("r2"), asked("b")])
        await store.append(
            run_stream("r1"), len(failed_run("r1")) + 1, [NotificationSent(notification_id="a")]
        )
        await store.append(
            run_stream("r2"),
            len(succeeded_run("r2")) + 1,
            [NotificationFailed(notification_id="b", attempts=3, reason="HTTP 500")],
        )
        found = await store.notification_events()
        assert [type(r.event).__name__ for r in found] == [
            "NotificationRequested",
            "NotificationRequested",
            "NotificationSent",
            "NotificationFailed",
        ]
        assert [r.stream_id for r in found] == ["run:r1", "run:r2", "run:r1", "run:r2"]
        assert await store.notification_events(found[1].position) == found[2:]
        assert await store.notification_events(0, 1) == found[:1]

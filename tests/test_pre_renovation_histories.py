"""Histories exported before the renovation still load, fold, replay and export unchanged.

The files under tests/golden/pre_renovation/ were written by durable at commit e855c10
(see the README there). Today's code reads them with the history reader, imports them
into a real PostgreSQL through the store and through `durable import`, folds each stream
with its kind's fold, checks the runs read model against the fold (`durable replay
--verify`) and exports them again: the event data must come back byte for byte.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
from click.testing import CliRunner

from durable.cli import main
from durable.core.backfill import backfill_state
from durable.core.errors import InvalidTransition, MalformedEvent
from durable.core.events import (
    BackfillRequested,
    Recorded,
    RunStarted,
    SchedulePaused,
    ScheduleResumed,
    schedule_event,
    stream_kind,
)
from durable.core.fold import fold
from durable.core.history import ExportedEvent, check_streams, dump_line, read_history_file
from durable.core.runs_view import row_from_state
from durable.store import PostgresEventStore

GOLDEN = Path(__file__).resolve().parent / "golden" / "pre_renovation"
_BESIDE = (
    ".states.jsonl",
    ".old_reexport.jsonl",
    ".old_db_export.jsonl",
)  # files beside a history, not histories
ALL_FILES = sorted(p.name for p in GOLDEN.glob("*.jsonl") if not p.name.endswith(_BESIDE))
# the run files: each has the old code's fold of its streams beside it
RUN_FILES = [n for n in ALL_FILES if (GOLDEN / n).with_suffix(".states.jsonl").exists()]
_line = msgspec.json.Decoder(ExportedEvent)


def _streams(name: str) -> dict[str, list[Recorded]]:
    return check_streams(read_history_file(GOLDEN / name))


def _old_export(name: str, *, through_db: bool = False) -> bytes:
    """What the old code wrote when it exported ``name``'s events: the file itself (it
    was exported by the old code), or, for the hand-written example, the old code's round
    trip of it: through its reader and writer, or ``through_db`` (imported into its
    PostgreSQL, whose jsonb orders the keys of payload objects, and exported again)."""
    suffix = ".old_db_export.jsonl" if through_db else ".old_reexport.jsonl"
    again = GOLDEN / name.replace(".jsonl", suffix)
    return (again if again.exists() else GOLDEN / name).read_bytes()


def _old_states(name: str) -> list[dict[str, Any]]:
    path = GOLDEN / name.replace(".jsonl", ".states.jsonl")
    return [msgspec.json.decode(line) for line in path.read_bytes().splitlines()]


def _same_event_data(got: list[bytes], want: list[bytes]) -> None:
    """Two exports of a stream agree on everything but ``position`` (which database-wide
    order a database gave the events), ``data`` compared as raw bytes."""
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        a, b = _line.decode(g), _line.decode(w)
        assert (a.stream_id, a.seq, a.recorded_at, a.type, a.version) == (
            b.stream_id,
            b.seq,
            b.recorded_at,
            b.type,
            b.version,
        )
        assert bytes(a.data) == bytes(b.data), f"{a.stream_id} seq {a.seq}: data changed"


def test_the_golden_files_are_there() -> None:
    assert {
        "daily_sales_history.jsonl",
        "run_retry_map_rerun.jsonl",
        "run_backfill_interval.jsonl",
        "run_paused_resumed_cancelled.jsonl",
        "backfill_cancelled.jsonl",
        "schedule_paused_resumed.jsonl",
    } <= set(ALL_FILES)
    assert set(RUN_FILES) >= {"daily_sales_history.jsonl", "run_retry_map_rerun.jsonl"}


@pytest.mark.parametrize("name", ALL_FILES)
def test_an_old_export_reads_and_writes_back_byte_for_byte(name: str) -> None:
    records = read_history_file(GOLDEN / name)
    old = _old_export(name)
    assert len(records) == len(old.splitlines()) > 0
    assert b"".join(dump_line(r) for r in records) == old


@pytest.mark.parametrize("name", RUN_FILES)
def test_old_runs_fold_to_the_state_the_old_code_folded(name: str) -> None:
    streams = _streams(name)
    assert all(stream_kind(s) == "run" for s in streams)
    old = _old_states(name)
    assert len(old) == len(streams)
    for stream_id, want in zip(sorted(streams), old, strict=True):
        state = fold(streams[stream_id])
        assert state is not None and state.stream_id == stream_id
        got = msgspec.json.decode(msgspec.json.encode(state))
        # a field today's state adds (to the run or to its tasks) is not the old history's
        # business; every old one is
        got["tasks"] = {
            name: {k: v for k, v in task.items() if k in want["tasks"].get(name, task)}
            for name, task in got["tasks"].items()
        }
        changed = {k: (got.get(k), v) for k, v in want.items() if got.get(k) != v}
        assert not changed, f"{stream_id}: today's fold differs from the old one: {changed}"


def test_the_old_runs_cover_what_the_renovation_must_keep_reading() -> None:
    types = {
        r.event.__struct_config__.tag
        for name in RUN_FILES
        for recs in _streams(name).values()
        for r in recs
    }
    assert {
        "task_retry_scheduled",
        "task_mapped",
        "rerun_requested",
        "task_failed",
        "run_paused",
        "run_resumed",
        "run_cancelled",
    } <= types
    (backfill_run,) = _streams("run_backfill_interval.jsonl").values()
    state = fold(backfill_run)
    assert state is not None and state.trigger.kind == "backfill"
    assert state.trigger.logical_time == datetime.fromisoformat("2026-11-03T02:00:00+00:00")
    assert state.trigger.data_interval_end == datetime.fromisoformat("2026-11-04T02:00:00+00:00")


def test_an_old_backfill_stream_folds_with_the_backfill_fold() -> None:
    (stream_id,) = (streams := _streams("backfill_cancelled.jsonl"))
    assert stream_kind(stream_id) == "backfill"
    state = backfill_state(r.event for r in streams[stream_id])
    assert state is not None and state.status == "cancelled"
    assert state.request == BackfillRequested(
        backfill_id=stream_id.removeprefix("backfill:"),
        workflow="golden",
        start=datetime.fromisoformat("2026-11-01T00:00:00+00:00"),
        end=datetime.fromisoformat("2026-11-04T00:00:00+00:00"),
        intervals=3,
        max_parallel=2,
        by="cli",
    )
    # each fold reads its own stream only
    with pytest.raises(InvalidTransition, match="cannot be in a run's stream"):
        fold(streams[stream_id])


def test_an_old_schedule_stream_holds_schedule_events() -> None:
    ((stream_id, records),) = _streams("schedule_paused_resumed.jsonl").items()
    assert stream_kind(stream_id) == "schedule"
    events = [schedule_event(r.event, where=stream_id) for r in records]
    assert events == [
        SchedulePaused(reason="renovation golden", by="cli"),
        ScheduleResumed(by="cli"),
    ]


def test_a_stream_holding_another_kind_of_event_is_refused() -> None:
    ((stream_id, run),) = _streams("run_paused_resumed_cancelled.jsonl").items()
    (schedule,) = _streams("schedule_paused_resumed.jsonl").values()
    (backfill,) = _streams("backfill_cancelled.jsonl").values()
    last = run[-1]
    foreign = msgspec.structs.replace(schedule[0], stream_id=stream_id, seq=last.seq + 1)
    with pytest.raises(InvalidTransition, match="schedule_paused is impossible here"):
        fold([*run, foreign])
    with pytest.raises(MalformedEvent, match="run_started is not an event of a backfill"):
        backfill_state([backfill[0].event, RunStarted()])
    wrong = msgspec.structs.replace(run[0], stream_id=schedule[0].stream_id)
    with pytest.raises(MalformedEvent, match="run_created is not an event of a schedule"):
        check_streams([wrong])


async def test_old_histories_import_into_postgres_and_export_unchanged(
    pg_store: PostgresEventStore,
) -> None:
    for name in ALL_FILES:
        lines = _old_export(name, through_db=True).splitlines(keepends=True)
        for stream_id, records in _streams(name).items():
            imported = await pg_store.import_stream(stream_id, records)
            assert [r.seq for r in imported] == [r.seq for r in records]
            back = await pg_store.read_stream(stream_id)
            assert [r.event for r in back] == [r.event for r in records]
            want = [line for line in lines if _line.decode(line).stream_id == stream_id]
            _same_event_data([dump_line(r) for r in back], want)
            if stream_kind(stream_id) == "run":
                state = fold(back)
                assert state is not None
                # `durable replay --verify`: the read model written at import is the fold
                assert await pg_store.get_run(state.run_id) == row_from_state(state)


@pytest.fixture
def cli(database_url: str):  # type: ignore[no-untyped-def]
    runner = CliRunner()

    def invoke(*args: str):  # type: ignore[no-untyped-def]
        return runner.invoke(main, ["--database-url", database_url, *args])

    return invoke


def test_durable_import_replay_verify_and_export_of_old_files(cli) -> None:  # type: ignore[no-untyped-def]
    for name in ALL_FILES:
        result = cli("import", str(GOLDEN / name))
        assert result.exit_code == 0, result.output
        lines = _old_export(name, through_db=True).splitlines(keepends=True)
        for stream_id in _streams(name):
            if stream_kind(stream_id) != "run":
                continue
            run_id = stream_id.removeprefix("run:")
            verified = cli("replay", run_id, "--verify")
            assert verified.exit_code == 0, verified.output
            assert "verified: the runs read model matches the log" in verified.output
            exported = cli("export", run_id)
            assert exported.exit_code == 0, exported.output
            want = [line for line in lines if _line.decode(line).stream_id == stream_id]
            _same_event_data(exported.stdout_bytes.splitlines(keepends=True), want)
        again = cli("import", str(GOLDEN / name))  # idempotent: nothing new, no error
        assert again.exit_code == 0, again.output
        assert "already imported, unchanged" in again.output

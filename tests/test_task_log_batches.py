"""A flood of log lines, cheaply: a chunk of output goes into an attempt's log at once
(``TaskLog.write_many``), and a large batch goes to PostgreSQL by COPY. Both must keep
what line-by-line writing and one INSERT a batch keep: the cap and its markers, order,
numbering, retried batches written once, ids in commit order."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from durable import Workflow
from durable.core.log_lines import LogLines
from durable.store import PostgresEventStore
from durable.store.postgres.task_logs import COPY_LINES
from durable.workflows.context import TaskLog
from tests.executing import run_to_end

T0 = datetime(2026, 11, 1, 12, 0, 0, 123456, tzinfo=UTC)

# -- write_many: what write, line by line, would keep --------------------------------------

_messages = st.lists(
    st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)
    | st.sampled_from(["ends\n", "two\nlines", "\udc80 lone", "héllo ✓"]),
    max_size=40,
)


def _kept(log: TaskLog) -> list[tuple[str, str]]:
    return [(stream, message) for _, stream, message in log.lines]


@settings(max_examples=300, deadline=None)
@given(
    messages=_messages,
    cuts=st.lists(st.integers(0, 40), max_size=6),
    max_bytes=st.integers(0, 120),
)
def test_write_many_keeps_what_writing_line_by_line_keeps(
    messages: list[str], cuts: list[int], max_bytes: int
) -> None:
    one_by_one, chunked = TaskLog(max_bytes=max_bytes), TaskLog(max_bytes=max_bytes)
    for m in messages:
        one_by_one.write("stdout", m)
    bounds = [0, *sorted(c for c in cuts if c <= len(messages)), len(messages)]
    for a, b in pairwise(bounds):
        chunked.write_many("stdout", messages[a:b])
    assert _kept(chunked) == _kept(one_by_one)
    assert chunked.dropped == one_by_one.dropped
    one_by_one.close()
    chunked.close()
    assert _kept(chunked) == _kept(one_by_one)


def test_the_cap_falls_inside_a_chunk_lines_before_it_then_one_marker() -> None:
    log = TaskLog(max_bytes=20)
    log.write_many("stdout", ["aaaa", "bbbb", "cccc"])  # 15 bytes with their newlines
    log.write_many("stderr", ["dddd", "eeee", "ffff"])  # dddd fits (20), the rest do not
    log.write_many("stdout", ["gggg"])
    log.close()
    assert _kept(log) == [
        ("stdout", "aaaa"),
        ("stdout", "bbbb"),
        ("stdout", "cccc"),
        ("stderr", "dddd"),
        ("log", "[log truncated: the attempt's log is over 20 bytes; further lines dropped]"),
        ("log", "[log truncated: 3 lines dropped]"),
    ]
    assert log.dropped == 3


def test_a_chunk_shares_one_time_stamp_and_the_count_tells_when_a_batch_waits() -> None:
    told: list[bool] = []
    log = TaskLog(batch=5, notify=told.append)
    log.write_many("stdout", ["1", "2"])
    assert told == [False]  # the first line waits
    log.write_many("stdout", ["3", "4"])
    assert told == [False]
    log.write_many("stdout", ["5", "6", "7"])  # past the batch: a batch waits
    assert told == [False, True]
    assert len({at for at, _, _ in log.lines[:2]}) == 1
    first, lines = log.take(100)
    assert first == 1 and [m for _, _, m in lines] == ["1", "2", "3", "4", "5", "6", "7"]
    log.write_many("stdout", ["8"])  # taken: the next line is the first to wait again
    assert told == [False, True, False]
    assert log.take(100)[0] == 8


def test_time_stamps_follow_the_clock_to_the_millisecond() -> None:
    log = TaskLog()
    before = datetime.now(UTC)
    log.write("log", "a")
    after = datetime.now(UTC)
    ((at, _, _),) = log.lines
    assert before - timedelta(milliseconds=1) <= at <= after


_T = [T0, T0 + timedelta(seconds=1)]
_lines = st.lists(
    st.tuples(st.sampled_from(_T), st.sampled_from(["stdout", "stderr"]), st.text(max_size=3)),
    max_size=30,
)


@given(lines=_lines, a=st.integers(-35, 35), b=st.integers(-35, 35))
def test_log_lines_are_the_sequence_of_their_lines(
    lines: list[tuple[datetime, str, str]], a: int, b: int
) -> None:
    batch = LogLines.of(lines)
    assert list(batch) == lines and len(batch) == len(lines)
    assert list(batch[a:b]) == lines[a:b] and list(batch[::2]) == lines[::2]
    assert list(batch.messages) == [m for _, _, m in lines]
    for i in (a, b):
        if -len(lines) <= i < len(lines):
            assert batch[i] == lines[i]
    # consecutive lines of one time stamp and stream are one run
    assert len(batch.runs) == len(
        {i for i in range(len(lines)) if i == 0 or lines[i][:2] != lines[i - 1][:2]}
    )


@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(
        st.one_of(
            st.tuples(st.just("write"), st.sampled_from(["stdout", "stderr"]), st.integers(1, 4)),
            st.tuples(st.just("take"), st.integers(1, 6), st.booleans()),
        ),
        max_size=30,
    )
)
def test_taking_and_giving_back_keeps_every_line_once_numbered_in_order(
    steps: list[tuple[str, object, object]],
) -> None:
    """Whatever the writes, takes (some given back, as after a failed write) and their
    sizes: the lines taken for good, then those still waiting, are the lines written, in
    order, each batch numbered from where the last one ended."""
    log = TaskLog()
    written: list[tuple[str, str]] = []
    stored: list[tuple[str, str]] = []
    for step in steps:
        if step[0] == "write":
            _, stream, n = step
            assert isinstance(stream, str) and isinstance(n, int)
            new = [f"{len(written) + i}" for i in range(n)]
            if n == 1:
                log.write(stream, new[0])
            else:
                log.write_many(stream, new)
            written += [(stream, m) for m in new]
        else:
            _, limit, fails = step
            assert isinstance(limit, int)
            first, batch = log.take(limit)
            assert first == len(stored) + 1 and len(batch) <= limit
            if fails:
                log.give_back(first, batch)
            else:
                stored += [(stream, m) for _, stream, m in batch]
        assert log.waiting == len(written) - len(stored)
    assert stored + _kept(log) == written


# -- COPY: a large batch stores what an INSERT would -----------------------------------------


def _batch(n: int, at: datetime = T0) -> list[tuple[datetime, str, str]]:
    return [(at, "stdout" if i % 3 else "stderr", f"line {i}") for i in range(1, n + 1)]


async def test_a_large_batch_is_stored_as_a_small_one_odd_characters_and_all(
    pg_store: PostgresEventStore,
) -> None:
    odd = [
        "tab\there",
        "back\\slash \\N \\.",
        "carriage\rreturn",
        "new\nline",
        "nul\x00byte",
        "",
        "héllo ✓ 𝄞",
        "\\",
    ]
    naive = datetime(2026, 11, 1, 9, 30)  # as asyncpg sends it: local time
    lines = [
        (T0 + timedelta(microseconds=i % 7), "stdout", odd[i % len(odd)])
        for i in range(COPY_LINES + 10)
    ]
    lines[9] = (naive, "std\terr", "a naive time stamp and an odd stream")
    await pg_store.logs.write("big", "t", 1, 1, lines)
    for i in range(0, len(lines), 7):  # the same lines, in small batches (INSERT)
        await pg_store.logs.write("small", "t", 1, 1, lines[i : i + 7], first_line=i + 1)
    big = await pg_store.logs.read("big")
    small = await pg_store.logs.read("small")
    assert [(x.at, x.stream, x.message) for x in big] == [
        (x.at, x.stream, x.message) for x in small
    ]
    assert [x.message for x in big[:8]] == [m.replace("\x00", "") for m in odd]
    assert big[9].at == naive.astimezone(UTC) and big[9].stream == "std\terr"


async def test_a_large_batch_written_again_or_overlapping_adds_only_new_lines(
    pg_store: PostgresEventStore,
) -> None:
    n = COPY_LINES * 2
    lines = _batch(3 * n)
    await pg_store.logs.write("r", "t", 1, 1, lines[:n])
    await pg_store.logs.write("r", "t", 1, 1, lines[:n])  # its answer was lost: again
    # a batch given back after a failure, with more lines behind it
    await pg_store.logs.write("r", "t", 1, 1, lines[n // 2 : 2 * n], first_line=n // 2 + 1)
    await pg_store.logs.write("r", "other", 1, 1, lines[:n])
    await pg_store.logs.write("r", "t", 1, 2, lines[:3])  # the next attempt, from line 1
    await pg_store.logs.write("r", "t", 1, 1, lines[2 * n :], first_line=2 * n + 1)
    stored = await pg_store.logs.read("r", "t", attempt=1)
    assert [x.message for x in stored] == [m for _, _, m in lines]
    everything = await pg_store.logs.read("r")
    ids = [x.id for x in everything]
    assert ids == sorted(set(ids)) and len(everything) == 4 * n + 3


async def test_a_reader_following_large_concurrent_batches_misses_no_line(
    pg_store: PostgresEventStore,
) -> None:
    """COPY batches of one run commit in id order too (the run's lock before the ids)."""
    writers, batches, size = 4, 3, COPY_LINES + 1

    async def write(w: int) -> None:
        for b in range(batches):
            lines = [(T0, "stdout", f"{w}.{b}.{i}") for i in range(size)]
            await pg_store.logs.write("r", f"t{w}", 1, 1, lines, first_line=b * size + 1)

    writing = asyncio.gather(*(write(w) for w in range(writers)))
    seen: list[str] = []
    last = 0
    while True:
        done = writing.done()
        for line in await pg_store.logs.read("r", after_id=last):
            seen.append(line.message)
            last = line.id
        if done:
            break
        await asyncio.sleep(0)
    await writing
    everything = [x.message for x in await pg_store.logs.read("r")]
    assert len(everything) == writers * batches * size
    assert seen == everything


# -- a shell task's chunks ------------------------------------------------------------------


async def test_shell_output_in_chunks_keeps_lines_bytes_and_giant_lines(
    pg_store: PostgresEventStore,
) -> None:
    wf = Workflow("chunks")
    # an undecodable byte before a newline, empty lines, a 300 KiB line (longer than a
    # chunk: stored in pieces), a last line without a newline
    wf.shell(
        "talk",
        r"printf 'a\377\nb\n\n'; head -c 307200 /dev/zero | tr '\0' x; "
        r"printf '\nc\t\\d\r\nend'",
        retries=0,
    )
    state = await run_to_end(pg_store, wf, task_log_max_bytes=10_000_000)
    assert state.status == "succeeded"
    lines = [x.message for x in await pg_store.logs.read(state.run_id)]
    assert lines[:3] == ["a\ufffd", "b", ""]
    assert "".join(lines[3:-2]) == "x" * 307200 and len(lines[3:-2]) >= 2
    assert lines[-2:] == ["c\t\\d\r", "end"]

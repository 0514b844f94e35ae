"""The operator CLI against a real database: output, exit codes, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from durable.cli import main
from tests.processes import durable

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "daily_sales_history.jsonl"
FAILED_THEN_RERUN = "01JDSALES20261121"


@pytest.fixture
def cli(database_url: str):  # type: ignore[no-untyped-def]
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None):  # type: ignore[no-untyped-def]
        return runner.invoke(main, ["--database-url", database_url, *args], input=input)

    result = invoke("import", str(EXAMPLE))
    assert result.exit_code == 0, result.output
    return invoke


def test_history_shows_every_event_with_generations(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("history", FAILED_THEN_RERUN)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    for column in ("seq", "time (UTC)", "type", "task", "gen", "attempt", "summary"):
        assert column in lines[0]
    rows = [line for line in lines[2:] if line.split("│")[0].strip().isdigit()]
    assert len(rows) == 26
    assert "2026-11-22 01:00:00.095" in rows[0]  # imported commit times are kept
    assert "KeyError: 'currency' missing in 3 rows (not retryable)" in result.output
    assert "request rr-7d2e: report → generation 2" in result.output
    report_gen2 = [r for r in rows if "report" in r and "task_succeeded" in r]
    assert len(report_gen2) == 1 and report_gen2[0].split("│")[4].strip() == "2"


def test_history_json_is_the_export_format(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("history", FAILED_THEN_RERUN, "--json")
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert [line["seq"] for line in lines] == list(range(1, 27))
    assert lines[19]["type"] == "task_failed" and lines[19]["data"]["task"] == "report"


def test_replay_shows_state_at_the_end_and_at_any_seq(cli) -> None:  # type: ignore[no-untyped-def]
    end = cli("replay", FAILED_THEN_RERUN)
    assert end.exit_code == 0, end.output
    assert "status succeeded  (at seq 26 of 26)" in end.output
    assert "generation 2" in end.output
    at_failure = cli("replay", FAILED_THEN_RERUN, "--at", "21")
    assert "status failed  (at seq 21 of 26)" in at_failure.output
    assert "reason: task report failed" in at_failure.output
    report = next(line for line in at_failure.output.splitlines() if line.startswith("report"))
    assert "failed" in report and "KeyError" in report
    load = next(line for line in end.output.splitlines() if line.startswith("load"))
    assert [c.strip() for c in load.split("│")][1:5] == ["succeeded", "1", "2", "2"]
    state = json.loads(cli("replay", FAILED_THEN_RERUN, "--at", "14", "--json").output)
    assert state["tasks"]["load"]["status"] == "retrying"
    assert state["tasks"]["load"]["error"]["type"] == "ConnectionError"


def test_verify_passes_then_fails_on_a_damaged_read_model(cli, database_url: str) -> None:  # type: ignore[no-untyped-def]
    ok = cli("replay", FAILED_THEN_RERUN, "--verify")
    assert ok.exit_code == 0 and "verified" in ok.output
    import asyncio

    import asyncpg

    async def damage() -> None:
        conn = await asyncpg.connect(database_url)
        await conn.execute("UPDATE durable.runs SET status = 'running', last_seq = 20")
        await conn.close()

    asyncio.run(damage())
    bad = cli("replay", FAILED_THEN_RERUN, "--verify")
    assert bad.exit_code == 1
    assert "status: read model 'running', log says 'succeeded'" in bad.output
    assert "last_seq: read model 20, log says 26" in bad.output
    assert cli("rebuild").exit_code == 0
    assert cli("replay", FAILED_THEN_RERUN, "--verify").exit_code == 0


def test_export_then_replay_offline(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    exported = cli("export", FAILED_THEN_RERUN)
    file = tmp_path / "run.jsonl"
    file.write_text(exported.output)
    offline = cli("replay", "--file", str(file))
    online = cli("replay", FAILED_THEN_RERUN)
    assert offline.exit_code == 0
    assert offline.output == online.output
    via_stdin = cli("replay", "--file", "-", "--at", "3", input=exported.output)
    assert "(at seq 3 of 26)" in via_stdin.output


def test_runs_lists_with_filters(cli) -> None:  # type: ignore[no-untyped-def]
    everything = cli("runs")
    assert everything.exit_code == 0
    assert "01JDSALES20261120" in everything.output and FAILED_THEN_RERUN in everything.output
    rows = [json.loads(line) for line in cli("runs", "--json").output.splitlines()]
    assert [r["run_id"] for r in rows] == [FAILED_THEN_RERUN, "01JDSALES20261120"]
    assert cli("runs", "--status", "failed").output.strip() == "no runs match"
    assert "01JDSALES" not in cli("runs", "--workflow", "clicks").output
    newer = cli("runs", "--since", "2026-11-22", "--json").output.splitlines()
    assert [json.loads(r)["run_id"] for r in newer] == [FAILED_THEN_RERUN]
    assert len(cli("runs", "--limit", "1", "--json").output.splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["history", "nope"], "error: no run 'nope'"),
        (["replay", "nope"], "error: no run 'nope'"),
        (["replay", FAILED_THEN_RERUN, "--at", "99"], "past its end"),
        (["replay", "--file", "/does/not/exist.jsonl"], "/does/not/exist.jsonl: no such file"),
        (["runs", "--since", "yesterday"], "'yesterday' is not a date or time"),
        (["replay"], "give a RUN_ID or --file"),
    ],
)
def test_bad_input_is_one_clear_line(cli, args: list[str], message: str) -> None:  # type: ignore[no-untyped-def]
    result = cli(*args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"stream_id": "run:x", "seq": 1}\n', "bad.jsonl:1: not an exported event"),
        ("not json at all\n", "bad.jsonl:1: not valid JSON"),
        (
            '{"stream_id":"run:x","seq":1,"position":1,"recorded_at":"2026-01-01T00:00:00Z",'
            '"type":"task_exploded","version":1,"data":{}}\n',
            "bad.jsonl:1: unknown event type 'task_exploded'",
        ),
    ],
)
def test_malformed_files_name_file_and_line(
    cli, tmp_path: Path, content: str, message: str
) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(content)
    for command in (["replay", "--file", str(bad)], ["import", str(bad)]):
        result = cli(*command)
        assert result.exit_code == 2, result.output
        assert message in result.output and "Traceback" not in result.output


def test_an_inconsistent_history_is_refused_naming_run_and_seq(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    lines = EXAMPLE.read_text().splitlines()[:21]
    del lines[5]  # drop seq 6: the file jumps from 5 to 7
    bad = tmp_path / "gap.jsonl"
    bad.write_text("\n".join(lines) + "\n")
    result = cli("replay", "--file", str(bad))
    assert result.exit_code == 2
    assert "run 'run:01JDSALES20261120' seq 7" in result.output
    assert "expected seq 6" in result.output


@pytest.mark.slow
def test_the_embedded_database_starts_persists_and_is_reused(tmp_path: Path) -> None:
    """As a user runs it: no configuration, data under $DURABLE_HOME, across processes."""
    home = tmp_path / "home"
    first = durable("import", str(EXAMPLE), home=home)
    assert first.returncode == 0, first.stderr
    assert (home / "pgdata" / "PG_VERSION").exists()
    again = durable("replay", FAILED_THEN_RERUN, "--verify", home=home)
    assert again.returncode == 0, again.stderr
    assert "verified" in again.stdout
    missing = durable("history", "nope", home=home)
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines() == [
        "error: no run 'nope' (check the id; `durable runs` lists the runs)"
    ]

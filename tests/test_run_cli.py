"""`durable run` as a user runs it: the example pipeline on the embedded database."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from tests.processes import durable

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "daily_sales.py"

pytestmark = pytest.mark.slow


def test_the_example_pipeline_runs_idempotently_per_date(tmp_path: Path) -> None:
    home = tmp_path / ".durable"
    first = durable(
        "run",
        "daily_sales",
        "--workflows",
        str(EXAMPLE),
        "--param",
        "date=2026-11-21",
        "--here",
        home=home,
    )
    assert first.returncode == 0, first.stdout + first.stderr
    out = first.stdout
    assert "▶ fetch_orders" in out and "▶ fetch_refunds" in out
    assert "✔ check_volume" in out and "✔ load" in out and "run succeeded" in out
    run_id = out.split("started run ")[1].split()[0]

    again = durable(
        "run",
        "daily_sales",
        "--workflows",
        str(EXAMPLE),
        "--param",
        "date=2026-11-21",
        "--here",
        home=home,
    )
    assert again.returncode == 0, again.stdout + again.stderr

    logs = durable("logs", run_id, "fetch_orders", home=home)
    assert logs.returncode == 0
    assert "fetch_orders#1 log: fetched" in logs.stdout

    history = durable("history", run_id, home=home)
    assert "task_succeeded" in history.stdout and "load" in history.stdout

    async def rows() -> list[tuple[str, str]]:
        import pgserver

        server = pgserver.get_server(home / "pgdata", cleanup_mode="stop")
        conn = await asyncpg.connect(server.get_uri())
        try:
            return [
                (str(r["day"]), r["region"])
                for r in await conn.fetch("SELECT day, region FROM sales_daily ORDER BY region")
            ]
        finally:
            await conn.close()
            server.cleanup()  # the last handle: the embedded server stops

    assert asyncio.run(rows()) == [
        ("2026-11-21", "apac"),
        ("2026-11-21", "eu"),
        ("2026-11-21", "us"),
    ]

    bad = durable(
        "run", "daily_sales", "--workflows", str(EXAMPLE), "--param", "date=21/11/2026", home=home
    )
    assert bad.returncode == 2
    assert bad.stderr.strip() == (
        "error: workflow 'daily_sales': param 'date': expected date, got '21/11/2026' (text) "
        "(date takes a date as YYYY-MM-DD, e.g. 2026-11-21)"
    )
    unknown = durable("run", "daily_sale", "--workflows", str(EXAMPLE), home=home)
    assert unknown.returncode == 2
    assert "workflow 'daily_sale': is not defined (known workflows: daily_sales)" in unknown.stderr

    # an idempotency key is one request: the same one again is the same run, another
    # one with that key is refused and records nothing
    keyed = ("run", "daily_sales", "--workflows", str(EXAMPLE), "--idempotency-key", "k-1")
    once = durable(*keyed, "--param", "date=2026-11-20", home=home)
    assert once.returncode == 0, once.stdout + once.stderr
    keyed_id = once.stdout.split("started run ")[1].split()[0]
    same = durable(*keyed, "--param", "date=2026-11-20", home=home)
    assert f"already exists: run {keyed_id}" in same.stdout
    other = durable(*keyed, "--param", "date=2026-11-19", home=home)
    assert other.returncode == 2
    assert f"idempotency key 'k-1' already started run {keyed_id} with other params" in (
        other.stderr
    )

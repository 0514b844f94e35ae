"""An archived run in the console: a `durable up` of its own with retention on (the
session's console archives nothing: other tests rerun its runs), a real browser."""

from __future__ import annotations

import time
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.conftest import PgServer, create_database, drop_database, run_sync
from tests.processes import start_service
from tests.ui.test_console import TIMEOUT, call, login, shot, start

FLOWS = """\
from durable import TaskContext, Workflow

kept = Workflow("kept")

@kept.task
def hello(ctx: TaskContext) -> int:
    ctx.log.info("hello from the archive")
    return 7
"""


def test_an_archived_run_says_so_reads_the_same_and_refuses_a_rerun(
    page: Page, pg_server: PgServer, tmp_path: Path, screenshots: Path
) -> None:
    (tmp_path / "flows.py").write_text(FLOWS)
    name = run_sync(create_database(pg_server))
    archive = tmp_path / "archive"
    service = start_service(
        pg_server.url(name),
        tmp_path / "flows.py",
        "--archive-older-than",
        "0s",
        "--archive-to",
        str(archive),
        "--archive-every",
        "0.2",
    )
    try:
        run_id = start(service, "kept", {})
        deadline = time.monotonic() + 30
        while call(service, "GET", f"/api/v1/runs/{run_id}")["archived"] is None:
            assert time.monotonic() < deadline, "retention did not archive the finished run"
            time.sleep(0.1)
        login(page, service)
        page.goto(f"{service.url}/ui/runs/{run_id}?task=hello")
        expect(page.locator("#archived")).to_have_text("archived", timeout=TIMEOUT)
        summary = page.locator("#summary")
        expect(summary).to_contain_text("Archived")
        expect(summary).to_contain_text(f"{archive}/kept/{run_id}.")
        expect(page.locator("#head-status .badge")).to_have_text("succeeded")
        expect(page.locator("#logs")).to_contain_text("hello from the archive", timeout=TIMEOUT)
        shot(page, screenshots, "run-archived")
        page.click("#rr-preview")  # a plan is only a read: it is drawn
        expect(page.locator(".plan")).to_contain_text("Generation 2 would rerun")
        page.click("#rr-confirm")
        expect(page.locator("#rr-result [role=alert]")).to_contain_text("run archived")
        expect(page.locator("#rr-result")).to_contain_text(f"durable restore {run_id}")
    finally:
        service.stop()
        run_sync(drop_database(pg_server, name))

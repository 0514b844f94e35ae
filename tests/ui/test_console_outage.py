"""The database goes away under an open console: a banner says so, nothing crashes, and
the page recovers by itself when it is back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from durable.store import connect
from tests.conftest import run_sync
from tests.own_postgres import Postgres, own_postgres_in
from tests.processes import start_service
from tests.ui.test_console import TIMEOUT, login, shot

WORKFLOWS = Path(__file__).parent / "workflows" / "console.py"


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator[Postgres]:
    yield from own_postgres_in(tmp_path)


async def _migrate(url: str) -> None:
    await (await connect(url)).close()


def test_a_banner_while_the_database_is_away_and_recovery_without_reload(
    page: Page, own_postgres: Postgres, screenshots: Path
) -> None:
    run_sync(_migrate(own_postgres.url))
    service = start_service(own_postgres.url, WORKFLOWS)
    try:
        login(page, service)
        page.goto(service.url + "/ui/runs")
        expect(page.locator("table.runs")).to_be_visible()
        expect(page.locator("#banner")).to_be_hidden()
        page.evaluate("window.__same_page = true")
        own_postgres.stop()
        expect(page.locator("#banner")).to_be_visible(timeout=TIMEOUT)
        expect(page.locator("#banner")).to_contain_text("database is unavailable")
        shot(page, screenshots, "database-away")
        own_postgres.start()
        expect(page.locator("#banner")).to_be_hidden(timeout=TIMEOUT)
        expect(page.locator("table.runs")).to_be_visible()
        assert page.evaluate("window.__same_page") is True
        assert service.process.poll() is None, "durable up died:\n" + "".join(service.log)
    finally:
        service.stop()

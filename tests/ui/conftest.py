"""Browser tests: a real `durable up` process (API, console, executor, scheduler) on the
session's PostgreSQL, driven by Playwright in Debian's Chromium.

Screenshots of every view go to ``$DURABLE_SCREENSHOTS`` (default: the session's
temporary directory); the README's are made with
``DURABLE_SCREENSHOTS=tests/ui/screenshots pytest tests/ui``.
"""

from __future__ import annotations

import http.server
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PgServer, create_database, drop_database, run_sync
from tests.processes import Service, start_service

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

if not Path(CHROMIUM).exists():  # CI installs it (.ci/run); say so rather than skip
    raise pytest.UsageError("the browser tests need Debian's chromium: apt-get install -y chromium")


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "args": ["--no-sandbox", "--disable-gpu"],
    }


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    chosen = os.environ.get("DURABLE_SCREENSHOTS")
    path = Path(chosen) if chosen else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


class _Hook(http.server.BaseHTTPRequestHandler):
    """A webhook receiver: ``/accept…`` answers 200, anything else 400."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200 if self.path.startswith("/accept") else 400)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="session")
def console(pg_server: PgServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """`durable up` serving the console, with the example and the tests' workflows (and a
    webhook receiver for ``alerting``'s notifications)."""
    workflows = tmp_path_factory.mktemp("workflows")
    shutil.copy(ROOT / "examples" / "daily_sales.py", workflows)
    shutil.copy(Path(__file__).parent / "workflows" / "console.py", workflows)
    hook = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    name = run_sync(create_database(pg_server))
    service = start_service(
        pg_server.url(name),
        workflows,
        "--max-tasks",
        "16",
        env={"DURABLE_UI_HOOK": f"http://127.0.0.1:{hook.server_address[1]}"},
    )
    yield service
    service.stop()
    hook.shutdown()
    run_sync(drop_database(pg_server, name))

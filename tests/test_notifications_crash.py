"""A notification is not sent twice across a SIGKILL of ``durable up``.

Real processes, a real webhook receiver on loopback that honours ``Idempotency-Key``.
Killed after the receiver got the notification but before the outcome was recorded, the
next process delivers it again with the same key: the receiver acts on it once. Killed
after the outcome was recorded, the next process never sends it again.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from durable.application.runs import create_run
from durable.core.events import NotificationRequested, NotificationSent, Recorded, run_stream
from durable.runtime.notifier import READER
from durable.store import PostgresEventStore
from durable.workflows import load_workflows
from tests.executing import wait_for_run
from tests.receivers import HttpReceiver, Received
from tests.signs import eventually

pytestmark = pytest.mark.slow

WORKFLOW = """
from durable import TaskError, Workflow

wf = Workflow("nightly_load")

@wf.task(retries=0)
def load(ctx):
    raise TaskError("the warehouse is down", retryable=False)
"""

NOTIFICATIONS = """
base_url: http://console.example:8080
notify:
  - webhook: http://127.0.0.1:${HOOK_PORT}/hook
    on: [run_failed]
"""


class KeyedReceiver:
    """A webhook receiver that acts once per ``Idempotency-Key``; it can hold the first
    request unanswered (the sender never hears back)."""

    def __init__(self) -> None:
        self.effects: dict[str, int] = {}
        self.hold_first = True
        self.holding = asyncio.Event()
        self.release = asyncio.Event()
        self.server = HttpReceiver(respond=self.respond)

    async def respond(self, got: Received) -> web.StreamResponse:
        key = got.headers["Idempotency-Key"]
        self.effects.setdefault(key, 0)
        if self.effects[key] == 0:
            self.effects[key] += 1  # acted on; a repeat of the key is only acknowledged
        if self.hold_first:
            self.hold_first = False
            self.holding.set()
            await self.release.wait()
        return web.Response(status=200)

    def requests(self, key: str) -> int:
        return sum(1 for r in self.server.received if r.headers["Idempotency-Key"] == key)


@pytest.fixture
def flows(tmp_path: Path) -> Iterator[Path]:
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "nightly.py").write_text(WORKFLOW)
    (tmp_path / "notifications.yaml").write_text(NOTIFICATIONS)
    yield tmp_path


def up(database_url: str, home: Path, port: int, n: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "durable",
            "--database-url",
            database_url,
            "up",
            "--no-http",
            "--workflows",
            str(home / "flows"),
            "--notifications",
            str(home / "notifications.yaml"),
        ],
        env={**os.environ, "HOOK_PORT": str(port)},
        stdout=subprocess.DEVNULL,
        stderr=(home / f"up-{n}.log").open("wb"),
    )


def kill(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(30)


async def notifications(store: PostgresEventStore, run_id: str) -> list[Recorded]:
    return [
        r
        for r in await store.read_stream(run_stream(run_id))
        if isinstance(r.event, NotificationRequested | NotificationSent)
    ]


async def sent(store: PostgresEventStore, run_id: str) -> Recorded:
    async def recorded() -> bool:
        return any(
            isinstance(r.event, NotificationSent) for r in await notifications(store, run_id)
        )

    await eventually(recorded, f"the notification of run {run_id} was recorded sent", timeout=60)
    [outcome] = [
        r for r in await notifications(store, run_id) if isinstance(r.event, NotificationSent)
    ]
    return outcome


async def test_a_notification_is_not_sent_twice_across_a_sigkill(
    pg_store: PostgresEventStore, database_url: str, flows: Path
) -> None:
    receiver = KeyedReceiver()
    await receiver.server.start()
    spec = load_workflows(flows / "flows").get("nightly_load").spec
    processes: list[subprocess.Popen[bytes]] = []
    try:
        # 1. killed after delivery, before the outcome is recorded
        processes.append(up(database_url, flows, receiver.server.port, 1))
        first, _ = await create_run(pg_store, spec, {})
        await wait_for_run(pg_store, first, timeout=60)
        await asyncio.wait_for(receiver.holding.wait(), 60)
        kill(processes[-1])
        [asked] = [r.event for r in await notifications(pg_store, first)]
        assert isinstance(asked, NotificationRequested)
        key = asked.notification_id
        receiver.release.set()

        processes.append(up(database_url, flows, receiver.server.port, 2))
        outcome = await sent(pg_store, first)
        # delivered again after the crash, under the same key: acted on once
        assert receiver.requests(key) == 2
        assert receiver.effects == {key: 1}
        assert [r.headers["Idempotency-Key"] for r in receiver.server.received] == [key, key]
        body = receiver.server.received[-1].json
        assert body["run_url"] == f"http://console.example:8080/ui/runs/{first}"

        # 2. killed after the outcome was recorded: never sent again
        kill(processes[-1])
        processes.append(up(database_url, flows, receiver.server.port, 3))
        second, _ = await create_run(pg_store, spec, {})
        later = await sent(pg_store, second)

        async def read_past_both() -> bool:
            return await pg_store.tracking.log_position(READER) >= later.position

        await eventually(read_past_both, "the restarted notifier settled everything", timeout=60)
    finally:
        for p in processes:
            if p.poll() is None:
                kill(p)
        receiver.release.set()
        await receiver.server.stop()
    assert receiver.requests(key) == 2  # not a third time
    assert (
        len(
            [
                r
                for r in await notifications(pg_store, first)
                if isinstance(r.event, NotificationSent)
            ]
        )
        == 1
    )
    assert outcome.event.notification_id == key  # type: ignore[union-attr]
    assert len(receiver.effects) == 2 and set(receiver.effects.values()) == {1}

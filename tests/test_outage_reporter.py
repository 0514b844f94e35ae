"""One line when a dependency goes, reminders rate-limited, one line when it is back."""

from __future__ import annotations

import logging

import pytest

from durable.runtime.outage import Outage


def test_one_line_going_reminders_and_one_back(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    outage = Outage("PostgreSQL", logging.getLogger("t"), remind_every=60, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="t"):
        outage.ok()  # healthy: silent
        for _ in range(500):  # a flood of failures within a second...
            outage.failed(ConnectionRefusedError("connection refused"))
        now[0] += 61
        outage.failed(OSError("still down"))
        now[0] += 10
        outage.failed(OSError("still down"))
        outage.ok()
        outage.ok()
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "PostgreSQL unavailable (ConnectionRefusedError: connection refused); retrying",
        "PostgreSQL still unavailable after 61 s (OSError: still down)",
        "PostgreSQL back after 71.0 s",
    ]
    assert outage.outages == 1 and not outage.down


def test_backoff_grows_and_is_capped() -> None:
    outage = Outage("x", logging.getLogger("t"), first_delay=0.1, max_delay=2.0)
    delays = []
    for _ in range(10):
        outage.failed("down")
        delays.append(outage.delay())
    assert all(0.05 <= d <= 2.0 for d in delays)
    assert delays[-1] > 0.9  # capped near max_delay, never past it
    outage.ok()
    assert outage.delay() <= 0.1

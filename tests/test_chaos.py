"""The chaos loop at smoke size: real executors SIGKILLed at random, PostgreSQL restarted
mid-run; the invariants (see ``tests/chaos.py``) hold. The full size runs from the README:
``python -m tests.chaos``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos import main

pytestmark = pytest.mark.slow


async def test_chaos_smoke(tmp_path: Path) -> None:
    argv = ["--runs", "60", "--executors", "2", "--seconds", "180", "--pg-restarts", "2"]
    assert await main([*argv, "--kill-every", "4", "--seed", "7"], workdir=tmp_path) == 0

"""Golden history: task timeouts retried then failed, and the run's max_duration."""

from __future__ import annotations

import asyncio
from typing import Any

from _compat import RetryPolicy

from durable import Workflow

wf = Workflow("golden_timeout", max_duration=3)


@wf.task(timeout=0.3, retry=RetryPolicy(max_attempts=2, initial_delay=0.2, jitter=0.1))
async def stuck(ctx: Any) -> None:
    await asyncio.sleep(5)


slow = wf.shell("slow", "sleep 30")

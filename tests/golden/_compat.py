"""Imports the golden workflows need, from where the recording (pre-renovation) code and
today's code keep them."""

from __future__ import annotations

try:
    from durable.core.errors import TaskError
    from durable.core.retry import RetryPolicy
except ImportError:  # the pre-renovation layout the histories were recorded with
    from durable.errors import TaskError  # type: ignore[no-redef]
    from durable.retry import RetryPolicy  # type: ignore[no-redef]

__all__ = ["QUICK", "RetryPolicy", "TaskError"]

QUICK = RetryPolicy(max_attempts=3, initial_delay=0.2, backoff=2.0, jitter=0.1)
"""Retries within a second, so recording a history takes seconds."""

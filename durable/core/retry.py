"""Retry policies: exponential backoff with jitter, computed purely.

The jitter is derived from a hash of (run, task, generation, attempt), not from a random
source: the same attempt always gets the same delay, so a replayed decision is the
decision that was made.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

import msgspec

__all__ = ["RetryPolicy", "retry_at"]


class RetryPolicy(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """``max_attempts`` counts the first attempt too (1: no retries)."""

    max_attempts: int = 3
    initial_delay: float = 1.0
    backoff: float = 2.0
    max_delay: float = 300.0
    jitter: float = 0.2
    """Fraction of the delay added at most, spreading out retries of many runs."""

    def delay(self, attempt: int, key: str) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based)."""
        base = min(self.max_delay, self.initial_delay * self.backoff ** (attempt - 1))
        digest = hashlib.blake2b(f"{key}:{attempt}".encode(), digest_size=8).digest()
        fraction = int.from_bytes(digest, "big") / 2**64
        return base * (1 + self.jitter * fraction)


def retry_at(policy: RetryPolicy, attempt: int, key: str, now: datetime) -> datetime | None:
    """When attempt ``attempt + 1`` may start, or ``None`` when attempts are used up."""
    if attempt >= policy.max_attempts:
        return None
    return now + timedelta(seconds=policy.delay(attempt, key))

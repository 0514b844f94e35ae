"""Prometheus metrics in the text exposition format (version 0.0.4).

The HTTP server's own counters and latency histogram are kept in the process; the
orchestration gauges (runs by workflow and status, the log's position, dead letters,
live executor leases) are read from PostgreSQL at scrape time, so every API process
reports the same, whole-system figures.
"""

from __future__ import annotations

from collections import defaultdict

import msgspec

from durable.store.base import EventStore

__all__ = ["HttpMetrics", "SystemGauges", "render_metrics", "system_gauges"]

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class HttpMetrics:
    """Requests by route, method and status, and their durations."""

    def __init__(self) -> None:
        self.requests: defaultdict[tuple[str, str, int], int] = defaultdict(int)
        self.buckets: defaultdict[tuple[str, str], list[int]] = defaultdict(
            lambda: [0] * len(BUCKETS)
        )
        self.sums: defaultdict[tuple[str, str], float] = defaultdict(float)
        self.counts: defaultdict[tuple[str, str], int] = defaultdict(int)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests[(method, route, status)] += 1
        key = (method, route)
        counts = self.buckets[key]
        for i, bound in enumerate(BUCKETS):
            if seconds <= bound:
                counts[i] += 1
        self.sums[key] += seconds
        self.counts[key] += 1

    def lines(self) -> list[str]:
        out = [
            "# HELP durable_http_requests_total HTTP requests answered, by route and status.",
            "# TYPE durable_http_requests_total counter",
        ]
        for (method, route, status), n in sorted(self.requests.items()):
            out.append(
                f'durable_http_requests_total{{method="{method}",route="{_label(route)}",'
                f'status="{status}"}} {n}'
            )
        out += [
            "# HELP durable_http_request_duration_seconds Time to answer HTTP requests.",
            "# TYPE durable_http_request_duration_seconds histogram",
        ]
        for (method, route), counts in sorted(self.buckets.items()):
            labels = f'method="{method}",route="{_label(route)}"'
            for bound, n in zip(BUCKETS, counts, strict=True):
                out.append(
                    f'durable_http_request_duration_seconds_bucket{{{labels},le="{bound}"}} {n}'
                )
            total = self.counts[(method, route)]
            out.append(
                f'durable_http_request_duration_seconds_bucket{{{labels},le="+Inf"}} {total}'
            )
            out.append(
                f"durable_http_request_duration_seconds_sum{{{labels}}} {self.sums[(method, route)]:.6f}"
            )
            out.append(f"durable_http_request_duration_seconds_count{{{labels}}} {total}")
        return out


class SystemGauges(msgspec.Struct, frozen=True, kw_only=True):
    """The whole-system figures of a scrape."""

    runs: list[tuple[str, str, int]]
    """(workflow, status, count), ordered."""
    position: int
    dead_letters: int
    leases: int


async def system_gauges(store: EventStore) -> SystemGauges:
    """The orchestration figures, from the store."""
    counts = await store.metrics_counts()
    return SystemGauges(
        runs=counts.runs,
        position=counts.position,
        dead_letters=counts.dead_letters,
        leases=counts.live_leases,
    )


async def render_metrics(store: EventStore, http: HttpMetrics) -> str:
    """The metrics page: the system's gauges and this process's HTTP figures."""
    g = await system_gauges(store)
    out = [
        "# HELP durable_runs Runs by workflow and status.",
        "# TYPE durable_runs gauge",
        *(
            f'durable_runs{{workflow="{_label(workflow)}",status="{status}"}} {n}'
            for workflow, status, n in g.runs
        ),
        "# HELP durable_log_position The position of the newest event in the log.",
        "# TYPE durable_log_position gauge",
        f"durable_log_position {g.position}",
        "# HELP durable_dead_letters Trigger messages that could not start a run.",
        "# TYPE durable_dead_letters gauge",
        f"durable_dead_letters {g.dead_letters}",
        "# HELP durable_leases_live Runs currently held by an executor.",
        "# TYPE durable_leases_live gauge",
        f"durable_leases_live {g.leases}",
        *http.lines(),
    ]
    return "\n".join(out) + "\n"

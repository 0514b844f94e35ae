"""How histories and states look in the terminal (rich), and as JSON."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
from rich.table import Table
from rich.text import Text

from durable.core.events import (
    BackfillCancelled,
    BackfillFinished,
    BackfillPaused,
    BackfillRequested,
    BackfillResumed,
    Event,
    NotificationFailed,
    NotificationRequested,
    NotificationSent,
    Recorded,
    RerunQueued,
    RerunRequested,
    RunCancelled,
    RunCreated,
    RunFailed,
    RunPaused,
    RunResumed,
    RunStarted,
    RunSucceeded,
    SchedulePaused,
    ScheduleResumed,
    SlaMissed,
    TaskCancelled,
    TaskFailed,
    TaskMapped,
    TaskRetryScheduled,
    TaskScheduled,
    TaskSkipped,
    TaskStarted,
    TaskSucceeded,
    TaskWaiting,
    event_type,
)
from durable.core.fold import evolve
from durable.core.runs_view import RunRow
from durable.core.state import RunState, TaskState

__all__ = ["history_table", "runs_table", "short_json", "state_view", "waiting_on", "when"]

STATUS_STYLE = {
    "succeeded": "green",
    "failed": "red",
    "cancelled": "magenta",
    "running": "cyan",
    "scheduled": "cyan",
    "retrying": "yellow",
    "paused": "yellow",
    "waiting": "cyan",
    "skipped": "dim",
    "pending": "dim",
}


def when(at: datetime | None) -> str:
    if at is None:
        return "-"
    return at.strftime("%Y-%m-%d %H:%M:%S.") + f"{at.microsecond // 1000:03d}"


def short_json(value: Any, limit: int = 80) -> str:
    text = msgspec.json.encode(value).decode()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _duration(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return "-"
    seconds = (end - start).total_seconds()
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.1f} s"


def summary(event: Event, generation: int | None = None) -> str:
    match event:
        case RunCreated():
            return (
                f"{event.workflow} {event.version}, {len(event.tasks)} tasks, "
                f"trigger {event.trigger.kind}, params {short_json(event.params, 50)}"
                + (f", key {event.idempotency_key}" if event.idempotency_key else "")
            )
        case RunStarted() | TaskStarted():
            return f"on {event.executor}" if event.executor else ""
        case TaskScheduled():
            return f"not before {when(event.not_before)}" if event.not_before else ""
        case TaskMapped():
            return f"fanned out into {event.count} tasks"
        case TaskSucceeded():
            return f"output {short_json(event.output)}"
        case TaskWaiting():
            return waiting_on(event.job, event.state)
        case TaskRetryScheduled():
            return f"{event.error.type}: {event.error.message}; retry at {when(event.retry_at)}"
        case TaskFailed():
            tail = "" if event.error.retryable else " (not retryable)"
            return f"{event.error.type}: {event.error.message}{tail}"
        case TaskSkipped():
            return event.reason
        case TaskCancelled() | RunCancelled() | RunPaused():
            by = f" by {event.by}" if not isinstance(event, TaskCancelled) and event.by else ""
            return f"{event.reason}{by}".strip()
        case RunResumed() | ScheduleResumed():
            return f"by {event.by}" if event.by else ""
        case SchedulePaused():
            return f"{event.reason} by {event.by}".strip()
        case BackfillRequested():
            return (
                f"{event.workflow}: {event.intervals} intervals from {when(event.start)} "
                f"to {when(event.end)}, reprocess {event.reprocess}"
            )
        case BackfillPaused() | BackfillResumed() | BackfillCancelled():
            return f"by {event.by}" if event.by else ""
        case RunSucceeded():
            return ""
        case RunFailed():
            return event.reason
        case RerunRequested():
            scope = " and downstream" if event.downstream else ""
            only = ", failed only" if event.failed_only else ""
            gen = f" → generation {generation}" if generation is not None else ""
            return f"request {event.request_id}: {', '.join(event.tasks)}{scope}{only}{gen}"
        case RerunQueued():
            scope = " and downstream" if event.downstream else ""
            only = ", failed only" if event.failed_only else ""
            return (
                f"request {event.request_id}: {', '.join(event.tasks)}{scope}{only} "
                "(applied when the run ends)"
            )
        case NotificationRequested():
            action = f" ({event.action})" if event.action else ""
            return f"{event.on} → {event.channel.channel}{action}, rule {event.rule}: {event.notification_id}"
        case NotificationSent():
            tries = f" after {event.attempts} attempts" if event.attempts > 1 else ""
            return f"{event.notification_id}{tries}"
        case NotificationFailed():
            return f"{event.notification_id} after {event.attempts} attempts: {event.reason}"
        case SlaMissed():
            return event.detail
        case BackfillFinished():
            return f"{event.status}: {short_json(event.runs, 60)}"
    return ""  # pragma: no cover - every event is matched above


def history_table(records: list[Recorded]) -> Table:
    """seq, time, type, task, generation, attempt, summary — one row per event."""
    table = Table(show_edge=False, pad_edge=False, header_style="bold")
    for name, kw in [
        ("seq", {"justify": "right"}),
        ("time (UTC)", {}),
        ("type", {}),
        ("task", {}),
        ("gen", {"justify": "right"}),
        ("attempt", {"justify": "right"}),
        ("summary", {"overflow": "fold"}),
    ]:
        table.add_column(name, **kw)  # type: ignore[arg-type]
    state: RunState | None = None
    for r in records:
        state = evolve(state, r) if _foldable(state, r) else None
        e = r.event
        task = getattr(e, "task", "")
        gen = getattr(e, "generation", None)
        attempt = getattr(e, "attempt", None)
        style = STATUS_STYLE.get(event_type(e).split("_")[-1], "")
        table.add_row(
            str(r.seq),
            when(r.recorded_at),
            Text(event_type(e), style=style),
            task,
            "" if gen is None else str(gen),
            "" if attempt is None else str(attempt),
            summary(e, state.generation if state and isinstance(e, RerunRequested) else None),
        )
    return table


def _foldable(state: RunState | None, r: Recorded) -> bool:
    # history shows even an inconsistent log; generations just stop being annotated
    try:
        evolve(state, r)
    except Exception:
        return False
    return True


def state_view(run: RunState, *, total_events: int) -> list[Any]:
    """The run's header lines and its task table, for ``durable replay``."""
    at = f"seq {run.last_seq} of {total_events}"
    head = Text.assemble(
        ("run ", "bold"),
        run.run_id,
        "  ",
        ("workflow ", "bold"),
        run.workflow,
        "  ",
        ("version ", "bold"),
        run.version,
        "  ",
        ("status ", "bold"),
        (run.status, STATUS_STYLE.get(run.status, "")),
        f"  (at {at})",
    )
    lines: list[Any] = [head]
    lines.append(
        f"created {when(run.created_at)}  started {when(run.started_at)}  "
        f"finished {when(run.finished_at)}  generation {run.generation}"
    )
    trigger = run.trigger.kind + (f" {run.trigger.source}" if run.trigger.source else "")
    if run.trigger.logical_time:
        trigger += f", logical time {when(run.trigger.logical_time)}"
    lines.append(f"trigger {trigger}  params {short_json(run.params, 100)}")
    if run.reason:
        lines.append(Text(f"reason: {run.reason}", style=STATUS_STYLE.get(run.status, "")))
    table = Table(show_edge=False, pad_edge=False, header_style="bold")
    for name in ("task", "status", "gen", "attempt", "runs", "duration", "output / error"):
        table.add_column(name, overflow="fold")
    for t in run.tasks.values():
        table.add_row(
            t.name,
            Text(t.status, style=STATUS_STYLE.get(t.status, "")),
            str(t.generation),
            str(t.attempt),
            str(t.executions),
            _duration(t.started_at, t.finished_at),
            _task_result(t),
        )
    lines.append(table)
    return lines


def waiting_on(job: dict[str, Any], state: str = "") -> str:
    """What a waiting attempt waits on: ``waiting on job <id> (<state>)``."""
    what = f"job {job['id']}" if "id" in job else short_json(job, 60)
    return f"waiting on {what}" + (f" ({state})" if state else "")


def _task_result(t: TaskState) -> str:
    if t.status == "succeeded":
        return short_json(t.output)
    if t.status == "running" and t.job is not None:
        return waiting_on(t.job) + (f" since {when(t.waiting_since)}" if t.waiting_since else "")
    if t.error is not None and t.status in ("failed", "retrying"):
        retry = f" (retry at {when(t.retry_at)})" if t.retry_at else ""
        return f"{t.error.type}: {t.error.message}{retry}"
    return t.reason or ""


def runs_table(rows: list[RunRow], *, archived: set[str] | frozenset[str] = frozenset()) -> Table:
    """The runs, one a line; those in ``archived`` say so beside their status."""
    table = Table(show_edge=False, pad_edge=False, header_style="bold")
    for name in ("run", "workflow", "status", "trigger", "created (UTC)", "duration", "events"):
        table.add_column(name)
    for r in rows:
        table.add_row(
            r.run_id,
            r.workflow,
            Text.assemble(
                (r.status, STATUS_STYLE.get(r.status, "")),
                (" (archived)", "dim") if r.run_id in archived else "",
            ),
            r.trigger_kind,
            when(r.created_at),
            _duration(r.started_at or r.created_at, r.finished_at),
            str(r.last_seq),
        )
    return table

"""What a task sees while it runs: the task context, and its log."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

__all__ = ["TaskContext", "TaskLog"]


class TaskLog:
    """A task attempt's log: lines kept in order, stored with the attempt."""

    def __init__(self) -> None:
        self.lines: list[tuple[datetime, str, str]] = []

    def write(self, stream: str, message: str) -> None:
        self.lines.append((datetime.now(UTC), stream, message.rstrip("\n")))

    def info(self, message: str, *args: Any) -> None:
        self.write("log", message % args if args else message)

    def warning(self, message: str, *args: Any) -> None:
        self.write("warning", message % args if args else message)

    def error(self, message: str, *args: Any) -> None:
        self.write("error", message % args if args else message)


class TaskContext:
    """Passed to a task as ``ctx``: who and what this attempt is.

    ``idempotency_key`` (``run/task/generation``) is stable across retries of the same
    generation: give it to the sinks a task writes to.
    """

    def __init__(
        self,
        *,
        run_id: str,
        workflow: str,
        task: str,
        attempt: int,
        generation: int,
        params: dict[str, Any],
        upstream: dict[str, Any],
        logical_time: datetime | None,
        data_interval_start: datetime | None,
        data_interval_end: datetime | None,
        log: TaskLog,
        item: Any = None,
        index: int | None = None,
    ) -> None:
        self.item = item
        """For a child of a map task: its item of the list (and ``index``, its place)."""
        self.index = index
        self.run_id = run_id
        self.workflow = workflow
        self.task = task
        self.attempt = attempt
        self.generation = generation
        self.params = params
        self.upstream = upstream
        self.logical_time = logical_time
        self.data_interval_start = data_interval_start
        self.data_interval_end = data_interval_end
        self.log = log

    @property
    def idempotency_key(self) -> str:
        return f"{self.run_id}/{self.task}/{self.generation}"

    @property
    def logical_date(self) -> str | None:
        """The logical time's date, ``YYYY-MM-DD`` (for partitioned outputs)."""
        return self.logical_time.date().isoformat() if self.logical_time else None

    def template_values(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "workflow": self.workflow,
            "task": self.task,
            "attempt": self.attempt,
            "idempotency_key": self.idempotency_key,
            "params": self.params,
            "item": self.item,
            "index": self.index,
            "upstream": self.upstream,
            "logical_date": self.logical_date,
            "logical_time": self.logical_time.isoformat() if self.logical_time else None,
            "data_interval_start": (
                self.data_interval_start.isoformat() if self.data_interval_start else None
            ),
            "data_interval_end": (
                self.data_interval_end.isoformat() if self.data_interval_end else None
            ),
        }

"""The state of a run, as folded from its events (see :mod:`durable.core.fold`).

Pure data: frozen structs, no I/O. ``check_invariants`` states what every reachable
state satisfies; property tests fold random valid histories and check it after every
event.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, TypeAlias

import msgspec

from durable.core.events import ErrorInfo, RerunQueued, Trigger, TriggerRule

__all__ = [
    "ACTIVE_TASK",
    "DONE_TASK",
    "TERMINAL_RUN",
    "RunState",
    "RunStatus",
    "TaskState",
    "TaskStatus",
    "check_invariants",
    "rerun_plan",
    "rule_verdict",
]

TaskStatus: TypeAlias = Literal[
    "pending", "scheduled", "running", "retrying", "succeeded", "failed", "skipped", "cancelled"
]
RunStatus: TypeAlias = Literal["pending", "running", "paused", "succeeded", "failed", "cancelled"]

TERMINAL_RUN: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})
ACTIVE_TASK: frozenset[str] = frozenset({"scheduled", "running", "retrying"})
DONE_TASK: frozenset[str] = frozenset({"succeeded", "failed", "skipped", "cancelled"})


class TaskState(msgspec.Struct, frozen=True, kw_only=True):
    """One task of a run in its current generation.

    ``generation`` starts at 1 and grows with each rerun that includes the task;
    ``attempt`` counts attempts within the generation (0 before the first).
    """

    name: str
    upstream: tuple[str, ...] = ()
    trigger_rule: TriggerRule = "all_success"
    status: TaskStatus = "pending"
    generation: int = 1
    attempt: int = 0
    output: Any = None
    error: ErrorInfo | None = None
    reason: str | None = None
    retry_at: datetime | None = None
    not_before: datetime | None = None
    scheduled_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    executions: int = 0
    """Attempts started over every generation: how often the task body ran."""
    mapped: int | None = None
    """For a map task that fanned out: how many children it has."""
    parent: str | None = None
    """For a child of a map task: the map task's name (the child is ``parent[i]``)."""
    job: dict[str, Any] | None = None
    """For a running attempt that waits on work elsewhere: what finds that work again
    (recorded by ``task_waiting``)."""
    waiting_since: datetime | None = None


class RunState(msgspec.Struct, frozen=True, kw_only=True):
    """A run: its identity, its status and its tasks, as of event ``last_seq``."""

    run_id: str
    stream_id: str
    workflow: str
    version: str
    params: dict[str, Any]
    trigger: Trigger
    idempotency_key: str | None
    tasks: dict[str, TaskState]
    created_at: datetime
    updated_at: datetime
    status: RunStatus = "pending"
    generation: int = 1
    reason: str | None = None
    reruns: tuple[str, ...] = ()
    queued: tuple[RerunQueued, ...] = ()
    """Reruns to apply once the run succeeds or fails, oldest first."""
    started_at: datetime | None = None
    finished_at: datetime | None = None
    last_seq: int = 0
    sla_missed: tuple[str, ...] = ()
    """The keys of the SLA misses recorded (``finish_by``, ``max_duration``, …): each once."""
    incidents: tuple[str, ...] = ()
    """The rules (``w0``, ``g1``) whose PagerDuty incident for this run is open: the run's
    success resolves them."""

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_RUN

    def ready(self, task: TaskState) -> bool | None:
        """Whether ``task``'s trigger rule lets it run: True, False (it never will: skip
        it), or None (not yet: upstream tasks are still to finish)."""
        return rule_verdict(task.trigger_rule, [self.tasks[u].status for u in task.upstream])

    def children(self, name: str) -> list[TaskState]:
        """The child tasks of a map task that fanned out."""
        return [t for t in self.tasks.values() if t.parent == name]

    def downstream_of(self, names: tuple[str, ...] | list[str]) -> list[str]:
        """``names`` and every task that depends on them, in DAG order (no map children:
        they go with their map task)."""
        chosen = set(names)
        # tasks are stored in the order they were declared, which is topological
        for task in self.tasks.values():
            if task.parent is None and any(u in chosen for u in task.upstream):
                chosen.add(task.name)
        return [name for name in self.tasks if name in chosen]


def rerun_plan(
    run: RunState, tasks: tuple[str, ...] | list[str], *, downstream: bool, failed_only: bool
) -> tuple[list[str], list[str]]:
    """Which tasks a rerun runs again, and which keep their outputs (in DAG order)."""
    chosen = run.downstream_of(tasks) if downstream else [t for t in run.tasks if t in tasks]
    if failed_only:
        chosen = [n for n in chosen if run.tasks[n].status != "succeeded"]
    chosen = [n for n in chosen if run.tasks[n].parent is None]
    kept = [n for n, t in run.tasks.items() if n not in chosen and t.parent is None]
    return chosen, kept


def rule_verdict(rule: TriggerRule, upstream: list[str]) -> bool | None:
    """A trigger rule applied to upstream statuses: run (True), never (False), not yet (None)."""
    if rule == "all_success":  # the common case first, in one pass
        verdict: bool | None = True
        for s in upstream:
            if s != "succeeded":
                if s in DONE_TASK:
                    return False
                verdict = None
        return verdict
    done = all(s in DONE_TASK for s in upstream)
    failed = any(s in ("failed", "cancelled") for s in upstream)
    match rule:
        case "none_failed":
            if failed:
                return False
            return (not upstream or "succeeded" in upstream) if done else None
        case "one_failed":
            if failed:
                return True
            return False if done else None
        case "all_done":
            return True if done else None
    return None  # pragma: no cover - every rule is matched above


def check_invariants(run: RunState) -> list[str]:
    """What is wrong with ``run``, as sentences; empty when the state is valid."""
    problems: list[str] = []
    if run.last_seq < 1:
        problems.append("a run exists only after its first event")
    if (run.finished_at is not None) != run.is_terminal:
        problems.append(f"status {run.status} but finished_at={run.finished_at}")
    if run.status == "succeeded":
        for t in run.tasks.values():
            if t.status not in DONE_TASK:
                problems.append(f"run succeeded but task {t.name} is {t.status}")
    for t in run.tasks.values():
        if not 1 <= t.generation <= run.generation:
            problems.append(f"task {t.name} generation {t.generation} outside 1..{run.generation}")
        if t.status == "pending" and t.attempt != 0:
            problems.append(f"task {t.name} pending at attempt {t.attempt}")
        if t.status in ACTIVE_TASK and t.attempt < 1:
            problems.append(f"task {t.name} {t.status} without an attempt")
        if t.status in DONE_TASK and t.finished_at is None:
            problems.append(f"task {t.name} {t.status} without a finish time")
        if t.status in ("failed", "retrying") and t.error is None:
            problems.append(f"task {t.name} {t.status} without an error")
        if t.status == "retrying" and t.retry_at is None:
            problems.append(f"task {t.name} retrying without a retry time")
        if t.status == "running" and t.executions < 1 and t.mapped is None:
            problems.append(f"task {t.name} is running but never started")
        if t.parent is not None and (
            t.parent not in run.tasks or run.tasks[t.parent].mapped is None
        ):
            problems.append(f"task {t.name} belongs to {t.parent}, which did not fan out")
        for u in t.upstream:
            if u not in run.tasks:
                problems.append(f"task {t.name} depends on unknown task {u}")
    if run.is_terminal:
        for t in run.tasks.values():
            if t.status in ACTIVE_TASK:
                problems.append(f"run {run.status} but task {t.name} is still {t.status}")
    if run.status == "cancelled" and run.queued:
        problems.append("a cancelled run still has queued reruns")
    for q in run.queued:
        if q.request_id in run.reruns:
            problems.append(f"rerun {q.request_id} is both queued and applied")
    return problems

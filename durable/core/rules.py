"""The rules of a run's life: what moves it forward at ``now``, as small named decisions.

Pure. One *pass* (:func:`decide_pass`) asks the run rules in order — the first that
decides ends the pass — then walks the tasks in DAG order (map children last), asking
each task the task rules in order until one handles it, and ends with the run's
completion. Decisions of a pass see the ones made before them in the same pass (a skip
propagates down the DAG at once). :func:`durable.core.step.step` repeats passes until
one decides nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from durable.core.commands import rerun_event
from durable.core.events import (
    ErrorInfo,
    Event,
    RerunRequested,
    RunFailed,
    RunStarted,
    RunSucceeded,
    TaskFailed,
    TaskMapped,
    TaskScheduled,
    TaskSkipped,
    TaskStarted,
    TaskSucceeded,
)
from durable.core.spec import WorkflowSpec
from durable.core.state import DONE_TASK, RunState, TaskState, rule_verdict
from durable.core.tasks import MapTask, SleepTask, SwitchTask, TaskSpec

__all__ = [
    "RUN_RULES",
    "TASK_RULES",
    "Pass",
    "decide_pass",
    "map_items",
    "next_wakeup",
    "start_within_slots",
    "task_index",
]


class Pass:
    """One pass over a run: the state it started from, and what it decided so far."""

    def __init__(
        self,
        state: RunState,
        spec: WorkflowSpec,
        now: datetime,
        executor: str | None,
        specs: dict[str, TaskSpec] | None = None,
    ) -> None:
        self.state = state
        self.spec = spec
        self.specs = specs if specs is not None else task_index(spec)
        self.now = now
        self.executor = executor
        self.events: list[Event] = []
        self.status: dict[str, str] = {name: t.status for name, t in state.tasks.items()}
        """Task statuses with this pass's decisions applied."""
        self.untaken = _untaken_branches(state, spec)
        self._room: dict[str, float] | None = None

    @property
    def room(self) -> dict[str, float]:
        """Free places of each map that fanned out (computed when a child asks)."""
        if self._room is None:
            self._room = _map_room(self.state, self.spec)
        return self._room

    def decide(self, event: Event, task: str, status: str) -> None:
        self.events.append(event)
        self.status[task] = status

    def task(self, name: str) -> TaskSpec:
        """A task's spec (a map's child has its map's)."""
        found = self.specs.get(name)
        return found if found is not None else self.spec.task(name)

    def verdict(self, t: TaskState) -> bool | None:
        return rule_verdict(t.trigger_rule, [self.status[u] for u in t.upstream])


# -- run rules: the first that decides ends the pass ----------------------------------------


def apply_queued_rerun(p: Pass) -> list[Event] | None:
    """A run that succeeded or failed with a rerun queued: apply the oldest one."""
    if p.state.queued and p.state.status in ("succeeded", "failed"):
        return [rerun_event(RerunRequested, p.state.queued[0])]
    return None


def start_pending_run(p: Pass) -> list[Event] | None:
    """A pending run starts (on the executor that claimed it)."""
    return [RunStarted(executor=p.executor)] if p.state.status == "pending" else None


def only_running_runs_move(p: Pass) -> list[Event] | None:
    """Paused and finished runs decide nothing more."""
    return [] if p.state.status != "running" else None


def fail_past_deadline(p: Pass) -> list[Event] | None:
    """A run past its workflow's ``max_duration`` fails."""
    limit, started = p.spec.max_duration, p.state.started_at
    if limit is not None and started is not None and p.now - started > timedelta(seconds=limit):
        return [RunFailed(reason=f"the run exceeded its max_duration of {limit:g} s")]
    return None


RUN_RULES: tuple[Callable[[Pass], list[Event] | None], ...] = (
    apply_queued_rerun,
    start_pending_run,
    only_running_runs_move,
    fail_past_deadline,
)


# -- task rules: the first that handles a task ends its turn ------------------------------


def schedule_due_retry(p: Pass, t: TaskState) -> bool:
    """A task waiting for its retry time gets its next attempt when the time comes."""
    if t.status != "retrying" or t.retry_at is None or t.retry_at > p.now:
        return False
    p.decide(
        TaskScheduled(task=t.name, generation=t.generation, attempt=t.attempt + 1),
        t.name,
        "scheduled",
    )
    return True


def start_map_child(p: Pass, t: TaskState) -> bool:
    """A map's child is scheduled while its map has room (``max_parallel``)."""
    if t.parent is None:
        return False
    if t.status == "pending" and p.room[t.parent] > 0:
        p.decide(
            TaskScheduled(task=t.name, generation=t.generation, attempt=1), t.name, "scheduled"
        )
        p.room[t.parent] -= 1
    return True


def fan_in_map(p: Pass, t: TaskState) -> bool:
    """A map whose children are all done succeeds with their outputs, or fails."""
    if t.mapped is None or t.status != "running":
        return False
    children = [c for c in p.state.tasks.values() if c.parent == t.name]
    if any(p.status[c.name] not in DONE_TASK for c in children):
        return True
    failed = [c for c in children if p.status[c.name] != "succeeded"]
    if not failed:
        output = [c.output for c in children]
        p.decide(
            TaskSucceeded(task=t.name, generation=t.generation, attempt=t.attempt, output=output),
            t.name,
            "succeeded",
        )
        return True
    first = failed[0]
    detail = f": {first.error.type}: {first.error.message}" if first.error else ""
    error = ErrorInfo(
        type="MapItemFailed",
        message=f"{len(failed)} of {len(children)} items failed; first {first.name}{detail}",
        retryable=False,
    )
    p.decide(
        TaskFailed(task=t.name, generation=t.generation, attempt=t.attempt, error=error),
        t.name,
        "failed",
    )
    return True


def only_pending_tasks_start(p: Pass, t: TaskState) -> bool:
    """Nothing else is decided for a task that is already on its way or done."""
    return t.status != "pending"


def fan_out_map(p: Pass, t: TaskState) -> bool:
    """A ready map task fans out, one child per item (or fails: no list to map)."""
    if not isinstance(p.task(t.name), MapTask) or t.name in p.untaken:
        return False
    if p.verdict(t) is not True:
        return False
    items = map_items(p.state, p.spec, t.name)
    if isinstance(items, str):
        error = ErrorInfo(type="MapError", message=items, retryable=False)
        p.decide(
            TaskScheduled(task=t.name, generation=t.generation, attempt=1), t.name, "scheduled"
        )
        p.decide(
            TaskFailed(task=t.name, generation=t.generation, attempt=1, error=error),
            t.name,
            "failed",
        )
    else:
        p.decide(
            TaskMapped(task=t.name, generation=t.generation, count=len(items)), t.name, "running"
        )
    return True


def skip_untaken_branch(p: Pass, t: TaskState) -> bool:
    """A task on a branch its switch did not take is skipped."""
    reason = p.untaken.get(t.name)
    if reason is None:
        return False
    p.decide(TaskSkipped(task=t.name, generation=t.generation, reason=reason), t.name, "skipped")
    return True


def apply_trigger_rule(p: Pass, t: TaskState) -> bool:
    """A task whose trigger rule is met is scheduled (a sleep with its wake-up time); one
    whose rule can no longer be met is skipped."""
    verdict = p.verdict(t)
    if verdict is True:
        task = p.task(t.name)
        not_before = sleep_until(p.spec, t.name, p.now) if isinstance(task, SleepTask) else None
        p.decide(
            TaskScheduled(task=t.name, generation=t.generation, attempt=1, not_before=not_before),
            t.name,
            "scheduled",
        )
    elif verdict is False:
        bad = [f"{u} {p.status[u]}" for u in t.upstream if p.status[u] != "succeeded"]
        reason = f"upstream {', '.join(bad)}" if bad else "trigger rule not met"
        p.decide(
            TaskSkipped(task=t.name, generation=t.generation, reason=reason), t.name, "skipped"
        )
    return True


TASK_RULES: tuple[Callable[[Pass, TaskState], bool], ...] = (
    schedule_due_retry,
    start_map_child,
    fan_in_map,
    only_pending_tasks_start,
    fan_out_map,
    skip_untaken_branch,
    apply_trigger_rule,
)


# -- the end of a pass ----------------------------------------------------------------------


def complete_run(p: Pass) -> None:
    """When every task is done, the run succeeds — or fails, naming the failed tasks no
    catch task (``one_failed``) handled."""
    if not all(s in DONE_TASK for s in p.status.values()):
        return
    unhandled = [
        name
        for name, s in p.status.items()
        if s in ("failed", "cancelled")
        and p.state.tasks[name].parent is None  # a map task stands for its children
        and not _handled(p, name)
    ]
    if unhandled:
        reason = f"task {', '.join(unhandled)} failed"
        p.events.append(RunFailed(reason=reason, failed_tasks=tuple(unhandled)))
    else:
        p.events.append(RunSucceeded())


def decide_pass(
    state: RunState,
    spec: WorkflowSpec,
    now: datetime,
    executor: str | None,
    specs: dict[str, TaskSpec] | None = None,
) -> list[Event]:
    """One pass of the rules over the run: the events it decides (``[]``: nothing to do).

    ``specs``: the workflow's tasks by name (:func:`task_index`), when the caller has it.
    """
    p = Pass(state, spec, now, executor, specs)
    for run_rule in RUN_RULES:
        decided = run_rule(p)
        if decided is not None:
            return decided
    for t in state.tasks.values():  # DAG order, map children last
        # No rule decides anything for these; they are most tasks of a big run, so spare
        # asking every rule: settled tasks, attempts under way, tasks waiting upstream.
        if t.status in _SETTLED or (t.status == "running" and t.mapped is None):
            continue
        if (
            t.status == "pending"
            and t.parent is None
            and t.name not in p.untaken
            and p.verdict(t) is None
        ):
            continue
        for task_rule in TASK_RULES:
            if task_rule(p, t):
                break
    complete_run(p)
    return p.events


_SETTLED = frozenset({"scheduled", "succeeded", "failed", "skipped", "cancelled"})


def task_index(spec: WorkflowSpec) -> dict[str, TaskSpec]:
    """The workflow's tasks by name."""
    return {t.name: t for t in spec.tasks}


def start_within_slots(
    state: RunState, now: datetime, free: int, executor: str | None
) -> list[TaskStarted]:
    """Scheduled attempts whose time has come start, in DAG order, as far as the
    executor's ``free`` slots go."""
    starts: list[TaskStarted] = []
    if state.status != "running":
        return starts
    for t in state.tasks.values():
        if len(starts) >= free:
            break
        if t.status == "scheduled" and (t.not_before is None or t.not_before <= now):
            starts.append(
                TaskStarted(
                    task=t.name, generation=t.generation, attempt=t.attempt, executor=executor
                )
            )
    return starts


# -- what the rules read --------------------------------------------------------------------


def next_wakeup(state: RunState, spec: WorkflowSpec) -> datetime | None:
    """The earliest time a timer of the run fires (a retry, a sleep, its max duration)."""
    times = [t.retry_at for t in state.tasks.values() if t.status == "retrying" and t.retry_at]
    times += [
        t.not_before for t in state.tasks.values() if t.status == "scheduled" and t.not_before
    ]
    if spec.max_duration is not None and state.started_at is not None and not state.is_terminal:
        # just past the deadline: the run fails when it is *exceeded*
        times.append(state.started_at + timedelta(seconds=spec.max_duration, milliseconds=1))
    return min(times) if times else None


def map_items(state: RunState, spec: WorkflowSpec, name: str) -> list[Any] | str:
    """The items a map task fans out over, or why there are none to take."""
    task = spec.task(name)
    assert isinstance(task, MapTask), f"{name} is a {task.kind} task, not a map"
    value: Any = state.tasks[task.over].output
    if task.key:
        value = value.get(task.key) if isinstance(value, dict) else None
    if not isinstance(value, list):
        what = f"{task.over}.{task.key}" if task.key else task.over
        return f"map {name} needs a list from {what}, got {type(value).__name__}"
    return value


def sleep_until(spec: WorkflowSpec, name: str, now: datetime) -> datetime | None:
    """When a sleep task scheduled at ``now`` wakes up (``None``: not a sleep)."""
    task = spec.task(name)
    if not isinstance(task, SleepTask):
        return None
    if task.until:
        until = datetime.fromisoformat(str(task.until))
        return until if until.tzinfo else until.replace(tzinfo=now.tzinfo)
    return now + timedelta(seconds=float(task.seconds or 0))


def _untaken_branches(state: RunState, spec: WorkflowSpec) -> dict[str, str]:
    """Tasks routed away from by a finished switch: name -> why."""
    untaken: dict[str, str] = {}
    for t in spec.tasks:
        if not isinstance(t, SwitchTask) or state.tasks[t.name].status != "succeeded":
            continue
        default = t.default or []
        output: Any = state.tasks[t.name].output
        chosen_keys = [str(k) for k in (output if isinstance(output, list) else [output])]
        chosen = {target for k in chosen_keys for target in t.cases.get(k, [])}
        if not any(k in t.cases for k in chosen_keys):
            chosen = set(default)
        for branch in [*t.cases.values(), default]:
            for target in branch:
                if target not in chosen:
                    untaken[target] = f"switch {t.name} chose {', '.join(chosen_keys)}"
    return untaken


def _map_room(state: RunState, spec: WorkflowSpec) -> dict[str, float]:
    """Free places of each map that fanned out (``max_parallel`` less its active children)."""
    active: dict[str, int] = {}
    for t in state.tasks.values():
        if t.parent is not None:
            active.setdefault(t.parent, 0)
            if t.status in ("scheduled", "running", "retrying"):
                active[t.parent] += 1
    room: dict[str, float] = {}
    for parent, busy in active.items():
        task = spec.task(parent)
        limit = task.max_parallel if isinstance(task, MapTask) else None
        room[parent] = float("inf") if not limit else limit - busy
    return room


def _handled(p: Pass, name: str) -> bool:
    # A failure is handled when a catch task (one_failed) downstream of it succeeded.
    return any(
        t.trigger_rule == "one_failed" and name in t.upstream and p.status[t.name] == "succeeded"
        for t in p.state.tasks.values()
    )

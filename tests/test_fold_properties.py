"""Properties of the pure fold, over random valid histories (Hypothesis).

The generator below is an independent model of what may happen next in a run; the fold
must accept every history it builds, keep every invariant after every event, and give
the same state however the history is split.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from durable.core.errors import InvalidTransition
from durable.core.events import (
    REGISTRY,
    ErrorInfo,
    Event,
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
    TaskCancelled,
    TaskFailed,
    TaskNode,
    TaskRetryScheduled,
    TaskScheduled,
    TaskSkipped,
    TaskStarted,
    TaskSucceeded,
    TaskWaiting,
    run_stream,
)
from durable.core.fold import evolve, fold
from durable.core.state import check_invariants

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ERR = ErrorInfo(type="ValueError", message="boom", retryable=True)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**9), 10**9) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)


@st.composite
def dags(draw: st.DrawFn) -> tuple[TaskNode, ...]:
    n = draw(st.integers(1, 6))
    nodes = []
    for i in range(n):
        ups = draw(st.lists(st.integers(0, i - 1), unique=True, max_size=2)) if i else []
        rule = draw(st.sampled_from(["all_success", "none_failed", "one_failed", "all_done"]))
        nodes.append(
            TaskNode(name=f"t{i}", upstream=tuple(f"t{u}" for u in sorted(ups)), trigger_rule=rule)
        )
    return tuple(nodes)


class Model:
    """What the test believes about a run, kept apart from durable.core.state on purpose."""

    def __init__(self, dag: tuple[TaskNode, ...]) -> None:
        self.dag = {t.name: t for t in dag}
        self.run = "pending"
        self.gen = 1
        self.task = {t.name: ["pending", 1, 0] for t in dag}  # status, generation, attempt
        self.requests = 0
        self.queues = 0
        self.job: dict[str, dict[str, Any] | None] = {t.name: None for t in dag}
        """What the running attempt of each task waits on (its last task_waiting)."""

    def can_run(self, name: str) -> bool:
        ups = [self.task[u][0] for u in self.dag[name].upstream]
        finished = {"succeeded", "failed", "skipped", "cancelled"}
        rule = self.dag[name].trigger_rule
        if rule == "all_success":
            return all(s == "succeeded" for s in ups)
        if rule == "all_done":
            return all(s in finished for s in ups)
        if rule == "one_failed":
            return any(s in ("failed", "cancelled") for s in ups)
        return (
            all(s in finished for s in ups)
            and not any(s in ("failed", "cancelled") for s in ups)
            and (not ups or "succeeded" in ups)
        )

    def options(self) -> list[Event]:
        opts: list[Event] = []
        r = self.run
        if r == "pending":
            opts += [RunStarted(), RunPaused(), RunCancelled(reason="user")]
        if r in ("succeeded", "failed", "cancelled"):
            names = list(self.dag)
            opts.append(
                RerunRequested(
                    request_id=f"req{self.requests}", tasks=(names[-1],), downstream=True
                )
            )
            opts.append(
                RerunRequested(
                    request_id=f"req{self.requests}b",
                    tasks=(names[0],),
                    downstream=True,
                    failed_only=True,
                )
            )
            return opts
        if r in ("pending", "running", "paused"):  # a rerun asked while the run goes on
            opts.append(
                RerunQueued(request_id=f"queued{self.queues}", tasks=(next(iter(self.dag)),))
            )
        if r == "paused":
            opts += [RunResumed(), RunCancelled()]
        if r == "running":
            opts += [RunPaused(), RunCancelled(), RunFailed(reason="timeout")]
            finished = ("succeeded", "skipped", "failed", "cancelled")
            if all(s in finished for s, _, _ in self.task.values()):
                opts.append(RunSucceeded())
        for name, (status, gen, attempt) in self.task.items():
            ups_ok = self.can_run(name)
            if r == "running" and status == "pending" and ups_ok:
                opts.append(TaskScheduled(task=name, generation=gen, attempt=1))
            if r == "running" and status == "retrying" and ups_ok:
                opts.append(TaskScheduled(task=name, generation=gen, attempt=attempt + 1))
            if r in ("running", "paused"):
                if status == "pending":
                    opts.append(TaskSkipped(task=name, generation=gen, reason="branch"))
                if status == "scheduled":
                    opts.append(TaskStarted(task=name, generation=gen, attempt=attempt))
                if status == "running":
                    opts += [
                        TaskWaiting(
                            task=name,
                            generation=gen,
                            attempt=attempt,
                            job={"id": f"{name}-{gen}-{attempt}"},
                            state="PENDING",
                        ),
                        TaskSkipped(task=name, generation=gen, reason="soft", attempt=attempt),
                        TaskSucceeded(
                            task=name, generation=gen, attempt=attempt, output={"n": attempt}
                        ),
                        TaskFailed(task=name, generation=gen, attempt=attempt, error=ERR),
                        TaskRetryScheduled(
                            task=name, generation=gen, attempt=attempt, error=ERR, retry_at=T0
                        ),
                    ]
                if status in ("pending", "scheduled", "running", "retrying"):
                    opts.append(TaskCancelled(task=name, generation=gen))
        return opts

    def apply(self, e: Event) -> None:
        match e:
            case RunStarted() | RunResumed():
                self.run = "running"
            case RunPaused():
                self.run = "paused"
            case RunSucceeded():
                self.run = "succeeded"
            case RunFailed() | RunCancelled():
                self.run = "failed" if isinstance(e, RunFailed) else "cancelled"
                for t in self.task.values():
                    if t[0] in ("pending", "scheduled", "running", "retrying"):
                        t[0] = "cancelled"
            case RerunQueued():
                self.queues += 1
            case RerunRequested():
                self.requests += 1
                self.gen += 1
                chosen = set(e.tasks)
                for name, node in self.dag.items():
                    if e.downstream and chosen & set(node.upstream):
                        chosen.add(name)
                if e.failed_only:
                    chosen = {n for n in chosen if self.task[n][0] != "succeeded"}
                for n in chosen:
                    self.task[n] = ["pending", self.gen, 0]
                self.run = "running"
            case TaskScheduled():
                self.task[e.task][0:3:2] = ["scheduled", e.attempt]
            case TaskStarted():
                self.task[e.task][0] = "running"
                self.job[e.task] = None
            case TaskWaiting():
                self.job[e.task] = e.job
            case TaskSucceeded():
                self.task[e.task][0] = "succeeded"
            case TaskFailed():
                self.task[e.task][0] = "failed"
            case TaskRetryScheduled():
                self.task[e.task][0] = "retrying"
            case TaskSkipped():
                self.task[e.task][0] = "skipped"
            case TaskCancelled():
                self.task[e.task][0] = "cancelled"


@st.composite
def histories(draw: st.DrawFn, max_events: int = 40) -> list[Recorded]:
    dag = draw(dags())
    params = draw(st.dictionaries(st.text(max_size=5), json_values, max_size=3))
    events: list[Event] = [
        RunCreated(run_id="r", workflow="w", version="v1", tasks=dag, params=params)
    ]
    model = Model(dag)
    for _ in range(draw(st.integers(0, max_events))):
        opts = model.options()
        if not opts:
            break
        e = draw(st.sampled_from(opts))
        model.apply(e)
        events.append(e)
    return [
        Recorded(
            stream_id=run_stream("r"),
            seq=i,
            position=i,
            recorded_at=T0 + timedelta(seconds=i),
            event=e,
        )
        for i, e in enumerate(events, start=1)
    ]


SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(histories())
def test_every_prefix_folds_to_a_valid_state(history: list[Recorded]) -> None:
    state = None
    for recorded in history:
        state = evolve(state, recorded)
        assert check_invariants(state) == [], (recorded, check_invariants(state))


@SETTINGS
@given(histories(), st.data())
def test_folding_in_two_halves_equals_folding_at_once(history: list[Recorded], data: Any) -> None:
    cut = data.draw(st.integers(0, len(history)))
    assert fold(history[cut:], fold(history[:cut])) == fold(history)


@SETTINGS
@given(histories())
def test_the_model_and_the_fold_agree_on_statuses(history: list[Recorded]) -> None:
    state = fold(history)
    assert state is not None
    created = history[0].event
    assert isinstance(created, RunCreated)
    model = Model(created.tasks)
    for r in history[1:]:
        model.apply(r.event)
    assert state.status == model.run
    assert {n: t.status for n, t in state.tasks.items()} == {n: t[0] for n, t in model.task.items()}
    assert {n: t.generation for n, t in state.tasks.items()} == {
        n: t[1] for n, t in model.task.items()
    }
    running = [n for n, t in state.tasks.items() if t.status == "running"]
    assert {n: state.tasks[n].job for n in running} == {n: model.job[n] for n in running}


@SETTINGS
@given(histories())
def test_events_survive_the_codec(history: list[Recorded]) -> None:
    for r in history:
        tag, version, data = REGISTRY.encode(r.event)
        assert REGISTRY.decode(tag, version, data) == r.event
    wire = msgspec.json.encode(history)
    assert fold(msgspec.json.decode(wire, type=list[Recorded])) == fold(history)


@SETTINGS
@given(histories(), st.data())
def test_any_event_either_applies_validly_or_is_an_invalid_transition(
    history: list[Recorded], data: Any
) -> None:
    """Total: whatever event arrives, evolve answers with a valid state or InvalidTransition."""
    state = fold(history)
    names = list(state.tasks) if state else ["t0"]
    task = data.draw(st.sampled_from([*names, "ghost"]))
    gen = data.draw(st.integers(0, 3))
    attempt = data.draw(st.integers(0, 3))
    event = data.draw(
        st.sampled_from(
            [
                RunStarted(),
                RunPaused(),
                RunResumed(),
                RunSucceeded(),
                RunFailed(reason="x"),
                RunCancelled(),
                RerunRequested(request_id="req0", tasks=(task,)),
                TaskScheduled(task=task, generation=gen, attempt=attempt),
                TaskStarted(task=task, generation=gen, attempt=attempt),
                TaskSucceeded(task=task, generation=gen, attempt=attempt),
                TaskFailed(task=task, generation=gen, attempt=attempt, error=ERR),
                TaskRetryScheduled(
                    task=task, generation=gen, attempt=attempt, error=ERR, retry_at=T0
                ),
                TaskSkipped(task=task, generation=gen, reason="r"),
                TaskSkipped(task=task, generation=gen, reason="r", attempt=attempt),
                TaskWaiting(task=task, generation=gen, attempt=attempt, job={"id": 1}),
                TaskCancelled(task=task, generation=gen),
                RunCreated(run_id="r", workflow="w", version="v", tasks=()),
            ]
        )
    )
    seq = data.draw(st.sampled_from([len(history) + 1, len(history) + 2, len(history)]))
    recorded = Recorded(stream_id="run:r", seq=seq, position=seq, recorded_at=T0, event=event)
    try:
        after = evolve(state, recorded)
    except InvalidTransition as exc:
        assert exc.seq == seq and exc.stream_id == "run:r"
        assert str(seq) in str(exc)
        return
    assert check_invariants(after) == []

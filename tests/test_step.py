"""``step`` on its own, no database: unit cases and Hypothesis properties.

Properties, over random workflows and random inputs: every event ``step`` returns folds
(invariants hold); it never starts more attempts than the free slots it was given; a
task starts only when its trigger rule is met; the same arguments give the same events;
an input already answered gives none.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from durable.core.events import (
    ErrorInfo,
    Event,
    Recorded,
    RunCreated,
    RunFailed,
    RunStarted,
    RunSucceeded,
    TaskFailed,
    TaskMapped,
    TaskRetryScheduled,
    TaskScheduled,
    TaskSkipped,
    TaskStarted,
    TaskSucceeded,
    run_stream,
)
from durable.core.fold import evolve
from durable.core.retry import RetryPolicy
from durable.core.spec import WorkflowSpec, validate
from durable.core.state import RunState, check_invariants, rule_verdict
from durable.core.step import (
    AttemptFailed,
    AttemptsLost,
    AttemptSucceeded,
    Cancel,
    CommandRejected,
    Input,
    Pause,
    Rerun,
    Resume,
    SlotsAvailable,
    Tick,
    next_wakeup,
    step,
)
from durable.core.tasks import TaskSpec, task_spec

T0 = datetime(2026, 11, 21, 2, 0, tzinfo=UTC)
E1 = "host-a:1"
BOOM = ErrorInfo(type="ConnectionError", message="down", retryable=True)


def workflow(*tasks: TaskSpec, max_duration: float | None = None) -> WorkflowSpec:
    return validate(WorkflowSpec(name="wf", tasks=tasks, max_duration=max_duration))


def py(name: str, *upstream: str, **common: Any) -> TaskSpec:
    return task_spec("python", {"callable": f"m:{name}"}, name=name, upstream=upstream, **common)


def created(spec: WorkflowSpec) -> RunState:
    event = RunCreated(run_id="r1", workflow=spec.name, version=spec.version, tasks=spec.nodes())
    return evolve(
        None, Recorded(stream_id=run_stream("r1"), seq=1, position=1, recorded_at=T0, event=event)
    )


def fold_in(state: RunState, events: list[Event], at: datetime = T0) -> RunState:
    for e in events:
        state = evolve(
            state,
            Recorded(
                stream_id=state.stream_id,
                seq=state.last_seq + 1,
                position=0,
                recorded_at=at,
                event=e,
            ),
        )
        assert check_invariants(state) == []
    return state


def slots(n: int) -> SlotsAvailable:
    return SlotsAvailable(free=n, executor=E1)


# -- unit cases ---------------------------------------------------------------------------


def test_a_claimed_run_starts_schedules_and_starts_its_roots_in_one_step() -> None:
    spec = workflow(py("a"), py("b"), py("c", "a", "b"))
    events = step(created(spec), spec, [Tick(), slots(1)], T0)
    assert events == [
        RunStarted(executor=E1),
        TaskScheduled(task="a", generation=1, attempt=1),
        TaskScheduled(task="b", generation=1, attempt=1),
        TaskStarted(task="a", generation=1, attempt=1, executor=E1),  # one slot: one start
    ]


def test_without_slots_nothing_starts_and_a_later_slot_starts_the_next() -> None:
    spec = workflow(py("a"))
    state = fold_in(created(spec), step(created(spec), spec, [Tick(), slots(0)], T0))
    assert state.tasks["a"].status == "scheduled"
    assert step(state, spec, [Tick(), slots(0)], T0) == []
    assert step(state, spec, [slots(2)], T0) == [
        TaskStarted(task="a", generation=1, attempt=1, executor=E1)
    ]


def test_a_result_its_consequences_and_the_starts_come_back_together() -> None:
    spec = workflow(py("a"), py("b", "a"))
    state = created(spec)
    state = fold_in(state, step(state, spec, [Tick(), slots(4)], T0))
    done = AttemptSucceeded(task="a", generation=1, attempt=1, output={"rows": 3})
    events = step(state, spec, [done, slots(4)], T0)
    assert events == [
        TaskSucceeded(task="a", generation=1, attempt=1, output={"rows": 3}),
        TaskScheduled(task="b", generation=1, attempt=1),
        TaskStarted(task="b", generation=1, attempt=1, executor=E1),
    ]
    state = fold_in(state, events)
    assert step(state, spec, [done, slots(4)], T0) == []  # redelivered: nothing
    last = AttemptSucceeded(task="b", generation=1, attempt=1)
    assert step(state, spec, [last, slots(4)], T0)[-1] == RunSucceeded()


def test_a_failed_attempt_retries_when_its_time_comes() -> None:
    policy = RetryPolicy(max_attempts=2, initial_delay=10, jitter=0)
    spec = workflow(py("a", retry=policy))
    state = created(spec)
    state = fold_in(state, step(state, spec, [Tick(), slots(1)], T0))
    events = step(state, spec, [AttemptFailed(task="a", generation=1, attempt=1, error=BOOM)], T0)
    retry_at = T0 + timedelta(seconds=10)
    assert events == [
        TaskRetryScheduled(task="a", generation=1, attempt=1, error=BOOM, retry_at=retry_at)
    ]
    state = fold_in(state, events)
    assert next_wakeup(state, spec) == retry_at
    assert step(state, spec, [Tick(), slots(1)], retry_at - timedelta(seconds=1)) == []
    assert step(state, spec, [Tick(), slots(1)], retry_at) == [
        TaskScheduled(task="a", generation=1, attempt=2),
        TaskStarted(task="a", generation=1, attempt=2, executor=E1),
    ]
    state = fold_in(state, step(state, spec, [Tick(), slots(1)], retry_at))
    failed = step(state, spec, [AttemptFailed(task="a", generation=1, attempt=2, error=BOOM)], T0)
    assert failed == [
        TaskFailed(task="a", generation=1, attempt=2, error=BOOM),
        RunFailed(reason="task a failed", failed_tasks=("a",)),
    ]


def test_lost_attempts_count_as_failed_retryable_attempts() -> None:
    spec = workflow(py("a", retry=RetryPolicy(max_attempts=1)))
    state = created(spec)
    state = fold_in(state, step(state, spec, [Tick(), slots(1)], T0))
    events = step(state, spec, [AttemptsLost()], T0)
    assert [type(e) for e in events] == [TaskFailed, RunFailed]
    assert isinstance(events[0], TaskFailed) and events[0].error.type == "ExecutorLost"


def test_switch_skips_the_untaken_branch_and_sleep_records_its_wake_up() -> None:
    switch = task_spec(
        "switch", {"callable": "m:s", "cases": {"x": ["nap"], "y": ["other"]}}, name="s"
    )
    nap = task_spec("sleep", {"seconds": 30}, name="nap", upstream=("s",))
    other = py("other", "s")
    spec = workflow(switch, nap, other)
    state = created(spec)
    state = fold_in(state, step(state, spec, [Tick(), slots(1)], T0))
    events = step(
        state, spec, [AttemptSucceeded(task="s", generation=1, attempt=1, output="x"), slots(1)], T0
    )
    assert events == [
        TaskSucceeded(task="s", generation=1, attempt=1, output="x"),
        TaskScheduled(task="nap", generation=1, attempt=1, not_before=T0 + timedelta(seconds=30)),
        TaskSkipped(task="other", generation=1, reason="switch s chose x"),
    ]


def test_a_map_fans_out_within_max_parallel_and_fans_in() -> None:
    source = py("src")
    each = task_spec(
        "map",
        {"callable": "m:each", "over": "src", "max_parallel": 2},
        name="each",
        upstream=("src",),
    )
    spec = workflow(source, each)
    state = created(spec)
    state = fold_in(state, step(state, spec, [Tick(), slots(9)], T0))
    events = step(
        state,
        spec,
        [AttemptSucceeded(task="src", generation=1, attempt=1, output=[1, 2, 3]), slots(9)],
        T0,
    )
    assert events[1] == TaskMapped(task="each", generation=1, count=3)
    assert [e.task for e in events if isinstance(e, TaskStarted)] == ["each[0]", "each[1]"]
    state = fold_in(state, events)
    for i in range(3):
        state = fold_in(
            state,
            step(
                state,
                spec,
                [AttemptSucceeded(task=f"each[{i}]", generation=1, attempt=1, output=i), slots(9)],
                T0,
            ),
        )
    assert state.tasks["each"].output == [0, 1, 2]
    assert state.status == "succeeded"


def test_the_run_fails_past_its_max_duration() -> None:
    spec = workflow(py("a"), max_duration=60)
    state = created(spec)
    state = fold_in(state, step(state, spec, [Tick(), slots(1)], T0))
    assert step(state, spec, [Tick()], T0 + timedelta(seconds=60)) == []
    assert step(state, spec, [Tick()], T0 + timedelta(seconds=61)) == [
        RunFailed(reason="the run exceeded its max_duration of 60 s")
    ]


def test_commands_are_inputs_and_refused_ones_raise() -> None:
    spec = workflow(py("a"))
    state = created(spec)
    state = fold_in(state, step(state, spec, [Tick(), slots(0)], T0))
    paused = step(state, spec, [Pause(reason="later"), slots(5)], T0)
    assert [type(e).__name__ for e in paused] == ["RunPaused"]  # paused: nothing starts
    state = fold_in(state, paused)
    assert step(state, spec, [Pause()], T0) == []
    resumed = step(state, spec, [Resume(), slots(5)], T0)
    assert [type(e).__name__ for e in resumed] == ["RunResumed", "TaskStarted"]
    with pytest.raises(CommandRejected):
        step(state, spec, [Rerun(request_id="x", tasks=("a",))], T0)


# -- properties ---------------------------------------------------------------------------


@st.composite
def workflows(draw: st.DrawFn) -> WorkflowSpec:
    n = draw(st.integers(1, 6))
    kinds = [
        draw(st.sampled_from(["python"] * 4 + ["switch", "map", "sleep", "noop"])) for _ in range(n)
    ]
    upstream: list[list[str]] = []
    for i in range(n):
        ups = draw(st.lists(st.integers(0, i - 1), unique=True, max_size=3)) if i else []
        if kinds[i] == "map" and not ups:
            kinds[i] = "python"
        upstream.append([f"t{u}" for u in ups])
    tasks: list[TaskSpec] = []
    for i, kind in enumerate(kinds):
        name = f"t{i}"
        common: dict[str, Any] = {
            "name": name,
            "upstream": tuple(upstream[i]),
            "trigger_rule": draw(
                st.sampled_from(["all_success"] * 3 + ["none_failed", "one_failed", "all_done"])
            ),
            "retry": RetryPolicy(max_attempts=draw(st.integers(1, 3)), initial_delay=5, jitter=0),
        }
        config: dict[str, Any] = {}
        if kind in ("python", "map"):
            config["callable"] = f"m:{name}"
        if kind == "map":
            config["over"] = upstream[i][0]
            if draw(st.booleans()):
                config["max_parallel"] = draw(st.integers(1, 2))
        if kind == "sleep":
            config["seconds"] = draw(st.integers(0, 20))
        if kind == "switch":
            targets = [f"t{j}" for j in range(i + 1, n) if name in upstream[j]]
            split = draw(st.integers(0, len(targets)))
            config.update(callable=f"m:{name}", cases={"a": targets[:split], "b": targets[split:]})
        tasks.append(task_spec(kind, config, **common))
    max_duration = draw(st.sampled_from([None, None, 100.0]))
    return validate(WorkflowSpec(name="wf", tasks=tuple(tasks), max_duration=max_duration))


outputs = st.sampled_from(["a", "b", "z", None, [], [1], [1, 2, 3], {"k": 1}])


@st.composite
def next_input(draw: st.DrawFn, state: RunState) -> Input:
    running = [t for t in state.tasks.values() if t.status == "running" and t.mapped is None]
    options = ["tick", "tick", "command"] + ["result"] * 4 * bool(running)
    options += ["lost"] * bool(running)
    match draw(st.sampled_from(options)):
        case "result":
            t = draw(st.sampled_from(running))
            if draw(st.integers(0, 3)) == 0:
                error = ErrorInfo(type="E", message="x", retryable=draw(st.booleans()))
                return AttemptFailed(
                    task=t.name, generation=t.generation, attempt=t.attempt, error=error
                )
            return AttemptSucceeded(
                task=t.name, generation=t.generation, attempt=t.attempt, output=draw(outputs)
            )
        case "lost":
            return AttemptsLost()
        case "command":
            top = [n for n, t in state.tasks.items() if t.parent is None]
            return draw(
                st.sampled_from(
                    [
                        Cancel(),
                        Pause(),
                        Resume(),
                        Rerun(
                            request_id=f"r{draw(st.integers(0, 2))}",
                            tasks=(draw(st.sampled_from(top)),),
                            downstream=draw(st.booleans()),
                            queue=draw(st.booleans()),
                        ),
                    ]
                )
            )
        case _:
            return Tick()


@given(spec=workflows(), data=st.data())
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_step_properties(spec: WorkflowSpec, data: st.DataObject) -> None:
    state = created(spec)
    now = T0
    for _ in range(40):
        now += timedelta(seconds=data.draw(st.integers(0, 12)))
        given_input = data.draw(next_input(state))
        free = data.draw(st.integers(0, 3))
        inputs: list[Input] = [given_input, slots(free)]
        try:
            events = step(state, spec, inputs, now)
        except CommandRejected:
            continue
        assert step(state, spec, inputs, now) == events  # a function of its arguments
        assert sum(isinstance(e, TaskStarted) for e in events) <= free
        before = state
        for e in events:
            if isinstance(e, TaskStarted) and before.tasks[e.task].parent is None:
                t = before.tasks[e.task]
                ups = [before.tasks[u].status for u in t.upstream]
                assert rule_verdict(t.trigger_rule, ups) is True, (e, ups)
            before = fold_in(before, [e], now)  # the fold accepts it; invariants hold
        state = before
        if not isinstance(given_input, AttemptsLost | SlotsAvailable):
            try:  # redelivered: nothing more (or refused, when the run has ended since)
                assert step(state, spec, [given_input, slots(0)], now) == []
            except CommandRejected:
                assert state.is_terminal
        if state.is_terminal and not state.queued:
            break

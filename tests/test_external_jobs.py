"""External jobs (kind ``job``) against a real job API on loopback (tests/jobserver.py).

Submitted once with an ``Idempotency-Key``, recorded in the log (``task_waiting``) before
any wait, polled without a slot; after SIGKILL of the executor process the next one polls
the same job (the server counts one submission); a cancelled run and a timeout cancel the
job; a failed job fails the task with its state and the last lines of its message.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from durable import TaskContext, Workflow
from durable.application.commands import apply_command
from durable.application.runs import create_run
from durable.cli import main
from durable.core.commands import Cancel
from durable.core.events import (
    ErrorInfo,
    Event,
    Recorded,
    TaskRetryScheduled,
    TaskStarted,
    TaskSucceeded,
    TaskWaiting,
    run_stream,
)
from durable.core.fold import fold
from durable.core.spec import DefinitionError
from durable.core.state import RunState
from durable.core.step import EXECUTOR_LOST
from durable.core.tasks import JobTask
from durable.core.trace import trace_of
from durable.runtime.tasks.job import PathError, lookup
from durable.runtime.tasks.waiting import UNANSWERED, submission_attempt
from durable.store import PostgresEventStore
from durable.workflows import load_workflows
from tests.executing import registry_of, run_to_end, running_executor, wait_for_run
from tests.histories import T0, created, recorded
from tests.jobserver import JobServer
from tests.processes import durable
from tests.signs import eventually

FAST = {"poll_interval": 0.05, "max_poll_interval": 0.2}


@pytest.fixture
async def jobs() -> AsyncIterator[JobServer]:
    server = await JobServer().start()
    yield server
    await server.stop()


def job_workflow(server: JobServer, name: str = "ext", **options: Any) -> Workflow:
    """One job task ``train`` against ``server``; ``options`` override the defaults
    (``json`` says how the job goes)."""
    wf = Workflow(name)
    config: dict[str, Any] = {
        "submit_url": f"{server.url}/jobs",
        "json": {"polls": 2, "result": {"rows": 42}},
        "job_id": "job.id",
        "status_url": f"{server.url}/jobs/${{job.id}}",
        "state": "state",
        "succeeded": ["SUCCEEDED"],
        "failed": ["FAILED", "CANCELLED"],
        "result": "result",
        "message": "error",
        "cancel_url": f"{server.url}/jobs/${{job.id}}/cancel",
        **FAST,
    }
    config.update(options)
    wf.job("train", **config)
    return wf


async def history(store: PostgresEventStore, run_id: str) -> list[Recorded]:
    return await store.read_stream(run_stream(run_id))


async def state_of(store: PostgresEventStore, run_id: str) -> RunState:
    state = fold(await history(store, run_id))
    assert state is not None
    return state


# -- in one process -------------------------------------------------------------------------


async def test_a_job_that_succeeds_gives_its_result(
    pg_store: PostgresEventStore, database_url: str, jobs: JobServer
) -> None:
    wf = job_workflow(jobs)
    state = await run_to_end(pg_store, wf)
    assert state.status == "succeeded", state.tasks["train"].error
    assert state.tasks["train"].output == {"rows": 42}  # the value at the result path
    assert jobs.submissions == 1
    job = jobs.job(1)
    assert job.polls == 2
    assert job.key == f"{state.run_id}/train/1/1"  # run/task/generation/attempt
    events = [r.event for r in await history(pg_store, state.run_id)]
    waiting = [e for e in events if isinstance(e, TaskWaiting)]
    assert len(waiting) == 1
    assert waiting[0].job == {"id": "job-1", "status_url": f"{jobs.url}/jobs/job-1"}
    assert waiting[0].state == "PENDING"
    # recorded before any wait: between its start and its outcome, before the first poll
    kinds = [type(e).__name__ for e in events if getattr(e, "task", None) == "train"]
    assert kinds[-3:] == ["TaskStarted", "TaskWaiting", "TaskSucceeded"]
    logs = [line.message for line in await pg_store.logs.read(state.run_id, "train")]
    assert any("submitted; waiting (PENDING)" in m for m in logs), logs
    assert "state: RUNNING" in logs
    # what operators see of it
    shown = await asyncio.to_thread(
        CliRunner().invoke,
        main,
        ["--database-url", database_url, "history", state.run_id],
        env={"COLUMNS": "200"},
    )
    assert shown.exit_code == 0, shown.output
    (row,) = [line for line in shown.output.splitlines() if "task_waiting" in line]
    assert "train" in row and "waiting on job job-1 (PENDING)" in row
    trace = trace_of(await history(pg_store, state.run_id))
    assert trace is not None
    (span,) = trace.attempts
    assert span.attributes["durable.job.id"] == "job-1"
    assert [e.name for e in span.events] == ["waiting"]
    assert span.events[0].attributes["durable.job.state"] == "PENDING"


async def test_without_a_result_path_the_output_is_the_status_document(
    pg_store: PostgresEventStore, jobs: JobServer
) -> None:
    wf = job_workflow(jobs, json={"polls": 1, "result": [1, 2]}, result=None)
    state = await run_to_end(pg_store, wf)
    assert state.status == "succeeded"
    assert state.tasks["train"].output == {
        "id": "job-1",
        "state": "SUCCEEDED",
        "run": {"phase": "ENDED", "outcome": "SUCCEEDED"},
        "result": [1, 2],
    }


async def test_a_failing_job_fails_the_task_with_its_state_and_last_log_lines(
    pg_store: PostgresEventStore, jobs: JobServer
) -> None:
    log = [f"step {i}" for i in range(1, 31)] + ["OutOfMemoryError: step 31"]
    wf = job_workflow(jobs, json={"polls": 2, "outcome": "FAILED", "log": log})
    state = await run_to_end(pg_store, wf)
    assert state.status == "failed"
    error = state.tasks["train"].error
    assert error is not None
    assert error.type == "JobFailed"
    first, *lines = error.message.splitlines()
    assert first == "job job-1 ended FAILED (last 20 of 31 lines):"
    assert lines == log[-20:]  # the last lines, the cause among them
    assert error.retryable  # the job's own failure: the task's retry policy decides
    stored = [line.message for line in await pg_store.logs.read(state.run_id, "train")]
    assert stored[-31:] == log  # all of it in the task log
    assert jobs.submissions == 1


async def test_a_failed_job_is_retried_as_the_policy_says_with_a_new_job(
    pg_store: PostgresEventStore, jobs: JobServer
) -> None:
    from durable.core.retry import RetryPolicy

    wf = job_workflow(
        jobs,
        json={"polls": 1, "outcome": "FAILED", "log": ["boom"]},
        retry=RetryPolicy(max_attempts=2, initial_delay=0.05),
    )
    state = await run_to_end(pg_store, wf)
    assert state.status == "failed"
    assert state.tasks["train"].error is not None
    assert state.tasks["train"].error.message == "job job-2 ended FAILED: boom"
    assert jobs.submissions == 2  # a new attempt, a new key, a new job
    assert [j.key for j in jobs.jobs.values()] == [
        f"{state.run_id}/train/1/1",
        f"{state.run_id}/train/1/2",
    ]


async def test_a_state_key_that_appears_at_the_end_is_waited_for(
    pg_store: PostgresEventStore, jobs: JobServer
) -> None:
    """Databricks' way: ``state.result_state`` exists only once the run has ended."""
    wf = job_workflow(jobs, state="run.outcome")
    state = await run_to_end(pg_store, wf)
    assert state.status == "succeeded", state.tasks["train"].error
    assert jobs.job(1).polls == 2
    logs = [line.message for line in await pg_store.logs.read(state.run_id, "train")]
    assert "state: (no outcome yet)" in logs


async def test_a_failed_job_with_its_log_as_a_list_of_lines(
    pg_store: PostgresEventStore, jobs: JobServer
) -> None:
    wf = job_workflow(jobs, json={"polls": 1, "outcome": "FAILED", "log": ["a", "b"]})
    state = await run_to_end(pg_store, wf)
    error = state.tasks["train"].error
    assert error is not None and error.message == "job job-1 ended FAILED:\na\nb"


def test_paths_into_json_documents() -> None:
    doc = {"run": {"id": 7, "tasks": [{"state": "OK"}, {"state": "KO"}]}}
    assert lookup(doc, "run.id", "x") == 7
    assert lookup(doc, "run.tasks.1.state", "x") == "KO"
    assert lookup(doc, "run.tasks.-1.state", "x") == "KO"
    assert lookup(doc, "$.run.id", "x") == 7  # as JSONPath people write it
    assert lookup(doc, "$", "x") == doc
    with pytest.raises(PathError) as info:
        lookup(doc, "run.job_id", "the submit response")
    assert info.value.message == (
        "the submit response has no 'run.job_id': no 'job_id' at 'run', "
        "which has the keys: id, tasks"
    )
    with pytest.raises(PathError, match=r"no '2' at 'run\.tasks', which is a list of 2"):
        lookup(doc, "run.tasks.2.state", "x")
    with pytest.raises(PathError, match=r"no 'state' at 'run\.id', which is 7"):
        lookup(doc, "run.id.state", "x")
    assert not info.value.retryable


def test_an_attempt_after_a_lost_unrecorded_submission_reuses_its_key() -> None:
    err = {
        "lost": ErrorInfo(type=EXECUTOR_LOST, message="gone"),
        "unanswered": ErrorInfo(type=UNANSWERED, message="no answer"),
        "failed": ErrorInfo(type="JobFailed", message="FAILED"),
        "timeout": ErrorInfo(type="TaskTimeout", message="timed out"),
    }

    def attempts(*ends: tuple[str, bool]) -> list[Recorded]:
        """One attempt per ``(how it ended, whether it recorded a job)``."""
        events: list[Event] = []
        for n, (end, waited) in enumerate(ends, start=1):
            events.append(TaskStarted(task="t", generation=1, attempt=n))
            if waited:
                events.append(TaskWaiting(task="t", generation=1, attempt=n, job={"id": n}))
            events.append(
                TaskRetryScheduled(task="t", generation=1, attempt=n, error=err[end], retry_at=T0)
            )
        return recorded("r", [created("r", ["t"]), *events])

    assert submission_attempt(attempts(), "t", 1, 1) == 1
    assert submission_attempt(attempts(("failed", True)), "t", 1, 2) == 2  # a new job
    assert submission_attempt(attempts(("lost", False)), "t", 1, 2) == 1
    assert submission_attempt(attempts(("unanswered", False)), "t", 1, 2) == 1
    assert submission_attempt(attempts(("timeout", False)), "t", 1, 2) == 1  # submitting
    assert submission_attempt(attempts(("timeout", True)), "t", 1, 2) == 2  # polling
    # a chain of them goes back to its first
    assert submission_attempt(attempts(("lost", False), ("lost", False)), "t", 1, 3) == 1
    assert submission_attempt(attempts(("failed", False), ("lost", False)), "t", 1, 3) == 2
    # a lost attempt that had recorded its job was polled again, never lost: its own key
    assert submission_attempt(attempts(("lost", True)), "t", 1, 2) == 2
    # another generation is another story
    assert submission_attempt(attempts(("lost", False)), "t", 2, 2) == 2


async def test_passing_trouble_on_a_poll_is_polled_through(
    pg_store: PostgresEventStore, jobs: JobServer
) -> None:
    jobs.fail_next_polls = 3  # 503 thrice, then answers
    state = await run_to_end(pg_store, job_workflow(jobs))
    assert state.status == "succeeded"
    logs = [line.message for line in await pg_store.logs.read(state.run_id, "train")]
    assert sum("answered 503" in m for m in logs) == 3, logs


async def test_a_status_url_that_finds_no_job_fails_the_task(
    pg_store: PostgresEventStore, jobs: JobServer
) -> None:
    wf = job_workflow(jobs, status_url=f"{jobs.url}/jobs/nosuch-${{job.id}}", retries=3)
    state = await run_to_end(pg_store, wf)
    assert state.status == "failed"
    error = state.tasks["train"].error
    assert error is not None and error.type == "JobNotFound" and not error.retryable
    assert f"GET {jobs.url}/jobs/nosuch-job-1 answered 404" in error.message
    assert jobs.submissions == 1  # not retried: each retry would start a job nobody sees


async def test_a_path_missing_from_the_submit_response_names_it(
    pg_store: PostgresEventStore, jobs: JobServer
) -> None:
    state = await run_to_end(pg_store, job_workflow(jobs, job_id="job.run_id"))
    error = state.tasks["train"].error
    assert error is not None and error.type == "JobPathError" and not error.retryable
    assert error.message == (
        f"the submit response of {jobs.url}/jobs has no 'job.run_id': no 'run_id' at "
        "'job', which has the keys: id"
    )


async def test_cancelling_the_run_cancels_the_job(
    pg_store: PostgresEventStore, jobs: JobServer
) -> None:
    wf = job_workflow(jobs, json={})  # runs until told
    async with running_executor(pg_store, registry_of(wf)):
        run_id, _ = await create_run(pg_store, wf.spec(), {})
        await eventually(lambda: _polled(jobs, "job-1"), "the job was polled")
        await apply_command(pg_store, run_id, Cancel(reason="not needed", by="test"))
        state = await wait_for_run(pg_store, run_id)
        await eventually(lambda: _cancels(jobs, "job-1"), "the job server saw the cancel")
    assert state.status == "cancelled"
    assert jobs.job(1).state == "CANCELLED"
    assert ("POST", "/jobs/job-1/cancel") in jobs.requests


async def test_a_timeout_from_the_recorded_start_cancels_the_job(
    pg_store: PostgresEventStore, jobs: JobServer
) -> None:
    wf = job_workflow(jobs, json={}, timeout=1.0)  # runs until told: never, here
    state = await run_to_end(pg_store, wf)
    assert state.status == "failed"
    error = state.tasks["train"].error
    assert error is not None and error.type == "TaskTimeout"
    assert error.message == "timed out after 1 s (from its recorded start)"
    assert jobs.job(1).cancels == 1
    assert jobs.job(1).state == "CANCELLED"
    events = [r for r in await history(pg_store, state.run_id)]
    started = next(r for r in events if isinstance(r.event, TaskStarted))
    ended = events[-2]  # task_failed, then run_failed
    assert (ended.recorded_at - started.recorded_at).total_seconds() >= 1.0


async def test_waiting_jobs_hold_no_slot(pg_store: PostgresEventStore, jobs: JobServer) -> None:
    """With one task slot, three jobs wait at once and a Python task still runs."""
    wf = Workflow("many")
    for i in range(3):
        wf.job(
            f"job{i}",
            submit_url=f"{jobs.url}/jobs",
            json={},  # until told
            job_id="job.id",
            status_url=f"{jobs.url}/jobs/${{job.id}}",
            state="state",
            succeeded=["SUCCEEDED"],
            failed=["FAILED"],
            **FAST,
        )
    ran = asyncio.Event()

    @wf.task
    async def meanwhile(ctx: TaskContext) -> str:
        ran.set()
        return "ran"

    async with running_executor(pg_store, registry_of(wf), max_tasks=1) as executor:
        run_id, _ = await create_run(pg_store, wf.spec(), {})
        for n in (1, 2, 3):
            await eventually(lambda n=n: _polled(jobs, f"job-{n}"), f"job-{n} is polled")
        await asyncio.wait_for(ran.wait(), 30)
        assert executor.slots.free == 1  # all three waiting, none holding the slot
        for n in (1, 2, 3):
            jobs.finish(f"job-{n}")
        state = await wait_for_run(pg_store, run_id)
    assert state.status == "succeeded"
    assert jobs.submissions == 3
    assert state.tasks["meanwhile"].output == "ran"


async def _polled(jobs: JobServer, job_id: str) -> bool:
    return jobs.polls_of(job_id) >= 1


async def _cancels(jobs: JobServer, job_id: str) -> bool:
    return job_id in jobs.jobs and jobs.jobs[job_id].cancels >= 1


# -- real executor processes, killed ------------------------------------------------------

REMOTE = """
from durable import Workflow

api = "JOB_API"
wf = Workflow("remote")
wf.job(
    "train",
    submit_url=api + "/jobs",
    json={"model": "m1"},       # runs until the test finishes it
    job_id="job.id",
    status_url=api + "/jobs/${job.id}",
    state="state",
    succeeded=["SUCCEEDED"],
    failed=["FAILED", "CANCELLED"],
    result="result",
    cancel_url=api + "/jobs/${job.id}/cancel",
    poll_interval=0.1,
    max_poll_interval=0.2,
    retries=2,
)

@wf.task(after=["train"])
def report(train):
    return {"trained": train}
"""


@pytest.fixture
def remote(tmp_path: Path, jobs: JobServer) -> Path:
    path = tmp_path / "remote.py"
    path.write_text(REMOTE.replace("JOB_API", jobs.url))
    return path


def executor_process(database_url: str, workflows: Path, log: Path) -> subprocess.Popen[bytes]:
    """`durable up` without HTTP: an executor (and scheduler) process, its lease 2 s."""
    with log.open("ab") as err:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "durable",
                "--database-url",
                database_url,
                "up",
                "--no-http",
                "--workflows",
                str(workflows),
                "--lease",
                "2",
                "--max-tasks",
                "4",
            ],
            stdout=subprocess.DEVNULL,
            stderr=err,
        )


def kill(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(10)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.mark.slow
async def test_sigkill_while_polling_reattaches_to_the_same_job(
    pg_store: PostgresEventStore, database_url: str, jobs: JobServer, remote: Path, tmp_path: Path
) -> None:
    spec = load_workflows(remote).get("remote").spec
    run_id, _ = await create_run(pg_store, spec, {})
    log = tmp_path / "executors.log"
    first = executor_process(database_url, remote, log)
    try:
        await eventually(lambda: _polls_at_least(jobs, "job-1", 3), "the first executor polls")
        kill(first)
    finally:
        stop(first)
    state = await state_of(pg_store, run_id)
    train = state.tasks["train"]
    assert train.status == "running" and train.job is not None  # killed while waiting
    assert train.job["id"] == "job-1"
    assert jobs.job(1).state == "RUNNING"  # the job went on without anyone watching
    polls_before = jobs.job(1).polls

    second = executor_process(database_url, remote, log)
    try:
        # a positive sign of the reattachment: the same job is polled again
        await eventually(
            lambda: _polls_at_least(jobs, "job-1", polls_before + 2),
            "the second executor polls job-1",
            timeout=60,
        )
        jobs.finish("job-1")
        finished = await wait_for_run(pg_store, run_id, timeout=60)
    finally:
        stop(second)
    assert finished.status == "succeeded", (finished.tasks["train"].error, log.read_text())
    assert jobs.submissions == 1  # exactly one job was ever started
    assert finished.tasks["train"].executions == 1  # no second attempt either
    assert finished.tasks["report"].output == {"trained": None}
    events = [r.event for r in await history(pg_store, run_id)]
    assert sum(isinstance(e, TaskWaiting) for e in events) == 1
    assert sum(isinstance(e, TaskSucceeded) and e.task == "train" for e in events) == 1
    lines = [line.message for line in await pg_store.logs.read(run_id, "train")]
    assert any(m.startswith("submitted; waiting") for m in lines), lines
    assert any(m.startswith("resumed waiting on") for m in lines), lines  # its lines kept
    assert lines.count("job job-1 SUCCEEDED") == 1


@pytest.mark.slow
async def test_sigkill_before_the_submission_is_recorded_finds_the_job_by_its_key(
    pg_store: PostgresEventStore, database_url: str, jobs: JobServer, remote: Path, tmp_path: Path
) -> None:
    """Killed after the server started the job, before the executor heard of it (so before
    ``task_waiting``): the next attempt sends the lost attempt's key and gets that job."""
    spec = load_workflows(remote).get("remote").spec
    run_id, _ = await create_run(pg_store, spec, {})
    log = tmp_path / "executors.log"
    jobs.hold_answers = asyncio.Event()
    first = executor_process(database_url, remote, log)
    try:
        await eventually(lambda: _held(jobs), "the job was started, its answer held")
        kill(first)
    finally:
        stop(first)
    jobs.hold_answers.set()
    jobs.hold_answers = None
    state = await state_of(pg_store, run_id)
    assert state.tasks["train"].status == "running" and state.tasks["train"].job is None
    assert jobs.submissions == 1

    second = executor_process(database_url, remote, log)
    try:
        await eventually(lambda: _polled(jobs, "job-1"), "job-1 is polled", timeout=60)
        jobs.finish("job-1")
        finished = await wait_for_run(pg_store, run_id, timeout=60)
    finally:
        stop(second)
    assert finished.status == "succeeded", (finished.tasks["train"].error, log.read_text())
    assert jobs.submissions == 1  # the second attempt's submission found the first job
    assert finished.tasks["train"].attempt == 2
    assert [r for r in jobs.requests if r == ("POST", "/jobs")] == [("POST", "/jobs")] * 2
    events = [r.event for r in await history(pg_store, run_id)]
    (waiting,) = [e for e in events if isinstance(e, TaskWaiting)]
    assert waiting.attempt == 2 and waiting.job["id"] == "job-1"


async def _polls_at_least(jobs: JobServer, job_id: str, n: int) -> bool:
    return jobs.polls_of(job_id) >= n


async def _held(jobs: JobServer) -> bool:
    return jobs.held >= 1


# -- bad input ------------------------------------------------------------------------------

GOOD_JOB = {
    "submit_url": "https://jobs.example/v1/jobs",
    "job_id": "id",
    "status_url": "https://jobs.example/v1/jobs/${job.id}",
    "state": "state",
    "succeeded": "[SUCCEEDED]",
    "failed": "[FAILED]",
}


def job_yaml(**changes: str | None) -> str:
    fields = {**GOOD_JOB, **changes}
    body = "".join(f"      {k}: {v}\n" for k, v in fields.items() if v is not None)
    return f"workflow: w\ntasks:\n  train:\n    job:\n{body}"


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"submit_url": None}, "job 'train' needs 'submit_url'"),
        ({"job_id": None}, "job 'train' needs 'job_id'"),
        ({"status_url": None}, "job 'train' needs 'status_url'"),
        ({"state": None}, "job 'train' needs 'state'"),
        (
            {"succeeded": None},
            "job 'train' needs 'succeeded': a list of the job's terminal states "
            "(e.g. succeeded: [SUCCEEDED], failed: [FAILED, CANCELLED])",
        ),
        ({"failed": "FAILED"}, "job 'train' needs 'failed': a list of the job's terminal states"),
        ({"status": "state"}, "task 'train': unknown option 'status' for a job task (options:"),
        ({"poll_interval": "0"}, "task 'train': poll_interval must be > 0, not 0"),
    ],
)
def test_a_bad_job_definition_is_one_line_naming_file_task_and_field(
    tmp_path: Path, changes: dict[str, str | None], problem: str
) -> None:
    path = tmp_path / "w.yaml"
    path.write_text(job_yaml(**changes))
    result = durable("show", "w", "--workflows", str(path), home=tmp_path / ".durable")
    assert result.returncode != 0
    assert result.stderr.startswith(f"error: {path}:4: {problem}"), result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_a_good_job_definition_shows(tmp_path: Path) -> None:
    path = tmp_path / "w.yaml"
    path.write_text(job_yaml())
    result = durable("show", "w", "--workflows", str(path), home=tmp_path / ".durable")
    assert result.returncode == 0, result.stderr
    assert "status_url: https://jobs.example/v1/jobs/${job.id}" in result.stdout


async def test_a_template_naming_nothing_fails_before_any_job_starts(
    pg_store: PostgresEventStore, jobs: JobServer
) -> None:
    wf = job_workflow(jobs, status_url=f"{jobs.url}/jobs/${{job.ident}}", retries=2)
    state = await run_to_end(pg_store, wf)
    error = state.tasks["train"].error
    assert error is not None and error.type == "TemplateError" and not error.retryable
    assert error.message.startswith("template ${job.ident} names nothing")
    assert jobs.submissions == 0 and jobs.requests == []


def test_python_and_yaml_declare_the_same_job(tmp_path: Path) -> None:
    wf = Workflow("same")
    wf.job(
        "train",
        submit_url="https://jobs.example/v1/jobs",
        json={"date": "${params.date}"},
        job_id="id",
        status_url="https://jobs.example/v1/jobs/${job.id}",
        state="state",
        succeeded=["SUCCEEDED"],
        failed=["FAILED"],
        cancel_url="https://jobs.example/v1/jobs/${job.id}/cancel",
        poll_interval=10,
        timeout=600,
        retries=1,
    )
    path = tmp_path / "same.yaml"
    path.write_text(
        "workflow: same\n"
        "tasks:\n"
        "  train:\n"
        "    job:\n"
        "      submit_url: https://jobs.example/v1/jobs\n"
        "      json: {date: '${params.date}'}\n"
        "      job_id: id\n"
        "      status_url: https://jobs.example/v1/jobs/${job.id}\n"
        "      state: state\n"
        "      succeeded: [SUCCEEDED]\n"
        "      failed: [FAILED]\n"
        "      cancel_url: https://jobs.example/v1/jobs/${job.id}/cancel\n"
        "    poll_interval: 10\n"  # an option beside the type key, like other kinds'
        "    timeout: 600\n"
        "    retries: 1\n"
    )
    from_yaml = load_workflows(path).get("same").spec
    assert from_yaml.to_dict()["tasks"] == wf.spec().to_dict()["tasks"]


def test_the_examples_load() -> None:
    examples = Path(__file__).resolve().parent.parent / "examples"
    livy = load_workflows(examples / "external_job.yaml").get("nightly_aggregate").spec
    ray = load_workflows(examples / "external_job.py").get("train_model").spec
    for spec, task in ((livy, "aggregate"), (ray, "train")):
        job = spec.task(task)
        assert isinstance(job, JobTask) and "${job.id}" in job.status_url
        assert job.timeout is not None and job.retry.max_attempts == 2


def test_a_bad_python_job_names_the_workflow_task_and_field() -> None:
    wf = Workflow("py")
    wf.job(
        "train",
        submit_url="https://jobs.example/v1/jobs",
        job_id="id",
        status_url="",
        state="state",
        succeeded=["SUCCEEDED"],
        failed=["FAILED"],
    )
    with pytest.raises(DefinitionError) as info:
        wf.spec()
    assert str(info.value) == "workflow 'py': job 'train' needs 'status_url'"

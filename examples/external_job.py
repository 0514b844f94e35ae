"""A training job on a Ray cluster through its Jobs REST API, then a Python task that
reads its result.

    durable run train_model --workflows examples --param model=churn

The job is submitted once with an ``Idempotency-Key``; its id (``job_id`` in Ray's
answer) is recorded in the run's log before any wait; it is then polled at
``status_url`` — backing off from 15 s to 2 min, holding no task slot — until its
``status`` is terminal. A restarted executor polls the same job; cancelling the run, or
its 6 h timeout, stops it.
"""

from __future__ import annotations

from typing import Any

from durable import Param, TaskContext, Workflow

RAY = "http://ray-head.internal:8265"

wf = Workflow(
    "train_model",
    params={"model": Param("str", required=True, description="the model to train")},
    description="Train a model on the Ray cluster and report its metrics.",
)

train = wf.job(
    "train",
    submit_url=f"{RAY}/api/jobs/",
    json={
        "entrypoint": "python train.py --model ${params.model} --run ${run_id}",
        "runtime_env": {"working_dir": "s3://ml-jobs/train.zip"},
        "metadata": {"durable_run": "${run_id}"},
    },
    job_id="job_id",
    status_url=f"{RAY}/api/jobs/${{job.id}}",
    state="status",
    succeeded=["SUCCEEDED"],
    failed=["FAILED", "STOPPED"],
    message="message",
    cancel_url=f"{RAY}/api/jobs/${{job.id}}/stop",
    poll_interval=15,
    max_poll_interval=120,
    timeout=6 * 3600,
    retries=1,
)


@wf.task(after=[train])
def report(ctx: TaskContext, train: dict[str, Any]) -> dict[str, Any]:
    """Without ``result``, the job's output is its whole last status document."""
    ctx.log.info(f"job {train['job_id']} ended {train['status']}: {train.get('message')}")
    return {"model": ctx.params["model"], "job": train["job_id"]}

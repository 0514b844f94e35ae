"""YAML is the same model as Python: every workflow option has a YAML spelling, and a
workflow using all of them prints as YAML that loads back to the same definition."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from durable import (
    Email,
    KafkaTrigger,
    PagerDuty,
    Param,
    S3Trigger,
    Schedule,
    Sla,
    Webhook,
    WebhookTrigger,
    Workflow,
)
from durable.workflows.yaml import _TOP, load_yaml_spec, spec_to_yaml


def test_every_python_workflow_option_has_a_yaml_key() -> None:
    options = set(inspect.signature(Workflow.__init__).parameters) - {"self", "name"}
    missing = sorted(options - _TOP)
    assert not missing, f"Workflow options with no YAML spelling: {missing}"


def test_a_workflow_with_every_option_roundtrips_through_yaml(tmp_path: Path) -> None:
    wf = Workflow(
        "everything",
        params={"date": Param("date", required=True), "n": Param("int", default=2)},
        max_active_runs=3,
        max_duration=600.0,
        schedule=Schedule(cron="0 2 * * *", timezone="Europe/Paris", catchup="latest"),
        kafka=[KafkaTrigger(topic="orders", params={"n": "value.n"}, filter={"value.k": "x"})],
        s3=[S3Trigger(bucket="landing", prefix="sales/", suffix=".csv")],
        webhook=WebhookTrigger(secret_env="HOOK_SECRET"),
        on_assets=["warehouse.sales_daily"],
        description="all the options",
        notify=[
            Email("smtp://mail.example.com?to=data@example.com", on=["run_failed", "sla_missed"]),
            Webhook("https://hooks.example.com/d", secret_env="HOOK_SECRET", subject="${run_id}"),
            PagerDuty("${PD_KEY}", dedup="workflow", severity="critical"),
        ],
        sla=Sla(finish_by="06:00", timezone="Europe/Paris", max_duration=3600),
    )
    wf.shell("load", "echo ${params.date}", produces=["warehouse.other"])
    spec = wf.spec()
    path = tmp_path / "everything.yaml"
    path.write_text(spec_to_yaml(spec))
    again = load_yaml_spec(path)
    assert (again.s3, again.webhook, again.on_assets, again.kafka, again.schedule) == (
        spec.s3,
        spec.webhook,
        spec.on_assets,
        spec.kafka,
        spec.schedule,
    )
    assert (again.notify, again.sla) == (spec.notify, spec.sla)
    assert again.version == spec.version


@pytest.mark.parametrize(
    "example",
    [
        "external_job.yaml",
        "external_job.py",
        "sensors.yaml",
        "sensors.py",
        "spark/spark_sales.yaml",
    ],
)
def test_the_data_platform_examples_roundtrip_through_durable_show(
    tmp_path: Path, example: str
) -> None:
    from durable.workflows import load_workflows

    root = Path(__file__).resolve().parent.parent / "examples"
    for loaded in load_workflows(root / example):
        spec = loaded.spec
        path = tmp_path / f"{spec.name}.yaml"
        path.write_text(spec_to_yaml(spec))
        again = load_yaml_spec(path)
        assert again.version == spec.version, spec_to_yaml(spec)


def test_a_recorded_definition_of_every_kind_decodes() -> None:
    """A version's stored JSON (the API's versions endpoint reads it back) takes every
    task kind."""
    from typing import get_args

    from durable.core.spec import TaskKind
    from durable.core.tasks import TASK_KINDS

    assert set(get_args(TaskKind)) == set(TASK_KINDS)

"""Notification rules: the pure decisions (which events ask for which notifications, with
which ids, in the same commit) and the declarations (Python, YAML, notifications.yaml),
whose mistakes are refused at load time naming the file and the field."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
from click.testing import CliRunner

from durable import Email, PagerDuty, Param, Sla, Slack, Webhook, Workflow
from durable.cli import main
from durable.core.events import (
    ErrorInfo,
    NotificationRequested,
    NotifyRule,
    RerunRequested,
    RunFailed,
    RunSucceeded,
    TaskFailed,
    TaskRetryScheduled,
)
from durable.core.notify import render_message
from durable.core.retry import RetryPolicy
from durable.core.spec import DefinitionError, WorkflowSpec, validate
from durable.core.step import AttemptFailed, AttemptSucceeded, Tick, step
from durable.core.templates import TemplateError
from durable.workflows import load_workflows
from durable.workflows.notify import load_global_notifications
from durable.workflows.yaml import load_yaml_spec, spec_to_yaml
from tests.test_step import T0, created, fold_in, py, slots

BOOM = ErrorInfo(type="WarehouseDown", message="the warehouse is down", retryable=False)
HOOK = "https://hooks.example.com/durable"


def notified(*rules: NotifyRule, retries: int = 0) -> WorkflowSpec:
    return validate(
        WorkflowSpec(
            name="wf",
            tasks=(py("a", retry=RetryPolicy(max_attempts=retries + 1)), py("b", "a")),
            notify=rules,
        )
    )


def failed_attempt(
    spec: WorkflowSpec, *, global_rules: tuple[NotifyRule, ...] = (), error: ErrorInfo = BOOM
) -> tuple[object, list[object]]:
    state = created(spec)
    state = fold_in(state, step(state, spec, [Tick(), slots(4)], T0, notify=global_rules))
    fail = AttemptFailed(task="a", generation=1, attempt=1, error=error)
    return state, step(state, spec, [fail, slots(4)], T0, notify=global_rules)


def test_a_final_failure_and_the_runs_end_each_ask_right_after_in_the_same_step() -> None:
    spec = notified(Webhook(HOOK, on=["retried_out", "run_failed"]))
    state, events = failed_attempt(spec)
    seq = state.last_seq  # type: ignore[attr-defined]
    assert [type(e).__name__ for e in events] == [
        "TaskFailed",
        "NotificationRequested",
        "TaskSkipped",
        "RunFailed",
        "NotificationRequested",
    ]
    out, run = events[1], events[4]
    assert isinstance(out, NotificationRequested) and isinstance(run, NotificationRequested)
    # ids from the log: the seq the cause gets when this step's events are appended
    assert out.notification_id == f"run:r1:{seq + 1}:w0" and out.on == "retried_out"
    assert run.notification_id == f"run:r1:{seq + 4}:w0" and run.on == "run_failed"
    assert (
        out.fields["task"] == "a" and out.fields["error"] == "WarehouseDown: the warehouse is down"
    )
    assert run.fields["reason"] == "task a failed" and run.fields["task"] == "a"
    assert run.fields["summary"] == "wf run r1 failed: task a failed"
    # deciding again decides the same: the ids never depend on a clock or a counter
    assert failed_attempt(spec)[1] == events
    # the state folds them, and nothing about the run changes
    after = fold_in(state, events)  # type: ignore[arg-type]
    assert after.status == "failed" and after.last_seq == seq + 5


def test_no_rule_no_notification_and_a_retry_is_not_a_final_failure() -> None:
    bare = notified()
    _, events = failed_attempt(bare)
    assert not any(isinstance(e, NotificationRequested) for e in events)
    spec = notified(Slack(HOOK, on=["retried_out", "run_failed"]), retries=2)
    _, events = failed_attempt(spec, error=msgspec.structs.replace(BOOM, retryable=True))
    assert [type(e) for e in events] == [TaskRetryScheduled]


def test_global_rules_come_after_the_workflows_own() -> None:
    spec = notified(Webhook(HOOK, on=["run_failed"]))
    _, events = failed_attempt(
        spec, global_rules=(Slack(HOOK), Email("smtp://h?to=a@b", on=["run_succeeded"]))
    )
    asked = [e for e in events if isinstance(e, NotificationRequested)]
    assert [(e.rule, e.channel.channel) for e in asked] == [("w0", "webhook"), ("g0", "slack")]


def test_pagerduty_triggers_per_run_and_a_later_success_resolves_only_what_it_opened() -> None:
    spec = notified(PagerDuty("key"), PagerDuty("key2", dedup="workflow"))
    state, events = failed_attempt(spec)
    asked = [e for e in events if isinstance(e, NotificationRequested)]
    assert [(e.rule, e.action, e.dedup_key) for e in asked] == [
        ("w0", "trigger", "durable:wf:r1"),
        ("w1", "trigger", "durable:wf"),
    ]
    failed = fold_in(state, events)  # type: ignore[arg-type]
    assert failed.incidents == ("w0", "w1")
    rerun = fold_in(failed, [RerunRequested(request_id="again", tasks=("a",), downstream=True)])
    rerun = fold_in(rerun, step(rerun, spec, [Tick(), slots(4)], T0))
    done = step(rerun, spec, [AttemptSucceeded(task="a", generation=2, attempt=1), slots(4)], T0)
    rerun = fold_in(rerun, done)
    done = step(rerun, spec, [AttemptSucceeded(task="b", generation=2, attempt=1), slots(4)], T0)
    assert isinstance(done[1], RunSucceeded)
    resolves = [e for e in done if isinstance(e, NotificationRequested)]
    assert [(e.rule, e.action, e.dedup_key) for e in resolves] == [
        ("w0", "resolve", "durable:wf:r1"),
        ("w1", "resolve", "durable:wf"),
    ]
    assert fold_in(rerun, done).incidents == ()
    # a run that never opened an incident resolves nothing of its own; a per-workflow
    # rule resolves on every success (PagerDuty ignores a key with nothing open)
    fresh = created(spec)
    fresh = fold_in(fresh, step(fresh, spec, [Tick(), slots(4)], T0))
    fresh = fold_in(
        fresh,
        step(fresh, spec, [AttemptSucceeded(task="a", generation=1, attempt=1), slots(4)], T0),
    )
    ok = step(fresh, spec, [AttemptSucceeded(task="b", generation=1, attempt=1), slots(4)], T0)
    assert [(e.rule, e.action) for e in ok if isinstance(e, NotificationRequested)] == [
        ("w1", "resolve")
    ]


def test_messages_render_the_runs_fields() -> None:
    spec = notified(
        Webhook(
            HOOK, on=["run_failed"], subject="${workflow}/${task}: ${error}", body="see ${run_url}"
        )
    )
    _, events = failed_attempt(spec)
    request = next(e for e in events if isinstance(e, NotificationRequested))
    subject, body = render_message(request, "http://d/ui/runs/r1")
    assert subject == "wf/a: WarehouseDown: the warehouse is down"
    assert body == "see http://d/ui/runs/r1"
    default = msgspec.structs.replace(request, channel=Webhook(HOOK))
    subject, body = render_message(default, "")
    assert subject == "[durable] wf run r1 failed: task a failed"
    assert "error: WarehouseDown: the warehouse is down" in body and "http" not in body
    # a global rule may name a param the run does not have: refused at delivery
    missing = msgspec.structs.replace(request, channel=Webhook(HOOK, subject="${params.day}"))
    with pytest.raises(TemplateError, match=r"template \$\{params.day\} names nothing"):
        render_message(missing, "")
    assert isinstance(events[0], TaskFailed) and isinstance(events[2], RunFailed)


# -- declarations ---------------------------------------------------------------------------


def _refused(**kw: object) -> str:
    wf = Workflow("w", **kw)  # type: ignore[arg-type]
    wf.shell("a", "true")
    with pytest.raises(DefinitionError) as info:
        wf.spec()
    return str(info.value)


def test_bad_python_declarations_are_refused_naming_the_field() -> None:
    sms = NotifyRule(channel="sms", target="+33600000000")  # type: ignore[arg-type]
    assert (
        "notify[0]: unknown channel type 'sms' (channels: email, slack, webhook, pagerduty)"
        in _refused(notify=[sms])
    )
    assert "notify[0].email: the SMTP URL 'smtp://:25?to=a@example.com' has no host" in _refused(
        notify=[Email("smtp://:25?to=a@example.com")]
    )
    assert "says no recipient (?to=…)" in _refused(notify=[Email("smtp://mail.example.com")])
    assert "notify[1].on: unknown event 'run_exploded'" in _refused(
        notify=[Slack(HOOK), Slack(HOOK, on=["run_exploded"])]  # type: ignore[list-item]
    )
    assert (
        "notify[0].subject: template ${nope} names no field (fields: workflow, version"
        in _refused(notify=[Slack(HOOK, subject="${nope}")])
    )
    assert (
        "notify[0].body: template ${params.day} names no field (declared params: date)"
        in _refused(notify=[Slack(HOOK, body="${params.day}")], params={"date": Param("date")})
    )
    assert "notify[0].webhook: 'ftp://x' is not an http(s):// URL with a host" in _refused(
        notify=[Webhook("ftp://x")]
    )
    assert "sla.timezone: unknown time zone 'Mars/Olympus'" in _refused(
        sla=Sla(finish_by="06:00", timezone="Mars/Olympus")
    )
    assert "sla.finish_by: '25:00' is not a time of day (HH:MM, e.g. 06:00)" in _refused(
        sla=Sla(finish_by="25:00")
    )
    assert "sla: sets none of finish_by, max_duration, max_staleness" in _refused(sla=Sla())
    # an address read from the environment is checked at delivery, the rest now
    assert Workflow("ok", notify=[Email("${SMTP_URL}"), Slack("${SLACK_URL}")]).shell("a", "true")


@pytest.mark.parametrize(
    ("notify", "message"),
    [
        ("notify:\n  - sms: '+33600000000'\n", "w.yaml:3: notify[0]: unknown channel type 'sms'"),
        (
            "notify:\n  - email: smtp://:25?to=a@example.com\n",
            "w.yaml:3: notify[0].email: the SMTP URL 'smtp://:25?to=a@example.com' has no host",
        ),
        (
            "notify:\n  - slack: https://hooks.slack.com/x\n    subject: '${nope}'\n",
            "w.yaml:3: notify[0].subject: template ${nope} names no field",
        ),
        (
            "notify:\n  - slack: https://hooks.slack.com/x\n    on: [run_exploded]\n",
            "w.yaml:3: notify[0].on: unknown event 'run_exploded'",
        ),
        (
            "sla: {finish_by: '06:00', timezone: Mars/Olympus}\n",
            "w.yaml: sla.timezone: unknown time zone 'Mars/Olympus'",
        ),
        (
            "sla: {finish_by: '06:00', max_duraton: 60}\n",
            "w.yaml:2: sla: Object contains unknown field `max_duraton`",
        ),
    ],
)
def test_bad_yaml_declarations_name_the_file_line_and_field(
    tmp_path: Path, notify: str, message: str
) -> None:
    path = tmp_path / "w.yaml"
    path.write_text(f"workflow: w\n{notify}tasks:\n  a:\n    shell: echo\n")
    with pytest.raises(DefinitionError) as info:
        load_workflows(path)
    assert message in str(info.value)


def test_yaml_says_the_same_as_python_and_prints_back(tmp_path: Path) -> None:
    (tmp_path / "w.yaml").write_text(
        "workflow: w\n"
        "notify:\n"
        "  - email: smtp://bot:${SMTP_PASSWORD}@mail.example.com:587?from=b@example.com&to=d@example.com\n"
        "    on: [run_failed, sla_missed]\n"
        "  - slack: ${SLACK_URL}\n"
        "  - webhook: https://hooks.example.com/durable\n"
        "    secret_env: HOOK_SECRET\n"
        "    on: run_succeeded\n"
        "  - pagerduty: ${PD_KEY}\n"
        "    dedup: workflow\n"
        "sla:\n"
        "  finish_by: '06:00'\n"
        "  timezone: Europe/Paris\n"
        "  max_staleness: {warehouse.sales: 93600}\n"
        "tasks:\n  a:\n    shell: echo\n"
    )
    from_yaml = load_yaml_spec(tmp_path / "w.yaml")
    wf = Workflow(
        "w",
        notify=[
            Email(
                "smtp://bot:${SMTP_PASSWORD}@mail.example.com:587?from=b@example.com&to=d@example.com",
                on=["run_failed", "sla_missed"],
            ),
            Slack("${SLACK_URL}"),
            Webhook(HOOK, secret_env="HOOK_SECRET", on="run_succeeded"),
            PagerDuty("${PD_KEY}", dedup="workflow"),
        ],
        sla=Sla(
            finish_by="06:00", timezone="Europe/Paris", max_staleness={"warehouse.sales": 93600}
        ),
    )
    wf.shell("a", "echo")
    assert wf.spec().version == from_yaml.version
    (tmp_path / "again.yaml").write_text(spec_to_yaml(from_yaml))
    assert load_yaml_spec(tmp_path / "again.yaml").version == from_yaml.version
    # a workflow without rules keeps the version it always had
    plain = Workflow("w")
    plain.shell("a", "echo")
    assert "notify" not in plain.spec().to_dict() and plain.spec().version != wf.spec().version


def test_the_global_file_is_checked_before_durable_up_starts(tmp_path: Path) -> None:
    (tmp_path / "notifications.yaml").write_text(
        "base_url: https://durable.example.com\nnotify:\n  - slack: ${SLACK_URL}\n    on: [run_failed, backfill_finished]\n"
    )
    found = load_global_notifications(tmp_path / "notifications.yaml")
    assert found.base_url == "https://durable.example.com"
    assert [(r.channel, r.on) for r in found.notify] == [
        ("slack", ("run_failed", "backfill_finished"))
    ]
    bad = tmp_path / "bad.yaml"
    bad.write_text("notify:\n  - email: smtp://?to=a@b\n")
    with pytest.raises(
        DefinitionError, match=r"bad.yaml: notify\[0\].email: the SMTP URL .* has no host"
    ):
        load_global_notifications(bad)
    bad.write_text("notify:\n  - slack: https://x.example.com\nchannels: []\n")
    with pytest.raises(DefinitionError, match=r"bad.yaml: unknown key 'channels'"):
        load_global_notifications(bad)
    bad.write_text("notify:\n  - slack: https://x.example.com\n    body: '${params.day}'\n")
    assert load_global_notifications(bad).notify  # a global rule may name any param
    bad.write_text("notify:\n  - pager: abc\n")
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "w.yaml").write_text("workflow: w\ntasks:\n  a:\n    shell: echo\n")
    result = CliRunner().invoke(
        main,
        ["up", "--no-http", "--workflows", str(tmp_path / "flows"), "--notifications", str(bad)],
    )
    assert result.exit_code == 2
    assert f"error: {bad}: notify[0]: unknown channel type 'pager'" in result.output

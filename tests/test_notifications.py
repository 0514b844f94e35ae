"""Notifications end to end, on the real PostgreSQL, with real receivers on loopback: an
SMTP sink (aiosmtpd), and HTTP servers standing in for Slack, a webhook receiver and
PagerDuty's Events API. An executor runs the workflows; the notifier delivers what the
log asks for and records the outcome in the same stream."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from click.testing import CliRunner

from durable import Email, PagerDuty, Slack, TaskError, Webhook, Workflow
from durable.application.commands import apply_command
from durable.application.runs import create_run
from durable.cli import main
from durable.core.commands import Rerun
from durable.core.events import (
    NotificationFailed,
    NotificationRequested,
    NotificationSent,
    Recorded,
    RunFailed,
    RunSucceeded,
    run_stream,
)
from durable.runtime.notifier import Notifier
from durable.runtime.senders import Senders
from durable.store import EventStore, PostgresEventStore
from durable.workflows import WorkflowRegistry
from tests.executing import registry_of, running_executor, wait_for_run
from tests.processes import free_port
from tests.receivers import HttpReceiver, SmtpSink
from tests.signs import eventually
from tests.ui_api import serving

BASE = "http://durable.test:8080"


def broken(ctx: Any) -> None:
    raise TaskError("the warehouse is down", retryable=False, type="WarehouseDown")


def fine(ctx: Any) -> str:
    return "ok"


FLAKY = {"fail": True}


def flaky(ctx: Any) -> str:
    if FLAKY["fail"]:
        raise TaskError("not yet", retryable=False)
    return "ok"


@asynccontextmanager
async def notifying(
    store: EventStore, registry: WorkflowRegistry, **kw: Any
) -> AsyncIterator[Notifier]:
    kw.setdefault("base_url", BASE)
    kw.setdefault("poll_interval", 0.1)
    kw.setdefault("check_interval", 0.2)
    kw.setdefault("first_delay", 0.05)
    kw.setdefault("max_attempts", 3)
    notifier = Notifier(store, registry, **kw)
    stop = asyncio.Event()
    task = asyncio.create_task(notifier.run(stop))
    try:
        yield notifier
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def outcomes(store: EventStore, run_id: str, count: int = 1) -> list[Recorded]:
    """Wait until ``count`` notifications of the run are settled; their outcomes."""

    async def settled() -> list[Recorded]:
        return [
            r
            for r in await store.read_stream(run_stream(run_id))
            if isinstance(r.event, NotificationSent | NotificationFailed)
        ]

    async def enough() -> bool:
        return len(await settled()) >= count

    await eventually(enough, f"{count} notification(s) of run {run_id} settled", timeout=30)
    return await settled()


async def cli(database_url: str, *args: str) -> Any:
    """``durable ARGS`` (its own event loop, in a thread: the test's loop runs here)."""
    return await asyncio.to_thread(
        CliRunner().invoke, main, ["--database-url", database_url, *args]
    )


def requested(records: list[Recorded]) -> list[NotificationRequested]:
    return [r.event for r in records if isinstance(r.event, NotificationRequested)]


async def test_a_failed_run_is_mailed_through_smtp(
    pg_store: PostgresEventStore, database_url: str
) -> None:
    sink = await SmtpSink(user="bot", password="s3cret").start()
    url = (
        f"smtp://bot:${{SMTP_PASSWORD}}@127.0.0.1:{sink.port}"
        "?from=durable@example.com&to=data@example.com,oncall@example.com"
    )
    wf = Workflow("mailed", notify=[Email(url, on=["run_failed"])])
    wf.task(fine, name="extract")
    wf.task(broken, name="load", after=["extract"], retries=0)
    registry = registry_of(wf)
    senders = Senders(env={"SMTP_PASSWORD": "s3cret"})
    try:
        async with (
            running_executor(pg_store, registry),
            notifying(pg_store, registry, senders=senders),
        ):
            run_id, _ = await create_run(pg_store, wf.spec(), {})
            state = await wait_for_run(pg_store, run_id)
            [sent] = await outcomes(pg_store, run_id)
    finally:
        await sink.stop()
    assert state.status == "failed"  # the notification never changes the run
    assert isinstance(sent.event, NotificationSent) and sent.event.attempts == 1
    assert sent.event.detail == "SMTP: Message accepted for delivery"  # the sink's words
    [envelope] = sink.envelopes
    assert envelope.mail_from == "durable@example.com"
    assert envelope.rcpt_tos == ["data@example.com", "oncall@example.com"]
    assert sink.logins == ["bot"]  # the password came from the environment, at delivery
    [mail] = sink.messages
    assert mail["Subject"].strip() == f"[durable] mailed run {run_id} failed: task load failed"
    body = mail.get_content()
    assert "task: load" in body and "error: WarehouseDown: the warehouse is down" in body
    assert f"{BASE}/ui/runs/{run_id}" in body
    records = await pg_store.read_stream(run_stream(run_id))
    [request] = requested(records)
    assert mail["Message-ID"] == f"<{request.notification_id.replace(':', '.')}@durable>"
    # the request committed with the run's failure: next seq, same transaction
    failed = next(r for r in records if isinstance(r.event, RunFailed))
    asked = next(r for r in records if isinstance(r.event, NotificationRequested))
    assert (asked.seq, asked.recorded_at) == (failed.seq + 1, failed.recorded_at)
    assert request.notification_id == f"run:{run_id}:{failed.seq}:w0"
    assert "s3cret" not in str(request)  # the secret stayed in the environment

    listed = await cli(database_url, "notifications", "--run", run_id)
    assert listed.exit_code == 0, listed.output
    assert "run_failed" in listed.output and "email" in listed.output and "sent" in listed.output


async def test_slack_gets_a_block_kit_message_with_the_task_its_error_and_a_link(
    pg_store: PostgresEventStore,
) -> None:
    slack = await HttpReceiver().start()
    wf = Workflow("slacked", notify=[Slack(f"{slack.url}/services/T0/B0/x", on=["retried_out"])])
    wf.task(broken, name="load", retries=0)
    registry = registry_of(wf)
    try:
        async with running_executor(pg_store, registry), notifying(pg_store, registry):
            run_id, _ = await create_run(pg_store, wf.spec(), {})
            await wait_for_run(pg_store, run_id)
            await outcomes(pg_store, run_id)
    finally:
        await slack.stop()
    [got] = slack.received
    assert got.path == "/services/T0/B0/x"
    assert got.headers["Content-Type"] == "application/json"
    message = got.json
    run_url = f"{BASE}/ui/runs/{run_id}"
    assert message["text"] == f"[durable] slacked: task load of run {run_id} failed for good"
    blocks = message["blocks"]
    assert blocks[0] == {"type": "header", "text": {"type": "plain_text", "text": message["text"]}}
    facts = [f["text"] for f in blocks[1]["fields"]]
    assert "*Workflow*\nslacked" in facts and "*Task*\nload" in facts
    assert f"*Run*\n<{run_url}|{run_id}>" in facts
    error = next(b for b in blocks if "Error" in b.get("text", {}).get("text", ""))
    assert "WarehouseDown: the warehouse is down" in error["text"]["text"]
    [button] = next(b for b in blocks if b["type"] == "actions")["elements"]
    assert button["url"] == run_url


async def test_a_webhook_is_signed_and_carries_the_notification_id_as_idempotency_key(
    pg_store: PostgresEventStore,
) -> None:
    hook = await HttpReceiver().start()
    wf = Workflow(
        "hooked",
        notify=[
            Webhook(
                "http://127.0.0.1:${HOOK_PORT}/durable",
                on=["run_succeeded"],
                secret_env="HOOK_SECRET",
                subject="${workflow} done for ${params.day}",
            )
        ],
        params={"day": __import__("durable").Param("date", required=True)},
    )
    wf.task(fine, name="only")
    registry = registry_of(wf)
    senders = Senders(env={"HOOK_SECRET": "k3y", "HOOK_PORT": str(hook.port)})
    try:
        async with (
            running_executor(pg_store, registry),
            notifying(pg_store, registry, senders=senders),
        ):
            run_id, _ = await create_run(pg_store, wf.spec(), {"day": "2026-11-21"})
            await outcomes(pg_store, run_id)
    finally:
        await hook.stop()
    [got] = hook.received
    expected = "sha256=" + hmac.new(b"k3y", got.body, hashlib.sha256).hexdigest()
    assert got.headers["X-Durable-Signature"] == expected
    [request] = requested(await pg_store.read_stream(run_stream(run_id)))
    assert got.headers["Idempotency-Key"] == request.notification_id
    assert got.headers["X-Durable-Event"] == "run_succeeded"
    payload = got.json
    assert payload["subject"] == "hooked done for 2026-11-21"
    assert payload["notification_id"] == request.notification_id
    assert payload["fields"]["run_id"] == run_id and payload["fields"]["status"] == "succeeded"
    assert payload["run_url"] == f"{BASE}/ui/runs/{run_id}"


async def test_pagerduty_opens_one_incident_per_run_and_a_later_success_resolves_it(
    pg_store: PostgresEventStore,
) -> None:
    pagerduty = await HttpReceiver(status=202).start()
    wf = Workflow(
        "paged",
        notify=[PagerDuty("${PD_KEY}", url=pagerduty.url, on=["run_failed", "retried_out"])],
    )
    wf.task(flaky, name="load", retries=0)
    registry = registry_of(wf)
    FLAKY["fail"] = True
    try:
        async with (
            running_executor(pg_store, registry),
            notifying(pg_store, registry, senders=Senders(env={"PD_KEY": "R0UT1NG"})),
        ):
            run_id, _ = await create_run(pg_store, wf.spec(), {})
            await wait_for_run(pg_store, run_id)
            await outcomes(pg_store, run_id, 2)  # the task's failure, the run's
            FLAKY["fail"] = False
            await apply_command(pg_store, run_id, Rerun(request_id="again", tasks=("load",)))
            await outcomes(pg_store, run_id, 3)
            state = await wait_for_run(pg_store, run_id, statuses=("succeeded",))
    finally:
        await pagerduty.stop()
    assert state.status == "succeeded" and state.incidents == ()
    events = [r.json for r in pagerduty.received]
    assert [r.path for r in pagerduty.received] == ["/v2/enqueue"] * 3
    assert [e["event_action"] for e in events] == ["trigger", "trigger", "resolve"]
    # one incident: every event of the run has the run's key, so the second trigger
    # updates the incident the first opened, and the resolve closes it
    assert {e["dedup_key"] for e in events} == {f"durable:paged:{run_id}"}
    assert {e["routing_key"] for e in events} == {"R0UT1NG"}
    trigger = events[1]["payload"]
    assert trigger["summary"] == f"[durable] paged run {run_id} failed: task load failed"
    assert trigger["severity"] == "error" and trigger["source"] == "durable/paged"
    assert events[1]["links"] == [
        {"href": f"{BASE}/ui/runs/{run_id}", "text": "The run in durable"}
    ]


async def test_a_receiver_that_is_down_is_retried_and_gets_it_once_it_is_up(
    pg_store: PostgresEventStore,
) -> None:
    port = free_port()  # nobody listens there yet: connections are refused
    wf = Workflow("later", notify=[Webhook(f"http://127.0.0.1:{port}/hook", on=["run_failed"])])
    wf.task(broken, name="load", retries=0)
    registry = registry_of(wf)
    hook = HttpReceiver(port=port)
    try:
        async with (
            running_executor(pg_store, registry),
            notifying(
                pg_store, registry, first_delay=0.2, max_delay=0.4, max_attempts=30
            ) as notifier,
        ):
            run_id, _ = await create_run(pg_store, wf.spec(), {})
            await wait_for_run(pg_store, run_id)

            async def tried_twice() -> bool:
                return any(p.attempts >= 2 for p in notifier.pending.values())

            await eventually(tried_twice, "the notifier tried the receiver twice")
            await hook.start()
            [sent] = await outcomes(pg_store, run_id)
    finally:
        await hook.stop()
    assert isinstance(sent.event, NotificationSent) and sent.event.attempts >= 3
    assert len(hook.received) == 1


async def test_a_receiver_down_for_good_ends_in_notification_failed_with_the_reason(
    pg_store: PostgresEventStore, database_url: str
) -> None:
    refusing = await HttpReceiver(status=400).start()  # a 4xx: trying again cannot help
    wf = Workflow(
        "unheard",
        notify=[
            Webhook(f"http://127.0.0.1:{free_port()}/hook", on=["run_succeeded"]),
            Slack(f"{refusing.url}/hook", on=["run_succeeded"]),
        ],
    )
    wf.task(fine, name="only")
    registry = registry_of(wf)
    try:
        async with serving(pg_store, registry) as ui, notifying(pg_store, registry, max_attempts=3):
            run_id, _ = await create_run(pg_store, wf.spec(), {})
            settled = await outcomes(pg_store, run_id, 2)
            state = await wait_for_run(pg_store, run_id)
            listed = await ui.get(f"/api/v1/notifications?run={run_id}&failed=true")
            everything = await ui.get("/api/v1/notifications?limit=10")
    finally:
        await refusing.stop()
    assert state.status == "succeeded"  # the run is never affected
    failed = {r.event.notification_id: r.event for r in settled}
    records = await pg_store.read_stream(run_stream(run_id))
    done = next(r.seq for r in records if isinstance(r.event, RunSucceeded))
    down = failed[f"run:{run_id}:{done}:w0"]
    bad = failed[f"run:{run_id}:{done}:w1"]
    assert isinstance(down, NotificationFailed) and down.attempts == 3
    assert "Connect" in down.reason or "refused" in down.reason
    assert isinstance(bad, NotificationFailed) and bad.attempts == 1
    assert bad.reason.startswith("HTTP 400")
    assert len(refusing.received) == 1
    assert [n["status"] for n in listed["notifications"]] == ["failed", "failed"]
    assert {n["channel"] for n in listed["notifications"]} == {"webhook", "slack"}
    assert any(n["detail"].startswith("HTTP 400") for n in listed["notifications"])
    assert [n["notification_id"] for n in everything["notifications"]] == [
        n["notification_id"] for n in listed["notifications"]
    ]

    listed = await cli(database_url, "notifications", "--failed")
    assert listed.exit_code == 0, listed.output
    assert listed.output.count("failed") >= 2 and "HTTP 400" in listed.output


async def test_global_rules_come_after_the_workflows_and_only_the_leader_delivers(
    pg_store: PostgresEventStore,
) -> None:
    hook = await HttpReceiver().start()
    wf = Workflow("both", notify=[Webhook(f"{hook.url}/own", on=["run_succeeded"])])
    wf.task(fine, name="only")
    registry = registry_of(wf)
    registry.notify = (Webhook(f"{hook.url}/global", on=["run_succeeded"]),)
    try:
        async with (
            running_executor(pg_store, registry),
            notifying(pg_store, registry) as one,
            notifying(pg_store, registry) as two,
        ):

            async def elected() -> bool:
                return (one.leading.is_set() and two.standby_rounds > 0) or (
                    two.leading.is_set() and one.standby_rounds > 0
                )

            await eventually(elected, "one notifier leads, the other stands by")
            run_id, _ = await create_run(pg_store, wf.spec(), {})
            await outcomes(pg_store, run_id, 2)
    finally:
        await hook.stop()
    assert sorted(r.path for r in hook.received) == ["/global", "/own"]
    ids = {r.path: r.headers["Idempotency-Key"] for r in hook.received}
    assert ids["/own"].endswith(":w0") and ids["/global"].endswith(":g0")
    assert one.recorded + two.recorded == 2 and 0 in (one.recorded, two.recorded)

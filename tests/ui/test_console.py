"""The web console in a real browser (Chromium), against a real `durable up`.

Every test acts as a user does: it logs in with a token, clicks and types; it reads what
the page shows. The API is called directly only to set a scene (start a run, revoke a
token) or to learn an id the assertion needs.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, expect

from tests.processes import Service

TIMEOUT = 30_000  # ms: a first run on a busy CI machine


def call(service: Service, method: str, path: str, body: Any = None, token: str = "") -> Any:
    request = urllib.request.Request(
        service.url + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={
            "Authorization": f"Bearer {token or service.token}",
            "Content-Type": "application/json",
        },
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        raw = response.read()
    return json.loads(raw) if raw else None


def wait_run(service: Service, run_id: str) -> dict[str, Any]:
    run: dict[str, Any] = call(service, "GET", f"/api/v1/runs/{run_id}/wait?timeout=60")
    assert run["status"] in ("succeeded", "failed", "cancelled"), run["status"]
    return run


def start(service: Service, workflow: str, params: dict[str, Any]) -> str:
    result = call(service, "POST", f"/api/v1/workflows/{workflow}/runs", {"params": params})
    return str(result["run_id"])


def login(page: Page, service: Service, token: str = "") -> None:
    page.goto(service.url + "/ui/login")
    page.fill("input[name=token]", token or service.token)
    page.click("button[type=submit]")
    expect(page.locator("#nav")).to_be_visible(timeout=TIMEOUT)


def shot(page: Page, screenshots: Path, name: str) -> None:
    page.screenshot(path=str(screenshots / f"{name}.png"), full_page=True)


def test_login_is_required_and_a_wrong_token_is_refused(
    page: Page, console: Service, screenshots: Path
) -> None:
    page.goto(console.url + "/ui/runs")
    expect(page).to_have_url(f"{console.url}/ui/login?next=%2Fui%2Fruns", timeout=TIMEOUT)
    page.fill("input[name=token]", "dtk_000000000000_not-a-real-token-at-all")
    page.click("button[type=submit]")
    expect(page.locator(".form-error")).to_contain_text("unknown or revoked")
    shot(page, screenshots, "login")
    page.fill("input[name=token]", console.token)
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{console.url}/ui/runs", timeout=TIMEOUT)
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert cookies["durable_session"]["httpOnly"] is True
    assert cookies["durable_session"]["sameSite"] == "Strict"
    page.click("#logout")
    expect(page).to_have_url(f"{console.url}/ui/login", timeout=TIMEOUT)
    page.goto(console.url + "/ui/workflows")
    expect(page.locator("input[name=token]")).to_be_visible()


def test_a_revoked_token_goes_back_to_login(page: Page, console: Service) -> None:
    made = call(console, "POST", "/api/v1/tokens", {"name": "ui-temp", "scopes": ["read"]})
    login(page, console, made["token"])
    expect(page.locator("table.workflows")).to_contain_text("daily_sales")
    # a read token sees, it does not act
    page.goto(console.url + "/ui/workflows/daily_sales/trigger")
    expect(page.locator("#trigger button[type=submit]")).to_be_disabled()
    call(console, "DELETE", f"/api/v1/tokens/{made['token_id']}")
    page.goto(console.url + "/ui/runs")
    expect(page.locator("input[name=token]")).to_be_visible(timeout=TIMEOUT)
    page.fill("input[name=token]", made["token"])
    page.click("button[type=submit]")
    expect(page.locator(".form-error")).to_contain_text("unknown or revoked")


def test_a_form_error_names_the_field_then_the_run_updates_live(
    page: Page, console: Service, screenshots: Path
) -> None:
    login(page, console)
    page.goto(console.url + "/ui/workflows/daily_sales/trigger")
    shot(page, screenshots, "trigger-form")
    page.fill("#param-regions", '"eu"')  # a string where the param is json: still valid JSON
    page.fill("#param-alert_over_eur", "")
    page.click("#trigger button[type=submit]")  # no date: the API says it is required
    expect(page.locator('.field-error[data-for="date"]')).to_contain_text("date")
    expect(page).to_have_url(f"{console.url}/ui/workflows/daily_sales/trigger")
    page.fill("#param-regions", "")
    page.fill("#param-date", "2026-11-21")
    page.click("#trigger button[type=submit]")
    expect(page).to_have_url(re.compile(r"/ui/runs/[^/?]+$"), timeout=TIMEOUT)
    page.evaluate("window.__same_page = true")  # gone if the page reloads
    expect(page.locator("#head-status .badge")).to_have_text("succeeded", timeout=TIMEOUT)
    expect(page.locator('#graph g.node[data-id="report"]')).to_have_class(
        "node k-python s-succeeded", timeout=TIMEOUT
    )
    assert page.evaluate("window.__same_page") is True
    expect(page.locator("#gantt g.bar")).to_have_count(8, timeout=TIMEOUT)
    shot(page, screenshots, "run")


def test_logs_arrive_while_the_task_runs(
    page: Page, console: Service, screenshots: Path, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    run_id = start(console, "chatty", {"gate": str(gate)})
    login(page, console)
    page.goto(f"{console.url}/ui/runs/{run_id}?task=talk")
    logs = page.locator("#logs")
    expect(logs).to_contain_text("first line, before the gate", timeout=TIMEOUT)
    expect(page.locator("#task-info .badge").first).to_have_text("running")
    assert "after the gate" not in logs.inner_text()
    shot(page, screenshots, "logs-live")
    gate.touch()
    expect(logs).to_contain_text("after the gate: line 2", timeout=TIMEOUT)
    expect(page.locator("#head-status .badge")).to_have_text("succeeded", timeout=TIMEOUT)


def _finished_sales_run(console: Service, day: str) -> str:
    run_id = start(console, "daily_sales", {"date": day})
    assert wait_run(console, run_id)["status"] == "succeeded"
    return run_id


def test_the_history_slider_travels_back(page: Page, console: Service, screenshots: Path) -> None:
    run_id = _finished_sales_run(console, "2026-11-18")
    events = call(console, "GET", f"/api/v1/runs/{run_id}/events?limit=1000")["events"]
    started = next(
        e["seq"] for e in events if e["type"] == "task_started" and e["data"]["task"] == "load"
    )
    login(page, console)
    page.goto(f"{console.url}/ui/runs/{run_id}")
    load = page.locator('#graph g.node[data-id="load"]')
    expect(load).to_have_class("node k-sql s-succeeded", timeout=TIMEOUT)
    page.locator("#slider").fill(str(started))
    expect(page.locator(".travel")).to_contain_text(f"after event {started}")
    expect(load).to_have_class("node k-sql s-running")
    expect(page.locator('#graph g.node[data-id="report"]')).not_to_have_class("s-succeeded")
    shot(page, screenshots, "history")
    page.click("#live-again")
    expect(load).to_have_class("node k-sql s-succeeded")


def test_rerun_from_here_previews_the_plan_then_runs_generation_2(
    page: Page, console: Service, screenshots: Path
) -> None:
    run_id = _finished_sales_run(console, "2026-11-17")
    login(page, console)
    page.goto(f"{console.url}/ui/runs/{run_id}")
    page.locator('#graph g.node[data-id="transform"]').click()
    page.click("#rr-preview")
    expect(page.locator(".plan")).to_contain_text("Generation 2 would rerun")
    expect(page.locator('#graph g.node[data-id="transform"]')).to_have_class(
        "node k-python s-succeeded plan-rerun selected"
    )
    expect(page.locator('#graph g.node[data-id="fetch_orders"]')).to_have_class(
        "node k-python s-succeeded plan-reused"
    )
    shot(page, screenshots, "rerun-plan")
    assert call(console, "GET", f"/api/v1/runs/{run_id}")["generation"] == 1  # a preview
    page.click("#rr-confirm")
    expect(page.locator("#rr-result")).to_contain_text("Generation 2 started")
    expect(page.locator("#run-generation")).to_have_text("2", timeout=TIMEOUT)
    expect(page.locator("#head-status .badge")).to_have_text("succeeded", timeout=TIMEOUT)
    detail = call(console, "GET", f"/api/v1/runs/{run_id}")
    tasks = {t["name"]: t for t in detail["tasks"]}
    assert tasks["transform"]["generation"] == 2
    assert tasks["fetch_orders"]["generation"] == 1


def test_a_backfill_is_previewed_then_created_with_progress(
    page: Page, console: Service, screenshots: Path
) -> None:
    login(page, console)
    page.goto(console.url + "/ui/backfills")
    page.select_option("select[name=workflow]", "nightly")
    page.fill("input[name=start]", "2026-10-01T00:00:00")
    page.fill("input[name=end]", "2026-10-04T00:00:00")
    page.click("#backfill button[type=submit]")
    expect(page.locator("table.plan tr")).to_have_count(4)  # a header and 3 nights
    expect(page.locator("#create")).to_be_visible()
    page.click("#create")
    expect(page.locator("#plan .ok")).to_contain_text("3 intervals")
    backfill_id = page.locator("#plan .ok .mono").inner_text()
    row = page.locator(f'tr[data-backfill="{backfill_id}"]')
    expect(row).to_contain_text("3 / 3 intervals done", timeout=TIMEOUT)
    shot(page, screenshots, "backfills")


def test_grid_gantt_code_versions_schedules_assets_and_dead_letters(
    page: Page, console: Service, screenshots: Path
) -> None:
    run_id = _finished_sales_run(console, "2026-11-16")
    produced = start(console, "publish", {})
    wait_run(console, produced)
    login(page, console)
    page.goto(console.url + "/ui/workflows/daily_sales/grid")
    cell = page.locator(f'.grid a[data-run="{run_id}"][data-task="transform"]')
    expect(cell).to_have_class("s-succeeded")
    shot(page, screenshots, "grid")
    cell.click()
    expect(page).to_have_url(f"{console.url}/ui/runs/{run_id}?task=transform")
    expect(page.locator("#task-info")).to_contain_text("transform")
    expect(page.locator("#gantt g.bar.s-succeeded")).to_have_count(8)
    page.goto(console.url + "/ui/workflows/daily_sales")
    expect(page.locator("#graph g.node.k-switch")).to_have_count(1)
    shot(page, screenshots, "workflow-graph")
    page.goto(console.url + "/ui/workflows/daily_sales/code")
    expect(page.locator(".code .hljs-keyword").first).to_be_visible()
    expect(page.locator(".code")).to_contain_text("def fetch_orders")
    shot(page, screenshots, "code")
    page.goto(console.url + "/ui/workflows/daily_sales/versions")
    expect(page.locator(".diff h3")).to_be_visible()
    page.goto(console.url + "/ui/schedules")
    row = page.locator('tr[data-workflow="nightly"]')
    expect(row).to_contain_text("Europe/Paris")
    expect(row).to_contain_text("UTC")
    row.locator("button").click()
    expect(page.locator('tr[data-workflow="nightly"]')).to_contain_text("paused")
    page.locator('tr[data-workflow="nightly"] button').click()
    expect(page.locator('tr[data-workflow="nightly"] button')).to_have_text("Pause")
    shot(page, screenshots, "schedules")
    page.goto(console.url + "/ui/assets")
    expect(page.locator('#lineage g.node[data-id="asset:warehouse.orders"]')).to_be_visible()
    expect(page.locator('#lineage g.node[data-id="workflow:refresh"]')).to_be_visible()
    expect(page.locator('#lineage g.node[data-id="task:publish.write_orders"]')).to_be_visible()
    expect(page.locator("table.assets")).to_contain_text(produced)
    shot(page, screenshots, "assets")
    page.goto(console.url + "/ui/dead-letters")
    expect(page.locator("h1")).to_have_text("Dead letters")
    page.goto(console.url + "/ui/runs?workflow=daily_sales")
    expect(page.locator(f'tr[data-run="{run_id}"]')).to_be_visible()
    shot(page, screenshots, "runs")


def test_unknown_things_get_a_404_page(page: Page, console: Service) -> None:
    login(page, console)
    page.goto(console.url + "/ui/runs/no-such-run")
    expect(page.locator(".notfound")).to_contain_text("does not exist", timeout=TIMEOUT)
    page.goto(console.url + "/ui/workflows/no_such_workflow")
    expect(page.locator(".notfound")).to_contain_text("not loaded")
    page.goto(console.url + "/ui/nothing-here")
    expect(page.locator(".notfound")).to_contain_text("no page")


def test_cancel_selected_runs_from_the_list(page: Page, console: Service, tmp_path: Path) -> None:
    gates = [tmp_path / f"never-{i}" for i in range(2)]
    runs = [start(console, "chatty", {"gate": str(g)}) for g in gates]
    login(page, console)
    page.goto(console.url + "/ui/runs?workflow=chatty&status=running")
    deadline = time.monotonic() + 30
    statuses = set()
    while time.monotonic() < deadline:  # both claimed and started
        statuses = {call(console, "GET", f"/api/v1/runs/{r}")["status"] for r in runs}
        if statuses == {"running"}:
            break
        time.sleep(0.2)
    assert statuses == {"running"}, (statuses, "".join(console.log[-30:]))
    for run_id in runs:
        page.locator(f'tr[data-run="{run_id}"] input.pick').check(timeout=TIMEOUT)
    page.click("#cancel-selected")
    expect(page.locator("#bulk")).to_contain_text("cancelled")
    for run_id in runs:
        assert wait_run(console, run_id)["status"] == "cancelled"


def test_a_session_without_the_csrf_header_cannot_act(page: Page, console: Service) -> None:
    login(page, console)
    run_id = start(console, "chatty", {"gate": "/nonexistent/never"})
    status = page.evaluate(
        """async (id) => (await fetch(`/api/v1/runs/${id}/cancel`, {method: "POST",
            credentials: "same-origin"})).status""",
        run_id,
    )
    assert status == 403
    try:
        assert call(console, "GET", f"/api/v1/runs/{run_id}")["status"] != "cancelled"
    finally:
        call(console, "POST", f"/api/v1/runs/{run_id}/cancel", {})


def test_api_errors_are_problem_json_not_html(console: Service) -> None:
    try:
        call(console, "GET", "/api/v1/runs/nope")
    except urllib.error.HTTPError as exc:
        assert exc.code == 404
        assert exc.headers["Content-Type"] == "application/problem+json"
    else:
        raise AssertionError("no 404")


def test_notifications_show_what_was_sent_and_why_one_failed(
    page: Page, console: Service, screenshots: Path
) -> None:
    run_id = start(console, "alerting", {"fail": True})
    assert wait_run(console, run_id)["status"] == "failed"
    login(page, console)
    page.goto(f"{console.url}/ui/runs/{run_id}")
    page.click("text=Notifications of this run")
    rows = page.locator("table.notifications tbody tr")
    # the view refreshes itself: both deliveries settle while it is open
    expect(rows.filter(has=page.locator(".badge.s-sent"))).to_have_count(1, timeout=TIMEOUT)
    refused = rows.filter(has=page.locator(".badge.s-failed"))
    expect(refused).to_have_count(1, timeout=TIMEOUT)
    expect(refused).to_contain_text("400")  # the receiver's answer, as the reason
    expect(rows.first).to_contain_text("run_failed")
    shot(page, screenshots, "notifications")
    page.check("input[name=failed]")
    expect(page).to_have_url(re.compile(r"failed=true"))
    expect(rows).to_have_count(1, timeout=TIMEOUT)
    expect(rows.first.locator(".badge.s-failed")).to_have_count(1)

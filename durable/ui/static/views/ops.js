// Operations: backfills (dry-run plan first, progress, pause/resume/cancel), schedules
// (next fire in the zone and in UTC, pause/resume), the assets lineage, dead letters.

import { api, badge, enc, errorBox, html, inZone, when, $, $$ } from "../lib.js";
import { can } from "../app.js";
import { drawGraph } from "../graph.js";

const REFRESH_MS = 2000;

function progress(b) {
  const total = Math.max(1, b.intervals);
  const part = (status) =>
    b.runs[status] ? html`<span class="p-${status}" style="width:${(100 * b.runs[status]) / total}%" title="${status}: ${b.runs[status]}"></span>` : "";
  const done = (b.runs.succeeded ?? 0) + (b.runs.failed ?? 0) + (b.runs.cancelled ?? 0);
  return html`<div class="progress" role="progressbar" aria-valuenow="${done}" aria-valuemax="${b.intervals}">
    ${part("succeeded")}${part("failed")}${part("cancelled")}${part("running")}</div>
    <div class="muted">${done} / ${b.intervals} intervals done</div>`;
}

function localIso(value) {
  return value ? new Date(value).toISOString() : null;
}

export async function backfillsView({ main, isCurrent }) {
  document.title = "Backfills · durable";
  const { schedules } = await api("/schedules");
  main.innerHTML = html`<h1>Backfills</h1>
    <form id="backfill" class="card filters">
      <label><span>Workflow</span><select name="workflow" required>${schedules.map((s) => html`<option>${s.workflow}</option>`)}</select></label>
      <label><span>From</span><input type="datetime-local" name="start" step="1" required></label>
      <label><span>To</span><input type="datetime-local" name="end" step="1" required></label>
      <label><span>Max parallel</span><input type="number" name="max_parallel" min="1" step="1" placeholder="the workflow's"></label>
      <label><span>Reprocess</span><select name="reprocess"><option>none</option><option>failed</option><option>all</option></select></label>
      <button type="submit">Preview intervals</button>
      <button type="button" id="create" class="primary" hidden>Create backfill</button>
    </form><div id="plan"></div>
    <table class="backfills"><thead><tr><th>Backfill</th><th>Workflow</th><th>Range</th><th>Status</th><th>Progress</th><th></th></tr></thead>
    <tbody id="rows"></tbody></table>`;
  const form = $("#backfill");
  const body = (dry) => {
    const f = form.elements;
    const b = {
      workflow: f.workflow.value,
      start: localIso(f.start.value),
      end: localIso(f.end.value),
      reprocess: f.reprocess.value,
      dry_run: dry,
    };
    if (f.max_parallel.value) b.max_parallel = Number(f.max_parallel.value);
    return b;
  };
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const plan = await api("/backfills", { method: "POST", body: body(true) });
      $("#plan").innerHTML = html`<div class="card"><b>${plan.intervals} intervals</b> of ${plan.workflow}:
        <table class="plan"><tr><th>Start</th><th>End</th><th>Action</th></tr>${(plan.plan ?? []).map(
          (i) => html`<tr><td>${when(i.start)}</td><td>${when(i.end)}</td><td>${i.action}</td></tr>`,
        )}</table></div>`;
      $("#create").hidden = !can("operate");
    } catch (error) {
      $("#plan").innerHTML = errorBox(error);
      $("#create").hidden = true;
    }
  });
  $("#create").addEventListener("click", async () => {
    try {
      const made = await api("/backfills", { method: "POST", body: body(false) });
      $("#plan").innerHTML = html`<div class="ok">Backfill <span class="mono">${made.backfill_id}</span> created: ${made.intervals} intervals.</div>`;
      $("#create").hidden = true;
      await draw();
    } catch (error) {
      $("#plan").innerHTML = errorBox(error);
    }
  });
  const draw = async () => {
    const { backfills } = await api("/backfills");
    if (!isCurrent()) return;
    const act = (b, cmd, enabled) =>
      html`<button data-id="${b.backfill_id}" data-cmd="${cmd}" ${enabled && can("operate") ? "" : "disabled"}>${cmd}</button>`;
    $("#rows").innerHTML = html`${backfills.map(
      (b) => html`<tr data-backfill="${b.backfill_id}"><td class="mono">${b.backfill_id}</td>
        <td><a href="/ui/workflows/${enc(b.workflow)}/grid">${b.workflow}</a></td>
        <td>${when(b.start)} → ${when(b.end)}</td><td>${badge(b.status)}</td><td>${progress(b)}</td>
        <td>${act(b, "pause", b.status === "running")} ${act(b, "resume", b.status === "paused")}
          ${act(b, "cancel", ["running", "paused"].includes(b.status))}</td></tr>`,
    )}${backfills.length ? "" : html`<tr><td colspan="6" class="muted">No backfill yet.</td></tr>`}`;
    for (const button of $$("#rows button")) {
      button.addEventListener("click", async () => {
        try {
          await api(`/backfills/${enc(button.dataset.id)}/${button.dataset.cmd}`, { method: "POST" });
          await draw();
        } catch (error) {
          $("#plan").innerHTML = errorBox(error);
        }
      });
    }
  };
  await draw();
  const timer = setInterval(() => draw().catch(() => null), REFRESH_MS);
  return () => clearInterval(timer);
}

export async function schedulesView({ main }) {
  document.title = "Schedules · durable";
  const draw = async () => {
    const { schedules } = await api("/schedules");
    main.innerHTML = html`<h1>Schedules</h1><div id="result"></div>
      <table class="schedules"><thead><tr><th>Workflow</th><th>When</th><th>Zone</th><th>Next run (zone)</th>
      <th>Next run (UTC)</th><th>Last interval</th><th>Catch-up</th><th></th></tr></thead><tbody>${schedules.map(
        (s) => html`<tr data-workflow="${s.workflow}"><td><a href="/ui/workflows/${enc(s.workflow)}">${s.workflow}</a></td>
          <td class="mono">${s.cron ?? `every ${s.every_seconds} s`}</td><td>${s.timezone}</td>
          <td>${s.paused ? html`<span class="muted">paused</span>` : inZone(s.next_fire, s.timezone)}</td>
          <td>${s.paused ? "" : inZone(s.next_fire, "UTC")}</td><td>${when(s.last_logical_time)}</td><td>${s.catchup}</td>
          <td><button data-wf="${s.workflow}" data-cmd="${s.paused ? "resume" : "pause"}" ${can("operate") ? "" : "disabled"}>${s.paused ? "Resume" : "Pause"}</button></td></tr>`,
      )}</tbody></table>${schedules.length ? "" : html`<p class="muted">No workflow has a schedule.</p>`}`;
    for (const button of $$("button[data-wf]", main)) {
      button.addEventListener("click", async () => {
        try {
          await api(`/schedules/${enc(button.dataset.wf)}/${button.dataset.cmd}`, { method: "POST" });
          await draw();
        } catch (error) {
          $("#result").innerHTML = errorBox(error);
        }
      });
    }
  };
  await draw();
}

export async function assetsView({ main }) {
  document.title = "Assets · durable";
  const { assets } = await api("/assets");
  main.innerHTML = html`<h1>Assets</h1><p class="muted">Lineage: producing task → asset → consuming workflows.</p>
    <div class="graph-box" id="lineage"></div>
    <table class="assets"><thead><tr><th>Asset</th><th>Produced by</th><th>Consumed by</th><th>Last update</th></tr></thead>
    <tbody>${assets.map(
      (a) => html`<tr><td class="mono">${a.asset}</td>
        <td>${a.producers.map((p) => html`<div><a href="/ui/workflows/${enc(p.workflow)}">${p.workflow}</a>.${p.task}</div>`)}</td>
        <td>${a.consumers.map((c) => html`<div><a href="/ui/workflows/${enc(c)}">${c}</a></div>`)}</td>
        <td>${a.last_update ? html`${when(a.last_update.updated_at)} by <a href="/ui/runs/${enc(a.last_update.run_id)}">${a.last_update.run_id}</a>` : html`<span class="muted">never</span>`}</td></tr>`,
    )}</tbody></table>${assets.length ? "" : html`<p class="muted">No workflow produces or consumes an asset.</p>`}`;
  const nodes = new Map();
  const edges = [];
  for (const a of assets) {
    const id = `asset:${a.asset}`;
    nodes.set(id, { id, kind: "asset", label: a.asset, sub: a.last_update ? `updated ${when(a.last_update.updated_at)}` : "asset" });
    for (const p of a.producers) {
      const pid = `task:${p.workflow}.${p.task}`;
      nodes.set(pid, { id: pid, kind: "task", label: `${p.workflow}.${p.task}`, sub: "producing task" });
      edges.push({ source: pid, target: id });
    }
    for (const c of a.consumers) {
      const cid = `workflow:${c}`;
      nodes.set(cid, { id: cid, kind: "workflow", label: c, sub: "consuming workflow" });
      edges.push({ source: id, target: cid });
    }
  }
  if (nodes.size) drawGraph($("#lineage"), [...nodes.values()], edges);
}

export async function deadLettersView({ main }) {
  document.title = "Dead letters · durable";
  const { dead_letters: letters } = await api("/dead-letters", { query: { limit: 200 } });
  main.innerHTML = html`<h1>Dead letters</h1>
    <p class="muted">Trigger messages that could not start a run, with the reason; nothing was recorded for them.</p>
    <table class="dead-letters"><thead><tr><th>#</th><th>Source</th><th>Where</th><th>Workflow</th><th>Reason</th><th>Payload</th></tr></thead>
    <tbody>${letters.map(
      (d) => html`<tr><td>${d.id}</td><td>${d.source}</td><td class="mono">${d.topic}[${d.partition}]@${d.offset}</td>
        <td>${d.workflow ?? ""}</td><td class="field-error">${d.reason}</td>
        <td><pre>${d.key_preview ? `key: ${d.key_preview}\n` : ""}${d.value_preview ?? ""}</pre></td></tr>`,
    )}</tbody></table>${letters.length ? "" : html`<p class="muted">No dead letter.</p>`}`;
}

export async function notificationsView({ main, query, isCurrent }) {
  document.title = "Notifications · durable";
  const run = query.get("run") ?? "";
  const failed = query.get("failed") === "true";
  main.innerHTML = html`<h1>Notifications</h1>
    <p class="muted">What was sent, what failed and why, what is still pending — newest first${run ? html`, for run <a class="mono" href="/ui/runs/${enc(run)}">${run}</a> (<a href="/ui/notifications">all runs</a>)` : ""}.</p>
    <form class="filters card" id="notify-filters">
      <label class="check"><input type="checkbox" name="failed" ${failed ? "checked" : ""}> Failed only</label>
      <span class="muted" id="live">live</span></form>
    <table class="notifications"><thead><tr><th>Requested</th><th>Status</th><th>Event</th><th>Channel</th>
      <th>Workflow</th><th>Run</th><th>Summary</th><th>Tries</th><th>Detail</th></tr></thead>
    <tbody id="rows"></tbody></table><p class="muted" id="empty" hidden>No notification.</p>`;
  $("#notify-filters").elements.failed.addEventListener("change", (ev) => {
    const url = new URL(location.href);
    if (ev.target.checked) url.searchParams.set("failed", "true");
    else url.searchParams.delete("failed");
    history.pushState(null, "", url);
    window.dispatchEvent(new PopStateEvent("popstate"));
  });
  const draw = async () => {
    const q = { limit: 200 };
    if (run) q.run = run;
    if (failed) q.failed = "true";
    const { notifications } = await api("/notifications", { query: q });
    if (!isCurrent()) return;
    $("#rows").innerHTML = notifications
      .map(
        (n) => html`<tr data-id="${n.notification_id}"><td>${when(n.requested_at)}</td><td>${badge(n.status)}</td>
          <td>${n.on}</td><td>${n.channel} <span class="muted">${n.rule}</span></td>
          <td><a href="/ui/workflows/${enc(n.workflow)}">${n.workflow}</a></td>
          <td>${n.run_id ? html`<a class="mono" href="/ui/runs/${enc(n.run_id)}">${n.run_id}</a>` : ""}</td>
          <td>${n.summary}</td><td>${n.attempts}</td>
          <td class="${n.status === "failed" ? "field-error" : "muted"}">${n.detail}${n.settled_at ? html` <span class="muted">(${when(n.settled_at)})</span>` : ""}</td></tr>`,
      )
      .join("");
    $("#empty").hidden = notifications.length > 0;
  };
  await draw();
  const timer = setInterval(() => draw().catch(() => {}), REFRESH_MS);
  return () => clearInterval(timer);
}

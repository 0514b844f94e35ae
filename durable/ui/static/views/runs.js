// Runs: the list with filters (workflow, status, trigger kind, time range), cursor
// paging, live status updates, and multi-select cancel / rerun of failed tasks.

import { api, badge, between, duration, enc, errorBox, html, preview, when, $, $$ } from "../lib.js";
import { can, navigate } from "../app.js";

const STATUSES = ["pending", "running", "paused", "succeeded", "failed", "cancelled"];
const TRIGGERS = ["api", "cli", "schedule", "backfill", "kafka", "s3", "webhook", "assets"];
const REFRESH_MS = 2000;

function localInput(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 19);
}

export async function runsView({ main, query, isCurrent }) {
  document.title = "Runs · durable";
  const filters = Object.fromEntries(
    ["workflow", "status", "trigger", "since", "until", "cursor"].map((k) => [k, query.get(k) ?? ""]),
  );
  const { workflows } = await api("/workflows");
  const option = (value, chosen) =>
    html`<option value="${value}" ${value === chosen ? "selected" : ""}>${value || "any"}</option>`;
  main.innerHTML = html`<h1>Runs</h1>
    <form class="filters card" id="filters">
      <label><span>Workflow</span><select name="workflow">${option("", filters.workflow)}${workflows.map((w) => option(w.name, filters.workflow))}</select></label>
      <label><span>Status</span><select name="status">${option("", filters.status)}${STATUSES.map((s) => option(s, filters.status))}</select></label>
      <label><span>Trigger</span><select name="trigger">${option("", filters.trigger)}${TRIGGERS.map((s) => option(s, filters.trigger))}</select></label>
      <label><span>Created from</span><input type="datetime-local" step="1" name="since" value="${localInput(filters.since)}"></label>
      <label><span>to</span><input type="datetime-local" step="1" name="until" value="${localInput(filters.until)}"></label>
      <button type="submit">Filter</button> <a href="/ui/runs">Clear</a>
    </form>
    <div class="toolbar">
      <button id="cancel-selected" class="danger" disabled>Cancel selected</button>
      <button id="rerun-selected" disabled>Rerun failed tasks of selected</button>
      <span class="muted" id="live">live</span></div>
    <div id="bulk"></div>
    <table class="runs"><thead><tr><th><input type="checkbox" id="all" aria-label="select all"></th>
      <th>Run</th><th>Workflow</th><th>Status</th><th>Trigger</th><th>Params</th><th>Created</th><th>Duration</th></tr></thead>
      <tbody id="rows"></tbody></table>
    <div class="toolbar" id="pages"></div>`;
  $("#filters").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const f = new FormData(ev.target);
    const q = new URLSearchParams();
    for (const [k, v] of f.entries()) {
      if (!v) continue;
      q.set(k, k === "since" || k === "until" ? new Date(v).toISOString() : v);
    }
    navigate(`/ui/runs?${q}`);
  });
  const selected = new Set();
  const buttons = () => {
    $("#cancel-selected").disabled = !selected.size || !can("operate");
    $("#rerun-selected").disabled = !selected.size || !can("operate");
  };
  const draw = async () => {
    const page = await api("/runs", { query: { ...filters, limit: 50 } });
    if (!isCurrent()) return;
    $("#rows").innerHTML = html`${page.runs.map(
      (r) => html`<tr data-run="${r.run_id}">
        <td><input type="checkbox" class="pick" value="${r.run_id}" ${selected.has(r.run_id) ? "checked" : ""}></td>
        <td class="mono"><a href="/ui/runs/${enc(r.run_id)}">${r.run_id}</a></td>
        <td><a href="/ui/workflows/${enc(r.workflow)}">${r.workflow}</a></td>
        <td class="status">${badge(r.status)}</td>
        <td>${r.trigger_kind}<div class="muted">${preview(r.trigger_source, 40)}</div></td>
        <td class="mono muted">${preview(r.params, 60)}</td>
        <td>${when(r.created_at)}</td>
        <td>${duration(between(r.started_at ?? r.created_at, r.finished_at))}</td></tr>`,
    )}${page.runs.length ? "" : html`<tr><td colspan="8" class="muted">No run matches.</td></tr>`}`;
    const first = new URLSearchParams({ ...filters, cursor: "" });
    const next = new URLSearchParams({ ...filters, cursor: page.next_cursor ?? "" });
    for (const q of [first, next]) for (const [k, v] of [...q.entries()]) if (!v) q.delete(k);
    $("#pages").innerHTML = html`${filters.cursor ? html`<a href="/ui/runs?${first}">« Newest</a>` : ""}
      ${page.next_cursor ? html`<a href="/ui/runs?${next}" id="next-page">Older »</a>` : ""}`;
    for (const box of $$(".pick")) {
      box.addEventListener("change", () => {
        if (box.checked) selected.add(box.value);
        else selected.delete(box.value);
        buttons();
      });
    }
  };
  await draw();
  $("#all").addEventListener("change", (ev) => {
    for (const box of $$(".pick")) {
      box.checked = ev.target.checked;
      if (box.checked) selected.add(box.value);
      else selected.delete(box.value);
    }
    buttons();
  });
  const bulk = async (what, act) => {
    const results = [];
    for (const runId of selected) {
      try {
        results.push(html`<li>${runId}: ${await act(runId)}</li>`);
      } catch (error) {
        results.push(html`<li>${runId}: ${errorBox(error)}</li>`);
      }
    }
    $("#bulk").innerHTML = html`<div class="card"><b>${what}</b><ul>${results}</ul></div>`;
    selected.clear();
    buttons();
    await draw();
  };
  $("#cancel-selected").addEventListener("click", () =>
    bulk("Cancel", async (runId) => {
      const r = await api(`/runs/${enc(runId)}/cancel`, { method: "POST", body: { reason: "cancelled from the console" } });
      return r.applied ? "cancelled" : `already ${r.status}`;
    }),
  );
  $("#rerun-selected").addEventListener("click", () =>
    bulk("Rerun failed tasks", async (runId) => {
      const run = await api(`/runs/${enc(runId)}`);
      const tasks = run.tasks.filter((t) => t.parent === null).map((t) => t.name);
      const r = await api(`/runs/${enc(runId)}/rerun`, {
        method: "POST",
        body: { tasks, failed_only: true, downstream: true },
      });
      return `generation ${r.generation}: ${r.rerun.join(", ") || "nothing to rerun"}`;
    }),
  );
  const timer = setInterval(() => draw().catch(() => null), REFRESH_MS);
  return () => clearInterval(timer);
}

// A run's page: the graph coloured by task status (live, from the event stream), the
// Gantt timeline of attempts, each task's attempts, output, error and streaming logs,
// the event history with a time-travel slider, rerun-from-here with its plan drawn on
// the graph, and cancel / pause / resume.

import {
  allEvents, api, badge, between, debounce, duration, enc, errorBox, follow, html, json,
  preview, when, $, $$,
} from "../lib.js";
import { can, remember } from "../app.js";
import { drawGraph } from "../graph.js";
import { drawGantt } from "../gantt.js";

const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);

function summary(run) {
  const t = run.trigger ?? {};
  const detail = Object.entries(t.detail ?? {}).filter(([, v]) => v !== null && v !== "");
  return html`<dl class="kv">
    <dt>Workflow</dt><dd><a href="/ui/workflows/${enc(run.workflow)}">${run.workflow}</a> <span class="mono muted">${run.version}</span></dd>
    <dt>Status</dt><dd id="run-status">${badge(run.status)} ${run.reason ? html`<span class="muted">${run.reason}</span>` : ""}</dd>
    <dt>Generation</dt><dd id="run-generation">${run.generation}</dd>
    <dt>Created</dt><dd>${when(run.created_at)}</dd>
    <dt>Started</dt><dd>${when(run.started_at)}</dd>
    <dt>Finished</dt><dd>${when(run.finished_at)}</dd>
    <dt>Duration</dt><dd>${duration(between(run.started_at, run.finished_at))}</dd>
    <dt>Trigger</dt><dd>${t.kind ?? run.trigger_kind} ${t.source ?? run.trigger_source ? html`· <span class="mono">${t.source ?? run.trigger_source}</span>` : ""}</dd>
    ${t.key ?? run.idempotency_key ? html`<dt>Key</dt><dd class="mono">${t.key ?? run.idempotency_key}</dd>` : ""}
    ${run.logical_time ? html`<dt>Logical time</dt><dd>${when(run.logical_time)}</dd>` : ""}
    ${run.archived ? html`<dt>Archived</dt><dd>${when(run.archived.archived_at)} · <span class="mono uri">${run.archived.uri}</span> <span class="muted">(read from there; <code>durable restore</code> brings it back)</span></dd>` : ""}
    ${detail.map(([k, v]) => html`<dt>${k}</dt><dd class="mono">${typeof v === "string" ? v : JSON.stringify(v)}</dd>`)}
  </dl><h3>Params</h3><pre>${json(run.params)}</pre>`;
}

function eventSummary(e) {
  const d = e.data ?? {};
  const bits = [d.task, d.attempt ? `attempt ${d.attempt}` : null, d.status, d.reason, d.error?.message];
  return bits.filter(Boolean).join(" · ");
}

export async function runView({ main, params, query, isCurrent }) {
  const [runId] = params;
  let run = await api(`/runs/${enc(runId)}`);
  document.title = `${run.workflow} ${runId} · durable`;
  const kinds = {};
  try {
    const wf = await api(`/workflows/${enc(run.workflow)}`);
    for (const n of wf.graph.nodes) kinds[n.id] = n.kind;
  } catch {
    /* a workflow no longer loaded: its run still shows, with plain shapes */
  }
  let attempts = [];
  let events = [];
  let selected = query.get("task");
  let at = query.get("at") ? Number(query.get("at")) : null; // null: live
  let plan = null;
  let stopLogs = null;
  const stops = [];

  const archived = run.archived
    ? html` <span class="badge s-archived" id="archived" title="archived at ${run.archived.uri}">archived</span>`
    : "";
  main.innerHTML = html`<h1>Run <span class="mono">${runId}</span> <span id="head-status">${badge(run.status)}</span>${archived}</h1>
    <div class="toolbar" id="actions"></div><div id="action-result"></div>
    <p><a href="/ui/notifications?run=${enc(runId)}">Notifications of this run</a></p>
    <div class="row"><div class="card grow" id="summary"></div>
      <div class="card grow" id="panel"><p class="muted">Click a task on the graph or in the table.</p></div></div>
    <div id="travel"></div>
    <h2>Graph</h2><div class="graph-box" id="graph"></div>
    <h2>Tasks</h2><table class="tasks"><thead><tr><th>Task</th><th>Status</th><th>Attempt</th><th>Gen</th>
      <th>Started</th><th>Duration</th><th>Output / error</th></tr></thead><tbody id="tasks"></tbody></table>
    <h2>Timeline</h2><div class="graph-box" id="gantt"></div>
    <h2>History</h2><div class="history card">
      <label><span>Time travel: the run after event <b id="at-label"></b></span>
      <input type="range" id="slider" min="1" step="1" aria-label="event"></label>
      <div class="events"><table><thead><tr><th>Seq</th><th>Recorded</th><th>Event</th><th></th></tr></thead>
      <tbody id="events"></tbody></table></div></div>`;

  const drawActions = () => {
    const act = (cmd, label, cls, enabled) =>
      html`<button data-cmd="${cmd}" class="${cls}" ${enabled && can("operate") ? "" : "disabled"}>${label}</button>`;
    $("#actions").innerHTML = html`${act("cancel", "Cancel", "danger", !TERMINAL.has(run.status))}
      ${act("pause", "Pause", "", ["pending", "running"].includes(run.status))}
      ${act("resume", "Resume", "", run.status === "paused")}
      <a class="button" href="/ui/runs?workflow=${enc(run.workflow)}">Runs of ${run.workflow}</a>
      <a class="button" href="/ui/workflows/${enc(run.workflow)}/grid">Grid</a>`;
    for (const b of $$("#actions button[data-cmd]")) {
      b.addEventListener("click", async () => {
        try {
          const r = await api(`/runs/${enc(runId)}/${b.dataset.cmd}`, { method: "POST", body: {} });
          $("#action-result").innerHTML = html`<div class="ok">${b.dataset.cmd}: run is ${r.status}</div>`;
          refresh();
        } catch (error) {
          $("#action-result").innerHTML = errorBox(error);
        }
      });
    }
  };

  const nodeOf = (t) => {
    const children = run.tasks.filter((c) => c.parent === t.name);
    const done = children.filter((c) => c.status === "succeeded").length;
    const classes = [];
    if (plan?.rerun.includes(t.name)) classes.push("plan-rerun");
    else if (plan?.reused.includes(t.name)) classes.push("plan-reused");
    const kind = kinds[t.name] ?? "task";
    const sub = children.length ? `map ${done}/${children.length}` : `${kind} · ${t.status}`;
    return { id: t.name, kind, status: t.status, sub, classes };
  };

  const drawRun = () => {
    const top = run.tasks.filter((t) => t.parent === null);
    const edges = top.flatMap((t) => t.upstream.map((u) => ({ source: u, target: t.name })));
    drawGraph($("#graph"), top.map(nodeOf), edges, { onSelect: select, selected });
    $("#tasks").innerHTML = html`${run.tasks.map(
      (t) => html`<tr class="clickable ${t.name === selected ? "current" : ""}" data-task="${t.name}">
        <td class="mono">${t.parent ? html`&nbsp;&nbsp;↳ ` : ""}${t.name}</td><td>${badge(t.status)}</td>
        <td>${t.attempt || ""}</td><td>${t.generation}</td><td>${when(t.started_at)}</td>
        <td>${duration(t.duration_seconds)}</td>
        <td class="mono ${t.error ? "field-error" : "muted"}">${t.error ? `${t.error.type}: ${preview(t.error.message, 70)}` : preview(t.output, 70)}</td></tr>`,
    )}`;
    for (const row of $$("#tasks tr")) row.addEventListener("click", () => select(row.dataset.task));
    $("#summary").innerHTML = summary(run);
    $("#head-status").innerHTML = badge(run.status);
    drawActions();
    const total = events.length ? events[events.length - 1].seq : run.last_seq;
    $("#travel").innerHTML =
      at === null
        ? ""
        : html`<div class="travel">Showing the run as it was after event <b>${at}</b> of ${total}
          (${events.find((e) => e.seq === at)?.type ?? ""}). <button id="live-again">Back to live</button></div>`;
    if (at !== null) $("#live-again").addEventListener("click", () => travel(null));
  };

  const drawTaskInfo = () => {
    const task = run.tasks.find((t) => t.name === selected);
    const info = $("#task-info");
    if (!task || !info) return;
    const mine = attempts.filter((a) => a.task === task.name);
    const last = [...mine].reverse().find((a) => a.error);
    const error = task.error ?? last?.error;
    info.innerHTML = html`<h3><span class="mono">${task.name}</span> ${badge(task.status)}
        <span class="muted">${kinds[task.name] ?? ""}</span></h3>
      <table class="attempts"><tr><th>#</th><th>Gen</th><th>Status</th><th>Queued</th><th>Ran</th></tr>${mine.map(
        (a) => html`<tr><td>${a.attempt}</td><td>${a.generation}</td><td>${badge(a.status)}</td>
          <td>${duration(between(a.scheduled_at, a.started_at))}</td>
          <td>${duration(a.started_at ? between(a.started_at, a.finished_at) : null)}</td></tr>`,
      )}</table>
      ${task.output !== null && task.output !== undefined ? html`<h3>Output</h3><pre class="output">${json(task.output)}</pre>` : ""}
      ${error ? html`<h3>Error</h3><pre class="task-error">${error.type}: ${error.message}
${last?.error?.traceback ?? ""}</pre>` : ""}`;
  };

  const openPanel = () => {
    if (stopLogs) {
      stopLogs();
      stopLogs = null;
    }
    const task = run.tasks.find((t) => t.name === selected);
    if (!task) return;
    $("#panel").innerHTML = html`<div id="task-info"></div>
      <h3>Logs <span class="muted" id="log-state"></span></h3><div class="logs"><pre id="logs"></pre></div>
      <h3>Rerun from here</h3>
      <div class="inline"><label><input type="checkbox" id="rr-down" checked> and downstream</label>
        <label><input type="checkbox" id="rr-failed"> failed only</label></div>
      <div class="toolbar"><button id="rr-preview" ${can("operate") ? "" : "disabled"}>Preview rerun</button>
        <button id="rr-confirm" class="primary" hidden>Confirm rerun</button>
        <button id="rr-clear" hidden>Clear plan</button></div><div id="rr-result"></div>`;
    drawTaskInfo();
    const logs = $("#logs");
    $("#log-state").textContent = "(streaming)";
    stopLogs = follow(`/runs/${enc(runId)}/logs/stream`, { task: task.name }, (ev) => {
      if (ev.event === "end") {
        $("#log-state").textContent = "";
        return;
      }
      if (ev.event !== "line") return;
      const l = ev.data;
      const line = document.createElement("span");
      line.className = l.stream;
      line.textContent = `${new Date(l.at).toLocaleTimeString()} [#${l.attempt}${l.stream === "log" ? "" : ` ${l.stream}`}] ${l.message}\n`;
      const atBottom = logs.scrollTop + logs.clientHeight >= logs.scrollHeight - 4;
      logs.appendChild(line);
      if (atBottom) logs.scrollTop = logs.scrollHeight;
    });
    const body = (dry) => ({
      tasks: [task.name],
      downstream: $("#rr-down").checked,
      failed_only: $("#rr-failed").checked,
      dry_run: dry,
    });
    $("#rr-preview").addEventListener("click", async () => {
      try {
        plan = await api(`/runs/${enc(runId)}/rerun`, { method: "POST", body: body(true) });
        $("#rr-result").innerHTML = html`<div class="card plan">Generation ${plan.generation} would rerun
          <b>${plan.rerun.join(", ") || "nothing"}</b>; reused: ${plan.reused.join(", ") || "none"}.</div>`;
        $("#rr-confirm").hidden = false;
        $("#rr-clear").hidden = false;
        drawRun();
      } catch (error) {
        $("#rr-result").innerHTML = errorBox(error);
      }
    });
    $("#rr-clear").addEventListener("click", () => {
      plan = null;
      $("#rr-result").innerHTML = "";
      $("#rr-confirm").hidden = true;
      $("#rr-clear").hidden = true;
      drawRun();
    });
    $("#rr-confirm").addEventListener("click", async () => {
      try {
        const done = await api(`/runs/${enc(runId)}/rerun`, { method: "POST", body: body(false) });
        plan = null;
        $("#rr-confirm").hidden = true;
        $("#rr-clear").hidden = true;
        $("#rr-result").innerHTML = html`<div class="ok">Generation ${done.generation} started: ${done.rerun.join(", ")}</div>`;
        refresh();
      } catch (error) {
        $("#rr-result").innerHTML = errorBox(error);
      }
    });
  };

  function select(name) {
    selected = name;
    remember({ task: name });
    drawRun();
    openPanel();
  }

  const drawEvents = () => {
    const slider = $("#slider");
    const last = events.length ? events[events.length - 1].seq : 1;
    slider.max = String(last);
    slider.value = String(at ?? last);
    $("#at-label").textContent = `${at ?? last} of ${last}${at === null ? " (live)" : ""}`;
    $("#events").innerHTML = html`${events.map(
      (e) => html`<tr class="clickable ${e.seq === at ? "current" : ""}" data-seq="${e.seq}">
        <td>${e.seq}</td><td>${when(e.recorded_at)}</td><td class="mono">${e.type}</td>
        <td class="muted">${eventSummary(e)}</td></tr>`,
    )}`;
    for (const row of $$("#events tr")) row.addEventListener("click", () => travel(Number(row.dataset.seq)));
  };

  const refresh = debounce(async () => {
    if (!isCurrent()) return;
    const [fresh, timeline] = await Promise.all([
      api(`/runs/${enc(runId)}`, { query: { at_seq: at } }),
      api(`/runs/${enc(runId)}/attempts`),
    ]);
    run = fresh;
    attempts = timeline.attempts;
    drawRun();
    drawGantt($("#gantt"), attempts, { onSelect: (task) => select(task) });
    drawTaskInfo();
    drawEvents();
  }, 120);

  async function travel(seq) {
    const last = events.length ? events[events.length - 1].seq : null;
    at = seq === null || seq === last ? null : seq;
    remember({ at });
    run = await api(`/runs/${enc(runId)}`, { query: { at_seq: at } });
    drawRun();
    drawEvents();
  }
  $("#slider").addEventListener("input", debounce((ev) => travel(Number(ev.target.value)), 60));

  events = await allEvents(runId);
  if (at !== null) run = await api(`/runs/${enc(runId)}`, { query: { at_seq: at } });
  attempts = (await api(`/runs/${enc(runId)}/attempts`)).attempts;
  drawRun();
  drawGantt($("#gantt"), attempts, { onSelect: (task) => select(task) });
  drawEvents();
  if (selected) openPanel();
  const lastSeq = events.length ? events[events.length - 1].seq : 0;
  let streaming = true;
  stops.push(
    follow(`/runs/${enc(runId)}/events/stream`, { after: lastSeq }, (ev) => {
      if (ev.event === "end") streaming = false;
      if (ev.event === "end" || !ev.data) return;
      if (!events.some((e) => e.seq === ev.data.seq)) events.push(ev.data);
      if (at === null) refresh();
      else drawEvents();
    }),
  );
  // a rerun reopens a finished run: its event stream ended, so keep watching its events
  // (until the end of the rerun too, however long it takes)
  const watch = setInterval(async () => {
    if ((streaming && !TERMINAL.has(run.status)) || at !== null) return;
    const page = await api(`/runs/${enc(runId)}/events`, { query: { after: events[events.length - 1]?.seq ?? 0 } }).catch(() => null);
    if (page?.events.length) {
      events.push(...page.events);
      refresh();
    }
  }, 1500);
  return () => {
    stops.forEach((stop) => stop());
    if (stopLogs) stopLogs();
    clearInterval(watch);
  };
}

// Workflows: the list, and a workflow's page (graph, code, versions and their diff,
// grid of recent runs x tasks, and the trigger form generated from its params).

import { api, badge, enc, errorBox, esc, html, inZone, raw, when, $, $$ } from "../lib.js";
import { can, navigate } from "../app.js";
import { drawGraph } from "../graph.js";

/* global hljs, Diff */

export async function workflowsView({ main }) {
  document.title = "Workflows · durable";
  const { workflows } = await api("/workflows");
  const rows = workflows.map(
    (w) => html`<tr>
      <td><a href="/ui/workflows/${enc(w.name)}">${w.name}</a><div class="muted">${w.description}</div></td>
      <td>${w.tasks}</td>
      <td>${w.triggers.join(", ") || html`<span class="muted">API only</span>`}</td>
      <td>${w.last_run ? html`<a href="/ui/runs/${enc(w.last_run.run_id)}">${badge(w.last_run.status)}</a>
        <div class="muted">${when(w.last_run.created_at)}</div>` : html`<span class="muted">never ran</span>`}</td>
      <td><span class="dots">${w.recent.map((s) => html`<i class="dot s-${s}" title="${s}"></i>`)}</span></td>
      <td>${w.success_rate === null ? "" : `${Math.round(w.success_rate * 100)} %`}</td>
      <td>${w.next_fire ? when(w.next_fire) : html`<span class="muted">—</span>`}</td>
    </tr>`,
  );
  main.innerHTML = html`<h1>Workflows</h1>
    <table class="workflows"><thead><tr><th>Workflow</th><th>Tasks</th><th>Triggers</th>
    <th>Last run</th><th>Recent runs</th><th>Success</th><th>Next run</th></tr></thead>
    <tbody>${rows}</tbody></table>`;
}

function tabs(name, here) {
  const tab = (path, text) =>
    html`<a class="${here === path ? "here" : ""}" href="/ui/workflows/${enc(name)}${path ? `/${path}` : ""}">${text}</a>`;
  return html`<div class="tabs">${tab("", "Graph")} ${tab("trigger", "Trigger")} ${tab("code", "Code")}
    ${tab("versions", "Versions")} ${tab("grid", "Grid")}
    <a href="/ui/runs?workflow=${enc(name)}">Runs</a></div>`;
}

export async function workflowView({ main, params, query }) {
  const [name, tab = ""] = params;
  const wf = await api(`/workflows/${enc(name)}`);
  document.title = `${name} · durable`;
  main.innerHTML = html`<h1>${name} <span class="muted mono">${wf.version}</span></h1>
    <p class="muted">${wf.definition.description ?? ""}</p>${tabs(name, tab)}<div id="tab"></div>`;
  const el = $("#tab");
  if (tab === "") return overview(el, wf);
  if (tab === "trigger") return triggerForm(el, wf);
  if (tab === "code") return code(el, name);
  if (tab === "versions") return versions(el, wf, query);
  return grid(el, name, query);
}

export function specGraph(graph) {
  const nodes = graph.nodes.map((n) => ({ id: n.id, kind: n.kind }));
  return [nodes, graph.edges];
}

function overview(el, wf) {
  const s = wf.schedule;
  el.innerHTML = html`<div class="graph-box" id="graph"></div>
    <div class="row"><div class="card grow"><h3>Schedule</h3>${
      s
        ? html`<dl class="kv"><dt>When</dt><dd class="mono">${s.cron ?? `every ${s.every_seconds} s`}</dd>
          <dt>Time zone</dt><dd>${s.timezone}</dd><dt>Catch-up</dt><dd>${s.catchup}</dd>
          <dt>Next run</dt><dd>${inZone(s.next_fire, s.timezone)} · ${inZone(s.next_fire, "UTC")}</dd>
          <dt>Paused</dt><dd>${s.paused ? "yes" : "no"}</dd></dl>`
        : html`<p class="muted">No schedule.</p>`
    }</div>
    <div class="card grow"><h3>Triggers</h3><p>${wf.triggers.length ? wf.triggers.join(", ") : "API and CLI only"}</p>
    <h3>Params</h3>${paramsTable(wf.params)}</div></div>`;
  const [nodes, edges] = specGraph(wf.graph);
  drawGraph($("#graph"), nodes, edges);
}

function paramsTable(params) {
  const names = Object.keys(params);
  if (!names.length) return html`<p class="muted">None.</p>`;
  return html`<table><tr><th>Name</th><th>Type</th><th>Default</th><th></th></tr>${names.map(
    (n) => html`<tr><td class="mono">${n}</td><td>${params[n].type ?? "str"}</td>
      <td class="mono">${params[n].required ? "required" : JSON.stringify(params[n].default ?? null)}</td>
      <td class="muted">${params[n].description ?? ""}</td></tr>`,
  )}</table>`;
}

function input(name, p) {
  const type = p.type ?? "str";
  const value = p.default;
  const common = `name="${esc(name)}" id="param-${esc(name)}" data-type="${esc(type)}"${p.required ? " required" : ""}`;
  if (type === "bool") {
    return raw(`<select ${common}><option value="">${value === undefined ? "" : `(default: ${esc(value)})`}</option>
      <option value="true">true</option><option value="false">false</option></select>`);
  }
  if (type === "json") {
    return raw(`<textarea ${common} placeholder='${esc(JSON.stringify(value ?? null))}'></textarea>`);
  }
  const html5 = { int: "number", float: "number", date: "date" }[type] ?? "text";
  const step = type === "int" ? ' step="1"' : type === "float" ? ' step="any"' : "";
  const hint = value === undefined || value === null ? "" : ` placeholder="${esc(value)}"`;
  return raw(`<input type="${html5}"${step}${hint} ${common}>`);
}

/** The typed value of a form field: numbers as numbers, JSON parsed; what cannot be
 * read is sent as typed, so the API's own validation message names it. */
function typedValue(field) {
  const text = field.value;
  switch (field.dataset.type) {
    case "int":
    case "float":
      return text.trim() === "" || Number.isNaN(Number(text)) ? text : Number(text);
    case "bool":
      return text === "true" ? true : text === "false" ? false : text;
    case "json":
      try {
        return JSON.parse(text);
      } catch {
        return text;
      }
    default:
      return text;
  }
}

function triggerForm(el, wf) {
  const names = Object.keys(wf.params);
  el.innerHTML = html`<form id="trigger" class="card" novalidate>
    ${names.map(
      (n) => html`<label><span>${n} <span class="muted">${wf.params[n].type ?? "str"}${
        wf.params[n].required ? ", required" : ""
      }</span></span>${input(n, wf.params[n])}
      <div class="muted">${wf.params[n].description ?? ""}</div>
      <div class="field-error" data-for="${n}"></div></label>`,
    )}
    ${names.length ? "" : html`<p class="muted">This workflow takes no params.</p>`}
    <label><span>Logical date <span class="muted">optional</span></span>
      <input type="datetime-local" name="logical_date" step="1"></label>
    <button class="primary" type="submit" ${can("trigger") ? "" : "disabled"}>Start a run</button>
    ${can("trigger") ? "" : html`<span class="muted">your token cannot trigger runs</span>`}
    <div class="form-error"></div></form>`;
  $("#trigger").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    $$(".field-error", el).forEach((e) => (e.textContent = ""));
    $(".form-error", el).innerHTML = "";
    const params = {};
    for (const field of $$("[data-type]", el)) {
      if (field.value === "") continue; // the default applies (or the API says it is required)
      params[field.name] = typedValue(field);
    }
    const logical = ev.target.elements.logical_date.value;
    const body = { params };
    if (logical) body.logical_date = new Date(logical).toISOString();
    try {
      const started = await api(`/workflows/${enc(wf.name)}/runs`, { method: "POST", body });
      navigate(`/ui/runs/${enc(started.run_id)}`);
    } catch (error) {
      const field = /param '([^']+)'/.exec(error.detail ?? "")?.[1];
      const slot = field && $(`.field-error[data-for="${CSS.escape(field)}"]`, el);
      if (slot) slot.textContent = error.detail;
      $(".form-error", el).innerHTML = errorBox(error);
    }
  });
}

function highlighted(text, language) {
  if (typeof hljs === "undefined") return esc(text);
  return hljs.highlight(text, { language, ignoreIllegals: true }).value;
}

async function code(el, name) {
  const source = await api(`/workflows/${enc(name)}/source`);
  el.innerHTML = html`<div class="code"><p class="muted mono">${source.path ?? ""}</p>
    <pre><code class="hljs language-${source.language}">${raw(highlighted(source.text, source.language))}</code></pre></div>`;
}

async function versions(el, wf, query) {
  const list = wf.versions;
  const newest = list.length ? list[list.length - 1].version : wf.version;
  const a = query.get("a") ?? (list.length > 1 ? list[list.length - 2].version : newest);
  const b = query.get("b") ?? newest;
  const pick = (key, chosen) =>
    html`<select name="${key}">${list.map((v) => html`<option value="${v.version}" ${v.version === chosen ? "selected" : ""}>${v.version} · ${when(v.first_seen)}</option>`)}</select>`;
  el.innerHTML = html`<table><tr><th>Version</th><th>First seen</th><th>Runs</th><th>File</th></tr>
    ${[...list].reverse().map((v) => html`<tr><td class="mono">${v.version}${v.version === wf.version ? " (loaded)" : ""}</td>
      <td>${when(v.first_seen)}</td><td>${v.runs}</td><td class="mono muted">${v.source ?? ""}</td></tr>`)}</table>
    <form class="toolbar" id="diffpick">Diff ${pick("a", a)} → ${pick("b", b)} <button type="submit">Show diff</button></form>
    <div class="diff" id="diff"></div>`;
  $("#diffpick").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const f = ev.target.elements;
    navigate(`/ui/workflows/${enc(wf.name)}/versions?a=${enc(f.a.value)}&b=${enc(f.b.value)}`);
  });
  if (!list.length) return;
  const [va, vb] = await Promise.all(
    [a, b].map((v) => api(`/workflows/${enc(wf.name)}/versions/${enc(v)}`)),
  );
  const textOf = (v) => v.source_text ?? `${JSON.stringify(v.definition, null, 2)}\n`;
  const parts = Diff.diffLines(textOf(va), textOf(vb));
  const lines = parts.map((p) => {
    const cls = p.added ? "add" : p.removed ? "del" : "";
    const mark = p.added ? "+" : p.removed ? "-" : " ";
    const body = p.value.replace(/\n$/, "").split("\n").map((l) => `${mark} ${l}`).join("\n");
    return cls ? html`<span class="${cls}">${body}</span>` : html`${body}\n`;
  });
  const changed = parts.some((p) => p.added || p.removed);
  $("#diff").innerHTML = html`<h3>${a} → ${b}</h3>${changed ? "" : html`<p class="muted">No difference.</p>`}<pre>${lines}</pre>`;
}

async function grid(el, name, query) {
  const limit = Number(query.get("limit") ?? 25);
  const data = await api(`/workflows/${enc(name)}/grid`, { query: { limit } });
  if (!data.runs.length) {
    el.innerHTML = html`<p class="muted">No runs yet.</p>`;
    return;
  }
  const runs = [...data.runs].reverse(); // oldest left, newest right, as in Airflow's grid
  el.innerHTML = html`<table class="grid"><thead><tr><th>Task</th>${runs.map(
    (r) => html`<th class="run"><a href="/ui/runs/${enc(r.run_id)}" title="${r.status}">${when(r.logical_time ?? r.created_at)}</a></th>`,
  )}</tr><tr><th>Run</th>${runs.map((r) => html`<td class="cell"><a class="s-${r.status}" href="/ui/runs/${enc(r.run_id)}" title="run ${r.run_id}: ${r.status}"></a></td>`)}</tr></thead>
    <tbody>${data.tasks.map(
      (t) => html`<tr><td class="mono">${t}</td>${runs.map((r) => {
        const cell = r.cells[t];
        if (!cell) return html`<td class="cell"></td>`;
        return html`<td class="cell"><a class="s-${cell.status}" data-task="${t}" data-run="${r.run_id}"
          href="/ui/runs/${enc(r.run_id)}?task=${enc(t)}" title="${t} · ${cell.status} · attempt ${cell.attempt}"></a></td>`;
      })}</tr>`,
    )}</tbody></table>`;
}

// Shared helpers of the console: escaped HTML templates, the API client, formatting.
// The console reads and acts only through the HTTP API (/api/v1), with the session
// cookie the login set; unsafe requests repeat the CSRF cookie in X-CSRF-Token.

const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

export const esc = (value) => String(value ?? "").replace(/[&<>"']/g, (c) => ESCAPES[c]);

class Raw {
  constructor(text) {
    this.text = text;
  }
  toString() {
    return this.text;
  }
}

/** Trusted HTML (already escaped, or built by `html`). */
export const raw = (text) => new Raw(text);

function piece(value) {
  if (value instanceof Raw) return value.text;
  if (Array.isArray(value)) return value.map(piece).join("");
  if (value === null || value === undefined || value === false) return "";
  return esc(value);
}

/** A template whose interpolated values are escaped (arrays joined, Raw kept). */
export function html(strings, ...values) {
  let out = strings[0];
  values.forEach((v, i) => {
    out += piece(v) + strings[i + 1];
  });
  return raw(out);
}

export function cookie(name) {
  for (const part of document.cookie.split(";")) {
    const [k, ...v] = part.trim().split("=");
    if (k === name) return decodeURIComponent(v.join("="));
  }
  return "";
}

export class ApiError extends Error {
  constructor(status, title, detail) {
    super(detail || title);
    this.status = status;
    this.title = title;
    this.detail = detail;
  }
}

const listeners = { outage: [], unauthorized: [] };
export const on = (what, fn) => listeners[what].push(fn);
const emit = (what, value) => listeners[what].forEach((fn) => fn(value));

/** A call to the API: the decoded JSON, or an ApiError (status 0: no answer at all). */
export async function api(path, { method = "GET", body, query } = {}) {
  const url = new URL(`/api/v1${path}`, location.origin);
  for (const [k, v] of Object.entries(query ?? {})) {
    if (v !== null && v !== undefined && v !== "") url.searchParams.set(k, v);
  }
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET") headers["X-CSRF-Token"] = cookie("durable_csrf");
  let response;
  try {
    response = await fetch(url, {
      method,
      headers,
      credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    emit("outage", true);
    throw new ApiError(0, "no answer", "the durable service does not answer");
  }
  emit("outage", response.status === 503);
  const data = response.status === 204 ? null : await response.json().catch(() => null);
  if (response.status === 401 && !(path === "/session" && method === "POST")) {
    emit("unauthorized", path); // an expired or revoked token: back to the login page
    throw new ApiError(401, "logged out", "log in again");
  }
  if (response.status === 204) return null;
  if (!response.ok) {
    throw new ApiError(response.status, data?.title ?? response.statusText, data?.detail ?? "");
  }
  return data;
}

/** Every page of a run's events. */
export async function allEvents(runId) {
  const events = [];
  let after = 0;
  for (;;) {
    const page = await api(`/runs/${encodeURIComponent(runId)}/events`, {
      query: { after, limit: 1000 },
    });
    events.push(...page.events);
    if (!page.more) return events;
    after = page.next_after;
  }
}

export const enc = encodeURIComponent;

export function when(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return d.toLocaleString(undefined, {
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
  });
}

export function inZone(iso, timeZone) {
  if (!iso) return "";
  try {
    return new Date(iso).toLocaleString("sv-SE", { timeZone, timeZoneName: "short" });
  } catch {
    return iso;
  }
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined) return "";
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const m = Math.floor(seconds / 60);
  if (m < 60) return `${m} min ${Math.round(seconds % 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

export function between(a, b) {
  if (!a) return null;
  return ((b ? new Date(b) : new Date()) - new Date(a)) / 1000;
}

export const badge = (status) => html`<span class="badge s-${status}">${status}</span>`;

export function json(value) {
  return JSON.stringify(value, null, 2);
}

export function preview(value, max = 80) {
  if (value === null || value === undefined) return "";
  const text = typeof value === "string" ? value : JSON.stringify(value);
  return text.length > max ? `${text.slice(0, max)}…` : text;
}

/** Messages of a failed action, shown where the action is. */
export function errorBox(error) {
  if (!(error instanceof ApiError)) return html`<div class="error">${String(error)}</div>`;
  return html`<div class="error" role="alert"><b>${error.title}</b>: ${error.detail}</div>`;
}

export function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

export const $ = (sel, root = document) => root.querySelector(sel);
export const $$ = (sel, root = document) => [...root.querySelectorAll(sel)];

/**
 * Follow a server-sent event stream of the API (fetch, so the session cookie goes with
 * it): `onEvent({id, event, data})` per event; reconnects from the last id when the
 * connection drops, until an `end` event or `stop()`.
 */
export function follow(path, query, onEvent) {
  const controller = new AbortController();
  let lastId = query.after ?? "";
  let stopped = false;
  const run = async () => {
    while (!stopped) {
      const url = new URL(`/api/v1${path}`, location.origin);
      for (const [k, v] of Object.entries({ ...query, after: lastId })) {
        if (v !== null && v !== undefined && v !== "") url.searchParams.set(k, v);
      }
      try {
        const response = await fetch(url, {
          credentials: "same-origin",
          headers: { Accept: "text/event-stream" },
          signal: controller.signal,
        });
        if (response.status === 401) {
          emit("unauthorized", path);
          return;
        }
        emit("outage", response.status === 503);
        if (!response.ok) throw new Error(`${response.status}`);
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          let cut;
          while ((cut = buffer.indexOf("\n\n")) >= 0) {
            const block = buffer.slice(0, cut);
            buffer = buffer.slice(cut + 2);
            const ev = { id: null, event: "message", data: "" };
            for (const line of block.split("\n")) {
              if (line.startsWith("id: ")) ev.id = line.slice(4);
              else if (line.startsWith("event: ")) ev.event = line.slice(7);
              else if (line.startsWith("data: ")) ev.data += line.slice(6);
            }
            if (!ev.data && ev.event === "message") continue; // a keep-alive comment
            if (ev.id) lastId = ev.id;
            onEvent({ ...ev, data: ev.data ? JSON.parse(ev.data) : null });
            if (ev.event === "end") {
              stopped = true;
              return;
            }
          }
        }
      } catch (error) {
        if (stopped || error.name === "AbortError") return;
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
  };
  run();
  return () => {
    stopped = true;
    controller.abort();
  };
}

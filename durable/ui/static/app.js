// The console's shell: session, navigation, routing of /ui/... URLs to views, the
// database banner, and the not-found page. Each view is `async (ctx) => cleanup?`.

import { api, ApiError, errorBox, html, on, $ } from "./lib.js";
import { workflowsView, workflowView } from "./views/workflows.js";
import { runsView } from "./views/runs.js";
import { runView } from "./views/run.js";
import { backfillsView, schedulesView, assetsView, deadLettersView, notificationsView } from "./views/ops.js";

const ROUTES = [
  [/^\/ui\/?$/, workflowsView],
  [/^\/ui\/workflows\/?$/, workflowsView],
  [/^\/ui\/workflows\/([^/]+)(?:\/(code|versions|grid|trigger))?\/?$/, workflowView],
  [/^\/ui\/runs\/?$/, runsView],
  [/^\/ui\/runs\/([^/]+)\/?$/, runView],
  [/^\/ui\/backfills\/?$/, backfillsView],
  [/^\/ui\/schedules\/?$/, schedulesView],
  [/^\/ui\/assets\/?$/, assetsView],
  [/^\/ui\/dead-letters\/?$/, deadLettersView],
  [/^\/ui\/notifications\/?$/, notificationsView],
  [/^\/ui\/login\/?$/, loginView],
];

const session = { user: null };
let cleanup = null;
let generation = 0;

export function can(scope) {
  const scopes = session.user?.scopes ?? [];
  return scopes.includes("admin") || scopes.includes(scope);
}

export function navigate(url, { replace = false } = {}) {
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  render();
}

/** Change the URL's query (e.g. the selected task) without drawing the view again. */
export function remember(params) {
  const url = new URL(location.href);
  for (const [k, v] of Object.entries(params)) {
    if (v === null || v === undefined || v === "") url.searchParams.delete(k);
    else url.searchParams.set(k, v);
  }
  history.replaceState(null, "", url);
}

export function notFound(main, detail) {
  document.title = "Not found · durable";
  main.innerHTML = html`<section class="notfound"><h1>404 — not found</h1>
    <p>${detail}</p><p><a href="/ui/">Back to the workflows</a></p></section>`;
}

function toLogin() {
  if (location.pathname.startsWith("/ui/login")) return;
  session.user = null;
  const next = location.pathname + location.search;
  navigate(`/ui/login?next=${encodeURIComponent(next)}`, { replace: true });
}

async function loginView({ main }) {
  document.title = "Log in · durable";
  $("#nav").hidden = true;
  main.innerHTML = html`<section class="login">
    <h1>durable</h1>
    <form id="login">
      <label>API token <input name="token" type="password" autocomplete="current-password"
        placeholder="dtk_..." required autofocus></label>
      <button type="submit">Log in</button>
      <p class="muted">The first <code>durable up</code> printed an admin token;
        <code>durable tokens create NAME --scope read</code> makes more.</p>
      <div class="form-error"></div>
    </form></section>`;
  $("#login").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const token = new FormData(ev.target).get("token");
    try {
      session.user = await api("/session", { method: "POST", body: { token } });
      const next = new URLSearchParams(location.search).get("next");
      navigate(next && next.startsWith("/ui/") && !next.startsWith("/ui/login") ? next : "/ui/");
    } catch (error) {
      $(".form-error").innerHTML = errorBox(error);
    }
  });
}

async function logOut() {
  await api("/session", { method: "DELETE" }).catch(() => null);
  session.user = null;
  navigate("/ui/login");
}

function drawNav() {
  const nav = $("#nav");
  nav.hidden = false;
  const here = location.pathname;
  const link = (href, text) =>
    html`<a href="${href}" class="${here.startsWith(href) && href !== "/ui/" ? "here" : ""}">${text}</a>`;
  nav.innerHTML = html`<a class="brand" href="/ui/">durable</a>
    ${link("/ui/workflows", "Workflows")} ${link("/ui/runs", "Runs")}
    ${link("/ui/backfills", "Backfills")} ${link("/ui/schedules", "Schedules")}
    ${link("/ui/assets", "Assets")} ${link("/ui/dead-letters", "Dead letters")}
    ${link("/ui/notifications", "Notifications")}
    <span class="spacer"></span>
    <span class="who">${session.user?.name} (${(session.user?.scopes ?? []).join(", ")})</span>
    <button id="logout" class="link">Log out</button>`;
  $("#logout").addEventListener("click", logOut);
}

let outageRetry = null;
function banner(down) {
  const el = $("#banner");
  if (down === !el.hidden) return;
  el.hidden = !down;
  if (down && !outageRetry) {
    // keep asking; the first answer that is not a 503 hides the banner and redraws
    outageRetry = setInterval(async () => {
      try {
        await api("/session");
        clearInterval(outageRetry);
        outageRetry = null;
        render();
      } catch {
        /* still away */
      }
    }, 2000);
  }
}

async function render() {
  const mine = ++generation;
  if (cleanup) {
    try {
      cleanup();
    } catch {
      /* a view's cleanup never stops navigation */
    }
    cleanup = null;
  }
  const main = $("#main");
  const path = location.pathname;
  const query = new URLSearchParams(location.search);
  if (!path.startsWith("/ui/login") && !session.user) {
    try {
      session.user = await api("/session");
    } catch (error) {
      if (error.status !== 401) main.innerHTML = errorBox(error);
      return;
    }
  }
  for (const [pattern, view] of ROUTES) {
    const match = path.match(pattern);
    if (!match) continue;
    if (view !== loginView) drawNav();
    const params = match.slice(1).map((p) => (p === undefined ? p : decodeURIComponent(p)));
    main.innerHTML = '<p class="muted loading">Loading…</p>';
    try {
      const done = await view({ main, params, query, isCurrent: () => mine === generation });
      if (mine === generation) cleanup = done ?? null;
      else if (done) done();
    } catch (error) {
      if (mine !== generation) return;
      if (error instanceof ApiError && error.status === 404) notFound(main, error.detail);
      else if (error instanceof ApiError && error.status === 401) return;
      else main.innerHTML = errorBox(error);
    }
    return;
  }
  drawNav();
  notFound(main, `the console has no page ${path}`);
}

on("unauthorized", toLogin);
on("outage", banner);
window.addEventListener("popstate", render);
document.addEventListener("click", (ev) => {
  const a = ev.target.closest("a[href]");
  if (!a || a.target || ev.ctrlKey || ev.metaKey || ev.shiftKey || ev.button !== 0) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || !url.pathname.startsWith("/ui/")) return;
  ev.preventDefault();
  navigate(url.pathname + url.search);
});
render();

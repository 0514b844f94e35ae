// The Gantt timeline of a run's attempts: one row per attempt (retries and rerun
// generations on rows of their own), queue time (scheduled -> started) drawn light,
// run time (started -> finished, or now) in the attempt's status colour.

import { esc, duration } from "./lib.js";

const ROW = 22;
const LABEL = 220;
const WIDTH = 900;

export function drawGantt(el, attempts, { onSelect = null } = {}) {
  if (!attempts.length) {
    el.innerHTML = '<p class="muted">No attempt yet.</p>';
    return;
  }
  const now = Date.now();
  const t = (iso) => (iso ? new Date(iso).getTime() : null);
  const starts = attempts.map((a) => t(a.scheduled_at) ?? t(a.started_at)).filter((v) => v !== null);
  const ends = attempts.map((a) => t(a.finished_at) ?? (a.started_at || a.scheduled_at ? now : null));
  const t0 = Math.min(...starts);
  const t1 = Math.max(t0 + 1, ...ends.filter((v) => v !== null));
  const scale = (WIDTH - LABEL - 20) / (t1 - t0);
  const x = (ms) => LABEL + (ms - t0) * scale;
  const height = attempts.length * ROW + 30;
  const parts = [
    `<svg class="gantt" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${WIDTH} ${height}" width="${WIDTH}" height="${height}">`,
  ];
  for (let i = 0; i <= 4; i++) {
    const at = LABEL + ((WIDTH - LABEL - 20) * i) / 4;
    parts.push(
      `<line class="tick" x1="${at}" x2="${at}" y1="0" y2="${height - 18}"/>` +
        `<text class="tick" x="${at}" y="${height - 4}" text-anchor="middle">+${esc(duration(((t1 - t0) * i) / 4000))}</text>`,
    );
  }
  attempts.forEach((a, row) => {
    const y = row * ROW + 4;
    const scheduled = t(a.scheduled_at);
    const started = t(a.started_at);
    const finished = t(a.finished_at) ?? now;
    const gen = a.generation > 1 ? ` · gen ${a.generation}` : "";
    parts.push(
      `<g class="bar s-${esc(a.status)}" data-task="${esc(a.task)}" data-attempt="${a.attempt}">` +
        `<title>${esc(a.task)} attempt ${a.attempt}${esc(gen)}: ${esc(a.status)}` +
        `${scheduled && started ? `, queued ${esc(duration((started - scheduled) / 1000))}` : ""}` +
        `${started ? `, ran ${esc(duration((finished - started) / 1000))}` : ""}</title>` +
        `<text class="row" x="4" y="${y + 13}">${esc(a.task)} #${a.attempt}${esc(gen)}</text>`,
    );
    if (scheduled !== null) {
      const end = started ?? finished;
      parts.push(
        `<rect class="queued" x="${x(scheduled)}" y="${y + 3}" width="${Math.max(1, x(end) - x(scheduled))}" height="${ROW - 8}"/>`,
      );
    }
    if (started !== null) {
      parts.push(
        `<rect class="ran" x="${x(started)}" y="${y}" width="${Math.max(2, x(finished) - x(started))}" height="${ROW - 4}" rx="2"/>`,
      );
    }
    parts.push("</g>");
  });
  parts.push("</svg>");
  el.innerHTML = parts.join("");
  if (onSelect) {
    for (const bar of el.querySelectorAll("g.bar")) {
      bar.addEventListener("click", () => onSelect(bar.dataset.task, Number(bar.dataset.attempt)));
    }
  }
}

// DAGs drawn as SVG, laid out left to right by dagre (a Sugiyama layout).
// Task kinds have distinct shapes: switch a hexagon, map a stack, sensors and sleeps a
// rounded pill, action tasks a box; statuses are CSS classes (s-succeeded, ...).

import { esc } from "./lib.js";

/* global dagre */

const NODE_H = 44;
const CHAR_W = 7.4;

function shape(kind, w, h) {
  if (kind === "switch") {
    const d = 12;
    return `<polygon class="shape" points="${d},0 ${w - d},0 ${w},${h / 2} ${w - d},${h} ${d},${h} 0,${h / 2}"/>`;
  }
  if (kind === "map") {
    return (
      `<rect class="shape stack" x="6" y="-6" width="${w}" height="${h}" rx="4"/>` +
      `<rect class="shape stack" x="3" y="-3" width="${w}" height="${h}" rx="4"/>` +
      `<rect class="shape" width="${w}" height="${h}" rx="4"/>`
    );
  }
  if (kind === "sleep" || kind === "sensor" || kind === "noop") {
    return `<rect class="shape" width="${w}" height="${h}" rx="${h / 2}"/>`;
  }
  if (kind === "asset") {
    return `<rect class="shape asset" width="${w}" height="${h}" rx="12"/>`;
  }
  if (kind === "workflow") {
    return `<rect class="shape workflow" width="${w}" height="${h}" rx="2"/>`;
  }
  return `<rect class="shape" width="${w}" height="${h}" rx="4"/>`;
}

function edgePath(points) {
  const [first, ...rest] = points;
  let d = `M${first.x},${first.y}`;
  if (rest.length === 1) return `${d} L${rest[0].x},${rest[0].y}`;
  for (let i = 0; i < rest.length - 1; i++) {
    const mid = { x: (rest[i].x + rest[i + 1].x) / 2, y: (rest[i].y + rest[i + 1].y) / 2 };
    d += ` Q${rest[i].x},${rest[i].y} ${mid.x},${mid.y}`;
  }
  const last = rest[rest.length - 1];
  return `${d} L${last.x},${last.y}`;
}

/**
 * Draw `nodes` ({id, kind, label?, sub?, status?, classes?}) and `edges` ({source,
 * target}) into `el`. `onSelect(id)` is called when a node is clicked.
 */
export function drawGraph(el, nodes, edges, { onSelect = null, selected = null } = {}) {
  const g = new dagre.graphlib.Graph();
  g.setGraph({ rankdir: "LR", nodesep: 18, ranksep: 46, marginx: 12, marginy: 12 });
  g.setDefaultEdgeLabel(() => ({}));
  const known = new Set();
  for (const n of nodes) {
    const label = n.label ?? n.id;
    const width = Math.max(90, Math.min(260, Math.max(label.length, (n.sub ?? "").length) * CHAR_W + 28));
    g.setNode(n.id, { width, height: NODE_H, data: n });
    known.add(n.id);
  }
  for (const e of edges) {
    if (known.has(e.source) && known.has(e.target)) g.setEdge(e.source, e.target);
  }
  dagre.layout(g);
  const { width, height } = g.graph();
  const parts = [
    `<svg class="graph" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${width + 8} ${height + 8}" width="${width + 8}" height="${height + 8}" role="img">`,
    '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z"/></marker></defs>',
  ];
  for (const e of g.edges()) {
    parts.push(`<path class="edge" marker-end="url(#arrow)" d="${edgePath(g.edge(e).points)}"/>`);
  }
  for (const id of g.nodes()) {
    const box = g.node(id);
    const n = box.data;
    const x = box.x - box.width / 2;
    const y = box.y - box.height / 2;
    const classes = ["node", `k-${n.kind}`, n.status ? `s-${n.status}` : "", ...(n.classes ?? [])];
    if (selected === id) classes.push("selected");
    parts.push(
      `<g class="${classes.join(" ")}" data-id="${esc(id)}" transform="translate(${x},${y})" tabindex="0">` +
        `<title>${esc(id)} (${esc(n.kind)}${n.status ? `, ${esc(n.status)}` : ""})</title>` +
        shape(n.kind, box.width, box.height) +
        `<text class="label" x="12" y="19">${esc(n.label ?? id)}</text>` +
        `<text class="sub" x="12" y="34">${esc(n.sub ?? n.kind)}</text>` +
        "</g>",
    );
  }
  parts.push("</svg>");
  el.innerHTML = parts.join("");
  if (onSelect) {
    for (const node of el.querySelectorAll("g.node")) {
      const pick = () => onSelect(node.dataset.id);
      node.addEventListener("click", pick);
      node.addEventListener("keydown", (ev) => ev.key === "Enter" && pick());
    }
  }
}

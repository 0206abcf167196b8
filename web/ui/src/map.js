// The service map: cards grouped by namespace (external addresses in a
// group of their own), edges with rates, drops in red, L7 errors in amber.
// Positions are computed here, not by a force layout: a grid per
// namespace, so that 3,000 cards lay out in milliseconds and the same map
// always looks the same.
import { h } from 'preact';
import { useRef, useEffect } from 'preact/hooks';
import htm from 'htm';
import cytoscape from 'cytoscape';

const html = htm.bind(h);

export const DROP_COLOR = '#dc2626';
export const ERROR_COLOR = '#d97706';
export const OK_COLOR = '#64748b';

const CARD_W = 320;
const CARD_H = 130;
const GROUP_GAP = 120;
const GROUP_PAD = 24;
// Beyond this many edges, edges are straight and unlabelled: bezier
// curves and labels cost the most to draw.
const BIG = 400;

function groupOf(n) {
  return n.namespace ? `ns:${n.namespace}` : 'ns:(external)';
}

// layout places the cards of each group on a grid of about √n columns,
// and the groups side by side in rows about as wide as the widest group.
// Groups are plain boxes drawn under their cards, not compound nodes:
// cytoscape keeps compound bounds up to date at a cost that made 3,000
// cards take seconds.
function layout(nodes) {
  const groups = new Map();
  for (const n of nodes) {
    const g = groupOf(n);
    if (!groups.has(g)) groups.set(g, []);
    groups.get(g).push(n);
  }
  const names = [...groups.keys()].sort((a, b) => (a === 'ns:(external)') - (b === 'ns:(external)') || a.localeCompare(b));
  const pos = new Map();
  const boxes = [];
  const rowWidth = Math.max(4, Math.ceil(Math.sqrt(nodes.length) * 1.6)) * CARD_W;
  let x0 = 0;
  let y0 = 0;
  let rowH = 0;
  for (const g of names) {
    const members = groups.get(g).sort((a, b) => a.name.localeCompare(b.name));
    const cols = Math.max(1, Math.ceil(Math.sqrt(members.length)));
    const w = cols * CARD_W;
    const hgt = Math.ceil(members.length / cols) * CARD_H;
    if (x0 > 0 && x0 + w > rowWidth) {
      x0 = 0;
      y0 += rowH + GROUP_GAP;
      rowH = 0;
    }
    members.forEach((n, i) => pos.set(n.id, { x: x0 + (i % cols) * CARD_W, y: y0 + Math.floor(i / cols) * CARD_H }));
    boxes.push({ id: g, x: x0 + (w - CARD_W) / 2, y: y0 + (hgt - CARD_H) / 2, w: w - CARD_W + 150 + 2 * GROUP_PAD, h: hgt - CARD_H + 40 + 2 * GROUP_PAD });
    x0 += w + GROUP_GAP;
    rowH = Math.max(rowH, hgt);
  }
  return { pos, boxes };
}

function rate(n, seconds) {
  const r = n / seconds;
  if (r >= 10) return `${r.toFixed(0)}/s`;
  if (r >= 0.1) return `${r.toFixed(1)}/s`;
  return `${(r * 60).toFixed(1)}/min`;
}

// shortDuration rounds a Go duration ("2.992ms") to two digits ("3ms").
function shortDuration(d) {
  const m = /^([0-9.]+)([^0-9.]+)$/.exec(d);
  return m ? `${Number(Number(m[1]).toPrecision(2))}${m[2]}` : d;
}

// edgeLabel is an edge's rate, port, drops and L7 error rate.
export function edgeLabel(e, seconds) {
  let s = `${e.port ? `${e.protocol}/${e.port} ` : ''}${rate(e.flows, seconds)}`;
  if (e.dropped) s += ` · ${e.dropped} dropped`;
  if (e.l7Requests) s += ` · ${((100 * e.l7Errors) / e.l7Requests).toFixed(0)}% err`;
  if (e.l7P95) s += ` · p95 ${shortDuration(e.l7P95)}`;
  return s;
}

export const style = [
  { selector: 'node', style: {
    'z-index-compare': 'manual', 'z-index': 2, shape: 'round-rectangle', width: 150, height: 38, 'background-color': '#ffffff', 'border-width': 1, 'border-color': '#94a3b8',
    label: 'data(label)', 'text-valign': 'center', 'text-halign': 'center', 'font-size': 12, color: '#0f172a',
    // Labels too small to read are not drawn: at the zoom that fits
    // thousands of cards that saves most of the drawing.
    'min-zoomed-font-size': 7,
  } },
  { selector: 'node[kind = "External"]', style: { 'background-color': '#f1f5f9', 'border-style': 'dashed' } },
  { selector: 'node[kind = "More"]', style: { 'background-color': '#e2e8f0', 'border-style': 'dotted', 'font-style': 'italic' } },
  { selector: 'node.group', style: {
    shape: 'round-rectangle', width: 'data(w)', height: 'data(h)', 'background-color': '#eef2ff', 'background-opacity': 0.6, 'border-color': '#a5b4fc',
    label: 'data(label)', 'text-valign': 'top', 'text-halign': 'center', 'text-margin-y': -4, 'font-size': 14, 'font-weight': 'bold', color: '#3730a3',
    'text-wrap': 'none', 'text-max-width': 2000, 'z-index': 0, events: 'no',
  } },
  { selector: 'edge', style: {
    'z-index-compare': 'manual', 'z-index': 1, width: 'data(width)', 'line-color': OK_COLOR, 'target-arrow-color': OK_COLOR, 'target-arrow-shape': 'triangle', 'curve-style': 'bezier',
    'arrow-scale': 1, 'font-size': 10, 'min-zoomed-font-size': 7, color: '#334155', 'text-background-color': '#ffffff', 'text-background-opacity': 0.85, 'text-rotation': 'none',
  } },
  { selector: 'edge.labelled', style: { label: 'data(label)' } },
  { selector: 'edge.straight', style: { 'curve-style': 'straight' } },
  { selector: 'edge.l7error', style: { 'line-color': ERROR_COLOR, 'target-arrow-color': ERROR_COLOR } },
  { selector: 'edge.drop', style: { 'line-color': DROP_COLOR, 'target-arrow-color': DROP_COLOR, 'line-style': 'solid', color: DROP_COLOR } },
  { selector: 'edge:selected', style: { width: 4, 'overlay-opacity': 0.15 } },
  { selector: 'node:selected', style: { 'border-width': 3, 'border-color': '#4f46e5' } },
];

// MAX_CARDS is how many cards a map draws unless asked for all: the
// busiest ones, the others of each namespace folded into one card. A
// canvas of 3,000 cards takes seconds to draw on a laptop's CPU.
export const MAX_CARDS = 300;

// capMap keeps the max busiest cards of a map and folds the others of
// each namespace (and outside the cluster) into one card of kind More,
// merging their edges.
export function capMap(m, max) {
  if (!m || m.nodes.length <= max) return m;
  const traffic = new Map();
  for (const e of m.edges) {
    traffic.set(e.source, (traffic.get(e.source) || 0) + e.flows);
    traffic.set(e.target, (traffic.get(e.target) || 0) + e.flows);
  }
  const ranked = [...m.nodes].sort((a, b) => (traffic.get(b.id) || 0) - (traffic.get(a.id) || 0) || a.id.localeCompare(b.id));
  const kept = new Set(ranked.slice(0, max).map((n) => n.id));
  const folded = new Map(); // namespace -> More card
  const moreOf = new Map(); // folded card id -> More card id
  const nodes = [];
  for (const n of m.nodes) {
    if (kept.has(n.id)) {
      nodes.push(n);
      continue;
    }
    const ns = n.namespace || '';
    let more = folded.get(ns);
    if (!more) {
      more = { id: `${ns || 'external'}/More`, namespace: n.namespace, kind: 'More', name: '', count: 0 };
      folded.set(ns, more);
      nodes.push(more);
    }
    more.count++;
    moreOf.set(n.id, more.id);
  }
  for (const more of folded.values()) more.name = `${more.count} more`;
  const edges = new Map();
  for (const e of m.edges) {
    const source = moreOf.get(e.source) || e.source;
    const target = moreOf.get(e.target) || e.target;
    const k = `${source}|${target}|${e.port || 0}|${e.protocol || ''}`;
    const x = edges.get(k);
    if (!x) {
      edges.set(k, { ...e, source, target });
      continue;
    }
    for (const f of ['flows', 'dropped', 'packets', 'bytes', 'l7Requests', 'l7Errors']) x[f] = (x[f] || 0) + (e[f] || 0);
  }
  return { ...m, nodes, edges: [...edges.values()], capped: m.nodes.length };
}

export function edgeKey(e) {
  return `${e.source}|${e.target}|${e.port || 0}|${e.protocol || ''}`;
}

function edgeData(e, seconds) {
  return { label: edgeLabel(e, seconds), edge: e, dropped: e.dropped, l7Errors: e.l7Errors, width: Math.min(8, 1 + Math.log10(1 + e.flows)) };
}

function edgeClasses(e, big) {
  return [e.dropped ? 'drop' : '', e.l7Errors ? 'l7error' : '', big ? 'straight' : 'labelled'].filter(Boolean).join(' ');
}

// toElements turns the server's map into cytoscape elements.
export function toElements(m) {
  const { pos, boxes } = layout(m.nodes);
  const els = boxes.map((b) => ({ group: 'nodes', data: { id: b.id, label: b.id === 'ns:(external)' ? 'outside the cluster' : b.id.slice(3), w: b.w, h: b.h },
    position: { x: b.x, y: b.y }, classes: 'group', selectable: false, grabbable: false }));
  for (const n of m.nodes) {
    els.push({ group: 'nodes', data: { id: n.id, label: n.name.length > 22 ? `${n.name.slice(0, 21)}…` : n.name, kind: n.kind, node: n }, position: pos.get(n.id) });
  }
  const big = m.edges.length > BIG;
  for (const e of m.edges) {
    els.push({ group: 'edges', data: { id: edgeKey(e), source: e.source, target: e.target, ...edgeData(e, m.seconds) }, classes: edgeClasses(e, big) });
  }
  return els;
}

// fit zooms to the cards' extent, known from the layout: cytoscape's own
// fit measures every element first, seconds for thousands.
function fit(c, m) {
  const { boxes } = layout(m.nodes);
  if (!boxes.length) return;
  let x0 = Infinity; let y0 = Infinity; let x1 = -Infinity; let y1 = -Infinity;
  for (const b of boxes) {
    x0 = Math.min(x0, b.x - b.w / 2); x1 = Math.max(x1, b.x + b.w / 2);
    y0 = Math.min(y0, b.y - b.h / 2 - 24); y1 = Math.max(y1, b.y + b.h / 2);
  }
  const pad = 30;
  const zoom = Math.max(c.minZoom(), Math.min(1.5, (c.width() - 2 * pad) / (x1 - x0), (c.height() - 2 * pad) / (y1 - y0)));
  c.viewport({ zoom, pan: { x: (c.width() - zoom * (x0 + x1)) / 2, y: (c.height() - zoom * (y0 + y1)) / 2 } });
}

// update redraws the map: in place when the cards are the same (a
// refresh of a live map), from scratch otherwise.
function update(c, m, prev) {
  const same = prev && prev.nodes.length === m.nodes.length && prev.nodes.every((n, i) => n.id === m.nodes[i].id);
  if (!same) {
    c.batch(() => {
      c.elements().remove();
      c.add(toElements(m));
    });
    fit(c, m);
    return;
  }
  const big = m.edges.length > BIG;
  c.batch(() => {
    const keep = new Set();
    for (const e of m.edges) {
      const id = edgeKey(e);
      keep.add(id);
      const el = c.getElementById(id);
      if (el.nonempty()) {
        el.data(edgeData(e, m.seconds));
        el.classes(edgeClasses(e, big));
      } else {
        c.add({ group: 'edges', data: { id, source: e.source, target: e.target, ...edgeData(e, m.seconds) }, classes: edgeClasses(e, big) });
      }
    }
    c.edges().filter((el) => !keep.has(el.id())).remove();
  });
}

// ServiceMap draws a map; onEdge gets a clicked edge, onNode a card.
export function ServiceMap({ map, onEdge, onNode }) {
  const box = useRef(null);
  const cy = useRef(null);
  const prev = useRef(null);
  const handlers = useRef({ onEdge, onNode });
  handlers.current = { onEdge, onNode };
  useEffect(() => {
    cy.current = cytoscape({
      container: box.current, style, elements: [], layout: { name: 'preset' }, minZoom: 0.05, maxZoom: 3,
      textureOnViewport: true, hideEdgesOnViewport: true, pixelRatio: 1, wheelSensitivity: 0.3, boxSelectionEnabled: false,
    });
    cy.current.on('tap', 'edge', (ev) => handlers.current.onEdge(ev.target.data('edge')));
    cy.current.on('tap', 'node[node]', (ev) => handlers.current.onNode && handlers.current.onNode(ev.target.data('node')));
    if (window.__flowscope) window.__flowscope.cy = cy.current;
    return () => cy.current.destroy();
  }, []);
  useEffect(() => {
    if (!map || !cy.current) return;
    const t0 = performance.now();
    const c = cy.current;
    update(c, map, prev.current);
    prev.current = map;
    // Measured once the frame that shows the map is painted.
    c.one('render', () => requestAnimationFrame(() => {
      if (window.__flowscope) window.__flowscope.mapRendered(map, performance.now() - t0);
    }));
    c.forceRender();
  }, [map]);
  return html`<div class="map" ref=${box}></div>`;
}

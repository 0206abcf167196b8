// The flow table: only the rows in view are rendered (rows are a fixed
// height), so its cost does not grow with the rows it holds.
import { h } from 'preact';
import { useState, useRef, useLayoutEffect } from 'preact/hooks';
import htm from 'htm';
import { endpointName } from './nodes.js';

const html = htm.bind(h);
export const ROW_HEIGHT = 24;
const OVERSCAN = 10;

export function l7Summary(l7) {
  if (!l7) return '';
  if (l7.http) return `HTTP ${l7.http.method || ''} ${l7.http.url || ''} ${l7.http.code || ''}`.trim();
  if (l7.dns) return `DNS ${l7.dns.query || ''} ${l7.dns.rcode ? `rcode ${l7.dns.rcode}` : ''}`.trim();
  if (l7.grpc) return `gRPC ${l7.grpc.service}/${l7.grpc.method} ${l7.grpc.statusCode || 0}`;
  if (l7.kafka) return `Kafka ${l7.kafka.apiKey || ''} ${l7.kafka.topic || ''}`.trim();
  return l7.type;
}

export function timeOf(f) {
  const t = f.time || '';
  return t.length >= 23 ? t.slice(11, 23) : t;
}

const columns = [
  ['Time', 'c-time', (f) => timeOf(f)],
  ['Source', 'c-ep', (f) => endpointName(f.source, f.l4 && f.l4.sourcePort)],
  ['Destination', 'c-ep', (f) => endpointName(f.destination)],
  ['Port', 'c-port', (f) => (f.l4 ? `${f.l4.destinationPort || ''}/${f.l4.protocol}` : '')],
  ['L7', 'c-l7', (f) => l7Summary(f.l7)],
  ['Verdict', 'c-verdict', (f) => f.verdict + (f.dropReason ? ` (${f.dropReason})` : '')],
  ['Node', 'c-node', (f) => f.nodeName],
  ['Direction', 'c-dir', (f) => f.trafficDirection],
];

// FlowTable shows rows (newest first); onSelect gets the clicked flow.
export function FlowTable({ rows, version, onSelect, selected }) {
  const box = useRef(null);
  const [top, setTop] = useState(0);
  const [height, setHeight] = useState(600);
  useLayoutEffect(() => {
    const el = box.current;
    if (!el) return undefined;
    const ro = new ResizeObserver(() => setHeight(el.clientHeight));
    ro.observe(el);
    setHeight(el.clientHeight);
    return () => ro.disconnect();
  }, []);
  useLayoutEffect(() => {
    // The render of a batch ends here: the live view's measure.
    if (window.__flowscope) window.__flowscope.tableRendered(version);
  }, [version]);
  const first = Math.max(0, Math.floor(top / ROW_HEIGHT) - OVERSCAN);
  const last = Math.min(rows.length, Math.ceil((top + height) / ROW_HEIGHT) + OVERSCAN);
  const visible = [];
  for (let i = first; i < last; i++) {
    const f = rows[i];
    const cls = `row ${f.verdict === 'Dropped' ? 'dropped' : ''} ${f === selected ? 'selected' : ''}`;
    visible.push(html`<div class=${cls} style=${`top:${i * ROW_HEIGHT}px`} key=${f.metadata.name} data-name=${f.metadata.name}
      onClick=${() => onSelect(f)}>
      ${columns.map(([, c, get]) => html`<span class=${c}>${get(f)}</span>`)}
    </div>`);
  }
  return html`<div class="table">
    <div class="thead">${columns.map(([t, c]) => html`<span class=${c}>${t}</span>`)}</div>
    <div class="tbody" ref=${box} onScroll=${(e) => setTop(e.currentTarget.scrollTop)}>
      <div class="spacer" style=${`height:${rows.length * ROW_HEIGHT}px`}>${visible}</div>
    </div>
  </div>`;
}

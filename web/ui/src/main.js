// The Flowscope web UI: a service map and a flow table over the flows API,
// through the local server of kubectl flows ui.
import { h, render } from 'preact';
import { useState, useEffect, useRef, useCallback, useMemo } from 'preact/hooks';
import htm from 'htm';
import * as api from './api.js';
import { emptyFilters, filterFields, toSelectors, clientPredicate } from './filters.js';
import { FlowTable, l7Summary } from './table.js';
import { ServiceMap, capMap, MAX_CARDS } from './map.js';
import { matchesNode, nodeSelector, endpointName } from './nodes.js';
import { installStats } from './stats.js';

const html = htm.bind(h);
const stats = installStats();

// MAX_ROWS caps the rows the table holds: older ones give way.
const MAX_ROWS = 10000;
const ALL = '*';
const ranges = [['live', 'Live'], ['5m', 'Last 5 minutes'], ['15m', 'Last 15 minutes'], ['1h', 'Last hour'], ['6h', 'Last 6 hours'], ['24h', 'Last 24 hours'], ['custom', 'Custom…']];

function joinSel(...parts) {
  return parts.filter(Boolean).join(',');
}

function download(name, data) {
  const blob = new Blob([JSON.stringify(data, null, 2)], { type: 'application/json' });
  const a = document.createElement('a');
  a.href = URL.createObjectURL(blob);
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}

function Drawer({ flow, onClose }) {
  if (!flow) return null;
  const rows = [
    ['Time', flow.time], ['Node', flow.nodeName], ['Namespace', flow.metadata.namespace],
    ['Source', endpointName(flow.source, flow.l4 && flow.l4.sourcePort)],
    ['Destination', endpointName(flow.destination, flow.l4 && flow.l4.destinationPort)],
    ['Protocol', flow.l4 && flow.l4.protocol], ['Verdict', flow.verdict], ['Drop reason', flow.dropReason],
    ['Direction', flow.trafficDirection], ['Reply', flow.isReply === undefined ? 'unknown' : String(flow.isReply)],
    ['TCP flags', flow.l4 && flow.l4.tcpFlags && flow.l4.tcpFlags.join(' ')], ['L7', l7Summary(flow.l7)],
    ['Interface', flow.interface], ['Name', flow.metadata.name],
  ].filter(([, v]) => v);
  return html`<aside class="drawer" role="dialog" aria-label="flow detail">
    <header><b>Flow</b><button class="close" onClick=${onClose} aria-label="close">✕</button></header>
    <dl>${rows.map(([k, v]) => html`<dt>${k}</dt><dd>${v}</dd>`)}</dl>
    <details open><summary>JSON</summary><pre>${JSON.stringify(flow, null, 2)}</pre></details>
  </aside>`;
}

function Filters({ draft, setDraft, apply, clear }) {
  return html`<form class="filters" onSubmit=${(e) => { e.preventDefault(); apply(); }}>
    ${filterFields.map(([k, flag, hint]) => html`<label title=${`kubectl flows observe ${flag}`}>
      <span>${flag}</span>
      <input name=${k} value=${draft[k]} placeholder=${hint} onInput=${(e) => setDraft({ ...draft, [k]: e.currentTarget.value })} />
    </label>`)}
    <div class="filter-actions"><button type="submit" class="primary">Apply</button><button type="button" onClick=${clear}>Clear</button></div>
  </form>`;
}

function App() {
  const [user, setUser] = useState('');
  const [nsInfo, setNsInfo] = useState(null);
  const [ns, setNs] = useState(null);
  const [tab, setTab] = useState('map');
  const [range, setRange] = useState('live');
  const [custom, setCustom] = useState({ since: '', until: '' });
  const [draft, setDraft] = useState(emptyFilters);
  const [filters, setFilters] = useState(emptyFilters);
  const [showFilters, setShowFilters] = useState(false);
  const [edge, setEdge] = useState(null);
  const [map, setMap] = useState(null);
  const [error, setError] = useState('');
  const [notice, setNotice] = useState('');
  const [paused, setPaused] = useState(false);
  const [selected, setSelected] = useState(null);
  const [version, setVersion] = useState(0);
  const [more, setMore] = useState('');
  const [checkNs, setCheckNs] = useState('');
  const [showAll, setShowAll] = useState(false);
  const shown = useMemo(() => capMap(map, showAll ? Infinity : MAX_CARDS), [map, showAll]);
  const store = useRef({ rows: [], pending: [], skipped: 0 });
  const pausedRef = useRef(paused);
  pausedRef.current = paused;

  const live = range === 'live' && !edge;
  const window_ = edge ? edge.window : range === 'custom' ? custom : range === 'live' ? { since: '15m', until: '' } : { since: range, until: '' };
  const namespace = ns === ALL ? '' : ns;
  const sel = toSelectors(filters);
  const pred = clientPredicate(filters);
  // edge is what a click on the map focused on: an edge, or a card
  // (either end, so two lists merged, as observe --pod does).
  const lists = edge ? edge.selectors : [''];
  const keep = (f) => (!pred || pred(f)) && (!edge || edge.pred(f));

  useEffect(() => {
    api.whoami().then((w) => setUser(w.user)).catch(() => {});
    api.namespaces().then((r) => {
      setNsInfo(r);
      if (r.all) setNs(ALL);
      else if (r.default && r.namespaces.includes(r.default)) setNs(r.default);
      else setNs(r.namespaces[0] || '');
      if (!r.namespaces.length && !r.all) setError('You may not list flows in any namespace the UI knows of: enter a namespace name to check.');
    }).catch((e) => setError(`namespaces: ${e.message}`));
  }, []);

  const bump = () => setVersion((v) => v + 1);
  const setRows = (rows) => {
    store.current.rows = rows.length > MAX_ROWS ? rows.slice(0, MAX_ROWS) : rows;
    bump();
  };

  // The flows: a live watch, or pages of history.
  useEffect(() => {
    if (ns === null || tab !== 'flows') return undefined;
    setError('');
    setSelected(null);
    store.current.pending = [];
    store.current.skipped = 0;
    if (live) {
      setRows([]);
      const stop = api.watch({ namespace, fieldSelector: sel.fieldSelector, labelSelector: sel.labelSelector }, {
        onInit: (b) => { stats.stats.inits++; setRows(b.flows.filter(keep).reverse()); },
        onFlows: (b) => {
          stats.batchReceived(b.flows.length);
          const fresh = b.flows.filter(keep).reverse();
          store.current.skipped += b.skipped || 0;
          if (pausedRef.current) {
            store.current.pending = fresh.concat(store.current.pending).slice(0, MAX_ROWS);
            bump();
            return;
          }
          if (fresh.length) setRows(fresh.concat(store.current.rows));
          else stats.tableRendered(-1);
        },
        onExpired: () => setNotice('The live stream fell behind and restarted: some flows are missing from the table.'),
        onError: (e) => setError(e),
      });
      return stop;
    }
    let cancelled = false;
    setRows([]);
    setMore('');
    Promise.all(lists.map((s) => api.listFlows({ namespace, fieldSelector: joinSel(sel.fieldSelector, s), labelSelector: sel.labelSelector, since: window_.since, until: window_.until })))
      .then((rs) => {
        if (cancelled) return;
        const merged = new Map();
        for (const r of rs) for (const f of r.items) merged.set(f.metadata.name, f);
        setRows([...merged.values()].filter(keep).sort((a, b) => (a.time < b.time ? 1 : -1)));
        setMore(rs.length === 1 ? rs[0].continue || '' : '');
        if (rs.length > 1 && rs.some((r) => r.continue)) setNotice('Showing the first page of flows at either end; narrow the time range for the rest.');
      })
      .catch((e) => !cancelled && setError(e.message));
    return () => { cancelled = true; };
  }, [ns, tab, live, range, custom.since, custom.until, filters, edge]);

  const loadMore = () => {
    api.listFlows({ namespace, fieldSelector: joinSel(sel.fieldSelector, lists[0]), labelSelector: sel.labelSelector, since: window_.since, until: window_.until, continue: more })
      .then((r) => {
        setRows(store.current.rows.concat(r.items.filter(keep)).sort((a, b) => (a.time < b.time ? 1 : -1)));
        setMore(r.continue || '');
      })
      .catch((e) => setError(e.message));
  };

  // The service map, refreshed every 10 s while live.
  const loadMap = useCallback(() => {
    if (ns === null) return;
    const t0 = performance.now();
    stats.mapRequested(t0);
    api.serviceMap({ namespace, fieldSelector: sel.fieldSelector, labelSelector: sel.labelSelector, since: window_.since, until: window_.until })
      .then((m) => { setMap(m); setError(''); })
      .catch((e) => setError(`service map: ${e.message}`));
  }, [ns, range, custom.since, custom.until, filters]);
  useEffect(() => {
    if (tab !== 'map') return undefined;
    loadMap();
    if (range !== 'live') return undefined;
    const t = setInterval(loadMap, 10000);
    return () => clearInterval(t);
  }, [tab, loadMap]);

  const openEdge = (e) => {
    const byId = new Map(shown.nodes.map((n) => [n.id, n]));
    const src = byId.get(e.source);
    const dst = byId.get(e.target);
    const terms = [...nodeSelector('source', src), ...nodeSelector('destination', dst)];
    if (e.port) terms.push(`l4.destinationPort=${e.port}`);
    if (e.protocol) terms.push(`l4.protocol=${e.protocol}`);
    setEdge({
      label: `edge ${src.name} → ${dst.name}${e.port ? `:${e.port}` : ''}`,
      selectors: [terms.join(',')],
      pred: (f) => matchesNode(f.source, src) && matchesNode(f.destination, dst) && (!e.port || (f.l4 && f.l4.destinationPort === e.port)),
      window: { since: window_.since, until: window_.until },
    });
    setTab('flows');
  };

  const openNode = (n) => {
    setEdge({
      label: `${n.kind === 'More' ? n.namespace || 'outside the cluster' : n.name} (either end)`,
      selectors: n.namespace ? [nodeSelector('source', n).join(','), nodeSelector('destination', n).join(',')] : [''],
      pred: (f) => matchesNode(f.source, n) || matchesNode(f.destination, n),
      window: { since: window_.since, until: window_.until },
    });
    setTab('flows');
  };

  const resume = () => {
    const s = store.current;
    setRows(s.pending.concat(s.rows));
    s.pending = [];
    setPaused(false);
  };

  const exportView = () => {
    const stamp = new Date().toISOString().replace(/[:.]/g, '-');
    if (tab === 'map') download(`flowscope-map-${namespace || 'all'}-${stamp}.json`, map);
    else download(`flowscope-flows-${namespace || 'all'}-${stamp}.json`, { kind: 'FlowList', apiVersion: 'flows.flowscope.io/v1alpha1', items: store.current.rows });
  };

  const check = (e) => {
    e.preventDefault();
    const name = checkNs.trim();
    if (!name) return;
    api.namespaces([name]).then((r) => {
      setNsInfo(r);
      if (r.namespaces.includes(name)) { setNs(name); setError(''); } else setError(`You may not list flows in namespace ${name}.`);
      setCheckNs('');
    }).catch((err) => setError(err.message));
  };

  const rows = store.current.rows;
  const pending = store.current.pending.length;
  return html`<div class="app">
    <header class="bar">
      <span class="logo">Flowscope</span>
      <label class="ns">Namespace
        <select id="namespace" value=${ns || ''} onChange=${(e) => { setNs(e.currentTarget.value); setEdge(null); }}>
          ${nsInfo && nsInfo.all ? html`<option value=${ALL}>All namespaces</option>` : null}
          ${(nsInfo ? nsInfo.namespaces : []).map((n) => html`<option value=${n}>${n}</option>`)}
        </select>
      </label>
      ${nsInfo && !nsInfo.all ? html`<form class="check" onSubmit=${check}><input placeholder="other namespace…" value=${checkNs} onInput=${(e) => setCheckNs(e.currentTarget.value)} /></form>` : null}
      <nav class="tabs">
        <button class=${tab === 'map' ? 'active' : ''} id="tab-map" onClick=${() => setTab('map')}>Service map</button>
        <button class=${tab === 'flows' ? 'active' : ''} id="tab-flows" onClick=${() => { setEdge(null); setTab('flows'); }}>Flows</button>
      </nav>
      <label>Time
        <select id="range" value=${range} onChange=${(e) => { setRange(e.currentTarget.value); setEdge(null); }}>
          ${ranges.map(([v, t]) => html`<option value=${v}>${t}</option>`)}
        </select>
      </label>
      ${range === 'custom' ? html`<span class="custom">
        <input id="since" placeholder="since: 2h or 2026-12-06T08:00:00Z" value=${custom.since} onChange=${(e) => setCustom({ ...custom, since: e.currentTarget.value })} />
        <input id="until" placeholder="until (optional)" value=${custom.until} onChange=${(e) => setCustom({ ...custom, until: e.currentTarget.value })} />
      </span>` : null}
      <button id="filters-toggle" onClick=${() => setShowFilters(!showFilters)}>Filters${Object.values(filters).some(Boolean) ? ' •' : ''}</button>
      ${tab === 'flows' && live ? html`<button id="pause" onClick=${() => (paused ? resume() : setPaused(true))}>${paused ? `Resume${pending ? ` (${pending} new)` : ''}` : 'Pause'}</button>` : null}
      ${tab === 'map' ? html`<button onClick=${loadMap}>Refresh</button>` : null}
      <button id="export" onClick=${exportView}>Export JSON</button>
      <span class="user">${user ? `as ${user}` : ''}</span>
    </header>
    ${showFilters ? html`<${Filters} draft=${draft} setDraft=${setDraft} apply=${() => { setFilters(draft); setEdge(null); }} clear=${() => { setDraft(emptyFilters); setFilters(emptyFilters); }} />` : null}
    ${error ? html`<div class="error" role="alert">${error}</div>` : null}
    ${notice ? html`<div class="notice" onClick=${() => setNotice('')}>${notice}</div>` : null}
    <main>
      <section class=${`view ${tab === 'map' ? '' : 'hidden'}`} id="view-map">
        <${ServiceMap} map=${shown} onEdge=${openEdge} onNode=${openNode} />
        ${map ? html`<div class="legend">
          <span><i class="sw ok"></i>forwarded</span><span><i class="sw drop"></i>drops</span><span><i class="sw err"></i>L7 errors</span>
          <span>${map.nodes.length} cards · ${map.edges.length} edges · ${map.flows} flows over ${Math.round(map.seconds / 60)} min${map.truncated ? ' (the server folded its busiest edges\' rest into "other")' : ''}</span>
          ${shown && shown.capped ? html`<span>showing the ${MAX_CARDS} busiest cards <button id="show-all" onClick=${() => setShowAll(true)}>Show all ${map.nodes.length}</button></span>` : null}
          ${showAll && map.nodes.length > MAX_CARDS ? html`<button id="show-busiest" onClick=${() => setShowAll(false)}>Busiest ${MAX_CARDS} only</button>` : null}
        </div>` : null}
      </section>
      <section class=${`view ${tab === 'flows' ? '' : 'hidden'}`} id="view-flows">
        <div class="status">
          ${edge ? html`<span class="chip">${edge.label} <button onClick=${() => setEdge(null)} aria-label="clear">✕</button></span>` : null}
          <span id="row-count">${rows.length} flows${live ? (paused ? ' (paused)' : ' (live)') : ''}</span>
          ${store.current.skipped ? html`<span class="warn">${store.current.skipped} skipped (too fast)</span>` : null}
          ${more ? html`<button onClick=${loadMore}>Load more</button>` : null}
        </div>
        <${FlowTable} rows=${rows} version=${version} onSelect=${setSelected} selected=${selected} />
      </section>
      <${Drawer} flow=${selected} onClose=${() => setSelected(null)} />
    </main>
  </div>`;
}

render(html`<${App} />`, document.getElementById('app'));

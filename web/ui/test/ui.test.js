// Unit tests of the UI's pure parts, run by node's test runner
// (hack/verify-ui.sh); the browser tests are in test/e2e/ui.
import test from 'node:test';
import assert from 'node:assert/strict';
import { emptyFilters, toSelectors, clientPredicate } from '../src/filters.js';
import { matchesNode, nodeSelector, endpointName } from '../src/nodes.js';
import { capMap } from '../src/map.js';

test('filters become the selectors observe would send', () => {
  const f = { ...emptyFilters, fromPod: 'shop/web-1', toPort: '8080', verdict: 'Dropped', httpMethod: 'GET', dnsQuery: 'a,b.', labels: 'app=web' };
  assert.deepEqual(toSelectors(f), {
    fieldSelector: 'source.namespace=shop,source.podName=web-1,l4.destinationPort=8080,verdict=Dropped,l7.http.method=GET,l7.dns.query=a\\,b.',
    labelSelector: 'app=web',
  });
  assert.deepEqual(toSelectors(emptyFilters), { fieldSelector: '', labelSelector: '' });
});

test('either-end filters are tested in the browser', () => {
  const flow = (src, dst, sport, dport) => ({ source: src, destination: dst, ip: { source: src.ip, destination: dst.ip }, l4: { sourcePort: sport, destinationPort: dport } });
  const web = { namespace: 'shop', podName: 'web-1', ip: '10.0.0.1' };
  const db = { namespace: 'shop', podName: 'db-0', ip: '10.0.0.2' };
  assert.equal(clientPredicate(emptyFilters), null);
  const pod = clientPredicate({ ...emptyFilters, pod: 'shop/web-1' });
  assert.ok(pod(flow(web, db, 1, 2)) && pod(flow(db, web, 1, 2)) && !pod(flow(db, db, 1, 2)));
  const ip = clientPredicate({ ...emptyFilters, ip: '10.0.0.1' });
  assert.ok(ip(flow(db, web, 1, 2)) && !ip(flow(db, db, 1, 2)));
  const port = clientPredicate({ ...emptyFilters, port: '53' });
  assert.ok(port(flow(db, web, 53, 2)) && port(flow(db, web, 1, 53)) && !port(flow(db, web, 1, 2)));
});

test('a flow end belongs to its card', () => {
  const web = { namespace: 'shop', podName: 'web-1', workloads: [{ kind: 'ReplicaSet', name: 'web-5d' }, { kind: 'Deployment', name: 'web' }] };
  assert.ok(matchesNode(web, { id: 'shop/Deployment/web', namespace: 'shop', kind: 'Deployment', name: 'web' }));
  assert.ok(!matchesNode(web, { id: 'shop/Deployment/db', namespace: 'shop', kind: 'Deployment', name: 'db' }));
  assert.ok(matchesNode({ ip: '1.2.3.4' }, { id: 'external/1.2.3.0/24', kind: 'External', name: '1.2.3.0/24' }));
  assert.ok(!matchesNode({ ip: '1.2.4.4' }, { id: 'external/1.2.3.0/24', kind: 'External', name: '1.2.3.0/24' }));
  assert.ok(matchesNode(web, { id: 'shop/More', namespace: 'shop', kind: 'More' }));
  assert.deepEqual(nodeSelector('source', { namespace: 'shop', kind: 'Deployment', name: 'web' }), ['source.namespace=shop', 'source.workload=web']);
  assert.deepEqual(nodeSelector('destination', { namespace: 'shop', kind: 'Pod', name: 'db-0' }), ['destination.namespace=shop', 'destination.podName=db-0']);
  assert.deepEqual(nodeSelector('source', { kind: 'External', name: '1.2.3.0/24' }), []);
  assert.equal(endpointName(web, 4000), 'shop/web-1:4000');
});

test('a big map keeps its busiest cards and folds the rest per namespace', () => {
  const nodes = [];
  const edges = [];
  for (let i = 0; i < 10; i++) {
    nodes.push({ id: `a/Deployment/w${i}`, namespace: 'a', kind: 'Deployment', name: `w${i}` });
    edges.push({ source: `a/Deployment/w${i}`, target: 'b/Deployment/sink', port: 80, protocol: 'TCP', flows: i + 1, dropped: i === 0 ? 1 : 0, l7Requests: 0, l7Errors: 0 });
  }
  nodes.push({ id: 'b/Deployment/sink', namespace: 'b', kind: 'Deployment', name: 'sink' });
  const m = { nodes, edges, seconds: 60, flows: 55 };
  assert.equal(capMap(m, 20), m);
  const c = capMap(m, 4);
  assert.equal(c.capped, 11);
  assert.deepEqual(c.nodes.map((n) => n.id).sort(), ['a/Deployment/w7', 'a/Deployment/w8', 'a/Deployment/w9', 'a/More', 'b/Deployment/sink']);
  const folded = c.edges.find((e) => e.source === 'a/More');
  assert.equal(folded.flows, 1 + 2 + 3 + 4 + 5 + 6 + 7);
  assert.equal(folded.dropped, 1);
  assert.equal(c.nodes.find((n) => n.id === 'a/More').name, '7 more');
  assert.equal(c.edges.reduce((s, e) => s + e.flows, 0), 55);
});

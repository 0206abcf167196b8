// Filters with the meanings of kubectl flows observe: what can be said
// with field and label selectors goes to the server; "either end"
// filters (--pod, --ip, --port), which a selector cannot say, are applied
// here, to lists and to the live stream alike.

export const emptyFilters = {
  pod: '', fromPod: '', toPod: '', fromNamespace: '', toNamespace: '',
  ip: '', fromIP: '', toIP: '', port: '', toPort: '', protocol: '', verdict: '',
  dropReason: '', l7Type: '', httpStatus: '', httpMethod: '', dnsQuery: '', node: '', labels: '',
};

// The filter inputs, in the order they are shown.
export const filterFields = [
  ['pod', '--pod', 'ns/pod (either end)'],
  ['fromPod', '--from-pod', 'ns/pod'],
  ['toPod', '--to-pod', 'ns/pod'],
  ['fromNamespace', '--from-namespace', 'namespace'],
  ['toNamespace', '--to-namespace', 'namespace'],
  ['ip', '--ip', 'address (either end)'],
  ['fromIP', '--from-ip', 'address'],
  ['toIP', '--to-ip', 'address'],
  ['port', '--port', 'port (either end)'],
  ['toPort', '--to-port', 'port'],
  ['protocol', '--protocol', 'TCP, UDP, ICMPv4…'],
  ['verdict', '--verdict', 'Forwarded, Dropped…'],
  ['dropReason', '--drop-reason', 'POLICY_DENIED…'],
  ['l7Type', '--type l7', 'HTTP, DNS, GRPC, Kafka'],
  ['httpStatus', '--http-status', '200, 503…'],
  ['httpMethod', '--http-method', 'GET, POST…'],
  ['dnsQuery', '--dns-query', 'name.'],
  ['node', '--node', 'node name'],
  ['labels', '-l', 'app=web'],
];

const esc = (v) => v.replace(/\\/g, '\\\\').replace(/,/g, '\\,').replace(/=/g, '\\=');

function podTerms(side, v) {
  const i = v.indexOf('/');
  if (i < 0) return [`${side}.podName=${esc(v)}`];
  return [`${side}.namespace=${esc(v.slice(0, i))}`, `${side}.podName=${esc(v.slice(i + 1))}`];
}

// toSelectors turns filters into the server's field and label selectors.
export function toSelectors(f) {
  const t = [];
  const add = (k, v) => v && t.push(`${k}=${esc(v.trim())}`);
  if (f.fromPod) t.push(...podTerms('source', f.fromPod.trim()));
  if (f.toPod) t.push(...podTerms('destination', f.toPod.trim()));
  add('source.namespace', f.fromNamespace);
  add('destination.namespace', f.toNamespace);
  add('source.ip', f.fromIP);
  add('destination.ip', f.toIP);
  add('l4.destinationPort', f.toPort);
  add('l4.protocol', f.protocol);
  add('verdict', f.verdict);
  add('dropReason', f.dropReason);
  add('l7.type', f.l7Type);
  add('l7.http.code', f.httpStatus);
  add('l7.http.method', f.httpMethod);
  add('l7.dns.query', f.dnsQuery);
  add('nodeName', f.node);
  return { fieldSelector: t.join(','), labelSelector: (f.labels || '').trim() };
}

function podMatches(e, v) {
  if (!e) return false;
  const i = v.indexOf('/');
  if (i < 0) return e.podName === v;
  return e.namespace === v.slice(0, i) && e.podName === v.slice(i + 1);
}

// clientPredicate returns the test of the either-end filters, or null.
export function clientPredicate(f) {
  const tests = [];
  if (f.pod) {
    const v = f.pod.trim();
    tests.push((fl) => podMatches(fl.source, v) || podMatches(fl.destination, v));
  }
  if (f.ip) {
    const v = f.ip.trim();
    tests.push((fl) => (fl.ip && (fl.ip.source === v || fl.ip.destination === v)));
  }
  if (f.port) {
    const v = Number(f.port);
    tests.push((fl) => fl.l4 && (fl.l4.sourcePort === v || fl.l4.destinationPort === v));
  }
  if (!tests.length) return null;
  return (fl) => tests.every((t) => t(fl));
}

// Cards of the service map as the server makes them (servicemap.go): a
// pod's outermost workload, the pod, its service, or an external CIDR.

// inCluster returns the card id of an end inside the cluster, or null.
function inCluster(e) {
  if (!e || !e.namespace) return null;
  const wl = e.workloads && e.workloads.length ? e.workloads[e.workloads.length - 1] : null;
  if (wl) return `${e.namespace}/${wl.kind}/${wl.name}`;
  if (e.podName) return `${e.namespace}/Pod/${e.podName}`;
  if (e.service) return `${e.namespace}/Service/${e.service}`;
  return null;
}

function inCIDR(ip, cidr) {
  if (!ip || !cidr || !cidr.includes('/')) return false;
  if (ip.includes(':') || cidr.includes(':')) return ip.includes(':') && cidr.includes(':'); // IPv6: the server's selector narrows enough
  const [net, bits] = cidr.split('/');
  const n = (a) => a.split('.').reduce((acc, o) => acc * 256 + Number(o), 0);
  const d = 2 ** (32 - Number(bits));
  return Math.floor(n(ip) / d) === Math.floor(n(net) / d);
}

// matchesNode tells whether an end of a flow belongs to a card.
export function matchesNode(e, node) {
  if (node.kind === 'More') return node.namespace ? !!e && e.namespace === node.namespace : !inCluster(e);
  const id = inCluster(e);
  if (id !== null) return id === node.id;
  if (node.namespace) return false;
  return inCIDR(e && e.ip, node.name);
}

// endpointName is how the table shows one end: ns/pod:port, ns/svc:port
// or the address.
export function endpointName(e, port) {
  if (!e) return '';
  let s = e.ip || '';
  if (e.podName) s = `${e.namespace}/${e.podName}`;
  else if (e.service) s = `${e.namespace}/${e.service}`;
  else if (e.namespace && !s) s = e.namespace;
  return port ? `${s}:${port}` : s;
}

// nodeSelector is the part of a field selector that selects flows of a
// card at one end ("source" or "destination").
export function nodeSelector(side, node) {
  if (!node.namespace) return [];
  const t = [`${side}.namespace=${node.namespace}`];
  if (node.kind === 'More') return t;
  if (node.kind === 'Pod') t.push(`${side}.podName=${node.name}`);
  else if (node.kind === 'Service') t.push(`${side}.service=${node.name}`);
  else t.push(`${side}.workload=${node.name}`);
  return t;
}

// The UI server's API (cmd/kubectl-flows/internal/ui): every call is made
// by the server with the user's own credentials.

async function getJSON(path, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (Array.isArray(v)) v.forEach((x) => q.append(k, x));
    else if (v !== undefined && v !== null && v !== '') q.set(k, v);
  }
  const url = q.toString() ? `${path}?${q}` : path;
  const resp = await fetch(url, { credentials: 'same-origin' });
  let body;
  try {
    body = await resp.json();
  } catch (e) {
    throw new Error(`${resp.status} ${resp.statusText}`);
  }
  if (!resp.ok) throw new Error(body.error || `${resp.status} ${resp.statusText}`);
  return body;
}

export const whoami = () => getJSON('/api/whoami');
export const namespaces = (check) => getJSON('/api/namespaces', { check });
export const listFlows = (params) => getJSON('/api/flows', params);
export const serviceMap = (params) => getJSON('/api/map', params);

// watch opens the live stream; onFlows gets each batch (init first).
export function watch(params, { onInit, onFlows, onError, onExpired }) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v) q.set(k, v);
  const es = new EventSource(`/api/watch?${q}`);
  es.addEventListener('init', (e) => onInit(JSON.parse(e.data)));
  es.addEventListener('flows', (e) => onFlows(JSON.parse(e.data)));
  es.addEventListener('expired', () => onExpired && onExpired());
  es.addEventListener('failure', (e) => {
    onError(JSON.parse(e.data).error);
    es.close();
  });
  es.onerror = () => {
    // Before any event: the server answered with an error status.
    if (es.readyState === EventSource.CLOSED) onError('the live stream closed');
  };
  return () => es.close();
}

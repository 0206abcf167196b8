// Measures of the UI's responsiveness, read by the browser tests
// (test/e2e/ui): the time to draw the map, the time from a batch of the
// live stream to its rows on screen, and the intervals between frames.
export function installStats() {
  const s = {
    map: [], // { cards drawn, of cards in all, edges, totalMs (request to painted), drawMs }
    inits: 0, // live streams started
    batches: 0,
    flows: 0,
    updates: [], // ms from a batch's arrival to its render
    frames: [], // ms between animation frames
  };
  let batchAt = 0;
  let mapAt = 0;
  let last = 0;
  const frame = (t) => {
    if (last) s.frames.push(t - last);
    if (s.frames.length > 5000) s.frames.splice(0, s.frames.length - 5000);
    last = t;
    requestAnimationFrame(frame);
  };
  requestAnimationFrame(frame);
  const api = {
    stats: s,
    cy: null,
    batchReceived(n) { s.batches++; s.flows += n; batchAt = performance.now(); },
    tableRendered() {
      if (batchAt) { s.updates.push(performance.now() - batchAt); batchAt = 0; }
      if (s.updates.length > 5000) s.updates.splice(0, s.updates.length - 5000);
    },
    mapRequested(t) { mapAt = t; },
    mapRendered(m, drawMs) { s.map.push({ cards: m.nodes.length, of: m.capped || m.nodes.length, edges: m.edges.length, totalMs: performance.now() - mapAt, drawMs }); },
    resetFrames() { s.frames = []; s.updates = []; s.batches = 0; s.flows = 0; last = 0; },
  };
  window.__flowscope = api;
  return api;
}

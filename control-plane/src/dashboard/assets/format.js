// Kubernetes objects as kubectl prints them: ages, a pod's STATUS column, readiness, restarts,
// quantities. Pure functions of the objects. Must not: touch the DOM or the network.

/** kubectl's age: 45s, 12m, 5h, 3d, 2y (the two most significant units under a day, as kubectl). */
export function age(timestamp, now = Date.now()) {
  if (!timestamp) return '<unknown>';
  const s = Math.max(0, Math.floor((now - Date.parse(timestamp)) / 1000));
  if (s < 120) return s + 's';
  const m = Math.floor(s / 60);
  if (m < 10) return m + 'm' + (s % 60 ? (s % 60) + 's' : '');
  if (m < 180) return m + 'm';
  const h = Math.floor(m / 60);
  if (h < 8) return h + 'h' + (m % 60 ? (m % 60) + 'm' : '');
  if (h < 48) return h + 'h';
  const d = Math.floor(h / 24);
  if (d < 8) return d + 'd' + (h % 24 ? (h % 24) + 'h' : '');
  if (d < 730) return d + 'd';
  return Math.floor(d / 365) + 'y';
}

export const key = (o) => (o.metadata.namespace ? o.metadata.namespace + '/' : '') + o.metadata.name;

/** `wasm` for a pod of the wasm RuntimeClass, else `oci`. */
export function runtime(pod) {
  return (pod.spec && pod.spec.runtimeClassName) === 'wasm' ? 'wasm' : 'oci';
}

function statuses(pod) {
  return (pod.status && pod.status.containerStatuses) || [];
}

export function ready(pod) {
  const all = (pod.spec && pod.spec.containers) || [];
  return statuses(pod).filter((c) => c.ready).length + '/' + all.length;
}

export function restarts(pod) {
  return statuses(pod).reduce((n, c) => n + (c.restartCount || 0), 0);
}

/** kubectl's STATUS column of a pod (printPod). */
export function podStatus(pod) {
  const status = pod.status || {};
  let reason = status.reason || status.phase || 'Unknown';
  const inits = status.initContainerStatuses || [];
  let initializing = false;
  inits.forEach((c, i) => {
    const t = c.state && c.state.terminated;
    const w = c.state && c.state.waiting;
    if (t && t.exitCode === 0) return;
    initializing = true;
    if (t) reason = 'Init:' + (t.reason || (t.signal ? 'Signal:' + t.signal : 'ExitCode:' + t.exitCode));
    else if (w && w.reason && w.reason !== 'PodInitializing') reason = 'Init:' + w.reason;
    else reason = 'Init:' + i + '/' + inits.length;
  });
  if (!initializing) {
    let running = false;
    for (const c of statuses(pod).slice().reverse()) {
      const st = c.state || {};
      if (st.waiting && st.waiting.reason) reason = st.waiting.reason;
      else if (st.terminated && st.terminated.reason) reason = st.terminated.reason;
      else if (st.terminated) reason = st.terminated.signal ? 'Signal:' + st.terminated.signal : 'ExitCode:' + st.terminated.exitCode;
      else if (c.ready && st.running) running = true;
    }
    if (reason === 'Completed' && running) {
      const cond = (status.conditions || []).find((c) => c.type === 'Ready');
      reason = cond && cond.status === 'True' ? 'Running' : 'NotReady';
    }
  }
  if (pod.metadata.deletionTimestamp) reason = status.reason === 'NodeLost' ? 'Unknown' : 'Terminating';
  return reason;
}

/** A node's STATUS column: Ready / NotReady / Unknown, and SchedulingDisabled when cordoned. */
export function nodeStatus(node) {
  const cond = ((node.status && node.status.conditions) || []).find((c) => c.type === 'Ready');
  let s = !cond ? 'Unknown' : cond.status === 'True' ? 'Ready' : cond.status === 'False' ? 'NotReady' : 'Unknown';
  if (node.spec && node.spec.unschedulable) s += ',SchedulingDisabled';
  return s;
}

const BINARY = { Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50, Ei: 2 ** 60 };
const DECIMAL = { n: 1e-9, u: 1e-6, m: 1e-3, '': 1, k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18 };

/** A Kubernetes quantity as a number (`500m` → 0.5, `32Mi` → 33554432); NaN if unreadable. */
export function quantity(text) {
  const m = /^([+-]?[0-9.]+)(?:[eE]([+-]?[0-9]+))?([a-zA-Z]*)$/.exec(String(text || '').trim());
  if (!m) return NaN;
  const n = parseFloat(m[1]) * (m[2] ? 10 ** parseInt(m[2], 10) : 1);
  if (m[3] in BINARY) return n * BINARY[m[3]];
  if (m[3] in DECIMAL) return n * DECIMAL[m[3]];
  return NaN;
}

/** CPU cores as kubectl top prints them: `12m`. */
export function cores(n) {
  return Number.isFinite(n) ? Math.round(n * 1000) + 'm' : '';
}

/** A rate per second: `12.5/s`. */
export function perSecond(n) {
  return Number.isFinite(n) ? +n.toFixed(n < 10 ? 2 : 0) + '/s' : '';
}

/** A rate per minute: `3/min`. */
export function perMinute(n) {
  return Number.isFinite(n) ? +n.toFixed(n < 10 ? 1 : 0) + '/min' : '';
}

/** A duration in seconds as milliseconds (`12.3 ms`) or seconds (`1.25 s`). */
export function seconds(n) {
  if (!Number.isFinite(n)) return '';
  return n < 1 ? +(n * 1000).toFixed(n < 0.01 ? 2 : 1) + ' ms' : +n.toFixed(2) + ' s';
}

/** Bytes as kubectl top prints them: `34Mi`. */
export function bytes(n) {
  return Number.isFinite(n) ? Math.round(n / 2 ** 20) + 'Mi' : '';
}

/** The newest time an Event says it happened. */
export function eventTime(ev) {
  return ev.lastTimestamp || (ev.series && ev.series.lastObservedTime) || ev.eventTime || ev.firstTimestamp || ev.metadata.creationTimestamp || '';
}

/** A Deployment's rollout as `kubectl rollout status` tells it: [done 0..1, words]. */
export function rollout(d) {
  const want = d.spec && d.spec.replicas !== undefined ? d.spec.replicas : 1;
  const st = d.status || {};
  const updated = st.updatedReplicas || 0;
  const available = st.availableReplicas || 0;
  const total = st.replicas || 0;
  const progressing = (st.conditions || []).find((c) => c.type === 'Progressing');
  if (progressing && progressing.reason === 'ProgressDeadlineExceeded') return [updated / Math.max(want, 1), 'ProgressDeadlineExceeded'];
  if ((st.observedGeneration || 0) < (d.metadata.generation || 0)) return [0, 'Waiting for the controller'];
  if (updated < want) return [updated / Math.max(want, 1), `${updated} of ${want} updated`];
  if (total > updated) return [updated / Math.max(total, 1), `${total - updated} old replicas pending termination`];
  if (available < updated) return [available / Math.max(updated, 1), `${available} of ${updated} updated available`];
  return [1, 'Complete'];
}

/** Whether every key=value of `selector` is among `labels` (a Service's selector). */
export function selects(selector, labels) {
  const keys = Object.keys(selector || {});
  return keys.length > 0 && keys.every((k) => (labels || {})[k] === selector[k]);
}

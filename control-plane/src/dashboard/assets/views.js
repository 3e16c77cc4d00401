// The views of the dashboard, one function each: what it lists and follows, its tables'
// columns, and its actions. Each renders into the element it is given and stops when the
// context's signal aborts. Must not: keep state across views or call anything but the API module.

import * as api from './api.js';
import * as fmt from './format.js';
import { LiveTable } from './table.js';
import { sparkline, draw } from './chart.js';

const CORE = '/api/v1';
const APPS = '/apis/apps/v1';
const NETWORKING = '/apis/networking.k8s.io/v1';
const METRICS = '/apis/metrics.k8s.io/v1beta1';
const CUSTOM_METRICS = '/apis/custom.metrics.k8s.io/v1beta2';

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'text') e.textContent = v;
    else if (k.startsWith('data-')) e.dataset[k.slice(5).replace(/-([a-z])/g, (_, c) => c.toUpperCase())] = v;
    else e.setAttribute(k, v);
  }
  e.append(...children);
  return e;
}

/** A titled section holding a table of id `id`. */
function tableSection(root, id, title) {
  const h = el('h2', { id: id + '-title', text: title });
  const table = el('table', { id, 'aria-labelledby': id + '-title' });
  root.append(el('section', { class: 'card' }, h, el('div', { class: 'scroll' }, table)));
  return table;
}

/** Calls `f` once the browser has laid out and painted what the current task changed. */
function afterPaint(f) {
  if (document.hidden) setTimeout(f, 0);
  else requestAnimationFrame(() => setTimeout(f, 0));
}

/**
 * Lists and watches `path` into `sink` (a LiveTable or a Store); `ctx.part()` is told once the
 * first list is painted (its watch was asked for from the list's version in the same task, so no
 * change after it is missed), or once the API refused it (the refusal shown).
 */
function live(ctx, path, sink, changed) {
  const done = ctx.part();
  let first = true;
  api.follow(path, {
    reset(items) {
      sink.reset(items);
      if (changed) changed(true);
      if (first) afterPaint(done);
      first = false;
    },
    apply(events) { sink.apply(events); if (changed) changed(); },
    watching() {},
    error(err) { ctx.refused(err); done(); },
  }, ctx.signal);
}

/** Objects of a watch kept by name, for views that join kinds (pods per node, function pods). */
class Store {
  constructor() { this.map = new Map(); }
  reset(items) { this.map = new Map(items.map((o) => [fmt.key(o), o])); }
  apply(events) {
    for (const [type, o] of events) {
      if (type === 'DELETED') this.map.delete(fmt.key(o));
      else this.map.set(fmt.key(o), o);
    }
  }
  values() { return this.map.values(); }
}

/**
 * Calls `f` at most once per `ms` for refreshes driven by many events (a burst ends with one
 * last call); `now` true runs it at once (after a list, so the view is whole when it is ready).
 */
function throttle(f, ms) {
  let timer = null;
  return (now) => {
    if (now) {
      clearTimeout(timer);
      timer = null;
      f();
      return;
    }
    if (timer) return;
    timer = setTimeout(() => { timer = null; f(); }, ms);
  };
}

/** Runs `f` now and every `ms` until the view stops. */
function every(ctx, ms, f) {
  f();
  const t = setInterval(f, ms);
  ctx.signal.addEventListener('abort', () => clearInterval(t), { once: true });
}

const ageColumn = { key: 'age', label: 'Age', text: (o) => fmt.age(o.metadata.creationTimestamp) };
const nsColumn = { key: 'namespace', label: 'Namespace', text: (o) => o.metadata.namespace };
const nameColumn = { key: 'name', label: 'Name', text: (o) => o.metadata.name };

function ages(ctx, ...tables) {
  const t = setInterval(() => tables.forEach((table) => table.refresh(['age'])), 5000);
  ctx.signal.addEventListener('abort', () => clearInterval(t), { once: true });
}

/** Runs an action, showing its outcome (or the API's refusal) in the notice area. */
async function act(ctx, button, work, success) {
  button.disabled = true;
  try {
    await work();
    ctx.notice('ok', success);
  } catch (err) {
    ctx.notice('error', err.message);
  } finally {
    button.disabled = false;
  }
}

// ------------------------------------------------------------------ overview

export function overview(root, ctx) {
  root.append(el('h1', { text: 'Overview' }));
  const summary = el('p', { id: 'summary', class: 'summary' });
  root.append(summary);
  const usage = new Map(); // node → { cpu, memory }
  const pods = new Store();
  const nodesTable = tableSection(root, 'nodes', 'Nodes');
  const onNode = (node, fn) => {
    let n = 0;
    for (const p of pods.values()) if (p.spec && p.spec.nodeName === node && fn(p)) n++;
    return n;
  };
  const active = (p) => !['Succeeded', 'Failed'].includes(p.status && p.status.phase);
  const nodes = new LiveTable(nodesTable, [
    nameColumn,
    { key: 'status', label: 'Status', text: fmt.nodeStatus },
    { key: 'runtimes', label: 'Runtimes', text: (n) => ((n.status && n.status.runtimeHandlers) || []).map((h) => h.name).join(',') },
    { key: 'cpu', label: 'CPU (allocatable)', text: (n) => ((n.status && n.status.allocatable) || {}).cpu || '' },
    { key: 'memory', label: 'Memory (allocatable)', text: (n) => ((n.status && n.status.allocatable) || {}).memory || '' },
    {
      key: 'pods', label: 'Pods (wasm, oci / max)', text: (n) => {
        const name = n.metadata.name;
        const wasm = onNode(name, (p) => active(p) && fmt.runtime(p) === 'wasm');
        const oci = onNode(name, (p) => active(p) && fmt.runtime(p) === 'oci');
        return `${wasm + oci} (${wasm} wasm, ${oci} oci) / ${((n.status && n.status.allocatable) || {}).pods || '?'}`;
      },
    },
    { key: 'cpu-usage', label: 'CPU used', text: (n) => (usage.get(n.metadata.name) || {}).cpu || '' },
    { key: 'memory-usage', label: 'Memory used', text: (n) => (usage.get(n.metadata.name) || {}).memory || '' },
    ageColumn,
  ], { name: (n) => n.metadata.name, empty: 'No nodes have joined.' });
  const counted = throttle(() => {
    nodes.refresh(['pods']);
    const all = [...pods.values()];
    const by = (phase) => all.filter((p) => p.status && p.status.phase === phase).length;
    summary.textContent = `${nodes.objects().length} nodes · ${all.length} pods: ${by('Running')} running, ${by('Pending')} pending, ${by('Failed')} failed · ` +
      `${all.filter((p) => fmt.runtime(p) === 'wasm').length} wasm, ${all.filter((p) => fmt.runtime(p) === 'oci').length} oci`;
  }, 250);
  live(ctx, `${CORE}/nodes`, nodes, counted);
  live(ctx, api.collection(CORE, 'pods', ctx.ns), pods, counted);
  ages(ctx, nodes);
  // Usage from metrics.k8s.io when it is served; blank otherwise (404: not asked again).
  let served = true;
  every(ctx, 5000, async () => {
    if (!served) return;
    try {
      const list = await api.get(`${METRICS}/nodes`);
      usage.clear();
      for (const m of list.items || []) {
        const u = m.usage || {};
        usage.set(m.metadata.name, { cpu: fmt.cores(fmt.quantity(u.cpu)), memory: fmt.bytes(fmt.quantity(u.memory)) });
      }
      nodes.refresh(['cpu-usage', 'memory-usage']);
    } catch (err) {
      served = !(err instanceof api.ApiError && [403, 404].includes(err.status));
    }
  });
}

// ------------------------------------------------------------------ pods

export function pods(root, ctx) {
  root.append(el('h1', { text: 'Pods' }));
  const table = new LiveTable(tableSection(root, 'pods', 'Pods'), [
    nsColumn,
    nameColumn,
    { key: 'runtime', label: 'Runtime', text: fmt.runtime },
    { key: 'ready', label: 'Ready', text: fmt.ready },
    { key: 'status', label: 'Status', text: fmt.podStatus },
    { key: 'restarts', label: 'Restarts', text: fmt.restarts },
    { key: 'node', label: 'Node', text: (p) => (p.spec && p.spec.nodeName) || '' },
    ageColumn,
    {
      key: 'actions', label: 'Actions', create(td, p) {
        const { namespace, name } = p.metadata;
        const container = ((p.spec && p.spec.containers) || [{}])[0].name || '';
        const logs = el('a', {
          href: `#/logs/${namespace}/${name}/${container}`, 'data-action': 'logs',
          'aria-label': `Logs of ${namespace}/${name}`, text: 'Logs',
        });
        const del = el('button', { type: 'button', 'data-action': 'delete', 'aria-label': `Delete pod ${namespace}/${name}`, text: 'Delete' });
        del.addEventListener('click', () => act(ctx, del,
          () => api.call('DELETE', `${CORE}/namespaces/${encodeURIComponent(namespace)}/pods/${encodeURIComponent(name)}`),
          `Deleted pod ${namespace}/${name}`));
        td.append(logs, ' ', del);
      },
    },
  ], { name: fmt.key, empty: 'No pods.' });
  live(ctx, api.collection(CORE, 'pods', ctx.ns), table);
  ages(ctx, table);
}

// ------------------------------------------------------------------ deployments

export function deployments(root, ctx) {
  root.append(el('h1', { text: 'Deployments' }));
  const table = new LiveTable(tableSection(root, 'deployments', 'Deployments'), [
    nsColumn,
    nameColumn,
    { key: 'ready', label: 'Ready', text: (d) => `${(d.status && d.status.readyReplicas) || 0}/${d.spec && d.spec.replicas !== undefined ? d.spec.replicas : 1}` },
    { key: 'up-to-date', label: 'Up-to-date', text: (d) => (d.status && d.status.updatedReplicas) || 0 },
    { key: 'available', label: 'Available', text: (d) => (d.status && d.status.availableReplicas) || 0 },
    {
      key: 'progress', label: 'Rollout',
      create(td, d) {
        td.append(el('progress', { max: '100', 'aria-label': `Rollout of ${fmt.key(d)}` }), ' ', el('span'));
        this.update(td, d);
      },
      update(td, d) {
        const [done, words] = fmt.rollout(d);
        const bar = td.firstChild;
        const value = String(Math.round(done * 100));
        if (bar.getAttribute('value') !== value) bar.setAttribute('value', value);
        if (td.lastChild.textContent !== words) td.lastChild.textContent = words;
      },
    },
    ageColumn,
    {
      key: 'actions', label: 'Actions',
      create(td, d) {
        const { namespace, name } = d.metadata;
        const path = `${APPS}/namespaces/${encodeURIComponent(namespace)}/deployments/${encodeURIComponent(name)}`;
        const replicas = el('input', {
          type: 'number', min: '0', step: '1', 'data-field': 'replicas', class: 'replicas',
          'aria-label': `Replicas of ${namespace}/${name}`,
        });
        const scale = el('button', { type: 'button', 'data-action': 'scale', text: 'Scale', 'aria-label': `Scale ${namespace}/${name}` });
        const restart = el('button', { type: 'button', 'data-action': 'restart', text: 'Restart', 'aria-label': `Restart ${namespace}/${name}` });
        const doScale = () => {
          const n = Number(replicas.value);
          if (!Number.isInteger(n) || n < 0) {
            ctx.notice('error', `replicas of ${namespace}/${name}: must be a whole number, 0 or more (got ${JSON.stringify(replicas.value)})`);
            return;
          }
          act(ctx, scale, () => api.call('PATCH', `${path}/scale`, { spec: { replicas: n } }, 'application/merge-patch+json'),
            `Scaled ${namespace}/${name} to ${n}`);
        };
        scale.addEventListener('click', doScale);
        replicas.addEventListener('keydown', (e) => { if (e.key === 'Enter') doScale(); });
        restart.addEventListener('click', () => act(ctx, restart, () => api.call('PATCH', path, {
          spec: { template: { metadata: { annotations: { 'kubectl.kubernetes.io/restartedAt': new Date().toISOString().replace(/\.\d+Z$/, 'Z') } } } },
        }, 'application/strategic-merge-patch+json'), `Restarted ${namespace}/${name}`));
        td.append(replicas, ' ', scale, ' ', restart);
        this.update(td, d);
      },
      update(td, d) {
        // The field follows the object unless the user is typing a new figure into it.
        const input = td.firstChild;
        const want = String(d.spec && d.spec.replicas !== undefined ? d.spec.replicas : 1);
        if (input.value === (input.dataset.shown || '') && document.activeElement !== input) input.value = want;
        input.dataset.shown = want;
      },
    },
  ], { name: fmt.key, empty: 'No deployments.' });
  live(ctx, api.collection(APPS, 'deployments', ctx.ns), table);
  ages(ctx, table);
}

// ------------------------------------------------------------------ functions

/**
 * Services that front wasi:http functions (wasm pods with a container port), with their pods'
 * CPU and memory from metrics.k8s.io PodMetrics, and the Service's request rate, mean latency
 * and cold starts from custom.metrics.k8s.io (each when served and readable), charted while the
 * view is open.
 */
export function functions(root, ctx) {
  root.append(el('h1', { text: 'Functions' }));
  root.append(el('p', { class: 'hint', text: 'Services whose pods run wasi:http components (runtime wasm, with a container port). CPU and memory (metrics.k8s.io), requests per second, mean latency and cold starts per minute (custom.metrics.k8s.io) are sampled every 5 s while this page is open.' }));
  const services = new Store();
  const pods = new Store();
  const series = new Map(); // function key → { cpu: [], memory: [], requests: [], latency: [], 'cold-starts': [] }
  const HISTORY = 60;
  const functionPods = (svc) => [...pods.values()].filter((p) => p.metadata.namespace === svc.metadata.namespace &&
    fmt.runtime(p) === 'wasm' && fmt.selects(svc.spec && svc.spec.selector, p.metadata.labels) &&
    ((p.spec && p.spec.containers) || []).some((c) => (c.ports || []).length > 0));
  const chartColumn = (key, label, unit) => ({
    key, label,
    create(td, f) { td.append(sparkline(`${label} of ${fmt.key(f)}`)); this.update(td, f); },
    update(td, f) {
      const values = (series.get(fmt.key(f)) || {})[key] || [];
      const last = values.length ? values[values.length - 1] : NaN;
      draw(td.firstChild, values, Number.isFinite(last) ? unit(last) : '—');
    },
  });
  const seriesOf = (k) => {
    if (!series.has(k)) series.set(k, { cpu: [], memory: [], requests: [], latency: [], 'cold-starts': [] });
    return series.get(k);
  };
  const push = (a, v) => { a.push(v); while (a.length > HISTORY) a.shift(); };
  const table = new LiveTable(tableSection(root, 'functions', 'Functions'), [
    nsColumn,
    nameColumn,
    { key: 'pods', label: 'Pods', text: (f) => functionPods(f).length },
    chartColumn('cpu', 'CPU', fmt.cores),
    chartColumn('memory', 'Memory', fmt.bytes),
    chartColumn('requests', 'Requests per second', fmt.perSecond),
    chartColumn('latency', 'Latency', fmt.seconds),
    chartColumn('cold-starts', 'Cold starts per minute', fmt.perMinute),
  ], { name: fmt.key, filter: (svc) => functionPods(svc).length > 0, empty: 'No functions: no Service selects a wasm pod with a container port.' });
  const rejoin = throttle(() => table.reset([...services.values()]), 250);
  live(ctx, api.collection(CORE, 'services', ctx.ns), services, rejoin);
  live(ctx, api.collection(CORE, 'pods', ctx.ns), pods, rejoin);
  let served = true;
  every(ctx, 5000, async () => {
    if (!served) return;
    let list;
    try {
      list = await api.get(api.collection(METRICS, 'pods', ctx.ns));
    } catch (err) {
      served = !(err instanceof api.ApiError && [403, 404].includes(err.status));
      return;
    }
    const byPod = new Map((list.items || []).map((m) => [fmt.key(m), m]));
    for (const svc of table.objects()) {
      let cpu = 0;
      let memory = 0;
      for (const p of functionPods(svc)) {
        const m = byPod.get(fmt.key(p));
        for (const c of (m && m.containers) || []) {
          cpu += fmt.quantity((c.usage || {}).cpu) || 0;
          memory += fmt.quantity((c.usage || {}).memory) || 0;
        }
      }
      const s = seriesOf(fmt.key(svc));
      push(s.cpu, cpu);
      push(s.memory, memory);
    }
    table.refresh(['cpu', 'memory']);
  });
  // A Service's figures (its pods' together) from the custom metrics API; none yet (a function
  // with no request in the window has no latency) is a gap, a 403 stops the asking.
  const CUSTOM = [
    ['requests', 'skiff_function_requests_per_second'],
    ['latency', 'skiff_function_request_duration_seconds'],
    ['cold-starts', 'skiff_function_cold_starts_per_minute'],
  ];
  let customServed = true;
  every(ctx, 5000, async () => {
    if (!customServed) return;
    await Promise.all(table.objects().map(async (svc) => {
      const s = seriesOf(fmt.key(svc));
      const base = `${CUSTOM_METRICS}/namespaces/${encodeURIComponent(svc.metadata.namespace)}/services/${encodeURIComponent(svc.metadata.name)}/`;
      await Promise.all(CUSTOM.map(async ([key, metric]) => {
        let value = NaN;
        try {
          const list = await api.get(base + metric);
          value = fmt.quantity(((list.items || [])[0] || {}).value);
        } catch (err) {
          if (err instanceof api.ApiError && err.status === 403) customServed = false;
        }
        push(s[key], value);
      }));
    }));
    table.refresh(CUSTOM.map(([key]) => key));
  });
}

// ------------------------------------------------------------------ services and ingresses

function servicePorts(svc) {
  return ((svc.spec && svc.spec.ports) || []).map((p) => `${p.port}${p.nodePort ? ':' + p.nodePort : ''}/${p.protocol || 'TCP'}`).join(',') || '<none>';
}

export function services(root, ctx) {
  root.append(el('h1', { text: 'Services and ingresses' }));
  const svc = new LiveTable(tableSection(root, 'services', 'Services'), [
    nsColumn,
    nameColumn,
    { key: 'type', label: 'Type', text: (s) => (s.spec && s.spec.type) || 'ClusterIP' },
    { key: 'cluster-ip', label: 'Cluster IP', text: (s) => (s.spec && s.spec.clusterIP) || '<none>' },
    { key: 'ports', label: 'Ports', text: servicePorts },
    ageColumn,
  ], { name: fmt.key, empty: 'No services.' });
  const ing = new LiveTable(tableSection(root, 'ingresses', 'Ingresses'), [
    nsColumn,
    nameColumn,
    { key: 'class', label: 'Class', text: (i) => (i.spec && i.spec.ingressClassName) || '<none>' },
    { key: 'hosts', label: 'Hosts', text: (i) => ((i.spec && i.spec.rules) || []).map((r) => r.host || '*').join(',') || '*' },
    { key: 'address', label: 'Address', text: (i) => ((i.status && i.status.loadBalancer && i.status.loadBalancer.ingress) || []).map((a) => a.ip || a.hostname).join(',') },
    ageColumn,
  ], { name: fmt.key, empty: 'No ingresses.' });
  live(ctx, api.collection(CORE, 'services', ctx.ns), svc);
  live(ctx, api.collection(NETWORKING, 'ingresses', ctx.ns), ing);
  ages(ctx, svc, ing);
}

// ------------------------------------------------------------------ events

export function events(root, ctx) {
  root.append(el('h1', { text: 'Events' }));
  const newest = (a, b) => {
    const ta = fmt.eventTime(a);
    const tb = fmt.eventTime(b);
    if (ta !== tb) return ta < tb ? 1 : -1;
    return fmt.key(a) < fmt.key(b) ? -1 : fmt.key(a) > fmt.key(b) ? 1 : 0;
  };
  const table = new LiveTable(tableSection(root, 'events', 'Events'), [
    nsColumn,
    { key: 'last-seen', label: 'Last seen', text: (e) => fmt.age(fmt.eventTime(e)) },
    { key: 'type', label: 'Type', text: (e) => e.type || '' },
    { key: 'reason', label: 'Reason', text: (e) => e.reason || '' },
    { key: 'object', label: 'Object', text: (e) => e.involvedObject ? `${(e.involvedObject.kind || '').toLowerCase()}/${e.involvedObject.name || ''}` : '' },
    { key: 'message', label: 'Message', text: (e) => e.message || '' },
    { key: 'count', label: 'Count', text: (e) => e.count || (e.series && e.series.count) || 1 },
  ], { name: fmt.key, order: newest, empty: 'No events.' });
  live(ctx, api.collection(CORE, 'events', ctx.ns), table);
  const t = setInterval(() => table.refresh(['last-seen']), 5000);
  ctx.signal.addEventListener('abort', () => clearInterval(t), { once: true });
}

// ------------------------------------------------------------------ logs

/** At most this much log text is kept in the page (older text is dropped from the top). */
const LOG_LIMIT = 2 * 1024 * 1024;

/** A log line's RFC 3339 time as [seconds, nanoseconds] (null if it is not one). */
function stamp(text) {
  const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$/.exec(text);
  if (!m) return null;
  const ms = Date.parse(m[1] + m[3]);
  return Number.isFinite(ms) ? [ms / 1000, Number((m[2] || '').padEnd(9, '0'))] : null;
}

const compareStamps = (a, b) => (a[0] - b[0]) || (a[1] - b[1]);

/**
 * A container's log: the last 1,000 lines, then followed. The lines are asked for with their
 * times, so that a stream the browser loses (Chromium drops open requests when the host's
 * network changes, as when a pod's interface is made) is resumed from the last line shown
 * (`sinceTime`, to the second) without repeating or losing lines.
 */
export function logs(root, ctx, [ns, pod, container]) {
  const title = `Logs of ${ns}/${pod}${container ? ' (' + container + ')' : ''}`;
  root.append(el('h1', { text: title }));
  const status = el('p', { id: 'logs-status', class: 'hint', text: 'Connecting…' });
  const pre = el('pre', { id: 'logs', tabindex: '0', 'aria-label': title });
  const others = el('p', {}, el('a', { href: '#/pods', text: '← Pods' }));
  root.append(others, status, pre);
  // The pod's other containers, when it has several (a refusal here is not shown: the log's is).
  api.get(`${CORE}/namespaces/${encodeURIComponent(ns)}/pods/${encodeURIComponent(pod)}`).then((p) => {
    const names = ((p.spec && p.spec.containers) || []).map((c) => c.name);
    if (names.length < 2 || ctx.signal.aborted) return;
    others.append(' · Containers:');
    for (const name of names) {
      others.append(' ', name === container ? el('strong', { text: name }) : el('a', { href: `#/logs/${ns}/${pod}/${name}`, text: name }));
    }
  }).catch(() => {});
  const done = ctx.part();
  let last = null; // the time of the last line shown
  let atLast = new Set(); // the lines shown with exactly that time
  let partial = '';
  const show = (text) => {
    const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    pre.append(text);
    if (pre.textContent.length > LOG_LIMIT) pre.textContent = pre.textContent.slice(-LOG_LIMIT / 2);
    if (atEnd) pre.scrollTop = pre.scrollHeight;
  };
  const take = (chunk, flush) => {
    partial += chunk;
    const cut = flush ? partial.length : partial.lastIndexOf('\n');
    if (cut < 0) return;
    const lines = partial.slice(0, cut).split('\n');
    partial = partial.slice(cut + 1);
    let out = '';
    for (const line of lines) {
      if (flush && line === '') continue;
      const space = line.indexOf(' ');
      const at = space > 0 ? stamp(line.slice(0, space)) : null;
      const content = at ? line.slice(space + 1) : line;
      if (at && last) {
        const order = compareStamps(at, last);
        if (order < 0 || (order === 0 && atLast.has(content))) continue; // shown before the stream was lost
        if (order > 0) atLast = new Set();
      }
      if (at) {
        last = at;
        atLast.add(content);
      }
      out += content + '\n';
    }
    if (out) show(out);
  };
  const path = () => {
    const query = new URLSearchParams({ follow: 'true', timestamps: 'true' });
    if (container) query.set('container', container);
    if (last) query.set('sinceTime', new Date(last[0] * 1000).toISOString().replace(/\.\d+Z$/, 'Z'));
    else query.set('tailLines', '1000');
    return `${CORE}/namespaces/${encodeURIComponent(ns)}/pods/${encodeURIComponent(pod)}/log?${query}`;
  };
  (async () => {
    let lost = 0;
    while (!ctx.signal.aborted) {
      try {
        await api.stream(path(), ctx.signal, (text) => take(text, false), () => {
          status.textContent = 'Following (new lines appear as the container writes them).';
          lost = 0;
          done();
        });
        if (ctx.signal.aborted) return;
        take('', true);
        status.textContent = 'The log stream ended (the container stopped).';
        return;
      } catch (err) {
        if (ctx.signal.aborted) return;
        if (err instanceof api.ApiError) {
          status.textContent = 'No log: ' + err.message;
          ctx.refused(err);
          done();
          return;
        }
        // The connection was lost, not refused: resume after a short pause.
        lost++;
        partial = '';
        status.textContent = 'Reconnecting…';
        await api.sleep(Math.min(100 * 2 ** lost, 5000), ctx.signal);
      }
    }
  })();
}

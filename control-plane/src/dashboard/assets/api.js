// The page's only way to the cluster: the Kubernetes REST API of this origin, called with the
// logged-in user's bearer token (kept in sessionStorage, never in a URL). Lists, then follows
// watches (newline-delimited JSON read from a fetch stream), relisting when the server says the
// version is gone. Must not: touch the DOM.

const TOKEN_KEY = 'skiff.token';

/** An API refusal: the HTTP status and the metav1.Status message. */
export class ApiError extends Error {
  constructor(status, message, reason) {
    super(message);
    this.status = status;
    this.reason = reason || '';
  }
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY) || '';
}

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** Called with the error when any call is answered 401 (the token is gone or wrong). */
let onUnauthorized = () => {};
export function whenUnauthorized(f) {
  onUnauthorized = f;
}

function headers(extra) {
  return Object.assign({ Authorization: 'Bearer ' + token(), Accept: 'application/json' }, extra);
}

async function failure(res) {
  let message = res.status + ' ' + res.statusText;
  let reason = '';
  try {
    const text = await res.text();
    try {
      const status = JSON.parse(text);
      if (status && status.message) message = status.message;
      if (status && status.reason) reason = status.reason;
    } catch (_) {
      if (text.trim()) message = text.trim();
    }
  } catch (_) { /* the body could not be read: the status line says enough */ }
  const err = new ApiError(res.status, message, reason);
  if (res.status === 401) onUnauthorized(err);
  return err;
}

/** How many times a call that got no answer is sent again (after 100, 200, 400 ms). */
const RESENDS = 3;

/**
 * One call; the parsed JSON answer, or an ApiError. A call that gets no answer at all (Chromium
 * fails the requests it has in flight when the host's network changes, as when a pod's interface
 * is made on this very node) is sent again: every call the pages make may be (reads, reviews,
 * DELETEs, and PATCHes that set values). A DELETE sent again and answered 404 was done by the
 * first one.
 */
export async function call(method, path, body, contentType) {
  const init = { method, headers: headers(), cache: 'no-store', credentials: 'omit' };
  if (body !== undefined) {
    init.body = typeof body === 'string' ? body : JSON.stringify(body);
    init.headers['Content-Type'] = contentType || 'application/json';
  }
  for (let sent = 0; ; sent++) {
    let res;
    try {
      res = await fetch(path, init);
    } catch (err) {
      if (sent === RESENDS) throw new Error(`no answer from the API to ${method} ${path} (${err.message}); try again`);
      await sleep(100 * 2 ** sent);
      continue;
    }
    if (!res.ok) {
      if (sent > 0 && method === 'DELETE' && res.status === 404) return {};
      throw await failure(res);
    }
    const text = await res.text();
    return text ? JSON.parse(text) : {};
  }
}

export const get = (path) => call('GET', path);

/** The whole collection at `path`, page by page (500 a page), and its resourceVersion. */
export async function list(path, signal) {
  let items = [];
  let cont = '';
  for (;;) {
    const sep = path.includes('?') ? '&' : '?';
    const url = path + sep + 'limit=500' + (cont ? '&continue=' + encodeURIComponent(cont) : '');
    const res = await fetch(url, { headers: headers(), cache: 'no-store', credentials: 'omit', signal });
    if (!res.ok) throw await failure(res);
    const page = await res.json();
    items = items.concat(page.items || []);
    cont = (page.metadata && page.metadata.continue) || '';
    if (!cont) return { items, resourceVersion: (page.metadata && page.metadata.resourceVersion) || '' };
  }
}

/**
 * Lists `path` then follows its watch until `signal` aborts. `sink.reset(items)` gets every full
 * list (the first, and after a relist), `sink.apply(events)` the watch events of one read as
 * [type, object] pairs, `sink.watching()` each time a watch is open, `sink.error(err)` failures.
 * A watch the server ends, or whose connection is lost (Chromium drops open requests when the
 * host's network changes, as when a pod's interface is made), is resumed from the last version
 * seen, quietly; `410 Gone` relists. API refusals are told; 401, 403 and 404 end it (they would
 * not change), others are retried after a growing pause, as are lost connections (told once
 * they keep failing).
 */
export async function follow(path, sink, signal) {
  const at = { rv: null };
  let pause = 0;
  let lost = 0;
  while (!signal.aborted) {
    try {
      if (at.rv === null) {
        const listed = await list(path, signal);
        sink.reset(listed.items);
        at.rv = listed.resourceVersion;
      }
      const started = Date.now();
      const gone = await watchOnce(path, at, sink, signal);
      if (gone) at.rv = null;
      pause = 0;
      lost = 0;
      // A watch the server ends at once again and again is not asked for in a tight loop.
      if (Date.now() - started < 1000) await sleep(250, signal);
    } catch (err) {
      if (signal.aborted) return;
      if (err instanceof ApiError) {
        sink.error(err);
        if (err.status === 401 || err.status === 403 || err.status === 404) return;
        pause = Math.min(Math.max(pause * 2, 500), 10000);
      } else {
        lost++;
        if (lost === 4) sink.error(new ApiError(0, 'the connection to the API was lost; retrying'));
        pause = Math.min(100 * 2 ** lost, 5000);
      }
      await sleep(pause, signal);
    }
  }
}

/** One watch request from `at.rv` (kept up to date as events come); true when a relist is needed. */
async function watchOnce(path, at, sink, signal) {
  const sep = path.includes('?') ? '&' : '?';
  const url = path + sep + 'watch=1&allowWatchBookmarks=true&resourceVersion=' + encodeURIComponent(at.rv);
  const res = await fetch(url, { headers: headers(), cache: 'no-store', credentials: 'omit', signal });
  if (!res.ok) {
    if (res.status === 410) return true;
    throw await failure(res);
  }
  if (sink.watching) sink.watching();
  let gone = false;
  await readLines(res.body, signal, (lines) => {
    const events = [];
    for (const line of lines) {
      const ev = JSON.parse(line);
      const obj = ev.object || {};
      if (ev.type === 'ERROR') {
        if (obj.code === 410) gone = true;
        else sink.error(new ApiError(obj.code || 500, obj.message || 'watch error', obj.reason));
        continue;
      }
      if (obj.metadata && obj.metadata.resourceVersion) at.rv = obj.metadata.resourceVersion;
      if (ev.type !== 'BOOKMARK') events.push([ev.type, obj]);
    }
    if (events.length) sink.apply(events);
  });
  return gone;
}

/** Reads a byte stream as text lines, handing each read's complete lines to `each`. */
export async function readLines(body, signal, each) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let rest = '';
  const stop = () => reader.cancel().catch(() => {});
  signal.addEventListener('abort', stop, { once: true });
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      rest += decoder.decode(value, { stream: true });
      const cut = rest.lastIndexOf('\n');
      if (cut < 0) continue;
      const lines = rest.slice(0, cut).split('\n').filter((l) => l.trim() !== '');
      rest = rest.slice(cut + 1);
      if (lines.length) each(lines);
    }
    if (rest.trim()) each([rest]);
  } finally {
    signal.removeEventListener('abort', stop);
  }
}

/** A streamed text answer (a container's log) handed on chunk by chunk; `opened()` once it flows. */
export async function stream(path, signal, each, opened) {
  const res = await fetch(path, { headers: headers({ Accept: '*/*' }), cache: 'no-store', credentials: 'omit', signal });
  if (!res.ok) throw await failure(res);
  if (opened) opened();
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  const stop = () => reader.cancel().catch(() => {});
  signal.addEventListener('abort', stop, { once: true });
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      each(decoder.decode(value, { stream: true }));
    }
  } finally {
    signal.removeEventListener('abort', stop);
  }
}

export function sleep(ms, signal) {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    if (signal) signal.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
  });
}

/** Who the token is (SelfSubjectReview), or an ApiError (401 for a wrong token). */
export async function whoAmI() {
  const review = await call('POST', '/apis/authentication.k8s.io/v1/selfsubjectreviews', {
    apiVersion: 'authentication.k8s.io/v1',
    kind: 'SelfSubjectReview',
  });
  return (review.status && review.status.userInfo) || {};
}

/** A resource path: `base` is `/api/v1` or `/apis/GROUP/VERSION`; `ns` "" means all namespaces. */
export function collection(base, plural, ns) {
  return ns ? `${base}/namespaces/${encodeURIComponent(ns)}/${plural}` : `${base}/${plural}`;
}

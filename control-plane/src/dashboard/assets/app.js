// The dashboard's shell: login with a bearer token, the view named by the location hash, the
// namespace filter, the notice area, and `body[data-ready]` (1 once the current view's first
// render is done). Must not: render objects itself (views.js does) or keep the token anywhere
// but sessionStorage.

import * as api from './api.js';
import * as views from './views.js';

const $ = (sel) => document.querySelector(sel);
const VIEWS = ['overview', 'pods', 'deployments', 'functions', 'services', 'events'];

let current = null; // { controller } of the shown view

function notice(kind, text) {
  const n = $('#notice');
  n.dataset.kind = kind;
  n.textContent = text;
}

function showLogin(message) {
  stopView();
  $('#login-view').hidden = false;
  $('#view').hidden = true;
  $('#nav').hidden = true;
  $('#session').hidden = true;
  $('#login-error').textContent = message || '';
  document.body.dataset.view = 'login';
  document.body.dataset.ready = '1';
  $('#token').focus();
}

async function login(token) {
  api.setToken(token);
  try {
    const who = await api.whoAmI();
    $('#user').textContent = who.username || '';
  } catch (err) {
    api.setToken('');
    showLogin(err.status === 401 ? 'Login refused: ' + err.message : 'Login failed: ' + err.message);
    return;
  }
  $('#login-view').hidden = true;
  $('#nav').hidden = false;
  $('#session').hidden = false;
  $('#login-error').textContent = '';
  $('#token').value = '';
  namespaces();
  if (!location.hash || location.hash === '#' || location.hash === '#/') location.hash = '#/overview';
  else route();
}

function logout() {
  api.setToken('');
  notice('', '');
  showLogin('');
}

/** Fills the namespace filter (left with "All namespaces" alone if listing them is refused). */
async function namespaces() {
  const select = $('#namespace');
  try {
    const list = await api.get('/api/v1/namespaces');
    const chosen = select.value;
    select.replaceChildren(new Option('All namespaces', ''));
    for (const ns of list.items || []) select.append(new Option(ns.metadata.name, ns.metadata.name));
    select.value = chosen;
  } catch (_) { /* a user without list on namespaces filters nothing but sees what it may */ }
}

function stopView() {
  if (current) current.controller.abort();
  current = null;
}

/** Shows the view the hash names (`#/pods`, `#/logs/NS/POD/CONTAINER`). */
function route() {
  if (!api.token()) {
    showLogin('');
    return;
  }
  stopView();
  const parts = location.hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
  let name = parts[0] || 'overview';
  if (name !== 'logs' && !VIEWS.includes(name)) name = 'overview';
  if (name === 'logs' && parts.length < 3) name = 'pods';
  document.body.dataset.ready = '0';
  document.body.dataset.view = name;
  for (const a of document.querySelectorAll('#nav a')) {
    if (a.dataset.view === name) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  const root = $('#view');
  root.replaceChildren();
  root.hidden = false;
  const controller = new AbortController();
  const view = { controller };
  current = view;
  // Ready once every part the view starts (a list and its watch, a log stream) is shown.
  let parts_pending = 0;
  let started = false;
  const settle = () => {
    if (!started || parts_pending !== 0 || current !== view || document.body.dataset.ready === '1') return;
    document.body.dataset.ready = '1';
    // For `bench/run dashboard`: the time from navigation start to this view's first full render.
    performance.mark('skiff-ready:' + name);
  };
  const ctx = {
    ns: $('#namespace').value,
    signal: controller.signal,
    notice,
    refused(err) {
      if (controller.signal.aborted) return;
      notice('error', err.message);
    },
    part() {
      parts_pending++;
      let once = false;
      return () => {
        if (once) return;
        once = true;
        parts_pending--;
        settle();
      };
    },
  };
  views[name](root, ctx, parts.slice(1));
  started = true;
  settle();
  document.title = `${root.querySelector('h1') ? root.querySelector('h1').textContent : name} · skiff`;
  $('#main').focus({ preventScroll: true });
}

function init() {
  api.whenUnauthorized((err) => {
    api.setToken('');
    showLogin('Your session ended: ' + err.message);
  });
  $('#login-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const token = $('#token').value.trim();
    if (!token) {
      $('#login-error').textContent = 'Enter a bearer token.';
      return;
    }
    login(token);
  });
  $('#logout').addEventListener('click', logout);
  $('#namespace').addEventListener('change', () => { notice('', ''); route(); });
  window.addEventListener('hashchange', () => { notice('', ''); route(); });
  if (api.token()) login(api.token());
  else showLogin('');
}

init();

// The operations console: the last minute's figures, orders per status, every order (filtered by
// status) with its timeline, and the dead letters — read from `/api/admin/...` every
// REFRESH_MS while the page is open. Only tokens with the `admin` role are answered.
import {
  ApiFailure, Session, clock, el, logInWith, money, say, shortId, showSession, statusBadge,
  timeline,
} from './api.js';

const session = new Session('saga-console');
const $ = (selector) => document.querySelector(selector);
const message = $('#message');
const REFRESH_MS = 2000;
let selected = null;
let timer = null;

function logOut() {
  session.clear();
  clearTimeout(timer);
  selected = null;
  show();
}

function show() {
  showSession(session, '#dashboard', '#login', 'Operator');
}

async function enter() {
  try {
    await refresh();
  } catch (e) {
    // A customer's token: the API says 403 admin_only; say so and go back to the login.
    if (e instanceof ApiFailure && (e.status === 403 || e.status === 401)) logOut();
    throw e;
  }
  show();
  message.hidden = true;
  schedule();
}

function schedule() {
  clearTimeout(timer);
  timer = setTimeout(async () => {
    try {
      await refresh();
      message.hidden = true;
    } catch (e) {
      say(message, e);
    }
    if (session.username !== null) schedule();
  }, REFRESH_MS);
}

async function refresh() {
  const status = $('#status-filter').value;
  const query = status ? `?status=${status}&limit=100` : '?limit=100';
  const [stats, orders, letters] = await Promise.all([
    session.call('GET', '/api/admin/stats'),
    session.call('GET', `/api/admin/orders${query}`),
    session.call('GET', '/api/admin/dead-letters?limit=50'),
  ]);
  drawStats(stats);
  drawOrders(orders);
  drawDeadLetters(letters);
  if (selected) await drawDetail(selected);
  $('#updated').textContent = `updated ${clock(new Date())}`;
}

const ms = (value) => (value === null ? '–' : value.toFixed(1));

function drawStats(stats) {
  const recent = stats.last_minute;
  $('#sagas-per-s').textContent = recent.sagas_per_s.toFixed(2);
  $('#finished').textContent = recent.finished;
  $('#p50').textContent = ms(recent.latency_ms.p50);
  $('#p90').textContent = ms(recent.latency_ms.p90);
  $('#p99').textContent = ms(recent.latency_ms.p99);
  $('#by-status').replaceChildren(...Object.entries(stats.by_status).map(([status, count]) =>
    el('div', { 'data-status': status }, el('span', { class: 'figure' }, count), statusBadge(status))));
}

function drawOrders(orders) {
  const rows = orders.map((order) => el('tr', {
    class: order.id === selected ? 'selected clickable' : 'clickable',
    'data-id': order.id,
    'data-status': order.status,
    tabindex: 0,
    onclick: () => select(order.id),
    onkeydown: (event) => { if (event.key === 'Enter') select(order.id); },
  },
  el('td', { class: 'order-id', title: order.id }, shortId(order.id)),
  el('td', {}, order.username),
  el('td', { class: 'num' }, order.details.item),
  el('td', {}, order.details.slot),
  el('td', { class: 'num' }, money(order.amount)),
  el('td', {}, statusBadge(order.status)),
  el('td', {}, clock(order.updated_at))));
  $('#orders tbody').replaceChildren(...(rows.length ? rows
    : [el('tr', {}, el('td', { colspan: 7, class: 'muted' }, 'No order.'))]));
}

async function select(id) {
  selected = id;
  for (const row of document.querySelectorAll('#orders tbody tr')) {
    row.classList.toggle('selected', row.dataset.id === id);
  }
  try {
    await drawDetail(id);
  } catch (e) {
    say(message, e);
  }
}

async function drawDetail(id) {
  const order = await session.call('GET', `/api/admin/orders/${id}`);
  $('#detail').replaceChildren(
    el('h2', {}, 'Order timeline'),
    el('p', {}, el('span', { class: 'order-id' }, order.id), ' ', statusBadge(order.status)),
    el('p', { class: 'muted' }, `${order.username} · item ${order.details.item} · slot ${order.details.slot} · ${money(order.amount)}`),
    order.reason ? el('p', { class: 'reason' }, order.reason) : null,
    timeline(order.saga));
}

function drawDeadLetters(letters) {
  const rows = letters.map((letter) => el('tr', { 'data-entry': letter.entry },
    el('td', { class: 'order-id' }, letter.entry),
    el('td', { class: 'order-id' }, letter.order_id ?? '–'),
    el('td', {}, letter.reason ?? ''),
    el('td', {}, letter.at ? clock(letter.at) : '')));
  $('#dead-letters tbody').replaceChildren(...(rows.length ? rows
    : [el('tr', {}, el('td', { colspan: 4, class: 'muted' }, 'None: every entry was processed.'))]));
}

logInWith($('#login'), session, message, enter);
$('#logout').addEventListener('click', logOut);
$('#status-filter').addEventListener('change', () => refresh().catch((e) => say(message, e)));

show();
if (session.username !== null) enter().catch((e) => say(message, e));

// The shop page: sign up and log in, the wallet and top-ups, the catalog and slots, ordering,
// and "my orders" with each saga's timeline, kept live by long polls
// (`GET /api/orders/{id}?wait_ms=N` answers as soon as the order is final).
import {
  ApiFailure, FINAL, Session, call, el, fields, logInWith, money, say, shortId, showSession,
  statusBadge, timeline,
} from './api.js';

const session = new Session('saga-shop');
const $ = (selector) => document.querySelector(selector);
const message = $('#message');

/** Orders by id, newest first when drawn; each with its saga log once read. */
const orders = new Map();
/** The orders whose timeline is open, so redrawing keeps them open. */
const open = new Set();
/** Orders with a long poll running. */
const watched = new Set();
let items = [];
const LONG_POLL_MS = 25000;

async function signUp(event) {
  event.preventDefault();
  const form = event.target;
  const user = fields(form);
  try {
    await call('POST', '/api/auth/users', { body: user });
    await session.logIn(user.username, user.password);
    form.reset();
    await enter();
    say(message, null, `Welcome, ${user.username}: your wallet has 100.00 to start with.`);
  } catch (e) {
    say(message, e);
  }
}

function logOut() {
  session.clear();
  orders.clear();
  open.clear();
  show();
}

function show() {
  showSession(session, '#signed-in', '#signed-out', 'Signed in as');
}

async function enter() {
  show();
  await Promise.all([refreshWallet(), refreshCatalog(), refreshOrders()]);
}

async function refreshWallet() {
  const account = await session.call('GET', `/api/accounts/${encodeURIComponent(session.username)}`);
  $('#wallet').textContent = money(account.wallet);
}

async function refreshCatalog() {
  const [itemList, slots] = await Promise.all([call('GET', '/api/items'), call('GET', '/api/slots')]);
  items = itemList;
  $('#items tbody').replaceChildren(...items.map((item) => el('tr', { 'data-item': item.id },
    el('td', {}, item.name), el('td', { class: 'num' }, money(item.price)), el('td', { class: 'num' }, item.stock))));
  $('#slots tbody').replaceChildren(...slots.map((slot) => el('tr', { 'data-slot': slot.slot },
    el('td', {}, slot.slot), el('td', { class: 'num' }, slot.free_couriers))));
  const select = $('#order-form select[name=item]');
  const chosen = select.value;
  select.replaceChildren(...items.map((item) => el('option', { value: item.id },
    `${item.name} — ${money(item.price)}${item.stock > 0 ? '' : ' (sold out)'}`)));
  if (chosen) select.value = chosen;
  else priceIntoAmount();
  $('#slot-list').replaceChildren(...slots.filter((s) => s.free_couriers > 0)
    .map((slot) => el('option', { value: slot.slot })));
}

function priceIntoAmount() {
  const item = items.find((i) => String(i.id) === $('#order-form select[name=item]').value);
  if (item) $('#order-form input[name=amount]').value = money(item.price);
}

async function refreshOrders() {
  const list = await session.call('GET', '/api/orders/');
  for (const order of list) orders.set(order.id, { ...orders.get(order.id), ...order, saga: orders.get(order.id)?.saga });
  draw();
  for (const order of list) {
    if (!FINAL.has(order.status) || open.has(order.id)) watch(order.id);
  }
}

async function placeOrder(event) {
  event.preventDefault();
  const form = event.target;
  const { item, slot, amount } = fields(form);
  try {
    const order = await session.call('POST', '/api/orders/', {
      body: { amount: Number(amount), details: { item: Number(item), slot } },
      headers: { 'Idempotency-Key': crypto.randomUUID() },
    });
    orders.set(order.id, order);
    open.add(order.id);
    draw();
    say(message, null, `Order ${shortId(order.id)} placed: its saga is running.`);
    watch(order.id);
  } catch (e) {
    say(message, e);
  }
}

async function topUp(event) {
  event.preventDefault();
  const form = event.target;
  try {
    await session.call('POST', `/api/accounts/${encodeURIComponent(session.username)}/deposits`, {
      body: { amount: Number(fields(form).amount) },
      headers: { 'Idempotency-Key': crypto.randomUUID() },
    });
    form.reset();
    await refreshWallet();
    say(message, null, 'Wallet topped up.');
  } catch (e) {
    say(message, e);
  }
}

async function cancel(id) {
  try {
    const order = await session.call('POST', `/api/orders/${id}/cancel`);
    orders.set(id, { ...orders.get(id), ...order });
    open.add(id);
    draw();
    say(message, null, `Cancelling order ${shortId(id)}: every step is undone, in reverse.`);
    watch(id);
  } catch (e) {
    say(message, e);
  }
}

/**
 * Reads the order with its saga log, then (while it is not final) waits for it to be: one long
 * poll at a time per order. When it settles, the wallet and catalog are read again.
 */
async function watch(id) {
  if (watched.has(id)) return;
  watched.add(id);
  try {
    let order = await session.call('GET', `/api/orders/${id}`);
    while (session.username !== null) {
      orders.set(id, order);
      draw();
      if (FINAL.has(order.status)) break;
      order = await session.call('GET', `/api/orders/${id}?wait_ms=${LONG_POLL_MS}`);
    }
    await Promise.all([refreshWallet(), refreshCatalog()]);
  } catch (e) {
    say(message, e);
    if (e instanceof ApiFailure && e.status !== 404 && session.username !== null) {
      // A blip: look again a little later rather than leave the order frozen on screen.
      setTimeout(() => watch(id), (Number(e.retryAfter) || 2) * 1000);
    }
  } finally {
    watched.delete(id);
  }
}

function draw() {
  const sorted = [...orders.values()].sort((a, b) => b.created_at.localeCompare(a.created_at));
  const list = $('#orders');
  if (!sorted.length) {
    list.replaceChildren(el('li', { class: 'muted' }, 'No order yet.'));
    return;
  }
  list.replaceChildren(...sorted.map((order) => {
    const item = items.find((i) => i.id === order.details.item);
    const cancellable = order.status === 'pending' || order.status === 'completed';
    const details = el('details', {
      open: open.has(order.id),
      ontoggle: (event) => {
        if (event.target.open) {
          open.add(order.id);
          if (!order.saga) watch(order.id);
        } else {
          open.delete(order.id);
        }
      },
    },
    el('summary', {}, 'Timeline'),
    timeline(order.saga));
    return el('li', { class: 'order', 'data-id': order.id, 'data-status': order.status },
      el('div', { class: 'order-head' },
        el('span', { class: 'order-id', title: order.id }, shortId(order.id)),
        el('span', {}, item ? item.name : `item ${order.details.item}`),
        el('span', {}, `slot ${order.details.slot}`),
        el('span', { class: 'num' }, money(order.amount)),
        statusBadge(order.status),
        cancellable ? el('button', { type: 'button', class: 'quiet', onclick: () => cancel(order.id) }, 'Cancel') : null),
      order.reason ? el('p', { class: 'reason' }, order.reason) : null,
      details);
  }));
}

$('#signup').addEventListener('submit', signUp);
logInWith($('#login'), session, message, enter);
$('#logout').addEventListener('click', logOut);
$('#order-form').addEventListener('submit', placeOrder);
$('#order-form select[name=item]').addEventListener('change', priceIntoAmount);
$('#topup').addEventListener('submit', topUp);

show();
if (session.username !== null) {
  enter().catch((e) => {
    say(message, e);
    if (e instanceof ApiFailure && e.status === 401) logOut();
  });
}

// What the shop page and the console share: calling the JSON API (tokens, refresh, errors as
// values a page can show), building elements, and drawing an order's saga timeline.

/** An API answer that is not 2xx, with the API's `{error, detail, field}` when it sent one. */
export class ApiFailure extends Error {
  constructor(status, body, retryAfter) {
    const code = body?.error ?? `http_${status}`;
    const detail = body?.detail ?? (status === 0 ? 'the server cannot be reached' : 'unexpected answer');
    super(`${detail} (${code}${body?.field ? `, field ${body.field}` : ''})`);
    this.status = status;
    this.code = code;
    this.field = body?.field ?? null;
    this.retryAfter = retryAfter;
  }
}

/** Tokens of one page's user, kept for the browser tab's life (sessionStorage). */
export class Session {
  constructor(key) {
    this.key = key;
    this.data = JSON.parse(sessionStorage.getItem(key) ?? 'null');
  }

  get username() { return this.data?.username ?? null; }

  save(username, tokens) {
    this.data = { username, access: tokens.access, refresh: tokens.refresh ?? this.data?.refresh };
    sessionStorage.setItem(this.key, JSON.stringify(this.data));
  }

  clear() {
    this.data = null;
    sessionStorage.removeItem(this.key);
  }

  async logIn(username, password) {
    const tokens = await call('POST', '/api/token', { body: { username, password } });
    this.save(username, tokens);
  }

  /** `call` with the access token; an expired one is refreshed once, then the call repeated. */
  async call(method, path, options = {}) {
    const withToken = () => call(method, path, { ...options, token: this.data?.access });
    try {
      return await withToken();
    } catch (e) {
      if (!(e instanceof ApiFailure) || e.status !== 401 || !this.data?.refresh) throw e;
      const tokens = await call('POST', '/api/token/refresh', { body: { refresh: this.data.refresh } });
      this.save(this.data.username, tokens);
      return withToken();
    }
  }
}

/** One request to the API on this origin: the JSON answer, or an ApiFailure. */
export async function call(method, path, { body, token, headers = {}, signal } = {}) {
  const init = { method, headers: { Accept: 'application/json', ...headers }, signal };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  if (token) init.headers.Authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(path, init);
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiFailure(0, null, null);
  }
  const text = await response.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { json = null; }
  if (!response.ok) throw new ApiFailure(response.status, json, response.headers.get('Retry-After'));
  return json;
}

/** `el('p', {class: 'x'}, 'text', child)`: an element with attributes and children. */
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? '' : value);
  }
  node.append(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return node;
}

/** Money on the wire is a number of currency units with at most two decimals. */
export const money = (amount) => Number(amount).toFixed(2);

export const FINAL = new Set(['completed', 'failed', 'cancelled']);

export function statusBadge(status) {
  return el('span', { class: `badge status-${status}` }, status);
}

const pad = (n, width = 2) => String(n).padStart(width, '0');

/** A wall-clock time, local, to the second (`withMs`: to the millisecond). */
export function clock(iso, withMs = false) {
  const t = new Date(iso);
  const seconds = `${pad(t.getHours())}:${pad(t.getMinutes())}:${pad(t.getSeconds())}`;
  return withMs ? `${seconds}.${pad(t.getMilliseconds(), 3)}` : seconds;
}

/** Order ids are UUIDv7: the leading digits are a timestamp, the trailing ones tell orders apart. */
export const shortId = (id) => `…${id.slice(-8)}`;

const STEP_LABELS = {
  billing: { action: 'charge', compensation: 'refund' },
  items: { action: 'reserve the item', compensation: 'release the item' },
  slots: { action: 'book a courier', compensation: 'release the courier' },
  customer: { cancel: 'cancel requested' },
};

/** The saga log as a list: each action and compensation with its participant, time and outcome. */
export function timeline(saga) {
  if (!saga?.length) return el('p', { class: 'muted' }, 'No step yet.');
  return el('ol', { class: 'timeline' }, saga.map((step) => el('li', {
    class: `step kind-${step.kind} outcome-${step.outcome}`,
    'data-participant': step.participant,
    'data-kind': step.kind,
    'data-outcome': step.outcome,
  },
  el('span', { class: 'when' }, clock(step.finished_at, true)),
  el('span', { class: 'what' },
    el('strong', {}, step.participant), ' ',
    STEP_LABELS[step.participant]?.[step.kind] ?? step.kind),
  el('span', { class: `outcome outcome-${step.outcome}` },
    step.outcome === 'ok' ? (step.kind === 'action' ? 'granted' : 'done') : step.outcome,
    step.error_code ? ` · ${step.error_code}` : ''))));
}

/** Shows `error` (or a success `text`) in the page's message line. */
export function say(node, error, text) {
  node.hidden = false;
  node.className = error ? 'message error' : 'message ok';
  node.textContent = error ? (error instanceof ApiFailure ? error.message : String(error)) : text;
}

/** The values of a form's named fields. */
export const fields = (form) => Object.fromEntries(new FormData(form).entries());

/**
 * Shows `signedIn` (a selector) or `signedOut` as `session` has a user or not, and in the bar
 * (`ACCOUNT_NAV` of pages.rs) the user after `label` and the log-out button.
 */
export function showSession(session, signedIn, signedOut, label) {
  const on = session.username !== null;
  document.querySelector(signedIn).hidden = !on;
  document.querySelector(signedOut).hidden = on;
  document.querySelector('#logout').hidden = !on;
  document.querySelector('#who').textContent = on ? `${label} ${session.username}` : '';
}

/**
 * Makes `form` (username, password) log `session` in, then run `enter`; a refusal is shown in
 * `message`, and `enter` may throw to show one too.
 */
export function logInWith(form, session, message, enter) {
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const { username, password } = fields(form);
    try {
      await session.logIn(username, password);
      form.reset();
      message.hidden = true;
      await enter();
    } catch (e) {
      say(message, e);
    }
  });
}

// A customer's and an operator's journey through the shop page and the console, in headless
// Debian Chromium driven by Playwright, against a running stack:
//
//   BASE_URL=http://127.0.0.1:8080 ADMIN_USER=operator node journey.mjs
//
// The customer signs up (after a refused short password, shown as a message), tops up, orders
// what completes (timeline: three granted actions), orders for a slot that does not exist (the
// slot refuses; the timeline shows the reserved item released),
// cancels the completed order (timeline: the cancel, then every step undone in reverse; wallet
// back). The page must fit a phone's width. The operator (ADMIN_USER, one of the stack's
// ADMIN_USERS) sees the customer's orders in the console and one's timeline; the customer's own
// token is refused there with `admin_only`. The API page, linked from the shop, draws every
// operation of /api/openapi.json. Every request the browser makes must go to the stack:
// one to any other host fails the run. Screenshots go to SCREENSHOTS (default .state/screenshots).
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { strict as assert } from 'node:assert';

const BASE_URL = process.env.BASE_URL ?? 'http://127.0.0.1:8080';
const ADMIN_USER = process.env.ADMIN_USER ?? 'operator';
const SCREENSHOTS = process.env.SCREENSHOTS ?? new URL('../.state/screenshots/', import.meta.url).pathname;
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
/** Bounded waits: a saga takes milliseconds; this is for a slow, shared machine. */
const WAIT_MS = 20000;
const PASSWORD = 'correct-horse-battery-staple';

mkdirSync(SCREENSHOTS, { recursive: true });
const origin = new URL(BASE_URL).origin;
const foreign = [];
const pageErrors = [];

function watch(page) {
  page.on('request', (request) => {
    const url = new URL(request.url());
    if (url.protocol !== 'data:' && url.origin !== origin) foreign.push(request.url());
  });
  page.on('pageerror', (error) => pageErrors.push(String(error)));
  // Chromium logs every 4xx answer as "Failed to load resource": refusals are part of the journey.
  page.on('console', (msg) => {
    if (msg.type() === 'error' && !msg.text().startsWith('Failed to load resource')) pageErrors.push(msg.text());
  });
  page.setDefaultTimeout(WAIT_MS);
  return page;
}

const step = (text) => console.log(`--- ${text}`);

/** The `nth` order of that status on the page (newest first), once it is there. */
async function orderRow(page, status, nth = 0) {
  const row = page.locator(`#orders li.order[data-status="${status}"]`).nth(nth);
  await row.waitFor();
  return row;
}

/** The steps of an order's open timeline as "participant kind outcome" lines. */
async function stepsOf(row) {
  const steps = row.locator('.timeline .step');
  return steps.evaluateAll((nodes) => nodes.map((n) =>
    `${n.dataset.participant} ${n.dataset.kind} ${n.dataset.outcome}`));
}

async function walletIs(page, amount) {
  await page.locator('#wallet', { hasText: amount }).waitFor();
}

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run'],
});
try {
  const username = `shopper-${Date.now().toString(36)}`;
  const shop = watch(await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage());
  await shop.goto(`${BASE_URL}/`);

  step('a refused sign-up is shown with the field it names');
  const signup = shop.locator('#signup');
  await signup.getByLabel('Username').fill(username);
  await signup.getByLabel('Email').fill(`${username}@example.com`);
  await signup.getByLabel('Password').fill('short');
  await signup.getByRole('button', { name: 'Sign up' }).click();
  await shop.locator('#message.error', { hasText: 'password' }).waitFor();

  step('sign up: signed in, wallet 100.00, the catalog and the slots shown');
  await signup.getByLabel('Password').fill(PASSWORD);
  await signup.getByRole('button', { name: 'Sign up' }).click();
  await shop.getByText(`Signed in as ${username}`).waitFor();
  await walletIs(shop, '100.00');
  await shop.locator('#items tbody tr').first().waitFor();
  await shop.locator('#slots tbody tr').first().waitFor();

  step('top up 50.00');
  await shop.locator('#topup').getByLabel('Top up').fill('50');
  await shop.locator('#topup').getByRole('button', { name: 'Top up' }).click();
  await walletIs(shop, '150.00');

  step('an order that completes: three granted actions');
  const form = shop.locator('#order-form');
  const [itemId, price] = await shop.locator('#items tbody tr').first().evaluate((row) =>
    [row.dataset.item, row.querySelector('.num').textContent]);
  await form.getByLabel('Item').selectOption(itemId);
  assert.equal(await form.getByLabel('Amount').inputValue(), price, 'the amount is the item price');
  const freeSlot = await shop.locator('#slot-list option').first().getAttribute('value');
  await form.getByLabel('Delivery slot').fill(freeSlot);
  await form.getByRole('button', { name: 'Order' }).click();
  const completed = await orderRow(shop, 'completed');
  await completed.locator('.timeline .step').nth(2).waitFor();
  assert.deepEqual(await stepsOf(completed),
    ['items action ok', 'slots action ok', 'billing action ok']);
  const afterOrder = (150 - Number(price)).toFixed(2);
  await walletIs(shop, afterOrder);

  step('an order for a slot that does not exist: refused, then undone in reverse');
  await form.getByLabel('Delivery slot').fill('23:00');
  await form.getByRole('button', { name: 'Order' }).click();
  const failed = await orderRow(shop, 'failed');
  await failed.locator('.timeline .step').nth(2).waitFor();
  assert.deepEqual(await stepsOf(failed),
    ['items action ok', 'slots action rejected', 'items compensation ok']);
  await failed.locator('.reason').waitFor();
  await walletIs(shop, afterOrder);
  await shop.screenshot({ path: `${SCREENSHOTS}/shop.png`, fullPage: true });

  step('cancel the completed order: every step undone in reverse, wallet back');
  await completed.getByRole('button', { name: 'Cancel' }).click();
  const cancelled = await orderRow(shop, 'cancelled');
  await cancelled.locator('.timeline .step').nth(6).waitFor();
  assert.deepEqual(await stepsOf(cancelled), [
    'items action ok', 'slots action ok', 'billing action ok', 'customer cancel ok',
    'billing compensation ok', 'slots compensation ok', 'items compensation ok',
  ]);
  assert.match(await cancelled.locator('.reason').textContent(), /Cancelled by the customer/);
  await walletIs(shop, '150.00');
  await shop.screenshot({ path: `${SCREENSHOTS}/shop-cancelled.png`, fullPage: true });

  step("on a phone's width nothing needs sideways scrolling");
  await shop.setViewportSize({ width: 390, height: 844 });
  const overflow = await shop.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `the page is ${overflow}px wider than a phone`);
  await shop.screenshot({ path: `${SCREENSHOTS}/shop-phone.png`, fullPage: true });

  step("the console refuses a customer's token (admin_only)");
  const console_ = watch(await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage());
  await console_.goto(`${BASE_URL}/console`);
  const login = console_.locator('#login');
  await login.getByLabel('Username').fill(username);
  await login.getByLabel('Password').fill(PASSWORD);
  await login.getByRole('button', { name: 'Log in' }).click();
  await console_.locator('#message.error', { hasText: 'admin_only' }).waitFor();
  assert.ok(await console_.locator('#dashboard').isHidden());

  step('an operator sees every order, per-status counts, and a timeline');
  const signedUp = await console_.request.post(`${BASE_URL}/api/auth/users`, {
    data: { username: ADMIN_USER, email: `${ADMIN_USER}@example.com`, password: PASSWORD },
  });
  assert.ok([201, 409].includes(signedUp.status()), `operator sign-up: ${signedUp.status()}`);
  await login.getByLabel('Username').fill(ADMIN_USER);
  await login.getByLabel('Password').fill(PASSWORD);
  await login.getByRole('button', { name: 'Log in' }).click();
  await console_.getByText(`Operator ${ADMIN_USER}`).waitFor();
  await console_.locator('#by-status [data-status="cancelled"]').waitFor();
  const mine = console_.locator('#orders tbody tr', { hasText: username });
  await mine.nth(1).waitFor();
  await console_.locator('#status-filter').selectOption('failed');
  // The table is drawn again from the filtered list: rows of the unfiltered one may still be there
  // right after the selection, so wait (bounded) for the table to show failed orders only.
  await console_.waitForFunction(() => {
    const rows = [...document.querySelectorAll('#orders tbody tr')];
    return rows.length > 0 && rows.every((r) => r.dataset.status === 'failed');
  }, null, { timeout: WAIT_MS });
  const failedRow = console_.locator('#orders tbody tr', { hasText: username });
  await failedRow.first().waitFor();
  await failedRow.first().click();
  await console_.locator('#detail .timeline .step').nth(2).waitFor();
  await console_.locator('#dead-letters tbody tr').first().waitFor();
  await console_.screenshot({ path: `${SCREENSHOTS}/console.png`, fullPage: true });

  step('the API page, linked from the shop, draws every operation of the OpenAPI document');
  await shop.setViewportSize({ width: 1280, height: 900 });
  await shop.getByRole('link', { name: 'The API' }).click();
  await shop.waitForURL(`${BASE_URL}/api/docs`);
  const spec = await (await shop.request.get(`${BASE_URL}/api/openapi.json`)).json();
  const operations = Object.values(spec.paths).reduce((n, item) => n + Object.keys(item).length, 0);
  await shop.locator('details.operation').nth(operations - 1).waitFor();
  assert.equal(await shop.locator('details.operation').count(), operations);
  await shop.locator('details.operation#createOrder summary').click();
  await shop.locator('#createOrder').getByText('CreateOrder').first().waitFor();
  await shop.screenshot({ path: `${SCREENSHOTS}/api-docs.png`, fullPage: false });

  assert.deepEqual(foreign, [], 'requests to another host');
  assert.deepEqual(pageErrors, [], 'errors in the pages');
  step(`passed; screenshots in ${SCREENSHOTS}`);
} finally {
  await browser.close();
}

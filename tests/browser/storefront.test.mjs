// The storefront in headless chromium (Debian's, driven by playwright-core) against the real
// Worker, warehouse and Redis that tests/tests/storefront_browser.rs starts. It passes:
//   FLASHGATE_URL          the edge (wrangler dev), e.g. http://127.0.0.1:8787
//   FLASHGATE_EVENT_BUY    a sale starting in ~25 s at 19.99 EUR (the whole purchase)
//   FLASHGATE_EVENT_RACE   a sale of pool 1 starting in ~25 s (two visitors, one unit)
//   FLASHGATE_EVENT_EARLY  a sale starting in 10 min (a link asked for too early)
//   FLASHGATE_EVENT_LINE   a waiting-room sale of pool 1 starting in ~25 s, its pre-queue open
//   FLASHGATE_RESULTS      where to write what was bought, for the warehouse check
//   FLASHGATE_REFUSAL_CODES every refusal code of the core's catalogue, a JSON array
//   FLASHGATE_CHROMIUM     the browser (default /usr/bin/chromium)
//   FLASHGATE_ARTIFACTS    where screenshots go (default tests/artifacts/)
// Nothing sleeps: every wait is a Playwright wait with a timeout.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const URL_ = process.env.FLASHGATE_URL;
const EVENTS = {
  buy: process.env.FLASHGATE_EVENT_BUY,
  race: process.env.FLASHGATE_EVENT_RACE,
  early: process.env.FLASHGATE_EVENT_EARLY,
  line: process.env.FLASHGATE_EVENT_LINE,
};
const CATALOGUE = JSON.parse(process.env.FLASHGATE_REFUSAL_CODES || 'null');
assert.ok(Array.isArray(CATALOGUE), 'FLASHGATE_REFUSAL_CODES: the refusal codes, as a JSON array');
const CHROMIUM = process.env.FLASHGATE_CHROMIUM || '/usr/bin/chromium';
const ARTIFACTS = process.env.FLASHGATE_ARTIFACTS || new URL('../artifacts/', import.meta.url).pathname;
// The sales start ~25 s after they are created, and the countdown is waited out.
const SALE_WAIT = 90_000;
const STEP = 20_000;
// Headless chromium says "HeadlessChrome" in its user agent, which the edge's bot rules block
// (as they should): the visitors present the user agent of the same browser with a head.
const USER_AGENT =
  'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/141.0 Safari/537.36';
const PHONE = { width: 390, height: 844 };

assert.ok(URL_, 'FLASHGATE_URL is not set: run these through `cargo test -p flashgate-tests --test storefront_browser`');
assert.ok(
  existsSync(CHROMIUM),
  `chromium is not installed (${CHROMIUM} is missing): run scripts/toolchain/setup.sh`,
);
mkdirSync(ARTIFACTS, { recursive: true });

let browser;
const results = {};
let visitors = 0;

before(async () => {
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run',
    ],
  });
});

after(async () => {
  if (browser) await browser.close();
  if (process.env.FLASHGATE_RESULTS) writeFileSync(process.env.FLASHGATE_RESULTS, JSON.stringify(results, null, 2));
});

// A visitor: a browser context of its own (its own sessionStorage, so its own guest), from a
// network of its own (CF-Connecting-IP, which local workerd passes through, as the edge's
// platform would set it), reporting page errors.
async function visitor(event, viewport = { width: 1024, height: 800 }) {
  visitors += 1;
  const context = await browser.newContext({
    userAgent: USER_AGENT,
    locale: 'en-US',
    viewport,
    extraHTTPHeaders: { 'cf-connecting-ip': `198.18.7.${visitors}` },
  });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  // The refusals the scenarios provoke are logged by chromium as failed loads: not errors.
  page.on('console', (m) => {
    if (m.type() === 'error' && !/Failed to load resource/.test(m.text())) errors.push(m.text());
  });
  page.errors = errors;
  // The proof-of-work challenges the page asks for.
  page.challenges = 0;
  page.on('request', (r) => {
    if (r.method() === 'POST' && /^\/api\/events\/\d+\/challenge$/.test(new URL(r.url()).pathname)) page.challenges += 1;
  });
  await page.goto(`${URL_}/?event=${event}`);
  return { context, page };
}

const text = (page, selector) => page.locator(selector).innerText();
const seen = (page, selector, timeout = STEP) => page.locator(selector).waitFor({ state: 'visible', timeout });
const userId = (page) =>
  page.evaluate(() => JSON.parse(sessionStorage.getItem('flashgate.session') || '{}').user_id);
// Every text the waiting room's "place" line has shown, in order (repeats folded): what a
// visitor saw between two looks of the test.
const watchPlace = (page) => page.evaluate(() => {
  const place = document.getElementById('line-place');
  window.placeSeen = [];
  const note = () => {
    if (place.textContent && window.placeSeen.at(-1) !== place.textContent) window.placeSeen.push(place.textContent);
  };
  new MutationObserver(note).observe(place, { childList: true, characterData: true, subtree: true });
  note();
});
const placeSeen = (page) => page.evaluate(() => window.placeSeen);
const WAITING = /^You are number (\d+) — about (\d+) s$/;

describe('the storefront', { concurrency: true }, () => {
  test('the page and its hashed assets are static files with their cache rules', async () => {
    const page = await fetch(`${URL_}/`);
    assert.equal(page.status, 200);
    assert.equal(page.headers.get('cache-control'), 'no-cache');
    const html = await page.text();
    const assets = [...html.matchAll(/"(\/assets\/[^"]+)"/g)].map((m) => m[1]);
    assert.equal(assets.length, 3, html);
    for (const asset of assets) {
      const response = await fetch(`${URL_}${asset}`);
      assert.equal(response.status, 200, asset);
      assert.equal(response.headers.get('cache-control'), 'public, max-age=31536000, immutable', asset);
    }
    // The sources the assets are built from are not served.
    assert.equal((await fetch(`${URL_}/src/app.js`)).status, 404);
  });

  test('a visitor waits out the countdown, proves work, buys, pays, and may not buy twice', { timeout: 150_000 }, async () => {
    const { context, page } = await visitor(EVENTS.buy, PHONE);
    // The visitor's own clock is an hour fast: the countdown follows the shop's clock anyway.
    await page.clock.install({ time: Date.now() + 3_600_000 });
    await page.reload();

    await seen(page, '#phase:text("Opens in")');
    const clock = await text(page, '#clock');
    const m = /^(\d\d):(\d\d)$/.exec(clock);
    assert.ok(m, `countdown "${clock}"`);
    const left = Number(m[1]) * 60 + Number(m[2]);
    assert.ok(left > 0 && left <= 30, `the countdown follows the server's clock: ${clock}`);
    assert.equal(await page.locator('#buy').isDisabled(), true, 'no buying before the start');
    assert.match(await text(page, '#stock'), /^5 of 5 left$/);
    // The price, in the sale's currency and its minor unit (1999 cents), in the visitor's locale.
    assert.equal(await text(page, '#price'), '€19.99');

    // The proof-of-work runs in a Web Worker ahead of the start, with its progress shown.
    await seen(page, '#pow[data-state="done"]');
    assert.match(await text(page, '#pow-text'), /Puzzle solved \([\d,]+ tries\)/);
    await page.screenshot({ path: join(ARTIFACTS, 'storefront-countdown.png'), fullPage: true });

    // At the start the button opens; the buyer uses the keyboard. The challenge solved during
    // the countdown is refused as expired (as one the buyer sat on too long would be): the page
    // asks for a fresh one, solves it and buys, without troubling the buyer.
    await seen(page, '#buy:enabled:text("Buy now")', SALE_WAIT);
    await page.route(`**/api/events/${EVENTS.buy}/link`, (route) => route.fulfill({
      status: 410,
      json: { code: 'challenge_expired', message: 'The challenge has expired; request a new one.' },
    }), { times: 1 });
    const challenges = page.challenges;
    await page.locator('#buy').focus();
    await page.keyboard.press('Enter');
    await seen(page, '#order[data-status="pending_payment"]');
    assert.equal(page.challenges, challenges + 1, 'one fresh challenge for the expired one');
    assert.equal(await page.locator('#notice').isVisible(), false);
    const orderNo = await text(page, '#order-no');
    assert.ok(orderNo.length > 0);
    assert.match(await text(page, '#order-detail'), /^Pay within \d\d:\d\d /);
    await seen(page, '#stock:text("4 of 5 left")');
    await page.screenshot({ path: join(ARTIFACTS, 'storefront-pending.png'), fullPage: true });

    // In demo mode the page pays through the edge's demo payment, and says so.
    assert.equal(await text(page, '#pay'), 'Pay now (demo)');
    assert.equal(await text(page, '#demo-pay'), 'Demo payment — no money moves');

    // Focus moved to the order: the keyboard reaches "Pay now" with one Tab.
    assert.equal(await page.evaluate(() => document.activeElement.id), 'order-title');
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate(() => document.activeElement.id), 'pay');
    await page.keyboard.press('Enter');
    await seen(page, '#order[data-status="paid"]');
    assert.equal(await text(page, '#order-status'), 'Paid — thank you!');
    assert.equal(await page.locator('#pay').isVisible(), false);
    await page.screenshot({ path: join(ARTIFACTS, 'storefront-paid.png'), fullPage: true });

    // A reload keeps the order (sessionStorage), and the edge still says paid.
    await page.reload();
    await seen(page, '#order[data-status="paid"]');
    results.paid = { order_no: orderNo, user_id: await userId(page) };

    // The same shopper in a fresh tab (the session, not the order, carried over) tries again:
    // one per customer, said in plain words.
    await page.evaluate((event) => sessionStorage.removeItem(`flashgate.order.${event}`), EVENTS.buy);
    await page.reload();
    await seen(page, '#pow[data-state="done"]');
    await page.locator('#buy:enabled').click();
    await seen(page, '#notice[data-code="limit_reached"]');
    assert.equal(await text(page, '#notice'), 'You already have the most this sale allows per customer.');
    assert.equal(await userId(page), results.paid.user_id);
    assert.deepEqual(page.errors, []);
    await context.close();
  });

  test('two visitors, one unit: one wins, the other sees sold out; the winner cancels', { timeout: 150_000 }, async () => {
    const a = await visitor(EVENTS.race);
    const b = await visitor(EVENTS.race);
    await Promise.all([a, b].map(({ page }) => seen(page, '#pow[data-state="done"]')));
    await Promise.all([a, b].map(({ page }) => seen(page, '#buy:enabled:text("Buy now")', SALE_WAIT)));
    await Promise.all([a, b].map(({ page }) => page.locator('#buy').click()));

    const outcome = ({ page }) =>
      page.locator('#order[data-status="pending_payment"], #notice[data-code="sold_out"]')
        .first().waitFor({ state: 'visible', timeout: STEP })
        .then(() => page.locator('#order[data-status="pending_payment"]').isVisible());
    const won = await Promise.all([a, b].map(outcome));
    assert.equal(won.filter(Boolean).length, 1, `exactly one winner: ${won}`);
    const winner = won[0] ? a : b;
    const loser = won[0] ? b : a;

    assert.match(await text(loser.page, '#notice'), /^Sold out — every unit has been taken/);
    await seen(loser.page, '#buy:disabled:text("Sold out")');
    await seen(loser.page, '#phase:text("Sold out")');
    assert.equal(await loser.page.locator('#order').isVisible(), false);
    await loser.page.screenshot({ path: join(ARTIFACTS, 'storefront-sold-out.png'), fullPage: true });

    results.race_winner = {
      order_no: await text(winner.page, '#order-no'),
      user_id: await userId(winner.page),
    };
    // The winner's page, too, now says none are left; then the winner changes their mind, and
    // the unit goes back on sale.
    await seen(winner.page, '#stock:text("None left")');
    // A session the shop signed in (not one from the demo guest door) gets no demo payment:
    // paying is the shop's checkout's job. Cancelling stays.
    await winner.page.evaluate(() => { state.session.demo = false; showOrder(state.order); });
    assert.equal(await winner.page.locator('#pay').isVisible(), false);
    assert.equal(await winner.page.locator('#demo-pay').isVisible(), false);
    await winner.page.locator('#cancel').click();
    await seen(winner.page, '#order[data-status="cancelled"]');
    assert.equal(await text(winner.page, '#order-status'), 'Cancelled');
    await seen(winner.page, '#stock:text("1 of 1 left")');
    assert.deepEqual([...a.page.errors, ...b.page.errors], []);
    await a.context.close();
    await b.context.close();
  });

  test('a purchase link asked for before the start is refused as too early', { timeout: 60_000 }, async () => {
    const { context, page } = await visitor(EVENTS.early);
    await seen(page, '#phase:text("Opens in")');
    // Ten minutes before the start, a challenge would expire long before it could be spent:
    // with its session and another look at the sale, the page has still asked for none.
    await page.waitForFunction(() => sessionStorage.getItem('flashgate.session'));
    await page.waitForResponse((r) => new URL(r.url()).pathname === `/api/events/${EVENTS.early}`);
    assert.equal(page.challenges, 0, 'no challenge during a long countdown');
    // A visitor whose page believes the sale has begun (a stale or doctored view of it): the
    // edge, not the page, decides, and says to come back later.
    await page.route(`**/api/events/${EVENTS.early}`, async (route) => {
      const response = await route.fetch();
      const sale = await response.json();
      sale.start_ms = sale.server_time_ms - 1000;
      sale.status = 'running';
      await route.fulfill({ response, json: sale });
    });
    await seen(page, '#pow[data-state="done"]');
    await seen(page, '#buy:enabled:text("Buy now")');
    await page.locator('#buy').click();
    await seen(page, '#notice[data-code="too_early"]');
    const message = await text(page, '#notice');
    const wait = /^Not yet — the sale has not started\. Try again in (\d+) seconds\.$/.exec(message);
    assert.ok(wait, `message: ${message}`);
    assert.ok(Number(wait[1]) > 500 && Number(wait[1]) <= 600, `retry after ${wait[1]} s`);
    assert.equal(await page.locator('#buy').isDisabled(), true, 'the button waits as told');
    assert.equal(await page.locator('#order').isVisible(), false);
    await page.screenshot({ path: join(ARTIFACTS, 'storefront-too-early.png'), fullPage: true });

    // Every refusal of the edge's catalogue (core/src/refusal.rs, passed in by the Rust test)
    // has plain words of its own, with the wait where the edge gives one — but for those of
    // malformed requests, which the page never sends and shows with the edge's own message.
    const asSent = ['bad_request', 'not_found', 'method_not_allowed', 'too_large'];
    for (const code of asSent) assert.ok(CATALOGUE.includes(code), `${code} is in the catalogue`);
    const words = await page.evaluate((codes) => Object.fromEntries(
      codes.map((code) => [code, explain(code, 3, 'FALLBACK')])),
      CATALOGUE.filter((code) => !asSent.includes(code)));
    assert.ok(Object.keys(words).length >= 16, `the catalogue: ${CATALOGUE}`);
    for (const [code, message] of Object.entries(words)) {
      assert.notEqual(message, 'FALLBACK', `${code} has no words of its own`);
    }
    assert.equal(words.rate_limited, 'Too many requests — please slow down. Try again in 3 seconds.');
    assert.equal(words.unavailable, 'The shop is very busy right now. Try again in 3 seconds.');
    assert.deepEqual(page.errors, []);
    // The page keeps polling the sale view: let a routed poll still in flight end quietly
    // instead of failing on the closed context (a flaky unhandled rejection otherwise).
    await page.unrouteAll({ behavior: 'ignoreErrors' });
    await context.close();
  });
  test('a waiting room: two in line, the one admitted first buys by itself, the other is told sold out', { timeout: 150_000 }, async () => {
    const a = await visitor(EVENTS.line, PHONE);
    const b = await visitor(EVENTS.line);
    for (const { page } of [a, b]) {
      await seen(page, '#phase:text("The line is open — the sale starts in")');
      await seen(page, '#buy:enabled:text("Join the line")');
      // No puzzle until the visitor asks to join: the join is what it pays for.
      assert.equal(page.challenges, 0);
      await watchPlace(page);
    }

    // A joins during the countdown and sees its place, and the wait to the start.
    await a.page.locator('#buy').click();
    const place = a.page.locator('#line-place', { hasText: WAITING });
    await place.waitFor({ state: 'visible', timeout: STEP });
    const [, number, eta] = WAITING.exec(await place.innerText());
    assert.equal(number, '1', 'alone in line');
    const clock = /^(\d\d):(\d\d)$/.exec(await text(a.page, '#clock'));
    assert.ok(clock, 'the countdown runs on');
    const left = Number(clock[1]) * 60 + Number(clock[2]);
    assert.ok(Number(eta) > 0 && Math.abs(Number(eta) - left) <= 2, `about ${eta} s, the countdown ${left} s`);
    assert.match(await text(a.page, '#line-detail'), /drawn at the start/);
    await seen(a.page, '#buy:disabled:text("In line")');
    assert.equal(a.page.challenges, 1);
    // The puzzle paid for the place: it is not offered as "ready to buy" while in line.
    assert.equal(await a.page.locator('#pow').isVisible(), false);
    await a.page.screenshot({ path: join(ARTIFACTS, 'line-waiting.png'), fullPage: true });

    // B joins too. The pre-queue's order is drawn: either may be first now.
    await b.page.locator('#buy').click();
    await b.page.locator('#line-place', { hasText: WAITING }).waitFor({ state: 'visible', timeout: STEP });
    for (const { page } of [a, b]) {
      const shown = await text(page, '#line-place');
      assert.match(shown, /^You are number [12] — about \d+ s$/, 'one of two');
    }

    // At the start the first place is admitted: its page buys by itself (nobody clicks).
    const bought = (v) => v.page.locator('#order[data-status="pending_payment"]')
      .waitFor({ state: 'visible', timeout: SALE_WAIT }).then(() => v);
    const winner = await Promise.any([a, b].map(bought));
    const waiter = winner === a ? b : a;
    assert.ok((await placeSeen(winner.page)).includes('It is your turn!'), 'the page said it was the turn');
    assert.equal(await winner.page.locator('#line').isVisible(), false);
    assert.equal(await winner.page.locator('#notice').isVisible(), false);
    assert.equal(await winner.page.locator('#pow').isVisible(), false);
    const orderNo = await text(winner.page, '#order-no');
    await winner.page.screenshot({ path: join(ARTIFACTS, 'line-admitted.png'), fullPage: true });

    // The other still waits, first in line now, for a unit that could come back.
    assert.equal(await waiter.page.locator('#order').isVisible(), false);
    await waiter.page.locator('#line-place', { hasText: /^You are number 1\b/ })
      .waitFor({ state: 'visible', timeout: STEP });
    assert.equal(await waiter.page.locator('#notice').isVisible(), false);
    await seen(waiter.page, '#buy:disabled:text("In line")');

    // The winner pays; with nothing left and nothing held, the one still waiting is told.
    await winner.page.locator('#pay').click();
    await seen(winner.page, '#order[data-status="paid"]');
    assert.equal(await text(winner.page, '#order-status'), 'Paid — thank you!');
    await winner.page.screenshot({ path: join(ARTIFACTS, 'line-bought.png'), fullPage: true });
    results.line_paid = { order_no: orderNo, user_id: await userId(winner.page) };

    await seen(waiter.page, '#notice[data-code="sold_out"]');
    assert.equal(await text(waiter.page, '#notice'), 'Sold out — every unit has been taken. Sorry!');
    await seen(waiter.page, '#buy:disabled:text("Sold out")');
    await seen(waiter.page, '#phase:text("Sold out")');
    assert.equal(await waiter.page.locator('#line').isVisible(), false);
    assert.equal(await waiter.page.locator('#order').isVisible(), false);
    assert.equal(await waiter.page.locator('#pow').isVisible(), false);
    await waiter.page.screenshot({ path: join(ARTIFACTS, 'line-sold-out.png'), fullPage: true });
    results.line_waiting = { user_id: await userId(waiter.page) };
    assert.deepEqual([...a.page.errors, ...b.page.errors], []);
    await a.context.close();
    await b.context.close();
  });
});

// flashgate storefront: one flash sale, bought through the edge's /api.
// No framework, no third parties. See web/src/pow.js for the proof-of-work worker.
'use strict';

const POW_WORKER = '/assets/{{pow.js}}';
const params = new URLSearchParams(location.search);
const EVENT_ID = /^[1-9][0-9]{0,17}$/.test(params.get('event') || '') ? params.get('event') : '1';
const SESSION_KEY = 'flashgate.session';
const ORDER_KEY = 'flashgate.order.' + EVENT_ID;

const $ = (id) => document.getElementById(id);
const el = {
  title: $('title'), sku: $('sku'), price: $('price'), stock: $('stock'), stockBar: $('stock-bar'), limit: $('limit'),
  phase: $('phase'), clock: $('clock'), opensAt: $('opens-at'),
  pow: $('pow'), powBar: $('pow-bar'), powText: $('pow-text'),
  buy: $('buy'), notice: $('notice'),
  order: $('order'), orderNo: $('order-no'), orderStatus: $('order-status'), orderDetail: $('order-detail'),
  pay: $('pay'), demoPay: $('demo-pay'), cancel: $('cancel'),
  line: $('line'), linePlace: $('line-place'), lineDetail: $('line-detail'),
};

// How long before the start the page asks for its challenge, at most: a challenge expires a
// fixed time after it is issued, start or not (the gate's challenge_ttl, 60 s by default), so
// one fetched earlier would expire before the sale opens. Until the first challenge says how
// long they live, assume that default; ask that long before the start less a margin to solve
// it and buy with it.
const ASSUMED_CHALLENGE_TTL = 60000;
const SPEND_MARGIN = 15000;

const state = {
  sale: null,          // the last GET /api/events/{id}
  offset: 0,           // server clock − local clock, ms
  rtt: Infinity,       // the round trip the offset was measured with
  session: null,       // {token, user_id, expires_ms, demo}: demo when the guest door minted it
  solved: null,        // {challenge, nonce, expires_ms} ready for a link
  solving: null,       // a Promise while the worker runs
  challengeTtl: ASSUMED_CHALLENGE_TTL, // how long a challenge lives, learned from the last one
  prepareAfter: 0,     // server ms before which a challenge is not asked for again after a refusal
  busy: false,         // a buy is in flight
  order: null,         // the order view
  retryAt: 0,          // server ms before which "Try again" stays disabled
};

const serverNow = () => Date.now() + state.offset;

// ---- formatting ----------------------------------------------------------------------------

function clockText(ms) {
  const s = Math.max(0, Math.ceil(ms / 1000));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  const two = (n) => String(n).padStart(2, '0');
  return h > 0 ? `${h}:${two(m)}:${two(r)}` : `${two(m)}:${two(r)}`;
}

// A moment on the shop's clock, as a time of day in the visitor's time zone.
const timeOfDay = (ms) =>
  new Date(ms).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });

const seconds = (n) => `${n} second${n === 1 ? '' : 's'}`;

// `minor` units of `currency` (ISO 4217), in the visitor's locale: Intl knows how many digits
// the currency's minor unit has (2 for EUR, 0 for JPY, 3 for KWD). The amount goes to Intl as
// exact decimal text, not as a float. null when the sale has no usable price.
function money(minor, currency) {
  if (!Number.isSafeInteger(minor) || minor < 0 || !/^[A-Z]{3}$/.test(currency || '')) return null;
  try {
    const format = new Intl.NumberFormat(undefined, { style: 'currency', currency });
    const digits = format.resolvedOptions().maximumFractionDigits;
    const units = String(minor).padStart(digits + 1, '0');
    return format.format(digits ? `${units.slice(0, -digits)}.${units.slice(-digits)}` : units);
  } catch (e) {
    return null;
  }
}

// Every refusal of the edge (core/src/refusal.rs), in plain words.
function explain(code, retryAfter, fallback) {
  const wait = retryAfter ? ` Try again in ${seconds(retryAfter)}.` : '';
  switch (code) {
    case 'sold_out': return 'Sold out — every unit has been taken. Sorry!';
    case 'too_early': return `Not yet — the sale has not started.${wait}`;
    case 'limit_reached': return 'You already have the most this sale allows per customer.';
    case 'link_used': return 'This purchase link was already used for another quantity.';
    case 'rate_limited': return `Too many requests — please slow down.${wait || ' Try again in a moment.'}`;
    case 'unavailable': return `The shop is very busy right now.${wait || ' Try again in a moment.'}`;
    case 'sale_ended': return 'This sale has ended.';
    case 'blocked': return 'Your request was blocked because it looked automated.';
    case 'unauthenticated': case 'token_expired': return 'Your session has expired — reload the page to get a new one.';
    case 'conflict': return 'This order can no longer change (it is already paid, cancelled or expired).';
    case 'unknown': return 'We could not find that.';
    case 'challenge_expired': case 'challenge_required': return 'The check expired — preparing a new one.';
    case 'link_expired': case 'bad_link': return 'Your purchase link expired — fetching a new one.';
    case 'qty_too_large': return 'That is more than this sale allows per customer.';
    case 'sign_in': return 'Sign in at the shop to take part in this sale.';
    case 'network': return 'We could not reach the shop. Check your connection and try again.';
    case 'queue_required': return 'This sale has a waiting room — join the line first.';
    case 'no_queue': return 'This sale has no waiting room.';
    case 'bad_place': return 'Your place in line is not valid here — join the line again.';
    default: return fallback || 'Something went wrong. Please try again.';
  }
}

function notice(text, kind) {
  el.notice.textContent = text || '';
  el.notice.dataset.kind = kind || '';
  el.notice.hidden = !text;
}

// ---- the API -------------------------------------------------------------------------------

class Refused extends Error {
  constructor(status, body, retryAfter) {
    super(body.message || `HTTP ${status}`);
    this.status = status;
    this.code = body.code || (status >= 500 ? 'unavailable' : 'unknown');
    this.retryAfter = retryAfter;
    this.body = body;
  }
}

async function api(method, path, body, auth, extra) {
  const headers = { accept: 'application/json', ...(extra || {}) };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (auth && state.session) headers.authorization = `Bearer ${state.session.token}`;
  let response;
  try {
    response = await fetch(path, {
      method, headers, cache: 'no-store',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    throw new Refused(0, { code: 'network' }, 0);
  }
  let json = {};
  try { json = await response.json(); } catch (e) { /* not JSON: keep {} */ }
  if (!response.ok) {
    const header = Number(response.headers.get('retry-after'));
    throw new Refused(response.status, json, Number.isFinite(header) && header > 0 ? header : json.retry_after || 0);
  }
  return { status: response.status, json };
}

// Calls `fn`, and once more with a new guest session if the old one is refused.
async function withSession(fn) {
  if (!state.session) await session(true);
  try {
    return await fn();
  } catch (e) {
    if (e instanceof Refused && (e.code === 'unauthenticated' || e.code === 'token_expired')) {
      await session(true, true);
      return fn();
    }
    throw e;
  }
}

// The visitor's identity: kept for this tab in sessionStorage; in demo mode the edge mints a
// guest. (A real shop would put its own user token there after sign-in.)
async function session(needed, renew) {
  if (!renew) {
    try {
      const kept = JSON.parse(sessionStorage.getItem(SESSION_KEY) || 'null');
      if (kept && kept.token && kept.expires_ms > serverNow() + 60000) state.session = kept;
    } catch (e) { /* ignore */ }
  }
  if (state.session && !renew) return state.session;
  if (!needed) return null;
  let json;
  try {
    ({ json } = await api('POST', '/api/session/guest'));
  } catch (e) {
    // No guest door (demo mode is off): the shop's own sign-in must provide the token.
    if (e instanceof Refused && e.status === 404) throw new Refused(401, { code: 'sign_in' }, 0);
    throw e;
  }
  // Minted by the guest door, so the edge is in demo mode: the page offers the demo payment.
  state.session = { ...json, demo: true };
  sessionStorage.setItem(SESSION_KEY, JSON.stringify(state.session));
  return state.session;
}

// ---- the sale ------------------------------------------------------------------------------

async function refreshSale() {
  const t0 = Date.now();
  const { json } = await api('GET', `/api/events/${EVENT_ID}`);
  const t1 = Date.now();
  // The server's clock, not the visitor's: keep the offset measured over the fastest trip.
  const rtt = t1 - t0;
  if (rtt <= state.rtt || Math.abs(json.server_time_ms - (t0 + t1) / 2 - state.offset) > 2000) {
    state.rtt = rtt;
    state.offset = json.server_time_ms - (t0 + t1) / 2;
  }
  state.sale = json;
  render();
  return json;
}

function phase() {
  const s = state.sale;
  if (!s) return 'loading';
  const now = serverNow();
  if (now >= s.end_ms) return 'ended';
  // A sale with a line is sold out when its line says so (held units may still come back).
  if (s.waiting_room ? line.view && line.view.state === 'sold_out' : s.sold_out || s.remaining === 0) return 'sold_out';
  if (now < s.start_ms) return 'upcoming';
  return 'running';
}

function render() {
  const s = state.sale;
  document.body.dataset.phase = phase();
  if (!s) return;
  el.sku.textContent = `SKU ${s.sku_id}`;
  el.title.textContent = `Flash sale #${s.id}`;
  const price = money(s.price, s.currency);
  el.price.textContent = price || '';
  el.price.hidden = !price;
  el.stock.textContent = s.sold_out || s.remaining === 0 ? 'None left' : `${s.remaining} of ${s.pool} left`;
  el.stockBar.max = Math.max(1, s.pool);
  el.stockBar.value = s.sold_out ? 0 : s.remaining;
  el.limit.textContent = `Limit ${s.per_user_limit} per customer`;
  const now = serverNow();
  const p = phase();
  el.opensAt.textContent = '';
  if (p === 'upcoming' && s.waiting_room && now >= lineOpens(s)) {
    el.phase.textContent = 'The line is open — the sale starts in';
    el.clock.textContent = clockText(s.start_ms - now);
    el.opensAt.textContent = `at ${timeOfDay(s.start_ms)}`;
  } else if (p === 'upcoming') {
    el.phase.textContent = 'Opens in';
    el.clock.textContent = clockText(s.start_ms - now);
    el.opensAt.textContent = `at ${timeOfDay(s.start_ms)}`;
  } else if (p === 'running') {
    el.phase.textContent = 'On sale now — ends in';
    el.clock.textContent = clockText(s.end_ms - now);
  } else if (p === 'sold_out') {
    el.phase.textContent = 'Sold out';
    el.clock.textContent = '';
  } else if (p === 'ended') {
    el.phase.textContent = 'This sale has ended';
    el.clock.textContent = '';
  }
  renderBuy();
}

function renderBuy() {
  const p = phase();
  // The puzzle only matters until the visitor has bought or the sale is over — or, in a sale
  // with a line, has joined it: the puzzle paid for the place, and the place buys.
  if (state.order || p === 'sold_out' || p === 'ended' || (hasLine() && line.place)) el.pow.hidden = true;
  if (hasLine()) return renderLine();
  const waiting = serverNow() < state.retryAt;
  if (state.order) {
    el.buy.hidden = true;
    return;
  }
  el.buy.hidden = false;
  if (p === 'upcoming') {
    el.buy.disabled = true;
    el.buy.textContent = 'Buy — opens soon';
  } else if (p === 'running') {
    el.buy.disabled = state.busy || waiting;
    el.buy.textContent = state.busy ? 'Buying…' : waiting
      ? `Buy now (in ${Math.ceil((state.retryAt - serverNow()) / 1000)} s)` : 'Buy now';
  } else {
    el.buy.disabled = true;
    el.buy.textContent = p === 'sold_out' ? 'Sold out' : p === 'ended' ? 'Sale ended' : 'Loading…';
  }
}

// ---- the proof-of-work ---------------------------------------------------------------------

function runWorker(challenge, bits) {
  return new Promise((resolve, reject) => {
    const worker = new Worker(POW_WORKER);
    const expected = 2 ** bits;
    el.pow.hidden = false;
    el.pow.dataset.state = 'working';
    el.powBar.removeAttribute('value');
    el.powText.textContent = 'Solving a small puzzle that keeps bots out of the queue…';
    worker.onmessage = (event) => {
      const m = event.data;
      if (m.progress !== undefined) {
        // The chance of having found the answer by now: a bar that fills as the work goes on.
        el.powBar.value = 1 - Math.exp(-m.progress / expected);
        el.powText.textContent =
          `Solving a small puzzle that keeps bots out of the queue… ${m.progress.toLocaleString()} tries`;
        return;
      }
      worker.terminate();
      if (m.error) return reject(new Error(m.error));
      el.powBar.value = 1;
      el.pow.dataset.state = 'done';
      if (state.order) el.pow.hidden = true;
      el.powText.textContent = `Puzzle solved (${m.tries.toLocaleString()} tries) — you are ready to buy.`;
      resolve(m.nonce);
    };
    worker.onerror = (e) => { worker.terminate(); reject(new Error(e.message || 'worker failed')); };
    worker.postMessage({ challenge, bits });
  });
}

// A solved challenge for this sale (asked for and answered ahead of the start, so a buy at the
// start costs one link request and one buy).
function prepare(force) {
  if (force) state.solved = null;
  if (state.solved && state.solved.expires_ms > serverNow() + 5000) return Promise.resolve(state.solved);
  if (state.solving) return state.solving;
  state.solving = (async () => {
    const { json } = await withSession(() => api('POST', `/api/events/${EVENT_ID}/challenge`, {}, true));
    state.challengeTtl = Math.max(SPEND_MARGIN, json.expires_ms - serverNow());
    const nonce = await runWorker(json.challenge, json.bits);
    state.solved = { challenge: json.challenge, nonce, expires_ms: json.expires_ms };
    return state.solved;
  })().finally(() => { state.solving = null; });
  return state.solving;
}

// How long before the start to ask for the challenge.
const lead = () => Math.max(state.challengeTtl - SPEND_MARGIN, state.challengeTtl / 2);

// Asked in the background (not for a click): a refusal is shown, and the next background try
// waits at least 5 s, or as long as the edge said.
function prepareAhead() {
  // A sale with a line: the puzzle is solved for the join, when the visitor asks to join.
  if (hasLine()) return;
  if (state.order || !state.session || state.solving || serverNow() < state.prepareAfter) return;
  prepare().catch((e) => {
    const wait = e instanceof Refused && e.retryAfter ? e.retryAfter * 1000 : 0;
    state.prepareAfter = serverNow() + Math.max(5000, wait);
    refusal(e);
  });
}

// ---- buying --------------------------------------------------------------------------------

function refusal(e) {
  const code = e instanceof Refused ? e.code : 'network';
  const retry = e instanceof Refused ? e.retryAfter : 0;
  if (retry) state.retryAt = serverNow() + retry * 1000;
  const kind = code === 'sold_out' || code === 'sale_ended' || code === 'limit_reached' ? 'final' : 'warn';
  notice(explain(code, retry, e.message), kind);
  el.notice.dataset.code = code;
}

async function buy() {
  if (hasLine()) return joinLine();
  if (state.busy) return;
  state.busy = true;
  notice('');
  renderBuy();
  try {
    let order = null;
    for (let attempt = 0; attempt < 3 && !order; attempt++) {
      const solved = await prepare(attempt > 0);
      try {
        const { json: link } = await withSession(() =>
          api('POST', `/api/events/${EVENT_ID}/link`, { challenge: solved.challenge, nonce: solved.nonce }, true));
        state.solved = null; // one answer, one link
        const { json } = await withSession(() => api('POST', link.path, { qty: 1 }, true));
        order = json;
      } catch (e) {
        const again = ['challenge_expired', 'challenge_required', 'link_expired', 'bad_link'];
        if (!(e instanceof Refused) || !again.includes(e.code)) throw e;
        state.solved = null;
      }
    }
    if (!order) throw new Refused(403, { code: 'challenge_required' }, 0);
    showOrder({ order_no: order.order_no, status: 'queued' });
    // Keyboard and screen-reader users land on the order; Tab reaches "Pay now" next.
    $('order-title').focus();
    refreshSale().catch(() => {});
  } catch (e) {
    refusal(e);
    if (e instanceof Refused && e.code === 'sold_out' && state.sale) state.sale.sold_out = true;
    if (e instanceof Refused && e.code === 'too_early') {
      // The page's view of the sale was off: look again, and keep the puzzle answer ready.
      refreshSale().catch(() => {});
      prepare().catch(() => {});
    }
  } finally {
    state.busy = false;
    render();
  }
}

// ---- the order -----------------------------------------------------------------------------

const STATUS = {
  queued: ['Confirming your order…', 'You got one! We are writing up your order.'],
  pending_payment: ['Awaiting payment', ''],
  paid: ['Paid — thank you!', 'Your order is paid and on its way.'],
  cancelled: ['Cancelled', 'You cancelled this order; the unit went back on sale.'],
  expired: ['Expired', 'The time to pay ran out; the unit went back on sale.'],
};

function showOrder(view) {
  state.order = view;
  sessionStorage.setItem(ORDER_KEY, view.order_no);
  el.order.hidden = false;
  el.orderNo.textContent = view.order_no;
  el.order.dataset.status = view.status;
  const [title, detail] = STATUS[view.status] || ['Checking…', ''];
  el.orderStatus.textContent = title;
  el.orderDetail.textContent = view.status === 'pending_payment'
    ? `Pay within ${clockText(view.deadline_ms - serverNow())} (by ${timeOfDay(view.deadline_ms)}) or it is released.`
    : detail;
  const open = view.status === 'pending_payment';
  el.pay.hidden = !(open && state.session && state.session.demo);
  el.demoPay.hidden = el.pay.hidden;
  el.cancel.hidden = !open;
  renderBuy();
}

async function pollOrder() {
  const no = state.order && state.order.order_no;
  if (!no || ['paid', 'cancelled', 'expired'].includes(state.order.status)) return;
  try {
    const { json } = await withSession(() => api('GET', `/api/orders/${encodeURIComponent(no)}`, undefined, true));
    if (state.order && state.order.order_no === no) showOrder(json);
  } catch (e) {
    // Not written yet (the order queue is behind): keep waiting; anything else is shown.
    if (!(e instanceof Refused && e.code === 'unknown' && state.order.status === 'queued')) refusal(e);
  }
}

async function orderAction(action) {
  const no = state.order.order_no;
  el.pay.disabled = el.cancel.disabled = true;
  notice('');
  try {
    // Paying is the payment side's job; in demo mode the edge offers a demo payment instead.
    const path = action === 'pay'
      ? `/api/demo/orders/${encodeURIComponent(no)}/pay`
      : `/api/orders/${encodeURIComponent(no)}/${action}`;
    const { json } = await withSession(() => api('POST', path, {}, true));
    showOrder(json);
    refreshSale().catch(() => {});
  } catch (e) {
    refusal(e);
    pollOrder();
  } finally {
    el.pay.disabled = el.cancel.disabled = false;
  }
}

// ---- start ---------------------------------------------------------------------------------

async function loadSale() {
  try {
    await refreshSale();
    return true;
  } catch (e) {
    el.phase.textContent = e.code === 'unknown' ? 'There is no such sale.' : 'The shop is not answering.';
    el.clock.textContent = '';
    if (e.code !== 'unknown') refusal(e);
    return false;
  }
}

async function main() {
  el.buy.addEventListener('click', buy);
  el.pay.addEventListener('click', () => orderAction('pay'));
  el.cancel.addEventListener('click', () => orderAction('cancel'));
  if (!(await loadSale())) {
    // Keep trying, gently: the sale may not be published yet.
    const again = setInterval(async () => { if (await loadSale()) { clearInterval(again); start(); } }, 5000);
    return;
  }
  start();
}

function start() {
  let lastPhase = phase();
  let lastFetch = Date.now();
  const kept = sessionStorage.getItem(ORDER_KEY);
  if (kept) { showOrder({ order_no: kept, status: 'queued' }); }
  session(true).then(() => {
    if (kept) pollOrder();
    resumeLine();
    if (phase() === 'running') prepareAhead();
  }).catch((e) => refusal(e));
  // One clock for the page: the countdown every 250 ms, the sale every 2 s (every 500 ms at the
  // start), the order every 1.5 s until it settles; the challenge in the last `lead()` before
  // the start (again if the one solved would expire unspent), and once when the sale opens.
  let lastOrderPoll = 0;
  setInterval(() => {
    render();
    if (state.order && state.order.status === 'pending_payment') showOrder(state.order);
    const p = phase();
    if (p === 'upcoming' && state.sale.start_ms - serverNow() <= lead()) prepareAhead();
    if (p === 'running' && lastPhase === 'upcoming') prepareAhead();
    const nearStart = state.sale && Math.abs(state.sale.start_ms - serverNow()) < 1500;
    if ((p !== lastPhase && p === 'running') || Date.now() - lastFetch > (nearStart ? 500 : 2000)) {
      lastFetch = Date.now();
      refreshSale().catch(() => {});
    }
    lastPhase = p;
    if (state.order && Date.now() - lastOrderPoll > 1500) {
      lastOrderPoll = Date.now();
      pollOrder();
    }
  }, 250);
}

main();

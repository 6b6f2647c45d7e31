// flashgate storefront: the waiting room of a sale with `waiting_room` (see the README's
// "Waiting room" section). The visitor joins the line with a solved puzzle (in the pre-queue
// before the start, or after it), sees "You are number N — about M s", polls as the edge says
// (poll_after_ms; each poll asks to be held until its news changes, and an edge that holds it
// says come back at once), and once admitted the page buys by itself with the link the poll hands
// over. "Sold out" is shown the moment a poll says so. The place token is kept in localStorage, so a
// reload keeps the place (for the same session). Loaded before app.js; it uses app.js's api(),
// state, prepare(), withSession(), showOrder(), refusal() and notice() when called.
'use strict';

const PLACE_HEADER = 'x-flashgate-place';
// How long a poll asks the edge to hold it until its news changes (the edge caps it at 20 s).
const WAIT_HEADER = 'x-flashgate-wait-ms';
const POLL_HOLD_MS = '20000';

const line = {
  place: null,    // {token, user_id}: this visitor's place in this sale's line
  view: null,     // the last answer: {state, position, ahead, eta_s, poll_after_ms, …}
  etaAt: 0,       // server ms the estimate points at (counts down between polls)
  timer: 0,       // the next poll
  joining: false, // a join is in flight
  buying: false,  // the admitted buy is in flight
};

const placeKey = () => 'flashgate.place.' + EVENT_ID;
const lineOpens = (s) => s.start_ms - Math.max(0, s.prequeue_ms || 0);
const hasLine = () => !!(state.sale && state.sale.waiting_room);

// The kept place, if it is this session's (a place is bound to its user: another's is useless).
function keptPlace() {
  try {
    const kept = JSON.parse(localStorage.getItem(placeKey()) || 'null');
    if (kept && kept.token && state.session && kept.user_id === state.session.user_id) return kept;
  } catch (e) { /* ignore */ }
  return null;
}

function keepPlace(token) {
  line.place = { token, user_id: state.session && state.session.user_id };
  localStorage.setItem(placeKey(), JSON.stringify(line.place));
}

function dropPlace() {
  line.place = null;
  line.view = null;
  localStorage.removeItem(placeKey());
}

function showLine(view) {
  line.view = view;
  if (view.state === 'waiting' && Number.isFinite(view.eta_s)) line.etaAt = serverNow() + view.eta_s * 1000;
  else line.etaAt = 0;
  render();
}

function lineNotice(code, text) {
  notice(text, 'final');
  el.notice.dataset.code = code;
}

// 0 after a held poll: the next one is held again. A floor keeps a broken answer from spinning.
function schedulePoll(ms) {
  clearTimeout(line.timer);
  const wait = Number(ms);
  line.timer = setTimeout(pollLine, Math.max(50, Number.isFinite(wait) ? wait : 1000));
}

// The "Join the line" button: a solved puzzle buys a place (one per visitor and sale).
async function joinLine() {
  if (line.joining || line.place || state.order) return;
  line.joining = true;
  notice('');
  render();
  try {
    for (let attempt = 0; attempt < 3; attempt++) {
      const solved = await prepare(attempt > 0);
      try {
        const { json } = await withSession(() => api('POST', `/api/events/${EVENT_ID}/queue`,
          { challenge: solved.challenge, nonce: solved.nonce }, true));
        state.solved = null;
        keepPlace(json.place);
        showLine(json);
        if (json.state === 'admitted' && json.link) buyAdmitted(json.link);
        else if (json.state === 'waiting') schedulePoll(json.poll_after_ms);
        return;
      } catch (e) {
        if (!(e instanceof Refused) || !['challenge_expired', 'challenge_required'].includes(e.code)) throw e;
        state.solved = null;
      }
    }
    throw new Refused(403, { code: 'challenge_required' }, 0);
  } catch (e) {
    refusal(e);
    if (e instanceof Refused && e.code === 'sold_out') line.view = { state: 'sold_out' };
  } finally {
    line.joining = false;
    render();
  }
}

// One poll of the place; the next one as the edge says, until the state is final.
async function pollLine() {
  clearTimeout(line.timer);
  if (!line.place || state.order) return;
  const token = line.place.token;
  try {
    const { json } = await withSession(() =>
      api('GET', `/api/events/${EVENT_ID}/queue`, undefined, true,
        { [PLACE_HEADER]: token, [WAIT_HEADER]: POLL_HOLD_MS }));
    showLine(json);
    if (json.state === 'admitted' && json.link) buyAdmitted(json.link);
    else if (json.state === 'waiting') schedulePoll(json.poll_after_ms);
    else if (json.state === 'sold_out') lineNotice('sold_out', explain('sold_out'));
    else if (json.state === 'ended') lineNotice('place_ended', 'Your place in line is over: the sale ended, or your turn passed.');
  } catch (e) {
    if (e instanceof Refused && (e.code === 'bad_place' || e.code === 'queue_required')) {
      dropPlace();
      notice(explain(e.code), 'warn');
      render();
      return;
    }
    refusal(e);
    schedulePoll(e instanceof Refused && e.retryAfter ? e.retryAfter * 1000 : 2000);
  }
}

// Admitted: buy one unit with the link at once (the link is the place's one purchase).
async function buyAdmitted(link) {
  if (line.buying || state.order) return;
  line.buying = true;
  state.busy = true;
  render();
  try {
    const { json } = await withSession(() => api('POST', link.path, { qty: 1 }, true));
    showOrder({ order_no: json.order_no, status: 'queued' });
    $('order-title').focus();
    refreshSale().catch(() => {});
  } catch (e) {
    refusal(e);
    const code = e instanceof Refused ? e.code : 'network';
    // An expired link or a busy shop: while the admission lasts, the next poll mints a fresh one.
    if (['link_expired', 'bad_link', 'unavailable', 'rate_limited', 'network'].includes(code)) schedulePoll(1000);
    else line.view = { state: code === 'sold_out' ? 'sold_out' : 'ended' };
  } finally {
    line.buying = false;
    state.busy = false;
    render();
  }
}

// The button and the place, for a sale with a line (app.js's renderBuy hands over to it).
function renderLine() {
  const s = state.sale;
  const now = serverNow();
  const v = line.view;
  el.line.hidden = true;
  if (state.order) {
    el.buy.hidden = true;
    return;
  }
  el.buy.hidden = false;
  el.buy.disabled = true;
  if (now >= s.end_ms) {
    el.buy.textContent = 'Sale ended';
  } else if (v && v.state === 'sold_out') {
    el.buy.textContent = 'Sold out';
  } else if (line.place && v && v.state === 'admitted') {
    el.buy.textContent = 'Buying…';
    el.line.hidden = false;
    el.linePlace.textContent = 'It is your turn!';
    el.lineDetail.textContent = 'Buying your unit now…';
  } else if (line.place && v && v.state === 'ended') {
    el.buy.textContent = 'Your turn has passed';
  } else if (line.place) {
    el.buy.textContent = 'In line';
    el.line.hidden = false;
    if (v && v.state === 'waiting') {
      const eta = line.etaAt ? Math.max(0, Math.ceil((line.etaAt - now) / 1000)) : null;
      el.linePlace.textContent = `You are number ${v.position.toLocaleString()}` +
        (eta === null ? '' : ` — about ${eta} s`);
      el.lineDetail.textContent = now < s.start_ms
        ? 'The order of the line is drawn at the start: joining early or twice changes nothing.'
        : eta === null ? 'Waiting for units to come back…' : 'Keep this page open: it buys for you when it is your turn.';
    } else {
      el.linePlace.textContent = 'You are in line';
      el.lineDetail.textContent = 'Checking your place…';
    }
  } else if (now < lineOpens(s)) {
    el.buy.textContent = `Line opens at ${timeOfDay(lineOpens(s))}`;
  } else {
    el.buy.disabled = line.joining;
    el.buy.textContent = line.joining ? 'Joining…' : 'Join the line';
  }
}

// After the session is known: the kept place, polled at once.
function resumeLine() {
  if (!hasLine() || state.order) return;
  line.place = keptPlace();
  if (line.place) pollLine();
}

//! flashgate's Cloudflare Worker: a thin adapter between the Workers runtime and the shared
//! core's `flashgate_core::gate`.
//!
//! Per `/api` request it reads the clock once, draws 32 bytes from `crypto.getRandomValues`,
//! reads the headers the core names and as much of the body as the core's `gate::BoundedBody`
//! wants, asks the rate-limit binding about the client's network (under the key the gate names),
//! and runs the core's `gate::Exchange`: answer, or send the ready gRPC-Web call to the origin
//! the core's configuration validated, and hand the reply back as a `gate::OriginResponse`. Static files
//! never reach this code: `[assets]` in `wrangler.toml` serves `web/` from the CDN.
//!
//! Where state lives, and why:
//! - **per-network limits**: the `[[ratelimits]]` binding (`IP_LIMITER`), shared by every
//!   isolate of a location, so a crowd from one network cannot spread over isolates;
//! - **per-user, per-sale, hot-SKU and global GCRA buckets, the breaker, the sale views with the
//!   sold-out flag**: the gate's `GateState` in isolate memory. They are read on every request
//!   and must cost nothing; a buyer's requests arrive at one location, and a sold-out flag that
//!   one isolate has not seen yet costs at most one cheap `GetEvent` (never a `Buy`) before that
//!   isolate knows too. The Cache API would make the flag colo-wide, but at the price of an extra
//!   asynchronous lookup on every buy before the sale sells out — the very requests that must be
//!   fast — to save a handful of `GetEvent` calls after it. Views are remembered for
//!   `FLASHGATE_SALE_MEMORY_MS` and refreshed, so units coming back (cancelled, expired orders)
//!   reopen the sale.
//! - **a waiting room's snapshot of the line and the admissions claimed** (the core's
//!   `gate::RoomSnapshot`, `gate::Claim`): in the same `GateState`, so an isolate's polls cost
//!   the warehouse one `Queue/GetQueue` a second per sale however many buyers poll it; the line
//!   itself is the warehouse's, shared by every isolate and location. The place token comes in
//!   the `x-flashgate-place` header, which the core names with the others it reads. A poll that
//!   asks to wait (`x-flashgate-wait-ms`) is held here and decided again each time the
//!   isolate's copy of the line changes, until its news does (the core's `gate::Hold`): a
//!   sell-out reaches every held poll within a refresh, and a waiting crowd costs one request
//!   per place per hold. A sale's joins are gathered the same way (the core's `gate::JoinWait`):
//!   each waits on its own timer while the isolate gathers the sale's joins for
//!   `FLASHGATE_QUEUE_JOIN_BATCH_MS`, and whichever finds the batch due sends one
//!   `Queue/JoinQueueMany` for all of them. A sale's buys too: while one `Seckill/BuyMany` of
//!   the sale is out, the buys that come wait, and the next carries them all (the core's
//!   `gate::BuyWait`).
//!
//! With `FLASHGATE_DEMO_MODE` on, each isolate logs the core's `gate::DEMO_MODE_WARNING` when it
//! builds its gate, on its first request (a Worker's start hook does not see `env`).
//!
//! What it deliberately does not do: decide anything. Every refusal, limit, status code and
//! cache header comes from the core; the only thing this file knows is how to talk to workerd.
#![cfg(target_arch = "wasm32")]

use std::cell::RefCell;
use std::net::IpAddr;
use std::rc::Rc;
use std::time::Duration;

use flashgate_core::gate::{
    self, BoundedBody, Exchange, Forward, Gate, GateConfig, GateState, HeaderValues, NetworkLimit,
    Next, OriginResponse,
};
use flashgate_core::refusal::{Reason, Refusal};
use futures_channel::oneshot;
use futures_util::future::{select, Either};
use futures_util::StreamExt;
use worker::wasm_bindgen::JsCast;
use worker::{event, js_sys, AbortController, Context, Delay, Env, Fetch, Headers, Method};

/// The `[[ratelimits]]` binding that limits requests per client network.
pub const IP_LIMITER: &str = "FLASHGATE_IP_LIMITER";

thread_local! {
    // A Worker isolate is single-threaded; borrows never cross an `.await`.
    static GATE: RefCell<Option<Rc<Gate>>> = const { RefCell::new(None) };
    static STATE: RefCell<GateState> = RefCell::new(GateState::default());
}

/// The gate, built once per isolate from the environment.
fn gate(env: &Env) -> Result<Rc<Gate>, String> {
    if let Some(gate) = GATE.with(|g| g.borrow().clone()) {
        return Ok(gate);
    }
    // Vars (`[vars]`) and secrets (`wrangler secret`, `.dev.vars`) are both strings on `env`.
    let lookup = |name: &str| {
        js_sys::Reflect::get(env.as_ref(), &name.into())
            .ok()
            .and_then(|v| v.as_string())
    };
    let config = GateConfig::from_lookup(lookup).map_err(|e| e.to_string())?;
    if config.identity.demo_mode() {
        // Workers have no start hook that sees `env`: this is the isolate's first request.
        worker::console_warn!("flashgate: {}", gate::DEMO_MODE_WARNING);
    }
    // An isolate serves many requests at once, so a poll that asks to wait can be held, and a
    // sale's joins can be gathered and sent together.
    let gate = Rc::new(
        Gate::new(config)
            .holding_polls()
            .gathering_joins()
            .gathering_buys(),
    );
    GATE.with(|g| *g.borrow_mut() = Some(gate.clone()));
    Ok(gate)
}

fn with_state<T>(f: impl FnOnce(&mut GateState) -> T) -> T {
    STATE.with(|s| f(&mut s.borrow_mut()))
}

#[event(fetch)]
async fn fetch(req: worker::Request, env: Env, ctx: Context) -> worker::Result<worker::Response> {
    let gate = match gate(&env) {
        Ok(gate) => gate,
        Err(why) => {
            // An operator's mistake: say so in the log, never to the client.
            worker::console_error!("flashgate: configuration: {why}");
            return respond(Refusal::after(Reason::Unavailable, 5_000).into());
        }
    };
    respond(handle(&gate, req, &env, &ctx).await?)
}

async fn handle(
    gate: &Rc<Gate>,
    mut req: worker::Request,
    env: &Env,
    ctx: &Context,
) -> worker::Result<gate::Response> {
    let now_ms = js_sys::Date::now() as i64;
    let method = req.method().to_string();
    let path = req.path();
    let body = read_body(&mut req, &method, gate.config().max_body).await;
    let header = |name: &str| req.headers().get(name).ok().flatten();
    let headers = HeaderValues::read(header);
    let client_ip = header("cf-connecting-ip").and_then(|ip| ip.parse::<IpAddr>().ok());
    let platform_bot_score = req
        .cf()
        .and_then(|cf| cf.bot_management())
        .map(|bm| bm.score().min(99) as u8);
    let mut request = gate::Request {
        method: &method,
        path: &path,
        headers: headers.headers(),
        client_ip,
        platform_bot_score,
        network_limit: NetworkLimit::Local,
        body: &body,
        now_ms,
        entropy: entropy()?,
    };
    if let Some(key) = gate.network_key(&request) {
        request.network_limit = match env.rate_limiter(IP_LIMITER) {
            Ok(limiter) => match limiter.limit(key).await {
                Ok(outcome) if outcome.success => NetworkLimit::Allowed,
                Ok(_) => NetworkLimit::Exceeded,
                // The limiter failing is no reason to refuse buyers: fall back to the gate's own.
                Err(_) => NetworkLimit::Local,
            },
            Err(_) => NetworkLimit::Local,
        };
    }

    let mut exchange = Exchange::default();
    let next = with_state(|state| exchange.start(gate, &request, state));
    let first = run(gate, &request, &mut exchange, next, ctx).await;
    let Some(hold) = first.hold.clone() else {
        return Ok(first);
    };
    let hold = with_state(|state| hold.enter(state));
    // A waiting place's poll that asked to be held: decided again on the isolate's copy of the
    // line each time that changes, until its news does (the core's `Hold`).
    loop {
        loop {
            Delay::from(Duration::from_millis(gate::HOLD_TICK_MS)).await;
            request.now_ms = js_sys::Date::now() as i64;
            if with_state(|state| hold.wakes(state, request.now_ms)) {
                break;
            }
        }
        let next = with_state(|state| exchange.resume(gate, &request, state));
        let latest = run(gate, &request, &mut exchange, next, ctx).await;
        if with_state(|state| hold.releases(&latest, state, request.now_ms)) {
            return Ok(latest);
        }
    }
}

/// Drives `exchange` from `next` to its response: each forward sent, its reply handed back, and
/// a gathered join's waits slept (on this request's own timer: its batch's reply reaches it
/// through the isolate's state, never from another request's context).
async fn run(
    gate: &Rc<Gate>,
    request: &gate::Request<'_>,
    exchange: &mut Exchange,
    mut next: Next,
    ctx: &Context,
) -> gate::Response {
    loop {
        let call = match next {
            Next::Respond(response) => return response,
            Next::Send(call) if call.call.gathered_tick_ms().is_some() => {
                // A batch is every gathered request's, not this one's: sent under `waitUntil`,
                // so a client that goes away does not take the others' joins or buys with it.
                // Its reply lands in the isolate's state, where each request finds its answer:
                // this one as soon as the reply is in (the task is this request's own, so it may
                // wake it), the others at their next tick.
                let tick_ms = call.call.gathered_tick_ms().unwrap_or(gate::JOIN_TICK_MS);
                let longest = gate.config().origin_timeout_ms.max(1) + tick_ms;
                let (done, replied) = oneshot::channel::<()>();
                let sender = Rc::clone(gate);
                ctx.wait_until(async move {
                    let reply = send(&sender, &call).await;
                    let done_ms = js_sys::Date::now() as i64;
                    with_state(|state| {
                        let reply = OriginResponse::reply(reply.as_ref());
                        sender.complete(state, &call, reply, done_ms);
                    });
                    let _ = done.send(());
                });
                let limit = Delay::from(Duration::from_millis(longest as u64));
                let _ = select(replied, limit).await;
                let now_ms = js_sys::Date::now() as i64;
                next = with_state(|state| exchange.check(gate, state, now_ms));
                continue;
            }
            Next::Send(call) => call,
            Next::Wait { until_ms } => {
                let now_ms = js_sys::Date::now() as i64;
                if until_ms > now_ms {
                    let wait = (until_ms - now_ms).min(gate::MAX_JOIN_WAIT_MS) as u64;
                    Delay::from(Duration::from_millis(wait)).await;
                }
                let now_ms = js_sys::Date::now() as i64;
                next = with_state(|state| exchange.check(gate, state, now_ms));
                continue;
            }
        };
        let reply = send(gate, &call).await;
        let done_ms = js_sys::Date::now() as i64;
        next = with_state(|state| {
            let reply = OriginResponse::reply(reply.as_ref());
            exchange.reply(gate, request, state, &call, reply, done_ms)
        });
    }
}

/// The body, read as far as the gate's [`BoundedBody`] wants it.
async fn read_body(req: &mut worker::Request, method: &str, max: usize) -> Vec<u8> {
    let mut body = BoundedBody::new(method, max);
    if !body.wants_more() {
        return body.into_bytes();
    }
    let Ok(mut stream) = req.stream() else {
        return body.into_bytes();
    };
    while body.wants_more() {
        match stream.next().await {
            Some(Ok(chunk)) => body.push(&chunk),
            _ => break,
        }
    }
    body.into_bytes()
}

fn entropy() -> worker::Result<[u8; 32]> {
    let crypto = js_sys::Reflect::get(&js_sys::global(), &"crypto".into())?;
    let get_random_values: js_sys::Function =
        js_sys::Reflect::get(&crypto, &"getRandomValues".into())?.dyn_into()?;
    let buffer = js_sys::Uint8Array::new_with_length(32);
    get_random_values.call1(&crypto, &buffer)?;
    let mut out = [0u8; 32];
    buffer.copy_to(&mut out);
    Ok(out)
}

/// Sends the gate's call to the warehouse; `None` when it cannot be reached in time.
async fn send(gate: &Gate, call: &Forward) -> Option<OriginResponse> {
    let config = gate.config();
    let headers = Headers::new();
    for (name, value) in &call.headers {
        headers.set(name, value).ok()?;
    }
    let mut init = worker::RequestInit::new();
    init.with_method(Method::Post)
        .with_headers(headers)
        .with_body(Some(js_sys::Uint8Array::from(call.body.as_slice()).into()));
    let request = worker::Request::new_with_init(&config.origin.url(call.path), &init).ok()?;
    let controller = AbortController::default();
    let signal = controller.signal();
    let timeout = Delay::from(Duration::from_millis(config.origin_timeout_ms.max(1) as u64));
    let exchange = async {
        let mut response = Fetch::Request(request)
            .send_with_signal(&signal)
            .await
            .ok()?;
        let mut reply = OriginResponse::head(response.status_code(), |name| {
            response.headers().get(name).ok().flatten()
        });
        reply.body = response.bytes().await.ok()?;
        Some(reply)
    };
    let reply = match select(Box::pin(exchange), timeout).await {
        Either::Left((reply, _)) => reply,
        Either::Right(((), _)) => {
            controller.abort();
            None
        }
    };
    reply
}

fn respond(response: gate::Response) -> worker::Result<worker::Response> {
    let headers = Headers::new();
    for (name, value) in response.headers() {
        headers.set(name, &value)?;
    }
    Ok(worker::Response::ok(response.body)?
        .with_status(response.status)
        .with_headers(headers))
}

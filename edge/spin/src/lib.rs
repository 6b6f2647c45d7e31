//! flashgate's Spin component: a thin adapter between `wasi:http@0.3` (Spin, or `wasmtime
//! serve`) and the shared core's `flashgate_core::gate`, answering the same routes, statuses
//! and JSON as the Cloudflare Worker through the same core calls.
//!
//! Per `/api` request it reads the wall clock once, draws 32 bytes from `wasi:random`, reads the
//! headers the core names and as much of the body as the core's `gate::BoundedBody` wants, and
//! runs the core's `gate::Exchange`: answer, or send the ready gRPC-Web call to the origin the
//! core's configuration validated, and hand the reply back as a `gate::OriginResponse`. Anything outside `/api/` is the
//! storefront: Spin serves `web/` with its static-file component (`spin.toml`), and this
//! component answers such paths with the gate's `404` JSON.
//!
//! Configuration comes from environment variables (`wasi:cli/environment`), named in
//! `flashgate_core::gate::vars`: Spin sets them from `environment = {…}` in `spin.toml`,
//! `wasmtime serve` from `--env`. The client's address is the `spin-client-addr` header Spin
//! sets (under `wasmtime serve`, whatever the client sends: put a proxy in front that sets it).
//!
//! Where state lives, and why — Spin creates an instance per request, so nothing survives in
//! memory between requests:
//! - **plain build** (standard `wasi:*` imports only; runs under Spin and `wasmtime serve`):
//!   every request starts from an empty `GateState`. Link signatures, expiry and binding, the
//!   proof of work, bot rules, user tokens and input limits hold (they need no memory); rate
//!   limits, the breaker and the sold-out flag do not, so the warehouse's own limits carry the
//!   load: its per-connection concurrency limit and load shedding, request timeout, the
//!   per-user limit and `SOLD_OUT` in the Buy script. With no sale view and no directory of sale
//!   ids in an empty state, every buy first costs the warehouse one `ListEvents` and one cheap
//!   `GetEvent`: after a sell-out that is all it costs (the fresh view says sold out and the gate
//!   refuses the buy itself, never sending `Buy`); before it, the `Buy` follows. A made-up sale
//!   id costs one `ListEvents`, never a `GetEvent`. A waiting room's poll likewise asks for the
//!   line's snapshot (`Queue/GetQueue`) each time: the line is the warehouse's, so the places,
//!   the admission bound and sold out are the same as on any other edge; only the cost differs.
//! - **`kv` build** (imports `spin:key-value`; Spin only): the `GateState` is kept as JSON in
//!   the component's `default` key-value store, loaded before each step and stored after it
//!   (never held across the origin call). Concurrent requests still race between a load and its
//!   store (the last store wins), so limits are approximate under contention; that is acceptable for counters whose job is to shed a crowd, and the
//!   warehouse's script stays the authority on stock.
//!
//! Outbound: spin-sdk's `http::send` (wasip3 0.7.1) drops the request's transmission future,
//! and under wasmtime the response body can then arrive empty when the origin writes headers and
//! body separately. `send` here uses the raw `wasi:http/client` instead and holds that future until
//! the reply is read.
//!
//! With `FLASHGATE_DEMO_MODE` on, the component logs the core's `gate::DEMO_MODE_WARNING` to
//! stderr each time it builds its gate: WASI 0.3 HTTP has no start hook, and Spin and `wasmtime
//! serve` start an instance per request, so in demo mode every request says it once.
//!
//! What it deliberately does not do: decide anything. Every refusal, limit, status code and
//! cache header comes from the core; this file only knows how to talk to a WASI 0.3 host.
#![cfg(target_arch = "wasm32")]

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use flashgate_core::gate::{
    self, BoundedBody, Exchange, Forward, Gate, GateConfig, GateState, Headers, NetworkLimit, Next,
    OriginResponse,
};
use flashgate_core::refusal::{Reason, Refusal};
use futures_util::future::{select, Either};
use http_body_util::BodyExt;
use spin_sdk::http::{IntoResponse, Request, Response};
use spin_sdk::http_service;
use spin_sdk::wasip3;
use wasip3::http::types::{self as wasi, Fields, Method, RequestOptions, Scheme};

/// The gate, built from the environment per instance (so, on Spin, per request).
fn gate() -> Result<Gate, String> {
    let env: HashMap<String, String> = wasip3::cli::environment::get_environment()
        .into_iter()
        .collect();
    let config =
        GateConfig::from_lookup(|name| env.get(name).cloned()).map_err(|e| e.to_string())?;
    if config.identity.demo_mode() {
        eprintln!("flashgate: {}", gate::DEMO_MODE_WARNING);
    }
    Ok(Gate::new(config))
}

#[http_service]
async fn handle(req: Request) -> anyhow::Result<impl IntoResponse> {
    let gate = match gate() {
        Ok(gate) => gate,
        Err(why) => {
            // An operator's mistake: say so in the log, never to the client.
            eprintln!("flashgate: configuration: {why}");
            return Ok(respond(Refusal::after(Reason::Unavailable, 5_000).into()));
        }
    };
    Ok(respond(serve(&gate, req).await))
}

async fn serve(gate: &Gate, req: Request) -> gate::Response {
    let started_ms = now_ms();
    let (parts, body) = req.into_parts();
    let method = parts.method.as_str().to_owned();
    let path = parts.uri.path().to_owned();
    let body = read_body(&method, body, gate.config().max_body).await;
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let client_ip = header("spin-client-addr").and_then(|addr| {
        addr.parse::<SocketAddr>()
            .map(|a| a.ip())
            .or_else(|_| addr.parse::<IpAddr>())
            .ok()
    });
    let request = gate::Request {
        method: &method,
        path: &path,
        headers: Headers::from_lookup(header),
        client_ip,
        platform_bot_score: None,
        network_limit: NetworkLimit::Local,
        body: &body,
        now_ms: started_ms,
        entropy: entropy(),
    };

    let mut state = state::load().await;
    let mut exchange = Exchange::default();
    let mut next = exchange.start(gate, &request, &mut state);
    let response = loop {
        let call = match next {
            Next::Respond(response) => break response,
            Next::Send(call) => call,
            // Only a gate gathering joins waits, and one request per instance has nothing to
            // gather with: this gate sends each join alone.
            Next::Wait { .. } => break Refusal::after(Reason::Unavailable, 1_000).into(),
        };
        // Stored before the call: a request that waits on the origin does not hold back the
        // limits and the breaker its own decision updated.
        state::store(&state).await;
        let reply = send(gate, &call).await;
        // Loaded again: what other requests stored while this one waited is kept, not
        // overwritten by the copy this one loaded before the call.
        state = state::reload(state).await;
        let reply = OriginResponse::reply(reply.as_ref());
        next = exchange.reply(gate, &request, &mut state, &call, reply, now_ms());
    };
    state::store(&state).await;
    response
}

/// Where the `GateState` lives between requests.
#[cfg(not(feature = "kv"))]
mod state {
    use super::GateState;

    /// Nothing survives a Spin instance: every request starts from an empty state.
    pub async fn load() -> GateState {
        GateState::default()
    }

    /// After a call: the request's own state, with what its earlier calls fetched (a poll may
    /// need the directory, the sale and the line, one call each, within one request).
    pub async fn reload(mine: GateState) -> GateState {
        mine
    }

    pub async fn store(_state: &GateState) {}
}

/// Where the `GateState` lives between requests: the `default` Spin key-value store.
#[cfg(feature = "kv")]
mod state {
    use super::GateState;
    use spin_sdk::key_value::Store;

    /// The key holding the serialised `GateState`.
    const KEY: &str = "flashgate/gate-state";

    pub async fn load() -> GateState {
        let Ok(store) = Store::open_default().await else {
            eprintln!("flashgate: key-value store `default` unavailable: state starts empty");
            return GateState::default();
        };
        match store.get(KEY).await {
            Ok(Some(bytes)) => serde_json::from_slice(&bytes).unwrap_or_default(),
            _ => GateState::default(),
        }
    }

    /// After a call: the stored state, which holds what this request stored before the call
    /// and what other requests stored while it waited.
    pub async fn reload(_mine: GateState) -> GateState {
        load().await
    }

    pub async fn store(state: &GateState) {
        let Ok(store) = Store::open_default().await else {
            return;
        };
        let bytes = serde_json::to_vec(state).expect("the gate state serialises");
        if store.set(KEY, &bytes).await.is_err() {
            eprintln!("flashgate: could not store the gate state");
        }
    }
}

fn now_ms() -> i64 {
    let now = wasip3::clocks::system_clock::now();
    now.seconds * 1_000 + i64::from(now.nanoseconds / 1_000_000)
}

fn entropy() -> [u8; 32] {
    let bytes = wasip3::random::random::get_random_bytes(32);
    let mut out = [0u8; 32];
    out.copy_from_slice(&bytes[..32]);
    out
}

/// The body, read as far as the gate's [`BoundedBody`] wants it.
async fn read_body<B>(method: &str, mut body: B, max: usize) -> Vec<u8>
where
    B: http_body::Body + Unpin,
    B::Data: AsRef<[u8]>,
{
    let mut out = BoundedBody::new(method, max);
    while out.wants_more() {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    out.push(data.as_ref());
                }
            }
            _ => break,
        }
    }
    out.into_bytes()
}

/// Sends the gate's call to the warehouse over the raw `wasi:http/client`; `None` when it
/// cannot be reached within the configured timeout.
async fn send(gate: &Gate, call: &Forward) -> Option<OriginResponse> {
    let timeout_ms = gate.config().origin_timeout_ms;
    let timeout_ns = u64::try_from(timeout_ms.max(1)).unwrap_or(1) * 1_000_000;
    let call = Box::pin(post(gate, call, timeout_ns));
    let timer = Box::pin(wasip3::clocks::monotonic_clock::wait_for(timeout_ns));
    match select(call, timer).await {
        Either::Left((reply, _)) => reply,
        Either::Right(((), _)) => None,
    }
}

/// One POST to the origin, read whole.
async fn post(gate: &Gate, call: &Forward, timeout_ns: u64) -> Option<OriginResponse> {
    let origin = &gate.config().origin;
    let entries: Vec<(String, Vec<u8>)> = call
        .headers
        .iter()
        .map(|(name, value)| ((*name).to_owned(), value.as_bytes().to_vec()))
        .collect();
    let headers = Fields::from_list(&entries).ok()?;
    let options = RequestOptions::new();
    // Best effort: a host that does not support a timeout keeps its own.
    let _ = options.set_connect_timeout(Some(timeout_ns));
    let _ = options.set_first_byte_timeout(Some(timeout_ns));
    let (mut contents, contents_reader) = wasip3::wit_stream::new::<u8>();
    let (trailers, trailers_reader) = wasip3::wit_future::new(|| Ok(None));
    // `transmitted` is the request's transmission future. Dropping it early is the bug that
    // empties response bodies under wasmtime (see the crate docs): it lives until the reply
    // is read.
    let (request, transmitted) = wasi::Request::new(
        headers,
        Some(contents_reader),
        trailers_reader,
        Some(options),
    );
    let scheme = if origin.is_https() {
        Scheme::Https
    } else {
        Scheme::Http
    };
    request.set_method(&Method::Post).ok()?;
    request.set_scheme(Some(&scheme)).ok()?;
    request.set_authority(Some(origin.authority())).ok()?;
    request
        .set_path_with_query(Some(&origin.path_for(call.path)))
        .ok()?;
    let body = call.body.clone();
    let write = async move {
        let _ = contents.write_all(body).await;
        drop(contents);
        let _ = trailers.write(Ok(None)).await;
    };
    let (response, ()) =
        futures_util::future::join(wasip3::http::client::send(request), write).await;
    let response: wasi::Response = response.ok()?;
    let headers = response.get_headers();
    let mut reply = OriginResponse::head(response.get_status_code(), |name| {
        headers
            .get(name)
            .into_iter()
            .next()
            .and_then(|v| String::from_utf8(v).ok())
    });
    drop(headers);
    let response: Response = wasip3::http_compat::http_from_wasi_response(response).ok()?;
    reply.body = response
        .into_body()
        .collect()
        .await
        .ok()?
        .to_bytes()
        .to_vec();
    drop(transmitted);
    Some(reply)
}

fn respond(response: gate::Response) -> Response<String> {
    let mut builder = spin_sdk::http::Response::builder().status(response.status);
    for (name, value) in response.headers() {
        builder = builder.header(name, value);
    }
    builder
        .body(response.body)
        .expect("the gate's headers are valid")
}

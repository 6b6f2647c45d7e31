//! Behaviour of the gate over whole journeys, with a fake clock and a fake origin that answers
//! in gRPC-Web: a shopper's path from the sale page to an order, and what bots, crowds, scalpers
//! and a failing warehouse meet on the way. A rule that refuses at the edge is asserted with the
//! refusal's status and code and with the verdict not being a forward: it cost the origin
//! nothing.

use flashgate_core::gate::{
    Completion, Exchange, Forward, Gate, GateConfig, GateState, Headers, NetworkLimit, Next,
    OriginReply, Request, Response, Verdict, BUY_TICK_MS, DEMO_PREFIX,
};
use flashgate_core::grpc_web::{self, StatusHeaders};
use flashgate_core::identity::{Identity, TokenPolicy, UserKeys};
use flashgate_core::link::KeyRing;
use flashgate_core::origin_auth;
use flashgate_core::pow;
use flashgate_core::proto::flashsale::{
    buy_result, BuyManyReply, BuyManyReq, BuyOutcome, BuyRefused, BuyReply, BuyReq, BuyResult,
    Event, EventList, EventReq, EventState, Order, OrderReq, OrderStatus,
};
use flashgate_core::refusal::{Reason, Refusal};
use proptest::prelude::*;
use prost::Message;
use serde_json::Value;

const USER_KEY: &[u8] = b"shop-session-key-0123456789abcdef";
const ORIGIN_KEY: &[u8] = b"origin-key-0123456789abcdef";
const START: i64 = 1_764_064_800_000;
const CHROME: &str =
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/141.0 Safari/537.36";
const LIST_EVENTS: &str = "/flashsale.Admin/ListEvents";
const GET_EVENT: &str = "/flashsale.Admin/GetEvent";
const BUY: &str = "/flashsale.Seckill/Buy";

/// Time only moves when a test says so.
struct Clock(i64);

impl Clock {
    fn now(&self) -> i64 {
        self.0
    }
    fn advance(&mut self, ms: i64) {
        self.0 += ms;
    }
}

fn config() -> GateConfig {
    let ring = KeyRing::single(b"link-key-0123456789abcdef").unwrap();
    let mut config = GateConfig::new(ring, UserKeys::single(USER_KEY).unwrap(), ORIGIN_KEY);
    config.difficulty.floor_bits = 4;
    config.difficulty.cap_bits = 8;
    config.bot_extra_bits = 2;
    config.breaker.consecutive_failures = 2;
    config.breaker.cooldown_ms = 5_000;
    config.breaker.probes = 1;
    config.sale_ttl_ms = 10_000;
    config
}

/// The shop's token verifier (and minter) over [`USER_KEY`], in demo mode or not.
fn shop_identity(demo: bool) -> Identity {
    Identity::new(
        UserKeys::single(USER_KEY).unwrap(),
        TokenPolicy::default(),
        demo,
    )
}

/// A shopper's browser: the right headers, its own address and session.
struct Shopper {
    token: String,
    ip: &'static str,
    user_agent: &'static str,
    counter: u8,
}

impl Shopper {
    fn new(user: &str, ip: &'static str, now: i64) -> Self {
        let identity = shop_identity(false);
        Shopper {
            token: format!("Bearer {}", identity.mint(user, now, 3_600_000)),
            ip,
            user_agent: CHROME,
            counter: 0,
        }
    }

    fn request<'a>(
        &'a mut self,
        method: &'a str,
        path: &'a str,
        body: &'a [u8],
        now: i64,
    ) -> Request<'a> {
        self.counter = self.counter.wrapping_add(1);
        Request {
            method,
            path,
            headers: Headers {
                authorization: Some(&self.token),
                user_agent: Some(self.user_agent),
                accept_language: Some("zh-CN,zh;q=0.9"),
                sec_fetch_site: Some("same-origin"),
                sec_fetch_mode: Some("cors"),
                place: None,
                wait: None,
            },
            client_ip: Some(self.ip.parse().unwrap()),
            platform_bot_score: None,
            network_limit: NetworkLimit::Local,
            body,
            now_ms: now,
            entropy: [self.counter; 32],
        }
    }
}

fn sale_state(remaining: i32) -> EventState {
    EventState {
        event: Some(Event {
            id: 7,
            sku_id: 42,
            pool: 10,
            start_ms: START,
            end_ms: START + 600_000,
            per_user_limit: 2,
            pay_window_ms: 900_000,
            subpools: 0,
            price: 1_999,
            currency: "EUR".into(),
            ..Default::default()
        }),
        remaining,
        sold_out: remaining == 0,
        status: 0,
        server_time_ms: 0,
    }
}

fn ok<M: Message>(message: &M) -> Vec<u8> {
    grpc_web::encode_response(Some(message), 0, "")
}

fn http(body: &[u8]) -> OriginReply<'_> {
    OriginReply::Http {
        status: 200,
        grpc: StatusHeaders::default(),
        body,
    }
}

fn refused(verdict: &Verdict) -> Reason {
    match verdict {
        Verdict::Refuse(r) => r.reason,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// The refusal, checked to be answered with `status` and `code`: a refusal is never a forward,
/// so the origin heard nothing of the request.
fn refused_as(verdict: &Verdict, status: u16, code: &str) -> Refusal {
    let Verdict::Refuse(refusal) = verdict else {
        panic!("expected a refusal at the edge ({status} {code}), got {verdict:?}");
    };
    let response = Response::from(*refusal);
    let body: Value = serde_json::from_str(&response.body).unwrap();
    assert_eq!(
        (response.status, body["code"].as_str()),
        (status, Some(code))
    );
    *refusal
}

fn respond(verdict: Verdict) -> Value {
    match verdict {
        Verdict::Respond(Response {
            status: 200, body, ..
        }) => serde_json::from_str(&body).unwrap(),
        other => panic!("expected a 200 answer, got {other:?}"),
    }
}

fn forward(verdict: Verdict) -> Forward {
    match verdict {
        Verdict::Forward(f) => f,
        other => panic!("expected a forward, got {other:?}"),
    }
}

fn json(completion: Completion) -> (u16, Value) {
    match completion {
        Completion::Respond(r) => (r.status, serde_json::from_str(&r.body).unwrap()),
        Completion::Retry | Completion::Check => panic!("unexpected {completion:?}"),
    }
}

/// The warehouse as far as the gate's reads go: the sale ids it lists, sale 7's stock, and the
/// reads it answered (a view of another sale it leaves to the test).
struct Warehouse {
    listed: Vec<i64>,
    remaining: i32,
    reads: Vec<&'static str>,
}

impl Warehouse {
    /// Lists sale 7 with `remaining` units left.
    fn selling(remaining: i32) -> Self {
        Warehouse {
            listed: vec![7],
            remaining,
            reads: Vec::new(),
        }
    }

    /// Decides `req` the way an adapter's exchange does, answering the directory and sale-view
    /// reads, until the verdict is anything else (an answer, a refusal, another call).
    fn decide(&mut self, gate: &Gate, state: &mut GateState, req: &Request<'_>) -> Verdict {
        let mut verdict = gate.decide(req, state);
        for _ in 0..3 {
            let Verdict::Forward(call) = &verdict else {
                return verdict;
            };
            let body = match call.path {
                LIST_EVENTS => ok(&EventList {
                    ids: self.listed.clone(),
                    server_time_ms: req.now_ms,
                }),
                GET_EVENT if EventReq::decode(&call.body[5..]).unwrap().id == 7 => {
                    ok(&sale_state(self.remaining))
                }
                _ => return verdict,
            };
            self.reads.push(call.path);
            verdict = match gate.complete(state, call, http(&body), req.now_ms) {
                Completion::Retry => gate.decide_again(req, state),
                Completion::Respond(response) => Verdict::Respond(response),
                Completion::Check => panic!("no gathered joins here"),
            };
        }
        panic!("more than two refreshes for one request: {verdict:?}");
    }
}

/// Fills the directory and the sale cache the way an adapter does, then decides.
fn decide_with_sale(
    gate: &Gate,
    state: &mut GateState,
    req: &Request<'_>,
    remaining: i32,
) -> Verdict {
    Warehouse::selling(remaining).decide(gate, state, req)
}

/// Asks for a challenge for sale 7 and solves it: the link request's body.
fn solve(issued: &Value) -> String {
    let challenge = issued["challenge"].as_str().unwrap();
    let bits = issued["bits"].as_u64().unwrap() as u8;
    let nonce = pow::solve(challenge, bits, 0, 1 << 20).unwrap();
    serde_json::json!({ "challenge": challenge, "nonce": nonce }).to_string()
}

/// The request id of a forwarded buy.
fn request_id(call: &Forward) -> String {
    assert_eq!(call.path, BUY);
    BuyReq::decode(&call.body[5..]).unwrap().request_id
}

fn demo_config() -> GateConfig {
    let mut cfg = config();
    cfg.identity = shop_identity(true);
    cfg
}

#[test]
fn a_shopper_goes_from_challenge_to_order() {
    let gate = Gate::new(config());
    let mut state = GateState::default();
    let mut clock = Clock(START - 30_000);
    let mut alice = Shopper::new("alice", "203.0.113.5", clock.now());

    // Before the start: a challenge may be fetched and solved, but no link is minted (425).
    let req = alice.request("POST", "/api/events/7/challenge", b"", clock.now());
    let issued = respond(decide_with_sale(&gate, &mut state, &req, 10));
    let challenge = issued["challenge"].as_str().unwrap().to_owned();
    let bits = issued["bits"].as_u64().unwrap() as u8;
    assert!((4..=8).contains(&bits));
    let nonce = pow::solve(&challenge, bits, 0, 1 << 20).unwrap();
    let answer = serde_json::json!({ "challenge": challenge, "nonce": nonce }).to_string();
    let early = gate.decide(
        &alice.request("POST", "/api/events/7/link", answer.as_bytes(), clock.now()),
        &mut state,
    );
    assert_eq!(refused(&early), Reason::TooEarly);
    let Verdict::Refuse(r) = early else {
        unreachable!()
    };
    assert_eq!(r.retry_after_secs(), Some(30));

    // At the start the same answer buys a link.
    clock.advance(30_000);
    // (The cached sale view is 30 s old by now: the gate refreshes it first.)
    let req = alice.request("POST", "/api/events/7/link", answer.as_bytes(), clock.now());
    let minted = respond(decide_with_sale(&gate, &mut state, &req, 10));
    let path = minted["path"].as_str().unwrap().to_owned();
    assert_eq!(minted["max_qty"], 2);

    // The buy goes to the warehouse as one origin-signed gRPC-Web call.
    clock.advance(1_000);
    let call = forward(gate.decide(
        &alice.request("POST", &path, br#"{"qty":2}"#, clock.now()),
        &mut state,
    ));
    assert_eq!(call.path, "/flashsale.Seckill/Buy");
    let header = |name: &str| {
        call.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(header("content-type"), Some(grpc_web::CONTENT_TYPE));
    assert_eq!(
        origin_auth::verify(
            ORIGIN_KEY,
            "POST",
            call.path,
            header(origin_auth::TIMESTAMP_HEADER),
            header(origin_auth::SIGNATURE_HEADER),
            &call.body,
            clock.now(),
            1_000
        ),
        Ok(())
    );
    let buy = BuyReq::decode(&call.body[5..]).unwrap();
    assert_eq!(
        (buy.event_id, buy.user_id.as_str(), buy.qty),
        (7, "alice", 2)
    );
    assert!(buy.request_id.starts_with("link-"));
    // A retried buy through the same link carries the same idempotency key.
    let again = forward(gate.decide(
        &alice.request("POST", &path, br#"{"qty":2}"#, clock.now()),
        &mut state,
    ));
    assert_eq!(
        BuyReq::decode(&again.body[5..]).unwrap().request_id,
        buy.request_id
    );

    let reply = BuyReply {
        outcome: BuyOutcome::Queued as i32,
        order_no: "O-1".into(),
        remaining: 8,
    };
    let (status, body) = json(gate.complete(&mut state, &call, http(&ok(&reply)), clock.now()));
    assert_eq!((status, body["order_no"].as_str()), (202, Some("O-1")));

    // The order answers only through its owner, and the call names the user.
    let call = forward(gate.decide(
        &alice.request("GET", "/api/orders/O-1", b"", clock.now()),
        &mut state,
    ));
    assert_eq!(call.path, "/flashsale.Seckill/GetOrder");
    assert_eq!(
        OrderReq::decode(&call.body[5..]).unwrap(),
        OrderReq {
            order_no: "O-1".into(),
            user_id: "alice".into()
        }
    );
    let order = Order {
        order_no: "O-1".into(),
        event_id: 7,
        sku_id: 42,
        user_id: "alice".into(),
        qty: 2,
        status: OrderStatus::PendingPayment as i32,
        deadline_ms: 1,
        created_ms: 2,
        amount: 3_998,
        currency: "EUR".into(),
        ..Default::default()
    };
    let (status, body) = json(gate.complete(&mut state, &call, http(&ok(&order)), clock.now()));
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("pending_payment"))
    );
    assert_eq!(
        (&body["amount"], &body["currency"], &body["paid_ms"]),
        (&Value::from(3_998), &Value::from("EUR"), &Value::from(0))
    );
    assert!(body.get("payment_id").is_none(), "{body}");
}

#[test]
fn links_are_personal_and_expire() {
    let gate = Gate::new(config());
    let mut state = GateState::default();
    let clock = Clock(START + 1_000);
    let mut alice = Shopper::new("alice", "203.0.113.5", clock.now());
    let mut bob = Shopper::new("bob", "203.0.113.6", clock.now());
    let issued = respond(decide_with_sale(
        &gate,
        &mut state,
        &alice.request("POST", "/api/events/7/challenge", b"", clock.now()),
        10,
    ));
    let challenge = issued["challenge"].as_str().unwrap();
    let nonce = pow::solve(
        challenge,
        issued["bits"].as_u64().unwrap() as u8,
        0,
        1 << 20,
    )
    .unwrap();
    let answer = serde_json::json!({ "challenge": challenge, "nonce": nonce }).to_string();
    // Bob cannot use Alice's answer, nor a wrong nonce.
    let stolen = gate.decide(
        &bob.request("POST", "/api/events/7/link", answer.as_bytes(), clock.now()),
        &mut state,
    );
    assert_eq!(refused(&stolen), Reason::ChallengeRequired);
    let minted = respond(gate.decide(
        &alice.request("POST", "/api/events/7/link", answer.as_bytes(), clock.now()),
        &mut state,
    ));
    let path = minted["path"].as_str().unwrap();
    // Bob cannot buy through Alice's link; Alice cannot exceed its quantity; it expires.
    assert_eq!(
        refused(&gate.decide(&bob.request("POST", path, b"", clock.now()), &mut state)),
        Reason::BadLink
    );
    assert_eq!(
        refused(&gate.decide(
            &alice.request("POST", path, br#"{"qty":3}"#, clock.now()),
            &mut state
        )),
        Reason::QtyTooLarge
    );
    assert_eq!(
        refused(&gate.decide(
            &alice.request("POST", "/api/buy/forged", b"", clock.now()),
            &mut state
        )),
        Reason::BadLink
    );
    let later = clock.now() + config().link_ttl_ms;
    assert_eq!(
        refused(&gate.decide(&alice.request("POST", path, b"", later), &mut state)),
        Reason::LinkExpired
    );
}

#[test]
fn the_sold_out_flag_stops_buyers_at_the_edge() {
    let gate = Gate::new(config());
    let mut state = GateState::default();
    let clock = Clock(START + 1_000);
    let mut alice = Shopper::new("alice", "203.0.113.5", clock.now());
    let issued = respond(decide_with_sale(
        &gate,
        &mut state,
        &alice.request("POST", "/api/events/7/challenge", b"", clock.now()),
        1,
    ));
    let challenge = issued["challenge"].as_str().unwrap();
    let nonce = pow::solve(
        challenge,
        issued["bits"].as_u64().unwrap() as u8,
        0,
        1 << 20,
    )
    .unwrap();
    let answer = serde_json::json!({ "challenge": challenge, "nonce": nonce }).to_string();
    let minted = respond(gate.decide(
        &alice.request("POST", "/api/events/7/link", answer.as_bytes(), clock.now()),
        &mut state,
    ));
    let path = minted["path"].as_str().unwrap().to_owned();
    let call = forward(gate.decide(&alice.request("POST", &path, b"", clock.now()), &mut state));
    let reply = BuyReply {
        outcome: BuyOutcome::Queued as i32,
        order_no: "O-9".into(),
        remaining: 0,
    };
    assert_eq!(
        json(gate.complete(&mut state, &call, http(&ok(&reply)), clock.now())).0,
        202
    );
    // The last unit went: further buys, links and challenges are refused without the origin.
    assert_eq!(
        refused(&gate.decide(&alice.request("POST", &path, b"", clock.now()), &mut state)),
        Reason::SoldOut
    );
    assert_eq!(
        refused(&gate.decide(
            &alice.request("POST", "/api/events/7/challenge", b"", clock.now()),
            &mut state
        )),
        Reason::SoldOut
    );
    let view = respond(gate.decide(
        &alice.request("GET", "/api/events/7", b"", clock.now()),
        &mut state,
    ));
    assert_eq!(view["status"], "sold_out");
}

#[test]
fn the_sale_page_is_served_from_the_cache_once_fetched() {
    let gate = Gate::new(config());
    let mut state = GateState::default();
    let mut clock = Clock(START - 5_000);
    let mut anon = Shopper::new("x", "203.0.113.7", clock.now());
    let req = anon.request("GET", "/api/events/7", b"", clock.now());
    let mut warehouse = Warehouse::selling(10);
    let body = respond(warehouse.decide(&gate, &mut state, &req));
    assert_eq!(warehouse.reads, [LIST_EVENTS, GET_EVENT]);
    assert_eq!(
        (body["status"].as_str(), body["remaining"].as_u64()),
        (Some("upcoming"), Some(10))
    );
    assert_eq!(
        (body["price"].as_u64(), body["currency"].as_str()),
        (Some(1_999), Some("EUR"))
    );
    clock.advance(1_000);
    let Verdict::Respond(cached) = gate.decide(
        &anon.request("GET", "/api/events/7", b"", clock.now()),
        &mut state,
    ) else {
        panic!("not served from cache")
    };
    assert_eq!(cached.cache_control, "public, max-age=1");
    // A listed sale the warehouse then says does not exist is remembered as unknown.
    let req = anon.request("GET", "/api/events/8", b"", clock.now());
    let mut warehouse = Warehouse::selling(10);
    warehouse.listed.push(8);
    let call = forward(warehouse.decide(&gate, &mut state, &req));
    assert_eq!(call.path, GET_EVENT);
    let missing = grpc_web::encode_response::<EventState>(None, 5, "no such event");
    assert_eq!(
        json(gate.complete(&mut state, &call, http(&missing), clock.now())).0,
        404
    );
    refused_as(
        &gate.decide(
            &anon.request("GET", "/api/events/8", b"", clock.now()),
            &mut state,
        ),
        404,
        "unknown",
    );
}

#[test]
fn bots_and_strangers_are_refused_before_anything_costly() {
    let mut cfg = config();
    cfg.bot.deny = flashgate_core::bot::BotPolicy::parse_deny_list("198.51.100.0/24").unwrap();
    let gate = Gate::new(cfg);
    let mut state = GateState::default();
    let now = START + 1_000;
    let mut curl = Shopper::new("alice", "203.0.113.5", now);
    curl.user_agent = "curl/8.5.0";
    let mut req = curl.request("POST", "/api/events/7/challenge", b"", now);
    req.headers.accept_language = None;
    assert_eq!(refused(&gate.decide(&req, &mut state)), Reason::Blocked);
    let mut denied = Shopper::new("alice", "198.51.100.20", now);
    assert_eq!(
        refused(&gate.decide(
            &denied.request("GET", "/api/events/7", b"", now),
            &mut state
        )),
        Reason::Blocked
    );
    let mut anon = Shopper::new("alice", "203.0.113.5", now);
    let mut req = anon.request("POST", "/api/events/7/challenge", b"", now);
    req.headers.authorization = None;
    assert_eq!(
        refused(&gate.decide(&req, &mut state)),
        Reason::Unauthenticated
    );
    let expired = Shopper::new("alice", "203.0.113.5", now - 4_000_000).token;
    req.headers.authorization = Some(&expired);
    assert_eq!(
        refused(&gate.decide(&req, &mut state)),
        Reason::TokenExpired
    );
    let big = vec![b' '; 5_000];
    assert_eq!(
        refused(&gate.decide(&anon.request("POST", "/api/buy/x", &big, now), &mut state)),
        Reason::TooLarge
    );
    assert_eq!(
        refused(&gate.decide(
            &anon.request("DELETE", "/api/events/7", b"", now),
            &mut state
        )),
        Reason::MethodNotAllowed
    );
    assert_eq!(
        refused(&gate.decide(&anon.request("GET", "/api/nope", b"", now), &mut state)),
        Reason::NotFound
    );
    assert!(
        state.sales.is_empty(),
        "no refused request reached the origin"
    );
}

#[test]
fn suspicious_browsers_get_a_harder_challenge() {
    let gate = Gate::new(config());
    let mut state = GateState::default();
    let now = START + 1_000;
    let mut shopper = Shopper::new("alice", "203.0.113.5", now);
    let mut req = shopper.request("POST", "/api/events/7/challenge", b"", now);
    req.headers.sec_fetch_mode = None;
    req.headers.accept_language = None;
    let issued = respond(decide_with_sale(&gate, &mut state, &req, 10));
    assert_eq!(issued["bits"], 4 + 2);
}

#[test]
fn a_crowd_from_one_address_is_rate_limited_with_retry_after() {
    let gate = Gate::new(config());
    let mut state = GateState::default();
    let mut clock = Clock(START + 1_000);
    let mut shopper = Shopper::new("alice", "203.0.113.5", clock.now());
    respond(decide_with_sale(
        &gate,
        &mut state,
        &shopper.request("GET", "/api/events/7", b"", clock.now()),
        10,
    ));
    // "20/s burst 40" per address: 40 at once (one spent above, however many refreshes it
    // took), then one every 50 ms.
    let mut answered = 1;
    let mut limited = None;
    for _ in 0..60 {
        match gate.decide(
            &shopper.request("GET", "/api/events/7", b"", clock.now()),
            &mut state,
        ) {
            Verdict::Refuse(r) if r.reason == Reason::RateLimited => limited = Some(r),
            Verdict::Respond(_) => answered += 1,
            other => panic!("answered from the cache or limited, not {other:?}"),
        }
    }
    assert_eq!(answered, 40);
    let refusal = limited.unwrap();
    assert_eq!(
        (refusal.status(), refusal.retry_after_secs()),
        (429, Some(1))
    );
    clock.advance(50);
    assert!(matches!(
        gate.decide(
            &shopper.request("GET", "/api/events/7", b"", clock.now()),
            &mut state
        ),
        Verdict::Respond(_)
    ));
    // Pruning forgets buckets once they have fully drained.
    clock.advance(10_000);
    state.prune(clock.now(), 10_000);
    assert!(state.limits.is_empty());
}

#[test]
fn a_failing_warehouse_trips_the_breaker_and_a_probe_closes_it() {
    let gate = Gate::new(config());
    let mut state = GateState::default();
    let mut clock = Clock(START + 1_000);
    let mut shopper = Shopper::new("alice", "203.0.113.5", clock.now());
    for _ in 0..2 {
        let call = forward(gate.decide(
            &shopper.request("GET", "/api/orders/O-1", b"", clock.now()),
            &mut state,
        ));
        let (status, _) = json(gate.complete(&mut state, &call, OriginReply::Failed, clock.now()));
        assert_eq!(status, 503);
    }
    clock.advance(1_000);
    let fast = gate.decide(
        &shopper.request("GET", "/api/orders/O-1", b"", clock.now()),
        &mut state,
    );
    let Verdict::Refuse(r) = fast else {
        panic!("breaker did not fail fast")
    };
    assert_eq!(
        (r.reason, r.retry_after_secs()),
        (Reason::Unavailable, Some(4))
    );
    clock.advance(4_000);
    let probe = forward(gate.decide(
        &shopper.request("GET", "/api/orders/O-1", b"", clock.now()),
        &mut state,
    ));
    assert_eq!(
        refused(&gate.decide(
            &shopper.request("GET", "/api/orders/O-1", b"", clock.now()),
            &mut state
        )),
        Reason::Unavailable
    );
    // A business refusal (no such order) is a healthy origin: the probe closes the breaker.
    let not_found = grpc_web::encode_response::<Order>(None, 5, "");
    assert_eq!(
        json(gate.complete(&mut state, &probe, http(&not_found), clock.now())).0,
        404
    );
    assert!(state.breaker.is_closed());
    // A garbled reply counts as a failure, not a crash.
    let call = forward(gate.decide(
        &shopper.request("GET", "/api/orders/O-1", b"", clock.now()),
        &mut state,
    ));
    let (status, body) = json(gate.complete(
        &mut state,
        &call,
        http(b"\x00\x00\x00\x00\x09abc"),
        clock.now(),
    ));
    assert_eq!((status, body["code"].as_str()), (503, Some("unavailable")));
}

#[test]
fn config_is_read_from_named_variables() {
    use flashgate_core::gate::vars;
    let env = |name: &str| -> Option<String> {
        match name {
            vars::LINK_KEYS => Some("2:bmV3LWtleS0wMTIzNDU2Nzg5,1:b2xkLWtleS0wMTIzNDU2Nzg5".into()),
            vars::USER_TOKEN_KEY => Some("shop-session-key-0123456789abcdef".into()),
            vars::ORIGIN_KEY => Some("origin-key-0123456789abcdef".into()),
            vars::ORIGIN_URL => Some("https://origin.example.com".into()),
            vars::LIMIT_IP => Some("5/s burst 10".into()),
            vars::DEMO_MODE => Some("1".into()),
            vars::BOT_DENY => Some("10.0.0.0/8, 2001:db8::/32".into()),
            _ => None,
        }
    };
    let config = GateConfig::from_lookup(env).unwrap();
    assert_eq!(config.link_keys.signing_id(), 2);
    assert_eq!(config.limits.ip, "5/s burst 10".parse().unwrap());
    assert!(config.identity.demo_mode());
    assert_eq!(config.bot.deny.len(), 2);
    let missing = GateConfig::from_lookup(|name| {
        if name == vars::ORIGIN_KEY {
            None
        } else {
            env(name)
        }
    });
    assert_eq!(
        missing.unwrap_err(),
        flashgate_core::gate::ConfigError::Missing(vars::ORIGIN_KEY)
    );
    let bad = GateConfig::from_lookup(|name| {
        if name == vars::LIMIT_USER {
            Some("lots".into())
        } else {
            env(name)
        }
    });
    assert!(matches!(
        bad,
        Err(flashgate_core::gate::ConfigError::Invalid {
            name: vars::LIMIT_USER,
            ..
        })
    ));
}

#[test]
fn guests_are_a_demo_mode_door_only() {
    let mut cfg = config();
    let mut state = GateState::default();
    let now = START;
    let mut shopper = Shopper::new("x", "203.0.113.5", now);
    let gate = Gate::new(cfg.clone());
    assert_eq!(
        refused(&gate.decide(
            &shopper.request("POST", "/api/session/guest", b"", now),
            &mut state
        )),
        Reason::NotFound
    );
    cfg.identity = shop_identity(true);
    let gate = Gate::new(cfg);
    let guest = respond(gate.decide(
        &shopper.request("POST", "/api/session/guest", b"", now),
        &mut state,
    ));
    assert!(guest["user_id"].as_str().unwrap().starts_with("guest:"));
    let token = format!("Bearer {}", guest["token"].as_str().unwrap());
    let mut req = shopper.request("GET", "/api/orders/O-1", b"", now);
    req.headers.authorization = Some(&token);
    assert!(matches!(gate.decide(&req, &mut state), Verdict::Forward(_)));
    // The same keys with demo mode off: the guest is nobody, however valid its token.
    let off = Gate::new(config());
    assert_eq!(
        refused(&off.decide(&req, &mut state)),
        Reason::Unauthenticated
    );
}

#[test]
fn user_tokens_the_policy_refuses_are_401s() {
    let mut cfg = config();
    cfg.identity.policy_mut().audience = Some("shop-api".into());
    cfg.identity.policy_mut().issuer = Some("https://shop.example".into());
    let gate = Gate::new(cfg.clone());
    let mut state = GateState::default();
    let now = START;
    // Signed with the shop's key, but minted under other rules.
    let minted = |audience: &str, issuer: &str, keys: UserKeys, ttl_ms: i64| {
        let policy = TokenPolicy {
            audience: Some(audience.into()),
            issuer: Some(issuer.into()),
            max_lifetime_s: i64::MAX,
            ..TokenPolicy::default()
        };
        Identity::new(keys, policy, false).mint("alice", now - 60_000, ttl_ms)
    };
    let single = || UserKeys::single(USER_KEY).unwrap();
    let hour = 3_600_000;
    let week = flashgate_core::identity::DEFAULT_MAX_LIFETIME_S * 1000;
    let named = UserKeys::new(vec![("k9".into(), USER_KEY.to_vec())]).unwrap();
    for (token, reason) in [
        (
            minted("shop-api", "https://shop.example", single(), hour),
            None,
        ),
        (
            minted("shop-api", "https://shop.example", single(), week),
            None,
        ),
        (
            minted("password-reset", "https://shop.example", single(), hour),
            Some(Reason::Unauthenticated),
        ),
        (
            minted("shop-api", "https://mail.example", single(), hour),
            Some(Reason::Unauthenticated),
        ),
        (
            minted("shop-api", "https://shop.example", single(), week + 1_000),
            Some(Reason::Unauthenticated),
        ),
        (
            minted("shop-api", "https://shop.example", named, hour),
            Some(Reason::Unauthenticated),
        ),
        (
            minted("shop-api", "https://shop.example", single(), 30_000),
            Some(Reason::TokenExpired),
        ),
    ] {
        let mut shopper = Shopper::new("alice", "203.0.113.9", now);
        shopper.token = format!("Bearer {token}");
        let verdict = gate.decide(
            &shopper.request("GET", "/api/orders/O-1", b"", now),
            &mut state,
        );
        match reason {
            None => assert!(matches!(verdict, Verdict::Forward(_)), "{verdict:?}"),
            Some(reason) => {
                assert_eq!(refused(&verdict), reason);
                assert_eq!(reason.status(), 401);
            }
        }
    }
}

#[test]
fn state_survives_a_round_trip_through_a_store() {
    // Runtimes without memory between requests (a Spin instance per request) store the state.
    let gate = Gate::new(config());
    let mut state = GateState::default();
    let now = START + 1_000;
    let mut alice = Shopper::new("alice", "2001:db8::5", now);
    let issued = decide_with_sale(
        &gate,
        &mut state,
        &alice.request("POST", "/api/events/7/challenge", b"", now),
        3,
    );
    assert!(matches!(issued, Verdict::Respond(_)));
    let stored = serde_json::to_string(&state).unwrap();
    let loaded: GateState = serde_json::from_str(&stored).unwrap();
    assert_eq!(loaded, state);
    assert!(loaded.limits.contains_key("rl:ip:2001:db8::/64"));
    assert_eq!(loaded.sales[&7].sale.map(|s| s.remaining), Some(3));
    assert_eq!(
        loaded.sales[&7]
            .sale
            .and_then(|s| s.currency)
            .map(|c| c.as_str().to_owned()),
        Some("EUR".to_owned())
    );
    assert_eq!(loaded.directory.ids, [7]);
    // A state stored before the directory and prices existed still loads (a kv store keeps
    // the old form across a deploy).
    let mut old: Value = serde_json::from_str(&stored).unwrap();
    old.as_object_mut().unwrap().remove("directory");
    let sale = old["sales"]["7"]["sale"].as_object_mut().unwrap();
    sale.remove("price");
    sale.remove("currency");
    let old: GateState = serde_json::from_value(old).unwrap();
    assert!(old.directory.ids.is_empty());
    assert_eq!(
        old.sales[&7].sale.map(|s| (s.price, s.currency)),
        Some((0, None))
    );
}

#[test]
fn a_platform_limiter_replaces_the_per_network_bucket() {
    let gate = Gate::new(config());
    let mut state = GateState::default();
    let now = START + 1_000;
    let mut shopper = Shopper::new("alice", "203.0.113.5", now);
    let req = shopper.request("GET", "/api/events/9", b"", now);
    // The key the adapter asks its platform's limiter with: the network, as the gate names it.
    assert_eq!(gate.network_key(&req).as_deref(), Some("rl:ip:203.0.113.5"));
    // Nothing is asked for requests refused before any limit: unknown routes, bots.
    let unknown = shopper.request("GET", "/api/nope", b"", now);
    assert_eq!(gate.network_key(&unknown), None);
    let mut bot = shopper.request("GET", "/api/events/9", b"", now);
    bot.headers.user_agent = Some("python-requests/2.32");
    bot.headers.accept_language = None;
    assert_eq!(gate.network_key(&bot), None);
    // No address: the one network every address-less request shares.
    let mut nowhere = shopper.request("GET", "/api/events/9", b"", now);
    nowhere.client_ip = None;
    assert_eq!(gate.network_key(&nowhere).as_deref(), Some("rl:ip:unknown"));

    let mut refused_by_platform = shopper.request("GET", "/api/events/9", b"", now);
    refused_by_platform.network_limit = NetworkLimit::Exceeded;
    let Verdict::Refuse(r) = gate.decide(&refused_by_platform, &mut state) else {
        panic!("the platform's refusal was ignored")
    };
    assert_eq!(
        (r.reason, r.retry_after_secs()),
        (Reason::RateLimited, Some(10))
    );
    // Allowed by the platform: the gate keeps no bucket of its own for the network.
    for _ in 0..60 {
        let mut req = shopper.request("GET", "/api/events/7", b"", now);
        req.network_limit = NetworkLimit::Allowed;
        assert!(matches!(
            decide_with_sale(&gate, &mut state, &req, 10),
            Verdict::Respond(_)
        ));
    }
    assert!(!state.limits.contains_key("rl:ip:203.0.113.5"));
}

#[test]
fn a_forgotten_sold_out_sale_is_relearned_without_a_buy() {
    let gate = Gate::new(config());
    let mut state = GateState::default();
    let now = START + 1_000;
    let mut alice = Shopper::new("alice", "203.0.113.5", now);
    let issued = respond(decide_with_sale(
        &gate,
        &mut state,
        &alice.request("POST", "/api/events/7/challenge", b"", now),
        1,
    ));
    let challenge = issued["challenge"].as_str().unwrap();
    let nonce = pow::solve(
        challenge,
        issued["bits"].as_u64().unwrap() as u8,
        0,
        1 << 20,
    )
    .unwrap();
    let answer = serde_json::json!({ "challenge": challenge, "nonce": nonce }).to_string();
    let minted = respond(gate.decide(
        &alice.request("POST", "/api/events/7/link", answer.as_bytes(), now),
        &mut state,
    ));
    let path = minted["path"].as_str().unwrap().to_owned();
    // The isolate forgets its sale views (housekeeping after `sale_memory_ms`).
    let later = now + gate.config().sale_memory_ms;
    gate.housekeep(&mut state, later);
    assert!(state.sales.is_empty());
    // A buy with no view fetches it first (through the directory, stale by now); the view says
    // sold out; no Buy is sent.
    let mut warehouse = Warehouse::selling(0);
    let verdict = warehouse.decide(&gate, &mut state, &alice.request("POST", &path, b"", later));
    refused_as(&verdict, 410, "sold_out");
    assert_eq!(warehouse.reads, [LIST_EVENTS, GET_EVENT]);
}

/// The adapters' loop, as the core runs it for them: a request with nothing cached asks the
/// origin for the directory, then for the sale, deciding again after each; a third refresh
/// request for the same request (a broken promise) is answered 503, never looped on.
#[test]
fn an_exchange_refreshes_the_directory_and_the_sale_then_decides() {
    use flashgate_core::gate::{Exchange, Next};
    let gate = Gate::new(config());
    let clock = Clock(START - 1_000);
    let mut alice = Shopper::new("alice", "203.0.113.9", clock.now());
    let list = ok(&EventList {
        ids: vec![7],
        server_time_ms: clock.now(),
    });
    let sale = ok(&sale_state(10));
    let send = |next: Next, path: &str| match next {
        Next::Send(call) if call.path == path => call,
        other => panic!("expected a call to {path}, got {other:?}"),
    };

    let mut state = GateState::default();
    let req = alice.request("GET", "/api/events/7", b"", clock.now());
    let mut exchange = Exchange::default();
    let call = send(exchange.start(&gate, &req, &mut state), LIST_EVENTS);
    let next = exchange.reply(&gate, &req, &mut state, &call, http(&list), clock.now());
    let call = send(next, GET_EVENT);
    let Next::Respond(response) =
        exchange.reply(&gate, &req, &mut state, &call, http(&sale), clock.now())
    else {
        panic!("the sale route answers with the view");
    };
    assert_eq!(response.status, 200);
    let headers = response.headers();
    assert!(headers.contains(&("cache-control", "public, max-age=1".to_owned())));
    assert!(headers.contains(&("content-type", "application/json; charset=utf-8".to_owned())));

    // A challenge with nothing cached: ListEvents, Retry, GetEvent (answer: false), Retry, then
    // decided from the cached view.
    let mut state = GateState::default();
    let req = alice.request("POST", "/api/events/7/challenge", b"", clock.now());
    let mut exchange = Exchange::default();
    let call = send(exchange.start(&gate, &req, &mut state), LIST_EVENTS);
    let next = exchange.reply(&gate, &req, &mut state, &call, http(&list), clock.now());
    let call = send(next, GET_EVENT);
    let next = exchange.reply(&gate, &req, &mut state, &call, http(&sale), clock.now());
    let Next::Respond(issued) = next else {
        panic!("decided again from the cached view: {next:?}")
    };
    assert_eq!(issued.status, 200, "{}", issued.body);

    // Were the gate to ask for a fourth refresh (the directory, the sale and a waiting room's
    // line are the three it may need), the exchange answers 503 instead of looping.
    let mut state = GateState::default();
    let mut exchange = Exchange::default();
    let listing = send(exchange.start(&gate, &req, &mut state), LIST_EVENTS);
    for _ in 0..3 {
        let next = exchange.reply(&gate, &req, &mut state, &listing, http(&list), clock.now());
        send(next, GET_EVENT);
        // (As if each read had failed: the next decision may read again.)
        state.sale_reads.clear();
    }
    let again = exchange.reply(&gate, &req, &mut state, &listing, http(&list), clock.now());
    let Next::Respond(refused) = again else {
        panic!("a fourth retry is not decided again: {again:?}")
    };
    assert_eq!(refused.status, 503);
    assert!(refused
        .headers()
        .iter()
        .any(|(name, _)| *name == "retry-after"));
}

// The scalper's holes, one rule each: the refusal's status and code, and no forward.

#[test]
fn a_challenge_fetched_before_the_start_expires_ttl_after_issue() {
    let gate = Gate::new(config());
    let ttl = gate.config().challenge_ttl_ms;
    assert_eq!(ttl, 60_000, "the default lifetime");
    let mut state = GateState::default();
    let mut clock = Clock(START - 600_000);
    let mut alice = Shopper::new("alice", "203.0.113.5", clock.now());
    // Ten minutes early the page may still have a challenge (to solve during the countdown)...
    let req = alice.request("POST", "/api/events/7/challenge", b"", clock.now());
    let issued = respond(decide_with_sale(&gate, &mut state, &req, 10));
    assert_eq!(issued["expires_ms"].as_i64(), Some(clock.now() + ttl));
    assert_eq!(issued["starts_ms"].as_i64(), Some(START));
    let answer = solve(&issued);
    // ...but not one that lasts until the start: at the start it has long expired.
    clock.advance(600_000);
    respond(decide_with_sale(
        &gate,
        &mut state,
        &alice.request("GET", "/api/events/7", b"", clock.now()),
        10,
    ));
    let late = gate.decide(
        &alice.request("POST", "/api/events/7/link", answer.as_bytes(), clock.now()),
        &mut state,
    );
    refused_as(&late, 410, "challenge_expired");
    // One fetched within its lifetime of the start is spent at the start.
    let mut state = GateState::default();
    let early = START - ttl / 2;
    let mut bob = Shopper::new("bob", "203.0.113.6", early);
    let solved = solved_challenge(&gate, &mut state, &mut bob, early);
    mint_link(&gate, &mut state, &mut bob, &solved, START);
}

/// The path of a link minted for `answer` to sale 7 at `now` (the sale view already cached).
fn mint_link(
    gate: &Gate,
    state: &mut GateState,
    who: &mut Shopper,
    answer: &str,
    now: i64,
) -> String {
    let req = who.request("POST", "/api/events/7/link", answer.as_bytes(), now);
    let minted = respond(decide_with_sale(gate, state, &req, 10));
    minted["path"].as_str().unwrap().to_owned()
}

/// The request id of the buy forwarded for `path` with `body` at `now`.
fn buy_id(
    gate: &Gate,
    state: &mut GateState,
    who: &mut Shopper,
    path: &str,
    body: &[u8],
    now: i64,
) -> String {
    let req = who.request("POST", path, body, now);
    request_id(&forward(decide_with_sale(gate, state, &req, 10)))
}

/// A solved challenge for sale 7 at `now`.
fn solved_challenge(gate: &Gate, state: &mut GateState, who: &mut Shopper, now: i64) -> String {
    let req = who.request("POST", "/api/events/7/challenge", b"", now);
    solve(&respond(decide_with_sale(gate, state, &req, 10)))
}

#[test]
fn two_links_from_one_answer_are_one_purchase() {
    let gate = Gate::new(config());
    let mut state = GateState::default();
    let now = START + 1_000;
    let mut alice = Shopper::new("alice", "203.0.113.5", now);
    let (g, s, a) = (&gate, &mut state, &mut alice);
    let solved = solved_challenge(g, s, a, now);
    let first = mint_link(g, s, a, &solved, now);
    let second = mint_link(g, s, a, &solved, now + 2_000);
    assert_ne!(first, second, "two links (their expiry differs)...");
    let one = buy_id(g, s, a, &first, br#"{"qty":1}"#, now + 2_000);
    assert_eq!(
        one,
        buy_id(g, s, a, &second, br#"{"qty":1}"#, now + 2_000),
        "...but one purchase"
    );
    assert_eq!(
        one,
        buy_id(g, s, a, &second, br#"{"qty":2}"#, now + 2_000),
        "whatever the quantity"
    );
    // Another challenge, solved again: another purchase.
    let again = solved_challenge(g, s, a, now + 2_000);
    let third = mint_link(g, s, a, &again, now + 2_000);
    assert_ne!(buy_id(g, s, a, &third, b"", now + 2_000), one);
}

#[test]
fn another_quantity_through_one_answer_is_refused_as_link_used() {
    let gate = Gate::new(config());
    let mut state = GateState::default();
    let now = START + 1_000;
    let mut alice = Shopper::new("alice", "203.0.113.5", now);
    let req = alice.request("POST", "/api/events/7/challenge", b"", now);
    let answer = solve(&respond(decide_with_sale(&gate, &mut state, &req, 10)));
    let req = alice.request("POST", "/api/events/7/link", answer.as_bytes(), now);
    let path = respond(gate.decide(&req, &mut state))["path"]
        .as_str()
        .unwrap()
        .to_owned();
    let call = forward(gate.decide(
        &alice.request("POST", &path, br#"{"qty":2}"#, now),
        &mut state,
    ));
    // The warehouse already holds this request id's order, for one unit.
    let exists = grpc_web::encode_response::<BuyReply>(None, 6, "request id used for qty 1");
    let (status, body) = json(gate.complete(&mut state, &call, http(&exists), now));
    assert_eq!((status, body["code"].as_str()), (409, Some("link_used")));
    assert!(
        state.breaker.is_closed(),
        "a business answer, not a failure"
    );
    // ALREADY_EXISTS to anything but a buy stays a conflict.
    let call = forward(gate.decide(
        &alice.request("POST", "/api/orders/7-1/cancel", b"", now),
        &mut state,
    ));
    let exists = grpc_web::encode_response::<Order>(None, 6, "");
    let (status, body) = json(gate.complete(&mut state, &call, http(&exists), now));
    assert_eq!((status, body["code"].as_str()), (409, Some("conflict")));
}

#[test]
fn an_unknown_sale_id_is_refused_without_an_origin_call() {
    let gate = Gate::new(config());
    let mut state = GateState::default();
    let now = START + 1_000;
    let mut alice = Shopper::new("alice", "203.0.113.5", now);
    // The directory, fetched once with sale 7's view.
    let mut warehouse = Warehouse::selling(10);
    let req = alice.request("GET", "/api/events/7", b"", now);
    respond(warehouse.decide(&gate, &mut state, &req));
    assert_eq!(warehouse.reads, [LIST_EVENTS, GET_EVENT]);
    // No route asks the origin about a sale the fresh directory does not list.
    for (method, path) in [
        ("GET", "/api/events/8"),
        ("POST", "/api/events/8/challenge"),
        ("POST", "/api/events/424242/link"),
    ] {
        let body = br#"{"challenge":"x","nonce":1}"#;
        let verdict = gate.decide(&alice.request(method, path, body, now + 10), &mut state);
        refused_as(&verdict, 404, "unknown");
    }
    // Nor does a buy through a genuine link for a sale that is not listed (an old link's).
    let ring = KeyRing::single(b"link-key-0123456789abcdef").unwrap();
    let claims = flashgate_core::link::LinkClaims {
        event_id: 8,
        sku_id: 42,
        user_id: "alice".into(),
        max_qty: 1,
        not_before_ms: START,
        expires_ms: now + 60_000,
        nonce: [1; 16],
    };
    let token = flashgate_core::link::mint(&ring, &claims, now).unwrap();
    let verdict = gate.decide(
        &alice.request("POST", &format!("/api/buy/{token}"), b"", now),
        &mut state,
    );
    refused_as(&verdict, 404, "unknown");
    assert_eq!(
        state.sales.len(),
        1,
        "nothing learnt from the origin about 8"
    );
}

#[test]
fn a_flood_of_made_up_sale_ids_costs_one_directory_call_per_interval() {
    let gate = Gate::new(config());
    let every = gate.config().directory_refresh_ms;
    assert_eq!(every, 1_000, "the default interval");
    let mut state = GateState::default();
    let mut anon = Shopper::new("x", "203.0.113.5", START);
    let mut warehouse = Warehouse::selling(10);
    // 5,000 requests over five seconds, each for another id, from as many networks.
    let mut refused_at_edge = 0;
    for i in 0..5_000_i64 {
        let now = START + i;
        let path = format!("/api/events/{}", 1_000 + i);
        let mut req = anon.request("GET", &path, b"", now);
        let ip = std::net::Ipv4Addr::from(0xC633_0000 + i as u32);
        req.client_ip = Some(ip.into());
        match warehouse.decide(&gate, &mut state, &req) {
            Verdict::Refuse(r) => {
                assert!(
                    matches!(r.reason, Reason::UnknownResource | Reason::Unavailable),
                    "{r:?}"
                );
                refused_at_edge += 1;
            }
            other => panic!("a made-up id reached further than the directory: {other:?}"),
        }
    }
    assert_eq!(refused_at_edge, 5_000);
    assert!(warehouse.reads.iter().all(|read| *read == LIST_EVENTS));
    assert_eq!(warehouse.reads.len(), 5, "{:?}", warehouse.reads);
}

#[test]
fn a_stale_sale_view_is_refreshed_once_while_the_crowd_is_answered_from_it() {
    let gate = Gate::new(config());
    let ttl = gate.config().sale_ttl_ms;
    let in_flight = ttl.max(gate.config().origin_timeout_ms);
    let mut state = GateState::default();
    let now = START - 5_000;
    let mut anon = Shopper::new("x", "203.0.113.8", now);
    let mut warehouse = Warehouse::selling(10);
    respond(warehouse.decide(
        &gate,
        &mut state,
        &anon.request("GET", "/api/events/7", b"", now),
    ));
    let mut page = |state: &mut GateState, at: i64| {
        gate.decide(&anon.request("GET", "/api/events/7", b"", at), state)
    };
    // Stale: the first request sends the refresh...
    let stale = now + ttl;
    let refresh = forward(page(&mut state, stale));
    assert_eq!(refresh.path, GET_EVENT);
    // ...and every request while it is out is answered from the last view, with no call.
    for at in [stale + 1, stale + 10, stale + in_flight - 1] {
        let Verdict::Respond(cached) = page(&mut state, at) else {
            panic!("a second refresh sent at {at} while the first is out")
        };
        assert_eq!(cached.status, 200);
    }
    // A refresh that never answers is sent again once it has timed out.
    let again = stale + in_flight;
    assert_eq!(forward(page(&mut state, again)).path, GET_EVENT);
    // Answered: fresh again, no call.
    let fresh = ok(&sale_state(3));
    let answered = gate.complete(&mut state, &refresh, http(&fresh), again + 5);
    assert_eq!(json(answered).1["remaining"], 3);
    assert!(matches!(page(&mut state, again + 6), Verdict::Respond(_)));
}

/// A sale nobody has read yet, and a crowd arriving at once: one read goes out, and while it is
/// out the others are asked to come back in a second instead of each sending its own (a cold
/// cache's stampede). A read that fails lets the next request read again.
#[test]
fn the_first_read_of_a_sale_is_sent_once_while_the_crowd_waits() {
    let gate = Gate::new(config());
    let in_flight = gate
        .config()
        .sale_ttl_ms
        .max(gate.config().origin_timeout_ms);
    let mut state = GateState::default();
    let now = START + 1_000;
    let mut alice = Shopper::new("alice", "203.0.113.5", now);
    let listing =
        forward(gate.decide(&alice.request("GET", "/api/events/7", b"", now), &mut state));
    let list = ok(&EventList {
        ids: vec![7],
        server_time_ms: now,
    });
    gate.complete(&mut state, &listing, http(&list), now + 1);
    let mut page = |state: &mut GateState, at: i64| {
        gate.decide(&alice.request("GET", "/api/events/7", b"", at), state)
    };
    let read = forward(page(&mut state, now + 2));
    assert_eq!(read.path, GET_EVENT);
    // (Within the directory's freshness: the list vouches for 7 all along.)
    assert!(in_flight > gate.config().directory_refresh_ms);
    for at in [now + 3, now + 500, now + 900] {
        let waiting = page(&mut state, at);
        let refusal = refused_as(&waiting, 503, "unavailable");
        assert_eq!(refusal.retry_after_secs(), Some(1), "at {at}");
    }
    // Failed: the next request reads again.
    gate.complete(&mut state, &read, OriginReply::Failed, now + 600);
    let again = forward(page(&mut state, now + 601));
    assert_eq!(again.path, GET_EVENT);
    // Answered: the view answers everyone.
    let fresh = ok(&sale_state(3));
    let answered = gate.complete(&mut state, &again, http(&fresh), now + 700);
    assert_eq!(json(answered).1["remaining"], 3);
    assert!(matches!(page(&mut state, now + 701), Verdict::Respond(_)));
}

#[test]
fn the_directory_is_refreshed_once_while_its_answer_is_out() {
    let gate = Gate::new(config());
    let mut state = GateState::default();
    let now = START + 1_000;
    let mut alice = Shopper::new("alice", "203.0.113.5", now);
    // Nothing known: the first request asks for the directory...
    let listing =
        forward(gate.decide(&alice.request("GET", "/api/events/7", b"", now), &mut state));
    assert_eq!(listing.path, LIST_EVENTS);
    // ...and while its answer is out, nothing else is asked: the others wait a moment.
    let waiting = gate.decide(
        &alice.request("GET", "/api/events/7", b"", now + 5),
        &mut state,
    );
    let refusal = refused_as(&waiting, 503, "unavailable");
    assert_eq!(refusal.retry_after_secs(), Some(1));
    // Answered: sale 7 is asked for, 9 is not.
    let list = ok(&EventList {
        ids: vec![7],
        server_time_ms: now,
    });
    assert_eq!(
        gate.complete(&mut state, &listing, http(&list), now + 20),
        Completion::Retry
    );
    let view = forward(gate.decide(
        &alice.request("GET", "/api/events/7", b"", now + 30),
        &mut state,
    ));
    assert_eq!(view.path, GET_EVENT);
    // (That first read is never answered: past its time, it may be sent again.)
    let in_flight = gate
        .config()
        .sale_ttl_ms
        .max(gate.config().origin_timeout_ms);
    let later = now + 30 + in_flight;
    let verdict = gate.decide(
        &alice.request("GET", "/api/events/9", b"", later),
        &mut state,
    );
    assert_eq!(forward(verdict).path, LIST_EVENTS, "stale: refreshed");
    // While that refresh is out, the last list still vouches for 7; 9 waits for the new one.
    let listed = gate.decide(
        &alice.request("GET", "/api/events/7", b"", later + 1),
        &mut state,
    );
    assert_eq!(forward(listed).path, GET_EVENT);
    let unlisted = gate.decide(
        &alice.request("GET", "/api/events/9", b"", later + 1),
        &mut state,
    );
    refused_as(&unlisted, 503, "unavailable");
}

#[test]
fn an_open_breaker_stops_the_directory_refresh_too() {
    let gate = Gate::new(config());
    let mut state = GateState::default();
    let now = START + 1_000;
    let mut alice = Shopper::new("alice", "203.0.113.5", now);
    // The directory call fails twice (no answer, then the warehouse shedding): the breaker opens.
    for (i, reply) in [
        OriginReply::Failed,
        http(&grpc_web::encode_response::<EventList>(None, 8, "shed")),
    ]
    .into_iter()
    .enumerate()
    {
        let at = now + i as i64 * 1_000;
        let listing =
            forward(gate.decide(&alice.request("GET", "/api/events/7", b"", at), &mut state));
        assert_eq!(listing.path, LIST_EVENTS);
        let (status, _) = json(gate.complete(&mut state, &listing, reply, at));
        assert!([503, 429].contains(&status), "{status}");
    }
    // Open: no call at all, not even for the directory, and certainly no GetEvent.
    let verdict = gate.decide(
        &alice.request("GET", "/api/events/7", b"", now + 2_500),
        &mut state,
    );
    refused_as(&verdict, 503, "unavailable");
    assert!(state.sales.is_empty());
}

#[test]
fn the_pay_route_is_gone_outside_demo_mode() {
    let now = START + 1_000;
    let mut alice = Shopper::new("alice", "203.0.113.5", now);
    // The buyer's own word never pays, in any mode.
    for cfg in [config(), demo_config()] {
        let gate = Gate::new(cfg);
        let mut state = GateState::default();
        let verdict = gate.decide(
            &alice.request("POST", "/api/orders/O-1/pay", b"", now),
            &mut state,
        );
        refused_as(&verdict, 404, "not_found");
        assert_eq!(state, GateState::default(), "refused before any limit");
    }
    // Outside demo mode the demo's route is no route either, whatever the method or shape.
    let gate = Gate::new(config());
    let mut state = GateState::default();
    for (method, path) in [
        ("POST", "/api/demo/orders/O-1/pay"),
        ("GET", "/api/demo/orders/O-1/pay"),
        ("POST", "/api/demo/orders/a b/pay"),
        ("POST", "/api/demo/anything"),
    ] {
        assert!(path.starts_with(DEMO_PREFIX));
        let verdict = gate.decide(&alice.request(method, path, b"", now), &mut state);
        refused_as(&verdict, 404, "not_found");
        assert_eq!(
            gate.network_key(&alice.request(method, path, b"", now)),
            None
        );
    }
    assert_eq!(state, GateState::default());
}

#[test]
fn demo_pay_forwards_demo_pay_order() {
    let gate = Gate::new(demo_config());
    let mut state = GateState::default();
    let now = START + 1_000;
    let mut alice = Shopper::new("alice", "203.0.113.5", now);
    let call = forward(gate.decide(
        &alice.request("POST", "/api/demo/orders/7-1/pay", b"", now),
        &mut state,
    ));
    assert_eq!(call.path, "/flashsale.Seckill/DemoPayOrder");
    // The user's own order only: the call names the token's user, never one from the request.
    assert_eq!(
        OrderReq::decode(&call.body[5..]).unwrap(),
        OrderReq {
            order_no: "7-1".into(),
            user_id: "alice".into()
        }
    );
    let paid = Order {
        order_no: "7-1".into(),
        event_id: 7,
        sku_id: 42,
        user_id: "alice".into(),
        qty: 1,
        status: OrderStatus::Paid as i32,
        amount: 1_999,
        currency: "EUR".into(),
        payment_id: "demo-7-1".into(),
        paid_ms: now,
        ..Default::default()
    };
    let (status, body) = json(gate.complete(&mut state, &call, http(&ok(&paid)), now));
    assert_eq!((status, body["status"].as_str()), (200, Some("paid")));
    assert_eq!(
        (body["amount"].as_i64(), body["paid_ms"].as_i64()),
        (Some(1_999), Some(now))
    );
    // A warehouse without --demo-payments refuses it: an unknown order to the client.
    let call = forward(gate.decide(
        &alice.request("POST", "/api/demo/orders/7-1/pay", b"", now),
        &mut state,
    ));
    let denied = grpc_web::encode_response::<Order>(None, 7, "demo payments are off");
    let (status, body) = json(gate.complete(&mut state, &call, http(&denied), now));
    assert_eq!((status, body["code"].as_str()), (404, Some("unknown")));
    // Without a user token it is not forwarded at all.
    let mut req = alice.request("POST", "/api/demo/orders/7-1/pay", b"", now);
    req.headers.authorization = None;
    refused_as(&gate.decide(&req, &mut state), 401, "unauthenticated");
}

#[test]
fn a_request_without_a_client_address_is_limited_with_the_unknown_network() {
    let gate = Gate::new(config());
    let mut state = GateState::default();
    let now = START + 1_000;
    let mut first = Shopper::new("u-0", "203.0.113.5", now);
    respond(decide_with_sale(
        &gate,
        &mut state,
        &first.request("GET", "/api/events/7", b"", now),
        10,
    ));
    // Many users, no address: one network's allowance ("20/s burst 40") between them all.
    let mut answered = 0;
    let mut limited = None;
    for i in 0..60 {
        let mut user = Shopper::new(&format!("u-{i}"), "203.0.113.5", now);
        let mut req = user.request("GET", "/api/events/7", b"", now);
        req.client_ip = None;
        match gate.decide(&req, &mut state) {
            Verdict::Respond(_) => answered += 1,
            verdict => limited = Some(verdict),
        }
    }
    assert_eq!(answered, 40);
    let refusal = refused_as(&limited.unwrap(), 429, "rate_limited");
    assert_eq!(refusal.retry_after_secs(), Some(1));
    assert!(state.limits.contains_key("rl:ip:unknown"));
    // A request with an address is its own network's, untouched by theirs.
    assert!(matches!(
        gate.decide(&first.request("GET", "/api/events/7", b"", now), &mut state),
        Verdict::Respond(_)
    ));
}

/// The edge's settings: valid keys and an `https://` origin, with `overrides` on top.
fn settings<'a>(
    overrides: &'a [(&'static str, &'static str)],
) -> impl Fn(&str) -> Option<String> + 'a {
    use flashgate_core::gate::vars;
    move |name: &str| {
        let base = match name {
            vars::LINK_KEYS => Some("1:b2xkLWtleS0wMTIzNDU2Nzg5"),
            vars::USER_TOKEN_KEY => Some("shop-session-key-0123456789abcdef"),
            vars::ORIGIN_KEY => Some("origin-key-0123456789abcdef"),
            vars::ORIGIN_URL => Some("https://origin.example.com"),
            _ => None,
        };
        overrides
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
            .or(base)
            .map(str::to_owned)
    }
}

#[test]
fn a_plain_http_origin_is_refused_unless_loopback() {
    use flashgate_core::gate::{vars, ConfigError};
    let plain = [(vars::ORIGIN_URL, "http://origin.example.com:50051")];
    let err = GateConfig::from_lookup(settings(&plain)).unwrap_err();
    assert!(
        matches!(
            err,
            ConfigError::Invalid {
                name: vars::ORIGIN_URL,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().starts_with("FLASHGATE_ORIGIN_URL"), "{err}");
    for ok in [
        "https://origin.example.com",
        "http://127.0.0.1:50051",
        "http://localhost:50051",
        "http://[::1]:50051",
    ] {
        let url = [(vars::ORIGIN_URL, ok)];
        assert!(GateConfig::from_lookup(settings(&url)).is_ok(), "{ok}");
    }
}

#[test]
fn a_zero_duration_setting_is_refused() {
    use flashgate_core::gate::{vars, ConfigError};
    for name in [vars::CHALLENGE_TTL_MS, vars::SALE_DIRECTORY_REFRESH_MS] {
        let zero = [(name, "0")];
        let err = GateConfig::from_lookup(settings(&zero)).unwrap_err();
        assert!(
            matches!(&err, ConfigError::Invalid { name: n, .. } if *n == name),
            "{err}"
        );
    }
}

proptest! {
    /// Whenever a challenge is asked for, before the start or after, it expires exactly
    /// `challenge_ttl` later: never at `start + ttl` for an early one.
    #[test]
    fn a_challenge_never_outlives_its_ttl_from_issue(offset in -86_400_000i64..500_000) {
        let gate = Gate::new(config());
        let mut state = GateState::default();
        let now = START + offset;
        let mut alice = Shopper::new("alice", "203.0.113.5", now);
        let req = alice.request("POST", "/api/events/7/challenge", b"", now);
        let issued = respond(decide_with_sale(&gate, &mut state, &req, 10));
        prop_assert_eq!(
            issued["expires_ms"].as_i64(),
            Some(now + gate.config().challenge_ttl_ms)
        );
    }

    /// Any number of links minted at any times from one answer buy with one request id, and
    /// answers to different challenges with different ones.
    #[test]
    fn every_link_of_one_answer_is_one_purchase(
        gaps in proptest::collection::vec(0i64..5_000, 1..6),
        qtys in proptest::collection::vec(1u32..=2, 1..6),
    ) {
        let gate = Gate::new(config());
        let mut state = GateState::default();
        let mut now = START + 1_000;
        let mut alice = Shopper::new("alice", "203.0.113.5", now);
        let (g, s, a) = (&gate, &mut state, &mut alice);
        let solved = solved_challenge(g, s, a, now);
        let mut ids = std::collections::BTreeSet::new();
        for (gap, qty) in gaps.iter().zip(qtys.iter().cycle()) {
            now += gap;
            let path = mint_link(g, s, a, &solved, now);
            ids.insert(buy_id(g, s, a, &path, format!(r#"{{"qty":{qty}}}"#).as_bytes(), now));
        }
        prop_assert_eq!(ids.len(), 1);
        let other = solved_challenge(g, s, a, now);
        let path = mint_link(g, s, a, &other, now);
        let fresh = buy_id(g, s, a, &path, b"", now);
        prop_assert!(!ids.contains(&fresh));
    }

    /// However requests for made-up sale ids arrive, the origin hears at most one directory
    /// call per refresh interval, and never a GetEvent.
    #[test]
    fn made_up_sale_ids_cost_at_most_one_call_per_interval(
        gaps in proptest::collection::vec(0i64..400, 1..400),
        ids in proptest::collection::vec(8i64..1_000_000, 1..400),
    ) {
        let gate = Gate::new(config());
        let every = gate.config().directory_refresh_ms;
        let mut state = GateState::default();
        let mut now = START;
        let mut anon = Shopper::new("x", "203.0.113.5", now);
        let mut warehouse = Warehouse::selling(10);
        for (gap, id) in gaps.iter().zip(ids.iter().cycle()) {
            now += gap;
            let path = format!("/api/events/{id}");
            let mut req = anon.request("GET", &path, b"", now);
            req.network_limit = NetworkLimit::Allowed;
            let verdict = warehouse.decide(&gate, &mut state, &req);
            prop_assert!(matches!(verdict, Verdict::Refuse(_)), "{:?}", verdict);
        }
        prop_assert!(warehouse.reads.iter().all(|read| *read == LIST_EVENTS));
        let span = now - START;
        prop_assert!(warehouse.reads.len() as i64 <= span / every + 1);
    }
}

const BUY_MANY: &str = "/flashsale.Seckill/BuyMany";

/// A shopper with a link to sale 7, minted at `now`, and the buy to send through it.
fn linked(gate: &Gate, state: &mut GateState, user: &str, now: i64) -> (Shopper, String) {
    let mut who = Shopper::new(user, "203.0.113.5", now);
    let solved = solved_challenge(gate, state, &mut who, now);
    let path = mint_link(gate, state, &mut who, &solved, now);
    (who, path)
}

/// A gathered buy's start: the exchange, and what it does first.
fn start_buy(
    gate: &Gate,
    state: &mut GateState,
    who: &mut Shopper,
    path: &str,
    now: i64,
) -> (Exchange, Next) {
    let mut exchange = Exchange::default();
    let req = who.request("POST", path, b"", now);
    let next = exchange.start(gate, &req, state);
    (exchange, next)
}

/// The buys of a `BuyMany`, in its order.
fn batch_of(call: &Forward) -> Vec<BuyReq> {
    assert_eq!(call.path, BUY_MANY);
    BuyManyReq::decode(&call.body[5..]).unwrap().buys
}

fn queued(order_no: &str, remaining: i32) -> BuyResult {
    BuyResult {
        result: Some(buy_result::Result::Reply(BuyReply {
            outcome: BuyOutcome::Queued.into(),
            order_no: order_no.into(),
            remaining,
        })),
    }
}

fn buy_answer(next: Next) -> (u16, Value) {
    match next {
        Next::Respond(r) => (r.status, serde_json::from_str(&r.body).unwrap()),
        other => panic!("expected an answer, got {other:?}"),
    }
}

#[test]
fn buys_that_come_while_one_is_out_go_together_and_each_gets_its_own_answer() {
    let gate = Gate::new(config()).gathering_buys();
    let mut state = GateState::default();
    let now = START + 1_000;
    let (mut ann, ann_path) = linked(&gate, &mut state, "ann", now);
    let mut buyers: Vec<(Shopper, String)> = ["bob", "cat"]
        .iter()
        .map(|u| linked(&gate, &mut state, u, now))
        .collect();

    // A lone buy leaves at once, as a batch of one.
    let (mut ann_x, next) = start_buy(&gate, &mut state, &mut ann, &ann_path, now);
    assert_eq!(
        next,
        Next::Wait { until_ms: now },
        "no timer before it leaves"
    );
    let Next::Send(first) = ann_x.check(&gate, &mut state, now) else {
        panic!("nothing is out: it is sent");
    };
    assert_eq!(
        batch_of(&first)
            .iter()
            .map(|b| &b.user_id[..])
            .collect::<Vec<_>>(),
        ["ann"]
    );

    // Two more while it is out: they wait for it, a tick at a time, and send nothing.
    let mut waiting = Vec::new();
    for (who, path) in &mut buyers {
        let (mut x, next) = start_buy(&gate, &mut state, who, path, now + 2);
        assert_eq!(next, Next::Wait { until_ms: now + 2 });
        let next = x.check(&gate, &mut state, now + 2);
        assert_eq!(
            next,
            Next::Wait {
                until_ms: now + 2 + BUY_TICK_MS
            }
        );
        waiting.push(x);
    }

    // The reply answers ann with her order.
    let reply = ok(&BuyManyReply {
        results: vec![queued("7-ann", 9)],
    });
    let again = ann.request("POST", &ann_path, b"", now + 5);
    let next = ann_x.reply(&gate, &again, &mut state, &first, http(&reply), now + 5);
    let (status, body) = buy_answer(next);
    assert_eq!(
        (status, body["order_no"].as_str()),
        (202, Some("7-ann")),
        "{body}"
    );

    // The next to look sends both the others', in the order they came.
    let Next::Send(second) = waiting[0].check(&gate, &mut state, now + 2 + BUY_TICK_MS) else {
        panic!("the sale's call is back: the next batch leaves");
    };
    let sent = batch_of(&second);
    assert_eq!(
        sent.iter().map(|b| &b.user_id[..]).collect::<Vec<_>>(),
        ["bob", "cat"]
    );
    assert!(sent.iter().all(|b| b.event_id == 7 && b.qty == 1));
    assert_ne!(
        sent[0].request_id, sent[1].request_id,
        "each its own link's"
    );
    assert_eq!(
        waiting[1].check(&gate, &mut state, now + 2 + BUY_TICK_MS),
        Next::Wait {
            until_ms: now + 2 + 2 * BUY_TICK_MS
        },
        "cat's buy is in the batch out"
    );

    // bob won; cat's request id had bought another quantity already: refused as the single
    // buy would be, and only cat's.
    let reply = ok(&BuyManyReply {
        results: vec![
            queued("7-bob", 8),
            BuyResult {
                result: Some(buy_result::Result::Refused(BuyRefused {
                    code: 6,
                    message: "request id used for qty 2".into(),
                })),
            },
        ],
    });
    let (bob, bob_path) = &mut buyers[0];
    let again = bob.request("POST", bob_path, b"", now + 40);
    let next = waiting[0].reply(&gate, &again, &mut state, &second, http(&reply), now + 40);
    let (status, body) = buy_answer(next);
    assert_eq!(
        (status, body["order_no"].as_str()),
        (202, Some("7-bob")),
        "{body}"
    );
    let (status, body) = buy_answer(waiting[1].check(&gate, &mut state, now + 42));
    assert_eq!((status, body["code"].as_str()), (409, Some("link_used")));
    assert!(state.breaker.is_closed(), "business answers, not failures");
}

#[test]
fn a_batch_of_buys_whose_reply_is_lost_is_sent_again_with_the_same_requests() {
    let gate = Gate::new(config()).gathering_buys();
    let lost_after = config().origin_timeout_ms + BUY_TICK_MS;
    let mut state = GateState::default();
    let now = START + 1_000;
    let (mut ann, path) = linked(&gate, &mut state, "ann", now);
    let (mut x, _) = start_buy(&gate, &mut state, &mut ann, &path, now);
    let Next::Send(first) = x.check(&gate, &mut state, now) else {
        panic!("sent at once");
    };
    // Its reply never comes (the adapter's send under `waitUntil` died with it): ann's buy
    // waits, then goes again, the same request, so the warehouse answers it with one order.
    assert_eq!(
        x.check(&gate, &mut state, now + lost_after),
        Next::Wait {
            until_ms: now + lost_after + BUY_TICK_MS
        }
    );
    let Next::Send(again) = x.check(&gate, &mut state, now + lost_after + 1) else {
        panic!("lost: gathered again and sent");
    };
    assert_eq!(batch_of(&again), batch_of(&first));

    // A reply that does not answer every buy counts as none: 503, and a failure for the
    // breaker (two of them open it, in this configuration).
    let short = ok(&BuyManyReply { results: vec![] });
    let req = ann.request("POST", &path, b"", now + lost_after + 5);
    let next = x.reply(
        &gate,
        &req,
        &mut state,
        &again,
        http(&short),
        now + lost_after + 5,
    );
    let (status, body) = buy_answer(next);
    assert_eq!((status, body["code"].as_str()), (503, Some("unavailable")));
    assert!(state.breaker.is_closed(), "one failure of the two it takes");
    let later = now + lost_after + 10;
    let (mut x, _) = start_buy(&gate, &mut state, &mut ann, &path, later);
    let Next::Send(third) = x.check(&gate, &mut state, later) else {
        panic!("ann tries again: sent");
    };
    let req = ann.request("POST", &path, b"", later);
    let garbled = b"\x00\x00\x00\x00\x09abc";
    buy_answer(x.reply(&gate, &req, &mut state, &third, http(garbled), later + 5));
    assert!(!state.breaker.is_closed(), "two failed batches open it");
    // Open: the next buy is failed fast, at the edge.
    let (mut x, _) = start_buy(&gate, &mut state, &mut ann, &path, later + 10);
    let (status, _) = buy_answer(x.check(&gate, &mut state, later + 10));
    assert_eq!(status, 503);
}

#[test]
fn a_sold_out_answer_in_a_batch_stops_the_next_buys_at_the_edge() {
    let gate = Gate::new(config()).gathering_buys();
    let mut state = GateState::default();
    let now = START + 1_000;
    let (mut ann, ann_path) = linked(&gate, &mut state, "ann", now);
    let (mut bob, bob_path) = linked(&gate, &mut state, "bob", now);
    let (mut x, _) = start_buy(&gate, &mut state, &mut ann, &ann_path, now);
    let Next::Send(call) = x.check(&gate, &mut state, now) else {
        panic!("sent at once");
    };
    let reply = ok(&BuyManyReply {
        results: vec![queued("7-ann", 0)],
    });
    let req = ann.request("POST", &ann_path, b"", now + 5);
    let (status, _) = buy_answer(x.reply(&gate, &req, &mut state, &call, http(&reply), now + 5));
    assert_eq!(status, 202);
    // The last unit went to ann: bob is told at the edge, and nothing is gathered or sent.
    let req = bob.request("POST", &bob_path, b"", now + 10);
    refused_as(&gate.decide(&req, &mut state), 410, "sold_out");
}

#[test]
fn a_gate_that_does_not_gather_sends_each_buy_alone() {
    let gate = Gate::new(config());
    let mut state = GateState::default();
    let now = START + 1_000;
    let (mut ann, path) = linked(&gate, &mut state, "ann", now);
    let req = ann.request("POST", &path, b"", now);
    assert_eq!(forward(gate.decide(&req, &mut state)).path, BUY);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]
    /// However a sale's buys, the isolate's timers and the batches' replies interleave, each buy
    /// goes to the warehouse in exactly one batch, in the order the buys came, at most one
    /// batch of the sale is out at a time, and every buyer is answered with their own order.
    #[test]
    fn gathered_buys_leave_in_arrival_order_one_batch_at_a_time_and_each_gets_its_own(
        steps in proptest::collection::vec(0u8..3, 1..40),
    ) {
        const N: usize = 6;
        let gate = Gate::new(config()).gathering_buys();
        let mut state = GateState::default();
        let mut now = START + 1_000;
        let mut buyers: Vec<(Shopper, String)> = (0..N)
            .map(|i| {
                let ip: &'static str = Box::leak(format!("203.0.113.{}", 10 + i).into_boxed_str());
                let mut who = Shopper::new(&format!("u{i}"), ip, now);
                let solved = solved_challenge(&gate, &mut state, &mut who, now);
                let path = mint_link(&gate, &mut state, &mut who, &solved, now);
                (who, path)
            })
            .collect();
        let mut waiting: Vec<Option<Exchange>> = vec![None; N];
        let mut answers: Vec<Option<(u16, Value)>> = vec![None; N];
        let mut arrived = 0;
        let mut out: Option<Forward> = None;
        let mut sent: Vec<String> = Vec::new();
        // What a waiting buy's exchange does next, as the Worker drives it: a batch it sends
        // goes out (and it waits on), an answer is kept.
        let mut follow = |i: usize, next: Next, out: &mut Option<Forward>,
                          waiting: &mut Vec<Option<Exchange>>,
                          answers: &mut Vec<Option<(u16, Value)>>| -> Result<(), TestCaseError> {
            match next {
                Next::Wait { .. } => {}
                Next::Send(call) => {
                    prop_assert!(out.is_none(), "a second batch while one is out");
                    sent.extend(batch_of(&call).into_iter().map(|b| b.user_id));
                    *out = Some(call);
                }
                Next::Respond(r) => {
                    answers[i] = Some((r.status, serde_json::from_str(&r.body).unwrap()));
                    waiting[i] = None;
                }
            }
            Ok(())
        };
        let deliver = |state: &mut GateState, out: &mut Option<Forward>, now: i64| {
            if let Some(call) = out.take() {
                let results = batch_of(&call)
                    .iter()
                    .map(|b| queued(&format!("7-{}", b.user_id), 10))
                    .collect();
                let reply = ok(&BuyManyReply { results });
                assert_eq!(gate.complete(state, &call, http(&reply), now), Completion::Check);
            }
        };
        let finish = steps.len();
        for (k, step) in steps.into_iter().chain(std::iter::repeat(1)).enumerate() {
            if k >= finish + 4 * N && arrived == N && answers.iter().all(Option::is_some) {
                break;
            }
            prop_assert!(k < finish + 50 * N, "buys still unanswered: {answers:?}");
            match step {
                0 if arrived < N => {
                    let (who, path) = &mut buyers[arrived];
                    let (mut x, _) = start_buy(&gate, &mut state, who, path, now);
                    let next = x.check(&gate, &mut state, now);
                    waiting[arrived] = Some(x);
                    follow(arrived, next, &mut out, &mut waiting, &mut answers)?;
                    arrived += 1;
                }
                2 => deliver(&mut state, &mut out, now),
                _ => {
                    // After the steps, everyone comes, and replies come back.
                    if k >= finish {
                        if arrived < N {
                            let (who, path) = &mut buyers[arrived];
                            let (x, _) = start_buy(&gate, &mut state, who, path, now);
                            waiting[arrived] = Some(x);
                            arrived += 1;
                        }
                        deliver(&mut state, &mut out, now);
                    }
                    now += BUY_TICK_MS;
                    for i in 0..N {
                        if let Some(mut x) = waiting[i].take() {
                            let next = x.check(&gate, &mut state, now);
                            waiting[i] = Some(x);
                            follow(i, next, &mut out, &mut waiting, &mut answers)?;
                        }
                    }
                }
            }
        }
        let users: Vec<String> = (0..N).map(|i| format!("u{i}")).collect();
        prop_assert_eq!(&sent, &users, "each once, in arrival order");
        for (i, answer) in answers.iter().enumerate() {
            let (status, body) = answer.as_ref().expect("answered");
            prop_assert_eq!(*status, 202);
            let order_no = format!("7-u{i}");
            prop_assert_eq!(body["order_no"].as_str(), Some(order_no.as_str()));
        }
    }
}

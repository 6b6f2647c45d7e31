//! Behaviour of the gate over whole journeys, with a fake clock and a fake origin that answers
//! in gRPC-Web: a shopper's path from the sale page to an order, and what bots, crowds and a
//! failing warehouse meet on the way.

use flashgate_core::gate::{
    Completion, Forward, Gate, GateConfig, GateState, Headers, NetworkLimit, OriginReply, Request,
    Response, Verdict,
};
use flashgate_core::grpc_web::{self, StatusHeaders};
use flashgate_core::identity::{Identity, TokenPolicy, UserKeys};
use flashgate_core::link::KeyRing;
use flashgate_core::origin_auth;
use flashgate_core::pow;
use flashgate_core::proto::flashsale::{
    BuyOutcome, BuyReply, BuyReq, Event, EventState, Order, OrderReq, OrderStatus,
};
use flashgate_core::refusal::Reason;
use prost::Message;
use serde_json::Value;

const USER_KEY: &[u8] = b"shop-session-key-0123456789abcdef";
const ORIGIN_KEY: &[u8] = b"origin-key-0123456789abcdef";
const START: i64 = 1_764_064_800_000;
const CHROME: &str =
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/141.0 Safari/537.36";

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
        Completion::Retry => panic!("unexpected retry"),
    }
}

/// Fills the sale cache the way an adapter does: the first decide asks for the sale, the origin
/// answers, and the decision is taken again.
fn decide_with_sale(
    gate: &Gate,
    state: &mut GateState,
    req: &Request<'_>,
    remaining: i32,
) -> Verdict {
    match gate.decide(req, state) {
        Verdict::Forward(f) if f.path == "/flashsale.Admin/GetEvent" => {
            let body = ok(&sale_state(remaining));
            assert_eq!(
                gate.complete(state, &f, http(&body), req.now_ms),
                Completion::Retry
            );
            gate.decide(req, state)
        }
        other => other,
    }
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
        &alice.request("POST", "/api/orders/O-1/pay", b"", clock.now()),
        &mut state,
    ));
    assert_eq!(call.path, "/flashsale.Seckill/PayOrder");
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
        status: OrderStatus::Paid as i32,
        deadline_ms: 1,
        created_ms: 2,
        ..Default::default()
    };
    let (status, body) = json(gate.complete(&mut state, &call, http(&ok(&order)), clock.now()));
    assert_eq!((status, body["status"].as_str()), (200, Some("paid")));
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
    let call = forward(gate.decide(
        &anon.request("GET", "/api/events/7", b"", clock.now()),
        &mut state,
    ));
    let (status, body) =
        json(gate.complete(&mut state, &call, http(&ok(&sale_state(10))), clock.now()));
    assert_eq!(
        (status, body["status"].as_str(), body["remaining"].as_u64()),
        (200, Some("upcoming"), Some(10))
    );
    clock.advance(1_000);
    let Verdict::Respond(cached) = gate.decide(
        &anon.request("GET", "/api/events/7", b"", clock.now()),
        &mut state,
    ) else {
        panic!("not served from cache")
    };
    assert_eq!(cached.cache_control, "public, max-age=1");
    // An unknown sale is remembered as unknown.
    let call = forward(gate.decide(
        &anon.request("GET", "/api/events/8", b"", clock.now()),
        &mut state,
    ));
    let missing = grpc_web::encode_response::<EventState>(None, 5, "no such event");
    assert_eq!(
        json(gate.complete(&mut state, &call, http(&missing), clock.now())).0,
        404
    );
    assert_eq!(
        refused(&gate.decide(
            &anon.request("GET", "/api/events/8", b"", clock.now()),
            &mut state
        )),
        Reason::UnknownResource
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
    // "20/s burst 40" per address: 40 at once, then one every 50 ms.
    let mut answered = 0;
    let mut limited = None;
    for _ in 0..60 {
        match gate.decide(
            &shopper.request("GET", "/api/events/9", b"", clock.now()),
            &mut state,
        ) {
            Verdict::Refuse(r) if r.reason == Reason::RateLimited => limited = Some(r),
            _ => answered += 1,
        }
    }
    assert_eq!(answered, 40);
    let refusal = limited.unwrap();
    assert_eq!(
        (refusal.status(), refusal.retry_after_secs()),
        (429, Some(1))
    );
    clock.advance(50);
    assert!(!matches!(
        gate.decide(
            &shopper.request("GET", "/api/events/9", b"", clock.now()),
            &mut state
        ),
        Verdict::Refuse(_)
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
        let mut req = shopper.request("GET", "/api/events/9", b"", now);
        req.network_limit = NetworkLimit::Allowed;
        assert!(!matches!(gate.decide(&req, &mut state), Verdict::Refuse(_)));
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
    // A buy with no view fetches it first; the view says sold out; no Buy is sent.
    let refresh = forward(gate.decide(&alice.request("POST", &path, b"", later), &mut state));
    assert_eq!(refresh.path, "/flashsale.Admin/GetEvent");
    let body = ok(&sale_state(0));
    assert_eq!(
        gate.complete(&mut state, &refresh, http(&body), later),
        Completion::Retry
    );
    assert_eq!(
        refused(&gate.decide(&alice.request("POST", &path, b"", later), &mut state)),
        Reason::SoldOut
    );
}

/// The adapters' loop, as the core runs it for them: a buy with no sale view cached asks the
/// origin for the sale once, decides again and forwards the buy; a second refresh request for
/// the same request (a broken promise) is answered 503, never looped on.
#[test]
fn an_exchange_refreshes_the_sale_once_then_forwards() {
    use flashgate_core::gate::{Exchange, Next};
    let gate = Gate::new(config());
    let mut state = GateState::default();
    let clock = Clock(START - 1_000);
    let mut alice = Shopper::new("alice", "203.0.113.9", clock.now());
    let req = alice.request("GET", "/api/events/7", b"", clock.now());
    let mut exchange = Exchange::default();
    let Next::Send(call) = exchange.start(&gate, &req, &mut state) else {
        panic!("the sale is not cached: the origin is asked");
    };
    assert_eq!(call.path, "/flashsale.Admin/GetEvent");
    let body = ok(&sale_state(10));
    let Next::Respond(response) =
        exchange.reply(&gate, &req, &mut state, &call, http(&body), clock.now())
    else {
        panic!("the sale route answers with the view");
    };
    assert_eq!(response.status, 200);
    let headers = response.headers();
    assert!(headers.contains(&("cache-control", "public, max-age=1".to_owned())));
    assert!(headers.contains(&("content-type", "application/json; charset=utf-8".to_owned())));

    // A challenge with the sale uncached: GetEvent (answer: false), then Retry, then decided.
    let mut state = GateState::default();
    let req = alice.request("POST", "/api/events/7/challenge", b"", clock.now());
    let mut exchange = Exchange::default();
    let Next::Send(call) = exchange.start(&gate, &req, &mut state) else {
        panic!("the origin is asked for the sale");
    };
    let next = exchange.reply(&gate, &req, &mut state, &call, http(&body), clock.now());
    let Next::Respond(issued) = next else {
        panic!("decided again from the cached view: {next:?}")
    };
    assert_eq!(issued.status, 200, "{}", issued.body);
    // Were the gate to ask for a refresh again, the exchange answers 503 instead of looping.
    let mut state = GateState::default();
    let mut exchange = Exchange::default();
    let Next::Send(call) = exchange.start(&gate, &req, &mut state) else {
        panic!("the origin is asked for the sale");
    };
    let _ = exchange.reply(&gate, &req, &mut state, &call, http(&body), clock.now());
    let mut state = GateState::default();
    let again = exchange.reply(&gate, &req, &mut state, &call, http(&body), clock.now());
    let Next::Respond(refused) = again else {
        panic!("a second retry is not decided again: {again:?}")
    };
    assert_eq!(refused.status, 503);
    assert!(refused
        .headers()
        .iter()
        .any(|(name, _)| *name == "retry-after"));
}

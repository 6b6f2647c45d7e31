//! The waiting room at the edge, over whole journeys with a fake clock and a fake warehouse
//! that answers the gate's calls in gRPC-Web (`Queue/JoinQueue`, `GetQueue`, `ClaimAdmission`
//! and the sale reads): a buyer joins in the pre-queue, waits with a place, is admitted and buys
//! with the link the poll hands over; a crowd's polls cost one snapshot a second; sold out
//! reaches every waiting poller at once; places are personal; the link route is closed to a
//! waiting-room sale. Every answer is checked with the origin calls it cost.

use std::collections::HashMap;

use flashgate_core::admission::Ticket;
use flashgate_core::gate::{
    Exchange, Forward, Gate, GateConfig, GateState, Headers, NetworkLimit, Next, OriginReply,
    Request, Response, HOLD_TICK_MS, JOIN_CLOSE_GATHER_MS, JOIN_START_LEAD_MS, JOIN_TICK_MS,
    PLACE_HEADER, WAIT_HEADER,
};
use flashgate_core::grpc_web::{self, StatusHeaders};
use flashgate_core::identity::{Identity, TokenPolicy, UserKeys};
use flashgate_core::link::KeyRing;
use flashgate_core::pow;
use flashgate_core::proto::flashsale::{
    BuyReq, ClaimAdmissionReq, Event, EventList, EventState, JoinQueueManyReq, JoinQueueReq,
    PlaceState, QueuePlace, QueuePlaces, QueueSnapshot,
};
use prost::Message;
use serde_json::{json, Value};

const USER_KEY: &[u8] = b"shop-session-key-0123456789abcdef";
const ORIGIN_KEY: &[u8] = b"origin-key-0123456789abcdef";
const START: i64 = 1_764_064_800_000;
const END: i64 = START + 600_000;
const PREQUEUE_MS: i64 = 60_000;
const CHROME: &str =
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/141.0 Safari/537.36";

fn config() -> GateConfig {
    let ring = KeyRing::single(b"link-key-0123456789abcdef").unwrap();
    let mut config = GateConfig::new(ring, UserKeys::single(USER_KEY).unwrap(), ORIGIN_KEY);
    config.difficulty.floor_bits = 4;
    config.difficulty.cap_bits = 4;
    config.sale_ttl_ms = 10_000;
    config.sale_memory_ms = 60_000;
    // The crowds here share one address: the per-network limit is another test's subject.
    config.limits.ip = "100000/s burst 100000".parse().unwrap();
    config
}

/// The warehouse as the gate sees it: sale 7 (a waiting room unless `waiting_room` is off),
/// its line's snapshot, each user's place and claim answer, and every call it was sent.
struct Warehouse {
    waiting_room: bool,
    /// The sale view's units left (`GetEvent`): its pool.
    sale_remaining: i32,
    /// The line's replies carry the sale's state (a warehouse since they do), or not (one
    /// before: the edge reads the sale with `GetEvent`).
    line_carries_sale: bool,
    /// Sale 7 is gone: every read of it is `NOT_FOUND`.
    gone: bool,
    snapshot: QueueSnapshot,
    places: HashMap<String, QueuePlace>,
    claims: HashMap<String, QueuePlace>,
    calls: Vec<&'static str>,
}

impl Warehouse {
    fn new() -> Self {
        Warehouse {
            waiting_room: true,
            sale_remaining: 10,
            line_carries_sale: true,
            gone: false,
            snapshot: QueueSnapshot {
                event_id: 7,
                remaining: 10,
                ..Default::default()
            },
            places: HashMap::new(),
            claims: HashMap::new(),
            calls: Vec::new(),
        }
    }

    fn sale(&self) -> EventState {
        EventState {
            event: Some(Event {
                id: 7,
                sku_id: 42,
                pool: 10,
                start_ms: START,
                end_ms: END,
                per_user_limit: 1,
                pay_window_ms: 900_000,
                price: 1_999,
                currency: "EUR".into(),
                waiting_room: self.waiting_room,
                prequeue_ms: PREQUEUE_MS,
                ..Default::default()
            }),
            remaining: self.sale_remaining,
            ..Default::default()
        }
    }

    /// The line's snapshot as `GetQueue` answers it (and `JoinQueueMany` after its joins).
    fn line(&self) -> QueueSnapshot {
        QueueSnapshot {
            sale: self.line_carries_sale.then(|| self.sale()),
            ..self.snapshot.clone()
        }
    }

    /// Gives `user` a place with `ticket` at `rank`.
    fn seat(&mut self, user: &str, ticket: Ticket, rank: i64) {
        let place = QueuePlace {
            state: PlaceState::PlaceWaiting as i32,
            ticket: ticket.get(),
            rank,
            ..Default::default()
        };
        self.places.insert(user.to_owned(), place);
    }

    /// Runs `req` through an adapter's exchange, answering every call: the client's response.
    fn serve(&mut self, gate: &Gate, state: &mut GateState, req: &Request<'_>) -> Response {
        let mut exchange = Exchange::default();
        let next = exchange.start(gate, req, state);
        self.run(gate, state, req, &mut exchange, next)
    }

    /// Drives `exchange` from `next`, answering every call (a gathered join alone in its
    /// batch: the clock moves on to each time it waits for).
    fn run(
        &mut self,
        gate: &Gate,
        state: &mut GateState,
        req: &Request<'_>,
        exchange: &mut Exchange,
        mut next: Next,
    ) -> Response {
        let mut now = req.now_ms;
        loop {
            let call = match next {
                Next::Respond(response) => return response,
                Next::Send(call) => call,
                Next::Wait { until_ms } => {
                    now = now.max(until_ms);
                    next = exchange.check(gate, state, now);
                    continue;
                }
            };
            let reply = self.answer(&call, now);
            next = exchange.reply(gate, req, state, &call, http(&reply), now);
        }
    }

    /// The warehouse's reply to `call` at `now`, noted in [`Warehouse::calls`].
    fn answer(&mut self, call: &Forward, now: i64) -> Vec<u8> {
        {
            self.calls.push(call.path);
            let body = &call.body[5..];
            let read = matches!(
                call.path,
                "/flashsale.Admin/GetEvent" | "/flashsale.Queue/GetQueue"
            );
            if self.gone && read {
                return grpc_web::encode_response::<EventState>(None, 5, "event 7 not found");
            }
            if !self.waiting_room && call.path == GET_QUEUE {
                let refused = "event 7 has no waiting room";
                return grpc_web::encode_response::<EventState>(None, 9, refused);
            }
            match call.path {
                "/flashsale.Admin/ListEvents" => ok(&EventList {
                    ids: vec![7],
                    server_time_ms: now,
                }),
                "/flashsale.Admin/GetEvent" => ok(&self.sale()),
                "/flashsale.Queue/JoinQueue" => {
                    let join = JoinQueueReq::decode(body).unwrap();
                    ok(&self.places[&join.user_id])
                }
                JOIN_MANY => {
                    let join = JoinQueueManyReq::decode(body).unwrap();
                    let places = join.user_ids.iter().map(|u| self.places[u]);
                    ok(&QueuePlaces {
                        places: places.collect(),
                        line: self.line_carries_sale.then(|| self.line()),
                    })
                }
                "/flashsale.Queue/GetQueue" => ok(&self.line()),
                "/flashsale.Queue/ClaimAdmission" => {
                    let claim = ClaimAdmissionReq::decode(body).unwrap();
                    ok(&self.claims[&claim.user_id])
                }
                other => panic!("the test answers no {other}"),
            }
        }
    }

    /// Runs a poll as the Worker adapter does with a held one: the first answer, then, while
    /// it holds, a tick every [`HOLD_TICK_MS`] (`world` may change the warehouse at each, given
    /// the time) and the poll decided again whenever the hold wakes, until it releases. Answers
    /// the response and when it was sent.
    fn serve_held(
        &mut self,
        gate: &Gate,
        state: &mut GateState,
        req: &Request<'_>,
        mut world: impl FnMut(&mut Self, i64),
    ) -> (Response, i64) {
        let first = self.serve(gate, state, req);
        let Some(hold) = first.hold.clone() else {
            return (first, req.now_ms);
        };
        let hold = hold.enter(state);
        let mut req = *req;
        loop {
            loop {
                req.now_ms += HOLD_TICK_MS as i64;
                world(self, req.now_ms);
                if hold.wakes(state, req.now_ms) {
                    break;
                }
            }
            let mut exchange = Exchange::default();
            let next = exchange.resume(gate, &req, state);
            let latest = self.run(gate, state, &req, &mut exchange, next);
            if hold.releases(&latest, state, req.now_ms) {
                return (latest, req.now_ms);
            }
        }
    }

    /// The waiting room's calls made since the last look (the sale reads cost what they cost
    /// on every route), emptied.
    fn take_calls(&mut self) -> Vec<&'static str> {
        let calls = std::mem::take(&mut self.calls);
        calls
            .into_iter()
            .filter(|c| c.starts_with("/flashsale.Queue/"))
            .collect()
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

/// A shopper's browser, with the place token it keeps.
struct Shopper {
    token: String,
    place: Option<String>,
    /// What the poll asks to be held for ([`WAIT_HEADER`]), if anything.
    wait: Option<String>,
}

impl Shopper {
    fn new(user: &str) -> Self {
        let identity = Identity::new(
            UserKeys::single(USER_KEY).unwrap(),
            TokenPolicy::default(),
            false,
        );
        Shopper {
            token: format!("Bearer {}", identity.mint(user, START - 120_000, 3_600_000)),
            place: None,
            wait: None,
        }
    }

    fn request<'a>(
        &'a self,
        method: &'a str,
        path: &'a str,
        body: &'a [u8],
        now: i64,
    ) -> Request<'a> {
        Request {
            method,
            path,
            headers: Headers {
                authorization: Some(&self.token),
                user_agent: Some(CHROME),
                accept_language: Some("en"),
                sec_fetch_site: Some("same-origin"),
                sec_fetch_mode: Some("cors"),
                place: self.place.as_deref(),
                wait: self.wait.as_deref(),
            },
            client_ip: Some("203.0.113.5".parse().unwrap()),
            platform_bot_score: None,
            network_limit: NetworkLimit::Local,
            body,
            now_ms: now,
            entropy: [now as u8; 32],
        }
    }
}

/// Status and JSON body.
fn json_of(response: &Response) -> (u16, Value) {
    (
        response.status,
        serde_json::from_str(&response.body).unwrap(),
    )
}

/// A solved challenge for sale 7: the join's body.
fn solved(
    gate: &Gate,
    state: &mut GateState,
    wh: &mut Warehouse,
    who: &Shopper,
    now: i64,
) -> String {
    let issued = wh.serve(
        gate,
        state,
        &who.request("POST", "/api/events/7/challenge", b"", now),
    );
    let (status, issued) = json_of(&issued);
    assert_eq!(status, 200, "{issued}");
    let challenge = issued["challenge"].as_str().unwrap();
    let nonce = pow::solve(
        challenge,
        issued["bits"].as_u64().unwrap() as u8,
        0,
        1 << 20,
    )
    .unwrap();
    json!({ "challenge": challenge, "nonce": nonce }).to_string()
}

/// Joins sale 7 at `now`, keeping the place token: the answer.
fn join(
    gate: &Gate,
    state: &mut GateState,
    wh: &mut Warehouse,
    who: &mut Shopper,
    now: i64,
) -> (u16, Value) {
    let answer = solved(gate, state, wh, who, now);
    let response = wh.serve(
        gate,
        state,
        &who.request("POST", "/api/events/7/queue", answer.as_bytes(), now),
    );
    let (status, body) = json_of(&response);
    if let Some(place) = body["place"].as_str() {
        who.place = Some(place.to_owned());
    }
    (status, body)
}

fn poll(
    gate: &Gate,
    state: &mut GateState,
    wh: &mut Warehouse,
    who: &Shopper,
    now: i64,
) -> (u16, Value) {
    json_of(&wh.serve(
        gate,
        state,
        &who.request("GET", "/api/events/7/queue", b"", now),
    ))
}

const JOIN: &str = "/flashsale.Queue/JoinQueue";
const JOIN_MANY: &str = "/flashsale.Queue/JoinQueueMany";
const GET_QUEUE: &str = "/flashsale.Queue/GetQueue";
const CLAIM: &str = "/flashsale.Queue/ClaimAdmission";

#[test]
fn a_buyer_joins_in_the_pre_queue_waits_and_is_admitted_with_a_link() {
    let gate = Gate::new(config());
    let mut state = GateState::default();
    let mut wh = Warehouse::new();
    let mut alice = Shopper::new("alice");
    let ticket = Ticket::from_raw(1 << 61); // a quarter into the drawn range
    wh.seat("alice", ticket, 3);

    // 30 s before the start: a place, its token, and the wait to the start.
    let now = START - 30_000;
    let (status, joined) = join(&gate, &mut state, &mut wh, &mut alice, now);
    assert_eq!(status, 200, "{joined}");
    assert_eq!(joined["state"], "waiting");
    assert_eq!(
        (&joined["position"], &joined["ahead"]),
        (&json!(4), &json!(3))
    );
    assert_eq!(joined["eta_s"], 30);
    assert!(joined["place"].as_str().unwrap().len() <= 300);
    assert!(joined.get("link").is_none());
    let calls = wh.take_calls();
    assert_eq!(calls.iter().filter(|c| **c == JOIN).count(), 1, "{calls:?}");

    // A poll refreshes the snapshot once, and answers from it.
    wh.snapshot.places = 40;
    wh.snapshot.drawn = 40;
    let (status, waiting) = poll(&gate, &mut state, &mut wh, &alice, now + 100);
    assert_eq!(status, 200, "{waiting}");
    assert_eq!(waiting["state"], "waiting");
    assert_eq!(waiting["ahead"], 10, "a quarter of 40 drawn places");
    assert_eq!(waiting["position"], 11);
    assert!(waiting["poll_after_ms"].as_u64().unwrap() >= 500);
    assert_eq!(wh.take_calls(), vec![GET_QUEUE]);
    let (_, again) = poll(&gate, &mut state, &mut wh, &alice, now + 900);
    assert_eq!(again["ahead"], 10);
    assert!(
        wh.take_calls().is_empty(),
        "within the second: from the cache"
    );

    // After the start the line moves past alice: the poll claims her admission once and
    // answers with a purchase link.
    let now = START + 2_000;
    wh.snapshot.admitted = 12;
    wh.snapshot.admitted_through = ticket.get() + 5;
    wh.snapshot.opened = 12;
    wh.snapshot.opened_through = ticket.get() + 5;
    wh.snapshot.pending = 12;
    wh.snapshot.admit_rate_per_s = 6.0;
    wh.claims.insert(
        "alice".into(),
        QueuePlace {
            state: PlaceState::PlaceAdmitted as i32,
            ticket: ticket.get(),
            admitted_until_ms: now + 30_000,
            ..Default::default()
        },
    );
    let (status, admitted) = poll(&gate, &mut state, &mut wh, &alice, now);
    assert_eq!(status, 200, "{admitted}");
    assert_eq!(admitted["state"], "admitted");
    assert_eq!(admitted["admitted_until_ms"], now + 30_000);
    assert_eq!(admitted["poll_after_ms"], 0);
    let link = admitted["link"]["path"].as_str().unwrap().to_owned();
    assert!(admitted["link"]["expires_ms"].as_i64().unwrap() <= now + 30_000);
    assert_eq!(wh.take_calls(), vec![GET_QUEUE, CLAIM]);

    // Polled again: the claim is remembered, the link is the same purchase.
    let (_, again) = poll(&gate, &mut state, &mut wh, &alice, now + 3_000);
    assert_eq!(again["state"], "admitted");
    let relink = again["link"]["path"].as_str().unwrap().to_owned();
    // No claim again; the copy of the line it reads is refreshed as every poll's is (one call
    // a refresh interval per instance, shared with the whole line).
    let calls = wh.take_calls();
    assert!(
        calls.len() <= 1 && calls.iter().all(|c| *c == GET_QUEUE),
        "a remembered claim costs no claim: {calls:?}"
    );

    // Both links buy with the place's one idempotency key.
    let buy_id = |state: &mut GateState, path: &str, now: i64| {
        let req = alice.request("POST", path, br#"{"qty":1}"#, now);
        let Next::Send(call) = Exchange::default().start(&gate, &req, state) else {
            panic!("the buy is forwarded");
        };
        assert_eq!(call.path, "/flashsale.Seckill/Buy");
        BuyReq::decode(&call.body[5..]).unwrap().request_id
    };
    assert_eq!(
        buy_id(&mut state, &link, now + 3_000),
        buy_id(&mut state, &relink, now + 3_100)
    );

    // The pool runs empty (units held by unpaid orders): the same link is still forwarded, as
    // a buy tried again after a busy answer may be one the warehouse took and only it can
    // answer with its order; once the line says sold out for good, the edge refuses it.
    if let Some(sale) = state.sales.get_mut(&7).and_then(|e| e.sale.as_mut()) {
        sale.remaining = 0;
        sale.sold_out = true;
    }
    assert_eq!(
        buy_id(&mut state, &link, now + 3_200),
        buy_id(&mut state, &relink, now + 3_300)
    );
    if let Some(line) = state.queues.get_mut(&7).and_then(|q| q.snapshot.as_mut()) {
        line.sold_out = true;
    }
    let req = alice.request("POST", &link, br#"{"qty":1}"#, now + 3_400);
    let Next::Respond(refused) = Exchange::default().start(&gate, &req, &mut state) else {
        panic!("sold out for good is answered at the edge");
    };
    let (status, body) = json_of(&refused);
    assert_eq!((status, &body["code"]), (410, &json!("sold_out")), "{body}");

    // Once the admission lapses unused, the place is over.
    let (_, lapsed) = poll(&gate, &mut state, &mut wh, &alice, now + 30_000);
    assert_ne!(lapsed["state"], "admitted", "{lapsed}");
}

/// `user` joins at `now` at the fourth place, and the warehouse admits and opens the first
/// four: `user`'s admission opens at `now` and lapses 30 s later. Answers the shopper.
fn admitted(
    gate: &Gate,
    state: &mut GateState,
    wh: &mut Warehouse,
    user: &str,
    now: i64,
) -> Shopper {
    let mut who = Shopper::new(user);
    let ticket = Ticket::arrival(3);
    wh.seat(user, ticket, 3);
    join(gate, state, wh, &mut who, now);
    wh.snapshot.admitted = 4;
    wh.snapshot.admitted_through = ticket.get();
    wh.snapshot.opened = 4;
    wh.snapshot.opened_through = ticket.get();
    wh.claims.insert(
        user.into(),
        QueuePlace {
            state: PlaceState::PlaceAdmitted as i32,
            ticket: ticket.get(),
            admitted_from_ms: now,
            admitted_until_ms: now + 30_000,
            ..Default::default()
        },
    );
    who
}

#[test]
fn a_standby_admission_gets_no_link_and_costs_no_claim_until_it_opens() {
    let gate = Gate::new(config());
    let mut state = GateState::default();
    let mut wh = Warehouse::new();
    let now = START + 1_000;
    // Admitted beyond the units: bob is the fourth place, two of the four admitted are open.
    let bob = admitted(&gate, &mut state, &mut wh, "bob", now);
    wh.snapshot.opened = 2;
    wh.snapshot.opened_through = Ticket::arrival(1).get();
    wh.snapshot.pending = 4;
    wh.snapshot.remaining = 2;
    wh.take_calls();
    // However often it polls (each second, as the pace allows), no link and no claim while the
    // line has not opened it: it waits behind the one standby place ahead of it.
    for at in (now..now + 5_000).step_by(1_000) {
        let (status, body) = poll(&gate, &mut state, &mut wh, &bob, at);
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["state"], "waiting", "{body}");
        assert!(body.get("link").is_none(), "{body}");
        assert_eq!((&body["position"], &body["ahead"]), (&json!(2), &json!(1)));
    }
    let calls = wh.take_calls();
    assert!(!calls.contains(&CLAIM), "{calls:?}");
    // The places ahead bought or lapsed: the next copy of the line has bob opened.
    let opens = now + 5_000;
    wh.snapshot.opened = 4;
    wh.snapshot.opened_through = Ticket::arrival(3).get();
    wh.claims.get_mut("bob").expect("claimed").admitted_from_ms = opens;
    wh.claims.get_mut("bob").expect("claimed").admitted_until_ms = opens + 30_000;
    let (_, open) = poll(&gate, &mut state, &mut wh, &bob, opens);
    assert_eq!(open["state"], "admitted", "{open}");
    assert_eq!(open["admitted_until_ms"], opens + 30_000);
    assert!(open["link"]["path"].as_str().is_some());
    let (_, again) = poll(&gate, &mut state, &mut wh, &bob, opens + 1_000);
    assert_eq!(again["state"], "admitted", "{again}");
    let calls = wh.take_calls();
    assert_eq!(
        calls.iter().filter(|c| **c == CLAIM).count(),
        1,
        "one claim once it opened, then remembered: {calls:?}"
    );
}

#[test]
fn an_open_admission_with_every_unit_held_waits_for_one_to_come_back() {
    let gate = Gate::new(config());
    let mut state = GateState::default();
    let mut wh = Warehouse::new();
    let now = START + 1_000;
    // Open, but a buyer ahead took two units and the rest are held by unpaid orders: nothing
    // is free, something may come back.
    let cy = admitted(&gate, &mut state, &mut wh, "cy", now);
    wh.snapshot.remaining = 0;
    wh.snapshot.held = 2;
    let (status, body) = poll(&gate, &mut state, &mut wh, &cy, now + 1_000);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["state"], "waiting",
        "no link that could only buy SOLD_OUT: {body}"
    );
    assert!(body.get("link").is_none(), "{body}");
    assert_eq!(
        (&body["position"], &body["poll_after_ms"]),
        (&json!(1), &json!(1_000))
    );
    // An unpaid order expires: its unit is free again, and the next copy of the line shows it.
    wh.snapshot.remaining = 1;
    wh.snapshot.held = 1;
    let (_, back) = poll(&gate, &mut state, &mut wh, &cy, now + 2_000);
    assert_eq!(back["state"], "admitted", "{back}");
    assert!(back["link"]["path"].as_str().is_some());
}

#[test]
fn an_admission_still_unused_is_told_sold_out_with_the_line() {
    let gate = Gate::new(config());
    let mut state = GateState::default();
    let mut wh = Warehouse::new();
    let now = START + 1_000;
    let bob = admitted(&gate, &mut state, &mut wh, "bob", now);
    let mut cy = Shopper::new("cy");
    wh.seat("cy", Ticket::arrival(4), 4);
    join(&gate, &mut state, &mut wh, &mut cy, now);
    let (_, open) = poll(&gate, &mut state, &mut wh, &bob, now);
    assert_eq!(open["state"], "admitted", "{open}");
    // Bob does not buy; the units go to the places before him and are paid: the next refresh,
    // from cy's poll, says sold out, and bob's remembered admission is told so at once, not
    // given a link that could only buy a refusal.
    wh.snapshot.remaining = 0;
    wh.snapshot.sold_out = true;
    let (_, waiting) = poll(&gate, &mut state, &mut wh, &cy, now + 1_000);
    assert_eq!(waiting["state"], "sold_out", "{waiting}");
    let (_, told) = poll(&gate, &mut state, &mut wh, &bob, now + 1_100);
    assert_eq!(told["state"], "sold_out", "{told}");
    assert!(told.get("link").is_none());
}

#[test]
fn a_crowd_s_polls_cost_one_snapshot_a_second() {
    let gate = Gate::new(config());
    let mut state = GateState::default();
    let mut wh = Warehouse::new();
    wh.snapshot.places = 500;
    wh.snapshot.admit_rate_per_s = 10.0;
    let now = START + 10_000;
    let mut crowd = Vec::new();
    for i in 0..50u64 {
        let user = format!("user-{i}");
        let mut who = Shopper::new(&user);
        wh.seat(&user, Ticket::arrival(100 + i), 100 + i as i64);
        let (status, _) = join(&gate, &mut state, &mut wh, &mut who, now);
        assert_eq!(status, 200);
        crowd.push(who);
    }
    wh.take_calls();
    for second in 0..5 {
        for (i, who) in (0u64..).zip(&crowd) {
            let at = now + 1_000 * second + 10 * i as i64;
            let (status, body) = poll(&gate, &mut state, &mut wh, who, at);
            assert_eq!((status, body["state"].as_str()), (200, Some("waiting")));
            assert_eq!(body["ahead"], 100 + i);
            assert_eq!(body["eta_s"], 10 + i / 10 + u64::from(i % 10 != 0));
        }
    }
    let calls = wh.take_calls();
    assert_eq!(calls, vec![GET_QUEUE; 5], "250 polls over 5 s");
}

#[test]
fn a_refresh_in_flight_is_not_sent_twice() {
    let gate = Gate::new(config());
    let mut state = GateState::default();
    let mut wh = Warehouse::new();
    let mut alice = Shopper::new("alice");
    wh.seat("alice", Ticket::arrival(0), 0);
    let now = START + 1_000;
    join(&gate, &mut state, &mut wh, &mut alice, now);
    // The first poll's GetQueue leaves and has not come back when a second poll arrives.
    let req = alice.request("GET", "/api/events/7/queue", b"", now);
    let Next::Send(call) = Exchange::default().start(&gate, &req, &mut state) else {
        panic!("a first poll refreshes");
    };
    assert_eq!(call.path, GET_QUEUE);
    let second = Exchange::default().start(&gate, &req, &mut state);
    let Next::Respond(busy) = second else {
        panic!("no second refresh while one is out: {second:?}");
    };
    assert_eq!(busy.status, 503);
    assert_eq!(busy.retry_after_s, Some(1));
}

#[test]
fn sold_out_reaches_every_waiting_poller_from_the_snapshot() {
    let gate = Gate::new(config());
    let mut state = GateState::default();
    let mut wh = Warehouse::new();
    let now = START + 5_000;
    let mut crowd: Vec<Shopper> = Vec::new();
    for i in 0..5u64 {
        let user = format!("user-{i}");
        let mut who = Shopper::new(&user);
        wh.seat(&user, Ticket::arrival(20 + i), 20 + i as i64);
        join(&gate, &mut state, &mut wh, &mut who, now);
        crowd.push(who);
    }
    wh.snapshot.remaining = 0;
    wh.snapshot.held = 0;
    wh.snapshot.sold_out = true;
    wh.take_calls();
    for who in &crowd {
        let (status, body) = poll(&gate, &mut state, &mut wh, who, now + 2_000);
        assert_eq!((status, body["state"].as_str()), (200, Some("sold_out")));
        assert_eq!(body["poll_after_ms"], 0);
    }
    assert_eq!(
        wh.take_calls(),
        vec![GET_QUEUE],
        "one snapshot told them all"
    );
    // A late joiner is told at the edge.
    let mut late = Shopper::new("late");
    wh.seat("late", Ticket::arrival(99), 99);
    let (status, body) = join(&gate, &mut state, &mut wh, &mut late, now + 2_500);
    assert_eq!((status, body["code"].as_str()), (410, Some("sold_out")));
    assert!(!wh.take_calls().contains(&JOIN));

    // Units held by unpaid orders may come back: not sold out while some are.
    let mut wh = Warehouse::new();
    let mut state = GateState::default();
    let mut bob = Shopper::new("bob");
    wh.seat("bob", Ticket::arrival(3), 3);
    join(&gate, &mut state, &mut wh, &mut bob, now);
    wh.snapshot.remaining = 0;
    wh.snapshot.held = 2;
    let (_, body) = poll(&gate, &mut state, &mut wh, &bob, now + 2_000);
    assert_eq!(body["state"], "waiting");
    assert_eq!(
        body["eta_s"],
        Value::Null,
        "nothing moves while every unit is held"
    );
}

#[test]
fn places_are_personal_and_bound_to_their_sale() {
    let gate = Gate::new(config());
    let mut state = GateState::default();
    let mut wh = Warehouse::new();
    let mut alice = Shopper::new("alice");
    wh.seat("alice", Ticket::arrival(0), 0);
    let now = START + 1_000;
    join(&gate, &mut state, &mut wh, &mut alice, now);
    let code = |r: (u16, Value)| (r.0, r.1["code"].as_str().unwrap_or("").to_owned());

    let mut bob = Shopper::new("bob");
    assert_eq!(
        code(poll(&gate, &mut state, &mut wh, &bob, now)),
        (403, "bad_place".into())
    );
    bob.place = alice.place.clone();
    assert_eq!(
        code(poll(&gate, &mut state, &mut wh, &bob, now)),
        (403, "bad_place".into())
    );
    let mut forged = alice.place.clone().unwrap();
    forged.replace_range(10..11, if &forged[10..11] == "A" { "B" } else { "A" });
    bob.place = Some(forged);
    assert_eq!(
        code(poll(&gate, &mut state, &mut wh, &bob, now)),
        (403, "bad_place".into())
    );
    // Alice's place is hers for sale 7 only.
    let req = alice.request("GET", "/api/events/8/queue", b"", now);
    let (status, body) = json_of(&wh.serve(&gate, &mut state, &req));
    assert_eq!((status, body["code"].as_str()), (403, Some("bad_place")));
    assert!(!wh.take_calls().contains(&GET_QUEUE));
}

#[test]
fn the_line_is_the_only_way_to_a_link_in_a_waiting_room_sale() {
    let gate = Gate::new(config());
    let mut state = GateState::default();
    let mut wh = Warehouse::new();
    let alice = Shopper::new("alice");
    let now = START + 1_000;
    let answer = solved(&gate, &mut state, &mut wh, &alice, now);
    let req = alice.request("POST", "/api/events/7/link", answer.as_bytes(), now);
    let (status, body) = json_of(&wh.serve(&gate, &mut state, &req));
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("queue_required"))
    );

    // And a sale without a room has no line.
    let mut wh = Warehouse::new();
    wh.waiting_room = false;
    let mut state = GateState::default();
    let mut bob = Shopper::new("bob");
    let (status, body) = join(&gate, &mut state, &mut wh, &mut bob, now);
    assert_eq!((status, body["code"].as_str()), (409, Some("no_queue")));
    assert!(!wh.take_calls().contains(&JOIN));
}

#[test]
fn the_line_opens_prequeue_before_the_start_and_closes_at_the_end() {
    let gate = Gate::new(config());
    let mut state = GateState::default();
    let mut wh = Warehouse::new();
    let mut alice = Shopper::new("alice");
    wh.seat("alice", Ticket::from_raw(5), 0);
    let early = START - PREQUEUE_MS - 2_500;
    let (status, body) = join(&gate, &mut state, &mut wh, &mut alice, early);
    assert_eq!((status, body["code"].as_str()), (425, Some("too_early")));
    assert_eq!(body["retry_after"], 3);
    assert!(!wh.take_calls().contains(&JOIN));
    let (status, _) = join(&gate, &mut state, &mut wh, &mut alice, START - PREQUEUE_MS);
    assert_eq!(status, 200);
    // After the end, the place is over without asking anyone.
    wh.take_calls();
    let (status, body) = poll(&gate, &mut state, &mut wh, &alice, END);
    assert_eq!((status, body["state"].as_str()), (200, Some("ended")));
    assert!(!wh.take_calls().contains(&GET_QUEUE));
}

#[test]
fn a_lapsed_or_spent_place_is_ended_and_remembered() {
    let gate = Gate::new(config());
    let mut state = GateState::default();
    let mut wh = Warehouse::new();
    let mut alice = Shopper::new("alice");
    wh.seat("alice", Ticket::arrival(0), 0);
    let now = START + 1_000;
    join(&gate, &mut state, &mut wh, &mut alice, now);
    wh.snapshot.admitted = 1;
    wh.snapshot.admitted_through = Ticket::arrival(0).get();
    wh.snapshot.opened = 1;
    wh.snapshot.opened_through = Ticket::arrival(0).get();
    wh.claims.insert(
        "alice".into(),
        QueuePlace {
            state: PlaceState::PlaceLapsed as i32,
            ..Default::default()
        },
    );
    wh.take_calls();
    let (_, body) = poll(&gate, &mut state, &mut wh, &alice, now + 2_000);
    assert_eq!(body["state"], "ended");
    let (_, body) = poll(&gate, &mut state, &mut wh, &alice, now + 4_000);
    assert_eq!(body["state"], "ended");
    assert_eq!(
        wh.take_calls(),
        vec![GET_QUEUE, CLAIM],
        "one claim, then remembered"
    );
}

#[test]
fn the_place_state_survives_a_round_trip_through_a_store() {
    let gate = Gate::new(config());
    let mut state = GateState::default();
    let mut wh = Warehouse::new();
    let mut alice = Shopper::new("alice");
    wh.seat("alice", Ticket::arrival(0), 0);
    join(&gate, &mut state, &mut wh, &mut alice, START + 1_000);
    poll(&gate, &mut state, &mut wh, &alice, START + 1_100);
    let text = serde_json::to_string(&state).unwrap();
    let back: GateState = serde_json::from_str(&text).unwrap();
    assert_eq!(back, state);
    assert!(!state.queues.is_empty());
    // An older state without the waiting room's fields still loads.
    let old: Value = serde_json::from_str(&text).unwrap();
    let mut old = old.as_object().unwrap().clone();
    old.remove("queues");
    old.remove("claims");
    let loaded: GateState = serde_json::from_value(Value::Object(old)).unwrap();
    assert!(loaded.queues.is_empty());
    // The page and flashgate-load send these names.
    assert_eq!(PLACE_HEADER, "x-flashgate-place");
    assert_eq!(WAIT_HEADER, "x-flashgate-wait-ms");
}

/// An edge that keeps nothing between requests (the plain Spin build under `wasmtime serve`)
/// answers every join and poll from a fresh state: each poll fetches what it needs (the
/// directory, the sale, the line) within its one exchange and is answered, never `503`.
#[test]
fn an_edge_that_remembers_nothing_answers_every_poll() {
    let gate = Gate::new(config());
    let mut wh = Warehouse::new();
    let mut alice = Shopper::new("alice");
    wh.seat("alice", Ticket::from_raw(1 << 61), 3);
    let now = START - 30_000;
    let (status, joined) = join(&gate, &mut GateState::default(), &mut wh, &mut alice, now);
    assert_eq!(
        (status, &joined["state"]),
        (200, &json!("waiting")),
        "{joined}"
    );
    wh.take_calls();
    for at in [now + 1_000, START + 1_000] {
        let (status, view) = poll(&gate, &mut GateState::default(), &mut wh, &alice, at);
        assert_eq!(status, 200, "{view}");
        assert_eq!(view["state"], "waiting");
        // The line brings the sale's view: no directory or sale read beside it.
        let calls = std::mem::take(&mut wh.calls);
        assert_eq!(calls, vec![GET_QUEUE], "one call per stateless poll");
    }
    // A warehouse whose line comes without the sale: the sale is read as well.
    wh.line_carries_sale = false;
    let (status, view) = poll(
        &gate,
        &mut GateState::default(),
        &mut wh,
        &alice,
        START + 2_000,
    );
    assert_eq!((status, &view["state"]), (200, &json!("waiting")), "{view}");
    let calls = std::mem::take(&mut wh.calls);
    assert_eq!(
        calls,
        vec![GET_QUEUE, "/flashsale.Admin/ListEvents", GET_EVENT]
    );
}

/// A place is polled no faster than the page's quickest advised pace: a bot polling every
/// 100 ms is refused most of its polls with `Retry-After`, a page polling as told never is.
#[test]
fn polls_of_one_place_are_paced_like_the_page() {
    let gate = Gate::new(config());
    let mut state = GateState::default();
    let mut wh = Warehouse::new();
    let (mut bot, mut page) = (Shopper::new("bot"), Shopper::new("page"));
    wh.seat("bot", Ticket::from_raw(1 << 60), 1);
    wh.seat("page", Ticket::from_raw(1 << 61), 2);
    let now = START - 30_000;
    for who in [&mut bot, &mut page] {
        let (status, joined) = join(&gate, &mut state, &mut wh, who, now);
        assert_eq!(status, 200, "{joined}");
    }
    // Five seconds, in time order: the bot every 100 ms, the page every 500 ms.
    let (mut answered, mut refused) = (0, 0);
    for step in 1..=50 {
        let at = now + step * 100;
        let (status, view) = poll(&gate, &mut state, &mut wh, &bot, at);
        match status {
            200 => answered += 1,
            429 => {
                assert_eq!(view["code"], "rate_limited");
                assert!(view["retry_after"].as_u64().is_some_and(|s| s >= 1));
                refused += 1;
            }
            other => panic!("{other}: {view}"),
        }
        if step % 5 == 0 {
            let (status, view) = poll(&gate, &mut state, &mut wh, &page, at);
            assert_eq!(status, 200, "the page's pace is never refused: {view}");
        }
    }
    // The burst of 3, then 2 a second.
    assert!(
        (11..=13).contains(&answered),
        "{answered} answered, {refused} refused"
    );
}

/// A line being polled keeps its sale's view at the edge: polls read the view without
/// refreshing it, so were it forgotten after `sale_memory_ms`, every poll in flight would ask
/// the warehouse for the sale again.
#[test]
fn a_polled_line_keeps_its_sale_view() {
    let gate = Gate::new(config());
    let memory = gate.config().sale_memory_ms;
    let mut state = GateState::default();
    let mut wh = Warehouse::new();
    let mut alice = Shopper::new("alice");
    wh.seat("alice", Ticket::from_raw(1 << 61), 3);
    let now = START - 30_000;
    let (status, joined) = join(&gate, &mut state, &mut wh, &mut alice, now);
    assert_eq!(status, 200, "{joined}");
    wh.calls.clear();
    for step in 1..=((memory + 10_000) / 500) {
        let (status, view) = poll(&gate, &mut state, &mut wh, &alice, now + step * 500);
        assert_eq!(status, 200, "{view}");
    }
    let sale_reads = wh
        .calls
        .iter()
        .filter(|c| c.starts_with("/flashsale.Admin/"))
        .count();
    assert_eq!(sale_reads, 0, "{:?}", wh.calls);
}

fn count(calls: &[&str], path: &str) -> usize {
    calls.iter().filter(|c| **c == path).count()
}

const GET_EVENT: &str = "/flashsale.Admin/GetEvent";

/// Sale 7's line at an edge whose sale views last a second (the default): alice joined a
/// second after the start, bob to browse the sale's page.
struct Room {
    gate: Gate,
    state: GateState,
    wh: Warehouse,
    alice: Shopper,
    bob: Shopper,
    /// When alice joined.
    now: i64,
}

impl Room {
    /// `line_carries_sale`: whether the warehouse's line replies carry the sale.
    fn joined(line_carries_sale: bool) -> Room {
        let mut config = config();
        config.sale_ttl_ms = 1_000;
        let gate = Gate::new(config);
        let mut state = GateState::default();
        let mut wh = Warehouse::new();
        wh.line_carries_sale = line_carries_sale;
        let (mut alice, bob) = (Shopper::new("alice"), Shopper::new("bob"));
        wh.seat("alice", Ticket::arrival(0), 0);
        let now = START + 1_000;
        let (status, joined) = join(&gate, &mut state, &mut wh, &mut alice, now);
        assert_eq!(status, 200, "{joined}");
        Room {
            gate,
            state,
            wh,
            alice,
            bob,
            now,
        }
    }

    /// Over `seconds` from `from`: `GET /api/events/7` by bob (the page's sale view) four times
    /// a second and a poll of alice's place twice (as paced), each answered 200. The calls they
    /// cost.
    fn browse(&mut self, from: i64, seconds: i64) -> Vec<&'static str> {
        let Room {
            gate,
            state,
            wh,
            alice,
            bob,
            ..
        } = self;
        wh.calls.clear();
        for step in 0..seconds * 4 {
            let at = from + step * 250;
            let page = wh.serve(gate, state, &bob.request("GET", "/api/events/7", b"", at));
            assert_eq!(page.status, 200, "{}", page.body);
            if step % 2 == 0 {
                let (status, view) = poll(gate, state, wh, alice, at + 10);
                assert_eq!(status, 200, "{view}");
            }
        }
        std::mem::take(&mut wh.calls)
    }
}

/// A waiting-room sale's view comes with its line's snapshot: the page's sale reads and the
/// polls of a second cost one `GetQueue` between them, never a `GetEvent`, and what changes in
/// the sale reaches the page with the line's next refresh.
#[test]
fn a_room_sale_s_view_comes_with_its_line_at_no_cost_of_its_own() {
    let mut room = Room::joined(true);

    let calls = room.browse(room.now + 500, 20);
    assert_eq!(count(&calls, GET_EVENT), 0, "{calls:?}");
    let refreshes = count(&calls, GET_QUEUE);
    assert!((19..=21).contains(&refreshes), "one a second: {calls:?}");
    assert_eq!(calls.len(), refreshes, "nothing else: {calls:?}");

    // The pool runs dry: the page says so after the line's next refresh.
    room.wh.sale_remaining = 0;
    let at = room.now + 21_000;
    let mut told = None;
    for step in 0..8 {
        let page = room.wh.serve(
            &room.gate,
            &mut room.state,
            &room
                .bob
                .request("GET", "/api/events/7", b"", at + step * 250),
        );
        let (_, body) = json_of(&page);
        if body["remaining"] == 0 {
            told = Some(step * 250);
            break;
        }
    }
    let told = told.expect("the page learns the pool's end with the line");
    assert!(told <= 1_000, "within a refresh: {told} ms");
    assert_eq!(count(&room.wh.calls, GET_EVENT), 0, "{:?}", room.wh.calls);
}

/// Against a warehouse whose line's replies carry no sale, the sale view is refreshed on its
/// own, as before: once per `sale_ttl_ms`.
#[test]
fn a_line_without_the_sale_leaves_the_view_to_its_own_refresh() {
    let mut room = Room::joined(false);
    let calls = room.browse(room.now + 500, 20);
    let (reads, refreshes) = (count(&calls, GET_EVENT), count(&calls, GET_QUEUE));
    assert!((19..=21).contains(&reads), "one a second: {calls:?}");
    assert!((19..=21).contains(&refreshes), "one a second: {calls:?}");
}

/// A sale that is gone answers its line's refresh `NOT_FOUND`: the edge forgets the sale as a
/// `GetEvent` would have it, and its page says so without asking again.
#[test]
fn a_line_refresh_that_finds_the_sale_gone_forgets_the_sale() {
    let mut room = Room::joined(true);
    room.browse(room.now + 500, 2);
    room.wh.gone = true;
    let at = room.now + 4_000;
    let page = room.wh.serve(
        &room.gate,
        &mut room.state,
        &room.bob.request("GET", "/api/events/7", b"", at),
    );
    assert_eq!(page.status, 404, "{}", page.body);
    assert_eq!(room.wh.calls, vec![GET_QUEUE]);
    let again = room.wh.serve(
        &room.gate,
        &mut room.state,
        &room.bob.request("GET", "/api/events/7", b"", at + 100),
    );
    assert_eq!(again.status, 404, "{}", again.body);
    assert_eq!(room.wh.calls, vec![GET_QUEUE], "remembered");
    // For as long as a view lasts: the sale put again under its id is found by a poll after.
    room.wh.gone = false;
    let (status, view) = poll(
        &room.gate,
        &mut room.state,
        &mut room.wh,
        &room.alice,
        at + 1_200,
    );
    assert_eq!((status, &view["state"]), (200, &json!("waiting")), "{view}");
}

/// A sale whose waiting room is turned off (`PutEvent` again, `waiting_room: false`) answers its
/// line's refresh `FAILED_PRECONDITION`: the edge stops taking the line for the view's carrier,
/// reads the sale, and its page and polls say there is no line.
#[test]
fn a_room_turned_off_is_noticed_by_the_sale_s_next_read() {
    let mut room = Room::joined(true);
    room.browse(room.now + 500, 2);
    room.wh.waiting_room = false;
    room.wh.calls.clear();
    let at = room.now + 4_000;
    let mut pages = Vec::new();
    for step in 0..3 {
        let req = room
            .bob
            .request("GET", "/api/events/7", b"", at + step * 10);
        pages.push(json_of(&room.wh.serve(&room.gate, &mut room.state, &req)));
        if pages.last().unwrap().1["waiting_room"] == false {
            break;
        }
    }
    assert_eq!(room.wh.calls, vec![GET_QUEUE, GET_EVENT], "{pages:?}");
    assert_eq!(pages.last().unwrap().0, 200, "{pages:?}");
    let (status, refused) = poll(
        &room.gate,
        &mut room.state,
        &mut room.wh,
        &room.alice,
        at + 600,
    );
    assert_eq!(
        (status, &refused["code"]),
        (409, &json!("no_queue")),
        "{refused}"
    );
}

/// A fresh edge and warehouse with `user` joined at `now` on the ticket of arrival `rank`,
/// polling with `wait` ms asked: the edge's state, the warehouse and the shopper.
fn held_place(
    gate: &Gate,
    user: &str,
    rank: u64,
    wait: &str,
    now: i64,
) -> (GateState, Warehouse, Shopper) {
    let (mut state, mut wh) = (GateState::default(), Warehouse::new());
    let mut who = Shopper::new(user);
    wh.seat(user, Ticket::arrival(rank), rank as i64);
    join(gate, &mut state, &mut wh, &mut who, now);
    who.wait = Some(wait.into());
    (state, wh, who)
}

#[test]
fn a_held_poll_is_answered_when_its_news_comes_at_no_extra_origin_cost() {
    let gate = Gate::new(config()).holding_polls();
    let now = START + 5_000;
    let (mut state, mut wh, ann) = held_place(&gate, "ann", 50, "20000", now);
    wh.take_calls();

    // Sold out 3.1 s into the hold: the answer comes within a refresh and a tick of it, and the
    // hold cost one GetQueue per refresh, not one per tick (nor a rate limit per decision).
    let sold_at = now + 3_100;
    let req = ann.request("GET", "/api/events/7/queue", b"", now);
    let first = wh.serve(&gate, &mut state, &req);
    let (status, body) = json_of(&first);
    assert_eq!((status, body["state"].as_str()), (200, Some("waiting")));
    assert_eq!(body["poll_after_ms"], 0, "the next poll is held again");
    assert!(first.hold.is_some());
    let (answer, at) = wh.serve_held(&gate, &mut state, &req, |wh, t| {
        if t >= sold_at {
            wh.snapshot.remaining = 0;
            wh.snapshot.sold_out = true;
        }
    });
    assert_eq!(json_of(&answer).1["state"], "sold_out");
    let refresh = gate.config().queue_refresh_ms;
    assert!(
        at >= sold_at && at <= sold_at + refresh + HOLD_TICK_MS as i64,
        "told {} ms after the sell-out",
        at - sold_at
    );
    let snapshots = wh.take_calls();
    assert!(snapshots.iter().all(|c| *c == GET_QUEUE));
    assert!(
        snapshots.len() as i64 <= (at - now) / refresh + 1,
        "{} snapshots in {} ms",
        snapshots.len(),
        at - now
    );

    // The front of the line (nothing ahead: every unit held by an unpaid order) is told too,
    // as soon as the held units are sold: a sold-out answer is never held.
    let (mut state, mut wh, dee) = held_place(&gate, "dee", 1, "20000", now);
    wh.snapshot.admitted = 1;
    wh.snapshot.opened = 1;
    wh.snapshot.remaining = 0;
    wh.snapshot.held = 1;
    let req = dee.request("GET", "/api/events/7/queue", b"", now);
    let (answer, at) = wh.serve_held(&gate, &mut state, &req, |wh, t| {
        if t >= sold_at {
            wh.snapshot.held = 0;
            wh.snapshot.sold_out = true;
        }
    });
    assert_eq!(json_of(&answer).1["state"], "sold_out");
    assert_eq!(answer.hold, None);
    assert!(
        at <= sold_at + refresh + HOLD_TICK_MS as i64,
        "told at {at}"
    );

    // The line moving by a tenth is news too; less is not.
    let (mut state, mut wh, bob) = held_place(&gate, "bob", 50, "20000", now);
    let req = bob.request("GET", "/api/events/7/queue", b"", now);
    let (answer, at) = wh.serve_held(&gate, &mut state, &req, |wh, t| {
        wh.snapshot.opened = match t - now {
            ..2_000 => 0,
            2_000..6_000 => 3,
            _ => 10,
        };
        wh.snapshot.admitted = wh.snapshot.opened;
    });
    let body = json_of(&answer).1;
    assert_eq!(
        (body["state"].as_str(), body["ahead"].as_u64()),
        (Some("waiting"), Some(40))
    );
    assert!(at >= now + 6_000, "3 places of 50 is no news");

    // Its time up, a hold answers what it has.
    let (mut state, mut wh, cy) = held_place(&gate, "cy", 50, "4000", now);
    let req = cy.request("GET", "/api/events/7/queue", b"", now);
    let (answer, at) = wh.serve_held(&gate, &mut state, &req, |_, _| {});
    assert_eq!(json_of(&answer).1["state"], "waiting");
    assert_eq!(at, now + 4_000);
}

#[test]
fn a_gate_that_cannot_hold_answers_a_poll_that_asks_to_wait_at_once() {
    let gate = Gate::new(config());
    let now = START + 5_000;
    let (mut state, mut wh, ann) = held_place(&gate, "ann", 50, "20000", now);
    let response = wh.serve(
        &gate,
        &mut state,
        &ann.request("GET", "/api/events/7/queue", b"", now),
    );
    assert_eq!(response.hold, None);
    let body = json_of(&response).1;
    assert!(body["poll_after_ms"].as_u64().unwrap() >= 500, "{body}");
}

#[test]
fn a_room_sale_with_units_held_still_hands_out_challenges_for_its_line() {
    let gate = Gate::new(config());
    let mut state = GateState::default();
    let mut wh = Warehouse::new();
    // The pool is empty, but two units sit in unpaid orders and may come back: the line would
    // admit the next places then, so a late buyer may still join it.
    wh.sale_remaining = 0;
    wh.snapshot.remaining = 0;
    wh.snapshot.held = 2;
    let late = Shopper::new("late");
    let now = START + 5_000;
    let challenge = |wh: &mut Warehouse, state: &mut GateState, at| {
        json_of(&wh.serve(
            &gate,
            state,
            &late.request("POST", "/api/events/7/challenge", b"", at),
        ))
    };
    let (status, body) = challenge(&mut wh, &mut state, now);
    assert_eq!(status, 200, "{body}");
    assert!(body["challenge"].as_str().is_some());
    // Nothing held any more: the line says sold out for good, and so does the challenge route,
    // from the next copy of the line.
    wh.snapshot.held = 0;
    wh.snapshot.sold_out = true;
    let (status, body) = challenge(&mut wh, &mut state, now + 2_000);
    assert_eq!(
        (status, body["code"].as_str()),
        (410, Some("sold_out")),
        "{body}"
    );
    // A sale without a line is sold out with its pool, as before.
    let mut plain = Warehouse::new();
    plain.waiting_room = false;
    plain.sale_remaining = 0;
    let mut fresh = GateState::default();
    let (status, _) = challenge(&mut plain, &mut fresh, now);
    assert_eq!(status, 410);
}

/// A join through a gate that gathers joins, started at `now`: its exchange (waiting for its
/// batch) and its request's body.
fn gathered_join(
    gate: &Gate,
    state: &mut GateState,
    wh: &mut Warehouse,
    who: &Shopper,
    now: i64,
) -> (Exchange, i64, String) {
    let body = solved(gate, state, wh, who, now);
    let req = who.request("POST", "/api/events/7/queue", body.as_bytes(), now);
    let mut exchange = Exchange::default();
    let next = exchange.start(gate, &req, state);
    let Next::Wait { until_ms } = next else {
        panic!("a gathered join waits for its batch: {next:?}");
    };
    (exchange, until_ms, body)
}

/// Hands the warehouse's reply to `batch` to the exchange that sent it, at `now`.
fn answer_batch(
    gate: &Gate,
    state: &mut GateState,
    wh: &mut Warehouse,
    (who, body): (&Shopper, &str),
    exchange: &mut Exchange,
    batch: &Forward,
    now: i64,
) -> Next {
    let reply = wh.answer(batch, now);
    let req = who.request("POST", "/api/events/7/queue", body.as_bytes(), now);
    exchange.reply(gate, &req, state, batch, http(&reply), now)
}

fn responded(next: Next) -> (u16, Value) {
    match next {
        Next::Respond(response) => json_of(&response),
        other => panic!("expected an answer, got {other:?}"),
    }
}

#[test]
fn gathered_joins_cost_one_call_per_batch_and_each_gets_its_own_place() {
    let gate = Gate::new(config()).gathering_joins();
    let batch_ms = config().queue_join_batch_ms;
    let mut state = GateState::default();
    let mut wh = Warehouse::new();
    let users: Vec<String> = (0..30).map(|i| format!("u{i:02}")).collect();
    let shoppers: Vec<Shopper> = users.iter().map(|u| Shopper::new(u)).collect();
    for (i, user) in users.iter().enumerate() {
        wh.seat(user, Ticket::from_raw(1_000 + i as u64), i as i64);
    }

    // Thirty joins in the pre-queue, 10 ms apart: each waits for the batch, none calls.
    let opened = START - 30_000;
    let mut joins = Vec::new();
    for (i, who) in shoppers.iter().enumerate() {
        let (exchange, until_ms, body) =
            gathered_join(&gate, &mut state, &mut wh, who, opened + 10 * i as i64);
        assert_eq!(
            until_ms,
            opened + batch_ms,
            "due an interval after the first"
        );
        joins.push((exchange, body));
    }
    assert!(wh.take_calls().is_empty());

    // Due: the first to look sends every join of the sale, in arrival order; the others wait
    // a tick while it is out (one call in flight per sale).
    let due = opened + batch_ms;
    let Next::Send(batch) = joins[0].0.check(&gate, &mut state, due) else {
        panic!("the first to look sends the batch");
    };
    assert_eq!(batch.path, JOIN_MANY);
    let sent = JoinQueueManyReq::decode(&batch.body[5..]).unwrap();
    assert_eq!((sent.event_id, &sent.user_ids), (7, &users));
    for (exchange, _) in &mut joins[1..] {
        let next = exchange.check(&gate, &mut state, due + 5);
        assert_eq!(
            next,
            Next::Wait {
                until_ms: due + 5 + JOIN_TICK_MS
            }
        );
    }

    // The reply answers the sender, and every other join from the state: its own place.
    let (first, rest) = joins.split_first_mut().unwrap();
    let who = (&shoppers[0], first.1.as_str());
    let next = answer_batch(
        &gate,
        &mut state,
        &mut wh,
        who,
        &mut first.0,
        &batch,
        due + 20,
    );
    let mut tokens = Vec::new();
    for (i, next) in std::iter::once(next)
        .chain(
            rest.iter_mut()
                .map(|(e, _)| e.check(&gate, &mut state, due + 70)),
        )
        .enumerate()
    {
        let (status, answer) = responded(next);
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["state"], "waiting");
        assert_eq!(answer["position"], i + 1, "{}'s own place", users[i]);
        tokens.push(answer["place"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        wh.take_calls(),
        vec![JOIN_MANY],
        "one call for thirty joins"
    );

    // Each token is its holder's place: a poll with it is answered, another's is refused.
    let mut u07 = Shopper::new("u07");
    u07.place = Some(tokens[7].clone());
    let (status, polled) = poll(&gate, &mut state, &mut wh, &u07, due + 100);
    assert_eq!(
        (status, &polled["state"]),
        (200, &json!("waiting")),
        "{polled}"
    );
    u07.place = Some(tokens[8].clone());
    let (status, _) = poll(&gate, &mut state, &mut wh, &u07, due + 2_000);
    assert_eq!(status, 403, "u08's place is not u07's");
}

#[test]
fn a_gathered_batch_reaches_the_warehouse_before_the_start_so_its_joins_are_drawn() {
    let gate = Gate::new(config()).gathering_joins();
    let batch_ms = config().queue_join_batch_ms;
    let mut state = GateState::default();
    let mut wh = Warehouse::new();
    for (i, user) in ["ann", "bob", "cy"].iter().enumerate() {
        wh.seat(user, Ticket::from_raw(5 + i as u64), i as i64);
    }
    let [ann, bob, cy] = ["ann", "bob", "cy"].map(Shopper::new);
    // Gathered 1.5 s before the start: sent by the lead before it, not an interval later.
    let (_, until_ms, _) = gathered_join(&gate, &mut state, &mut wh, &ann, START - 1_500);
    assert_eq!(
        until_ms,
        START - JOIN_START_LEAD_MS,
        "sent before the start, not after"
    );
    // Closer to the start: gathered briefly, and a batch out does not hold the next one back.
    let mut state = GateState::default();
    let (mut first, until_ms, _) = gathered_join(&gate, &mut state, &mut wh, &bob, START - 600);
    assert_eq!(until_ms, START - 600 + JOIN_CLOSE_GATHER_MS);
    assert!(matches!(
        first.check(&gate, &mut state, until_ms),
        Next::Send(_)
    ));
    let (mut second, until_ms, _) = gathered_join(&gate, &mut state, &mut wh, &cy, START - 450);
    let Next::Send(next) = second.check(&gate, &mut state, until_ms) else {
        panic!("sent while bob's batch is out");
    };
    assert_eq!(
        JoinQueueManyReq::decode(&next.body[5..]).unwrap().user_ids,
        ["cy"]
    );
    // After the start, an arrival: the whole interval.
    let mut state = GateState::default();
    let (_, until_ms, _) = gathered_join(&gate, &mut state, &mut wh, &ann, START + 100);
    assert_eq!(until_ms, START + 100 + batch_ms);
}

#[test]
fn a_batch_whose_sender_vanished_is_sent_again_and_a_failed_one_answers_every_join() {
    let gate = Gate::new(config()).gathering_joins();
    let batch_ms = config().queue_join_batch_ms;
    let origin_timeout = config().origin_timeout_ms;
    let mut state = GateState::default();
    let mut wh = Warehouse::new();
    let shoppers: Vec<Shopper> = ["ann", "bob", "cy"].map(Shopper::new).into();
    for (i, user) in ["ann", "bob", "cy"].iter().enumerate() {
        wh.seat(user, Ticket::from_raw(10 + i as u64), i as i64);
    }
    let opened = START - 10_000;
    let mut joins: Vec<_> = shoppers
        .iter()
        .map(|who| gathered_join(&gate, &mut state, &mut wh, who, opened))
        .collect();
    // The same user joining again meanwhile is gathered once.
    let again = gathered_join(&gate, &mut state, &mut wh, &shoppers[1], opened + 10);
    joins.push(again);
    let due = opened + batch_ms;
    let Next::Send(lost) = joins[0].0.check(&gate, &mut state, due) else {
        panic!("sent");
    };
    assert_eq!(
        JoinQueueManyReq::decode(&lost.body[5..]).unwrap().user_ids,
        ["ann", "bob", "cy"]
    );
    // Its sender never comes back (a cancelled request). Within the origin timeout the others
    // wait; past it, the next to look sends the same joins again.
    let within = due + origin_timeout;
    assert!(matches!(
        joins[1].0.check(&gate, &mut state, within),
        Next::Wait { .. }
    ));
    let past = due + origin_timeout + JOIN_TICK_MS + 1;
    let Next::Send(resent) = joins[1].0.check(&gate, &mut state, past) else {
        panic!("gathered again and sent");
    };
    assert_eq!(
        JoinQueueManyReq::decode(&resent.body[5..])
            .unwrap()
            .user_ids,
        ["ann", "bob", "cy"]
    );
    // The warehouse does not answer it: every join of the batch is told to come back.
    let body = joins[1].2.clone();
    let req = shoppers[1].request("POST", "/api/events/7/queue", body.as_bytes(), past);
    let next = joins[1].0.reply(
        &gate,
        &req,
        &mut state,
        &resent,
        OriginReply::Failed,
        past + 5,
    );
    let (status, refused) = responded(next);
    assert_eq!(
        (status, &refused["code"]),
        (503, &json!("unavailable")),
        "{refused}"
    );
    for i in [0, 2, 3] {
        let (status, _) = responded(joins[i].0.check(&gate, &mut state, past + 10));
        assert_eq!(status, 503, "join {i}");
    }
    assert_eq!(
        wh.take_calls(),
        Vec::<&str>::new(),
        "the test answered none"
    );
}

#[test]
fn a_full_batch_is_sent_at_once_and_the_rest_right_after_it() {
    use flashgate_core::admission::JOIN_MANY_MAX;
    let gate = Gate::new(config()).gathering_joins();
    let mut state = GateState::default();
    let mut wh = Warehouse::new();
    let n = JOIN_MANY_MAX + 3;
    let users: Vec<String> = (0..n).map(|i| format!("u{i:04}")).collect();
    for (i, user) in users.iter().enumerate() {
        wh.seat(user, Ticket::from_raw(1 + i as u64), i as i64);
    }
    let opened = START - 50_000;
    let mut joins = Vec::new();
    for (i, user) in users.iter().enumerate() {
        let who = Shopper::new(user);
        let (exchange, until_ms, _) = gathered_join(&gate, &mut state, &mut wh, &who, opened + 1);
        if i + 1 == JOIN_MANY_MAX {
            assert_eq!(until_ms, opened + 1, "the batch is full: due at once");
        }
        joins.push((who, exchange));
    }
    let now = opened + 2;
    let Next::Send(full) = joins[0].1.check(&gate, &mut state, now) else {
        panic!("sent");
    };
    let sent = JoinQueueManyReq::decode(&full.body[5..]).unwrap().user_ids;
    assert_eq!(sent, users[..JOIN_MANY_MAX]);
    let reply = wh.answer(&full, now);
    let (who, exchange) = &mut joins[0];
    let req = who.request("POST", "/api/events/7/queue", b"{}", now);
    let next = exchange.reply(&gate, &req, &mut state, &full, http(&reply), now);
    assert_eq!(responded(next).0, 200);
    // The overflow is due an interval after its batch opened (sooner only if it fills up).
    let due = opened + 1 + config().queue_join_batch_ms;
    let last = joins.last_mut().unwrap();
    let next = last.1.check(&gate, &mut state, now + 1);
    assert_eq!(next, Next::Wait { until_ms: due });
    let Next::Send(rest) = last.1.check(&gate, &mut state, due) else {
        panic!("the rest is due");
    };
    let sent = JoinQueueManyReq::decode(&rest.body[5..]).unwrap().user_ids;
    assert_eq!(sent, users[JOIN_MANY_MAX..]);
}

#[test]
fn a_gate_that_does_not_gather_sends_each_join_alone() {
    let gate = Gate::new(config());
    let mut state = GateState::default();
    let mut wh = Warehouse::new();
    for (i, user) in ["ann", "bob"].iter().enumerate() {
        wh.seat(user, Ticket::from_raw(1 + i as u64), i as i64);
        let mut who = Shopper::new(user);
        let (status, _) = join(&gate, &mut state, &mut wh, &mut who, START - 5_000);
        assert_eq!(status, 200);
    }
    assert_eq!(wh.take_calls(), vec![JOIN, JOIN]);
}

/// A gate that gathers joins, with sale views lasting a second (the default), and how long a
/// batch may take to answer (gathered, sent, replied to).
fn gathering_with_fast_views() -> (Gate, i64) {
    let mut config = config();
    config.sale_ttl_ms = 1_000;
    let bound = config.queue_join_batch_ms + config.origin_timeout_ms + JOIN_TICK_MS;
    (Gate::new(config).gathering_joins(), bound)
}

/// `who` joins at `t0` through a gathering gate, alone in a batch sent when due (a batch
/// interval later) and answered 10 ms after: the join's answer.
fn joined_alone(
    gate: &Gate,
    state: &mut GateState,
    wh: &mut Warehouse,
    who: &Shopper,
    t0: i64,
) -> (u16, Value) {
    let (mut exchange, _, body) = gathered_join(gate, state, wh, who, t0);
    let due = t0 + gate.config().queue_join_batch_ms;
    let Next::Send(batch) = exchange.check(gate, state, due) else {
        panic!("the batch is due");
    };
    let next = answer_batch(
        gate,
        state,
        wh,
        (who, &body),
        &mut exchange,
        &batch,
        due + 10,
    );
    responded(next)
}

/// Before an isolate has a sale's line, the joins it gathered bring it: while a batch is
/// gathered or out, the sale's view waits for its answer instead of being read again, for as
/// long as a batch may take; then the line refreshes the view.
#[test]
fn a_batch_of_joins_brings_the_sale_s_view_with_its_line() {
    let (gate, bound) = gathering_with_fast_views();
    let mut state = GateState::default();
    let mut wh = Warehouse::new();
    let (ann, bob) = (Shopper::new("ann"), Shopper::new("bob"));
    wh.seat("ann", Ticket::from_raw(10), 0);
    let t0 = START - 10_000;
    let (mut exchange, _, body) = gathered_join(&gate, &mut state, &mut wh, &ann, t0);
    assert_eq!(
        count(&wh.calls, GET_EVENT),
        1,
        "the first read: {:?}",
        wh.calls
    );
    let challenge = |wh: &mut Warehouse, state: &mut GateState, at: i64| {
        wh.calls.clear();
        let req = bob.request("POST", "/api/events/7/challenge", b"", at);
        let issued = wh.serve(&gate, state, &req);
        assert_eq!(issued.status, 200, "{}", issued.body);
        std::mem::take(&mut wh.calls)
    };
    // The view is stale and the batch still gathered, then out: no read of the sale.
    assert_eq!(
        challenge(&mut wh, &mut state, t0 + 1_200),
        Vec::<&str>::new()
    );
    let Next::Send(batch) = exchange.check(&gate, &mut state, t0 + 1_300) else {
        panic!("the batch is due");
    };
    assert_eq!(
        challenge(&mut wh, &mut state, t0 + 2_500),
        Vec::<&str>::new()
    );
    // Its answer is late past any batch's time: the view is read again.
    assert_eq!(
        challenge(&mut wh, &mut state, t0 + bound + 10),
        vec![GET_EVENT]
    );
    // The answer brings the line and the sale: from then on the line's refresh is the view's.
    let at = t0 + bound + 100;
    let next = answer_batch(
        &gate,
        &mut state,
        &mut wh,
        (&ann, &body),
        &mut exchange,
        &batch,
        at,
    );
    assert_eq!(responded(next).0, 200);
    assert_eq!(challenge(&mut wh, &mut state, at + 1_100), vec![GET_QUEUE]);
}

/// Against a warehouse whose batches answer without the line, gathered joins vouch for nothing:
/// the view is read as often as it would be without them.
#[test]
fn joins_answered_without_the_line_leave_the_view_to_its_own_reads() {
    let (gate, _) = gathering_with_fast_views();
    let mut state = GateState::default();
    let mut wh = Warehouse::new();
    wh.line_carries_sale = false;
    let (ann, bob, cy) = (Shopper::new("ann"), Shopper::new("bob"), Shopper::new("cy"));
    wh.seat("ann", Ticket::from_raw(10), 0);
    wh.seat("bob", Ticket::from_raw(11), 1);
    let t0 = START - 10_000;
    let (status, _) = joined_alone(&gate, &mut state, &mut wh, &ann, t0);
    assert_eq!(status, 200);
    // Bob's join is gathered (his challenge read the view again), and a second later the view
    // is stale: it is read, not left to his batch.
    let _second = gathered_join(&gate, &mut state, &mut wh, &bob, t0 + 1_100);
    wh.calls.clear();
    let req = cy.request("POST", "/api/events/7/challenge", b"", t0 + 2_200);
    assert_eq!(wh.serve(&gate, &mut state, &req).status, 200);
    assert_eq!(wh.calls, vec![GET_EVENT]);
}

/// A key-value build's state stored before the line carried the sale still loads: its lines
/// carry nothing, so their views are read as before.
#[test]
fn a_line_stored_before_it_carried_the_sale_still_loads() {
    let stored = r#"{"snapshot":null,"fetched_ms":5,"asked_ms":7}"#;
    let entry: flashgate_core::gate::QueueEntry = serde_json::from_str(stored).unwrap();
    assert_eq!(
        (entry.fetched_ms, entry.asked_ms, entry.carries_sale),
        (5, Some(7), false)
    );
}

/// Before the start, a batch of joins gathered or out brings the line with its answer: a poll
/// finding the line stale is answered from it rather than sending a refresh beside the batch,
/// for as long as a batch may take.
#[test]
fn before_the_start_a_batch_of_joins_stands_in_for_the_line_s_refresh() {
    let (gate, bound) = gathering_with_fast_views();
    let mut state = GateState::default();
    let mut wh = Warehouse::new();
    let (mut ann, bob) = (Shopper::new("ann"), Shopper::new("bob"));
    wh.seat("ann", Ticket::from_raw(10), 0);
    wh.seat("bob", Ticket::from_raw(11), 1);
    let t0 = START - 30_000;
    let (status, joined) = joined_alone(&gate, &mut state, &mut wh, &ann, t0);
    let answered = t0 + 1_010;
    assert_eq!(status, 200, "{joined}");
    ann.place = joined["place"].as_str().map(str::to_owned);
    // Bob's join is gathered; ann's poll finds the line stale: answered from it, no call.
    let _second = gathered_join(&gate, &mut state, &mut wh, &bob, answered + 500);
    wh.calls.clear();
    let (status, view) = poll(&gate, &mut state, &mut wh, &ann, answered + 1_100);
    assert_eq!((status, &view["state"]), (200, &json!("waiting")), "{view}");
    assert_eq!(wh.calls, Vec::<&str>::new());
    // Past a batch's time the line is refreshed all the same.
    let (status, _) = poll(&gate, &mut state, &mut wh, &ann, answered + bound + 10);
    assert_eq!(status, 200);
    assert_eq!(wh.calls, vec![GET_QUEUE]);
}

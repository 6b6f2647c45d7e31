//! What one request costs the edge: verifying a purchase link, verifying a proof-of-work answer,
//! the gate's full verdict for a buy (every check passed, the forward built and signed), and a
//! waiting room's poll answered from the instance's cached snapshot of the line.
//! Target: a full gate verdict ≤ 20 µs natively.

use criterion::{criterion_group, criterion_main, Criterion};
use flashgate_core::admission::Ticket;
use flashgate_core::gate::{
    Currency, Gate, GateConfig, GateState, Headers, NetworkLimit, QueueEntry, Request,
    RoomSnapshot, SaleEntry, SaleView, Verdict,
};
use flashgate_core::identity::{self, Identity, TokenPolicy, UserKeys};
use flashgate_core::link::{self, Expect, KeyRing, LinkClaims};
use flashgate_core::place::{self, PlaceClaims};
use flashgate_core::pow::{self, Challenge};
use std::hint::black_box;

const START: i64 = 1_764_064_800_000;
const USER_KEY: &[u8] = b"shop-session-key-0123456789abcdef";

fn user_keys() -> UserKeys {
    UserKeys::single(USER_KEY).unwrap()
}

fn ring() -> KeyRing {
    KeyRing::single(b"link-key-0123456789abcdef").unwrap()
}

fn claims() -> LinkClaims {
    LinkClaims {
        event_id: 7,
        sku_id: 42,
        user_id: "user-0123456789".into(),
        max_qty: 2,
        not_before_ms: START,
        expires_ms: START + 3_600_000,
        nonce: [7; 16],
    }
}

fn link_verify(c: &mut Criterion) {
    let token = link::mint(&ring(), &claims(), START).unwrap();
    let ring = ring();
    let expect = Expect {
        user_id: "user-0123456789",
        event_id: Some(7),
        qty: 1,
    };
    c.bench_function("link verify", |b| {
        b.iter(|| link::verify(&ring, black_box(&token), &expect, START + 1))
    });
}

fn pow_verify(c: &mut Criterion) {
    let ring = ring();
    let challenge = Challenge {
        event_id: 7,
        user_id: "user-0123456789".into(),
        seed: [1; 16],
        bits: 12,
        expires_ms: START + 60_000,
    };
    let token = pow::issue(&ring, &challenge).unwrap();
    let nonce = pow::solve(&token, 12, 0, 1 << 24).unwrap();
    c.bench_function("pow verify", |b| {
        b.iter(|| {
            pow::verify(
                &ring,
                black_box(&token),
                nonce,
                "user-0123456789",
                7,
                12,
                START,
            )
        })
    });
}

fn gate_verdict(c: &mut Criterion) {
    let mut config = GateConfig::new(ring(), user_keys(), b"origin-key-0123456789abcdef");
    let open = "1000/ms burst 1000".parse().unwrap();
    config.limits.ip = open;
    config.limits.user = open;
    config.limits.event = open;
    config.limits.sku = open;
    config.limits.global = open;
    let gate = Gate::new(config);
    let sale = SaleView {
        id: 7,
        sku_id: 42,
        pool: 100,
        remaining: 50,
        sold_out: false,
        start_ms: START,
        end_ms: START + 3_600_000,
        per_user_limit: 2,
        price: 1_999,
        currency: Currency::parse("EUR"),
        waiting_room: false,
        prequeue_ms: 0,
        admit_factor: 2,
        admission_ttl_ms: 30_000,
    };
    let mut state = GateState::default();
    state.sales.insert(
        7,
        SaleEntry {
            sale: Some(sale),
            fetched_ms: START,
            refresh_asked_ms: None,
        },
    );
    let session = format!(
        "Bearer {}",
        Identity::new(user_keys(), TokenPolicy::default(), false).mint(
            "user-0123456789",
            START,
            identity::DEFAULT_MAX_LIFETIME_S * 1000,
        )
    );
    let path = format!(
        "/api/buy/{}",
        link::mint(&ring(), &claims(), START).unwrap()
    );
    let request = |now_ms| Request {
        method: "POST",
        path: &path,
        headers: Headers {
            authorization: Some(&session),
            user_agent: Some("Mozilla/5.0 (X11; Linux x86_64) Chrome/141.0 Safari/537.36"),
            accept_language: Some("zh-CN,zh;q=0.9"),
            sec_fetch_site: Some("same-origin"),
            sec_fetch_mode: Some("cors"),
            place: None,
            wait: None,
        },
        client_ip: Some("203.0.113.5".parse().unwrap()),
        platform_bot_score: None,
        network_limit: NetworkLimit::Local,
        body: br#"{"qty":1}"#,
        now_ms,
        entropy: [3; 32],
    };
    assert!(matches!(
        gate.decide(&request(START + 1), &mut state),
        Verdict::Forward(_)
    ));
    let mut now = START + 1;
    c.bench_function("gate verdict (buy, forwarded)", |b| {
        b.iter(|| {
            now += 1;
            black_box(gate.decide(&request(now), &mut state))
        })
    });
    let mut blocked = request(now);
    blocked.headers.user_agent = Some("python-requests/2.32");
    blocked.headers.accept_language = None;
    c.bench_function("gate verdict (bot blocked)", |b| {
        b.iter(|| black_box(gate.decide(&blocked, &mut state)))
    });
    // A valid link for a sale the edge knows is sold out: refused from the cached flag.
    if let Some(SaleEntry {
        sale: Some(sale), ..
    }) = state.sales.get_mut(&7)
    {
        sale.sold_out = true;
    }
    assert!(matches!(
        gate.decide(&request(now), &mut state),
        Verdict::Refuse(_)
    ));
    c.bench_function("gate verdict (sold out)", |b| {
        b.iter(|| {
            now += 1;
            black_box(gate.decide(&request(now), &mut state))
        })
    });
}

/// A poll of a waiting place, answered from a cached snapshot: the user token, the place
/// token's MAC, the rank estimate and the view; no origin call.
fn queue_poll(c: &mut Criterion) {
    let mut config = GateConfig::new(ring(), user_keys(), b"origin-key-0123456789abcdef");
    let open = "1000/ms burst 1000".parse().unwrap();
    config.limits.ip = open;
    config.limits.user = open;
    config.limits.global = open;
    // The snapshot stays fresh for the whole run.
    config.queue_refresh_ms = 1 << 40;
    let gate = Gate::new(config);
    let sale = SaleView {
        id: 7,
        sku_id: 42,
        pool: 100,
        remaining: 100,
        sold_out: false,
        start_ms: START,
        end_ms: START + 3_600_000,
        per_user_limit: 1,
        price: 1_999,
        currency: Currency::parse("EUR"),
        waiting_room: true,
        prequeue_ms: 300_000,
        admit_factor: 2,
        admission_ttl_ms: 30_000,
    };
    let mut state = GateState::default();
    let fetched_ms = START;
    state.sales.insert(
        7,
        SaleEntry {
            sale: Some(sale),
            fetched_ms,
            refresh_asked_ms: None,
        },
    );
    let snapshot = RoomSnapshot {
        places: 100_000,
        drawn: 60_000,
        opened: 100,
        opened_through: 1 << 49,
        pending: 200,
        remaining: 100,
        held: 0,
        sold_out: false,
        admit_rate_milli: 20_000,
    };
    let entry = QueueEntry {
        snapshot: Some(snapshot),
        fetched_ms,
        asked_ms: Some(fetched_ms),
        carries_sale: true,
    };
    state.queues.insert(7, entry);
    let token = place::mint(
        &ring(),
        &PlaceClaims {
            event_id: 7,
            user_id: "user-0123456789".into(),
            ticket: Ticket::arrival(12_345),
            expires_ms: START + 3_600_000,
            link_nonce: [5; 16],
        },
    )
    .unwrap();
    let session = format!(
        "Bearer {}",
        Identity::new(user_keys(), TokenPolicy::default(), false).mint(
            "user-0123456789",
            START,
            identity::DEFAULT_MAX_LIFETIME_S * 1000,
        )
    );
    let request = |now_ms| Request {
        method: "GET",
        path: "/api/events/7/queue",
        headers: Headers {
            authorization: Some(&session),
            user_agent: Some("Mozilla/5.0 (X11; Linux x86_64) Chrome/141.0 Safari/537.36"),
            accept_language: Some("zh-CN,zh;q=0.9"),
            sec_fetch_site: Some("same-origin"),
            sec_fetch_mode: Some("cors"),
            place: Some(&token),
            wait: None,
        },
        client_ip: Some("203.0.113.5".parse().unwrap()),
        platform_bot_score: None,
        network_limit: NetworkLimit::Local,
        body: b"",
        now_ms,
        entropy: [3; 32],
    };
    assert!(matches!(
        gate.decide(&request(START + 1), &mut state),
        Verdict::Respond(_)
    ));
    let mut now = START + 1;
    c.bench_function("gate verdict (queue poll, from the snapshot)", |b| {
        b.iter(|| {
            now += 1;
            black_box(gate.decide(&request(now), &mut state))
        })
    });
}

criterion_group!(benches, link_verify, pow_verify, gate_verdict, queue_poll);
criterion_main!(benches);

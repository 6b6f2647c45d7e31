//! The waiting room end to end (issue 14) on **two edge instances** sharing one sale: two
//! `wrangler dev` processes, or two `wasmtime serve` instances, in front of one warehouse on
//! real Redis. What must hold is what a crowd spread over a CDN's locations would test: the
//! admission bound holds globally, a place is the same place from either instance (and only its
//! user's), sold out reaches every instance, and polls cost the warehouse about one call per
//! second per instance, not one per poll.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use flashgate_core::gate::{PLACE_HEADER, WAIT_HEADER};
use flashgate_core::link::KeyRing;
use flashgate_core::place::{self, PlaceVerdict};
use flashgate_core::proto::flashsale::{Event, PutSkuStockReq};
use flashgate_core::warehouse::service::now_ms;
use serde_json::{json, Value};

use crate::scenarios::{Browser, World, LINK_KEYS};
use crate::wait::{poll_until, Pace};

/// The room's sale: its own id, SKU and client networks, so no other scenario's limits meet it.
const SALE: i64 = 77;
const SKU: i64 = 7077;
const POOL: i32 = 2;
/// Admitted-and-pending at most `ADMIT_FACTOR × remaining`; of them, only as many as there are
/// units are open (may mint a link), the rest wait on standby.
const ADMIT_FACTOR: i32 = 2;
const BUYERS: usize = 6;
/// How often the scenario polls a place: the edge paces each place's polls at the page's
/// quickest (2 a second, `FLASHGATE_LIMIT_PLACE`).
const PLACE_PACE: Duration = Duration::from_millis(600);
/// Long enough that no admission lapses while the scenario buys.
const ADMISSION_TTL_MS: i64 = 60_000;

/// One buyer of the room's crowd: a browser on one of the two edges and, once joined, a place.
struct Buyer {
    user: String,
    /// Which edge it joined through (0 or 1); it polls through both.
    home: usize,
    browsers: [Browser; 2],
    place: String,
}

impl Buyer {
    /// `GET /api/events/{id}/queue` with its place token, through edge `edge`.
    async fn poll(&self, edge: usize) -> Value {
        let reply = self.browsers[edge]
            .send_with(
                "GET",
                &format!("/api/events/{SALE}/queue"),
                &[(PLACE_HEADER, &self.place)],
                b"",
            )
            .await;
        assert_eq!(
            reply.status(),
            200,
            "{}'s poll on edge {edge}: {}",
            self.user,
            reply.json
        );
        reply.json
    }
}

/// The whole scenario: `world`'s edge and `other`, a second instance of the same edge with the
/// same settings in front of the same warehouse.
pub async fn a_line_holds_across_two_edges(world: &World, other: SocketAddr) {
    let name = world.profile.name;
    let started = Instant::now();
    let edges = [world.edge, other];
    let sale = put_room_sale(world, 8_000).await;
    for edge in edges {
        world.until_listed_on(edge, SALE).await;
    }

    // The crowd joins in the pre-queue at once, half through each instance.
    let (singles, batches, sale_reads) = (
        world.origin.requests("JoinQueue").await,
        world.origin.requests("JoinQueueMany").await,
        world.origin.requests("GetEvent").await,
    );
    let joins = (0..BUYERS).map(|i| async move {
        let user = format!("room-buyer-{i}");
        let ip = format!("198.19.{}.1", 10 + i);
        let browsers = edges.map(|edge| Browser::new(edge, world.profile.addr_header, &user, &ip));
        let home = i % 2;
        let joined = join(&browsers[home]).await;
        assert_eq!(joined["state"], "waiting", "{user}: {joined}");
        let place = joined["place"].as_str().expect("a place token").to_owned();
        Buyer {
            user,
            home,
            browsers,
            place,
        }
    });
    let buyers = futures_util::future::join_all(joins).await;
    let singles = world.origin.requests("JoinQueue").await - singles;
    let batches = world.origin.requests("JoinQueueMany").await - batches;
    let sale_reads = world.origin.requests("GetEvent").await - sale_reads;
    eprintln!(
        "{name}: {BUYERS} joined on two instances ({:?}): {singles} JoinQueue, {batches} \
         JoinQueueMany, {sale_reads} GetEvent",
        started.elapsed()
    );
    if world.profile.remembers {
        // The sale was read before the crowd came; its joins read nothing again.
        assert!(
            sale_reads <= 1,
            "{sale_reads} GetEvent calls beside the joins"
        );
    }
    if world.profile.gathers_joins {
        // Each instance gathered its joins: a call or two per instance (a batch may close
        // while the slower challenges are still being solved), never one per place.
        assert_eq!(singles, 0, "no single joins from an instance that gathers");
        assert!(
            (2..=4).contains(&batches),
            "{batches} JoinQueueMany for {BUYERS} joins"
        );
    } else {
        assert_eq!((singles, batches), (BUYERS as u64, 0), "one call per join");
    }

    // One place per user: joining again through the other instance, with a new challenge, is
    // the same place in line.
    let ring = KeyRing::parse(LINK_KEYS).expect("the test ring");
    let ticket = |b: &Buyer, token: &str| match place::verify(&ring, token, &b.user, SALE, now_ms())
    {
        PlaceVerdict::Valid(claims) => claims.ticket,
        other => panic!("{}'s place token does not verify: {other:?}", b.user),
    };
    let first = &buyers[0];
    let again = join(&first.browsers[1 - first.home]).await;
    let again_place = again["place"].as_str().expect("a place token");
    assert_eq!(
        ticket(first, again_place),
        ticket(first, &first.place),
        "a second join is the same place"
    );

    // A place is its user's: another user presenting it is refused, on either instance.
    for edge in 0..2 {
        let thief = &buyers[1].browsers[edge];
        let stolen = thief
            .send_with(
                "GET",
                &format!("/api/events/{SALE}/queue"),
                &[(PLACE_HEADER, &buyers[0].place)],
                b"",
            )
            .await;
        assert_eq!((stolen.status(), stolen.code()), (403, "bad_place"));
    }

    // Before the start every place waits, whichever instance is asked.
    for buyer in &buyers {
        for edge in 0..2 {
            let view = buyer.poll(edge).await;
            assert_eq!(view["state"], "waiting", "{}: {view}", buyer.user);
        }
    }

    // From the start the warehouse admits POOL × ADMIT_FACTOR places, and opens POOL of them
    // and no more, counted over both instances at once: an open place reads admitted from
    // either, with a link; the admitted places beyond the units wait on standby, with no link
    // on either instance however often they poll.
    let calls_before = world.origin.requests("GetQueue").await;
    let reads_before = world.origin.requests("GetEvent").await;
    let claims_before = world.origin.requests("ClaimAdmission").await;
    let watch_started = Instant::now();
    let bound = POOL as usize;
    let crowd = &buyers[..];
    let admitted = poll_until(
        "the first admissions",
        Duration::from_secs(30),
        Pace::Every(PLACE_PACE),
        move || async move {
            let states = round(crowd).await;
            let admitted: Vec<usize> = admitted_in(&states);
            assert!(
                admitted.len() <= bound,
                "more open admissions than units ({POOL}): {states:?}"
            );
            (admitted.len() == bound).then_some(admitted)
        },
    )
    .await;
    assert!(now_ms() >= sale.start_ms, "admitted before the start");

    // From the start, a sale with a line mints links only through it, on either instance.
    for (i, edge) in edges.into_iter().enumerate() {
        let user = format!("room-outsider-{i}");
        let outsider = Browser::new(edge, world.profile.addr_header, &user, "198.19.90.1");
        let answer = outsider.solve(SALE).await;
        let refused = outsider
            .post(&format!("/api/events/{SALE}/link"), &answer)
            .await;
        assert_eq!(
            (refused.status(), refused.code()),
            (409, "queue_required"),
            "{}",
            refused.json
        );
    }

    // The waiting places stand where they stand, whichever instance is asked (once both
    // instances' snapshots have caught up), in the order of their tickets (a drawn place's
    // position is an estimate from its ticket, `Ticket::estimated_rank`), and nobody else is
    // admitted meanwhile.
    let waiting: Vec<usize> = (0..BUYERS).filter(|i| !admitted.contains(i)).collect();
    let waiting = &waiting[..];
    let tickets: Vec<u64> = crowd.iter().map(|b| ticket(b, &b.place).get()).collect();
    let tickets = &tickets[..];
    poll_until(
        "both instances to show the same places",
        Duration::from_secs(10),
        Pace::Every(PLACE_PACE),
        move || async move {
            let mut same = true;
            let mut by_ticket = Vec::new();
            for &i in waiting {
                let (a, b) = (crowd[i].poll(0).await, crowd[i].poll(1).await);
                let states = (a["state"].as_str(), b["state"].as_str());
                assert_eq!(
                    states,
                    (Some("waiting"), Some("waiting")),
                    "{}",
                    crowd[i].user
                );
                same &= a["position"] == b["position"];
                by_ticket.push((tickets[i], a["position"].as_u64().unwrap_or(0)));
            }
            by_ticket.sort_unstable();
            let ordered = by_ticket.windows(2).all(|w| w[0].1 <= w[1].1);
            let placed = by_ticket.iter().all(|&(_, position)| position >= 1);
            (same && ordered && placed).then_some(())
        },
    )
    .await;

    // Meanwhile one waiting place polls asking to be held: an edge that holds polls answers it
    // when its news comes — the sell-out — each poll held (a few polls, not one per half
    // second); any other edge answers at once, as every poll, and says when to come back.
    let held_buyer = &buyers[waiting[0]];
    let holds = world.profile.holds_polls;
    let held = async {
        let asked = Instant::now();
        let mut polls = 0;
        loop {
            let reply = held_buyer.browsers[held_buyer.home]
                .send_with(
                    "GET",
                    &format!("/api/events/{SALE}/queue"),
                    &[(PLACE_HEADER, &held_buyer.place), (WAIT_HEADER, "20000")],
                    b"",
                )
                .await;
            polls += 1;
            let still_waiting = reply.status() == 200 && reply.json["state"] == "waiting";
            if !holds || !still_waiting || asked.elapsed() > Duration::from_secs(30) {
                return (reply, polls, asked.elapsed(), Instant::now());
            }
        }
    };
    let pay_all = async {
        pay_admitted(world, &buyers, &admitted).await;
        Instant::now()
    };
    let ((held_reply, held_polls, held_for, answered_at), paid_at) = tokio::join!(held, pay_all);
    if holds {
        assert_eq!(
            held_reply.json["state"], "sold_out",
            "{name}: the held poll's answer {} after {held_for:?}",
            held_reply.json
        );
        assert!(
            held_polls <= 3,
            "{name}: {held_polls} polls in {held_for:?}: they were not held"
        );
        let told = answered_at.saturating_duration_since(paid_at);
        eprintln!("{name}: a held poll ({held_polls} polls) told sold out {told:?} after the last payment");
    } else {
        assert_eq!(held_reply.json["state"], "waiting", "{}", held_reply.json);
        assert!(
            held_reply.json["poll_after_ms"].as_u64() >= Some(500),
            "{name}: an edge that cannot hold says when to come back: {}",
            held_reply.json
        );
    }

    // Nothing left and nothing pending: every waiting place is told sold out, on both
    // instances, within seconds.
    poll_until(
        "sold out on both instances",
        Duration::from_secs(10),
        Pace::Every(PLACE_PACE),
        move || async move {
            for &i in waiting {
                for edge in 0..2 {
                    if crowd[i].poll(edge).await["state"] != "sold_out" {
                        return None;
                    }
                }
            }
            Some(())
        },
    )
    .await;
    let told_in = paid_at.elapsed();
    assert!(
        told_in <= Duration::from_secs(5),
        "the last waiting place learned sold out {told_in:?} after the last unit was paid"
    );
    // Whoever comes now is told so at once: at the challenge, or (an edge that has not seen the
    // sale's sold-out view yet) at the join.
    for edge in edges {
        let late = Browser::new(edge, world.profile.addr_header, "room-late", "198.19.91.1");
        let issued = late
            .post(&format!("/api/events/{SALE}/challenge"), &json!({}))
            .await;
        let refused = if issued.status() == 200 {
            let answer = late.solve_issued(&issued.json);
            late.post(&format!("/api/events/{SALE}/queue"), &answer)
                .await
        } else {
            issued
        };
        assert_eq!(
            (refused.status(), refused.code()),
            (410, "sold_out"),
            "{}",
            refused.json
        );
    }

    let ledger = world.ledger(SKU).await;
    assert_eq!((ledger.sold, ledger.pools), (POOL as i64, 0), "{ledger:?}");

    // Polls are answered from each instance's snapshot: about one snapshot call per second per
    // instance while the crowd polled every few hundred ms. An edge that keeps nothing between
    // requests (the plain Spin build) asks on every poll; it is held to the bound only.
    let calls = world.origin.requests("GetQueue").await - calls_before;
    let reads = world.origin.requests("GetEvent").await - reads_before;
    let claims = world.origin.requests("ClaimAdmission").await - claims_before;
    let seconds = watch_started.elapsed().as_secs_f64();
    eprintln!(
        "{name}: waiting room ok ({:?}): {calls} GetQueue and {reads} GetEvent calls in {seconds:.1} s over two instances, sold out told {told_in:?} after the last payment",
        started.elapsed()
    );
    if world.profile.remembers {
        let allowed = (2.0 * (seconds + 2.0)).ceil() as u64;
        assert!(
            calls <= allowed,
            "{calls} GetQueue calls in {seconds:.1} s: polls reached the warehouse"
        );
        // Only an opened place is claimed, once per instance that serves it: the standby ones
        // waited on the copy of the line.
        assert!(
            claims <= 2 * POOL as u64,
            "{claims} ClaimAdmission calls for {POOL} open places on two instances"
        );
        // The sale's view came with the line: an instance that has the line reads no sale.
        assert!(
            reads <= 2,
            "{reads} GetEvent calls in {seconds:.1} s beside the line's refreshes"
        );
    }
}

/// The admitted buy of each of `admitted` through the link their instance gave, and the
/// payment side pays.
async fn pay_admitted(world: &World, buyers: &[Buyer], admitted: &[usize]) {
    for &i in admitted {
        let buyer = &buyers[i];
        let view = buyer.poll(buyer.home).await;
        assert_eq!(view["state"], "admitted", "{}: {view}", buyer.user);
        let path = view["link"]["path"]
            .as_str()
            .expect("an admitted poll carries a link");
        let bought = buyer.browsers[buyer.home]
            .post(path, &json!({ "qty": 1 }))
            .await;
        assert_eq!(bought.status(), 202, "{}: {}", buyer.user, bought.json);
        let order_no = bought.json["order_no"].as_str().unwrap().to_owned();
        let amount = pending_amount(&buyer.browsers[buyer.home], &order_no).await;
        world
            .origin
            .pay(&order_no, &format!("psp-{}", buyer.user), amount)
            .await
            .expect("the payment side pays");
    }
}

/// The room's sale: `POOL` of 10 units, the line open now, the start `starts_in_ms` from now.
async fn put_room_sale(world: &World, starts_in_ms: i64) -> Event {
    let mut admin = world.admin().await;
    admin
        .put_sku_stock(PutSkuStockReq {
            sku_id: SKU,
            num: 10,
        })
        .await
        .expect("put stock");
    let start_ms = now_ms() + starts_in_ms;
    let event = Event {
        id: SALE,
        sku_id: SKU,
        pool: POOL,
        start_ms,
        end_ms: start_ms + 3_600_000,
        per_user_limit: 1,
        pay_window_ms: 600_000,
        price: 1999,
        currency: "EUR".into(),
        waiting_room: true,
        prequeue_ms: 300_000,
        admit_factor: ADMIT_FACTOR,
        admission_ttl_ms: ADMISSION_TTL_MS,
        ..Default::default()
    };
    admin.put_event(event.clone()).await.expect("put event");
    event
}

/// A solved challenge, then `POST …/queue`: the join's answer.
async fn join(browser: &Browser) -> Value {
    let answer = browser.solve(SALE).await;
    let joined = browser
        .post(&format!("/api/events/{SALE}/queue"), &answer)
        .await;
    assert_eq!(joined.status(), 200, "join: {}", joined.json);
    joined.json
}

/// Every buyer polled once, through the instance of the round (alternating), by state.
async fn round(buyers: &[Buyer]) -> BTreeMap<usize, String> {
    let mut states = BTreeMap::new();
    for (i, buyer) in buyers.iter().enumerate() {
        let edge = (i + buyer.home + (now_ms() / 600) as usize) % 2;
        let view = buyer.poll(edge).await;
        states.insert(i, view["state"].as_str().unwrap_or("?").to_owned());
    }
    states
}

fn admitted_in(states: &BTreeMap<usize, String>) -> Vec<usize> {
    states
        .iter()
        .filter(|(_, state)| *state == "admitted")
        .map(|(i, _)| *i)
        .collect()
}

/// The amount of order `order_no` once it is pending payment.
async fn pending_amount(browser: &Browser, order_no: &str) -> i64 {
    poll_until(
        "the order to reach PENDING_PAYMENT",
        Duration::from_secs(15),
        Pace::Every(Duration::from_millis(200)),
        || async move {
            let r = browser.get(&format!("/api/orders/{order_no}")).await;
            (r.json["status"] == "pending_payment").then(|| r.json["amount"].as_i64().unwrap_or(0))
        },
    )
    .await
}

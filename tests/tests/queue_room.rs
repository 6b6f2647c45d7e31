//! The waiting room (issue 14) through a real tonic client against a real server, on the Redis
//! store (one Redis, or the cluster pass) and on the memory store: the settings of `PutEvent`,
//! joins, the line's moves, claims, lapses, sold out; and the same rules at the store with
//! simulated time where the wall clock would make a test wait.

use flashgate_core::admission::{Ticket, JOIN_MANY_MAX};
use flashgate_core::proto::flashsale::{
    BuyOutcome, BuyReq, ClaimAdmissionReq, Event, EventReq, JoinQueueManyReq, JoinQueueReq,
    OrderReq, PlaceState, PutSkuStockReq, QueuePlace, QueueReq, QueueSnapshot,
};
use flashgate_core::stock::room::{PlaceState as Stored, MOVE_MAX_ADMITS};
use flashgate_core::stock::{BuyDecision, BuyRequest, Sale};
use flashgate_core::warehouse::server::ServerOptions;
use flashgate_core::warehouse::service::now_ms;
use flashgate_core::warehouse::store::{Rooms, Store};
use flashgate_tests::{
    eur, eventually, pay_in_full, TestWarehouse, TEST_ORIGIN_KEY, TEST_QUEUE_SECRET,
};
use std::time::Duration;
use tonic::Code;

/// Runs `$body(store)` once on a fresh Redis store and once on a memory store.
macro_rules! on_both_stores {
    ($($name:ident => $body:ident;)+) => {
        mod on_redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let redis = flashgate_tests::TestRedis::start().await;
                    super::$body(redis.store().await).await;
                }
            )+
        }
        mod on_memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$body(flashgate_core::warehouse::store::MemoryStore::new()).await;
                }
            )+
        }
    };
}

on_both_stores! {
    joins_are_idempotent_and_the_draw_ignores_the_join_order => joins_and_draw;
    many_joins_in_one_call_are_the_single_joins_in_order => joins_many;
    the_stock_admits_and_a_cancel_admits_the_next_place => admission_follows_the_stock;
    an_unused_admission_lapses_and_admits_the_next => lapses;
    the_room_settings_are_checked => refusals;
}

fn room_sale(id: i64, sku: i64, pool: i32, start_ms: i64, prequeue_ms: i64) -> Event {
    Event {
        id,
        sku_id: sku,
        pool,
        start_ms,
        end_ms: start_ms + 3_600_000,
        per_user_limit: 1,
        pay_window_ms: 600_000,
        price: 100,
        currency: "EUR".into(),
        waiting_room: true,
        prequeue_ms,
        admit_factor: 1,
        ..Default::default()
    }
}

async fn put(w: &TestWarehouse, sku: i64, stock: i32, sale: Event) {
    w.admin()
        .put_sku_stock(PutSkuStockReq {
            sku_id: sku,
            num: stock,
        })
        .await
        .expect("put stock");
    w.admin().put_event(sale).await.expect("put event");
}

async fn join(w: &TestWarehouse, event: i64, user: &str) -> QueuePlace {
    w.queue()
        .join_queue(JoinQueueReq {
            event_id: event,
            user_id: user.into(),
        })
        .await
        .expect("join")
        .into_inner()
}

async fn claim(w: &TestWarehouse, event: i64, user: &str) -> QueuePlace {
    w.queue()
        .claim_admission(ClaimAdmissionReq {
            event_id: event,
            user_id: user.into(),
        })
        .await
        .expect("claim")
        .into_inner()
}

async fn line(w: &TestWarehouse, event: i64) -> QueueSnapshot {
    w.queue()
        .get_queue(QueueReq { event_id: event })
        .await
        .expect("get queue")
        .into_inner()
}

async fn buy(w: &TestWarehouse, event: i64, user: &str) -> String {
    let reply = w
        .seckill()
        .buy(BuyReq {
            event_id: event,
            user_id: user.into(),
            qty: 1,
            request_id: format!("r-{user}"),
        })
        .await
        .expect("buy")
        .into_inner();
    assert_eq!(reply.outcome(), BuyOutcome::Queued, "{user}: {reply:?}");
    reply.order_no
}

fn state(place: &QueuePlace) -> PlaceState {
    place.state()
}

async fn join_many(
    w: &TestWarehouse,
    event: i64,
    users: &[String],
) -> Result<Vec<QueuePlace>, tonic::Status> {
    let req = JoinQueueManyReq {
        event_id: event,
        user_ids: users.to_vec(),
    };
    Ok(w.queue().join_queue_many(req).await?.into_inner().places)
}

/// What an edge instance's gathered joins get (`Queue/JoinQueueMany`): each user's place as a
/// single join gives it, in the request's order, a user named twice included, before and
/// after the start; and what it refuses, whole.
async fn joins_many<S: Store>(store: S) {
    let w = TestWarehouse::start(store).await;
    let start = now_ms() + 600_000;
    put(&w, 12, 10, room_sale(22, 12, 5, start, 1_200_000)).await;
    let users: Vec<String> = (0..40).map(|i| format!("many-{i}")).collect();
    let mut asked = users.clone();
    asked.push(users[3].clone());
    let places = join_many(&w, 22, &asked).await.expect("join many");
    assert_eq!(places.len(), asked.len(), "a place per user asked");
    for (user, place) in asked.iter().zip(&places) {
        assert_eq!(state(place), PlaceState::PlaceWaiting, "{user}: {place:?}");
        let drawn = Ticket::draw(TEST_QUEUE_SECRET, 22, user);
        let drawn = Ticket::from_score(drawn.score()).get();
        assert_eq!(place.ticket, drawn, "{user}: drawn, as a single join is");
    }
    assert_eq!(
        places[3].ticket, places[40].ticket,
        "named twice: one place"
    );
    // The single join agrees, and the line counts each user once.
    for (user, place) in users.iter().zip(&places).take(5) {
        assert_eq!(join(&w, 22, user).await.ticket, place.ticket, "{user}");
    }
    let snapshot = line(&w, 22).await;
    assert_eq!((snapshot.places, snapshot.drawn), (40, 40));
    // The line comes with the sale's state (what GetEvent answers), and the batch's reply
    // with the line after it: the edge needs neither call beside it.
    let sale = snapshot.sale.expect("the sale beside the line");
    let event = sale.event.expect("its definition");
    assert_eq!((event.id, event.pool, event.waiting_room), (22, 5, true));
    assert_eq!((sale.remaining, sale.sold_out), (5, false));
    let req = JoinQueueManyReq {
        event_id: 22,
        user_ids: vec!["many-40".into()],
    };
    let reply = w.queue().join_queue_many(req).await.expect("join many");
    let after = reply.into_inner().line.expect("the line after the batch");
    assert_eq!((after.places, after.drawn), (41, 41), "counting the batch");
    assert_eq!(after.sale.and_then(|s| s.event).map(|e| e.id), Some(22));
    // A sale without a room (one turned off by `PutEvent` again) has no line to carry it: the
    // edge reads such a sale with `GetEvent` after this refusal.
    let plain = Event {
        waiting_room: false,
        ..room_sale(24, 14, 5, start, 0)
    };
    put(&w, 14, 10, plain).await;
    let none = w.queue().get_queue(QueueReq { event_id: 24 }).await;
    assert_eq!(
        none.unwrap_err().code(),
        Code::FailedPrecondition,
        "no room"
    );
    // After the start, arrivals: numbered in the request's order.
    put(&w, 13, 10, room_sale(23, 13, 5, now_ms() - 1_000, 0)).await;
    let late = join_many(&w, 23, &users[..10]).await.expect("join many");
    let tickets: Vec<u64> = late.iter().map(|p| p.ticket).collect();
    assert!(
        tickets.iter().all(|t| !Ticket::from_raw(*t).is_drawn()),
        "{tickets:?}"
    );
    assert!(
        tickets.windows(2).all(|w| w[0] < w[1]),
        "in order: {tickets:?}"
    );
    let ranks: Vec<i64> = late.iter().map(|p| p.rank).collect();
    assert_eq!(ranks, (0..10).collect::<Vec<i64>>());

    // Refused whole, before anything joins: no users, too many, a bad id, an unknown sale.
    let too_many: Vec<String> = (0..=JOIN_MANY_MAX).map(|i| format!("x-{i}")).collect();
    let mut bad = vec!["ok-1".to_owned(), String::new()];
    for (users, code) in [
        (Vec::new(), Code::InvalidArgument),
        (too_many, Code::InvalidArgument),
        (std::mem::take(&mut bad), Code::InvalidArgument),
    ] {
        let refused = join_many(&w, 22, &users).await.unwrap_err();
        assert_eq!(refused.code(), code, "{refused:?}");
    }
    assert_eq!(line(&w, 22).await.places, 41, "nothing refused joined");
    let unknown = join_many(&w, 999, &users[..1]).await.unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");
}

async fn joins_and_draw<S: Store>(store: S) {
    let w = TestWarehouse::start(store).await;
    let start = now_ms() + 600_000;
    put(&w, 11, 10, room_sale(21, 11, 5, start, 1_200_000)).await;
    let event = w
        .admin()
        .get_event(EventReq { id: 21 })
        .await
        .expect("get event")
        .into_inner()
        .event
        .expect("the sale");
    assert!(event.waiting_room);
    assert_eq!(
        (
            event.prequeue_ms,
            event.admit_factor,
            event.admission_ttl_ms
        ),
        (1_200_000, 1, 30_000),
        "the settings, the ttl's default applied"
    );
    let users: Vec<String> = (0..20).map(|i| format!("user-{i}")).collect();
    let mut first = Vec::new();
    for user in &users {
        let place = join(&w, 21, user).await;
        assert_eq!(state(&place), PlaceState::PlaceWaiting, "{place:?}");
        // The keyed hash of sale and user under the draw secret, as kept (its score).
        let drawn = Ticket::draw(TEST_QUEUE_SECRET, 21, user);
        assert_eq!(
            place.ticket,
            Ticket::from_score(drawn.score()).get(),
            "{user}"
        );
        first.push(place.ticket);
    }
    // Again, in the other order: the same places; the line is in ticket order whatever the
    // order of the joins.
    let mut ranks = vec![0; users.len()];
    for (i, user) in users.iter().enumerate().rev() {
        let again = join(&w, 21, user).await;
        assert_eq!(again.ticket, first[i], "{user} joined again");
        ranks[i] = again.rank;
        assert_eq!(claim(&w, 21, user).await.rank, again.rank);
    }
    let mut by_ticket: Vec<usize> = (0..users.len()).collect();
    by_ticket.sort_by_key(|i| first[*i]);
    for (rank, i) in by_ticket.iter().enumerate() {
        assert_eq!(ranks[*i], rank as i64, "{}", users[*i]);
    }
    let snapshot = line(&w, 21).await;
    assert_eq!(
        (snapshot.places, snapshot.drawn, snapshot.admitted),
        (20, 20, 0)
    );
    assert_eq!((snapshot.remaining, snapshot.held), (5, 0));
    assert!(!snapshot.sold_out);
    assert_eq!(
        state(&claim(&w, 21, "nobody").await),
        PlaceState::PlaceNoPlace
    );
}

async fn admission_follows_the_stock<S: Store>(store: S) {
    let w = TestWarehouse::start(store.clone()).await;
    put(&w, 12, 10, room_sale(22, 12, 2, now_ms() - 1_000, 0)).await;
    for i in 0..5 {
        let place = join(&w, 22, &format!("u{i}")).await;
        assert_eq!(place.rank, i, "arrivals in order");
        assert_eq!(place.ticket, Ticket::arrival(i as u64).get());
    }
    // factor 1 × 2 units: the first two are admitted.
    let s = line(&w, 22).await;
    assert_eq!((s.places, s.drawn, s.admitted, s.pending), (5, 0, 2, 2));
    assert_eq!(s.admitted_through, Ticket::arrival(1).get());
    // Factor 1: nobody beyond the units is admitted, so every admitted place opens at once.
    assert_eq!((s.opened, s.opened_through), (2, s.admitted_through));
    let admitted = claim(&w, 22, "u0").await;
    assert_eq!(state(&admitted), PlaceState::PlaceAdmitted);
    assert!(admitted.admitted_until_ms > now_ms());
    assert_eq!(
        claim(&w, 22, "u0").await.admitted_until_ms,
        admitted.admitted_until_ms
    );
    assert_eq!(state(&claim(&w, 22, "u2").await), PlaceState::PlaceWaiting);

    let order0 = buy(&w, 22, "u0").await;
    let order1 = buy(&w, 22, "u1").await;
    // Both bought: nothing pending, nothing left, two units held: nobody else yet.
    let s = line(&w, 22).await;
    assert_eq!((s.admitted, s.pending, s.remaining, s.held), (2, 0, 0, 2));
    assert!(!s.sold_out);
    assert_eq!(state(&claim(&w, 22, "u0").await), PlaceState::PlaceLapsed);
    assert_eq!(state(&claim(&w, 22, "u2").await), PlaceState::PlaceWaiting);

    // A cancelled order's unit admits the next place.
    w.seckill()
        .cancel_order(OrderReq {
            order_no: order0,
            user_id: "u0".into(),
        })
        .await
        .expect("cancel");
    let s = line(&w, 22).await;
    assert_eq!((s.admitted, s.pending, s.remaining, s.held), (3, 1, 1, 1));
    assert_eq!(state(&claim(&w, 22, "u2").await), PlaceState::PlaceAdmitted);
    let order2 = buy(&w, 22, "u2").await;

    // Pool empty and both orders paid: sold out, told to every place still waiting and to
    // every new join.
    for (order, user) in [(&order1, "u1"), (&order2, "u2")] {
        eventually(
            "the order worker created the order",
            Duration::from_secs(10),
            || async { pay_in_full(&store, order, user, now_ms()).await.ok() },
        )
        .await;
    }
    let s = line(&w, 22).await;
    assert_eq!((s.remaining, s.held, s.pending), (0, 0, 0));
    assert!(s.sold_out);
    assert_eq!(state(&claim(&w, 22, "u3").await), PlaceState::PlaceSoldOut);
    let late = join(&w, 22, "late").await;
    assert_eq!(state(&late), PlaceState::PlaceSoldOut);
    assert_eq!(late.ticket, 0, "no place taken");
    let metrics = w.metrics().await;
    for line in [
        r#"flashgate_room_total{event="joined"} 5"#,
        r#"flashgate_room_total{event="admitted"} 3"#,
        r#"flashgate_room_total{event="opened"} 3"#,
        r#"flashgate_room_total{event="bought"} 3"#,
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
}

/// A sale of 1 unit with a room (factor 2, ttl 1 s), defined at the store.
fn store_sale(id: i64, sku: i64, start_ms: i64) -> Sale {
    Sale {
        id,
        sku,
        pool: 1,
        start_ms,
        end_ms: start_ms + 3_600_000,
        per_user_limit: 1,
        pay_window_ms: 600_000,
        subpools: 1,
        price: 100,
        currency: eur(),
        limit_counts_held: false,
    }
}

/// [`store_sale`] put at `store` with 5 units of stock and a room (no pre-queue, factor 2, ttl
/// 1 s).
async fn put_store_sale<S: Store>(store: &S, id: i64, sku: i64, start_ms: i64) -> Sale {
    let sale = store_sale(id, sku, start_ms);
    store.put_stock(sku, 5).await.expect("stock");
    store.put_sale(&sale).await.expect("sale");
    let rules = flashgate_core::admission::Rules {
        prequeue_ms: 0,
        admit_factor: 2,
        admission_ttl_ms: 1_000,
    };
    store.put_room(&sale, Some(&rules)).await.expect("room");
    sale
}

async fn lapses<S: Store>(store: S) {
    // Simulated time, near the wall clock: the room's keys expire by the wall clock after the
    // sale's end (a sale of 1970 would be gone at once).
    let start = now_ms();
    let sale = put_store_sale(&store, 23, 13, start).await;
    for user in ["a", "b", "c", "d"] {
        let joined = store
            .join_room(23, user, TEST_QUEUE_SECRET, start + 10)
            .await
            .expect("join");
        assert!(joined.new);
    }
    // 1 unit, factor 2: a and b are admitted, a opens (there is a unit for it) and b waits on
    // standby: no link, however soon it asks.
    let moved = store.move_room(23, start + 20).await.expect("move");
    assert_eq!((moved.admitted, moved.opened), (2, 1));
    assert_eq!((moved.snapshot.pending, moved.snapshot.opened), (2, 1));
    let open = Stored::Admitted {
        from_ms: start + 20,
        until_ms: start + 1_020,
    };
    for (user, state) in [("a", open), ("b", Stored::Waiting)] {
        let place = store.claim_room(23, user, start + 20).await.expect("claim");
        assert_eq!(place.state, state, "{user}");
    }
    // a's deadline passed: lapsed at once, even before a move sweeps it; the move then opens b,
    // the next in line, for the unit a left, and admits c on standby behind it.
    let a = store
        .claim_room(23, "a", start + 1_020)
        .await
        .expect("claim");
    assert_eq!(a.state, Stored::Lapsed);
    let moved = store.move_room(23, start + 1_020).await.expect("move");
    assert_eq!(
        (moved.lapsed, moved.admitted, moved.opened),
        (1, 1, 1),
        "{moved:?}"
    );
    assert_eq!((moved.snapshot.admitted, moved.snapshot.opened), (3, 2));
    for (user, state) in [
        (
            "b",
            Stored::Admitted {
                from_ms: start + 1_020,
                until_ms: start + 2_020,
            },
        ),
        ("c", Stored::Waiting),
    ] {
        let place = store
            .claim_room(23, user, start + 1_030)
            .await
            .expect("claim");
        assert_eq!(place.state, state, "{user}");
    }
    // A buy by an admitted user spends the admission.
    let buy = BuyRequest {
        event_id: 23,
        user_id: "b".into(),
        qty: 1,
        request_id: "rb".into(),
    };
    let decision = store.buy(&buy, start + 1_040).await.expect("buy");
    assert!(
        matches!(decision, BuyDecision::Queued { .. }),
        "{decision:?}"
    );
    // c, on standby, stays there: no unit for it while b's order holds the one.
    let moved = store.move_room(23, start + 1_050).await.expect("move");
    assert_eq!((moved.bought, moved.snapshot.pending), (1, 1));
    assert_eq!((moved.opened, moved.snapshot.opened), (0, 2));
    assert_eq!(moved.snapshot.remaining, 0);
    assert!(!moved.snapshot.sold_out, "the order may come back");
    let c = store
        .claim_room(23, "c", start + 1_060)
        .await
        .expect("claim");
    assert_eq!(c.state, Stored::Waiting);
    assert_eq!(
        store
            .claim_room(23, "b", start + 1_060)
            .await
            .expect("claim")
            .state,
        Stored::Lapsed
    );
    const { assert!(MOVE_MAX_ADMITS >= 2) };
    assert_eq!(store.open_rooms(start).await.expect("rooms"), vec![23]);
    assert!(store
        .open_rooms(sale.end_ms)
        .await
        .expect("rooms")
        .is_empty());
}

async fn refusals<S: Store>(store: S) {
    let w = TestWarehouse::start(store.clone()).await;
    let start = now_ms() + 60_000;
    w.admin()
        .put_sku_stock(PutSkuStockReq {
            sku_id: 14,
            num: 10,
        })
        .await
        .expect("stock");
    let split = Event {
        subpools: 2,
        ..room_sale(24, 14, 4, start, 0)
    };
    let refused = w.admin().put_event(split).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(
        refused.message().starts_with("waiting_room:"),
        "{refused:?}"
    );
    let negative = Event {
        admit_factor: -1,
        ..room_sale(24, 14, 4, start, 0)
    };
    let refused = w.admin().put_event(negative).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    // A sale without a room has no line; an unknown sale is not found.
    let plain = Event {
        waiting_room: false,
        ..room_sale(25, 14, 4, start, 0)
    };
    w.admin().put_event(plain).await.expect("a plain sale");
    let no_room = w
        .queue()
        .join_queue(JoinQueueReq {
            event_id: 25,
            user_id: "ann".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(no_room.code(), Code::FailedPrecondition, "{no_room:?}");
    let unknown = w
        .queue()
        .get_queue(QueueReq { event_id: 999 })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");
    // Before the pre-queue opens: no place, and when it opens.
    w.admin()
        .put_event(room_sale(26, 14, 1, start, 1_000))
        .await
        .expect("a room sale");
    let early = join(&w, 26, "ann").await;
    assert_eq!(state(&early), PlaceState::PlaceTooEarly);
    assert_eq!(early.opens_ms, start - 1_000);
    assert_eq!(state(&claim(&w, 26, "ann").await), PlaceState::PlaceNoPlace);
    // A warehouse without a draw secret refuses rooms, saying how to set one.
    drop(w);
    let options = ServerOptions {
        origin_key: Some(TEST_ORIGIN_KEY.to_vec()),
        worker: None,
        ..ServerOptions::default()
    };
    let w = TestWarehouse::start_with(store, options).await;
    let refused = w
        .admin()
        .put_event(room_sale(27, 14, 1, start, 0))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(refused.message().contains("--queue-secret"), "{refused:?}");
}

/// A room an older warehouse moved (no `opened` cursor; every admitted place, standby ones
/// too, in the pending set with its lapse time) reads as all of its admitted places open: their
/// claims still answer `ADMITTED`, nothing is counted twice, and nothing opens again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_moved_before_openings_were_kept_reads_as_all_admitted_open() {
    let redis = flashgate_tests::TestRedis::start().await;
    let store = redis.store().await;
    let start = now_ms();
    put_store_sale(&store, 24, 14, start).await;
    for user in ["a", "b", "c"] {
        store
            .join_room(24, user, TEST_QUEUE_SECRET, start + 10)
            .await
            .expect("join");
    }
    let moved = store.move_room(24, start + 20).await.expect("move");
    assert_eq!((moved.admitted, moved.opened), (2, 1));
    // What the older warehouse left: b pending too (its standby lapse), no cursor of openings.
    let keys = store.keys();
    let mut conn = store.connection();
    let _: () = redis::cmd("HDEL")
        .arg(keys.room(14, 24))
        .arg("opened")
        .arg("opened_through")
        .query_async(&mut conn)
        .await
        .expect("HDEL");
    let _: () = redis::cmd("ZADD")
        .arg(keys.room_pending(14, 24))
        .arg(start + 1_353)
        .arg("b")
        .query_async(&mut conn)
        .await
        .expect("ZADD");
    let b = store.claim_room(24, "b", start + 30).await.expect("claim");
    assert_eq!(
        b.state,
        Stored::Admitted {
            from_ms: start + 353,
            until_ms: start + 1_353
        }
    );
    let moved = store.move_room(24, start + 40).await.expect("move");
    assert_eq!(
        (moved.admitted, moved.opened, moved.lapsed),
        (0, 0, 0),
        "{moved:?}"
    );
    let s = moved.snapshot;
    assert_eq!((s.admitted, s.opened, s.pending), (2, 2, 2), "{s:?}");
    assert_eq!(s.opened_through, s.through);
    assert_eq!(s.rate_milli_per_s, 0);
    let c = store.claim_room(24, "c", start + 50).await.expect("claim");
    assert_eq!(c.state, Stored::Waiting);
}

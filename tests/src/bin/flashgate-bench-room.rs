//! `flashgate-bench-room` (run by `scripts/bench/room.sh`): the cost of a big line (issue 14's
//! Measure). On a private Redis, one waiting-room sale per line length (1,000, 10,000 and
//! 100,000 places by default): every place joined in the pre-queue (concurrently, each join the
//! real `room_join.lua` through the Redis store), then
//!
//! - the bytes per place: `MEMORY USAGE … SAMPLES 0` of the room's keys (its hash, the line,
//!   the pending admissions) summed and divided by the places, and `used_memory`'s growth over
//!   the joins divided likewise;
//! - the draw: the first move of the line at the start (`room_move.lua`), timed from the
//!   client (a loopback round trip) and inside Redis (its SLOWLOG's duration of that EVALSHA);
//! - admit steps: a unit comes back and one move admits the next place — an open admission's
//!   user buys (a move forgets them), the order is cancelled, and the timed move admits exactly
//!   one and opens exactly one (the first on standby). The
//!   median and 90th percentile over `--steps` of them per line, and the ratio of the longest
//!   line's median to the shortest's, to show a step does not grow with the line.
//!
//! Simulated time as the stores take it: the sale starts an hour after the wall clock (whose
//! time the room's keys expire by), the joins happen now, in the pre-queue, and the moves at the
//! start. Nothing is written to disk.

use std::time::{Duration, Instant};

use clap::Parser;
use flashgate_core::admission::Rules;
use flashgate_core::stock::room::MOVE_MAX_ADMITS;
use flashgate_core::stock::{BuyDecision, BuyRequest, Sale};
use flashgate_core::warehouse::service::now_ms;
use flashgate_core::warehouse::store::{Orders, RedisStore, Rooms, Sales, Stock};
use flashgate_tests::{eur, TestRedis, TEST_QUEUE_SECRET};
use futures_util::stream::{self, StreamExt};
use redis::aio::MultiplexedConnection;

#[derive(Parser)]
#[command(about = "The cost of a big waiting-room line in Redis")]
struct Args {
    /// The line lengths measured (places), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000,100000")]
    places: Vec<u64>,
    /// The sale's pool (units).
    #[arg(long, default_value_t = 100)]
    pool: i64,
    /// The room's admit factor.
    #[arg(long, default_value_t = 2)]
    factor: u32,
    /// Timed admit steps per line.
    #[arg(long, default_value_t = 30)]
    steps: usize,
    /// Joins in flight at once (one multiplexed connection, so they pipeline).
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// The length of a user id in bytes (a shop's JWT `sub`; 16 by default).
    #[arg(long, default_value_t = 16)]
    id_len: usize,
}

/// One line's figures.
struct Line {
    places: u64,
    join_s: f64,
    key_bytes: u64,
    used_delta: i64,
    draw_admitted: u64,
    draw_rtt: Duration,
    draw_redis_us: u64,
    step_rtt: Vec<Duration>,
    step_redis_us: Vec<u64>,
}

/// User `i`'s id: `u` and the number, zero-padded to `len` bytes.
fn user(i: u64, len: usize) -> String {
    format!("u{i:0>width$}", width = len.saturating_sub(1))
}

async fn used_memory(conn: &mut MultiplexedConnection) -> i64 {
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(conn)
        .await
        .expect("INFO memory");
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("used_memory in INFO")
}

async fn memory_usage(conn: &mut MultiplexedConnection, key: &str) -> u64 {
    let bytes: Option<u64> = redis::cmd("MEMORY")
        .arg("USAGE")
        .arg(key)
        .arg("SAMPLES")
        .arg(0)
        .query_async(conn)
        .await
        .expect("MEMORY USAGE");
    bytes.unwrap_or(0)
}

/// The duration inside Redis (µs) of the last EVALSHA since the last `SLOWLOG RESET` (newest
/// first; Redis 7 also logs the commands a script runs, each on its own, and a NOSCRIPT miss
/// before a reload).
async fn redis_us(conn: &mut MultiplexedConnection) -> u64 {
    type Entry = (i64, i64, u64, Vec<String>, String, String);
    let entries: Vec<Entry> = redis::cmd("SLOWLOG")
        .arg("GET")
        .arg(128)
        .query_async(conn)
        .await
        .expect("SLOWLOG GET");
    entries
        .iter()
        .find(|e| {
            e.3.first()
                .is_some_and(|c| c.eq_ignore_ascii_case("evalsha"))
        })
        .map(|e| e.2)
        .unwrap_or_else(|| panic!("no script call in the SLOWLOG: {entries:?}"))
}

async fn slowlog_reset(conn: &mut MultiplexedConnection) {
    redis::cmd("SLOWLOG")
        .arg("RESET")
        .query_async::<()>(conn)
        .await
        .expect("SLOWLOG RESET");
}

/// One timed move at `now`: its answer, the round trip and the time inside Redis.
async fn timed_move(
    store: &RedisStore,
    conn: &mut MultiplexedConnection,
    event: i64,
    now: i64,
) -> (flashgate_core::stock::room::Moved, Duration, u64) {
    slowlog_reset(conn).await;
    let t = Instant::now();
    let moved = store.move_room(event, now).await.expect("move");
    let rtt = t.elapsed();
    (moved, rtt, redis_us(conn).await)
}

async fn measure(
    store: &RedisStore,
    conn: &mut MultiplexedConnection,
    args: &Args,
    id: i64,
    places: u64,
) -> Line {
    let keys = store.keys().clone();
    let base = now_ms();
    let start = base + 3_600_000;
    let sale = Sale {
        id,
        sku: id,
        pool: args.pool,
        start_ms: start,
        end_ms: start + 3_600_000,
        per_user_limit: 1,
        pay_window_ms: 600_000,
        subpools: 1,
        price: 100,
        currency: eur(),
        limit_counts_held: false,
    };
    let rules = Rules {
        prequeue_ms: 2 * 3_600_000,
        admit_factor: args.factor,
        admission_ttl_ms: 3_600_000,
    };
    store.put_stock(id, args.pool).await.expect("stock");
    store.put_sale(&sale).await.expect("sale");
    store.put_room(&sale, Some(&rules)).await.expect("room");

    let before = used_memory(conn).await;
    let t = Instant::now();
    let mut joins = stream::iter(0..places)
        .map(|i| {
            let name = user(i, args.id_len);
            async move {
                let joined = store
                    .join_room(id, &name, TEST_QUEUE_SECRET, base)
                    .await
                    .expect("join");
                assert!(joined.new, "{name} joined once");
            }
        })
        .buffer_unordered(args.concurrency);
    while joins.next().await.is_some() {}
    let join_s = t.elapsed().as_secs_f64();
    let used_delta = used_memory(conn).await - before;
    let room_keys = [
        keys.room(id, id),
        keys.room_places(id, id),
        keys.room_pending(id, id),
    ];
    let mut key_bytes = 0;
    for key in &room_keys {
        let bytes = memory_usage(conn, key).await;
        eprintln!("    {key}: {bytes} B");
        key_bytes += bytes;
    }

    redis::cmd("CONFIG")
        .arg("SET")
        .arg("slowlog-log-slower-than")
        .arg(0)
        .query_async::<()>(conn)
        .await
        .expect("CONFIG SET");
    // A move in the pre-queue (the sweeper's, every second): nothing to admit yet, and the
    // script is loaded before the draw is timed.
    let early = store.move_room(id, base).await.expect("move");
    assert_eq!(early.admitted, 0, "nothing admitted before the start");
    let (draw, draw_rtt, draw_redis_us) = timed_move(store, conn, id, start).await;
    let expected = (u64::from(args.factor) * args.pool as u64)
        .min(places)
        .min(MOVE_MAX_ADMITS);
    assert_eq!(draw.admitted, expected, "the draw admits the first places");
    assert_eq!(draw.snapshot.places, places);

    // The admitted users, each of whom buys once (and a move forgets them) in a step.
    let admitted: Vec<String> = redis::cmd("ZRANGE")
        .arg(&room_keys[2])
        .arg(0)
        .arg(-1)
        .query_async(conn)
        .await
        .expect("ZRANGE pending");
    // Each step needs an admitted buyer and a place still waiting.
    let waiting = (places - draw.admitted) as usize;
    let steps = args.steps.min(admitted.len()).min(waiting);
    let (mut step_rtt, mut step_redis_us) = (Vec::new(), Vec::new());
    for (j, buyer) in admitted.iter().take(steps).enumerate() {
        let now = start + 1_000 + j as i64;
        let buy = BuyRequest {
            event_id: id,
            user_id: buyer.clone(),
            qty: 1,
            request_id: format!("bench-{j}"),
        };
        let BuyDecision::Queued { order_no, .. } = store.buy(&buy, now).await.expect("buy") else {
            panic!("{buyer}'s buy was not queued");
        };
        let forgot = store.move_room(id, now).await.expect("move");
        assert_eq!(
            (forgot.bought, forgot.admitted, forgot.opened),
            (1, 0, 0),
            "the buyer forgotten"
        );
        store.cancel(&order_no, buyer, now).await.expect("cancel");
        let (moved, rtt, us) = timed_move(store, conn, id, now).await;
        assert_eq!(
            (moved.admitted, moved.opened),
            (1, 1),
            "the unit back admits the next place and opens the next standby one"
        );
        step_rtt.push(rtt);
        step_redis_us.push(us);
    }
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("slowlog-log-slower-than")
        .arg(10_000)
        .query_async::<()>(conn)
        .await
        .expect("CONFIG SET");
    Line {
        places,
        join_s,
        key_bytes,
        used_delta,
        draw_admitted: draw.admitted,
        draw_rtt,
        draw_redis_us,
        step_rtt,
        step_redis_us,
    }
}

fn quantile<T: Copy + Ord>(values: &[T], q: f64) -> Option<T> {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let last = sorted.len().checked_sub(1)?;
    Some(sorted[(last as f64 * q).round() as usize])
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let mut lengths = args.places.clone();
    lengths.sort_unstable();
    lengths.dedup();
    assert!(
        !lengths.is_empty() && lengths[0] > 0,
        "--places: at least one length > 0"
    );
    assert!(args.steps > 0, "--steps: at least one");
    let redis = TestRedis::spawn(&[]).await;
    let store = redis.store().await;
    let mut conn = redis::Client::open(redis.url.as_str())
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("connect");

    let mut lines = Vec::new();
    for (i, &places) in lengths.iter().enumerate() {
        eprintln!("  a line of {places} places ...");
        lines.push(measure(&store, &mut conn, &args, i as i64 + 1, places).await);
    }

    println!(
        "flashgate-bench-room: pool {}, admit factor {}, user ids of {} bytes, {} joins in flight, {} admit steps per line",
        args.pool, args.factor, args.id_len, args.concurrency, args.steps
    );
    println!();
    println!(
        "| places | joins/s | room keys (MEMORY USAGE) | B/place | used_memory Δ/place | draw: admitted | draw: round trip | draw: in Redis | admit step: median round trip (p90) | admit step: median in Redis (p90) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for l in &lines {
        let step_rtt = match (quantile(&l.step_rtt, 0.5), quantile(&l.step_rtt, 0.9)) {
            (Some(m), Some(p)) => format!("{:.3} ms ({:.3})", ms(m), ms(p)),
            _ => "— (no place left waiting)".to_owned(),
        };
        let step_redis = match (
            quantile(&l.step_redis_us, 0.5),
            quantile(&l.step_redis_us, 0.9),
        ) {
            (Some(m), Some(p)) => format!("{m} µs ({p})"),
            _ => "—".to_owned(),
        };
        println!(
            "| {} | {:.0} | {} B | {:.1} | {:.1} | {} | {:.2} ms | {} µs | {step_rtt} | {step_redis} |",
            l.places,
            l.places as f64 / l.join_s,
            l.key_bytes,
            l.key_bytes as f64 / l.places as f64,
            l.used_delta as f64 / l.places as f64,
            l.draw_admitted,
            ms(l.draw_rtt),
            l.draw_redis_us,
        );
    }
    let (short, long) = (&lines[0], &lines[lines.len() - 1]);
    let median_us = |l: &Line| quantile(&l.step_redis_us, 0.5);
    let median_rtt = |l: &Line| quantile(&l.step_rtt, 0.5);
    let ratio_redis = match (median_us(long), median_us(short)) {
        (Some(a), Some(b)) => Some(a as f64 / b.max(1) as f64),
        _ => None,
    };
    if let (Some(ratio), Some(a), Some(b)) = (ratio_redis, median_rtt(long), median_rtt(short)) {
        println!();
        println!(
            "admit step, {} places vs {}: ×{ratio:.2} in Redis, ×{:.2} round trip (log₂ ratio of the lengths: ×{:.2})",
            long.places,
            short.places,
            ms(a) / ms(b).max(1e-6),
            (long.places as f64).log2() / (short.places as f64).log2()
        );
    }
    let per_place = long.key_bytes as f64 / long.places as f64;
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    println!(
        "goals at {} places: ≤ 200 B per place: {} ({per_place:.1} B); the draw ≤ 1 s: {} ({:.2} ms); an admit step independent of the line: {}",
        long.places,
        verdict(per_place <= 200.0),
        verdict(long.draw_rtt <= Duration::from_secs(1)),
        ms(long.draw_rtt),
        // A skip list's step is O(log n): within 2× over two orders of magnitude is flat.
        ratio_redis.map_or("not measured (one length, or no step)".to_owned(), |r| {
            format!("{} (×{r:.2})", verdict(r <= 2.0))
        }),
    );
}

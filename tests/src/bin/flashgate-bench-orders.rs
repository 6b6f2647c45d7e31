//! `flashgate-bench-orders` (run by `scripts/bench/orders.sh`): peak shaving measured. A spike
//! of wins against a private Redis and PostgreSQL, (a) the flashgate way — Buy decides in Redis,
//! the order worker and the sink carry the orders into PostgreSQL in batches afterwards — and
//! (b) the synchronous way — each Buy, after its Redis decision, inserts its own row into
//! PostgreSQL in the request path before it answers. Prints the accept rates and their ratio, the
//! sink's drain rate, batch size, maximum lag and time to drain.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use flashgate_core::stock::{BuyDecision, BuyRequest, Sale};
use flashgate_core::warehouse::metrics::Metrics;
use flashgate_core::warehouse::service::now_ms;
use flashgate_core::warehouse::store::{Orders, RedisStore, Sales, Stock};
use flashgate_core::warehouse::worker::{run_order_worker, WorkerOptions};
use flashgate_orders::{db, sink};
use flashgate_tests::{eur, TestPostgres, TestRedis};

#[derive(Parser)]
struct Args {
    /// Wins in the spike.
    #[arg(long, default_value_t = 20_000)]
    wins: usize,
    /// Concurrent buyers.
    #[arg(long, default_value_t = 50)]
    clients: usize,
    /// The sink's batch.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// The live sink's pace during the spike, rows/s (0: as fast as PostgreSQL takes them), as
    /// an operator shaving the peak would set `--max-rows-per-s`.
    #[arg(long, default_value_t = 0)]
    pace: u32,
}

fn sale(id: i64, sku: i64, pool: i64) -> Sale {
    let now = now_ms();
    Sale {
        id,
        sku,
        pool,
        start_ms: now - 1_000,
        end_ms: now + 3_600_000,
        per_user_limit: 1,
        pay_window_ms: 600_000,
        subpools: 1,
        price: 1999,
        currency: eur(),
        limit_counts_held: false,
    }
}

/// `wins` buys by `clients` at a time; with `sync`, each inserts its row before answering.
async fn spike(
    store: &RedisStore,
    event: i64,
    wins: usize,
    clients: usize,
    sync: Option<deadpool_postgres::Pool>,
) -> f64 {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let tasks = (0..clients).map(|_| {
        let (store, next, sync) = (store.clone(), next.clone(), sync.clone());
        tokio::spawn(async move {
            let client = match &sync {
                Some(pool) => Some(pool.get().await.expect("pg")),
                None => None,
            };
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= wins {
                    return;
                }
                let buy = BuyRequest {
                    event_id: event,
                    user_id: format!("u{i}"),
                    qty: 1,
                    request_id: format!("r{i}"),
                };
                let decision = store.buy(&buy, now_ms()).await.expect("buy");
                if let (Some(client), BuyDecision::Queued { order_no, .. }) = (&client, decision) {
                    client
                        .execute(
                            "INSERT INTO orders (order_no, event_id, sku_id, user_id, qty, amount,
                               currency, status, created_ms, deadline_ms, shard, change_ms, change_seq)
                             VALUES ($1, $2, $3, $4, 1, 1999, 'EUR', 'QUEUED', $5, 0, 'sync', 0, 0)",
                            &[&order_no, &event, &event, &buy.user_id, &now_ms()],
                        )
                        .await
                        .expect("insert");
                }
            }
        })
    });
    for t in futures_util::future::join_all(tasks).await {
        t.expect("buyer");
    }
    wins as f64 / started.elapsed().as_secs_f64()
}

async fn rows(pg: &TestPostgres, event: i64) -> i64 {
    pg.client()
        .await
        .query_one("SELECT count(*) FROM orders WHERE event_id = $1", &[&event])
        .await
        .unwrap()
        .get(0)
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let (redis, pg) = (TestRedis::spawn(&[]).await, TestPostgres::start().await);
    let store = redis.store().await;
    let keys = store.keys().clone();
    let pool = db::pool(&pg.url, 8).expect("pool");
    db::migrate(&pool).await.expect("migrate");
    let (_stop_tx, stop) = tokio::sync::watch::channel(false);
    tokio::spawn(run_order_worker(
        store.clone(),
        WorkerOptions::new("w"),
        Metrics::new(),
        stop.clone(),
    ));
    let conn = store.connection();
    let options = sink::Options {
        batch: args.batch,
        max_rows_per_s: NonZeroU32::new(args.pace),
        ..Default::default()
    };
    let sink = Arc::new(sink::Sink::new(conn, pool.clone(), keys.clone(), options));
    let (stop_sink, sink_stop) = tokio::sync::watch::channel(false);
    {
        let sink = sink.clone();
        tokio::spawn(async move { sink.run(sink_stop).await });
    }
    {
        let (sink, stop) = (sink.clone(), stop.clone());
        tokio::spawn(async move { sink.observe_every(Duration::from_millis(100), stop).await });
    }
    let wins = args.wins;
    store.put_stock(1, 3 * wins as i64).await.unwrap();
    store.put_sale(&sale(1, 1, wins as i64)).await.unwrap();

    let spike_start = Instant::now();
    let accept = spike(&store, 1, wins, args.clients, None).await;
    let spike_s = spike_start.elapsed().as_secs_f64();
    let mut max_lag = 0.0f64;
    let mut first_row: Option<Instant> = None;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        max_lag = max_lag.max(sink.metrics().lag.get());
        let n = rows(&pg, 1).await;
        if n > 0 && first_row.is_none() {
            first_row = Some(Instant::now());
        }
        if n as usize >= wins || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let drained_at = spike_start.elapsed().as_secs_f64();
    let m = sink.metrics();
    let batches = m.batch.get_sample_count().max(1);
    let mean_batch = m.batch.get_sample_sum() / batches as f64;
    // Rows over the whole time from the spike's start to the last row: the worker's creation and
    // the sink's batches together, as a shop would see them arrive.
    let drain_rate = wins as f64 / drained_at;

    // The sink's own pace: a spike queued while no sink runs (the worker creates the orders and
    // logs them), then a sink started against the backlog.
    stop_sink.send(true).ok();
    store.put_sale(&sale(3, 1, wins as i64)).await.unwrap();
    spike(&store, 3, wins, args.clients, None).await;
    let mut conn = store.connection();
    let changes = keys.changes(flashgate_core::stock::Shard::from(1));
    let queued = Instant::now() + Duration::from_secs(600);
    while redis::cmd("XLEN")
        .arg(&changes)
        .query_async::<usize>(&mut conn)
        .await
        .unwrap()
        < wins
        && Instant::now() < queued
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let backlog = Arc::new(sink::Sink::new(
        conn,
        pool.clone(),
        keys.clone(),
        sink::Options {
            batch: args.batch,
            ..Default::default()
        },
    ));
    let drain_start = Instant::now();
    {
        let (sink, stop) = (backlog.clone(), stop.clone());
        tokio::spawn(async move { sink.run(stop).await });
    }
    while (rows(&pg, 3).await as usize) < wins && drain_start.elapsed() < Duration::from_secs(600) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let backlog_s = drain_start.elapsed().as_secs_f64();
    let b = backlog.metrics();
    let backlog_batch = b.batch.get_sample_sum() / b.batch.get_sample_count().max(1) as f64;

    // The synchronous way: the same spike, each Buy inserting its row in the request path.
    store.put_sale(&sale(2, 1, wins as i64)).await.unwrap();
    let sync_accept = spike(&store, 2, wins, args.clients, Some(pool.clone())).await;

    let pace = match args.pace {
        0 => "unpaced".to_owned(),
        rows => format!("paced at {rows} rows/s"),
    };
    println!(
        "flashgate-bench-orders: {wins} wins, {} clients, sink batch {}, live sink {pace}",
        args.clients, args.batch
    );
    println!("  with the sink:   accept {accept:.0} buys/s (spike {spike_s:.2} s)");
    println!(
        "  live drain:      {drain_rate:.0} rows/s (sink running during the spike), mean batch {mean_batch:.0} over {batches} batches"
    );
    println!(
        "  backlog drain:   {:.0} rows/s ({wins} rows queued with no sink running, drained in {backlog_s:.2} s, mean batch {backlog_batch:.0})",
        wins as f64 / backlog_s
    );
    println!("  max lag {max_lag:.2} s, all {wins} rows in PostgreSQL {drained_at:.2} s after the spike began");
    println!(
        "  synchronous:     accept {sync_accept:.0} buys/s (each Buy inserts its row, {} clients)",
        args.clients
    );
    println!(
        "  ratio (sink / synchronous accept): {:.1}x",
        accept / sync_accept
    );
}

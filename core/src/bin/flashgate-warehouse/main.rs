//! `flashgate-warehouse`: the warehouse server. See `--help` and the README's configuration
//! reference. This binary owns the command line ([`cli`]) and turns the library's typed errors
//! into an exit with a message naming the setting or step that failed (`anyhow` lives here only).

mod cli;

use std::time::Duration;

use anyhow::Context as _;
use clap::Parser as _;
use flashgate_core::admission::Rules;
use flashgate_core::stock::{Currency, Sale};
use flashgate_core::warehouse::audit;
use flashgate_core::warehouse::server::{serve, Listeners};
use flashgate_core::warehouse::service::now_ms;
use flashgate_core::warehouse::store::{Durability, Guarantee};
use flashgate_core::warehouse::store::{MemoryStore, RedisStore, RedisStoreConfig, Store};
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

use cli::{Cli, Command, DemoSale, StoreKind};

// The Buy path allocates small, short-lived buffers (keys, script arguments, protobuf and h2
// frames) from many threads; glibc's allocator spent about a fifth of the warehouse's CPU on
// them under load (`perf record -e cpu-clock`, BENCHMARKS.md). mimalloc's per-thread free lists
// are made for that pattern. The library itself leaves the allocator to its binaries.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let auditing = matches!(cli.command, Some(Command::Audit(_)));
    match cli.store {
        StoreKind::Memory if auditing => run(MemoryStore::new(), cli).await,
        StoreKind::Memory => {
            tracing::warn!(
                "using the in-memory store: NOT durable, every sale and order is lost when this \
                 process stops; use --store redis in production"
            );
            let store = MemoryStore::new().with_retention(cli.retain_closed);
            run(store, cli).await
        }
        StoreKind::Redis => {
            let mut config = RedisStoreConfig::new(cli.redis_url.clone());
            config.prefix = cli.redis_prefix.clone();
            config.cluster = cli.redis_cluster;
            // The audit only reads (its repairs are idempotent steps): no durability check.
            config.durability = match auditing {
                true => Durability::Relaxed,
                false => cli.durability.into(),
            };
            let store = RedisStore::connect(config)
                .await
                .with_context(|| {
                    format!(
                        "--redis-url {} (--durability {}): cannot start on this Redis",
                        cli.redis_url,
                        Durability::from(cli.durability)
                    )
                })?
                .with_buy_batch(cli.buy_batch.on())
                .with_order_log(cli.order_log.on())
                .with_retention(cli.retain_closed);
            match store.guarantee() {
                _ if auditing => {}
                Guarantee::Relaxed(warning) => tracing::warn!("{warning}"),
                Guarantee::FsyncPerReply => tracing::info!(
                    "--durability fsync: every Redis runs appendfsync always; a write is \
                     answered only once it is on disk"
                ),
                Guarantee::WaitAof => tracing::info!(
                    "--durability fsync: each write waits for WAITAOF before it is answered"
                ),
            }
            run(store, cli).await
        }
    }
}

async fn run<S: Store>(store: S, cli: Cli) -> anyhow::Result<()> {
    if let Some(Command::Audit(args)) = &cli.command {
        if args.repair {
            let older_than = Duration::from_millis(args.repair_older_than_ms);
            let repairs = audit::repair(&store, older_than)
                .await
                .context("audit --repair: repairing seed-contract locks")?;
            print!("{}", audit::render_repairs(&repairs));
        }
        let report = audit::run(&store)
            .await
            .context("audit: reading the store")?;
        print!("{}", audit::render(&report));
        std::process::exit(if report.is_clean() { 0 } else { 1 });
    }
    if let Some(demo) = cli.demo_sale {
        put_demo_sale(&store, demo, cli.demo_room).await?;
    }
    let shutdown = shutdown_signal();
    let internal = TcpListener::bind(cli.listen)
        .await
        .with_context(|| format!("--listen {}", cli.listen))?;
    let edge = match cli.edge_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("--edge-listen {addr}"))?,
        ),
        None => None,
    };
    let metrics = match cli.metrics_listen.0 {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("--metrics-listen {addr}"))?,
        ),
        None => None,
    };
    let listeners = Listeners {
        internal,
        edge,
        metrics,
    };
    serve(store, cli.server_options(), listeners, shutdown)
        .await
        .context("serving")
}

/// The demo sale's price: 19.99 EUR, in cents.
const DEMO_PRICE: i64 = 1999;

async fn put_demo_sale<S: Store>(store: &S, demo: DemoSale, room: bool) -> anyhow::Result<()> {
    let start_ms = now_ms() + demo.starts_in_s * 1000;
    store
        .put_stock(demo.sku, demo.stock.into())
        .await
        .context("--demo-sale: putting stock")?;
    let sale = Sale {
        id: 1,
        sku: demo.sku,
        pool: demo.pool.into(),
        start_ms,
        end_ms: start_ms + 3_600_000,
        per_user_limit: 1,
        pay_window_ms: 300_000,
        subpools: 1,
        price: DEMO_PRICE,
        currency: Currency::parse("EUR").expect("a currency code"),
        limit_counts_held: false,
    };
    store
        .put_sale(&sale)
        .await
        .context("--demo-sale: creating the sale")?;
    // The line opens now: the whole wait to the start is the pre-queue.
    let rules = room.then_some(Rules {
        prequeue_ms: demo.starts_in_s * 1000,
        admit_factor: Rules::DEFAULT_ADMIT_FACTOR,
        admission_ttl_ms: Rules::DEFAULT_ADMISSION_TTL_MS,
    });
    store
        .put_room(&sale, rules.as_ref())
        .await
        .context("--demo-room: creating the sale's waiting room")?;
    tracing::info!(
        event = 1,
        sku = demo.sku,
        pool = demo.pool,
        start_ms,
        price = "19.99 EUR",
        waiting_room = room,
        "demo sale created"
    );
    Ok(())
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C). The SIGTERM handler is installed when this is
/// called, not when the future is first polled: `run` calls it before binding its ports, so a
/// SIGTERM that arrives while start-up is still under way is a graceful stop too, not a kill
/// (found by the process test, which stops the binary as soon as it serves).
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    async move {
        let ctrl_c = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        #[cfg(unix)]
        let term = async {
            match term.as_mut() {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => {},
            _ = term => {},
        }
        tracing::info!("shutdown requested; finishing requests in flight");
    }
}

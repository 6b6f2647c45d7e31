//! `flashgate-orders`: the order sink (`run`, the default) and the audit of Redis against
//! PostgreSQL (`audit`). Its own binary, not a `flashgate-warehouse` subcommand: the warehouse
//! then links no PostgreSQL driver, so no Buy can ever wait for the database, and the sink is
//! deployed, scaled and restarted on its own.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use flashgate_core::stock::Keys;
use flashgate_core::warehouse::env;
use flashgate_core::warehouse::store::{RedisConnection, RedisStoreConfig};
use flashgate_orders::{audit, db, metrics, sink};

#[derive(Debug, Parser)]
#[command(
    name = "flashgate-orders",
    about = "flashgate's order sink: Redis change logs → PostgreSQL"
)]
struct Cli {
    /// The warehouse's Redis (for a cluster, seed nodes separated by commas).
    #[arg(
        long,
        global = true,
        env = env::REDIS_URL,
        default_value = "redis://127.0.0.1:6379"
    )]
    redis_url: String,
    /// Read a Redis Cluster (implied when `--redis-url` names several nodes), as the
    /// warehouse's `--redis-cluster`.
    #[arg(long, global = true, env = env::REDIS_CLUSTER, default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    redis_cluster: bool,
    /// Namespace of every Redis key (the warehouse's `--redis-prefix`).
    #[arg(
        long,
        global = true,
        env = env::REDIS_PREFIX,
        default_value = "fg"
    )]
    redis_prefix: String,
    /// The orders database.
    #[arg(
        long,
        global = true,
        env = "FLASHGATE_ORDERS_DB",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    orders_db: String,
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Changes applied per transaction, at most.
    #[arg(long, env = "FLASHGATE_SINK_BATCH", default_value_t = 1000)]
    batch: usize,
    /// Rows written per second at most (0: as fast as PostgreSQL takes them); the change logs
    /// absorb the rest.
    #[arg(long, env = "FLASHGATE_SINK_MAX_ROWS_PER_S", default_value_t = 0)]
    max_rows_per_s: u32,
    /// This sink's consumer name (keep it across restarts: a sink reads its own pending entries
    /// first).
    #[arg(long, env = "FLASHGATE_SINK_CONSUMER", default_value = "sink")]
    consumer: String,
    /// Where /metrics and /healthz are served.
    #[arg(long, env = "FLASHGATE_SINK_LISTEN", default_value = "127.0.0.1:9187")]
    listen: SocketAddr,
    /// /healthz says "lagging" once the oldest change not in PostgreSQL is older than this
    /// many seconds.
    #[arg(long, env = "FLASHGATE_SINK_LAG_THRESHOLD_S", default_value_t = 30.0)]
    lag_threshold_s: f64,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Drain the change logs into PostgreSQL (the default).
    Run,
    /// Compare Redis with PostgreSQL; exit 0 when nothing is wrong (in flight is reported
    /// apart), 1 when something is, 2 when both agree only once `--clean` asks for nothing in
    /// flight either.
    Audit {
        /// Also fail (exit 2) while changes are still in flight.
        #[arg(long)]
        clean: bool,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let keys = Keys::new(cli.redis_prefix.clone());
    let mut config = RedisStoreConfig::new(cli.redis_url.clone());
    config.cluster = cli.redis_cluster;
    let redis = RedisConnection::open(&config)
        .await
        .with_context(|| format!("--redis-url {}: unreachable", cli.redis_url))?;
    let pool = db::pool(&cli.orders_db, 4)?;
    match cli.command.unwrap_or(Command::Run) {
        Command::Audit { clean } => {
            let mut redis = redis;
            let report = audit::audit(&mut redis, &keys, &pool).await?;
            print!("{report}");
            std::process::exit(if !report.is_consistent() {
                1
            } else if clean && !report.is_clean() {
                2
            } else {
                0
            });
        }
        Command::Run => run(cli.run, redis, pool, keys).await,
    }
}

async fn run(
    args: RunArgs,
    redis: RedisConnection,
    pool: deadpool_postgres::Pool,
    keys: Keys,
) -> anyhow::Result<()> {
    // Migrations run at start; a database not up yet is waited for (the sink starts with the
    // warehouse, PostgreSQL may come later: the change logs hold the wins meanwhile).
    let applied = loop {
        match db::migrate(&pool).await {
            Ok(applied) => break applied,
            Err(e) => {
                tracing::warn!(error = %e, "orders database not ready; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };
    tracing::info!(?applied, "orders database migrated");
    let options = sink::Options {
        consumer: args.consumer,
        batch: args.batch.max(1),
        max_rows_per_s: NonZeroU32::new(args.max_rows_per_s),
        ..sink::Options::default()
    };
    let sink = std::sync::Arc::new(sink::Sink::new(redis, pool, keys, options));
    let listener = metrics::bind(args.listen)
        .await
        .with_context(|| format!("--listen {}", args.listen))?;
    eprintln!(
        "flashgate-orders: metrics and /healthz on http://{}",
        listener.local_addr()?
    );
    tokio::spawn(metrics::serve(
        listener,
        sink.metrics(),
        Duration::from_secs_f64(args.lag_threshold_s.max(0.0)),
    ));
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let observer = {
        let sink = sink.clone();
        let stop = stop.clone();
        tokio::spawn(async move { sink.observe_every(Duration::from_millis(500), stop).await })
    };
    let runner = {
        let sink = sink.clone();
        tokio::spawn(async move { sink.run(stop).await })
    };
    tokio::signal::ctrl_c().await.ok();
    let _ = stop_tx.send(true);
    let _ = runner.await;
    let _ = observer.await;
    Ok(())
}

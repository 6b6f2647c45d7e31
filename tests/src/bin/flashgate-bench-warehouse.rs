//! `flashgate-bench-warehouse`: Buy decisions per second through the warehouse, against the two
//! numbers that frame it, all measured in the same run on the same machine:
//!
//! - the ceiling: `redis-benchmark -c N` running EVALSHA of the very same Buy script on the same
//!   Redis (what the warehouse would reach if gRPC, validation and the network cost nothing);
//! - the peer: the SQL way to take stock, `UPDATE … SET stock = stock - 1 WHERE id = $1 AND
//!   stock >= 1` on one hot row, with pgbench at the same concurrency.
//!
//! It starts its own Redis (AOF, `appendfsync everysec` or `always`: `--durability`) and the
//! release warehouse binary on the Redis store (order worker off, so the CPU figure is the Buy
//! path's, unless `--order-worker true` counts its cost too), once per `--batch` mode (`off`: one
//! script call per buy, `on`: batched) and, with `--gather N`, once more batched with each client
//! sending `Seckill/BuyMany` calls of N buys, as an edge instance that gathers its buys does
//! (`gathered`), reads the warehouse's CPU time from /proc and Redis's CPU
//! per buy from `INFO commandstats` (the usec of the EVALSHA calls ÷ the buys decided; with the
//! order worker on, its `create_order.lua` calls are in that sum).
//! Run it with `scripts/bench/warehouse.sh`; the README and BENCHMARKS.md say more.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use flashgate_core::proto::flashsale::{
    admin_client::AdminClient, buy_result, seckill_client::SeckillClient, BuyManyReq, BuyOutcome,
    BuyReq, Event, PutSkuStockReq, SkuLedgerReq,
};
use flashgate_core::stock::{call, BuyRequest, Keys, Shard};
use flashgate_core::warehouse::service::now_ms;
use flashgate_tests::{eventually, free_port, TestRedis};
use tonic::transport::Channel;

#[derive(Debug, Parser)]
#[command(about = "Benchmark Buy decisions through the warehouse against Redis and SQL baselines")]
struct Args {
    /// Concurrent clients (each on its own connection).
    #[arg(long, default_value_t = 50)]
    clients: usize,
    /// Seconds of measured load per phase.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// The warehouse binary (default: the release build beside this one).
    #[arg(long)]
    warehouse_bin: Option<PathBuf>,
    /// Which buy paths to measure: `off` (one script call per buy), `on` (batched) or `both`.
    #[arg(long, value_enum, default_value_t = Batch::Both)]
    batch: Batch,
    /// Buys per `Seckill/BuyMany` in the `gathered` mode, measured beside `batched` (each
    /// client plays an edge instance that gathered this many buys while its last call was out);
    /// 0 skips it.
    #[arg(long, default_value_t = 16)]
    gather: usize,
    /// Redis's AOF fsync: `relaxed` (`appendfsync everysec`) or `fsync` (`always`).
    #[arg(long, value_enum, default_value_t = Durability::Relaxed)]
    durability: Durability,
    /// Run the warehouse's order worker and sweeper during the load (`true`: its Redis and CPU
    /// cost counted in the figures, as in production) or not (`false`: the Buy path alone).
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    order_worker: bool,
    /// PostgreSQL connection for the SQL baseline (libpq URL); `off` skips it.
    #[arg(long, default_value = "postgresql://postgres@127.0.0.1:5432/test")]
    postgres: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Batch {
    On,
    Off,
    Both,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Durability {
    Relaxed,
    Fsync,
}

/// The batch size of the Redis-side batch ceiling.
const CEILING_BATCH: usize = 32;

const SKU: i64 = 1;
const EVENT: i64 = 1;
const POOL: i32 = 50_000_000;

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// User + system CPU time of a process so far, from /proc (the same figures as its rusage).
fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let after = stat.rsplit_once(')').context("stat format")?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    let hz = 100; // USER_HZ on Linux
    Ok(Duration::from_millis(ticks * 1000 / hz))
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

struct LoadResult {
    decisions: u64,
    queued: u64,
    other: u64,
    errors: u64,
    latencies_us: Vec<u32>,
    elapsed: Duration,
}

async fn load(
    addr: &str,
    clients: usize,
    gather: usize,
    run_for: Duration,
    tag: &str,
) -> anyhow::Result<LoadResult> {
    let mut channels = Vec::new();
    for _ in 0..clients {
        channels.push(Channel::from_shared(addr.to_owned())?.connect().await?);
    }
    let started = Instant::now();
    let deadline = started + run_for;
    let tag = Arc::new(tag.to_owned());
    let mut tasks = tokio::task::JoinSet::new();
    for (c, channel) in channels.into_iter().enumerate() {
        let tag = tag.clone();
        tasks.spawn(async move {
            let mut client = SeckillClient::new(channel);
            let (mut queued, mut other, mut errors, mut lat) =
                (0u64, 0u64, 0u64, Vec::with_capacity(200_000));
            let mut i = 0u64;
            let mut next = || {
                i += 1;
                BuyReq {
                    event_id: EVENT,
                    user_id: format!("{tag}-{c}-{i}"),
                    qty: 1,
                    request_id: "r".into(),
                }
            };
            while Instant::now() < deadline {
                let t = Instant::now();
                if gather == 0 {
                    match client.buy(next()).await {
                        Ok(r) if r.get_ref().outcome() == BuyOutcome::Queued => queued += 1,
                        Ok(_) => other += 1,
                        Err(_) => errors += 1,
                    }
                    lat.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                    continue;
                }
                let buys = (0..gather).map(|_| next()).collect();
                match client.buy_many(BuyManyReq { buys }).await {
                    Ok(reply) => {
                        for result in &reply.get_ref().results {
                            match &result.result {
                                Some(buy_result::Result::Reply(r))
                                    if r.outcome() == BuyOutcome::Queued =>
                                {
                                    queued += 1
                                }
                                Some(buy_result::Result::Reply(_)) => other += 1,
                                _ => errors += 1,
                            }
                        }
                    }
                    Err(_) => errors += gather as u64,
                }
                // Each buy of the call waited as long as the call took.
                let us = t.elapsed().as_micros().min(u32::MAX as u128) as u32;
                lat.extend(std::iter::repeat_n(us, gather));
            }
            (queued, other, errors, lat)
        });
    }
    let mut result = LoadResult {
        decisions: 0,
        queued: 0,
        other: 0,
        errors: 0,
        latencies_us: Vec::new(),
        elapsed: Duration::ZERO,
    };
    while let Some(joined) = tasks.join_next().await {
        let (q, o, e, lat) = joined?;
        result.queued += q;
        result.other += o;
        result.errors += e;
        result.latencies_us.extend(lat);
    }
    result.elapsed = started.elapsed();
    result.decisions = result.queued + result.other;
    result.latencies_us.sort_unstable();
    Ok(result)
}

/// `redis-benchmark` of EVALSHA buy_batch.lua with `batch` buys per call: calls per second.
fn redis_ceiling(
    port: u16,
    sha: &str,
    clients: usize,
    requests: u64,
    pipeline: u32,
    batch: usize,
) -> anyhow::Result<f64> {
    let keys = Keys::new("fg");
    let mut args: Vec<String> = vec![
        "-h".into(),
        "127.0.0.1".into(),
        "-p".into(),
        port.to_string(),
        "-c".into(),
        clients.to_string(),
        "-n".into(),
        requests.to_string(),
        "-P".into(),
        pipeline.to_string(),
        "-r".into(),
        "1000000000".into(),
        "--csv".into(),
        "EVALSHA".into(),
        sha.into(),
    ];
    // The warehouse's own call, with a fresh user per buy (redis-benchmark fills in each
    // `__rand_int__` on its own), so every buy is a first buy like the warehouse's clients make.
    let buy = BuyRequest {
        event_id: EVENT,
        user_id: "rb-__rand_int__".into(),
        qty: 1,
        request_id: "r".into(),
    };
    let now = now_ms();
    let buys = vec![(&buy, now); batch];
    let call = call::buy_batch(&keys, Shard::from(SKU), 1, &buys);
    args.push(call.keys.len().to_string());
    args.extend(call.keys);
    args.extend(call.args);
    let out = Command::new("redis-benchmark")
        .args(&args)
        .output()
        .context("run redis-benchmark")?;
    let text = String::from_utf8_lossy(&out.stdout);
    // CSV: "test","rps",...
    let line = text
        .lines()
        .find(|l| l.starts_with("\"EVALSHA"))
        .with_context(|| format!("redis-benchmark said: {text}"))?;
    let rps = line
        .split(',')
        .nth(1)
        .context("csv")?
        .trim_matches('"')
        .parse()?;
    Ok(rps)
}

/// pgbench on one hot row: transactions per second, or why it was skipped.
fn sql_baseline(url: &str, clients: usize, seconds: u64) -> Result<f64, String> {
    let setup = "DROP TABLE IF EXISTS flashgate_bench_stock; \
        CREATE TABLE flashgate_bench_stock (id int PRIMARY KEY, stock int NOT NULL); \
        INSERT INTO flashgate_bench_stock VALUES (1, 2000000000);";
    let psql = Command::new("psql")
        .args([url, "-q", "-v", "ON_ERROR_STOP=1", "-c", setup])
        .output()
        .map_err(|e| format!("psql: {e}"))?;
    if !psql.status.success() {
        return Err(format!(
            "psql: {}",
            String::from_utf8_lossy(&psql.stderr).trim()
        ));
    }
    let script = std::env::temp_dir().join(format!("flashgate-bench-{}.sql", std::process::id()));
    std::fs::write(
        &script,
        "UPDATE flashgate_bench_stock SET stock = stock - 1 WHERE id = 1 AND stock >= 1;\n",
    )
    .map_err(|e| e.to_string())?;
    let out = Command::new("pgbench")
        .args([
            "-n",
            "-c",
            &clients.to_string(),
            "-j",
            "2",
            "-T",
            &seconds.to_string(),
            "-f",
        ])
        .arg(&script)
        .arg(url)
        .output()
        .map_err(|e| format!("pgbench: {e}"))?;
    let _ = std::fs::remove_file(&script);
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| l["tps = ".len()..].split_whitespace().next()?.parse().ok())
        .ok_or_else(|| {
            format!(
                "pgbench said: {}{}",
                text,
                String::from_utf8_lossy(&out.stderr)
            )
        })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let bin = match args.warehouse_bin.clone() {
        Some(bin) => bin,
        None => std::env::current_exe()?.with_file_name("flashgate-warehouse"),
    };
    if !bin.exists() {
        bail!("{} not found: build it with `cargo build --release -p flashgate-core --features warehouse`", bin.display());
    }
    eprintln!("starting redis-server ({:?}) …", args.durability);
    let dir = std::env::temp_dir().join(format!("flashgate-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let dir_arg = dir.to_string_lossy().into_owned();
    let fsync = match args.durability {
        Durability::Relaxed => "everysec",
        Durability::Fsync => "always",
    };
    let redis = TestRedis::spawn(&[
        "--appendonly",
        "yes",
        "--appendfsync",
        fsync,
        "--dir",
        &dir_arg,
    ])
    .await;
    let redis_port: u16 = redis.url.rsplit(':').next().context("port")?.parse()?;
    let mut conn = redis::Client::open(redis.url.as_str())?
        .get_multiplexed_async_connection()
        .await?;
    let mut modes: Vec<(&str, bool, usize)> = match args.batch {
        Batch::Off => vec![("single", false, 0)],
        Batch::On => vec![("batched", true, 0)],
        Batch::Both => vec![("single", false, 0), ("batched", true, 0)],
    };
    if args.gather > 0 && args.batch != Batch::Off {
        modes.push(("gathered", true, args.gather));
    }
    let run_for = Duration::from_secs(args.seconds);
    let mut results = Vec::new();
    let mut queued_total = 0i64;
    for (round, &(name, batched, gather)) in modes.iter().enumerate() {
        let port = free_port();
        let addr = format!("http://127.0.0.1:{port}");
        eprintln!(
            "starting {} --buy-batch {} …",
            bin.display(),
            if batched { "on" } else { "off" }
        );
        let warehouse = Killed(
            Command::new(&bin)
                .args([
                    "--store",
                    "redis",
                    "--redis-url",
                    &redis.url,
                    "--listen",
                    &format!("127.0.0.1:{port}"),
                    "--buy-batch",
                    if batched { "on" } else { "off" },
                ])
                .args(["--metrics-listen", "off"])
                .args([
                    "--order-worker",
                    if args.order_worker { "true" } else { "false" },
                ])
                // The warehouse's own check then holds the bench's Redis to its word.
                .args([
                    "--durability",
                    match args.durability {
                        Durability::Relaxed => "relaxed",
                        Durability::Fsync => "fsync",
                    },
                ])
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .spawn()
                .context("start the warehouse")?,
        );
        let channel = eventually(
            "the warehouse to accept connections",
            Duration::from_secs(20),
            || {
                let addr = addr.clone();
                async move { Channel::from_shared(addr).ok()?.connect().await.ok() }
            },
        )
        .await;
        let mut admin = AdminClient::new(channel);
        if round == 0 {
            define_sale(&mut admin).await?;
        }
        eprintln!("[{name}] warming up (1 s) …");
        let warm = load(
            &addr,
            args.clients,
            gather,
            Duration::from_secs(1),
            &format!("warm{round}"),
        )
        .await?;
        eprintln!(
            "[{name}] measuring Buy through the warehouse: {} clients for {} s …",
            args.clients, args.seconds
        );
        let stats_before = script_stats(&mut conn).await?;
        let cpu_before = cpu_time(warehouse.0.id())?;
        let buys = load(
            &addr,
            args.clients,
            gather,
            run_for,
            &format!("bench{round}"),
        )
        .await?;
        let cpu = cpu_time(warehouse.0.id())?.saturating_sub(cpu_before);
        let stats = script_stats(&mut conn).await?.since(stats_before);
        queued_total += (warm.queued + buys.queued) as i64;
        let ledger = admin
            .get_sku_ledger(SkuLedgerReq { sku_id: SKU })
            .await?
            .into_inner();
        drop(warehouse);
        results.push((name, buys, cpu, stats, ledger, gather));
    }

    // No oversell: every QUEUED answer left the pool for `locked`, and nothing else moved.
    let ledger = &results.last().expect("a mode").4;
    let conserved = ledger.available + ledger.pools + ledger.locked + ledger.sold == ledger.total;
    let oversold = (ledger.locked - queued_total).abs()
        + i64::from(!conserved)
        + (i64::from(POOL) - ledger.pools - ledger.locked).abs();

    eprintln!("measuring the Redis ceilings with redis-benchmark …");
    let sha: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(call::BUY_BATCH.source)
        .query_async(&mut conn)
        .await?;
    let most = results.iter().map(|r| r.1.decisions).max().unwrap_or(0);
    let ceiling_requests = (most.max(20_000) * 2).min(2_000_000);
    let ceiling = redis_ceiling(redis_port, &sha, args.clients, ceiling_requests, 1, 1)?;
    let ceiling_p16 = redis_ceiling(redis_port, &sha, args.clients, ceiling_requests * 3, 16, 1)?;
    let before = script_stats(&mut conn).await?;
    let batch_requests = (ceiling_requests / CEILING_BATCH as u64).max(2_000);
    let ceiling_batch = redis_ceiling(
        redis_port,
        &sha,
        args.clients,
        batch_requests,
        1,
        CEILING_BATCH,
    )? * CEILING_BATCH as f64;
    let at_batch = script_stats(&mut conn).await?.since(before);

    eprintln!("measuring the SQL hot-row baseline with pgbench …");
    let sql = if args.postgres == "off" {
        Err("--postgres off".into())
    } else {
        sql_baseline(&args.postgres, args.clients, args.seconds)
    };

    println!();
    println!(
        "flashgate warehouse benchmark: {} clients, {} s per mode, Redis store (AOF appendfsync {fsync}), order worker {}",
        args.clients,
        args.seconds,
        if args.order_worker { "on" } else { "off" }
    );
    let mut single_rate = None;
    let mut single_cpu = None;
    for (name, buys, cpu, stats, _, gather) in &results {
        let rate = buys.decisions as f64 / buys.elapsed.as_secs_f64();
        let lat = &buys.latencies_us;
        let cpu_per_buy = cpu.as_secs_f64() * 1e6 / buys.decisions.max(1) as f64;
        let method = if *gather > 0 {
            format!("BuyMany of {gather}")
        } else {
            "Buy".to_owned()
        };
        println!("  {name:<8} ({method}, gRPC): {rate:>10.0} decisions/s  p50 {} µs  p99 {} µs  ({} queued, {} refused, {} errors)",
            percentile(lat, 0.50), percentile(lat, 0.99), buys.queued, buys.other, buys.errors);
        println!(
            "    warehouse CPU per Buy        : {cpu_per_buy:>10.1} µs  ({:.2} s CPU over {:.2} s)",
            cpu.as_secs_f64(),
            buys.elapsed.as_secs_f64()
        );
        println!(
            "    Redis CPU per Buy (scripts)  : {:>10.1} µs  ({} EVALSHA, {:.1} buys per call)",
            stats.usec as f64 / buys.decisions.max(1) as f64,
            stats.calls,
            buys.decisions as f64 / stats.calls.max(1) as f64
        );
        match (*name, single_rate, single_cpu) {
            ("single", _, _) => {
                single_rate = Some(rate);
                single_cpu = Some(cpu_per_buy);
            }
            (_, Some(base), Some(base_cpu)) => println!(
                "    vs single                    : {:>10.2} × throughput, {:.2} × warehouse CPU per Buy",
                rate / base,
                cpu_per_buy / base_cpu
            ),
            _ => {}
        }
    }
    println!("  Redis ceiling, EVALSHA 1 buy     : {ceiling:>10.0} /s  (redis-benchmark -c {} -P 1; -P 16: {ceiling_p16:.0} /s)", args.clients);
    println!(
        "  Redis ceiling, EVALSHA {CEILING_BATCH} buys   : {ceiling_batch:>10.0} buys/s  ({:.1} µs Redis CPU per buy)",
        at_batch.usec as f64 / (at_batch.calls.max(1) as f64 * CEILING_BATCH as f64)
    );
    match &sql {
        Ok(tps) => println!(
            "  SQL hot row, UPDATE … stock >= 1 : {tps:>10.0} TPS  (pgbench -c {} -j 2)",
            args.clients
        ),
        Err(why) => println!("  SQL hot row                      : skipped ({why})"),
    }
    for (name, buys, ..) in &results {
        let rate = buys.decisions as f64 / buys.elapsed.as_secs_f64();
        println!(
            "  ratio {name:<8} / ceiling -P 1   : {:>10.2}  (-P 16: {:.2})",
            rate / ceiling,
            rate / ceiling_p16
        );
        if let Ok(tps) = sql {
            println!("  ratio {name:<8} / SQL hot row  : {:>10.1}", rate / tps);
        }
    }
    println!("  oversold units                   : {oversold:>10}  (must be 0)");
    drop(redis);
    let _ = std::fs::remove_dir_all(&dir);
    let errors: u64 = results.iter().map(|r| r.1.errors).sum();
    if oversold != 0 || errors > 0 {
        bail!("the benchmark saw oversold units or errors: ledger {ledger:?}, errors {errors}");
    }
    Ok(())
}

/// Stock for the benchmark and its one sale, open for an hour.
async fn define_sale(admin: &mut AdminClient<Channel>) -> anyhow::Result<()> {
    admin
        .put_sku_stock(PutSkuStockReq {
            sku_id: SKU,
            num: POOL + 1_000,
        })
        .await?;
    let start_ms = now_ms() - 1_000;
    admin
        .put_event(Event {
            id: EVENT,
            sku_id: SKU,
            pool: POOL,
            start_ms,
            end_ms: start_ms + 3_600_000,
            per_user_limit: 1,
            pay_window_ms: 300_000,
            subpools: 0,
            price: 1999,
            currency: "EUR".into(),
            ..Default::default()
        })
        .await?;
    Ok(())
}

/// The EVALSHA line of `INFO commandstats`: calls and usec so far.
#[derive(Debug, Clone, Copy, Default)]
struct ScriptStats {
    calls: u64,
    usec: u64,
}

impl ScriptStats {
    fn since(self, before: Self) -> Self {
        Self {
            calls: self.calls - before.calls,
            usec: self.usec - before.usec,
        }
    }
}

async fn script_stats(conn: &mut redis::aio::MultiplexedConnection) -> anyhow::Result<ScriptStats> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await?;
    let mut stats = ScriptStats::default();
    // cmdstat_evalsha:calls=N,usec=U,usec_per_call=…
    if let Some(line) = info.lines().find(|l| l.starts_with("cmdstat_evalsha:")) {
        for part in line["cmdstat_evalsha:".len()..].split(',') {
            match part.split_once('=') {
                Some(("calls", n)) => stats.calls = n.trim().parse()?,
                Some(("usec", n)) => stats.usec = n.trim().parse()?,
                _ => {}
            }
        }
    }
    Ok(stats)
}

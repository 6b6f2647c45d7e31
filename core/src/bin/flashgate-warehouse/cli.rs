//! The command line of `flashgate-warehouse`: every setting is a flag and an environment
//! variable (the names, [`flashgate_core::warehouse::env`], are part of the operator interface;
//! keep them stable), parsed once at start-up into typed values. A bad value stops start-up with
//! a message naming the setting. Only the binary parses a command line: the library takes the
//! typed [`ServerOptions`] this produces.

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::time::Duration;

use clap::builder::TypedValueParser;
use clap::error::ErrorKind;
use clap::{Parser, ValueEnum};

use flashgate_core::origin_auth::MIN_KEY_LEN;
use flashgate_core::warehouse::env;
use flashgate_core::warehouse::internal::MIN_TOKEN_LEN;
use flashgate_core::warehouse::server::ServerOptions;
use flashgate_core::warehouse::service::queue::MIN_QUEUE_SECRET_LEN;
use flashgate_core::warehouse::store::Durability;
use flashgate_core::warehouse::worker::WorkerOptions;

/// Where stock is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StoreKind {
    /// In this process only: NOT durable, for a local run and tests.
    Memory,
    /// Redis (production): AOF on, see the README.
    Redis,
}

/// `--durability`: what an acknowledgement from the Redis store promises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DurabilityFlag {
    /// Answer a write only once it is on disk (the default).
    Fsync,
    /// Answer once Redis applied it; a crash of Redis may lose acknowledged writes.
    Relaxed,
}

impl From<DurabilityFlag> for Durability {
    fn from(flag: DurabilityFlag) -> Self {
        match flag {
            DurabilityFlag::Fsync => Durability::Fsync,
            DurabilityFlag::Relaxed => Durability::Relaxed,
        }
    }
}

/// flashgate's warehouse: takes flash-sale stock atomically and never oversells.
#[derive(Debug, Clone, Parser)]
#[command(name = "flashgate-warehouse", version, about, long_about = None)]
pub struct Cli {
    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,

    /// The internal listener: native gRPC for the shop's own back office (seed contract, Admin,
    /// the order side, health, reflection). Never expose it to the internet.
    #[arg(long, env = env::LISTEN, default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,

    /// The edge listener: origin-signed gRPC-Web of the edge's methods only, the one port that
    /// may face the internet (behind TLS). Unset: no edge listener.
    #[arg(long, env = env::EDGE_LISTEN)]
    pub edge_listen: Option<SocketAddr>,

    /// Bearer token every call on the internal listener but health must carry
    /// (`authorization: Bearer <token>`), at least 32 bytes of visible ASCII. Unset: the
    /// internal listener is open to whoever reaches it.
    #[arg(long, env = env::INTERNAL_TOKEN, hide_env_values = true, value_parser = Secret(check_internal_token))]
    pub internal_token: Option<String>,

    /// Prometheus metrics listen address (`GET /metrics`); `off` disables it.
    #[arg(long, env = env::METRICS_LISTEN, default_value = "127.0.0.1:9464", value_parser = parse_optional_addr)]
    pub metrics_listen: OptionalAddr,

    /// Where stock is kept: `memory` (embedded, not durable) or `redis`.
    #[arg(long, global = true, env = env::STORE, value_enum, default_value_t = StoreKind::Memory)]
    pub store: StoreKind,

    /// Redis URL for `--store redis`; for a Redis Cluster, one or more seed nodes separated by
    /// commas.
    #[arg(long, global = true, env = env::REDIS_URL, default_value = "redis://127.0.0.1:6379", value_parser = parse_redis_url)]
    pub redis_url: String,

    /// Talk to a Redis Cluster (implied when `--redis-url` names several nodes).
    #[arg(long, global = true, env = env::REDIS_CLUSTER, default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub redis_cluster: bool,

    /// With the Redis store: decide concurrent buys of one sale in one shard by one script call
    /// (`on`: everything queued while the previous call was out, up to 64) or each alone
    /// (`off`: one call per buy, the single-call baseline).
    #[arg(long, global = true, env = env::BUY_BATCH, value_enum, default_value_t = Switch::On)]
    pub buy_batch: Switch,

    /// With the Redis store: append every order change (created, paid, cancelled, expired) and
    /// every seed-contract lock step (per SKU) to its shard's change log `{sku:ID}:changes` in
    /// the same script, for the order sink
    /// (`flashgate-orders`) to carry into PostgreSQL (`on`); `off` for a deployment with no sink,
    /// whose logs would otherwise keep one entry per change until a sink drains them.
    #[arg(long, global = true, env = env::ORDER_LOG, value_enum, default_value_t = Switch::On)]
    pub order_log: Switch,

    /// Namespace of every Redis key.
    #[arg(long, global = true, env = env::REDIS_PREFIX, default_value = "fg", value_parser = parse_prefix)]
    pub redis_prefix: String,

    /// With `--store redis`: `fsync` answers a Buy, PayOrder, CancelOrder, SKuStockLock or
    /// SkuStockUnlock only once its write is on disk, and refuses to start against a Redis that
    /// cannot give that (it needs `appendonly yes` with `appendfsync always`, or Redis 7.2+ for
    /// WAITAOF); `relaxed` answers once Redis applied it in memory, and a crash of Redis may
    /// lose up to a second of acknowledged writes (all of them with `appendonly no`). Ignored by
    /// the memory store and by `audit`.
    #[arg(long, global = true, env = env::DURABILITY, value_enum, default_value_t = DurabilityFlag::Fsync)]
    pub durability: DurabilityFlag,

    /// Shared key the edge signs gRPC-Web calls with (at least 16 bytes). Without it every call
    /// on the edge listener is refused.
    #[arg(long, env = env::ORIGIN_KEY, hide_env_values = true, value_parser = Secret(check_origin_key))]
    pub origin_key: Option<String>,

    /// The waiting rooms' draw secret: hex, at least 32 bytes (generate one: openssl rand -hex
    /// 32), the same on every warehouse sharing a Redis. A pre-queue's order is a keyed hash
    /// under it. Without it, waiting-room sales are refused (FAILED_PRECONDITION).
    #[arg(long, env = env::QUEUE_SECRET, hide_env_values = true, value_parser = Secret(check_queue_secret))]
    pub queue_secret: Option<String>,

    /// Tolerated clock difference between edge and warehouse, ms.
    #[arg(long, env = env::ORIGIN_MAX_SKEW_MS, default_value_t = 30_000, value_parser = clap::value_parser!(i64).range(1..=600_000))]
    pub origin_max_skew_ms: i64,

    /// Requests in flight per connection; more are shed with RESOURCE_EXHAUSTED.
    #[arg(long, env = env::CONCURRENCY, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub concurrency_per_connection: u32,

    /// Longest a request may run, ms.
    #[arg(long, env = env::REQUEST_TIMEOUT_MS, default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub request_timeout_ms: u64,

    /// This process's name in the order workers' consumer group, unique per process
    /// (default `HOST-PID`).
    #[arg(long, env = env::CONSUMER)]
    pub consumer: Option<String>,

    /// Let `DemoPayOrder` pay orders with a made-up payment (`demo-` + the order number): for a
    /// local demo only. Off, the edge has no way to pay; orders are paid by the shop's payment
    /// service calling `PayOrder` on the internal listener.
    #[arg(long, env = env::DEMO_PAYMENTS, default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub demo_payments: bool,

    /// Run the order worker and the sweeper in this process.
    #[arg(long, env = env::ORDER_WORKER, default_value_t = true, action = clap::ArgAction::Set)]
    pub order_worker: bool,

    /// Idle time after which another worker reclaims a delivered, unacknowledged win, ms.
    #[arg(long, env = env::RECLAIM_IDLE_MS, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub reclaim_idle_ms: u64,

    /// How long a seed-contract lock or unlock must have stood still between its per-SKU steps
    /// before the sweeper finishes it (rolls a lock back, an unlock forward), ms. Longer than a
    /// step takes, so a live caller is rarely interrupted (it would be safe anyway: it retries).
    #[arg(long, env = env::REPAIR_AFTER_MS, default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub repair_after_ms: u64,

    /// How long a retired sale's keys are kept: a sale that has ended and whose orders are all
    /// paid, cancelled or expired leaves the order worker's and the sweeper's lists, and its
    /// hash, per-user counts and request ids expire this long after (`7d`, `12h`, `30m`, `90s`,
    /// `500ms`); the sweeper then deletes its orders. The SKU's counters keep what it sold.
    #[arg(long, env = env::RETAIN_CLOSED, default_value = "7d", value_parser = parse_retention)]
    pub retain_closed: Duration,

    /// Create a demo sale at start-up: `SKU:STOCK:POOL:STARTS_IN_SECONDS` (e.g. `1001:100:10:30`),
    /// event id 1, 19.99 EUR a unit, one unit per user (cancelled units included), 5 minutes to
    /// pay, one hour long.
    #[arg(long, env = env::DEMO_SALE, value_parser = parse_demo_sale)]
    pub demo_sale: Option<DemoSale>,

    /// Give the demo sale a waiting room: its line opens at start-up (the pre-queue runs to the
    /// start, then the draw), at most 2 × remaining admitted at once, 30 s to use an admission.
    /// Needs --demo-sale and --queue-secret.
    #[arg(long, env = env::DEMO_ROOM, default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", requires = "demo_sale", requires = "queue_secret")]
    pub demo_room: bool,
}

/// What the binary does.
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum Command {
    /// Serve the internal and edge listeners (the default).
    Serve,
    /// Check that the store's stock adds up (read-only unless `--repair`; safe on a live Redis).
    /// Exits 1 on any violation.
    Audit(AuditArgs),
}

/// The `audit` subcommand's flags.
#[derive(Debug, Clone, PartialEq, Eq, Default, clap::Args)]
pub struct AuditArgs {
    /// First finish seed-contract locks stopped between their per-SKU steps by a crash (roll a
    /// lock back, an unlock forward), and print what was repaired. Safe while warehouses run.
    #[arg(long)]
    pub repair: bool,

    /// With `--repair` (ignored without it): only locks that have stood still this long, ms.
    /// The default spares locks a live warehouse is taking right now (the sweeper's default
    /// lease); 0 repairs every one at once, for a fleet that is stopped.
    #[arg(long, env = env::REPAIR_OLDER_THAN_MS, default_value_t = 5_000)]
    pub repair_older_than_ms: u64,
}

/// The `--demo-sale` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DemoSale {
    /// SKU put on sale.
    pub sku: i64,
    /// Its on-hand total.
    pub stock: i32,
    /// Units in the sale's pool.
    pub pool: i32,
    /// Seconds from start-up to the sale's start.
    pub starts_in_s: i64,
}

/// A listen address, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionalAddr(pub Option<SocketAddr>);

/// A setting that is `on` or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Switch {
    /// On.
    On,
    /// Off.
    Off,
}

impl Switch {
    /// Whether it is on.
    pub fn on(self) -> bool {
        self == Self::On
    }
}

fn parse_optional_addr(s: &str) -> Result<OptionalAddr, String> {
    if s.eq_ignore_ascii_case("off") {
        return Ok(OptionalAddr(None));
    }
    s.parse()
        .map(|a| OptionalAddr(Some(a)))
        .map_err(|e| format!("{e} (expected HOST:PORT or `off`)"))
}

/// A retention time: a whole number and a unit (`d`, `h`, `m`, `s`, `ms`), at least 1 ms.
fn parse_retention(s: &str) -> Result<Duration, String> {
    let digits = s.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 7d, 12h, 30m, 90s or 500ms"))?;
    let ms = match &s[digits.len()..] {
        "d" => n.checked_mul(86_400_000),
        "h" => n.checked_mul(3_600_000),
        "m" => n.checked_mul(60_000),
        "s" => n.checked_mul(1_000),
        "ms" => Some(n),
        unit => {
            return Err(format!(
                "{s:?}: unknown unit {unit:?} (use d, h, m, s or ms)"
            ))
        }
    };
    match ms {
        Some(ms) if ms >= 1 => Ok(Duration::from_millis(ms)),
        _ => Err(format!("{s:?} is out of range (1ms to centuries)")),
    }
}

fn parse_redis_url(s: &str) -> Result<String, String> {
    let mut urls = s
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .peekable();
    if urls.peek().is_none() {
        return Err("no Redis URL".into());
    }
    for url in urls {
        redis::Client::open(url).map_err(|e| format!("{url:?} is not a Redis URL: {e}"))?;
    }
    Ok(s.to_owned())
}

fn parse_prefix(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 32
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    ok.then(|| s.to_owned())
        .ok_or_else(|| "1 to 32 characters of [A-Za-z0-9._-]".into())
}

/// The parser of a secret setting: a refusal names the setting and says why, and — unlike
/// clap's message for a plain parser function — never repeats the value, so a mistyped key does
/// not end up in a log.
#[derive(Clone, Copy)]
struct Secret(fn(&str) -> Result<(), String>);

impl TypedValueParser for Secret {
    type Value = String;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<String, clap::Error> {
        let name = arg.map_or_else(|| "...".to_owned(), ToString::to_string);
        let refuse = |why: String| {
            let message = format!("invalid value for '{name}' (not shown): {why}\n");
            clap::Error::raw(ErrorKind::ValueValidation, message).with_cmd(cmd)
        };
        let value = value.to_str().ok_or_else(|| refuse("not UTF-8".into()))?;
        (self.0)(value).map_err(refuse)?;
        Ok(value.to_owned())
    }
}

fn check_origin_key(s: &str) -> Result<(), String> {
    if s.len() < MIN_KEY_LEN {
        return Err(format!(
            "must be at least {MIN_KEY_LEN} bytes (generate one: openssl rand -hex 32)"
        ));
    }
    Ok(())
}

/// Bytes from hex digits (an even count), or `None`.
fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

fn check_queue_secret(s: &str) -> Result<(), String> {
    match decode_hex(s) {
        Some(bytes) if bytes.len() >= MIN_QUEUE_SECRET_LEN => Ok(()),
        _ => Err(format!(
            "must be at least {MIN_QUEUE_SECRET_LEN} bytes in hex (generate one: openssl rand -hex 32)"
        )),
    }
}

fn check_internal_token(s: &str) -> Result<(), String> {
    // Visible ASCII: what an `authorization` header carries unchanged (no spaces to trim away).
    if s.len() < MIN_TOKEN_LEN || !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "must be at least {MIN_TOKEN_LEN} bytes of visible ASCII, no spaces \
             (generate one: openssl rand -hex 32)"
        ));
    }
    Ok(())
}

fn parse_demo_sale(s: &str) -> Result<DemoSale, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let [sku, stock, pool, starts] = parts[..] else {
        return Err("expected SKU:STOCK:POOL:STARTS_IN_SECONDS".into());
    };
    let bad = |what: &str| format!("{what} is not a valid number in {s:?}");
    let demo = DemoSale {
        sku: sku.parse().map_err(|_| bad("SKU"))?,
        stock: stock.parse().map_err(|_| bad("STOCK"))?,
        pool: pool.parse().map_err(|_| bad("POOL"))?,
        starts_in_s: starts.parse().map_err(|_| bad("STARTS_IN_SECONDS"))?,
    };
    if demo.sku <= 0
        || demo.stock < 0
        || demo.pool < 0
        || demo.pool > demo.stock
        || demo.starts_in_s < 0
    {
        return Err("need SKU > 0 and 0 <= POOL <= STOCK, STARTS_IN_SECONDS >= 0".into());
    }
    Ok(demo)
}

/// `HOST-PID`: unique among the warehouses sharing one Redis, on one machine or several.
fn default_consumer() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "warehouse".into());
    format!("{host}-{}", std::process::id())
}

impl Cli {
    /// The server options these flags describe.
    pub fn server_options(&self) -> ServerOptions {
        let consumer = self.consumer.clone().unwrap_or_else(default_consumer);
        ServerOptions {
            origin_key: self.origin_key.as_ref().map(|k| k.as_bytes().to_vec()),
            internal_token: self.internal_token.as_ref().map(|t| t.as_bytes().to_vec()),
            origin_max_skew_ms: self.origin_max_skew_ms,
            concurrency_per_connection: self.concurrency_per_connection as usize,
            request_timeout: Duration::from_millis(self.request_timeout_ms),
            demo_payments: self.demo_payments,
            queue_secret: self.queue_secret.as_deref().and_then(decode_hex),
            worker: self.order_worker.then(|| WorkerOptions {
                reclaim_idle: Duration::from_millis(self.reclaim_idle_ms),
                repair_after: Duration::from_millis(self.repair_after_ms),
                ..WorkerOptions::new(consumer)
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("flashgate-warehouse").chain(args.iter().copied()))
    }

    #[test]
    fn retain_closed_takes_a_number_and_a_unit_and_defaults_to_seven_days() {
        let retain = |args: &[&str]| parse(args).map(|cli| cli.retain_closed);
        assert_eq!(retain(&[]).unwrap(), Duration::from_secs(7 * 86_400));
        assert_eq!(
            retain(&["--retain-closed", "12h"]).unwrap(),
            Duration::from_secs(43_200)
        );
        assert_eq!(
            retain(&["--retain-closed", "500ms"]).unwrap(),
            Duration::from_millis(500)
        );
        assert_eq!(
            retain(&["--retain-closed", "90s"]).unwrap(),
            Duration::from_secs(90)
        );
        for bad in ["7", "7w", "0s", "d", "-1d", "99999999999999999d"] {
            assert!(retain(&["--retain-closed", bad]).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_listeners_and_the_internal_token_reach_the_server_options() {
        let token = "0123456789abcdef0123456789abcdef";
        let cli = parse(&[
            "--listen",
            "10.0.0.5:50051",
            "--edge-listen",
            "0.0.0.0:50052",
            "--internal-token",
            token,
        ])
        .unwrap();
        assert_eq!(cli.listen, "10.0.0.5:50051".parse().unwrap());
        assert_eq!(cli.edge_listen, Some("0.0.0.0:50052".parse().unwrap()));
        assert_eq!(
            cli.server_options().internal_token.as_deref(),
            Some(token.as_bytes())
        );
        // One byte short is refused, naming the setting and the minimum, never the value.
        let err = parse(&["--internal-token", &token[1..]])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--internal-token") && err.contains("at least 32 bytes"),
            "{err}"
        );
        assert!(!err.contains(&token[1..]), "the secret is repeated: {err}");
        let err = parse(&["--origin-key", "sixteen-minus-1"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--origin-key") && !err.contains("sixteen-minus-1"),
            "{err}"
        );
    }

    #[test]
    fn secrets_are_never_shown_in_help() {
        // `--help` prints an environment variable's value unless told not to.
        let command = <Cli as clap::CommandFactory>::command();
        for id in ["internal_token", "origin_key", "queue_secret"] {
            let arg = command
                .get_arguments()
                .find(|a| a.get_id() == id)
                .expect("the flag exists");
            assert!(arg.is_hide_env_values_set(), "{id} would show its value");
        }
    }

    #[test]
    fn bad_values_name_their_setting() {
        for (args, setting) in [
            (&["--listen", "nowhere"][..], "--listen"),
            (&["--store", "disk"], "--store"),
            (&["--redis-url", "http://x"], "--redis-url"),
            (&["--redis-url", "redis://a:1,http://x"], "--redis-url"),
            (&["--redis-url", " , "], "--redis-url"),
            (&["--origin-key", "short"], "--origin-key"),
            (&["--edge-listen", "nowhere"], "--edge-listen"),
            (
                &["--internal-token", "0123456789abcdef"],
                "--internal-token",
            ),
            (
                &["--internal-token", "0123456789abcdef 0123456789abcdef"],
                "--internal-token",
            ),
            (&["--metrics-listen", "1.2.3.4"], "--metrics-listen"),
            (&["--demo-sale", "1:2:3"], "--demo-sale"),
            (&["--durability", "sometimes"], "--durability"),
        ] {
            let err = parse(args).expect_err("bad value accepted").to_string();
            assert!(err.contains(setting), "{args:?}: {err}");
        }
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let cli = parse(&[]).unwrap();
        assert_eq!(cli.listen, "127.0.0.1:50051".parse().unwrap());
        assert_eq!(cli.edge_listen, None, "no edge listener unless asked for");
        assert_eq!(cli.server_options().internal_token, None);
        assert_eq!(cli.store, StoreKind::Memory);
        assert_eq!(Durability::from(cli.durability), Durability::Fsync);
        let relaxed = parse(&["--durability", "relaxed"]).unwrap().durability;
        assert_eq!(Durability::from(relaxed), Durability::Relaxed);
        assert_eq!(
            cli.metrics_listen,
            OptionalAddr(Some("127.0.0.1:9464".parse().unwrap()))
        );
        assert!(cli.server_options().worker.is_some());
        assert!(!cli.redis_cluster);
        let cluster =
            parse(&["--redis-cluster", "--redis-url", "redis://a:1,redis://b:2"]).unwrap();
        assert!(cluster.redis_cluster);
        assert_eq!(cli.command, None);
        assert_eq!(
            cli.server_options().worker.unwrap().repair_after,
            Duration::from_secs(5)
        );
        let audit = parse(&["audit", "--repair", "--repair-older-than-ms", "0"]).unwrap();
        assert_eq!(
            audit.command,
            Some(Command::Audit(AuditArgs {
                repair: true,
                repair_older_than_ms: 0
            }))
        );
        assert_eq!(
            parse(&["audit"]).unwrap().command,
            Some(Command::Audit(AuditArgs {
                repair: false,
                repair_older_than_ms: 5_000
            }))
        );
        let off = parse(&["--metrics-listen", "off", "--order-worker", "false"]).unwrap();
        assert_eq!(off.metrics_listen, OptionalAddr(None));
        assert!(off.server_options().worker.is_none());
        let demo = parse(&["--demo-sale", "1001:100:10:30"])
            .unwrap()
            .demo_sale
            .unwrap();
        assert_eq!(
            demo,
            DemoSale {
                sku: 1001,
                stock: 100,
                pool: 10,
                starts_in_s: 30
            }
        );
    }

    #[test]
    fn a_demo_room_needs_a_demo_sale_and_a_draw_secret() {
        let secret = "ab".repeat(32);
        let sale = ["--demo-sale", "1001:100:10:30"];
        let with = |extra: &[&str]| {
            let mut args = sale.to_vec();
            args.extend_from_slice(extra);
            parse(&args)
        };
        assert!(!with(&[]).unwrap().demo_room, "off unless asked for");
        assert!(
            with(&["--demo-room", "--queue-secret", &secret])
                .unwrap()
                .demo_room
        );
        let err = with(&["--demo-room"]).expect_err("a room without a draw secret");
        assert!(err.to_string().contains("--queue-secret"), "{err}");
        let err = parse(&["--demo-room", "--queue-secret", &secret]).expect_err("no sale");
        assert!(err.to_string().contains("--demo-sale"), "{err}");
    }
}

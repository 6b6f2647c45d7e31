//! Durable acknowledgement: whether a write the warehouse answers is on disk, decided once at
//! start from what the Redis servers say about themselves.
//!
//! `fsync` (the binary's default) answers a Buy, PayOrder, CancelOrder, SKuStockLock or
//! SkuStockUnlock only once its write is on disk. Two server set-ups give that:
//! - `appendonly yes` + `appendfsync always`: Redis fsyncs the AOF before it sends the replies of
//!   an event-loop turn (`beforeSleep` flushes and fsyncs, then writes the replies), so every
//!   reply the warehouse reads is already on disk, and concurrent writes share one fsync;
//! - one Redis (not a cluster) with `appendonly yes` and `WAITAOF` (7.2+), any `appendfsync`: each
//!   script call's answer waits for a group-committed `WAITAOF 1 0 0` (`AofBarrier`); with
//!   `everysec` that is up to a second of latency per write, which is the price of `everysec`.
//!
//! Anything else is refused under `fsync`, with a message naming the setting and the fix.
//! `relaxed` keeps the old behaviour and says what a crash of Redis can take away.
//!
//! The decision ([`verdict`]) is a pure function of the settings read ([`NodeSettings`]); only
//! `read_settings` talks to Redis. What it does not do: watch the settings after start (an
//! operator who turns `appendfsync` down on a live server loses the guarantee until the next
//! start), or make a Redis Cluster's replication synchronous (see the README's guarantees).

use std::fmt;

use redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo};
use redis::Value;

use super::connection::RedisConnection;
use super::unavailable;
use crate::warehouse::store::StoreResult;

/// What an acknowledgement promises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Answer a write only once it is on disk; refuse a Redis that cannot give that.
    Fsync,
    /// Answer once Redis applied the write in memory; a crash of Redis may lose it.
    #[default]
    Relaxed,
}

impl fmt::Display for Durability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Fsync => "fsync",
            Self::Relaxed => "relaxed",
        })
    }
}

/// What one Redis server says about its persistence. `None`: it would not say (CONFIG disabled
/// or renamed, as on some managed Redis services).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSettings {
    /// Which server (`host:port`), for messages.
    pub node: String,
    /// `redis_version` from `INFO server`, as (major, minor).
    pub version: Option<(u32, u32)>,
    /// `CONFIG GET appendonly`.
    pub appendonly: Option<String>,
    /// `CONFIG GET appendfsync`.
    pub appendfsync: Option<String>,
}

impl NodeSettings {
    fn aof_on(&self) -> Option<bool> {
        self.appendonly
            .as_deref()
            .map(|v| v.eq_ignore_ascii_case("yes"))
    }

    fn fsync_always(&self) -> bool {
        self.appendfsync
            .as_deref()
            .is_some_and(|v| v.eq_ignore_ascii_case("always"))
    }

    fn has_waitaof(&self) -> bool {
        self.version.is_some_and(|v| v >= (7, 2))
    }
}

/// How the store keeps its promise, once [`verdict`] accepted the servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Guarantee {
    /// Every server runs `appendfsync always`: a reply is on disk already; nothing to add.
    FsyncPerReply,
    /// `WAITAOF 1 0 0` after each script call (a server that needs it runs `everysec` or `no`).
    WaitAof,
    /// No promise: the warning says what a crash of Redis can lose.
    Relaxed(String),
}

impl Guarantee {
    /// Whether each script call must be followed by `WAITAOF`.
    pub fn waits_for_aof(&self) -> bool {
        *self == Self::WaitAof
    }
}

/// The fix a refusal proposes.
const FIX: &str = "run `CONFIG SET appendonly yes` and `CONFIG SET appendfsync always` on it \
                   (then `CONFIG REWRITE`, or the same two lines in redis.conf), or start the \
                   warehouse with --durability relaxed (FLASHGATE_DURABILITY=relaxed) to accept \
                   the loss";

/// Decides, from every server's settings, how `durability` is kept, or why it cannot be. On a
/// `cluster`, only `appendfsync always` gives `fsync` (the WAITAOF barrier is for one Redis).
pub fn verdict(
    durability: Durability,
    nodes: &[NodeSettings],
    cluster: bool,
) -> Result<Guarantee, String> {
    match durability {
        Durability::Fsync => fsync_verdict(nodes, cluster),
        Durability::Relaxed => Ok(Guarantee::Relaxed(relaxed_warning(nodes))),
    }
}

fn fsync_verdict(nodes: &[NodeSettings], cluster: bool) -> Result<Guarantee, String> {
    if nodes.is_empty() {
        return Err("--durability fsync: no Redis server answered the settings check".into());
    }
    let mut wait = false;
    for n in nodes {
        let node = &n.node;
        match n.aof_on() {
            None => {
                return Err(format!(
                    "--durability fsync: Redis {node} refused `CONFIG GET appendonly appendfsync` \
                     (CONFIG is disabled or renamed, as on many managed Redis services), so the \
                     warehouse cannot confirm that a write is on disk before it is answered. \
                     Ask your provider for `appendonly yes` with `appendfsync always` (or Redis \
                     7.2+ with WAITAOF); once you know it is so, or to accept losing up to a \
                     second of acknowledged writes, start with --durability relaxed"
                ))
            }
            Some(false) => {
                return Err(format!(
                    "--durability fsync: Redis {node} has appendonly no: nothing is written to \
                     disk, a restart loses every sale and order; {FIX}"
                ))
            }
            Some(true) if n.fsync_always() => {}
            Some(true) if n.has_waitaof() && !cluster => wait = true,
            Some(true) if cluster => {
                let setting = n.appendfsync.as_deref().unwrap_or("?");
                return Err(format!(
                    "--durability fsync: Redis Cluster node {node} has appendfsync {setting}: on \
                     a cluster the warehouse needs appendfsync always on every master (it does \
                     not run WAITAOF there); {FIX}"
                ));
            }
            Some(true) => {
                let setting = n.appendfsync.as_deref().unwrap_or("?");
                let version = n
                    .version
                    .map_or_else(|| "an unknown version".into(), |(a, b)| format!("{a}.{b}"));
                return Err(format!(
                    "--durability fsync: Redis {node} has appendfsync {setting} and is \
                     {version}, without WAITAOF (7.2+): an acknowledged write can be lost for \
                     up to a second after it was answered; {FIX}"
                ));
            }
        }
    }
    Ok(if wait {
        Guarantee::WaitAof
    } else {
        Guarantee::FsyncPerReply
    })
}

/// What `relaxed` can lose, worst server first.
fn relaxed_warning(nodes: &[NodeSettings]) -> String {
    let nothing_on_disk: Vec<&str> = nodes
        .iter()
        .filter(|n| n.aof_on() == Some(false))
        .map(|n| n.node.as_str())
        .collect();
    let unknown: Vec<&str> = nodes
        .iter()
        .filter(|n| n.aof_on().is_none())
        .map(|n| n.node.as_str())
        .collect();
    let lagging: Vec<&str> = nodes
        .iter()
        .filter(|n| n.aof_on() == Some(true) && !n.fsync_always())
        .map(|n| n.node.as_str())
        .collect();
    if nodes.is_empty() {
        return "--durability relaxed: the warehouse could not read the Redis servers' \
                persistence settings: what a crash of Redis loses is unknown"
            .into();
    }
    let mut parts = Vec::new();
    if !nothing_on_disk.is_empty() {
        parts.push(format!(
            "appendonly no on {}: a restart of Redis loses every sale, order and payment",
            nothing_on_disk.join(", ")
        ));
    }
    if !lagging.is_empty() {
        parts.push(format!(
            "appendfsync not always on {}: a crash of Redis or its machine loses up to about a \
             second of acknowledged buys and payments",
            lagging.join(", ")
        ));
    }
    if !unknown.is_empty() {
        parts.push(format!(
            "CONFIG is disabled on {}: what a crash loses depends on settings the warehouse \
             cannot read",
            unknown.join(", ")
        ));
    }
    if parts.is_empty() {
        return "--durability relaxed: every Redis runs appendfsync always, so nothing \
                acknowledged is lost to a crash of Redis, but the warehouse does not check it \
                again; use --durability fsync to have it refuse a weaker Redis"
            .into();
    }
    format!(
        "--durability relaxed: acknowledged writes are not known to be on disk: {}",
        parts.join("; ")
    )
}

/// `redis_version:X.Y.Z` in an `INFO server` reply, as (X, Y).
pub fn parse_version(info: &str) -> Option<(u32, u32)> {
    let v = info
        .lines()
        .find_map(|l| l.trim().strip_prefix("redis_version:"))?;
    let mut parts = v.split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// A `CONFIG GET a b` reply (a flat array in RESP2, a map in RESP3) as its value of `name`.
fn config_value(reply: &Value, name: &str) -> Option<String> {
    let text = |v: &Value| match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) | Value::VerbatimString { text: s, .. } => Some(s.clone()),
        _ => None,
    };
    match reply {
        Value::Array(items) => items
            .chunks(2)
            .find(|kv| kv.len() == 2 && text(&kv[0]).as_deref() == Some(name))
            .and_then(|kv| text(&kv[1])),
        Value::Map(pairs) => pairs
            .iter()
            .find(|(k, _)| text(k).as_deref() == Some(name))
            .and_then(|(_, v)| text(v)),
        _ => None,
    }
}

fn info_text(reply: &Value) -> Option<String> {
    match reply {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::VerbatimString { text, .. } | Value::SimpleString(text) => Some(text.clone()),
        _ => None,
    }
}

fn settings_of(node: String, config: Option<&Value>, info: Option<&Value>) -> NodeSettings {
    NodeSettings {
        node,
        version: info.and_then(info_text).as_deref().and_then(parse_version),
        appendonly: config.and_then(|c| config_value(c, "appendonly")),
        appendfsync: config.and_then(|c| config_value(c, "appendfsync")),
    }
}

/// A per-node reply of a command sent to every master: `(address, reply)` pairs.
fn per_node(reply: Value) -> Vec<(String, Value)> {
    match reply {
        Value::Map(pairs) => pairs
            .into_iter()
            .map(|(k, v)| (info_text(&k).unwrap_or_else(|| "?".into()), v))
            .collect(),
        other => vec![("the cluster".into(), other)],
    }
}

/// Reads every server's persistence settings: the one Redis, or every master of a cluster.
pub(super) async fn read_settings(
    conn: &mut RedisConnection,
    label: &str,
) -> StoreResult<Vec<NodeSettings>> {
    let mut config_cmd = redis::cmd("CONFIG");
    config_cmd.arg("GET").arg("appendonly").arg("appendfsync");
    let mut info_cmd = redis::cmd("INFO");
    info_cmd.arg("server");
    match conn {
        RedisConnection::Single(c) => {
            // A refusal of CONFIG (disabled or renamed) is an answer, not a failure.
            let config: Option<Value> = config_cmd.query_async(c).await.ok();
            let info: Value = info_cmd.query_async(c).await.map_err(unavailable)?;
            Ok(vec![settings_of(
                label.into(),
                config.as_ref(),
                Some(&info),
            )])
        }
        RedisConnection::Cluster(c) => {
            let all = || RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
            // Every master answers INFO; a failure of the whole fan-out is a connection failure.
            let infos = per_node(
                c.route_command(info_cmd, all())
                    .await
                    .map_err(unavailable)?,
            );
            let configs = c
                .route_command(config_cmd, all())
                .await
                .map(per_node)
                .unwrap_or_default();
            Ok(infos
                .into_iter()
                .map(|(node, info)| {
                    let config = configs.iter().find(|(n, _)| *n == node).map(|(_, v)| v);
                    settings_of(node, config, Some(&info))
                })
                .collect())
        }
    }
}

/// Group commit for `WAITAOF` (one Redis): `WAITAOF` blocks the connection that sends it until
/// that connection's writes are fsynced (up to a second with `everysec`), so it must not go over
/// the store's shared command connection, which every request uses. The barrier has a
/// connection of its own and runs rounds of `INCR barrier-key` + `WAITAOF 1 0 0` on it: the
/// `INCR` is a write after every write answered before the round started, so when its WAITAOF
/// returns, those writes are on disk too. Writes that finish while a round is under way share
/// the next one: one round in flight, however many writes wait.
pub(super) struct AofBarrier {
    conn: redis::aio::ConnectionManager,
    key: String,
    state: std::sync::Mutex<Rounds>,
    done: tokio::sync::watch::Sender<(u64, bool)>,
}

#[derive(Default)]
struct Rounds {
    /// The last round started.
    started: u64,
    /// The highest round some waiter needs.
    wanted: u64,
    running: bool,
}

impl AofBarrier {
    pub(super) fn new(conn: redis::aio::ConnectionManager, key: String) -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self {
            conn,
            key,
            state: std::sync::Mutex::default(),
            done: tokio::sync::watch::channel((0, true)).0,
        })
    }

    /// Returns once every write answered before this call is on disk.
    pub(super) async fn wait(self: &std::sync::Arc<Self>) -> StoreResult<()> {
        let mut done = self.done.subscribe();
        let mine = {
            let mut state = self.state.lock().expect("barrier state");
            // A round already started may have sent its INCR before this write: the next.
            let mine = state.started + 1;
            state.wanted = state.wanted.max(mine);
            if !state.running {
                state.running = true;
                tokio::spawn(self.clone().rounds());
            }
            mine
        };
        let (_, ok) = *done
            .wait_for(|(round, _)| *round >= mine)
            .await
            .map_err(|_| {
                crate::warehouse::store::StoreError::Unavailable("WAITAOF barrier gone".into())
            })?;
        if ok {
            Ok(())
        } else {
            Err(crate::warehouse::store::StoreError::Unavailable(
                "WAITAOF: the write is not known to be on disk".into(),
            ))
        }
    }

    async fn rounds(self: std::sync::Arc<Self>) {
        loop {
            let round = {
                let mut state = self.state.lock().expect("barrier state");
                if state.wanted <= state.started {
                    state.running = false;
                    return;
                }
                state.started += 1;
                state.started
            };
            let mut conn = self.conn.clone();
            let reply: redis::RedisResult<(i64, Vec<i64>)> = redis::pipe()
                .cmd("INCR")
                .arg(&self.key)
                .cmd("WAITAOF")
                .arg(1)
                .arg(0)
                .arg(0)
                .query_async(&mut conn)
                .await;
            let ok = matches!(&reply, Ok((_, counts)) if counts.first().is_some_and(|n| *n >= 1));
            if !ok {
                tracing::warn!(?reply, "WAITAOF round failed");
            }
            self.done.send_replace((round, ok));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(version: (u32, u32), appendonly: &str, appendfsync: &str) -> NodeSettings {
        NodeSettings {
            node: "127.0.0.1:6379".into(),
            version: Some(version),
            appendonly: Some(appendonly.into()),
            appendfsync: Some(appendfsync.into()),
        }
    }

    #[test]
    fn fsync_takes_appendfsync_always_as_it_is() {
        let nodes = [node((7, 0), "yes", "always"), node((7, 4), "yes", "always")];
        assert_eq!(
            verdict(Durability::Fsync, &nodes, false),
            Ok(Guarantee::FsyncPerReply)
        );
    }

    #[test]
    fn fsync_refuses_everysec_without_waitaof_naming_the_setting_and_the_fix() {
        let err =
            verdict(Durability::Fsync, &[node((7, 0), "yes", "everysec")], false).unwrap_err();
        assert!(err.contains("appendfsync everysec"), "{err}");
        assert!(err.contains("CONFIG SET appendfsync always"), "{err}");
        assert!(err.contains("--durability relaxed"), "{err}");
        assert!(err.contains("127.0.0.1:6379"), "{err}");
    }

    #[test]
    fn fsync_uses_waitaof_where_the_server_has_it() {
        let nodes = [
            node((7, 2), "yes", "everysec"),
            node((8, 2), "yes", "always"),
        ];
        let g = verdict(Durability::Fsync, &nodes, false).unwrap();
        assert_eq!(g, Guarantee::WaitAof);
        assert!(g.waits_for_aof());
        // ... but one old server without `always` on a cluster refuses the lot.
        let mixed = [
            node((7, 2), "yes", "everysec"),
            node((7, 0), "yes", "everysec"),
        ];
        assert!(verdict(Durability::Fsync, &mixed, false).is_err());
        // On a cluster, WAITAOF is not used: everysec is refused even on 7.2+, always is fine.
        let err = verdict(Durability::Fsync, &[node((7, 4), "yes", "everysec")], true).unwrap_err();
        assert!(
            err.contains("Redis Cluster") && err.contains("appendfsync everysec"),
            "{err}"
        );
        assert_eq!(
            verdict(Durability::Fsync, &[node((7, 4), "yes", "always")], true),
            Ok(Guarantee::FsyncPerReply)
        );
    }

    #[test]
    fn fsync_refuses_appendonly_no_whatever_the_version() {
        for v in [(7, 0), (7, 4)] {
            let err = verdict(Durability::Fsync, &[node(v, "no", "always")], false).unwrap_err();
            assert!(err.contains("appendonly no"), "{err}");
            assert!(err.contains("CONFIG SET appendonly yes"), "{err}");
        }
    }

    #[test]
    fn fsync_refuses_a_redis_that_hides_its_config_and_says_how_to_proceed() {
        let hidden = NodeSettings {
            appendonly: None,
            appendfsync: None,
            ..node((7, 0), "", "")
        };
        let err = verdict(Durability::Fsync, std::slice::from_ref(&hidden), false).unwrap_err();
        assert!(err.contains("CONFIG is disabled or renamed"), "{err}");
        assert!(err.contains("--durability relaxed"), "{err}");
        assert!(verdict(Durability::Fsync, &[], false).is_err());
        let warning = match verdict(Durability::Relaxed, &[hidden], false).unwrap() {
            Guarantee::Relaxed(w) => w,
            other => panic!("{other:?}"),
        };
        assert!(warning.contains("CONFIG is disabled"), "{warning}");
    }

    #[test]
    fn relaxed_says_what_can_be_lost() {
        let warn = |nodes: &[NodeSettings]| match verdict(Durability::Relaxed, nodes, true).unwrap()
        {
            Guarantee::Relaxed(w) => w,
            other => panic!("{other:?}"),
        };
        assert!(warn(&[node((7, 0), "yes", "everysec")]).contains("up to about a second"));
        assert!(warn(&[node((7, 0), "no", "everysec")]).contains("loses every sale"));
        assert!(!warn(&[node((7, 0), "yes", "always")]).contains("not known to be on disk"));
        assert!(warn(&[]).contains("unknown"));
    }

    #[test]
    fn settings_are_read_from_resp2_and_resp3_replies() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let resp2 = Value::Array(vec![
            bulk("appendfsync"),
            bulk("always"),
            bulk("appendonly"),
            bulk("yes"),
        ]);
        let resp3 = Value::Map(vec![
            (bulk("appendonly"), bulk("no")),
            (bulk("appendfsync"), bulk("everysec")),
        ]);
        let info = bulk("# Server\r\nredis_version:7.2.4\r\nredis_mode:standalone\r\n");
        let a = settings_of("a".into(), Some(&resp2), Some(&info));
        assert_eq!(
            a,
            NodeSettings {
                node: "a".into(),
                version: Some((7, 2)),
                appendonly: Some("yes".into()),
                appendfsync: Some("always".into()),
            }
        );
        let b = settings_of("b".into(), Some(&resp3), None);
        assert_eq!(b.appendonly.as_deref(), Some("no"));
        assert_eq!(b.appendfsync.as_deref(), Some("everysec"));
        assert_eq!(parse_version("redis_version:10.12.1"), Some((10, 12)));
        assert_eq!(parse_version("no version here"), None);
    }
}

//! A real Redis Cluster for one test: one `redis-server` per node on loopback, each with its own
//! data directory (AOF on), joined by `redis-cli --cluster create`, and killed and removed when
//! dropped. Tests use it to place keys on chosen masters, `kill -9` a master and watch a replica
//! take over.
//!
//! Which node is a master is always asked from the cluster (`CLUSTER SLOTS`), never remembered
//! from creation: a failover changes it. Every wait polls the nodes with [`eventually`]; nothing
//! sleeps for a guessed time. It always starts nodes of its own (never a running cluster), and it
//! does not reshard, add nodes or restart killed ones.

use std::collections::BTreeSet;
use std::net::TcpListener as StdTcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::Value;

use flashgate_core::stock::Shard;
use flashgate_core::warehouse::audit;
use flashgate_core::warehouse::store::{RedisStore, RedisStoreConfig};
use redis::AsyncCommands;

use crate::process::repo_root;
use crate::{eventually, unique_prefix};

/// The cluster bus listens on the client port plus this (Redis's default).
const BUS_PORT_OFFSET: u16 = 10_000;
/// The hash slots of every Redis Cluster.
const SLOTS: u32 = 16_384;
/// Starting processes and forming the cluster; generous for a loaded two-core machine.
const START_PATIENCE: Duration = Duration::from_secs(30);
/// Failure detection (`cluster-node-timeout`, 1.5 s in the node config) plus the replicas' election, several times over.
const FAILOVER_PATIENCE: Duration = Duration::from_secs(30);

/// A local Redis Cluster of `redis-server` processes on `127.0.0.1`, killed (and their data
/// directories removed) when dropped.
pub struct TestCluster {
    nodes: Vec<Node>,
    /// Holds one fresh data directory per node.
    root: PathBuf,
}

/// One `redis-server` of the cluster.
struct Node {
    port: u16,
    /// `None` once [`TestCluster::kill9`] has killed it: the node stays known to the cluster.
    child: Option<Child>,
}

/// A range of hash slots and the port of the master serving it, as `CLUSTER SLOTS` tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct SlotRange {
    first: u16,
    last: u16,
    master: u16,
}

impl TestCluster {
    /// A Redis store on this cluster under key prefix `prefix`.
    pub async fn store(&self, prefix: &str) -> RedisStore {
        let mut config = RedisStoreConfig::new(self.seed());
        config.cluster = true;
        config.prefix = prefix.to_owned();
        RedisStore::connect(config)
            .await
            .expect("connect to the test cluster")
    }

    /// Starts `masters * (1 + replicas_per_master)` nodes on free ports, creates the cluster
    /// with `redis-cli --cluster create` and waits until every node reports it whole
    /// ([`TestCluster::wait_ok`]). Redis needs at least three masters.
    pub async fn spawn(masters: usize, replicas_per_master: usize) -> Self {
        assert!(
            masters >= 3,
            "a Redis Cluster needs at least 3 masters, not {masters}"
        );
        let root = std::env::temp_dir().join(format!("flashgate-cluster-{}", unique_prefix()));
        let mut cluster = Self {
            nodes: Vec::new(),
            root,
        };
        let count = masters * (1 + replicas_per_master);
        let mut ports = Vec::with_capacity(count);
        for _ in 0..count {
            ports.push(node_port(&ports));
        }
        for &port in &ports {
            let dir = cluster.root.join(port.to_string());
            std::fs::create_dir_all(&dir).expect("create a cluster node's data directory");
            let child = start_node(port, &dir);
            cluster.nodes.push(Node {
                port,
                child: Some(child),
            });
        }
        for &port in &ports {
            eventually(
                &format!("cluster node {port} to answer PING"),
                START_PATIENCE,
                || async move {
                    let mut conn = connect(port).await?;
                    redis::cmd("PING")
                        .query_async::<String>(&mut conn)
                        .await
                        .ok()
                },
            )
            .await;
        }
        let output = tokio::process::Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(ports.iter().map(|p| format!("127.0.0.1:{p}")))
            .args(["--cluster-replicas", &replicas_per_master.to_string()])
            .arg("--cluster-yes")
            .stdin(Stdio::null())
            .output()
            .await
            .expect("redis-cli must be installed (the test command installs it)");
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            output.status.success() && said.contains("All 16384 slots covered"),
            "redis-cli --cluster create failed ({}):\n{said}",
            output.status
        );
        cluster.wait_ok().await;
        cluster
    }

    /// `redis://127.0.0.1:PORT` of every node, killed ones included, in creation order.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| url(n.port)).collect()
    }

    /// The current masters' URLs joined with `,`: the seed list a cluster client is given.
    pub fn seed(&self) -> String {
        self.master_ports()
            .into_iter()
            .map(url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The ports of the nodes serving slots now (ascending), asked from the first live node
    /// that answers `CLUSTER SLOTS`. Blocking: call it when the cluster is settled.
    pub fn master_ports(&self) -> Vec<u16> {
        let map = self
            .live_ports()
            .find_map(|port| {
                let client = redis::Client::open(url(port)).ok()?;
                let mut conn = client
                    .get_connection_with_timeout(Duration::from_secs(2))
                    .ok()?;
                let reply = redis::cmd("CLUSTER")
                    .arg("SLOTS")
                    .query::<Vec<Vec<Value>>>(&mut conn)
                    .ok()?;
                parse_slots(reply)
            })
            .expect("no live cluster node answered CLUSTER SLOTS");
        let masters: BTreeSet<u16> = map.iter().map(|r| r.master).collect();
        masters.into_iter().collect()
    }

    /// The port of the master serving `key`'s hash slot now (`CLUSTER KEYSLOT`, then
    /// `CLUSTER SLOTS`).
    pub async fn master_of_key(&self, key: &str) -> u16 {
        let mut conn = self.any_live_connection().await;
        let slot = key_slot(&mut conn, key).await;
        let map = slot_map(&mut conn)
            .await
            .expect("the cluster answers CLUSTER SLOTS");
        master_of_slot(&map, slot)
            .unwrap_or_else(|| panic!("no master serves slot {slot} (key {key:?})"))
    }

    /// The first `n` ids, counting from 1, whose keys `make_key(id)` hash to `n` different
    /// masters (greedily: an id is taken when its master has none yet). Tests use it to put
    /// SKUs' `{sku:ID}` keys on different masters. Panics if there are fewer than `n` masters.
    pub async fn keys_on_distinct_masters(
        &self,
        make_key: impl Fn(i64) -> String,
        n: usize,
    ) -> Vec<i64> {
        let mut conn = self.any_live_connection().await;
        let map = slot_map(&mut conn)
            .await
            .expect("the cluster answers CLUSTER SLOTS");
        let masters: BTreeSet<u16> = map.iter().map(|r| r.master).collect();
        assert!(
            n <= masters.len(),
            "{n} keys cannot be on distinct masters: the cluster has {}",
            masters.len()
        );
        let mut used = BTreeSet::new();
        let mut ids = Vec::with_capacity(n);
        // Each new id lands on an unused master with probability at least 1/masters, so this
        // bound is never reached unless the key ignores its id (e.g. a fixed hash tag).
        for id in 1..=100_000 {
            if ids.len() == n {
                return ids;
            }
            let key = make_key(id);
            let slot = key_slot(&mut conn, &key).await;
            let master = master_of_slot(&map, slot)
                .unwrap_or_else(|| panic!("no master serves slot {slot} (key {key:?})"));
            if used.insert(master) {
                ids.push(id);
            }
        }
        panic!("no {n} ids up to 100000 give keys on distinct masters: does make_key use the id?");
    }

    /// `kill -9` on that node: no shutdown, no AOF flush. The node stays in the cluster's
    /// table (marked failed by the others), and in [`TestCluster::urls`].
    pub fn kill9(&mut self, port: u16) {
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.port == port)
            .unwrap_or_else(|| panic!("{port} is not a node of this cluster"));
        let mut child = node
            .child
            .take()
            .unwrap_or_else(|| panic!("cluster node {port} was killed already"));
        let _ = child.kill();
        let _ = child.wait();
    }

    /// `SIGSTOP` on that node: it stops answering (and acknowledging replication) until
    /// [`TestCluster::resume`]; the cluster may mark it failed meanwhile.
    pub fn pause(&self, port: u16) {
        self.signal(port, "-STOP");
    }

    /// `SIGCONT` on a node [`TestCluster::pause`] stopped.
    pub fn resume(&self, port: u16) {
        self.signal(port, "-CONT");
    }

    fn signal(&self, port: u16, signal: &str) {
        let node = self
            .nodes
            .iter()
            .find(|n| n.port == port)
            .unwrap_or_else(|| panic!("{port} is not a node of this cluster"));
        let pid = node
            .child
            .as_ref()
            .unwrap_or_else(|| panic!("cluster node {port} was killed"))
            .id();
        let status = Command::new("kill")
            .arg(signal)
            .arg(pid.to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} {pid} failed");
    }

    /// The ports of the replicas of the master on `master_port`, as its own `ROLE` lists them.
    pub async fn replicas_of(&self, master_port: u16) -> Vec<u16> {
        let mut conn = connect(master_port)
            .await
            .unwrap_or_else(|| panic!("master {master_port} does not answer"));
        let role: Vec<Value> = redis::cmd("ROLE")
            .query_async(&mut conn)
            .await
            .expect("ROLE");
        let Some(Value::Array(replicas)) = role.get(2) else {
            return Vec::new();
        };
        replicas
            .iter()
            .filter_map(|r| {
                let fields: Vec<String> = redis::from_redis_value_ref(r).ok()?;
                fields.get(1)?.parse().ok()
            })
            .collect()
    }

    /// Waits until a replica has taken over from the killed `dead_port`: every live node
    /// reports the cluster ok and whole (as in [`TestCluster::wait_ok`]) and no live node's
    /// slot map names `dead_port`.
    pub async fn wait_failover(&self, dead_port: u16) {
        assert!(
            !self.live_ports().any(|p| p == dead_port),
            "cluster node {dead_port} is alive: kill9 it first"
        );
        eventually(
            &format!("a replica to take over from the killed master {dead_port}"),
            FAILOVER_PATIENCE,
            || self.settled(),
        )
        .await;
    }

    /// Waits until every live node reports `cluster_state:ok`, all 16384 slots assigned and
    /// every node known; every live replica's link to its master is up; and all live nodes agree
    /// on a slot map whose masters are all alive.
    pub async fn wait_ok(&self) {
        eventually("the Redis Cluster to be ok", START_PATIENCE, || {
            self.settled()
        })
        .await;
    }

    /// `Some` when the cluster is settled as [`TestCluster::wait_ok`] describes.
    async fn settled(&self) -> Option<()> {
        let known = self.nodes.len().to_string();
        let slots = SLOTS.to_string();
        let mut agreed: Option<Vec<SlotRange>> = None;
        let mut replicas_seen: Option<usize> = None;
        for port in self.live_ports() {
            let mut conn = connect(port).await?;
            let info: String = redis::cmd("CLUSTER")
                .arg("INFO")
                .query_async(&mut conn)
                .await
                .ok()?;
            let whole = field(&info, "cluster_state") == Some("ok")
                && field(&info, "cluster_slots_assigned") == Some(slots.as_str())
                && field(&info, "cluster_known_nodes") == Some(known.as_str());
            if !whole {
                return None;
            }
            let replication: String = redis::cmd("INFO")
                .arg("replication")
                .query_async(&mut conn)
                .await
                .ok()?;
            if field(&replication, "role") == Some("slave")
                && field(&replication, "master_link_status") != Some("up")
            {
                return None;
            }
            // Every node has heard which nodes are replicas (gossip spreads a new replica's role
            // after its link is up), so a client asking any node sees the same topology.
            let nodes: String = redis::cmd("CLUSTER")
                .arg("NODES")
                .query_async(&mut conn)
                .await
                .ok()?;
            let replicas = nodes
                .lines()
                .filter(|l| {
                    l.split(' ')
                        .nth(2)
                        .is_some_and(|f| f.split(',').any(|f| f == "slave"))
                })
                .count();
            if *replicas_seen.get_or_insert(replicas) != replicas {
                return None;
            }
            let map = slot_map(&mut conn).await?;
            if !map.iter().all(|r| self.live_ports().any(|p| p == r.master)) {
                return None;
            }
            match &agreed {
                Some(seen) if *seen != map => return None,
                Some(_) => {}
                None => agreed = Some(map),
            }
        }
        agreed.map(drop)
    }

    /// The ports of the nodes not killed.
    fn live_ports(&self) -> impl Iterator<Item = u16> + '_ {
        self.nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| n.port)
    }

    /// A connection to the first live node that accepts one.
    async fn any_live_connection(&self) -> MultiplexedConnection {
        for port in self.live_ports() {
            if let Some(conn) = connect(port).await {
                return conn;
            }
        }
        panic!("no live cluster node accepts a connection");
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(child) = node.child.as_mut() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Where node ports are chosen: below the kernel's ephemeral range (32768 and up), bus ports
/// included. A port picked with `bind(0)` comes from the ephemeral range, so another test's
/// `redis-server` can never be started on a node's port once this node has been killed (a
/// cluster client reconnecting there would reach a stranger).
const NODE_PORTS: std::ops::Range<u16> = 20_000..22_700;

/// A free port in [`NODE_PORTS`] whose bus port (port + 10000) is free too and that collides with
/// no port (or bus port) already chosen. Starts at a random place so concurrent tests spread out.
fn node_port(chosen: &[u16]) -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let span = u64::from(NODE_PORTS.end - NODE_PORTS.start);
    let start = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
        % span;
    for step in 0..span {
        let port = NODE_PORTS.start + ((start + step) % span) as u16;
        let bus = port + BUS_PORT_OFFSET;
        let clash = chosen
            .iter()
            .any(|&c| c == port || c == bus || c + BUS_PORT_OFFSET == port);
        if !clash
            && StdTcpListener::bind(("127.0.0.1", port)).is_ok()
            && StdTcpListener::bind(("127.0.0.1", bus)).is_ok()
        {
            return port;
        }
    }
    panic!("found no free port in {NODE_PORTS:?} whose cluster bus port (+{BUS_PORT_OFFSET}) is free too");
}

/// Starts one cluster-enabled `redis-server` on `port` with its data (nodes file, AOF) in `dir`,
/// configured by `scripts/redis/cluster-node.conf` (the file `scripts/redis/cluster.sh` starts
/// its nodes from).
fn start_node(port: u16, dir: &Path) -> Child {
    Command::new("redis-server")
        .arg(repo_root().join("scripts/redis/cluster-node.conf"))
        .args(["--port", &port.to_string()])
        .args(["--cluster-config-file", &format!("nodes-{port}.conf")])
        .arg("--dir")
        .arg(dir)
        .arg("--logfile")
        .arg(dir.join("redis.log"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server must be installed (the test command installs it)")
}

fn url(port: u16) -> String {
    format!("redis://127.0.0.1:{port}")
}

/// A plain (not cluster-aware) connection to one node, `None` if it does not answer.
async fn connect(port: u16) -> Option<MultiplexedConnection> {
    let client = redis::Client::open(url(port)).ok()?;
    client.get_multiplexed_async_connection().await.ok()
}

/// `CLUSTER KEYSLOT key`.
async fn key_slot(conn: &mut MultiplexedConnection, key: &str) -> u16 {
    redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(key)
        .query_async(conn)
        .await
        .expect("CLUSTER KEYSLOT")
}

/// `CLUSTER SLOTS`, sorted by slot; `None` if the node does not answer it.
async fn slot_map(conn: &mut MultiplexedConnection) -> Option<Vec<SlotRange>> {
    let reply = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query_async::<Vec<Vec<Value>>>(conn)
        .await
        .ok()?;
    parse_slots(reply)
}

/// Reads `CLUSTER SLOTS`: each entry is `[first, last, [ip, port, id, ...], replicas...]`.
fn parse_slots(reply: Vec<Vec<Value>>) -> Option<Vec<SlotRange>> {
    let mut map = reply
        .iter()
        .map(|entry| {
            let master: Vec<Value> = redis::from_redis_value_ref(entry.get(2)?).ok()?;
            Some(SlotRange {
                first: redis::from_redis_value_ref(entry.first()?).ok()?,
                last: redis::from_redis_value_ref(entry.get(1)?).ok()?,
                master: redis::from_redis_value_ref(master.get(1)?).ok()?,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    map.sort();
    Some(map)
}

fn master_of_slot(map: &[SlotRange], slot: u16) -> Option<u16> {
    map.iter()
        .find(|r| (r.first..=r.last).contains(&slot))
        .map(|r| r.master)
}

/// The value of `name` in an `INFO`-style `name:value` reply.
fn field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines().find_map(|line| {
        line.strip_prefix(name)?
            .strip_prefix(':')
            .map(str::trim_end)
    })
}

/// The pool of each of `event`'s `subpools` sub-pools, read key by key (not through the store,
/// so a test sees what each shard holds).
pub async fn subpool_pools(store: &RedisStore, sku: i64, event: i64, subpools: u32) -> Vec<i64> {
    let mut conn = store.connection();
    let mut pools = Vec::new();
    for sub in 0..subpools {
        let pool: Option<i64> = conn
            .hget(store.keys().event(Shard::new(sku, sub), event), "pool")
            .await
            .expect("read a sub-pool");
        pools.push(pool.unwrap_or(0));
    }
    pools
}

/// Fails the test with the audit's report unless the store's stock adds up.
pub async fn assert_audit_clean(store: &RedisStore) {
    let report = audit::run(store).await.expect("audit");
    assert!(report.is_clean(), "{}", audit::render(&report));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_reads_an_info_reply() {
        let info = "# Cluster\r\ncluster_state:ok\r\ncluster_slots_assigned:16384\r\n";
        assert_eq!(field(info, "cluster_state"), Some("ok"));
        assert_eq!(field(info, "cluster_slots_assigned"), Some("16384"));
        assert_eq!(field(info, "cluster_slots"), None);
    }

    #[test]
    fn parse_slots_keeps_the_master_of_each_range() {
        let node = |port: i64| {
            Value::Array(vec![
                Value::BulkString(b"127.0.0.1".to_vec()),
                Value::Int(port),
                Value::BulkString(b"id".to_vec()),
                Value::Array(vec![]),
            ])
        };
        let reply = vec![
            vec![Value::Int(5461), Value::Int(16383), node(7001), node(7004)],
            vec![Value::Int(0), Value::Int(5460), node(7000)],
        ];
        let map = parse_slots(reply).expect("well-formed");
        assert_eq!(master_of_slot(&map, 0), Some(7000));
        assert_eq!(master_of_slot(&map, 5461), Some(7001));
        assert_eq!(master_of_slot(&map, 16383), Some(7001));
    }
}

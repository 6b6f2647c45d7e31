//! How the Redis store reaches Redis: its configuration and the one command connection, to one
//! Redis (a redis-rs `ConnectionManager`) or a Redis Cluster (a `ClusterConnection` that follows
//! slot moves and failovers). Both are multiplexed (one socket per node carries every concurrent
//! request) and reconnect by themselves.
//!
//! What it does not do: choose keys or scripts; every command it carries names keys of one hash
//! slot, which the callers guarantee (see [`crate::stock::keys`]).

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Client, Cmd, Pipeline, RedisFuture, Value};

use super::durability::Durability;
use super::unavailable;
use crate::warehouse::store::StoreResult;

/// How to reach Redis.
#[derive(Debug, Clone)]
pub struct RedisStoreConfig {
    /// `redis://host:port/db` (or `rediss://`); for a cluster, one or more seed nodes separated
    /// by commas (`redis://10.0.0.1:6379,redis://10.0.0.2:6379`).
    pub url: String,
    /// Talk to a Redis Cluster (implied by a `url` naming several nodes).
    pub cluster: bool,
    /// Namespace of every key (isolates deployments and tests sharing one Redis).
    pub prefix: String,
    /// How long one command may take before the caller gets `Unavailable`.
    pub response_timeout: Duration,
    /// How long one connection attempt may take.
    pub connect_timeout: Duration,
    /// Whether a write is answered only once on disk; checked against the servers' settings
    /// when the store connects (see [`super::durability`]).
    pub durability: Durability,
}

impl RedisStoreConfig {
    /// Defaults for `url`: prefix `fg`, 2 s responses, 1 s connects, durability `relaxed` (what
    /// the library always did; the warehouse binary's `--durability` defaults to `fsync`).
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            cluster: false,
            prefix: "fg".into(),
            response_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(1),
            durability: Durability::Relaxed,
        }
    }

    /// The node URLs `url` names.
    pub fn urls(&self) -> Vec<&str> {
        self.url
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .collect()
    }

    /// Whether this configuration reaches a cluster.
    pub fn is_cluster(&self) -> bool {
        self.cluster || self.urls().len() > 1
    }
}

/// The command connection: one Redis or a Redis Cluster. Either way every command it carries
/// names keys of one hash slot.
#[derive(Clone)]
pub enum RedisConnection {
    /// One Redis.
    Single(ConnectionManager),
    /// A Redis Cluster: commands go to the master serving their slot.
    Cluster(ClusterConnection),
}

impl RedisConnection {
    /// Connects; fails fast when Redis cannot be reached. (The store connects through this; so
    /// does the order sink, which reads the same Redis or Cluster.)
    pub async fn open(config: &RedisStoreConfig) -> StoreResult<Self> {
        if config.is_cluster() {
            // Retries ride out a failover: the client refreshes its slot map on MOVED and on
            // connection errors, and retries the command against the new master.
            let client = ClusterClientBuilder::new(config.urls())
                .connection_timeout(config.connect_timeout)
                .response_timeout(config.response_timeout)
                .retries(6)
                .min_retry_wait(50)
                .max_retry_wait(1_000)
                .build()
                .map_err(unavailable)?;
            let conn = client.get_async_connection().await.map_err(unavailable)?;
            return Ok(Self::Cluster(conn));
        }
        let client = Client::open(config.url.as_str()).map_err(unavailable)?;
        let manager_config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(config.response_timeout))
            .set_connection_timeout(Some(config.connect_timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        ConnectionManager::new_with_config(client, manager_config)
            .await
            .map(Self::Single)
            .map_err(unavailable)
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

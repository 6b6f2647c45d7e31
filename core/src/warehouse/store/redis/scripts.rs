//! The store's one script registry: a `redis::Script` (EVALSHA, reloaded on NOSCRIPT) for each
//! of [`crate::stock::call::ALL`], and the one way to run a [`Call`].
//!
//! What it does not do: pack arguments or read replies; a call arrives packed from
//! [`crate::stock::call`] and its reply goes back there to be parsed.

use std::collections::HashMap;
use std::sync::OnceLock;

use redis::cluster_routing::{
    Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr,
};
use redis::{FromRedisValue, Script};

use super::{unavailable, RedisConnection, RedisStore};
use crate::stock::call::{self, Call};
use crate::warehouse::store::StoreResult;

/// Every script, by name, hashed once per process.
fn registry() -> &'static HashMap<&'static str, Script> {
    static SCRIPTS: OnceLock<HashMap<&'static str, Script>> = OnceLock::new();
    SCRIPTS.get_or_init(|| {
        call::ALL
            .iter()
            .map(|lua| (lua.name, Script::new(lua.source)))
            .collect()
    })
}

impl RedisStore {
    /// Runs one script call and answers its raw reply (scripts load on first use and are cached
    /// by Redis). Under `--durability fsync` on a server with WAITAOF, the reply is held until
    /// the write is on that server's disk (see [`super::durability`]); with `appendfsync always`
    /// Redis itself holds the reply until then.
    pub async fn run<T: FromRedisValue>(&self, call: &Call) -> StoreResult<T> {
        let script = registry()
            .get(call.script.name)
            .expect("every script is registered");
        let mut invocation = script.prepare_invoke();
        for key in &call.keys {
            invocation.key(key);
        }
        for arg in &call.args {
            invocation.arg(arg);
        }
        let mut conn = self.conn.clone();
        let reply = invocation
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        if self.guarantee.waits_for_aof() {
            self.wait_aof(&mut conn, call).await?;
        }
        Ok(reply)
    }

    /// `WAITAOF 1 0 0` on the connection the call went over (one Redis), or on the master of
    /// the call's slot (a cluster): it returns once everything that connection wrote is fsynced
    /// by that server, this call's write included.
    async fn wait_aof(&self, conn: &mut RedisConnection, call: &Call) -> StoreResult<()> {
        let mut cmd = redis::cmd("WAITAOF");
        cmd.arg(1).arg(0).arg(0);
        let reply: redis::Value = match conn {
            RedisConnection::Single(c) => cmd.query_async(c).await.map_err(unavailable)?,
            RedisConnection::Cluster(c) => {
                let key = call.keys.first().map(|k| k.as_bytes()).unwrap_or_default();
                let route = Route::with_key(key, SlotAddr::Master);
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route));
                c.route_command(cmd, routing).await.map_err(unavailable)?
            }
        };
        match reply {
            redis::Value::Array(counts)
                if matches!(counts.first(), Some(redis::Value::Int(n)) if *n >= 1) =>
            {
                Ok(())
            }
            other => Err(unavailable(redis::RedisError::from((
                redis::ErrorKind::Io,
                "WAITAOF: the write is not on disk",
                format!("{other:?}"),
            )))),
        }
    }
}

//! The store's one script registry: a `redis::Script` (EVALSHA, reloaded on NOSCRIPT) for each
//! of [`crate::stock::call::ALL`], and the one way to run a [`Call`].
//!
//! What it does not do: pack arguments or read replies; a call arrives packed from
//! [`crate::stock::call`] and its reply goes back there to be parsed.

use std::collections::HashMap;
use std::sync::OnceLock;

use redis::{FromRedisValue, Script, ScriptInvocation};

use super::{unavailable, RedisStore};
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

/// `call` ready to send: its script's EVALSHA (loaded again on `NOSCRIPT`) with its keys and
/// arguments — for a process that holds a connection but no [`RedisStore`] (the order sink).
pub fn invocation(call: &Call) -> ScriptInvocation<'static> {
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
    invocation
}

impl RedisStore {
    /// Runs one script call and answers its raw reply (scripts load on first use and are cached
    /// by Redis). Under `--durability fsync` on a server with WAITAOF, the reply is held until
    /// the write is on that server's disk (a group-committed WAITAOF, see
    /// `durability::AofBarrier`); with `appendfsync always`
    /// Redis itself holds the reply until then.
    pub async fn run<T: FromRedisValue>(&self, call: &Call) -> StoreResult<T> {
        let mut conn = self.conn.clone();
        let reply = invocation(call)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        if let Some(barrier) = &self.aof_barrier {
            if call.script.acknowledged {
                barrier.wait().await?;
            }
        }
        Ok(reply)
    }
}

//! Steps that span masters, waited for on the replica: a transfer's `move_out` and `move_in`
//! and every step of the seed-contract lock saga run here as one pipeline to the master of the
//! step's slot, `EVAL step; WAIT 1 timeout; ROLE`, so the next step (on another master) only
//! starts once a replica holds this one, and a failover cannot take back a step another master
//! already built on (a unit counted twice, or lost).
//!
//! Why one pipeline on a connection of its own: `WAIT` counts the replicas that acknowledged
//! the connection's own last write, so it must follow the step on the same connection to the
//! same node (a pipeline the cluster client re-sends whole if that node fails over, the step
//! again being a no-op where it was done); and `WAIT` blocks its connection, which must
//! therefore not be the one every Buy shares. `ROLE` in the same reply says how many replicas
//! that master has now.
//!
//! A `WAIT` that reports no replica ([`crate::stock::call::after_wait`] decides):
//! - the master has no replica connected (its replica was promoted and none is left): nothing
//!   can be waited for, and a failover has nothing to promote either; the step proceeds, logged;
//! - a replica is connected but did not acknowledge in time: the `WAIT` is asked again a few
//!   times; if it still does not confirm, the step is answered `Unavailable` and the saga or
//!   transfer stops there, exactly as if its process had died after the step. That is safe by
//!   construction (journaled, repaired after the lease, the repair's steps waited for the same
//!   way) and proceeding is not: a replica that is behind is the one a failover promotes.
//!
//! The cluster's replicas are detected once, at connect (`CLUSTER NODES`); without replicas
//! (or on one Redis, where no step spans masters) steps run as plain script calls. Replicas
//! added later are waited for after a restart of the warehouse.
//!
//! What it does not do: make a single-slot write durable across failover. `WAIT` narrows the
//! window (a step is on a replica before the next begins) but Redis replication stays
//! asynchronous: a Buy acknowledged by a master that dies before replicating it can be lost.

use redis::cluster_routing::{Route, SingleNodeRoutingInfo, SlotAddr};
use redis::{FromRedisValue, Value};

use super::{unavailable, RedisConnection, RedisStore};
use crate::stock::call::{self, Call, Waited};
use crate::warehouse::store::{StoreError, StoreResult};

/// Whether the cluster behind `conn` has replicas, from `CLUSTER NODES` (a `slave` flag).
pub(super) async fn cluster_has_replicas(conn: &RedisConnection) -> StoreResult<bool> {
    let RedisConnection::Cluster(c) = conn else {
        return Ok(false);
    };
    let mut c = c.clone();
    let nodes = c
        .route_command(
            redis::cmd("CLUSTER").arg("NODES").clone(),
            redis::cluster_routing::RoutingInfo::SingleNode(SingleNodeRoutingInfo::RandomPrimary),
        )
        .await
        .map_err(unavailable)?;
    let text = String::from_redis_value(nodes).map_err(malformed)?;
    Ok(call::lists_a_replica(&text))
}

impl RedisStore {
    /// Runs a step that another master's step follows: waited for on a replica when the
    /// cluster has replicas (see the module doc), else a plain [`RedisStore::run`].
    pub async fn run_step<T: FromRedisValue>(&self, step: &Call) -> StoreResult<T> {
        let Some(RedisConnection::Cluster(steps)) = self.steps.as_deref() else {
            return self.run(step).await;
        };
        let key = step.keys.first().expect("every step names a key");
        let route = SingleNodeRoutingInfo::SpecificNode(Route::with_key(key, SlotAddr::Master));
        let mut pipe = redis::pipe();
        pipe.cmd("EVAL")
            .arg(step.script.source)
            .arg(step.keys.len())
            .arg(&step.keys)
            .arg(&step.args);
        pipe.cmd("WAIT").arg(1).arg(call::REPLICA_WAIT_MS);
        pipe.cmd("ROLE");
        let mut conn = steps.clone();
        let replies = conn
            .route_pipeline(pipe, 0, 3, route.clone())
            .await
            .map_err(unavailable)?;
        let [reply, acked, role]: [Value; 3] = replies
            .try_into()
            .map_err(|r| StoreError::Unavailable(format!("step pipeline answered {r:?}")))?;
        let reply = T::from_redis_value(reply).map_err(malformed)?;
        let (mut acked, replicas) = (wait_count(acked)?, role_replicas(role)?);
        for round in 0.. {
            match call::after_wait(acked, replicas, round) {
                Waited::Replicated => break,
                Waited::NoReplica => {
                    tracing::warn!(
                        key,
                        "the master of this step's slot has no replica: nothing to wait for"
                    );
                    break;
                }
                Waited::Again => {
                    let wait = redis::cmd("WAIT").arg(1).arg(call::REPLICA_WAIT_MS).clone();
                    let value = conn
                        .route_command(
                            wait,
                            redis::cluster_routing::RoutingInfo::SingleNode(route.clone()),
                        )
                        .await
                        .map_err(unavailable)?;
                    acked = wait_count(value)?;
                }
                Waited::Unconfirmed => {
                    tracing::warn!(
                        key,
                        "no replica confirmed a step; stopping here, the repair finishes it"
                    );
                    return Err(StoreError::Unavailable(format!(
                        "no replica of the master of {key} confirmed the step in time; retry"
                    )));
                }
            }
        }
        Ok(reply)
    }
}

fn malformed(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("unexpected reply: {e}"))
}

fn wait_count(v: Value) -> StoreResult<i64> {
    i64::from_redis_value(v).map_err(malformed)
}

/// The number of replicas in a master's `ROLE` reply (`["master", offset, [[ip, port, ack]…]]`).
fn role_replicas(v: Value) -> StoreResult<usize> {
    let fields = Vec::<Value>::from_redis_value(v).map_err(malformed)?;
    match fields.get(2) {
        Some(Value::Array(replicas)) => Ok(replicas.len()),
        _ => Ok(0),
    }
}

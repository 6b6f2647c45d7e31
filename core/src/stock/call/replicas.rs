//! The replica wait around a step that spans masters, as pure decisions: whether `CLUSTER
//! NODES` lists a replica, and what to do after a `WAIT` (see the warehouse's
//! `store/redis/replicas.rs` for the calls).

/// How long one `WAIT` may block the step connection (ms). Replication on a LAN takes well
/// under a millisecond; a replica that has not acknowledged in 50 ms is behind or stalled.
pub const REPLICA_WAIT_MS: i64 = 50;

/// How many times a `WAIT` that found a connected replica behind is asked again before the step
/// is given up as unconfirmed (so at most 4 × 50 ms per step).
pub const REPLICA_WAIT_ROUNDS: usize = 4;

/// What a `WAIT` came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waited {
    /// A replica holds the step: go on.
    Replicated,
    /// The master has no replica connected: nothing to wait for (and nothing a failover could
    /// promote); go on.
    NoReplica,
    /// A replica is connected but has not acknowledged yet: ask `WAIT` again.
    Again,
    /// Still not acknowledged after every round: stop here (the step stays, the repair finishes
    /// the saga or transfer after its lease).
    Unconfirmed,
}

/// The decision after `WAIT 1` answered `acked`, with `replicas` connected to the master (its
/// `ROLE`), in round `round` (from 0).
pub fn after_wait(acked: i64, replicas: usize, round: usize) -> Waited {
    if acked >= 1 {
        Waited::Replicated
    } else if replicas == 0 {
        Waited::NoReplica
    } else if round + 1 < REPLICA_WAIT_ROUNDS {
        Waited::Again
    } else {
        Waited::Unconfirmed
    }
}

/// Whether a `CLUSTER NODES` reply lists a replica (a node whose flags include `slave`).
pub fn lists_a_replica(cluster_nodes: &str) -> bool {
    cluster_nodes.lines().any(|line| {
        line.split(' ')
            .nth(2)
            .is_some_and(|flags| flags.split(',').any(|f| f == "slave"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_goes_on_once_a_replica_holds_the_step_or_there_is_none() {
        assert_eq!(after_wait(1, 1, 0), Waited::Replicated);
        assert_eq!(after_wait(2, 1, 9), Waited::Replicated);
        assert_eq!(after_wait(0, 0, 0), Waited::NoReplica);
        assert_eq!(after_wait(0, 1, 0), Waited::Again);
        assert_eq!(after_wait(0, 2, REPLICA_WAIT_ROUNDS - 2), Waited::Again);
        assert_eq!(
            after_wait(0, 1, REPLICA_WAIT_ROUNDS - 1),
            Waited::Unconfirmed
        );
    }

    #[test]
    fn cluster_nodes_lists_replicas_by_their_flags() {
        let masters_only = "07c3 127.0.0.1:30004@40004 myself,master - 0 0 1 connected 0-5460\n\
                            e7d1 127.0.0.1:30002@40002 master - 0 1426238316232 2 connected 5461-10922\n";
        assert!(!lists_a_replica(masters_only));
        let with_replica = format!(
            "{masters_only}6ec2 127.0.0.1:30005@40005 slave 07c3 0 1426238316232 1 connected\n"
        );
        assert!(lists_a_replica(&with_replica));
        let failed_master = "07c3 127.0.0.1:30004@40004 master,fail - 0 0 1 disconnected\n";
        assert!(!lists_a_replica(failed_master));
        assert!(!lists_a_replica(""));
    }
}

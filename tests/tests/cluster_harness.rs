//! The Redis Cluster harness ([`TestCluster`]) does what the cluster tests lean on: SKU keys
//! placed on distinct masters, a redis-rs cluster client that writes and reads through it, and
//! a replica that takes over from a master killed with `kill -9`, keeping the write its replica
//! had acknowledged.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use flashgate_tests::cluster::TestCluster;
use flashgate_tests::eventually;
use redis::aio::ConnectionLike;
use redis::cluster::ClusterClient;

fn stock_key(id: i64) -> String {
    format!("x:{{sku:{id}}}:stock")
}

async fn get(conn: &mut impl ConnectionLike, key: &str) -> Option<String> {
    redis::cmd("GET").arg(key).query_async(conn).await.ok()?
}

#[tokio::test]
async fn a_replica_takes_over_a_killed_master_keeping_its_acknowledged_write() {
    let started = Instant::now();
    let mut cluster = TestCluster::spawn(3, 1).await;
    eprintln!("spawn(3, 1) took {:?}", started.elapsed());
    assert_eq!(cluster.urls().len(), 6);
    let masters = cluster.master_ports();
    assert_eq!(masters.len(), 3, "three masters serve the slots");
    assert_eq!(cluster.seed().split(',').count(), 3);

    let ids = cluster.keys_on_distinct_masters(stock_key, 3).await;
    assert_eq!(ids.len(), 3);
    let mut placed = BTreeSet::new();
    for &id in &ids {
        placed.insert(cluster.master_of_key(&stock_key(id)).await);
    }
    assert_eq!(
        placed.into_iter().collect::<Vec<_>>(),
        masters,
        "ids {ids:?} land on every master once"
    );

    let client = ClusterClient::new(cluster.seed().split(',')).expect("a cluster client");
    let mut routed = client
        .get_async_connection()
        .await
        .expect("connect to the cluster");
    for &id in &ids {
        let () = redis::cmd("SET")
            .arg(stock_key(id))
            .arg(id * 10)
            .query_async(&mut routed)
            .await
            .expect("SET through the cluster client");
    }
    for &id in &ids {
        let stock = get(&mut routed, &stock_key(id)).await;
        assert_eq!(stock, Some((id * 10).to_string()));
    }

    // The write the failover must keep: WAIT counts only this connection's writes, so both go
    // to the key's master directly.
    let key = stock_key(ids[0]);
    let old_master = cluster.master_of_key(&key).await;
    let mut direct = redis::Client::open(format!("redis://127.0.0.1:{old_master}"))
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("connect to the key's master");
    let () = redis::cmd("SET")
        .arg(&key)
        .arg("acknowledged")
        .query_async(&mut direct)
        .await
        .expect("SET on the key's master");
    // Short WAITs, polled: one WAIT longer than the client's response timeout (500 ms) would
    // be cut off by the client on a loaded machine before the replica answers.
    eventually(
        "the master's replica to acknowledge the write",
        Duration::from_secs(30),
        || {
            let mut direct = direct.clone();
            async move {
                let replicas: i64 = redis::cmd("WAIT")
                    .arg(1)
                    .arg(200)
                    .query_async(&mut direct)
                    .await
                    .ok()?;
                (replicas == 1).then_some(())
            }
        },
    )
    .await;

    let killed = Instant::now();
    cluster.kill9(old_master);
    cluster.wait_failover(old_master).await;
    eprintln!("failover took {:?} after kill -9", killed.elapsed());
    let new_master = cluster.master_of_key(&key).await;
    assert_ne!(new_master, old_master);
    assert_eq!(cluster.master_ports().len(), 3);
    assert!(!cluster.master_ports().contains(&old_master));

    let mut promoted = redis::Client::open(format!("redis://127.0.0.1:{new_master}"))
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("connect to the promoted replica");
    assert_eq!(
        get(&mut promoted, &key).await.as_deref(),
        Some("acknowledged")
    );
    // The cluster client finds the new master by itself (it refreshes its slot map on errors).
    eventually(
        "the cluster client to read from the promoted replica",
        Duration::from_secs(10),
        || {
            let mut routed = routed.clone();
            let key = key.clone();
            async move { get(&mut routed, &key).await.filter(|v| v == "acknowledged") }
        },
    )
    .await;
}

//! The `flashgate-warehouse` binary as an operator runs it: settings that stop start-up with a
//! message naming them, the demo sale, metrics, and a graceful stop on SIGTERM.

use std::process::{Command, Stdio};
use std::time::Duration;

use flashgate_tests::process::run_warehouse;
use flashgate_tests::{eventually, free_port, http_get, warehouse_bin, TestRedis};
use tokio::io::AsyncReadExt;

#[test]
fn bad_settings_stop_start_up_naming_the_setting() {
    for (args, env, setting) in [
        (&["--listen", "nowhere"][..], &[][..], "--listen"),
        (
            &[],
            &[("FLASHGATE_ORIGIN_KEY", "short")][..],
            "--origin-key",
        ),
        (&["--store", "disk"], &[], "--store"),
        (&["--redis-url", "mysql://x"], &[], "--redis-url"),
        (
            &["--concurrency-per-connection", "0"],
            &[],
            "--concurrency-per-connection",
        ),
    ] {
        let out = run_warehouse(args, env);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} {env:?} started");
        assert!(stderr.contains(setting), "{args:?}: {stderr}");
    }
}

#[test]
fn an_unreachable_redis_stops_start_up_naming_the_url() {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let out = run_warehouse(
        &[
            "--store",
            "redis",
            "--redis-url",
            &url,
            "--metrics-listen",
            "off",
        ],
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("--redis-url") && stderr.contains(&url),
        "{stderr}"
    );
}

/// Whether something accepts connections on `port`.
async fn listening(port: u16) -> Option<()> {
    tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()
        .map(drop)
}

fn sigterm(pid: u32) {
    let killed = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(killed.success());
}

#[tokio::test]
async fn serves_a_demo_sale_and_stops_gracefully_on_sigterm() {
    let (port, metrics_port) = (free_port(), free_port());
    let mut child = tokio::process::Command::new(warehouse_bin())
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--metrics-listen", &format!("127.0.0.1:{metrics_port}")])
        .args(["--store", "memory", "--demo-sale", "1001:100:10:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let metrics_addr = ([127, 0, 0, 1], metrics_port).into();
    eventually("metrics to come up", Duration::from_secs(20), || async {
        listening(metrics_port).await
    })
    .await;
    let metrics = http_get(metrics_addr, "/metrics").await;
    assert!(
        metrics.contains(r#"flashgate_stock_units{place="pools",sku="1001"} 10"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"flashgate_stock_units{place="available",sku="1001"} 90"#),
        "{metrics}"
    );
    assert!(listening(port).await.is_some(), "gRPC port open");

    sigterm(child.id().expect("running"));
    let status = child.wait().await.unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .await
        .unwrap();
    assert!(status.success(), "exit {status:?}: {stderr}");
    assert!(
        stderr.contains("NOT durable"),
        "the memory store warns: {stderr}"
    );
    assert!(
        stderr.contains("shutdown requested") && stderr.contains("warehouse stopped"),
        "{stderr}"
    );
}

#[tokio::test]
async fn audit_checks_a_redis_store_and_fails_on_a_violation() {
    // A Redis of its own (never the cluster pass's): the test writes one of its keys directly.
    let redis = TestRedis::spawn(&[]).await;
    let port = free_port();
    let mut warehouse = tokio::process::Command::new(warehouse_bin())
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--metrics-listen",
            "off",
        ])
        .args([
            "--store",
            "redis",
            "--redis-url",
            &redis.url,
            "--demo-sale",
            "1001:100:10:0",
        ])
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    // The demo sale is in place before the port opens.
    eventually("the warehouse to listen", Duration::from_secs(20), || {
        listening(port)
    })
    .await;
    sigterm(warehouse.id().expect("running"));
    warehouse.wait().await.unwrap();

    let clean = run_warehouse(
        &["audit", "--store", "redis", "--redis-url", &redis.url],
        &[],
    );
    let text = String::from_utf8_lossy(&clean.stdout);
    assert!(clean.status.success(), "{text}");
    assert!(
        text.contains("1 SKUs, 1 sales, 0 orders, 0 locks: clean"),
        "{text}"
    );

    let client = redis::Client::open(redis.url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: i64 = redis::cmd("HINCRBY")
        .arg("fg:{sku:1001}:stock")
        .arg("sold")
        .arg(1)
        .query_async(&mut conn)
        .await
        .unwrap();
    let broken = run_warehouse(
        &["audit", "--store", "redis", "--redis-url", &redis.url],
        &[],
    );
    let text = String::from_utf8_lossy(&broken.stdout);
    assert_eq!(broken.status.code(), Some(1), "{text}");
    assert!(
        text.contains("VIOLATIONS") && text.contains("sku 1001"),
        "{text}"
    );
}

//! The `flashgate-warehouse` binary as an operator runs it: settings that stop start-up with a
//! message naming them, the two listeners (which ports it really binds, which caller each
//! serves), the demo sale, metrics, and a graceful stop on SIGTERM.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::Duration;

use flashgate_core::grpc_web::Reply;
use flashgate_core::proto::flashsale::{admin_client::AdminClient, EventReq, EventState};
use flashgate_core::warehouse::env;
use flashgate_core::warehouse::service::now_ms;
use flashgate_tests::process::{listening_ports, run_warehouse, HARNESS_DURABILITY};
use flashgate_tests::{
    channel_to, eventually, free_port, grpc_web, http_get, warehouse_bin, TestRedis,
    TEST_ORIGIN_KEY,
};
use tokio::io::AsyncReadExt;
use tonic::Code;
use tonic_health::pb::{
    health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
};

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
        (&["--edge-listen", "nowhere"], &[], "--edge-listen"),
        (
            &[],
            &[(env::INTERNAL_TOKEN, "thirty-one-bytes-is-one-too-few")],
            "--internal-token",
        ),
    ] {
        let out = run_warehouse(args, env);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} {env:?} started");
        assert!(stderr.contains(setting), "{args:?}: {stderr}");
    }
}

#[test]
fn an_edge_listener_on_the_internal_port_stops_start_up_naming_it() {
    let addr = format!("127.0.0.1:{}", free_port());
    let out = run_warehouse(
        &[
            "--listen",
            &addr,
            "--edge-listen",
            &addr,
            "--metrics-listen",
            "off",
        ],
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!("--edge-listen {addr}")),
        "{stderr}"
    );
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

/// The warehouse binary serving with `args` and `envs` (and no listener or token settings from
/// the test's own environment), its log on a pipe.
fn spawn_warehouse(args: &[&str], envs: &[(&str, &str)]) -> tokio::process::Child {
    tokio::process::Command::new(warehouse_bin())
        .args(args)
        .env_remove(env::EDGE_LISTEN)
        .env_remove(env::INTERNAL_TOKEN)
        .env_remove(env::STORE)
        .env(HARNESS_DURABILITY.0, HARNESS_DURABILITY.1)
        .envs(envs.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn")
}

/// Waits until the internal listener on `port` answers health SERVING: every listener was bound
/// before the server started, so from then on the process listens on all it ever will.
async fn wait_serving(port: u16) {
    eventually(
        "the warehouse to serve",
        Duration::from_secs(20),
        || async move {
            let channel =
                tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{port}"))
                    .ok()?
                    .connect()
                    .await
                    .ok()?;
            let reply = HealthClient::new(channel)
                .check(HealthCheckRequest::default())
                .await
                .ok()?;
            (reply.into_inner().status() == ServingStatus::Serving).then_some(())
        },
    )
    .await;
}

/// SIGTERMs `child`, asserts it stopped cleanly and returns its log.
async fn stop(mut child: tokio::process::Child) -> String {
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
    stderr
}

/// The log line carrying `message`.
fn log_line<'a>(log: &'a str, message: &str) -> &'a str {
    log.lines()
        .find(|l| l.contains(message))
        .unwrap_or_else(|| panic!("no {message:?} in the log:\n{log}"))
}

#[tokio::test]
async fn without_edge_listen_there_is_no_edge_listener() {
    let (port, metrics_port) = (free_port(), free_port());
    let child = spawn_warehouse(
        &[
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--metrics-listen",
            &format!("127.0.0.1:{metrics_port}"),
        ],
        &[],
    );
    wait_serving(port).await;
    let pid = child.id().expect("running");
    assert_eq!(
        listening_ports(pid),
        BTreeSet::from([port, metrics_port]),
        "the internal and metrics listeners only"
    );
    let log = stop(child).await;
    assert!(log_line(&log, "no edge listener").contains("--edge-listen unset"));
}

#[tokio::test]
async fn each_listener_serves_its_own_callers_as_configured_by_the_environment() {
    let (port, edge_port, metrics_port) = (free_port(), free_port(), free_port());
    let token = "an-internal-token-of-forty-bytes-0123456";
    let origin_key = String::from_utf8(TEST_ORIGIN_KEY.to_vec()).unwrap();
    let (internal, edge) = (
        format!("127.0.0.1:{port}"),
        format!("127.0.0.1:{edge_port}"),
    );
    let child = spawn_warehouse(
        &[
            "--listen",
            &internal,
            "--metrics-listen",
            &format!("127.0.0.1:{metrics_port}"),
            "--demo-sale",
            "1001:100:10:0",
        ],
        &[
            (env::EDGE_LISTEN, &edge),
            (env::INTERNAL_TOKEN, token),
            (env::ORIGIN_KEY, &origin_key),
        ],
    );
    // Health needs no token.
    wait_serving(port).await;
    let pid = child.id().expect("running");
    assert_eq!(
        listening_ports(pid),
        BTreeSet::from([port, edge_port, metrics_port])
    );

    // The internal listener: native gRPC with the token.
    let mut admin = AdminClient::new(channel_to(([127, 0, 0, 1], port).into()).await);
    let refused = admin.get_event(EventReq { id: 1 }).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    let mut request = tonic::Request::new(EventReq { id: 1 });
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let state = admin.get_event(request).await.expect("with the token");
    assert_eq!(state.into_inner().event.unwrap().sku_id, 1001);

    // The edge listener: native gRPC refused, origin-signed gRPC-Web served.
    let edge_addr = ([127, 0, 0, 1], edge_port).into();
    let native = AdminClient::new(channel_to(edge_addr).await)
        .get_event(EventReq { id: 1 })
        .await
        .unwrap_err();
    assert_eq!(native.code(), Code::Unauthenticated, "{native:?}");
    let reply: Reply<EventState> = grpc_web::call(
        edge_addr,
        "/flashsale.Admin/GetEvent",
        &EventReq { id: 1 },
        Some(now_ms()),
    )
    .await;
    let Reply::Message(view) = reply else {
        panic!("the sale view expected: {reply:?}");
    };
    assert_eq!(view.remaining, 10);

    // The log says which address is which.
    let log = stop(child).await;
    assert!(log_line(&log, "edge listener (origin-signed gRPC-Web only)").contains(&edge));
    assert!(log_line(&log, "internal listener (native gRPC: back office)").contains(&internal));
    assert!(
        !log.contains("every edge call will be refused"),
        "the origin key is set: {log}"
    );
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
        .env(HARNESS_DURABILITY.0, HARNESS_DURABILITY.1)
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

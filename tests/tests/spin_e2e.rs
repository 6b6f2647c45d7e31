//! The Spin component end to end: a Redis of the test's own, the warehouse on it, and the real
//! component (the plain build: standard WASI imports only) under `wasmtime serve`, driven over
//! HTTP the way a browser drives it, through the same scenario list as the Cloudflare Worker
//! (`flashgate_tests::scenarios`).
//!
//! Spin and `wasmtime serve` create an instance per request, so the plain build remembers
//! nothing: the scenarios hold it to everything that needs no memory and check that, where the
//! Worker would answer from memory (rate limits, breaker, sold-out flag), it forwards and the
//! warehouse's own limits answer. The key-value build runs the same list under the Node/jco host
//! (in-memory `spin:key-value`) and is held to what the Worker is held to. The waiting room's
//! scenario runs on two instances of each build sharing one sale. A third test pins the empty-body bug of spin-sdk's `send`
//! under wasmtime: an origin that writes a reply's head and body separately.

use std::net::SocketAddr;
use std::time::Duration;

use flashgate_core::gate::DEMO_MODE_WARNING;
use flashgate_core::grpc_web;
use flashgate_core::proto::flashsale::{Event, EventState};
use flashgate_core::warehouse::service::now_ms;
use flashgate_tests::adversary;
use flashgate_tests::scenarios::{self, Browser, EdgeProfile, World, CHROME, USER_KEY};
use flashgate_tests::spin::{SpinHost, SplitWriteOrigin};
use flashgate_tests::wait::eventually;
use flashgate_tests::{waiting_room, TestRedis};

/// Spin sets `spin-client-addr` (`ip:port`) on every request; under `wasmtime serve` the test
/// sends it itself.
const ADDR_HEADER: &str = "spin-client-addr";

fn plain() -> EdgeProfile {
    EdgeProfile {
        name: "spin (plain build, wasmtime serve)",
        addr_header: ADDR_HEADER,
        remembers: false,
        // A Spin instance serves one request: a poll cannot wait for another's news.
        holds_polls: false,
        // Nor can a join wait for others to gather with.
        gathers_joins: false,
        gathers_buys: false,
        // On Spin, spin.toml's static-file component serves web/; wasmtime serves only the
        // component.
        serves_page: false,
        network_retry_after_s: 1,
    }
}

/// The key-value build keeps the gate's state in Spin key-value, so it remembers what the
/// Worker remembers: its limits are the gate's own GCRA buckets (per network "20/s burst 40").
fn key_value() -> EdgeProfile {
    EdgeProfile {
        name: "spin (kv build, Node/jco host)",
        addr_header: ADDR_HEADER,
        remembers: true,
        holds_polls: false,
        gathers_joins: false,
        gathers_buys: false,
        serves_page: false,
        network_retry_after_s: 1,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_value_build_remembers_limits_breaker_and_sell_out() {
    let mut redis = TestRedis::spawn(&[]).await;
    let origin = scenarios::origin_on(&redis).await;
    let vars = scenarios::edge_vars(origin.edge_addr);
    let edge = SpinHost::node_kv(&vars).await;
    eprintln!("node kv host: first answer after {:?}", edge.started_in);
    let second = SpinHost::node_kv(&vars).await;
    let world = World {
        origin,
        edge: edge.addr,
        profile: key_value(),
    };
    waiting_room::a_line_holds_across_two_edges(&world, second.addr).await;
    drop(second);
    scenarios::run_all(world, &mut redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spin_component_guards_the_warehouse_end_to_end() {
    let mut redis = TestRedis::spawn(&[]).await;
    let origin = scenarios::origin_on(&redis).await;
    let vars = scenarios::edge_vars(origin.edge_addr);
    let edge = SpinHost::wasmtime(&vars).await;
    eprintln!("wasmtime serve: first answer after {:?}", edge.started_in);
    let second = SpinHost::wasmtime(&vars).await;
    let world = World {
        origin,
        edge: edge.addr,
        profile: plain(),
    };
    waiting_room::a_line_holds_across_two_edges(&world, second.addr).await;
    drop(second);
    adversary::run_all(&world).await;
    scenarios::run_all(world, &mut redis).await;
}

/// With spin-sdk's `http::send`, wasip3 0.7.1 drops the request's transmission future and,
/// under wasmtime, a reply whose head and body arrive in separate writes can reach the component
/// with an empty body — which the gate would turn into a 503. The component holds that future
/// (raw `wasi:http/client`), so the sale view arrives whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_writing_head_and_body_separately_is_read_whole() {
    let start_ms = now_ms() + 60_000;
    let state = EventState {
        event: Some(Event {
            id: 5,
            sku_id: 505,
            pool: 7,
            start_ms,
            end_ms: start_ms + 3_600_000,
            per_user_limit: 1,
            pay_window_ms: 600_000,
            subpools: 0,
            price: 1999,
            currency: "EUR".into(),
            ..Default::default()
        }),
        remaining: 7,
        sold_out: false,
        status: 0,
        server_time_ms: now_ms(),
    };
    let body = grpc_web::encode_response(Some(&state), 0, "");
    let origin = SplitWriteOrigin::start(
        200,
        vec![("content-type", "application/grpc-web+proto".to_owned())],
        body,
        Duration::from_millis(50),
    )
    .await;
    let edge = SpinHost::wasmtime(&scenarios::edge_vars(origin.addr)).await;
    let mut browser = Browser::new(edge.addr, ADDR_HEADER, "split", "198.18.10.1");
    browser.user_agent = CHROME;
    browser.token =
        Some(scenarios::shop_identity(USER_KEY.as_bytes()).mint("split", now_ms(), 60_000));
    for _ in 0..5 {
        let view = browser.get("/api/events/5").await;
        assert_eq!(
            view.status(),
            200,
            "the reply's body was lost on the way in: {}\n{}",
            view.json,
            edge.log_tail()
        );
        assert_eq!(
            (
                view.json["remaining"].as_i64(),
                view.json["sku_id"].as_i64()
            ),
            (Some(7), Some(505))
        );
        assert_eq!(view.json["status"], "upcoming");
    }
}

/// `spin.toml` points at what the build makes: the kv build as the `/api/...` component, built
/// by the project's script, allowed to call the origin it is configured with, with the store it
/// opens; the storefront from `web/`. And the two builds import what the README says: only the
/// kv build names `spin:key-value`.
#[test]
fn spin_toml_matches_the_builds() {
    let root = flashgate_tests::process::repo_root();
    let manifest = std::fs::read_to_string(root.join("spin.toml")).expect("spin.toml");
    let value = |key: &str| {
        manifest
            .lines()
            .find_map(|l| l.trim().strip_prefix(key)?.trim().strip_prefix('='))
            .unwrap_or_else(|| panic!("spin.toml has no {key}"))
            .trim()
            .to_owned()
    };
    assert_eq!(value("spin_manifest_version"), "2");
    let source = value("source");
    assert_eq!(source, "\"target/spin/flashgate_spin_kv.wasm\"");
    assert!(value("command").contains("scripts/build/spin.sh kv"));
    assert_eq!(value("key_value_stores"), "[\"default\"]");
    let environment = value("environment");
    let origin = environment
        .split("FLASHGATE_ORIGIN_URL = \"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("FLASHGATE_ORIGIN_URL in environment");
    assert!(
        value("allowed_outbound_hosts").contains(&format!("\"{origin}\"")),
        "the configured origin {origin} must be an allowed outbound host"
    );
    for secret in [
        "FLASHGATE_LINK_KEYS",
        "FLASHGATE_USER_TOKEN_KEY",
        "FLASHGATE_ORIGIN_KEY",
    ] {
        assert!(
            !environment.contains(secret),
            "{secret} is a secret: never in spin.toml"
        );
    }
    assert!(manifest.contains("route = \"/api/...\""));
    assert!(manifest.contains("files = [{ source = \"web\", destination = \"/\" }]"));
    assert!(root.join("web/index.html").exists());

    let imports = |build| {
        let bytes = std::fs::read(flashgate_tests::spin::component(build)).expect("component");
        let text = String::from_utf8_lossy(&bytes).into_owned();
        (
            text.contains("spin:key-value/key-value"),
            text.contains("wasi:http/handler@0.3"),
        )
    };
    use flashgate_tests::spin::Build;
    assert_eq!(imports(Build::Plain), (false, true), "plain build");
    assert_eq!(imports(Build::KeyValue), (true, true), "kv build");
}

/// Demo mode says so, loudly, in the component's log: WASI HTTP has no start hook and every
/// request is an instance of its own, so each request says it once. With demo mode off, nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_mode_is_announced_in_the_log_only_when_on() {
    // The guest door answers without the origin: nothing listens there.
    let mut vars = scenarios::edge_vars(SocketAddr::from(([127, 0, 0, 1], 9)));
    let off = SpinHost::wasmtime(&vars).await;
    vars.retain(|(name, _)| *name != "FLASHGATE_DEMO_MODE");
    vars.push(("FLASHGATE_DEMO_MODE", "1".to_owned()));
    let on = SpinHost::wasmtime(&vars).await;
    let guest = Browser::new(on.addr, ADDR_HEADER, "visitor", "198.18.11.1")
        .post("/api/session/guest", &serde_json::json!({}))
        .await;
    assert_eq!(guest.status(), 200, "{}", guest.json);
    eventually(
        "the demo-mode warning in the log",
        Duration::from_secs(10),
        || async { on.log().contains(DEMO_MODE_WARNING).then_some(()) },
    )
    .await;
    let refused = Browser::new(off.addr, ADDR_HEADER, "visitor", "198.18.11.2")
        .post("/api/session/guest", &serde_json::json!({}))
        .await;
    assert_eq!(refused.status(), 404);
    assert!(!off.log().contains("DEMO MODE"), "{}", off.log_tail());
}

//! The Cloudflare Worker end to end: a Redis of the test's own, the warehouse on it, and the
//! real Worker under `wrangler dev` (workerd), driven over HTTP the way a browser drives it.
//!
//! `wrangler dev` takes seconds to start, so one test starts it once and runs the scenarios in
//! turn; each scenario uses its own sale, users and client addresses (`CF-Connecting-IP`, which
//! local workerd passes through), so their limits do not meet. A second test proves the Worker
//! deploys as configured (`wrangler deploy --dry-run`). The waiting room's scenario runs on two
//! `wrangler dev` processes (two isolates that share nothing but the warehouse).

use flashgate_tests::adversary;
use flashgate_tests::edge::{wrangler_command, Wrangler};
use flashgate_tests::process::Scratch;
use flashgate_tests::scenarios::{self, EdgeProfile, World};
use flashgate_tests::{waiting_room, TestRedis};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_guards_the_warehouse_end_to_end() {
    let mut redis = TestRedis::spawn(&[]).await;
    let origin = scenarios::origin_on(&redis).await;
    let vars = scenarios::edge_vars(origin.edge_addr);
    let edge = Wrangler::start(&vars).await;
    let second = Wrangler::start(&vars).await;
    let world = World {
        origin,
        edge: edge.addr,
        profile: EdgeProfile {
            name: "worker",
            // Local workerd passes CF-Connecting-IP through.
            addr_header: "cf-connecting-ip",
            remembers: true,
            holds_polls: true,
            gathers_joins: true,
            gathers_buys: true,
            serves_page: true,
            // The rate-limit binding's period in wrangler.toml.
            network_retry_after_s: 10,
        },
    };
    waiting_room::a_line_holds_across_two_edges(&world, second.addr).await;
    drop(second);
    adversary::run_all(&world).await;
    scenarios::run_all(world, &mut redis).await;
}

#[test]
fn the_worker_is_deployable_as_configured() {
    let out = Scratch::new("deploy");
    let output = wrangler_command()
        .args(["deploy", "--dry-run", "--outdir"])
        .arg(&out.0)
        .output()
        .unwrap_or_else(|e| panic!("cannot run wrangler ({e}): run scripts/toolchain/setup.sh"));
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "wrangler deploy --dry-run failed:\n{log}"
    );
    for binding in ["FLASHGATE_IP_LIMITER", "FLASHGATE_ORIGIN_URL"] {
        assert!(
            log.contains(binding),
            "{binding} not among the bindings:\n{log}"
        );
    }
    assert!(
        out.0.join("index.js").exists(),
        "no bundle in the outdir:\n{log}"
    );
    let wasm = std::fs::read_dir(&out.0)
        .unwrap()
        .filter_map(Result::ok)
        .any(|e| e.path().extension().is_some_and(|x| x == "wasm"));
    assert!(wasm, "no wasm module in the outdir:\n{log}");
}

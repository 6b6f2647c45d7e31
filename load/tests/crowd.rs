//! The load generator against a real warehouse: the crowd runs, the report adds up, and the
//! oversold check reads the real ledger.

use std::process::Command;

use flashgate_core::proto::flashsale::{Event, PutSkuStockReq};
use flashgate_core::warehouse::service::now_ms;
use flashgate_core::warehouse::store::MemoryStore;
use flashgate_tests::{TestRedis, TestWarehouse};

async fn sale(w: &TestWarehouse, pool: i32) {
    let mut admin = w.admin();
    admin
        .put_sku_stock(PutSkuStockReq {
            sku_id: 3,
            num: 500,
        })
        .await
        .unwrap();
    let start_ms = now_ms() - 1_000;
    admin
        .put_event(Event {
            id: 9,
            sku_id: 3,
            pool,
            start_ms,
            end_ms: start_ms + 600_000,
            per_user_limit: 1,
            pay_window_ms: 600_000,
            subpools: 0,
            price: 1999,
            currency: "EUR".into(),
            ..Default::default()
        })
        .await
        .unwrap();
}

fn crowd(
    addr: std::net::SocketAddr,
    extra: &[&str],
) -> (std::process::ExitStatus, serde_json::Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_flashgate-load"))
        .args([
            "--target",
            &format!("grpc://{addr}"),
            "--event",
            "9",
            "--json",
        ])
        .args(extra)
        .output()
        .expect("run flashgate-load");
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status, report)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spike_sells_exactly_the_pool_and_reports_it() {
    let redis = TestRedis::start().await;
    let w = TestWarehouse::start(redis.store().await).await;
    sale(&w, 40).await;
    let addr = w.addr;
    let (status, report) = tokio::task::spawn_blocking(move || {
        crowd(
            addr,
            &["--buyers", "300", "--bots", "20", "--bot-requests", "4"],
        )
    })
    .await
    .unwrap();
    assert!(status.success(), "{report}");
    assert_eq!(report["won"], 40, "{report}");
    assert_eq!(report["oversold"], 0, "{report}");
    let outcomes = &report["outcomes"];
    let buyers: u64 = ["QUEUED", "SOLD_OUT"]
        .iter()
        .map(|k| outcomes[*k].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(buyers, 300, "every buyer got a definite answer: {report}");
    assert_eq!(report["requests"], 300 + 20 * 4, "{report}");
    assert_eq!(report["sale"]["remaining"], 0);
    assert_eq!(report["sale"]["conserved"], 1);
    // Bots fire four buys each as one user: the per-user limit lets at most one through.
    let bot_wins = outcomes["bot QUEUED"].as_u64().unwrap_or(0);
    assert!(bot_wins <= 20, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_steady_crowd_on_the_memory_store_reports_latency() {
    let w = TestWarehouse::start(MemoryStore::new()).await;
    sale(&w, 500).await;
    let addr = w.addr;
    let (status, report) = tokio::task::spawn_blocking(move || {
        crowd(
            addr,
            &[
                "--buyers",
                "100",
                "--bots",
                "0",
                "--arrival",
                "steady",
                "--rate",
                "2000",
            ],
        )
    })
    .await
    .unwrap();
    assert!(status.success(), "{report}");
    assert_eq!(report["outcomes"]["QUEUED"], 100, "{report}");
    let (p50, p99) = (
        report["p50_ms"].as_f64().unwrap(),
        report["p99_ms"].as_f64().unwrap(),
    );
    assert!(p50 > 0.0 && p50 <= p99, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crowd_split_over_two_warehouses_buys_from_the_sale_it_put() {
    let redis = TestRedis::start().await;
    let store = redis.store().await;
    let (a, b) = (
        TestWarehouse::start(store.clone()).await,
        TestWarehouse::start(store).await,
    );
    let targets = format!("grpc://{},grpc://{}", a.addr, b.addr);
    let (status, report) = tokio::task::spawn_blocking(move || {
        let out = Command::new(env!("CARGO_BIN_EXE_flashgate-load"))
            .args(["--target", &targets, "--event", "12", "--json"])
            .args(["--put-sale", "5:30:2", "--buyers", "200", "--bots", "0"])
            .output()
            .expect("run flashgate-load");
        let report: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
        (out.status, report)
    })
    .await
    .unwrap();
    assert!(status.success(), "{report}");
    assert_eq!(report["won"], 30, "{report}");
    assert_eq!(report["oversold"], 0, "{report}");
    assert_eq!(
        report["sale"]["pool"], 30,
        "the sale --put-sale made: {report}"
    );
    let split = report["actors_by_target"].as_object().unwrap();
    assert_eq!(split.len(), 2, "{report}");
    assert!(
        split.values().all(|n| n == 100),
        "round robin over the targets: {report}"
    );
}

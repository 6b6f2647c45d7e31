//! Support for flashgate's cross-process tests: a real Redis per test or a cluster
//! ([`redis_server`], [`cluster`]), the warehouse served in-process on `127.0.0.1:0` with real
//! tonic clients on its internal listener or as the edge calls its edge listener ([`grpc_web`]),
//! or run as its binary ([`process`]), the edge runtimes ([`edge`], [`spin`]), key prefixes that
//! keep tests sharing one Redis apart, polling with a deadline instead of sleeps ([`wait`]), and
//! wrapper stores that write only the seam they change ([`forward`]).

pub mod adversary;
pub mod cluster;
pub mod edge;
pub mod forward;
pub mod grpc_web;
pub mod postgres;
pub mod process;
pub mod redis_server;
pub mod scenarios;
pub mod spin;
pub mod storefront;
pub mod wait;
pub mod waiting_room;

pub use postgres::TestPostgres;
pub use process::{warehouse_bin, WarehouseProcess};
pub use redis_server::TestRedis;
pub use wait::{eventually, free_port};

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};

use flashgate_core::proto::flashsale::{
    admin_client::AdminClient, queue_client::QueueClient, seckill_client::SeckillClient,
};
use flashgate_core::proto::warehouse::warehouse_client::WarehouseClient;
use flashgate_core::proto::warehouse::SkuStockLockReq;
use flashgate_core::stock::{Currency, Ledger, Order, PayRequest};
use flashgate_core::warehouse::server::{serve, Listeners, ServeError, ServerOptions};
use flashgate_core::warehouse::store::{Store, StoreError, StoreResult};
use proptest::strategy::Strategy;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};
use tokio::net::TcpListener;
use tokio::runtime::Runtime;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

/// Names a running Redis Cluster (its seed URLs, separated by commas) that every test taking
/// [`TestRedis::start`] then runs against; the test command sets it for its cluster pass.
pub const CLUSTER_ENV: &str = "FLASHGATE_TEST_REDIS_CLUSTER";

/// The origin key the test servers accept.
pub const TEST_ORIGIN_KEY: &[u8] = b"flashgate-test-origin-key-0123456789";

/// The waiting rooms' draw secret the test warehouses use (a test's, never a deployment's).
pub const TEST_QUEUE_SECRET: &[u8] = b"flashgate-test-waiting-room-draw-secret";

/// [`TEST_QUEUE_SECRET`] in hex, as `--queue-secret` takes it.
pub fn test_queue_secret_hex() -> String {
    TEST_QUEUE_SECRET
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A warehouse served in-process: the task running [`serve`].
pub type ServeTask = JoinHandle<Result<(), ServeError>>;

/// A key prefix unique to this process and call.
pub fn unique_prefix() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "t{}x{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A warehouse served in-process on `127.0.0.1:0`, stopped (gracefully) when dropped.
pub struct TestWarehouse {
    /// Its internal listener: native gRPC (what [`Self::warehouse`], [`Self::admin`] and
    /// [`Self::seckill`] talk to).
    pub addr: SocketAddr,
    /// Its edge listener: origin-signed gRPC-Web only.
    pub edge_addr: SocketAddr,
    /// Where it serves `/metrics`.
    pub metrics_addr: SocketAddr,
    channel: Channel,
    stop: Option<oneshot::Sender<()>>,
    task: Option<ServeTask>,
}

impl TestWarehouse {
    /// Serves `store` with test defaults (origin key [`TEST_ORIGIN_KEY`], draw secret
    /// [`TEST_QUEUE_SECRET`], worker on).
    pub async fn start<S: Store>(store: S) -> Self {
        let mut options = ServerOptions {
            origin_key: Some(TEST_ORIGIN_KEY.to_vec()),
            queue_secret: Some(TEST_QUEUE_SECRET.to_vec()),
            ..ServerOptions::default()
        };
        if let Some(worker) = options.worker.as_mut() {
            worker.consumer = unique_prefix();
        }
        Self::start_with(store, options).await
    }

    /// Serves `store` with `options`, on an internal, an edge and a metrics listener.
    pub async fn start_with<S: Store>(store: S, options: ServerOptions) -> Self {
        let bind = || async { TcpListener::bind("127.0.0.1:0").await.expect("bind") };
        let listeners = Listeners {
            internal: bind().await,
            edge: Some(bind().await),
            metrics: Some(bind().await),
        };
        let addr = listeners.internal.local_addr().expect("addr");
        let edge_addr = listeners
            .edge
            .as_ref()
            .expect("bound")
            .local_addr()
            .expect("addr");
        let metrics_addr = listeners
            .metrics
            .as_ref()
            .expect("bound")
            .local_addr()
            .expect("addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(store, options, listeners, async {
            let _ = stopped.await;
        }));
        let channel = Channel::from_shared(format!("http://{addr}"))
            .expect("valid uri")
            .connect()
            .await
            .expect("connect to the test warehouse");
        Self {
            addr,
            edge_addr,
            metrics_addr,
            channel,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// The seed contract's client.
    pub fn warehouse(&self) -> WarehouseClient<Channel> {
        WarehouseClient::new(self.channel.clone())
    }

    /// The sale administration client.
    pub fn admin(&self) -> AdminClient<Channel> {
        AdminClient::new(self.channel.clone())
    }

    /// The buying client.
    pub fn seckill(&self) -> SeckillClient<Channel> {
        SeckillClient::new(self.channel.clone())
    }

    /// The waiting rooms' client.
    pub fn queue(&self) -> QueueClient<Channel> {
        QueueClient::new(self.channel.clone())
    }

    /// A fresh connection to the internal listener (its own HTTP/2 connection, so its own
    /// concurrency limit).
    pub async fn new_channel(&self) -> Channel {
        channel_to(self.addr).await
    }

    /// A fresh native gRPC connection to the edge listener (which refuses every native call).
    pub async fn edge_channel(&self) -> Channel {
        channel_to(self.edge_addr).await
    }

    /// The metrics text.
    pub async fn metrics(&self) -> String {
        http_get(self.metrics_addr, "/metrics").await
    }

    /// Stops the server and waits until it has stopped.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        Ok(self.task.take().expect("running").await??)
    }
}

impl Drop for TestWarehouse {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A native gRPC connection to `addr`.
pub async fn channel_to(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"))
}

/// A plain HTTP/1.1 GET on loopback, returning the body (tests only; no client crate needed).
pub async fn http_get(addr: SocketAddr, path: &str) -> String {
    let response = http1_request(addr, "GET", path, &[], &[]).await;
    String::from_utf8_lossy(&response.body).into_owned()
}

/// An HTTP/1.1 response as the tests read it.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header of that (lower-case) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends one HTTP/1.1 request with `Connection: close` and reads the whole response.
pub async fn http1_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.expect("write head");
    stream.write_all(body).await.expect("write body");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read response");
    parse_http1(&raw)
}

fn parse_http1(raw: &[u8]) -> HttpResponse {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("complete response head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    if chunked {
        let mut out = Vec::new();
        let mut rest = &body[..];
        while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
            let size = usize::from_str_radix(String::from_utf8_lossy(&rest[..eol]).trim(), 16)
                .unwrap_or(0);
            if size == 0 {
                break;
            }
            out.extend_from_slice(&rest[eol + 2..eol + 2 + size]);
            rest = &rest[eol + 2 + size + 2..];
        }
        body = out;
    }
    HttpResponse {
        status,
        headers,
        body,
    }
}

/// A seed-contract lock request for `order_id` taking `sku_nums` (SKU id, units), every other
/// field valid and the same on every call, so a repeat of the same request is a duplicate.
pub fn lock_req(order_id: i64, sku_nums: &[(i64, i32)]) -> SkuStockLockReq {
    SkuStockLockReq {
        order_id,
        order_no: format!("NO-{order_id}"),
        consignee: "张三".into(),
        phone: "13800000000".into(),
        address: "1 Main Street".into(),
        note: "leave at the door".into(),
        sku_nums: sku_nums.iter().copied().collect(),
    }
}

/// The currency the tests' sales are priced in.
pub fn eur() -> Currency {
    Currency::parse("EUR").expect("a currency code")
}

/// Pays `order_no` as the shop's payment side would once the buyer `user_id` has paid: its own
/// amount (read first), payment id `pay-{order_no}`.
pub async fn pay_in_full<S: Store>(
    store: &S,
    order_no: &str,
    user_id: &str,
    now_ms: i64,
) -> StoreResult<Order> {
    let amount = store
        .order(order_no)
        .await?
        .ok_or_else(|| {
            StoreError::Refused(flashgate_core::stock::StockError::NotFound(format!(
                "order {order_no}"
            )))
        })?
        .amount;
    let payment = PayRequest {
        order_no: order_no.to_owned(),
        user_id: Some(user_id.to_owned()),
        payment_id: format!("pay-{order_no}"),
        amount,
    };
    store.pay(&payment, now_ms).await
}

/// A runtime on the calling thread alone, for a synchronous `#[test]` that drives async code
/// with `block_on` (a proptest runner's closure cannot be async).
pub fn blocking_runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// [`blocking_runtime`] with `workers` threads of its own, for cases whose spawned tasks must
/// really run in parallel.
pub fn blocking_runtime_with_workers(workers: usize) -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("runtime")
}

/// The ledger of `sku` in `store`, asserted to exist and to be conserved (every unit in exactly
/// one place, none negative); returned for the test's own checks.
pub async fn assert_ledger<S: Store>(store: &S, sku: i64) -> Ledger {
    let ledger = store
        .ledger(sku)
        .await
        .unwrap_or_else(|e| panic!("sku {sku}: reading the ledger: {e}"))
        .unwrap_or_else(|| panic!("sku {sku}: no such SKU"));
    assert!(
        ledger.is_conserved(),
        "sku {sku}: not conserved: {ledger:?}"
    );
    ledger
}

/// How many cases a proptest runs: `PROPTEST_CASES` if set to a number, else `default`.
pub fn proptest_cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(default)
}

/// The one way the Redis-backed property tests run: [`proptest_cases`]`(default_cases)` cases of
/// `strategy`, no regression file (the cases drive a real Redis, so the minimal failing input is
/// printed instead, to be pinned as a named regression test), and a panic naming `what` failed.
pub fn run_property<S, F>(what: &str, default_cases: u32, strategy: &S, test: F)
where
    S: Strategy,
    S::Value: std::fmt::Debug,
    F: Fn(S::Value) -> Result<(), TestCaseError>,
{
    let mut runner = TestRunner::new(Config {
        cases: proptest_cases(default_cases),
        failure_persistence: None,
        ..Config::default()
    });
    match runner.run(strategy, test) {
        Ok(()) => {}
        Err(TestError::Fail(why, input)) => {
            panic!("{what}: {why}\nminimal failing input: {input:#?}")
        }
        Err(e) => panic!("{what}: {e}"),
    }
}

/// A store answer with the refusal's message dropped: what the model tests compare (only the
/// kind of a refusal has to match between two stores).
#[derive(Debug, PartialEq, Eq)]
pub enum Kind {
    /// `NOT_FOUND`.
    NotFound,
    /// `FAILED_PRECONDITION`.
    FailedPrecondition,
    /// `ALREADY_EXISTS`.
    AlreadyExists,
    /// The order is another user's.
    NotYours,
    /// Never expected; the message is kept for the failure report.
    Unavailable(String),
    /// Never expected either.
    Corrupt(String),
}

/// The [`Kind`] of a store error, the value passed through.
pub fn kind<T>(result: flashgate_core::warehouse::store::StoreResult<T>) -> Result<T, Kind> {
    result.map_err(|e| match e {
        flashgate_core::warehouse::store::StoreError::Refused(
            flashgate_core::stock::StockError::NotFound(_),
        ) => Kind::NotFound,
        flashgate_core::warehouse::store::StoreError::Refused(
            flashgate_core::stock::StockError::FailedPrecondition(_),
        ) => Kind::FailedPrecondition,
        flashgate_core::warehouse::store::StoreError::Refused(
            flashgate_core::stock::StockError::AlreadyExists(_),
        ) => Kind::AlreadyExists,
        flashgate_core::warehouse::store::StoreError::Refused(
            flashgate_core::stock::StockError::NotYours(_),
        ) => Kind::NotYours,
        flashgate_core::warehouse::store::StoreError::Unavailable(m) => Kind::Unavailable(m),
        flashgate_core::warehouse::store::StoreError::Corrupt(m) => Kind::Corrupt(m),
    })
}

/// Deletes the keys under `store`'s prefix (a property test's case), so a shared Redis
/// (`REDIS_URL`) does not fill up with cases.
pub async fn forget_keys(store: &flashgate_core::warehouse::store::RedisStore) {
    let mut conn = store.connection();
    if matches!(
        conn,
        flashgate_core::warehouse::store::RedisConnection::Cluster(_)
    ) {
        // SCAN reaches one node and DEL one slot: a cluster pass keeps its cases' keys (each
        // under a prefix of its own) until the test cluster is thrown away.
        return;
    }
    let pattern = format!("{}:*", store.keys().prefix());
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
            .expect("scan");
        if !keys.is_empty() {
            redis::cmd("DEL")
                .arg(&keys)
                .query_async::<()>(&mut conn)
                .await
                .expect("del");
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
}

/// Runs the same call on a pair of stores (any value with `redis` and `memory` fields) and
/// answers `(redis answer, memory answer)`, each through [`kind`]:
/// `both!(pair, s => s.put_stock(1, 2))`. The model tests compare the Redis store with the
/// memory store this way.
#[macro_export]
macro_rules! both {
    ($pair:expr, $s:ident => $call:expr) => {{
        let redis = {
            let $s = &$pair.redis;
            $crate::kind($call.await)
        };
        let memory = {
            let $s = &$pair.memory;
            $crate::kind($call.await)
        };
        (redis, memory)
    }};
}

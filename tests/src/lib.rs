//! Support for flashgate's cross-process tests: a real Redis per test (or `REDIS_URL`), the
//! warehouse started in-process on `127.0.0.1:0` with real tonic clients, key prefixes that keep
//! tests sharing one Redis apart, and polling with a deadline instead of sleeps.

pub mod cluster;
pub mod edge;
pub mod scenarios;
pub mod spin;
pub mod storefront;

use std::ffi::OsStr;
use std::future::Future;
use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use flashgate_core::proto::flashsale::{admin_client::AdminClient, seckill_client::SeckillClient};
use flashgate_core::proto::warehouse::warehouse_client::WarehouseClient;
use flashgate_core::proto::warehouse::SkuStockLockReq;
use flashgate_core::warehouse::server::{serve, ServerOptions};
use flashgate_core::warehouse::store::{RedisStore, RedisStoreConfig, Store};
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

/// A free TCP port on loopback (bound and released; the caller binds it next).
pub fn free_port() -> u16 {
    StdTcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// Polls `check` until it returns `Some`, or panics after `timeout` naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(5);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// A Redis for one test: the Redis Cluster named by [`CLUSTER_ENV`] when set, else `REDIS_URL`
/// when set, else a `redis-server` of its own on a free port, killed when dropped.
pub struct TestRedis {
    /// `redis://127.0.0.1:PORT` (a cluster: its seed nodes, separated by commas).
    pub url: String,
    /// Whether `url` is a Redis Cluster.
    pub cluster: bool,
    child: Option<Child>,
    /// The arguments it was started with, for a restart.
    extra: Vec<String>,
    /// Its own data directory, removed on drop (durable Redis only).
    data_dir: Option<std::path::PathBuf>,
}

impl TestRedis {
    /// Starts (or borrows) a Redis and waits until it answers PING.
    pub async fn start() -> Self {
        if let Ok(url) = std::env::var(CLUSTER_ENV) {
            return Self {
                url,
                cluster: true,
                child: None,
                extra: Vec::new(),
                data_dir: None,
            };
        }
        if let Ok(url) = std::env::var("REDIS_URL") {
            return Self {
                url,
                cluster: false,
                child: None,
                extra: Vec::new(),
                data_dir: None,
            };
        }
        Self::spawn(&[]).await
    }

    /// Always starts a `redis-server` of its own, with extra arguments (e.g. AOF settings).
    pub async fn spawn(extra: &[&str]) -> Self {
        let port = free_port();
        let extra = extra.iter().map(|a| (*a).to_owned()).collect();
        let url = format!("redis://127.0.0.1:{port}");
        let mut redis = Self {
            url,
            cluster: false,
            child: None,
            extra,
            data_dir: None,
        };
        redis.launch().await;
        redis
    }

    /// A `redis-server` of its own that loses nothing acknowledged: AOF with `appendfsync
    /// always`, in a fresh data directory removed on drop. [`TestRedis::restart`] keeps the data.
    pub async fn spawn_durable() -> Self {
        let dir = std::env::temp_dir().join(format!("flashgate-redis-{}", unique_prefix()));
        std::fs::create_dir_all(&dir).expect("create the Redis data directory");
        let dir_arg = dir.to_string_lossy().into_owned();
        let aof = [
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--dir",
            &dir_arg,
        ];
        let mut redis = Self::spawn(&aof).await;
        redis.data_dir = Some(dir);
        redis
    }

    /// Starts `redis-server` on this Redis's port (no persistence unless `extra` asks for it)
    /// and waits until it answers PING.
    async fn launch(&mut self) {
        let port = self.port().to_string();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port,
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (the test command installs it)");
        self.child = Some(child);
        let client = redis::Client::open(self.url.as_str()).expect("valid url");
        eventually(
            "redis-server to answer PING",
            Duration::from_secs(20),
            || {
                let client = client.clone();
                async move {
                    let mut conn = client.get_multiplexed_async_connection().await.ok()?;
                    redis::cmd("PING")
                        .query_async::<String>(&mut conn)
                        .await
                        .ok()
                }
            },
        )
        .await;
    }

    /// A Redis store under a key prefix no other test uses.
    pub async fn store(&self) -> RedisStore {
        let mut config = RedisStoreConfig::new(self.url.clone());
        config.cluster = self.cluster;
        config.prefix = unique_prefix();
        RedisStore::connect(config)
            .await
            .expect("connect to the test Redis")
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(dir) = &self.data_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

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
    /// Where it listens for gRPC and gRPC-Web.
    pub addr: SocketAddr,
    /// Where it serves `/metrics`.
    pub metrics_addr: SocketAddr,
    channel: Channel,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestWarehouse {
    /// Serves `store` with test defaults (origin key [`TEST_ORIGIN_KEY`], worker on).
    pub async fn start<S: Store>(store: S) -> Self {
        let mut options = ServerOptions {
            origin_key: Some(TEST_ORIGIN_KEY.to_vec()),
            ..ServerOptions::default()
        };
        if let Some(worker) = options.worker.as_mut() {
            worker.consumer = unique_prefix();
        }
        Self::start_with(store, options).await
    }

    /// Serves `store` with `options`.
    pub async fn start_with<S: Store>(store: S, options: ServerOptions) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let metrics_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let metrics_addr = metrics_listener.local_addr().expect("addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(
            store,
            options,
            listener,
            Some(metrics_listener),
            async {
                let _ = stopped.await;
            },
        ));
        let channel = Channel::from_shared(format!("http://{addr}"))
            .expect("valid uri")
            .connect()
            .await
            .expect("connect to the test warehouse");
        Self {
            addr,
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

    /// A fresh connection (its own HTTP/2 connection, so its own concurrency limit).
    pub async fn new_channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .expect("uri")
            .connect()
            .await
            .expect("connect")
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
        self.task.take().expect("running").await?
    }
}

impl Drop for TestWarehouse {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
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

/// The `flashgate-warehouse` binary of this workspace's debug build (`FLASHGATE_WAREHOUSE_BIN`
/// overrides). `scripts/test.sh` builds it before the tests run.
pub fn warehouse_bin() -> std::path::PathBuf {
    if let Ok(bin) = std::env::var("FLASHGATE_WAREHOUSE_BIN") {
        return bin.into();
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let bin = target.join("debug/flashgate-warehouse");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p flashgate-core --features warehouse --bin flashgate-warehouse` \
         (scripts/test.sh does)",
        bin.display()
    );
    bin
}

/// A `flashgate-warehouse` process on a fixed port, killed when dropped.
pub struct WarehouseProcess {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// Its gRPC port.
    pub port: u16,
    /// Where it serves `/metrics`, if it was given a metrics port.
    pub metrics_addr: Option<SocketAddr>,
    child: Child,
}

impl WarehouseProcess {
    /// Starts the binary with `args` on `port`, metrics off, and waits until it accepts
    /// connections.
    pub async fn start<S: AsRef<OsStr>>(port: u16, args: &[S]) -> Self {
        Self::spawn(port, args, &[], None).await
    }

    /// Starts the binary with `args` on `port` and the environment variables `envs` (a fault
    /// point, say), serving `/metrics` on `metrics_port` if given (else not at all), and waits
    /// until it accepts connections.
    pub async fn spawn<S: AsRef<OsStr>>(
        port: u16,
        args: &[S],
        envs: &[(&str, &str)],
        metrics_port: Option<u16>,
    ) -> Self {
        let metrics_addr = metrics_port.map(|p| SocketAddr::from(([127, 0, 0, 1], p)));
        let metrics_listen = metrics_addr.map_or_else(|| "off".to_owned(), |a| a.to_string());
        let child = Command::new(warehouse_bin())
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--metrics-listen", &metrics_listen])
            .args(args)
            .env("RUST_LOG", "warn")
            .envs(envs.iter().copied())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn flashgate-warehouse");
        let process = Self {
            url: format!("http://127.0.0.1:{port}"),
            port,
            metrics_addr,
            child,
        };
        // Generous for a loaded two-core machine; never reached when healthy.
        eventually(
            "the warehouse process to listen",
            Duration::from_secs(30),
            || process.try_channel(),
        )
        .await;
        process
    }

    async fn try_channel(&self) -> Option<Channel> {
        Channel::from_shared(self.url.clone())
            .ok()?
            .connect()
            .await
            .ok()
    }

    /// A new connection to it.
    pub async fn channel(&self) -> Channel {
        self.try_channel().await.expect("connect to the warehouse")
    }

    /// The metrics text (it must have been started with a metrics port).
    pub async fn metrics(&self) -> String {
        let addr = self.metrics_addr.expect("started without a metrics port");
        http_get(addr, "/metrics").await
    }

    /// `kill -9`: no graceful anything.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its exit status if it has exited, else `None`; never blocks. (The test's own kills,
    /// [`Self::kill9`] and dropping, consume it: a status here means it exited by itself.)
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child
            .try_wait()
            .expect("wait on the warehouse process")
    }
}

impl Drop for WarehouseProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl TestRedis {
    /// The port this Redis listens on.
    pub fn port(&self) -> u16 {
        self.url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("url with a port")
    }

    /// Stops this test's own `redis-server` (SHUTDOWN, so AOF is flushed) and starts it again on
    /// the same port with the same arguments and data, waiting until it answers again.
    pub async fn restart(&mut self) {
        let port = self.port();
        let _ = Command::new("redis-cli")
            .args(["-p", &port.to_string(), "shutdown"])
            .output();
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
        self.launch().await;
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

/// How many cases a proptest runs: `PROPTEST_CASES` if set to a number, else `default`.
pub fn proptest_cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(default)
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

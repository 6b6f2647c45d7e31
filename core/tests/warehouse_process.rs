//! The `flashgate-warehouse` binary as an operator runs it: settings that stop start-up with a
//! message naming them, the demo sale, metrics, and a graceful stop on SIGTERM.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_flashgate-warehouse");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(BIN)
        .args(args)
        .envs(env.iter().copied())
        .env_remove("FLASHGATE_STORE")
        .output()
        .expect("run flashgate-warehouse")
}

fn get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    Some(text)
}

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
    ] {
        let out = run(args, env);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} {env:?} started");
        assert!(stderr.contains(setting), "{args:?}: {stderr}");
    }
}

#[test]
fn an_unreachable_redis_stops_start_up_naming_the_url() {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let out = run(
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

#[test]
fn serves_a_demo_sale_and_stops_gracefully_on_sigterm() {
    let (port, metrics_port) = (free_port(), free_port());
    let mut child = Command::new(BIN)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--metrics-listen", &format!("127.0.0.1:{metrics_port}")])
        .args(["--store", "memory", "--demo-sale", "1001:100:10:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(20);
    let metrics = loop {
        if let Some(text) = get(metrics_port, "/metrics") {
            break text;
        }
        assert!(Instant::now() < deadline, "metrics never came up");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        metrics.contains(r#"flashgate_stock_units{place="pools",sku="1001"} 10"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"flashgate_stock_units{place="available",sku="1001"} 90"#),
        "{metrics}"
    );
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_ok(),
        "gRPC port open"
    );

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
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

/// A `redis-server` of the test's own, killed on drop.
struct Redis {
    port: u16,
    child: std::process::Child,
}

impl Redis {
    fn start() -> Self {
        let port = free_port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (scripts/toolchain/setup.sh installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !Self::cli(port, &["PING"]).contains("PONG") {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { port, child }
    }

    fn cli(port: u16, args: &[&str]) -> String {
        Command::new("redis-cli")
            .args(["-p", &port.to_string()])
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn audit_checks_a_redis_store_and_fails_on_a_violation() {
    let redis = Redis::start();
    let url = format!("redis://127.0.0.1:{}", redis.port);
    let port = free_port();
    let mut warehouse = Command::new(BIN)
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
            &url,
            "--demo-sale",
            "1001:100:10:0",
        ])
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    // The demo sale is in place before the port opens.
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "warehouse never listened");
        std::thread::sleep(Duration::from_millis(20));
    }
    Command::new("kill")
        .args(["-TERM", &warehouse.id().to_string()])
        .status()
        .unwrap();
    warehouse.wait().unwrap();

    let clean = run(&["audit", "--store", "redis", "--redis-url", &url], &[]);
    let text = String::from_utf8_lossy(&clean.stdout);
    assert!(clean.status.success(), "{text}");
    assert!(
        text.contains("1 SKUs, 1 sales, 0 orders, 0 locks: clean"),
        "{text}"
    );

    Redis::cli(redis.port, &["HINCRBY", "fg:{sku:1001}:stock", "sold", "1"]);
    let broken = run(&["audit", "--store", "redis", "--redis-url", &url], &[]);
    let text = String::from_utf8_lossy(&broken.stdout);
    assert_eq!(broken.status.code(), Some(1), "{text}");
    assert!(
        text.contains("VIOLATIONS") && text.contains("sku 1001"),
        "{text}"
    );
}

//! Support for the storefront's browser tests: Debian's chromium and `playwright-core` (from
//! `package.json`), and running the Node test files under `tests/browser/` against a live edge.
//!
//! Nothing is skipped quietly: without chromium or playwright-core the tests fail with a message
//! saying to run `scripts/toolchain/setup.sh`.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use crate::process::repo_root;

/// The chromium the tests drive (`FLASHGATE_CHROMIUM` overrides `/usr/bin/chromium`), or a panic
/// that says how to get it.
pub fn chromium_path() -> PathBuf {
    let path: PathBuf = std::env::var_os("FLASHGATE_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/usr/bin/chromium".into());
    assert!(
        path.exists(),
        "chromium is not installed ({} is missing): run scripts/toolchain/setup.sh \
         (it installs Debian's `chromium` through scripts/toolchain/browser.sh)",
        path.display()
    );
    path
}

/// Asserts that `playwright-core` is installed in the repository's `node_modules`.
pub fn assert_playwright_installed() {
    let package = repo_root().join("node_modules/playwright-core/package.json");
    assert!(
        package.exists(),
        "playwright-core is not installed ({} is missing): run scripts/toolchain/setup.sh",
        package.display()
    );
}

/// Where the browser tests write their screenshots (`tests/artifacts/`, git-ignored).
pub fn artifacts_dir() -> PathBuf {
    let dir = repo_root().join("tests/artifacts");
    std::fs::create_dir_all(&dir).expect("create tests/artifacts");
    dir
}

/// Runs `node --test` over `files` (paths relative to the repository root) with `env`, the
/// chromium path and the artifacts directory set, and returns what it printed. Uses the `node`
/// on PATH (Node 20 is enough for playwright-core and the test runner).
pub fn run_node_tests(files: &[&str], env: &[(&str, String)]) -> Output {
    let chromium = chromium_path();
    assert_playwright_installed();
    let mut command = Command::new("node");
    command
        .current_dir(repo_root())
        .arg("--test")
        .arg("--test-reporter=spec")
        .args(files)
        .env("FLASHGATE_CHROMIUM", &chromium)
        .env("FLASHGATE_ARTIFACTS", artifacts_dir())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    for (name, value) in env {
        command.env(name, value);
    }
    command
        .output()
        .unwrap_or_else(|e| panic!("cannot run node ({e}): run scripts/toolchain/setup.sh"))
}

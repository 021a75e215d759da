//! The real `ewall` binary for the tests that must kill or signal the process: an admin token
//! from the CLI, and `ewall serve` with its announced addresses.

#![allow(dead_code)]

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// `ewall token create --role admin`: the token is the last word on stdout.
pub fn admin_token(config: &Path) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ewall"))
        .args(["token", "create", "--role", "admin", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "token create: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    stdout.split_whitespace().last().unwrap().to_owned()
}

/// `ewall serve`, its stderr appended to `log`; returns the child and the `addresses` it
/// announced.
pub async fn serve(config: &Path, log: &Path) -> (Child, Value) {
    // The service runs in the child; this process builds its own HTTP clients, which need a
    // TLS crypto provider installed first (reqwest is built without one).
    ewall::alert::dispatch::webhook::install_tls_provider();
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ewall"))
        .args(["serve", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("listening line within 20 s")
        .unwrap()
        .unwrap_or_else(|| {
            panic!(
                "no listening line; log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            )
        });
    let event: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(event["event"], "listening", "{line}");
    (child, event["addresses"].clone())
}

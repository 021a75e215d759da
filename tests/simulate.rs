//! `ewall simulate` against the real service, once per protocol: a short run with `--register`
//! reports every fix it sent as acknowledged and no error, the store holds every acknowledged
//! fix, and the alert stream delivers one `zone_exit` per breaching wearer. A run spread over
//! two processes merges into one summary the same way, and bad flags stop the command with the
//! reason and a non-zero exit.

mod common;

use std::path::Path;
use std::time::Duration;

use common::binary::{admin_token, serve};
use serde_json::Value;

/// Devices of each run; with the default breach share of 0.4 used here, two of them leave.
const DEVICES: u64 = 5;
const BREACHING: u64 = 2;

/// A config with every listener and the API on `127.0.0.1:0`, and otherwise the defaults (the
/// three-minute dwell of the normal level too: the simulator's track clock outlasts it).
fn write_config(dir: &Path) -> std::path::PathBuf {
    let mut text = format!(
        "data_dir = {data:?}\n\n[http]\nlisten = \"127.0.0.1:0\"\n",
        data = dir.join("data").display().to_string(),
    );
    for protocol in ["gt06", "jt808", "h02", "watch", "osmand"] {
        text.push_str(&format!(
            "\n[listeners.{protocol}]\nlisten = \"127.0.0.1:0\"\n"
        ));
    }
    text.push_str("\n[mqtt]\nembedded_listen = \"127.0.0.1:0\"\npublish_alerts = false\n");
    let path = dir.join("ewall.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `ewall simulate ARGS`: exit status, stdout and stderr.
async fn simulate(args: &[String]) -> std::process::Output {
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_ewall"))
        .arg("simulate")
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("EWALL_TOKEN")
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("simulate within 120 s")
        .unwrap()
}

/// GETs `path` of the API with `token`.
async fn get(http: &str, token: &str, path: &str) -> Value {
    let response = reqwest::Client::new()
        .get(format!("http://{http}/api/v1{path}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "GET {path}");
    response.json().await.unwrap()
}

/// Positions stored for all persons the run registered.
async fn stored_positions(http: &str, token: &str) -> u64 {
    let persons = get(http, token, "/persons").await;
    let mut total = 0;
    for person in persons["persons"].as_array().unwrap() {
        let id = person["id"].as_str().unwrap();
        let track = get(
            http,
            token,
            &format!("/persons/{id}/track?from=2000-01-01T00:00:00Z&to=2100-01-01T00:00:00Z"),
        )
        .await;
        total += track["features"].as_array().unwrap().len() as u64;
    }
    total
}

/// Starts the service, runs `extra` flags of simulate with `--register` against its listener
/// for `protocol`, checks the summary and the store, and returns the summary.
async fn registered_run(protocol: &str, extra: &[&str]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let token = admin_token(&config);
    let (mut child, addresses) = serve(&config, &dir.path().join("serve.log")).await;
    let http = addresses["http"].as_str().unwrap().to_owned();
    let listener = if protocol == "mqtt" { "mqtt" } else { protocol };
    let target = addresses[listener].as_str().unwrap().to_owned();
    let mut args: Vec<String> = [
        "--protocol",
        protocol,
        "--devices",
        &DEVICES.to_string(),
        "--rate",
        "5",
        "--duration",
        "3s",
        "--breach-share",
        "0.4",
        "--target",
        &target,
        "--register",
        "--api",
        &format!("http://{http}"),
        "--token",
        &token,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    let out = simulate(&args).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "simulate failed: {stderr}\nservice log:\n{}",
        std::fs::read_to_string(dir.path().join("serve.log")).unwrap_or_default()
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let summary: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("one JSON summary on stdout ({e}): {stdout}"));

    assert_eq!(summary["protocol"], protocol, "{summary}");
    assert_eq!(summary["devices"], DEVICES, "{summary}");
    assert_eq!(summary["connected"], DEVICES, "{summary}");
    assert_eq!(summary["errors"], serde_json::json!({}), "{summary}");
    let sent = summary["fixes_sent"].as_u64().unwrap();
    // Five a second for three seconds, per device (a JT/T 808 batch stands for several).
    assert!(sent >= DEVICES * 10, "{summary}");
    assert_eq!(summary["fixes_acked"], sent, "{summary}");
    assert!(
        summary["acked_per_second"].as_f64().unwrap() > 0.0,
        "{summary}"
    );
    let p50 = summary["ack_latency_ms"]["p50"].as_f64().unwrap();
    let max = summary["ack_latency_ms"]["max"].as_f64().unwrap();
    assert!(p50 > 0.0 && p50 <= max, "{summary}");
    assert_eq!(summary["breaching_devices"], BREACHING, "{summary}");
    assert_eq!(
        summary["alerts"]["zone_exit"], BREACHING,
        "one zone_exit per breaching wearer: {summary}"
    );
    if summary["processes"] == 1 {
        // Each alert is timed from the sending of the fix that raised it.
        let timed = &summary["fix_to_alert_ms"];
        assert_eq!(timed["alerts_timed"], BREACHING, "{summary}");
        let p50 = timed["p50"].as_f64().unwrap();
        assert!(
            p50 > 0.0 && p50 <= timed["max"].as_f64().unwrap(),
            "{summary}"
        );
    } else {
        assert!(summary["fix_to_alert_ms"].is_null(), "{summary}");
    }

    // Every acknowledged fix is in the store (a fix is acknowledged only after its commit).
    assert_eq!(stored_positions(&http, &token).await, sent, "{summary}");
    child.kill().await.unwrap();
    summary
}

#[tokio::test]
async fn gt06_wristbands_are_acknowledged_stored_and_breaches_raised() {
    registered_run("gt06", &[]).await;
}

#[tokio::test]
async fn jt808_terminals_with_blind_area_batches() {
    // Every third report a batch of four positions.
    let summary = registered_run("jt808", &["--batch-every", "3", "--batch-size", "4"]).await;
    let frames = summary["frames_sent"].as_u64().unwrap();
    let fixes = summary["fixes_sent"].as_u64().unwrap();
    assert!(fixes > frames, "batches carry several fixes: {summary}");
}

#[tokio::test]
async fn h02_trackers() {
    registered_run("h02", &[]).await;
}

#[tokio::test]
async fn watches() {
    registered_run("watch", &[]).await;
}

#[tokio::test]
async fn osmand_phones() {
    registered_run("osmand", &[]).await;
}

#[tokio::test]
async fn mqtt_gateways() {
    registered_run("mqtt", &[]).await;
}

#[tokio::test]
async fn a_run_over_two_processes_merges_into_one_summary() {
    let summary = registered_run(
        "gt06",
        &["--devices-per-process", "3", "--first-device", "100"],
    )
    .await;
    assert_eq!(summary["processes"], 2, "{summary}");
}

#[tokio::test]
async fn bad_flags_give_the_reason_and_a_non_zero_exit() {
    for (flags, expected) in [
        (&["--protocol", "gt06", "--devices", "0"][..], "--devices"),
        (&["--protocol", "teltonika"], "teltonika"),
        (&["--protocol", "gt06", "--rate", "-1"], "must be above 0"),
        (
            &["--protocol", "gt06", "--register"],
            "--register needs --api",
        ),
        (&["--protocol", "gt06", "--target", "127.0.0.1"], "--target"),
    ] {
        let args: Vec<String> = flags.iter().map(|s| s.to_string()).collect();
        let out = simulate(&args).await;
        assert!(!out.status.success(), "{flags:?} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{flags:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{flags:?}: nothing on stdout");
    }
}

//! SIGTERM under load loses no fix that was decoded before the signal.
//!
//! The real binary runs on ephemeral ports with its own data directory. Fifty GT06 wristbands
//! stream 0x12 locations, each keeping a few frames in flight and sending more as acks come
//! back; the pipeline's channels are kept tiny so that connections are holding decoded frames
//! when the signal arrives. While they stream, the process gets SIGTERM. It must exit 0 within
//! its shutdown timeout, and afterwards the SQLite file must hold:
//! - every fix that was acknowledged (a device deletes an acknowledged fix, so losing one loses
//!   it for good), and
//! - at least as many fixes as `/metrics` counted decoded just before the signal.
//!
//! Bytes the server had read but not yet decoded may be dropped (their devices never got an ack
//! and resend them), so per device the store holds the first `k` fixes it sent, in order, with
//! `acked <= k <= sent`.
//!
//! A signal that comes right after the service announces its addresses must take the same path,
//! and an API client that never finishes its request must not hold the process past the
//! shutdown timeout.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use common::binary::{admin_token, serve};
use ewall_protocol::gt06::encode;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::Child;

/// Devices streaming at once.
const DEVICES: usize = 50;
/// Frames a device sends before it waits for an ack.
const WINDOW: usize = 4;
/// Acks (over all devices) to see before the signal, so the service is busy when it arrives.
const ACKS_BEFORE_SIGNAL: usize = 400;
/// The service's `channel_capacity`: small, so that when the signal comes, connections hold
/// decoded frames that are waiting for room in the pipeline.
const CHANNEL_CAPACITY: usize = 2;
/// The service's `shutdown_timeout`.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(15);
/// Slack on top of the shutdown timeout for the process to start tearing down and exit.
const EXIT_SLACK: Duration = Duration::from_secs(5);

/// A config with every listener and the API on `127.0.0.1:0` and the data under `dir`.
fn write_config(dir: &Path) -> std::path::PathBuf {
    // The fixes carry a fixed date; a century's window keeps them plausible whenever this runs.
    let mut text = format!(
        "data_dir = {data:?}\nshutdown_timeout = \"{secs}s\"\nchannel_capacity = {CHANNEL_CAPACITY}\n\n[http]\nlisten = \"127.0.0.1:0\"\n\n[ingest]\nmax_fix_age = \"36500days\"\n",
        data = dir.join("data").display().to_string(),
        secs = SHUTDOWN_TIMEOUT.as_secs(),
    );
    for protocol in ["gt06", "jt808", "h02", "watch", "osmand"] {
        text.push_str(&format!(
            "\n[listeners.{protocol}]\nlisten = \"127.0.0.1:0\"\n"
        ));
    }
    text.push_str("\n[mqtt]\nembedded_listen = \"127.0.0.1:0\"\n");
    let path = dir.join("ewall.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Sends SIGTERM with `kill`, as a service manager would.
fn terminate(child: &Child) {
    let pid = child.id().expect("still running").to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success(), "kill -TERM {pid}");
}

/// The value of the sample `name{labels}` in Prometheus text, 0 when absent.
fn counter(metrics: &str, sample: &str) -> usize {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(sample)?.strip_prefix(' '))
        .map_or(0, |v| v.trim().parse().unwrap())
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn imei(i: usize) -> String {
    let body = format!("8647170{i:07}");
    let check = ewall::identity::luhn_check_digit(&body);
    format!("{body}{check}")
}

/// The time written into the fix with `serial`: one second per serial, so each is unique.
fn fix_time(serial: u16) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 7, 1, 0, 0, 0).unwrap() + chrono::Duration::seconds(serial.into())
}

/// Progress over all devices.
#[derive(Default)]
struct Counters {
    logged_in: AtomicUsize,
    acked: AtomicUsize,
}

/// What one device saw.
struct Outcome {
    imei: String,
    /// Fix times in the order they were sent.
    sent: Vec<DateTime<Utc>>,
    /// How many of them were acknowledged (always a prefix: acks come in order).
    acked: usize,
}

/// Logs in and streams locations, `WINDOW` in flight, until the server closes the connection
/// (or `stop` is set and everything sent has been answered).
async fn stream(
    addr: std::net::SocketAddr,
    imei: String,
    index: usize,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
) -> Outcome {
    let mut socket = TcpStream::connect(addr).await.unwrap();
    socket.set_nodelay(true).unwrap();
    socket
        .write_all(&encode::login(&imei, 1, None))
        .await
        .unwrap();
    let mut reply = [0u8; 10];
    tokio::time::timeout(Duration::from_secs(10), socket.read_exact(&mut reply))
        .await
        .expect("login ack within 10 s")
        .unwrap();
    assert_eq!(reply[..], encode::ack(0x01, 1)[..], "login of {imei}");
    counters.logged_in.fetch_add(1, Ordering::Relaxed);

    let (lat, lon) = (25.5 + index as f64 * 1e-3, 112.3);
    let mut sent = Vec::new();
    let mut acked = 0;
    let mut serial: u16 = 2;
    'stream: loop {
        while sent.len() - acked < WINDOW && !stop.load(Ordering::Relaxed) {
            let time = fix_time(serial);
            let frame = encode::location(serial, &encode::Fix::new(time, lat, lon));
            if socket.write_all(&frame).await.is_err() {
                break 'stream;
            }
            sent.push(time);
            serial += 1;
        }
        if acked == sent.len() {
            break;
        }
        match tokio::time::timeout(Duration::from_secs(30), socket.read_exact(&mut reply)).await {
            Ok(Ok(_)) => {}
            // Closed by the server (shutdown), possibly in the middle of an ack.
            Ok(Err(_)) => break,
            Err(_) => panic!("{imei}: no ack and no close within 30 s"),
        }
        let expected_serial = 2 + u16::try_from(acked).unwrap();
        assert_eq!(
            reply[..],
            encode::ack(0x12, expected_serial)[..],
            "{imei}: acks come in order"
        );
        acked += 1;
        counters.acked.fetch_add(1, Ordering::Relaxed);
    }
    Outcome { imei, sent, acked }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_loses_no_decoded_fix() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let log = dir.path().join("serve.log");
    let token = admin_token(&config);
    let (mut child, addresses) = serve(&config, &log).await;
    let http = addresses["http"].as_str().unwrap().to_owned();
    let gt06: std::net::SocketAddr = addresses["gt06"].as_str().unwrap().parse().unwrap();

    let client = reqwest::Client::new();
    let post = |path: &str, body: Value| {
        let request = client
            .post(format!("http://{http}/api/v1/{path}"))
            .bearer_auth(&token)
            .json(&body);
        async move {
            let response = request.send().await.unwrap();
            let status = response.status();
            let body: Value = response.json().await.unwrap();
            assert!(status.is_success(), "POST {status}: {body}");
            body
        }
    };
    let mut persons = std::collections::HashMap::new();
    for i in 0..DEVICES {
        let person = post(
            "persons",
            json!({"name": format!("Wearer {i}"), "level": "normal", "timezone": "Asia/Shanghai"}),
        )
        .await;
        let person_id = person["id"].as_str().unwrap().to_owned();
        post("devices", json!({"imei": imei(i), "person_id": person_id})).await;
        persons.insert(imei(i), person_id);
    }

    let counters = Arc::new(Counters::default());
    let stop = Arc::new(AtomicBool::new(false));
    let devices: Vec<_> = (0..DEVICES)
        .map(|i| tokio::spawn(stream(gt06, imei(i), i, counters.clone(), stop.clone())))
        .collect();
    let busy = async {
        while counters.logged_in.load(Ordering::Relaxed) < DEVICES
            || counters.acked.load(Ordering::Relaxed) < ACKS_BEFORE_SIGNAL
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(20), busy)
        .await
        .unwrap_or_else(|_| panic!("devices did not get going; log:\n{}", read(&log)));

    // Every frame counted here was decoded before the signal, acknowledged or not.
    let metrics = client
        .get(format!("http://{http}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let decoded_before = counter(&metrics, "ewall_frames_decoded_total{protocol=\"gt06\"}");
    // Every device had logged in; the rest were locations.
    let locations_decoded_before = decoded_before - DEVICES;

    terminate(&child);
    let status = tokio::time::timeout(SHUTDOWN_TIMEOUT + EXIT_SLACK, child.wait())
        .await
        .unwrap_or_else(|_| panic!("no exit within the shutdown timeout; log:\n{}", read(&log)))
        .unwrap();
    // Devices still waiting for an ack stop once the server is gone.
    stop.store(true, Ordering::Relaxed);
    let log_text = read(&log);
    assert!(status.success(), "exit status {status:?}; log:\n{log_text}");

    let mut outcomes = Vec::new();
    for device in devices {
        outcomes.push(
            tokio::time::timeout(Duration::from_secs(35), device)
                .await
                .expect("device task ends once the server is gone")
                .unwrap(),
        );
    }

    let store = ewall::store::open(&format!(
        "sqlite://{}",
        dir.path().join("data/ewall.db").display()
    ))
    .await
    .unwrap();
    let (mut sent, mut acked, mut stored) = (0, 0, 0);
    for outcome in &outcomes {
        let person: uuid::Uuid = persons[&outcome.imei].parse().unwrap();
        let track = store
            .track(
                person,
                Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).unwrap(),
                Utc.with_ymd_and_hms(2100, 1, 1, 0, 0, 0).unwrap(),
                100_000,
            )
            .await
            .unwrap();
        let times: Vec<DateTime<Utc>> = track.iter().map(|f| f.time).collect();
        assert!(
            times.len() >= outcome.acked,
            "{}: {} fixes acknowledged but only {} stored; log:\n{log_text}",
            outcome.imei,
            outcome.acked,
            times.len()
        );
        assert!(
            times.len() <= outcome.sent.len(),
            "{}: more stored than sent",
            outcome.imei
        );
        assert_eq!(
            times[..],
            outcome.sent[..times.len()],
            "{}: the stored fixes are the first ones sent, each once, in order",
            outcome.imei
        );
        assert!(track.iter().all(|f| f.device_id == outcome.imei));
        sent += outcome.sent.len();
        acked += outcome.acked;
        stored += times.len();
    }
    eprintln!(
        "{DEVICES} devices: {sent} fixes sent, {acked} acknowledged, {stored} stored, \
         {} never acknowledged",
        sent - acked
    );
    assert!(acked >= ACKS_BEFORE_SIGNAL);
    assert!(
        stored >= locations_decoded_before,
        "{locations_decoded_before} locations decoded before the signal, {stored} stored"
    );
    assert!(
        log_text.contains("Pipeline drained; last batch committed."),
        "the drain finished within the timeout; log:\n{log_text}"
    );
}

/// A service manager may stop the service the moment it announces itself. The signal must then
/// start the same ordered shutdown (exit 0), not kill the process with the default action.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_right_after_the_listening_line_shuts_down_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let log = dir.path().join("serve.log");
    for attempt in 1..=5 {
        let (mut child, _) = serve(&config, &log).await;
        terminate(&child);
        let status = tokio::time::timeout(SHUTDOWN_TIMEOUT + EXIT_SLACK, child.wait())
            .await
            .expect("exit within the shutdown timeout")
            .unwrap();
        assert!(
            status.success(),
            "attempt {attempt}: exit status {status:?}; log:\n{}",
            read(&log)
        );
    }
}

/// The API stops last, after the pipeline has drained; a client that sent half a request and
/// went quiet must not keep it (and the process) alive past `shutdown_timeout`.
#[tokio::test]
async fn a_half_sent_api_request_does_not_outlast_the_shutdown_timeout() {
    let timeout = Duration::from_secs(1);
    let mut service = common::Service::start_with(|c| c.shutdown_timeout = timeout).await;
    let mut client = TcpStream::connect(service.http).await.unwrap();
    // The head of a request, without the blank line that ends it.
    client
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: ewall\r\n")
        .await
        .unwrap();
    // Let the server start reading it, so the request is in progress when shutdown starts.
    // (Were it not yet read, the connection would count as idle and be closed at once.)
    tokio::time::sleep(Duration::from_millis(300)).await;
    tokio::time::timeout(timeout + EXIT_SLACK, service.stop())
        .await
        .expect("the service stops within its shutdown timeout");
}

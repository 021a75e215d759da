//! SIGKILL under load from JT/T 808 terminals and GT06 wristbands loses no acknowledged fix and
//! stores none twice; the devices resume after the restart. On SQLite and, when
//! `EWALL_TEST_PG_URL` is set, on PostgreSQL.
//!
//! The real binary runs on ephemeral ports. Twenty wristbands and twenty terminals each send
//! [`FIXES`] positions, [`WINDOW`] in flight, as devices with a blind-area buffer do. After
//! [`ACKS_BEFORE_KILL`] acknowledgements over all of them the process is killed with SIGKILL (no
//! handler runs, nothing is drained). Each device then sees its connection drop, waits for the
//! service to come back (started again on the same store, with new ports), reconnects, sends
//! again everything not acknowledged and goes on to the end. Afterwards every device's stored
//! fixes are exactly the ones it sent, each once: the acknowledged ones survived the kill, and
//! the ones committed but not acknowledged before it were resent and not stored again.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use common::binary::{admin_token, serve};
use common::pg::TestDatabase;
use ewall_protocol::gt06::encode as gt06;
use ewall_protocol::jt808::encode::{self as jt808, Edition, Location};
use ewall_protocol::jt808::framer::unescape;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::Child;
use tokio::sync::watch;

/// Devices of each protocol.
const DEVICES_PER_PROTOCOL: usize = 20;
/// Positions each device sends.
const FIXES: usize = 40;
/// Positions a device sends ahead of its acknowledgements.
const WINDOW: usize = 4;
/// Acknowledgements (over all devices) before the kill.
const ACKS_BEFORE_KILL: usize = 400;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    Gt06,
    Jt808,
}

/// A device's identity: a wristband's IMEI or a terminal's phone number.
fn device_id(kind: Kind, i: usize) -> String {
    match kind {
        Kind::Gt06 => {
            let body = format!("8647190{i:07}");
            let check = ewall::identity::luhn_check_digit(&body);
            format!("{body}{check}")
        }
        Kind::Jt808 => format!("1391{i:07}"),
    }
}

/// The time of fix `n` (0-based): one every 30 s.
fn fix_time(n: usize) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 9, 1, 2, 0, 0).unwrap() + chrono::Duration::seconds(n as i64 * 30)
}

/// Fix `n` of device `i` as a frame; its serial is `n + 2` (1 is the login).
fn location(kind: Kind, id: &str, i: usize, n: usize) -> Vec<u8> {
    let serial = u16::try_from(n + 2).unwrap();
    let (lat, lon) = (25.5 + i as f64 * 1e-3, 112.3 + n as f64 * 1e-5);
    match kind {
        Kind::Gt06 => gt06::location(serial, &gt06::Fix::new(fix_time(n), lat, lon)),
        Kind::Jt808 => jt808::location(
            id,
            Edition::V2013,
            serial,
            &Location::new(fix_time(n), lat, lon),
        ),
    }
}

/// A connection that yields the serial each acknowledgement answers.
struct Link {
    kind: Kind,
    socket: TcpStream,
    buffer: Vec<u8>,
}

impl Link {
    async fn open(kind: Kind, addr: SocketAddr, id: &str) -> Option<Link> {
        let socket = TcpStream::connect(addr).await.ok()?;
        socket.set_nodelay(true).ok()?;
        let mut link = Link {
            kind,
            socket,
            buffer: Vec::new(),
        };
        if kind == Kind::Gt06 {
            link.socket
                .write_all(&gt06::login(id, 1, None))
                .await
                .ok()?;
            assert_eq!(link.next_ack().await?, 1, "login of {id}");
        }
        Some(link)
    }

    /// The serial of the next acknowledgement; None when the connection is gone.
    async fn next_ack(&mut self) -> Option<u16> {
        loop {
            if let Some(serial) = self.take_ack() {
                return Some(serial);
            }
            let mut chunk = [0u8; 512];
            match tokio::time::timeout(Duration::from_secs(30), self.socket.read(&mut chunk)).await
            {
                Ok(Ok(0)) | Ok(Err(_)) => return None,
                Ok(Ok(n)) => self.buffer.extend_from_slice(&chunk[..n]),
                Err(_) => panic!("no acknowledgement and no close within 30 s"),
            }
        }
    }

    fn take_ack(&mut self) -> Option<u16> {
        match self.kind {
            // 78 78 05 <protocol> <serial:2> <crc:2> 0d 0a
            Kind::Gt06 => {
                if self.buffer.len() < 10 {
                    return None;
                }
                let ack: Vec<u8> = self.buffer.drain(..10).collect();
                Some(u16::from_be_bytes([ack[4], ack[5]]))
            }
            // 7e ... 7e: a 0x8001 general response whose body starts with the answered serial.
            Kind::Jt808 => {
                let end = self.buffer.iter().skip(1).position(|b| *b == 0x7e)? + 1;
                let frame: Vec<u8> = self.buffer.drain(..=end).collect();
                let raw = unescape(&frame).unwrap();
                let content = &raw[1..raw.len() - 2];
                assert_eq!(u16::from_be_bytes([content[0], content[1]]), 0x8001);
                assert_eq!(content[12 + 4], 0, "result 0");
                Some(u16::from_be_bytes([content[12], content[13]]))
            }
        }
    }
}

/// What one device saw.
struct Outcome {
    id: String,
    /// Fixes acknowledged when the process was killed.
    acked_before_kill: usize,
}

/// Sends all [`FIXES`] of device `i`, reconnecting to whatever `listeners` names after a drop,
/// until every one is acknowledged.
async fn run_device(
    kind: Kind,
    i: usize,
    mut listeners: watch::Receiver<Option<HashMap<Kind, SocketAddr>>>,
    acks: Arc<AtomicUsize>,
) -> Outcome {
    let id = device_id(kind, i);
    let mut acked = 0;
    // The kill is the only thing that drops a connection, so what was acknowledged when the
    // first one dropped was acknowledged before the kill.
    let mut acked_before_kill = None;
    while acked < FIXES {
        let addr = loop {
            let current = listeners.borrow_and_update().clone();
            if let Some(addr) = current.and_then(|l| l.get(&kind).copied()) {
                break addr;
            }
            listeners.changed().await.unwrap();
        };
        let Some(mut link) = Link::open(kind, addr, &id).await else {
            // The old process is gone and the new one not yet announced.
            acked_before_kill.get_or_insert(acked);
            listeners.changed().await.unwrap();
            continue;
        };
        // Everything not acknowledged is sent again, in order.
        let mut sent = acked;
        while acked < FIXES {
            while sent < FIXES && sent - acked < WINDOW {
                if link
                    .socket
                    .write_all(&location(kind, &id, i, sent))
                    .await
                    .is_err()
                {
                    break;
                }
                sent += 1;
            }
            let Some(serial) = link.next_ack().await else {
                acked_before_kill.get_or_insert(acked);
                break;
            };
            assert_eq!(
                usize::from(serial),
                acked + 2,
                "{id}: acknowledgements in order"
            );
            acked += 1;
            acks.fetch_add(1, Ordering::Relaxed);
        }
    }
    Outcome {
        id,
        acked_before_kill: acked_before_kill.unwrap_or(FIXES),
    }
}

/// A config with every listener and the API on `127.0.0.1:0`, data under `dir`, on `store`.
fn write_config(dir: &Path, store: Option<&str>) -> PathBuf {
    let mut text = format!(
        "data_dir = {:?}\nshutdown_timeout = \"10s\"\n\n[http]\nlisten = \"127.0.0.1:0\"\n\n[ingest]\nmax_fix_age = \"36500days\"\n\n[mqtt]\nembedded_listen = \"127.0.0.1:0\"\n",
        dir.join("data").display().to_string(),
    );
    if let Some(url) = store {
        text.push_str(&format!("\n[store]\nurl = {url:?}\npool_max = 4\n"));
    }
    for protocol in ["gt06", "jt808", "h02", "watch", "osmand"] {
        text.push_str(&format!(
            "\n[listeners.{protocol}]\nlisten = \"127.0.0.1:0\"\n"
        ));
    }
    let path = dir.join("ewall.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn listeners_of(addresses: &Value) -> HashMap<Kind, SocketAddr> {
    HashMap::from([
        (
            Kind::Gt06,
            addresses["gt06"].as_str().unwrap().parse().unwrap(),
        ),
        (
            Kind::Jt808,
            addresses["jt808"].as_str().unwrap().parse().unwrap(),
        ),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_device_load_loses_no_acknowledged_fix() {
    let dir = tempfile::tempdir().unwrap();
    sigkill_under_device_load(dir.path(), None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_device_load_loses_no_acknowledged_fix_on_postgres() {
    let Some(database) = TestDatabase::create("crash").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    sigkill_under_device_load(dir.path(), Some(&database.url)).await;
}

async fn sigkill_under_device_load(dir: &Path, store: Option<&str>) {
    let config = write_config(dir, store);
    let log = dir.join("serve.log");
    let token = admin_token(&config);
    let (mut child, addresses) = serve(&config, &log).await;
    let http = addresses["http"].as_str().unwrap().to_owned();
    let client = reqwest::Client::new();
    let mut persons = HashMap::new();
    for kind in [Kind::Gt06, Kind::Jt808] {
        for i in 0..DEVICES_PER_PROTOCOL {
            let person: Value = client
                .post(format!("http://{http}/api/v1/persons"))
                .bearer_auth(&token)
                .json(&json!({"name": "Wearer", "level": "normal", "timezone": "Asia/Shanghai"}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let id = device_id(kind, i);
            let status = client
                .post(format!("http://{http}/api/v1/devices"))
                .bearer_auth(&token)
                .json(&json!({"imei": id, "person_id": person["id"]}))
                .send()
                .await
                .unwrap()
                .status();
            assert!(status.is_success(), "{id}: {status}");
            persons.insert(id, person["id"].as_str().unwrap().to_owned());
        }
    }

    let (listeners_tx, listeners) = watch::channel(Some(listeners_of(&addresses)));
    let acks = Arc::new(AtomicUsize::new(0));
    let devices: Vec<_> = [Kind::Gt06, Kind::Jt808]
        .into_iter()
        .flat_map(|kind| (0..DEVICES_PER_PROTOCOL).map(move |i| (kind, i)))
        .map(|(kind, i)| tokio::spawn(run_device(kind, i, listeners.clone(), acks.clone())))
        .collect();
    let busy = async {
        while acks.load(Ordering::Relaxed) < ACKS_BEFORE_KILL {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), busy)
        .await
        .unwrap_or_else(|_| {
            panic!(
                "devices did not get going; log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        });

    // SIGKILL: no handler runs; acknowledgements counted from here on are after the kill.
    listeners_tx.send_replace(None);
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    let acked_at_kill = acks.load(Ordering::Relaxed);

    let (mut child, addresses) = serve(&config, &log).await;
    listeners_tx.send_replace(Some(listeners_of(&addresses)));
    let mut outcomes = Vec::new();
    for device in devices {
        outcomes.push(
            tokio::time::timeout(Duration::from_secs(120), device)
                .await
                .expect("device finishes after the restart")
                .unwrap(),
        );
    }
    let http = addresses["http"].as_str().unwrap().to_owned();
    let mut resumed = 0;
    for outcome in &outcomes {
        let track: Value = client
            .get(format!(
                "http://{http}/api/v1/persons/{}/track?from=2000-01-01T00:00:00Z&to=2100-01-01T00:00:00Z",
                persons[&outcome.id]
            ))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let times: Vec<DateTime<Utc>> = track["features"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["properties"]["time"].as_str().unwrap().parse().unwrap())
            .collect();
        let sent: Vec<DateTime<Utc>> = (0..FIXES).map(fix_time).collect();
        assert_eq!(
            times, sent,
            "{}: every fix stored exactly once ({} were acknowledged before the kill)",
            outcome.id, outcome.acked_before_kill
        );
        if outcome.acked_before_kill < FIXES {
            resumed += 1;
        }
    }
    eprintln!(
        "{} devices, {acked_at_kill} fixes acknowledged before the kill, {resumed} devices resumed after it",
        outcomes.len()
    );
    assert!(resumed > 0, "the kill came while devices were sending");
    terminate_and_wait(&mut child).await;
}

async fn terminate_and_wait(child: &mut Child) {
    let pid = child.id().expect("running").to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("exit after SIGTERM")
        .unwrap();
    assert!(status.success(), "{status:?}");
}

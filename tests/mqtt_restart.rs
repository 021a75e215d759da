//! SIGKILL in the middle of an MQTT stream loses no acknowledged position.
//!
//! The real binary runs on ephemeral ports with its own data directory.
//!
//! - Embedded broker: a gateway publishes 1,000 positions at QoS 1, 50 in flight. After 300
//!   PUBACKs the process is killed with SIGKILL (no shutdown of any kind). Every position
//!   acknowledged before the kill must be in the SQLite file. The service is started again, the
//!   gateway reconnects and publishes what was not acknowledged, and then all 1,000 are stored.
//! - External broker (Mosquitto at `EWALL_TEST_MQTT_URL`): the gateway publishes to the broker,
//!   which acknowledges on receipt; ewall, subscribed with a persistent session, is killed
//!   once some positions are stored, while the gateway goes on publishing. After a restart
//!   the broker delivers what ewall had not acknowledged and what it queued meanwhile, and all
//!   1,000 positions end up stored. Each run uses its own topic prefix and client id and
//!   removes its session from the broker at the end.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use common::binary::{admin_token, serve};
use common::gateway::{self, position, Gateway};
use rumqttc::mqttbytes::v4::Packet;
use rumqttc::mqttbytes::QoS;
use serde_json::{json, Value};
use tokio::process::Child;

const POSITIONS: usize = 1000;
const WINDOW: usize = 50;
const ACKS_BEFORE_KILL: usize = 300;

fn fix_time(i: usize) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 27, 0, 0, 0).unwrap() + chrono::Duration::seconds(i as i64)
}

/// A config with the API and the embedded endpoint on `127.0.0.1:0`, device listeners off,
/// and `mqtt` lines added.
fn write_config(dir: &Path, mqtt: &str) -> PathBuf {
    let mut text = format!(
        "data_dir = {:?}\nshutdown_timeout = \"10s\"\n\n[http]\nlisten = \"127.0.0.1:0\"\n\n[mqtt]\nembedded_listen = \"127.0.0.1:0\"\n{mqtt}\n",
        dir.join("data").display().to_string(),
    );
    for protocol in ["gt06", "jt808", "h02", "watch", "osmand"] {
        text.push_str(&format!("\n[listeners.{protocol}]\nenabled = false\n"));
    }
    let path = dir.join("ewall.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// SIGKILL: no signal handler runs, nothing is flushed or drained.
async fn kill(child: &mut Child) {
    child.start_kill().unwrap();
    child.wait().await.unwrap();
}

async fn register(http: &str, token: &str, imei: &str) {
    let client = reqwest::Client::new();
    let person: Value = client
        .post(format!("http://{http}/api/v1/persons"))
        .bearer_auth(token)
        .json(&json!({"name": "Gateway Wearer", "level": "normal", "timezone": "Asia/Shanghai"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let status = client
        .post(format!("http://{http}/api/v1/devices"))
        .bearer_auth(token)
        .json(&json!({"imei": imei, "person_id": person["id"]}))
        .send()
        .await
        .unwrap()
        .status();
    assert!(status.is_success(), "{status}");
}

fn addr(addresses: &Value, name: &str) -> std::net::SocketAddr {
    addresses[name].as_str().unwrap().parse().unwrap()
}

/// Publishes positions `from..POSITIONS` with `WINDOW` in flight; returns how many were
/// acknowledged (from `from` on, in order) before the connection closed or all were, and stops
/// early once `stop_after` acknowledgements have been seen (to let the caller kill the server).
async fn stream(
    gateway: &mut Gateway,
    topic: &str,
    from: usize,
    stop_after: Option<usize>,
) -> usize {
    let mut in_flight = std::collections::VecDeque::new();
    let mut next = from;
    let mut acked = 0;
    loop {
        while next < POSITIONS && in_flight.len() < WINDOW && stop_after.is_none_or(|n| acked < n) {
            let payload = position(fix_time(next), 25.5 + next as f64 * 1e-5, 112.36);
            let pkid = gateway.publish(topic, payload, QoS::AtLeastOnce).await;
            in_flight.push_back(pkid);
            next += 1;
        }
        if in_flight.is_empty() || stop_after.is_some_and(|n| acked >= n) {
            return acked;
        }
        match gateway.try_next_packet().await {
            Some(Packet::PubAck(ack)) => {
                assert_eq!(Some(ack.pkid), in_flight.pop_front(), "PUBACKs in order");
                acked += 1;
            }
            Some(_) => {}
            None => return acked,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_loses_no_acknowledged_position_with_the_embedded_broker() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let log = dir.path().join("ewall.log");
    let token = admin_token(&config);
    let (mut child, addresses) = serve(&config, &log).await;
    let imei = "864717009000013";
    register(addresses["http"].as_str().unwrap(), &token, imei).await;
    let topic = format!("ewall/v1/devices/{imei}/positions");

    let mut gw = Gateway::connect(addr(&addresses, "mqtt"), "gw-kill", true).await;
    let before = stream(&mut gw, &topic, 0, Some(ACKS_BEFORE_KILL)).await;
    assert_eq!(before, ACKS_BEFORE_KILL);
    // Publishes are in flight when the process dies; any PUBACK that still arrives counts.
    kill(&mut child).await;
    let mut acked = before;
    while let Some(packet) = gw.try_next_packet().await {
        if let Packet::PubAck(_) = packet {
            acked += 1;
        }
    }
    let store = gateway::read_store(&dir.path().join("data")).await;
    for i in 0..acked {
        assert_eq!(
            gateway::stored_at(&store, imei, fix_time(i)).await,
            1,
            "position {i} was acknowledged before the kill but is not stored"
        );
    }
    store.close().await;

    // Back up: the gateway resends everything not acknowledged.
    let (mut child, addresses) = serve(&config, &log).await;
    let mut gw = Gateway::connect(addr(&addresses, "mqtt"), "gw-kill", true).await;
    let after = stream(&mut gw, &topic, acked, None).await;
    assert_eq!(acked + after, POSITIONS);
    let store = gateway::read_store(&dir.path().join("data")).await;
    assert_eq!(
        gateway::stored_distinct(&store, imei).await,
        POSITIONS as i64
    );
    kill(&mut child).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_loses_nothing_the_external_broker_accepted() {
    let Some((url, broker)) = gateway::external_broker().await else {
        return;
    };
    let run = uuid::Uuid::now_v7().simple().to_string();
    let client_id = format!("ewt{}", &run[run.len() - 12..]);
    let prefix = format!("ewall-test-{run}/v1");
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!("url = {url:?}\nclient_id = {client_id:?}\ntopic_prefix = {prefix:?}\n"),
    );
    let log = dir.path().join("ewall.log");
    let token = admin_token(&config);
    let (mut child, addresses) = serve(&config, &log).await;
    assert!(
        addresses.get("mqtt").is_none(),
        "no embedded endpoint: {addresses}"
    );
    let imei = "864717009000021";
    register(addresses["http"].as_str().unwrap(), &token, imei).await;
    let topic = format!("{prefix}/devices/{imei}/positions");
    let store_dir = dir.path().join("data");

    let mut gw = Gateway::connect(broker, &format!("g{client_id}"), true).await;
    // From the first stored position on, the broker keeps everything for ewall's session.
    let store = gateway::read_store(&store_dir).await;
    gateway::await_subscription(&mut gw, &topic, &store, imei, fix_time(0)).await;

    // The broker acknowledges each publish on receipt; ewall is killed once 200 are stored,
    // while the gateway goes on publishing.
    let mut killed = false;
    let mut sent = 1;
    while sent < POSITIONS {
        let end = (sent + WINDOW).min(POSITIONS);
        for i in sent..end {
            gw.publish(
                &topic,
                position(fix_time(i), 25.5, 112.36),
                QoS::AtLeastOnce,
            )
            .await;
        }
        for _ in sent..end {
            gw.next_puback().await;
        }
        sent = end;
        if !killed && gateway::stored_distinct(&store, imei).await >= 200 {
            kill(&mut child).await;
            killed = true;
        }
    }
    assert!(
        killed,
        "ewall stored fewer than 200 positions while 1,000 were published"
    );
    let at_kill = gateway::stored_distinct(&store, imei).await;
    assert!(
        at_kill < POSITIONS as i64,
        "the kill came too late to test anything"
    );

    let (mut child, _) = serve(&config, &log).await;
    let mut all = false;
    for _ in 0..300 {
        if gateway::stored_distinct(&store, imei).await == POSITIONS as i64 {
            all = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stored = gateway::stored_distinct(&store, imei).await;
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    // Leave nothing behind on the broker: a clean session with the same id removes ewall's.
    Gateway::connect(broker, &client_id, true).await;
    assert!(
        all,
        "{stored} of {POSITIONS} positions stored after the restart ({at_kill} at the kill)"
    );
}

//! Downlink commands to devices behind MQTT gateways: a command queued while the device was
//! never heard goes out on `{prefix}/devices/{imei}/commands` when its first position arrives,
//! a live one at once; the gateway's answer on `.../commands/reply` acknowledges or fails it; an
//! unanswered one expires; a device silent past `mqtt.gateway_idle_timeout` is offline again
//! and its commands wait. On the embedded broker, and on the real Mosquitto when
//! `EWALL_TEST_MQTT_URL` is set.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use common::gateway::{self, next_publish, position, subscriber, Gateway};
use common::{eventually, Service};
use reqwest::Method;
use serde_json::{json, Value};
use tokio::sync::mpsc;

const IMEI: &str = "864717003283581";

async fn command(service: &Service, body: Value) -> Value {
    let (status, command) = service
        .call(
            Method::POST,
            &format!("/api/v1/devices/{IMEI}/commands"),
            Some(body),
        )
        .await;
    assert_eq!(status, 201, "{command}");
    command
}

async fn wait_for(service: &Service, id: &Value, status: &str) -> Value {
    let id = id.as_str().unwrap().to_owned();
    eventually(|| async {
        let c = service
            .get(&format!("/api/v1/devices/{IMEI}/commands/{id}"))
            .await;
        (c["status"] == status).then_some(c)
    })
    .await
}

/// The next command published for the device, as JSON.
async fn next_command(inbox: &mut mpsc::Receiver<rumqttc::Publish>, prefix: &str) -> Value {
    let publish = next_publish(inbox).await;
    assert_eq!(publish.topic, format!("{prefix}/devices/{IMEI}/commands"));
    assert_eq!(publish.qos, rumqttc::QoS::AtLeastOnce);
    serde_json::from_slice(&publish.payload).unwrap()
}

/// The whole round trip through the broker at `broker`, under `prefix`.
async fn round_trips(service: &Service, broker: SocketAddr, prefix: &str, id: &str) {
    service.person_with_device(IMEI, &[]).await;
    let mut inbox = subscriber(
        broker,
        &format!("i{id}"),
        &format!("{prefix}/devices/+/commands"),
    )
    .await;
    let mut errors = subscriber(
        broker,
        &format!("e{id}"),
        &format!("{prefix}/devices/+/errors"),
    )
    .await;
    let mut gw = Gateway::connect(broker, &format!("g{id}"), true).await;
    let replies = format!("{prefix}/devices/{IMEI}/commands/reply");

    // Never heard: the command waits.
    let queued = command(service, json!({"type": "locate_now"})).await;
    assert_eq!(queued["status"], "pending");
    // The gateway publishes the device's position: the device is reachable, the command goes.
    let positions = format!("{prefix}/devices/{IMEI}/positions");
    let time = Utc.with_ymd_and_hms(2026, 11, 30, 9, 0, 0).unwrap();
    if prefix == "ewall/v1" {
        gw.publish_acked(&positions, position(time, 25.5, 112.36))
            .await;
    } else {
        let store = gateway::read_store(&service.data_dir()).await;
        gateway::await_subscription(&mut gw, &positions, &store, IMEI, time).await;
    }
    let sent = next_command(&mut inbox, prefix).await;
    assert_eq!(sent["type"], "locate_now");
    let tag = sent["tag"].as_u64().unwrap();
    let on_record = wait_for(service, &queued["id"], "sent").await;
    assert_eq!(on_record["protocol"], "mqtt");
    let device = service.get(&format!("/api/v1/devices/{IMEI}")).await;
    assert_eq!(device["protocol"], "json");
    gw.publish_acked(
        &replies,
        json!({"tag": tag, "accepted": true, "text": "position sent"}).to_string(),
    )
    .await;
    let done = wait_for(service, &queued["id"], "acknowledged").await;
    assert_eq!(done["reply"], "position sent");

    // Reachable now: a message goes at once; the gateway says the device refused it.
    let message = command(service, json!({"type": "message", "text": "请回家"})).await;
    let sent = next_command(&mut inbox, prefix).await;
    assert_eq!(
        sent,
        json!({"tag": sent["tag"], "type": "message", "text": "请回家"})
    );
    gw.publish_acked(
        &replies,
        json!({"tag": sent["tag"], "accepted": false, "text": "display busy"}).to_string(),
    )
    .await;
    let failed = wait_for(service, &message["id"], "failed").await;
    assert_eq!(failed["error"], "display busy");

    // A payload that is no answer is refused on the errors topic; the command it meant waits.
    let interval = command(
        service,
        json!({"type": "set_interval", "interval_s": 60, "expires_in": 2}),
    )
    .await;
    let sent = next_command(&mut inbox, prefix).await;
    assert_eq!(sent["interval_s"], 60);
    gw.publish_acked(&replies, &b"{\"ok\": true}"[..]).await;
    let problem = next_publish(&mut errors).await;
    assert_eq!(problem.topic, format!("{prefix}/devices/{IMEI}/errors"));
    let problem: Value = serde_json::from_slice(&problem.payload).unwrap();
    assert_eq!(
        problem["type"], "urn:ewall:problem:invalid-command-reply",
        "{problem}"
    );
    // Unanswered, it expires, and an answer after that changes nothing.
    let expired = wait_for(service, &interval["id"], "expired").await;
    assert!(expired["sent_at"].is_string());
    gw.publish_acked(
        &replies,
        json!({"tag": sent["tag"], "accepted": true}).to_string(),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let still = service
        .get(&format!(
            "/api/v1/devices/{IMEI}/commands/{}",
            interval["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(still["status"], "expired");
    service
        .expect_metric(
            "ewall_frames_rejected_total{protocol=\"json\",reason=\"invalid_reply\"}",
            1,
        )
        .await;
}

#[tokio::test]
async fn commands_round_trip_through_the_embedded_broker() {
    let mut service = Service::start().await;
    let broker = service.listener("mqtt");
    round_trips(&service, broker, "ewall/v1", "embedded").await;
    service.stop().await;
}

#[tokio::test]
async fn commands_round_trip_through_an_external_broker() {
    let Some((url, broker)) = gateway::external_broker().await else {
        return;
    };
    let run = uuid::Uuid::now_v7().simple().to_string();
    let id = format!("ewc{}", &run[run.len() - 12..]);
    let prefix = format!("ewall-test-{run}/v1");
    let mut service = Service::start_with(|config| {
        config.mqtt.url = url.clone();
        config.mqtt.client_id = id.clone();
        config.mqtt.topic_prefix = prefix.clone();
    })
    .await;
    round_trips(&service, broker, &prefix, &id).await;
    service.stop().await;
    // Leave nothing behind on the broker: a clean session with the same id removes ewall's.
    Gateway::connect(broker, &id, true).await;
}

#[tokio::test]
async fn a_gateway_device_silent_past_the_idle_timeout_is_offline_and_its_commands_wait() {
    let mut service =
        Service::start_with(|c| c.mqtt.gateway_idle_timeout = Duration::from_millis(400)).await;
    service.person_with_device(IMEI, &[]).await;
    let broker = service.listener("mqtt");
    let mut inbox = subscriber(broker, "idle-inbox", "ewall/v1/devices/+/commands").await;
    let mut gw = Gateway::connect(broker, "idle-gw", true).await;
    let positions = format!("ewall/v1/devices/{IMEI}/positions");
    let time = Utc.with_ymd_and_hms(2026, 11, 30, 9, 0, 0).unwrap();
    gw.publish_acked(&positions, position(time, 25.5, 112.36))
        .await;
    let live = command(&service, json!({"type": "vibrate"})).await;
    assert_eq!(
        next_command(&mut inbox, "ewall/v1").await["type"],
        "vibrate"
    );
    wait_for(&service, &live["id"], "sent").await;

    // Silent for longer than the timeout: offline. A command waits, unsent, and expires.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let waiting = command(&service, json!({"type": "locate_now", "expires_in": 1})).await;
    let expired = wait_for(&service, &waiting["id"], "expired").await;
    assert!(expired["sent_at"].is_null(), "{expired}");
    // Heard again: what is still pending goes out.
    let next = command(&service, json!({"type": "locate_now"})).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        service
            .get(&format!(
                "/api/v1/devices/{IMEI}/commands/{}",
                next["id"].as_str().unwrap()
            ))
            .await["status"],
        "pending"
    );
    gw.publish_acked(
        &positions,
        position(time + chrono::Duration::seconds(60), 25.5, 112.36),
    )
    .await;
    assert_eq!(
        next_command(&mut inbox, "ewall/v1").await["type"],
        "locate_now"
    );
    wait_for(&service, &next["id"], "sent").await;
    service.stop().await;
}

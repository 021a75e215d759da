//! MQTT ingest through the embedded broker: positions published at QoS 1 are acknowledged only
//! once they are in the store; bad payloads are answered on the device's errors topic and
//! acknowledged without affecting anyone else; every other client publishes and subscribes
//! through the same broker as usual; commands reach a gateway and its replies come back.

mod common;

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use common::gateway::{self, next_publish, position, subscriber, Gateway};
use common::Service;
use rumqttc::mqttbytes::v4::{ConnAck, ConnectReturnCode, Packet};
use rumqttc::mqttbytes::QoS;
use serde_json::Value;

/// Positions the gateway publishes in the acknowledgement test.
const POSITIONS: usize = 1000;
/// Publishes the gateway keeps in flight.
const WINDOW: usize = 50;

fn fix_time(i: usize) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 26, 0, 0, 0).unwrap() + chrono::Duration::seconds(i as i64)
}

fn topic(imei: &str) -> String {
    format!("ewall/v1/devices/{imei}/positions")
}

fn mqtt_addr(service: &Service) -> std::net::SocketAddr {
    service.listener("mqtt")
}

#[tokio::test]
async fn every_puback_arrives_after_its_position_is_stored() {
    let service = Service::start().await;
    let imei = "864717003283581";
    service.person_with_device(imei, &[]).await;
    let store = gateway::read_store(&service.data_dir()).await;
    let mut gateway = Gateway::connect(mqtt_addr(&service), "gw-ack", true).await;
    let mut in_flight = std::collections::VecDeque::new();
    let mut next = 0;
    let mut acked = 0;
    while acked < POSITIONS {
        while next < POSITIONS && in_flight.len() < WINDOW {
            let payload = position(fix_time(next), 25.5 + next as f64 * 1e-5, 112.36);
            let pkid = gateway
                .publish(&topic(imei), payload, QoS::AtLeastOnce)
                .await;
            in_flight.push_back((pkid, next));
            next += 1;
        }
        let pkid = gateway.next_puback().await;
        let (expected, index) = in_flight.pop_front().unwrap();
        assert_eq!(pkid, expected, "PUBACKs come in publish order");
        assert_eq!(
            gateway::stored_at(&store, imei, fix_time(index)).await,
            1,
            "position {index} was acknowledged before it was stored"
        );
        acked += 1;
    }
    assert_eq!(gateway::stored(&store, imei).await, POSITIONS as i64);
    service
        .expect_metric(
            "ewall_fixes_received_total{protocol=\"json\"}",
            POSITIONS as u64,
        )
        .await;
}

#[tokio::test]
async fn an_array_is_stored_whole_and_gcj02_is_stored_as_wgs84() {
    let service = Service::start().await;
    let imei = "864717003283623";
    let person = service.person_with_device(imei, &[]).await;
    let mut gateway = Gateway::connect(mqtt_addr(&service), "gw-array", true).await;
    let payload = format!(
        r#"[{}, {{"time": "2026-11-26T00:00:05Z", "lat": 25.515, "lon": 112.3625, "crs": "gcj02", "alarm": "sos", "battery_pct": 40}}, {}]"#,
        position(fix_time(0), 25.5, 112.36),
        position(fix_time(10), 25.6, 112.36),
    );
    gateway.publish_acked(&topic(imei), payload).await;
    let track = service.track_of(&person).await;
    assert_eq!(track.len(), 3, "{track:?}");
    let coordinates: Vec<(f64, f64)> = track
        .iter()
        .map(|f| {
            let c = &f["geometry"]["coordinates"];
            (c[0].as_f64().unwrap(), c[1].as_f64().unwrap())
        })
        .collect();
    // GCJ-02 is offset from WGS-84 by a few hundred metres here, south-west in WGS-84 terms.
    let (lon, lat) = coordinates[1];
    assert!(
        (112.3625 - lon) > 0.003 && (112.3625 - lon) < 0.007,
        "{lon}"
    );
    assert!(
        (25.515 - lat).abs() < 0.005 && (25.515 - lat).abs() > 0.0001,
        "{lat}"
    );
    assert_eq!(coordinates[0], (112.36, 25.5));
    let alerts = service.alerts_of(&person).await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["kind"], "sos");
    assert_eq!(alerts[0]["position"]["lon"].as_f64().unwrap(), lon);
}

#[tokio::test]
async fn bad_payloads_are_answered_on_the_errors_topic_acknowledged_and_block_no_one() {
    let service = Service::start().await;
    let good = "864717003283631";
    let bad = "864717003283649";
    service.person_with_device(good, &[]).await;
    service.person_with_device(bad, &[]).await;
    let store = gateway::read_store(&service.data_dir()).await;
    let mut errors = subscriber(
        mqtt_addr(&service),
        "errors-watch",
        "ewall/v1/devices/+/errors",
    )
    .await;
    let mut gateway = Gateway::connect(mqtt_addr(&service), "gw-bad", true).await;
    let one_megabyte = format!(
        "[{}]",
        vec![position(fix_time(0), 25.5, 112.36); 20_000].join(",")
    );
    assert!(one_megabyte.len() > 1_000_000);
    let cases: Vec<(&str, String, &str, &str)> = vec![
        (
            bad,
            "not json at all".into(),
            "urn:ewall:problem:not-json",
            "not_json",
        ),
        (
            bad,
            r#"{"time": "2026-11-26T00:00:00Z", "lat": "25.5", "lon": 112.3}"#.into(),
            "urn:ewall:problem:invalid-position",
            "invalid_field",
        ),
        (
            bad,
            r#"{"time": "2026-11-26T00:00:00Z", "lat": NaN, "lon": 112.3}"#.into(),
            "urn:ewall:problem:not-json",
            "not_json",
        ),
        (
            bad,
            r#"{"time": "2026-11-26T00:00:00Z", "lat": 91, "lon": 112.3}"#.into(),
            "urn:ewall:problem:invalid-position",
            "invalid_field",
        ),
        (
            bad,
            one_megabyte,
            "urn:ewall:problem:too-large",
            "too_large",
        ),
        (
            "999999999999999",
            position(fix_time(0), 25.5, 112.36),
            "urn:ewall:problem:unknown-device",
            "unknown_device",
        ),
    ];
    for (i, (imei, payload, kind, _)) in cases.iter().enumerate() {
        // Each refusal is acknowledged (not redelivered), and a good device's position sent
        // right after it is stored as usual.
        gateway.publish_acked(&topic(imei), payload.clone()).await;
        let problem = next_publish(&mut errors).await;
        assert_eq!(problem.topic, format!("ewall/v1/devices/{imei}/errors"));
        let body: Value = serde_json::from_slice(&problem.payload).unwrap();
        assert_eq!(body["type"], *kind, "{body}");
        assert_eq!(body["instance"], topic(imei), "{body}");
        assert!(
            body["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{body}"
        );
        assert!(body["status"].as_u64().is_some(), "{body}");
        gateway
            .publish_acked(&topic(good), position(fix_time(i), 25.5, 112.36))
            .await;
    }
    assert_eq!(gateway::stored(&store, bad).await, 0);
    assert_eq!(gateway::stored(&store, good).await, cases.len() as i64);
    service
        .expect_metric(
            "ewall_frames_rejected_total{protocol=\"json\",reason=\"not_json\"}",
            2,
        )
        .await;
    service
        .expect_metric(
            "ewall_frames_rejected_total{protocol=\"json\",reason=\"invalid_field\"}",
            2,
        )
        .await;
    service
        .expect_metric(
            "ewall_frames_rejected_total{protocol=\"json\",reason=\"too_large\"}",
            1,
        )
        .await;
    service
        .expect_metric(
            "ewall_connections_refused_total{protocol=\"json\",reason=\"unknown_device\"}",
            1,
        )
        .await;
}

#[tokio::test]
async fn other_clients_publish_and_subscribe_through_the_embedded_broker() {
    let service = Service::start().await;
    let addr = mqtt_addr(&service);
    let mut alerts = subscriber(addr, "operator-console", "ewall/v1/alerts/+").await;
    let mut publisher = Gateway::connect(addr, "alert-publisher", true).await;
    // A QoS 1 publish on any other topic is the broker's: relayed, and acknowledged by it.
    publisher
        .publish_acked("ewall/v1/alerts/person-1", &b"{\"kind\":\"sos\"}"[..])
        .await;
    let alert = next_publish(&mut alerts).await;
    assert_eq!(alert.topic, "ewall/v1/alerts/person-1");
    assert_eq!(&alert.payload[..], b"{\"kind\":\"sos\"}");
    // Pings go through as usual.
    publisher.send_raw(&[0xc0, 0x00]).await;
    assert_eq!(publisher.next_packet().await, Packet::PingResp);
}

#[tokio::test]
async fn commands_reach_the_gateway_and_its_replies_come_back() {
    let service = Service::start().await;
    let addr = mqtt_addr(&service);
    let imei = "864717003283656";
    let commands = service.running().mqtt_commands.clone().expect("mqtt on");
    let mut replies = commands.replies();
    let mut inbox = subscriber(addr, "gw-commands", "ewall/v1/devices/+/commands").await;
    commands
        .send(imei, &b"{\"type\":\"vibrate\"}"[..])
        .await
        .unwrap();
    let command = next_publish(&mut inbox).await;
    assert_eq!(command.topic, format!("ewall/v1/devices/{imei}/commands"));
    assert_eq!(command.qos, QoS::AtLeastOnce);
    let mut gateway = Gateway::connect(addr, "gw-replies", true).await;
    gateway
        .publish_acked(
            &format!("ewall/v1/devices/{imei}/commands/reply"),
            &b"{\"ok\":true}"[..],
        )
        .await;
    let reply = tokio::time::timeout(Duration::from_secs(10), replies.recv())
        .await
        .expect("reply within 10 s")
        .unwrap();
    assert_eq!(reply.imei, imei);
    assert_eq!(&reply.payload[..], b"{\"ok\":true}");
}

#[tokio::test]
async fn an_mqtt_5_client_is_refused_with_a_clear_return_code() {
    let service = Service::start().await;
    let mut stream = tokio::net::TcpStream::connect(mqtt_addr(&service))
        .await
        .unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // CONNECT, protocol "MQTT" level 5, clean start, keep-alive 30, no properties, id "v5".
    let connect = [
        0x10, 0x0f, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, 0x02, 0x00, 0x1e, 0x00, 0x00, 0x02,
        b'v', b'5',
    ];
    stream.write_all(&connect).await.unwrap();
    let mut reply = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut reply))
        .await
        .unwrap()
        .unwrap();
    let expected = {
        let mut out = bytes::BytesMut::new();
        Packet::ConnAck(ConnAck::new(
            ConnectReturnCode::RefusedProtocolVersion,
            false,
        ))
        .write(&mut out, 16)
        .unwrap();
        out.to_vec()
    };
    assert_eq!(reply.to_vec(), expected);
}

#[tokio::test]
async fn a_qos0_position_is_stored_without_an_acknowledgement() {
    let service = Service::start().await;
    let imei = "864717003283664";
    service.person_with_device(imei, &[]).await;
    let store = gateway::read_store(&service.data_dir()).await;
    let mut gateway = Gateway::connect(mqtt_addr(&service), "gw-qos0", true).await;
    gateway
        .publish(
            &topic(imei),
            position(fix_time(0), 25.5, 112.36),
            QoS::AtMostOnce,
        )
        .await;
    common::eventually(|| async { (gateway::stored(&store, imei).await == 1).then_some(()) }).await;
    assert!(
        gateway.quiet_for(Duration::from_millis(300)).await,
        "no ack for QoS 0"
    );
}

#[tokio::test]
async fn a_gateway_that_only_publishes_positions_outlives_its_keep_alive() {
    let service = Service::start().await;
    let imei = "864717003283672";
    service.person_with_device(imei, &[]).await;
    // The broker drops a client silent for 1.5 keep-alives (3 s here); the broker never sees
    // positions publishes, so the endpoint must show it the client is alive.
    let mut gateway = Gateway::connect_with(mqtt_addr(&service), "gw-alive", true, 2).await;
    for i in 0..12 {
        gateway
            .publish_acked(&topic(imei), position(fix_time(i), 25.5, 112.36))
            .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Still connected to the broker: a publish it must acknowledge itself is acknowledged.
    gateway
        .publish_acked("ewall/v1/gateways/gw-alive/status", &b"up"[..])
        .await;
}

#[tokio::test]
async fn through_an_external_broker_positions_are_stored_and_refusals_answered() {
    let Some((url, broker)) = gateway::external_broker().await else {
        return;
    };
    let run = uuid::Uuid::now_v7().simple().to_string();
    let client_id = format!("ewi{}", &run[run.len() - 12..]);
    let prefix = format!("ewall-test-{run}/v1");
    let service = Service::start_with(|config| {
        config.mqtt.url = url.clone();
        config.mqtt.client_id = client_id.clone();
        config.mqtt.topic_prefix = prefix.clone();
    })
    .await;
    let imei = "864717003283680";
    service.person_with_device(imei, &[]).await;
    let store = gateway::read_store(&service.data_dir()).await;
    let positions = format!("{prefix}/devices/{imei}/positions");
    let mut errors = subscriber(
        broker,
        &format!("e{client_id}"),
        &format!("{prefix}/devices/+/errors"),
    )
    .await;
    let mut gw = Gateway::connect(broker, &format!("g{client_id}"), true).await;
    gateway::await_subscription(&mut gw, &positions, &store, imei, fix_time(0)).await;
    for batch in (1..POSITIONS).step_by(WINDOW) {
        let end = (batch + WINDOW).min(POSITIONS);
        for i in batch..end {
            gw.publish(
                &positions,
                position(fix_time(i), 25.5, 112.36),
                QoS::AtLeastOnce,
            )
            .await;
        }
        for _ in batch..end {
            gw.next_puback().await;
        }
    }
    gw.publish_acked(
        &positions,
        &br#"{"time": "2026-11-26T00:00:00Z", "lat": 91, "lon": 1}"#[..],
    )
    .await;
    let problem = next_publish(&mut errors).await;
    assert_eq!(problem.topic, format!("{prefix}/devices/{imei}/errors"));
    let body: Value = serde_json::from_slice(&problem.payload).unwrap();
    assert_eq!(body["type"], "urn:ewall:problem:invalid-position", "{body}");
    common::eventually(|| async {
        (gateway::stored_distinct(&store, imei).await == POSITIONS as i64).then_some(())
    })
    .await;
    let mut service = service;
    service.stop().await;
    // Leave nothing behind on the broker: a clean session with the same id removes ewall's.
    Gateway::connect(broker, &client_id, true).await;
}

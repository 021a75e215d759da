//! Broadcasts over real sockets: a text sent to every strict person reaches a connected JT/T 808
//! terminal at once and one that was offline when it connects, both answer it, a GT06 wristband
//! (which has no display) is counted as failed with the reason, a person at another level gets
//! nothing, and a broadcast to a zone's persons expires unsent while their device is away.

mod common;

use chrono::{Duration, SecondsFormat, Utc};
use common::{eventually, Device, Service};
use ewall_protocol::gt06::encode as gt06;
use ewall_protocol::jt808::encode::{self as jt808, Edition};
use ewall_protocol::jt808::framer::unescape;
use reqwest::Method;
use serde_json::{json, Value};

const WRISTBAND: &str = "864717003283581";
const ONLINE: &str = "13912345678";
const OFFLINE: &str = "13912345679";
const OTHER_LEVEL: &str = "13912345670";

/// A person at `level` with one device.
async fn person(service: &Service, level: &str, imei: &str) -> String {
    let person = service
        .post(
            "/api/v1/persons",
            json!({"name": format!("{level} {imei}"), "level": level}),
        )
        .await;
    let id = person["id"].as_str().unwrap().to_owned();
    service
        .post("/api/v1/devices", json!({"imei": imei, "person_id": id}))
        .await;
    id
}

/// Reads one JT/T 808 frame: message id, serial, body.
async fn read_jt808(device: &mut Device) -> (u16, u16, Vec<u8>) {
    let first = device.read_exact(1).await;
    assert_eq!(first, [0x7e]);
    let rest = device.read_until(&[0x7e]).await;
    let mut frame = vec![0x7e];
    frame.extend(rest);
    let raw = unescape(&frame).unwrap();
    let content = &raw[1..raw.len() - 2];
    let id = u16::from_be_bytes([content[0], content[1]]);
    let body_len = usize::from(u16::from_be_bytes([content[2], content[3]]) & 0x03ff);
    let serial = u16::from_be_bytes([content[10], content[11]]);
    (id, serial, content[12..12 + body_len].to_vec())
}

/// A terminal registers and authenticates; returns its connection.
async fn terminal(service: &Service, number: &str) -> Device {
    let mut device = Device::connect(service.listener("jt808")).await;
    device
        .send(&jt808::registration(
            number,
            Edition::V2013,
            1,
            "EWALL",
            "W1",
            "T0001",
            "",
        ))
        .await;
    let (id, _, body) = read_jt808(&mut device).await;
    assert_eq!(id, 0x8100);
    let auth = String::from_utf8(body[3..].to_vec()).unwrap();
    device
        .send(&jt808::authentication(number, Edition::V2013, 2, &auth))
        .await;
    assert_eq!(read_jt808(&mut device).await.0, 0x8001);
    device
}

/// The terminal reads a text message and answers it with success.
async fn take_message(device: &mut Device, number: &str, text_gbk: &[u8]) {
    let (id, serial, body) = read_jt808(device).await;
    assert_eq!(id, 0x8300, "a text message");
    assert_eq!(&body[1..], text_gbk);
    let mut answer = serial.to_be_bytes().to_vec();
    answer.extend_from_slice(&0x8300u16.to_be_bytes());
    answer.push(0);
    device
        .send(&jt808::frame(0x0001, number, Edition::V2013, 7, &answer))
        .await;
}

/// Waits until the broadcast's counts are `expected`; returns the broadcast.
async fn counts_become(service: &Service, id: &str, expected: Value) -> Value {
    eventually(|| async {
        let b = service.get(&format!("/api/v1/broadcasts/{id}")).await;
        (b["counts"] == expected).then_some(b)
    })
    .await
}

#[tokio::test]
async fn a_broadcast_to_a_level_reaches_each_device_over_its_protocol_and_waits_for_the_offline() {
    let mut service = Service::start().await;
    person(&service, "strict", WRISTBAND).await;
    person(&service, "strict", ONLINE).await;
    let offline_person = person(&service, "strict", OFFLINE).await;
    person(&service, "normal", OTHER_LEVEL).await;

    let mut wristband = Device::connect(service.listener("gt06")).await;
    let ack = wristband
        .exchange(&gt06::login(WRISTBAND, 1, None), 10)
        .await;
    assert_eq!(ack[3], 0x01);
    let mut online = terminal(&service, ONLINE).await;
    let _other = terminal(&service, OTHER_LEVEL).await;
    for (imei, protocol) in [
        (WRISTBAND, "gt06"),
        (ONLINE, "jt808"),
        (OTHER_LEVEL, "jt808"),
    ] {
        eventually(|| async {
            let d = service.get(&format!("/api/v1/devices/{imei}")).await;
            (d["protocol"] == protocol).then_some(())
        })
        .await;
    }

    // "请按时报到" in GBK, as the terminal reads it.
    let text = "请按时报到";
    let text_gbk = [0xc7, 0xeb, 0xb0, 0xb4, 0xca, 0xb1, 0xb1, 0xa8, 0xb5, 0xbd];
    let created = service
        .post(
            "/api/v1/broadcasts",
            json!({"text": text, "to": {"level": "strict"}}),
        )
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["to"], json!({"level": "strict"}));
    assert_eq!(created["created_by"]["label"], "tests");
    assert_eq!(created["counts"]["targeted"], 3);
    assert_eq!(created["counts"]["failed"], 1, "{created}");

    // The connected terminal gets it at once and answers.
    take_message(&mut online, ONLINE, &text_gbk).await;
    counts_become(
        &service,
        &id,
        json!({"targeted": 3, "pending": 1, "delivered": 1, "acknowledged": 1,
               "expired": 0, "failed": 1}),
    )
    .await;
    // The wristband's command failed, saying why; the normal person's device got none.
    let commands = service
        .get(&format!("/api/v1/devices/{WRISTBAND}/commands"))
        .await;
    let failed = &commands["commands"][0];
    assert_eq!(failed["status"], "failed");
    assert!(
        failed["error"].as_str().unwrap().contains("text display"),
        "{failed}"
    );
    let none = service
        .get(&format!("/api/v1/devices/{OTHER_LEVEL}/commands"))
        .await;
    assert!(none["commands"].as_array().unwrap().is_empty(), "{none}");

    // The offline terminal connects later and gets it then.
    let mut late = terminal(&service, OFFLINE).await;
    take_message(&mut late, OFFLINE, &text_gbk).await;
    let done = counts_become(
        &service,
        &id,
        json!({"targeted": 3, "pending": 0, "delivered": 2, "acknowledged": 2,
               "expired": 0, "failed": 1}),
    )
    .await;
    assert_eq!(done["text"], text);
    let listed = service.get("/api/v1/broadcasts").await;
    assert_eq!(listed["broadcasts"][0]["id"], id.as_str());

    // A broadcast to a zone reaches the persons assigned it; with their device gone it stays
    // queued until it expires, unsent.
    let zone = service
        .circle_zone("school", "exclusion", 112.36, 25.58, 200.0)
        .await;
    let (status, body) = service
        .call(
            Method::PUT,
            &format!("/api/v1/persons/{offline_person}/zones"),
            Some(json!({"zone_ids": [zone]})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    drop(late);
    eventually(|| async {
        let expires =
            (Utc::now() + Duration::seconds(1)).to_rfc3339_opts(SecondsFormat::Micros, true);
        let b = service
            .post(
                "/api/v1/broadcasts",
                json!({"text": "school zone notice", "to": {"zone_id": zone},
                       "expires_at": expires}),
            )
            .await;
        assert_eq!(b["counts"]["targeted"], 1);
        let id = b["id"].as_str().unwrap();
        let expired = eventually(|| async {
            let b = service.get(&format!("/api/v1/broadcasts/{id}")).await;
            (b["counts"]["expired"] == 1).then_some(b)
        })
        .await;
        // Until the server has seen the connection close, the message may still go out.
        (expired["counts"]["delivered"] == 0).then_some(())
    })
    .await;

    // Bad broadcasts are problems, and nothing is sent.
    let past = (Utc::now() - Duration::minutes(1)).to_rfc3339();
    let far = (Utc::now() + Duration::days(8)).to_rfc3339();
    for bad in [
        json!({"text": "  ", "to": {"level": "strict"}}),
        json!({"text": "x".repeat(501), "to": {"level": "strict"}}),
        json!({"text": "hi", "to": {"person_ids": []}}),
        json!({"text": "hi", "to": {"person_ids": [uuid::Uuid::now_v7()]}}),
        json!({"text": "hi", "to": {"zone_id": uuid::Uuid::now_v7()}}),
        json!({"text": "hi", "to": {"level": "severe"}}),
        json!({"text": "hi", "to": {"level": "strict", "zone_id": zone}}),
        json!({"text": "hi", "to": {"level": "strict"}, "expires_at": past}),
        json!({"text": "hi", "to": {"level": "strict"}, "expires_at": far}),
        json!({"text": "hi", "to": {"level": "strict"}, "expires_at": "soon"}),
    ] {
        let (status, problem) = service
            .call(Method::POST, "/api/v1/broadcasts", Some(bad.clone()))
            .await;
        assert_eq!(status, 422, "{bad}: {problem}");
    }
    let integration = service.token("integration").await;
    let (status, _) = service
        .call_as(
            &integration,
            Method::POST,
            "/api/v1/broadcasts",
            Some(json!({"text": "hi", "to": {"level": "strict"}})),
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = service
        .call(
            Method::GET,
            &format!("/api/v1/broadcasts/{}", uuid::Uuid::now_v7()),
            None,
        )
        .await;
    assert_eq!(status, 404);
    assert_eq!(
        service.get("/api/v1/broadcasts").await["broadcasts"]
            .as_array()
            .unwrap()
            .len(),
        listed["broadcasts"].as_array().unwrap().len() + count_zone_broadcasts(&service).await
    );
    service.stop().await;
}

/// How many broadcasts went to a zone (the expiry loop may have needed more than one).
async fn count_zone_broadcasts(service: &Service) -> usize {
    service.get("/api/v1/broadcasts?limit=500").await["broadcasts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["to"].get("zone_id").is_some())
        .count()
}

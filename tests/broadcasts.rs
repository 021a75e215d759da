//! Broadcasts over real sockets: a text sent to every strict person reaches a connected JT/T 808
//! terminal and a connected GT06 wristband at once, and a terminal and a wristband that were
//! offline when they connect; each answers it and is counted delivered and acknowledged. An H02
//! tracker (whose command set has no text) is counted as failed with the reason, a person at
//! another level gets nothing, and a broadcast to a zone's persons expires unsent while their
//! device is away.

mod common;

use chrono::{Duration, SecondsFormat, Utc};
use common::{eventually, Device, Service};
use ewall_protocol::gt06::command::{LANGUAGE_CHINESE, LANGUAGE_ENGLISH};
use ewall_protocol::gt06::encode as gt06;
use ewall_protocol::h02::encode as h02;
use ewall_protocol::jt808::encode::{self as jt808, Edition};
use ewall_protocol::jt808::framer::unescape;
use reqwest::Method;
use serde_json::{json, Value};

const WRISTBAND: &str = "864717003283581";
const LATE_WRISTBAND: &str = "864717003287038";
const TRACKER: &str = "4210051415";
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

/// The wristband reads an online command (0x80): its server flag, UTF-16BE text and language
/// word.
async fn read_online_command(device: &mut Device) -> (u32, String, u16) {
    let head = device.read_exact(3).await;
    assert_eq!(&head[..2], [0x78, 0x78], "a short frame");
    let mut frame = head.clone();
    frame.extend(device.read_exact(usize::from(head[2]) + 2).await);
    assert_eq!(frame[3], 0x80, "an online command: {frame:02x?}");
    let flag = u32::from_be_bytes([frame[5], frame[6], frame[7], frame[8]]);
    let end = 9 + usize::from(frame[4]) - 4;
    let units: Vec<u16> = frame[9..end]
        .chunks_exact(2)
        .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
        .collect();
    let language = u16::from_be_bytes([frame[end], frame[end + 1]]);
    assert_eq!(
        end + 2 + 2 + 2 + 2,
        frame.len(),
        "language, serial, CRC, trailer"
    );
    (flag, String::from_utf16(&units).unwrap(), language)
}

/// A 0x15 answer as GT06 firmware sends it: command length, the server flag, ASCII text, the
/// language word (English).
fn gt06_answer(flag: u32, text: &str, serial: u16) -> Vec<u8> {
    let mut content = vec![u8::try_from(4 + text.len()).unwrap()];
    content.extend_from_slice(&flag.to_be_bytes());
    content.extend_from_slice(text.as_bytes());
    content.extend_from_slice(&LANGUAGE_ENGLISH.to_be_bytes());
    gt06::frame(0x15, &content, serial)
}

/// A long-form 0x21 answer: the server flag, encoding 2 and UTF-16BE text.
fn gt06_answer_utf16(flag: u32, text: &str, serial: u16) -> Vec<u8> {
    let mut content = flag.to_be_bytes().to_vec();
    content.push(2);
    content.extend(text.encode_utf16().flat_map(u16::to_be_bytes));
    gt06::frame_long(0x21, &content, serial)
}

/// The device's newest command.
async fn last_command(service: &Service, imei: &str) -> Value {
    service
        .get(&format!("/api/v1/devices/{imei}/commands"))
        .await["commands"][0]
        .clone()
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
    person(&service, "strict", LATE_WRISTBAND).await;
    person(&service, "strict", ONLINE).await;
    let offline_person = person(&service, "strict", OFFLINE).await;
    person(&service, "strict", TRACKER).await;
    person(&service, "normal", OTHER_LEVEL).await;

    let mut wristband = Device::connect(service.listener("gt06")).await;
    let ack = wristband
        .exchange(&gt06::login(WRISTBAND, 1, None), 10)
        .await;
    assert_eq!(ack[3], 0x01);
    let mut online = terminal(&service, ONLINE).await;
    let _other = terminal(&service, OTHER_LEVEL).await;
    let mut tracker = Device::connect(service.listener("h02")).await;
    let report = h02::Report::new(Utc::now(), 25.58, 112.36);
    tracker.send(&h02::text_v1(TRACKER, &report)).await;
    tracker.read_until(b"#").await;
    for (imei, protocol) in [
        (WRISTBAND, "gt06"),
        (ONLINE, "jt808"),
        (OTHER_LEVEL, "jt808"),
        (TRACKER, "h02"),
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
    assert_eq!(created["counts"]["targeted"], 5);
    assert_eq!(created["counts"]["failed"], 1, "{created}");

    // The connected terminal and wristband get it at once and answer.
    take_message(&mut online, ONLINE, &text_gbk).await;
    let (flag, shown, language) = read_online_command(&mut wristband).await;
    assert_eq!(shown, text);
    assert_eq!(language, LANGUAGE_CHINESE);
    let ack = wristband
        .exchange(&gt06_answer(flag, "Message received", 2), 10)
        .await;
    assert_eq!(ack[3], 0x15, "the answer is acknowledged as usual");
    counts_become(
        &service,
        &id,
        json!({"targeted": 5, "pending": 2, "delivered": 2, "acknowledged": 2,
               "expired": 0, "failed": 1}),
    )
    .await;
    let answered = last_command(&service, WRISTBAND).await;
    assert_eq!(answered["status"], "acknowledged");
    assert_eq!(answered["reply"], "Message received");
    // The tracker's command failed, saying why; the normal person's device got none.
    let failed = last_command(&service, TRACKER).await;
    assert_eq!(failed["status"], "failed");
    assert!(
        failed["error"].as_str().unwrap().contains("no text"),
        "{failed}"
    );
    let none = service
        .get(&format!("/api/v1/devices/{OTHER_LEVEL}/commands"))
        .await;
    assert!(none["commands"].as_array().unwrap().is_empty(), "{none}");

    // The offline terminal and wristband connect later and get it then; the wristband answers
    // in a long-form text.
    let mut late = terminal(&service, OFFLINE).await;
    take_message(&mut late, OFFLINE, &text_gbk).await;
    let mut late_wristband = Device::connect(service.listener("gt06")).await;
    let ack = late_wristband
        .exchange(&gt06::login(LATE_WRISTBAND, 1, None), 10)
        .await;
    assert_eq!(ack[3], 0x01);
    let (flag, shown, _) = read_online_command(&mut late_wristband).await;
    assert_eq!(shown, text);
    late_wristband
        .send(&gt06_answer_utf16(flag, "已收到", 2))
        .await;
    let done = counts_become(
        &service,
        &id,
        json!({"targeted": 5, "pending": 0, "delivered": 4, "acknowledged": 4,
               "expired": 0, "failed": 1}),
    )
    .await;
    assert_eq!(done["text"], text);
    assert_eq!(
        last_command(&service, LATE_WRISTBAND).await["reply"],
        "已收到"
    );
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

//! JT/T 808 terminals over TCP: registration, authentication and reports are each answered
//! with the right reply and result 0, and a blind-area batch stores every position with its
//! own time.

mod common;

use chrono::{TimeZone, Utc};
use common::{Device, Service};
use ewall_protocol::jt808::encode::{self, Edition, Location};
use ewall_protocol::jt808::framer::unescape;

const TERMINAL: &str = "13912345678";

/// Reads one 0x7e-delimited reply and returns (message id, body) after un-escaping.
async fn read_reply(device: &mut Device) -> (u16, Vec<u8>) {
    let first = device.read_exact(1).await;
    assert_eq!(first, [0x7e]);
    let rest = device.read_until(&[0x7e]).await;
    let mut frame = vec![0x7e];
    frame.extend(rest);
    let raw = unescape(&frame).unwrap();
    let content = &raw[1..raw.len() - 2];
    let id = u16::from_be_bytes([content[0], content[1]]);
    let body_len = usize::from(u16::from_be_bytes([content[2], content[3]]) & 0x03ff);
    // 2013 header: id, properties, 6-byte terminal number, serial.
    (id, content[12..12 + body_len].to_vec())
}

/// Asserts a 0x8001 general response to (`serial`, `msg_id`) with result 0.
fn assert_ok(reply: &(u16, Vec<u8>), serial: u16, msg_id: u16) {
    assert_eq!(
        reply.0, 0x8001,
        "general response expected, got {:#06x}",
        reply.0
    );
    let body = &reply.1;
    assert_eq!(u16::from_be_bytes([body[0], body[1]]), serial);
    assert_eq!(u16::from_be_bytes([body[2], body[3]]), msg_id);
    assert_eq!(body[4], 0, "result 0 (success)");
}

#[tokio::test]
async fn registration_authentication_reports_and_a_batch() {
    let mut service = Service::start().await;
    let person = service.person_with_device(TERMINAL, &[]).await;
    let mut device = Device::connect(service.listener("jt808")).await;
    let edition = Edition::V2013;

    device
        .send(&encode::registration(
            TERMINAL, edition, 1, "EWALL", "W1", "T0001", "",
        ))
        .await;
    let (id, body) = read_reply(&mut device).await;
    assert_eq!(id, 0x8100);
    assert_eq!(
        u16::from_be_bytes([body[0], body[1]]),
        1,
        "echoes the registration serial"
    );
    assert_eq!(body[2], 0, "registration result 0");
    let auth_code = String::from_utf8(body[3..].to_vec()).unwrap();
    assert!(!auth_code.is_empty());

    device
        .send(&encode::authentication(TERMINAL, edition, 2, &auth_code))
        .await;
    assert_ok(&read_reply(&mut device).await, 2, 0x0102);
    device.send(&encode::heartbeat(TERMINAL, edition, 3)).await;
    assert_ok(&read_reply(&mut device).await, 3, 0x0002);

    let time = Utc.with_ymd_and_hms(2026, 5, 4, 3, 2, 1).unwrap();
    let report = Location::new(time, 25.583_111, 112.361_222);
    device
        .send(&encode::location(TERMINAL, edition, 4, &report))
        .await;
    assert_ok(&read_reply(&mut device).await, 4, 0x0200);

    let backlog: Vec<Location> = (0..5)
        .map(|i| {
            Location::new(
                time - chrono::Duration::minutes(10 - i),
                25.58 + i as f64 * 0.001,
                112.36,
            )
        })
        .collect();
    device
        .send(&encode::location_batch(
            TERMINAL, edition, 5, true, &backlog,
        ))
        .await;
    assert_ok(&read_reply(&mut device).await, 5, 0x0704);

    let track = service.track_of(&person).await;
    assert_eq!(track.len(), 6, "one report and five batch positions");
    let times: Vec<&str> = track
        .iter()
        .map(|f| f["properties"]["time"].as_str().unwrap())
        .collect();
    assert_eq!(
        times[0], "2026-05-04T02:52:01Z",
        "each batch position keeps its own time"
    );
    assert_eq!(times[5], "2026-05-04T03:02:01Z");
    let last = &track[5]["geometry"]["coordinates"];
    assert!((last[0].as_f64().unwrap() - 112.361_222).abs() < 1e-9);
    assert!((last[1].as_f64().unwrap() - 25.583_111).abs() < 1e-9);
    assert!(track[..5]
        .iter()
        .all(|f| f["properties"]["archived"] == true));
    service.stop().await;
}

//! Bad input on the device listeners is counted and contained: garbage is skipped, an oversized
//! frame or an idle connection closes only its own connection, the connection cap closes only the
//! connection over it, and a GT06 frame with a wrong CRC is flagged (or, on a strict listener,
//! refused). In every case the devices that behave keep being answered and stored.

mod common;

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use common::{eventually, Device, Service};
use ewall_protocol::jt808::framer::unescape;
use ewall_protocol::{gt06, h02, jt808, watch};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Bytes that hold no frame start of any stream protocol (no `78 78`, `79 79`, `7e`, `(`, `*`,
/// `$`, `[`) and do not begin with a byte a framer skips silently (CR, LF, blank) or reads as a
/// record (`X` for H02).
const GARBAGE: &[u8] = b"\x01\x02\x03GARBAGE\xfe\xff";

/// The stream protocols, each with a device that speaks it well.
#[derive(Debug, Clone, Copy)]
enum Proto {
    Gt06,
    Jt808,
    H02,
    Watch,
}

impl Proto {
    const ALL: [Proto; 4] = [Proto::Gt06, Proto::Jt808, Proto::H02, Proto::Watch];

    fn name(self) -> &'static str {
        match self {
            Proto::Gt06 => "gt06",
            Proto::Jt808 => "jt808",
            Proto::H02 => "h02",
            Proto::Watch => "watch",
        }
    }

    /// The identifier of device `n` in this protocol's own format.
    fn device_id(self, n: u32) -> String {
        match self {
            Proto::Gt06 => {
                let body = format!("864717003{n:05}");
                format!("{body}{}", ewall::identity::luhn_check_digit(&body))
            }
            Proto::Jt808 => format!("139123{n:05}"),
            Proto::H02 => format!("42100{n:05}"),
            Proto::Watch => format!("88000{n:05}"),
        }
    }

    /// What a device sends before it reports positions (GT06 logs in; the others put their
    /// identity in every frame).
    fn opening(self, id: &str) -> Vec<u8> {
        match self {
            Proto::Gt06 => gt06::encode::login(id, 1, None),
            _ => Vec::new(),
        }
    }

    /// Reads and checks the reply to [`Proto::opening`].
    async fn expect_opening_reply(self, device: &mut Device) {
        if let Proto::Gt06 = self {
            assert_eq!(device.read_exact(10).await, gt06::encode::ack(0x01, 1));
        }
    }

    /// Position report number `seq` (1, 2, ...), each with its own time.
    fn position(self, id: &str, seq: u16) -> Vec<u8> {
        let time = fix_time(seq);
        let (lat, lon) = (25.5 + f64::from(seq) * 1e-3, 112.36);
        match self {
            Proto::Gt06 => gt06::encode::location(seq + 1, &gt06::encode::Fix::new(time, lat, lon)),
            Proto::Jt808 => jt808::encode::location(
                id,
                jt808::encode::Edition::V2013,
                seq,
                &jt808::encode::Location::new(time, lat, lon),
            ),
            Proto::H02 => h02::encode::text_v1(id, &h02::encode::Report::new(time, lat, lon)),
            Proto::Watch => watch::encode::al(id, time, true, lat, lon, 0.0, 0.0, 80, 0),
        }
    }

    /// Reads the acknowledgement of [`Proto::position`] `seq` and checks it answers that frame.
    async fn expect_ack(self, device: &mut Device, id: &str, seq: u16) {
        match self {
            Proto::Gt06 => {
                assert_eq!(
                    device.read_exact(10).await,
                    gt06::encode::ack(0x12, seq + 1),
                    "gt06 ack of position {seq}"
                );
            }
            Proto::Jt808 => {
                let (msg_id, body) = read_jt808_reply(device).await;
                assert_eq!(msg_id, 0x8001, "jt808 general response");
                assert_eq!(
                    u16::from_be_bytes([body[0], body[1]]),
                    seq,
                    "answers serial"
                );
                assert_eq!(u16::from_be_bytes([body[2], body[3]]), 0x0200);
                assert_eq!(body[4], 0, "result 0");
            }
            Proto::H02 => {
                let reply = String::from_utf8(device.read_until(b"#").await).unwrap();
                assert!(reply.starts_with(&format!("*HQ,{id},V4,V1,")), "{reply}");
            }
            Proto::Watch => {
                assert_eq!(
                    device.read_until(b"]").await,
                    format!("[3G*{id}*0002*AL]").as_bytes()
                );
            }
        }
    }

    /// A frame too large for the listener's default maximum, cut so that the listener can tell
    /// as soon as it has read it.
    fn oversized(self) -> Vec<u8> {
        match self {
            // Long form, length field 0xffff: 65,541 bytes declared, 1,024 allowed.
            Proto::Gt06 => fixture("gt06/oversize.hex"),
            // An opening flag and 3 KiB without a closing one (maximum about 2 KiB).
            Proto::Jt808 => {
                let mut frame = vec![0x7e];
                frame.extend(std::iter::repeat_n(b'0', 3 * 1024));
                frame
            }
            // A text report that never ends: 2 KiB and more without `#` (maximum 1 KiB).
            Proto::H02 => {
                let mut frame = b"*HQ,4210099999,V1,".to_vec();
                frame.extend(std::iter::repeat_n(b'1', 2 * 1024 + 100));
                frame
            }
            // A frame whose `]` never comes: over 64 KiB (the maximum).
            Proto::Watch => {
                let mut frame = b"[3G*8800099999*ffff*UD,".to_vec();
                frame.extend(std::iter::repeat_n(b'1', 64 * 1024 + 100));
                frame
            }
        }
    }
}

/// The bytes of a fixture frame under `fixtures/frames/` (`#` comment lines dropped).
fn fixture(path: &str) -> Vec<u8> {
    let text = std::fs::read_to_string(format!(
        "{}/fixtures/frames/{path}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let hex: String = text
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .collect();
    common::hex(&hex)
}

fn fix_time(seq: u16) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 8, 1, 6, 0, 0).unwrap()
        + chrono::Duration::seconds(10 * i64::from(seq))
}

/// Reads one `7e`-delimited JT/T 808 reply; returns its message id and body.
async fn read_jt808_reply(device: &mut Device) -> (u16, Vec<u8>) {
    assert_eq!(device.read_exact(1).await, [0x7e]);
    let mut frame = vec![0x7e];
    frame.extend(device.read_until(&[0x7e]).await);
    let raw = unescape(&frame).unwrap();
    let content = &raw[1..raw.len() - 2];
    let id = u16::from_be_bytes([content[0], content[1]]);
    let body_len = usize::from(u16::from_be_bytes([content[2], content[3]]) & 0x03ff);
    // 2013 header: id, properties, 6-byte terminal number, serial.
    (id, content[12..12 + body_len].to_vec())
}

fn rejected(protocol: &str, reason: &str) -> String {
    format!("ewall_frames_rejected_total{{protocol=\"{protocol}\",reason=\"{reason}\"}}")
}

fn refused(protocol: &str, reason: &str) -> String {
    format!("ewall_connections_refused_total{{protocol=\"{protocol}\",reason=\"{reason}\"}}")
}

/// Fix times of a person's stored track, oldest first.
async fn stored_times(service: &Service, person: &str) -> Vec<String> {
    service
        .track_of(person)
        .await
        .iter()
        .map(|f| f["properties"]["time"].as_str().unwrap().to_owned())
        .collect()
}

fn rfc3339(seqs: &[u16]) -> Vec<String> {
    seqs.iter()
        .map(|&s| fix_time(s).to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .collect()
}

/// A registered device of `proto`, connected and past its opening exchange.
async fn connected(service: &Service, proto: Proto, n: u32) -> (Device, String, String) {
    let id = proto.device_id(n);
    let person = service.person_with_device(&id, &[]).await;
    let mut device = Device::connect(service.listener(proto.name())).await;
    let opening = proto.opening(&id);
    if !opening.is_empty() {
        device.send(&opening).await;
        proto.expect_opening_reply(&mut device).await;
    }
    (device, id, person)
}

#[tokio::test]
async fn garbage_before_and_between_frames_is_skipped_and_counted() {
    let mut service = Service::start().await;
    for proto in Proto::ALL {
        let id = proto.device_id(1);
        let person = service.person_with_device(&id, &[]).await;
        let mut device = Device::connect(service.listener(proto.name())).await;

        // Garbage before the device's first frame, in the same write.
        let opening = proto.opening(&id);
        let first = if opening.is_empty() {
            proto.position(&id, 1)
        } else {
            opening
        };
        device.send(&[GARBAGE, &first].concat()).await;
        let mut runs = 1;
        if let Proto::Gt06 = proto {
            proto.expect_opening_reply(&mut device).await;
            // After the login, garbage before the first position as well.
            device
                .send(&[GARBAGE, &proto.position(&id, 1)].concat())
                .await;
            runs += 1;
        }
        proto.expect_ack(&mut device, &id, 1).await;

        // Garbage between two frames of one write.
        device
            .send(&[&proto.position(&id, 2), GARBAGE, &proto.position(&id, 3)].concat())
            .await;
        runs += 1;
        proto.expect_ack(&mut device, &id, 2).await;
        proto.expect_ack(&mut device, &id, 3).await;

        assert_eq!(
            stored_times(&service, &person).await,
            rfc3339(&[1, 2, 3]),
            "{proto:?}: every frame after garbage is stored"
        );
        service
            .expect_metric(&rejected(proto.name(), "garbage"), runs)
            .await;
    }
    service.stop().await;
}

#[tokio::test]
async fn an_oversized_frame_closes_its_connection_only() {
    let mut service = Service::start().await;
    for proto in Proto::ALL {
        let (mut good, id, person) = connected(&service, proto, 2).await;
        good.send(&proto.position(&id, 1)).await;
        proto.expect_ack(&mut good, &id, 1).await;

        let mut bad = Device::connect(service.listener(proto.name())).await;
        // The listener may close while the rest is still being written.
        let _ = bad.stream.write_all(&proto.oversized()).await;
        assert!(
            bad.closed_by_server().await,
            "{proto:?}: oversized frame closes the connection"
        );
        service
            .expect_metric(&rejected(proto.name(), "oversize"), 1)
            .await;

        // The device connected alongside it is still served.
        good.send(&proto.position(&id, 2)).await;
        proto.expect_ack(&mut good, &id, 2).await;
        assert_eq!(stored_times(&service, &person).await, rfc3339(&[1, 2]));
    }
    service.stop().await;
}

/// A 0x12 location whose CRC is wrong (its last two bytes before `0D 0A` flipped).
fn location_with_bad_crc(serial: u16, seq: u16) -> Vec<u8> {
    let time = fix_time(seq);
    let mut frame = gt06::encode::location(serial, &gt06::encode::Fix::new(time, 25.5, 112.36));
    let crc_at = frame.len() - 4;
    frame[crc_at] ^= 0xff;
    frame[crc_at + 1] ^= 0xff;
    frame
}

#[tokio::test]
async fn a_gt06_frame_with_a_bad_crc_is_stored_and_flagged_by_default() {
    let mut service = Service::start().await;
    let (mut device, id, person) = connected(&service, Proto::Gt06, 3).await;

    device.send(&location_with_bad_crc(2, 1)).await;
    assert_eq!(
        device.read_exact(10).await,
        gt06::encode::ack(0x12, 2),
        "accepted and acknowledged"
    );
    device.send(&Proto::Gt06.position(&id, 2)).await;
    Proto::Gt06.expect_ack(&mut device, &id, 2).await;

    let track = service.track_of(&person).await;
    assert_eq!(track.len(), 2);
    assert_eq!(track[0]["properties"]["time"], rfc3339(&[1])[0]);
    assert_eq!(track[0]["properties"]["integrity_mismatch"], true);
    assert_eq!(track[1]["properties"]["integrity_mismatch"], false);
    service
        .expect_metric(
            "ewall_frames_integrity_mismatch_total{protocol=\"gt06\"}",
            1,
        )
        .await;
    assert_eq!(service.metric(&rejected("gt06", "checksum")).await, 0);
    service.stop().await;
}

#[tokio::test]
async fn a_strict_gt06_listener_refuses_a_frame_with_a_bad_crc() {
    let mut service = Service::start_with(|c| c.listeners.gt06.strict_checksum = true).await;
    let (mut device, id, person) = connected(&service, Proto::Gt06, 4).await;

    device.send(&location_with_bad_crc(2, 1)).await;
    device.send(&Proto::Gt06.position(&id, 2)).await;
    // The first reply is the good frame's: the bad one got none, and the connection stayed open.
    Proto::Gt06.expect_ack(&mut device, &id, 2).await;

    assert_eq!(stored_times(&service, &person).await, rfc3339(&[2]));
    service
        .expect_metric(&rejected("gt06", "checksum"), 1)
        .await;
    service.stop().await;
}

#[tokio::test]
async fn an_idle_connection_is_closed_and_counted() {
    let mut service = Service::start_with(|c| {
        c.listeners.gt06.idle_timeout = Duration::from_millis(300);
    })
    .await;
    let (mut device, _, _) = connected(&service, Proto::Gt06, 5).await;
    assert!(
        device.closed_by_server().await,
        "closed after the idle timeout"
    );
    service.expect_metric(&refused("gt06", "idle"), 1).await;
    expect_gauge_zero(&service, "gt06").await;

    // The listener still takes new devices.
    let (mut again, id, person) = connected(&service, Proto::Gt06, 6).await;
    again.send(&Proto::Gt06.position(&id, 1)).await;
    Proto::Gt06.expect_ack(&mut again, &id, 1).await;
    assert_eq!(stored_times(&service, &person).await, rfc3339(&[1]));
    service.stop().await;
}

#[tokio::test]
async fn garbage_alone_does_not_keep_a_connection_alive() {
    let mut service = Service::start_with(|c| {
        c.listeners.jt808.idle_timeout = Duration::from_millis(400);
    })
    .await;
    let (mut device, _, _) = connected(&service, Proto::Jt808, 7).await;
    // A peer that sends only frames too short to decode, every 100 ms, is still idle: it is
    // closed about 400 ms after its last good frame, not when it stops sending.
    let mut closed_after = None;
    for round in 1..=30 {
        let _ = device.stream.write_all(&[0x7e, 0x01, 0x7e]).await;
        let mut buf = [0u8; 16];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_millis(100), device.stream.read(&mut buf)).await
        {
            closed_after = Some(round);
            break;
        }
    }
    let rounds = closed_after.expect("closed while the junk kept coming");
    assert!(rounds < 20, "closed only after {rounds} rounds of junk");
    service.expect_metric(&refused("jt808", "idle"), 1).await;
    service.stop().await;
}

/// Waits until no connection of `protocol` is counted open.
async fn expect_gauge_zero(service: &Service, protocol: &str) {
    let sample = format!("ewall_connections_open{{protocol=\"{protocol}\"}}");
    eventually(|| async { (service.metric(&sample).await == 0).then_some(()) }).await;
}

#[tokio::test]
async fn the_connection_cap_closes_the_connection_over_it() {
    let mut service = Service::start_with(|c| c.listeners.gt06.max_connections = 3).await;
    let mut devices = Vec::new();
    for n in 10..13 {
        devices.push(connected(&service, Proto::Gt06, n).await);
    }

    let mut fourth = Device::connect(service.listener("gt06")).await;
    assert!(
        fourth.closed_by_server().await,
        "the 4th connection is closed"
    );
    service
        .expect_metric(&refused("gt06", "connection_cap"), 1)
        .await;

    for (device, id, person) in &mut devices {
        device.send(&Proto::Gt06.position(id, 1)).await;
        Proto::Gt06.expect_ack(device, id, 1).await;
        assert_eq!(stored_times(&service, person).await, rfc3339(&[1]));
    }

    // A closed connection frees its place.
    drop(devices.pop());
    let id = Proto::Gt06.device_id(13);
    let person = service.person_with_device(&id, &[]).await;
    let mut replacement = eventually(|| async {
        let mut device = Device::connect(service.listener("gt06")).await;
        device.send(&Proto::Gt06.opening(&id)).await;
        let mut reply = [0u8; 10];
        let read = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::io::AsyncReadExt::read_exact(&mut device.stream, &mut reply),
        )
        .await;
        matches!(read, Ok(Ok(_))).then_some(device)
    })
    .await;
    replacement.send(&Proto::Gt06.position(&id, 1)).await;
    Proto::Gt06.expect_ack(&mut replacement, &id, 1).await;
    assert_eq!(stored_times(&service, &person).await, rfc3339(&[1]));
    service.stop().await;
}

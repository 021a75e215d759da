//! Session tests: golden frames from `fixtures/frames/jt808/` with the messages we expect, and
//! framing (split reads, several frames per read, garbage, truncation, oversize, strictness,
//! sub-packaging, replies).

use bytes::BytesMut;
use chrono::{TimeZone, Utc};

use super::encode::{self, Edition, Location};
use super::*;
use crate::message::{Alarm, MessageKind};
use crate::test_support::{
    self, assert_partial_frame_waits, items, one_frame, same_items_in_reads,
};

/// A golden frame: `fixtures/frames/jt808/<name>.hex`, its hex lines joined as one byte stream.
fn fixture(name: &str) -> Vec<u8> {
    test_support::fixture("jt808", name)
}

const FIXTURES: [&str; 15] = [
    "location",
    "registration",
    "registration_2019",
    "authentication",
    "heartbeat",
    "alarm_sos",
    "alarm_tamper",
    "alarm_low_battery_removal",
    "batch_blind",
    "batch_2019",
    "vendor_location_blind",
    "escaped",
    "time_request",
    "location_2019",
    "batch_packets",
];

fn session() -> Jt808Session {
    Jt808Session::new(&SessionOptions::default())
}

/// Items with replies blanked where they carry the server time.
fn comparable(items: Vec<Item>) -> Vec<Item> {
    items
        .into_iter()
        .map(|i| match i {
            Item::Frame(mut d)
                if d.messages
                    .iter()
                    .any(|m| m.kind == MessageKind::TimeRequest) =>
            {
                d.reply = d.reply.map(|r| r[..r.len().min(13)].to_vec());
                Item::Frame(d)
            }
            other => other,
        })
        .collect()
}

/// The one decoded frame of a golden fixture, read whole.
fn decode_one(name: &str) -> Decoded {
    one_frame(items(&mut session(), &fixture(name), usize::MAX))
}

#[test]
fn every_fixture_gives_the_same_items_whole_and_byte_at_a_time() {
    for name in FIXTURES {
        let bytes = fixture(name);
        let whole = comparable(items(&mut session(), &bytes, usize::MAX));
        let single = comparable(items(&mut session(), &bytes, 1));
        assert_eq!(whole, single, "{name}");
        assert!(!whole.is_empty(), "{name}");
        for item in &whole {
            let Item::Frame(d) = item else {
                panic!("{name}: rejected {item:?}");
            };
            assert_eq!(d.integrity, Integrity::Verified, "{name}");
        }
    }
}

#[test]
fn golden_location() {
    let d = decode_one("location");
    let m = &d.messages[0];
    assert_eq!(m.kind, MessageKind::Position);
    assert_eq!(m.device_id.as_deref(), Some("13833501744"));
    let p = m.position.as_ref().unwrap();
    assert!(p.valid);
    assert_eq!((p.lat, p.lon), (22.6426, 114.032984));
    assert_eq!(p.altitude_m, Some(128.0));
    assert_eq!(p.course, Some(8.0));
    // 2015-08-18 07:21:21 at GMT+8.
    assert_eq!(
        p.time,
        Utc.with_ymd_and_hms(2015, 8, 17, 23, 21, 21).unwrap()
    );
    assert_eq!(m.status.odometer_m, Some(75_700.0));
    // 0x8001 answering serial 0x0019, ID 0x0200, result 0; our serial 0.
    let reply = d.reply.unwrap();
    assert_eq!(
        reply,
        [
            0x7e,
            0x80,
            0x01,
            0x00,
            0x05, // general response, 5-byte body
            0x01,
            0x38,
            0x33,
            0x50,
            0x17,
            0x44, // terminal echoed
            0x00,
            0x00, // our serial
            0x00,
            0x19,
            0x02,
            0x00,
            0x00,                       // answered serial, ID, result
            header::xor(&reply[1..18]), // check code
            0x7e,
        ]
    );
}

#[test]
fn golden_registration_gets_0x8100_with_the_auth_code() {
    let d = decode_one("registration");
    assert_eq!(d.messages[0].kind, MessageKind::Registration);
    let id = d.messages[0].device_id.clone().unwrap();
    assert_eq!(id, "13345678906");
    let reply = d.reply.unwrap();
    assert_eq!(&reply[1..3], &[0x81, 0x00]);
    assert_eq!(usize::from(reply[4]), 3 + id.len()); // serial, result, code
    assert_eq!(&reply[13..15], &[0x00, 0x0f]); // answered serial
    assert_eq!(reply[15], 0); // result OK
    assert_eq!(&reply[16..16 + id.len()], id.as_bytes());
}

#[test]
fn golden_2019_registration_is_answered_with_a_2019_header() {
    let d = decode_one("registration_2019");
    assert_eq!(d.messages[0].device_id.as_deref(), Some("866496077582164"));
    let reply = d.reply.unwrap();
    assert_eq!(reply[3] & 0x40, 0x40); // 2019 bit
    assert_eq!(reply[5], 0x01); // version echoed
    assert_eq!(
        &reply[6..16],
        &[0x00, 0x00, 0x08, 0x66, 0x49, 0x60, 0x77, 0x58, 0x21, 0x64]
    );
}

#[test]
fn golden_alarms() {
    let sos = decode_one("alarm_sos");
    assert_eq!(sos.messages[0].kind, MessageKind::Alarm);
    assert_eq!(sos.messages[0].alarms, vec![Alarm::Sos]);
    let tamper = decode_one("alarm_tamper");
    assert_eq!(tamper.messages[0].alarms, vec![Alarm::Tamper]);
    assert_eq!(tamper.messages[0].status.battery_pct, Some(64));
    let low = decode_one("alarm_low_battery_removal");
    assert_eq!(
        low.messages[0].alarms,
        vec![Alarm::LowBattery, Alarm::Removal]
    );
    assert_eq!(low.messages[0].status.voltage, Some(3.6));
}

#[test]
fn golden_batches() {
    let blind = decode_one("batch_blind");
    assert_eq!(blind.messages.len(), 1);
    let p = blind.messages[0].position.as_ref().unwrap();
    assert!(p.archived);
    assert_eq!(p.satellites, Some(14));
    assert_eq!(
        blind.messages[0].alarms,
        vec![Alarm::PowerCut, Alarm::LowBattery]
    );
    let plain = decode_one("batch_2019");
    assert!(!plain.messages[0].position.as_ref().unwrap().archived);
    assert_eq!(plain.reply.unwrap()[3] & 0x40, 0x40);
}

#[test]
fn golden_vendor_and_escaped_frames() {
    let v = decode_one("vendor_location_blind");
    let p = v.messages[0].position.as_ref().unwrap();
    assert!(p.archived);
    assert!(v.reply.unwrap().starts_with(&[0x7e, 0x44, 0x01]));
    let e = decode_one("escaped");
    assert_eq!(e.messages[0].device_id.as_deref(), Some("19171590437"));
    assert!(e.messages[0].position.is_some());
}

fn time_request_frame() -> Vec<u8> {
    encode::frame(msg::TIME_REQUEST, "012076463279", Edition::V2013, 5, &[])
}

fn location_2019_frame() -> Vec<u8> {
    let mut loc = Location::new(
        Utc.with_ymd_and_hms(2026, 3, 1, 4, 5, 6).unwrap(),
        31.230416,
        121.473701,
    );
    loc.speed_kmh = 12.5;
    loc.course = 270;
    loc.altitude_m = 12;
    loc.extra = vec![(0x31, vec![9]), (0x30, vec![20])];
    encode::location(
        "864717003283581",
        Edition::V2019 { version: 1 },
        0x7e7d,
        &loc,
    )
}

fn batch_packets_frames() -> Vec<Vec<u8>> {
    let reports: Vec<Location> = (0..3)
        .map(|i| {
            Location::new(
                Utc.with_ymd_and_hms(2026, 3, 1, 4, i, 0).unwrap(),
                22.5 + f64::from(i) / 1000.0,
                114.0,
            )
        })
        .collect();
    let body = encode::location_batch_body(true, &reports);
    encode::packets(msg::BATCH, "012076463279", Edition::V2013, 100, &body, 40)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn encoder_built_fixtures_match_the_encoder() {
    assert_eq!(fixture("time_request"), time_request_frame());
    assert_eq!(fixture("location_2019"), location_2019_frame());
    assert_eq!(fixture("batch_packets"), batch_packets_frames().concat());
    // Regenerate with: cargo test -p ewall-protocol print_encoder_fixtures -- --nocapture
}

#[test]
fn print_encoder_fixtures() {
    println!("time_request {}", hex(&time_request_frame()));
    println!("location_2019 {}", hex(&location_2019_frame()));
    for f in batch_packets_frames() {
        println!("batch_packets {}", hex(&f));
    }
}

#[test]
fn time_request_gets_0x8109_with_the_utc_time() {
    let mut s = session();
    let now = Utc.with_ymd_and_hms(2026, 11, 26, 22, 31, 53).unwrap();
    let Item::Frame(d) = s.decode_frame_at(&time_request_frame(), now) else {
        panic!()
    };
    assert_eq!(d.messages[0].kind, MessageKind::TimeRequest);
    let reply = d.reply.unwrap();
    assert_eq!(&reply[1..5], &[0x81, 0x09, 0x00, 0x08]);
    assert_eq!(
        &reply[13..21],
        &[0x07, 0xea, 11, 26, 22, 31, 53, 0x00] // 2026-11-26 22:31:53, result 0
    );
}

#[test]
fn the_2019_location_round_trips_through_escaping() {
    let frame = location_2019_frame();
    // Serial 0x7e7d is escaped on the wire.
    assert!(frame.windows(4).any(|w| w == [0x7d, 0x02, 0x7d, 0x01]));
    let d = one_frame(items(&mut session(), &frame, 3));
    let m = &d.messages[0];
    assert_eq!(m.device_id.as_deref(), Some("864717003283581"));
    let p = m.position.as_ref().unwrap();
    assert_eq!((p.lat, p.lon), (31.230416, 121.473701));
    assert_eq!(p.time, Utc.with_ymd_and_hms(2026, 3, 1, 4, 5, 6).unwrap());
    assert_eq!(p.speed_kmh, Some(12.5));
    assert_eq!(p.satellites, Some(9));
}

#[test]
fn sub_packages_are_reassembled_and_each_packet_is_acknowledged() {
    let frames = batch_packets_frames();
    assert!(frames.len() >= 3);
    let got = items(&mut session(), &frames.concat(), 7);
    assert_eq!(got.len(), frames.len());
    for (i, item) in got.iter().enumerate() {
        let Item::Frame(d) = item else { panic!() };
        // Every packet is answered with 0x8001 for its own serial.
        let reply = d.reply.as_ref().unwrap();
        assert_eq!(&reply[1..3], &[0x80, 0x01]);
        assert_eq!(&reply[13..15], &(100 + i as u16).to_be_bytes());
        if i + 1 < frames.len() {
            assert!(d.messages.is_empty());
        } else {
            assert_eq!(d.messages.len(), 3);
            let minutes: Vec<u32> = d
                .messages
                .iter()
                .map(|m| {
                    let p = m.position.as_ref().unwrap();
                    assert!(p.archived);
                    chrono::Timelike::minute(&p.time)
                })
                .collect();
            assert_eq!(minutes, [0, 1, 2]);
        }
    }
}

#[test]
fn several_frames_in_one_read_and_split_reads() {
    let mut stream = fixture("heartbeat");
    stream.extend_from_slice(&fixture("location"));
    stream.extend_from_slice(&fixture("alarm_sos"));
    let whole = same_items_in_reads(session, &stream, &[1, 2, 5, 16, 60]);
    assert_eq!(whole.len(), 3);
}

#[test]
fn partial_frame_asks_for_more_without_consuming() {
    let frame = fixture("location");
    assert_partial_frame_waits(&mut session(), &frame, frame.len() - 1);
}

#[test]
fn garbage_before_a_frame_is_skipped_and_counted() {
    let mut stream = b"\x24\x24GARBAGE".to_vec();
    stream.extend_from_slice(&fixture("heartbeat"));
    let got = items(&mut session(), &stream, usize::MAX);
    assert_eq!(got[0], Item::Rejected(DecodeError::Garbage { skipped: 9 }));
    assert!(matches!(got[1], Item::Frame(_)));
    assert_eq!(got.len(), 2);
}

#[test]
fn a_truncated_frame_is_rejected_and_the_next_frame_still_decodes() {
    let loc = fixture("location");
    // The location loses its tail; its opening flag now pairs with the next frame's.
    let mut stream = loc[..20].to_vec();
    stream.extend_from_slice(&fixture("heartbeat"));
    stream.extend_from_slice(&loc);
    let got = items(&mut session(), &stream, usize::MAX);
    assert!(matches!(got[0], Item::Rejected(_)), "{got:?}");
    // The flag kept from the rejected frame opened the heartbeat: it is not lost.
    let frames: Vec<&Decoded> = got
        .iter()
        .filter_map(|i| match i {
            Item::Frame(d) => Some(d),
            Item::Rejected(_) => None,
        })
        .collect();
    assert_eq!(frames.len(), 2, "{got:?}");
    assert_eq!(frames[0].messages[0].kind, MessageKind::Heartbeat);
    assert_eq!(frames[1].messages[0].kind, MessageKind::Position);
}

#[test]
fn oversize_is_a_frame_error() {
    let options = SessionOptions {
        max_frame_len: Some(32),
        ..SessionOptions::default()
    };
    let mut s = Jt808Session::new(&options);
    let mut buf = BytesMut::from(&fixture("location")[..]);
    assert!(matches!(
        s.decode(&mut buf),
        Err(FrameError::Oversize { max: 32, .. })
    ));
    // Never buffers past the limit: 40 bytes without a closing flag already fail.
    let mut s = Jt808Session::new(&options);
    let mut buf = BytesMut::from(&[0x7e; 1][..]);
    buf.extend_from_slice(&[0x11; 40]);
    assert!(s.decode(&mut buf).is_err());
}

fn corrupt_check_code(frame: &[u8]) -> Vec<u8> {
    let mut f = frame.to_vec();
    let at = f.len() - 2;
    f[at] ^= 0x01;
    if matches!(f[at], 0x7e | 0x7d) {
        f[at] ^= 0x03;
    }
    f
}

#[test]
fn checksum_mismatch_is_flagged_or_rejected_when_strict() {
    let bad = corrupt_check_code(&fixture("heartbeat"));
    let d = one_frame(items(&mut session(), &bad, usize::MAX));
    assert!(matches!(
        d.integrity,
        Integrity::Mismatch(Mismatch::Checksum { .. })
    ));
    assert!(d.reply.is_some());
    let strict = SessionOptions {
        strict_checksum: true,
        ..SessionOptions::default()
    };
    let got = items(&mut Jt808Session::new(&strict), &bad, usize::MAX);
    assert!(matches!(
        got[0],
        Item::Rejected(DecodeError::BadChecksum { .. })
    ));
}

#[test]
fn body_length_mismatch_is_flagged_or_rejected_when_strict() {
    // A heartbeat that declares a 2-byte body but carries none (check code recomputed).
    let content = [
        0x00, 0x02, // heartbeat
        0x00, 0x02, // declares 2 bytes
        0x01, 0x20, 0x76, 0x46, 0x32, 0x79, // terminal
        0x00, 0x01, // serial
    ];
    let frame = header::wrap(&content);
    let d = one_frame(items(&mut session(), &frame, 64));
    assert_eq!(
        d.integrity,
        Integrity::Mismatch(Mismatch::Length {
            declared: 2,
            actual: 0
        })
    );
    let strict = SessionOptions {
        strict_checksum: true,
        ..SessionOptions::default()
    };
    assert_eq!(
        items(&mut Jt808Session::new(&strict), &frame, 64),
        [Item::Rejected(DecodeError::BadLength {
            declared: 2,
            actual: 0
        })]
    );
}

#[test]
fn reply_serial_counts_up_per_reply_and_device_id_is_kept() {
    let mut s = session();
    assert_eq!(s.device_id(), None);
    let hb = fixture("heartbeat");
    for expected in 0u16..3 {
        let Item::Frame(d) = s.decode_frame(&hb) else {
            panic!()
        };
        assert_eq!(&d.reply.unwrap()[11..13], &expected.to_be_bytes());
    }
    assert_eq!(s.device_id(), Some("43048325465"));
}

#[test]
fn unknown_types_are_answered_unsupported_and_platform_types_rejected() {
    let mut s = session();
    let unknown = encode::frame(0x0f0f, "1", Edition::V2013, 9, &[1, 2, 3]);
    let Item::Frame(d) = s.decode_frame(&framer::unescape(&unknown).unwrap()) else {
        panic!()
    };
    assert!(d.messages.is_empty());
    let reply = d.reply.unwrap();
    assert_eq!(reply[17], reply::RESULT_UNSUPPORTED);
    let platform = encode::frame(0x8001, "1", Edition::V2013, 9, &[0; 5]);
    assert!(matches!(
        s.decode_frame(&framer::unescape(&platform).unwrap()),
        Item::Rejected(DecodeError::UnsupportedType(_))
    ));
}

#[test]
fn options_offset_overrides_gmt8() {
    let frame = fixture("location");
    let utc = SessionOptions {
        device_utc_offset_minutes: Some(0),
        ..SessionOptions::default()
    };
    let d = one_frame(items(&mut Jt808Session::new(&utc), &frame, 4096));
    assert_eq!(
        d.messages[0].position.as_ref().unwrap().time,
        Utc.with_ymd_and_hms(2015, 8, 18, 7, 21, 21).unwrap()
    );
}

#[test]
fn ascii_e_lock_messages() {
    let mut s = session();
    let now = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
    let Item::Frame(d) = s.decode_frame_at(b"(794104004140,1,001,BASE,2,TIME)", now) else {
        panic!()
    };
    assert_eq!(d.integrity, Integrity::Unchecked);
    assert_eq!(
        d.reply.unwrap(),
        b"(794104004140,1,001,BASE,2,20260102030405)"
    );
    assert_eq!(s.device_id(), Some("794104004140"));
}

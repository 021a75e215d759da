//! Session tests: golden frames from `fixtures/frames/jt808/` with the messages we expect, and
//! framing (split reads, several frames per read, garbage, truncation, oversize, strictness,
//! sub-packaging, replies).

use bytes::BytesMut;
use chrono::{TimeZone, Utc};

use super::encode::{self, Edition, Location};
use super::*;
use crate::message::{Alarm, MessageKind};

/// A golden frame: the hex lines of `fixtures/frames/jt808/<name>.hex` (comments skipped),
/// joined as one byte stream.
fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../fixtures/frames/jt808/{name}.hex",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let hex: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .flat_map(|l| l.chars().filter(|c| !c.is_whitespace()))
        .collect();
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
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

/// Every item the session yields for `bytes` fed in `chunk`-sized reads.
fn feed(bytes: &[u8], chunk: usize, options: &SessionOptions) -> Vec<Item> {
    let mut s = Jt808Session::new(options);
    let mut buf = BytesMut::new();
    let mut items = Vec::new();
    for part in bytes.chunks(chunk.max(1)) {
        buf.extend_from_slice(part);
        loop {
            let before = buf.len();
            match s.decode(&mut buf).unwrap() {
                Some(item) => {
                    assert!(buf.len() < before, "item without progress");
                    items.push(item);
                }
                None => break,
            }
        }
    }
    items
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

fn only_frame(items: &[Item]) -> &Decoded {
    match items {
        [Item::Frame(d)] => d,
        other => panic!("expected one frame, got {other:?}"),
    }
}

#[test]
fn every_fixture_gives_the_same_items_whole_and_byte_at_a_time() {
    let options = SessionOptions::default();
    for name in FIXTURES {
        let bytes = fixture(name);
        let whole = comparable(feed(&bytes, bytes.len(), &options));
        let single = comparable(feed(&bytes, 1, &options));
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
    let d = only_frame(&feed(
        &fixture("location"),
        4096,
        &SessionOptions::default(),
    ))
    .clone();
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
    let d = only_frame(&feed(
        &fixture("registration"),
        4096,
        &SessionOptions::default(),
    ))
    .clone();
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
    let d = only_frame(&feed(
        &fixture("registration_2019"),
        4096,
        &SessionOptions::default(),
    ))
    .clone();
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
    let o = SessionOptions::default();
    let sos = only_frame(&feed(&fixture("alarm_sos"), 4096, &o)).clone();
    assert_eq!(sos.messages[0].kind, MessageKind::Alarm);
    assert_eq!(sos.messages[0].alarms, vec![Alarm::Sos]);
    let tamper = only_frame(&feed(&fixture("alarm_tamper"), 4096, &o)).clone();
    assert_eq!(tamper.messages[0].alarms, vec![Alarm::Tamper]);
    assert_eq!(tamper.messages[0].status.battery_pct, Some(64));
    let low = only_frame(&feed(&fixture("alarm_low_battery_removal"), 4096, &o)).clone();
    assert_eq!(
        low.messages[0].alarms,
        vec![Alarm::LowBattery, Alarm::Removal]
    );
    assert_eq!(low.messages[0].status.voltage, Some(3.6));
}

#[test]
fn golden_batches() {
    let o = SessionOptions::default();
    let blind = only_frame(&feed(&fixture("batch_blind"), 4096, &o)).clone();
    assert_eq!(blind.messages.len(), 1);
    let p = blind.messages[0].position.as_ref().unwrap();
    assert!(p.archived);
    assert_eq!(p.satellites, Some(14));
    assert_eq!(
        blind.messages[0].alarms,
        vec![Alarm::PowerCut, Alarm::LowBattery]
    );
    let plain = only_frame(&feed(&fixture("batch_2019"), 4096, &o)).clone();
    assert!(!plain.messages[0].position.as_ref().unwrap().archived);
    assert_eq!(plain.reply.unwrap()[3] & 0x40, 0x40);
}

#[test]
fn golden_vendor_and_escaped_frames() {
    let o = SessionOptions::default();
    let v = only_frame(&feed(&fixture("vendor_location_blind"), 4096, &o)).clone();
    let p = v.messages[0].position.as_ref().unwrap();
    assert!(p.archived);
    assert!(v.reply.unwrap().starts_with(&[0x7e, 0x44, 0x01]));
    let e = only_frame(&feed(&fixture("escaped"), 4096, &o)).clone();
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
    let d = only_frame(&feed(&frame, 3, &SessionOptions::default())).clone();
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
    let items = feed(&frames.concat(), 7, &SessionOptions::default());
    assert_eq!(items.len(), frames.len());
    for (i, item) in items.iter().enumerate() {
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
    let o = SessionOptions::default();
    let whole = feed(&stream, stream.len(), &o);
    assert_eq!(whole.len(), 3);
    for chunk in [1, 2, 5, 16, 60] {
        assert_eq!(feed(&stream, chunk, &o), whole, "chunk {chunk}");
    }
}

#[test]
fn partial_frame_asks_for_more_without_consuming() {
    let frame = fixture("location");
    let mut s = session();
    let mut buf = BytesMut::from(&frame[..frame.len() - 1]);
    assert_eq!(s.decode(&mut buf).unwrap(), None);
    assert_eq!(buf.len(), frame.len() - 1);
    buf.extend_from_slice(&frame[frame.len() - 1..]);
    assert!(matches!(s.decode(&mut buf).unwrap(), Some(Item::Frame(_))));
    assert!(buf.is_empty());
}

#[test]
fn garbage_before_a_frame_is_skipped_and_counted() {
    let mut stream = b"\x24\x24GARBAGE".to_vec();
    stream.extend_from_slice(&fixture("heartbeat"));
    let items = feed(&stream, stream.len(), &SessionOptions::default());
    assert_eq!(
        items[0],
        Item::Rejected(DecodeError::Garbage { skipped: 9 })
    );
    assert!(matches!(items[1], Item::Frame(_)));
    assert_eq!(items.len(), 2);
}

#[test]
fn a_truncated_frame_is_rejected_and_the_next_frame_still_decodes() {
    let loc = fixture("location");
    // The location loses its tail; its opening flag now pairs with the next frame's.
    let mut stream = loc[..20].to_vec();
    stream.extend_from_slice(&fixture("heartbeat"));
    stream.extend_from_slice(&loc);
    let items = feed(&stream, stream.len(), &SessionOptions::default());
    assert!(matches!(items[0], Item::Rejected(_)), "{items:?}");
    // The flag kept from the rejected frame opened the heartbeat: it is not lost.
    let frames: Vec<&Decoded> = items
        .iter()
        .filter_map(|i| match i {
            Item::Frame(d) => Some(d),
            Item::Rejected(_) => None,
        })
        .collect();
    assert_eq!(frames.len(), 2, "{items:?}");
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
    let lenient = feed(&bad, bad.len(), &SessionOptions::default());
    let d = only_frame(&lenient);
    assert!(matches!(
        d.integrity,
        Integrity::Mismatch(Mismatch::Checksum { .. })
    ));
    assert!(d.reply.is_some());
    let strict = SessionOptions {
        strict_checksum: true,
        ..SessionOptions::default()
    };
    let items = feed(&bad, bad.len(), &strict);
    assert!(matches!(
        items[0],
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
    let d = only_frame(&feed(&frame, 64, &SessionOptions::default())).clone();
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
        feed(&frame, 64, &strict),
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
    let d = only_frame(&feed(&frame, 4096, &utc)).clone();
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

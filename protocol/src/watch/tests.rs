//! Session tests: golden frames from `fixtures/frames/watch/`, framing over split and merged
//! reads, garbage, truncation, size limits and strict length checking.

use bytes::BytesMut;
use chrono::{TimeZone, Utc};

use super::*;
use crate::test_support::{
    self, assert_partial_frame_waits, items, one_frame, same_items_in_reads,
};
use crate::{Alarm, Message, PositionSource};

/// Golden frames by name (`fixtures/frames/watch/<name>.hex`).
const FIXTURES: [&str; 14] = [
    "heartbeat",
    "heartbeat_zj",
    "location",
    "location_wifi",
    "location_blind",
    "location_lte",
    "location_lbs",
    "location_length_mismatch",
    "alarm_sos",
    "alarm_removal",
    "health_heart",
    "voice_keepalive",
    "voice_tk",
    "voice_jxtk",
];

/// The bytes of one golden frame.
fn fixture(name: &str) -> Vec<u8> {
    test_support::fixture("watch", name)
}

fn session() -> WatchSession {
    WatchSession::new(&SessionOptions::default())
}

/// The single decoded frame of a golden fixture.
fn decode_one(name: &str) -> Decoded {
    one_frame(items(&mut session(), &fixture(name), usize::MAX))
}

fn only_message(decoded: &Decoded) -> &Message {
    assert_eq!(decoded.messages.len(), 1);
    &decoded.messages[0]
}

#[test]
fn every_fixture_byte_at_a_time_and_whole() {
    for name in FIXTURES {
        let whole = same_items_in_reads(session, &fixture(name), &[1]);
        assert!(matches!(whole[..], [Item::Frame(_)]), "{name}: {whole:?}");
    }
}

#[test]
fn all_fixtures_in_one_read() {
    let stream: Vec<u8> = FIXTURES.iter().flat_map(|n| fixture(n)).collect();
    let mut s = session();
    let whole = items(&mut s, &stream, usize::MAX);
    assert_eq!(whole.len(), FIXTURES.len());
    assert_eq!(s.device_id(), Some("789468050042692"));
    let in_reads = same_items_in_reads(session, &stream, &[1, 2, 3, 7, 64, 1000]);
    assert_eq!(in_reads, whole);
}

#[test]
fn heartbeat() {
    let d = decode_one("heartbeat");
    let m = only_message(&d);
    assert_eq!(m.kind, MessageKind::Heartbeat);
    assert_eq!(m.device_id.as_deref(), Some("4700186508"));
    assert_eq!(m.status.battery_pct, Some(100));
    assert_eq!(m.status.steps, Some(0));
    assert_eq!(d.reply.as_deref(), Some(&b"[3G*4700186508*0002*LK]"[..]));
    assert_eq!(d.integrity, Integrity::Unchecked);

    let d = decode_one("heartbeat_zj");
    assert_eq!(
        d.reply.as_deref(),
        Some(&b"[ZJ*014111001350304*0034*0002*LK]"[..])
    );
}

#[test]
fn location() {
    let d = decode_one("location");
    let m = only_message(&d);
    assert_eq!(m.kind, MessageKind::Position);
    assert_eq!(m.device_id.as_deref(), Some("9705141740"));
    assert_eq!(d.reply, None);
    let p = m.position.as_ref().unwrap();
    assert_eq!(p.time, Utc.with_ymd_and_hms(2023, 7, 19, 19, 7, 7).unwrap());
    assert!(p.valid);
    assert_eq!((p.lat, p.lon), (36.815109, 10.1792312));
    assert_eq!(p.speed_kmh, Some(8.24));
    assert_eq!(p.course, Some(127.9));
    assert_eq!(p.altitude_m, Some(21.0));
    assert_eq!(p.satellites, Some(5));
    assert_eq!(p.accuracy_m, Some(58.0));
    assert_eq!(p.source, PositionSource::Gps);
    assert!(!p.archived);
    assert_eq!(m.status.gsm_signal, Some(100));
    assert_eq!(m.status.battery_pct, Some(53));
    assert!(m.alarms.is_empty());
}

#[test]
fn location_with_wifi_and_bracketed_ssid() {
    let d = decode_one("location_wifi");
    let m = only_message(&d);
    let p = m.position.as_ref().unwrap();
    assert_eq!(p.lon, 4.378306);
    assert_eq!(p.accuracy_m, Some(15.0));
    assert_eq!(m.cells.len(), 2);
    assert_eq!(m.wifi.len(), 5);
    assert_eq!(m.wifi[4].mac, "66:a1:ed:e1:e7:25");
    assert_eq!(m.status.steps, Some(226_120));
}

#[test]
fn blind_area_position_is_archived() {
    let d = decode_one("location_blind");
    let p = only_message(&d).position.as_ref().unwrap();
    assert!(p.archived);
    assert!(p.valid);
}

#[test]
fn invalid_fix_with_cells_is_lbs() {
    let d = decode_one("location_lbs");
    let p = only_message(&d).position.as_ref().unwrap();
    assert!(!p.valid);
    assert_eq!(p.source, PositionSource::Lbs);
    assert_eq!((p.lat, p.lon), (-33.480366, -70.7630692));
    assert_eq!(
        p.time,
        Utc.with_ymd_and_hms(2016, 7, 21, 23, 16, 1).unwrap()
    );
}

#[test]
fn wrong_length_field_is_flagged_or_rejected_when_strict() {
    let d = decode_one("location_length_mismatch");
    assert_eq!(
        d.integrity,
        Integrity::Mismatch(Mismatch::Length {
            declared: 0x87,
            actual: 143
        })
    );
    assert!(only_message(&d).position.is_some());

    let strict = SessionOptions {
        strict_checksum: true,
        ..SessionOptions::default()
    };
    let got = items(
        &mut WatchSession::new(&strict),
        &fixture("location_length_mismatch"),
        usize::MAX,
    );
    assert_eq!(
        got,
        vec![Item::Rejected(DecodeError::BadLength {
            declared: 0x87,
            actual: 143
        })]
    );
    // a frame whose length holds passes strict checking
    let got = items(&mut WatchSession::new(&strict), &fixture("location"), 1);
    assert!(matches!(got.as_slice(), [Item::Frame(_)]));
}

#[test]
fn alarms_and_their_replies() {
    let d = decode_one("alarm_sos");
    let m = only_message(&d);
    assert_eq!(m.kind, MessageKind::Alarm);
    assert_eq!(m.alarms, vec![Alarm::Sos]);
    assert_eq!(d.reply.as_deref(), Some(&b"[3G*6907919734*0002*AL]"[..]));
    // fix flag V at 0/0 without cells or Wi-Fi: stored, never fenced
    let p = m.position.as_ref().unwrap();
    assert!(!p.valid);
    assert_eq!((p.lat, p.lon), (0.0, 0.0));

    let d = decode_one("alarm_removal");
    let m = only_message(&d);
    assert_eq!(m.alarms, vec![Alarm::Removal]);
    assert_eq!(m.position.as_ref().unwrap().source, PositionSource::Wifi);
    assert_eq!(m.wifi.len(), 6);
    assert_eq!(
        d.reply.as_deref(),
        Some(&b"[ZJ*689466020014198*0003*0002*AL]"[..])
    );
}

#[test]
fn health_and_media() {
    let d = decode_one("health_heart");
    assert_eq!(only_message(&d).kind, MessageKind::Health);
    assert_eq!(d.reply, None);

    let d = decode_one("voice_keepalive");
    assert_eq!(only_message(&d).kind, MessageKind::Heartbeat);
    assert_eq!(d.reply.as_deref(), Some(&b"[3G*8800000015*0003*TKQ]"[..]));

    // the escaped payload un-escapes to 14 bytes, as the length field says
    let d = decode_one("voice_tk");
    assert_eq!(only_message(&d).kind, MessageKind::Other);
    assert_eq!(d.integrity, Integrity::Unchecked);
    assert_eq!(d.reply, None);

    // this chunk's length field counts the payload as sent, escapes included
    let d = decode_one("voice_jxtk");
    assert_eq!(only_message(&d).kind, MessageKind::Other);
    assert_eq!(d.integrity, Integrity::Unchecked);
    assert_eq!(
        d.reply.as_deref(),
        Some(&b"[ZJ*789468050042692*0034*0007*JXTKR,1]"[..])
    );
}

#[test]
fn init_is_a_login() {
    let got = items(&mut session(), b"[3G*1234567890*0004*INIT]", usize::MAX);
    let [Item::Frame(d)] = got.as_slice() else {
        panic!("{got:?}")
    };
    assert_eq!(only_message(d).kind, MessageKind::Login);
    assert_eq!(
        d.reply.as_deref(),
        Some(&b"[3G*1234567890*0006*INIT,1]"[..])
    );
}

#[test]
fn unknown_type_decodes_to_nothing_but_identifies_the_device() {
    let mut s = session();
    let got = items(&mut s, b"[3G*8308406279*0008*rcapture]", usize::MAX);
    assert_eq!(got, vec![Item::Frame(Decoded::empty(Integrity::Unchecked))]);
    assert_eq!(s.device_id(), Some("8308406279"));
}

#[test]
fn garbage_before_a_frame_is_skipped_and_counted() {
    let mut stream = b"\x00\x17GET / HTTP/1.1\r\n".to_vec();
    stream.extend(fixture("heartbeat"));
    let got = items(&mut session(), &stream, usize::MAX);
    assert_eq!(got.len(), 2);
    assert_eq!(
        got[0],
        Item::Rejected(DecodeError::Garbage { skipped: 2 + 16 })
    );
    assert!(matches!(got[1], Item::Frame(_)));
}

#[test]
fn line_breaks_between_frames_are_not_garbage() {
    let mut stream = fixture("heartbeat");
    stream.extend_from_slice(b"\r\n");
    stream.extend(fixture("location"));
    stream.extend_from_slice(b"\r\n");
    let got = items(&mut session(), &stream, usize::MAX);
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|i| matches!(i, Item::Frame(_))));
}

#[test]
fn truncated_frame_then_a_good_one() {
    let good = fixture("heartbeat");
    let mut stream = good[..good.len() - 6].to_vec();
    stream.extend(&good);
    // byte-at-a-time gives the same
    let got = same_items_in_reads(session, &stream, &[1]);
    assert_eq!(got.len(), 2);
    assert!(matches!(
        got[0],
        Item::Rejected(DecodeError::Truncated { available: 26, .. })
    ));
    assert!(matches!(got[1], Item::Frame(_)));
}

#[test]
fn partial_frame_waits_for_more() {
    assert_partial_frame_waits(&mut session(), &fixture("location"), 50);
}

#[test]
fn oversize_frame_closes_the_connection() {
    let options = SessionOptions {
        max_frame_len: Some(100),
        ..SessionOptions::default()
    };
    let mut s = WatchSession::new(&options);
    let mut buf = BytesMut::from(&b"[3G*1234567890*0100*TK,"[..]);
    assert_eq!(s.decode(&mut buf).unwrap(), None);
    buf.extend_from_slice(&[b'x'; 200]);
    assert!(matches!(
        s.decode(&mut buf),
        Err(FrameError::Oversize { max: 100, .. })
    ));
    // the default limit is 64 KiB: a JXTK-sized frame fits, an endless one does not
    let mut s = session();
    let mut buf = BytesMut::from(&b"[3G*1234567890*ffff*TK,"[..]);
    buf.extend_from_slice(&vec![b'x'; DEFAULT_MAX_FRAME_LEN]);
    assert!(s.decode(&mut buf).is_err());
}

#[test]
fn malformed_frames_are_rejected_and_the_stream_goes_on() {
    let mut stream = b"[no header here]".to_vec();
    stream.extend_from_slice(b"[3G*1234567890*0010*UD,not,a,fix]");
    stream.extend_from_slice(b"[3G*1234567890*zz*LK]");
    stream.extend(fixture("heartbeat"));
    let got = items(&mut session(), &stream, usize::MAX);
    assert_eq!(got.len(), 4);
    assert!(matches!(
        got[0],
        Item::Rejected(DecodeError::NotThisProtocol { .. })
    ));
    assert!(matches!(
        got[1],
        Item::Rejected(DecodeError::Truncated { .. })
    ));
    assert!(matches!(
        got[2],
        Item::Rejected(DecodeError::InvalidField {
            field: "length",
            ..
        })
    ));
    assert!(matches!(got[3], Item::Frame(_)));
}

#[test]
fn device_clock_offset_from_options() {
    let options = SessionOptions {
        device_utc_offset_minutes: Some(120),
        ..SessionOptions::default()
    };
    let got = items(&mut WatchSession::new(&options), &fixture("location"), 7);
    let [Item::Frame(d)] = got.as_slice() else {
        panic!("{got:?}")
    };
    let p = only_message(d).position.as_ref().unwrap();
    assert_eq!(p.time, Utc.with_ymd_and_hms(2023, 7, 19, 17, 7, 7).unwrap());
}

#[test]
fn encoded_frames_decode() {
    let time = Utc.with_ymd_and_hms(2024, 2, 29, 23, 59, 58).unwrap();
    let mut stream = encode::lk("864717003283581", 3120, 77);
    stream.extend(encode::ud(
        "864717003283581",
        time,
        true,
        -33.123456,
        151.654321,
        12.5,
        270.0,
        77,
    ));
    stream.extend(encode::al(
        "864717003283581",
        time,
        false,
        1.0,
        -2.0,
        0.0,
        0.0,
        5,
        0x0011_0001,
    ));
    let got = items(&mut session(), &stream, 5);
    let decoded: Vec<&Decoded> = got
        .iter()
        .map(|i| match i {
            Item::Frame(d) => {
                assert_eq!(d.integrity, Integrity::Unchecked);
                d
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(decoded.len(), 3);
    assert_eq!(decoded[0].messages[0].status.steps, Some(3120));
    let p = decoded[1].messages[0].position.as_ref().unwrap();
    assert_eq!((p.time, p.lat, p.lon), (time, -33.123456, 151.654321));
    assert_eq!((p.speed_kmh, p.course), (Some(12.5), Some(270.0)));
    let m = &decoded[2].messages[0];
    assert_eq!(m.kind, MessageKind::Alarm);
    assert_eq!(
        m.alarms,
        vec![Alarm::Sos, Alarm::Removal, Alarm::LowBattery]
    );
    assert!(!m.position.as_ref().unwrap().valid);
}

mod proptests {
    use super::*;
    use proptest::prelude::*;

    fn id() -> impl Strategy<Value = String> {
        prop_oneof!["[0-9]{10}", "[0-9]{15}"]
    }

    fn time() -> impl Strategy<Value = chrono::DateTime<Utc>> {
        // 2000-01-01 .. 2099-12-31, whole seconds
        (946_684_800i64..4_102_444_799).prop_map(|s| Utc.timestamp_opt(s, 0).unwrap())
    }

    fn decode_all(bytes: &[u8]) -> Vec<Decoded> {
        items(&mut session(), bytes, usize::MAX)
            .into_iter()
            .map(|i| match i {
                Item::Frame(d) => d,
                other => panic!("{other:?}"),
            })
            .collect()
    }

    proptest! {
        #[test]
        fn ud_round_trips(
            id in id(),
            time in time(),
            valid: bool,
            lat in -90.0f64..=90.0,
            lon in -180.0f64..=180.0,
            speed in 0.0f64..500.0,
            course in 0.0f64..359.9,
            battery in 0u8..=100,
        ) {
            let frame = encode::ud(&id, time, valid, lat, lon, speed, course, battery);
            let decoded = decode_all(&frame);
            prop_assert_eq!(decoded.len(), 1);
            prop_assert_eq!(decoded[0].integrity, Integrity::Unchecked);
            let m = &decoded[0].messages[0];
            prop_assert_eq!(m.device_id.as_deref(), Some(id.as_str()));
            prop_assert_eq!(m.status.battery_pct, Some(battery));
            let p = m.position.as_ref().unwrap();
            prop_assert_eq!(p.time, time);
            prop_assert_eq!(p.valid, valid);
            // 6 decimals on the wire
            prop_assert!((p.lat - lat).abs() <= 5.0e-7 + 1e-12, "{} vs {}", p.lat, lat);
            prop_assert!((p.lon - lon).abs() <= 5.0e-7 + 1e-12, "{} vs {}", p.lon, lon);
            prop_assert!((p.speed_kmh.unwrap() - speed).abs() <= 0.005 + 1e-9);
            prop_assert!((p.course.unwrap() - course).abs() <= 0.05 + 1e-9);
        }

        #[test]
        fn al_round_trips(
            id in id(),
            time in time(),
            status in any::<u32>(),
        ) {
            let frame = encode::al(&id, time, true, 10.0, 20.0, 0.0, 0.0, 50, status);
            let decoded = decode_all(&frame);
            let m = &decoded[0].messages[0];
            prop_assert_eq!(m.kind, MessageKind::Alarm);
            let expected = alarm::from_status_word(status);
            if expected.is_empty() {
                prop_assert_eq!(&m.alarms, &vec![Alarm::General]);
            } else {
                prop_assert_eq!(&m.alarms, &expected);
            }
            let reply = format!("[3G*{id}*0002*AL]");
            prop_assert_eq!(decoded[0].reply.as_deref(), Some(reply.as_bytes()));
        }

        #[test]
        fn lk_round_trips(id in id(), steps: u32, battery in 0u8..=100) {
            let decoded = decode_all(&encode::lk(&id, steps, battery));
            let m = &decoded[0].messages[0];
            prop_assert_eq!(m.status.steps, Some(steps));
            prop_assert_eq!(m.status.battery_pct, Some(battery));
        }

        #[test]
        fn binary_payloads_survive_escaping(payload in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut content = b"TK,".to_vec();
            content.extend(&payload);
            let raw = encode::frame("CS", "1234567890", None, &content);
            // the encoder leaves `,` and `*` alone; escape them too, as devices do
            let mut stream = raw[..raw.len() - 1 - encode_len(&payload)].to_vec();
            stream.extend(framing::escape(&payload));
            stream.push(b']');
            let decoded = decode_all(&stream);
            prop_assert_eq!(decoded.len(), 1);
            prop_assert_eq!(decoded[0].integrity, Integrity::Unchecked);
            prop_assert_eq!(decoded[0].messages[0].kind, MessageKind::Other);
        }
    }

    /// Length of `payload` as the encoder writes it (only `} [ ]` escaped).
    fn encode_len(payload: &[u8]) -> usize {
        payload
            .iter()
            .map(|b| {
                if matches!(b, b'}' | b'[' | b']') {
                    2
                } else {
                    1
                }
            })
            .sum()
    }
}

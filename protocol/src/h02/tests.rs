//! Session-level tests: golden frames from `fixtures/frames/h02/`, framing over split and merged
//! reads, identity, options, and encoder round trips (proptest).

use bytes::BytesMut;
use chrono::{DateTime, TimeZone, Utc};
use proptest::prelude::*;

use super::encode::{self, Report};
use super::*;
use crate::message::{Alarm, CellTower, Position};
use crate::test_support::{
    self, assert_partial_frame_waits, items, one_frame, same_items_in_reads,
};

fn clock() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap()
}

fn session() -> H02Session {
    H02Session::with_clock(&SessionOptions::default(), clock)
}

/// Decodes one text frame with a message decoder, as a session in UTC would at `now`.
pub(super) fn decode_text(
    frame: &[u8],
    now: DateTime<Utc>,
    decode: fn(&text::Sentence<'_>, &Context<'_>) -> Result<text::Output, DecodeError>,
) -> Result<text::Output, DecodeError> {
    let sentence = text::Sentence::parse(frame)?;
    let ctx = Context {
        now,
        utc_offset_minutes: 0,
        device_id: sentence.device_id(),
    };
    decode(&sentence, &ctx)
}

fn fixture(name: &str) -> Vec<u8> {
    test_support::fixture("h02", name)
}

const FIXTURES: [&str; 16] = [
    "location",
    "location_binary",
    "location_binary_long",
    "location_binary_long_id",
    "heartbeat",
    "lbs_nbr",
    "lbs_v3",
    "link",
    "vp1_lbs",
    "vp1_location",
    "command_reply",
    "alarm_sos",
    "alarm_power_cut",
    "sms",
    "no_fix",
    "x_record",
];

/// A fresh session that knows the record size of a long binary fixture (a 42- or 45-byte record
/// fed in pieces cannot be told from a 32-byte one; see `frame.rs`).
fn session_for(bytes: &[u8]) -> H02Session {
    match (bytes.first(), bytes.len()) {
        (Some(b'$'), len @ (LONG_ID_RECORD_LEN | LONG_RECORD_LEN)) => {
            session().with_record_len(len)
        }
        _ => session(),
    }
}

/// The one decoded frame of a fixture.
fn decode_fixture(name: &str) -> Decoded {
    let bytes = fixture(name);
    one_frame(items(&mut session_for(&bytes), &bytes, usize::MAX))
}

/// The messages after the login announcement.
fn content(decoded: &Decoded) -> Vec<&Message> {
    decoded
        .messages
        .iter()
        .filter(|m| m.kind != MessageKind::Login)
        .collect()
}

fn position(decoded: &Decoded) -> &Position {
    content(decoded)[0].position.as_ref().expect("a position")
}

#[test]
fn every_fixture_gives_the_same_items_whole_and_byte_at_a_time() {
    for name in FIXTURES {
        let bytes = fixture(name);
        let whole = same_items_in_reads(|| session_for(&bytes), &bytes, &[1]);
        assert!(matches!(whole[..], [Item::Frame(_)]), "{name}: {whole:?}");
    }
}

#[test]
fn all_fixtures_in_one_read_and_in_odd_pieces() {
    // Text fixtures and the 32-byte records, back to back with CR/LF after some text frames.
    let mut stream = Vec::new();
    let mut count = 0;
    for name in FIXTURES {
        let bytes = fixture(name);
        if bytes.first() == Some(&b'$') && bytes.len() != SHORT_RECORD_LEN {
            continue;
        }
        stream.extend_from_slice(&bytes);
        if bytes.first() == Some(&b'*') && count % 2 == 0 {
            stream.extend_from_slice(b"\r\n");
        }
        count += 1;
    }
    let whole = same_items_in_reads(session, &stream, &[1, 2, 7, 31, 33, 100]);
    assert_eq!(whole.len(), count);
    assert!(whole.iter().all(|i| matches!(i, Item::Frame(_))));
}

#[test]
fn location_fixture() {
    let decoded = decode_fixture("location");
    // A first frame with an ID announces the device.
    assert_eq!(decoded.messages[0].kind, MessageKind::Login);
    let m = content(&decoded)[0];
    assert_eq!(m.kind, MessageKind::Position);
    assert_eq!(m.device_id.as_deref(), Some("4210051415"));
    let p = position(&decoded);
    assert_eq!(
        p.time,
        Utc.with_ymd_and_hms(2015, 12, 22, 16, 45, 49).unwrap()
    );
    assert!(p.valid);
    assert!((p.lat - 9.93978).abs() < 1e-5);
    assert!((p.lon + 84.11178).abs() < 1e-5);
    assert!(m.alarms.is_empty());
    assert_eq!(decoded.integrity, Integrity::Unchecked);
    assert_eq!(
        decoded.reply.as_deref(),
        Some(&b"*HQ,4210051415,V4,V1,20240501120000#"[..])
    );
}

#[test]
fn binary_fixtures() {
    let decoded = decode_fixture("location_binary");
    let p = position(&decoded);
    assert_eq!(
        p.time,
        Utc.with_ymd_and_hms(2016, 11, 13, 12, 45, 43).unwrap()
    );
    assert!((p.lat - 50.58855).abs() < 1e-9);
    assert!((p.lon - 4.53035).abs() < 1e-9);
    assert_eq!(content(&decoded)[0].status.battery_pct, Some(100));
    assert_eq!(decoded.reply, None);

    let decoded = decode_fixture("location_binary_long");
    let p = position(&decoded);
    assert_eq!(
        p.time,
        Utc.with_ymd_and_hms(2015, 8, 31, 21, 53, 21).unwrap()
    );
    assert!((p.lat - 4.69898).abs() < 1e-5);
    assert!((p.lon + 74.06971).abs() < 1e-5);

    let decoded = decode_fixture("location_binary_long_id");
    assert_eq!(
        content(&decoded)[0].device_id.as_deref(),
        Some("352483084193293")
    );
    assert!((position(&decoded).speed_kmh.unwrap() - 24.0 * 1.852).abs() < 1e-9);
}

#[test]
fn heartbeat_fixture_is_echoed() {
    let decoded = decode_fixture("heartbeat");
    let m = content(&decoded)[0];
    assert_eq!(m.kind, MessageKind::Heartbeat);
    assert_eq!(m.status.battery_pct, Some(100));
    assert_eq!(
        decoded.reply.as_deref(),
        Some(&b"*HQ,135790246811220,HTBT#"[..])
    );
}

#[test]
fn cell_fixtures() {
    let decoded = decode_fixture("lbs_nbr");
    let m = content(&decoded)[0];
    assert_eq!(m.kind, MessageKind::Lbs);
    assert_eq!(m.position, None);
    assert_eq!(
        m.cells,
        [CellTower {
            mcc: 234,
            mnc: 10,
            lac: 21580,
            cid: 27766,
            rssi: Some(-67)
        }; 2]
    );
    assert_eq!(
        decoded.reply.as_deref(),
        Some(&b"*HQ,7401004662,V4,NBR,20240501120000#"[..])
    );

    let decoded = decode_fixture("lbs_v3");
    assert_eq!(content(&decoded)[0].cells.len(), 4);
    assert_eq!(decoded.reply, None);

    let decoded = decode_fixture("vp1_lbs");
    assert_eq!(content(&decoded)[0].cells.len(), 3);
}

#[test]
fn link_fixture() {
    let decoded = decode_fixture("link");
    let m = content(&decoded)[0];
    assert_eq!(m.kind, MessageKind::Status);
    assert_eq!(
        (m.status.gsm_signal, m.status.battery_pct, m.status.steps),
        (Some(20), Some(67), Some(0))
    );
}

#[test]
fn vp1_location_fixture() {
    let decoded = decode_fixture("vp1_location");
    let p = position(&decoded);
    // The frame's date (2017-09-08) is far from the clock: midnight of that date.
    assert_eq!(p.time, Utc.with_ymd_and_hms(2017, 9, 8, 0, 0, 0).unwrap());
    assert!(p.lat < 0.0);
}

#[test]
fn alarm_fixtures() {
    let decoded = decode_fixture("alarm_sos");
    assert_eq!(content(&decoded)[0].alarms, [Alarm::Sos]);
    let decoded = decode_fixture("alarm_power_cut");
    assert_eq!(content(&decoded)[0].alarms, [Alarm::PowerCut]);
    let decoded = decode_fixture("command_reply");
    assert_eq!(content(&decoded)[0].alarms, [Alarm::Sos]);
    assert!(content(&decoded)[0].position.is_some());
    assert_eq!(decoded.reply, None);
}

#[test]
fn alarm_sos_fixture_is_our_encoder_output() {
    let report = Report {
        status: 0xFFFF_FBFD,
        ..Report::new(
            Utc.with_ymd_and_hms(2024, 5, 1, 8, 30, 0).unwrap(),
            52.520008,
            13.404954,
        )
    };
    assert_eq!(encode::text_v1("4210051415", &report), fixture("alarm_sos"));
}

#[test]
fn other_fixtures() {
    let decoded = decode_fixture("sms");
    assert_eq!(content(&decoded)[0].kind, MessageKind::CommandReply);
    let decoded = decode_fixture("no_fix");
    assert_eq!(content(&decoded)[0].kind, MessageKind::Status);
    assert_eq!(content(&decoded)[0].position, None);
    let decoded = decode_fixture("x_record");
    assert!(decoded.messages.is_empty());
    assert_eq!(decoded.reply, None);
}

#[test]
fn location_fixture_exists_for_the_benches() {
    assert!(fixture("location").starts_with(b"*HQ,"));
}

#[test]
fn garbage_before_a_frame_is_one_rejection() {
    let mut input = b"\x00\x01GET / HTTP/1.1\r\n".to_vec();
    input.extend_from_slice(&fixture("location"));
    let out = same_items_in_reads(session, &input, &[1]);
    assert_eq!(out[0], Item::Rejected(DecodeError::Garbage { skipped: 18 }));
    assert!(matches!(out[1], Item::Frame(_)));
    assert_eq!(out.len(), 2);
}

#[test]
fn truncated_text_frame_then_a_whole_one() {
    let mut input = b"*HQ,4210051415,V1,1645".to_vec();
    input.extend_from_slice(&fixture("location"));
    let out = same_items_in_reads(session, &input, &[5]);
    assert!(matches!(
        out[0],
        Item::Rejected(DecodeError::Truncated { .. })
    ));
    assert!(matches!(out[1], Item::Frame(_)));
}

#[test]
fn partial_frame_waits_and_keeps_its_bytes() {
    assert_partial_frame_waits(&mut session(), &fixture("location"), 50);
}

#[test]
fn malformed_but_delimited_frame_is_rejected_and_the_stream_goes_on() {
    let mut input =
        b"*HQ,4210051415,V1,164549,A,0956.3869,N,08406.7068,W,000.00,000,321215,FFFFFBFF#".to_vec();
    input.extend_from_slice(&fixture("heartbeat"));
    let out = items(&mut session(), &input, usize::MAX);
    assert!(matches!(
        out[0],
        Item::Rejected(DecodeError::InvalidField { field: "date", .. })
    ));
    assert!(matches!(out[1], Item::Frame(_)));
}

#[test]
fn text_without_hash_is_oversize_never_buffered_beyond_the_maximum() {
    let mut s = session();
    let mut buf = BytesMut::from(&b"*HQ,1,V1,"[..]);
    buf.extend_from_slice(&[b'1'; 2000]);
    assert_eq!(
        s.decode(&mut buf),
        Err(FrameError::Oversize {
            size: 2009,
            max: DEFAULT_MAX_FRAME_LEN
        })
    );
    // Fed in pieces, the error comes as soon as the maximum is reached.
    let mut s = session();
    let mut buf = BytesMut::new();
    let mut fed = 0;
    let result = loop {
        buf.extend_from_slice(if fed == 0 { b"*" } else { b"1" });
        fed += 1;
        match s.decode(&mut buf) {
            Ok(None) => assert!(buf.len() < DEFAULT_MAX_FRAME_LEN),
            other => break other,
        }
    };
    assert!(result.is_err());
    assert_eq!(fed, DEFAULT_MAX_FRAME_LEN);
}

#[test]
fn max_frame_len_option_is_honoured() {
    let options = SessionOptions {
        max_frame_len: Some(64),
        ..SessionOptions::default()
    };
    let mut s = H02Session::with_clock(&options, clock);
    let mut buf = BytesMut::from(&fixture("location")[..]);
    assert!(matches!(
        s.decode(&mut buf),
        Err(FrameError::Oversize { max: 64, .. })
    ));
    let mut buf = BytesMut::from(&fixture("heartbeat")[..]);
    assert!(matches!(s.decode(&mut buf), Ok(Some(Item::Frame(_)))));
}

#[test]
fn identity_is_announced_once_and_fills_empty_ids() {
    let mut s = session();
    assert_eq!(Session::device_id(&s), None);
    let first = s.decode_frame(&fixture("location")).unwrap();
    assert_eq!(first.messages.len(), 2);
    assert_eq!(Session::device_id(&s), Some("4210051415"));
    let again = s.decode_frame(&fixture("location")).unwrap();
    assert_eq!(again.messages.len(), 1);
    // No ID in the frame: the session's.
    let anonymous = s
        .decode_frame(b"*HQ,,V1,173212,A,2225.78879,S,02829.19021,E,0.00,0,290418,FFFFFBFF#")
        .unwrap();
    assert_eq!(anonymous.messages.len(), 1);
    assert_eq!(
        anonymous.messages[0].device_id.as_deref(),
        Some("4210051415")
    );
    assert_eq!(
        anonymous.reply.as_deref(),
        Some(&b"*HQ,4210051415,V4,V1,20240501120000#"[..])
    );
    // A different ID is announced again.
    let other = s.decode_frame(&fixture("heartbeat")).unwrap();
    assert_eq!(other.messages[0].kind, MessageKind::Login);
    assert_eq!(Session::device_id(&s), Some("135790246811220"));
}

#[test]
fn anonymous_frame_before_any_id_has_no_device_and_no_reply() {
    let mut s = session();
    let decoded = s
        .decode_frame(b"*HQ,,V1,173212,A,2225.78879,S,02829.19021,E,0.00,0,290418,FFFFFBFF#")
        .unwrap();
    assert_eq!(decoded.messages.len(), 1);
    assert_eq!(decoded.messages[0].device_id, None);
    assert!(decoded.messages[0].position.is_some());
    assert_eq!(decoded.reply, None);
}

#[test]
fn a_rejected_frame_does_not_change_the_identity() {
    let mut s = session();
    assert!(s
        .decode_frame(b"*HQ,999,V1,164549,A,0956.3869,N,08406.7068,W,0,0,321215,FFFFFBFF#")
        .is_err());
    assert_eq!(Session::device_id(&s), None);
}

#[test]
fn device_utc_offset_option_converts_device_time() {
    let options = SessionOptions {
        device_utc_offset_minutes: Some(8 * 60),
        ..SessionOptions::default()
    };
    let mut s = H02Session::with_clock(&options, clock);
    let decoded = s.decode_frame(&fixture("location")).unwrap();
    assert_eq!(
        position(&decoded).time,
        Utc.with_ymd_and_hms(2015, 12, 22, 8, 45, 49).unwrap()
    );
    let decoded = s.decode_frame(&fixture("location_binary")).unwrap();
    assert_eq!(
        position(&decoded).time,
        Utc.with_ymd_and_hms(2016, 11, 13, 4, 45, 43).unwrap()
    );
}

#[test]
fn strict_checksum_changes_nothing() {
    let options = SessionOptions {
        strict_checksum: true,
        ..SessionOptions::default()
    };
    let mut s = H02Session::with_clock(&options, clock);
    assert_eq!(
        s.decode_frame(&fixture("location")).unwrap(),
        session().decode_frame(&fixture("location")).unwrap()
    );
}

#[test]
fn long_record_fed_byte_at_a_time_to_a_new_session_is_read_as_32_bytes() {
    // The documented limit of learning the size from the first read: the first 32 bytes still
    // hold the whole position; the other 13 bytes are skipped as garbage once the next record
    // starts.
    let mut bytes = fixture("location_binary_long");
    bytes.push(b'$');
    let out = items(&mut session(), &bytes, 1);
    assert_eq!(out.len(), 2);
    assert!(matches!(out[0], Item::Frame(_)));
    assert_eq!(out[1], Item::Rejected(DecodeError::Garbage { skipped: 13 }));
}

#[test]
fn not_h02_at_all() {
    assert!(matches!(
        session().decode_frame(b"\x78\x78\x05\x01"),
        Err(DecodeError::NotThisProtocol { .. })
    ));
    assert!(session().decode_frame(b"").is_err());
    assert!(session().decode_frame(b"$12").is_err());
}

fn id(digits: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(0u8..10, digits)
        .prop_map(|d| d.into_iter().map(|n| char::from(b'0' + n)).collect())
}

fn report() -> impl Strategy<Value = Report> {
    (
        946_684_800i64..4_102_444_799, // 2000-01-01 .. 2099-12-31
        any::<bool>(),
        -90.0f64..=90.0,
        -180.0f64..=180.0,
        0.0f64..300.0,
        0u32..360,
        any::<u32>(),
    )
        .prop_map(|(t, valid, lat, lon, speed_kmh, course, status)| Report {
            time: Utc.timestamp_opt(t, 0).unwrap(),
            valid,
            lat,
            lon,
            speed_kmh,
            course: f64::from(course),
            status,
        })
}

/// Half of 0.0001 minute, the wire resolution, in degrees (plus float slack).
const COORD_TOLERANCE: f64 = 0.0001 / 60.0 / 2.0 + 1e-12;

proptest! {
    #[test]
    fn text_v1_round_trips(id in prop_oneof![id(10), id(15)], r in report()) {
        let mut s = session();
        let decoded = s.decode_frame(&encode::text_v1(&id, &r)).unwrap();
        let m = content(&decoded)[0];
        let p = m.position.as_ref().unwrap();
        prop_assert_eq!(m.device_id.as_deref(), Some(id.as_str()));
        prop_assert_eq!(p.time, r.time);
        prop_assert_eq!(p.valid, r.valid);
        prop_assert!((p.lat - r.lat).abs() <= COORD_TOLERANCE, "{} vs {}", p.lat, r.lat);
        prop_assert!((p.lon - r.lon).abs() <= COORD_TOLERANCE, "{} vs {}", p.lon, r.lon);
        // Two decimals of knots.
        prop_assert!((p.speed_kmh.unwrap() - r.speed_kmh).abs() <= 0.005 * 1.852 + 1e-9);
        prop_assert_eq!(p.course, Some(r.course));
        prop_assert_eq!(&m.alarms, &status::alarms(r.status));
        prop_assert_eq!(m.status.ignition, Some(status::ignition(r.status)));
        prop_assert_eq!(decoded.reply, Some(encode::reply_v1(&id, clock())));
    }

    #[test]
    fn binary_record_round_trips(id in id(10), r in report(), battery in 0u8..=100) {
        let bytes = encode::binary_record(&id, &r, battery);
        prop_assert_eq!(bytes.len(), SHORT_RECORD_LEN);
        // Through the splitter too: a single 32-byte read.
        let out = items(&mut session(), &bytes, bytes.len());
        let Some(Item::Frame(decoded)) = out.first() else {
            return Err(TestCaseError::fail(format!("{out:?}")));
        };
        let m = content(decoded)[0];
        let p = m.position.as_ref().unwrap();
        prop_assert_eq!(m.device_id.as_deref(), Some(id.as_str()));
        prop_assert_eq!(p.time, r.time);
        prop_assert_eq!(p.valid, r.valid);
        prop_assert!((p.lat - r.lat).abs() <= COORD_TOLERANCE);
        prop_assert!((p.lon - r.lon).abs() <= COORD_TOLERANCE);
        // Whole knots.
        prop_assert!((p.speed_kmh.unwrap() - r.speed_kmh).abs() <= 0.5 * 1.852 + 1e-9);
        prop_assert_eq!(p.course, Some(r.course));
        prop_assert_eq!(m.status.battery_pct, binary::battery_pct(battery));
        prop_assert_eq!(&m.alarms, &status::alarms(r.status));
    }

    #[test]
    fn heartbeat_round_trips(id in id(15), battery in proptest::option::of(0u8..=100)) {
        let mut s = session();
        let frame = encode::heartbeat(&id, battery);
        let decoded = s.decode_frame(&frame).unwrap();
        let m = content(&decoded)[0];
        prop_assert_eq!(m.kind, MessageKind::Heartbeat);
        prop_assert_eq!(m.status.battery_pct, battery);
        prop_assert_eq!(decoded.reply, Some(format!("*HQ,{id},HTBT#").into_bytes()));
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_always_progress(data in proptest::collection::vec(any::<u8>(), 0..400)) {
        let mut s = session();
        let mut buf = BytesMut::from(&data[..]);
        loop {
            let before = buf.len();
            match s.decode(&mut buf) {
                Ok(Some(_)) => prop_assert!(buf.len() < before),
                Ok(None) | Err(_) => break,
            }
        }
        prop_assert!(buf.len() <= DEFAULT_MAX_FRAME_LEN);
    }
}

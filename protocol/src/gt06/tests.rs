//! Session tests: cutting frames from a stream (split, merged and partial reads, garbage,
//! truncated and oversize frames), integrity flags and strictness, and what the session remembers
//! (device ID, time zone). Also the test context and golden-frame helpers the per-message tests
//! share.

use bytes::BytesMut;
use chrono::{DateTime, TimeZone, Utc};

use super::*;
use crate::message::Alarm;
use crate::test_support::{run, same_items_in_reads};

/// The clock of the test contexts: 2024-03-05 06:07:08 UTC.
pub(crate) fn clock() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 3, 5, 6, 7, 8).unwrap()
}

/// A decoding context without device ID, in UTC.
pub(crate) fn ctx() -> Ctx<'static> {
    ctx_with_offset(0)
}

/// A decoding context whose device times are `offset` minutes east of UTC.
pub(crate) fn ctx_with_offset(offset: i32) -> Ctx<'static> {
    Ctx {
        device_id: None,
        offset_minutes: offset,
        length_field: 0,
        consistent: true,
        family: super::alarm::Family::Standard,
        now: clock,
    }
}

/// Golden frames in `fixtures/frames/gt06/`, one function per file.
pub(crate) mod fixtures {
    macro_rules! fixtures {
        ($($name:ident),* $(,)?) => {
            $(
                #[doc = concat!("`fixtures/frames/gt06/", stringify!($name), ".hex`")]
                pub fn $name() -> Vec<u8> {
                    crate::test_support::fixture("gt06", stringify!($name))
                }
            )*
            /// Every fixture, by name.
            pub const ALL: &[(&str, fn() -> Vec<u8>)] = &[$((stringify!($name), $name)),*];
        };
    }

    fixtures!(
        login,
        login_zone,
        heartbeat,
        location,
        location_22,
        location_4g,
        location_text,
        location_modular,
        alarm_sos,
        alarm_removal,
        alarm_tamper_26,
        alarm_low_battery_lbs,
        alarm_event,
        lbs,
        lbs_4g,
        wifi,
        wifi_lbs,
        time_request,
        bad_crc,
        one_byte_long,
        garbage_before_frame,
        truncated,
        oversize,
        command_reply,
        command_reply_long,
    );
}

fn session() -> Gt06Session {
    Gt06Session::new(&SessionOptions::default()).with_clock(clock)
}

fn strict_session() -> Gt06Session {
    let options = SessionOptions {
        strict_checksum: true,
        ..SessionOptions::default()
    };
    Gt06Session::new(&options).with_clock(clock)
}

fn whole(bytes: &[u8]) -> Vec<Result<Item, FrameError>> {
    run(&mut session(), &[bytes])
}

fn byte_at_a_time(bytes: &[u8]) -> Vec<Result<Item, FrameError>> {
    let chunks: Vec<&[u8]> = bytes.chunks(1).collect();
    run(&mut session(), &chunks)
}

fn frame_of(item: &Result<Item, FrameError>) -> &Decoded {
    match item {
        Ok(Item::Frame(d)) => d,
        other => panic!("expected a frame, got {other:?}"),
    }
}

#[test]
fn every_fixture_gives_the_same_items_whole_and_byte_at_a_time() {
    for (name, load) in fixtures::ALL {
        let bytes = load();
        let a = whole(&bytes);
        let b = byte_at_a_time(&bytes);
        assert!(!a.is_empty(), "{name}: no item");
        assert_eq!(a, b, "{name}");
    }
    // And all of them back to back, in one read and in 7-byte reads.
    let mut all = Vec::new();
    for (_, f) in fixtures::ALL.iter().filter(|(n, _)| *n != "oversize") {
        all.extend(f());
    }
    same_items_in_reads(session, &all, &[7]);
}

#[test]
fn a_login_is_answered_and_names_the_session() {
    let mut s = session();
    let items = run(&mut s, &[&fixtures::login()]);
    let d = frame_of(&items[0]);
    assert_eq!(d.integrity, Integrity::Verified);
    assert_eq!(d.messages[0].kind, MessageKind::Login);
    assert_eq!(d.messages[0].device_id.as_deref(), Some("864717003283581"));
    assert_eq!(
        d.reply.as_deref(),
        Some(&[0x78, 0x78, 0x05, 0x01, 0x00, 0x09, 0x55, 0x94, 0x0d, 0x0a][..])
    );
    assert_eq!(s.device_id(), Some("864717003283581"));
    // Later messages carry the ID.
    let items = run(&mut s, &[&fixtures::location()]);
    assert_eq!(
        frame_of(&items[0]).messages[0].device_id.as_deref(),
        Some("864717003283581")
    );
}

#[test]
fn positions_before_a_login_have_no_device_id() {
    let items = whole(&fixtures::location());
    let m = &frame_of(&items[0]).messages[0];
    assert_eq!(m.device_id, None);
    assert!(m.position.is_some());
}

#[test]
fn the_login_zone_word_shifts_later_times_unless_configured() {
    let location = fixtures::location(); // device time 2015-10-20 14:21:11
    let mut s = session();
    let items = run(&mut s, &[&fixtures::login_zone(), &location]);
    assert_eq!(s.utc_offset_minutes(), -240);
    let p = frame_of(&items[1]).messages[0].position.clone().unwrap();
    assert_eq!(
        p.time,
        Utc.with_ymd_and_hms(2015, 10, 20, 18, 21, 11).unwrap()
    );

    let options = SessionOptions {
        device_utc_offset_minutes: Some(60),
        ..SessionOptions::default()
    };
    let mut s = Gt06Session::new(&options);
    let items = run(&mut s, &[&fixtures::login_zone(), &location]);
    let p = frame_of(&items[1]).messages[0].position.clone().unwrap();
    assert_eq!(
        p.time,
        Utc.with_ymd_and_hms(2015, 10, 20, 13, 21, 11).unwrap()
    );

    // A later login without a zone word goes back to UTC.
    let mut s = session();
    let items = run(
        &mut s,
        &[&fixtures::login_zone(), &fixtures::login(), &location],
    );
    let p = frame_of(&items[2]).messages[0].position.clone().unwrap();
    assert_eq!(
        p.time,
        Utc.with_ymd_and_hms(2015, 10, 20, 14, 21, 11).unwrap()
    );
}

#[test]
fn several_frames_in_one_read_and_one_frame_over_many_reads() {
    let mut stream = fixtures::login();
    stream.extend(fixtures::heartbeat());
    stream.extend(fixtures::location());
    let items = whole(&stream);
    assert_eq!(items.len(), 3);
    assert_eq!(frame_of(&items[1]).messages[0].kind, MessageKind::Heartbeat);
    assert_eq!(frame_of(&items[2]).messages[0].kind, MessageKind::Position);

    let location = fixtures::location();
    let (head, tail) = location.split_at(11);
    let mut s = session();
    let mut buf = BytesMut::from(head);
    assert_eq!(s.decode(&mut buf), Ok(None));
    assert_eq!(buf.len(), 11, "a partial frame stays in the buffer");
    assert!(
        buf.capacity() >= location.len(),
        "space reserved for the rest"
    );
    buf.extend_from_slice(tail);
    assert!(matches!(s.decode(&mut buf), Ok(Some(Item::Frame(_)))));
    assert!(buf.is_empty());
}

#[test]
fn garbage_before_a_frame_is_skipped_and_counted() {
    let items = whole(&fixtures::garbage_before_frame());
    assert_eq!(
        items[0],
        Ok(Item::Rejected(DecodeError::Garbage { skipped: 5 }))
    );
    assert_eq!(frame_of(&items[1]).messages[0].kind, MessageKind::Login);
    // Noise is held until a marker shows where it ends (even one split across reads).
    let mut s = session();
    let mut buf = BytesMut::from(&[0x01, 0x02, 0x78][..]);
    assert_eq!(s.decode(&mut buf), Ok(None));
    buf.extend_from_slice(&fixtures::login()[1..]);
    assert_eq!(
        s.decode(&mut buf),
        Ok(Some(Item::Rejected(DecodeError::Garbage { skipped: 2 })))
    );
    assert!(matches!(s.decode(&mut buf), Ok(Some(Item::Frame(_)))));
    // Noise beyond the maximum frame size is dropped in runs of that size.
    let options = SessionOptions {
        max_frame_len: Some(16),
        ..SessionOptions::default()
    };
    let items = run(&mut Gt06Session::new(&options), &[&[0u8; 40]]);
    assert_eq!(
        items,
        vec![
            Ok(Item::Rejected(DecodeError::Garbage { skipped: 16 })),
            Ok(Item::Rejected(DecodeError::Garbage { skipped: 16 })),
        ]
    );
}

#[test]
fn a_truncated_frame_is_rejected_and_the_next_one_decoded() {
    let items = whole(&fixtures::truncated());
    assert_eq!(
        items[0],
        Ok(Item::Rejected(DecodeError::Truncated {
            what: "frame",
            needed: 18,
            available: 12
        }))
    );
    assert_eq!(frame_of(&items[1]).messages[0].kind, MessageKind::Heartbeat);
    assert_eq!(items.len(), 2);
}

#[test]
fn a_length_field_above_the_maximum_closes_the_connection() {
    let items = whole(&fixtures::oversize());
    assert_eq!(
        items,
        vec![Err(FrameError::Oversize {
            size: 65541,
            max: DEFAULT_MAX_FRAME_LEN
        })]
    );
    let options = SessionOptions {
        max_frame_len: Some(20),
        ..SessionOptions::default()
    };
    let mut s = Gt06Session::new(&options);
    let items = run(&mut s, &[&fixtures::location()]); // 36 bytes declared
    assert_eq!(items, vec![Err(FrameError::Oversize { size: 36, max: 20 })]);
}

#[test]
fn a_marker_without_a_trailer_within_the_maximum_is_garbage() {
    let options = SessionOptions {
        max_frame_len: Some(64),
        ..SessionOptions::default()
    };
    let mut s = Gt06Session::new(&options);
    // 78 78 00 69: a Wi-Fi header (length = AP count 0), then noise and no 0D 0A.
    let mut bytes = vec![0x78, 0x78, 0x00, 0x69];
    bytes.extend(std::iter::repeat_n(0x55, 80));
    let items = run(&mut s, &[&bytes]);
    assert_eq!(
        items,
        vec![
            // the false start
            Ok(Item::Rejected(DecodeError::Garbage { skipped: 1 })),
            // then noise in runs of the maximum (the rest waits for a marker or more noise)
            Ok(Item::Rejected(DecodeError::Garbage { skipped: 64 })),
        ]
    );
}

#[test]
fn a_wrong_crc_is_flagged_or_rejected_when_strict() {
    let bytes = fixtures::bad_crc();
    let items = whole(&bytes);
    let d = frame_of(&items[0]);
    assert!(matches!(
        d.integrity,
        Integrity::Mismatch(Mismatch::Checksum { actual: 0x8081, .. })
    ));
    assert!(d.messages[0].position.is_some());
    assert!(d.reply.is_some());

    let items = run(&mut strict_session(), &[&bytes]);
    assert!(matches!(
        items[0],
        Ok(Item::Rejected(DecodeError::BadChecksum {
            actual: 0x8081,
            ..
        }))
    ));
}

#[test]
fn wifi_frames_with_a_count_for_a_length_are_cut_at_the_trailer() {
    let bytes = fixtures::wifi();
    let items = whole(&bytes);
    let d = frame_of(&items[0]);
    assert_eq!(
        d.integrity,
        Integrity::Mismatch(Mismatch::Length {
            declared: 3,
            actual: 57
        })
    );
    let m = &d.messages[0];
    assert_eq!(m.kind, MessageKind::Wifi);
    assert_eq!(m.wifi.len(), 3);
    assert_eq!(m.cells.len(), 5);
    assert_eq!(
        d.reply.as_deref(),
        Some(&[0x78, 0x78, 0x00, 0x69, 0x16, 0x04, 0x13, 0x03, 0x18, 0x49, 0x0d, 0x0a][..])
    );
    let items = run(&mut strict_session(), &[&bytes]);
    assert_eq!(
        items[0],
        Ok(Item::Rejected(DecodeError::BadLength {
            declared: 3,
            actual: 57
        }))
    );
}

#[test]
fn a_frame_one_byte_longer_than_its_length_still_decodes() {
    let items = whole(&fixtures::one_byte_long());
    let d = frame_of(&items[0]);
    assert!(matches!(
        d.integrity,
        Integrity::Mismatch(Mismatch::Length {
            declared: 21,
            actual: 22
        })
    ));
    assert!(d.messages[0].position.is_some());
    assert_eq!(d.reply, None, "no serial to echo");
}

#[test]
fn time_requests_get_the_server_clock() {
    let items = whole(&fixtures::time_request());
    let d = frame_of(&items[0]);
    assert_eq!(d.messages[0].kind, MessageKind::TimeRequest);
    // 78 78 0b 8a | 24 03 05 06 07 08 | serial 0006 | crc | 0d 0a
    let reply = d.reply.clone().unwrap();
    assert_eq!(&reply[..10], &[0x78, 0x78, 0x0b, 0x8a, 24, 3, 5, 6, 7, 8]);
    assert_eq!(&reply[10..12], &[0x00, 0x06]);
    let f = frame::Frame::split(&reply).unwrap();
    let (computed, carried) = f.crc.unwrap();
    assert_eq!(computed, carried);
}

#[test]
fn alarms_come_from_the_alarm_byte_and_the_info_bits() {
    let cases = [
        (fixtures::alarm_sos(), Alarm::Sos),
        (fixtures::alarm_removal(), Alarm::Removal),
        (fixtures::alarm_tamper_26(), Alarm::Tamper),
        (fixtures::alarm_low_battery_lbs(), Alarm::LowBattery),
        (fixtures::alarm_event(), Alarm::Sos),
    ];
    for (bytes, alarm) in cases {
        let items = whole(&bytes);
        let m = &frame_of(&items[0]).messages[0];
        assert_eq!(m.kind, MessageKind::Alarm);
        assert!(m.alarms.contains(&alarm), "{alarm:?} in {:?}", m.alarms);
    }
}

#[test]
fn long_form_unknown_packets_are_not_answered_short_ones_are() {
    let unknown_long = encode::frame_long(0xfd, &[1, 2, 3], 7);
    let d = frame_of(&whole(&unknown_long)[0]).clone();
    assert!(d.messages.is_empty());
    assert_eq!(d.reply, None);
    let unknown_short = encode::frame(0x1f, &[1, 2, 3], 7);
    let d = frame_of(&whole(&unknown_short)[0]).clone();
    assert!(d.messages.is_empty());
    assert_eq!(d.reply, Some(encode::ack(0x1f, 7)));
}

#[test]
fn a_frame_too_short_for_serial_and_crc_is_unchecked() {
    let bytes = [0x78, 0x78, 0x01, 0x08, 0x0d, 0x0a];
    let d = frame_of(&whole(&bytes)[0]).clone();
    assert_eq!(d.integrity, Integrity::Unchecked);
    assert_eq!(d.reply, None);
    assert!(matches!(
        run(&mut strict_session(), &[&bytes])[0],
        Ok(Item::Rejected(DecodeError::Truncated { .. }))
    ));
}

#[test]
fn decode_frame_takes_a_capture_as_one_frame() {
    // A login whose length byte says 13 but carries only the terminal ID and one byte.
    let bytes = [
        0x78, 0x78, 0x0d, 0x01, 0x03, 0x59, 0x33, 0x90, 0x75, 0x00, 0x52, 0x44, 0x34, 0x0d, 0x0a,
    ];
    let mut s = session();
    let d = s.decode_frame(&bytes).unwrap();
    assert_eq!(d.messages[0].device_id.as_deref(), Some("359339075005244"));
    assert!(d.integrity.is_mismatch());
    assert!(s.decode_frame(&[0x24, 0x24]).is_err());
}

mod split_reads {
    use super::*;
    use proptest::prelude::*;

    fn stream(pieces: &[(usize, Vec<u8>)]) -> Vec<u8> {
        let usable: Vec<_> = fixtures::ALL
            .iter()
            .filter(|(name, _)| *name != "oversize")
            .collect();
        let mut out = Vec::new();
        for (which, noise) in pieces {
            out.extend((usable[which % usable.len()].1)());
            out.extend_from_slice(noise);
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// Golden frames with noise between them, read in arbitrary pieces, give the items of
        /// one read.
        #[test]
        fn any_split_gives_the_same_items(
            pieces in proptest::collection::vec(
                (any::<usize>(), proptest::collection::vec(any::<u8>(), 0..6)),
                1..6,
            ),
            cuts in proptest::collection::vec(any::<proptest::sample::Index>(), 0..8),
        ) {
            let bytes = stream(&pieces);
            let mut at: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
            at.sort_unstable();
            let mut chunks = Vec::new();
            let mut from = 0;
            for to in at {
                chunks.push(&bytes[from..to]);
                from = to;
            }
            chunks.push(&bytes[from..]);
            prop_assert_eq!(run(&mut session(), &[&bytes]), run(&mut session(), &chunks));
        }
    }
}

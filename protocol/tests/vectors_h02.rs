//! Replays `fixtures/vectors/traccar/h02.jsonl` (99 records) through the H02 session.
//!
//! Each `test` group runs through one session, in file order. Decoder records are handed to
//! [`H02Session::decode_frame`] as whole frames, the way the reference decoder tests bypass its
//! splitter (the binary records have sizes — 42, 46, 48 bytes — that one connection's splitter
//! would never cut all of); `frame` records go through [`H02Session::next_frame`]. A second test
//! checks that the text frames decode the same through the full `Session::decode` path, and a
//! third that a stream of them gives the same items whole and byte at a time.

mod common;

use std::collections::BTreeMap;

use bytes::BytesMut;
use chrono::{DateTime, TimeZone, Utc};
use ewall_protocol::h02::{H02Session, Split};
use ewall_protocol::{Item, Message, MessageKind, Session, SessionOptions};

use common::{Exception, Vector};

/// Records that do not pass, with the reason. Empty: every record passes.
const NOT_PASSING: &[Exception] = &[];

/// Records that pass, out of 99.
const EXPECTED_PASSES: usize = 99;

/// Attribute keys compared against our model; the others (status word, command result text)
/// only need the frame to decode.
const MODELLED: &[&str] = &["alarm", "batteryLevel", "speed", "course"];

/// The session clock for the replay: fixed, so replies and undated fixes are reproducible.
fn clock() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 15, 12, 0, 0).unwrap()
}

fn session() -> H02Session {
    H02Session::with_clock(&SessionOptions::default(), clock)
}

fn check_decoder(v: &Vector, session: &mut H02Session) -> Result<(), String> {
    let decoded = session
        .decode_frame(&v.bytes())
        .map_err(|e| format!("rejected: {e}"))?;
    // The messages the service would keep: not the login announcement.
    let content: Vec<&Message> = decoded
        .messages
        .iter()
        .filter(|m| m.kind != MessageKind::Login)
        .collect();
    common::check_messages(v, &content, MODELLED, clock())
}

fn check_frame(v: &Vector, session: &mut H02Session) -> Result<(), String> {
    let want = v.expected_frame()?;
    let mut buf = BytesMut::from(&v.bytes()[..]);
    loop {
        match session.next_frame(&mut buf) {
            Ok(Some(Split::Frame(frame))) => return common::same_cut(&frame, &want),
            Ok(Some(Split::Skipped(_))) => continue,
            Ok(None) => return Err("no frame cut".into()),
            Err(e) => return Err(format!("frame error: {e}")),
        }
    }
}

#[test]
fn traccar_vectors() {
    let vectors = common::load("h02");
    assert_eq!(vectors.len(), 99);
    let tally = common::replay(&vectors, session, |session, v| {
        if v.check == "frame" {
            check_frame(v, session)
        } else {
            check_decoder(v, session)
        }
    });
    tally.assert_passing("h02", NOT_PASSING, EXPECTED_PASSES);
}

/// Text decoder records through `Session::decode` (splitter + decoder) give exactly what
/// `decode_frame` gives.
#[test]
fn text_vectors_decode_the_same_through_the_splitter() {
    let mut sessions: BTreeMap<(String, String), (H02Session, H02Session)> = BTreeMap::new();
    for v in common::load("h02")
        .iter()
        .filter(|v| v.check != "frame" && v.encoding == "text")
    {
        let (framed, direct) = sessions
            .entry(v.group())
            .or_insert_with(|| (session(), session()));
        let mut buf = BytesMut::from(&v.bytes()[..]);
        let item = framed.decode(&mut buf).unwrap();
        assert!(buf.is_empty(), "{}: {} bytes left", v.origin(), buf.len());
        let want = match direct.decode_frame(&v.bytes()) {
            Ok(decoded) => Item::Frame(decoded),
            Err(e) => Item::Rejected(e),
        };
        assert_eq!(item, Some(want), "{}", v.origin());
    }
}

/// All text records and the 32-byte binary records as one stream: the same items whole and one
/// byte at a time, and none rejected.
#[test]
fn vector_stream_whole_and_byte_at_a_time() {
    let stream: Vec<u8> = common::load("h02")
        .iter()
        .filter(|v| v.check != "frame")
        .map(Vector::bytes)
        .filter(|b| b.first() == Some(&b'*') || b.len() == 32)
        .flatten()
        .collect();
    let run = |chunk: usize| {
        let mut s = session();
        let mut buf = BytesMut::new();
        let mut items = Vec::new();
        for piece in stream.chunks(chunk) {
            buf.extend_from_slice(piece);
            while let Some(item) = s.decode(&mut buf).unwrap() {
                items.push(item);
            }
        }
        assert!(buf.is_empty());
        items
    };
    let whole = run(stream.len());
    assert_eq!(whole, run(1));
    assert!(whole.iter().all(|i| matches!(i, Item::Frame(_))));
    assert_eq!(whole.len(), 79);
}

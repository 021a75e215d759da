//! Replays every record of `fixtures/vectors/traccar/watch.jsonl` (57 records) through the watch
//! session and framer, following the rules of the vector README and the protocol brief:
//!
//! - each `test` group runs in file order through one session and one receive buffer;
//! - `position`: exactly one position comes out, plausible, and matching the reference within
//!   1e-5 degrees (and its time and validity) when the record states one;
//! - `null`: no position and no rejected frame;
//! - `attribute`: `alarm` must be among our alarms; keys we model are compared; keys we do not
//!   model (`bloodOxygen`, `temp1`, `audio`) only need the frame to decode without error;
//! - `attributes` / `notnull`: at least one message, no rejected frame;
//! - `frame`: the framer cuts exactly the expected (un-escaped) frame from the stream.
//!
//! Every record passes; there is no list of exceptions. The length field disagrees with the
//! content in 14 of the decoder frames; they are accepted and flagged
//! (`Integrity::Mismatch(Mismatch::Length)`), which the test counts.

mod common;

use bytes::BytesMut;
use chrono::Utc;
use ewall_protocol::watch::framing::{self, Cut, Framer};
use ewall_protocol::watch::{WatchSession, DEFAULT_MAX_FRAME_LEN};
use ewall_protocol::{Item, Message, Session, SessionOptions};

use common::{Exception, Vector};

/// Records expected to fail, with the reason. Empty: all pass.
const NOT_PASSING: &[Exception] = &[];

/// Passing records per check kind, and the total.
const EXPECTED_PASSES: [(&str, usize); 5] = [
    ("attribute", 6),
    ("attributes", 6),
    ("frame", 7),
    ("null", 4),
    ("position", 34),
];
const EXPECTED_TOTAL: usize = 57;

/// Attribute keys compared against our model; `bloodOxygen`, `temp1` and `audio` are not
/// modelled and only need the frame to decode.
const MODELLED: &[&str] = &["alarm", "batteryLevel", "steps"];

/// Frames whose length field disagrees with their content (accepted and flagged).
const EXPECTED_LENGTH_MISMATCHES: usize = 14;

#[test]
fn watch_vectors() {
    let vectors = common::load("watch");
    assert_eq!(vectors.len(), 57);
    let mut mismatches = 0;
    // one session and receive buffer per test group
    let new = || {
        (
            WatchSession::new(&SessionOptions::default()),
            BytesMut::new(),
        )
    };
    let tally = common::replay(&vectors, new, |(session, buf), v| {
        if v.check == "frame" {
            return check_frame(v);
        }
        buf.extend_from_slice(&v.bytes());
        let mut items = Vec::new();
        while let Some(item) = session.decode(buf).expect("no frame error") {
            items.push(item);
        }
        mismatches += items
            .iter()
            .filter(|i| matches!(i, Item::Frame(d) if d.integrity.is_mismatch()))
            .count();
        check_decoded(v, &items)
    });
    println!("watch length-field mismatches accepted and flagged: {mismatches}");
    tally.assert_passing("watch", NOT_PASSING, EXPECTED_TOTAL);
    tally.assert_passes_per_check(&EXPECTED_PASSES);
    assert_eq!(mismatches, EXPECTED_LENGTH_MISMATCHES);
}

/// The framer must cut exactly `expected.frame` (un-escaped) from the front of the stream.
fn check_frame(v: &Vector) -> Result<(), String> {
    let stream = v.bytes();
    let expected = v.expected_frame()?;
    let mut framer = Framer::new(DEFAULT_MAX_FRAME_LEN);
    let mut at = 0;
    loop {
        let rest = stream.get(at..).unwrap_or_default();
        match framer.next_cut(rest).map_err(|e| e.to_string())? {
            Cut::Blank(n) | Cut::Garbage(n) | Cut::Truncated(n) => at += n,
            Cut::Frame(n) => return common::same_cut(&framing::unescape(&rest[..n]), &expected),
            Cut::Incomplete => return Err("no complete frame".into()),
        }
    }
}

/// Applies a decoder check to the items one record produced: none may be rejected, and the
/// messages of all of them count.
fn check_decoded(v: &Vector, items: &[Item]) -> Result<(), String> {
    let mut messages: Vec<&Message> = Vec::new();
    for item in items {
        match item {
            Item::Frame(d) => messages.extend(&d.messages),
            Item::Rejected(e) => return Err(format!("rejected: {e}")),
        }
    }
    common::check_messages(v, &messages, MODELLED, Utc::now())
}

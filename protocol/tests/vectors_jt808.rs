//! Replays the captured JT/T 808 frames in `fixtures/vectors/traccar/jt808.jsonl` and checks
//! what the reference asserts about each (see the README next to the file).
//!
//! The decoder records are stored un-escaped, so they go to `Jt808Session::decode_frame`, one
//! session per test group in file order. Line 232 is the one record still escaped on the wire;
//! it goes through the stream path (`Session::decode`). The `frame` records are fed to the
//! framer as a byte stream and the first frame it cuts must equal the expected bytes. A record
//! the reference decodes under a model override is decoded with that model set on the session.

mod common;

use bytes::BytesMut;
use chrono::Utc;
use ewall_protocol::jt808::framer::{Found, Framer};
use ewall_protocol::jt808::{Jt808Session, DEFAULT_MAX_FRAME_LEN};
use ewall_protocol::{Item, Session, SessionOptions};

use common::{Exception, Vector};

/// Records we do not pass, with the reason. The records whose meaning depends on the device
/// model (MV710G, AL300, C5L, ...) pass once the session is told the model, as the service
/// does for a device registered with one.
const NOT_PASSING: &[Exception] = &[];

/// Records that pass, of 116.
const EXPECTED_PASSING: usize = 116;

/// Attribute keys compared against our model. The others (vehicle supply voltage, OBD,
/// temperatures, lock data, driver IDs, ICCID, free text, ...) only need the frame to decode.
const MODELLED: &[&str] = &["alarm", "batteryLevel", "battery", "sat", "charge", "steps"];

/// The escaped record (see the vectors README, point 2).
const ESCAPED_LINE: u32 = 232;

fn check_decoded(v: &Vector, item: &Item) -> Result<(), String> {
    match item {
        Item::Frame(d) => common::check_decoded(v, d, MODELLED, Utc::now()),
        Item::Rejected(e) => Err(format!("rejected: {e}")),
    }
}

fn check_frame(v: &Vector) -> Result<(), String> {
    let want = v.expected_frame()?;
    let stream = v.bytes();
    let mut framer = Framer::new(DEFAULT_MAX_FRAME_LEN);
    let mut at = 0;
    loop {
        match framer.next(&stream[at..]) {
            Ok(Some(Found::Garbage { len })) => at += len,
            Ok(Some(Found::Frame { bytes, .. })) => return common::same_cut(&bytes, &want),
            Ok(Some(Found::Invalid { error, .. })) => return Err(format!("invalid: {error}")),
            Ok(None) => return Err("no frame found".into()),
            Err(e) => return Err(e.to_string()),
        }
    }
}

#[test]
fn traccar_jt808_vectors() {
    let vectors = common::load("jt808");
    assert_eq!(vectors.len(), 116);
    let tally = common::replay(
        &vectors,
        || Jt808Session::new(&SessionOptions::default()),
        |session, v| {
            if v.check == "frame" {
                return check_frame(v);
            }
            session.set_model(v.model());
            let bytes = v.bytes();
            let item = if v.line == ESCAPED_LINE {
                let mut buf = BytesMut::from(&bytes[..]);
                session
                    .decode(&mut buf)
                    .map_err(|e| e.to_string())?
                    .ok_or("stream gave no item")?
            } else {
                session.decode_frame(&bytes)
            };
            check_decoded(v, &item)
        },
    );
    tally.assert_passing("jt808", NOT_PASSING, EXPECTED_PASSING);
}

#[test]
fn escaped_record_needs_the_stream_path() {
    // Fed as if un-escaped, the record's check code and length do not hold; through the
    // stream path they do.
    let v = common::load("jt808")
        .into_iter()
        .find(|v| v.line == ESCAPED_LINE)
        .unwrap();
    let mut session = Jt808Session::new(&SessionOptions::default());
    let Item::Frame(raw) = session.decode_frame(&v.bytes()) else {
        panic!("lenient session accepts it");
    };
    assert!(raw.integrity.is_mismatch());
    let mut buf = BytesMut::from(&v.bytes()[..]);
    let Some(Item::Frame(d)) = session.decode(&mut buf).unwrap() else {
        panic!("stream path decodes it");
    };
    assert!(!d.integrity.is_mismatch());
    assert!(buf.is_empty());
}

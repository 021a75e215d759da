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
use chrono::{DateTime, Duration, NaiveDateTime, TimeZone, Utc};
use ewall_protocol::h02::{H02Session, Split};
use ewall_protocol::{Alarm, Decoded, Item, MessageKind, Session, SessionOptions};
use serde_json::Value;

use common::{hex_to_bytes, load, Vector};

/// Records that do not pass, with the reason. Empty: every record passes.
const KNOWN_FAILURES: &[(u32, &str)] = &[];

/// Records that pass, out of 99.
const EXPECTED_PASSES: usize = 99;

/// The session clock for the replay: fixed, so replies and undated fixes are reproducible.
fn clock() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 15, 12, 0, 0).unwrap()
}

fn session() -> H02Session {
    H02Session::with_clock(&SessionOptions::default(), clock)
}

/// The reference's alarm names mapped to ours.
fn alarm(name: &str) -> Option<Alarm> {
    Some(match name {
        "sos" => Alarm::Sos,
        "powerCut" => Alarm::PowerCut,
        "powerOff" => Alarm::PowerOff,
        "lowBattery" | "lowPower" => Alarm::LowBattery,
        "removing" => Alarm::Removal,
        "tampering" => Alarm::Tamper,
        "vibration" => Alarm::Vibration,
        "overspeed" => Alarm::Overspeed,
        "fallDown" => Alarm::Fall,
        "geofenceEnter" => Alarm::GeofenceEnter,
        "geofenceExit" => Alarm::GeofenceExit,
        "geofence" => Alarm::Geofence,
        "movement" => Alarm::Movement,
        "accident" => Alarm::Accident,
        "braking" => Alarm::HarshBraking,
        "acceleration" => Alarm::HarshAcceleration,
        "cornering" => Alarm::HarshCornering,
        "fatigueDriving" => Alarm::Fatigue,
        "fault" => Alarm::Fault,
        "door" => Alarm::Door,
        "jamming" => Alarm::Jamming,
        "lock" | "unlock" => Alarm::Lock,
        "temperature" => Alarm::Temperature,
        "parking" => Alarm::Parking,
        "general" => Alarm::General,
        "gpsAntennaCut" => Alarm::GnssAntenna,
        _ => return None,
    })
}

/// The messages the service would keep: not the login announcement.
fn content(decoded: &Decoded) -> impl Iterator<Item = &ewall_protocol::Message> {
    decoded
        .messages
        .iter()
        .filter(|m| m.kind != MessageKind::Login)
}

/// Positions the service would keep: with a device ID.
fn positions(decoded: &Decoded) -> Vec<&ewall_protocol::Position> {
    decoded
        .messages
        .iter()
        .filter(|m| m.device_id.is_some())
        .filter_map(|m| m.position.as_ref())
        .collect()
}

fn in_range(p: &ewall_protocol::Position) -> Result<(), String> {
    let earliest = Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).unwrap();
    if p.time < earliest || p.time > clock() + Duration::hours(25) {
        return Err(format!("time {} out of range", p.time));
    }
    if !(-90.0..=90.0).contains(&p.lat) || !(-180.0..=180.0).contains(&p.lon) {
        return Err(format!("coordinates {}, {} out of range", p.lat, p.lon));
    }
    if p.speed_kmh
        .is_some_and(|s| !(0.0..=869.0 * 1.852).contains(&s))
    {
        return Err(format!("speed {:?} out of range", p.speed_kmh));
    }
    if p.course.is_some_and(|c| !(0.0..=360.0).contains(&c)) {
        return Err(format!("course {:?} out of range", p.course));
    }
    Ok(())
}

fn check_position(v: &Vector, decoded: &Decoded) -> Result<(), String> {
    let found = positions(decoded);
    let Some(p) = found.first() else {
        return Err("no position with a device id".into());
    };
    let e = &v.expected;
    if let Some(time) = e.get("time").and_then(Value::as_str) {
        let want = NaiveDateTime::parse_from_str(time, "%Y-%m-%d %H:%M:%S%.3f")
            .map_err(|err| format!("expected time {time:?}: {err}"))?
            .and_utc();
        if p.time != want {
            return Err(format!("time {} != {want}", p.time));
        }
    }
    if let Some(valid) = e.get("valid").and_then(Value::as_bool) {
        if p.valid != valid {
            return Err(format!("valid {} != {valid}", p.valid));
        }
    }
    for (key, got) in [("latitude", p.lat), ("longitude", p.lon)] {
        if let Some(want) = e.get(key).and_then(Value::as_f64) {
            if (got - want).abs() > 1e-5 {
                return Err(format!("{key} {got} != {want}"));
            }
        }
    }
    found.iter().try_for_each(|p| in_range(p))
}

fn check_attribute(v: &Vector, decoded: &Decoded) -> Result<(), String> {
    let key = v.expected["key"].as_str().unwrap_or_default();
    let value = &v.expected["value"];
    let Some(first) = content(decoded).next() else {
        return Err("no message".into());
    };
    match key {
        "alarm" => {
            let names = value.as_str().unwrap_or_default();
            for name in names.split(',') {
                let want = alarm(name).ok_or_else(|| format!("unmapped alarm {name}"))?;
                if !first.alarms.contains(&want) {
                    return Err(format!("alarm {want:?} not in {:?}", first.alarms));
                }
            }
            Ok(())
        }
        "batteryLevel" => {
            let want = value.as_u64().map(|b| b as u8);
            (first.status.battery_pct == want)
                .then_some(())
                .ok_or_else(|| format!("battery {:?} != {want:?}", first.status.battery_pct))
        }
        "speed" => {
            let want = value.as_f64().map(|kn| kn * 1.852);
            let got = first.position.as_ref().and_then(|p| p.speed_kmh);
            match (got, want) {
                (Some(g), Some(w)) if (g - w).abs() < 1e-6 => Ok(()),
                _ => Err(format!("speed {got:?} km/h != {want:?} km/h")),
            }
        }
        "course" => {
            let want = value.as_f64();
            let got = first.position.as_ref().and_then(|p| p.course);
            (got == want)
                .then_some(())
                .ok_or_else(|| format!("course {got:?} != {want:?}"))
        }
        // Keys we do not model (status word, command result text): decoding is enough.
        _ => Ok(()),
    }
}

fn check_decoder(v: &Vector, session: &mut H02Session) -> Result<(), String> {
    let decoded = session
        .decode_frame(&v.bytes())
        .map_err(|e| format!("rejected: {e}"))?;
    match v.check.as_str() {
        "position" | "positions" => check_position(v, &decoded),
        "null" => positions(&decoded)
            .is_empty()
            .then_some(())
            .ok_or_else(|| "unexpected position".into()),
        "attribute" => check_attribute(v, &decoded),
        "attributes" | "notnull" => content(&decoded)
            .next()
            .map(|_| ())
            .ok_or_else(|| "no message".into()),
        other => Err(format!("unknown check {other}")),
    }
}

fn check_frame(v: &Vector, session: &mut H02Session) -> Result<(), String> {
    let want = hex_to_bytes(v.expected["frame"].as_str().unwrap_or_default());
    let mut buf = BytesMut::from(&v.bytes()[..]);
    loop {
        match session.next_frame(&mut buf) {
            Ok(Some(Split::Frame(frame))) if frame[..] == want[..] => return Ok(()),
            Ok(Some(Split::Frame(frame))) => {
                return Err(format!(
                    "cut {} bytes, expected {}",
                    frame.len(),
                    want.len()
                ))
            }
            Ok(Some(Split::Skipped(_))) => continue,
            Ok(None) => return Err("no frame cut".into()),
            Err(e) => return Err(format!("frame error: {e}")),
        }
    }
}

#[test]
fn traccar_vectors() {
    let vectors = load("h02");
    assert_eq!(vectors.len(), 99);
    let mut sessions: BTreeMap<String, H02Session> = BTreeMap::new();
    let mut tally: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut failures: Vec<(u32, String)> = Vec::new();
    for v in &vectors {
        let group = format!("{}/{}", v.source, v.test.as_deref().unwrap_or(""));
        let session = sessions.entry(group).or_insert_with(session);
        let result = if v.check == "frame" {
            check_frame(v, session)
        } else {
            check_decoder(v, session)
        };
        let entry = tally.entry(v.check.as_str()).or_default();
        entry.1 += 1;
        match result {
            Ok(()) => entry.0 += 1,
            Err(reason) => failures.push((v.line, format!("{}: {reason}", v.origin()))),
        }
    }
    for (check, (pass, total)) in &tally {
        println!("{check:>10}: {pass}/{total}");
    }
    let passed: usize = tally.values().map(|(p, _)| p).sum();
    println!("     total: {passed}/{}", vectors.len());
    for (_, reason) in &failures {
        println!("FAIL {reason}");
    }
    let failing: Vec<u32> = failures.iter().map(|(line, _)| *line).collect();
    let known: Vec<u32> = KNOWN_FAILURES.iter().map(|(line, _)| *line).collect();
    assert_eq!(failing, known, "failing records differ from the known list");
    assert_eq!(passed, EXPECTED_PASSES);
}

/// Text decoder records through `Session::decode` (splitter + decoder) give exactly what
/// `decode_frame` gives.
#[test]
fn text_vectors_decode_the_same_through_the_splitter() {
    let mut sessions: BTreeMap<String, (H02Session, H02Session)> = BTreeMap::new();
    for v in load("h02")
        .iter()
        .filter(|v| v.check != "frame" && v.encoding == "text")
    {
        let group = v.test.clone().unwrap_or_default();
        let (framed, direct) = sessions
            .entry(group)
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
    let stream: Vec<u8> = load("h02")
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

//! Replays every record of `fixtures/vectors/traccar/watch.jsonl` (57 records) through the watch
//! session and framer, following the rules of the vector README and the protocol brief:
//!
//! - each `test` group runs in file order through one session and one receive buffer;
//! - `position`: exactly one position comes out, matching the reference within 1e-5 degrees
//!   (and its time and validity) when the record states one, otherwise plausible;
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

use std::collections::BTreeMap;

use bytes::BytesMut;
use chrono::{Datelike, NaiveDateTime, Utc};
use ewall_protocol::watch::framing::{self, Cut, Framer};
use ewall_protocol::watch::{WatchSession, DEFAULT_MAX_FRAME_LEN};
use ewall_protocol::{Decoded, Item, Message, Session, SessionOptions};
use serde_json::Value;

use common::Vector;

/// Records expected to fail, by line, with the reason. Empty: all pass.
const KNOWN_FAILURES: &[(&str, u32, &str)] = &[];

/// Passing records per check kind, and the total.
const EXPECTED_PASSES: [(&str, usize); 6] = [
    ("attribute", 6),
    ("attributes", 6),
    ("frame", 7),
    ("null", 4),
    ("position", 34),
    ("total", 57),
];

/// Frames whose length field disagrees with their content (accepted and flagged).
const EXPECTED_LENGTH_MISMATCHES: usize = 14;

#[test]
fn watch_vectors() {
    let vectors = common::load("watch");
    assert_eq!(vectors.len(), 57);

    let mut tally: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut failures = Vec::new();
    let mut mismatches = 0;

    // one session and buffer per (source file, test method), in file order
    let mut groups: Vec<((String, String), Vec<&Vector>)> = Vec::new();
    for v in &vectors {
        let key = (v.source.clone(), v.test.clone().unwrap_or_default());
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, group)) => group.push(v),
            None => groups.push((key, vec![v])),
        }
    }

    for (_, group) in groups {
        let mut session = WatchSession::new(&SessionOptions::default());
        let mut buf = BytesMut::new();
        for v in group {
            let outcome = if v.check == "frame" {
                check_frame(v)
            } else {
                buf.extend_from_slice(&v.bytes());
                let mut items = Vec::new();
                while let Some(item) = session.decode(&mut buf).expect("no frame error") {
                    items.push(item);
                }
                mismatches += items
                    .iter()
                    .filter(|i| matches!(i, Item::Frame(d) if d.integrity.is_mismatch()))
                    .count();
                check_decoded(v, &items)
            };
            let entry = tally.entry(v.check.clone()).or_default();
            entry.1 += 1;
            match outcome {
                Ok(()) => entry.0 += 1,
                Err(reason) => failures.push((v.line, v.origin(), reason)),
            }
        }
    }

    let passed: usize = tally.values().map(|(p, _)| p).sum();
    tally.insert("total".into(), (passed, vectors.len()));
    for (check, (pass, total)) in &tally {
        println!("watch {check:<10} {pass:>3} / {total}");
    }
    println!("watch length-field mismatches accepted and flagged: {mismatches}");
    for (_, origin, reason) in &failures {
        println!("FAIL {origin}: {reason}");
    }

    let unexpected: Vec<_> = failures
        .iter()
        .filter(|(line, origin, _)| {
            !KNOWN_FAILURES
                .iter()
                .any(|(src, l, _)| l == line && origin.starts_with(src))
        })
        .collect();
    assert!(
        unexpected.is_empty(),
        "unexpected failures: {unexpected:#?}"
    );
    for (check, expected) in EXPECTED_PASSES {
        assert_eq!(
            tally.get(check).map(|(p, _)| *p),
            Some(expected),
            "passes for {check}"
        );
    }
    assert_eq!(mismatches, EXPECTED_LENGTH_MISMATCHES);
}

/// The framer must cut exactly `expected.frame` (un-escaped) from the front of the stream.
fn check_frame(v: &Vector) -> Result<(), String> {
    let stream = v.bytes();
    let expected = common::hex_to_bytes(
        v.expected["frame"]
            .as_str()
            .ok_or("record without expected.frame")?,
    );
    let mut framer = Framer::new(DEFAULT_MAX_FRAME_LEN);
    let mut at = 0;
    loop {
        let rest = stream.get(at..).unwrap_or_default();
        match framer.next_cut(rest).map_err(|e| e.to_string())? {
            Cut::Blank(n) | Cut::Garbage(n) | Cut::Truncated(n) => at += n,
            Cut::Frame(n) => {
                let cut = framing::unescape(&rest[..n]);
                return if cut == expected {
                    Ok(())
                } else {
                    Err(format!(
                        "cut {:?}, expected {:?}",
                        String::from_utf8_lossy(&cut),
                        String::from_utf8_lossy(&expected)
                    ))
                };
            }
            Cut::Incomplete => return Err("no complete frame".into()),
        }
    }
}

/// Applies a decoder check to the items one record produced.
fn check_decoded(v: &Vector, items: &[Item]) -> Result<(), String> {
    let rejected: Vec<_> = items
        .iter()
        .filter_map(|i| match i {
            Item::Rejected(e) => Some(e.to_string()),
            Item::Frame(_) => None,
        })
        .collect();
    if !rejected.is_empty() {
        return Err(format!("rejected: {rejected:?}"));
    }
    let decoded: Vec<&Decoded> = items
        .iter()
        .filter_map(|i| match i {
            Item::Frame(d) => Some(d),
            Item::Rejected(_) => None,
        })
        .collect();
    let messages: Vec<&Message> = decoded.iter().flat_map(|d| &d.messages).collect();
    // a position without device_id is dropped by the service: it counts as no position
    let positions: Vec<&Message> = messages
        .iter()
        .copied()
        .filter(|m| m.position.is_some() && m.device_id.is_some())
        .collect();

    match v.check.as_str() {
        "position" => {
            let [m] = positions.as_slice() else {
                return Err(format!("{} positions", positions.len()));
            };
            check_position(m, &v.expected)
        }
        "null" => match positions.len() {
            0 => Ok(()),
            n => Err(format!("{n} positions where none was expected")),
        },
        "attribute" => {
            let first = messages.first().ok_or("no message")?;
            check_attribute(first, &messages, &v.expected)
        }
        "attributes" | "notnull" => match messages.len() {
            0 => Err("no message".into()),
            _ => Ok(()),
        },
        other => Err(format!("unknown check {other}")),
    }
}

fn check_position(m: &Message, expected: &Value) -> Result<(), String> {
    let p = m.position.as_ref().ok_or("no position")?;
    if let (Some(lat), Some(lon)) = (
        expected["latitude"].as_f64(),
        expected["longitude"].as_f64(),
    ) {
        if (p.lat - lat).abs() > 1e-5 || (p.lon - lon).abs() > 1e-5 {
            return Err(format!("at {},{} expected {lat},{lon}", p.lat, p.lon));
        }
        if let Some(time) = expected["time"].as_str() {
            let t = NaiveDateTime::parse_from_str(time, "%Y-%m-%d %H:%M:%S%.3f")
                .map_err(|e| e.to_string())?
                .and_utc();
            if p.time != t {
                return Err(format!("time {} expected {t}", p.time));
            }
        }
        if let Some(valid) = expected["valid"].as_bool() {
            if p.valid != valid {
                return Err(format!("valid {} expected {valid}", p.valid));
            }
        }
        return Ok(());
    }
    let now = Utc::now();
    let plausible = p.time.year() >= 2000
        && p.time < now + chrono::Duration::hours(25)
        && (-90.0..=90.0).contains(&p.lat)
        && (-180.0..=180.0).contains(&p.lon)
        && p.speed_kmh.is_none_or(|s| s >= 0.0)
        && p.course.is_none_or(|c| (0.0..=360.0).contains(&c))
        && p.altitude_m
            .is_none_or(|a| (-12262.0..=18000.0).contains(&a));
    if plausible {
        Ok(())
    } else {
        Err(format!("implausible position {p:?}"))
    }
}

fn check_attribute(first: &Message, all: &[&Message], expected: &Value) -> Result<(), String> {
    let key = expected["key"].as_str().ok_or("attribute without key")?;
    match key {
        "alarm" => {
            let wanted = expected["value"].as_str().ok_or("alarm without value")?;
            for name in wanted.split(',') {
                let ours = alarm_name(name).ok_or_else(|| format!("unmapped alarm {name}"))?;
                if !all
                    .iter()
                    .any(|m| m.alarms.iter().any(|a| a.as_str() == ours))
                {
                    return Err(format!("alarm {ours} missing"));
                }
            }
            Ok(())
        }
        "batteryLevel" => {
            let wanted = expected["value"].as_f64();
            let ours = first.status.battery_pct.map(f64::from);
            (ours == wanted)
                .then_some(())
                .ok_or_else(|| format!("battery {ours:?} expected {wanted:?}"))
        }
        "steps" => {
            let wanted = expected["value"].as_f64();
            let ours = first.status.steps.map(f64::from);
            (ours == wanted)
                .then_some(())
                .ok_or_else(|| format!("steps {ours:?} expected {wanted:?}"))
        }
        // not modelled: the frame decoded without error, which is all we require
        _ => Ok(()),
    }
}

/// The reference's alarm names mapped to ours.
fn alarm_name(reference: &str) -> Option<&'static str> {
    Some(match reference {
        "sos" => "sos",
        "powerCut" => "power_cut",
        "powerOff" => "power_off",
        "lowBattery" | "lowPower" => "low_battery",
        "removing" => "removal",
        "tampering" => "tamper",
        "vibration" => "vibration",
        "overspeed" => "overspeed",
        "fallDown" => "fall",
        "geofenceEnter" => "geofence_enter",
        "geofenceExit" => "geofence_exit",
        "geofence" => "geofence",
        "movement" => "movement",
        "general" => "general",
        _ => return None,
    })
}

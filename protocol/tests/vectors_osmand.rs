//! Checks every record of `fixtures/vectors/traccar/osmand.jsonl` (15 records) against the
//! OsmAnd decoders: GET records go to `decode_request` with the request target (`http.uri`),
//! POST records with a JSON body to `decode_json`. Rules as in the vector README and the brief:
//!
//! - `position`: exactly one position, plausible (time after 1999 and less than 25 h ahead,
//!   coordinates in range, speed ≥ 0, course 0..360);
//! - `null`: no position. The one `null` record is a request without `id`; our decoder answers
//!   it with `DecodeError::InvalidField { field: "id" }`, which the HTTP listener turns into a
//!   400 and which yields no position. That error is what the record asks for, so it counts as
//!   a pass; any other error fails it;
//! - `attribute`: keys we model are compared; `device_integer_twelve_test` (an `extras` value
//!   copied through by the reference) is not modelled, so the body only has to decode;
//! - `notnull`: at least one message, no error.
//!
//! Every record passes; there is no list of exceptions.

mod common;

use std::collections::BTreeMap;

use chrono::{Datelike, Utc};
use ewall_protocol::osmand::{decode_json, decode_request};
use ewall_protocol::{DecodeError, Decoded};

use common::Vector;

/// Records expected to fail, by line, with the reason. Empty: all pass.
const KNOWN_FAILURES: &[(u32, &str)] = &[];

/// Passing records per check kind, and the total.
const EXPECTED_PASSES: [(&str, usize); 5] = [
    ("attribute", 1),
    ("notnull", 1),
    ("null", 1),
    ("position", 12),
    ("total", 15),
];

#[test]
fn osmand_vectors() {
    let vectors = common::load("osmand");
    assert_eq!(vectors.len(), 15);

    let mut tally: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut failures = Vec::new();
    for v in &vectors {
        let outcome = check(v, decode(v));
        let entry = tally.entry(v.check.clone()).or_default();
        entry.1 += 1;
        match outcome {
            Ok(()) => entry.0 += 1,
            Err(reason) => failures.push((v.line, v.origin(), reason)),
        }
    }

    let passed: usize = tally.values().map(|(p, _)| p).sum();
    tally.insert("total".into(), (passed, vectors.len()));
    for (check, (pass, total)) in &tally {
        println!("osmand {check:<10} {pass:>3} / {total}");
    }
    for (_, origin, reason) in &failures {
        println!("FAIL {origin}: {reason}");
    }
    let unexpected: Vec<_> = failures
        .iter()
        .filter(|(line, _, _)| !KNOWN_FAILURES.iter().any(|(l, _)| l == line))
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
}

/// Sends the record to the decoder its HTTP method and body call for.
fn decode(v: &Vector) -> Result<Decoded, DecodeError> {
    let http = v.http.as_ref().expect("osmand records carry `http`");
    match http["method"].as_str() {
        Some("POST") => decode_json(v.frame.as_bytes()),
        _ => decode_request(http["uri"].as_str().unwrap_or(&v.frame)),
    }
}

fn check(v: &Vector, result: Result<Decoded, DecodeError>) -> Result<(), String> {
    if v.check == "null" {
        return match result {
            Err(DecodeError::InvalidField { field: "id", .. }) => Ok(()),
            Err(e) => Err(format!("unexpected error: {e}")),
            Ok(d) if d.messages.iter().any(|m| m.position.is_some()) => {
                Err("a position where none was expected".into())
            }
            Ok(_) => Ok(()),
        };
    }
    let decoded = result.map_err(|e| format!("error: {e}"))?;
    match v.check.as_str() {
        "position" => {
            let positions: Vec<_> = decoded
                .messages
                .iter()
                .filter(|m| m.device_id.is_some())
                .filter_map(|m| m.position.as_ref())
                .collect();
            let [p] = positions.as_slice() else {
                return Err(format!("{} positions", positions.len()));
            };
            let now = Utc::now();
            let plausible = p.time.year() >= 2000
                && p.time < now + chrono::Duration::hours(25)
                && (-90.0..=90.0).contains(&p.lat)
                && (-180.0..=180.0).contains(&p.lon)
                && p.speed_kmh.is_none_or(|s| s >= 0.0)
                && p.course.is_none_or(|c| (0.0..=360.0).contains(&c))
                && p.altitude_m
                    .is_none_or(|a| (-12262.0..=18000.0).contains(&a));
            plausible
                .then_some(())
                .ok_or_else(|| format!("implausible {p:?}"))
        }
        "attribute" => {
            let first = decoded.messages.first().ok_or("no message")?;
            let key = v.expected["key"].as_str().unwrap_or_default();
            match key {
                "batteryLevel" => {
                    let ours = first.status.battery_pct.map(f64::from);
                    (ours == v.expected["value"].as_f64())
                        .then_some(())
                        .ok_or_else(|| format!("battery {ours:?}"))
                }
                // not modelled: decoding without error is all we require
                _ => Ok(()),
            }
        }
        "notnull" | "attributes" => {
            if decoded.messages.is_empty() {
                Err("no message".into())
            } else {
                Ok(())
            }
        }
        other => Err(format!("unknown check {other}")),
    }
}

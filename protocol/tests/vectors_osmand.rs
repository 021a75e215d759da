//! Checks every record of `fixtures/vectors/traccar/osmand.jsonl` (15 records) against the
//! OsmAnd decoders: GET records go to `decode_request` with the request target (`http.uri`),
//! POST records with a JSON body to `decode_json`. Rules as in the vector README and the brief:
//!
//! - `position`: exactly one position, plausible (time after 1999 and less than 25 h ahead,
//!   coordinates, altitude, speed and course in range);
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

use chrono::Utc;
use ewall_protocol::osmand::{decode_json, decode_request};
use ewall_protocol::{DecodeError, Decoded};

use common::{Exception, Vector};

/// Records expected to fail, with the reason. Empty: all pass.
const NOT_PASSING: &[Exception] = &[];

/// Passing records per check kind, and the total.
const EXPECTED_PASSES: [(&str, usize); 4] = [
    ("attribute", 1),
    ("notnull", 1),
    ("null", 1),
    ("position", 12),
];
const EXPECTED_TOTAL: usize = 15;

/// Attribute keys compared against our model; `device_integer_twelve_test` is not modelled.
const MODELLED: &[&str] = &["batteryLevel"];

#[test]
fn osmand_vectors() {
    let vectors = common::load("osmand");
    assert_eq!(vectors.len(), 15);
    let tally = common::replay(&vectors, || (), |(), v| check(v, decode(v)));
    tally.assert_passing("osmand", NOT_PASSING, EXPECTED_TOTAL);
    tally.assert_passes_per_check(&EXPECTED_PASSES);
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
    match result {
        // A request without `id` yields no position: what a `null` record asks for.
        Err(DecodeError::InvalidField { field: "id", .. }) if v.check == "null" => Ok(()),
        Err(e) => Err(format!("error: {e}")),
        Ok(decoded) => common::check_decoded(v, &decoded, MODELLED, Utc::now()),
    }
}

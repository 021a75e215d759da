//! Builds OsmAnd requests: a GET request target and the JSON body of the background-geolocation
//! form. Used by the service's integration tests, `ewall simulate` and the round-trip tests.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Map, Value};

/// Knots on the wire per km/h.
const KMH_PER_KNOT: f64 = 1.852;

/// A request target `/?id=..&timestamp=..&lat=..&lon=..&speed=..&bearing=..[&accuracy=..][&batt=..]`.
///
/// The time is written as epoch seconds (sub-second part dropped), the speed in knots (the
/// protocol's unit), coordinates in Rust's shortest exact form. The ID is percent-encoded.
// The parameters are the request's own keys, in the order they are written.
#[allow(clippy::too_many_arguments)]
pub fn request_target(
    id: &str,
    time: DateTime<Utc>,
    lat: f64,
    lon: f64,
    speed_kmh: f64,
    bearing: f64,
    accuracy_m: Option<f64>,
    battery_pct: Option<u8>,
) -> String {
    let mut target = format!(
        "/?id={}&timestamp={}&lat={lat}&lon={lon}&speed={}&bearing={bearing}",
        percent_encode(id),
        time.timestamp(),
        speed_kmh / KMH_PER_KNOT,
    );
    if let Some(accuracy) = accuracy_m {
        target.push_str(&format!("&accuracy={accuracy}"));
    }
    if let Some(battery) = battery_pct {
        target.push_str(&format!("&batt={battery}"));
    }
    target
}

/// A JSON body with one location: `timestamp` in RFC 3339 with milliseconds, speed in m/s,
/// battery level as a fraction.
// The parameters are the body's own fields.
#[allow(clippy::too_many_arguments)]
pub fn json_body(
    id: &str,
    time: DateTime<Utc>,
    lat: f64,
    lon: f64,
    speed_kmh: f64,
    heading: f64,
    accuracy_m: Option<f64>,
    battery_pct: Option<u8>,
) -> Vec<u8> {
    let mut coords = Map::new();
    coords.insert("latitude".into(), json!(lat));
    coords.insert("longitude".into(), json!(lon));
    coords.insert("speed".into(), json!(speed_kmh / 3.6));
    coords.insert("heading".into(), json!(heading));
    if let Some(accuracy) = accuracy_m {
        coords.insert("accuracy".into(), json!(accuracy));
    }
    let mut location = Map::new();
    location.insert(
        "timestamp".into(),
        json!(time.to_rfc3339_opts(SecondsFormat::Millis, true)),
    );
    location.insert("coords".into(), Value::Object(coords));
    if let Some(battery) = battery_pct {
        location.insert(
            "battery".into(),
            json!({ "level": f64::from(battery) / 100.0, "is_charging": false }),
        );
    }
    json!({ "device_id": id, "location": location })
        .to_string()
        .into_bytes()
}

/// Percent-encodes everything but the unreserved characters `A-Z a-z 0-9 - . _ ~`.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn target_layout() {
        let time = Utc.timestamp_opt(1_377_177_267, 0).unwrap();
        assert_eq!(
            request_target("a b/1", time, 60.5, -30.25, 18.52, 90.0, Some(4.5), Some(80)),
            "/?id=a%20b%2F1&timestamp=1377177267&lat=60.5&lon=-30.25&speed=10&bearing=90&accuracy=4.5&batt=80"
        );
        assert_eq!(
            request_target("1", time, 0.0, 0.0, 0.0, 0.0, None, None),
            "/?id=1&timestamp=1377177267&lat=0&lon=0&speed=0&bearing=0"
        );
    }
}

//! The JSON body of OsmAnd requests, in the shape of the background-geolocation plugin:
//!
//! ```json
//! {"device_id": "48241179",
//!  "location": {"timestamp": "2025-06-15T13:45:12.862Z",
//!               "coords": {"latitude": 37.42, "longitude": -122.08, "accuracy": 5,
//!                          "speed": 0, "heading": -1, "altitude": 5},
//!               "battery": {"level": 1, "is_charging": false},
//!               "is_moving": false, "odometer": 0, "event": "motionchange"}}
//! ```
//!
//! In: the body bytes. Out: one [`Report`] per location (`location` may also be an array, as the
//! plugin sends when it uploads a batch). Speed is in m/s; a negative speed, heading, accuracy
//! or battery level means "unknown". Numbers sent as strings are accepted.

use serde_json::Value;

use crate::DecodeError;

use super::{alarm, course, percent, time, Report};

/// Reads the body.
///
/// # Errors
/// [`DecodeError::InvalidField`] when the body is not a JSON object with `device_id` and a
/// `location` (object or non-empty array of objects) whose coordinates and timestamp parse.
pub(super) fn parse(body: &[u8]) -> Result<Vec<Report>, DecodeError> {
    let root: Value = serde_json::from_slice(body)
        .map_err(|e| DecodeError::invalid("json body", e.to_string()))?;
    let id = match root.get("device_id") {
        Some(Value::String(s)) => Some(s.trim().to_owned()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let locations: Vec<&Value> = match root.get("location") {
        Some(Value::Array(list)) if !list.is_empty() => list.iter().collect(),
        Some(location @ Value::Object(_)) => vec![location],
        _ => {
            return Err(DecodeError::invalid(
                "location",
                "expected an object or a non-empty array",
            ))
        }
    };
    locations
        .into_iter()
        .map(|location| report(location, id.clone()))
        .collect()
}

/// One location object.
fn report(location: &Value, id: Option<String>) -> Result<Report, DecodeError> {
    let coords = location
        .get("coords")
        .filter(|c| c.is_object())
        .ok_or_else(|| DecodeError::invalid("coords", "missing"))?;
    let coordinate = |key: &'static str| {
        number(coords.get(key)).ok_or_else(|| DecodeError::invalid(key, "missing or not a number"))
    };
    let time = match location.get("timestamp") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(time::parse(s)?),
        Some(Value::Number(n)) => Some(time::parse(&n.to_string())?),
        Some(other) => return Err(DecodeError::invalid("timestamp", other.to_string())),
    };
    let battery = location.get("battery");
    Ok(Report {
        id,
        time,
        lat: Some(coordinate("latitude")?),
        lon: Some(coordinate("longitude")?),
        valid: None,
        speed_kmh: number(coords.get("speed"))
            .filter(|v| *v >= 0.0)
            .map(|mps| mps * 3.6),
        course: number(coords.get("heading")).and_then(course),
        altitude_m: number(coords.get("altitude")),
        accuracy_m: number(coords.get("accuracy")).filter(|v| *v >= 0.0),
        hdop: None,
        battery_pct: number(battery.and_then(|b| b.get("level")))
            .filter(|v| (0.0..=1.0).contains(v))
            .and_then(|level| percent(level * 100.0)),
        charging: battery
            .and_then(|b| b.get("is_charging"))
            .and_then(Value::as_bool),
        odometer_m: number(location.get("odometer")).filter(|v| *v >= 0.0),
        alarm: location
            .get("alarm")
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
            .map(alarm),
        cells: Vec::new(),
        wifi: Vec::new(),
    })
}

/// A finite number, or a string holding one.
fn number(value: Option<&Value>) -> Option<f64> {
    match value? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => super::number(s),
        _ => None,
    }
    .filter(|v| v.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_as_strings_and_unknown_markers() {
        let body = br#"{"device_id": 7, "location": {"coords": {"latitude": "1.5",
            "longitude": 2, "speed": -1, "heading": -1, "accuracy": -1},
            "battery": {"level": -1}}}"#;
        let r = &parse(body).unwrap()[0];
        assert_eq!(r.id.as_deref(), Some("7"));
        assert_eq!((r.lat, r.lon), (Some(1.5), Some(2.0)));
        assert_eq!((r.speed_kmh, r.course, r.accuracy_m), (None, None, None));
        assert_eq!(r.battery_pct, None);
        assert_eq!(r.time, None);
    }

    #[test]
    fn malformed_bodies() {
        for bad in [
            &b"not json"[..],
            b"[]",
            br#"{"device_id": "1"}"#,
            br#"{"device_id": "1", "location": []}"#,
            br#"{"device_id": "1", "location": {"coords": {"latitude": 1}}}"#,
            br#"{"device_id": "1", "location": {"coords": {"latitude": 1, "longitude": 2}, "timestamp": true}}"#,
            br#"{"device_id": "1", "location": {"coords": {"latitude": 1, "longitude": 2}, "timestamp": "later"}}"#,
        ] {
            assert!(parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}

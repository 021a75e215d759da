//! JSON positions: the payload MQTT gateways publish on `ewall/v1/devices/{imei}/positions`.
//!
//! One publish carries one JSON object or an array of them; each object is one position:
//!
//! ```json
//! {"time": "2026-11-26T08:01:00Z", "lat": 25.515, "lon": 112.3625,
//!  "accuracy_m": 12, "speed_kmh": 3.5, "course": 270, "altitude_m": 180,
//!  "battery_pct": 81, "source": "gps", "alarm": "sos", "crs": "wgs84"}
//! ```
//!
//! Not a stream protocol: the broker delimits each payload, so there is no session. The IMEI
//! comes from the topic, not the payload, so [`decode`] gives messages without a `device_id`
//! and the MQTT ingest fills it in. This module checks the schema only: JSON types, finite
//! numbers, coordinate and field ranges, the size of the payload and of an array; plausibility
//! across fixes (speed between positions, clock skew) is the service's job.
//!
//! Coordinates in `crs: "gcj02"` (the offset datum of Chinese maps, which some phone gateways
//! report) are left as sent and marked on the [`Report`]; the service converts them to WGS-84
//! with the same conversion it applies to zones.
//!
//! See `README.md` for every field.
//!
//! ```
//! use ewall_protocol::json::{self, Crs};
//!
//! let payload = br#"[{"time": "2026-11-26T08:01:00Z", "lat": 25.515, "lon": 112.3625},
//!                    {"time": "2026-11-26T08:01:30Z", "lat": 25.516, "lon": 112.3625,
//!                     "alarm": "sos", "crs": "gcj02"}]"#;
//! let reports = json::decode(payload).unwrap();
//! assert_eq!(reports.len(), 2);
//! assert_eq!(reports[1].crs, Crs::Gcj02);
//! assert_eq!(reports[1].message.alarms[0].as_str(), "sos");
//! ```

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{
    Alarm, DecodeError, Decoded, Integrity, Message, MessageKind, Position, PositionSource,
};

/// Largest payload accepted, bytes. A gateway uploading a backlog sends several publishes.
pub const MAX_PAYLOAD_BYTES: usize = 256 * 1024;

/// Most positions in one array.
pub const MAX_POSITIONS: usize = 1000;

/// The datum a position's coordinates are given in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Crs {
    /// WGS-84, what GPS reports (the default).
    #[default]
    Wgs84,
    /// GCJ-02, the offset datum of maps published in China.
    Gcj02,
}

impl Crs {
    /// The wire name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Crs::Wgs84 => "wgs84",
            Crs::Gcj02 => "gcj02",
        }
    }
}

/// One position object of a payload.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The position (kind [`MessageKind::Position`], or [`MessageKind::Alarm`] with an alarm),
    /// battery in `status`, no `device_id`.
    pub message: Message,
    /// The datum of `message.position`'s coordinates.
    pub crs: Crs,
}

/// Why a payload was refused, as a short fixed label for metrics.
pub fn reason_label(error: &DecodeError) -> &'static str {
    match error {
        DecodeError::NotThisProtocol { .. } => "not_json",
        DecodeError::InvalidField {
            field: "payload", ..
        } => "too_large",
        _ => error.reason_label(),
    }
}

/// Decodes one payload: an object or a non-empty array of objects.
///
/// # Errors
/// - [`DecodeError::NotThisProtocol`] when the bytes are not JSON (NaN and Infinity are not
///   JSON numbers, so they land here too);
/// - [`DecodeError::InvalidField`] naming the field (`payload` for the size limits, `[3].lat`
///   style for a bad value in an array) when the JSON does not follow the schema.
pub fn decode(payload: &[u8]) -> Result<Vec<Report>, DecodeError> {
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(DecodeError::invalid(
            "payload",
            format!(
                "{} bytes; the most is {MAX_PAYLOAD_BYTES} (split a backlog over several publishes)",
                payload.len()
            ),
        ));
    }
    let root: Value =
        serde_json::from_slice(payload).map_err(|e| DecodeError::NotThisProtocol {
            protocol: "json",
            reason: e.to_string(),
        })?;
    match root {
        Value::Object(object) => Ok(vec![report(&object).map_err(|e| e.at(None))?]),
        Value::Array(items) if items.is_empty() => Err(DecodeError::invalid(
            "payload",
            "an empty array carries no position",
        )),
        Value::Array(items) if items.len() > MAX_POSITIONS => Err(DecodeError::invalid(
            "payload",
            format!(
                "{} positions; the most in one publish is {MAX_POSITIONS}",
                items.len()
            ),
        )),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::Object(object) => report(object).map_err(|e| e.at(Some(i))),
                other => Err(FieldError::new(
                    "",
                    format!("expected an object, found {}", kind_of(other)),
                )
                .at(Some(i))),
            })
            .collect(),
        other => Err(DecodeError::invalid(
            "payload",
            format!(
                "expected an object or an array of objects, found {}",
                kind_of(&other)
            ),
        )),
    }
}

/// [`decode`], with the reports as one [`Decoded`] (what `ewall decode` prints). The datum of
/// each position is lost; use [`decode`] where it matters.
///
/// # Errors
/// As [`decode`].
pub fn decode_messages(payload: &[u8]) -> Result<Decoded, DecodeError> {
    Ok(Decoded {
        messages: decode(payload)?.into_iter().map(|r| r.message).collect(),
        reply: None,
        integrity: Integrity::Unchecked,
    })
}

/// A bad field before it is placed in the payload.
struct FieldError {
    field: &'static str,
    reason: String,
}

impl FieldError {
    fn new(field: &'static str, reason: impl Into<String>) -> Self {
        FieldError {
            field,
            reason: reason.into(),
        }
    }

    /// Names the field in the payload: `lat`, or `[3].lat` inside an array.
    fn at(self, index: Option<usize>) -> DecodeError {
        match (index, self.field) {
            (None, "") => DecodeError::invalid("position", self.reason),
            (None, field) => DecodeError::invalid(field, self.reason),
            (Some(i), "") => DecodeError::invalid("position", format!("[{i}]: {}", self.reason)),
            (Some(i), field) => {
                DecodeError::invalid("position", format!("[{i}].{field}: {}", self.reason))
            }
        }
    }
}

/// The keys a position object may have.
const KEYS: [&str; 11] = [
    "time",
    "lat",
    "lon",
    "accuracy_m",
    "speed_kmh",
    "course",
    "altitude_m",
    "battery_pct",
    "source",
    "alarm",
    "crs",
];

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn report(object: &Map<String, Value>) -> Result<Report, FieldError> {
    if let Some(unknown) = object.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(FieldError::new(
            "",
            format!(
                "unknown field {unknown:?}; the fields are {}",
                KEYS.join(", ")
            ),
        ));
    }
    let time = time(object)?;
    let lat = number(object, "lat")?.ok_or_else(|| FieldError::new("lat", "missing"))?;
    let lon = number(object, "lon")?.ok_or_else(|| FieldError::new("lon", "missing"))?;
    if !(-90.0..=90.0).contains(&lat) {
        return Err(FieldError::new("lat", format!("{lat} is outside -90..=90")));
    }
    if !(-180.0..=180.0).contains(&lon) {
        return Err(FieldError::new(
            "lon",
            format!("{lon} is outside -180..=180"),
        ));
    }
    let accuracy_m = ranged(object, "accuracy_m", 0.0, 1.0e6)?;
    let speed_kmh = ranged(object, "speed_kmh", 0.0, 2000.0)?;
    let course = ranged(object, "course", 0.0, 360.0)?;
    let altitude_m = ranged(object, "altitude_m", -12_000.0, 100_000.0)?;
    let battery_pct = match ranged(object, "battery_pct", 0.0, 100.0)? {
        None => None,
        Some(pct) if pct.fract() == 0.0 => Some(pct as u8),
        Some(pct) => {
            return Err(FieldError::new(
                "battery_pct",
                format!("{pct} is not a whole percent"),
            ))
        }
    };
    let source = match text(object, "source")? {
        None | Some("gps") => PositionSource::Gps,
        Some("lbs") => PositionSource::Lbs,
        Some("wifi") => PositionSource::Wifi,
        Some(other) => {
            return Err(FieldError::new(
                "source",
                format!("{other:?}; expected \"gps\", \"lbs\" or \"wifi\""),
            ))
        }
    };
    let crs = match text(object, "crs")? {
        None | Some("wgs84") => Crs::Wgs84,
        Some("gcj02") => Crs::Gcj02,
        Some(other) => {
            return Err(FieldError::new(
                "crs",
                format!("{other:?}; expected \"wgs84\" or \"gcj02\""),
            ))
        }
    };
    let alarms = alarms(object)?;
    let mut message = Message::new(if alarms.is_empty() {
        MessageKind::Position
    } else {
        MessageKind::Alarm
    });
    message.position = Some(Position {
        accuracy_m,
        speed_kmh,
        course,
        altitude_m,
        source,
        ..Position::new(time, lat, lon)
    });
    message.alarms = alarms;
    message.status.battery_pct = battery_pct;
    Ok(Report { message, crs })
}

fn time(object: &Map<String, Value>) -> Result<DateTime<Utc>, FieldError> {
    let text = text(object, "time")?.ok_or_else(|| FieldError::new("time", "missing"))?;
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| FieldError::new("time", format!("{text:?} is not RFC 3339 ({e})")))
}

/// A number field; `null` counts as absent.
fn number(object: &Map<String, Value>, key: &'static str) -> Result<Option<f64>, FieldError> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(v) if v.is_finite() => Ok(Some(v)),
            _ => Err(FieldError::new(key, format!("{n} is not a finite number"))),
        },
        Some(other) => Err(FieldError::new(
            key,
            format!("expected a number, found {}", kind_of(other)),
        )),
    }
}

fn ranged(
    object: &Map<String, Value>,
    key: &'static str,
    min: f64,
    max: f64,
) -> Result<Option<f64>, FieldError> {
    match number(object, key)? {
        Some(v) if !(min..=max).contains(&v) => Err(FieldError::new(
            key,
            format!("{v} is outside {min}..={max}"),
        )),
        v => Ok(v),
    }
}

fn text<'a>(
    object: &'a Map<String, Value>,
    key: &'static str,
) -> Result<Option<&'a str>, FieldError> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(other) => Err(FieldError::new(
            key,
            format!("expected a string, found {}", kind_of(other)),
        )),
    }
}

/// `alarm`: one name or an array of names.
fn alarms(object: &Map<String, Value>) -> Result<Vec<Alarm>, FieldError> {
    let names: Vec<&Value> = match object.get("alarm") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(list)) => list.iter().collect(),
        Some(one) => vec![one],
    };
    names
        .into_iter()
        .map(|name| match name {
            Value::String(s) => serde_json::from_value::<Alarm>(Value::String(s.clone()))
                .map_err(|_| FieldError::new("alarm", format!("unknown alarm {s:?}"))),
            other => Err(FieldError::new(
                "alarm",
                format!("expected a string, found {}", kind_of(other)),
            )),
        })
        .collect()
}

#[cfg(test)]
mod tests;

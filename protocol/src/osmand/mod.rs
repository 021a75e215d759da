//! OsmAnd: the HTTP protocol of phone tracking apps (OsmAnd, Traccar Client and apps built on
//! the background-geolocation plugin).
//!
//! Not a stream protocol, so there is no session: the HTTP listener hands each request to
//! [`decode_request`] (a request target `/?id=..&lat=..&lon=..`, a bare query string, or a form
//! body with the same keys) or, for `Content-Type: application/json`, to [`decode_json`]. Each
//! gives one [`Decoded`] with `reply: None` (the answer is the HTTP status, chosen by the
//! listener) and [`Integrity::Unchecked`]. A request that names no device is an error, which the
//! listener answers with 400.
//!
//! - `query.rs`: query string and form body;
//! - `json.rs`: the JSON body;
//! - `time.rs`: the forms of `timestamp`;
//! - `encode.rs`: builds requests for tests and the load generator.
//!
//! See `README.md` for every key and the choices made.

pub mod encode;
mod json;
mod query;
mod time;

use chrono::{DateTime, Utc};

use crate::{
    Alarm, CellTower, DecodeError, Decoded, DeviceStatus, Integrity, Message, MessageKind,
    Position, WifiAccessPoint,
};

/// Decodes one request target or form body, using the current time for a report without
/// `timestamp`.
///
/// # Errors
/// [`DecodeError::InvalidField`] when `id`/`deviceid` is missing (HTTP 400), or when the
/// coordinates or timestamp are present but unreadable.
pub fn decode_request(target: &str) -> Result<Decoded, DecodeError> {
    decode_request_at(target, Utc::now())
}

/// [`decode_request`] with `now` standing in for the time of a report without `timestamp`.
///
/// # Errors
/// As [`decode_request`].
pub fn decode_request_at(target: &str, now: DateTime<Utc>) -> Result<Decoded, DecodeError> {
    let report = query::parse(target)?;
    Ok(single(report.into_message(now)?))
}

/// Decodes one JSON body (background-geolocation shape: `device_id` and a `location` object,
/// or an array of them for a batch), using the current time for a location without
/// `timestamp`.
///
/// # Errors
/// [`DecodeError::InvalidField`] when the body is not JSON of that shape, names no device, or
/// carries unreadable coordinates or timestamps.
pub fn decode_json(body: &[u8]) -> Result<Decoded, DecodeError> {
    decode_json_at(body, Utc::now())
}

/// [`decode_json`] with `now` standing in for the time of a location without `timestamp`.
///
/// # Errors
/// As [`decode_json`].
pub fn decode_json_at(body: &[u8], now: DateTime<Utc>) -> Result<Decoded, DecodeError> {
    let messages = json::parse(body)?
        .into_iter()
        .map(|report| report.into_message(now))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Decoded {
        messages,
        reply: None,
        integrity: Integrity::Unchecked,
    })
}

fn single(message: Message) -> Decoded {
    Decoded {
        messages: vec![message],
        reply: None,
        integrity: Integrity::Unchecked,
    }
}

/// What one request or JSON location said, before validation.
#[derive(Debug, Clone, Default, PartialEq)]
struct Report {
    id: Option<String>,
    time: Option<DateTime<Utc>>,
    lat: Option<f64>,
    lon: Option<f64>,
    valid: Option<bool>,
    speed_kmh: Option<f64>,
    course: Option<f64>,
    altitude_m: Option<f64>,
    accuracy_m: Option<f64>,
    hdop: Option<f64>,
    battery_pct: Option<u8>,
    charging: Option<bool>,
    odometer_m: Option<f64>,
    alarm: Option<Alarm>,
    cells: Vec<CellTower>,
    wifi: Vec<WifiAccessPoint>,
}

impl Report {
    /// The message this report makes, checking that it names a device and that its
    /// coordinates are complete and in range.
    fn into_message(self, now: DateTime<Utc>) -> Result<Message, DecodeError> {
        let id = self
            .id
            .filter(|id| !id.trim().is_empty())
            .ok_or_else(|| DecodeError::invalid("id", "missing: the request names no device"))?;
        let position = match (self.lat, self.lon) {
            (None, None) => None,
            (Some(lat), Some(lon)) => {
                if !(-90.0..=90.0).contains(&lat) {
                    return Err(DecodeError::invalid("lat", format!("{lat} out of range")));
                }
                if !(-180.0..=180.0).contains(&lon) {
                    return Err(DecodeError::invalid("lon", format!("{lon} out of range")));
                }
                let mut p = Position::new(self.time.unwrap_or(now), lat, lon);
                p.valid = self.valid.unwrap_or(true);
                p.speed_kmh = self.speed_kmh;
                p.course = self.course;
                p.altitude_m = self.altitude_m;
                p.accuracy_m = self.accuracy_m;
                p.hdop = self.hdop;
                Some(p)
            }
            (Some(_), None) => return Err(DecodeError::invalid("lon", "missing; lat given")),
            (None, Some(_)) => return Err(DecodeError::invalid("lat", "missing; lon given")),
        };
        let kind = if self.alarm.is_some() {
            MessageKind::Alarm
        } else if position.is_some() {
            MessageKind::Position
        } else if !self.wifi.is_empty() {
            MessageKind::Wifi
        } else if !self.cells.is_empty() {
            MessageKind::Lbs
        } else {
            MessageKind::Heartbeat
        };
        let mut message = Message::new(kind);
        message.device_id = Some(id);
        message.position = position;
        message.alarms = self.alarm.into_iter().collect();
        message.status = DeviceStatus {
            battery_pct: self.battery_pct,
            charging: self.charging,
            odometer_m: self.odometer_m,
            ..DeviceStatus::default()
        };
        message.cells = self.cells;
        message.wifi = self.wifi;
        Ok(message)
    }
}

/// A finite number from text.
fn number(text: &str) -> Option<f64> {
    text.trim().parse::<f64>().ok().filter(|v| v.is_finite())
}

/// A yes/no value: `true`/`false`, `1`/`0`, `yes`/`no` in any case.
fn flag(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Some(true),
        "false" | "0" | "no" => Some(false),
        _ => None,
    }
}

/// A battery percentage (fractions rounded, 0 to 100).
fn percent(value: f64) -> Option<u8> {
    (0.0..=100.0).contains(&value).then(|| value.round() as u8)
}

/// A course in degrees; negative means unknown, 360 and above wraps.
fn course(value: f64) -> Option<f64> {
    (value >= 0.0).then(|| value % 360.0)
}

/// Alarm names as phone apps send them (the reference server's names, plus our own).
fn alarm(name: &str) -> Alarm {
    match name.trim() {
        "sos" => Alarm::Sos,
        "tampering" | "tamper" => Alarm::Tamper,
        "removing" | "removal" => Alarm::Removal,
        "powerCut" | "power_cut" => Alarm::PowerCut,
        "powerOff" | "power_off" => Alarm::PowerOff,
        "lowBattery" | "lowPower" | "low_battery" => Alarm::LowBattery,
        "vibration" => Alarm::Vibration,
        "overspeed" => Alarm::Overspeed,
        "fallDown" | "fall" => Alarm::Fall,
        "geofenceEnter" | "geofence_enter" => Alarm::GeofenceEnter,
        "geofenceExit" | "geofence_exit" => Alarm::GeofenceExit,
        "geofence" => Alarm::Geofence,
        "movement" => Alarm::Movement,
        "accident" => Alarm::Accident,
        _ => Alarm::General,
    }
}

#[cfg(test)]
mod tests;

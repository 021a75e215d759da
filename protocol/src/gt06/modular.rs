//! 0x70 "GPS modular" reports (long form): a list of modules, each `id u16 | length u16 | value`.
//!
//! Modules we read: 0x0011 cell (MCC u16, MNC u16, LAC u16, cell ID u24, RSSI), 0x0018 battery
//! voltage (0.01 V), 0x0028 HDOP (0.1), 0x002B event (0x11/0x12 low battery, 0x13 power cut,
//! 0x14 removed), 0x002E odometer (u32 little-endian, metres) and 0x0033 position:
//!
//! ```text
//! time u32 (Unix, UTC) | satellites u8 | altitude i16 | latitude u32 | longitude u32
//! | speed u8 | course/status u16 (as in the GPS block)
//! ```
//! Others are skipped by their length. The report is acknowledged in short form.

use chrono::DateTime;

use crate::error::DecodeError;
use crate::message::{Alarm, Message, MessageKind};
use crate::reader::Reader;

use super::lbs;
use super::location::{FixTime, GpsFix};
use super::status::push_alarm;
use super::{Ctx, Out};

/// GPS modular report.
pub(crate) const GPS_MODULAR: u8 = 0x70;

/// Decodes the modules.
///
/// # Errors
/// [`DecodeError::Truncated`] when a module is longer than the bytes left.
pub(crate) fn decode(ctx: &Ctx<'_>, body: &[u8]) -> Result<Out, DecodeError> {
    let mut r = Reader::new(body);
    let mut message = ctx.message(MessageKind::Status);
    while r.remaining() >= 4 {
        let id = r.u16("module id")?;
        let len = usize::from(r.u16("module length")?);
        let value = r.take(len, "module")?;
        read_module(&mut message, id, value);
    }
    message.kind = if !message.alarms.is_empty() {
        MessageKind::Alarm
    } else if message.position.is_some() {
        MessageKind::Position
    } else {
        MessageKind::Status
    };
    Ok(Out::ack(vec![message]))
}

/// Applies one module to the message.
fn read_module(message: &mut Message, id: u16, value: &[u8]) {
    let mut r = Reader::new(value);
    match id {
        0x0011 => {
            if let (Ok(mcc), Ok(mnc), Ok(lac), Ok(cid), Ok(rssi)) = (
                r.u16("mcc"),
                r.u16("mnc"),
                r.u16("lac"),
                r.u24("cell id"),
                r.u8("rssi"),
            ) {
                message.cells.extend(lbs::cell(
                    mcc,
                    mnc,
                    u32::from(lac),
                    u64::from(cid),
                    lbs::rssi(rssi),
                ));
            }
        }
        0x0018 => {
            if let Ok(v) = r.u16("battery") {
                message.status.voltage = Some(f64::from(v) / 100.0);
            }
        }
        0x0028 => {
            if let (Ok(hdop), Some(p)) = (r.u8("hdop"), message.position.as_mut()) {
                p.hdop = Some(f64::from(hdop) / 10.0);
            }
        }
        0x002b => {
            let alarm = match r.u8("event") {
                Ok(0x11 | 0x12) => Some(Alarm::LowBattery),
                Ok(0x13) => Some(Alarm::PowerCut),
                Ok(0x14) => Some(Alarm::Removal),
                _ => None,
            };
            if let Some(a) = alarm {
                push_alarm(message, a);
            }
        }
        0x002e => {
            if let Ok(&[a, b, c, d]) = r.take(4, "odometer") {
                message.status.odometer_m = Some(f64::from(u32::from_le_bytes([a, b, c, d])));
            }
        }
        0x0033 => {
            if let (
                Ok(time),
                Ok(satellites),
                Ok(altitude),
                Ok(lat),
                Ok(lon),
                Ok(speed),
                Ok(flags),
            ) = (
                r.u32("time"),
                r.u8("satellites"),
                r.u16("altitude"),
                r.u32("latitude"),
                r.u32("longitude"),
                r.u8("speed"),
                r.u16("course and status"),
            ) {
                // A zero time marks a module without a fix.
                let time = match DateTime::from_timestamp(i64::from(time), 0) {
                    Some(t) if time != 0 => FixTime::At(t),
                    _ => FixTime::Blank,
                };
                let fix = GpsFix::from_wire(
                    time,
                    Some(satellites),
                    lat,
                    lon,
                    Some(f64::from(speed)),
                    flags,
                );
                let hdop = message.position.as_ref().and_then(|p| p.hdop);
                fix.apply(message);
                if let Some(p) = message.position.as_mut() {
                    p.altitude_m = Some(f64::from(altitude as i16));
                    p.hdop = hdop;
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gt06::tests::ctx;
    use chrono::{TimeZone, Utc};

    #[test]
    fn reads_position_event_and_cell_modules() {
        let body = [
            0x00, 0x33, 0x00, 0x12, // module 0x33, 18 bytes
            0x5d, 0x7e, 0x3a, 0x18, // 2019-09-15 13:18:16 UTC
            0x06, // satellites
            0x00, 0xd5, // altitude 213 m
            0x04, 0xb5, 0x98, 0xf7, // latitude
            0x08, 0x81, 0x4b, 0x3a, // longitude
            0x00, // speed
            0x1d, 0x15, // course 277, valid, north, west
            0x00, 0x2b, 0x00, 0x01, 0x14, // module 0x2b: event 0x14 (removed)
            0x00, 0x11, 0x00, 0x0a, // module 0x11, 10 bytes
            0x01, 0x2e, 0x02, 0x62, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // empty cell
            0x00, 0x99, 0x00, 0x01, 0x07, // unknown module, skipped
        ];
        let out = decode(&ctx(), &body).unwrap();
        let m = &out.messages[0];
        assert_eq!(m.kind, MessageKind::Alarm);
        assert_eq!(m.alarms, vec![Alarm::Removal]);
        assert!(m.cells.is_empty());
        let p = m.position.as_ref().unwrap();
        assert_eq!(
            p.time,
            Utc.with_ymd_and_hms(2019, 9, 15, 13, 18, 16).unwrap()
        );
        assert_eq!(p.altitude_m, Some(213.0));
        assert!(p.valid && p.lat > 0.0 && p.lon < 0.0);
    }
}

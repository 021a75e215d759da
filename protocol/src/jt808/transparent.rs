//! Transparent data 0x0900: vendor payloads tunnelled through the standard, some of which
//! carry a position.
//!
//! In: the body, `type u8` then the payload. Out: one message. Positions come from:
//! - 0xF0 (OBD boxes): BCD time, archive flag, vehicle type, a sub-type whose records we skip
//!   (0x01 data items, 0x02 fault codes, 0x03 events, the last mapped to alarms), then the
//!   status word, latitude and longitude of a location report;
//! - 0xFF: BCD time, signed latitude and longitude (10⁻⁶ degree), altitude, speed, course;
//! - 0x53 / 0x54: status, latitude, longitude, altitude, speed, course, BCD time, then tag or
//!   sensor data we skip.
//!
//! Other types give an `Other` message (the session still acknowledges them).

use super::extra::add_alarm;
use super::location::{self, coordinates, device_time, position, Fix, STATUS_VALID};
use super::Ctx;
use crate::error::DecodeError;
use crate::message::{Alarm, Message, MessageKind, Position};
use crate::reader::Reader;

/// Decodes a 0x0900 body.
///
/// # Errors
/// [`DecodeError::Truncated`] when a position-bearing payload is cut short.
pub(crate) fn decode(body: &[u8], ctx: &mut Ctx<'_>) -> Result<Message, DecodeError> {
    let mut r = Reader::new(body);
    let kind = r.u8("transparent type")?;
    match kind {
        0xF0 => obd(&mut r, ctx),
        0xFF => {
            let time = r.take(6, "time")?;
            let lat = r.u32("latitude")? as i32;
            let lon = r.u32("longitude")? as i32;
            let altitude = r.u16("altitude")? as i16;
            let speed = r.u16("speed")?;
            let course = r.u16("course")?;
            let mut msg = ctx.message(MessageKind::Position);
            let (lat, lon) = (f64::from(lat) / 1_000_000.0, f64::from(lon) / 1_000_000.0);
            match device_time(time, ctx.offset(None)) {
                Some(time) if lat.abs() <= 90.0 && lon.abs() <= 180.0 => {
                    msg.position = Some(position(time, lat, lon, altitude, speed, course));
                }
                _ => msg.kind = MessageKind::Other,
            }
            Ok(msg)
        }
        0x53 | 0x54 => {
            let fix = Fix::read(&mut r)?;
            let mut msg = ctx.message(MessageKind::Position);
            match fix.position(ctx.offset(None), ctx.now) {
                Some(p) => msg.position = Some(p),
                None => msg.kind = MessageKind::Other,
            }
            Ok(msg)
        }
        _ => Ok(ctx.message(MessageKind::Other)),
    }
}

/// 0xF0 payload.
fn obd(r: &mut Reader<'_>, ctx: &mut Ctx<'_>) -> Result<Message, DecodeError> {
    let time = r.take(6, "time")?;
    let archived = r.u8("archive flag")? > 0;
    let _vehicle = r.u8("vehicle type")?;
    let sub = r.u8("sub-type")?;
    let mut msg = ctx.message(MessageKind::Other);
    match sub {
        0x01 => {
            let count = r.u8("item count")?;
            for _ in 0..count {
                let _id = r.u16("item id")?;
                let len = r.u8("item length")?;
                r.skip(usize::from(len), "item value")?;
            }
        }
        0x02 => {
            let systems = r.u16("system count")?;
            for _ in 0..systems {
                let _system = r.u32("system id")?;
                let codes = r.u16("code count")?;
                for _ in 0..codes {
                    r.skip(8, "fault code")?;
                    let len = r.u16("code text length")?;
                    r.skip(usize::from(len), "code text")?;
                }
            }
        }
        0x03 => {
            let count = r.u8("event count")?;
            for _ in 0..count {
                let id = r.u8("event id")?;
                let len = r.u8("event length")?;
                r.skip(usize::from(len), "event data")?;
                let alarm = match id {
                    0x02 => Some(Alarm::PowerCut),
                    0x1A => Some(Alarm::HarshAcceleration),
                    0x1B => Some(Alarm::HarshBraking),
                    0x1C => Some(Alarm::HarshCornering),
                    0x23 => Some(Alarm::Fatigue),
                    0x25 => Some(Alarm::Overspeed),
                    0x26..=0x28 => Some(Alarm::Accident),
                    0x31 | 0x32 => Some(Alarm::Door),
                    _ => None,
                };
                if let Some(a) = alarm {
                    add_alarm(&mut msg, a);
                }
            }
        }
        _ => return Ok(msg),
    }
    let status = r.u32("status flags")?;
    let lat = r.u32("latitude")?;
    let lon = r.u32("longitude")?;
    let when = device_time(time, ctx.offset(None));
    if let (Some(time), Some((lat, lon))) = (when, coordinates(status, lat, lon)) {
        let mut p = Position::new(time, lat, lon);
        p.valid = status & STATUS_VALID != 0;
        p.archived = archived;
        msg.position = Some(p);
        msg.kind = MessageKind::Position;
    }
    msg.status.ignition = Some(status & location::STATUS_ACC != 0);
    if !msg.alarms.is_empty() {
        msg.kind = MessageKind::Alarm;
    }
    Ok(msg)
}

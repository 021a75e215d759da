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
use super::location::{self, position, Fix, STATUS_VALID};
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
            // Passed on whatever the date and range: the service flags what is implausible.
            match location::dated(time, ctx.offset(None), ctx.now) {
                Some((time, unreadable)) => {
                    let mut p = position(time, lat, lon, altitude, speed, course);
                    p.unreadable_time = unreadable;
                    msg.position = Some(p);
                }
                None => msg.kind = MessageKind::Other,
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
    if let Some((time, unreadable)) = location::dated(time, ctx.offset(None), ctx.now) {
        let (lat, lon) = location::signed(status, lat, lon);
        let mut p = Position::new(time, lat, lon);
        p.unreadable_time = unreadable;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn run(body: &[u8]) -> Message {
        let mut stated = None;
        let mut ctx = Ctx {
            device_id: "13912345678",
            override_offset: None,
            stated_offset: &mut stated,
            model: Default::default(),
            now: chrono::DateTime::UNIX_EPOCH,
        };
        decode(body, &mut ctx).unwrap()
    }

    fn vendor_ff(time: [u8; 6], lat: i32) -> Vec<u8> {
        let mut body = vec![0xFF];
        body.extend_from_slice(&time);
        body.extend_from_slice(&lat.to_be_bytes());
        body.extend_from_slice(&113_905_643i32.to_be_bytes());
        body.extend_from_slice(&[0, 4, 0, 10, 0, 90]); // altitude, speed, course
        body
    }

    #[test]
    fn a_vendor_position_is_passed_on_whatever_its_date_and_range() {
        let ok = run(&vendor_ff([0x24, 0x01, 0x02, 0x08, 0, 0], 22_583_576));
        let p = ok.position.unwrap();
        assert_eq!(p.lat, 22.583576);
        assert_eq!(p.unreadable_time, None);

        let month_13 = run(&vendor_ff([0x24, 0x13, 0x02, 0x08, 0, 0], 95_000_000));
        assert_eq!(month_13.kind, MessageKind::Position);
        let p = month_13.position.unwrap();
        assert_eq!(p.unreadable_time.as_deref(), Some("24-13-02 08:00:00"));
        assert_eq!(p.lat, 95.0);

        let blank = run(&vendor_ff([0; 6], 0));
        assert!(blank.position.is_none());
    }
}

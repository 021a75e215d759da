//! Vendor messages on the JT/T 808 port: the 0x5501/0x5502 location reports of some padlocks
//! and the parenthesised ASCII messages of e-locks.
//!
//! 0x5501 (live) and 0x5502 (blind-area) bodies: BCD `DD MM YY hh mm ss` in UTC, latitude as
//! 8 BCD digits `ddmm.mmmm`, longitude as 9 BCD digits `dddmm.mmmm` whose last byte's low
//! nibble holds the flags (bit 0 valid, bit 1 north, bit 2 east), speed as 2 BCD digits in
//! knots, course /2, signal, satellites, odometer km u32, battery (percent, or 0xAA/0xAB on
//! charge), cell id u32, LAC u16, product u8, status u16, alarm u16, then `id u8, length u8`
//! items (0x02 altitude). The session answers with 0x4401 only when body-property bit 15 asks.
//!
//! ASCII: `(ID,1,001,BASE,2,TIME)` asks for the time, answered with the same text with `TIME`
//! replaced by the UTC time `yyyyMMddHHmmss`; anything else is a command reply.

use chrono::{DateTime, NaiveDate, Utc};

use super::extra::add_alarm;
use super::Ctx;
use crate::error::DecodeError;
use crate::message::{Alarm, CellTower, Message, MessageKind, Position};
use crate::reader::{bcd_byte, Reader};

/// Decodes a 0x5501 / 0x5502 body; `blind` marks the 0x5502 backlog as archived.
///
/// # Errors
/// [`DecodeError::Truncated`] when the fixed part is cut short, [`DecodeError::InvalidField`]
/// for non-BCD coordinate digits.
pub(crate) fn decode_location(
    body: &[u8],
    ctx: &Ctx<'_>,
    blind: bool,
) -> Result<Message, DecodeError> {
    let mut r = Reader::new(body);
    let t = r.take(6, "time")?;
    let lat_digits = r.take(4, "latitude")?;
    let lon_digits = r.take(5, "longitude")?;
    let speed = r.bcd_u8("speed")?;
    let course = r.u8("course")?;
    let rssi = r.u8("signal")?;
    let satellites = r.u8("satellites")?;
    let odometer_km = r.u32("odometer")?;
    let battery = r.u8("battery")?;
    let cid = r.u32("cell id")?;
    let lac = r.u16("lac")?;
    let product = r.u8("product")?;
    let _status = r.u16("status")?;
    let alarm = r.u16("alarm")?;

    let mut msg = ctx.message(MessageKind::Position);
    msg.status.gsm_signal = Some(rssi);
    msg.status.odometer_m = Some(f64::from(odometer_km) * 1000.0);
    if battery <= 100 {
        msg.status.battery_pct = Some(battery);
    } else if matches!(battery, 0xAA | 0xAB) {
        msg.status.charging = Some(true);
    }
    if cid > 0 && lac > 0 {
        msg.cells.push(CellTower {
            mcc: 0,
            mnc: 0,
            lac: u32::from(lac),
            cid: u64::from(cid),
            rssi: None,
        });
    }
    let flags = lon_digits[4] & 0x0f;
    let lat = bcd_minutes(lat_digits, 8)?;
    let lon = bcd_minutes(lon_digits, 9)?;
    let lat = if flags & 0b010 != 0 { lat } else { -lat };
    let lon = if flags & 0b100 != 0 { lon } else { -lon };

    match product {
        1 | 2 if alarm & 1 != 0 => add_alarm(&mut msg, Alarm::LowBattery),
        3 => {
            for (bit, a) in [
                (0, Alarm::Overspeed),
                (1, Alarm::LowBattery),
                (2, Alarm::Vibration),
                (3, Alarm::LowBattery),
                (5, Alarm::GeofenceEnter),
                (6, Alarm::GeofenceExit),
            ] {
                if alarm & (1 << bit) != 0 {
                    add_alarm(&mut msg, a);
                }
            }
        }
        _ => {}
    }

    let mut altitude = None;
    while r.remaining() >= 2 {
        let id = r.u8("item id")?;
        let len = r.u8("item length")?;
        let Ok(v) = r.take(usize::from(len), "item value") else {
            break;
        };
        if id == 0x02 && len == 2 {
            altitude = Some(f64::from(i16::from_be_bytes([v[0], v[1]])));
        }
    }

    if let (Some(time), true) = (dmy_time(t), lat.abs() <= 90.0 && lon.abs() <= 180.0) {
        let mut p = Position::new(time, lat, lon);
        p.valid = flags & 1 != 0;
        p.speed_kmh = Some(f64::from(speed) * 1.852);
        p.course = Some(f64::from(course) * 2.0).filter(|c| *c <= 360.0);
        p.satellites = Some(satellites);
        p.altitude_m = altitude;
        p.archived = blind;
        msg.position = Some(p);
    } else {
        msg.kind = MessageKind::Status;
    }
    if !msg.alarms.is_empty() {
        msg.kind = MessageKind::Alarm;
    }
    Ok(msg)
}

/// `digits` BCD digits `d…dmmmmmm` (degrees, then minutes ×10⁴) as degrees.
fn bcd_minutes(bytes: &[u8], digits: usize) -> Result<f64, DecodeError> {
    let mut value: u64 = 0;
    for i in 0..digits {
        let byte = bytes.get(i / 2).copied().unwrap_or(0);
        let nibble = if i % 2 == 0 { byte >> 4 } else { byte & 0x0f };
        if nibble > 9 {
            return Err(DecodeError::invalid(
                "coordinate",
                format!("{byte:#04x} is not packed BCD"),
            ));
        }
        value = value * 10 + u64::from(nibble);
    }
    let degrees = value / 1_000_000;
    let minutes_e4 = value % 1_000_000;
    Ok((degrees * 600_000 + minutes_e4) as f64 / 600_000.0)
}

/// BCD `DD MM YY hh mm ss`, UTC.
fn dmy_time(b: &[u8]) -> Option<DateTime<Utc>> {
    let mut v = [0u32; 6];
    for (slot, &byte) in v.iter_mut().zip(b.iter()) {
        *slot = u32::from(bcd_byte(byte, "time").ok()?);
    }
    let date = NaiveDate::from_ymd_opt(2000 + v[2] as i32, v[1], v[0])?;
    Some(date.and_hms_opt(v[3], v[4], v[5])?.and_utc())
}

/// What an ASCII message is: a time request answered with `reply`, or a command reply.
pub(crate) fn decode_ascii(
    text: &str,
    ctx: &Ctx<'_>,
    now: DateTime<Utc>,
) -> (Message, Option<Vec<u8>>) {
    if text.contains("BASE,2") {
        let stamp = now.format("%Y%m%d%H%M%S").to_string();
        let reply = text.replace("TIME", &stamp).into_bytes();
        (ctx.message(MessageKind::TimeRequest), Some(reply))
    } else {
        (ctx.message(MessageKind::CommandReply), None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_vendor_location() {
        let body = [
            0x06, 0x05, 0x21, 0x17, 0x59, 0x40, // 6 May 2021 17:59:40 UTC
            0x22, 0x34, 0x84, 0x74, // 22° 34.8474'
            0x11, 0x35, 0x50, 0x56, 0x07, // 113° 55.0560', flags 7: valid, north, east
            0x05, // 5 knots
            0x98, // course 304°
            0x1e, // signal
            0x04, // satellites
            0x00, 0x00, 0x00, 0x02, // odometer 2 km
            0x37, // battery 55 %
            0x0a, 0xc3, 0x0c, 0x0c, // cell id
            0x26, 0x7f, // lac
            0x01, // product
            0x00, 0x00, // status
            0x00, 0x00, // alarm
        ];
        let mut stated = None;
        let ctx = Ctx {
            device_id: "1",
            override_offset: None,
            stated_offset: &mut stated,
            model: Default::default(),
            now: chrono::DateTime::UNIX_EPOCH,
        };
        let msg = decode_location(&body, &ctx, true).unwrap();
        let p = msg.position.unwrap();
        assert_eq!(p.time.to_rfc3339(), "2021-05-06T17:59:40+00:00");
        assert!((p.lat - (22.0 + 34.8474 / 60.0)).abs() < 1e-12);
        assert!((p.lon - (113.0 + 55.056 / 60.0)).abs() < 1e-12);
        assert!(p.valid && p.archived);
        assert_eq!(p.course, Some(304.0));
        assert_eq!(msg.status.battery_pct, Some(55));
    }

    #[test]
    fn ascii_time_request_is_answered_with_the_time() {
        let mut stated = None;
        let ctx = Ctx {
            device_id: "1",
            override_offset: None,
            stated_offset: &mut stated,
            model: Default::default(),
            now: chrono::DateTime::UNIX_EPOCH,
        };
        let now = NaiveDate::from_ymd_opt(2026, 1, 2)
            .unwrap()
            .and_hms_opt(3, 4, 5)
            .unwrap()
            .and_utc();
        let (msg, reply) = decode_ascii("(794104004140,1,001,BASE,2,TIME)", &ctx, now);
        assert_eq!(msg.kind, MessageKind::TimeRequest);
        assert_eq!(
            reply.unwrap(),
            b"(794104004140,1,001,BASE,2,20260102030405)"
        );
    }
}

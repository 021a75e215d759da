//! The binary `$` position record (32 or 45 bytes; 42 with a 15-digit ID).
//!
//! | bytes | field |
//! | --- | --- |
//! | 1 | `$` (`X` in a variant that is split but not decoded) |
//! | 5 | device ID, BCD, 10 digits (8 bytes / first 15 digits in a 42-byte record) |
//! | 3 | time hh mm ss, BCD |
//! | 3 | date dd mm yy, BCD |
//! | 4 | latitude `DDMMmmmm`, BCD: degrees, minutes, four decimals of minutes |
//! | 1 | battery: 1–6 a level of six, 7–100 a percentage, 0 not reported |
//! | 4½ | longitude `DDDMMmmmm`, BCD |
//! | ½ | flags: bit 1 fix valid, bit 2 north, bit 3 east (clear = south / west) |
//! | 1½ + 1½ | speed in knots (3 BCD digits), course in degrees (3 BCD digits) |
//! | 4 | status word (see `status.rs`) |
//! | rest | not interpreted (3 bytes in a 32-byte record, 16 in a 45-byte one) |
//!
//! In: one cut-out record. Out: a [`Record`] (parse) and then one [`MessageKind::Position`]
//! message. Every BCD nibble is checked; a record with a non-decimal digit is rejected rather
//! than read as a wrong number. No reply: the device does not wait for one.

use chrono::NaiveDateTime;

use crate::error::DecodeError;
use crate::message::{Message, MessageKind, Position};
use crate::reader::{bcd_digits, Reader};

use super::fields::{self, Axis, Context, DegMin};
use super::frame::LONG_ID_RECORD_LEN;
use super::location::KNOTS_TO_KMH;
use super::status;

/// One binary record's fields.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Record {
    /// Device ID digits.
    pub device_id: String,
    /// Fix time as the device wrote it.
    pub time: NaiveDateTime,
    /// Latitude in degrees, north positive.
    pub lat: f64,
    /// Longitude in degrees, east positive.
    pub lon: f64,
    /// Flags bit 1.
    pub valid: bool,
    /// The raw battery byte.
    pub battery: u8,
    /// Speed in knots.
    pub speed_knots: u16,
    /// Course in degrees.
    pub course: u16,
    /// The status word.
    pub status: u32,
}

/// Reads a `$` (or `X`) record. A record of exactly 42 bytes has the 8-byte ID.
///
/// # Errors
/// [`DecodeError::Truncated`] for fewer than 29 bytes (32 with the long ID);
/// [`DecodeError::InvalidField`] for a non-BCD digit, an impossible time or a coordinate out of
/// range.
pub(super) fn parse(frame: &[u8]) -> Result<Record, DecodeError> {
    let mut r = Reader::new(frame);
    let marker = r.u8("marker")?;
    if !matches!(marker, b'$' | b'X') {
        return Err(DecodeError::NotThisProtocol {
            protocol: "h02",
            reason: format!("binary record starts with {marker:#04x}, not '$'"),
        });
    }
    let device_id = if frame.len() == LONG_ID_RECORD_LEN {
        let id = r.take(8, "device id")?;
        let mut digits = bcd_digits(id.get(..7).unwrap_or_default(), "device id")?;
        let last = id.get(7).map_or(0, |b| b >> 4);
        if last > 9 {
            return Err(DecodeError::invalid("device id", "15th digit is not BCD"));
        }
        digits.push(char::from(b'0' + last));
        digits
    } else {
        r.bcd_string(5, "device id")?
    };

    let (hh, mi, ss) = (r.bcd_u8("time")?, r.bcd_u8("time")?, r.bcd_u8("time")?);
    let (dd, mo, yy) = (r.bcd_u8("date")?, r.bcd_u8("date")?, r.bcd_u8("date")?);
    let time = fields::date(dd.into(), mo.into(), yy.into())
        .and_then(|d| d.and_hms_opt(hh.into(), mi.into(), ss.into()))
        .ok_or_else(|| {
            DecodeError::invalid(
                "time",
                format!("{dd:02}-{mo:02}-{yy:02} {hh:02}:{mi:02}:{ss:02} is not a date and time"),
            )
        })?;

    // Latitude DD MM mmmm.
    let lat = nibbles::<8>(r.take(4, "latitude")?);
    let lat = deg_min(&lat, 2, "latitude")?.degrees(Axis::Lat)?;
    let battery = r.u8("battery")?;
    // Longitude DDD MM mmmm, then the flags nibble.
    let lon_flags = nibbles::<10>(r.take(5, "longitude")?);
    let lon =
        deg_min(lon_flags.get(..9).unwrap_or_default(), 3, "longitude")?.degrees(Axis::Lon)?;
    let flags = lon_flags.get(9).copied().unwrap_or(0);
    // Speed SSS, course CCC.
    let motion = nibbles::<6>(r.take(3, "speed and course")?);
    let speed_knots = decimal(motion.get(..3).unwrap_or_default(), "speed")?;
    let course = decimal(motion.get(3..).unwrap_or_default(), "course")?;
    let status = r.u32("status")?;

    Ok(Record {
        device_id,
        time,
        lat: if flags & 0x04 == 0 { -lat } else { lat },
        lon: if flags & 0x08 == 0 { -lon } else { lon },
        valid: flags & 0x02 != 0,
        battery,
        speed_knots: u16::try_from(speed_knots).unwrap_or(u16::MAX),
        course: u16::try_from(course).unwrap_or(u16::MAX),
        status,
    })
}

/// The record as a position message.
pub(super) fn message(record: &Record, ctx: &Context<'_>) -> Message {
    let mut position = Position::new(ctx.local_to_utc(record.time), record.lat, record.lon);
    position.valid = record.valid;
    position.speed_kmh = Some(f64::from(record.speed_knots) * KNOTS_TO_KMH);
    position.course = (record.course <= 360).then_some(f64::from(record.course));
    let mut message = Message::new(MessageKind::Position);
    message.position = Some(position);
    message.status.battery_pct = battery_pct(record.battery);
    status::apply(record.status, &mut message);
    message
}

/// The battery byte as a percentage: 1–6 is a level of six (6 = full), 7–100 a percentage;
/// 0 (which most devices send) and anything else mean "not reported".
pub(super) fn battery_pct(raw: u8) -> Option<u8> {
    match raw {
        1..=6 => Some(((u16::from(raw) * 100 + 3) / 6) as u8),
        7..=100 => Some(raw),
        _ => None,
    }
}

/// The nibbles of `bytes`, high first.
fn nibbles<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    for (i, slot) in out.iter_mut().enumerate() {
        let byte = bytes.get(i / 2).copied().unwrap_or(0);
        *slot = if i % 2 == 0 { byte >> 4 } else { byte & 0x0f };
    }
    out
}

/// Decimal digits as a number.
fn decimal(digits: &[u8], what: &'static str) -> Result<u64, DecodeError> {
    digits.iter().try_fold(0u64, |acc, d| {
        if *d > 9 {
            Err(DecodeError::invalid(
                what,
                format!("nibble {d:#x} is not BCD"),
            ))
        } else {
            Ok(acc * 10 + u64::from(*d))
        }
    })
}

/// `deg_digits` degree digits, two minute digits and four decimals.
fn deg_min(digits: &[u8], deg_digits: usize, what: &'static str) -> Result<DegMin, DecodeError> {
    let (deg, rest) = digits.split_at(deg_digits.min(digits.len()));
    let (min, frac) = rest.split_at(2.min(rest.len()));
    Ok(DegMin {
        degrees: decimal(deg, what)?,
        minutes: decimal(min, what)?,
        fraction: decimal(frac, what)?,
        scale: 4,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Alarm;
    use chrono::{NaiveDate, TimeZone, Utc};

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn ctx() -> Context<'static> {
        Context {
            now: Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap(),
            utc_offset_minutes: 0,
            device_id: None,
        }
    }

    #[test]
    fn reads_a_45_byte_record() {
        let frame = hex(concat!(
            "24",                               // '$'
            "4106000826",                       // ID 4106000826
            "215321",                           // 21:53:21
            "310815",                           // 31-08-15
            "04419390",                         // 04° 41.9390'
            "06",                               // battery level 6 of 6
            "074041830",                        // 074° 04.1830'
            "6",                                // flags: valid, north, west
            "000000",                           // speed 000 kn, course 000
            "fffffbfd",                         // status: bit 1 clear (SOS)
            "ff0015060000002c02dc0c000000001f"  // not interpreted
        ));
        assert_eq!(frame.len(), 45);
        let record = parse(&frame).unwrap();
        assert_eq!(record.device_id, "4106000826");
        assert_eq!(
            record.time,
            NaiveDate::from_ymd_opt(2015, 8, 31)
                .unwrap()
                .and_hms_opt(21, 53, 21)
                .unwrap()
        );
        assert!((record.lat - 4.69898).abs() < 1e-5);
        assert!((record.lon + 74.06971).abs() < 1e-5);
        assert!(record.valid);
        let m = message(&record, &ctx());
        assert_eq!(m.status.battery_pct, Some(100));
        assert_eq!(m.alarms, [Alarm::Sos]);
        assert_eq!(
            m.position.unwrap().time,
            Utc.with_ymd_and_hms(2015, 8, 31, 21, 53, 21).unwrap()
        );
    }

    #[test]
    fn reads_the_15_digit_id_of_a_42_byte_record() {
        let frame = hex(concat!(
            "24",
            "3524830841932930", // ID 352483084193293, padding nibble
            "104759",
            "180817",    // 10:47:59 18-08-17
            "26273359",  // 26° 27.3359'
            "00",        // battery not reported
            "074412294", // 074° 41.2294'
            "e",         // flags: valid, north, east
            "024138",    // 24 kn, 138°
            "feffffff",  // status
            "ff01120064ba73005ecc"
        ));
        assert_eq!(frame.len(), 42);
        let record = parse(&frame).unwrap();
        assert_eq!(record.device_id, "352483084193293");
        assert_eq!((record.speed_knots, record.course), (24, 138));
        let m = message(&record, &ctx());
        assert_eq!(m.status.battery_pct, None);
        let p = m.position.unwrap();
        assert!((p.speed_kmh.unwrap() - 24.0 * 1.852).abs() < 1e-9);
        assert!(p.lat > 0.0 && p.lon > 0.0);
    }

    #[test]
    fn rejects_non_bcd_digits_and_short_records() {
        let good = hex("2441060116601245431311165035313006004318210e000000fffffbffff0024");
        assert!(parse(&good).is_ok());
        for (at, byte) in [(1, 0x4a), (6, 0x99), (12, 0xa0), (18, 0x0b), (23, 0xf0)] {
            let mut bad = good.clone();
            bad[at] = byte;
            assert!(parse(&bad).is_err(), "byte {at} = {byte:#x}");
        }
        assert!(matches!(
            parse(&good[..28]),
            Err(DecodeError::Truncated { what: "status", .. })
        ));
    }

    #[test]
    fn battery_levels() {
        assert_eq!(battery_pct(0), None);
        assert_eq!(battery_pct(3), Some(50));
        assert_eq!(battery_pct(6), Some(100));
        assert_eq!(battery_pct(96), Some(96));
        assert_eq!(battery_pct(0xF3), None);
    }
}

//! Builds well-formed H02 frames: the device side (text `V1` reports, heartbeats, binary
//! 32-byte records) for tests and the `ewall simulate` load generator, and the server replies
//! the session sends.
//!
//! Resolution on the wire: coordinates to 0.0001 minute (about 0.2 m), time to the second, text
//! speed to 0.01 knot, binary speed to 1 knot, course to 1 degree. Years must be 2000–2099 (two
//! digits on the wire).

use chrono::{DateTime, Datelike, Timelike, Utc};

use crate::reader::bcd_encode;

/// The status word of a device with nothing to report: no alarm, ignition off.
pub const STATUS_IDLE: u32 = 0xFFFF_FBFF;

/// One position report, the input to [`text_v1`] and [`binary_record`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Report {
    /// Fix time (UTC), written to the second.
    pub time: DateTime<Utc>,
    /// Whether the fix is valid (`A` / flags bit 1).
    pub valid: bool,
    /// Latitude in degrees, north positive, -90..=90.
    pub lat: f64,
    /// Longitude in degrees, east positive, -180..=180.
    pub lon: f64,
    /// Ground speed in km/h; written as knots.
    pub speed_kmh: f64,
    /// Course in degrees, 0..360; written as whole degrees.
    pub course: f64,
    /// The status word (active-low alarm bits, see the module README); [`STATUS_IDLE`] for none.
    pub status: u32,
}

impl Report {
    /// A valid, stationary report with the idle status word.
    pub fn new(time: DateTime<Utc>, lat: f64, lon: f64) -> Self {
        Report {
            time,
            valid: true,
            lat,
            lon,
            speed_kmh: 0.0,
            course: 0.0,
            status: STATUS_IDLE,
        }
    }
}

/// A text `V1` report:
/// `*HQ,<id>,V1,hhmmss,A|V,DDMM.MMMM,N|S,DDDMM.MMMM,E|W,<knots>,<course>,ddmmyy,<STATUS>#`.
///
/// Speed is converted from km/h to knots with two decimals.
pub fn text_v1(id: &str, report: &Report) -> Vec<u8> {
    let t = report.time;
    let (lat, ns) = text_coordinate(report.lat, 2, 'N', 'S');
    let (lon, ew) = text_coordinate(report.lon, 3, 'E', 'W');
    format!(
        "*HQ,{id},V1,{:02}{:02}{:02},{},{lat},{ns},{lon},{ew},{:.2},{:03},{:02}{:02}{:02},{:08X}#",
        t.hour(),
        t.minute(),
        t.second(),
        if report.valid { 'A' } else { 'V' },
        knots(report.speed_kmh),
        whole_course(report.course),
        t.day(),
        t.month(),
        t.year().rem_euclid(100),
        report.status,
    )
    .into_bytes()
}

/// A heartbeat: `*HQ,<id>,HTBT,<battery %>#`, or `*HQ,<id>,HTBT#` without a battery level.
pub fn heartbeat(id: &str, battery_pct: Option<u8>) -> Vec<u8> {
    match battery_pct {
        Some(pct) => format!("*HQ,{id},HTBT,{}#", pct.min(100)),
        None => format!("*HQ,{id},HTBT#"),
    }
    .into_bytes()
}

/// A 32-byte binary record (layout in the module README).
///
/// `id` is written as 10 BCD digits: shorter IDs are left-padded with zeros, longer ones keep
/// their last 10 digits. `battery` is the raw byte (1–6 a level of six, 7–100 a percentage,
/// 0 not reported). Speed is written in whole knots (at most 999), course in whole degrees.
pub fn binary_record(id: &str, report: &Report, battery: u8) -> Vec<u8> {
    let t = report.time;
    let bcd = |v: u32| -> u8 {
        let v = v % 100;
        u8::try_from(((v / 10) << 4) | (v % 10)).unwrap_or(0)
    };
    let mut out = Vec::with_capacity(32);
    out.push(b'$');
    out.extend(bcd_encode(id, 5));
    out.extend([bcd(t.hour()), bcd(t.minute()), bcd(t.second())]);
    out.extend([
        bcd(t.day()),
        bcd(t.month()),
        bcd(t.year().rem_euclid(100).unsigned_abs()),
    ]);
    let lat = minutes_e4(report.lat);
    out.extend(bcd_encode(
        &format!("{:02}{:06}", lat / 600_000, lat % 600_000),
        4,
    ));
    out.push(battery);
    let lon = minutes_e4(report.lon);
    let flags = (u8::from(report.valid) << 1)
        | (u8::from(report.lat >= 0.0) << 2)
        | (u8::from(report.lon >= 0.0) << 3);
    // The flags nibble is not a digit (it can exceed 9): write a 0 and patch it in.
    let lon_digits = format!("{:03}{:06}0", lon / 600_000, lon % 600_000);
    let mut lon_bytes = bcd_encode(&lon_digits, 5);
    if let Some(last) = lon_bytes.last_mut() {
        *last = (*last & 0xf0) | flags;
    }
    out.extend(lon_bytes);
    let speed = (knots(report.speed_kmh).round() as u32).min(999);
    out.extend(bcd_encode(
        &format!("{speed:03}{:03}", whole_course(report.course)),
        3,
    ));
    out.extend(report.status.to_be_bytes());
    // Three trailing bytes we do not interpret; captured records carry these values.
    out.extend([0xff, 0x00, 0x00]);
    out
}

/// The reply to a `V1` report: `*HQ,<id>,V4,V1,<yyyyMMddHHmmss>#` with the server's UTC time.
pub fn reply_v1(id: &str, now: DateTime<Utc>) -> Vec<u8> {
    reply_v4(id, "V1", now)
}

/// The reply to an `NBR` cell list: `*HQ,<id>,V4,NBR,<yyyyMMddHHmmss>#`.
pub fn reply_nbr(id: &str, now: DateTime<Utc>) -> Vec<u8> {
    reply_v4(id, "NBR", now)
}

fn reply_v4(id: &str, kind: &str, now: DateTime<Utc>) -> Vec<u8> {
    format!("*HQ,{id},V4,{kind},{}#", now.format("%Y%m%d%H%M%S")).into_bytes()
}

/// A coordinate's magnitude in ten-thousandths of a minute, rounded to the wire's resolution.
fn minutes_e4(degrees: f64) -> u64 {
    let scaled = (degrees.abs() * 600_000.0).round();
    if scaled.is_finite() && scaled >= 0.0 {
        scaled.min(180.0 * 600_000.0) as u64
    } else {
        0
    }
}

/// `DDMM.MMMM` (or `DDDMM.MMMM`) and the hemisphere letter.
fn text_coordinate(degrees: f64, deg_digits: usize, pos: char, neg: char) -> (String, char) {
    let v = minutes_e4(degrees);
    let (deg, min) = (v / 600_000, v % 600_000);
    let text = format!("{deg:0deg_digits$}{:02}.{:04}", min / 10_000, min % 10_000);
    (text, if degrees < 0.0 { neg } else { pos })
}

fn knots(kmh: f64) -> f64 {
    if kmh.is_finite() && kmh > 0.0 {
        kmh / 1.852
    } else {
        0.0
    }
}

fn whole_course(course: f64) -> u32 {
    if course.is_finite() && course > 0.0 {
        (course.round() as u32) % 360
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn report() -> Report {
        Report {
            speed_kmh: 14.28 * 1.852,
            course: 28.0,
            ..Report::new(
                Utc.with_ymd_and_hms(2002, 9, 22, 5, 3, 16).unwrap(),
                22.214575,
                113.77762333,
            )
        }
    }

    #[test]
    fn text_v1_layout() {
        assert_eq!(
            String::from_utf8(text_v1("2020916012", &report())).unwrap(),
            "*HQ,2020916012,V1,050316,A,2212.8745,N,11346.6574,E,14.28,028,220902,FFFFFBFF#"
        );
    }

    #[test]
    fn southern_western_and_rounding_up_to_a_whole_minute() {
        let r = Report::new(
            Utc.with_ymd_and_hms(2015, 3, 7, 3, 1, 49).unwrap(),
            -23.999999999,
            -46.85975,
        );
        let text = String::from_utf8(text_v1("1", &r)).unwrap();
        assert!(text.contains(",2400.0000,S,04651.5850,W,"), "{text}");
    }

    #[test]
    fn binary_record_layout() {
        let r = Report {
            speed_kmh: 0.0,
            course: 0.0,
            status: 0xFFFF_FBFF,
            ..Report::new(
                Utc.with_ymd_and_hms(2016, 11, 13, 12, 45, 43).unwrap(),
                50.58855,
                4.72035,
            )
        };
        let bytes = binary_record("4106011660", &r, 6);
        let expected = [
            0x24, // '$'
            0x41, 0x06, 0x01, 0x16, 0x60, // ID
            0x12, 0x45, 0x43, // 12:45:43
            0x13, 0x11, 0x16, // 13-11-16
            0x50, 0x35, 0x31, 0x30, // 50° 35.3130'
            0x06, // battery
            0x00, 0x44, 0x32, 0x21, // 004° 43.221…
            0x0e, // …0', flags valid/north/east
            0x00, 0x00, 0x00, // speed 000, course 000
            0xff, 0xff, 0xfb, 0xff, // status
            0xff, 0x00, 0x00, // trailer
        ];
        assert_eq!(bytes, expected);
    }

    #[test]
    fn replies() {
        let now = Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 7).unwrap();
        assert_eq!(reply_v1("123", now), b"*HQ,123,V4,V1,20240501120007#");
        assert_eq!(reply_nbr("123", now), b"*HQ,123,V4,NBR,20240501120007#");
        assert_eq!(heartbeat("123", Some(100)), b"*HQ,123,HTBT,100#");
        assert_eq!(heartbeat("123", None), b"*HQ,123,HTBT#");
    }
}

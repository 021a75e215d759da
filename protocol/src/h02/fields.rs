//! Field parsers shared by the H02 text messages: numbers, coordinates, times and dates.
//!
//! In: one comma-separated field as bytes. Out: a typed value or a [`DecodeError`] naming the
//! field. Nothing here allocates beyond an error message, and nothing panics on any input.
//! Coordinates are computed from integers in a single division, so they are exact to the
//! resolution the device wrote.

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, NaiveTime, Utc};

use crate::error::DecodeError;

/// What a message decoder needs from the session besides the frame.
#[derive(Debug, Clone, Copy)]
pub(super) struct Context<'a> {
    /// The session clock's reading for this frame (receipt time).
    pub now: DateTime<Utc>,
    /// Offset of the device's clock from UTC, in minutes (0 unless configured).
    pub utc_offset_minutes: i32,
    /// The device identifier for replies: the frame's own, else the session's.
    pub device_id: Option<&'a str>,
}

impl Context<'_> {
    /// A device-local date and time as UTC.
    pub fn local_to_utc(&self, local: NaiveDateTime) -> DateTime<Utc> {
        (local - Duration::minutes(i64::from(self.utc_offset_minutes))).and_utc()
    }

    /// The fix time from what the frame carries:
    /// - date and time: as given;
    /// - date only: midnight of that date;
    /// - time only: that time on the device-local date (yesterday, today or tomorrow) that puts it
    ///   nearest to the receipt time, so a fix from just before midnight is not dated a day ahead;
    /// - neither: the receipt time.
    pub fn fix_time(&self, date: Option<NaiveDate>, time: Option<NaiveTime>) -> DateTime<Utc> {
        match (date, time) {
            (Some(d), Some(t)) => self.local_to_utc(d.and_time(t)),
            (Some(d), None) => self.local_to_utc(d.and_time(NaiveTime::MIN)),
            (None, Some(t)) => {
                let local_now =
                    self.now.naive_utc() + Duration::minutes(i64::from(self.utc_offset_minutes));
                let today = local_now.date();
                let nearest = [-1i64, 0, 1]
                    .into_iter()
                    .filter_map(|days| today.checked_add_signed(Duration::days(days)))
                    .map(|d| d.and_time(t))
                    .min_by_key(|candidate| (*candidate - local_now).num_seconds().abs())
                    .unwrap_or_else(|| today.and_time(t));
                self.local_to_utc(nearest)
            }
            (None, None) => self.now,
        }
    }
}

/// The field with surrounding spaces removed (some firmwares pad numbers with spaces).
pub(super) fn trim(field: &[u8]) -> &[u8] {
    let start = field.iter().position(|b| *b != b' ').unwrap_or(field.len());
    let end = field
        .iter()
        .rposition(|b| *b != b' ')
        .map_or(start, |i| i + 1);
    field.get(start..end).unwrap_or_default()
}

/// True when the field is non-empty and all ASCII digits.
pub(super) fn is_digits(field: &[u8]) -> bool {
    !field.is_empty() && field.iter().all(u8::is_ascii_digit)
}

/// True for exactly eight hex digits (the status word).
pub(super) fn is_status_word(field: &[u8]) -> bool {
    field.len() == 8 && field.iter().all(u8::is_ascii_hexdigit)
}

/// Shown in error messages: the field as text, cut short.
pub(super) fn show(field: &[u8]) -> String {
    let shown: String = String::from_utf8_lossy(field).chars().take(24).collect();
    format!("{shown:?}")
}

/// An unsigned decimal integer of at most 18 digits.
///
/// # Errors
/// [`DecodeError::InvalidField`] for anything else.
pub(super) fn uint(field: &[u8], what: &'static str) -> Result<u64, DecodeError> {
    let field = trim(field);
    if !is_digits(field) || field.len() > 18 {
        return Err(DecodeError::invalid(
            what,
            format!("{} is not a number", show(field)),
        ));
    }
    Ok(field
        .iter()
        .fold(0u64, |acc, d| acc * 10 + u64::from(d - b'0')))
}

/// An unsigned decimal integer that must fit `T`.
///
/// # Errors
/// [`DecodeError::InvalidField`] when it is not a number or out of range.
pub(super) fn uint_as<T: TryFrom<u64>>(field: &[u8], what: &'static str) -> Result<T, DecodeError> {
    let value = uint(field, what)?;
    T::try_from(value).map_err(|_| DecodeError::invalid(what, format!("{value} is out of range")))
}

/// A signed decimal integer (`-?d+`) that fits an i16 (signal strengths).
///
/// # Errors
/// [`DecodeError::InvalidField`] otherwise.
pub(super) fn int16(field: &[u8], what: &'static str) -> Result<i16, DecodeError> {
    let field = trim(field);
    let (negative, digits) = match field.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, field),
    };
    let magnitude = i64::try_from(uint(digits, what)?)
        .map_err(|_| DecodeError::invalid(what, format!("{} is out of range", show(field))))?;
    let value = if negative { -magnitude } else { magnitude };
    i16::try_from(value).map_err(|_| DecodeError::invalid(what, format!("{value} is out of range")))
}

/// A non-negative decimal number `d+[.d*]` or `.d+` (speed, course, fuel).
///
/// # Errors
/// [`DecodeError::InvalidField`] for anything else (signs, exponents, `inf`, `nan`).
pub(super) fn decimal(field: &[u8], what: &'static str) -> Result<f64, DecodeError> {
    let field = trim(field);
    let dots = field.iter().filter(|b| **b == b'.').count();
    let digits = field.iter().filter(|b| b.is_ascii_digit()).count();
    if digits == 0 || dots > 1 || digits + dots != field.len() || field.len() > 24 {
        return Err(DecodeError::invalid(
            what,
            format!("{} is not a decimal number", show(field)),
        ));
    }
    std::str::from_utf8(field)
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .ok_or_else(|| DecodeError::invalid(what, format!("{} is not a number", show(field))))
}

/// An optional decimal: `None` for an empty field.
///
/// # Errors
/// As [`decimal`].
pub(super) fn opt_decimal(field: &[u8], what: &'static str) -> Result<Option<f64>, DecodeError> {
    if trim(field).is_empty() {
        Ok(None)
    } else {
        decimal(field, what).map(Some)
    }
}

/// Eight hex digits as the status word.
///
/// # Errors
/// [`DecodeError::InvalidField`] for anything else.
pub(super) fn status_word(field: &[u8]) -> Result<u32, DecodeError> {
    let parsed = is_status_word(field)
        .then(|| std::str::from_utf8(field).ok())
        .flatten()
        .and_then(|s| u32::from_str_radix(s, 16).ok());
    parsed.ok_or_else(|| {
        DecodeError::invalid("status", format!("{} is not eight hex digits", show(field)))
    })
}

/// Time of day `hhmmss`; `None` for an empty field.
///
/// # Errors
/// [`DecodeError::InvalidField`] when it is not six digits or not a valid time.
pub(super) fn hhmmss(field: &[u8]) -> Result<Option<NaiveTime>, DecodeError> {
    if field.is_empty() {
        return Ok(None);
    }
    let [h, m, s] = six_digits(field, "time")?;
    NaiveTime::from_hms_opt(h, m, s)
        .map(Some)
        .ok_or_else(|| DecodeError::invalid("time", format!("{} is not a time", show(field))))
}

/// Date `ddmmyy` (years 2000–2099); `None` for an empty field or the `000000` devices send
/// before their clock is set.
///
/// # Errors
/// [`DecodeError::InvalidField`] when it is not six digits or not a valid date.
pub(super) fn ddmmyy(field: &[u8]) -> Result<Option<NaiveDate>, DecodeError> {
    if field.is_empty() || field == b"000000" {
        return Ok(None);
    }
    let [d, m, y] = six_digits(field, "date")?;
    date(d, m, y)
        .map(Some)
        .ok_or_else(|| DecodeError::invalid("date", format!("{} is not a date", show(field))))
}

/// Day, month and two-digit year (20yy) as a date.
pub(super) fn date(day: u32, month: u32, year: u32) -> Option<NaiveDate> {
    NaiveDate::from_ymd_opt(2000 + i32::try_from(year).ok()?, month, day)
}

fn six_digits(field: &[u8], what: &'static str) -> Result<[u32; 3], DecodeError> {
    match field {
        [a, b, c, d, e, f] if is_digits(field) => {
            let pair = |hi: u8, lo: u8| u32::from(hi - b'0') * 10 + u32::from(lo - b'0');
            Ok([pair(*a, *b), pair(*c, *d), pair(*e, *f)])
        }
        _ => Err(DecodeError::invalid(
            what,
            format!("{} is not six digits", show(field)),
        )),
    }
}

/// Which axis a coordinate is on: bounds the degrees and names the field in errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Axis {
    /// Latitude, at most 90 degrees.
    Lat,
    /// Longitude, at most 180 degrees.
    Lon,
}

impl Axis {
    fn name(self) -> &'static str {
        match self {
            Axis::Lat => "latitude",
            Axis::Lon => "longitude",
        }
    }

    fn max_degrees(self) -> u64 {
        match self {
            Axis::Lat => 90,
            Axis::Lon => 180,
        }
    }
}

/// Degrees, minutes and the minutes' decimals as integers: `value = deg + (min + frac/10^k)/60`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct DegMin {
    /// Whole degrees.
    pub degrees: u64,
    /// Whole minutes, 0..60.
    pub minutes: u64,
    /// Decimals of the minutes, as an integer.
    pub fraction: u64,
    /// Number of decimals in `fraction`.
    pub scale: u32,
}

impl DegMin {
    /// The unsigned value in degrees, from one division of exact integers.
    ///
    /// # Errors
    /// [`DecodeError::InvalidField`] when minutes reach 60 or the value exceeds the axis range.
    pub fn degrees(self, axis: Axis) -> Result<f64, DecodeError> {
        let ten_k = 10u64.pow(self.scale);
        let scaled = (self.degrees * 60 + self.minutes) * ten_k + self.fraction;
        if self.minutes >= 60 || scaled > axis.max_degrees() * 60 * ten_k {
            return Err(DecodeError::invalid(
                axis.name(),
                format!(
                    "{} degrees {}.{:0width$} minutes is out of range",
                    self.degrees,
                    self.minutes,
                    self.fraction,
                    width = self.scale as usize
                ),
            ));
        }
        // Both operands are below 2^53, so they are exact in f64 and the quotient is the
        // correctly rounded value.
        Ok(scaled as f64 / (60 * ten_k) as f64)
    }
}

/// The three text forms of a coordinate, unsigned:
/// - `DDMM.MMMM` / `DDDMM.MMMM`: the two digits before the dot are minutes, anything before
///   them degrees (possibly none: `38.6508` is 0° 38.6508');
/// - `-DD-MM.MMMM`: degrees and minutes each after a minus sign (the hemisphere still gives the
///   sign);
/// - `DDMMmmmm` without a dot: the last four digits are the minutes' decimals.
///
/// # Errors
/// [`DecodeError::InvalidField`] when the field fits none of them or is out of range.
pub(super) fn coordinate(field: &[u8], axis: Axis) -> Result<f64, DecodeError> {
    let field = trim(field);
    let bad = || DecodeError::invalid(axis.name(), format!("{} is not a coordinate", show(field)));
    let parts = if let Some(rest) = field.strip_prefix(b"-") {
        let dash = rest.iter().position(|b| *b == b'-').ok_or_else(bad)?;
        let (deg, min) = (
            rest.get(..dash).unwrap_or_default(),
            rest.get(dash + 1..).unwrap_or_default(),
        );
        let dot = min.iter().position(|b| *b == b'.').ok_or_else(bad)?;
        let (whole, frac) = (
            min.get(..dot).unwrap_or_default(),
            min.get(dot + 1..).unwrap_or_default(),
        );
        if !is_digits(deg) || !is_digits(whole) || whole.len() > 2 {
            return Err(bad());
        }
        deg_min(deg, whole, frac).ok_or_else(bad)?
    } else if let Some(dot) = field.iter().position(|b| *b == b'.') {
        let (whole, frac) = (
            field.get(..dot).unwrap_or_default(),
            field.get(dot + 1..).unwrap_or_default(),
        );
        if whole.len() < 2 || !is_digits(whole) {
            return Err(bad());
        }
        let (deg, min) = whole.split_at(whole.len() - 2);
        deg_min(deg, min, frac).ok_or_else(bad)?
    } else {
        if field.len() < 7 || !is_digits(field) {
            return Err(bad());
        }
        let (deg, rest) = field.split_at(field.len() - 6);
        let (min, frac) = rest.split_at(2);
        deg_min(deg, min, frac).ok_or_else(bad)?
    };
    parts.degrees(axis)
}

/// Degrees (possibly empty), minutes and decimals (1 to 10 digits) as integers.
fn deg_min(deg: &[u8], min: &[u8], frac: &[u8]) -> Option<DegMin> {
    if deg.len() > 3 || !(1..=10).contains(&frac.len()) {
        return None;
    }
    let number = |digits: &[u8]| -> Option<u64> {
        digits.iter().try_fold(0u64, |acc, d| {
            d.is_ascii_digit().then(|| acc * 10 + u64::from(d - b'0'))
        })
    };
    Some(DegMin {
        degrees: number(deg)?,
        minutes: number(min)?,
        fraction: number(frac)?,
        scale: u32::try_from(frac.len()).ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn ctx(now: DateTime<Utc>) -> Context<'static> {
        Context {
            now,
            utc_offset_minutes: 0,
            device_id: None,
        }
    }

    #[test]
    fn reads_the_three_coordinate_forms() {
        // DDMM.MMMM with two, one and no degree digits before the minutes.
        assert!((coordinate(b"3542.2043", Axis::Lat).unwrap() - 35.703405).abs() < 1e-9);
        assert!((coordinate(b"701.8915", Axis::Lat).unwrap() - 7.031525).abs() < 1e-9);
        assert!((coordinate(b"38.6508", Axis::Lon).unwrap() - 0.64418).abs() < 1e-9);
        // -DD-MM.MMMM with one- and two-digit minutes.
        assert!((coordinate(b"-23-29.0095", Axis::Lat).unwrap() - 23.483491666).abs() < 1e-8);
        assert!((coordinate(b"-48-2.8926", Axis::Lon).unwrap() - 48.04821).abs() < 1e-9);
        // DDMMmmmm without a dot.
        assert!((coordinate(b"145037022", Axis::Lon).unwrap() - 145.06170333).abs() < 1e-8);
        // Leading spaces are padding.
        assert!((coordinate(b" 954.9490", Axis::Lon).unwrap() - 9.915816666).abs() < 1e-8);
    }

    #[test]
    fn coordinates_are_exact_to_the_wire_resolution() {
        // 12 degrees 30.0000 minutes is exactly 12.5.
        assert_eq!(coordinate(b"1230.0000", Axis::Lat).unwrap(), 12.5);
        assert_eq!(coordinate(b"18000.0000", Axis::Lon).unwrap(), 180.0);
    }

    #[test]
    fn rejects_bad_coordinates() {
        for bad in [
            &b""[..],
            b"N",
            b"5.0",
            b"1260.0000", // 60 minutes
            b"9100.0000", // beyond 90 degrees latitude
            b"-23-3",     // no minutes' decimals
            b"12.34.56",
            b"123456", // undotted needs seven digits
            b"1e3",
            b"4605.123456789012", // more than ten decimals
        ] {
            assert!(
                coordinate(bad, Axis::Lat).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn numbers_refuse_what_is_not_plain_decimal() {
        assert_eq!(decimal(b"  3.34", "speed").unwrap(), 3.34);
        assert_eq!(decimal(b"000.5", "speed").unwrap(), 0.5);
        for bad in [&b"inf"[..], b"nan", b"-1", b"1e5", b"1.2.3", b"", b"."] {
            assert!(decimal(bad, "speed").is_err());
        }
        assert_eq!(int16(b"-67", "rssi").unwrap(), -67);
        assert!(int16(b"-99999", "rssi").is_err());
        assert_eq!(uint_as::<u8>(b"255", "n").unwrap(), 255);
        assert!(uint_as::<u8>(b"256", "n").is_err());
        assert_eq!(status_word(b"FFFFFBFF").unwrap(), 0xFFFF_FBFF);
        assert!(status_word(b"FFFFFBF").is_err());
    }

    #[test]
    fn dates_and_times() {
        assert_eq!(
            ddmmyy(b"221215").unwrap(),
            NaiveDate::from_ymd_opt(2015, 12, 22)
        );
        assert_eq!(ddmmyy(b"000000").unwrap(), None);
        assert_eq!(ddmmyy(b"").unwrap(), None);
        assert!(ddmmyy(b"321215").is_err());
        assert_eq!(
            hhmmss(b"164549").unwrap(),
            NaiveTime::from_hms_opt(16, 45, 49)
        );
        assert!(hhmmss(b"246000").is_err());
        assert!(hhmmss(b"16454").is_err());
    }

    #[test]
    fn a_time_without_date_takes_the_nearest_day() {
        let now = Utc.with_ymd_and_hms(2024, 3, 10, 0, 0, 5).unwrap();
        // 23:59:50 is ten seconds before now, i.e. yesterday.
        let t = NaiveTime::from_hms_opt(23, 59, 50);
        assert_eq!(
            ctx(now).fix_time(None, t),
            Utc.with_ymd_and_hms(2024, 3, 9, 23, 59, 50).unwrap()
        );
        // 00:00:01 is today.
        let t = NaiveTime::from_hms_opt(0, 0, 1);
        assert_eq!(
            ctx(now).fix_time(None, t),
            Utc.with_ymd_and_hms(2024, 3, 10, 0, 0, 1).unwrap()
        );
        // Nothing at all: the receipt time.
        assert_eq!(ctx(now).fix_time(None, None), now);
    }

    #[test]
    fn a_configured_offset_turns_device_time_into_utc() {
        let now = Utc.with_ymd_and_hms(2024, 3, 10, 12, 0, 0).unwrap();
        let c = Context {
            utc_offset_minutes: 480,
            ..ctx(now)
        };
        let d = NaiveDate::from_ymd_opt(2024, 3, 10);
        let t = NaiveTime::from_hms_opt(20, 0, 0);
        assert_eq!(
            c.fix_time(d, t),
            Utc.with_ymd_and_hms(2024, 3, 10, 12, 0, 0).unwrap()
        );
    }
}

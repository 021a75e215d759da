//! The `timestamp` value of OsmAnd requests and JSON bodies.
//!
//! In: the text as sent. Out: a UTC time. Accepted forms, tried in this order:
//! - all digits: seconds since the Unix epoch, or milliseconds when the value is 2³¹ or more
//!   (a seconds count that large would be after 2038);
//! - digits with one `.`: seconds (or milliseconds, same rule) with a fraction;
//! - containing `T`: ISO 8601 / RFC 3339 (`2016-01-27T18:55:47Z`, with or without a zone; no
//!   zone means UTC);
//! - otherwise `yyyy-MM-dd HH:mm:ss[.fff]`, read as **UTC**. (The reference server reads this
//!   form in its own local zone, which depends on where it runs; phones that send it use UTC.)

use chrono::{DateTime, NaiveDateTime, Utc};

use crate::DecodeError;

/// Parses a timestamp in any of the accepted forms.
///
/// # Errors
/// [`DecodeError::InvalidField`] (`timestamp`) when the text fits none of them or is out of
/// range.
pub(crate) fn parse(text: &str) -> Result<DateTime<Utc>, DecodeError> {
    let s = text.trim();
    let invalid = || DecodeError::invalid("timestamp", format!("{s:?}"));
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    if digits(s) {
        let n: i64 = s.parse().map_err(|_| invalid())?;
        let time = if n >= 1 << 31 {
            DateTime::from_timestamp_millis(n)
        } else {
            DateTime::from_timestamp(n, 0)
        };
        return time.ok_or_else(invalid);
    }
    if let Some((whole, fraction)) = s.split_once('.') {
        if digits(whole) && digits(fraction) {
            let value: f64 = s.parse().map_err(|_| invalid())?;
            let millis = if value >= f64::from(1u32 << 31) {
                value
            } else {
                value * 1000.0
            };
            // at most 19 integer digits and a fraction: finite, and in i64 range once checked
            if !(0.0..9.0e15).contains(&millis) {
                return Err(invalid());
            }
            return DateTime::from_timestamp_millis(millis.round() as i64).ok_or_else(invalid);
        }
    }
    if s.contains('T') {
        if let Ok(t) = DateTime::parse_from_rfc3339(s) {
            return Ok(t.with_timezone(&Utc));
        }
        for format in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%dT%H:%M:%S%.f%#z"] {
            if let Ok(t) = DateTime::parse_from_str(s, format) {
                return Ok(t.with_timezone(&Utc));
            }
        }
        let naive = s.strip_suffix('Z').unwrap_or(s);
        return NaiveDateTime::parse_from_str(naive, "%Y-%m-%dT%H:%M:%S%.f")
            .map(|t| t.and_utc())
            .map_err(|_| invalid());
    }
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f")
        .map(|t| t.and_utc())
        .map_err(|_| invalid())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    #[test]
    fn epoch_seconds_and_milliseconds() {
        assert_eq!(parse("1377177267").unwrap(), utc(2013, 8, 22, 13, 14, 27));
        let ms = parse("1442068686579").unwrap();
        assert_eq!(ms.timestamp_millis(), 1_442_068_686_579);
        // 2^31 - 1 is still seconds, 2^31 is milliseconds
        assert_eq!(parse("2147483647").unwrap().timestamp(), 2_147_483_647);
        assert_eq!(
            parse("2147483648").unwrap().timestamp_millis(),
            2_147_483_648
        );
        assert_eq!(
            parse("1377177267.5").unwrap().timestamp_millis(),
            1_377_177_267_500
        );
    }

    #[test]
    fn iso_forms() {
        let t = utc(2016, 1, 27, 18, 55, 47);
        assert_eq!(parse("2016-01-27T18:55:47Z").unwrap(), t);
        assert_eq!(parse("2016-01-27T20:55:47+02:00").unwrap(), t);
        assert_eq!(parse("2016-01-27T20:55:47+0200").unwrap(), t);
        assert_eq!(parse("2016-01-27T18:55:47").unwrap(), t);
        assert_eq!(
            parse("2025-06-15T13:45:12.862Z")
                .unwrap()
                .timestamp_millis(),
            utc(2025, 6, 15, 13, 45, 12).timestamp_millis() + 862
        );
    }

    #[test]
    fn plain_date_time_is_utc() {
        assert_eq!(
            parse("2014-06-04 09:10:11").unwrap(),
            utc(2014, 6, 4, 9, 10, 11)
        );
        assert_eq!(
            parse("2014-06-04 09:10:11.250")
                .unwrap()
                .timestamp_subsec_millis(),
            250
        );
    }

    #[test]
    fn rejects_nonsense() {
        for bad in [
            "",
            "yesterday",
            "99999999999999999999999",
            "2014-13-04 09:10:11",
            "2014-06-04T25:00:00Z",
            "1.2.3",
            "-5",
            "99999999999999999.5",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}

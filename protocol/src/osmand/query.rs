//! The query form of OsmAnd: `/?id=..&lat=..&lon=..&timestamp=..` as a request target, a bare
//! query string, or an `application/x-www-form-urlencoded` body with the same keys.
//!
//! In: the text. Out: a [`Report`]. Keys are matched in any case; when a key repeats, the last
//! value wins (except `cell` and `wifi`, which add one entry each). Unknown keys are ignored.
//! Coordinates and the timestamp must parse when present; other values that do not parse are
//! left out.

use crate::{CellTower, DecodeError, WifiAccessPoint};

use super::{alarm, course, flag, number, percent, time, Report};

/// Speed on the wire is in knots.
const KMH_PER_KNOT: f64 = 1.852;

/// Reads every key of a request target or form body.
///
/// # Errors
/// [`DecodeError::InvalidField`] for unreadable `lat`, `lon`, `location` or `timestamp`.
pub(super) fn parse(target: &str) -> Result<Report, DecodeError> {
    let mut report = Report::default();
    for pair in query_of(target).split('&') {
        if pair.is_empty() {
            continue;
        }
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = percent_decode(key).to_ascii_lowercase();
        let value = percent_decode(value);
        match key.as_str() {
            "id" | "deviceid" => report.id = Some(value.trim().to_owned()),
            "timestamp" => report.time = Some(time::parse(&value)?),
            "lat" => report.lat = Some(coordinate(&value, "lat")?),
            "lon" => report.lon = Some(coordinate(&value, "lon")?),
            "location" => {
                let (lat, lon) = value
                    .split_once(',')
                    .ok_or_else(|| DecodeError::invalid("location", format!("{value:?}")))?;
                report.lat = Some(coordinate(lat, "location")?);
                report.lon = Some(coordinate(lon, "location")?);
            }
            "valid" => report.valid = flag(&value).or(report.valid),
            "speed" => {
                report.speed_kmh = number(&value)
                    .filter(|v| *v >= 0.0)
                    .map(|knots| knots * KMH_PER_KNOT);
            }
            "bearing" | "heading" => report.course = number(&value).and_then(course),
            "altitude" => report.altitude_m = number(&value),
            "accuracy" => report.accuracy_m = number(&value).filter(|v| *v >= 0.0),
            "hdop" => report.hdop = number(&value).filter(|v| *v >= 0.0),
            "batt" => report.battery_pct = number(&value).and_then(percent),
            "charge" => report.charging = flag(&value),
            "alarm" if !value.trim().is_empty() => report.alarm = Some(alarm(&value)),
            "cell" => report.cells.extend(cell(&value)),
            "wifi" => report.wifi.extend(wifi(&value)),
            _ => {}
        }
    }
    Ok(report)
}

/// The query part of a request target (`/path?query#fragment`, `http://host/?query`), or the
/// whole text when it is already a bare query or form body.
fn query_of(target: &str) -> &str {
    let target = target.split_once('#').map_or(target, |(before, _)| before);
    match target.split_once('?') {
        Some((_, query)) => query,
        None if target.starts_with('/') || target.contains("://") => "",
        None => target.trim(),
    }
}

/// Form decoding: `+` is a space and `%XX` a byte; a `%` not followed by two hex digits is kept.
/// Bytes that are not UTF-8 become U+FFFD.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = |k: usize| bytes.get(k).and_then(|c| (*c as char).to_digit(16));
        match b {
            b'+' => out.push(b' '),
            b'%' => match (hex(i + 1), hex(i + 2)) {
                (Some(hi), Some(lo)) => {
                    out.push((hi * 16 + lo) as u8);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            _ => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn coordinate(text: &str, field: &'static str) -> Result<f64, DecodeError> {
    number(text).ok_or_else(|| DecodeError::invalid(field, format!("{text:?}")))
}

/// `mcc,mnc,lac,cid[,rssi]`, decimal.
fn cell(value: &str) -> Option<CellTower> {
    let parts: Vec<&str> = value.split(',').map(str::trim).collect();
    let (mcc, mnc, lac, cid) = match parts.as_slice() {
        [mcc, mnc, lac, cid] | [mcc, mnc, lac, cid, _] => (mcc, mnc, lac, cid),
        _ => return None,
    };
    Some(CellTower {
        mcc: mcc.parse().ok()?,
        mnc: mnc.parse().ok()?,
        lac: lac.parse().ok()?,
        cid: cid.parse().ok()?,
        rssi: parts.get(4).and_then(|r| r.parse().ok()),
    })
}

/// `mac-with-dashes,rssi` (colons accepted too).
fn wifi(value: &str) -> Option<WifiAccessPoint> {
    let (mac, rssi) = value.split_once(',').unwrap_or((value, ""));
    let groups: Vec<&str> = mac.trim().split(['-', ':']).collect();
    let well_formed = groups.len() == 6
        && groups
            .iter()
            .all(|g| g.len() == 2 && g.bytes().all(|b| b.is_ascii_hexdigit()));
    well_formed.then(|| WifiAccessPoint {
        mac: groups.join(":").to_ascii_lowercase(),
        rssi: rssi.trim().parse().ok(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_part_of_a_target() {
        assert_eq!(query_of("/?id=1&lat=2"), "id=1&lat=2");
        assert_eq!(query_of("/path/x?id=1#frag"), "id=1");
        assert_eq!(query_of("http://host:5055/?id=1"), "id=1");
        assert_eq!(query_of("id=1&lat=2"), "id=1&lat=2");
        assert_eq!(query_of("/"), "");
        assert_eq!(query_of("http://host/"), "");
    }

    #[test]
    fn form_decoding() {
        assert_eq!(
            percent_decode("2014-06-04+09%3A10%3A11"),
            "2014-06-04 09:10:11"
        );
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("%zz%41"), "%zzA");
        assert_eq!(percent_decode("caf%C3%A9"), "caf\u{e9}");
        assert_eq!(percent_decode("%ff"), "\u{fffd}");
    }

    #[test]
    fn cells_and_access_points() {
        let c = cell("257,02,16,2223,-90").unwrap();
        assert_eq!(
            (c.mcc, c.mnc, c.lac, c.cid, c.rssi),
            (257, 2, 16, 2223, Some(-90))
        );
        assert_eq!(cell("257,02,16,2224").unwrap().rssi, None);
        assert_eq!(cell("257,02,16"), None);
        assert_eq!(cell("a,b,c,d"), None);
        let w = wifi("00-1C-B3-09-85-15,-70").unwrap();
        assert_eq!(w.mac, "00:1c:b3:09:85:15");
        assert_eq!(w.rssi, Some(-70));
        assert_eq!(wifi("00-1C-B3-09-85,-70"), None);
    }

    #[test]
    fn keys_in_any_case_and_last_wins() {
        let r = parse("/?ID=a&lat=1&Lat=2&lon=3&deviceId=b").unwrap();
        assert_eq!(r.id.as_deref(), Some("b"));
        assert_eq!(r.lat, Some(2.0));
    }

    #[test]
    fn unreadable_coordinates_or_time_are_errors() {
        for bad in [
            "/?id=1&lat=north&lon=3",
            "/?id=1&lat=1&lon=inf",
            "/?id=1&location=1",
            "/?id=1&timestamp=soon",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        // other values that do not parse are left out
        let r = parse("/?id=1&speed=fast&batt=200&valid=maybe").unwrap();
        assert_eq!((r.speed_kmh, r.battery_pct, r.valid), (None, None, None));
    }
}

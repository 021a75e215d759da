//! The position body shared by `UD`, `UD2`, `UD3`, `UD_LTE`, `UD_WCDMA`, `WT` and the `AL*`
//! alarms: fix, device status, status word, cells, Wi-Fi access points and accuracy.
//!
//! In: the comma-separated body after the type. Out: a [`Report`]. The fix is parsed strictly
//! (date, time, validity, coordinates); everything after it is read leniently, because the tail
//! differs between makers and a malformed cell list must not cost the position.

use chrono::{DateTime, Duration, NaiveDate, Utc};

use crate::{
    CellTower, DecodeError, DeviceStatus, Message, MessageKind, Position, PositionSource,
    WifiAccessPoint,
};

use super::alarm;

/// Fields before the cell list: date, time, A/V, lat, N/S, lon, E/W, speed, course, altitude,
/// satellites, GSM signal, battery, steps, rolls, status.
const FIX_FIELDS: usize = 16;

/// Everything a position body carries.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Report {
    /// The fix, or why it could not be read.
    pub position: Result<Position, DecodeError>,
    /// Battery, GSM signal and steps.
    pub status: DeviceStatus,
    /// The hex status word with the alarm bits, when present.
    pub status_word: Option<u32>,
    /// Cells listed after the fix.
    pub cells: Vec<CellTower>,
    /// Wi-Fi access points listed after the cells.
    pub wifi: Vec<WifiAccessPoint>,
}

impl Report {
    /// Reads a position body. `archived` marks blind-area (UD2) data; `offset_minutes` is the
    /// device clock's offset from UTC; `now` dates a fix whose date and time are not a date.
    pub fn parse(body: &[u8], archived: bool, offset_minutes: i32, now: DateTime<Utc>) -> Report {
        let fields: Vec<&[u8]> = body.split(|&b| b == b',').collect();
        let field = |i: usize| fields.get(i).copied().unwrap_or_default();
        let status = DeviceStatus {
            gsm_signal: int(field(11)).and_then(|v| u8::try_from(v).ok()),
            battery_pct: int(field(12))
                .filter(|v| *v <= 100)
                .and_then(|v| u8::try_from(v).ok()),
            steps: int(field(13)).and_then(|v| u32::try_from(v).ok()),
            ..DeviceStatus::default()
        };
        let status_word = text(field(15)).and_then(|s| u32::from_str_radix(s, 16).ok());
        let (cells, wifi, accuracy) = network(fields.get(FIX_FIELDS..).unwrap_or_default());
        let position = fix(&fields, offset_minutes, now).map(|mut p| {
            p.archived = archived;
            p.accuracy_m = accuracy;
            if !p.valid {
                p.source = if !wifi.is_empty() {
                    PositionSource::Wifi
                } else if !cells.is_empty() {
                    PositionSource::Lbs
                } else {
                    PositionSource::Gps
                };
            }
            p
        });
        Report {
            position,
            status,
            status_word,
            cells,
            wifi,
        }
    }

    /// A message of `kind` for device `id` carrying this report (the position only if it
    /// parsed) and the alarms of its status word.
    pub fn into_message(self, kind: MessageKind, id: &str) -> Message {
        let mut message = Message::new(kind);
        message.device_id = Some(id.to_owned());
        message.alarms = self
            .status_word
            .map(alarm::from_status_word)
            .unwrap_or_default();
        message.position = self.position.ok();
        message.status = self.status;
        message.cells = self.cells;
        message.wifi = self.wifi;
        message
    }
}

/// The fix: time, validity, coordinates, speed, course, altitude, satellites. A date and time
/// that are not a real date (but not blank either) give the position at `now`, the fields kept
/// in [`Position::unreadable_time`], so that the service stores it flagged.
fn fix(fields: &[&[u8]], offset_minutes: i32, now: DateTime<Utc>) -> Result<Position, DecodeError> {
    if fields.len() < FIX_FIELDS {
        return Err(DecodeError::Truncated {
            what: "watch position fields",
            needed: FIX_FIELDS,
            available: fields.len(),
        });
    }
    let field = |i: usize| fields.get(i).copied().unwrap_or_default();
    let blank = |f: &[u8]| f.iter().all(|&b| b == b'0');
    let (time, unreadable) = match time(field(0), field(1), offset_minutes) {
        Ok(t) => (t, None),
        Err(e) if blank(field(0)) && blank(field(1)) => return Err(e),
        Err(_) => (
            now,
            Some(format!(
                "{},{}",
                String::from_utf8_lossy(field(0)),
                String::from_utf8_lossy(field(1))
            )),
        ),
    };
    let valid = match field(2) {
        b"A" => true,
        b"V" => false,
        other => {
            return Err(DecodeError::invalid(
                "validity",
                format!("expected A or V, got {:?}", String::from_utf8_lossy(other)),
            ))
        }
    };
    let lat = coordinate(field(3), field(4), b'N', b'S', "latitude")?;
    let lon = coordinate(field(5), field(6), b'E', b'W', "longitude")?;
    let mut position = Position::new(time, lat, lon);
    position.unreadable_time = unreadable;
    position.valid = valid;
    position.speed_kmh = float(field(7)).filter(|v| *v >= 0.0);
    position.course = float(field(8)).filter(|v| (0.0..=360.0).contains(v));
    position.altitude_m = float(field(9));
    position.satellites = int(field(10)).and_then(|v| u8::try_from(v).ok());
    Ok(position)
}

/// `ddmmyy` and `hhmmss`, device clock, to UTC.
fn time(date: &[u8], time: &[u8], offset_minutes: i32) -> Result<DateTime<Utc>, DecodeError> {
    let d = six_digits(date).ok_or_else(|| bad("date", date))?;
    let t = six_digits(time).ok_or_else(|| bad("time", time))?;
    let local = NaiveDate::from_ymd_opt(2000 + i32::from(d[2]), d[1].into(), d[0].into())
        .ok_or_else(|| bad("date", date))?
        .and_hms_opt(t[0].into(), t[1].into(), t[2].into())
        .ok_or_else(|| bad("time", time))?;
    Ok(local.and_utc() - Duration::minutes(offset_minutes.into()))
}

/// Six ASCII digits as three two-digit numbers.
fn six_digits(field: &[u8]) -> Option<[u8; 3]> {
    match field {
        [a, b, c, d, e, f] if field.iter().all(u8::is_ascii_digit) => Some([
            (a - b'0') * 10 + (b - b'0'),
            (c - b'0') * 10 + (d - b'0'),
            (e - b'0') * 10 + (f - b'0'),
        ]),
        _ => None,
    }
}

/// Decimal degrees with a hemisphere letter. The letter may be empty; a minus sign on the value
/// is kept; the negative letter (`S`, `W`) forces the value negative.
fn coordinate(
    value: &[u8],
    hemisphere: &[u8],
    positive: u8,
    negative: u8,
    name: &'static str,
) -> Result<f64, DecodeError> {
    // Any finite number: a value beyond the pole is the service's to flag, with the rest of
    // the fix kept as evidence.
    let degrees = float(value)
        .filter(|v| v.is_finite())
        .ok_or_else(|| bad(name, value))?;
    match hemisphere.trim_ascii() {
        [] => Ok(degrees),
        [h] if *h == positive => Ok(degrees),
        [h] if *h == negative => Ok(-degrees.abs()),
        other => Err(bad(name, other)),
    }
}

fn bad(field: &'static str, value: &[u8]) -> DecodeError {
    DecodeError::invalid(field, format!("{:?}", String::from_utf8_lossy(value)))
}

/// The cell list, the Wi-Fi list and the trailing accuracy. Reading stops quietly at the first
/// field that does not fit, keeping what was read so far.
fn network(fields: &[&[u8]]) -> (Vec<CellTower>, Vec<WifiAccessPoint>, Option<f64>) {
    let mut cells = Vec::new();
    let mut wifi = Vec::new();
    let field = |i: usize| fields.get(i).copied();

    // count, timing advance, then MCC, MNC and (LAC, CID, RSSI) per cell when count > 0
    let Some(cell_count) = field(0).and_then(int) else {
        return (cells, wifi, None);
    };
    let mut next = 2;
    if cell_count > 0 {
        let mcc = field(2).map_or(Some(0), number_or_zero);
        let mnc = field(3).map_or(Some(0), number_or_zero);
        next = 4;
        for _ in 0..cell_count {
            let (Some(lac), Some(cid), Some(rssi)) =
                (field(next), field(next + 1), field(next + 2))
            else {
                return (cells, wifi, None);
            };
            next += 3;
            cells.extend(cell(mcc, mnc, lac, cid, rssi));
        }
    }

    // count, then (SSID, MAC, RSSI) per access point; an SSID may itself hold commas. Some
    // makers leave the Wi-Fi list out and put the accuracy (a decimal) right here.
    let Some(count_field) = field(next) else {
        return (cells, wifi, None);
    };
    let Some(wifi_count) = int(count_field) else {
        let accuracy = count_field
            .contains(&b'.')
            .then(|| float(count_field))
            .flatten();
        return (cells, wifi, accuracy.filter(|v| *v > 0.0));
    };
    next += 1;
    for _ in 0..wifi_count {
        let Some(mac_at) = (next + 1..fields.len()).find(|&j| field(j).and_then(mac).is_some())
        else {
            return (cells, wifi, None);
        };
        wifi.push(WifiAccessPoint {
            mac: field(mac_at).and_then(mac).unwrap_or_default(),
            rssi: field(mac_at + 1)
                .and_then(int)
                .and_then(|v| i16::try_from(v).ok()),
        });
        next = mac_at + 2;
    }
    let accuracy = field(next).and_then(float).filter(|v| *v > 0.0);
    (cells, wifi, accuracy)
}

/// One cell of the list; `None` when a number does not fit.
fn cell(
    mcc: Option<u64>,
    mnc: Option<u64>,
    lac: &[u8],
    cid: &[u8],
    rssi: &[u8],
) -> Option<CellTower> {
    Some(CellTower {
        mcc: u16::try_from(mcc?).ok()?,
        mnc: u16::try_from(mnc?).ok()?,
        lac: u32::try_from(number(lac)?).ok()?,
        cid: number(cid)?,
        rssi: int(rssi).and_then(|v| i16::try_from(v).ok()),
    })
}

/// The field as trimmed ASCII text, `None` when empty.
fn text(field: &[u8]) -> Option<&str> {
    let s = std::str::from_utf8(field.trim_ascii()).ok()?;
    (!s.is_empty()).then_some(s)
}

/// A finite decimal number.
fn float(field: &[u8]) -> Option<f64> {
    text(field)?.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// A signed decimal integer.
fn int(field: &[u8]) -> Option<i64> {
    text(field)?.parse().ok()
}

/// A cell identifier: decimal, or hexadecimal when it holds hex letters (some makers send LAC
/// and CID in hex).
fn number(field: &[u8]) -> Option<u64> {
    let s = text(field)?;
    s.parse().ok().or_else(|| u64::from_str_radix(s, 16).ok())
}

/// Like [`number`], but an empty field reads as 0 (MCC and MNC are sometimes left out).
fn number_or_zero(field: &[u8]) -> Option<u64> {
    if field.trim_ascii().is_empty() {
        Some(0)
    } else {
        number(field)
    }
}

/// A MAC address `aa:bb:cc:dd:ee:ff` (or with `-`), normalised to lower case with `:`.
fn mac(field: &[u8]) -> Option<String> {
    let s = text(field)?;
    let groups: Vec<&str> = s.split([':', '-']).collect();
    let ok = groups.len() == 6
        && groups
            .iter()
            .all(|g| g.len() == 2 && g.bytes().all(|b| b.is_ascii_hexdigit()));
    ok.then(|| groups.join(":").to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(body: &str) -> Report {
        Report::parse(body.as_bytes(), false, 0, DateTime::UNIX_EPOCH)
    }

    #[test]
    fn valid_gps_fix_with_cells() {
        let r = report(concat!(
            "220414,134652,",              // date ddmmyy, time hhmmss (UTC)
            "A,",                          // fix valid
            "22.571707,N,",                // latitude
            "113.8613968,E,",              // longitude
            "0.1,0.0,100,",                // speed km/h, course, altitude m
            "7,60,90,1000,50,",            // satellites, GSM, battery %, steps, rolls
            "0000,",                       // status word
            "2,1,460,0,",                  // 2 cells, timing advance, MCC, MNC
            "9360,4082,131,9360,4092,148"  // (LAC, CID, RSSI) x2
        ));
        let p = r.position.unwrap();
        assert_eq!(p.time.to_string(), "2014-04-22 13:46:52 UTC");
        assert!(p.valid);
        assert_eq!((p.lat, p.lon), (22.571707, 113.8613968));
        assert_eq!(p.speed_kmh, Some(0.1));
        assert_eq!(p.altitude_m, Some(100.0));
        assert_eq!(p.satellites, Some(7));
        assert_eq!(p.source, PositionSource::Gps);
        assert_eq!(r.status.battery_pct, Some(90));
        assert_eq!(r.status.gsm_signal, Some(60));
        assert_eq!(r.status.steps, Some(1000));
        assert_eq!(r.status_word, Some(0));
        assert_eq!(r.cells.len(), 2);
        assert_eq!(r.cells[1].cid, 4092);
        assert_eq!(r.cells[1].rssi, Some(148));
    }

    #[test]
    fn hemisphere_rules() {
        // minus kept with N/E; S forces negative; empty letter keeps the sign
        let r = report("210716,231601,V,-33.480366,N,-70.7630692,E,0,0,0,0,100,34,0,0,0,0,0");
        let p = r.position.unwrap();
        assert_eq!((p.lat, p.lon), (-33.480366, -70.7630692));
        let r = report("110116,113639,V,16.479064,S,68.119072,,0,0,0,0,80,80,0,50,0,0,1");
        let p = r.position.unwrap();
        assert_eq!((p.lat, p.lon), (-16.479064, 68.119072));
        // leading blank before the longitude
        let r = report("120316,140610,V,48.779045,N, 9.1574736,E,0,0,0,0,25,83,0,0,0,0,0");
        assert_eq!(r.position.unwrap().lon, 9.1574736);
    }

    #[test]
    fn invalid_fix_takes_its_source_from_the_network_lists() {
        let body = concat!(
            "010120,025946,V,0.0,N,0.0,E,22.0,0,-1,0,100,98,0,0,00000000,",
            "0,5,",                                  // no cells, timing advance 5
            "2,",                                    // 2 access points
            "eduroam,f4:db:e6:d2:a8:00,-53,",        // SSID, MAC, RSSI
            "Caf\u{e9}, Bar,F4-DB-E6-DA-D0-80,-79,", // SSID with a comma, MAC with dashes
            "12.5"                                   // accuracy m
        );
        let r = report(body);
        let p = r.position.unwrap();
        assert!(!p.valid);
        assert_eq!(p.source, PositionSource::Wifi);
        assert_eq!(p.accuracy_m, Some(12.5));
        assert_eq!(p.altitude_m, Some(-1.0));
        assert_eq!(r.wifi.len(), 2);
        assert_eq!(r.wifi[1].mac, "f4:db:e6:da:d0:80");
        assert_eq!(r.wifi[1].rssi, Some(-79));

        let r =
            report("100116,153723,V,38.0,N,9.0,W,0,0,0,0,100,86,0,0,0,1,0,268,3,3010,51042,146");
        assert_eq!(r.position.unwrap().source, PositionSource::Lbs);
    }

    #[test]
    fn hex_cell_ids_and_maker_specific_tail() {
        // SG tail: empty Wi-Fi count then a maker field; LAC/CID in hex
        let r = report(
            "240123,181628,V,54.427538,N,6.409275,W,0.00,0,0,0,19,90,0,0,00000000,1,1,234,10,55C0,3B882A2,132,,10",
        );
        assert_eq!(r.cells.len(), 1);
        assert_eq!(r.cells[0].lac, 0x55C0);
        assert_eq!(r.cells[0].cid, 0x3B882A2);
        assert!(r.wifi.is_empty());
        assert_eq!(r.position.unwrap().accuracy_m, None);
    }

    #[test]
    fn accuracy_after_an_empty_wifi_list() {
        let r = report(
            "230817,095346,A,47.083950,N,15.4821850,E,7.60,273.8,0.0,4,15,44,0,0,00200010,1,255,232,1,7605,42530,118,0,65.8",
        );
        assert_eq!(r.position.unwrap().accuracy_m, Some(65.8));
        assert_eq!(r.status_word, Some(0x0020_0010));
    }

    #[test]
    fn broken_fix_fields_are_errors_but_keep_the_status() {
        for body in [
            "000000,000000,A,22.5,N,113.8,E,0,0,0,0,0,0,0,0,00010000",
            "220414,134652,X,22.5,N,113.8,E,0,0,0,0,0,0,0,0,00010000",
            "220414,134652,A,22.5,Q,113.8,E,0,0,0,0,0,0,0,0,00010000",
            "220414,134652,A,22.5,N,nan,E,0,0,0,0,0,0,0,0,00010000",
        ] {
            let r = report(body);
            assert!(r.position.is_err(), "{body}");
            assert_eq!(r.status_word, Some(0x0001_0000), "{body}");
        }
        assert!(report("220414,134652,A").position.is_err());
    }

    #[test]
    fn a_date_that_is_no_date_or_a_latitude_beyond_the_pole_keeps_the_fix() {
        let r = report("320414,134652,A,22.5,N,113.8,E,0,0,0,0,0,0,0,0,00010000");
        let p = r.position.unwrap();
        assert_eq!(p.unreadable_time.as_deref(), Some("320414,134652"));
        assert_eq!(p.time, DateTime::UNIX_EPOCH);
        let r = report("220414,134652,A,95.0,N,113.8,E,0,0,0,0,0,0,0,0,00010000");
        assert_eq!(r.position.unwrap().lat, 95.0);
    }

    #[test]
    fn device_offset_is_removed() {
        let r = Report::parse(
            b"220414,134652,A,1,N,1,E,0,0,0,0,0,0,0,0,0",
            true,
            480,
            DateTime::UNIX_EPOCH,
        );
        let p = r.position.unwrap();
        assert_eq!(p.time.to_string(), "2014-04-22 05:46:52 UTC");
        assert!(p.archived);
    }

    #[test]
    fn absurd_counts_do_not_loop_or_panic() {
        let r = report("220414,134652,A,1,N,1,E,0,0,0,0,0,0,0,0,0,4000000000,1,1,1");
        assert!(r.cells.is_empty());
        let r = report("220414,134652,A,1,N,1,E,0,0,0,0,0,0,0,0,0,0,0,4000000000,x");
        assert!(r.wifi.is_empty());
        assert!(r.position.is_ok());
    }
}

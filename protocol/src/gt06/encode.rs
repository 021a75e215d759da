//! Builders of well-formed GT06 frames, as a wristband would send them: login, heartbeat,
//! position (0x12, 0x22) and alarm (0x16, 0x26) reports, time requests, and the server's
//! acknowledgement. Used by the service's integration tests, `ewall simulate` and this module's
//! round-trip tests. Every frame carries a correct length field and CRC.
//!
//! Times are written as given: a device reports its local time, so to play a device in a zone
//! that stated its offset at login, pass the local time (UTC plus the offset).
//!
//! ```
//! use chrono::{TimeZone, Utc};
//! use ewall_protocol::gt06::encode::{self, Fix};
//!
//! let login = encode::login("864717003283581", 1, None);
//! assert_eq!(&login[..4], &[0x78, 0x78, 0x0d, 0x01]);
//! let fix = Fix::new(Utc.with_ymd_and_hms(2024, 5, 1, 8, 30, 0).unwrap(), 52.52, 13.405);
//! let report = encode::location(2, &fix);
//! assert_eq!(report[3], 0x12);
//! ```

use chrono::{DateTime, Datelike, Timelike, Utc};
use thiserror::Error;

use crate::message::{Alarm, CellTower};
use crate::reader::bcd_encode;

use super::alarm::{self, GPS_LBS_STATUS_1, GPS_LBS_STATUS_2};
use super::frame;
use super::heartbeat::STATUS;
use super::location::{FLAG_NORTH, FLAG_VALID, FLAG_WEST, GPS_LBS_1, GPS_LBS_2};
use super::login::LOGIN;
use super::request::TIME_REQUEST;
use super::status::{INFO_ACC, INFO_CHARGING, INFO_GPS_TRACKING};

/// A position to encode.
#[derive(Debug, Clone, PartialEq)]
pub struct Fix {
    /// Time written into the frame (the device's clock; see the module docs about zones).
    /// Years 2000-2255.
    pub time: DateTime<Utc>,
    /// Latitude in degrees, north positive.
    pub lat: f64,
    /// Longitude in degrees, east positive.
    pub lon: f64,
    /// Speed in km/h.
    pub speed_kmh: u8,
    /// Course in degrees, 0-359.
    pub course: u16,
    /// Whether the fix is marked valid.
    pub valid: bool,
    /// Satellites in use (0-15).
    pub satellites: u8,
    /// Serving cell; `None` writes an empty cell.
    pub cell: Option<CellTower>,
}

impl Fix {
    /// A valid fix with 8 satellites, standing still, heading north, without a cell.
    pub fn new(time: DateTime<Utc>, lat: f64, lon: f64) -> Self {
        Fix {
            time,
            lat,
            lon,
            speed_kmh: 0,
            course: 0,
            valid: true,
            satellites: 8,
            cell: None,
        }
    }
}

/// Device condition written into heartbeats and alarm reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// Voltage level 0-6 (decoded as level x 100 / 6 percent).
    pub battery_level: u8,
    /// GSM signal 0-4.
    pub gsm_signal: u8,
    /// On the charger.
    pub charging: bool,
    /// ACC line on.
    pub ignition: bool,
}

impl Default for Status {
    /// Full battery, good signal, not charging, ACC off.
    fn default() -> Self {
        Status {
            battery_level: 6,
            gsm_signal: 4,
            charging: false,
            ignition: false,
        }
    }
}

/// An alarm the GT06 alarm byte and terminal-information bits have no code for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("GT06 has no code for the {} alarm", .0.as_str())]
pub struct NoAlarmCode(pub Alarm);

/// Language bits of the status block (English).
const LANGUAGE: u8 = 0x02;

/// Any short-form frame: `78 78`, length, `protocol`, `content`, `serial`, CRC, `0D 0A`
/// (long form when the content does not fit a 1-byte length).
pub fn frame(protocol: u8, content: &[u8], serial: u16) -> Vec<u8> {
    frame::build(false, protocol, content, serial)
}

/// Any long-form (`79 79`) frame.
pub fn frame_long(protocol: u8, content: &[u8], serial: u16) -> Vec<u8> {
    frame::build(true, protocol, content, serial)
}

/// The server's generic acknowledgement `78 78 05 <protocol> <serial> <crc> 0D 0A`.
pub fn ack(protocol: u8, serial: u16) -> Vec<u8> {
    frame(protocol, &[], serial)
}

/// Login (0x01) from `imei` (15 digits), with the model code 0 and time-zone/language `zone`
/// word when given (see [`super::zone_word`]).
pub fn login(imei: &str, serial: u16, zone: Option<u16>) -> Vec<u8> {
    let mut content = bcd_encode(imei, 8);
    if let Some(word) = zone {
        content.extend_from_slice(&[0x00, 0x00]);
        content.extend_from_slice(&word.to_be_bytes());
    }
    frame(LOGIN, &content, serial)
}

/// Status heartbeat (0x13) without an alarm.
pub fn heartbeat(serial: u16, status: &Status) -> Vec<u8> {
    frame(STATUS, &status_block(status, 0, 0), serial)
}

/// Position report 0x12: GPS block and cell.
pub fn location(serial: u16, fix: &Fix) -> Vec<u8> {
    let mut content = gps_block(fix);
    content.extend_from_slice(&cell(fix.cell.as_ref()));
    frame(GPS_LBS_1, &content, serial)
}

/// Position report 0x22: GPS block, cell, ACC off, upload mode 0 and the re-upload flag
/// (`archived`: the fix comes from the device's blind-area store).
pub fn location_22(serial: u16, fix: &Fix, archived: bool) -> Vec<u8> {
    let mut content = gps_block(fix);
    content.extend_from_slice(&cell(fix.cell.as_ref()));
    content.extend_from_slice(&[0x00, 0x00, u8::from(archived)]);
    frame(GPS_LBS_2, &content, serial)
}

/// Alarm report 0x16: GPS block, cell with its length byte, status block coding `alarm` in the
/// alarm byte and, where it has a code there, in the terminal-information bits.
///
/// # Errors
/// [`NoAlarmCode`] for alarms GT06 cannot express (movement, fatigue, general, ...).
pub fn alarm(
    serial: u16,
    fix: &Fix,
    status: &Status,
    alarm: Alarm,
) -> Result<Vec<u8>, NoAlarmCode> {
    alarm_report(GPS_LBS_STATUS_1, serial, fix, status, alarm)
}

/// Alarm report 0x26, laid out as [`alarm`].
///
/// # Errors
/// [`NoAlarmCode`] for alarms GT06 cannot express.
pub fn alarm_26(
    serial: u16,
    fix: &Fix,
    status: &Status,
    alarm: Alarm,
) -> Result<Vec<u8>, NoAlarmCode> {
    alarm_report(GPS_LBS_STATUS_2, serial, fix, status, alarm)
}

/// Time request (0x8A), which the server answers with its UTC time.
pub fn time_request(serial: u16) -> Vec<u8> {
    frame(TIME_REQUEST, &[], serial)
}

fn alarm_report(
    protocol: u8,
    serial: u16,
    fix: &Fix,
    status: &Status,
    alarm: Alarm,
) -> Result<Vec<u8>, NoAlarmCode> {
    let code = alarm::code_for(alarm);
    let bits = alarm::info_bits_for(alarm);
    if code.is_none() && bits.is_none() {
        return Err(NoAlarmCode(alarm));
    }
    let cell = cell(fix.cell.as_ref());
    let mut content = gps_block(fix);
    content.push(u8::try_from(cell.len() + 1).unwrap_or(9));
    content.extend_from_slice(&cell);
    content.extend_from_slice(&status_block(status, bits.unwrap_or(0), code.unwrap_or(0)));
    Ok(frame(protocol, &content, serial))
}

/// Info, voltage level, GSM signal, alarm byte, language.
fn status_block(status: &Status, alarm_bits: u8, alarm_code: u8) -> [u8; 5] {
    let mut info = INFO_GPS_TRACKING | alarm_bits;
    if status.charging {
        info |= INFO_CHARGING;
    }
    if status.ignition {
        info |= INFO_ACC;
    }
    [
        info,
        status.battery_level.min(6),
        status.gsm_signal,
        alarm_code,
        LANGUAGE,
    ]
}

/// `YY MM DD hh mm ss` in binary, as GPS blocks and the time reply carry a time.
pub(crate) fn date_time(t: DateTime<Utc>) -> [u8; 6] {
    let field = |v: u32| u8::try_from(v).unwrap_or(0);
    [
        u8::try_from(t.year() - 2000).unwrap_or(0),
        field(t.month()),
        field(t.day()),
        field(t.hour()),
        field(t.minute()),
        field(t.second()),
    ]
}

/// The 18-byte GPS block.
fn gps_block(fix: &Fix) -> Vec<u8> {
    let mut out = date_time(fix.time).to_vec();
    out.push(0xc0 | (fix.satellites & 0x0f));
    out.extend_from_slice(&raw_coordinate(fix.lat).to_be_bytes());
    out.extend_from_slice(&raw_coordinate(fix.lon).to_be_bytes());
    out.push(fix.speed_kmh);
    let mut flags = fix.course % 360;
    if fix.lat >= 0.0 {
        flags |= FLAG_NORTH;
    }
    if fix.lon < 0.0 {
        flags |= FLAG_WEST;
    }
    if fix.valid {
        flags |= FLAG_VALID;
    }
    out.extend_from_slice(&flags.to_be_bytes());
    out
}

/// Degrees as the wire's unsigned minutes x 30 000, rounded to the nearest unit.
fn raw_coordinate(degrees: f64) -> u32 {
    // Saturating float-to-int cast: NaN gives 0, out-of-range values clamp.
    (degrees.abs() * 1_800_000.0).round() as u32
}

/// A standard cell (MCC, MNC, LAC u16, cell ID u24), MNC widened with bit 15 of the MCC when it
/// does not fit a byte; zeros for no cell.
fn cell(cell: Option<&CellTower>) -> Vec<u8> {
    let Some(c) = cell else {
        return vec![0; 8];
    };
    let mut out = Vec::with_capacity(9);
    match u8::try_from(c.mnc) {
        Ok(mnc) => {
            out.extend_from_slice(&(c.mcc & 0x7fff).to_be_bytes());
            out.push(mnc);
        }
        Err(_) => {
            out.extend_from_slice(&((c.mcc & 0x7fff) | 0x8000).to_be_bytes());
            out.extend_from_slice(&c.mnc.to_be_bytes());
        }
    }
    out.extend_from_slice(&u16::try_from(c.lac).unwrap_or(u16::MAX).to_be_bytes());
    let cid = u32::try_from(c.cid & 0x00ff_ffff)
        .unwrap_or(0)
        .to_be_bytes();
    out.extend_from_slice(&cid[1..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gt06::Gt06Session;
    use crate::message::{Integrity, MessageKind};
    use crate::SessionOptions;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn session() -> Gt06Session {
        Gt06Session::new(&SessionOptions::default())
    }

    #[test]
    fn the_login_matches_the_captured_one() {
        assert_eq!(
            login("864717003283581", 9, None),
            [
                0x78, 0x78, 0x0d, 0x01, 0x08, 0x64, 0x71, 0x70, 0x03, 0x28, 0x35, 0x81, 0x00, 0x09,
                0x3f, 0x04, 0x0d, 0x0a
            ]
        );
        assert_eq!(
            ack(0x12, 3),
            [0x78, 0x78, 0x05, 0x12, 0x00, 0x03, 0x90, 0x3f, 0x0d, 0x0a]
        );
    }

    #[test]
    fn alarms_without_a_code_are_refused() {
        let fix = Fix::new(Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap(), 1.0, 2.0);
        assert_eq!(
            alarm(1, &fix, &Status::default(), Alarm::Fatigue),
            Err(NoAlarmCode(Alarm::Fatigue))
        );
        assert!(alarm(1, &fix, &Status::default(), Alarm::Geofence).is_ok());
    }

    fn arb_time() -> impl Strategy<Value = DateTime<Utc>> {
        // 2000-01-01 .. 2099-12-31, whole seconds
        (946_684_800i64..4_102_444_799).prop_map(|s| DateTime::from_timestamp(s, 0).unwrap())
    }

    fn arb_fix() -> impl Strategy<Value = Fix> {
        (
            arb_time(),
            -90.0f64..=90.0,
            -180.0f64..=180.0,
            any::<u8>(),
            0u16..360,
            any::<bool>(),
            0u8..16,
            proptest::option::of((1u16..1000, 0u16..1000, 1u32..=0xffff, 1u64..=0xff_ffff)),
        )
            .prop_map(
                |(time, lat, lon, speed_kmh, course, valid, satellites, cell)| Fix {
                    time,
                    lat,
                    lon,
                    speed_kmh,
                    course,
                    valid,
                    satellites,
                    cell: cell.map(|(mcc, mnc, lac, cid)| CellTower {
                        mcc,
                        mnc,
                        lac,
                        cid,
                        rssi: None,
                    }),
                },
            )
    }

    fn imei() -> impl Strategy<Value = String> {
        "[0-9]{15}"
    }

    /// Wire resolution: 1 / 1 800 000 degree; rounding leaves at most half of it.
    const RESOLUTION: f64 = 1.0 / 1_800_000.0;

    fn assert_fix(m: &crate::message::Message, fix: &Fix) {
        let p = m.position.as_ref().expect("position");
        assert_eq!(p.time, fix.time);
        assert!(
            (p.lat - fix.lat).abs() <= RESOLUTION / 2.0 + 1e-12,
            "{} {}",
            p.lat,
            fix.lat
        );
        assert!(
            (p.lon - fix.lon).abs() <= RESOLUTION / 2.0 + 1e-12,
            "{} {}",
            p.lon,
            fix.lon
        );
        assert_eq!(p.speed_kmh, Some(f64::from(fix.speed_kmh)));
        assert_eq!(p.course, Some(f64::from(fix.course)));
        assert_eq!(p.valid, fix.valid);
        assert_eq!(p.satellites, Some(fix.satellites));
        let cells: Vec<_> = fix.cell.iter().copied().collect();
        assert_eq!(m.cells, cells);
    }

    proptest! {
        #[test]
        fn login_round_trips(imei in imei(), serial: u16, offset in -720i32..=840) {
            let mut s = session();
            let zone = super::super::zone_word(offset);
            let d = s.decode_frame(&login(&imei, serial, Some(zone))).unwrap();
            prop_assert_eq!(d.integrity, Integrity::Verified);
            prop_assert_eq!(d.messages[0].device_id.as_deref(), Some(imei.as_str()));
            prop_assert_eq!(d.reply, Some(ack(0x01, serial)));
            prop_assert_eq!(s.utc_offset_minutes(), offset);
        }

        #[test]
        fn location_round_trips(serial: u16, fix in arb_fix(), archived: bool) {
            let mut s = session();
            let d = s.decode_frame(&location(serial, &fix)).unwrap();
            prop_assert_eq!(d.integrity, Integrity::Verified);
            prop_assert_eq!(d.messages[0].kind, MessageKind::Position);
            assert_fix(&d.messages[0], &fix);
            prop_assert_eq!(d.reply, Some(ack(0x12, serial)));

            let d = s.decode_frame(&location_22(serial, &fix, archived)).unwrap();
            prop_assert_eq!(d.integrity, Integrity::Verified);
            assert_fix(&d.messages[0], &fix);
            prop_assert_eq!(d.messages[0].position.as_ref().unwrap().archived, archived);
            prop_assert_eq!(d.reply, Some(ack(0x22, serial)));
        }

        #[test]
        fn alarm_round_trips(
            serial: u16,
            fix in arb_fix(),
            level in 0u8..=6,
            gsm in 0u8..=4,
            charging: bool,
            ignition: bool,
            which in proptest::sample::select(vec![
                Alarm::Sos, Alarm::PowerCut, Alarm::Tamper, Alarm::Removal, Alarm::LowBattery,
                Alarm::Vibration, Alarm::Fall, Alarm::Overspeed, Alarm::Geofence,
                Alarm::GeofenceExit, Alarm::PowerOff, Alarm::Accident,
            ]),
            form_26: bool,
        ) {
            let status = Status { battery_level: level, gsm_signal: gsm, charging, ignition };
            let bytes = if form_26 {
                alarm_26(serial, &fix, &status, which).unwrap()
            } else {
                alarm(serial, &fix, &status, which).unwrap()
            };
            let d = session().decode_frame(&bytes).unwrap();
            prop_assert_eq!(d.integrity, Integrity::Verified);
            let m = &d.messages[0];
            prop_assert_eq!(m.kind, MessageKind::Alarm);
            prop_assert_eq!(&m.alarms, &vec![which]);
            assert_fix(m, &fix);
            prop_assert_eq!(m.status.battery_pct, Some(u8::try_from(u16::from(level) * 100 / 6).unwrap()));
            prop_assert_eq!(m.status.gsm_signal, Some(gsm));
            prop_assert_eq!(m.status.charging, Some(charging));
            prop_assert_eq!(m.status.ignition, Some(ignition));
            prop_assert_eq!(d.reply, Some(ack(bytes[3], serial)));
        }

        #[test]
        fn heartbeat_round_trips(serial: u16, level in 0u8..=6, gsm in 0u8..=4, charging: bool) {
            let status = Status { battery_level: level, gsm_signal: gsm, charging, ignition: false };
            let d = session().decode_frame(&heartbeat(serial, &status)).unwrap();
            prop_assert_eq!(d.integrity, Integrity::Verified);
            let m = &d.messages[0];
            prop_assert_eq!(m.kind, MessageKind::Heartbeat);
            prop_assert!(m.alarms.is_empty());
            prop_assert_eq!(m.status.charging, Some(charging));
            prop_assert_eq!(m.status.gsm_signal, Some(gsm));
            prop_assert_eq!(d.reply, Some(ack(0x13, serial)));
        }
    }
}

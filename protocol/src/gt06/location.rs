//! The GPS block and the position reports built around it (0x10, 0x11, 0x12, 0x22, 0xA0 and
//! the model variants listed in `README.md`).
//!
//! ```text
//! GPS block: YY MM DD hh mm ss (binary) | info: GPS length << 4 | satellites
//!            | latitude u32 | longitude u32 (minutes x 30 000) | speed u8 km/h | course/status u16
//! course/status: bits 0-9 course, 10 north, 11 west, 12 fix valid, 14 ACC known, 15 ACC on
//! ```
//! In: a report's content. Out: one position message (valid or not) with the cell and the ACC,
//! upload-mode and re-upload bytes that follow on the types that have them.

use chrono::{DateTime, Utc};

use crate::error::DecodeError;
use crate::message::{Message, MessageKind, Position};
use crate::reader::Reader;

use super::lbs::{self, CellFormat};
use super::status;
use super::{Ctx, Out};

/// GPS only.
pub(crate) const GPS: u8 = 0x10;
/// GPS + cell with a 2-byte MNC and 4-byte cell ID.
pub(crate) const GPS_LBS_6: u8 = 0x11;
/// GPS + cell: the classic position report.
pub(crate) const GPS_LBS_1: u8 = 0x12;
/// GPS + cell + ACC, upload mode and re-upload flag.
pub(crate) const GPS_LBS_2: u8 = 0x22;
/// GPS + cell + ACC, upload reason, re-upload flag and modules.
pub(crate) const GPS_LBS_3: u8 = 0x37;
/// GPS + cell + ACC, upload mode and re-upload flag (another numbering).
pub(crate) const GPS_LBS_4: u8 = 0x2d;
/// GPS + cell + ACC, upload mode and re-upload flag (AZ735, SL4X).
pub(crate) const GPS_LBS_5: u8 = 0x31;
/// GPS + 4G cell + ACC, upload mode and re-upload flag.
pub(crate) const GPS_LBS_7: u8 = 0xa0;
/// GPS + modules (GPS_LBS_8).
pub(crate) const GPS_LBS_8: u8 = 0x38;
/// GPS + phone number.
pub(crate) const GPS_PHONE: u8 = 0x1a;
/// GPS + several cells (JI09).
pub(crate) const GPS_LBS_EXTEND: u8 = 0x1e;
/// GPS report of models that prefix their IMEI (XT40 and the like).
pub(crate) const GPS_LBS_PREFIXED: u8 = 0x25;
/// GPS report prefixed by the IMEI.
pub(crate) const GPS_LBS_IMEI: u8 = 0x61;
/// GPS + cell + RFID card (0x17 with a consistent length field).
pub(crate) const GPS_LBS_RFID: u8 = 0x17;
/// X1 GPS report (data flags, GPS, odometer, cell, inputs).
pub(crate) const X1_GPS: u8 = 0x34;
/// SR411 mini GPS report (shares 0x24 with a multi-cell report; told apart by length).
pub(crate) const SR411_GPS: u8 = 0x24;
/// The GPS variant of 0x36 (shares the number with a module-based status packet).
pub(crate) const STATUS_2_GPS: u8 = 0x36;

/// Bytes in a standard GPS block.
pub(crate) const GPS_BLOCK_LEN: usize = 18;

/// Whether `protocol` is a position report decoded by [`decode`] whatever its length.
pub(crate) fn is_location(protocol: u8) -> bool {
    matches!(
        protocol,
        GPS | GPS_LBS_6
            | GPS_LBS_1
            | GPS_LBS_2
            | GPS_LBS_3
            | GPS_LBS_4
            | GPS_LBS_5
            | GPS_LBS_7
            | GPS_LBS_8
            | GPS_PHONE
            | GPS_LBS_EXTEND
            | GPS_LBS_PREFIXED
            | GPS_LBS_IMEI
    )
}

/// Whether an 0x24 body has the SR411 GPS layout (41 bytes) rather than the multi-cell one.
pub(crate) fn is_sr411(body: &[u8]) -> bool {
    body.len() == 41
}

/// Which fields a GPS block carries besides time, coordinates and course.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GpsLayout {
    /// The GPS-info/satellites byte after the time.
    pub satellites: bool,
    /// The speed field between coordinates and course.
    pub speed: SpeedField,
}

impl GpsLayout {
    /// Time, satellites, latitude, longitude, 1-byte speed, course/status.
    pub const STANDARD: GpsLayout = GpsLayout {
        satellites: true,
        speed: SpeedField::U8,
    };
}

/// Width of a GPS block's speed field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SpeedField {
    /// No speed.
    None,
    /// km/h in one byte.
    U8,
}

/// The time of a GPS block.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum FixTime {
    /// A real date, in UTC.
    At(DateTime<Utc>),
    /// Fields that do not form a date (month 13), as sent, and when the frame was decoded: the
    /// position is still reported, flagged, rather than acknowledged and lost.
    Unreadable {
        /// The six fields as `YY-MM-DD hh:mm:ss`.
        fields: String,
        /// The session clock when the frame was decoded.
        decoded_at: DateTime<Utc>,
    },
    /// No time at all (all zero before a first fix, a module without a fix): no position.
    Blank,
}

/// A decoded GPS block.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct GpsFix {
    /// Fix time.
    pub time: FixTime,
    /// Satellites in use.
    pub satellites: Option<u8>,
    /// Latitude, north positive.
    pub lat: f64,
    /// Longitude, east positive.
    pub lon: f64,
    /// Speed in km/h.
    pub speed_kmh: Option<f64>,
    /// Course in degrees.
    pub course: u16,
    /// The device marked the fix valid.
    pub valid: bool,
    /// ACC line, when the course word states it.
    pub ignition: Option<bool>,
}

/// Course/status bit: latitude is north.
pub(crate) const FLAG_NORTH: u16 = 1 << 10;
/// Course/status bit: longitude is west.
pub(crate) const FLAG_WEST: u16 = 1 << 11;
/// Course/status bit: the fix is valid.
pub(crate) const FLAG_VALID: u16 = 1 << 12;
/// Course/status bit: bit 15 holds ACC.
pub(crate) const FLAG_ACC_KNOWN: u16 = 1 << 14;
/// Course/status bit: ACC on (when bit 14 is set).
pub(crate) const FLAG_ACC_ON: u16 = 1 << 15;

/// Degrees from the wire's unsigned minutes x 30 000 (exactly `raw / 1 800 000`).
pub(crate) fn degrees(raw: u32) -> f64 {
    f64::from(raw) / 1_800_000.0
}

impl GpsFix {
    /// A fix from the raw wire fields.
    pub fn from_wire(
        time: FixTime,
        satellites: Option<u8>,
        lat_raw: u32,
        lon_raw: u32,
        speed_kmh: Option<f64>,
        flags: u16,
    ) -> Self {
        let lat = degrees(lat_raw);
        let lon = degrees(lon_raw);
        GpsFix {
            time,
            satellites,
            lat: if flags & FLAG_NORTH != 0 { lat } else { -lat },
            lon: if flags & FLAG_WEST != 0 { -lon } else { lon },
            speed_kmh,
            course: flags & 0x03ff,
            valid: flags & FLAG_VALID != 0,
            ignition: (flags & FLAG_ACC_KNOWN != 0).then_some(flags & FLAG_ACC_ON != 0),
        }
    }

    /// The position, unless the block has no time at all.
    pub fn position(&self) -> Option<Position> {
        let mut p = match &self.time {
            FixTime::At(t) => Position::new(*t, self.lat, self.lon),
            FixTime::Unreadable { fields, decoded_at } => {
                let mut p = Position::new(*decoded_at, self.lat, self.lon);
                p.unreadable_time = Some(fields.clone());
                p
            }
            FixTime::Blank => return None,
        };
        p.valid = self.valid;
        p.speed_kmh = self.speed_kmh;
        p.course = Some(f64::from(self.course));
        p.satellites = self.satellites;
        Some(p)
    }

    /// Puts the position (and ACC, if the course word has it) on `message`.
    pub fn apply(&self, message: &mut Message) {
        message.position = self.position();
        if let Some(on) = self.ignition {
            message.status.ignition = Some(on);
        }
    }
}

/// Reads six date-time bytes in the device's zone: a real date, fields that are not one (kept
/// as sent), or all zeros (no time yet).
///
/// # Errors
/// [`DecodeError::Truncated`] when fewer than six bytes remain.
pub(crate) fn read_time(r: &mut Reader<'_>, ctx: &Ctx<'_>) -> Result<FixTime, DecodeError> {
    let &[y, mo, d, h, mi, s] = r.take(6, "date and time")? else {
        return Ok(FixTime::Blank);
    };
    let fields = [y, mo, d, h, mi, s];
    Ok(match ctx.utc(fields) {
        Some(t) => FixTime::At(t),
        None if fields == [0; 6] => FixTime::Blank,
        None => FixTime::Unreadable {
            fields: format!("{y:02}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}"),
            decoded_at: (ctx.now)(),
        },
    })
}

/// Reads a GPS block.
///
/// # Errors
/// [`DecodeError::Truncated`] when the block is cut short.
pub(crate) fn read_gps(
    r: &mut Reader<'_>,
    ctx: &Ctx<'_>,
    layout: GpsLayout,
) -> Result<GpsFix, DecodeError> {
    let time = read_time(r, ctx)?;
    let satellites = if layout.satellites {
        Some(r.u8("satellites")? & 0x0f)
    } else {
        None
    };
    let lat = r.u32("latitude")?;
    let lon = r.u32("longitude")?;
    let speed = match layout.speed {
        SpeedField::None => None,
        SpeedField::U8 => Some(f64::from(r.u8("speed")?)),
    };
    let flags = r.u16("course and status")?;
    Ok(GpsFix::from_wire(time, satellites, lat, lon, speed, flags))
}

/// Whether six bytes at `at` form a date.
fn date_at(body: &[u8], at: usize) -> bool {
    match body.get(at..at + 6) {
        Some(&[y, mo, d, h, mi, s]) => super::local_time([y, mo, d, h, mi, s]).is_some(),
        _ => false,
    }
}

/// Whether eight bytes at `at` look like a BCD IMEI (leading zero nibble, not all zero).
fn imei_at(body: &[u8], at: usize) -> bool {
    body.get(at..at + 8).is_some_and(|b| {
        b.first().is_some_and(|first| first >> 4 == 0)
            && b.iter().all(|x| x >> 4 <= 9 && x & 0x0f <= 9)
            && b.iter().any(|&x| x != 0)
    })
}

/// Where the GPS block starts. Some firmwares put the IMEI (and, on NT20/XT40-like models, a
/// source byte before it and a second time after it) in front of the block; they are recognised
/// by a date that does not parse at the start and does after the prefix.
fn gps_offset(body: &[u8]) -> usize {
    if date_at(body, 0) {
        0
    } else if imei_at(body, 0) && date_at(body, 8) {
        8
    } else if imei_at(body, 1) && date_at(body, 9) && date_at(body, 15) {
        15
    } else {
        0
    }
}

/// Reads the ACC, upload-mode and re-upload bytes that follow the cell on 0x22-like reports.
fn read_upload_flags(r: &mut Reader<'_>, message: &mut Message) -> Result<(), DecodeError> {
    if r.remaining() < 3 {
        return Ok(());
    }
    message.status.ignition = Some(r.u8("acc")? != 0);
    r.skip(1, "upload mode")?;
    let reupload = r.u8("re-upload")? != 0;
    if let Some(p) = message.position.as_mut() {
        p.archived = reupload;
    }
    Ok(())
}

/// Position reports.
///
/// # Errors
/// [`DecodeError::Truncated`] when the GPS block is cut short (fields after it are optional).
pub(crate) fn decode(ctx: &Ctx<'_>, protocol: u8, body: &[u8]) -> Result<Out, DecodeError> {
    let mut r = Reader::new(body);
    r.skip(gps_offset(body), "terminal id")?;
    let gps = read_gps(&mut r, ctx, GpsLayout::STANDARD)?;
    let mut message = ctx.message(MessageKind::Position);
    gps.apply(&mut message);
    let rest = r.remaining();
    match protocol {
        GPS_LBS_6 if rest >= 10 => {
            let format = CellFormat {
                wide_mnc: true,
                lac_len: 2,
                cid_len: 4,
            };
            message.cells.extend(lbs::read_cell(&mut r, format)?);
        }
        GPS_LBS_1 if rest >= 8 => {
            message
                .cells
                .extend(lbs::read_cell(&mut r, CellFormat::STANDARD)?);
            if r.remaining() == 5 {
                // VXT01: info, power u16, signal, alarm extension.
                status::apply_info(&mut message, r.u8("terminal information")?);
                r.skip(2, "power")?;
                message.status.gsm_signal = Some(r.u8("gsm signal")?);
                if !message.alarms.is_empty() {
                    message.kind = MessageKind::Alarm;
                }
            }
        }
        GPS_LBS_5 if rest == 19 => {
            // SL4X: 2-byte MNC and 4-byte cell ID, flags, odometer u32, altitude i16.
            let format = CellFormat {
                wide_mnc: true,
                lac_len: 2,
                cid_len: 4,
            };
            message.cells.extend(lbs::read_cell(&mut r, format)?);
            read_upload_flags(&mut r, &mut message)?;
            r.skip(4, "odometer")?;
            let altitude = r.u16("altitude")? as i16;
            if let Some(p) = message.position.as_mut() {
                p.altitude_m = Some(f64::from(altitude));
            }
        }
        GPS_LBS_2 | GPS_LBS_3 | GPS_LBS_4 | GPS_LBS_5 if rest >= 8 => {
            message
                .cells
                .extend(lbs::read_cell(&mut r, CellFormat::STANDARD)?);
            read_upload_flags(&mut r, &mut message)?;
            if protocol == GPS_LBS_3 {
                read_modules(&mut r, &mut message);
            }
        }
        GPS_LBS_7 if rest >= 15 => {
            message
                .cells
                .extend(lbs::read_cell(&mut r, CellFormat::LTE)?);
            read_upload_flags(&mut r, &mut message)?;
        }
        SR411_GPS | STATUS_2_GPS | GPS_LBS_RFID if rest >= 8 => {
            message
                .cells
                .extend(lbs::read_cell(&mut r, CellFormat::STANDARD)?);
            if protocol == SR411_GPS && r.remaining() > 0 {
                message.status.ignition = Some(r.u8("acc")? != 0);
            }
        }
        _ => {}
    }
    Ok(Out::ack(vec![message]))
}

/// Reads the 0x37 modules after the flags: id u16, length u8, value. 0x3B is the accuracy in
/// centimetres, 0x2E the odometer in metres.
fn read_modules(r: &mut Reader<'_>, message: &mut Message) {
    while let (Ok(id), Ok(len)) = (r.u16("module id"), r.u8("module length")) {
        let Ok(value) = r.take(usize::from(len), "module") else {
            return;
        };
        match (id, value) {
            (0x003b, &[hi, lo]) => {
                if let Some(p) = message.position.as_mut() {
                    p.accuracy_m = Some(f64::from(u16::from_be_bytes([hi, lo])) / 100.0);
                }
            }
            (0x002e, &[a, b, c, d]) => {
                message.status.odometer_m = Some(f64::from(u32::from_be_bytes([a, b, c, d])));
            }
            _ => {}
        }
    }
}

/// 0x34 X1 report: data and alarm flags u32, then a standard GPS block, then terminal data we do
/// not use. The device expects no reply.
///
/// # Errors
/// [`DecodeError::Truncated`] when the GPS block is cut short.
pub(crate) fn x1(ctx: &Ctx<'_>, body: &[u8]) -> Result<Out, DecodeError> {
    let mut r = Reader::new(body);
    r.skip(4, "data and alarm")?;
    let mut message = ctx.message(MessageKind::Position);
    read_gps(&mut r, ctx, GpsLayout::STANDARD)?.apply(&mut message);
    Ok(Out::silent(vec![message]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gt06::tests::{ctx, ctx_with_offset};
    use chrono::TimeZone;

    /// The 0x12 report of the protocol-notes example (a reference position).
    const REPORT: [u8; 26] = [
        0x0f, 0x0a, 0x14, 0x0e, 0x15, 0x0b, // 2015-10-20 14:21:11
        0xc5, // GPS info length 12, 5 satellites
        0x05, 0xe5, 0x1e, 0x78, // latitude 98 901 624 -> 54.94535
        0x02, 0x93, 0xa9, 0xe8, // longitude 43 231 720 -> 24.01762
        0x00, // speed
        0x54, 0x00, // course 0, valid, north, east
        0x00, 0xf6, 0x01, 0x00, 0x6e, 0x00, 0x55, 0xda, // mcc 246, mnc 1, lac, cid
    ];

    #[test]
    fn decodes_the_reference_position_exactly() {
        let out = decode(&ctx(), GPS_LBS_1, &REPORT).unwrap();
        let m = &out.messages[0];
        assert_eq!(m.kind, MessageKind::Position);
        let p = m.position.as_ref().unwrap();
        assert_eq!(
            p.time,
            Utc.with_ymd_and_hms(2015, 10, 20, 14, 21, 11).unwrap()
        );
        assert_eq!(p.lat, 98_901_624.0 / 1_800_000.0);
        assert_eq!(p.lon, 43_231_720.0 / 1_800_000.0);
        assert!((p.lat - 54.94535).abs() < 1e-5);
        assert!(p.valid);
        assert_eq!(p.satellites, Some(5));
        assert_eq!(m.cells[0].mcc, 246);
        assert_eq!(out.reply, super::super::Reply::Ack);
    }

    #[test]
    fn device_time_is_shifted_by_the_session_offset() {
        // UTC+08:00: the device's 14:21:11 is 06:21:11 UTC.
        let out = decode(&ctx_with_offset(480), GPS_LBS_1, &REPORT).unwrap();
        let p = out.messages[0].position.as_ref().unwrap();
        assert_eq!(
            p.time,
            Utc.with_ymd_and_hms(2015, 10, 20, 6, 21, 11).unwrap()
        );
    }

    #[test]
    fn course_word_sets_hemispheres_validity_and_acc() {
        let south_west = GpsFix::from_wire(
            FixTime::Blank,
            None,
            1_800_000,
            3_600_000,
            None,
            0x0800 | 45,
        );
        assert_eq!((south_west.lat, south_west.lon), (-1.0, -2.0));
        assert!(!south_west.valid);
        assert_eq!(south_west.course, 45);
        assert_eq!(south_west.ignition, None);
        let acc = GpsFix::from_wire(FixTime::Blank, None, 0, 0, None, 0xd400);
        assert_eq!(acc.ignition, Some(true));
        assert!(acc.valid);
    }

    #[test]
    fn a_0x22_report_carries_acc_and_the_re_upload_flag() {
        let mut body = REPORT[..18].to_vec();
        body.extend_from_slice(&[0x01, 0xcc, 0x00, 0x28, 0x7d, 0x00, 0x1f, 0x71]); // cell
        body.extend_from_slice(&[
            0x01, // ACC on
            0x00, // upload mode
            0x01, // re-upload: archived
        ]);
        let out = decode(&ctx(), GPS_LBS_2, &body).unwrap();
        let m = &out.messages[0];
        assert_eq!(m.status.ignition, Some(true));
        assert!(m.position.as_ref().unwrap().archived);
    }

    #[test]
    fn an_imei_before_the_gps_block_is_skipped() {
        let mut body = vec![0x08, 0x66, 0x70, 0x30, 0x66, 0x50, 0x22, 0x97]; // IMEI
        body.extend_from_slice(&REPORT);
        let out = decode(&ctx(), GPS_LBS_1, &body).unwrap();
        let p = out.messages[0].position.as_ref().unwrap();
        assert!((p.lat - 54.94535).abs() < 1e-5);
    }

    #[test]
    fn a_block_without_a_date_keeps_its_fields_and_a_blank_one_gives_no_position() {
        let mut body = REPORT.to_vec();
        body[1] = 13; // month 13
        let out = decode(&ctx(), GPS_LBS_1, &body).unwrap();
        let p = out.messages[0].position.as_ref().unwrap();
        let fields = p.unreadable_time.as_deref().unwrap();
        assert!(fields.contains("-13-"), "{fields}");
        assert_eq!(p.time, (ctx().now)());
        assert!((p.lat - 54.94535).abs() < 1e-5);
        body[..6].fill(0);
        let out = decode(&ctx(), GPS_LBS_1, &body).unwrap();
        assert!(out.messages[0].position.is_none());
        assert!(matches!(
            decode(&ctx(), GPS_LBS_1, &REPORT[..10]),
            Err(DecodeError::Truncated { .. })
        ));
    }
}

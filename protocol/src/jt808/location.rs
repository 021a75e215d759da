//! Location report 0x0200 (and the location inside 0x0201 answers and 0x0704/0x0210 batches).
//!
//! In: the body (alarm word, status word, latitude, longitude, altitude, speed, course, BCD
//! time, additional items). Out: one [`Message`] of kind `Position`, or `Alarm` when an alarm
//! bit or item is set. A report whose time is not a real date, or whose coordinates are out of
//! range, still gives its message (status, alarms) but without a position.

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeDelta, TimeZone, Utc};

use super::extra::{self, add_alarm, Extras};
use super::Ctx;
use crate::error::DecodeError;
use crate::message::{Alarm, Message, MessageKind, Position};
use crate::reader::{bcd_byte, Reader};

/// Status bit 0: ACC (ignition) on.
pub const STATUS_ACC: u32 = 1 << 0;
/// Status bit 1: the fix is valid.
pub const STATUS_VALID: u32 = 1 << 1;
/// Status bit 2: southern latitude.
pub const STATUS_SOUTH: u32 = 1 << 2;
/// Status bit 3: western longitude.
pub const STATUS_WEST: u32 = 1 << 3;
/// Status bit 26 (vendor): on external power / charging.
pub const STATUS_CHARGING: u32 = 1 << 26;

/// Alarm-word bits and what they mean to us. Bits 0..=14 and 18..=31 follow the standard;
/// 15..=17 are reserved there and used by wristband and asset trackers for vibration and
/// tampering, and bit 18 (the standard's "driving time exceeded today") is sent as low battery by
/// the same devices.
pub const ALARM_BITS: [(u32, Alarm); 32] = [
    (0, Alarm::Sos),         // emergency button
    (1, Alarm::Overspeed),   // speeding
    (2, Alarm::Fatigue),     // fatigue driving
    (3, Alarm::General),     // danger warning
    (4, Alarm::Fault),       // GNSS module fault
    (5, Alarm::GnssAntenna), // GNSS antenna cut or missing
    (6, Alarm::GnssAntenna), // GNSS antenna short-circuited
    (7, Alarm::LowBattery),  // main supply under-voltage
    (8, Alarm::PowerCut),    // main supply removed
    (9, Alarm::Fault),       // display fault
    (10, Alarm::Fault),      // TTS module fault
    (11, Alarm::Fault),      // camera fault
    (12, Alarm::Fault),      // IC card module fault
    (13, Alarm::Overspeed),  // speeding pre-warning
    (14, Alarm::Fatigue),    // fatigue pre-warning
    (15, Alarm::Vibration),  // vendor: vibration
    (16, Alarm::Tamper),     // vendor: tamper / strap
    (17, Alarm::Tamper),     // vendor: tamper / case
    (18, Alarm::LowBattery), // vendor: low battery
    (19, Alarm::Parking),    // parking overtime
    (20, Alarm::Geofence),   // area entered or left
    (21, Alarm::Geofence),   // route entered or left
    (22, Alarm::General),    // road-section time too short or long
    (23, Alarm::Geofence),   // off the route
    (24, Alarm::Fault),      // vehicle speed sensor fault
    (25, Alarm::General),    // fuel level abnormal
    (26, Alarm::General),    // vehicle stolen
    (27, Alarm::Movement),   // ignition without authorisation
    (28, Alarm::Movement),   // moved without authorisation
    (29, Alarm::Accident),   // collision
    (30, Alarm::Accident),   // rollover
    (31, Alarm::Door),       // door opened without authorisation
];

/// Adds the alarms of an alarm word to `msg`, each once.
pub(crate) fn add_alarm_bits(msg: &mut Message, word: u32) {
    for (bit, alarm) in ALARM_BITS {
        if word & (1 << bit) != 0 {
            add_alarm(msg, alarm);
        }
    }
}

/// Six BCD bytes `YY MM DD hh mm ss` (20YY) as a date-time; `None` when not a real date (all
/// zeros before a first fix, hex nibbles).
pub(crate) fn bcd_time(b: &[u8]) -> Option<NaiveDateTime> {
    let mut v = [0u32; 6];
    for (slot, &byte) in v.iter_mut().zip(b.iter()) {
        *slot = u32::from(bcd_byte(byte, "time").ok()?);
    }
    if b.len() < 6 {
        return None;
    }
    NaiveDate::from_ymd_opt(2000 + v[0] as i32, v[1], v[2])?.and_hms_opt(v[3], v[4], v[5])
}

/// Device-local time to UTC, `offset_minutes` east of UTC.
pub(crate) fn local_to_utc(local: NaiveDateTime, offset_minutes: i32) -> Option<DateTime<Utc>> {
    let utc = local.checked_sub_signed(TimeDelta::minutes(i64::from(offset_minutes)))?;
    Some(Utc.from_utc_datetime(&utc))
}

/// The time of a position from its six BCD bytes: the device time in UTC, or, when the bytes
/// are not a real date, `now` and the fields as sent (the position is stored flagged rather than
/// lost); `None` when they are all zero (no fix yet).
pub(crate) fn dated(
    bcd: &[u8],
    offset_minutes: i32,
    now: DateTime<Utc>,
) -> Option<(DateTime<Utc>, Option<String>)> {
    match device_time(bcd, offset_minutes) {
        Some(t) => Some((t, None)),
        None if bcd.iter().all(|&b| b == 0) => None,
        None => Some((now, Some(bcd_fields(bcd)))),
    }
}

/// Six time bytes as `YY-MM-DD hh:mm:ss`, in hex so that non-BCD nibbles show as sent.
fn bcd_fields(b: &[u8]) -> String {
    match b {
        [y, mo, d, h, mi, s] => format!("{y:02x}-{mo:02x}-{d:02x} {h:02x}:{mi:02x}:{s:02x}"),
        _ => hex_bytes(b),
    }
}

fn hex_bytes(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Signed coordinates from the unsigned 10⁻⁶ degree fields and the status hemisphere bits,
/// whatever their range (the service flags what is out of it).
pub(crate) fn signed(status: u32, lat_raw: u32, lon_raw: u32) -> (f64, f64) {
    let mut lat = f64::from(lat_raw) / 1_000_000.0;
    let mut lon = f64::from(lon_raw) / 1_000_000.0;
    if status & STATUS_SOUTH != 0 {
        lat = -lat;
    }
    if status & STATUS_WEST != 0 {
        lon = -lon;
    }
    (lat, lon)
}

/// Device-local BCD time (see [`bcd_time`]) as UTC, `offset_minutes` east of UTC; `None` when
/// not a real date.
pub(crate) fn device_time(bcd: &[u8], offset_minutes: i32) -> Option<DateTime<Utc>> {
    bcd_time(bcd).and_then(|t| local_to_utc(t, offset_minutes))
}

/// A position with a report's altitude (m), speed (1/10 km/h) and course (degrees, dropped
/// beyond a circle).
pub(crate) fn position(
    time: DateTime<Utc>,
    lat: f64,
    lon: f64,
    altitude: i16,
    speed: u16,
    course: u16,
) -> Position {
    let mut p = Position::new(time, lat, lon);
    p.altitude_m = Some(f64::from(altitude));
    p.speed_kmh = Some(f64::from(speed) / 10.0);
    p.course = (course <= 360).then_some(f64::from(course));
    p
}

/// The fixed fields of a location report after the alarm word, in wire order: status word,
/// latitude, longitude, altitude, speed, course, BCD time. The 0x0900 0x53/0x54 payloads start
/// with the same fields.
pub(crate) struct Fix<'a> {
    /// The status word.
    pub status: u32,
    lat_raw: u32,
    lon_raw: u32,
    altitude: i16,
    speed: u16,
    course: u16,
    time: &'a [u8],
}

impl<'a> Fix<'a> {
    /// Reads the fields.
    ///
    /// # Errors
    /// [`DecodeError::Truncated`] when `r` holds fewer than their 22 bytes.
    pub(crate) fn read(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        Ok(Fix {
            status: r.u32("status flags")?,
            lat_raw: r.u32("latitude")?,
            lon_raw: r.u32("longitude")?,
            altitude: r.u16("altitude")? as i16,
            speed: r.u16("speed")?,
            course: r.u16("course")?,
            time: r.take(6, "time")?,
        })
    }

    /// The position, its time `offset_minutes` east of UTC; `None` only when the time is all
    /// zeros (no fix yet). A time that is not a real date gives the position at `now` with the
    /// fields kept in [`Position::unreadable_time`]; coordinates out of range are passed on as
    /// sent. Either way the service stores the position flagged instead of losing it.
    pub(crate) fn position(&self, offset_minutes: i32, now: DateTime<Utc>) -> Option<Position> {
        let (time, unreadable) = dated(self.time, offset_minutes, now)?;
        let (lat, lon) = signed(self.status, self.lat_raw, self.lon_raw);
        let mut p = position(time, lat, lon, self.altitude, self.speed, self.course);
        p.valid = self.status & STATUS_VALID != 0;
        p.unreadable_time = unreadable;
        Some(p)
    }
}

/// Decodes a 0x0200 body into a message.
///
/// # Errors
/// [`DecodeError::Truncated`] when the body is shorter than the 28-byte fixed part.
pub(crate) fn decode(
    body: &[u8],
    ctx: &mut Ctx<'_>,
    archived: bool,
) -> Result<Message, DecodeError> {
    let mut r = Reader::new(body);
    let alarm_word = r.u32("alarm flags")?;
    let fix = Fix::read(&mut r)?;
    let status = fix.status;

    let mut msg = ctx.message(MessageKind::Position);
    ctx.model.add_alarms(&mut msg, alarm_word);
    msg.status.ignition = Some(status & STATUS_ACC != 0);
    if status & STATUS_CHARGING != 0 {
        msg.status.charging = Some(true);
    }

    let mut ex = Extras::default();
    let tail = r.rest();
    if tail.len() == 18 && !extra::items_fit(tail) {
        fixed_vendor_tail(tail, &mut msg, &mut ex);
    } else {
        extra::read_items(tail, &mut msg, &mut ex, ctx.model);
    }
    if ex.stated_offset.is_some() {
        *ctx.stated_offset = ex.stated_offset;
    }
    msg.status.voltage = ex.voltage();

    if let Some(mut p) = fix.position(ctx.offset(ex.stated_offset), ctx.now) {
        p.satellites = ex.satellites;
        p.hdop = ex.hdop;
        p.archived = archived;
        msg.position = Some(p);
    } else {
        msg.kind = MessageKind::Status;
    }
    if !msg.alarms.is_empty() {
        msg.kind = MessageKind::Alarm;
    }
    Ok(msg)
}

/// Some devices append 18 fixed bytes instead of items: 4 reserved, odometer u32 (km),
/// battery u16 (1/10 V), area id u32, signal u8, 3 reserved. Used only when the tail is
/// exactly 18 bytes and does not parse as items.
fn fixed_vendor_tail(tail: &[u8], msg: &mut Message, ex: &mut Extras) {
    let mut r = Reader::new(tail);
    let _ = r.skip(4, "reserved");
    if let Ok(km) = r.u32("odometer") {
        msg.status.odometer_m = Some(f64::from(km) * 1000.0);
    }
    if let Ok(dv) = r.u16("battery") {
        ex.battery_v = Some(f64::from(dv) / 10.0);
    }
    let _ = r.skip(4, "area id");
    if let Ok(rssi) = r.u8("signal") {
        msg.status.gsm_signal = Some(rssi);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Body of the 0x0200 in protocol-notes' example reply, with two items.
    const BODY: [u8; 34] = [
        0x00, 0x00, 0x00, 0x01, // alarm flags: bit 0 emergency
        0x00, 0x00, 0x00, 0x0e, // status: valid, south, west
        0x01, 0x58, 0x99, 0x18, // latitude 22.583576
        0x06, 0xca, 0x0f, 0xeb, // longitude 113.905643
        0x00, 0x04, // altitude 4 m
        0x01, 0x0d, // speed 26.9 km/h
        0x00, 0x5a, // course 90
        0x21, 0x11, 0x08, 0x19, 0x40, 0x08, // 2021-11-08 19:40:08 device time
        0x31, 0x01, 0x09, // 9 satellites
        0x30, 0x01, 0x12, // signal 18
    ];

    fn run(body: &[u8], override_offset: Option<i32>) -> Message {
        let mut stated = None;
        let mut ctx = Ctx {
            device_id: "12076463279",
            override_offset,
            stated_offset: &mut stated,
            model: Default::default(),
            now: chrono::DateTime::UNIX_EPOCH,
        };
        decode(body, &mut ctx, false).unwrap()
    }

    #[test]
    fn decodes_the_fixed_part_and_converts_gmt8_to_utc() {
        let msg = run(&BODY, None);
        assert_eq!(msg.kind, MessageKind::Alarm);
        assert_eq!(msg.alarms, vec![Alarm::Sos]);
        let p = msg.position.unwrap();
        assert!(p.valid);
        assert_eq!(p.lat, -22.583576);
        assert_eq!(p.lon, -113.905643);
        assert_eq!(p.altitude_m, Some(4.0));
        assert_eq!(p.speed_kmh, Some(26.9));
        assert_eq!(p.course, Some(90.0));
        assert_eq!(p.satellites, Some(9));
        assert_eq!(p.time.to_rfc3339(), "2021-11-08T11:40:08+00:00");
        assert_eq!(msg.status.gsm_signal, Some(18));
        assert_eq!(msg.device_id.as_deref(), Some("12076463279"));
    }

    #[test]
    fn the_options_offset_wins_over_the_convention() {
        let msg = run(&BODY, Some(0));
        assert_eq!(
            msg.position.unwrap().time.to_rfc3339(),
            "2021-11-08T19:40:08+00:00"
        );
    }

    #[test]
    fn a_zero_time_gives_status_without_position() {
        let mut body = BODY;
        body[0..4].copy_from_slice(&[0, 0, 0, 0]); // no alarm
        body[22..28].copy_from_slice(&[0, 0, 0, 0, 0, 0]); // no time yet
        let msg = run(&body, None);
        assert_eq!(msg.kind, MessageKind::Status);
        assert!(msg.position.is_none());
    }

    #[test]
    fn a_time_that_is_no_date_or_coordinates_beyond_range_keep_the_position() {
        let mut body = BODY;
        body[23] = 0x13; // month 13
        body[8..12].copy_from_slice(&95_000_000u32.to_be_bytes()); // 95 degrees
        let p = run(&body, None).position.unwrap();
        assert_eq!(p.unreadable_time.as_deref(), Some("21-13-08 19:40:08"));
        assert_eq!(p.time, chrono::DateTime::UNIX_EPOCH);
        assert_eq!(p.lat, -95.0);
    }

    #[test]
    fn a_short_body_is_truncated() {
        let mut stated = None;
        let mut ctx = Ctx {
            device_id: "1",
            override_offset: None,
            stated_offset: &mut stated,
            model: Default::default(),
            now: chrono::DateTime::UNIX_EPOCH,
        };
        assert!(matches!(
            decode(&BODY[..27], &mut ctx, false),
            Err(DecodeError::Truncated { what: "time", .. })
        ));
    }

    #[test]
    fn every_alarm_bit_maps_to_an_alarm() {
        let mut msg = Message::new(MessageKind::Position);
        add_alarm_bits(&mut msg, 1 << 8 | 1 << 16 | 1 << 17);
        assert_eq!(msg.alarms, vec![Alarm::PowerCut, Alarm::Tamper]);
    }
}

//! Status and alarm reports, and the GT06 alarm codes.
//!
//! - 0x16 / 0x26 (GPS + cell + status: the alarm packet), 0x27 and 0xA4 (the same plus a geofence
//!   number), 0xA3 (geofence alarm with a 4G cell), short-form 0x32 (SL4X) and the GPS form of
//!   0xA2 (LW4G): GPS block, a cell preceded by its own length byte, the status block;
//! - 0x19 (cell + status) and 0xA5 (4G cell + status): the same without a position;
//! - 0x95: event packets of dash-camera models, with their own event codes.
//!
//! Alarms come from both the alarm byte and bits 3-5 of the terminal-information byte; a message
//! carrying any is of kind [`MessageKind::Alarm`].

use crate::error::DecodeError;
use crate::message::{Alarm, Message, MessageKind};
use crate::reader::Reader;

use super::lbs::{self, CellFormat};
use super::location::{self, GpsLayout, SpeedField};
use super::status::{self, push_alarm};
use super::{Ctx, Out};

/// GPS + cell + status (the alarm packet).
pub(crate) const GPS_LBS_STATUS_1: u8 = 0x16;
/// GPS + cell + status, second form.
pub(crate) const GPS_LBS_STATUS_2: u8 = 0x26;
/// GPS + cell + status + geofence number.
pub(crate) const GPS_LBS_STATUS_3: u8 = 0x27;
/// GPS + cell + status (SL4X short form).
pub(crate) const GPS_LBS_STATUS_4: u8 = 0x32;
/// GPS + 4G cell + status (LW4G models; the same number is a Wi-Fi report elsewhere).
pub(crate) const LW4G_STATUS: u8 = 0xA2;
/// Geofence alarm with a 4G cell (GK310); short 0xA3 packets are status instead.
pub(crate) const FENCE_SINGLE: u8 = 0xA3;
/// Geofence alarm with a 4G cell and a geofence number.
pub(crate) const FENCE_MULTI: u8 = 0xA4;
/// Cell + status.
pub(crate) const LBS_STATUS: u8 = 0x19;
/// 4G cell + status.
pub(crate) const LBS_ALARM: u8 = 0xA5;
/// Event packet (JC-series cameras).
pub(crate) const ALARM: u8 = 0x95;

/// The alarm a terminal-information byte codes in bits 3-5.
pub(crate) fn from_info(info: u8) -> Option<Alarm> {
    match (info >> 3) & 0x07 {
        1 => Some(Alarm::Vibration),
        2 => Some(Alarm::PowerCut),
        3 => Some(Alarm::LowBattery),
        4 => Some(Alarm::Sos),
        6 => Some(Alarm::Geofence),
        7 => Some(Alarm::Removal),
        _ => None,
    }
}

/// The alarm an alarm byte codes on most models (the table in protocol-notes); see
/// [`from_code_for`] for the models that read some codes otherwise.
pub(crate) fn from_code(code: u8) -> Option<Alarm> {
    match code {
        0x01 => Some(Alarm::Sos),
        0x02 => Some(Alarm::PowerCut),
        0x03 | 0x09 => Some(Alarm::Vibration),
        0x04 => Some(Alarm::GeofenceEnter),
        0x05 => Some(Alarm::GeofenceExit),
        0x06 => Some(Alarm::Overspeed),
        0x0e | 0x0f | 0x19 => Some(Alarm::LowBattery),
        0x11 => Some(Alarm::PowerOff),
        0x0c | 0x13 | 0x25 | 0x32 => Some(Alarm::Tamper),
        0x14 => Some(Alarm::Door),
        0x18 => Some(Alarm::Removal),
        0x1a | 0x27 | 0xf1 => Some(Alarm::HarshBraking),
        0x26 | 0xf0 => Some(Alarm::HarshAcceleration),
        0x1b | 0x2a | 0x2b | 0x2e => Some(Alarm::HarshCornering),
        0x23 => Some(Alarm::Fall),
        0x2c | 0xf2 => Some(Alarm::Accident),
        0x30 => Some(Alarm::Jamming),
        0x33 | 0x34 => Some(Alarm::Lock),
        0x5b | 0x5c => Some(Alarm::Temperature),
        _ => None,
    }
}

/// Model families whose devices give some alarm codes another meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Family {
    /// Every other model: the table of [`from_code`].
    #[default]
    Standard,
    /// Models whose name starts with `LW` (LW4G-4B, ...): 0x18 accident, 0x19 acceleration.
    Lw,
    /// VL103, LL303, VL512 and G18: 0x28 power off, 0x30 braking.
    Vl,
    /// SEEWORLD: 0x28 cornering, 0x29 accident.
    SeeWorld,
}

impl Family {
    /// The family of a device model name (case-insensitive); unknown or no model is standard.
    pub(crate) fn of(model: Option<&str>) -> Family {
        let Some(model) = model.map(str::to_ascii_uppercase) else {
            return Family::Standard;
        };
        match model.as_str() {
            m if m.starts_with("LW") => Family::Lw,
            "VL103" | "LL303" | "VL512" | "G18" => Family::Vl,
            "SEEWORLD" => Family::SeeWorld,
            _ => Family::Standard,
        }
    }
}

/// The alarm an alarm byte codes on a device of `family`: the model readings first, then the
/// common table. 0x28 and 0x29 mean braking and acceleration unless the model says otherwise.
pub(crate) fn from_code_for(code: u8, family: Family) -> Option<Alarm> {
    match (family, code) {
        (Family::Lw, 0x18) | (Family::SeeWorld, 0x29) => Some(Alarm::Accident),
        (Family::Lw, 0x19) => Some(Alarm::HarshAcceleration),
        (Family::Vl, 0x30) => Some(Alarm::HarshBraking),
        (Family::Vl, 0x28) => Some(Alarm::PowerOff),
        (Family::SeeWorld, 0x28) => Some(Alarm::HarshCornering),
        (_, 0x28) => Some(Alarm::HarshBraking),
        (_, 0x29) => Some(Alarm::HarshAcceleration),
        _ => from_code(code),
    }
}

/// The alarm byte an encoder writes for `alarm`, when GT06 has a code for it.
pub(crate) fn code_for(alarm: Alarm) -> Option<u8> {
    Some(match alarm {
        Alarm::Sos => 0x01,
        Alarm::PowerCut => 0x02,
        Alarm::Vibration => 0x03,
        Alarm::GeofenceEnter => 0x04,
        Alarm::GeofenceExit => 0x05,
        Alarm::Overspeed => 0x06,
        Alarm::LowBattery => 0x0e,
        Alarm::PowerOff => 0x11,
        Alarm::Tamper => 0x13,
        Alarm::Door => 0x14,
        Alarm::Removal => 0x18,
        Alarm::HarshBraking => 0x1a,
        Alarm::HarshCornering => 0x1b,
        Alarm::Fall => 0x23,
        Alarm::HarshAcceleration => 0x26,
        Alarm::Accident => 0x2c,
        Alarm::Jamming => 0x30,
        Alarm::Lock => 0x33,
        Alarm::Temperature => 0x5b,
        Alarm::Geofence
        | Alarm::Movement
        | Alarm::Fatigue
        | Alarm::Fault
        | Alarm::GnssAntenna
        | Alarm::Parking
        | Alarm::General => return None,
    })
}

/// Bits 3-5 of the terminal-information byte an encoder writes for `alarm`, if it has a code.
pub(crate) fn info_bits_for(alarm: Alarm) -> Option<u8> {
    let code = match alarm {
        Alarm::Vibration => 1,
        Alarm::PowerCut => 2,
        Alarm::LowBattery => 3,
        Alarm::Sos => 4,
        Alarm::Geofence => 6,
        Alarm::Removal => 7,
        _ => return None,
    };
    Some(code << 3)
}

/// Whether `protocol` is a GPS + cell + status report decoded by [`decode`].
pub(crate) fn is_status_report(protocol: u8) -> bool {
    matches!(
        protocol,
        GPS_LBS_STATUS_1
            | GPS_LBS_STATUS_2
            | GPS_LBS_STATUS_3
            | GPS_LBS_STATUS_4
            | FENCE_SINGLE
            | FENCE_MULTI
    )
}

/// Whether an 0xA3 body is long enough for the geofence-alarm layout (GPS, cell, status);
/// shorter ones are status packets of other models.
pub(crate) fn fence_fits(body: &[u8]) -> bool {
    body.len() >= location::GPS_BLOCK_LEN + 1 + 8 + 5
}

/// Kind of a report that may or may not raise an alarm.
fn settle_kind(message: &mut Message, otherwise: MessageKind) {
    message.kind = if message.alarms.is_empty() {
        otherwise
    } else {
        MessageKind::Alarm
    };
}

/// GPS + cell + status reports.
///
/// The cell is preceded by a length byte that devices fill inconsistently (counting itself or
/// not, or 0 before a zeroed cell), so the cell's size is taken from the bytes left before the
/// status block when the length byte agrees with them, and from the length byte otherwise.
///
/// # Errors
/// [`DecodeError::Truncated`] when the GPS block or status block is cut short.
pub(crate) fn decode(ctx: &Ctx<'_>, protocol: u8, body: &[u8]) -> Result<Out, DecodeError> {
    let mut r = Reader::new(body);
    let gps = location::read_gps(&mut r, ctx, GpsLayout::STANDARD)?;
    let mut message = ctx.message(MessageKind::Position);
    gps.apply(&mut message);
    if protocol == LW4G_STATUS {
        return lw4g(r, message, ctx.family);
    }
    if protocol == GPS_LBS_STATUS_1 && r.remaining() == 13 {
        // VXT01: cell without a length byte, then info, power u16, signal, alarm extension.
        message
            .cells
            .extend(lbs::read_cell(&mut r, CellFormat::STANDARD)?);
        status::apply_info(&mut message, r.u8("terminal information")?);
        r.skip(2, "power")?;
        message.status.gsm_signal = Some(r.u8("gsm signal")?);
        settle_kind(&mut message, MessageKind::Position);
        return Ok(Out::ack(vec![message]));
    }
    let tail = match protocol {
        GPS_LBS_STATUS_3 | FENCE_MULTI => 1, // geofence number
        _ => 0,
    };
    let declared = usize::from(r.u8("cell length")?);
    let by_rest = r.remaining().saturating_sub(5 + tail);
    let size = if declared == by_rest || declared == by_rest + 1 || declared == 0 {
        by_rest
    } else if declared + 5 <= r.remaining() {
        declared
    } else {
        by_rest
    };
    let cell_bytes = r.take(size, "cell")?;
    let wide_mnc = protocol == GPS_LBS_STATUS_4;
    message
        .cells
        .extend(lbs::cell_by_size(cell_bytes, wide_mnc));
    status::read_block(
        &mut r,
        &mut message,
        matches!(protocol, GPS_LBS_STATUS_3 | FENCE_MULTI),
        ctx.family,
    )?;
    if protocol == GPS_LBS_STATUS_4 && r.remaining() == 2 {
        let altitude = r.u16("altitude")?;
        if let Some(p) = message.position.as_mut() {
            p.altitude_m = Some(f64::from(altitude as i16));
        }
    }
    settle_kind(&mut message, MessageKind::Position);
    Ok(Out::ack(vec![message]))
}

/// LW4G 0xA2 after the GPS block: 4G cell, network indicator, info, power u16, voltage level,
/// signal, alarm, then odometer and other counters we do not use.
fn lw4g(mut r: Reader<'_>, mut message: Message, family: Family) -> Result<Out, DecodeError> {
    message
        .cells
        .extend(lbs::read_cell(&mut r, CellFormat::LTE)?);
    r.skip(1, "network indicator")?;
    status::apply_info(&mut message, r.u8("terminal information")?);
    r.skip(2, "power")?;
    message.status.battery_pct = status::battery_pct(r.u8("voltage level")?);
    message.status.gsm_signal = Some(r.u8("gsm signal")?);
    if let Some(a) = from_code_for(r.u8("alarm")?, family) {
        push_alarm(&mut message, a);
    }
    settle_kind(&mut message, MessageKind::Position);
    Ok(Out::ack(vec![message]))
}

/// 0x19: one cell and the status block. Packets of another length carry a time and several
/// cells instead (SPACE10X) and are read as a multi-cell report.
///
/// # Errors
/// [`DecodeError::Truncated`] when the packet is cut short.
pub(crate) fn lbs_status(ctx: &Ctx<'_>, body: &[u8]) -> Result<Out, DecodeError> {
    if body.len() != 8 + 5 {
        return lbs::multi(ctx, LBS_STATUS, body);
    }
    let mut r = Reader::new(body);
    let mut message = ctx.message(MessageKind::Lbs);
    message
        .cells
        .extend(lbs::read_cell(&mut r, CellFormat::STANDARD)?);
    status::read_block(&mut r, &mut message, false, ctx.family)?;
    settle_kind(&mut message, MessageKind::Lbs);
    Ok(Out::ack(vec![message]))
}

/// 0xA5: one 4G cell and the status block.
///
/// # Errors
/// [`DecodeError::Truncated`] when the packet is cut short.
pub(crate) fn lbs_alarm(ctx: &Ctx<'_>, body: &[u8]) -> Result<Out, DecodeError> {
    let mut r = Reader::new(body);
    let mut message = ctx.message(MessageKind::Lbs);
    message
        .cells
        .extend(lbs::read_cell(&mut r, CellFormat::LTE)?);
    status::read_block(&mut r, &mut message, false, ctx.family)?;
    settle_kind(&mut message, MessageKind::Lbs);
    Ok(Out::ack(vec![message]))
}

/// The event code of an 0x95 packet as an alarm; `extended` packets carry a position.
fn from_event(event: u8, extended: bool) -> Option<Alarm> {
    match event {
        0x01 if extended => Some(Alarm::Sos),
        0x01 => Some(Alarm::General),
        0x0e => Some(Alarm::LowBattery),
        0x76 => Some(Alarm::Temperature),
        0x80 => Some(Alarm::Vibration),
        0x87 => Some(Alarm::Overspeed),
        0x88 => Some(Alarm::PowerCut),
        0x90 => Some(Alarm::HarshAcceleration),
        0x91 => Some(Alarm::HarshBraking),
        0x92 => Some(Alarm::HarshCornering),
        0x93 => Some(Alarm::Accident),
        _ => None,
    }
}

/// 0x95 event packet: a time and an event code, or (longer packets) a position before the code.
/// JC400 packets start with `FF FF` and a version byte, have the satellites byte and, after the
/// course word, a 2-byte field we do not interpret and a power reading.
///
/// # Errors
/// [`DecodeError::Truncated`] when the packet is cut short.
pub(crate) fn event(ctx: &Ctx<'_>, body: &[u8]) -> Result<Out, DecodeError> {
    let mut r = Reader::new(body);
    let extended = body.len() > 7;
    let jc400 = body.starts_with(&[0xff, 0xff]);
    let mut message = ctx.message(MessageKind::Alarm);
    if extended {
        if jc400 {
            r.skip(3, "marker and version")?;
        }
        let layout = GpsLayout {
            satellites: jc400,
            speed: SpeedField::None,
        };
        location::read_gps(&mut r, ctx, layout)?.apply(&mut message);
        if jc400 {
            r.skip(4, "unknown and power")?;
        }
    } else {
        r.skip(6, "date and time")?;
    }
    if let Some(a) = from_event(r.u8("event")?, extended) {
        push_alarm(&mut message, a);
    }
    Ok(Out::ack(vec![message]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gt06::tests::ctx;

    #[test]
    fn terminal_info_bits_and_alarm_bytes_map_to_alarms() {
        assert_eq!(from_info(0b0010_0000), Some(Alarm::Sos)); // code 4
        assert_eq!(from_info(0b0011_1000), Some(Alarm::Removal)); // code 7
        assert_eq!(from_info(0b0000_0110), None); // ACC + charging only
        assert_eq!(from_code(0x01), Some(Alarm::Sos));
        assert_eq!(from_code(0x23), Some(Alarm::Fall));
        assert_eq!(from_code(0x00), None);
        for a in [Alarm::Sos, Alarm::Fall, Alarm::Tamper, Alarm::LowBattery] {
            assert_eq!(from_code(code_for(a).unwrap()), Some(a));
        }
        for a in [Alarm::Sos, Alarm::Removal, Alarm::Geofence, Alarm::PowerCut] {
            assert_eq!(from_info(info_bits_for(a).unwrap()), Some(a));
        }
    }

    #[test]
    fn decodes_an_sos_alarm_packet() {
        let body = [
            0x17, 0x09, 0x13, 0x0f, 0x3a, 0x2d, // 2023-09-19 15:58:45
            0xcc, // GPS info length 12, 12 satellites
            0x02, 0xc5, 0x5f, 0x2a, // latitude
            0x08, 0x9f, 0x9a, 0xf9, // longitude
            0x00, // speed
            0x5c, 0x21, // course 33, valid, north, west
            0x09, // cell length
            0x01, 0x36, 0x04, 0x81, 0xfe, 0x06, 0x6d, 0x9b,
            0x03, // mcc 310, mnc 4, lac, cid u32
            0x41, // info: ignition off, GPS tracking, no coded alarm
            0x3e, // voltage level: 62 %
            0x42, // signal
            0x01, // alarm: SOS
            0x02, // language
        ];
        let out = decode(&ctx(), GPS_LBS_STATUS_1, &body).unwrap();
        let m = &out.messages[0];
        assert_eq!(m.kind, MessageKind::Alarm);
        assert_eq!(m.alarms, vec![Alarm::Sos]);
        assert_eq!(m.status.battery_pct, Some(62));
        assert_eq!(m.cells[0].mcc, 310);
        assert_eq!(m.cells[0].cid, 0x066d_9b03);
        let p = m.position.as_ref().unwrap();
        assert!(p.valid);
        assert!(p.lon < 0.0 && p.lat > 0.0);
        assert_eq!(out.reply, super::super::Reply::Ack);
    }

    #[test]
    fn decodes_a_low_battery_lbs_status() {
        let body = [
            0x01, 0x2e, 0xd0, 0x42, 0xcc, 0x00, 0x95, 0x4d, // mcc 302, mnc 208, lac, cid
            0x00, 0x04, 0x04, // info, voltage level 4, signal 4
            0x19, 0x00, // alarm: low battery; language
        ];
        let out = lbs_status(&ctx(), &body).unwrap();
        assert_eq!(out.messages[0].kind, MessageKind::Alarm);
        assert_eq!(out.messages[0].alarms, vec![Alarm::LowBattery]);
        assert!(out.messages[0].position.is_none());
        assert_eq!(out.messages[0].cells.len(), 1);
    }

    #[test]
    fn decodes_short_and_extended_event_packets() {
        // 2019-10-02 09:50:28, event 0x90 harsh acceleration
        let short = [0x13, 0x0a, 0x02, 0x09, 0x32, 0x1c, 0x90];
        let out = event(&ctx(), &short).unwrap();
        assert_eq!(out.messages[0].alarms, vec![Alarm::HarshAcceleration]);
        assert!(out.messages[0].position.is_none());
        let extended = [
            0x14, 0x0a, 0x07, 0x0c, 0x14, 0x34, // time
            0x05, 0x5d, 0x4a, 0x80, // latitude
            0x02, 0x09, 0xd9, 0xc0, // longitude
            0x14, 0x28, // course, valid, north
            0x01, // event: SOS (general when the packet has no position)
        ];
        let out = event(&ctx(), &extended).unwrap();
        assert_eq!(out.messages[0].alarms, vec![Alarm::Sos]);
        assert!(out.messages[0].position.as_ref().unwrap().valid);
    }

    #[test]
    fn a_jc400_event_has_its_course_word_right_after_the_coordinates() {
        let body = [
            0xff, 0xff, 0x01, // JC400 marker, version
            0x18, 0x0b, 0x0d, 0x03, 0x14, 0x06, // 2024-11-13 03:20:06
            0xda, // satellites 10
            0x04, 0xb5, 0xab, 0x0d, // latitude 43.897
            0x08, 0x81, 0x3d, 0xf0, // longitude 79.271
            0x1c, 0xa9, // course 169, valid, north, west
            0x00, 0x2c, // not interpreted
            0x00, 0x8a, // power
            0x92, // event: cornering
        ];
        let out = event(&ctx(), &body).unwrap();
        let m = &out.messages[0];
        assert_eq!(m.alarms, vec![Alarm::HarshCornering]);
        let p = m.position.as_ref().unwrap();
        assert!((p.lat - 43.89704).abs() < 1e-5 && (p.lon + 79.27096).abs() < 1e-5);
        assert!(p.valid);
        assert_eq!(p.course, Some(169.0));
    }
}

//! Additional information items that follow the fixed part of a location report
//! (`id u8, length u8, value`), standard and vendor.
//!
//! In: the bytes after the 28-byte fixed part of a 0x0200 body. Out: fields written into the
//! [`Message`] (status, alarms, cells, Wi-Fi) and an [`Extras`] with what belongs on the
//! position or needs the caller's judgement (satellites, HDOP, voltages, a stated time zone).
//! Items we do not use are skipped by their length; an item whose length runs past the end
//! stops the walk (the fixed part is still good). Nothing here fails a frame.

use crate::message::{Alarm, CellTower, Message, WifiAccessPoint};

use super::model::Model;
use crate::reader::Reader;

/// Values from the items that the caller places itself.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Extras {
    /// Satellites in use (0x31, 0xEE).
    pub satellites: Option<u8>,
    /// Horizontal dilution of precision (0xF9 bit 2).
    pub hdop: Option<f64>,
    /// Battery voltage in volts (vendor items).
    pub battery_v: Option<f64>,
    /// External supply voltage in volts (vendor items).
    pub power_v: Option<f64>,
    /// The device's own UTC offset in minutes, from a printable 0xEB item such as `UTC+08:00`.
    pub stated_offset: Option<i32>,
    /// An item's length ran past the end of the body; the walk stopped there.
    pub overrun: bool,
}

impl Extras {
    /// Battery voltage if reported, else the supply voltage.
    pub fn voltage(&self) -> Option<f64> {
        self.battery_v.or(self.power_v)
    }
}

/// Adds `alarm` once.
pub(crate) fn add_alarm(msg: &mut Message, alarm: Alarm) {
    if !msg.alarms.contains(&alarm) {
        msg.alarms.push(alarm);
    }
}

/// Walks the items in `bytes`.
pub(crate) fn read_items(bytes: &[u8], msg: &mut Message, ex: &mut Extras, model: Model) {
    let mut r = Reader::new(bytes);
    while r.remaining() >= 2 {
        let (Ok(id), Ok(len)) = (r.u8("item id"), r.u8("item length")) else {
            break;
        };
        let Ok(value) = r.take(usize::from(len), "item value") else {
            ex.overrun = true;
            break;
        };
        item(id, value, msg, ex, model);
    }
}

/// Whether `bytes` is a clean sequence of items ending exactly at its end.
pub(crate) fn items_fit(bytes: &[u8]) -> bool {
    let mut pos = 0usize;
    while pos < bytes.len() {
        match bytes.get(pos + 1) {
            Some(&len) => pos += 2 + usize::from(len),
            None => return false,
        }
    }
    pos == bytes.len()
}

fn be16(v: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*v.get(at)?, *v.get(at + 1)?]))
}

fn be32(v: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes([
        *v.get(at)?,
        *v.get(at + 1)?,
        *v.get(at + 2)?,
        *v.get(at + 3)?,
    ]))
}

fn set_battery_pct(msg: &mut Message, pct: u32) {
    if pct <= 100 {
        msg.status.battery_pct = Some(pct as u8);
    }
}

fn item(id: u8, v: &[u8], msg: &mut Message, ex: &mut Extras, model: Model) {
    let len = v.len();
    match id {
        // Standard: mileage, 1/10 km.
        0x01 => {
            if let Some(m) = be32(v, 0) {
                msg.status.odometer_m = Some(f64::from(m) * 100.0);
            }
        }
        // Vendor: battery level in percent.
        0x06 if len == 1 => set_battery_pct(msg, u32::from(v[0])),
        // Standard: area/route entry or exit (type u8, area id u32, direction u8: 0 in, 1 out).
        0x12 if len >= 6 => match v[5] {
            0 => add_alarm(msg, Alarm::GeofenceEnter),
            1 => add_alarm(msg, Alarm::GeofenceExit),
            _ => add_alarm(msg, Alarm::Geofence),
        },
        // Standard: wireless signal strength.
        0x30 if len >= 1 => msg.status.gsm_signal = Some(v[0]),
        // Standard: GNSS satellites in use.
        0x31 if len >= 1 => ex.satellites = Some(v[0]),
        // Vendor (padlocks): "*M00,<pct>,<7-digit lock status>..." with volts ×100 in digits 3..5.
        0x33 if len > 15 && v.starts_with(b"*M00") => {
            if let Some(cv) = std::str::from_utf8(&v[10..13])
                .ok()
                .and_then(|s| s.parse::<u32>().ok())
            {
                ex.battery_v = Some(f64::from(cv) / 100.0);
            }
        }
        // Vendor: battery level in tens of percent, then a reserved byte.
        0x56 if len >= 1 => set_battery_pct(msg, u32::from(v[0]) * 10),
        // Vendor: driving-behaviour word (bits 8..10: acceleration, braking, cornering).
        0x57 if len >= 2 => {
            let w = be16(v, 0).unwrap_or(0);
            if w & (1 << 8) != 0 {
                add_alarm(msg, Alarm::HarshAcceleration);
            }
            if w & (1 << 9) != 0 {
                add_alarm(msg, Alarm::HarshBraking);
            }
            if w & (1 << 10) != 0 {
                add_alarm(msg, Alarm::HarshCornering);
            }
            // Then the external switch state u16 and an alarm word u32, whose bit 16 is the
            // door on MV models.
            if model == Model::Mv && be32(v, 4).is_some_and(|a| a & (1 << 16) != 0) {
                add_alarm(msg, Alarm::Door);
            }
        }
        // Vendor: a step count on C5 models (a temperature, not kept, elsewhere).
        0xF8 if len >= 2 && model == Model::C5 => {
            msg.status.steps = be16(v, 0).map(u32::from);
        }
        // Vendor: battery voltage, 1/100 V.
        0x69 | 0xD5 if len == 2 => {
            ex.battery_v = be16(v, 0).map(|x| f64::from(x) / 100.0);
        }
        // Vendor (ADAS): alarm serial u32, status u8, type u8.
        0x70 if len >= 6 => match v[5] {
            0x01 => add_alarm(msg, Alarm::HarshAcceleration),
            0x02 => add_alarm(msg, Alarm::HarshBraking),
            0x03 => add_alarm(msg, Alarm::HarshCornering),
            0x16 => add_alarm(msg, Alarm::Accident),
            _ => {}
        },
        // Vendor: supply voltage, 1/10 V.
        0x82 | 0xD3 if len == 2 => ex.power_v = be16(v, 0).map(|x| f64::from(x) / 10.0),
        // Vendor: user status word, bit 3 vibration.
        0xD0 if be32(v, 0).is_some_and(|w| w & (1 << 3) != 0) => {
            add_alarm(msg, Alarm::Vibration);
        }
        // Vendor: one byte of battery level, 0xFF meaning on charge.
        0xD4 | 0xE1 | 0xE9 if len == 1 => {
            if v[0] == 0xff {
                msg.status.charging = Some(true);
            } else {
                set_battery_pct(msg, u32::from(v[0]));
            }
        }
        // Vendor: supply voltage, 1/10 V.
        0xE1 if len == 2 => ex.power_v = be16(v, 0).map(|x| f64::from(x) / 10.0),
        // Vendor: serving and neighbour cells (mcc u16, mnc u16, then lac u24, cid u32, rssi).
        0xE1 if len >= 12 && (len - 4) % 8 == 0 => {
            let (mcc, mnc) = (be16(v, 0).unwrap_or(0), be16(v, 2).unwrap_or(0));
            for c in v[4..].chunks_exact(8) {
                let lac = u32::from_be_bytes([0, c[0], c[1], c[2]]);
                let cid = u32::from_be_bytes([c[3], c[4], c[5], c[6]]);
                if lac > 0 && lac <= 0xffff && cid <= 0x0fff_ffff {
                    msg.cells.push(CellTower {
                        mcc,
                        mnc,
                        lac,
                        cid: u64::from(cid),
                        rssi: Some(i16::from(c[7])),
                    });
                }
            }
        }
        // Vendor: reserved u8, battery level u8, battery voltage u16 (1/100 V).
        0xE3 if len >= 4 => {
            set_battery_pct(msg, u32::from(v[1]));
            ex.battery_v = be16(v, 2).map(|x| f64::from(x) / 100.0);
        }
        // Vendor: charge state (0 = charging) and battery level.
        0xE4 if len >= 2 => {
            if v[0] == 0 {
                msg.status.charging = Some(true);
            }
            set_battery_pct(msg, u32::from(v[1]));
        }
        // Vendor: alarm word, bit 0 vibration, bits 1..=3 emergency.
        0xE7 if len == 8 => {
            let w = be16(v, 0).unwrap_or(0);
            if w & 1 != 0 {
                add_alarm(msg, Alarm::Vibration);
            }
            if w & 0b1110 != 0 {
                add_alarm(msg, Alarm::Sos);
            }
        }
        // Vendor: extended event (type u16, length u8, data). Other devices put a 3-byte lock
        // status here, so only longer items whose type is one we know are read.
        0xE8 if len > 3 && is_extended_event(be16(v, 0).unwrap_or(0)) => extended_event(v, msg, ex),
        0xEB => item_eb(v, msg, ex),
        // Vendor: Wi-Fi access points, 6-byte MAC and signed RSSI each.
        0xEC | 0xF4 => {
            for ap in v.chunks_exact(7) {
                msg.wifi.push(WifiAccessPoint {
                    mac: mac_string(&ap[..6]),
                    rssi: Some(i16::from(ap[6] as i8)),
                });
            }
        }
        // Vendor: signal u8, supply u16 (mV), battery u16 (mV), satellites u8.
        0xEE if len == 6 => {
            msg.status.gsm_signal = Some(v[0]);
            ex.power_v = be16(v, 1).map(|x| f64::from(x) / 1000.0);
            ex.battery_v = be16(v, 3).map(|x| f64::from(x) / 1000.0);
            ex.satellites = Some(v[5]);
        }
        // Vendor: cells (mcc u16, mnc u16, cid u32, lac u32, rssi u8).
        0xF0 => {
            for c in v.chunks_exact(13) {
                let mcc = u16::from_be_bytes([c[0], c[1]]);
                let mnc = u16::from_be_bytes([c[2], c[3]]);
                let cid = u32::from_be_bytes([c[4], c[5], c[6], c[7]]);
                let lac = u32::from_be_bytes([c[8], c[9], c[10], c[11]]);
                msg.cells.push(CellTower {
                    mcc,
                    mnc,
                    lac,
                    cid: u64::from(cid),
                    rssi: Some(i16::from(c[12])),
                });
            }
        }
        // Vendor: supply voltage in mV.
        0xF1 if len == 4 => ex.power_v = be32(v, 0).map(|x| f64::from(x) / 1000.0),
        // Vendor: battery mV u32, then charge state (2, 3 = charging), then level.
        0xF7 if len >= 4 => {
            ex.battery_v = be32(v, 0).map(|x| f64::from(x) / 1000.0);
            if len >= 5 && matches!(v[4], 2 | 3) {
                msg.status.charging = Some(true);
            }
            if len >= 6 {
                set_battery_pct(msg, u32::from(v[5]));
            }
        }
        // Vendor: mask u16, then optional fields; bit 2 is HDOP ×10.
        0xF9 if len >= 2 => {
            let mask = be16(v, 0).unwrap_or(0);
            let mut at = 2;
            at += if mask & 1 != 0 { 4 } else { 0 };
            at += if mask & 2 != 0 { 4 } else { 0 };
            if mask & 4 != 0 {
                ex.hdop = be16(v, at).map(|x| f64::from(x) / 10.0);
            }
        }
        0xFE => item_fe(v, msg, ex),
        _ => {}
    }
}

/// The 0xE8 extended-event types we read.
fn is_extended_event(kind: u16) -> bool {
    matches!(kind, 0x0001 | 0x2003 | 0x2005 | 0x0400..=0x0417 | 0x0C01..=0x0C12)
}

/// 0xE8 extended event: a type word, a length byte, then the data.
fn extended_event(v: &[u8], msg: &mut Message, ex: &mut Extras) {
    let kind = be16(v, 0).unwrap_or(0);
    let data = &v[3..];
    match kind {
        // Power report: charging u8, battery status 1..=6, battery 1/100 V, signal, supply.
        0x2003 if data.len() >= 7 => {
            msg.status.charging = Some(data[0] == 1);
            if (1..=6).contains(&data[1]) {
                set_battery_pct(msg, u32::from(data[1]) * 100 / 6);
            }
            ex.battery_v = be16(data, 2).map(|x| f64::from(x) / 100.0);
            msg.status.gsm_signal = Some(data[4]);
            ex.power_v = be16(data, 5).map(|x| f64::from(x) / 100.0);
        }
        // Status list: id u16, length u8, value.
        0x2005 => {
            let mut r = Reader::new(data);
            while let (Ok(sid), Ok(slen)) = (r.u16("status id"), r.u8("status length")) {
                let Ok(sv) = r.take(usize::from(slen), "status value") else {
                    break;
                };
                match sid {
                    0x0001 => ex.battery_v = be16(sv, 0).map(|x| f64::from(x) / 100.0),
                    0x0003 if !sv.is_empty() => set_battery_pct(msg, u32::from(sv[0])),
                    0x0004 if !sv.is_empty() => msg.status.charging = Some(sv[0] == 0),
                    0x0007 => ex.hdop = be16(sv, 0).map(|x| f64::from(x) / 10.0),
                    0x2001 => ex.power_v = be16(sv, 0).map(|x| f64::from(x) / 10.0),
                    _ => {}
                }
            }
        }
        0x0001 => add_alarm(msg, Alarm::Fault),
        0x0400 | 0x0412 => add_alarm(msg, Alarm::HarshAcceleration),
        0x0401 | 0x0413 => add_alarm(msg, Alarm::HarshBraking),
        0x0402 | 0x0414 => add_alarm(msg, Alarm::HarshCornering),
        0x0403 => add_alarm(msg, Alarm::Overspeed),
        0x0405 | 0x0416 | 0x0417 => add_alarm(msg, Alarm::Accident),
        0x0406 => add_alarm(msg, Alarm::Vibration),
        0x0407 => add_alarm(msg, Alarm::Movement),
        0x0408 => add_alarm(msg, Alarm::GeofenceEnter),
        0x0409 => add_alarm(msg, Alarm::GeofenceExit),
        0x040C => add_alarm(msg, Alarm::Door),
        0x0C01 => add_alarm(msg, Alarm::Sos),
        0x0C02 | 0x0C0F => add_alarm(msg, Alarm::LowBattery),
        0x0C03 => msg.status.ignition = Some(true),
        0x0C04 => msg.status.ignition = Some(false),
        0x0C05 => add_alarm(msg, Alarm::General),
        0x0C0E => add_alarm(msg, Alarm::PowerCut),
        0x0C10 => add_alarm(msg, Alarm::PowerOff),
        0x0C12 => add_alarm(msg, Alarm::Tamper),
        _ => {}
    }
}

/// 0xEB: cells, a printable time zone, or a list of (length u16, type u16, value) sub-items.
fn item_eb(v: &[u8], msg: &mut Message, ex: &mut Extras) {
    let len = v.len();
    if be16(v, 0).is_some_and(|mcc| mcc > 200) && len >= 3 && (len - 3) % 5 == 0 {
        let mcc = be16(v, 0).unwrap_or(0);
        let mnc = u16::from(v[2]);
        for c in v[3..].chunks_exact(5) {
            msg.cells.push(CellTower {
                mcc,
                mnc,
                lac: u32::from(u16::from_be_bytes([c[0], c[1]])),
                cid: u64::from(u16::from_be_bytes([c[2], c[3]])),
                rssi: Some(i16::from(c[4])),
            });
        }
        return;
    }
    if !v.is_empty() && v.iter().all(|b| (0x20..0x7f).contains(b)) {
        if let Ok(text) = std::str::from_utf8(v) {
            ex.stated_offset = parse_zone(text);
        }
        return;
    }
    let mut r = Reader::new(v);
    while let Ok(sub_len) = r.u16("sub-item length") {
        let Ok(sub) = r.take(usize::from(sub_len), "sub-item") else {
            break;
        };
        let Some(kind) = be16(sub, 0) else { continue };
        let s = &sub[2..];
        match kind {
            0x002D if s.len() == 4 => ex.power_v = be32(s, 0).map(|x| f64::from(x) / 1000.0),
            0x002D => ex.battery_v = be16(s, 0).map(|x| f64::from(x) / 1000.0),
            0x0089 => {
                if let Some(w) = be32(s, 0) {
                    if w & 1 == 0 {
                        add_alarm(msg, Alarm::PowerOff);
                    }
                    if w & (1 << 12) == 0 {
                        add_alarm(msg, Alarm::Removal);
                    }
                }
            }
            0x00C5 if be32(s, 0).is_some_and(|w| w & (1 << 6) == 0) => {
                add_alarm(msg, Alarm::Vibration);
            }
            0x00C6 if matches!(s.first(), Some(3 | 4)) => add_alarm(msg, Alarm::LowBattery),
            0x00CE => ex.power_v = be16(s, 0).map(|x| f64::from(x) / 100.0),
            0x00A8 | 0x00E1 if !s.is_empty() => set_battery_pct(msg, u32::from(s[0])),
            0x00D8 if s.len() >= 9 => msg.cells.push(CellTower {
                mcc: be16(s, 0).unwrap_or(0),
                mnc: u16::from(s[2]),
                lac: u32::from(be16(s, 3).unwrap_or(0)),
                cid: u64::from(be32(s, 5).unwrap_or(0)),
                rssi: None,
            }),
            0x00B9 if s.len() > 1 => {
                let text = String::from_utf8_lossy(&s[1..]);
                let fields: Vec<&str> = text.split(',').collect();
                for pair in fields.chunks_exact(2) {
                    msg.wifi.push(WifiAccessPoint {
                        mac: pair[0].trim().to_ascii_lowercase(),
                        rssi: pair[1].trim().parse().ok(),
                    });
                }
            }
            _ => {}
        }
    }
}

/// 0xFE: battery level (1 byte), supply voltage (2), odometer in metres (4), or a 0x7C block
/// of driving-behaviour sub-items.
fn item_fe(v: &[u8], msg: &mut Message, ex: &mut Extras) {
    match v.len() {
        1 => set_battery_pct(msg, u32::from(v[0])),
        2 => ex.power_v = be16(v, 0).map(|x| f64::from(x) / 10.0),
        4 => msg.status.odometer_m = be32(v, 0).map(f64::from),
        _ if v.first() == Some(&0x7c) => {
            let mut r = Reader::new(&v[1..]);
            while let (Ok(kind), Ok(len)) = (r.u8("sub-item type"), r.u8("sub-item length")) {
                let Ok(s) = r.take(usize::from(len), "sub-item") else {
                    break;
                };
                if kind != 0x01 {
                    continue;
                }
                let w = be32(s, 0).unwrap_or(0);
                for (bit, alarm) in [
                    (0, Alarm::HarshAcceleration),
                    (1, Alarm::HarshBraking),
                    (2, Alarm::HarshCornering),
                    (3, Alarm::Accident),
                    (4, Alarm::Tamper),
                ] {
                    if w & (1 << bit) != 0 {
                        add_alarm(msg, alarm);
                    }
                }
            }
        }
        _ => {}
    }
}

/// `UTC+08:00`, `GMT+8`, `+0800`, `-5`: minutes east of UTC, within ±14 h.
pub(crate) fn parse_zone(text: &str) -> Option<i32> {
    let t = text.trim();
    let t = t
        .strip_prefix("UTC")
        .or_else(|| t.strip_prefix("GMT"))
        .unwrap_or(t);
    let (sign, rest) = match t.as_bytes().first()? {
        b'+' => (1, &t[1..]),
        b'-' => (-1, &t[1..]),
        _ => return None,
    };
    let (h, m) = match rest.split_once(':') {
        Some((h, m)) => (h.parse::<i32>().ok()?, m.parse::<i32>().ok()?),
        None if rest.len() == 4 => (rest.get(..2)?.parse().ok()?, rest.get(2..)?.parse().ok()?),
        None => (rest.parse().ok()?, 0),
    };
    if !(0..=14).contains(&h) || !(0..60).contains(&m) {
        return None;
    }
    Some(sign * (h * 60 + m))
}

fn mac_string(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::MessageKind;

    fn walk(bytes: &[u8]) -> (Message, Extras) {
        let mut msg = Message::new(MessageKind::Position);
        let mut ex = Extras::default();
        read_items(bytes, &mut msg, &mut ex, Model::Standard);
        (msg, ex)
    }

    #[test]
    fn standard_items_mileage_signal_satellites() {
        let (msg, ex) = walk(&[
            0x01, 0x04, 0x00, 0x00, 0x36, 0xc9, // mileage 14025 × 0.1 km
            0x30, 0x01, 0x1f, // signal 31
            0x31, 0x01, 0x0e, // 14 satellites
        ]);
        assert_eq!(msg.status.odometer_m, Some(1_402_500.0));
        assert_eq!(msg.status.gsm_signal, Some(31));
        assert_eq!(ex.satellites, Some(14));
        assert!(!ex.overrun);
    }

    #[test]
    fn area_item_gives_enter_or_exit() {
        let (msg, _) = walk(&[
            0x12, 0x06, // in/out area, 6 bytes
            0x01, // circle
            0x00, 0x00, 0x00, 0x07, // area 7
            0x01, // direction: out
        ]);
        assert_eq!(msg.alarms, vec![Alarm::GeofenceExit]);
    }

    #[test]
    fn eb_sub_items_give_battery_and_removal() {
        let (msg, ex) = walk(&[
            0xeb, 0x14, // vendor block, 20 bytes
            0x00, 0x06, 0x00, 0x89, 0xff, 0xff, 0xef, 0xff, // status word, bit 12 clear
            0x00, 0x04, 0x00, 0x2d, 0x0f, 0xa5, // battery 4005 mV
            0x00, 0x03, 0x00, 0xa8, 0x5c, // level 92 %
            0x00, // stray byte: too short for a sub-item
        ]);
        assert_eq!(msg.alarms, vec![Alarm::Removal]);
        assert_eq!(ex.battery_v, Some(4.005));
        assert_eq!(msg.status.battery_pct, Some(92));
    }

    #[test]
    fn printable_eb_is_a_time_zone() {
        let (_, ex) = walk(b"\xeb\x09UTC+08:00");
        assert_eq!(ex.stated_offset, Some(480));
        assert_eq!(parse_zone("GMT-5"), Some(-300));
        assert_eq!(parse_zone("+0530"), Some(330));
        assert_eq!(parse_zone("UTC+15:00"), None);
    }

    #[test]
    fn e8_extended_event_is_recognised_by_length_and_type() {
        let (msg, ex) = walk(&[
            0xe8, 0x0a, // vendor extended event, 10 bytes
            0x20, 0x03, 0x07, // power report, 7 bytes follow
            0x01, 0x05, // charging, battery status 5 of 6
            0x01, 0x9f, // battery 4.15 V
            0x03, // signal
            0x01, 0x90, // supply 4.00 V
        ]);
        assert_eq!(ex.battery_v, Some(4.15));
        assert_eq!(msg.status.battery_pct, Some(83));
        assert_eq!(msg.status.charging, Some(true));
        // An emergency event.
        let (msg, _) = walk(&[
            0xe8, 0x05, // vendor extended event, 5 bytes
            0x0c, 0x01, // emergency
            0x02, 0x00, 0x00, // length and data
        ]);
        assert_eq!(msg.alarms, vec![Alarm::Sos]);
        // Three bytes are a lock status on other devices: ignored.
        let (msg, _) = walk(&[0xe8, 0x03, 0x0c, 0x01, 0x55]);
        assert!(msg.alarms.is_empty());
    }

    #[test]
    fn an_item_running_past_the_end_stops_the_walk() {
        let (msg, ex) = walk(&[
            0x30, 0x01, 0x11, // signal 17
            0x01, 0x04, 0x00, 0x00, // mileage, 2 of 4 bytes
        ]);
        assert_eq!(msg.status.gsm_signal, Some(17));
        assert_eq!(msg.status.odometer_m, None);
        assert!(ex.overrun);
        assert!(!items_fit(&[0x01, 0x04, 0x00]));
        assert!(items_fit(&[0x30, 0x01, 0x11, 0x00, 0x00]));
    }
}

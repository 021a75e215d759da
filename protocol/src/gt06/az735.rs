//! Long-form 0x32 (position) and 0x33 (alarm) of AZ735-type devices. Each section after the time
//! is preceded by its own length byte, 0 when absent:
//!
//! ```text
//! time (6) | GPS length u8 | satellites, latitude, longitude, speed, course/status (12)
//! | cell length u8 | MCC, MNC, LAC, cell ID | RSSI u8
//! | extra-cells length u8 | ... | Wi-Fi length u8 | n x (MAC 6, RSSI u8)
//! | status u8 (0x33: A0/A1 armed/disarmed, A2/A3 low battery, A4 general, A5 door)
//! | extension length u8 | ...
//! ```
//! Both are acknowledged in the long form.

use crate::error::DecodeError;
use crate::message::{Alarm, MessageKind, WifiAccessPoint};
use crate::reader::Reader;

use super::lbs::{self, mac, rssi};
use super::location::{self, GpsFix};
use super::status::push_alarm;
use super::{Ctx, Out, Reply};

/// Position report.
pub(crate) const GPS: u8 = 0x32;
/// Alarm report.
pub(crate) const ALARM: u8 = 0x33;

/// Decodes 0x32 / 0x33.
///
/// # Errors
/// [`DecodeError::Truncated`] when a section is longer than the bytes left.
pub(crate) fn decode(ctx: &Ctx<'_>, protocol: u8, body: &[u8]) -> Result<Out, DecodeError> {
    let mut r = Reader::new(body);
    let time = location::read_time(&mut r, ctx)?;
    let mut message = ctx.message(MessageKind::Lbs);
    let gps_len = usize::from(r.u8("gps length")?);
    if gps_len > 0 {
        let gps = r.take(gps_len, "gps")?;
        let mut g = Reader::new(gps);
        if let (Ok(info), Ok(lat), Ok(lon), Ok(speed), Ok(flags)) = (
            g.u8("satellites"),
            g.u32("latitude"),
            g.u32("longitude"),
            g.u8("speed"),
            g.u16("course and status"),
        ) {
            let fix = GpsFix::from_wire(
                time,
                Some(info & 0x0f),
                lat,
                lon,
                Some(f64::from(speed)),
                flags,
            );
            fix.apply(&mut message);
            message.kind = MessageKind::Position;
        }
    }
    let cell_len = usize::from(r.u8("cell length")?);
    if cell_len > 0 {
        // The length counts itself; the RSSI byte follows the cell.
        let cell = r.take(cell_len.saturating_sub(1), "cell")?;
        let strength = r.u8("rssi")?;
        message
            .cells
            .extend(lbs::cell_by_size(cell, false).map(|mut c| {
                c.rssi = rssi(strength);
                c
            }));
    }
    let extra = usize::from(r.u8("extra cells length")?);
    r.skip(extra, "extra cells")?;
    let wifi_len = usize::from(r.u8("wifi length")?);
    let wifi = r.take(wifi_len, "wifi")?;
    for ap in wifi.chunks_exact(7) {
        if let Some((&strength, address)) = ap.split_last() {
            message.wifi.push(WifiAccessPoint {
                mac: mac(address),
                rssi: rssi(strength),
            });
        }
    }
    let status = r.u8("status")?;
    if protocol == ALARM {
        let alarm = match status {
            0xa2 | 0xa3 => Some(Alarm::LowBattery),
            0xa4 => Some(Alarm::General),
            0xa5 => Some(Alarm::Door),
            _ => None,
        };
        if let Some(a) = alarm {
            push_alarm(&mut message, a);
            message.kind = MessageKind::Alarm;
        }
    }
    if message.kind == MessageKind::Lbs && !message.wifi.is_empty() {
        message.kind = MessageKind::Wifi;
    }
    Ok(Out {
        messages: vec![message],
        reply: Reply::AckLong,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gt06::tests::ctx;

    #[test]
    fn decodes_a_position_with_its_sections() {
        let body = [
            0x11, 0x06, 0x17, 0x0c, 0x1b, 0x18, // 2017-06-23 12:27:24
            0x0c, // GPS section: 12 bytes
            0xc9, // 9 satellites
            0x00, 0xa8, 0x75, 0x58, // latitude
            0x0b, 0x7a, 0xb4, 0xf0, // longitude
            0x00, // speed
            0x10, 0x35, // course 53, valid, south, east
            0x09, // cell section: 9 bytes with the length byte
            0x01, 0xfe, 0x0a, 0x00, 0x7c, 0x00, 0x09, 0x11, // mcc 510, mnc 10, lac, cid
            0x24, // rssi
            0x00, // no extra cells
            0x00, // no Wi-Fi
            0x00, // status
            0x00, // no extension
        ];
        let out = decode(&ctx(), GPS, &body).unwrap();
        let m = &out.messages[0];
        assert_eq!(m.kind, MessageKind::Position);
        let p = m.position.as_ref().unwrap();
        assert!(p.valid && p.lat < 0.0 && p.lon > 0.0);
        assert_eq!(m.cells[0].mcc, 510);
        assert_eq!(m.cells[0].rssi, Some(-0x24));
        assert_eq!(out.reply, Reply::AckLong);
    }

    #[test]
    fn an_alarm_without_sections_reports_its_status_code() {
        let body = [
            0x11, 0x07, 0x06, 0x09, 0x02, 0x0b, // time
            0x00, 0x00, 0x00, 0x00, // no GPS, cell, extra cells, Wi-Fi
            0xa2, // status: low battery
            0x03, 0x00, 0x46, 0x00, // extension
        ];
        let out = decode(&ctx(), ALARM, &body).unwrap();
        assert_eq!(out.messages[0].kind, MessageKind::Alarm);
        assert_eq!(out.messages[0].alarms, vec![Alarm::LowBattery]);
    }
}

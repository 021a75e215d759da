//! Wi-Fi reports: 0x69 and 0x17 (access points + cells) and 0xF3 (access points only).
//!
//! ```text
//! 78 78 | AP count (where the length belongs) | 69 | time BCD (6) | n x (MAC 6, RSSI u8)
//!       | cell count u8 | MCC u16 | MNC u8 | m x (LAC u16, cell ID u16, RSSI u8) | 0D 0A
//! ```
//! These frames carry neither serial nor CRC. The device expects
//! `78 78 00 <type> <the six time bytes> 0D 0A` back. 0xF3 has a real length field, a count byte
//! and 8 bytes per access point (2 unused, MAC), and gets no reply.
//!
//! In: the bytes between the type and the trailer. Out: a [`MessageKind::Wifi`] message.

use crate::error::DecodeError;
use crate::message::{MessageKind, WifiAccessPoint};
use crate::reader::Reader;

use super::frame::{SHORT_START, TRAILER};
use super::lbs::{cell, mac, rssi};
use super::{Ctx, Out, Reply};

/// Wi-Fi + cells (or, with a consistent length field, the GPS + RFID report).
pub(crate) const WIFI: u8 = 0x17;
/// Wi-Fi + cells.
pub(crate) const WIFI_2: u8 = 0x69;
/// Wi-Fi only.
pub(crate) const WIFI_4: u8 = 0xf3;

/// 0x17 / 0x69 with the access-point count in the length field.
///
/// # Errors
/// [`DecodeError::Truncated`] when the time, an access point or the cell header is cut short.
pub(crate) fn decode(ctx: &Ctx<'_>, protocol: u8, body: &[u8]) -> Result<Out, DecodeError> {
    let mut r = Reader::new(body);
    let time = r.take(6, "date and time")?;
    let mut message = ctx.message(MessageKind::Wifi);
    for _ in 0..ctx.length_field {
        let bytes = r.take(7, "access point")?;
        if let Some((&strength, address)) = bytes.split_last() {
            message.wifi.push(WifiAccessPoint {
                mac: mac(address),
                rssi: rssi(strength),
            });
        }
    }
    if r.remaining() > 0 {
        let cells = r.u8("cell count")?;
        let mcc = r.u16("mcc")?;
        let mnc = u16::from(r.u8("mnc")?);
        for _ in 0..cells {
            let lac = r.u16("lac")?;
            let cid = r.u16("cell id")?;
            let strength = r.u8("rssi")?;
            message.cells.extend(cell(
                mcc,
                mnc,
                u32::from(lac),
                u64::from(cid),
                rssi(strength),
            ));
        }
    }
    let mut reply = Vec::with_capacity(12);
    reply.extend_from_slice(&SHORT_START);
    reply.extend_from_slice(&[0x00, protocol]);
    reply.extend_from_slice(time);
    reply.extend_from_slice(&TRAILER);
    Ok(Out {
        messages: vec![message],
        reply: Reply::Raw(reply),
    })
}

/// 0xF3: time, count, then 2 unused bytes and a MAC per access point.
///
/// # Errors
/// [`DecodeError::Truncated`] when an access point is cut short.
pub(crate) fn wifi_4(ctx: &Ctx<'_>, body: &[u8]) -> Result<Out, DecodeError> {
    let mut r = Reader::new(body);
    r.skip(6, "date and time")?;
    let count = r.u8("wifi count")?;
    let mut message = ctx.message(MessageKind::Wifi);
    for _ in 0..count {
        let bytes = r.take(8, "access point")?;
        message.wifi.push(WifiAccessPoint {
            mac: mac(bytes.get(2..).unwrap_or_default()),
            rssi: None,
        });
    }
    Ok(Out::silent(vec![message]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gt06::tests::ctx;
    use crate::gt06::Ctx;

    #[test]
    fn decodes_access_points_and_cells_and_echoes_the_time() {
        let body = [
            0x16, 0x04, 0x13, 0x03, 0x18, 0x49, // time BCD 16-04-13 03:18:49
            0x14, 0x75, 0x90, 0x5b, 0xd3, 0x0e, 0x25, // AP 1: MAC, rssi
            0x01, // one cell
            0x01, 0xcc, 0x00, // mcc 460, mnc 0
            0x28, 0x66, 0x0f, 0x21, 0x32, // lac, cell id, rssi
        ];
        let ctx = Ctx {
            length_field: 1, // the AP count
            ..ctx()
        };
        let out = decode(&ctx, WIFI_2, &body).unwrap();
        let m = &out.messages[0];
        assert_eq!(m.kind, MessageKind::Wifi);
        assert_eq!(m.wifi[0].mac, "14:75:90:5b:d3:0e");
        assert_eq!(m.cells[0].lac, 0x2866);
        assert_eq!(
            out.reply,
            Reply::Raw(vec![
                0x78, 0x78, 0x00, 0x69, 0x16, 0x04, 0x13, 0x03, 0x18, 0x49, 0x0d, 0x0a
            ])
        );
    }
}

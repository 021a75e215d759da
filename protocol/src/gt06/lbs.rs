//! Cell towers: the single cell inside position and status reports, and the reports that carry
//! only cells (and Wi-Fi access points) without a GPS fix.
//!
//! ```text
//! cell:       MCC u16 (bit 15: MNC is u16) | MNC u8 | LAC u16 | cell ID u24
//! 4G cell:    MCC u16 | MNC u8 | LAC u32 | cell ID u64
//! multi-cell: time (6) | MCC | MNC | 7 x (LAC, cell ID, RSSI u8) | timing advance u8
//!             [| Wi-Fi count u8 | n x (MAC 6, RSSI u8)]
//! ```
//! In: a report's content. Out: a message of kind [`MessageKind::Lbs`] (or
//! [`MessageKind::Wifi`] when it lists access points) with its cells; no position is derived.

use crate::error::DecodeError;
use crate::message::{CellTower, MessageKind, WifiAccessPoint};
use crate::reader::Reader;

use super::{Ctx, Out};

/// Time + several cells + Wi-Fi.
pub(crate) const LBS_EXTEND: u8 = 0x18;
/// Time + 7 cells (WANWAY S20: timing advance and a cell count first).
pub(crate) const LBS_MULTIPLE_3: u8 = 0x24;
/// Time + 7 cells + language.
pub(crate) const LBS_MULTIPLE_1: u8 = 0x28;
/// Time + 7 cells + Wi-Fi.
pub(crate) const LBS_WIFI: u8 = 0x2c;
/// Time + 7 cells + language (another numbering).
pub(crate) const LBS_MULTIPLE_2: u8 = 0x2e;
/// Time + 6 cells with 4-byte IDs + Wi-Fi (AZ735/SL4X short form).
pub(crate) const WIFI_5: u8 = 0x33;
/// Time + 7 4G cells + language.
pub(crate) const LBS_2: u8 = 0xa1;
/// Time + 7 4G cells + Wi-Fi.
pub(crate) const WIFI_3: u8 = 0xa2;
/// 4G cell + the phone number asking for an address.
pub(crate) const LBS_ADDRESS: u8 = 0xa7;

/// How the fields of one cell are sized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CellFormat {
    /// MNC is two bytes even without bit 15 of the MCC.
    pub wide_mnc: bool,
    /// Bytes of LAC (2 or 4).
    pub lac_len: usize,
    /// Bytes of cell ID (2, 3, 4 or 8).
    pub cid_len: usize,
}

impl CellFormat {
    /// MCC u16, MNC u8, LAC u16, cell ID u24.
    pub const STANDARD: CellFormat = CellFormat {
        wide_mnc: false,
        lac_len: 2,
        cid_len: 3,
    };
    /// MCC u16, MNC u8, LAC u32, cell ID u64.
    pub const LTE: CellFormat = CellFormat {
        wide_mnc: false,
        lac_len: 4,
        cid_len: 8,
    };
}

/// A cell tower, or `None` for the zero-filled slots devices send when they have no cell.
pub(crate) fn cell(mcc: u16, mnc: u16, lac: u32, cid: u64, rssi: Option<i16>) -> Option<CellTower> {
    (lac != 0 || cid != 0).then_some(CellTower {
        mcc,
        mnc,
        lac,
        cid,
        rssi,
    })
}

/// Reads an unsigned big-endian integer of `len` bytes (at most 8).
fn read_uint(r: &mut Reader<'_>, len: usize, what: &'static str) -> Result<u64, DecodeError> {
    Ok(r.take(len, what)?
        .iter()
        .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
}

/// Reads one cell (MCC through cell ID).
///
/// # Errors
/// [`DecodeError::Truncated`] when the cell is cut short.
pub(crate) fn read_cell(
    r: &mut Reader<'_>,
    format: CellFormat,
) -> Result<Option<CellTower>, DecodeError> {
    let (mcc, mnc) = read_operator(r, format.wide_mnc)?;
    let lac = u32::try_from(read_uint(r, format.lac_len, "lac")?).unwrap_or(u32::MAX);
    let cid = read_uint(r, format.cid_len, "cell id")?;
    Ok(cell(mcc, mnc, lac, cid, None))
}

/// Reads MCC and MNC (MNC is two bytes when bit 15 of the MCC is set or `wide_mnc`).
fn read_operator(r: &mut Reader<'_>, wide_mnc: bool) -> Result<(u16, u16), DecodeError> {
    let raw = r.u16("mcc")?;
    let mnc = if wide_mnc || raw & 0x8000 != 0 {
        r.u16("mnc")?
    } else {
        u16::from(r.u8("mnc")?)
    };
    Ok((raw & 0x7fff, mnc))
}

/// A cell whose layout is told by its size: after MCC and MNC, 5 bytes are LAC u16 + ID u24,
/// 6 are LAC u16 + ID u32 and 12 are LAC u32 + ID u64. Other sizes (and zero-filled cells) give
/// no cell.
pub(crate) fn cell_by_size(bytes: &[u8], wide_mnc: bool) -> Option<CellTower> {
    let mcc = u16::from_be_bytes([*bytes.first()?, *bytes.get(1)?]);
    let mnc_len = if wide_mnc || mcc & 0x8000 != 0 { 2 } else { 1 };
    let (lac_len, cid_len) = match bytes.len().checked_sub(2 + mnc_len)? {
        5 => (2, 3),
        6 => (2, 4),
        12 => (4, 8),
        _ => return None,
    };
    let format = CellFormat {
        wide_mnc,
        lac_len,
        cid_len,
    };
    read_cell(&mut Reader::new(bytes), format).ok().flatten()
}

/// A MAC address as `aa:bb:cc:dd:ee:ff`.
pub(crate) fn mac(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// GT06 sends signal strengths as magnitudes; we store them as negative dBm.
pub(crate) fn rssi(magnitude: u8) -> Option<i16> {
    Some(-i16::from(magnitude))
}

/// Whether `protocol` is a multi-cell report decoded by [`multi`].
pub(crate) fn is_multi_cell(protocol: u8) -> bool {
    matches!(
        protocol,
        LBS_EXTEND
            | LBS_MULTIPLE_3
            | LBS_MULTIPLE_1
            | LBS_WIFI
            | LBS_MULTIPLE_2
            | WIFI_5
            | LBS_2
            | WIFI_3
    )
}

/// Whether an 0xA2 body is long enough for the multi-cell + Wi-Fi layout; shorter ones are the
/// LW4G GPS report.
pub(crate) fn wifi_3_fits(body: &[u8]) -> bool {
    body.len() >= 6 + 3 + 7 * 13 + 2
}

/// Multi-cell reports: time, operator, a fixed number of cells (a counted list on WANWAY S20
/// 0x24, as many as fit on 0x19), timing advance, and on some types a Wi-Fi list.
///
/// # Errors
/// [`DecodeError::Truncated`] when the time, operator or a cell is cut short.
pub(crate) fn multi(ctx: &Ctx<'_>, protocol: u8, body: &[u8]) -> Result<Out, DecodeError> {
    let mut r = Reader::new(body);
    r.skip(6, "date and time")?;
    let wanway = protocol == LBS_MULTIPLE_3 && body.len() == 44;
    if wanway {
        r.skip(1, "timing advance")?;
    }
    let (mcc, mnc) = read_operator(&mut r, false)?;
    let (lac_len, cid_len) = match protocol {
        LBS_2 | WIFI_3 => (4, 8),
        WIFI_5 => (2, 4),
        _ => (2, 3),
    };
    let count = match protocol {
        _ if wanway => usize::from(r.u8("cell count")?),
        super::alarm::LBS_STATUS => r.remaining() / (lac_len + cid_len + 1),
        WIFI_5 => 6,
        _ => 7,
    };
    let mut message = ctx.message(MessageKind::Lbs);
    for _ in 0..count {
        let lac = u32::try_from(read_uint(&mut r, lac_len, "lac")?).unwrap_or(u32::MAX);
        let cid = read_uint(&mut r, cid_len, "cell id")?;
        let strength = r.u8("rssi")?;
        message
            .cells
            .extend(cell(mcc, mnc, lac, cid, rssi(strength)).filter(|c| c.lac != 0));
    }
    let has_wifi = matches!(protocol, LBS_EXTEND | LBS_WIFI | WIFI_5 | WIFI_3);
    if !wanway && r.remaining() > 0 {
        r.skip(1, "timing advance")?;
    }
    if has_wifi && r.remaining() > 0 {
        let aps = usize::from(r.u8("wifi count")?);
        for _ in 0..aps {
            let Ok(bytes) = r.take(7, "access point") else {
                break;
            };
            if let Some((&strength, address)) = bytes.split_last() {
                message.wifi.push(WifiAccessPoint {
                    mac: mac(address),
                    rssi: rssi(strength),
                });
            }
        }
        if !message.wifi.is_empty() {
            message.kind = MessageKind::Wifi;
        }
    }
    Ok(Out::ack(vec![message]))
}

/// 0xA7: a 4G cell and the phone number that asked for an address (not used).
///
/// # Errors
/// [`DecodeError::Truncated`] when the cell is cut short.
pub(crate) fn address(ctx: &Ctx<'_>, body: &[u8]) -> Result<Out, DecodeError> {
    let mut r = Reader::new(body);
    let mut message = ctx.message(MessageKind::Lbs);
    message.cells.extend(read_cell(&mut r, CellFormat::LTE)?);
    Ok(Out::ack(vec![message]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gt06::tests::ctx;

    #[test]
    fn cell_size_decides_the_field_widths() {
        // mcc 460, mnc 0, lac 0x2503, cid u32 0x0328e7a0
        let nine = [0x01, 0xcc, 0x00, 0x25, 0x03, 0x03, 0x28, 0xe7, 0xa0];
        let c = cell_by_size(&nine, false).unwrap();
        assert_eq!((c.mcc, c.mnc, c.lac, c.cid), (460, 0, 0x2503, 0x0328_e7a0));
        // mcc with bit 15: mnc u16 0x0104, lac, cid u24
        let wide = [0x81, 0x36, 0x01, 0x04, 0xcb, 0x8a, 0x00, 0xbe, 0xf3];
        let c = cell_by_size(&wide, false).unwrap();
        assert_eq!((c.mcc, c.mnc, c.lac, c.cid), (310, 0x0104, 0xcb8a, 0xbef3));
        assert_eq!(cell_by_size(&[0; 8], false), None);
        assert_eq!(cell_by_size(&[0x01, 0xcc, 0x00], false), None);
    }

    #[test]
    fn decodes_a_multi_cell_report_skipping_empty_slots() {
        let mut body = vec![
            0x10, 0x01, 0x0d, 0x02, 0x02, 0x02, // time
            0x01, 0xcc, 0x00, // mcc 460, mnc 0
            0x28, 0x7d, 0x00, 0x1f, 0x71, 0x3e, // lac, cid, rssi
            0x28, 0x7d, 0x00, 0x1f, 0x72, 0x31,
        ];
        body.extend_from_slice(&[0; 5 * 6]); // five empty slots
        body.extend_from_slice(&[0xff, 0x00, 0x02]); // timing advance, language
        let out = multi(&ctx(), LBS_MULTIPLE_1, &body).unwrap();
        let m = &out.messages[0];
        assert_eq!(m.kind, MessageKind::Lbs);
        assert_eq!(m.cells.len(), 2);
        assert_eq!(m.cells[0].rssi, Some(-0x3e));
        assert!(m.position.is_none());
    }

    #[test]
    fn a_wifi_list_makes_it_a_wifi_message() {
        let mut body = vec![0x11, 0x03, 0x0b, 0x01, 0x1c, 0x1f, 0x01, 0x36, 0x04];
        body.extend_from_slice(&[0; 7 * 6]); // seven empty cells
        body.push(0x07); // timing advance
        body.push(0x01); // one access point
        body.extend_from_slice(&[0x00, 0x18, 0x01, 0xeb, 0x40, 0x39, 0x38]);
        let out = multi(&ctx(), LBS_WIFI, &body).unwrap();
        let m = &out.messages[0];
        assert_eq!(m.kind, MessageKind::Wifi);
        assert_eq!(m.wifi[0].mac, "00:18:01:eb:40:39");
        assert_eq!(m.wifi[0].rssi, Some(-0x38));
    }
}

//! The GT06 frame envelope: start marker, length field, protocol number, content, serial, CRC-ITU
//! and the `0D 0A` trailer.
//!
//! In: one frame already cut out of the stream (see `mod.rs` for the cutting). Out: its fields,
//! with the length field and checksum compared against the bytes actually present. Nothing here
//! decides whether a mismatch is acceptable; the session does that with its options.
//!
//! ```text
//! 78 78 | len u8  | proto | content ... | serial u16 | crc u16 | 0D 0A
//! 79 79 | len u16 | proto | content ... | serial u16 | crc u16 | 0D 0A
//!         len counts proto .. crc; the CRC covers len .. serial
//! ```

use crc::{Crc, CRC_16_IBM_SDLC};

use crate::error::DecodeError;

/// Start marker of the short form (1-byte length field).
pub(crate) const SHORT_START: [u8; 2] = [0x78, 0x78];
/// Start marker of the long ("extended") form (2-byte length field).
pub(crate) const LONG_START: [u8; 2] = [0x79, 0x79];
/// Every frame ends with CR LF.
pub(crate) const TRAILER: [u8; 2] = [0x0d, 0x0a];
/// Protocol number, serial and CRC: the least a length field can count.
pub(crate) const MIN_COUNTED: usize = 1 + 2 + 2;

const X25: Crc<u16> = Crc::<u16>::new(&CRC_16_IBM_SDLC);

/// CRC-ITU as GT06 uses it (CRC-16/X-25: polynomial 0x1021 reflected, init and final XOR
/// 0xFFFF), over the bytes from the length field through the serial number.
///
/// ```
/// assert_eq!(ewall_protocol::gt06::crc_itu(b"123456789"), 0x906e);
/// ```
pub fn crc_itu(bytes: &[u8]) -> u16 {
    X25.checksum(bytes)
}

/// Size of the start marker plus length field when `bytes` begins with a start marker.
pub(crate) fn header_len(bytes: &[u8]) -> Option<usize> {
    match bytes.get(..2) {
        Some(m) if m == SHORT_START => Some(3),
        Some(m) if m == LONG_START => Some(4),
        _ => None,
    }
}

/// The value of the length field, when the whole header is present.
pub(crate) fn length_field(bytes: &[u8]) -> Option<usize> {
    match (header_len(bytes)?, bytes) {
        (3, [_, _, len, ..]) => Some(usize::from(*len)),
        (4, [_, _, hi, lo, ..]) => Some(usize::from(u16::from_be_bytes([*hi, *lo]))),
        _ => None,
    }
}

/// Total frame size the header declares (marker + length field + counted bytes + trailer).
pub(crate) fn declared_total(bytes: &[u8]) -> Option<usize> {
    Some(header_len(bytes)? + length_field(bytes)? + TRAILER.len())
}

/// One frame split into its fields.
///
/// `content`/`serial`/`crc` follow the textbook layout (serial and CRC just before the trailer);
/// `bare` is everything between the protocol number and the trailer, for the frames that carry
/// no serial or CRC at all (Wi-Fi reports whose length field holds an access-point count).
#[derive(Debug, Clone)]
pub(crate) struct Frame<'a> {
    /// `79 79` form.
    pub long: bool,
    /// Protocol number (message type).
    pub protocol: u8,
    /// Content under the textbook layout.
    pub content: &'a [u8],
    /// Everything between the protocol number and the trailer.
    pub bare: &'a [u8],
    /// Serial number under the textbook layout; `None` when the frame is too short to hold one.
    pub serial: Option<u16>,
    /// CRC computed over the frame and the CRC it carries, when it has room for one.
    pub crc: Option<(u16, u16)>,
    /// The length field.
    pub declared: usize,
    /// What the length field should have said for the bytes present.
    pub actual: usize,
}

impl<'a> Frame<'a> {
    /// Splits a frame that starts with a marker. A missing trailer (or a lone `0D`) is tolerated
    /// and shows up as a length mismatch.
    ///
    /// # Errors
    /// [`DecodeError::NotThisProtocol`] without a start marker; [`DecodeError::Truncated`] when
    /// not even the protocol number is present.
    pub fn split(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let hdr = header_len(bytes).ok_or_else(|| DecodeError::NotThisProtocol {
            protocol: "gt06",
            reason: "frame does not start with 78 78 or 79 79".to_owned(),
        })?;
        let declared = length_field(bytes).ok_or(DecodeError::Truncated {
            what: "length field",
            needed: hdr,
            available: bytes.len(),
        })?;
        let trailer = if bytes.ends_with(&TRAILER) {
            2
        } else if bytes.ends_with(&TRAILER[..1]) {
            1
        } else {
            0
        };
        let end = bytes.len() - trailer;
        let counted = bytes.get(hdr..end).unwrap_or_default();
        let Some((&protocol, after_protocol)) = counted.split_first() else {
            return Err(DecodeError::Truncated {
                what: "protocol number",
                needed: hdr + 1,
                available: bytes.len(),
            });
        };
        let (content, serial, crc) = match after_protocol.len().checked_sub(4) {
            Some(content_len) => match after_protocol.split_at(content_len) {
                (content, &[s0, s1, c0, c1]) => {
                    // The CRC covers the length field through the serial: bytes[2 .. end - 2].
                    let computed = crc_itu(bytes.get(2..end - 2).unwrap_or_default());
                    let carried = u16::from_be_bytes([c0, c1]);
                    let serial = u16::from_be_bytes([s0, s1]);
                    (content, Some(serial), Some((computed, carried)))
                }
                _ => (after_protocol, None, None),
            },
            None => (after_protocol, None, None),
        };
        Ok(Frame {
            long: hdr == 4,
            protocol,
            content,
            bare: after_protocol,
            serial,
            crc,
            declared,
            actual: counted.len(),
        })
    }

    /// The length field agrees with the bytes present.
    pub fn length_consistent(&self) -> bool {
        self.declared == self.actual
    }
}

/// Builds a frame around `content`: the header, the length field, `serial`, the CRC and the
/// trailer. Content too long for the short form is written in the long form.
pub(crate) fn build(long: bool, protocol: u8, content: &[u8], serial: u16) -> Vec<u8> {
    let counted = MIN_COUNTED + content.len();
    let short_len = u8::try_from(counted).ok().filter(|_| !long);
    let long_len = u16::try_from(counted).unwrap_or(u16::MAX);
    let mut out = Vec::with_capacity(counted + 6);
    match short_len {
        Some(len) => {
            out.extend_from_slice(&SHORT_START);
            out.push(len);
        }
        None => {
            out.extend_from_slice(&LONG_START);
            out.extend_from_slice(&long_len.to_be_bytes());
        }
    }
    out.push(protocol);
    out.extend_from_slice(content);
    out.extend_from_slice(&serial.to_be_bytes());
    let crc = crc_itu(&out[2..]);
    out.extend_from_slice(&crc.to_be_bytes());
    out.extend_from_slice(&TRAILER);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_matches_the_x25_check_value_and_a_captured_login() {
        assert_eq!(crc_itu(b"123456789"), 0x906e);
        // length 0d, proto 01, IMEI 0864717003283581, serial 0009 -> CRC 3f04
        let counted = [
            0x0d, 0x01, 0x08, 0x64, 0x71, 0x70, 0x03, 0x28, 0x35, 0x81, 0x00, 0x09,
        ];
        assert_eq!(crc_itu(&counted), 0x3f04);
    }

    #[test]
    fn splits_a_textbook_frame() {
        let bytes = [
            0x78, 0x78, // start
            0x05, // length: proto + serial + crc
            0x12, // proto
            0x00, 0x99, // serial
            0xab, 0xec, // crc
            0x0d, 0x0a, // trailer
        ];
        let f = Frame::split(&bytes).unwrap();
        assert!(!f.long);
        assert_eq!(f.protocol, 0x12);
        assert!(f.content.is_empty());
        assert_eq!(f.serial, Some(0x0099));
        assert!(f.length_consistent());
        let (computed, carried) = f.crc.unwrap();
        assert_eq!(carried, 0xabec);
        assert_eq!(computed, crc_itu(&bytes[2..6]));
    }

    #[test]
    fn a_frame_without_room_for_serial_and_crc_has_neither() {
        // 78 78 | 01 | 08 | 0d 0a: the length field counts only the protocol number
        let f = Frame::split(&[0x78, 0x78, 0x01, 0x08, 0x0d, 0x0a]).unwrap();
        assert_eq!(f.protocol, 0x08);
        assert_eq!(f.serial, None);
        assert_eq!(f.crc, None);
        assert!(f.length_consistent());
    }

    #[test]
    fn build_writes_length_serial_crc_and_trailer() {
        let frame = build(false, 0x01, &[], 0x0009);
        assert_eq!(
            frame,
            [0x78, 0x78, 0x05, 0x01, 0x00, 0x09, 0x55, 0x94, 0x0d, 0x0a]
        );
        let long = build(true, 0x97, &[0xaa], 0x0000);
        assert_eq!(&long[..5], &[0x79, 0x79, 0x00, 0x06, 0x97]);
        let f = Frame::split(&long).unwrap();
        assert!(f.long);
        assert_eq!(f.content, &[0xaa]);
        let (computed, carried) = f.crc.unwrap();
        assert_eq!(computed, carried);
    }

    #[test]
    fn rejects_bytes_without_a_marker() {
        assert!(matches!(
            Frame::split(&[0x24, 0x24, 0x00]),
            Err(DecodeError::NotThisProtocol { .. })
        ));
        assert!(matches!(
            Frame::split(&[0x78, 0x78, 0x05]),
            Err(DecodeError::Truncated { .. })
        ));
    }
}

//! The JT/T 808 message header (2013 and 2019 editions), the XOR check code, the 0x7e/0x7d
//! escaping and the terminal number.
//!
//! In: the un-escaped bytes between the two 0x7e flags. Out: a [`Header`] and the body slice.
//! This file knows nothing about message bodies and never allocates more than the terminal
//! number's few bytes.

use crate::error::DecodeError;
use crate::reader::{bcd_digits, Reader};

/// Frame flag that opens and closes every binary frame.
pub const FLAG: u8 = 0x7e;
/// Escape byte: `7d 01` stands for 0x7d and `7d 02` for 0x7e inside a frame.
pub const ESCAPE: u8 = 0x7d;

/// Body-properties bit that says a 2019 protocol-version byte follows.
pub const PROPS_2019: u16 = 1 << 14;
/// Body-properties bit that says the message is split into packets.
pub const PROPS_MULTI_PACKET: u16 = 1 << 13;
/// Body-properties bits 0..=9: the body length.
pub const PROPS_LENGTH_MASK: u16 = 0x03ff;
/// Largest body the 10-bit length field can declare.
pub const MAX_BODY_LEN: usize = PROPS_LENGTH_MASK as usize;

/// Vendor location report with a one-byte serial (answered with 0x4401).
pub const MSG_VENDOR_LOCATION: u16 = 0x5501;
/// Vendor blind-area location report with a one-byte serial.
pub const MSG_VENDOR_LOCATION_BLIND: u16 = 0x5502;

/// The edition of the header a device used; replies use the same one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Edition {
    /// JT/T 808-2013: 6-byte BCD terminal number, no version byte.
    V2013,
    /// JT/T 808-2019: version byte, 10-byte BCD terminal number.
    V2019 {
        /// The protocol-version byte the device sent (1 for the 2019 text).
        version: u8,
    },
}

impl Edition {
    /// Bytes of the terminal number in this edition.
    pub fn terminal_len(&self) -> usize {
        match self {
            Edition::V2013 => 6,
            Edition::V2019 { .. } => 10,
        }
    }
}

/// The raw terminal number (6 or 10 bytes), kept so replies can echo it byte for byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Terminal {
    bytes: [u8; 10],
    len: u8,
}

impl Terminal {
    /// Wraps the raw bytes; at most 10 are kept.
    pub fn from_bytes(raw: &[u8]) -> Self {
        let mut bytes = [0u8; 10];
        let len = raw.len().min(10);
        bytes[..len].copy_from_slice(&raw[..len]);
        Terminal {
            bytes,
            len: len as u8,
        }
    }

    /// The raw bytes as they were on the wire.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// The device identifier for this terminal number.
    ///
    /// Packed BCD (the standard) gives its digits with leading zeros removed, so the 2013
    /// number `012076463279` is `12076463279` and the 2019 number `00000866496077582164` is the
    /// IMEI `866496077582164`; an all-zero number stays `0`. Some devices put a binary IMEI in
    /// the field instead: bytes that are not BCD are read as a 48-bit big-endian number followed
    /// by its Luhn check digit.
    pub fn device_id(&self) -> String {
        let raw = self.as_bytes();
        match bcd_digits(raw, "terminal number") {
            Ok(digits) => {
                let trimmed = digits.trim_start_matches('0');
                if trimmed.is_empty() {
                    "0".to_owned()
                } else {
                    trimmed.to_owned()
                }
            }
            Err(_) => {
                let mut value: u64 = 0;
                for &b in raw.iter().take(6) {
                    value = (value << 8) | u64::from(b);
                }
                let mut id = value.to_string();
                id.push(char::from(b'0' + luhn_digit(&id)));
                id
            }
        }
    }
}

/// The Luhn check digit for a string of decimal digits.
pub fn luhn_digit(digits: &str) -> u8 {
    let mut sum = 0u32;
    for (i, c) in digits.bytes().rev().enumerate() {
        let mut d = u32::from(c.wrapping_sub(b'0') % 10);
        if i % 2 == 0 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    ((10 - sum % 10) % 10) as u8
}

/// A parsed message header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Message ID (0x0200 location report, ...).
    pub msg_id: u16,
    /// The raw body-properties word.
    pub props: u16,
    /// 2013 or 2019 layout.
    pub edition: Edition,
    /// Terminal number as sent.
    pub terminal: Terminal,
    /// The device's message serial (one byte on the wire for 0x5501/0x5502).
    pub serial: u16,
    /// `(total, index)` when the multi-packet bit is set; index counts from 1.
    pub packet: Option<(u16, u16)>,
}

impl Header {
    /// Body length declared in the properties word.
    pub fn body_len(&self) -> usize {
        usize::from(self.props & PROPS_LENGTH_MASK)
    }

    /// Encryption bits 10..=12 (0 = plain, bit 10 = RSA).
    pub fn encryption(&self) -> u16 {
        (self.props >> 10) & 0x7
    }

    /// Whether this is one of the vendor 0x5501/0x5502 reports with a one-byte serial.
    pub fn is_vendor_location(&self) -> bool {
        matches!(self.msg_id, MSG_VENDOR_LOCATION | MSG_VENDOR_LOCATION_BLIND)
    }

    /// Reads a header from the start of `r` (the byte after the opening flag).
    ///
    /// # Errors
    /// [`DecodeError::Truncated`] when the bytes end inside the header.
    pub fn read(r: &mut Reader<'_>) -> Result<Header, DecodeError> {
        let msg_id = r.u16("message id")?;
        let props = r.u16("body properties")?;
        let vendor = matches!(msg_id, MSG_VENDOR_LOCATION | MSG_VENDOR_LOCATION_BLIND);
        // The vendor reports use bits 10..=15 for their own purposes; only the standard
        // messages have a 2019 version byte and packet fields.
        let edition = if !vendor && props & PROPS_2019 != 0 {
            Edition::V2019 {
                version: r.u8("protocol version")?,
            }
        } else {
            Edition::V2013
        };
        let terminal = Terminal::from_bytes(r.take(edition.terminal_len(), "terminal number")?);
        let serial = if vendor {
            u16::from(r.u8("serial")?)
        } else {
            r.u16("serial")?
        };
        let packet = if !vendor && props & PROPS_MULTI_PACKET != 0 {
            Some((r.u16("packet total")?, r.u16("packet index")?))
        } else {
            None
        };
        Ok(Header {
            msg_id,
            props,
            edition,
            terminal,
            serial,
            packet,
        })
    }
}

/// XOR of all bytes: the check code of a frame (computed over header and body).
pub fn xor(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0, |acc, b| acc ^ b)
}

/// Escapes the bytes between the flags (0x7e → `7d 02`, 0x7d → `7d 01`) into `out`.
pub fn escape_into(bytes: &[u8], out: &mut Vec<u8>) {
    for &b in bytes {
        match b {
            FLAG => out.extend_from_slice(&[ESCAPE, 0x02]),
            ESCAPE => out.extend_from_slice(&[ESCAPE, 0x01]),
            _ => out.push(b),
        }
    }
}

/// Builds a whole frame: opening flag, escaped `content` (header and body) followed by its XOR,
/// closing flag.
pub fn wrap(content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 4);
    out.push(FLAG);
    escape_into(content, &mut out);
    escape_into(&[xor(content)], &mut out);
    out.push(FLAG);
    out
}

/// Writes a header for `msg_id` with `body_len` into `out`, in the given edition, echoing
/// `terminal`.
pub fn write_header(
    out: &mut Vec<u8>,
    msg_id: u16,
    edition: Edition,
    terminal: &[u8],
    serial: u16,
    body_len: usize,
) {
    let mut props = (body_len.min(MAX_BODY_LEN)) as u16;
    out.extend_from_slice(&msg_id.to_be_bytes());
    if let Edition::V2019 { version } = edition {
        props |= PROPS_2019;
        out.extend_from_slice(&props.to_be_bytes());
        out.push(version);
    } else {
        out.extend_from_slice(&props.to_be_bytes());
    }
    out.extend_from_slice(terminal);
    out.extend_from_slice(&serial.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_2013_header() {
        let bytes = [
            0x02, 0x00, // message id 0x0200
            0x00, 0x1c, // properties: body length 28
            0x01, 0x20, 0x76, 0x46, 0x32, 0x79, // terminal 012076463279
            0x00, 0x40, // serial 64
        ];
        let h = Header::read(&mut Reader::new(&bytes)).unwrap();
        assert_eq!(h.msg_id, 0x0200);
        assert_eq!(h.body_len(), 28);
        assert_eq!(h.edition, Edition::V2013);
        assert_eq!(h.terminal.device_id(), "12076463279");
        assert_eq!(h.serial, 0x40);
        assert_eq!(h.packet, None);
    }

    #[test]
    fn reads_a_2019_multi_packet_header() {
        let bytes = [
            0x07, 0x04, // message id 0x0704
            0x60, 0x10, // properties: 2019, multi-packet, body length 16
            0x01, // protocol version
            0x00, 0x00, 0x08, 0x66, 0x49, 0x60, 0x77, 0x58, 0x21, 0x64, // terminal
            0x00, 0x07, // serial
            0x00, 0x03, 0x00, 0x02, // packet 2 of 3
        ];
        let h = Header::read(&mut Reader::new(&bytes)).unwrap();
        assert_eq!(h.edition, Edition::V2019 { version: 1 });
        assert_eq!(h.terminal.device_id(), "866496077582164");
        assert_eq!(h.packet, Some((3, 2)));
        assert_eq!(h.body_len(), 16);
    }

    #[test]
    fn a_binary_terminal_number_is_read_as_an_imei_with_luhn_digit() {
        // 0x4f07788ef676 = 86893506000502, Luhn check digit 0.
        let t = Terminal::from_bytes(&[0x4f, 0x07, 0x78, 0x8e, 0xf6, 0x76]);
        assert_eq!(t.device_id(), "868935060005020");
        // The standard Luhn example: 7992739871 has check digit 3.
        assert_eq!(luhn_digit("7992739871"), 3);
    }

    #[test]
    fn wrap_escapes_flag_and_escape_bytes_including_the_check_code() {
        // content 30 7e 08 7d 55: XOR = 0x6e
        let framed = wrap(&[0x30, 0x7e, 0x08, 0x7d, 0x55]);
        assert_eq!(
            framed,
            [0x7e, 0x30, 0x7d, 0x02, 0x08, 0x7d, 0x01, 0x55, 0x6e, 0x7e]
        );
    }
}

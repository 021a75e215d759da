//! A bounds-checked cursor over one frame's bytes, shared by the binary decoders.
//!
//! Every read either returns the value or a [`DecodeError::Truncated`] naming the field, so a
//! short frame never panics and the error says which field ran out.

use crate::error::DecodeError;

/// Reads big-endian integers and BCD fields from a byte slice.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, pos: 0 }
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    /// Offset of the next byte to read.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// The unread bytes, without consuming them.
    pub fn rest(&self) -> &'a [u8] {
        &self.bytes[self.pos..]
    }

    /// Takes the next `n` bytes.
    ///
    /// # Errors
    /// [`DecodeError::Truncated`] when fewer than `n` bytes remain.
    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.remaining() < n {
            return Err(DecodeError::Truncated {
                what,
                needed: n,
                available: self.remaining(),
            });
        }
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    /// Skips `n` bytes.
    ///
    /// # Errors
    /// [`DecodeError::Truncated`] when fewer than `n` bytes remain.
    pub fn skip(&mut self, n: usize, what: &'static str) -> Result<(), DecodeError> {
        self.take(n, what).map(|_| ())
    }

    /// Reads one byte.
    ///
    /// # Errors
    /// [`DecodeError::Truncated`] at the end of the frame.
    pub fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(1, what)?[0])
    }

    /// Reads a big-endian u16.
    ///
    /// # Errors
    /// [`DecodeError::Truncated`] when fewer than 2 bytes remain.
    pub fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// Reads a big-endian 24-bit unsigned integer.
    ///
    /// # Errors
    /// [`DecodeError::Truncated`] when fewer than 3 bytes remain.
    pub fn u24(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        let b = self.take(3, what)?;
        Ok(u32::from_be_bytes([0, b[0], b[1], b[2]]))
    }

    /// Reads a big-endian u32.
    ///
    /// # Errors
    /// [`DecodeError::Truncated`] when fewer than 4 bytes remain.
    pub fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Reads a big-endian u64.
    ///
    /// # Errors
    /// [`DecodeError::Truncated`] when fewer than 8 bytes remain.
    pub fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    /// Reads `n` bytes of packed BCD as a digit string (two digits per byte, high nibble first).
    ///
    /// # Errors
    /// [`DecodeError::Truncated`] when fewer than `n` bytes remain; [`DecodeError::InvalidField`]
    /// when a nibble is above 9.
    pub fn bcd_string(&mut self, n: usize, what: &'static str) -> Result<String, DecodeError> {
        bcd_digits(self.take(n, what)?, what)
    }

    /// Reads one BCD byte as a number 0..=99.
    ///
    /// # Errors
    /// As [`Reader::bcd_string`].
    pub fn bcd_u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        let b = self.u8(what)?;
        bcd_byte(b, what)
    }
}

/// Packed BCD bytes as a digit string.
///
/// # Errors
/// [`DecodeError::InvalidField`] when a nibble is above 9.
pub fn bcd_digits(bytes: &[u8], what: &'static str) -> Result<String, DecodeError> {
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        for nibble in [b >> 4, b & 0x0f] {
            if nibble > 9 {
                return Err(DecodeError::invalid(
                    what,
                    format!("{b:#04x} is not packed BCD"),
                ));
            }
            s.push(char::from(b'0' + nibble));
        }
    }
    Ok(s)
}

/// One packed BCD byte as 0..=99.
///
/// # Errors
/// [`DecodeError::InvalidField`] when a nibble is above 9.
pub fn bcd_byte(b: u8, what: &'static str) -> Result<u8, DecodeError> {
    let (hi, lo) = (b >> 4, b & 0x0f);
    if hi > 9 || lo > 9 {
        return Err(DecodeError::invalid(
            what,
            format!("{b:#04x} is not packed BCD"),
        ));
    }
    Ok(hi * 10 + lo)
}

/// Packs a digit string into BCD, left-padding with a zero nibble to a whole number of bytes
/// (`len` bytes when given). Non-digits are written as 0. Used by encoders.
pub fn bcd_encode(digits: &str, len: usize) -> Vec<u8> {
    let mut nibbles: Vec<u8> = digits
        .bytes()
        .map(|c| if c.is_ascii_digit() { c - b'0' } else { 0 })
        .collect();
    while nibbles.len() < len * 2 {
        nibbles.insert(0, 0);
    }
    let skip = nibbles.len() - len * 2;
    nibbles[skip..]
        .chunks(2)
        .map(|pair| (pair[0] << 4) | pair[1])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_big_endian_fields_and_reports_the_short_one() {
        let mut r = Reader::new(&[0x01, 0x02, 0x03, 0x04, 0x05]);
        assert_eq!(r.u16("a").unwrap(), 0x0102);
        assert_eq!(r.u24("b").unwrap(), 0x030405);
        let err = r.u8("serial").unwrap_err();
        assert_eq!(
            err,
            DecodeError::Truncated {
                what: "serial",
                needed: 1,
                available: 0
            }
        );
    }

    #[test]
    fn bcd_round_trips_and_rejects_hex_nibbles() {
        assert_eq!(
            bcd_encode("864717003283581", 8),
            vec![0x08, 0x64, 0x71, 0x70, 0x03, 0x28, 0x35, 0x81]
        );
        assert_eq!(bcd_digits(&[0x08, 0x64], "id").unwrap(), "0864");
        assert!(bcd_digits(&[0x1a], "id").is_err());
        assert_eq!(bcd_byte(0x59, "t").unwrap(), 59);
    }
}

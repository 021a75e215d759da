//! Finds frames in the byte stream: `7e … 7e` binary frames, un-escaped here, and the
//! parenthesised ASCII messages some e-locks send on the same port.
//!
//! In: the connection's buffer. Out: a [`Found`] telling the caller how many bytes to remove
//! and what they were. The framer never removes bytes itself, so the session can keep a
//! frame's closing flag when the frame turns out to be bad (it may really be the next frame's
//! opening flag). It remembers how far it has searched so byte-at-a-time input is not searched
//! again from the start.

use super::header::{ESCAPE, FLAG};
use crate::error::{DecodeError, FrameError};

/// Opening byte of an ASCII message.
pub const ASCII_OPEN: u8 = b'(';
/// Closing byte of an ASCII message.
pub const ASCII_CLOSE: u8 = b')';

/// What the front of the buffer holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Found {
    /// A whole frame of `len` bytes on the wire; `bytes` is it un-escaped, flags included (or
    /// the ASCII message as is).
    Frame {
        /// The frame, un-escaped.
        bytes: Vec<u8>,
        /// Bytes it occupies in the buffer.
        len: usize,
    },
    /// `len` bytes before the next frame start (or all of them when there is none).
    Garbage {
        /// Bytes to discard.
        len: usize,
    },
    /// A delimited frame with an invalid escape sequence; discard `len` bytes (up to, not
    /// including, its closing flag).
    Invalid {
        /// Bytes to discard.
        len: usize,
        /// What was wrong.
        error: DecodeError,
    },
}

/// Frame finder for one connection.
#[derive(Debug, Clone)]
pub struct Framer {
    max_len: usize,
    searched: usize,
}

impl Framer {
    /// A framer refusing frames longer than `max_len` bytes on the wire (escaped, with flags).
    pub fn new(max_len: usize) -> Self {
        Framer {
            max_len: max_len.max(2),
            searched: 0,
        }
    }

    /// Looks at the front of `buf`. `Ok(None)` means more bytes are needed. After `Some`, the
    /// caller removes the stated number of bytes (or, for a rejected frame, one fewer) before
    /// calling again; after `None` it only appends.
    ///
    /// # Errors
    /// [`FrameError::Oversize`] when no frame end is found within the maximum frame length.
    pub fn next(&mut self, buf: &[u8]) -> Result<Option<Found>, FrameError> {
        let found = self.scan(buf);
        match &found {
            Ok(None) => self.searched = buf.len(),
            _ => self.searched = 0,
        }
        found
    }

    fn scan(&self, buf: &[u8]) -> Result<Option<Found>, FrameError> {
        let Some(&first) = buf.first() else {
            return Ok(None);
        };
        match first {
            FLAG => self.scan_binary(buf),
            ASCII_OPEN => self.scan_ascii(buf),
            _ => {
                let len = buf
                    .iter()
                    .position(|&b| b == FLAG || b == ASCII_OPEN)
                    .unwrap_or(buf.len());
                Ok(Some(Found::Garbage { len }))
            }
        }
    }

    fn scan_binary(&self, buf: &[u8]) -> Result<Option<Found>, FrameError> {
        let from = self.searched.max(1);
        let limit = buf.len().min(self.max_len);
        let close = buf
            .get(from..limit)
            .and_then(|s| s.iter().position(|&b| b == FLAG))
            .map(|i| i + from);
        let Some(end) = close else {
            if buf.len() >= self.max_len {
                return Err(FrameError::Oversize {
                    size: buf.len(),
                    max: self.max_len,
                });
            }
            return Ok(None);
        };
        if end == 1 {
            // `7e 7e`: the first flag closed an earlier frame; start again at the second.
            return Ok(Some(Found::Garbage { len: 1 }));
        }
        match unescape(&buf[..=end]) {
            Ok(bytes) => Ok(Some(Found::Frame {
                bytes,
                len: end + 1,
            })),
            Err(error) => Ok(Some(Found::Invalid { len: end, error })),
        }
    }

    fn scan_ascii(&self, buf: &[u8]) -> Result<Option<Found>, FrameError> {
        let from = self.searched.max(1);
        let limit = buf.len().min(self.max_len);
        for (i, &b) in buf.iter().enumerate().take(limit).skip(from) {
            if b == ASCII_CLOSE {
                return Ok(Some(Found::Frame {
                    bytes: buf[..=i].to_vec(),
                    len: i + 1,
                }));
            }
            if b == FLAG || !(0x20..0x7f).contains(&b) {
                // Not text after all: drop the '(' and what followed it, resynchronise here.
                return Ok(Some(Found::Garbage { len: i }));
            }
        }
        if buf.len() >= self.max_len {
            return Err(FrameError::Oversize {
                size: buf.len(),
                max: self.max_len,
            });
        }
        Ok(None)
    }
}

/// Reverses the escaping of one frame (flags included): `7d 01` → 0x7d, `7d 02` → 0x7e.
///
/// # Errors
/// [`DecodeError::InvalidField`] for a 0x7d followed by anything else.
pub fn unescape(frame: &[u8]) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::with_capacity(frame.len());
    let mut bytes = frame.iter();
    while let Some(&b) = bytes.next() {
        if b != ESCAPE {
            out.push(b);
            continue;
        }
        match bytes.next() {
            Some(0x01) => out.push(ESCAPE),
            Some(0x02) => out.push(FLAG),
            other => {
                return Err(DecodeError::invalid(
                    "escape",
                    format!("0x7d followed by {other:02x?}"),
                ))
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn un_escapes_a_frame() {
        let mut f = Framer::new(64);
        let found = f
            .next(&[
                0x7e, // flag
                0x30, 0x7d, 0x02, // 0x30, escaped 0x7e
                0x08, 0x7d, 0x01, // 0x08, escaped 0x7d
                0x55, 0x7e, // check code, flag
            ])
            .unwrap();
        assert_eq!(
            found,
            Some(Found::Frame {
                bytes: vec![0x7e, 0x30, 0x7e, 0x08, 0x7d, 0x55, 0x7e],
                len: 9
            })
        );
    }

    #[test]
    fn garbage_runs_to_the_next_start() {
        let mut f = Framer::new(64);
        assert_eq!(
            f.next(&[0x24, 0x24, 0x7e, 0x30]).unwrap(),
            Some(Found::Garbage { len: 2 })
        );
        assert_eq!(
            f.next(&[0x7e, 0x7e, 0x01]).unwrap(),
            Some(Found::Garbage { len: 1 })
        );
    }

    #[test]
    fn waits_then_refuses_oversize() {
        let mut f = Framer::new(8);
        assert_eq!(f.next(&[0x7e, 1, 2, 3]).unwrap(), None);
        assert!(matches!(
            f.next(&[0x7e, 1, 2, 3, 4, 5, 6, 7]),
            Err(FrameError::Oversize { size: 8, max: 8 })
        ));
    }

    #[test]
    fn a_bad_escape_is_invalid_and_keeps_the_closing_flag() {
        let mut f = Framer::new(64);
        let found = f.next(&[0x7e, 0x7d, 0x03, 0x7e]).unwrap();
        assert!(matches!(found, Some(Found::Invalid { len: 3, .. })));
    }

    #[test]
    fn ascii_messages_are_cut_at_the_parenthesis() {
        let mut f = Framer::new(64);
        assert_eq!(f.next(b"(12,BASE").unwrap(), None);
        assert_eq!(
            f.next(b"(12,BASE)x").unwrap(),
            Some(Found::Frame {
                bytes: b"(12,BASE)".to_vec(),
                len: 9
            })
        );
        // A '(' in binary garbage is dropped at the first non-text byte.
        let mut f = Framer::new(64);
        assert_eq!(f.next(b"(1\x7e").unwrap(), Some(Found::Garbage { len: 2 }));
    }
}

//! Cuts H02 frames out of a connection's byte stream. Text and binary frames may alternate on
//! one connection.
//!
//! - **Text** starts at `*` and ends at the first `#`; CR/LF bytes after it are dropped with the
//!   frame. A `*` met before the `#` means the frame was cut short (a device reset mid-sentence):
//!   the bytes before it are skipped as [`DecodeError::Truncated`] and the new `*` starts the next
//!   frame. No `#` within the maximum frame size (1024 bytes unless configured) is
//!   [`FrameError::Oversize`]: the connection is closed rather than the buffer grown.
//! - **Binary** starts at `$` and has a fixed size per connection: 32 bytes, 45 (long variant)
//!   or 42 (15-digit ID). The size is learnt at the connection's first `$` record and kept; see
//!   [`Splitter`]. A 32-byte record starting with `X` is cut where a frame is expected.
//! - **Anything else** is garbage: skipped up to the next `*` or `$` and reported as one
//!   [`DecodeError::Garbage`]. A run of garbage with no start marker in it is held until a marker
//!   arrives or it reaches the maximum frame size, so the items do not depend on how the bytes
//!   were split into reads.
//! - CR/LF where a frame should start is dropped silently.
//!
//! In: the connection buffer. Out: one [`Split`] per call, its bytes removed from the buffer.
//! This file never decodes a frame's content.

use bytes::{Bytes, BytesMut};

use crate::error::{DecodeError, FrameError};

/// Largest text frame, in bytes, unless the listener configures another.
pub const DEFAULT_MAX_FRAME_LEN: usize = 1024;

/// The common binary record size.
pub const SHORT_RECORD_LEN: usize = 32;

/// Binary record size of the variant with an 8-byte (15-digit) device ID.
pub const LONG_ID_RECORD_LEN: usize = 42;

/// Binary record size of the long variant.
pub const LONG_RECORD_LEN: usize = 45;

/// What the splitter found at the front of the buffer.
#[derive(Debug, Clone, PartialEq)]
pub enum Split {
    /// One whole frame: a text sentence from `*` through `#`, or a binary record.
    Frame(Bytes),
    /// Bytes that could not be a frame were discarded (garbage, or a text frame cut short).
    Skipped(DecodeError),
}

/// Per-connection framing state: the limits and the binary record size once learnt.
#[derive(Debug, Clone)]
pub(super) struct Splitter {
    max: usize,
    record_len: Option<usize>,
}

impl Splitter {
    /// A splitter with the given maximum frame size.
    pub fn new(max: usize) -> Self {
        Splitter {
            max,
            record_len: None,
        }
    }

    /// Fixes the binary record size instead of learning it.
    pub fn set_record_len(&mut self, len: usize) {
        self.record_len = Some(len);
    }

    /// The binary record size, once known.
    pub fn record_len(&self) -> Option<usize> {
        self.record_len
    }

    /// Cuts the next frame from the front of `buf`.
    ///
    /// `Ok(None)` asks for more bytes (it may still have dropped CR/LF); an item always removes at
    /// least one byte.
    ///
    /// # Errors
    /// [`FrameError::Oversize`] when a text frame has no `#` within the maximum size, or a binary
    /// record is larger than the maximum.
    pub fn next_frame(&mut self, buf: &mut BytesMut) -> Result<Option<Split>, FrameError> {
        let filler = buf
            .iter()
            .take_while(|b| matches!(b, b'\r' | b'\n'))
            .count();
        if filler > 0 {
            let _ = buf.split_to(filler);
        }
        match buf.first() {
            None => Ok(None),
            Some(b'*') => self.text(buf),
            Some(b'$') => {
                let Some(len) = self.record_len.or_else(|| learn_record_len(buf)) else {
                    return Ok(None);
                };
                self.record_len = Some(len);
                self.fixed(buf, len)
            }
            Some(b'X') => self.fixed(buf, SHORT_RECORD_LEN),
            Some(_) => Ok(self.garbage(buf)),
        }
    }

    fn text(&self, buf: &mut BytesMut) -> Result<Option<Split>, FrameError> {
        let window = buf.get(1..buf.len().min(self.max)).unwrap_or_default();
        match window.iter().position(|b| matches!(b, b'#' | b'*')) {
            Some(i) if window.get(i) == Some(&b'#') => {
                let frame = buf.split_to(i + 2).freeze();
                let trailer = buf
                    .iter()
                    .take_while(|b| matches!(b, b'\r' | b'\n'))
                    .count();
                let _ = buf.split_to(trailer);
                Ok(Some(Split::Frame(frame)))
            }
            Some(i) => {
                let _ = buf.split_to(i + 1);
                Ok(Some(Split::Skipped(DecodeError::Truncated {
                    what: "text frame (a new '*' came before '#')",
                    needed: i + 2,
                    available: i + 1,
                })))
            }
            None if buf.len() >= self.max => Err(FrameError::Oversize {
                size: buf.len(),
                max: self.max,
            }),
            None => Ok(None),
        }
    }

    fn fixed(&self, buf: &mut BytesMut, len: usize) -> Result<Option<Split>, FrameError> {
        if len > self.max {
            return Err(FrameError::Oversize {
                size: len,
                max: self.max,
            });
        }
        if buf.len() < len {
            buf.reserve(len - buf.len());
            return Ok(None);
        }
        Ok(Some(Split::Frame(buf.split_to(len).freeze())))
    }

    fn garbage(&self, buf: &mut BytesMut) -> Option<Split> {
        let skipped = match buf.iter().position(|b| matches!(b, b'*' | b'$')) {
            Some(at) => at,
            None if buf.len() >= self.max => buf.len(),
            None => return None,
        };
        let _ = buf.split_to(skipped);
        Some(Split::Skipped(DecodeError::Garbage { skipped }))
    }
}

/// The record size for a connection whose first `$` record is at the front of `buf`, or `None`
/// to wait for more bytes. In order:
/// 1. another record of the same device (`$` and the same ID bytes) or a text header (`*XX,`)
///    right after 32, 42 or 45 bytes decides;
/// 2. otherwise a read that holds exactly 32, 42 or 45 bytes is one record of that size (what the
///    reference splitter does: it picks 45 only when the first read is exactly 45 bytes);
/// 3. otherwise any frame start byte right after 32, 42 or 45 bytes decides;
/// 4. otherwise wait while fewer than 45 bytes are buffered, then fall back to 32.
fn learn_record_len(buf: &[u8]) -> Option<usize> {
    const CANDIDATES: [usize; 3] = [SHORT_RECORD_LEN, LONG_ID_RECORD_LEN, LONG_RECORD_LEN];
    let n = buf.len();
    if n < SHORT_RECORD_LEN {
        return None;
    }
    let same_device = |at: usize| {
        let next = buf.get(at + 1..at + 6);
        buf.get(at) == Some(&b'$') && next.is_some() && next == buf.get(1..6)
    };
    let text_header = |at: usize| buf.get(at) == Some(&b'*') && buf.get(at + 3) == Some(&b',');
    if let Some(len) = CANDIDATES
        .into_iter()
        .find(|&len| same_device(len) || text_header(len))
    {
        return Some(len);
    }
    if CANDIDATES.contains(&n) {
        return Some(n);
    }
    if let Some(len) = CANDIDATES
        .into_iter()
        .find(|&len| matches!(buf.get(len), Some(b'$' | b'*' | b'X')))
    {
        return Some(len);
    }
    (n > LONG_RECORD_LEN).then_some(SHORT_RECORD_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHORT: &str = "2441060116601245431311165035313006004318210e000000fffffbffff0024";
    const LONG: &str = "24410600082621532131081504419390060740418306000000fffffbfdff0015060000002c02dc0c000000001f";

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// Everything the splitter yields for `input` fed whole, until it asks for more.
    fn split_all(splitter: &mut Splitter, input: &[u8]) -> (Vec<Split>, usize) {
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        while let Some(item) = splitter.next_frame(&mut buf).unwrap() {
            out.push(item);
        }
        (out, buf.len())
    }

    fn frame(bytes: &[u8]) -> Split {
        Split::Frame(Bytes::copy_from_slice(bytes))
    }

    #[test]
    fn text_ends_at_hash_and_drops_crlf() {
        let mut s = Splitter::new(DEFAULT_MAX_FRAME_LEN);
        let (items, left) = split_all(&mut s, b"*HQ,1,V1#\r\n*HQ,1,V0#\n");
        assert_eq!(items, [frame(b"*HQ,1,V1#"), frame(b"*HQ,1,V0#")]);
        assert_eq!(left, 0);
    }

    #[test]
    fn partial_text_waits() {
        let mut s = Splitter::new(DEFAULT_MAX_FRAME_LEN);
        let mut buf = BytesMut::from(&b"*HQ,1,V1,12"[..]);
        assert_eq!(s.next_frame(&mut buf).unwrap(), None);
        assert_eq!(buf.len(), 11);
        buf.extend_from_slice(b"3456#");
        assert_eq!(
            s.next_frame(&mut buf).unwrap(),
            Some(frame(b"*HQ,1,V1,123456#"))
        );
    }

    #[test]
    fn garbage_is_skipped_to_the_next_marker() {
        let mut s = Splitter::new(DEFAULT_MAX_FRAME_LEN);
        let (items, _) = split_all(&mut s, b"junk*HQ,1,V0#");
        assert_eq!(
            items,
            [
                Split::Skipped(DecodeError::Garbage { skipped: 4 }),
                frame(b"*HQ,1,V0#")
            ]
        );
    }

    #[test]
    fn garbage_without_marker_is_held_up_to_the_maximum() {
        let mut s = Splitter::new(16);
        let mut buf = BytesMut::from(&b"0123456789"[..]);
        assert_eq!(s.next_frame(&mut buf).unwrap(), None);
        buf.extend_from_slice(b"abcdef");
        assert_eq!(
            s.next_frame(&mut buf).unwrap(),
            Some(Split::Skipped(DecodeError::Garbage { skipped: 16 }))
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn a_new_star_before_hash_cuts_the_truncated_frame() {
        let mut s = Splitter::new(DEFAULT_MAX_FRAME_LEN);
        let (items, _) = split_all(&mut s, b"*HQ,1,V1,12*HQ,1,V0#");
        assert!(matches!(
            items[0],
            Split::Skipped(DecodeError::Truncated { available: 11, .. })
        ));
        assert_eq!(items[1], frame(b"*HQ,1,V0#"));
    }

    #[test]
    fn text_without_hash_is_oversize_at_the_maximum() {
        let mut s = Splitter::new(16);
        let mut buf = BytesMut::from(&b"*HQ,1,V1,1234"[..]);
        assert_eq!(s.next_frame(&mut buf).unwrap(), None);
        buf.extend_from_slice(b"567");
        assert_eq!(
            s.next_frame(&mut buf),
            Err(FrameError::Oversize { size: 16, max: 16 })
        );
        // A frame of exactly the maximum passes.
        let mut buf = BytesMut::from(&b"*HQ,1,V1,123456#"[..]);
        assert!(matches!(s.next_frame(&mut buf), Ok(Some(Split::Frame(_)))));
    }

    #[test]
    fn binary_size_learnt_from_an_exact_read_and_kept() {
        let mut s = Splitter::new(DEFAULT_MAX_FRAME_LEN);
        let (items, _) = split_all(&mut s, &hex(LONG));
        assert_eq!(items, [frame(&hex(LONG))]);
        assert_eq!(s.record_len(), Some(LONG_RECORD_LEN));
        // Two long records in one read are still cut at 45.
        let two = [hex(LONG), hex(LONG)].concat();
        let (items, _) = split_all(&mut s, &two);
        assert_eq!(items.len(), 2);
    }

    #[test]
    fn binary_size_learnt_from_the_next_record() {
        // Two long records in the first read: the second '$' with the same ID sits at 45.
        let mut s = Splitter::new(DEFAULT_MAX_FRAME_LEN);
        let two = [hex(LONG), hex(LONG)].concat();
        let (items, _) = split_all(&mut s, &two);
        assert_eq!(items, [frame(&hex(LONG)), frame(&hex(LONG))]);
        // A short record followed by text.
        let mut s = Splitter::new(DEFAULT_MAX_FRAME_LEN);
        let mixed = [hex(SHORT), b"*HQ,1,V0#".to_vec()].concat();
        let (items, _) = split_all(&mut s, &mixed);
        assert_eq!(items, [frame(&hex(SHORT)), frame(b"*HQ,1,V0#")]);
        assert_eq!(s.record_len(), Some(SHORT_RECORD_LEN));
    }

    #[test]
    fn binary_waits_for_a_whole_record() {
        let mut s = Splitter::new(DEFAULT_MAX_FRAME_LEN);
        let short = hex(SHORT);
        let mut buf = BytesMut::from(&short[..20]);
        assert_eq!(s.next_frame(&mut buf).unwrap(), None);
        buf.extend_from_slice(&short[20..]);
        assert_eq!(s.next_frame(&mut buf).unwrap(), Some(frame(&short)));
        // Once learnt, a partial record reserves the rest.
        let mut buf = BytesMut::from(&short[..10]);
        assert_eq!(s.next_frame(&mut buf).unwrap(), None);
        assert!(buf.capacity() >= SHORT_RECORD_LEN);
    }

    #[test]
    fn unclear_first_record_waits_then_falls_back_to_32() {
        let mut s = Splitter::new(DEFAULT_MAX_FRAME_LEN);
        let long = hex(LONG);
        let mut buf = BytesMut::from(&long[..40]);
        assert_eq!(s.next_frame(&mut buf).unwrap(), None);
        assert_eq!(s.record_len(), None);
        buf.extend_from_slice(&long[40..]);
        buf.extend_from_slice(b"\x00\x00");
        assert_eq!(s.next_frame(&mut buf).unwrap(), Some(frame(&long[..32])));
        assert_eq!(s.record_len(), Some(SHORT_RECORD_LEN));
    }

    #[test]
    fn x_record_is_32_bytes() {
        let mut s = Splitter::new(DEFAULT_MAX_FRAME_LEN);
        let x = hex("5800009814991024031101175540227006012321670c000095fffffbffff0033");
        let (items, _) = split_all(&mut s, &x);
        assert_eq!(items, [frame(&x)]);
    }

    #[test]
    fn record_larger_than_the_maximum_is_oversize() {
        let mut s = Splitter::new(40);
        let mut buf = BytesMut::from(&hex(LONG)[..]);
        assert_eq!(
            s.next_frame(&mut buf),
            Err(FrameError::Oversize { size: 45, max: 40 })
        );
    }

    #[test]
    fn lone_crlf_is_dropped_without_an_item() {
        let mut s = Splitter::new(DEFAULT_MAX_FRAME_LEN);
        let mut buf = BytesMut::from(&b"\r\n"[..]);
        assert_eq!(s.next_frame(&mut buf).unwrap(), None);
        assert!(buf.is_empty());
    }
}

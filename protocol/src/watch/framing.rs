//! Cuts watch frames out of a TCP byte stream.
//!
//! In: the connection's receive buffer. Out: where the next frame ends (or how many bytes of
//! garbage come first). It never looks inside a frame beyond the brackets and the start of a
//! header, and it never holds more than the maximum frame size.
//!
//! A frame runs from `[` to the `]` that brings the bracket depth back to zero, so an SSID such as
//! `[LG_Wall-Mount A/C]` inside a frame is harmless. Binary payloads (voice, images) are escaped
//! by the device (`7d 01..05` for `} [ ] , *`), so raw brackets in them do not occur.
//!
//! One addition to plain bracket counting: a `[` inside an open frame that is followed by what
//! looks like a frame header (two letters or digits, `*`, then a letter or digit, e.g. `[3G*8`)
//! means the open frame was cut short (the device reset or the line dropped bytes). The open
//! frame is then given up as truncated and the new one is read normally, instead of swallowing
//! every later frame until the size limit closes the connection.

use crate::FrameError;

/// What the framer found at the front of the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// No complete frame yet; read more bytes.
    Incomplete,
    /// The first `n` bytes are line breaks or blanks between frames; drop them without counting.
    Blank(usize),
    /// The first `n` bytes come before any frame start; drop and count them.
    Garbage(usize),
    /// The frame opened at offset 0 never closed: another frame header starts at offset `n`.
    Truncated(usize),
    /// A whole frame, still escaped, occupies the first `n` bytes.
    Frame(usize),
}

/// Incremental bracket-counting splitter.
///
/// It remembers how far it has scanned the frame being received, so a large frame arriving in
/// small pieces is scanned once, not once per piece. Feed it the same growing buffer each time
/// (bytes only appended at the end, and removed from the front only as the returned [`Cut`]
/// says).
#[derive(Debug, Clone)]
pub struct Framer {
    max_frame_len: usize,
    /// Bytes of the open frame already scanned (0 when no frame is open).
    scanned: usize,
    /// Bracket depth after `scanned` bytes.
    depth: usize,
}

impl Framer {
    /// A framer that refuses frames longer than `max_frame_len` bytes (escaped, with brackets).
    pub fn new(max_frame_len: usize) -> Self {
        Framer {
            max_frame_len,
            scanned: 0,
            depth: 0,
        }
    }

    /// The largest frame accepted, in bytes.
    pub fn max_frame_len(&self) -> usize {
        self.max_frame_len
    }

    /// Finds the next cut at the front of `buf`. The caller removes the bytes the cut names
    /// (nothing for [`Cut::Incomplete`]) before calling again.
    ///
    /// # Errors
    /// [`FrameError::Oversize`] when the open frame has reached the maximum size without closing.
    pub fn next_cut(&mut self, buf: &[u8]) -> Result<Cut, FrameError> {
        let Some(&first) = buf.first() else {
            self.reset();
            return Ok(Cut::Incomplete);
        };
        if first != b'[' {
            self.reset();
            let start = buf.iter().position(|&b| b == b'[').unwrap_or(buf.len());
            let blanks = buf.iter().take(start).take_while(|b| is_blank(**b)).count();
            return Ok(if blanks > 0 {
                Cut::Blank(blanks)
            } else {
                Cut::Garbage(start)
            });
        }
        if self.scanned == 0 || self.scanned > buf.len() {
            self.scanned = 1;
            self.depth = 1;
        }
        let mut i = self.scanned;
        while let Some(&b) = buf.get(i) {
            if i >= self.max_frame_len {
                self.reset();
                return Err(FrameError::Oversize {
                    size: buf.len(),
                    max: self.max_frame_len,
                });
            }
            match b {
                b'[' => match header_start(buf.get(i + 1..).unwrap_or_default()) {
                    Some(true) => {
                        self.reset();
                        return Ok(Cut::Truncated(i));
                    }
                    // Not enough bytes to tell; never wait beyond the size limit for them.
                    None if buf.len() > self.max_frame_len => {
                        self.reset();
                        return Ok(Cut::Truncated(i));
                    }
                    None => {
                        self.scanned = i;
                        return Ok(Cut::Incomplete);
                    }
                    Some(false) => self.depth = self.depth.saturating_add(1),
                },
                b']' => {
                    self.depth = self.depth.saturating_sub(1);
                    if self.depth == 0 {
                        self.reset();
                        return Ok(Cut::Frame(i + 1));
                    }
                }
                _ => {}
            }
            i += 1;
        }
        self.scanned = buf.len();
        Ok(Cut::Incomplete)
    }

    fn reset(&mut self) {
        self.scanned = 0;
        self.depth = 0;
    }
}

/// Bytes skipped silently between frames (some devices end each frame with a line break).
fn is_blank(b: u8) -> bool {
    matches!(b, b'\r' | b'\n' | b' ' | b'\t')
}

/// Whether the bytes after a `[` start a frame header (`XX*` then an ID character):
/// `Some(true)` yes, `Some(false)` no, `None` too few bytes to tell.
fn header_start(rest: &[u8]) -> Option<bool> {
    for (k, &b) in rest.iter().take(4).enumerate() {
        let ok = if k == 2 {
            b == b'*'
        } else {
            b.is_ascii_alphanumeric()
        };
        if !ok {
            return Some(false);
        }
    }
    (rest.len() >= 4).then_some(true)
}

/// Undoes the device's escaping: `7d 01` → `}`, `7d 02` → `[`, `7d 03` → `]`, `7d 04` → `,`,
/// `7d 05` → `*`. A `}` followed by anything else is kept as it is.
pub fn unescape(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        let mapped = match (b, raw.get(i + 1)) {
            (b'}', Some(0x01)) => Some(b'}'),
            (b'}', Some(0x02)) => Some(b'['),
            (b'}', Some(0x03)) => Some(b']'),
            (b'}', Some(0x04)) => Some(b','),
            (b'}', Some(0x05)) => Some(b'*'),
            _ => None,
        };
        match mapped {
            Some(m) => {
                out.push(m);
                i += 2;
            }
            None => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// Escapes every byte of `payload` that would break framing or field splitting
/// (`} [ ] , *`), the way devices send binary payloads.
pub fn escape(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len());
    for &b in payload {
        match b {
            b'}' => out.extend_from_slice(&[b'}', 0x01]),
            b'[' => out.extend_from_slice(&[b'}', 0x02]),
            b']' => out.extend_from_slice(&[b'}', 0x03]),
            b',' => out.extend_from_slice(&[b'}', 0x04]),
            b'*' => out.extend_from_slice(&[b'}', 0x05]),
            _ => out.push(b),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cut(buf: &[u8]) -> Cut {
        Framer::new(64).next_cut(buf).unwrap()
    }

    #[test]
    fn cuts_a_simple_frame() {
        let stream = b"[3G*1234567890*0002*LK][3G*";
        assert_eq!(cut(stream), Cut::Frame(23));
    }

    #[test]
    fn nested_brackets_stay_inside_the_frame() {
        // SSID "[AP]" inside a UD body
        let stream = b"[3G*1*0005*UD,[AP]]";
        assert_eq!(cut(stream), Cut::Frame(stream.len()));
    }

    #[test]
    fn garbage_and_blanks_before_a_frame() {
        assert_eq!(cut(b"xy[3G*"), Cut::Garbage(2));
        assert_eq!(cut(b"\r\n[3G*"), Cut::Blank(2));
        assert_eq!(cut(b"\r\nxy[3G*"), Cut::Blank(2));
        assert_eq!(cut(b"no start at all"), Cut::Garbage(15));
        assert_eq!(cut(b""), Cut::Incomplete);
    }

    #[test]
    fn new_header_inside_an_open_frame_truncates_it() {
        // "[3G*1*0009*LK,0," cut short, then a whole LK frame
        let stream = b"[3G*1*0009*LK,0,[3G*1*0002*LK]";
        assert_eq!(cut(stream), Cut::Truncated(16));
        // a '[' that is not a header start is nesting
        assert_eq!(cut(b"[3G*1*0004*UD,[x]]"), Cut::Frame(18));
        // too few bytes after '[' to tell: wait
        assert_eq!(cut(b"[3G*1*0004*UD,[3G"), Cut::Incomplete);
    }

    #[test]
    fn oversize_frame_is_an_error() {
        let mut framer = Framer::new(8);
        assert_eq!(framer.next_cut(b"[3G*1*00").unwrap(), Cut::Incomplete);
        assert!(matches!(
            framer.next_cut(b"[3G*1*000"),
            Err(FrameError::Oversize { size: 9, max: 8 })
        ));
        // exactly the maximum is fine
        assert_eq!(Framer::new(8).next_cut(b"[3G*1*0]").unwrap(), Cut::Frame(8));
    }

    #[test]
    fn scanning_resumes_where_it_stopped() {
        let mut framer = Framer::new(64);
        let full = b"[3G*1*0005*UD,[A]]";
        for end in 1..full.len() {
            assert_eq!(framer.next_cut(&full[..end]).unwrap(), Cut::Incomplete);
        }
        assert_eq!(framer.next_cut(full).unwrap(), Cut::Frame(full.len()));
    }

    #[test]
    fn unescape_maps_the_five_sequences() {
        // "AMR" then 7d 01..05, then 7d 41 (not an escape), then a trailing 7d
        let raw = b"AMR}\x01}\x02}\x03}\x04}\x05}A}";
        assert_eq!(unescape(raw), b"AMR}[],*}A}".to_vec());
    }

    #[test]
    fn escape_then_unescape_round_trips() {
        let payload: Vec<u8> = (0..=255).collect();
        let escaped = escape(&payload);
        assert!(!escaped.contains(&b'['));
        assert!(!escaped.contains(&b']'));
        assert_eq!(unescape(&escaped), payload);
    }
}

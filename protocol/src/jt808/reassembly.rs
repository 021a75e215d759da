//! Sub-packaging: gathering the packets of one long message (multi-packet bit set) until all
//! of them are in, within fixed bounds.
//!
//! In: each packet's header and body. Out: nothing until the last missing packet arrives, then
//! the bodies joined in index order. The packets of one message share the message ID and the
//! packet total, and their serials run on from the first packet's, so
//! `serial - (index - 1)` names the message. At most [`MAX_PENDING`] messages are held; a new
//! one evicts the oldest. A message may have at most [`MAX_PACKETS`] packets and
//! [`MAX_MESSAGE_BYTES`] of body; one that would exceed either is refused and dropped.

use super::header::Header;
use crate::error::DecodeError;
use crate::message::Integrity;

/// Messages held at once per session.
pub const MAX_PENDING: usize = 4;
/// Packets one message may be split into.
pub const MAX_PACKETS: u16 = 32;
/// Body bytes one reassembled message may hold (16 full-size packets).
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024;

#[derive(Debug)]
struct Pending {
    msg_id: u16,
    total: u16,
    first_serial: u16,
    parts: Vec<Option<Vec<u8>>>,
    bytes: usize,
    integrity: Integrity,
    age: u64,
}

/// The packets waiting for the rest of their message.
#[derive(Debug, Default)]
pub(crate) struct Reassembly {
    pending: Vec<Pending>,
    clock: u64,
}

/// Result of adding one packet.
#[derive(Debug, PartialEq)]
pub(crate) enum Progress {
    /// More packets are needed.
    Waiting,
    /// The whole body, and the worst integrity seen among its packets.
    Complete(Vec<u8>, Integrity),
}

impl Reassembly {
    /// Bytes currently held.
    #[cfg(test)]
    pub(crate) fn held_bytes(&self) -> usize {
        self.pending.iter().map(|p| p.bytes).sum()
    }

    /// Adds a packet of a message whose header has `packet = Some((total, index))`.
    ///
    /// # Errors
    /// [`DecodeError::InvalidField`] for an index of 0 or above the total, a total above
    /// [`MAX_PACKETS`], or a message that would grow past [`MAX_MESSAGE_BYTES`].
    pub(crate) fn push(
        &mut self,
        header: &Header,
        total: u16,
        index: u16,
        body: &[u8],
        integrity: Integrity,
    ) -> Result<Progress, DecodeError> {
        if index == 0 || index > total {
            return Err(DecodeError::invalid(
                "packet index",
                format!("{index} of {total}"),
            ));
        }
        if total > MAX_PACKETS {
            return Err(DecodeError::invalid(
                "packet total",
                format!("{total} packets, at most {MAX_PACKETS} are reassembled"),
            ));
        }
        self.clock += 1;
        let first_serial = header.serial.wrapping_sub(index - 1);
        let slot = match self.pending.iter().position(|p| {
            p.msg_id == header.msg_id && p.total == total && p.first_serial == first_serial
        }) {
            Some(i) => i,
            None => {
                if self.pending.len() >= MAX_PENDING {
                    let oldest = self
                        .pending
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, p)| p.age)
                        .map_or(0, |(i, _)| i);
                    self.pending.swap_remove(oldest);
                }
                self.pending.push(Pending {
                    msg_id: header.msg_id,
                    total,
                    first_serial,
                    parts: vec![None; usize::from(total)],
                    bytes: 0,
                    integrity: Integrity::Verified,
                    age: 0,
                });
                self.pending.len() - 1
            }
        };
        let p = &mut self.pending[slot];
        p.age = self.clock;
        let part = &mut p.parts[usize::from(index - 1)];
        let replaced = part.as_ref().map_or(0, Vec::len);
        if p.bytes - replaced + body.len() > MAX_MESSAGE_BYTES {
            self.pending.swap_remove(slot);
            return Err(DecodeError::invalid(
                "packet",
                format!("message would exceed {MAX_MESSAGE_BYTES} bytes"),
            ));
        }
        *part = Some(body.to_vec());
        p.bytes = p.bytes - replaced + body.len();
        if integrity.is_mismatch() {
            p.integrity = integrity;
        }
        if p.parts.iter().any(Option::is_none) {
            return Ok(Progress::Waiting);
        }
        let done = self.pending.swap_remove(slot);
        let mut whole = Vec::with_capacity(done.bytes);
        for part in done.parts.into_iter().flatten() {
            whole.extend_from_slice(&part);
        }
        Ok(Progress::Complete(whole, done.integrity))
    }
}

#[cfg(test)]
mod tests {
    use super::super::header::{Edition, Terminal};
    use super::*;

    fn header(serial: u16) -> Header {
        Header {
            msg_id: 0x0704,
            props: 0x2000,
            edition: Edition::V2013,
            terminal: Terminal::from_bytes(&[0, 0, 0, 0, 0, 1]),
            serial,
            packet: None,
        }
    }

    #[test]
    fn joins_packets_in_index_order_whatever_the_arrival_order() {
        let mut r = Reassembly::default();
        let ok = Integrity::Verified;
        assert_eq!(
            r.push(&header(12), 3, 3, b"cc", ok).unwrap(),
            Progress::Waiting
        );
        assert_eq!(
            r.push(&header(10), 3, 1, b"aa", ok).unwrap(),
            Progress::Waiting
        );
        assert_eq!(
            r.push(&header(11), 3, 2, b"bb", ok).unwrap(),
            Progress::Complete(b"aabbcc".to_vec(), ok)
        );
        assert_eq!(r.held_bytes(), 0);
    }

    #[test]
    fn bounds_hold() {
        let mut r = Reassembly::default();
        let ok = Integrity::Verified;
        assert!(r.push(&header(1), 2, 0, b"x", ok).is_err());
        assert!(r.push(&header(1), 2, 3, b"x", ok).is_err());
        assert!(r.push(&header(1), MAX_PACKETS + 1, 1, b"x", ok).is_err());
        // Five messages started: only four are kept.
        for serial in [100, 200, 300, 400, 500] {
            r.push(&header(serial), 2, 1, b"x", ok).unwrap();
        }
        assert_eq!(r.held_bytes(), 4);
        // The first (oldest) was evicted: its second packet starts a new message.
        assert_eq!(
            r.push(&header(101), 2, 2, b"y", ok).unwrap(),
            Progress::Waiting
        );
        // Too many bytes.
        let big = vec![0u8; 1023];
        let mut r = Reassembly::default();
        let mut refused = false;
        for i in 1..=MAX_PACKETS {
            if r.push(&header(1000 + i), MAX_PACKETS, i, &big, ok).is_err() {
                refused = true;
                break;
            }
        }
        assert!(refused);
        assert_eq!(r.held_bytes(), 0);
    }
}

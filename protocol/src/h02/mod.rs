//! H02: the report format of cheap car and personal trackers, in two forms that may share one
//! connection: text sentences `*HQ,<ID>,<TYPE>,…#` and fixed-size binary `$` records.
//!
//! In: a connection's bytes. Out: one [`Item`] per frame, each with the messages it carried and
//! the reply bytes the device waits for. The splitter (`frame.rs`) finds frame boundaries; the
//! text sentences are read by one file per type (`location.rs`, `heartbeat.rs`, `nbr.rs`,
//! `link.rs`, `v3.rs`, `vp1.rs`) and the binary record by `binary.rs`. See `README.md` next to
//! this file for the byte layouts and what we do with the odd frames real devices send.
//!
//! - No checksum and no length field: every frame is [`Integrity::Unchecked`], and
//!   `strict_checksum` changes nothing.
//! - Every frame carries the device ID. Each message gets the ID of its frame, or the session's
//!   when the frame's ID field is empty. The first frame with an ID, and any frame whose ID
//!   differs from the session's, also yields a [`MessageKind::Login`] message before its own.
//! - Times are UTC unless the listener sets `device_utc_offset_minutes`. A sentence without a
//!   date is dated from the session clock (see `fields.rs`); so is the time in the replies.
//!   The clock is [`Utc::now`] unless a test gives another with [`H02Session::with_clock`].
//!
//! ```
//! use bytes::BytesMut;
//! use ewall_protocol::{h02::H02Session, Item, Session, SessionOptions};
//!
//! let mut session = H02Session::new(&SessionOptions::default());
//! let mut buf = BytesMut::from(
//!     &b"*HQ,4210051415,V1,164549,A,0956.3869,N,08406.7068,W,000.00,000,221215,FFFFFBFF#"[..],
//! );
//! let Some(Item::Frame(decoded)) = session.decode(&mut buf).unwrap() else { panic!() };
//! let position = decoded.messages[1].position.as_ref().unwrap();
//! assert!((position.lat - 9.93978).abs() < 1e-5);
//! assert!(decoded.reply.unwrap().starts_with(b"*HQ,4210051415,V4,V1,"));
//! ```

mod binary;
pub mod command;
pub mod encode;
mod fields;
mod frame;
mod heartbeat;
mod link;
mod location;
mod nbr;
mod status;
#[cfg(test)]
mod tests;
mod text;
mod v3;
mod vp1;

use bytes::BytesMut;
use chrono::{DateTime, SubsecRound, Utc};

use crate::error::DecodeError;
use crate::message::{Decoded, Integrity, Message, MessageKind};
use crate::{FrameError, Item, Protocol, Session, SessionOptions};

use fields::Context;
use frame::Splitter;

pub use frame::{
    Split, DEFAULT_MAX_FRAME_LEN, LONG_ID_RECORD_LEN, LONG_RECORD_LEN, SHORT_RECORD_LEN,
};

/// Per-connection H02 decoding state: the splitter (with the binary record size once learnt),
/// the device identity and the clock used for replies and undated sentences.
#[derive(Debug, Clone)]
pub struct H02Session {
    splitter: Splitter,
    device_id: Option<String>,
    utc_offset_minutes: i32,
    clock: fn() -> DateTime<Utc>,
    /// The last frame cut, for [`Session::take_frame`].
    last_frame: bytes::Bytes,
}

impl H02Session {
    /// A session with the listener's options; reads the wall clock for replies.
    pub fn new(options: &SessionOptions) -> Self {
        Self::with_clock(options, Utc::now)
    }

    /// A session that reads `clock` instead of the wall clock (for reproducible tests).
    pub fn with_clock(options: &SessionOptions, clock: fn() -> DateTime<Utc>) -> Self {
        H02Session {
            splitter: Splitter::new(options.max_frame_len.unwrap_or(DEFAULT_MAX_FRAME_LEN)),
            device_id: None,
            utc_offset_minutes: options.device_utc_offset_minutes.unwrap_or(0),
            clock,
            last_frame: bytes::Bytes::new(),
        }
    }

    /// Fixes the binary record size (32, 42 or 45) instead of learning it from the first record,
    /// for a listener that knows what its devices send.
    #[must_use]
    pub fn with_record_len(mut self, len: usize) -> Self {
        self.splitter.set_record_len(len);
        self
    }

    /// The binary record size in use, once learnt or set.
    pub fn record_len(&self) -> Option<usize> {
        self.splitter.record_len()
    }

    /// Cuts the next frame from the front of `buf` without decoding it: the framing half of
    /// [`Session::decode`].
    ///
    /// # Errors
    /// [`FrameError::Oversize`] as in [`Session::decode`].
    pub fn next_frame(&mut self, buf: &mut BytesMut) -> Result<Option<Split>, FrameError> {
        self.splitter.next_frame(buf)
    }

    /// Decodes one frame that has already been cut out (a text sentence, trailing CR/LF
    /// allowed, or a binary record of any supported size): the decoding half of
    /// [`Session::decode`]. Updates the session's device identity.
    ///
    /// # Errors
    /// [`DecodeError`] when the frame is not H02 or a field is malformed; the session is
    /// unchanged then.
    pub fn decode_frame(&mut self, frame: &[u8]) -> Result<Decoded, DecodeError> {
        let now = (self.clock)().trunc_subsecs(0);
        match frame.first() {
            Some(b'*') => {
                let sentence = text::Sentence::parse(frame)?;
                let frame_id = sentence.device_id();
                let ctx = self.context(now, frame_id);
                let out = text::decode(&sentence, &ctx)?;
                Ok(self.finish(frame_id, out.messages, out.reply))
            }
            Some(b'$') => {
                let record = binary::parse(frame)?;
                let ctx = self.context(now, Some(&record.device_id));
                let message = binary::message(&record, &ctx);
                Ok(self.finish(Some(&record.device_id), vec![message], None))
            }
            Some(b'X') => {
                // Same layout as `$`; what the variant means is not documented, so it is only
                // checked, not reported.
                binary::parse(frame)?;
                Ok(Decoded::empty(Integrity::Unchecked))
            }
            _ => Err(DecodeError::NotThisProtocol {
                protocol: "h02",
                reason: "a frame starts with '*', '$' or 'X'".into(),
            }),
        }
    }

    fn context<'a>(&'a self, now: DateTime<Utc>, frame_id: Option<&'a str>) -> Context<'a> {
        Context {
            now,
            utc_offset_minutes: self.utc_offset_minutes,
            device_id: frame_id.or(self.device_id.as_deref()),
        }
    }

    /// Stamps the device ID on every message, announces a new identity with a login message and
    /// remembers it.
    fn finish(
        &mut self,
        frame_id: Option<&str>,
        mut messages: Vec<Message>,
        reply: Option<Vec<u8>>,
    ) -> Decoded {
        if let Some(id) = frame_id {
            if self.device_id.as_deref() != Some(id) {
                self.device_id = Some(id.to_owned());
                messages.insert(0, Message::new(MessageKind::Login));
            }
        }
        for message in &mut messages {
            message.device_id.clone_from(&self.device_id);
        }
        Decoded {
            messages,
            reply,
            integrity: Integrity::Unchecked,
        }
    }
}

impl Session for H02Session {
    fn protocol(&self) -> Protocol {
        Protocol::H02
    }

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Item>, FrameError> {
        Ok(match self.next_frame(buf)? {
            None => None,
            Some(Split::Skipped(error)) => Some(Item::Rejected(error)),
            Some(Split::Frame(frame)) => Some(match self.decode_frame(&frame) {
                Ok(decoded) => {
                    self.last_frame = frame;
                    Item::Frame(decoded)
                }
                Err(error) => Item::Rejected(error),
            }),
        })
    }

    fn device_id(&self) -> Option<&str> {
        self.device_id.as_deref()
    }

    fn take_frame(&mut self) -> bytes::Bytes {
        std::mem::take(&mut self.last_frame)
    }

    fn encode_command(
        &self,
        command: &crate::Command,
        _tag: u32,
        now: DateTime<Utc>,
    ) -> Result<crate::Downlink, crate::CommandError> {
        let id = self
            .device_id
            .as_deref()
            .ok_or(crate::CommandError::NoIdentity)?;
        command::encode(command, id, now)
    }
}

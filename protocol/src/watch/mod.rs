//! The smartwatch "3G" protocol (`[3G*ID*LLLL*CONTENT]`, also `SG`, `CS`, `ZJ` and other maker
//! codes): kids' watches and wristbands, text over TCP.
//!
//! [`WatchSession`] cuts frames with [`framing::Framer`] (bracket counting, `7d xx`
//! un-escaping), reads the header with [`header::Header`] and hands the content to the file
//! for its message type:
//!
//! | type | file | kind | reply |
//! | --- | --- | --- | --- |
//! | `LK` | `link.rs` | heartbeat (steps, battery) | `LK` |
//! | `TKQ`, `TKQ2` | `link.rs` | heartbeat | the type echoed |
//! | `INIT` | `link.rs` | login | `INIT,1` |
//! | `UD`, `UD2` (archived), `UD3`, `UD_LTE`, `UD_WCDMA`, `WT` | `location.rs` | position | none |
//! | `AL`, `AL_LTE`, `ALCUSTOMER1`, ... | `alarm.rs` | alarm | `AL` |
//! | `PULSE`, `HEART`, `BLOOD`, `BPHRT`, `TEMP`, `btemp2`, `oxygen` | `health.rs` | health | none |
//! | `TK`, `TK2`, `JXTK`, `img` | `media.rs` | other (payload skipped) | `JXTKR,1` for `JXTK` |
//!
//! Any other well-formed type decodes to an empty [`Decoded`] (no message, no reply). There is
//! no checksum; the length field is compared with the content and a disagreement is flagged as
//! [`Mismatch::Length`] (or rejected with `strict_checksum`). See `README.md` for the layout and
//! the decisions taken on the reference vectors.

pub mod encode;
pub mod framing;
pub mod header;

mod alarm;
pub mod command;
mod health;
mod link;
mod location;
mod media;

use bytes::{Buf, BytesMut};
use chrono::{DateTime, Utc};

use crate::{
    DecodeError, Decoded, FrameError, Integrity, Item, Message, MessageKind, Mismatch, Protocol,
    Session, SessionOptions,
};

use framing::{Cut, Framer};
use header::Header;
use location::Report;

/// Default maximum frame size: 64 KiB, enough for a voice chunk or a photo slice (`JXTK`
/// chunks are about 1 KiB; whole `TK` messages from older watches reach tens of KiB).
pub const DEFAULT_MAX_FRAME_LEN: usize = 64 * 1024;

/// Per-connection watch decoding state: the framer's progress through the frame being received
/// and the device ID of the latest frame.
#[derive(Debug, Clone)]
pub struct WatchSession {
    framer: Framer,
    strict: bool,
    offset_minutes: i32,
    device_id: Option<String>,
    /// Maker code and ZJ index of the latest frame, echoed by the commands we send.
    addressing: Option<(String, Option<String>)>,
    /// Dates a position whose own date and time are not a real date.
    clock: fn() -> DateTime<Utc>,
    /// The last frame cut, for [`Session::take_frame`].
    last_frame: bytes::Bytes,
}

impl WatchSession {
    /// A session with the listener's options. The device clock is read as UTC unless
    /// `device_utc_offset_minutes` says otherwise; the maximum frame size defaults to
    /// [`DEFAULT_MAX_FRAME_LEN`].
    pub fn new(options: &SessionOptions) -> Self {
        WatchSession {
            framer: Framer::new(options.max_frame_len.unwrap_or(DEFAULT_MAX_FRAME_LEN)),
            strict: options.strict_checksum,
            offset_minutes: options.device_utc_offset_minutes.unwrap_or(0),
            device_id: None,
            addressing: None,
            clock: Utc::now,
            last_frame: bytes::Bytes::new(),
        }
    }

    /// Decodes one whole frame as cut by the framer (still escaped).
    fn decode_frame(&mut self, raw: &[u8]) -> Item {
        let frame = framing::unescape(raw);
        let header = match Header::parse(&frame) {
            Ok(header) => header,
            Err(e) => return Item::Rejected(e),
        };
        self.device_id = Some(header.id.to_owned());
        self.addressing = Some((header.maker.to_owned(), header.index.map(str::to_owned)));
        // Devices count the content either as sent (escaped, JXTK voice chunks) or un-escaped;
        // either agreement is accepted. The header itself never holds escapes.
        let (declared, actual) = (header.declared_len, header.actual_len());
        let on_wire = actual + (raw.len() - frame.len());
        let integrity = if declared == actual || declared == on_wire {
            Integrity::Unchecked
        } else if self.strict {
            return Item::Rejected(DecodeError::BadLength { declared, actual });
        } else {
            Integrity::Mismatch(Mismatch::Length { declared, actual })
        };
        match self.decode_content(&header) {
            Ok(mut decoded) => {
                decoded.integrity = integrity;
                Item::Frame(decoded)
            }
            Err(e) => Item::Rejected(e),
        }
    }

    /// Dispatches on the message type.
    fn decode_content(&self, header: &Header<'_>) -> Result<Decoded, DecodeError> {
        let (kind, body) = header.split_type();
        let kind = std::str::from_utf8(kind)
            .ok()
            .filter(|k| !k.is_empty() && k.bytes().all(|b| b.is_ascii_graphic()))
            .ok_or_else(|| {
                DecodeError::invalid("type", format!("{:?}", String::from_utf8_lossy(kind)))
            })?;
        Ok(match kind {
            "LK" => link::keep_alive(header, body),
            "TKQ" | "TKQ2" => link::voice_keep_alive(header, kind),
            "INIT" => link::init(header),
            _ if kind.starts_with("UD") || kind.starts_with("WT") => {
                let report =
                    Report::parse(body, kind == "UD2", self.offset_minutes, (self.clock)());
                if let Err(e) = &report.position {
                    return Err(e.clone());
                }
                Decoded {
                    messages: vec![report.into_message(MessageKind::Position, header.id)],
                    reply: None,
                    integrity: Integrity::Unchecked,
                }
            }
            _ if kind.starts_with("AL") => {
                alarm::decode(header, body, self.offset_minutes, (self.clock)())
            }
            _ if health::is_health(kind) => health::decode(header),
            _ if media::is_media(kind) => media::decode(header, kind),
            _ if command::is_answer(kind) => {
                let mut message = Message::new(MessageKind::CommandReply);
                message.device_id = Some(header.id.to_owned());
                message.command_reply = Some(command::reply(kind));
                Decoded {
                    messages: vec![message],
                    reply: None,
                    integrity: Integrity::Unchecked,
                }
            }
            _ => Decoded::empty(Integrity::Unchecked),
        })
    }

    /// Reserves room for the frame being received when its header declares a length (a hint
    /// only: the field is often wrong, and never beyond the maximum frame size).
    fn reserve_hint(&self, buf: &mut BytesMut) {
        let Some(end) = buf.iter().take(64).position(|&b| b == b',') else {
            return;
        };
        let Some(partial) = buf.get(..end) else {
            return;
        };
        let mut probe = partial.to_vec();
        probe.push(b']');
        if let Ok(header) = Header::parse(&probe) {
            let header_len = probe.len() - 1 - header.content.len();
            let expected = (header_len + header.declared_len + 1).min(self.framer.max_frame_len());
            buf.reserve(expected.saturating_sub(buf.len()));
        }
    }
}

impl Session for WatchSession {
    fn protocol(&self) -> Protocol {
        Protocol::Watch
    }

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Item>, FrameError> {
        loop {
            match self.framer.next_cut(buf)? {
                Cut::Incomplete => {
                    self.reserve_hint(buf);
                    return Ok(None);
                }
                Cut::Blank(n) => buf.advance(n),
                Cut::Garbage(n) => {
                    buf.advance(n);
                    return Ok(Some(Item::Rejected(DecodeError::Garbage { skipped: n })));
                }
                Cut::Truncated(n) => {
                    buf.advance(n);
                    return Ok(Some(Item::Rejected(DecodeError::Truncated {
                        what: "watch frame (a new frame began before its `]`)",
                        needed: n + 1,
                        available: n,
                    })));
                }
                Cut::Frame(n) => {
                    let raw = buf.split_to(n).freeze();
                    let item = self.decode_frame(&raw);
                    if matches!(item, Item::Frame(_)) {
                        self.last_frame = raw;
                    }
                    return Ok(Some(item));
                }
            }
        }
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
        _now: chrono::DateTime<chrono::Utc>,
    ) -> Result<crate::Downlink, crate::CommandError> {
        let (Some(id), Some((maker, index))) = (&self.device_id, &self.addressing) else {
            return Err(crate::CommandError::NoIdentity);
        };
        command::encode(command, maker, id, index.as_deref())
    }
}

#[cfg(test)]
mod tests;

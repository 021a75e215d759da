//! JT/T 808 (2013 and 2019 editions): the session that cuts frames from a connection's byte
//! stream, checks them, joins sub-packaged messages and turns each message into [`Decoded`]
//! with the reply the terminal expects.
//!
//! Layout of this module:
//! - [`framer`] finds `7e … 7e` frames (and the ASCII `( … )` messages of e-locks) and
//!   un-escapes them;
//! - [`header`] reads the header, computes the XOR check code, escapes outgoing frames;
//! - `reassembly` holds the packets of a multi-packet message until it is whole;
//! - one file per message family: `registration` (0x0100, 0x0102), `heartbeat` (0x0002,
//!   0x0003), `location` and `extra` (0x0200 and its additional items), `batch` (0x0704,
//!   0x0210), `transparent` (0x0900), `vendor` (0x5501/0x5502, ASCII);
//! - `reply` builds our answers; [`encode`] builds terminal frames for tests and the simulator.
//!
//! [`Jt808Session::decode_frame`] decodes one frame that is already cut out and un-escaped;
//! the stream path ([`Session::decode`]) calls it after the framer. See `README.md` next to
//! this file for the byte layout and the choices made.

pub mod command;
pub mod encode;
pub mod framer;
pub mod header;
pub mod registration;

mod batch;
mod extra;
mod heartbeat;
mod location;
mod model;
mod reassembly;
mod reply;
mod transparent;
mod vendor;

use bytes::{Buf, BytesMut};
use chrono::{DateTime, Utc};

use crate::error::{DecodeError, FrameError};
use crate::message::{Decoded, Integrity, Message, MessageKind, Mismatch};
use crate::reader::Reader;
use crate::{Item, Protocol, Session, SessionOptions};

use framer::{Found, Framer, ASCII_OPEN};
use header::{Header, FLAG, MAX_BODY_LEN};
use reassembly::{Progress, Reassembly};

pub use location::ALARM_BITS;

/// Default maximum frame size on the wire: the largest legal frame (2019 header with packet
/// fields, 21 bytes; a 1023-byte body; the check code) with every byte escaped, plus the two
/// flags: 2 × 1045 + 2 = 2092 bytes.
pub const DEFAULT_MAX_FRAME_LEN: usize = 2 * (21 + MAX_BODY_LEN + 1) + 2;

/// The standard's time zone for device times: GMT+8, in minutes.
pub const DEFAULT_UTC_OFFSET_MINUTES: i32 = 8 * 60;

/// Message IDs (terminal → platform) this module decodes.
pub mod msg {
    /// Terminal general response.
    pub const TERMINAL_RESPONSE: u16 = 0x0001;
    /// Heartbeat.
    pub const HEARTBEAT: u16 = 0x0002;
    /// Logout.
    pub const LOGOUT: u16 = 0x0003;
    /// Terminal registration.
    pub const REGISTRATION: u16 = 0x0100;
    /// Terminal authentication.
    pub const AUTHENTICATION: u16 = 0x0102;
    /// Parameter query answer.
    pub const PARAMETERS: u16 = 0x0104;
    /// Terminal attributes.
    pub const ATTRIBUTES: u16 = 0x0107;
    /// Time request (answered with 0x8109).
    pub const TIME_REQUEST: u16 = 0x0109;
    /// Location report.
    pub const LOCATION: u16 = 0x0200;
    /// Location query answer.
    pub const LOCATION_ANSWER: u16 = 0x0201;
    /// Vendor location batch.
    pub const VENDOR_BATCH: u16 = 0x0210;
    /// Waybill / command result upload.
    pub const COMMAND_RESULT: u16 = 0x0701;
    /// Driver identity.
    pub const DRIVER_IDENTITY: u16 = 0x0702;
    /// Location batch upload (blind-area backlog).
    pub const BATCH: u16 = 0x0704;
    /// Multimedia event.
    pub const MULTIMEDIA_EVENT: u16 = 0x0800;
    /// Transparent data.
    pub const TRANSPARENT: u16 = 0x0900;
    /// Vendor time-zone sync.
    pub const TIMEZONE_SYNC: u16 = 0x1007;
    /// Vendor text-message reply.
    pub const TEXT_REPLY: u16 = 0x1300;
    /// Vendor acceleration samples.
    pub const ACCELERATION: u16 = 0x2070;
    /// Vendor heartbeat.
    pub const HEARTBEAT_2: u16 = 0x0506;
    /// Vendor text report.
    pub const TEXT_REPORT: u16 = 0x6006;
    /// Vendor location with a one-byte serial.
    pub const VENDOR_LOCATION: u16 = super::header::MSG_VENDOR_LOCATION;
    /// Vendor blind-area location with a one-byte serial.
    pub const VENDOR_LOCATION_BLIND: u16 = super::header::MSG_VENDOR_LOCATION_BLIND;
}

/// What a message handler needs from the session.
pub(crate) struct Ctx<'a> {
    /// Identifier from the frame's terminal number.
    pub device_id: &'a str,
    /// `options.device_utc_offset_minutes`.
    pub override_offset: Option<i32>,
    /// The offset the device last stated (0xEB time-zone item), remembered for the session.
    pub stated_offset: &'a mut Option<i32>,
    /// The device's model, for the items and alarm bits some models read otherwise.
    pub model: model::Model,
    /// When the frame was decoded: the time of a position whose own time is not a real date.
    pub now: DateTime<Utc>,
}

impl Ctx<'_> {
    /// A message of `kind` carrying the device ID.
    pub fn message(&self, kind: MessageKind) -> Message {
        let mut m = Message::new(kind);
        m.device_id = Some(self.device_id.to_owned());
        m
    }

    /// The UTC offset for a device time: the options, then what this record or the device
    /// stated earlier, then GMT+8.
    pub fn offset(&self, record: Option<i32>) -> i32 {
        self.override_offset
            .or(record)
            .or(*self.stated_offset)
            .unwrap_or(DEFAULT_UTC_OFFSET_MINUTES)
    }
}

/// Which answer a message gets.
enum Answer {
    None,
    General(u8),
    Registration,
    Time,
    Vendor,
}

/// Per-connection JT/T 808 decoding state.
///
/// Keeps the device ID from the latest header, the time zone the device stated, the packets of
/// unfinished multi-packet messages, and our own reply serial: a counter starting at 0 that
/// goes up by one (wrapping) for every reply frame built, so each reply of a connection has its
/// own serial.
#[derive(Debug)]
pub struct Jt808Session {
    strict: bool,
    override_offset: Option<i32>,
    framer: Framer,
    device_id: Option<String>,
    /// The edition and terminal number of the last header, echoed by commands we send.
    terminal: Option<(header::Edition, header::Terminal)>,
    /// A message other than registration has arrived: the terminal has authenticated (or
    /// skipped it) and takes platform messages.
    past_registration: bool,
    stated_offset: Option<i32>,
    model: model::Model,
    next_serial: u16,
    reassembly: Reassembly,
    /// The last frame cut, as received (escaped), for [`Session::take_frame`].
    last_frame: bytes::Bytes,
}

impl Jt808Session {
    /// A session with the listener's options.
    pub fn new(options: &SessionOptions) -> Self {
        Jt808Session {
            strict: options.strict_checksum,
            override_offset: options.device_utc_offset_minutes,
            framer: Framer::new(options.max_frame_len.unwrap_or(DEFAULT_MAX_FRAME_LEN)),
            device_id: None,
            terminal: None,
            past_registration: false,
            stated_offset: None,
            model: model::Model::of(options.model.as_deref()),
            next_serial: 0,
            reassembly: Reassembly::default(),
            last_frame: bytes::Bytes::new(),
        }
    }

    /// Decodes one frame that has already been cut out of the stream and un-escaped: `7e`,
    /// header, body, check code, `7e` (or a parenthesised ASCII message). The stream path uses
    /// this after the framer; captured frames that are stored un-escaped can be fed here
    /// directly. Updates the session (device ID, time zone, pending packets, reply serial).
    pub fn decode_frame(&mut self, frame: &[u8]) -> Item {
        self.decode_frame_at(frame, Utc::now())
    }

    /// [`Jt808Session::decode_frame`] with the server time used for time answers given.
    pub fn decode_frame_at(&mut self, frame: &[u8], now: DateTime<Utc>) -> Item {
        let result = match frame.first() {
            Some(&ASCII_OPEN) => Ok(self.decode_ascii(frame, now)),
            Some(&FLAG) if frame.len() >= 2 && frame.last() == Some(&FLAG) => {
                self.decode_binary(&frame[1..frame.len() - 1], now)
            }
            _ => Err(DecodeError::NotThisProtocol {
                protocol: "jt808",
                reason: "a frame starts and ends with 0x7e".to_owned(),
            }),
        };
        match result {
            Ok(decoded) => Item::Frame(decoded),
            Err(e) => Item::Rejected(e),
        }
    }

    fn serial(&mut self) -> u16 {
        let s = self.next_serial;
        self.next_serial = s.wrapping_add(1);
        s
    }

    fn decode_ascii(&mut self, frame: &[u8], now: DateTime<Utc>) -> Decoded {
        let text = String::from_utf8_lossy(frame);
        let first = text
            .trim_start_matches('(')
            .split([',', ')'])
            .next()
            .unwrap_or("");
        if self.device_id.is_none()
            && !first.is_empty()
            && first.bytes().all(|b| b.is_ascii_digit())
        {
            self.device_id = Some(first.to_owned());
        }
        let id = self.device_id.clone();
        let ctx = Ctx {
            device_id: id.as_deref().unwrap_or(""),
            override_offset: self.override_offset,
            stated_offset: &mut self.stated_offset,
            model: self.model,
            now,
        };
        let (mut message, reply) = vendor::decode_ascii(&text, &ctx, now);
        message.device_id = id;
        Decoded {
            messages: vec![message],
            reply,
            integrity: Integrity::Unchecked,
        }
    }

    /// `inner`: the un-escaped bytes between the flags.
    fn decode_binary(&mut self, inner: &[u8], now: DateTime<Utc>) -> Result<Decoded, DecodeError> {
        let Some((&check, content)) = inner.split_last() else {
            return Err(DecodeError::Truncated {
                what: "check code",
                needed: 1,
                available: 0,
            });
        };
        let mut r = Reader::new(content);
        let header = Header::read(&mut r)?;
        let body = r.rest();

        let computed = header::xor(content);
        let integrity = if computed != check {
            if self.strict {
                return Err(DecodeError::BadChecksum {
                    expected: u32::from(computed),
                    actual: u32::from(check),
                });
            }
            Integrity::Mismatch(Mismatch::Checksum {
                expected: u32::from(computed),
                actual: u32::from(check),
            })
        } else if header.body_len() != body.len() {
            if self.strict {
                return Err(DecodeError::BadLength {
                    declared: header.body_len(),
                    actual: body.len(),
                });
            }
            Integrity::Mismatch(Mismatch::Length {
                declared: header.body_len(),
                actual: body.len(),
            })
        } else {
            Integrity::Verified
        };

        self.device_id = Some(header.terminal.device_id());
        self.terminal = Some((header.edition, header.terminal));
        if header.encryption() != 0 && !header.is_vendor_location() {
            return Err(DecodeError::invalid(
                "body properties",
                format!(
                    "encrypted body (mode {}) is not supported",
                    header.encryption()
                ),
            ));
        }

        match header.packet {
            Some((total, index)) if (total > 1 || index > 1) && is_known(header.msg_id) => {
                match self
                    .reassembly
                    .push(&header, total, index, body, integrity)?
                {
                    Progress::Waiting => {
                        let serial = self.serial();
                        Ok(Decoded {
                            messages: Vec::new(),
                            reply: Some(reply::general(&header, serial, reply::RESULT_OK)),
                            integrity,
                        })
                    }
                    Progress::Complete(whole, integrity) => {
                        self.dispatch(&header, &whole, integrity, now)
                    }
                }
            }
            _ => self.dispatch(&header, body, integrity, now),
        }
    }

    fn dispatch(
        &mut self,
        header: &Header,
        body: &[u8],
        integrity: Integrity,
        now: DateTime<Utc>,
    ) -> Result<Decoded, DecodeError> {
        let device_id = self.device_id.clone().unwrap_or_default();
        let mut ctx = Ctx {
            device_id: &device_id,
            override_offset: self.override_offset,
            stated_offset: &mut self.stated_offset,
            model: self.model,
            now,
        };
        if header.msg_id != msg::REGISTRATION {
            self.past_registration = true;
        }
        let ok = Answer::General(reply::RESULT_OK);
        let (messages, answer) = match header.msg_id {
            msg::REGISTRATION => (
                vec![registration::decode_registration(body, &ctx)],
                Answer::Registration,
            ),
            msg::AUTHENTICATION => (vec![registration::decode_authentication(body, &ctx)], ok),
            msg::HEARTBEAT => (vec![heartbeat::decode_heartbeat(body, &ctx)], ok),
            msg::LOGOUT => (vec![heartbeat::decode_logout(&ctx)], ok),
            msg::LOCATION => (vec![location::decode(body, &mut ctx, false)?], ok),
            msg::LOCATION_ANSWER => {
                let rest = body.get(2..).unwrap_or_default();
                let mut m = location::decode(rest, &mut ctx, false)?;
                m.command_reply = command::position_response(body);
                (vec![m], Answer::None)
            }
            msg::TERMINAL_RESPONSE => {
                let mut m = ctx.message(MessageKind::CommandReply);
                m.command_reply = command::general_response(body);
                (vec![m], Answer::None)
            }
            msg::BATCH => (batch::decode_0704(body, &mut ctx)?, ok),
            msg::VENDOR_BATCH => (batch::decode_0210(body, &mut ctx)?, ok),
            msg::TIME_REQUEST => (vec![ctx.message(MessageKind::TimeRequest)], Answer::Time),
            msg::TRANSPARENT => (vec![transparent::decode(body, &mut ctx)?], ok),
            msg::VENDOR_LOCATION | msg::VENDOR_LOCATION_BLIND => {
                let blind = header.msg_id == msg::VENDOR_LOCATION_BLIND;
                let m = vendor::decode_location(body, &ctx, blind)?;
                let answer = if header.props & 0x8000 != 0 {
                    Answer::Vendor
                } else {
                    Answer::None
                };
                (vec![m], answer)
            }
            msg::ATTRIBUTES | msg::TIMEZONE_SYNC | msg::HEARTBEAT_2 | msg::MULTIMEDIA_EVENT => {
                (vec![ctx.message(MessageKind::Other)], ok)
            }
            msg::TEXT_REPORT => (vec![ctx.message(MessageKind::CommandReply)], ok),
            msg::PARAMETERS | msg::COMMAND_RESULT | msg::TEXT_REPLY => {
                (vec![ctx.message(MessageKind::CommandReply)], Answer::None)
            }
            msg::DRIVER_IDENTITY | msg::ACCELERATION => {
                (vec![ctx.message(MessageKind::Other)], Answer::None)
            }
            id if id & 0x8000 != 0 => {
                return Err(DecodeError::UnsupportedType(format!(
                    "{id:#06x} (a platform-to-terminal message)"
                )))
            }
            _ => (Vec::new(), Answer::General(reply::RESULT_UNSUPPORTED)),
        };
        let reply = match answer {
            Answer::None => None,
            Answer::General(result) => {
                let serial = self.serial();
                Some(reply::general(header, serial, result))
            }
            Answer::Registration => {
                let serial = self.serial();
                Some(reply::registration(
                    header,
                    serial,
                    &registration::auth_code(&device_id),
                ))
            }
            Answer::Time => {
                let serial = self.serial();
                Some(reply::time(header, serial, now))
            }
            Answer::Vendor => {
                let serial = self.serial();
                Some(reply::vendor(header, serial as u8))
            }
        };
        Ok(Decoded {
            messages,
            reply,
            integrity,
        })
    }
}

/// Whether we decode this message ID (and so reassemble it when it comes in packets).
fn is_known(id: u16) -> bool {
    matches!(
        id,
        msg::TERMINAL_RESPONSE
            | msg::HEARTBEAT
            | msg::LOGOUT
            | msg::REGISTRATION
            | msg::AUTHENTICATION
            | msg::PARAMETERS
            | msg::ATTRIBUTES
            | msg::TIME_REQUEST
            | msg::LOCATION
            | msg::LOCATION_ANSWER
            | msg::VENDOR_BATCH
            | msg::COMMAND_RESULT
            | msg::DRIVER_IDENTITY
            | msg::BATCH
            | msg::MULTIMEDIA_EVENT
            | msg::TRANSPARENT
            | msg::TIMEZONE_SYNC
            | msg::TEXT_REPLY
            | msg::ACCELERATION
            | msg::HEARTBEAT_2
            | msg::TEXT_REPORT
    )
}

impl Session for Jt808Session {
    fn protocol(&self) -> Protocol {
        Protocol::Jt808
    }

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Item>, FrameError> {
        let Some(found) = self.framer.next(buf)? else {
            return Ok(None);
        };
        match found {
            Found::Garbage { len } => {
                buf.advance(len);
                Ok(Some(Item::Rejected(DecodeError::Garbage { skipped: len })))
            }
            Found::Invalid { len, error } => {
                buf.advance(len);
                Ok(Some(Item::Rejected(error)))
            }
            Found::Frame { bytes, len } => {
                let item = self.decode_frame(&bytes);
                // A rejected binary frame leaves its closing flag: if we were out of step, that
                // flag opens the next frame.
                let keep_flag = matches!(item, Item::Rejected(_)) && bytes.first() == Some(&FLAG);
                if keep_flag {
                    buf.advance(len - 1);
                } else {
                    let wire = buf.split_to(len).freeze();
                    if matches!(item, Item::Frame(_)) {
                        self.last_frame = wire;
                    }
                }
                Ok(Some(item))
            }
        }
    }

    fn device_id(&self) -> Option<&str> {
        self.device_id.as_deref()
    }

    fn take_frame(&mut self) -> bytes::Bytes {
        std::mem::take(&mut self.last_frame)
    }

    fn set_model(&mut self, model: Option<&str>) {
        self.model = model::Model::of(model);
    }

    fn ready_for_commands(&self) -> bool {
        self.terminal.is_some() && self.past_registration
    }

    fn encode_command(
        &self,
        command: &crate::Command,
        tag: u32,
        _now: DateTime<Utc>,
    ) -> Result<crate::Downlink, crate::CommandError> {
        crate::command::supports(Protocol::Jt808, command.kind())?;
        let (edition, terminal) = self.terminal.ok_or(crate::CommandError::NoIdentity)?;
        command::encode(command, tag, edition, &terminal)
    }
}

#[cfg(test)]
mod tests;

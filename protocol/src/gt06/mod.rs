//! GT06 / Concox: the binary TCP protocol of most cheap GPS wristbands, pet and child trackers
//! and their clones. Frames start with `78 78` (1-byte length) or `79 79` (2-byte length), carry a
//! protocol number, a serial and a CRC-ITU, and end with `0D 0A`. See `README.md` next to this
//! file for the byte layouts, the quirks of real devices and the replies we send.
//!
//! In the pipeline a [`Gt06Session`] sits behind each TCP connection of the GT06 listener: it cuts
//! frames out of the bytes read so far, decodes them into [`Message`]s and builds the reply the
//! device waits for. It never touches a socket and never drops a frame silently: a bad frame comes
//! out as [`Item::Rejected`], and only an oversize length field ends the connection.
//!
//! Files: `frame.rs` (envelope and CRC), `login.rs`, `location.rs` (GPS block and position
//! reports), `status.rs` (terminal-information byte and status block), `alarm.rs` (status/alarm
//! reports and alarm codes), `heartbeat.rs`, `lbs.rs` (cell towers and multi-cell reports),
//! `wifi.rs`, `info.rs` (text, information and vendor packets), `modular.rs` (0x70),
//! `az735.rs` (long-form 0x32/0x33), `request.rs` (time and address requests) and `encode.rs`
//! (frames for tests and the load generator).

mod alarm;
mod az735;
pub mod command;
pub mod encode;
mod frame;
mod heartbeat;
mod info;
mod lbs;
mod location;
mod login;
mod modular;
mod request;
mod status;
mod wifi;

use bytes::{Buf, BytesMut};
use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeDelta, Utc};

use crate::error::{DecodeError, FrameError};
use crate::message::{Decoded, Integrity, Message, MessageKind, Mismatch};
use crate::{Item, Protocol, Session, SessionOptions};

pub use frame::crc_itu;
pub use login::{zone_offset_minutes, zone_word, Login};

use frame::{Frame, TRAILER};

/// Largest frame a session accepts unless `SessionOptions::max_frame_len` says otherwise.
///
/// A short-form frame is at most 260 bytes; long-form frames carry text replies, OBD dumps and
/// cell/Wi-Fi lists that stay well under 1 KiB in practice. A long-form length field above this
/// closes the connection ([`FrameError::Oversize`]), and no more than this many bytes are ever
/// buffered while looking for the end of a frame.
pub const DEFAULT_MAX_FRAME_LEN: usize = 1024;

/// Per-connection GT06 decoding state: the device's identity and time zone once it has logged in.
#[derive(Debug, Clone)]
pub struct Gt06Session {
    strict: bool,
    max_frame_len: usize,
    configured_offset: Option<i32>,
    device_id: Option<String>,
    stated_offset: Option<i32>,
    family: alarm::Family,
    clock: fn() -> DateTime<Utc>,
    /// The last frame cut, for [`Session::take_frame`].
    last_frame: bytes::Bytes,
}

impl Gt06Session {
    /// A session with the listener's options.
    pub fn new(options: &SessionOptions) -> Self {
        Gt06Session {
            strict: options.strict_checksum,
            max_frame_len: options.max_frame_len.unwrap_or(DEFAULT_MAX_FRAME_LEN),
            configured_offset: options.device_utc_offset_minutes,
            device_id: None,
            stated_offset: None,
            family: alarm::Family::of(options.model.as_deref()),
            clock: Utc::now,
            last_frame: bytes::Bytes::new(),
        }
    }

    /// Replaces the clock used to answer time requests (0x8A); tests and simulations pin it.
    pub fn with_clock(mut self, clock: fn() -> DateTime<Utc>) -> Self {
        self.clock = clock;
        self
    }

    /// The offset the session applies to device times, in minutes east of UTC: the configured
    /// one, else the one the login stated, else 0.
    pub fn utc_offset_minutes(&self) -> i32 {
        self.configured_offset.or(self.stated_offset).unwrap_or(0)
    }

    /// Decodes one frame that has already been cut out (a capture, `ewall decode`), from its start
    /// marker through its trailer. The frame updates the session (a login sets the device ID) as
    /// if it had arrived on the stream. Unlike the stream path, the bytes are taken as one frame
    /// even when the length field disagrees with them or the trailer is missing.
    ///
    /// # Errors
    /// A [`DecodeError`] when the bytes are not a GT06 frame, when its structure does not parse,
    /// or, in a strict session, when its checksum or length field is wrong.
    pub fn decode_frame(&mut self, bytes: &[u8]) -> Result<Decoded, DecodeError> {
        let frame = Frame::split(bytes)?;
        let consistent = frame.length_consistent();
        let length_mismatch = Mismatch::Length {
            declared: frame.declared,
            actual: frame.actual,
        };
        // Wi-Fi reports 0x17/0x69 whose length field disagrees with the frame put the access
        // point count there and carry neither serial nor CRC.
        let wifi_count =
            !frame.long && !consistent && matches!(frame.protocol, wifi::WIFI | wifi::WIFI_2);
        let (integrity, candidates): (Integrity, Vec<Layout<'_>>) = match frame.crc {
            _ if wifi_count => (
                Integrity::Mismatch(length_mismatch),
                vec![(frame.bare, None)],
            ),
            None if consistent => (Integrity::Unchecked, vec![(frame.bare, None)]),
            None => (
                Integrity::Mismatch(length_mismatch),
                vec![(frame.bare, None)],
            ),
            Some((computed, carried)) => {
                let integrity = if !consistent {
                    Integrity::Mismatch(length_mismatch)
                } else if computed != carried {
                    Integrity::Mismatch(Mismatch::Checksum {
                        expected: u32::from(computed),
                        actual: u32::from(carried),
                    })
                } else {
                    Integrity::Verified
                };
                let mut candidates = vec![(frame.content, frame.serial)];
                if computed != carried {
                    // Wrong CRC: the frame may carry no serial or CRC at all (seen on 0x10/0x11
                    // reports one byte longer than their length and on a short login).
                    candidates.push((frame.bare, None));
                }
                (integrity, candidates)
            }
        };
        if self.strict {
            match integrity {
                Integrity::Mismatch(Mismatch::Checksum { expected, actual }) => {
                    return Err(DecodeError::BadChecksum { expected, actual })
                }
                Integrity::Mismatch(Mismatch::Length { declared, actual }) => {
                    return Err(DecodeError::BadLength { declared, actual })
                }
                Integrity::Unchecked => {
                    return Err(DecodeError::Truncated {
                        what: "serial and checksum",
                        needed: frame::MIN_COUNTED,
                        available: frame.actual,
                    })
                }
                Integrity::Verified => {}
            }
        }
        let mut last_error = None;
        for (body, serial) in candidates {
            match self.decode_body(&frame, body, consistent) {
                Ok(out) => return Ok(self.finish(&frame, out, serial, integrity)),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| DecodeError::invalid("frame", "no layout fits")))
    }

    /// Decodes the content of one frame under one layout. A login updates the session only when it
    /// parses.
    fn decode_body(
        &mut self,
        frame: &Frame<'_>,
        body: &[u8],
        consistent: bool,
    ) -> Result<Out, DecodeError> {
        if frame.protocol == login::LOGIN && !frame.long {
            let login = Login::parse(body)?;
            self.device_id = Some(login.imei.clone());
            self.stated_offset = login.zone_offset_minutes();
            let mut message = Message::new(MessageKind::Login);
            message.device_id = Some(login.imei);
            return Ok(Out::ack(vec![message]));
        }
        let ctx = Ctx {
            device_id: self.device_id.as_deref(),
            offset_minutes: self.utc_offset_minutes(),
            length_field: frame.declared,
            consistent,
            family: self.family,
            now: self.clock,
        };
        if frame.long {
            decode_long(&ctx, frame.protocol, body)
        } else {
            decode_short(&ctx, frame.protocol, body)
        }
    }

    /// Turns a decoder's output into the frame's [`Decoded`], building the reply bytes.
    fn finish(
        &self,
        frame: &Frame<'_>,
        out: Out,
        serial: Option<u16>,
        integrity: Integrity,
    ) -> Decoded {
        let reply = match out.reply {
            Reply::None => None,
            Reply::Ack => serial.map(|s| frame::build(false, frame.protocol, &[], s)),
            Reply::AckLong => serial.map(|s| frame::build(true, frame.protocol, &[], s)),
            Reply::Framed {
                long,
                protocol,
                content,
            } => Some(frame::build(long, protocol, &content, serial.unwrap_or(0))),
            Reply::Raw(bytes) => Some(bytes),
        };
        Decoded {
            messages: out.messages,
            reply,
            integrity,
        }
    }
}

impl Session for Gt06Session {
    fn protocol(&self) -> Protocol {
        Protocol::Gt06
    }

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Item>, FrameError> {
        match cut(buf, self.max_frame_len)? {
            Cut::More(n) => {
                buf.reserve(n);
                Ok(None)
            }
            Cut::Garbage(skipped) => {
                buf.advance(skipped);
                Ok(Some(Item::Rejected(DecodeError::Garbage { skipped })))
            }
            Cut::Truncated { len, declared } => {
                buf.advance(len);
                Ok(Some(Item::Rejected(DecodeError::Truncated {
                    what: "frame",
                    needed: declared,
                    available: len,
                })))
            }
            Cut::Frame(len) => {
                let bytes = buf.split_to(len).freeze();
                Ok(Some(match self.decode_frame(&bytes) {
                    Ok(decoded) => {
                        self.last_frame = bytes;
                        Item::Frame(decoded)
                    }
                    Err(e) => Item::Rejected(e),
                }))
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
        self.family = alarm::Family::of(model);
    }

    fn encode_command(
        &self,
        command: &crate::Command,
        tag: u32,
        _now: DateTime<Utc>,
    ) -> Result<crate::Downlink, crate::CommandError> {
        command::encode(command, tag)
    }
}

/// One way to read a frame's content: the content bytes and the serial they come with.
type Layout<'a> = (&'a [u8], Option<u16>);

/// What the framer found at the front of the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    /// Wait for more bytes (at least this many).
    More(usize),
    /// This many bytes before the next start marker are garbage.
    Garbage(usize),
    /// A frame of this many bytes.
    Frame(usize),
    /// A frame that stops after `len` bytes because another frame starts there.
    Truncated { len: usize, declared: usize },
}

/// Finds the next frame in `buf`.
///
/// The end is where the length field says when a trailer sits there. Otherwise (the length field
/// holds a Wi-Fi count, or the device miscounted) the frame ends at the first `0D 0A`, looked for
/// only once the declared length is in the buffer, so split reads cut exactly as one read does.
fn cut(buf: &[u8], max: usize) -> Result<Cut, FrameError> {
    // Garbage is reported once the next marker shows up, or in runs of `max` bytes: the same
    // items whatever the reads look like.
    let scan = &buf[..buf.len().min(max.saturating_add(1))];
    match find_start(scan) {
        Some(0) => {}
        Some(i) => return Ok(Cut::Garbage(i)),
        None if buf.len() > max => return Ok(Cut::Garbage(max.max(1))),
        None => return Ok(Cut::More(1)),
    }
    let Some(total) = frame::declared_total(buf) else {
        return Ok(Cut::More(1));
    };
    if total > max {
        return Err(FrameError::Oversize { size: total, max });
    }
    if buf.len() < total {
        return Ok(Cut::More(total - buf.len()));
    }
    if buf.get(total - 2..total) == Some(&TRAILER[..]) {
        return Ok(Cut::Frame(total));
    }
    let header = frame::header_len(buf).unwrap_or(3);
    let window = &buf[..buf.len().min(max)];
    match find_trailer(window, header + 1) {
        Some(end) => Ok(match embedded_frame(&window[..end], header + 1) {
            Some(len) => Cut::Truncated {
                len,
                declared: total,
            },
            None => Cut::Frame(end),
        }),
        // No trailer within the maximum: the marker was not a frame start.
        None if buf.len() >= max => Ok(Cut::Garbage(1)),
        None => Ok(Cut::More(1)),
    }
}

/// Offset of the first `78 78` or `79 79`.
fn find_start(buf: &[u8]) -> Option<usize> {
    buf.windows(2)
        .position(|w| w == frame::SHORT_START || w == frame::LONG_START)
}

/// End (exclusive) of the first `0D 0A` whose `0D` is at or after `from`.
fn find_trailer(buf: &[u8], from: usize) -> Option<usize> {
    buf.get(from..)?
        .windows(2)
        .position(|w| w == TRAILER)
        .map(|i| from + i + 2)
}

/// Offset of a complete frame (its length field ending exactly at the end of `window`) starting
/// inside `window` after `from`: the frame before it was cut short.
fn embedded_frame(window: &[u8], from: usize) -> Option<usize> {
    (from..window.len()).find(|&j| {
        let rest = &window[j..];
        frame::header_len(rest).is_some() && frame::declared_total(rest) == Some(rest.len())
    })
}

/// What a message decoder hands back: the messages and which reply the device expects.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Out {
    pub messages: Vec<Message>,
    pub reply: Reply,
}

impl Out {
    /// Messages answered with the generic short-form acknowledgement.
    pub fn ack(messages: Vec<Message>) -> Self {
        Out {
            messages,
            reply: Reply::Ack,
        }
    }

    /// Messages the device expects no answer to.
    pub fn silent(messages: Vec<Message>) -> Self {
        Out {
            messages,
            reply: Reply::None,
        }
    }
}

/// The reply a frame gets.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Reply {
    /// None.
    None,
    /// `78 78 05 <type> <serial> <crc> 0D 0A`, echoing type and serial.
    Ack,
    /// The same in long form.
    AckLong,
    /// A frame of `protocol` with `content`, echoing the serial.
    Framed {
        long: bool,
        protocol: u8,
        content: Vec<u8>,
    },
    /// Exact bytes (the Wi-Fi reply has neither serial nor CRC).
    Raw(Vec<u8>),
}

/// What every message decoder needs to know about the session and the frame.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ctx<'a> {
    /// The device ID from the login, if any.
    pub device_id: Option<&'a str>,
    /// Offset of device times from UTC, in minutes east.
    pub offset_minutes: i32,
    /// The frame's length field (some models are told apart by it; Wi-Fi reports keep a count
    /// there).
    pub length_field: usize,
    /// Whether the length field agreed with the frame.
    pub consistent: bool,
    /// The device model's family, for alarm codes some models read otherwise.
    pub family: alarm::Family,
    /// The clock for server-time replies.
    pub now: fn() -> DateTime<Utc>,
}

impl Ctx<'_> {
    /// A message of `kind` carrying the session's device ID.
    pub fn message(&self, kind: MessageKind) -> Message {
        let mut message = Message::new(kind);
        message.device_id = self.device_id.map(str::to_owned);
        message
    }

    /// A device-local date and time (years since 2000) converted to UTC, or `None` when the
    /// fields do not form a date.
    pub fn utc(&self, fields: [u8; 6]) -> Option<DateTime<Utc>> {
        self.utc_from_local(local_time(fields)?)
    }

    /// A device-local time converted to UTC with the session's offset.
    pub fn utc_from_local(&self, local: NaiveDateTime) -> Option<DateTime<Utc>> {
        let offset = TimeDelta::try_minutes(i64::from(self.offset_minutes))?;
        Some(local.checked_sub_signed(offset)?.and_utc())
    }
}

/// `YY MM DD hh mm ss` (binary, years since 2000) as a date and time, if valid.
pub(crate) fn local_time([y, mo, d, h, mi, s]: [u8; 6]) -> Option<NaiveDateTime> {
    NaiveDate::from_ymd_opt(2000 + i32::from(y), u32::from(mo), u32::from(d))?.and_hms_opt(
        u32::from(h),
        u32::from(mi),
        u32::from(s),
    )
}

/// Long-form (`79 79`) frames: a handful of their own types; the short-form types decode as usual.
fn decode_long(ctx: &Ctx<'_>, protocol: u8, body: &[u8]) -> Result<Out, DecodeError> {
    match protocol {
        info::STRING_INFO => info::text(ctx, body),
        az735::GPS | az735::ALARM => az735::decode(ctx, protocol, body),
        modular::GPS_MODULAR => modular::decode(ctx, body),
        info::INFO => info::information(ctx, body),
        info::SERIAL_DATA | info::OBD | info::PERIPHERAL | info::VENDOR_STATUS => {
            Ok(Out::silent(vec![ctx.message(MessageKind::Other)]))
        }
        info::MULTIMEDIA => Ok(Out {
            messages: vec![ctx.message(MessageKind::Other)],
            reply: Reply::AckLong,
        }),
        _ if is_short_report(protocol) => decode_short(ctx, protocol, body),
        // Unknown long-form packets get neither messages nor an acknowledgement.
        _ => Ok(Out::silent(Vec::new())),
    }
}

/// Short-form types we decode (beyond login), for routing long-form frames of the same types.
fn is_short_report(protocol: u8) -> bool {
    location::is_location(protocol)
        || alarm::is_status_report(protocol)
        || lbs::is_multi_cell(protocol)
        || matches!(protocol, heartbeat::STATUS | heartbeat::HEARTBEAT)
}

/// Short-form (`78 78`) frames.
fn decode_short(ctx: &Ctx<'_>, protocol: u8, body: &[u8]) -> Result<Out, DecodeError> {
    match protocol {
        request::TIME_REQUEST => Ok(request::time(ctx)),
        request::ADDRESS_REQUEST => Ok(request::address()),
        heartbeat::STATUS | heartbeat::HEARTBEAT if body.is_empty() => {
            Ok(Out::ack(vec![ctx.message(MessageKind::Heartbeat)]))
        }
        // A report with no content (seen as a bare 0x12): acknowledged, nothing to report.
        _ if body.is_empty() => Ok(Out::ack(Vec::new())),
        heartbeat::STATUS | heartbeat::HEARTBEAT => heartbeat::decode(ctx, protocol, body),
        heartbeat::STATUS_2 => match heartbeat::status_2(ctx, body) {
            Some(out) => Ok(out),
            None => location::decode(ctx, protocol, body),
        },
        alarm::FENCE_SINGLE if !alarm::fence_fits(body) => heartbeat::status_3(ctx, body),
        lbs::WIFI_3 if !lbs::wifi_3_fits(body) => alarm::decode(ctx, alarm::LW4G_STATUS, body),
        wifi::WIFI if ctx.consistent => location::decode(ctx, location::GPS_LBS_RFID, body),
        wifi::WIFI | wifi::WIFI_2 => wifi::decode(ctx, protocol, body),
        wifi::WIFI_4 => wifi::wifi_4(ctx, body),
        lbs::LBS_MULTIPLE_3 if location::is_sr411(body) => location::decode(ctx, protocol, body),
        location::X1_GPS => location::x1(ctx, body),
        p if location::is_location(p) => location::decode(ctx, p, body),
        p if alarm::is_status_report(p) => alarm::decode(ctx, p, body),
        alarm::LBS_STATUS => alarm::lbs_status(ctx, body),
        alarm::LBS_ALARM => alarm::lbs_alarm(ctx, body),
        alarm::ALARM => alarm::event(ctx, body),
        lbs::LBS_ADDRESS => lbs::address(ctx, body),
        p if lbs::is_multi_cell(p) => lbs::multi(ctx, p, body),
        info::STRING => info::string(ctx, body),
        info::INFO => info::information(ctx, body),
        info::BMS => Ok(Out::ack(vec![ctx.message(MessageKind::Status)])),
        0x80..=0x82 => Ok(Out::silent(vec![ctx.message(MessageKind::CommandReply)])),
        // Unknown but well-formed: acknowledged, nothing to report.
        _ => Ok(Out::ack(Vec::new())),
    }
}

#[cfg(test)]
mod tests;

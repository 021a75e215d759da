//! Sans-IO codecs for the GPS tracker protocols ewall accepts: bytes in, typed messages and
//! reply bytes out. No sockets, no runtime, no clock beyond what a frame lacks.
//!
//! | module | protocol | transport |
//! | --- | --- | --- |
//! | [`gt06`] | GT06 / Concox (0x7878, 0x7979), CRC-ITU | TCP |
//! | [`jt808`] | JT/T 808-2013 and -2019, 0x7e framing, XOR check | TCP |
//! | [`h02`] | H02 text `*HQ,…#` and binary `$` records | TCP |
//! | [`watch`] | smartwatch "3G" `[XX*id*len*…]` | TCP |
//! | [`osmand`] | OsmAnd HTTP query and JSON body | HTTP |
//! | [`json`] | JSON positions of MQTT gateways, one object or an array per publish | MQTT |
//!
//! A stream protocol is read through a [`Session`], one per connection: it cuts frames out of a
//! growing buffer, decodes each into a [`Decoded`] and remembers what the device told it earlier
//! (its identity, its time zone). A frame that is bad but cleanly delimited comes out as
//! [`Item::Rejected`] and the stream goes on; only a [`FrameError`] ends the connection.
//!
//! ```
//! use bytes::BytesMut;
//! use ewall_protocol::{Item, Protocol, SessionOptions};
//!
//! let mut session = Protocol::Gt06.session(&SessionOptions::default()).unwrap();
//! // A GT06 login from IMEI 864717003283581 with serial 9.
//! let mut buf = BytesMut::from(&[
//!     0x78, 0x78, 0x0d, 0x01, 0x08, 0x64, 0x71, 0x70, 0x03, 0x28, 0x35, 0x81,
//!     0x00, 0x09, 0x3f, 0x04, 0x0d, 0x0a,
//! ][..]);
//! let Some(Item::Frame(decoded)) = session.decode(&mut buf).unwrap() else { panic!() };
//! assert_eq!(decoded.messages[0].device_id.as_deref(), Some("864717003283581"));
//! assert_eq!(decoded.reply.unwrap(), [0x78, 0x78, 0x05, 0x01, 0x00, 0x09, 0x55, 0x94, 0x0d, 0x0a]);
//! ```

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod command;
pub mod error;
pub mod gt06;
pub mod h02;
pub mod json;
pub mod jt808;
pub mod message;
pub mod osmand;
pub mod reader;
#[cfg(test)]
mod test_support;
pub mod watch;

use std::fmt;
use std::str::FromStr;

use bytes::{Bytes, BytesMut};

pub use command::{Command, CommandError, CommandKind, CommandReply, Downlink, ReplyRef};
pub use error::{DecodeError, FrameError};
pub use message::{
    Alarm, CellTower, Decoded, DeviceStatus, Integrity, Message, MessageKind, Mismatch, Position,
    PositionSource, WifiAccessPoint,
};

/// What a [`Session`] yields for each frame it cuts out.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// A frame that decoded.
    Frame(Decoded),
    /// A frame (or run of garbage) that was skipped; count it and go on.
    Rejected(DecodeError),
}

/// Per-connection decoding state of a stream protocol.
///
/// The contract follows tokio-util's `Decoder`: `Ok(None)` asks for more bytes, an item is
/// returned once a whole frame is in `buf` (and removed from it), and `Err` means the stream
/// cannot be resynchronised and the connection should be closed.
pub trait Session: Send {
    /// Which protocol this session speaks.
    fn protocol(&self) -> Protocol;

    /// Cuts the next frame from the front of `buf` and decodes it.
    ///
    /// # Errors
    /// [`FrameError`] when the stream is corrupt beyond recovery (e.g. an oversize frame).
    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Item>, FrameError>;

    /// The device identifier learnt from a login or frame header, once known.
    fn device_id(&self) -> Option<&str>;

    /// The bytes, exactly as received, of the frame the last [`Item::Frame`] was decoded from
    /// (escapes and checksum included), taken out of the session: the service keeps them as
    /// evidence. Shares the stream buffer's memory; empty when the protocol does not keep them
    /// or after they were taken.
    fn take_frame(&mut self) -> Bytes {
        Bytes::new()
    }

    /// Whether the device is ready to be sent commands: it has identified itself and, where
    /// the protocol has such a step, finished it (a JT/T 808 terminal that has registered but
    /// not yet authenticated is not).
    fn ready_for_commands(&self) -> bool {
        self.device_id().is_some()
    }

    /// Tells the session the device's model, once the service knows which device this is, so
    /// that codes whose meaning depends on the model decode right (see each protocol's README).
    /// Protocols without model-specific codes ignore it.
    fn set_model(&mut self, model: Option<&str>) {
        let _ = model;
    }

    /// Encodes `command` for the device on this connection, numbered `tag` (the caller's, so
    /// the answer can be matched: see [`command::reply_ref`]). `now` is the server time, which
    /// some command formats carry.
    ///
    /// # Errors
    /// [`CommandError::Unsupported`] when the protocol cannot carry it,
    /// [`CommandError::Invalid`] for arguments the wire cannot carry, and
    /// [`CommandError::NoIdentity`] before the device has identified itself.
    fn encode_command(
        &self,
        command: &Command,
        tag: u32,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Downlink, CommandError> {
        let _ = (tag, now);
        command::supports(self.protocol(), command.kind())?;
        Err(CommandError::Invalid(format!(
            "{} sessions do not encode commands",
            self.protocol()
        )))
    }
}

/// Options a listener passes to each session it creates. The default is lenient, with each
/// protocol's own maximum frame size and time-zone convention.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionOptions {
    /// Reject frames whose checksum or length field is wrong instead of accepting and flagging
    /// them.
    pub strict_checksum: bool,
    /// Largest frame accepted, in bytes; `None` uses the protocol's own maximum.
    pub max_frame_len: Option<usize>,
    /// Offset of device-local times from UTC, in minutes, when the device does not state one.
    /// `None` uses the protocol's convention (GMT+8 for JT/T 808, UTC for the others).
    pub device_utc_offset_minutes: Option<i32>,
    /// The device model, when known before the first frame (captures, tests); the service sets
    /// it with [`Session::set_model`] once the device has identified itself.
    pub model: Option<String>,
}

/// The protocols ewall speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// GT06 / Concox.
    Gt06,
    /// JT/T 808.
    Jt808,
    /// H02.
    H02,
    /// Smartwatch "3G" protocol.
    Watch,
    /// OsmAnd HTTP protocol.
    Osmand,
    /// JSON positions published by MQTT gateways.
    Json,
}

impl Protocol {
    /// Every protocol, in listing order.
    pub const ALL: [Protocol; 6] = [
        Protocol::Gt06,
        Protocol::Jt808,
        Protocol::H02,
        Protocol::Watch,
        Protocol::Osmand,
        Protocol::Json,
    ];

    /// The lower-case name used in config keys, metrics labels and the CLI.
    pub fn name(&self) -> &'static str {
        match self {
            Protocol::Gt06 => "gt06",
            Protocol::Jt808 => "jt808",
            Protocol::H02 => "h02",
            Protocol::Watch => "watch",
            Protocol::Osmand => "osmand",
            Protocol::Json => "json",
        }
    }

    /// Whether the protocol is text on the wire (decode accepts it as text as well as hex).
    pub fn is_text(&self) -> bool {
        matches!(
            self,
            Protocol::H02 | Protocol::Watch | Protocol::Osmand | Protocol::Json
        )
    }

    /// A new per-connection session for a stream protocol; `None` for OsmAnd, which is HTTP and
    /// decoded per request with [`osmand::decode_request`], and for JSON, whose payloads the
    /// broker delimits ([`json::decode`]).
    pub fn session(&self, options: &SessionOptions) -> Option<Box<dyn Session>> {
        match self {
            Protocol::Gt06 => Some(Box::new(gt06::Gt06Session::new(options))),
            Protocol::Jt808 => Some(Box::new(jt808::Jt808Session::new(options))),
            Protocol::H02 => Some(Box::new(h02::H02Session::new(options))),
            Protocol::Watch => Some(Box::new(watch::WatchSession::new(options))),
            Protocol::Osmand | Protocol::Json => None,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Error for an unknown protocol name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown protocol {0:?}; expected one of gt06, jt808, h02, watch, osmand, json")]
pub struct UnknownProtocol(pub String);

impl FromStr for Protocol {
    type Err = UnknownProtocol;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Protocol::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownProtocol(s.to_owned()))
    }
}

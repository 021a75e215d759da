//! The tokio-util codec every TCP listener reads through: a thin adapter from the sans-IO
//! [`Session`] of the protocol crate to `Decoder`, and raw reply bytes as the `Encoder` side.
//!
//! Framing and decoding stay in the protocol crate; this file only moves bytes and errors across.

use bytes::{BufMut, BytesMut};
use ewall_protocol::{Command, CommandError, Downlink, FrameError, Item, Session};
use tokio_util::codec::{Decoder, Encoder};

/// Errors that end a connection.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The stream cannot be resynchronised.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The socket failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The peer closed the connection in the middle of a frame.
    #[error("connection closed with {0} bytes of an unfinished frame")]
    Unfinished(usize),
}

/// Decodes frames with a protocol session; encodes replies as given.
pub struct SessionCodec {
    session: Box<dyn Session>,
}

impl SessionCodec {
    /// A codec around a fresh session.
    pub fn new(session: Box<dyn Session>) -> Self {
        SessionCodec { session }
    }

    /// The device the session has identified, if any.
    pub fn device_id(&self) -> Option<&str> {
        self.session.device_id()
    }

    /// Whether the session's device takes commands yet.
    pub fn ready_for_commands(&self) -> bool {
        self.session.ready_for_commands()
    }

    /// The raw bytes of the frame just yielded (see [`Session::take_frame`]). Framed decodes
    /// one item per `next()`, so after a frame item this is that frame.
    pub fn take_frame(&mut self) -> bytes::Bytes {
        self.session.take_frame()
    }

    /// Tells the session the device's model.
    pub fn set_model(&mut self, model: Option<&str>) {
        self.session.set_model(model);
    }

    /// Encodes a downlink command with the session (which knows what the frame must echo).
    ///
    /// # Errors
    /// The protocol's [`CommandError`].
    pub fn encode_command(
        &self,
        command: &Command,
        tag: u32,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Downlink, CommandError> {
        self.session.encode_command(command, tag, now)
    }
}

impl Decoder for SessionCodec {
    type Item = Item;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Item>, CodecError> {
        Ok(self.session.decode(src)?)
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Item>, CodecError> {
        match self.decode(buf)? {
            Some(item) => Ok(Some(item)),
            None if buf.is_empty() => Ok(None),
            None => {
                let left = buf.len();
                buf.clear();
                Err(CodecError::Unfinished(left))
            }
        }
    }
}

impl Encoder<Vec<u8>> for SessionCodec {
    type Error = CodecError;

    fn encode(&mut self, reply: Vec<u8>, dst: &mut BytesMut) -> Result<(), CodecError> {
        dst.put_slice(&reply);
        Ok(())
    }
}

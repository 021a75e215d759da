//! gt06: placeholder until the decoder lands.

use bytes::BytesMut;

use crate::{FrameError, Item, Protocol, Session, SessionOptions};

/// Per-connection gt06 decoding state.
#[derive(Debug)]
pub struct Gt06Session {}

impl Gt06Session {
    /// A session with the listener's options.
    pub fn new(_options: &SessionOptions) -> Self {
        Gt06Session {}
    }
}

impl Session for Gt06Session {
    fn protocol(&self) -> Protocol {
        Protocol::Gt06
    }

    fn decode(&mut self, _buf: &mut BytesMut) -> Result<Option<Item>, FrameError> {
        Ok(None)
    }

    fn device_id(&self) -> Option<&str> {
        None
    }
}

//! jt808: placeholder until the decoder lands.

use bytes::BytesMut;

use crate::{FrameError, Item, Protocol, Session, SessionOptions};

/// Per-connection jt808 decoding state.
#[derive(Debug)]
pub struct Jt808Session {}

impl Jt808Session {
    /// A session with the listener's options.
    pub fn new(_options: &SessionOptions) -> Self {
        Jt808Session {}
    }
}

impl Session for Jt808Session {
    fn protocol(&self) -> Protocol {
        Protocol::Jt808
    }

    fn decode(&mut self, _buf: &mut BytesMut) -> Result<Option<Item>, FrameError> {
        Ok(None)
    }

    fn device_id(&self) -> Option<&str> {
        None
    }
}

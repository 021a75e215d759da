//! watch: placeholder until the decoder lands.

use bytes::BytesMut;

use crate::{FrameError, Item, Protocol, Session, SessionOptions};

/// Per-connection watch decoding state.
#[derive(Debug)]
pub struct WatchSession {}

impl WatchSession {
    /// A session with the listener's options.
    pub fn new(_options: &SessionOptions) -> Self {
        WatchSession {}
    }
}

impl Session for WatchSession {
    fn protocol(&self) -> Protocol {
        Protocol::Watch
    }

    fn decode(&mut self, _buf: &mut BytesMut) -> Result<Option<Item>, FrameError> {
        Ok(None)
    }

    fn device_id(&self) -> Option<&str> {
        None
    }
}

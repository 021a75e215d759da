//! h02: decoder being assembled; the session still yields nothing.

#[allow(dead_code)]
mod binary;
pub mod encode;
#[allow(dead_code)]
mod fields;
#[allow(dead_code)]
mod frame;
#[allow(dead_code)]
mod heartbeat;
#[allow(dead_code)]
mod link;
#[allow(dead_code)]
mod location;
#[allow(dead_code)]
mod nbr;
#[allow(dead_code)]
mod status;
#[allow(dead_code)]
mod text;
#[allow(dead_code)]
mod v3;
#[allow(dead_code)]
mod vp1;

use bytes::BytesMut;

use crate::{FrameError, Item, Protocol, Session, SessionOptions};

/// Per-connection h02 decoding state.
#[derive(Debug)]
pub struct H02Session {}

impl H02Session {
    /// A session with the listener's options.
    pub fn new(_options: &SessionOptions) -> Self {
        H02Session {}
    }
}

impl Session for H02Session {
    fn protocol(&self) -> Protocol {
        Protocol::H02
    }

    fn decode(&mut self, _buf: &mut BytesMut) -> Result<Option<Item>, FrameError> {
        Ok(None)
    }

    fn device_id(&self) -> Option<&str> {
        None
    }
}

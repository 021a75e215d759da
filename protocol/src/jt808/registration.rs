//! Terminal registration 0x0100 and authentication 0x0102.
//!
//! In: the bodies (province, city, manufacturer, model, terminal ID, plate for 0x0100; the
//! authentication code, and in 2019 also IMEI and firmware, for 0x0102). Out: a
//! `Registration` or `Authentication` message; the session answers 0x0100 with 0x8100 carrying
//! [`auth_code`] and 0x0102 with 0x8001. We accept every authentication: whether a device may
//! report is decided by the service's device registry, not by this code.

use super::Ctx;
use crate::message::{Message, MessageKind};

/// The authentication code handed out in 0x8100: the device identifier itself (the terminal
/// number's digits, see [`super::header::Terminal::device_id`]). It is deterministic, so a
/// device that registers again, or talks to another ewall node, gets the same code.
pub fn auth_code(device_id: &str) -> String {
    device_id.to_owned()
}

/// 0x0100: nothing in the body changes what we do.
pub(crate) fn decode_registration(_body: &[u8], ctx: &Ctx<'_>) -> Message {
    ctx.message(MessageKind::Registration)
}

/// 0x0102: nothing in the body changes what we do.
pub(crate) fn decode_authentication(_body: &[u8], ctx: &Ctx<'_>) -> Message {
    ctx.message(MessageKind::Authentication)
}

//! Heartbeat 0x0002 and logout 0x0003.
//!
//! In: the body, empty in the standard; some wristbands append battery level, signal and a
//! status byte to the heartbeat. Out: a `Heartbeat` (with those values when present) or
//! `Logout` message; the session answers both with 0x8001.

use super::Ctx;
use crate::message::{Message, MessageKind};

/// 0x0002, with the optional vendor tail `battery % u8, signal u8, status u8`.
pub(crate) fn decode_heartbeat(body: &[u8], ctx: &Ctx<'_>) -> Message {
    let mut msg = ctx.message(MessageKind::Heartbeat);
    if let [battery, signal, _status, ..] = *body {
        if battery <= 100 {
            msg.status.battery_pct = Some(battery);
        }
        msg.status.gsm_signal = Some(signal);
    }
    msg
}

/// 0x0003.
pub(crate) fn decode_logout(ctx: &Ctx<'_>) -> Message {
    ctx.message(MessageKind::Logout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_with_and_without_the_vendor_tail() {
        let mut stated = None;
        let ctx = Ctx {
            device_id: "1",
            override_offset: None,
            stated_offset: &mut stated,
            model: Default::default(),
            now: chrono::DateTime::UNIX_EPOCH,
        };
        let plain = decode_heartbeat(&[], &ctx);
        assert_eq!(plain.status.battery_pct, None);
        let tail = decode_heartbeat(
            &[
                0x50, // battery 80 %
                0x1f, // signal 31
                0x00, // status
            ],
            &ctx,
        );
        assert_eq!(tail.status.battery_pct, Some(80));
        assert_eq!(tail.status.gsm_signal, Some(31));
    }
}

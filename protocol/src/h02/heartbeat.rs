//! `V0` and `HTBT` keep-alives: `*HQ,<ID>,V0#`, `*HQ,<ID>,HTBT#` or `*HQ,<ID>,HTBT,<battery %>#`.
//!
//! In: a split sentence. Out: one [`MessageKind::Heartbeat`] message (with the battery level when
//! `HTBT` carries one) and the reply the device waits for: its own sentence up to and including
//! the type, then `#` (`*HQ,<ID>,HTBT#`).

use crate::error::DecodeError;
use crate::message::{Message, MessageKind};

use super::fields;
use super::text::{Output, Sentence};

/// Decodes a heartbeat and builds its echo reply.
///
/// # Errors
/// [`DecodeError::InvalidField`] when `HTBT` carries a battery level that is not 0–100.
pub(super) fn decode(sentence: &Sentence<'_>) -> Result<Output, DecodeError> {
    let mut message = Message::new(MessageKind::Heartbeat);
    if sentence.kind() == b"HTBT" && !sentence.field(3).is_empty() {
        let battery: u8 = fields::uint_as(sentence.field(3), "battery")?;
        if battery > 100 {
            return Err(DecodeError::invalid(
                "battery",
                format!("{battery} is above 100 %"),
            ));
        }
        message.status.battery_pct = Some(battery);
    }
    Ok(Output {
        messages: vec![message],
        reply: Some(sentence.echo_through(2)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn htbt_with_battery_is_echoed_without_it() {
        let s = Sentence::parse(b"*HQ,135790246811220,HTBT,100#").unwrap();
        let out = decode(&s).unwrap();
        assert_eq!(out.messages[0].kind, MessageKind::Heartbeat);
        assert_eq!(out.messages[0].status.battery_pct, Some(100));
        assert_eq!(
            out.reply.as_deref(),
            Some(&b"*HQ,135790246811220,HTBT#"[..])
        );
    }

    #[test]
    fn v0_is_echoed_up_to_the_type() {
        // The maker code is echoed as sent.
        let s = Sentence::parse(b"*hq,4109198974,V0,whatever#").unwrap();
        let out = decode(&s).unwrap();
        assert_eq!(out.messages[0].status.battery_pct, None);
        assert_eq!(out.reply.as_deref(), Some(&b"*hq,4109198974,V0#"[..]));
    }

    #[test]
    fn impossible_battery_is_rejected() {
        let s = Sentence::parse(b"*HQ,1,HTBT,101#").unwrap();
        assert!(decode(&s).is_err());
    }
}

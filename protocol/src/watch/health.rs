//! Health readings: `PULSE`, `HEART`, `BLOOD`, `BPHRT`, `TEMP`, `btemp2`, `oxygen` (any case).
//!
//! In: the header. Out: one [`MessageKind::Health`] message with the device ID and no reply.
//! The readings themselves (heart rate, blood pressure, body temperature, SpO2) are not part of
//! the service's model and are not kept.

use crate::{Decoded, Integrity, Message, MessageKind};

use super::header::Header;

/// Message types that carry health readings.
const HEALTH_TYPES: [&str; 7] = [
    "PULSE", "HEART", "BLOOD", "BPHRT", "TEMP", "BTEMP2", "OXYGEN",
];

/// Whether `kind` is one of the health types.
pub(crate) fn is_health(kind: &str) -> bool {
    HEALTH_TYPES.iter().any(|t| t.eq_ignore_ascii_case(kind))
}

/// A health message, unanswered.
pub(crate) fn decode(header: &Header<'_>) -> Decoded {
    let mut message = Message::new(MessageKind::Health);
    message.device_id = Some(header.id.to_owned());
    Decoded {
        messages: vec![message],
        reply: None,
        integrity: Integrity::Unchecked,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_types_in_any_case() {
        for kind in [
            "heart", "PULSE", "bphrt", "btemp2", "oxygen", "TEMP", "BLOOD",
        ] {
            assert!(is_health(kind), "{kind}");
        }
        assert!(!is_health("UD"));
        let header = Header::parse(b"[3G*6005412902*0008*heart,71]").unwrap();
        let d = decode(&header);
        assert_eq!(d.messages[0].kind, MessageKind::Health);
        assert_eq!(d.reply, None);
    }
}

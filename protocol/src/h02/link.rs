//! `LINK`: a status report from wearables.
//!
//! ```text
//! *HQ,ID,LINK,hhmmss,RSSI,SATELLITES,BATTERY%,STEPS,TURNOVERS,ddmmyy,STATUS#
//! ```
//!
//! In: a split sentence. Out: one [`MessageKind::Status`] message with signal, battery and step
//! count, and the status word's alarms. The satellite count has no place in a message without a
//! position and is not kept; nor are turnovers. No reply.

use crate::error::DecodeError;
use crate::message::{Message, MessageKind};

use super::fields;
use super::status;
use super::text::{Output, Sentence};

/// Decodes a `LINK` status report.
///
/// # Errors
/// [`DecodeError::InvalidField`] when a field is missing or malformed.
pub(super) fn decode(sentence: &Sentence<'_>) -> Result<Output, DecodeError> {
    sentence.require(10, "status")?;
    let mut message = Message::new(MessageKind::Status);
    message.status.gsm_signal = Some(fields::uint_as(sentence.field(4), "rssi")?);
    fields::uint(sentence.field(5), "satellites")?;
    let battery: u8 = fields::uint_as(sentence.field(6), "battery")?;
    message.status.battery_pct = (battery <= 100).then_some(battery);
    message.status.steps = Some(fields::uint_as(sentence.field(7), "steps")?);
    status::apply(fields::status_word(sentence.field(10))?, &mut message);
    Ok(Output::one(message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_signal_battery_and_steps() {
        let s = Sentence::parse(
            concat!(
                "*HQ,1600068860,LINK,",
                "112137,",          // time (not used)
                "20,8,67,",         // signal, satellites, battery %
                "1234,0,",          // steps, turnovers
                "081116,FFFFFBFF#"  // date, status
            )
            .as_bytes(),
        )
        .unwrap();
        let m = &decode(&s).unwrap().messages[0];
        assert_eq!(m.kind, MessageKind::Status);
        assert_eq!(m.status.gsm_signal, Some(20));
        assert_eq!(m.status.battery_pct, Some(67));
        assert_eq!(m.status.steps, Some(1234));
        assert_eq!(m.status.ignition, Some(false));
    }

    #[test]
    fn short_sentence_is_rejected() {
        let s = Sentence::parse(b"*HQ,1,LINK,112137,20,8,67#").unwrap();
        assert!(decode(&s).is_err());
    }
}

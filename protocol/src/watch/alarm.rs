//! `AL`, `AL_LTE`, `ALCUSTOMER1`, ...: an alarm with a position body, answered with `AL`; and
//! the alarm bits of the status word that every position body carries.
//!
//! In: the body after the type. Out: one [`MessageKind::Alarm`] message. An alarm is never
//! dropped because its fix is unreadable: the message then comes without a position.

use chrono::{DateTime, Utc};

use crate::{Alarm, Decoded, Integrity, Message, MessageKind};

use super::header::Header;
use super::location::Report;

/// Status-word bits that mean an alarm, most urgent first. Several may be set at once and all
/// are reported.
const ALARM_BITS: [(u32, Alarm); 11] = [
    (16, Alarm::Sos),
    (20, Alarm::Removal),
    (21, Alarm::Fall),
    (22, Alarm::Fall),
    (14, Alarm::PowerCut),
    (0, Alarm::LowBattery),
    (17, Alarm::LowBattery),
    (1, Alarm::GeofenceExit),
    (18, Alarm::GeofenceExit),
    (2, Alarm::GeofenceEnter),
    (19, Alarm::GeofenceEnter),
];

/// The alarms a status word raises, each once, most urgent first.
pub(crate) fn from_status_word(word: u32) -> Vec<Alarm> {
    let mut alarms = Vec::new();
    for (bit, alarm) in ALARM_BITS {
        if word & (1 << bit) != 0 && !alarms.contains(&alarm) {
            alarms.push(alarm);
        }
    }
    alarms
}

/// Decodes an `AL*` frame: the alarm message and the `AL` acknowledgement.
pub(crate) fn decode(
    header: &Header<'_>,
    body: &[u8],
    offset_minutes: i32,
    now: DateTime<Utc>,
) -> Decoded {
    let report = Report::parse(body, false, offset_minutes, now);
    let mut message: Message = report.into_message(MessageKind::Alarm, header.id);
    if message.alarms.is_empty() {
        message.alarms.push(Alarm::General);
    }
    Decoded {
        messages: vec![message],
        reply: Some(header.reply("AL")),
        integrity: Integrity::Unchecked,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_bits() {
        assert_eq!(from_status_word(0), vec![]);
        assert_eq!(from_status_word(0x0001_0000), vec![Alarm::Sos]);
        assert_eq!(from_status_word(0x0010_0000), vec![Alarm::Removal]);
        assert_eq!(from_status_word(0x0060_0000), vec![Alarm::Fall]);
        assert_eq!(from_status_word(0x0000_4000), vec![Alarm::PowerCut]);
        // low battery (bit 0) does not hide SOS (bit 16)
        assert_eq!(
            from_status_word(0x0001_0001),
            vec![Alarm::Sos, Alarm::LowBattery]
        );
        assert_eq!(
            from_status_word(0x000c_0006),
            vec![Alarm::GeofenceExit, Alarm::GeofenceEnter]
        );
        // bit 4 is "moving", not an alarm
        assert_eq!(from_status_word(0x0000_0010), vec![]);
    }

    #[test]
    fn alarm_without_bits_is_general_and_acknowledged() {
        let frame = b"[3G*8800000015*0010*AL,bad,fields]";
        let header = Header::parse(frame).unwrap();
        let decoded = decode(&header, b"bad,fields", 0, DateTime::UNIX_EPOCH);
        let m = &decoded.messages[0];
        assert_eq!(m.kind, MessageKind::Alarm);
        assert_eq!(m.alarms, vec![Alarm::General]);
        assert_eq!(m.position, None);
        assert_eq!(m.device_id.as_deref(), Some("8800000015"));
        assert_eq!(decoded.reply.unwrap(), b"[3G*8800000015*0002*AL]".to_vec());
    }
}

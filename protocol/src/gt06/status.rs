//! The terminal-information byte and the status block that follow the position and cell in
//! status-bearing reports (0x13, 0x16, 0x19, 0x26, 0x27, 0xA4, 0xA5 …).
//!
//! ```text
//! info u8 | voltage level u8 | GSM signal u8 | alarm u8 | language u8
//! info: bit 1 ACC, bit 2 charging, bits 3-5 alarm code, bit 6 GPS tracking, bit 7 relay cut
//! ```
//! In: the block's bytes. Out: battery, charging, ignition, signal and alarms set on a message.

use crate::error::DecodeError;
use crate::message::{Alarm, Message};
use crate::reader::Reader;

use super::alarm;

/// Terminal-information bit: ACC (ignition) on.
pub(crate) const INFO_ACC: u8 = 0x02;
/// Terminal-information bit: charging / on external power.
pub(crate) const INFO_CHARGING: u8 = 0x04;
/// Terminal-information bit: GPS tracking on.
pub(crate) const INFO_GPS_TRACKING: u8 = 0x40;

/// Sets ignition, charging and the alarm coded in bits 3-5 of a terminal-information byte.
pub(crate) fn apply_info(message: &mut Message, info: u8) {
    message.status.ignition = Some(info & INFO_ACC != 0);
    message.status.charging = Some(info & INFO_CHARGING != 0);
    if let Some(a) = alarm::from_info(info) {
        push_alarm(message, a);
    }
}

/// Battery percentage from the voltage-level byte: levels 0-6 are scaled to percent, values up to
/// 100 are already percent, anything else is not a battery reading.
pub(crate) fn battery_pct(level: u8) -> Option<u8> {
    match level {
        0..=6 => u8::try_from(u16::from(level) * 100 / 6).ok(),
        7..=100 => Some(level),
        _ => None,
    }
}

/// Adds an alarm unless the message already carries it.
pub(crate) fn push_alarm(message: &mut Message, a: Alarm) {
    if !message.alarms.contains(&a) {
        message.alarms.push(a);
    }
}

/// Reads the status block: info, voltage level and GSM signal, then the alarm and language bytes
/// when present. On 0x27 and 0xA4 (`extended_alarm`) a language byte with a non-zero high
/// nibble extends the alarm code beyond the table; such codes are not mapped.
///
/// # Errors
/// [`DecodeError::Truncated`] when the first three bytes are missing.
pub(crate) fn read_block(
    r: &mut Reader<'_>,
    message: &mut Message,
    extended_alarm: bool,
    family: alarm::Family,
) -> Result<(), DecodeError> {
    let info = r.u8("terminal information")?;
    apply_info(message, info);
    let level = r.u8("voltage level")?;
    message.status.battery_pct = battery_pct(level);
    message.status.gsm_signal = Some(r.u8("gsm signal")?);
    if r.remaining() == 0 {
        return Ok(());
    }
    let code = r.u8("alarm")?;
    let language = if r.remaining() > 0 {
        r.u8("language")?
    } else {
        0
    };
    if !(extended_alarm && language >> 4 != 0) {
        if let Some(a) = alarm::from_code_for(code, family) {
            push_alarm(message, a);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::MessageKind;

    #[test]
    fn battery_levels_scale_to_percent() {
        assert_eq!(battery_pct(0), Some(0));
        assert_eq!(battery_pct(3), Some(50));
        assert_eq!(battery_pct(5), Some(83));
        assert_eq!(battery_pct(6), Some(100));
        assert_eq!(battery_pct(93), Some(93));
        assert_eq!(battery_pct(0xf0), None);
    }

    #[test]
    fn reads_info_level_signal_alarm_and_language() {
        let block = [
            0x7c, // info: charging, ACC off, bits 3-5 = 7 (removed)
            0x05, // voltage level 5
            0x03, // GSM signal
            0x01, // alarm: SOS
            0x02, // language
        ];
        let mut m = Message::new(MessageKind::Alarm);
        read_block(
            &mut Reader::new(&block),
            &mut m,
            false,
            alarm::Family::Standard,
        )
        .unwrap();
        assert_eq!(m.status.battery_pct, Some(83));
        assert_eq!(m.status.charging, Some(true));
        assert_eq!(m.status.ignition, Some(false));
        assert_eq!(m.status.gsm_signal, Some(3));
        assert_eq!(m.alarms, vec![Alarm::Removal, Alarm::Sos]);
    }

    #[test]
    fn an_extended_alarm_code_is_not_taken_from_the_table() {
        // info, level, signal, alarm 0x01, language 0x12 (high nibble extends the code)
        let block = [0x00, 0x06, 0x04, 0x01, 0x12];
        let mut m = Message::new(MessageKind::Alarm);
        read_block(
            &mut Reader::new(&block),
            &mut m,
            true,
            alarm::Family::Standard,
        )
        .unwrap();
        assert!(m.alarms.is_empty());
    }
}

//! The H02 status word: 32 bits, active-low, sent as eight hex digits (text) or four bytes
//! (binary). In: the word. Out: the alarms it raises and the ignition line, written onto a
//! [`Message`].
//!
//! | bit | when clear (0) | when set (1) |
//! | --- | --- | --- |
//! | 0 | vibration alarm | |
//! | 1 | SOS | |
//! | 2 | overspeed alarm | |
//! | 19 | external power cut | |
//! | 10 | | ignition on |
//!
//! Some firmwares also clear bit 18 for SOS, but many devices send `FFFBFFFF` in ordinary
//! reports (13 of the reference captures do, none of them an emergency). Reading bit 18 as SOS
//! would put a false emergency in front of an operator on every report from those devices, so
//! only bit 1 raises SOS here.
//!
//! `FFFFFBFF` is the idle word: no alarm, ignition off. The reference decoder reports only the
//! first alarm in the table's order; we report every one that is raised, in that order, so an
//! SOS is never hidden behind a vibration bit.

use crate::message::{Alarm, Message};

/// Alarms raised by a status word, in the order vibration, SOS, overspeed, power cut.
pub(super) fn alarms(status: u32) -> Vec<Alarm> {
    let clear = |bit: u32| status & (1 << bit) == 0;
    let mut alarms = Vec::new();
    if clear(0) {
        alarms.push(Alarm::Vibration);
    }
    if clear(1) {
        alarms.push(Alarm::Sos);
    }
    if clear(2) {
        alarms.push(Alarm::Overspeed);
    }
    if clear(19) {
        alarms.push(Alarm::PowerCut);
    }
    alarms
}

/// Whether bit 10 (ignition / ACC) is set.
pub(super) fn ignition(status: u32) -> bool {
    status & (1 << 10) != 0
}

/// Writes the status word's alarms and ignition line onto `message`.
pub(super) fn apply(status: u32, message: &mut Message) {
    for alarm in alarms(status) {
        if !message.alarms.contains(&alarm) {
            message.alarms.push(alarm);
        }
    }
    message.status.ignition = Some(ignition(status));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::MessageKind;

    #[test]
    fn idle_word_raises_nothing() {
        assert!(alarms(0xFFFF_FBFF).is_empty());
        assert!(!ignition(0xFFFF_FBFF));
        assert!(ignition(0xFFFF_FFFF));
    }

    #[test]
    fn each_alarm_bit_is_active_low() {
        assert_eq!(alarms(0xFFFF_FFFE), [Alarm::Vibration]);
        assert_eq!(alarms(0xFFFF_FFFD), [Alarm::Sos]);
        assert!(alarms(0xFFFB_FFFF).is_empty(), "bit 18 alone is not an SOS");
        assert_eq!(alarms(0xFFFF_FFFB), [Alarm::Overspeed]);
        assert_eq!(alarms(0xFFF7_FFFF), [Alarm::PowerCut]);
    }

    #[test]
    fn reports_every_raised_alarm_in_order() {
        // Bits 0, 1 and 19 clear, and bit 18 clear too (ignored).
        assert_eq!(
            alarms(0xFFF3_FFFC),
            [Alarm::Vibration, Alarm::Sos, Alarm::PowerCut]
        );
    }

    #[test]
    fn apply_sets_ignition_and_does_not_duplicate() {
        let mut m = Message::new(MessageKind::Position);
        apply(0xFFFF_FFFD, &mut m);
        apply(0xFFFF_FFFD, &mut m);
        assert_eq!(m.alarms, [Alarm::Sos]);
        assert_eq!(m.status.ignition, Some(true));
    }
}

//! Device models whose bytes mean something else than the standard says. The service tells
//! the session the model (`Session::set_model`); without one, everything decodes by the
//! standard's meaning.
//!
//! | model | what changes |
//! | --- | --- |
//! | G-360P, G-508P (padlocks) | alarm word: bits 0 and 4 removal, bit 1 tampering, nothing else |
//! | AL300, GL100 | alarm word: only bit 16, which means movement |
//! | MV710G, MV810G | item 0x57: bit 16 of its alarm word is a door alarm |
//! | C5, C5L | item 0xF8 is a step count (u16) |

use crate::message::{Alarm, Message};

use super::extra::add_alarm;
use super::location::add_alarm_bits;

/// The model families this decoder tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Model {
    /// Every other model: the standard's meanings.
    #[default]
    Standard,
    /// G-360P, G-508P.
    Padlock,
    /// AL300, GL100.
    Aovx,
    /// MV710G, MV810G.
    Mv,
    /// C5, C5L.
    C5,
}

impl Model {
    /// The family of a model name (exact, case-insensitive).
    pub(crate) fn of(model: Option<&str>) -> Model {
        match model.map(str::to_ascii_uppercase).as_deref() {
            Some("G-360P" | "G-508P") => Model::Padlock,
            Some("AL300" | "GL100") => Model::Aovx,
            Some("MV710G" | "MV810G") => Model::Mv,
            Some("C5" | "C5L") => Model::C5,
            _ => Model::Standard,
        }
    }

    /// Adds the alarms of a location report's alarm word, read for this model.
    pub(crate) fn add_alarms(self, msg: &mut Message, word: u32) {
        let bit = |n: u32| word & (1 << n) != 0;
        match self {
            Model::Padlock => {
                if bit(0) || bit(4) {
                    add_alarm(msg, Alarm::Removal);
                }
                if bit(1) {
                    add_alarm(msg, Alarm::Tamper);
                }
            }
            Model::Aovx => {
                if bit(16) {
                    add_alarm(msg, Alarm::Movement);
                }
            }
            Model::Standard | Model::Mv | Model::C5 => add_alarm_bits(msg, word),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::MessageKind;

    #[test]
    fn names_map_to_families_case_insensitively() {
        assert_eq!(Model::of(Some("al300")), Model::Aovx);
        assert_eq!(Model::of(Some("C5L")), Model::C5);
        assert_eq!(Model::of(Some("G-508P")), Model::Padlock);
        assert_eq!(Model::of(Some("MV710G")), Model::Mv);
        assert_eq!(Model::of(Some("JT701")), Model::Standard);
        assert_eq!(Model::of(None), Model::Standard);
    }

    #[test]
    fn bit_16_is_movement_on_aovx_and_tampering_by_default() {
        let mut standard = Message::new(MessageKind::Position);
        Model::Standard.add_alarms(&mut standard, 1 << 16);
        assert_eq!(standard.alarms, [Alarm::Tamper]);
        let mut aovx = Message::new(MessageKind::Position);
        Model::Aovx.add_alarms(&mut aovx, 1 << 16 | 1);
        assert_eq!(aovx.alarms, [Alarm::Movement]);
        let mut padlock = Message::new(MessageKind::Position);
        Model::Padlock.add_alarms(&mut padlock, 1 << 4 | 1 << 1);
        assert_eq!(padlock.alarms, [Alarm::Removal, Alarm::Tamper]);
    }
}

//! Login (0x01): the first packet of a connection, identifying the device.
//!
//! ```text
//! terminal ID: 8 bytes BCD, the IMEI with a leading 0 nibble
//! [type/model code u16] [time-zone/language word u16]   (newer firmware)
//! zone word: bits 15-4 the offset as decimal hhmm, bit 3 set = west of UTC, bits 0-2 language
//! ```
//! The session takes the IMEI as the device ID and, unless the listener configures an offset,
//! reads device times in the zone the word states. The login is answered with
//! `78 78 05 01 <serial> <crc> 0D 0A`.

use crate::error::DecodeError;
use crate::reader::Reader;

/// Login packet.
pub(crate) const LOGIN: u8 = 0x01;

/// Bit 3 of the zone word: the offset is west of UTC.
const WEST: u16 = 0x0008;
/// Language bits written by [`zone_word`] (English).
const LANGUAGE_ENGLISH: u16 = 0x0002;

/// What a login packet says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    /// The IMEI: the terminal ID's digits without the leading padding digit.
    pub imei: String,
    /// Type/model identification code, on firmware that sends it.
    pub model: Option<u16>,
    /// Time-zone/language word, on firmware that sends it.
    pub zone: Option<u16>,
}

impl Login {
    /// Parses a login packet's content.
    ///
    /// # Errors
    /// [`DecodeError::Truncated`] when the terminal ID is shorter than 8 bytes;
    /// [`DecodeError::InvalidField`] when it is not BCD.
    pub fn parse(content: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(content);
        let digits = r.bcd_string(8, "terminal id")?;
        let imei = digits.get(1..).unwrap_or_default().to_owned();
        let model = if r.remaining() >= 2 {
            Some(r.u16("model")?)
        } else {
            None
        };
        let zone = if r.remaining() >= 2 {
            Some(r.u16("time zone")?)
        } else {
            None
        };
        Ok(Login { imei, model, zone })
    }

    /// The offset the zone word states, in minutes east of UTC.
    pub fn zone_offset_minutes(&self) -> Option<i32> {
        self.zone.map(zone_offset_minutes)
    }
}

/// The offset a time-zone/language word states, in minutes east of UTC.
///
/// ```
/// use ewall_protocol::gt06::zone_offset_minutes;
/// assert_eq!(zone_offset_minutes(0x190a), -240); // 0x190 = 400: 04:00, bit 3: west
/// assert_eq!(zone_offset_minutes(0x3201), 480); // 08:00 east
/// ```
pub fn zone_offset_minutes(word: u16) -> i32 {
    let hhmm = i32::from(word >> 4);
    let minutes = hhmm / 100 * 60 + hhmm % 100;
    if word & WEST != 0 {
        -minutes
    } else {
        minutes
    }
}

/// The time-zone/language word for an offset in minutes east of UTC (language bits: English).
/// Offsets beyond what 12 bits of decimal hhmm hold are clamped.
pub fn zone_word(offset_minutes: i32) -> u16 {
    let minutes = offset_minutes.unsigned_abs().min(40 * 60 + 95);
    let hhmm = u16::try_from(minutes / 60 * 100 + minutes % 60).unwrap_or(0x0fff);
    let west = if offset_minutes < 0 { WEST } else { 0 };
    (hhmm.min(0x0fff) << 4) | west | LANGUAGE_ENGLISH
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_imei_model_and_zone() {
        let content = [
            0x08, 0x64, 0x71, 0x70, 0x03, 0x66, 0x44, 0x67, // terminal ID 0864717003664467
            0x10, 0x0f, // model code
            0x19, 0x0a, // zone word: 04:00 west, language 2
        ];
        let login = Login::parse(&content).unwrap();
        assert_eq!(login.imei, "864717003664467");
        assert_eq!(login.model, Some(0x100f));
        assert_eq!(login.zone_offset_minutes(), Some(-240));
    }

    #[test]
    fn a_bare_terminal_id_states_no_zone() {
        let login = Login::parse(&[0x08, 0x64, 0x71, 0x70, 0x03, 0x28, 0x35, 0x81]).unwrap();
        assert_eq!(login.imei, "864717003283581");
        assert_eq!((login.model, login.zone), (None, None));
        assert!(matches!(
            Login::parse(&[0x08, 0x64]),
            Err(DecodeError::Truncated { .. })
        ));
        assert!(matches!(
            Login::parse(&[0x0a; 8]),
            Err(DecodeError::InvalidField { .. })
        ));
    }

    #[test]
    fn zone_words_round_trip() {
        for offset in [-720, -570, -240, 0, 330, 345, 480, 525, 840] {
            assert_eq!(zone_offset_minutes(zone_word(offset)), offset, "{offset}");
        }
        assert_eq!(zone_word(480), 0x3202);
    }
}

//! Device identities: the one form a device id takes in the registry, the store and every fix,
//! whatever form an operator typed it in or a protocol carried it.
//!
//! What each protocol sends (README, "Device ids"):
//!
//! | protocol | id | form on the wire |
//! | --- | --- | --- |
//! | GT06 | IMEI, 15 digits | 8 BCD bytes, a zero nibble first (`0864…`) |
//! | JT/T 808 | terminal phone number (not an IMEI) | 6 BCD bytes (2013: 12 digits) or 10 (2019: 20), zero-padded |
//! | H02 | device id, usually 10 digits; some firmwares the IMEI | decimal text |
//! | watch | device id, usually 10 digits; some firmwares the IMEI | decimal text |
//! | OsmAnd | the id the app is set to: letters, digits, `-`, `_` | query text |
//!
//! The canonical form: an id that is all digits once spaces and dashes are taken out is that
//! number without leading zeros (`0864 7170-0328 3581` and `864717003283581` are one device,
//! and so are `013912345678` and the `13912345678` the terminal identifies as). A 15-digit
//! number is an IMEI and must carry its Luhn check digit; a wrong one is a typing error, and
//! registering it would bind a device that never reports. Any other id is kept exactly, case
//! and all. [`canonical`] applies this to what people type (and refuses what cannot be an id);
//! [`normalise`] applies the same mapping, without refusing anything, to what devices send.

use std::borrow::Cow;

use thiserror::Error;

/// Longest id kept as text (OsmAnd app ids and the like).
pub const MAX_TEXT_ID_LEN: usize = 32;
/// Most digits of a numeric id (a JT/T 808-2019 terminal number has 20).
pub const MAX_DIGITS: usize = 20;

/// Why a typed device id was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DeviceIdError {
    /// Nothing but zeros, spaces or dashes.
    #[error("device id {0:?} is empty or all zeros")]
    Empty(String),
    /// A number longer than any protocol's id.
    #[error("device id {typed:?} has {digits} digits; no tracker id has more than {MAX_DIGITS}")]
    TooManyDigits {
        /// As typed.
        typed: String,
        /// Digits without leading zeros.
        digits: usize,
    },
    /// Characters no tracker id has.
    #[error(
        "device id {0:?} must be a number (spaces and dashes allowed between digits) or 1 to \
         {MAX_TEXT_ID_LEN} letters, digits, '-' or '_'"
    )]
    Malformed(String),
    /// A 15-digit number whose last digit is not its Luhn check digit.
    #[error(
        "device id {typed:?} is a 15-digit IMEI whose check digit should be {expected}, not \
         {found}; check the number on the device's label"
    )]
    ImeiCheckDigit {
        /// As typed.
        typed: String,
        /// The check digit the first 14 digits call for.
        expected: char,
        /// The last digit typed.
        found: char,
    },
}

/// The canonical form of a device id an operator typed (see the module docs).
///
/// # Errors
/// [`DeviceIdError`] for what cannot be a device id, including an IMEI with a wrong check
/// digit.
pub fn canonical(typed: &str) -> Result<String, DeviceIdError> {
    let trimmed = typed.trim();
    if let Some(digits) = numeric(trimmed) {
        let number = digits.trim_start_matches('0');
        if number.is_empty() {
            return Err(DeviceIdError::Empty(typed.to_owned()));
        }
        if number.len() > MAX_DIGITS {
            return Err(DeviceIdError::TooManyDigits {
                typed: typed.to_owned(),
                digits: number.len(),
            });
        }
        if number.len() == 15 {
            let (body, last) = number.split_at(14);
            let expected = luhn_check_digit(body);
            let found = last.chars().next().unwrap_or('0');
            if expected != found {
                return Err(DeviceIdError::ImeiCheckDigit {
                    typed: typed.to_owned(),
                    expected,
                    found,
                });
            }
        }
        return Ok(number.to_owned());
    }
    let well_formed = !trimmed.is_empty()
        && trimmed.len() <= MAX_TEXT_ID_LEN
        && trimmed
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !well_formed {
        return Err(DeviceIdError::Malformed(typed.to_owned()));
    }
    Ok(trimmed.to_owned())
}

/// The canonical form of an id a device sent: the mapping of [`canonical`] without its checks,
/// so that the registry lookup finds what was registered. Borrows when nothing changes (the
/// usual case: decoders already drop BCD padding).
pub fn normalise(sent: &str) -> Cow<'_, str> {
    let trimmed = sent.trim();
    let without_zeros = |digits: &str| -> usize {
        // Keep an all-zero id as it is: it is not a number anyone registered.
        let number = digits.trim_start_matches('0');
        if number.is_empty() {
            0
        } else {
            digits.len() - number.len()
        }
    };
    match numeric(trimmed) {
        Some(Cow::Borrowed(digits)) => Cow::Borrowed(&digits[without_zeros(digits)..]),
        Some(Cow::Owned(digits)) => Cow::Owned(digits[without_zeros(&digits)..].to_owned()),
        None => Cow::Borrowed(trimmed),
    }
}

/// The digits of `text` when it is digits separated only by single spaces or dashes.
fn numeric(text: &str) -> Option<Cow<'_, str>> {
    let bytes = text.as_bytes();
    let starts_and_ends_with_digit = bytes.first().is_some_and(u8::is_ascii_digit)
        && bytes.last().is_some_and(u8::is_ascii_digit);
    if !starts_and_ends_with_digit {
        return None;
    }
    let mut previous_separator = false;
    for &b in bytes {
        match b {
            b'0'..=b'9' => previous_separator = false,
            b' ' | b'-' if !previous_separator => previous_separator = true,
            _ => return None,
        }
    }
    if bytes.iter().all(u8::is_ascii_digit) {
        Some(Cow::Borrowed(text))
    } else {
        Some(Cow::Owned(
            text.chars().filter(char::is_ascii_digit).collect(),
        ))
    }
}

/// The Luhn check digit of a string of ASCII digits (the 15th digit of an IMEI).
pub fn luhn_check_digit(digits: &str) -> char {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            // From the right, every other digit starting with the last is doubled.
            if i % 2 == 0 {
                let twice = d * 2;
                if twice > 9 {
                    twice - 9
                } else {
                    twice
                }
            } else {
                d
            }
        })
        .sum();
    char::from(b'0' + ((10 - sum % 10) % 10) as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imeis_in_the_forms_people_type() {
        for typed in [
            "864717003283581",
            "0864717003283581",
            "864 717 003 283 581",
            "86-471700-328358-1",
            "  864717003283581\t",
        ] {
            assert_eq!(canonical(typed).unwrap(), "864717003283581", "{typed:?}");
        }
    }

    #[test]
    fn the_check_digit_is_luhn() {
        assert_eq!(luhn_check_digit("86471700328358"), '1');
        assert_eq!(luhn_check_digit("49015420323751"), '8');
        assert_eq!(
            canonical("864717003283582").unwrap_err(),
            DeviceIdError::ImeiCheckDigit {
                typed: "864717003283582".into(),
                expected: '1',
                found: '2'
            }
        );
    }

    #[test]
    fn terminal_numbers_and_app_ids() {
        assert_eq!(canonical("013912345678").unwrap(), "13912345678");
        assert_eq!(canonical("00000000013912345678").unwrap(), "13912345678");
        assert_eq!(canonical("8800000015").unwrap(), "8800000015");
        assert_eq!(canonical("phone-0042").unwrap(), "phone-0042");
        assert_eq!(canonical("Phone_A").unwrap(), "Phone_A");
    }

    #[test]
    fn what_cannot_be_an_id_is_refused() {
        for bad in [
            "",
            "  ",
            "0000",
            "1  2",
            "1 -2",
            "12 x",
            "a b",
            "caf\u{e9}",
            "123456789012345678901",
        ] {
            assert!(canonical(bad).is_err(), "{bad:?}");
        }
        assert!(canonical(&"a".repeat(33)).is_err());
    }

    #[test]
    fn what_devices_send_maps_to_the_same_form() {
        assert_eq!(normalise("864717003283581"), "864717003283581");
        assert!(matches!(normalise("864717003283581"), Cow::Borrowed(_)));
        assert_eq!(normalise("0864717003283581"), "864717003283581");
        assert_eq!(normalise("013912345678"), "13912345678");
        assert_eq!(normalise("phone-0042"), "phone-0042");
        // Nothing refused: an unregistered id is simply not found.
        assert_eq!(normalise("000"), "000");
        assert_eq!(normalise("864717003283582"), "864717003283582");
    }
}

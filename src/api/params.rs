//! Values in queries and bodies read exactly as the API description states them.
//!
//! The description says `format: uuid` and `format: date-time`; the parsers underneath take
//! more than that (the uuid crate takes 32 bare hex digits or braces, chrono a space between
//! date and time). A request the description refuses must be refused here too, so these
//! accept only the forms the formats name.

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// A UUID in its hyphenated form (`8-4-4-4-12` hex digits, either case), the one form
/// `format: uuid` names.
///
/// # Errors
/// A message naming `key` and the expected form.
pub fn uuid(key: &str, raw: &str) -> Result<Uuid, String> {
    let bytes = raw.as_bytes();
    let shaped = bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        });
    let refused = || format!("`{key}` must be a UUID such as 0193a4b0-7c1e-7d2a-9f00-0123456789ab");
    if !shaped {
        return Err(refused());
    }
    Uuid::try_parse(raw).map_err(|_| refused())
}

/// An RFC 3339 date-time with `T` between date and time (in either case), as
/// `format: date-time` names it, in UTC.
///
/// # Errors
/// A message naming `key` and the expected form.
pub fn date_time(key: &str, raw: &str) -> Result<DateTime<Utc>, String> {
    let refused =
        |e: String| format!("`{key}` must be an RFC 3339 time such as 2026-01-31T08:00:00Z: {e}");
    // chrono also takes a space there, which the format does not.
    if !matches!(raw.as_bytes().get(10), Some(b'T' | b't')) {
        return Err(refused(
            "the date and the time are not separated by T".into(),
        ));
    }
    DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| refused(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_hyphenated_form_is_a_uuid() {
        let id = "0193a4b0-7c1e-7d2a-9f00-0123456789ab";
        assert_eq!(uuid("id", id).unwrap().to_string(), id);
        assert!(uuid("id", &id.to_uppercase()).is_ok());
        for bad in [
            "0193a4b07c1e7d2a9f000123456789ab",
            "{0193a4b0-7c1e-7d2a-9f00-0123456789ab}",
            "urn:uuid:0193a4b0-7c1e-7d2a-9f00-0123456789ab",
            "0193a4b0-7c1e-7d2a-9f00-0123456789ag",
            "0193a4b07-c1e-7d2a-9f00-0123456789ab",
            "",
        ] {
            assert!(uuid("id", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_rfc_3339_with_a_t_is_a_date_time() {
        assert_eq!(
            date_time("from", "2026-05-01T08:00:00+08:00")
                .unwrap()
                .to_rfc3339(),
            "2026-05-01T00:00:00+00:00"
        );
        assert!(date_time("from", "2026-05-01t00:00:00.5z").is_ok());
        for bad in [
            "2026-05-01 00:00:00Z",
            "2026-05-01T00:00:00",
            "2026-02-30T00:00:00Z",
            "2026-05-01",
            "yesterday",
            "",
        ] {
            assert!(date_time("from", bad).is_err(), "{bad}");
        }
    }
}

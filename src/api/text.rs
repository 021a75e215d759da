//! Names people give things (persons, zones, token labels): what the API accepts.
//!
//! A name is shown to operators in the console, in alert messages and in exports, so it is
//! bounded (200 characters, counted as characters, not bytes, so any script gets the same room)
//! and may not hold characters that hide or reorder what is shown: NUL and other control
//! characters (line breaks included), and the bidirectional controls (U+202A..U+202E,
//! U+2066..U+2069, U+200E, U+200F, U+061C) that can make "home" display as something else.

use super::problem::Problem;

/// Longest name, in characters.
pub const NAME_MAX_CHARS: usize = 200;

/// A name, trimmed; 422 naming `field` when it is empty, too long or holds a forbidden
/// character.
///
/// # Errors
/// 422 with the reason.
pub fn check_name(field: &str, name: &str) -> Result<String, Problem> {
    // Counted before trimming, so the bound is the one the API description states.
    let chars = name.chars().count();
    let name = name.trim();
    if name.is_empty() || chars > NAME_MAX_CHARS {
        return Err(Problem::unprocessable(format!(
            "{field} must be between 1 and {NAME_MAX_CHARS} characters; it has {chars}"
        )));
    }
    if let Some((position, c)) = name.chars().enumerate().find(|(_, c)| forbidden(*c)) {
        return Err(Problem::unprocessable(format!(
            "{field} holds the character U+{:04X} at position {position}; control and \
             bidirectional control characters are not allowed",
            c as u32
        )));
    }
    Ok(name.to_owned())
}

/// Control characters and the Unicode bidirectional formatting characters.
fn forbidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{200E}' | '\u{200F}' | '\u{061C}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded_in_characters() {
        assert_eq!(check_name("name", "  home ").unwrap(), "home");
        assert!(check_name("name", &"家".repeat(200)).is_ok());
        assert!(check_name("name", &"家".repeat(201)).is_err());
        assert!(check_name("name", "   ").is_err());
    }

    #[test]
    fn control_and_bidirectional_characters_are_refused() {
        for bad in [
            "a\u{0}b",
            "a\u{7}b",
            "a\nb",
            "a\tb",
            "a\u{7f}b",
            "a\u{202E}b",
            "a\u{2066}b",
            "a\u{200F}b",
            "a\u{061C}b",
        ] {
            let problem = check_name("name", bad).unwrap_err();
            assert_eq!(problem.status, 422, "{bad:?}");
            assert!(problem.detail.contains("U+"), "{}", problem.detail);
        }
        // Joiners and marks that scripts need are fine.
        assert!(check_name("name", "क्‍ष").is_ok());
    }
}

//! osmand: placeholder until the decoder lands.

use crate::{Decoded, DecodeError};

/// Decodes one OsmAnd request target (`/?id=..&lat=..`).
///
/// # Errors
/// Always, until implemented.
pub fn decode_request(_target: &str) -> Result<Decoded, DecodeError> {
    Err(DecodeError::UnsupportedType("osmand".into()))
}

//! osmand: placeholder until the decoder lands.

use crate::{DecodeError, Decoded};

/// Decodes one OsmAnd request target (`/?id=..&lat=..`).
///
/// # Errors
/// Always, until implemented.
pub fn decode_request(_target: &str) -> Result<Decoded, DecodeError> {
    Err(DecodeError::UnsupportedType("osmand".into()))
}

/// Decodes one OsmAnd JSON body.
///
/// # Errors
/// Always, until implemented.
pub fn decode_json(_body: &[u8]) -> Result<Decoded, DecodeError> {
    Err(DecodeError::UnsupportedType("osmand".into()))
}

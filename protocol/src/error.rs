//! Errors of the protocol layer, split the way a tokio-util `Decoder` needs them.
//!
//! [`FrameError`] means the byte stream can no longer be trusted (an oversize frame, a length
//! that cannot be honoured): the connection is closed. [`DecodeError`] describes one bad frame
//! that was cut out cleanly and skipped; the stream goes on.

use thiserror::Error;

/// The stream is corrupt; the connection must be closed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// A frame declared or reached a size above the protocol's maximum.
    #[error("frame of {size} bytes exceeds the maximum of {max} bytes")]
    Oversize {
        /// Size declared or buffered so far.
        size: usize,
        /// The session's maximum frame size.
        max: usize,
    },
}

/// One frame could not be used; it has been skipped.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum DecodeError {
    /// Bytes before the next frame start were discarded.
    #[error("skipped {skipped} bytes of garbage before a frame start")]
    Garbage {
        /// How many bytes were discarded.
        skipped: usize,
    },
    /// The frame is shorter than its structure needs.
    #[error("truncated frame: {what} needs {needed} bytes, {available} available")]
    Truncated {
        /// The field or record being read.
        what: &'static str,
        /// Bytes needed.
        needed: usize,
        /// Bytes left.
        available: usize,
    },
    /// The checksum did not match and the session is strict.
    #[error("checksum mismatch: computed {expected:#06x}, frame carries {actual:#06x}")]
    BadChecksum {
        /// Checksum computed over the frame.
        expected: u32,
        /// Checksum the frame carried.
        actual: u32,
    },
    /// The length field disagrees with the bytes present and the session is strict.
    #[error("length field says {declared} bytes, frame has {actual}")]
    BadLength {
        /// Declared length.
        declared: usize,
        /// Actual length.
        actual: usize,
    },
    /// A field holds a value outside its domain.
    #[error("invalid {field}: {reason}")]
    InvalidField {
        /// Field name.
        field: &'static str,
        /// What was wrong, with the offending value.
        reason: String,
    },
    /// A message type this decoder does not know and cannot answer.
    #[error("unsupported message type {0}")]
    UnsupportedType(String),
    /// The input as a whole is not this protocol (e.g. a missing start marker).
    #[error("not a {protocol} frame: {reason}")]
    NotThisProtocol {
        /// Protocol name.
        protocol: &'static str,
        /// What was found instead.
        reason: String,
    },
}

impl DecodeError {
    /// Shorthand for [`DecodeError::InvalidField`].
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        DecodeError::InvalidField {
            field,
            reason: reason.into(),
        }
    }

    /// A short fixed label for metrics (`reason` label of the rejected-frames counter).
    pub fn reason_label(&self) -> &'static str {
        match self {
            DecodeError::Garbage { .. } => "garbage",
            DecodeError::Truncated { .. } => "truncated",
            DecodeError::BadChecksum { .. } => "checksum",
            DecodeError::BadLength { .. } => "length",
            DecodeError::InvalidField { .. } => "invalid_field",
            DecodeError::UnsupportedType(_) => "unsupported_type",
            DecodeError::NotThisProtocol { .. } => "not_this_protocol",
        }
    }
}

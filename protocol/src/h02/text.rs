//! The H02 text form `*XX,<ID>,<TYPE>,<fields…>#`: splits one cut-out sentence into its
//! comma-separated fields and hands it to the decoder for its type.
//!
//! In: one frame from `*` to `#` (a trailing CR/LF is tolerated). Out: the messages and the
//! reply bytes; the session adds the device identifier. This file only checks the header
//! (two-character maker code, a numeric or empty ID, the type); the message files read the rest.

use crate::error::DecodeError;
use crate::message::{Message, MessageKind};

use super::fields::{show, Context};
use super::{heartbeat, link, location, nbr, v3, vp1};

/// Longest device identifier accepted in the ID field.
const MAX_ID_DIGITS: usize = 20;

/// Longest message type accepted (`V1`, `HTBT`, `LINK`, …).
const MAX_TYPE_LEN: usize = 16;

/// One text sentence, split at its commas.
#[derive(Debug, Clone)]
pub(super) struct Sentence<'a> {
    /// The bytes after `*` and before `#`.
    body: &'a [u8],
    /// Start and end of each field in `body`; field 0 is the maker code.
    ranges: Vec<(usize, usize)>,
}

impl<'a> Sentence<'a> {
    /// Splits a text frame and checks its header.
    ///
    /// # Errors
    /// [`DecodeError::NotThisProtocol`] without the `*` … `#` shape;
    /// [`DecodeError::InvalidField`] for a bad maker code, ID or type.
    pub fn parse(frame: &'a [u8]) -> Result<Self, DecodeError> {
        let end = frame
            .iter()
            .rposition(|b| !matches!(b, b'\r' | b'\n'))
            .map_or(0, |i| i + 1);
        let body = match frame.get(..end) {
            Some([b'*', body @ .., b'#']) => body,
            _ => {
                return Err(DecodeError::NotThisProtocol {
                    protocol: "h02",
                    reason: "a text frame runs from '*' to '#'".into(),
                })
            }
        };
        let mut ranges = Vec::new();
        let mut start = 0;
        for (i, b) in body.iter().enumerate() {
            if *b == b',' {
                ranges.push((start, i));
                start = i + 1;
            }
        }
        ranges.push((start, body.len()));
        let sentence = Sentence { body, ranges };
        sentence.check_header()?;
        Ok(sentence)
    }

    fn check_header(&self) -> Result<(), DecodeError> {
        let maker = self.field(0);
        if maker.len() != 2 || !maker.iter().all(u8::is_ascii_alphanumeric) {
            return Err(DecodeError::invalid(
                "maker code",
                format!("{} is not two letters or digits", show(maker)),
            ));
        }
        if self.ranges.len() < 3 {
            return Err(DecodeError::invalid(
                "header",
                "a sentence needs maker code, ID and type",
            ));
        }
        let id = self.field(1);
        if id.len() > MAX_ID_DIGITS || !id.iter().all(u8::is_ascii_digit) {
            return Err(DecodeError::invalid(
                "device id",
                format!("{} is not up to {MAX_ID_DIGITS} digits", show(id)),
            ));
        }
        let kind = self.field(2);
        if kind.len() > MAX_TYPE_LEN || !kind.iter().all(u8::is_ascii_alphanumeric) {
            return Err(DecodeError::invalid(
                "message type",
                format!("{} is not a message type", show(kind)),
            ));
        }
        Ok(())
    }

    /// Field `i`, or an empty slice past the end.
    pub fn field(&self, i: usize) -> &'a [u8] {
        self.ranges
            .get(i)
            .and_then(|(s, e)| self.body.get(*s..*e))
            .unwrap_or_default()
    }

    /// Number of fields, the maker code included.
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    /// The device identifier, if the ID field is not empty.
    pub fn device_id(&self) -> Option<&'a str> {
        let id = self.field(1);
        if id.is_empty() {
            None
        } else {
            std::str::from_utf8(id).ok()
        }
    }

    /// The message type (`V1`, `NBR`, …).
    pub fn kind(&self) -> &'a [u8] {
        self.field(2)
    }

    /// The raw bytes from field `i` to the end of the sentence, commas included.
    pub fn rest_from(&self, i: usize) -> &'a [u8] {
        self.ranges
            .get(i)
            .and_then(|(s, _)| self.body.get(*s..))
            .unwrap_or_default()
    }

    /// The sentence as received from `*` through the end of field `i`, for echo replies.
    pub fn echo_through(&self, i: usize) -> Vec<u8> {
        let end = self.ranges.get(i).map_or(self.body.len(), |(_, e)| *e);
        let mut out = Vec::with_capacity(end + 2);
        out.push(b'*');
        out.extend_from_slice(self.body.get(..end).unwrap_or_default());
        out.push(b'#');
        out
    }

    /// Checks that field `i` exists.
    ///
    /// # Errors
    /// [`DecodeError::InvalidField`] naming `what` when the sentence is shorter.
    pub fn require(&self, i: usize, what: &'static str) -> Result<(), DecodeError> {
        if i < self.len() {
            Ok(())
        } else {
            Err(DecodeError::invalid(
                what,
                format!(
                    "missing: {} sentence has {} fields",
                    show(self.kind()),
                    self.len()
                ),
            ))
        }
    }
}

/// What one sentence decoded to, before the session stamps the device identifier.
#[derive(Debug, Clone, PartialEq, Default)]
pub(super) struct Output {
    /// Messages in the sentence.
    pub messages: Vec<Message>,
    /// Reply to send once they are stored.
    pub reply: Option<Vec<u8>>,
}

impl Output {
    /// One message, no reply.
    pub fn one(message: Message) -> Self {
        Output {
            messages: vec![message],
            reply: None,
        }
    }
}

/// Decodes a sentence by its type.
///
/// | type | decoder | reply |
/// | --- | --- | --- |
/// | `V0`, `HTBT` | heartbeat | the sentence echoed up to the type, then `#` |
/// | `NBR` | cell list | `*HQ,<ID>,V4,NBR,<yyyyMMddHHmmss>#` |
/// | `LINK` | status | none |
/// | `V3` | cell list | none |
/// | `VP1` | position or cell list | none |
/// | `SMS` | command reply (text not modelled) | none |
/// | `V1` | position | `*HQ,<ID>,V4,V1,<yyyyMMddHHmmss>#` |
/// | other `V…` (`V2`, `V4`, `V5`, `V6`, `V8`, `V19`, `VI1`) | position | none |
/// | anything else | [`MessageKind::Other`] | none |
///
/// # Errors
/// [`DecodeError`] from the message decoder.
pub(super) fn decode(sentence: &Sentence<'_>, ctx: &Context<'_>) -> Result<Output, DecodeError> {
    match sentence.kind() {
        b"V0" | b"HTBT" => heartbeat::decode(sentence),
        b"NBR" => nbr::decode(sentence, ctx),
        b"LINK" => link::decode(sentence),
        b"V3" => v3::decode(sentence),
        b"VP1" => vp1::decode(sentence, ctx),
        b"SMS" => Ok(Output::one(Message::new(MessageKind::CommandReply))),
        b"V4" => {
            let mut out = location::decode(sentence, ctx)?;
            if let Some(reply) = super::command::reply(sentence.field(3), sentence.field(4)) {
                for m in &mut out.messages {
                    m.command_reply = Some(reply.clone());
                }
            }
            Ok(out)
        }
        [b'V', ..] => location::decode(sentence, ctx),
        _ => Ok(Output::one(Message::new(MessageKind::Other))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_fields_and_reads_the_header() {
        let s = Sentence::parse(b"*HQ,4106012736,V1,224434,A#\r\n").unwrap();
        assert_eq!(s.field(0), b"HQ");
        assert_eq!(s.device_id(), Some("4106012736"));
        assert_eq!(s.kind(), b"V1");
        assert_eq!(s.field(4), b"A");
        assert_eq!(s.field(9), b"");
        assert_eq!(s.len(), 5);
        assert_eq!(s.rest_from(3), b"224434,A");
        assert_eq!(s.echo_through(2), b"*HQ,4106012736,V1#");
    }

    #[test]
    fn empty_id_and_empty_type_are_allowed() {
        let s = Sentence::parse(b"*HQ,,V1#").unwrap();
        assert_eq!(s.device_id(), None);
        let s = Sentence::parse(b"*HQ,4109198974,#").unwrap();
        assert_eq!(s.kind(), b"");
    }

    #[test]
    fn rejects_bad_headers() {
        for bad in [
            &b"*HQ#"[..],                     // no ID or type
            b"*HQ,123#",                      // no type
            b"*H,123,V1#",                    // one-letter maker
            b"*HQ,12a,V1#",                   // letters in the ID
            b"*HQ,123,V-1#",                  // odd type
            b"*HQ,123456789012345678901,V1#", // 21-digit ID
            b"HQ,123,V1#",                    // no '*'
            b"*HQ,123,V1",                    // no '#'
            b"*HQ,123,V1#x",                  // bytes after '#'
        ] {
            assert!(
                Sentence::parse(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}

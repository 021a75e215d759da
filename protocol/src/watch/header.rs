//! The `[MF*ID*LLLL*` header of a watch frame (with the ZJ index: `[MF*ID*IIII*LLLL*`) and the
//! replies built from it.
//!
//! In: one whole, un-escaped frame. Out: maker code, device ID, optional index, the declared
//! content length, the message type and its body. It checks the header's shape only; the length
//! field's agreement with the content is judged by the session.

use crate::DecodeError;

use super::encode;

/// Longest device ID accepted (IMEIs have 15 digits, most watches use 10).
const MAX_ID_LEN: usize = 32;

/// The parsed header of one frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header<'a> {
    /// Two-character maker code (`3G`, `SG`, `CS`, `ZJ`, ...), echoed in replies.
    pub maker: &'a str,
    /// The device's ID.
    pub id: &'a str,
    /// The 4-hex-digit index of the ZJ variant, echoed in replies.
    pub index: Option<&'a str>,
    /// Content length the frame declares.
    pub declared_len: usize,
    /// Everything between the length field's `*` and the closing `]`.
    pub content: &'a [u8],
}

impl<'a> Header<'a> {
    /// Parses the header of an un-escaped frame, brackets included.
    ///
    /// # Errors
    /// [`DecodeError::NotThisProtocol`] when the brackets, maker code or ID are missing or
    /// malformed; [`DecodeError::InvalidField`] for a malformed length field.
    pub fn parse(frame: &'a [u8]) -> Result<Self, DecodeError> {
        let inner = frame
            .strip_prefix(b"[")
            .and_then(|f| f.strip_suffix(b"]"))
            .ok_or_else(|| not_watch("missing `[` or `]`"))?;
        let (maker, rest) = split_star(inner).ok_or_else(|| not_watch("no maker code"))?;
        if maker.len() != 2 || !maker.iter().all(u8::is_ascii_alphanumeric) {
            return Err(not_watch("maker code is not two letters or digits"));
        }
        let (id, rest) = split_star(rest).ok_or_else(|| not_watch("no device ID"))?;
        if id.is_empty() || id.len() > MAX_ID_LEN || !id.iter().all(u8::is_ascii_alphanumeric) {
            return Err(not_watch("device ID is not 1 to 32 letters or digits"));
        }
        let (index, len_field, content) = match (hex4(rest), rest.get(5..).and_then(hex4)) {
            (Some(index), Some(len)) => (Some(index), len, rest.get(10..).unwrap_or_default()),
            (Some(len), None) => (None, len, rest.get(5..).unwrap_or_default()),
            _ => {
                return Err(DecodeError::invalid(
                    "length",
                    "expected 4 hex digits and `*` after the device ID",
                ))
            }
        };
        Ok(Header {
            maker: ascii(maker),
            id: ascii(id),
            index: index.map(ascii),
            declared_len: usize::from_str_radix(ascii(len_field), 16).unwrap_or_default(),
            content,
        })
    }

    /// The content length actually present.
    pub fn actual_len(&self) -> usize {
        self.content.len()
    }

    /// The message type (the content up to the first `,`) and the body after that comma.
    pub fn split_type(&self) -> (&'a [u8], &'a [u8]) {
        match self.content.iter().position(|&b| b == b',') {
            Some(comma) => (
                self.content.get(..comma).unwrap_or_default(),
                self.content.get(comma + 1..).unwrap_or_default(),
            ),
            None => (self.content, &[]),
        }
    }

    /// A reply frame to this device carrying `content` (maker code, ID and index echoed).
    pub fn reply(&self, content: &str) -> Vec<u8> {
        encode::frame(self.maker, self.id, self.index, content.as_bytes())
    }
}

fn not_watch(reason: &str) -> DecodeError {
    DecodeError::NotThisProtocol {
        protocol: "watch",
        reason: reason.to_owned(),
    }
}

/// Splits at the first `*`: the bytes before it and the bytes after it.
fn split_star(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let star = bytes.iter().position(|&b| b == b'*')?;
    Some((bytes.get(..star)?, bytes.get(star + 1..)?))
}

/// Four hex digits followed by `*` at the start of `bytes`.
fn hex4(bytes: &[u8]) -> Option<&[u8]> {
    let digits = bytes.get(..4)?;
    (digits.iter().all(u8::is_ascii_hexdigit) && bytes.get(4) == Some(&b'*')).then_some(digits)
}

/// Bytes already checked to be ASCII as a `&str`.
fn ascii(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_header() {
        let frame = b"[3G*8800000015*0003*TKQ]";
        let h = Header::parse(frame).unwrap();
        assert_eq!(h.maker, "3G");
        assert_eq!(h.id, "8800000015");
        assert_eq!(h.index, None);
        assert_eq!(h.declared_len, 3);
        assert_eq!(h.content, b"TKQ");
        assert_eq!(h.split_type(), (&b"TKQ"[..], &b""[..]));
    }

    #[test]
    fn zj_header_with_index() {
        // maker ZJ, 15-digit ID, index 0034, length 0009
        let frame = b"[ZJ*014111001350304*0034*0009*LK,0,0,19]";
        let h = Header::parse(frame).unwrap();
        assert_eq!(h.maker, "ZJ");
        assert_eq!(h.index, Some("0034"));
        assert_eq!(h.declared_len, 9);
        assert_eq!(h.actual_len(), 9);
        assert_eq!(h.split_type(), (&b"LK"[..], &b"0,0,19"[..]));
        assert_eq!(h.reply("LK"), b"[ZJ*014111001350304*0034*0002*LK]".to_vec());
    }

    #[test]
    fn binary_content_with_stars_is_kept_whole() {
        // TK voice payload after un-escaping holds '*' and ','
        let frame = b"[CS*1234567890*000e*TK,#!AMR}[],*\xff]";
        let h = Header::parse(frame).unwrap();
        assert_eq!(h.index, None);
        assert_eq!(h.content, b"TK,#!AMR}[],*\xff");
        assert_eq!(h.declared_len, h.actual_len());
    }

    #[test]
    fn malformed_headers() {
        for bad in [
            &b"3G*1*0002*LK]"[..],
            b"[3G*1*0002*LK",
            b"[3*1*0002*LK]",
            b"[3G**0002*LK]",
            b"[3G*12-4*0002*LK]",
            b"[3G*1*02*LK]",
            b"[3G*1]",
        ] {
            assert!(
                Header::parse(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}

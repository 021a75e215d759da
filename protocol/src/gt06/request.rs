//! Requests the server answers with data: the time request 0x8A and the address request 0x2A.
//!
//! ```text
//! 0x8A reply: 78 78 0B 8A | YY MM DD hh mm ss (UTC, binary) | serial | CRC | 0D 0A
//! 0x2A reply: 79 79 00 15 97 | text length u8 | server flag u32 | "NA&&NA&&0##" | serial | CRC | 0D 0A
//! ```
//! We have no geocoder, so the address answer is the "not available" text devices accept.

use crate::message::MessageKind;

use super::{encode, Ctx, Out, Reply};

/// Time request.
pub(crate) const TIME_REQUEST: u8 = 0x8a;
/// Address request.
pub(crate) const ADDRESS_REQUEST: u8 = 0x2a;
/// Address reply (long form).
pub(crate) const ADDRESS_RESPONSE: u8 = 0x97;

/// The address text meaning "no address".
const NO_ADDRESS: &[u8] = b"NA&&NA&&0##";

/// 0x8A: a time-request message and the current UTC time as the reply.
pub(crate) fn time(ctx: &Ctx<'_>) -> Out {
    Out {
        messages: vec![ctx.message(MessageKind::TimeRequest)],
        reply: Reply::Framed {
            long: false,
            protocol: TIME_REQUEST,
            content: encode::date_time((ctx.now)()).to_vec(),
        },
    }
}

/// 0x2A: no message; the reply says no address is available.
pub(crate) fn address() -> Out {
    let mut content = Vec::with_capacity(5 + NO_ADDRESS.len());
    content.push(u8::try_from(NO_ADDRESS.len()).unwrap_or(0));
    content.extend_from_slice(&[0, 0, 0, 0]); // server flag
    content.extend_from_slice(NO_ADDRESS);
    Out {
        messages: Vec::new(),
        reply: Reply::Framed {
            long: true,
            protocol: ADDRESS_RESPONSE,
            content,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gt06::tests::ctx;

    #[test]
    fn the_time_reply_carries_the_clock_in_utc() {
        let out = time(&ctx());
        assert_eq!(out.messages[0].kind, MessageKind::TimeRequest);
        // The test clock reads 2024-03-05 06:07:08 UTC.
        assert_eq!(
            out.reply,
            Reply::Framed {
                long: false,
                protocol: TIME_REQUEST,
                content: vec![24, 3, 5, 6, 7, 8],
            }
        );
    }

    #[test]
    fn the_address_reply_is_long_form_na() {
        let Reply::Framed {
            long,
            protocol,
            content,
        } = address().reply
        else {
            panic!("framed reply expected");
        };
        assert!(long);
        assert_eq!(protocol, ADDRESS_RESPONSE);
        assert_eq!(content[0], 11);
        assert_eq!(&content[5..], b"NA&&NA&&0##");
    }
}

//! GT06 downlink: the 0x80 online command, and the device's answer (0x15, long-form 0x21).
//!
//! 0x80 content: command length u8 (4 + command bytes), server flag u32, the command bytes,
//! and for text messages a language word (1 Chinese, 2 English) after them. The server flag is
//! ours to choose and the device echoes it in its answer, so it is the command's tag. Concox
//! firmware takes commands as `WORD,args#` ASCII text; the ones used here are `WHERE#` (send a
//! position now) and `TIMER,<seconds>#` (reporting interval).
//!
//! A text message has no command word in any public description of GT06: its text is the
//! content, in UTF-16BE (the encoding the devices' own 0x21 text answers use), so that no text
//! can read as an ASCII command, followed by the language word. The device answers under the
//! same flag (0x15 or 0x21), which acknowledges it unless the answer is "Command error!".

use crate::command::{Command, CommandError, CommandReply, Downlink, ReplyRef};
use crate::Protocol;

use super::frame;

/// Protocol number of the online command.
pub const ONLINE_COMMAND: u8 = 0x80;

/// Language word for a text in Chinese (any character outside ASCII).
pub const LANGUAGE_CHINESE: u16 = 0x0001;

/// Language word for a text in English (ASCII only).
pub const LANGUAGE_ENGLISH: u16 = 0x0002;

/// Most UTF-16 code units a message may have: the short frame's length byte counts protocol,
/// command length, server flag, text, language word, serial and CRC (12 bytes plus the text),
/// and a short frame is what every GT06 firmware reads.
pub const MAX_MESSAGE_UNITS: usize = (255 - 12) / 2;

/// Shortest and longest reporting interval the firmware accepts, seconds.
const INTERVAL_RANGE: std::ops::RangeInclusive<u32> = 5..=18_000;

/// What a 0x80 frame carries for one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Content {
    /// The command bytes (ASCII command text, or a message's UTF-16BE text).
    bytes: Vec<u8>,
    /// The language word that follows them, for messages.
    language: Option<u16>,
}

/// The 0x80 frame for `command`, with `tag` as server flag and frame serial.
///
/// # Errors
/// [`CommandError::Unsupported`] for vibrate; [`CommandError::Invalid`] for an interval outside
/// 5 s to 5 h, an empty message or one longer than [`MAX_MESSAGE_UNITS`].
pub fn encode(command: &Command, tag: u32) -> Result<Downlink, CommandError> {
    let content = content(command)?;
    Ok(Downlink {
        bytes: online_command_bytes(tag, &content.bytes, content.language),
        reference: ReplyRef::ServerFlag(tag),
    })
}

/// What the 0x80 frame carries for `command`.
///
/// # Errors
/// As [`encode`].
pub(crate) fn content(command: &Command) -> Result<Content, CommandError> {
    crate::command::supports(Protocol::Gt06, command.kind())?;
    let ascii = |text: String| Content {
        bytes: text.into_bytes(),
        language: None,
    };
    Ok(match command {
        Command::LocateNow => ascii("WHERE#".to_owned()),
        Command::SetInterval { seconds } if INTERVAL_RANGE.contains(seconds) => {
            ascii(format!("TIMER,{seconds}#"))
        }
        Command::SetInterval { seconds } => {
            return Err(CommandError::Invalid(format!(
                "GT06 reporting interval {seconds} s is outside 5 to 18000 s"
            )))
        }
        Command::Message { text } => message(text)?,
        // `supports` refused it already.
        Command::Vibrate => return Err(CommandError::Invalid("not a GT06 command".into())),
    })
}

/// A message's content: UTF-16BE text and its language word.
fn message(text: &str) -> Result<Content, CommandError> {
    let units: Vec<u16> = text.encode_utf16().collect();
    if units.is_empty() {
        return Err(CommandError::Invalid("a GT06 message needs a text".into()));
    }
    if units.len() > MAX_MESSAGE_UNITS {
        return Err(CommandError::Invalid(format!(
            "GT06 message of {} UTF-16 units is too long: a 0x80 frame carries at most {MAX_MESSAGE_UNITS}",
            units.len()
        )));
    }
    Ok(Content {
        bytes: units.iter().flat_map(|u| u.to_be_bytes()).collect(),
        language: Some(if text.is_ascii() {
            LANGUAGE_ENGLISH
        } else {
            LANGUAGE_CHINESE
        }),
    })
}

/// A 0x80 frame carrying the ASCII command `text` under server flag `flag`.
pub fn online_command(flag: u32, text: &str) -> Vec<u8> {
    online_command_bytes(flag, text.as_bytes(), None)
}

/// A 0x80 frame carrying `command` bytes, then `language` when given, under server flag `flag`.
fn online_command_bytes(flag: u32, command: &[u8], language: Option<u16>) -> Vec<u8> {
    let mut content = Vec::with_capacity(7 + command.len());
    // The command length counts the server flag and the command bytes, not the language word;
    // `content` keeps both well under the byte.
    content.push(u8::try_from(4 + command.len()).unwrap_or(u8::MAX));
    content.extend_from_slice(&flag.to_be_bytes());
    content.extend_from_slice(command);
    if let Some(word) = language {
        content.extend_from_slice(&word.to_be_bytes());
    }
    frame::build(false, ONLINE_COMMAND, &content, flag as u16)
}

/// The answer firmware gives a command it cannot carry out (seen in a real 0x21 frame,
/// `fixtures/frames/gt06/command_reply_long.hex`).
const REFUSAL: &str = "command error";

/// The typed answer for a reply carrying `flag` and `text` (trailing NULs and blanks dropped);
/// refused when the text is the firmware's "Command error!".
pub(crate) fn reply(flag: u32, text: &str) -> CommandReply {
    let text = text.trim_end_matches(['\0', ' ', '\r', '\n']);
    let refused = text
        .get(..REFUSAL.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(REFUSAL));
    CommandReply {
        reference: ReplyRef::ServerFlag(flag),
        accepted: !refused,
        text: (!text.is_empty()).then(|| text.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gt06::tests::fixtures;
    use crate::gt06::Gt06Session;
    use crate::{MessageKind, SessionOptions};

    #[test]
    fn locate_now_is_a_where_online_command() {
        let d = encode(&Command::LocateNow, 0x0102_0304).unwrap();
        assert_eq!(
            d.bytes,
            [
                0x78, 0x78, // start
                0x10, // length: protocol 1 + content 10 + serial 2 + crc 2
                0x80, // online command
                0x0a, // command length: flag 4 + "WHERE#" 6
                0x01, 0x02, 0x03, 0x04, // server flag
                b'W', b'H', b'E', b'R', b'E', b'#', // text
                0x03, 0x04, // serial: the low half of the tag
                0x6d, 0x5c, // CRC-ITU (X.25) over length .. serial
                0x0d, 0x0a, // trailer
            ]
        );
        assert_eq!(d.reference, ReplyRef::ServerFlag(0x0102_0304));
        // Our own decoder reads the frame's structure back with a good CRC.
        let crc = frame::crc_itu(&d.bytes[2..d.bytes.len() - 4]);
        assert_eq!(
            &d.bytes[d.bytes.len() - 4..d.bytes.len() - 2],
            crc.to_be_bytes()
        );
    }

    #[test]
    fn the_online_command_matches_the_reference_encoder_byte_for_byte() {
        // Traccar's Gt06ProtocolEncoderTest: "Relay,1#" under server flag 0, serial 0.
        let reference = [
            0x78, 0x78, 0x12, 0x80, 0x0c, 0x00, 0x00, 0x00, 0x00, 0x52, 0x65, 0x6c, 0x61, 0x79,
            0x2c, 0x31, 0x23, 0x00, 0x00, 0x9d, 0xee, 0x0d, 0x0a,
        ];
        assert_eq!(online_command(0, "Relay,1#"), reference);
    }

    #[test]
    fn set_interval_carries_the_seconds_and_checks_the_range() {
        let d = encode(&Command::SetInterval { seconds: 60 }, 7).unwrap();
        assert_eq!(&d.bytes[9..18], b"TIMER,60#");
        assert!(matches!(
            encode(&Command::SetInterval { seconds: 1 }, 7),
            Err(CommandError::Invalid(_))
        ));
    }

    #[test]
    fn vibrate_is_unsupported() {
        assert!(matches!(
            encode(&Command::Vibrate, 1),
            Err(CommandError::Unsupported { .. })
        ));
    }

    #[test]
    fn a_message_goes_as_utf16_text_with_its_language_word() {
        let d = encode(
            &Command::Message {
                text: "请报到".into(),
            },
            0x0000_0102,
        )
        .unwrap();
        assert_eq!(
            d.bytes,
            [
                0x78, 0x78, // start
                0x12, // length: protocol 1 + content 13 + serial 2 + crc 2
                0x80, // online command
                0x0a, // command length: flag 4 + text 6
                0x00, 0x00, 0x01, 0x02, // server flag
                0x8b, 0xf7, 0x62, 0xa5, 0x52, 0x30, // "请报到" in UTF-16BE
                0x00, 0x01, // language: Chinese
                0x01, 0x02, // serial: the low half of the tag
                0x66, 0x49, // CRC-ITU (X.25) over length .. serial
                0x0d, 0x0a, // trailer
            ]
        );
        let crc = frame::crc_itu(&d.bytes[2..d.bytes.len() - 4]);
        assert_eq!(
            &d.bytes[d.bytes.len() - 4..d.bytes.len() - 2],
            crc.to_be_bytes()
        );
        assert_eq!(d.reference, ReplyRef::ServerFlag(0x102));
    }

    #[test]
    fn an_ascii_message_is_still_utf16_so_it_cannot_read_as_a_command() {
        let d = encode(
            &Command::Message {
                text: "WHERE#".into(),
            },
            5,
        )
        .unwrap();
        assert_eq!(d.bytes[4], 4 + 12);
        assert_eq!(&d.bytes[9..21], b"\0W\0H\0E\0R\0E\0#");
        assert_eq!(&d.bytes[21..23], LANGUAGE_ENGLISH.to_be_bytes());
    }

    #[test]
    fn a_message_must_fit_one_short_frame() {
        let longest = "报".repeat(MAX_MESSAGE_UNITS);
        let d = encode(&Command::Message { text: longest }, 1).unwrap();
        assert_eq!(&d.bytes[..2], [0x78, 0x78], "short form");
        assert_eq!(usize::from(d.bytes[2]) + 5, d.bytes.len());
        for text in [String::new(), "报".repeat(MAX_MESSAGE_UNITS + 1)] {
            assert!(matches!(
                encode(&Command::Message { text }, 1),
                Err(CommandError::Invalid(_))
            ));
        }
    }

    #[test]
    fn a_0x15_reply_carries_the_server_flag_and_text() {
        let mut session = Gt06Session::new(&SessionOptions::default());
        let decoded = session.decode_frame(&fixtures::command_reply()).unwrap();
        let m = &decoded.messages[0];
        assert_eq!(m.kind, MessageKind::CommandReply);
        let reply = m.command_reply.as_ref().unwrap();
        assert_eq!(reply.reference, ReplyRef::ServerFlag(0));
        assert!(reply.accepted);
        assert_eq!(
            reply.text.as_deref(),
            Some("Cut off the fuel supply: Success!"),
            "the language word after the text is not part of it"
        );
        assert!(decoded.reply.is_some(), "0x15 is acknowledged");
    }

    #[test]
    fn a_long_0x21_reply_decodes_its_utf16_text() {
        let mut session = Gt06Session::new(&SessionOptions::default());
        let decoded = session
            .decode_frame(&fixtures::command_reply_long())
            .unwrap();
        let reply = decoded.messages[0].command_reply.as_ref().unwrap();
        assert_eq!(reply.reference, ReplyRef::ServerFlag(0));
        assert_eq!(reply.text.as_deref(), Some("Command error!"));
        assert!(!reply.accepted, "the firmware refused the command");
    }

    #[test]
    fn a_reply_to_our_own_command_matches_its_tag() {
        // A device answering WHERE# under our flag 0x2a: 0x15 with flag 0000002a.
        let text = b"Lat:N22.5,Lon:E113.9";
        let mut content = vec![u8::try_from(4 + text.len()).unwrap()];
        content.extend_from_slice(&0x2au32.to_be_bytes());
        content.extend_from_slice(text);
        let bytes = frame::build(false, 0x15, &content, 9);
        let mut session = Gt06Session::new(&SessionOptions::default());
        let decoded = session.decode_frame(&bytes).unwrap();
        let reply = decoded.messages[0].command_reply.as_ref().unwrap();
        assert_eq!(
            reply.reference,
            crate::command::reply_ref(Protocol::Gt06, &Command::LocateNow, 0x2a).unwrap()
        );
    }
}

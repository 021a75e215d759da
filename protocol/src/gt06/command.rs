//! GT06 downlink: the 0x80 online command, and the device's answer (0x15, long-form 0x21).
//!
//! 0x80 content: command length u8 (4 + text), server flag u32, ASCII command text. The server
//! flag is ours to choose and the device echoes it in its answer, so it is the command's tag.
//! Concox firmware takes commands as `WORD,args#` text; the ones used here are `WHERE#` (send
//! a position now) and `TIMER,<seconds>#` (reporting interval).

use crate::command::{Command, CommandError, CommandReply, Downlink, ReplyRef};
use crate::Protocol;

use super::frame;

/// Protocol number of the online command.
pub const ONLINE_COMMAND: u8 = 0x80;

/// Shortest and longest reporting interval the firmware accepts, seconds.
const INTERVAL_RANGE: std::ops::RangeInclusive<u32> = 5..=18_000;

/// The 0x80 frame for `command`, with `tag` as server flag and frame serial.
///
/// # Errors
/// [`CommandError::Unsupported`] for message and vibrate; [`CommandError::Invalid`] for an
/// interval outside 5 s to 5 h.
pub fn encode(command: &Command, tag: u32) -> Result<Downlink, CommandError> {
    let text = text(command)?;
    Ok(Downlink {
        bytes: online_command(tag, &text),
        reference: ReplyRef::ServerFlag(tag),
    })
}

/// The command text the 0x80 frame carries for `command`.
///
/// # Errors
/// As [`encode`].
pub(crate) fn text(command: &Command) -> Result<String, CommandError> {
    crate::command::supports(Protocol::Gt06, command.kind())?;
    Ok(match command {
        Command::LocateNow => "WHERE#".to_owned(),
        Command::SetInterval { seconds } if INTERVAL_RANGE.contains(seconds) => {
            format!("TIMER,{seconds}#")
        }
        Command::SetInterval { seconds } => {
            return Err(CommandError::Invalid(format!(
                "GT06 reporting interval {seconds} s is outside 5 to 18000 s"
            )))
        }
        // `supports` refused the others already.
        Command::Message { .. } | Command::Vibrate => {
            return Err(CommandError::Invalid("not a GT06 command".into()))
        }
    })
}

/// A 0x80 frame carrying `text` (ASCII, short) under server flag `flag`.
pub fn online_command(flag: u32, text: &str) -> Vec<u8> {
    let mut content = Vec::with_capacity(5 + text.len());
    // Command length counts the server flag and the text; the texts built here are short
    // ASCII, well under the byte.
    content.push(u8::try_from(4 + text.len()).unwrap_or(u8::MAX));
    content.extend_from_slice(&flag.to_be_bytes());
    content.extend_from_slice(text.as_bytes());
    frame::build(false, ONLINE_COMMAND, &content, flag as u16)
}

/// The typed answer for a reply carrying `flag` and `text` (trailing NULs and blanks dropped).
pub(crate) fn reply(flag: u32, text: &str) -> CommandReply {
    let text = text.trim_end_matches(['\0', ' ', '\r', '\n']);
    CommandReply {
        reference: ReplyRef::ServerFlag(flag),
        accepted: true,
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
    fn message_and_vibrate_are_unsupported() {
        for c in [Command::Message { text: "x".into() }, Command::Vibrate] {
            assert!(matches!(
                encode(&c, 1),
                Err(CommandError::Unsupported { .. })
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
            Some("Cut off the fuel supply: Success!\0\u{2}")
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

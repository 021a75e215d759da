//! Watch downlink: `[MAKER*ID*LLLL*CONTENT]` frames the watch executes and answers by sending
//! a frame whose type is the same keyword (`[3G*ID*0002*CR]`).
//!
//! | command | content |
//! | --- | --- |
//! | message | `MESSAGE,<text as UTF-16BE, upper-case hex>` |
//! | vibrate | `FIND` (the watch rings and vibrates) |
//! | set_interval | `UPLOAD,<seconds>` |
//! | locate_now | `CR` |

use std::fmt::Write as _;

use crate::command::{Command, CommandError, CommandReply, Downlink, ReplyRef};

use super::encode;

/// Longest message text, in UTF-16 code units; watch screens and firmware buffers are small.
const MAX_TEXT_UNITS: usize = 200;

/// The command keyword, which is also the type of the watch's answer.
pub fn keyword(command: &Command) -> &'static str {
    match command {
        Command::Message { .. } => "MESSAGE",
        Command::Vibrate => "FIND",
        Command::SetInterval { .. } => "UPLOAD",
        Command::LocateNow => "CR",
    }
}

/// Whether a frame type is the answer to one of our commands.
pub(crate) fn is_answer(kind: &str) -> bool {
    matches!(kind, "MESSAGE" | "FIND" | "UPLOAD" | "CR")
}

/// The typed answer carried by a frame of type `kind` (see [`is_answer`]).
pub(crate) fn reply(kind: &str) -> CommandReply {
    CommandReply {
        reference: ReplyRef::Keyword(kind.to_owned()),
        accepted: true,
        text: None,
    }
}

/// The frame for `command`, addressed as the watch's own frames are (maker code, ID, index).
///
/// # Errors
/// [`CommandError::Invalid`] for an empty or over-long text, or a zero interval.
pub fn encode(
    command: &Command,
    maker: &str,
    id: &str,
    index: Option<&str>,
) -> Result<Downlink, CommandError> {
    let content = content(command)?;
    Ok(Downlink {
        bytes: encode::frame(maker, id, index, content.as_bytes()),
        reference: ReplyRef::Keyword(keyword(command).to_owned()),
    })
}

/// The frame content for `command`.
///
/// # Errors
/// As [`encode`].
pub(crate) fn content(command: &Command) -> Result<String, CommandError> {
    let word = keyword(command);
    Ok(match command {
        Command::Message { text } => {
            let units: Vec<u16> = text.encode_utf16().collect();
            if units.is_empty() || units.len() > MAX_TEXT_UNITS {
                return Err(CommandError::Invalid(format!(
                    "a watch message has 1 to {MAX_TEXT_UNITS} characters"
                )));
            }
            let mut content = format!("{word},");
            for unit in units {
                // Writing to a String cannot fail.
                let _ = write!(content, "{unit:04X}");
            }
            content
        }
        Command::SetInterval { seconds } if *seconds > 0 => format!("{word},{seconds}"),
        Command::SetInterval { .. } => {
            return Err(CommandError::Invalid(
                "interval must be at least 1 s".into(),
            ))
        }
        Command::Vibrate | Command::LocateNow => word.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watch::WatchSession;
    use crate::{Item, Session, SessionOptions};

    #[test]
    fn commands_echo_the_watch_addressing() {
        let cr = encode(&Command::LocateNow, "3G", "1234567890", None).unwrap();
        assert_eq!(cr.bytes, b"[3G*1234567890*0002*CR]");
        let zj = encode(
            &Command::SetInterval { seconds: 60 },
            "ZJ",
            "1234567890",
            Some("0001"),
        )
        .unwrap();
        assert_eq!(zj.bytes, b"[ZJ*1234567890*0001*0009*UPLOAD,60]");
        let find = encode(&Command::Vibrate, "CS", "1", None).unwrap();
        assert_eq!(find.bytes, b"[CS*1*0004*FIND]");
    }

    #[test]
    fn a_message_is_utf16_hex() {
        let d = encode(
            &Command::Message {
                text: "回家A".into(),
            },
            "3G",
            "1",
            None,
        )
        .unwrap();
        // 回 U+56DE, 家 U+5BB6, A U+0041
        assert_eq!(d.bytes, b"[3G*1*0014*MESSAGE,56DE5BB60041]");
        assert!(encode(
            &Command::Message {
                text: String::new()
            },
            "3G",
            "1",
            None
        )
        .is_err());
    }

    #[test]
    fn the_watch_answer_names_the_command() {
        let mut session = WatchSession::new(&SessionOptions::default());
        let now = chrono::Utc::now();
        assert_eq!(
            session.encode_command(&Command::LocateNow, 1, now),
            Err(CommandError::NoIdentity)
        );
        let mut buf = bytes::BytesMut::from(&b"[3G*8800000015*0002*LK][3G*8800000015*0002*CR]"[..]);
        let _keep_alive = session.decode(&mut buf).unwrap();
        let Some(Item::Frame(d)) = session.decode(&mut buf).unwrap() else {
            panic!("answer decodes");
        };
        let reply = d.messages[0].command_reply.as_ref().unwrap();
        assert_eq!(
            reply.reference,
            crate::command::reply_ref(crate::Protocol::Watch, &Command::LocateNow, 0).unwrap()
        );
        let d = session.encode_command(&Command::LocateNow, 1, now).unwrap();
        assert_eq!(d.bytes, b"[3G*8800000015*0002*CR]");
    }
}

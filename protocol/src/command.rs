//! Downlink commands: what the monitoring centre can tell a device to do, the bytes each
//! protocol uses for it, and the device's typed answer.
//!
//! A [`Command`] is protocol-neutral. A connection's [`Session`](crate::Session) turns it into a
//! [`Downlink`] with [`Session::encode_command`](crate::Session::encode_command), because only
//! the session knows what the frame must echo (the JT/T 808 terminal number and header edition,
//! the watch's maker code). The caller numbers each command with a `tag`; the [`ReplyRef`] the
//! downlink carries is derived from it, so [`reply_ref`] gives the same value before the bytes
//! exist, and a decoded [`CommandReply`] carries the `ReplyRef` of the command it answers.
//!
//! | command | GT06 (0x80 online command) | JT/T 808 | watch | H02 |
//! | --- | --- | --- | --- | --- |
//! | `message` | text in UTF-16BE + language word | 0x8300 text (GBK) | `MESSAGE` (UTF-16 hex) | no |
//! | `vibrate` | no | no | `FIND` | no |
//! | `set_interval` | `TIMER,<s>#` | 0x8103 parameter 0x0029 | `UPLOAD,<s>` | `S71,22,<s>` |
//! | `locate_now` | `WHERE#` | 0x8201 | `CR` | no |
//!
//! MQTT gateways (`json`) take every command as JSON and answer with its tag.
//!
//! Replies: GT06 0x15 / long-form 0x21 (server flag echoed), JT/T 808 0x0001 general response
//! (serial and message ID echoed, with a result) and 0x0201 position answer (serial echoed),
//! watch frames whose type is the command's keyword, H02 `V4` sentences naming the command.

use std::fmt;

use serde::Serialize;

use crate::Protocol;

/// Something the monitoring centre asks a device to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Show (or read out) a text to the wearer.
    Message {
        /// The text, as the operator wrote it.
        text: String,
    },
    /// Make the device vibrate or ring so the wearer notices.
    Vibrate,
    /// Change how often the device reports its position.
    SetInterval {
        /// Seconds between reports.
        seconds: u32,
    },
    /// Ask for a position now.
    LocateNow,
}

/// The kind of a [`Command`], without its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandKind {
    /// [`Command::Message`].
    Message,
    /// [`Command::Vibrate`].
    Vibrate,
    /// [`Command::SetInterval`].
    SetInterval,
    /// [`Command::LocateNow`].
    LocateNow,
}

impl CommandKind {
    /// Every kind, in documentation order.
    pub const ALL: [CommandKind; 4] = [
        CommandKind::Message,
        CommandKind::Vibrate,
        CommandKind::SetInterval,
        CommandKind::LocateNow,
    ];

    /// The snake_case name used by the API.
    pub fn name(&self) -> &'static str {
        match self {
            CommandKind::Message => "message",
            CommandKind::Vibrate => "vibrate",
            CommandKind::SetInterval => "set_interval",
            CommandKind::LocateNow => "locate_now",
        }
    }

    /// The kind named `name`, if any.
    pub fn from_name(name: &str) -> Option<CommandKind> {
        CommandKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

impl Command {
    /// The command's kind.
    pub fn kind(&self) -> CommandKind {
        match self {
            Command::Message { .. } => CommandKind::Message,
            Command::Vibrate => CommandKind::Vibrate,
            Command::SetInterval { .. } => CommandKind::SetInterval,
            Command::LocateNow => CommandKind::LocateNow,
        }
    }
}

/// What a device's answer is matched by: the value the downlink carried for this purpose.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case", tag = "by", content = "value")]
pub enum ReplyRef {
    /// GT06: the 4-byte server flag of the 0x80 command, echoed in 0x15 / 0x21.
    ServerFlag(u32),
    /// JT/T 808: the platform message's ID and serial, echoed in 0x0001 (and the serial in
    /// 0x0201).
    Serial {
        /// The platform message ID (0x8300, 0x8103, 0x8201).
        msg_id: u16,
        /// Its serial.
        serial: u16,
    },
    /// Text protocols: the command word the device echoes (`CR`, `UPLOAD`, `S71`, ...). The
    /// oldest unanswered command with that word is the one answered.
    Keyword(String),
    /// Transports that carry the caller's tag itself and echo it (JSON to MQTT gateways).
    Tag(u32),
}

impl fmt::Display for ReplyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplyRef::ServerFlag(flag) => write!(f, "flag:{flag:08x}"),
            ReplyRef::Serial { msg_id, serial } => write!(f, "serial:{msg_id:04x}:{serial}"),
            ReplyRef::Keyword(word) => write!(f, "keyword:{word}"),
            ReplyRef::Tag(tag) => write!(f, "tag:{tag}"),
        }
    }
}

/// A command encoded for one device's connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downlink {
    /// The whole frame to write.
    pub bytes: Vec<u8>,
    /// What the device's answer will carry.
    pub reference: ReplyRef,
}

/// A device's answer to a command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommandReply {
    /// Which command it answers.
    pub reference: ReplyRef,
    /// False when the device said it failed or does not support the command (JT/T 808 result
    /// codes 1 to 3); protocols without a result code always answer true.
    pub accepted: bool,
    /// What the device said, when it said more than "done" (GT06 text, a JT/T 808 result).
    pub text: Option<String>,
}

/// Why a command cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// The protocol has no way to say this.
    #[error("{protocol} devices do not support the {} command: {reason}", kind.name())]
    Unsupported {
        /// The device's protocol.
        protocol: Protocol,
        /// What was asked.
        kind: CommandKind,
        /// Why, in a sentence an operator can act on.
        reason: &'static str,
    },
    /// The arguments cannot be sent (text too long, characters the wire cannot carry).
    #[error("{0}")]
    Invalid(String),
    /// The session has not seen the device identify itself, so there is nothing to address.
    #[error("the device has not identified itself on this connection")]
    NoIdentity,
}

/// Whether `protocol` can carry `kind` at all.
///
/// # Errors
/// [`CommandError::Unsupported`] with the reason.
pub fn supports(protocol: Protocol, kind: CommandKind) -> Result<(), CommandError> {
    let reason = match (protocol, kind) {
        (Protocol::Gt06, CommandKind::Message | CommandKind::SetInterval | CommandKind::LocateNow)
        | (Protocol::Jt808, CommandKind::Message | CommandKind::SetInterval)
        | (Protocol::Jt808, CommandKind::LocateNow)
        | (Protocol::Watch, _)
        | (Protocol::H02, CommandKind::SetInterval)
        // A gateway takes every command as JSON and carries it in the device's own protocol.
        | (Protocol::Json, _) => return Ok(()),
        (Protocol::Gt06, CommandKind::Vibrate) => "GT06 has no vibration command",
        (Protocol::Jt808, CommandKind::Vibrate) => {
            "JT/T 808 has no vibration command; send a message, which terminals read out"
        }
        (Protocol::H02, CommandKind::Message | CommandKind::Vibrate) => {
            "the H02 command set has no text or vibration command"
        }
        (Protocol::H02, CommandKind::LocateNow) => {
            "H02 has no single-position request; set a short interval instead"
        }
        (Protocol::Osmand, _) => {
            "OsmAnd phone apps only upload positions over HTTP and take no commands"
        }
    };
    Err(CommandError::Unsupported {
        protocol,
        kind,
        reason,
    })
}

/// The [`ReplyRef`] the downlink for `command` numbered `tag` will carry on `protocol`, once
/// the command is known to be one the protocol can carry with these arguments.
///
/// # Errors
/// [`CommandError::Unsupported`] as [`supports`]; [`CommandError::Invalid`] for arguments the
/// protocol cannot carry (an interval out of range, a text the wire cannot hold).
pub fn reply_ref(
    protocol: Protocol,
    command: &Command,
    tag: u32,
) -> Result<ReplyRef, CommandError> {
    supports(protocol, command.kind())?;
    // The encoders' own argument checks, so a command refused here is never sent and one
    // accepted here encodes.
    match protocol {
        Protocol::Gt06 => crate::gt06::command::content(command).map(drop)?,
        Protocol::Jt808 => {
            crate::jt808::command::body(command, crate::jt808::header::Edition::V2013).map(drop)?
        }
        Protocol::Watch => crate::watch::command::content(command).map(drop)?,
        Protocol::H02 => crate::h02::command::interval(command).map(drop)?,
        Protocol::Osmand | Protocol::Json => {}
    }
    Ok(match protocol {
        Protocol::Gt06 => ReplyRef::ServerFlag(tag),
        Protocol::Jt808 => ReplyRef::Serial {
            msg_id: crate::jt808::command::message_id(command),
            serial: tag as u16,
        },
        Protocol::Watch => ReplyRef::Keyword(crate::watch::command::keyword(command).to_owned()),
        // H02 carries set_interval only (`supports` refused the others).
        Protocol::H02 => ReplyRef::Keyword(crate::h02::command::KEYWORD_INTERVAL.to_owned()),
        // A gateway echoes the tag itself; `supports` refuses every OsmAnd command, and the
        // arm keeps the match total.
        Protocol::Json | Protocol::Osmand => ReplyRef::Tag(tag),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_protocol_and_kind_has_an_answer_and_refusals_say_why() {
        for protocol in Protocol::ALL {
            for kind in CommandKind::ALL {
                if let Err(e) = supports(protocol, kind) {
                    let text = e.to_string();
                    assert!(text.starts_with(protocol.name()), "{text}");
                    assert!(text.contains(kind.name()), "{text}");
                }
            }
        }
        assert!(supports(Protocol::Osmand, CommandKind::LocateNow).is_err());
        assert!(supports(Protocol::Jt808, CommandKind::Message).is_ok());
    }

    #[test]
    fn arguments_a_protocol_cannot_carry_are_refused_before_sending() {
        let short = Command::SetInterval { seconds: 2 };
        assert!(matches!(
            reply_ref(Protocol::Gt06, &short, 1),
            Err(CommandError::Invalid(_))
        ));
        assert!(reply_ref(Protocol::Jt808, &short, 1).is_ok());
        let emoji = Command::Message {
            text: "🙂".into()
        };
        assert!(matches!(
            reply_ref(Protocol::Jt808, &emoji, 1),
            Err(CommandError::Invalid(_))
        ));
        assert!(reply_ref(Protocol::Watch, &emoji, 1).is_ok());
    }

    #[test]
    fn kinds_round_trip_their_names() {
        for kind in CommandKind::ALL {
            assert_eq!(CommandKind::from_name(kind.name()), Some(kind));
        }
        assert_eq!(CommandKind::from_name("reboot"), None);
    }

    #[test]
    fn reply_refs_print_distinctly() {
        assert_eq!(ReplyRef::ServerFlag(0x1f).to_string(), "flag:0000001f");
        assert_eq!(
            ReplyRef::Serial {
                msg_id: 0x8300,
                serial: 7
            }
            .to_string(),
            "serial:8300:7"
        );
        assert_eq!(ReplyRef::Keyword("CR".into()).to_string(), "keyword:CR");
    }
}

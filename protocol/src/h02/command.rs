//! H02 downlink: `*HQ,<ID>,<CMD>,<hhmmss>,<args>#` sentences, answered by a `V4` sentence that
//! names the command (`*HQ,<ID>,V4,S71,...#`). Only the reporting interval has a command
//! common to H02 firmware: `S71,22,<seconds>`.

use chrono::{DateTime, Utc};

use crate::command::{Command, CommandError, CommandReply, Downlink, ReplyRef};
use crate::Protocol;

/// The interval command word (`S71`, sub-command 22: upload interval).
pub const KEYWORD_INTERVAL: &str = "S71";

/// The sentence for `command` to device `id`, stamped with `now` (UTC) as H02 commands are.
///
/// # Errors
/// [`CommandError::Unsupported`] for everything but set_interval; [`CommandError::Invalid`] for
/// a zero interval.
pub fn encode(command: &Command, id: &str, now: DateTime<Utc>) -> Result<Downlink, CommandError> {
    let seconds = interval(command)?;
    let time = now.format("%H%M%S");
    Ok(Downlink {
        bytes: format!("*HQ,{id},{KEYWORD_INTERVAL},{time},22,{seconds}#").into_bytes(),
        reference: ReplyRef::Keyword(KEYWORD_INTERVAL.to_owned()),
    })
}

/// The interval of the one command H02 carries.
///
/// # Errors
/// As [`encode`].
pub(crate) fn interval(command: &Command) -> Result<u32, CommandError> {
    crate::command::supports(Protocol::H02, command.kind())?;
    match command {
        Command::SetInterval { seconds } if *seconds > 0 => Ok(*seconds),
        Command::SetInterval { .. } => Err(CommandError::Invalid(
            "interval must be at least 1 s".into(),
        )),
        _ => Err(CommandError::Invalid("not an H02 command".into())),
    }
}

/// The answer a `V4` sentence carries: the command word it echoes, and whether the device
/// said `ERROR` in the next field.
pub(crate) fn reply(command: &[u8], next: &[u8]) -> Option<CommandReply> {
    let word = std::str::from_utf8(command).ok()?;
    if word.is_empty() || !word.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    let failed = next.eq_ignore_ascii_case(b"ERROR");
    Some(CommandReply {
        reference: ReplyRef::Keyword(word.to_owned()),
        accepted: !failed,
        text: failed.then(|| "the device answered ERROR".to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::h02::H02Session;
    use crate::{Session, SessionOptions};
    use chrono::TimeZone;

    #[test]
    fn set_interval_is_s71_22() {
        let now = Utc.with_ymd_and_hms(2026, 3, 14, 9, 5, 7).unwrap();
        let d = encode(&Command::SetInterval { seconds: 30 }, "4210051415", now).unwrap();
        assert_eq!(d.bytes, b"*HQ,4210051415,S71,090507,22,30#");
        assert_eq!(d.reference, ReplyRef::Keyword("S71".into()));
        assert!(matches!(
            encode(&Command::LocateNow, "1", now),
            Err(CommandError::Unsupported { .. })
        ));
    }

    #[test]
    fn a_v4_sentence_answers_the_command_it_names() {
        let mut session = H02Session::new(&SessionOptions::default());
        let frame = crate::test_support::fixture("h02", "command_reply");
        let decoded = session.decode_frame(&frame).unwrap();
        // The first frame of a device also opens its session with a login message.
        let reply = decoded
            .messages
            .iter()
            .find_map(|m| m.command_reply.as_ref())
            .unwrap();
        assert_eq!(reply.reference, ReplyRef::Keyword("S1".into()));
        assert!(reply.accepted);
        let error = b"*TH,2020916012,V4,S20,ERROR,130305,050316,A,2212.8745,N,11346.6574,E,14.28,028,220902,FFFFFBFF#";
        let decoded = session.decode_frame(error).unwrap();
        assert!(!decoded.messages[0].command_reply.as_ref().unwrap().accepted);
        let now = Utc::now();
        let d = session
            .encode_command(&Command::SetInterval { seconds: 10 }, 0, now)
            .unwrap();
        assert!(d.bytes.starts_with(b"*HQ,2020916012,S71,"));
    }
}

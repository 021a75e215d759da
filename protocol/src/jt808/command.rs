//! JT/T 808 downlink: 0x8300 text message, 0x8103 set terminal parameters (the default
//! reporting interval), 0x8201 position query; and the terminal's answers, 0x0001 general
//! response and 0x0201 position query response.
//!
//! Each command goes out with the session's last header edition and terminal number echoed,
//! and with the caller's tag (low 16 bits) as its serial; the terminal's answer names that
//! serial and our message ID, which is what the reply is matched by.

use encoding_rs::GBK;

use crate::command::{Command, CommandError, CommandReply, Downlink, ReplyRef};
use crate::reader::Reader;
use crate::Protocol;

use super::header::{self, Edition, Terminal, MAX_BODY_LEN};

/// Text message down (文本信息下发).
pub const MSG_TEXT: u16 = 0x8300;
/// Set terminal parameters (设置终端参数).
pub const MSG_SET_PARAMETERS: u16 = 0x8103;
/// Position query (位置信息查询).
pub const MSG_POSITION_QUERY: u16 = 0x8201;

/// Parameter 0x0029: default time reporting interval, seconds (u32).
pub const PARAM_REPORT_INTERVAL: u32 = 0x0029;

/// 0x8300 flag: emergency (bit 0), show on the terminal display (bit 2), read out by TTS
/// (bit 3): a warning the wearer sees and hears.
const TEXT_FLAG: u8 = 0x01 | 0x04 | 0x08;
/// 2019 edition text type: 1 = notice.
const TEXT_TYPE_NOTICE: u8 = 1;

/// The platform message ID that carries `command` (vibrate has none; 0 is never sent because
/// [`encode`] refuses it first).
pub fn message_id(command: &Command) -> u16 {
    match command {
        Command::Message { .. } => MSG_TEXT,
        Command::SetInterval { .. } => MSG_SET_PARAMETERS,
        Command::LocateNow => MSG_POSITION_QUERY,
        Command::Vibrate => 0,
    }
}

/// The body of the platform message for `command` in `edition`.
///
/// # Errors
/// As [`encode`].
pub(crate) fn body(command: &Command, edition: Edition) -> Result<Vec<u8>, CommandError> {
    crate::command::supports(Protocol::Jt808, command.kind())?;
    let mut body = Vec::new();
    match command {
        Command::Message { text } => {
            let (gbk, _, unmappable) = GBK.encode(text);
            if unmappable {
                return Err(CommandError::Invalid(
                    "the text has characters JT/T 808 terminals (GBK) cannot show".into(),
                ));
            }
            body.push(TEXT_FLAG);
            if matches!(edition, Edition::V2019 { .. }) {
                body.push(TEXT_TYPE_NOTICE);
            }
            if body.len() + gbk.len() > MAX_BODY_LEN {
                return Err(CommandError::Invalid(format!(
                    "the text is {} bytes in GBK; a JT/T 808 message carries at most {}",
                    gbk.len(),
                    MAX_BODY_LEN - body.len()
                )));
            }
            body.extend_from_slice(&gbk);
        }
        Command::SetInterval { seconds } => {
            if *seconds == 0 {
                return Err(CommandError::Invalid(
                    "interval must be at least 1 s".into(),
                ));
            }
            body.push(1); // parameter count
            body.extend_from_slice(&PARAM_REPORT_INTERVAL.to_be_bytes());
            body.push(4); // value length
            body.extend_from_slice(&seconds.to_be_bytes());
        }
        Command::LocateNow => {}
        Command::Vibrate => {
            return Err(CommandError::Invalid("not a JT/T 808 command".into()));
        }
    }
    Ok(body)
}

/// The frame for `command` to the terminal `terminal` (as last heard, edition included), with
/// serial `tag as u16`.
///
/// # Errors
/// [`CommandError::Unsupported`] for vibrate; [`CommandError::Invalid`] for a text GBK cannot
/// carry, a text longer than a body allows, or a zero interval.
pub fn encode(
    command: &Command,
    tag: u32,
    edition: Edition,
    terminal: &Terminal,
) -> Result<Downlink, CommandError> {
    let body = body(command, edition)?;
    let msg_id = message_id(command);
    let serial = tag as u16;
    let mut content = Vec::with_capacity(body.len() + 17);
    header::write_header(
        &mut content,
        msg_id,
        edition,
        terminal.as_bytes(),
        serial,
        body.len(),
    );
    content.extend_from_slice(&body);
    Ok(Downlink {
        bytes: header::wrap(&content),
        reference: ReplyRef::Serial { msg_id, serial },
    })
}

/// A 0x0001 body: answered serial u16, answered message ID u16, result u8 (0 success, 1
/// failure, 2 bad message, 3 unsupported, 4 alarm confirmed). `None` when too short.
pub(crate) fn general_response(body: &[u8]) -> Option<CommandReply> {
    let mut r = Reader::new(body);
    let serial = r.u16("answered serial").ok()?;
    let msg_id = r.u16("answered message id").ok()?;
    let result = r.u8("result").ok()?;
    let (accepted, text) = match result {
        0 => (true, None),
        1 => (false, Some("the terminal reports failure")),
        2 => (false, Some("the terminal found the message malformed")),
        3 => (false, Some("the terminal does not support this message")),
        4 => (true, Some("alarm confirmed")),
        _ => (
            false,
            Some("the terminal answered with an unknown result code"),
        ),
    };
    Some(CommandReply {
        reference: ReplyRef::Serial { msg_id, serial },
        accepted,
        text: text.map(str::to_owned),
    })
}

/// The answer a 0x0201 body's leading serial gives to our 0x8201.
pub(crate) fn position_response(body: &[u8]) -> Option<CommandReply> {
    let serial = u16::from_be_bytes([*body.first()?, *body.get(1)?]);
    Some(CommandReply {
        reference: ReplyRef::Serial {
            msg_id: MSG_POSITION_QUERY,
            serial,
        },
        accepted: true,
        text: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jt808::encode::{self as terminal_frames};
    use crate::jt808::Jt808Session;
    use crate::{Item, MessageKind, Session, SessionOptions};

    fn terminal_2013() -> Terminal {
        Terminal::from_bytes(&[0x01, 0x20, 0x76, 0x46, 0x32, 0x79])
    }

    /// Un-escapes and strips the flags and check code of a frame we built.
    fn inner(frame: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut it = frame[1..frame.len() - 1].iter();
        while let Some(&b) = it.next() {
            if b == 0x7d {
                out.push(if it.next() == Some(&0x01) { 0x7d } else { 0x7e });
            } else {
                out.push(b);
            }
        }
        let check = out.pop().unwrap();
        assert_eq!(header::xor(&out), check, "check code");
        out
    }

    #[test]
    fn position_query_is_an_empty_0x8201() {
        let d = encode(
            &Command::LocateNow,
            0x0001_0005,
            Edition::V2013,
            &terminal_2013(),
        )
        .unwrap();
        assert_eq!(
            inner(&d.bytes),
            [
                0x82, 0x01, // message id
                0x00, 0x00, // properties: empty body
                0x01, 0x20, 0x76, 0x46, 0x32, 0x79, // terminal number echoed
                0x00, 0x05, // serial: the tag's low half
            ]
        );
        assert_eq!(
            d.reference,
            ReplyRef::Serial {
                msg_id: 0x8201,
                serial: 5
            }
        );
    }

    #[test]
    fn set_interval_is_parameter_0x0029() {
        let d = encode(
            &Command::SetInterval { seconds: 30 },
            9,
            Edition::V2013,
            &terminal_2013(),
        )
        .unwrap();
        let bytes = inner(&d.bytes);
        assert_eq!(&bytes[..4], [0x81, 0x03, 0x00, 0x0a]);
        assert_eq!(
            &bytes[12..],
            [
                0x01, // one parameter
                0x00, 0x00, 0x00, 0x29, // default reporting interval
                0x04, // value length
                0x00, 0x00, 0x00, 0x1e, // 30 s
            ]
        );
    }

    #[test]
    fn a_text_goes_out_in_gbk_with_the_display_and_tts_flags() {
        let d = encode(
            &Command::Message {
                text: "请回家".into(),
            },
            2,
            Edition::V2013,
            &terminal_2013(),
        )
        .unwrap();
        let bytes = inner(&d.bytes);
        assert_eq!(&bytes[..4], [0x83, 0x00, 0x00, 0x07]);
        // flag, then 请 c7eb 回 bbd8 家 bcd2
        assert_eq!(&bytes[12..], [0x0d, 0xc7, 0xeb, 0xbb, 0xd8, 0xbc, 0xd2]);
        let v2019 = encode(
            &Command::Message { text: "hi".into() },
            2,
            Edition::V2019 { version: 1 },
            &Terminal::from_bytes(&[0; 10]),
        )
        .unwrap();
        let bytes = inner(&v2019.bytes);
        assert_eq!(&bytes[bytes.len() - 4..], [0x0d, 0x01, b'h', b'i']);
    }

    #[test]
    fn texts_gbk_cannot_carry_or_too_long_are_refused() {
        for text in ["🙂".to_owned(), "a".repeat(1100)] {
            assert!(matches!(
                encode(
                    &Command::Message { text },
                    1,
                    Edition::V2013,
                    &terminal_2013()
                ),
                Err(CommandError::Invalid(_))
            ));
        }
        assert!(matches!(
            encode(&Command::Vibrate, 1, Edition::V2013, &terminal_2013()),
            Err(CommandError::Unsupported { .. })
        ));
    }

    #[test]
    fn a_general_response_names_the_command_and_its_result() {
        let body = [
            0x00, 0x05, // answered serial
            0x83, 0x00, // answered message id
            0x00, // success
        ];
        let frame = terminal_frames::frame(0x0001, "12076463279", Edition::V2013, 3, &body);
        let mut session = Jt808Session::new(&SessionOptions::default());
        let Some(Item::Frame(d)) = session.decode(&mut frame[..].into()).unwrap() else {
            panic!("decodes");
        };
        let m = &d.messages[0];
        assert_eq!(m.kind, MessageKind::CommandReply);
        assert_eq!(
            m.command_reply,
            Some(CommandReply {
                reference: ReplyRef::Serial {
                    msg_id: 0x8300,
                    serial: 5
                },
                accepted: true,
                text: None
            })
        );
        assert_eq!(d.reply, None, "a general response is not answered");
        let failed = general_response(&[0x00, 0x05, 0x81, 0x03, 0x03]).unwrap();
        assert!(!failed.accepted);
    }

    #[test]
    fn a_position_response_carries_the_query_serial_and_the_position() {
        // 0x0201: answered serial 0x0007, then a 0x0200 body (alarm, status, lat, lon, ...).
        let mut body = vec![0x00, 0x07];
        body.extend_from_slice(&[
            0x00, 0x00, 0x00, 0x00, // alarm flags
            0x00, 0x00, 0x00, 0x02, // status: valid
            0x01, 0x85, 0x55, 0x6c, // latitude 25.515372
            0x06, 0xb2, 0x87, 0x64, // longitude 112.363364
            0x00, 0x32, // altitude
            0x00, 0x00, // speed
            0x00, 0x00, // course
            0x26, 0x03, 0x14, 0x17, 0x00, 0x00, // 2026-03-14 17:00:00 GMT+8
        ]);
        let frame = terminal_frames::frame(0x0201, "12076463279", Edition::V2013, 4, &body);
        let mut session = Jt808Session::new(&SessionOptions::default());
        let Some(Item::Frame(d)) = session.decode(&mut frame[..].into()).unwrap() else {
            panic!("decodes");
        };
        let m = &d.messages[0];
        assert!(m.position.is_some());
        assert_eq!(
            m.command_reply.as_ref().unwrap().reference,
            crate::command::reply_ref(Protocol::Jt808, &Command::LocateNow, 7).unwrap()
        );
    }

    #[test]
    fn the_session_addresses_the_terminal_it_heard() {
        let mut session = Jt808Session::new(&SessionOptions::default());
        let now = chrono::Utc::now();
        assert_eq!(
            session.encode_command(&Command::LocateNow, 1, now),
            Err(CommandError::NoIdentity)
        );
        let registration = terminal_frames::registration(
            "12076463279",
            Edition::V2013,
            1,
            "EWALL",
            "W1",
            "T1",
            "",
        );
        session.decode(&mut registration[..].into()).unwrap();
        assert!(
            !session.ready_for_commands(),
            "registered, not yet authenticated"
        );
        let hb = terminal_frames::frame(0x0002, "12076463279", Edition::V2013, 1, &[]);
        session.decode(&mut hb[..].into()).unwrap();
        assert!(session.ready_for_commands());
        let d = session.encode_command(&Command::LocateNow, 1, now).unwrap();
        assert_eq!(
            &inner(&d.bytes)[4..10],
            [0x01, 0x20, 0x76, 0x46, 0x32, 0x79]
        );
    }
}

//! Link upkeep: `LK` keep-alive, `TKQ`/`TKQ2` voice-channel keep-alive and `INIT`.
//!
//! In: the header and the body after the type. Out: one message and the reply the device waits
//! for before it sends anything else (`LK`, the `TKQ` type echoed, `INIT,1`).
//!
//! Every watch frame names its device, so there is no login step: `LK` is a
//! [`MessageKind::Heartbeat`] like any other keep-alive, and `INIT` (sent once after power-on)
//! is the [`MessageKind::Login`].

use crate::{Decoded, Integrity, Message, MessageKind};

use super::header::Header;

/// `LK[,steps,rolls,battery%]`, answered with `LK`.
pub(crate) fn keep_alive(header: &Header<'_>, body: &[u8]) -> Decoded {
    let mut message = message(header, MessageKind::Heartbeat);
    let values: Vec<&[u8]> = body.split(|&b| b == b',').collect();
    // Only the three-value form is unambiguous; `LK,0,100` from some makers is left alone.
    if let [steps, _rolls, battery, ..] = values.as_slice() {
        message.status.steps = number(steps);
        message.status.battery_pct = number(battery)
            .filter(|v| *v <= 100)
            .and_then(|v| u8::try_from(v).ok());
    }
    answered(message, header.reply("LK"))
}

/// `TKQ` / `TKQ2`, answered with the same type.
pub(crate) fn voice_keep_alive(header: &Header<'_>, kind: &str) -> Decoded {
    answered(message(header, MessageKind::Heartbeat), header.reply(kind))
}

/// `INIT`, answered with `INIT,1`.
pub(crate) fn init(header: &Header<'_>) -> Decoded {
    answered(message(header, MessageKind::Login), header.reply("INIT,1"))
}

fn message(header: &Header<'_>, kind: MessageKind) -> Message {
    let mut message = Message::new(kind);
    message.device_id = Some(header.id.to_owned());
    message
}

fn answered(message: Message, reply: Vec<u8>) -> Decoded {
    Decoded {
        messages: vec![message],
        reply: Some(reply),
        integrity: Integrity::Unchecked,
    }
}

fn number(field: &[u8]) -> Option<u32> {
    std::str::from_utf8(field.trim_ascii()).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lk_with_steps_and_battery() {
        let frame = b"[3G*4700186508*000B*LK,0,10,100]";
        let header = Header::parse(frame).unwrap();
        let d = keep_alive(&header, b"0,10,100"); // steps 0, rolls 10, battery 100 %
        let m = &d.messages[0];
        assert_eq!(m.kind, MessageKind::Heartbeat);
        assert_eq!(m.device_id.as_deref(), Some("4700186508"));
        assert_eq!(m.status.steps, Some(0));
        assert_eq!(m.status.battery_pct, Some(100));
        assert_eq!(d.reply.unwrap(), b"[3G*4700186508*0002*LK]".to_vec());
    }

    #[test]
    fn short_lk_forms() {
        let header = Header::parse(b"[SG*9081000548*0009*LK,0,100]").unwrap();
        let d = keep_alive(&header, b"0,100");
        assert_eq!(d.messages[0].status.battery_pct, None);
        assert_eq!(d.reply.unwrap(), b"[SG*9081000548*0002*LK]".to_vec());
        let header = Header::parse(b"[SG*8800000015*0002*LK]").unwrap();
        assert_eq!(keep_alive(&header, b"").messages[0].status.steps, None);
    }

    #[test]
    fn tkq_and_init_replies() {
        let header = Header::parse(b"[3G*8800000015*0004*TKQ2]").unwrap();
        assert_eq!(
            voice_keep_alive(&header, "TKQ2").reply.unwrap(),
            b"[3G*8800000015*0004*TKQ2]".to_vec()
        );
        let header = Header::parse(b"[ZJ*8800000015*0001*0004*INIT]").unwrap();
        let d = init(&header);
        assert_eq!(d.messages[0].kind, MessageKind::Login);
        assert_eq!(
            d.reply.unwrap(),
            b"[ZJ*8800000015*0001*0006*INIT,1]".to_vec()
        );
    }
}

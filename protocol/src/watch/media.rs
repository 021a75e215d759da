//! Voice and image uploads: `TK`, `TK2` (one voice message), `JXTK` (a voice message in
//! numbered chunks) and `img` (a photo).
//!
//! In: the header. Out: one [`MessageKind::Other`] message and, for each `JXTK` chunk, the
//! `JXTKR,1` acknowledgement the device waits for before sending the next one. The binary
//! payload is skipped: the service keeps positions and alarms, not recordings.

use crate::{Decoded, Integrity, Message, MessageKind};

use super::header::Header;

/// Whether `kind` is a voice or image upload.
pub(crate) fn is_media(kind: &str) -> bool {
    matches!(kind, "TK" | "TK2" | "JXTK" | "img")
}

/// A media upload, acknowledged when it is a `JXTK` chunk.
pub(crate) fn decode(header: &Header<'_>, kind: &str) -> Decoded {
    let mut message = Message::new(MessageKind::Other);
    message.device_id = Some(header.id.to_owned());
    Decoded {
        messages: vec![message],
        reply: (kind == "JXTK").then(|| header.reply("JXTKR,1")),
        integrity: Integrity::Unchecked,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jxtk_chunks_are_acknowledged() {
        // chunk 1 of 6 of a voice message; binary AMR data after the fourth comma
        let frame = b"[ZJ*789468050042692*0034*0022*JXTK,0,watch_7,1,6,#!AMR\n\x0c]";
        let header = Header::parse(frame).unwrap();
        assert!(is_media("JXTK"));
        let d = decode(&header, "JXTK");
        assert_eq!(d.messages[0].kind, MessageKind::Other);
        assert_eq!(
            d.reply.unwrap(),
            b"[ZJ*789468050042692*0034*0007*JXTKR,1]".to_vec()
        );
        assert_eq!(decode(&header, "TK").reply, None);
    }
}

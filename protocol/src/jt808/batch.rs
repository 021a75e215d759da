//! Batch uploads: the standard 0x0704 (blind-area backlog) and the vendor 0x0210.
//!
//! In: the body. 0x0704 is `count u16, type u8 (0 normal, 1 blind-area re-upload)`, then
//! `length u16, 0x0200 body` per record; 0x0210 is `length u8, 0x0200 body` per record, or,
//! with a 7-byte body, `battery level u8, BCD time`. Out: one [`Message`] per record, each
//! with its own time; blind-area records are marked archived. A record that does not decode is
//! skipped; a length that runs past the body ends the list.

use super::{location, Ctx};
use crate::error::DecodeError;
use crate::message::{Message, MessageKind};
use crate::reader::Reader;

/// 0x0704 type byte for a blind-area (stored while offline) re-upload.
pub const TYPE_BLIND_AREA: u8 = 1;

/// Decodes a 0x0704 body.
///
/// # Errors
/// [`DecodeError::Truncated`] when the body is shorter than its 3-byte head, and
/// [`DecodeError::InvalidField`] when it holds no decodable record.
pub(crate) fn decode_0704(body: &[u8], ctx: &mut Ctx<'_>) -> Result<Vec<Message>, DecodeError> {
    let mut r = Reader::new(body);
    let _count = r.u16("record count")?;
    let kind = r.u8("batch type")?;
    records(r, 2, ctx, kind == TYPE_BLIND_AREA)
}

/// Decodes a 0x0210 body.
///
/// # Errors
/// As [`decode_0704`].
pub(crate) fn decode_0210(body: &[u8], ctx: &mut Ctx<'_>) -> Result<Vec<Message>, DecodeError> {
    if body.len() == 7 {
        // Battery level and the time it was taken; no position.
        let mut msg = ctx.message(MessageKind::Status);
        if body[0] <= 100 {
            msg.status.battery_pct = Some(body[0]);
        }
        return Ok(vec![msg]);
    }
    records(Reader::new(body), 1, ctx, false)
}

/// The 0x0200 bodies left in `r`, each after its big-endian length of `len_bytes` bytes: one
/// message per record that decodes. A length that runs past the body ends the list.
fn records(
    mut r: Reader<'_>,
    len_bytes: usize,
    ctx: &mut Ctx<'_>,
    archived: bool,
) -> Result<Vec<Message>, DecodeError> {
    let mut out = Vec::new();
    while r.remaining() >= len_bytes {
        let len = r
            .take(len_bytes, "record length")?
            .iter()
            .fold(0, |len, &b| len << 8 | usize::from(b));
        let Ok(record) = r.take(len, "record") else {
            break;
        };
        if let Ok(msg) = location::decode(record, ctx, archived) {
            out.push(msg);
        }
    }
    if out.is_empty() {
        return Err(DecodeError::invalid(
            "batch",
            "no decodable location record",
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes a 0x0704 body for device "1" at GMT+8.
    fn decode(body: &[u8]) -> Vec<Message> {
        let mut stated = None;
        let mut ctx = Ctx {
            device_id: "1",
            override_offset: None,
            stated_offset: &mut stated,
            model: Default::default(),
            now: chrono::DateTime::UNIX_EPOCH,
        };
        decode_0704(body, &mut ctx).unwrap()
    }

    fn record(day: u8) -> Vec<u8> {
        vec![
            0x00, 0x00, 0x00, 0x00, // alarm flags
            0x00, 0x00, 0x00, 0x02, // status: valid
            0x01, 0x58, 0x99, 0x18, // latitude 22.583576
            0x06, 0xca, 0x0f, 0xeb, // longitude 113.905643
            0x00, 0x00, // altitude
            0x00, 0x00, // speed
            0x00, 0x00, // course
            0x24, 0x01, day, 0x08, 0x00, 0x00, // 2024-01-DD 08:00:00 device time
        ]
    }

    #[test]
    fn a_blind_area_batch_gives_one_archived_message_per_record() {
        let mut body = vec![
            0x00, 0x02, // two records
            0x01, // blind-area re-upload
        ];
        for day in [0x01, 0x02] {
            let r = record(day);
            body.extend_from_slice(&(r.len() as u16).to_be_bytes()); // record length
            body.extend_from_slice(&r);
        }
        let msgs = decode(&body);
        assert_eq!(msgs.len(), 2);
        let times: Vec<String> = msgs
            .iter()
            .map(|m| m.position.as_ref().unwrap().time.to_rfc3339())
            .collect();
        assert_eq!(
            times,
            ["2024-01-01T00:00:00+00:00", "2024-01-02T00:00:00+00:00"]
        );
        assert!(msgs.iter().all(|m| m.position.as_ref().unwrap().archived));
    }

    #[test]
    fn a_record_length_past_the_end_ends_the_list() {
        let r = record(0x01);
        let mut body = vec![0x00, 0x02, 0x00];
        body.extend_from_slice(&(r.len() as u16).to_be_bytes());
        body.extend_from_slice(&r);
        body.extend_from_slice(&[0x00, 0x40, 0x00]); // second record claims 64 bytes, has 1
        let msgs = decode(&body);
        assert_eq!(msgs.len(), 1);
        assert!(!msgs[0].position.as_ref().unwrap().archived);
    }
}

//! `NBR`: the serving and neighbour cells, sent when there is no GPS fix.
//!
//! ```text
//! *HQ,ID,NBR,hhmmss,MCC,MNC,TA,COUNT,LAC,CID,RSSI,…(COUNT times),ddmmyy,STATUS[,…]#
//! ```
//! LAC, cell ID and signal are decimal; the signal is whatever scale the modem reports.
//!
//! In: a split sentence. Out: one [`MessageKind::Lbs`] message with the cells (no position: the
//! service locates cells itself) and the alarms of the status word; the reply is
//! `*HQ,<ID>,V4,NBR,<yyyyMMddHHmmss UTC>#`. The sentence's own time is not used: a message without
//! a position has no time field, and some devices send impossible times here (`160169`).

use crate::error::DecodeError;
use crate::message::{CellTower, Message, MessageKind};

use super::encode;
use super::fields::{self, Context};
use super::status;
use super::text::{Output, Sentence};

/// Where the fields of an `NBR` cell list stand.
const LAYOUT: CellLayout = CellLayout {
    first: 8,
    width: 3,
    rssi_optional: false,
    to_status: 1,
};

/// Decodes an `NBR` cell list.
///
/// # Errors
/// [`DecodeError::InvalidField`] when the count disagrees with the fields present or a number is
/// malformed.
pub(super) fn decode(sentence: &Sentence<'_>, ctx: &Context<'_>) -> Result<Output, DecodeError> {
    sentence.require(LAYOUT.first, "cell count")?;
    let mcc: u16 = fields::uint_as(sentence.field(4), "mcc")?;
    let mnc: u16 = fields::uint_as(sentence.field(5), "mnc")?;
    let count: usize = fields::uint_as(sentence.field(7), "cell count")?;
    Ok(Output {
        messages: vec![cells(sentence, &LAYOUT, mcc, mnc, count)?],
        reply: ctx.device_id.map(|id| encode::reply_nbr(id, ctx.now)),
    })
}

/// Where the fields of a cell list (`NBR`, `V3`) stand.
pub(super) struct CellLayout {
    /// Index of the first cell's LAC.
    pub first: usize,
    /// Fields per cell: LAC and cell ID first, the signal last.
    pub width: usize,
    /// Whether a cell may leave its signal empty.
    pub rssi_optional: bool,
    /// Fields from the end of the last cell to the status word.
    pub to_status: usize,
}

/// A [`MessageKind::Lbs`] message with the `count` cells of a cell list laid out as `layout`
/// says, all in `mcc` / `mnc`, and the alarms of the status word after them.
///
/// # Errors
/// [`DecodeError::InvalidField`] when the count disagrees with the fields present or a number is
/// malformed.
pub(super) fn cells(
    sentence: &Sentence<'_>,
    layout: &CellLayout,
    mcc: u16,
    mnc: u16,
    count: usize,
) -> Result<Message, DecodeError> {
    let status_at = count
        .checked_mul(layout.width)
        .and_then(|n| n.checked_add(layout.first + layout.to_status))
        .filter(|at| *at < sentence.len())
        .ok_or_else(|| {
            DecodeError::invalid(
                "cell count",
                format!("{count} cells do not fit {} fields", sentence.len()),
            )
        })?;
    let mut message = Message::new(MessageKind::Lbs);
    for i in 0..count {
        let at = layout.first + layout.width * i;
        let rssi = sentence.field(at + layout.width - 1);
        message.cells.push(CellTower {
            mcc,
            mnc,
            lac: fields::uint_as(sentence.field(at), "lac")?,
            cid: fields::uint(sentence.field(at + 1), "cell id")?,
            rssi: if layout.rssi_optional && fields::trim(rssi).is_empty() {
                None
            } else {
                Some(fields::int16(rssi, "rssi")?)
            },
        });
    }
    status::apply(
        fields::status_word(sentence.field(status_at))?,
        &mut message,
    );
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::h02::tests::decode_text;
    use chrono::{TimeZone, Utc};

    fn run(frame: &[u8]) -> Result<Output, DecodeError> {
        decode_text(
            frame,
            Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap(),
            decode,
        )
    }

    #[test]
    fn reads_every_cell_and_answers() {
        let out = run(concat!(
            "*HQ,7401004662,NBR,",
            "160453,",          // time (not used)
            "234,10,",          // MCC, MNC
            "0,2,",             // timing advance, two cells
            "21580,27766,-67,", // LAC, CID, signal
            "21580,27767,-70,",
            "291019,FFFFFBFF,6#" // date, status, battery
        )
        .as_bytes())
        .unwrap();
        let m = &out.messages[0];
        assert_eq!(m.kind, MessageKind::Lbs);
        assert_eq!(m.position, None);
        assert_eq!(m.cells.len(), 2);
        assert_eq!(
            m.cells[1],
            CellTower {
                mcc: 234,
                mnc: 10,
                lac: 21580,
                cid: 27767,
                rssi: Some(-70)
            }
        );
        assert_eq!(
            out.reply.as_deref(),
            Some(&b"*HQ,7401004662,V4,NBR,20240501120000#"[..])
        );
    }

    #[test]
    fn count_must_match_the_fields() {
        assert!(run(b"*HQ,1,NBR,160453,234,10,0,3,1,2,3,291019,FFFFFBFF#").is_err());
        assert!(run(b"*HQ,1,NBR,160453,234,10,0,99999999999999,1,2,3,291019,FFFFFBFF#").is_err());
        assert!(run(b"*HQ,1,NBR,160453,234#").is_err());
    }
}

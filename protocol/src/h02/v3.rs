//! `V3`: a multi-cell report.
//!
//! ```text
//! *HQ,ID,V3,hhmmss,MCCMNC,COUNT,LAC,CID,LEVEL,RSSI,…(COUNT times),BATTERY,REBOOT,X,ddmmyy,STATUS#
//! ```
//! MCC and MNC are written together (`28403`: MCC 284, MNC 03). Each cell has four decimal
//! fields: LAC, cell ID, a level we do not interpret, and the signal in dBm, which only the serving
//! cell carries. BATTERY is four hex digits in a unit no document states; it is not read.
//!
//! In: a split sentence. Out: one [`MessageKind::Lbs`] message with the cells and the status word's
//! alarms. No reply.

use crate::error::DecodeError;
use crate::message::{CellTower, Message, MessageKind};

use super::fields;
use super::status;
use super::text::{Output, Sentence};

/// Index of the first cell's LAC.
const FIRST_CELL: usize = 6;

/// Decodes a `V3` cell list.
///
/// # Errors
/// [`DecodeError::InvalidField`] when the count disagrees with the fields present or a number is
/// malformed.
pub(super) fn decode(sentence: &Sentence<'_>) -> Result<Output, DecodeError> {
    sentence.require(FIRST_CELL, "cell count")?;
    let mcc_mnc = fields::trim(sentence.field(4));
    if mcc_mnc.len() < 4 || !fields::is_digits(mcc_mnc) {
        return Err(DecodeError::invalid(
            "mcc/mnc",
            format!("{} is not MCC and MNC", fields::show(mcc_mnc)),
        ));
    }
    let (mcc, mnc) = mcc_mnc.split_at(3);
    let mcc: u16 = fields::uint_as(mcc, "mcc")?;
    let mnc: u16 = fields::uint_as(mnc, "mnc")?;
    let count: usize = fields::uint_as(sentence.field(5), "cell count")?;
    // Cells, then battery, reboot, `X`, date and status.
    let status_at = count
        .checked_mul(4)
        .and_then(|n| n.checked_add(FIRST_CELL + 4))
        .filter(|at| *at < sentence.len())
        .ok_or_else(|| {
            DecodeError::invalid(
                "cell count",
                format!("{count} cells do not fit {} fields", sentence.len()),
            )
        })?;
    let mut message = Message::new(MessageKind::Lbs);
    for i in 0..count {
        let at = FIRST_CELL + 4 * i;
        let rssi = sentence.field(at + 3);
        message.cells.push(CellTower {
            mcc,
            mnc,
            lac: fields::uint_as(sentence.field(at), "lac")?,
            cid: fields::uint(sentence.field(at + 1), "cell id")?,
            rssi: if fields::trim(rssi).is_empty() {
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
    Ok(Output::one(message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serving_cell_has_a_signal_neighbours_do_not() {
        let s = Sentence::parse(
            concat!(
                "*HQ,355488020882405,V3,",
                "095426,",                // time (not used)
                "74001,02,",              // MCC 740 + MNC 01, two cells
                "010278,045142,128,-92,", // LAC, CID, level, dBm
                "010278,026311,125,,",    // neighbour without dBm
                "02DE,0,X,",              // battery, reboot, marker
                "090517,FFFFFBFF#"        // date, status
            )
            .as_bytes(),
        )
        .unwrap();
        let out = decode(&s).unwrap();
        let cells = &out.messages[0].cells;
        assert_eq!(cells.len(), 2);
        assert_eq!((cells[0].mcc, cells[0].mnc), (740, 1));
        assert_eq!(
            (cells[0].lac, cells[0].cid, cells[0].rssi),
            (10278, 45142, Some(-92))
        );
        assert_eq!(cells[1].rssi, None);
        assert_eq!(out.reply, None);
    }

    #[test]
    fn count_must_match_the_fields() {
        let s = Sentence::parse(
            b"*HQ,1,V3,095426,74001,02,010278,045142,128,-92,02DE,0,X,090517,FFFFFBFF#",
        )
        .unwrap();
        assert!(decode(&s).is_err());
        let s = Sentence::parse(b"*HQ,1,V3,095426,740,00#").unwrap();
        assert!(decode(&s).is_err());
    }
}

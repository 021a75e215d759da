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

use super::fields;
use super::nbr::{cells, CellLayout};
use super::text::{Output, Sentence};

/// Where the fields of a `V3` cell list stand: after the cells come battery, reboot, `X`, date
/// and status.
const LAYOUT: CellLayout = CellLayout {
    first: 6,
    width: 4,
    rssi_optional: true,
    to_status: 4,
};

/// Decodes a `V3` cell list.
///
/// # Errors
/// [`DecodeError::InvalidField`] when the count disagrees with the fields present or a number is
/// malformed.
pub(super) fn decode(sentence: &Sentence<'_>) -> Result<Output, DecodeError> {
    sentence.require(LAYOUT.first, "cell count")?;
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
    Ok(Output::one(cells(sentence, &LAYOUT, mcc, mnc, count)?))
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

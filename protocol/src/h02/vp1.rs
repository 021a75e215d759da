//! `VP1`: a short report with either a fix or cells.
//!
//! ```text
//! *hq,ID,VP1,A,DDMM.MMMM,S,DDDMM.MMMM,E,speed,course,ddmmyy#     (fix; A or B)
//! *hq,ID,VP1,V,MCC,MNC,LAC,CID,RSSIYLAC,CID,RSSIY…#               (no fix: cells split by Y)
//! ```
//!
//! The fix variant carries a date but no time of day. When that date is within a day of the
//! receipt date (the device may count in local time), the fix is stamped with the receipt time;
//! otherwise with midnight UTC of the date, the only time the frame states. `A` and `B` both mark a
//! fix here, as in the reference decoder.
//!
//! In: a split sentence. Out: one [`MessageKind::Position`] or [`MessageKind::Lbs`] message. No
//! reply.

use chrono::Duration;

use crate::error::DecodeError;
use crate::message::{CellTower, Message, MessageKind, Position};

use super::fields::{self, Context};
use super::location;
use super::text::{Output, Sentence};

/// Decodes a `VP1` report.
///
/// # Errors
/// [`DecodeError::InvalidField`] for an unknown variant letter or a malformed field.
pub(super) fn decode(sentence: &Sentence<'_>, ctx: &Context<'_>) -> Result<Output, DecodeError> {
    match sentence.field(3) {
        b"V" => cells(sentence),
        b"A" | b"B" => fix(sentence, ctx),
        other => Err(DecodeError::invalid(
            "validity",
            format!("{} is not A, B or V", fields::show(other)),
        )),
    }
}

fn fix(sentence: &Sentence<'_>, ctx: &Context<'_>) -> Result<Output, DecodeError> {
    sentence.require(10, "date")?;
    let (lat, lon) = location::coordinates(sentence, 4)?;
    match (sentence.field(5), sentence.field(7)) {
        (b"N" | b"S", b"E" | b"W") => {}
        _ => {
            return Err(DecodeError::invalid(
                "hemisphere",
                "expected N/S and E/W after the coordinates",
            ))
        }
    }
    let date = fields::ddmmyy(sentence.field(10))?;
    let time = match date {
        Some(d) if (d - ctx.now.date_naive()).abs() <= Duration::days(1) => ctx.now,
        other => ctx.fix_time(other, None),
    };
    let mut position = Position::new(time, lat, lon);
    (position.speed_kmh, position.course) = location::speed_and_course(sentence, 8)?;
    let mut message = Message::new(MessageKind::Position);
    message.position = Some(position);
    Ok(Output::one(message))
}

fn cells(sentence: &Sentence<'_>) -> Result<Output, DecodeError> {
    sentence.require(6, "cells")?;
    let mcc: u16 = fields::uint_as(sentence.field(4), "mcc")?;
    let mnc: u16 = fields::uint_as(sentence.field(5), "mnc")?;
    let mut message = Message::new(MessageKind::Lbs);
    for cell in sentence.rest_from(6).split(|b| *b == b'Y') {
        let mut parts = cell.split(|b| *b == b',');
        let (Some(lac), Some(cid), rssi, None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(DecodeError::invalid(
                "cells",
                format!("{} is not LAC,CID,RSSI", fields::show(cell)),
            ));
        };
        message.cells.push(CellTower {
            mcc,
            mnc,
            lac: fields::uint_as(lac, "lac")?,
            cid: fields::uint(cid, "cell id")?,
            rssi: rssi.map(|r| fields::int16(r, "rssi")).transpose()?,
        });
    }
    Ok(Output::one(message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::h02::tests::decode_text;
    use chrono::{DateTime, TimeZone, Utc};

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2017, 9, 8, 10, 0, 0).unwrap()
    }

    fn run(frame: &[u8]) -> Result<Output, DecodeError> {
        decode_text(frame, now(), decode)
    }

    #[test]
    fn cell_variant_splits_on_y() {
        let out = run(concat!(
            "*hq,356327081001239,VP1,V,",
            "470,002,",   // MCC, MNC
            "92,3565,0Y", // LAC, CID, signal; Y separates cells
            "92,19433,30Y",
            "92,1340,29#"
        )
        .as_bytes())
        .unwrap();
        let m = &out.messages[0];
        assert_eq!(m.kind, MessageKind::Lbs);
        assert_eq!(m.cells.len(), 3);
        assert_eq!((m.cells[1].mcc, m.cells[1].mnc), (470, 2));
        assert_eq!(
            (m.cells[1].lac, m.cells[1].cid, m.cells[1].rssi),
            (92, 19433, Some(30))
        );
    }

    #[test]
    fn fix_variant_takes_the_receipt_time_on_the_same_day() {
        let out =
            run(b"*hq,356327080425330,VP1,A,2702.7245,S,15251.9311,E,0.48,0.0000,080917#").unwrap();
        let p = out.messages[0].position.as_ref().unwrap();
        assert_eq!(p.time, now());
        assert!((p.lat + 27.045408).abs() < 1e-6);
        assert!((p.lon - 152.865518).abs() < 1e-6);
        assert!((p.speed_kmh.unwrap() - 0.48 * 1.852).abs() < 1e-9);
    }

    #[test]
    fn fix_variant_from_another_day_is_dated_midnight() {
        let out = run(b"*hq,1,VP1,A,2702.7245,S,15251.9311,E,0.48,0.0000,010817#").unwrap();
        let p = out.messages[0].position.as_ref().unwrap();
        assert_eq!(p.time, Utc.with_ymd_and_hms(2017, 8, 1, 0, 0, 0).unwrap());
    }

    #[test]
    fn bad_variants_are_rejected() {
        assert!(run(b"*hq,1,VP1,Q,1,2#").is_err());
        assert!(run(b"*hq,1,VP1,V,470,002,92#").is_err());
        assert!(run(b"*hq,1,VP1,V,470,002,92,3565,1,2#").is_err());
        assert!(run(b"*hq,1,VP1,A,2702.7245,X,15251.9311,E,0.48,0.0000,080917#").is_err());
    }
}

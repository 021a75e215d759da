//! Text and information packets: command replies (0x15, long-form 0x21, 0x80-0x82), the
//! information packet 0x94 and the vendor packets we accept without reading (serial pass-through
//! 0x9B, OBD 0x8C, peripherals 0xF1/0xF2, battery 0x40, multimedia 0x41).
//!
//! ```text
//! 0x15: command length u8 (4 + text) | server flag u32 | text | language u16 (in the captures)
//! 0x21: server flag u32 | encoding u8 (1 ASCII, else UTF-16BE) | text
//! ```
//! One text is a position: `Current position!Lat:N54.739332,Lon:E25.273270,Course:126.53,
//! Speed:0.0000,DateTime:2017-05-26  10:27:47`, which we decode. The rest only say that the
//! device answered or reported something the service does not use.

use chrono::{DateTime, NaiveDateTime, Utc};

use crate::error::DecodeError;
use crate::message::{MessageKind, Position};
use crate::reader::Reader;

use super::{Ctx, Out};

/// Command reply (short form).
pub(crate) const STRING: u8 = 0x15;
/// Command reply / position text (long form).
pub(crate) const STRING_INFO: u8 = 0x21;
/// Information packet (voltage, ICCID, door, fuel sensor ...).
pub(crate) const INFO: u8 = 0x94;
/// Serial pass-through data.
pub(crate) const SERIAL_DATA: u8 = 0x9b;
/// OBD data.
pub(crate) const OBD: u8 = 0x8c;
/// Peripheral data (VL842).
pub(crate) const PERIPHERAL: u8 = 0xf2;
/// Status modules of some 4G models.
pub(crate) const VENDOR_STATUS: u8 = 0xf1;
/// Battery management data (WD-209).
pub(crate) const BMS: u8 = 0x40;
/// Multimedia upload (WD-209).
pub(crate) const MULTIMEDIA: u8 = 0x41;

/// Knots to km/h.
const KNOTS: f64 = 1.852;

/// 0x15: a command reply (command length u8, server flag u32, ASCII text, and in the captured
/// answers a language word after the counted text); acknowledged. A
/// body too short for the server flag is still a reply, matched to no command.
///
/// # Errors
/// Never for a present packet.
pub(crate) fn string(ctx: &Ctx<'_>, body: &[u8]) -> Result<Out, DecodeError> {
    let mut message = ctx.message(MessageKind::CommandReply);
    if let Some(flag) = body.get(1..5) {
        let flag = u32::from_be_bytes([flag[0], flag[1], flag[2], flag[3]]);
        // The command length counts the flag and the text; a language word may follow it.
        let end = usize::from(body[0]).saturating_add(1).clamp(5, body.len());
        let text = String::from_utf8_lossy(&body[5..end]);
        message.command_reply = Some(super::command::reply(flag, &text));
    }
    Ok(Out::ack(vec![message]))
}

/// Long-form 0x21: a command reply, or the "Current position!" text, which becomes a position.
/// No reply is sent.
///
/// # Errors
/// [`DecodeError::Truncated`] when the server flag or encoding byte is missing.
pub(crate) fn text(ctx: &Ctx<'_>, body: &[u8]) -> Result<Out, DecodeError> {
    let mut r = Reader::new(body);
    let flag = r.u32("server flag")?;
    let encoding = r.u8("encoding")?;
    let bytes = r.rest();
    let text = if encoding == 1 {
        String::from_utf8_lossy(bytes).into_owned()
    } else {
        let units = bytes
            .chunks_exact(2)
            .map(|pair| u16::from_be_bytes([pair[0], pair[1]]));
        char::decode_utf16(units)
            .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
            .collect()
    };
    let mut message = ctx.message(MessageKind::CommandReply);
    message.command_reply = Some(super::command::reply(flag, &text));
    if let Some(position) = position_text(ctx, &text) {
        message.kind = MessageKind::Position;
        message.position = Some(position);
    }
    Ok(Out::silent(vec![message]))
}

/// Parses the position text some devices answer a location query with.
fn position_text(ctx: &Ctx<'_>, text: &str) -> Option<Position> {
    let fields = text
        .trim_end_matches('\0')
        .strip_prefix("Current position!")?;
    let (mut lat, mut lon, mut course, mut speed, mut time) = (None, None, None, None, None);
    let mut unreadable = None;
    for field in fields.split(',') {
        let Some((key, value)) = field.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match key.trim() {
            "Lat" => lat = hemisphere(value, 'N', 'S'),
            "Lon" => lon = hemisphere(value, 'E', 'W'),
            "Course" => course = value.parse::<f64>().ok(),
            "Speed" => speed = value.parse::<f64>().ok(),
            "DateTime" => {
                let joined = value.split_whitespace().collect::<Vec<_>>().join(" ");
                time = NaiveDateTime::parse_from_str(&joined, "%Y-%m-%d %H:%M:%S")
                    .ok()
                    .and_then(|local| ctx.utc_from_local(local));
                if time.is_none() {
                    // Kept as sent and dated now, so the position is stored flagged, not lost.
                    time = Some((ctx.now)());
                    unreadable = Some(joined);
                }
            }
            _ => {}
        }
    }
    let time: DateTime<Utc> = time?;
    let mut p = Position::new(time, lat?, lon?);
    p.unreadable_time = unreadable;
    p.course = course;
    // The text does not say; it is read as knots, as the reference decoder does.
    p.speed_kmh = speed.map(|knots| knots * KNOTS);
    Some(p)
}

/// `N54.739332` as 54.739332, `S…` negated.
fn hemisphere(value: &str, positive: char, negative: char) -> Option<f64> {
    let mut chars = value.chars();
    let sign = match chars.next()? {
        c if c == positive => 1.0,
        c if c == negative => -1.0,
        _ => return None,
    };
    let degrees: f64 = chars.as_str().parse().ok()?;
    (degrees.is_finite() && degrees.abs() <= 180.0).then_some(sign * degrees)
}

/// 0x94: information (voltage, ICCID, door, sensors). A status message with nothing we model;
/// the device expects no reply.
///
/// # Errors
/// Never; the signature matches the other decoders.
pub(crate) fn information(ctx: &Ctx<'_>, _body: &[u8]) -> Result<Out, DecodeError> {
    Ok(Out::silent(vec![ctx.message(MessageKind::Status)]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gt06::tests::ctx;
    use chrono::TimeZone;

    #[test]
    fn the_position_text_becomes_a_position() {
        let mut body = vec![0, 0, 0, 0, 1]; // server flag, ASCII
        body.extend_from_slice(
            b"Current position!Lat:N54.739332,Lon:E25.273270,Course:126.53,Speed:0.0000,\
              DateTime:2017-05-26  10:27:47",
        );
        let out = text(&ctx(), &body).unwrap();
        let m = &out.messages[0];
        assert_eq!(m.kind, MessageKind::Position);
        let p = m.position.as_ref().unwrap();
        assert_eq!((p.lat, p.lon), (54.739332, 25.27327));
        assert_eq!(
            p.time,
            Utc.with_ymd_and_hms(2017, 5, 26, 10, 27, 47).unwrap()
        );
        assert_eq!(p.course, Some(126.53));
        assert_eq!(out.reply, super::super::Reply::None);
    }

    #[test]
    fn a_position_text_with_a_time_that_is_no_date_keeps_it_as_sent() {
        let mut body = vec![0, 0, 0, 0, 1];
        body.extend_from_slice(
            b"Current position!Lat:N54.739332,Lon:E25.273270,DateTime:2017-13-26 10:27:47",
        );
        let out = text(&ctx(), &body).unwrap();
        let p = out.messages[0].position.as_ref().unwrap();
        assert_eq!(p.unreadable_time.as_deref(), Some("2017-13-26 10:27:47"));
        assert_eq!(p.time, (ctx().now)());
    }

    #[test]
    fn other_text_is_a_command_reply_in_either_encoding() {
        // UTF-16BE "OK"
        let body = [0, 0, 0, 0, 2, 0x00, 0x4f, 0x00, 0x4b];
        let out = text(&ctx(), &body).unwrap();
        assert_eq!(out.messages[0].kind, MessageKind::CommandReply);
        assert!(out.messages[0].position.is_none());
        assert_eq!(hemisphere("S12.5", 'N', 'S'), Some(-12.5));
        assert_eq!(hemisphere("X1", 'N', 'S'), None);
    }
}

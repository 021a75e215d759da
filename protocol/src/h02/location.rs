//! The `V…` position sentences: `V1` (the regular report) and the variants that share its
//! layout — `V2`, `V5`, `V6`, `V8`, `V19`, `VI1` and `V4`, the device's answer to a command.
//!
//! ```text
//! *HQ,ID,V1,hhmmss,A,DDMM.MMMM,N,DDDMM.MMMM,E,speed,course,ddmmyy,STATUS[,extra…]#
//! *HQ,ID,V4,CMD[,args…],hhmmss,A,DDMM.MMMM,N,…#          (command answer: args come first)
//! *HQ,ID,V19,hhmmss,A,…,ddmmyy,SIM1,SIM2,SIM3,STATUS#      (three SIM fields before STATUS)
//! *HQ,ID,V1,hhmmss,A,…,course,BATTERY,ddmmyy,STATUS#       (some firmwares add a battery digit)
//! ```
//!
//! The fields are found from the hemisphere letters: the first `N`/`S` field followed two fields
//! later by `E`/`W` anchors latitude and longitude, and the time, validity, speed, course and date
//! sit at fixed distances from it. That one rule covers every variant above.
//!
//! In: a split sentence. Out: one message, [`MessageKind::Position`] when it carries coordinates.
//! A sentence without usable coordinates (empty fields, hemisphere `0`) gives a
//! [`MessageKind::Status`] message (or [`MessageKind::CommandReply`] for `V4`) without a position;
//! malformed values reject the frame. Speed is knots on the wire and km/h in the message.

use crate::error::DecodeError;
use crate::message::{Message, MessageKind, Position};

use super::encode;
use super::fields::{self, Axis, Context};
use super::status;
use super::text::{Output, Sentence};

/// Knots to km/h.
pub(super) const KNOTS_TO_KMH: f64 = 1.852;

/// Decodes a `V…` position sentence.
///
/// # Errors
/// [`DecodeError::InvalidField`] for a malformed time, date, coordinate, speed or course.
pub(super) fn decode(sentence: &Sentence<'_>, ctx: &Context<'_>) -> Result<Output, DecodeError> {
    let kind = sentence.kind();
    let mut message = Message::new(match kind {
        b"V4" => MessageKind::CommandReply,
        _ => MessageKind::Status,
    });

    if let Some(h) = anchor(sentence) {
        let tail = Tail::find(sentence, h + 5);
        let time = fields::hhmmss(fields::trim(sentence.field(h - 3)))?;
        let date = tail.date.map(fields::ddmmyy).transpose()?.flatten();
        let (lat, lon) = (sentence.field(h - 1), sentence.field(h + 1));
        if !fields::trim(lat).is_empty() && !fields::trim(lon).is_empty() {
            let (lat, lon) = coordinates(sentence, h - 1)?;
            let mut position = Position::new(ctx.fix_time(date, time), lat, lon);
            position.valid = is_valid(sentence.field(h - 2));
            (position.speed_kmh, position.course) = speed_and_course(sentence, h + 3)?;
            if let Some(extra) = tail.extra {
                position.altitude_m = Some(f64::from(extra.altitude_m));
                message.status.odometer_m = Some(extra.odometer_m as f64);
            }
            message.position = Some(position);
            message.kind = MessageKind::Position;
        }
        if let Some(word) = tail.status {
            status::apply(fields::status_word(word)?, &mut message);
        }
    }

    let reply = match (kind, ctx.device_id) {
        (b"V1", Some(id)) => Some(encode::reply_v1(id, ctx.now)),
        _ => None,
    };
    Ok(Output {
        messages: vec![message],
        reply,
    })
}

/// Latitude and longitude from `DDMM.MMMM,H,DDDMM.MMMM,H` starting at field `at`, negative to
/// the south and west.
///
/// # Errors
/// [`DecodeError::InvalidField`] for a malformed coordinate.
pub(super) fn coordinates(sentence: &Sentence<'_>, at: usize) -> Result<(f64, f64), DecodeError> {
    let lat = fields::coordinate(sentence.field(at), Axis::Lat)?;
    let lon = fields::coordinate(sentence.field(at + 2), Axis::Lon)?;
    let south = sentence.field(at + 1) == b"S";
    let west = sentence.field(at + 3) == b"W";
    Ok((
        if south { -lat } else { lat },
        if west { -lon } else { lon },
    ))
}

/// Speed (knots on the wire, km/h out) and course (dropped beyond a circle) from field `at` and
/// the next; either may be empty.
///
/// # Errors
/// [`DecodeError::InvalidField`] for a malformed number.
pub(super) fn speed_and_course(
    sentence: &Sentence<'_>,
    at: usize,
) -> Result<(Option<f64>, Option<f64>), DecodeError> {
    let speed = fields::opt_decimal(sentence.field(at), "speed")?.map(|kn| kn * KNOTS_TO_KMH);
    let course = fields::opt_decimal(sentence.field(at + 1), "course")?
        .filter(|c| (0.0..=360.0).contains(c));
    Ok((speed, course))
}

/// `A` is a fix; so is a number in that slot (some firmwares put a coding scheme there and the
/// reference decoder treats it as a fix). `V`, `B` and an empty field are not.
fn is_valid(field: &[u8]) -> bool {
    field == b"A" || fields::is_digits(field)
}

/// Index of the latitude hemisphere field: the first `N`/`S` at index 6 or later (time,
/// validity and latitude come before it) with `E`/`W` two fields later.
fn anchor(sentence: &Sentence<'_>) -> Option<usize> {
    (6..sentence.len().saturating_sub(2)).find(|&h| {
        matches!(sentence.field(h), b"N" | b"S") && matches!(sentence.field(h + 2), b"E" | b"W")
    })
}

/// The fields after the course: date, status word and extras, whose positions vary by firmware.
#[derive(Debug, Default)]
struct Tail<'a> {
    date: Option<&'a [u8]>,
    status: Option<&'a [u8]>,
    extra: Option<Extra>,
}

/// The six-field extension `odometer,temperature,fuel,altitude,lac,cid` after the status word.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Extra {
    odometer_m: u32,
    altitude_m: i16,
}

impl<'a> Tail<'a> {
    /// Reads the tail starting at field `i` (just after the course).
    fn find(sentence: &Sentence<'a>, i: usize) -> Self {
        let f = |k: usize| fields::trim(sentence.field(k));
        let is_date = |v: &[u8]| v.is_empty() || (v.len() == 6 && fields::is_digits(v));
        let mut tail = Tail::default();
        if i >= sentence.len() {
            return tail;
        }
        // Date, or a battery digit then the date, or straight to the status word.
        let next = if fields::is_status_word(f(i)) && !is_date(f(i)) {
            i
        } else if is_date(f(i)) {
            tail.date = Some(f(i));
            i + 1
        } else if fields::is_digits(f(i)) && is_date(f(i + 1)) && i + 1 < sentence.len() {
            tail.date = Some(f(i + 1));
            i + 2
        } else {
            return tail;
        };
        // Status word, or three SIM fields then the status word (V19).
        let status_at = if fields::is_status_word(f(next)) {
            next
        } else if fields::is_status_word(f(next + 3)) {
            next + 3
        } else {
            return tail;
        };
        tail.status = Some(f(status_at));
        if sentence.len() == status_at + 7 {
            tail.extra = Extra::read(sentence, status_at + 1);
        }
        tail
    }
}

impl Extra {
    /// `odometer(d+),temperature(-?d+),fuel(d+.d+),altitude(-?d+),lac(x+),cid(x+)`, all or nothing.
    fn read(sentence: &Sentence<'_>, i: usize) -> Option<Extra> {
        let hex = |v: &[u8]| !v.is_empty() && v.iter().all(u8::is_ascii_hexdigit);
        let odometer_m = fields::uint_as::<u32>(sentence.field(i), "odometer").ok()?;
        fields::int16(sentence.field(i + 1), "temperature").ok()?;
        let fuel = sentence.field(i + 2);
        if !fuel.contains(&b'.') {
            return None;
        }
        fields::decimal(fuel, "fuel").ok()?;
        let altitude_m = fields::int16(sentence.field(i + 3), "altitude").ok()?;
        (hex(sentence.field(i + 4)) && hex(sentence.field(i + 5))).then_some(Extra {
            odometer_m,
            altitude_m,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::h02::tests::decode_text;
    use crate::message::Alarm;
    use chrono::{DateTime, TimeZone, Utc};

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap()
    }

    fn run(frame: &[u8]) -> Result<Output, DecodeError> {
        decode_text(frame, now(), decode)
    }

    fn position(out: &Output) -> &Position {
        out.messages[0].position.as_ref().expect("a position")
    }

    #[test]
    fn v1_report_with_reply() {
        let out = run(concat!(
            "*HQ,4210051415,V1,",
            "164549,A,",     // time, fix valid
            "0956.3869,N,",  // 9° 56.3869' N
            "08406.7068,W,", // 84° 06.7068' W
            "000.00,000,",   // speed (knots), course
            "221215,",       // 2015-12-22
            "FFFFFBFF,",     // status: idle
            "712,01,0,0,6#"  // cell fields we do not read
        )
        .as_bytes())
        .unwrap();
        let p = position(&out);
        assert_eq!(
            p.time,
            Utc.with_ymd_and_hms(2015, 12, 22, 16, 45, 49).unwrap()
        );
        assert!(p.valid);
        assert!((p.lat - 9.93978).abs() < 1e-5);
        assert!((p.lon + 84.11178).abs() < 1e-5);
        assert_eq!(p.speed_kmh, Some(0.0));
        assert_eq!(out.messages[0].kind, MessageKind::Position);
        assert!(out.messages[0].alarms.is_empty());
        assert_eq!(out.messages[0].status.ignition, Some(false));
        assert_eq!(
            out.reply.as_deref(),
            Some(&b"*HQ,4210051415,V4,V1,20240501120000#"[..])
        );
    }

    #[test]
    fn speed_is_knots_on_the_wire() {
        let out = run(b"*HQ,353588020068342,V1,084436,A,3257.01525,N,00655.03865,W,57.78,40,011216,FFFBFFFF,25c,a, 154,b04c#").unwrap();
        let p = position(&out);
        assert!((p.speed_kmh.unwrap() - 57.78 * 1.852).abs() < 1e-9);
        assert_eq!(p.course, Some(40.0));
        // Bit 18 clear is an ordinary report on these devices, not an SOS.
        assert!(out.messages[0].alarms.is_empty());
    }

    #[test]
    fn v4_command_answer_skips_the_command_fields() {
        let out = run(b"*TH,2020916012,V4,S1,OK,pass_word,130305,050316,A,2212.8745,N,11346.6574,E,14.28,028,220902,FFFFFBFD#").unwrap();
        let p = position(&out);
        assert_eq!(p.time, Utc.with_ymd_and_hms(2002, 9, 22, 5, 3, 16).unwrap());
        assert!((p.lat - 22.214575).abs() < 1e-9);
        assert_eq!(out.messages[0].alarms, [Alarm::Sos]);
        // Only V1 is answered.
        assert_eq!(out.reply, None);
    }

    #[test]
    fn v19_has_sim_fields_before_the_status_word() {
        let out = run(b"*HQ,4109179024,V19,181519,V,3853.2587,S,06205.9175,W,000.00,000,090217,,5492932630888,8954315265044716555?,FFFFFBFF#").unwrap();
        let p = position(&out);
        assert!(!p.valid);
        assert!(p.lat < 0.0 && p.lon < 0.0);
        assert_eq!(out.messages[0].status.ignition, Some(false));
    }

    #[test]
    fn battery_digit_before_the_date() {
        let out = run(b"*HQ,4210209006,V1,054048,A,2828.2297,N,07733.4332,E,000.5,047,4,080918,EEE7FBDF,4261193,0#").unwrap();
        assert_eq!(
            position(&out).time,
            Utc.with_ymd_and_hms(2018, 9, 8, 5, 40, 48).unwrap()
        );
        // Bit 19 clear: power cut.
        assert_eq!(out.messages[0].alarms, [Alarm::PowerCut]);
    }

    #[test]
    fn odometer_and_altitude_extension() {
        let out = run(b"*HQ,2130510938,V1,012632,A,0520.0663,N,10028.6324,E,0.286,023,100317,FFFFDFFF,69129336,0,100.0,18,5141,5A20#").unwrap();
        assert_eq!(position(&out).altitude_m, Some(18.0));
        assert_eq!(out.messages[0].status.odometer_m, Some(69_129_336.0));
    }

    #[test]
    fn no_date_no_time_uses_the_receipt_time() {
        let out = run(b"*HQ,353505220873067,V1,,V,4605.75732,N,01430.73863,E,0.00,0,,FFFFFFEF,125,194,  64,d3#").unwrap();
        assert_eq!(position(&out).time, now());
    }

    #[test]
    fn no_coordinates_gives_a_status_message() {
        // Empty coordinates.
        let out = run(b"*HQ,353505510948929,V1,,V,,N,,E,0.00,0,,FFFFF7FF,f0,a,11a0,c0c6#").unwrap();
        assert_eq!(out.messages[0].kind, MessageKind::Status);
        assert_eq!(out.messages[0].position, None);
        // Hemisphere 0: no fix.
        let out = run(b"*HQ,353588020068342,V1,000000,V,0.0000,0,0.0000,0,0.00,0.00,000000,ffffffff,000106,000002,000203,004c87,16#").unwrap();
        assert_eq!(out.messages[0].position, None);
        assert!(out.reply.is_some());
    }

    #[test]
    fn malformed_values_reject_the_frame() {
        for bad in [
            &b"*HQ,1,V1,164549,A,09x6.3869,N,08406.7068,W,0,0,221215,FFFFFBFF#"[..],
            b"*HQ,1,V1,164549,A,0956.3869,N,08406.7068,W,fast,0,221215,FFFFFBFF#",
            b"*HQ,1,V1,166049,A,0956.3869,N,08406.7068,W,0,0,221215,FFFFFBFF#",
            b"*HQ,1,V1,164549,A,0956.3869,N,08406.7068,W,0,0,321215,FFFFFBFF#",
            b"*HQ,1,V1,164549,A,9956.3869,N,08406.7068,W,0,0,221215,FFFFFBFF#",
        ] {
            assert!(run(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn a_course_beyond_a_circle_is_dropped() {
        let out =
            run(b"*HQ,1,V1,164549,A,0956.3869,N,08406.7068,W,0,361,221215,FFFFFBFF#").unwrap();
        assert_eq!(position(&out).course, None);
    }
}

//! Builds well-formed watch frames: keep-alive (`LK`), position (`UD`) and alarm (`AL`), plus
//! the generic [`frame`] the session's replies use.
//!
//! Used by the service's integration tests, the `ewall simulate` load generator and the
//! round-trip tests. Frames use the `3G` maker code without an index and a correct length field.

use chrono::{DateTime, Utc};

/// Maker code the encoders use.
pub const MAKER: &str = "3G";

/// A frame `[maker*id*LLLL*content]`, or `[maker*id*index*LLLL*content]` with an index.
///
/// `LLLL` is the content length as 4 lower-case hex digits (capped at `ffff`). `}`, `[` and `]`
/// in `content` are escaped so they cannot upset bracket counting; `,` and `*` are written as
/// they are, since they separate the fields of text messages.
pub fn frame(maker: &str, id: &str, index: Option<&str>, content: &[u8]) -> Vec<u8> {
    let len = content.len().min(0xffff);
    let mut out = Vec::with_capacity(content.len() + id.len() + 20);
    out.push(b'[');
    out.extend_from_slice(maker.as_bytes());
    out.push(b'*');
    out.extend_from_slice(id.as_bytes());
    out.push(b'*');
    if let Some(index) = index {
        out.extend_from_slice(index.as_bytes());
        out.push(b'*');
    }
    out.extend_from_slice(format!("{len:04x}*").as_bytes());
    for &b in content {
        match b {
            b'}' => out.extend_from_slice(&[b'}', 0x01]),
            b'[' => out.extend_from_slice(&[b'}', 0x02]),
            b']' => out.extend_from_slice(&[b'}', 0x03]),
            _ => out.push(b),
        }
    }
    out.push(b']');
    out
}

/// A keep-alive `LK,steps,0,battery` (rolls written as 0).
pub fn lk(id: &str, steps: u32, battery_pct: u8) -> Vec<u8> {
    frame(
        MAKER,
        id,
        None,
        format!("LK,{steps},0,{battery_pct}").as_bytes(),
    )
}

/// A position report `UD`. Coordinates are written with 6 decimals, speed (km/h) with 2,
/// course with 1; the year modulo 100. No cells or Wi-Fi are listed.
// The parameters are the message's own fields, in wire order.
#[allow(clippy::too_many_arguments)]
pub fn ud(
    id: &str,
    time: DateTime<Utc>,
    valid: bool,
    lat: f64,
    lon: f64,
    speed_kmh: f64,
    course: f64,
    battery_pct: u8,
) -> Vec<u8> {
    let body = position_body(time, valid, lat, lon, speed_kmh, course, battery_pct, 0);
    frame(MAKER, id, None, format!("UD,{body}").as_bytes())
}

/// An alarm report `AL` with its status word (see the README for the alarm bits), otherwise
/// like [`ud`].
// The parameters are the message's own fields, in wire order.
#[allow(clippy::too_many_arguments)]
pub fn al(
    id: &str,
    time: DateTime<Utc>,
    valid: bool,
    lat: f64,
    lon: f64,
    speed_kmh: f64,
    course: f64,
    battery_pct: u8,
    status_word: u32,
) -> Vec<u8> {
    let body = position_body(
        time,
        valid,
        lat,
        lon,
        speed_kmh,
        course,
        battery_pct,
        status_word,
    );
    frame(MAKER, id, None, format!("AL,{body}").as_bytes())
}

#[allow(clippy::too_many_arguments)]
fn position_body(
    time: DateTime<Utc>,
    valid: bool,
    lat: f64,
    lon: f64,
    speed_kmh: f64,
    course: f64,
    battery_pct: u8,
    status_word: u32,
) -> String {
    format!(
        "{date},{clock},{fix},{lat:.6},{ns},{lon:.6},{ew},{speed:.2},{course:.1},0.0,{sats},100,{battery_pct},0,0,{status_word:08X},0,0",
        date = time.format("%d%m%y"),
        clock = time.format("%H%M%S"),
        fix = if valid { 'A' } else { 'V' },
        lat = lat.abs(),
        ns = if lat < 0.0 { 'S' } else { 'N' },
        lon = lon.abs(),
        ew = if lon < 0.0 { 'W' } else { 'E' },
        speed = speed_kmh.max(0.0),
        course = course.rem_euclid(360.0),
        sats = if valid { 8 } else { 0 },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn lk_frame() {
        assert_eq!(
            lk("9705141740", 120, 53),
            b"[3G*9705141740*000b*LK,120,0,53]".to_vec()
        );
    }

    #[test]
    fn ud_frame() {
        let time = Utc.with_ymd_and_hms(2023, 7, 19, 19, 7, 7).unwrap();
        let frame = ud(
            "9705141740",
            time,
            true,
            36.815109,
            -10.1792312,
            8.24,
            127.9,
            53,
        );
        assert_eq!(
            String::from_utf8(frame).unwrap(),
            "[3G*9705141740*0053*UD,190723,190707,A,36.815109,N,10.179231,W,8.24,127.9,0.0,8,100,53,0,0,00000000,0,0]"
        );
    }

    #[test]
    fn frame_escapes_brackets_and_counts_unescaped_length() {
        let f = frame("CS", "1", Some("0001"), b"TK,[]}");
        assert_eq!(f, b"[CS*1*0001*0006*TK,}\x02}\x03}\x01]".to_vec());
    }
}

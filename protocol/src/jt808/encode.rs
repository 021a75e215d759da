//! Builds terminal-side JT/T 808 frames: registration, authentication, heartbeat, location
//! report 0x0200, batch upload 0x0704, and any message split into packets.
//!
//! Used by the service's integration tests, the `ewall simulate` load generator and the
//! round-trip tests. Every function returns a whole frame: flags, header (2013 or 2019, the
//! terminal number packed as BCD from `device_id`'s digits), body, XOR check code, escaped.

use chrono::{DateTime, Datelike, TimeDelta, Timelike, Utc};

use super::header::{self, PROPS_MULTI_PACKET};
use super::location::{STATUS_SOUTH, STATUS_VALID, STATUS_WEST};
use super::msg;
use crate::reader::bcd_encode;

pub use super::header::Edition;

/// A whole frame for `msg_id` with `body`.
pub fn frame(msg_id: u16, device_id: &str, edition: Edition, serial: u16, body: &[u8]) -> Vec<u8> {
    let terminal = bcd_encode(device_id, edition.terminal_len());
    let mut content = Vec::with_capacity(body.len() + 17);
    header::write_header(&mut content, msg_id, edition, &terminal, serial, body.len());
    content.extend_from_slice(body);
    header::wrap(&content)
}

/// `body` split into packets of at most `max_body` bytes (1..=1023), each a whole frame with
/// the multi-packet bit, the packet total and its index; serials run on from `first_serial`.
/// A body that fits in one packet still gets the packet fields (total 1).
pub fn packets(
    msg_id: u16,
    device_id: &str,
    edition: Edition,
    first_serial: u16,
    body: &[u8],
    max_body: usize,
) -> Vec<Vec<u8>> {
    let max_body = max_body.clamp(1, header::MAX_BODY_LEN);
    let chunks: Vec<&[u8]> = if body.is_empty() {
        vec![body]
    } else {
        body.chunks(max_body).collect()
    };
    let total = chunks.len().min(usize::from(u16::MAX)) as u16;
    let terminal = bcd_encode(device_id, edition.terminal_len());
    chunks
        .iter()
        .take(usize::from(total))
        .enumerate()
        .map(|(i, chunk)| {
            let index = i as u16 + 1;
            let serial = first_serial.wrapping_add(i as u16);
            let mut content = Vec::with_capacity(chunk.len() + 21);
            content.extend_from_slice(&msg_id.to_be_bytes());
            let mut props = chunk.len() as u16 | PROPS_MULTI_PACKET;
            if let Edition::V2019 { version } = edition {
                props |= header::PROPS_2019;
                content.extend_from_slice(&props.to_be_bytes());
                content.push(version);
            } else {
                content.extend_from_slice(&props.to_be_bytes());
            }
            content.extend_from_slice(&terminal);
            content.extend_from_slice(&serial.to_be_bytes());
            content.extend_from_slice(&total.to_be_bytes());
            content.extend_from_slice(&index.to_be_bytes());
            content.extend_from_slice(chunk);
            header::wrap(&content)
        })
        .collect()
}

/// Writes `text` into exactly `len` bytes, padded with zeros (truncated if longer).
fn fixed(out: &mut Vec<u8>, text: &str, len: usize) {
    let bytes = text.as_bytes();
    let n = bytes.len().min(len);
    out.extend_from_slice(&bytes[..n]);
    out.resize(out.len() + len - n, 0);
}

/// 0x0100 terminal registration: province and city 0, then manufacturer, model and terminal
/// ID in the edition's fixed widths (5/20/7 bytes in 2013, 11/30/30 in 2019), plate colour 0
/// and the plate text.
pub fn registration(
    device_id: &str,
    edition: Edition,
    serial: u16,
    manufacturer: &str,
    model: &str,
    terminal_id: &str,
    plate: &str,
) -> Vec<u8> {
    let (m, md, t) = match edition {
        Edition::V2013 => (5, 20, 7),
        Edition::V2019 { .. } => (11, 30, 30),
    };
    let mut body = vec![0, 0, 0, 0]; // province, city
    fixed(&mut body, manufacturer, m);
    fixed(&mut body, model, md);
    fixed(&mut body, terminal_id, t);
    body.push(0); // plate colour: none
    body.extend_from_slice(plate.as_bytes());
    frame(msg::REGISTRATION, device_id, edition, serial, &body)
}

/// 0x0102 terminal authentication with `auth_code`; in 2019 also its length byte, the IMEI
/// (15 bytes, from `device_id`) and an empty 20-byte firmware version.
pub fn authentication(device_id: &str, edition: Edition, serial: u16, auth_code: &str) -> Vec<u8> {
    let mut body = Vec::new();
    match edition {
        Edition::V2013 => body.extend_from_slice(auth_code.as_bytes()),
        Edition::V2019 { .. } => {
            let code = &auth_code.as_bytes()[..auth_code.len().min(255)];
            body.push(code.len() as u8);
            body.extend_from_slice(code);
            fixed(&mut body, device_id, 15);
            fixed(&mut body, "", 20);
        }
    }
    frame(msg::AUTHENTICATION, device_id, edition, serial, &body)
}

/// 0x0002 heartbeat (empty body).
pub fn heartbeat(device_id: &str, edition: Edition, serial: u16) -> Vec<u8> {
    frame(msg::HEARTBEAT, device_id, edition, serial, &[])
}

/// One location report's content.
#[derive(Debug, Clone, PartialEq)]
pub struct Location {
    /// Alarm word (bit 0 emergency, ...; see [`super::ALARM_BITS`]).
    pub alarm_flags: u32,
    /// Status word apart from the fix and hemisphere bits, which are set from `valid`, `lat`
    /// and `lon` (bit 0 ACC, ...).
    pub status_flags: u32,
    /// Whether the fix is valid (status bit 1).
    pub valid: bool,
    /// Latitude in degrees, written to 10⁻⁶ degree.
    pub lat: f64,
    /// Longitude in degrees, written to 10⁻⁶ degree.
    pub lon: f64,
    /// Altitude in metres.
    pub altitude_m: i16,
    /// Speed in km/h, written to 0.1 km/h.
    pub speed_kmh: f64,
    /// Course in degrees, 0..=359.
    pub course: u16,
    /// Fix time; written as device-local time at `utc_offset_minutes`.
    pub time: DateTime<Utc>,
    /// Offset of the device's clock from UTC (the standard's GMT+8 is 480).
    pub utc_offset_minutes: i32,
    /// Additional items `(id, value)` appended after the fixed part (0x01 mileage, 0x30 signal,
    /// 0x31 satellites, ...).
    pub extra: Vec<(u8, Vec<u8>)>,
}

impl Location {
    /// A valid fix at `time`, `lat`, `lon` with no alarm, no motion and no items, in GMT+8.
    pub fn new(time: DateTime<Utc>, lat: f64, lon: f64) -> Self {
        Location {
            alarm_flags: 0,
            status_flags: 0,
            valid: true,
            lat,
            lon,
            altitude_m: 0,
            speed_kmh: 0.0,
            course: 0,
            time,
            utc_offset_minutes: super::DEFAULT_UTC_OFFSET_MINUTES,
            extra: Vec::new(),
        }
    }

    /// The 0x0200 body.
    pub fn body(&self) -> Vec<u8> {
        let mut status = self.status_flags & !(STATUS_VALID | STATUS_SOUTH | STATUS_WEST);
        if self.valid {
            status |= STATUS_VALID;
        }
        if self.lat < 0.0 {
            status |= STATUS_SOUTH;
        }
        if self.lon < 0.0 {
            status |= STATUS_WEST;
        }
        let micro = |deg: f64, max: f64| (deg.abs().min(max) * 1_000_000.0).round() as u32;
        let mut b = Vec::with_capacity(28 + self.extra.len() * 4);
        b.extend_from_slice(&self.alarm_flags.to_be_bytes());
        b.extend_from_slice(&status.to_be_bytes());
        b.extend_from_slice(&micro(self.lat, 90.0).to_be_bytes());
        b.extend_from_slice(&micro(self.lon, 180.0).to_be_bytes());
        b.extend_from_slice(&self.altitude_m.to_be_bytes());
        let speed = (self.speed_kmh.max(0.0) * 10.0)
            .round()
            .min(f64::from(u16::MAX)) as u16;
        b.extend_from_slice(&speed.to_be_bytes());
        b.extend_from_slice(&self.course.to_be_bytes());
        let local = self
            .time
            .checked_add_signed(TimeDelta::minutes(i64::from(self.utc_offset_minutes)))
            .unwrap_or(self.time);
        let year = local.year().rem_euclid(100) as u32;
        for v in [
            year,
            local.month(),
            local.day(),
            local.hour(),
            local.minute(),
            local.second(),
        ] {
            b.push((((v / 10) << 4) | (v % 10)) as u8);
        }
        for (id, value) in &self.extra {
            let value = &value[..value.len().min(255)];
            b.push(*id);
            b.push(value.len() as u8);
            b.extend_from_slice(value);
        }
        b
    }
}

/// 0x0200 location report.
pub fn location(device_id: &str, edition: Edition, serial: u16, report: &Location) -> Vec<u8> {
    frame(msg::LOCATION, device_id, edition, serial, &report.body())
}

/// The 0x0704 body: count, type (1 when `blind_area`), then each report with its length.
pub fn location_batch_body(blind_area: bool, reports: &[Location]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&(reports.len().min(usize::from(u16::MAX)) as u16).to_be_bytes());
    body.push(u8::from(blind_area));
    for r in reports {
        let b = r.body();
        body.extend_from_slice(&(b.len() as u16).to_be_bytes());
        body.extend_from_slice(&b);
    }
    body
}

/// 0x0704 batch upload in one frame (the body must stay within 1023 bytes: about 30 plain
/// reports; use [`packets`] with [`location_batch_body`] for more).
pub fn location_batch(
    device_id: &str,
    edition: Edition,
    serial: u16,
    blind_area: bool,
    reports: &[Location],
) -> Vec<u8> {
    frame(
        msg::BATCH,
        device_id,
        edition,
        serial,
        &location_batch_body(blind_area, reports),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Item, Session, SessionOptions};
    use bytes::BytesMut;
    use chrono::TimeZone;
    use proptest::prelude::*;

    /// Every decoded frame of `stream`, fed in two reads split at `split`.
    fn decode_all(stream: &[u8], split: usize) -> Vec<crate::Decoded> {
        let mut s = super::super::Jt808Session::new(&SessionOptions::default());
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let split = split.min(stream.len());
        for part in [&stream[..split], &stream[split..]] {
            buf.extend_from_slice(part);
            while let Some(item) = s.decode(&mut buf).unwrap() {
                match item {
                    Item::Frame(d) => out.push(d),
                    Item::Rejected(e) => panic!("rejected: {e}"),
                }
            }
        }
        out
    }

    fn edition() -> impl Strategy<Value = Edition> {
        prop_oneof![
            Just(Edition::V2013),
            (0u8..=255).prop_map(|version| Edition::V2019 { version }),
        ]
    }

    /// A device ID that fits the edition's terminal number (no leading zero: those are not
    /// part of the ID).
    fn device_id(edition: Edition) -> impl Strategy<Value = String> {
        let max = edition.terminal_len() * 2 - 1;
        proptest::string::string_regex(&format!("[1-9][0-9]{{0,{max}}}")).unwrap()
    }

    prop_compose! {
        fn report()(
            secs in 978_307_200i64..4_070_908_800, // 2001-01-01 .. 2099-01-01
            lat_e6 in -90_000_000i64..=90_000_000,
            lon_e6 in -180_000_000i64..=180_000_000,
            valid in any::<bool>(),
            alarm_flags in any::<u32>(),
            altitude_m in any::<i16>(),
            speed_dkmh in any::<u16>(),
            course in 0u16..360,
            satellites in any::<u8>(),
        ) -> Location {
            let time = Utc.timestamp_opt(secs, 0).unwrap();
            let mut l = Location::new(time, lat_e6 as f64 / 1e6, lon_e6 as f64 / 1e6);
            l.valid = valid;
            l.alarm_flags = alarm_flags;
            l.altitude_m = altitude_m;
            l.speed_kmh = f64::from(speed_dkmh) / 10.0;
            l.course = course;
            l.extra = vec![(0x31, vec![satellites])];
            l
        }
    }

    fn assert_same(l: &Location, m: &crate::Message, archived: bool) {
        let p = m.position.as_ref().expect("position");
        assert!((p.lat - l.lat).abs() < 1e-9, "{} vs {}", p.lat, l.lat);
        assert!((p.lon - l.lon).abs() < 1e-9, "{} vs {}", p.lon, l.lon);
        assert_eq!(p.time, l.time);
        assert_eq!(p.valid, l.valid);
        assert_eq!(p.altitude_m, Some(f64::from(l.altitude_m)));
        assert!((p.speed_kmh.unwrap() - l.speed_kmh).abs() < 1e-9);
        assert_eq!(p.course, Some(f64::from(l.course)));
        assert_eq!(p.satellites, Some(l.extra[0].1[0]));
        assert_eq!(p.archived, archived);
        assert_eq!(m.alarms.is_empty(), l.alarm_flags == 0);
    }

    proptest! {
        #[test]
        fn location_round_trips(
            (edition, id) in edition().prop_flat_map(|e| (Just(e), device_id(e))),
            serial in any::<u16>(),
            l in report(),
            split in 0usize..200,
        ) {
            let frame = location(&id, edition, serial, &l);
            let decoded = decode_all(&frame, split);
            prop_assert_eq!(decoded.len(), 1);
            let d = &decoded[0];
            prop_assert_eq!(d.integrity, crate::Integrity::Verified);
            prop_assert_eq!(d.messages[0].device_id.as_deref(), Some(id.as_str()));
            assert_same(&l, &d.messages[0], false);
            // The reply answers our serial and echoes the edition.
            let reply = super::super::framer::unescape(d.reply.as_ref().unwrap()).unwrap();
            let at = 5 + usize::from(matches!(edition, Edition::V2019 { .. })) + edition.terminal_len();
            prop_assert_eq!(&reply[at + 2..at + 4], &serial.to_be_bytes());
        }

        #[test]
        fn batch_round_trips_in_packets(
            id in device_id(Edition::V2013),
            serial in any::<u16>(),
            reports in proptest::collection::vec(report(), 1..6),
            blind in any::<bool>(),
            max_body in 16usize..400,
            split in 0usize..2000,
        ) {
            let body = location_batch_body(blind, &reports);
            let frames = packets(msg::BATCH, &id, Edition::V2013, serial, &body, max_body);
            let decoded = decode_all(&frames.concat(), split);
            prop_assert_eq!(decoded.len(), frames.len());
            let last = decoded.last().unwrap();
            prop_assert_eq!(last.messages.len(), reports.len());
            for (l, m) in reports.iter().zip(&last.messages) {
                assert_same(l, m, blind);
            }
        }

        #[test]
        fn registration_authentication_heartbeat_decode(
            (edition, id) in edition().prop_flat_map(|e| (Just(e), device_id(e))),
            serial in any::<u16>(),
            code in "[a-z0-9]{0,20}",
        ) {
            use crate::MessageKind;
            let stream = [
                registration(&id, edition, serial, "EWALL", "W1", "T1", "ABC123"),
                authentication(&id, edition, serial.wrapping_add(1), &code),
                heartbeat(&id, edition, serial.wrapping_add(2)),
            ]
            .concat();
            let kinds: Vec<MessageKind> = decode_all(&stream, 0)
                .iter()
                .map(|d| d.messages[0].kind)
                .collect();
            prop_assert_eq!(
                kinds,
                vec![MessageKind::Registration, MessageKind::Authentication, MessageKind::Heartbeat]
            );
        }
    }

    #[test]
    fn heartbeat_frame_bytes() {
        assert_eq!(
            heartbeat("012076463279", Edition::V2013, 1),
            [
                0x7e, // flag
                0x00, 0x02, // heartbeat
                0x00, 0x00, // empty body
                0x01, 0x20, 0x76, 0x46, 0x32, 0x79, // terminal
                0x00, 0x01, // serial 1
                0x59, // check code
                0x7e, // flag
            ]
        );
    }

    #[test]
    fn location_body_writes_device_local_bcd_time() {
        let t = Utc.with_ymd_and_hms(2024, 12, 31, 20, 5, 9).unwrap();
        let body = Location::new(t, -1.5, 2.25).body();
        assert_eq!(&body[4..8], &[0, 0, 0, 0x06]); // valid + south
        assert_eq!(&body[8..12], &1_500_000u32.to_be_bytes());
        assert_eq!(&body[22..28], &[0x25, 0x01, 0x01, 0x04, 0x05, 0x09]); // GMT+8
    }
}

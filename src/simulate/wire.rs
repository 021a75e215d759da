//! What a simulated device writes and reads: its id, the frames of each protocol (built with
//! the protocol crate's own encoders), and a tokio-util codec that cuts the service's replies
//! out of the byte stream.
//!
//! The frames are the protocol crate's (`ewall_protocol::*::encode`), so what the simulator
//! sends is what the service's decoders are tested on; the unit tests below decode every frame
//! built here with the service's own sessions. Replies are only cut and classified here; which
//! reply acknowledges which frame is decided by the connection (`link.rs`).

use bytes::{Buf, BytesMut};
use ewall_protocol::{gt06, h02, jt808, osmand, watch};
use serde_json::json;
use tokio_util::codec::{Decoder, Encoder};

use super::track::{TrackPoint, ACCURACY_M};
use super::LoadProtocol;
use crate::identity::luhn_check_digit;

/// Largest reply the simulator reads; anything longer is not a reply of the service.
const MAX_REPLY: usize = 64 * 1024;

/// JT/T 808 edition the terminals speak (a 12-digit terminal number).
pub const JT808_EDITION: jt808::encode::Edition = jt808::encode::Edition::V2013;

/// Battery level the devices report.
const BATTERY_PCT: u8 = 90;

/// The id of device `index`: a 15-digit IMEI (`86`, the index in 12 digits, the Luhn check
/// digit) or, for JT/T 808, a 12-digit terminal number (`139` and the index in 9 digits).
pub fn device_id(protocol: LoadProtocol, index: u64) -> String {
    match protocol {
        LoadProtocol::Jt808 => format!("139{:09}", index % 1_000_000_000),
        _ => {
            let body = format!("86{:012}", index % 1_000_000_000_000);
            let check = luhn_check_digit(&body);
            format!("{body}{check}")
        }
    }
}

/// A GT06 position report (0x12) of `point`.
pub fn gt06_location(serial: u16, point: &TrackPoint) -> Vec<u8> {
    let mut fix = gt06::encode::Fix::new(point.time, point.lat, point.lon);
    fix.speed_kmh = point.speed_kmh.round().clamp(0.0, 255.0) as u8;
    fix.course = (point.course.round() as u16) % 360;
    gt06::encode::location(serial, &fix)
}

/// A JT/T 808 location body of `point`.
pub fn jt808_location(point: &TrackPoint) -> jt808::encode::Location {
    let mut location = jt808::encode::Location::new(point.time, point.lat, point.lon);
    location.speed_kmh = point.speed_kmh;
    location.course = (point.course.round() as u16) % 360;
    location.extra = vec![(0x31, vec![8])]; // satellites in view
    location
}

/// A JT/T 808 location report (0x0200) or, for more than one point, a blind-area batch
/// (0x0704) of them.
pub fn jt808_report(id: &str, serial: u16, points: &[TrackPoint]) -> (u16, Vec<u8>) {
    if let [point] = points {
        let frame = jt808::encode::location(id, JT808_EDITION, serial, &jt808_location(point));
        (jt808::msg::LOCATION, frame)
    } else {
        let reports: Vec<_> = points.iter().map(jt808_location).collect();
        let frame = jt808::encode::location_batch(id, JT808_EDITION, serial, true, &reports);
        (jt808::msg::BATCH, frame)
    }
}

/// An H02 `V1` sentence of `point`.
pub fn h02_location(id: &str, point: &TrackPoint) -> Vec<u8> {
    let mut report = h02::encode::Report::new(point.time, point.lat, point.lon);
    report.speed_kmh = point.speed_kmh;
    report.course = point.course;
    h02::encode::text_v1(id, &report)
}

/// A watch `UD` position followed by an `LK` keep-alive. `UD` has no reply in the protocol;
/// the service answers `LK` only after every frame before it on the connection is committed,
/// so the keep-alive's answer acknowledges the position.
pub fn watch_location(id: &str, point: &TrackPoint) -> Vec<u8> {
    let mut bytes = watch::encode::ud(
        id,
        point.time,
        true,
        point.lat,
        point.lon,
        point.speed_kmh,
        point.course,
        BATTERY_PCT,
    );
    bytes.extend(watch_keep_alive(id));
    bytes
}

/// A watch `LK` keep-alive.
pub fn watch_keep_alive(id: &str) -> Vec<u8> {
    watch::encode::lk(id, 0, BATTERY_PCT)
}

/// An OsmAnd `GET` request of `point` on a kept-alive HTTP/1.1 connection to `host`.
pub fn osmand_request(id: &str, host: &str, point: &TrackPoint) -> Vec<u8> {
    let target = osmand::encode::request_target(
        id,
        point.time,
        point.lat,
        point.lon,
        point.speed_kmh,
        point.course,
        Some(ACCURACY_M),
        Some(BATTERY_PCT),
    );
    format!("GET {target} HTTP/1.1\r\nhost: {host}\r\nuser-agent: ewall-simulate\r\n\r\n")
        .into_bytes()
}

/// The MQTT positions payload of `point` (one JSON object).
pub fn mqtt_payload(point: &TrackPoint) -> Vec<u8> {
    json!({
        "time": point.time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "lat": point.lat,
        "lon": point.lon,
        "accuracy_m": ACCURACY_M,
        "speed_kmh": point.speed_kmh,
        "course": point.course,
        "battery_pct": BATTERY_PCT,
        "source": "gps",
    })
    .to_string()
    .into_bytes()
}

/// A reply of the service, cut from the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// A GT06 frame: its protocol number and serial.
    Gt06 {
        /// Protocol number (0x01 login, 0x12 position, ...).
        protocol: u8,
        /// Serial of the frame it answers.
        serial: u16,
    },
    /// A JT/T 808 frame: message id and body, un-escaped.
    Jt808 {
        /// Message id (0x8001 general response, 0x8100 registration response, ...).
        msg_id: u16,
        /// The body.
        body: Vec<u8>,
    },
    /// An H02 sentence (`*HQ,...#`) or watch frame (`[3G*...]`), as text.
    Text(String),
    /// An HTTP response's status.
    Http(u16),
}

/// Why the reply stream cannot be read on.
#[derive(Debug, thiserror::Error)]
pub enum ReplyError {
    /// The socket failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// Bytes that are no reply of the service.
    #[error("{0}")]
    Malformed(String),
}

/// Cuts the replies of one protocol out of the stream; writes frames as given.
#[derive(Debug, Clone, Copy)]
pub struct ReplyCodec {
    protocol: LoadProtocol,
}

impl ReplyCodec {
    /// The codec for a TCP (or HTTP) protocol.
    pub fn new(protocol: LoadProtocol) -> Self {
        ReplyCodec { protocol }
    }
}

impl Encoder<Vec<u8>> for ReplyCodec {
    type Error = ReplyError;

    fn encode(&mut self, item: Vec<u8>, dst: &mut BytesMut) -> Result<(), ReplyError> {
        dst.extend_from_slice(&item);
        Ok(())
    }
}

impl Decoder for ReplyCodec {
    type Item = Reply;
    type Error = ReplyError;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Reply>, ReplyError> {
        let reply = match self.protocol {
            LoadProtocol::Gt06 => cut_gt06(buf),
            LoadProtocol::Jt808 => cut_jt808(buf),
            LoadProtocol::H02 => cut_text(buf, b'*', b'#'),
            LoadProtocol::Watch => cut_text(buf, b'[', b']'),
            LoadProtocol::Osmand => cut_http(buf),
            LoadProtocol::Mqtt => Err(ReplyError::Malformed(
                "MQTT is read with the MQTT codec".into(),
            )),
        }?;
        if reply.is_none() && buf.len() > MAX_REPLY {
            return Err(ReplyError::Malformed(format!(
                "{} bytes without a complete reply",
                buf.len()
            )));
        }
        Ok(reply)
    }
}

fn cut_gt06(buf: &mut BytesMut) -> Result<Option<Reply>, ReplyError> {
    let Some(start) = buf
        .windows(2)
        .position(|w| w == [0x78, 0x78] || w == [0x79, 0x79])
    else {
        return Ok(None);
    };
    buf.advance(start);
    let long = buf[0] == 0x79;
    let (total, protocol_at) = if long {
        if buf.len() < 5 {
            return Ok(None);
        }
        (usize::from(u16::from_be_bytes([buf[2], buf[3]])) + 6, 4)
    } else {
        if buf.len() < 4 {
            return Ok(None);
        }
        (usize::from(buf[2]) + 5, 3)
    };
    if total < protocol_at + 7 {
        return Err(ReplyError::Malformed(format!(
            "GT06 reply with a length of {total} bytes"
        )));
    }
    if buf.len() < total {
        return Ok(None);
    }
    let frame = buf.split_to(total);
    Ok(Some(Reply::Gt06 {
        protocol: frame[protocol_at],
        serial: u16::from_be_bytes([frame[total - 6], frame[total - 5]]),
    }))
}

fn cut_jt808(buf: &mut BytesMut) -> Result<Option<Reply>, ReplyError> {
    let Some(start) = buf.iter().position(|&b| b == 0x7e) else {
        buf.clear();
        return Ok(None);
    };
    buf.advance(start);
    let Some(end) = buf[1..].iter().position(|&b| b == 0x7e).map(|i| i + 1) else {
        return Ok(None);
    };
    if end == 1 {
        // Two flags in a row: the first closed a frame we did not see start.
        buf.advance(1);
        return cut_jt808(buf);
    }
    let frame = buf.split_to(end + 1);
    let raw = jt808::framer::unescape(&frame)
        .map_err(|e| ReplyError::Malformed(format!("JT/T 808 reply: {e}")))?;
    // Flag, header, body, check code, flag.
    let malformed = || ReplyError::Malformed(format!("JT/T 808 reply of {} bytes", raw.len()));
    let content = raw
        .get(1..raw.len().saturating_sub(2))
        .ok_or_else(malformed)?;
    if content.len() < 12 {
        return Err(malformed());
    }
    let msg_id = u16::from_be_bytes([content[0], content[1]]);
    let props = u16::from_be_bytes([content[2], content[3]]);
    let mut header = if props & 0x4000 != 0 { 17 } else { 12 };
    if props & 0x2000 != 0 {
        header += 4;
    }
    let body_len = usize::from(props & 0x03ff);
    let body = content
        .get(header..header + body_len)
        .ok_or_else(malformed)?
        .to_vec();
    Ok(Some(Reply::Jt808 { msg_id, body }))
}

fn cut_text(buf: &mut BytesMut, open: u8, close: u8) -> Result<Option<Reply>, ReplyError> {
    let Some(start) = buf.iter().position(|&b| b == open) else {
        buf.clear();
        return Ok(None);
    };
    buf.advance(start);
    let Some(end) = buf.iter().position(|&b| b == close) else {
        return Ok(None);
    };
    let frame = buf.split_to(end + 1);
    Ok(Some(Reply::Text(
        String::from_utf8_lossy(&frame).into_owned(),
    )))
}

fn cut_http(buf: &mut BytesMut) -> Result<Option<Reply>, ReplyError> {
    let Some(head_len) = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4) else {
        return Ok(None);
    };
    let head = String::from_utf8_lossy(&buf[..head_len]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| {
            l.strip_prefix("HTTP/1.1 ")
                .or_else(|| l.strip_prefix("HTTP/1.0 "))
        })
        .and_then(|l| l.get(..3))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| ReplyError::Malformed(format!("not an HTTP response: {head:?}")))?;
    let mut body_len = 0usize;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if name.eq_ignore_ascii_case("content-length") {
            body_len = value
                .trim()
                .parse()
                .map_err(|_| ReplyError::Malformed(format!("content-length {:?}", value.trim())))?;
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(ReplyError::Malformed(format!(
                "transfer-encoding {} where a sized response was expected",
                value.trim()
            )));
        }
    }
    if buf.len() < head_len + body_len {
        return Ok(None);
    }
    buf.advance(head_len + body_len);
    Ok(Some(Reply::Http(status)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulate::track::{TrackClock, Walker, Zone};
    use chrono::{TimeZone, Utc};
    use ewall_protocol::{Item, Protocol, SessionOptions};

    const ZONE: Zone = Zone {
        lat: 25.515,
        lon: 112.3625,
        radius_m: 500.0,
    };

    fn points(n: usize) -> Vec<TrackPoint> {
        let clock = TrackClock::for_run(
            n as u64,
            Utc.with_ymd_and_hms(2026, 11, 30, 0, 0, 0).unwrap(),
            crate::fence::Confirmation {
                fixes: 2,
                seconds: 0,
            },
        );
        let mut walker = Walker::new(ZONE, 3, 0, clock, n as u64, false);
        (0..n).map(|_| walker.next_point()).collect()
    }

    /// Every frame of `stream` through the service's own session for `protocol`, and the
    /// replies it would send.
    fn decode(protocol: Protocol, stream: &[u8]) -> (Vec<ewall_protocol::Message>, Vec<Vec<u8>>) {
        let mut session = protocol.session(&SessionOptions::default()).unwrap();
        let mut buf = BytesMut::from(stream);
        let (mut messages, mut replies) = (Vec::new(), Vec::new());
        while let Some(item) = session.decode(&mut buf).unwrap() {
            match item {
                Item::Frame(decoded) => {
                    messages.extend(decoded.messages);
                    replies.extend(decoded.reply);
                }
                Item::Rejected(e) => panic!("rejected: {e}"),
            }
        }
        (messages, replies)
    }

    /// The messages that carry a position (a first frame may also yield a login).
    fn with_positions(messages: &[ewall_protocol::Message]) -> Vec<&ewall_protocol::Message> {
        messages.iter().filter(|m| m.position.is_some()).collect()
    }

    fn assert_position(message: &ewall_protocol::Message, point: &TrackPoint) {
        let p = message.position.as_ref().expect("a position");
        assert_eq!(p.time, point.time);
        assert!(
            (p.lat - point.lat).abs() < 1e-5,
            "{} vs {}",
            p.lat,
            point.lat
        );
        assert!(
            (p.lon - point.lon).abs() < 1e-5,
            "{} vs {}",
            p.lon,
            point.lon
        );
    }

    #[test]
    fn ids_are_valid_and_distinct() {
        for protocol in [
            LoadProtocol::Gt06,
            LoadProtocol::Jt808,
            LoadProtocol::Osmand,
        ] {
            let a = device_id(protocol, 0);
            let b = device_id(protocol, 1);
            assert_ne!(a, b);
            assert_eq!(crate::identity::canonical(&a).unwrap(), a);
            assert_eq!(crate::identity::canonical(&b).unwrap(), b);
        }
        assert_eq!(device_id(LoadProtocol::Gt06, 7).len(), 15);
        assert_eq!(device_id(LoadProtocol::Jt808, 7), "139000000007");
    }

    #[test]
    fn gt06_frames_decode_and_their_acks_are_cut() {
        let id = device_id(LoadProtocol::Gt06, 5);
        let point = points(1)[0];
        let stream = [gt06::encode::login(&id, 1, None), gt06_location(2, &point)].concat();
        let (messages, replies) = decode(Protocol::Gt06, &stream);
        assert_eq!(messages[0].device_id.as_deref(), Some(id.as_str()));
        assert_position(with_positions(&messages)[0], &point);
        let mut buf = BytesMut::from(&replies.concat()[..]);
        let mut codec = ReplyCodec::new(LoadProtocol::Gt06);
        assert_eq!(
            codec.decode(&mut buf).unwrap(),
            Some(Reply::Gt06 {
                protocol: 0x01,
                serial: 1
            })
        );
        assert_eq!(
            codec.decode(&mut buf).unwrap(),
            Some(Reply::Gt06 {
                protocol: 0x12,
                serial: 2
            })
        );
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
    }

    #[test]
    fn jt808_reports_and_blind_area_batches_decode() {
        let id = device_id(LoadProtocol::Jt808, 9);
        let track = points(6);
        let (single_id, single) = jt808_report(&id, 3, &track[..1]);
        let (batch_id, batch) = jt808_report(&id, 4, &track[1..]);
        assert_eq!((single_id, batch_id), (0x0200, 0x0704));
        let (messages, replies) = decode(Protocol::Jt808, &[single, batch].concat());
        let messages = with_positions(&messages);
        assert_eq!(messages.len(), 6);
        for (message, point) in messages.iter().zip(&track) {
            assert_position(message, point);
        }
        assert!(messages[1..]
            .iter()
            .all(|m| m.position.as_ref().unwrap().archived));
        let mut buf = BytesMut::from(&replies.concat()[..]);
        let mut codec = ReplyCodec::new(LoadProtocol::Jt808);
        for (serial, msg) in [(3u16, 0x0200u16), (4, 0x0704)] {
            let Some(Reply::Jt808 { msg_id, body }) = codec.decode(&mut buf).unwrap() else {
                panic!("a reply");
            };
            assert_eq!(msg_id, 0x8001);
            assert_eq!(
                &body[..4],
                &[serial.to_be_bytes(), msg.to_be_bytes()].concat()[..]
            );
            assert_eq!(body[4], 0);
        }
    }

    #[test]
    fn h02_watch_and_osmand_frames_decode() {
        let id = device_id(LoadProtocol::H02, 2);
        let point = points(1)[0];
        let (messages, replies) = decode(Protocol::H02, &h02_location(&id, &point));
        assert_position(with_positions(&messages)[0], &point);
        let mut buf = BytesMut::from(&replies.concat()[..]);
        let Some(Reply::Text(text)) = ReplyCodec::new(LoadProtocol::H02).decode(&mut buf).unwrap()
        else {
            panic!("a reply");
        };
        assert!(text.starts_with(&format!("*HQ,{id},V4,V1,")), "{text}");

        let (messages, replies) = decode(Protocol::Watch, &watch_location(&id, &point));
        assert_position(with_positions(&messages)[0], &point);
        assert_eq!(replies, vec![format!("[3G*{id}*0002*LK]").into_bytes()]);

        let request = osmand_request(&id, "127.0.0.1:5055", &point);
        let text = String::from_utf8(request).unwrap();
        let target = text.split(' ').nth(1).unwrap();
        let decoded = osmand::decode_request(target).unwrap();
        assert_position(&decoded.messages[0], &point);
        let payload = ewall_protocol::json::decode(&mqtt_payload(&point)).unwrap();
        assert_eq!(payload.len(), 1);
    }

    #[test]
    fn http_responses_are_cut_with_their_bodies() {
        let mut buf = BytesMut::from(
            &b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\nHTTP/1.1 404 Not Found\r\nContent-Length: 5\r\n\r\nnope!HTTP/1.1 2"[..],
        );
        let mut codec = ReplyCodec::new(LoadProtocol::Osmand);
        assert_eq!(codec.decode(&mut buf).unwrap(), Some(Reply::Http(200)));
        assert_eq!(codec.decode(&mut buf).unwrap(), Some(Reply::Http(404)));
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
        assert_eq!(&buf[..], b"HTTP/1.1 2");
    }
}

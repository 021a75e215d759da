//! `ewall decode`: what one captured frame means, as JSON lines an engineer can read and a
//! script can parse. Uses the same sessions the listeners use, with their default options.
//! `json` takes one MQTT positions payload; its GCJ-02 positions are printed converted to
//! WGS-84, as the service stores them, with what was sent under `sent`.

use bytes::BytesMut;
use ewall_protocol::{
    json, osmand, DecodeError, Decoded, FrameError, Integrity, Item, Protocol, SessionOptions,
};

use crate::fence::crs;
use serde_json::{Map, Value};
use thiserror::Error;

/// How the frame was given on the command line.
#[derive(Debug, Clone, Copy)]
pub enum FrameInput<'a> {
    /// Hex bytes (whitespace allowed).
    Hex(&'a str),
    /// The protocol's own form: text for text protocols, an OsmAnd request target or JSON
    /// body; binary protocols read it as hex too.
    Native(&'a str),
}

/// Why a frame could not be decoded.
#[derive(Debug, Error)]
pub enum DecodeCommandError {
    /// The hex text is not hex.
    #[error("the frame is not valid hex ({0}); give the bytes as pairs of hex digits")]
    BadHex(String),
    /// The frame decoded to an error.
    #[error("cannot decode the {protocol} frame: {source}")]
    Decode {
        /// Protocol.
        protocol: Protocol,
        /// Decoder's reason.
        source: DecodeError,
    },
    /// The stream is corrupt beyond recovery.
    #[error("cannot decode the {protocol} frame: {source}")]
    Frame {
        /// Protocol.
        protocol: Protocol,
        /// Framer's reason.
        source: FrameError,
    },
    /// Bytes were left that do not make a whole frame.
    #[error("{left} bytes at the end do not make a whole {protocol} frame (truncated capture?)")]
    Incomplete {
        /// Protocol.
        protocol: Protocol,
        /// Bytes left.
        left: usize,
    },
    /// Nothing in the input was a frame.
    #[error("no {0} frame found in the input")]
    NoFrame(Protocol),
}

/// The JSON lines to print and any warnings for stderr.
#[derive(Debug, Default)]
pub struct DecodeOutput {
    /// One object per message.
    pub lines: Vec<Value>,
    /// Notes such as skipped garbage.
    pub warnings: Vec<String>,
}

fn parse_hex(text: &str) -> Result<Vec<u8>, DecodeCommandError> {
    let clean: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let clean = clean
        .strip_prefix("0x")
        .or_else(|| clean.strip_prefix("0X"))
        .unwrap_or(&clean);
    hex::decode(clean).map_err(|e| DecodeCommandError::BadHex(e.to_string()))
}

/// Decodes one captured frame (or several back to back).
///
/// # Errors
/// [`DecodeCommandError`] when the input is not a whole, decodable frame.
pub fn decode_frame(
    protocol: Protocol,
    input: FrameInput<'_>,
) -> Result<DecodeOutput, DecodeCommandError> {
    decode_frame_as(protocol, input, None)
}

/// [`decode_frame`] for a device of `model` (some models give some codes another meaning).
///
/// # Errors
/// As [`decode_frame`].
pub fn decode_frame_as(
    protocol: Protocol,
    input: FrameInput<'_>,
    model: Option<&str>,
) -> Result<DecodeOutput, DecodeCommandError> {
    let bytes = match input {
        FrameInput::Hex(text) => parse_hex(text)?,
        FrameInput::Native(text) if protocol.is_text() => text.as_bytes().to_vec(),
        FrameInput::Native(text) => parse_hex(text)?,
    };
    let mut output = DecodeOutput::default();
    if protocol == Protocol::Json {
        let reports = json::decode(&bytes)
            .map_err(|source| DecodeCommandError::Decode { protocol, source })?;
        for report in reports {
            let sent = report.message.position.as_ref().map(|p| (p.lon, p.lat));
            let mut message = report.message;
            if let (Some(p), json::Crs::Gcj02) = (message.position.as_mut(), report.crs) {
                // What the service stores: the WGS-84 point, converted as zones are.
                (p.lon, p.lat) = crs::gcj02_to_wgs84(p.lon, p.lat);
            }
            let decoded = Decoded {
                messages: vec![message],
                reply: None,
                integrity: Integrity::Unchecked,
            };
            push_lines(&mut output, protocol, &decoded);
            if let (Some(Value::Object(line)), Some((lon, lat))) = (output.lines.last_mut(), sent) {
                line.insert("crs".into(), report.crs.as_str().into());
                if report.crs != json::Crs::Wgs84 {
                    line.insert("sent".into(), serde_json::json!({ "lat": lat, "lon": lon }));
                }
            }
        }
        return Ok(output);
    }
    let options = SessionOptions {
        model: model.map(str::to_owned),
        ..SessionOptions::default()
    };
    let Some(mut session) = protocol.session(&options) else {
        let text = String::from_utf8_lossy(&bytes);
        let text = text.trim();
        let decoded = if text.starts_with('{') {
            osmand::decode_json(text.as_bytes())
        } else {
            osmand::decode_request(text)
        }
        .map_err(|source| DecodeCommandError::Decode { protocol, source })?;
        push_lines(&mut output, protocol, &decoded);
        return Ok(output);
    };
    let mut buf = BytesMut::from(&bytes[..]);
    let mut frames = 0;
    while let Some(item) = session
        .decode(&mut buf)
        .map_err(|source| DecodeCommandError::Frame { protocol, source })?
    {
        match item {
            Item::Frame(decoded) => {
                frames += 1;
                push_lines(&mut output, protocol, &decoded);
            }
            Item::Rejected(DecodeError::Garbage { skipped }) => output.warnings.push(format!(
                "skipped {skipped} bytes that are not a {protocol} frame"
            )),
            Item::Rejected(source) => return Err(DecodeCommandError::Decode { protocol, source }),
        }
    }
    if !buf.is_empty() {
        return Err(DecodeCommandError::Incomplete {
            protocol,
            left: buf.len(),
        });
    }
    if frames == 0 {
        return Err(DecodeCommandError::NoFrame(protocol));
    }
    Ok(output)
}

fn put<T: serde::Serialize>(map: &mut Map<String, Value>, key: &str, value: Option<T>) {
    if let Some(v) = value.and_then(|v| serde_json::to_value(v).ok()) {
        map.insert(key.to_owned(), v);
    }
}

fn push_lines(output: &mut DecodeOutput, protocol: Protocol, decoded: &Decoded) {
    let reply_hex = decoded.reply.as_ref().map(hex::encode);
    let reply_text = decoded
        .reply
        .as_ref()
        .filter(|_| protocol.is_text())
        .and_then(|r| String::from_utf8(r.clone()).ok());
    let integrity = match decoded.integrity {
        Integrity::Verified => "verified",
        Integrity::Unchecked => "unchecked",
        Integrity::Mismatch(_) => "mismatch",
    };
    let common = |map: &mut Map<String, Value>| {
        map.insert("integrity".into(), integrity.into());
        if let Integrity::Mismatch(m) = decoded.integrity {
            put(map, "mismatch", Some(m));
        }
        put(map, "reply_hex", reply_hex.clone());
        put(map, "reply_text", reply_text.clone());
    };
    if decoded.messages.is_empty() {
        let mut map = Map::new();
        map.insert("type".into(), "no_message".into());
        common(&mut map);
        output.lines.push(Value::Object(map));
        return;
    }
    for message in &decoded.messages {
        let mut map = Map::new();
        put(&mut map, "type", Some(message.kind));
        put(&mut map, "device_id", message.device_id.as_ref());
        if let Some(p) = &message.position {
            put(
                &mut map,
                "time",
                Some(p.time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
            );
            put(&mut map, "lat", Some(p.lat));
            put(&mut map, "lon", Some(p.lon));
            put(&mut map, "valid", Some(p.valid));
            put(&mut map, "speed_kmh", p.speed_kmh);
            put(&mut map, "course", p.course);
            put(&mut map, "altitude_m", p.altitude_m);
            put(&mut map, "satellites", p.satellites);
            put(&mut map, "accuracy_m", p.accuracy_m);
            put(&mut map, "hdop", p.hdop);
            put(&mut map, "source", Some(p.source));
            if p.archived {
                map.insert("archived".into(), true.into());
            }
            // The date fields as sent, when they are not a date (`time` is then the decoding's).
            put(&mut map, "unreadable_time", p.unreadable_time.as_deref());
        }
        if let Some(first) = message.alarms.first() {
            put(&mut map, "alarm", Some(first.as_str()));
            put(&mut map, "alarms", Some(&message.alarms));
        }
        let status = &message.status;
        put(&mut map, "battery_pct", status.battery_pct);
        put(&mut map, "voltage", status.voltage);
        put(&mut map, "charging", status.charging);
        put(&mut map, "gsm_signal", status.gsm_signal);
        put(&mut map, "ignition", status.ignition);
        put(&mut map, "odometer_m", status.odometer_m);
        put(&mut map, "steps", status.steps);
        if !message.cells.is_empty() {
            put(&mut map, "cells", Some(&message.cells));
        }
        if !message.wifi.is_empty() {
            put(&mut map, "wifi", Some(&message.wifi));
        }
        put(&mut map, "command_reply", message.command_reply.as_ref());
        common(&mut map);
        output.lines.push(Value::Object(map));
    }
}

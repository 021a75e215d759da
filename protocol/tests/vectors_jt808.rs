//! Replays the captured JT/T 808 frames in `fixtures/vectors/traccar/jt808.jsonl` and checks
//! what the reference asserts about each (see the README next to the file).
//!
//! The decoder records are stored un-escaped, so they go to `Jt808Session::decode_frame`, one
//! session per test group in file order. Line 232 is the one record still escaped on the wire;
//! it goes through the stream path (`Session::decode`). The `frame` records are fed to the
//! framer as a byte stream and the first frame it cuts must equal the expected bytes.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use bytes::BytesMut;
use chrono::{TimeDelta, TimeZone, Utc};
use ewall_protocol::jt808::framer::{Found, Framer};
use ewall_protocol::jt808::{Jt808Session, DEFAULT_MAX_FRAME_LEN};
use ewall_protocol::{Alarm, Decoded, Item, Message, Session, SessionOptions};
use serde_json::Value;

use common::{hex_to_bytes, load, Vector};

/// Records we do not pass, with the reason. Each depends on a per-device model setting of the
/// reference server that gives the same bytes another meaning; we decode by the default
/// meaning.
const NOT_PASSING: &[(u32, &str)] = &[
    (
        385,
        "model MV710G: bit 16 of the 0x57 item's alarm word is a door alarm on that model only",
    ),
    (
        391,
        "model AL300: alarm bit 16 means movement on that model; by default it is tampering",
    ),
    (
        415,
        "model C5L: item 0xF8 is a step count on that model only (a temperature elsewhere)",
    ),
];

/// Records that pass, of 116.
const EXPECTED_PASSING: usize = 113;

/// The escaped record (see the vectors README, point 2).
const ESCAPED_LINE: u32 = 232;

fn alarm_from_reference(name: &str) -> Option<Alarm> {
    Some(match name {
        "sos" => Alarm::Sos,
        "powerCut" => Alarm::PowerCut,
        "powerOff" => Alarm::PowerOff,
        "lowBattery" | "lowPower" => Alarm::LowBattery,
        "removing" => Alarm::Removal,
        "tampering" => Alarm::Tamper,
        "vibration" => Alarm::Vibration,
        "overspeed" => Alarm::Overspeed,
        "fallDown" => Alarm::Fall,
        "geofenceEnter" => Alarm::GeofenceEnter,
        "geofenceExit" => Alarm::GeofenceExit,
        "geofence" => Alarm::Geofence,
        "movement" => Alarm::Movement,
        "accident" => Alarm::Accident,
        "braking" | "hardBraking" => Alarm::HarshBraking,
        "acceleration" | "hardAcceleration" => Alarm::HarshAcceleration,
        "cornering" | "hardCornering" => Alarm::HarshCornering,
        "fatigueDriving" => Alarm::Fatigue,
        "fault" => Alarm::Fault,
        "door" => Alarm::Door,
        "jamming" => Alarm::Jamming,
        "lock" | "unlock" => Alarm::Lock,
        "temperature" => Alarm::Temperature,
        "parking" => Alarm::Parking,
        "general" => Alarm::General,
        "gpsAntennaCut" => Alarm::GnssAntenna,
        _ => return None,
    })
}

fn position_in_range(m: &Message) -> Result<(), String> {
    let p = m.position.as_ref().ok_or("no position")?;
    let earliest = Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).unwrap();
    let latest = Utc::now() + TimeDelta::hours(25);
    if p.time < earliest || p.time > latest {
        return Err(format!("time {} out of range", p.time));
    }
    if !(-90.0..=90.0).contains(&p.lat) || !(-180.0..=180.0).contains(&p.lon) {
        return Err(format!("coordinates {} {} out of range", p.lat, p.lon));
    }
    if p.speed_kmh.is_some_and(|s| s < 0.0) {
        return Err("negative speed".into());
    }
    if p.course.is_some_and(|c| !(0.0..=360.0).contains(&c)) {
        return Err("course out of range".into());
    }
    if let Some(a) = p.altitude_m {
        if !(-12262.0..=18000.0).contains(&a) {
            return Err(format!("altitude {a} out of range"));
        }
    }
    Ok(())
}

/// A message the service would keep: it has a device ID.
fn attributed(d: &Decoded) -> Vec<&Message> {
    d.messages
        .iter()
        .filter(|m| m.device_id.is_some())
        .collect()
}

fn check_position(v: &Vector, d: &Decoded) -> Result<(), String> {
    let msgs = attributed(d);
    let first = msgs.first().ok_or("no attributed message")?;
    position_in_range(first)?;
    let p = first.position.as_ref().ok_or("no position")?;
    let e = &v.expected;
    if let (Some(lat), Some(lon)) = (e["latitude"].as_f64(), e["longitude"].as_f64()) {
        if (p.lat - lat).abs() > 1e-5 || (p.lon - lon).abs() > 1e-5 {
            return Err(format!("position {} {} != {lat} {lon}", p.lat, p.lon));
        }
    }
    if let Some(t) = e["time"].as_str() {
        let got = p.time.format("%Y-%m-%d %H:%M:%S%.3f").to_string();
        if got != t {
            return Err(format!("time {got} != {t}"));
        }
    }
    if let Some(valid) = e["valid"].as_bool() {
        if p.valid != valid {
            return Err(format!("valid {} != {valid}", p.valid));
        }
    }
    Ok(())
}

fn check_positions(d: &Decoded) -> Result<(), String> {
    let msgs = attributed(d);
    if msgs.is_empty() {
        return Err("no attributed message".into());
    }
    for m in msgs {
        position_in_range(m)?;
    }
    Ok(())
}

fn close(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() < 1e-9)
}

fn check_attribute(d: &Decoded) -> impl Fn(&Value) -> Result<(), String> + '_ {
    move |e: &Value| {
        let key = e["key"].as_str().unwrap_or_default();
        let value = &e["value"];
        let first = d.messages.first();
        let status = first.map(|m| &m.status);
        match key {
            "alarm" => {
                let m = first.ok_or("no message")?;
                for name in value.as_str().unwrap_or_default().split(',') {
                    let alarm = alarm_from_reference(name)
                        .ok_or_else(|| format!("unmapped alarm name {name}"))?;
                    if !m.alarms.contains(&alarm) {
                        return Err(format!("alarm {alarm:?} missing from {:?}", m.alarms));
                    }
                }
                Ok(())
            }
            "batteryLevel" => {
                let got = status.and_then(|s| s.battery_pct).map(u64::from);
                (got == value.as_u64())
                    .then_some(())
                    .ok_or(format!("battery_pct {got:?} != {value}"))
            }
            "battery" => {
                let got = status.and_then(|s| s.voltage);
                close(got, value.as_f64().unwrap_or(f64::NAN))
                    .then_some(())
                    .ok_or(format!("voltage {got:?} != {value}"))
            }
            "sat" => {
                let got = first
                    .and_then(|m| m.position.as_ref())
                    .and_then(|p| p.satellites)
                    .map(u64::from);
                (got == value.as_u64())
                    .then_some(())
                    .ok_or(format!("satellites {got:?} != {value}"))
            }
            "charge" => {
                let got = status.and_then(|s| s.charging);
                (got == value.as_bool())
                    .then_some(())
                    .ok_or(format!("charging {got:?} != {value}"))
            }
            "steps" => {
                let got = status.and_then(|s| s.steps).map(u64::from);
                (got == value.as_u64())
                    .then_some(())
                    .ok_or(format!("steps {got:?} != {value}"))
            }
            // Not modelled (vehicle supply voltage, OBD, temperatures, lock data, driver IDs,
            // ICCID, free text, ...): the frame only has to decode.
            _ => Ok(()),
        }
    }
}

fn check_decoded(v: &Vector, item: &Item) -> Result<(), String> {
    let d = match item {
        Item::Frame(d) => d,
        Item::Rejected(e) => return Err(format!("rejected: {e}")),
    };
    match v.check.as_str() {
        "position" => check_position(v, d),
        "positions" => check_positions(d),
        "null" => {
            if attributed(d).iter().any(|m| m.position.is_some()) {
                Err("unexpected position".into())
            } else {
                Ok(())
            }
        }
        "attribute" => check_attribute(d)(&v.expected),
        "attributes" | "notnull" => {
            if d.messages.is_empty() {
                Err("no message".into())
            } else {
                Ok(())
            }
        }
        other => Err(format!("unknown check {other}")),
    }
}

fn check_frame(v: &Vector) -> Result<(), String> {
    let want = hex_to_bytes(v.expected["frame"].as_str().unwrap_or_default());
    let stream = v.bytes();
    let mut framer = Framer::new(DEFAULT_MAX_FRAME_LEN);
    let mut at = 0;
    loop {
        match framer.next(&stream[at..]) {
            Ok(Some(Found::Garbage { len })) => at += len,
            Ok(Some(Found::Frame { bytes, .. })) => {
                return (bytes == want)
                    .then_some(())
                    .ok_or(format!("cut {bytes:02x?}, expected {want:02x?}"))
            }
            Ok(Some(Found::Invalid { error, .. })) => return Err(format!("invalid: {error}")),
            Ok(None) => return Err("no frame found".into()),
            Err(e) => return Err(e.to_string()),
        }
    }
}

#[test]
fn traccar_jt808_vectors() {
    let vectors = load("jt808");
    assert_eq!(vectors.len(), 116);

    let mut tally: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut failures: BTreeMap<u32, String> = BTreeMap::new();

    let mut sessions: BTreeMap<String, Jt808Session> = BTreeMap::new();
    for v in &vectors {
        let result = if v.check == "frame" {
            check_frame(v)
        } else {
            let key = format!("{}#{}", v.source, v.test.clone().unwrap_or_default());
            let session = sessions
                .entry(key)
                .or_insert_with(|| Jt808Session::new(&SessionOptions::default()));
            let bytes = v.bytes();
            let item = if v.line == ESCAPED_LINE {
                let mut buf = BytesMut::from(&bytes[..]);
                session
                    .decode(&mut buf)
                    .map_err(|e| e.to_string())
                    .and_then(|i| i.ok_or_else(|| "stream gave no item".to_string()))
            } else {
                Ok(session.decode_frame(&bytes))
            };
            item.and_then(|i| check_decoded(v, &i))
        };
        let entry = tally.entry(v.check.clone()).or_default();
        entry.1 += 1;
        match result {
            Ok(()) => entry.0 += 1,
            Err(reason) => {
                failures.insert(v.line, reason);
            }
        }
    }

    println!("jt808 vectors, passing / total per check:");
    for (check, (pass, total)) in &tally {
        println!("  {check:<10} {pass:>3} / {total}");
    }
    let passing: usize = tally.values().map(|(p, _)| p).sum();
    println!("  {:<10} {passing:>3} / {}", "all", vectors.len());
    for (line, reason) in &failures {
        println!("  line {line}: {reason}");
    }

    let expected: BTreeSet<u32> = NOT_PASSING.iter().map(|(l, _)| *l).collect();
    let failed: BTreeSet<u32> = failures.keys().copied().collect();
    assert_eq!(
        failed, expected,
        "non-passing records changed: {failures:#?}"
    );
    assert_eq!(passing, EXPECTED_PASSING);
}

#[test]
fn escaped_record_needs_the_stream_path() {
    // Fed as if un-escaped, the record's check code and length do not hold; through the
    // stream path they do.
    let v = load("jt808")
        .into_iter()
        .find(|v| v.line == ESCAPED_LINE)
        .unwrap();
    let mut session = Jt808Session::new(&SessionOptions::default());
    let Item::Frame(raw) = session.decode_frame(&v.bytes()) else {
        panic!("lenient session accepts it");
    };
    assert!(raw.integrity.is_mismatch());
    let mut buf = BytesMut::from(&v.bytes()[..]);
    let Some(Item::Frame(d)) = session.decode(&mut buf).unwrap() else {
        panic!("stream path decodes it");
    };
    assert!(!d.integrity.is_mismatch());
    assert!(buf.is_empty());
}

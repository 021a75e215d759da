//! Loads the captured-frame vectors in `fixtures/vectors/traccar/` for the per-protocol vector
//! tests, and holds what those tests share: the checks of a decoded record against what the
//! reference asserts (see the README next to the files for the format and the check kinds), the
//! replay in test groups, and the tally of passes with its list of exceptions.
//!
//! Each protocol's test keeps what is its own: how a record reaches the decoder, how its framer
//! cuts a stream, which messages count, and the records it does not pass.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeDelta, Utc};
use ewall_protocol::{Alarm, Decoded, Message, Position};
use serde::Deserialize;
use serde_json::Value;

/// One line of a `<protocol>.jsonl` vector file.
#[derive(Debug, Clone, Deserialize)]
pub struct Vector {
    pub protocol: String,
    pub source: String,
    pub line: u32,
    pub encoding: String,
    pub frame: String,
    pub check: String,
    pub expected: Value,
    #[serde(default)]
    pub test: Option<String>,
    #[serde(default)]
    pub decoder_state: Option<Value>,
    #[serde(default)]
    pub http: Option<Value>,
    #[serde(default)]
    pub parts: Option<Value>,
}

impl Vector {
    /// The frame's raw bytes (hex decoded, or the text's bytes).
    pub fn bytes(&self) -> Vec<u8> {
        match self.encoding.as_str() {
            "hex" => hex_to_bytes(&self.frame),
            _ => self.frame.as_bytes().to_vec(),
        }
    }

    /// Where the record came from, for assertion messages.
    pub fn origin(&self) -> String {
        format!("{}:{} ({})", self.source, self.line, self.check)
    }

    /// The test group the record belongs to: source file and test method. The reference keeps
    /// decoder state only within one group.
    pub fn group(&self) -> (String, String) {
        (self.source.clone(), self.test.clone().unwrap_or_default())
    }

    /// The device model the reference decoder was told for this record (`modelOverride`).
    pub fn model(&self) -> Option<&str> {
        self.decoder_state.as_ref()?.get("modelOverride")?.as_str()
    }

    /// For a `frame` record: the bytes the framer must cut first.
    pub fn expected_frame(&self) -> Result<Vec<u8>, String> {
        let hex = self.expected["frame"]
            .as_str()
            .ok_or("record without expected.frame")?;
        Ok(hex_to_bytes(hex))
    }
}

/// Every record of `fixtures/vectors/traccar/<protocol>.jsonl`, in file order.
pub fn load(protocol: &str) -> Vec<Vector> {
    let path = fixtures_dir()
        .join("vectors/traccar")
        .join(format!("{protocol}.jsonl"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

/// The repository's `fixtures/` directory.
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

/// Lower- or upper-case hex, whitespace ignored, to bytes.
pub fn hex_to_bytes(hex: &str) -> Vec<u8> {
    let clean: Vec<u8> = hex.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    clean
        .chunks(2)
        .map(|pair| {
            let s = std::str::from_utf8(pair).expect("hex is ASCII");
            u8::from_str_radix(s, 16).unwrap_or_else(|e| panic!("bad hex {s:?}: {e}"))
        })
        .collect()
}

/// A `frame` record's verdict: what the framer cut against what it should have cut.
pub fn same_cut(cut: &[u8], expected: &[u8]) -> Result<(), String> {
    if cut == expected {
        Ok(())
    } else {
        Err(format!("cut {cut:02x?}, expected {expected:02x?}"))
    }
}

/// The reference's alarm names as ours.
pub fn alarm_from_reference(name: &str) -> Option<Alarm> {
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

/// Whether a position makes sense, as the reference's harness checks it: time after 1999 and
/// less than 25 h ahead of `now`, coordinates in range, altitude between -12262 and 18000 m,
/// speed between 0 and 869 knots, course between 0 and 360.
pub fn in_range(p: &Position, now: DateTime<Utc>) -> Result<(), String> {
    let earliest = NaiveDate::from_ymd_opt(2000, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .expect("a real date")
        .and_utc();
    if p.time < earliest || p.time > now + TimeDelta::hours(25) {
        return Err(format!("time {} out of range", p.time));
    }
    if !(-90.0..=90.0).contains(&p.lat) || !(-180.0..=180.0).contains(&p.lon) {
        return Err(format!("coordinates {} {} out of range", p.lat, p.lon));
    }
    if p.altitude_m
        .is_some_and(|a| !(-12262.0..=18000.0).contains(&a))
    {
        return Err(format!("altitude {:?} out of range", p.altitude_m));
    }
    if p.speed_kmh
        .is_some_and(|s| !(0.0..=869.0 * KNOTS).contains(&s))
    {
        return Err(format!("speed {:?} out of range", p.speed_kmh));
    }
    if p.course.is_some_and(|c| !(0.0..=360.0).contains(&c)) {
        return Err(format!("course {:?} out of range", p.course));
    }
    Ok(())
}

/// A position against the record's reference, where it states one: latitude and longitude
/// within 1e-5 degrees, the time (`yyyy-MM-dd HH:mm:ss.SSS`, UTC) and validity exactly.
pub fn matches_reference(p: &Position, expected: &Value) -> Result<(), String> {
    for (key, ours) in [("latitude", p.lat), ("longitude", p.lon)] {
        if let Some(theirs) = expected[key].as_f64() {
            if (ours - theirs).abs() > 1e-5 {
                return Err(format!("{key} {ours} != {theirs}"));
            }
        }
    }
    if let Some(time) = expected["time"].as_str() {
        let theirs = NaiveDateTime::parse_from_str(time, "%Y-%m-%d %H:%M:%S%.3f")
            .map_err(|e| format!("expected time {time:?}: {e}"))?
            .and_utc();
        if p.time != theirs {
            return Err(format!("time {} != {theirs}", p.time));
        }
    }
    if let Some(valid) = expected["valid"].as_bool() {
        if p.valid != valid {
            return Err(format!("valid {} != {valid}", p.valid));
        }
    }
    Ok(())
}

/// Runs one decoder record's check against the messages a frame gave (see [`check_messages`]).
pub fn check_decoded(
    v: &Vector,
    decoded: &Decoded,
    modelled: &[&str],
    now: DateTime<Utc>,
) -> Result<(), String> {
    let messages: Vec<&Message> = decoded.messages.iter().collect();
    check_messages(v, &messages, modelled, now)
}

/// Runs one decoder record's check against `messages`, the messages the record gave that the
/// protocol counts. A message without a device ID is dropped by the service, so its position
/// counts as none.
///
/// - `position`: exactly one position, in range, matching the reference where it states one;
/// - `positions`: at least one message with a device ID, each with a position in range;
/// - `null`: no position;
/// - `attribute`: see [`check_attribute`], for the attribute keys in `modelled`;
/// - `attributes`, `notnull`: at least one message.
///
/// Position times are checked against `now`.
pub fn check_messages(
    v: &Vector,
    messages: &[&Message],
    modelled: &[&str],
    now: DateTime<Utc>,
) -> Result<(), String> {
    let attributed: Vec<&Message> = messages
        .iter()
        .copied()
        .filter(|m| m.device_id.is_some())
        .collect();
    let positions: Vec<&Position> = attributed
        .iter()
        .filter_map(|m| m.position.as_ref())
        .collect();
    match v.check.as_str() {
        "position" => {
            let [p] = positions.as_slice() else {
                return Err(format!("{} attributed positions", positions.len()));
            };
            in_range(p, now)?;
            matches_reference(p, &v.expected)
        }
        "positions" => {
            if attributed.is_empty() {
                return Err("no attributed message".into());
            }
            attributed.iter().try_for_each(|m| {
                let p = m.position.as_ref().ok_or("a message without position")?;
                in_range(p, now)
            })
        }
        "null" => match positions.len() {
            0 => Ok(()),
            n => Err(format!("{n} positions where none was expected")),
        },
        "attribute" => check_attribute(&v.expected, messages, modelled),
        "attributes" | "notnull" => match messages.len() {
            0 => Err("no message".into()),
            _ => Ok(()),
        },
        other => Err(format!("unknown check {other}")),
    }
}

/// Knots to km/h; the reference keeps speeds in knots.
const KNOTS: f64 = 1.852;

/// Our value for a reference attribute we model, in the reference's units.
enum Ours {
    Number(Option<f64>),
    Bool(Option<bool>),
}

/// Compares one `attribute` record with the message the reference looks at: the first with a
/// position, else the first. Only the keys in `modelled` are compared (any other key only needs
/// the frame to decode): `alarm` lists reference names that must all be among the message's
/// alarms; the others are compared in the reference's units, `null` meaning absent.
pub fn check_attribute(
    expected: &Value,
    messages: &[&Message],
    modelled: &[&str],
) -> Result<(), String> {
    let key = expected["key"].as_str().ok_or("attribute without key")?;
    if !modelled.contains(&key) {
        return Ok(());
    }
    let m = messages
        .iter()
        .find(|m| m.position.is_some())
        .or_else(|| messages.first())
        .ok_or("no message")?;
    let value = &expected["value"];
    let p = m.position.as_ref();
    let ours = match key {
        "alarm" => {
            let names = value.as_str().ok_or("alarm without value")?;
            for name in names.split(',') {
                let alarm = alarm_from_reference(name).ok_or(format!("unmapped alarm {name}"))?;
                if !m.alarms.contains(&alarm) {
                    return Err(format!("alarm {alarm:?} missing from {:?}", m.alarms));
                }
            }
            return Ok(());
        }
        "batteryLevel" => Ours::Number(m.status.battery_pct.map(f64::from)),
        "battery" => Ours::Number(m.status.voltage),
        "rssi" => Ours::Number(m.status.gsm_signal.map(f64::from)),
        "steps" => Ours::Number(m.status.steps.map(f64::from)),
        "sat" => Ours::Number(p.and_then(|p| p.satellites).map(f64::from)),
        "altitude" => Ours::Number(p.and_then(|p| p.altitude_m)),
        "speed" => Ours::Number(p.and_then(|p| p.speed_kmh).map(|s| s / KNOTS)),
        "course" => Ours::Number(p.and_then(|p| p.course)),
        "ignition" => Ours::Bool(m.status.ignition),
        "charge" => Ours::Bool(m.status.charging),
        // The reference sets it only on archived positions.
        "archive" => Ours::Bool(p.map(|p| p.archived).filter(|&a| a)),
        other => return Err(format!("no comparison for {other}")),
    };
    let same = match (&ours, value) {
        (Ours::Number(None) | Ours::Bool(None), Value::Null) => true,
        (Ours::Number(Some(ours)), theirs) => theirs
            .as_f64()
            .is_some_and(|theirs| (ours - theirs).abs() <= 1e-9 * theirs.abs().max(1.0)),
        (Ours::Bool(Some(ours)), Value::Bool(theirs)) => ours == theirs,
        _ => false,
    };
    if same {
        Ok(())
    } else {
        let ours = match ours {
            Ours::Number(n) => format!("{n:?}"),
            Ours::Bool(b) => format!("{b:?}"),
        };
        Err(format!("{key}: ours {ours}, reference {value}"))
    }
}

/// A record the decoders do not pass: source file, line, and why.
pub type Exception = (&'static str, u32, &'static str);

/// Passes and totals per check kind, and the records that did not pass.
#[derive(Debug, Default)]
pub struct Tally {
    /// check kind -> (passed, total)
    checks: BTreeMap<String, (usize, usize)>,
    /// source file, line, what went wrong
    failures: Vec<(String, u32, String)>,
}

/// Replays `vectors` in file order, with one `S` (a session, a receive buffer) per test group,
/// and tallies each record's outcome.
pub fn replay<S>(
    vectors: &[Vector],
    mut new: impl FnMut() -> S,
    mut check: impl FnMut(&mut S, &Vector) -> Result<(), String>,
) -> Tally {
    let mut groups: BTreeMap<(String, String), S> = BTreeMap::new();
    let mut tally = Tally::default();
    for v in vectors {
        let state = groups.entry(v.group()).or_insert_with(&mut new);
        tally.record(v, check(state, v));
    }
    tally
}

impl Tally {
    /// Counts one record's outcome.
    pub fn record(&mut self, v: &Vector, outcome: Result<(), String>) {
        let entry = self.checks.entry(v.check.clone()).or_default();
        entry.1 += 1;
        match outcome {
            Ok(()) => entry.0 += 1,
            Err(why) => {
                self.failures
                    .push((v.source.clone(), v.line, format!("{}: {why}", v.check)))
            }
        }
    }

    /// Records that passed.
    pub fn passed(&self) -> usize {
        self.checks.values().map(|(p, _)| p).sum()
    }

    /// Records counted.
    pub fn total(&self) -> usize {
        self.checks.values().map(|(_, t)| t).sum()
    }

    /// Prints the tally and every failure (with its listed reason), then asserts that exactly
    /// the records in `not_passing` fail and that `passing` records pass.
    pub fn assert_passing(&self, protocol: &str, not_passing: &[Exception], passing: usize) {
        println!(
            "{protocol} vectors: {} / {} pass",
            self.passed(),
            self.total()
        );
        for (check, (p, t)) in &self.checks {
            println!("  {check:<10} {p:>3} / {t:>3}");
        }
        let listed = |source: &str, line: u32| {
            not_passing
                .iter()
                .find(|(s, l, _)| *s == source && *l == line)
        };
        for (source, line, why) in &self.failures {
            let known = listed(source, *line).map_or(String::new(), |(_, _, r)| format!(" [{r}]"));
            println!("  {source}:{line} {why}{known}");
        }
        let unexpected: Vec<_> = self
            .failures
            .iter()
            .filter(|(source, line, _)| listed(source, *line).is_none())
            .collect();
        assert!(
            unexpected.is_empty(),
            "unexpected failures: {unexpected:#?}"
        );
        let stale: Vec<_> = not_passing
            .iter()
            .filter(|(s, l, _)| !self.failures.iter().any(|(fs, fl, _)| fs == s && fl == l))
            .collect();
        assert!(stale.is_empty(), "listed as failing but passing: {stale:?}");
        assert_eq!(self.passed(), passing, "records passing");
    }

    /// Asserts the passes of each check kind.
    pub fn assert_passes_per_check(&self, expected: &[(&str, usize)]) {
        for (check, passes) in expected {
            assert_eq!(
                self.checks.get(*check).map(|(p, _)| *p),
                Some(*passes),
                "passes for {check}"
            );
        }
    }
}

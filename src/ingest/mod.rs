//! Ingest: the pipeline's sources. One listener per configured protocol takes device
//! connections (TCP) or requests (OsmAnd over HTTP), decodes them with the protocol crate,
//! refuses devices that are not registered, and hands each frame's positions and alarms to the
//! pipeline as one [`Submission`]. The device's acknowledgement is written only after the
//! pipeline reports the positions committed.
//!
//! A bad frame is counted and skipped; a corrupt stream closes only its own connection. Ingest
//! never touches the fence engine or the store directly.

pub mod codec;
pub mod http;
pub mod links;
pub mod mqtt;
pub mod tcp;
pub mod validate;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use ewall_protocol::{Decoded, Message, Protocol, SessionOptions};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use crate::model::{
    normalize_bssid, AlertPosition, CommitFailed, Crs, DeviceAlarm, DeviceHeard, Fix, PersonId,
    Submission, WifiSighting,
};
use crate::pipeline::Entrance;
use crate::registry::Registry;
use crate::telemetry::Metrics;
pub use validate::{IngestConfig, Unstorable};

/// One `[listeners.<protocol>]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// Whether to open this listener at all.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Reject frames with a wrong checksum or length field instead of accepting and flagging
    /// them.
    #[serde(default)]
    pub strict_checksum: bool,
    /// Close a connection after this long without a frame.
    #[serde(default = "default_idle_timeout", with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Most connections open at once on this listener; more are closed on accept.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Largest frame accepted, bytes; unset uses the protocol's maximum.
    #[serde(default)]
    pub max_frame_len: Option<usize>,
    /// Offset of the devices' clocks from UTC, `+08:00` style, when the protocol does not say;
    /// unset uses the protocol's convention (GMT+8 for JT/T 808, UTC otherwise).
    #[serde(default)]
    pub device_utc_offset: Option<String>,
}

fn yes() -> bool {
    true
}

fn default_idle_timeout() -> Duration {
    Duration::from_secs(600)
}

fn default_max_connections() -> usize {
    10_000
}

impl ListenerConfig {
    fn on(port: u16) -> Self {
        ListenerConfig {
            enabled: true,
            listen: SocketAddr::from(([0, 0, 0, 0], port)),
            strict_checksum: false,
            idle_timeout: default_idle_timeout(),
            max_connections: default_max_connections(),
            max_frame_len: None,
            device_utc_offset: None,
        }
    }

    /// Checks the values; an error names the key (relative to the section) and the problem.
    ///
    /// # Errors
    /// `(key, problem)` for the first bad value.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.max_connections == 0 {
            return Err(("max_connections", "must be at least 1".into()));
        }
        if self.idle_timeout.is_zero() {
            return Err(("idle_timeout", "must be longer than zero".into()));
        }
        if self.max_frame_len == Some(0) {
            return Err(("max_frame_len", "must be at least 1".into()));
        }
        self.utc_offset_minutes()
            .map(|_| ())
            .map_err(|e| ("device_utc_offset", e))
    }

    /// The configured device clock offset in minutes.
    ///
    /// # Errors
    /// A message when the value is not `±HH:MM`.
    pub fn utc_offset_minutes(&self) -> Result<Option<i32>, String> {
        let Some(text) = &self.device_utc_offset else {
            return Ok(None);
        };
        let bad = || format!("{text:?} is not an offset like \"+08:00\" or \"-03:30\"");
        let (sign, rest) = match text.as_bytes().first() {
            Some(b'+') => (1, &text[1..]),
            Some(b'-') => (-1, &text[1..]),
            _ => return Err(bad()),
        };
        let (h, m) = rest.split_once(':').ok_or_else(bad)?;
        let (h, m): (i32, i32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        if h > 14 || m > 59 {
            return Err(bad());
        }
        Ok(Some(sign * (h * 60 + m)))
    }

    /// Options for the sessions of this listener.
    pub fn session_options(&self) -> SessionOptions {
        SessionOptions {
            strict_checksum: self.strict_checksum,
            max_frame_len: self.max_frame_len,
            device_utc_offset_minutes: self.utc_offset_minutes().ok().flatten(),
            model: None,
        }
    }
}

/// The `[listeners]` section: one listener per protocol, on the ports tracker servers
/// conventionally use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Listeners {
    /// GT06 wristbands.
    pub gt06: ListenerConfig,
    /// JT/T 808 terminals.
    pub jt808: ListenerConfig,
    /// H02 trackers.
    pub h02: ListenerConfig,
    /// Smartwatches ("3G" protocol).
    pub watch: ListenerConfig,
    /// Phone apps over OsmAnd HTTP.
    pub osmand: ListenerConfig,
}

impl Default for Listeners {
    fn default() -> Self {
        Listeners {
            gt06: ListenerConfig::on(5023),
            jt808: ListenerConfig::on(5015),
            h02: ListenerConfig::on(5013),
            watch: ListenerConfig::on(5093),
            osmand: ListenerConfig::on(5055),
        }
    }
}

impl Listeners {
    /// The section for `protocol`; `None` for JSON, which arrives over MQTT (`[mqtt]`).
    pub fn get(&self, protocol: Protocol) -> Option<&ListenerConfig> {
        match protocol {
            Protocol::Gt06 => Some(&self.gt06),
            Protocol::Jt808 => Some(&self.jt808),
            Protocol::H02 => Some(&self.h02),
            Protocol::Watch => Some(&self.watch),
            Protocol::Osmand => Some(&self.osmand),
            Protocol::Json => None,
        }
    }
}

/// Most distinct unknown device ids remembered so each is logged at warn level only once.
const UNKNOWN_DEVICES_REMEMBERED: usize = 10_000;

/// What every listener shares: where to send work, who is registered, what to count.
pub struct IngestContext {
    /// Devices and persons.
    pub registry: Arc<Registry>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// The pipeline's entrance.
    pub submissions: Entrance,
    /// Devices reachable for downlink commands.
    pub links: Arc<links::Links>,
    /// Where connections and command answers are reported; `None` when nothing listens
    /// (connections then take no commands).
    pub link_events: Option<mpsc::Sender<links::LinkEvent>>,
    /// The plausibility rules every position is screened with.
    rules: IngestConfig,
    unknown_logged: Mutex<HashSet<String>>,
}

/// Why ingest could not hand a frame over.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The pipeline is shutting down.
    #[error("pipeline closed")]
    Closed,
    /// The store did not commit.
    #[error(transparent)]
    NotCommitted(#[from] CommitFailed),
    /// A position in the frame cannot be stored; nothing of the frame was submitted.
    #[error(transparent)]
    Unstorable(#[from] Unstorable),
}

impl IngestContext {
    /// A context feeding `submissions`.
    pub fn new(
        registry: Arc<Registry>,
        metrics: Arc<Metrics>,
        submissions: impl Into<Entrance>,
    ) -> Self {
        IngestContext {
            registry,
            metrics,
            submissions: submissions.into(),
            links: Arc::new(links::Links::default()),
            link_events: None,
            rules: IngestConfig::default(),
            unknown_logged: Mutex::new(HashSet::new()),
        }
    }

    /// Makes connections take downlink commands: they register in `links` and report to
    /// `events`.
    #[must_use]
    pub fn with_commands(
        mut self,
        links: Arc<links::Links>,
        events: mpsc::Sender<links::LinkEvent>,
    ) -> Self {
        self.links = links;
        self.link_events = Some(events);
        self
    }

    /// Reports `event` to the command dispatcher, if there is one. Waits when its queue is
    /// full rather than lose a device's answer.
    pub async fn report(&self, event: links::LinkEvent) {
        if let Some(events) = &self.link_events {
            if events.send(event).await.is_err() {
                debug!("Command dispatcher stopped; link event dropped.");
            }
        }
    }

    /// The same context screening positions with `rules` (the `[ingest]` section).
    pub fn with_rules(mut self, rules: IngestConfig) -> Self {
        self.rules = rules;
        self
    }

    /// The plausibility rules in force, for ingest paths that build fixes themselves.
    pub fn rules(&self) -> &IngestConfig {
        &self.rules
    }

    /// Counts the faults [`IngestConfig::screen`] found in a fix from `protocol`.
    pub fn count_faults(&self, protocol: Protocol, labels: &[&'static str]) {
        for label in labels {
            self.metrics
                .fixes_implausible
                .with_label_values(&[protocol.name(), label])
                .inc();
        }
    }

    /// The person a registered device belongs to; counts and logs (once per id) a refusal.
    /// `peer` is formatted only for a refusal's log line (a connection asks on every frame).
    pub fn authorize(
        &self,
        protocol: Protocol,
        device_id: &str,
        peer: impl std::fmt::Display,
    ) -> Option<PersonId> {
        if let Some(person) = self.registry.person_of(device_id) {
            return Some(person);
        }
        let peer = peer.to_string();
        let peer = peer.as_str();
        self.metrics
            .connections_refused
            .with_label_values(&[protocol.name(), "unknown_device"])
            .inc();
        let first_time = {
            let mut seen = self
                .unknown_logged
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if seen.len() >= UNKNOWN_DEVICES_REMEMBERED {
                seen.clear();
            }
            seen.insert(device_id.to_owned())
        };
        // Once per id, and a few per window however many ids a client makes up.
        let allowed = first_time
            .then(|| crate::log_limit::allow(protocol.name(), "unknown_device"))
            .flatten();
        if let Some(suppressed) = allowed {
            warn!(
                protocol = protocol.name(),
                device = device_id,
                peer,
                suppressed,
                "Unregistered device refused; register it with POST /api/v1/devices."
            );
        } else {
            debug!(
                protocol = protocol.name(),
                device = device_id,
                peer,
                "Unregistered device refused again."
            );
        }
        None
    }

    /// Counts a decoded frame.
    pub fn count_frame(&self, protocol: Protocol, decoded: &Decoded) {
        let counters = self.metrics.ingest(protocol);
        counters.frames_decoded.inc();
        if decoded.integrity.is_mismatch() {
            counters.frames_integrity_mismatch.inc();
        }
    }

    /// Counts a rejected frame.
    pub fn count_rejected(&self, protocol: Protocol, reason: &'static str) {
        self.metrics
            .frames_rejected
            .with_label_values(&[protocol.name(), reason])
            .inc();
    }

    /// Hands what a frame carried to the pipeline and waits until it is committed. Frames with
    /// neither positions nor alarms (heartbeats) only tell the pipeline the device was heard,
    /// and return without waiting. `raw` is the frame as received; every fix of the frame keeps
    /// it (shared, not copied) for the audit trail.
    ///
    /// # Errors
    /// [`SubmitError`] when the pipeline is closed, the store failed or a position cannot be
    /// stored (counted as a rejected frame); the device must not be acknowledged then.
    pub async fn submit(
        &self,
        protocol: Protocol,
        device_id: &str,
        person_id: PersonId,
        decoded: &Decoded,
        raw: bytes::Bytes,
        received_at: DateTime<Utc>,
    ) -> Result<(), SubmitError> {
        self.enqueue(protocol, device_id, person_id, decoded, raw, received_at)
            .await?
            .committed()
            .await
    }

    /// Hands what a frame carried to the pipeline and returns once the pipeline has taken it,
    /// with the [`Pending`] commit to wait for before the device is acknowledged; a connection
    /// reads on meanwhile. Frames with neither positions nor alarms have nothing to wait for.
    ///
    /// # Errors
    /// [`SubmitError::Closed`] when the pipeline is closed and [`SubmitError::Unstorable`] when
    /// a position cannot be stored (counted as a rejected frame; nothing was submitted).
    pub async fn enqueue(
        &self,
        protocol: Protocol,
        device_id: &str,
        person_id: PersonId,
        decoded: &Decoded,
        raw: bytes::Bytes,
        received_at: DateTime<Utc>,
    ) -> Result<Pending, SubmitError> {
        let converted = convert(
            protocol,
            device_id,
            person_id,
            &decoded.messages,
            decoded.integrity.is_mismatch(),
            received_at,
            &self.rules,
        );
        let (mut fixes, alarms, faults) = match converted {
            Ok(converted) => converted,
            Err(e) => {
                self.count_rejected(protocol, "unstorable_position");
                return Err(e.into());
            }
        };
        self.count_faults(protocol, &faults);
        for fix in &mut fixes {
            fix.raw = raw.clone();
        }
        let wifi = convert_wifi(device_id, person_id, &decoded.messages, received_at);
        let heard = DeviceHeard {
            device_id: device_id.to_owned(),
            person_id,
            received_at,
        };
        if fixes.is_empty() && alarms.is_empty() && wifi.is_empty() {
            // A heartbeat or status frame: nothing to commit, but the device was heard, which
            // moves its offline deadline. Nothing waits for it, and its answer does not depend
            // on it (a pipeline shutting down still lets the heartbeat be answered).
            if !decoded.messages.is_empty() {
                let heard = Submission {
                    person_id,
                    heard: Some(heard),
                    fixes,
                    alarms,
                    wifi,
                    crs: Crs::Wgs84,
                    done: None,
                };
                let sent = match self.submissions.try_send(heard) {
                    Ok(()) => Ok(()),
                    Err(mpsc::error::TrySendError::Closed(_)) => Err(()),
                    // Waiting is the exception, so boxed: a connection task's state keeps no
                    // room for the wait and the submission it holds.
                    Err(mpsc::error::TrySendError::Full(heard)) => {
                        Box::pin(self.submissions.send(heard)).await.map_err(|_| ())
                    }
                };
                if sent.is_err() {
                    debug!(
                        protocol = protocol.name(),
                        device = device_id,
                        "Pipeline closed; heartbeat not counted for the offline deadline."
                    );
                }
            }
            return Ok(Pending(None));
        }
        self.metrics
            .ingest(protocol)
            .fixes_received
            .inc_by(fixes.len() as u64);
        let (done, committed) = oneshot::channel();
        let submission = Submission {
            person_id,
            heard: Some(heard),
            fixes,
            alarms,
            wifi,
            crs: Crs::Wgs84,
            done: Some(done),
        };
        match self.submissions.try_send(submission) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(SubmitError::Closed),
            // Waiting is the exception, so boxed: a connection task's state keeps no room for
            // the wait and the submission it holds.
            Err(mpsc::error::TrySendError::Full(submission)) => {
                Box::pin(self.enter(protocol, submission)).await?;
            }
        }
        Ok(Pending(Some(committed)))
    }

    /// Hands `submission` to the pipeline, waiting for room when its entrance is full (a slow
    /// or unreachable store pushes back this far: the frame waits here, unacknowledged, and the
    /// connection reads nothing more meanwhile). Each wait is counted in
    /// `ewall_ingest_waits_total{protocol}` and logged a few times per window.
    ///
    /// # Errors
    /// [`SubmitError::Closed`] when the pipeline is shutting down.
    pub async fn enter(
        &self,
        protocol: Protocol,
        submission: Submission,
    ) -> Result<(), SubmitError> {
        let submission = match self.submissions.try_send(submission) {
            Ok(()) => return Ok(()),
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(SubmitError::Closed),
            Err(mpsc::error::TrySendError::Full(submission)) => submission,
        };
        self.metrics
            .ingest_waits
            .with_label_values(&[protocol.name()])
            .inc();
        if let Some(suppressed) = crate::log_limit::allow(protocol.name(), "pipeline_full") {
            warn!(
                protocol = protocol.name(),
                suppressed,
                "Pipeline full (the store is slow or unreachable); frames wait unacknowledged."
            );
        }
        self.submissions
            .send(submission)
            .await
            .map_err(|_| SubmitError::Closed)
    }
}

/// A submission's commit, not yet known: what [`IngestContext::enqueue`] hands back.
#[derive(Debug)]
pub struct Pending(Option<oneshot::Receiver<Result<(), CommitFailed>>>);

impl Pending {
    /// Waits for the commit (at once when there was nothing to commit).
    ///
    /// # Errors
    /// [`SubmitError::NotCommitted`] when the store failed, [`SubmitError::Closed`] when the
    /// pipeline stopped before telling.
    pub async fn committed(&mut self) -> Result<(), SubmitError> {
        match &mut self.0 {
            None => Ok(()),
            Some(receiver) => {
                let outcome = receiver.await.map_err(|_| SubmitError::Closed)?;
                self.0 = None;
                Ok(outcome?)
            }
        }
    }
}

/// The Wi-Fi access points of the messages that carry no position (those with one put them on
/// their fix).
pub fn convert_wifi(
    device_id: &str,
    person_id: PersonId,
    messages: &[Message],
    received_at: DateTime<Utc>,
) -> Vec<WifiSighting> {
    messages
        .iter()
        .filter(|m| m.position.is_none() && !m.wifi.is_empty())
        .map(|m| WifiSighting {
            device_id: device_id.to_owned(),
            person_id,
            time: received_at,
            bssids: m
                .wifi
                .iter()
                .filter_map(|ap| normalize_bssid(&ap.mac))
                .collect(),
        })
        .filter(|s| !s.bssids.is_empty())
        .collect()
}

/// The fixes, device alarms and plausibility fault labels of one frame.
pub type Converted = (Vec<Fix>, Vec<DeviceAlarm>, Vec<&'static str>);

/// Turns decoded messages into the pipeline's fixes and device alarms, each position screened
/// by `rules` ([`IngestConfig::screen`]); also returns the fault labels found, to be counted.
/// An alarm takes its fix's time and, when the fix is valid and plausible, its position.
///
/// # Errors
/// [`Unstorable`] when a position has coordinates that are not numbers.
pub fn convert(
    protocol: Protocol,
    device_id: &str,
    person_id: PersonId,
    messages: &[Message],
    integrity_mismatch: bool,
    received_at: DateTime<Utc>,
    rules: &IngestConfig,
) -> Result<Converted, Unstorable> {
    let mut fixes = Vec::new();
    let mut alarms = Vec::new();
    let mut faults = Vec::new();
    for message in messages {
        let mut position = message.position.as_ref().map(|p| Fix {
            device_id: device_id.to_owned(),
            person_id,
            time: p.time,
            received_at,
            lat: p.lat,
            lon: p.lon,
            valid: p.valid,
            accuracy_m: p.accuracy_m,
            speed_kmh: p.speed_kmh,
            course: p.course,
            altitude_m: p.altitude_m,
            satellites: p.satellites,
            hdop: p.hdop,
            source: p.source,
            battery_pct: message.status.battery_pct,
            archived: p.archived,
            integrity_mismatch,
            protocol: protocol.name().to_owned(),
            wifi_bssids: message
                .wifi
                .iter()
                .filter_map(|ap| normalize_bssid(&ap.mac))
                .collect(),
            clock_skew: false,
            implausible: None,
            raw: Default::default(),
        });
        if let Some(fix) = position.as_mut() {
            let unreadable = message
                .position
                .as_ref()
                .and_then(|p| p.unreadable_time.as_deref());
            faults.extend(rules.screen(fix, unreadable)?);
        }
        for alarm in &message.alarms {
            alarms.push(DeviceAlarm {
                device_id: device_id.to_owned(),
                person_id,
                alarm: *alarm,
                time: position.as_ref().map_or(received_at, |f| f.time),
                position: position
                    .as_ref()
                    .filter(|f| f.valid && f.implausible.is_none())
                    .map(|f| AlertPosition {
                        lat: f.lat,
                        lon: f.lon,
                        accuracy_m: f.accuracy_m,
                    }),
            });
        }
        fixes.extend(position);
    }
    Ok((fixes, alarms, faults))
}

#[cfg(test)]
mod tests {
    use ewall_protocol::{MessageKind, WifiAccessPoint};

    use super::*;

    fn ap(mac: &str) -> WifiAccessPoint {
        WifiAccessPoint {
            mac: mac.into(),
            rssi: Some(-60),
        }
    }

    #[test]
    fn access_points_go_on_the_fix_or_stand_alone_without_one() {
        let person = crate::model::new_id();
        let now = Utc::now();
        // A Wi-Fi packet without a position (GT06 0x69).
        let mut packet = Message::new(MessageKind::Wifi);
        packet.wifi = vec![ap("A4:56:02:1B:7C:E0"), ap("not a mac")];
        let sightings = convert_wifi("864717003283581", person, &[packet.clone()], now);
        assert_eq!(sightings.len(), 1);
        assert_eq!(sightings[0].bssids, ["a4:56:02:1b:7c:e0"]);
        assert_eq!(sightings[0].time, now);
        let (fixes, _, _) = convert(
            Protocol::Gt06,
            "864717003283581",
            person,
            &[packet],
            false,
            now,
            &IngestConfig::default(),
        )
        .unwrap();
        assert!(fixes.is_empty());
        // Nothing usable: no sighting.
        let mut empty = Message::new(MessageKind::Wifi);
        empty.wifi = vec![ap("zz")];
        assert!(convert_wifi("864717003283581", person, &[empty], now).is_empty());
    }
}

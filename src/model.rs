//! The plain data types the pipeline stages share: what a fix, a zone, a person and an alert
//! are. `ingest/`, `fence/` and `store/` never import one another; they meet here.
//!
//! Nothing in this file does I/O or keeps state; it only names things and converts between
//! their wire names and Rust values.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use ewall_protocol::{Alarm, PositionSource};

/// Identifies a supervised person.
pub type PersonId = Uuid;
/// Identifies a zone.
pub type ZoneId = Uuid;
/// Identifies an alert (its `seq` orders alerts; the id names one).
pub type AlertId = Uuid;

/// A new time-ordered identifier.
pub fn new_id() -> Uuid {
    Uuid::now_v7()
}

/// A MAC address as `aa:bb:cc:dd:ee:ff`, from that form in either case, with `-` separators,
/// or as 12 bare hex digits; `None` for anything else.
pub fn normalize_bssid(text: &str) -> Option<String> {
    let digits: String = text
        .trim()
        .chars()
        .filter(|c| *c != ':' && *c != '-')
        .collect();
    let separators = text.trim().len() - digits.len();
    if digits.len() != 12
        || !(separators == 0 || separators == 5)
        || !digits.chars().all(|c| c.is_ascii_hexdigit())
    {
        return None;
    }
    let lower = digits.to_ascii_lowercase();
    let pairs: Vec<&str> = (0..6).map(|i| &lower[2 * i..2 * i + 2]).collect();
    Some(pairs.join(":"))
}

/// One position of one device, attributed to the person wearing it, as it flows from ingest
/// through the fence engine into the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fix {
    /// Device identifier (IMEI, terminal number, app id) as registered.
    pub device_id: String,
    /// The person the device is bound to.
    pub person_id: PersonId,
    /// Fix time, UTC.
    pub time: DateTime<Utc>,
    /// When the server received it, UTC.
    pub received_at: DateTime<Utc>,
    /// WGS-84 latitude in degrees.
    pub lat: f64,
    /// WGS-84 longitude in degrees.
    pub lon: f64,
    /// Whether the device marked the fix valid; invalid fixes are stored but never fenced.
    pub valid: bool,
    /// Accuracy radius in metres as the device stated it, if it did.
    pub accuracy_m: Option<f64>,
    /// Speed in km/h.
    pub speed_kmh: Option<f64>,
    /// Course in degrees.
    pub course: Option<f64>,
    /// Altitude in metres.
    pub altitude_m: Option<f64>,
    /// Satellites used.
    pub satellites: Option<u8>,
    /// Horizontal dilution of precision.
    pub hdop: Option<f64>,
    /// GPS, cell towers or Wi-Fi.
    pub source: PositionSource,
    /// Battery charge, percent.
    pub battery_pct: Option<u8>,
    /// The device marked it as re-sent from its backlog.
    pub archived: bool,
    /// The frame's checksum or length field did not match (accepted leniently).
    pub integrity_mismatch: bool,
    /// Protocol it arrived on (`gt06`, `jt808`, ...).
    pub protocol: String,
    /// MAC addresses (BSSIDs, lower-case `aa:bb:cc:dd:ee:ff`) of the Wi-Fi access points the
    /// device reported seeing in the same message: evidence of being inside a zone that lists
    /// one of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub wifi_bssids: Vec<String>,
    /// The fix time was further ahead of `received_at` than `ingest.max_fix_ahead`: a device
    /// clock running ahead. The fix is evaluated as late and never becomes the newest.
    #[serde(default)]
    pub clock_skew: bool,
    /// Why the fix cannot be believed (a latitude beyond the pole, an infinite speed, a time
    /// centuries away), with the values as the device sent them; `None` for a plausible fix.
    /// Such a fix is stored as evidence but never drives the fence (see `ingest::validate`).
    #[serde(default)]
    pub implausible: Option<String>,
    /// The frame the fix was decoded from, exactly as received (a TCP frame, an OsmAnd
    /// request, an MQTT payload), kept as evidence in the audit trail. Shared, not copied, by
    /// every fix of one frame; empty where there is no frame (tests, benches).
    #[serde(skip)]
    pub raw: bytes::Bytes,
}

/// A zone as the fence engine sees it: WGS-84 geometry plus what it means to be in it.
#[derive(Debug, Clone, PartialEq)]
pub struct Zone {
    /// Zone id.
    pub id: ZoneId,
    /// Human name ("home", "Jiahe county").
    pub name: String,
    /// Must stay inside, or must keep out.
    pub kind: ZoneKind,
    /// The geometry, in WGS-84.
    pub shape: ZoneShape,
    /// Wi-Fi access points inside the zone: a device that sees one is inside.
    pub wifi: ZoneWifi,
}

/// A zone's Wi-Fi evidence (`properties.wifi`, `properties.wifi_learn_until`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneWifi {
    /// BSSIDs (lower-case `aa:bb:cc:dd:ee:ff`) of access points inside the zone, entered by an
    /// officer or learned.
    pub bssids: Vec<String>,
    /// Until when (the enrolment period) access points seen by the person's devices while
    /// definitely inside the zone are learned into `bssids`; `None`: nothing is learned.
    pub learn_until: Option<DateTime<Utc>>,
}

/// Whether a zone must be stayed in or kept out of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ZoneKind {
    /// The person must stay inside (home, town, county).
    Inclusion,
    /// The person must keep out (a victim's street, a school, an airport).
    Exclusion,
}

impl ZoneKind {
    /// The wire name.
    pub fn as_str(&self) -> &'static str {
        match self {
            ZoneKind::Inclusion => "inclusion",
            ZoneKind::Exclusion => "exclusion",
        }
    }
}

impl FromStr for ZoneKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "inclusion" => Ok(ZoneKind::Inclusion),
            "exclusion" => Ok(ZoneKind::Exclusion),
            other => Err(format!(
                "unknown zone kind {other:?}; expected \"inclusion\" or \"exclusion\""
            )),
        }
    }
}

/// Zone geometry, always WGS-84 longitude/latitude degrees.
#[derive(Debug, Clone, PartialEq)]
pub enum ZoneShape {
    /// One or more polygons, holes respected.
    Area(geo::MultiPolygon<f64>),
    /// A circle around a point.
    Circle {
        /// Centre.
        center: geo::Point<f64>,
        /// Radius in metres.
        radius_m: f64,
    },
}

/// The datum a zone was drawn in. Zones are stored converted to WGS-84; this records the source.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Crs {
    /// WGS-84, what GPS reports.
    #[default]
    Wgs84,
    /// GCJ-02, the offset datum of maps published in China.
    Gcj02,
    /// BD-09, Baidu's further offset of GCJ-02.
    Bd09,
}

impl Crs {
    /// The wire name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Crs::Wgs84 => "wgs84",
            Crs::Gcj02 => "gcj02",
            Crs::Bd09 => "bd09",
        }
    }
}

impl FromStr for Crs {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "wgs84" | "wgs-84" | "epsg:4326" => Ok(Crs::Wgs84),
            "gcj02" | "gcj-02" => Ok(Crs::Gcj02),
            "bd09" | "bd-09" => Ok(Crs::Bd09),
            other => Err(format!(
                "unknown crs {other:?}; expected \"wgs84\", \"gcj02\" or \"bd09\""
            )),
        }
    }
}

/// How closely a person is supervised; sets reporting expectations and alert severity.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum SupervisionLevel {
    /// Closest supervision.
    Strict,
    /// The usual case.
    #[default]
    Normal,
    /// Light supervision.
    Lenient,
}

impl SupervisionLevel {
    /// The wire name.
    pub fn as_str(&self) -> &'static str {
        match self {
            SupervisionLevel::Strict => "strict",
            SupervisionLevel::Normal => "normal",
            SupervisionLevel::Lenient => "lenient",
        }
    }
}

impl FromStr for SupervisionLevel {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "strict" => Ok(SupervisionLevel::Strict),
            "normal" => Ok(SupervisionLevel::Normal),
            "lenient" => Ok(SupervisionLevel::Lenient),
            other => Err(format!(
                "unknown level {other:?}; expected \"strict\", \"normal\" or \"lenient\""
            )),
        }
    }
}

/// A supervised person.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Person {
    /// Person id.
    #[schema(value_type = uuid::Uuid)]
    pub id: PersonId,
    /// Name as the supervising authority records it.
    pub name: String,
    /// Supervision level.
    pub level: SupervisionLevel,
    /// IANA time zone schedules are read in (e.g. `Asia/Shanghai`).
    pub timezone: String,
    /// When the record was created.
    pub created_at: DateTime<Utc>,
}

/// A tracker bound to a person.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Device {
    /// IMEI or other device identifier, in its canonical form (`identity::canonical`): what
    /// the device sends, without the padding zeros of its BCD form.
    pub imei: String,
    /// The person wearing it.
    #[schema(value_type = uuid::Uuid)]
    pub person_id: PersonId,
    /// When the binding was created.
    pub created_at: DateTime<Utc>,
    /// The device model (`LW4G-4B`, `AL300`, ...), when an operator set it: some models give
    /// some codes another meaning, and the protocol session reads them by it.
    #[serde(default)]
    pub model: Option<String>,
    /// The protocol the device last connected with (`gt06`, `jt808`, ...), learnt by ingest;
    /// unknown until its first connection. Commands are encoded for it.
    #[serde(default)]
    pub protocol: Option<String>,
}

/// What an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// Left an inclusion zone.
    ZoneExit,
    /// Entered an exclusion zone.
    ZoneEnter,
    /// Outside the curfew zone during its schedule.
    Curfew,
    /// No message within the offline deadline.
    Offline,
    /// Emergency button.
    Sos,
    /// Device tampered with or taken off.
    Tamper,
    /// Battery low.
    LowBattery,
    /// Not back when a leave permit ended.
    LeaveOverdue,
    /// A position jump no one could travel.
    ImplausibleJump,
    /// Two devices of one person far apart.
    DeviceSeparation,
    /// Back in compliance after a breach.
    Returned,
}

impl AlertKind {
    /// Every kind, for metrics.
    pub const ALL: [AlertKind; 11] = [
        AlertKind::ZoneExit,
        AlertKind::ZoneEnter,
        AlertKind::Curfew,
        AlertKind::Offline,
        AlertKind::Sos,
        AlertKind::Tamper,
        AlertKind::LowBattery,
        AlertKind::LeaveOverdue,
        AlertKind::ImplausibleJump,
        AlertKind::DeviceSeparation,
        AlertKind::Returned,
    ];

    /// The wire name.
    pub fn as_str(&self) -> &'static str {
        match self {
            AlertKind::ZoneExit => "zone_exit",
            AlertKind::ZoneEnter => "zone_enter",
            AlertKind::Curfew => "curfew",
            AlertKind::Offline => "offline",
            AlertKind::Sos => "sos",
            AlertKind::Tamper => "tamper",
            AlertKind::LowBattery => "low_battery",
            AlertKind::LeaveOverdue => "leave_overdue",
            AlertKind::ImplausibleJump => "implausible_jump",
            AlertKind::DeviceSeparation => "device_separation",
            AlertKind::Returned => "returned",
        }
    }

    /// The alert a device alarm becomes, if the monitoring centre needs one.
    pub fn from_alarm(alarm: Alarm) -> Option<AlertKind> {
        match alarm {
            Alarm::Sos => Some(AlertKind::Sos),
            Alarm::Tamper | Alarm::Removal => Some(AlertKind::Tamper),
            Alarm::LowBattery => Some(AlertKind::LowBattery),
            _ => None,
        }
    }
}

impl FromStr for AlertKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AlertKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown alert kind {s:?}"))
    }
}

impl fmt::Display for AlertKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How urgently an operator must look.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// For the record (a return to compliance).
    Info,
    /// Look during the shift.
    Low,
    /// Look soon.
    Medium,
    /// Look now.
    High,
    /// Act now.
    Critical,
}

impl Severity {
    /// The wire name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// Severity of an alert of `kind` for a person supervised at `level`.
    pub fn of(kind: AlertKind, level: SupervisionLevel) -> Severity {
        use SupervisionLevel::*;
        match (kind, level) {
            (AlertKind::Returned, _) => Severity::Info,
            (AlertKind::Sos, _) => Severity::Critical,
            (AlertKind::LowBattery, Strict) => Severity::Medium,
            (AlertKind::LowBattery, _) => Severity::Low,
            (_, Strict) => Severity::Critical,
            (_, Normal) => Severity::High,
            (_, Lenient) => Severity::Medium,
        }
    }
}

impl FromStr for Severity {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            Severity::Info,
            Severity::Low,
            Severity::Medium,
            Severity::High,
            Severity::Critical,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
        .ok_or_else(|| format!("unknown severity {s:?}"))
    }
}

/// Where an alert stands in the operator's workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    /// Nobody has looked yet.
    Open,
    /// An operator has seen it.
    Acknowledged,
    /// Dealt with.
    Resolved,
}

impl AlertState {
    /// The wire name.
    pub fn as_str(&self) -> &'static str {
        match self {
            AlertState::Open => "open",
            AlertState::Acknowledged => "acknowledged",
            AlertState::Resolved => "resolved",
        }
    }
}

impl FromStr for AlertState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "open" => Ok(AlertState::Open),
            "acknowledged" => Ok(AlertState::Acknowledged),
            "resolved" => Ok(AlertState::Resolved),
            other => Err(format!("unknown alert state {other:?}")),
        }
    }
}

/// Where the person was when an alert was raised.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AlertPosition {
    /// WGS-84 latitude.
    pub lat: f64,
    /// WGS-84 longitude.
    pub lon: f64,
    /// Accuracy radius used for the decision, metres.
    pub accuracy_m: Option<f64>,
}

/// An alert for the monitoring centre, as stored and as sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Alert {
    /// Alert id.
    #[schema(value_type = uuid::Uuid)]
    pub id: AlertId,
    /// Position in the alert feed, strictly increasing; 0 until the store assigns it.
    pub seq: i64,
    /// What happened.
    pub kind: AlertKind,
    /// Who it concerns.
    #[schema(value_type = uuid::Uuid)]
    pub person_id: PersonId,
    /// Which device reported it.
    pub device_id: Option<String>,
    /// The zone involved, for zone alerts.
    #[schema(value_type = Option<uuid::Uuid>)]
    pub zone_id: Option<ZoneId>,
    /// How urgent.
    pub severity: Severity,
    /// Time of the fix that raised it, UTC.
    pub time: DateTime<Utc>,
    /// When ewall raised it, UTC.
    pub raised_at: DateTime<Utc>,
    /// Where the person was.
    pub position: Option<AlertPosition>,
    /// Workflow state.
    pub state: AlertState,
    /// Raised from a fix older than the newest already evaluated (a device's backlog).
    pub late: bool,
    /// Operator's note from the last acknowledge or resolve.
    pub note: Option<String>,
    /// When it was acknowledged.
    pub acknowledged_at: Option<DateTime<Utc>>,
    /// When it was resolved.
    pub resolved_at: Option<DateTime<Utc>>,
}

/// Why positions handed to the pipeline were not committed; the device is then not
/// acknowledged and will resend.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("positions not committed: {0}")]
pub struct CommitFailed(pub String);

/// An alarm a device raised itself (SOS button, strap cut, battery low).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceAlarm {
    /// Device that raised it.
    pub device_id: String,
    /// The person wearing the device.
    pub person_id: PersonId,
    /// What the device reported.
    pub alarm: Alarm,
    /// Time the device gave the alarm (its fix time, or receipt time without one).
    pub time: DateTime<Utc>,
    /// Where the device was, when the message carried a position.
    pub position: Option<AlertPosition>,
}

/// Wi-Fi access points a device reported in a message that carried no position: evidence
/// for the fence engine only, not a position to store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WifiSighting {
    /// Device that saw them.
    pub device_id: String,
    /// The person wearing the device.
    pub person_id: PersonId,
    /// When the message was received (such messages carry no fix time of their own).
    pub time: DateTime<Utc>,
    /// BSSIDs seen, normalised as in [`Fix::wifi_bssids`].
    pub bssids: Vec<String>,
}

/// What ingest hands to the pipeline for one frame or request: everything one device said,
/// in order, with the notice ingest waits on before acknowledging the device.
#[derive(Debug)]
pub struct Submission {
    /// The person the device belongs to; the pipeline routes on it.
    pub person_id: PersonId,
    /// Positions, in the device's order.
    pub fixes: Vec<Fix>,
    /// Alarms the device raised.
    pub alarms: Vec<DeviceAlarm>,
    /// Wi-Fi access points reported in messages without a position (GT06 Wi-Fi packets).
    pub wifi: Vec<WifiSighting>,
    /// The datum of the coordinates in `fixes` and `alarms`. Ingest passes them on as the device
    /// sent them; the pipeline converts anything but WGS-84 before the fence engine or the
    /// store sees it, with the conversion zones go through, so a [`Fix`] past the pipeline's
    /// entrance is always WGS-84.
    pub crs: Crs,
    /// Told once everything above is committed (or failed to be).
    pub done: Option<tokio::sync::oneshot::Sender<Result<(), CommitFailed>>>,
}

/// Identifies a downlink command.
pub type CommandId = Uuid;

/// Where a downlink command is in its life: `pending` → `sent` → `acknowledged` | `failed` |
/// `expired` (a pending command can also fail or expire without being sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CommandStatus {
    /// Stored, not yet written to the device (it is offline, or its protocol is unknown).
    Pending,
    /// Written to the device's connection; waiting for its answer.
    Sent,
    /// The device answered that it did it.
    Acknowledged,
    /// It cannot be done: the device refused it, or its protocol cannot carry it.
    Failed,
    /// Its expiry passed before the device answered.
    Expired,
}

impl CommandStatus {
    /// The wire and database name.
    pub fn as_str(&self) -> &'static str {
        match self {
            CommandStatus::Pending => "pending",
            CommandStatus::Sent => "sent",
            CommandStatus::Acknowledged => "acknowledged",
            CommandStatus::Failed => "failed",
            CommandStatus::Expired => "expired",
        }
    }

    /// Whether the command can still move (pending or sent).
    pub fn is_open(&self) -> bool {
        matches!(self, CommandStatus::Pending | CommandStatus::Sent)
    }
}

impl FromStr for CommandStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "pending" => CommandStatus::Pending,
            "sent" => CommandStatus::Sent,
            "acknowledged" => CommandStatus::Acknowledged,
            "failed" => CommandStatus::Failed,
            "expired" => CommandStatus::Expired,
            other => return Err(format!("unknown command status {other:?}")),
        })
    }
}

/// A downlink command as stored and as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeviceCommand {
    /// Command id.
    #[schema(value_type = uuid::Uuid)]
    pub id: CommandId,
    /// Store order; also the tag the protocol encodes (server flag, serial) to match the answer.
    #[serde(skip)]
    pub seq: i64,
    /// The device it is for.
    pub device_id: String,
    /// `message`, `vibrate`, `set_interval` or `locate_now`.
    #[serde(rename = "type")]
    #[schema(value_type = crate::api::commands::CommandType)]
    pub kind: String,
    /// The text of a message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The interval of a set_interval, seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval_s: Option<u32>,
    /// Where it is.
    pub status: CommandStatus,
    /// The protocol it was sent with, once sent.
    pub protocol: Option<String>,
    /// What the device's answer carries to name it, once sent.
    #[serde(skip)]
    pub reference: Option<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it expires unless answered.
    pub expires_at: DateTime<Utc>,
    /// When it was written to the device.
    pub sent_at: Option<DateTime<Utc>>,
    /// When it was acknowledged, failed or expired.
    pub completed_at: Option<DateTime<Utc>>,
    /// What the device answered, when it said more than "done".
    pub reply: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
}

/// What an entry of the event feed records. Every alert raised, every change of an alert's
/// state and every exit-entry filing event (报备) is one entry, in the order it was committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum EventKind {
    /// A new alert (`alert.raised`); the event's id is the alert's id and its seq the alert's.
    AlertRaised,
    /// An alert moved to this state (`alert.acknowledged`, `alert.resolved`, ...).
    AlertChanged(AlertState),
    /// A person was enrolled under supervision (`person.enrolled`).
    PersonEnrolled,
    /// A person was released from supervision and removed (`person.released`).
    PersonReleased,
    /// A monitoring order started (`order.started`).
    OrderStarted,
    /// A monitoring order ended (`order.ended`).
    OrderEnded,
}

impl EventKind {
    /// Whether the event concerns an alert (the MQTT, webhook and SSE channels carry only these).
    pub fn is_alert(&self) -> bool {
        matches!(self, EventKind::AlertRaised | EventKind::AlertChanged(_))
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventKind::AlertRaised => f.write_str("alert.raised"),
            EventKind::AlertChanged(state) => write!(f, "alert.{}", state.as_str()),
            EventKind::PersonEnrolled => f.write_str("person.enrolled"),
            EventKind::PersonReleased => f.write_str("person.released"),
            EventKind::OrderStarted => f.write_str("order.started"),
            EventKind::OrderEnded => f.write_str("order.ended"),
        }
    }
}

impl FromStr for EventKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "alert.raised" => Ok(EventKind::AlertRaised),
            "person.enrolled" => Ok(EventKind::PersonEnrolled),
            "person.released" => Ok(EventKind::PersonReleased),
            "order.started" => Ok(EventKind::OrderStarted),
            "order.ended" => Ok(EventKind::OrderEnded),
            other => other
                .strip_prefix("alert.")
                .and_then(|state| state.parse().ok())
                .map(EventKind::AlertChanged)
                .ok_or_else(|| format!("unknown event kind {other:?}")),
        }
    }
}

impl From<EventKind> for String {
    fn from(kind: EventKind) -> String {
        kind.to_string()
    }
}

impl TryFrom<String> for EventKind {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// One entry of the event feed, as stored and as served by `GET /integration/feed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Event {
    /// Position in the feed, strictly increasing, shared with alert `seq`s.
    pub seq: i64,
    /// The event's id (the alert id for `alert.raised`); consumers dedupe by it.
    pub id: Uuid,
    /// What happened: `alert.raised`, `alert.acknowledged`, `alert.resolved`,
    /// `person.enrolled`, `person.released`, `order.started`, `order.ended`.
    #[schema(value_type = String, example = "alert.raised")]
    pub kind: EventKind,
    /// Whom it concerns.
    #[schema(value_type = uuid::Uuid)]
    pub person_id: PersonId,
    /// The alert, for alert events.
    #[schema(value_type = Option<uuid::Uuid>)]
    pub alert_id: Option<AlertId>,
    /// When the change was recorded, UTC.
    pub time: DateTime<Utc>,
    /// The record as it was at that moment: the alert's JSON for alert events, the person's
    /// for filing events.
    pub data: serde_json::Value,
}

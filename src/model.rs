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
    /// Whom the zone applies to besides the persons it is assigned to one by one.
    pub scope: ZoneScope,
    /// When the zone is in force (`properties.schedule`); `None`: always. A scheduled
    /// inclusion zone is a curfew.
    pub schedule: Option<crate::schedule::Schedule>,
}

/// Whom a zone applies to (`properties.assigned_to`). A shared zone (everyone, or every
/// person at a level) is defined once and found for each fix through the catalog's R-tree of
/// shared zones rather than listed per person.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ZoneScope {
    /// The persons it is assigned to (`persons/{id}/zones`, or listed when it was created).
    #[default]
    Persons,
    /// Every supervised person (a border crossing, an airport).
    Everyone,
    /// Every person supervised at this level.
    Level(SupervisionLevel),
}

impl ZoneScope {
    /// Whether the zone is shared (applies without a per-person assignment).
    pub fn is_shared(&self) -> bool {
        !matches!(self, ZoneScope::Persons)
    }

    /// Whether a shared zone applies to a person at `level` (always `false` for per-person
    /// zones, which the assignments decide).
    pub fn covers(&self, level: SupervisionLevel) -> bool {
        match self {
            ZoneScope::Persons => false,
            ZoneScope::Everyone => true,
            ZoneScope::Level(l) => *l == level,
        }
    }
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
    /// No message within the offline deadline (lost supervision, 脱管).
    Offline,
    /// No device bound: nothing can supervise the person.
    Unsupervised,
    /// Emergency button.
    Sos,
    /// Device tampered with or taken off.
    Tamper,
    /// Battery low.
    LowBattery,
    /// The wearer fell (the device's fall detector).
    Fall,
    /// Not back when a leave permit ended.
    LeaveOverdue,
    /// A position jump no one could travel.
    ImplausibleJump,
    /// Two devices of one person far apart.
    DeviceSeparation,
    /// A monitoring order ends soon.
    OrderExpiring,
    /// A check-in window closed without a check-in.
    MissedCheckin,
    /// Back in compliance after a breach.
    Returned,
    /// A border-control check flagged the person (reported by the police entry-exit
    /// integration, `POST /integration/border-hits`).
    BorderHit,
}

impl AlertKind {
    /// Every kind, for metrics.
    pub const ALL: [AlertKind; 16] = [
        AlertKind::ZoneExit,
        AlertKind::ZoneEnter,
        AlertKind::Curfew,
        AlertKind::Offline,
        AlertKind::Unsupervised,
        AlertKind::OrderExpiring,
        AlertKind::MissedCheckin,
        AlertKind::Sos,
        AlertKind::Tamper,
        AlertKind::LowBattery,
        AlertKind::Fall,
        AlertKind::LeaveOverdue,
        AlertKind::ImplausibleJump,
        AlertKind::DeviceSeparation,
        AlertKind::Returned,
        AlertKind::BorderHit,
    ];

    /// The wire name.
    pub fn as_str(&self) -> &'static str {
        match self {
            AlertKind::ZoneExit => "zone_exit",
            AlertKind::ZoneEnter => "zone_enter",
            AlertKind::Curfew => "curfew",
            AlertKind::Offline => "offline",
            AlertKind::Unsupervised => "unsupervised",
            AlertKind::OrderExpiring => "order_expiring",
            AlertKind::MissedCheckin => "missed_checkin",
            AlertKind::Sos => "sos",
            AlertKind::Tamper => "tamper",
            AlertKind::LowBattery => "low_battery",
            AlertKind::Fall => "fall",
            AlertKind::LeaveOverdue => "leave_overdue",
            AlertKind::ImplausibleJump => "implausible_jump",
            AlertKind::DeviceSeparation => "device_separation",
            AlertKind::Returned => "returned",
            AlertKind::BorderHit => "border_hit",
        }
    }

    /// Whether an alert of this kind goes to the operators' queue. An `implausible_jump` is
    /// recorded for the record and born closed: a jump no one could travel is a positioning
    /// fault, not something the person did.
    pub fn needs_handling(&self) -> bool {
        !matches!(self, AlertKind::ImplausibleJump)
    }

    /// The alert a device alarm becomes, if the monitoring centre needs one: `tamper` for a
    /// strap cut or case opened (`Tamper`), a wristband taken off (`Removal`) and its power
    /// cut (`PowerCut`: a cut supply is how a tracker is silenced); the rest (vibration,
    /// overspeed, the device's own geofences, switching off) are kept with the position only.
    pub fn from_alarm(alarm: Alarm) -> Option<AlertKind> {
        match alarm {
            Alarm::Sos => Some(AlertKind::Sos),
            Alarm::Tamper | Alarm::Removal | Alarm::PowerCut => Some(AlertKind::Tamper),
            Alarm::LowBattery => Some(AlertKind::LowBattery),
            Alarm::Fall => Some(AlertKind::Fall),
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
            (AlertKind::Sos | AlertKind::Fall | AlertKind::BorderHit, _) => Severity::Critical,
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

/// Where an alert stands in the monitoring centre's handling chain: open → acknowledged →
/// verified → disposed → closed, one step at a time and never back.
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
pub enum AlertState {
    /// Nobody has looked yet.
    Open,
    /// An operator has seen it and taken it on.
    Acknowledged,
    /// The operator has checked what happened (called the person, looked at the track).
    Verified,
    /// The operator has decided what it was and what was done ([`Disposition`]).
    Disposed,
    /// Followed up and finished; nothing more is done with it. Alerts that need no handling
    /// (an `implausible_jump`, a repeat of an alert still being handled) are born closed.
    Closed,
}

impl AlertState {
    /// Every state, in chain order.
    pub const ALL: [AlertState; 5] = [
        AlertState::Open,
        AlertState::Acknowledged,
        AlertState::Verified,
        AlertState::Disposed,
        AlertState::Closed,
    ];

    /// The wire name.
    pub fn as_str(&self) -> &'static str {
        match self {
            AlertState::Open => "open",
            AlertState::Acknowledged => "acknowledged",
            AlertState::Verified => "verified",
            AlertState::Disposed => "disposed",
            AlertState::Closed => "closed",
        }
    }

    /// The state one step further along the chain (`None` once closed).
    pub fn next(&self) -> Option<AlertState> {
        match self {
            AlertState::Open => Some(AlertState::Acknowledged),
            AlertState::Acknowledged => Some(AlertState::Verified),
            AlertState::Verified => Some(AlertState::Disposed),
            AlertState::Disposed => Some(AlertState::Closed),
            AlertState::Closed => None,
        }
    }
}

impl FromStr for AlertState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AlertState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| format!("unknown alert state {s:?}"))
    }
}

impl fmt::Display for AlertState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an operator decided an alert was, when disposing of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Disposition {
    /// Nothing happened: a positioning error, a device fault. Counts towards the false-alarm
    /// rate.
    FalseAlarm,
    /// Real; the person was warned.
    Warned,
    /// Real; handed on (to the supervising officer, the police).
    Escalated,
    /// Real, but the person came back before anything was done.
    ReturnedByItself,
}

impl Disposition {
    /// Every disposition.
    pub const ALL: [Disposition; 4] = [
        Disposition::FalseAlarm,
        Disposition::Warned,
        Disposition::Escalated,
        Disposition::ReturnedByItself,
    ];

    /// The wire name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Disposition::FalseAlarm => "false_alarm",
            Disposition::Warned => "warned",
            Disposition::Escalated => "escalated",
            Disposition::ReturnedByItself => "returned_by_itself",
        }
    }
}

impl FromStr for Disposition {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Disposition::ALL
            .into_iter()
            .find(|d| d.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown disposition {s:?}; expected false_alarm, warned, escalated or \
                     returned_by_itself"
                )
            })
    }
}

/// Who took a step on an alert: the API token used, by id and label. The service itself,
/// closing an alert that needs no handling, has no token id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Actor {
    /// The token's id; `null` for the service itself.
    #[schema(value_type = Option<uuid::Uuid>)]
    pub token_id: Option<Uuid>,
    /// The token's label as it was at the time (`ewall` for the service itself).
    pub label: Option<String>,
}

impl Actor {
    /// The service itself.
    pub fn service() -> Actor {
        Actor {
            token_id: None,
            label: Some("ewall".into()),
        }
    }
}

/// One step taken on an alert, as recorded in its history (`GET /alerts/{id}/actions`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AlertAction {
    /// The alert.
    #[schema(value_type = uuid::Uuid)]
    pub alert_id: AlertId,
    /// The state it was in before.
    pub previous_state: AlertState,
    /// The state it moved to.
    pub state: AlertState,
    /// The disposition, on the step to `disposed`.
    pub disposition: Option<Disposition>,
    /// Who.
    pub actor: Actor,
    /// When, UTC.
    pub at: DateTime<Utc>,
    /// What the operator wrote.
    pub note: Option<String>,
    /// The `alert.<state>` event the step appended to the feed (for an alert born closed, its
    /// `alert.raised`); `null` for steps recorded before the chain existed.
    pub event_seq: Option<i64>,
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
    /// Where it stands in the handling chain.
    pub state: AlertState,
    /// Raised from a fix older than the newest already evaluated (a device's backlog).
    pub late: bool,
    /// The note of the latest step that had one (every note is kept in the alert's actions).
    pub note: Option<String>,
    /// What the operator decided it was, once disposed.
    #[serde(default)]
    pub disposition: Option<Disposition>,
    /// When it was acknowledged.
    pub acknowledged_at: Option<DateTime<Utc>>,
    /// When it was verified.
    #[serde(default)]
    pub verified_at: Option<DateTime<Utc>>,
    /// When it was disposed.
    #[serde(default)]
    pub disposed_at: Option<DateTime<Utc>>,
    /// When it was closed.
    #[serde(default)]
    pub closed_at: Option<DateTime<Utc>>,
    /// For an alert raised while an alert of the same person, kind and zone was still being
    /// handled: that alert. A repeat is born closed; the first alert is the one handled.
    #[serde(default)]
    #[schema(value_type = Option<uuid::Uuid>)]
    pub repeat_of: Option<AlertId>,
    /// The border-control check that raised a `border_hit`; absent on every other kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub border: Option<BorderCheck>,
}

/// The border-control check behind a `border_hit` alert, as the checking authority reported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BorderCheck {
    /// The crossing or port where the person was checked.
    pub port: String,
    /// The checking authority's reference for the check; a border hit is raised once per
    /// reference.
    pub reference: String,
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

/// A device was heard from: the last message received, of any kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceHeard {
    /// The device.
    pub device_id: String,
    /// The person it is bound to.
    pub person_id: PersonId,
    /// When the message arrived, by the server's clock.
    pub received_at: DateTime<Utc>,
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
    /// The device the frame came from and when it arrived: any frame (a heartbeat, a status
    /// report, a position) counts for the offline deadline, so ingest sends even a frame that
    /// carried nothing else.
    pub heard: Option<DeviceHeard>,
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
    /// An alert moved to this state (`alert.acknowledged`, `alert.verified`, `alert.disposed`,
    /// `alert.closed`).
    AlertChanged(AlertState),
    /// An alert resolved before the handling chain existed (`alert.resolved`): kept in the feed
    /// as it was sent, never appended any more.
    AlertResolved,
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
        matches!(
            self,
            EventKind::AlertRaised | EventKind::AlertChanged(_) | EventKind::AlertResolved
        )
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventKind::AlertRaised => f.write_str("alert.raised"),
            EventKind::AlertChanged(state) => write!(f, "alert.{}", state.as_str()),
            EventKind::AlertResolved => f.write_str("alert.resolved"),
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
            "alert.resolved" => Ok(EventKind::AlertResolved),
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
    /// What happened: `alert.raised`, `alert.acknowledged`, `alert.verified`, `alert.disposed`,
    /// `alert.closed` (`alert.resolved` before the handling chain), `person.enrolled`,
    /// `person.released`, `order.started`, `order.ended`.
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

/// Identifies a leave permit.
pub type LeaveId = Uuid;
/// Identifies a monitoring order.
pub type OrderId = Uuid;

/// A leave permit (请销假): the named zones are suspended for a window, and the person must
/// be back when it ends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LeavePermit {
    /// Leave id.
    #[schema(value_type = uuid::Uuid)]
    pub id: LeaveId,
    /// Whose leave.
    #[schema(value_type = uuid::Uuid)]
    pub person_id: PersonId,
    /// Start of the window, UTC.
    pub from: DateTime<Utc>,
    /// End of the window as granted, UTC.
    pub to: DateTime<Utc>,
    /// The zones suspended during the window.
    #[schema(value_type = Vec<uuid::Uuid>)]
    pub zone_ids: Vec<ZoneId>,
    /// Why it was granted.
    pub reason: String,
    /// Who approved it.
    pub approved_by: String,
    /// When it was recorded.
    pub created_at: DateTime<Utc>,
    /// When it was cancelled: the zones were never (or are no longer) suspended.
    pub cancelled_at: Option<DateTime<Utc>>,
    /// When it was ended early (the person reported back).
    pub ended_at: Option<DateTime<Utc>>,
}

impl LeavePermit {
    /// When the window ends: `to`, or earlier when the leave was ended early.
    pub fn end(&self) -> DateTime<Utc> {
        self.ended_at.map_or(self.to, |ended| ended.min(self.to))
    }

    /// Whether `zone` is suspended for a fix at `time`.
    pub fn suspends(&self, zone: &ZoneId, time: DateTime<Utc>) -> bool {
        self.cancelled_at.is_none()
            && self.from <= time
            && time < self.end()
            && self.zone_ids.contains(zone)
    }
}

/// A monitoring order: the approval, on a statutory ground, of electronic monitoring for at most
/// 92 days. With `[supervision] require_order`, the rules run only under a current one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MonitoringOrder {
    /// Order id.
    #[schema(value_type = uuid::Uuid)]
    pub id: OrderId,
    /// Whom it concerns.
    #[schema(value_type = uuid::Uuid)]
    pub person_id: PersonId,
    /// The statutory ground, as the approving authority states it.
    pub ground: String,
    /// Who approved it.
    pub approved_by: String,
    /// Monitoring may start at, UTC.
    pub from: DateTime<Utc>,
    /// Monitoring must stop at, UTC.
    pub to: DateTime<Utc>,
    /// When it was recorded.
    pub created_at: DateTime<Utc>,
    /// When monitoring under it started (`order.started`).
    pub started_at: Option<DateTime<Utc>>,
    /// When monitoring under it stopped (`order.ended`).
    pub ended_at: Option<DateTime<Utc>>,
}

impl MonitoringOrder {
    /// Whether monitoring under it has started and not stopped.
    pub fn is_current(&self) -> bool {
        self.started_at.is_some() && self.ended_at.is_none()
    }
}

/// How a person checked in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CheckinMethod {
    /// At a check-in kiosk (face or fingerprint).
    Kiosk,
    /// In the supervision app.
    App,
    /// In person, with an officer.
    Office,
}

impl CheckinMethod {
    /// The wire name.
    pub fn as_str(&self) -> &'static str {
        match self {
            CheckinMethod::Kiosk => "kiosk",
            CheckinMethod::App => "app",
            CheckinMethod::Office => "office",
        }
    }
}

impl FromStr for CheckinMethod {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "kiosk" => Ok(CheckinMethod::Kiosk),
            "app" => Ok(CheckinMethod::App),
            "office" => Ok(CheckinMethod::Office),
            other => Err(format!(
                "unknown check-in method {other:?}; expected kiosk, app or office"
            )),
        }
    }
}

/// A check-in: the person reported at a time, by a method, perhaps from a place.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Checkin {
    /// Check-in id.
    #[schema(value_type = uuid::Uuid)]
    pub id: Uuid,
    /// Who checked in.
    #[schema(value_type = uuid::Uuid)]
    pub person_id: PersonId,
    /// When, UTC.
    pub time: DateTime<Utc>,
    /// How.
    pub method: CheckinMethod,
    /// Where, when the kiosk or app gave a position (WGS-84).
    pub position: Option<AlertPosition>,
    /// When it was recorded.
    pub created_at: DateTime<Utc>,
}

//! The fence engine: checks every fix against the person's zones and turns definite breaches
//! into `zone_exit` / `zone_enter` / `curfew` / `returned` transitions.
//!
//! Role in the pipeline: ingest decodes fixes; the pipeline routes each person's fixes to one
//! of several [`FenceEngine`] shards ([`shard_for`]), each run in a thin async task; the
//! transitions it returns become alerts in the store's outbox. Zones and assignments live in a
//! shared, immutable [`ZoneCatalog`] that the pipeline rebuilds and swaps when they change.
//! This module is plain synchronous code: no I/O, no clock, no imports from ingest, store or
//! api.
//!
//! | file | holds |
//! | --- | --- |
//! | `mod.rs` | [`FenceEngine`], [`FenceConfig`] (accuracy assumptions), [`Transition`] |
//! | `state.rs` | per-person state: confirmation runs, open breaches, late runs, per-device recency |
//! | `levels.rs` | [`LevelsConfig`]: confirmation, severity, reporting interval, offline deadline and low-battery threshold per supervision level |
//! | `index.rs` | [`ZoneCatalog`]: prepared zones, R-trees of envelopes (all zones, shared zones), assignments |
//! | `prepared.rs` | [`PreparedZone`]: grid + segment R-tree for exact tests in metres |
//! | `geodesy.rs` | metres from degrees (local scale, haversine) |
//! | `zone.rs` | GeoJSON in and out, validation ([`ZoneError`]) |
//! | `crs.rs` | GCJ-02 / BD-09 → WGS-84 |
//! | `batch.rs` | [`run_batch`], the engine of `ewall fence` |
//!
//! # Semantics (DESIGN.md, "Fencing semantics")
//!
//! * Each fix gets an accuracy radius `r` ([`FenceConfig::accuracy_radius_m`]). Against each of
//!   the person's zones it is *inside* (by more than `r`), *outside* (by more than `r`) or
//!   *uncertain*. Uncertain changes nothing: it neither counts towards a breach nor resets the
//!   count. Invalid fixes (`valid == false`, flagged `implausible` by ingest, or coordinates
//!   that are not numbers in range) change nothing at all, not even the device's newest time.
//! * A fix whose `wifi_bssids` include one of a zone's access points (`properties.wifi`) is
//!   *inside* that zone whatever its coordinates say, and for an inclusion zone, for
//!   `wifi_hold_secs` either side of it, no GPS fix can count towards a breach of the zone. A
//!   message with access points but no position (a GT06 Wi-Fi packet) counts the same way for
//!   inclusion zones ([`FenceEngine::observe_wifi`]): a wristband indoors at home that
//!   sees the home router is at home, however far multipath throws its GPS fix. During a zone's
//!   enrolment window (`properties.wifi_learn_until`), access points that live fixes
//!   definitely inside the zone report are learned: after 5 such sightings spanning 12 hours,
//!   and only if never seen on a fix definitely outside (a visitor's hotspot or a neighbour's
//!   router that reaches the street is never learned). [`FenceEngine::take_learned_wifi`]
//!   hands them to the pipeline, which adds them to the zone.
//! * A breach (`zone_exit` for an inclusion zone, `zone_enter` for an exclusion zone) is raised
//!   once a run of consecutive definite violating fixes has both `confirm_fixes` fixes and
//!   `confirm_seconds` from its first fix to the current one (per supervision level, see
//!   [`LevelsConfig`]), once per episode; the first definite compliant fix after it ends the
//!   episode with one `returned`; a definite compliant fix before that resets the run silently.
//! * Live or late is decided per device: a fix whose time is not after the newest fix already
//!   evaluated for *its device* is late; it is checked, a breach found in a run of late fixes is
//!   raised with `late = true`, and it never moves the current state. A late fix within a live
//!   episode (open, pending, or the last one closed) is part of it and raises nothing. See
//!   `state.rs`. A fix with exactly the newest time counts as late, so a duplicate cannot
//!   confirm a breach by itself. A fix flagged `clock_skew` by ingest (dated ahead of its
//!   receipt) is always late, so it never becomes the device's newest.
//! * A live fix implying a speed above `max_speed_kmh` from the device's last accepted fix
//!   (beyond both accuracy radii) is an implausible jump: it moves no fence state and raises one
//!   `implausible_jump` event per device and hour at most. If the next fix is plausible from the
//!   jumped-to place (and not from the old one), the device really moved and it is accepted.
//!   Late fixes are not speed-checked (their neighbours in time are not at hand).
//! * Two devices of one person whose accepted fixes are at most `separation_window_secs` apart
//!   in time and definitely farther apart than `separation_m` (distance minus both radii) are
//!   separated; a pair is together again when its distance is within `separation_m`. A run of
//!   separated fixes is confirmed like a breach and raises one `device_separation` per
//!   episode; the episode ends silently (no `returned`).
//! * The zones of a person are those assigned to them and the shared zones of their level
//!   ([`ZoneScope`](crate::model::ZoneScope): everyone, or one level), which the catalog finds
//!   per fix through an R-tree of its own. A level change takes effect on the next fix: the
//!   state of zones no longer applying is dropped.
//! * A zone with a schedule ([`crate::schedule`]) applies only while the fix's time, read in
//!   the person's time zone, lies in one of its windows; outside them the fix complies with
//!   the zone (a run under way is reset, an open episode ends with `returned`). A breach of a
//!   scheduled inclusion zone is a `curfew` rather than a `zone_exit`.
//! * A zone removed from the person's assignment loses its state; a newly assigned zone starts
//!   unknown, and the first definite fixes establish it (a person already outside a freshly
//!   assigned inclusion zone gets a `zone_exit` once the run is confirmed). A zone whose
//!   geometry changes keeps its state; one whose kind changes starts over. Persons with no zone
//!   keep no state at all (no speed or separation checks either).
//!
//! # Accuracy radius
//!
//! The first of these that applies (all figures are [`FenceConfig`] fields):
//!
//! 1. `accuracy_m` as the device stated it, when it is a positive number. Phones and most
//!    trackers that report it give a 68 % (one-sigma) radius; the confirmation count, not a
//!    bigger radius, is what protects against the one fix in three that falls outside it.
//! 2. For GPS fixes with an HDOP: `hdop × hdop_factor_m` (10 m). Horizontal error ≈ HDOP ×
//!    UERE, and the user-equivalent range error of a single-frequency consumer receiver is about
//!    5 m; doubling it gives the ≈ 95 % (2DRMS) radius, conservative because it is a guess.
//! 3. For GPS fixes with a satellite count: the `satellite_radii_m` table (8 or more: 15 m,
//!    6–7: 25 m, 4–5: 50 m, fewer than 4, a 2D fix at best: 150 m).
//! 4. By source: GPS 30 m (a wrist device in town, no quality data), Wi-Fi 50 m (Wi-Fi
//!    positioning is good to tens of metres), cell towers (LBS) 1,000 m (a cell fix is hundreds
//!    of metres in cities and several kilometres in the countryside; a cell fix should not be
//!    able to prove someone left a small zone).
//!
//! The result is never less than `min_accuracy_m` (5 m): no consumer GNSS fix in a wristband is
//! better than that, whatever it claims, and the real boundaries converted from GCJ-02 carry a
//! few metres of their own error.

mod batch;
pub mod crs;
#[cfg(test)]
mod fixtures;
mod geodesy;
mod index;
mod levels;
mod prepared;
mod state;
mod zone;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use batch::{check_points, parse_points, run_batch, BatchReport, BatchZone, PointsError};
pub use geodesy::{ellipsoidal_distance_m, haversine_m, LocalScale};
pub use index::{envelope_entry, CatalogWarning, ZoneCatalog, ZoneEnvelope, PERSON_SCAN_MAX};
pub use levels::{CheckinWindow, Confirmation, LevelConfig, LevelsConfig};
pub use prepared::{Placement, PreparedZone, BOUNDARY_TOLERANCE_M};
pub use state::{Recency, ZoneStatus};
pub use zone::{
    parse_zone_collection, zone_to_feature, ZoneError, ZoneProperties, ZoneSpec, MAX_RADIUS_M,
    MAX_VERTICES, MAX_WIFI,
};

use crate::model::{
    AlertKind, AlertPosition, Fix, PersonId, PositionSource, SupervisionLevel, ZoneId, ZoneKind,
};
use state::{Event, PersonState, Seen, Verdict};

/// Errors of the fence module's fallible entry points (zone parsing, the batch check).
#[derive(Debug, Error)]
pub enum FenceError {
    /// A zone was rejected.
    #[error(transparent)]
    Zone(#[from] ZoneError),
    /// The points file was rejected.
    #[error(transparent)]
    Points(#[from] PointsError),
}

/// The engine's settings (`[fence]`): the accuracy assumed for fixes that do not state one, the
/// speed, separation and Wi-Fi rules (see the module docs for the reasoning behind each
/// default). How many fixes and seconds confirm a breach is per level, in [`LevelsConfig`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FenceConfig {
    /// Floor on any accuracy radius, metres.
    pub min_accuracy_m: f64,
    /// Metres of radius per unit of HDOP (UERE × 2), for GPS fixes without a stated accuracy.
    pub hdop_factor_m: f64,
    /// `[min_satellites, radius_m]` pairs, for GPS fixes with neither accuracy nor HDOP: the
    /// first pair whose count the fix reaches gives the radius.
    pub satellite_radii_m: Vec<(u8, f64)>,
    /// Radius for a GPS fix with no quality data at all, metres.
    pub gps_default_m: f64,
    /// Radius for a Wi-Fi fix without a stated accuracy, metres.
    pub wifi_default_m: f64,
    /// Radius for a cell-tower (LBS) fix without a stated accuracy, metres.
    pub lbs_default_m: f64,
    /// Longest gap between two late fixes that still continue one late run, seconds.
    pub late_run_max_gap_secs: u32,
    /// Engines the pipeline runs in parallel, persons split among them by id; 0 means one
    /// per CPU core.
    pub shards: usize,
    /// Fastest believable movement between two fixes of one device, km/h; a fix implying more
    /// (beyond both accuracy radii) is an implausible jump and moves no fence state.
    pub max_speed_kmh: f64,
    /// Two devices of one person definitely farther apart than this, metres, are separated.
    pub separation_m: f64,
    /// Longest time between the fixes of two devices that are compared for separation, seconds.
    pub separation_window_secs: u32,
    /// A violating GPS fix within this many seconds of a frame in which the device saw one of
    /// the zone's Wi-Fi access points cannot count towards a breach of that zone.
    pub wifi_hold_secs: u32,
    /// IANA time zone of a person created without one, in which their zone schedules are
    /// read (`Asia/Shanghai`: the deployments this is built for are in China).
    pub default_timezone: String,
}

impl Default for FenceConfig {
    fn default() -> Self {
        FenceConfig {
            min_accuracy_m: 5.0,
            hdop_factor_m: 10.0,
            satellite_radii_m: vec![(8, 15.0), (6, 25.0), (4, 50.0), (0, 150.0)],
            gps_default_m: 30.0,
            wifi_default_m: 50.0,
            lbs_default_m: 1_000.0,
            late_run_max_gap_secs: 1_800,
            shards: 0,
            max_speed_kmh: 250.0,
            separation_m: 300.0,
            separation_window_secs: 60,
            wifi_hold_secs: 120,
            default_timezone: "Asia/Shanghai".into(),
        }
    }
}

impl FenceConfig {
    /// Checks the values; an error names the key (within `[fence]`) and the problem.
    ///
    /// # Errors
    /// `(key, problem)` for the first value out of range.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let positive = |key: &'static str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err((key, format!("must be a positive number of metres, not {v}")))
            }
        };
        positive("min_accuracy_m", self.min_accuracy_m)?;
        if !(self.max_speed_kmh.is_finite() && self.max_speed_kmh > 0.0) {
            return Err((
                "max_speed_kmh",
                format!("must be a positive speed, not {}", self.max_speed_kmh),
            ));
        }
        positive("separation_m", self.separation_m)?;
        positive("hdop_factor_m", self.hdop_factor_m)?;
        positive("gps_default_m", self.gps_default_m)?;
        positive("wifi_default_m", self.wifi_default_m)?;
        positive("lbs_default_m", self.lbs_default_m)?;
        for &(_, radius) in &self.satellite_radii_m {
            positive("satellite_radii_m", radius)?;
        }
        if self.late_run_max_gap_secs == 0 {
            return Err(("late_run_max_gap_secs", "must be at least 1".into()));
        }
        if self.default_timezone.parse::<chrono_tz::Tz>().is_err() {
            return Err((
                "default_timezone",
                format!(
                    "{:?} is not an IANA time zone name such as \"Asia/Shanghai\"",
                    self.default_timezone
                ),
            ));
        }
        Ok(())
    }

    /// [`FenceConfig::default_timezone`], parsed (`Asia/Shanghai` if it does not parse, which
    /// [`FenceConfig::validate`] refuses).
    pub fn default_tz(&self) -> chrono_tz::Tz {
        self.default_timezone
            .parse()
            .unwrap_or(chrono_tz::Asia::Shanghai)
    }

    /// The number of engine shards to run.
    pub fn shards(&self) -> usize {
        match self.shards {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        }
    }

    /// The accuracy radius, metres, the engine uses for this fix (see the module docs).
    pub fn accuracy_radius_m(&self, fix: &Fix) -> f64 {
        let usable = |v: f64| v.is_finite() && v > 0.0;
        let stated = fix.accuracy_m.filter(|&a| usable(a));
        let radius = match (stated, fix.source) {
            (Some(a), _) => a,
            (None, PositionSource::Gps) => fix
                .hdop
                .filter(|&h| usable(h))
                .map(|h| h * self.hdop_factor_m)
                .or_else(|| {
                    let n = fix.satellites.filter(|&n| n > 0)?;
                    self.satellite_radii_m
                        .iter()
                        .find(|(min, _)| n >= *min)
                        .map(|&(_, r)| r)
                })
                .unwrap_or(self.gps_default_m),
            (None, PositionSource::Wifi) => self.wifi_default_m,
            (None, PositionSource::Lbs) => self.lbs_default_m,
        };
        radius.max(self.min_accuracy_m)
    }
}

/// A change of a person's standing with a zone, to become an alert.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Transition {
    /// Who.
    pub person_id: PersonId,
    /// Which zone (none for `ImplausibleJump` and `DeviceSeparation`).
    pub zone_id: Option<ZoneId>,
    /// `ZoneExit` (inclusion zone breached), `ZoneEnter` (exclusion zone breached), `Curfew`
    /// (a scheduled inclusion zone breached in a window), `Returned` (a breach ended), `ImplausibleJump` (an event, not an alarm) or
    /// `DeviceSeparation`.
    pub kind: AlertKind,
    /// Time of the fix that caused it.
    pub time: DateTime<Utc>,
    /// Where that fix was, with the accuracy radius the decision used.
    pub position: AlertPosition,
    /// Raised from a late fix (older than the newest already evaluated for the device).
    pub late: bool,
}

/// What a curfew's opening found ([`FenceEngine::curfew_opened`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CurfewOpening {
    /// Definitely outside at the opening: `curfew` is due now, at this position.
    Outside(AlertPosition),
    /// Whereabouts uncertain: the next definite fix decides.
    Awaiting,
    /// Inside, already in breach, or already judged by a fix.
    Nothing,
}

/// What the speed check made of a live fix.
enum SpeedCheck {
    /// Plausible (or the first fix of the device): the fix is the device's new accepted place.
    Accepted,
    /// Implausible: the fix moves nothing; `report` when an event is due for it.
    Jump { report: bool },
}

/// Speed in km/h needed to move from `a` to `b`, after giving each its accuracy radius.
fn implied_speed_kmh(a: &Seen, b: &Seen) -> f64 {
    let d = ellipsoidal_distance_m(a.lon, a.lat, b.lon, b.lat) - a.radius_m - b.radius_m;
    if d <= 0.0 {
        return 0.0;
    }
    let seconds = (b.time - a.time).num_milliseconds().abs() as f64 / 1_000.0;
    if seconds <= 0.0 {
        f64::INFINITY
    } else {
        d / seconds * 3.6
    }
}

/// Checks a live fix against the device's last accepted one (see the module docs).
fn speed_check(config: &FenceConfig, device: &mut state::DeviceState, seen: Seen) -> SpeedCheck {
    let plausible_from = |from: &Seen| implied_speed_kmh(from, &seen) <= config.max_speed_kmh;
    let accept = match (&device.accepted, &device.candidate) {
        (None, _) => true,
        (Some(accepted), _) if plausible_from(accepted) => true,
        // The device is where the last jump put it: it really moved.
        (_, Some(candidate)) if plausible_from(candidate) => true,
        _ => false,
    };
    if accept {
        device.accepted = Some(seen);
        device.candidate = None;
        return SpeedCheck::Accepted;
    }
    device.candidate = Some(seen);
    let report = device
        .jump_reported
        .is_none_or(|last| (seen.time - last).abs() >= Duration::seconds(JUMP_REPORT_WINDOW_SECS));
    if report {
        device.jump_reported = Some(seen.time);
    }
    SpeedCheck::Jump { report }
}

/// Whether two devices' fixes are definitely apart, definitely together, or neither.
fn separation_verdict(config: &FenceConfig, a: &Seen, b: &Seen) -> Option<Verdict> {
    let d = ellipsoidal_distance_m(a.lon, a.lat, b.lon, b.lat);
    if d - a.radius_m - b.radius_m > config.separation_m {
        Some(Verdict::Violates)
    } else if d <= config.separation_m {
        Some(Verdict::Complies)
    } else {
        None
    }
}

/// The shard (of `shards`) that owns a person's fixes; stable across runs and platforms.
/// `shards` of 0 is treated as 1.
pub fn shard_for(person: &PersonId, shards: usize) -> usize {
    let v = person.as_u128();
    // Fold both halves: v7 ids keep their time in the high bits and randomness in the low ones.
    let h = (v as u64) ^ ((v >> 64) as u64).rotate_left(29);
    (h.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize % shards.max(1)
}

/// Per-person fence state for the persons of one shard.
///
/// ```
/// # use std::collections::HashMap;
/// # use chrono::{TimeZone, Utc, Duration};
/// # use ewall::fence::{FenceConfig, FenceEngine, ZoneCatalog, ZoneSpec};
/// # use ewall::model::{AlertKind, Fix, PositionSource};
/// # let person = uuid::Uuid::from_u128(7);
/// # let home = uuid::Uuid::from_u128(1);
/// # let fix = |minute: i64, lon: f64, lat: f64| Fix {
/// #     device_id: "860000000000001".into(), person_id: person,
/// #     time: Utc.timestamp_opt(1_700_000_000, 0).unwrap() + Duration::minutes(minute),
/// #     received_at: Utc.timestamp_opt(1_700_000_000, 0).unwrap() + Duration::minutes(minute),
/// #     lat, lon, valid: true, accuracy_m: Some(10.0), speed_kmh: None, course: None,
/// #     altitude_m: None, satellites: None, hdop: None, source: PositionSource::Gps,
/// #     battery_pct: None, archived: false, integrity_mismatch: false, protocol: "json".into(),
/// #     wifi_bssids: Vec::new(), clock_skew: false, implausible: None, raw: Default::default(),
/// # };
/// // A 1 km circle the person must stay in.
/// let zone = ZoneSpec::parse(r#"{"type": "Feature",
///     "properties": {"name": "home", "kind": "inclusion", "radius_m": 1000},
///     "geometry": {"type": "Point", "coordinates": [112.37, 25.58]}}"#)?
///     .into_zone(home);
/// let catalog = ZoneCatalog::build(vec![zone], HashMap::from([(person, vec![home])]));
/// let mut engine = FenceEngine::new(FenceConfig::default());
///
/// assert!(engine.check(&catalog, &fix(0, 112.37, 25.58)).is_empty()); // inside
/// assert!(engine.check(&catalog, &fix(1, 112.40, 25.58)).is_empty()); // 3 km out: 1 of 2
/// assert!(engine.check(&catalog, &fix(2, 112.40, 25.58)).is_empty()); // 2 of 2, 60 s of 180
/// let alerts = engine.check(&catalog, &fix(4, 112.40, 25.58));        // 180 s out: breach
/// assert_eq!(alerts.len(), 1);
/// assert_eq!(alerts[0].kind, AlertKind::ZoneExit);
/// let back = engine.check(&catalog, &fix(5, 112.37, 25.58));
/// assert_eq!(back[0].kind, AlertKind::Returned);
/// # Ok::<(), ewall::fence::ZoneError>(())
/// ```
#[derive(Debug, Default)]
pub struct FenceEngine {
    config: FenceConfig,
    /// [`FenceConfig::default_tz`], parsed once.
    default_tz: chrono_tz::Tz,
    levels: LevelsConfig,
    /// Looked up on every fix: foldhash, not SipHash (the keys are ids the store issued).
    persons: std::collections::HashMap<PersonId, PersonState, foldhash::fast::RandomState>,
    /// Access points learned since the last [`FenceEngine::take_learned_wifi`].
    learned_wifi: Vec<(ZoneId, String)>,
}

/// An implausible jump is reported at most once per device in this window.
const JUMP_REPORT_WINDOW_SECS: i64 = 3_600;

impl FenceEngine {
    /// An engine with no persons yet and the default levels.
    pub fn new(config: FenceConfig) -> FenceEngine {
        FenceEngine::with_levels(config, LevelsConfig::default())
    }

    /// An engine with no persons yet.
    pub fn with_levels(config: FenceConfig, levels: LevelsConfig) -> FenceEngine {
        FenceEngine {
            default_tz: config.default_tz(),
            config,
            levels,
            persons: std::collections::HashMap::default(),
            learned_wifi: Vec::new(),
        }
    }

    /// The settings in force.
    pub fn config(&self) -> &FenceConfig {
        &self.config
    }

    /// Checks one fix of a person at the `normal` level; see [`FenceEngine::check_at`].
    pub fn check(&mut self, catalog: &ZoneCatalog, fix: &Fix) -> Vec<Transition> {
        self.check_at(catalog, fix, SupervisionLevel::Normal)
    }

    /// Checks one fix of a person in the configured default time zone; see
    /// [`FenceEngine::check_in`].
    pub fn check_at(
        &mut self,
        catalog: &ZoneCatalog,
        fix: &Fix,
        level: SupervisionLevel,
    ) -> Vec<Transition> {
        self.check_in(catalog, fix, level, self.default_tz, &[])
    }

    /// Checks one fix against the zones that apply to the person in `catalog` (their own and
    /// the shared zones of `level`), confirming breaches by the rule of `level` and reading
    /// zone schedules in the person's time zone `tz`, and returns the transitions it causes
    /// (usually none). See the module docs for the exact semantics. The zones in `suspended`
    /// (by a leave permit covering the fix's time) are left alone: no run, breach or return
    /// for them, only the record of where the fix was ([`FenceEngine::latest_violation`]) for
    /// when the leave ends.
    pub fn check_in(
        &mut self,
        catalog: &ZoneCatalog,
        fix: &Fix,
        level: SupervisionLevel,
        tz: chrono_tz::Tz,
        suspended: &[ZoneId],
    ) -> Vec<Transition> {
        let mut out = Vec::new();
        // Ingest's plausibility check (`ingest::validate`) flags what cannot be believed; such
        // a fix is evidence only. The coordinate test stays for fixes built elsewhere.
        let plausible = fix.implausible.is_none()
            && fix.lat.is_finite()
            && fix.lon.is_finite()
            && (-90.0..=90.0).contains(&fix.lat)
            && (-180.0..=180.0).contains(&fix.lon);
        if !fix.valid || !plausible {
            return out;
        }
        if !catalog.has_zones(&fix.person_id, level) {
            // No zones: keep nothing, so unassigned persons cost no memory.
            self.persons.remove(&fix.person_id);
            return out;
        }
        let radius = self.config.accuracy_radius_m(fix);
        let confirm = self.levels.get(level).confirmation();
        let state = self.persons.entry(fix.person_id).or_default();
        if state.generation != catalog.generation() || state.level != Some(level) {
            state.retain_zones(|id| catalog.applies(&fix.person_id, level, id));
            state.generation = catalog.generation();
            state.level = Some(level);
        }
        // Clock skew: a fix dated ahead of its receipt takes the late path (without being
        // recorded as the device's newest), so it cannot turn the honest fixes after it late.
        let late = fix.clock_skew || state.recency(&fix.device_id, fix.time) == Recency::Late;
        let position = AlertPosition {
            lat: fix.lat,
            lon: fix.lon,
            accuracy_m: Some(radius),
        };
        let transition = |kind, zone_id, late| Transition {
            person_id: fix.person_id,
            zone_id,
            kind,
            time: fix.time,
            position,
            late,
        };
        let seen = Seen {
            time: fix.time,
            lon: fix.lon,
            lat: fix.lat,
            radius_m: radius,
        };
        if !late {
            match speed_check(&self.config, state.device_mut(&fix.device_id), seen) {
                SpeedCheck::Accepted => {}
                SpeedCheck::Jump { report } => {
                    if report {
                        out.push(transition(AlertKind::ImplausibleJump, None, false));
                    }
                    return out;
                }
            }
        }
        let max_gap = Duration::seconds(i64::from(self.config.late_run_max_gap_secs));
        let wifi_hold = Duration::seconds(i64::from(self.config.wifi_hold_secs));
        let mut placements = Vec::new();
        catalog.classify_for(
            &fix.person_id,
            level,
            fix.lon,
            fix.lat,
            radius,
            &mut placements,
        );
        // Shared exclusion zones far from the fix are not listed; those with a run or an
        // episode under way need this definite "outside" to end it. The settled ones are
        // forgotten, so a person's state does not grow with every border post passed.
        let listed = placements.len();
        let mut settled = Vec::new();
        for id in state.zone_ids() {
            if placements[..listed].iter().any(|(z, _)| z.id() == *id) {
                continue;
            }
            if state
                .zone(id)
                .is_some_and(|z| z.is_settled(fix.time, max_gap))
            {
                settled.push(*id);
            } else if let Some(zone) = catalog.zone(id).filter(|z| z.is_usable()) {
                placements.push((zone, Placement::Outside));
            }
        }
        if !settled.is_empty() {
            state.retain_zones(|id| !settled.contains(id));
        }
        for (zone, placement) in placements {
            // Outside its schedule's windows a zone asks nothing: the fix complies, so a run
            // under way is reset and an open episode ends with the window.
            let off_schedule = zone
                .zone()
                .schedule
                .as_ref()
                .is_some_and(|s| !s.in_force(fix.time, tz));
            let wifi = &zone.zone().wifi;
            let sees_home =
                !wifi.bssids.is_empty() && fix.wifi_bssids.iter().any(|b| wifi.bssids.contains(b));
            let zone_state = state.zone_mut(zone.id(), zone.kind());
            if !late && wifi.learn_until.is_some_and(|until| fix.time <= until) {
                let inside = match placement {
                    Placement::Inside => Some(true),
                    Placement::Outside => Some(false),
                    Placement::Uncertain => None,
                };
                for bssid in fix.wifi_bssids.iter().filter(|b| !wifi.bssids.contains(b)) {
                    if zone_state.learn_wifi(bssid, inside, fix.time) {
                        self.learned_wifi.push((zone.id(), bssid.clone()));
                    }
                }
            }
            let placement = if sees_home {
                zone_state.saw_wifi(fix.time);
                Placement::Inside
            } else {
                placement
            };
            if !late {
                let place = match (zone.kind(), placement) {
                    (_, Placement::Uncertain) => None,
                    (ZoneKind::Inclusion, Placement::Inside)
                    | (ZoneKind::Exclusion, Placement::Outside) => Some(Verdict::Complies),
                    _ => Some(Verdict::Violates),
                };
                state
                    .latest_place
                    .insert(zone.id(), (place, fix.time, position));
            }
            let verdict = match (zone.kind(), placement) {
                _ if off_schedule => Verdict::Complies,
                (_, Placement::Uncertain) => continue,
                (ZoneKind::Inclusion, Placement::Inside)
                | (ZoneKind::Exclusion, Placement::Outside) => Verdict::Complies,
                _ => Verdict::Violates,
            };
            if !late {
                state
                    .latest_definite
                    .insert(zone.id(), (verdict, fix.time, position));
            }
            if suspended.contains(&zone.id()) {
                continue;
            }
            let zone_state = state.zone_mut(zone.id(), zone.kind());
            if verdict == Verdict::Violates
                && zone.kind() == ZoneKind::Inclusion
                && !sees_home
                && zone_state.wifi_within(fix.time, wifi_hold)
            {
                // Seen at home by its Wi-Fi moments ago (or soon after): this GPS fix is noise.
                continue;
            }
            // A curfew that opened while the person's whereabouts were uncertain: this first
            // definite fix settles it, outside raising `curfew` at once (the opening already
            // stood for the confirmation run).
            if !late && state.curfew_pending.remove(&zone.id()).is_some() {
                let zone_state = state.zone_mut(zone.id(), zone.kind());
                if verdict == Verdict::Violates && !zone_state.is_breached() {
                    zone_state.resume_breach(fix.time);
                    out.push(transition(AlertKind::Curfew, Some(zone.id()), false));
                    continue;
                }
            }
            let zone_state = state.zone_mut(zone.id(), zone.kind());
            let (event, judged_late) = if late {
                (
                    zone_state.apply_late(verdict, fix.time, confirm, max_gap),
                    true,
                )
            } else {
                zone_state.apply_live(verdict, fix.time, confirm, max_gap)
            };
            let curfew = zone.zone().schedule.is_some();
            let kind = match (event, zone.kind()) {
                (None, _) => continue,
                (Some(Event::Returned), _) => AlertKind::Returned,
                (Some(Event::Breach), ZoneKind::Inclusion) if curfew => AlertKind::Curfew,
                (Some(Event::Breach), ZoneKind::Inclusion) => AlertKind::ZoneExit,
                (Some(Event::Breach), ZoneKind::Exclusion) => AlertKind::ZoneEnter,
            };
            out.push(transition(kind, Some(zone.id()), judged_late));
        }
        if !late {
            let window = Duration::seconds(i64::from(self.config.separation_window_secs));
            let verdicts: Vec<(String, Verdict)> = state
                .others_seen(&fix.device_id)
                .filter(|(_, other)| (other.time - fix.time).abs() <= window)
                .filter_map(|(id, other)| {
                    separation_verdict(&self.config, &seen, &other).map(|v| (id.to_owned(), v))
                })
                .collect();
            for (other, verdict) in verdicts {
                let run = state.pair_mut(&fix.device_id, &other);
                if run.apply(verdict, fix.time, confirm) == Some(Event::Breach) {
                    out.push(transition(AlertKind::DeviceSeparation, None, false));
                }
            }
        }
        out
    }

    /// Takes Wi-Fi access points a device reported without a position (a GT06 Wi-Fi packet) as
    /// evidence: for every zone of the person listing one of them, the person is inside at the
    /// sighting's time, so a pending run of violating fixes is reset and GPS fixes within
    /// `wifi_hold_secs` cannot count towards a breach. Raises nothing (an open episode is ended
    /// by the next definite fix) and never moves the device's newest time: the sighting carries
    /// the receive time, not a fix time.
    pub fn observe_wifi(
        &mut self,
        catalog: &ZoneCatalog,
        sighting: &crate::model::WifiSighting,
        level: SupervisionLevel,
    ) {
        if !catalog.has_zones(&sighting.person_id, level) {
            return;
        }
        let state = self.persons.entry(sighting.person_id).or_default();
        let confirm = self.levels.get(level).confirmation();
        let max_gap = Duration::seconds(i64::from(self.config.late_run_max_gap_secs));
        // Exclusion zones are left to fixes: an access point seen without a position is not
        // enough to raise a breach.
        for zone in catalog
            .zones_of(&sighting.person_id, level)
            .filter(|z| z.kind() == ZoneKind::Inclusion && !z.zone().wifi.bssids.is_empty())
        {
            let wifi = &zone.zone().wifi.bssids;
            if !sighting.bssids.iter().any(|b| wifi.contains(b)) {
                continue;
            }
            let zone_state = state.zone_mut(zone.id(), zone.kind());
            zone_state.saw_wifi(sighting.time);
            if !zone_state.is_breached() {
                zone_state.apply_live(Verdict::Complies, sighting.time, confirm, max_gap);
            }
        }
    }

    /// The access points learned (zone, BSSID) since the last call, for the caller to add to
    /// the zones' lists; the engine itself only uses a zone's list as the catalog gives it.
    pub fn take_learned_wifi(&mut self) -> Vec<(ZoneId, String)> {
        std::mem::take(&mut self.learned_wifi)
    }

    /// Restores a device's newest evaluated fix time (from the store, at start), so a backlog
    /// arriving after a restart is judged late instead of moving the current state back.
    pub fn resume_newest(&mut self, person: PersonId, device: &str, time: DateTime<Utc>) {
        self.persons
            .entry(person)
            .or_default()
            .resume_newest(device, time);
    }

    /// Where a person stands with a zone (`Unknown` when nothing is known).
    pub fn status(&self, person: &PersonId, zone: &ZoneId) -> ZoneStatus {
        self.persons
            .get(person)
            .and_then(|p| p.zone(zone))
            .map_or(ZoneStatus::Unknown, |z| z.status())
    }

    /// Restores an open breach recorded before a restart: the zone's episode is open since
    /// `since`, so fixes still outside raise nothing new and the first definite fix back raises
    /// `Returned`. The zone's kind says which side is the breach.
    pub fn resume_breach(
        &mut self,
        person: PersonId,
        zone: ZoneId,
        kind: ZoneKind,
        since: DateTime<Utc>,
    ) {
        let state = self.persons.entry(person).or_default();
        state.zone_mut(zone, kind).resume_breach(since);
    }

    /// Where the person's newest live definite fix against `zone` was, when it violated the
    /// zone (outside an inclusion zone, inside an exclusion zone): what a leave's end checks.
    pub fn latest_violation(&self, person: &PersonId, zone: &ZoneId) -> Option<AlertPosition> {
        match self.persons.get(person)?.latest_definite.get(zone)? {
            (Verdict::Violates, _, position) => Some(*position),
            (Verdict::Complies, _, _) => None,
        }
    }

    /// Restores, after a restart, where a device's newest stored fix was against each of the
    /// person's zones (for [`FenceEngine::latest_violation`]); nothing else moves. A fix older
    /// than what the person's zones already record is ignored.
    pub fn resume_position(&mut self, catalog: &ZoneCatalog, fix: &Fix, level: SupervisionLevel) {
        if !catalog.has_zones(&fix.person_id, level) || !fix.valid || fix.implausible.is_some() {
            return;
        }
        let radius = self.config.accuracy_radius_m(fix);
        let position = AlertPosition {
            lat: fix.lat,
            lon: fix.lon,
            accuracy_m: Some(radius),
        };
        let mut placements = Vec::new();
        catalog.classify_for(
            &fix.person_id,
            level,
            fix.lon,
            fix.lat,
            radius,
            &mut placements,
        );
        let state = self.persons.entry(fix.person_id).or_default();
        for (zone, placement) in placements {
            let place = match (zone.kind(), placement) {
                (_, Placement::Uncertain) => None,
                (ZoneKind::Inclusion, Placement::Inside)
                | (ZoneKind::Exclusion, Placement::Outside) => Some(Verdict::Complies),
                _ => Some(Verdict::Violates),
            };
            if state
                .latest_place
                .get(&zone.id())
                .is_none_or(|(_, time, _)| *time < fix.time)
            {
                state
                    .latest_place
                    .insert(zone.id(), (place, fix.time, position));
            }
            let Some(verdict) = place else {
                continue;
            };
            let newer = state
                .latest_definite
                .get(&zone.id())
                .is_none_or(|(_, time, _)| *time < fix.time);
            if newer {
                state
                    .latest_definite
                    .insert(zone.id(), (verdict, fix.time, position));
            }
        }
    }

    /// Opens a breach of `zone` at `since` now, without a fix (a leave permit ended with the
    /// person outside): fixes still outside raise nothing new, and the first definite fix
    /// back raises `Returned`.
    pub fn open_breach(
        &mut self,
        catalog: &ZoneCatalog,
        person: PersonId,
        zone: ZoneId,
        since: DateTime<Utc>,
        level: SupervisionLevel,
    ) {
        let Some(kind) = catalog.zone(&zone).map(|z| z.kind()) else {
            return;
        };
        let state = self.persons.entry(person).or_default();
        if state.generation != catalog.generation() {
            let assigned = catalog.zone_ids_of(&person, level);
            state.retain_zones(|id| assigned.contains(id));
            state.generation = catalog.generation();
        }
        state.zone_mut(zone, kind).resume_breach(since);
    }

    /// A curfew (scheduled inclusion `zone`) opened at `at` with no fix since: judges the
    /// person by their newest live fix before it. Definitely outside: the breach opens at `at`
    /// (fixes still outside raise nothing new, the first definite fix back raises `Returned`)
    /// and the answer carries that fix's position. Uncertain, or no fix known: the next
    /// definite live fix decides ([`FenceEngine::check_in`] raises `Curfew` on it when it is
    /// outside). Inside, a breach already open, or a fix at or after the opening (the engine
    /// judged it itself): nothing.
    pub fn curfew_opened(
        &mut self,
        catalog: &ZoneCatalog,
        person: PersonId,
        zone: ZoneId,
        at: DateTime<Utc>,
        level: SupervisionLevel,
    ) -> CurfewOpening {
        if matches!(self.status(&person, &zone), ZoneStatus::Breached { .. }) {
            return CurfewOpening::Nothing;
        }
        let latest = self
            .persons
            .get(&person)
            .and_then(|p| p.latest_place.get(&zone))
            .copied();
        match latest {
            Some((_, time, _)) if time >= at => CurfewOpening::Nothing,
            Some((Some(Verdict::Complies), _, _)) => CurfewOpening::Nothing,
            Some((Some(Verdict::Violates), _, position)) => {
                self.open_breach(catalog, person, zone, at, level);
                CurfewOpening::Outside(position)
            }
            Some((None, _, _)) | None => {
                self.persons
                    .entry(person)
                    .or_default()
                    .curfew_pending
                    .insert(zone, at);
                CurfewOpening::Awaiting
            }
        }
    }

    /// Forgets everything about a person (deleted, or moved to another shard).
    pub fn forget(&mut self, person: &PersonId) {
        self.persons.remove(person);
    }

    /// Number of persons with state in this engine.
    pub fn person_count(&self) -> usize {
        self.persons.len()
    }
}

#[cfg(test)]
mod tests;

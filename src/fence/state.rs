//! Per-person state: per-zone episodes (the confirmation runs and open breaches that turn a
//! stream of placements into `zone_exit` / `zone_enter` / `returned` transitions), per-device
//! recency and last accepted position, and per-pair device separation runs.
//!
//! Role in the pipeline: [`FenceEngine`](super::FenceEngine) keeps one [`PersonState`] per
//! person of its shard and feeds it one *verdict* per fix and zone: the fix definitely complies
//! with the zone, or definitely violates it (uncertain fixes never get here). This file decides
//! when a breach is confirmed and when it ends; it knows nothing about geometry, accuracy or
//! I/O, and it never looks at the clock, only at fix times.
//!
//! # Live fixes
//!
//! A breach is raised once a run of consecutive violating verdicts has both `fixes` verdicts
//! and `seconds` from its first fix to the current one ([`Confirmation`]), once per episode; the
//! first complying verdict after a raised breach ends the episode with one `Returned`; a
//! complying verdict before that resets the run silently.
//!
//! Whether a fix is live or late is decided per *device* ([`PersonState::recency`]): a fix no
//! newer than the newest fix already evaluated for its own device is late. A person with two
//! devices therefore has two live streams feeding one zone state; a live verdict older than the
//! zone's latest live verdict of the opposite sense (a lagging wristband reporting "outside"
//! from before the phone's "inside") is treated as late for that zone, so the live state only
//! ever moves forward in time.
//!
//! # Late fixes
//!
//! A late fix (a device's blind-area backlog, a duplicate, a resend) never touches the live
//! count or the live episode. Each zone has a separate *late run*, confirmed like live fixes: a
//! backlog arrives as a burst in time order, so a confirmed run of violating late fixes raises
//! a breach marked late, and a complying late fix after it raises a late `Returned`. The run is
//! consecutive only while each late fix is newer than the previous one and within
//! `late_run_max_gap` of it; a late fix that goes back in time (a new backlog) or comes after a
//! longer gap starts a new run.
//!
//! A late fix that falls within a live episode is part of it and raises nothing: within the
//! open or pending one (any time after the last live complying fix before it), or within the
//! last one that closed (from the last complying fix before it to the fix that ended it). So a
//! device that sends its live fix first and its backlog after, or a second device of the same
//! person lagging behind the first, adds no second alert for one excursion. A late episode that
//! is still open when its run ends is left open; no `Returned` is invented for it.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};

use super::levels::Confirmation;
use crate::model::{ZoneId, ZoneKind};

/// What one definite fix says about one zone (or one pair of devices).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Inside an inclusion zone, or outside an exclusion zone, by more than the accuracy radius.
    Complies,
    /// Outside an inclusion zone, or inside an exclusion zone, by more than the accuracy radius.
    Violates,
}

/// A change worth an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A breach was confirmed (becomes `zone_exit`, `zone_enter` or `device_separation`).
    Breach,
    /// A confirmed breach ended (becomes `returned`).
    Returned,
}

/// Whether a fix is the newest of its device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recency {
    /// Newer than every fix evaluated for the device: it moves the current state.
    Live,
    /// Not newer: checked, but it never moves the current state back.
    Late,
}

/// Where a person stands with one zone, for inspection (API, tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZoneStatus {
    /// No definite fix since the zone was assigned.
    Unknown,
    /// The last definite fix complied and no breach is open.
    Compliant,
    /// Violating fixes are being counted; no breach raised yet.
    Pending {
        /// Consecutive violating fixes so far.
        violations: u32,
    },
    /// A breach was raised and has not ended.
    Breached {
        /// Time of the fix that confirmed it.
        since: DateTime<Utc>,
    },
}

/// A confirmation run and an open episode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Run {
    violations: u32,
    /// Time of the earliest violating fix of the current run (or of the open episode's run).
    run_start: Option<DateTime<Utc>>,
    open_since: Option<DateTime<Utc>>,
}

impl Run {
    /// Applies one verdict at fix time `time`.
    pub fn apply(
        &mut self,
        verdict: Verdict,
        time: DateTime<Utc>,
        confirm: Confirmation,
    ) -> Option<Event> {
        match verdict {
            Verdict::Violates if self.open_since.is_some() => None,
            Verdict::Violates => {
                self.violations = self.violations.saturating_add(1);
                let start = self.run_start.map_or(time, |s| s.min(time));
                self.run_start = Some(start);
                let dwelt = time - start >= Duration::seconds(i64::from(confirm.seconds));
                if self.violations >= confirm.fixes.max(1) && dwelt {
                    self.violations = 0;
                    self.open_since = Some(time);
                    Some(Event::Breach)
                } else {
                    None
                }
            }
            Verdict::Complies => {
                self.violations = 0;
                self.run_start = None;
                self.open_since.take().map(|_| Event::Returned)
            }
        }
    }

    /// A run is being counted or an episode is open.
    fn active(&self) -> bool {
        self.violations > 0 || self.open_since.is_some()
    }

    /// Whether an episode is open.
    #[cfg(test)]
    pub fn is_open(&self) -> bool {
        self.open_since.is_some()
    }
}

/// One person's state for one zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneState {
    /// The kind the state was built under; a zone whose kind changes starts over.
    kind: ZoneKind,
    /// Whether any definite live fix has been seen.
    known: bool,
    live: Run,
    /// Latest live complying and violating fix times.
    last_complied: Option<DateTime<Utc>>,
    last_violated: Option<DateTime<Utc>>,
    /// The last live complying time before the current run began (the episode's floor).
    floor: Option<DateTime<Utc>>,
    /// Floor and end of the last live episode that ended.
    last_closed: Option<(Option<DateTime<Utc>>, DateTime<Utc>)>,
    late: Run,
    /// Time of the last definite late fix of the current late run.
    late_last: Option<DateTime<Utc>>,
    /// Latest fix time at which the device saw one of the zone's Wi-Fi access points.
    wifi_seen: Option<DateTime<Utc>>,
    /// Access points seen during the zone's learning window, not yet in its list.
    learning: HashMap<String, Sighting>,
}

/// Most access points a zone's learning table follows at once (the rest are ignored until
/// entries are learned or the window ends: a block of flats can show dozens).
const LEARNING_MAX: usize = 64;
/// Definite-inside sightings an access point needs before it is learned.
pub const WIFI_LEARN_SIGHTINGS: u32 = 5;
/// Time from the first to the last of those sightings: at least twelve hours, so a visitor's
/// phone hotspot (seen for an evening, then gone with them) is not taken for the home router.
pub const WIFI_LEARN_SPAN_HOURS: i64 = 12;

/// How one access point has been seen during a zone's learning window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sighting {
    inside: u32,
    first: DateTime<Utc>,
    last: DateTime<Utc>,
    /// Seen on a fix definitely outside the zone: never learned (it reaches beyond the zone).
    outside: bool,
    learned: bool,
}

impl ZoneState {
    fn new(kind: ZoneKind) -> ZoneState {
        ZoneState {
            kind,
            known: false,
            live: Run::default(),
            last_complied: None,
            last_violated: None,
            floor: None,
            last_closed: None,
            late: Run::default(),
            late_last: None,
            wifi_seen: None,
            learning: HashMap::new(),
        }
    }

    /// The status as [`ZoneStatus`].
    pub fn status(&self) -> ZoneStatus {
        match (self.known, self.live) {
            (
                _,
                Run {
                    open_since: Some(since),
                    ..
                },
            ) => ZoneStatus::Breached { since },
            (false, _) => ZoneStatus::Unknown,
            (true, Run { violations: 0, .. }) => ZoneStatus::Compliant,
            (true, Run { violations, .. }) => ZoneStatus::Pending { violations },
        }
    }

    /// Re-opens a breach episode that began at `since` (one recorded before a restart), so the
    /// next definite compliant fix ends it with `Returned` instead of starting over.
    pub fn resume_breach(&mut self, since: DateTime<Utc>) {
        self.known = true;
        self.live = Run {
            violations: 0,
            run_start: Some(since),
            open_since: Some(since),
        };
        self.last_violated = self.last_violated.max(Some(since));
    }

    /// Whether nothing is under way for the zone at `time`: no open episode, no run being
    /// counted (live or late) and no violating fix within `quiet` before it. Dropping such a
    /// state changes no outcome the late-fix rules look back on for that long.
    pub fn is_settled(&self, time: DateTime<Utc>, quiet: Duration) -> bool {
        !self.live.active()
            && !self.late.active()
            && self.last_violated.is_none_or(|t| time - t > quiet)
    }

    /// Whether a live breach episode is open.
    pub fn is_breached(&self) -> bool {
        self.live.open_since.is_some()
    }

    /// Records that the device saw one of the zone's access points at `time`.
    pub fn saw_wifi(&mut self, time: DateTime<Utc>) {
        self.wifi_seen = self.wifi_seen.max(Some(time));
    }

    /// Records that an access point was seen on a live fix whose geometric placement is
    /// `inside` (`Some(true)` definitely inside, `Some(false)` definitely outside, `None`
    /// uncertain) during the zone's learning window. True when the access point has just met
    /// the learning rule: [`WIFI_LEARN_SIGHTINGS`] sightings definitely inside spanning
    /// [`WIFI_LEARN_SPAN_HOURS`], and never one definitely outside.
    pub fn learn_wifi(&mut self, bssid: &str, inside: Option<bool>, time: DateTime<Utc>) -> bool {
        let Some(inside) = inside else { return false };
        if !self.learning.contains_key(bssid) {
            if self.learning.len() >= LEARNING_MAX {
                return false;
            }
            let fresh = Sighting {
                inside: 0,
                first: time,
                last: time,
                outside: false,
                learned: false,
            };
            self.learning.insert(bssid.to_owned(), fresh);
        }
        let Some(s) = self.learning.get_mut(bssid) else {
            return false;
        };
        if !inside {
            s.outside = true;
            return false;
        }
        s.inside = s.inside.saturating_add(1);
        s.first = s.first.min(time);
        s.last = s.last.max(time);
        let ready = s.inside >= WIFI_LEARN_SIGHTINGS
            && s.last - s.first >= Duration::hours(WIFI_LEARN_SPAN_HOURS)
            && !s.outside
            && !s.learned;
        if ready {
            s.learned = true;
        }
        ready
    }

    /// Whether `time` is within `hold` of a Wi-Fi sighting (either side).
    pub fn wifi_within(&self, time: DateTime<Utc>, hold: Duration) -> bool {
        self.wifi_seen
            .is_some_and(|seen| (time - seen).abs() <= hold)
    }

    /// Applies a live fix's verdict. Returns the event and whether it is to be marked late (a
    /// verdict older than the zone's latest live verdict of the opposite sense is judged as a
    /// late one; see the module docs).
    pub fn apply_live(
        &mut self,
        verdict: Verdict,
        time: DateTime<Utc>,
        confirm: Confirmation,
        max_gap: Duration,
    ) -> (Option<Event>, bool) {
        let behind = match verdict {
            Verdict::Violates => self.last_complied,
            Verdict::Complies => self.last_violated,
        };
        if behind.is_some_and(|b| time < b) {
            return (self.apply_late(verdict, time, confirm, max_gap), true);
        }
        self.known = true;
        if verdict == Verdict::Violates && !self.live.active() {
            self.floor = self.last_complied;
        }
        let event = self.live.apply(verdict, time, confirm);
        match verdict {
            Verdict::Complies => self.last_complied = self.last_complied.max(Some(time)),
            Verdict::Violates => self.last_violated = self.last_violated.max(Some(time)),
        }
        if event == Some(Event::Returned) {
            self.last_closed = Some((self.floor, time));
        }
        (event, false)
    }

    /// Applies a late fix's verdict to the late run (see the module docs).
    pub fn apply_late(
        &mut self,
        verdict: Verdict,
        time: DateTime<Utc>,
        confirm: Confirmation,
        max_gap: Duration,
    ) -> Option<Event> {
        let continues = self
            .late_last
            .is_some_and(|last| time > last && time - last <= max_gap);
        if !continues {
            self.late = Run::default();
        }
        self.late_last = Some(time);
        let after = |floor: Option<DateTime<Utc>>| floor.is_none_or(|f| time > f);
        let in_live = self.live.active() && after(self.floor);
        let in_closed = self
            .last_closed
            .is_some_and(|(floor, end)| after(floor) && time <= end);
        if in_live || in_closed {
            self.late.violations = 0;
            self.late.run_start = None;
            return None;
        }
        self.late.apply(verdict, time, confirm)
    }
}

/// A position the engine accepted from one device, with the radius it was judged by.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Seen {
    /// Fix time.
    pub time: DateTime<Utc>,
    /// WGS-84 longitude.
    pub lon: f64,
    /// WGS-84 latitude.
    pub lat: f64,
    /// Accuracy radius used, metres.
    pub radius_m: f64,
}

/// What the engine keeps about one device of a person.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceState {
    /// Time of the newest fix evaluated for the device; older or equal fixes are late.
    pub newest: Option<DateTime<Utc>>,
    /// The last live fix that passed the speed check (jumps are measured from it).
    pub accepted: Option<Seen>,
    /// A fix that failed the speed check; if the next one is plausible from it, the device
    /// really moved and the new place is accepted.
    pub candidate: Option<Seen>,
    /// Fix time of the last `implausible_jump` event raised for the device.
    pub jump_reported: Option<DateTime<Utc>>,
}

/// Everything the engine keeps about one person.
#[derive(Debug, Clone, Default)]
pub struct PersonState {
    /// The catalog generation the zone set was last reconciled with.
    pub generation: u64,
    /// The supervision level the zone set was last reconciled with (shared zones follow it).
    pub level: Option<crate::model::SupervisionLevel>,
    devices: HashMap<String, DeviceState>,
    zones: HashMap<ZoneId, ZoneState>,
    /// Separation runs per pair of devices (the two ids in order).
    pairs: HashMap<(String, String), Run>,
    /// Per zone, the newest live definite fix: whether it violated the zone, and where it was.
    /// Kept for suspended zones too, for the check when a leave permit ends.
    pub latest_definite: HashMap<ZoneId, (Verdict, DateTime<Utc>, crate::model::AlertPosition)>,
    /// Per zone, where the newest live fix was against the zone's shape, schedule aside:
    /// `Some` verdict when definite, `None` when uncertain. What a curfew's opening checks.
    pub latest_place:
        HashMap<ZoneId, (Option<Verdict>, DateTime<Utc>, crate::model::AlertPosition)>,
    /// Curfews that opened with the person's whereabouts uncertain, by opening time: the next
    /// definite live fix decides (outside raises `curfew` at once, inside clears it).
    pub curfew_pending: HashMap<ZoneId, DateTime<Utc>>,
}

impl PersonState {
    /// Decides whether a fix of `device` at `time` is live or late, and records a live one as
    /// the device's newest. This is the one place that rule lives: a fix whose clock cannot be
    /// trusted is to be answered [`Recency::Late`] here, so it never becomes the newest.
    pub fn recency(&mut self, device: &str, time: DateTime<Utc>) -> Recency {
        let state = self.device_mut(device);
        if state.newest.is_some_and(|newest| time <= newest) {
            Recency::Late
        } else {
            state.newest = Some(time);
            Recency::Live
        }
    }

    /// Restores a device's newest fix time (from the store, at start); never moves it back.
    pub fn resume_newest(&mut self, device: &str, time: DateTime<Utc>) {
        let state = self.device_mut(device);
        state.newest = state.newest.max(Some(time));
    }

    /// The state of one device, created empty if absent.
    pub fn device_mut(&mut self, device: &str) -> &mut DeviceState {
        if !self.devices.contains_key(device) {
            self.devices
                .insert(device.to_owned(), DeviceState::default());
        }
        // Inserted just above when absent.
        self.devices.get_mut(device).expect("device state present")
    }

    /// The device's newest evaluated fix time.
    #[cfg(test)]
    pub fn newest(&self, device: &str) -> Option<DateTime<Utc>> {
        self.devices.get(device).and_then(|d| d.newest)
    }

    /// Every other device's last accepted position.
    pub fn others_seen<'a>(&'a self, device: &'a str) -> impl Iterator<Item = (&'a str, Seen)> {
        self.devices
            .iter()
            .filter(move |(id, _)| id.as_str() != device)
            .filter_map(|(id, d)| d.accepted.map(|s| (id.as_str(), s)))
    }

    /// The separation run of a pair of devices (order does not matter).
    pub fn pair_mut(&mut self, a: &str, b: &str) -> &mut Run {
        let key = if a <= b {
            (a.to_owned(), b.to_owned())
        } else {
            (b.to_owned(), a.to_owned())
        };
        self.pairs.entry(key).or_default()
    }

    /// The state for a zone, created (unknown) if absent or rebuilt if the zone changed kind.
    pub fn zone_mut(&mut self, zone: ZoneId, kind: ZoneKind) -> &mut ZoneState {
        let state = self
            .zones
            .entry(zone)
            .or_insert_with(|| ZoneState::new(kind));
        if state.kind != kind {
            *state = ZoneState::new(kind);
        }
        state
    }

    /// The state for a zone, if any definite fix has been seen for it.
    pub fn zone(&self, zone: &ZoneId) -> Option<&ZoneState> {
        self.zones.get(zone)
    }

    /// The zones with state.
    pub fn zone_ids(&self) -> impl Iterator<Item = &ZoneId> {
        self.zones.keys()
    }

    /// Drops the state of every zone for which `keep` is false.
    pub fn retain_zones(&mut self, mut keep: impl FnMut(&ZoneId) -> bool) {
        self.latest_definite.retain(|id, _| keep(id));
        self.latest_place.retain(|id, _| keep(id));
        self.curfew_pending.retain(|id, _| keep(id));
        self.zones.retain(|id, _| keep(id));
    }

    /// Number of zones with state.
    #[cfg(test)]
    pub fn zone_count(&self) -> usize {
        self.zones.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(min: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000, 0).single().expect("valid") + Duration::minutes(min)
    }

    const V: Verdict = Verdict::Violates;
    const C: Verdict = Verdict::Complies;

    fn n(fixes: u32) -> Confirmation {
        Confirmation { fixes, seconds: 0 }
    }

    fn gap() -> Duration {
        Duration::minutes(30)
    }

    fn live(z: &mut ZoneState, v: Verdict, time: DateTime<Utc>, fixes: u32) -> Option<Event> {
        let (event, late) = z.apply_live(v, time, n(fixes), gap());
        assert!(!late, "judged live");
        event
    }

    fn late(z: &mut ZoneState, v: Verdict, time: DateTime<Utc>, fixes: u32) -> Option<Event> {
        z.apply_late(v, time, n(fixes), gap())
    }

    #[test]
    fn breach_on_the_nth_violation_once_per_episode() {
        let mut z = ZoneState::new(ZoneKind::Inclusion);
        assert_eq!(z.status(), ZoneStatus::Unknown);
        assert_eq!(live(&mut z, V, t(0), 2), None);
        assert_eq!(z.status(), ZoneStatus::Pending { violations: 1 });
        assert_eq!(live(&mut z, V, t(1), 2), Some(Event::Breach));
        assert_eq!(live(&mut z, V, t(2), 2), None);
        assert_eq!(z.status(), ZoneStatus::Breached { since: t(1) });
        assert_eq!(live(&mut z, C, t(3), 2), Some(Event::Returned));
        assert_eq!(live(&mut z, C, t(4), 2), None);
        assert_eq!(z.status(), ZoneStatus::Compliant);
    }

    #[test]
    fn a_compliant_fix_before_n_resets_silently() {
        let mut z = ZoneState::new(ZoneKind::Exclusion);
        for (i, v) in [V, V, C, V, V].into_iter().enumerate() {
            assert_eq!(live(&mut z, v, t(i as i64), 3), None);
        }
        assert_eq!(live(&mut z, V, t(9), 3), Some(Event::Breach));
    }

    #[test]
    fn dwell_needs_the_seconds_as_well_as_the_fixes() {
        let rule = Confirmation {
            fixes: 2,
            seconds: 120,
        };
        let s = |sec: i64| t(0) + Duration::seconds(sec);
        let mut run = Run::default();
        // A burst of four fixes 30 s apart spans 90 s: not enough.
        for sec in [0, 30, 60, 90] {
            assert_eq!(run.apply(V, s(sec), rule), None);
        }
        assert_eq!(run.apply(C, s(120), rule), None);
        // A real departure: raised on the first fix 120 s after the run began.
        for sec in [200, 230, 260, 290] {
            assert_eq!(run.apply(V, s(sec), rule), None);
        }
        assert_eq!(run.apply(V, s(320), rule), Some(Event::Breach));
        assert!(run.is_open());
        // With the fix count as the slower condition, the count decides.
        let mut run = Run::default();
        let slow = Confirmation {
            fixes: 3,
            seconds: 10,
        };
        assert_eq!(run.apply(V, s(0), slow), None);
        assert_eq!(run.apply(V, s(60), slow), None);
        assert_eq!(run.apply(V, s(61), slow), Some(Event::Breach));
    }

    #[test]
    fn late_run_confirms_in_time_order_and_respects_the_gap() {
        let mut z = ZoneState::new(ZoneKind::Inclusion);
        assert_eq!(late(&mut z, V, t(0), 2), None);
        assert_eq!(late(&mut z, V, t(1), 2), Some(Event::Breach));
        assert_eq!(late(&mut z, V, t(2), 2), None);
        assert_eq!(late(&mut z, C, t(3), 2), Some(Event::Returned));
        // A single violation, then a long gap: the next one starts a new run.
        assert_eq!(late(&mut z, V, t(4), 2), None);
        assert_eq!(late(&mut z, V, t(60), 2), None);
        // Going back in time starts a new run too.
        assert_eq!(late(&mut z, V, t(5), 2), None);
        assert_eq!(late(&mut z, V, t(6), 2), Some(Event::Breach));
        // The live state never moved.
        assert_eq!(z.status(), ZoneStatus::Unknown);
    }

    #[test]
    fn late_fixes_inside_a_live_episode_raise_nothing() {
        let mut z = ZoneState::new(ZoneKind::Inclusion);
        live(&mut z, C, t(1), 2);
        live(&mut z, V, t(10), 2);
        assert_eq!(live(&mut z, V, t(11), 2), Some(Event::Breach));
        // Backlog from within the open episode, also from before the live run's first fix
        // but after the last live fix inside.
        assert_eq!(late(&mut z, V, t(5), 2), None);
        assert_eq!(late(&mut z, V, t(6), 2), None);
        assert_eq!(late(&mut z, V, t(12), 2), None);
        assert_eq!(live(&mut z, C, t(20), 2), Some(Event::Returned));
        // Backlog from within the closed episode.
        assert_eq!(late(&mut z, V, t(14), 2), None);
        assert_eq!(late(&mut z, V, t(15), 2), None);
        // Backlog from before the last fix inside is fresh news.
        assert_eq!(late(&mut z, V, t(0), 2), None);
        assert_eq!(
            late(&mut z, V, t(0) + Duration::seconds(30), 2),
            Some(Event::Breach)
        );
    }

    #[test]
    fn a_late_fix_overlapping_a_pending_live_run_is_part_of_it() {
        // The device sends its live fix first, then its backlog.
        let mut z = ZoneState::new(ZoneKind::Inclusion);
        live(&mut z, C, t(0), 2);
        assert_eq!(live(&mut z, V, t(20), 2), None);
        for m in 10..20 {
            assert_eq!(late(&mut z, V, t(m), 2), None, "minute {m}");
        }
        assert_eq!(live(&mut z, V, t(21), 2), Some(Event::Breach));
    }

    #[test]
    fn a_live_verdict_behind_the_other_sense_is_judged_late() {
        // Two devices: the phone says inside at minute 11; the lagging wristband's outside
        // fixes from minutes 9 and 10 arrive after it and must not start a live run.
        let mut z = ZoneState::new(ZoneKind::Inclusion);
        live(&mut z, C, t(11), 2);
        assert_eq!(z.apply_live(V, t(9), n(2), gap()), (None, true));
        assert_eq!(
            z.apply_live(V, t(10), n(2), gap()),
            (Some(Event::Breach), true)
        );
        assert_eq!(z.status(), ZoneStatus::Compliant);
    }

    #[test]
    fn wifi_sightings_hold_either_side() {
        let mut z = ZoneState::new(ZoneKind::Inclusion);
        assert!(!z.wifi_within(t(0), Duration::minutes(5)));
        z.saw_wifi(t(10));
        z.saw_wifi(t(3));
        assert!(z.wifi_within(t(6), Duration::minutes(5)));
        assert!(z.wifi_within(t(15), Duration::minutes(5)));
        assert!(!z.wifi_within(t(16), Duration::minutes(5)));
    }

    #[test]
    fn recency_is_per_device() {
        let mut p = PersonState::default();
        assert_eq!(p.recency("phone", t(10)), Recency::Live);
        assert_eq!(p.recency("band", t(5)), Recency::Live);
        assert_eq!(p.recency("band", t(5)), Recency::Late, "a duplicate");
        assert_eq!(p.recency("phone", t(9)), Recency::Late);
        p.resume_newest("band", t(30));
        p.resume_newest("band", t(20));
        assert_eq!(p.newest("band"), Some(t(30)));
        assert_eq!(p.recency("band", t(25)), Recency::Late);
    }

    #[test]
    fn a_zone_that_changes_kind_starts_over() {
        let mut p = PersonState::default();
        let id = uuid::Uuid::nil();
        live(p.zone_mut(id, ZoneKind::Inclusion), V, t(0), 2);
        assert_eq!(
            p.zone(&id).map(ZoneState::status),
            Some(ZoneStatus::Pending { violations: 1 })
        );
        assert_eq!(
            p.zone_mut(id, ZoneKind::Exclusion).status(),
            ZoneStatus::Unknown
        );
        p.retain_zones(|_| false);
        assert_eq!(p.zone_count(), 0);
    }
}

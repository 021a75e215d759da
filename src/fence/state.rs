//! Per-person, per-zone episode state: the confirmation counts and open breaches that turn a
//! stream of placements into `zone_exit` / `zone_enter` / `returned` transitions.
//!
//! Role in the pipeline: [`FenceEngine`](super::FenceEngine) keeps one [`PersonState`] per
//! person of its shard and feeds it one *verdict* per fix and zone: the fix definitely complies
//! with the zone, or definitely violates it (uncertain fixes never get here). This file decides
//! when a breach is confirmed and when it ends; it knows nothing about geometry, accuracy or
//! I/O, and it never looks at the clock, only at fix times.
//!
//! # Live fixes
//!
//! A breach is raised on the `confirm_fixes`-th consecutive violating verdict, once per episode;
//! the first complying verdict after a raised breach ends the episode with one `Returned`; a
//! complying verdict before the count is reached resets it silently.
//!
//! # Late fixes
//!
//! A fix no newer than the newest fix already evaluated for the person is *late* (a device's
//! blind-area backlog, or a duplicate). It never touches the live count or the live episode.
//! Instead each zone has a separate *late run*, confirmed exactly like live fixes: a backlog
//! arrives as a burst in time order, so `confirm_fixes` consecutive violating late fixes raise a
//! breach marked late, and a complying late fix after it raises a late `Returned`. The run is
//! consecutive only while each late fix is newer than the previous one and within
//! `late_run_max_gap` of it; a late fix that goes back in time (a new backlog) or comes after a
//! longer gap starts a new run. A late fix whose time falls inside a live episode (the open one,
//! or the last one that closed) is already covered by a live alert: it resets the late count and
//! raises nothing. A late episode that is still open when its run ends is left open; no
//! `Returned` is invented for it.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};

use crate::model::{ZoneId, ZoneKind};

/// What one definite fix says about one zone.
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
    /// A breach was confirmed (becomes `zone_exit` or `zone_enter`).
    Breach,
    /// A confirmed breach ended (becomes `returned`).
    Returned,
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

/// A confirmation count and an open episode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Run {
    violations: u32,
    open_since: Option<DateTime<Utc>>,
}

impl Run {
    fn apply(&mut self, verdict: Verdict, time: DateTime<Utc>, confirm: u32) -> Option<Event> {
        match verdict {
            Verdict::Violates if self.open_since.is_some() => None,
            Verdict::Violates => {
                self.violations = self.violations.saturating_add(1);
                if self.violations >= confirm.max(1) {
                    self.violations = 0;
                    self.open_since = Some(time);
                    Some(Event::Breach)
                } else {
                    None
                }
            }
            Verdict::Complies => {
                self.violations = 0;
                self.open_since.take().map(|_| Event::Returned)
            }
        }
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
    /// Start and end of the last live episode that ended.
    last_closed: Option<(DateTime<Utc>, DateTime<Utc>)>,
    late: Run,
    /// Time of the last definite late fix of the current late run.
    late_last: Option<DateTime<Utc>>,
}

impl ZoneState {
    fn new(kind: ZoneKind) -> ZoneState {
        ZoneState {
            kind,
            known: false,
            live: Run::default(),
            last_closed: None,
            late: Run::default(),
            late_last: None,
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
            open_since: Some(since),
        };
    }

    /// Applies a live (newest-so-far) fix's verdict.
    pub fn apply_live(
        &mut self,
        verdict: Verdict,
        time: DateTime<Utc>,
        confirm: u32,
    ) -> Option<Event> {
        self.known = true;
        let since = self.live.open_since;
        let event = self.live.apply(verdict, time, confirm);
        if let (Some(Event::Returned), Some(since)) = (event, since) {
            self.last_closed = Some((since, time));
        }
        event
    }

    /// Applies a late fix's verdict to the late run (see the module docs).
    pub fn apply_late(
        &mut self,
        verdict: Verdict,
        time: DateTime<Utc>,
        confirm: u32,
        max_gap: Duration,
    ) -> Option<Event> {
        let continues = self
            .late_last
            .is_some_and(|last| time > last && time - last <= max_gap);
        if !continues {
            self.late = Run::default();
        }
        self.late_last = Some(time);
        let in_open = self.live.open_since.is_some_and(|since| time >= since);
        let in_closed = self
            .last_closed
            .is_some_and(|(since, end)| time >= since && time <= end);
        if in_open || in_closed {
            self.late.violations = 0;
            return None;
        }
        self.late.apply(verdict, time, confirm)
    }
}

/// Everything the engine keeps about one person.
#[derive(Debug, Clone, Default)]
pub struct PersonState {
    /// Time of the newest fix evaluated; older or equal fixes are late.
    pub newest: Option<DateTime<Utc>>,
    /// The catalog generation the zone set was last reconciled with.
    pub generation: u64,
    zones: HashMap<ZoneId, ZoneState>,
}

impl PersonState {
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

    /// Drops the state of every zone for which `keep` is false.
    pub fn retain_zones(&mut self, mut keep: impl FnMut(&ZoneId) -> bool) {
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

    #[test]
    fn breach_on_the_nth_violation_once_per_episode() {
        let mut z = ZoneState::new(ZoneKind::Inclusion);
        assert_eq!(z.status(), ZoneStatus::Unknown);
        assert_eq!(z.apply_live(V, t(0), 2), None);
        assert_eq!(z.status(), ZoneStatus::Pending { violations: 1 });
        assert_eq!(z.apply_live(V, t(1), 2), Some(Event::Breach));
        assert_eq!(z.apply_live(V, t(2), 2), None);
        assert_eq!(z.status(), ZoneStatus::Breached { since: t(1) });
        assert_eq!(z.apply_live(C, t(3), 2), Some(Event::Returned));
        assert_eq!(z.apply_live(C, t(4), 2), None);
        assert_eq!(z.status(), ZoneStatus::Compliant);
    }

    #[test]
    fn a_compliant_fix_before_n_resets_silently() {
        let mut z = ZoneState::new(ZoneKind::Exclusion);
        for (i, v) in [V, V, C, V, V].into_iter().enumerate() {
            assert_eq!(z.apply_live(v, t(i as i64), 3), None);
        }
        assert_eq!(z.apply_live(V, t(9), 3), Some(Event::Breach));
    }

    #[test]
    fn late_run_confirms_in_time_order_and_respects_the_gap() {
        let gap = Duration::minutes(30);
        let mut z = ZoneState::new(ZoneKind::Inclusion);
        assert_eq!(z.apply_late(V, t(0), 2, gap), None);
        assert_eq!(z.apply_late(V, t(1), 2, gap), Some(Event::Breach));
        assert_eq!(z.apply_late(V, t(2), 2, gap), None);
        assert_eq!(z.apply_late(C, t(3), 2, gap), Some(Event::Returned));
        // A single violation, then a long gap: the next one starts a new run.
        assert_eq!(z.apply_late(V, t(4), 2, gap), None);
        assert_eq!(z.apply_late(V, t(60), 2, gap), None);
        // Going back in time starts a new run too.
        assert_eq!(z.apply_late(V, t(5), 2, gap), None);
        assert_eq!(z.apply_late(V, t(6), 2, gap), Some(Event::Breach));
        // The live state never moved.
        assert_eq!(z.status(), ZoneStatus::Unknown);
    }

    #[test]
    fn late_fixes_inside_a_live_episode_raise_nothing() {
        let gap = Duration::minutes(30);
        let mut z = ZoneState::new(ZoneKind::Inclusion);
        z.apply_live(V, t(10), 2);
        assert_eq!(z.apply_live(V, t(11), 2), Some(Event::Breach));
        // Backlog from within the open episode.
        assert_eq!(z.apply_late(V, t(12), 2, gap), None);
        assert_eq!(z.apply_late(V, t(13), 2, gap), None);
        assert_eq!(z.apply_live(C, t(20), 2), Some(Event::Returned));
        // Backlog from within the closed episode.
        assert_eq!(z.apply_late(V, t(14), 2, gap), None);
        assert_eq!(z.apply_late(V, t(15), 2, gap), None);
        // Backlog from before it is fresh news.
        assert_eq!(z.apply_late(V, t(2), 2, gap), None);
        assert_eq!(z.apply_late(V, t(3), 2, gap), Some(Event::Breach));
    }

    #[test]
    fn a_zone_that_changes_kind_starts_over() {
        let mut p = PersonState::default();
        let id = uuid::Uuid::nil();
        p.zone_mut(id, ZoneKind::Inclusion).apply_live(V, t(0), 2);
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

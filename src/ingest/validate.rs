//! Plausibility of a fix: the one check every ingest path runs on each position before it
//! enters the pipeline, whatever protocol or transport brought it.
//!
//! A decoder tells us what the device *said*; this module decides whether it can be believed.
//! A position is kept either way, as evidence of what the device sent, but one that fails here
//! never moves the fence:
//!
//! * **Implausible** ([`Fix::implausible`] holds the reasons): coordinates beyond ±90 / ±180,
//!   a number that is not finite or is beyond what any wearer or receiver produces (speed,
//!   course, accuracy, altitude, HDOP, battery), a time that is not a date, or a time further
//!   than `max_fix_age` from the receipt in either direction (the year 1000, 2200, a GPS week
//!   rollover). A value that cannot be a measurement is not stored as one (its column is
//!   empty) and is quoted in the reason instead; a time that cannot be believed is replaced by
//!   the receipt time, with the device's own time in the reason, so that the position sits in
//!   the track where it arrived. A device that sends one impossible number gives no reason to
//!   trust the others, so the whole fix is kept out of the fence.
//! * **Clock skew** ([`Fix::clock_skew`]): a time more than `max_fix_ahead` ahead of the
//!   receipt but within `max_fix_age`: a device clock running fast (or a wrong time zone). The
//!   fix keeps its time and is fenced, but as a late fix, so it can never become the newest
//!   and turn every honest fix after it into a late one.
//!
//! Every fault is counted in `ewall_fixes_implausible_total{protocol, reason}`, `reason` being
//! one of [`FAULT_LABELS`].
//!
//! # Calling it
//!
//! Paths that decode with the protocol crate and call `IngestContext::submit` are covered
//! already ([`super::convert`] calls [`IngestConfig::screen`] on each position). A path that
//! builds [`Fix`] values itself (the MQTT JSON schema, for one) calls
//! `context.rules().screen(&mut fix, None)` on each, counts the returned labels with
//! `context.count_faults(protocol, &labels)`, and only then submits.
//!
//! Coordinates that are not numbers at all (NaN, infinity) cannot be stored; [`screen`]
//! returns [`Unstorable`] for them and the frame is rejected unacknowledged.
//!
//! [`screen`]: IngestConfig::screen

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::model::Fix;

/// Fastest ground speed believed, km/h: above an airliner's, far above any wearer's.
pub const MAX_SPEED_KMH: f64 = 2_000.0;
/// Largest accuracy radius believed, metres: a cell-tower fix in open country is a few tens of
/// kilometres at worst.
pub const MAX_ACCURACY_M: f64 = 100_000.0;
/// Lowest altitude believed, metres (the Dead Sea shore is at -430 m).
pub const MIN_ALTITUDE_M: f64 = -1_000.0;
/// Highest altitude believed, metres (above an airliner's ceiling).
pub const MAX_ALTITUDE_M: f64 = 20_000.0;
/// Largest HDOP believed (receivers report 99.9 for "no fix").
pub const MAX_HDOP: f64 = 100.0;

/// The `reason` labels of `ewall_fixes_implausible_total`.
pub const FAULT_LABELS: [&str; 10] = [
    "latitude",
    "longitude",
    "speed",
    "course",
    "accuracy",
    "altitude",
    "hdop",
    "battery",
    "time",
    "clock_skew",
];

/// The `[ingest]` section: how far from its receipt a fix time may be.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// A fix time further than this from its receipt, before or after, is implausible: stored
    /// at the receipt time with the device's time in the reason, never fenced. Long enough for
    /// any blind-area backlog a wristband holds.
    #[serde(with = "humantime_serde")]
    pub max_fix_age: Duration,
    /// A fix time further than this ahead of its receipt is a device clock running fast: the
    /// fix is flagged `clock_skew` and evaluated as late.
    #[serde(with = "humantime_serde")]
    pub max_fix_ahead: Duration,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            max_fix_age: Duration::from_secs(30 * 86_400),
            max_fix_ahead: Duration::from_secs(600),
        }
    }
}

/// A position that cannot be stored at all: a coordinate that is not a number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("position cannot be stored: {0}")]
pub struct Unstorable(pub String);

impl IngestConfig {
    /// Checks the values; an error names the key (within `[ingest]`) and the problem.
    ///
    /// # Errors
    /// `(key, problem)` for the first bad value.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.max_fix_ahead.is_zero() {
            return Err(("max_fix_ahead", "must be longer than zero".into()));
        }
        if self.max_fix_age <= self.max_fix_ahead {
            return Err((
                "max_fix_age",
                format!(
                    "must be longer than max_fix_ahead ({:?})",
                    self.max_fix_ahead
                ),
            ));
        }
        Ok(())
    }

    /// Checks one fix (see the module docs), sets [`Fix::implausible`] and [`Fix::clock_skew`],
    /// clears the values that cannot be measurements, and returns the fault labels found (empty
    /// for a plausible fix). `unreadable_time` is the device's time as sent when it did not form
    /// a date (`Position::unreadable_time`).
    ///
    /// # Errors
    /// [`Unstorable`] when a coordinate is not a finite number.
    pub fn screen(
        &self,
        fix: &mut Fix,
        unreadable_time: Option<&str>,
    ) -> Result<Vec<&'static str>, Unstorable> {
        if !fix.lat.is_finite() || !fix.lon.is_finite() {
            return Err(Unstorable(format!(
                "latitude {:?}, longitude {:?}",
                fix.lat, fix.lon
            )));
        }
        let mut faults = Faults::default();
        if !(-90.0..=90.0).contains(&fix.lat) {
            faults.add("latitude", format!("latitude {:?} beyond ±90", fix.lat));
        }
        if !(-180.0..=180.0).contains(&fix.lon) {
            faults.add("longitude", format!("longitude {:?} beyond ±180", fix.lon));
        }
        faults.bound(&mut fix.speed_kmh, "speed", "speed_kmh", 0.0, MAX_SPEED_KMH);
        faults.bound(&mut fix.course, "course", "course", 0.0, 360.0);
        faults.bound(
            &mut fix.accuracy_m,
            "accuracy",
            "accuracy_m",
            0.0,
            MAX_ACCURACY_M,
        );
        faults.bound(
            &mut fix.altitude_m,
            "altitude",
            "altitude_m",
            MIN_ALTITUDE_M,
            MAX_ALTITUDE_M,
        );
        faults.bound(&mut fix.hdop, "hdop", "hdop", 0.0, MAX_HDOP);
        if let Some(battery) = fix.battery_pct.filter(|&b| b > 100) {
            faults.add("battery", format!("battery_pct {battery} beyond 100"));
            fix.battery_pct = None;
        }
        self.check_time(fix, unreadable_time, &mut faults);
        if !faults.reasons.is_empty() {
            fix.implausible = Some(faults.reasons.join("; "));
        }
        Ok(faults.labels)
    }

    fn check_time(&self, fix: &mut Fix, unreadable_time: Option<&str>, faults: &mut Faults) {
        if let Some(sent) = unreadable_time {
            faults.add(
                "time",
                format!("time {sent:?} as sent is not a date; recorded at receipt"),
            );
            fix.time = fix.received_at;
            return;
        }
        let ahead = fix.time.signed_duration_since(fix.received_at);
        let max_age = TimeDelta::from_std(self.max_fix_age).unwrap_or(TimeDelta::MAX);
        let max_ahead = TimeDelta::from_std(self.max_fix_ahead).unwrap_or(TimeDelta::MAX);
        if ahead > max_age || ahead < -max_age {
            faults.add(
                "time",
                format!(
                    "time {} is {} days from receipt; recorded at receipt",
                    show(fix.time),
                    ahead.num_days()
                ),
            );
            fix.time = fix.received_at;
        } else if ahead > max_ahead {
            fix.clock_skew = true;
            faults.labels.push("clock_skew");
        }
    }
}

/// A time as RFC 3339, or chrono's own form for years RFC 3339 cannot write.
fn show(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// What [`IngestConfig::screen`] found so far.
#[derive(Default)]
struct Faults {
    labels: Vec<&'static str>,
    reasons: Vec<String>,
}

impl Faults {
    fn add(&mut self, label: &'static str, reason: String) {
        self.labels.push(label);
        self.reasons.push(reason);
    }

    /// Clears `value` and records why when it is not finite or outside `min..=max`.
    fn bound(
        &mut self,
        value: &mut Option<f64>,
        label: &'static str,
        field: &str,
        min: f64,
        max: f64,
    ) {
        if let Some(v) = *value {
            if !v.is_finite() || v < min || v > max {
                self.add(label, format!("{field} {v:?} beyond {min}..={max}"));
                *value = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::model::PositionSource;

    fn fix() -> Fix {
        let at = Utc.with_ymd_and_hms(2026, 5, 1, 8, 0, 0).unwrap();
        Fix {
            device_id: "864717003283581".into(),
            person_id: uuid::Uuid::from_u128(1),
            time: at,
            received_at: at,
            lat: 25.5,
            lon: 112.3,
            valid: true,
            accuracy_m: Some(12.0),
            speed_kmh: Some(4.0),
            course: Some(360.0),
            altitude_m: Some(-20.0),
            satellites: Some(9),
            hdop: Some(99.9),
            source: PositionSource::Gps,
            battery_pct: Some(100),
            archived: false,
            integrity_mismatch: false,
            protocol: "gt06".into(),
            wifi_bssids: Vec::new(),
            clock_skew: false,
            implausible: None,
            raw: Default::default(),
        }
    }

    #[test]
    fn a_plausible_fix_passes_untouched() {
        let mut f = fix();
        let labels = IngestConfig::default().screen(&mut f, None).unwrap();
        assert!(labels.is_empty());
        assert_eq!(f, fix());
    }

    #[test]
    fn each_bound_is_checked_and_the_value_quoted() {
        let rules = IngestConfig::default();
        type Spoil = fn(&mut Fix);
        let cases: [(&str, Spoil); 8] = [
            ("latitude", |f| f.lat = 180.0),
            ("longitude", |f| f.lon = -180.5),
            ("speed", |f| f.speed_kmh = Some(f64::INFINITY)),
            ("course", |f| f.course = Some(-1.0)),
            ("accuracy", |f| f.accuracy_m = Some(1e308)),
            ("altitude", |f| f.altitude_m = Some(f64::NAN)),
            ("hdop", |f| f.hdop = Some(250.0)),
            ("battery", |f| f.battery_pct = Some(255)),
        ];
        for (label, spoil) in cases {
            let mut f = fix();
            spoil(&mut f);
            let labels = rules.screen(&mut f, None).unwrap();
            assert_eq!(labels, [label]);
            let reason = f.implausible.as_deref().unwrap();
            assert!(reason.contains("beyond"), "{reason}");
        }
        let mut f = fix();
        f.accuracy_m = Some(1e308);
        rules.screen(&mut f, None).unwrap();
        assert_eq!(f.accuracy_m, None);
        assert_eq!(
            f.implausible.as_deref(),
            Some("accuracy_m 1e308 beyond 0..=100000")
        );
    }

    #[test]
    fn coordinates_that_are_not_numbers_cannot_be_stored() {
        let mut f = fix();
        f.lat = f64::NAN;
        assert!(IngestConfig::default().screen(&mut f, None).is_err());
    }

    #[test]
    fn times_far_off_are_moved_to_the_receipt_and_a_fast_clock_is_skew() {
        let rules = IngestConfig::default();
        for (ahead, labels, skew) in [
            (TimeDelta::minutes(10), vec![], false),
            (TimeDelta::minutes(11), vec!["clock_skew"], true),
            (TimeDelta::days(29), vec!["clock_skew"], true),
            (TimeDelta::days(31), vec!["time"], false),
            (TimeDelta::days(-29), vec![], false),
            (TimeDelta::days(-31), vec!["time"], false),
        ] {
            let mut f = fix();
            f.time = f.received_at + ahead;
            assert_eq!(rules.screen(&mut f, None).unwrap(), labels, "{ahead}");
            assert_eq!(f.clock_skew, skew, "{ahead}");
            if labels == ["time"] {
                assert_eq!(f.time, f.received_at);
                assert!(f.implausible.unwrap().contains("days from receipt"));
            } else {
                assert_eq!(f.time, f.received_at + ahead);
                assert_eq!(f.implausible, None);
            }
        }
        let mut f = fix();
        f.time = Utc.with_ymd_and_hms(-262_000, 1, 1, 0, 0, 0).unwrap();
        assert_eq!(rules.screen(&mut f, None).unwrap(), ["time"]);
        assert!(f.implausible.unwrap().contains("-262000"));
        let mut f = fix();
        assert_eq!(
            rules.screen(&mut f, Some("26-13-01 08:00:00")).unwrap(),
            ["time"]
        );
        assert!(f.implausible.unwrap().contains("26-13-01 08:00:00"));
    }

    #[test]
    fn the_window_must_be_wider_than_the_skew() {
        let rules = IngestConfig {
            max_fix_age: Duration::from_secs(60),
            max_fix_ahead: Duration::from_secs(600),
        };
        assert_eq!(rules.validate().unwrap_err().0, "max_fix_age");
        assert!(IngestConfig::default().validate().is_ok());
    }
}

//! Supervision levels: what `strict`, `normal` and `lenient` mean to the fence engine and to the
//! severity of the alerts it raises. The `[levels.strict]`, `[levels.normal]` and
//! `[levels.lenient]` sections of the configuration.
//!
//! Role in the pipeline: the fence engine reads [`LevelConfig::confirmation`] for each fix (by
//! the person's level, which the registry knows); the pipeline reads [`LevelsConfig::severity`]
//! when it turns a transition into an alert and [`LevelConfig::low_battery_pct`] for each
//! fix's battery; the API reads [`LevelConfig::report_interval_s`] when a person's level
//! changes (the devices are told the new interval); the offline deadline reads
//! [`LevelsConfig::offline_after`]. Each key of a section is optional and falls back to that
//! level's own default, not to another level's; `low_battery_pct` falls back to the global
//! `[levels] low_battery_pct`.
//!
//! # Defaults, and why
//!
//! A breach needs both `confirm_fixes` consecutive definite fixes and `confirm_seconds` from the
//! first of them to the current one. The fix count stops a single multipath jump; the seconds
//! stop a correlated burst (indoor multipath, a bus shelter's reflections) of two to four fixes,
//! which the count alone lets through whenever the device reports every few seconds. The
//! figures behind the defaults are in the README ("False alerts"): the real four-device
//! recording run along a real boundary and a synthetic night at home with multipath bursts of
//! 2–4 fixes at a 30 s interval (up to 90 s from first to last fix of a burst).
//!
//! * `normal`: 2 fixes and 120 s. 120 s is the shortest round figure above the longest burst
//!   with margin; every true breach is raised within 120 s plus one reporting interval.
//! * `strict`: 2 fixes and 60 s, critical. Closer supervision accepts a false alarm from a long
//!   burst in exchange for a breach raised a minute sooner.
//! * `lenient`: 3 fixes and 300 s, medium.
//!
//! `report_interval_s` is the interval a device is set to report at (a `set_interval` command
//! when the level changes), and `offline_after_s` the silence after the last message received
//! that counts as lost supervision. The deadline is several missed reports, not one: a
//! wristband in a lift, an underground passage or a cell handover misses a few reports and
//! reconnects, while a device switched off or shielded stays silent.
//!
//! * `strict`: a report every 60 s, offline after 600 s (ten missed reports).
//! * `normal`: every 300 s, offline after 1,800 s (six).
//! * `lenient`: every 900 s, offline after 3,600 s (four).
//!
//! `low_battery_pct` (20 %, globally or per level): a fix reporting this charge or less raises
//! `low_battery` even when the device raises no alarm of its own. At a report a minute a
//! wristband has a few hours left at 20 %, time for an officer to call before it goes silent.
//!
//! Check-in windows (`checkin_windows`, `"HH:MM-HH:MM"` in the person's time zone, a window may
//! span midnight) are empty by default: a check-in duty is an officer's decision, not a default.

use chrono::NaiveTime;
use serde::{Deserialize, Serialize};

use crate::model::{AlertKind, Severity, SupervisionLevel};

/// How a run of definite violating fixes becomes a breach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Confirmation {
    /// Consecutive definite violating fixes needed (at least 1).
    pub fixes: u32,
    /// Seconds from the first fix of the run to the current one needed.
    pub seconds: u32,
}

/// One level's settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LevelConfig {
    /// Consecutive definite violating fixes that confirm a breach (at least 1).
    pub confirm_fixes: u32,
    /// Seconds from the first definite violating fix of a run to the current one before the
    /// run confirms a breach (0: the fix count alone decides).
    pub confirm_seconds: u32,
    /// Severity of breach alerts (zone exit and entry, device separation, and the other alarms
    /// that depend on the level) for persons at this level.
    pub severity: Severity,
    /// Seconds between reports a device is set to at this level.
    pub report_interval_s: u32,
    /// Seconds of silence (since the last message received) that count as lost supervision.
    pub offline_after_s: u32,
    /// A fix reporting this battery charge (percent) or less raises `low_battery`.
    pub low_battery_pct: u8,
    /// Daily windows in which the person must check in, in their time zone.
    pub checkin_windows: Vec<CheckinWindow>,
}

/// A daily check-in window, `"HH:MM-HH:MM"` in the person's time zone; a window whose end is
/// not after its start spans midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CheckinWindow {
    /// Opens at (local time).
    pub opens: NaiveTime,
    /// Closes at (local time).
    pub closes: NaiveTime,
}

impl TryFrom<String> for CheckinWindow {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        let bad = || format!("{text:?} is not a window like \"20:00-21:00\"");
        let (opens, closes) = text.split_once('-').ok_or_else(bad)?;
        let time = |t: &str| NaiveTime::parse_from_str(t.trim(), "%H:%M").map_err(|_| bad());
        let window = CheckinWindow {
            opens: time(opens)?,
            closes: time(closes)?,
        };
        if window.opens == window.closes {
            return Err(format!("{text:?} opens and closes at the same time"));
        }
        Ok(window)
    }
}

impl From<CheckinWindow> for String {
    fn from(w: CheckinWindow) -> String {
        format!("{}-{}", w.opens.format("%H:%M"), w.closes.format("%H:%M"))
    }
}

impl LevelConfig {
    /// The confirmation rule of this level.
    pub fn confirmation(&self) -> Confirmation {
        Confirmation {
            fixes: self.confirm_fixes.max(1),
            seconds: self.confirm_seconds,
        }
    }

    fn default_for(level: SupervisionLevel) -> LevelConfig {
        match level {
            SupervisionLevel::Strict => LevelConfig {
                confirm_fixes: 2,
                confirm_seconds: 60,
                severity: Severity::Critical,
                report_interval_s: 60,
                offline_after_s: 600,
                low_battery_pct: DEFAULT_LOW_BATTERY_PCT,
                checkin_windows: Vec::new(),
            },
            SupervisionLevel::Normal => LevelConfig {
                confirm_fixes: 2,
                confirm_seconds: 180,
                severity: Severity::High,
                report_interval_s: 300,
                offline_after_s: 1_800,
                low_battery_pct: DEFAULT_LOW_BATTERY_PCT,
                checkin_windows: Vec::new(),
            },
            SupervisionLevel::Lenient => LevelConfig {
                confirm_fixes: 3,
                confirm_seconds: 300,
                severity: Severity::Medium,
                report_interval_s: 900,
                offline_after_s: 3_600,
                low_battery_pct: DEFAULT_LOW_BATTERY_PCT,
                checkin_windows: Vec::new(),
            },
        }
    }
}

/// Battery charge, percent, at or below which a fix raises `low_battery` (module docs).
pub const DEFAULT_LOW_BATTERY_PCT: u8 = 20;

/// One `[levels.*]` section as written: every key optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LevelSection {
    confirm_fixes: Option<u32>,
    confirm_seconds: Option<u32>,
    severity: Option<Severity>,
    report_interval_s: Option<u32>,
    offline_after_s: Option<u32>,
    low_battery_pct: Option<u8>,
    checkin_windows: Option<Vec<CheckinWindow>>,
}

impl LevelSection {
    fn over(self, level: SupervisionLevel, low_battery_pct: Option<u8>) -> LevelConfig {
        let base = LevelConfig::default_for(level);
        LevelConfig {
            confirm_fixes: self.confirm_fixes.unwrap_or(base.confirm_fixes),
            confirm_seconds: self.confirm_seconds.unwrap_or(base.confirm_seconds),
            severity: self.severity.unwrap_or(base.severity),
            report_interval_s: self.report_interval_s.unwrap_or(base.report_interval_s),
            offline_after_s: self.offline_after_s.unwrap_or(base.offline_after_s),
            low_battery_pct: self
                .low_battery_pct
                .or(low_battery_pct)
                .unwrap_or(base.low_battery_pct),
            checkin_windows: self.checkin_windows.unwrap_or(base.checkin_windows),
        }
    }
}

/// The `[levels]` table as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct LevelsSections {
    /// The global threshold, for the levels that set none.
    low_battery_pct: Option<u8>,
    strict: LevelSection,
    normal: LevelSection,
    lenient: LevelSection,
}

impl From<LevelsSections> for LevelsConfig {
    fn from(s: LevelsSections) -> LevelsConfig {
        let global = s.low_battery_pct;
        LevelsConfig {
            strict: s.strict.over(SupervisionLevel::Strict, global),
            normal: s.normal.over(SupervisionLevel::Normal, global),
            lenient: s.lenient.over(SupervisionLevel::Lenient, global),
        }
    }
}

/// The `[levels]` table: one [`LevelConfig`] per supervision level.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "LevelsSections")]
pub struct LevelsConfig {
    /// `[levels.strict]`.
    pub strict: LevelConfig,
    /// `[levels.normal]`.
    pub normal: LevelConfig,
    /// `[levels.lenient]`.
    pub lenient: LevelConfig,
}

impl Default for LevelsConfig {
    fn default() -> Self {
        LevelsSections::default().into()
    }
}

impl LevelsConfig {
    /// The settings of one level.
    pub fn get(&self, level: SupervisionLevel) -> &LevelConfig {
        match level {
            SupervisionLevel::Strict => &self.strict,
            SupervisionLevel::Normal => &self.normal,
            SupervisionLevel::Lenient => &self.lenient,
        }
    }

    /// How long a person's devices may stay silent before supervision counts as lost.
    pub fn offline_after(&self, level: SupervisionLevel) -> std::time::Duration {
        std::time::Duration::from_secs(u64::from(self.get(level).offline_after_s))
    }

    /// The interval a person's devices are set to report at.
    pub fn report_interval(&self, level: SupervisionLevel) -> std::time::Duration {
        std::time::Duration::from_secs(u64::from(self.get(level).report_interval_s))
    }

    /// Severity of an alert of `kind` for a person at `level`: fixed for the kinds whose urgency
    /// does not depend on the person (SOS and a fall critical, a return info, an implausible
    /// jump low, low battery by the built-in table), the level's `severity` for the rest
    /// (breaches, tamper, offline).
    pub fn severity(&self, kind: AlertKind, level: SupervisionLevel) -> Severity {
        match kind {
            AlertKind::Returned | AlertKind::Sos | AlertKind::Fall | AlertKind::LowBattery => {
                Severity::of(kind, level)
            }
            AlertKind::ImplausibleJump => Severity::Low,
            // Paperwork to renew, not a person to find.
            AlertKind::OrderExpiring => Severity::Low,
            _ => self.get(level).severity,
        }
    }

    /// Checks the values; an error names the key (within `[levels]`) and the problem.
    ///
    /// # Errors
    /// `(key, problem)` for the first value out of range.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        for (key, level) in [
            ("strict.confirm_fixes", &self.strict),
            ("normal.confirm_fixes", &self.normal),
            ("lenient.confirm_fixes", &self.lenient),
        ] {
            if level.confirm_fixes == 0 {
                return Err((key, "must be at least 1".into()));
            }
        }
        for (keys, level) in [
            (
                ("strict.report_interval_s", "strict.offline_after_s"),
                &self.strict,
            ),
            (
                ("normal.report_interval_s", "normal.offline_after_s"),
                &self.normal,
            ),
            (
                ("lenient.report_interval_s", "lenient.offline_after_s"),
                &self.lenient,
            ),
        ] {
            // The range a set_interval command accepts.
            if !(1..=86_400).contains(&level.report_interval_s) {
                return Err((keys.0, "must be 1 to 86400 seconds".into()));
            }
            if level.offline_after_s <= level.report_interval_s {
                return Err((
                    keys.1,
                    format!(
                        "must be longer than the reporting interval ({} s): one late report is \
                         not lost supervision",
                        level.report_interval_s
                    ),
                ));
            }
        }
        for (key, level) in [
            ("strict.low_battery_pct", &self.strict),
            ("normal.low_battery_pct", &self.normal),
            ("lenient.low_battery_pct", &self.lenient),
        ] {
            if level.low_battery_pct > 100 {
                return Err((key, "must be a percentage, 0 to 100".into()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partial_section_keeps_its_own_levels_defaults() {
        let levels: LevelsConfig =
            toml::from_str("[strict]\nconfirm_seconds = 30\n[lenient]\nseverity = \"low\"\n")
                .expect("valid");
        assert_eq!(levels.strict.confirm_seconds, 30);
        assert_eq!(levels.strict.confirm_fixes, 2);
        assert_eq!(levels.strict.severity, Severity::Critical);
        assert_eq!(
            levels.normal,
            LevelConfig::default_for(SupervisionLevel::Normal)
        );
        assert_eq!(levels.lenient.severity, Severity::Low);
        assert_eq!(levels.lenient.confirm_seconds, 300);
        assert!(toml::from_str::<LevelsConfig>("[normal]\nconfirm = 3\n").is_err());
        assert!(toml::from_str::<LevelsConfig>("[urgent]\n").is_err());
        let windows: LevelsConfig =
            toml::from_str("[strict]\ncheckin_windows = [\"20:00-21:00\", \"23:30-00:30\"]\n")
                .expect("valid");
        assert_eq!(windows.strict.checkin_windows.len(), 2);
        assert_eq!(
            String::from(windows.strict.checkin_windows[1]),
            "23:30-00:30"
        );
        assert!(windows.normal.checkin_windows.is_empty());
        for bad in ["\"20:00\"", "\"25:00-26:00\"", "\"08:00-08:00\""] {
            let text = format!("[strict]\ncheckin_windows = [{bad}]\n");
            assert!(toml::from_str::<LevelsConfig>(&text).is_err(), "{bad}");
        }
    }

    #[test]
    fn intervals_deadlines_and_battery_thresholds_have_defaults_and_are_checked() {
        let levels: LevelsConfig = toml::from_str(
            "low_battery_pct = 25\n[strict]\nreport_interval_s = 30\nlow_battery_pct = 40\n",
        )
        .expect("valid");
        assert_eq!(levels.strict.report_interval_s, 30);
        assert_eq!(levels.strict.offline_after_s, 600);
        assert_eq!(levels.strict.low_battery_pct, 40);
        assert_eq!(levels.normal.low_battery_pct, 25);
        assert_eq!(
            levels.offline_after(SupervisionLevel::Lenient),
            std::time::Duration::from_secs(3_600)
        );
        assert_eq!(
            levels.report_interval(SupervisionLevel::Normal),
            std::time::Duration::from_secs(300)
        );
        assert_eq!(
            LevelsConfig::default().normal.low_battery_pct,
            DEFAULT_LOW_BATTERY_PCT
        );
        assert!(levels.validate().is_ok());
        let mut short = LevelsConfig::default();
        short.normal.offline_after_s = 300;
        assert_eq!(
            short.validate().map_err(|e| e.0),
            Err("normal.offline_after_s")
        );
        let mut zero = LevelsConfig::default();
        zero.lenient.report_interval_s = 0;
        assert_eq!(
            zero.validate().map_err(|e| e.0),
            Err("lenient.report_interval_s")
        );
        let mut over = LevelsConfig::default();
        over.strict.low_battery_pct = 101;
        assert_eq!(
            over.validate().map_err(|e| e.0),
            Err("strict.low_battery_pct")
        );
    }

    #[test]
    fn severity_follows_the_level_for_breaches_only() {
        let levels = LevelsConfig::default();
        use SupervisionLevel::*;
        assert_eq!(
            levels.severity(AlertKind::ZoneExit, Strict),
            Severity::Critical
        );
        assert_eq!(levels.severity(AlertKind::ZoneExit, Normal), Severity::High);
        assert_eq!(
            levels.severity(AlertKind::DeviceSeparation, Lenient),
            Severity::Medium
        );
        assert_eq!(levels.severity(AlertKind::Returned, Strict), Severity::Info);
        assert_eq!(levels.severity(AlertKind::Sos, Lenient), Severity::Critical);
        assert_eq!(
            levels.severity(AlertKind::ImplausibleJump, Strict),
            Severity::Low
        );
        let mut zero = LevelsConfig::default();
        zero.normal.confirm_fixes = 0;
        assert_eq!(
            zero.validate().map_err(|e| e.0),
            Err("normal.confirm_fixes")
        );
    }
}

//! Weekly schedules of zones (`properties.schedule`): when a zone is in force, read on the
//! wall clock of the person's IANA time zone.
//!
//! Role: the fence engine asks [`Schedule::in_force`] for every fix against a scheduled zone
//! (a scheduled inclusion zone is a curfew); timers ask [`Schedule::next_opening`] and
//! [`Schedule::next_closing`] when the next window opens or closes after an instant, so a
//! curfew can be checked at its opening without waiting for a fix. Pure code: no clock, no
//! I/O, no state.
//!
//! # Format and meaning
//!
//! `[{"days": ["mon", "tue"], "from": "22:00", "to": "06:00"}, ...]`: each window opens on
//! each listed day at `from` and closes at `to`, the same day when `to` is later than `from`,
//! the next day when it is not (the window spans midnight: Monday 22:00 to Tuesday 06:00; a
//! `to` equal to `from` makes a window of a whole day). `to` may be `"24:00"` (until midnight). Days are `mon` … `sun`; times `HH:MM`, 24-hour.
//! The zone is in force at an instant when the person's local wall-clock time at that instant
//! lies in a window (from inclusive, to exclusive).
//!
//! Wall-clock reading settles daylight-saving changes without special cases: on a spring-forward
//! night the skipped local hour never happens (a window opening at 02:30 in Berlin opens at
//! 03:00 local, the moment the clocks jump past 02:30), and on a fall-back night the repeated
//! hour happens twice and is inside a window both times it reads inside it.

use std::fmt;

use chrono::{
    DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, Offset, TimeZone, Timelike, Utc,
};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Most windows one schedule may have.
pub const MAX_WINDOWS: usize = 32;

/// Minutes in a day; a window's `to` may equal it ("24:00").
const DAY_MINUTES: u16 = 24 * 60;

/// How far ahead a next opening or closing is looked for: a weekly schedule repeats within
/// seven days, and one more day covers a window spanning midnight into the eighth.
const HORIZON_DAYS: i64 = 9;

/// Why a schedule was refused; the message names the window and the value.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ScheduleError {
    /// The schedule is not a list of window objects.
    #[error("schedule must be a list of windows like {{\"days\": [\"mon\"], \"from\": \"22:00\", \"to\": \"06:00\"}}: {0}")]
    Shape(String),
    /// An empty list.
    #[error("schedule has no windows; leave it out for a zone that is always in force")]
    Empty,
    /// More than [`MAX_WINDOWS`] windows.
    #[error("schedule has {0} windows; at most 32 are allowed")]
    TooManyWindows(usize),
    /// A day name that is not `mon` … `sun`.
    #[error(
        "schedule window {window}: {day:?} is not a day; use mon, tue, wed, thu, fri, sat or sun"
    )]
    BadDay {
        /// Index of the window.
        window: usize,
        /// The value given.
        day: String,
    },
    /// A window with no days.
    #[error("schedule window {0} has no days")]
    NoDays(usize),
    /// A time that is not `HH:MM`.
    #[error("schedule window {window}: {field} {value:?} is not a time; use HH:MM from 00:00 to 23:59 (\"to\" may be 24:00)")]
    BadTime {
        /// Index of the window.
        window: usize,
        /// `from` or `to`.
        field: &'static str,
        /// The value given.
        value: String,
    },
}

/// A day of the week.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Day {
    /// Monday.
    Mon,
    /// Tuesday.
    Tue,
    /// Wednesday.
    Wed,
    /// Thursday.
    Thu,
    /// Friday.
    Fri,
    /// Saturday.
    Sat,
    /// Sunday.
    Sun,
}

impl Day {
    const ALL: [Day; 7] = [
        Day::Mon,
        Day::Tue,
        Day::Wed,
        Day::Thu,
        Day::Fri,
        Day::Sat,
        Day::Sun,
    ];

    fn parse(text: &str) -> Option<Day> {
        Day::ALL.into_iter().find(|d| d.as_str() == text)
    }

    /// The wire name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Day::Mon => "mon",
            Day::Tue => "tue",
            Day::Wed => "wed",
            Day::Thu => "thu",
            Day::Fri => "fri",
            Day::Sat => "sat",
            Day::Sun => "sun",
        }
    }

    fn of(weekday: chrono::Weekday) -> Day {
        Day::ALL[weekday.num_days_from_monday() as usize]
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }

    fn previous(self) -> Day {
        Day::ALL[(self as usize + 6) % 7]
    }
}

/// One weekly window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Window {
    /// Days it opens on, one bit per [`Day`] (Monday lowest).
    days: u8,
    /// Opening, minutes after local midnight (0..1440).
    from: u16,
    /// Closing, minutes after local midnight (0..=1440); not later than `from`: the next day.
    to: u16,
}

impl Window {
    /// Whether a local weekday and minute of the day lie in the window.
    fn contains(&self, day: Day, minute: u16) -> bool {
        let opens_on = |d: Day| self.days & d.bit() != 0;
        if self.from < self.to {
            opens_on(day) && (self.from..self.to).contains(&minute)
        } else {
            (opens_on(day) && minute >= self.from) || (opens_on(day.previous()) && minute < self.to)
        }
    }

    /// The days it opens on, Monday first.
    pub fn days(&self) -> Vec<Day> {
        Day::ALL
            .into_iter()
            .filter(|d| self.days & d.bit() != 0)
            .collect()
    }
}

/// A zone's weekly schedule: one or more [`Window`]s (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Schedule {
    windows: Vec<Window>,
}

/// A moment a schedule's state changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    /// When, UTC.
    pub at: DateTime<Utc>,
    /// `true`: a window opens (the zone comes into force); `false`: it closes.
    pub opens: bool,
}

/// One window as written (`properties.schedule[i]`).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WindowText {
    /// The days the window opens on.
    #[schema(value_type = Vec<Day>, min_items = 1)]
    pub days: Vec<String>,
    /// Opening, local time `HH:MM`.
    #[schema(pattern = r"^([01][0-9]|2[0-3]):[0-5][0-9]$", example = "22:00")]
    pub from: String,
    /// Closing, local time `HH:MM` (`24:00`: midnight); not later than `from`: the next day.
    #[schema(
        pattern = r"^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$",
        example = "06:00"
    )]
    pub to: String,
}

fn parse_time(text: &str, allow_midnight_end: bool) -> Option<u16> {
    let bytes = text.as_bytes();
    if bytes.len() != 5 || bytes[2] != b':' {
        return None;
    }
    let digits = |s: &str| -> Option<u16> {
        s.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    let (hours, minutes) = (digits(&text[..2])?, digits(&text[3..])?);
    match (hours, minutes) {
        (24, 0) if allow_midnight_end => Some(DAY_MINUTES),
        (0..=23, 0..=59) => Some(hours * 60 + minutes),
        _ => None,
    }
}

fn format_time(minutes: u16) -> String {
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

impl Schedule {
    /// Reads a schedule from its JSON form (`properties.schedule`).
    ///
    /// # Errors
    /// A [`ScheduleError`] naming the first thing wrong.
    pub fn from_json(value: &serde_json::Value) -> Result<Schedule, ScheduleError> {
        let items = value
            .as_array()
            .ok_or_else(|| ScheduleError::Shape(format!("found {value}")))?;
        if items.is_empty() {
            return Err(ScheduleError::Empty);
        }
        if items.len() > MAX_WINDOWS {
            return Err(ScheduleError::TooManyWindows(items.len()));
        }
        let mut windows = Vec::with_capacity(items.len());
        for (index, item) in items.iter().enumerate() {
            let text: WindowText = serde_json::from_value(item.clone())
                .map_err(|e| ScheduleError::Shape(format!("window {index}: {e}")))?;
            let mut days = 0u8;
            for day in &text.days {
                let day = Day::parse(day).ok_or_else(|| ScheduleError::BadDay {
                    window: index,
                    day: day.clone(),
                })?;
                days |= day.bit();
            }
            if days == 0 {
                return Err(ScheduleError::NoDays(index));
            }
            let bad = |field, value: &str| ScheduleError::BadTime {
                window: index,
                field,
                value: value.to_owned(),
            };
            let from = parse_time(&text.from, false).ok_or_else(|| bad("from", &text.from))?;
            let to = parse_time(&text.to, true).ok_or_else(|| bad("to", &text.to))?;
            windows.push(Window { days, from, to });
        }
        Ok(Schedule { windows })
    }

    /// The JSON form, as [`Schedule::from_json`] reads it.
    pub fn to_json(&self) -> serde_json::Value {
        self.windows
            .iter()
            .map(|w| {
                serde_json::json!({
                    "days": w.days().iter().map(Day::as_str).collect::<Vec<_>>(),
                    "from": format_time(w.from),
                    "to": format_time(w.to),
                })
            })
            .collect()
    }

    /// The windows, in the order given.
    pub fn windows(&self) -> &[Window] {
        &self.windows
    }

    /// Whether the zone is in force at `at` for a person in time zone `tz`: the local
    /// wall-clock time lies in one of the windows.
    pub fn in_force(&self, at: DateTime<Utc>, tz: Tz) -> bool {
        let local = at.with_timezone(&tz).naive_local();
        let day = Day::of(local.weekday());
        let minute = (local.time().num_seconds_from_midnight() / 60) as u16;
        self.windows.iter().any(|w| w.contains(day, minute))
    }

    /// The first instant strictly after `after` at which the schedule's state changes (a
    /// window opens or closes), or `None` when it never changes (always or never in force).
    pub fn next_change(&self, after: DateTime<Utc>, tz: Tz) -> Option<Change> {
        let mut state = self.in_force(after, tz);
        for at in self.candidates(after, tz) {
            let now = self.in_force(at, tz);
            if now != state {
                return Some(Change { at, opens: now });
            }
            state = now;
        }
        None
    }

    /// When the next window opens strictly after `after` (not counting one already open).
    pub fn next_opening(&self, after: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        self.next_where(after, tz, true)
    }

    /// When the window open at (or next opening after) `after` closes.
    pub fn next_closing(&self, after: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        self.next_where(after, tz, false)
    }

    fn next_where(&self, after: DateTime<Utc>, tz: Tz, opens: bool) -> Option<DateTime<Utc>> {
        let mut from = after;
        // At most one change of the other sort comes first.
        for _ in 0..2 {
            let change = self.next_change(from, tz)?;
            if change.opens == opens {
                return Some(change.at);
            }
            from = change.at;
        }
        None
    }

    /// Every instant within the horizon after `after` at which the state may change, in
    /// order: each window boundary's local time on each day (both instants of a repeated
    /// local time) and every change of the zone's UTC offset (where a skipped or repeated
    /// hour moves the wall clock across a boundary).
    fn candidates(&self, after: DateTime<Utc>, tz: Tz) -> Vec<DateTime<Utc>> {
        let start = after.with_timezone(&tz).date_naive() - Duration::days(1);
        let mut out = Vec::new();
        for offset in 0..=HORIZON_DAYS {
            let date = start + Duration::days(offset);
            for window in &self.windows {
                for minute in [window.from, window.to] {
                    let local = local_at(date, minute);
                    match tz.from_local_datetime(&local) {
                        chrono::LocalResult::Single(t) => out.push(t.with_timezone(&Utc)),
                        chrono::LocalResult::Ambiguous(a, b) => {
                            out.push(a.with_timezone(&Utc));
                            out.push(b.with_timezone(&Utc));
                        }
                        // Skipped local time: the offset change below is the moment.
                        chrono::LocalResult::None => {}
                    }
                }
            }
        }
        let mut day_start = after - Duration::days(1);
        for _ in 0..=HORIZON_DAYS {
            let day_end = day_start + Duration::days(1);
            if let Some(t) = offset_change(tz, day_start, day_end) {
                out.push(t);
            }
            day_start = day_end;
        }
        out.retain(|t| *t > after);
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// Local `date` plus `minute` minutes (1440: the next midnight).
fn local_at(date: NaiveDate, minute: u16) -> NaiveDateTime {
    date.and_hms_opt(0, 0, 0).unwrap_or_default() + Duration::minutes(i64::from(minute))
}

/// The first instant in `(from, to]` whose UTC offset in `tz` differs from the one at `from`,
/// if any (at most one per day in every real time zone).
fn offset_change(tz: Tz, from: DateTime<Utc>, to: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let offset = |t: i64| {
        DateTime::from_timestamp(t, 0).map(|t| tz.offset_from_utc_datetime(&t.naive_utc()).fix())
    };
    // Whole seconds: every real offset change falls on one.
    let (mut lo, mut hi) = (from.timestamp(), to.timestamp());
    let before = offset(lo);
    if offset(hi) == before {
        return None;
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if offset(mid) == before {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    DateTime::from_timestamp(hi, 0)
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_json())
    }
}

impl Serialize for Schedule {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Schedule {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        Schedule::from_json(&value).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schedule(value: serde_json::Value) -> Schedule {
        Schedule::from_json(&value).expect("valid schedule")
    }

    fn curfew() -> Schedule {
        schedule(
            json!([{"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                         "from": "22:00", "to": "06:00"}]),
        )
    }

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    const SHANGHAI: Tz = chrono_tz::Asia::Shanghai;
    const BERLIN: Tz = chrono_tz::Europe::Berlin;

    #[test]
    fn bad_days_times_and_shapes_are_refused_by_name() {
        let err = |v: serde_json::Value| Schedule::from_json(&v).unwrap_err();
        assert_eq!(
            err(json!([{"days": ["monday"], "from": "22:00", "to": "06:00"}])),
            ScheduleError::BadDay {
                window: 0,
                day: "monday".into()
            }
        );
        assert!(matches!(
            err(json!([{"days": ["mon"], "from": "25:00", "to": "06:00"}])),
            ScheduleError::BadTime { field: "from", .. }
        ));
        assert!(matches!(
            err(json!([{"days": ["mon"], "from": "24:00", "to": "06:00"}])),
            ScheduleError::BadTime { field: "from", .. }
        ));
        assert!(matches!(
            err(json!([{"days": ["mon"], "from": "22:00", "to": "6:00"}])),
            ScheduleError::BadTime { field: "to", .. }
        ));
        assert!(matches!(
            err(json!([{"days": ["mon"], "from": "22:0a", "to": "06:00"}])),
            ScheduleError::BadTime { .. }
        ));
        assert_eq!(
            err(json!([{"days": [], "from": "22:00", "to": "06:00"}])),
            ScheduleError::NoDays(0)
        );
        assert_eq!(err(json!([])), ScheduleError::Empty);
        assert!(matches!(
            err(json!({"days": ["mon"]})),
            ScheduleError::Shape(_)
        ));
        assert!(matches!(
            err(json!([{"days": ["mon"], "from": "22:00", "to": "06:00", "tz": "UTC"}])),
            ScheduleError::Shape(_)
        ));
        let many: Vec<_> = (0..33)
            .map(|_| json!({"days": ["mon"], "from": "01:00", "to": "02:00"}))
            .collect();
        assert_eq!(err(json!(many)), ScheduleError::TooManyWindows(33));
        // What comes in goes out the same (days in week order, once each).
        let text = json!([{"days": ["sun", "mon", "mon"], "from": "08:30", "to": "24:00"}]);
        assert_eq!(
            schedule(text).to_json(),
            json!([{"days": ["mon", "sun"], "from": "08:30", "to": "24:00"}])
        );
    }

    #[test]
    fn a_window_spanning_midnight_covers_the_next_morning_in_shanghai() {
        let night = curfew();
        // Shanghai is UTC+8 all year: 22:00 local is 14:00 UTC.
        assert!(!night.in_force(utc(2026, 3, 2, 13, 59), SHANGHAI));
        assert!(night.in_force(utc(2026, 3, 2, 14, 0), SHANGHAI));
        assert!(night.in_force(utc(2026, 3, 2, 21, 59), SHANGHAI)); // 05:59
        assert!(!night.in_force(utc(2026, 3, 2, 22, 0), SHANGHAI)); // 06:00
        assert!(!night.in_force(utc(2026, 3, 2, 7, 0), SHANGHAI)); // 15:00, afternoon
                                                                   // Only Monday night: Tuesday 05:00 is in, Tuesday 23:00 and Monday 05:00 are not.
        let monday = schedule(json!([{"days": ["mon"], "from": "22:00", "to": "06:00"}]));
        // 2026-03-02 is a Monday.
        assert!(monday.in_force(utc(2026, 3, 2, 21, 0), SHANGHAI)); // Tue 05:00
        assert!(!monday.in_force(utc(2026, 3, 3, 15, 0), SHANGHAI)); // Tue 23:00
        assert!(!monday.in_force(utc(2026, 3, 1, 21, 0), SHANGHAI)); // Mon 05:00
        assert_eq!(
            monday.next_opening(utc(2026, 3, 2, 22, 0), SHANGHAI),
            Some(utc(2026, 3, 9, 14, 0))
        );
        assert_eq!(
            monday.next_closing(utc(2026, 3, 2, 15, 0), SHANGHAI),
            Some(utc(2026, 3, 2, 22, 0))
        );
        assert_eq!(
            night.next_change(utc(2026, 3, 2, 7, 0), SHANGHAI),
            Some(Change {
                at: utc(2026, 3, 2, 14, 0),
                opens: true
            })
        );
    }

    #[test]
    fn berlin_spring_forward_opens_a_window_in_the_skipped_hour_when_the_clocks_jump() {
        // 2026-03-29: at 01:00 UTC Berlin goes from 02:00 CET to 03:00 CEST.
        let early = schedule(json!([{"days": ["sun"], "from": "02:30", "to": "05:00"}]));
        assert!(!early.in_force(utc(2026, 3, 29, 0, 59), BERLIN)); // 01:59 CET
        assert!(early.in_force(utc(2026, 3, 29, 1, 0), BERLIN)); // 03:00 CEST
        assert_eq!(
            early.next_opening(utc(2026, 3, 29, 0, 0), BERLIN),
            Some(utc(2026, 3, 29, 1, 0))
        );
        // It closes at 05:00 CEST = 03:00 UTC: the night is an hour shorter.
        assert_eq!(
            early.next_closing(utc(2026, 3, 29, 0, 0), BERLIN),
            Some(utc(2026, 3, 29, 3, 0))
        );
        // A curfew across the change: 22:00 CET (21:00 UTC) to 06:00 CEST (04:00 UTC).
        let night = curfew();
        assert_eq!(
            night.next_opening(utc(2026, 3, 28, 12, 0), BERLIN),
            Some(utc(2026, 3, 28, 21, 0))
        );
        assert_eq!(
            night.next_closing(utc(2026, 3, 28, 22, 0), BERLIN),
            Some(utc(2026, 3, 29, 4, 0))
        );
        assert!(night.in_force(utc(2026, 3, 29, 3, 59), BERLIN));
        assert!(!night.in_force(utc(2026, 3, 29, 4, 0), BERLIN));
    }

    #[test]
    fn berlin_fall_back_repeats_the_hour_and_both_passes_count() {
        // 2026-10-25: at 01:00 UTC Berlin goes from 03:00 CEST back to 02:00 CET.
        let w = schedule(json!([{"days": ["sun"], "from": "02:15", "to": "02:45"}]));
        // First pass: 02:15 CEST = 00:15 UTC to 02:45 CEST = 00:45 UTC.
        assert!(!w.in_force(utc(2026, 10, 25, 0, 14), BERLIN));
        assert!(w.in_force(utc(2026, 10, 25, 0, 15), BERLIN));
        assert!(!w.in_force(utc(2026, 10, 25, 0, 45), BERLIN));
        // Second pass: 02:15 CET = 01:15 UTC to 02:45 CET = 01:45 UTC.
        assert!(!w.in_force(utc(2026, 10, 25, 1, 0), BERLIN));
        assert!(w.in_force(utc(2026, 10, 25, 1, 15), BERLIN));
        let after = utc(2026, 10, 25, 0, 0);
        let first_close = w.next_closing(after, BERLIN).unwrap();
        assert_eq!(first_close, utc(2026, 10, 25, 0, 45));
        assert_eq!(
            w.next_opening(first_close, BERLIN),
            Some(utc(2026, 10, 25, 1, 15))
        );
        // A window open across the jump back closes at the jump and opens again: 02:30-03:30
        // is in force 00:30-01:00 UTC (02:30-03:00 CEST), then from 01:30 UTC (02:30 CET).
        let across = schedule(json!([{"days": ["sun"], "from": "02:30", "to": "03:30"}]));
        assert!(across.in_force(utc(2026, 10, 25, 0, 59), BERLIN));
        assert_eq!(
            across.next_change(utc(2026, 10, 25, 0, 40), BERLIN),
            Some(Change {
                at: utc(2026, 10, 25, 1, 0),
                opens: false
            })
        );
        assert_eq!(
            across.next_opening(utc(2026, 10, 25, 1, 0), BERLIN),
            Some(utc(2026, 10, 25, 1, 30))
        );
        assert_eq!(
            across.next_closing(utc(2026, 10, 25, 1, 30), BERLIN),
            Some(utc(2026, 10, 25, 2, 30))
        );
    }

    #[test]
    fn a_window_to_its_own_opening_time_lasts_a_day() {
        let day = schedule(json!([{"days": ["mon"], "from": "08:00", "to": "08:00"}]));
        // Monday 08:00 to Tuesday 08:00 in Shanghai: Monday 00:00 to Tuesday 00:00 UTC.
        assert!(!day.in_force(utc(2026, 3, 1, 23, 59), SHANGHAI));
        assert!(day.in_force(utc(2026, 3, 2, 0, 0), SHANGHAI));
        assert!(day.in_force(utc(2026, 3, 2, 23, 59), SHANGHAI));
        assert!(!day.in_force(utc(2026, 3, 3, 0, 0), SHANGHAI));
    }

    #[test]
    fn a_schedule_always_in_force_never_changes() {
        let always = schedule(
            json!([{"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                                      "from": "00:00", "to": "24:00"}]),
        );
        assert!(always.in_force(utc(2026, 3, 29, 1, 30), BERLIN));
        assert_eq!(always.next_change(utc(2026, 3, 29, 0, 0), BERLIN), None);
        assert_eq!(always.next_closing(utc(2026, 3, 29, 0, 0), BERLIN), None);
    }
}

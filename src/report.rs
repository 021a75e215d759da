//! Monthly reports: a person's record for a month (考核), the suggested level change it leads
//! to, and the county's figures. Everything here is computed from what the store holds, with
//! no state of its own, so asking again gives the same numbers (for a month that has ended).
//!
//! A month is `YYYY-MM` and runs from local midnight of its first day to local midnight of the
//! next month's first day: in the person's IANA time zone for a person's record, in
//! `fence.default_timezone` for the county's figures. Only the part of the month the person
//! was supervised counts (from enrolment to release, as the supervision spans record it), and
//! never beyond the time of the request.
//!
//! Role: the API's report handlers call [`person_record`], [`level_review`] and
//! [`county_figures`]; they read through the [`Store`] and return plain serialisable values.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use crate::fence::LevelsConfig;
use crate::model::{Alert, AlertKind, Disposition, MonitoringOrder, PersonId, SupervisionLevel};
use crate::store::reports::{Assessment, LevelSpan};
use crate::store::{Store, StoreError};

/// How far before a month an `offline` alert is looked for, to count an episode of lost
/// supervision that began earlier and was still open: the longest a monitoring order lasts.
pub const OFFLINE_LOOKBACK_DAYS: i64 = 92;

/// Alert kinds that are breaches of the person's obligations, once disposed as real.
pub const BREACH_KINDS: [AlertKind; 5] = [
    AlertKind::ZoneExit,
    AlertKind::ZoneEnter,
    AlertKind::Curfew,
    AlertKind::LeaveOverdue,
    AlertKind::BorderHit,
];

/// The longest a monitoring order lasts, so the earliest a person whose order was in force in
/// a month can have been released before it.
pub const ORDER_LOOKBACK_DAYS: i64 = 92;

/// Confirmed breaches in a month that make the suggested level `strict`.
pub const STRICT_AFTER_BREACHES: u64 = 3;
/// Consecutive clean months that make the suggested level one lighter.
pub const CLEAN_MONTHS_FOR_LIGHTER: usize = 3;
/// The reporting rate a clean month needs.
pub const CLEAN_REPORTING_RATE: f64 = 0.9;

/// A calendar month, `YYYY-MM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Month {
    year: i32,
    month: u32,
}

impl Month {
    /// The month before.
    pub fn previous(&self) -> Month {
        if self.month == 1 {
            Month {
                year: self.year - 1,
                month: 12,
            }
        } else {
            Month {
                year: self.year,
                month: self.month - 1,
            }
        }
    }

    /// The month after.
    pub fn next(&self) -> Month {
        if self.month == 12 {
            Month {
                year: self.year + 1,
                month: 1,
            }
        } else {
            Month {
                year: self.year,
                month: self.month + 1,
            }
        }
    }

    /// The month `time` falls in, in `tz`.
    pub fn containing(time: DateTime<Utc>, tz: Tz) -> Month {
        let local = time.with_timezone(&tz);
        Month {
            year: local.year(),
            month: local.month(),
        }
    }

    fn first_day(&self) -> NaiveDate {
        // Valid by construction: month is 1 to 12 and the year within chrono's range.
        NaiveDate::from_ymd_opt(self.year, self.month, 1).unwrap_or(NaiveDate::MIN)
    }

    /// `[start, end)` of the month in UTC: local midnight of its first day to local midnight
    /// of the next month's, in `tz`.
    pub fn window(&self, tz: Tz) -> (DateTime<Utc>, DateTime<Utc>) {
        (
            local_midnight(self.first_day(), tz),
            local_midnight(self.next().first_day(), tz),
        )
    }
}

/// The first instant of `date` in `tz`: midnight, or the first valid time after it where a
/// clock change skips midnight.
fn local_midnight(date: NaiveDate, tz: Tz) -> DateTime<Utc> {
    let mut local = date.and_time(chrono::NaiveTime::MIN);
    for _ in 0..48 {
        if let Some(t) = tz.from_local_datetime(&local).earliest() {
            return t.with_timezone(&Utc);
        }
        local += Duration::minutes(30);
    }
    Utc.from_utc_datetime(&date.and_time(chrono::NaiveTime::MIN))
}

impl FromStr for Month {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad =
            || format!("month {s:?} is not a month such as \"2027-01\" (YYYY-MM, 1970 to 2999)");
        let (year, month) = s.split_once('-').ok_or_else(bad)?;
        if year.len() != 4 || month.len() != 2 {
            return Err(bad());
        }
        let year: i32 = year.parse().map_err(|_| bad())?;
        let month: u32 = month.parse().map_err(|_| bad())?;
        // Years a supervision record can have, which also keeps every window's bounds (and the
        // offline look-back before them) printable as RFC 3339 and storable by every backend.
        if !(1970..=2999).contains(&year) || !(1..=12).contains(&month) {
            return Err(bad());
        }
        Ok(Month { year, month })
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

/// A half-open interval of time.
type Interval = (DateTime<Utc>, DateTime<Utc>);

/// Sorted, non-overlapping intervals covering the same time as `intervals`.
fn merge(mut intervals: Vec<Interval>) -> Vec<Interval> {
    intervals.retain(|(a, b)| a < b);
    intervals.sort();
    let mut merged: Vec<Interval> = Vec::with_capacity(intervals.len());
    for (a, b) in intervals {
        match merged.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    merged
}

/// The time covered by both `a` and `b` (each sorted and non-overlapping).
fn intersect(a: &[Interval], b: &[Interval]) -> Vec<Interval> {
    let mut out = Vec::new();
    for &(a0, a1) in a {
        for &(b0, b1) in b {
            let (s, e) = (a0.max(b0), a1.min(b1));
            if s < e {
                out.push((s, e));
            }
        }
    }
    merge(out)
}

fn seconds(intervals: &[Interval]) -> f64 {
    intervals
        .iter()
        .map(|(a, b)| (*b - *a).num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6)
        // From +0.0: a float sum of nothing is -0.0, which would print as such.
        .fold(0.0, |total, s| total + s)
}

fn round(value: f64, places: i32) -> f64 {
    let scale = 10f64.powi(places);
    (value * scale).round() / scale
}

/// The parts of `spans` inside `[from, to)`, each with its level.
fn supervised(
    spans: &[LevelSpan],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<(SupervisionLevel, Interval)> {
    spans
        .iter()
        .filter_map(|s| {
            let start = s.since.max(from);
            let end = s.until.unwrap_or(to).min(to);
            (start < end).then_some((s.level, (start, end)))
        })
        .collect()
}

/// The episodes of lost supervision (脱管) the alerts record, merged over the person's
/// devices: from each `offline` alert to the next `returned` without a zone for the same
/// device, or `now` while none followed.
fn offline_intervals(alerts: &[Alert], now: DateTime<Utc>) -> Vec<Interval> {
    let mut sorted: Vec<&Alert> = alerts.iter().collect();
    sorted.sort_by_key(|a| (a.time, a.seq));
    let mut episodes = Vec::new();
    for (i, alert) in sorted.iter().enumerate() {
        // A repeat is still an episode of its own: the alert it repeats was merely not yet
        // closed by the operators when the device fell silent again.
        if alert.kind != AlertKind::Offline {
            continue;
        }
        let end = sorted[i + 1..]
            .iter()
            .find(|later| {
                later.kind == AlertKind::Returned
                    && later.zone_id.is_none()
                    && later.device_id == alert.device_id
                    && later.time >= alert.time
            })
            .map_or(now, |r| r.time);
        episodes.push((alert.time, end.min(now.max(alert.time))));
    }
    merge(episodes)
}

/// One alert kind's count in a month, by what the operators decided.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct KindSummary {
    /// Alerts raised (repeats left out).
    pub count: u64,
    /// Disposed as a false alarm.
    pub false_alarm: u64,
    /// Disposed as real; the person was warned.
    pub warned: u64,
    /// Disposed as real; handed on.
    pub escalated: u64,
    /// Disposed as real; the person came back by themselves.
    pub returned_by_itself: u64,
    /// Not disposed (yet).
    pub undisposed: u64,
}

impl KindSummary {
    fn add(&mut self, disposition: Option<Disposition>) {
        self.count += 1;
        match disposition {
            Some(Disposition::FalseAlarm) => self.false_alarm += 1,
            Some(Disposition::Warned) => self.warned += 1,
            Some(Disposition::Escalated) => self.escalated += 1,
            Some(Disposition::ReturnedByItself) => self.returned_by_itself += 1,
            None => self.undisposed += 1,
        }
    }
}

/// The month's alerts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct AlertSummary {
    /// Alerts raised, repeats left out.
    pub total: u64,
    /// Repeats raised while their first alert was still being handled.
    pub repeats: u64,
    /// Of `total`, disposed as false alarms.
    pub false_alarms: u64,
    /// Of `total`, not disposed.
    pub undisposed: u64,
    /// By kind.
    pub by_kind: BTreeMap<String, KindSummary>,
}

/// Fixes received against those expected at the level's reporting interval.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Reporting {
    /// Positions stored with a fix time while supervised.
    pub fixes_received: u64,
    /// Supervised time divided by the level's `report_interval_s`, summed over the levels
    /// the person had.
    pub fixes_expected: u64,
    /// `fixes_received / fixes_expected`, four decimals; `null` when nothing was expected.
    pub rate: Option<f64>,
}

/// Leave permits in the month.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct LeaveSummary {
    /// Leaves (not cancelled) whose window began in the month.
    pub taken: u64,
    /// Leaves (not cancelled) whose window ended in the month and that a `leave_overdue`
    /// alert followed within a day (the person was not back).
    pub overdue: u64,
}

/// Check-ins in the month.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct CheckinSummary {
    /// Check-ins recorded.
    pub made: u64,
    /// `missed_checkin` alerts (a window closed without one).
    pub missed: u64,
}

/// Downlink commands to the person's devices created in the month.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct CommandSummary {
    /// Commands made (queued).
    pub queued: u64,
    /// Written to the device (acknowledged ones included).
    pub delivered: u64,
    /// Answered by the device as done.
    pub acknowledged: u64,
    /// Refused, or not carried by the device's protocol.
    pub failed: u64,
    /// Expired unanswered.
    pub expired: u64,
}

/// A person's month (`GET /persons/{id}/record`).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct PersonRecord {
    /// Whom it is about.
    #[schema(value_type = uuid::Uuid)]
    pub person_id: PersonId,
    /// The person's name; `null` once released.
    pub name: Option<String>,
    /// The level at the end of the supervised part of the month (the level now, when the
    /// person was not supervised in it).
    pub level: SupervisionLevel,
    /// The time zone the month is read in (the person's).
    pub timezone: String,
    /// `YYYY-MM`.
    pub month: String,
    /// Start of the month, UTC.
    pub from: DateTime<Utc>,
    /// End of the month, UTC (exclusive).
    pub to: DateTime<Utc>,
    /// Days of the month the person was supervised (up to the time of the request), three
    /// decimals.
    pub supervised_days: f64,
    /// Reporting rate.
    pub reporting: Reporting,
    /// Hours of lost supervision (脱管): from each `offline` alert to the device's return,
    /// merged over devices, within the supervised part of the month; three decimals.
    pub offline_hours: f64,
    /// Alerts by kind and disposition.
    pub alerts: AlertSummary,
    /// Breach alerts (zone exit or entry, curfew, leave overdue, border hit) disposed as real.
    pub confirmed_breaches: u64,
    /// Leave permits.
    pub leaves: LeaveSummary,
    /// Check-ins.
    pub checkins: CheckinSummary,
    /// Commands to the person's devices.
    pub commands: CommandSummary,
    /// The officer's entries on this month, oldest first.
    pub assessments: Vec<Assessment>,
}

impl PersonRecord {
    /// Whether the month counts as clean for a lighter level: supervised, no confirmed
    /// breach, no missed check-in or overdue leave, no warning or revocation proposal, and a
    /// reporting rate of at least [`CLEAN_REPORTING_RATE`].
    pub fn is_clean(&self) -> bool {
        self.supervised_days > 0.0
            && self.confirmed_breaches == 0
            && self.checkins.missed == 0
            && self.leaves.overdue == 0
            && !self.assessments.iter().any(|a| a.kind.cites_alerts())
            && self
                .reporting
                .rate
                .is_some_and(|rate| rate >= CLEAN_REPORTING_RATE)
    }

    /// The record as CSV: `section,item,value` rows, then one row per officer's entry.
    pub fn to_csv(&self) -> String {
        let mut rows: Vec<(String, String, String)> = Vec::new();
        let mut row = |section: &str, item: &str, value: String| {
            rows.push((section.to_owned(), item.to_owned(), value));
        };
        row("person", "id", self.person_id.to_string());
        row("person", "name", self.name.clone().unwrap_or_default());
        row("person", "level", self.level.as_str().to_owned());
        row("person", "timezone", self.timezone.clone());
        row("month", "month", self.month.clone());
        row("month", "from", self.from.to_rfc3339());
        row("month", "to", self.to.to_rfc3339());
        row("month", "supervised_days", self.supervised_days.to_string());
        row(
            "reporting",
            "fixes_received",
            self.reporting.fixes_received.to_string(),
        );
        row(
            "reporting",
            "fixes_expected",
            self.reporting.fixes_expected.to_string(),
        );
        row(
            "reporting",
            "rate",
            self.reporting
                .rate
                .map(|r| r.to_string())
                .unwrap_or_default(),
        );
        row("offline", "hours", self.offline_hours.to_string());
        row("alerts", "total", self.alerts.total.to_string());
        row("alerts", "repeats", self.alerts.repeats.to_string());
        row(
            "alerts",
            "false_alarms",
            self.alerts.false_alarms.to_string(),
        );
        row("alerts", "undisposed", self.alerts.undisposed.to_string());
        for (kind, k) in &self.alerts.by_kind {
            for (item, value) in [
                ("count", k.count),
                ("false_alarm", k.false_alarm),
                ("warned", k.warned),
                ("escalated", k.escalated),
                ("returned_by_itself", k.returned_by_itself),
                ("undisposed", k.undisposed),
            ] {
                row(&format!("alerts.{kind}"), item, value.to_string());
            }
        }
        row("breaches", "confirmed", self.confirmed_breaches.to_string());
        row("leaves", "taken", self.leaves.taken.to_string());
        row("leaves", "overdue", self.leaves.overdue.to_string());
        row("checkins", "made", self.checkins.made.to_string());
        row("checkins", "missed", self.checkins.missed.to_string());
        for (item, value) in [
            ("queued", self.commands.queued),
            ("delivered", self.commands.delivered),
            ("acknowledged", self.commands.acknowledged),
            ("failed", self.commands.failed),
            ("expired", self.commands.expired),
        ] {
            row("commands", item, value.to_string());
        }
        for a in &self.assessments {
            let cited: Vec<String> = a.alert_ids.iter().map(|id| id.to_string()).collect();
            row(
                &format!("assessment.{}", a.kind.as_str()),
                &a.created_at.to_rfc3339(),
                format!(
                    "{} (by {}; alerts {})",
                    a.reason,
                    a.actor.label.clone().unwrap_or_default(),
                    cited.join(" ")
                ),
            );
        }
        let mut out = String::from("section,item,value\r\n");
        for (section, item, value) in rows {
            out.push_str(&format!(
                "{},{},{}\r\n",
                csv_field(&section),
                csv_field(&item),
                csv_field(&value)
            ));
        }
        out
    }
}

/// A CSV field, quoted when it holds a comma, quote or line break (RFC 4180); a leading
/// `=`, `+`, `-` or `@` is prefixed with `'` so a spreadsheet does not run it as a formula.
fn csv_field(value: &str) -> String {
    let value = if value.starts_with(['=', '+', '@'])
        || (value.starts_with('-') && value.parse::<f64>().is_err())
    {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    if value.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

/// Who the record is about, as the store knows them now.
struct Subject {
    name: Option<String>,
    level: SupervisionLevel,
    timezone: String,
}

/// The person, or what the supervision spans recorded of them once released.
async fn subject(store: &dyn Store, person: PersonId) -> Result<Subject, StoreError> {
    match store.person(person).await {
        Ok(p) => Ok(Subject {
            name: Some(p.name),
            level: p.level,
            timezone: p.timezone,
        }),
        Err(StoreError::NotFound { what, id }) => {
            // All time, within what every backend stores (PostgreSQL ends in the year 294276):
            // 1970 to the end of 9999.
            let never =
                DateTime::from_timestamp(253_402_300_799, 0).unwrap_or(DateTime::UNIX_EPOCH);
            let spans = store
                .level_spans(Some(person), DateTime::UNIX_EPOCH, never)
                .await?;
            let last = spans.last().ok_or(StoreError::NotFound { what, id })?;
            Ok(Subject {
                name: None,
                level: last.level,
                timezone: last.timezone.clone(),
            })
        }
        Err(e) => Err(e),
    }
}

fn timezone_of(name: &str) -> Tz {
    name.parse().unwrap_or(Tz::UTC)
}

/// A person's record for `month`, up to `now`.
///
/// # Errors
/// [`StoreError::NotFound`] for a person the store has never known; store errors.
pub async fn person_record(
    store: &dyn Store,
    levels: &LevelsConfig,
    person: PersonId,
    month: Month,
    now: DateTime<Utc>,
) -> Result<PersonRecord, StoreError> {
    let subject = subject(store, person).await?;
    let tz = timezone_of(&subject.timezone);
    let (from, to) = month.window(tz);
    let until = to.min(now);
    let spans = store.level_spans(Some(person), from, to).await?;
    let windows = supervised(&spans, from, until);
    let supervised_span: Vec<Interval> = merge(windows.iter().map(|(_, w)| *w).collect());

    let mut reporting = Reporting::default();
    let mut devices: Vec<String> = Vec::new();
    let mut expected = 0.0;
    for (level, (start, end)) in &windows {
        let interval = f64::from(levels.get(*level).report_interval_s.max(1));
        expected += seconds(&[(*start, *end)]) / interval;
        for (device, n) in store.position_counts(person, *start, *end).await? {
            reporting.fixes_received += n;
            if !devices.contains(&device) {
                devices.push(device);
            }
        }
    }
    reporting.fixes_expected = expected.floor() as u64;
    reporting.rate = (reporting.fixes_expected > 0).then(|| {
        round(
            reporting.fixes_received as f64 / reporting.fixes_expected as f64,
            4,
        )
    });

    let lookback = from - Duration::days(OFFLINE_LOOKBACK_DAYS);
    let history = store.alerts_between(Some(person), lookback, to).await?;
    let offline = intersect(&offline_intervals(&history, now), &supervised_span);
    let in_month: Vec<&Alert> = history
        .iter()
        .filter(|a| from <= a.time && a.time < to)
        .collect();

    let mut alerts = AlertSummary::default();
    let mut confirmed_breaches = 0;
    for alert in &in_month {
        if alert.repeat_of.is_some() {
            alerts.repeats += 1;
            continue;
        }
        alerts.total += 1;
        match alert.disposition {
            Some(Disposition::FalseAlarm) => alerts.false_alarms += 1,
            None => alerts.undisposed += 1,
            Some(_) => {
                if BREACH_KINDS.contains(&alert.kind) {
                    confirmed_breaches += 1;
                }
            }
        }
        alerts
            .by_kind
            .entry(alert.kind.as_str().to_owned())
            .or_default()
            .add(alert.disposition);
    }

    let mut leaves = LeaveSummary::default();
    for leave in store.leaves(person).await? {
        if leave.cancelled_at.is_some() {
            continue;
        }
        if from <= leave.from && leave.from < to {
            leaves.taken += 1;
        }
        let end = leave.end();
        if from <= end && end < to {
            let overdue = history.iter().any(|a| {
                a.kind == AlertKind::LeaveOverdue
                    && a.zone_id.is_some_and(|z| leave.zone_ids.contains(&z))
                    && end <= a.time
                    && a.time < end + Duration::days(1)
            });
            if overdue {
                leaves.overdue += 1;
            }
        }
    }

    let checkins = CheckinSummary {
        made: store
            .checkins(person, u32::MAX)
            .await?
            .iter()
            .filter(|c| from <= c.time && c.time < to)
            .count() as u64,
        missed: in_month
            .iter()
            .filter(|a| a.kind == AlertKind::MissedCheckin && a.repeat_of.is_none())
            .count() as u64,
    };

    for device in store.devices().await? {
        if device.person_id == person && !devices.contains(&device.imei) {
            devices.push(device.imei);
        }
    }
    devices.sort();
    let mut commands = CommandSummary::default();
    for device in &devices {
        for command in store.commands_between(device, from, to).await? {
            commands.queued += 1;
            if command.sent_at.is_some() {
                commands.delivered += 1;
            }
            match command.status {
                crate::model::CommandStatus::Acknowledged => commands.acknowledged += 1,
                crate::model::CommandStatus::Failed => commands.failed += 1,
                crate::model::CommandStatus::Expired => commands.expired += 1,
                _ => {}
            }
        }
    }

    let assessments = store.assessments(person, Some(&month.to_string())).await?;
    Ok(PersonRecord {
        person_id: person,
        name: subject.name,
        level: windows
            .iter()
            .max_by_key(|(_, (start, _))| *start)
            .map_or(subject.level, |(level, _)| *level),
        timezone: subject.timezone,
        month: month.to_string(),
        from,
        to,
        supervised_days: round(seconds(&supervised_span) / 86_400.0, 3),
        reporting,
        offline_hours: round(seconds(&offline) / 3_600.0, 3),
        alerts,
        confirmed_breaches,
        leaves,
        checkins,
        commands,
        assessments,
    })
}

/// One month's part in a level review.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ReviewedMonth {
    /// `YYYY-MM`.
    pub month: String,
    /// Days supervised.
    pub supervised_days: f64,
    /// Confirmed breaches.
    pub confirmed_breaches: u64,
    /// Missed check-ins.
    pub missed_checkins: u64,
    /// Reporting rate.
    pub reporting_rate: Option<f64>,
    /// Whether it counts as clean (see the README's "Level review").
    pub clean: bool,
}

/// A suggested level change (`GET /persons/{id}/level-review`). Only a suggestion: an officer
/// applies it with `PATCH /persons/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct LevelReview {
    /// Whom it is about.
    #[schema(value_type = uuid::Uuid)]
    pub person_id: PersonId,
    /// The month reviewed, `YYYY-MM`.
    pub month: String,
    /// The person's level now.
    pub current_level: SupervisionLevel,
    /// The level the rules suggest.
    pub suggested_level: SupervisionLevel,
    /// Whether the suggestion differs from the current level.
    pub change: bool,
    /// Why, one sentence per rule that applied (or why nothing changes).
    pub reasons: Vec<String>,
    /// The month reviewed and the ones before it that the rules read, newest first.
    pub months: Vec<ReviewedMonth>,
}

fn lighter(level: SupervisionLevel) -> SupervisionLevel {
    match level {
        SupervisionLevel::Strict => SupervisionLevel::Normal,
        _ => SupervisionLevel::Lenient,
    }
}

/// The suggested level after `month`, from its record and the
/// [`CLEAN_MONTHS_FOR_LIGHTER`]` - 1` before it:
/// 1. at least [`STRICT_AFTER_BREACHES`] confirmed breaches in the month → `strict`;
/// 2. otherwise [`CLEAN_MONTHS_FOR_LIGHTER`] clean months in a row ending with it → one level
///    lighter (strict → normal → lenient);
/// 3. otherwise the level stays.
///
/// # Errors
/// As [`person_record`].
pub async fn level_review(
    store: &dyn Store,
    levels: &LevelsConfig,
    person: PersonId,
    month: Month,
    now: DateTime<Utc>,
) -> Result<LevelReview, StoreError> {
    let mut records = Vec::with_capacity(CLEAN_MONTHS_FOR_LIGHTER);
    let mut m = month;
    for _ in 0..CLEAN_MONTHS_FOR_LIGHTER {
        records.push(person_record(store, levels, person, m, now).await?);
        m = m.previous();
    }
    let current = subject(store, person).await?.level;
    let mut reasons = Vec::new();
    let breaches = records[0].confirmed_breaches;
    let suggested = if breaches >= STRICT_AFTER_BREACHES {
        reasons.push(format!(
            "{breaches} confirmed breaches in {month} (at least {STRICT_AFTER_BREACHES} make the \
             level strict)"
        ));
        SupervisionLevel::Strict
    } else if records.iter().all(PersonRecord::is_clean) {
        if current == SupervisionLevel::Lenient {
            reasons.push(format!(
                "{CLEAN_MONTHS_FOR_LIGHTER} clean months to {month}; already at the lightest level"
            ));
        } else {
            reasons.push(format!(
                "{CLEAN_MONTHS_FOR_LIGHTER} clean months to {month} (no confirmed breach, missed \
                 check-in, overdue leave, warning or revocation proposal; reporting rate at \
                 least {CLEAN_REPORTING_RATE}): one level lighter"
            ));
        }
        lighter(current)
    } else {
        let clean = records.iter().take_while(|r| r.is_clean()).count();
        reasons.push(format!(
            "{breaches} confirmed breach(es) in {month} (fewer than {STRICT_AFTER_BREACHES}) and \
             {clean} clean month(s) in a row (fewer than {CLEAN_MONTHS_FOR_LIGHTER}): the level \
             stays"
        ));
        current
    };
    Ok(LevelReview {
        person_id: person,
        month: month.to_string(),
        current_level: current,
        suggested_level: suggested,
        change: suggested != current,
        reasons,
        months: records
            .iter()
            .map(|r| ReviewedMonth {
                month: r.month.clone(),
                supervised_days: r.supervised_days,
                confirmed_breaches: r.confirmed_breaches,
                missed_checkins: r.checkins.missed,
                reporting_rate: r.reporting.rate,
                clean: r.is_clean(),
            })
            .collect(),
    })
}

/// One month of the county's figures.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct CountyMonth {
    /// `YYYY-MM`.
    pub month: String,
    /// Start of the month, UTC.
    pub from: DateTime<Utc>,
    /// End of the month, UTC (exclusive).
    pub to: DateTime<Utc>,
    /// Persons supervised at some time in the month, by their level at the end of their
    /// supervision in it.
    pub persons_by_level: BTreeMap<String, u64>,
    /// Persons supervised at some time in the month.
    pub persons: u64,
    /// Persons enrolled in the month: one of their monitoring orders started with no order of
    /// theirs in force right before it (a renewal from the previous order's end is none).
    pub enrolments: u64,
    /// Persons released in the month: their monitoring order ended (by `order.end` or at its
    /// end date) with no order in force after it, or they were deleted while under one.
    pub releases: u64,
    /// Days of supervision, summed over persons, three decimals.
    pub person_days: f64,
    /// Alerts raised (repeats left out), by kind.
    pub alerts_by_kind: BTreeMap<String, u64>,
    /// Alerts per 100 person-days, by kind, three decimals.
    pub alerts_per_100_person_days: BTreeMap<String, f64>,
    /// Alerts disposed.
    pub disposed: u64,
    /// Of those, false alarms.
    pub false_alarms: u64,
    /// `false_alarms / disposed`, four decimals; `null` while none is disposed.
    pub false_alarm_share: Option<f64>,
    /// Mean seconds from an alert being raised to its disposition, over disposed alerts, one
    /// decimal; `null` while none is disposed.
    pub mean_seconds_to_disposition: Option<f64>,
    /// Hours of lost supervision (脱管), summed over persons, three decimals.
    pub lost_supervision_hours: f64,
}

/// The county's figures (`GET /stats/county`): the month and the one before, side by side.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct CountyFigures {
    /// The time zone the months are read in (`fence.default_timezone`).
    pub timezone: String,
    /// The month asked for.
    pub month: CountyMonth,
    /// The month before.
    pub previous: CountyMonth,
}

async fn county_month(
    store: &dyn Store,
    month: Month,
    tz: Tz,
    now: DateTime<Utc>,
) -> Result<CountyMonth, StoreError> {
    let (from, to) = month.window(tz);
    let until = to.min(now);
    let spans = store.level_spans(None, from, to).await?;
    let mut by_person: HashMap<PersonId, Vec<LevelSpan>> = HashMap::new();
    for span in spans {
        by_person.entry(span.person_id).or_default().push(span);
    }
    let mut persons_by_level: BTreeMap<String, u64> = BTreeMap::new();
    let mut persons = 0;
    let mut person_seconds = 0.0;
    let mut windows: HashMap<PersonId, Vec<Interval>> = HashMap::new();
    for (person, spans) in &by_person {
        let parts = supervised(spans, from, until);
        let Some((level, _)) = parts.iter().max_by_key(|(_, (start, _))| *start) else {
            continue;
        };
        persons += 1;
        *persons_by_level
            .entry(level.as_str().to_owned())
            .or_default() += 1;
        let merged = merge(parts.iter().map(|(_, w)| *w).collect());
        person_seconds += seconds(&merged);
        windows.insert(*person, merged);
    }
    let person_days = person_seconds / 86_400.0;

    let orders = store.orders_in_force(from, to).await?;
    let deleted: HashMap<PersonId, DateTime<Utc>> = store
        .level_spans(None, from - Duration::days(ORDER_LOOKBACK_DAYS), to)
        .await?
        .into_iter()
        .filter(|span| span.released)
        .filter_map(|span| Some((span.person_id, span.until?)))
        .collect();
    let enrolments = enrolments(&orders, &deleted, from, until);
    let releases = releases(&orders, &deleted, from, until);

    let lookback = from - Duration::days(OFFLINE_LOOKBACK_DAYS);
    let history = store.alerts_between(None, lookback, to).await?;
    let mut alerts_by_person: HashMap<PersonId, Vec<Alert>> = HashMap::new();
    for alert in &history {
        alerts_by_person
            .entry(alert.person_id)
            .or_default()
            .push(alert.clone());
    }
    let mut lost_seconds = 0.0;
    for (person, window) in &windows {
        if let Some(alerts) = alerts_by_person.get(person) {
            lost_seconds += seconds(&intersect(&offline_intervals(alerts, now), window));
        }
    }

    let mut alerts_by_kind: BTreeMap<String, u64> = BTreeMap::new();
    let (mut disposed, mut false_alarms) = (0u64, 0u64);
    let mut disposition_seconds = 0.0;
    for alert in history
        .iter()
        .filter(|a| from <= a.time && a.time < to && a.repeat_of.is_none())
    {
        *alerts_by_kind
            .entry(alert.kind.as_str().to_owned())
            .or_default() += 1;
        if let (Some(disposition), Some(at)) = (alert.disposition, alert.disposed_at) {
            disposed += 1;
            if disposition == Disposition::FalseAlarm {
                false_alarms += 1;
            }
            disposition_seconds += seconds(&[(alert.raised_at, at.max(alert.raised_at))]);
        }
    }
    let alerts_per_100_person_days = alerts_by_kind
        .iter()
        .filter(|_| person_days > 0.0)
        .map(|(kind, n)| (kind.clone(), round(*n as f64 * 100.0 / person_days, 3)))
        .collect();
    Ok(CountyMonth {
        month: month.to_string(),
        from,
        to,
        persons_by_level,
        persons,
        enrolments,
        releases,
        person_days: round(person_days, 3),
        alerts_by_kind,
        alerts_per_100_person_days,
        disposed,
        false_alarms,
        false_alarm_share: (disposed > 0).then(|| round(false_alarms as f64 / disposed as f64, 4)),
        mean_seconds_to_disposition: (disposed > 0)
            .then(|| round(disposition_seconds / disposed as f64, 1)),
        lost_supervision_hours: round(lost_seconds / 3_600.0, 3),
    })
}

/// One person's orders in force in a window, and when monitoring under each started and
/// stopped as far as is known by `until`.
struct PersonOrders<'a> {
    orders: Vec<&'a MonitoringOrder>,
    deleted_at: Option<DateTime<Utc>>,
    until: DateTime<Utc>,
}

impl PersonOrders<'_> {
    /// When monitoring under `order` started, if it has by `until`: `started_at`, or its `from`
    /// when that passed unrecorded with the order neither ended nor the person deleted first.
    fn start(&self, order: &MonitoringOrder) -> Option<DateTime<Utc>> {
        let unrecorded = order.from < self.until
            && order.ended_at.is_none()
            && self.deleted_at.is_none_or(|deleted| deleted > order.from);
        order
            .started_at
            .or(unrecorded.then_some(order.from))
            .filter(|start| *start < self.until)
    }

    /// When monitoring under `order` stopped, if it has by `until`: `ended_at`, its end date
    /// when that passed unrecorded, or the person's deletion, whichever came first; `None`
    /// while it lasts.
    fn stop(&self, order: &MonitoringOrder) -> Option<DateTime<Utc>> {
        let own = order
            .ended_at
            .or((order.to <= self.until).then_some(order.to));
        match (own, self.deleted_at) {
            (Some(end), Some(deleted)) => Some(end.min(deleted)),
            (own, deleted) => own.or(deleted),
        }
    }
}

/// `orders` grouped by person, each with the person's deletion if any.
fn orders_by_person<'a>(
    orders: &'a [MonitoringOrder],
    deleted: &HashMap<PersonId, DateTime<Utc>>,
    until: DateTime<Utc>,
) -> Vec<PersonOrders<'a>> {
    let mut by_person: HashMap<PersonId, Vec<&MonitoringOrder>> = HashMap::new();
    for order in orders {
        by_person.entry(order.person_id).or_default().push(order);
    }
    by_person
        .into_iter()
        .map(|(person, orders)| PersonOrders {
            orders,
            deleted_at: deleted.get(&person).copied(),
            until,
        })
        .collect()
}

/// How many persons were enrolled in `[from, until)`: monitoring under one of their orders
/// started then (`started_at`, or its `from` when that passed unrecorded) and no other order
/// of theirs was in force right before. A person enrolled twice in the window counts once.
fn enrolments(
    orders: &[MonitoringOrder],
    deleted: &HashMap<PersonId, DateTime<Utc>>,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
) -> u64 {
    let persons = orders_by_person(orders, deleted, until);
    let enrolled = persons.iter().filter(|person| {
        person.orders.iter().any(|order| {
            let Some(start) = person.start(order) else {
                return false;
            };
            // An order ended or cut short by the deletion before it started was never in force.
            let was_in_force = person.stop(order).is_none_or(|stop| start <= stop);
            let carried_over = person.orders.iter().any(|other| {
                other.id != order.id
                    && person.start(other).is_some_and(|s| s < start)
                    && person.stop(other).is_none_or(|e| e >= start)
            });
            was_in_force && from <= start && !carried_over
        })
    });
    enrolled.count() as u64
}

/// How many persons were released in `[from, until)`: monitoring under one of their orders
/// stopped then (`ended_at`, or its end date when that passed before `until` unrecorded, or the
/// person's deletion in `deleted` while it was in force) and no other order of theirs was in
/// force right after. A person released twice in the window counts once.
fn releases(
    orders: &[MonitoringOrder],
    deleted: &HashMap<PersonId, DateTime<Utc>>,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
) -> u64 {
    let persons = orders_by_person(orders, deleted, until);
    let released = persons.iter().filter(|person| {
        person.orders.iter().any(|order| {
            let Some(stop) = person.stop(order) else {
                return false;
            };
            let was_in_force = order.started_at.is_some_and(|started| started <= stop);
            let carried_on = person.orders.iter().any(|other| {
                other.id != order.id
                    && other.from <= stop
                    && person.stop(other).is_none_or(|e| e > stop)
            });
            was_in_force && from <= stop && stop < until && !carried_on
        })
    });
    released.count() as u64
}

/// The county's figures for `month` and the month before, read in `tz`, up to `now`.
///
/// # Errors
/// Store errors.
pub async fn county_figures(
    store: &dyn Store,
    month: Month,
    tz: Tz,
    now: DateTime<Utc>,
) -> Result<CountyFigures, StoreError> {
    Ok(CountyFigures {
        timezone: tz.name().to_owned(),
        month: county_month(store, month, tz, now).await?,
        previous: county_month(store, month.previous(), tz, now).await?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    /// An order of `person` for `[from, to)`, started at `from`, ended at `ended`.
    fn order(person: PersonId, from: &str, to: &str, ended: Option<&str>) -> MonitoringOrder {
        MonitoringOrder {
            id: crate::model::new_id(),
            person_id: person,
            ground: "community correction".into(),
            approved_by: "county bureau".into(),
            from: t(from),
            to: t(to),
            created_at: t(from),
            started_at: Some(t(from)),
            ended_at: ended.map(t),
        }
    }

    #[test]
    fn a_release_is_an_order_ending_with_none_in_force_after_it() {
        let (from, until) = (t("2026-01-01T00:00:00Z"), t("2026-02-01T00:00:00Z"));
        let count = |orders: &[MonitoringOrder], deleted: &[(PersonId, &str)]| {
            let deleted = deleted.iter().map(|(p, at)| (*p, t(at))).collect();
            releases(orders, &deleted, from, until)
        };
        let p = crate::model::new_id();
        let q = crate::model::new_id();
        // Ended early by order.end, and one that ran out: each a release.
        let early = order(
            p,
            "2025-12-01T00:00:00Z",
            "2026-02-20T00:00:00Z",
            Some("2026-01-05T00:00:00Z"),
        );
        let ran_out = order(
            q,
            "2025-11-01T00:00:00Z",
            "2026-01-20T00:00:00Z",
            Some("2026-01-20T00:00:00Z"),
        );
        assert_eq!(count(&[early.clone(), ran_out.clone()], &[]), 2);
        // Its end passed unrecorded: still a release, on its end date.
        let unrecorded = order(q, "2025-11-01T00:00:00Z", "2026-01-20T00:00:00Z", None);
        assert_eq!(count(std::slice::from_ref(&unrecorded), &[]), 1);
        // Renewed from its end: not a release; nor while the renewal lasts.
        let renewal = order(q, "2026-01-20T00:00:00Z", "2026-04-20T00:00:00Z", None);
        assert_eq!(count(&[ran_out.clone(), renewal.clone()], &[]), 0);
        // A renewal after a gap: released at the first order's end.
        let later = order(q, "2026-01-25T00:00:00Z", "2026-04-25T00:00:00Z", None);
        assert_eq!(count(&[ran_out.clone(), later], &[]), 1);
        // Deleted under an order: released at the deletion, however the order ends later.
        assert_eq!(
            count(
                std::slice::from_ref(&renewal),
                &[(q, "2026-01-28T00:00:00Z")]
            ),
            1
        );
        // Deleted after the order ended: the release was the end, not counted twice.
        assert_eq!(
            count(std::slice::from_ref(&early), &[(p, "2026-01-10T00:00:00Z")]),
            1
        );
        // Deleted last month with an order left open: no release this month.
        let dangling = order(p, "2025-12-01T00:00:00Z", "2026-01-15T00:00:00Z", None);
        assert_eq!(count(&[dangling], &[(p, "2025-12-20T00:00:00Z")]), 0);
        // Ending after the window (or not before the time asked): not yet.
        let next_month = order(p, "2026-01-10T00:00:00Z", "2026-02-10T00:00:00Z", None);
        assert_eq!(count(&[next_month], &[]), 0);
        // An order that never started is no release when it is ended.
        let mut unstarted = order(
            p,
            "2026-01-10T00:00:00Z",
            "2026-02-10T00:00:00Z",
            Some("2026-01-09T00:00:00Z"),
        );
        unstarted.started_at = None;
        assert_eq!(count(&[unstarted], &[]), 0);
        // Two releases of one person in the month count once.
        let second = order(
            q,
            "2026-01-22T00:00:00Z",
            "2026-01-30T00:00:00Z",
            Some("2026-01-30T00:00:00Z"),
        );
        assert_eq!(count(&[ran_out, second], &[]), 1);
    }

    #[test]
    fn an_enrolment_is_an_order_starting_with_none_in_force_before_it() {
        let (from, until) = (t("2026-01-01T00:00:00Z"), t("2026-02-01T00:00:00Z"));
        let count = |orders: &[MonitoringOrder], deleted: &[(PersonId, &str)]| {
            let deleted = deleted.iter().map(|(p, at)| (*p, t(at))).collect();
            enrolments(orders, &deleted, from, until)
        };
        let p = crate::model::new_id();
        let q = crate::model::new_id();
        // A first order started in the month, for each of two persons: two enrolments.
        let first = order(p, "2026-01-05T00:00:00Z", "2026-03-05T00:00:00Z", None);
        let other = order(q, "2026-01-31T23:00:00Z", "2026-03-05T00:00:00Z", None);
        assert_eq!(count(&[first.clone(), other], &[]), 2);
        // Started last month: none this month.
        let earlier = order(
            q,
            "2025-11-01T00:00:00Z",
            "2026-01-20T00:00:00Z",
            Some("2026-01-20T00:00:00Z"),
        );
        assert_eq!(count(std::slice::from_ref(&earlier), &[]), 0);
        // Renewed from its end: the renewal is no enrolment.
        let renewal = order(q, "2026-01-20T00:00:00Z", "2026-04-20T00:00:00Z", None);
        assert_eq!(count(&[earlier.clone(), renewal], &[]), 0);
        // Nor one that starts while the earlier order still runs.
        let overlapping = order(q, "2026-01-15T00:00:00Z", "2026-04-15T00:00:00Z", None);
        assert_eq!(count(&[earlier.clone(), overlapping], &[]), 0);
        // Nor a renewal from an end date that passed unrecorded.
        let mut unrecorded_end = earlier.clone();
        unrecorded_end.ended_at = None;
        let renewal = order(q, "2026-01-20T00:00:00Z", "2026-04-20T00:00:00Z", None);
        assert_eq!(count(&[unrecorded_end, renewal], &[]), 0);
        // A new order after a gap: enrolled again.
        let after_gap = order(q, "2026-01-25T00:00:00Z", "2026-04-25T00:00:00Z", None);
        assert_eq!(count(&[earlier.clone(), after_gap.clone()], &[]), 1);
        // Its start passed unrecorded: still an enrolment, at its `from`.
        let mut unrecorded = after_gap.clone();
        unrecorded.started_at = None;
        assert_eq!(count(&[earlier, unrecorded.clone()], &[]), 1);
        // Unless the person was deleted first, or it was ended before it started.
        assert_eq!(
            count(
                std::slice::from_ref(&unrecorded),
                &[(q, "2026-01-22T00:00:00Z")]
            ),
            0
        );
        let mut ended_unstarted = unrecorded.clone();
        ended_unstarted.ended_at = Some(t("2026-01-22T00:00:00Z"));
        assert_eq!(count(&[ended_unstarted], &[]), 0);
        // Starting after the window (or not before the time asked): not yet.
        let mut next_month = order(p, "2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z", None);
        next_month.started_at = None;
        assert_eq!(count(&[next_month], &[]), 0);
        // Two enrolments of one person in the month count once.
        let short = order(
            p,
            "2026-01-02T00:00:00Z",
            "2026-01-04T00:00:00Z",
            Some("2026-01-04T00:00:00Z"),
        );
        assert_eq!(count(&[short, first], &[]), 1);
    }

    #[test]
    fn months_parse_strictly_and_print_back() {
        let m: Month = "2027-01".parse().unwrap();
        assert_eq!(m.to_string(), "2027-01");
        assert_eq!(m.previous().to_string(), "2026-12");
        assert_eq!(m.previous().next(), m);
        for bad in [
            "2027-1",
            "2027-13",
            "2027-00",
            "27-01",
            "2027/01",
            "",
            "2027-01-01",
            "abcd-ef",
        ] {
            assert!(bad.parse::<Month>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_month_runs_from_local_midnight_to_local_midnight() {
        let m: Month = "2027-01".parse().unwrap();
        let (from, to) = m.window(chrono_tz::Asia::Shanghai);
        assert_eq!(from, t("2026-12-31T16:00:00Z"));
        assert_eq!(to, t("2027-01-31T16:00:00Z"));
        // A month with a clock change: March in Berlin is one hour short.
        let (from, to) = "2027-03"
            .parse::<Month>()
            .unwrap()
            .window(chrono_tz::Europe::Berlin);
        assert_eq!(to - from, Duration::hours(31 * 24 - 1));
        assert_eq!(
            Month::containing(t("2026-12-31T16:30:00Z"), chrono_tz::Asia::Shanghai),
            m
        );
    }

    #[test]
    fn intervals_merge_and_intersect() {
        let a = merge(vec![
            (t("2027-01-01T00:00:00Z"), t("2027-01-01T02:00:00Z")),
            (t("2027-01-01T01:00:00Z"), t("2027-01-01T03:00:00Z")),
            (t("2027-01-01T05:00:00Z"), t("2027-01-01T06:00:00Z")),
        ]);
        assert_eq!(a.len(), 2);
        assert_eq!(seconds(&a), 4.0 * 3600.0);
        let b = [(t("2027-01-01T02:30:00Z"), t("2027-01-01T05:30:00Z"))];
        assert_eq!(seconds(&intersect(&a, &b)), 3600.0);
        assert!(seconds(&[]).is_sign_positive());
    }

    #[test]
    fn csv_fields_are_quoted_and_never_formulas() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=1+1"), "'=1+1");
        assert_eq!(csv_field("-3.5"), "-3.5");
    }
}

//! The timer-driven supervision rules: what is raised because time passed rather than because
//! a fix arrived. One [`Supervisor`] per engine shard, beside its fence engine, holds each
//! person's devices (when each was last heard from), leave permits, monitoring orders and
//! check-in windows, and a deadline [`wheel::Wheel`] of what is due next.
//!
//! | rule | deadline | raises |
//! | --- | --- | --- |
//! | lost supervision (脱管) | last message received + `offline_after_s` of the level | `offline`, once; the next message `returned` |
//! | no device | the last device unbound, or a new person's `offline_after_s` without one | `unsupervised`; a device bound `returned` |
//! | leave permit | the window's end | `leave_overdue` per suspended zone the latest definite fix is outside |
//! | monitoring order | its start, `order_expiring_days` before its end, its end | `order.started`, `order_expiring`, `order.ended` |
//! | check-in | each window's close | `missed_checkin` when no check-in fell in the window |
//! | curfew (a scheduled inclusion zone) | each window's opening | `curfew` when the newest fix was definitely outside; uncertain, the next definite fix decides |
//!
//! Role in the pipeline: the shard loop (`pipeline.rs`) feeds it every device heard from,
//! every change the API made ([`Notice`]) and every deadline that passed, and carries out the
//! [`Action`]s it returns: alerts go to the store writer with the fence alerts (pending until
//! committed, once), order steps to the store, leave returns to the fence engine. No I/O here,
//! and no clock: the caller passes the wall-clock time in.
//!
//! # Restart
//!
//! Every deadline is recomputed from the store at start ([`Recorded`]): when each device was
//! last heard from, the `offline` and `unsupervised` episodes still open, the timer alerts
//! already raised (so none is raised twice), the leaves, orders and check-ins. A deadline that
//! passed while the service was down fires at once, at its own time. Curfews come from the
//! zone catalog ([`Supervisor::set_curfews`]); at start a window open now has its opening
//! judged again (the fence engine says whether that is still to do).
//!
//! # Monitoring orders
//!
//! With `[supervision] require_order = true`, a person is *monitored* only while one of their
//! orders is current (started, not ended). Outside an order, fixes are stored but not fenced,
//! and no `offline`, `unsupervised`, `leave_overdue` or `missed_checkin` is raised; deadlines
//! that pass meanwhile are dropped and set again from the moment an order starts.

pub mod wheel;

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::fence::{CheckinWindow, LevelsConfig};
use crate::model::{
    AlertKind, Checkin, Device, DeviceHeard, LeaveId, LeavePermit, MonitoringOrder, OrderId,
    Person, PersonId, SupervisionLevel, ZoneId,
};
use crate::schedule::Schedule;
use crate::store::{OpenEpisode, OrderStep, TimerAlert};
use wheel::Wheel;

/// How often, at most, a device's last-heard time is written to the store. A restart computes
/// the offline deadline from the stored time, so it can come this much early, never late.
pub const HEARD_WRITE_INTERVAL_SECS: i64 = 15;

/// Check-ins are kept in memory for this long: the longest a window can span.
const CHECKIN_MEMORY_HOURS: i64 = 48;

/// Where the rules read the time from.
#[derive(Debug, Clone, Copy, Default)]
pub enum Clock {
    /// The system's wall clock, as every other stage reads it.
    #[default]
    System,
    /// Wall-clock time as of an anchor, moved on by tokio's clock since: with tokio's time
    /// paused (tests), time passes only as tokio's clock is advanced, deadlines included, and
    /// pipelines started one after another on the same clock see one continuous time.
    Tokio {
        /// The wall-clock time at the anchor.
        wall: DateTime<Utc>,
        /// tokio's time at the anchor.
        at: tokio::time::Instant,
    },
}

impl Clock {
    /// A [`Clock::Tokio`] anchored now.
    pub fn tokio() -> Clock {
        Clock::Tokio {
            wall: Utc::now(),
            at: tokio::time::Instant::now(),
        }
    }

    /// The time now.
    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Clock::System => Utc::now(),
            Clock::Tokio { wall, at } => {
                let elapsed = tokio::time::Instant::now().saturating_duration_since(*at);
                *wall + Duration::from_std(elapsed).unwrap_or(Duration::MAX)
            }
        }
    }
}

/// The `[supervision]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SupervisionConfig {
    /// Run fences, offline and check-in rules only under a current monitoring order. Off by
    /// default, so a first run needs no paperwork; production turns it on.
    pub require_order: bool,
    /// How many days before an order's end `order_expiring` is raised.
    pub order_expiring_days: u32,
}

impl Default for SupervisionConfig {
    fn default() -> Self {
        SupervisionConfig {
            require_order: false,
            order_expiring_days: 7,
        }
    }
}

impl SupervisionConfig {
    /// Checks the values; an error names the key (within `[supervision]`) and the problem.
    ///
    /// # Errors
    /// `(key, problem)` for the first value out of range.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.order_expiring_days > 92 {
            return Err((
                "order_expiring_days",
                "must be at most 92 (an order lasts at most 92 days)".into(),
            ));
        }
        Ok(())
    }
}

/// What a deadline is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Due {
    /// A device's offline deadline.
    Offline(String),
    /// A person without a device.
    Unsupervised,
    /// A leave permit's end.
    LeaveEnd(LeaveId),
    /// A monitoring order's start.
    OrderStart(OrderId),
    /// A monitoring order's notice before its end.
    OrderExpiring(OrderId),
    /// A monitoring order's end.
    OrderEnd(OrderId),
    /// The close of the person's next check-in window.
    CheckinClose,
    /// The next opening of a curfew zone's window.
    CurfewOpens(ZoneId),
}

/// One deadline: whose and what for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TimerKey {
    /// Whose.
    pub person: PersonId,
    /// What for.
    pub due: Due,
}

/// A change the API committed that the rules must know at once. Serialisable: in cluster mode
/// it travels to the node owning the person's partition.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "notice", rename_all = "snake_case")]
pub enum Notice {
    /// A person was created or changed (level, time zone).
    PersonSaved(Person),
    /// A person was deleted.
    PersonDeleted(PersonId),
    /// A device was bound to a person.
    DeviceBound {
        /// The person.
        person: PersonId,
        /// The device.
        device: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// A device was unbound.
    DeviceUnbound {
        /// The person it was bound to.
        person: PersonId,
        /// The device.
        device: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// A leave permit was created, cancelled or ended early.
    LeaveSaved(LeavePermit),
    /// A monitoring order was created.
    OrderSaved(MonitoringOrder),
    /// A person checked in.
    CheckedIn(Checkin),
}

impl Notice {
    /// The person it concerns (the pipeline routes on it).
    pub fn person(&self) -> PersonId {
        match self {
            Notice::PersonSaved(p) => p.id,
            Notice::PersonDeleted(id) => *id,
            Notice::DeviceBound { person, .. } | Notice::DeviceUnbound { person, .. } => *person,
            Notice::LeaveSaved(l) => l.person_id,
            Notice::OrderSaved(o) => o.person_id,
            Notice::CheckedIn(c) => c.person_id,
        }
    }
}

/// An alert a rule raises, for the shard to build and commit.
#[derive(Debug, Clone, PartialEq)]
pub struct Raise {
    /// What.
    pub kind: AlertKind,
    /// Whom.
    pub person: PersonId,
    /// The device concerned (`offline` and its `returned`).
    pub device: Option<String>,
    /// The time it is raised for: the deadline, or the message that ended an episode.
    pub time: DateTime<Utc>,
    /// What an operator needs to know beyond the kind (the gap of a return, the order).
    pub note: String,
}

/// What the shard must do for the rules.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Commit this alert.
    Raise(Raise),
    /// A leave ended: for each zone, if the person's latest definite fix is outside it, raise
    /// `leave_overdue` at `at` and open the zone's breach (the first definite fix back ends it
    /// with `returned`). Skip zones for which [`Supervisor::already_raised`] says it was.
    CheckReturn {
        /// Whose.
        person: PersonId,
        /// The zones the leave suspended.
        zones: Vec<ZoneId>,
        /// The leave's end.
        at: DateTime<Utc>,
    },
    /// A curfew window of `zone` opened at `at` (no leave covers the zone, the person is
    /// monitored): judge the person's newest fix ([`crate::fence::FenceEngine::curfew_opened`])
    /// and raise `curfew` at `at` when it was definitely outside.
    CheckCurfew {
        /// Whose.
        person: PersonId,
        /// The curfew zone.
        zone: ZoneId,
        /// The opening.
        at: DateTime<Utc>,
    },
    /// Record the order step in the store (with its event), then call
    /// [`Supervisor::order_stepped`].
    StepOrder {
        /// Which order.
        order: OrderId,
        /// Started or ended.
        step: OrderStep,
        /// When.
        at: DateTime<Utc>,
    },
}

/// What the store knows, for [`Supervisor::resume`] (already filtered to one shard or not;
/// persons of other shards are simply not asked about).
#[derive(Debug, Clone, Default)]
pub struct Recorded {
    /// Every person.
    pub persons: Vec<Person>,
    /// Every device binding.
    pub devices: Vec<Device>,
    /// When each device was last heard from.
    pub heard: Vec<DeviceHeard>,
    /// `offline` and `unsupervised` episodes still open.
    pub episodes: Vec<OpenEpisode>,
    /// Timer alerts already raised.
    pub timer_alerts: Vec<TimerAlert>,
    /// Leaves not cancelled that ended recently or have not ended.
    pub leaves: Vec<LeavePermit>,
    /// Orders not ended.
    pub orders: Vec<MonitoringOrder>,
    /// Recent check-ins.
    pub checkins: Vec<Checkin>,
}

#[derive(Debug)]
struct DeviceWatch {
    last_heard: DateTime<Utc>,
    /// When the last-heard time was last handed out to be stored.
    written: Option<DateTime<Utc>>,
    /// The open `offline` episode's deadline.
    offline_since: Option<DateTime<Utc>>,
}

#[derive(Debug)]
struct Watch {
    level: SupervisionLevel,
    timezone: Tz,
    created_at: DateTime<Utc>,
    devices: HashMap<String, DeviceWatch>,
    /// The open `unsupervised` episode's time.
    unsupervised_since: Option<DateTime<Utc>>,
    leaves: HashMap<LeaveId, LeavePermit>,
    orders: HashMap<OrderId, MonitoringOrder>,
    checkins: Vec<DateTime<Utc>>,
    /// The check-in window the `CheckinClose` deadline closes.
    window: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// The curfew zones that apply, with their schedules.
    curfews: HashMap<ZoneId, Schedule>,
}

impl Watch {
    fn new(created_at: DateTime<Utc>) -> Watch {
        Watch {
            level: SupervisionLevel::default(),
            timezone: Tz::Asia__Shanghai,
            created_at,
            devices: HashMap::new(),
            unsupervised_since: None,
            leaves: HashMap::new(),
            orders: HashMap::new(),
            checkins: Vec::new(),
            window: None,
            curfews: HashMap::new(),
        }
    }
}

/// The timer-driven rules of one shard's persons.
pub struct Supervisor {
    config: SupervisionConfig,
    levels: LevelsConfig,
    persons: HashMap<PersonId, Watch>,
    /// Timer alerts raised (or recorded as raised): never raised again.
    raised: HashSet<TimerAlert>,
    wheel: Wheel<TimerKey>,
}

fn key_of(person: PersonId, due: Due) -> TimerKey {
    TimerKey { person, due }
}

/// When the window of `schedule` open at `now` opened (`None` when none is open, or the
/// schedule is always in force).
fn current_opening(schedule: &Schedule, now: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
    if !schedule.in_force(now, tz) {
        return None;
    }
    // A window lasts at most a day (two adjacent ones read as one): look back two.
    let mut opening = schedule.next_opening(now - Duration::days(2), tz)?;
    while let Some(next) = schedule.next_opening(opening, tz).filter(|t| *t <= now) {
        opening = next;
    }
    (opening <= now).then_some(opening)
}

fn timezone(name: &str) -> Tz {
    name.parse().unwrap_or(Tz::Asia__Shanghai)
}

/// Seconds as a short human length: `1h 05m 10s`.
fn span(seconds: i64) -> String {
    let (h, m, s) = (seconds / 3600, seconds % 3600 / 60, seconds % 60);
    if h > 0 {
        format!("{h}h {m:02}m {s:02}s")
    } else if m > 0 {
        format!("{m}m {s:02}s")
    } else {
        format!("{s}s")
    }
}

/// A local date and time in `tz` as UTC; a time in a DST gap moves forward by the gap, a time
/// repeated by a DST fall-back is taken at its first occurrence.
fn local_to_utc(tz: Tz, date: NaiveDate, time: chrono::NaiveTime) -> Option<DateTime<Utc>> {
    let naive = date.and_time(time);
    tz.from_local_datetime(&naive)
        .earliest()
        .or_else(|| {
            tz.from_local_datetime(&(naive + Duration::hours(1)))
                .earliest()
        })
        .map(|t| t.with_timezone(&Utc))
}

/// The first of `windows` (daily, local time in `tz`) that closes after `after` and opens at or
/// after `not_before`, as UTC (open, close).
fn next_window(
    tz: Tz,
    windows: &[CheckinWindow],
    after: DateTime<Utc>,
    not_before: DateTime<Utc>,
) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let today = after.with_timezone(&tz).date_naive();
    let mut best: Option<(DateTime<Utc>, DateTime<Utc>)> = None;
    for offset in -1..=2 {
        let Some(date) = today.checked_add_signed(Duration::days(offset)) else {
            continue;
        };
        for w in windows {
            let close_date = if w.closes > w.opens {
                date
            } else {
                date.succ_opt().unwrap_or(date)
            };
            let (Some(open), Some(close)) = (
                local_to_utc(tz, date, w.opens),
                local_to_utc(tz, close_date, w.closes),
            ) else {
                continue;
            };
            if close > after && open >= not_before && best.is_none_or(|(_, c)| close < c) {
                best = Some((open, close));
            }
        }
    }
    best
}

impl Supervisor {
    /// A supervisor with nobody yet.
    pub fn new(config: SupervisionConfig, levels: LevelsConfig) -> Supervisor {
        Supervisor {
            config,
            levels,
            persons: HashMap::new(),
            raised: HashSet::new(),
            wheel: Wheel::default(),
        }
    }

    /// Restores what the store records of the persons `mine` accepts and sets their deadlines;
    /// returns what is due at once (nothing is raised here: deadlines already past fire on the
    /// wheel like any other).
    pub fn resume(
        &mut self,
        recorded: &Recorded,
        mine: impl Fn(&PersonId) -> bool,
        now: DateTime<Utc>,
    ) {
        self.raised.extend(
            recorded
                .timer_alerts
                .iter()
                .filter(|a| mine(&a.person_id))
                .copied(),
        );
        let heard: HashMap<&str, DateTime<Utc>> = recorded
            .heard
            .iter()
            .map(|h| (h.device_id.as_str(), h.received_at))
            .collect();
        for person in recorded.persons.iter().filter(|p| mine(&p.id)) {
            let watch = self
                .persons
                .entry(person.id)
                .or_insert_with(|| Watch::new(person.created_at));
            watch.level = person.level;
            watch.timezone = timezone(&person.timezone);
            watch.created_at = person.created_at;
        }
        for device in recorded.devices.iter().filter(|d| mine(&d.person_id)) {
            let stored = heard.get(device.imei.as_str()).copied();
            let last = stored.map_or(device.created_at, |h| h.max(device.created_at));
            self.watch(device.person_id, now).devices.insert(
                device.imei.clone(),
                DeviceWatch {
                    last_heard: last,
                    written: stored,
                    offline_since: None,
                },
            );
        }
        for episode in recorded.episodes.iter().filter(|e| mine(&e.person_id)) {
            let Some(watch) = self.persons.get_mut(&episode.person_id) else {
                continue;
            };
            match (&episode.device_id, episode.kind) {
                (Some(device), AlertKind::Offline) => {
                    if let Some(d) = watch.devices.get_mut(device) {
                        // Heard from after the episode opened (the `returned` was not
                        // committed): the next message closes it.
                        d.offline_since = Some(episode.since);
                    }
                }
                (None, AlertKind::Unsupervised) if watch.devices.is_empty() => {
                    watch.unsupervised_since = Some(episode.since);
                }
                _ => {}
            }
        }
        for order in recorded.orders.iter().filter(|o| mine(&o.person_id)) {
            self.watch(order.person_id, now)
                .orders
                .insert(order.id, order.clone());
        }
        for leave in recorded.leaves.iter().filter(|l| mine(&l.person_id)) {
            self.watch(leave.person_id, now)
                .leaves
                .insert(leave.id, leave.clone());
        }
        for checkin in recorded.checkins.iter().filter(|c| mine(&c.person_id)) {
            self.watch(checkin.person_id, now)
                .checkins
                .push(checkin.time);
        }
        let persons: Vec<PersonId> = self.persons.keys().copied().collect();
        for person in persons {
            self.schedule_all(person, now, Some(now - Duration::days(1)));
        }
    }

    fn watch(&mut self, person: PersonId, now: DateTime<Utc>) -> &mut Watch {
        self.persons
            .entry(person)
            .or_insert_with(|| Watch::new(now))
    }

    fn offline_after(&self, level: SupervisionLevel) -> Duration {
        Duration::seconds(i64::from(self.levels.get(level).offline_after_s))
    }

    /// Whether the rules run for `person` now: always, or under a current order when
    /// `require_order` is set.
    pub fn monitored(&self, person: &PersonId) -> bool {
        !self.config.require_order
            || self
                .persons
                .get(person)
                .is_some_and(|w| w.orders.values().any(MonitoringOrder::is_current))
    }

    /// The zones a leave suspends for a fix of `person` at `time`.
    pub fn suspended_zones(&self, person: &PersonId, time: DateTime<Utc>) -> Vec<ZoneId> {
        let Some(watch) = self.persons.get(person) else {
            return Vec::new();
        };
        let mut zones: Vec<ZoneId> = Vec::new();
        for leave in watch.leaves.values() {
            zones.extend(
                leave
                    .zone_ids
                    .iter()
                    .filter(|z| leave.suspends(z, time))
                    .copied(),
            );
        }
        zones
    }

    /// Whether a timer alert was raised already (or recorded as raised before a restart).
    pub fn already_raised(&self, alert: &TimerAlert) -> bool {
        self.raised.contains(alert)
    }

    /// Records that a timer alert was raised.
    pub fn mark_raised(&mut self, alert: TimerAlert) {
        self.raised.insert(alert);
    }

    /// Deadlines pending (for tests and metrics).
    pub fn pending(&self) -> usize {
        self.wheel.len()
    }

    /// The next deadline to pass; `None` at once when none is pending.
    pub async fn next_due(&mut self) -> Option<(TimerKey, DateTime<Utc>)> {
        self.wheel.next().await
    }

    /// Sets every deadline of `person` from what is known; check-in windows from
    /// `windows_from` (the last day's at a restart, so a window that closed while the service
    /// was down is judged) or from now.
    fn schedule_all(
        &mut self,
        person: PersonId,
        now: DateTime<Utc>,
        windows_from: Option<DateTime<Utc>>,
    ) {
        let Some(watch) = self.persons.get(&person) else {
            return;
        };
        let offline_after = self.offline_after(watch.level);
        let expiring = Duration::days(i64::from(self.config.order_expiring_days));
        let mut sets: Vec<(Due, DateTime<Utc>)> = Vec::new();
        for (id, device) in &watch.devices {
            if device.offline_since.is_none() {
                sets.push((Due::Offline(id.clone()), device.last_heard + offline_after));
            }
        }
        if watch.devices.is_empty() && watch.unsupervised_since.is_none() {
            sets.push((Due::Unsupervised, watch.created_at + offline_after));
        }
        for leave in watch.leaves.values() {
            if leave.cancelled_at.is_none() {
                sets.push((Due::LeaveEnd(leave.id), leave.end()));
            }
        }
        for order in watch.orders.values() {
            if order.ended_at.is_some() {
                continue;
            }
            if order.started_at.is_none() {
                sets.push((Due::OrderStart(order.id), order.from));
            }
            sets.push((Due::OrderEnd(order.id), order.to));
            sets.push((
                Due::OrderExpiring(order.id),
                (order.to - expiring).max(order.created_at),
            ));
        }
        let windows = &self.levels.get(watch.level).checkin_windows;
        let window = next_window(
            watch.timezone,
            windows,
            windows_from.unwrap_or(now),
            watch.created_at,
        );
        if let Some((_, close)) = window {
            sets.push((Due::CheckinClose, close));
        }
        for (zone, schedule) in &watch.curfews {
            let key = TimerKey {
                person,
                due: Due::CurfewOpens(*zone),
            };
            // An opening already due stays due (it is served next, at its own time).
            if self.wheel.deadline(&key).is_some_and(|d| d <= now) {
                continue;
            }
            if let Some(at) = schedule.next_opening(now, watch.timezone) {
                sets.push((Due::CurfewOpens(*zone), at));
            }
        }
        if let Some(watch) = self.persons.get_mut(&person) {
            watch.window = window;
        }
        if window.is_none() {
            self.wheel.cancel(&TimerKey {
                person,
                due: Due::CheckinClose,
            });
        }
        for (due, at) in sets {
            self.wheel.set(TimerKey { person, due }, at, now);
        }
    }

    fn cancel_all(&mut self, person: PersonId) {
        let Some(watch) = self.persons.get(&person) else {
            return;
        };
        let mut dues = vec![Due::Unsupervised, Due::CheckinClose];
        dues.extend(watch.devices.keys().cloned().map(Due::Offline));
        dues.extend(watch.curfews.keys().copied().map(Due::CurfewOpens));
        dues.extend(watch.leaves.keys().copied().map(Due::LeaveEnd));
        for id in watch.orders.keys() {
            dues.extend([
                Due::OrderStart(*id),
                Due::OrderExpiring(*id),
                Due::OrderEnd(*id),
            ]);
        }
        for due in dues {
            self.wheel.cancel(&TimerKey { person, due });
        }
    }

    /// A message from a device arrived: ends its `offline` episode (`returned`, with the
    /// length of the silence) and moves its deadline. Returns the alerts, and the last-heard
    /// time to store when it is due for writing.
    pub fn heard(
        &mut self,
        heard: &DeviceHeard,
        now: DateTime<Utc>,
    ) -> (Vec<Action>, Option<DeviceHeard>) {
        let mut actions = Vec::new();
        let level = self.watch(heard.person_id, now).level;
        let offline_after = self.offline_after(level);
        let watch = self.watch(heard.person_id, now);
        if let Some(since) = watch.unsupervised_since.take() {
            actions.push(Action::Raise(Raise {
                kind: AlertKind::Returned,
                person: heard.person_id,
                device: None,
                time: heard.received_at,
                note: format!(
                    "device {} heard from; unsupervised since {}",
                    heard.device_id,
                    since.to_rfc3339()
                ),
            }));
        }
        let device = watch
            .devices
            .entry(heard.device_id.clone())
            .or_insert(DeviceWatch {
                last_heard: heard.received_at,
                written: None,
                offline_since: None,
            });
        if device.offline_since.take().is_some() {
            let gap = (heard.received_at - device.last_heard).num_seconds().max(0);
            actions.push(Action::Raise(Raise {
                kind: AlertKind::Returned,
                person: heard.person_id,
                device: Some(heard.device_id.clone()),
                time: heard.received_at,
                note: format!("heard from again after {} ({gap} s) of silence", span(gap)),
            }));
        }
        device.last_heard = device.last_heard.max(heard.received_at);
        let write = device
            .written
            .is_none_or(|w| device.last_heard - w >= Duration::seconds(HEARD_WRITE_INTERVAL_SECS));
        let last = device.last_heard;
        if write {
            device.written = Some(last);
        }
        self.wheel.cancel(&TimerKey {
            person: heard.person_id,
            due: Due::Unsupervised,
        });
        self.wheel.set(
            TimerKey {
                person: heard.person_id,
                due: Due::Offline(heard.device_id.clone()),
            },
            last + offline_after,
            now,
        );
        let write = write.then(|| DeviceHeard {
            received_at: last,
            ..heard.clone()
        });
        (actions, write)
    }

    /// Takes a change the API committed.
    pub fn notice(&mut self, notice: Notice, now: DateTime<Utc>) -> Vec<Action> {
        let person = notice.person();
        let mut actions = Vec::new();
        match notice {
            Notice::PersonSaved(saved) => {
                let watch = self.watch(person, saved.created_at);
                watch.level = saved.level;
                watch.timezone = timezone(&saved.timezone);
                watch.created_at = saved.created_at;
                self.schedule_all(person, now, None);
            }
            Notice::PersonDeleted(_) => {
                self.cancel_all(person);
                self.persons.remove(&person);
            }
            Notice::DeviceBound { device, at, .. } => {
                let watch = self.watch(person, now);
                watch.devices.entry(device.clone()).or_insert(DeviceWatch {
                    last_heard: at,
                    written: None,
                    offline_since: None,
                });
                if let Some(since) = watch.unsupervised_since.take() {
                    actions.push(Action::Raise(Raise {
                        kind: AlertKind::Returned,
                        person,
                        device: None,
                        time: at,
                        note: format!(
                            "device {device} bound; unsupervised since {}",
                            since.to_rfc3339()
                        ),
                    }));
                }
                self.wheel.cancel(&TimerKey {
                    person,
                    due: Due::Unsupervised,
                });
                self.schedule_all(person, now, None);
            }
            Notice::DeviceUnbound { device, at, .. } => {
                self.wheel.cancel(&TimerKey {
                    person,
                    due: Due::Offline(device.clone()),
                });
                let monitored = self.monitored(&person);
                let watch = self.watch(person, now);
                watch.devices.remove(&device);
                if watch.devices.is_empty() && watch.unsupervised_since.is_none() && monitored {
                    watch.unsupervised_since = Some(at);
                    actions.push(Action::Raise(Raise {
                        kind: AlertKind::Unsupervised,
                        person,
                        device: None,
                        time: at,
                        note: format!("device {device} unbound; no device is left"),
                    }));
                }
            }
            Notice::LeaveSaved(leave) => {
                let key = TimerKey {
                    person,
                    due: Due::LeaveEnd(leave.id),
                };
                if leave.cancelled_at.is_some() {
                    self.wheel.cancel(&key);
                    self.watch(person, now).leaves.remove(&leave.id);
                } else {
                    self.wheel.set(key, leave.end(), now);
                    self.watch(person, now).leaves.insert(leave.id, leave);
                }
            }
            Notice::OrderSaved(order) => {
                self.watch(person, now).orders.insert(order.id, order);
                self.schedule_all(person, now, None);
            }
            Notice::CheckedIn(checkin) => {
                let watch = self.watch(person, now);
                watch.checkins.push(checkin.time);
                watch
                    .checkins
                    .retain(|t| *t >= now - Duration::hours(CHECKIN_MEMORY_HOURS));
            }
        }
        actions
    }

    /// A deadline passed: what it raises.
    pub fn fire(&mut self, key: TimerKey, at: DateTime<Utc>, now: DateTime<Utc>) -> Vec<Action> {
        let person = key.person;
        let monitored = self.monitored(&person);
        let Some(watch) = self.persons.get_mut(&person) else {
            return Vec::new();
        };
        let mut actions = Vec::new();
        match key.due {
            Due::Offline(device) => {
                let Some(d) = watch.devices.get_mut(&device) else {
                    return actions;
                };
                if d.offline_since.is_none() && monitored {
                    d.offline_since = Some(at);
                    actions.push(Action::Raise(Raise {
                        kind: AlertKind::Offline,
                        person,
                        device: Some(device),
                        time: at,
                        note: format!("no message since {}", d.last_heard.to_rfc3339()),
                    }));
                }
            }
            Due::Unsupervised => {
                if watch.devices.is_empty() && watch.unsupervised_since.is_none() && monitored {
                    watch.unsupervised_since = Some(at);
                    actions.push(Action::Raise(Raise {
                        kind: AlertKind::Unsupervised,
                        person,
                        device: None,
                        time: at,
                        note: "no device is bound".into(),
                    }));
                }
            }
            Due::LeaveEnd(id) => {
                if let Some(leave) = watch.leaves.remove(&id) {
                    if leave.cancelled_at.is_none() && monitored {
                        let at = leave.end();
                        actions.push(Action::CheckReturn {
                            person,
                            zones: leave.zone_ids,
                            at,
                        });
                    }
                }
            }
            Due::OrderStart(order) => actions.push(Action::StepOrder {
                order,
                step: OrderStep::Started,
                at: at.min(now),
            }),
            Due::OrderEnd(order) => actions.push(Action::StepOrder {
                order,
                step: OrderStep::Ended,
                at: at.min(now),
            }),
            Due::OrderExpiring(id) => {
                let Some(order) = watch.orders.get(&id) else {
                    return actions;
                };
                // A renewal that carries on past this order's end makes the notice moot.
                let renewed = watch.orders.values().any(|o| {
                    o.id != id && o.ended_at.is_none() && o.from <= order.to && o.to > order.to
                });
                let key = TimerAlert {
                    person_id: person,
                    kind: AlertKind::OrderExpiring,
                    zone_id: None,
                    time: at,
                };
                if order.ended_at.is_none() && !renewed && !self.raised.contains(&key) {
                    self.raised.insert(key);
                    actions.push(Action::Raise(Raise {
                        kind: AlertKind::OrderExpiring,
                        person,
                        device: None,
                        time: at,
                        note: format!(
                            "monitoring order {} ({}) ends at {}",
                            order.id,
                            order.ground,
                            order.to.to_rfc3339()
                        ),
                    }));
                }
            }
            Due::CurfewOpens(zone) => {
                let Some(schedule) = watch.curfews.get(&zone) else {
                    return actions;
                };
                let next = schedule.next_opening(at, watch.timezone);
                let on_leave = watch.leaves.values().any(|l| l.suspends(&zone, at));
                if let Some(next) = next {
                    self.wheel
                        .set(key_of(person, Due::CurfewOpens(zone)), next, now);
                }
                if monitored && !on_leave {
                    actions.push(Action::CheckCurfew { person, zone, at });
                }
            }
            Due::CheckinClose => {
                if let Some((open, close)) = watch.window {
                    let checked_in = watch.checkins.iter().any(|t| open <= *t && *t <= close);
                    let key = TimerAlert {
                        person_id: person,
                        kind: AlertKind::MissedCheckin,
                        zone_id: None,
                        time: close,
                    };
                    if !checked_in && monitored && !self.raised.contains(&key) {
                        self.raised.insert(key);
                        actions.push(Action::Raise(Raise {
                            kind: AlertKind::MissedCheckin,
                            person,
                            device: None,
                            time: close,
                            note: format!(
                                "no check-in between {} and {}",
                                open.to_rfc3339(),
                                close.to_rfc3339()
                            ),
                        }));
                    }
                }
                // The next window, after this one.
                let after = at;
                let windows = self.levels.get(watch.level).checkin_windows.clone();
                let window = next_window(watch.timezone, &windows, after, watch.created_at);
                watch.window = window;
                if let Some((_, close)) = window {
                    self.wheel.set(
                        TimerKey {
                            person,
                            due: Due::CheckinClose,
                        },
                        close,
                        now,
                    );
                }
            }
        }
        actions
    }

    /// The persons this supervisor knows.
    pub fn persons(&self) -> Vec<PersonId> {
        self.persons.keys().copied().collect()
    }

    /// Sets the curfew zones that apply to `person` (scheduled inclusion zones, from the zone
    /// catalog) and arms each one's next opening; zones no longer listed lose theirs. At a
    /// start (`resuming`), a window open now is armed at its own opening, which fires at once:
    /// an opening that passed while the service was down (or just before a restart) is
    /// judged as it would have been.
    pub fn set_curfews(
        &mut self,
        person: PersonId,
        curfews: Vec<(ZoneId, Schedule)>,
        now: DateTime<Utc>,
        resuming: bool,
    ) {
        let watch = self.watch(person, now);
        let tz = watch.timezone;
        let old: Vec<ZoneId> = watch.curfews.keys().copied().collect();
        watch.curfews = curfews.into_iter().collect();
        let kept: HashMap<ZoneId, Schedule> = watch.curfews.clone();
        for zone in old.into_iter().filter(|z| !kept.contains_key(z)) {
            self.wheel.cancel(&key_of(person, Due::CurfewOpens(zone)));
        }
        for (zone, schedule) in kept {
            let key = key_of(person, Due::CurfewOpens(zone));
            let opened = if resuming {
                current_opening(&schedule, now, tz)
            } else {
                None
            };
            if opened.is_none() && self.wheel.deadline(&key).is_some_and(|d| d <= now) {
                continue;
            }
            match opened.or_else(|| schedule.next_opening(now, tz)) {
                Some(at) => self.wheel.set(key, at, now),
                None => self.wheel.cancel(&key),
            }
        }
    }

    /// Tries an order step again at `at` (the store refused it).
    pub fn retry_order_step(
        &mut self,
        order: OrderId,
        step: OrderStep,
        at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) {
        let Some(person) = self
            .persons
            .iter()
            .find(|(_, w)| w.orders.contains_key(&order))
            .map(|(p, _)| *p)
        else {
            return;
        };
        let due = match step {
            OrderStep::Started => Due::OrderStart(order),
            OrderStep::Ended => Due::OrderEnd(order),
        };
        self.wheel.set(TimerKey { person, due }, at, now);
    }

    /// The store recorded an order's step: monitoring under it started or stopped. When it
    /// started, deadlines are set again from now (none passed unseen while unmonitored).
    pub fn order_stepped(&mut self, order: MonitoringOrder, now: DateTime<Utc>) {
        let person = order.person_id;
        let ended = order.ended_at.is_some();
        let id = order.id;
        let was_monitored = self.monitored(&person);
        let watch = self.watch(person, now);
        watch.orders.insert(id, order);
        if ended {
            for due in [
                Due::OrderStart(id),
                Due::OrderExpiring(id),
                Due::OrderEnd(id),
            ] {
                self.wheel.cancel(&TimerKey { person, due });
            }
            return;
        }
        if !was_monitored {
            // Nothing was raised while unmonitored: count the silence from now.
            if let Some(watch) = self.persons.get_mut(&person) {
                for device in watch.devices.values_mut() {
                    device.last_heard = device.last_heard.max(now);
                }
                watch.created_at = watch.created_at.max(now);
            }
        }
        self.schedule_all(person, now, None);
    }
}

#[cfg(test)]
mod tests;

//! The records the timer-driven supervision rules keep: when each device was last heard from,
//! leave permits, monitoring orders and check-ins, and what the alerts already say about the
//! episodes the rules open (so a restart neither repeats an alert nor loses one).
//!
//! [`SupervisionRecords`] is part of every [`Store`](super::Store) (a supertrait), implemented
//! by both backends in `sqlite/supervision.rs` and `postgres/supervision.rs`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;
use crate::model::{
    AlertKind, Checkin, DeviceHeard, Fix, LeaveId, LeavePermit, MonitoringOrder, OrderId, PersonId,
    ZoneId,
};

/// An `offline` or `unsupervised` episode still open, as the store's alerts record it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenEpisode {
    /// Who.
    pub person_id: PersonId,
    /// The silent device (`offline`); `None` for `unsupervised`.
    pub device_id: Option<String>,
    /// `Offline` or `Unsupervised`.
    pub kind: AlertKind,
    /// The alert's time (the deadline it was raised at).
    pub since: DateTime<Utc>,
}

/// An alert a timer raised at a scheduled time (`leave_overdue`, `order_expiring`,
/// `missed_checkin`): the key that stops a restart from raising it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimerAlert {
    /// Who.
    pub person_id: PersonId,
    /// What.
    pub kind: AlertKind,
    /// The zone, for `leave_overdue`.
    pub zone_id: Option<ZoneId>,
    /// The scheduled time it was raised for.
    pub time: DateTime<Utc>,
}

/// How a leave permit is closed before its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaveClosing {
    /// Withdrawn: the zones are no longer suspended, and nothing is owed at its end.
    Cancel,
    /// The person reported back early: the window ends now.
    EndEarly,
}

impl LeaveClosing {
    /// The kind of the action recorded for it in the actions chain.
    pub fn action_kind(self) -> &'static str {
        match self {
            LeaveClosing::Cancel => "leave.cancel",
            LeaveClosing::EndEarly => "leave.end",
        }
    }
}

/// A step in a monitoring order's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderStep {
    /// Monitoring under it started (`order.started`).
    Started,
    /// Monitoring under it stopped (`order.ended`).
    Ended,
}

impl OrderStep {
    /// The kind of the action recorded for it in the actions chain.
    pub fn action_kind(self) -> &'static str {
        match self {
            OrderStep::Started => "order.start",
            OrderStep::Ended => "order.end",
        }
    }
}

/// The supervision rules' records.
#[async_trait]
pub trait SupervisionRecords {
    /// Records when devices were last heard from (a newer time replaces an older one only).
    async fn record_heard(&self, heard: &[DeviceHeard]) -> Result<(), StoreError>;
    /// When every device was last heard from.
    async fn heard_times(&self) -> Result<Vec<DeviceHeard>, StoreError>;
    /// Each device's newest valid position (as [`Store::newest_fix_times`](super::Store)
    /// chooses it), for the fence engine to know where the person last was after a restart.
    async fn latest_fixes(&self) -> Result<Vec<Fix>, StoreError>;
    /// The `offline` (per device) and `unsupervised` (per person) episodes still open: the
    /// newest such alert not followed by a `returned` without a zone for the same device (or,
    /// for `unsupervised`, without a device).
    async fn open_episodes(&self) -> Result<Vec<OpenEpisode>, StoreError>;
    /// The `leave_overdue`, `order_expiring` and `missed_checkin` alerts with a time at or
    /// after `since`.
    async fn timer_alerts(&self, since: DateTime<Utc>) -> Result<Vec<TimerAlert>, StoreError>;

    /// Stores a new leave permit.
    async fn create_leave(&self, leave: &LeavePermit) -> Result<(), StoreError>;
    /// One leave permit.
    async fn leave(&self, id: LeaveId) -> Result<LeavePermit, StoreError>;
    /// A person's leave permits, newest window first.
    async fn leaves(&self, person: PersonId) -> Result<Vec<LeavePermit>, StoreError>;
    /// Cancels a leave or ends it early at `at`; a leave already cancelled or ended keeps its
    /// first closing. Returns the leave as stored.
    async fn close_leave(
        &self,
        id: LeaveId,
        closing: LeaveClosing,
        at: DateTime<Utc>,
    ) -> Result<LeavePermit, StoreError>;
    /// Leave permits not cancelled whose window ends at or after `since`.
    async fn leaves_ending_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<LeavePermit>, StoreError>;

    /// Stores a new monitoring order; with `started_at` set, appends its `order.started`
    /// event in the same transaction.
    async fn create_order(&self, order: &MonitoringOrder) -> Result<(), StoreError>;
    /// A person's monitoring orders, newest first.
    async fn orders(&self, person: PersonId) -> Result<Vec<MonitoringOrder>, StoreError>;
    /// Every order whose monitoring has not ended.
    async fn open_orders(&self) -> Result<Vec<MonitoringOrder>, StoreError>;
    /// Every order, of any person (released ones too), that may have been in force at some
    /// time in `[from, to)`: starting before `to`, running to `from` or later and not ended
    /// before `from`; oldest start first.
    async fn orders_in_force(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<MonitoringOrder>, StoreError>;
    /// Records that monitoring under an order started or ended at `at`, with its event
    /// (`order.started`, `order.ended`) in the same transaction. `None` when the step was
    /// already recorded (nothing is appended twice).
    async fn step_order(
        &self,
        id: OrderId,
        step: OrderStep,
        at: DateTime<Utc>,
    ) -> Result<Option<MonitoringOrder>, StoreError>;

    /// Stores a check-in.
    async fn create_checkin(&self, checkin: &Checkin) -> Result<(), StoreError>;
    /// A person's check-ins, newest first, at most `limit`.
    async fn checkins(&self, person: PersonId, limit: u32) -> Result<Vec<Checkin>, StoreError>;
    /// Every check-in at or after `since`.
    async fn checkins_since(&self, since: DateTime<Utc>) -> Result<Vec<Checkin>, StoreError>;
}

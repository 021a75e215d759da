//! The records the monthly reports read and write: each person's supervision spans (enrolled,
//! at which level, in which time zone, until when), counts and windows over positions, alerts
//! and commands, the officer's assessments (表扬, 奖励, 警告, 撤销建议), and broadcasts (法制教育
//! and notices sent as `message` commands to many devices at once).
//!
//! [`ReportRecords`] is part of every [`Store`](super::Store) (a supertrait), implemented by
//! both backends in `sqlite/reports.rs` and `postgres/reports.rs`. Reports are computed above
//! the store (`crate::report`); the store only answers bounded reads.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::model::{Actor, Alert, AlertId, DeviceCommand, PersonId, SupervisionLevel};

/// A stretch of a person's supervision at one level and in one time zone. A person's spans
/// follow one another without gaps from enrolment (`POST /persons`) to release (`DELETE`):
/// a change of level or time zone closes the open span and opens the next at the same instant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LevelSpan {
    /// Whose.
    #[schema(value_type = uuid::Uuid)]
    pub person_id: PersonId,
    /// The level during the span.
    pub level: SupervisionLevel,
    /// The person's IANA time zone during the span.
    pub timezone: String,
    /// Start, UTC (the enrolment for a person's first span).
    pub since: DateTime<Utc>,
    /// End, UTC; `None` while it lasts.
    pub until: Option<DateTime<Utc>>,
    /// The span ended because the person was released (deleted).
    pub released: bool,
}

/// What an officer's entry on a person's month says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AssessmentKind {
    /// 表扬: praise.
    Praise,
    /// 奖励: a reward.
    Reward,
    /// 警告: a warning; may cite alerts.
    Warning,
    /// 撤销建议: a proposal to revoke community supervision; may cite alerts.
    RevocationProposal,
}

impl AssessmentKind {
    /// Every kind.
    pub const ALL: [AssessmentKind; 4] = [
        AssessmentKind::Praise,
        AssessmentKind::Reward,
        AssessmentKind::Warning,
        AssessmentKind::RevocationProposal,
    ];

    /// The wire name.
    pub fn as_str(&self) -> &'static str {
        match self {
            AssessmentKind::Praise => "praise",
            AssessmentKind::Reward => "reward",
            AssessmentKind::Warning => "warning",
            AssessmentKind::RevocationProposal => "revocation_proposal",
        }
    }

    /// Whether an entry of this kind may cite alerts (a warning or a revocation proposal
    /// rests on what the person did; praise and rewards do not).
    pub fn cites_alerts(&self) -> bool {
        matches!(
            self,
            AssessmentKind::Warning | AssessmentKind::RevocationProposal
        )
    }
}

impl std::str::FromStr for AssessmentKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AssessmentKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown assessment kind {s:?}; expected praise, reward, warning or \
                     revocation_proposal"
                )
            })
    }
}

/// An officer's entry on a person's month, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Assessment {
    /// Entry id.
    #[schema(value_type = uuid::Uuid)]
    pub id: uuid::Uuid,
    /// Whom it is about.
    #[schema(value_type = uuid::Uuid)]
    pub person_id: PersonId,
    /// What it says.
    pub kind: AssessmentKind,
    /// Why, as the officer wrote it.
    pub reason: String,
    /// The month it assesses, `YYYY-MM`.
    pub month: String,
    /// Alerts of the person it cites (warnings and revocation proposals only).
    #[schema(value_type = Vec<uuid::Uuid>)]
    pub alert_ids: Vec<AlertId>,
    /// Who recorded it (the API token, by id and label).
    pub actor: Actor,
    /// When, UTC.
    pub created_at: DateTime<Utc>,
}

/// Whom a broadcast goes to: `{"level": "strict"}`, `{"person_ids": [...]}` or
/// `{"zone_id": "..."}` (the persons assigned the zone, or every person it applies to when it
/// is shared).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum BroadcastTarget {
    /// Every person supervised at a level.
    Level(SupervisionLevel),
    /// These persons.
    PersonIds(Vec<uuid::Uuid>),
    /// The persons a zone applies to.
    ZoneId(uuid::Uuid),
}

/// A text sent to many devices at once, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Broadcast {
    /// Broadcast id.
    #[schema(value_type = uuid::Uuid)]
    pub id: uuid::Uuid,
    /// The message text.
    pub text: String,
    /// Whom it was addressed to.
    pub to: BroadcastTarget,
    /// When it was made, UTC.
    pub created_at: DateTime<Utc>,
    /// When its commands expire unless a device answered.
    pub expires_at: DateTime<Utc>,
    /// Who made it.
    pub created_by: Actor,
}

/// Where a broadcast's commands stand, one per device targeted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BroadcastCounts {
    /// Devices it was queued for.
    pub targeted: u64,
    /// Still queued (the device has not connected since).
    pub pending: u64,
    /// Written to the device's connection (acknowledged ones included).
    pub delivered: u64,
    /// Answered by the device as done.
    pub acknowledged: u64,
    /// Expired before the device answered.
    pub expired: u64,
    /// Refused by the device, or its protocol cannot carry a message.
    pub failed: u64,
}

/// A broadcast with its counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BroadcastSummary {
    /// The broadcast.
    #[serde(flatten)]
    pub broadcast: Broadcast,
    /// Its commands' states.
    pub counts: BroadcastCounts,
}

/// The reports' records.
#[async_trait]
pub trait ReportRecords {
    /// The supervision spans (of `person`, or of everyone) that overlap `[from, to)`, or end
    /// exactly at `from` (so a span starting at `from` can be told from an enrolment), ordered
    /// by person and start.
    async fn level_spans(
        &self,
        person: Option<PersonId>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<LevelSpan>, StoreError>;
    /// How many positions attributed to `person` have a fix time in `[from, to)`, per device
    /// (devices with none are left out), ordered by device.
    async fn position_counts(
        &self,
        person: PersonId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<(String, u64)>, StoreError>;
    /// The alerts (of `person`, or of everyone) whose time is in `[from, to)`, ascending `seq`.
    async fn alerts_between(
        &self,
        person: Option<PersonId>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Alert>, StoreError>;
    /// The commands for `device` created in `[from, to)`, ascending `seq`.
    async fn commands_between(
        &self,
        device: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<DeviceCommand>, StoreError>;

    /// Stores an officer's entry and records it in the actions chain (`assessment.create`)
    /// in the same transaction. [`StoreError::UnknownReference`] when the person does not
    /// exist.
    async fn create_assessment(&self, assessment: &Assessment) -> Result<(), StoreError>;
    /// A person's entries (those on `month` only, when given), oldest first.
    async fn assessments(
        &self,
        person: PersonId,
        month: Option<&str>,
    ) -> Result<Vec<Assessment>, StoreError>;

    /// Stores a broadcast with its commands (each `pending`, one per device), links them, and
    /// records it in the actions chain (`broadcast.create`), in one transaction. Returns the
    /// commands with their `seq`.
    async fn create_broadcast(
        &self,
        broadcast: &Broadcast,
        commands: &[DeviceCommand],
    ) -> Result<Vec<DeviceCommand>, StoreError>;
    /// One broadcast with its counts.
    async fn broadcast(&self, id: uuid::Uuid) -> Result<BroadcastSummary, StoreError>;
    /// The newest broadcasts with their counts, newest first, at most `limit`.
    async fn broadcasts(&self, limit: u32) -> Result<Vec<BroadcastSummary>, StoreError>;
}

/// The counts of a broadcast from the statuses and send times of its commands.
pub(crate) fn count_commands(
    rows: impl IntoIterator<Item = (crate::model::CommandStatus, bool)>,
) -> BroadcastCounts {
    use crate::model::CommandStatus;
    let mut counts = BroadcastCounts::default();
    for (status, was_sent) in rows {
        counts.targeted += 1;
        if was_sent {
            counts.delivered += 1;
        }
        match status {
            CommandStatus::Pending => counts.pending += 1,
            CommandStatus::Sent => {}
            CommandStatus::Acknowledged => counts.acknowledged += 1,
            CommandStatus::Expired => counts.expired += 1,
            CommandStatus::Failed => counts.failed += 1,
        }
    }
    counts
}

/// `assessment.create` with the entry as recorded.
pub(crate) fn assessment_action(assessment: &Assessment) -> super::chain::NewAction {
    super::chain::NewAction::new(
        "assessment.create",
        assessment.id,
        serde_json::json!({
            "kind": assessment.kind.as_str(),
            "reason": assessment.reason,
            "month": assessment.month,
            "alert_ids": assessment.alert_ids,
            "token_id": assessment.actor.token_id,
            "label": assessment.actor.label,
        }),
    )
    .person(assessment.person_id)
}

/// `broadcast.create` with the broadcast and how many devices it was queued for.
pub(crate) fn broadcast_action(broadcast: &Broadcast, devices: usize) -> super::chain::NewAction {
    super::chain::NewAction::new(
        "broadcast.create",
        broadcast.id,
        serde_json::json!({
            "text": broadcast.text,
            "to": broadcast.to,
            "expires_at": broadcast.expires_at,
            "devices": devices,
        }),
    )
}

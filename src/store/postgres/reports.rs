//! [`ReportRecords`] on PostgreSQL: native `timestamptz`, `uuid` and `uuid[]` columns, the
//! broadcast target as JSON text. The supervision spans are moved inside the person's own
//! create, update and delete transactions.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

use super::{alert_from_row, append_action, command_from_row, not_found, parse, to_json, PgStore};
use crate::model::{Actor, Alert, CommandStatus, DeviceCommand, Person, PersonId};
use crate::store::reports::{
    assessment_action, broadcast_action, count_commands, Assessment, Broadcast, BroadcastSummary,
    LevelSpan, ReportRecords,
};
use crate::store::StoreError;

/// Opens a person's first span at enrolment.
pub(super) async fn open_span(
    conn: &mut PgConnection,
    person: &Person,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO person_levels (person_id, level, timezone, since) VALUES ($1, $2, $3, $4)",
    )
    .bind(person.id)
    .bind(person.level.as_str())
    .bind(&person.timezone)
    .bind(at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// After a change of `person`: when the open span's level or time zone differs, closes it at
/// `at` and opens the next.
pub(super) async fn follow_span(
    conn: &mut PgConnection,
    person: &Person,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let open: Option<(String, String)> = sqlx::query_as(
        "SELECT level, timezone FROM person_levels WHERE person_id = $1 AND until IS NULL \
         FOR UPDATE",
    )
    .bind(person.id)
    .fetch_optional(&mut *conn)
    .await?;
    if open
        .as_ref()
        .is_some_and(|(level, tz)| level == person.level.as_str() && *tz == person.timezone)
    {
        return Ok(());
    }
    close_span(conn, person.id, at, false).await?;
    open_span(conn, person, at).await
}

/// Closes a person's open span at `at` (`released` at their deletion).
pub(super) async fn close_span(
    conn: &mut PgConnection,
    person: PersonId,
    at: DateTime<Utc>,
    released: bool,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE person_levels SET until = $1, released = $2 WHERE person_id = $3 \
         AND until IS NULL",
    )
    .bind(at)
    .bind(released)
    .bind(person)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

fn span_from_row(row: &PgRow) -> Result<LevelSpan, StoreError> {
    Ok(LevelSpan {
        person_id: row.try_get("person_id")?,
        level: parse("person_level", row.try_get::<&str, _>("level")?)?,
        timezone: row.try_get("timezone")?,
        since: row.try_get("since")?,
        until: row.try_get("until")?,
        released: row.try_get("released")?,
    })
}

fn actor_from_row(row: &PgRow) -> Result<Actor, StoreError> {
    Ok(Actor {
        token_id: row.try_get("token_id")?,
        label: row.try_get("label")?,
    })
}

fn assessment_from_row(row: &PgRow) -> Result<Assessment, StoreError> {
    Ok(Assessment {
        id: row.try_get("id")?,
        person_id: row.try_get("person_id")?,
        kind: parse("assessment", row.try_get::<&str, _>("kind")?)?,
        reason: row.try_get("reason")?,
        month: row.try_get("month")?,
        alert_ids: row.try_get("alert_ids")?,
        actor: actor_from_row(row)?,
        created_at: row.try_get("created_at")?,
    })
}

fn broadcast_from_row(row: &PgRow) -> Result<Broadcast, StoreError> {
    let target: &str = row.try_get("target")?;
    Ok(Broadcast {
        id: row.try_get("id")?,
        text: row.try_get("text")?,
        to: serde_json::from_str(target).map_err(|e| StoreError::Corrupt {
            what: "broadcast",
            reason: format!("target {target:?}: {e}"),
        })?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        created_by: actor_from_row(row)?,
    })
}

impl PgStore {
    async fn summarise(&self, broadcast: Broadcast) -> Result<BroadcastSummary, StoreError> {
        let rows: Vec<(String, bool)> = sqlx::query_as(
            "SELECT c.status, c.sent_at IS NOT NULL FROM broadcast_commands b \
             JOIN commands c ON c.id = b.command_id WHERE b.broadcast_id = $1",
        )
        .bind(broadcast.id)
        .fetch_all(&self.pool)
        .await?;
        let statuses = rows
            .iter()
            .map(|(status, sent)| Ok((parse::<CommandStatus>("command", status)?, *sent)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(BroadcastSummary {
            broadcast,
            counts: count_commands(statuses),
        })
    }
}

#[async_trait]
impl ReportRecords for PgStore {
    async fn level_spans(
        &self,
        person: Option<PersonId>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<LevelSpan>, StoreError> {
        sqlx::query(
            "SELECT * FROM person_levels WHERE ($1::uuid IS NULL OR person_id = $1) \
             AND since < $3 AND (until IS NULL OR until >= $2) ORDER BY person_id, since",
        )
        .bind(person)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(span_from_row)
        .collect()
    }

    async fn position_counts(
        &self,
        person: PersonId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT device_id, COUNT(*) FROM positions WHERE person_id = $1 AND time >= $2 \
             AND time < $3 GROUP BY device_id ORDER BY device_id",
        )
        .bind(person)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(device, n)| (device, u64::try_from(n).unwrap_or(0)))
            .collect())
    }

    async fn alerts_between(
        &self,
        person: Option<PersonId>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Alert>, StoreError> {
        sqlx::query(
            "SELECT * FROM alerts WHERE ($1::uuid IS NULL OR person_id = $1) AND time >= $2 \
             AND time < $3 ORDER BY seq",
        )
        .bind(person)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(alert_from_row)
        .collect()
    }

    async fn commands_between(
        &self,
        device: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<DeviceCommand>, StoreError> {
        sqlx::query(
            "SELECT * FROM commands WHERE device_id = $1 AND created_at >= $2 \
             AND created_at < $3 ORDER BY seq",
        )
        .bind(device)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(command_from_row)
        .collect()
    }

    async fn create_assessment(&self, assessment: &Assessment) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let known: Option<i32> = sqlx::query_scalar("SELECT 1 FROM persons WHERE id = $1")
            .bind(assessment.person_id)
            .fetch_optional(&mut *tx)
            .await?;
        if known.is_none() {
            return Err(StoreError::UnknownReference(format!(
                "person {} does not exist",
                assessment.person_id
            )));
        }
        sqlx::query(
            "INSERT INTO assessments (id, person_id, kind, reason, month, alert_ids, token_id, \
             label, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(assessment.id)
        .bind(assessment.person_id)
        .bind(assessment.kind.as_str())
        .bind(&assessment.reason)
        .bind(&assessment.month)
        .bind(&assessment.alert_ids)
        .bind(assessment.actor.token_id)
        .bind(&assessment.actor.label)
        .bind(assessment.created_at)
        .execute(&mut *tx)
        .await?;
        append_action(&mut tx, assessment_action(assessment)).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn assessments(
        &self,
        person: PersonId,
        month: Option<&str>,
    ) -> Result<Vec<Assessment>, StoreError> {
        sqlx::query(
            "SELECT * FROM assessments WHERE person_id = $1 AND ($2::text IS NULL OR month = $2) \
             ORDER BY created_at, id",
        )
        .bind(person)
        .bind(month)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(assessment_from_row)
        .collect()
    }

    async fn create_broadcast(
        &self,
        broadcast: &Broadcast,
        commands: &[DeviceCommand],
    ) -> Result<Vec<DeviceCommand>, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO broadcasts (id, text, target, created_at, expires_at, token_id, label) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(broadcast.id)
        .bind(&broadcast.text)
        .bind(to_json(&broadcast.to)?)
        .bind(broadcast.created_at)
        .bind(broadcast.expires_at)
        .bind(broadcast.created_by.token_id)
        .bind(&broadcast.created_by.label)
        .execute(&mut *tx)
        .await?;
        let mut stored = Vec::with_capacity(commands.len());
        for command in commands {
            let seq: i64 = sqlx::query_scalar(
                "INSERT INTO commands (id, device_id, kind, text, interval_s, status, protocol, \
                 reference, created_at, expires_at, sent_at, completed_at, reply, error) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
                 RETURNING seq",
            )
            .bind(command.id)
            .bind(&command.device_id)
            .bind(&command.kind)
            .bind(&command.text)
            .bind(command.interval_s.map(i64::from))
            .bind(command.status.as_str())
            .bind(&command.protocol)
            .bind(&command.reference)
            .bind(command.created_at)
            .bind(command.expires_at)
            .bind(command.sent_at)
            .bind(command.completed_at)
            .bind(&command.reply)
            .bind(&command.error)
            .fetch_one(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO broadcast_commands (broadcast_id, command_id) VALUES ($1, $2)",
            )
            .bind(broadcast.id)
            .bind(command.id)
            .execute(&mut *tx)
            .await?;
            stored.push(DeviceCommand {
                seq,
                ..command.clone()
            });
        }
        append_action(&mut tx, broadcast_action(broadcast, commands.len())).await?;
        tx.commit().await?;
        Ok(stored)
    }

    async fn broadcast(&self, id: uuid::Uuid) -> Result<BroadcastSummary, StoreError> {
        let row = sqlx::query("SELECT * FROM broadcasts WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| not_found("broadcast", id))?;
        self.summarise(broadcast_from_row(&row)?).await
    }

    async fn broadcasts(&self, limit: u32) -> Result<Vec<BroadcastSummary>, StoreError> {
        let rows =
            sqlx::query("SELECT * FROM broadcasts ORDER BY created_at DESC, id DESC LIMIT $1")
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
        let mut summaries = Vec::with_capacity(rows.len());
        for row in &rows {
            summaries.push(self.summarise(broadcast_from_row(row)?).await?);
        }
        Ok(summaries)
    }
}

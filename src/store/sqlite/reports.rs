//! [`ReportRecords`] on SQLite: times as microseconds, ids as text, cited alerts and broadcast
//! targets as JSON text. Writes go through `write_transaction()` (`BEGIN IMMEDIATE`), and the
//! supervision spans are moved inside the person's own create, update and delete transactions.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};

use super::{
    alert_from_row, append_action, command_from_row, from_micros, micros, not_found, parse,
    to_json, SqliteStore,
};
use crate::model::{Actor, Alert, CommandStatus, DeviceCommand, Person, PersonId};
use crate::store::reports::{
    assessment_action, broadcast_action, count_commands, Assessment, Broadcast, BroadcastSummary,
    LevelSpan, ReportRecords,
};
use crate::store::StoreError;

/// Opens a person's first span at enrolment.
pub(super) async fn open_span(
    conn: &mut SqliteConnection,
    person: &Person,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO person_levels (person_id, level, timezone, since) VALUES (?, ?, ?, ?)",
    )
    .bind(person.id.to_string())
    .bind(person.level.as_str())
    .bind(&person.timezone)
    .bind(micros(at))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// After a change of `person`: when the open span's level or time zone differs, closes it at
/// `at` and opens the next.
pub(super) async fn follow_span(
    conn: &mut SqliteConnection,
    person: &Person,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let open: Option<(String, String)> = sqlx::query_as(
        "SELECT level, timezone FROM person_levels WHERE person_id = ? AND until IS NULL",
    )
    .bind(person.id.to_string())
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
    conn: &mut SqliteConnection,
    person: PersonId,
    at: DateTime<Utc>,
    released: bool,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE person_levels SET until = ?, released = ? WHERE person_id = ? AND until IS NULL",
    )
    .bind(micros(at))
    .bind(released)
    .bind(person.to_string())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

fn span_from_row(row: &SqliteRow) -> Result<LevelSpan, StoreError> {
    Ok(LevelSpan {
        person_id: parse("person_level", row.try_get::<&str, _>("person_id")?)?,
        level: parse("person_level", row.try_get::<&str, _>("level")?)?,
        timezone: row.try_get("timezone")?,
        since: from_micros("person_level", row.try_get("since")?)?,
        until: row
            .try_get::<Option<i64>, _>("until")?
            .map(|v| from_micros("person_level", v))
            .transpose()?,
        released: row.try_get("released")?,
    })
}

fn actor_from_row(row: &SqliteRow, what: &'static str) -> Result<Actor, StoreError> {
    Ok(Actor {
        token_id: row
            .try_get::<Option<&str>, _>("token_id")?
            .map(|t| parse(what, t))
            .transpose()?,
        label: row.try_get("label")?,
    })
}

fn assessment_from_row(row: &SqliteRow) -> Result<Assessment, StoreError> {
    let cited: &str = row.try_get("alert_ids")?;
    Ok(Assessment {
        id: parse("assessment", row.try_get::<&str, _>("id")?)?,
        person_id: parse("assessment", row.try_get::<&str, _>("person_id")?)?,
        kind: parse("assessment", row.try_get::<&str, _>("kind")?)?,
        reason: row.try_get("reason")?,
        month: row.try_get("month")?,
        alert_ids: serde_json::from_str(cited).map_err(|e| StoreError::Corrupt {
            what: "assessment",
            reason: format!("alert_ids {cited:?}: {e}"),
        })?,
        actor: actor_from_row(row, "assessment")?,
        created_at: from_micros("assessment", row.try_get("created_at")?)?,
    })
}

fn broadcast_from_row(row: &SqliteRow) -> Result<Broadcast, StoreError> {
    let target: &str = row.try_get("target")?;
    Ok(Broadcast {
        id: parse("broadcast", row.try_get::<&str, _>("id")?)?,
        text: row.try_get("text")?,
        to: serde_json::from_str(target).map_err(|e| StoreError::Corrupt {
            what: "broadcast",
            reason: format!("target {target:?}: {e}"),
        })?,
        created_at: from_micros("broadcast", row.try_get("created_at")?)?,
        expires_at: from_micros("broadcast", row.try_get("expires_at")?)?,
        created_by: actor_from_row(row, "broadcast")?,
    })
}

impl SqliteStore {
    async fn summarise(&self, broadcast: Broadcast) -> Result<BroadcastSummary, StoreError> {
        let rows: Vec<(String, bool)> = sqlx::query_as(
            "SELECT c.status, c.sent_at IS NOT NULL FROM broadcast_commands b \
             JOIN commands c ON c.id = b.command_id WHERE b.broadcast_id = ?",
        )
        .bind(broadcast.id.to_string())
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
impl ReportRecords for SqliteStore {
    async fn level_spans(
        &self,
        person: Option<PersonId>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<LevelSpan>, StoreError> {
        sqlx::query(
            "SELECT * FROM person_levels WHERE (?1 IS NULL OR person_id = ?1) \
             AND since < ?3 AND (until IS NULL OR until >= ?2) ORDER BY person_id, since",
        )
        .bind(person.map(|p| p.to_string()))
        .bind(micros(from))
        .bind(micros(to))
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
            "SELECT p.device_id, COUNT(*) FROM person_devices d \
             JOIN positions p ON p.device_id = d.device_id AND p.time >= ?2 AND p.time < ?3 \
             WHERE d.person_id = ?1 AND p.person_id = ?1 GROUP BY p.device_id ORDER BY p.device_id",
        )
        .bind(person.to_string())
        .bind(micros(from))
        .bind(micros(to))
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
            "SELECT * FROM alerts WHERE (?1 IS NULL OR person_id = ?1) AND time >= ?2 \
             AND time < ?3 ORDER BY seq",
        )
        .bind(person.map(|p| p.to_string()))
        .bind(micros(from))
        .bind(micros(to))
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
            "SELECT * FROM commands WHERE device_id = ? AND created_at >= ? AND created_at < ? \
             ORDER BY seq",
        )
        .bind(device)
        .bind(micros(from))
        .bind(micros(to))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(command_from_row)
        .collect()
    }

    async fn create_assessment(&self, assessment: &Assessment) -> Result<(), StoreError> {
        let mut tx = self.write_transaction().await?;
        let known: Option<i64> = sqlx::query_scalar("SELECT 1 FROM persons WHERE id = ?")
            .bind(assessment.person_id.to_string())
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
             label, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(assessment.id.to_string())
        .bind(assessment.person_id.to_string())
        .bind(assessment.kind.as_str())
        .bind(&assessment.reason)
        .bind(&assessment.month)
        .bind(to_json(&assessment.alert_ids)?)
        .bind(assessment.actor.token_id.map(|t| t.to_string()))
        .bind(&assessment.actor.label)
        .bind(micros(assessment.created_at))
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
            "SELECT * FROM assessments WHERE person_id = ?1 AND (?2 IS NULL OR month = ?2) \
             ORDER BY created_at, id",
        )
        .bind(person.to_string())
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
        let mut tx = self.write_transaction().await?;
        sqlx::query(
            "INSERT INTO broadcasts (id, text, target, created_at, expires_at, token_id, label) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(broadcast.id.to_string())
        .bind(&broadcast.text)
        .bind(to_json(&broadcast.to)?)
        .bind(micros(broadcast.created_at))
        .bind(micros(broadcast.expires_at))
        .bind(broadcast.created_by.token_id.map(|t| t.to_string()))
        .bind(&broadcast.created_by.label)
        .execute(&mut *tx)
        .await?;
        let mut stored = Vec::with_capacity(commands.len());
        for command in commands {
            let seq: i64 = sqlx::query_scalar(
                "INSERT INTO commands (id, device_id, kind, text, interval_s, status, protocol, \
                 reference, created_at, expires_at, sent_at, completed_at, reply, error) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING seq",
            )
            .bind(command.id.to_string())
            .bind(&command.device_id)
            .bind(&command.kind)
            .bind(&command.text)
            .bind(command.interval_s.map(i64::from))
            .bind(command.status.as_str())
            .bind(&command.protocol)
            .bind(&command.reference)
            .bind(micros(command.created_at))
            .bind(micros(command.expires_at))
            .bind(command.sent_at.map(micros))
            .bind(command.completed_at.map(micros))
            .bind(&command.reply)
            .bind(&command.error)
            .fetch_one(&mut *tx)
            .await?;
            sqlx::query("INSERT INTO broadcast_commands (broadcast_id, command_id) VALUES (?, ?)")
                .bind(broadcast.id.to_string())
                .bind(command.id.to_string())
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
        let row = sqlx::query("SELECT * FROM broadcasts WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| not_found("broadcast", id))?;
        self.summarise(broadcast_from_row(&row)?).await
    }

    async fn broadcasts(&self, limit: u32) -> Result<Vec<BroadcastSummary>, StoreError> {
        let rows =
            sqlx::query("SELECT * FROM broadcasts ORDER BY created_at DESC, id DESC LIMIT ?")
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

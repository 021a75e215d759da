//! [`SupervisionRecords`] on SQLite: times as microseconds, ids as text, a leave's zones as a
//! JSON array. Every write goes through `write_transaction()` (`BEGIN IMMEDIATE`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use super::{
    append_action, append_event, fix_from_row, from_micros, micros, not_found, parse, to_json,
    NewEvent, SqliteStore,
};
use crate::model::{
    new_id, AlertKind, AlertPosition, Checkin, DeviceHeard, EventKind, Fix, LeaveId, LeavePermit,
    MonitoringOrder, OrderId, PersonId, ZoneId,
};
use crate::store::chain::{checkin_action, leave_action, order_action};
use crate::store::supervision::{
    LeaveClosing, OpenEpisode, OrderStep, SupervisionRecords, TimerAlert,
};
use crate::store::StoreError;

fn optional_time(
    row: &SqliteRow,
    what: &'static str,
    col: &str,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    row.try_get::<Option<i64>, _>(col)?
        .map(|v| from_micros(what, v))
        .transpose()
}

fn leave_from_row(row: &SqliteRow) -> Result<LeavePermit, StoreError> {
    let zones: &str = row.try_get("zone_ids")?;
    let zone_ids: Vec<ZoneId> = serde_json::from_str(zones).map_err(|e| StoreError::Corrupt {
        what: "leave_permit",
        reason: format!("zone_ids {zones:?}: {e}"),
    })?;
    Ok(LeavePermit {
        id: parse("leave_permit", row.try_get::<&str, _>("id")?)?,
        person_id: parse("leave_permit", row.try_get::<&str, _>("person_id")?)?,
        from: from_micros("leave_permit", row.try_get("from_time")?)?,
        to: from_micros("leave_permit", row.try_get("to_time")?)?,
        zone_ids,
        reason: row.try_get("reason")?,
        approved_by: row.try_get("approved_by")?,
        created_at: from_micros("leave_permit", row.try_get("created_at")?)?,
        cancelled_at: optional_time(row, "leave_permit", "cancelled_at")?,
        ended_at: optional_time(row, "leave_permit", "ended_at")?,
    })
}

fn order_from_row(row: &SqliteRow) -> Result<MonitoringOrder, StoreError> {
    Ok(MonitoringOrder {
        id: parse("monitoring_order", row.try_get::<&str, _>("id")?)?,
        person_id: parse("monitoring_order", row.try_get::<&str, _>("person_id")?)?,
        ground: row.try_get("ground")?,
        approved_by: row.try_get("approved_by")?,
        from: from_micros("monitoring_order", row.try_get("from_time")?)?,
        to: from_micros("monitoring_order", row.try_get("to_time")?)?,
        created_at: from_micros("monitoring_order", row.try_get("created_at")?)?,
        started_at: optional_time(row, "monitoring_order", "started_at")?,
        ended_at: optional_time(row, "monitoring_order", "ended_at")?,
    })
}

fn checkin_from_row(row: &SqliteRow) -> Result<Checkin, StoreError> {
    let lat: Option<f64> = row.try_get("lat")?;
    let lon: Option<f64> = row.try_get("lon")?;
    Ok(Checkin {
        id: parse("checkin", row.try_get::<&str, _>("id")?)?,
        person_id: parse("checkin", row.try_get::<&str, _>("person_id")?)?,
        time: from_micros("checkin", row.try_get("time")?)?,
        method: parse("checkin", row.try_get::<&str, _>("method")?)?,
        position: match (lat, lon) {
            (Some(lat), Some(lon)) => Some(AlertPosition {
                lat,
                lon,
                accuracy_m: row.try_get("accuracy_m")?,
            }),
            _ => None,
        },
        created_at: from_micros("checkin", row.try_get("created_at")?)?,
    })
}

/// Devices per multi-row upsert of last-heard times (3 values each).
const HEARD_PER_STATEMENT: usize = 300;

/// Writes last-heard times inside the caller's transaction; a time never moves back.
pub(super) async fn upsert_heard(
    conn: &mut sqlx::SqliteConnection,
    heard: &[DeviceHeard],
) -> Result<(), StoreError> {
    for chunk in heard.chunks(HEARD_PER_STATEMENT) {
        // SQLite applies the rows in order, so a device named twice in one statement keeps the
        // newer time through the conflict clause.
        let mut upsert = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "INSERT INTO device_heard (device_id, person_id, received_at) ",
        );
        upsert.push_values(chunk, |mut row, h| {
            row.push_bind(&h.device_id)
                .push_bind(h.person_id.to_string())
                .push_bind(micros(h.received_at));
        });
        upsert.push(
            " ON CONFLICT (device_id) DO UPDATE SET person_id = excluded.person_id, \
             received_at = MAX(received_at, excluded.received_at)",
        );
        upsert.build().execute(&mut *conn).await?;
    }
    Ok(())
}

#[async_trait]
impl SupervisionRecords for SqliteStore {
    async fn record_heard(&self, heard: &[DeviceHeard]) -> Result<(), StoreError> {
        if heard.is_empty() {
            return Ok(());
        }
        let mut tx = self.write_transaction().await?;
        upsert_heard(&mut tx, heard).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn heard_times(&self) -> Result<Vec<DeviceHeard>, StoreError> {
        let rows: Vec<(String, String, i64)> =
            sqlx::query_as("SELECT device_id, person_id, received_at FROM device_heard")
                .fetch_all(&self.pool)
                .await?;
        rows.into_iter()
            .map(|(device_id, person, at)| {
                Ok(DeviceHeard {
                    device_id,
                    person_id: parse("device_heard", &person)?,
                    received_at: from_micros("device_heard", at)?,
                })
            })
            .collect()
    }

    async fn latest_fixes(&self) -> Result<Vec<Fix>, StoreError> {
        sqlx::query(
            "SELECT p.* FROM positions p JOIN ( \
                 SELECT device_id, person_id, MAX(time) AS newest FROM positions \
                 WHERE valid = 1 AND clock_skew = 0 AND implausible IS NULL \
                 GROUP BY device_id, person_id) n \
               ON p.device_id = n.device_id AND p.person_id = n.person_id AND p.time = n.newest \
             WHERE p.valid = 1 AND p.clock_skew = 0 AND p.implausible IS NULL",
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(fix_from_row)
        .collect()
    }

    async fn open_episodes(&self) -> Result<Vec<OpenEpisode>, StoreError> {
        let rows: Vec<(String, Option<String>, String, i64)> = sqlx::query_as(
            "SELECT a.person_id, a.device_id, a.kind, a.time FROM alerts a \
             WHERE a.kind IN ('offline', 'unsupervised') AND a.late = 0 \
               AND a.seq = (SELECT MAX(b.seq) FROM alerts b \
                            WHERE b.person_id = a.person_id AND b.device_id IS a.device_id \
                              AND b.zone_id IS NULL AND b.late = 0 \
                              AND b.kind IN ('offline', 'unsupervised', 'returned'))",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(person, device_id, kind, time)| {
                Ok(OpenEpisode {
                    person_id: parse("alert", &person)?,
                    device_id,
                    kind: parse::<AlertKind>("alert", &kind)?,
                    since: from_micros("alert", time)?,
                })
            })
            .collect()
    }

    async fn timer_alerts(&self, since: DateTime<Utc>) -> Result<Vec<TimerAlert>, StoreError> {
        let rows: Vec<(String, String, Option<String>, i64)> = sqlx::query_as(
            "SELECT person_id, kind, zone_id, time FROM alerts \
             WHERE kind IN ('leave_overdue', 'order_expiring', 'missed_checkin') AND time >= ?",
        )
        .bind(micros(since))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(person, kind, zone, time)| {
                Ok(TimerAlert {
                    person_id: parse("alert", &person)?,
                    kind: parse("alert", &kind)?,
                    zone_id: zone.map(|z| parse("alert", &z)).transpose()?,
                    time: from_micros("alert", time)?,
                })
            })
            .collect()
    }

    async fn create_leave(&self, leave: &LeavePermit) -> Result<(), StoreError> {
        let mut tx = self.write_transaction().await?;
        let person: Option<i64> = sqlx::query_scalar("SELECT 1 FROM persons WHERE id = ?")
            .bind(leave.person_id.to_string())
            .fetch_optional(&mut *tx)
            .await?;
        if person.is_none() {
            return Err(not_found("person", leave.person_id));
        }
        for zone in &leave.zone_ids {
            let known: Option<i64> = sqlx::query_scalar("SELECT 1 FROM zones WHERE id = ?")
                .bind(zone.to_string())
                .fetch_optional(&mut *tx)
                .await?;
            if known.is_none() {
                return Err(StoreError::UnknownReference(format!(
                    "zone {zone} does not exist"
                )));
            }
        }
        let zones = serde_json::to_string(&leave.zone_ids).map_err(|e| StoreError::Corrupt {
            what: "leave_permit",
            reason: e.to_string(),
        })?;
        sqlx::query(
            "INSERT INTO leave_permits (id, person_id, from_time, to_time, zone_ids, reason, \
             approved_by, created_at, cancelled_at, ended_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(leave.id.to_string())
        .bind(leave.person_id.to_string())
        .bind(micros(leave.from))
        .bind(micros(leave.to))
        .bind(zones)
        .bind(&leave.reason)
        .bind(&leave.approved_by)
        .bind(micros(leave.created_at))
        .bind(leave.cancelled_at.map(micros))
        .bind(leave.ended_at.map(micros))
        .execute(&mut *tx)
        .await?;
        append_action(&mut tx, leave_action("leave.create", leave)).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn leave(&self, id: LeaveId) -> Result<LeavePermit, StoreError> {
        let row = sqlx::query("SELECT * FROM leave_permits WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| not_found("leave", id))?;
        leave_from_row(&row)
    }

    async fn leaves(&self, person: PersonId) -> Result<Vec<LeavePermit>, StoreError> {
        sqlx::query("SELECT * FROM leave_permits WHERE person_id = ? ORDER BY from_time DESC, id")
            .bind(person.to_string())
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(leave_from_row)
            .collect()
    }

    async fn close_leave(
        &self,
        id: LeaveId,
        closing: LeaveClosing,
        at: DateTime<Utc>,
    ) -> Result<LeavePermit, StoreError> {
        let column = match closing {
            LeaveClosing::Cancel => "cancelled_at",
            LeaveClosing::EndEarly => "ended_at",
        };
        let mut tx = self.write_transaction().await?;
        let changed = sqlx::query(&format!(
            "UPDATE leave_permits SET {column} = ? \
             WHERE id = ? AND cancelled_at IS NULL AND ended_at IS NULL"
        ))
        .bind(micros(at))
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let row = sqlx::query("SELECT * FROM leave_permits WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| not_found("leave", id))?;
        let leave = leave_from_row(&row)?;
        if changed > 0 {
            append_action(&mut tx, leave_action(closing.action_kind(), &leave)).await?;
        }
        tx.commit().await?;
        Ok(leave)
    }

    async fn leaves_ending_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<LeavePermit>, StoreError> {
        sqlx::query(
            "SELECT * FROM leave_permits WHERE cancelled_at IS NULL \
             AND MIN(to_time, COALESCE(ended_at, to_time)) >= ? ORDER BY from_time, id",
        )
        .bind(micros(since))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(leave_from_row)
        .collect()
    }

    async fn create_order(&self, order: &MonitoringOrder) -> Result<(), StoreError> {
        let mut tx = self.write_transaction().await?;
        let person: Option<i64> = sqlx::query_scalar("SELECT 1 FROM persons WHERE id = ?")
            .bind(order.person_id.to_string())
            .fetch_optional(&mut *tx)
            .await?;
        if person.is_none() {
            return Err(not_found("person", order.person_id));
        }
        // A renewal: an order not ended whose window the new one starts within or right after.
        let renews: Option<String> = sqlx::query_scalar(
            "SELECT id FROM monitoring_orders WHERE person_id = ? AND ended_at IS NULL \
             AND from_time <= ? AND to_time >= ? ORDER BY to_time DESC, id LIMIT 1",
        )
        .bind(order.person_id.to_string())
        .bind(micros(order.from))
        .bind(micros(order.from))
        .fetch_optional(&mut *tx)
        .await?;
        let renews: Option<OrderId> = renews
            .map(|id| parse("monitoring_order", &id))
            .transpose()?;
        sqlx::query(
            "INSERT INTO monitoring_orders (id, person_id, ground, approved_by, from_time, \
             to_time, created_at, started_at, ended_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(order.id.to_string())
        .bind(order.person_id.to_string())
        .bind(&order.ground)
        .bind(&order.approved_by)
        .bind(micros(order.from))
        .bind(micros(order.to))
        .bind(micros(order.created_at))
        .bind(order.started_at.map(micros))
        .bind(order.ended_at.map(micros))
        .execute(&mut *tx)
        .await?;
        let kind = if renews.is_some() {
            "order.renew"
        } else {
            "order.create"
        };
        append_action(&mut tx, order_action(kind, order, renews)).await?;
        let seq = match order.started_at {
            Some(_) => Some(order_event(&mut tx, EventKind::OrderStarted, order).await?),
            None => None,
        };
        tx.commit().await?;
        if let Some(seq) = seq {
            self.announce(seq);
        }
        Ok(())
    }

    async fn orders(&self, person: PersonId) -> Result<Vec<MonitoringOrder>, StoreError> {
        sqlx::query(
            "SELECT * FROM monitoring_orders WHERE person_id = ? ORDER BY from_time DESC, id",
        )
        .bind(person.to_string())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(order_from_row)
        .collect()
    }

    async fn open_orders(&self) -> Result<Vec<MonitoringOrder>, StoreError> {
        sqlx::query("SELECT * FROM monitoring_orders WHERE ended_at IS NULL ORDER BY from_time, id")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(order_from_row)
            .collect()
    }

    async fn orders_in_force(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<MonitoringOrder>, StoreError> {
        sqlx::query(
            "SELECT * FROM monitoring_orders \
             WHERE from_time < ? AND to_time >= ? AND (ended_at IS NULL OR ended_at >= ?) \
             ORDER BY from_time, id",
        )
        .bind(micros(to))
        .bind(micros(from))
        .bind(micros(from))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(order_from_row)
        .collect()
    }

    async fn step_order(
        &self,
        id: OrderId,
        step: OrderStep,
        at: DateTime<Utc>,
    ) -> Result<Option<MonitoringOrder>, StoreError> {
        let (sql, kind) = match step {
            OrderStep::Started => (
                "UPDATE monitoring_orders SET started_at = ? \
                 WHERE id = ? AND started_at IS NULL AND ended_at IS NULL",
                EventKind::OrderStarted,
            ),
            OrderStep::Ended => (
                "UPDATE monitoring_orders SET ended_at = ? WHERE id = ? AND ended_at IS NULL",
                EventKind::OrderEnded,
            ),
        };
        let mut tx = self.write_transaction().await?;
        let changed = sqlx::query(sql)
            .bind(micros(at))
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if changed == 0 {
            return Ok(None);
        }
        let row = sqlx::query("SELECT * FROM monitoring_orders WHERE id = ?")
            .bind(id.to_string())
            .fetch_one(&mut *tx)
            .await?;
        let order = order_from_row(&row)?;
        append_action(&mut tx, order_action(step.action_kind(), &order, None)).await?;
        let seq = order_event(&mut tx, kind, &order).await?;
        tx.commit().await?;
        self.announce(seq);
        Ok(Some(order))
    }

    async fn create_checkin(&self, checkin: &Checkin) -> Result<(), StoreError> {
        let mut tx = self.write_transaction().await?;
        let person: Option<i64> = sqlx::query_scalar("SELECT 1 FROM persons WHERE id = ?")
            .bind(checkin.person_id.to_string())
            .fetch_optional(&mut *tx)
            .await?;
        if person.is_none() {
            return Err(not_found("person", checkin.person_id));
        }
        sqlx::query(
            "INSERT INTO checkins (id, person_id, time, method, lat, lon, accuracy_m, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(checkin.id.to_string())
        .bind(checkin.person_id.to_string())
        .bind(micros(checkin.time))
        .bind(checkin.method.as_str())
        .bind(checkin.position.map(|p| p.lat))
        .bind(checkin.position.map(|p| p.lon))
        .bind(checkin.position.and_then(|p| p.accuracy_m))
        .bind(micros(checkin.created_at))
        .execute(&mut *tx)
        .await?;
        append_action(&mut tx, checkin_action(checkin)).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn checkins(&self, person: PersonId, limit: u32) -> Result<Vec<Checkin>, StoreError> {
        sqlx::query("SELECT * FROM checkins WHERE person_id = ? ORDER BY time DESC, id LIMIT ?")
            .bind(person.to_string())
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(checkin_from_row)
            .collect()
    }

    async fn checkins_since(&self, since: DateTime<Utc>) -> Result<Vec<Checkin>, StoreError> {
        sqlx::query("SELECT * FROM checkins WHERE time >= ? ORDER BY time, id")
            .bind(micros(since))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(checkin_from_row)
            .collect()
    }
}

/// Ends a deleted person's orders not yet ended, in the deletion's transaction: each at `at`,
/// or at its end date when that passed unrecorded, with its `order.end` action, and with its
/// `order.ended` event when monitoring under it had started (an order that never started ends
/// without one, and so never starts later). The feed counter of the last event, if any.
pub(super) async fn end_orders_of_deleted(
    conn: &mut sqlx::SqliteConnection,
    person: PersonId,
    at: DateTime<Utc>,
) -> Result<Option<i64>, StoreError> {
    let open = sqlx::query(
        "SELECT * FROM monitoring_orders WHERE person_id = ? AND ended_at IS NULL \
         ORDER BY from_time, id",
    )
    .bind(person.to_string())
    .fetch_all(&mut *conn)
    .await?;
    let mut last = None;
    for row in &open {
        let mut order = order_from_row(row)?;
        let end = order.to.min(at);
        sqlx::query("UPDATE monitoring_orders SET ended_at = ? WHERE id = ?")
            .bind(micros(end))
            .bind(order.id.to_string())
            .execute(&mut *conn)
            .await?;
        order.ended_at = Some(end);
        append_action(
            conn,
            order_action(OrderStep::Ended.action_kind(), &order, None),
        )
        .await?;
        if order.started_at.is_some() {
            last = Some(order_event(conn, EventKind::OrderEnded, &order).await?);
        }
    }
    Ok(last)
}

/// Appends an order event with the order as it now is.
async fn order_event(
    conn: &mut sqlx::SqliteConnection,
    kind: EventKind,
    order: &MonitoringOrder,
) -> Result<i64, StoreError> {
    append_event(
        conn,
        NewEvent {
            id: new_id(),
            kind,
            person_id: order.person_id,
            alert_id: None,
            data: &to_json(order)?,
        },
    )
    .await
}

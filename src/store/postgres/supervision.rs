//! [`SupervisionRecords`] on PostgreSQL: native `timestamptz`, `uuid` and `uuid[]` columns.
//! Order steps append their event inside the same transaction, taking the feed counter like
//! every other event.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::Row;
use uuid::Uuid;

use super::{
    append_action, append_event, fix_from_row, not_found, parse, to_json, NewEvent, PgStore,
};
use crate::model::{
    new_id, AlertKind, AlertPosition, Checkin, DeviceHeard, EventKind, Fix, LeaveId, LeavePermit,
    MonitoringOrder, OrderId, PersonId,
};
use crate::store::chain::{checkin_action, leave_action, order_action};
use crate::store::supervision::{
    LeaveClosing, OpenEpisode, OrderStep, SupervisionRecords, TimerAlert,
};
use crate::store::StoreError;

fn leave_from_row(row: &PgRow) -> Result<LeavePermit, StoreError> {
    Ok(LeavePermit {
        id: row.try_get("id")?,
        person_id: row.try_get("person_id")?,
        from: row.try_get("from_time")?,
        to: row.try_get("to_time")?,
        zone_ids: row.try_get("zone_ids")?,
        reason: row.try_get("reason")?,
        approved_by: row.try_get("approved_by")?,
        created_at: row.try_get("created_at")?,
        cancelled_at: row.try_get("cancelled_at")?,
        ended_at: row.try_get("ended_at")?,
    })
}

fn order_from_row(row: &PgRow) -> Result<MonitoringOrder, StoreError> {
    Ok(MonitoringOrder {
        id: row.try_get("id")?,
        person_id: row.try_get("person_id")?,
        ground: row.try_get("ground")?,
        approved_by: row.try_get("approved_by")?,
        from: row.try_get("from_time")?,
        to: row.try_get("to_time")?,
        created_at: row.try_get("created_at")?,
        started_at: row.try_get("started_at")?,
        ended_at: row.try_get("ended_at")?,
    })
}

fn checkin_from_row(row: &PgRow) -> Result<Checkin, StoreError> {
    let lat: Option<f64> = row.try_get("lat")?;
    let lon: Option<f64> = row.try_get("lon")?;
    Ok(Checkin {
        id: row.try_get("id")?,
        person_id: row.try_get("person_id")?,
        time: row.try_get("time")?,
        method: parse("checkin", row.try_get::<&str, _>("method")?)?,
        position: match (lat, lon) {
            (Some(lat), Some(lon)) => Some(AlertPosition {
                lat,
                lon,
                accuracy_m: row.try_get("accuracy_m")?,
            }),
            _ => None,
        },
        created_at: row.try_get("created_at")?,
    })
}

async fn person_exists(conn: &mut sqlx::PgConnection, person: PersonId) -> Result<(), StoreError> {
    let found: Option<i32> = sqlx::query_scalar("SELECT 1 FROM persons WHERE id = $1")
        .bind(person)
        .fetch_optional(&mut *conn)
        .await?;
    found.map(|_| ()).ok_or_else(|| not_found("person", person))
}

/// Writes last-heard times (one statement); a time never moves back.
pub(super) async fn upsert_heard<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    heard: &[DeviceHeard],
) -> Result<(), StoreError> {
    if heard.is_empty() {
        return Ok(());
    }
    let devices: Vec<&str> = heard.iter().map(|h| h.device_id.as_str()).collect();
    let persons: Vec<Uuid> = heard.iter().map(|h| h.person_id).collect();
    let times: Vec<DateTime<Utc>> = heard.iter().map(|h| h.received_at).collect();
    // One row per device: a batch naming a device twice keeps its newest time.
    sqlx::query(
        "INSERT INTO device_heard (device_id, person_id, received_at) \
         SELECT DISTINCT ON (d) d, p, t FROM UNNEST($1::text[], $2::uuid[], $3::timestamptz[]) \
             AS h(d, p, t) ORDER BY d, t DESC \
         ON CONFLICT (device_id) DO UPDATE SET person_id = excluded.person_id, \
         received_at = GREATEST(device_heard.received_at, excluded.received_at)",
    )
    .bind(&devices)
    .bind(&persons)
    .bind(&times)
    .execute(executor)
    .await?;
    Ok(())
}

#[async_trait]
impl SupervisionRecords for PgStore {
    async fn record_heard(&self, heard: &[DeviceHeard]) -> Result<(), StoreError> {
        upsert_heard(&self.pool, heard).await
    }

    async fn heard_times(&self) -> Result<Vec<DeviceHeard>, StoreError> {
        let rows: Vec<(String, Uuid, DateTime<Utc>)> =
            sqlx::query_as("SELECT device_id, person_id, received_at FROM device_heard")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .into_iter()
            .map(|(device_id, person_id, received_at)| DeviceHeard {
                device_id,
                person_id,
                received_at,
            })
            .collect())
    }

    async fn latest_fixes(&self) -> Result<Vec<Fix>, StoreError> {
        sqlx::query(
            "SELECT DISTINCT ON (device_id, person_id) * FROM positions \
             WHERE valid AND NOT clock_skew AND implausible IS NULL \
             ORDER BY device_id, person_id, time DESC, id DESC",
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(fix_from_row)
        .collect()
    }

    async fn open_episodes(&self) -> Result<Vec<OpenEpisode>, StoreError> {
        let rows: Vec<(Uuid, Option<String>, String, DateTime<Utc>)> = sqlx::query_as(
            "SELECT person_id, device_id, kind, time FROM ( \
                 SELECT DISTINCT ON (person_id, device_id) person_id, device_id, kind, time \
                 FROM alerts WHERE zone_id IS NULL AND NOT late \
                   AND kind IN ('offline', 'unsupervised', 'returned') \
                 ORDER BY person_id, device_id, seq DESC) newest \
             WHERE kind IN ('offline', 'unsupervised')",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(person_id, device_id, kind, since)| {
                Ok(OpenEpisode {
                    person_id,
                    device_id,
                    kind: parse::<AlertKind>("alert", &kind)?,
                    since,
                })
            })
            .collect()
    }

    async fn timer_alerts(&self, since: DateTime<Utc>) -> Result<Vec<TimerAlert>, StoreError> {
        let rows: Vec<(Uuid, String, Option<Uuid>, DateTime<Utc>)> = sqlx::query_as(
            "SELECT person_id, kind, zone_id, time FROM alerts \
             WHERE kind IN ('leave_overdue', 'order_expiring', 'missed_checkin') AND time >= $1",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(person_id, kind, zone_id, time)| {
                Ok(TimerAlert {
                    person_id,
                    kind: parse("alert", &kind)?,
                    zone_id,
                    time,
                })
            })
            .collect()
    }

    async fn create_leave(&self, leave: &LeavePermit) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        person_exists(&mut tx, leave.person_id).await?;
        let known: i64 = sqlx::query_scalar("SELECT count(*) FROM zones WHERE id = ANY($1)")
            .bind(&leave.zone_ids)
            .fetch_one(&mut *tx)
            .await?;
        let mut distinct = leave.zone_ids.clone();
        distinct.sort();
        distinct.dedup();
        if known != distinct.len() as i64 {
            return Err(StoreError::UnknownReference(
                "a zone of the leave does not exist".into(),
            ));
        }
        sqlx::query(
            "INSERT INTO leave_permits (id, person_id, from_time, to_time, zone_ids, reason, \
             approved_by, created_at, cancelled_at, ended_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(leave.id)
        .bind(leave.person_id)
        .bind(leave.from)
        .bind(leave.to)
        .bind(&leave.zone_ids)
        .bind(&leave.reason)
        .bind(&leave.approved_by)
        .bind(leave.created_at)
        .bind(leave.cancelled_at)
        .bind(leave.ended_at)
        .execute(&mut *tx)
        .await?;
        append_action(&mut tx, leave_action("leave.create", leave)).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn leave(&self, id: LeaveId) -> Result<LeavePermit, StoreError> {
        let row = sqlx::query("SELECT * FROM leave_permits WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| not_found("leave", id))?;
        leave_from_row(&row)
    }

    async fn leaves(&self, person: PersonId) -> Result<Vec<LeavePermit>, StoreError> {
        sqlx::query("SELECT * FROM leave_permits WHERE person_id = $1 ORDER BY from_time DESC, id")
            .bind(person)
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
        let sql = match closing {
            LeaveClosing::Cancel => {
                "UPDATE leave_permits SET cancelled_at = $1 \
                 WHERE id = $2 AND cancelled_at IS NULL AND ended_at IS NULL"
            }
            LeaveClosing::EndEarly => {
                "UPDATE leave_permits SET ended_at = $1 \
                 WHERE id = $2 AND cancelled_at IS NULL AND ended_at IS NULL"
            }
        };
        let mut tx = self.pool.begin().await?;
        let changed = sqlx::query(sql)
            .bind(at)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let row = sqlx::query("SELECT * FROM leave_permits WHERE id = $1")
            .bind(id)
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
             AND LEAST(to_time, COALESCE(ended_at, to_time)) >= $1 ORDER BY from_time, id",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(leave_from_row)
        .collect()
    }

    async fn create_order(&self, order: &MonitoringOrder) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        person_exists(&mut tx, order.person_id).await?;
        // A renewal: an order not ended whose window the new one starts within or right after.
        let renews: Option<Uuid> = sqlx::query_scalar(
            "SELECT id FROM monitoring_orders WHERE person_id = $1 AND ended_at IS NULL \
             AND from_time <= $2 AND to_time >= $2 ORDER BY to_time DESC, id LIMIT 1",
        )
        .bind(order.person_id)
        .bind(order.from)
        .fetch_optional(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO monitoring_orders (id, person_id, ground, approved_by, from_time, \
             to_time, created_at, started_at, ended_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(order.id)
        .bind(order.person_id)
        .bind(&order.ground)
        .bind(&order.approved_by)
        .bind(order.from)
        .bind(order.to)
        .bind(order.created_at)
        .bind(order.started_at)
        .bind(order.ended_at)
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
            "SELECT * FROM monitoring_orders WHERE person_id = $1 ORDER BY from_time DESC, id",
        )
        .bind(person)
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
             WHERE from_time < $1 AND to_time >= $2 AND (ended_at IS NULL OR ended_at >= $2) \
             ORDER BY from_time, id",
        )
        .bind(to)
        .bind(from)
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
                "UPDATE monitoring_orders SET started_at = $1 \
                 WHERE id = $2 AND started_at IS NULL AND ended_at IS NULL RETURNING *",
                EventKind::OrderStarted,
            ),
            OrderStep::Ended => (
                "UPDATE monitoring_orders SET ended_at = $1 \
                 WHERE id = $2 AND ended_at IS NULL RETURNING *",
                EventKind::OrderEnded,
            ),
        };
        let mut tx = self.pool.begin().await?;
        let Some(row) = sqlx::query(sql)
            .bind(at)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(None);
        };
        let order = order_from_row(&row)?;
        append_action(&mut tx, order_action(step.action_kind(), &order, None)).await?;
        let seq = order_event(&mut tx, kind, &order).await?;
        tx.commit().await?;
        self.announce(seq);
        Ok(Some(order))
    }

    async fn create_checkin(&self, checkin: &Checkin) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        person_exists(&mut tx, checkin.person_id).await?;
        sqlx::query(
            "INSERT INTO checkins (id, person_id, time, method, lat, lon, accuracy_m, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(checkin.id)
        .bind(checkin.person_id)
        .bind(checkin.time)
        .bind(checkin.method.as_str())
        .bind(checkin.position.map(|p| p.lat))
        .bind(checkin.position.map(|p| p.lon))
        .bind(checkin.position.and_then(|p| p.accuracy_m))
        .bind(checkin.created_at)
        .execute(&mut *tx)
        .await?;
        append_action(&mut tx, checkin_action(checkin)).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn checkins(&self, person: PersonId, limit: u32) -> Result<Vec<Checkin>, StoreError> {
        sqlx::query("SELECT * FROM checkins WHERE person_id = $1 ORDER BY time DESC, id LIMIT $2")
            .bind(person)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(checkin_from_row)
            .collect()
    }

    async fn checkins_since(&self, since: DateTime<Utc>) -> Result<Vec<Checkin>, StoreError> {
        sqlx::query("SELECT * FROM checkins WHERE time >= $1 ORDER BY time, id")
            .bind(since)
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
    conn: &mut sqlx::PgConnection,
    person: PersonId,
    at: DateTime<Utc>,
) -> Result<Option<i64>, StoreError> {
    let ended = sqlx::query(
        "UPDATE monitoring_orders SET ended_at = LEAST(to_time, $2) \
         WHERE person_id = $1 AND ended_at IS NULL RETURNING *",
    )
    .bind(person)
    .bind(at)
    .fetch_all(&mut *conn)
    .await?;
    let mut orders = ended
        .iter()
        .map(order_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    orders.sort_by_key(|o| (o.from, o.id));
    let mut last = None;
    for order in &orders {
        append_action(
            conn,
            order_action(OrderStep::Ended.action_kind(), order, None),
        )
        .await?;
        if order.started_at.is_some() {
            last = Some(order_event(conn, EventKind::OrderEnded, order).await?);
        }
    }
    Ok(last)
}

/// Appends an order event with the order as it now is.
async fn order_event(
    conn: &mut sqlx::PgConnection,
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

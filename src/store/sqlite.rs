//! The embedded store: one SQLite file under the data directory, in WAL mode with full
//! synchronous commits, so a position acknowledged to a device survives a power cut.
//!
//! Every write goes through one connection, whose page cache then stays valid from commit to
//! commit; reads take a small pool of their own; a task of the store copies the write-ahead
//! log back into the database file, so no commit waits for a checkpoint.
//!
//! Times are kept as integer microseconds since the epoch and ids as UUID text; the conversion
//! to model types happens only here.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SubsecRound, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteRow,
};
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool};
use std::sync::Arc;
use tokio::sync::watch;
use uuid::Uuid;

use super::chain::{
    self, alert_state_action, assignment_action, border_hit_action, command_action, device_action,
    person_action, redelivery_action, token_action, zone_action, ActionRecord, ChainHead,
    ChainRecord, Checkpoint, Hash, NewAction, RetentionOutcome, Unchained, GENESIS,
};
use super::handling::{self, AlertCount};
mod reports;
mod supervision;

use super::{
    border_from_row, AlertActionRequest, AlertQuery, AlertStats, ChainTable, DeliveryState,
    DeviceNewest, EventQuery, IntegrationRead, IntegrationReadQuery, NewPerson, NewRegistration,
    OpenBreach, PersonPatch, Registration, Role, Store, StoreError, TokenRecord, WebhookDelivery,
    ZoneRecord,
};
use crate::model::{
    new_id, Actor, Alert, AlertAction, AlertId, AlertPosition, CommandId, CommandStatus, Device,
    DeviceCommand, DeviceHeard, Event, EventKind, Fix, Person, PersonId, PositionSource, ZoneId,
    ZoneKind, ZoneWifi,
};

/// Positions per multi-row insert: 18 bound values each, well under SQLite's limit of 32,766
/// variables per statement.
const POSITIONS_PER_INSERT: usize = 200;
/// (person, device) pairs per statement of `note_person_devices`: two variables each.
const PAIRS_PER_STATEMENT: usize = 400;

/// Pages of the write connection's cache: 64 MiB, enough for the hot ends of the positions
/// indexes of a busy node, against SQLite's default of 2 MiB.
const WRITER_CACHE_KIB: i64 = 64 * 1024;

/// How often the write-ahead log is copied back into the database file by a task of its own.
/// The write connection does not checkpoint inside its commits (SQLite would, in the commit
/// that crosses 1,000 pages: about a tenth of the commits' time under load, and many more page
/// writes than a checkpoint every quarter second, which copies each page changed since once).
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

/// The size the write-ahead log is cut back to when it starts over.
const WAL_SIZE_LIMIT: u64 = 64 * 1024 * 1024;

/// A store in one SQLite database file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// Connections for reads.
    pub(crate) pool: SqlitePool,
    /// The one connection every write goes through. SQLite has one writer at a time anyway;
    /// keeping it on one connection keeps that connection's page cache valid from commit to
    /// commit. A connection that sees another connection's commit drops its whole cache and
    /// reads every page again from the file, which with writes spread over a pool was most of
    /// a commit's time.
    writer: SqlitePool,
    /// The newest event `seq` committed through this store, for [`Store::event_notices`].
    event_notices: Arc<watch::Sender<i64>>,
    /// Alive while any clone of the store is: the checkpoint task stops when it is gone.
    _alive: Arc<()>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database named by a `sqlite://PATH` URL. The parent
    /// directory is created too.
    ///
    /// # Errors
    /// [`StoreError::Database`] when the file cannot be opened.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(sqlx::sqlite::SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        if let Some(parent) = options.get_filename().parent() {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent).map_err(|e| {
                    StoreError::Database(sqlx::Error::Configuration(
                        format!("cannot create {}: {e}", parent.display()).into(),
                    ))
                })?;
            }
        }
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(
                options
                    .clone()
                    .pragma("cache_size", format!("-{WRITER_CACHE_KIB}"))
                    .pragma("wal_autocheckpoint", "0")
                    .pragma("journal_size_limit", WAL_SIZE_LIMIT.to_string())
                    // A multi-row insert keeps a statement journal of every page it changes
                    // (to undo itself alone on a constraint error); in a temporary file that
                    // was a quarter of a commit's time, zeroing and writing file pages.
                    .pragma("temp_store", "memory"),
            )
            .await?;
        // Opened on first use, so after `migrate`: a connection that loaded the schema before
        // another one migrated it would prepare a `SELECT *` with the old columns, which SQLite
        // then re-prepares with the new ones behind sqlx's back.
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_lazy_with(options);
        let alive = Arc::new(());
        tokio::spawn(checkpoint_periodically(
            pool.clone(),
            writer.clone(),
            Arc::downgrade(&alive),
        ));
        Ok(SqliteStore {
            pool,
            writer,
            event_notices: Arc::new(watch::Sender::new(0)),
            _alive: alive,
        })
    }

    /// A transaction that takes the write lock at its start (`BEGIN IMMEDIATE`). A deferred
    /// transaction that reads first and writes later fails at once with `SQLITE_BUSY` (the busy
    /// timeout cannot help) when another connection wrote in between, as the batch writer or a
    /// token's last-use update may at any moment.
    async fn write_transaction(&self) -> Result<sqlx::Transaction<'static, Sqlite>, sqlx::Error> {
        self.writer.begin_with("BEGIN IMMEDIATE").await
    }

    /// Tells feed readers that events up to `seq` are committed.
    fn announce(&self, seq: i64) {
        self.event_notices.send_if_modified(|newest| {
            let newer = seq > *newest;
            if newer {
                *newest = seq;
            }
            newer
        });
    }

    /// Fills in the JSON of the `alert.raised` events that migration 0004 created for alerts
    /// committed before the event feed existed.
    async fn backfill_raised_events(&self) -> Result<(), StoreError> {
        let mut tx = self.write_transaction().await?;
        let rows = sqlx::query(
            "SELECT a.* FROM events e JOIN alerts a ON a.seq = e.seq \
             WHERE e.kind = 'alert.raised' AND e.data = ''",
        )
        .fetch_all(&mut *tx)
        .await?;
        for row in &rows {
            let alert = alert_from_row(row)?;
            sqlx::query("UPDATE events SET data = ? WHERE seq = ?")
                .bind(to_json(&alert)?)
                .bind(alert.seq)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// Copies the write-ahead log back into the database file every [`CHECKPOINT_EVERY`] until the
/// store is dropped, in two passes. The first, on a read connection, copies most of it beside
/// the commits. But the log starts over only after a checkpoint that copied all of it, and
/// under steady load commits always add to it meanwhile: a log checkpointed only that way
/// grows without end. So the second pass runs on the write connection, between two commits,
/// and copies what the first could not. `PASSIVE` waits for no reader: pages a reader still
/// needs stay in the log for the next round.
async fn checkpoint_periodically(
    reader: SqlitePool,
    writer: SqlitePool,
    alive: std::sync::Weak<()>,
) {
    let mut every = tokio::time::interval(CHECKPOINT_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        if alive.upgrade().is_none() {
            break;
        }
        for pool in [&reader, &writer] {
            if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(pool)
                .await
            {
                tracing::warn!(error = %e, "Checkpoint of the SQLite write-ahead log failed; retrying.");
                break;
            }
        }
    }
    reader.close().await;
    writer.close().await;
}

/// An event about to be appended to the feed.
struct NewEvent<'a> {
    id: Uuid,
    kind: EventKind,
    person_id: PersonId,
    alert_id: Option<AlertId>,
    data: &'a str,
}

/// Appends one event inside the caller's transaction and returns its `seq`. Every change that
/// consumers are told of calls this inside its own transaction (the transactional outbox), and
/// announces the `seq` once that transaction has committed.
async fn append_event(conn: &mut SqliteConnection, event: NewEvent<'_>) -> Result<i64, StoreError> {
    let seq: i64 = sqlx::query_scalar(
        "INSERT INTO events (id, kind, person_id, alert_id, time, data) \
         VALUES (?, ?, ?, ?, ?, ?) RETURNING seq",
    )
    .bind(event.id.to_string())
    .bind(event.kind.to_string())
    .bind(event.person_id.to_string())
    .bind(event.alert_id.map(|a| a.to_string()))
    .bind(micros(now()))
    .bind(event.data)
    .fetch_one(&mut *conn)
    .await?;
    Ok(seq)
}

/// Appends the event of an alert's new state (`alert.<state>`), with the alert as it now is.
/// The one place an alert state change enters the feed; whatever method changes an alert's
/// state calls it inside its transaction.
async fn append_alert_changed(
    conn: &mut SqliteConnection,
    alert: &Alert,
) -> Result<i64, StoreError> {
    append_event(
        conn,
        NewEvent {
            id: new_id(),
            kind: EventKind::AlertChanged(alert.state),
            person_id: alert.person_id,
            alert_id: Some(alert.id),
            data: &to_json(alert)?,
        },
    )
    .await
}

/// Inserts a new alert with its `alert.raised` event: the event takes the next `seq` and the
/// alert is stored under the same one. Every alert insert goes through here, so alert `seq`s and
/// event `seq`s never collide. The alert extends the alerts chain whose head is `head`.
async fn insert_alert(
    conn: &mut SqliteConnection,
    mut alert: Alert,
    head: &mut ChainHead,
) -> Result<Alert, StoreError> {
    let seq = append_event(
        conn,
        NewEvent {
            id: alert.id,
            kind: EventKind::AlertRaised,
            person_id: alert.person_id,
            alert_id: Some(alert.id),
            // Written below, once the alert knows its seq.
            data: "",
        },
    )
    .await?;
    alert.seq = seq;
    // Hand back exactly what a later read returns: times at microsecond precision.
    alert.time = truncate_micros(alert.time);
    alert.raised_at = truncate_micros(alert.raised_at);
    for t in [
        &mut alert.acknowledged_at,
        &mut alert.verified_at,
        &mut alert.disposed_at,
        &mut alert.closed_at,
    ] {
        *t = t.map(truncate_micros);
    }
    head.n += 1;
    head.hash = chain::link(&head.hash, &chain::alert_canonical(&alert, head.n));
    sqlx::query(
        "INSERT INTO alerts (seq, id, kind, person_id, device_id, zone_id, severity, time, \
         raised_at, lat, lon, accuracy_m, state, late, note, acknowledged_at, closed_at, \
         verified_at, disposed_at, disposition, repeat_of, border_port, border_reference, \
         chain_n, hash) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(seq)
    .bind(alert.id.to_string())
    .bind(alert.kind.as_str())
    .bind(alert.person_id.to_string())
    .bind(&alert.device_id)
    .bind(alert.zone_id.map(|z| z.to_string()))
    .bind(alert.severity.as_str())
    .bind(micros(alert.time))
    .bind(micros(alert.raised_at))
    .bind(alert.position.map(|p| p.lat))
    .bind(alert.position.map(|p| p.lon))
    .bind(alert.position.and_then(|p| p.accuracy_m))
    .bind(alert.state.as_str())
    .bind(alert.late)
    .bind(&alert.note)
    .bind(alert.acknowledged_at.map(micros))
    .bind(alert.closed_at.map(micros))
    .bind(alert.verified_at.map(micros))
    .bind(alert.disposed_at.map(micros))
    .bind(alert.disposition.map(|d| d.as_str()))
    .bind(alert.repeat_of.map(|a| a.to_string()))
    .bind(alert.border.as_ref().map(|b| b.port.as_str()))
    .bind(alert.border.as_ref().map(|b| b.reference.as_str()))
    .bind(head.n)
    .bind(head.hash.to_vec())
    .execute(&mut *conn)
    .await?;
    sqlx::query("UPDATE events SET data = ? WHERE seq = ?")
        .bind(to_json(&alert)?)
        .bind(seq)
        .execute(&mut *conn)
        .await?;
    Ok(alert)
}

/// Appends a filing event (a person enrolled or released) with the person's record.
async fn append_person_event(
    conn: &mut SqliteConnection,
    kind: EventKind,
    person: &Person,
) -> Result<i64, StoreError> {
    append_event(
        conn,
        NewEvent {
            id: new_id(),
            kind,
            person_id: person.id,
            alert_id: None,
            data: &to_json(person)?,
        },
    )
    .await
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt {
        what: "event",
        reason: format!("cannot serialise the event's record: {e}"),
    })
}

fn event_from_row(row: &SqliteRow) -> Result<Event, StoreError> {
    let data: &str = row.try_get("data")?;
    Ok(Event {
        seq: row.try_get("seq")?,
        id: parse("event", row.try_get::<&str, _>("id")?)?,
        kind: parse("event", row.try_get::<&str, _>("kind")?)?,
        person_id: parse("event", row.try_get::<&str, _>("person_id")?)?,
        alert_id: row
            .try_get::<Option<&str>, _>("alert_id")?
            .map(|a| parse("event", a))
            .transpose()?,
        time: from_micros("event", row.try_get("time")?)?,
        data: serde_json::from_str(data).map_err(|e| StoreError::Corrupt {
            what: "event",
            reason: format!("data is not JSON: {e}"),
        })?,
    })
}

fn delivery_from_row(row: &SqliteRow) -> Result<WebhookDelivery, StoreError> {
    Ok(WebhookDelivery {
        webhook: row.try_get("webhook")?,
        state: parse("webhook_delivery", row.try_get::<&str, _>("state")?)?,
        attempts: row
            .try_get::<i64, _>("attempts")?
            .try_into()
            .unwrap_or(u32::MAX),
        last_error: row.try_get("last_error")?,
        dead_at: from_micros("webhook_delivery", row.try_get("dead_at")?)?,
        delivered_at: row
            .try_get::<Option<i64>, _>("delivered_at")?
            .map(|t| from_micros("webhook_delivery", t))
            .transpose()?,
        event: event_from_row(row)?,
    })
}

/// Moves a dispatcher's cursor forward inside the caller's transaction.
async fn advance_cursor(
    conn: &mut SqliteConnection,
    consumer: &str,
    seq: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO dispatch_cursors (consumer, seq, updated_at) VALUES (?, ?, ?) \
         ON CONFLICT (consumer) DO UPDATE SET seq = MAX(seq, excluded.seq), \
         updated_at = excluded.updated_at",
    )
    .bind(consumer)
    .bind(seq)
    .bind(micros(now()))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// The current time at the precision the store keeps, so what a create returns equals what a
/// later read gives.
fn now() -> DateTime<Utc> {
    truncate_micros(Utc::now())
}

fn truncate_micros(t: DateTime<Utc>) -> DateTime<Utc> {
    t.trunc_subsecs(6)
}

fn from_micros(what: &'static str, v: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_micros(v).ok_or_else(|| StoreError::Corrupt {
        what,
        reason: format!("time {v} out of range"),
    })
}

fn parse<T: FromStr>(what: &'static str, s: &str) -> Result<T, StoreError>
where
    T::Err: std::fmt::Display,
{
    s.parse().map_err(|e: T::Err| StoreError::Corrupt {
        what,
        reason: format!("{s:?}: {e}"),
    })
}

fn not_found(what: &'static str, id: impl ToString) -> StoreError {
    StoreError::NotFound {
        what,
        id: id.to_string(),
    }
}

fn person_from_row(row: &SqliteRow) -> Result<Person, StoreError> {
    Ok(Person {
        id: parse("person", row.try_get::<&str, _>("id")?)?,
        name: row.try_get("name")?,
        level: parse("person", row.try_get::<&str, _>("level")?)?,
        timezone: row.try_get("timezone")?,
        created_at: from_micros("person", row.try_get("created_at")?)?,
    })
}

fn device_from_row(row: &SqliteRow) -> Result<Device, StoreError> {
    Ok(Device {
        imei: row.try_get("imei")?,
        person_id: parse("device", row.try_get::<&str, _>("person_id")?)?,
        created_at: from_micros("device", row.try_get("created_at")?)?,
        model: row.try_get("model")?,
        protocol: row.try_get("protocol")?,
    })
}

fn optional_micros(
    what: &'static str,
    v: Option<i64>,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    v.map(|v| from_micros(what, v)).transpose()
}

fn command_from_row(row: &SqliteRow) -> Result<DeviceCommand, StoreError> {
    let interval: Option<i64> = row.try_get("interval_s")?;
    Ok(DeviceCommand {
        id: parse("command", row.try_get::<&str, _>("id")?)?,
        seq: row.try_get("seq")?,
        device_id: row.try_get("device_id")?,
        kind: row.try_get("kind")?,
        text: row.try_get("text")?,
        interval_s: interval
            .map(|v| {
                u32::try_from(v).map_err(|_| StoreError::Corrupt {
                    what: "command",
                    reason: format!("interval {v} out of range"),
                })
            })
            .transpose()?,
        status: parse("command", row.try_get::<&str, _>("status")?)?,
        protocol: row.try_get("protocol")?,
        reference: row.try_get("reference")?,
        created_at: from_micros("command", row.try_get("created_at")?)?,
        expires_at: from_micros("command", row.try_get("expires_at")?)?,
        sent_at: optional_micros("command", row.try_get("sent_at")?)?,
        completed_at: optional_micros("command", row.try_get("completed_at")?)?,
        reply: row.try_get("reply")?,
        error: row.try_get("error")?,
    })
}

/// The persons each zone is assigned to.
async fn zone_persons(
    pool: &SqlitePool,
    zone: Option<ZoneId>,
) -> Result<HashMap<ZoneId, Vec<PersonId>>, StoreError> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT zone_id, person_id FROM person_zones \
         WHERE ? IS NULL OR zone_id = ? ORDER BY zone_id, person_id",
    )
    .bind(zone.map(|z| z.to_string()))
    .bind(zone.map(|z| z.to_string()))
    .fetch_all(pool)
    .await?;
    let mut persons: HashMap<ZoneId, Vec<PersonId>> = HashMap::new();
    for (zone, person) in rows {
        persons
            .entry(parse("zone", &zone)?)
            .or_default()
            .push(parse("person", &person)?);
    }
    Ok(persons)
}

fn zone_from_row(row: &SqliteRow) -> Result<ZoneRecord, StoreError> {
    Ok(ZoneRecord {
        id: parse("zone", row.try_get::<&str, _>("id")?)?,
        name: row.try_get("name")?,
        kind: parse("zone", row.try_get::<&str, _>("kind")?)?,
        source_crs: parse("zone", row.try_get::<&str, _>("source_crs")?)?,
        radius_m: row.try_get("radius_m")?,
        geometry: row.try_get("geometry")?,
        wifi: ZoneWifi {
            bssids: serde_json::from_str(row.try_get::<&str, _>("wifi")?).map_err(|e| {
                StoreError::Corrupt {
                    what: "zone",
                    reason: format!("wifi: {e}"),
                }
            })?,
            learn_until: row
                .try_get::<Option<i64>, _>("wifi_learn_until")?
                .map(|v| from_micros("zone", v))
                .transpose()?,
        },
        scope: super::parse_scope(row.try_get::<&str, _>("scope")?)?,
        // Filled from the assignments by the caller.
        persons: Vec::new(),
        schedule: super::parse_schedule(row.try_get::<Option<&str>, _>("schedule")?)?,
        created_at: from_micros("zone", row.try_get("created_at")?)?,
    })
}

fn source_name(source: PositionSource) -> &'static str {
    match source {
        PositionSource::Gps => "gps",
        PositionSource::Lbs => "lbs",
        PositionSource::Wifi => "wifi",
    }
}

fn fix_from_row(row: &SqliteRow) -> Result<Fix, StoreError> {
    let source = match row.try_get::<&str, _>("source")? {
        "gps" => PositionSource::Gps,
        "lbs" => PositionSource::Lbs,
        "wifi" => PositionSource::Wifi,
        other => {
            return Err(StoreError::Corrupt {
                what: "position",
                reason: format!("source {other:?}"),
            })
        }
    };
    Ok(Fix {
        device_id: row.try_get("device_id")?,
        person_id: parse("position", row.try_get::<&str, _>("person_id")?)?,
        time: from_micros("position", row.try_get("time")?)?,
        received_at: from_micros("position", row.try_get("received_at")?)?,
        lat: row.try_get("lat")?,
        lon: row.try_get("lon")?,
        valid: row.try_get("valid")?,
        accuracy_m: row.try_get("accuracy_m")?,
        speed_kmh: row.try_get("speed_kmh")?,
        course: row.try_get("course")?,
        altitude_m: row.try_get("altitude_m")?,
        satellites: row
            .try_get::<Option<i64>, _>("satellites")?
            .map(|v| v as u8),
        hdop: row.try_get("hdop")?,
        source,
        battery_pct: row
            .try_get::<Option<i64>, _>("battery_pct")?
            .map(|v| v as u8),
        archived: row.try_get("archived")?,
        integrity_mismatch: row.try_get("integrity_mismatch")?,
        protocol: row.try_get("protocol")?,
        // The access points seen are evidence for the fence engine only; they are not kept.
        wifi_bssids: Vec::new(),
        clock_skew: row.try_get("clock_skew")?,
        implausible: row.try_get("implausible")?,
        raw: row
            .try_get::<Option<Vec<u8>>, _>("raw")?
            .map(bytes::Bytes::from)
            .unwrap_or_default(),
    })
}

fn alert_from_row(row: &SqliteRow) -> Result<Alert, StoreError> {
    let lat: Option<f64> = row.try_get("lat")?;
    let lon: Option<f64> = row.try_get("lon")?;
    let optional_time = |col: &str| -> Result<Option<DateTime<Utc>>, StoreError> {
        row.try_get::<Option<i64>, _>(col)?
            .map(|v| from_micros("alert", v))
            .transpose()
    };
    Ok(Alert {
        id: parse("alert", row.try_get::<&str, _>("id")?)?,
        seq: row.try_get("seq")?,
        kind: parse("alert", row.try_get::<&str, _>("kind")?)?,
        person_id: parse("alert", row.try_get::<&str, _>("person_id")?)?,
        device_id: row.try_get("device_id")?,
        zone_id: row
            .try_get::<Option<&str>, _>("zone_id")?
            .map(|z| parse("alert", z))
            .transpose()?,
        severity: parse("alert", row.try_get::<&str, _>("severity")?)?,
        time: from_micros("alert", row.try_get("time")?)?,
        raised_at: from_micros("alert", row.try_get("raised_at")?)?,
        position: match (lat, lon) {
            (Some(lat), Some(lon)) => Some(AlertPosition {
                lat,
                lon,
                accuracy_m: row.try_get("accuracy_m")?,
            }),
            _ => None,
        },
        state: parse("alert", row.try_get::<&str, _>("state")?)?,
        late: row.try_get("late")?,
        note: row.try_get("note")?,
        disposition: row
            .try_get::<Option<&str>, _>("disposition")?
            .map(|d| parse("alert", d))
            .transpose()?,
        acknowledged_at: optional_time("acknowledged_at")?,
        verified_at: optional_time("verified_at")?,
        disposed_at: optional_time("disposed_at")?,
        closed_at: optional_time("closed_at")?,
        repeat_of: row
            .try_get::<Option<&str>, _>("repeat_of")?
            .map(|a| parse("alert", a))
            .transpose()?,
        border: border_from_row(
            row.try_get("border_port")?,
            row.try_get("border_reference")?,
        ),
    })
}

fn action_from_row(row: &SqliteRow) -> Result<AlertAction, StoreError> {
    Ok(AlertAction {
        alert_id: parse("alert_action", row.try_get::<&str, _>("alert_id")?)?,
        previous_state: parse("alert_action", row.try_get::<&str, _>("previous_state")?)?,
        state: parse("alert_action", row.try_get::<&str, _>("state")?)?,
        disposition: row
            .try_get::<Option<&str>, _>("disposition")?
            .map(|d| parse("alert_action", d))
            .transpose()?,
        actor: Actor {
            token_id: row
                .try_get::<Option<&str>, _>("token_id")?
                .map(|t| parse("alert_action", t))
                .transpose()?,
            label: row.try_get("token_label")?,
        },
        at: from_micros("alert_action", row.try_get("at")?)?,
        note: row.try_get("note")?,
        event_seq: row.try_get("event_seq")?,
    })
}

/// Records one step of the handling chain inside the caller's transaction.
async fn insert_action(
    conn: &mut SqliteConnection,
    action: &AlertAction,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO alert_actions (alert_id, previous_state, state, disposition, token_id, \
         token_label, note, at, event_seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(action.alert_id.to_string())
    .bind(action.previous_state.as_str())
    .bind(action.state.as_str())
    .bind(action.disposition.map(|d| d.as_str()))
    .bind(action.actor.token_id.map(|t| t.to_string()))
    .bind(&action.actor.label)
    .bind(&action.note)
    .bind(micros(action.at))
    .bind(action.event_seq)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The oldest alert of an episode key that is not closed, inside the caller's transaction.
async fn unclosed_alert(
    conn: &mut SqliteConnection,
    key: &handling::EpisodeKey,
) -> Result<Option<AlertId>, StoreError> {
    let (person, kind, zone) = key;
    let id: Option<String> = sqlx::query_scalar(
        "SELECT id FROM alerts WHERE person_id = ? AND kind = ? AND zone_id IS ? \
         AND state <> 'closed' ORDER BY seq LIMIT 1",
    )
    .bind(person.to_string())
    .bind(kind.as_str())
    .bind(zone.map(|z| z.to_string()))
    .fetch_optional(&mut *conn)
    .await?;
    id.map(|id| parse("alert", &id)).transpose()
}

/// Chain heads per multi-row upsert: 3 bound values each.
const HEADS_PER_STATEMENT: usize = 300;

fn stored_hash(what: &'static str, bytes: &[u8]) -> Result<Hash, StoreError> {
    chain::hash_of(bytes).ok_or_else(|| StoreError::Corrupt {
        what,
        reason: format!("a hash of {} bytes", bytes.len()),
    })
}

/// The head of `chain_name` inside the caller's transaction (an empty chain when none).
async fn read_head(conn: &mut SqliteConnection, chain_name: &str) -> Result<ChainHead, StoreError> {
    let row: Option<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT n, hash FROM audit_heads WHERE chain = ?")
            .bind(chain_name)
            .fetch_optional(&mut *conn)
            .await?;
    Ok(match row {
        Some((n, hash)) => ChainHead {
            chain: chain_name.to_owned(),
            n,
            hash: stored_hash("audit_head", &hash)?,
        },
        None => ChainHead {
            chain: chain_name.to_owned(),
            n: 0,
            hash: GENESIS,
        },
    })
}

/// The heads of `chains` (distinct) inside the caller's transaction, in their order (an
/// empty chain for one not started). One statement per [`HEADS_PER_STATEMENT`] chains: a
/// statement per chain cost a round trip to SQLite's thread each, the largest share of a
/// batch's commit after the inserts themselves.
async fn read_heads(
    conn: &mut SqliteConnection,
    chains: Vec<String>,
) -> Result<Vec<ChainHead>, StoreError> {
    let mut found: HashMap<String, (i64, Vec<u8>)> = HashMap::with_capacity(chains.len());
    for chunk in chains.chunks(HEADS_PER_STATEMENT) {
        let mut select =
            QueryBuilder::<Sqlite>::new("SELECT chain, n, hash FROM audit_heads WHERE chain IN (");
        let mut names = select.separated(", ");
        for chain_name in chunk {
            names.push_bind(chain_name.as_str());
        }
        select.push(")");
        let rows: Vec<(String, i64, Vec<u8>)> =
            select.build_query_as().fetch_all(&mut *conn).await?;
        found.extend(rows.into_iter().map(|(chain, n, hash)| (chain, (n, hash))));
    }
    chains
        .into_iter()
        .map(|chain_name| {
            Ok(match found.remove(&chain_name) {
                Some((n, hash)) => ChainHead {
                    n,
                    hash: stored_hash("audit_head", &hash)?,
                    chain: chain_name,
                },
                None => ChainHead {
                    chain: chain_name,
                    n: 0,
                    hash: GENESIS,
                },
            })
        })
        .collect()
}

/// Writes chain heads inside the caller's transaction.
async fn write_heads(conn: &mut SqliteConnection, heads: &[&ChainHead]) -> Result<(), StoreError> {
    for chunk in heads.chunks(HEADS_PER_STATEMENT) {
        let mut upsert = QueryBuilder::<Sqlite>::new("INSERT INTO audit_heads (chain, n, hash) ");
        upsert.push_values(chunk, |mut row, head| {
            row.push_bind(&head.chain)
                .push_bind(head.n)
                .push_bind(head.hash.to_vec());
        });
        upsert.push(" ON CONFLICT (chain) DO UPDATE SET n = excluded.n, hash = excluded.hash");
        upsert.build().execute(&mut *conn).await?;
    }
    Ok(())
}

/// Appends an operator or admin action to the actions chain inside the caller's transaction,
/// under the current actor ([`chain::current_actor`]). Every change an operator makes calls
/// this in the transaction of the change, so the record exists exactly when the change does.
///
/// # Errors
/// Database errors.
pub(crate) async fn append_action(
    conn: &mut SqliteConnection,
    action: NewAction,
) -> Result<ActionRecord, StoreError> {
    let mut head = read_head(conn, chain::ACTIONS_CHAIN).await?;
    let record = ActionRecord {
        n: head.n + 1,
        id: new_id(),
        time: now(),
        actor: chain::current_actor(),
        kind: action.kind,
        subject: action.subject,
        person_id: action.person_id,
        detail: action.detail.to_string(),
    };
    let hash = chain::link(&head.hash, &chain::action_canonical(&record));
    sqlx::query(
        "INSERT INTO audit_actions (chain_n, id, time, actor, kind, subject, person_id, detail, \
         hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(record.n)
    .bind(record.id.to_string())
    .bind(micros(record.time))
    .bind(&record.actor)
    .bind(&record.kind)
    .bind(&record.subject)
    .bind(record.person_id.map(|p| p.to_string()))
    .bind(&record.detail)
    .bind(hash.to_vec())
    .execute(&mut *conn)
    .await?;
    head.n = record.n;
    head.hash = hash;
    write_heads(conn, &[&head]).await?;
    Ok(record)
}

fn audit_action_from_row(row: &SqliteRow) -> Result<ActionRecord, StoreError> {
    Ok(ActionRecord {
        n: row.try_get("chain_n")?,
        id: parse("audit_action", row.try_get::<&str, _>("id")?)?,
        time: from_micros("audit_action", row.try_get("time")?)?,
        actor: row.try_get("actor")?,
        kind: row.try_get("kind")?,
        subject: row.try_get("subject")?,
        person_id: row
            .try_get::<Option<&str>, _>("person_id")?
            .map(|p| parse("audit_action", p))
            .transpose()?,
        detail: row.try_get("detail")?,
    })
}

/// Inserts `fixes` (distinct within the batch) with their chain links, extending each device's
/// chain in order, and moves the heads. Returns how many rows went in: fewer than given when
/// some were already stored (a resend), and then the links written are wrong and the caller
/// rolls them back.
async fn insert_chained_positions(
    conn: &mut SqliteConnection,
    fixes: &[&Fix],
) -> Result<usize, StoreError> {
    if fixes.is_empty() {
        return Ok(0);
    }
    let mut devices: Vec<&str> = Vec::new();
    let mut seen = HashSet::with_capacity(fixes.len());
    for fix in fixes {
        if seen.insert(fix.device_id.as_str()) {
            devices.push(fix.device_id.as_str());
        }
    }
    let chains = devices.iter().map(|d| chain::positions_chain(d)).collect();
    let mut heads: HashMap<&str, ChainHead> = devices
        .into_iter()
        .zip(read_heads(conn, chains).await?)
        .collect();
    let mut links = Vec::with_capacity(fixes.len());
    for fix in fixes {
        let head = heads
            .get_mut(fix.device_id.as_str())
            .expect("every device's head was read above");
        head.n += 1;
        head.hash = chain::link_position(&head.hash, fix, head.n);
        links.push((head.n, head.hash));
    }
    let mut inserted = 0;
    // Multi-row inserts: one statement per chunk costs a few microseconds a row, against
    // tens for a statement per row.
    for (chunk, chunk_links) in fixes
        .chunks(POSITIONS_PER_INSERT)
        .zip(links.chunks(POSITIONS_PER_INSERT))
    {
        let mut insert = QueryBuilder::<Sqlite>::new(
            "INSERT INTO positions (device_id, person_id, time, received_at, lat, lon, valid, \
             accuracy_m, speed_kmh, course, altitude_m, satellites, hdop, source, \
             battery_pct, archived, integrity_mismatch, protocol, clock_skew, implausible, \
             raw, chain_n, hash) ",
        );
        insert.push_values(
            chunk.iter().zip(chunk_links),
            |mut row, (fix, (n, hash))| {
                row.push_bind(&fix.device_id)
                    .push_bind(fix.person_id.to_string())
                    .push_bind(micros(fix.time))
                    .push_bind(micros(fix.received_at))
                    .push_bind(fix.lat)
                    .push_bind(fix.lon)
                    .push_bind(fix.valid)
                    .push_bind(fix.accuracy_m)
                    .push_bind(fix.speed_kmh)
                    .push_bind(fix.course)
                    .push_bind(fix.altitude_m)
                    .push_bind(fix.satellites.map(i64::from))
                    .push_bind(fix.hdop)
                    .push_bind(source_name(fix.source))
                    .push_bind(fix.battery_pct.map(i64::from))
                    .push_bind(fix.archived)
                    .push_bind(fix.integrity_mismatch)
                    .push_bind(&fix.protocol)
                    .push_bind(fix.clock_skew)
                    .push_bind(&fix.implausible)
                    .push_bind(fix.raw.as_ref())
                    .push_bind(*n)
                    .push_bind(&hash[..]);
            },
        );
        // A resent fix (same natural key) is skipped: see `Store::commit`.
        insert.push(" ON CONFLICT (device_id, time, lat, lon) DO NOTHING");
        inserted += insert.build().execute(&mut *conn).await?.rows_affected() as usize;
    }
    let heads: Vec<&ChainHead> = heads.values().collect();
    write_heads(conn, &heads).await?;
    note_person_devices(conn, fixes).await?;
    Ok(inserted)
}

/// Records, inside the caller's transaction, which devices reported for which persons: the
/// person's way into the natural key when their positions are read. A known pair is only
/// looked up, so the pages of `person_devices` change only when a pair is new.
async fn note_person_devices(
    conn: &mut SqliteConnection,
    fixes: &[&Fix],
) -> Result<(), StoreError> {
    let mut pairs: Vec<(String, &str)> = fixes
        .iter()
        .map(|fix| (fix.person_id.to_string(), fix.device_id.as_str()))
        .collect();
    pairs.sort_unstable();
    pairs.dedup();
    for chunk in pairs.chunks(PAIRS_PER_STATEMENT) {
        let mut insert = QueryBuilder::<Sqlite>::new(
            "INSERT OR IGNORE INTO person_devices (person_id, device_id) ",
        );
        insert.push_values(chunk, |mut row, (person, device)| {
            row.push_bind(person.as_str()).push_bind(*device);
        });
        insert.build().execute(&mut *conn).await?;
    }
    Ok(())
}

/// Whether a fix with the natural key of `fix` is already stored.
async fn position_stored(conn: &mut SqliteConnection, fix: &Fix) -> Result<bool, StoreError> {
    let found: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM positions WHERE device_id = ? AND time = ? AND lat = ? AND lon = ?",
    )
    .bind(&fix.device_id)
    .bind(micros(fix.time))
    .bind(fix.lat)
    .bind(fix.lon)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(found.is_some())
}

/// A chain's record rebuilt from a positions row.
fn position_record(row: &SqliteRow) -> Result<ChainRecord, StoreError> {
    let fix = fix_from_row(row)?;
    let n: Option<i64> = row.try_get("chain_n")?;
    let n = n.unwrap_or(0);
    let id: i64 = row.try_get("id")?;
    Ok(ChainRecord {
        table: "positions",
        chain: chain::positions_chain(&fix.device_id),
        id: id.to_string(),
        key: id,
        n,
        time: fix.time,
        canonical: chain::position_canonical(&fix, n),
        hash: row
            .try_get::<Option<Vec<u8>>, _>("hash")?
            .and_then(|h| chain::hash_of(&h)),
        device_id: Some(fix.device_id),
    })
}

/// A chain's record rebuilt from an alerts row.
fn alert_record(row: &SqliteRow) -> Result<ChainRecord, StoreError> {
    let alert = alert_from_row(row)?;
    let n: Option<i64> = row.try_get("chain_n")?;
    let n = n.unwrap_or(0);
    Ok(ChainRecord {
        table: "alerts",
        chain: chain::ALERTS_CHAIN.to_owned(),
        id: alert.id.to_string(),
        key: alert.seq,
        n,
        time: alert.raised_at,
        canonical: chain::alert_canonical(&alert, n),
        hash: row
            .try_get::<Option<Vec<u8>>, _>("hash")?
            .and_then(|h| chain::hash_of(&h)),
        device_id: alert.device_id,
    })
}

/// A chain's record rebuilt from an audit_actions row.
fn action_record(row: &SqliteRow) -> Result<ChainRecord, StoreError> {
    let action = audit_action_from_row(row)?;
    Ok(ChainRecord {
        table: "audit_actions",
        chain: chain::ACTIONS_CHAIN.to_owned(),
        id: action.id.to_string(),
        key: action.n,
        n: action.n,
        time: action.time,
        canonical: chain::action_canonical(&action),
        hash: chain::hash_of(&row.try_get::<Vec<u8>, _>("hash")?),
        device_id: None,
    })
}

fn checkpoint_from_row(row: &SqliteRow) -> Result<Checkpoint, StoreError> {
    Ok(Checkpoint {
        chain: row.try_get("chain")?,
        n: row.try_get("n")?,
        hash: stored_hash("audit_checkpoint", &row.try_get::<Vec<u8>, _>("hash")?)?,
        before: from_micros("audit_checkpoint", row.try_get("before")?)?,
        at: from_micros("audit_checkpoint", row.try_get("at")?)?,
        signature: row.try_get("signature")?,
    })
}

/// Rows deleted per statement by retention, so the write lock is never held long.
const RETENTION_BATCH: i64 = 5000;

/// Maps a unique-constraint violation to a conflict with `message`.
fn conflict_on_unique(err: sqlx::Error, message: impl FnOnce() -> String) -> StoreError {
    match &err {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(message()),
        _ => StoreError::Database(err),
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("./migrations/sqlite")
            .run(&self.writer)
            .await?;
        self.backfill_raised_events().await?;
        let newest = self.last_event_seq().await?;
        self.announce(newest);
        Ok(())
    }

    async fn create_person(&self, new: NewPerson) -> Result<Person, StoreError> {
        let person = Person {
            id: new_id(),
            name: new.name,
            level: new.level,
            timezone: new.timezone,
            created_at: now(),
        };
        let mut tx = self.write_transaction().await?;
        sqlx::query(
            "INSERT INTO persons (id, name, level, timezone, created_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(person.id.to_string())
        .bind(&person.name)
        .bind(person.level.as_str())
        .bind(&person.timezone)
        .bind(micros(person.created_at))
        .execute(&mut *tx)
        .await?;
        append_action(&mut tx, person_action("person.create", &person)).await?;
        reports::open_span(&mut tx, &person, person.created_at).await?;
        let seq = append_person_event(&mut tx, EventKind::PersonEnrolled, &person).await?;
        tx.commit().await?;
        self.announce(seq);
        Ok(person)
    }

    async fn register_persons(
        &self,
        registrations: Vec<NewRegistration>,
    ) -> Result<Vec<Registration>, StoreError> {
        let mut tx = self.write_transaction().await?;
        let mut known_zones: HashSet<ZoneId> = HashSet::new();
        let mut registered = Vec::with_capacity(registrations.len());
        let mut newest_seq = None;
        for (i, new) in registrations.into_iter().enumerate() {
            let person = Person {
                id: new_id(),
                name: new.person.name,
                level: new.person.level,
                timezone: new.person.timezone,
                created_at: now(),
            };
            sqlx::query(
                "INSERT INTO persons (id, name, level, timezone, created_at) \
                 VALUES (?, ?, ?, ?, ?)",
            )
            .bind(person.id.to_string())
            .bind(&person.name)
            .bind(person.level.as_str())
            .bind(&person.timezone)
            .bind(micros(person.created_at))
            .execute(&mut *tx)
            .await?;
            append_action(&mut tx, person_action("person.create", &person)).await?;
            reports::open_span(&mut tx, &person, person.created_at).await?;
            newest_seq =
                Some(append_person_event(&mut tx, EventKind::PersonEnrolled, &person).await?);
            let mut devices = Vec::with_capacity(new.devices.len());
            for (j, new_device) in new.devices.into_iter().enumerate() {
                let mut device = Device {
                    imei: new_device.imei,
                    person_id: person.id,
                    created_at: now(),
                    model: None,
                    protocol: None,
                };
                sqlx::query(
                    "INSERT INTO devices (imei, person_id, created_at, model) VALUES (?, ?, ?, ?)",
                )
                .bind(&device.imei)
                .bind(person.id.to_string())
                .bind(micros(device.created_at))
                .bind(new_device.model.as_deref())
                .execute(&mut *tx)
                .await
                .map_err(|e| {
                    conflict_on_unique(e, || {
                        format!(
                            "persons[{i}].devices[{j}]: device {} is already registered",
                            device.imei
                        )
                    })
                })?;
                // The actions a binding followed by a model change records.
                append_action(&mut tx, device_action("device.bind", &device)).await?;
                if new_device.model.is_some() {
                    device.model = new_device.model;
                    append_action(&mut tx, device_action("device.model", &device)).await?;
                }
                devices.push(device);
            }
            if !new.zones.is_empty() {
                let mut unknown = Vec::new();
                for zone in &new.zones {
                    if known_zones.contains(zone) {
                        continue;
                    }
                    let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM zones WHERE id = ?")
                        .bind(zone.to_string())
                        .fetch_optional(&mut *tx)
                        .await?;
                    match found {
                        Some(_) => {
                            known_zones.insert(*zone);
                        }
                        None => unknown.push(*zone),
                    }
                }
                if !unknown.is_empty() {
                    return Err(super::unknown_zones(&format!("persons[{i}]"), &unknown));
                }
                for zone in &new.zones {
                    sqlx::query(
                        "INSERT OR IGNORE INTO person_zones (person_id, zone_id) VALUES (?, ?)",
                    )
                    .bind(person.id.to_string())
                    .bind(zone.to_string())
                    .execute(&mut *tx)
                    .await?;
                }
                append_action(&mut tx, assignment_action(person.id, &new.zones)).await?;
            }
            registered.push(Registration {
                person,
                devices,
                zones: new.zones,
            });
        }
        tx.commit().await?;
        if let Some(seq) = newest_seq {
            self.announce(seq);
        }
        Ok(registered)
    }

    async fn person(&self, id: PersonId) -> Result<Person, StoreError> {
        let row = sqlx::query("SELECT * FROM persons WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| not_found("person", id))?;
        person_from_row(&row)
    }

    async fn persons(&self) -> Result<Vec<Person>, StoreError> {
        sqlx::query("SELECT * FROM persons ORDER BY created_at, id")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(person_from_row)
            .collect()
    }

    async fn update_person(&self, id: PersonId, patch: PersonPatch) -> Result<Person, StoreError> {
        let mut tx = self.write_transaction().await?;
        let row = sqlx::query("SELECT * FROM persons WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| not_found("person", id))?;
        let mut person = person_from_row(&row)?;
        if let Some(name) = patch.name {
            person.name = name;
        }
        if let Some(level) = patch.level {
            person.level = level;
        }
        if let Some(timezone) = patch.timezone {
            person.timezone = timezone;
        }
        sqlx::query("UPDATE persons SET name = ?, level = ?, timezone = ? WHERE id = ?")
            .bind(&person.name)
            .bind(person.level.as_str())
            .bind(&person.timezone)
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        append_action(&mut tx, person_action("person.update", &person)).await?;
        reports::follow_span(&mut tx, &person, now()).await?;
        tx.commit().await?;
        Ok(person)
    }

    async fn delete_person(&self, id: PersonId) -> Result<(), StoreError> {
        let mut tx = self.write_transaction().await?;
        let devices: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM devices WHERE person_id = ?")
            .bind(id.to_string())
            .fetch_one(&mut *tx)
            .await?;
        if devices > 0 {
            return Err(StoreError::Conflict(format!(
                "person {id} still has {devices} device(s) bound; delete the devices first"
            )));
        }
        let row = sqlx::query("SELECT * FROM persons WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| not_found("person", id))?;
        let person = person_from_row(&row)?;
        sqlx::query("DELETE FROM persons WHERE id = ?")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        let at = now();
        append_action(&mut tx, person_action("person.delete", &person)).await?;
        // The supervisor forgets a deleted person, so nothing else would end their orders.
        supervision::end_orders_of_deleted(&mut tx, person.id, at).await?;
        reports::close_span(&mut tx, person.id, at, true).await?;
        let seq = append_person_event(&mut tx, EventKind::PersonReleased, &person).await?;
        tx.commit().await?;
        self.announce(seq);
        Ok(())
    }

    async fn create_device(&self, imei: &str, person_id: PersonId) -> Result<Device, StoreError> {
        self.person(person_id).await.map_err(|e| match e {
            StoreError::NotFound { .. } => {
                StoreError::UnknownReference(format!("person_id {person_id} does not exist"))
            }
            other => other,
        })?;
        let device = Device {
            imei: imei.to_owned(),
            person_id,
            created_at: now(),
            model: None,
            protocol: None,
        };
        let mut tx = self.write_transaction().await?;
        sqlx::query("INSERT INTO devices (imei, person_id, created_at) VALUES (?, ?, ?)")
            .bind(&device.imei)
            .bind(person_id.to_string())
            .bind(micros(device.created_at))
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                conflict_on_unique(e, || format!("device {imei} is already registered"))
            })?;
        append_action(&mut tx, device_action("device.bind", &device)).await?;
        tx.commit().await?;
        Ok(device)
    }

    async fn device(&self, imei: &str) -> Result<Device, StoreError> {
        let row = sqlx::query("SELECT * FROM devices WHERE imei = ?")
            .bind(imei)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| not_found("device", imei))?;
        device_from_row(&row)
    }

    async fn devices(&self) -> Result<Vec<Device>, StoreError> {
        sqlx::query("SELECT * FROM devices ORDER BY created_at, imei")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(device_from_row)
            .collect()
    }

    async fn delete_device(&self, imei: &str) -> Result<(), StoreError> {
        let mut tx = self.write_transaction().await?;
        let row = sqlx::query("DELETE FROM devices WHERE imei = ? RETURNING *")
            .bind(imei)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| not_found("device", imei))?;
        let device = device_from_row(&row)?;
        append_action(&mut tx, device_action("device.unbind", &device)).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn set_device_model(
        &self,
        imei: &str,
        model: Option<&str>,
    ) -> Result<Device, StoreError> {
        let mut tx = self.write_transaction().await?;
        let row = sqlx::query("UPDATE devices SET model = ? WHERE imei = ? RETURNING *")
            .bind(model)
            .bind(imei)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| not_found("device", imei))?;
        let device = device_from_row(&row)?;
        append_action(&mut tx, device_action("device.model", &device)).await?;
        tx.commit().await?;
        Ok(device)
    }

    async fn set_device_protocol(&self, imei: &str, protocol: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE devices SET protocol = ? WHERE imei = ? AND protocol IS NOT ?")
            .bind(protocol)
            .bind(imei)
            .bind(protocol)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn create_command(&self, command: &DeviceCommand) -> Result<DeviceCommand, StoreError> {
        let mut tx = self.write_transaction().await?;
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
        let person: Option<String> =
            sqlx::query_scalar("SELECT person_id FROM devices WHERE imei = ?")
                .bind(&command.device_id)
                .fetch_optional(&mut *tx)
                .await?;
        let person = person.map(|p| parse("device", &p)).transpose()?;
        append_action(&mut tx, command_action(command, person)).await?;
        tx.commit().await?;
        Ok(DeviceCommand {
            seq,
            ..command.clone()
        })
    }

    async fn command(&self, id: CommandId) -> Result<DeviceCommand, StoreError> {
        let row = sqlx::query("SELECT * FROM commands WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| not_found("command", id))?;
        command_from_row(&row)
    }

    async fn device_commands(
        &self,
        imei: &str,
        limit: u32,
    ) -> Result<Vec<DeviceCommand>, StoreError> {
        sqlx::query("SELECT * FROM commands WHERE device_id = ? ORDER BY seq DESC LIMIT ?")
            .bind(imei)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(command_from_row)
            .collect()
    }

    async fn pending_commands(
        &self,
        imei: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<DeviceCommand>, StoreError> {
        sqlx::query(
            "SELECT * FROM commands WHERE device_id = ? AND status = 'pending' \
             AND expires_at > ? ORDER BY seq",
        )
        .bind(imei)
        .bind(micros(now))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(command_from_row)
        .collect()
    }

    async fn mark_command_sent(
        &self,
        id: CommandId,
        protocol: &str,
        reference: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE commands SET status = 'sent', protocol = ?, reference = ?, sent_at = ? \
             WHERE id = ? AND status = 'pending'",
        )
        .bind(protocol)
        .bind(reference)
        .bind(micros(truncate_micros(at)))
        .bind(id.to_string())
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn unmark_command_sent(&self, id: CommandId) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE commands SET status = 'pending', sent_at = NULL, reference = NULL \
             WHERE id = ? AND status = 'sent'",
        )
        .bind(id.to_string())
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn complete_command(
        &self,
        id: CommandId,
        status: CommandStatus,
        detail: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let (reply, error) = match status {
            CommandStatus::Acknowledged => (detail, None),
            _ => (None, detail),
        };
        let done = sqlx::query(
            "UPDATE commands SET status = ?, completed_at = ?, reply = ?, error = ? \
             WHERE id = ? AND status IN ('pending', 'sent')",
        )
        .bind(status.as_str())
        .bind(micros(truncate_micros(at)))
        .bind(reply)
        .bind(error)
        .bind(id.to_string())
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn command_by_reference(
        &self,
        imei: &str,
        reference: &str,
    ) -> Result<Option<DeviceCommand>, StoreError> {
        sqlx::query(
            "SELECT * FROM commands WHERE device_id = ? AND status = 'sent' AND reference = ? \
             ORDER BY seq LIMIT 1",
        )
        .bind(imei)
        .bind(reference)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(command_from_row)
        .transpose()
    }

    async fn expire_commands(&self, now: DateTime<Utc>) -> Result<Vec<DeviceCommand>, StoreError> {
        sqlx::query(
            "UPDATE commands SET status = 'expired', completed_at = ?, \
             error = 'expired before the device answered' \
             WHERE status IN ('pending', 'sent') AND expires_at <= ? RETURNING *",
        )
        .bind(micros(truncate_micros(now)))
        .bind(micros(now))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(command_from_row)
        .collect()
    }

    async fn next_command_expiry(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let next: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(expires_at) FROM commands WHERE status IN ('pending', 'sent')",
        )
        .fetch_one(&self.pool)
        .await?;
        optional_micros("command", next)
    }

    async fn create_zone(&self, zone: &ZoneRecord) -> Result<(), StoreError> {
        let mut tx = self.write_transaction().await?;
        sqlx::query(
            "INSERT INTO zones \
             (id, name, kind, source_crs, radius_m, geometry, wifi, wifi_learn_until, scope, \
              schedule, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(zone.id.to_string())
        .bind(&zone.name)
        .bind(zone.kind.as_str())
        .bind(zone.source_crs.as_str())
        .bind(zone.radius_m)
        .bind(&zone.geometry)
        .bind(serde_json::Value::from(zone.wifi.bssids.clone()).to_string())
        .bind(zone.wifi.learn_until.map(micros))
        .bind(super::scope_name(zone.scope))
        .bind(zone.schedule.as_ref().map(|s| s.to_string()))
        .bind(micros(zone.created_at))
        .execute(&mut *tx)
        .await?;
        for person in &zone.persons {
            let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM persons WHERE id = ?")
                .bind(person.to_string())
                .fetch_optional(&mut *tx)
                .await?;
            if exists.is_none() {
                return Err(StoreError::UnknownReference(format!(
                    "assigned_to lists person {person}, who does not exist"
                )));
            }
            sqlx::query("INSERT OR IGNORE INTO person_zones (person_id, zone_id) VALUES (?, ?)")
                .bind(person.to_string())
                .bind(zone.id.to_string())
                .execute(&mut *tx)
                .await?;
        }
        append_action(&mut tx, zone_action("zone.create", zone)).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn add_zone_wifi(&self, id: ZoneId, bssids: &[String]) -> Result<ZoneRecord, StoreError> {
        // Read, then write: the write lock is taken at the start.
        let mut tx = self.write_transaction().await?;
        let row = sqlx::query("SELECT * FROM zones WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| not_found("zone", id))?;
        let mut zone = zone_from_row(&row)?;
        for bssid in bssids {
            if zone.wifi.bssids.len() >= crate::fence::MAX_WIFI {
                break;
            }
            if !zone.wifi.bssids.contains(bssid) {
                zone.wifi.bssids.push(bssid.clone());
            }
        }
        sqlx::query("UPDATE zones SET wifi = ? WHERE id = ?")
            .bind(serde_json::Value::from(zone.wifi.bssids.clone()).to_string())
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(zone)
    }

    async fn zone(&self, id: ZoneId) -> Result<ZoneRecord, StoreError> {
        let row = sqlx::query("SELECT * FROM zones WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| not_found("zone", id))?;
        let mut zone = zone_from_row(&row)?;
        zone.persons = zone_persons(&self.pool, Some(id))
            .await?
            .remove(&id)
            .unwrap_or_default();
        Ok(zone)
    }

    async fn zones(&self) -> Result<Vec<ZoneRecord>, StoreError> {
        let mut persons = zone_persons(&self.pool, None).await?;
        sqlx::query("SELECT * FROM zones ORDER BY created_at, id")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| {
                let mut zone = zone_from_row(row)?;
                zone.persons = persons.remove(&zone.id).unwrap_or_default();
                Ok(zone)
            })
            .collect()
    }

    async fn delete_zone(&self, id: ZoneId) -> Result<(), StoreError> {
        let mut tx = self.write_transaction().await?;
        let assigned: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM person_zones WHERE zone_id = ?")
                .bind(id.to_string())
                .fetch_one(&mut *tx)
                .await?;
        if assigned > 0 {
            return Err(StoreError::Conflict(format!(
                "zone {id} is assigned to {assigned} person(s); remove it from their zones first"
            )));
        }
        let row = sqlx::query("DELETE FROM zones WHERE id = ? RETURNING *")
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| not_found("zone", id))?;
        let zone = zone_from_row(&row)?;
        append_action(&mut tx, zone_action("zone.delete", &zone)).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn set_person_zones(&self, person: PersonId, zones: &[ZoneId]) -> Result<(), StoreError> {
        let mut tx = self.write_transaction().await?;
        let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM persons WHERE id = ?")
            .bind(person.to_string())
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Err(not_found("person", person));
        }
        let mut unknown = Vec::new();
        for zone in zones {
            let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM zones WHERE id = ?")
                .bind(zone.to_string())
                .fetch_optional(&mut *tx)
                .await?;
            if found.is_none() {
                unknown.push(*zone);
            }
        }
        if !unknown.is_empty() {
            return Err(super::unknown_zones("", &unknown));
        }
        sqlx::query("DELETE FROM person_zones WHERE person_id = ?")
            .bind(person.to_string())
            .execute(&mut *tx)
            .await?;
        for zone in zones {
            sqlx::query("INSERT OR IGNORE INTO person_zones (person_id, zone_id) VALUES (?, ?)")
                .bind(person.to_string())
                .bind(zone.to_string())
                .execute(&mut *tx)
                .await?;
        }
        append_action(&mut tx, assignment_action(person, zones)).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn person_zones(&self, person: PersonId) -> Result<Vec<ZoneId>, StoreError> {
        self.person(person).await?;
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT zone_id FROM person_zones WHERE person_id = ? ORDER BY zone_id",
        )
        .bind(person.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|z| parse("person_zone", z)).collect()
    }

    async fn assignments(&self) -> Result<Vec<(PersonId, ZoneId)>, StoreError> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT person_id, zone_id FROM person_zones")
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|(p, z)| Ok((parse("person_zone", p)?, parse("person_zone", z)?)))
            .collect()
    }

    async fn commit_batch(
        &self,
        fixes: &[Fix],
        alerts: Vec<Alert>,
        heard: &[DeviceHeard],
    ) -> Result<Vec<Alert>, StoreError> {
        let mut tx = self.write_transaction().await?;
        let fresh = chain::distinct_positions(fixes);
        // Resends are rare, so the batch is first chained as if every fix were new; when some
        // turn out stored already (fewer rows went in), the transaction is rolled back and the
        // batch chained again without them. A skipped resend never takes a place in a chain.
        // (A rollback of the whole transaction rather than to a savepoint: two statements fewer
        // in every commit.)
        if insert_chained_positions(&mut tx, &fresh).await? != fresh.len() {
            tx.rollback().await?;
            tx = self.write_transaction().await?;
            let mut new = Vec::with_capacity(fresh.len());
            for fix in fresh {
                if !position_stored(&mut tx, fix).await? {
                    new.push(fix);
                }
            }
            insert_chained_positions(&mut tx, &new).await?;
        }
        let mut alerts = alerts;
        // A batch tried again after its commit's answer was lost carries alerts already
        // stored: they are not stored twice (see `Store::commit`).
        let mut fresh = Vec::with_capacity(alerts.len());
        for alert in alerts {
            let known: Option<i64> = sqlx::query_scalar("SELECT 1 FROM alerts WHERE id = ?")
                .bind(alert.id.to_string())
                .fetch_optional(&mut *tx)
                .await?;
            if known.is_none() {
                fresh.push(alert);
            }
        }
        alerts = fresh;
        let mut unclosed = HashMap::new();
        for alert in alerts.iter().filter(|a| a.kind.needs_handling()) {
            if let Entry::Vacant(slot) = unclosed.entry(handling::episode_key(alert)) {
                if let Some(first) = unclosed_alert(&mut tx, slot.key()).await? {
                    slot.insert(first);
                }
            }
        }
        let births = handling::admit(&mut alerts, unclosed);
        let mut stored = Vec::with_capacity(alerts.len());
        if !alerts.is_empty() {
            let mut head = read_head(&mut tx, chain::ALERTS_CHAIN).await?;
            for (alert, birth) in alerts.into_iter().zip(births) {
                let alert = insert_alert(&mut tx, alert, &mut head).await?;
                if let Some(mut action) = birth {
                    action.at = truncate_micros(action.at);
                    action.event_seq = Some(alert.seq);
                    insert_action(&mut tx, &action).await?;
                }
                stored.push(alert);
            }
            write_heads(&mut tx, &[&head]).await?;
        }
        supervision::upsert_heard(&mut tx, heard).await?;
        tx.commit().await?;
        if let Some(last) = stored.last() {
            self.announce(last.seq);
        }
        Ok(stored)
    }

    async fn track(
        &self,
        person: PersonId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Fix>, StoreError> {
        sqlx::query(
            "SELECT p.* FROM person_devices d \
             JOIN positions p ON p.device_id = d.device_id AND p.time >= ?2 AND p.time <= ?3 \
             WHERE d.person_id = ?1 AND p.person_id = ?1 ORDER BY p.time, p.id LIMIT ?4",
        )
        .bind(person.to_string())
        .bind(micros(from))
        .bind(micros(to))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(fix_from_row)
        .collect()
    }

    async fn newest_fix_times(&self) -> Result<Vec<DeviceNewest>, StoreError> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            // A clock-skewed or implausible fix never became the newest while running, so it
            // must not become it at a restart either.
            "SELECT device_id, person_id, MAX(time) FROM positions \
             WHERE valid = 1 AND clock_skew = 0 AND implausible IS NULL \
             GROUP BY device_id, person_id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(device_id, person, time)| {
                Ok(DeviceNewest {
                    device_id,
                    person_id: parse("position", &person)?,
                    time: from_micros("position", time)?,
                })
            })
            .collect()
    }

    async fn open_breaches(&self) -> Result<Vec<OpenBreach>, StoreError> {
        let rows: Vec<(String, String, Option<String>, i64)> = sqlx::query_as(
            // A `leave_overdue` is the breach of the zone the leave suspended: its side is the
            // zone's kind.
            "SELECT a.person_id, a.zone_id, \
                    CASE a.kind WHEN 'leave_overdue' THEN \
                      (SELECT CASE z.kind WHEN 'exclusion' THEN 'zone_enter' ELSE 'zone_exit' END \
                       FROM zones z WHERE z.id = a.zone_id) \
                    ELSE a.kind END, a.time FROM alerts a \
             WHERE a.zone_id IS NOT NULL AND a.late = 0 \
               AND a.kind IN ('zone_exit', 'zone_enter', 'curfew', 'leave_overdue') \
               AND a.seq = (SELECT MAX(b.seq) FROM alerts b \
                            WHERE b.person_id = a.person_id AND b.zone_id = a.zone_id \
                              AND b.late = 0)",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|(person, zone, kind, time)| {
                Ok(OpenBreach {
                    person_id: parse("alert", person)?,
                    zone_id: parse("alert", zone)?,
                    kind: if kind.as_deref() != Some("zone_enter") {
                        ZoneKind::Inclusion
                    } else {
                        ZoneKind::Exclusion
                    },
                    since: from_micros("alert", *time)?,
                })
            })
            .collect()
    }

    async fn alerts(&self, query: AlertQuery) -> Result<Vec<Alert>, StoreError> {
        let sql = format!(
            "SELECT * FROM alerts WHERE seq > ? AND (? IS NULL OR person_id = ?) \
             AND (? = 0 OR state <> 'closed') ORDER BY seq {} LIMIT ?",
            if query.newest_first { "DESC" } else { "ASC" }
        );
        let person = query.person_id.map(|p| p.to_string());
        sqlx::query(&sql)
            .bind(query.after)
            .bind(&person)
            .bind(&person)
            .bind(query.open_only)
            .bind(i64::from(query.limit))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(alert_from_row)
            .collect()
    }

    async fn alert(&self, id: AlertId) -> Result<Alert, StoreError> {
        let row = sqlx::query("SELECT * FROM alerts WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| not_found("alert", id))?;
        alert_from_row(&row)
    }

    async fn record_alert_action(
        &self,
        id: AlertId,
        request: AlertActionRequest,
    ) -> Result<Alert, StoreError> {
        let request = AlertActionRequest {
            at: truncate_micros(request.at),
            ..request
        };
        let mut tx = self.write_transaction().await?;
        let row = sqlx::query("SELECT * FROM alerts WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| not_found("alert", id))?;
        let mut alert = alert_from_row(&row)?;
        let steps = handling::take_steps(&mut alert, &request)?;
        let mut last_seq = 0;
        for (as_it_became, mut action) in steps {
            last_seq = append_alert_changed(&mut tx, &as_it_became).await?;
            action.event_seq = Some(last_seq);
            insert_action(&mut tx, &action).await?;
        }
        sqlx::query(
            "UPDATE alerts SET state = ?, note = ?, disposition = ?, acknowledged_at = ?, \
             verified_at = ?, disposed_at = ?, closed_at = ? WHERE id = ?",
        )
        .bind(alert.state.as_str())
        .bind(&alert.note)
        .bind(alert.disposition.map(|d| d.as_str()))
        .bind(alert.acknowledged_at.map(micros))
        .bind(alert.verified_at.map(micros))
        .bind(alert.disposed_at.map(micros))
        .bind(alert.closed_at.map(micros))
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        append_action(&mut tx, alert_state_action(&alert)).await?;
        tx.commit().await?;
        self.announce(last_seq);
        Ok(alert)
    }

    async fn raise_border_hit(&self, alert: Alert) -> Result<(Alert, bool), StoreError> {
        let reference = alert
            .border
            .as_ref()
            .map(|b| b.reference.clone())
            .ok_or_else(|| StoreError::Conflict("a border hit needs its border check".into()))?;
        let mut tx = self.write_transaction().await?;
        if let Some(row) = sqlx::query("SELECT * FROM alerts WHERE border_reference = ?")
            .bind(&reference)
            .fetch_optional(&mut *tx)
            .await?
        {
            return Ok((alert_from_row(&row)?, false));
        }
        let known: Option<i64> = sqlx::query_scalar("SELECT 1 FROM persons WHERE id = ?")
            .bind(alert.person_id.to_string())
            .fetch_optional(&mut *tx)
            .await?;
        if known.is_none() {
            return Err(StoreError::UnknownReference(format!(
                "person {} does not exist",
                alert.person_id
            )));
        }
        let mut head = read_head(&mut tx, chain::ALERTS_CHAIN).await?;
        let stored = insert_alert(&mut tx, alert, &mut head).await?;
        write_heads(&mut tx, &[&head]).await?;
        append_action(&mut tx, border_hit_action(&stored)).await?;
        tx.commit().await?;
        self.announce(stored.seq);
        Ok((stored, true))
    }

    async fn record_integration_read(&self, read: &IntegrationRead) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO integration_reads (token_id, at, method, path, query, status, records) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(read.token_id.to_string())
        .bind(micros(read.at))
        .bind(&read.method)
        .bind(&read.path)
        .bind(&read.query)
        .bind(i64::from(read.status))
        .bind(i64::try_from(read.records).unwrap_or(i64::MAX))
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn integration_reads(
        &self,
        query: IntegrationReadQuery,
    ) -> Result<Vec<IntegrationRead>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM integration_reads WHERE seq > ? \
             AND (? IS NULL OR token_id = ?) AND (? IS NULL OR at >= ?) \
             AND (? IS NULL OR at <= ?) ORDER BY seq LIMIT ?",
        )
        .bind(query.after)
        .bind(query.token_id.map(|t| t.to_string()))
        .bind(query.token_id.map(|t| t.to_string()))
        .bind(query.from.map(micros))
        .bind(query.from.map(micros))
        .bind(query.to.map(micros))
        .bind(query.to.map(micros))
        .bind(i64::from(query.limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(IntegrationRead {
                    seq: row.try_get("seq")?,
                    token_id: parse("integration_read", row.try_get::<&str, _>("token_id")?)?,
                    at: from_micros("integration_read", row.try_get("at")?)?,
                    method: row.try_get("method")?,
                    path: row.try_get("path")?,
                    query: row.try_get("query")?,
                    status: u16::try_from(row.try_get::<i64, _>("status")?).map_err(|e| {
                        StoreError::Corrupt {
                            what: "integration_read",
                            reason: format!("status: {e}"),
                        }
                    })?,
                    records: u64::try_from(row.try_get::<i64, _>("records")?).unwrap_or(0),
                })
            })
            .collect()
    }

    async fn alert_actions(&self, id: AlertId) -> Result<Vec<AlertAction>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM alerts WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(&mut *conn)
            .await?;
        if exists.is_none() {
            return Err(not_found("alert", id));
        }
        sqlx::query("SELECT * FROM alert_actions WHERE alert_id = ? ORDER BY seq")
            .bind(id.to_string())
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(action_from_row)
            .collect()
    }

    async fn alert_stats(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<AlertStats, StoreError> {
        let rows = sqlx::query(
            "SELECT a.kind, a.zone_id, a.severity, p.level, a.state, a.disposition, \
             a.repeat_of IS NOT NULL AS repeat, COUNT(*) AS count \
             FROM alerts a LEFT JOIN persons p ON p.id = a.person_id \
             WHERE a.raised_at >= ? AND a.raised_at < ? \
             GROUP BY a.kind, a.zone_id, a.severity, p.level, a.state, a.disposition, repeat",
        )
        .bind(micros(from))
        .bind(micros(to))
        .fetch_all(&self.pool)
        .await?;
        let counts = rows
            .iter()
            .map(|row| {
                Ok(AlertCount {
                    kind: row.try_get("kind")?,
                    zone_id: row
                        .try_get::<Option<&str>, _>("zone_id")?
                        .map(|z| parse("alert", z))
                        .transpose()?,
                    severity: row.try_get("severity")?,
                    level: row.try_get("level")?,
                    state: row.try_get("state")?,
                    disposition: row.try_get("disposition")?,
                    repeat: row.try_get("repeat")?,
                    count: u64::try_from(row.try_get::<i64, _>("count")?).unwrap_or(0),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(AlertStats::from_counts(from, to, counts))
    }

    async fn events(&self, query: EventQuery) -> Result<Vec<Event>, StoreError> {
        let sql = if query.alerts_only {
            "SELECT * FROM events WHERE seq > ? AND kind LIKE 'alert.%' ORDER BY seq LIMIT ?"
        } else {
            "SELECT * FROM events WHERE seq > ? ORDER BY seq LIMIT ?"
        };
        sqlx::query(sql)
            .bind(query.after)
            .bind(i64::from(query.limit))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(event_from_row)
            .collect()
    }

    async fn last_event_seq(&self) -> Result<i64, StoreError> {
        let seq: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM events")
            .fetch_one(&self.pool)
            .await?;
        Ok(seq.unwrap_or(0))
    }

    fn event_notices(&self) -> watch::Receiver<i64> {
        self.event_notices.subscribe()
    }

    async fn dispatch_cursor(&self, consumer: &str) -> Result<i64, StoreError> {
        // A new consumer starts at the end of the feed as it is now; writing that start in the
        // same statement that reads the end means no event can slip between the two.
        sqlx::query(
            "INSERT INTO dispatch_cursors (consumer, seq, updated_at) \
             SELECT ?, COALESCE(MAX(seq), 0), ? FROM events WHERE true \
             ON CONFLICT (consumer) DO NOTHING",
        )
        .bind(consumer)
        .bind(micros(now()))
        .execute(&self.writer)
        .await?;
        let seq: i64 = sqlx::query_scalar("SELECT seq FROM dispatch_cursors WHERE consumer = ?")
            .bind(consumer)
            .fetch_one(&self.pool)
            .await?;
        Ok(seq)
    }

    async fn set_dispatch_cursor(&self, consumer: &str, seq: i64) -> Result<(), StoreError> {
        let mut conn = self.writer.acquire().await?;
        advance_cursor(&mut conn, consumer, seq).await
    }

    async fn dead_letter(
        &self,
        webhook: &str,
        consumer: &str,
        seq: i64,
        attempts: u32,
        error: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.write_transaction().await?;
        sqlx::query(
            "INSERT INTO webhook_deliveries \
             (webhook, event_seq, state, attempts, last_error, dead_at) VALUES (?, ?, 'dead', ?, ?, ?) \
             ON CONFLICT (webhook, event_seq) DO UPDATE SET state = 'dead', \
             attempts = attempts + excluded.attempts, last_error = excluded.last_error, \
             dead_at = excluded.dead_at",
        )
        .bind(webhook)
        .bind(seq)
        .bind(i64::from(attempts))
        .bind(error)
        .bind(micros(now()))
        .execute(&mut *tx)
        .await?;
        advance_cursor(&mut tx, consumer, seq).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn webhook_deliveries(
        &self,
        webhook: &str,
        state: Option<DeliveryState>,
        after: i64,
        limit: u32,
    ) -> Result<Vec<WebhookDelivery>, StoreError> {
        sqlx::query(
            "SELECT d.*, e.* FROM webhook_deliveries d JOIN events e ON e.seq = d.event_seq \
             WHERE d.webhook = ? AND d.event_seq > ? AND (? IS NULL OR d.state = ?) \
             ORDER BY d.event_seq LIMIT ?",
        )
        .bind(webhook)
        .bind(after)
        .bind(state.map(|s| s.as_str()))
        .bind(state.map(|s| s.as_str()))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(delivery_from_row)
        .collect()
    }

    async fn request_redelivery(
        &self,
        webhook: &str,
        event_id: Option<Uuid>,
    ) -> Result<u64, StoreError> {
        let Some(event_id) = event_id else {
            let mut tx = self.write_transaction().await?;
            let done = sqlx::query(
                "UPDATE webhook_deliveries SET state = 'pending' \
                 WHERE webhook = ? AND state = 'dead'",
            )
            .bind(webhook)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if done > 0 {
                append_action(&mut tx, redelivery_action(webhook, None, done)).await?;
            }
            tx.commit().await?;
            return Ok(done);
        };
        let mut tx = self.write_transaction().await?;
        let found: Option<(i64, String)> = sqlx::query_as(
            "SELECT d.event_seq, d.state FROM webhook_deliveries d \
             JOIN events e ON e.seq = d.event_seq WHERE d.webhook = ? AND e.id = ?",
        )
        .bind(webhook)
        .bind(event_id.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        let (seq, state) = found.ok_or_else(|| not_found("webhook delivery", event_id))?;
        let state: DeliveryState = parse("webhook_delivery", &state)?;
        if state != DeliveryState::Dead {
            return Err(StoreError::Conflict(format!(
                "delivery {event_id} is {}, not dead",
                state.as_str()
            )));
        }
        sqlx::query(
            "UPDATE webhook_deliveries SET state = 'pending' WHERE webhook = ? AND event_seq = ?",
        )
        .bind(webhook)
        .bind(seq)
        .execute(&mut *tx)
        .await?;
        append_action(&mut tx, redelivery_action(webhook, Some(event_id), 1)).await?;
        tx.commit().await?;
        Ok(1)
    }

    async fn redelivery_done(
        &self,
        webhook: &str,
        seq: i64,
        outcome: Result<(), String>,
    ) -> Result<(), StoreError> {
        let at = micros(now());
        let query = match &outcome {
            Ok(()) => sqlx::query(
                "UPDATE webhook_deliveries SET state = 'delivered', attempts = attempts + 1, \
                 delivered_at = ? WHERE webhook = ? AND event_seq = ?",
            )
            .bind(at),
            Err(error) => sqlx::query(
                "UPDATE webhook_deliveries SET state = 'dead', attempts = attempts + 1, \
                 last_error = ?, dead_at = ? WHERE webhook = ? AND event_seq = ?",
            )
            .bind(error)
            .bind(at),
        };
        query.bind(webhook).bind(seq).execute(&self.writer).await?;
        Ok(())
    }

    async fn create_token(
        &self,
        record: &TokenRecord,
        secret_sha256: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.write_transaction().await?;
        sqlx::query(
            "INSERT INTO api_tokens (id, role, label, secret_sha256, created_at, expires_at, \
             revoked_at, last_used_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(record.id.to_string())
        .bind(record.role.as_str())
        .bind(&record.label)
        .bind(secret_sha256)
        .bind(micros(record.created_at))
        .bind(record.expires_at.map(micros))
        .bind(record.revoked_at.map(micros))
        .bind(record.last_used_at.map(micros))
        .execute(&mut *tx)
        .await?;
        append_action(&mut tx, token_action("token.create", record)).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn token_by_hash(&self, secret_sha256: &str) -> Result<Option<TokenRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM api_tokens WHERE secret_sha256 = ?")
            .bind(secret_sha256)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| token_from_row(&row)).transpose()
    }

    async fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM api_tokens ORDER BY created_at, id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(token_from_row).collect()
    }

    async fn revoke_token(&self, id: Uuid, at: DateTime<Utc>) -> Result<TokenRecord, StoreError> {
        let mut tx = self.write_transaction().await?;
        let row = sqlx::query(
            "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ? RETURNING *",
        )
        .bind(micros(at))
        .bind(id.to_string())
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| not_found("token", id))?;
        let record = token_from_row(&row)?;
        append_action(&mut tx, token_action("token.revoke", &record)).await?;
        tx.commit().await?;
        Ok(record)
    }

    async fn record_token_use(&self, id: Uuid, at: DateTime<Utc>) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE api_tokens SET last_used_at = MAX(COALESCE(last_used_at, 0), ?) WHERE id = ?",
        )
        .bind(micros(at))
        .bind(id.to_string())
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn token_count(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM api_tokens")
            .fetch_one(&self.pool)
            .await?;
        Ok(n as u64)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn record_action(&self, action: NewAction) -> Result<ActionRecord, StoreError> {
        let mut tx = self.write_transaction().await?;
        let record = append_action(&mut tx, action).await?;
        tx.commit().await?;
        Ok(record)
    }

    async fn chain_heads(&self) -> Result<Vec<ChainHead>, StoreError> {
        let rows: Vec<(String, i64, Vec<u8>)> =
            sqlx::query_as("SELECT chain, n, hash FROM audit_heads ORDER BY chain")
                .fetch_all(&self.pool)
                .await?;
        rows.into_iter()
            .map(|(chain, n, hash)| {
                Ok(ChainHead {
                    chain,
                    n,
                    hash: stored_hash("audit_head", &hash)?,
                })
            })
            .collect()
    }

    async fn position_devices(&self) -> Result<Vec<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT DISTINCT device_id FROM positions ORDER BY device_id")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    async fn chain_records(
        &self,
        chain_name: &str,
        after: i64,
        limit: u32,
    ) -> Result<Vec<ChainRecord>, StoreError> {
        let limit = i64::from(limit);
        if let Some(device) = chain_name.strip_prefix(chain::POSITIONS_CHAIN_PREFIX) {
            sqlx::query(
                "SELECT * FROM positions WHERE device_id = ? AND chain_n > ? \
                 ORDER BY chain_n, id LIMIT ?",
            )
            .bind(device)
            .bind(after)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(position_record)
            .collect()
        } else if chain_name == chain::ALERTS_CHAIN {
            sqlx::query("SELECT * FROM alerts WHERE chain_n > ? ORDER BY chain_n, seq LIMIT ?")
                .bind(after)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(alert_record)
                .collect()
        } else if chain_name == chain::ACTIONS_CHAIN {
            sqlx::query("SELECT * FROM audit_actions WHERE chain_n > ? ORDER BY chain_n LIMIT ?")
                .bind(after)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(action_record)
                .collect()
        } else {
            Err(not_found("chain", chain_name))
        }
    }

    async fn chain_hash(&self, chain_name: &str, n: i64) -> Result<Option<Hash>, StoreError> {
        let hash: Option<Option<Vec<u8>>> =
            if let Some(device) = chain_name.strip_prefix(chain::POSITIONS_CHAIN_PREFIX) {
                sqlx::query_scalar(
                    "SELECT hash FROM positions WHERE device_id = ? AND chain_n = ? LIMIT 1",
                )
                .bind(device)
                .bind(n)
                .fetch_optional(&self.pool)
                .await?
            } else if chain_name == chain::ALERTS_CHAIN {
                sqlx::query_scalar("SELECT hash FROM alerts WHERE chain_n = ? LIMIT 1")
                    .bind(n)
                    .fetch_optional(&self.pool)
                    .await?
            } else if chain_name == chain::ACTIONS_CHAIN {
                sqlx::query_scalar("SELECT hash FROM audit_actions WHERE chain_n = ?")
                    .bind(n)
                    .fetch_optional(&self.pool)
                    .await?
            } else {
                return Err(not_found("chain", chain_name));
            };
        Ok(hash.flatten().as_deref().and_then(chain::hash_of))
    }

    async fn unchained(&self) -> Result<(u64, Option<Unchained>), StoreError> {
        let legacy: i64 = sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM positions WHERE chain_n IS NULL AND id <= \
                    (SELECT last_id FROM audit_legacy WHERE tbl = 'positions')) + \
                    (SELECT COUNT(*) FROM alerts WHERE chain_n IS NULL AND seq <= \
                    (SELECT last_id FROM audit_legacy WHERE tbl = 'alerts'))",
        )
        .fetch_one(&self.pool)
        .await?;
        let position: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM positions WHERE (chain_n IS NULL OR hash IS NULL) AND id > \
             (SELECT last_id FROM audit_legacy WHERE tbl = 'positions') ORDER BY id LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        let foreign = match position {
            Some(id) => Some(Unchained {
                table: "positions",
                id: id.to_string(),
            }),
            None => sqlx::query_scalar::<_, String>(
                "SELECT id FROM alerts WHERE (chain_n IS NULL OR hash IS NULL) AND seq > \
                 (SELECT last_id FROM audit_legacy WHERE tbl = 'alerts') ORDER BY seq LIMIT 1",
            )
            .fetch_optional(&self.pool)
            .await?
            .map(|id| Unchained {
                table: "alerts",
                id,
            }),
        };
        Ok((legacy as u64, foreign))
    }

    async fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
        sqlx::query("SELECT * FROM audit_checkpoints ORDER BY chain")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(checkpoint_from_row)
            .collect()
    }

    async fn person_records(
        &self,
        table: ChainTable,
        person: PersonId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        after: i64,
        limit: u32,
    ) -> Result<Vec<ChainRecord>, StoreError> {
        let (sql, record): (&str, fn(&SqliteRow) -> Result<ChainRecord, StoreError>) = match table {
            ChainTable::Positions => (
                "SELECT p.* FROM person_devices d \
                 JOIN positions p ON p.device_id = d.device_id AND p.time >= ?2 AND p.time <= ?3 \
                 WHERE d.person_id = ?1 AND p.person_id = ?1 AND p.id > ?4 ORDER BY p.id LIMIT ?5",
                position_record,
            ),
            ChainTable::Alerts => (
                "SELECT * FROM alerts WHERE person_id = ? AND time >= ? AND time <= ? \
                 AND seq > ? ORDER BY seq LIMIT ?",
                alert_record,
            ),
            ChainTable::Actions => (
                "SELECT * FROM audit_actions WHERE person_id = ? AND time >= ? AND time <= ? \
                 AND chain_n > ? ORDER BY chain_n LIMIT ?",
                action_record,
            ),
        };
        sqlx::query(sql)
            .bind(person.to_string())
            .bind(micros(from))
            .bind(micros(to))
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(record)
            .collect()
    }

    async fn drop_positions_before(
        &self,
        before: DateTime<Utc>,
        key: &[u8],
    ) -> Result<RetentionOutcome, StoreError> {
        let before = truncate_micros(before);
        let cutoff = micros(before);
        let mut outcome = RetentionOutcome::default();
        let devices: Vec<String> =
            sqlx::query_scalar("SELECT DISTINCT device_id FROM positions WHERE time < ?")
                .bind(cutoff)
                .fetch_all(&self.pool)
                .await?;
        for device in devices {
            let chain_name = chain::positions_chain(&device);
            // The prefix of the chain older than the cutoff: up to the first record kept.
            let mut tx = self.write_transaction().await?;
            let (first_kept, last_old): (Option<i64>, Option<i64>) = sqlx::query_as(
                "SELECT (SELECT MIN(chain_n) FROM positions \
                         WHERE device_id = ?1 AND chain_n > 0 AND time >= ?2), \
                        (SELECT MAX(chain_n) FROM positions \
                         WHERE device_id = ?1 AND chain_n > 0 AND time < ?2)",
            )
            .bind(&device)
            .bind(cutoff)
            .fetch_one(&mut *tx)
            .await?;
            let through = match (first_kept, last_old) {
                (_, None) => None,
                (Some(first), Some(_)) => Some(first - 1),
                (None, Some(last)) => Some(last),
            };
            let checkpointed: i64 = sqlx::query_scalar(
                "SELECT COALESCE(MAX(n), 0) FROM audit_checkpoints WHERE chain = ?",
            )
            .bind(&chain_name)
            .fetch_one(&mut *tx)
            .await?;
            let through = through.filter(|&n| n > checkpointed);
            if let Some(n) = through {
                let hash: Vec<u8> = sqlx::query_scalar(
                    "SELECT hash FROM positions WHERE device_id = ? AND chain_n = ? LIMIT 1",
                )
                .bind(&device)
                .bind(n)
                .fetch_optional(&mut *tx)
                .await?
                .flatten()
                .ok_or_else(|| StoreError::Corrupt {
                    what: "position",
                    reason: format!(
                        "record {n} of chain {chain_name} is missing; run `ewall audit verify`"
                    ),
                })?;
                let mut checkpoint = Checkpoint {
                    chain: chain_name.clone(),
                    n,
                    hash: stored_hash("position", &hash)?,
                    before,
                    at: now(),
                    signature: String::new(),
                };
                checkpoint.signature = chain::sign_checkpoint(key, &checkpoint);
                sqlx::query(
                    "INSERT INTO audit_checkpoints (chain, n, hash, before, at, signature) \
                     VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (chain) DO UPDATE SET n = excluded.n, \
                     hash = excluded.hash, before = excluded.before, at = excluded.at, \
                     signature = excluded.signature",
                )
                .bind(&checkpoint.chain)
                .bind(checkpoint.n)
                .bind(checkpoint.hash.to_vec())
                .bind(micros(checkpoint.before))
                .bind(micros(checkpoint.at))
                .bind(&checkpoint.signature)
                .execute(&mut *tx)
                .await?;
                outcome.checkpoints += 1;
            }
            // The checkpoint commits with the first batch; a run cut short leaves records the
            // checkpoint already covers, which verification skips and the next run deletes.
            let through = through.unwrap_or(checkpointed);
            loop {
                let done = sqlx::query(
                    "DELETE FROM positions WHERE id IN (SELECT id FROM positions \
                     WHERE device_id = ?1 AND ((chain_n BETWEEN 1 AND ?2) OR (chain_n IS NULL \
                       AND time < ?3 AND id <= (SELECT last_id FROM audit_legacy \
                                                WHERE tbl = 'positions'))) LIMIT ?4)",
                )
                .bind(&device)
                .bind(through)
                .bind(cutoff)
                .bind(RETENTION_BATCH)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                outcome.positions_dropped += done.rows_affected();
                if done.rows_affected() < RETENTION_BATCH as u64 {
                    break;
                }
                tx = self.write_transaction().await?;
            }
        }
        Ok(outcome)
    }
}

fn token_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<TokenRecord, StoreError> {
    let time = |column: &str| -> Result<Option<DateTime<Utc>>, StoreError> {
        row.try_get::<Option<i64>, _>(column)?
            .map(|v| from_micros("api_token", v))
            .transpose()
    };
    Ok(TokenRecord {
        id: parse::<Uuid>("api_token", row.try_get::<&str, _>("id")?)?,
        role: parse::<Role>("api_token", row.try_get::<&str, _>("role")?)?,
        label: row.try_get("label")?,
        created_at: from_micros("api_token", row.try_get("created_at")?)?,
        expires_at: time("expires_at")?,
        revoked_at: time("revoked_at")?,
        last_used_at: time("last_used_at")?,
    })
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::model::{
        AlertKind, AlertState, Crs, Disposition, Severity, SupervisionLevel, ZoneKind,
    };
    use crate::store::AlertStep;

    async fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = SqliteStore::open(&url).await.unwrap();
        store.migrate().await.unwrap();
        (dir, store)
    }

    async fn person(store: &SqliteStore) -> Person {
        store
            .create_person(NewPerson {
                name: "Li Wei".into(),
                level: SupervisionLevel::Strict,
                timezone: "Asia/Shanghai".into(),
            })
            .await
            .unwrap()
    }

    fn fix(person: PersonId, second: u32) -> Fix {
        Fix {
            device_id: "864717003283581".into(),
            person_id: person,
            time: Utc.with_ymd_and_hms(2026, 3, 1, 8, 0, second).unwrap(),
            received_at: Utc.with_ymd_and_hms(2026, 3, 1, 8, 0, 59).unwrap(),
            lat: 25.587_123_4,
            lon: 112.314_567_8,
            valid: true,
            accuracy_m: Some(8.5),
            speed_kmh: Some(4.0),
            course: Some(270.0),
            altitude_m: None,
            satellites: Some(9),
            hdop: None,
            source: PositionSource::Gps,
            battery_pct: Some(80),
            archived: false,
            integrity_mismatch: second == 2,
            protocol: "gt06".into(),
            wifi_bssids: Vec::new(),
            clock_skew: second == 1,
            implausible: (second == 2).then(|| "speed_kmh inf".to_owned()),
            raw: Default::default(),
        }
    }

    #[tokio::test]
    async fn the_log_is_copied_into_the_database_file_by_the_checkpoint_task() {
        let (dir, store) = store().await;
        let p = person(&store).await;
        let file = dir.path().join("t.db");
        let before = std::fs::metadata(&file).unwrap().len();
        // In WAL mode only a checkpoint writes the database file, and the write connection
        // never checkpoints: the file grows only if the task copies the log into it.
        let mut fixes = Vec::new();
        for n in 0..2_000 {
            let mut f = fix(p.id, 3);
            f.time += chrono::Duration::seconds(n);
            fixes.push(f);
        }
        store.commit(&fixes, Vec::new()).await.unwrap();
        let mut grown = false;
        for _ in 0..200 {
            if std::fs::metadata(&file).unwrap().len() > before {
                grown = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(grown, "the database file is still {before} bytes");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_log_starts_over_while_commits_go_on() {
        use std::io::Read;
        let (dir, store) = store().await;
        let p = person(&store).await;
        // The log's header counts its restarts (bytes 12..16, the checkpoint sequence).
        let wal = dir.path().join("t.db-wal");
        let restarts = || {
            let mut header = [0u8; 16];
            std::fs::File::open(&wal)
                .unwrap()
                .read_exact(&mut header)
                .unwrap();
            u32::from_be_bytes(header[12..16].try_into().unwrap())
        };
        let first = restarts();
        let started = std::time::Instant::now();
        let mut second = 0;
        // Commits back to back, as under steady load: a log only checkpointed beside them
        // never starts over.
        while restarts() == first {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the log did not start over in {second} fixes"
            );
            let fixes: Vec<Fix> = (0..50)
                .map(|_| {
                    second += 1;
                    let mut f = fix(p.id, 3);
                    f.time += chrono::Duration::seconds(second);
                    f
                })
                .collect();
            store.commit(&fixes, Vec::new()).await.unwrap();
        }
    }

    fn alert(person: PersonId, kind: AlertKind) -> Alert {
        Alert {
            id: new_id(),
            seq: 0,
            kind,
            person_id: person,
            device_id: Some("864717003283581".into()),
            zone_id: None,
            severity: Severity::High,
            time: Utc.with_ymd_and_hms(2026, 3, 1, 8, 0, 1).unwrap(),
            raised_at: Utc::now(),
            position: Some(AlertPosition {
                lat: 25.5,
                lon: 112.3,
                accuracy_m: Some(10.0),
            }),
            state: AlertState::Open,
            late: false,
            note: None,
            disposition: None,
            acknowledged_at: None,
            verified_at: None,
            disposed_at: None,
            closed_at: None,
            repeat_of: None,
            border: None,
        }
    }

    fn request(step: AlertStep, note: Option<&str>) -> AlertActionRequest {
        AlertActionRequest {
            step,
            actor: Actor {
                token_id: Some(new_id()),
                label: Some("night shift".into()),
            },
            note: note.map(Into::into),
            at: Utc::now(),
        }
    }

    #[tokio::test]
    async fn the_newest_fix_time_ignores_skewed_and_implausible_fixes() {
        let (_dir, store) = store().await;
        let p = person(&store).await;
        // Second 1 is flagged clock_skew, second 2 implausible (see `fix`).
        let fixes = [fix(p.id, 0), fix(p.id, 1), fix(p.id, 2)];
        store.commit(&fixes, Vec::new()).await.unwrap();
        let newest = store.newest_fix_times().await.unwrap();
        assert_eq!(newest.len(), 1);
        assert_eq!(newest[0].time, fixes[0].time);
    }

    #[tokio::test]
    async fn positions_and_alerts_commit_together_with_increasing_seq() {
        let (_dir, store) = store().await;
        let p = person(&store).await;
        let fixes: Vec<Fix> = (0..5).map(|s| fix(p.id, s)).collect();
        let stored = store
            .commit(
                &fixes,
                vec![
                    alert(p.id, AlertKind::ZoneExit),
                    alert(p.id, AlertKind::Sos),
                ],
            )
            .await
            .unwrap();
        let more = store
            .commit(&fixes[..1], vec![alert(p.id, AlertKind::Returned)])
            .await
            .unwrap();
        let seqs: Vec<i64> = stored.iter().chain(&more).map(|a| a.seq).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");

        let from = Utc.with_ymd_and_hms(2026, 3, 1, 8, 0, 1).unwrap();
        let to = Utc.with_ymd_and_hms(2026, 3, 1, 8, 0, 3).unwrap();
        let track = store.track(p.id, from, to, 100).await.unwrap();
        assert_eq!(track.len(), 3);
        assert_eq!(track[0], fixes[1], "a stored fix reads back exactly");
        assert!(track[1].integrity_mismatch);

        let page = store
            .alerts(AlertQuery {
                after: seqs[0],
                person_id: Some(p.id),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(page.len(), 2);
        assert_eq!(page[0], stored[1], "an alert reads back exactly");
    }

    #[tokio::test]
    async fn open_breaches_are_the_unreturned_live_ones() {
        let (_dir, store) = store().await;
        let p = person(&store).await;
        let zoned = |kind, zone: ZoneId, late: bool| Alert {
            zone_id: Some(zone),
            late,
            ..alert(p.id, kind)
        };
        let (closed, open, late_only) = (new_id(), new_id(), new_id());
        store
            .commit(
                &[],
                vec![
                    zoned(AlertKind::ZoneExit, closed, false),
                    zoned(AlertKind::Returned, closed, false),
                    zoned(AlertKind::ZoneEnter, open, false),
                    zoned(AlertKind::Returned, open, true),
                    zoned(AlertKind::ZoneExit, late_only, true),
                ],
            )
            .await
            .unwrap();
        let open_breaches = store.open_breaches().await.unwrap();
        assert_eq!(open_breaches.len(), 1, "{open_breaches:?}");
        assert_eq!(open_breaches[0].zone_id, open);
        assert_eq!(open_breaches[0].kind, ZoneKind::Exclusion);
    }

    #[tokio::test]
    async fn a_batch_larger_than_one_insert_is_stored_whole_and_in_order() {
        let (_dir, store) = store().await;
        let p = person(&store).await;
        let start = Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap();
        let fixes: Vec<Fix> = (0..(2 * POSITIONS_PER_INSERT + 50) as i64)
            .map(|i| Fix {
                time: start + chrono::Duration::seconds(i),
                ..fix(p.id, 0)
            })
            .collect();
        store.commit(&fixes, Vec::new()).await.unwrap();
        let track = store
            .track(p.id, start, start + chrono::Duration::days(1), 10_000)
            .await
            .unwrap();
        assert_eq!(track, fixes);
    }

    #[tokio::test]
    async fn alert_workflow_moves_forward_only() {
        let (_dir, store) = store().await;
        let p = person(&store).await;
        let a = store
            .commit(&[], vec![alert(p.id, AlertKind::ZoneExit)])
            .await
            .unwrap()[0]
            .clone();
        let acked = store
            .record_alert_action(a.id, request(AlertStep::Acknowledge, Some("called him")))
            .await
            .unwrap();
        assert_eq!(acked.state, AlertState::Acknowledged);
        assert_eq!(acked.note.as_deref(), Some("called him"));
        assert!(acked.acknowledged_at.is_some());
        assert_eq!(store.alert(a.id).await.unwrap(), acked);
        for skip in [AlertStep::Acknowledge, AlertStep::Close] {
            assert!(matches!(
                store.record_alert_action(a.id, request(skip, None)).await,
                Err(StoreError::Conflict(_))
            ));
        }
        let closed = store
            .record_alert_action(
                a.id,
                request(AlertStep::Resolve(Some(Disposition::Warned)), None),
            )
            .await
            .unwrap();
        assert_eq!(closed.state, AlertState::Closed);
        assert_eq!(closed.note.as_deref(), Some("called him"));
        let actions = store.alert_actions(a.id).await.unwrap();
        assert_eq!(actions.len(), 4);
        assert!(matches!(
            store
                .record_alert_action(new_id(), request(AlertStep::Acknowledge, None))
                .await,
            Err(StoreError::NotFound { .. })
        ));
    }

    #[tokio::test]
    async fn references_and_conflicts_are_reported() {
        let (_dir, store) = store().await;
        let p = person(&store).await;
        assert!(matches!(
            store.create_device("123", new_id()).await,
            Err(StoreError::UnknownReference(_))
        ));
        store.create_device("123", p.id).await.unwrap();
        assert!(matches!(
            store.create_device("123", p.id).await,
            Err(StoreError::Conflict(_))
        ));
        assert!(matches!(
            store.delete_person(p.id).await,
            Err(StoreError::Conflict(_))
        ));

        let zone = ZoneRecord {
            id: new_id(),
            name: "home".into(),
            kind: ZoneKind::Inclusion,
            source_crs: Crs::Gcj02,
            radius_m: Some(200.0),
            geometry: r#"{"type":"Point","coordinates":[112.3,25.5]}"#.into(),
            wifi: ZoneWifi {
                bssids: vec!["aa:bb:cc:dd:ee:ff".into()],
                learn_until: Some(Utc::now().trunc_subsecs(6)),
            },
            created_at: Utc.timestamp_micros(1_700_000_000_000_000).unwrap(),
            scope: Default::default(),
            persons: Vec::new(),
            schedule: None,
        };
        store.create_zone(&zone).await.unwrap();
        assert_eq!(store.zone(zone.id).await.unwrap(), zone);
        let missing = new_id();
        let err = store
            .set_person_zones(p.id, &[zone.id, missing])
            .await
            .unwrap_err();
        assert!(err.to_string().contains(&missing.to_string()), "{err}");
        store.set_person_zones(p.id, &[zone.id]).await.unwrap();
        assert_eq!(store.person_zones(p.id).await.unwrap(), vec![zone.id]);
        assert_eq!(store.assignments().await.unwrap(), vec![(p.id, zone.id)]);
        assert!(matches!(
            store.delete_zone(zone.id).await,
            Err(StoreError::Conflict(_))
        ));
        store.set_person_zones(p.id, &[]).await.unwrap();
        store.delete_zone(zone.id).await.unwrap();

        store.delete_device("123").await.unwrap();
        store.delete_person(p.id).await.unwrap();
        assert!(matches!(
            store.person(p.id).await,
            Err(StoreError::NotFound { .. })
        ));
    }

    fn feed(after: i64) -> EventQuery {
        EventQuery {
            after,
            limit: 1000,
            alerts_only: false,
        }
    }

    #[tokio::test]
    async fn a_failed_state_change_appends_nothing() {
        let (_dir, store) = store().await;
        let p = person(&store).await;
        let a = store
            .commit(&[], vec![alert(p.id, AlertKind::ZoneExit)])
            .await
            .unwrap()
            .remove(0);
        store
            .record_alert_action(a.id, request(AlertStep::Acknowledge, None))
            .await
            .unwrap();
        let before = store.last_event_seq().await.unwrap();
        assert!(store
            .record_alert_action(a.id, request(AlertStep::Close, None))
            .await
            .is_err());
        assert_eq!(store.last_event_seq().await.unwrap(), before);
    }

    #[tokio::test]
    async fn alerts_from_before_the_feed_get_their_raised_event() {
        let (_dir, store) = store().await;
        let p = person(&store).await;
        let a = store
            .commit(&[], vec![alert(p.id, AlertKind::Sos)])
            .await
            .unwrap()
            .remove(0);
        // What migration 0004 leaves for an alert committed before it ran.
        sqlx::query("UPDATE events SET data = '' WHERE seq = ?")
            .bind(a.seq)
            .execute(&store.writer)
            .await
            .unwrap();
        store.migrate().await.unwrap();
        let events = store.events(feed(0)).await.unwrap();
        let raised = events.iter().find(|e| e.seq == a.seq).unwrap();
        assert_eq!(raised.data, serde_json::to_value(&a).unwrap());
    }

    /// Brings `store`'s schema up to the migration before `version` only.
    async fn migrate_before(store: &SqliteStore, version: i64) {
        let mut before = sqlx::migrate!("./migrations/sqlite");
        before.migrations = before
            .migrations
            .iter()
            .filter(|m| m.version < version)
            .cloned()
            .collect::<Vec<_>>()
            .into();
        before.run(&store.writer).await.unwrap();
    }

    #[tokio::test]
    async fn positions_stored_before_person_devices_are_still_found_by_person() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = SqliteStore::open(&url).await.unwrap();
        // The schema before migration 0022, with a wristband that two persons wore in turn.
        migrate_before(&store, 22).await;
        let (first, second) = (new_id(), new_id());
        for (person, time) in [(first, 1_000_i64), (first, 2_000), (second, 3_000)] {
            sqlx::query(
                "INSERT INTO positions (device_id, person_id, time, received_at, lat, lon, \
                 valid, source, archived, integrity_mismatch, protocol) \
                 VALUES ('864717003283581', ?, ?, ?, 25.5, 112.3, 1, 'gps', 0, 0, 'gt06')",
            )
            .bind(person.to_string())
            .bind(time)
            .bind(time)
            .execute(&store.writer)
            .await
            .unwrap();
        }
        store.migrate().await.unwrap();

        let (from, to) = (
            from_micros("t", 0).unwrap(),
            from_micros("t", 10_000).unwrap(),
        );
        let times = |track: Vec<Fix>| track.iter().map(|f| micros(f.time)).collect::<Vec<_>>();
        assert_eq!(
            times(store.track(first, from, to, 10).await.unwrap()),
            [1_000, 2_000]
        );
        assert_eq!(
            times(store.track(second, from, to, 10).await.unwrap()),
            [3_000]
        );
    }

    #[tokio::test]
    async fn alerts_handled_before_the_chain_are_closed_with_their_steps_on_record() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = SqliteStore::open(&url).await.unwrap();
        // The schema as it was before migration 0010, with an alert resolved and one
        // acknowledged the old way.
        migrate_before(&store, 10).await;
        let person = new_id().to_string();
        let (resolved, acked) = (new_id(), new_id());
        for (seq, id, state, note, acked_at, resolved_at) in [
            (
                1,
                resolved,
                "resolved",
                "back home",
                1_000_i64,
                Some(2_000_i64),
            ),
            (2, acked, "acknowledged", "calling", 3_000, None),
        ] {
            sqlx::query(
                "INSERT INTO alerts (seq, id, kind, person_id, severity, time, raised_at, state, \
                 late, note, acknowledged_at, resolved_at) \
                 VALUES (?, ?, 'zone_exit', ?, 'high', 0, 0, ?, 0, ?, ?, ?)",
            )
            .bind(seq)
            .bind(id.to_string())
            .bind(&person)
            .bind(state)
            .bind(note)
            .bind(acked_at)
            .bind(resolved_at)
            .execute(&store.writer)
            .await
            .unwrap();
        }
        store.migrate().await.unwrap();

        let closed = store.alert(resolved).await.unwrap();
        assert_eq!(closed.state, AlertState::Closed);
        assert_eq!(closed.closed_at, Some(from_micros("t", 2_000).unwrap()));
        assert_eq!(closed.disposition, None);
        let steps: Vec<(AlertState, Option<String>, Option<Uuid>)> = store
            .alert_actions(resolved)
            .await
            .unwrap()
            .into_iter()
            .map(|a| (a.state, a.note, a.actor.token_id))
            .collect();
        assert_eq!(
            steps,
            [
                (AlertState::Acknowledged, None, None),
                (AlertState::Closed, Some("back home".into()), None)
            ]
        );
        let still = store.alert_actions(acked).await.unwrap();
        assert_eq!(still.len(), 1);
        assert_eq!(still[0].note.as_deref(), Some("calling"));
        assert_eq!(
            store.alert(acked).await.unwrap().state,
            AlertState::Acknowledged
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn read_then_write_changes_survive_concurrent_writes() {
        let (_dir, store) = store().await;
        let p = person(&store).await;
        let token = TokenRecord {
            id: new_id(),
            role: Role::Operator,
            label: None,
            created_at: Utc::now(),
            expires_at: None,
            revoked_at: None,
            last_used_at: None,
        };
        store.create_token(&token, "h").await.unwrap();
        // Each assignment reads (does the person exist?) and then writes; other connections
        // write at the same time, as the batch writer and last-use updates do.
        let writer = {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..400 {
                    let at = Utc.timestamp_opt(1_700_000_000 + i, 0).unwrap();
                    store.record_token_use(token.id, at).await.unwrap();
                }
            })
        };
        for _ in 0..100 {
            store.set_person_zones(p.id, &[]).await.unwrap();
        }
        writer.await.unwrap();
    }
}

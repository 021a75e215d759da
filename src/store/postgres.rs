//! The production store: PostgreSQL through a sqlx connection pool, with native types
//! (`timestamptz`, `uuid`, `double precision`) and the schema of `migrations/postgres/`.
//!
//! Positions go in with one `INSERT ... SELECT FROM UNNEST(...)` per batch (one round trip and
//! one statement whatever the batch size) into a table partitioned by fix time, one partition per
//! UTC day; partitions are created ahead of the days being written (see
//! [`PgStore::ensure_partitions`]). A resent fix hits the natural key
//! `(device_id, time, lat, lon)` and is skipped, so a device that resends after a lost
//! acknowledgement is acknowledged again without a second row.
//!
//! Alert `seq` comes from a one-row counter per feed, taken with `UPDATE ... RETURNING` inside the
//! writing transaction: the row lock is held to commit, so seq order is commit order and a
//! consumer paging `after=` never skips an alert that becomes visible later.

use std::collections::{BTreeSet, HashMap};
use std::str::FromStr;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Days, NaiveDate, SubsecRound, Utc};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{PgConnection, PgPool, Row};
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
    OpenBreach, PersonPatch, Registration, Role, Store, StoreConfig, StoreError, TokenRecord,
    WebhookDelivery, ZoneRecord,
};
use crate::model::{
    new_id, Actor, Alert, AlertAction, AlertId, AlertPosition, CommandId, CommandStatus, Device,
    DeviceCommand, DeviceHeard, Event, EventKind, Fix, Person, PersonId, PositionSource, ZoneId,
    ZoneKind, ZoneWifi,
};

/// The feed counter row events (and so alerts, whose `seq` is their raised event's) take their
/// `seq` from.
const EVENT_FEED: &str = "events";

/// How far back from today a fix's day still gets its own partition when a batch brings it (a
/// device's blind-area backlog). Older fixes, and fixes dated in the future beyond tomorrow (a
/// wrong device clock), go to `positions_default`, where they stay queryable.
const PARTITION_BACKLOG_DAYS: u64 = 62;

/// A store in a PostgreSQL database.
#[derive(Debug)]
pub struct PgStore {
    pub(crate) pool: PgPool,
    /// Days known to have their own positions partition, so a batch asks the database only
    /// about days it has not seen yet.
    partitioned_days: Mutex<BTreeSet<NaiveDate>>,
    /// The newest event `seq` committed through this store, for [`Store::event_notices`].
    event_notices: watch::Sender<i64>,
}

impl PgStore {
    /// Connects to the database named by a `postgres://` URL with the pool size and timeouts
    /// of `config`. Nothing is created or migrated.
    ///
    /// # Errors
    /// [`StoreError::Database`] for a malformed URL or when no connection can be made.
    pub async fn open(url: &str, config: &StoreConfig) -> Result<Self, StoreError> {
        let statement_timeout = config.statement_timeout.as_millis().to_string();
        let options = PgConnectOptions::from_str(url)?
            .application_name("ewall")
            // Every session works in UTC and no statement runs away with a connection.
            .options([
                ("statement_timeout", statement_timeout.as_str()),
                ("TimeZone", "UTC"),
            ]);
        let pool = PgPoolOptions::new()
            .max_connections(config.pool_max)
            .acquire_timeout(config.acquire_timeout)
            .connect_with(options)
            .await?;
        Ok(PgStore {
            pool,
            partitioned_days: Mutex::new(BTreeSet::new()),
            event_notices: watch::Sender::new(0),
        })
    }

    /// Makes sure every day in `days` has its own positions partition, creating what is missing
    /// (one call to `ewall_ensure_position_partitions` per run of consecutive days).
    ///
    /// # Errors
    /// [`StoreError::Database`] when the partitions cannot be created.
    pub async fn ensure_partitions(&self, days: &BTreeSet<NaiveDate>) -> Result<(), StoreError> {
        let missing: Vec<NaiveDate> = {
            let known = self.lock_days();
            days.iter()
                .filter(|d| !known.contains(d))
                .copied()
                .collect()
        };
        for (first, last) in consecutive_runs(&missing) {
            sqlx::query("SELECT ewall_ensure_position_partitions($1, $2)")
                .bind(first)
                .bind(last)
                .execute(&self.pool)
                .await?;
        }
        self.lock_days().extend(missing);
        Ok(())
    }

    /// Tells feed readers in this process that events up to `seq` are committed.
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
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query(
            "SELECT a.* FROM events e JOIN alerts a ON a.seq = e.seq \
             WHERE e.kind = 'alert.raised' AND e.data = ''",
        )
        .fetch_all(&mut *tx)
        .await?;
        for row in &rows {
            let alert = alert_from_row(row)?;
            sqlx::query("UPDATE events SET data = $1 WHERE seq = $2")
                .bind(to_json(&alert)?)
                .bind(alert.seq)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    fn lock_days(&self) -> std::sync::MutexGuard<'_, BTreeSet<NaiveDate>> {
        // The set is only ever extended, so a panic while it was held cannot leave it wrong.
        self.partitioned_days
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The days a batch needs partitions for: today and tomorrow always (so a day's partition
    /// exists before its first fix), and each fix's day within the backlog window.
    fn days_for(fixes: &[Fix], today: NaiveDate) -> BTreeSet<NaiveDate> {
        let tomorrow = today + Days::new(1);
        let oldest = today - Days::new(PARTITION_BACKLOG_DAYS);
        let mut days: BTreeSet<NaiveDate> = [today, tomorrow].into();
        days.extend(
            fixes
                .iter()
                .map(|f| f.time.date_naive())
                .filter(|d| (oldest..=tomorrow).contains(d)),
        );
        days
    }
}

/// Splits sorted days into runs of consecutive days, as (first, last) pairs.
fn consecutive_runs(days: &[NaiveDate]) -> Vec<(NaiveDate, NaiveDate)> {
    let mut runs: Vec<(NaiveDate, NaiveDate)> = Vec::new();
    for &day in days {
        match runs.last_mut() {
            Some((_, last)) if *last + Days::new(1) == day => *last = day,
            _ => runs.push((day, day)),
        }
    }
    runs
}

/// The current time at the precision the store keeps (microseconds), so what a create returns
/// equals what a later read gives.
fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
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

fn small(what: &'static str, column: &str, v: Option<i16>) -> Result<Option<u8>, StoreError> {
    v.map(|v| {
        u8::try_from(v).map_err(|_| StoreError::Corrupt {
            what,
            reason: format!("{column} {v} out of range"),
        })
    })
    .transpose()
}

fn person_from_row(row: &PgRow) -> Result<Person, StoreError> {
    Ok(Person {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        level: parse("person", row.try_get::<&str, _>("level")?)?,
        timezone: row.try_get("timezone")?,
        created_at: row.try_get("created_at")?,
    })
}

fn device_from_row(row: &PgRow) -> Result<Device, StoreError> {
    Ok(Device {
        imei: row.try_get("imei")?,
        person_id: row.try_get("person_id")?,
        created_at: row.try_get("created_at")?,
        model: row.try_get("model")?,
        protocol: row.try_get("protocol")?,
    })
}

/// The persons each zone is assigned to.
async fn zone_persons(
    pool: &PgPool,
    zone: Option<ZoneId>,
) -> Result<HashMap<ZoneId, Vec<PersonId>>, StoreError> {
    let rows: Vec<(Uuid, Uuid)> = sqlx::query_as(
        "SELECT zone_id, person_id FROM person_zones \
         WHERE $1::uuid IS NULL OR zone_id = $1 ORDER BY zone_id, person_id",
    )
    .bind(zone)
    .fetch_all(pool)
    .await?;
    let mut persons: HashMap<ZoneId, Vec<PersonId>> = HashMap::new();
    for (zone, person) in rows {
        persons.entry(zone).or_default().push(person);
    }
    Ok(persons)
}

fn zone_from_row(row: &PgRow) -> Result<ZoneRecord, StoreError> {
    Ok(ZoneRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        kind: parse("zone", row.try_get::<&str, _>("kind")?)?,
        source_crs: parse("zone", row.try_get::<&str, _>("source_crs")?)?,
        radius_m: row.try_get("radius_m")?,
        geometry: row.try_get("geometry")?,
        wifi: ZoneWifi {
            bssids: row.try_get("wifi")?,
            learn_until: row.try_get("wifi_learn_until")?,
        },
        scope: super::parse_scope(row.try_get::<&str, _>("scope")?)?,
        // Filled from the assignments by the caller.
        persons: Vec::new(),
        schedule: super::parse_schedule(row.try_get::<Option<&str>, _>("schedule")?)?,
        created_at: row.try_get("created_at")?,
    })
}

fn source_name(source: PositionSource) -> &'static str {
    match source {
        PositionSource::Gps => "gps",
        PositionSource::Lbs => "lbs",
        PositionSource::Wifi => "wifi",
    }
}

fn fix_from_row(row: &PgRow) -> Result<Fix, StoreError> {
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
        person_id: row.try_get("person_id")?,
        time: row.try_get("time")?,
        received_at: row.try_get("received_at")?,
        lat: row.try_get("lat")?,
        lon: row.try_get("lon")?,
        valid: row.try_get("valid")?,
        accuracy_m: row.try_get("accuracy_m")?,
        speed_kmh: row.try_get("speed_kmh")?,
        course: row.try_get("course")?,
        altitude_m: row.try_get("altitude_m")?,
        satellites: small("position", "satellites", row.try_get("satellites")?)?,
        hdop: row.try_get("hdop")?,
        source,
        battery_pct: small("position", "battery_pct", row.try_get("battery_pct")?)?,
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

fn alert_from_row(row: &PgRow) -> Result<Alert, StoreError> {
    let lat: Option<f64> = row.try_get("lat")?;
    let lon: Option<f64> = row.try_get("lon")?;
    Ok(Alert {
        id: row.try_get("id")?,
        seq: row.try_get("seq")?,
        kind: parse("alert", row.try_get::<&str, _>("kind")?)?,
        person_id: row.try_get("person_id")?,
        device_id: row.try_get("device_id")?,
        zone_id: row.try_get("zone_id")?,
        severity: parse("alert", row.try_get::<&str, _>("severity")?)?,
        time: row.try_get("time")?,
        raised_at: row.try_get("raised_at")?,
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
        acknowledged_at: row.try_get("acknowledged_at")?,
        verified_at: row.try_get("verified_at")?,
        disposed_at: row.try_get("disposed_at")?,
        closed_at: row.try_get("closed_at")?,
        repeat_of: row.try_get("repeat_of")?,
        border: border_from_row(
            row.try_get("border_port")?,
            row.try_get("border_reference")?,
        ),
    })
}

fn action_from_row(row: &PgRow) -> Result<AlertAction, StoreError> {
    Ok(AlertAction {
        alert_id: row.try_get("alert_id")?,
        previous_state: parse("alert_action", row.try_get::<&str, _>("previous_state")?)?,
        state: parse("alert_action", row.try_get::<&str, _>("state")?)?,
        disposition: row
            .try_get::<Option<&str>, _>("disposition")?
            .map(|d| parse("alert_action", d))
            .transpose()?,
        actor: Actor {
            token_id: row.try_get("token_id")?,
            label: row.try_get("token_label")?,
        },
        at: row.try_get("at")?,
        note: row.try_get("note")?,
        event_seq: row.try_get("event_seq")?,
    })
}

/// Records steps of the handling chain inside the caller's transaction.
async fn insert_actions(
    conn: &mut PgConnection,
    actions: &[AlertAction],
) -> Result<(), StoreError> {
    if actions.is_empty() {
        return Ok(());
    }
    let alert_id: Vec<Uuid> = actions.iter().map(|a| a.alert_id).collect();
    let previous: Vec<&str> = actions.iter().map(|a| a.previous_state.as_str()).collect();
    let state: Vec<&str> = actions.iter().map(|a| a.state.as_str()).collect();
    let disposition: Vec<Option<&str>> = actions
        .iter()
        .map(|a| a.disposition.map(|d| d.as_str()))
        .collect();
    let token_id: Vec<Option<Uuid>> = actions.iter().map(|a| a.actor.token_id).collect();
    let label: Vec<Option<String>> = actions.iter().map(|a| a.actor.label.clone()).collect();
    let note: Vec<Option<String>> = actions.iter().map(|a| a.note.clone()).collect();
    let at: Vec<DateTime<Utc>> = actions.iter().map(|a| a.at).collect();
    let event_seq: Vec<Option<i64>> = actions.iter().map(|a| a.event_seq).collect();
    // WITH ORDINALITY: the actions' seqs follow the order they were taken in.
    sqlx::query(
        "INSERT INTO alert_actions (alert_id, previous_state, state, disposition, token_id, \
         token_label, note, at, event_seq) \
         SELECT alert_id, previous_state, state, disposition, token_id, token_label, note, at, \
         event_seq FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::uuid[], \
         $6::text[], $7::text[], $8::timestamptz[], $9::int8[]) WITH ORDINALITY \
         AS t(alert_id, previous_state, state, disposition, token_id, token_label, note, at, \
         event_seq, n) ORDER BY n",
    )
    .bind(alert_id)
    .bind(previous)
    .bind(state)
    .bind(disposition)
    .bind(token_id)
    .bind(label)
    .bind(note)
    .bind(at)
    .bind(event_seq)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

fn token_from_row(row: &PgRow) -> Result<TokenRecord, StoreError> {
    Ok(TokenRecord {
        id: row.try_get("id")?,
        role: parse::<Role>("api_token", row.try_get::<&str, _>("role")?)?,
        label: row.try_get("label")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        revoked_at: row.try_get("revoked_at")?,
        last_used_at: row.try_get("last_used_at")?,
    })
}

/// An event about to be appended to the feed.
struct NewEvent<'a> {
    id: Uuid,
    kind: EventKind,
    person_id: PersonId,
    alert_id: Option<AlertId>,
    data: &'a str,
}

/// Takes the next position in the feed inside the caller's transaction. The counter row stays
/// locked until that transaction ends, so every other writer of the feed waits, and seq order
/// is commit order (see the module docs).
async fn next_feed_seq(conn: &mut PgConnection) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar(
        "UPDATE feed_counters SET last = last + 1 WHERE feed = $1 RETURNING last",
    )
    .bind(EVENT_FEED)
    .fetch_one(&mut *conn)
    .await?)
}

/// Appends one event inside the caller's transaction and returns its `seq`.
async fn append_event(conn: &mut PgConnection, event: NewEvent<'_>) -> Result<i64, StoreError> {
    let seq = next_feed_seq(conn).await?;
    sqlx::query(
        "INSERT INTO events (seq, id, kind, person_id, alert_id, time, data) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(seq)
    .bind(event.id)
    .bind(event.kind.to_string())
    .bind(event.person_id)
    .bind(event.alert_id)
    .bind(now())
    .bind(event.data)
    .execute(&mut *conn)
    .await?;
    Ok(seq)
}

async fn append_alert_changed(conn: &mut PgConnection, alert: &Alert) -> Result<i64, StoreError> {
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

async fn append_person_event(
    conn: &mut PgConnection,
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

fn event_from_row(row: &PgRow) -> Result<Event, StoreError> {
    let data: &str = row.try_get("data")?;
    Ok(Event {
        seq: row.try_get("seq")?,
        id: row.try_get("id")?,
        kind: parse("event", row.try_get::<&str, _>("kind")?)?,
        person_id: row.try_get("person_id")?,
        alert_id: row.try_get("alert_id")?,
        time: row.try_get("time")?,
        data: serde_json::from_str(data).map_err(|e| StoreError::Corrupt {
            what: "event",
            reason: format!("data is not JSON: {e}"),
        })?,
    })
}

fn delivery_from_row(row: &PgRow) -> Result<WebhookDelivery, StoreError> {
    Ok(WebhookDelivery {
        webhook: row.try_get("webhook")?,
        state: parse("webhook_delivery", row.try_get::<&str, _>("state")?)?,
        attempts: u32::try_from(row.try_get::<i64, _>("attempts")?).unwrap_or(u32::MAX),
        last_error: row.try_get("last_error")?,
        dead_at: row.try_get("dead_at")?,
        delivered_at: row.try_get("delivered_at")?,
        event: event_from_row(row)?,
    })
}

async fn advance_cursor(
    conn: &mut PgConnection,
    consumer: &str,
    seq: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO dispatch_cursors (consumer, seq, updated_at) VALUES ($1, $2, $3) \
         ON CONFLICT (consumer) DO UPDATE SET seq = GREATEST(dispatch_cursors.seq, EXCLUDED.seq), \
         updated_at = EXCLUDED.updated_at",
    )
    .bind(consumer)
    .bind(seq)
    .bind(now())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

fn command_from_row(row: &PgRow) -> Result<DeviceCommand, StoreError> {
    let interval: Option<i64> = row.try_get("interval_s")?;
    Ok(DeviceCommand {
        id: row.try_get("id")?,
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
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        sent_at: row.try_get("sent_at")?,
        completed_at: row.try_get("completed_at")?,
        reply: row.try_get("reply")?,
        error: row.try_get("error")?,
    })
}

fn stored_hash(what: &'static str, bytes: &[u8]) -> Result<Hash, StoreError> {
    chain::hash_of(bytes).ok_or_else(|| StoreError::Corrupt {
        what,
        reason: format!("a hash of {} bytes", bytes.len()),
    })
}

/// The head of `chain_name`, locked until the caller's transaction ends, so transactions that
/// extend one chain do so one after another. The `alerts` and `actions` heads always exist
/// (migration 0013).
async fn lock_head(conn: &mut PgConnection, chain_name: &str) -> Result<ChainHead, StoreError> {
    let (n, hash): (i64, Vec<u8>) =
        sqlx::query_as("SELECT n, hash FROM audit_heads WHERE chain = $1 FOR UPDATE")
            .bind(chain_name)
            .fetch_one(&mut *conn)
            .await?;
    Ok(ChainHead {
        chain: chain_name.to_owned(),
        n,
        hash: stored_hash("audit_head", &hash)?,
    })
}

/// Writes chain heads (that exist) inside the caller's transaction.
async fn write_heads(conn: &mut PgConnection, heads: &[&ChainHead]) -> Result<(), StoreError> {
    let chains: Vec<&str> = heads.iter().map(|h| h.chain.as_str()).collect();
    let ns: Vec<i64> = heads.iter().map(|h| h.n).collect();
    let hashes: Vec<Vec<u8>> = heads.iter().map(|h| h.hash.to_vec()).collect();
    sqlx::query(
        "UPDATE audit_heads SET n = u.n, hash = u.hash \
         FROM UNNEST($1::text[], $2::int8[], $3::bytea[]) AS u(chain, n, hash) \
         WHERE audit_heads.chain = u.chain",
    )
    .bind(chains)
    .bind(ns)
    .bind(hashes)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Appends an operator or admin action to the actions chain inside the caller's transaction,
/// under the current actor ([`chain::current_actor`]). Every change an operator makes calls
/// this in the transaction of the change, so the record exists exactly when the change does.
/// The actions head stays locked until that transaction ends.
///
/// # Errors
/// Database errors.
pub(crate) async fn append_action(
    conn: &mut PgConnection,
    action: NewAction,
) -> Result<ActionRecord, StoreError> {
    let mut head = lock_head(conn, chain::ACTIONS_CHAIN).await?;
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
         hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(record.n)
    .bind(record.id)
    .bind(record.time)
    .bind(&record.actor)
    .bind(&record.kind)
    .bind(&record.subject)
    .bind(record.person_id)
    .bind(&record.detail)
    .bind(hash.to_vec())
    .execute(&mut *conn)
    .await?;
    head.n = record.n;
    head.hash = hash;
    write_heads(conn, &[&head]).await?;
    Ok(record)
}

fn audit_action_from_row(row: &PgRow) -> Result<ActionRecord, StoreError> {
    Ok(ActionRecord {
        n: row.try_get("chain_n")?,
        id: row.try_get("id")?,
        time: row.try_get("time")?,
        actor: row.try_get("actor")?,
        kind: row.try_get("kind")?,
        subject: row.try_get("subject")?,
        person_id: row.try_get("person_id")?,
        detail: row.try_get("detail")?,
    })
}

/// Inserts `fixes` (distinct within the batch) with their chain links, extending each device's
/// chain in order, and moves the heads (locked first, in chain order, so concurrent writers
/// never deadlock on them). Returns how many rows went in: fewer than given when some were
/// already stored (a resend), and then the links written are wrong and the caller rolls them
/// back.
async fn insert_chained_positions(
    conn: &mut PgConnection,
    fixes: &[&Fix],
) -> Result<usize, StoreError> {
    if fixes.is_empty() {
        return Ok(0);
    }
    let chains: BTreeSet<String> = fixes
        .iter()
        .map(|f| chain::positions_chain(&f.device_id))
        .collect();
    let chains: Vec<String> = chains.into_iter().collect();
    sqlx::query(
        "INSERT INTO audit_heads (chain, n, hash) \
         SELECT c, 0, $2 FROM UNNEST($1::text[]) AS c ORDER BY c ON CONFLICT (chain) DO NOTHING",
    )
    .bind(&chains)
    .bind(GENESIS.to_vec())
    .execute(&mut *conn)
    .await?;
    let rows: Vec<(String, i64, Vec<u8>)> = sqlx::query_as(
        "SELECT chain, n, hash FROM audit_heads WHERE chain = ANY($1) ORDER BY chain FOR UPDATE",
    )
    .bind(&chains)
    .fetch_all(&mut *conn)
    .await?;
    let mut heads: HashMap<String, ChainHead> = HashMap::with_capacity(rows.len());
    for (chain_name, n, hash) in rows {
        let hash = stored_hash("audit_head", &hash)?;
        heads.insert(
            chain_name.clone(),
            ChainHead {
                chain: chain_name,
                n,
                hash,
            },
        );
    }
    let mut c = PositionColumns::of(fixes.iter().copied());
    for fix in fixes {
        let head = heads
            .get_mut(&chain::positions_chain(&fix.device_id))
            .expect("every chain's head was read above");
        head.n += 1;
        head.hash = chain::link_position(&head.hash, fix, head.n);
        c.chain_n.push(head.n);
        c.hash.push(head.hash.to_vec());
    }
    let inserted = sqlx::query(
        "INSERT INTO positions (device_id, person_id, time, received_at, lat, lon, valid, \
         accuracy_m, speed_kmh, course, altitude_m, satellites, hdop, source, \
         battery_pct, archived, integrity_mismatch, protocol, clock_skew, implausible, raw, \
         chain_n, hash) \
         SELECT * FROM UNNEST($1::text[], $2::uuid[], $3::timestamptz[], \
         $4::timestamptz[], $5::float8[], $6::float8[], $7::bool[], $8::float8[], \
         $9::float8[], $10::float8[], $11::float8[], $12::int2[], $13::float8[], \
         $14::text[], $15::int2[], $16::bool[], $17::bool[], $18::text[], \
         $19::bool[], $20::text[], $21::bytea[], $22::int8[], $23::bytea[]) \
         ON CONFLICT (device_id, time, lat, lon) DO NOTHING",
    )
    .bind(&c.device_id)
    .bind(&c.person_id)
    .bind(&c.time)
    .bind(c.received_at)
    .bind(c.lat)
    .bind(c.lon)
    .bind(&c.valid)
    .bind(c.accuracy_m)
    .bind(c.speed_kmh)
    .bind(c.course)
    .bind(c.altitude_m)
    .bind(c.satellites)
    .bind(c.hdop)
    .bind(c.source)
    .bind(c.battery_pct)
    .bind(c.archived)
    .bind(c.integrity_mismatch)
    .bind(c.protocol)
    .bind(c.clock_skew)
    .bind(c.implausible)
    .bind(c.raw)
    .bind(c.chain_n)
    .bind(c.hash)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    let heads: Vec<&ChainHead> = heads.values().collect();
    write_heads(conn, &heads).await?;
    Ok(inserted as usize)
}

/// The fixes of `fixes` whose natural key is not stored yet, in one round trip.
async fn unstored<'a>(
    conn: &mut PgConnection,
    fixes: &[&'a Fix],
) -> Result<Vec<&'a Fix>, StoreError> {
    let devices: Vec<&str> = fixes.iter().map(|f| f.device_id.as_str()).collect();
    let times: Vec<DateTime<Utc>> = fixes.iter().map(|f| f.time).collect();
    let lats: Vec<f64> = fixes.iter().map(|f| f.lat).collect();
    let lons: Vec<f64> = fixes.iter().map(|f| f.lon).collect();
    let stored: Vec<i64> = sqlx::query_scalar(
        "SELECT u.i FROM UNNEST($1::text[], $2::timestamptz[], $3::float8[], $4::float8[]) \
         WITH ORDINALITY AS u(device_id, time, lat, lon, i) \
         WHERE EXISTS (SELECT 1 FROM positions p WHERE p.device_id = u.device_id \
                       AND p.time = u.time AND p.lat = u.lat AND p.lon = u.lon)",
    )
    .bind(devices)
    .bind(times)
    .bind(lats)
    .bind(lons)
    .fetch_all(&mut *conn)
    .await?;
    let stored: std::collections::HashSet<i64> = stored.into_iter().collect();
    Ok(fixes
        .iter()
        .zip(1_i64..)
        .filter(|(_, i)| !stored.contains(i))
        .map(|(f, _)| *f)
        .collect())
}

/// A chain's record rebuilt from a positions row.
fn position_record(row: &PgRow) -> Result<ChainRecord, StoreError> {
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
fn alert_record(row: &PgRow) -> Result<ChainRecord, StoreError> {
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
fn action_record(row: &PgRow) -> Result<ChainRecord, StoreError> {
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

fn checkpoint_from_row(row: &PgRow) -> Result<Checkpoint, StoreError> {
    Ok(Checkpoint {
        chain: row.try_get("chain")?,
        n: row.try_get("n")?,
        hash: stored_hash("audit_checkpoint", &row.try_get::<Vec<u8>, _>("hash")?)?,
        before: row.try_get("before")?,
        at: row.try_get("at")?,
        signature: row.try_get("signature")?,
    })
}

/// Maps a unique-constraint violation to a conflict with `message`.
fn conflict_on_unique(err: sqlx::Error, message: impl FnOnce() -> String) -> StoreError {
    match &err {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(message()),
        _ => StoreError::Database(err),
    }
}

/// Maps a foreign-key violation (a concurrent change removed or added a reference between our
/// check and our write) to `mapped`.
fn on_foreign_key(err: sqlx::Error, mapped: impl FnOnce() -> StoreError) -> StoreError {
    match &err {
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => mapped(),
        _ => StoreError::Database(err),
    }
}

/// Positions as column arrays, the shape `UNNEST` takes them in.
#[derive(Default)]
struct PositionColumns {
    device_id: Vec<String>,
    person_id: Vec<Uuid>,
    time: Vec<DateTime<Utc>>,
    received_at: Vec<DateTime<Utc>>,
    lat: Vec<f64>,
    lon: Vec<f64>,
    valid: Vec<bool>,
    accuracy_m: Vec<Option<f64>>,
    speed_kmh: Vec<Option<f64>>,
    course: Vec<Option<f64>>,
    altitude_m: Vec<Option<f64>>,
    satellites: Vec<Option<i16>>,
    hdop: Vec<Option<f64>>,
    source: Vec<&'static str>,
    battery_pct: Vec<Option<i16>>,
    archived: Vec<bool>,
    integrity_mismatch: Vec<bool>,
    protocol: Vec<String>,
    clock_skew: Vec<bool>,
    implausible: Vec<Option<String>>,
    raw: Vec<Vec<u8>>,
    /// Valid, not clock-skewed and plausible: may be the device's newest fix.
    may_be_newest: Vec<bool>,
    /// Each fix's place in its device's chain and its hash, filled in by the caller.
    chain_n: Vec<i64>,
    hash: Vec<Vec<u8>>,
}

impl PositionColumns {
    fn of<'a>(fixes: impl IntoIterator<Item = &'a Fix>) -> Self {
        let mut c = PositionColumns::default();
        for f in fixes {
            c.device_id.push(f.device_id.clone());
            c.person_id.push(f.person_id);
            c.time.push(f.time);
            c.received_at.push(f.received_at);
            c.lat.push(f.lat);
            c.lon.push(f.lon);
            c.valid.push(f.valid);
            c.accuracy_m.push(f.accuracy_m);
            c.speed_kmh.push(f.speed_kmh);
            c.course.push(f.course);
            c.altitude_m.push(f.altitude_m);
            c.satellites.push(f.satellites.map(i16::from));
            c.hdop.push(f.hdop);
            c.source.push(source_name(f.source));
            c.battery_pct.push(f.battery_pct.map(i16::from));
            c.archived.push(f.archived);
            c.integrity_mismatch.push(f.integrity_mismatch);
            c.protocol.push(f.protocol.clone());
            c.clock_skew.push(f.clock_skew);
            c.implausible.push(f.implausible.clone());
            // The one copy of the frame on the way to the database.
            c.raw.push(f.raw.to_vec());
            c.may_be_newest
                .push(f.valid && !f.clock_skew && f.implausible.is_none());
        }
        c
    }
}

/// Alerts as column arrays, with the `seq` each was given.
#[derive(Default)]
struct AlertColumns {
    seq: Vec<i64>,
    id: Vec<Uuid>,
    kind: Vec<&'static str>,
    person_id: Vec<Uuid>,
    device_id: Vec<Option<String>>,
    zone_id: Vec<Option<Uuid>>,
    severity: Vec<&'static str>,
    time: Vec<DateTime<Utc>>,
    raised_at: Vec<DateTime<Utc>>,
    lat: Vec<Option<f64>>,
    lon: Vec<Option<f64>>,
    accuracy_m: Vec<Option<f64>>,
    state: Vec<&'static str>,
    late: Vec<bool>,
    note: Vec<Option<String>>,
    acknowledged_at: Vec<Option<DateTime<Utc>>>,
    closed_at: Vec<Option<DateTime<Utc>>>,
    verified_at: Vec<Option<DateTime<Utc>>>,
    disposed_at: Vec<Option<DateTime<Utc>>>,
    disposition: Vec<Option<&'static str>>,
    repeat_of: Vec<Option<Uuid>>,
    /// Each alert's place in the alerts chain and its hash, filled in by the caller.
    chain_n: Vec<i64>,
    hash: Vec<Vec<u8>>,
}

impl AlertColumns {
    fn of(alerts: &[Alert]) -> Self {
        let mut c = AlertColumns::default();
        for a in alerts {
            c.seq.push(a.seq);
            c.id.push(a.id);
            c.kind.push(a.kind.as_str());
            c.person_id.push(a.person_id);
            c.device_id.push(a.device_id.clone());
            c.zone_id.push(a.zone_id);
            c.severity.push(a.severity.as_str());
            c.time.push(a.time);
            c.raised_at.push(a.raised_at);
            c.lat.push(a.position.map(|p| p.lat));
            c.lon.push(a.position.map(|p| p.lon));
            c.accuracy_m.push(a.position.and_then(|p| p.accuracy_m));
            c.state.push(a.state.as_str());
            c.late.push(a.late);
            c.note.push(a.note.clone());
            c.acknowledged_at.push(a.acknowledged_at);
            c.closed_at.push(a.closed_at);
            c.verified_at.push(a.verified_at);
            c.disposed_at.push(a.disposed_at);
            c.disposition.push(a.disposition.map(|d| d.as_str()));
            c.repeat_of.push(a.repeat_of);
        }
        c
    }
}

#[async_trait]
impl Store for PgStore {
    async fn migrate(&self) -> Result<(), StoreError> {
        // A migration may rewrite a big table: no statement timeout for it, on a connection of
        // its own, back to the session default afterwards.
        let mut conn = self.pool.acquire().await?;
        sqlx::query("SET statement_timeout = 0")
            .execute(&mut *conn)
            .await?;
        sqlx::migrate!("./migrations/postgres")
            .run_direct(&mut *conn)
            .await?;
        sqlx::query("RESET statement_timeout")
            .execute(&mut *conn)
            .await?;
        drop(conn);
        let today = Utc::now().date_naive();
        self.ensure_partitions(&Self::days_for(&[], today)).await?;
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
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO persons (id, name, level, timezone, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(person.id)
        .bind(&person.name)
        .bind(person.level.as_str())
        .bind(&person.timezone)
        .bind(person.created_at)
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
        let mut tx = self.pool.begin().await?;
        let mut known_zones: std::collections::HashSet<ZoneId> = std::collections::HashSet::new();
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
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(person.id)
            .bind(&person.name)
            .bind(person.level.as_str())
            .bind(&person.timezone)
            .bind(person.created_at)
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
                    "INSERT INTO devices (imei, person_id, created_at, model) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(&device.imei)
                .bind(person.id)
                .bind(device.created_at)
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
                let unseen: Vec<Uuid> = new
                    .zones
                    .iter()
                    .filter(|z| !known_zones.contains(*z))
                    .copied()
                    .collect();
                let unknown: Vec<Uuid> = sqlx::query_scalar(
                    "SELECT z FROM UNNEST($1::uuid[]) AS z \
                     WHERE NOT EXISTS (SELECT 1 FROM zones WHERE id = z)",
                )
                .bind(&unseen)
                .fetch_all(&mut *tx)
                .await?;
                let item = format!("persons[{i}]");
                if !unknown.is_empty() {
                    return Err(super::unknown_zones(&item, &unknown));
                }
                known_zones.extend(new.zones.iter().copied());
                sqlx::query(
                    "INSERT INTO person_zones (person_id, zone_id) \
                     SELECT $1, z FROM UNNEST($2::uuid[]) AS z ON CONFLICT DO NOTHING",
                )
                .bind(person.id)
                .bind(&new.zones)
                .execute(&mut *tx)
                .await
                // A zone deleted since the check above.
                .map_err(|e| on_foreign_key(e, || super::unknown_zones(&item, &unseen)))?;
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
        let row = sqlx::query("SELECT * FROM persons WHERE id = $1")
            .bind(id)
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
        let mut tx = self.pool.begin().await?;
        // One statement: fields left out keep their stored value, even under a concurrent patch.
        let row = sqlx::query(
            "UPDATE persons SET name = COALESCE($1, name), level = COALESCE($2, level), \
             timezone = COALESCE($3, timezone) WHERE id = $4 RETURNING *",
        )
        .bind(patch.name)
        .bind(patch.level.map(|l| l.as_str()))
        .bind(patch.timezone)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| not_found("person", id))?;
        let person = person_from_row(&row)?;
        append_action(&mut tx, person_action("person.update", &person)).await?;
        reports::follow_span(&mut tx, &person, now()).await?;
        tx.commit().await?;
        Ok(person)
    }

    async fn delete_person(&self, id: PersonId) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let devices: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM devices WHERE person_id = $1")
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        let in_use = || {
            StoreError::Conflict(format!(
                "person {id} still has device(s) bound; delete the devices first"
            ))
        };
        if devices > 0 {
            return Err(in_use());
        }
        let row = sqlx::query("DELETE FROM persons WHERE id = $1 RETURNING *")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| on_foreign_key(e, in_use))?
            .ok_or_else(|| not_found("person", id))?;
        let person = person_from_row(&row)?;
        let at = now();
        append_action(&mut tx, person_action("person.delete", &person)).await?;
        // The supervisor forgets a deleted person, so nothing else would end their orders.
        supervision::end_orders_of_deleted(&mut tx, person.id, at).await?;
        reports::close_span(&mut tx, person.id, at, true).await?;
        let seq = append_person_event(&mut tx, EventKind::PersonReleased, &person).await?;
        tx.commit().await.map_err(|e| on_foreign_key(e, in_use))?;
        self.announce(seq);
        Ok(())
    }

    async fn create_device(&self, imei: &str, person_id: PersonId) -> Result<Device, StoreError> {
        let device = Device {
            imei: imei.to_owned(),
            person_id,
            created_at: now(),
            model: None,
            protocol: None,
        };
        let mut tx = self.pool.begin().await?;
        sqlx::query("INSERT INTO devices (imei, person_id, created_at) VALUES ($1, $2, $3)")
            .bind(&device.imei)
            .bind(person_id)
            .bind(device.created_at)
            .execute(&mut *tx)
            .await
            .map_err(|e| match &e {
                sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
                    StoreError::UnknownReference(format!("person_id {person_id} does not exist"))
                }
                _ => conflict_on_unique(e, || format!("device {imei} is already registered")),
            })?;
        append_action(&mut tx, device_action("device.bind", &device)).await?;
        tx.commit().await?;
        Ok(device)
    }

    async fn device(&self, imei: &str) -> Result<Device, StoreError> {
        let row = sqlx::query("SELECT * FROM devices WHERE imei = $1")
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
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query("DELETE FROM devices WHERE imei = $1 RETURNING *")
            .bind(imei)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| not_found("device", imei))?;
        let device = device_from_row(&row)?;
        append_action(&mut tx, device_action("device.unbind", &device)).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn create_zone(&self, zone: &ZoneRecord) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO zones (id, name, kind, source_crs, radius_m, geometry, wifi, \
             wifi_learn_until, scope, schedule, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(zone.id)
        .bind(&zone.name)
        .bind(zone.kind.as_str())
        .bind(zone.source_crs.as_str())
        .bind(zone.radius_m)
        .bind(&zone.geometry)
        .bind(&zone.wifi.bssids)
        .bind(zone.wifi.learn_until)
        .bind(super::scope_name(zone.scope))
        .bind(zone.schedule.as_ref().map(|s| s.to_string()))
        .bind(zone.created_at)
        .execute(&mut *tx)
        .await?;
        for person in &zone.persons {
            let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM persons WHERE id = $1")
                .bind(person)
                .fetch_optional(&mut *tx)
                .await?;
            if exists.is_none() {
                return Err(StoreError::UnknownReference(format!(
                    "assigned_to lists person {person}, who does not exist"
                )));
            }
            sqlx::query(
                "INSERT INTO person_zones (person_id, zone_id) VALUES ($1, $2) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(person)
            .bind(zone.id)
            .execute(&mut *tx)
            .await?;
        }
        append_action(&mut tx, zone_action("zone.create", zone)).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn add_zone_wifi(&self, id: ZoneId, bssids: &[String]) -> Result<ZoneRecord, StoreError> {
        let mut tx = self.pool.begin().await?;
        // FOR UPDATE: two learners adding to one zone at once both keep their access points.
        let row = sqlx::query("SELECT * FROM zones WHERE id = $1 FOR UPDATE")
            .bind(id)
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
        sqlx::query("UPDATE zones SET wifi = $1 WHERE id = $2")
            .bind(&zone.wifi.bssids)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(zone)
    }

    async fn zone(&self, id: ZoneId) -> Result<ZoneRecord, StoreError> {
        let row = sqlx::query("SELECT * FROM zones WHERE id = $1")
            .bind(id)
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
        let mut tx = self.pool.begin().await?;
        let assigned: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM person_zones WHERE zone_id = $1")
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
        let in_use = || {
            StoreError::Conflict(format!(
                "zone {id} is assigned to a person; remove it from their zones first"
            ))
        };
        if assigned > 0 {
            return Err(in_use());
        }
        let row = sqlx::query("DELETE FROM zones WHERE id = $1 RETURNING *")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| on_foreign_key(e, in_use))?
            .ok_or_else(|| not_found("zone", id))?;
        let zone = zone_from_row(&row)?;
        append_action(&mut tx, zone_action("zone.delete", &zone)).await?;
        tx.commit().await.map_err(|e| on_foreign_key(e, in_use))?;
        Ok(())
    }

    async fn set_person_zones(&self, person: PersonId, zones: &[ZoneId]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        // Locks the person row, so two replacements of one person's zones run one after the
        // other and the last one wins whole.
        let exists: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM persons WHERE id = $1 FOR UPDATE")
                .bind(person)
                .fetch_optional(&mut *tx)
                .await?;
        if exists.is_none() {
            return Err(not_found("person", person));
        }
        let unknown: Vec<Uuid> = sqlx::query_scalar(
            "SELECT z FROM UNNEST($1::uuid[]) AS z \
             WHERE NOT EXISTS (SELECT 1 FROM zones WHERE id = z)",
        )
        .bind(zones)
        .fetch_all(&mut *tx)
        .await?;
        if !unknown.is_empty() {
            return Err(super::unknown_zones("", &unknown));
        }
        sqlx::query("DELETE FROM person_zones WHERE person_id = $1")
            .bind(person)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO person_zones (person_id, zone_id) \
             SELECT $1, z FROM UNNEST($2::uuid[]) AS z ON CONFLICT DO NOTHING",
        )
        .bind(person)
        .bind(zones)
        .execute(&mut *tx)
        .await
        // A zone deleted since the check above.
        .map_err(|e| on_foreign_key(e, || super::unknown_zones("", zones)))?;
        append_action(&mut tx, assignment_action(person, zones)).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn person_zones(&self, person: PersonId) -> Result<Vec<ZoneId>, StoreError> {
        self.person(person).await?;
        let rows: Vec<Uuid> = sqlx::query_scalar(
            "SELECT zone_id FROM person_zones WHERE person_id = $1 ORDER BY zone_id",
        )
        .bind(person)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    async fn assignments(&self) -> Result<Vec<(PersonId, ZoneId)>, StoreError> {
        let rows: Vec<(Uuid, Uuid)> = sqlx::query_as("SELECT person_id, zone_id FROM person_zones")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows)
    }

    async fn commit_batch(
        &self,
        fixes: &[Fix],
        alerts: Vec<Alert>,
        heard: &[DeviceHeard],
    ) -> Result<Vec<Alert>, StoreError> {
        self.ensure_partitions(&Self::days_for(fixes, Utc::now().date_naive()))
            .await?;
        let mut tx = self.pool.begin().await?;
        if !fixes.is_empty() {
            let fresh = chain::distinct_positions(fixes);
            // Resends are rare, so the batch is first chained as if every fix were new; when
            // some turn out stored already (fewer rows went in), the transaction is rolled back
            // and the batch chained again without them. A skipped resend never takes a place in
            // a chain. (A rollback of the whole transaction rather than to a savepoint: two
            // round trips fewer in every commit.)
            if insert_chained_positions(&mut tx, &fresh).await? != fresh.len() {
                tx.rollback().await?;
                tx = self.pool.begin().await?;
                let new = unstored(&mut tx, &fresh).await?;
                insert_chained_positions(&mut tx, &new).await?;
            }
            let devices: Vec<&str> = fixes.iter().map(|f| f.device_id.as_str()).collect();
            let persons: Vec<Uuid> = fixes.iter().map(|f| f.person_id).collect();
            let times: Vec<DateTime<Utc>> = fixes.iter().map(|f| f.time).collect();
            let may_be_newest: Vec<bool> = fixes
                .iter()
                .map(|f| f.valid && !f.clock_skew && f.implausible.is_none())
                .collect();
            // Each (device, person)'s newest valid fix time, for Store::newest_fix_times, leaving
            // out clock-skewed and implausible fixes (they never become the newest); in key
            // order, so concurrent writers lock the rows in one order.
            sqlx::query(
                "INSERT INTO device_newest (device_id, person_id, time) \
                 SELECT device_id, person_id, MAX(time) \
                 FROM UNNEST($1::text[], $2::uuid[], $3::timestamptz[], $4::bool[]) \
                 AS t(device_id, person_id, time, valid) \
                 WHERE valid GROUP BY device_id, person_id ORDER BY device_id, person_id \
                 ON CONFLICT (device_id, person_id) \
                 DO UPDATE SET time = GREATEST(device_newest.time, EXCLUDED.time)",
            )
            .bind(devices)
            .bind(persons)
            .bind(times)
            .bind(may_be_newest)
            .execute(&mut *tx)
            .await?;
        }
        let mut stored = alerts;
        if !stored.is_empty() {
            // A batch tried again after its commit's answer was lost carries alerts already
            // stored: they are not stored twice (see `Store::commit`).
            let ids: Vec<Uuid> = stored.iter().map(|a| a.id).collect();
            let known: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM alerts WHERE id = ANY($1)")
                .bind(&ids)
                .fetch_all(&mut *tx)
                .await?;
            stored.retain(|a| !known.contains(&a.id));
        }
        if !stored.is_empty() {
            // Taken last, just before the commit: the counter row stays locked until then, and
            // every other transaction writing alerts waits on it, so seq order is commit order.
            let count = i64::try_from(stored.len()).map_err(|_| {
                StoreError::Conflict(format!("{} alerts in one batch", stored.len()))
            })?;
            let last: i64 = sqlx::query_scalar(
                "UPDATE feed_counters SET last = last + $1 WHERE feed = $2 RETURNING last",
            )
            .bind(count)
            .bind(EVENT_FEED)
            .fetch_one(&mut *tx)
            .await?;
            // With the counter row held, no other alert writer or alert action can commit
            // meanwhile: the alerts not closed read here stay so until this commit.
            let persons: Vec<Uuid> = stored.iter().map(|a| a.person_id).collect();
            let rows: Vec<(Uuid, Uuid, String, Option<Uuid>)> = sqlx::query_as(
                "SELECT DISTINCT ON (person_id, kind, zone_id) id, person_id, kind, zone_id \
                 FROM alerts WHERE state <> 'closed' AND person_id = ANY($1) \
                 ORDER BY person_id, kind, zone_id, seq",
            )
            .bind(persons)
            .fetch_all(&mut *tx)
            .await?;
            let mut unclosed = std::collections::HashMap::new();
            for (id, person, kind, zone) in rows {
                unclosed.insert((person, parse("alert", &kind)?, zone), id);
            }
            let births = handling::admit(&mut stored, unclosed);
            let trunc = |t: Option<DateTime<Utc>>| t.map(|t| t.trunc_subsecs(6));
            for (seq, alert) in (last - count + 1..).zip(stored.iter_mut()) {
                alert.seq = seq;
                // Hand back exactly what a later read returns: times at microsecond precision.
                alert.time = alert.time.trunc_subsecs(6);
                alert.raised_at = alert.raised_at.trunc_subsecs(6);
                alert.acknowledged_at = trunc(alert.acknowledged_at);
                alert.verified_at = trunc(alert.verified_at);
                alert.disposed_at = trunc(alert.disposed_at);
                alert.closed_at = trunc(alert.closed_at);
            }
            let born_closed: Vec<AlertAction> = births
                .into_iter()
                .zip(&stored)
                .filter_map(|(birth, alert)| {
                    birth.map(|action| AlertAction {
                        at: action.at.trunc_subsecs(6),
                        event_seq: Some(alert.seq),
                        ..action
                    })
                })
                .collect();
            let mut c = AlertColumns::of(&stored);
            let mut head = lock_head(&mut tx, chain::ALERTS_CHAIN).await?;
            for alert in &stored {
                head.n += 1;
                head.hash = chain::link(&head.hash, &chain::alert_canonical(alert, head.n));
                c.chain_n.push(head.n);
                c.hash.push(head.hash.to_vec());
            }
            write_heads(&mut tx, &[&head]).await?;
            sqlx::query(
                "INSERT INTO alerts (seq, id, kind, person_id, device_id, zone_id, severity, \
                 time, raised_at, lat, lon, accuracy_m, state, late, note, acknowledged_at, \
                 closed_at, verified_at, disposed_at, disposition, repeat_of, chain_n, hash) \
                 SELECT * FROM UNNEST($1::int8[], $2::uuid[], $3::text[], $4::uuid[], \
                 $5::text[], $6::uuid[], $7::text[], $8::timestamptz[], $9::timestamptz[], \
                 $10::float8[], $11::float8[], $12::float8[], $13::text[], $14::bool[], \
                 $15::text[], $16::timestamptz[], $17::timestamptz[], $18::timestamptz[], \
                 $19::timestamptz[], $20::text[], $21::uuid[], $22::int8[], $23::bytea[])",
            )
            .bind(&c.seq)
            .bind(&c.id)
            .bind(c.kind)
            .bind(&c.person_id)
            .bind(c.device_id)
            .bind(c.zone_id)
            .bind(c.severity)
            .bind(c.time)
            .bind(c.raised_at)
            .bind(c.lat)
            .bind(c.lon)
            .bind(c.accuracy_m)
            .bind(c.state)
            .bind(c.late)
            .bind(c.note)
            .bind(c.acknowledged_at)
            .bind(c.closed_at)
            .bind(c.verified_at)
            .bind(c.disposed_at)
            .bind(c.disposition)
            .bind(c.repeat_of)
            .bind(c.chain_n)
            .bind(c.hash)
            .execute(&mut *tx)
            .await?;
            insert_actions(&mut tx, &born_closed).await?;
            // Each alert's `alert.raised` event, at the alert's own seq, carrying the alert.
            let data = stored.iter().map(to_json).collect::<Result<Vec<_>, _>>()?;
            sqlx::query(
                "INSERT INTO events (seq, id, kind, person_id, alert_id, time, data) \
                 SELECT seq, id, $3, person_id, id, $4, data \
                 FROM UNNEST($1::int8[], $2::uuid[], $5::uuid[], $6::text[]) \
                 AS t(seq, id, person_id, data)",
            )
            .bind(&c.seq)
            .bind(&c.id)
            .bind(EventKind::AlertRaised.to_string())
            .bind(now())
            .bind(&c.person_id)
            .bind(data)
            .execute(&mut *tx)
            .await?;
        }
        supervision::upsert_heard(&mut *tx, heard).await?;
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
            "SELECT * FROM positions WHERE person_id = $1 AND time >= $2 AND time <= $3 \
             ORDER BY time, id LIMIT $4",
        )
        .bind(person)
        .bind(from)
        .bind(to)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(fix_from_row)
        .collect()
    }

    async fn newest_fix_times(&self) -> Result<Vec<DeviceNewest>, StoreError> {
        let rows: Vec<(String, Uuid, DateTime<Utc>)> =
            sqlx::query_as("SELECT device_id, person_id, time FROM device_newest")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .into_iter()
            .map(|(device_id, person_id, time)| DeviceNewest {
                device_id,
                person_id,
                time,
            })
            .collect())
    }

    async fn open_breaches(&self) -> Result<Vec<OpenBreach>, StoreError> {
        let rows: Vec<(Uuid, Uuid, Option<String>, DateTime<Utc>)> = sqlx::query_as(
            // A `leave_overdue` is the breach of the zone the leave suspended: its side is the
            // zone's kind.
            "SELECT person_id, zone_id, \
                 CASE kind WHEN 'zone_exit' THEN 'zone_exit' WHEN 'zone_enter' THEN 'zone_enter' \
                 ELSE (SELECT CASE z.kind WHEN 'exclusion' THEN 'zone_enter' ELSE 'zone_exit' END \
                       FROM zones z WHERE z.id = newest.zone_id) END, time FROM ( \
                 SELECT DISTINCT ON (person_id, zone_id) person_id, zone_id, kind, time \
                 FROM alerts WHERE zone_id IS NOT NULL AND NOT late \
                 ORDER BY person_id, zone_id, seq DESC) newest \
             WHERE kind IN ('zone_exit', 'zone_enter', 'curfew', 'leave_overdue')",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(person_id, zone_id, kind, since)| OpenBreach {
                person_id,
                zone_id,
                kind: if kind.as_deref() != Some("zone_enter") {
                    ZoneKind::Inclusion
                } else {
                    ZoneKind::Exclusion
                },
                since,
            })
            .collect())
    }

    async fn alerts(&self, query: AlertQuery) -> Result<Vec<Alert>, StoreError> {
        let sql = format!(
            "SELECT * FROM alerts WHERE seq > $1 AND ($2::uuid IS NULL OR person_id = $2) \
             AND (NOT $3 OR state <> 'closed') ORDER BY seq {} LIMIT $4",
            if query.newest_first { "DESC" } else { "ASC" }
        );
        sqlx::query(&sql)
            .bind(query.after)
            .bind(query.person_id)
            .bind(query.open_only)
            .bind(i64::from(query.limit))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(alert_from_row)
            .collect()
    }

    async fn alert(&self, id: AlertId) -> Result<Alert, StoreError> {
        let row = sqlx::query("SELECT * FROM alerts WHERE id = $1")
            .bind(id)
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
            at: request.at.trunc_subsecs(6),
            ..request
        };
        let mut tx = self.pool.begin().await?;
        // The counter row first, as every alert writer takes it: a step and a commit that
        // raises a repeat of the same alert are applied one after the other, never interleaved
        // (and always in this order of locks, so they cannot deadlock).
        sqlx::query("SELECT last FROM feed_counters WHERE feed = $1 FOR UPDATE")
            .bind(EVENT_FEED)
            .execute(&mut *tx)
            .await?;
        let row = sqlx::query("SELECT * FROM alerts WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| not_found("alert", id))?;
        let mut alert = alert_from_row(&row)?;
        let steps = handling::take_steps(&mut alert, &request)?;
        let mut last_seq = 0;
        let mut actions = Vec::with_capacity(steps.len());
        for (as_it_became, mut action) in steps {
            last_seq = append_alert_changed(&mut tx, &as_it_became).await?;
            action.event_seq = Some(last_seq);
            actions.push(action);
        }
        insert_actions(&mut tx, &actions).await?;
        sqlx::query(
            "UPDATE alerts SET state = $1, note = $2, disposition = $3, acknowledged_at = $4, \
             verified_at = $5, disposed_at = $6, closed_at = $7 WHERE id = $8",
        )
        .bind(alert.state.as_str())
        .bind(&alert.note)
        .bind(alert.disposition.map(|d| d.as_str()))
        .bind(alert.acknowledged_at)
        .bind(alert.verified_at)
        .bind(alert.disposed_at)
        .bind(alert.closed_at)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        append_action(&mut tx, alert_state_action(&alert)).await?;
        tx.commit().await?;
        self.announce(last_seq);
        Ok(alert)
    }

    async fn raise_border_hit(&self, mut alert: Alert) -> Result<(Alert, bool), StoreError> {
        let Some(border) = alert.border.clone() else {
            return Err(StoreError::Conflict(
                "a border hit needs its border check".into(),
            ));
        };
        let mut tx = self.pool.begin().await?;
        // The feed counter first: it serialises this with every other writer of the feed, two
        // reports of one reference included, so the look-up below sees any earlier one.
        // Returning early rolls the counter back with the rest.
        let seq = next_feed_seq(&mut tx).await?;
        if let Some(row) = sqlx::query("SELECT * FROM alerts WHERE border_reference = $1")
            .bind(&border.reference)
            .fetch_optional(&mut *tx)
            .await?
        {
            return Ok((alert_from_row(&row)?, false));
        }
        let known: Option<i32> = sqlx::query_scalar("SELECT 1 FROM persons WHERE id = $1")
            .bind(alert.person_id)
            .fetch_optional(&mut *tx)
            .await?;
        if known.is_none() {
            return Err(StoreError::UnknownReference(format!(
                "person {} does not exist",
                alert.person_id
            )));
        }
        alert.seq = seq;
        // Hand back exactly what a later read returns: times at microsecond precision.
        alert.time = alert.time.trunc_subsecs(6);
        alert.raised_at = alert.raised_at.trunc_subsecs(6);
        let mut head = lock_head(&mut tx, chain::ALERTS_CHAIN).await?;
        head.n += 1;
        head.hash = chain::link(&head.hash, &chain::alert_canonical(&alert, head.n));
        write_heads(&mut tx, &[&head]).await?;
        sqlx::query(
            "INSERT INTO alerts (seq, id, kind, person_id, device_id, zone_id, severity, time, \
             raised_at, lat, lon, accuracy_m, state, late, note, acknowledged_at, closed_at, \
             border_port, border_reference, chain_n, hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, \
             $17, $18, $19, $20, $21)",
        )
        .bind(alert.seq)
        .bind(alert.id)
        .bind(alert.kind.as_str())
        .bind(alert.person_id)
        .bind(&alert.device_id)
        .bind(alert.zone_id)
        .bind(alert.severity.as_str())
        .bind(alert.time)
        .bind(alert.raised_at)
        .bind(alert.position.map(|p| p.lat))
        .bind(alert.position.map(|p| p.lon))
        .bind(alert.position.and_then(|p| p.accuracy_m))
        .bind(alert.state.as_str())
        .bind(alert.late)
        .bind(&alert.note)
        .bind(alert.acknowledged_at)
        .bind(alert.closed_at)
        .bind(&border.port)
        .bind(&border.reference)
        .bind(head.n)
        .bind(head.hash.to_vec())
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO events (seq, id, kind, person_id, alert_id, time, data) \
             VALUES ($1, $2, $3, $4, $2, $5, $6)",
        )
        .bind(alert.seq)
        .bind(alert.id)
        .bind(EventKind::AlertRaised.to_string())
        .bind(alert.person_id)
        .bind(now())
        .bind(to_json(&alert)?)
        .execute(&mut *tx)
        .await?;
        append_action(&mut tx, border_hit_action(&alert)).await?;
        tx.commit().await?;
        self.announce(alert.seq);
        Ok((alert, true))
    }

    async fn record_integration_read(&self, read: &IntegrationRead) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO integration_reads (token_id, at, method, path, query, status, records) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(read.token_id)
        .bind(read.at)
        .bind(&read.method)
        .bind(&read.path)
        .bind(&read.query)
        .bind(i32::from(read.status))
        .bind(i64::try_from(read.records).unwrap_or(i64::MAX))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn integration_reads(
        &self,
        query: IntegrationReadQuery,
    ) -> Result<Vec<IntegrationRead>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM integration_reads WHERE seq > $1 \
             AND ($2::uuid IS NULL OR token_id = $2) \
             AND ($3::timestamptz IS NULL OR at >= $3) \
             AND ($4::timestamptz IS NULL OR at <= $4) ORDER BY seq LIMIT $5",
        )
        .bind(query.after)
        .bind(query.token_id)
        .bind(query.from)
        .bind(query.to)
        .bind(i64::from(query.limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(IntegrationRead {
                    seq: row.try_get("seq")?,
                    token_id: row.try_get("token_id")?,
                    at: row.try_get("at")?,
                    method: row.try_get("method")?,
                    path: row.try_get("path")?,
                    query: row.try_get("query")?,
                    status: u16::try_from(row.try_get::<i32, _>("status")?).map_err(|e| {
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
        let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM alerts WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
        if exists.is_none() {
            return Err(not_found("alert", id));
        }
        sqlx::query("SELECT * FROM alert_actions WHERE alert_id = $1 ORDER BY seq")
            .bind(id)
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
             WHERE a.raised_at >= $1 AND a.raised_at < $2 \
             GROUP BY a.kind, a.zone_id, a.severity, p.level, a.state, a.disposition, \
             a.repeat_of IS NOT NULL",
        )
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        let counts = rows
            .iter()
            .map(|row| {
                Ok(AlertCount {
                    kind: row.try_get("kind")?,
                    zone_id: row.try_get("zone_id")?,
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
        sqlx::query(
            "SELECT * FROM events WHERE seq > $1 AND (NOT $2 OR kind LIKE 'alert.%') \
             ORDER BY seq LIMIT $3",
        )
        .bind(query.after)
        .bind(query.alerts_only)
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
        // A new consumer starts at the newest committed event. An event still being written has
        // a larger seq than every committed one (seq order is commit order), so it is after the
        // start and not skipped.
        sqlx::query(
            "INSERT INTO dispatch_cursors (consumer, seq, updated_at) \
             SELECT $1, COALESCE(MAX(seq), 0), $2 FROM events \
             ON CONFLICT (consumer) DO NOTHING",
        )
        .bind(consumer)
        .bind(now())
        .execute(&self.pool)
        .await?;
        let seq: i64 = sqlx::query_scalar("SELECT seq FROM dispatch_cursors WHERE consumer = $1")
            .bind(consumer)
            .fetch_one(&self.pool)
            .await?;
        Ok(seq)
    }

    async fn set_dispatch_cursor(&self, consumer: &str, seq: i64) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
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
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO webhook_deliveries \
             (webhook, event_seq, state, attempts, last_error, dead_at) \
             VALUES ($1, $2, 'dead', $3, $4, $5) \
             ON CONFLICT (webhook, event_seq) DO UPDATE SET state = 'dead', \
             attempts = webhook_deliveries.attempts + EXCLUDED.attempts, \
             last_error = EXCLUDED.last_error, dead_at = EXCLUDED.dead_at",
        )
        .bind(webhook)
        .bind(seq)
        .bind(i64::from(attempts))
        .bind(error)
        .bind(now())
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
             WHERE d.webhook = $1 AND d.event_seq > $2 AND ($3::text IS NULL OR d.state = $3) \
             ORDER BY d.event_seq LIMIT $4",
        )
        .bind(webhook)
        .bind(after)
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
            let mut tx = self.pool.begin().await?;
            let done = sqlx::query(
                "UPDATE webhook_deliveries SET state = 'pending' \
                 WHERE webhook = $1 AND state = 'dead'",
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
        let mut tx = self.pool.begin().await?;
        let found: Option<(i64, String)> = sqlx::query_as(
            "SELECT d.event_seq, d.state FROM webhook_deliveries d \
             JOIN events e ON e.seq = d.event_seq WHERE d.webhook = $1 AND e.id = $2 \
             FOR UPDATE OF d",
        )
        .bind(webhook)
        .bind(event_id)
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
            "UPDATE webhook_deliveries SET state = 'pending' WHERE webhook = $1 AND event_seq = $2",
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
        let at = now();
        let query = match &outcome {
            Ok(()) => sqlx::query(
                "UPDATE webhook_deliveries SET state = 'delivered', attempts = attempts + 1, \
                 delivered_at = $1 WHERE webhook = $2 AND event_seq = $3",
            )
            .bind(at),
            Err(error) => sqlx::query(
                "UPDATE webhook_deliveries SET state = 'dead', attempts = attempts + 1, \
                 last_error = $1, dead_at = $2 WHERE webhook = $3 AND event_seq = $4",
            )
            .bind(error)
            .bind(at),
        };
        query.bind(webhook).bind(seq).execute(&self.pool).await?;
        Ok(())
    }

    async fn set_device_model(
        &self,
        imei: &str,
        model: Option<&str>,
    ) -> Result<Device, StoreError> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query("UPDATE devices SET model = $1 WHERE imei = $2 RETURNING *")
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
        sqlx::query(
            "UPDATE devices SET protocol = $1 WHERE imei = $2 AND protocol IS DISTINCT FROM $1",
        )
        .bind(protocol)
        .bind(imei)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn create_command(&self, command: &DeviceCommand) -> Result<DeviceCommand, StoreError> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "INSERT INTO commands (id, device_id, kind, text, interval_s, status, protocol, \
             reference, created_at, expires_at, sent_at, completed_at, reply, error) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) RETURNING *",
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
        let person: Option<Uuid> =
            sqlx::query_scalar("SELECT person_id FROM devices WHERE imei = $1")
                .bind(&command.device_id)
                .fetch_optional(&mut *tx)
                .await?;
        append_action(&mut tx, command_action(command, person)).await?;
        tx.commit().await?;
        command_from_row(&row)
    }

    async fn command(&self, id: CommandId) -> Result<DeviceCommand, StoreError> {
        let row = sqlx::query("SELECT * FROM commands WHERE id = $1")
            .bind(id)
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
        sqlx::query("SELECT * FROM commands WHERE device_id = $1 ORDER BY seq DESC LIMIT $2")
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
            "SELECT * FROM commands WHERE device_id = $1 AND status = 'pending' \
             AND expires_at > $2 ORDER BY seq",
        )
        .bind(imei)
        .bind(now)
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
            "UPDATE commands SET status = 'sent', protocol = $1, reference = $2, sent_at = $3 \
             WHERE id = $4 AND status = 'pending'",
        )
        .bind(protocol)
        .bind(reference)
        .bind(at.trunc_subsecs(6))
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn unmark_command_sent(&self, id: CommandId) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE commands SET status = 'pending', sent_at = NULL, reference = NULL \
             WHERE id = $1 AND status = 'sent'",
        )
        .bind(id)
        .execute(&self.pool)
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
            "UPDATE commands SET status = $1, completed_at = $2, reply = $3, error = $4 \
             WHERE id = $5 AND status IN ('pending', 'sent')",
        )
        .bind(status.as_str())
        .bind(at.trunc_subsecs(6))
        .bind(reply)
        .bind(error)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn command_by_reference(
        &self,
        imei: &str,
        reference: &str,
    ) -> Result<Option<DeviceCommand>, StoreError> {
        sqlx::query(
            "SELECT * FROM commands WHERE device_id = $1 AND status = 'sent' AND reference = $2 \
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
            "UPDATE commands SET status = 'expired', completed_at = $1, \
             error = 'expired before the device answered' \
             WHERE status IN ('pending', 'sent') AND expires_at <= $2 RETURNING *",
        )
        .bind(now.trunc_subsecs(6))
        .bind(now)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(command_from_row)
        .collect()
    }

    async fn next_command_expiry(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let next: Option<DateTime<Utc>> = sqlx::query_scalar(
            "SELECT MIN(expires_at) FROM commands WHERE status IN ('pending', 'sent')",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(next)
    }

    async fn create_token(
        &self,
        record: &TokenRecord,
        secret_sha256: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO api_tokens (id, role, label, secret_sha256, created_at, expires_at, \
             revoked_at, last_used_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(record.id)
        .bind(record.role.as_str())
        .bind(&record.label)
        .bind(secret_sha256)
        .bind(record.created_at)
        .bind(record.expires_at)
        .bind(record.revoked_at)
        .bind(record.last_used_at)
        .execute(&mut *tx)
        .await?;
        append_action(&mut tx, token_action("token.create", record)).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn token_by_hash(&self, secret_sha256: &str) -> Result<Option<TokenRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM api_tokens WHERE secret_sha256 = $1")
            .bind(secret_sha256)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| token_from_row(&row)).transpose()
    }

    async fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        sqlx::query("SELECT * FROM api_tokens ORDER BY created_at, id")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(token_from_row)
            .collect()
    }

    async fn revoke_token(&self, id: Uuid, at: DateTime<Utc>) -> Result<TokenRecord, StoreError> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2 \
             RETURNING *",
        )
        .bind(at)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| not_found("token", id))?;
        let record = token_from_row(&row)?;
        append_action(&mut tx, token_action("token.revoke", &record)).await?;
        tx.commit().await?;
        Ok(record)
    }

    async fn record_token_use(&self, id: Uuid, at: DateTime<Utc>) -> Result<(), StoreError> {
        // GREATEST ignores NULL: the first use sets it, later ones only move it forward.
        sqlx::query(
            "UPDATE api_tokens SET last_used_at = GREATEST(last_used_at, $1) WHERE id = $2",
        )
        .bind(at)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn token_count(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM api_tokens")
            .fetch_one(&self.pool)
            .await?;
        Ok(n.unsigned_abs())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn record_action(&self, action: NewAction) -> Result<ActionRecord, StoreError> {
        let mut tx = self.pool.begin().await?;
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
                "SELECT * FROM positions WHERE device_id = $1 AND chain_n > $2 \
                 ORDER BY chain_n, id LIMIT $3",
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
            sqlx::query("SELECT * FROM alerts WHERE chain_n > $1 ORDER BY chain_n, seq LIMIT $2")
                .bind(after)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(alert_record)
                .collect()
        } else if chain_name == chain::ACTIONS_CHAIN {
            sqlx::query("SELECT * FROM audit_actions WHERE chain_n > $1 ORDER BY chain_n LIMIT $2")
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
                    "SELECT hash FROM positions WHERE device_id = $1 AND chain_n = $2 LIMIT 1",
                )
                .bind(device)
                .bind(n)
                .fetch_optional(&self.pool)
                .await?
            } else if chain_name == chain::ALERTS_CHAIN {
                sqlx::query_scalar("SELECT hash FROM alerts WHERE chain_n = $1 LIMIT 1")
                    .bind(n)
                    .fetch_optional(&self.pool)
                    .await?
            } else if chain_name == chain::ACTIONS_CHAIN {
                sqlx::query_scalar("SELECT hash FROM audit_actions WHERE chain_n = $1")
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
            None => sqlx::query_scalar::<_, Uuid>(
                "SELECT id FROM alerts WHERE (chain_n IS NULL OR hash IS NULL) AND seq > \
                 (SELECT last_id FROM audit_legacy WHERE tbl = 'alerts') ORDER BY seq LIMIT 1",
            )
            .fetch_optional(&self.pool)
            .await?
            .map(|id| Unchained {
                table: "alerts",
                id: id.to_string(),
            }),
        };
        Ok((legacy.unsigned_abs(), foreign))
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
        let (sql, record): (&str, fn(&PgRow) -> Result<ChainRecord, StoreError>) = match table {
            ChainTable::Positions => (
                "SELECT * FROM positions WHERE person_id = $1 AND time >= $2 AND time <= $3 \
                 AND id > $4 ORDER BY id LIMIT $5",
                position_record,
            ),
            ChainTable::Alerts => (
                "SELECT * FROM alerts WHERE person_id = $1 AND time >= $2 AND time <= $3 \
                 AND seq > $4 ORDER BY seq LIMIT $5",
                alert_record,
            ),
            ChainTable::Actions => (
                "SELECT * FROM audit_actions WHERE person_id = $1 AND time >= $2 \
                 AND time <= $3 AND chain_n > $4 ORDER BY chain_n LIMIT $5",
                action_record,
            ),
        };
        sqlx::query(sql)
            .bind(person)
            .bind(from)
            .bind(to)
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
        let before = before.trunc_subsecs(6);
        let mut outcome = RetentionOutcome::default();
        let mut tx = self.pool.begin().await?;
        // No statement timeout: the first read scans the positions of every device.
        sqlx::query("SET LOCAL statement_timeout = 0")
            .execute(&mut *tx)
            .await?;
        // One retention run at a time.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('ewall_retention'))")
            .execute(&mut *tx)
            .await?;
        // Per device, the prefix of its chain older than the cutoff: up to its first record
        // kept, and beyond any checkpoint already written.
        let prefixes: Vec<(String, i64, Vec<u8>)> = sqlx::query_as(
            "WITH old AS (SELECT device_id, MAX(chain_n) AS last_old FROM positions \
                          WHERE chain_n > 0 AND time < $1 GROUP BY device_id), \
                  kept AS (SELECT device_id, MIN(chain_n) AS first_kept FROM positions \
                           WHERE chain_n > 0 AND time >= $1 AND device_id IN \
                           (SELECT device_id FROM old) GROUP BY device_id), \
                  prefix AS (SELECT old.device_id, \
                                    COALESCE(kept.first_kept - 1, old.last_old) AS n \
                             FROM old LEFT JOIN kept USING (device_id)) \
             SELECT prefix.device_id, prefix.n, p.hash FROM prefix \
             JOIN positions p ON p.device_id = prefix.device_id AND p.chain_n = prefix.n \
             LEFT JOIN audit_checkpoints c ON c.chain = 'positions:' || prefix.device_id \
             WHERE prefix.n > COALESCE(c.n, 0) AND p.hash IS NOT NULL",
        )
        .bind(before)
        .fetch_all(&mut *tx)
        .await?;
        let at = now();
        for (device, n, hash) in &prefixes {
            let mut checkpoint = Checkpoint {
                chain: chain::positions_chain(device),
                n: *n,
                hash: stored_hash("position", hash)?,
                before,
                at,
                signature: String::new(),
            };
            checkpoint.signature = chain::sign_checkpoint(key, &checkpoint);
            sqlx::query(
                "INSERT INTO audit_checkpoints (chain, n, hash, before, at, signature) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (chain) DO UPDATE SET \
                 n = EXCLUDED.n, hash = EXCLUDED.hash, before = EXCLUDED.before, \
                 at = EXCLUDED.at, signature = EXCLUDED.signature",
            )
            .bind(&checkpoint.chain)
            .bind(checkpoint.n)
            .bind(checkpoint.hash.to_vec())
            .bind(checkpoint.before)
            .bind(checkpoint.at)
            .bind(&checkpoint.signature)
            .execute(&mut *tx)
            .await?;
            outcome.checkpoints += 1;
        }
        // Whole days before the cutoff: each such partition is detached, the few rows in it
        // that are not yet in their chain's dropped prefix (a late fix committed after newer
        // ones) go back into the table (to positions_default), and the partition is dropped.
        let cutoff_day = before.date_naive();
        let partitions: Vec<String> = sqlx::query_scalar(
            "SELECT c.relname::text FROM pg_inherits i \
             JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent \
             WHERE p.relname = 'positions' AND c.relname ~ '^positions_[0-9]{8}$' \
             ORDER BY c.relname",
        )
        .fetch_all(&mut *tx)
        .await?;
        let dropped_through = "SELECT COALESCE(MAX(c.n), 0) FROM audit_checkpoints c \
                               WHERE c.chain = 'positions:' || x.device_id";
        for partition in partitions {
            let Ok(day) = NaiveDate::parse_from_str(&partition["positions_".len()..], "%Y%m%d")
            else {
                continue;
            };
            // The partition holds [day, day + 1): wholly old when the next day starts by the
            // cutoff.
            if day + Days::new(1) > cutoff_day {
                continue;
            }
            let rows: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {partition}"))
                .fetch_one(&mut *tx)
                .await?;
            sqlx::query(&format!(
                "ALTER TABLE positions DETACH PARTITION {partition}"
            ))
            .execute(&mut *tx)
            .await?;
            let kept = sqlx::query(&format!(
                "INSERT INTO positions SELECT x.* FROM {partition} x \
                 WHERE x.chain_n > ({dropped_through})"
            ))
            .execute(&mut *tx)
            .await?
            .rows_affected();
            sqlx::query(&format!("DROP TABLE {partition}"))
                .execute(&mut *tx)
                .await?;
            outcome.partitions_dropped += 1;
            outcome.positions_dropped += rows.unsigned_abs().saturating_sub(kept);
            if let Ok(mut known) = self.partitioned_days.lock() {
                known.remove(&day);
            }
        }
        // What is left of the dropped prefixes (rows in positions_default, or in the day of the
        // cutoff), and rows from before the trail that are older than the cutoff.
        let deleted = sqlx::query(&format!(
            "DELETE FROM positions x WHERE x.time < $1 AND ((x.chain_n > 0 AND x.chain_n <= \
             ({dropped_through})) OR (x.chain_n IS NULL AND x.id <= \
             (SELECT last_id FROM audit_legacy WHERE tbl = 'positions')))"
        ))
        .bind(before)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        outcome.positions_dropped += deleted;
        tx.commit().await?;
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 3, d).unwrap()
    }

    #[test]
    fn consecutive_days_are_grouped_into_runs() {
        assert_eq!(consecutive_runs(&[]), vec![]);
        assert_eq!(
            consecutive_runs(&[day(1), day(2), day(3), day(5), day(7), day(8)]),
            vec![(day(1), day(3)), (day(5), day(5)), (day(7), day(8))]
        );
    }

    #[test]
    fn a_batch_wants_today_tomorrow_and_its_backlog_days_only() {
        let fix = |y, m, d| Fix {
            device_id: "864717003283581".into(),
            person_id: new_id(),
            time: chrono::TimeZone::with_ymd_and_hms(&Utc, y, m, d, 12, 0, 0).unwrap(),
            received_at: Utc::now(),
            lat: 25.5,
            lon: 112.3,
            valid: true,
            accuracy_m: None,
            speed_kmh: None,
            course: None,
            altitude_m: None,
            satellites: None,
            hdop: None,
            source: PositionSource::Gps,
            battery_pct: None,
            archived: false,
            integrity_mismatch: false,
            protocol: "gt06".into(),
            wifi_bssids: Vec::new(),
            clock_skew: false,
            implausible: None,
            raw: Default::default(),
        };
        let today = day(20);
        let days = PgStore::days_for(
            &[
                fix(2026, 3, 18),
                fix(2026, 3, 18),
                fix(2026, 3, 25),
                fix(2001, 1, 1),
            ],
            today,
        );
        assert_eq!(days, [day(18), day(20), day(21)].into());
    }
}

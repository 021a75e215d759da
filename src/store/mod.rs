//! Durable state: persons, devices, zones, assignments, positions, alerts and API tokens.
//!
//! [`Store`] is the one interface the rest of the service uses; [`sqlite::SqliteStore`] is the
//! embedded default and [`postgres::PgStore`] the production database, chosen by the scheme of
//! `store.url` in [`open`]. Both pass the same store test suite (`tests/store_suite.rs`). Positions and the alerts they
//! raised are written together by [`writer::StoreWriter`] in one transaction per batch (group
//! commit); only after that commit are devices acknowledged.
//!
//! Every change that consumers are told of (an alert raised, an alert's state changed, a person
//! enrolled or released) appends an [`Event`] to the event feed *in the same transaction* as the
//! change (a transactional outbox). Events carry one strictly increasing `seq`; an alert's `seq`
//! is the `seq` of its `alert.raised` event. The dispatchers in `alert/` read the feed by cursor
//! and keep their cursors here, so a restart repeats only what a consumer had not acknowledged.
//!
//! The store knows nothing of wire protocols or geometry: zones are kept as GeoJSON text and
//! turned into shapes by the fence module above it.

pub mod chain;
pub mod handling;
pub mod health;
pub mod postgres;
pub mod reports;
pub mod sqlite;
pub mod supervision;
pub mod writer;

pub use handling::{AlertActionRequest, AlertStats, AlertStep};

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use reports::ReportRecords;
pub use supervision::{LeaveClosing, OpenEpisode, OrderStep, SupervisionRecords, TimerAlert};

use crate::model::{
    Alert, AlertAction, AlertId, BorderCheck, CommandId, CommandStatus, Crs, Device, DeviceCommand,
    DeviceHeard, Event, Fix, Person, PersonId, SupervisionLevel, ZoneId, ZoneKind, ZoneScope,
    ZoneWifi,
};
use crate::schedule::Schedule;

/// Errors of the store layer.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The thing asked for does not exist.
    #[error("{what} {id} not found")]
    NotFound {
        /// Kind of record.
        what: &'static str,
        /// Its identifier.
        id: String,
    },
    /// The change conflicts with existing records (a duplicate IMEI, a zone still assigned).
    #[error("{0}")]
    Conflict(String),
    /// The change refers to records that do not exist (an unknown person or zone id).
    #[error("{0}")]
    UnknownReference(String),
    /// A stored value could not be read back (a corrupt row).
    #[error("corrupt {what} row: {reason}")]
    Corrupt {
        /// Table.
        what: &'static str,
        /// What failed to parse.
        reason: String,
    },
    /// The store URL is not one this build supports.
    #[error("unsupported store url {0:?}; expected sqlite://PATH or postgres://USER@HOST/DB")]
    UnsupportedUrl(String),
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A schema migration failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl StoreError {
    /// Whether the error says the database could not be reached (connection refused or lost, no
    /// connection within `acquire_timeout`, the server shutting down or not yet accepting), as
    /// opposed to one it gave about the request. The same request may succeed once the database
    /// is back, so the store writer holds such a batch and retries it rather than failing it.
    pub fn is_unavailable(&self) -> bool {
        let StoreError::Database(e) = self else {
            return false;
        };
        match e {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::WorkerCrashed => true,
            // SQLSTATE class 08 (connection exception), admin or crash shutdown, "the database
            // system is starting up", too many connections.
            sqlx::Error::Database(db) => db.code().is_some_and(|code| {
                code.starts_with("08") || matches!(&*code, "57P01" | "57P02" | "57P03" | "53300")
            }),
            _ => false,
        }
    }
}

/// The `[store]` section: where data lives and how positions are batched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Database URL: `sqlite://PATH`, or `postgres://USER[:PASSWORD]@HOST[:PORT]/DB` (any
    /// libpq-style parameter, such as `?sslmode=require`, may follow). Empty means `ewall.db`
    /// in the data directory.
    pub url: String,
    /// Most positions committed in one transaction.
    pub batch_max: usize,
    /// How long a forming batch waits for more work. Zero commits what is queued at once,
    /// which gives the lowest latency; batches still grow under load because work queues up
    /// while the previous commit runs.
    #[serde(with = "humantime_serde")]
    pub batch_linger: Duration,
    /// Attempts at a batch the database refuses before its devices are told it failed (and so
    /// resend). A batch that cannot reach the database is held and retried until it can.
    pub commit_attempts: u32,
    /// PostgreSQL: most connections the pool opens (the store writer uses one at a time, the
    /// API the rest). SQLite keeps its own small pool.
    pub pool_max: u32,
    /// PostgreSQL: how long a request waits for a free connection before it fails.
    #[serde(with = "humantime_serde")]
    pub acquire_timeout: Duration,
    /// PostgreSQL: `statement_timeout` of every session; a statement running longer is
    /// cancelled (a failed commit is retried, then its devices resend).
    #[serde(with = "humantime_serde")]
    pub statement_timeout: Duration,
    /// Batches committed at the same time, each by a writer of its own to which a share of the
    /// fence shards send their work (so a device's positions always go through one writer, in
    /// order). PostgreSQL commits them concurrently and flushes their WAL together; SQLite has
    /// one writer. `0` chooses: 1 on SQLite, 2 on PostgreSQL.
    pub writers: usize,
}

impl StoreConfig {
    /// How many store writers run: `writers`, or the backend's choice when it is `0`.
    pub fn writer_count(&self) -> usize {
        match (self.writers, Backend::of(&self.url)) {
            (0, Some(Backend::Postgres)) => 2,
            (0, _) => 1,
            (n, _) => n,
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: String::new(),
            batch_max: 1000,
            batch_linger: Duration::ZERO,
            commit_attempts: 5,
            pool_max: 10,
            acquire_timeout: Duration::from_secs(10),
            statement_timeout: Duration::from_secs(30),
            writers: 0,
        }
    }
}

/// Fields of a new person.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewPerson {
    /// Name.
    pub name: String,
    /// Supervision level.
    pub level: SupervisionLevel,
    /// IANA time zone.
    pub timezone: String,
}

/// One person of a bulk registration ([`Store::register_persons`]): the person, the devices
/// bound to them and the zones assigned to them.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRegistration {
    /// The person.
    pub person: NewPerson,
    /// Devices to bind, in canonical form ([`crate::identity::canonical`]).
    pub devices: Vec<NewDevice>,
    /// Zones to assign, each once; none leaves the person unassigned.
    pub zones: Vec<ZoneId>,
}

/// A device of a [`NewRegistration`].
#[derive(Debug, Clone, PartialEq)]
pub struct NewDevice {
    /// Canonical device id.
    pub imei: String,
    /// The device model, when frames depend on it.
    pub model: Option<String>,
}

/// A person registered by [`Store::register_persons`], as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Registration {
    /// The person.
    pub person: Person,
    /// Their devices, in the order given.
    pub devices: Vec<Device>,
    /// Their zones, in the order given.
    pub zones: Vec<ZoneId>,
}

/// Fields of a person to change; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PersonPatch {
    /// New name.
    pub name: Option<String>,
    /// New level.
    pub level: Option<SupervisionLevel>,
    /// New time zone.
    pub timezone: Option<String>,
}

/// A zone as stored: geometry as WGS-84 GeoJSON text, converted from `source_crs` on entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ZoneRecord {
    /// Zone id.
    pub id: ZoneId,
    /// Name.
    pub name: String,
    /// Inclusion or exclusion.
    pub kind: ZoneKind,
    /// The datum the zone was drawn in.
    pub source_crs: Crs,
    /// Circle radius in metres, for circle zones (the geometry is then a Point).
    pub radius_m: Option<f64>,
    /// GeoJSON geometry object, WGS-84.
    pub geometry: String,
    /// Wi-Fi access points inside the zone (`properties.wifi`) and the learning window.
    pub wifi: ZoneWifi,
    /// Whom it applies to besides its per-person assignments (everyone, a level).
    pub scope: ZoneScope,
    /// The persons it is assigned to one by one: written with the zone by
    /// [`Store::create_zone`], read back from the assignments.
    pub persons: Vec<PersonId>,
    /// When it is in force (`properties.schedule`); `None`: always.
    pub schedule: Option<Schedule>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// The stored name of a zone scope: `persons`, `everyone` or `level:<level>`.
pub(crate) fn scope_name(scope: ZoneScope) -> String {
    match scope {
        ZoneScope::Persons => "persons".into(),
        ZoneScope::Everyone => "everyone".into(),
        ZoneScope::Level(level) => format!("level:{}", level.as_str()),
    }
}

/// A zone scope from its stored name.
pub(crate) fn parse_scope(name: &str) -> Result<ZoneScope, StoreError> {
    let corrupt = || StoreError::Corrupt {
        what: "zone",
        reason: format!("unknown scope {name:?}"),
    };
    match name {
        "persons" => Ok(ZoneScope::Persons),
        "everyone" => Ok(ZoneScope::Everyone),
        other => other
            .strip_prefix("level:")
            .and_then(|level| level.parse().ok())
            .map(ZoneScope::Level)
            .ok_or_else(corrupt),
    }
}

/// A zone's schedule from its stored JSON text.
pub(crate) fn parse_schedule(text: Option<&str>) -> Result<Option<Schedule>, StoreError> {
    text.map(|t| {
        serde_json::from_str(t).map_err(|e| StoreError::Corrupt {
            what: "zone",
            reason: format!("schedule: {e}"),
        })
    })
    .transpose()
}

/// API roles, from most to least powerful.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything, including tokens and deleting zones.
    Admin,
    /// The monitoring centre's day-to-day work.
    Operator,
    /// A machine consumer of the alert feed (the police entry-exit integration).
    Integration,
}

impl Role {
    /// The wire name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Integration => "integration",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admin" => Ok(Role::Admin),
            "operator" => Ok(Role::Operator),
            "integration" => Ok(Role::Integration),
            other => Err(format!(
                "unknown role {other:?}; expected admin, operator or integration"
            )),
        }
    }
}

/// A stored API token (the secret itself is never stored, only its SHA-256).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Token id (not secret).
    pub id: uuid::Uuid,
    /// What the token may do.
    pub role: Role,
    /// Free text saying who holds it.
    pub label: Option<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it stops working; `None` for never.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was revoked; a revoked token is refused.
    pub revoked_at: Option<DateTime<Utc>>,
    /// When it was last used, to within a minute (uses are recorded at most once a minute).
    pub last_used_at: Option<DateTime<Utc>>,
}

impl TokenRecord {
    /// Why the token may not be used at `now`, or `None` when it may.
    pub fn refusal(&self, now: DateTime<Utc>) -> Option<String> {
        if let Some(at) = self.revoked_at {
            return Some(format!("the token was revoked at {}", at.to_rfc3339()));
        }
        match self.expires_at {
            Some(at) if at <= now => Some(format!("the token expired at {}", at.to_rfc3339())),
            _ => None,
        }
    }
}

/// A breach episode still open, as the store's alerts record it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenBreach {
    /// Who.
    pub person_id: PersonId,
    /// Which zone.
    pub zone_id: ZoneId,
    /// The zone's kind, as the breach shows it (exit: inclusion, enter: exclusion).
    pub kind: ZoneKind,
    /// Fix time of the breach.
    pub since: DateTime<Utc>,
}

/// The newest valid fix time of one device, as the store's positions record it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceNewest {
    /// The device.
    pub device_id: String,
    /// The person its newest fix was attributed to.
    pub person_id: PersonId,
    /// Fix time of its newest valid position.
    pub time: DateTime<Utc>,
}

/// Which alerts to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AlertQuery {
    /// Only alerts with `seq` greater than this.
    pub after: i64,
    /// Only this person's alerts.
    pub person_id: Option<PersonId>,
    /// At most this many.
    pub limit: u32,
    /// Only alerts not yet closed (whatever their age: an operator's queue must hold them all).
    pub open_only: bool,
    /// The newest `limit` alerts after `after`, newest first, instead of the oldest in `seq`
    /// order (a queue shows the latest first; a cursor reader pages forwards).
    pub newest_first: bool,
}

/// Which events to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EventQuery {
    /// Only events with `seq` greater than this.
    pub after: i64,
    /// At most this many.
    pub limit: u32,
    /// Only alert events (`alert.raised` and `alert.<state>`), not filing events.
    pub alerts_only: bool,
}

/// Where a webhook delivery that failed every attempt stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Given up on; waits for someone to ask for a redelivery.
    Dead,
    /// A redelivery was asked for and has not been tried yet.
    Pending,
    /// Redelivered and acknowledged by the receiver.
    Delivered,
}

impl DeliveryState {
    /// The wire name.
    pub fn as_str(&self) -> &'static str {
        match self {
            DeliveryState::Dead => "dead",
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
        }
    }
}

impl std::str::FromStr for DeliveryState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "dead" => Ok(DeliveryState::Dead),
            "pending" => Ok(DeliveryState::Pending),
            "delivered" => Ok(DeliveryState::Delivered),
            other => Err(format!("unknown delivery state {other:?}")),
        }
    }
}

/// A webhook delivery that failed every attempt (a dead letter), with its event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookDelivery {
    /// The webhook's configured name.
    pub webhook: String,
    /// Where it stands.
    pub state: DeliveryState,
    /// Attempts made so far, redeliveries included.
    pub attempts: u32,
    /// What the last failed attempt saw (a status code, a connection error).
    pub last_error: String,
    /// When it was given up on (the last time, after a failed redelivery).
    pub dead_at: DateTime<Utc>,
    /// When a redelivery succeeded.
    pub delivered_at: Option<DateTime<Utc>>,
    /// The event it carries; its id is the delivery's id and the `webhook-id` sent.
    pub event: Event,
}

/// One request an integration token made, as the reads log keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct IntegrationRead {
    /// Position in the log, increasing; 0 until stored.
    pub seq: i64,
    /// The token that made it.
    #[schema(value_type = uuid::Uuid)]
    pub token_id: uuid::Uuid,
    /// When it was answered, UTC.
    pub at: DateTime<Utc>,
    /// `GET`, or `POST` for a border hit.
    pub method: String,
    /// The path as requested (`/api/v1/alerts`).
    pub path: String,
    /// The query string as sent, without the `?`; null without one.
    pub query: Option<String>,
    /// The HTTP status it was answered with (403 for a refused read).
    pub status: u16,
    /// How many records it was given: alerts or events in the page, the alert read, the
    /// events written to a stream.
    pub records: u64,
}

/// Which reads to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IntegrationReadQuery {
    /// Only this token's.
    pub token_id: Option<uuid::Uuid>,
    /// Only those answered at or after this time.
    pub from: Option<DateTime<Utc>>,
    /// Only those answered at or before this time.
    pub to: Option<DateTime<Utc>>,
    /// Only those with `seq` greater than this.
    pub after: i64,
    /// At most this many.
    pub limit: u32,
}

/// The border check of an alert row from its two columns (both set on a `border_hit` only).
pub(crate) fn border_from_row(
    port: Option<String>,
    reference: Option<String>,
) -> Option<BorderCheck> {
    Some(BorderCheck {
        port: port?,
        reference: reference?,
    })
}

/// Which chained table an audit read is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChainTable {
    /// `positions`: one chain per device.
    Positions,
    /// `alerts`: one chain.
    Alerts,
    /// `audit_actions`: one chain.
    Actions,
}

impl ChainTable {
    /// The table's name.
    pub fn table(&self) -> &'static str {
        match self {
            ChainTable::Positions => "positions",
            ChainTable::Alerts => "alerts",
            ChainTable::Actions => "audit_actions",
        }
    }
}

/// The service's durable state.
///
/// Every method is one short transaction; implementations are cheap to clone and share.
///
/// # The event feed
/// Methods that raise an alert ([`Store::commit`]), change an alert's state
/// ([`Store::record_alert_action`]) or enrol or release a person append their event inside their own
/// transaction, so an event exists exactly when its change does. Implementations must make events
/// visible in `seq` order: a reader that has seen `seq` N must never later see a new event below
/// N (SQLite gives this because write transactions are serialised; a server database must
/// take a lock around the append, as a sequence alone hands out numbers in start order, not in
/// commit order). After each commit that appended events they announce the newest `seq` on
/// [`Store::event_notices`].
#[async_trait]
pub trait Store: SupervisionRecords + ReportRecords + Send + Sync + 'static {
    /// Brings the schema up to date.
    async fn migrate(&self) -> Result<(), StoreError>;

    /// Creates a person.
    async fn create_person(&self, new: NewPerson) -> Result<Person, StoreError>;
    /// Creates persons with their devices and zone assignments in one transaction, each
    /// recorded as [`Store::create_person`], [`Store::create_device`],
    /// [`Store::set_device_model`] and [`Store::set_person_zones`] record theirs (the
    /// `person.create`, `device.bind`, `device.model` and `zone.assign` actions, and a
    /// `person.enrolled` event per person). All or nothing: an error names the item by its
    /// place, `persons[i]` or `persons[i].devices[j]` ([`StoreError::Conflict`] for a device
    /// already registered, [`StoreError::UnknownReference`] for an unknown zone), and nothing
    /// is stored then.
    async fn register_persons(
        &self,
        registrations: Vec<NewRegistration>,
    ) -> Result<Vec<Registration>, StoreError>;
    /// One person.
    async fn person(&self, id: PersonId) -> Result<Person, StoreError>;
    /// All persons, oldest first.
    async fn persons(&self) -> Result<Vec<Person>, StoreError>;
    /// Changes a person's fields.
    async fn update_person(&self, id: PersonId, patch: PersonPatch) -> Result<Person, StoreError>;
    /// Deletes a person with no devices bound; their positions and alerts stay for audit. Their
    /// orders not yet ended end in the same transaction, at the deletion or at their end date
    /// when that passed unrecorded (`order.end`; `order.ended` for those that had started).
    async fn delete_person(&self, id: PersonId) -> Result<(), StoreError>;

    /// Binds a device to a person.
    async fn create_device(&self, imei: &str, person_id: PersonId) -> Result<Device, StoreError>;
    /// One device.
    async fn device(&self, imei: &str) -> Result<Device, StoreError>;
    /// All devices.
    async fn devices(&self) -> Result<Vec<Device>, StoreError>;
    /// Unbinds a device.
    async fn delete_device(&self, imei: &str) -> Result<(), StoreError>;
    /// Sets (or, with `None`, clears) a device's model; returns the device.
    async fn set_device_model(&self, imei: &str, model: Option<&str>)
        -> Result<Device, StoreError>;
    /// Records the protocol a device connected with (a no-op for a device not registered).
    async fn set_device_protocol(&self, imei: &str, protocol: &str) -> Result<(), StoreError>;

    /// Stores a new command as given (status `pending`); returns it with its `seq`.
    async fn create_command(&self, command: &DeviceCommand) -> Result<DeviceCommand, StoreError>;
    /// One command.
    async fn command(&self, id: CommandId) -> Result<DeviceCommand, StoreError>;
    /// A device's commands, newest first, at most `limit`.
    async fn device_commands(
        &self,
        imei: &str,
        limit: u32,
    ) -> Result<Vec<DeviceCommand>, StoreError>;
    /// A device's `pending` commands not yet expired at `now`, oldest first: what to send when
    /// it connects.
    async fn pending_commands(
        &self,
        imei: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<DeviceCommand>, StoreError>;
    /// Moves a `pending` command to `sent` with the protocol and reply reference it went out
    /// with. False when it was no longer pending (expired or cancelled meanwhile).
    async fn mark_command_sent(
        &self,
        id: CommandId,
        protocol: &str,
        reference: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Moves a `sent` command back to `pending` (its write did not reach the device).
    async fn unmark_command_sent(&self, id: CommandId) -> Result<bool, StoreError>;
    /// Ends an open (pending or sent) command as `acknowledged`, `failed` or `expired`, with
    /// the device's answer or the reason. False when it had already ended.
    async fn complete_command(
        &self,
        id: CommandId,
        status: CommandStatus,
        detail: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// The oldest `sent` command of a device whose reply reference is `reference`: the one a
    /// device's answer carrying it is for.
    async fn command_by_reference(
        &self,
        imei: &str,
        reference: &str,
    ) -> Result<Option<DeviceCommand>, StoreError>;
    /// Ends every open command whose expiry is at or before `now` as `expired`; returns them.
    async fn expire_commands(&self, now: DateTime<Utc>) -> Result<Vec<DeviceCommand>, StoreError>;
    /// The earliest expiry among open commands.
    async fn next_command_expiry(&self) -> Result<Option<DateTime<Utc>>, StoreError>;

    /// Stores a zone and, in the same transaction, assigns it to `zone.persons`
    /// ([`StoreError::UnknownReference`] naming the first unknown person; nothing is stored
    /// then).
    async fn create_zone(&self, zone: &ZoneRecord) -> Result<(), StoreError>;
    /// One zone.
    async fn zone(&self, id: ZoneId) -> Result<ZoneRecord, StoreError>;
    /// All zones.
    async fn zones(&self) -> Result<Vec<ZoneRecord>, StoreError>;
    /// Adds learned Wi-Fi access points to a zone's list (those already listed are skipped;
    /// the list never grows beyond [`MAX_WIFI`](crate::fence::MAX_WIFI)). Returns the zone as
    /// stored.
    async fn add_zone_wifi(&self, id: ZoneId, bssids: &[String]) -> Result<ZoneRecord, StoreError>;
    /// Deletes a zone that no person is assigned.
    async fn delete_zone(&self, id: ZoneId) -> Result<(), StoreError>;

    /// Replaces the set of zones assigned to a person.
    async fn set_person_zones(&self, person: PersonId, zones: &[ZoneId]) -> Result<(), StoreError>;
    /// Zones assigned to a person.
    async fn person_zones(&self, person: PersonId) -> Result<Vec<ZoneId>, StoreError>;
    /// Every assignment, as (person, zone) pairs.
    async fn assignments(&self) -> Result<Vec<(PersonId, ZoneId)>, StoreError>;

    /// Writes positions and the alerts they raised in one transaction, assigning each alert its
    /// `seq`. Returns the alerts stored by this call.
    ///
    /// **One alert per episode in the queue.** At most one alert per (person, kind, zone) is
    /// not closed. An alert raised while one of its person, kind and zone is still being
    /// handled (stored, or earlier in the batch) is stored as a repeat of it (`repeat_of`),
    /// born closed by the service; so is an alert whose kind needs no handling
    /// (`implausible_jump`). Each is closed by an action of the service, stating why; the
    /// `alert.raised` event carries the closed alert, and no `alert.closed` follows. The check
    /// runs inside the transaction, after the lock that orders alert writers (and alert
    /// actions), so two writers cannot both open one.
    ///
    /// **Idempotent resends.** A position whose natural key (`device_id`, `time`, `lat`, `lon`)
    /// is already stored, or appears earlier in the same batch, is skipped without error: a
    /// device that resends after a lost acknowledgement gets its acknowledgement again and the
    /// record holds the fix once.
    ///
    /// **A batch may be committed again.** The store writer tries a batch again when the
    /// database could not be reached, which includes a connection lost after `COMMIT` was sent
    /// and before its answer came: the first try may have committed. An alert whose `id` is
    /// already stored is then left out (it is not stored twice, gets no second feed event, and
    /// is not in the returned list), and the positions are resends as above.
    ///
    /// **The alert cursor is exact.** `seq` is strictly increasing in commit order: once a
    /// reader sees an alert with `seq` = n, every alert with a smaller `seq` is already visible,
    /// so a consumer paging `after=` while alerts are written never skips one. SQLite gets this
    /// from its single writer; PostgreSQL takes the numbers from a counter row locked until
    /// the transaction commits, so transactions writing alerts commit one after another.
    async fn commit(&self, fixes: &[Fix], alerts: Vec<Alert>) -> Result<Vec<Alert>, StoreError> {
        self.commit_batch(fixes, alerts, &[]).await
    }

    /// [`Store::commit`], writing the devices' last-heard times
    /// ([`SupervisionRecords::record_heard`]) in the same transaction: the store writer's one
    /// durable write per batch.
    async fn commit_batch(
        &self,
        fixes: &[Fix],
        alerts: Vec<Alert>,
        heard: &[DeviceHeard],
    ) -> Result<Vec<Alert>, StoreError>;
    /// A person's positions with fix time in `[from, to]`, oldest first, at most `limit`.
    async fn track(
        &self,
        person: PersonId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Fix>, StoreError>;

    /// Zone breaches whose episode is still open: for each (person, zone), the newest live zone
    /// alert, when it is a `zone_exit`, `zone_enter`, `curfew` or `leave_overdue` (whose kind is
    /// then the zone's) rather than a `returned`. The fence
    /// engine resumes these after a restart.
    async fn open_breaches(&self) -> Result<Vec<OpenBreach>, StoreError>;

    /// For each (device, person) pair, the fix time of the newest valid position stored, leaving
    /// out those flagged `clock_skew` or `implausible` (they never become the newest). The
    /// fence engine restores each device's newest time from it at start, so a backlog arriving
    /// after a restart is judged late and never moves the current state back. Read once at
    /// start; implementations should answer from an index on (device, time).
    async fn newest_fix_times(&self) -> Result<Vec<DeviceNewest>, StoreError>;

    /// Alerts in ascending `seq` (see [`Store::commit`] for why paging by `seq` skips none).
    async fn alerts(&self, query: AlertQuery) -> Result<Vec<Alert>, StoreError>;
    /// One alert.
    async fn alert(&self, id: AlertId) -> Result<Alert, StoreError>;
    /// Takes a step of the handling chain on an alert: checks in one write transaction that
    /// the step follows from the alert's state as stored (see [`handling::plan`]), then
    /// writes the new state, one action per state passed (who, when, note) and one
    /// `alert.<state>` event per state passed, together. Returns the alert as it became.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] for an unknown alert; [`StoreError::Conflict`] for a step that
    /// would skip a state, go back or repeat one (nothing is written).
    async fn record_alert_action(
        &self,
        id: AlertId,
        request: AlertActionRequest,
    ) -> Result<Alert, StoreError>;
    /// The steps taken on an alert, oldest first.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] for an unknown alert.
    async fn alert_actions(&self, id: AlertId) -> Result<Vec<AlertAction>, StoreError>;
    /// Counts of the alerts raised in `[from, to)`, by kind, zone, severity, supervision level,
    /// state and disposition, with the false-alarm rate.
    async fn alert_stats(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<AlertStats, StoreError>;

    /// Raises a `border_hit` alert (`alert.border` set) with its `alert.raised` event, as
    /// [`Store::commit`] raises any alert, unless an alert was already raised under the same
    /// `border.reference`: then nothing is written and that alert is returned. The flag says
    /// whether this call raised it. The check and the insert are one transaction.
    /// [`StoreError::UnknownReference`] when the person does not exist.
    async fn raise_border_hit(&self, alert: Alert) -> Result<(Alert, bool), StoreError>;

    /// Appends one request of an integration token to the reads log.
    async fn record_integration_read(&self, read: &IntegrationRead) -> Result<(), StoreError>;
    /// The reads log in ascending `seq`.
    async fn integration_reads(
        &self,
        query: IntegrationReadQuery,
    ) -> Result<Vec<IntegrationRead>, StoreError>;

    /// Events in ascending `seq`.
    async fn events(&self, query: EventQuery) -> Result<Vec<Event>, StoreError>;
    /// The newest `seq` in the feed; 0 while it is empty.
    async fn last_event_seq(&self) -> Result<i64, StoreError>;
    /// Carries the newest `seq` after each commit that appended events: a wake-up for readers
    /// of the feed, which then read the store by cursor (the value is a hint, never the data).
    fn event_notices(&self) -> tokio::sync::watch::Receiver<i64>;

    /// The cursor of a dispatcher: every event up to it has been acknowledged by its consumer.
    /// A consumer seen for the first time starts at the current end of the feed, and that
    /// start is stored at once, so what is appended after it is never skipped.
    async fn dispatch_cursor(&self, consumer: &str) -> Result<i64, StoreError>;
    /// Moves a dispatcher's cursor forward (never back).
    async fn set_dispatch_cursor(&self, consumer: &str, seq: i64) -> Result<(), StoreError>;

    /// Records that webhook `webhook` gave up on event `seq` after `attempts`, and moves the
    /// dispatcher's cursor (`consumer`) past it, in one transaction.
    async fn dead_letter(
        &self,
        webhook: &str,
        consumer: &str,
        seq: i64,
        attempts: u32,
        error: &str,
    ) -> Result<(), StoreError>;
    /// A webhook's dead letters and redeliveries (only those in `state`, when given),
    /// ascending by event `seq`, after `after`.
    async fn webhook_deliveries(
        &self,
        webhook: &str,
        state: Option<DeliveryState>,
        after: i64,
        limit: u32,
    ) -> Result<Vec<WebhookDelivery>, StoreError>;
    /// Asks for a redelivery of the dead letter of event `event_id`, or of every dead letter of
    /// the webhook with `None`; returns how many were marked. Already pending or delivered
    /// ones are left alone.
    async fn request_redelivery(
        &self,
        webhook: &str,
        event_id: Option<uuid::Uuid>,
    ) -> Result<u64, StoreError>;
    /// Records the outcome of one redelivery attempt: delivered, or dead again with the error.
    async fn redelivery_done(
        &self,
        webhook: &str,
        seq: i64,
        outcome: Result<(), String>,
    ) -> Result<(), StoreError>;

    /// Stores a token's hash.
    async fn create_token(
        &self,
        record: &TokenRecord,
        secret_sha256: &str,
    ) -> Result<(), StoreError>;
    /// The token whose secret hashes to `secret_sha256`, if any, revoked and expired ones
    /// included (the caller says why it refuses them).
    async fn token_by_hash(&self, secret_sha256: &str) -> Result<Option<TokenRecord>, StoreError>;
    /// Every token, oldest first (no secrets: the store has only their hashes).
    async fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError>;
    /// Revokes a token at `at`; revoking it again keeps the first time. Returns the record.
    /// [`StoreError::NotFound`] for an unknown id.
    async fn revoke_token(
        &self,
        id: uuid::Uuid,
        at: DateTime<Utc>,
    ) -> Result<TokenRecord, StoreError>;
    /// Records that a token was used at `at` (callers throttle this; see `api::auth`).
    async fn record_token_use(&self, id: uuid::Uuid, at: DateTime<Utc>) -> Result<(), StoreError>;
    /// How many tokens exist.
    async fn token_count(&self) -> Result<u64, StoreError>;

    /// One round trip to the database (`SELECT 1`), for readiness probes.
    ///
    /// # Errors
    /// The database's error when it cannot be reached.
    async fn ping(&self) -> Result<(), StoreError>;

    // The audit trail (see `store::chain` and the README's "Audit" section).
    //
    // Every method above that changes persons, devices, zones, assignments, tokens or an
    // alert's state records its action in the actions chain inside its own transaction, under
    // the actor of `chain::with_actor`. Code that adds a new kind of operator action records it
    // the same way: inside its transaction with the backend's `append_action`, or, for an
    // action with no change of its own, with `record_action`.

    /// Records an action in the actions chain, in a transaction of its own.
    async fn record_action(
        &self,
        action: chain::NewAction,
    ) -> Result<chain::ActionRecord, StoreError>;
    /// The newest record of every chain.
    async fn chain_heads(&self) -> Result<Vec<chain::ChainHead>, StoreError>;
    /// Every device that has positions stored, chained or not.
    async fn position_devices(&self) -> Result<Vec<String>, StoreError>;
    /// The chained records of `chain` with `n > after`, ascending by `n`, at most `limit`.
    async fn chain_records(
        &self,
        chain: &str,
        after: i64,
        limit: u32,
    ) -> Result<Vec<chain::ChainRecord>, StoreError>;
    /// The hash stored with record `n` of `chain`, if that record is stored.
    async fn chain_hash(&self, chain: &str, n: i64) -> Result<Option<chain::Hash>, StoreError>;
    /// How many rows carry no hash because they were stored before the audit trail existed,
    /// and the first row that carries none although stored after (written around ewall).
    async fn unchained(&self) -> Result<(u64, Option<chain::Unchained>), StoreError>;
    /// Every retention checkpoint.
    async fn checkpoints(&self) -> Result<Vec<chain::Checkpoint>, StoreError>;
    /// The records of `table` concerning `person` with time in `[from, to]` and a paging key
    /// above `after` (row id, alert `seq`, action `n`), ascending by it, at most `limit`.
    async fn person_records(
        &self,
        table: ChainTable,
        person: PersonId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        after: i64,
        limit: u32,
    ) -> Result<Vec<chain::ChainRecord>, StoreError>;
    /// Retention: drops positions with fix time before `before`, each device's chain only from
    /// its start (a position is dropped once every earlier one of its chain is), and moves each
    /// chain's checkpoint, signed with `key`, to the last record dropped.
    async fn drop_positions_before(
        &self,
        before: DateTime<Utc>,
        key: &[u8],
    ) -> Result<chain::RetentionOutcome, StoreError>;
}

/// Opens the store named by `url` with the default [`StoreConfig`] and migrates it.
///
/// # Errors
/// As [`open_with`].
pub async fn open(url: &str) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    open_with(url, &StoreConfig::default()).await
}

/// Opens the store named by `url` and migrates it: `sqlite://PATH` (the file is created if
/// missing) or `postgres://...` / `postgresql://...` (the database must exist), with the pool
/// size and timeouts of `config`.
///
/// # Errors
/// [`StoreError::UnsupportedUrl`] for other schemes; database and migration errors.
pub async fn open_with(
    url: &str,
    config: &StoreConfig,
) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    let store: std::sync::Arc<dyn Store> = match Backend::of(url) {
        Some(Backend::Sqlite) => std::sync::Arc::new(sqlite::SqliteStore::open(url).await?),
        Some(Backend::Postgres) => std::sync::Arc::new(postgres::PgStore::open(url, config).await?),
        None => return Err(StoreError::UnsupportedUrl(redact_url(url))),
    };
    store.migrate().await?;
    Ok(store)
}

/// The refusal of zone ids that name no zone. `item` says where they were given
/// (`persons[3]` in a bulk registration), or is empty.
pub(crate) fn unknown_zones(item: &str, zones: &[ZoneId]) -> StoreError {
    let ids: Vec<String> = zones.iter().map(ZoneId::to_string).collect();
    let prefix = if item.is_empty() {
        String::new()
    } else {
        format!("{item}: ")
    };
    StoreError::UnknownReference(format!("{prefix}unknown zone id(s): {}", ids.join(", ")))
}

/// `url` with any password replaced by `***`, for messages and logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((credentials, host)) => match credentials.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// The databases a store URL can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `sqlite:`
    Sqlite,
    /// `postgres:` or `postgresql:`
    Postgres,
}

impl Backend {
    /// The backend a URL names by its scheme, if this build has it.
    pub fn of(url: &str) -> Option<Backend> {
        if url.starts_with("sqlite:") {
            Some(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Backend::Postgres)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_their_backend() {
        assert_eq!(Backend::of("sqlite://x/ewall.db"), Some(Backend::Sqlite));
        assert_eq!(Backend::of("postgres://u@h/db"), Some(Backend::Postgres));
        assert_eq!(Backend::of("postgresql://u@h/db"), Some(Backend::Postgres));
        assert_eq!(Backend::of("mysql://u@h/db"), None);
        assert_eq!(Backend::of("postgres:db"), None);
    }

    #[test]
    fn passwords_never_reach_a_message() {
        assert_eq!(
            redact_url("postgres://ewall:s3cret@db.example:5432/ewall?sslmode=require"),
            "postgres://ewall:***@db.example:5432/ewall?sslmode=require"
        );
        assert_eq!(
            redact_url("postgres://ewall@db/ewall"),
            "postgres://ewall@db/ewall"
        );
        assert_eq!(
            redact_url("sqlite://./ewall-data/ewall.db"),
            "sqlite://./ewall-data/ewall.db"
        );
        let err = StoreError::UnsupportedUrl(redact_url("mysql://u:pw@h/db"));
        assert!(!err.to_string().contains("pw"), "{err}");
    }

    #[test]
    fn a_lost_or_refused_connection_is_an_outage_and_a_refused_request_is_not() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(StoreError::Database(sqlx::Error::Io(refused)).is_unavailable());
        assert!(StoreError::Database(sqlx::Error::PoolTimedOut).is_unavailable());
        assert!(!StoreError::Database(sqlx::Error::RowNotFound).is_unavailable());
        assert!(!StoreError::Database(sqlx::Error::PoolClosed).is_unavailable());
        assert!(!StoreError::Conflict("duplicate".into()).is_unavailable());
    }
}

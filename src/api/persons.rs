//! `/api/v1/persons`: the supervised persons, their zone assignments and their tracks.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::auth::Caller;
use super::body::JsonObject;
use super::openapi::{self as doc, FeatureCollectionType, FeatureType, PointGeometry};
use super::problem::Problem;
use super::{parse_id, AppState};
use crate::model::{Person, SupervisionLevel, ZoneId};
use crate::store::{NewPerson, PersonPatch, Role};

/// Roles that manage persons and assignments.
const MANAGERS: &[Role] = &[Role::Admin, Role::Operator];
/// Roles that may read.
/// The monitoring centre; the integration reads alerts only.
const READERS: &[Role] = &[Role::Admin, Role::Operator];
/// Most positions one track request returns.
const TRACK_LIMIT_MAX: u32 = 100_000;

/// Body of `POST /persons`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PersonBody {
    /// Name as the supervising authority records it.
    #[schema(schema_with = doc::name_schema)]
    name: String,
    /// Supervision level; `normal` when absent.
    #[serde(default)]
    #[schema(value_type = Option<SupervisionLevel>)]
    level: Option<String>,
    /// IANA time zone the person's schedules are read in; `fence.default_timezone`
    /// (`Asia/Shanghai` unless configured) when absent.
    #[serde(default)]
    #[schema(schema_with = doc::optional_timezone_schema)]
    timezone: Option<String>,
}

/// Body of `PATCH /persons/{id}`: the fields to change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PersonPatchBody {
    /// New name.
    #[serde(default)]
    #[schema(schema_with = doc::optional_name_schema)]
    name: Option<String>,
    /// New supervision level.
    #[serde(default)]
    #[schema(value_type = Option<SupervisionLevel>)]
    level: Option<String>,
    /// New IANA time zone.
    #[serde(default)]
    #[schema(schema_with = doc::optional_timezone_schema)]
    timezone: Option<String>,
}

/// `GET /persons`.
#[derive(Debug, Serialize, ToSchema)]
pub struct PersonList {
    /// Every person, oldest first.
    pub persons: Vec<Person>,
}

/// A person's zone assignment.
#[derive(Debug, Serialize, ToSchema)]
pub struct ZoneAssignment {
    /// The person.
    pub person_id: Uuid,
    /// The zones assigned, each once.
    #[schema(value_type = Vec<Uuid>)]
    pub zone_ids: Vec<ZoneId>,
}

pub(super) fn check_name(name: &str) -> Result<String, Problem> {
    super::text::check_name("name", name)
}

pub(super) fn check_level(level: &str) -> Result<SupervisionLevel, Problem> {
    level.parse().map_err(Problem::unprocessable)
}

pub(super) fn check_timezone(tz: &str) -> Result<String, Problem> {
    tz.parse::<chrono_tz::Tz>()
        .map(|_| tz.to_owned())
        .map_err(|_| {
            Problem::unprocessable(format!(
                "timezone {tz:?} is not an IANA time zone name such as \"Asia/Shanghai\""
            ))
        })
}

/// Creates a person.
#[utoipa::path(
    post, path = "/api/v1/persons", tag = "persons",
    security(("bearer" = [])),
    request_body = PersonBody,
    responses(
        (status = 201, description = "The person, created.", body = Person),
        (status = 415, response = doc::UnsupportedMediaType),
    ),
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonObject(body): JsonObject<PersonBody>,
) -> Result<(StatusCode, Json<Person>), Problem> {
    caller.require(MANAGERS, "create persons")?;
    let new = NewPerson {
        name: check_name(&body.name)?,
        level: body
            .level
            .as_deref()
            .map(check_level)
            .transpose()?
            .unwrap_or_default(),
        timezone: match body.timezone.as_deref() {
            Some(tz) => check_timezone(tz)?,
            None => state.default_timezone.name().to_owned(),
        },
    };
    let person = state.store.create_person(new).await?;
    state.registry.person_saved(&person);
    state
        .notices
        .send(crate::supervision::Notice::PersonSaved(person.clone()));
    Ok((StatusCode::CREATED, Json(person)))
}

/// Lists persons.
#[utoipa::path(
    get, path = "/api/v1/persons", tag = "persons",
    security(("bearer" = [])),
    responses((status = 200, description = "Every person.", body = PersonList)),
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<PersonList>, Problem> {
    caller.require(READERS, "list persons")?;
    let persons = state.store.persons().await?;
    Ok(Json(PersonList { persons }))
}

/// One person.
#[utoipa::path(
    get, path = "/api/v1/persons/{id}", tag = "persons",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Person id.")),
    responses((status = 200, description = "The person.", body = Person)),
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Person>, Problem> {
    caller.require(READERS, "read persons")?;
    let id = parse_id("person", &id)?;
    Ok(Json(state.store.person(id).await?))
}

/// Changes a person. A new supervision level takes effect on the person's next message, and
/// each of their devices whose protocol can carry it is sent a `set_interval` command with the
/// level's `report_interval_s` (queued for a device that is offline).
#[utoipa::path(
    patch, path = "/api/v1/persons/{id}", tag = "persons",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Person id.")),
    request_body = PersonPatchBody,
    responses(
        (status = 200, description = "The person, changed.", body = Person),
        (status = 415, response = doc::UnsupportedMediaType),
    ),
)]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonObject(body): JsonObject<PersonPatchBody>,
) -> Result<Json<Person>, Problem> {
    caller.require(MANAGERS, "change persons")?;
    let id = parse_id("person", &id)?;
    let patch = PersonPatch {
        name: body.name.as_deref().map(check_name).transpose()?,
        level: body.level.as_deref().map(check_level).transpose()?,
        timezone: body.timezone.as_deref().map(check_timezone).transpose()?,
    };
    let before = match patch.level {
        Some(_) => Some(state.store.person(id).await?.level),
        None => None,
    };
    let person = state.store.update_person(id, patch).await?;
    state.registry.person_saved(&person);
    if before.is_some_and(|level| level != person.level) {
        let seconds = state.levels.get(person.level).report_interval_s;
        // The level is saved and in force; a device not told its interval now is told at the
        // next level change, so this is logged rather than failing the request.
        if let Err(e) = super::commands::queue_reporting_interval(&state, person.id, seconds).await
        {
            tracing::error!(person = %person.id, error = %e, "Reporting interval not queued for the new level.");
        }
    }
    state
        .notices
        .send(crate::supervision::Notice::PersonSaved(person.clone()));
    Ok(Json(person))
}

/// Deletes a person who has no devices; their positions and alerts remain, and their
/// monitoring orders not yet ended end with the deletion.
#[utoipa::path(
    delete, path = "/api/v1/persons/{id}", tag = "persons",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Person id.")),
    responses(
        (status = 204, description = "Deleted."),
        (status = 409, response = doc::Conflict),
    ),
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    caller.require(&[Role::Admin], "delete persons")?;
    let id = parse_id("person", &id)?;
    state.store.delete_person(id).await?;
    state.registry.person_deleted(id);
    state
        .notices
        .send(crate::supervision::Notice::PersonDeleted(id));
    state.reload_zones().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Body of `PUT /persons/{id}/zones`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ZonesBody {
    /// The zones the person is to have, replacing any others; repeats count once.
    #[schema(value_type = Vec<Uuid>)]
    zone_ids: Vec<String>,
}

/// Replaces a person's zones.
#[utoipa::path(
    put, path = "/api/v1/persons/{id}/zones", tag = "persons",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Person id.")),
    request_body = ZonesBody,
    responses(
        (status = 200, description = "The assignment now in force.", body = ZoneAssignment),
        (status = 415, response = doc::UnsupportedMediaType),
    ),
)]
pub async fn set_zones(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonObject(body): JsonObject<ZonesBody>,
) -> Result<Json<ZoneAssignment>, Problem> {
    caller.require(MANAGERS, "assign zones")?;
    let id = parse_id("person", &id)?;
    let mut zone_ids: Vec<ZoneId> = Vec::with_capacity(body.zone_ids.len());
    for raw in &body.zone_ids {
        let zone = raw
            .parse()
            .map_err(|_| Problem::unprocessable(format!("zone id {raw:?} is not a zone id")))?;
        if !zone_ids.contains(&zone) {
            zone_ids.push(zone);
        }
    }
    if !zone_ids.is_empty() {
        let zones = state.store.zones().await?;
        if let Some(shared) = zones
            .iter()
            .find(|z| z.scope.is_shared() && zone_ids.contains(&z.id))
        {
            return Err(Problem::unprocessable(format!(
                "zone {} is shared ({}); it applies without a per-person assignment",
                shared.id,
                match shared.scope {
                    crate::model::ZoneScope::Level(level) => format!("level {}", level.as_str()),
                    _ => "everyone".to_owned(),
                }
            )));
        }
    }
    state.store.set_person_zones(id, &zone_ids).await?;
    state.reload_zones().await?;
    Ok(Json(ZoneAssignment {
        person_id: id,
        zone_ids,
    }))
}

/// A person's zones.
#[utoipa::path(
    get, path = "/api/v1/persons/{id}/zones", tag = "persons",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Person id.")),
    responses((status = 200, description = "The person's zones.", body = ZoneAssignment)),
)]
pub async fn zones(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<ZoneAssignment>, Problem> {
    caller.require(READERS, "read assignments")?;
    let id = parse_id("person", &id)?;
    let zone_ids = state.store.person_zones(id).await?;
    Ok(Json(ZoneAssignment {
        person_id: id,
        zone_ids,
    }))
}

/// Query of `GET /persons/{id}/track`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TrackQuery {
    /// Start of the window, RFC 3339; 24 hours before `to` when absent. Not after `to`.
    #[serde(default)]
    #[param(value_type = Option<DateTime<Utc>>)]
    from: Option<String>,
    /// End of the window, RFC 3339; now when absent.
    #[serde(default)]
    #[param(value_type = Option<DateTime<Utc>>)]
    to: Option<String>,
    /// Most positions returned, oldest first (default 10,000).
    #[serde(default)]
    #[param(minimum = 1, maximum = 100_000)]
    limit: Option<u32>,
}

/// A person's track: GeoJSON Points, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct Track {
    /// Always `FeatureCollection`.
    #[serde(rename = "type")]
    pub kind: FeatureCollectionType,
    /// One Point per stored position.
    pub features: Vec<TrackPoint>,
}

/// One stored position as a GeoJSON Point Feature.
#[derive(Debug, Serialize, ToSchema)]
pub struct TrackPoint {
    /// Always `Feature`.
    #[serde(rename = "type")]
    pub kind: FeatureType,
    /// The position, `[lon, lat]` in WGS-84.
    pub geometry: PointGeometry,
    /// What the device reported with it.
    pub properties: TrackProperties,
}

/// The stored fields of a position besides its coordinates.
#[derive(Debug, Serialize, ToSchema)]
pub struct TrackProperties {
    /// Fix time, UTC.
    pub time: DateTime<Utc>,
    /// When the server received it, UTC.
    pub received_at: DateTime<Utc>,
    /// The device that sent it.
    pub device_id: String,
    /// Speed, km/h.
    pub speed_kmh: Option<f64>,
    /// Course, degrees.
    pub course: Option<f64>,
    /// Accuracy radius the device stated, metres.
    pub accuracy_m: Option<f64>,
    /// Whether the device marked the fix valid.
    pub valid: bool,
    /// Where the position came from.
    pub source: doc::Source,
    /// Satellites used.
    pub satellites: Option<u8>,
    /// Battery charge, percent.
    pub battery_pct: Option<u8>,
    /// Re-sent from the device's backlog.
    pub archived: bool,
    /// The frame's checksum or length did not match (accepted leniently).
    pub integrity_mismatch: bool,
    /// Protocol it arrived on.
    pub protocol: String,
    /// The fix time was ahead of the receipt by more than `ingest.max_fix_ahead`: evaluated as
    /// late, never the newest.
    pub clock_skew: bool,
    /// Why the fix cannot be believed, with the values as sent; null for a plausible fix. Such
    /// a fix never drives the fence.
    pub implausible: Option<String>,
    /// Received while no monitoring order of the person was current, under `[supervision]
    /// require_order`: stored, but fenced by nothing.
    pub outside_order: bool,
}

fn parse_time(key: &str, raw: &str) -> Result<DateTime<Utc>, Problem> {
    DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            Problem::bad_request(format!(
                "`{key}` must be an RFC 3339 time such as 2026-01-31T08:00:00Z: {e}"
            ))
        })
}

/// A person's positions as a GeoJSON FeatureCollection of Points, oldest first. Without
/// `from`/`to` it covers the last 24 hours.
#[utoipa::path(
    get, path = "/api/v1/persons/{id}/track", tag = "persons",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Person id."), TrackQuery),
    responses((status = 200, description = "The positions in the window.", body = Track)),
)]
pub async fn track(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    query: Result<Query<TrackQuery>, QueryRejection>,
) -> Result<Json<Track>, Problem> {
    caller.require(READERS, "read tracks")?;
    let id = parse_id("person", &id)?;
    let Query(query) = query?;
    let to = query
        .to
        .as_deref()
        .map(|t| parse_time("to", t))
        .transpose()?
        .unwrap_or_else(Utc::now);
    let from = query
        .from
        .as_deref()
        .map(|t| parse_time("from", t))
        .transpose()?
        .unwrap_or(to - Duration::hours(24));
    if from > to {
        return Err(Problem::bad_request("`from` is after `to`"));
    }
    let limit = query.limit.unwrap_or(10_000);
    if limit == 0 || limit > TRACK_LIMIT_MAX {
        return Err(Problem::bad_request(format!(
            "`limit` must be between 1 and {TRACK_LIMIT_MAX}"
        )));
    }
    state.store.person(id).await?;
    let fixes = state.store.track(id, from, to, limit).await?;
    let orders = if state.supervision.require_order {
        Some(state.store.orders(id).await?)
    } else {
        None
    };
    let outside_order = |received: DateTime<Utc>| {
        orders.as_ref().is_some_and(|orders| {
            !orders.iter().any(|o| {
                o.started_at.is_some_and(|s| s <= received)
                    && o.ended_at.is_none_or(|e| received < e)
            })
        })
    };
    let features = fixes
        .into_iter()
        .map(|f| TrackPoint {
            kind: FeatureType::Feature,
            geometry: PointGeometry::new(f.lon, f.lat),
            properties: TrackProperties {
                time: f.time,
                received_at: f.received_at,
                device_id: f.device_id,
                speed_kmh: f.speed_kmh,
                course: f.course,
                accuracy_m: f.accuracy_m,
                valid: f.valid,
                source: f.source.into(),
                satellites: f.satellites,
                battery_pct: f.battery_pct,
                archived: f.archived,
                integrity_mismatch: f.integrity_mismatch,
                protocol: f.protocol,
                clock_skew: f.clock_skew,
                outside_order: outside_order(f.received_at),
                implausible: f.implausible,
            },
        })
        .collect();
    Ok(Json(Track {
        kind: FeatureCollectionType::FeatureCollection,
        features,
    }))
}

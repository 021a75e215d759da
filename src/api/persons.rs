//! `/api/v1/persons`: the supervised persons, their zone assignments and their tracks.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::Caller;
use super::problem::Problem;
use super::{parse_id, AppState};
use crate::model::{Person, SupervisionLevel, ZoneId};
use crate::store::{NewPerson, PersonPatch, Role};

/// Roles that manage persons and assignments.
const MANAGERS: &[Role] = &[Role::Admin, Role::Operator];
/// Roles that may read.
const READERS: &[Role] = &[Role::Admin, Role::Operator, Role::Integration];
/// Most positions one track request returns.
const TRACK_LIMIT_MAX: u32 = 100_000;

/// Body of `POST /persons`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonBody {
    name: String,
    #[serde(default)]
    level: Option<String>,
    #[serde(default)]
    timezone: Option<String>,
}

/// Body of `PATCH /persons/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonPatchBody {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    level: Option<String>,
    #[serde(default)]
    timezone: Option<String>,
}

fn check_name(name: &str) -> Result<String, Problem> {
    super::text::check_name("name", name)
}

fn check_level(level: &str) -> Result<SupervisionLevel, Problem> {
    level.parse().map_err(Problem::unprocessable)
}

fn check_timezone(tz: &str) -> Result<String, Problem> {
    tz.parse::<chrono_tz::Tz>()
        .map(|_| tz.to_owned())
        .map_err(|_| {
            Problem::unprocessable(format!(
                "timezone {tz:?} is not an IANA time zone name such as \"Asia/Shanghai\""
            ))
        })
}

/// Creates a person.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<PersonBody>, JsonRejection>,
) -> Result<(StatusCode, Json<Person>), Problem> {
    caller.require(MANAGERS, "create persons")?;
    let Json(body) = body?;
    let new = NewPerson {
        name: check_name(&body.name)?,
        level: body
            .level
            .as_deref()
            .map(check_level)
            .transpose()?
            .unwrap_or_default(),
        timezone: check_timezone(body.timezone.as_deref().unwrap_or("Asia/Shanghai"))?,
    };
    let person = state.store.create_person(new).await?;
    state.registry.person_saved(&person);
    Ok((StatusCode::CREATED, Json(person)))
}

/// Lists persons.
pub async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, Problem> {
    caller.require(READERS, "list persons")?;
    let persons = state.store.persons().await?;
    Ok(Json(json!({ "persons": persons })))
}

/// One person.
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Person>, Problem> {
    caller.require(READERS, "read persons")?;
    let id = parse_id("person", &id)?;
    Ok(Json(state.store.person(id).await?))
}

/// Changes a person.
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<PersonPatchBody>, JsonRejection>,
) -> Result<Json<Person>, Problem> {
    caller.require(MANAGERS, "change persons")?;
    let id = parse_id("person", &id)?;
    let Json(body) = body?;
    let patch = PersonPatch {
        name: body.name.as_deref().map(check_name).transpose()?,
        level: body.level.as_deref().map(check_level).transpose()?,
        timezone: body.timezone.as_deref().map(check_timezone).transpose()?,
    };
    let person = state.store.update_person(id, patch).await?;
    state.registry.person_saved(&person);
    Ok(Json(person))
}

/// Deletes a person who has no devices; their positions and alerts remain.
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    caller.require(&[Role::Admin], "delete persons")?;
    let id = parse_id("person", &id)?;
    state.store.delete_person(id).await?;
    state.registry.person_deleted(id);
    state.reload_zones().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Body of `PUT /persons/{id}/zones`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZonesBody {
    zone_ids: Vec<String>,
}

/// Replaces a person's zones.
pub async fn set_zones(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<ZonesBody>, JsonRejection>,
) -> Result<Json<Value>, Problem> {
    caller.require(MANAGERS, "assign zones")?;
    let id = parse_id("person", &id)?;
    let Json(body) = body?;
    let mut zone_ids: Vec<ZoneId> = Vec::with_capacity(body.zone_ids.len());
    for raw in &body.zone_ids {
        let zone = raw
            .parse()
            .map_err(|_| Problem::unprocessable(format!("zone id {raw:?} is not a zone id")))?;
        if !zone_ids.contains(&zone) {
            zone_ids.push(zone);
        }
    }
    state.store.set_person_zones(id, &zone_ids).await?;
    state.reload_zones().await?;
    Ok(Json(json!({ "person_id": id, "zone_ids": zone_ids })))
}

/// A person's zones.
pub async fn zones(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, Problem> {
    caller.require(READERS, "read assignments")?;
    let id = parse_id("person", &id)?;
    let zone_ids = state.store.person_zones(id).await?;
    Ok(Json(json!({ "person_id": id, "zone_ids": zone_ids })))
}

/// Query of `GET /persons/{id}/track`.
#[derive(Debug, Deserialize)]
pub struct TrackQuery {
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    limit: Option<u32>,
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
pub async fn track(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    query: Result<Query<TrackQuery>, QueryRejection>,
) -> Result<Json<Value>, Problem> {
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
    let features: Vec<Value> = fixes
        .iter()
        .map(|f| {
            json!({
                "type": "Feature",
                "geometry": { "type": "Point", "coordinates": [f.lon, f.lat] },
                "properties": {
                    "time": f.time.to_rfc3339_opts(SecondsFormat::AutoSi, true),
                    "received_at": f.received_at.to_rfc3339_opts(SecondsFormat::AutoSi, true),
                    "device_id": f.device_id,
                    "speed_kmh": f.speed_kmh,
                    "course": f.course,
                    "accuracy_m": f.accuracy_m,
                    "valid": f.valid,
                    "source": f.source,
                    "satellites": f.satellites,
                    "battery_pct": f.battery_pct,
                    "archived": f.archived,
                    "integrity_mismatch": f.integrity_mismatch,
                    "protocol": f.protocol,
                }
            })
        })
        .collect();
    Ok(Json(
        json!({ "type": "FeatureCollection", "features": features }),
    ))
}

//! `/api/v1/zones`: zones as GeoJSON Features. A zone comes in drawn in WGS-84, GCJ-02 or BD-09
//! (`properties.crs`) and is stored and served in WGS-84; the datum it was drawn in is kept as
//! `properties.source_crs`. Invalid GeoJSON is refused with 422 and the reason.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{SubsecRound, Utc};
use serde_json::{json, Value};

use super::auth::Caller;
use super::problem::Problem;
use super::{parse_id, AppState};
use crate::fence::{zone_to_feature, ZoneSpec};
use crate::model::{new_id, ZoneShape};
use crate::registry::zone_from_record;
use crate::store::{Role, ZoneRecord};

const CREATORS: &[Role] = &[Role::Admin, Role::Operator];
const READERS: &[Role] = &[Role::Admin, Role::Operator, Role::Integration];

/// The stored zone as a Feature, or a 500 for a row that no longer reads.
fn feature(record: &ZoneRecord) -> Result<Value, Problem> {
    let zone = zone_from_record(record).map_err(|e| {
        tracing::error!(error = %e, "A stored zone no longer reads.");
        Problem::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    })?;
    let feature = zone_to_feature(&zone, record.source_crs);
    let mut value = serde_json::to_value(feature).unwrap_or(Value::Null);
    value["properties"]["created_at"] = json!(record.created_at);
    Ok(value)
}

/// Creates a zone from a GeoJSON Feature.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), Problem> {
    caller.require(CREATORS, "create zones")?;
    let text = std::str::from_utf8(&body)
        .map_err(|_| Problem::unprocessable("the body is not UTF-8 text"))?;
    let spec = ZoneSpec::parse(text)
        .map_err(|e| Problem::unprocessable(format!("invalid zone GeoJSON: {e}")))?;
    let crs = spec.crs;
    let zone = spec.into_zone(new_id());
    let radius_m = match &zone.shape {
        ZoneShape::Circle { radius_m, .. } => Some(*radius_m),
        ZoneShape::Area(_) => None,
    };
    let geometry = zone_to_feature(&zone, crs)
        .geometry
        .map(|g| g.to_string())
        .ok_or_else(|| Problem::unprocessable("the zone has no geometry"))?;
    let record = ZoneRecord {
        id: zone.id,
        name: zone.name.clone(),
        kind: zone.kind,
        source_crs: crs,
        radius_m,
        geometry,
        // The store keeps microseconds; return what a later read returns.
        created_at: Utc::now().trunc_subsecs(6),
    };
    state.store.create_zone(&record).await?;
    state.reload_zones().await?;
    Ok((StatusCode::CREATED, Json(feature(&record)?)))
}

/// Every zone, as a FeatureCollection.
pub async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, Problem> {
    caller.require(READERS, "list zones")?;
    let features = state
        .store
        .zones()
        .await?
        .iter()
        .map(feature)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(
        json!({ "type": "FeatureCollection", "features": features }),
    ))
}

/// One zone, as a Feature.
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, Problem> {
    caller.require(READERS, "read zones")?;
    let id = parse_id("zone", &id)?;
    Ok(Json(feature(&state.store.zone(id).await?)?))
}

/// Deletes a zone no person is assigned.
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    caller.require(&[Role::Admin], "delete zones")?;
    let id = parse_id("zone", &id)?;
    state.store.delete_zone(id).await?;
    state.reload_zones().await?;
    Ok(StatusCode::NO_CONTENT)
}

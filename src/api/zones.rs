//! `/api/v1/zones`: zones as GeoJSON Features. A zone comes in drawn in WGS-84, GCJ-02 or BD-09
//! (`properties.crs`) and is stored and served in WGS-84; the datum it was drawn in is kept as
//! `properties.source_crs`. Invalid GeoJSON is refused with 422 and the reason, and so are zones
//! the engine cannot represent: one that crosses the antimeridian (a ring edge spanning more
//! than 180 degrees of longitude, or a circle reaching past ±180 or over a pole; draw such an
//! area as a MultiPolygon split at the line) and a name that is empty, over 200 characters or
//! holds control characters ([`super::text`]). The body limit of `POST /zones` is its own,
//! `http.max_zone_body_bytes`.
//!
//! A zone is assigned to persons one by one (`PUT /persons/{id}/zones`, or listed in
//! `properties.assigned_to` when it is created), or shared: assigned to everyone or to every
//! person at a supervision level, defined once (a border post, an airport). Its
//! `properties.assigned_to` says which, and `GET /zones?assigned_to=<person id>` lists the
//! zones that apply to one person. `properties.schedule` makes a zone apply only in weekly
//! windows of the person's local time ([`crate::schedule`]); a bad day or time is a 422.

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::auth::Caller;
use super::openapi::{self as doc, FeatureCollectionType, FeatureType};
use super::problem::Problem;
use super::text::check_name;
use super::{parse_id, AppState};
use crate::fence::{zone_to_feature, ZoneSpec};
use crate::model::{new_id, Crs, PersonId, SupervisionLevel, ZoneKind, ZoneScope, ZoneShape};
use crate::registry::zone_from_record;
use crate::schedule::WindowText;
use crate::store::{Role, ZoneRecord};

const CREATORS: &[Role] = &[Role::Admin, Role::Operator];
/// The monitoring centre; the integration reads alerts only.
const READERS: &[Role] = &[Role::Admin, Role::Operator];

/// A zone's geometry: a Point (with `properties.radius_m`, a circle), a Polygon or a
/// MultiPolygon. Rings close (last position equals the first) and enclose some area; at most
/// a million positions in all; no edge may cross the antimeridian.
#[derive(Debug, Serialize, ToSchema)]
#[serde(tag = "type")]
pub enum ZoneGeometry {
    /// The centre of a circle.
    Point {
        /// `[lon, lat]`.
        #[schema(schema_with = doc::position_schema)]
        coordinates: Vec<f64>,
    },
    /// One area with optional holes.
    Polygon {
        /// Exterior ring, then holes.
        #[schema(schema_with = doc::polygon_schema)]
        coordinates: Vec<Vec<Vec<f64>>>,
    },
    /// Several areas.
    MultiPolygon {
        /// Polygons.
        #[schema(schema_with = doc::multi_polygon_schema)]
        coordinates: Vec<Vec<Vec<Vec<f64>>>>,
    },
}

/// Body of `POST /zones`: a GeoJSON Feature.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "type": "Feature",
    "properties": {"name": "home", "kind": "inclusion", "crs": "gcj02"},
    "geometry": {"type": "Polygon", "coordinates": [[
        [112.36, 25.51], [112.38, 25.51], [112.38, 25.53], [112.36, 25.53], [112.36, 25.51]
    ]]}
}))]
pub struct NewZone {
    /// Always `Feature`.
    #[serde(rename = "type")]
    pub kind: FeatureType,
    /// The zone's shape, in the datum `properties.crs` names.
    pub geometry: ZoneGeometry,
    /// What the zone is.
    pub properties: NewZoneProperties,
}

/// The properties of a new zone; other members are ignored.
#[derive(Debug, Serialize, ToSchema)]
pub struct NewZoneProperties {
    /// Shown to operators.
    #[schema(schema_with = doc::name_schema)]
    pub name: String,
    /// Whether the person must stay inside or keep out.
    pub kind: ZoneKind,
    /// The datum the geometry is drawn in; `wgs84` when absent.
    #[schema(nullable = true)]
    pub crs: Option<Crs>,
    /// Radius of a circle (Point geometry only), metres.
    #[schema(exclusive_minimum = 0.0, maximum = 1_000_000.0, nullable = true)]
    pub radius_m: Option<f64>,
    /// BSSIDs of Wi-Fi access points inside the zone (`aa:bb:cc:dd:ee:ff`, `AA-BB-…` or 12
    /// hex digits); a device that sees one is inside.
    #[schema(nullable = true, max_items = 64)]
    pub wifi: Option<Vec<String>>,
    /// End of the enrolment period in which access points seen while definitely inside are
    /// learned into `wifi`.
    #[schema(nullable = true)]
    pub wifi_learn_until: Option<chrono::DateTime<Utc>>,
    /// Whom the zone applies to; assigned to no one yet (`PUT /persons/{id}/zones` adds
    /// persons) when absent.
    #[schema(nullable = true)]
    pub assigned_to: Option<AssignedTo>,
    /// Weekly windows, in the person's time zone, in which the zone applies; always when
    /// absent. A scheduled inclusion zone is a curfew (its breach raises `curfew`).
    #[schema(nullable = true, min_items = 1, max_items = 32)]
    pub schedule: Option<Vec<WindowText>>,
}

/// Whom a zone applies to (`properties.assigned_to`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "scope", rename_all = "snake_case", deny_unknown_fields)]
pub enum AssignedTo {
    /// Every supervised person.
    Everyone,
    /// Every person supervised at `level`.
    Level {
        /// The level.
        level: SupervisionLevel,
    },
    /// The persons listed (and any assigned later through `PUT /persons/{id}/zones`).
    Persons {
        /// Person ids.
        #[schema(value_type = Vec<Uuid>, max_items = 10_000)]
        persons: Vec<Uuid>,
    },
}

/// Most persons `properties.assigned_to` may list.
const MAX_LISTED_PERSONS: usize = 10_000;

impl AssignedTo {
    /// Reads `properties.assigned_to` of a zone Feature's JSON text (absent or null: listed
    /// persons, none yet).
    fn of_body(text: &str) -> Result<AssignedTo, Problem> {
        let body: Value = serde_json::from_str(text)
            .map_err(|e| Problem::unprocessable(format!("invalid zone GeoJSON: {e}")))?;
        match body.pointer("/properties/assigned_to") {
            None | Some(Value::Null) => Ok(AssignedTo::Persons {
                persons: Vec::new(),
            }),
            Some(value) => {
                let assigned: AssignedTo = serde_json::from_value(value.clone()).map_err(|e| {
                    Problem::unprocessable(format!(
                        "properties.assigned_to must be {{\"scope\": \"everyone\"}}, \
                         {{\"scope\": \"level\", \"level\": \"strict\"}} or \
                         {{\"scope\": \"persons\", \"persons\": [person ids]}}: {e}"
                    ))
                })?;
                if let AssignedTo::Persons { persons } = &assigned {
                    if persons.len() > MAX_LISTED_PERSONS {
                        return Err(Problem::unprocessable(format!(
                            "properties.assigned_to lists {} persons; at most \
                             {MAX_LISTED_PERSONS} are allowed (assign the zone to everyone or \
                             to a level instead)",
                            persons.len()
                        )));
                    }
                }
                Ok(assigned)
            }
        }
    }

    /// The scope and the persons to assign.
    fn into_parts(self) -> (ZoneScope, Vec<PersonId>) {
        match self {
            AssignedTo::Everyone => (ZoneScope::Everyone, Vec::new()),
            AssignedTo::Level { level } => (ZoneScope::Level(level), Vec::new()),
            AssignedTo::Persons { mut persons } => {
                persons.sort_unstable();
                persons.dedup();
                (ZoneScope::Persons, persons)
            }
        }
    }

    fn of_record(record: &ZoneRecord) -> AssignedTo {
        match record.scope {
            ZoneScope::Everyone => AssignedTo::Everyone,
            ZoneScope::Level(level) => AssignedTo::Level { level },
            ZoneScope::Persons => AssignedTo::Persons {
                persons: record.persons.clone(),
            },
        }
    }
}

/// A stored zone as a GeoJSON Feature, in WGS-84.
#[derive(Debug, Serialize, ToSchema)]
pub struct ZoneFeature {
    /// Always `Feature`.
    #[serde(rename = "type")]
    pub kind: FeatureType,
    /// Zone id.
    pub id: Uuid,
    /// The shape, converted to WGS-84.
    pub geometry: ZoneGeometry,
    /// What the zone is.
    pub properties: ZoneProperties,
}

/// The properties of a stored zone.
#[derive(Debug, Serialize, ToSchema)]
pub struct ZoneProperties {
    /// Shown to operators.
    pub name: String,
    /// Whether the person must stay inside or keep out.
    pub kind: ZoneKind,
    /// Always `wgs84`: the geometry was converted.
    pub crs: Crs,
    /// The datum the zone was drawn in.
    pub source_crs: Crs,
    /// Radius of a circle, metres.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub radius_m: Option<f64>,
    /// Wi-Fi access points inside the zone, lower-case with colons (absent when none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wifi: Option<Vec<String>>,
    /// End of the Wi-Fi enrolment period, if one was set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wifi_learn_until: Option<chrono::DateTime<Utc>>,
    /// Whom the zone applies to.
    pub assigned_to: AssignedTo,
    /// The weekly windows in which it applies (absent: always).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Vec<WindowText>>,
    /// When the zone was created.
    pub created_at: chrono::DateTime<Utc>,
}

/// `GET /zones`: every zone as a FeatureCollection.
#[derive(Debug, Serialize, ToSchema)]
pub struct ZoneCollection {
    /// Always `FeatureCollection`.
    #[serde(rename = "type")]
    pub kind: FeatureCollectionType,
    /// One Feature per zone.
    pub features: Vec<ZoneFeature>,
}

/// The stored zone as a Feature, or a 500 for a row that no longer reads.
fn feature(record: &ZoneRecord) -> Result<Value, Problem> {
    let zone = zone_from_record(record).map_err(|e| {
        tracing::error!(error = %e, "A stored zone no longer reads.");
        Problem::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    })?;
    let feature = zone_to_feature(&zone, record.source_crs);
    let mut value = serde_json::to_value(feature).unwrap_or(Value::Null);
    value["properties"]["created_at"] = json!(record.created_at);
    value["properties"]["assigned_to"] = json!(AssignedTo::of_record(record));
    Ok(value)
}

/// Creates a zone from a GeoJSON Feature.
#[utoipa::path(
    post, path = "/api/v1/zones", tag = "zones",
    security(("bearer" = [])),
    request_body(content = NewZone, content_type = "application/json"),
    responses((status = 201, description = "The zone as stored, in WGS-84.", body = ZoneFeature)),
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), Problem> {
    caller.require(CREATORS, "create zones")?;
    let text = std::str::from_utf8(&body)
        .map_err(|_| Problem::unprocessable("the body is not UTF-8 text"))?;
    let mut spec = ZoneSpec::parse(text)
        .map_err(|e| Problem::unprocessable(format!("invalid zone GeoJSON: {e}")))?;
    spec.name = check_name("properties.name", &spec.name)?;
    if let Some(reason) = antimeridian_crossing(&spec.shape) {
        return Err(Problem::unprocessable(reason));
    }
    let (scope, persons) = AssignedTo::of_body(text)?.into_parts();
    let crs = spec.crs;
    let mut zone = spec.into_zone(new_id());
    zone.scope = scope;
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
        wifi: zone.wifi.clone(),
        scope,
        persons,
        schedule: zone.schedule.clone(),
        // The store keeps microseconds; return what a later read returns.
        created_at: Utc::now().trunc_subsecs(6),
    };
    state.store.create_zone(&record).await?;
    state.reload_zones().await?;
    Ok((StatusCode::CREATED, Json(feature(&record)?)))
}

/// Mean Earth radius, metres, for the circle test below.
const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// Why a zone crosses the antimeridian (or covers a pole, which comes to the same), or `None`.
fn antimeridian_crossing(shape: &ZoneShape) -> Option<String> {
    match shape {
        ZoneShape::Area(polygons) => {
            for (p, polygon) in polygons.0.iter().enumerate() {
                let rings = std::iter::once(polygon.exterior()).chain(polygon.interiors());
                for (r, ring) in rings.enumerate() {
                    for line in ring.lines() {
                        let span = (line.end.x - line.start.x).abs();
                        if span > 180.0 {
                            return Some(format!(
                                "polygon {p} ring {r} crosses the antimeridian between \
                                 ({}, {}) and ({}, {}); zones must not cross it: split the \
                                 area at longitude 180 into a MultiPolygon",
                                line.start.x, line.start.y, line.end.x, line.end.y
                            ));
                        }
                    }
                }
            }
            None
        }
        ZoneShape::Circle { center, radius_m } => {
            // Half the longitude span of a spherical cap of this radius at this latitude.
            let angular = radius_m / EARTH_RADIUS_M;
            let cos_lat = center.y().to_radians().cos();
            let reach = angular.sin() / cos_lat;
            let half_span = if reach >= 1.0 {
                f64::INFINITY
            } else {
                reach.asin().to_degrees()
            };
            (center.x().abs() + half_span > 180.0).then(|| {
                format!(
                    "a circle of {radius_m} m around ({}, {}) reaches across the antimeridian \
                     or over a pole; zones must not cross it: draw it as a MultiPolygon split at \
                     longitude 180",
                    center.x(),
                    center.y()
                )
            })
        }
    }
}

/// Query of `GET /zones`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ZoneListQuery {
    /// Only the zones that apply to this person: assigned to them, to everyone, or to their
    /// supervision level.
    #[serde(default)]
    #[param(value_type = Option<Uuid>)]
    assigned_to: Option<String>,
}

/// Every zone, or the zones that apply to one person, as a FeatureCollection.
#[utoipa::path(
    get, path = "/api/v1/zones", tag = "zones",
    security(("bearer" = [])),
    params(ZoneListQuery),
    responses(
        (status = 200, description = "The zones.", body = ZoneCollection),
        (status = 404, response = doc::NotFound),
    ),
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<ZoneListQuery>, QueryRejection>,
) -> Result<Json<Value>, Problem> {
    caller.require(READERS, "list zones")?;
    let Query(query) = query?;
    let person = match query.assigned_to.as_deref() {
        None => None,
        Some(raw) => {
            let id: PersonId = raw.parse().map_err(|_| {
                Problem::bad_request(format!("`assigned_to` {raw:?} is not a person id"))
            })?;
            Some(state.store.person(id).await?)
        }
    };
    let features = state
        .store
        .zones()
        .await?
        .iter()
        .filter(|record| {
            person.as_ref().is_none_or(|p| {
                record.scope.covers(p.level)
                    || (record.scope == ZoneScope::Persons && record.persons.contains(&p.id))
            })
        })
        .map(feature)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(
        json!({ "type": "FeatureCollection", "features": features }),
    ))
}

/// One zone, as a Feature.
#[utoipa::path(
    get, path = "/api/v1/zones/{id}", tag = "zones",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Zone id.")),
    responses((status = 200, description = "The zone.", body = ZoneFeature)),
)]
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
#[utoipa::path(
    delete, path = "/api/v1/zones/{id}", tag = "zones",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Zone id.")),
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
    caller.require(&[Role::Admin], "delete zones")?;
    let id = parse_id("zone", &id)?;
    state.store.delete_zone(id).await?;
    state.reload_zones().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use geo::{polygon, MultiPolygon, Point};

    #[test]
    fn ring_edges_over_180_degrees_cross_the_antimeridian() {
        let crossing = polygon![(x: 179.5, y: -17.0), (x: -179.5, y: -17.0), (x: -179.5, y: -16.0), (x: 179.5, y: -16.0)];
        let reason = antimeridian_crossing(&ZoneShape::Area(MultiPolygon(vec![crossing])));
        assert!(reason.unwrap().contains("antimeridian"));
        let west = polygon![(x: 179.0, y: -17.0), (x: 180.0, y: -17.0), (x: 180.0, y: -16.0), (x: 179.0, y: -16.0)];
        assert_eq!(
            antimeridian_crossing(&ZoneShape::Area(MultiPolygon(vec![west]))),
            None
        );
    }

    #[test]
    fn circles_reaching_past_the_line_or_over_a_pole_cross_it() {
        let circle = |lon: f64, lat: f64, radius_m: f64| ZoneShape::Circle {
            center: Point::new(lon, lat),
            radius_m,
        };
        // At 16.8 S a degree of longitude is about 106.5 km.
        assert!(antimeridian_crossing(&circle(179.99, -16.8, 5_000.0)).is_some());
        assert!(antimeridian_crossing(&circle(-179.99, -16.8, 5_000.0)).is_some());
        assert!(antimeridian_crossing(&circle(179.9, -16.8, 5_000.0)).is_none());
        assert!(antimeridian_crossing(&circle(0.0, 89.99, 5_000.0)).is_some());
        assert!(antimeridian_crossing(&circle(112.36, 25.51, 1_000.0)).is_none());
    }
}

//! Zones in and out of GeoJSON: parsing, validation and datum conversion.
//!
//! Role in the pipeline: the API's `POST /zones` and the `ewall fence` CLI hand zone GeoJSON to
//! this module and get back a [`ZoneSpec`] whose geometry is WGS-84, ready to store and to
//! prepare; `GET /zones` turns a stored [`Zone`] back into a Feature with [`zone_to_feature`].
//! Nothing here touches the store or per-person state.
//!
//! # What a zone looks like
//!
//! A GeoJSON Feature (or a FeatureCollection of them, for the CLI):
//!
//! ```json
//! {"type": "Feature",
//!  "properties": {"name": "home", "kind": "inclusion", "crs": "gcj02"},
//!  "geometry": {"type": "Polygon", "coordinates": [[[112.1, 25.1], ...]]}}
//! ```
//!
//! * `name` (required, non-empty) and `kind` (required: `inclusion` or `exclusion`).
//! * `crs` (optional): `wgs84` (default), `gcj02` or `bd09`; the geometry is converted to WGS-84
//!   vertex by vertex ([`crs`](super::crs)), and the source datum is kept in
//!   [`ZoneSpec::crs`].
//! * `wifi` (optional): BSSIDs of Wi-Fi access points inside the zone (the home router), as
//!   an array of MAC address strings (`AA:BB:CC:DD:EE:FF`, `aa-bb-…` or 12 bare hex digits),
//!   at most [`MAX_WIFI`]; stored lower-case with colons. A device that reports seeing one is
//!   inside the zone (see the fence engine's semantics).
//! * `wifi_learn_until` (optional, RFC 3339): the end of the enrolment period during which
//!   access points the person's devices see while definitely inside the zone are learned into
//!   `wifi` (see the fence engine's semantics for the rule).
//! * `schedule` (optional): when the zone is in force, a list of weekly windows
//!   `[{"days": ["mon", …], "from": "22:00", "to": "06:00"}]` read in the person's time zone
//!   (see [`crate::schedule`]); a scheduled inclusion zone is a curfew.
//! * Geometry: `Polygon` or `MultiPolygon` (holes respected; rings must have at least 4
//!   positions, the last equal to the first, and enclose some area; the ring orientation is not
//!   checked), or a `Point` with `radius_m` > 0 (metres, at most [`MAX_RADIUS_M`]) for a circle.
//!   Longitude must lie in [-180, 180], latitude in [-90, 90]; extra position members (altitude)
//!   are ignored. At most [`MAX_VERTICES`] positions per zone.
//!
//! Rings are not checked for self-intersection: the engine uses the even-odd rule, under which a
//! self-intersecting ring still has a well-defined inside, and checking is quadratic in the
//! worst case. Zones must not cross the antimeridian.
//!
//! # Errors
//!
//! Every rejection is a [`ZoneError`] variant that names the offending value and where it is
//! (polygon and ring index, feature index in a collection), so the person who drew the zone can
//! fix it.

use geo::{Coord, LineString, MultiPolygon, Point, Polygon};
use geojson::{
    Feature, FeatureCollection, GeoJson, Geometry, GeometryValue, JsonObject, JsonValue,
};
use thiserror::Error;

use super::crs::to_wgs84;
use crate::model::{normalize_bssid, Crs, Zone, ZoneId, ZoneKind, ZoneScope, ZoneShape, ZoneWifi};
use crate::schedule::Schedule;

/// Most positions a zone may have (all rings of all parts together). The largest real boundary
/// we use, Hunan province, has 19,374; a million leaves room for detailed coastlines while
/// keeping one zone's preparation well under a second.
pub const MAX_VERTICES: usize = 1_000_000;
/// Most Wi-Fi access points a zone may list.
pub const MAX_WIFI: usize = 64;
/// Largest circle radius, metres. Beyond this a circle is better drawn as a polygon.
pub const MAX_RADIUS_M: f64 = 1_000_000.0;

/// Why a zone was rejected.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ZoneError {
    /// The text is not GeoJSON.
    #[error("not valid GeoJSON: {0}")]
    InvalidGeoJson(String),
    /// A different GeoJSON object than the one expected.
    #[error("expected a {expected}, found a {found}")]
    UnexpectedType {
        /// What was expected ("Feature", "FeatureCollection").
        expected: &'static str,
        /// What was found.
        found: String,
    },
    /// A Feature without geometry.
    #[error("the feature has no geometry")]
    MissingGeometry,
    /// `properties.name` is absent or empty.
    #[error("properties.name is missing or empty; every zone needs a name")]
    MissingName,
    /// `properties.kind` is absent.
    #[error("properties.kind is missing; use \"inclusion\" or \"exclusion\"")]
    MissingKind,
    /// `properties.kind` is not a known kind.
    #[error("unknown zone kind {0:?}; use \"inclusion\" or \"exclusion\"")]
    UnknownKind(String),
    /// `properties.crs` is not a known datum.
    #[error("unknown crs {0:?}; use \"wgs84\", \"gcj02\" or \"bd09\"")]
    UnknownCrs(String),
    /// A property has the wrong JSON type.
    #[error("properties.{key} must be {expected}, found {found}")]
    BadProperty {
        /// The property.
        key: &'static str,
        /// The JSON type it must have.
        expected: &'static str,
        /// The value found, as JSON.
        found: String,
    },
    /// A geometry type zones cannot have.
    #[error("unsupported geometry type {0}; use Polygon, MultiPolygon, or Point with radius_m")]
    UnsupportedGeometry(String),
    /// A MultiPolygon with no polygons, or a polygon with no rings.
    #[error("the geometry is empty")]
    EmptyGeometry,
    /// A ring with fewer than 4 positions.
    #[error("polygon {polygon} ring {ring} has {positions} positions; a ring needs at least 4 (the last repeating the first)")]
    RingTooShort {
        /// Polygon index (0 for a Polygon).
        polygon: usize,
        /// Ring index (0 = exterior, then holes).
        ring: usize,
        /// Positions found.
        positions: usize,
    },
    /// A ring whose last position differs from its first.
    #[error(
        "polygon {polygon} ring {ring} is not closed: it starts at {first:?} and ends at {last:?}"
    )]
    RingNotClosed {
        /// Polygon index.
        polygon: usize,
        /// Ring index.
        ring: usize,
        /// First position (lon, lat).
        first: [f64; 2],
        /// Last position (lon, lat).
        last: [f64; 2],
    },
    /// A ring that encloses no area (all positions on one line).
    #[error("polygon {polygon} ring {ring} encloses no area")]
    DegenerateRing {
        /// Polygon index.
        polygon: usize,
        /// Ring index.
        ring: usize,
    },
    /// A position with fewer than two numbers.
    #[error("a position has {0} number(s); it needs longitude and latitude")]
    PositionTooShort(usize),
    /// A coordinate that is not a number, or out of range.
    #[error("coordinate ({lon}, {lat}) is out of range: longitude must be in [-180, 180], latitude in [-90, 90]")]
    CoordinateOutOfRange {
        /// Longitude given.
        lon: f64,
        /// Latitude given.
        lat: f64,
    },
    /// More positions than [`MAX_VERTICES`].
    #[error("the zone has more than {max} positions; simplify it")]
    TooManyVertices {
        /// The cap.
        max: usize,
    },
    /// A Point without `radius_m`.
    #[error("a Point zone is a circle and needs properties.radius_m (metres, > 0)")]
    CircleWithoutRadius,
    /// `radius_m` not in (0, [`MAX_RADIUS_M`]].
    #[error("radius_m {0} is out of range; it must be more than 0 and at most 1000000 metres")]
    BadRadius(f64),
    /// `properties.wifi` is not a list of MAC addresses.
    #[error("wifi: {0}; expected a list of at most 64 MAC addresses like \"aa:bb:cc:dd:ee:ff\"")]
    BadWifi(String),
    /// `properties.schedule` is not a valid schedule.
    #[error("{0}")]
    BadSchedule(#[from] crate::schedule::ScheduleError),
    /// `radius_m` given for a polygon.
    #[error("radius_m ({0}) is only for Point zones; a polygon's boundary is its extent")]
    RadiusOnArea(f64),
    /// A feature of a collection was rejected.
    #[error("feature {index}{}: {source}", name.as_ref().map(|n| format!(" ({n:?})")).unwrap_or_default())]
    Feature {
        /// Index in the collection.
        index: usize,
        /// Its name, when it has one.
        name: Option<String>,
        /// Why.
        source: Box<ZoneError>,
    },
}

/// The descriptive part of a zone, as `properties` carries it.
#[derive(Debug, Clone, PartialEq)]
pub struct ZoneProperties {
    /// Human name.
    pub name: String,
    /// Inclusion or exclusion.
    pub kind: ZoneKind,
    /// Datum the geometry is drawn in.
    pub crs: Crs,
    /// Circle radius in metres (Point geometries only).
    pub radius_m: Option<f64>,
    /// Access points inside the zone, normalised, and the learning window (module docs).
    pub wifi: ZoneWifi,
    /// When the zone is in force; `None`: always.
    pub schedule: Option<Schedule>,
}

/// A validated zone, geometry converted to WGS-84, not yet stored (no id).
#[derive(Debug, Clone, PartialEq)]
pub struct ZoneSpec {
    /// Human name.
    pub name: String,
    /// Inclusion or exclusion.
    pub kind: ZoneKind,
    /// The datum the zone was drawn in (its geometry here is already WGS-84).
    pub crs: Crs,
    /// WGS-84 geometry.
    pub shape: ZoneShape,
    /// Access points inside the zone and the learning window.
    pub wifi: ZoneWifi,
    /// When the zone is in force; `None`: always.
    pub schedule: Option<Schedule>,
}

impl ZoneSpec {
    /// Parses one zone from GeoJSON text: a Feature.
    ///
    /// # Errors
    ///
    /// [`ZoneError::InvalidGeoJson`] for text that is not GeoJSON, [`ZoneError::UnexpectedType`]
    /// for anything but a Feature, and every validation error of [`ZoneSpec::from_feature`].
    pub fn parse(text: &str) -> Result<ZoneSpec, ZoneError> {
        match parse_geojson(text)? {
            GeoJson::Feature(f) => ZoneSpec::from_feature(&f),
            other => Err(ZoneError::UnexpectedType {
                expected: "Feature",
                found: type_name(&other),
            }),
        }
    }

    /// Validates a Feature: its properties (see the module docs) and its geometry.
    ///
    /// # Errors
    ///
    /// Any [`ZoneError`] naming what is wrong.
    pub fn from_feature(feature: &Feature) -> Result<ZoneSpec, ZoneError> {
        let empty = JsonObject::new();
        let props = feature.properties.as_ref().unwrap_or(&empty);
        let properties = ZoneProperties::from_json(props)?;
        let geometry = feature
            .geometry
            .as_ref()
            .ok_or(ZoneError::MissingGeometry)?;
        ZoneSpec::from_geometry(geometry, properties)
    }

    /// Validates a bare geometry with its properties given separately (the real boundary files
    /// are bare geometries).
    ///
    /// # Errors
    ///
    /// Any geometry [`ZoneError`]; [`ZoneError::MissingName`] for an empty name.
    pub fn from_geometry(
        geometry: &Geometry,
        properties: ZoneProperties,
    ) -> Result<ZoneSpec, ZoneError> {
        let ZoneProperties {
            name,
            kind,
            crs,
            radius_m,
            wifi,
            schedule,
        } = properties;
        if name.trim().is_empty() {
            return Err(ZoneError::MissingName);
        }
        let shape = match &geometry.value {
            GeometryValue::Point { coordinates } => {
                let radius = radius_m.ok_or(ZoneError::CircleWithoutRadius)?;
                if !(radius > 0.0 && radius <= MAX_RADIUS_M) {
                    return Err(ZoneError::BadRadius(radius));
                }
                let c = coord(coordinates.as_slice(), crs)?;
                ZoneShape::Circle {
                    center: Point(c),
                    radius_m: radius,
                }
            }
            GeometryValue::Polygon { coordinates } => {
                no_radius(radius_m)?;
                let mut budget = MAX_VERTICES;
                ZoneShape::Area(MultiPolygon(vec![polygon(
                    coordinates,
                    0,
                    crs,
                    &mut budget,
                )?]))
            }
            GeometryValue::MultiPolygon { coordinates } => {
                no_radius(radius_m)?;
                if coordinates.is_empty() {
                    return Err(ZoneError::EmptyGeometry);
                }
                let mut budget = MAX_VERTICES;
                let polys = coordinates
                    .iter()
                    .enumerate()
                    .map(|(i, p)| polygon(p, i, crs, &mut budget))
                    .collect::<Result<Vec<_>, _>>()?;
                ZoneShape::Area(MultiPolygon(polys))
            }
            other => {
                return Err(ZoneError::UnsupportedGeometry(
                    other.type_name().to_string(),
                ))
            }
        };
        Ok(ZoneSpec {
            name,
            kind,
            crs,
            shape,
            wifi,
            schedule,
        })
    }

    /// The zone to store, under `id`, applying to the persons it is assigned to (the API sets
    /// a shared scope when one was asked for).
    pub fn into_zone(self, id: ZoneId) -> Zone {
        Zone {
            id,
            name: self.name,
            kind: self.kind,
            shape: self.shape,
            wifi: self.wifi,
            scope: ZoneScope::Persons,
            schedule: self.schedule,
        }
    }
}

impl ZoneProperties {
    /// Reads `name`, `kind`, `crs` and `radius_m` from a Feature's properties.
    ///
    /// # Errors
    ///
    /// [`ZoneError::MissingName`], [`ZoneError::MissingKind`], [`ZoneError::UnknownKind`],
    /// [`ZoneError::UnknownCrs`], [`ZoneError::BadProperty`].
    pub fn from_json(props: &JsonObject) -> Result<ZoneProperties, ZoneError> {
        let name = match props.get("name") {
            None | Some(JsonValue::Null) => return Err(ZoneError::MissingName),
            Some(v) => string_property("name", v)?.trim().to_string(),
        };
        if name.is_empty() {
            return Err(ZoneError::MissingName);
        }
        let kind = match props.get("kind") {
            None | Some(JsonValue::Null) => return Err(ZoneError::MissingKind),
            Some(v) => match string_property("kind", v)? {
                "inclusion" => ZoneKind::Inclusion,
                "exclusion" => ZoneKind::Exclusion,
                other => return Err(ZoneError::UnknownKind(other.to_string())),
            },
        };
        let crs = match props.get("crs") {
            None | Some(JsonValue::Null) => Crs::Wgs84,
            Some(v) => {
                let s = string_property("crs", v)?;
                s.parse::<Crs>()
                    .map_err(|_| ZoneError::UnknownCrs(s.to_string()))?
            }
        };
        let radius_m = match props.get("radius_m") {
            None | Some(JsonValue::Null) => None,
            Some(v) => Some(v.as_f64().ok_or_else(|| ZoneError::BadProperty {
                key: "radius_m",
                expected: "a number",
                found: v.to_string(),
            })?),
        };
        let bssids = match props.get("wifi") {
            None | Some(JsonValue::Null) => Vec::new(),
            Some(JsonValue::Array(items)) => {
                if items.len() > MAX_WIFI {
                    return Err(ZoneError::BadWifi(format!("{} addresses", items.len())));
                }
                let mut wifi = Vec::with_capacity(items.len());
                for item in items {
                    let mac = item
                        .as_str()
                        .and_then(normalize_bssid)
                        .ok_or_else(|| ZoneError::BadWifi(format!("{item} is not one")))?;
                    if !wifi.contains(&mac) {
                        wifi.push(mac);
                    }
                }
                wifi
            }
            Some(other) => return Err(ZoneError::BadWifi(format!("{other} is not a list"))),
        };
        let learn_until = match props.get("wifi_learn_until") {
            None | Some(JsonValue::Null) => None,
            Some(v) => Some(
                v.as_str()
                    .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
                    .map(|t| t.with_timezone(&chrono::Utc))
                    .ok_or_else(|| ZoneError::BadProperty {
                        key: "wifi_learn_until",
                        expected: "an RFC 3339 time",
                        found: v.to_string(),
                    })?,
            ),
        };
        let wifi = ZoneWifi {
            bssids,
            learn_until,
        };
        let schedule = match props.get("schedule") {
            None | Some(JsonValue::Null) => None,
            Some(v) => Some(Schedule::from_json(v)?),
        };
        Ok(ZoneProperties {
            name,
            kind,
            crs,
            radius_m,
            wifi,
            schedule,
        })
    }
}

/// Parses a FeatureCollection of zones (the `ewall fence --zones` file); a single Feature is
/// accepted as a collection of one.
///
/// # Errors
///
/// [`ZoneError::InvalidGeoJson`], [`ZoneError::UnexpectedType`] for a bare geometry, and
/// [`ZoneError::Feature`] wrapping the first rejected feature's error with its index and name.
pub fn parse_zone_collection(text: &str) -> Result<Vec<ZoneSpec>, ZoneError> {
    match parse_geojson(text)? {
        GeoJson::FeatureCollection(FeatureCollection { features, .. }) => features
            .iter()
            .enumerate()
            .map(|(index, f)| {
                ZoneSpec::from_feature(f).map_err(|e| ZoneError::Feature {
                    index,
                    name: f
                        .properties
                        .as_ref()
                        .and_then(|p| p.get("name"))
                        .and_then(JsonValue::as_str)
                        .map(str::to_string),
                    source: Box::new(e),
                })
            })
            .collect(),
        GeoJson::Feature(f) => Ok(vec![ZoneSpec::from_feature(&f)?]),
        other => Err(ZoneError::UnexpectedType {
            expected: "FeatureCollection",
            found: type_name(&other),
        }),
    }
}

/// A stored zone as the API returns it: a Feature with WGS-84 geometry (a Polygon when the zone
/// has one part, else a MultiPolygon; a Point for a circle), the zone id as the Feature id, and
/// properties `name`, `kind`, `crs` (always `"wgs84"`: the geometry was converted),
/// `source_crs` (the datum it was drawn in) and, for circles, `radius_m`.
pub fn zone_to_feature(zone: &Zone, source_crs: Crs) -> Feature {
    let mut props = JsonObject::new();
    props.insert("name".into(), zone.name.clone().into());
    props.insert("kind".into(), zone.kind.as_str().into());
    props.insert("crs".into(), Crs::Wgs84.as_str().into());
    props.insert("source_crs".into(), source_crs.as_str().into());
    if !zone.wifi.bssids.is_empty() {
        props.insert("wifi".into(), zone.wifi.bssids.clone().into());
    }
    if let Some(schedule) = &zone.schedule {
        props.insert("schedule".into(), schedule.to_json());
    }
    if let Some(until) = zone.wifi.learn_until {
        props.insert(
            "wifi_learn_until".into(),
            until
                .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
                .into(),
        );
    }
    let ring =
        |ls: &LineString<f64>| -> Vec<Vec<f64>> { ls.0.iter().map(|c| vec![c.x, c.y]).collect() };
    let poly = |p: &Polygon<f64>| -> Vec<Vec<Vec<f64>>> {
        std::iter::once(p.exterior())
            .chain(p.interiors())
            .map(ring)
            .collect()
    };
    let geometry = match &zone.shape {
        ZoneShape::Circle { center, radius_m } => {
            props.insert("radius_m".into(), (*radius_m).into());
            Geometry::new_point([center.x(), center.y()])
        }
        ZoneShape::Area(mp) if mp.0.len() == 1 => Geometry::new_polygon(poly(&mp.0[0])),
        ZoneShape::Area(mp) => Geometry::new_multi_polygon(mp.0.iter().map(poly)),
    };
    Feature {
        bbox: None,
        geometry: Some(geometry),
        id: Some(geojson::feature::Id::String(zone.id.to_string())),
        properties: Some(props),
        foreign_members: None,
    }
}

fn parse_geojson(text: &str) -> Result<GeoJson, ZoneError> {
    text.parse::<GeoJson>()
        .map_err(|e| ZoneError::InvalidGeoJson(e.to_string()))
}

fn type_name(g: &GeoJson) -> String {
    match g {
        GeoJson::Geometry(g) => g.value.type_name().to_string(),
        GeoJson::Feature(_) => "Feature".into(),
        GeoJson::FeatureCollection(_) => "FeatureCollection".into(),
    }
}

fn string_property<'a>(key: &'static str, v: &'a JsonValue) -> Result<&'a str, ZoneError> {
    v.as_str().ok_or_else(|| ZoneError::BadProperty {
        key,
        expected: "a string",
        found: v.to_string(),
    })
}

fn no_radius(radius_m: Option<f64>) -> Result<(), ZoneError> {
    match radius_m {
        Some(r) => Err(ZoneError::RadiusOnArea(r)),
        None => Ok(()),
    }
}

/// A validated position, converted to WGS-84.
fn coord(pos: &[f64], crs: Crs) -> Result<Coord<f64>, ZoneError> {
    let [lon, lat, ..] = *pos else {
        return Err(ZoneError::PositionTooShort(pos.len()));
    };
    if !((-180.0..=180.0).contains(&lon) && (-90.0..=90.0).contains(&lat)) {
        return Err(ZoneError::CoordinateOutOfRange { lon, lat });
    }
    let (x, y) = to_wgs84(crs, lon, lat);
    Ok(Coord { x, y })
}

fn polygon(
    rings: &[Vec<geojson::Position>],
    index: usize,
    crs: Crs,
    budget: &mut usize,
) -> Result<Polygon<f64>, ZoneError> {
    if rings.is_empty() {
        return Err(ZoneError::EmptyGeometry);
    }
    let mut converted = Vec::with_capacity(rings.len());
    for (r, positions) in rings.iter().enumerate() {
        *budget = budget
            .checked_sub(positions.len())
            .ok_or(ZoneError::TooManyVertices { max: MAX_VERTICES })?;
        if positions.len() < 4 {
            return Err(ZoneError::RingTooShort {
                polygon: index,
                ring: r,
                positions: positions.len(),
            });
        }
        // Check the raw positions (before conversion) so the error shows what was sent.
        let raw: Vec<[f64; 2]> = positions
            .iter()
            .map(|p| match *p.as_slice() {
                [lon, lat, ..] => Ok([lon, lat]),
                _ => Err(ZoneError::PositionTooShort(p.len())),
            })
            .collect::<Result<_, _>>()?;
        // Ranges first, so a NaN is reported as such rather than as an open ring.
        let coords = raw
            .iter()
            .map(|p| coord(p, crs))
            .collect::<Result<Vec<_>, _>>()?;
        let (first, last) = (raw[0], raw[raw.len() - 1]);
        if first != last {
            return Err(ZoneError::RingNotClosed {
                polygon: index,
                ring: r,
                first,
                last,
            });
        }
        // Shoelace sum; zero means every position is on one line.
        let twice_area: f64 = raw
            .windows(2)
            .map(|w| {
                (w[0][0] - first[0]) * (w[1][1] - first[1])
                    - (w[1][0] - first[0]) * (w[0][1] - first[1])
            })
            .sum();
        if twice_area == 0.0 || !twice_area.is_finite() {
            return Err(ZoneError::DegenerateRing {
                polygon: index,
                ring: r,
            });
        }
        converted.push(LineString(coords));
    }
    let mut rings = converted.into_iter();
    let exterior = rings.next().ok_or(ZoneError::EmptyGeometry)?;
    Ok(Polygon::new(exterior, rings.collect()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fence::crs::gcj02_to_wgs84;

    fn feature(props: &str, geometry: &str) -> String {
        format!(r#"{{"type": "Feature", "properties": {props}, "geometry": {geometry}}}"#)
    }

    const SQUARE: &str = r#"{"type": "Polygon", "coordinates": [[[112,25],[112.1,25],[112.1,25.1],[112,25.1],[112,25]]]}"#;

    fn parse(props: &str, geometry: &str) -> Result<ZoneSpec, ZoneError> {
        ZoneSpec::parse(&feature(props, geometry))
    }

    #[test]
    fn polygon_with_hole_multipolygon_and_circle() {
        let spec = parse(r#"{"name": " home ", "kind": "inclusion"}"#, SQUARE).expect("valid");
        assert_eq!(spec.name, "home");
        assert_eq!((spec.kind, spec.crs), (ZoneKind::Inclusion, Crs::Wgs84));
        let holed = r#"{"type": "Polygon", "coordinates": [
            [[0,0],[10,0],[10,10],[0,10],[0,0]], [[4,4],[6,4],[6,6],[4,6],[4,4]]]}"#;
        let spec = parse(r#"{"name": "h", "kind": "exclusion"}"#, holed).expect("valid");
        let ZoneShape::Area(mp) = &spec.shape else {
            panic!("area")
        };
        assert_eq!(mp.0[0].interiors().len(), 1);
        let multi = r#"{"type": "MultiPolygon", "coordinates": [
            [[[0,0],[1,0],[1,1],[0,0]]], [[[5,5],[6,5],[6,6],[5,5]]]]}"#;
        let spec = parse(r#"{"name": "m", "kind": "exclusion"}"#, multi).expect("valid");
        let ZoneShape::Area(mp) = &spec.shape else {
            panic!("area")
        };
        assert_eq!(mp.0.len(), 2);
        let circle = r#"{"type": "Point", "coordinates": [112.37, 25.58, 120.5]}"#;
        let spec = parse(
            r#"{"name": "c", "kind": "inclusion", "radius_m": 250}"#,
            circle,
        )
        .expect("valid");
        assert!(matches!(spec.shape, ZoneShape::Circle { radius_m, .. } if radius_m == 250.0));
    }

    #[test]
    fn gcj02_and_bd09_geometry_is_converted_to_wgs84() {
        let spec = parse(
            r#"{"name": "g", "kind": "inclusion", "crs": "gcj02"}"#,
            SQUARE,
        )
        .expect("valid");
        assert_eq!(spec.crs, Crs::Gcj02);
        let ZoneShape::Area(mp) = &spec.shape else {
            panic!("area")
        };
        let first = mp.0[0].exterior().0[0];
        assert_eq!((first.x, first.y), gcj02_to_wgs84(112.0, 25.0));
        let ring = &mp.0[0].exterior().0;
        assert_eq!(ring[0], ring[ring.len() - 1], "still closed");
        let circle = r#"{"type": "Point", "coordinates": [112.37, 25.58]}"#;
        let spec = parse(
            r#"{"name": "b", "kind": "inclusion", "crs": "BD-09", "radius_m": 100}"#,
            circle,
        )
        .expect("valid");
        let ZoneShape::Circle { center, .. } = spec.shape else {
            panic!("circle")
        };
        assert_eq!(
            (center.x(), center.y()),
            crate::fence::crs::bd09_to_wgs84(112.37, 25.58)
        );
    }

    #[test]
    fn errors_name_the_problem() {
        let ok = r#"{"name": "z", "kind": "inclusion"}"#;
        let cases: Vec<(String, String, ZoneError)> = vec![
            (r#"{"kind": "inclusion"}"#.into(), SQUARE.into(), ZoneError::MissingName),
            (r#"{"name": "  ", "kind": "inclusion"}"#.into(), SQUARE.into(), ZoneError::MissingName),
            (r#"{"name": "z"}"#.into(), SQUARE.into(), ZoneError::MissingKind),
            (
                r#"{"name": "z", "kind": "keep_in"}"#.into(),
                SQUARE.into(),
                ZoneError::UnknownKind("keep_in".into()),
            ),
            (
                r#"{"name": "z", "kind": "inclusion", "crs": "utm50"}"#.into(),
                SQUARE.into(),
                ZoneError::UnknownCrs("utm50".into()),
            ),
            (
                r#"{"name": 7, "kind": "inclusion"}"#.into(),
                SQUARE.into(),
                ZoneError::BadProperty {
                    key: "name",
                    expected: "a string",
                    found: "7".into(),
                },
            ),
            (
                ok.into(),
                r#"{"type": "Polygon", "coordinates": [[[0,0],[1,0],[0,0]]]}"#.into(),
                ZoneError::RingTooShort {
                    polygon: 0,
                    ring: 0,
                    positions: 3,
                },
            ),
            (
                ok.into(),
                r#"{"type": "Polygon", "coordinates": [[[0,0],[1,0],[1,1],[0,1]]]}"#.into(),
                ZoneError::RingNotClosed {
                    polygon: 0,
                    ring: 0,
                    first: [0.0, 0.0],
                    last: [0.0, 1.0],
                },
            ),
            (
                ok.into(),
                r#"{"type": "MultiPolygon", "coordinates": [[[[0,0],[1,0],[1,1],[0,0]]], [[[0,0],[1,1],[2,2],[0,0]]]]}"#.into(),
                ZoneError::DegenerateRing { polygon: 1, ring: 0 },
            ),
            (
                ok.into(),
                r#"{"type": "Polygon", "coordinates": [[[0,0],[181,0],[1,1],[0,0]]]}"#.into(),
                ZoneError::CoordinateOutOfRange { lon: 181.0, lat: 0.0 },
            ),
            (
                ok.into(),
                r#"{"type": "Polygon", "coordinates": [[[0,0],[1,-91],[1,1],[0,0]]]}"#.into(),
                ZoneError::CoordinateOutOfRange { lon: 1.0, lat: -91.0 },
            ),
            (
                ok.into(),
                r#"{"type": "Point", "coordinates": [1, 1]}"#.into(),
                ZoneError::CircleWithoutRadius,
            ),
            (
                r#"{"name": "z", "kind": "inclusion", "radius_m": 0}"#.into(),
                r#"{"type": "Point", "coordinates": [1, 1]}"#.into(),
                ZoneError::BadRadius(0.0),
            ),
            (
                r#"{"name": "z", "kind": "inclusion", "radius_m": "50"}"#.into(),
                r#"{"type": "Point", "coordinates": [1, 1]}"#.into(),
                ZoneError::BadProperty {
                    key: "radius_m",
                    expected: "a number",
                    found: "\"50\"".into(),
                },
            ),
            (
                r#"{"name": "z", "kind": "inclusion", "radius_m": 50}"#.into(),
                SQUARE.into(),
                ZoneError::RadiusOnArea(50.0),
            ),
            (
                ok.into(),
                r#"{"type": "LineString", "coordinates": [[0,0],[1,1]]}"#.into(),
                ZoneError::UnsupportedGeometry("LineString".into()),
            ),
            (
                ok.into(),
                r#"{"type": "MultiPolygon", "coordinates": []}"#.into(),
                ZoneError::EmptyGeometry,
            ),
            (ok.into(), "null".into(), ZoneError::MissingGeometry),
        ];
        for (props, geometry, expected) in cases {
            let got = parse(&props, &geometry).expect_err(&format!("{props} {geometry}"));
            assert_eq!(got, expected, "{props} {geometry}");
            assert!(!got.to_string().is_empty());
        }
        assert!(matches!(
            ZoneSpec::parse("{not json"),
            Err(ZoneError::InvalidGeoJson(_))
        ));
        assert_eq!(
            ZoneSpec::parse(SQUARE),
            Err(ZoneError::UnexpectedType {
                expected: "Feature",
                found: "Polygon".into()
            })
        );
        let msg = ZoneError::RingNotClosed {
            polygon: 0,
            ring: 1,
            first: [1.0, 2.0],
            last: [3.0, 4.0],
        }
        .to_string();
        assert!(
            msg.contains("ring 1") && msg.contains("[3.0, 4.0]"),
            "{msg}"
        );
    }

    #[test]
    fn wifi_access_points_are_normalised_and_checked() {
        let spec = parse(
            r#"{"name": "home", "kind": "inclusion",
                "wifi": ["A4:56:02:1B:7C:E0", "a4-56-02-1b-7c-e1", "a456021b7ce2", "a4:56:02:1b:7c:e0"],
                "wifi_learn_until": "2026-03-01T00:00:00+08:00"}"#,
            SQUARE,
        )
        .expect("valid");
        assert_eq!(
            spec.wifi.bssids,
            [
                "a4:56:02:1b:7c:e0",
                "a4:56:02:1b:7c:e1",
                "a4:56:02:1b:7c:e2"
            ]
        );
        assert_eq!(
            spec.wifi.learn_until.map(|t| t.to_rfc3339()),
            Some("2026-02-28T16:00:00+00:00".to_string())
        );
        let zone = spec.clone().into_zone(uuid::Uuid::nil());
        let json = serde_json::to_value(zone_to_feature(&zone, Crs::Wgs84)).expect("json");
        assert_eq!(json["properties"]["wifi"][2], "a4:56:02:1b:7c:e2");
        assert_eq!(
            json["properties"]["wifi_learn_until"],
            "2026-02-28T16:00:00Z"
        );
        for bad in [
            r#""a4:56""#,
            r#"["a4:56:02:1b:7c"]"#,
            r#"["zz:56:02:1b:7c:e0"]"#,
            "[7]",
        ] {
            let props = format!(r#"{{"name": "h", "kind": "inclusion", "wifi": {bad}}}"#);
            assert!(
                matches!(parse(&props, SQUARE), Err(ZoneError::BadWifi(_))),
                "{bad}"
            );
        }
        let props = r#"{"name": "h", "kind": "inclusion", "wifi_learn_until": "tomorrow"}"#;
        assert!(matches!(
            parse(props, SQUARE),
            Err(ZoneError::BadProperty {
                key: "wifi_learn_until",
                ..
            })
        ));
    }

    #[test]
    fn too_many_vertices_is_refused_before_work() {
        let n = MAX_VERTICES + 1;
        let ring: Vec<Vec<f64>> = (0..n)
            .map(|i| {
                let a = i as f64 / n as f64 * std::f64::consts::TAU;
                vec![a.cos(), a.sin()]
            })
            .collect();
        let geometry = Geometry::new_polygon(vec![ring]);
        let props = ZoneProperties {
            name: "big".into(),
            kind: ZoneKind::Inclusion,
            crs: Crs::Wgs84,
            radius_m: None,
            wifi: Default::default(),
            schedule: None,
        };
        assert_eq!(
            ZoneSpec::from_geometry(&geometry, props),
            Err(ZoneError::TooManyVertices { max: MAX_VERTICES })
        );
    }

    #[test]
    fn collections_parse_and_report_the_bad_feature() {
        let fc = format!(
            r#"{{"type": "FeatureCollection", "features": [{}, {}]}}"#,
            feature(r#"{"name": "a", "kind": "inclusion"}"#, SQUARE),
            feature(r#"{"name": "b", "kind": "sideways"}"#, SQUARE)
        );
        let err = parse_zone_collection(&fc).expect_err("second is bad");
        assert_eq!(
            err,
            ZoneError::Feature {
                index: 1,
                name: Some("b".into()),
                source: Box::new(ZoneError::UnknownKind("sideways".into()))
            }
        );
        assert!(
            err.to_string()
                .starts_with("feature 1 (\"b\"): unknown zone kind"),
            "{err}"
        );
        let fc = format!(
            r#"{{"type": "FeatureCollection", "features": [{}]}}"#,
            feature(r#"{"name": "a", "kind": "inclusion"}"#, SQUARE)
        );
        assert_eq!(parse_zone_collection(&fc).expect("valid").len(), 1);
        let single = feature(r#"{"name": "a", "kind": "inclusion"}"#, SQUARE);
        assert_eq!(parse_zone_collection(&single).expect("valid").len(), 1);
    }

    #[test]
    fn zones_go_back_out_as_features() {
        let spec = parse(
            r#"{"name": "home", "kind": "inclusion", "crs": "gcj02"}"#,
            SQUARE,
        )
        .expect("valid");
        let id = uuid::Uuid::from_u128(42);
        let zone = spec.clone().into_zone(id);
        let feature = zone_to_feature(&zone, spec.crs);
        let json = serde_json::to_value(&feature).expect("serialises");
        assert_eq!(json["id"], id.to_string());
        assert_eq!(json["properties"]["crs"], "wgs84");
        assert_eq!(json["properties"]["source_crs"], "gcj02");
        assert_eq!(json["geometry"]["type"], "Polygon");
        // Reading it back gives the same WGS-84 zone.
        let again = ZoneSpec::from_feature(&feature).expect("round trip");
        assert_eq!(again.shape, zone.shape);
        assert_eq!(again.crs, Crs::Wgs84);

        let circle = Zone {
            id,
            name: "c".into(),
            kind: ZoneKind::Exclusion,
            shape: ZoneShape::Circle {
                center: Point::new(112.0, 25.0),
                radius_m: 300.0,
            },
            wifi: Default::default(),
            scope: Default::default(),
            schedule: None,
        };
        let json = serde_json::to_value(zone_to_feature(&circle, Crs::Wgs84)).expect("json");
        assert_eq!(json["geometry"]["type"], "Point");
        assert_eq!(json["properties"]["radius_m"], 300.0);
        assert_eq!(json["properties"]["kind"], "exclusion");
        let multi = Zone {
            shape: ZoneShape::Area(MultiPolygon(vec![
                Polygon::new(
                    LineString::from(vec![(0., 0.), (1., 0.), (1., 1.), (0., 0.)]),
                    vec![],
                ),
                Polygon::new(
                    LineString::from(vec![(5., 5.), (6., 5.), (6., 6.), (5., 5.)]),
                    vec![],
                ),
            ])),
            ..circle
        };
        let json = serde_json::to_value(zone_to_feature(&multi, Crs::Wgs84)).expect("json");
        assert_eq!(json["geometry"]["type"], "MultiPolygon");
    }
}

//! The fence engine (in progress): datum conversion, ground distances, prepared zones, catalog,
//! zones from GeoJSON.

pub mod crs;
#[cfg(test)]
mod fixtures;
mod geodesy;
mod index;
mod prepared;
mod zone;

pub use geodesy::{haversine_m, LocalScale};
pub use index::{CatalogWarning, ZoneCatalog, ZoneEnvelope, PERSON_SCAN_MAX};
pub use prepared::{Placement, PreparedZone, BOUNDARY_TOLERANCE_M};
pub use zone::{
    parse_zone_collection, zone_to_feature, ZoneError, ZoneProperties, ZoneSpec, MAX_RADIUS_M,
    MAX_VERTICES,
};

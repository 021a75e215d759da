//! The fence engine (in progress): datum conversion, ground distances, prepared zones, catalog.

pub mod crs;
mod geodesy;
mod index;
mod prepared;

pub use geodesy::{haversine_m, LocalScale};
pub use index::{CatalogWarning, ZoneCatalog, ZoneEnvelope, PERSON_SCAN_MAX};
pub use prepared::{Placement, PreparedZone, BOUNDARY_TOLERANCE_M};

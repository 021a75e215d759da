//! The fence engine (in progress): datum conversion, ground distances, prepared zones.

pub mod crs;
mod geodesy;
mod prepared;

pub use geodesy::{haversine_m, LocalScale};
pub use prepared::{Placement, PreparedZone, BOUNDARY_TOLERANCE_M};

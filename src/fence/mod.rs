//! The fence engine (in progress): datum conversion and ground distances.

pub mod crs;
mod geodesy;

pub use geodesy::{haversine_m, LocalScale};

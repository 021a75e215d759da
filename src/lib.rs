//! ewall: real-time GPS electronic-fence monitoring.

pub mod fence;
pub mod model;

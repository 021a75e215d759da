//! ewall: real-time GPS electronic-fence monitoring.

pub mod model;

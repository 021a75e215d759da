//! Inputs shared by the benches: golden frames from `fixtures/frames/` and the real zones of
//! `fixtures/zones/`, each loaded by name so a bench says which fixture it uses and nothing
//! else. Files are read once, before any timing starts; a missing or malformed fixture panics
//! with its path.

#![allow(dead_code)]

use ewall::fence::{ZoneProperties, ZoneSpec};
use ewall::model::{Crs, Zone, ZoneId, ZoneKind};

/// The bytes of `fixtures/frames/<protocol>/<case>.hex`: hex digits with `#` comment lines
/// and whitespace ignored. A fixture of several lines (several frames) comes back as one
/// byte stream.
pub fn frame(protocol: &str, case: &str) -> Vec<u8> {
    let path = format!(
        "{}/fixtures/frames/{protocol}/{case}.hex",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let digits: String = text
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .flat_map(|line| line.chars().filter(|c| !c.is_whitespace()))
        .collect();
    hex::decode(&digits).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A real boundary from `fixtures/zones/<file>` (a bare GCJ-02 geometry), converted to
/// WGS-84 on load, as the zones API does with `"crs": "gcj02"`.
pub fn real_zone(file: &str, name: &str, kind: ZoneKind, id: ZoneId) -> Zone {
    let path = format!("{}/fixtures/zones/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let geometry: geojson::Geometry = text
        .parse()
        .unwrap_or_else(|e| panic!("{path}: not a GeoJSON geometry: {e}"));
    let properties = ZoneProperties {
        name: name.into(),
        kind,
        crs: Crs::Gcj02,
        radius_m: None,
        wifi: Default::default(),
        schedule: None,
    };
    ZoneSpec::from_geometry(&geometry, properties)
        .unwrap_or_else(|e| panic!("{path}: not a valid zone: {e}"))
        .into_zone(id)
}

/// Jiahe county (368 vertices), the boundary a county's supervised persons must stay in.
pub fn jiahe_county(id: ZoneId) -> Zone {
    real_zone(
        "jiahe-county-431024.gcj02.geojson",
        "Jiahe county",
        ZoneKind::Inclusion,
        id,
    )
}

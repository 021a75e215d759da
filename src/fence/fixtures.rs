//! Test fixtures: one named function per file of `fixtures/zones/` and `fixtures/tracks/`
//! (provenance in the README of each folder). Test-only; panics on a broken fixture.

use chrono::{DateTime, Duration, Utc};
use geojson::Geometry;

use super::zone::{ZoneProperties, ZoneSpec};
use crate::model::{Crs, ZoneKind};

fn read(relative: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

/// A bare GCJ-02 boundary geometry from `fixtures/zones/`, as an inclusion zone in `crs`.
fn boundary(file: &str, name: &str, crs: Crs) -> ZoneSpec {
    let geometry: Geometry = read(&format!("fixtures/zones/{file}"))
        .parse()
        .unwrap_or_else(|e| panic!("{file}: {e}"));
    let properties = ZoneProperties {
        name: name.into(),
        kind: ZoneKind::Inclusion,
        crs,
        radius_m: None,
        wifi: Default::default(),
        schedule: None,
    };
    ZoneSpec::from_geometry(&geometry, properties).unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// A closed rectangular ring with its south-west corner at (`x0`, `y0`), in degrees.
pub fn rectangle(x0: f64, y0: f64, width: f64, height: f64) -> Vec<geo::Coord<f64>> {
    [
        (0.0, 0.0),
        (width, 0.0),
        (width, height),
        (0.0, height),
        (0.0, 0.0),
    ]
    .into_iter()
    .map(|(dx, dy)| geo::Coord {
        x: x0 + dx,
        y: y0 + dy,
    })
    .collect()
}

/// Jiahe county (368 vertices), converted from GCJ-02 to WGS-84.
pub fn jiahe() -> ZoneSpec {
    boundary(
        "jiahe-county-431024.gcj02.geojson",
        "Jiahe county",
        Crs::Gcj02,
    )
}

/// Jiahe county with its GCJ-02 coordinates taken as if they were WGS-84 (the mistake the
/// conversion exists to prevent).
pub fn jiahe_unconverted() -> ZoneSpec {
    boundary(
        "jiahe-county-431024.gcj02.geojson",
        "Jiahe county (raw)",
        Crs::Wgs84,
    )
}

/// Chenzhou city (4,499 vertices), converted to WGS-84.
pub fn chenzhou() -> ZoneSpec {
    boundary(
        "chenzhou-city-431000.gcj02.geojson",
        "Chenzhou city",
        Crs::Gcj02,
    )
}

/// Hunan province (19,374 vertices, 3 parts, one hole), converted to WGS-84.
pub fn hunan() -> ZoneSpec {
    boundary(
        "hunan-province-430000.gcj02.geojson",
        "Hunan province",
        Crs::Gcj02,
    )
}

/// One recorded position of a track.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrackPoint {
    /// Fix time, UTC.
    pub time: DateTime<Utc>,
    /// WGS-84 longitude.
    pub lon: f64,
    /// WGS-84 latitude.
    pub lat: f64,
}

/// The `lat`/`lon` attributes and `<time>` of every `<trkpt>` of a GPX file, with the clock
/// moved by `clock_fix`.
fn gpx(file: &str, clock_fix: Duration) -> Vec<TrackPoint> {
    let text = read(&format!("fixtures/tracks/{file}"));
    let attr = |tag: &str, name: &str| -> f64 {
        let key = format!("{name}=\"");
        let start = tag
            .find(&key)
            .unwrap_or_else(|| panic!("{file}: no {name}"))
            + key.len();
        let end = tag[start..].find('"').expect("closing quote") + start;
        tag[start..end].parse().expect("a number")
    };
    text.split("<trkpt")
        .skip(1)
        .map(|chunk| {
            let tag = &chunk[..chunk.find('>').expect("end of tag")];
            let t0 = chunk.find("<time>").expect("a time") + "<time>".len();
            let t1 = chunk.find("</time>").expect("end of time");
            let time = DateTime::parse_from_rfc3339(&chunk[t0..t1])
                .expect("RFC 3339 time")
                .with_timezone(&Utc);
            TrackPoint {
                time: time + clock_fix,
                lon: attr(tag, "lon"),
                lat: attr(tag, "lat"),
            }
        })
        .collect()
}

/// Garmin Forerunner 620 watch, 1 s (6,870 fixes).
pub fn track_garmin() -> Vec<TrackPoint> {
    gpx("FC_garmin.gpx", Duration::zero())
}

/// Geonaute Keymaze sport tracker, 1 s (6,589 fixes). Its clock is stored two hours early;
/// corrected here so it lines up with the other devices.
pub fn track_keymaze() -> Vec<TrackPoint> {
    gpx("FC_keymaze.gpx", Duration::hours(2))
}

/// Polar M400 watch, 1 s (5,975 fixes).
pub fn track_polar() -> Vec<TrackPoint> {
    gpx("FC_polar.gpx", Duration::zero())
}

/// Phone app, a fix every few seconds (589 fixes).
pub fn track_telephone() -> Vec<TrackPoint> {
    gpx("FC_telephone.gpx", Duration::zero())
}

#[test]
fn every_fixture_loads() {
    assert_eq!(track_garmin().len(), 6_870);
    assert_eq!(track_keymaze().len(), 6_589);
    assert_eq!(track_polar().len(), 5_975);
    assert_eq!(track_telephone().len(), 589);
    // The phone and the watch started within a few seconds of each other (07:19 UTC).
    let gap = track_telephone()[0].time - track_polar()[0].time;
    assert!(gap.num_seconds().abs() < 30, "{gap}");
    for (spec, vertices) in [(jiahe(), 368), (chenzhou(), 4_499), (hunan(), 19_374)] {
        let crate::model::ZoneShape::Area(mp) = &spec.shape else {
            panic!("an area")
        };
        let n: usize = mp
            .0
            .iter()
            .map(|p| p.exterior().0.len() + p.interiors().iter().map(|r| r.0.len()).sum::<usize>())
            .sum();
        assert_eq!(n, vertices, "{}", spec.name);
    }
}

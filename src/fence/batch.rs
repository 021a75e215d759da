//! The batch check behind `ewall fence --zones Z.geojson --points P.csv --threads N`: every
//! point against every zone, counted per zone.
//!
//! Role: an offline tool (and a throughput check of the prepared geometry); not on the live
//! path. In: the zones file's text (a FeatureCollection, see [`zone`](super::zone)) and the
//! points file's text (`lon,lat` per line, WGS-84). Out: a [`BatchReport`] the CLI prints as
//! JSON. It reads no files itself and prints nothing.
//!
//! "Inside" is [`PreparedZone::contains`] with accuracy 0; a point exactly on a boundary counts
//! as whichever side the crossing rule gives it (see [`prepared`](super::prepared)).
//! `check_seconds` times the checks alone: parsing and preparing the zones are not in it.

use std::time::Instant;

use serde::Serialize;
use thiserror::Error;

use super::prepared::PreparedZone;
use super::zone::parse_zone_collection;
use super::FenceError;

/// A line of the points file that is not `lon,lat`.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum PointsError {
    /// The line does not have exactly two comma-separated numbers.
    #[error("line {line}: expected \"lon,lat\", found {text:?}")]
    Malformed {
        /// 1-based line number.
        line: usize,
        /// The line as found (cut to 80 characters).
        text: String,
    },
    /// The numbers are not a longitude in [-180, 180] and a latitude in [-90, 90].
    #[error("line {line}: coordinate ({lon}, {lat}) is out of range")]
    OutOfRange {
        /// 1-based line number.
        line: usize,
        /// Longitude found.
        lon: f64,
        /// Latitude found.
        lat: f64,
    },
}

/// One zone's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BatchZone {
    /// The zone's `properties.name`.
    pub name: String,
    /// How many points it contains.
    pub inside: u64,
}

/// What `ewall fence` prints.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BatchReport {
    /// Points checked.
    pub points: u64,
    /// Per zone, in the order of the zones file.
    pub zones: Vec<BatchZone>,
    /// Wall time of the checks alone, seconds.
    pub check_seconds: f64,
    /// `points × zones / check_seconds`.
    pub checks_per_second: f64,
    /// Threads used.
    pub threads: usize,
}

/// Parses the points file: `lon,lat` per line. Blank lines and lines starting with `#` are
/// skipped, as is a first line reading `lon,lat` (a header); spaces around numbers are allowed.
///
/// # Errors
///
/// [`PointsError`] naming the first bad line.
pub fn parse_points(text: &str) -> Result<Vec<[f64; 2]>, PointsError> {
    let mut points = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if i == 0 && line.replace(' ', "").eq_ignore_ascii_case("lon,lat") {
            continue;
        }
        let malformed = || PointsError::Malformed {
            line: i + 1,
            text: line.chars().take(80).collect(),
        };
        let mut fields = line.split(',');
        let (Some(a), Some(b), None) = (fields.next(), fields.next(), fields.next()) else {
            return Err(malformed());
        };
        let (Ok(lon), Ok(lat)) = (a.trim().parse::<f64>(), b.trim().parse::<f64>()) else {
            return Err(malformed());
        };
        if !((-180.0..=180.0).contains(&lon) && (-90.0..=90.0).contains(&lat)) {
            return Err(PointsError::OutOfRange {
                line: i + 1,
                lon,
                lat,
            });
        }
        points.push([lon, lat]);
    }
    Ok(points)
}

/// Parses both files, prepares the zones and checks every point against every zone on
/// `threads` threads (0 counts as 1).
///
/// # Errors
///
/// [`FenceError::Zone`] for a bad zones file, [`FenceError::Points`] for a bad points file.
pub fn run_batch(
    zones_geojson: &str,
    points_csv: &str,
    threads: usize,
) -> Result<BatchReport, FenceError> {
    let specs = parse_zone_collection(zones_geojson)?;
    let points = parse_points(points_csv)?;
    let names: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
    let zones: Vec<PreparedZone> = specs
        .into_iter()
        .map(|s| PreparedZone::new(s.into_zone(uuid::Uuid::nil())))
        .collect();
    Ok(check_points(&zones, names, &points, threads))
}

/// Checks every point against every zone on `threads` threads (0 counts as 1), timing the
/// checks alone. `names` label the zones in the report, in order.
pub fn check_points(
    zones: &[PreparedZone],
    names: Vec<String>,
    points: &[[f64; 2]],
    threads: usize,
) -> BatchReport {
    let threads = threads.max(1);
    let chunk = points.len().div_ceil(threads).max(1);
    let started = Instant::now();
    let counts = std::thread::scope(|scope| {
        let workers: Vec<_> = points
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    zones
                        .iter()
                        .map(|z| part.iter().filter(|p| z.contains(p[0], p[1])).count() as u64)
                        .collect::<Vec<u64>>()
                })
            })
            .collect();
        let mut total = vec![0u64; zones.len()];
        for worker in workers {
            // A worker only counts; it cannot panic short of a bug, and then re-raising the
            // panic here is the honest outcome.
            let part = worker
                .join()
                .unwrap_or_else(|e| std::panic::resume_unwind(e));
            for (t, n) in total.iter_mut().zip(part) {
                *t += n;
            }
        }
        total
    });
    let check_seconds = started.elapsed().as_secs_f64();
    let checks = points.len() as f64 * zones.len() as f64;
    BatchReport {
        points: points.len() as u64,
        zones: names
            .into_iter()
            .zip(counts)
            .map(|(name, inside)| BatchZone { name, inside })
            .collect(),
        check_seconds,
        checks_per_second: if check_seconds > 0.0 {
            checks / check_seconds
        } else {
            0.0
        },
        threads,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ZONES: &str = r#"{"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": "a", "kind": "inclusion"},
         "geometry": {"type": "Polygon", "coordinates": [[[0,0],[2,0],[2,2],[0,2],[0,0]]]}},
        {"type": "Feature", "properties": {"name": "b", "kind": "exclusion", "radius_m": 1000},
         "geometry": {"type": "Point", "coordinates": [10, 10]}}
    ]}"#;

    #[test]
    fn counts_points_per_zone_with_any_thread_count() {
        let csv = "lon,lat\n1,1\n 1.5 , 0.5\n\n# comment\n3,3\n10,10.001\r\n10,10.5\n";
        for threads in [0, 1, 2, 7] {
            let report = run_batch(ZONES, csv, threads).expect("valid input");
            assert_eq!(report.points, 5);
            assert_eq!(
                report.zones,
                vec![
                    BatchZone {
                        name: "a".into(),
                        inside: 2
                    },
                    BatchZone {
                        name: "b".into(),
                        inside: 1
                    }
                ]
            );
            assert_eq!(report.threads, threads.max(1));
            let json = serde_json::to_value(&report).expect("serialises");
            assert!(json.get("checks_per_second").is_some());
        }
        let empty = run_batch(ZONES, "", 2).expect("no points is fine");
        assert_eq!(empty.points, 0);
    }

    #[test]
    fn bad_lines_are_named() {
        assert_eq!(
            parse_points("1,1\n1;2\n"),
            Err(PointsError::Malformed {
                line: 2,
                text: "1;2".into()
            })
        );
        assert!(matches!(
            parse_points("1,1,1"),
            Err(PointsError::Malformed { line: 1, .. })
        ));
        assert!(matches!(
            parse_points("\n\n200,1"),
            Err(PointsError::OutOfRange { line: 3, .. })
        ));
        assert!(matches!(
            parse_points("1,NaN"),
            Err(PointsError::OutOfRange { line: 1, .. })
        ));
        let err = run_batch(ZONES, "x,y\n", 1).expect_err("header only on line 1 as lon,lat");
        assert!(err.to_string().contains("line 1"), "{err}");
        let err = run_batch("{}", "1,1", 1).expect_err("not GeoJSON");
        assert!(matches!(err, FenceError::Zone(_)));
    }
}

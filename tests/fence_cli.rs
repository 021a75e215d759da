//! `ewall fence`: bulk point checks against a FeatureCollection, printed as one JSON object;
//! bad input exits non-zero with the line or key at fault.

use std::process::Command;

use serde_json::{json, Value};

fn ewall_fence(zones: &str, points: &str, threads: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let zones_path = dir.path().join("zones.geojson");
    let points_path = dir.path().join("points.csv");
    std::fs::write(&zones_path, zones).unwrap();
    std::fs::write(&points_path, points).unwrap();
    Command::new(env!("CARGO_BIN_EXE_ewall"))
        .args(["fence", "--zones"])
        .arg(&zones_path)
        .arg("--points")
        .arg(&points_path)
        .args(["--threads", threads])
        .output()
        .unwrap()
}

fn zones() -> String {
    json!({
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature", "properties": {"name": "square", "kind": "inclusion"},
             "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]],
                                                             [[4, 4], [6, 4], [6, 6], [4, 6], [4, 4]]]}},
            {"type": "Feature", "properties": {"name": "circle", "kind": "exclusion", "radius_m": 1000},
             "geometry": {"type": "Point", "coordinates": [20, 20]}}
        ]
    })
    .to_string()
}

#[test]
fn counts_points_inside_each_zone() {
    // Inside the square, in its hole, outside everything, inside the circle; a header line.
    let points = "lon,lat\n1,1\n9,9\n5,5\n30,30\n20.001,20.001\n";
    for threads in ["1", "2"] {
        let out = ewall_fence(&zones(), points, threads);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["points"], 5);
        assert_eq!(
            report["zones"],
            json!([{"name": "square", "inside": 2}, {"name": "circle", "inside": 1}])
        );
        assert_eq!(report["threads"], threads.parse::<u64>().unwrap());
        assert!(report["check_seconds"].as_f64().unwrap() >= 0.0);
        assert!(report["checks_per_second"].as_f64().unwrap() > 0.0);
    }
}

#[test]
fn bad_input_names_the_problem() {
    let out = ewall_fence(&zones(), "1,1\n2;2\n", "1");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("line 2"), "{stderr}");

    let out = ewall_fence(
        r#"{"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {"name": "x", "kind": "inclusion"}, "geometry": {"type": "Point", "coordinates": [1, 1]}}]}"#,
        "1,1\n",
        "1",
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("radius"), "{stderr}");
}

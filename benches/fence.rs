//! Fence check benchmarks: the per-fix geometry (containment and the accuracy-radius
//! classification), catalog queries with 10 / 1k / 100k zones, and build costs, timed apart.
//!
//! Real zones come from `fixtures/zones/` (GCJ-02, converted on load). Random points use fixed
//! seeds so runs are comparable; the per-zone cases check 10,000 random points in the zone's
//! bounding box per iteration (the GEOS baseline's method), so criterion's "elements" throughput
//! is points per second. Results and the machine they were measured on: `benches/README.md`.
//!
//! Run with `cargo bench --bench fence`.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ewall::fence::{
    FenceConfig, FenceEngine, PreparedZone, ZoneCatalog, ZoneEnvelope, ZoneProperties, ZoneSpec,
};
use ewall::model::{Crs, Fix, PositionSource, SupervisionLevel, Zone, ZoneKind, ZoneShape};
use geo::{Coord, LineString, MultiPolygon, Polygon};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rstar::RTree;
use uuid::Uuid;

/// Seeds for the random points and zones (fixed, so every run sees the same inputs).
const SEED_POINTS: u64 = 0x5EED_0001;
const SEED_ZONES: u64 = 0x5EED_0002;
/// Points per iteration in the per-zone cases.
const POINTS: usize = 10_000;

fn real_zone(file: &str, name: &str) -> Zone {
    let path = format!("{}/fixtures/zones/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let geometry: geojson::Geometry = text.parse().expect("a GeoJSON geometry");
    let props = ZoneProperties {
        name: name.into(),
        kind: ZoneKind::Inclusion,
        crs: Crs::Gcj02,
        radius_m: None,
        wifi: Default::default(),
        schedule: None,
    };
    ZoneSpec::from_geometry(&geometry, props)
        .expect("valid zone")
        .into_zone(Uuid::from_u128(1))
}

/// A star of `n` vertices alternating between radius 0.1° and 0.02° around (112°E, 25°N):
/// long thin spikes, the pathological shape for every point-in-polygon index.
fn spiky_star(n: usize) -> Zone {
    let mut ring: Vec<Coord<f64>> = (0..n)
        .map(|i| {
            let a = i as f64 / n as f64 * std::f64::consts::TAU;
            let r = if i % 2 == 0 { 0.1 } else { 0.02 };
            Coord {
                x: 112.0 + r * a.cos(),
                y: 25.0 + r * a.sin(),
            }
        })
        .collect();
    ring.push(ring[0]);
    area_zone(Uuid::from_u128(2), ring)
}

fn area_zone(id: Uuid, ring: Vec<Coord<f64>>) -> Zone {
    Zone {
        id,
        name: "bench".into(),
        kind: ZoneKind::Inclusion,
        shape: ZoneShape::Area(MultiPolygon(vec![Polygon::new(LineString(ring), vec![])])),
        wifi: Default::default(),
        scope: Default::default(),
        schedule: None,
    }
}

fn points_in(env: [f64; 4], n: usize, seed: u64) -> Vec<[f64; 2]> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            [
                rng.random_range(env[0]..=env[2]),
                rng.random_range(env[1]..=env[3]),
            ]
        })
        .collect()
}

fn shapes() -> Vec<(&'static str, Zone)> {
    vec![
        (
            "Jiahe county (368 vertices)",
            real_zone("jiahe-county-431024.gcj02.geojson", "Jiahe"),
        ),
        (
            "Chenzhou city (4,499 vertices)",
            real_zone("chenzhou-city-431000.gcj02.geojson", "Chenzhou"),
        ),
        (
            "Hunan province (19,374 vertices, 3 parts, a hole)",
            real_zone("hunan-province-430000.gcj02.geojson", "Hunan"),
        ),
        ("a spiky star (5,000 vertices)", spiky_star(5_000)),
    ]
}

fn single_points(c: &mut Criterion) {
    let jiahe = PreparedZone::new(real_zone("jiahe-county-431024.gcj02.geojson", "Jiahe"));
    let env = jiahe.envelope();
    // The bounding box's south-east corner region is outside the county.
    let in_box_outside = (env[2] - 0.01, env[1] + 0.01);
    assert!(!jiahe.contains(in_box_outside.0, in_box_outside.1));
    let far = (113.5, 27.0);
    let seat = (112.37, 25.59);
    let mut g = c.benchmark_group("one point against Jiahe county");
    for (name, (lon, lat)) in [
        ("outside the bounding box", far),
        (
            "inside the bounding box but outside the polygon",
            in_box_outside,
        ),
        ("well inside the polygon", seat),
    ] {
        g.bench_function(format!("contains: a point {name}"), |b| {
            b.iter(|| jiahe.contains(black_box(lon), black_box(lat)))
        });
        g.bench_function(format!("classify with 30 m: a point {name}"), |b| {
            b.iter(|| jiahe.classify(black_box(lon), black_box(lat), black_box(30.0)))
        });
    }
    // Near the boundary: a vertex of the county line, where the exact path runs.
    let ZoneShape::Area(mp) = &jiahe.zone().shape else {
        unreachable!("an area")
    };
    let v = mp.0[0].exterior().0[100];
    g.bench_function("classify with 30 m: a point on the boundary", |b| {
        b.iter(|| jiahe.classify(black_box(v.x), black_box(v.y), black_box(30.0)))
    });
    g.bench_function("signed distance: a point well inside the polygon", |b| {
        b.iter(|| jiahe.signed_distance_m(black_box(seat.0), black_box(seat.1)))
    });
    g.finish();
}

fn random_points_per_zone(c: &mut Criterion) {
    let mut g = c.benchmark_group("10k random points in the bounding box");
    g.throughput(Throughput::Elements(POINTS as u64));
    for (name, zone) in shapes() {
        let prepared = PreparedZone::new(zone);
        let points = points_in(prepared.envelope(), POINTS, SEED_POINTS);
        g.bench_function(BenchmarkId::new("contains", name), |b| {
            b.iter(|| {
                points
                    .iter()
                    .filter(|p| prepared.contains(black_box(p[0]), black_box(p[1])))
                    .count()
            })
        });
        g.bench_function(BenchmarkId::new("classify with a 30 m radius", name), |b| {
            b.iter(|| {
                points
                    .iter()
                    .map(|p| {
                        prepared.classify(black_box(p[0]), black_box(p[1]), 30.0) as u8 as usize
                    })
                    .sum::<usize>()
            })
        });
        g.bench_function(BenchmarkId::new("classify with a 1 km radius", name), |b| {
            b.iter(|| {
                points
                    .iter()
                    .map(|p| {
                        prepared.classify(black_box(p[0]), black_box(p[1]), 1_000.0) as u8 as usize
                    })
                    .sum::<usize>()
            })
        });
    }
    g.finish();
}

fn prepare(c: &mut Criterion) {
    let mut g = c.benchmark_group("prepare a zone");
    g.sample_size(10);
    for (name, zone) in shapes() {
        g.bench_function(name, |b| {
            b.iter(|| PreparedZone::new(black_box(zone.clone())))
        });
    }
    g.finish();
}

/// `n` small zones (5-vertex squares of 100–2,000 m and circles) scattered over China.
fn many_zones(n: usize) -> Vec<Zone> {
    let mut rng = StdRng::seed_from_u64(SEED_ZONES);
    (0..n)
        .map(|i| {
            let (lon, lat) = (rng.random_range(100.0..120.0), rng.random_range(22.0..40.0));
            let side = rng.random_range(0.001..0.02);
            let id = Uuid::from_u128(i as u128 + 10);
            if i % 2 == 0 {
                area_zone(
                    id,
                    vec![
                        Coord { x: lon, y: lat },
                        Coord {
                            x: lon + side,
                            y: lat,
                        },
                        Coord {
                            x: lon + side,
                            y: lat + side,
                        },
                        Coord {
                            x: lon,
                            y: lat + side,
                        },
                        Coord { x: lon, y: lat },
                    ],
                )
            } else {
                Zone {
                    id,
                    name: "circle".into(),
                    kind: ZoneKind::Exclusion,
                    shape: ZoneShape::Circle {
                        center: geo::Point::new(lon, lat),
                        radius_m: side * 50_000.0,
                    },
                    wifi: Default::default(),
                    scope: Default::default(),
                    schedule: None,
                }
            }
        })
        .collect()
}

fn catalog(c: &mut Criterion) {
    let person = Uuid::from_u128(0xFACE);
    let mut build = c.benchmark_group("build a catalog");
    build.sample_size(10);
    for n in [10usize, 1_000, 100_000] {
        let zones = many_zones(n);
        build.throughput(Throughput::Elements(n as u64));
        build.bench_function(BenchmarkId::new("prepare and bulk-load zones", n), |b| {
            b.iter(|| ZoneCatalog::build(black_box(zones.clone()), HashMap::new()))
        });
        let first = ZoneCatalog::build(zones.clone(), HashMap::new());
        build.bench_function(
            BenchmarkId::new("rebuild with every zone unchanged", n),
            |b| b.iter(|| first.rebuild(black_box(zones.clone()), HashMap::new())),
        );
    }
    // Where reuse pays: big real boundaries are prepared once, then only compared.
    let real: Vec<Zone> = shapes()
        .into_iter()
        .take(3)
        .enumerate()
        .map(|(i, (_, mut z))| {
            z.id = Uuid::from_u128(i as u128 + 1);
            z
        })
        .collect();
    build.throughput(Throughput::Elements(real.len() as u64));
    build.bench_function("prepare and bulk-load Jiahe, Chenzhou and Hunan", |b| {
        b.iter(|| ZoneCatalog::build(black_box(real.clone()), HashMap::new()))
    });
    let first = ZoneCatalog::build(real.clone(), HashMap::new());
    build.bench_function("rebuild Jiahe, Chenzhou and Hunan unchanged", |b| {
        b.iter(|| first.rebuild(black_box(real.clone()), HashMap::new()))
    });
    build.finish();

    let mut tree = c.benchmark_group("zone envelope R-tree, 100k zones");
    tree.sample_size(10);
    let prepared: Vec<Arc<PreparedZone>> = many_zones(100_000)
        .into_iter()
        .map(|z| Arc::new(PreparedZone::new(z)))
        .collect();
    let entries: Vec<ZoneEnvelope> = prepared
        .iter()
        .enumerate()
        .map(|(i, z)| ewall::fence::envelope_entry(z, i as u32))
        .collect();
    tree.bench_function("bulk load", |b| {
        b.iter(|| RTree::bulk_load(black_box(entries.clone())))
    });
    tree.bench_function("insert one by one", |b| {
        b.iter(|| {
            let mut t = RTree::new();
            for e in black_box(entries.clone()) {
                t.insert(e);
            }
            t
        })
    });
    tree.finish();

    let mut query = c.benchmark_group("query a catalog");
    for n in [10usize, 1_000, 100_000] {
        let zones = many_zones(n);
        // The person has 50 zones (or all of them): checked through the R-tree.
        let ids: Vec<Uuid> = zones.iter().take(50).map(|z| z.id).collect();
        let cat = ZoneCatalog::build(zones, HashMap::from([(person, ids)]));
        let points = points_in([100.0, 22.0, 120.0, 40.0], 1_000, SEED_POINTS);
        query.throughput(Throughput::Elements(points.len() as u64));
        query.bench_function(BenchmarkId::new("zones near a point (30 m)", n), |b| {
            b.iter(|| {
                points
                    .iter()
                    .map(|p| cat.zones_near(p[0], p[1], 30.0).count())
                    .sum::<usize>()
            })
        });
        let mut out = Vec::new();
        query.bench_function(
            BenchmarkId::new("classify against a person's zones (30 m)", n),
            |b| {
                b.iter(|| {
                    let mut total = 0;
                    for p in &points {
                        out.clear();
                        cat.classify_for(
                            &person,
                            SupervisionLevel::Normal,
                            p[0],
                            p[1],
                            30.0,
                            &mut out,
                        );
                        total += out.len();
                    }
                    total
                })
            },
        );
    }
    query.finish();
}

fn engine(c: &mut Criterion) {
    let person = Uuid::from_u128(0xFACE);
    let hunan = real_zone("hunan-province-430000.gcj02.geojson", "Hunan");
    let jiahe = {
        let mut z = real_zone("jiahe-county-431024.gcj02.geojson", "Jiahe");
        z.id = Uuid::from_u128(3);
        z
    };
    let ids = vec![hunan.id, jiahe.id];
    let cat = ZoneCatalog::build(vec![hunan, jiahe], HashMap::from([(person, ids)]));
    let points = points_in([112.24, 25.44, 112.6, 25.79], 1_000, SEED_POINTS);
    let start = Utc.timestamp_opt(1_700_000_000, 0).single().expect("valid");
    let fixes: Vec<Fix> = points
        .iter()
        .enumerate()
        .map(|(i, p)| Fix {
            device_id: "860000000000001".into(),
            person_id: person,
            // An hour apart, so the random points are believable movement (the engine's speed
            // check would set aside fixes 30 km apart a second apart as implausible jumps).
            time: start + chrono::Duration::hours(i as i64),
            received_at: start,
            lat: p[1],
            lon: p[0],
            valid: true,
            accuracy_m: Some(15.0),
            speed_kmh: None,
            course: None,
            altitude_m: None,
            satellites: None,
            hdop: None,
            source: PositionSource::Gps,
            battery_pct: None,
            archived: false,
            integrity_mismatch: false,
            protocol: "json".into(),
            wifi_bssids: Vec::new(),
            clock_skew: false,
            implausible: None,
            raw: Default::default(),
        })
        .collect();
    let mut g = c.benchmark_group("fence engine");
    g.throughput(Throughput::Elements(fixes.len() as u64));
    g.bench_function(
        "check fixes of a person assigned Hunan and Jiahe (random in Jiahe's box)",
        |b| {
            b.iter_batched_ref(
                || FenceEngine::new(FenceConfig::default()),
                |engine| {
                    fixes
                        .iter()
                        .map(|f| engine.check(&cat, black_box(f)).len())
                        .sum::<usize>()
                },
                criterion::BatchSize::LargeInput,
            )
        },
    );
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30)
}

criterion_group! {
    name = benches;
    config = config();
    targets = single_points, random_points_per_zone, prepare, catalog, engine
}
criterion_main!(benches);

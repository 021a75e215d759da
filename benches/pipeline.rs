//! Pipeline benchmarks: the hot path end to end, in process (no sockets).
//!
//! A county's wristbands: Jiahe county (the real boundary from `fixtures/zones/`, converted from
//! GCJ-02) as every person's inclusion zone, plus five circles inside it (100–400 m) as
//! exclusion zones everyone is assigned. Each wristband walks from a random start in the county
//! (fixed seed), one GT06 position report (0x12, built by the protocol crate's encoder) every
//! 10 s of device time.
//!
//! Three views, each timed apart:
//!
//! - **decode and fence check**, one thread: frames through a per-device session (as the TCP
//!   codec reads them), `ingest::convert` to fixes (with the registry lookup ingest does), and
//!   `FenceEngine::check` against the catalog; fixes per second, and each half alone.
//! - **the running pipeline**: the real `Pipeline::spawn` (router, fence shards, group-commit
//!   store writer) over a real `SqliteStore` in a temporary directory (WAL, `synchronous =
//!   FULL`, as `ewall serve` runs it). Many devices submit at once, each waiting for its commit
//!   notice before sending the next fix, as a TCP connection waits before acknowledging; fixes
//!   per second from the first submission to the last notice. The batch sizes the writer
//!   reached are read from the `ewall_batch_size_positions` histogram and printed after each
//!   case.
//! - **the store commit alone**, batches of 1 / 10 / 100 / 1,000 positions: per-fix cost, which
//!   shows what group commit buys.
//!
//! Results and the machine: `benches/README.md`. Run with `cargo bench --bench pipeline`.

mod common;

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use chrono::{DateTime, TimeZone, Utc};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, SamplingMode, Throughput};
use ewall::fence::{
    zone_to_feature, FenceConfig, FenceEngine, LevelsConfig, PreparedZone, ZoneCatalog,
};
use ewall::ingest::{convert, IngestConfig};
use ewall::model::{Crs, Fix, PersonId, Submission, SupervisionLevel, Zone, ZoneKind, ZoneShape};
use ewall::pipeline::{Pipeline, PipelineSettings, Resume};
use ewall::registry::Registry;
use ewall::store::{NewPerson, Store, StoreConfig, ZoneRecord};
use ewall::telemetry::Metrics;
use ewall_protocol::gt06::encode;
use ewall_protocol::{Item, Protocol, Session, SessionOptions};
use prometheus::core::Collector;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::runtime::Runtime;
use uuid::Uuid;

/// Seeds for the circles and for the walks (fixed, so every run sees the same inputs).
const SEED_CIRCLES: u64 = 0x5EED_0101;
const SEED_WALKS: u64 = 0x5EED_0102;
/// Device time between two fixes of one wristband.
const REPORT_INTERVAL_SECS: i64 = 10;
/// Exclusion circles every person is assigned.
const CIRCLES: usize = 5;

/// The catalog's zones: Jiahe county and the circles inside it.
fn county_zones() -> Vec<Zone> {
    let county = common::jiahe_county(Uuid::from_u128(1));
    let prepared = PreparedZone::new(county.clone());
    let mut rng = StdRng::seed_from_u64(SEED_CIRCLES);
    let mut zones = vec![county];
    for i in 0..CIRCLES {
        let (lon, lat) = point_in(&prepared, &mut rng);
        zones.push(Zone {
            id: Uuid::from_u128(10 + i as u128),
            name: format!("exclusion circle {i}"),
            kind: ZoneKind::Exclusion,
            shape: ZoneShape::Circle {
                center: geo::Point::new(lon, lat),
                radius_m: rng.random_range(100.0..400.0),
            },
            wifi: Default::default(),
            scope: Default::default(),
            schedule: None,
        });
    }
    zones
}

/// A random point inside the zone (rejection sampling in its bounding box).
fn point_in(zone: &PreparedZone, rng: &mut StdRng) -> (f64, f64) {
    let e = zone.envelope();
    loop {
        let (lon, lat) = (rng.random_range(e[0]..e[2]), rng.random_range(e[1]..e[3]));
        if zone.contains(lon, lat) {
            return (lon, lat);
        }
    }
}

/// One simulated wristband: its IMEI, the person wearing it, and its GT06 frames.
struct Wristband {
    imei: String,
    person: PersonId,
    login: Vec<u8>,
    reports: Vec<Vec<u8>>,
}

fn start_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0)
        .single()
        .expect("a valid date")
}

/// `devices` wristbands walking `fixes` steps each: from a random start in the county, up to
/// 15 m per step in each direction (a person walking slowly, or GPS jitter at rest).
fn wristbands(county: &Zone, devices: usize, fixes: usize) -> Vec<Wristband> {
    let county = PreparedZone::new(county.clone());
    let mut rng = StdRng::seed_from_u64(SEED_WALKS);
    let step = 15.0 / 111_000.0;
    (0..devices)
        .map(|d| {
            let imei = format!("86{:013}", d);
            let (mut lon, mut lat) = point_in(&county, &mut rng);
            let reports = (0..fixes)
                .map(|i| {
                    lon += rng.random_range(-step..step);
                    lat += rng.random_range(-step..step);
                    let time =
                        start_time() + chrono::Duration::seconds(i as i64 * REPORT_INTERVAL_SECS);
                    encode::location((i + 2) as u16, &encode::Fix::new(time, lat, lon))
                })
                .collect();
            Wristband {
                login: encode::login(&imei, 1, None),
                imei,
                person: Uuid::from_u128(0x1000 + d as u128),
                reports,
            }
        })
        .collect()
}

/// The catalog with every wristband's person assigned every zone.
fn catalog(zones: &[Zone], bands: &[Wristband]) -> ZoneCatalog {
    let ids: Vec<Uuid> = zones.iter().map(|z| z.id).collect();
    let assignments = bands.iter().map(|b| (b.person, ids.clone())).collect();
    ZoneCatalog::build(zones.to_vec(), assignments)
}

/// The registry ingest asks "whose device is this?"; its catalog is not used here.
fn device_registry(bands: &[Wristband]) -> Registry {
    let registry = Registry::default();
    for band in bands {
        registry.device_bound(&band.imei, band.person);
    }
    registry
}

/// A connection per wristband: its session (logged in, untimed) and read buffer.
fn connections(bands: &[Wristband]) -> Vec<(Box<dyn Session>, BytesMut)> {
    bands
        .iter()
        .map(|band| {
            let mut session = Protocol::Gt06
                .session(&SessionOptions::default())
                .expect("a stream protocol");
            let mut buf = BytesMut::from(&band.login[..]);
            let login = session.decode(&mut buf).expect("a clean stream");
            assert!(matches!(login, Some(Item::Frame(_))), "login decodes");
            (session, buf)
        })
        .collect()
}

/// Frames in arrival order: every wristband's first report, then every second report, ...
fn arrival_order(bands: &[Wristband]) -> Vec<(usize, &[u8])> {
    let per_band = bands.first().map_or(0, |b| b.reports.len());
    (0..per_band)
        .flat_map(|i| {
            bands
                .iter()
                .enumerate()
                .map(move |(d, b)| (d, b.reports[i].as_slice()))
        })
        .collect()
}

/// Decodes one frame on its connection and turns it into fixes, as TCP ingest does.
fn decode_fixes(
    connection: &mut (Box<dyn Session>, BytesMut),
    frame: &[u8],
    registry: &Registry,
) -> Vec<Fix> {
    let (session, buf) = connection;
    buf.extend_from_slice(frame);
    let Some(Item::Frame(decoded)) = session.decode(buf).expect("a clean stream") else {
        panic!("a report that does not decode");
    };
    let device = session.device_id().expect("logged in");
    let person = registry.person_of(device).expect("registered");
    // Received as it was recorded, so the plausibility check sees a live fix.
    let received_at = decoded
        .messages
        .iter()
        .find_map(|m| m.position.as_ref().map(|p| p.time))
        .unwrap_or_else(start_time);
    let (mut fixes, _alarms, _faults) = convert(
        Protocol::Gt06,
        device,
        person,
        &decoded.messages,
        decoded.integrity.is_mismatch(),
        received_at,
        &IngestConfig::default(),
    )
    .expect("recorded coordinates are numbers");
    // Each fix keeps its frame, as TCP ingest does, so commits store and hash it.
    let raw = session.take_frame();
    for fix in &mut fixes {
        fix.raw = raw.clone();
    }
    fixes
}

fn decode_and_check(c: &mut Criterion) {
    const DEVICES: usize = 200;
    const FIXES: usize = 50;
    let zones = county_zones();
    let bands = wristbands(&zones[0], DEVICES, FIXES);
    let catalog = catalog(&zones, &bands);
    let registry = device_registry(&bands);
    let frames = arrival_order(&bands);
    let fixes: Vec<Fix> = {
        let mut conns = connections(&bands);
        frames
            .iter()
            .flat_map(|&(d, frame)| decode_fixes(&mut conns[d], frame, &registry))
            .collect()
    };
    assert_eq!(fixes.len(), DEVICES * FIXES, "one fix per report");

    let mut g = c.benchmark_group(format!(
        "decode and fence check, {DEVICES} wristbands x {FIXES} fixes"
    ));
    g.throughput(Throughput::Elements(fixes.len() as u64));
    g.bench_function("decode reports into fixes", |b| {
        b.iter_batched_ref(
            || connections(&bands),
            |conns| {
                frames
                    .iter()
                    .map(|&(d, frame)| {
                        decode_fixes(&mut conns[d], black_box(frame), &registry).len()
                    })
                    .sum::<usize>()
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function("fence check the decoded fixes", |b| {
        b.iter_batched_ref(
            || FenceEngine::new(FenceConfig::default()),
            |engine| {
                fixes
                    .iter()
                    .map(|f| engine.check(&catalog, black_box(f)).len())
                    .sum::<usize>()
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function("decode reports and fence check their fixes", |b| {
        b.iter_batched_ref(
            || {
                (
                    connections(&bands),
                    FenceEngine::new(FenceConfig::default()),
                )
            },
            |(conns, engine)| {
                let mut transitions = 0;
                for &(d, frame) in &frames {
                    for fix in decode_fixes(&mut conns[d], black_box(frame), &registry) {
                        transitions += engine.check(&catalog, &fix).len();
                    }
                }
                transitions
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

/// A SQLite store in a fresh temporary directory, migrated, holding the zones, one person per
/// wristband with every zone assigned, and the device bindings.
async fn county_store(
    zones: &[Zone],
    bands: &[Wristband],
) -> (tempfile::TempDir, Arc<dyn Store>, Vec<(String, PersonId)>) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let url = format!("sqlite://{}", dir.path().join("ewall.db").display());
    let (store, devices) = county_store_at(&url, zones, bands).await;
    (dir, store, devices)
}

/// The same as [`county_store`] in the (empty) database at `url`.
async fn county_store_at(
    url: &str,
    zones: &[Zone],
    bands: &[Wristband],
) -> (Arc<dyn Store>, Vec<(String, PersonId)>) {
    let store = ewall::store::open(url).await.expect("store opens");
    for zone in zones {
        let geometry = zone_to_feature(zone, Crs::Gcj02)
            .geometry
            .expect("a geometry")
            .to_string();
        let radius_m = match zone.shape {
            ZoneShape::Circle { radius_m, .. } => Some(radius_m),
            ZoneShape::Area(_) => None,
        };
        let record = ZoneRecord {
            id: zone.id,
            name: zone.name.clone(),
            kind: zone.kind,
            source_crs: Crs::Gcj02,
            radius_m,
            geometry,
            wifi: Default::default(),
            created_at: start_time(),
            scope: Default::default(),
            persons: Vec::new(),
            schedule: None,
        };
        store.create_zone(&record).await.expect("zone stored");
    }
    let ids: Vec<Uuid> = zones.iter().map(|z| z.id).collect();
    let mut devices = Vec::with_capacity(bands.len());
    for band in bands {
        let person = store
            .create_person(NewPerson {
                name: format!("person {}", band.imei),
                level: SupervisionLevel::Normal,
                timezone: "Asia/Shanghai".into(),
            })
            .await
            .expect("person stored");
        store
            .create_device(&band.imei, person.id)
            .await
            .expect("device stored");
        store
            .set_person_zones(person.id, &ids)
            .await
            .expect("zones assigned");
        devices.push((band.imei.clone(), person.id));
    }
    (store, devices)
}

/// `fixes` moved `round` × `span` later in device time. Benches that commit the same walk again
/// and again use it so that each round stores new rows: an unchanged fix is a resend, which the
/// store's natural key skips.
fn later(fixes: &[Fix], round: u64, span: chrono::Duration) -> Vec<Fix> {
    let shift = span * i32::try_from(round).expect("fewer than 2^31 rounds");
    fixes
        .iter()
        .map(|f| Fix {
            time: f.time + shift,
            ..f.clone()
        })
        .collect()
}

/// Each wristband's fixes, decoded once (untimed) and attributed to the stored person.
fn fixes_per_device(bands: &[Wristband], devices: &[(String, PersonId)]) -> Vec<Vec<Fix>> {
    let registry = Registry::default();
    for (imei, person) in devices {
        registry.device_bound(imei, *person);
    }
    let mut conns = connections(bands);
    bands
        .iter()
        .enumerate()
        .map(|(d, band)| {
            band.reports
                .iter()
                .flat_map(|frame| decode_fixes(&mut conns[d], frame, &registry))
                .collect()
        })
        .collect()
}

/// Runs one pipeline over `devices` concurrent submitters and returns the time from the first
/// submission to the last commit notice.
async fn run_pipeline(
    settings: PipelineSettings,
    store: Arc<dyn Store>,
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
    devices: &[Vec<Fix>],
) -> Duration {
    let pipeline = Pipeline::spawn(settings, store, registry, metrics, &Resume::default());
    let started = Instant::now();
    let submitters: Vec<_> = devices
        .iter()
        .map(|fixes| {
            let tx = pipeline.submissions.clone();
            let fixes = fixes.clone();
            tokio::spawn(async move {
                for fix in fixes {
                    let (done, committed) = tokio::sync::oneshot::channel();
                    let submission = Submission {
                        person_id: fix.person_id,
                        heard: None,
                        fixes: vec![fix],
                        alarms: Vec::new(),
                        wifi: Vec::new(),
                        crs: ewall::model::Crs::Wgs84,
                        done: Some(done),
                    };
                    tx.send(submission).await.expect("pipeline running");
                    committed.await.expect("commit notice").expect("committed");
                }
            })
        })
        .collect();
    for submitter in submitters {
        submitter.await.expect("submitter finished");
    }
    let elapsed = started.elapsed();
    pipeline.join().await;
    elapsed
}

/// Commits, mean and largest bucket of the batch-size histogram, for the case's summary line.
fn batch_summary(metrics: &Metrics) -> String {
    let h = &metrics.batch_size;
    let (count, sum) = (h.get_sample_count(), h.get_sample_sum());
    let mut buckets = String::new();
    let mut below = 0;
    for family in h.collect() {
        for metric in family.get_metric() {
            for bucket in metric.get_histogram().get_bucket() {
                let n = bucket.cumulative_count() - below;
                below = bucket.cumulative_count();
                if n > 0 {
                    buckets.push_str(&format!(" <={}: {n};", bucket.upper_bound()));
                }
            }
        }
    }
    let commit = &metrics.batch_commit_seconds;
    format!(
        "{count} commits, {sum} positions, mean batch {:.1}, mean commit {:.2} ms; batches by size:{buckets}",
        sum / count.max(1) as f64,
        commit.get_sample_sum() / commit.get_sample_count().max(1) as f64 * 1e3,
    )
}

fn running_pipeline(c: &mut Criterion) {
    const FIXES: usize = 10;
    let rt = Runtime::new().expect("a tokio runtime");
    let zones = county_zones();
    let mut g = c.benchmark_group("the running pipeline over SQLite");
    g.sampling_mode(SamplingMode::Flat);
    g.sample_size(10);
    g.warm_up_time(Duration::from_secs(2));
    g.measurement_time(Duration::from_secs(8));
    for devices in [100usize, 1_000] {
        let bands = wristbands(&zones[0], devices, FIXES);
        g.throughput(Throughput::Elements((devices * FIXES) as u64));
        for linger_ms in [0u64, 2] {
            // A fresh database per case, so no case inherits another's rows.
            let (_dir, store, bound) = rt.block_on(county_store(&zones, &bands));
            let registry = Arc::new(
                rt.block_on(Registry::load(store.as_ref()))
                    .expect("registry loads"),
            );
            let fixes = fixes_per_device(&bands, &bound);
            let metrics = Arc::new(Metrics::new());
            let name = format!(
                "{devices} wristbands submit {FIXES} fixes each, one in flight per device, linger {linger_ms} ms"
            );
            let span = chrono::Duration::seconds(FIXES as i64 * REPORT_INTERVAL_SECS);
            let mut round = 0;
            g.bench_function(name, |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        round += 1;
                        let fixes: Vec<Vec<Fix>> =
                            fixes.iter().map(|f| later(f, round, span)).collect();
                        let settings = PipelineSettings {
                            fence: FenceConfig {
                                shards: 2,
                                ..FenceConfig::default()
                            },
                            levels: LevelsConfig::default(),
                            store: StoreConfig {
                                batch_linger: Duration::from_millis(linger_ms),
                                ..StoreConfig::default()
                            },
                            channel_capacity: 4096,
                            supervision: Default::default(),
                            clock: Default::default(),
                        };
                        total += rt.block_on(run_pipeline(
                            settings,
                            store.clone(),
                            registry.clone(),
                            metrics.clone(),
                            &fixes,
                        ));
                    }
                    total
                })
            });
            println!(
                "  {devices} wristbands, linger {linger_ms} ms: {}",
                batch_summary(&metrics)
            );
        }
    }
    g.finish();
}

fn store_commit(c: &mut Criterion) {
    let rt = Runtime::new().expect("a tokio runtime");
    let zones = county_zones();
    let bands = wristbands(&zones[0], 1_000, 1);
    let mut g = c.benchmark_group("store commit alone, SQLite WAL synchronous=FULL");
    g.sampling_mode(SamplingMode::Flat);
    g.sample_size(20);
    for batch in [1usize, 10, 100, 1_000] {
        // A fresh database per batch size: the table grows during a case, and no case should
        // start where the previous one left it.
        let (_dir, store, bound) = rt.block_on(county_store(&zones, &bands));
        bench_commits(&mut g, &rt, &store, &bands, &bound, batch, "");
    }
    g.finish();
}

/// The store commit alone on PostgreSQL and SQLite, batches of 1 and 1,000, in one run so the
/// two compare. PostgreSQL is the server at `EWALL_BENCH_PG_URL` (each case in a database of
/// its own, dropped afterwards); without the variable the PostgreSQL cases are skipped.
fn store_commit_backends(c: &mut Criterion) {
    let Ok(server) = std::env::var("EWALL_BENCH_PG_URL") else {
        println!("skipped the PostgreSQL store benches: EWALL_BENCH_PG_URL is not set");
        return;
    };
    let rt = Runtime::new().expect("a tokio runtime");
    let zones = county_zones();
    let bands = wristbands(&zones[0], 1_000, 1);
    let mut g = c.benchmark_group("store commit alone, PostgreSQL and SQLite");
    g.sampling_mode(SamplingMode::Flat);
    g.sample_size(20);
    for batch in [1usize, 1_000] {
        let (_dir, store, bound) = rt.block_on(county_store(&zones, &bands));
        bench_commits(&mut g, &rt, &store, &bands, &bound, batch, "SQLite: ");
        drop(store);

        let database = rt.block_on(BenchDatabase::create(&server));
        let (store, bound) = rt.block_on(county_store_at(&database.url, &zones, &bands));
        bench_commits(&mut g, &rt, &store, &bands, &bound, batch, "PostgreSQL: ");
        drop(store);
        rt.block_on(database.drop_now());
    }
    g.finish();
}

/// One case: commits of `batch` positions from as many wristbands, back to back, each commit
/// new rows dated today (so PostgreSQL writes them into today's partition, as in service).
fn bench_commits(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    rt: &Runtime,
    store: &Arc<dyn Store>,
    bands: &[Wristband],
    bound: &[(String, PersonId)],
    batch: usize,
    label: &str,
) {
    let today = Utc::now()
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .expect("midnight exists")
        .and_utc();
    let fixes: Vec<Fix> = fixes_per_device(bands, bound)
        .into_iter()
        .flatten()
        .take(batch)
        .map(|f| Fix {
            time: today + (f.time - start_time()),
            ..f
        })
        .collect();
    let mut round = 0;
    g.throughput(Throughput::Elements(batch as u64));
    g.bench_function(
        format!("{label}commit a batch of {batch} positions from {batch} wristbands"),
        |b| {
            b.iter_custom(|iters| {
                // Prepared before the clock starts: every commit stores rows of its own.
                let batches: Vec<Vec<Fix>> = (0..iters)
                    .map(|_| {
                        round += 1;
                        later(&fixes, round, chrono::Duration::milliseconds(10))
                    })
                    .collect();
                rt.block_on(async {
                    let started = Instant::now();
                    for batch in &batches {
                        store
                            .commit(black_box(batch), Vec::new())
                            .await
                            .expect("committed");
                    }
                    started.elapsed()
                })
            })
        },
    );
}

/// A database created for one bench case on a PostgreSQL server.
struct BenchDatabase {
    url: String,
    name: String,
    server: String,
}

impl BenchDatabase {
    async fn create(server: &str) -> BenchDatabase {
        use sqlx::Connection;
        let name = format!("ewall_bench_{}", Uuid::now_v7().simple());
        let mut admin = sqlx::PgConnection::connect(server)
            .await
            .expect("EWALL_BENCH_PG_URL accepts connections");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("bench database created");
        let base = server.split('?').next().unwrap_or(server);
        let authority = base.rsplit_once('/').map_or(base, |(a, _)| a);
        BenchDatabase {
            url: format!("{authority}/{name}"),
            name,
            server: server.to_owned(),
        }
    }

    async fn drop_now(self) {
        use sqlx::Connection;
        let mut admin = sqlx::PgConnection::connect(&self.server)
            .await
            .expect("EWALL_BENCH_PG_URL accepts connections");
        sqlx::query(&format!("DROP DATABASE {} WITH (FORCE)", self.name))
            .execute(&mut admin)
            .await
            .expect("bench database dropped");
    }
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .sample_size(20)
}

criterion_group! {
    name = benches;
    config = config();
    targets = decode_and_check, running_pipeline, store_commit, store_commit_backends
}
criterion_main!(benches);

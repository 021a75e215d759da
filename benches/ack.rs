//! End to end through the whole service: acknowledged fixes per second and the acknowledgement
//! latency, on SQLite and (with `EWALL_BENCH_PG_URL`) PostgreSQL, in one run, interleaved.
//!
//! `server::start` runs in this process on a fresh store (SQLite in a temporary directory, or a
//! fresh database on the PostgreSQL server, dropped afterwards), with the default `[store]`
//! settings. Each of `EWALL_BENCH_DEVICES` GT06 wristbands (default 100 and 1,000) is a TCP
//! connection that logs in, then sends one 0x12 position, waits for its acknowledgement (written
//! only after the commit), and sends the next: as many fixes in flight as wristbands. For
//! `EWALL_BENCH_SECONDS` (default 8) after a one-second warm-up, it counts the acknowledgements
//! and times each from the write of the frame to the read of its acknowledgement. Prints one
//! JSON line per case. A program, not a criterion bench (`harness = false`):
//! `EWALL_BENCH_PG_URL=postgres://postgres@127.0.0.1:5432/postgres cargo bench --bench ack`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use ewall::config::Config;
use ewall::model::SupervisionLevel;
use ewall::store::NewPerson;
use ewall_protocol::gt06::encode;
use serde_json::json;
use sqlx::Connection;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WARM_UP: Duration = Duration::from_secs(1);

fn imei(i: usize) -> String {
    let body = format!("8647200{i:07}");
    let check = ewall::identity::luhn_check_digit(&body);
    format!("{body}{check}")
}

/// A database of its own on the bench server.
struct BenchDatabase {
    url: String,
    name: String,
    server: String,
}

impl BenchDatabase {
    async fn create(server: &str) -> BenchDatabase {
        let name = format!("ewall_bench_{}", ewall::model::new_id().simple());
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
        let mut admin = sqlx::PgConnection::connect(&self.server)
            .await
            .expect("EWALL_BENCH_PG_URL accepts connections");
        sqlx::query(&format!("DROP DATABASE {} WITH (FORCE)", self.name))
            .execute(&mut admin)
            .await
            .expect("bench database dropped");
    }
}

/// What one wristband measured after the warm-up.
struct Measured {
    latencies: Vec<Duration>,
}

/// Logs in, then reports and waits for each acknowledgement until `end`.
async fn wristband(
    addr: SocketAddr,
    imei: String,
    i: usize,
    start: Instant,
    end: Instant,
) -> Measured {
    let mut socket = TcpStream::connect(addr).await.expect("connect");
    socket.set_nodelay(true).expect("nodelay");
    socket
        .write_all(&encode::login(&imei, 1, None))
        .await
        .expect("login written");
    let mut ack = [0u8; 10];
    socket.read_exact(&mut ack).await.expect("login ack");
    let base = Utc.with_ymd_and_hms(2026, 10, 1, 0, 0, 0).unwrap();
    let (lat, lon) = (25.5 + (i % 1000) as f64 * 1e-4, 112.3);
    let mut latencies = Vec::new();
    let mut serial: u16 = 2;
    let mut n: i64 = 0;
    while Instant::now() < end {
        let time = base + chrono::Duration::seconds(n);
        let frame = encode::location(serial, &encode::Fix::new(time, lat, lon + n as f64 * 1e-6));
        let sent = Instant::now();
        socket.write_all(&frame).await.expect("frame written");
        socket.read_exact(&mut ack).await.expect("ack read");
        if sent >= start + WARM_UP {
            latencies.push(sent.elapsed());
        }
        serial = serial.wrapping_add(1).max(2);
        n += 1;
    }
    Measured { latencies }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index].as_secs_f64() * 1000.0
}

async fn run_case(backend: &str, url: &str, devices: usize, seconds: u64) -> serde_json::Value {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut config = Config {
        data_dir: dir.path().to_owned(),
        ..Config::default()
    };
    if !url.is_empty() {
        config.store.url = url.to_owned();
    }
    config.http.listen = "127.0.0.1:0".parse().unwrap();
    config.ingest.max_fix_age = Duration::from_secs(100 * 365 * 86_400);
    for listener in [
        &mut config.listeners.gt06,
        &mut config.listeners.jt808,
        &mut config.listeners.h02,
        &mut config.listeners.watch,
        &mut config.listeners.osmand,
    ] {
        listener.listen = "127.0.0.1:0".parse().unwrap();
    }
    config.mqtt.enabled = false;
    let store = ewall::store::open_with(&config.store_url(), &config.store)
        .await
        .expect("store opens");
    for i in 0..devices {
        let person = store
            .create_person(NewPerson {
                name: format!("Wearer {i}"),
                level: SupervisionLevel::Normal,
                timezone: "Asia/Shanghai".into(),
            })
            .await
            .expect("person");
        store
            .create_device(&imei(i), person.id)
            .await
            .expect("device");
    }
    drop(store);
    let running = ewall::server::start(config).await.expect("service starts");
    let addr = running.listeners["gt06"];
    let start = Instant::now();
    let end = start + WARM_UP + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..devices)
        .map(|i| tokio::spawn(wristband(addr, imei(i), i, start, end)))
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.expect("wristband task").latencies);
    }
    let metrics = running.metrics.clone();
    running.shutdown();
    running.stopped().await;
    latencies.sort();
    let batches = metrics.batch_size.get_sample_count().max(1) as f64;
    json!({
        "backend": backend,
        "wristbands": devices,
        "seconds": seconds,
        "acknowledged": latencies.len(),
        "fixes_per_second": (latencies.len() as f64 / seconds as f64).round(),
        "ack_p50_ms": (percentile(&latencies, 0.50) * 100.0).round() / 100.0,
        "ack_p99_ms": (percentile(&latencies, 0.99) * 100.0).round() / 100.0,
        "mean_batch_positions": (metrics.batch_size.get_sample_sum() / batches).round(),
        "mean_commit_ms": (metrics.batch_commit_seconds.get_sample_sum()
            / metrics.batch_commit_seconds.get_sample_count().max(1) as f64
            * 1e5).round() / 100.0,
    })
}

fn main() {
    // `cargo bench` passes `--bench`; a program of its own takes no other arguments.
    let devices: Vec<usize> = std::env::var("EWALL_BENCH_DEVICES")
        .map(|v| {
            v.split(',')
                .map(|n| n.trim().parse().expect("a number of devices"))
                .collect()
        })
        .unwrap_or_else(|_| vec![100, 1000]);
    let seconds: u64 = std::env::var("EWALL_BENCH_SECONDS")
        .map(|v| v.parse().expect("a number of seconds"))
        .unwrap_or(8);
    let pg = std::env::var("EWALL_BENCH_PG_URL").ok();
    if pg.is_none() {
        eprintln!("EWALL_BENCH_PG_URL is not set: SQLite only");
    }
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    runtime.block_on(async {
        ewall::alert::dispatch::webhook::install_tls_provider();
        for &n in &devices {
            let sqlite = run_case("sqlite", "", n, seconds).await;
            println!("{sqlite}");
            if let Some(server) = &pg {
                let database = BenchDatabase::create(server).await;
                let postgres = run_case("postgres", &database.url, n, seconds).await;
                println!("{postgres}");
                database.drop_now().await;
            }
        }
    });
}

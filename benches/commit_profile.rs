//! A fixed amount of store commits to run under a profiler (`valgrind --tool=callgrind`, `perf
//! record`), where criterion's adaptive iteration counts would make two runs incomparable.
//!
//! It opens a store (SQLite in a fresh temporary directory, or the URL in
//! `EWALL_PROFILE_STORE_URL`), registers `EWALL_PROFILE_WRISTBANDS` persons with a device each
//! (1,000 by default), and then makes `EWALL_PROFILE_COMMITS` commits (20 by default) of one GT06
//! position per wristband, frames included, as the store writer does. With 0 commits it does the
//! set-up alone, so that the difference of two runs' instruction counts is the commits' own.
//! It prints one JSON line: commits, positions per commit and the wall time per commit.
//!
//! ```sh
//! cargo bench --bench commit_profile --no-run
//! EWALL_PROFILE_COMMITS=0 valgrind --tool=callgrind target/release/deps/commit_profile-*
//! EWALL_PROFILE_COMMITS=20 valgrind --tool=callgrind target/release/deps/commit_profile-*
//! ```

use std::sync::Arc;
use std::time::Instant;

use chrono::{Duration, TimeZone, Utc};
use ewall::model::{Fix, PositionSource, SupervisionLevel};
use ewall::store::{NewPerson, Store};
use ewall_protocol::gt06::encode;

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}={v} is not a count"))
        })
        .unwrap_or(default)
}

fn main() {
    let wristbands = setting("EWALL_PROFILE_WRISTBANDS", 1_000);
    let commits = setting("EWALL_PROFILE_COMMITS", 20);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let url = std::env::var("EWALL_PROFILE_STORE_URL")
        .unwrap_or_else(|_| format!("sqlite://{}", dir.path().join("ewall.db").display()));
    let rt = tokio::runtime::Runtime::new().expect("a tokio runtime");
    rt.block_on(async {
        let store: Arc<dyn Store> = ewall::store::open(&url).await.expect("store opens");
        let mut bound = Vec::with_capacity(wristbands);
        for i in 0..wristbands {
            let imei = format!("86471700{i:07}");
            let person = store
                .create_person(NewPerson {
                    name: format!("person {i}"),
                    level: SupervisionLevel::Normal,
                    timezone: "Asia/Shanghai".into(),
                })
                .await
                .expect("person stored");
            store
                .create_device(&imei, person.id)
                .await
                .expect("device stored");
            bound.push((imei, person.id));
        }
        let start = Utc::now()
            .date_naive()
            .and_hms_opt(0, 0, 0)
            .expect("midnight exists")
            .and_utc();
        let batches: Vec<Vec<Fix>> = (0..commits)
            .map(|round| {
                let time = start + Duration::seconds(10 * round as i64);
                bound
                    .iter()
                    .enumerate()
                    .map(|(i, (imei, person))| {
                        let lat = 25.5 + (i % 100) as f64 * 1e-4 + round as f64 * 1e-6;
                        let lon = 112.3 + (i / 100) as f64 * 1e-4;
                        let frame = encode::Fix::new(
                            Utc.timestamp_opt(time.timestamp(), 0).unwrap(),
                            lat,
                            lon,
                        );
                        Fix {
                            device_id: imei.clone(),
                            person_id: *person,
                            time,
                            received_at: Utc::now(),
                            lat,
                            lon,
                            valid: true,
                            accuracy_m: Some(15.0),
                            speed_kmh: Some(4.0),
                            course: Some(90.0),
                            altitude_m: None,
                            satellites: Some(8),
                            hdop: None,
                            source: PositionSource::Gps,
                            battery_pct: None,
                            archived: false,
                            integrity_mismatch: false,
                            protocol: "gt06".into(),
                            wifi_bssids: Vec::new(),
                            clock_skew: false,
                            implausible: None,
                            raw: encode::location(round as u16, &frame).into(),
                        }
                    })
                    .collect()
            })
            .collect();
        let started = Instant::now();
        for batch in &batches {
            store.commit(batch, Vec::new()).await.expect("committed");
        }
        let elapsed = started.elapsed();
        let per_commit_ms = if commits == 0 {
            0.0
        } else {
            elapsed.as_secs_f64() * 1000.0 / commits as f64
        };
        println!(
            "{}",
            serde_json::json!({
                "store": url.split(':').next(),
                "commits": commits,
                "positions_per_commit": wristbands,
                "ms_per_commit": (per_commit_ms * 1000.0).round() / 1000.0,
                "us_per_position": (per_commit_ms * 1000.0 / wristbands.max(1) as f64 * 10.0).round() / 10.0,
            })
        );
    });
}

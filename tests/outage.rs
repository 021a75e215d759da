//! The database goes away under load and comes back (PostgreSQL through a proxy the test cuts,
//! `tests/common/proxy.rs`): device connections stay open, nothing is acknowledged while the
//! database is away, `/readyz` says `degraded` with the reason while `/healthz` stays 200, and
//! once it is back everything held is committed and acknowledged: every acknowledged fix is
//! stored exactly once, and the breach decided during the outage is raised exactly once.
//!
//! Devices behave as real ones do: one fix in flight, resent when its acknowledgement does not
//! come within a second, the next one sent only once it is acknowledged. The pipeline is kept
//! small (`channel_capacity` 2, `batch_max` 4) so that more frames are in flight than it holds
//! and ingest waits at its bound, as it would with many devices.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use common::pg::TestDatabase;
use common::proxy::{self, Proxy};
use common::{north_of, Backend, Service};
use ewall_protocol::gt06::encode;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Wristbands streaming at home throughout.
const STREAMERS: usize = 24;
/// How long a device waits for an acknowledgement before it sends the fix again.
const RESEND_AFTER: Duration = Duration::from_secs(1);
/// How long the database stays away.
const OUTAGE: Duration = Duration::from_secs(4);

const HOME: (f64, f64) = (112.3625, 25.515);

fn imei(i: usize) -> String {
    let body = format!("8647180{i:07}");
    let check = ewall::identity::luhn_check_digit(&body);
    format!("{body}{check}")
}

/// The time in the fix with `serial`: 30 s per serial.
fn fix_time(serial: u16) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 8, 1, 20, 0, 0).unwrap()
        + chrono::Duration::seconds(i64::from(serial) * 30)
}

/// A GT06 wristband with one fix in flight at a time.
struct Wristband {
    socket: TcpStream,
    /// Bytes read and not yet taken as acknowledgements.
    buffer: Vec<u8>,
    /// Fix times acknowledged, in order.
    acked: Vec<DateTime<Utc>>,
    /// Times a fix was sent again for want of an acknowledgement.
    resends: usize,
}

impl Wristband {
    async fn connect(addr: SocketAddr, imei: &str) -> Wristband {
        let mut socket = TcpStream::connect(addr).await.unwrap();
        socket.set_nodelay(true).unwrap();
        socket
            .write_all(&encode::login(imei, 1, None))
            .await
            .unwrap();
        let mut band = Wristband {
            socket,
            buffer: Vec::new(),
            acked: Vec::new(),
            resends: 0,
        };
        let login = band.next_ack(Duration::from_secs(10)).await;
        assert_eq!(login, Some((0x01, 1)), "login of {imei}");
        band
    }

    /// The next acknowledgement `(protocol, serial)`, or None after `wait`.
    async fn next_ack(&mut self, wait: Duration) -> Option<(u8, u16)> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if self.buffer.len() >= 10 {
                let ack: Vec<u8> = self.buffer.drain(..10).collect();
                assert_eq!(ack[..2], [0x78, 0x78], "an acknowledgement: {ack:02x?}");
                return Some((ack[3], u16::from_be_bytes([ack[4], ack[5]])));
            }
            let mut chunk = [0u8; 256];
            // `read` is cancel-safe: a timeout loses no byte.
            match tokio::time::timeout_at(deadline, self.socket.read(&mut chunk)).await {
                Err(_) => return None,
                Ok(Ok(0)) => panic!("the server closed the connection"),
                Ok(Ok(n)) => self.buffer.extend_from_slice(&chunk[..n]),
                Ok(Err(e)) => panic!("read: {e}"),
            }
        }
    }

    /// Sends the fix `serial` at `point` until it is acknowledged, resending after
    /// [`RESEND_AFTER`]; acknowledgements of earlier resends are skipped.
    async fn report(&mut self, serial: u16, point: (f64, f64)) {
        let time = fix_time(serial);
        let frame = encode::location(serial, &encode::Fix::new(time, point.1, point.0));
        self.socket.write_all(&frame).await.unwrap();
        let give_up = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            assert!(
                tokio::time::Instant::now() < give_up,
                "fix {serial} not acknowledged within 60 s"
            );
            match self.next_ack(RESEND_AFTER).await {
                Some((0x12, s)) if s == serial => break,
                Some((0x12, s)) if s < serial => continue,
                Some(other) => panic!("unexpected acknowledgement {other:?} for {serial}"),
                None => {
                    self.resends += 1;
                    self.socket.write_all(&frame).await.unwrap();
                }
            }
        }
        self.acked.push(time);
    }
}

/// Streams fixes at home until `stop`; returns what was acknowledged.
async fn stream(
    addr: SocketAddr,
    imei: String,
    acks: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) -> Wristband {
    let mut band = Wristband::connect(addr, &imei).await;
    let mut serial = 2;
    while !stop.load(Ordering::Relaxed) {
        band.report(serial, HOME).await;
        acks.fetch_add(1, Ordering::Relaxed);
        serial += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    band
}

async fn readiness(service: &Service) -> (u16, Value) {
    let response = service
        .client
        .get(service.url("/readyz"))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// Polls `check` every 50 ms for up to `within`.
async fn wait_for<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A person's stored fix times, in order.
async fn stored_times(service: &Service, person: &str) -> Vec<DateTime<Utc>> {
    service
        .track_of(person)
        .await
        .iter()
        .map(|f| f["properties"]["time"].as_str().unwrap().parse().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_going_away_under_load_loses_and_doubles_nothing() {
    let Some(database) = TestDatabase::create("outage").await else {
        return;
    };
    let proxy = Proxy::start(proxy::upstream_of(&database.url).await).await;
    let url = proxy::through(&database.url, proxy.addr);
    let mut service = Service::start_on_with(Backend::Postgres(database), |config| {
        config.store.url = url.clone();
        config.store.acquire_timeout = Duration::from_secs(1);
        config.store.batch_max = 4;
        config.channel_capacity = 2;
    })
    .await;
    let zone = service
        .circle_zone("home", "inclusion", HOME.0, HOME.1, 500.0)
        .await;
    let mut persons = Vec::new();
    for i in 0..=STREAMERS {
        persons.push(
            service
                .person_with_device(&imei(i), std::slice::from_ref(&zone))
                .await,
        );
    }
    let gt06 = service.listener("gt06");
    assert_eq!(readiness(&service).await.0, 200);

    // The wearer who leaves: home, then six fixes 1.5 km north (a breach needs 180 s outside).
    let breacher_imei = imei(STREAMERS);
    let away = north_of(HOME.0, HOME.1, 1_500.0);
    let mut breacher = Wristband::connect(gt06, &breacher_imei).await;
    breacher.report(2, HOME).await;
    for serial in 3..=8 {
        breacher.report(serial, away).await;
    }

    let acks = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let streamers: Vec<_> = (0..STREAMERS)
        .map(|i| tokio::spawn(stream(gt06, imei(i), acks.clone(), stop.clone())))
        .collect();
    wait_for(Duration::from_secs(20), "streaming", || async {
        acks.load(Ordering::Relaxed) >= STREAMERS * 3
    })
    .await;

    proxy.cut();
    wait_for(
        Duration::from_secs(10),
        "the writer holding a batch",
        || async { service.metric("ewall_store_unavailable").await == 1 },
    )
    .await;
    let (status, body) = readiness(&service).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["type"], "urn:ewall:problem:degraded", "{body}");
    assert_eq!(body["title"], "degraded", "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("cannot reach the database"),
        "{body}"
    );
    assert!(body["held_positions"].as_u64().unwrap() > 0, "{body}");
    let health = service
        .client
        .get(service.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        health.status(),
        200,
        "liveness does not depend on the database"
    );

    // The breach is decided while the database is away; the fix that confirms it is held.
    let confirm = tokio::spawn(async move {
        breacher.report(9, away).await;
        breacher
    });
    let acks_at_cut = acks.load(Ordering::Relaxed);
    tokio::time::sleep(OUTAGE).await;
    assert_eq!(
        acks.load(Ordering::Relaxed),
        acks_at_cut,
        "nothing is acknowledged while the database is away"
    );
    assert!(
        !confirm.is_finished(),
        "the confirming fix is not acknowledged"
    );
    assert!(
        service
            .metric("ewall_ingest_waits_total{protocol=\"gt06\"}")
            .await
            > 0,
        "more frames were in flight than the pipeline holds: ingest waited at its bound"
    );
    assert_eq!(
        service
            .metric("ewall_connections_open{protocol=\"gt06\"}")
            .await,
        STREAMERS as u64 + 1
    );

    proxy.restore();
    let mut breacher = tokio::time::timeout(Duration::from_secs(30), confirm)
        .await
        .expect("the held fix is acknowledged once the database is back")
        .unwrap();
    assert!(breacher.resends >= 2, "the device resent during the outage");
    wait_for(Duration::from_secs(10), "ready again", || async {
        readiness(&service).await.0 == 200
    })
    .await;
    assert_eq!(readiness(&service).await.1["status"], "ready");
    assert_eq!(service.metric("ewall_store_unavailable").await, 0);
    // The wearer stays out: no second breach.
    breacher.report(10, away).await;
    breacher.report(11, away).await;
    let after_restore = acks.load(Ordering::Relaxed);
    wait_for(Duration::from_secs(20), "streaming again", || async {
        acks.load(Ordering::Relaxed) >= after_restore + STREAMERS
    })
    .await;
    stop.store(true, Ordering::Relaxed);

    let mut resends = breacher.resends;
    for (i, streamer) in streamers.into_iter().enumerate() {
        let band = tokio::time::timeout(Duration::from_secs(30), streamer)
            .await
            .expect("streamer ends")
            .unwrap();
        resends += band.resends;
        let stored = stored_times(&service, &persons[i]).await;
        assert_eq!(
            stored,
            band.acked,
            "{}: every acknowledged fix stored once, nothing else",
            imei(i)
        );
    }
    let stored = stored_times(&service, &persons[STREAMERS]).await;
    assert_eq!(stored, breacher.acked, "the wearer's fixes, each once");
    assert_eq!(
        stored.iter().collect::<BTreeSet<_>>().len(),
        stored.len(),
        "no fix twice"
    );
    let kinds: Vec<String> = service
        .alerts_of(&persons[STREAMERS])
        .await
        .iter()
        .map(|a| a["kind"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kinds, ["zone_exit"], "the breach raised exactly once");
    for person in &persons[..STREAMERS] {
        assert!(service.alerts_of(person).await.is_empty());
    }
    eprintln!(
        "{resends} resends during the outage; {} fixes acknowledged",
        acks.load(Ordering::Relaxed)
    );
    service.stop().await;
}

/// A service whose database is gone stops within its `shutdown_timeout` all the same, without
/// acknowledging the fix it could not commit.
#[tokio::test]
async fn shutdown_with_the_database_away_is_capped_by_the_timeout() {
    let Some(database) = TestDatabase::create("outage_shutdown").await else {
        return;
    };
    let proxy = Proxy::start(proxy::upstream_of(&database.url).await).await;
    let url = proxy::through(&database.url, proxy.addr);
    let timeout = Duration::from_secs(2);
    let mut service = Service::start_on_with(Backend::Postgres(database), |config| {
        config.store.url = url.clone();
        config.store.acquire_timeout = Duration::from_secs(1);
        config.shutdown_timeout = timeout;
    })
    .await;
    service.person_with_device(&imei(900), &[]).await;
    let mut band = Wristband::connect(service.listener("gt06"), &imei(900)).await;
    proxy.cut();
    let frame = encode::location(2, &encode::Fix::new(fix_time(2), HOME.1, HOME.0));
    band.socket.write_all(&frame).await.unwrap();
    wait_for(
        Duration::from_secs(10),
        "the writer holding the fix",
        || async { service.metric("ewall_store_unavailable").await == 1 },
    )
    .await;
    let started = std::time::Instant::now();
    let running = service.running.take().unwrap();
    running.shutdown();
    let clean = tokio::time::timeout(timeout + Duration::from_secs(5), running.stopped())
        .await
        .expect("stopped within the shutdown timeout");
    assert!(!clean, "a drain cut short is reported");
    assert!(
        started.elapsed() < timeout + Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), band.socket.read_to_end(&mut rest)).await;
    assert!(
        rest.is_empty(),
        "no acknowledgement for the fix not committed: {rest:02x?}"
    );
}

//! A GT06 wristband that resends after a lost acknowledgement: the fix was committed and acked,
//! the ack never arrived, so the device reconnects and sends the same frame again. It is
//! acknowledged again, stored once, and raises no second alert. On SQLite and, when
//! `EWALL_TEST_PG_URL` is set, on PostgreSQL.

mod common;

use chrono::{Duration, TimeZone, Utc};
use common::{north_of, Backend, Device, Service};
use ewall_protocol::gt06::encode;

const IMEI: &str = "864717003283599";

#[tokio::test]
async fn a_resent_gt06_fix_is_acknowledged_and_stored_once() {
    resend_after_a_lost_ack(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_resent_gt06_fix_is_acknowledged_and_stored_once_on_postgres() {
    if let Some(backend) = Backend::postgres("gt06 resend").await {
        resend_after_a_lost_ack(backend).await;
    }
}

async fn resend_after_a_lost_ack(backend: Backend) {
    // The fix count alone confirms (the dwell has tests of its own).
    let mut service =
        Service::start_on_with(backend, |c| c.levels.normal.confirm_seconds = 0).await;
    let home = (112.3625, 25.515);
    let zone = service
        .circle_zone("home", "inclusion", home.0, home.1, 500.0)
        .await;
    let person = service.person_with_device(IMEI, &[zone]).await;
    let away = north_of(home.0, home.1, 3_000.0);
    let start = Utc.with_ymd_and_hms(2026, 6, 2, 21, 0, 0).unwrap();
    let frame = |serial: u16, (lon, lat): (f64, f64)| {
        // Ten minutes apart: 3 km between two fixes is a walk, not an implausible jump.
        let fix = encode::Fix::new(start + Duration::minutes(i64::from(serial) * 10), lat, lon);
        encode::location(serial, &fix)
    };
    let frames = [frame(2, home), frame(3, away), frame(4, away)];

    let mut device = Device::connect(service.listener("gt06")).await;
    device.exchange(&encode::login(IMEI, 1, None), 10).await;
    let mut acks = Vec::new();
    for f in &frames {
        acks.push(device.exchange(f, 10).await);
    }
    // The last acknowledgement is lost on the way: the device drops the connection and, on the
    // next one, sends its unacknowledged fix again.
    drop(device);
    let mut device = Device::connect(service.listener("gt06")).await;
    device.exchange(&encode::login(IMEI, 1, None), 10).await;
    let again = device.exchange(&frames[2], 10).await;
    assert_eq!(
        again, acks[2],
        "the resend is acknowledged exactly as the original"
    );
    // And a resend of all of them, as devices that replay their backlog do.
    for (f, ack) in frames.iter().zip(&acks) {
        assert_eq!(&device.exchange(f, 10).await, ack);
    }

    let track = service.track_of(&person).await;
    assert_eq!(track.len(), 3, "each fix stored once: {track:#?}");
    let alerts = service.alerts_of(&person).await;
    let kinds: Vec<&str> = alerts.iter().map(|a| a["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["zone_exit"],
        "one breach, not a second from the resend"
    );
    service
        .expect_metric("ewall_fixes_received_total{protocol=\"gt06\"}", 7)
        .await;
    service.stop().await;
}

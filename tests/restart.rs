//! A restart in the middle of a breach: the episode stays open, so fixes still outside raise
//! no second breach and the first fix back raises the `returned` that ends it. On SQLite and,
//! when `EWALL_TEST_PG_URL` is set, on PostgreSQL.

mod common;

use chrono::{Duration, TimeZone, Utc};
use common::{north_of, Backend, Device, Service};
use ewall_protocol::gt06::encode;

const IMEI: &str = "864717003283599";

async fn send_fixes(service: &Service, first_serial: u16, points: &[(f64, f64)]) {
    let mut device = Device::connect(service.listener("gt06")).await;
    device.exchange(&encode::login(IMEI, 1, None), 10).await;
    let start = Utc.with_ymd_and_hms(2026, 5, 1, 20, 0, 0).unwrap();
    for (serial, (lon, lat)) in (first_serial..).zip(points) {
        let fix = encode::Fix::new(
            start + Duration::seconds(i64::from(serial) * 30),
            *lat,
            *lon,
        );
        let reply = device.exchange(&encode::location(serial, &fix), 10).await;
        assert_eq!(reply[3], 0x12, "position acknowledged");
    }
}

#[tokio::test]
async fn an_open_breach_survives_a_restart() {
    open_breach_across_a_restart(Backend::Sqlite).await;
}

#[tokio::test]
async fn an_open_breach_survives_a_restart_on_postgres() {
    if let Some(backend) = Backend::postgres("restart").await {
        open_breach_across_a_restart(backend).await;
    }
}

async fn open_breach_across_a_restart(backend: Backend) {
    let mut service = Service::start_on(backend).await;
    let home = (112.3625, 25.515);
    let zone = service
        .circle_zone("home", "inclusion", home.0, home.1, 500.0)
        .await;
    let person = service.person_with_device(IMEI, &[zone]).await;
    // 1.5 km north: a believable 180 km/h from home in 30 s, and outside for 4 minutes (the
    // normal level confirms after 180 s).
    let away = north_of(home.0, home.1, 1_500.0);

    send_fixes(
        &service,
        2,
        &[home, away, away, away, away, away, away, away, away],
    )
    .await;
    let kinds = |alerts: Vec<serde_json::Value>| -> Vec<String> {
        alerts
            .iter()
            .map(|a| a["kind"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(kinds(service.alerts_of(&person).await), ["zone_exit"]);

    service.restart().await;
    send_fixes(&service, 12, &[away, away, away, home]).await;
    assert_eq!(
        kinds(service.alerts_of(&person).await),
        ["zone_exit", "returned"],
        "no second exit after the restart, and the return is reported"
    );
    service.stop().await;
}

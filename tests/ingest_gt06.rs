//! A GT06 wristband over TCP from login to alerts: replies byte for byte, every fix stored with
//! the coordinates sent, exactly one breach per episode and one `returned`, for an inclusion
//! and an exclusion zone; an unregistered wristband is refused. The zone scenarios run on SQLite
//! and, when `EWALL_TEST_PG_URL` is set, on PostgreSQL.

mod common;

use chrono::{DateTime, Duration, TimeZone, Utc};
use common::{hex, north_of, Backend, Device, Service};
use ewall_protocol::gt06::{crc_itu, encode};
use serde_json::json;

/// Home, in Jiahe county: a point exactly on the wire's 1/1,800,000-degree grid.
const HOME_LON: f64 = 202_252_500.0 / 1_800_000.0; // 112.3625
const HOME_LAT: f64 = 45_927_000.0 / 1_800_000.0; // 25.515

/// The 5-byte acknowledgement GT06 devices expect for `protocol` and `serial`.
fn ack(protocol: u8, serial: u16) -> Vec<u8> {
    let body = [0x05, protocol, (serial >> 8) as u8, serial as u8];
    let crc = crc_itu(&body);
    let mut out = vec![0x78, 0x78];
    out.extend_from_slice(&body);
    out.extend_from_slice(&crc.to_be_bytes());
    out.extend_from_slice(&[0x0d, 0x0a]);
    out
}

fn start_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 14, 9, 0, 0).unwrap()
}

/// Logs in `imei` (serial 1) and checks the reply.
async fn login(device: &mut Device, imei: &str) {
    let reply = device.exchange(&encode::login(imei, 1, None), 10).await;
    assert_eq!(reply, ack(0x01, 1), "login acknowledged byte for byte");
}

/// Sends a 0x12 location and waits for its acknowledgement (sent only after the commit).
async fn report(device: &mut Device, serial: u16, seconds: i64, lon: f64, lat: f64) {
    let mut fix = encode::Fix::new(start_time() + Duration::seconds(seconds), lat, lon);
    fix.satellites = 9;
    let reply = device.exchange(&encode::location(serial, &fix), 10).await;
    assert_eq!(reply, ack(0x12, serial));
}

/// The scenario of the issue against one zone; returns the person's alerts.
async fn three_in_three_out_one_back(
    service: &Service,
    imei: &str,
    zone_id: &str,
    inside: (f64, f64),
    outside: (f64, f64),
) -> (String, Vec<serde_json::Value>) {
    let person = service
        .person_with_device(imei, &[zone_id.to_owned()])
        .await;
    let mut device = Device::connect(service.listener("gt06")).await;
    login(&mut device, imei).await;

    // A real status/heartbeat frame from a wristband (serial 0x0129).
    let heartbeat = hex("78780a13c40604000201298f5b0d0a");
    assert_eq!(device.exchange(&heartbeat, 10).await, ack(0x13, 0x0129));

    let mut sent = Vec::new();
    for (serial, point) in (2u16..).zip([inside, inside, inside, outside, outside, outside, inside])
    {
        let i = usize::from(serial - 2);
        // Snapped to the wire's grid, so what is sent is exactly representable; small steps keep
        // the fixes distinct without leaving either side.
        let grid = |v: f64| (v * 1_800_000.0).round() / 1_800_000.0;
        let (lon, lat) = (grid(point.0) + i as f64 / 1_800_000.0, grid(point.1));
        report(&mut device, serial, 30 * i as i64, lon, lat).await;
        sent.push((lon, lat));
    }

    let track = service.track_of(&person).await;
    assert_eq!(track.len(), 7, "every fix stored");
    for (feature, (lon, lat)) in track.iter().zip(&sent) {
        let c = &feature["geometry"]["coordinates"];
        assert!((c[0].as_f64().unwrap() - lon).abs() < 1e-9, "{c} vs {lon}");
        assert!((c[1].as_f64().unwrap() - lat).abs() < 1e-9, "{c} vs {lat}");
        assert_eq!(feature["properties"]["valid"], true);
    }
    assert_eq!(track[3]["properties"]["time"], "2026-03-14T09:01:30Z");
    let alerts = service.alerts_of(&person).await;
    (person, alerts)
}

#[tokio::test]
async fn leaving_an_inclusion_zone_raises_one_exit_and_one_return() {
    leaving_an_inclusion_zone(Backend::Sqlite).await;
}

#[tokio::test]
async fn leaving_an_inclusion_zone_raises_one_exit_and_one_return_on_postgres() {
    if let Some(backend) = Backend::postgres("gt06 inclusion zone").await {
        leaving_an_inclusion_zone(backend).await;
    }
}

async fn leaving_an_inclusion_zone(backend: Backend) {
    // The fix count alone confirms here (30 s fixes; the dwell has tests of its own).
    let mut service =
        Service::start_on_with(backend, |c| c.levels.normal.confirm_seconds = 0).await;
    // A square of about 1 km around home.
    let d = 0.005;
    let zone = service
        .post(
            "/api/v1/zones",
            json!({
                "type": "Feature",
                "geometry": {"type": "Polygon", "coordinates": [[
                    [HOME_LON - d, HOME_LAT - d], [HOME_LON + d, HOME_LAT - d],
                    [HOME_LON + d, HOME_LAT + d], [HOME_LON - d, HOME_LAT + d],
                    [HOME_LON - d, HOME_LAT - d]
                ]]},
                "properties": {"name": "home", "kind": "inclusion", "crs": "wgs84"}
            }),
        )
        .await;
    let zone_id = zone["id"].as_str().unwrap();
    let outside = north_of(HOME_LON, HOME_LAT, 2_000.0);
    let (person, alerts) = three_in_three_out_one_back(
        &service,
        "864717003283581",
        zone_id,
        (HOME_LON, HOME_LAT),
        outside,
    )
    .await;

    let kinds: Vec<&str> = alerts.iter().map(|a| a["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["zone_exit", "returned"], "{alerts:#?}");
    let exit = &alerts[0];
    assert_eq!(exit["person_id"], person.as_str());
    assert_eq!(exit["zone_id"], zone_id);
    assert_eq!(exit["device_id"], "864717003283581");
    assert_eq!(exit["state"], "open");
    assert_eq!(exit["severity"], "high");
    // Raised on the second definite fix outside (levels.normal.confirm_fixes = 2).
    assert_eq!(exit["time"], "2026-03-14T09:02:00Z");
    assert!(exit["seq"].as_i64().unwrap() < alerts[1]["seq"].as_i64().unwrap());
    assert!((exit["position"]["lat"].as_f64().unwrap() - outside.1).abs() < 1e-5);
    assert_eq!(alerts[1]["time"], "2026-03-14T09:03:00Z");

    // The operator acknowledges and resolves the exit.
    let id = exit["id"].as_str().unwrap();
    let acked = service
        .post(
            &format!("/api/v1/alerts/{id}/ack"),
            json!({"note": "calling the wearer"}),
        )
        .await;
    assert_eq!(acked["state"], "acknowledged");
    let resolved = service
        .post(
            &format!("/api/v1/alerts/{id}/resolve"),
            json!({"disposition": "returned_by_itself", "note": "back home"}),
        )
        .await;
    assert_eq!(resolved["state"], "closed");
    assert_eq!(resolved["disposition"], "returned_by_itself");
    assert_eq!(resolved["note"], "back home");
    service.stop().await;
}

#[tokio::test]
async fn entering_an_exclusion_zone_raises_one_enter_and_one_return() {
    entering_an_exclusion_zone(Backend::Sqlite).await;
}

#[tokio::test]
async fn entering_an_exclusion_zone_raises_one_enter_and_one_return_on_postgres() {
    if let Some(backend) = Backend::postgres("gt06 exclusion zone").await {
        entering_an_exclusion_zone(backend).await;
    }
}

async fn entering_an_exclusion_zone(backend: Backend) {
    let mut service =
        Service::start_on_with(backend, |c| c.levels.normal.confirm_seconds = 0).await;
    // A school 2 km north of home, 300 m around.
    let school = north_of(HOME_LON, HOME_LAT, 2_000.0);
    let zone_id = service
        .circle_zone("school", "exclusion", school.0, school.1, 300.0)
        .await;
    let (_, alerts) = three_in_three_out_one_back(
        &service,
        "864717003283599",
        &zone_id,
        (HOME_LON, HOME_LAT),
        school,
    )
    .await;
    let kinds: Vec<&str> = alerts.iter().map(|a| a["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["zone_enter", "returned"], "{alerts:#?}");
    assert_eq!(alerts[0]["zone_id"], zone_id.as_str());
    service.stop().await;
}

#[tokio::test]
async fn an_unregistered_wristband_is_refused_after_login_and_counted() {
    let mut service = Service::start().await;
    let mut device = Device::connect(service.listener("gt06")).await;
    device
        .send(&encode::login("869999999999999", 1, None))
        .await;
    assert!(
        device.closed_by_server().await,
        "connection closed without a reply"
    );

    // Other devices are unaffected.
    service.person_with_device("864717003283607", &[]).await;
    let mut other = Device::connect(service.listener("gt06")).await;
    login(&mut other, "864717003283607").await;

    service
        .expect_metric(
            "ewall_connections_refused_total{protocol=\"gt06\",reason=\"unknown_device\"}",
            1,
        )
        .await;
    // The refused login and the other device's login.
    service
        .expect_metric("ewall_frames_decoded_total{protocol=\"gt06\"}", 2)
        .await;
    service.stop().await;
}

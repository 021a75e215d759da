//! Home Wi-Fi as evidence, through the API and a real listener: a zone whose `properties.wifi`
//! lists the home router (normalised on the way in, refused when malformed); a phone reporting
//! over OsmAnd whose GPS is thrown out of the house all night while it sees the router raises
//! nothing, and leaving with the router out of sight raises `zone_exit`.

mod common;

use chrono::{Duration, TimeZone, Utc};
use common::{north_of, Service};
use ewall_protocol::osmand::encode;
use serde_json::json;

const ID: &str = "phone-wifi-7";
const HOME: (f64, f64) = (112.3625, 25.515);
const ROUTER: &str = "a4:56:02:1b:7c:e0";

#[tokio::test]
async fn the_home_router_in_sight_keeps_a_noisy_night_quiet() {
    let mut service = Service::start().await;
    let d = 0.0003; // about 30 m
    let zone = service
        .post(
            "/api/v1/zones",
            json!({
                "type": "Feature",
                "geometry": {"type": "Polygon", "coordinates": [[
                    [HOME.0 - d, HOME.1 - d], [HOME.0 + d, HOME.1 - d],
                    [HOME.0 + d, HOME.1 + d], [HOME.0 - d, HOME.1 + d],
                    [HOME.0 - d, HOME.1 - d]
                ]]},
                "properties": {"name": "home", "kind": "inclusion", "wifi": ["A4-56-02-1B-7C-E0"]}
            }),
        )
        .await;
    assert_eq!(zone["properties"]["wifi"], json!([ROUTER]));
    let zone_id = zone["id"].as_str().unwrap().to_owned();
    let read = service.get(&format!("/api/v1/zones/{zone_id}")).await;
    assert_eq!(read["properties"]["wifi"], json!([ROUTER]));
    let (status, body) = service
        .call(
            reqwest::Method::POST,
            "/api/v1/zones",
            Some(json!({
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [HOME.0, HOME.1]},
                "properties": {"name": "bad", "kind": "inclusion", "radius_m": 50, "wifi": ["router"]}
            })),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("wifi"), "{body}");

    let person = service.person_with_device(ID, &[zone_id]).await;
    let base = format!("http://{}", service.listener("osmand"));
    let start = Utc.with_ymd_and_hms(2026, 7, 1, 22, 0, 0).unwrap();
    let report = |minute: i64, (lon, lat): (f64, f64), router: bool| {
        let mut target = encode::request_target(
            ID,
            start + Duration::minutes(minute),
            lat,
            lon,
            0.0,
            0.0,
            Some(10.0),
            Some(80),
        );
        if router {
            target.push_str("&wifi=a4-56-02-1b-7c-e0,-48");
        }
        target
    };
    // Twenty minutes indoors with the GPS thrown 150 m north, the router in sight each time.
    let thrown = north_of(HOME.0, HOME.1, 150.0);
    for minute in 0..20 {
        let target = report(minute, thrown, true);
        let response = service
            .client
            .get(format!("{base}{target}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    assert!(service.alerts_of(&person).await.is_empty());
    // Leaving: 1 km north, the router out of sight, for ten minutes.
    let away = north_of(HOME.0, HOME.1, 1_000.0);
    for minute in 25..35 {
        let target = report(minute, away, false);
        let response = service
            .client
            .get(format!("{base}{target}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    let alerts = service.alerts_of(&person).await;
    let kinds: Vec<&str> = alerts.iter().map(|a| a["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["zone_exit"], "{alerts:#?}");
    service.stop().await;
}

//! Phone apps over OsmAnd HTTP: a query report and a JSON report are stored and answered 200
//! once committed; a request without an id is 400 and an unregistered device 404.

mod common;

use chrono::{TimeZone, Utc};
use common::Service;
use ewall_protocol::osmand::encode;

const ID: &str = "phone-0042";

#[tokio::test]
async fn query_and_json_reports_are_stored() {
    let mut service = Service::start().await;
    let person = service.person_with_device(ID, &[]).await;
    let base = format!("http://{}", service.listener("osmand"));
    let time = Utc.with_ymd_and_hms(2026, 7, 1, 10, 0, 0).unwrap();

    let target = encode::request_target(
        ID,
        time,
        25.583_21,
        112.361_09,
        5.0,
        45.0,
        Some(12.0),
        Some(66),
    );
    let response = service
        .client
        .get(format!("{base}{target}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let body = encode::json_body(
        ID,
        time + chrono::Duration::seconds(5),
        25.5833,
        112.3611,
        3.6,
        90.0,
        Some(8.0),
        Some(65),
    );
    let response = service
        .client
        .post(format!("{base}/"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let track = service.track_of(&person).await;
    assert_eq!(track.len(), 2);
    assert_eq!(track[0]["properties"]["accuracy_m"], 12.0);
    assert_eq!(track[0]["properties"]["battery_pct"], 66);
    assert_eq!(track[0]["geometry"]["coordinates"][0], 112.361_09);
    assert_eq!(track[0]["geometry"]["coordinates"][1], 25.583_21);
    assert_eq!(track[1]["properties"]["time"], "2026-07-01T10:00:05Z");
    let speed = track[1]["properties"]["speed_kmh"].as_f64().unwrap();
    assert!((speed - 3.6).abs() < 1e-9, "{speed}");

    let response = service
        .client
        .get(format!("{base}/?lat=1&lon=2"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let response = service
        .client
        .get(format!(
            "{base}/?id=stranger&lat=1&lon=2&timestamp=1700000000"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    service.stop().await;
}

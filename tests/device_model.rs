//! A device's model reaches its protocol session: the same GT06 frame (alarm byte 0x19, from
//! the reference vectors) is a low-battery alarm on most wristbands and harsh acceleration on
//! LW models, so only the wristband registered without a model raises `low_battery`. The
//! model is set on `POST /devices`, changed and cleared with `PATCH /devices/{imei}`.

mod common;

use common::{hex, Device, Service};
use ewall_protocol::gt06::encode as gt06;
use reqwest::Method;
use serde_json::json;

/// fixtures/vectors/traccar/gt06.jsonl, Gt06ProtocolDecoderTest.java line 579: 0x16 with
/// alarm byte 0x19.
const ALARM_0X19: &str =
    "78782516180516150812c804b50ee80880e40805dcf909012e000000986633460604190106c393490d0a";

async fn person_with_model(service: &Service, imei: &str, model: Option<&str>) -> String {
    let person = service
        .post(
            "/api/v1/persons",
            json!({"name": "Model Test", "level": "normal", "timezone": "Asia/Shanghai"}),
        )
        .await;
    let person_id = person["id"].as_str().unwrap().to_owned();
    let (status, device) = service
        .call(
            Method::POST,
            "/api/v1/devices",
            Some(json!({"imei": imei, "person_id": person_id, "model": model})),
        )
        .await;
    assert_eq!(status, 201, "{device}");
    assert_eq!(device["model"], json!(model));
    person_id
}

async fn send_alarm(service: &Service, imei: &str) {
    let mut device = Device::connect(service.listener("gt06")).await;
    let ack = device.exchange(&gt06::login(imei, 1, None), 10).await;
    assert_eq!(ack[3], 0x01);
    let ack = device.exchange(&hex(ALARM_0X19), 10).await;
    assert_eq!(
        ack[3], 0x16,
        "the alarm report is acknowledged after its commit"
    );
}

#[tokio::test]
async fn the_device_model_decides_what_an_alarm_code_means() {
    let mut service = Service::start().await;
    let plain = person_with_model(&service, "864717003283581", None).await;
    let lw = person_with_model(&service, "864717003283623", Some("LW4G-4B")).await;

    send_alarm(&service, "864717003283581").await;
    send_alarm(&service, "864717003283623").await;

    let kinds = |alerts: Vec<serde_json::Value>| -> Vec<String> {
        alerts
            .iter()
            .map(|a| a["kind"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(kinds(service.alerts_of(&plain).await), ["low_battery"]);
    assert!(
        kinds(service.alerts_of(&lw).await).is_empty(),
        "harsh acceleration on an LW model raises no low_battery"
    );
    assert_eq!(
        service.track_of(&lw).await.len(),
        1,
        "the position is stored either way"
    );

    // PATCH changes and clears the model; leaving it out keeps it; a bad one is 422.
    let path = "/api/v1/devices/864717003283581";
    let (status, d) = service
        .call(Method::PATCH, path, Some(json!({"model": "  G18 "})))
        .await;
    assert_eq!((status, d["model"].as_str()), (200, Some("G18")));
    let (_, d) = service.call(Method::PATCH, path, Some(json!({}))).await;
    assert_eq!(d["model"], "G18");
    let (status, _) = service
        .call(Method::PATCH, path, Some(json!({"model": "x\u{7}"})))
        .await;
    assert_eq!(status, 422);
    let (_, d) = service
        .call(Method::PATCH, path, Some(json!({"model": null})))
        .await;
    assert!(d["model"].is_null());
    let (status, _) = service
        .call(
            Method::PATCH,
            "/api/v1/devices/1",
            Some(json!({"model": "G18"})),
        )
        .await;
    assert_eq!(status, 404);
    service.stop().await;
}

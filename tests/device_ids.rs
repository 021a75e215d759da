//! Device ids in the forms people type: an IMEI with a leading zero, spaces or dashes names the
//! same wristband as the 15 digits it sends, a wrong IMEI check digit is refused, and a JT/T 808
//! terminal registered by its number as printed (`013912345678`) is accepted when it
//! identifies itself as `13912345678`.

mod common;

use chrono::{Duration, Utc};
use common::{Device, Service};
use ewall_protocol::jt808::encode::{self, Edition, Location};
use reqwest::Method;
use serde_json::json;

async fn person(service: &Service) -> String {
    let person = service
        .post(
            "/api/v1/persons",
            json!({"name": "Wang", "level": "normal", "timezone": "Asia/Shanghai"}),
        )
        .await;
    person["id"].as_str().unwrap().to_owned()
}

async fn register(service: &Service, imei: &str, person: &str) -> (u16, serde_json::Value) {
    service
        .call(
            Method::POST,
            "/api/v1/devices",
            Some(json!({"imei": imei, "person_id": person})),
        )
        .await
}

#[tokio::test]
async fn an_imei_typed_with_a_zero_spaces_or_dashes_is_one_device() {
    let service = Service::start().await;
    let person = person(&service).await;
    let (status, body) = register(&service, "0864717003283581", &person).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["imei"], "864717003283581");
    for typed in [
        "864717003283581",
        "864 717 003 283 581",
        "86-471700-328358-1",
        " 0864717003283581 ",
    ] {
        let (status, body) = register(&service, typed, &person).await;
        assert_eq!(status, 409, "{typed:?}: {body}");
    }
    // Reads and deletes accept the typed forms too.
    let body = service.get("/api/v1/devices/0864717003283581").await;
    assert_eq!(body["imei"], "864717003283581");
    let devices = service.get("/api/v1/devices").await;
    assert_eq!(devices["devices"].as_array().unwrap().len(), 1);
    let (status, body) = service
        .call(Method::DELETE, "/api/v1/devices/864-717003-283581", None)
        .await;
    assert_eq!(status, 204, "{body}");
}

#[tokio::test]
async fn an_imei_with_a_wrong_check_digit_is_refused_with_the_right_one() {
    let service = Service::start().await;
    let person = person(&service).await;
    let (status, body) = register(&service, "864717003283582", &person).await;
    assert_eq!(status, 422, "{body}");
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains("check digit") && detail.contains('1'),
        "{detail}"
    );
    for bad in ["", "000000", "86471700328358x 1", "ab cd", &"9".repeat(21)] {
        let (status, body) = register(&service, bad, &person).await;
        assert_eq!(status, 422, "{bad:?}: {body}");
    }
    // Ids that are not IMEIs keep their form: app ids, 10-digit watch and H02 ids.
    for (typed, stored) in [
        ("Phone-A_1", "Phone-A_1"),
        ("8800000015", "8800000015"),
        ("0088 0000 0016", "8800000016"),
    ] {
        let (status, body) = register(&service, typed, &person).await;
        assert_eq!(status, 201, "{typed:?}: {body}");
        assert_eq!(body["imei"], stored);
    }
}

#[tokio::test]
async fn a_jt808_terminal_registered_as_printed_is_accepted() {
    let service = Service::start().await;
    let person = person(&service).await;
    let (status, body) = register(&service, "013912345678", &person).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["imei"], "13912345678");

    let mut device = Device::connect(service.listener("jt808")).await;
    let time = Utc::now() - Duration::minutes(1);
    // The header carries the number as 6 BCD bytes, 013912345678; the terminal is 13912345678.
    let report = Location::new(time, 25.583_111, 112.361_222);
    device
        .send(&encode::location(
            "013912345678",
            Edition::V2013,
            1,
            &report,
        ))
        .await;
    let first = device.read_exact(1).await;
    assert_eq!(first, [0x7e], "a reply, not a closed connection");
    let track = service.track_of(&person).await;
    assert_eq!(track.len(), 1);
    assert_eq!(track[0]["properties"]["device_id"], "13912345678");
}

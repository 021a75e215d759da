//! `POST /api/v1/persons/bulk` through a real socket: persons, their devices and zones
//! registered in one request, in force for the hot path at once, enrolled in the feed; every
//! refusal names the item and leaves nothing stored. The first case runs on SQLite and, when
//! `EWALL_TEST_PG_URL` is set, on PostgreSQL.

mod common;

use common::{Backend, Device, Service};
use ewall_protocol::gt06::encode;
use reqwest::Method;
use serde_json::{json, Value};

const FIRST: &str = "864717000000103";
const SECOND: &str = "864717000000202";
const THIRD: &str = "864717000000301";

async fn bulk(service: &Service, token: &str, body: Value) -> (u16, Value) {
    service
        .call_as(token, Method::POST, "/api/v1/persons/bulk", Some(body))
        .await
}

async fn registers_persons_devices_and_zones_in_one_request(mut service: Service) {
    let operator = service.token("operator").await;
    let zone = service
        .circle_zone("home", "inclusion", 112.36, 25.51, 500.0)
        .await;
    let (status, body) = bulk(
        &service,
        &operator,
        json!({"persons": [
            {"name": "Wang Fang", "level": "strict", "timezone": "Asia/Urumqi",
             "devices": [{"imei": FIRST, "model": "GT06N"}], "zone_ids": [zone, zone]},
            {"name": "Zhao Lei", "devices": [{"imei": SECOND}, {"imei": THIRD}]},
        ]}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let persons = body["persons"].as_array().unwrap();
    assert_eq!(persons.len(), 2);
    let first = &persons[0];
    assert_eq!(first["person"]["name"], "Wang Fang");
    assert_eq!(first["person"]["level"], "strict");
    assert_eq!(first["person"]["timezone"], "Asia/Urumqi");
    assert_eq!(first["devices"][0]["imei"], FIRST);
    assert_eq!(first["devices"][0]["model"], "GT06N");
    assert_eq!(first["zone_ids"], json!([zone]));
    let second = &persons[1];
    assert_eq!(second["person"]["level"], "normal");
    assert_eq!(second["person"]["timezone"], "Asia/Shanghai");
    assert_eq!(second["zone_ids"], json!([]));

    // What the single routes read back.
    let first_id = first["person"]["id"].as_str().unwrap();
    let second_id = second["person"]["id"].as_str().unwrap();
    assert_eq!(
        service.get(&format!("/api/v1/persons/{first_id}")).await,
        first["person"]
    );
    let device = service.get(&format!("/api/v1/devices/{THIRD}")).await;
    assert_eq!(device["person_id"], second_id);
    let zones = service
        .get(&format!("/api/v1/persons/{first_id}/zones"))
        .await;
    assert_eq!(zones["zone_ids"], json!([zone]));

    // The devices are known to ingest at once.
    let mut wristband = Device::connect(service.listener("gt06")).await;
    let reply = wristband
        .exchange(&encode::login(SECOND, 1, None), 10)
        .await;
    assert_eq!(&reply[..4], &[0x78, 0x78, 0x05, 0x01], "login acknowledged");

    // Each person is enrolled in the integration feed, in the order given.
    let feed = service.get("/api/v1/integration/feed?after=0").await;
    let enrolled: Vec<&str> = feed["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "person.enrolled")
        .map(|e| e["person_id"].as_str().unwrap())
        .collect();
    assert_eq!(enrolled, [first_id, second_id], "{feed}");
    service.stop().await;
}

#[tokio::test]
async fn registers_persons_devices_and_zones_in_one_request_on_sqlite() {
    registers_persons_devices_and_zones_in_one_request(Service::start().await).await;
}

#[tokio::test]
async fn registers_persons_devices_and_zones_in_one_request_on_postgres() {
    if let Some(backend) = Backend::postgres("bulk registration").await {
        registers_persons_devices_and_zones_in_one_request(Service::start_on(backend).await).await;
    }
}

#[tokio::test]
async fn every_refusal_names_the_item_and_stores_nothing() {
    let mut service = Service::start().await;
    let token = service.admin_token.clone();
    service.person_with_device(THIRD, &[]).await;
    let zone = service
        .circle_zone("home", "inclusion", 112.36, 25.51, 500.0)
        .await;
    let shared = service
        .post(
            "/api/v1/zones",
            json!({
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [112.4, 25.6]},
                "properties": {"name": "airport", "kind": "exclusion", "radius_m": 900.0,
                               "assigned_to": {"scope": "everyone"}},
            }),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let ok = |imei: &str| json!({"name": "Sun Li", "devices": [{"imei": imei}]});
    let cases: Vec<(Value, u16, &str)> = vec![
        // A wrong check digit.
        (
            json!({"persons": [ok(FIRST), {"name": "Qian Hao", "devices": [{"imei": "864717000000104"}]}]}),
            422,
            "persons[1].devices[0].imei",
        ),
        // The same device twice in the request.
        (
            json!({"persons": [ok(FIRST), ok(SECOND), ok(FIRST)]}),
            422,
            "persons[2].devices[0].imei: device 864717000000103 is listed twice (first at persons[0].devices[0])",
        ),
        // A device already registered.
        (
            json!({"persons": [ok(FIRST), ok(THIRD)]}),
            409,
            "persons[1].devices[0]: device 864717000000301 is already registered",
        ),
        // A blank name, an unknown level, a time zone that is none.
        (
            json!({"persons": [ok(FIRST), {"name": "  "}]}),
            422,
            "persons[1].name",
        ),
        (
            json!({"persons": [{"name": "Sun Li", "level": "harsh"}]}),
            422,
            "persons[0].level",
        ),
        (
            json!({"persons": [{"name": "Sun Li", "timezone": "Mars/Olympus"}]}),
            422,
            "persons[0].timezone",
        ),
        // A zone that does not exist, one that is no id, and a shared one.
        (
            json!({"persons": [ok(FIRST), {"name": "Qian Hao", "zone_ids": [zone, "8e0c3a53-2c43-4b5e-9a4e-2d1fbd0c1f00"]}]}),
            422,
            "persons[1]: unknown zone id(s): 8e0c3a53-2c43-4b5e-9a4e-2d1fbd0c1f00",
        ),
        (
            json!({"persons": [{"name": "Qian Hao", "zone_ids": ["home"]}]}),
            422,
            "persons[0].zone_ids[0]",
        ),
        (
            json!({"persons": [ok(FIRST), {"name": "Qian Hao", "zone_ids": [shared]}]}),
            422,
            "persons[1].zone_ids: zone",
        ),
        // A field that is not there, and a field of the wrong type.
        (
            json!({"persons": [{"name": "Sun Li", "devices": [{"imei": FIRST, "colour": "red"}]}]}),
            422,
            "persons[0].devices[0]",
        ),
        (
            json!({"persons": [{"name": "Sun Li", "zone_ids": "all"}]}),
            422,
            "persons[0].zone_ids",
        ),
        // None at all, and more than one request may carry.
        (json!({"persons": []}), 422, "1 to 1000"),
        (
            json!({"persons": (0..1001).map(|i| json!({"name": format!("p{i}")})).collect::<Vec<_>>()}),
            422,
            "persons lists 1001 persons",
        ),
        (
            json!({"persons": [{"name": "Sun Li", "devices": (0..17).map(|i| json!({"imei": format!("dev{i}")})).collect::<Vec<_>>()}]}),
            422,
            "persons[0].devices lists 17 devices",
        ),
    ];
    let persons_before = service.get("/api/v1/persons").await["persons"]
        .as_array()
        .unwrap()
        .len();
    for (body, status, detail) in cases {
        let (got, problem) = bulk(&service, &token, body).await;
        assert_eq!(got, status, "{problem}");
        let text = problem["detail"].as_str().unwrap();
        assert!(text.contains(detail), "{detail:?} not in {text:?}");
    }
    let persons = service.get("/api/v1/persons").await;
    assert_eq!(
        persons["persons"].as_array().unwrap().len(),
        persons_before,
        "nothing stored: {persons}"
    );
    let (status, _) = service
        .call(Method::GET, &format!("/api/v1/devices/{FIRST}"), None)
        .await;
    assert_eq!(status, 404);

    // The integration reads alerts only.
    let integration = service.token("integration").await;
    let (status, problem) = bulk(&service, &integration, json!({"persons": [ok(FIRST)]})).await;
    assert_eq!(status, 403, "{problem}");
    service.stop().await;
}

//! The supervising officer's rules through the public interfaces, protocols in and the API
//! out: a shared border post entered by two persons, a curfew against the same place in the
//! afternoon, across midnight and across a daylight-saving change, a level change that takes
//! effect at once and sets the devices' reporting interval, and device alarms raised once per
//! episode.

mod common;

use chrono::{DateTime, Duration, TimeZone, Utc};
use common::{eventually, Device, Service};
use ewall_protocol::gt06::encode as gt06;
use ewall_protocol::osmand::encode;
use ewall_protocol::Alarm;
use serde_json::{json, Value};

const POST: (f64, f64) = (112.3625, 25.515);
const HOME: (f64, f64) = (112.3625, 25.515);

/// Sends one OsmAnd report and checks it was taken; `extra` is appended to the query.
async fn report(service: &Service, id: &str, time: DateTime<Utc>, at: (f64, f64), extra: &str) {
    let target = encode::request_target(id, time, at.1, at.0, 0.0, 0.0, Some(10.0), None);
    let url = format!("http://{}{target}{extra}", service.listener("osmand"));
    let response = service.client.get(url).send().await.unwrap();
    assert_eq!(response.status(), 200, "{time} {at:?}");
}

fn kinds(alerts: &[Value]) -> Vec<&str> {
    alerts.iter().map(|a| a["kind"].as_str().unwrap()).collect()
}

async fn person(service: &Service, level: &str, timezone: &str) -> String {
    let person = service
        .post(
            "/api/v1/persons",
            json!({"name": "Test Person", "level": level, "timezone": timezone}),
        )
        .await;
    person["id"].as_str().unwrap().to_owned()
}

async fn bind(service: &Service, imei: &str, person: &str) {
    service
        .post(
            "/api/v1/devices",
            json!({"imei": imei, "person_id": person}),
        )
        .await;
}

fn zone_names(collection: &Value) -> Vec<&str> {
    collection["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["properties"]["name"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn a_shared_border_post_entered_by_two_persons_raises_zone_enter_for_each() {
    let mut service = Service::start().await;
    let a = person(&service, "normal", "Asia/Shanghai").await;
    let b = person(&service, "lenient", "Asia/Shanghai").await;
    bind(&service, "phone-a", &a).await;
    bind(&service, "phone-b", &b).await;
    let post = service
        .post(
            "/api/v1/zones",
            json!({
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [POST.0, POST.1]},
                "properties": {"name": "border post", "kind": "exclusion", "radius_m": 300,
                               "assigned_to": {"scope": "everyone"}}
            }),
        )
        .await;
    assert_eq!(
        post["properties"]["assigned_to"],
        json!({"scope": "everyone"})
    );
    let post_id = post["id"].as_str().unwrap().to_owned();
    // A zone for person A alone, listed when it is created.
    let own = service
        .post(
            "/api/v1/zones",
            json!({
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [113.0, 26.0]},
                "properties": {"name": "victim's street", "kind": "exclusion", "radius_m": 200,
                               "assigned_to": {"scope": "persons", "persons": [a]}}
            }),
        )
        .await;
    assert_eq!(
        own["properties"]["assigned_to"],
        json!({"scope": "persons", "persons": [a]})
    );
    let strict_only = service
        .post(
            "/api/v1/zones",
            json!({
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [114.0, 27.0]},
                "properties": {"name": "airport", "kind": "exclusion", "radius_m": 2000,
                               "assigned_to": {"scope": "level", "level": "strict"}}
            }),
        )
        .await;
    assert_eq!(
        strict_only["properties"]["assigned_to"],
        json!({"scope": "level", "level": "strict"})
    );

    // Who has which zone.
    let of_a = service.get(&format!("/api/v1/zones?assigned_to={a}")).await;
    assert_eq!(zone_names(&of_a), ["border post", "victim's street"]);
    let of_b = service.get(&format!("/api/v1/zones?assigned_to={b}")).await;
    assert_eq!(zone_names(&of_b), ["border post"]);
    assert_eq!(zone_names(&service.get("/api/v1/zones").await).len(), 3);
    let (status, _) = service
        .call(
            reqwest::Method::GET,
            "/api/v1/zones?assigned_to=nobody",
            None,
        )
        .await;
    assert_eq!(status, 400);
    let unknown = uuid::Uuid::now_v7();
    let (status, _) = service
        .call(
            reqwest::Method::GET,
            &format!("/api/v1/zones?assigned_to={unknown}"),
            None,
        )
        .await;
    assert_eq!(status, 404);

    // Refusals: a scope that does not exist, a person who does not, a per-person assignment
    // of a shared zone.
    let feature = |assigned: Value| {
        json!({
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [POST.0, POST.1]},
            "properties": {"name": "x", "kind": "exclusion", "radius_m": 50, "assigned_to": assigned}
        })
    };
    let (status, body) = service
        .call(
            reqwest::Method::POST,
            "/api/v1/zones",
            Some(feature(json!({"scope": "district"}))),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("assigned_to"));
    let (status, body) = service
        .call(
            reqwest::Method::POST,
            "/api/v1/zones",
            Some(feature(json!({"scope": "persons", "persons": [unknown]}))),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(body["detail"]
        .as_str()
        .unwrap()
        .contains(&unknown.to_string()));
    assert_eq!(zone_names(&service.get("/api/v1/zones").await).len(), 3);
    let (status, body) = service
        .call(
            reqwest::Method::PUT,
            &format!("/api/v1/persons/{b}/zones"),
            Some(json!({"zone_ids": [post_id]})),
        )
        .await;
    assert_eq!(status, 422, "{body}");

    // Both walk through the post: each raises zone_enter (normal: 2 fixes over 180 s; lenient:
    // 3 fixes over 300 s), and leaving ends each episode.
    let start = Utc.with_ymd_and_hms(2026, 7, 1, 9, 0, 0).unwrap();
    let away = (POST.0 + 0.02, POST.1);
    for (id, person) in [("phone-a", &a), ("phone-b", &b)] {
        for (minute, at) in [
            (0, away),
            (2, POST),
            (4, POST),
            (6, POST),
            (8, POST),
            (10, away),
        ] {
            report(&service, id, start + Duration::minutes(minute), at, "").await;
        }
        let alerts = service.alerts_of(person).await;
        assert_eq!(kinds(&alerts), ["zone_enter", "returned"], "{alerts:?}");
        assert_eq!(alerts[0]["zone_id"], json!(post_id));
    }
    service.stop().await;
}

/// The fixture track: (time, (lon, lat)).
fn curfew_track() -> Vec<(DateTime<Utc>, (f64, f64))> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/tracks/curfew_night.csv"
    );
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            let time = DateTime::parse_from_rfc3339(fields[0]).unwrap().to_utc();
            (
                time,
                (fields[1].parse().unwrap(), fields[2].parse().unwrap()),
            )
        })
        .collect()
}

async fn curfew_zone(service: &Service, schedule: Value) -> (u16, Value) {
    let d = 0.002; // about 200 m
    service
        .call(
            reqwest::Method::POST,
            "/api/v1/zones",
            Some(json!({
                "type": "Feature",
                "geometry": {"type": "Polygon", "coordinates": [[
                    [HOME.0 - d, HOME.1 - d], [HOME.0 + d, HOME.1 - d],
                    [HOME.0 + d, HOME.1 + d], [HOME.0 - d, HOME.1 + d],
                    [HOME.0 - d, HOME.1 - d]
                ]]},
                "properties": {"name": "home", "kind": "inclusion", "schedule": schedule}
            })),
        )
        .await
}

#[tokio::test]
async fn a_curfew_is_quiet_in_the_afternoon_raised_at_night_and_follows_berlin_summer_time() {
    let mut service = Service::start().await;
    let every_night = json!([{"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                              "from": "22:00", "to": "06:00"}]);
    // Bad days and times are refused, naming them.
    for (bad, word) in [
        (
            json!([{"days": ["funday"], "from": "22:00", "to": "06:00"}]),
            "funday",
        ),
        (
            json!([{"days": ["mon"], "from": "25:00", "to": "06:00"}]),
            "25:00",
        ),
        (
            json!([{"days": ["mon"], "from": "22:00", "to": "6"}]),
            "\"6\"",
        ),
        (json!([]), "no windows"),
    ] {
        let (status, body) = curfew_zone(&service, bad).await;
        assert_eq!(status, 422, "{body}");
        assert!(body["detail"].as_str().unwrap().contains(word), "{body}");
    }
    let (status, zone) = curfew_zone(&service, every_night.clone()).await;
    assert_eq!(status, 201, "{zone}");
    assert_eq!(zone["properties"]["schedule"], every_night);
    let zone_id = zone["id"].as_str().unwrap().to_owned();

    // Shanghai: the fixture track, in town all afternoon and out past 22:00 until 06:00.
    let shanghai = person(&service, "normal", "Asia/Shanghai").await;
    bind(&service, "phone-sh", &shanghai).await;
    let (status, body) = service
        .call(
            reqwest::Method::PUT,
            &format!("/api/v1/persons/{shanghai}/zones"),
            Some(json!({"zone_ids": [zone_id]})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let track = curfew_track();
    let evening = Utc.with_ymd_and_hms(2026, 3, 2, 13, 0, 0).unwrap();
    for &(time, at) in track.iter().filter(|(t, _)| *t < evening) {
        report(&service, "phone-sh", time, at, "").await;
    }
    assert!(service.alerts_of(&shanghai).await.is_empty());
    let midnight = Utc.with_ymd_and_hms(2026, 3, 2, 16, 0, 0).unwrap();
    let mut restarted = false;
    for &(time, at) in track.iter().filter(|(t, _)| *t >= evening) {
        if time > midnight && !restarted {
            restarted = true;
            // A restart in the night changes nothing: the open curfew is resumed, so the
            // night's fixes raise no second one and the morning still ends it.
            service.restart().await;
            assert_eq!(kinds(&service.alerts_of(&shanghai).await), ["curfew"]);
        }
        report(&service, "phone-sh", time, at, "").await;
    }
    let alerts = service.alerts_of(&shanghai).await;
    assert_eq!(kinds(&alerts), ["curfew", "returned"], "{alerts:?}");
    // Raised at 22:05 local, ended by the first fix after 06:00 local.
    assert_eq!(alerts[0]["time"], "2026-03-02T14:05:00Z");
    assert_eq!(alerts[0]["zone_id"], json!(zone_id));
    assert_eq!(alerts[1]["time"], "2026-03-02T22:05:00Z");

    // Berlin, the night the clocks go forward (2026-03-29 02:00 CET → 03:00 CEST): the curfew
    // opens at 22:00 CET (21:00Z) and closes at 06:00 CEST (04:00Z), not 05:00Z.
    let berlin = person(&service, "normal", "Europe/Berlin").await;
    bind(&service, "phone-be", &berlin).await;
    service
        .call(
            reqwest::Method::PUT,
            &format!("/api/v1/persons/{berlin}/zones"),
            Some(json!({"zone_ids": [zone_id]})),
        )
        .await;
    let town = (HOME.0 + 0.02, HOME.1);
    let at = |d, h, m| Utc.with_ymd_and_hms(2026, 3, d, h, m, 0).unwrap();
    for time in [
        at(28, 20, 50),
        at(28, 20, 55),
        at(28, 21, 0),
        at(28, 21, 5),
        at(29, 3, 55),
    ] {
        report(&service, "phone-be", time, town, "").await;
    }
    let alerts = service.alerts_of(&berlin).await;
    assert_eq!(kinds(&alerts), ["curfew"], "{alerts:?}");
    assert_eq!(alerts[0]["time"], "2026-03-28T21:05:00Z");
    report(&service, "phone-be", at(29, 4, 5), town, "").await;
    let alerts = service.alerts_of(&berlin).await;
    assert_eq!(kinds(&alerts), ["curfew", "returned"], "{alerts:?}");
    assert_eq!(alerts[1]["time"], "2026-03-29T04:05:00Z");
    service.stop().await;
}

async fn read_gt06(device: &mut Device) -> Vec<u8> {
    let head = device.read_exact(3).await;
    assert_eq!(&head[..2], [0x78, 0x78]);
    let mut frame = head.clone();
    frame.extend(device.read_exact(usize::from(head[2]) + 2).await);
    frame
}

#[tokio::test]
async fn a_level_change_applies_at_once_and_sets_each_capable_devices_interval() {
    let mut service = Service::start().await;
    let p = person(&service, "normal", "Asia/Shanghai").await;
    let wristband = "864717003283581";
    bind(&service, wristband, &p).await;
    bind(&service, "phone-lv", &p).await;
    // A zone for strict persons only.
    service
        .post(
            "/api/v1/zones",
            json!({
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [POST.0, POST.1]},
                "properties": {"name": "station", "kind": "exclusion", "radius_m": 300,
                               "assigned_to": {"scope": "level", "level": "strict"}}
            }),
        )
        .await;
    // The wristband is heard, so its protocol (GT06, which can set an interval) is known.
    let mut device = Device::connect(service.listener("gt06")).await;
    let ack = device.exchange(&gt06::login(wristband, 1, None), 10).await;
    assert_eq!(ack[3], 0x01);
    let start = Utc.with_ymd_and_hms(2026, 7, 1, 9, 0, 0).unwrap();
    for minute in [0, 2, 4] {
        report(
            &service,
            "phone-lv",
            start + Duration::minutes(minute),
            POST,
            "",
        )
        .await;
    }
    assert!(
        service.alerts_of(&p).await.is_empty(),
        "normal: not their zone"
    );

    let patched = service
        .call(
            reqwest::Method::PATCH,
            &format!("/api/v1/persons/{p}"),
            Some(json!({"level": "strict"})),
        )
        .await;
    assert_eq!(patched.0, 200, "{}", patched.1);
    // The connected wristband is sent the strict interval (60 s) as an online command.
    let frame = read_gt06(&mut device).await;
    assert_eq!(frame[3], 0x80, "an online command: {frame:02x?}");
    let commands = service
        .get(&format!("/api/v1/devices/{wristband}/commands"))
        .await;
    let commands = commands["commands"].as_array().unwrap().clone();
    assert_eq!(commands.len(), 1, "{commands:?}");
    assert_eq!(commands[0]["type"], "set_interval");
    assert_eq!(commands[0]["interval_s"], 60);
    // The phone's protocol cannot carry it: nothing queued for it.
    let phone = service.get("/api/v1/devices/phone-lv/commands").await;
    assert_eq!(phone["commands"], json!([]));

    // At once: the next fixes are judged at the strict level (2 fixes over 60 s, critical).
    for minute in [6, 7, 8] {
        report(
            &service,
            "phone-lv",
            start + Duration::minutes(minute),
            POST,
            "",
        )
        .await;
    }
    let alerts = service.alerts_of(&p).await;
    assert_eq!(kinds(&alerts), ["zone_enter"], "{alerts:?}");
    assert_eq!(alerts[0]["severity"], "critical");

    // The same level again sends nothing more.
    service
        .call(
            reqwest::Method::PATCH,
            &format!("/api/v1/persons/{p}"),
            Some(json!({"level": "strict"})),
        )
        .await;
    let again = service
        .get(&format!("/api/v1/devices/{wristband}/commands"))
        .await;
    assert_eq!(again["commands"].as_array().unwrap().len(), 1);

    // Offline, then lenient: the 900 s interval is queued and sent when the wristband logs in.
    drop(device);
    // The link goes before the connection stops being counted.
    eventually(|| async {
        let open = service
            .metric("ewall_connections_open{protocol=\"gt06\"}")
            .await;
        (open == 0).then_some(())
    })
    .await;
    let (status, _) = service
        .call(
            reqwest::Method::PATCH,
            &format!("/api/v1/persons/{p}"),
            Some(json!({"level": "lenient"})),
        )
        .await;
    assert_eq!(status, 200);
    let list = service
        .get(&format!("/api/v1/devices/{wristband}/commands"))
        .await;
    let queued = list["commands"][0].clone();
    assert_eq!(queued["interval_s"], 900, "{list}");
    assert_eq!(queued["status"], "pending", "{queued}");
    let mut device = Device::connect(service.listener("gt06")).await;
    device.exchange(&gt06::login(wristband, 2, None), 10).await;
    let frame = read_gt06(&mut device).await;
    assert_eq!(frame[3], 0x80, "the queued command: {frame:02x?}");
    let id = queued["id"].as_str().unwrap().to_owned();
    eventually(|| async {
        let sent = service
            .get(&format!("/api/v1/devices/{wristband}/commands/{id}"))
            .await;
        (sent["status"] == "sent").then_some(())
    })
    .await;
    service.stop().await;
}

#[tokio::test]
async fn device_alarms_are_raised_once_per_episode_with_severity_by_kind_and_level() {
    let mut service = Service::start().await;
    let p = person(&service, "lenient", "Asia/Shanghai").await;
    bind(&service, "phone-al", &p).await;
    let start = Utc.with_ymd_and_hms(2026, 7, 1, 9, 0, 0).unwrap();
    let second = |s: i64| start + Duration::seconds(s);
    // An SOS held for ten frames: one alert.
    for frame in 0..10 {
        report(&service, "phone-al", second(frame * 10), HOME, "&alarm=sos").await;
    }
    // Released (a report without it), pressed again: a second one.
    report(&service, "phone-al", second(110), HOME, "").await;
    report(&service, "phone-al", second(120), HOME, "&alarm=sos").await;
    // A strap cut flagged on three reports with plain reports between: one tamper.
    for s in [200, 260, 320] {
        report(&service, "phone-al", second(s), HOME, "&alarm=tampering").await;
        report(&service, "phone-al", second(s + 30), HOME, "").await;
    }
    report(&service, "phone-al", second(400), HOME, "&alarm=fallDown").await;
    // A charge at the threshold (20 %) and below: one low_battery.
    for (s, pct) in [(500, 40), (560, 20), (620, 18)] {
        report(
            &service,
            "phone-al",
            second(s),
            HOME,
            &format!("&batt={pct}"),
        )
        .await;
    }
    let alerts = eventually(|| async {
        let alerts = service.alerts_of(&p).await;
        (alerts.len() >= 5).then_some(alerts)
    })
    .await;
    let raised: Vec<(&str, &str)> = alerts
        .iter()
        .map(|a| (a["kind"].as_str().unwrap(), a["severity"].as_str().unwrap()))
        .collect();
    assert_eq!(
        raised,
        [
            ("sos", "critical"),
            ("sos", "critical"),
            ("tamper", "medium"),
            ("fall", "critical"),
            ("low_battery", "low"),
        ]
    );
    assert_eq!(alerts[0]["time"], "2026-07-01T09:00:00Z");
    assert_eq!(alerts[1]["time"], "2026-07-01T09:02:00Z");

    // A GT06 wristband's power-cut alarm (alarm code 0x02) is a tamper, critical at strict.
    let q = person(&service, "strict", "Asia/Shanghai").await;
    let imei = "864717003283581";
    bind(&service, imei, &q).await;
    let mut device = Device::connect(service.listener("gt06")).await;
    device.exchange(&gt06::login(imei, 1, None), 10).await;
    let fix = gt06::Fix::new(start, HOME.1, HOME.0);
    let frame = gt06::alarm(2, &fix, &gt06::Status::default(), Alarm::PowerCut).unwrap();
    let ack = device.exchange(&frame, 10).await;
    assert_eq!(ack[3], 0x16);
    let alerts = service.alerts_of(&q).await;
    assert_eq!(kinds(&alerts), ["tamper"], "{alerts:?}");
    assert_eq!(alerts[0]["severity"], "critical");
    service.stop().await;
}

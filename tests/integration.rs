//! The police entry-exit integration through the running service: an integration token reads
//! alerts and the integration feed and nothing else (every route of the API description is
//! tried), sees no operator note on any channel (alert pages, one alert, the feed, the stream
//! and the MQTT alert topic), every request it makes is in the reads log an admin lists, and a
//! border hit raises one critical `border_hit` alert however often it is reported.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::gateway::{next_publish, subscriber};
use common::{eventually, Backend, Service};
use reqwest::Method;
use serde_json::{json, Value};

/// Creates a token with `role`; returns its id and secret.
async fn token(service: &Service, role: &str) -> (String, String) {
    let body = service
        .post("/api/v1/tokens", json!({ "role": role, "label": role }))
        .await;
    (
        body["id"].as_str().unwrap().to_owned(),
        body["token"].as_str().unwrap().to_owned(),
    )
}

/// The routes an integration token may call, as (method, path template).
const OPEN_TO_THE_INTEGRATION: &[(&str, &str)] = &[
    ("GET", "/api/v1/alerts"),
    ("GET", "/api/v1/alerts/{id}"),
    ("GET", "/api/v1/alerts/stream"),
    ("GET", "/api/v1/integration/feed"),
    ("POST", "/api/v1/integration/border-hits"),
];

#[tokio::test]
async fn an_integration_token_is_refused_every_route_but_alerts_the_feed_and_border_hits() {
    let mut service = Service::start().await;
    let (token_id, integration) = token(&service, "integration").await;
    let person = service.person_with_device("864717003283581", &[]).await;
    let spec = service.get("/api/v1/openapi.json").await;
    let mut tried = BTreeSet::new();
    let mut refused = 0;
    for (template, item) in spec["paths"].as_object().unwrap() {
        if !template.starts_with("/api/v1/") || template == "/api/v1/openapi.json" {
            continue;
        }
        for (method, _) in item.as_object().unwrap() {
            let method = method.to_uppercase();
            let open = OPEN_TO_THE_INTEGRATION.contains(&(method.as_str(), template.as_str()));
            let path = template
                .replace("{id}", &person)
                .replace("{imei}", "864717003283581")
                .replace("{name}", "police");
            let mut request = service
                .client
                .request(method.parse().unwrap(), service.url(&path))
                .bearer_auth(&integration)
                .timeout(Duration::from_secs(5));
            if method != "GET" && method != "DELETE" {
                request = request.json(&json!({}));
            }
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            if open {
                assert_ne!(status, 403, "{method} {template} is the integration's");
            } else {
                assert_eq!(status, 403, "{method} {template} answered {status}");
                let problem: Value = response.json().await.unwrap();
                assert!(
                    problem["detail"].as_str().unwrap().contains("integration"),
                    "{problem}"
                );
                refused += 1;
            }
            tried.insert((method, template.clone()));
        }
    }
    for route in [
        ("GET", "/api/v1/persons"),
        ("GET", "/api/v1/persons/{id}/track"),
        ("GET", "/api/v1/zones"),
        ("GET", "/api/v1/devices"),
        ("GET", "/api/v1/integration/reads"),
        ("POST", "/api/v1/alerts/{id}/ack"),
    ] {
        assert!(
            tried.contains(&(route.0.to_owned(), route.1.to_owned())),
            "{route:?} was not in the description"
        );
    }
    // Refused requests are in the reads log too.
    let log = service
        .get(&format!(
            "/api/v1/integration/reads?token_id={token_id}&limit=1000"
        ))
        .await;
    let forbidden = log["reads"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] == 403)
        .count();
    assert_eq!(forbidden, refused);
    service.stop().await;
}

/// The data of the next SSE event on `response`.
async fn next_sse_data(response: &mut reqwest::Response, buffer: &mut String) -> Value {
    loop {
        if let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            if let Some(data) = event.lines().find_map(|l| l.strip_prefix("data:")) {
                return serde_json::from_str(data.trim()).unwrap();
            }
            continue;
        }
        let chunk = tokio::time::timeout(Duration::from_secs(10), response.chunk())
            .await
            .expect("an event within 10 s")
            .unwrap()
            .expect("the stream goes on");
        buffer.push_str(std::str::from_utf8(&chunk).unwrap());
    }
}

#[tokio::test]
async fn an_integration_token_sees_no_operator_note_on_any_channel() {
    let mut service = Service::start_with(|c| c.mqtt.publish_alerts = true).await;
    let (_, integration) = token(&service, "integration").await;
    let (_, operator) = token(&service, "operator").await;
    let mut topic = subscriber(
        service.listener("mqtt"),
        "police-alerts",
        "ewall/v1/alerts/+",
    )
    .await;
    let person = service.person_with_device("864717003283581", &[]).await;
    let (status, alert) = service
        .call(
            Method::POST,
            "/api/v1/integration/border-hits",
            Some(
                json!({"person_id": person, "port": "Luohu", "time": "2026-11-30T09:00:00Z",
                        "reference": "SZ-1"}),
            ),
        )
        .await;
    assert_eq!(status, 201, "{alert}");
    let id = alert["id"].as_str().unwrap();
    let (status, acked) = service
        .call_as(
            &operator,
            Method::POST,
            &format!("/api/v1/alerts/{id}/ack"),
            Some(json!({"note": "called the wearer's probation officer"})),
        )
        .await;
    assert_eq!(status, 200, "{acked}");
    assert_eq!(acked["note"], "called the wearer's probation officer");

    let no_note = |alert: &Value, channel: &str| {
        assert!(alert.get("note").is_none(), "{channel}: {alert}");
        assert_eq!(alert["id"], id, "{channel}: {alert}");
        assert_eq!(alert["kind"], "border_hit", "{channel}: {alert}");
        assert_eq!(alert["border"]["port"], "Luohu", "{channel}: {alert}");
    };
    let (status, page) = service
        .call_as(&integration, Method::GET, "/api/v1/alerts?after=0", None)
        .await;
    assert_eq!(status, 200);
    no_note(&page["alerts"][0], "GET /alerts");
    let (status, one) = service
        .call_as(
            &integration,
            Method::GET,
            &format!("/api/v1/alerts/{id}"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    no_note(&one, "GET /alerts/{id}");
    let (_, feed) = service
        .call_as(
            &integration,
            Method::GET,
            "/api/v1/integration/feed?after=0",
            None,
        )
        .await;
    let alert_events: Vec<&Value> = feed["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"].as_str().unwrap().starts_with("alert."))
        .collect();
    assert_eq!(alert_events.len(), 2, "{feed}");
    for event in &alert_events {
        no_note(&event["data"], "the feed");
    }
    assert_eq!(alert_events[1]["data"]["state"], "acknowledged");
    let person_event = feed["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "person.enrolled")
        .expect("the filing event");
    assert_eq!(
        person_event["data"]["name"], "Test Person",
        "filing events as they are"
    );

    let mut stream = service
        .client
        .get(service.url("/api/v1/alerts/stream?after=0"))
        .bearer_auth(&integration)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let mut buffer = String::new();
    for _ in 0..2 {
        let envelope = next_sse_data(&mut stream, &mut buffer).await;
        no_note(&envelope["data"], "the stream");
    }
    drop(stream);

    for expected in ["org.ewall.alert.border_hit", "org.ewall.alert.acknowledged"] {
        let publish = next_publish(&mut topic).await;
        assert_eq!(publish.topic, format!("ewall/v1/alerts/{person}"));
        let envelope: Value = serde_json::from_slice(&publish.payload).unwrap();
        assert_eq!(envelope["type"], expected);
        no_note(&envelope["data"], "the MQTT alert topic");
    }

    // The monitoring centre still reads its notes.
    let mine = service.get(&format!("/api/v1/alerts/{id}")).await;
    assert_eq!(mine["note"], "called the wearer's probation officer");
    service.stop().await;
}

#[tokio::test]
async fn every_integration_request_is_in_the_reads_log_for_admins_only() {
    let mut service = Service::start().await;
    let (token_id, integration) = token(&service, "integration").await;
    let (_, other) = token(&service, "integration").await;
    let (_, operator) = token(&service, "operator").await;
    let person = service.person_with_device("864717003283581", &[]).await;
    for reference in ["R-1", "R-2", "R-3"] {
        let (status, _) = service
            .call_as(
                &integration,
                Method::POST,
                "/api/v1/integration/border-hits",
                Some(json!({"person_id": person, "port": "Gongbei",
                            "time": "2026-11-30T09:00:00+08:00", "reference": reference})),
            )
            .await;
        assert_eq!(status, 201);
    }
    let (status, page) = service
        .call_as(
            &integration,
            Method::GET,
            "/api/v1/alerts?after=0&limit=2",
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(page["alerts"].as_array().unwrap().len(), 2);
    let (status, _) = service
        .call_as(
            &integration,
            Method::GET,
            &format!("/api/v1/persons/{person}"),
            None,
        )
        .await;
    assert_eq!(status, 403);
    service
        .call_as(&other, Method::GET, "/api/v1/integration/feed", None)
        .await;
    // The monitoring centre's own reads are not the integration's.
    service.get("/api/v1/alerts").await;

    let log = service
        .get(&format!("/api/v1/integration/reads?token_id={token_id}"))
        .await;
    let reads = log["reads"].as_array().unwrap();
    let summary: Vec<(String, String, Value, u64, u64)> = reads
        .iter()
        .map(|r| {
            assert_eq!(r["token_id"], token_id);
            assert!(r["at"].is_string());
            (
                r["method"].as_str().unwrap().to_owned(),
                r["path"].as_str().unwrap().to_owned(),
                r["query"].clone(),
                r["status"].as_u64().unwrap(),
                r["records"].as_u64().unwrap(),
            )
        })
        .collect();
    let hits = "/api/v1/integration/border-hits".to_owned();
    assert_eq!(
        summary,
        [
            ("POST".into(), hits.clone(), Value::Null, 201, 1),
            ("POST".into(), hits.clone(), Value::Null, 201, 1),
            ("POST".into(), hits, Value::Null, 201, 1),
            (
                "GET".into(),
                "/api/v1/alerts".into(),
                json!("after=0&limit=2"),
                200,
                2
            ),
            (
                "GET".into(),
                format!("/api/v1/persons/{person}"),
                Value::Null,
                403,
                0
            ),
        ]
    );
    assert_eq!(log["next"], reads[4]["seq"]);
    let all = service.get("/api/v1/integration/reads").await;
    assert_eq!(all["reads"].as_array().unwrap().len(), 6, "both tokens");
    let later = service
        .get("/api/v1/integration/reads?from=2100-01-01T00:00:00Z")
        .await;
    assert!(later["reads"].as_array().unwrap().is_empty());
    let paged = service
        .get(&format!(
            "/api/v1/integration/reads?after={}&limit=1",
            reads[3]["seq"]
        ))
        .await;
    assert_eq!(paged["reads"][0]["seq"], reads[4]["seq"]);

    for (who, name) in [(&operator, "operator"), (&integration, "integration")] {
        let (status, _) = service
            .call_as(who, Method::GET, "/api/v1/integration/reads", None)
            .await;
        assert_eq!(status, 403, "{name}");
    }
    for bad in [
        "token_id=not-a-uuid",
        "token_id=0193a4b07c1e7d2a9f000123456789ab",
        "token_id=",
        "from=2026-11-30%2009:00:00Z",
        "from=2026-11-30",
        "to=yesterday",
        "after=-1",
        "after=1000000000000000001",
        "limit=0",
        "limit=1001",
        "limit=ten",
        "limit=1&limit=2",
        "colour=blue",
    ] {
        let (status, problem) = service
            .call(
                Method::GET,
                &format!("/api/v1/integration/reads?{bad}"),
                None,
            )
            .await;
        assert_eq!(status, 400, "{bad}: {problem}");
    }
    service.stop().await;
}

/// A border hit reported twice raises one alert; the same reference for another check is 409.
async fn border_hits_are_raised_once(mut service: Service) {
    let (_, integration) = token(&service, "integration").await;
    let (_, operator) = token(&service, "operator").await;
    let person = service.person_with_device("864717003283581", &[]).await;
    let report = json!({"person_id": person, "port": "Luohu", "time": "2026-11-30T09:15:00Z",
                        "reference": "SZ-BC-20261130-0042"});
    let hit = |token: String, body: Value| {
        let service = &service;
        async move {
            service
                .call_as(
                    &token,
                    Method::POST,
                    "/api/v1/integration/border-hits",
                    Some(body),
                )
                .await
        }
    };
    let (status, alert) = hit(integration.clone(), report.clone()).await;
    assert_eq!(status, 201, "{alert}");
    assert_eq!(alert["kind"], "border_hit");
    assert_eq!(alert["severity"], "critical");
    assert_eq!(alert["state"], "open");
    assert_eq!(alert["person_id"], person);
    assert_eq!(alert["time"], "2026-11-30T09:15:00Z");
    assert_eq!(
        alert["border"],
        json!({"port": "Luohu", "reference": "SZ-BC-20261130-0042"})
    );
    assert!(alert["seq"].as_i64().unwrap() > 0);

    // The checking authority retries (its answer was lost): the same alert, nothing raised.
    let (status, again) = hit(integration.clone(), report.clone()).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["id"], alert["id"]);
    let mut moved = report.clone();
    moved["port"] = json!("Huanggang");
    let (status, problem) = hit(integration.clone(), moved).await;
    assert_eq!(status, 409, "{problem}");
    let kinds: Vec<Value> = service
        .alerts_of(&person)
        .await
        .iter()
        .map(|a| a["kind"].clone())
        .collect();
    assert_eq!(kinds, [json!("border_hit")]);
    let feed = service.get("/api/v1/integration/feed?after=0").await;
    let raised: Vec<&Value> = feed["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "alert.raised")
        .collect();
    assert_eq!(raised.len(), 1);
    assert_eq!(raised[0]["seq"], alert["seq"]);
    service
        .expect_metric("ewall_alerts_total{kind=\"border_hit\"}", 1)
        .await;

    // An admin may report one; an operator may not.
    let mut second = report.clone();
    second["reference"] = json!("SZ-BC-20261130-0043");
    let (status, _) = hit(operator, second.clone()).await;
    assert_eq!(status, 403);
    let (status, _) = hit(service.admin_token.clone(), second).await;
    assert_eq!(status, 201);

    for (change, value) in [
        ("person_id", json!("0193a4b0-7c1e-7d2a-9f00-0123456789ab")),
        ("person_id", json!("not a person")),
        ("time", json!("2026-11-30 09:15:00Z")),
        ("port", json!("")),
        ("reference", json!("   ")),
        ("reference", json!(42)),
        ("extra", json!(true)),
    ] {
        let mut bad = report.clone();
        bad["reference"] = json!("SZ-BC-bad");
        bad[change] = value.clone();
        let (status, problem) = hit(integration.clone(), bad).await;
        assert_eq!(status, 422, "{change} = {value}: {problem}");
    }
    eventually(|| async { (service.alerts_of(&person).await.len() == 2).then_some(()) }).await;
    service.stop().await;
}

#[tokio::test]
async fn a_border_hit_raises_one_critical_alert_however_often_it_is_reported() {
    border_hits_are_raised_once(Service::start().await).await;
}

#[tokio::test]
async fn a_border_hit_raises_one_critical_alert_on_postgres() {
    let Some(backend) = Backend::postgres("border_hits").await else {
        return;
    };
    border_hits_are_raised_once(Service::start_on(backend).await).await;
}

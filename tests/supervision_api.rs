//! The supervision records through the HTTP API of a running service: an unbound device
//! leaves its person `unsupervised`, and leaves, monitoring orders and check-ins are taken
//! only as their description says. (The deadlines themselves are driven with tokio's clock
//! paused in `supervision_timers.rs`.)

mod common;

use chrono::{Duration, Utc};
use common::{eventually, Backend, Service};
use reqwest::Method;
use serde_json::{json, Value};

fn imei(body: &str) -> String {
    format!("{body}{}", ewall::identity::luhn_check_digit(body))
}

fn kinds(alerts: &[Value]) -> Vec<String> {
    alerts
        .iter()
        .map(|a| a["kind"].as_str().unwrap().to_owned())
        .collect()
}

async fn unbinding_the_only_device_raises_unsupervised(mut service: Service) {
    let device = imei("86471700328358");
    let person = service.person_with_device(&device, &[]).await;
    let (status, _) = service
        .call(Method::DELETE, &format!("/api/v1/devices/{device}"), None)
        .await;
    assert_eq!(status, 204);
    let alerts = eventually(|| async {
        let alerts = service.alerts_of(&person).await;
        (!alerts.is_empty()).then_some(alerts)
    })
    .await;
    assert_eq!(kinds(&alerts), ["unsupervised"]);
    assert!(alerts[0]["device_id"].is_null());
    // A restart finds the episode open and raises nothing again, though the deadline of a
    // person without a device (a second's silence here) has long passed.
    service
        .restart_with(|config| config.levels.normal.offline_after_s = 1)
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    assert_eq!(kinds(&service.alerts_of(&person).await), ["unsupervised"]);
    service.restart().await;
    // Bound again: supervision resumes, and the episode ends.
    service
        .post(
            "/api/v1/devices",
            json!({"imei": device, "person_id": person}),
        )
        .await;
    let alerts = eventually(|| async {
        let alerts = service.alerts_of(&person).await;
        (alerts.len() == 2).then_some(alerts)
    })
    .await;
    assert_eq!(kinds(&alerts), ["unsupervised", "returned"]);
}

#[tokio::test]
async fn an_unbound_device_leaves_its_person_unsupervised() {
    unbinding_the_only_device_raises_unsupervised(Service::start().await).await;
}

#[tokio::test]
async fn an_unbound_device_leaves_its_person_unsupervised_on_postgres() {
    let Some(backend) = Backend::postgres("unsupervised").await else {
        return;
    };
    unbinding_the_only_device_raises_unsupervised(Service::start_on(backend).await).await;
}

#[tokio::test]
async fn monitoring_orders_last_at_most_92_days_and_start_in_the_feed() {
    let service = Service::start().await;
    let person = service
        .person_with_device(&imei("86471700328359"), &[])
        .await;
    let path = format!("/api/v1/persons/{person}/orders");
    let now = Utc::now();
    let order = |from: chrono::DateTime<Utc>, to: chrono::DateTime<Utc>| {
        json!({
            "ground": "community correction",
            "approved_by": "county court",
            "from": from.to_rfc3339(),
            "to": to.to_rfc3339(),
        })
    };
    for (body, why) in [
        (order(now, now + Duration::days(93)), "93 days"),
        (
            order(now + Duration::days(2), now + Duration::days(1)),
            "to before from",
        ),
        (
            order(now - Duration::days(10), now - Duration::days(1)),
            "already over",
        ),
    ] {
        let (status, problem) = service.call(Method::POST, &path, Some(body)).await;
        assert_eq!(status, 422, "{why}: {problem}");
    }
    let mut extra = order(now, now + Duration::days(30));
    extra["court"] = json!("x");
    let (status, _) = service.call(Method::POST, &path, Some(extra)).await;
    assert_eq!(status, 422, "unknown field");
    let (status, _) = service
        .call(
            Method::POST,
            &path,
            Some(json!({"ground": "g", "approved_by": "a", "from": "yesterday", "to": "soon"})),
        )
        .await;
    assert_eq!(status, 422, "not RFC 3339 times");
    let created = service
        .post(
            &path,
            order(
                now - Duration::days(1),
                now + Duration::days(92) - Duration::days(1),
            ),
        )
        .await;
    assert!(created["started_at"].is_string(), "{created}");
    assert!(created["ended_at"].is_null());
    let renewal = service
        .post(
            &path,
            order(now + Duration::days(80), now + Duration::days(170)),
        )
        .await;
    assert!(renewal["started_at"].is_null(), "starts at its from");
    let listed = service.get(&path).await;
    assert_eq!(listed["orders"].as_array().unwrap().len(), 2);
    let feed = service.get("/api/v1/integration/feed?limit=1000").await;
    let started: Vec<&Value> = feed["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "order.started")
        .collect();
    assert_eq!(started.len(), 1);
    assert_eq!(started[0]["data"]["id"], created["id"]);
    let (status, _) = service
        .call(
            Method::GET,
            &format!("/api/v1/persons/{}/orders", uuid::Uuid::now_v7()),
            None,
        )
        .await;
    assert_eq!(status, 404);
}

/// Deleting a person ends the orders they had: `order.ended` in the feed before their
/// `person.released`, an `order.end` action by the token that deleted them, and nothing left
/// for the rules to start or end after a restart.
#[tokio::test]
async fn deleting_a_person_ends_their_orders() {
    let mut service = Service::start().await;
    let person = service
        .post(
            "/api/v1/persons",
            json!({"name": "Test Person", "level": "normal", "timezone": "Asia/Shanghai"}),
        )
        .await;
    let id = person["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/persons/{id}/orders");
    let now = Utc::now();
    let order = |from: chrono::DateTime<Utc>, to: chrono::DateTime<Utc>| {
        json!({
            "ground": "community correction",
            "approved_by": "county court",
            "from": from.to_rfc3339(),
            "to": to.to_rfc3339(),
        })
    };
    let running = service
        .post(
            &path,
            order(now - Duration::days(1), now + Duration::days(30)),
        )
        .await;
    // Renews the running order a second from now: the rules would start it then.
    let renewal = service
        .post(
            &path,
            order(now + Duration::seconds(1), now + Duration::days(60)),
        )
        .await;
    assert!(renewal["started_at"].is_null());
    let (status, _) = service
        .call(Method::DELETE, &format!("/api/v1/persons/{id}"), None)
        .await;
    assert_eq!(status, 204);

    let filing = |feed: &Value| -> Vec<(String, Value)> {
        feed["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] != "person.enrolled")
            .map(|e| {
                (
                    e["kind"].as_str().unwrap().to_owned(),
                    e["data"]["id"].clone(),
                )
            })
            .collect()
    };
    let feed = service.get("/api/v1/integration/feed?limit=1000").await;
    assert_eq!(
        filing(&feed),
        vec![
            ("order.started".to_owned(), running["id"].clone()),
            ("order.ended".to_owned(), running["id"].clone()),
            ("person.released".to_owned(), json!(id)),
        ]
    );
    let ended = feed["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "order.ended")
        .unwrap();
    assert!(ended["data"]["ended_at"].is_string(), "{ended}");

    // The renewal's start passes after a restart: it was ended with the deletion, unstarted.
    service.restart().await;
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    let after_restart = service.get("/api/v1/integration/feed?limit=1000").await;
    assert_eq!(filing(&after_restart), filing(&feed));
    service.stop().await;

    let url = format!("sqlite://{}", service.data_dir().join("ewall.db").display());
    let store = ewall::store::open(&url).await.unwrap();
    let person: ewall::model::PersonId = id.parse().unwrap();
    let orders = store.orders(person).await.unwrap();
    assert!(orders.iter().all(|o| o.ended_at.is_some()), "{orders:?}");
    let (from, to) = (now - Duration::days(1), now + Duration::days(1));
    let actions: Vec<Value> = store
        .person_records(ewall::store::ChainTable::Actions, person, from, to, 0, 100)
        .await
        .unwrap()
        .iter()
        .map(|a| serde_json::from_slice(&a.canonical).unwrap())
        .collect();
    let kinds: Vec<&str> = actions
        .iter()
        .map(|a| a["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "person.create",
            "order.create",
            "order.renew",
            "person.delete",
            "order.end",
            "order.end"
        ]
    );
    let deletion = &actions[3]["actor"];
    assert!(
        deletion.as_str().unwrap().starts_with("token:"),
        "{deletion}"
    );
    assert!(actions[4..].iter().all(|a| &a["actor"] == deletion));
}

#[tokio::test]
async fn leaves_suspend_assigned_zones_and_can_be_cancelled_once() {
    let service = Service::start().await;
    let home = service
        .circle_zone("home", "inclusion", 112.4, 25.6, 500.0)
        .await;
    let other = service
        .circle_zone("elsewhere", "inclusion", 113.0, 26.0, 500.0)
        .await;
    let person = service
        .person_with_device(&imei("86471700328360"), std::slice::from_ref(&home))
        .await;
    let path = format!("/api/v1/persons/{person}/leaves");
    let now = Utc::now();
    let leave = |zones: Vec<&str>| {
        json!({
            "from": (now - Duration::minutes(5)).to_rfc3339(),
            "to": (now + Duration::hours(4)).to_rfc3339(),
            "zone_ids": zones,
            "reason": "hospital visit",
            "approved_by": "officer 7",
        })
    };
    let (status, problem) = service
        .call(Method::POST, &path, Some(leave(vec![other.as_str()])))
        .await;
    assert_eq!(status, 422, "a zone not assigned: {problem}");
    let (status, _) = service.call(Method::POST, &path, Some(leave(vec![]))).await;
    assert_eq!(status, 422, "no zone");
    let granted = service.post(&path, leave(vec![home.as_str()])).await;
    let id = granted["id"].as_str().unwrap();
    assert_eq!(service.get(&path).await["leaves"][0]["id"], granted["id"]);
    let cancelled = service
        .post(&format!("{path}/{id}/cancel"), json!({}))
        .await;
    assert!(cancelled["cancelled_at"].is_string());
    let (status, _) = service
        .call(Method::POST, &format!("{path}/{id}/end"), None)
        .await;
    assert_eq!(status, 409, "already cancelled");
}

#[tokio::test]
async fn check_ins_are_recorded_with_a_method_and_refused_from_the_future() {
    let service = Service::start().await;
    let person = service
        .person_with_device(&imei("86471700328361"), &[])
        .await;
    let path = format!("/api/v1/persons/{person}/checkins");
    let now = Utc::now();
    let recorded = service
        .post(
            &path,
            json!({"time": now.to_rfc3339(), "method": "kiosk",
                   "position": {"lat": 25.6, "lon": 112.4, "accuracy_m": 8.0}}),
        )
        .await;
    assert_eq!(recorded["method"], "kiosk");
    assert_eq!(recorded["position"]["lat"], 25.6);
    for (body, why) in [
        (
            json!({"time": (now + Duration::hours(1)).to_rfc3339(), "method": "app"}),
            "future",
        ),
        (
            json!({"time": now.to_rfc3339(), "method": "telepathy"}),
            "method",
        ),
        (
            json!({"time": now.to_rfc3339(), "method": "app", "position": {"lat": 91.0, "lon": 0.0}}),
            "latitude",
        ),
        (json!({"method": "app"}), "no time"),
    ] {
        let (status, problem) = service.call(Method::POST, &path, Some(body)).await;
        assert_eq!(status, 422, "{why}: {problem}");
    }
    let listed = service.get(&path).await;
    assert_eq!(listed["checkins"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn outside_a_monitoring_order_fixes_are_stored_marked_and_not_fenced() {
    let service = Service::start_with(|config| config.supervision.require_order = true).await;
    let home = service
        .circle_zone("home", "inclusion", 112.4, 25.6, 500.0)
        .await;
    let phone = "phone-0099";
    let person = service
        .person_with_device(phone, std::slice::from_ref(&home))
        .await;
    let base = format!("http://{}", service.listener("osmand"));
    let report = |minutes_ago: i64| {
        let time = Utc::now() - Duration::minutes(minutes_ago);
        let target = ewall_protocol::osmand::encode::request_target(
            phone,
            time,
            25.6,
            112.43,
            0.0,
            0.0,
            Some(10.0),
            None,
        );
        format!("{base}{target}")
    };
    // Out of the zone with no order: stored, marked, no alert.
    for minutes_ago in [10, 8, 6] {
        let response = service
            .client
            .get(report(minutes_ago))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    service
        .post(
            &format!("/api/v1/persons/{person}/orders"),
            json!({
                "ground": "community correction",
                "approved_by": "county court",
                "from": (Utc::now() - Duration::hours(1)).to_rfc3339(),
                "to": (Utc::now() + Duration::days(30)).to_rfc3339(),
            }),
        )
        .await;
    // Under the order, the same place is a breach.
    for minutes_ago in [4, 2, 0] {
        let response = service
            .client
            .get(report(minutes_ago))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    let alerts = eventually(|| async {
        let alerts = service.alerts_of(&person).await;
        (!alerts.is_empty()).then_some(alerts)
    })
    .await;
    assert_eq!(kinds(&alerts), ["zone_exit"]);
    let marks: Vec<bool> = service
        .track_of(&person)
        .await
        .iter()
        .map(|f| f["properties"]["outside_order"].as_bool().unwrap())
        .collect();
    assert_eq!(marks, [true, true, true, false, false, false]);
}

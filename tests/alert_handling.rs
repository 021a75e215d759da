//! The alarm-handling chain through the API, as a monitoring centre's operators use it: an
//! alert is acknowledged, verified, disposed and closed, one step at a time, each step recorded
//! with the operator's token, time and note; a step that skips a state is 409; an integration
//! token may not act on alerts; a second excursion while the first alert is being handled is a
//! repeat, born closed; an implausible jump is recorded closed; and the statistics count it all.

mod common;

use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, TimeZone, Utc};
use common::{north_of, Backend, Device, Service};
use ewall_protocol::gt06::encode;
use reqwest::Method;
use serde_json::{json, Value};

const HOME: (f64, f64) = (112.3625, 25.515);

/// A device walking through fixes 30 s apart, from a fixed start.
struct Walker {
    device: Device,
    serial: u16,
    seconds: AtomicI64,
}

impl Walker {
    async fn login(service: &Service, imei: &str) -> Walker {
        let mut device = Device::connect(service.listener("gt06")).await;
        device.exchange(&encode::login(imei, 1, None), 10).await;
        Walker {
            device,
            serial: 2,
            seconds: AtomicI64::new(0),
        }
    }

    async fn walk(&mut self, points: &[(f64, f64)]) {
        let start = Utc.with_ymd_and_hms(2026, 6, 1, 20, 0, 0).unwrap();
        for (lon, lat) in points {
            let t = self.seconds.fetch_add(30, Ordering::SeqCst);
            let fix = encode::Fix::new(start + chrono::Duration::seconds(t), *lat, *lon);
            let reply = self
                .device
                .exchange(&encode::location(self.serial, &fix), 10)
                .await;
            assert_eq!(reply[3], 0x12, "position acknowledged");
            self.serial += 1;
        }
    }
}

/// The fix count alone confirms (the dwell has tests of its own).
async fn start(backend: Backend) -> Service {
    Service::start_on_with(backend, |c| c.levels.normal.confirm_seconds = 0).await
}

/// A token with `role` and `label`: (secret, id).
async fn token(service: &Service, role: &str, label: &str) -> (String, String) {
    let body = service
        .post("/api/v1/tokens", json!({"role": role, "label": label}))
        .await;
    (
        body["token"].as_str().unwrap().to_owned(),
        body["id"].as_str().unwrap().to_owned(),
    )
}

async fn act(service: &Service, token: &str, alert: &str, step: &str, body: Value) -> (u16, Value) {
    service
        .call_as(
            token,
            Method::POST,
            &format!("/api/v1/alerts/{alert}/{step}"),
            Some(body),
        )
        .await
}

/// Waits until the person has `n` alerts and returns them.
async fn alerts(service: &Service, person: &str, n: usize) -> Vec<Value> {
    common::eventually(|| async {
        let alerts = service.alerts_of(person).await;
        (alerts.len() >= n).then_some(alerts)
    })
    .await
}

fn away() -> (f64, f64) {
    north_of(HOME.0, HOME.1, 1_500.0)
}

async fn the_chain(backend: Backend) {
    let service = start(backend).await;
    let zone = service
        .circle_zone("home", "inclusion", HOME.0, HOME.1, 500.0)
        .await;
    let imei = "864717003287038";
    let person = service.person_with_device(imei, &[zone]).await;
    let (desk1, desk1_id) = token(&service, "operator", "desk 1").await;
    let (desk2, desk2_id) = token(&service, "operator", "desk 2").await;
    let (police, _) = token(&service, "integration", "police").await;
    let mut walker = Walker::login(&service, imei).await;
    walker.walk(&[HOME, away(), away(), HOME]).await;
    let raised = alerts(&service, &person, 2).await;
    assert_eq!(raised[0]["kind"], "zone_exit");
    assert_eq!(raised[0]["state"], "open");
    let exit = raised[0]["id"].as_str().unwrap().to_owned();

    // Skipping a state is a conflict, told as a problem document; nothing changes.
    for (step, body) in [
        ("verify", json!({})),
        ("dispose", json!({"disposition": "warned"})),
        ("close", json!({})),
    ] {
        let (status, problem) = act(&service, &desk1, &exit, step, body).await;
        assert_eq!(status, 409, "{step}: {problem}");
        assert!(
            problem["detail"].as_str().unwrap().contains("open"),
            "{problem}"
        );
    }
    // An integration token reads alerts but does not handle them.
    for step in ["ack", "verify", "close", "resolve"] {
        let (status, _) = act(&service, &police, &exit, step, json!({})).await;
        assert_eq!(status, 403, "integration {step}");
    }
    let (status, _) = service
        .call_as(
            &police,
            Method::GET,
            &format!("/api/v1/alerts/{exit}/actions"),
            None,
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = service
        .call_as(
            &police,
            Method::GET,
            &format!("/api/v1/alerts/{exit}"),
            None,
        )
        .await;
    assert_eq!(status, 200, "the integration still reads the alert");

    let before = Utc::now();
    let (status, acked) = act(
        &service,
        &desk1,
        &exit,
        "ack",
        json!({"note": "calling the wearer"}),
    )
    .await;
    assert_eq!(status, 200, "{acked}");
    assert_eq!(acked["state"], "acknowledged");
    let (status, _) = act(&service, &desk2, &exit, "ack", json!({})).await;
    assert_eq!(status, 409, "acknowledged once");
    let (status, verified) = act(
        &service,
        &desk2,
        &exit,
        "verify",
        json!({"note": "called back: at home, the GPS drifted"}),
    )
    .await;
    assert_eq!(status, 200, "{verified}");
    assert_eq!(verified["state"], "verified");
    for bad in [
        json!({"disposition": "lost"}),
        json!({"note": "no disposition"}),
        json!({"disposition": "warned", "extra": 1}),
    ] {
        let (status, problem) = act(&service, &desk2, &exit, "dispose", bad.clone()).await;
        assert_eq!(status, 422, "{bad}: {problem}");
    }
    let (status, problem) = service
        .call_as(
            &desk2,
            Method::POST,
            &format!("/api/v1/alerts/{exit}/dispose"),
            None,
        )
        .await;
    assert_eq!(status, 422, "a disposition is needed: {problem}");
    let (status, disposed) = act(
        &service,
        &desk2,
        &exit,
        "dispose",
        json!({"disposition": "false_alarm", "note": "indoor multipath"}),
    )
    .await;
    assert_eq!(status, 200, "{disposed}");
    assert_eq!(disposed["disposition"], "false_alarm");
    let (status, _) = act(&service, &desk2, &exit, "verify", json!({})).await;
    assert_eq!(status, 409, "no going back");
    let (status, closed) = act(&service, &desk1, &exit, "close", json!(null)).await;
    assert_eq!(status, 200, "{closed}");
    assert_eq!(closed["state"], "closed");
    assert_eq!(closed["note"], "indoor multipath", "the latest note");
    assert_eq!(service.get(&format!("/api/v1/alerts/{exit}")).await, closed);

    // Every step on record: who, when, the note of each (the first one kept too).
    let actions = service.get(&format!("/api/v1/alerts/{exit}/actions")).await["actions"]
        .as_array()
        .unwrap()
        .clone();
    let summary: Vec<(&str, &str, &str, Option<&str>)> = actions
        .iter()
        .map(|a| {
            (
                a["previous_state"].as_str().unwrap(),
                a["state"].as_str().unwrap(),
                a["actor"]["label"].as_str().unwrap(),
                a["note"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("open", "acknowledged", "desk 1", Some("calling the wearer")),
            (
                "acknowledged",
                "verified",
                "desk 2",
                Some("called back: at home, the GPS drifted")
            ),
            ("verified", "disposed", "desk 2", Some("indoor multipath")),
            ("disposed", "closed", "desk 1", None),
        ]
    );
    let ids: Vec<&str> = actions
        .iter()
        .map(|a| a["actor"]["token_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [&desk1_id, &desk2_id, &desk2_id, &desk1_id]);
    assert_eq!(actions[2]["disposition"], "false_alarm");
    let times: Vec<DateTime<Utc>> = actions
        .iter()
        .map(|a| a["at"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(times[0] >= before.trunc_subsecs_micro());
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    assert_eq!(acked["acknowledged_at"], actions[0]["at"]);

    // Each step is an event in the feed, carrying the alert as the step left it.
    let feed = service.get("/api/v1/integration/feed?after=0").await;
    let steps: Vec<(&str, i64)> = feed["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["alert_id"] == exit.as_str() && e["kind"] != "alert.raised")
        .map(|e| (e["kind"].as_str().unwrap(), e["seq"].as_i64().unwrap()))
        .collect();
    let kinds: Vec<&str> = steps.iter().map(|s| s.0).collect();
    assert_eq!(
        kinds,
        [
            "alert.acknowledged",
            "alert.verified",
            "alert.disposed",
            "alert.closed"
        ]
    );
    for ((_, seq), action) in steps.iter().zip(&actions) {
        assert_eq!(action["event_seq"], *seq);
    }

    // resolve: every missing step at once, each recorded; it needs a disposition to pass
    // disposed.
    let returned = raised[1]["id"].as_str().unwrap();
    assert_eq!(raised[1]["kind"], "returned");
    let (status, problem) = act(&service, &desk1, returned, "resolve", json!({})).await;
    assert_eq!(status, 409, "{problem}");
    assert!(problem["detail"]
        .as_str()
        .unwrap()
        .contains("needs a disposition"));
    let (status, resolved) = act(
        &service,
        &desk1,
        returned,
        "resolve",
        json!({"disposition": "returned_by_itself", "note": "home by 20:02"}),
    )
    .await;
    assert_eq!(status, 200, "{resolved}");
    assert_eq!(resolved["state"], "closed");
    let actions = service
        .get(&format!("/api/v1/alerts/{returned}/actions"))
        .await;
    let states: Vec<&str> = actions["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["acknowledged", "verified", "disposed", "closed"]);
    let (status, _) = act(&service, &desk1, returned, "resolve", json!({})).await;
    assert_eq!(status, 409, "closed is the end");
    let (status, _) = service
        .call(
            Method::GET,
            &format!("/api/v1/alerts/{}/actions", ewall::model::new_id()),
            None,
        )
        .await;
    assert_eq!(status, 404);
}

/// Rounds down to the microsecond, as the store keeps times.
trait Micro {
    fn trunc_subsecs_micro(self) -> Self;
}

impl Micro for DateTime<Utc> {
    fn trunc_subsecs_micro(self) -> Self {
        chrono::SubsecRound::trunc_subsecs(self, 6)
    }
}

#[tokio::test]
async fn operators_take_an_alert_through_the_chain_one_step_at_a_time() {
    the_chain(Backend::Sqlite).await;
}

#[tokio::test]
async fn operators_take_an_alert_through_the_chain_one_step_at_a_time_on_postgres() {
    if let Some(backend) = Backend::postgres("alert handling chain").await {
        the_chain(backend).await;
    }
}

async fn statistics(backend: Backend) {
    let service = start(backend).await;
    let since = Utc::now();
    let zone = service
        .circle_zone("home", "inclusion", HOME.0, HOME.1, 500.0)
        .await;
    let imei = "864717003287046";
    let person = service
        .person_with_device(imei, std::slice::from_ref(&zone))
        .await;
    let mut walker = Walker::login(&service, imei).await;
    // Two excursions, the second while the first exit is still being handled, and a jump of
    // 100 km in 30 s between them.
    walker.walk(&[HOME, away(), away(), HOME]).await;
    let first = alerts(&service, &person, 2).await;
    let exit = first[0]["id"].as_str().unwrap().to_owned();
    service
        .post(&format!("/api/v1/alerts/{exit}/ack"), json!({}))
        .await;
    walker
        .walk(&[north_of(HOME.0, HOME.1, 100_000.0), HOME])
        .await;
    walker.walk(&[away(), away(), HOME]).await;
    let all = alerts(&service, &person, 5).await;
    let kinds: Vec<(&str, &str)> = all
        .iter()
        .map(|a| (a["kind"].as_str().unwrap(), a["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("zone_exit", "acknowledged"),
            ("returned", "open"),
            ("implausible_jump", "closed"),
            ("zone_exit", "closed"),
            ("returned", "closed"),
        ],
        "a jump is recorded closed; the second excursion repeats the first"
    );
    assert_eq!(all[2]["severity"], "low");
    assert_eq!(all[3]["repeat_of"], exit.as_str());
    assert_eq!(all[4]["repeat_of"], first[1]["id"]);
    let jump_actions = service
        .get(&format!(
            "/api/v1/alerts/{}/actions",
            all[2]["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(jump_actions["actions"][0]["actor"]["token_id"], Value::Null);
    assert_eq!(jump_actions["actions"][0]["actor"]["label"], "ewall");
    service
        .post(
            &format!("/api/v1/alerts/{exit}/resolve"),
            json!({"disposition": "false_alarm"}),
        )
        .await;
    service
        .post(
            &format!(
                "/api/v1/alerts/{}/resolve",
                first[1]["id"].as_str().unwrap()
            ),
            json!({"disposition": "returned_by_itself"}),
        )
        .await;

    let window = |from: DateTime<Utc>, to: DateTime<Utc>| {
        format!(
            "/api/v1/stats/alerts?from={}&to={}",
            urlencode(&from.to_rfc3339()),
            urlencode(&to.to_rfc3339())
        )
    };
    let until = Utc::now() + chrono::Duration::minutes(1);
    let stats = service.get(&window(since, until)).await;
    assert_eq!(stats["alerts"], 3, "{stats}");
    assert_eq!(stats["repeats"], 2);
    assert_eq!(
        stats["by_kind"],
        json!({"implausible_jump": 1, "returned": 1, "zone_exit": 1})
    );
    assert_eq!(stats["by_zone"], json!({ zone.as_str(): 2 }));
    assert_eq!(
        stats["by_severity"],
        json!({"high": 1, "info": 1, "low": 1})
    );
    assert_eq!(stats["by_level"], json!({"normal": 3}));
    assert_eq!(stats["by_state"], json!({"closed": 3}));
    assert_eq!(
        stats["by_disposition"],
        json!({"false_alarm": 1, "returned_by_itself": 1})
    );
    assert_eq!(stats["disposed"], 2);
    assert_eq!(stats["false_alarm_rate"], 0.5);
    // Without a window: the last 30 days, which holds the same alerts.
    let recent = service.get("/api/v1/stats/alerts").await;
    assert_eq!(recent["alerts"], 3);
    let earlier = service
        .get(&window(
            since - chrono::Duration::days(1),
            since - chrono::Duration::hours(1),
        ))
        .await;
    assert_eq!(earlier["alerts"], 0);
    assert_eq!(earlier["false_alarm_rate"], Value::Null);

    for (query, expected) in [
        (window(until, since), 422),
        (window(since, since), 422),
        ("/api/v1/stats/alerts?from=yesterday".to_owned(), 400),
        (
            "/api/v1/stats/alerts?to=2026-13-01T00:00:00Z".to_owned(),
            400,
        ),
        ("/api/v1/stats/alerts?zone=home".to_owned(), 400),
    ] {
        let (status, problem) = service.call(Method::GET, &query, None).await;
        assert_eq!(status, expected, "{query}: {problem}");
    }
    let (police, _) = token(&service, "integration", "police").await;
    let (status, _) = service
        .call_as(&police, Method::GET, "/api/v1/stats/alerts", None)
        .await;
    assert_eq!(status, 403);
}

fn urlencode(text: &str) -> String {
    text.replace('+', "%2B").replace(':', "%3A")
}

#[tokio::test]
async fn statistics_count_a_scenario_by_kind_zone_level_and_disposition() {
    statistics(Backend::Sqlite).await;
}

#[tokio::test]
async fn statistics_count_a_scenario_by_kind_zone_level_and_disposition_on_postgres() {
    if let Some(backend) = Backend::postgres("alert statistics").await {
        statistics(backend).await;
    }
}

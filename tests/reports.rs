//! Monthly reports over a month of a scenario (`fixtures/reports/month.json`): three persons at
//! three levels with breaches, gaps of lost supervision, leave permits, missed check-ins, false
//! alarms and commands, loaded into the store with the times they happened. The service then
//! answers each person's record, the officer's entries, the level review and the county's
//! figures; the expected numbers are worked out by hand below, and asking again gives the same.

mod common;

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use common::{Backend, Service};
use ewall::model::{
    new_id, Actor, Alert, AlertKind, AlertState, Checkin, CheckinMethod, CommandStatus,
    DeviceCommand, Disposition, Fix, LeavePermit, MonitoringOrder, PersonId, PositionSource,
    Severity, SupervisionLevel,
};
use ewall::store::{AlertActionRequest, AlertStep, LeaveClosing, NewPerson, OrderStep, Store};
use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize)]
struct Scenario {
    report_interval_s: HashMap<String, u32>,
    zones: Vec<String>,
    persons: Vec<ScenarioPerson>,
}

#[derive(Deserialize)]
struct ScenarioPerson {
    key: String,
    name: String,
    level: SupervisionLevel,
    enrolled: DateTime<Utc>,
    released: Option<DateTime<Utc>>,
    device: String,
    fixes: Fixes,
    alerts: Vec<ScenarioAlert>,
    leaves: Vec<ScenarioLeave>,
    checkins: Vec<DateTime<Utc>>,
    commands: Vec<ScenarioCommand>,
    #[serde(default)]
    orders: Vec<ScenarioOrder>,
}

/// A monitoring order, started at `from` and ended at `ended` (`order.end`) or else at `to`.
#[derive(Deserialize)]
struct ScenarioOrder {
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    #[serde(default)]
    ended: Option<DateTime<Utc>>,
}

#[derive(Deserialize)]
struct Fixes {
    from: DateTime<Utc>,
    until: DateTime<Utc>,
    every_s: i64,
    gaps: Vec<(DateTime<Utc>, DateTime<Utc>)>,
}

#[derive(Deserialize)]
struct ScenarioAlert {
    key: String,
    kind: AlertKind,
    #[serde(default)]
    zone: Option<String>,
    time: DateTime<Utc>,
    #[serde(default)]
    disposition: Option<Disposition>,
    #[serde(default)]
    disposed_after_s: i64,
}

#[derive(Deserialize)]
struct ScenarioLeave {
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    zones: Vec<String>,
    cancelled: bool,
}

#[derive(Deserialize)]
struct ScenarioCommand {
    created: DateTime<Utc>,
    outcome: CommandStatus,
}

fn scenario() -> Scenario {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/reports/month.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn fix(device: &str, person: PersonId, time: DateTime<Utc>) -> Fix {
    Fix {
        device_id: device.into(),
        person_id: person,
        time,
        received_at: time + Duration::seconds(2),
        lat: 25.58,
        lon: 112.36,
        valid: true,
        accuracy_m: Some(10.0),
        speed_kmh: None,
        course: None,
        altitude_m: None,
        satellites: Some(8),
        hdop: None,
        source: PositionSource::Gps,
        battery_pct: Some(70),
        archived: false,
        integrity_mismatch: false,
        protocol: "gt06".into(),
        wifi_bssids: Vec::new(),
        clock_skew: false,
        implausible: None,
        raw: Default::default(),
    }
}

/// What happens in the scenario, in time order.
enum Happening {
    Raise(String, Box<Alert>),
    Resolve(String, Disposition),
}

/// The persons' ids by key and the alerts' ids by key, once loaded.
struct Loaded {
    persons: HashMap<String, PersonId>,
    alerts: HashMap<String, uuid::Uuid>,
}

/// Writes the scenario into the store as it would have been recorded at the time. The store
/// stamps enrolments and releases with the time of the call, so those are moved back to the
/// scenario's times with SQL, as if the persons had been enrolled then.
async fn load(store: &dyn Store, data: &Scenario, db: &Backdate) -> Loaded {
    let mut zones: HashMap<&str, uuid::Uuid> = HashMap::new();
    for name in &data.zones {
        let zone = ewall::store::ZoneRecord {
            id: new_id(),
            name: name.clone(),
            kind: ewall::model::ZoneKind::Inclusion,
            source_crs: ewall::model::Crs::Wgs84,
            radius_m: Some(1000.0),
            geometry: r#"{"type":"Point","coordinates":[112.36,25.58]}"#.into(),
            wifi: Default::default(),
            scope: Default::default(),
            persons: Vec::new(),
            schedule: None,
            created_at: t("2025-10-01T00:00:00Z"),
        };
        store.create_zone(&zone).await.unwrap();
        zones.insert(name.as_str(), zone.id);
    }
    let mut persons = HashMap::new();
    let mut happenings: Vec<(DateTime<Utc>, Happening)> = Vec::new();
    for p in &data.persons {
        let person = store
            .create_person(NewPerson {
                name: p.name.clone(),
                level: p.level,
                timezone: "Asia/Shanghai".into(),
            })
            .await
            .unwrap();
        persons.insert(p.key.clone(), person.id);
        db.set("persons", "created_at", "id", person.id, p.enrolled)
            .await;
        db.set("person_levels", "since", "person_id", person.id, p.enrolled)
            .await;

        let mut fixes = Vec::new();
        let mut time = p.fixes.from;
        while time < p.fixes.until {
            if !p.fixes.gaps.iter().any(|(a, b)| *a < time && time < *b) {
                fixes.push(fix(&p.device, person.id, time));
            }
            time += Duration::seconds(p.fixes.every_s);
        }
        for batch in fixes.chunks(500) {
            store.commit(batch, Vec::new()).await.unwrap();
        }

        for a in &p.alerts {
            let alert = Alert {
                id: new_id(),
                seq: 0,
                kind: a.kind,
                person_id: person.id,
                device_id: Some(p.device.clone()),
                zone_id: a.zone.as_deref().map(|z| zones[z]),
                severity: Severity::of(a.kind, p.level),
                time: a.time,
                raised_at: a.time,
                position: None,
                state: AlertState::Open,
                late: false,
                note: None,
                disposition: None,
                acknowledged_at: None,
                verified_at: None,
                disposed_at: None,
                closed_at: None,
                repeat_of: None,
                border: None,
            };
            happenings.push((a.time, Happening::Raise(a.key.clone(), Box::new(alert))));
            if let Some(d) = a.disposition {
                happenings.push((
                    a.time + Duration::seconds(a.disposed_after_s),
                    Happening::Resolve(a.key.clone(), d),
                ));
            }
        }
        for l in &p.leaves {
            let leave = LeavePermit {
                id: new_id(),
                person_id: person.id,
                from: l.from,
                to: l.to,
                zone_ids: l.zones.iter().map(|z| zones[z.as_str()]).collect(),
                reason: "family".into(),
                approved_by: "Officer Liu".into(),
                created_at: l.from - Duration::days(1),
                cancelled_at: None,
                ended_at: None,
            };
            store.create_leave(&leave).await.unwrap();
            if l.cancelled {
                store
                    .close_leave(leave.id, LeaveClosing::Cancel, l.from - Duration::hours(1))
                    .await
                    .unwrap();
            }
        }
        for o in &p.orders {
            let order = MonitoringOrder {
                id: new_id(),
                person_id: person.id,
                ground: "community correction".into(),
                approved_by: "county court".into(),
                from: o.from,
                to: o.to,
                created_at: o.from - Duration::days(1),
                started_at: Some(o.from),
                ended_at: None,
            };
            store.create_order(&order).await.unwrap();
            store
                .step_order(order.id, OrderStep::Ended, o.ended.unwrap_or(o.to))
                .await
                .unwrap()
                .expect("ended once");
        }
        for time in &p.checkins {
            store
                .create_checkin(&Checkin {
                    id: new_id(),
                    person_id: person.id,
                    time: *time,
                    method: CheckinMethod::Kiosk,
                    position: None,
                    created_at: *time,
                })
                .await
                .unwrap();
        }
        for c in &p.commands {
            let command = store
                .create_command(&DeviceCommand {
                    id: new_id(),
                    seq: 0,
                    device_id: p.device.clone(),
                    kind: "locate_now".into(),
                    text: None,
                    interval_s: None,
                    status: CommandStatus::Pending,
                    protocol: None,
                    reference: None,
                    created_at: c.created,
                    expires_at: c.created + Duration::hours(1),
                    sent_at: None,
                    completed_at: None,
                    reply: None,
                    error: None,
                })
                .await
                .unwrap();
            let sent = c.created + Duration::seconds(60);
            assert!(store
                .mark_command_sent(command.id, "gt06", &command.seq.to_string(), sent)
                .await
                .unwrap());
            let done = match c.outcome {
                CommandStatus::Expired => c.created + Duration::hours(1),
                _ => sent + Duration::seconds(60),
            };
            assert!(store
                .complete_command(command.id, c.outcome, None, done)
                .await
                .unwrap());
        }
    }

    // Raised and handled in the order it happened, so a repeat is a repeat.
    happenings.sort_by_key(|(time, _)| *time);
    let mut alerts = HashMap::new();
    for (time, happening) in happenings {
        match happening {
            Happening::Raise(key, alert) => {
                alerts.insert(key, alert.id);
                store.commit(&[], vec![*alert]).await.unwrap();
            }
            Happening::Resolve(key, disposition) => {
                store
                    .record_alert_action(
                        alerts[&key],
                        AlertActionRequest {
                            step: AlertStep::Resolve(Some(disposition)),
                            actor: Actor {
                                token_id: None,
                                label: Some("duty officer".into()),
                            },
                            note: None,
                            at: time,
                        },
                    )
                    .await
                    .unwrap();
            }
        }
    }

    for p in &data.persons {
        let id = persons[&p.key];
        match p.released {
            Some(at) => {
                store.delete_person(id).await.unwrap();
                db.set("person_levels", "until", "person_id", id, at).await;
            }
            // A bound device keeps the supervisor from finding a person without one.
            None => {
                store.create_device(&p.device, id).await.unwrap();
            }
        }
    }
    Loaded { persons, alerts }
}

/// Moves a stored time back to the scenario's, in the backend's own SQL.
enum Backdate {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl Backdate {
    async fn open(url: &str) -> Backdate {
        if url.starts_with("sqlite:") {
            Backdate::Sqlite(sqlx::SqlitePool::connect(url).await.unwrap())
        } else {
            Backdate::Postgres(sqlx::PgPool::connect(url).await.unwrap())
        }
    }

    async fn set(&self, table: &str, column: &str, key: &str, id: PersonId, at: DateTime<Utc>) {
        match self {
            Backdate::Sqlite(pool) => {
                sqlx::query(&format!("UPDATE {table} SET {column} = ? WHERE {key} = ?"))
                    .bind(at.timestamp_micros())
                    .bind(id.to_string())
                    .execute(pool)
                    .await
                    .unwrap();
            }
            Backdate::Postgres(pool) => {
                sqlx::query(&format!(
                    "UPDATE {table} SET {column} = $1 WHERE {key} = $2"
                ))
                .bind(at)
                .bind(id)
                .execute(pool)
                .await
                .unwrap();
            }
        }
    }

    async fn close(self) {
        match self {
            Backdate::Sqlite(pool) => pool.close().await,
            Backdate::Postgres(pool) => pool.close().await,
        }
    }
}

/// The URL of the store a service runs on.
fn store_url(service: &Service) -> String {
    match &service.database {
        Some(database) => database.url.clone(),
        None => format!("sqlite://{}", service.data_dir().join("ewall.db").display()),
    }
}

/// A service on `backend`, its store holding the scenario.
async fn service_with_scenario(backend: Backend) -> (Service, Loaded) {
    let data = scenario();
    let intervals = data.report_interval_s.clone();
    let adjust = move |config: &mut ewall::config::Config| {
        for (name, level) in [
            ("strict", &mut config.levels.strict),
            ("normal", &mut config.levels.normal),
            ("lenient", &mut config.levels.lenient),
        ] {
            level.report_interval_s = intervals[name];
            level.offline_after_s = 3 * intervals[name];
        }
        config.fence.default_timezone = "Asia/Shanghai".into();
    };
    let mut service = Service::start_on_with(backend, adjust.clone()).await;
    service.stop().await;
    let url = store_url(&service);
    let store = ewall::store::open(&url).await.unwrap();
    let db = Backdate::open(&url).await;
    let loaded = load(store.as_ref(), &data, &db).await;
    db.close().await;
    drop(store);
    service.restart_with(adjust).await;
    (service, loaded)
}

fn kind(record: &Value, kind: &str) -> Value {
    record["alerts"]["by_kind"][kind].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_month_of_the_scenario_gives_the_records_and_figures_worked_out_by_hand() {
    records_and_figures(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_month_of_the_scenario_on_postgres_gives_the_same_records_and_figures() {
    if let Some(backend) = Backend::postgres("reports_month").await {
        records_and_figures(backend).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_level_review_suggests_and_only_an_officer_applies_it() {
    level_review(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_level_review_on_postgres_suggests_and_only_an_officer_applies_it() {
    if let Some(backend) = Backend::postgres("reports_review").await {
        level_review(backend).await;
    }
}

async fn records_and_figures(backend: Backend) {
    let (mut service, loaded) = service_with_scenario(backend).await;
    let [a, b, c] = ["A", "B", "C"].map(|k| loaded.persons[k]);
    let api = &service;
    let record = |person: PersonId, month: &str| {
        let path = format!("/api/v1/persons/{person}/record?month={month}");
        async move { api.get(&path).await }
    };

    // The officer's entries, through the API: a warning citing two of A's alerts, praise for
    // C. Praise cites nothing; cited alerts must be the person's own and exist.
    let cited = [loaded.alerts["a3"], loaded.alerts["a6"]];
    let warning = service
        .post(
            &format!("/api/v1/persons/{a}/assessments"),
            json!({"kind": "warning", "reason": "left home twice", "month": "2026-01",
                   "alert_ids": cited}),
        )
        .await;
    assert_eq!(warning["actor"]["label"], "tests");
    assert!(warning["actor"]["token_id"].is_string());
    service
        .post(
            &format!("/api/v1/persons/{c}/assessments"),
            json!({"kind": "praise", "reason": "every check-in on time", "month": "2026-01"}),
        )
        .await;
    for (person, body) in [
        (
            a,
            json!({"kind": "praise", "reason": "r", "month": "2026-01", "alert_ids": [cited[0]]}),
        ),
        (
            c,
            json!({"kind": "warning", "reason": "r", "month": "2026-01", "alert_ids": [cited[0]]}),
        ),
        (
            a,
            json!({"kind": "warning", "reason": "r", "month": "2026-01", "alert_ids": [new_id()]}),
        ),
        (
            a,
            json!({"kind": "reward", "reason": "r", "month": "2099-01"}),
        ),
        (
            a,
            json!({"kind": "medal", "reason": "r", "month": "2026-01"}),
        ),
        (
            a,
            json!({"kind": "reward", "reason": "", "month": "2026-01"}),
        ),
        (
            a,
            json!({"kind": "reward", "reason": "r", "month": "2026-13"}),
        ),
    ] {
        let (status, problem) = service
            .call(
                Method::POST,
                &format!("/api/v1/persons/{person}/assessments"),
                Some(body.clone()),
            )
            .await;
        assert_eq!(status, 422, "{body}: {problem}");
    }
    let listed = service
        .get(&format!("/api/v1/persons/{a}/assessments"))
        .await;
    assert_eq!(listed["assessments"].as_array().unwrap().len(), 1);

    // A, strict (one fix an hour), supervised all 31 days of January in Shanghai time
    // (2025-12-31T16:00Z to 2026-01-31T16:00Z): 744 fixes expected. The gap of
    // 2025-12-31 11:00-18:00Z loses the fixes of 16:00 and 17:00 inside January, the gap of
    // 2026-01-10 00:00-12:00Z those of 01:00 to 11:00: 744 - 2 - 11 = 731. Lost supervision:
    // the episode open from 14:00Z on 31 December until 18:00Z counts its 2 hours inside
    // January, the one of 10 January 03:00Z to 12:00Z its 9: 11 hours.
    let ra = record(a, "2026-01").await;
    assert_eq!(ra["timezone"], "Asia/Shanghai");
    assert_eq!(ra["from"], "2025-12-31T16:00:00Z");
    assert_eq!(ra["to"], "2026-01-31T16:00:00Z");
    assert_eq!(ra["level"], "strict");
    assert_eq!(ra["supervised_days"], 31.0);
    assert_eq!(ra["reporting"]["fixes_expected"], 744);
    assert_eq!(ra["reporting"]["fixes_received"], 731);
    assert_eq!(ra["reporting"]["rate"], 0.9825);
    assert_eq!(ra["offline_hours"], 11.0);
    // Alerts in January: the return of 31 December 18:00Z (2 a.m. on 1 January in Shanghai),
    // three zone exits (warned, escalated, a false alarm) and a repeat of the last, the
    // offline of 10 January and its return, a curfew, two missed check-ins (one warned, one
    // still open). The offline of 31 December 14:00Z is December's.
    assert_eq!(ra["alerts"]["total"], 9);
    assert_eq!(ra["alerts"]["repeats"], 1);
    assert_eq!(ra["alerts"]["false_alarms"], 1);
    assert_eq!(ra["alerts"]["undisposed"], 1);
    assert_eq!(
        kind(&ra, "zone_exit"),
        json!({"count": 3, "false_alarm": 1, "warned": 1, "escalated": 1,
               "returned_by_itself": 0, "undisposed": 0})
    );
    assert_eq!(kind(&ra, "returned")["returned_by_itself"], 2);
    assert_eq!(kind(&ra, "offline")["count"], 1);
    assert_eq!(kind(&ra, "curfew")["returned_by_itself"], 1);
    assert_eq!(
        kind(&ra, "missed_checkin"),
        json!({"count": 2, "false_alarm": 0, "warned": 1, "escalated": 0,
               "returned_by_itself": 0, "undisposed": 1})
    );
    // Breaches disposed as real: two zone exits and the curfew.
    assert_eq!(ra["confirmed_breaches"], 3);
    assert_eq!(ra["leaves"], json!({"taken": 1, "overdue": 0}));
    assert_eq!(ra["checkins"], json!({"made": 2, "missed": 2}));
    // The command of 20 December is December's.
    assert_eq!(
        ra["commands"],
        json!({"queued": 2, "delivered": 2, "acknowledged": 1, "failed": 0, "expired": 1})
    );
    assert_eq!(ra["assessments"][0]["kind"], "warning");
    assert_eq!(ra["assessments"][0]["alert_ids"], json!(cited));

    // December for A: enrolled 1 December 00:00Z, 8 hours into the month in Shanghai, so
    // 736 of its 744 hours; the gap loses 12:00 to 15:00Z: 732. Two hours offline.
    let ra_dec = record(a, "2025-12").await;
    assert_eq!(ra_dec["supervised_days"], 30.667);
    assert_eq!(ra_dec["reporting"]["fixes_expected"], 736);
    assert_eq!(ra_dec["reporting"]["fixes_received"], 732);
    assert_eq!(ra_dec["reporting"]["rate"], 0.9946);
    assert_eq!(ra_dec["offline_hours"], 2.0);
    assert_eq!(ra_dec["alerts"]["total"], 1);
    assert_eq!(ra_dec["commands"]["queued"], 1);
    assert!(ra_dec["assessments"].as_array().unwrap().is_empty());

    // B, lenient (one fix every 4 hours), released at midnight of 22 January in Shanghai:
    // 21 days, 126 fixes expected, 6 lost in the gap of 2 January 04:00Z to 3 January 08:00Z.
    // Offline from 2 January 16:00Z to the return at 3 January 08:00Z: 16 hours. The leave of
    // 6 January ended with the person out (leave overdue, warned); the cancelled leave does
    // not count. Three check-ins, two missed (one a false alarm).
    let rb = record(b, "2026-01").await;
    assert_eq!(
        rb["name"],
        Value::Null,
        "released: the name is gone with the person"
    );
    assert_eq!(rb["level"], "lenient");
    assert_eq!(rb["supervised_days"], 21.0);
    assert_eq!(rb["reporting"]["fixes_expected"], 126);
    assert_eq!(rb["reporting"]["fixes_received"], 120);
    assert_eq!(rb["reporting"]["rate"], 0.9524);
    assert_eq!(rb["offline_hours"], 16.0);
    assert_eq!(rb["alerts"]["total"], 5);
    assert_eq!(rb["alerts"]["false_alarms"], 1);
    assert_eq!(rb["alerts"]["undisposed"], 3);
    assert_eq!(rb["confirmed_breaches"], 1);
    assert_eq!(rb["leaves"], json!({"taken": 1, "overdue": 1}));
    assert_eq!(rb["checkins"], json!({"made": 3, "missed": 2}));

    // C, normal (every 2 hours), all month: 372 expected, 2 lost; nothing else.
    let rc = record(c, "2026-01").await;
    assert_eq!(rc["reporting"]["fixes_received"], 370);
    assert_eq!(rc["reporting"]["rate"], 0.9946);
    assert_eq!(rc["alerts"]["total"], 0);
    assert_eq!(rc["offline_hours"], 0.0);

    // Recomputed, the same numbers.
    assert_eq!(record(a, "2026-01").await, ra);
    assert_eq!(record(b, "2026-01").await, rb);

    // The same record as CSV, by Accept or by format=csv.
    for (path, accept) in [
        (
            format!("/api/v1/persons/{a}/record?month=2026-01"),
            "text/csv",
        ),
        (
            format!("/api/v1/persons/{a}/record?month=2026-01&format=csv"),
            "*/*",
        ),
    ] {
        let response = service
            .client
            .get(service.url(&path))
            .bearer_auth(&service.admin_token)
            .header("accept", accept)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert!(response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv"));
        let csv = response.text().await.unwrap();
        assert!(csv.starts_with("section,item,value\r\n"), "{csv}");
        for row in [
            "reporting,fixes_received,731",
            "offline,hours,11",
            "alerts.zone_exit,false_alarm,1",
            "breaches,confirmed,3",
        ] {
            assert!(csv.contains(&format!("{row}\r\n")), "{row} in {csv}");
        }
    }

    // The county, January beside December (Shanghai months):
    // January: A 31 + B 21 + C 31 = 83 person-days. Enrolments: C, whose new order started on
    // 26 January with none in force before it; not A, whose renewal started on 1 January 00:00
    // as the first order ended. Releases: B, whose order was
    // ended early on 5 January (and who was deleted on the 22nd, no second release), and C,
    // whose order ran out on 21 January (the new order came five days later); not A, whose
    // order ran out on 1 January 00:00 but was renewed from that moment. Alerts (repeats
    // left out): A's 9 and B's 5. Disposed: A's a2 (1800 s), a3 (7200), a10 (3600), a4
    // (3600), a5 (3600), a6 (14400), a7 (3600), a8 (5400), B's b3 (3600), b4 (600): ten, two
    // false alarms, a mean of 47400 / 10 = 4740 s. Lost supervision 11 + 16 = 27 hours.
    // December: A 736 h + B 21 d + C 31 d = 82.667 person-days; A and B enrolled (their first
    // orders started on 1 and 11 December; C's began in November); no order
    // ended (A's first ran out at the month's end, which belongs to January); one alert
    // (A's offline, disposed after 3600 s); two hours lost.
    let county = service.get("/api/v1/stats/county?month=2026-01").await;
    assert_eq!(county["timezone"], "Asia/Shanghai");
    let jan = &county["month"];
    assert_eq!(jan["month"], "2026-01");
    assert_eq!(
        jan["persons_by_level"],
        json!({"strict": 1, "normal": 1, "lenient": 1})
    );
    assert_eq!(jan["persons"], 3);
    assert_eq!(jan["enrolments"], 1);
    assert_eq!(jan["releases"], 2);
    assert_eq!(jan["person_days"], 83.0);
    assert_eq!(
        jan["alerts_by_kind"],
        json!({"curfew": 1, "leave_overdue": 1, "missed_checkin": 4, "offline": 2,
               "returned": 3, "zone_exit": 3})
    );
    // n × 100 / 83.
    assert_eq!(
        jan["alerts_per_100_person_days"],
        json!({"curfew": 1.205, "leave_overdue": 1.205, "missed_checkin": 4.819,
               "offline": 2.41, "returned": 3.614, "zone_exit": 3.614})
    );
    assert_eq!(jan["disposed"], 10);
    assert_eq!(jan["false_alarms"], 2);
    assert_eq!(jan["false_alarm_share"], 0.2);
    assert_eq!(jan["mean_seconds_to_disposition"], 4740.0);
    assert_eq!(jan["lost_supervision_hours"], 27.0);
    let dec = &county["previous"];
    assert_eq!(dec["month"], "2025-12");
    assert_eq!(dec["persons"], 3);
    assert_eq!(dec["enrolments"], 2);
    assert_eq!(dec["releases"], 0);
    assert_eq!(dec["person_days"], 82.667);
    assert_eq!(dec["alerts_by_kind"], json!({"offline": 1}));
    assert_eq!(dec["alerts_per_100_person_days"], json!({"offline": 1.21}));
    assert_eq!(dec["false_alarm_share"], 0.0);
    assert_eq!(dec["mean_seconds_to_disposition"], 3600.0);
    assert_eq!(dec["lost_supervision_hours"], 2.0);
    assert_eq!(
        service.get("/api/v1/stats/county?month=2026-01").await,
        county
    );

    // Bad months are refused.
    for path in [
        format!("/api/v1/persons/{a}/record?month=2026-1"),
        format!("/api/v1/persons/{a}/record"),
        format!("/api/v1/persons/{a}/record?month=2026-01&format=pdf"),
        "/api/v1/stats/county?month=January".to_owned(),
        format!("/api/v1/persons/{a}/level-review?month=2026-00"),
    ] {
        let (status, _) = service.call(Method::GET, &path, None).await;
        assert_eq!(status, 400, "{path}");
    }
    let (status, _) = service
        .call(
            Method::GET,
            &format!("/api/v1/persons/{}/record?month=2026-01", new_id()),
            None,
        )
        .await;
    assert_eq!(status, 404);
    service.stop().await;
}

async fn level_review(backend: Backend) {
    let (mut service, loaded) = service_with_scenario(backend).await;
    let [a, c] = ["A", "C"].map(|k| loaded.persons[k]);

    // A: three confirmed breaches in January make the suggestion strict, which A already is.
    let review = service
        .get(&format!("/api/v1/persons/{a}/level-review?month=2026-01"))
        .await;
    assert_eq!(review["current_level"], "strict");
    assert_eq!(review["suggested_level"], "strict");
    assert_eq!(review["change"], false);
    assert!(
        review["reasons"][0]
            .as_str()
            .unwrap()
            .contains("3 confirmed breaches"),
        "{review}"
    );

    // C: November, December and January clean (reporting at least 0.9, no breach, no missed
    // check-in, praise only): one level lighter.
    let review = service
        .get(&format!("/api/v1/persons/{c}/level-review?month=2026-01"))
        .await;
    assert_eq!(review["current_level"], "normal");
    assert_eq!(review["suggested_level"], "lenient");
    assert_eq!(review["change"], true);
    let months: Vec<&str> = review["months"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["month"].as_str().unwrap())
        .collect();
    assert_eq!(months, ["2026-01", "2025-12", "2025-11"]);
    assert!(review["months"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m["clean"] == true));
    // In December, C was not yet clean enough for a review of December: October had no
    // supervision.
    let december = service
        .get(&format!("/api/v1/persons/{c}/level-review?month=2025-12"))
        .await;
    assert_eq!(december["change"], false);

    // The review changed nothing; the officer applies it with the person's PATCH, which is
    // recorded in the actions chain.
    let before = service
        .get(&format!("/api/v1/persons/{c}/record?month=2026-01"))
        .await;
    assert_eq!(
        service.get(&format!("/api/v1/persons/{c}")).await["level"],
        "normal"
    );
    let (status, person) = service
        .call(
            Method::PATCH,
            &format!("/api/v1/persons/{c}"),
            Some(json!({"level": "lenient"})),
        )
        .await;
    assert_eq!(status, 200, "{person}");
    let store = ewall::store::open(&store_url(&service)).await.unwrap();
    let actions = store
        .person_records(
            ewall::store::ChainTable::Actions,
            c,
            t("2000-01-01T00:00:00Z"),
            t("2100-01-01T00:00:00Z"),
            0,
            100,
        )
        .await
        .unwrap();
    let update = actions
        .iter()
        .map(|r| serde_json::from_slice::<Value>(&r.canonical).unwrap())
        .find(|v| v["kind"] == "person.update")
        .expect("the level change is an action");
    assert!(update["actor"].as_str().unwrap().starts_with("token:"));
    assert!(update["detail"]
        .as_str()
        .unwrap()
        .contains("\"level\":\"lenient\""));
    // January's record is January's: the change made now does not rewrite it.
    assert_eq!(
        service
            .get(&format!("/api/v1/persons/{c}/record?month=2026-01"))
            .await,
        before
    );
    let after = service
        .get(&format!("/api/v1/persons/{c}/level-review?month=2026-01"))
        .await;
    assert_eq!(after["current_level"], "lenient");
    assert_eq!(after["suggested_level"], "lenient");
    service.stop().await;
}

//! The audit trail from the command line, on SQLite and (with `EWALL_TEST_PG_URL`) PostgreSQL:
//! `ewall audit verify` passes on an untouched store; altering, deleting or inserting a
//! position, an alert or an action behind ewall's back makes it exit non-zero and name the
//! record; after retention what remains still verifies and a tampered checkpoint fails;
//! `ewall audit export` writes records whose hashes check without ewall.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use common::pg::TestDatabase;
use ewall::model::{
    new_id, Alert, AlertKind, AlertPosition, AlertState, BorderCheck, Checkin, CheckinMethod,
    CommandStatus, Crs, DeviceCommand, Fix, LeavePermit, MonitoringOrder, PersonId, PositionSource,
    Severity, SupervisionLevel, ZoneKind, ZoneWifi,
};
use ewall::store::{NewPerson, Store, ZoneRecord};
use serde_json::Value;
use sha2::{Digest, Sha256};

const IMEI: &str = "864717003283581";
const KEY: &str = "a checkpoint key for the tests";

/// A store on one backend, its config file, and raw SQL access for tampering.
struct Target {
    store: Arc<dyn Store>,
    sql: Sql,
    config: PathBuf,
    _dir: tempfile::TempDir,
    _database: Option<TestDatabase>,
}

enum Sql {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl Sql {
    /// Runs `sqlite` or `postgres`, whichever fits the backend.
    async fn run(&self, sqlite: &str, postgres: &str) {
        match self {
            Sql::Sqlite(pool) => {
                sqlx::query(sqlite).execute(pool).await.unwrap();
            }
            Sql::Postgres(pool) => {
                sqlx::query(postgres).execute(pool).await.unwrap();
            }
        }
    }

    /// The text of the first column of the first row.
    async fn text(&self, sql: &str) -> String {
        match self {
            Sql::Sqlite(pool) => sqlx::query_scalar::<_, String>(sql)
                .fetch_one(pool)
                .await
                .unwrap(),
            Sql::Postgres(pool) => sqlx::query_scalar::<_, String>(sql)
                .fetch_one(pool)
                .await
                .unwrap(),
        }
    }
}

async fn on_sqlite() -> Target {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("audit.db").display());
    let store = ewall::store::open(&url).await.unwrap();
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let config = write_config(&dir, &url);
    Target {
        store,
        sql: Sql::Sqlite(pool),
        config,
        _dir: dir,
        _database: None,
    }
}

async fn on_postgres(test: &str) -> Option<Target> {
    let database = TestDatabase::create(test).await?;
    let dir = tempfile::tempdir().unwrap();
    let store = ewall::store::open(&database.url).await.unwrap();
    let pool = sqlx::PgPool::connect(&database.url).await.unwrap();
    let config = write_config(&dir, &database.url);
    Some(Target {
        store,
        sql: Sql::Postgres(pool),
        config,
        _dir: dir,
        _database: Some(database),
    })
}

fn write_config(dir: &tempfile::TempDir, url: &str) -> PathBuf {
    let path = dir.path().join("ewall.toml");
    std::fs::write(
        &path,
        format!(
            "data_dir = {:?}\n[store]\nurl = {url:?}\n[audit]\ncheckpoint_key = {KEY:?}\n",
            dir.path().join("data")
        ),
    )
    .unwrap();
    path
}

/// `ewall audit <args> --config F`: whether it exited zero, and the JSON it printed.
fn audit(target: &Target, args: &[&str]) -> (bool, Value, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_ewall"))
        .arg("audit")
        .args(args)
        .arg("--config")
        .arg(&target.config)
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    let summary = stdout
        .lines()
        .next()
        .map(|l| serde_json::from_str(l).unwrap())
        .unwrap_or(Value::Null);
    (output.status.success(), summary, stderr)
}

fn verify(target: &Target) -> (bool, Value) {
    let (ok, summary, _) = audit(target, &["verify"]);
    (ok, summary)
}

/// `ewall audit export --person` from `from` on: the file's lines, its header first.
fn export(target: &Target, person: PersonId, from: &str) -> Vec<Value> {
    let out = target.config.with_file_name("export.jsonl");
    let (ok, _, stderr) = audit(
        target,
        &[
            "export",
            "--person",
            &person.to_string(),
            "--from",
            from,
            "--to",
            "2100-01-01T00:00:00Z",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert!(ok, "{stderr}");
    std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn fix(person: PersonId, time: DateTime<Utc>, lat: f64) -> Fix {
    Fix {
        device_id: IMEI.into(),
        person_id: person,
        time,
        received_at: time + Duration::seconds(2),
        lat,
        lon: 112.314_567_8,
        valid: true,
        accuracy_m: Some(8.5),
        speed_kmh: Some(4.0),
        course: None,
        altitude_m: None,
        satellites: Some(9),
        hdop: None,
        source: PositionSource::Gps,
        battery_pct: Some(80),
        archived: false,
        integrity_mismatch: false,
        protocol: "gt06".into(),
        wifi_bssids: Vec::new(),
        clock_skew: false,
        implausible: None,
        // A GT06 position frame's bytes stand for the frame it came in.
        raw: bytes::Bytes::from_static(&[0x78, 0x78, 0x1f, 0x12, 0x0d, 0x0a]),
    }
}

fn alert(person: PersonId, kind: AlertKind, time: DateTime<Utc>) -> Alert {
    Alert {
        id: new_id(),
        seq: 0,
        kind,
        person_id: person,
        device_id: Some(IMEI.into()),
        zone_id: None,
        severity: Severity::High,
        time,
        raised_at: time + Duration::seconds(1),
        position: Some(AlertPosition {
            lat: 25.5,
            lon: 112.3,
            accuracy_m: Some(10.0),
        }),
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
    }
}

fn at(minute: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 8, 0, 0).unwrap() + Duration::minutes(minute)
}

/// A person with a device and a zone, five positions (one of them resent), two alerts, one of
/// them acknowledged: records in all three kinds of chain.
async fn seed(store: &dyn Store) -> PersonId {
    let person = store
        .create_person(NewPerson {
            name: "Li Wei".into(),
            level: SupervisionLevel::Normal,
            timezone: "Asia/Shanghai".into(),
        })
        .await
        .unwrap();
    store.create_device(IMEI, person.id).await.unwrap();
    let zone = ZoneRecord {
        id: new_id(),
        name: "home".into(),
        kind: ZoneKind::Inclusion,
        source_crs: Crs::Wgs84,
        radius_m: Some(500.0),
        geometry: r#"{"type":"Point","coordinates":[112.3,25.5]}"#.into(),
        wifi: ZoneWifi::default(),
        scope: Default::default(),
        persons: Vec::new(),
        schedule: None,
        created_at: Utc::now(),
    };
    store.create_zone(&zone).await.unwrap();
    store.set_person_zones(person.id, &[zone.id]).await.unwrap();
    let fixes: Vec<Fix> = (0..5)
        .map(|i| fix(person.id, at(i), 25.5 + f64::from(i as u8) / 1000.0))
        .collect();
    store.commit(&fixes[..3], Vec::new()).await.unwrap();
    // The third is resent with the next two: stored once, and the chain goes on unbroken.
    let alerts = vec![
        alert(person.id, AlertKind::ZoneExit, at(3)),
        alert(person.id, AlertKind::Sos, at(4)),
    ];
    store.commit(&fixes[2..], alerts).await.unwrap();
    let first = store
        .alerts(ewall::store::AlertQuery {
            after: 0,
            person_id: Some(person.id),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap()[0]
        .id;
    store
        .record_alert_action(
            first,
            ewall::store::AlertActionRequest {
                step: ewall::store::AlertStep::Acknowledge,
                actor: ewall::model::Actor {
                    token_id: Some(new_id()),
                    label: Some("night desk".into()),
                },
                note: Some("called".into()),
                at: Utc::now(),
            },
        )
        .await
        .unwrap();
    person.id
}

fn broken(summary: &Value) -> &Value {
    assert_eq!(summary["ok"], false, "{summary}");
    &summary["broken"]
}

async fn untouched_store_verifies(target: Target) {
    seed(target.store.as_ref()).await;
    let (ok, summary) = verify(&target);
    assert!(ok, "{summary}");
    assert_eq!(summary["ok"], true);
    // 5 positions, 2 alerts, 5 actions (person, device, zone, assignment, alert state).
    assert_eq!(summary["records_checked"], 12, "{summary}");
    let (ok, summary, _) = audit(&target, &["verify", "--device", IMEI]);
    assert!(ok, "{summary}");
    assert_eq!(
        summary["records_checked"], 7,
        "positions and alerts of the device"
    );
    let (ok, summary, _) = audit(
        &target,
        &[
            "verify",
            "--device",
            IMEI,
            "--from",
            "2026-03-01T08:01:00Z",
            "--to",
            "2026-03-01T08:02:00Z",
        ],
    );
    assert!(ok, "{summary}");
    assert_eq!(summary["records_checked"], 2, "positions in the window");
}

async fn an_altered_position_is_named(target: Target) {
    seed(target.store.as_ref()).await;
    let id = target
        .sql
        .text("SELECT CAST(id AS TEXT) FROM positions WHERE chain_n = 3")
        .await;
    target
        .sql
        .run(
            "UPDATE positions SET lat = lat + 0.0001 WHERE chain_n = 3",
            "UPDATE positions SET lat = lat + 0.0001 WHERE chain_n = 3",
        )
        .await;
    let (ok, summary) = verify(&target);
    assert!(!ok);
    let named = broken(&summary);
    assert_eq!(named["table"], "positions");
    assert_eq!(named["id"], id.as_str());
    assert_eq!(named["n"], 3);
    assert!(named["reason"].as_str().unwrap().contains("altered"));
}

async fn a_deleted_position_is_named(target: Target) {
    seed(target.store.as_ref()).await;
    target
        .sql
        .run(
            "DELETE FROM positions WHERE chain_n = 2",
            "DELETE FROM positions WHERE chain_n = 2",
        )
        .await;
    let (ok, summary) = verify(&target);
    assert!(!ok);
    let named = broken(&summary);
    assert_eq!(named["table"], "positions");
    assert_eq!(named["chain"], format!("positions:{IMEI}"));
    assert_eq!(named["n"], 2);
    assert!(named["reason"].as_str().unwrap().contains("missing"));
    // The newest one, deleted from the end of the chain, is missed against its head.
    let target2 = target;
    target2
        .sql
        .run(
            "DELETE FROM positions WHERE chain_n >= 2",
            "DELETE FROM positions WHERE chain_n >= 2",
        )
        .await;
    let (ok, summary) = verify(&target2);
    assert!(!ok);
    assert_eq!(broken(&summary)["n"], 2);
}

async fn an_inserted_position_is_named(target: Target) {
    seed(target.store.as_ref()).await;
    // A copy of record 4, a minute later, claiming its place and hash.
    let columns = "device_id, person_id, received_at, lat, lon, valid, accuracy_m, source, \
                   archived, integrity_mismatch, protocol, clock_skew, raw, chain_n, hash";
    target
        .sql
        .run(
            &format!(
                "INSERT INTO positions (time, {columns}) SELECT time + 60000000, {columns} \
                 FROM positions WHERE chain_n = 4"
            ),
            &format!(
                "INSERT INTO positions (time, {columns}) SELECT time + interval '1 minute', \
                 {columns} FROM positions WHERE chain_n = 4"
            ),
        )
        .await;
    let (ok, summary) = verify(&target);
    assert!(!ok);
    let named = broken(&summary);
    assert_eq!(named["table"], "positions");
    assert!(
        named["reason"].as_str().unwrap().contains("inserted"),
        "{named}"
    );
    // One without any hash is named too.
    target
        .sql
        .run(
            "DELETE FROM positions WHERE id = (SELECT MAX(id) FROM positions)",
            "DELETE FROM positions WHERE id = (SELECT MAX(id) FROM positions)",
        )
        .await;
    assert!(verify(&target).0, "back to the untouched store");
    target
        .sql
        .run(
            &format!(
                "INSERT INTO positions (time, {columns}) SELECT time + 60000000, device_id, \
                 person_id, received_at, lat, lon, valid, accuracy_m, source, archived, \
                 integrity_mismatch, protocol, clock_skew, raw, NULL, NULL \
                 FROM positions WHERE chain_n = 5"
            ),
            &format!(
                "INSERT INTO positions (time, {columns}) SELECT time + interval '1 minute', \
                 device_id, person_id, received_at, lat, lon, valid, accuracy_m, source, \
                 archived, integrity_mismatch, protocol, clock_skew, raw, NULL, NULL \
                 FROM positions WHERE chain_n = 5"
            ),
        )
        .await;
    let id = target
        .sql
        .text("SELECT CAST(MAX(id) AS TEXT) FROM positions")
        .await;
    let (ok, summary) = verify(&target);
    assert!(!ok);
    assert_eq!(broken(&summary)["table"], "positions");
    assert_eq!(broken(&summary)["id"], id.as_str());
}

async fn a_changed_alert_is_named(target: Target) {
    let person = seed(target.store.as_ref()).await;
    let id = target
        .sql
        .text("SELECT CAST(id AS TEXT) FROM alerts WHERE chain_n = 1")
        .await;
    target
        .sql
        .run(
            "UPDATE alerts SET late = NOT late WHERE chain_n = 1",
            "UPDATE alerts SET late = NOT late WHERE chain_n = 1",
        )
        .await;
    let (ok, summary) = verify(&target);
    assert!(!ok);
    assert_eq!(broken(&summary)["table"], "alerts");
    assert_eq!(broken(&summary)["id"], id.as_str());
    target
        .sql
        .run(
            "UPDATE alerts SET late = NOT late WHERE chain_n = 1",
            "UPDATE alerts SET late = NOT late WHERE chain_n = 1",
        )
        .await;
    assert!(verify(&target).0, "changed back");
    // The newest alert deleted.
    target
        .sql
        .run(
            "DELETE FROM alerts WHERE chain_n = 2",
            "DELETE FROM alerts WHERE chain_n = 2",
        )
        .await;
    let (ok, summary) = verify(&target);
    assert!(!ok);
    assert_eq!(broken(&summary)["table"], "alerts");
    assert_eq!(broken(&summary)["n"], 2);
    assert!(broken(&summary)["reason"]
        .as_str()
        .unwrap()
        .contains("missing"));
    // An alert made up behind ewall's back.
    let forged = new_id();
    target
        .sql
        .run(
            "UPDATE audit_heads SET n = 1, hash = (SELECT hash FROM alerts WHERE chain_n = 1) \
             WHERE chain = 'alerts'",
            "UPDATE audit_heads SET n = 1, hash = (SELECT hash FROM alerts WHERE chain_n = 1) \
             WHERE chain = 'alerts'",
        )
        .await;
    assert!(
        verify(&target).0,
        "the deletion covered up by moving the head back"
    );
    target
        .sql
        .run(
            &format!(
                "INSERT INTO alerts (seq, id, kind, person_id, severity, time, raised_at, state, \
                 late) VALUES (99999, '{forged}', 'sos', '{person}', 'high', 0, 0, 'open', 0)"
            ),
            &format!(
                "INSERT INTO alerts (seq, id, kind, person_id, severity, time, raised_at, state, \
                 late) VALUES (99999, '{forged}', 'sos', '{person}', 'high', now(), now(), \
                 'open', false)"
            ),
        )
        .await;
    let (ok, summary) = verify(&target);
    assert!(!ok);
    assert_eq!(broken(&summary)["table"], "alerts");
    assert_eq!(broken(&summary)["id"], forged.to_string());
}

async fn a_changed_action_is_named(target: Target) {
    seed(target.store.as_ref()).await;
    let id = target
        .sql
        .text("SELECT CAST(id AS TEXT) FROM audit_actions WHERE chain_n = 2")
        .await;
    target
        .sql
        .run(
            "UPDATE audit_actions SET actor = 'someone else' WHERE chain_n = 2",
            "UPDATE audit_actions SET actor = 'someone else' WHERE chain_n = 2",
        )
        .await;
    let (ok, summary) = verify(&target);
    assert!(!ok);
    assert_eq!(broken(&summary)["table"], "audit_actions");
    assert_eq!(broken(&summary)["id"], id.as_str());
    target
        .sql
        .run(
            "DELETE FROM audit_actions WHERE chain_n = 2",
            "DELETE FROM audit_actions WHERE chain_n = 2",
        )
        .await;
    let (ok, summary) = verify(&target);
    assert!(!ok);
    assert_eq!(broken(&summary)["table"], "audit_actions");
    assert_eq!(broken(&summary)["n"], 2);
    // An action put in the gap, with a made-up hash.
    let forged = new_id();
    target
        .sql
        .run(
            &format!(
                "INSERT INTO audit_actions (chain_n, id, time, actor, kind, subject, detail, \
                 hash) VALUES (2, '{forged}', 0, 'cli', 'token.revoke', 'x', '{{}}', \
                 zeroblob(32))"
            ),
            &format!(
                "INSERT INTO audit_actions (chain_n, id, time, actor, kind, subject, detail, \
                 hash) VALUES (2, '{forged}', now(), 'cli', 'token.revoke', 'x', '{{}}', \
                 decode(repeat('00', 32), 'hex'))"
            ),
        )
        .await;
    let (ok, summary) = verify(&target);
    assert!(!ok);
    assert_eq!(broken(&summary)["table"], "audit_actions");
    assert_eq!(broken(&summary)["id"], forged.to_string());
}

async fn retention_keeps_what_remains_verifiable(target: Target) {
    let store = target.store.as_ref();
    let person = seed(store).await;
    let now = Utc::now();
    let days_ago = |d: i64| now - Duration::days(d);
    // Two old fixes, a recent one, then a late one from the old days: the late one comes
    // after the recent one in the device's chain, so it is kept until the recent one goes.
    for (time, lat) in [
        (days_ago(40), 25.6),
        (days_ago(35), 25.61),
        (days_ago(1), 25.62),
        (days_ago(38), 25.63),
    ] {
        store
            .commit(&[fix(person, time, lat)], Vec::new())
            .await
            .unwrap();
    }
    let outcome = ewall::audit::apply_retention(store, 30, KEY.as_bytes(), now)
        .await
        .unwrap();
    assert_eq!(outcome.checkpoints, 1, "{outcome:?}");
    // The seeded five (March 2026) and the two old ones went; the recent and the late stay.
    assert_eq!(outcome.positions_dropped, 7, "{outcome:?}");
    let kept = store
        .track(person, now - Duration::days(400), now, 100)
        .await
        .unwrap();
    assert_eq!(kept.len(), 2, "{kept:?}");
    let (ok, summary) = verify(&target);
    assert!(ok, "{summary}");
    assert_eq!(summary["checkpoints"], 1);
    // Running again changes nothing and still verifies.
    let again = ewall::audit::apply_retention(store, 30, KEY.as_bytes(), now)
        .await
        .unwrap();
    assert_eq!(again.positions_dropped, 0);
    assert!(verify(&target).0);
    // A checkpoint moved to hide one more deleted record is detected.
    target
        .sql
        .run(
            "DELETE FROM positions WHERE chain_n = 8",
            "DELETE FROM positions WHERE chain_n = 8",
        )
        .await;
    target
        .sql
        .run(
            "UPDATE audit_checkpoints SET n = n + 1",
            "UPDATE audit_checkpoints SET n = n + 1",
        )
        .await;
    let (ok, summary) = verify(&target);
    assert!(!ok);
    assert_eq!(broken(&summary)["table"], "audit_checkpoints");
    assert!(broken(&summary)["reason"]
        .as_str()
        .unwrap()
        .contains("signature"));
}

async fn an_export_checks_without_ewall(target: Target) {
    let person = seed(target.store.as_ref()).await;
    let mut lines = export(&target, person, "2026-01-01T00:00:00Z").into_iter();
    let header = lines.next().unwrap();
    assert_eq!(header["format"], "ewall-audit-export");
    assert_eq!(header["person_id"], person.to_string());
    let records: Vec<Value> = lines.collect();
    let count = |table: &str| records.iter().filter(|r| r["table"] == table).count();
    assert_eq!(count("positions"), 5);
    assert_eq!(count("alerts"), 2);
    // Person, device, assignment and alert state concern the person; the zone does not.
    assert_eq!(count("audit_actions"), 4);
    for record in &records {
        // What the README's Python check does: hash = sha256(prev_hash || canonical).
        let prev = hex::decode(record["prev_hash"].as_str().unwrap()).unwrap();
        let canonical = record["canonical"].as_str().unwrap();
        let mut hasher = Sha256::new();
        hasher.update(&prev);
        hasher.update(canonical.as_bytes());
        assert_eq!(
            hex::encode(hasher.finalize()),
            record["hash"].as_str().unwrap(),
            "{record}"
        );
        assert_eq!(
            record["record"],
            serde_json::from_str::<Value>(canonical).unwrap()
        );
    }
    let first = records.iter().find(|r| r["table"] == "positions").unwrap();
    assert_eq!(
        first["record"]["raw"], "78781f120d0a",
        "the raw frame is exported"
    );
    assert_eq!(first["record"]["lat"], 25.5);
}

/// The person's supervision records and the integration's and operators' other writes, each
/// as the store method the API calls: leave permits (create, cancel, end early), monitoring
/// orders (create, renew, and the service's start and end steps), a check-in, a downlink
/// command, a border hit and a webhook redelivery.
async fn supervision_writes(store: &dyn Store, person: PersonId) {
    use ewall::store::LeaveClosing;
    let zone = store.person_zones(person).await.unwrap()[0];
    let leave = |from: i64| LeavePermit {
        id: new_id(),
        person_id: person,
        from: at(from),
        to: at(from + 60),
        zone_ids: vec![zone],
        reason: "hospital".into(),
        approved_by: "officer 7".into(),
        created_at: at(0),
        cancelled_at: None,
        ended_at: None,
    };
    let (cancelled, ended) = (leave(100), leave(200));
    for l in [&cancelled, &ended] {
        store.create_leave(l).await.unwrap();
    }
    store
        .close_leave(cancelled.id, LeaveClosing::Cancel, at(90))
        .await
        .unwrap();
    store
        .close_leave(ended.id, LeaveClosing::EndEarly, at(230))
        .await
        .unwrap();
    // Closing one already closed changes nothing, and records nothing.
    store
        .close_leave(ended.id, LeaveClosing::EndEarly, at(240))
        .await
        .unwrap();
    let order = |from: i64, days: i64| MonitoringOrder {
        id: new_id(),
        person_id: person,
        ground: "community correction".into(),
        approved_by: "county court".into(),
        from: at(from),
        to: at(from) + Duration::days(days),
        created_at: at(0),
        started_at: None,
        ended_at: None,
    };
    let first = order(0, 30);
    store.create_order(&first).await.unwrap();
    store.create_order(&order(30 * 1440, 60)).await.unwrap();
    store
        .step_order(first.id, ewall::store::OrderStep::Started, at(1))
        .await
        .unwrap();
    store
        .step_order(first.id, ewall::store::OrderStep::Ended, at(2))
        .await
        .unwrap();
    store
        .create_checkin(&Checkin {
            id: new_id(),
            person_id: person,
            time: at(20),
            method: CheckinMethod::Kiosk,
            position: None,
            created_at: at(20),
        })
        .await
        .unwrap();
    store
        .create_command(&DeviceCommand {
            id: new_id(),
            seq: 0,
            device_id: IMEI.into(),
            kind: "locate".into(),
            text: None,
            interval_s: None,
            status: CommandStatus::Pending,
            protocol: None,
            reference: None,
            created_at: at(21),
            expires_at: at(21) + Duration::days(7),
            sent_at: None,
            completed_at: None,
            reply: None,
            error: None,
        })
        .await
        .unwrap();
    let mut hit = alert(person, AlertKind::BorderHit, at(22));
    hit.border = Some(BorderCheck {
        port: "Luohu".into(),
        reference: "BC-2026-0001".into(),
    });
    let (_, raised) = store.raise_border_hit(hit.clone()).await.unwrap();
    assert!(raised);
    // The same check reported again: nothing changes, nothing is recorded.
    let (_, raised) = store
        .raise_border_hit(Alert {
            id: new_id(),
            ..hit
        })
        .await
        .unwrap();
    assert!(!raised);
    let seq = store.last_event_seq().await.unwrap();
    store
        .dead_letter("hook", "webhook:hook", seq, 3, "connection refused")
        .await
        .unwrap();
    assert_eq!(store.request_redelivery("hook", None).await.unwrap(), 1);
    // Nothing dead any more: no change, no action.
    assert_eq!(store.request_redelivery("hook", None).await.unwrap(), 0);
}

/// The action kinds [`supervision_writes`] records, in order.
const SUPERVISION_ACTIONS: [&str; 12] = [
    "leave.create",
    "leave.create",
    "leave.cancel",
    "leave.end",
    "order.create",
    "order.renew",
    "order.start",
    "order.end",
    "checkin.create",
    "command.create",
    "border_hit.report",
    "webhook.redeliver",
];

async fn supervision_and_integration_actions_are_chained(target: Target) {
    let person = seed(target.store.as_ref()).await;
    let before: i64 = target
        .sql
        .text("SELECT CAST(MAX(chain_n) AS TEXT) FROM audit_actions")
        .await
        .parse()
        .unwrap();
    supervision_writes(target.store.as_ref(), person).await;
    // Each write is one action, in the order made, right after the seed's.
    let mut kinds = Vec::new();
    for (i, _) in SUPERVISION_ACTIONS.iter().enumerate() {
        let n = before + 1 + i as i64;
        kinds.push(
            target
                .sql
                .text(&format!(
                    "SELECT kind FROM audit_actions WHERE chain_n = {n}"
                ))
                .await,
        );
    }
    assert_eq!(kinds, SUPERVISION_ACTIONS);
    let count: i64 = target
        .sql
        .text("SELECT CAST(COUNT(*) AS TEXT) FROM audit_actions")
        .await
        .parse()
        .unwrap();
    assert_eq!(count, before + SUPERVISION_ACTIONS.len() as i64, "no more");
    let renewal = target
        .sql
        .text("SELECT detail FROM audit_actions WHERE kind = 'order.renew'")
        .await;
    assert!(renewal.contains("\"renews\""), "{renewal}");
    let (ok, summary) = verify(&target);
    assert!(ok, "{summary}");
    // Tampering with any of them is caught and names it.
    for n in before + 1..=count {
        let id = target
            .sql
            .text(&format!(
                "SELECT CAST(id AS TEXT) FROM audit_actions WHERE chain_n = {n}"
            ))
            .await;
        let actor = target
            .sql
            .text(&format!(
                "SELECT actor FROM audit_actions WHERE chain_n = {n}"
            ))
            .await;
        let set =
            |actor: &str| format!("UPDATE audit_actions SET actor = '{actor}' WHERE chain_n = {n}");
        target
            .sql
            .run(&set("token:forged"), &set("token:forged"))
            .await;
        let (ok, summary) = verify(&target);
        assert!(!ok, "action {n} altered");
        assert_eq!(broken(&summary)["table"], "audit_actions");
        assert_eq!(broken(&summary)["id"], id.as_str(), "action {n}");
        target.sql.run(&set(&actor), &set(&actor)).await;
    }
    let (ok, summary) = verify(&target);
    assert!(ok, "restored: {summary}");
    // The person's export carries every one of them but the webhook's.
    let exported: Vec<String> = export(&target, person, "2000-01-01T00:00:00Z")
        .into_iter()
        .skip(1)
        .filter(|r| r["table"] == "audit_actions")
        .filter(|r| r["table"] == "audit_actions")
        .map(|r| r["record"]["kind"].as_str().unwrap().to_owned())
        .collect();
    for kind in &SUPERVISION_ACTIONS[..SUPERVISION_ACTIONS.len() - 1] {
        assert!(exported.iter().any(|k| k == kind), "{kind} in {exported:?}");
    }
    assert!(!exported.iter().any(|k| k == "webhook.redeliver"));
}

/// Declares each case once per backend.
macro_rules! cases {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::on_sqlite().await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    if let Some(target) = super::on_postgres(stringify!($case)).await {
                        super::$case(target).await;
                    }
                }
            )*
        }
    };
}

cases!(
    untouched_store_verifies,
    an_altered_position_is_named,
    a_deleted_position_is_named,
    an_inserted_position_is_named,
    a_changed_alert_is_named,
    a_changed_action_is_named,
    retention_keeps_what_remains_verifiable,
    an_export_checks_without_ewall,
    supervision_and_integration_actions_are_chained,
);

/// Through the running service: a GT06 position is stored with the frame's bytes as received,
/// and the device's binding over the API is recorded as the admin token's action.
#[tokio::test]
async fn a_device_s_frame_and_an_api_action_reach_the_trail() {
    use common::{Device, Service};
    use ewall_protocol::gt06::encode;

    let mut service = Service::start().await;
    let person: PersonId = service.person_with_device(IMEI, &[]).await.parse().unwrap();
    let frame = encode::location(
        2,
        &encode::Fix::new(
            Utc.with_ymd_and_hms(2026, 6, 2, 21, 0, 0).unwrap(),
            25.515,
            112.36,
        ),
    );
    let mut device = Device::connect(service.listener("gt06")).await;
    device.exchange(&encode::login(IMEI, 1, None), 10).await;
    device.exchange(&frame, 10).await;
    service.stop().await;

    let url = format!("sqlite://{}", service.data_dir().join("ewall.db").display());
    let store = ewall::store::open(&url).await.unwrap();
    let (from, to) = (
        Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).unwrap(),
        Utc.with_ymd_and_hms(2100, 1, 1, 0, 0, 0).unwrap(),
    );
    let track = store.track(person, from, to, 10).await.unwrap();
    assert_eq!(track.len(), 1);
    assert_eq!(
        track[0].raw.as_ref(),
        frame.as_slice(),
        "the frame as received"
    );
    let actions = store
        .person_records(ewall::store::ChainTable::Actions, person, from, to, 0, 10)
        .await
        .unwrap();
    let bind = actions
        .iter()
        .map(|a| serde_json::from_slice::<Value>(&a.canonical).unwrap())
        .find(|a| a["kind"] == "device.bind")
        .expect("the binding is an action");
    assert!(
        bind["actor"].as_str().unwrap().starts_with("token:"),
        "{bind}"
    );
    let summary = ewall::audit::verify(store.as_ref(), &ewall::audit::VerifyOptions::default())
        .await
        .unwrap();
    assert!(summary.ok, "{summary:?}");
}

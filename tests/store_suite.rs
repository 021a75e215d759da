//! The store test suite: every case runs against SQLite (always) and PostgreSQL (when
//! `EWALL_TEST_PG_URL` is set, each case in a database of its own, dropped afterwards), through
//! the `Store` trait only, so both backends are held to one contract.

mod common;

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use common::pg::TestDatabase;
use ewall::model::EventKind;
use ewall::model::{
    new_id, Alert, AlertKind, AlertPosition, AlertState, CommandStatus, Crs, DeviceCommand, Fix,
    Person, PersonId, PositionSource, Severity, SupervisionLevel, ZoneId, ZoneKind, ZoneWifi,
};
use ewall::store::{
    AlertQuery, DeliveryState, EventQuery, NewPerson, PersonPatch, Role, Store, StoreConfig,
    StoreError, TokenRecord, ZoneRecord,
};

type Case = fn(Arc<dyn Store>) -> Pin<Box<dyn Future<Output = ()> + Send>>;

async fn on_sqlite(case: Case) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("suite.db").display());
    let store = ewall::store::open(&url).await.unwrap();
    case(store).await;
}

async fn on_postgres(name: &str, case: Case) {
    let Some(database) = TestDatabase::create(name).await else {
        return;
    };
    let config = StoreConfig {
        pool_max: 6,
        ..StoreConfig::default()
    };
    let store = ewall::store::open_with(&database.url, &config)
        .await
        .unwrap();
    case(store).await;
    drop(database);
}

/// Declares each case once per backend: `sqlite::case` and `postgres::case`.
macro_rules! suite {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::on_sqlite(|store| Box::pin(super::$case(store))).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::on_postgres(stringify!($case), |store| Box::pin(super::$case(store)))
                        .await;
                }
            )*
        }
    };
}

suite!(
    persons_devices_and_zones_keep_their_references,
    a_stored_fix_and_alert_read_back_exactly,
    a_batch_larger_than_one_statement_is_stored_whole_and_in_order,
    a_resent_fix_is_stored_once_and_its_batch_still_commits,
    the_track_crosses_day_boundaries_and_keeps_old_and_odd_times,
    open_breaches_are_the_unreturned_live_ones,
    the_alert_workflow_moves_forward_only,
    tokens_are_found_by_hash_only,
    tokens_are_revoked_once_and_their_last_use_only_moves_forward,
    read_then_write_changes_survive_concurrent_writes,
    every_change_is_one_event_in_the_same_seq_space_as_alerts,
    a_failed_state_change_appends_nothing,
    a_new_cursor_starts_at_the_end_and_cursors_only_move_forward,
    dead_letters_move_the_cursor_and_are_redelivered_on_request,
    commands_move_pending_sent_acknowledged_and_answers_match_by_reference,
    open_commands_expire_at_their_time_and_not_before,
    a_device_keeps_its_model_and_learnt_protocol,
    a_pager_misses_no_alert_while_writers_commit_concurrently,
    learned_access_points_are_added_once_and_bounded,
    the_newest_valid_fix_per_device_and_person_survives_the_store,
    the_chains_hold_through_resends_and_concurrent_writers,
    recorded_actions_name_their_actor_and_extend_one_chain,
);

const IMEI: &str = "864717003283581";

async fn person(store: &dyn Store) -> Person {
    store
        .create_person(NewPerson {
            name: "Li Wei".into(),
            level: SupervisionLevel::Strict,
            timezone: "Asia/Shanghai".into(),
        })
        .await
        .unwrap()
}

fn at(second: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 8, 0, 0).unwrap() + Duration::seconds(second)
}

fn fix(person: PersonId, time: DateTime<Utc>) -> Fix {
    Fix {
        device_id: IMEI.into(),
        person_id: person,
        time,
        received_at: Utc.with_ymd_and_hms(2026, 3, 1, 8, 59, 59).unwrap()
            + Duration::microseconds(123_456),
        lat: 25.587_123_4,
        lon: 112.314_567_8,
        valid: true,
        accuracy_m: Some(8.5),
        speed_kmh: Some(4.0),
        course: Some(270.0),
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
        raw: Default::default(),
    }
}

fn alert(person: PersonId, kind: AlertKind) -> Alert {
    Alert {
        id: new_id(),
        seq: 0,
        kind,
        person_id: person,
        device_id: Some(IMEI.into()),
        zone_id: None,
        severity: Severity::High,
        time: at(1),
        // Nanoseconds the stores do not keep: what commit returns must equal what reads give.
        raised_at: Utc.with_ymd_and_hms(2026, 3, 1, 8, 0, 2).unwrap()
            + Duration::nanoseconds(1_234_567),
        position: Some(AlertPosition {
            lat: 25.5,
            lon: 112.3,
            accuracy_m: Some(10.0),
        }),
        state: AlertState::Open,
        late: false,
        note: None,
        acknowledged_at: None,
        resolved_at: None,
    }
}

fn all_time() -> (DateTime<Utc>, DateTime<Utc>) {
    (
        Utc.with_ymd_and_hms(1990, 1, 1, 0, 0, 0).unwrap(),
        Utc.with_ymd_and_hms(2100, 1, 1, 0, 0, 0).unwrap(),
    )
}

async fn persons_devices_and_zones_keep_their_references(store: Arc<dyn Store>) {
    let p = person(store.as_ref()).await;
    assert_eq!(store.person(p.id).await.unwrap(), p);
    let patched = store
        .update_person(
            p.id,
            PersonPatch {
                level: Some(SupervisionLevel::Lenient),
                ..PersonPatch::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(patched.level, SupervisionLevel::Lenient);
    assert_eq!(patched.name, p.name, "fields left out are kept");
    assert_eq!(store.persons().await.unwrap(), vec![patched.clone()]);
    assert!(matches!(
        store.update_person(new_id(), PersonPatch::default()).await,
        Err(StoreError::NotFound { .. })
    ));

    assert!(matches!(
        store.create_device("123", new_id()).await,
        Err(StoreError::UnknownReference(_))
    ));
    let device = store.create_device("123", p.id).await.unwrap();
    assert_eq!(store.device("123").await.unwrap(), device);
    assert_eq!(store.devices().await.unwrap(), vec![device]);
    assert!(matches!(
        store.create_device("123", p.id).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store.delete_person(p.id).await,
        Err(StoreError::Conflict(_))
    ));

    let zone = ZoneRecord {
        id: new_id(),
        name: "home".into(),
        kind: ZoneKind::Inclusion,
        source_crs: Crs::Gcj02,
        radius_m: Some(200.0),
        geometry: r#"{"type":"Point","coordinates":[112.3,25.5]}"#.into(),
        wifi: ZoneWifi {
            bssids: vec!["aa:bb:cc:dd:ee:ff".into()],
            learn_until: Some(Utc.timestamp_micros(1_780_000_000_000_003).unwrap()),
        },
        created_at: Utc.timestamp_micros(1_700_000_000_000_001).unwrap(),
    };
    store.create_zone(&zone).await.unwrap();
    assert_eq!(store.zone(zone.id).await.unwrap(), zone);
    assert_eq!(store.zones().await.unwrap(), vec![zone.clone()]);
    let missing = new_id();
    let err = store
        .set_person_zones(p.id, &[zone.id, missing])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::UnknownReference(_)), "{err}");
    assert!(err.to_string().contains(&missing.to_string()), "{err}");
    assert!(
        store.person_zones(p.id).await.unwrap().is_empty(),
        "nothing half done"
    );
    assert!(matches!(
        store.set_person_zones(new_id(), &[zone.id]).await,
        Err(StoreError::NotFound { .. })
    ));
    store
        .set_person_zones(p.id, &[zone.id, zone.id])
        .await
        .unwrap();
    assert_eq!(store.person_zones(p.id).await.unwrap(), vec![zone.id]);
    assert_eq!(store.assignments().await.unwrap(), vec![(p.id, zone.id)]);
    assert!(matches!(
        store.delete_zone(zone.id).await,
        Err(StoreError::Conflict(_))
    ));
    store.set_person_zones(p.id, &[]).await.unwrap();
    store.delete_zone(zone.id).await.unwrap();
    assert!(matches!(
        store.delete_zone(zone.id).await,
        Err(StoreError::NotFound { .. })
    ));

    store.delete_device("123").await.unwrap();
    assert!(matches!(
        store.delete_device("123").await,
        Err(StoreError::NotFound { .. })
    ));
    store.delete_person(p.id).await.unwrap();
    assert!(matches!(
        store.person(p.id).await,
        Err(StoreError::NotFound { .. })
    ));
}

async fn a_stored_fix_and_alert_read_back_exactly(store: Arc<dyn Store>) {
    let p = person(store.as_ref()).await;
    let mut fixes: Vec<Fix> = (0..5).map(|s| fix(p.id, at(s))).collect();
    fixes[2].integrity_mismatch = true;
    fixes[3] = Fix {
        valid: false,
        accuracy_m: None,
        speed_kmh: None,
        course: None,
        altitude_m: Some(-12.5),
        satellites: None,
        hdop: Some(1.7),
        source: PositionSource::Lbs,
        battery_pct: None,
        archived: true,
        protocol: "jt808".into(),
        ..fixes[3].clone()
    };
    let zone = new_id();
    let stored = store
        .commit(
            &fixes,
            vec![
                Alert {
                    zone_id: Some(zone),
                    ..alert(p.id, AlertKind::ZoneExit)
                },
                Alert {
                    device_id: None,
                    position: None,
                    late: true,
                    ..alert(p.id, AlertKind::Sos)
                },
            ],
        )
        .await
        .unwrap();
    let more = store
        .commit(&[], vec![alert(p.id, AlertKind::Returned)])
        .await
        .unwrap();
    let seqs: Vec<i64> = stored.iter().chain(&more).map(|a| a.seq).collect();
    assert!(seqs[0] > 0);
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");

    let track = store.track(p.id, at(1), at(3), 100).await.unwrap();
    assert_eq!(
        track,
        fixes[1..=3],
        "stored fixes read back exactly, [from, to] inclusive"
    );
    assert_eq!(
        store.track(p.id, at(0), at(9), 2).await.unwrap(),
        fixes[..2]
    );
    assert!(store
        .track(new_id(), at(0), at(9), 10)
        .await
        .unwrap()
        .is_empty());

    let page = store
        .alerts(AlertQuery {
            after: seqs[0],
            person_id: Some(p.id),
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(
        page,
        [stored[1].clone(), more[0].clone()],
        "alerts read back exactly"
    );
    assert_eq!(store.alert(stored[0].id).await.unwrap(), stored[0]);
    let first = store
        .alerts(AlertQuery {
            after: 0,
            person_id: None,
            limit: 1,
        })
        .await
        .unwrap();
    assert_eq!(first, [stored[0].clone()]);
    let other = store
        .alerts(AlertQuery {
            after: 0,
            person_id: Some(new_id()),
            limit: 10,
        })
        .await
        .unwrap();
    assert!(other.is_empty());
    assert!(matches!(
        store.alert(new_id()).await,
        Err(StoreError::NotFound { .. })
    ));
}

async fn a_batch_larger_than_one_statement_is_stored_whole_and_in_order(store: Arc<dyn Store>) {
    let p = person(store.as_ref()).await;
    let fixes: Vec<Fix> = (0..2_450).map(|i| fix(p.id, at(i))).collect();
    store.commit(&fixes, Vec::new()).await.unwrap();
    let (from, to) = all_time();
    assert_eq!(store.track(p.id, from, to, 10_000).await.unwrap(), fixes);
}

async fn a_resent_fix_is_stored_once_and_its_batch_still_commits(store: Arc<dyn Store>) {
    let p = person(store.as_ref()).await;
    let first = fix(p.id, at(0));
    store
        .commit(std::slice::from_ref(&first), Vec::new())
        .await
        .unwrap();

    // The device resends the fix whose acknowledgement it lost, together with a new one, and
    // the batch also carries the same fix twice (a resend racing its original).
    let second = fix(p.id, at(30));
    let resent = Fix {
        received_at: first.received_at + Duration::seconds(40),
        ..first.clone()
    };
    let raised = store
        .commit(
            &[resent, second.clone(), second.clone()],
            vec![alert(p.id, AlertKind::Sos)],
        )
        .await
        .unwrap();
    assert_eq!(raised.len(), 1, "the batch's alert is stored");

    // Not duplicates: the same time elsewhere, another device at the same time and place.
    let moved = Fix {
        lat: first.lat + 0.0001,
        ..first.clone()
    };
    let other_device = Fix {
        device_id: "864717003283599".into(),
        ..first.clone()
    };
    store
        .commit(&[moved.clone(), other_device.clone()], Vec::new())
        .await
        .unwrap();

    let (from, to) = all_time();
    let mut track = store.track(p.id, from, to, 100).await.unwrap();
    track.sort_by(|a, b| {
        (a.time, &a.device_id, a.lat)
            .partial_cmp(&(b.time, &b.device_id, b.lat))
            .unwrap()
    });
    let mut expected = vec![first.clone(), moved, other_device, second];
    expected.sort_by(|a, b| {
        (a.time, &a.device_id, a.lat)
            .partial_cmp(&(b.time, &b.device_id, b.lat))
            .unwrap()
    });
    assert_eq!(
        track, expected,
        "the first copy is kept, with its own receipt time"
    );
}

async fn the_track_crosses_day_boundaries_and_keeps_old_and_odd_times(store: Arc<dyn Store>) {
    let p = person(store.as_ref()).await;
    let midnight = Utc::now()
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc();
    let times = [
        // Yesterday's last microsecond and today's first.
        midnight - Duration::microseconds(1),
        midnight,
        // A blind-area backlog from ten days ago, and one from a year ago.
        midnight - Duration::days(10) + Duration::hours(7),
        midnight - Duration::days(365),
        // A device clock far off in both directions.
        Utc.with_ymd_and_hms(2000, 1, 6, 0, 0, 0).unwrap(),
        midnight + Duration::days(400),
        // Tomorrow.
        midnight + Duration::days(1) + Duration::minutes(5),
    ];
    let fixes: Vec<Fix> = times.iter().map(|t| fix(p.id, *t)).collect();
    store.commit(&fixes, Vec::new()).await.unwrap();

    let (from, to) = all_time();
    let track = store.track(p.id, from, to, 100).await.unwrap();
    let mut expected = fixes.clone();
    expected.sort_by_key(|f| f.time);
    assert_eq!(track, expected);

    let around_midnight = store
        .track(p.id, midnight - Duration::microseconds(1), midnight, 100)
        .await
        .unwrap();
    assert_eq!(around_midnight, fixes[..2]);
    let set: BTreeSet<DateTime<Utc>> = track.iter().map(|f| f.time).collect();
    assert_eq!(set.len(), times.len());
}

async fn open_breaches_are_the_unreturned_live_ones(store: Arc<dyn Store>) {
    let p = person(store.as_ref()).await;
    let zoned = |kind, zone: ZoneId, late: bool| Alert {
        zone_id: Some(zone),
        late,
        ..alert(p.id, kind)
    };
    let (closed, open, late_only) = (new_id(), new_id(), new_id());
    store
        .commit(
            &[],
            vec![
                zoned(AlertKind::ZoneExit, closed, false),
                zoned(AlertKind::Returned, closed, false),
                zoned(AlertKind::ZoneEnter, open, false),
                zoned(AlertKind::Returned, open, true),
                zoned(AlertKind::ZoneExit, late_only, true),
            ],
        )
        .await
        .unwrap();
    let open_breaches = store.open_breaches().await.unwrap();
    assert_eq!(open_breaches.len(), 1, "{open_breaches:?}");
    assert_eq!(open_breaches[0].person_id, p.id);
    assert_eq!(open_breaches[0].zone_id, open);
    assert_eq!(open_breaches[0].kind, ZoneKind::Exclusion);
    assert_eq!(open_breaches[0].since, at(1));
}

async fn the_alert_workflow_moves_forward_only(store: Arc<dyn Store>) {
    let p = person(store.as_ref()).await;
    let a = store
        .commit(&[], vec![alert(p.id, AlertKind::ZoneExit)])
        .await
        .unwrap()[0]
        .clone();
    let now = Utc.timestamp_micros(1_780_000_000_000_007).unwrap();
    let acked = store
        .set_alert_state(
            a.id,
            AlertState::Acknowledged,
            Some("called him".into()),
            now,
        )
        .await
        .unwrap();
    assert_eq!(acked.state, AlertState::Acknowledged);
    assert_eq!(acked.note.as_deref(), Some("called him"));
    assert_eq!(acked.acknowledged_at, Some(now));
    assert_eq!(store.alert(a.id).await.unwrap(), acked);
    assert!(matches!(
        store
            .set_alert_state(a.id, AlertState::Acknowledged, None, now)
            .await,
        Err(StoreError::Conflict(_))
    ));
    let later = now + Duration::minutes(3);
    let resolved = store
        .set_alert_state(a.id, AlertState::Resolved, None, later)
        .await
        .unwrap();
    assert_eq!(resolved.state, AlertState::Resolved);
    assert_eq!(
        resolved.note.as_deref(),
        Some("called him"),
        "note kept without a new one"
    );
    assert_eq!(resolved.acknowledged_at, Some(now));
    assert_eq!(resolved.resolved_at, Some(later));
    assert!(matches!(
        store
            .set_alert_state(a.id, AlertState::Resolved, None, later)
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store
            .set_alert_state(a.id, AlertState::Open, None, later)
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store
            .set_alert_state(new_id(), AlertState::Resolved, None, now)
            .await,
        Err(StoreError::NotFound { .. })
    ));
}

async fn tokens_are_found_by_hash_only(store: Arc<dyn Store>) {
    assert_eq!(store.token_count().await.unwrap(), 0);
    let record = TokenRecord {
        id: new_id(),
        role: Role::Operator,
        label: Some("night shift".into()),
        created_at: Utc.timestamp_micros(1_700_000_000_000_000).unwrap(),
        expires_at: Some(Utc.timestamp_micros(1_800_000_000_000_000).unwrap()),
        revoked_at: None,
        last_used_at: None,
    };
    store.create_token(&record, "abc123").await.unwrap();
    assert_eq!(
        store.token_by_hash("abc123").await.unwrap(),
        Some(record.clone())
    );
    assert_eq!(store.token_by_hash("abc124").await.unwrap(), None);
    assert_eq!(store.token_count().await.unwrap(), 1);
    assert_eq!(store.tokens().await.unwrap(), vec![record]);
}

async fn tokens_are_revoked_once_and_their_last_use_only_moves_forward(store: Arc<dyn Store>) {
    let at = |s: i64| Utc.timestamp_opt(1_700_000_000 + s, 0).unwrap();
    let record = TokenRecord {
        id: new_id(),
        role: Role::Integration,
        label: None,
        created_at: at(0),
        expires_at: None,
        revoked_at: None,
        last_used_at: None,
    };
    store.create_token(&record, "h").await.unwrap();
    store.record_token_use(record.id, at(120)).await.unwrap();
    store.record_token_use(record.id, at(60)).await.unwrap();
    let revoked = store.revoke_token(record.id, at(200)).await.unwrap();
    assert_eq!(revoked.last_used_at, Some(at(120)));
    assert_eq!(revoked.revoked_at, Some(at(200)));
    let again = store.revoke_token(record.id, at(300)).await.unwrap();
    assert_eq!(again.revoked_at, Some(at(200)));
    assert!(again.refusal(at(301)).unwrap().contains("revoked"));
    assert!(matches!(
        store.revoke_token(new_id(), at(300)).await,
        Err(StoreError::NotFound { .. })
    ));
}

/// Read-then-write changes (an assignment checks the person, then writes) while other
/// connections write at the same time, as the batch writer and last-use updates do.
async fn read_then_write_changes_survive_concurrent_writes(store: Arc<dyn Store>) {
    let p = person(store.as_ref()).await;
    let token = TokenRecord {
        id: new_id(),
        role: Role::Operator,
        label: None,
        created_at: Utc::now(),
        expires_at: None,
        revoked_at: None,
        last_used_at: None,
    };
    store.create_token(&token, "h").await.unwrap();
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for i in 0..400 {
                let at = Utc.timestamp_opt(1_700_000_000 + i, 0).unwrap();
                store.record_token_use(token.id, at).await.unwrap();
            }
        })
    };
    for _ in 0..100 {
        store.set_person_zones(p.id, &[]).await.unwrap();
    }
    writer.await.unwrap();
}

/// Writers commit batches of positions and alerts at once while a consumer pages the feed by
/// `after=` as fast as it can. With seq handed out in request order rather than commit order,
/// the pager would read a larger seq before a smaller one became visible and skip it.
async fn a_pager_misses_no_alert_while_writers_commit_concurrently(store: Arc<dyn Store>) {
    const WRITERS: usize = 4;
    const BATCHES: usize = 40;
    let p = person(store.as_ref()).await;
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            let mut written = Vec::new();
            for b in 0..BATCHES {
                let fixes: Vec<Fix> = (0..(b % 7) as i64 * 20)
                    .map(|i| Fix {
                        device_id: format!("dev-{w}"),
                        ..fix(p.id, at((b as i64) * 1_000 + i))
                    })
                    .collect();
                let alerts = (0..1 + b % 3)
                    .map(|_| alert(p.id, AlertKind::Sos))
                    .collect();
                for a in store.commit(&fixes, alerts).await.unwrap() {
                    written.push((a.seq, a.id));
                }
            }
            written
        }));
    }
    let pager = {
        let store = store.clone();
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop = done.clone();
        let handle = tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut after = 0;
            loop {
                // Read whether the writers had finished *before* the page: an empty page after
                // they finished means everything has been read.
                let finished = stop.load(std::sync::atomic::Ordering::SeqCst);
                let page = store
                    .alerts(AlertQuery {
                        after,
                        person_id: None,
                        limit: 7,
                    })
                    .await
                    .unwrap();
                if page.is_empty() && finished {
                    break seen;
                }
                for a in page {
                    assert!(a.seq > after, "ascending from the cursor");
                    after = a.seq;
                    seen.push((a.seq, a.id));
                }
            }
        });
        (handle, done)
    };
    let mut written = Vec::new();
    for w in writers {
        written.extend(w.await.unwrap());
    }
    pager.1.store(true, std::sync::atomic::Ordering::SeqCst);
    let seen = pager.0.await.unwrap();
    written.sort();
    let seqs: BTreeSet<i64> = written.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs.len(), written.len(), "every seq handed out once");
    let missed: Vec<i64> = seqs
        .difference(&seen.iter().map(|(s, _)| *s).collect())
        .copied()
        .collect();
    assert!(missed.is_empty(), "the pager skipped seq {missed:?}");
    assert!(
        seen == written,
        "the pager saw every alert once, in seq order"
    );
}

async fn learned_access_points_are_added_once_and_bounded(store: Arc<dyn Store>) {
    let zone = ZoneRecord {
        id: new_id(),
        name: "home".into(),
        kind: ZoneKind::Inclusion,
        source_crs: Crs::Wgs84,
        radius_m: Some(200.0),
        geometry: r#"{"type":"Point","coordinates":[112.3,25.5]}"#.into(),
        wifi: ZoneWifi::default(),
        created_at: Utc.timestamp_micros(1_700_000_000_000_000).unwrap(),
    };
    store.create_zone(&zone).await.unwrap();
    let a = "aa:bb:cc:dd:ee:01".to_owned();
    let b = "aa:bb:cc:dd:ee:02".to_owned();
    let added = store
        .add_zone_wifi(zone.id, &[a.clone(), b.clone(), a.clone()])
        .await
        .unwrap();
    assert_eq!(added.wifi.bssids, [a.clone(), b.clone()]);
    let many: Vec<String> = (0..2 * ewall::fence::MAX_WIFI)
        .map(|i| format!("02:00:00:00:{:02x}:{:02x}", i / 256, i % 256))
        .collect();
    let full = store.add_zone_wifi(zone.id, &many).await.unwrap();
    assert_eq!(full.wifi.bssids.len(), ewall::fence::MAX_WIFI);
    assert_eq!(store.zone(zone.id).await.unwrap(), full);
    assert!(matches!(
        store.add_zone_wifi(new_id(), &[a]).await,
        Err(StoreError::NotFound { .. })
    ));
}

async fn the_newest_valid_fix_per_device_and_person_survives_the_store(store: Arc<dyn Store>) {
    let p = person(store.as_ref()).await;
    let q = person(store.as_ref()).await;
    let invalid_later = Fix {
        valid: false,
        ..fix(p.id, at(500))
    };
    // Neither a fix from a clock running ahead nor an implausible one becomes the newest.
    let skewed_later = Fix {
        clock_skew: true,
        ..fix(p.id, at(600))
    };
    let implausible_later = Fix {
        implausible: Some("speed_kmh inf beyond 0..=2000".into()),
        speed_kmh: None,
        ..fix(p.id, at(700))
    };
    let batch = [
        fix(p.id, at(10)),
        fix(p.id, at(30)),
        invalid_later,
        skewed_later,
        implausible_later,
    ];
    store.commit(&batch, Vec::new()).await.unwrap();
    // The flags are stored and read back with the positions.
    let track = store.track(p.id, at(0), at(1000), 100).await.unwrap();
    assert_eq!(track[3], batch[3]);
    assert_eq!(track[4], batch[4]);
    // An older batch (a backlog) does not move it back; the device rebound to another person
    // has a newest of its own there.
    store
        .commit(&[fix(p.id, at(20)), fix(q.id, at(5))], Vec::new())
        .await
        .unwrap();
    let mut newest: Vec<(String, PersonId, DateTime<Utc>)> = store
        .newest_fix_times()
        .await
        .unwrap()
        .into_iter()
        .map(|n| (n.device_id, n.person_id, n.time))
        .collect();
    newest.sort();
    let mut expected = vec![
        (IMEI.to_owned(), p.id, at(30)),
        (IMEI.to_owned(), q.id, at(5)),
    ];
    expected.sort();
    assert_eq!(newest, expected);
}

fn feed(after: i64) -> EventQuery {
    EventQuery {
        after,
        limit: 1000,
        alerts_only: false,
    }
}

async fn every_change_is_one_event_in_the_same_seq_space_as_alerts(store: Arc<dyn Store>) {
    let mut notices = store.event_notices();
    let p = person(store.as_ref()).await;
    let stored = store
        .commit(
            &[fix(p.id, at(0))],
            vec![
                alert(p.id, AlertKind::ZoneExit),
                alert(p.id, AlertKind::Sos),
            ],
        )
        .await
        .unwrap();
    let acked = store
        .set_alert_state(
            stored[0].id,
            AlertState::Acknowledged,
            Some("called".into()),
            Utc::now(),
        )
        .await
        .unwrap();
    let later = store
        .commit(&[], vec![alert(p.id, AlertKind::Returned)])
        .await
        .unwrap();

    let events = store.events(feed(0)).await.unwrap();
    let kinds: Vec<String> = events.iter().map(|e| e.kind.to_string()).collect();
    assert_eq!(
        kinds,
        [
            "person.enrolled",
            "alert.raised",
            "alert.raised",
            "alert.acknowledged",
            "alert.raised"
        ]
    );
    assert!(events.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(events[0].data["name"], "Li Wei");
    // An alert's seq is its raised event's seq, and the event carries the alert as stored.
    for (event, alert) in [
        (&events[1], &stored[0]),
        (&events[2], &stored[1]),
        (&events[4], &later[0]),
    ] {
        assert_eq!(event.seq, alert.seq);
        assert_eq!(event.id, alert.id);
        assert_eq!(event.alert_id, Some(alert.id));
        assert_eq!(event.data, serde_json::to_value(alert).unwrap());
    }
    // A state change is its own event, with the alert as it became.
    assert_ne!(events[3].id, acked.id);
    assert_eq!(events[3].alert_id, Some(acked.id));
    assert_eq!(events[3].data, serde_json::to_value(&acked).unwrap());
    assert_eq!(
        events[3].data["seq"], stored[0].seq,
        "the alert keeps its seq"
    );
    assert_eq!(*notices.borrow_and_update(), events[4].seq);
    assert_eq!(store.last_event_seq().await.unwrap(), events[4].seq);

    // The alert feed stays the reference: from 0, each alert once, in order, gaps allowed.
    let alerts = store
        .alerts(AlertQuery {
            after: 0,
            person_id: None,
            limit: 100,
        })
        .await
        .unwrap();
    let ids: Vec<_> = alerts.iter().map(|a| a.id).collect();
    assert_eq!(ids, [stored[0].id, stored[1].id, later[0].id]);

    let alert_events = store
        .events(EventQuery {
            alerts_only: true,
            ..feed(events[1].seq)
        })
        .await
        .unwrap();
    assert_eq!(alert_events.len(), 3);
    assert!(alert_events.iter().all(|e| e.kind.is_alert()));

    store.delete_person(p.id).await.unwrap();
    let last = store.events(feed(events[4].seq)).await.unwrap();
    assert_eq!(last.len(), 1);
    assert_eq!(last[0].kind, EventKind::PersonReleased);
    assert_eq!(last[0].person_id, p.id);
}

async fn a_failed_state_change_appends_nothing(store: Arc<dyn Store>) {
    let p = person(store.as_ref()).await;
    let a = store
        .commit(&[], vec![alert(p.id, AlertKind::ZoneExit)])
        .await
        .unwrap()
        .remove(0);
    store
        .set_alert_state(a.id, AlertState::Resolved, None, Utc::now())
        .await
        .unwrap();
    let before = store.last_event_seq().await.unwrap();
    assert!(store
        .set_alert_state(a.id, AlertState::Resolved, None, Utc::now())
        .await
        .is_err());
    assert_eq!(store.last_event_seq().await.unwrap(), before);
}

async fn a_new_cursor_starts_at_the_end_and_cursors_only_move_forward(store: Arc<dyn Store>) {
    let p = person(store.as_ref()).await;
    let end = store.last_event_seq().await.unwrap();
    assert!(end > 0);
    assert_eq!(store.dispatch_cursor("mqtt").await.unwrap(), end);
    store
        .commit(&[], vec![alert(p.id, AlertKind::Sos)])
        .await
        .unwrap();
    assert_eq!(
        store.dispatch_cursor("mqtt").await.unwrap(),
        end,
        "the start was stored when first read"
    );
    store.set_dispatch_cursor("mqtt", end + 5).await.unwrap();
    store.set_dispatch_cursor("mqtt", end + 1).await.unwrap();
    assert_eq!(store.dispatch_cursor("mqtt").await.unwrap(), end + 5);
    assert_eq!(
        store.dispatch_cursor("webhook:other").await.unwrap(),
        end + 1
    );
}

async fn dead_letters_move_the_cursor_and_are_redelivered_on_request(store: Arc<dyn Store>) {
    let p = person(store.as_ref()).await;
    let stored = store
        .commit(
            &[],
            vec![alert(p.id, AlertKind::Sos), alert(p.id, AlertKind::Tamper)],
        )
        .await
        .unwrap();
    let consumer = "webhook:police";
    store.dispatch_cursor(consumer).await.unwrap();
    for a in &stored {
        store
            .dead_letter("police", consumer, a.seq, 8, "HTTP 503 Service Unavailable")
            .await
            .unwrap();
    }
    assert_eq!(
        store.dispatch_cursor(consumer).await.unwrap(),
        stored[1].seq
    );
    let dead = store
        .webhook_deliveries("police", Some(DeliveryState::Dead), 0, 10)
        .await
        .unwrap();
    assert_eq!(dead.len(), 2);
    assert_eq!(dead[0].event.id, stored[0].id);
    assert_eq!(dead[0].attempts, 8);
    assert_eq!(dead[0].last_error, "HTTP 503 Service Unavailable");
    assert!(store
        .webhook_deliveries("other", None, 0, 10)
        .await
        .unwrap()
        .is_empty());

    assert_eq!(
        store
            .request_redelivery("police", Some(stored[0].id))
            .await
            .unwrap(),
        1
    );
    assert!(matches!(
        store.request_redelivery("police", Some(stored[0].id)).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store.request_redelivery("police", Some(new_id())).await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(store.request_redelivery("police", None).await.unwrap(), 1);
    let pending = store
        .webhook_deliveries("police", Some(DeliveryState::Pending), 0, 10)
        .await
        .unwrap();
    assert_eq!(pending.len(), 2);

    store
        .redelivery_done("police", stored[0].seq, Ok(()))
        .await
        .unwrap();
    store
        .redelivery_done("police", stored[1].seq, Err("HTTP 500".into()))
        .await
        .unwrap();
    let all = store
        .webhook_deliveries("police", None, 0, 10)
        .await
        .unwrap();
    assert_eq!(all[0].state, DeliveryState::Delivered);
    assert!(all[0].delivered_at.is_some());
    assert_eq!(all[0].attempts, 9);
    assert_eq!(all[1].state, DeliveryState::Dead);
    assert_eq!(all[1].last_error, "HTTP 500");
}

fn pending(device: &str, created: DateTime<Utc>, expires_in_s: i64) -> DeviceCommand {
    DeviceCommand {
        id: new_id(),
        seq: 0,
        device_id: device.into(),
        kind: "locate_now".into(),
        text: None,
        interval_s: None,
        status: CommandStatus::Pending,
        protocol: None,
        reference: None,
        created_at: created,
        expires_at: created + chrono::TimeDelta::seconds(expires_in_s),
        sent_at: None,
        completed_at: None,
        reply: None,
        error: None,
    }
}

async fn commands_move_pending_sent_acknowledged_and_answers_match_by_reference(
    store: Arc<dyn Store>,
) {
    let t0 = Utc.with_ymd_and_hms(2026, 3, 14, 9, 0, 0).unwrap();
    let a = store.create_command(&pending("1", t0, 60)).await.unwrap();
    let b = store.create_command(&pending("1", t0, 60)).await.unwrap();
    assert!(b.seq > a.seq);
    assert_eq!(store.command(a.id).await.unwrap(), a);
    let queued = store.pending_commands("1", t0).await.unwrap();
    assert_eq!(
        queued.iter().map(|c| c.id).collect::<Vec<_>>(),
        [a.id, b.id]
    );

    assert!(store
        .mark_command_sent(a.id, "gt06", "flag:1", t0)
        .await
        .unwrap());
    assert!(
        !store
            .mark_command_sent(a.id, "gt06", "flag:1", t0)
            .await
            .unwrap(),
        "once"
    );
    assert!(store
        .mark_command_sent(b.id, "gt06", "flag:1", t0)
        .await
        .unwrap());
    // Two commands await the same reference (a text protocol's keyword): the oldest first.
    let answered = store
        .command_by_reference("1", "flag:1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answered.id, a.id);
    assert!(store
        .complete_command(a.id, CommandStatus::Acknowledged, Some("ok"), t0)
        .await
        .unwrap());
    assert!(
        !store
            .complete_command(a.id, CommandStatus::Failed, None, t0)
            .await
            .unwrap(),
        "an ended command stays ended"
    );
    let a = store.command(a.id).await.unwrap();
    assert_eq!(
        (a.status, a.reply.as_deref()),
        (CommandStatus::Acknowledged, Some("ok"))
    );
    assert_eq!(
        store
            .command_by_reference("1", "flag:1")
            .await
            .unwrap()
            .unwrap()
            .id,
        b.id
    );
    assert!(store
        .command_by_reference("2", "flag:1")
        .await
        .unwrap()
        .is_none());

    // A write that did not happen puts it back.
    assert!(store.unmark_command_sent(b.id).await.unwrap());
    let b = store.command(b.id).await.unwrap();
    assert_eq!(
        (b.status, b.sent_at, b.reference),
        (CommandStatus::Pending, None, None)
    );
    let listed = store.device_commands("1", 10).await.unwrap();
    assert_eq!(
        listed.iter().map(|c| c.id).collect::<Vec<_>>(),
        [b.id, a.id]
    );
}

async fn open_commands_expire_at_their_time_and_not_before(store: Arc<dyn Store>) {
    let t0 = Utc.with_ymd_and_hms(2026, 3, 14, 9, 0, 0).unwrap();
    assert_eq!(store.next_command_expiry().await.unwrap(), None);
    let soon = store.create_command(&pending("1", t0, 10)).await.unwrap();
    let later = store.create_command(&pending("1", t0, 100)).await.unwrap();
    let sent = store.create_command(&pending("1", t0, 10)).await.unwrap();
    store
        .mark_command_sent(sent.id, "jt808", "serial:8201:3", t0)
        .await
        .unwrap();
    assert_eq!(
        store.next_command_expiry().await.unwrap(),
        Some(soon.expires_at)
    );
    let t9 = t0 + chrono::TimeDelta::seconds(9);
    assert!(store.expire_commands(t9).await.unwrap().is_empty());
    let t10 = t0 + chrono::TimeDelta::seconds(10);
    let mut expired: Vec<_> = store
        .expire_commands(t10)
        .await
        .unwrap()
        .into_iter()
        .map(|c| {
            assert_eq!(c.status, CommandStatus::Expired);
            c.id
        })
        .collect();
    expired.sort();
    let mut want = vec![soon.id, sent.id];
    want.sort();
    assert_eq!(expired, want, "pending and sent both expire");
    assert_eq!(
        store.next_command_expiry().await.unwrap(),
        Some(later.expires_at)
    );
    assert_eq!(store.pending_commands("1", t10).await.unwrap().len(), 1);
}

async fn a_device_keeps_its_model_and_learnt_protocol(store: Arc<dyn Store>) {
    let p = person(store.as_ref()).await;
    store.create_device("123", p.id).await.unwrap();
    let d = store.set_device_model("123", Some("AL300")).await.unwrap();
    assert_eq!(d.model.as_deref(), Some("AL300"));
    store.set_device_protocol("123", "jt808").await.unwrap();
    store.set_device_protocol("unknown", "jt808").await.unwrap();
    let d = store.device("123").await.unwrap();
    assert_eq!(
        (d.model.as_deref(), d.protocol.as_deref()),
        (Some("AL300"), Some("jt808"))
    );
    assert!(store
        .set_device_model("123", None)
        .await
        .unwrap()
        .model
        .is_none());
    assert!(matches!(
        store.set_device_model("nope", Some("x")).await,
        Err(StoreError::NotFound { .. })
    ));
}

/// PostgreSQL only: each fix lands in its day's partition, a fix with no partition for its day
/// in the default one, and creating that day's partition later moves it over without losing it.
#[tokio::test]
async fn postgres_fixes_land_in_their_days_partition() {
    use sqlx::Connection;
    let Some(database) = TestDatabase::create("postgres partitions").await else {
        return;
    };
    let store = ewall::store::open(&database.url).await.unwrap();
    let p = person(store.as_ref()).await;
    let now = Utc::now();
    let odd = Utc.with_ymd_and_hms(2000, 1, 6, 12, 0, 0).unwrap();
    store
        .commit(&[fix(p.id, now), fix(p.id, odd)], Vec::new())
        .await
        .unwrap();
    let mut conn = sqlx::PgConnection::connect(&database.url).await.unwrap();
    let placement = "SELECT tableoid::regclass::text, time FROM positions ORDER BY time";
    let rows: Vec<(String, DateTime<Utc>)> = sqlx::query_as(placement)
        .fetch_all(&mut conn)
        .await
        .unwrap();
    let today = format!("positions_{}", now.format("%Y%m%d"));
    assert_eq!(rows[0].0, "positions_default");
    assert_eq!(rows[1].0, today);

    let created: i32 =
        sqlx::query_scalar("SELECT ewall_ensure_position_partitions('2000-01-05', '2000-01-06')")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(created, 2);
    let rows: Vec<(String, DateTime<Utc>)> = sqlx::query_as(placement)
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        rows[0].0, "positions_20000106",
        "moved out of the default partition"
    );
    let (from, to) = all_time();
    assert_eq!(store.track(p.id, from, to, 10).await.unwrap().len(), 2);
    conn.close().await.unwrap();
    drop(store);
}

/// Writers extend the same device chains and the alerts chain at once, resending fixes within
/// and across batches: every chain still verifies, and each fix holds one place in its chain.
async fn the_chains_hold_through_resends_and_concurrent_writers(store: Arc<dyn Store>) {
    const WRITERS: i64 = 4;
    const BATCHES: i64 = 10;
    let p = person(store.as_ref()).await;
    let devices = ["864717003283581", "356938035643809"];
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            for b in 0..BATCHES {
                let mut batch = Vec::new();
                for (d, device) in devices.iter().enumerate() {
                    let second = (w * BATCHES + b) * 10 + d as i64;
                    batch.push(Fix {
                        device_id: (*device).into(),
                        ..fix(p.id, at(second))
                    });
                }
                // A resend inside the batch, and the previous batch's first fix again.
                batch.push(batch[0].clone());
                if b > 0 {
                    batch.push(Fix {
                        device_id: devices[0].into(),
                        ..fix(p.id, at((w * BATCHES + b - 1) * 10))
                    });
                }
                store
                    .commit(&batch, vec![alert(p.id, AlertKind::Sos)])
                    .await
                    .unwrap();
            }
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let summary = ewall::audit::verify(store.as_ref(), &ewall::audit::VerifyOptions::default())
        .await
        .unwrap();
    assert!(summary.ok, "{summary:?}");
    let fixes = (WRITERS * BATCHES * 2) as u64;
    let alerts = (WRITERS * BATCHES) as u64;
    // The person's creation is the one action.
    assert_eq!(summary.records_checked, fixes + alerts + 1, "{summary:?}");
    let heads = store.chain_heads().await.unwrap();
    for device in devices {
        let head = heads
            .iter()
            .find(|h| h.chain == format!("positions:{device}"))
            .unwrap();
        assert_eq!(
            head.n,
            WRITERS * BATCHES,
            "{device}: one place per distinct fix"
        );
    }
}

/// Actions recorded by the store carry the actor of their scope, or `system` outside one, and
/// take consecutive places in the one actions chain.
async fn recorded_actions_name_their_actor_and_extend_one_chain(store: Arc<dyn Store>) {
    use ewall::store::chain::{with_actor, NewAction};
    let p = with_actor(Some("token:test".into()), person(store.as_ref())).await;
    let recorded = store
        .record_action(
            NewAction::new(
                "leave.create",
                "leave-1",
                serde_json::json!({"zone": "home"}),
            )
            .person(p.id),
        )
        .await
        .unwrap();
    assert_eq!(recorded.n, 2);
    assert_eq!(recorded.actor, "system");
    assert_eq!(recorded.detail, r#"{"zone":"home"}"#);
    let (from, to) = all_time();
    let records = store
        .person_records(ewall::store::ChainTable::Actions, p.id, from, to, 0, 10)
        .await
        .unwrap();
    assert_eq!(records.len(), 2);
    let first: serde_json::Value = serde_json::from_slice(&records[0].canonical).unwrap();
    assert_eq!(first["kind"], "person.create");
    assert_eq!(first["actor"], "token:test");
    assert_eq!(records[1].id, recorded.id.to_string());
    let summary = ewall::audit::verify(store.as_ref(), &ewall::audit::VerifyOptions::default())
        .await
        .unwrap();
    assert!(summary.ok, "{summary:?}");
}

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
    new_id, Actor, Alert, AlertKind, AlertPosition, AlertState, Checkin, CheckinMethod,
    CommandStatus, Crs, DeviceCommand, DeviceHeard, Disposition, Fix, LeavePermit, MonitoringOrder,
    Person, PersonId, PositionSource, Severity, SupervisionLevel, ZoneId, ZoneKind, ZoneWifi,
};
use ewall::store::{
    AlertActionRequest, AlertQuery, AlertStep, DeliveryState, EventQuery, IntegrationRead,
    IntegrationReadQuery, LeaveClosing, NewDevice, NewPerson, NewRegistration, OrderStep,
    PersonPatch, Role, Store, StoreConfig, StoreError, TokenRecord, ZoneRecord,
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
    a_queue_reads_the_newest_alerts_first_and_every_unclosed_one,
    a_batch_larger_than_one_statement_is_stored_whole_and_in_order,
    a_resent_fix_is_stored_once_and_its_batch_still_commits,
    a_batch_committed_again_stores_its_alerts_once,
    the_track_crosses_day_boundaries_and_keeps_old_and_odd_times,
    a_device_passed_on_keeps_each_persons_positions_apart,
    open_breaches_are_the_unreturned_live_ones,
    the_alert_workflow_moves_forward_only,
    every_step_keeps_its_note_and_who_took_it,
    one_alert_per_episode_is_open_and_repeats_are_born_closed,
    alert_statistics_count_each_dimension_and_the_false_alarm_rate,
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
    a_border_hit_is_raised_once_per_reference_in_the_feed,
    integration_reads_are_kept_and_listed_by_token_and_time,
    shared_and_scheduled_zones_keep_their_scope_schedule_and_persons,
    last_heard_times_only_move_forward_and_latest_fixes_are_the_newest_valid,
    open_episodes_are_the_unreturned_offline_and_unsupervised_alerts,
    a_leave_overdue_is_an_open_breach_of_its_zone,
    leaves_are_closed_once_and_listed_by_their_end,
    order_steps_are_recorded_once_with_their_events,
    orders_in_force_are_those_overlapping_a_window_released_persons_too,
    deleting_a_person_ends_their_open_orders_with_the_deletion,
    check_ins_read_back_newest_first,
    the_chains_hold_through_resends_and_concurrent_writers,
    recorded_actions_name_their_actor_and_extend_one_chain,
    supervision_spans_follow_enrolment_level_changes_and_release,
    month_windows_count_positions_alerts_and_commands,
    assessments_are_kept_with_their_actor_and_chained,
    a_broadcast_stores_its_commands_and_counts_their_states,
    a_bulk_registration_records_what_the_single_routes_record_or_nothing,
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
        disposition: None,
        acknowledged_at: None,
        verified_at: None,
        disposed_at: None,
        closed_at: None,
        repeat_of: None,
        border: None,
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
        scope: Default::default(),
        persons: Vec::new(),
        schedule: None,
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
            ..Default::default()
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
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(first, [stored[0].clone()]);
    let other = store
        .alerts(AlertQuery {
            after: 0,
            person_id: Some(new_id()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(other.is_empty());
    assert!(matches!(
        store.alert(new_id()).await,
        Err(StoreError::NotFound { .. })
    ));
}

async fn a_queue_reads_the_newest_alerts_first_and_every_unclosed_one(store: Arc<dyn Store>) {
    let p = person(store.as_ref()).await;
    // A second alert of an episode still being handled is born closed (a repeat), so seq
    // order is: open, closed, closed, open, closed.
    let stored = store
        .commit(
            &[],
            [
                AlertKind::Sos,
                AlertKind::Sos,
                AlertKind::Sos,
                AlertKind::Fall,
                AlertKind::Fall,
            ]
            .into_iter()
            .map(|kind| alert(p.id, kind))
            .collect(),
        )
        .await
        .unwrap();
    let states: Vec<AlertState> = stored.iter().map(|a| a.state).collect();
    assert_eq!(
        states,
        [
            AlertState::Open,
            AlertState::Closed,
            AlertState::Closed,
            AlertState::Open,
            AlertState::Closed
        ]
    );
    let seqs = |alerts: Vec<Alert>| alerts.iter().map(|a| a.seq).collect::<Vec<_>>();
    let query = AlertQuery {
        person_id: Some(p.id),
        limit: 2,
        ..Default::default()
    };
    let newest = store
        .alerts(AlertQuery {
            newest_first: true,
            ..query
        })
        .await
        .unwrap();
    assert_eq!(seqs(newest), [stored[4].seq, stored[3].seq]);
    let unclosed = store
        .alerts(AlertQuery {
            open_only: true,
            limit: 10,
            ..query
        })
        .await
        .unwrap();
    assert_eq!(
        seqs(unclosed),
        [stored[0].seq, stored[3].seq],
        "oldest first"
    );
    let unclosed_after_first = store
        .alerts(AlertQuery {
            after: stored[0].seq,
            open_only: true,
            newest_first: true,
            ..query
        })
        .await
        .unwrap();
    assert_eq!(seqs(unclosed_after_first), [stored[3].seq]);
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

/// The store writer tries a batch again when the connection dropped during its commit; if the
/// commit had in fact gone through, the second try must not store its alerts (or their feed
/// events) again, nor refuse the batch.
async fn a_batch_committed_again_stores_its_alerts_once(store: Arc<dyn Store>) {
    let p = person(store.as_ref()).await;
    let fixes = [fix(p.id, at(0))];
    let breach = alert(p.id, AlertKind::ZoneExit);
    let first = store.commit(&fixes, vec![breach.clone()]).await.unwrap();
    assert_eq!(first.len(), 1);
    let sos = alert(p.id, AlertKind::Sos);
    let again = store
        .commit(&fixes, vec![breach.clone(), sos.clone()])
        .await
        .unwrap();
    assert_eq!(
        again.iter().map(|a| a.id).collect::<Vec<_>>(),
        [sos.id],
        "only the alert not stored before is new"
    );
    let alerts = store
        .alerts(AlertQuery {
            limit: 100,
            ..AlertQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(
        alerts.iter().map(|a| a.id).collect::<Vec<_>>(),
        [breach.id, sos.id]
    );
    let raised: Vec<_> = store
        .events(feed(0))
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == EventKind::AlertRaised)
        .collect();
    assert_eq!(raised.len(), 2, "one feed event per alert");
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

/// A wristband worn by one person and then handed to another: each person's track, export and
/// counts hold the positions attributed to them, from every device they wore, and nothing else.
async fn a_device_passed_on_keeps_each_persons_positions_apart(store: Arc<dyn Store>) {
    let (first, second) = (person(store.as_ref()).await, person(store.as_ref()).await);
    let worn = |person: PersonId, device: &str, second: i64| Fix {
        device_id: device.into(),
        ..fix(person, at(second))
    };
    let shared = "359339075001234";
    let own = "359339075005678";
    let batches = [
        vec![worn(first.id, shared, 0), worn(second.id, own, 0)],
        vec![worn(first.id, shared, 10), worn(second.id, own, 10)],
        // The shared wristband goes to the second person, who now wears both.
        vec![worn(second.id, shared, 20), worn(second.id, own, 20)],
        vec![worn(second.id, shared, 30)],
    ];
    for batch in &batches {
        store.commit(batch, Vec::new()).await.unwrap();
    }
    let (from, to) = all_time();
    let of = |person: PersonId| {
        let mut fixes: Vec<Fix> = batches
            .iter()
            .flatten()
            .filter(|f| f.person_id == person)
            .cloned()
            .collect();
        fixes.sort_by(|a, b| (a.time, &a.device_id).cmp(&(b.time, &b.device_id)));
        fixes
    };
    for p in [first.id, second.id] {
        let mut track = store.track(p, from, to, 100).await.unwrap();
        track.sort_by(|a, b| (a.time, &a.device_id).cmp(&(b.time, &b.device_id)));
        assert_eq!(track, of(p));
        let records = store
            .person_records(ewall::store::ChainTable::Positions, p, from, to, 0, 100)
            .await
            .unwrap();
        assert_eq!(records.len(), of(p).len());
        // Paged by row id: the second page starts after the first page's last row.
        let page = store
            .person_records(
                ewall::store::ChainTable::Positions,
                p,
                from,
                to,
                records[0].key,
                100,
            )
            .await
            .unwrap();
        assert_eq!(page.len(), records.len() - 1);
        assert!(page.iter().all(|r| r.key > records[0].key));
    }
    assert_eq!(
        store.position_counts(first.id, from, to).await.unwrap(),
        [(shared.to_string(), 2)]
    );
    assert_eq!(
        store.position_counts(second.id, from, to).await.unwrap(),
        [(shared.to_string(), 2), (own.to_string(), 3)]
    );
    // A limited track is the earliest positions, in time order.
    let earliest = store.track(second.id, from, to, 2).await.unwrap();
    assert_eq!(
        earliest.iter().map(|f| f.time).collect::<Vec<_>>(),
        [at(0), at(10)]
    );
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
    // A curfew is a breach of an inclusion zone, open until its `returned`.
    let curfew = new_id();
    store
        .commit(&[], vec![zoned(AlertKind::Curfew, curfew, false)])
        .await
        .unwrap();
    let mut open_breaches = store.open_breaches().await.unwrap();
    open_breaches.retain(|b| b.zone_id == curfew);
    assert_eq!(open_breaches.len(), 1, "{open_breaches:?}");
    assert_eq!(open_breaches[0].kind, ZoneKind::Inclusion);
}

async fn shared_and_scheduled_zones_keep_their_scope_schedule_and_persons(store: Arc<dyn Store>) {
    use ewall::model::ZoneScope;
    let (a, b) = (person(store.as_ref()).await, person(store.as_ref()).await);
    let schedule: ewall::schedule::Schedule = serde_json::from_value(serde_json::json!([
        {"days": ["mon", "sun"], "from": "22:00", "to": "06:00"}
    ]))
    .unwrap();
    let zone = |name: &str, scope, persons: Vec<PersonId>, schedule| ZoneRecord {
        id: new_id(),
        name: name.into(),
        kind: ZoneKind::Exclusion,
        source_crs: Crs::Wgs84,
        radius_m: Some(300.0),
        geometry: r#"{"type":"Point","coordinates":[112.3,25.5]}"#.into(),
        wifi: ZoneWifi::default(),
        scope,
        persons,
        schedule,
        created_at: Utc.timestamp_micros(1_700_000_000_000_001).unwrap(),
    };
    let mut listed_persons = vec![a.id, b.id];
    listed_persons.sort();
    let listed = zone("street", ZoneScope::Persons, listed_persons, Some(schedule));
    let everyone = zone("border post", ZoneScope::Everyone, Vec::new(), None);
    let strict = zone(
        "airport",
        ZoneScope::Level(SupervisionLevel::Strict),
        Vec::new(),
        None,
    );
    for z in [&listed, &everyone, &strict] {
        store.create_zone(z).await.unwrap();
    }
    assert_eq!(store.zone(listed.id).await.unwrap(), listed);
    assert_eq!(store.zone(strict.id).await.unwrap(), strict);
    let all = store.zones().await.unwrap();
    assert_eq!(all.len(), 3);
    for z in [&listed, &everyone, &strict] {
        assert!(all.contains(z), "{z:?} in {all:?}");
    }
    // The listed persons are ordinary assignments.
    assert_eq!(store.person_zones(a.id).await.unwrap(), vec![listed.id]);
    // A zone listing a person who does not exist is not stored at all.
    let ghost = zone("ghost", ZoneScope::Persons, vec![a.id, new_id()], None);
    assert!(matches!(
        store.create_zone(&ghost).await,
        Err(StoreError::UnknownReference(_))
    ));
    assert!(matches!(
        store.zone(ghost.id).await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(store.person_zones(a.id).await.unwrap(), vec![listed.id]);
}

fn operator() -> Actor {
    Actor {
        token_id: Some(new_id()),
        label: Some("night shift, desk 2".into()),
    }
}

fn step(step: AlertStep, note: Option<&str>, at: DateTime<Utc>) -> AlertActionRequest {
    AlertActionRequest {
        step,
        actor: operator(),
        note: note.map(Into::into),
        at,
    }
}

async fn the_alert_workflow_moves_forward_only(store: Arc<dyn Store>) {
    let p = person(store.as_ref()).await;
    let a = store
        .commit(&[], vec![alert(p.id, AlertKind::ZoneExit)])
        .await
        .unwrap()[0]
        .clone();
    let now = Utc.timestamp_micros(1_780_000_000_000_007).unwrap();
    let conflict = |result: Result<Alert, StoreError>| {
        assert!(matches!(result, Err(StoreError::Conflict(_))), "{result:?}");
    };
    // Skipping a state is refused, and changes nothing.
    for skip in [
        AlertStep::Verify,
        AlertStep::Dispose(Disposition::Warned),
        AlertStep::Close,
    ] {
        conflict(store.record_alert_action(a.id, step(skip, None, now)).await);
    }
    assert_eq!(store.alert(a.id).await.unwrap(), a);
    let acked = store
        .record_alert_action(a.id, step(AlertStep::Acknowledge, Some("called him"), now))
        .await
        .unwrap();
    assert_eq!(acked.state, AlertState::Acknowledged);
    assert_eq!(acked.note.as_deref(), Some("called him"));
    assert_eq!(acked.acknowledged_at, Some(now));
    assert_eq!(store.alert(a.id).await.unwrap(), acked);
    conflict(
        store
            .record_alert_action(a.id, step(AlertStep::Acknowledge, None, now))
            .await,
    );
    let later = |minutes| now + Duration::minutes(minutes);
    store
        .record_alert_action(a.id, step(AlertStep::Verify, None, later(1)))
        .await
        .unwrap();
    let disposed = store
        .record_alert_action(
            a.id,
            step(
                AlertStep::Dispose(Disposition::ReturnedByItself),
                Some("back home by 08:20"),
                later(2),
            ),
        )
        .await
        .unwrap();
    assert_eq!(disposed.disposition, Some(Disposition::ReturnedByItself));
    assert_eq!(disposed.note.as_deref(), Some("back home by 08:20"));
    // Going back is refused.
    conflict(
        store
            .record_alert_action(a.id, step(AlertStep::Verify, None, later(3)))
            .await,
    );
    let closed = store
        .record_alert_action(a.id, step(AlertStep::Close, None, later(3)))
        .await
        .unwrap();
    assert_eq!(closed.state, AlertState::Closed);
    assert_eq!(closed.acknowledged_at, Some(now));
    assert_eq!(closed.verified_at, Some(later(1)));
    assert_eq!(closed.disposed_at, Some(later(2)));
    assert_eq!(closed.closed_at, Some(later(3)));
    assert_eq!(
        closed.note.as_deref(),
        Some("back home by 08:20"),
        "the latest note stays without a new one"
    );
    assert_eq!(store.alert(a.id).await.unwrap(), closed);
    conflict(
        store
            .record_alert_action(a.id, step(AlertStep::Resolve(None), None, later(4)))
            .await,
    );
    assert!(matches!(
        store
            .record_alert_action(new_id(), step(AlertStep::Acknowledge, None, now))
            .await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.alert_actions(new_id()).await,
        Err(StoreError::NotFound { .. })
    ));
}

/// Issue 7, defect 6: the note written at acknowledgement was replaced by the one written at
/// resolution. Every step keeps its own note, with who took it and when.
async fn every_step_keeps_its_note_and_who_took_it(store: Arc<dyn Store>) {
    let p = person(store.as_ref()).await;
    let a = store
        .commit(&[], vec![alert(p.id, AlertKind::ZoneExit)])
        .await
        .unwrap()
        .remove(0);
    let now = Utc.timestamp_micros(1_780_000_000_000_007).unwrap();
    let desk = operator();
    let mut ack = step(AlertStep::Acknowledge, Some("calling the wearer"), now);
    ack.actor = desk.clone();
    store.record_alert_action(a.id, ack).await.unwrap();
    let resolved = store
        .record_alert_action(
            a.id,
            step(
                AlertStep::Resolve(Some(Disposition::FalseAlarm)),
                Some("at home, the GPS drifted"),
                now + Duration::minutes(5),
            ),
        )
        .await
        .unwrap();
    assert_eq!(resolved.state, AlertState::Closed);
    assert_eq!(resolved.disposition, Some(Disposition::FalseAlarm));
    let actions = store.alert_actions(a.id).await.unwrap();
    let moves: Vec<(AlertState, AlertState)> = actions
        .iter()
        .map(|a| (a.previous_state, a.state))
        .collect();
    assert_eq!(
        moves,
        [
            (AlertState::Open, AlertState::Acknowledged),
            (AlertState::Acknowledged, AlertState::Verified),
            (AlertState::Verified, AlertState::Disposed),
            (AlertState::Disposed, AlertState::Closed),
        ]
    );
    let notes: Vec<Option<&str>> = actions.iter().map(|a| a.note.as_deref()).collect();
    assert_eq!(
        notes,
        [
            Some("calling the wearer"),
            None,
            None,
            Some("at home, the GPS drifted")
        ],
        "both notes kept"
    );
    assert_eq!(actions[0].actor, desk);
    assert_eq!(actions[0].at, now);
    assert!(actions[1..]
        .iter()
        .all(|a| a.at == now + Duration::minutes(5)));
    assert_eq!(actions[2].disposition, Some(Disposition::FalseAlarm));
    // Each step appended its own event, in order, carrying the alert as that step left it.
    let events = store.events(feed(a.seq)).await.unwrap();
    let kinds: Vec<String> = events.iter().map(|e| e.kind.to_string()).collect();
    assert_eq!(
        kinds,
        [
            "alert.acknowledged",
            "alert.verified",
            "alert.disposed",
            "alert.closed"
        ]
    );
    for (event, action) in events.iter().zip(&actions) {
        assert_eq!(action.event_seq, Some(event.seq));
        assert_eq!(event.data["state"], action.state.as_str());
    }
}

/// One alert per (person, kind, zone) in the operators' queue: a second raise while the first
/// is not closed is stored as a repeat, born closed by the service; once the first is closed,
/// the next raise opens a new one. An `implausible_jump` is born closed.
async fn one_alert_per_episode_is_open_and_repeats_are_born_closed(store: Arc<dyn Store>) {
    let p = person(store.as_ref()).await;
    let zone = new_id();
    let exit = || Alert {
        zone_id: Some(zone),
        ..alert(p.id, AlertKind::ZoneExit)
    };
    let first = store.commit(&[], vec![exit()]).await.unwrap().remove(0);
    assert_eq!(first.state, AlertState::Open);
    let batch = store
        .commit(
            &[],
            vec![
                exit(),
                alert(p.id, AlertKind::ImplausibleJump),
                Alert {
                    zone_id: Some(new_id()),
                    ..alert(p.id, AlertKind::ZoneExit)
                },
                exit(),
            ],
        )
        .await
        .unwrap();
    let states: Vec<AlertState> = batch.iter().map(|a| a.state).collect();
    assert_eq!(
        states,
        [
            AlertState::Closed,
            AlertState::Closed,
            AlertState::Open,
            AlertState::Closed
        ]
    );
    assert_eq!(batch[0].repeat_of, Some(first.id));
    assert_eq!(batch[3].repeat_of, Some(first.id));
    assert_eq!(batch[1].repeat_of, None);
    for born_closed in [&batch[0], &batch[1]] {
        assert_eq!(&store.alert(born_closed.id).await.unwrap(), born_closed);
        assert_eq!(born_closed.closed_at, Some(born_closed.raised_at));
        let actions = store.alert_actions(born_closed.id).await.unwrap();
        assert_eq!(actions.len(), 1);
        assert_eq!(actions[0].actor, Actor::service());
        assert_eq!(actions[0].state, AlertState::Closed);
        assert_eq!(actions[0].event_seq, Some(born_closed.seq));
        assert!(actions[0].note.is_some(), "the service says why");
    }
    // The raised event carries the closed alert; no alert.closed follows it.
    let events = store.events(feed(first.seq)).await.unwrap();
    assert!(events.iter().all(|e| e.kind == EventKind::AlertRaised));
    assert_eq!(events[0].data["state"], "closed");
    assert_eq!(events[0].data["repeat_of"], first.id.to_string());

    store
        .record_alert_action(
            first.id,
            step(
                AlertStep::Resolve(Some(Disposition::Warned)),
                None,
                Utc::now(),
            ),
        )
        .await
        .unwrap();
    let next = store.commit(&[], vec![exit()]).await.unwrap().remove(0);
    assert_eq!(
        next.state,
        AlertState::Open,
        "a new episode once the first is closed"
    );
    assert_eq!(next.repeat_of, None);
}

/// The counts behind `GET /stats/alerts` over a small scenario: three breaches disposed (two
/// false alarms), one still open, a repeat and a jump; the window leaves out an older alert.
async fn alert_statistics_count_each_dimension_and_the_false_alarm_rate(store: Arc<dyn Store>) {
    let p = person(store.as_ref()).await;
    let (home, school) = (new_id(), new_id());
    let raised = |kind, zone: Option<ZoneId>, second: i64| Alert {
        zone_id: zone,
        raised_at: at(second),
        ..alert(p.id, kind)
    };
    let stored = store
        .commit(
            &[],
            vec![
                raised(AlertKind::ZoneExit, Some(home), -3_600),
                raised(AlertKind::ZoneExit, Some(home), 10),
                raised(AlertKind::ZoneEnter, Some(school), 20),
                raised(AlertKind::Sos, None, 30),
                raised(AlertKind::Tamper, None, 40),
                raised(AlertKind::Tamper, None, 50),
                raised(AlertKind::ImplausibleJump, None, 60),
            ],
        )
        .await
        .unwrap();
    // The second exit of home and the second tamper come while the first is still open.
    assert_eq!(stored[1].repeat_of, Some(stored[0].id));
    assert_eq!(stored[5].repeat_of, Some(stored[4].id));
    for (i, disposition) in [
        (2, Disposition::FalseAlarm),
        (3, Disposition::Escalated),
        (4, Disposition::FalseAlarm),
    ] {
        store
            .record_alert_action(
                stored[i].id,
                step(AlertStep::Resolve(Some(disposition)), None, Utc::now()),
            )
            .await
            .unwrap();
    }
    let stats = store.alert_stats(at(0), at(3_600)).await.unwrap();
    assert_eq!((stats.from, stats.to), (at(0), at(3_600)));
    assert_eq!(stats.alerts, 4, "{stats:?}");
    assert_eq!(stats.repeats, 2);
    let map = |pairs: &[(&str, u64)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    assert_eq!(
        stats.by_kind,
        map(&[
            ("implausible_jump", 1),
            ("sos", 1),
            ("tamper", 1),
            ("zone_enter", 1)
        ])
    );
    assert_eq!(stats.by_zone, map(&[(school.to_string().as_str(), 1)]));
    assert_eq!(stats.by_severity, map(&[("high", 4)]));
    assert_eq!(stats.by_level, map(&[("strict", 4)]));
    assert_eq!(stats.by_state, map(&[("closed", 4)]));
    assert_eq!(
        stats.by_disposition,
        map(&[("escalated", 1), ("false_alarm", 2)])
    );
    assert_eq!(stats.disposed, 3);
    assert!((stats.false_alarm_rate.unwrap() - 2.0 / 3.0).abs() < 1e-12);
    let empty = store.alert_stats(at(7_200), at(7_300)).await.unwrap();
    assert_eq!(empty.alerts, 0);
    assert_eq!(empty.false_alarm_rate, None);
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
                        ..Default::default()
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
        scope: Default::default(),
        persons: Vec::new(),
        schedule: None,
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
        .record_alert_action(
            stored[0].id,
            step(AlertStep::Acknowledge, Some("called"), Utc::now()),
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
            ..Default::default()
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
        .record_alert_action(a.id, step(AlertStep::Acknowledge, None, Utc::now()))
        .await
        .unwrap();
    let before = store.last_event_seq().await.unwrap();
    assert!(store
        .record_alert_action(a.id, step(AlertStep::Close, None, Utc::now()))
        .await
        .is_err());
    assert!(store
        .record_alert_action(a.id, step(AlertStep::Resolve(None), None, Utc::now()))
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

fn border_hit(person: PersonId, reference: &str) -> Alert {
    Alert {
        severity: Severity::Critical,
        time: at(30),
        border: Some(ewall::model::BorderCheck {
            port: "Luohu".into(),
            reference: reference.into(),
        }),
        ..alert(person, AlertKind::BorderHit)
    }
}

async fn a_border_hit_is_raised_once_per_reference_in_the_feed(store: Arc<dyn Store>) {
    let p = person(store.as_ref()).await;
    let before = store.last_event_seq().await.unwrap();
    let (raised, new) = store
        .raise_border_hit(border_hit(p.id, "SZ-2026-0001"))
        .await
        .unwrap();
    assert!(new);
    assert!(raised.seq > before);
    assert_eq!(
        store.alert(raised.id).await.unwrap(),
        raised,
        "read back exactly"
    );
    // A retry under the same reference writes nothing and finds the first.
    let (again, new) = store
        .raise_border_hit(border_hit(p.id, "SZ-2026-0001"))
        .await
        .unwrap();
    assert!(!new);
    assert_eq!(again, raised);
    let events = store.events(feed(before)).await.unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].kind, EventKind::AlertRaised);
    assert_eq!(events[0].seq, raised.seq);
    assert_eq!(events[0].data["border"]["reference"], "SZ-2026-0001");
    // Another reference is another alert; an unknown person is refused and writes nothing.
    let (other, new) = store
        .raise_border_hit(border_hit(p.id, "SZ-2026-0002"))
        .await
        .unwrap();
    assert!(new && other.seq > raised.seq);
    assert!(matches!(
        store
            .raise_border_hit(border_hit(new_id(), "SZ-2026-0003"))
            .await,
        Err(StoreError::UnknownReference(_))
    ));
    assert_eq!(store.last_event_seq().await.unwrap(), other.seq);
    // Concurrent reports of one reference raise one alert.
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .raise_border_hit(border_hit(p.id, "SZ-2026-0004"))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut raised_now = 0;
    for task in tasks {
        raised_now += usize::from(task.await.unwrap().1);
    }
    assert_eq!(raised_now, 1);
    let alerts = store
        .alerts(AlertQuery {
            after: 0,
            person_id: Some(p.id),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(alerts.len(), 3);
    // Alerts without a border check read back without one.
    let plain = store
        .commit(&[], vec![alert(p.id, AlertKind::Sos)])
        .await
        .unwrap();
    assert_eq!(store.alert(plain[0].id).await.unwrap().border, None);
}

async fn integration_reads_are_kept_and_listed_by_token_and_time(store: Arc<dyn Store>) {
    let (a, b) = (new_id(), new_id());
    let read = |token, second, records| IntegrationRead {
        seq: 0,
        token_id: token,
        at: at(second) + Duration::microseconds(250),
        method: "GET".into(),
        path: "/api/v1/alerts".into(),
        query: (records > 0).then(|| format!("after=0&limit={records}")),
        status: 200,
        records,
    };
    for (token, second, records) in [(a, 0, 3), (b, 10, 0), (a, 20, 7), (a, 30, 0)] {
        store
            .record_integration_read(&read(token, second, records))
            .await
            .unwrap();
    }
    let all = |query: IntegrationReadQuery| {
        let store = store.clone();
        async move {
            store
                .integration_reads(IntegrationReadQuery {
                    limit: 100,
                    ..query
                })
                .await
                .unwrap()
        }
    };
    let every = all(IntegrationReadQuery::default()).await;
    assert_eq!(every.len(), 4);
    assert!(every.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(
        IntegrationRead {
            seq: 0,
            ..every[2].clone()
        },
        read(a, 20, 7),
        "read back exactly"
    );
    let of_a = all(IntegrationReadQuery {
        token_id: Some(a),
        ..Default::default()
    })
    .await;
    assert_eq!(
        of_a.iter().map(|r| r.records).collect::<Vec<_>>(),
        [3, 7, 0]
    );
    let window = all(IntegrationReadQuery {
        token_id: Some(a),
        from: Some(at(10)),
        to: Some(at(20) + Duration::seconds(1)),
        ..Default::default()
    })
    .await;
    assert_eq!(window.len(), 1);
    assert_eq!(window[0].records, 7);
    let page = all(IntegrationReadQuery {
        after: every[1].seq,
        ..Default::default()
    })
    .await;
    assert_eq!(page.len(), 2);
    let limited = store
        .integration_reads(IntegrationReadQuery {
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(limited, every[..1]);
}

async fn last_heard_times_only_move_forward_and_latest_fixes_are_the_newest_valid(
    store: Arc<dyn Store>,
) {
    let p = person(store.as_ref()).await;
    let heard = |second: i64| DeviceHeard {
        device_id: IMEI.into(),
        person_id: p.id,
        received_at: at(second),
    };
    store.record_heard(&[heard(10), heard(30)]).await.unwrap();
    store.record_heard(&[heard(20)]).await.unwrap();
    assert_eq!(store.heard_times().await.unwrap(), vec![heard(30)]);
    store.record_heard(&[]).await.unwrap();
    let mut skewed = fix(p.id, at(500));
    skewed.clock_skew = true;
    let mut invalid = fix(p.id, at(400));
    invalid.valid = false;
    store
        .commit(
            &[fix(p.id, at(100)), fix(p.id, at(200)), skewed, invalid],
            Vec::new(),
        )
        .await
        .unwrap();
    let latest = store.latest_fixes().await.unwrap();
    assert_eq!(latest.len(), 1, "{latest:?}");
    assert_eq!(latest[0].time, at(200));
    assert_eq!(latest[0].device_id, IMEI);
}

async fn open_episodes_are_the_unreturned_offline_and_unsupervised_alerts(store: Arc<dyn Store>) {
    let p = person(store.as_ref()).await;
    let q = person(store.as_ref()).await;
    let on = |person: PersonId, kind, device: Option<&str>, second| Alert {
        device_id: device.map(str::to_owned),
        time: at(second),
        position: None,
        ..alert(person, kind)
    };
    let other = "864717003283599";
    store
        .commit(
            &[],
            vec![
                // p's first device: offline, then back.
                on(p.id, AlertKind::Offline, Some(IMEI), 1),
                on(p.id, AlertKind::Returned, Some(IMEI), 2),
                // p's second device: offline still.
                on(p.id, AlertKind::Offline, Some(other), 3),
                // q: unsupervised; a zone's return does not end it.
                on(q.id, AlertKind::Unsupervised, None, 4),
                Alert {
                    zone_id: Some(new_id()),
                    ..on(q.id, AlertKind::Returned, None, 5)
                },
            ],
        )
        .await
        .unwrap();
    let mut open = store.open_episodes().await.unwrap();
    open.sort_by_key(|e| e.since);
    assert_eq!(open.len(), 2, "{open:?}");
    assert_eq!(
        (
            open[0].person_id,
            open[0].device_id.as_deref(),
            open[0].kind,
            open[0].since
        ),
        (p.id, Some(other), AlertKind::Offline, at(3))
    );
    assert_eq!(
        (
            open[1].person_id,
            open[1].device_id.as_deref(),
            open[1].kind
        ),
        (q.id, None, AlertKind::Unsupervised)
    );
    let timer = store.timer_alerts(at(0)).await.unwrap();
    assert!(timer.is_empty(), "{timer:?}");
}

async fn a_leave_overdue_is_an_open_breach_of_its_zone(store: Arc<dyn Store>) {
    let p = person(store.as_ref()).await;
    let zone = ZoneRecord {
        id: new_id(),
        name: "home".into(),
        kind: ZoneKind::Inclusion,
        source_crs: Crs::Wgs84,
        radius_m: Some(300.0),
        geometry: r#"{"type":"Point","coordinates":[112.3,25.5]}"#.into(),
        wifi: ZoneWifi::default(),
        scope: Default::default(),
        persons: Vec::new(),
        schedule: None,
        created_at: at(0),
    };
    store.create_zone(&zone).await.unwrap();
    let overdue = Alert {
        zone_id: Some(zone.id),
        time: at(60),
        ..alert(p.id, AlertKind::LeaveOverdue)
    };
    store.commit(&[], vec![overdue]).await.unwrap();
    let open = store.open_breaches().await.unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(
        (open[0].zone_id, open[0].kind, open[0].since),
        (zone.id, ZoneKind::Inclusion, at(60))
    );
    let timer = store.timer_alerts(at(0)).await.unwrap();
    assert_eq!(timer.len(), 1);
    assert_eq!(
        (timer[0].kind, timer[0].zone_id, timer[0].time),
        (AlertKind::LeaveOverdue, Some(zone.id), at(60))
    );
    assert!(store.timer_alerts(at(61)).await.unwrap().is_empty());
    let back = Alert {
        zone_id: Some(zone.id),
        time: at(90),
        ..alert(p.id, AlertKind::Returned)
    };
    store.commit(&[], vec![back]).await.unwrap();
    assert!(store.open_breaches().await.unwrap().is_empty());
}

async fn leaves_are_closed_once_and_listed_by_their_end(store: Arc<dyn Store>) {
    let p = person(store.as_ref()).await;
    let zone = ZoneRecord {
        id: new_id(),
        name: "home".into(),
        kind: ZoneKind::Inclusion,
        source_crs: Crs::Wgs84,
        radius_m: Some(300.0),
        geometry: r#"{"type":"Point","coordinates":[112.3,25.5]}"#.into(),
        wifi: ZoneWifi::default(),
        scope: Default::default(),
        persons: Vec::new(),
        schedule: None,
        created_at: at(0),
    };
    store.create_zone(&zone).await.unwrap();
    let leave = |from: i64, to: i64| LeavePermit {
        id: new_id(),
        person_id: p.id,
        from: at(from),
        to: at(to),
        zone_ids: vec![zone.id],
        reason: "hospital".into(),
        approved_by: "officer 7".into(),
        created_at: at(0),
        cancelled_at: None,
        ended_at: None,
    };
    let (early, late) = (leave(100, 200), leave(300, 400));
    store.create_leave(&early).await.unwrap();
    store.create_leave(&late).await.unwrap();
    assert_eq!(store.leave(early.id).await.unwrap(), early);
    let unknown_zone = LeavePermit {
        zone_ids: vec![new_id()],
        ..leave(1, 2)
    };
    assert!(matches!(
        store.create_leave(&unknown_zone).await,
        Err(StoreError::UnknownReference(_))
    ));
    let listed: Vec<_> = store
        .leaves(p.id)
        .await
        .unwrap()
        .iter()
        .map(|l| l.id)
        .collect();
    assert_eq!(listed, vec![late.id, early.id]);
    let ended = store
        .close_leave(late.id, LeaveClosing::EndEarly, at(350))
        .await
        .unwrap();
    assert_eq!(ended.ended_at, Some(at(350)));
    assert_eq!(ended.end(), at(350));
    // The first closing stays.
    let again = store
        .close_leave(late.id, LeaveClosing::Cancel, at(360))
        .await
        .unwrap();
    assert_eq!((again.ended_at, again.cancelled_at), (Some(at(350)), None));
    store
        .close_leave(early.id, LeaveClosing::Cancel, at(150))
        .await
        .unwrap();
    let current: Vec<_> = store
        .leaves_ending_since(at(0))
        .await
        .unwrap()
        .iter()
        .map(|l| l.id)
        .collect();
    assert_eq!(current, vec![late.id], "cancelled leaves owe nothing");
    assert!(store.leaves_ending_since(at(351)).await.unwrap().is_empty());
}

async fn order_steps_are_recorded_once_with_their_events(store: Arc<dyn Store>) {
    let p = person(store.as_ref()).await;
    let order = |started: Option<DateTime<Utc>>| MonitoringOrder {
        id: new_id(),
        person_id: p.id,
        ground: "community correction".into(),
        approved_by: "county court".into(),
        from: at(0),
        to: at(86_400),
        created_at: at(0),
        started_at: started,
        ended_at: None,
    };
    let before = store.last_event_seq().await.unwrap();
    let running = order(Some(at(0)));
    let waiting = order(None);
    store.create_order(&running).await.unwrap();
    store.create_order(&waiting).await.unwrap();
    let started = store
        .step_order(waiting.id, OrderStep::Started, at(10))
        .await
        .unwrap()
        .expect("started once");
    assert_eq!(started.started_at, Some(at(10)));
    assert!(store
        .step_order(waiting.id, OrderStep::Started, at(11))
        .await
        .unwrap()
        .is_none());
    let ended = store
        .step_order(running.id, OrderStep::Ended, at(20))
        .await
        .unwrap()
        .expect("ended once");
    assert_eq!(ended.ended_at, Some(at(20)));
    assert!(!ended.is_current());
    assert!(store
        .step_order(running.id, OrderStep::Ended, at(21))
        .await
        .unwrap()
        .is_none());
    let open: Vec<_> = store
        .open_orders()
        .await
        .unwrap()
        .iter()
        .map(|o| o.id)
        .collect();
    assert_eq!(open, vec![waiting.id]);
    assert_eq!(store.orders(p.id).await.unwrap().len(), 2);
    let events: Vec<(EventKind, serde_json::Value)> = store
        .events(feed(before))
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.kind, e.data["id"].clone()))
        .collect();
    assert_eq!(
        events,
        vec![
            (EventKind::OrderStarted, serde_json::json!(running.id)),
            (EventKind::OrderStarted, serde_json::json!(waiting.id)),
            (EventKind::OrderEnded, serde_json::json!(running.id)),
        ]
    );
    let nobody = MonitoringOrder {
        person_id: new_id(),
        ..order(None)
    };
    assert!(matches!(
        store.create_order(&nobody).await,
        Err(StoreError::NotFound { .. })
    ));
}

async fn orders_in_force_are_those_overlapping_a_window_released_persons_too(
    store: Arc<dyn Store>,
) {
    let p = person(store.as_ref()).await;
    let order = |from: i64, to: i64| MonitoringOrder {
        id: new_id(),
        person_id: p.id,
        ground: "community correction".into(),
        approved_by: "county court".into(),
        from: at(from),
        to: at(to),
        created_at: at(from),
        started_at: Some(at(from)),
        ended_at: None,
    };
    // The window is [100, 200).
    let before = order(0, 99);
    let ended_before = order(0, 300);
    let ends_at_start = order(0, 100);
    let ended_inside = order(50, 300);
    let running = order(150, 400);
    let starts_at_end = order(200, 300);
    for o in [
        &before,
        &ended_before,
        &ends_at_start,
        &ended_inside,
        &running,
        &starts_at_end,
    ] {
        store.create_order(o).await.unwrap();
    }
    for (o, end) in [(&ended_before, 99), (&ended_inside, 120)] {
        store
            .step_order(o.id, OrderStep::Ended, at(end))
            .await
            .unwrap()
            .expect("ended once");
    }
    // Still listed once the person is released (which records the ends that passed unrecorded).
    store.delete_person(p.id).await.unwrap();
    let found: Vec<_> = store
        .orders_in_force(at(100), at(200))
        .await
        .unwrap()
        .iter()
        .map(|o| (o.id, o.ended_at))
        .collect();
    assert_eq!(
        found,
        vec![
            (ends_at_start.id, Some(at(100))),
            (ended_inside.id, Some(at(120))),
            (running.id, Some(at(400))),
        ]
    );
}

async fn deleting_a_person_ends_their_open_orders_with_the_deletion(store: Arc<dyn Store>) {
    use chrono::SubsecRound;

    let p = person(store.as_ref()).await;
    let other = person(store.as_ref()).await;
    let now = Utc::now().trunc_subsecs(0);
    let order =
        |person: PersonId, from: DateTime<Utc>, to: DateTime<Utc>, started: bool| MonitoringOrder {
            id: new_id(),
            person_id: person,
            ground: "community correction".into(),
            approved_by: "county court".into(),
            from,
            to,
            created_at: from,
            started_at: started.then_some(from),
            ended_at: None,
        };
    // In force; ran out unrecorded; ended before; not started yet; another person's.
    let running = order(
        p.id,
        now - Duration::days(1),
        now + Duration::days(30),
        true,
    );
    let lapsed = order(p.id, at(0), at(100), true);
    let ended = order(p.id, at(0), at(1_000), true);
    let waiting = order(
        p.id,
        now + Duration::days(1),
        now + Duration::days(60),
        false,
    );
    let others = order(
        other.id,
        now - Duration::days(1),
        now + Duration::days(30),
        true,
    );
    for o in [&running, &lapsed, &ended, &waiting, &others] {
        store.create_order(o).await.unwrap();
    }
    store
        .step_order(ended.id, OrderStep::Ended, at(20))
        .await
        .unwrap()
        .expect("ended once");
    let open_ids = |orders: Vec<MonitoringOrder>| -> BTreeSet<_> {
        orders.into_iter().map(|o| o.id).collect()
    };
    let open_before = open_ids(store.open_orders().await.unwrap());

    // A deletion refused changes no order.
    store.create_device(IMEI, p.id).await.unwrap();
    let before = store.last_event_seq().await.unwrap();
    assert!(matches!(
        store.delete_person(p.id).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(open_ids(store.open_orders().await.unwrap()), open_before);
    assert_eq!(store.last_event_seq().await.unwrap(), before);
    store.delete_device(IMEI).await.unwrap();

    let before = store.last_event_seq().await.unwrap();
    store.delete_person(p.id).await.unwrap();
    let (from, to) = all_time();
    let released = store
        .level_spans(Some(p.id), from, to)
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.released)
        .and_then(|s| s.until)
        .expect("released");
    let ends: std::collections::HashMap<_, _> = store
        .orders(p.id)
        .await
        .unwrap()
        .into_iter()
        .map(|o| (o.id, (o.started_at, o.ended_at)))
        .collect();
    // Ended at the deletion, or at its end date when that came first; a finished order keeps
    // its end, and one not yet started ends unstarted.
    assert_eq!(ends[&running.id], (running.started_at, Some(released)));
    assert_eq!(ends[&lapsed.id], (lapsed.started_at, Some(at(100))));
    assert_eq!(ends[&ended.id], (ended.started_at, Some(at(20))));
    assert_eq!(ends[&waiting.id], (None, Some(released)));
    let open: Vec<_> = store
        .open_orders()
        .await
        .unwrap()
        .iter()
        .map(|o| o.id)
        .collect();
    assert_eq!(open, vec![others.id]);

    // The feed: `order.ended` for each order that had started, then the release.
    let events: Vec<(EventKind, serde_json::Value)> = store
        .events(feed(before))
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.kind, e.data["id"].clone()))
        .collect();
    assert_eq!(
        events,
        vec![
            (EventKind::OrderEnded, serde_json::json!(lapsed.id)),
            (EventKind::OrderEnded, serde_json::json!(running.id)),
            (EventKind::PersonReleased, serde_json::json!(p.id)),
        ]
    );
    // The actions: the deletion, then `order.end` for every order it ended.
    let actions: Vec<(String, String)> = store
        .person_records(ewall::store::ChainTable::Actions, p.id, from, to, 0, 100)
        .await
        .unwrap()
        .iter()
        .map(|r| serde_json::from_slice::<serde_json::Value>(&r.canonical).unwrap())
        .map(|a| {
            (
                a["kind"].as_str().unwrap().to_owned(),
                a["subject"].as_str().unwrap().to_owned(),
            )
        })
        .skip_while(|(kind, _)| kind != "person.delete")
        .collect();
    assert_eq!(
        actions,
        vec![
            ("person.delete".to_owned(), p.id.to_string()),
            ("order.end".to_owned(), lapsed.id.to_string()),
            ("order.end".to_owned(), running.id.to_string()),
            ("order.end".to_owned(), waiting.id.to_string()),
        ]
    );
    let summary = ewall::audit::verify(store.as_ref(), &ewall::audit::VerifyOptions::default())
        .await
        .unwrap();
    assert!(summary.ok, "{summary:?}");
}

async fn check_ins_read_back_newest_first(store: Arc<dyn Store>) {
    let p = person(store.as_ref()).await;
    let checkin = |second: i64, position: Option<AlertPosition>| Checkin {
        id: new_id(),
        person_id: p.id,
        time: at(second),
        method: CheckinMethod::Kiosk,
        position,
        created_at: at(second),
    };
    let first = checkin(10, None);
    let second = checkin(
        20,
        Some(AlertPosition {
            lat: 25.5,
            lon: 112.3,
            accuracy_m: Some(5.0),
        }),
    );
    store.create_checkin(&first).await.unwrap();
    store.create_checkin(&second).await.unwrap();
    assert_eq!(
        store.checkins(p.id, 10).await.unwrap(),
        vec![second.clone(), first.clone()]
    );
    assert_eq!(store.checkins(p.id, 1).await.unwrap(), vec![second.clone()]);
    assert_eq!(store.checkins_since(at(15)).await.unwrap(), vec![second]);
}

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

async fn supervision_spans_follow_enrolment_level_changes_and_release(store: Arc<dyn Store>) {
    let p = person(store.as_ref()).await;
    let other = person(store.as_ref()).await;
    // A change of name alone opens no span; a change of level does.
    store
        .update_person(
            p.id,
            PersonPatch {
                name: Some("Li Wei (2)".into()),
                ..PersonPatch::default()
            },
        )
        .await
        .unwrap();
    store
        .update_person(
            p.id,
            PersonPatch {
                level: Some(SupervisionLevel::Normal),
                ..PersonPatch::default()
            },
        )
        .await
        .unwrap();
    store.delete_person(p.id).await.unwrap();
    let (from, to) = all_time();
    let spans = store.level_spans(Some(p.id), from, to).await.unwrap();
    assert_eq!(spans.len(), 2, "{spans:?}");
    assert_eq!(spans[0].level, SupervisionLevel::Strict);
    assert_eq!(spans[0].since, p.created_at);
    assert_eq!(spans[0].until, Some(spans[1].since));
    assert!(!spans[0].released);
    assert_eq!(spans[1].level, SupervisionLevel::Normal);
    assert_eq!(spans[1].timezone, "Asia/Shanghai");
    assert!(spans[1].released);
    let released_at = spans[1].until.unwrap();
    // After the release only the other person is supervised; a window starting exactly at the
    // release still shows the span that ended there.
    let later = store
        .level_spans(None, released_at + Duration::seconds(1), to)
        .await
        .unwrap();
    assert_eq!(later.len(), 1);
    assert_eq!(later[0].person_id, other.id);
    assert!(later[0].until.is_none());
    let edge = store.level_spans(None, released_at, to).await.unwrap();
    assert_eq!(edge.len(), 2);
    // A window before either enrolment holds nothing.
    let before = store
        .level_spans(None, from, p.created_at - Duration::seconds(1))
        .await
        .unwrap();
    assert!(before.is_empty());
}

async fn month_windows_count_positions_alerts_and_commands(store: Arc<dyn Store>) {
    let p = person(store.as_ref()).await;
    let mut second = fix(p.id, at(60));
    second.device_id = "13800000000".into();
    let mut alerts = vec![alert(p.id, AlertKind::Offline), alert(p.id, AlertKind::Sos)];
    alerts[1].time = at(120);
    store
        .commit(&[fix(p.id, at(0)), second, fix(p.id, at(120))], alerts)
        .await
        .unwrap();
    // Half-open: the fix at the end of the window is left out.
    let counts = store.position_counts(p.id, at(0), at(120)).await.unwrap();
    assert_eq!(
        counts,
        vec![("13800000000".to_owned(), 1), (IMEI.to_owned(), 1)]
    );
    let everything = store.position_counts(p.id, at(0), at(121)).await.unwrap();
    assert_eq!(everything.iter().map(|(_, n)| n).sum::<u64>(), 3);
    assert!(store
        .position_counts(new_id(), at(0), at(121))
        .await
        .unwrap()
        .is_empty());

    let first = store
        .alerts_between(Some(p.id), at(0), at(120))
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].kind, AlertKind::Offline);
    let all = store.alerts_between(None, at(0), at(121)).await.unwrap();
    assert_eq!(all.len(), 2);
    assert!(all[0].seq < all[1].seq);
    assert!(store
        .alerts_between(Some(new_id()), at(0), at(121))
        .await
        .unwrap()
        .is_empty());

    let early = store
        .create_command(&pending(IMEI, at(0), 60))
        .await
        .unwrap();
    store
        .create_command(&pending(IMEI, at(300), 60))
        .await
        .unwrap();
    store
        .create_command(&pending("13800000000", at(10), 60))
        .await
        .unwrap();
    let window = store.commands_between(IMEI, at(0), at(300)).await.unwrap();
    assert_eq!(window, vec![early]);
    assert_eq!(
        store
            .commands_between(IMEI, at(0), at(301))
            .await
            .unwrap()
            .len(),
        2
    );
}

async fn assessments_are_kept_with_their_actor_and_chained(store: Arc<dyn Store>) {
    use ewall::store::reports::{Assessment, AssessmentKind};
    let p = person(store.as_ref()).await;
    let cited = alert(p.id, AlertKind::ZoneExit);
    store.commit(&[], vec![cited.clone()]).await.unwrap();
    let entry = |kind, month: &str, alert_ids| Assessment {
        id: new_id(),
        person_id: p.id,
        kind,
        reason: "left the county twice".into(),
        month: month.into(),
        alert_ids,
        actor: operator(),
        created_at: at(30),
    };
    let warning = entry(AssessmentKind::Warning, "2026-03", vec![cited.id]);
    let praise = entry(AssessmentKind::Praise, "2026-02", Vec::new());
    store.create_assessment(&warning).await.unwrap();
    store.create_assessment(&praise).await.unwrap();
    let unknown = Assessment {
        person_id: new_id(),
        ..entry(AssessmentKind::Reward, "2026-03", Vec::new())
    };
    assert!(matches!(
        store.create_assessment(&unknown).await,
        Err(StoreError::UnknownReference(_))
    ));
    assert_eq!(
        store.assessments(p.id, Some("2026-03")).await.unwrap(),
        vec![warning.clone()]
    );
    let all = store.assessments(p.id, None).await.unwrap();
    assert_eq!(all.len(), 2);
    assert!(store.assessments(new_id(), None).await.unwrap().is_empty());

    let (from, to) = all_time();
    let records = store
        .person_records(ewall::store::ChainTable::Actions, p.id, from, to, 0, 10)
        .await
        .unwrap();
    let kinds: Vec<String> = records
        .iter()
        .map(|r| {
            let v: serde_json::Value = serde_json::from_slice(&r.canonical).unwrap();
            v["kind"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(
        kinds,
        ["person.create", "assessment.create", "assessment.create"]
    );
    let first: serde_json::Value = serde_json::from_slice(&records[1].canonical).unwrap();
    let detail: serde_json::Value =
        serde_json::from_str(first["detail"].as_str().unwrap()).unwrap();
    assert_eq!(detail["kind"], "warning");
    assert_eq!(detail["alert_ids"][0], cited.id.to_string());
    assert_eq!(detail["label"], "night shift, desk 2");
    let summary = ewall::audit::verify(store.as_ref(), &ewall::audit::VerifyOptions::default())
        .await
        .unwrap();
    assert!(summary.ok, "{summary:?}");
}

async fn a_broadcast_stores_its_commands_and_counts_their_states(store: Arc<dyn Store>) {
    use ewall::store::reports::{Broadcast, BroadcastTarget};
    let broadcast = Broadcast {
        id: new_id(),
        text: "社区矫正法 第二十三条".into(),
        to: BroadcastTarget::Level(SupervisionLevel::Strict),
        created_at: at(0),
        expires_at: at(3600),
        created_by: operator(),
    };
    let message = |device: &str| DeviceCommand {
        kind: "message".into(),
        text: Some(broadcast.text.clone()),
        ..pending(device, at(0), 3600)
    };
    let commands = vec![message("dev-a"), message("dev-b"), message("dev-c")];
    let stored = store.create_broadcast(&broadcast, &commands).await.unwrap();
    assert_eq!(stored.len(), 3);
    assert!(stored.windows(2).all(|w| w[0].seq < w[1].seq));
    // The broadcast's commands are ordinary commands: queued for their device.
    let queued = store.pending_commands("dev-b", at(1)).await.unwrap();
    assert_eq!(queued, vec![stored[1].clone()]);

    let summary = store.broadcast(broadcast.id).await.unwrap();
    assert_eq!(summary.broadcast, broadcast);
    assert_eq!(summary.counts.targeted, 3);
    assert_eq!(summary.counts.pending, 3);
    assert_eq!(summary.counts.delivered, 0);

    assert!(store
        .mark_command_sent(stored[0].id, "gt06", "7", at(5))
        .await
        .unwrap());
    assert!(store
        .complete_command(stored[0].id, CommandStatus::Acknowledged, None, at(6))
        .await
        .unwrap());
    assert!(store
        .mark_command_sent(stored[1].id, "jt808", "8", at(5))
        .await
        .unwrap());
    assert!(store
        .complete_command(stored[2].id, CommandStatus::Failed, Some("no"), at(6))
        .await
        .unwrap());
    let counts = store.broadcast(broadcast.id).await.unwrap().counts;
    assert_eq!(counts.targeted, 3);
    assert_eq!(counts.pending, 0);
    assert_eq!(counts.delivered, 2);
    assert_eq!(counts.acknowledged, 1);
    assert_eq!(counts.failed, 1);
    assert_eq!(counts.expired, 0);
    store.expire_commands(at(3600)).await.unwrap();
    assert_eq!(
        store.broadcast(broadcast.id).await.unwrap().counts.expired,
        1
    );

    let later = Broadcast {
        id: new_id(),
        created_at: at(10),
        to: BroadcastTarget::PersonIds(vec![new_id()]),
        ..broadcast.clone()
    };
    store.create_broadcast(&later, &[]).await.unwrap();
    let listed = store.broadcasts(10).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].broadcast, later);
    assert_eq!(listed[0].counts.targeted, 0);
    assert_eq!(store.broadcasts(1).await.unwrap().len(), 1);
    assert!(matches!(
        store.broadcast(new_id()).await,
        Err(StoreError::NotFound { .. })
    ));
    let summary = ewall::audit::verify(store.as_ref(), &ewall::audit::VerifyOptions::default())
        .await
        .unwrap();
    assert!(summary.ok, "{summary:?}");
}

fn home_zone() -> ZoneRecord {
    ZoneRecord {
        id: new_id(),
        name: "home".into(),
        kind: ZoneKind::Inclusion,
        source_crs: Crs::Wgs84,
        radius_m: Some(200.0),
        geometry: r#"{"type":"Point","coordinates":[112.3,25.5]}"#.into(),
        wifi: ZoneWifi::default(),
        created_at: Utc.timestamp_micros(1_700_000_000_000_001).unwrap(),
        scope: Default::default(),
        persons: Vec::new(),
        schedule: None,
    }
}

fn wearer(name: &str, devices: &[(&str, Option<&str>)], zones: &[ZoneId]) -> NewRegistration {
    NewRegistration {
        person: NewPerson {
            name: name.into(),
            level: SupervisionLevel::Strict,
            timezone: "Asia/Shanghai".into(),
        },
        devices: devices
            .iter()
            .map(|(imei, model)| NewDevice {
                imei: (*imei).into(),
                model: model.map(str::to_owned),
            })
            .collect(),
        zones: zones.to_vec(),
    }
}

/// The kinds and details of a person's actions, oldest first, with the ids that differ from
/// one person to the next left out.
async fn actions_of(store: &dyn Store, person: PersonId) -> Vec<(String, serde_json::Value)> {
    let (from, to) = all_time();
    store
        .person_records(ewall::store::ChainTable::Actions, person, from, to, 0, 100)
        .await
        .unwrap()
        .iter()
        .map(|r| {
            let record: serde_json::Value = serde_json::from_slice(&r.canonical).unwrap();
            let mut detail: serde_json::Value =
                serde_json::from_str(record["detail"].as_str().unwrap()).unwrap();
            if let Some(d) = detail.as_object_mut() {
                d.remove("person_id");
                d.remove("name");
            }
            (record["kind"].as_str().unwrap().to_owned(), detail)
        })
        .collect()
}

async fn a_bulk_registration_records_what_the_single_routes_record_or_nothing(
    store: Arc<dyn Store>,
) {
    let zone = home_zone();
    store.create_zone(&zone).await.unwrap();
    // One wearer the single way: person, device, model, zones.
    let single = person(store.as_ref()).await;
    store.create_device("111", single.id).await.unwrap();
    store.set_device_model("111", Some("GT06N")).await.unwrap();
    store.set_person_zones(single.id, &[zone.id]).await.unwrap();
    let after = store.last_event_seq().await.unwrap();

    let registered = store
        .register_persons(vec![
            wearer("Wang Fang", &[("222", Some("GT06N"))], &[zone.id]),
            wearer("Zhao Lei", &[("333", None), ("444", None)], &[]),
        ])
        .await
        .unwrap();
    assert_eq!(registered.len(), 2);
    let (first, second) = (&registered[0], &registered[1]);
    assert_eq!(first.person.name, "Wang Fang");
    assert_eq!(store.person(first.person.id).await.unwrap(), first.person);
    assert_eq!(store.device("222").await.unwrap(), first.devices[0]);
    assert_eq!(first.devices[0].model.as_deref(), Some("GT06N"));
    assert_eq!(
        store.person_zones(first.person.id).await.unwrap(),
        vec![zone.id]
    );
    assert_eq!(
        second
            .devices
            .iter()
            .map(|d| d.imei.as_str())
            .collect::<Vec<_>>(),
        ["333", "444"]
    );
    assert!(store
        .person_zones(second.person.id)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store.device("444").await.unwrap().person_id,
        second.person.id
    );

    // The same actions, in the same order, as the single routes made.
    assert_eq!(
        actions_of(store.as_ref(), first.person.id).await,
        actions_of(store.as_ref(), single.id).await
    );
    let kinds: Vec<String> = actions_of(store.as_ref(), second.person.id)
        .await
        .into_iter()
        .map(|(kind, _)| kind)
        .collect();
    assert_eq!(kinds, ["person.create", "device.bind", "device.bind"]);
    // One enrolment event per person, in the order given.
    let events = store.events(feed(after)).await.unwrap();
    assert_eq!(
        events
            .iter()
            .map(|e| (e.kind, e.person_id))
            .collect::<Vec<_>>(),
        [
            (EventKind::PersonEnrolled, first.person.id),
            (EventKind::PersonEnrolled, second.person.id),
        ]
    );
    assert_eq!(events[1].data["name"], "Zhao Lei");

    // A device already registered, or an unknown zone, refuses the whole request and names
    // the item.
    let persons_before = store.persons().await.unwrap().len();
    let newest = store.last_event_seq().await.unwrap();
    let heads = store.chain_heads().await.unwrap();
    let err = store
        .register_persons(vec![
            wearer("Sun Li", &[("555", None)], &[]),
            wearer("Qian Hao", &[("666", None), ("333", None)], &[]),
        ])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    assert!(err.to_string().contains("persons[1].devices[1]"), "{err}");
    let missing = new_id();
    let err = store
        .register_persons(vec![wearer(
            "Sun Li",
            &[("555", None)],
            &[zone.id, missing],
        )])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::UnknownReference(_)), "{err}");
    assert!(err.to_string().contains("persons[0]"), "{err}");
    assert!(err.to_string().contains(&missing.to_string()), "{err}");
    assert_eq!(store.persons().await.unwrap().len(), persons_before);
    assert!(matches!(
        store.device("555").await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(store.last_event_seq().await.unwrap(), newest);
    assert_eq!(store.chain_heads().await.unwrap(), heads);
    let summary = ewall::audit::verify(store.as_ref(), &ewall::audit::VerifyOptions::default())
        .await
        .unwrap();
    assert!(summary.ok, "{summary:?}");
}

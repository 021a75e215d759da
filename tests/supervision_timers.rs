//! The timer-driven rules end to end in one process, with tokio's clock paused: a store, the
//! registry and the pipeline as `ewall serve` builds them, fed what ingest and the API feed
//! them (frames heard, fixes, notices). No test waits for a real deadline: tokio's clock jumps
//! to the next one. Every scenario runs twice, once straight through and once with a restart
//! in the middle, and must come out the same.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Duration as ChronoDuration, SubsecRound, Utc};
use ewall::fence::{CheckinWindow, FenceConfig, LevelsConfig};
use ewall::model::{
    new_id, AlertKind, Checkin, CheckinMethod, Crs, DeviceHeard, Fix, LeavePermit, MonitoringOrder,
    PersonId, PositionSource, Submission, SupervisionLevel, ZoneKind,
};
use ewall::pipeline::{Pipeline, PipelineSettings, Resume};
use ewall::registry::Registry;
use ewall::store::{AlertQuery, EventQuery, NewPerson, Store, StoreConfig, ZoneRecord};
use ewall::supervision::{Clock, Notice, SupervisionConfig};
use ewall::telemetry::Metrics;
use tokio::sync::oneshot;

const IMEI: &str = "864717003283581";
/// Home: a 500 m circle.
const HOME: (f64, f64) = (112.4, 25.6);

struct Setup {
    _dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    levels: LevelsConfig,
    supervision: SupervisionConfig,
    person: PersonId,
    zone: ewall::model::ZoneId,
    /// One clock for every pipeline of the scenario, following tokio's paused time.
    clock: Clock,
}

async fn setup(
    level: SupervisionLevel,
    levels: LevelsConfig,
    supervision: SupervisionConfig,
) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let store = ewall::store::open(&url).await.unwrap();
    let person = store
        .create_person(NewPerson {
            name: "p".into(),
            level,
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
        geometry: format!(
            r#"{{"type":"Point","coordinates":[{},{}]}}"#,
            HOME.0, HOME.1
        ),
        wifi: Default::default(),
        scope: Default::default(),
        persons: Vec::new(),
        schedule: None,
        created_at: Utc::now(),
    };
    store.create_zone(&zone).await.unwrap();
    store.set_person_zones(person.id, &[zone.id]).await.unwrap();
    Setup {
        _dir: dir,
        store,
        levels,
        supervision,
        person: person.id,
        zone: zone.id,
        // Anchored after the records above were written with the wall clock, so the
        // scenario's times all come after them.
        clock: Clock::tokio(),
    }
}

impl Setup {
    async fn start(&self) -> Pipeline {
        let registry = Arc::new(Registry::load(self.store.as_ref()).await.unwrap());
        let resume = Resume::load(self.store.as_ref()).await.unwrap();
        let settings = PipelineSettings {
            fence: FenceConfig {
                shards: 2,
                ..FenceConfig::default()
            },
            levels: self.levels.clone(),
            store: StoreConfig::default(),
            channel_capacity: 16,
            supervision: self.supervision.clone(),
            clock: self.clock,
        };
        Pipeline::spawn(
            settings,
            self.store.clone(),
            registry,
            Arc::new(Metrics::new()),
            &resume,
        )
    }

    /// A frame with nothing but the device's presence (a heartbeat), as ingest sends it.
    async fn heartbeat(&self, pipeline: &Pipeline) -> DateTime<Utc> {
        let received_at = self.clock.now().trunc_subsecs(6);
        pipeline
            .submissions
            .send(Submission {
                person_id: self.person,
                heard: Some(DeviceHeard {
                    device_id: IMEI.into(),
                    person_id: self.person,
                    received_at,
                }),
                fixes: Vec::new(),
                alarms: Vec::new(),
                wifi: Vec::new(),
                crs: Crs::Wgs84,
                done: None,
            })
            .await
            .unwrap();
        received_at
    }

    /// A fix at `time`, at home or 3 km east, committed.
    async fn fix(&self, pipeline: &Pipeline, time: DateTime<Utc>, outside: bool) {
        let fix = Fix {
            device_id: IMEI.into(),
            person_id: self.person,
            time,
            received_at: self.clock.now(),
            lat: HOME.1,
            lon: if outside { HOME.0 + 0.03 } else { HOME.0 },
            valid: true,
            accuracy_m: Some(10.0),
            speed_kmh: None,
            course: None,
            altitude_m: None,
            satellites: None,
            hdop: None,
            source: PositionSource::Gps,
            battery_pct: None,
            archived: false,
            integrity_mismatch: false,
            protocol: "json".into(),
            wifi_bssids: Vec::new(),
            clock_skew: false,
            implausible: None,
            raw: Default::default(),
        };
        let (done, committed) = oneshot::channel();
        pipeline
            .submissions
            .send(Submission {
                person_id: self.person,
                heard: None,
                fixes: vec![fix],
                alarms: Vec::new(),
                wifi: Vec::new(),
                crs: Crs::Wgs84,
                done: Some(done),
            })
            .await
            .unwrap();
        committed.await.unwrap().unwrap();
    }

    /// Waits until the pipeline has committed everything it has been handed, deadlines that
    /// passed included: a frame with a commit notice goes through the same shard and writer
    /// behind them.
    async fn settle(&self, pipeline: &Pipeline) {
        let (done, committed) = oneshot::channel();
        pipeline
            .submissions
            .send(Submission {
                person_id: self.person,
                heard: None,
                fixes: Vec::new(),
                alarms: Vec::new(),
                wifi: Vec::new(),
                crs: Crs::Wgs84,
                done: Some(done),
            })
            .await
            .unwrap();
        committed.await.unwrap().unwrap();
    }

    /// Moves tokio's clock on by `seconds` and lets the pipeline act on what fell due.
    async fn pass(&self, pipeline: &Pipeline, seconds: u64) {
        tokio::time::advance(Duration::from_secs(seconds)).await;
        self.settle(pipeline).await;
    }

    /// The person's alerts as (kind, time), in feed order.
    async fn alerts(&self) -> Vec<(AlertKind, DateTime<Utc>)> {
        self.store
            .alerts(AlertQuery {
                person_id: Some(self.person),
                limit: 1000,
                ..AlertQuery::default()
            })
            .await
            .unwrap()
            .iter()
            .map(|a| (a.kind, a.time))
            .collect()
    }

    async fn alerts_except_offline(&self) -> Vec<(AlertKind, DateTime<Utc>)> {
        let mut alerts = self.alerts().await;
        alerts.retain(|(kind, _)| *kind != AlertKind::Offline);
        alerts
    }
}

/// Keeps tokio's paused clock from jumping ahead by itself while the test runs (a blocking
/// task in flight inhibits auto-advance): the store's SQLite threads take real time, and their
/// pool's timeouts must not see days pass meanwhile. Time moves only by [`Setup::pass`].
struct HeldClock(#[allow(dead_code)] std::sync::mpsc::Sender<()>);

fn hold_clock() -> HeldClock {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    tokio::task::spawn_blocking(move || {
        let _ = rx.recv();
    });
    HeldClock(tx)
}

/// Stops the pipeline and starts it again from the store when `restart` is set.
async fn maybe_restart(setup: &Setup, pipeline: Pipeline, restart: bool) -> Pipeline {
    if !restart {
        return pipeline;
    }
    setup.settle(&pipeline).await;
    pipeline.join().await;
    setup.start().await
}

async fn silent_strict_person(restart: bool) -> Vec<AlertKind> {
    let setup = setup(
        SupervisionLevel::Strict,
        LevelsConfig::default(),
        SupervisionConfig::default(),
    )
    .await;
    let offline_after = i64::from(setup.levels.strict.offline_after_s);
    let pipeline = setup.start().await;
    let heard = setup.heartbeat(&pipeline).await;
    setup.settle(&pipeline).await;
    setup.pass(&pipeline, 60).await;
    assert!(
        setup.alerts().await.is_empty(),
        "silent for a minute: nothing yet"
    );
    let pipeline = maybe_restart(&setup, pipeline, restart).await;
    setup.pass(&pipeline, offline_after as u64).await;
    let alerts = setup.alerts().await;
    assert_eq!(
        alerts,
        vec![(
            AlertKind::Offline,
            heard + ChronoDuration::seconds(offline_after)
        )],
        "offline at the deadline, once"
    );
    setup.pass(&pipeline, 3_600).await;
    assert_eq!(setup.alerts().await.len(), 1, "raised once");
    let back = setup.heartbeat(&pipeline).await;
    setup.settle(&pipeline).await;
    pipeline.join().await;
    let stored = setup
        .store
        .alerts(AlertQuery {
            person_id: Some(setup.person),
            limit: 10,
            ..AlertQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(stored.len(), 2, "{stored:?}");
    assert_eq!(stored[1].kind, AlertKind::Returned);
    assert_eq!(stored[1].time, back);
    assert_eq!(stored[1].device_id.as_deref(), Some(IMEI));
    assert!(
        stored[1].note.as_deref().unwrap().contains("of silence"),
        "{:?}",
        stored[1].note
    );
    stored.iter().map(|a| a.kind).collect()
}

#[tokio::test(start_paused = true)]
async fn a_strict_person_going_silent_is_offline_at_the_deadline_until_the_next_heartbeat() {
    let _held = hold_clock();
    let straight = silent_strict_person(false).await;
    let restarted = silent_strict_person(true).await;
    assert_eq!(straight, vec![AlertKind::Offline, AlertKind::Returned]);
    assert_eq!(straight, restarted);
}

async fn leave_scenario(restart: bool) -> Vec<(AlertKind, ChronoDuration)> {
    let setup = setup(
        SupervisionLevel::Normal,
        LevelsConfig::default(),
        SupervisionConfig::default(),
    )
    .await;
    let now = setup.clock.now().trunc_subsecs(6);
    let leave = LeavePermit {
        id: new_id(),
        person_id: setup.person,
        from: now - ChronoDuration::minutes(30),
        to: now + ChronoDuration::minutes(20),
        zone_ids: vec![setup.zone],
        reason: "hospital".into(),
        approved_by: "officer 7".into(),
        created_at: now - ChronoDuration::minutes(40),
        cancelled_at: None,
        ended_at: None,
    };
    setup.store.create_leave(&leave).await.unwrap();
    let pipeline = setup.start().await;
    pipeline.notices.send(Notice::LeaveSaved(leave.clone()));
    // At home before the window, then out for its whole length: silent.
    setup
        .fix(&pipeline, leave.from - ChronoDuration::minutes(5), false)
        .await;
    for minute in [1, 5, 10, 20] {
        setup
            .fix(
                &pipeline,
                leave.from + ChronoDuration::minutes(minute),
                true,
            )
            .await;
    }
    assert!(setup.alerts().await.is_empty(), "silent during the window");
    let pipeline = maybe_restart(&setup, pipeline, restart).await;
    // No fix after that: the end itself raises it.
    setup.pass(&pipeline, 21 * 60).await;
    assert_eq!(
        setup.alerts().await,
        vec![(AlertKind::LeaveOverdue, leave.to)],
        "leave_overdue at the end, without a new fix"
    );
    // Still out: nothing new. Then home: the episode ends.
    setup
        .fix(&pipeline, leave.to + ChronoDuration::minutes(10), true)
        .await;
    setup
        .fix(&pipeline, leave.to + ChronoDuration::minutes(14), true)
        .await;
    setup
        .fix(&pipeline, leave.to + ChronoDuration::minutes(30), false)
        .await;
    pipeline.join().await;
    let stored = setup
        .store
        .alerts(AlertQuery {
            person_id: Some(setup.person),
            limit: 10,
            ..AlertQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(stored[0].zone_id, Some(setup.zone));
    assert!(stored[0].position.is_some());
    stored.iter().map(|a| (a.kind, a.time - leave.to)).collect()
}

#[tokio::test(start_paused = true)]
async fn a_leave_is_silent_during_its_window_and_overdue_at_its_end_without_a_new_fix() {
    let _held = hold_clock();
    let straight = leave_scenario(false).await;
    let restarted = leave_scenario(true).await;
    assert_eq!(
        straight,
        vec![
            (AlertKind::LeaveOverdue, ChronoDuration::zero()),
            (AlertKind::Returned, ChronoDuration::minutes(30)),
        ]
    );
    assert_eq!(straight, restarted);
}

async fn expiring_order(restart: bool) -> (Vec<(AlertKind, ChronoDuration)>, Vec<String>) {
    let setup = setup(
        SupervisionLevel::Normal,
        LevelsConfig::default(),
        SupervisionConfig {
            require_order: true,
            order_expiring_days: 7,
        },
    )
    .await;
    let now = setup.clock.now().trunc_subsecs(6);
    let order = MonitoringOrder {
        id: new_id(),
        person_id: setup.person,
        ground: "community correction, criminal procedure law art. 269".into(),
        approved_by: "county court".into(),
        from: now - ChronoDuration::days(80),
        to: now + ChronoDuration::days(8),
        created_at: now,
        started_at: Some(now),
        ended_at: None,
    };
    setup.store.create_order(&order).await.unwrap();
    let pipeline = setup.start().await;
    // Under the order: a breach is raised.
    let t0 = now;
    setup.fix(&pipeline, t0, false).await;
    setup
        .fix(&pipeline, t0 + ChronoDuration::minutes(1), true)
        .await;
    setup
        .fix(&pipeline, t0 + ChronoDuration::minutes(4), true)
        .await;
    setup
        .fix(&pipeline, t0 + ChronoDuration::minutes(6), false)
        .await;
    setup.pass(&pipeline, 86_400 + 60).await;
    let pipeline = maybe_restart(&setup, pipeline, restart).await;
    setup.pass(&pipeline, 7 * 86_400 + 60).await;
    // The order has ended: fixes are stored but fence nothing.
    let late = order.to + ChronoDuration::hours(1);
    for minute in [0, 1, 4, 8] {
        setup
            .fix(&pipeline, late + ChronoDuration::minutes(minute), true)
            .await;
    }
    pipeline.join().await;
    let track = setup
        .store
        .track(setup.person, late, late + ChronoDuration::hours(1), 100)
        .await
        .unwrap();
    assert_eq!(track.len(), 4, "fixes outside an order are still stored");
    let alerts = setup
        .alerts_except_offline()
        .await
        .into_iter()
        .map(|(kind, time)| (kind, time - order.to))
        .collect();
    let events = setup
        .store
        .events(EventQuery {
            limit: 100,
            ..EventQuery::default()
        })
        .await
        .unwrap()
        .iter()
        .map(|e| e.kind.to_string())
        .filter(|k| k.starts_with("order."))
        .collect();
    (alerts, events)
}

#[tokio::test(start_paused = true)]
async fn an_expiring_order_warns_then_ends_and_no_fence_alert_follows() {
    let _held = hold_clock();
    let straight = expiring_order(false).await;
    let restarted = expiring_order(true).await;
    assert_eq!(
        straight.0,
        vec![
            (
                AlertKind::ZoneExit,
                ChronoDuration::minutes(4) - ChronoDuration::days(8)
            ),
            (
                AlertKind::Returned,
                ChronoDuration::minutes(6) - ChronoDuration::days(8)
            ),
            (AlertKind::OrderExpiring, -ChronoDuration::days(7)),
        ]
    );
    assert_eq!(straight.1, vec!["order.started", "order.ended"]);
    assert_eq!(straight, restarted);
}

async fn missed_checkin(restart: bool) -> (Vec<(AlertKind, DateTime<Utc>)>, DateTime<Utc>) {
    let tz: chrono_tz::Tz = "Asia/Shanghai".parse().unwrap();
    let local = |t: DateTime<Utc>| t.with_timezone(&tz).format("%H:%M").to_string();
    let mut setup = setup(
        SupervisionLevel::Normal,
        LevelsConfig::default(),
        SupervisionConfig::default(),
    )
    .await;
    let now = setup.clock.now().trunc_subsecs(6);
    let opens = now + ChronoDuration::minutes(2);
    let closes = now + ChronoDuration::minutes(12);
    let window = CheckinWindow::try_from(format!("{}-{}", local(opens), local(closes))).unwrap();
    setup.levels.normal.checkin_windows = vec![window];
    let pipeline = setup.start().await;
    // Today's window: checked in. Tomorrow's: not.
    let checkin = Checkin {
        id: new_id(),
        person_id: setup.person,
        time: opens + ChronoDuration::minutes(3),
        method: CheckinMethod::Kiosk,
        position: None,
        created_at: now,
    };
    setup.store.create_checkin(&checkin).await.unwrap();
    pipeline.notices.send(Notice::CheckedIn(checkin));
    setup.pass(&pipeline, 20 * 60).await;
    assert!(setup.alerts_except_offline().await.is_empty(), "checked in");
    let pipeline = maybe_restart(&setup, pipeline, restart).await;
    setup.pass(&pipeline, 86_400).await;
    pipeline.join().await;
    (setup.alerts_except_offline().await, closes)
}

#[tokio::test(start_paused = true)]
async fn a_check_in_window_closing_without_a_check_in_raises_missed_checkin() {
    let _held = hold_clock();
    for restart in [false, true] {
        let (alerts, closes) = missed_checkin(restart).await;
        // Tomorrow's window, closing at the minute the window was written with.
        let tomorrow = closes + ChronoDuration::days(1);
        let expected = DateTime::from_timestamp(tomorrow.timestamp() / 60 * 60, 0).unwrap();
        assert_eq!(
            alerts,
            vec![(AlertKind::MissedCheckin, expected)],
            "restart: {restart}"
        );
    }
}

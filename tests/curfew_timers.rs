//! The curfew raised at a window's opening, without a fix: a person outside a scheduled
//! inclusion zone when its window opens gets `curfew` at the opening, by a timer (at once when
//! their newest fix was definitely outside, on the next definite fix when it was uncertain).
//! End to end in one process with tokio's clock paused: a store, the registry and the pipeline
//! as `ewall serve` builds them, fed fixes and notices. Each scenario runs straight through and
//! with a restart in the middle, and must come out the same.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Duration as ChronoDuration, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use ewall::fence::{FenceConfig, LevelsConfig};
use ewall::model::{
    new_id, AlertKind, Crs, Fix, LeavePermit, PersonId, PositionSource, Submission,
    SupervisionLevel, ZoneId, ZoneKind,
};
use ewall::pipeline::{Pipeline, PipelineSettings, Resume};
use ewall::registry::Registry;
use ewall::schedule::Schedule;
use ewall::store::{AlertQuery, NewPerson, Store, StoreConfig, ZoneRecord};
use ewall::supervision::{Clock, Notice, SupervisionConfig};
use ewall::telemetry::Metrics;
use tokio::sync::oneshot;

const IMEI: &str = "864717003283581";
/// Home: a 500 m circle.
const HOME: (f64, f64) = (112.4, 25.6);

/// Where a fix puts the person.
#[derive(Clone, Copy, PartialEq)]
enum Place {
    Home,
    /// 3 km east, with a 10 m accuracy: definitely outside.
    Out,
    /// 3 km east, with a 5 km accuracy: cannot say.
    Uncertain,
}

struct Setup {
    _dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    supervision: SupervisionConfig,
    person: PersonId,
    tz: Tz,
    schedule: Schedule,
    /// One clock for every pipeline of the scenario, following tokio's paused time.
    clock: Clock,
}

/// A person in `tz` with a device, the clock set at `start`, and the curfew's `schedule` (the
/// zone itself is added by [`Setup::add_curfew`]).
async fn setup(
    tz: &str,
    schedule: serde_json::Value,
    start: DateTime<Utc>,
    supervision: SupervisionConfig,
) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let store = ewall::store::open(&url).await.unwrap();
    let person = store
        .create_person(NewPerson {
            name: "p".into(),
            level: SupervisionLevel::Normal,
            timezone: tz.into(),
        })
        .await
        .unwrap();
    store.create_device(IMEI, person.id).await.unwrap();
    Setup {
        _dir: dir,
        store,
        supervision,
        person: person.id,
        tz: tz.parse().unwrap(),
        schedule: Schedule::from_json(&schedule).unwrap(),
        clock: Clock::Tokio {
            wall: start,
            at: tokio::time::Instant::now(),
        },
    }
}

impl Setup {
    /// Creates the curfew zone and assigns it to the person.
    async fn add_curfew(&self) -> ZoneId {
        let zone = ZoneRecord {
            id: new_id(),
            name: "home at night".into(),
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
            schedule: Some(self.schedule.clone()),
            created_at: Utc::now(),
        };
        self.store.create_zone(&zone).await.unwrap();
        self.store
            .set_person_zones(self.person, &[zone.id])
            .await
            .unwrap();
        zone.id
    }

    async fn start(&self) -> (Pipeline, Arc<Registry>) {
        let registry = Arc::new(Registry::load(self.store.as_ref()).await.unwrap());
        let resume = Resume::load(self.store.as_ref()).await.unwrap();
        let settings = PipelineSettings {
            fence: FenceConfig {
                shards: 2,
                ..FenceConfig::default()
            },
            levels: LevelsConfig::default(),
            store: StoreConfig::default(),
            channel_capacity: 16,
            supervision: self.supervision.clone(),
            clock: self.clock,
        };
        let pipeline = Pipeline::spawn(
            settings,
            self.store.clone(),
            registry.clone(),
            Arc::new(Metrics::new()),
            &resume,
        );
        (pipeline, registry)
    }

    /// A local wall-clock time in the person's time zone, as UTC (the first of a repeated one).
    fn local(&self, date: (i32, u32, u32), hour: u32, minute: u32) -> DateTime<Utc> {
        let naive = NaiveDate::from_ymd_opt(date.0, date.1, date.2)
            .unwrap()
            .and_hms_opt(hour, minute, 0)
            .unwrap();
        self.tz
            .from_local_datetime(&naive)
            .earliest()
            .unwrap()
            .with_timezone(&Utc)
    }

    /// Moves tokio's clock on to `to` and lets the pipeline act on what fell due.
    async fn pass_to(&self, pipeline: &Pipeline, to: DateTime<Utc>) {
        let wait = (to - self.clock.now()).to_std().unwrap_or(Duration::ZERO);
        tokio::time::advance(wait).await;
        self.settle(pipeline).await;
    }

    /// At `time` (the clock moved on to it), a fix at `place`, committed.
    async fn fix(&self, pipeline: &Pipeline, time: DateTime<Utc>, place: Place) {
        self.pass_to(pipeline, time).await;
        let fix = Fix {
            device_id: IMEI.into(),
            person_id: self.person,
            time,
            received_at: time,
            lat: HOME.1,
            lon: if place == Place::Home {
                HOME.0
            } else {
                HOME.0 + 0.03
            },
            valid: true,
            accuracy_m: Some(if place == Place::Uncertain {
                5_000.0
            } else {
                10.0
            }),
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
        self.submit(pipeline, vec![fix]).await;
    }

    async fn submit(&self, pipeline: &Pipeline, fixes: Vec<Fix>) {
        let (done, committed) = oneshot::channel();
        pipeline
            .submissions
            .send(Submission {
                person_id: self.person,
                heard: None,
                fixes,
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
    /// passed included.
    async fn settle(&self, pipeline: &Pipeline) {
        self.submit(pipeline, Vec::new()).await;
    }

    /// The person's zone alerts as (kind, time), in feed order (the device's `offline`, due
    /// long before these scenarios start, is left out).
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
            .filter(|a| matches!(a.kind, AlertKind::Curfew | AlertKind::Returned))
            .filter(|a| a.zone_id.is_some())
            .map(|a| (a.kind, a.time))
            .collect()
    }
}

/// Keeps tokio's paused clock from jumping ahead by itself while the test runs (the store's
/// SQLite threads take real time): time moves only as the scenario moves it.
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
    setup.start().await.0
}

fn nightly() -> serde_json::Value {
    serde_json::json!([{
        "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
        "from": "22:00",
        "to": "06:00"
    }])
}

/// 2027-01-05, a Tuesday in winter.
const DAY: (i32, u32, u32) = (2027, 1, 5);

/// Out at 21:50 with a definite fix, then nothing until 22:10; the restart (if any) falls
/// between the fix and the opening.
async fn out_before_the_opening(tz: &str, restart: bool) -> Vec<(AlertKind, DateTime<Utc>)> {
    let start = {
        let tz: Tz = tz.parse().unwrap();
        tz.from_local_datetime(
            &NaiveDate::from_ymd_opt(2027, 1, 5)
                .unwrap()
                .and_hms_opt(21, 0, 0)
                .unwrap(),
        )
        .unwrap()
        .with_timezone(&Utc)
    };
    let setup = setup(tz, nightly(), start, SupervisionConfig::default()).await;
    let zone = setup.add_curfew().await;
    let (pipeline, _registry) = setup.start().await;
    setup
        .fix(&pipeline, setup.local(DAY, 21, 40), Place::Home)
        .await;
    setup
        .fix(&pipeline, setup.local(DAY, 21, 50), Place::Out)
        .await;
    let pipeline = maybe_restart(&setup, pipeline, restart).await;
    setup.pass_to(&pipeline, setup.local(DAY, 21, 59)).await;
    assert!(
        setup.alerts().await.is_empty(),
        "nothing before the opening"
    );
    setup.pass_to(&pipeline, setup.local(DAY, 22, 10)).await;
    assert_eq!(
        setup.alerts().await,
        vec![(AlertKind::Curfew, setup.local(DAY, 22, 0))],
        "curfew at the opening, with no new fix"
    );
    // Still out: the fence engine's own confirmation adds no second curfew.
    for minute in [12, 15, 20] {
        setup
            .fix(&pipeline, setup.local(DAY, 22, minute), Place::Out)
            .await;
    }
    setup
        .fix(&pipeline, setup.local(DAY, 22, 40), Place::Home)
        .await;
    pipeline.join().await;
    let stored = setup
        .store
        .alerts(AlertQuery {
            person_id: Some(setup.person),
            limit: 100,
            ..AlertQuery::default()
        })
        .await
        .unwrap();
    let curfew = stored.iter().find(|a| a.kind == AlertKind::Curfew).unwrap();
    assert_eq!(curfew.zone_id, Some(zone));
    let position = curfew.position.unwrap();
    assert!(
        (position.lon - (HOME.0 + 0.03)).abs() < 1e-9,
        "where the 21:50 fix was"
    );
    setup.alerts().await
}

#[tokio::test(start_paused = true)]
async fn outside_when_the_curfew_opens_raises_curfew_at_the_opening_without_a_fix() {
    let _held = hold_clock();
    for tz in ["Asia/Shanghai", "Europe/Berlin"] {
        let straight = out_before_the_opening(tz, false).await;
        let restarted = out_before_the_opening(tz, true).await;
        let setup_tz: Tz = tz.parse().unwrap();
        let at = |h, m| {
            setup_tz
                .from_local_datetime(
                    &NaiveDate::from_ymd_opt(2027, 1, 5)
                        .unwrap()
                        .and_hms_opt(h, m, 0)
                        .unwrap(),
                )
                .unwrap()
                .with_timezone(&Utc)
        };
        assert_eq!(
            straight,
            vec![
                (AlertKind::Curfew, at(22, 0)),
                (AlertKind::Returned, at(22, 40))
            ],
            "{tz}"
        );
        assert_eq!(straight, restarted, "{tz}: a restart changes nothing");
    }
}

/// The last fix before the opening is uncertain: nothing at the opening; the next definite
/// fix outside raises `curfew` on its own (without the fence engine's two-fix run). The
/// restart, if any, falls between the opening and that fix.
async fn uncertain_at_the_opening(restart: bool) -> Vec<(AlertKind, DateTime<Utc>)> {
    let tz: Tz = "Asia/Shanghai".parse().unwrap();
    let start = tz
        .with_ymd_and_hms(2027, 1, 5, 21, 0, 0)
        .unwrap()
        .with_timezone(&Utc);
    let setup = setup(
        "Asia/Shanghai",
        nightly(),
        start,
        SupervisionConfig::default(),
    )
    .await;
    setup.add_curfew().await;
    let (pipeline, _registry) = setup.start().await;
    setup
        .fix(&pipeline, setup.local(DAY, 21, 40), Place::Out)
        .await;
    setup
        .fix(&pipeline, setup.local(DAY, 21, 50), Place::Uncertain)
        .await;
    setup.pass_to(&pipeline, setup.local(DAY, 22, 5)).await;
    assert!(setup.alerts().await.is_empty(), "uncertain: nothing yet");
    let pipeline = maybe_restart(&setup, pipeline, restart).await;
    setup
        .fix(&pipeline, setup.local(DAY, 22, 7), Place::Uncertain)
        .await;
    assert!(setup.alerts().await.is_empty(), "still uncertain");
    setup
        .fix(&pipeline, setup.local(DAY, 22, 9), Place::Out)
        .await;
    setup
        .fix(&pipeline, setup.local(DAY, 22, 14), Place::Out)
        .await;
    setup
        .fix(&pipeline, setup.local(DAY, 22, 30), Place::Home)
        .await;
    pipeline.join().await;
    setup.alerts().await
}

#[tokio::test(start_paused = true)]
async fn uncertain_at_the_opening_the_next_definite_fix_outside_raises_curfew() {
    let _held = hold_clock();
    let straight = uncertain_at_the_opening(false).await;
    let restarted = uncertain_at_the_opening(true).await;
    let tz: Tz = "Asia/Shanghai".parse().unwrap();
    let at = |h, m| {
        tz.with_ymd_and_hms(2027, 1, 5, h, m, 0)
            .unwrap()
            .with_timezone(&Utc)
    };
    assert_eq!(
        straight,
        vec![
            (AlertKind::Curfew, at(22, 9)),
            (AlertKind::Returned, at(22, 30))
        ]
    );
    assert_eq!(straight, restarted);
}

#[tokio::test(start_paused = true)]
async fn inside_at_the_opening_or_back_before_a_definite_fix_raises_nothing() {
    let _held = hold_clock();
    let tz: Tz = "Asia/Shanghai".parse().unwrap();
    let start = tz
        .with_ymd_and_hms(2027, 1, 5, 21, 0, 0)
        .unwrap()
        .with_timezone(&Utc);
    let setup = setup(
        "Asia/Shanghai",
        nightly(),
        start,
        SupervisionConfig::default(),
    )
    .await;
    setup.add_curfew().await;
    let (pipeline, _registry) = setup.start().await;
    setup
        .fix(&pipeline, setup.local(DAY, 21, 50), Place::Home)
        .await;
    setup.pass_to(&pipeline, setup.local(DAY, 23, 0)).await;
    assert!(setup.alerts().await.is_empty(), "home at the opening");
    // The next night: uncertain at the opening, then definitely home.
    let next = (2027, 1, 6);
    setup
        .fix(&pipeline, setup.local(next, 21, 55), Place::Uncertain)
        .await;
    setup.pass_to(&pipeline, setup.local(next, 22, 1)).await;
    setup
        .fix(&pipeline, setup.local(next, 22, 3), Place::Home)
        .await;
    // Out later that night: the fence engine's own run (two fixes, three minutes) raises it.
    setup
        .fix(&pipeline, setup.local(next, 23, 0), Place::Out)
        .await;
    assert!(
        setup.alerts().await.is_empty(),
        "one fix out is not a breach"
    );
    setup
        .fix(&pipeline, setup.local(next, 23, 4), Place::Out)
        .await;
    pipeline.join().await;
    assert_eq!(
        setup.alerts().await,
        vec![(AlertKind::Curfew, setup.local(next, 23, 4))]
    );
}

/// Across a daylight-saving change in Berlin: a window opening in the hour the clocks skip
/// (02:30 on 2027-03-28) opens when they jump past it (03:00 CEST, 01:00 UTC); one opening in
/// the hour they repeat (02:30 on 2027-10-31) opens at its first occurrence (00:30 UTC).
async fn berlin_dst(spring: bool, restart: bool) -> Vec<(AlertKind, DateTime<Utc>)> {
    let (date, weekday) = if spring {
        ((2027, 3, 28), "sun")
    } else {
        ((2027, 10, 31), "sun")
    };
    let schedule = serde_json::json!([{"days": [weekday], "from": "02:30", "to": "05:00"}]);
    let berlin: Tz = "Europe/Berlin".parse().unwrap();
    let start = berlin
        .with_ymd_and_hms(date.0, date.1, date.2, 0, 30, 0)
        .unwrap()
        .with_timezone(&Utc);
    let setup = setup(
        "Europe/Berlin",
        schedule,
        start,
        SupervisionConfig::default(),
    )
    .await;
    setup.add_curfew().await;
    let (pipeline, _registry) = setup.start().await;
    setup
        .fix(&pipeline, setup.local(date, 1, 0), Place::Out)
        .await;
    let pipeline = maybe_restart(&setup, pipeline, restart).await;
    setup
        .pass_to(&pipeline, start + ChronoDuration::hours(3))
        .await;
    pipeline.join().await;
    setup.alerts().await
}

#[tokio::test(start_paused = true)]
async fn a_curfew_opening_across_a_dst_change_in_berlin_follows_the_clocks() {
    let _held = hold_clock();
    for restart in [false, true] {
        assert_eq!(
            berlin_dst(true, restart).await,
            vec![(
                AlertKind::Curfew,
                Utc.with_ymd_and_hms(2027, 3, 28, 1, 0, 0).unwrap()
            )],
            "spring forward, restart {restart}"
        );
        assert_eq!(
            berlin_dst(false, restart).await,
            vec![(
                AlertKind::Curfew,
                Utc.with_ymd_and_hms(2027, 10, 31, 0, 30, 0).unwrap()
            )],
            "fall back, restart {restart}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_leave_covering_the_curfew_or_no_monitoring_order_suppresses_it() {
    let _held = hold_clock();
    let tz: Tz = "Asia/Shanghai".parse().unwrap();
    let start = tz
        .with_ymd_and_hms(2027, 1, 5, 21, 0, 0)
        .unwrap()
        .with_timezone(&Utc);
    // A leave over the opening.
    let setup_leave = setup(
        "Asia/Shanghai",
        nightly(),
        start,
        SupervisionConfig::default(),
    )
    .await;
    let zone = setup_leave.add_curfew().await;
    let leave = LeavePermit {
        id: new_id(),
        person_id: setup_leave.person,
        from: setup_leave.local(DAY, 21, 30),
        to: setup_leave.local(DAY, 23, 0),
        zone_ids: vec![zone],
        reason: "night shift".into(),
        approved_by: "officer 7".into(),
        created_at: start,
        cancelled_at: None,
        ended_at: None,
    };
    setup_leave.store.create_leave(&leave).await.unwrap();
    let (pipeline, _registry) = setup_leave.start().await;
    pipeline.notices.send(Notice::LeaveSaved(leave.clone()));
    setup_leave
        .fix(&pipeline, setup_leave.local(DAY, 21, 50), Place::Out)
        .await;
    setup_leave
        .pass_to(&pipeline, setup_leave.local(DAY, 22, 30))
        .await;
    assert!(
        setup_leave.alerts().await.is_empty(),
        "on leave at the opening"
    );
    pipeline.join().await;
    // `require_order` with no order: nothing is fenced, nothing is raised.
    let setup_order = setup(
        "Asia/Shanghai",
        nightly(),
        start,
        SupervisionConfig {
            require_order: true,
            order_expiring_days: 7,
        },
    )
    .await;
    setup_order.add_curfew().await;
    let (pipeline, _registry) = setup_order.start().await;
    setup_order
        .fix(&pipeline, setup_order.local(DAY, 21, 50), Place::Out)
        .await;
    setup_order
        .pass_to(&pipeline, setup_order.local(DAY, 22, 30))
        .await;
    pipeline.join().await;
    assert!(setup_order.alerts().await.is_empty(), "no current order");
}

#[tokio::test(start_paused = true)]
async fn a_curfew_zone_assigned_while_running_is_armed_without_a_restart() {
    let _held = hold_clock();
    let tz: Tz = "Asia/Shanghai".parse().unwrap();
    let start = tz
        .with_ymd_and_hms(2027, 1, 5, 21, 0, 0)
        .unwrap()
        .with_timezone(&Utc);
    let setup = setup(
        "Asia/Shanghai",
        nightly(),
        start,
        SupervisionConfig::default(),
    )
    .await;
    let (pipeline, registry) = setup.start().await;
    setup
        .fix(&pipeline, setup.local(DAY, 21, 50), Place::Out)
        .await;
    // The zone arrives at 21:55, as the API adds it: stored, then the catalog reloaded.
    setup.pass_to(&pipeline, setup.local(DAY, 21, 55)).await;
    let zone = setup.add_curfew().await;
    registry.reload_zones(setup.store.as_ref()).await.unwrap();
    setup.settle(&pipeline).await;
    // No fix of the person against it yet: the opening waits for the next definite fix.
    setup.pass_to(&pipeline, setup.local(DAY, 22, 5)).await;
    assert!(
        setup.alerts().await.is_empty(),
        "nothing known against the new zone"
    );
    setup
        .fix(&pipeline, setup.local(DAY, 22, 6), Place::Out)
        .await;
    assert_eq!(
        setup.alerts().await,
        vec![(AlertKind::Curfew, setup.local(DAY, 22, 6))]
    );
    // The zone unassigned: the next opening raises nothing, and being out stays silent.
    setup
        .store
        .set_person_zones(setup.person, &[])
        .await
        .unwrap();
    registry.reload_zones(setup.store.as_ref()).await.unwrap();
    setup.settle(&pipeline).await;
    let next = (2027, 1, 6);
    setup
        .fix(&pipeline, setup.local(next, 21, 50), Place::Out)
        .await;
    setup.pass_to(&pipeline, setup.local(next, 22, 30)).await;
    pipeline.join().await;
    let _ = zone;
    assert_eq!(setup.alerts().await.len(), 1);
}

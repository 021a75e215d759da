//! The pipeline: ingest → fence shards → store writer, joined by bounded channels.
//!
//! ```text
//!  ingest ──Submission──► router ──► shard 0..N (FenceEngine) ──WriteRequest──► StoreWriter
//!    ▲                                                                              │
//!    └───────────────────────── commit notice (then the device is acked) ◄─────────┘
//! ```
//!
//! The router sends each person's submissions to one shard (by a hash of the person id), so a
//! person's fixes are checked in order by one engine that owns their state, while different
//! persons are checked in parallel. Each shard turns zone transitions and device alarms into
//! alerts and passes them, with the positions, to the writer, which commits both in one
//! transaction. Channels are bounded: a slow store pushes back on ingest rather than queueing
//! without limit.
//!
//! Stopping is done by closing channels: [`Pipeline::join`] closes the entrance (queued
//! submissions still go through) and the router ends, which closes the shards' inputs; each
//! shard finishes what it holds and ends, which closes the writer's input; the writer commits
//! its last batch and ends.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::fence::{crs, shard_for, FenceConfig, FenceEngine, Transition};
use crate::model::{
    new_id, Alert, AlertKind, AlertState, Crs, DeviceAlarm, Severity, Submission, SupervisionLevel,
};
use crate::registry::Registry;
use crate::store::writer::{StoreWriter, WriteRequest};
use crate::store::{OpenBreach, Store, StoreConfig};
use crate::telemetry::Metrics;

/// A device alarm of the same kind from the same device within this window raises no new alert:
/// an SOS button held down, or a low-battery flag on every report, is one event to an operator.
const ALARM_REPEAT_WINDOW_SECS: i64 = 300;

/// How many alerts a slow live subscriber may fall behind before it skips ahead (it can always
/// resume from the cursor feed).
const ALERT_BROADCAST_CAPACITY: usize = 1024;

/// The settings the pipeline is built from.
pub struct PipelineSettings {
    /// Fence engine settings.
    pub fence: FenceConfig,
    /// Store writer settings.
    pub store: StoreConfig,
    /// Capacity of each channel.
    pub channel_capacity: usize,
}

/// A running pipeline.
pub struct Pipeline {
    /// Where ingest sends submissions. Dropping every clone starts the pipeline's shutdown.
    pub submissions: mpsc::Sender<Submission>,
    /// Alerts as they are committed.
    pub alerts: broadcast::Sender<Alert>,
    /// Closes the entrance even while stray senders (a stalled HTTP upload) still exist.
    close: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Pipeline {
    /// Spawns the router, the shards and the writer. `open_breaches` (from the store) re-open
    /// the breach episodes that were open when the service last stopped, so a restart neither
    /// repeats a breach nor loses the `returned` that ends it.
    pub fn spawn(
        settings: PipelineSettings,
        store: Arc<dyn Store>,
        registry: Arc<Registry>,
        metrics: Arc<Metrics>,
        open_breaches: &[OpenBreach],
    ) -> Pipeline {
        let capacity = settings.channel_capacity.max(1);
        let (alerts, _) = broadcast::channel(ALERT_BROADCAST_CAPACITY);
        let (writes_tx, writes_rx) = mpsc::channel(capacity);
        let mut tasks = Vec::new();
        let writer = StoreWriter::new(store, settings.store, metrics.clone(), alerts.clone());
        tasks.push(tokio::spawn(writer.run(writes_rx)));
        let mut shard_inputs = Vec::new();
        let shards = settings.fence.shards();
        for index in 0..shards {
            let (tx, rx) = mpsc::channel(capacity);
            shard_inputs.push(tx);
            let mut engine = FenceEngine::new(settings.fence.clone());
            for breach in open_breaches
                .iter()
                .filter(|b| shard_for(&b.person_id, shards) == index)
            {
                engine.resume_breach(breach.person_id, breach.zone_id, breach.kind, breach.since);
            }
            let shard = Shard {
                index,
                engine,
                registry: registry.clone(),
                metrics: metrics.clone(),
                recent_alarms: HashMap::new(),
            };
            tasks.push(tokio::spawn(shard.run(rx, writes_tx.clone())));
        }
        drop(writes_tx);
        let (submissions, rx) = mpsc::channel(capacity);
        let close = CancellationToken::new();
        tasks.push(tokio::spawn(route(rx, shard_inputs, close.clone())));
        Pipeline {
            submissions,
            alerts,
            close,
            tasks,
        }
    }

    /// Closes the entrance and waits until every stage has drained and stopped: what was
    /// submitted before is committed; a submission arriving later is refused. Call once ingest
    /// has stopped.
    pub async fn join(self) {
        drop(self.submissions);
        self.close.cancel();
        for task in self.tasks {
            if let Err(e) = task.await {
                tracing::error!(error = %e, "Pipeline stage panicked.");
            }
        }
    }
}

/// Routes submissions to shards until the entrance is closed, either by every sender going
/// away or by `close`; then it forwards what is still queued and ends.
async fn route(
    mut rx: mpsc::Receiver<Submission>,
    shards: Vec<mpsc::Sender<Submission>>,
    close: CancellationToken,
) {
    loop {
        let next = tokio::select! {
            biased;
            next = rx.recv() => next,
            _ = close.cancelled() => {
                // Late senders now get an error (and do not acknowledge their devices); what is
                // already queued is still delivered.
                rx.close();
                rx.recv().await
            }
        };
        let Some(submission) = next else { break };
        let shard = &shards[shard_for(&submission.person_id, shards.len())];
        if shard.send(submission).await.is_err() {
            break;
        }
    }
    debug!("Router drained; exiting.");
}

/// One fence shard: the engine state of the persons hashed to it.
struct Shard {
    index: usize,
    engine: FenceEngine,
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
    /// Last alert time per (device, alert kind), for [`ALARM_REPEAT_WINDOW_SECS`].
    recent_alarms: HashMap<(String, AlertKind), DateTime<Utc>>,
}

impl Shard {
    async fn run(mut self, mut rx: mpsc::Receiver<Submission>, writes: mpsc::Sender<WriteRequest>) {
        while let Some(submission) = rx.recv().await {
            let request = self.evaluate(submission);
            if writes.send(request).await.is_err() {
                break;
            }
        }
        debug!(shard = self.index, "Fence shard drained; exiting.");
    }

    fn evaluate(&mut self, mut submission: Submission) -> WriteRequest {
        to_wgs84(&mut submission);
        let raised_at = Utc::now();
        let level = self.registry.level_of(submission.person_id);
        let catalog = self.registry.catalog();
        let mut alerts = Vec::new();
        for fix in &submission.fixes {
            let started = Instant::now();
            let transitions = self.engine.check(&catalog, fix);
            self.metrics
                .fence_check_seconds
                .observe(started.elapsed().as_secs_f64());
            alerts.extend(
                transitions
                    .into_iter()
                    .map(|t| zone_alert(t, &fix.device_id, level, raised_at)),
            );
        }
        for alarm in &submission.alarms {
            if let Some(alert) = self.alarm_alert(alarm, level, raised_at) {
                alerts.push(alert);
            }
        }
        WriteRequest {
            fixes: submission.fixes,
            alerts,
            done: submission.done,
        }
    }

    fn alarm_alert(
        &mut self,
        alarm: &DeviceAlarm,
        level: SupervisionLevel,
        raised_at: DateTime<Utc>,
    ) -> Option<Alert> {
        let kind = AlertKind::from_alarm(alarm.alarm)?;
        let key = (alarm.device_id.clone(), kind);
        if let Some(last) = self.recent_alarms.get(&key) {
            if (alarm.time - *last).abs() < ChronoDuration::seconds(ALARM_REPEAT_WINDOW_SECS) {
                return None;
            }
        }
        self.recent_alarms.insert(key, alarm.time);
        Some(Alert {
            id: new_id(),
            seq: 0,
            kind,
            person_id: alarm.person_id,
            device_id: Some(alarm.device_id.clone()),
            zone_id: None,
            severity: Severity::of(kind, level),
            time: alarm.time,
            raised_at,
            position: alarm.position,
            state: AlertState::Open,
            late: false,
            note: None,
            acknowledged_at: None,
            resolved_at: None,
        })
    }
}

/// Converts a submission's coordinates to WGS-84 in place (a gateway may report GCJ-02), with the
/// conversion zones go through; afterwards its `crs` is WGS-84.
fn to_wgs84(submission: &mut Submission) {
    let crs = submission.crs;
    if crs == Crs::Wgs84 {
        return;
    }
    for fix in &mut submission.fixes {
        (fix.lon, fix.lat) = crs::to_wgs84(crs, fix.lon, fix.lat);
    }
    for position in submission
        .alarms
        .iter_mut()
        .filter_map(|a| a.position.as_mut())
    {
        (position.lon, position.lat) = crs::to_wgs84(crs, position.lon, position.lat);
    }
    submission.crs = Crs::Wgs84;
}

fn zone_alert(
    t: Transition,
    device_id: &str,
    level: SupervisionLevel,
    raised_at: DateTime<Utc>,
) -> Alert {
    Alert {
        id: new_id(),
        seq: 0,
        kind: t.kind,
        person_id: t.person_id,
        device_id: Some(device_id.to_owned()),
        zone_id: Some(t.zone_id),
        severity: Severity::of(t.kind, level),
        time: t.time,
        raised_at,
        position: Some(t.position),
        state: AlertState::Open,
        late: t.late,
        note: None,
        acknowledged_at: None,
        resolved_at: None,
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::model::{Alarm, Fix, PersonId};

    fn shard() -> Shard {
        Shard {
            index: 0,
            engine: FenceEngine::new(FenceConfig::default()),
            registry: Arc::new(Registry::default()),
            metrics: Arc::new(Metrics::new()),
            recent_alarms: HashMap::new(),
        }
    }

    fn alarm(person: PersonId, alarm: Alarm, minute: u32) -> DeviceAlarm {
        DeviceAlarm {
            device_id: "864717003283581".into(),
            person_id: person,
            alarm,
            time: Utc.with_ymd_and_hms(2026, 2, 1, 10, minute, 0).unwrap(),
            position: None,
        }
    }

    #[test]
    fn gcj02_submissions_reach_the_engine_in_wgs84() {
        let person = crate::model::new_id();
        let (lon, lat) = (112.3625, 25.515);
        let fix = Fix {
            device_id: "864717003283581".into(),
            person_id: person,
            time: Utc.with_ymd_and_hms(2026, 2, 1, 10, 0, 0).unwrap(),
            received_at: Utc::now(),
            lat,
            lon,
            valid: true,
            accuracy_m: None,
            speed_kmh: None,
            course: None,
            altitude_m: None,
            satellites: None,
            hdop: None,
            source: crate::model::PositionSource::Gps,
            battery_pct: None,
            archived: false,
            integrity_mismatch: false,
            protocol: "json".into(),
        };
        let mut sos = alarm(person, Alarm::Sos, 0);
        sos.position = Some(crate::model::AlertPosition {
            lat,
            lon,
            accuracy_m: None,
        });
        let request = shard().evaluate(Submission {
            person_id: person,
            fixes: vec![fix.clone()],
            alarms: vec![sos],
            crs: Crs::Gcj02,
            done: None,
        });
        let expected = crs::gcj02_to_wgs84(lon, lat);
        // GCJ-02 is offset by a few hundred metres here; the stored fix is the WGS-84 point.
        assert!((expected.0 - lon).abs() > 1e-4, "{expected:?}");
        assert_eq!((request.fixes[0].lon, request.fixes[0].lat), expected);
        let position = request.alerts[0].position.unwrap();
        assert_eq!((position.lon, position.lat), expected);

        let unchanged = shard().evaluate(Submission {
            person_id: person,
            fixes: vec![fix],
            alarms: Vec::new(),
            crs: Crs::Wgs84,
            done: None,
        });
        assert_eq!((unchanged.fixes[0].lon, unchanged.fixes[0].lat), (lon, lat));
    }

    #[test]
    fn a_held_alarm_is_one_alert_until_the_window_passes() {
        let mut shard = shard();
        let person = crate::model::new_id();
        let now = Utc::now();
        let level = SupervisionLevel::Normal;
        let first = shard
            .alarm_alert(&alarm(person, Alarm::Sos, 0), level, now)
            .unwrap();
        assert_eq!(first.kind, AlertKind::Sos);
        assert_eq!(first.severity, Severity::Critical);
        assert!(shard
            .alarm_alert(&alarm(person, Alarm::Sos, 2), level, now)
            .is_none());
        // Another kind is its own event; the same kind after the window is a new one.
        assert!(shard
            .alarm_alert(&alarm(person, Alarm::Removal, 2), level, now)
            .is_some());
        assert!(shard
            .alarm_alert(&alarm(person, Alarm::Sos, 6), level, now)
            .is_some());
        // Alarms with no alert kind (vibration) raise nothing.
        assert!(shard
            .alarm_alert(&alarm(person, Alarm::Vibration, 30), level, now)
            .is_none());
    }
}

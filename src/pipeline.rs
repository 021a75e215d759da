//! The pipeline: ingest → fence shards → store writer, joined by bounded channels.
//!
//! ```text
//!  ingest ──Submission──► entrance ──► shard 0..N (FenceEngine) ──WriteRequest──► StoreWriter
//!    ▲                                                                              │
//!    └───────────────────────── commit notice (then the device is acked) ◄─────────┘
//! ```
//!
//! The entrance ([`Entrance`]) sends each person's submissions to one shard (by a hash of the
//! person id), so a person's fixes are checked in order by one engine that owns their state,
//! while different persons are checked in parallel. It picks the shard in the sender's task, so
//! a submission wakes one task on its way to the writer, not a router first. Each shard turns
//! zone transitions and device alarms into alerts and passes them, with the positions, to the
//! writer, which commits both in one transaction. Channels are bounded: a slow store pushes back on ingest rather than queueing
//! without limit.
//!
//! # A transition counts once its commit is confirmed
//!
//! A shard moves its engine state (and its device alarm episodes) as it evaluates a submission,
//! before the batch holding the resulting alerts commits. If that batch finally fails, the
//! writer hands the request's alerts back to the shard ([`WriteRequest::returns`]); the shard
//! keeps them pending and commits them with its next request (or on its own after
//! [`PENDING_RETRY`] if no submission comes). The device was not acknowledged, so it resends
//! its fixes; the resent fixes are judged late inside the episode the pending alert opened and
//! raise nothing, so the breach is committed exactly once, and the memory never stays ahead of
//! the store for longer than the store is down.
//!
//! # Timers
//!
//! Each shard also runs the timer-driven rules of its persons ([`crate::supervision`]): a
//! [`Supervisor`] with its deadline wheel beside the fence engine. The shard loop feeds it
//! every device heard from, the API's [`Notices`] and the deadlines that pass; what it raises
//! goes to the writer like a fence alert (pending until committed, once). Its part of the loop
//! is kept apart, at the end of this file ("Timer-driven rules").
//!
//! Stopping is done by closing channels: [`Pipeline::join`] closes the entrance, that is each
//! shard's input (queued submissions still go through); each shard finishes what it holds and
//! ends, which closes the writer's input; the writer commits its last batch and ends.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use std::time::Duration;

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, warn};

use crate::alarms::{AlarmEpisodes, RaisedAlarm};
use crate::fence::{crs, shard_for, FenceConfig, FenceEngine, LevelsConfig, Transition};
use crate::model::{
    new_id, Alert, AlertKind, AlertState, Crs, DeviceHeard, Fix, Submission, SupervisionLevel,
};
use crate::registry::Registry;
use crate::store::health::StoreHealth;
use crate::store::writer::{StoreWriter, WriteRequest};
use crate::store::{DeviceNewest, OpenBreach, Store, StoreConfig, StoreError, TimerAlert};
use crate::supervision::{
    Action, Clock, Notice, Raise, Recorded, SupervisionConfig, Supervisor, TimerKey,
};
use crate::telemetry::Metrics;

/// How many alerts a slow live subscriber may fall behind before it skips ahead (it can always
/// resume from the cursor feed).
const ALERT_BROADCAST_CAPACITY: usize = 1024;

/// How many committed batches of positions a slow live subscriber may fall behind before it
/// skips ahead (the positions stream then sends every person's latest position afresh).
const FIX_BROADCAST_CAPACITY: usize = 256;

/// How long alerts handed back by a failed commit wait for a submission to ride with before
/// the shard sends them on their own.
pub const PENDING_RETRY: Duration = Duration::from_secs(1);

/// The settings the pipeline is built from.
pub struct PipelineSettings {
    /// Fence engine settings.
    pub fence: FenceConfig,
    /// Confirmation and severity per supervision level.
    pub levels: LevelsConfig,
    /// Store writer settings.
    pub store: StoreConfig,
    /// Capacity of each channel.
    pub channel_capacity: usize,
    /// Monitoring orders and the timer-driven rules.
    pub supervision: SupervisionConfig,
    /// Where the timer-driven rules read the time.
    pub clock: Clock,
}

/// What the store knows of the engine's state when the service last stopped.
#[derive(Debug, Clone, Default)]
pub struct Resume {
    /// Breach episodes still open: re-opened, so a restart neither repeats a breach nor loses
    /// the `returned` that ends it.
    pub open_breaches: Vec<OpenBreach>,
    /// Each device's newest fix time: restored, so a backlog arriving after a restart is late.
    pub newest_fixes: Vec<DeviceNewest>,
    /// Each device's newest fix: where the person last was, for a leave that ends before the
    /// next fix arrives.
    pub latest_fixes: Vec<Fix>,
    /// What the timer-driven rules recompute their deadlines from.
    pub recorded: Recorded,
}

impl Resume {
    /// Reads both from the store.
    ///
    /// # Errors
    /// Store errors.
    pub async fn load(store: &dyn Store) -> Result<Resume, StoreError> {
        let now = Utc::now();
        Ok(Resume {
            open_breaches: store.open_breaches().await?,
            newest_fixes: store.newest_fix_times().await?,
            latest_fixes: store.latest_fixes().await?,
            recorded: Recorded {
                persons: store.persons().await?,
                devices: store.devices().await?,
                heard: store.heard_times().await?,
                episodes: store.open_episodes().await?,
                // An order lasts at most 92 days: older timer alerts cannot be due again.
                timer_alerts: store.timer_alerts(now - ChronoDuration::days(93)).await?,
                leaves: store
                    .leaves_ending_since(now - ChronoDuration::days(1))
                    .await?,
                orders: store.open_orders().await?,
                checkins: store.checkins_since(now - ChronoDuration::days(2)).await?,
            },
        })
    }
}

/// A running pipeline.
pub struct Pipeline {
    /// Where ingest sends submissions. Dropping every clone starts the pipeline's shutdown.
    pub submissions: Entrance,
    /// Alerts as they are committed.
    pub alerts: broadcast::Sender<Alert>,
    /// Positions as they are committed, a batch at a time.
    pub fixes: broadcast::Sender<Arc<[Fix]>>,
    /// Where the API tells the timer-driven rules of its changes.
    pub notices: Notices,
    /// Whether the store writer can reach the database (for `/readyz`).
    pub health: Arc<StoreHealth>,
    /// Closes the entrance even while stray senders (a stalled HTTP upload) still exist.
    close: CancellationToken,
    /// Tells the store writer to stop waiting for an unreachable database.
    give_up: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Pipeline {
    /// Spawns the shards and the writer, each shard's engine resumed from `resume`
    /// (see [`Resume`]).
    pub fn spawn(
        settings: PipelineSettings,
        store: Arc<dyn Store>,
        registry: Arc<Registry>,
        metrics: Arc<Metrics>,
        resume: &Resume,
    ) -> Pipeline {
        Pipeline::spawn_owning(settings, store, registry, metrics, resume, &|_| true, false)
    }

    /// [`Pipeline::spawn`] for a part of the persons (a cluster partition): only the state of
    /// the persons `owns` accepts is resumed, and only their timers run. With `stable_ids`,
    /// each alert's id is its [`crate::cluster::alert_identity`], so the same alert raised
    /// again (a partition replayed on another node) is stored once.
    pub fn spawn_owning(
        settings: PipelineSettings,
        store: Arc<dyn Store>,
        registry: Arc<Registry>,
        metrics: Arc<Metrics>,
        resume: &Resume,
        owns: &dyn Fn(&crate::model::PersonId) -> bool,
        stable_ids: bool,
    ) -> Pipeline {
        let capacity = settings.channel_capacity.max(1);
        let (alerts, _) = broadcast::channel(ALERT_BROADCAST_CAPACITY);
        let (fixes, _) = broadcast::channel(FIX_BROADCAST_CAPACITY);
        let mut tasks = Vec::new();
        let health = Arc::new(StoreHealth::default());
        let give_up = CancellationToken::new();
        let shards = settings.fence.shards();
        let writers = settings.store.writer_count().clamp(1, shards.max(1));
        let mut writer_inputs = Vec::with_capacity(writers);
        for _ in 0..writers {
            let (writes_tx, writes_rx) = mpsc::channel(capacity);
            writer_inputs.push(writes_tx);
            let writer = StoreWriter::new(
                store.clone(),
                settings.store.clone(),
                metrics.clone(),
                alerts.clone(),
                health.clone(),
                give_up.clone(),
            )
            .publishing_fixes(fixes.clone());
            tasks.push(tokio::spawn(writer.run(writes_rx)));
        }
        let (learned_tx, learned_rx) = mpsc::unbounded_channel();
        tasks.push(tokio::spawn(learn_wifi(
            learned_rx,
            store.clone(),
            registry.clone(),
        )));
        let mut shard_inputs = Vec::new();
        let mut notice_inputs = Vec::new();
        let catalog = registry.catalog();
        let now = settings.clock.now();
        let close = CancellationToken::new();
        for index in 0..shards {
            let (tx, rx) = mpsc::channel(capacity);
            shard_inputs.push(tx);
            let (notice_tx, notice_rx) = mpsc::unbounded_channel();
            notice_inputs.push(notice_tx);
            let mut engine =
                FenceEngine::with_levels(settings.fence.clone(), settings.levels.clone());
            for breach in resume
                .open_breaches
                .iter()
                .filter(|b| owns(&b.person_id) && shard_for(&b.person_id, shards) == index)
            {
                engine.resume_breach(breach.person_id, breach.zone_id, breach.kind, breach.since);
            }
            for newest in resume
                .newest_fixes
                .iter()
                .filter(|n| owns(&n.person_id) && shard_for(&n.person_id, shards) == index)
            {
                engine.resume_newest(newest.person_id, &newest.device_id, newest.time);
            }
            for fix in resume
                .latest_fixes
                .iter()
                .filter(|f| owns(&f.person_id) && shard_for(&f.person_id, shards) == index)
            {
                engine.resume_position(&catalog, fix, registry.level_of(fix.person_id));
            }
            let mut supervisor =
                Supervisor::new(settings.supervision.clone(), settings.levels.clone());
            supervisor.resume(
                &resume.recorded,
                |person| owns(person) && shard_for(person, shards) == index,
                now,
            );
            let catalog_swaps = registry.catalog_swaps();
            let (returns, returned) = mpsc::unbounded_channel();
            let mut shard = Shard {
                index,
                engine,
                registry: registry.clone(),
                metrics: metrics.clone(),
                levels: settings.levels.clone(),
                alarms: AlarmEpisodes::default(),
                pending: Vec::new(),
                returns,
                learned: learned_tx.clone(),
                supervisor,
                store: store.clone(),
                heard_writes: Vec::new(),
                clock: settings.clock,
                stable_ids,
            };
            shard.arm_curfews(None, true);
            tasks.push(tokio::spawn(shard.run(
                rx,
                close.clone(),
                returned,
                notice_rx,
                catalog_swaps,
                writer_inputs[index % writers].clone(),
            )));
        }
        drop(writer_inputs);
        drop(learned_tx);
        Pipeline {
            submissions: Entrance(Route::Shards(shard_inputs.into())),
            alerts,
            fixes,
            notices: Notices {
                shards: Arc::new(notice_inputs),
                relay: None,
            },
            health,
            close,
            give_up,
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

    /// [`Pipeline::join`], but at `deadline` the store writer stops waiting for a database it
    /// cannot reach: what it holds and what is still queued is reported not committed (those
    /// devices are not acknowledged and resend after the restart), and the stages end. Returns
    /// false when the deadline cut the drain short.
    pub async fn join_by(self, deadline: tokio::time::Instant) -> bool {
        let give_up = self.give_up.clone();
        let drained = self.join();
        tokio::pin!(drained);
        if tokio::time::timeout_at(deadline, &mut drained)
            .await
            .is_ok()
        {
            return true;
        }
        warn!("The pipeline did not drain by the shutdown deadline (the database does not answer); what is not committed is not acknowledged.");
        give_up.cancel();
        drained.await;
        false
    }
}

/// Where submissions enter: a pipeline's shards, each person's to the shard that owns them, or
/// one channel (a cluster node's fix stream). Cheap to clone; a pipeline's shards end once every
/// clone is dropped, or once [`Pipeline::join`] closes them.
#[derive(Clone, Debug)]
pub struct Entrance(Route);

#[derive(Clone, Debug)]
enum Route {
    Shards(Arc<[mpsc::Sender<Submission>]>),
    One(mpsc::Sender<Submission>),
}

impl Entrance {
    fn sender(&self, submission: &Submission) -> &mpsc::Sender<Submission> {
        match &self.0 {
            Route::Shards(shards) => &shards[shard_for(&submission.person_id, shards.len())],
            Route::One(sender) => sender,
        }
    }

    /// Hands `submission` over if its shard has room.
    ///
    /// # Errors
    /// The submission back when its shard is full or the pipeline is closed.
    // As `mpsc::Sender::try_send`: the caller gets its submission back to wait with.
    #[allow(clippy::result_large_err)]
    pub fn try_send(
        &self,
        submission: Submission,
    ) -> Result<(), mpsc::error::TrySendError<Submission>> {
        self.sender(&submission).try_send(submission)
    }

    /// Hands `submission` over, waiting for room in its shard.
    ///
    /// # Errors
    /// The submission back when the pipeline is closed.
    pub async fn send(
        &self,
        submission: Submission,
    ) -> Result<(), mpsc::error::SendError<Submission>> {
        self.sender(&submission).send(submission).await
    }
}

impl From<mpsc::Sender<Submission>> for Entrance {
    fn from(sender: mpsc::Sender<Submission>) -> Self {
        Entrance(Route::One(sender))
    }
}

/// Adds the Wi-Fi access points the shards learned to their zones and reloads the catalog, so
/// the engines see them on the next fix. Ends when every shard has ended.
async fn learn_wifi(
    mut rx: mpsc::UnboundedReceiver<Vec<(crate::model::ZoneId, String)>>,
    store: Arc<dyn Store>,
    registry: Arc<Registry>,
) {
    while let Some(learned) = rx.recv().await {
        let mut by_zone: HashMap<crate::model::ZoneId, Vec<String>> = HashMap::new();
        for (zone, bssid) in learned {
            by_zone.entry(zone).or_default().push(bssid);
        }
        for (zone, bssids) in by_zone {
            match store.add_zone_wifi(zone, &bssids).await {
                Ok(_) => {
                    tracing::info!(%zone, learned = bssids.len(), "Wi-Fi access points learned for a zone.")
                }
                Err(e) => warn!(%zone, error = %e, "Learned Wi-Fi access points not stored."),
            }
        }
        if let Err(e) = registry.reload_zones(store.as_ref()).await {
            warn!(error = %e, "Zone catalog not reloaded after learning Wi-Fi access points.");
        }
    }
    debug!("Wi-Fi learner drained; exiting.");
}

/// One fence shard: the engine state of the persons hashed to it.
struct Shard {
    index: usize,
    engine: FenceEngine,
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
    levels: LevelsConfig,
    /// Device alarm episodes, so a repeated alarm is one alert.
    alarms: AlarmEpisodes,
    /// Alerts raised here whose batch failed to commit; they go with the next request.
    pending: Vec<Alert>,
    /// Where the writer hands back the alerts of a batch that failed.
    returns: mpsc::UnboundedSender<Vec<Alert>>,
    /// Where learned Wi-Fi access points go to be added to their zones.
    learned: mpsc::UnboundedSender<Vec<(crate::model::ZoneId, String)>>,
    /// The timer-driven rules of this shard's persons, with their deadline wheel.
    supervisor: Supervisor,
    /// Where order steps are recorded (with their events).
    store: Arc<dyn Store>,
    /// Last-heard times due for writing, sent with the next write request.
    heard_writes: Vec<DeviceHeard>,
    /// Where the timer-driven rules read the time.
    clock: Clock,
    /// Alert ids are [`crate::cluster::alert_identity`] rather than fresh.
    stable_ids: bool,
}

/// What woke a shard.
enum Wake {
    Returned(Vec<Alert>),
    Due(TimerKey, DateTime<Utc>),
    Notice(Notice),
    CatalogSwapped,
    Submission(Option<Submission>),
    Retry,
    Closing,
}

impl Shard {
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Submission>,
        close: CancellationToken,
        mut returned: mpsc::UnboundedReceiver<Vec<Alert>>,
        mut notices: mpsc::UnboundedReceiver<Notice>,
        mut catalog_swaps: tokio::sync::watch::Receiver<u64>,
        writes: mpsc::Sender<WriteRequest>,
    ) {
        let mut closing = false;
        loop {
            let retry_pending = !self.pending.is_empty();
            // The branches only say what woke the shard; it acts once they are dropped.
            let wake = tokio::select! {
                biased;
                Some(alerts) = returned.recv() => Wake::Returned(alerts),
                Some((key, at)) = self.supervisor.next_due() => Wake::Due(key, at),
                Some(notice) = notices.recv() => Wake::Notice(notice),
                Ok(()) = catalog_swaps.changed() => Wake::CatalogSwapped,
                _ = close.cancelled(), if !closing => Wake::Closing,
                submission = rx.recv() => Wake::Submission(submission),
                _ = tokio::time::sleep(PENDING_RETRY), if retry_pending => Wake::Retry,
            };
            let request = match wake {
                Wake::Returned(alerts) => {
                    warn!(
                        shard = self.index,
                        alerts = alerts.len(),
                        "Alerts not committed; kept pending for the next batch."
                    );
                    self.pending.extend(alerts);
                    continue;
                }
                Wake::Due(key, at) => self.deadline_passed(key, at).await,
                Wake::Notice(notice) => self.take_notice(notice).await,
                Wake::CatalogSwapped => {
                    // Zones, schedules or assignments changed: curfew openings follow.
                    self.arm_curfews(None, false);
                    continue;
                }
                Wake::Submission(Some(submission)) => self.evaluate(submission),
                Wake::Closing => {
                    // Late senders now get an error (and do not acknowledge their devices);
                    // what is already queued is still taken.
                    rx.close();
                    closing = true;
                    continue;
                }
                Wake::Submission(None) => break,
                Wake::Retry => self.request(Vec::new(), Vec::new(), None),
            };
            let idle = request.fixes.is_empty()
                && request.alerts.is_empty()
                && request.done.is_none()
                && request.heard.is_empty();
            if idle {
                continue;
            }
            if writes.send(request).await.is_err() {
                break;
            }
        }
        // Drained: one last try for what is pending, then wait for the writer's verdict on
        // everything in flight (it drops each request's handle once it is done with it).
        if !self.pending.is_empty() {
            let last = self.request(Vec::new(), Vec::new(), None);
            let _ = writes.send(last).await;
        }
        drop(writes);
        drop(self.returns);
        while let Some(alerts) = returned.recv().await {
            error!(
                shard = self.index,
                alerts = alerts.len(),
                "Alerts not committed before shutdown; they are lost."
            );
        }
        debug!(shard = self.index, "Fence shard drained; exiting.");
    }

    /// A write request carrying `alerts` after whatever is pending.
    fn request(
        &mut self,
        fixes: Vec<crate::model::Fix>,
        alerts: Vec<Alert>,
        done: Option<tokio::sync::oneshot::Sender<Result<(), crate::model::CommitFailed>>>,
    ) -> WriteRequest {
        let mut all = std::mem::take(&mut self.pending);
        let mut alerts = alerts;
        if self.stable_ids {
            for alert in &mut alerts {
                alert.id = crate::cluster::alert_identity(
                    &alert.person_id,
                    alert.kind,
                    alert.zone_id,
                    alert.device_id.as_deref(),
                    alert.time,
                );
            }
        }
        all.extend(alerts);
        let returns = (!all.is_empty()).then(|| self.returns.clone());
        WriteRequest {
            fixes,
            alerts: all,
            done,
            returns,
            heard: std::mem::take(&mut self.heard_writes),
        }
    }

    fn evaluate(&mut self, mut submission: Submission) -> WriteRequest {
        to_wgs84(&mut submission);
        let raised_at = Utc::now();
        let level = self.registry.level_of(submission.person_id);
        let tz = self
            .registry
            .timezone_of(submission.person_id)
            .unwrap_or_else(|| self.engine.config().default_tz());
        let catalog = self.registry.catalog();
        let mut alerts = Vec::new();
        if let Some(heard) = &submission.heard {
            alerts.extend(self.device_heard(heard, level));
        }
        // Under `require_order`, a person outside a current order is not fenced; the fixes
        // are still stored.
        let monitored = self.supervisor.monitored(&submission.person_id);
        for fix in submission.fixes.iter().filter(|_| monitored) {
            let started = Instant::now();
            let suspended = self.supervisor.suspended_zones(&fix.person_id, fix.time);
            let transitions = self.engine.check_in(&catalog, fix, level, tz, &suspended);
            self.metrics
                .fence_check_seconds
                .observe(started.elapsed().as_secs_f64());
            alerts.extend(
                transitions
                    .into_iter()
                    .map(|t| zone_alert(t, &fix.device_id, &self.levels, level, raised_at)),
            );
        }
        let low_battery_pct = self.levels.get(level).low_battery_pct;
        for raised in self
            .alarms
            .observe(&submission.alarms, &submission.fixes, low_battery_pct)
        {
            alerts.push(alarm_alert(
                raised,
                submission.person_id,
                &self.levels,
                level,
                raised_at,
            ));
        }
        for sighting in &submission.wifi {
            self.engine.observe_wifi(&catalog, sighting, level);
        }
        let learned = self.engine.take_learned_wifi();
        if !learned.is_empty() && self.learned.send(learned).is_err() {
            warn!(
                shard = self.index,
                "Wi-Fi learner gone; learned access points dropped."
            );
        }
        self.request(submission.fixes, alerts, submission.done)
    }
}

/// The alert for a device alarm that opened an episode.
fn alarm_alert(
    raised: RaisedAlarm,
    person_id: crate::model::PersonId,
    levels: &LevelsConfig,
    level: SupervisionLevel,
    raised_at: DateTime<Utc>,
) -> Alert {
    Alert {
        id: new_id(),
        seq: 0,
        kind: raised.kind,
        person_id,
        device_id: Some(raised.device_id),
        zone_id: None,
        severity: levels.severity(raised.kind, level),
        time: raised.time,
        raised_at,
        position: raised.position,
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
    levels: &LevelsConfig,
    level: SupervisionLevel,
    raised_at: DateTime<Utc>,
) -> Alert {
    Alert {
        id: new_id(),
        seq: 0,
        kind: t.kind,
        person_id: t.person_id,
        device_id: Some(device_id.to_owned()),
        zone_id: t.zone_id,
        severity: levels.severity(t.kind, level),
        time: t.time,
        raised_at,
        position: Some(t.position),
        state: AlertState::Open,
        late: t.late,
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

// Timer-driven rules: the shard's side of `crate::supervision`.

/// How long a shard waits before trying again to record an order step the store refused.
const ORDER_STEP_RETRY: ChronoDuration = ChronoDuration::seconds(5);

/// Where the API tells the timer-driven rules of the changes it committed (a device bound or
/// unbound, a person's level, a leave, an order, a check-in), each routed to the shard that
/// owns the person. Cheap to clone; a handle from [`Notices::default`] goes nowhere.
#[derive(Clone, Default)]
pub struct Notices {
    shards: Arc<Vec<mpsc::UnboundedSender<Notice>>>,
    /// In cluster mode: where every notice goes instead, to reach the partition's owner.
    relay: Option<mpsc::UnboundedSender<Notice>>,
}

impl Notices {
    /// Notices handed to `relay` rather than to a pipeline of this process.
    pub fn relayed(relay: mpsc::UnboundedSender<Notice>) -> Notices {
        Notices {
            shards: Arc::default(),
            relay: Some(relay),
        }
    }

    /// Hands `notice` to its shard. A pipeline that has stopped drops it (the store has the
    /// change; the next start reads it from there).
    pub fn send(&self, notice: Notice) {
        if let Some(relay) = &self.relay {
            if relay.send(notice).is_err() {
                debug!("Cluster node stopped; supervision notice dropped.");
            }
            return;
        }
        if self.shards.is_empty() {
            return;
        }
        let shard = shard_for(&notice.person(), self.shards.len());
        if self.shards[shard].send(notice).is_err() {
            debug!("Pipeline stopped; supervision notice dropped.");
        }
    }
}

impl Shard {
    /// A device was heard from: its offline deadline moves, an open `offline` ends.
    fn device_heard(&mut self, heard: &DeviceHeard, level: SupervisionLevel) -> Vec<Alert> {
        let (actions, write) = self.supervisor.heard(heard, self.clock.now());
        self.heard_writes.extend(write);
        let raised_at = self.clock.now();
        actions
            .into_iter()
            .filter_map(|action| match action {
                Action::Raise(raise) => Some(self.rule_alert(raise, level, raised_at)),
                _ => None,
            })
            .collect()
    }

    /// A change the API committed.
    async fn take_notice(&mut self, notice: Notice) -> WriteRequest {
        // A level or time zone change moves the curfews that apply and their openings.
        let saved = match &notice {
            Notice::PersonSaved(person) => Some(person.id),
            _ => None,
        };
        let actions = self.supervisor.notice(notice, self.clock.now());
        if saved.is_some() {
            self.arm_curfews(saved, false);
        }
        self.carry_out(actions).await
    }

    /// Hands the supervisor the curfew zones (scheduled inclusion zones) of `person`, or of
    /// every person of the shard, from the catalog in force.
    fn arm_curfews(&mut self, person: Option<crate::model::PersonId>, resuming: bool) {
        let catalog = self.registry.catalog();
        let now = self.clock.now();
        let persons = match person {
            Some(person) => vec![person],
            None => self.supervisor.persons(),
        };
        for person in persons {
            let level = self.registry.level_of(person);
            let curfews = catalog
                .zones_of(&person, level)
                .filter(|z| z.kind() == crate::model::ZoneKind::Inclusion)
                .filter_map(|z| z.zone().schedule.clone().map(|s| (z.id(), s)))
                .collect();
            self.supervisor.set_curfews(person, curfews, now, resuming);
        }
    }

    /// A curfew window opened at `at`: `curfew` at once when the person's newest fix was
    /// definitely outside; uncertain, the engine waits for the next definite fix.
    fn check_curfew(
        &mut self,
        person: crate::model::PersonId,
        zone: crate::model::ZoneId,
        at: DateTime<Utc>,
        raised_at: DateTime<Utc>,
    ) -> Option<Alert> {
        let catalog = self.registry.catalog();
        let level = self.registry.level_of(person);
        let still_curfew = catalog.applies(&person, level, &zone)
            && catalog.zone(&zone).is_some_and(|z| {
                z.kind() == crate::model::ZoneKind::Inclusion && z.zone().schedule.is_some()
            });
        if !still_curfew {
            return None;
        }
        let crate::fence::CurfewOpening::Outside(position) =
            self.engine.curfew_opened(&catalog, person, zone, at, level)
        else {
            return None;
        };
        let mut alert = self.rule_alert(
            Raise {
                kind: AlertKind::Curfew,
                person,
                device: None,
                time: at,
                note: "outside when the curfew began".into(),
            },
            level,
            raised_at,
        );
        alert.zone_id = Some(zone);
        alert.position = Some(position);
        Some(alert)
    }

    /// A deadline passed.
    async fn deadline_passed(&mut self, key: TimerKey, at: DateTime<Utc>) -> WriteRequest {
        let actions = self.supervisor.fire(key, at, self.clock.now());
        self.carry_out(actions).await
    }

    /// Does what the rules asked; the alerts raised go in the returned request.
    async fn carry_out(&mut self, actions: Vec<Action>) -> WriteRequest {
        let raised_at = self.clock.now();
        let mut alerts = Vec::new();
        for action in actions {
            match action {
                Action::Raise(raise) => {
                    let level = self.registry.level_of(raise.person);
                    alerts.push(self.rule_alert(raise, level, raised_at));
                }
                Action::CheckReturn { person, zones, at } => {
                    alerts.extend(self.check_return(person, &zones, at, raised_at));
                }
                Action::CheckCurfew { person, zone, at } => {
                    alerts.extend(self.check_curfew(person, zone, at, raised_at));
                }
                Action::StepOrder { order, step, at } => {
                    match self.store.step_order(order, step, at).await {
                        Ok(Some(order)) => {
                            tracing::info!(order = %order.id, person = %order.person_id, ?step, "Monitoring order step recorded.");
                            self.supervisor.order_stepped(order, self.clock.now());
                        }
                        Ok(None) => {}
                        Err(e) => {
                            warn!(shard = self.index, %order, error = %e, "Order step not recorded; trying again.");
                            self.supervisor.retry_order_step(
                                order,
                                step,
                                self.clock.now() + ORDER_STEP_RETRY,
                                self.clock.now(),
                            );
                        }
                    }
                }
            }
        }
        self.request(Vec::new(), alerts, None)
    }

    /// A leave ended at `at`: `leave_overdue` for each suspended zone the person's latest
    /// definite fix is outside, which opens the zone's breach (the first definite fix back
    /// raises `returned`).
    fn check_return(
        &mut self,
        person: crate::model::PersonId,
        zones: &[crate::model::ZoneId],
        at: DateTime<Utc>,
        raised_at: DateTime<Utc>,
    ) -> Vec<Alert> {
        let catalog = self.registry.catalog();
        let level = self.registry.level_of(person);
        let mut alerts = Vec::new();
        for zone in zones {
            let key = TimerAlert {
                person_id: person,
                kind: AlertKind::LeaveOverdue,
                zone_id: Some(*zone),
                time: at,
            };
            if self.supervisor.already_raised(&key)
                || !catalog.zone_ids_of(&person, level).contains(zone)
            {
                continue;
            }
            let Some(position) = self.engine.latest_violation(&person, zone) else {
                continue;
            };
            self.engine.open_breach(&catalog, person, *zone, at, level);
            self.supervisor.mark_raised(key);
            let mut alert = self.rule_alert(
                Raise {
                    kind: AlertKind::LeaveOverdue,
                    person,
                    device: None,
                    time: at,
                    note: "not back when the leave permit ended".into(),
                },
                level,
                raised_at,
            );
            alert.zone_id = Some(*zone);
            alert.position = Some(position);
            alerts.push(alert);
        }
        alerts
    }

    fn rule_alert(&self, raise: Raise, level: SupervisionLevel, raised_at: DateTime<Utc>) -> Alert {
        Alert {
            id: new_id(),
            seq: 0,
            kind: raise.kind,
            person_id: raise.person,
            device_id: raise.device,
            zone_id: None,
            severity: self.levels.severity(raise.kind, level),
            time: raise.time,
            raised_at,
            position: None,
            state: AlertState::Open,
            late: false,
            note: Some(raise.note),
            disposition: None,
            acknowledged_at: None,
            verified_at: None,
            disposed_at: None,
            closed_at: None,
            repeat_of: None,
            border: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::model::{Alarm, AlertKind, DeviceAlarm, PersonId, Severity};

    /// A shard over an empty SQLite store in `dir`.
    async fn shard_in(dir: &tempfile::TempDir) -> Shard {
        let url = format!("sqlite://{}", dir.path().join("s.db").display());
        let store = crate::store::open(&url).await.unwrap();
        Shard {
            index: 0,
            engine: FenceEngine::new(FenceConfig::default()),
            registry: Arc::new(Registry::default()),
            metrics: Arc::new(Metrics::new()),
            levels: LevelsConfig::default(),
            alarms: AlarmEpisodes::default(),
            pending: Vec::new(),
            returns: mpsc::unbounded_channel().0,
            learned: mpsc::unbounded_channel().0,
            supervisor: Supervisor::new(SupervisionConfig::default(), LevelsConfig::default()),
            store,
            heard_writes: Vec::new(),
            clock: Clock::System,
            stable_ids: false,
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

    #[tokio::test]
    async fn gcj02_submissions_reach_the_engine_in_wgs84() {
        let dir = tempfile::tempdir().unwrap();
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
            wifi_bssids: Vec::new(),
            clock_skew: false,
            implausible: None,
            raw: Default::default(),
        };
        let mut sos = alarm(person, Alarm::Sos, 0);
        sos.position = Some(crate::model::AlertPosition {
            lat,
            lon,
            accuracy_m: None,
        });
        let request = shard_in(&dir).await.evaluate(Submission {
            person_id: person,
            heard: None,
            fixes: vec![fix.clone()],
            alarms: vec![sos],
            wifi: Vec::new(),
            crs: Crs::Gcj02,
            done: None,
        });
        let expected = crs::gcj02_to_wgs84(lon, lat);
        // GCJ-02 is offset by a few hundred metres here; the stored fix is the WGS-84 point.
        assert!((expected.0 - lon).abs() > 1e-4, "{expected:?}");
        assert_eq!((request.fixes[0].lon, request.fixes[0].lat), expected);
        let position = request.alerts[0].position.unwrap();
        assert_eq!((position.lon, position.lat), expected);

        let unchanged = shard_in(&dir).await.evaluate(Submission {
            person_id: person,
            heard: None,
            fixes: vec![fix],
            alarms: Vec::new(),
            wifi: Vec::new(),
            crs: Crs::Wgs84,
            done: None,
        });
        assert_eq!((unchanged.fixes[0].lon, unchanged.fixes[0].lat), (lon, lat));
    }

    #[tokio::test]
    async fn device_alarms_become_one_alert_per_episode_with_severity_by_kind_and_level() {
        let dir = tempfile::tempdir().unwrap();
        let mut shard = shard_in(&dir).await;
        let person = crate::model::new_id();
        let submit = |shard: &mut Shard, alarms: Vec<DeviceAlarm>| {
            shard
                .evaluate(Submission {
                    person_id: person,
                    fixes: Vec::new(),
                    alarms,
                    wifi: Vec::new(),
                    crs: Crs::Wgs84,
                    heard: None,
                    done: None,
                })
                .alerts
                .into_iter()
                .map(|a| (a.kind, a.severity))
                .collect::<Vec<_>>()
        };
        // A person not in the registry is at the normal level.
        assert_eq!(
            submit(
                &mut shard,
                vec![
                    alarm(person, Alarm::Sos, 0),
                    alarm(person, Alarm::PowerCut, 0),
                    alarm(person, Alarm::Fall, 0),
                    alarm(person, Alarm::Vibration, 0),
                ]
            ),
            vec![
                (AlertKind::Sos, Severity::Critical),
                (AlertKind::Tamper, Severity::High),
                (AlertKind::Fall, Severity::Critical),
            ]
        );
        // The same alarms a minute later continue their episodes.
        assert!(submit(
            &mut shard,
            vec![
                alarm(person, Alarm::Sos, 1),
                alarm(person, Alarm::Tamper, 1)
            ]
        )
        .is_empty());
    }

    // ---- through the running pipeline, over a store that fails on demand ------------------

    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

    use async_trait::async_trait;
    use tokio::sync::oneshot;

    use crate::model::{
        Checkin, Device, Fix, LeavePermit, MonitoringOrder, Person, PositionSource,
        SupervisionLevel as Level, ZoneId, ZoneKind,
    };
    use crate::store::sqlite::SqliteStore;
    use crate::store::{
        AlertQuery, NewPerson, NewRegistration, PersonPatch, Registration, StoreError, TokenRecord,
        ZoneRecord,
    };

    /// SQLite, except that the next `fail_commits` commits are refused, and that while
    /// `unreachable` is set every commit and ping fails as an unreachable database does.
    struct FlakyStore {
        inner: SqliteStore,
        fail_commits: AtomicU32,
        unreachable: AtomicBool,
    }

    #[async_trait]
    impl Store for FlakyStore {
        async fn migrate(&self) -> Result<(), StoreError> {
            self.inner.migrate().await
        }
        async fn create_person(&self, new: NewPerson) -> Result<Person, StoreError> {
            self.inner.create_person(new).await
        }
        async fn register_persons(
            &self,
            registrations: Vec<NewRegistration>,
        ) -> Result<Vec<Registration>, StoreError> {
            self.inner.register_persons(registrations).await
        }
        async fn person(&self, id: PersonId) -> Result<Person, StoreError> {
            self.inner.person(id).await
        }
        async fn persons(&self) -> Result<Vec<Person>, StoreError> {
            self.inner.persons().await
        }
        async fn update_person(
            &self,
            id: PersonId,
            patch: PersonPatch,
        ) -> Result<Person, StoreError> {
            self.inner.update_person(id, patch).await
        }
        async fn delete_person(&self, id: PersonId) -> Result<(), StoreError> {
            self.inner.delete_person(id).await
        }
        async fn create_device(
            &self,
            imei: &str,
            person_id: PersonId,
        ) -> Result<Device, StoreError> {
            self.inner.create_device(imei, person_id).await
        }
        async fn device(&self, imei: &str) -> Result<Device, StoreError> {
            self.inner.device(imei).await
        }
        async fn devices(&self) -> Result<Vec<Device>, StoreError> {
            self.inner.devices().await
        }
        async fn delete_device(&self, imei: &str) -> Result<(), StoreError> {
            self.inner.delete_device(imei).await
        }
        async fn set_device_model(
            &self,
            imei: &str,
            model: Option<&str>,
        ) -> Result<Device, StoreError> {
            self.inner.set_device_model(imei, model).await
        }
        async fn set_device_protocol(&self, imei: &str, protocol: &str) -> Result<(), StoreError> {
            self.inner.set_device_protocol(imei, protocol).await
        }
        async fn create_command(
            &self,
            command: &crate::model::DeviceCommand,
        ) -> Result<crate::model::DeviceCommand, StoreError> {
            self.inner.create_command(command).await
        }
        async fn command(
            &self,
            id: crate::model::CommandId,
        ) -> Result<crate::model::DeviceCommand, StoreError> {
            self.inner.command(id).await
        }
        async fn device_commands(
            &self,
            imei: &str,
            limit: u32,
        ) -> Result<Vec<crate::model::DeviceCommand>, StoreError> {
            self.inner.device_commands(imei, limit).await
        }
        async fn pending_commands(
            &self,
            imei: &str,
            now: chrono::DateTime<chrono::Utc>,
        ) -> Result<Vec<crate::model::DeviceCommand>, StoreError> {
            self.inner.pending_commands(imei, now).await
        }
        async fn mark_command_sent(
            &self,
            id: crate::model::CommandId,
            protocol: &str,
            reference: &str,
            at: chrono::DateTime<chrono::Utc>,
        ) -> Result<bool, StoreError> {
            self.inner
                .mark_command_sent(id, protocol, reference, at)
                .await
        }
        async fn unmark_command_sent(
            &self,
            id: crate::model::CommandId,
        ) -> Result<bool, StoreError> {
            self.inner.unmark_command_sent(id).await
        }
        async fn complete_command(
            &self,
            id: crate::model::CommandId,
            status: crate::model::CommandStatus,
            detail: Option<&str>,
            at: chrono::DateTime<chrono::Utc>,
        ) -> Result<bool, StoreError> {
            self.inner.complete_command(id, status, detail, at).await
        }
        async fn command_by_reference(
            &self,
            imei: &str,
            reference: &str,
        ) -> Result<Option<crate::model::DeviceCommand>, StoreError> {
            self.inner.command_by_reference(imei, reference).await
        }
        async fn expire_commands(
            &self,
            now: chrono::DateTime<chrono::Utc>,
        ) -> Result<Vec<crate::model::DeviceCommand>, StoreError> {
            self.inner.expire_commands(now).await
        }
        async fn next_command_expiry(
            &self,
        ) -> Result<Option<chrono::DateTime<chrono::Utc>>, StoreError> {
            self.inner.next_command_expiry().await
        }
        async fn create_zone(&self, zone: &ZoneRecord) -> Result<(), StoreError> {
            self.inner.create_zone(zone).await
        }
        async fn zone(&self, id: ZoneId) -> Result<ZoneRecord, StoreError> {
            self.inner.zone(id).await
        }
        async fn zones(&self) -> Result<Vec<ZoneRecord>, StoreError> {
            self.inner.zones().await
        }
        async fn delete_zone(&self, id: ZoneId) -> Result<(), StoreError> {
            self.inner.delete_zone(id).await
        }
        async fn add_zone_wifi(
            &self,
            id: ZoneId,
            bssids: &[String],
        ) -> Result<ZoneRecord, StoreError> {
            self.inner.add_zone_wifi(id, bssids).await
        }
        async fn set_person_zones(
            &self,
            person: PersonId,
            zones: &[ZoneId],
        ) -> Result<(), StoreError> {
            self.inner.set_person_zones(person, zones).await
        }
        async fn person_zones(&self, person: PersonId) -> Result<Vec<ZoneId>, StoreError> {
            self.inner.person_zones(person).await
        }
        async fn assignments(&self) -> Result<Vec<(PersonId, ZoneId)>, StoreError> {
            self.inner.assignments().await
        }
        async fn commit_batch(
            &self,
            fixes: &[Fix],
            alerts: Vec<Alert>,
            heard: &[DeviceHeard],
        ) -> Result<Vec<Alert>, StoreError> {
            let failing = self
                .fail_commits
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            if failing {
                return Err(StoreError::Conflict("commit refused by the test".into()));
            }
            if self.unreachable.load(Ordering::SeqCst) {
                return Err(StoreError::Database(sqlx::Error::PoolTimedOut));
            }
            self.inner.commit_batch(fixes, alerts, heard).await
        }
        async fn track(
            &self,
            person: PersonId,
            from: DateTime<Utc>,
            to: DateTime<Utc>,
            limit: u32,
        ) -> Result<Vec<Fix>, StoreError> {
            self.inner.track(person, from, to, limit).await
        }
        async fn open_breaches(&self) -> Result<Vec<OpenBreach>, StoreError> {
            self.inner.open_breaches().await
        }
        async fn newest_fix_times(&self) -> Result<Vec<DeviceNewest>, StoreError> {
            self.inner.newest_fix_times().await
        }
        async fn raise_border_hit(&self, alert: Alert) -> Result<(Alert, bool), StoreError> {
            self.inner.raise_border_hit(alert).await
        }
        async fn record_integration_read(
            &self,
            read: &crate::store::IntegrationRead,
        ) -> Result<(), StoreError> {
            self.inner.record_integration_read(read).await
        }
        async fn integration_reads(
            &self,
            query: crate::store::IntegrationReadQuery,
        ) -> Result<Vec<crate::store::IntegrationRead>, StoreError> {
            self.inner.integration_reads(query).await
        }
        async fn alerts(&self, query: AlertQuery) -> Result<Vec<Alert>, StoreError> {
            self.inner.alerts(query).await
        }
        async fn alert(&self, id: crate::model::AlertId) -> Result<Alert, StoreError> {
            self.inner.alert(id).await
        }
        async fn record_alert_action(
            &self,
            id: crate::model::AlertId,
            request: crate::store::AlertActionRequest,
        ) -> Result<Alert, StoreError> {
            self.inner.record_alert_action(id, request).await
        }
        async fn alert_actions(
            &self,
            id: crate::model::AlertId,
        ) -> Result<Vec<crate::model::AlertAction>, StoreError> {
            self.inner.alert_actions(id).await
        }
        async fn alert_stats(
            &self,
            from: DateTime<Utc>,
            to: DateTime<Utc>,
        ) -> Result<crate::store::AlertStats, StoreError> {
            self.inner.alert_stats(from, to).await
        }
        async fn events(
            &self,
            query: crate::store::EventQuery,
        ) -> Result<Vec<crate::model::Event>, StoreError> {
            self.inner.events(query).await
        }
        async fn last_event_seq(&self) -> Result<i64, StoreError> {
            self.inner.last_event_seq().await
        }
        fn event_notices(&self) -> tokio::sync::watch::Receiver<i64> {
            self.inner.event_notices()
        }
        async fn dispatch_cursor(&self, consumer: &str) -> Result<i64, StoreError> {
            self.inner.dispatch_cursor(consumer).await
        }
        async fn set_dispatch_cursor(&self, consumer: &str, seq: i64) -> Result<(), StoreError> {
            self.inner.set_dispatch_cursor(consumer, seq).await
        }
        async fn dead_letter(
            &self,
            webhook: &str,
            consumer: &str,
            seq: i64,
            attempts: u32,
            error: &str,
        ) -> Result<(), StoreError> {
            self.inner
                .dead_letter(webhook, consumer, seq, attempts, error)
                .await
        }
        async fn webhook_deliveries(
            &self,
            webhook: &str,
            state: Option<crate::store::DeliveryState>,
            after: i64,
            limit: u32,
        ) -> Result<Vec<crate::store::WebhookDelivery>, StoreError> {
            self.inner
                .webhook_deliveries(webhook, state, after, limit)
                .await
        }
        async fn request_redelivery(
            &self,
            webhook: &str,
            event_id: Option<uuid::Uuid>,
        ) -> Result<u64, StoreError> {
            self.inner.request_redelivery(webhook, event_id).await
        }
        async fn redelivery_done(
            &self,
            webhook: &str,
            seq: i64,
            outcome: Result<(), String>,
        ) -> Result<(), StoreError> {
            self.inner.redelivery_done(webhook, seq, outcome).await
        }
        async fn create_token(
            &self,
            record: &TokenRecord,
            secret_sha256: &str,
        ) -> Result<(), StoreError> {
            self.inner.create_token(record, secret_sha256).await
        }
        async fn token_by_hash(
            &self,
            secret_sha256: &str,
        ) -> Result<Option<TokenRecord>, StoreError> {
            self.inner.token_by_hash(secret_sha256).await
        }
        async fn token_count(&self) -> Result<u64, StoreError> {
            self.inner.token_count().await
        }
        async fn record_action(
            &self,
            action: crate::store::chain::NewAction,
        ) -> Result<crate::store::chain::ActionRecord, StoreError> {
            self.inner.record_action(action).await
        }
        async fn chain_heads(&self) -> Result<Vec<crate::store::chain::ChainHead>, StoreError> {
            self.inner.chain_heads().await
        }
        async fn position_devices(&self) -> Result<Vec<String>, StoreError> {
            self.inner.position_devices().await
        }
        async fn chain_records(
            &self,
            chain: &str,
            after: i64,
            limit: u32,
        ) -> Result<Vec<crate::store::chain::ChainRecord>, StoreError> {
            self.inner.chain_records(chain, after, limit).await
        }
        async fn chain_hash(
            &self,
            chain: &str,
            n: i64,
        ) -> Result<Option<crate::store::chain::Hash>, StoreError> {
            self.inner.chain_hash(chain, n).await
        }
        async fn unchained(
            &self,
        ) -> Result<(u64, Option<crate::store::chain::Unchained>), StoreError> {
            self.inner.unchained().await
        }
        async fn checkpoints(&self) -> Result<Vec<crate::store::chain::Checkpoint>, StoreError> {
            self.inner.checkpoints().await
        }
        async fn person_records(
            &self,
            table: crate::store::ChainTable,
            person: PersonId,
            from: DateTime<Utc>,
            to: DateTime<Utc>,
            after: i64,
            limit: u32,
        ) -> Result<Vec<crate::store::chain::ChainRecord>, StoreError> {
            self.inner
                .person_records(table, person, from, to, after, limit)
                .await
        }
        async fn drop_positions_before(
            &self,
            before: DateTime<Utc>,
            key: &[u8],
        ) -> Result<crate::store::chain::RetentionOutcome, StoreError> {
            self.inner.drop_positions_before(before, key).await
        }
        async fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
            self.inner.tokens().await
        }
        async fn revoke_token(
            &self,
            id: uuid::Uuid,
            at: DateTime<Utc>,
        ) -> Result<TokenRecord, StoreError> {
            self.inner.revoke_token(id, at).await
        }
        async fn record_token_use(
            &self,
            id: uuid::Uuid,
            at: DateTime<Utc>,
        ) -> Result<(), StoreError> {
            self.inner.record_token_use(id, at).await
        }
        async fn ping(&self) -> Result<(), StoreError> {
            if self.unreachable.load(Ordering::SeqCst) {
                return Err(StoreError::Database(sqlx::Error::PoolTimedOut));
            }
            self.inner.ping().await
        }
    }

    #[async_trait]
    impl crate::store::ReportRecords for FlakyStore {
        async fn level_spans(
            &self,
            person: Option<PersonId>,
            from: DateTime<Utc>,
            to: DateTime<Utc>,
        ) -> Result<Vec<crate::store::reports::LevelSpan>, StoreError> {
            self.inner.level_spans(person, from, to).await
        }
        async fn position_counts(
            &self,
            person: PersonId,
            from: DateTime<Utc>,
            to: DateTime<Utc>,
        ) -> Result<Vec<(String, u64)>, StoreError> {
            self.inner.position_counts(person, from, to).await
        }
        async fn alerts_between(
            &self,
            person: Option<PersonId>,
            from: DateTime<Utc>,
            to: DateTime<Utc>,
        ) -> Result<Vec<Alert>, StoreError> {
            self.inner.alerts_between(person, from, to).await
        }
        async fn commands_between(
            &self,
            device: &str,
            from: DateTime<Utc>,
            to: DateTime<Utc>,
        ) -> Result<Vec<crate::model::DeviceCommand>, StoreError> {
            self.inner.commands_between(device, from, to).await
        }
        async fn create_assessment(
            &self,
            assessment: &crate::store::reports::Assessment,
        ) -> Result<(), StoreError> {
            self.inner.create_assessment(assessment).await
        }
        async fn assessments(
            &self,
            person: PersonId,
            month: Option<&str>,
        ) -> Result<Vec<crate::store::reports::Assessment>, StoreError> {
            self.inner.assessments(person, month).await
        }
        async fn create_broadcast(
            &self,
            broadcast: &crate::store::reports::Broadcast,
            commands: &[crate::model::DeviceCommand],
        ) -> Result<Vec<crate::model::DeviceCommand>, StoreError> {
            self.inner.create_broadcast(broadcast, commands).await
        }
        async fn broadcast(
            &self,
            id: uuid::Uuid,
        ) -> Result<crate::store::reports::BroadcastSummary, StoreError> {
            self.inner.broadcast(id).await
        }
        async fn broadcasts(
            &self,
            limit: u32,
        ) -> Result<Vec<crate::store::reports::BroadcastSummary>, StoreError> {
            self.inner.broadcasts(limit).await
        }
    }

    #[async_trait]
    impl crate::store::SupervisionRecords for FlakyStore {
        async fn record_heard(&self, heard: &[DeviceHeard]) -> Result<(), StoreError> {
            self.inner.record_heard(heard).await
        }
        async fn heard_times(&self) -> Result<Vec<DeviceHeard>, StoreError> {
            self.inner.heard_times().await
        }
        async fn latest_fixes(&self) -> Result<Vec<Fix>, StoreError> {
            self.inner.latest_fixes().await
        }
        async fn open_episodes(&self) -> Result<Vec<crate::store::OpenEpisode>, StoreError> {
            self.inner.open_episodes().await
        }
        async fn timer_alerts(&self, since: DateTime<Utc>) -> Result<Vec<TimerAlert>, StoreError> {
            self.inner.timer_alerts(since).await
        }
        async fn create_leave(&self, leave: &LeavePermit) -> Result<(), StoreError> {
            self.inner.create_leave(leave).await
        }
        async fn leave(&self, id: crate::model::LeaveId) -> Result<LeavePermit, StoreError> {
            self.inner.leave(id).await
        }
        async fn leaves(&self, person: PersonId) -> Result<Vec<LeavePermit>, StoreError> {
            self.inner.leaves(person).await
        }
        async fn close_leave(
            &self,
            id: crate::model::LeaveId,
            closing: crate::store::LeaveClosing,
            at: DateTime<Utc>,
        ) -> Result<LeavePermit, StoreError> {
            self.inner.close_leave(id, closing, at).await
        }
        async fn leaves_ending_since(
            &self,
            since: DateTime<Utc>,
        ) -> Result<Vec<LeavePermit>, StoreError> {
            self.inner.leaves_ending_since(since).await
        }
        async fn create_order(&self, order: &MonitoringOrder) -> Result<(), StoreError> {
            self.inner.create_order(order).await
        }
        async fn orders(&self, person: PersonId) -> Result<Vec<MonitoringOrder>, StoreError> {
            self.inner.orders(person).await
        }
        async fn open_orders(&self) -> Result<Vec<MonitoringOrder>, StoreError> {
            self.inner.open_orders().await
        }
        async fn orders_in_force(
            &self,
            from: DateTime<Utc>,
            to: DateTime<Utc>,
        ) -> Result<Vec<MonitoringOrder>, StoreError> {
            self.inner.orders_in_force(from, to).await
        }
        async fn step_order(
            &self,
            id: crate::model::OrderId,
            step: crate::store::OrderStep,
            at: DateTime<Utc>,
        ) -> Result<Option<MonitoringOrder>, StoreError> {
            self.inner.step_order(id, step, at).await
        }
        async fn create_checkin(&self, checkin: &Checkin) -> Result<(), StoreError> {
            self.inner.create_checkin(checkin).await
        }
        async fn checkins(&self, person: PersonId, limit: u32) -> Result<Vec<Checkin>, StoreError> {
            self.inner.checkins(person, limit).await
        }
        async fn checkins_since(&self, since: DateTime<Utc>) -> Result<Vec<Checkin>, StoreError> {
            self.inner.checkins_since(since).await
        }
    }

    const IMEI: &str = "864717003283581";

    /// A person with one device and a 500 m home circle around (112.4, 25.6), in a fresh
    /// SQLite file that fails its next `fail_commits` commits.
    async fn flaky_setup(dir: &tempfile::TempDir) -> (Arc<FlakyStore>, PersonId) {
        let url = format!("sqlite://{}", dir.path().join("p.db").display());
        let store = Arc::new(FlakyStore {
            inner: SqliteStore::open(&url).await.unwrap(),
            fail_commits: AtomicU32::new(0),
            unreachable: AtomicBool::new(false),
        });
        store.migrate().await.unwrap();
        let person = store
            .create_person(NewPerson {
                name: "p".into(),
                level: Level::Normal,
                timezone: "Asia/Shanghai".into(),
            })
            .await
            .unwrap();
        store.create_device(IMEI, person.id).await.unwrap();
        let zone = ZoneRecord {
            id: new_id(),
            name: "home".into(),
            kind: ZoneKind::Inclusion,
            source_crs: crate::model::Crs::Wgs84,
            radius_m: Some(500.0),
            geometry: r#"{"type":"Point","coordinates":[112.4,25.6]}"#.into(),
            wifi: Default::default(),
            created_at: Utc::now(),
            scope: Default::default(),
            persons: Vec::new(),
            schedule: None,
        };
        store.create_zone(&zone).await.unwrap();
        store.set_person_zones(person.id, &[zone.id]).await.unwrap();
        (store, person.id)
    }

    async fn start(store: Arc<FlakyStore>) -> Pipeline {
        start_counted(store, Arc::new(Metrics::new())).await
    }

    /// The tests' pipeline: `shards` fence shards, one commit attempt, small channels.
    fn test_settings(shards: usize) -> PipelineSettings {
        PipelineSettings {
            fence: FenceConfig {
                shards,
                ..FenceConfig::default()
            },
            levels: LevelsConfig::default(),
            store: StoreConfig {
                commit_attempts: 1,
                ..StoreConfig::default()
            },
            channel_capacity: 16,
            supervision: SupervisionConfig::default(),
            clock: Clock::System,
        }
    }

    async fn start_counted(store: Arc<FlakyStore>, metrics: Arc<Metrics>) -> Pipeline {
        let registry = Arc::new(Registry::load(store.as_ref()).await.unwrap());
        let resume = Resume::load(store.as_ref()).await.unwrap();
        Pipeline::spawn(test_settings(1), store, registry, metrics, &resume)
    }

    /// A fix `minute` minutes into the morning, at the home circle's centre or 3 km east.
    fn fix(person: PersonId, minute: u32, outside: bool) -> Fix {
        Fix {
            device_id: IMEI.into(),
            person_id: person,
            time: Utc.with_ymd_and_hms(2026, 2, 1, 8, minute, 0).unwrap(),
            received_at: Utc::now(),
            lat: 25.6,
            lon: if outside { 112.43 } else { 112.4 },
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
        }
    }

    /// Submits fixes as one frame and waits for the commit notice.
    async fn submit(pipeline: &Pipeline, person: PersonId, fixes: Vec<Fix>) -> bool {
        let (done, notice) = oneshot::channel();
        pipeline
            .submissions
            .send(Submission {
                person_id: person,
                heard: None,
                fixes,
                alarms: Vec::new(),
                wifi: Vec::new(),
                crs: Crs::Wgs84,
                done: Some(done),
            })
            .await
            .unwrap();
        notice.await.unwrap().is_ok()
    }

    async fn zone_alerts(store: &FlakyStore) -> Vec<(AlertKind, bool)> {
        let query = AlertQuery {
            limit: 100,
            ..AlertQuery::default()
        };
        store
            .alerts(query)
            .await
            .unwrap()
            .iter()
            .map(|a| (a.kind, a.late))
            .collect()
    }

    #[tokio::test]
    async fn a_breach_whose_commit_failed_is_raised_once_when_the_device_resends() {
        let dir = tempfile::tempdir().unwrap();
        let (store, person) = flaky_setup(&dir).await;
        let pipeline = start(store.clone()).await;
        assert!(submit(&pipeline, person, vec![fix(person, 0, false)]).await);
        assert!(submit(&pipeline, person, vec![fix(person, 1, true)]).await);
        assert!(submit(&pipeline, person, vec![fix(person, 3, true)]).await);
        // Four minutes out: the breach. Its batch fails; the device is not acknowledged.
        store.fail_commits.store(1, Ordering::SeqCst);
        assert!(!submit(&pipeline, person, vec![fix(person, 4, true)]).await);
        assert!(zone_alerts(&store).await.is_empty());
        // The device resends the same fix: the breach is committed exactly once.
        assert!(submit(&pipeline, person, vec![fix(person, 4, true)]).await);
        assert!(submit(&pipeline, person, vec![fix(person, 5, true)]).await);
        pipeline.join().await;
        assert_eq!(
            zone_alerts(&store).await,
            vec![(AlertKind::ZoneExit, false)]
        );
    }

    #[tokio::test]
    async fn joining_commits_what_every_shard_holds_and_refuses_a_straggler_after() {
        let dir = tempfile::tempdir().unwrap();
        let (store, first) = flaky_setup(&dir).await;
        let mut persons = vec![(first, IMEI.to_owned())];
        for n in 1..8 {
            let person = store
                .create_person(NewPerson {
                    name: format!("p{n}"),
                    level: Level::Normal,
                    timezone: "Asia/Shanghai".into(),
                })
                .await
                .unwrap();
            let imei = format!("86471700329000{n}");
            store.create_device(&imei, person.id).await.unwrap();
            persons.push((person.id, imei));
        }
        let registry = Arc::new(Registry::load(store.as_ref()).await.unwrap());
        let resume = Resume::load(store.as_ref()).await.unwrap();
        let metrics = Arc::new(Metrics::new());
        let pipeline = Pipeline::spawn(test_settings(4), store.clone(), registry, metrics, &resume);
        let shards: std::collections::HashSet<usize> = persons
            .iter()
            .map(|(person, _)| shard_for(person, 4))
            .collect();
        assert!(shards.len() > 1, "the persons should span shards");
        // A stalled upload's handle outlives the join; the join must not wait for it.
        let straggler = pipeline.submissions.clone();
        let mut notices = Vec::new();
        for minute in 0..5 {
            for (person, imei) in &persons {
                let (done, notice) = oneshot::channel();
                let mut fix = fix(*person, minute, false);
                fix.device_id = imei.clone();
                pipeline
                    .submissions
                    .send(Submission {
                        person_id: *person,
                        heard: None,
                        fixes: vec![fix],
                        alarms: Vec::new(),
                        wifi: Vec::new(),
                        crs: Crs::Wgs84,
                        done: Some(done),
                    })
                    .await
                    .unwrap();
                notices.push(notice);
            }
        }
        pipeline.join().await;
        for notice in notices {
            assert!(notice.await.unwrap().is_ok());
        }
        let late = Submission {
            person_id: first,
            heard: None,
            fixes: vec![fix(first, 9, false)],
            alarms: Vec::new(),
            wifi: Vec::new(),
            crs: Crs::Wgs84,
            done: None,
        };
        assert!(straggler.send(late).await.is_err());
        for (person, _) in &persons {
            let track = store
                .track(
                    *person,
                    Utc.with_ymd_and_hms(2026, 2, 1, 0, 0, 0).unwrap(),
                    Utc.with_ymd_and_hms(2026, 2, 2, 0, 0, 0).unwrap(),
                    100,
                )
                .await
                .unwrap();
            assert_eq!(track.len(), 5, "{person}");
        }
    }

    /// Waits (up to five seconds) until `check` holds.
    async fn until(mut check: impl FnMut() -> bool) {
        for _ in 0..500 {
            if check() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("condition not met within 5 s");
    }

    #[tokio::test]
    async fn a_breach_decided_while_the_database_is_unreachable_is_committed_once_it_returns() {
        let dir = tempfile::tempdir().unwrap();
        let (store, person) = flaky_setup(&dir).await;
        let pipeline = start(store.clone()).await;
        assert!(submit(&pipeline, person, vec![fix(person, 0, false)]).await);
        assert!(submit(&pipeline, person, vec![fix(person, 1, true)]).await);
        assert!(submit(&pipeline, person, vec![fix(person, 3, true)]).await);
        store.unreachable.store(true, Ordering::SeqCst);
        // The fix that confirms the breach: its batch is held, not failed, and not acknowledged.
        let (done, mut notice) = oneshot::channel();
        pipeline
            .submissions
            .send(Submission {
                person_id: person,
                fixes: vec![fix(person, 4, true)],
                alarms: Vec::new(),
                wifi: Vec::new(),
                crs: Crs::Wgs84,
                heard: None,
                done: Some(done),
            })
            .await
            .unwrap();
        until(|| pipeline.health.outage().is_some()).await;
        assert_eq!(pipeline.health.outage().unwrap().held_positions, 1);
        // Several retries later (1 commit attempt is configured) it is still held.
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(matches!(
            notice.try_recv(),
            Err(oneshot::error::TryRecvError::Empty)
        ));
        assert!(zone_alerts(&store).await.is_empty());
        store.unreachable.store(false, Ordering::SeqCst);
        assert_eq!(notice.await.unwrap(), Ok(()));
        assert!(pipeline.health.outage().is_none());
        // The device resends what it had sent during the outage, then goes on.
        assert!(submit(&pipeline, person, vec![fix(person, 4, true)]).await);
        assert!(submit(&pipeline, person, vec![fix(person, 5, true)]).await);
        pipeline.join().await;
        assert_eq!(
            zone_alerts(&store).await,
            vec![(AlertKind::ZoneExit, false)]
        );
    }

    /// Sends one fix without waiting for its commit; the notice tells of it.
    async fn send(
        pipeline: &Pipeline,
        person: PersonId,
        minute: u32,
    ) -> oneshot::Receiver<Result<(), crate::model::CommitFailed>> {
        let (done, notice) = oneshot::channel();
        pipeline
            .submissions
            .send(Submission {
                person_id: person,
                fixes: vec![fix(person, minute, false)],
                alarms: Vec::new(),
                wifi: Vec::new(),
                crs: Crs::Wgs84,
                heard: None,
                done: Some(done),
            })
            .await
            .unwrap();
        notice
    }

    #[tokio::test]
    async fn the_store_gauges_combine_every_writer_sharing_the_metrics() {
        let metrics = Arc::new(Metrics::new());
        let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let ((store_a, person_a), (store_b, person_b)) =
            (flaky_setup(&dir_a).await, flaky_setup(&dir_b).await);
        let a = start_counted(store_a.clone(), metrics.clone()).await;
        let b = start_counted(store_b.clone(), metrics.clone()).await;
        store_a.unreachable.store(true, Ordering::SeqCst);
        store_b.unreachable.store(true, Ordering::SeqCst);
        let held_a = send(&a, person_a, 0).await;
        let held_b = send(&b, person_b, 0).await;
        until(|| a.health.outage().is_some() && b.health.outage().is_some()).await;
        assert_eq!(metrics.store_unavailable.get(), 1);
        assert_eq!(metrics.store_held_positions.get(), 2);
        // One writer reaches its database again; the other is still cut off.
        store_a.unreachable.store(false, Ordering::SeqCst);
        assert_eq!(held_a.await.unwrap(), Ok(()));
        assert_eq!(metrics.store_unavailable.get(), 1, "b still holds a batch");
        assert_eq!(metrics.store_held_positions.get(), 1);
        store_b.unreachable.store(false, Ordering::SeqCst);
        assert_eq!(held_b.await.unwrap(), Ok(()));
        assert_eq!(metrics.store_unavailable.get(), 0);
        assert_eq!(metrics.store_held_positions.get(), 0);
        a.join().await;
        b.join().await;
    }

    #[tokio::test]
    async fn stopping_with_the_database_unreachable_ends_at_the_deadline_unacknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let (store, person) = flaky_setup(&dir).await;
        let pipeline = start(store.clone()).await;
        store.unreachable.store(true, Ordering::SeqCst);
        let mut notices = Vec::new();
        for minute in 0..3 {
            let (done, notice) = oneshot::channel();
            pipeline
                .submissions
                .send(Submission {
                    person_id: person,
                    fixes: vec![fix(person, minute, false)],
                    alarms: Vec::new(),
                    wifi: Vec::new(),
                    crs: Crs::Wgs84,
                    heard: None,
                    done: Some(done),
                })
                .await
                .unwrap();
            notices.push(notice);
        }
        until(|| pipeline.health.outage().is_some()).await;
        let started = tokio::time::Instant::now();
        let drained = pipeline.join_by(started + Duration::from_millis(300)).await;
        assert!(!drained, "the drain was cut short");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        for notice in notices {
            assert!(notice.await.unwrap().is_err(), "not acknowledged");
        }
    }

    #[tokio::test]
    async fn alerts_of_a_failed_commit_go_out_on_their_own_if_nothing_else_comes() {
        let dir = tempfile::tempdir().unwrap();
        let (store, person) = flaky_setup(&dir).await;
        let pipeline = start(store.clone()).await;
        let frame = vec![
            fix(person, 0, false),
            fix(person, 1, true),
            fix(person, 4, true),
        ];
        store.fail_commits.store(1, Ordering::SeqCst);
        assert!(!submit(&pipeline, person, frame).await);
        // No resend: the pending alert is retried by the shard itself.
        for _ in 0..100 {
            if !zone_alerts(&store).await.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        pipeline.join().await;
        assert_eq!(
            zone_alerts(&store).await,
            vec![(AlertKind::ZoneExit, false)]
        );
    }

    #[tokio::test]
    async fn learned_home_wifi_is_stored_with_the_zone() {
        let dir = tempfile::tempdir().unwrap();
        let (store, person) = flaky_setup(&dir).await;
        let mut zone = store.zones().await.unwrap().remove(0);
        // A second zone record with an enrolment window; the first one is replaced by it.
        zone.id = new_id();
        zone.wifi.learn_until = Some(Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap());
        store.create_zone(&zone).await.unwrap();
        store.set_person_zones(person, &[zone.id]).await.unwrap();
        let pipeline = start(store.clone()).await;
        let router = "a4:56:02:1b:7c:e0".to_string();
        // Home, the router in sight, over thirteen hours.
        for hour in 0..=13u32 {
            let mut f = fix(person, 0, false);
            f.time = Utc.with_ymd_and_hms(2026, 2, 1, hour, 0, 0).unwrap();
            f.wifi_bssids = vec![router.clone()];
            assert!(submit(&pipeline, person, vec![f]).await);
        }
        pipeline.join().await;
        assert_eq!(store.zone(zone.id).await.unwrap().wifi.bssids, vec![router]);
    }

    #[tokio::test]
    async fn a_backlog_after_a_restart_is_late_and_moves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (store, person) = flaky_setup(&dir).await;
        let pipeline = start(store.clone()).await;
        // Live and at home at 08:40.
        assert!(submit(&pipeline, person, vec![fix(person, 40, false)]).await);
        pipeline.join().await;
        // Restart; then the device's blind-area backlog from 08:10-08:20 (out) arrives.
        let pipeline = start(store.clone()).await;
        let backlog = (10..=20).step_by(2).map(|m| fix(person, m, true)).collect();
        assert!(submit(&pipeline, person, backlog).await);
        // The next live fix, at home, raises no `returned`: the live state never moved.
        assert!(submit(&pipeline, person, vec![fix(person, 41, false)]).await);
        pipeline.join().await;
        assert_eq!(zone_alerts(&store).await, vec![(AlertKind::ZoneExit, true)]);
    }
}

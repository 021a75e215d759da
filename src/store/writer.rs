//! The store writer: the pipeline's last stage. It takes positions and the alerts they raised,
//! commits them in batches (one transaction per batch, group commit) and only then tells the
//! ingest side that the device may be acknowledged.
//!
//! Batches form by themselves: the writer takes everything queued while the previous commit ran,
//! up to `batch_max` positions, optionally lingering a moment for more.
//!
//! A commit can fail in two ways, handled differently:
//! - **The database cannot be reached** ([`StoreError::is_unavailable`]: connection refused or
//!   lost, no connection within `acquire_timeout`). The writer holds the batch and retries it,
//!   with back-off up to [`OUTAGE_RETRY_MAX`], for as long as the outage lasts, and reads
//!   nothing new meanwhile: the channel fills and pushes back on the fence shards and on ingest,
//!   whose connections stay open with their frames unacknowledged (each holds at most the frame
//!   in hand). So memory stays bounded by the channels and one batch however long the outage
//!   lasts, the fence decisions already made are committed with their positions when the
//!   database returns, and nothing is decided twice. The outage is recorded in
//!   [`StoreHealth`] (for `/readyz`) and the `ewall_store_unavailable` gauge (combined with
//!   any other writer's: a cluster node runs one per partition).
//! - **The database refused the batch** (any other error). It is retried `commit_attempts`
//!   times; if it keeps failing, the waiting senders are told so and their devices are not
//!   acknowledged, so they resend, and the alerts of each request go back to the shard that
//!   raised them ([`WriteRequest::returns`]) to be committed with its next request.
//!
//! Cancelling the `give_up` token (shutdown past its deadline) ends the wait: the batch in hand
//! and everything still queued are reported failed at once, unacknowledged. The writer never
//! drops a request it has taken without telling its sender.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::health::StoreHealth;
use super::{Store, StoreConfig, StoreError};
use crate::model::{Alert, CommitFailed, DeviceHeard, Fix};
use crate::telemetry::Metrics;

/// Longest wait between two attempts at a held batch while the database cannot be reached.
pub const OUTAGE_RETRY_MAX: Duration = Duration::from_secs(2);

/// How often, at most, the writer says that it is still waiting for the database.
const OUTAGE_LOG_EVERY: Duration = Duration::from_secs(30);

/// Positions and alerts to commit together, with the notice to send once they are durable.
#[derive(Debug)]
pub struct WriteRequest {
    /// Positions to store.
    pub fixes: Vec<Fix>,
    /// Alerts raised by them (or by device alarms), `seq` unassigned.
    pub alerts: Vec<Alert>,
    /// Told the outcome once the batch holding this request commits or finally fails.
    pub done: Option<oneshot::Sender<Result<(), CommitFailed>>>,
    /// Where `alerts` go back if the batch finally fails (the shard that raised them keeps them
    /// pending), so an alert whose commit failed is not lost. Dropped once the request is done.
    pub returns: Option<mpsc::UnboundedSender<Vec<Alert>>>,
    /// When devices were last heard from, written in the batch's transaction; in a batch with
    /// nothing else to commit they are written alone, and a failure is only logged (it makes
    /// an offline deadline after a restart come early, nothing worse).
    pub heard: Vec<DeviceHeard>,
}

/// Commits [`WriteRequest`]s in batches.
pub struct StoreWriter {
    store: Arc<dyn Store>,
    config: StoreConfig,
    metrics: Arc<Metrics>,
    committed_alerts: broadcast::Sender<Alert>,
    committed_fixes: Option<broadcast::Sender<Arc<[Fix]>>>,
    health: Arc<StoreHealth>,
    give_up: CancellationToken,
}

impl StoreWriter {
    /// A writer over `store`; committed alerts are published on `committed_alerts`, outages
    /// recorded in `health`, and cancelling `give_up` stops waiting for an unreachable
    /// database.
    pub fn new(
        store: Arc<dyn Store>,
        config: StoreConfig,
        metrics: Arc<Metrics>,
        committed_alerts: broadcast::Sender<Alert>,
        health: Arc<StoreHealth>,
        give_up: CancellationToken,
    ) -> Self {
        StoreWriter {
            store,
            config,
            metrics,
            committed_alerts,
            committed_fixes: None,
            health,
            give_up,
        }
    }

    /// Also publishes each committed batch's positions on `committed_fixes` (the live
    /// positions stream reads them), in commit order.
    pub fn publishing_fixes(mut self, committed_fixes: broadcast::Sender<Arc<[Fix]>>) -> Self {
        self.committed_fixes = Some(committed_fixes);
        self
    }

    /// Runs until `rx` is closed and drained: every request received is committed (or reported
    /// failed) before this returns, which is what makes shutdown lose nothing.
    pub async fn run(self, mut rx: mpsc::Receiver<WriteRequest>) {
        let mut batch: Vec<WriteRequest> = Vec::new();
        while let Some(first) = rx.recv().await {
            let mut fixes = first.fixes.len();
            batch.push(first);
            let deadline = tokio::time::Instant::now() + self.config.batch_linger;
            while fixes < self.config.batch_max {
                let next = match rx.try_recv() {
                    Ok(req) => Some(req),
                    Err(mpsc::error::TryRecvError::Empty)
                        if !self.config.batch_linger.is_zero() =>
                    {
                        tokio::time::timeout_at(deadline, rx.recv())
                            .await
                            .ok()
                            .flatten()
                    }
                    Err(_) => None,
                };
                match next {
                    Some(req) => {
                        fixes += req.fixes.len();
                        batch.push(req);
                    }
                    None => break,
                }
            }
            self.commit_batch(&mut batch).await;
        }
        // A writer that gave up waiting leaves the gauges to the writers still running.
        if let Some(outage) = self.health.outage() {
            self.metrics
                .store_writer_holds(Some(outage.held_positions), None);
        }
        debug!("Store writer drained; exiting.");
    }

    async fn commit_batch(&self, batch: &mut Vec<WriteRequest>) {
        let fixes: Vec<Fix> = batch.iter_mut().flat_map(|r| r.fixes.drain(..)).collect();
        let heard: Vec<DeviceHeard> = batch.iter_mut().flat_map(|r| r.heard.drain(..)).collect();
        let nothing_to_commit = fixes.is_empty() && batch.iter().all(|r| r.alerts.is_empty());
        if nothing_to_commit && !heard.is_empty() {
            if let Err(e) = self.store.record_heard(&heard).await {
                warn!(error = %e, devices = heard.len(), "Last-heard times not stored.");
            }
        }
        if nothing_to_commit {
            for req in batch.drain(..) {
                if let Some(done) = req.done {
                    let _ = done.send(Ok(()));
                }
            }
            return;
        }
        // Each request keeps its own alerts until the outcome is known, to hand them back.
        let alerts: Vec<Alert> = batch
            .iter()
            .flat_map(|r| r.alerts.iter().cloned())
            .collect();
        let outcome = self.commit_with_retries(&fixes, alerts, &heard).await;
        if let Err(e) = &outcome {
            error!(error = %e, positions = fixes.len(), "Batch not committed; devices will not be acknowledged and will resend.");
        }
        for req in batch.drain(..) {
            if let Some(done) = req.done {
                let _ = done.send(outcome.clone());
            }
            if let (Err(_), Some(returns)) = (&outcome, req.returns) {
                if !req.alerts.is_empty() && returns.send(req.alerts).is_err() {
                    error!("Alerts of a failed batch could not be handed back; they are lost.");
                }
            }
        }
    }

    /// Commits one batch: refused batches up to `commit_attempts` times, batches that meet an
    /// unreachable database for as long as the outage lasts (or until `give_up`).
    async fn commit_with_retries(
        &self,
        fixes: &[Fix],
        alerts: Vec<Alert>,
        heard: &[DeviceHeard],
    ) -> Result<(), CommitFailed> {
        let mut refusals = 0;
        let mut backoff = Duration::from_millis(50);
        let mut outage_logged = Instant::now();
        loop {
            if self.give_up.is_cancelled() {
                return Err(CommitFailed(
                    "the service is stopping and the database did not commit in time".into(),
                ));
            }
            let started = Instant::now();
            let result = tokio::select! {
                result = self.store.commit_batch(fixes, alerts.clone(), heard) => result,
                // An attempt against an unreachable database can take `acquire_timeout`; a
                // stopping service does not wait for it. Whatever the attempt did is rolled
                // back or, if it had committed, is found again as a resend.
                _ = self.give_up.cancelled() => continue,
            };
            let error = match result {
                Ok(stored) => {
                    self.committed(fixes, stored, started);
                    if let Some(sender) = &self.committed_fixes {
                        // Only when someone listens: a batch is copied for no one otherwise.
                        if sender.receiver_count() > 0 && !fixes.is_empty() {
                            let _ = sender.send(Arc::from(fixes));
                        }
                    }
                    return Ok(());
                }
                Err(e) => e,
            };
            self.metrics.commit_failures.inc();
            if error.is_unavailable() {
                self.unavailable(&error, fixes.len(), &mut outage_logged);
            } else {
                refusals += 1;
                warn!(attempt = refusals, error = %error, positions = fixes.len(), "Batch commit failed; retrying.");
                if refusals >= self.config.commit_attempts.max(1) {
                    return Err(CommitFailed(error.to_string()));
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = self.give_up.cancelled() => {}
            }
            backoff = (backoff * 2).min(OUTAGE_RETRY_MAX);
        }
    }

    /// Counts a committed batch, ends an outage in progress and publishes the alerts.
    fn committed(&self, fixes: &[Fix], stored: Vec<Alert>, started: Instant) {
        let positions = fixes.len();
        self.metrics
            .batch_commit_seconds
            .observe(started.elapsed().as_secs_f64());
        self.metrics.batch_size.observe(positions as f64);
        self.metrics.fixes_stored.inc_by(positions as u64);
        if let Some(outage) = self.health.available() {
            self.metrics
                .store_writer_holds(Some(outage.held_positions), None);
            let seconds = (Utc::now() - outage.since).num_milliseconds() as f64 / 1000.0;
            info!(
                seconds,
                positions, "Database reachable again; the held batch is committed."
            );
        }
        let now = Utc::now();
        for alert in stored {
            self.metrics.alert_raised(alert.kind);
            let since_fix =
                raised_by(fixes, &alert).and_then(|fix| (now - fix.received_at).to_std().ok());
            self.metrics.alert_committed(alert.seq, since_fix);
            // No subscriber is fine: the alert is in the store and the feed.
            let _ = self.committed_alerts.send(alert);
        }
    }

    /// Records a commit that failed for want of the database; logs the start of the outage and
    /// then at most every [`OUTAGE_LOG_EVERY`].
    fn unavailable(&self, error: &StoreError, positions: usize, logged: &mut Instant) {
        let before = self.health.outage().map(|o| o.held_positions);
        self.metrics.store_writer_holds(before, Some(positions));
        if self
            .health
            .unavailable(error.to_string(), positions, Utc::now())
        {
            *logged = Instant::now();
            error!(error = %error, positions, "Database unreachable; holding the batch and retrying until it answers. Devices are not acknowledged meanwhile and ingest waits.");
        } else if logged.elapsed() >= OUTAGE_LOG_EVERY {
            *logged = Instant::now();
            warn!(error = %error, positions, "Database still unreachable; batch held.");
        }
    }
}

/// The fix of the batch that raised `alert`: the same person's, at the alert's time (stored
/// alerts carry it to the microsecond). An alert raised by a fix is committed with it, unless
/// their first batch failed; alerts of timers and of the API have none.
fn raised_by<'a>(fixes: &'a [Fix], alert: &Alert) -> Option<&'a Fix> {
    alert.device_id.as_ref()?;
    let time = alert.time.timestamp_micros();
    fixes
        .iter()
        .find(|f| f.person_id == alert.person_id && f.time.timestamp_micros() == time)
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::model::{new_id, PositionSource};
    use crate::store::sqlite::SqliteStore;

    fn fix(second: u32) -> Fix {
        Fix {
            device_id: "864717003283581".into(),
            person_id: new_id(),
            time: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, second % 60).unwrap(),
            received_at: Utc::now(),
            lat: 25.5,
            lon: 112.3,
            valid: true,
            accuracy_m: None,
            speed_kmh: None,
            course: None,
            altitude_m: None,
            satellites: None,
            hdop: None,
            source: PositionSource::Gps,
            battery_pct: None,
            archived: false,
            integrity_mismatch: false,
            protocol: "gt06".into(),
            wifi_bssids: Vec::new(),
            clock_skew: false,
            implausible: None,
            raw: Default::default(),
        }
    }

    async fn sqlite(dir: &tempfile::TempDir) -> Arc<SqliteStore> {
        let url = format!("sqlite://{}", dir.path().join("w.db").display());
        let store = SqliteStore::open(&url).await.unwrap();
        store.migrate().await.unwrap();
        Arc::new(store)
    }

    fn writer(store: Arc<dyn Store>, config: StoreConfig, metrics: Arc<Metrics>) -> StoreWriter {
        StoreWriter::new(
            store,
            config,
            metrics,
            broadcast::channel(8).0,
            Arc::new(StoreHealth::default()),
            CancellationToken::new(),
        )
    }

    /// Queues `n` one-fix requests and returns their commit notices.
    async fn queue(
        tx: &mpsc::Sender<WriteRequest>,
        n: u32,
    ) -> Vec<oneshot::Receiver<Result<(), CommitFailed>>> {
        let mut notices = Vec::new();
        for i in 0..n {
            let (done, notice) = oneshot::channel();
            tx.send(WriteRequest {
                fixes: vec![fix(i)],
                alerts: Vec::new(),
                done: Some(done),
                returns: None,
                heard: Vec::new(),
            })
            .await
            .unwrap();
            notices.push(notice);
        }
        notices
    }

    #[tokio::test]
    async fn queued_requests_commit_in_batches_of_at_most_batch_max() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite(&dir).await;
        let metrics = Arc::new(Metrics::new());
        let config = StoreConfig {
            batch_max: 40,
            ..StoreConfig::default()
        };
        let writer = writer(store, config, metrics.clone());
        let (tx, rx) = mpsc::channel(200);
        // Everything is queued before the writer starts, so batches are as large as allowed.
        let notices = queue(&tx, 100).await;
        drop(tx);
        writer.run(rx).await;
        for notice in notices {
            assert_eq!(notice.await.unwrap(), Ok(()));
        }
        assert_eq!(metrics.fixes_stored.get(), 100);
        assert_eq!(metrics.batch_size.get_sample_count(), 3, "40 + 40 + 20");
        assert_eq!(metrics.batch_size.get_sample_sum(), 100.0);
    }

    #[tokio::test]
    async fn a_batch_that_cannot_commit_is_reported_to_every_sender() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite(&dir).await;
        sqlx::query("DROP TABLE positions")
            .execute(&store.pool)
            .await
            .unwrap();
        let metrics = Arc::new(Metrics::new());
        let config = StoreConfig {
            commit_attempts: 2,
            ..StoreConfig::default()
        };
        let writer = writer(store, config, metrics.clone());
        let (tx, rx) = mpsc::channel(10);
        let notices = queue(&tx, 3).await;
        drop(tx);
        writer.run(rx).await;
        for notice in notices {
            assert!(notice.await.unwrap().is_err(), "not acknowledged");
        }
        assert_eq!(metrics.commit_failures.get(), 2);
        assert_eq!(metrics.fixes_stored.get(), 0);
    }
}

//! The store writer: the pipeline's last stage. It takes positions and the alerts they raised,
//! commits them in batches (one transaction per batch, group commit) and only then tells the
//! ingest side that the device may be acknowledged.
//!
//! Batches form by themselves: the writer takes everything queued while the previous commit ran,
//! up to `batch_max` positions, optionally lingering a moment for more. A failed commit is
//! retried with back-off while the channel fills and pushes back on ingest; if it keeps
//! failing, the waiting senders are told so and their devices are not acknowledged, so they
//! resend, and the alerts of each request go back to the shard that raised them
//! ([`WriteRequest::returns`]) to be committed with its next request. The writer never drops
//! a request it has taken.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, mpsc, oneshot};
use tracing::{debug, error, warn};

use super::{Store, StoreConfig};
use crate::model::{Alert, CommitFailed, Fix};
use crate::telemetry::Metrics;

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
}

/// Commits [`WriteRequest`]s in batches.
pub struct StoreWriter {
    store: Arc<dyn Store>,
    config: StoreConfig,
    metrics: Arc<Metrics>,
    committed_alerts: broadcast::Sender<Alert>,
}

impl StoreWriter {
    /// A writer over `store`; committed alerts are published on `committed_alerts`.
    pub fn new(
        store: Arc<dyn Store>,
        config: StoreConfig,
        metrics: Arc<Metrics>,
        committed_alerts: broadcast::Sender<Alert>,
    ) -> Self {
        StoreWriter {
            store,
            config,
            metrics,
            committed_alerts,
        }
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
        debug!("Store writer drained; exiting.");
    }

    async fn commit_batch(&self, batch: &mut Vec<WriteRequest>) {
        let fixes: Vec<Fix> = batch.iter_mut().flat_map(|r| r.fixes.drain(..)).collect();
        // Each request keeps its own alerts until the outcome is known, to hand them back.
        let alerts: Vec<Alert> = batch
            .iter()
            .flat_map(|r| r.alerts.iter().cloned())
            .collect();
        let mut outcome = Err(CommitFailed("no attempt made".into()));
        let mut backoff = Duration::from_millis(50);
        for attempt in 1..=self.config.commit_attempts.max(1) {
            let started = Instant::now();
            match self.store.commit(&fixes, alerts.clone()).await {
                Ok(stored) => {
                    self.metrics
                        .batch_commit_seconds
                        .observe(started.elapsed().as_secs_f64());
                    self.metrics.batch_size.observe(fixes.len() as f64);
                    self.metrics.fixes_stored.inc_by(fixes.len() as u64);
                    for alert in stored {
                        self.metrics.alert_raised(alert.kind);
                        // No subscriber is fine: the alert is in the store and the feed.
                        let _ = self.committed_alerts.send(alert);
                    }
                    outcome = Ok(());
                    break;
                }
                Err(e) => {
                    self.metrics.commit_failures.inc();
                    warn!(attempt, error = %e, positions = fixes.len(), "Batch commit failed; retrying.");
                    outcome = Err(CommitFailed(e.to_string()));
                    if attempt < self.config.commit_attempts {
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(2));
                    }
                }
            }
        }
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
        let writer = StoreWriter::new(store, config, metrics.clone(), broadcast::channel(8).0);
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
        let writer = StoreWriter::new(store, config, metrics.clone(), broadcast::channel(8).0);
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

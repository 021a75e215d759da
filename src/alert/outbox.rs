//! The outbox reader every dispatcher shares: "give me the events after my cursor, waiting
//! until there are some", and the retry back-off they use when a consumer fails.
//!
//! Readers never receive events from the writer directly. They read the store by cursor and
//! use the store's notices only as a wake-up, and they also look every
//! [`POLL_INTERVAL`] in case a notice was missed. Because the read always starts at the
//! reader's own cursor, replaying a backlog and following live events are the same loop: there
//! is no hand-over between the two where an event could be lost or repeated.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::model::Event;
use crate::store::{EventQuery, Store, StoreError};

/// Longest a reader waits before looking at the store again without a notice.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Reads the event feed for one consumer.
pub struct AlertOutbox {
    store: Arc<dyn Store>,
    notices: watch::Receiver<i64>,
    alerts_only: bool,
    lag: Option<prometheus::IntGauge>,
}

impl AlertOutbox {
    /// A reader over `store`; with `alerts_only` it skips filing events.
    pub fn new(store: Arc<dyn Store>, alerts_only: bool) -> Self {
        AlertOutbox {
            notices: store.event_notices(),
            store,
            alerts_only,
            lag: None,
        }
    }

    /// Keeps `gauge` at the distance between the newest event and the reader's cursor while
    /// there is something to read, at 0 once there is not.
    pub fn with_lag_gauge(mut self, gauge: prometheus::IntGauge) -> Self {
        self.lag = Some(gauge);
        self
    }

    /// The store it reads.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Up to `limit` events after `after`, waiting until at least one exists. Returns an empty
    /// batch after [`POLL_INTERVAL`] without events (so a caller can do other periodic work),
    /// and `None` once `stop` is cancelled.
    ///
    /// # Errors
    /// Store errors (the caller retries).
    pub async fn next_batch(
        &mut self,
        after: i64,
        limit: u32,
        stop: &CancellationToken,
    ) -> Result<Option<Vec<Event>>, StoreError> {
        let deadline = tokio::time::Instant::now() + POLL_INTERVAL;
        loop {
            if stop.is_cancelled() {
                return Ok(None);
            }
            // Mark the notice seen before reading, so a commit after the read still wakes us.
            let newest = *self.notices.borrow_and_update();
            let events = self
                .store
                .events(EventQuery {
                    after,
                    limit,
                    alerts_only: self.alerts_only,
                })
                .await?;
            if let Some(lag) = &self.lag {
                // Nothing to read means caught up, even when the feed's newest events are of
                // kinds this reader skips.
                lag.set(if events.is_empty() {
                    0
                } else {
                    (newest - after).max(1)
                });
            }
            if !events.is_empty() {
                return Ok(Some(events));
            }
            tokio::select! {
                _ = stop.cancelled() => return Ok(None),
                _ = tokio::time::sleep_until(deadline) => return Ok(Some(Vec::new())),
                changed = self.notices.changed() => {
                    if changed.is_err() {
                        // The store is going away; fall back to polling until stopped.
                        tokio::select! {
                            _ = stop.cancelled() => return Ok(None),
                            _ = tokio::time::sleep_until(deadline) => return Ok(Some(Vec::new())),
                        }
                    }
                }
            }
        }
    }
}

/// Exponential back-off with jitter: each delay doubles up to `max`, and is drawn at random
/// from its upper half, so consumers that failed together do not retry in lockstep.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    /// Starts at `initial`, never exceeds `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        let initial = initial.max(Duration::from_millis(1));
        Backoff {
            initial,
            max: max.max(initial),
            current: initial,
        }
    }

    /// The next delay to wait.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.current;
        self.current = (self.current * 2).min(self.max);
        let half = ceiling / 2;
        let jitter = rand::rng().random_range(0..=half.as_micros().max(1) as u64);
        half + Duration::from_micros(jitter)
    }

    /// Back to the first delay, after a success.
    pub fn reset(&mut self) {
        self.current = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{new_id, Alert, AlertKind, AlertState, Severity};
    use crate::store::sqlite::SqliteStore;
    use chrono::Utc;

    #[test]
    fn backoff_doubles_within_jitter_and_caps() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let bounds = [(50, 100), (100, 200), (175, 350), (175, 350)];
        for (low, high) in bounds {
            let d = b.next_delay();
            assert!(
                d >= Duration::from_millis(low) && d <= Duration::from_millis(high),
                "{d:?} not in {low}..={high} ms"
            );
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }

    fn alert() -> Alert {
        Alert {
            id: new_id(),
            seq: 0,
            kind: AlertKind::Sos,
            person_id: new_id(),
            device_id: None,
            zone_id: None,
            severity: Severity::Critical,
            time: Utc::now(),
            raised_at: Utc::now(),
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
        }
    }

    #[tokio::test]
    async fn a_waiting_reader_wakes_on_a_commit_and_stops_on_cancel() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("o.db").display());
        let store = SqliteStore::open(&url).await.unwrap();
        store.migrate().await.unwrap();
        let store: Arc<dyn Store> = Arc::new(store);
        let lag = prometheus::IntGauge::new("lag", "lag").unwrap();
        let mut outbox = AlertOutbox::new(store.clone(), true).with_lag_gauge(lag.clone());
        let stop = CancellationToken::new();

        let writer = store.clone();
        let committed = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            writer.commit(&[], vec![alert()]).await.unwrap()
        });
        let mut got = Vec::new();
        while got.is_empty() {
            got = outbox.next_batch(0, 10, &stop).await.unwrap().unwrap();
        }
        let stored = committed.await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].seq, stored[0].seq);
        assert_eq!(got[0].id, stored[0].id);
        assert_eq!(
            lag.get(),
            got[0].seq,
            "the reader was at 0 when the alert came"
        );
        let none = outbox
            .next_batch(got[0].seq, 10, &stop)
            .await
            .unwrap()
            .unwrap();
        assert!(none.is_empty(), "nothing new within the poll interval");
        assert_eq!(lag.get(), 0);

        stop.cancel();
        assert!(outbox
            .next_batch(got[0].seq, 10, &stop)
            .await
            .unwrap()
            .is_none());
    }
}

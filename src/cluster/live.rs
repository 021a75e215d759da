//! Live positions on every node: what a partition's owner commits reaches the positions
//! stream (`GET /api/v1/positions/stream`) of every node, whichever node the console is
//! connected to.
//!
//! Each owned partition's pipeline publishes its committed batches and alerts on a broadcast
//! channel, as a single node's does. A forwarder per partition ([`spawn_forwarder`]) turns
//! each committed batch into one message on the core NATS subject `ewall.positions.<partition>`:
//! the newest valid position of each person the batch moved, and the alerts committed with it
//! (which change a person's state). Every node subscribes to `ewall.positions.*`
//! ([`spawn_follower`]) and hands what arrives to its own live feeds, which its positions
//! streams follow as a single node's follow its pipeline.
//!
//! Core NATS delivers at most once, and that is enough for a live view: a message lost (NATS
//! unreachable, a node reconnecting, a slow forwarder skipping ahead) leaves one person's dot
//! where it was until the person's next position, and the store, which every stream reads
//! when it opens, has everything. Nothing here is in the path of a fix's acknowledgement or
//! commit.

use std::collections::HashMap;
use std::sync::Arc;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::{ClusterConfig, ClusterError};
use crate::api::positions::LiveFeeds;
use crate::model::{Alert, Fix, PersonId};

/// How many messages from the other nodes a slow positions stream may fall behind before it
/// skips ahead (and reads every person's latest position afresh).
const FEED_CAPACITY: usize = 1024;

/// One message on `ewall.positions.<partition>`: what one commit (or a few in a row) changed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LiveChanges {
    /// The newest valid position of each person the commit moved.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub positions: Vec<Fix>,
    /// The alerts committed, each of which may change its person's state.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alerts: Vec<Alert>,
}

impl LiveChanges {
    fn is_empty(&self) -> bool {
        self.positions.is_empty() && self.alerts.is_empty()
    }

    /// Adds a committed batch: only each person's newest valid position is kept, which is
    /// all a map shows.
    fn add_batch(&mut self, batch: &[Fix]) {
        let mut index: HashMap<PersonId, usize> = self
            .positions
            .iter()
            .enumerate()
            .map(|(i, f)| (f.person_id, i))
            .collect();
        for fix in batch.iter().filter(|f| f.valid) {
            match index.get(&fix.person_id) {
                Some(&i) => {
                    if self.positions[i].time < fix.time {
                        self.positions[i] = fix.clone();
                    }
                }
                None => {
                    index.insert(fix.person_id, self.positions.len());
                    self.positions.push(fix.clone());
                }
            }
        }
    }
}

/// Publishes what one partition's pipeline commits on `subject` until the pipeline stops
/// (its broadcast channels close). Subscribe to the pipeline's channels before its first
/// commit.
pub fn spawn_forwarder(
    client: async_nats::Client,
    subject: String,
    mut fixes: broadcast::Receiver<Arc<[Fix]>>,
    mut alerts: broadcast::Receiver<Alert>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut fixes_open = true;
        let mut alerts_open = true;
        while fixes_open || alerts_open {
            let mut changes = LiveChanges::default();
            tokio::select! {
                batch = fixes.recv(), if fixes_open => match batch {
                    Ok(batch) => changes.add_batch(&batch),
                    Err(RecvError::Lagged(skipped)) => {
                        debug!(%subject, skipped, "Live forwarder fell behind its partition's commits; those positions are not forwarded.");
                    }
                    Err(RecvError::Closed) => fixes_open = false,
                },
                alert = alerts.recv(), if alerts_open => match alert {
                    Ok(alert) => changes.alerts.push(alert),
                    Err(RecvError::Lagged(skipped)) => {
                        debug!(%subject, skipped, "Live forwarder fell behind its partition's alerts; those are not forwarded.");
                    }
                    Err(RecvError::Closed) => alerts_open = false,
                },
            }
            // A commit's alerts come just before its positions: one message carries both,
            // and whatever else is ready.
            loop {
                match fixes.try_recv() {
                    Ok(batch) => changes.add_batch(&batch),
                    Err(TryRecvError::Lagged(_)) => continue,
                    Err(_) => break,
                }
            }
            while let Ok(alert) = alerts.try_recv() {
                changes.alerts.push(alert);
            }
            if changes.is_empty() {
                continue;
            }
            let payload = match serde_json::to_vec(&changes) {
                Ok(payload) => payload,
                Err(e) => {
                    // Plain data always serialises; a bug would cost only the live view.
                    warn!(error = %e, "Live positions not encoded.");
                    continue;
                }
            };
            if let Err(e) = client.publish(subject.clone(), payload.into()).await {
                debug!(%subject, error = %e, "Live positions not published; the stream catches up at the person's next position.");
            }
        }
        debug!(%subject, "Live forwarder stopped with its partition.");
    })
}

/// Subscribes to every partition's live changes and hands them to the returned feeds, which
/// this node's positions streams follow, until `stop`.
///
/// # Errors
/// The subscription cannot be made.
pub async fn spawn_follower(
    client: async_nats::Client,
    cluster: &ClusterConfig,
    stop: CancellationToken,
) -> Result<(LiveFeeds, JoinHandle<()>), ClusterError> {
    let mut subscription = client
        .subscribe(cluster.positions_subjects())
        .await
        .map_err(ClusterError::jetstream)?;
    let feeds = LiveFeeds {
        fixes: broadcast::channel(FEED_CAPACITY).0,
        alerts: broadcast::channel(FEED_CAPACITY).0,
    };
    let out = feeds.clone();
    let task = tokio::spawn(async move {
        loop {
            let message = tokio::select! {
                _ = stop.cancelled() => break,
                message = subscription.next() => match message {
                    Some(message) => message,
                    None => break,
                },
            };
            let changes: LiveChanges = match serde_json::from_slice(&message.payload) {
                Ok(changes) => changes,
                Err(e) => {
                    warn!(subject = %message.subject, error = %e, "Malformed live positions dropped.");
                    continue;
                }
            };
            // Sending fails only while no stream is open, which is nothing lost.
            for alert in changes.alerts {
                let _ = out.alerts.send(alert);
            }
            if !changes.positions.is_empty() {
                let _ = out.fixes.send(Arc::from(changes.positions));
            }
        }
        debug!("Live positions follower stopped.");
    });
    Ok((feeds, task))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};

    fn fix(person: PersonId, seconds: i64, valid: bool) -> Fix {
        let time: DateTime<Utc> = DateTime::from_timestamp(1_700_000_000 + seconds, 0).unwrap();
        Fix {
            device_id: "864718000000001".into(),
            person_id: person,
            time,
            received_at: time,
            lat: 25.5 + seconds as f64 * 1e-4,
            lon: 112.3,
            valid,
            accuracy_m: Some(10.0),
            speed_kmh: None,
            course: None,
            altitude_m: None,
            satellites: None,
            hdop: None,
            source: crate::model::PositionSource::Gps,
            battery_pct: None,
            archived: false,
            integrity_mismatch: false,
            protocol: "gt06".into(),
            wifi_bssids: Vec::new(),
            clock_skew: false,
            implausible: None,
            raw: bytes::Bytes::new(),
        }
    }

    #[test]
    fn a_batch_keeps_each_persons_newest_valid_position() {
        let (a, b) = (uuid::Uuid::from_u128(1), uuid::Uuid::from_u128(2));
        let mut changes = LiveChanges::default();
        changes.add_batch(&[fix(a, 2, true), fix(a, 1, true), fix(b, 5, false)]);
        changes.add_batch(&[fix(a, 3, true), fix(a, 9, false), fix(b, 4, true)]);
        let kept: Vec<(PersonId, i64)> = changes
            .positions
            .iter()
            .map(|f| (f.person_id, f.time.timestamp() - 1_700_000_000))
            .collect();
        assert_eq!(kept, [(a, 3), (b, 4)]);
    }

    #[test]
    fn changes_survive_the_wire() {
        let mut changes = LiveChanges::default();
        changes.add_batch(&[fix(uuid::Uuid::from_u128(7), 1, true)]);
        let wire = serde_json::to_vec(&changes).unwrap();
        let back: LiveChanges = serde_json::from_slice(&wire).unwrap();
        assert_eq!(back, changes);
        let empty: LiveChanges = serde_json::from_slice(b"{}").unwrap();
        assert!(empty.is_empty());
    }
}

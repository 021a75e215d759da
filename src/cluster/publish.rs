//! The ingest side of cluster mode: each submission a connection hands over goes to the fix
//! stream, and the device is acknowledged once JetStream has acknowledged the publish.
//!
//! The publisher sits behind the same seam as the pipeline's entrance (an
//! `mpsc::Sender<Submission>` with a completion handle in each submission), so ingest does not
//! know which of the two it feeds. Publishes leave in the order the submissions arrive, on
//! one connection, so a device's fixes are in the stream in its order; their acknowledgements
//! are awaited concurrently, each completing its own submission.

use std::sync::Arc;

use async_nats::jetstream;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use super::{partition_of, ClusterConfig};
use crate::model::{CommitFailed, Crs, DeviceAlarm, DeviceHeard, Fix, Submission, WifiSighting};
use crate::telemetry::Metrics;

/// Most publishes waiting for their acknowledgement at once.
const PUBLISHES_IN_FLIGHT: usize = 1024;

/// A submission as it travels in the stream: everything but its completion handle.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StreamedSubmission {
    /// The person the device belongs to.
    pub person_id: crate::model::PersonId,
    /// Positions, in the device's order.
    pub fixes: Vec<Fix>,
    /// Alarms the device raised.
    pub alarms: Vec<DeviceAlarm>,
    /// Wi-Fi access points reported without a position.
    pub wifi: Vec<WifiSighting>,
    /// The datum of the coordinates.
    pub crs: Crs,
    /// The device the frame came from and when it arrived.
    pub heard: Option<DeviceHeard>,
}

impl StreamedSubmission {
    /// Splits a submission into what is published and its completion handle.
    pub fn split(
        submission: Submission,
    ) -> (
        StreamedSubmission,
        Option<tokio::sync::oneshot::Sender<Result<(), CommitFailed>>>,
    ) {
        (
            StreamedSubmission {
                person_id: submission.person_id,
                fixes: submission.fixes,
                alarms: submission.alarms,
                wifi: submission.wifi,
                crs: submission.crs,
                heard: submission.heard,
            },
            submission.done,
        )
    }

    /// The submission again, completed through `done`.
    pub fn into_submission(
        self,
        done: Option<tokio::sync::oneshot::Sender<Result<(), CommitFailed>>>,
    ) -> Submission {
        Submission {
            person_id: self.person_id,
            fixes: self.fixes,
            alarms: self.alarms,
            wifi: self.wifi,
            crs: self.crs,
            heard: self.heard,
            done,
        }
    }
}

/// Publishes submissions to the fix stream until every sender has gone, then waits for the
/// acknowledgements still outstanding.
pub fn spawn_publisher(
    config: Arc<ClusterConfig>,
    jetstream: jetstream::Context,
    metrics: Arc<Metrics>,
    capacity: usize,
) -> (mpsc::Sender<Submission>, JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<Submission>(capacity.max(1));
    let task = tokio::spawn(async move {
        let in_flight = Arc::new(tokio::sync::Semaphore::new(PUBLISHES_IN_FLIGHT));
        let mut waiters = tokio::task::JoinSet::new();
        while let Some(submission) = rx.recv().await {
            let partition = partition_of(&submission.person_id, config.partitions);
            let (message, done) = StreamedSubmission::split(submission);
            let payload = match serde_json::to_vec(&message) {
                Ok(p) => p,
                Err(e) => {
                    // Every field is plain data; this would be a bug, and the device resends.
                    warn!(error = %e, "Submission not encodable for the stream.");
                    complete(done, Err(CommitFailed(e.to_string())));
                    continue;
                }
            };
            let permit = in_flight
                .clone()
                .acquire_owned()
                .await
                .expect("the semaphore is never closed");
            let subject = config.fixes_subject(partition);
            let started = std::time::Instant::now();
            let sent = jetstream.publish(subject, payload.into()).await;
            let metrics = metrics.clone();
            waiters.spawn(async move {
                let acked = match sent {
                    Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                match acked {
                    Ok(()) => {
                        metrics
                            .cluster_publish_seconds
                            .observe(started.elapsed().as_secs_f64());
                        metrics
                            .cluster_published
                            .with_label_values(&["acked"])
                            .inc();
                        complete(done, Ok(()));
                    }
                    Err(reason) => {
                        metrics
                            .cluster_published
                            .with_label_values(&["failed"])
                            .inc();
                        warn!(partition, error = %reason, "Fix stream did not acknowledge a publish; the device is not acknowledged and resends.");
                        complete(done, Err(CommitFailed(reason)));
                    }
                }
                drop(permit);
            });
            while waiters.try_join_next().is_some() {}
        }
        while waiters.join_next().await.is_some() {}
        debug!("Fix publisher drained; exiting.");
    });
    (tx, task)
}

fn complete(
    done: Option<tokio::sync::oneshot::Sender<Result<(), CommitFailed>>>,
    result: Result<(), CommitFailed>,
) {
    if let Some(done) = done {
        let _ = done.send(result);
    }
}

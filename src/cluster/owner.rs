//! One owned partition: its durable consumer read in order into a pipeline of its own, each
//! message acknowledged to the stream only after what it carried is committed to the store.
//!
//! The pipeline is the single-node one ([`Pipeline::spawn_owning`]), resumed from the store
//! for the partition's persons only, as a restart resumes the whole service: open episodes,
//! each device's newest fix and the timers' deadlines. Its timers (offline, leave, orders)
//! therefore run on the partition's owner and move with the partition.
//!
//! A message whose commit fails is not acknowledged; the stream delivers it again after the
//! consumer's `ack_wait`, and what was already stored of it is skipped by the store's natural
//! keys. On release the consumer stops, the pipeline drains (its commits acknowledge their
//! messages), and only then is the lease given up.

use std::sync::Arc;

use async_nats::jetstream;
use async_nats::jetstream::consumer::pull;
use futures::StreamExt;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::publish::StreamedSubmission;
use super::{ClusterConfig, ClusterError};
use crate::pipeline::Pipeline;
use crate::telemetry::Metrics;

/// Messages read ahead of their commits (the consumer's `max_ack_pending`).
pub const READ_AHEAD: i64 = 1024;

/// A running partition.
pub struct PartitionWorker {
    /// The partition.
    pub partition: u32,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl PartitionWorker {
    /// Opens (or creates) the partition's durable consumer and starts reading it into
    /// `pipeline`.
    ///
    /// # Errors
    /// The consumer cannot be created or read.
    pub async fn start(
        config: &ClusterConfig,
        stream: &jetstream::stream::Stream,
        partition: u32,
        pipeline: Pipeline,
        metrics: Arc<Metrics>,
    ) -> Result<PartitionWorker, ClusterError> {
        let consumer = PartitionWorker::ensure_consumer(config, stream, partition).await?;
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(
            partition,
            consumer,
            config.ack_wait,
            pipeline,
            metrics,
            stop.clone(),
        ));
        Ok(PartitionWorker {
            partition,
            stop,
            task,
        })
    }

    /// The partition's durable consumer, created when missing.
    ///
    /// # Errors
    /// JetStream refuses it.
    pub async fn ensure_consumer(
        config: &ClusterConfig,
        stream: &jetstream::stream::Stream,
        partition: u32,
    ) -> Result<jetstream::consumer::Consumer<pull::Config>, ClusterError> {
        let name = ClusterConfig::consumer_name(partition);
        stream
            .get_or_create_consumer(
                &name,
                pull::Config {
                    durable_name: Some(name.clone()),
                    filter_subject: config.fixes_subject(partition),
                    ack_policy: jetstream::consumer::AckPolicy::Explicit,
                    ack_wait: config.ack_wait,
                    max_ack_pending: READ_AHEAD,
                    ..Default::default()
                },
            )
            .await
            .map_err(ClusterError::jetstream)
    }

    /// Stops reading, lets the pipeline commit what it holds and acknowledges it; returns once
    /// nothing of the partition is in hand.
    pub async fn stop(self) {
        self.stop.cancel();
        if let Err(e) = self.task.await {
            warn!(partition = self.partition, error = %e, "Partition worker panicked.");
        }
    }
}

type Completion = (
    jetstream::Message,
    oneshot::Receiver<Result<(), crate::model::CommitFailed>>,
);

async fn run(
    partition: u32,
    consumer: jetstream::consumer::Consumer<pull::Config>,
    ack_wait: std::time::Duration,
    pipeline: Pipeline,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    // Messages the last owner was given and never acknowledged (it died holding them) come
    // back only once their `ack_wait` has passed, and then before any newer message. Reading
    // sooner would take the newer ones first, and a device's fixes would be judged out of
    // order: so the partition starts once those deliveries have expired.
    if let Some(wait) = unacknowledged_expire_in(&consumer, ack_wait).await {
        info!(
            partition,
            ?wait,
            "Waiting for the last owner's unacknowledged messages to come back."
        );
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.cancelled() => {
                pipeline.join().await;
                return;
            }
        }
    }
    let mut messages = match consumer.messages().await {
        Ok(messages) => messages,
        Err(e) => {
            warn!(partition, error = %e, "Partition consumer not read; the partition waits for its next owner.");
            pipeline.join().await;
            return;
        }
    };
    let label = partition.to_string();
    let (completions, pending) = mpsc::channel::<Completion>(READ_AHEAD as usize);
    let acker = tokio::spawn(acknowledge(partition, pending));
    let mut lag_every = tokio::time::interval(std::time::Duration::from_secs(1));
    let mut consumer = consumer;
    loop {
        let next = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            _ = lag_every.tick() => {
                if let Ok(info) = consumer.info().await {
                    metrics
                        .cluster_partition_lag
                        .with_label_values(&[&label])
                        .set(i64::try_from(info.num_pending + info.num_ack_pending as u64).unwrap_or(i64::MAX));
                }
                continue;
            }
            next = messages.next() => next,
        };
        let message = match next {
            Some(Ok(message)) => message,
            Some(Err(e)) => {
                // Missed heartbeats and the like: the stream resumes by itself.
                debug!(partition, error = %e, "Fix stream read error.");
                continue;
            }
            None => {
                warn!(partition, "Fix stream ended; the partition stops here.");
                break;
            }
        };
        let streamed: StreamedSubmission = match serde_json::from_slice(&message.payload) {
            Ok(s) => s,
            Err(e) => {
                // Not ours to judge again: a message no node can read would block the partition.
                warn!(partition, error = %e, "Unreadable message in the fix stream; dropped.");
                let _ = message.ack_with(jetstream::AckKind::Term).await;
                continue;
            }
        };
        let (done, committed) = oneshot::channel();
        if pipeline
            .submissions
            .send(streamed.into_submission(Some(done)))
            .await
            .is_err()
        {
            break;
        }
        if completions.send((message, committed)).await.is_err() {
            break;
        }
    }
    // What was read ahead but not handed to the pipeline goes back at once, in order, for
    // the next owner (for a moment only: under load the stream would go on delivering).
    let returning = tokio::time::Instant::now() + std::time::Duration::from_millis(200);
    while let Ok(Some(Ok(message))) = tokio::time::timeout_at(returning, messages.next()).await {
        let _ = message.ack_with(jetstream::AckKind::Nak(None)).await;
    }
    drop(messages);
    pipeline.join().await;
    drop(completions);
    let _ = acker.await;
    metrics
        .cluster_partition_lag
        .with_label_values(&[&label])
        .set(0);
    info!(partition, "Partition drained.");
}

/// How long until the deliveries nobody acknowledged expire, when there are some.
async fn unacknowledged_expire_in(
    consumer: &jetstream::consumer::Consumer<pull::Config>,
    ack_wait: std::time::Duration,
) -> Option<std::time::Duration> {
    let mut consumer = consumer.clone();
    let info = consumer.info().await.ok()?;
    if info.num_ack_pending == 0 {
        return None;
    }
    // A margin for the server's own check of expired deliveries.
    let full = ack_wait + std::time::Duration::from_millis(500);
    let Some(last) = info.delivered.last_active else {
        return Some(full);
    };
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX) as i128;
    let elapsed = u64::try_from(now - last.unix_timestamp_nanos()).unwrap_or(0);
    Some(full.saturating_sub(std::time::Duration::from_nanos(elapsed)))
}

/// Acknowledges each message once its commit is confirmed, in the order they were read.
async fn acknowledge(partition: u32, mut pending: mpsc::Receiver<Completion>) {
    while let Some((message, committed)) = pending.recv().await {
        match committed.await {
            Ok(Ok(())) => {
                if let Err(e) = message.ack().await {
                    // Delivered again after `ack_wait`; the store keeps it once.
                    debug!(partition, error = %e, "Acknowledgement to the stream failed.");
                }
            }
            Ok(Err(failed)) => {
                warn!(partition, reason = %failed.0, "Commit failed; the message comes again.");
                let _ = message.ack_with(jetstream::AckKind::Nak(None)).await;
            }
            Err(_) => {
                let _ = message.ack_with(jetstream::AckKind::Nak(None)).await;
            }
        }
    }
}

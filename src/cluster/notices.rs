//! The API's notices to the timer-driven rules in cluster mode: a leave, an order, a check-in,
//! a person's level or a device bound, committed through any node's API, reach the supervisor
//! of the node owning the person's partition at once.
//!
//! The API hands each notice to a relay ([`crate::pipeline::Notices::relayed`]), which
//! publishes it as JSON on the core NATS subject `ewall.notices.<partition>`. Every node
//! subscribes to `ewall.notices.*` and gives each notice of a partition it owns to that
//! partition's pipeline. Core NATS delivers at most once. A notice that arrives while its
//! partition is changing hands is not needed: the change is in the store, which the next owner
//! of the partition reads when it takes it. One lost while the owner stays reaches the owner
//! from the store at its next lease round ([`super::resync`]).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::{partition_of, ClusterConfig, ClusterError};
use crate::pipeline::Notices;
use crate::supervision::Notice;

/// The notice handle of each partition this node owns, by partition.
pub type OwnedNotices = Arc<Mutex<BTreeMap<u32, Notices>>>;

fn lock(owned: &OwnedNotices) -> std::sync::MutexGuard<'_, BTreeMap<u32, Notices>> {
    owned.lock().unwrap_or_else(|p| p.into_inner())
}

/// Starts the relay: the returned handle is what the API sends its notices to; notices of
/// the partitions in `owned` go to their pipelines. Runs until `stop`.
///
/// # Errors
/// The subscription cannot be made.
pub async fn spawn_relay(
    client: async_nats::Client,
    cluster: Arc<ClusterConfig>,
    owned: OwnedNotices,
    stop: CancellationToken,
) -> Result<(Notices, JoinHandle<()>), ClusterError> {
    let prefix = cluster.notices_subject_prefix();
    let mut subscription = client
        .subscribe(format!("{prefix}*"))
        .await
        .map_err(ClusterError::jetstream)?;
    let (relay, mut outgoing) = mpsc::unbounded_channel::<Notice>();
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                Some(notice) = outgoing.recv() => {
                    let partition = partition_of(&notice.person(), cluster.partitions);
                    let payload = match serde_json::to_vec(&notice) {
                        Ok(payload) => payload,
                        Err(e) => {
                            warn!(error = %e, "Supervision notice not encoded; the owner reads the change from the store at its next round.");
                            continue;
                        }
                    };
                    if let Err(e) = client.publish(format!("{prefix}{partition}"), payload.into()).await {
                        warn!(partition, error = %e, "Supervision notice not published; the owner reads the change from the store at its next round.");
                    }
                }
                message = subscription.next() => {
                    let Some(message) = message else { break };
                    let Some(partition) = message
                        .subject
                        .as_str()
                        .strip_prefix(prefix.as_str())
                        .and_then(|p| p.parse::<u32>().ok())
                    else {
                        continue;
                    };
                    let Some(notices) = lock(&owned).get(&partition).cloned() else {
                        continue;
                    };
                    match serde_json::from_slice::<Notice>(&message.payload) {
                        Ok(notice) => notices.send(notice),
                        Err(e) => warn!(partition, error = %e, "Malformed supervision notice dropped."),
                    }
                }
            }
        }
        debug!("Supervision notice relay stopped.");
    });
    Ok((Notices::relayed(relay), task))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::CheckinMethod;

    #[test]
    fn a_notice_survives_the_wire() {
        let now = chrono::DateTime::from_timestamp(1_700_000_000, 123_000).unwrap();
        let checkin = crate::model::Checkin {
            id: crate::model::new_id(),
            person_id: crate::model::new_id(),
            time: now,
            method: CheckinMethod::Office,
            position: None,
            created_at: now,
        };
        let wire = serde_json::to_vec(&Notice::CheckedIn(checkin.clone())).unwrap();
        match serde_json::from_slice::<Notice>(&wire).unwrap() {
            Notice::CheckedIn(back) => assert_eq!(back, checkin),
            other => panic!("{other:?}"),
        }
    }
}

//! Downlink commands across nodes: a command stored through one node's API for a device
//! connected to another node is announced on the core NATS subject `ewall.commands.<imei>`,
//! and the node holding the device's connection sends the device's queued commands.
//!
//! The announcement carries no command: the command is in the shared store (`pending`), and
//! the receiving node sends every queued command of the device in order, as it does when the
//! device connects. The device's answer reaches the node it is connected to, which records it
//! in the store as a single node does. An announcement lost (NATS down, no node holding the
//! device) loses nothing: the command stays queued until the device next connects, or expires.

use std::sync::Arc;

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::ClusterConfig;
use crate::commands::CommandDispatcher;

/// Whether a device id can be one token of a subject.
fn is_subject_token(id: &str) -> bool {
    !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'.' | b'*' | b'>'))
}

/// Subscribes to every node's announcements and relays this node's own to the others, until
/// `stop`.
///
/// # Errors
/// The subscription cannot be made.
pub async fn spawn_relay(
    client: async_nats::Client,
    cluster: &ClusterConfig,
    dispatcher: Arc<CommandDispatcher>,
    stop: CancellationToken,
) -> Result<JoinHandle<()>, super::ClusterError> {
    let prefix = cluster.commands_subject("");
    let mut subscription = client
        .subscribe(format!("{prefix}*"))
        .await
        .map_err(super::ClusterError::jetstream)?;
    let (announce, mut announcements) = mpsc::unbounded_channel::<String>();
    dispatcher.announce_to_peers(announce);
    Ok(tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                Some(imei) = announcements.recv() => {
                    if !is_subject_token(&imei) {
                        debug!(device = imei, "Device id not usable in a subject; the command waits for the device to connect here.");
                        continue;
                    }
                    if let Err(e) = client.publish(format!("{prefix}{imei}"), Default::default()).await {
                        warn!(device = imei, error = %e, "Command not announced to the other nodes; it waits for the device's next connection.");
                    }
                }
                message = subscription.next() => {
                    let Some(message) = message else { break };
                    if let Some(imei) = message.subject.as_str().strip_prefix(prefix.as_str()) {
                        if dispatcher.deliver_if_connected(imei) {
                            debug!(device = imei, "Queued commands sent on another node's announcement.");
                        }
                    }
                }
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_ids_become_subjects() {
        assert!(is_subject_token("13912345678"));
        assert!(is_subject_token("864719100000013"));
        assert!(!is_subject_token(""));
        assert!(!is_subject_token("a.b"));
        assert!(!is_subject_token("a b"));
        assert!(!is_subject_token(">"));
    }
}

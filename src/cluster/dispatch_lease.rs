//! Alert dispatchers in cluster mode: each channel (`dispatch.mqtt`, `dispatch.webhook.<name>`)
//! has a lease in the same key-value bucket as the partitions, and only the node holding it
//! runs that channel's dispatcher.
//!
//! Every node runs one lease task per channel. A task takes the lease when it is free
//! (missing, expired, emptied, or left by this node's last run), starts the dispatcher from
//! the store's cursor, and renews the lease every third of `lease_ttl` with an update checked
//! against the revision it holds. A renewal that fails means another node may hold the lease
//! now: the dispatcher stops after the delivery in hand. A node that dies stops renewing; the
//! bucket drops its lease `lease_ttl` after the last renewal, and the next node to try takes
//! it and goes on from the stored cursor. A delivery in hand at the moment of a takeover may so
//! be made twice (at least once across a takeover); otherwise each delivery is made by one
//! node. A node stopped gracefully empties its leases so that another takes them at once.

use std::time::Duration;

use async_nats::jetstream::kv;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::alert::dispatch::{DispatchChannel, Dispatchers};

/// The lease key of a dispatcher channel.
pub fn dispatch_lease_key(channel: &str) -> String {
    format!("dispatch.{channel}")
}

/// Starts one lease task per channel; stopping the returned dispatchers stops each
/// dispatcher after its delivery in hand and empties its lease.
pub fn spawn_leased(
    channels: Vec<DispatchChannel>,
    leases: kv::Store,
    node_id: String,
    lease_ttl: Duration,
) -> Dispatchers {
    let stop = CancellationToken::new();
    let tasks: Vec<JoinHandle<()>> = channels
        .into_iter()
        .map(|channel| {
            tokio::spawn(hold(
                channel,
                leases.clone(),
                node_id.clone(),
                lease_ttl,
                stop.child_token(),
            ))
        })
        .collect();
    Dispatchers::from_tasks(stop, tasks)
}

/// Takes the lease when it is free and returns its revision.
async fn acquire(leases: &kv::Store, key: &str, me: &[u8]) -> Option<u64> {
    match leases.entry(key).await {
        Ok(None) => leases.create(key, me.to_vec().into()).await.ok(),
        Ok(Some(entry)) => {
            let free = entry.operation != kv::Operation::Put
                || entry.value.is_empty()
                || entry.value.as_ref() == me;
            if free {
                leases
                    .update(key, me.to_vec().into(), entry.revision)
                    .await
                    .ok()
            } else {
                None
            }
        }
        Err(e) => {
            debug!(key, error = %e, "Dispatch lease not read.");
            None
        }
    }
}

/// One channel: wait for its lease, run its dispatcher while the lease is renewed.
async fn hold(
    channel: DispatchChannel,
    leases: kv::Store,
    node_id: String,
    lease_ttl: Duration,
    stop: CancellationToken,
) {
    let key = dispatch_lease_key(&channel.name);
    let me = node_id.as_bytes();
    let period = lease_ttl / 3;
    loop {
        let Some(mut revision) = acquire(&leases, &key, me).await else {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(period) => continue,
            }
        };
        info!(channel = %channel.name, "Dispatch lease taken; delivering this channel's alerts.");
        let running = stop.child_token();
        let mut dispatcher = (channel.start)(running.clone());
        let mut every = tokio::time::interval(period);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        every.tick().await;
        loop {
            tokio::select! {
                _ = stop.cancelled() => {
                    let _ = (&mut dispatcher).await;
                    if let Err(e) = leases.update(&key, Vec::new().into(), revision).await {
                        debug!(key, error = %e, "Dispatch lease not emptied (it expires by itself).");
                    }
                    return;
                }
                _ = every.tick() => {}
            }
            match leases.update(&key, me.to_vec().into(), revision).await {
                Ok(next) => revision = next,
                Err(e) => {
                    warn!(channel = %channel.name, error = %e, "Dispatch lease lost; stopping this channel's dispatcher.");
                    running.cancel();
                    let _ = dispatcher.await;
                    break;
                }
            }
        }
    }
}

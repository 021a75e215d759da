//! Cluster mode: several ewall nodes sharing one PostgreSQL store and one NATS JetStream.
//!
//! Every node runs the listeners and the API. The node holding a device's connection does not
//! fence the device's fixes itself: it publishes each decoded submission to the JetStream
//! stream on `ewall.fixes.<partition>` ([`publish`]) and acknowledges the device once the
//! stream has acknowledged the publish, so the stream is the durable log. The persons are
//! split into a fixed number of partitions by [`partition_of`]; each partition is processed by
//! the one node holding its lease in a JetStream key-value bucket ([`node`]), which reads the
//! partition's durable consumer in order into a pipeline of its own ([`owner`]), commits the
//! positions and alerts to the store, and only then acknowledges the messages. A node that
//! takes a partition over loads the fence state of the partition's persons from the store,
//! as a restart does, and goes on from the consumer's acknowledged position; what the last
//! owner committed but did not acknowledge comes again and is stored once (positions by their
//! natural key, alerts by their deterministic identity, [`alert_identity`]).
//!
//! Without a `[cluster]` section none of this runs and the service is the single node it
//! always was.

pub mod commands;
pub mod dispatch_lease;
pub mod live;
pub mod node;
pub mod notices;
pub mod owner;
pub mod publish;
pub mod resync;

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use uuid::Uuid;

use crate::model::{AlertKind, PersonId, ZoneId};

/// The `[cluster]` section. Present means cluster mode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// The NATS server(s), `nats://HOST:PORT`; several may be given separated by commas.
    pub nats_url: String,
    /// This node's name, unique in the cluster (letters, digits, `-`, `_`). It is what the
    /// partition leases hold and what `/readyz` reports.
    pub node_id: String,
    /// How many partitions the persons are split into. Fixed for the life of a deployment:
    /// changing it moves persons to other partitions while their fixes are in the stream.
    pub partitions: u32,
    /// How long a partition lease lasts without renewal. An owner renews every third of it;
    /// a node that stops renewing loses its partitions after this long, and another node
    /// takes them within two lease periods.
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// Replicas of the fix stream and the lease bucket (3 on a 3-server NATS cluster).
    pub replicas: usize,
    /// How long the stream waits for a message's acknowledgement before it delivers the
    /// message again.
    #[serde(with = "humantime_serde")]
    pub ack_wait: Duration,
    /// Prefix of every subject, stream and bucket name, so that several deployments can share
    /// one NATS (empty: the names in DESIGN.md as they are).
    pub namespace: String,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            nats_url: "nats://127.0.0.1:4222".into(),
            node_id: String::new(),
            partitions: 64,
            lease_ttl: Duration::from_secs(10),
            replicas: 1,
            ack_wait: Duration::from_secs(30),
            namespace: String::new(),
        }
    }
}

/// Most partitions a deployment may have (each is a durable consumer and a lease).
pub const MAX_PARTITIONS: u32 = 4096;

/// A word usable in NATS subjects and stream names.
fn is_name(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl ClusterConfig {
    /// Checks the section; the error names the key (relative to `cluster.`).
    ///
    /// # Errors
    /// The key at fault and the problem.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if !(self.nats_url.starts_with("nats://") || self.nats_url.starts_with("tls://")) {
            return Err((
                "nats_url",
                format!(
                    "{:?} is not a NATS address; expected nats://HOST:PORT",
                    self.nats_url
                ),
            ));
        }
        if self.node_id.is_empty() || !is_name(&self.node_id) {
            return Err((
                "node_id",
                "must be set, unique per node, of letters, digits, '-' and '_'".into(),
            ));
        }
        if self.partitions == 0 || self.partitions > MAX_PARTITIONS {
            return Err((
                "partitions",
                format!("must be between 1 and {MAX_PARTITIONS}"),
            ));
        }
        if self.lease_ttl < Duration::from_secs(1) {
            return Err(("lease_ttl", "must be at least 1s".into()));
        }
        if self.replicas == 0 || self.replicas > 5 {
            return Err(("replicas", "must be between 1 and 5".into()));
        }
        if self.ack_wait < Duration::from_secs(1) {
            return Err(("ack_wait", "must be at least 1s".into()));
        }
        if !is_name(&self.namespace) {
            return Err((
                "namespace",
                "may hold only letters, digits, '-' and '_'".into(),
            ));
        }
        Ok(())
    }

    /// `namespace.` before a subject, or nothing.
    fn subject_prefix(&self) -> String {
        if self.namespace.is_empty() {
            String::new()
        } else {
            format!("{}.", self.namespace)
        }
    }

    /// The subject a partition's fixes are published on.
    pub fn fixes_subject(&self, partition: u32) -> String {
        format!("{}ewall.fixes.{partition}", self.subject_prefix())
    }

    /// The core NATS subject announcing a command for device `imei`.
    pub fn commands_subject(&self, imei: &str) -> String {
        format!("{}ewall.commands.{imei}", self.subject_prefix())
    }

    /// The subject prefix of the supervision notices, before the partition.
    pub fn notices_subject_prefix(&self) -> String {
        format!("{}ewall.notices.", self.subject_prefix())
    }

    /// The core NATS subject on which a partition's owner announces what it committed, for
    /// every node's live positions stream.
    pub fn positions_subject(&self, partition: u32) -> String {
        format!("{}ewall.positions.{partition}", self.subject_prefix())
    }

    /// The subjects of every partition's live positions.
    pub fn positions_subjects(&self) -> String {
        format!("{}ewall.positions.*", self.subject_prefix())
    }

    /// The subjects of the fix stream.
    pub fn fixes_subjects(&self) -> String {
        format!("{}ewall.fixes.*", self.subject_prefix())
    }

    /// The name of the fix stream.
    pub fn stream_name(&self) -> String {
        if self.namespace.is_empty() {
            "EWALL_FIXES".into()
        } else {
            format!("{}_EWALL_FIXES", self.namespace)
        }
    }

    /// The name of the lease bucket.
    pub fn lease_bucket(&self) -> String {
        if self.namespace.is_empty() {
            "ewall_leases".into()
        } else {
            format!("{}_ewall_leases", self.namespace)
        }
    }

    /// The durable consumer that a partition's owner reads.
    pub fn consumer_name(partition: u32) -> String {
        format!("fixes-{partition}")
    }
}

/// Why cluster mode could not start or went wrong.
#[derive(Debug, Error)]
pub enum ClusterError {
    /// NATS did not accept the connection.
    #[error("cannot connect to NATS at {url}: {reason}")]
    Connect {
        /// The configured address.
        url: String,
        /// The client's message.
        reason: String,
    },
    /// A JetStream request (stream, consumer, bucket) failed.
    #[error("JetStream: {0}")]
    JetStream(String),
    /// The store could not be read for a partition's state.
    #[error("cannot load a partition's state: {0}")]
    Store(#[from] crate::store::StoreError),
}

impl ClusterError {
    fn jetstream(e: impl std::fmt::Display) -> Self {
        ClusterError::JetStream(e.to_string())
    }
}

/// The partition of a person: FNV-1a (64-bit) over the 16 bytes of the person's UUID in
/// their written order, modulo `partitions`.
///
/// This function must never change: the stream and the leases of a running deployment are
/// laid out by it.
pub fn partition_of(person: &PersonId, partitions: u32) -> u32 {
    let hash = fnv1a(person.as_bytes());
    (hash % u64::from(partitions.max(1))) as u32
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// The identity of an alert, the same on every node that raises it: a UUID (version 8) made
/// from a SHA-256 of the person, kind, zone, device and fix time, that is of the fix that
/// opened the episode. A partition replayed after a takeover raises the same alert with the
/// same id, which the store keeps once.
pub fn alert_identity(
    person: &PersonId,
    kind: AlertKind,
    zone: Option<ZoneId>,
    device: Option<&str>,
    time: DateTime<Utc>,
) -> Uuid {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    hash.update(b"ewall.alert\0");
    hash.update(person.as_bytes());
    hash.update(kind.as_str().as_bytes());
    hash.update([0]);
    hash.update(zone.map(|z| *z.as_bytes()).unwrap_or([0; 16]));
    hash.update(device.unwrap_or("").as_bytes());
    hash.update([0]);
    // Microseconds: what the store keeps of a time.
    hash.update(time.timestamp_micros().to_be_bytes());
    let digest = hash.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// Which node owns which partition when `nodes` are alive: rendezvous hashing (the node with
/// the highest FNV-1a of partition and node name), so a node joining or leaving moves only
/// about `partitions / nodes` partitions.
pub fn desired_owner(partition: u32, nodes: &[String]) -> Option<&str> {
    nodes
        .iter()
        .max_by_key(|node| {
            let mut key = partition.to_be_bytes().to_vec();
            key.extend_from_slice(node.as_bytes());
            // One more mixing round: FNV of near-equal keys differs mostly in the low bits.
            fnv1a(&key)
                .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                .rotate_left(31)
        })
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_of_is_fixed() {
        // Written down once: a change of the hash would move persons between partitions.
        let person: PersonId = "0190b6a4-7c1e-7000-8000-000000000001".parse().unwrap();
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(
            partition_of(&person, 64),
            (fnv1a(person.as_bytes()) % 64) as u32
        );
        assert!(partition_of(&person, 1) == 0);
    }

    #[test]
    fn partitions_spread_persons() {
        let mut counts = [0u32; 8];
        for i in 0..8000u128 {
            let person = Uuid::from_u128(0x0190_b6a4_7c1e_7000_8000_0000_0000_0000 + i * 7919);
            counts[partition_of(&person, 8) as usize] += 1;
        }
        assert!(counts.iter().all(|&c| c > 800), "{counts:?}");
    }

    #[test]
    fn alert_identity_depends_on_every_part() {
        let person = Uuid::from_u128(1);
        let zone = Some(Uuid::from_u128(2));
        let t = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let id = alert_identity(&person, AlertKind::ZoneExit, zone, Some("d"), t);
        assert_eq!(
            id,
            alert_identity(&person, AlertKind::ZoneExit, zone, Some("d"), t)
        );
        assert_ne!(
            id,
            alert_identity(&person, AlertKind::ZoneEnter, zone, Some("d"), t)
        );
        assert_ne!(
            id,
            alert_identity(&person, AlertKind::ZoneExit, None, Some("d"), t)
        );
        assert_ne!(
            id,
            alert_identity(&person, AlertKind::ZoneExit, zone, Some("e"), t)
        );
        assert_ne!(
            id,
            alert_identity(
                &person,
                AlertKind::ZoneExit,
                zone,
                Some("d"),
                t + chrono::Duration::seconds(1)
            )
        );
    }

    #[test]
    fn rendezvous_moves_few_partitions() {
        let three: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let two: Vec<String> = ["a", "b"].iter().map(|s| s.to_string()).collect();
        let mut share = std::collections::HashMap::new();
        let mut moved = 0;
        for p in 0..64 {
            let now = desired_owner(p, &three).unwrap();
            *share.entry(now).or_insert(0) += 1;
            let before = desired_owner(p, &two).unwrap();
            if now != before {
                assert_eq!(now, "c", "only partitions going to the new node move");
                moved += 1;
            }
        }
        assert!(share.values().all(|&n| n >= 10), "{share:?}");
        assert_eq!(moved, share["c"]);
        assert_eq!(desired_owner(0, &[]), None);
    }

    #[test]
    fn the_cluster_example_parses_and_sqlite_is_refused() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/cluster/node.toml");
        let config = crate::config::Config::load(Some(&path), Vec::new()).unwrap();
        let cluster = config.cluster.expect("[cluster] present");
        assert_eq!((cluster.partitions, cluster.replicas), (64, 3));
        let config = crate::config::Config::load(
            Some(&path),
            vec![("EWALL_CLUSTER__NODE_ID".to_owned(), "node-2".to_owned())],
        )
        .unwrap();
        assert_eq!(config.cluster.unwrap().node_id, "node-2");
        let err = crate::config::Config::load(
            Some(&path),
            vec![("EWALL_STORE__URL".to_owned(), "sqlite://x.db".to_owned())],
        )
        .unwrap_err();
        assert!(err.to_string().contains("store.url"), "{err}");
        assert!(err.to_string().contains("PostgreSQL"), "{err}");
    }

    #[test]
    fn validate_names_the_key() {
        let mut c = ClusterConfig {
            node_id: "n1".into(),
            ..ClusterConfig::default()
        };
        assert!(c.validate().is_ok());
        c.partitions = 0;
        assert_eq!(c.validate().unwrap_err().0, "partitions");
        c.partitions = 64;
        c.node_id = "a b".into();
        assert_eq!(c.validate().unwrap_err().0, "node_id");
        c.node_id = "n1".into();
        c.nats_url = "http://x".into();
        assert_eq!(c.validate().unwrap_err().0, "nats_url");
    }
}

//! A cluster node: its fix publisher, and the partition leases it holds in the JetStream
//! key-value bucket with a worker for each.
//!
//! Every third of `lease_ttl` a renewer writes the node's membership key (`nodes.<node_id>`)
//! and renews the leases held, several at once (an update checked against the lease's
//! revision: one that fails and finds another node named in the lease means that node has
//! it, and its worker stops). Beside it, in rounds as often, the node
//! reads which nodes are alive (the bucket's entries expire `lease_ttl` after their last
//! write, so a node that stops writing drops out) and works out which partitions it should own
//! by rendezvous hashing over the live nodes ([`super::desired_owner`]): about
//! `partitions / nodes` each. It hands over those another node should have now (worker
//! drained first, then the lease emptied) and takes those it should have that are free
//! (created, or updated from an emptied or expired lease). A change in the bucket wakes every
//! node at once, so a partition handed over is taken without waiting for the next round.
//!
//! A node that dies stops renewing: its membership and leases expire after `lease_ttl`, and
//! within the next round (a third of it) the survivors take its partitions, well inside two
//! lease periods.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::kv;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::owner::PartitionWorker;
use super::{desired_owner, partition_of, publish, ClusterConfig, ClusterError};
use crate::config::Config;
use crate::model::Submission;
use crate::pipeline::{Pipeline, PipelineSettings, Resume};
use crate::registry::Registry;
use crate::store::health::{Outage, StoreHealth};
use crate::store::Store;
use crate::telemetry::Metrics;

/// What a node knows of the cluster, for `/readyz` and the metrics.
#[derive(Debug)]
pub struct ClusterStatus {
    /// This node.
    pub node_id: String,
    /// The deployment's partition count.
    pub partitions: u32,
    owned: Mutex<BTreeSet<u32>>,
    nodes: Mutex<Vec<String>>,
    /// The store writer's view of the database in each owned partition's pipeline.
    store_health: Mutex<BTreeMap<u32, Arc<StoreHealth>>>,
}

impl ClusterStatus {
    /// The partitions this node owns now.
    pub fn owned(&self) -> Vec<u32> {
        self.owned
            .lock()
            .expect("never poisoned: no panics while held")
            .iter()
            .copied()
            .collect()
    }

    /// The nodes alive at the last round, this one included.
    pub fn nodes(&self) -> Vec<String> {
        self.nodes
            .lock()
            .expect("never poisoned: no panics while held")
            .clone()
    }

    /// The database outage the owned partitions' store writers are in, if any: since the
    /// first of them failed, with the reason it gave, the positions all of them hold, and
    /// how many partitions are held up.
    pub fn store_outage(&self) -> Option<(Outage, usize)> {
        let healths: Vec<Arc<StoreHealth>> = self
            .store_health
            .lock()
            .expect("never poisoned: no panics while held")
            .values()
            .cloned()
            .collect();
        let outages: Vec<Outage> = healths.iter().filter_map(|h| h.outage()).collect();
        let partitions = outages.len();
        let held: usize = outages.iter().map(|o| o.held_positions).sum();
        let first = outages.into_iter().min_by_key(|o| o.since)?;
        Some((
            Outage {
                held_positions: held,
                ..first
            },
            partitions,
        ))
    }

    fn set_store_health(&self, partition: u32, health: Option<Arc<StoreHealth>>) {
        let mut healths = self
            .store_health
            .lock()
            .expect("never poisoned: no panics while held");
        match health {
            Some(health) => healths.insert(partition, health),
            None => healths.remove(&partition),
        };
    }
}

/// A running cluster node.
pub struct ClusterNode {
    /// Where ingest hands submissions (to the fix stream).
    pub submissions: mpsc::Sender<Submission>,
    /// What this node owns.
    pub status: Arc<ClusterStatus>,
    /// Where the API sends its notices: to the owner of the person's partition.
    pub notices: crate::pipeline::Notices,
    /// What every partition's owner committed, for this node's positions streams.
    pub live: crate::api::positions::LiveFeeds,
    notice_relay: (JoinHandle<()>, CancellationToken),
    live_follower: (JoinHandle<()>, CancellationToken),
    publisher: JoinHandle<()>,
    leases: JoinHandle<()>,
    release: CancellationToken,
    // Boxed: the client's handle is large and the node is held in an enum with small kin.
    bucket: Box<kv::Store>,
    cluster: Arc<ClusterConfig>,
    client: async_nats::Client,
}

/// What a partition's pipeline is built from.
#[derive(Clone)]
pub struct NodeContext {
    /// The whole configuration (the pipeline's sections).
    pub config: Arc<Config>,
    /// The shared store.
    pub store: Arc<dyn Store>,
    /// Devices, levels and zones.
    pub registry: Arc<Registry>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
}

impl ClusterNode {
    /// Connects to NATS, makes sure the fix stream and the lease bucket exist, and starts the
    /// publisher and the lease rounds.
    ///
    /// # Errors
    /// NATS cannot be reached, or the stream or bucket cannot be created.
    pub async fn start(
        cluster: ClusterConfig,
        context: NodeContext,
    ) -> Result<ClusterNode, ClusterError> {
        let cluster = Arc::new(cluster);
        let client = async_nats::ConnectOptions::new()
            .name(format!("ewall {}", cluster.node_id))
            .connect(cluster.nats_url.as_str())
            .await
            .map_err(|e| ClusterError::Connect {
                url: cluster.nats_url.clone(),
                reason: e.to_string(),
            })?;
        let jetstream = jetstream::new(client.clone());
        let stream = jetstream
            .get_or_create_stream(jetstream::stream::Config {
                name: cluster.stream_name(),
                subjects: vec![cluster.fixes_subjects()],
                num_replicas: cluster.replicas,
                storage: jetstream::stream::StorageType::File,
                // A message is kept until its partition's owner acknowledges it.
                retention: jetstream::stream::RetentionPolicy::Interest,
                ..Default::default()
            })
            .await
            .map_err(ClusterError::jetstream)?;
        let leases = open_lease_bucket(&jetstream, &cluster).await?;
        // Every partition's consumer exists from the start: with interest retention, a fix
        // published before its partition is first owned is kept for the owner.
        for partition in 0..cluster.partitions {
            PartitionWorker::ensure_consumer(&cluster, &stream, partition).await?;
        }
        let (submissions, publisher) = publish::spawn_publisher(
            cluster.clone(),
            jetstream.clone(),
            context.metrics.clone(),
            context.config.channel_capacity,
        );
        let status = Arc::new(ClusterStatus {
            node_id: cluster.node_id.clone(),
            partitions: cluster.partitions,
            owned: Mutex::new(BTreeSet::new()),
            nodes: Mutex::new(Vec::new()),
            store_health: Mutex::new(BTreeMap::new()),
        });
        let release = CancellationToken::new();
        let bucket = Box::new(leases.clone());
        let owned_notices = super::notices::OwnedNotices::default();
        let stop_notices = CancellationToken::new();
        let (notices, notice_task) = super::notices::spawn_relay(
            client.clone(),
            cluster.clone(),
            owned_notices.clone(),
            stop_notices.clone(),
        )
        .await?;
        let stop_live = CancellationToken::new();
        let (live, live_task) =
            super::live::spawn_follower(client.clone(), &cluster, stop_live.clone()).await?;
        let keeper = LeaseKeeper {
            client: client.clone(),
            cluster: cluster.clone(),
            leases,
            stream,
            context,
            status: status.clone(),
            owned: BTreeMap::new(),
            revisions: Arc::default(),
            stopping: tokio::task::JoinSet::new(),
            notices: owned_notices,
            supervision: None,
        };
        let leases = tokio::spawn(keeper.run(release.clone()));
        info!(node = %cluster.node_id, partitions = cluster.partitions, "Cluster mode: publishing fixes to the stream, taking partitions.");
        Ok(ClusterNode {
            submissions,
            status,
            notices,
            live,
            notice_relay: (notice_task, stop_notices),
            live_follower: (live_task, stop_live),
            publisher,
            leases,
            release,
            bucket,
            cluster,
            client,
        })
    }

    /// Carries commands to the node holding each device's connection
    /// ([`super::commands`]), until `stop`.
    ///
    /// # Errors
    /// The subscription cannot be made.
    pub async fn relay_commands(
        &self,
        dispatcher: Arc<crate::commands::CommandDispatcher>,
        stop: CancellationToken,
    ) -> Result<JoinHandle<()>, ClusterError> {
        super::commands::spawn_relay(self.client.clone(), &self.cluster, dispatcher, stop).await
    }

    /// Runs each alert dispatcher channel on the one node holding its lease.
    pub fn spawn_dispatchers(
        &self,
        channels: Vec<crate::alert::dispatch::DispatchChannel>,
    ) -> crate::alert::dispatch::Dispatchers {
        super::dispatch_lease::spawn_leased(
            channels,
            (*self.bucket).clone(),
            self.cluster.node_id.clone(),
            self.cluster.lease_ttl,
        )
    }

    /// Stops the node's share of the cluster once ingest has stopped: the publisher finishes
    /// the publishes in hand (their devices are acknowledged), then each owned partition's
    /// pipeline drains and its lease is handed back, so another node goes on at once.
    pub async fn stop(self) {
        drop(self.submissions);
        let _ = self.publisher.await;
        self.release.cancel();
        let _ = self.leases.await;
        self.notice_relay.1.cancel();
        let _ = self.notice_relay.0.await;
        self.live_follower.1.cancel();
        let _ = self.live_follower.0.await;
    }
}

async fn empty_lease(leases: &kv::Store, partition: u32, revision: u64) {
    if let Err(e) = leases
        .update(lease_key(partition), Vec::new().into(), revision)
        .await
    {
        debug!(partition, error = %e, "Lease not emptied (it expires by itself).");
    }
}

/// The lease bucket, created when missing. The bucket's stream is made here with the
/// key-value layout (`KV_<bucket>` on `$KV.<bucket>.>`, one value per key, roll-ups,
/// direct reads) rather than by the client's bucket creation, which first asks for account
/// details that NATS servers before 2.10 answer in a form the client does not read.
async fn open_lease_bucket(
    jetstream: &jetstream::Context,
    cluster: &ClusterConfig,
) -> Result<kv::Store, ClusterError> {
    let bucket = cluster.lease_bucket();
    if let Ok(store) = jetstream.get_key_value(bucket.clone()).await {
        return Ok(store);
    }
    jetstream
        .get_or_create_stream(jetstream::stream::Config {
            name: format!("KV_{bucket}"),
            subjects: vec![format!("$KV.{bucket}.>")],
            max_messages_per_subject: 1,
            max_age: cluster.lease_ttl,
            storage: jetstream::stream::StorageType::File,
            num_replicas: cluster.replicas,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            discard: jetstream::stream::DiscardPolicy::New,
            duplicate_window: cluster.lease_ttl.min(Duration::from_secs(120)),
            ..Default::default()
        })
        .await
        .map_err(ClusterError::jetstream)?;
    jetstream
        .get_key_value(bucket)
        .await
        .map_err(ClusterError::jetstream)
}

/// A lease held, with its worker.
struct Held {
    worker: PartitionWorker,
}

/// The revision of each lease held, shared by the rounds and the renewer.
type Revisions = Arc<Mutex<BTreeMap<u32, u64>>>;

fn lock(revisions: &Revisions) -> std::sync::MutexGuard<'_, BTreeMap<u32, u64>> {
    revisions.lock().unwrap_or_else(|p| p.into_inner())
}

/// How many lease renewals of one round are in flight at once: a round costs about
/// `leases / RENEWALS_IN_FLIGHT` round trips rather than one per lease.
const RENEWALS_IN_FLIGHT: usize = 16;

/// What one lease's renewal found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Renewal {
    /// Renewed; the lease's revision now.
    Renewed(u64),
    /// Another node holds it (or it was emptied): its worker stops.
    Lost,
    /// The bucket did not answer: kept, and tried again next round (if the outage outlasts
    /// the lease, the next try finds it lost).
    Unanswered,
}

/// Renews every lease of `held` (partition, revision), up to [`RENEWALS_IN_FLIGHT`] at a
/// time, and says what each renewal found.
async fn renew_all<F, Fut>(held: Vec<(u32, u64)>, renew_one: F) -> Vec<(u32, Renewal)>
where
    F: Fn(u32, u64) -> Fut,
    Fut: std::future::Future<Output = Renewal>,
{
    futures::stream::iter(held)
        .map(|(partition, revision)| {
            let renewal = renew_one(partition, revision);
            async move { (partition, renewal.await) }
        })
        .buffer_unordered(RENEWALS_IN_FLIGHT)
        .collect()
        .await
}

/// Renews one lease: an update checked against its revision. An update that fails is looked
/// into before the lease is given up: a lease that still names this node (an earlier update
/// landed though its answer was lost) is kept at the revision found.
async fn renew_lease(leases: &kv::Store, me: &str, partition: u32, revision: u64) -> Renewal {
    let key = lease_key(partition);
    let update = match leases
        .update(&key, me.as_bytes().to_vec().into(), revision)
        .await
    {
        Ok(next) => return Renewal::Renewed(next),
        Err(e) => e,
    };
    match leases.entry(&key).await {
        Ok(Some(entry))
            if entry.operation == kv::Operation::Put && entry.value.as_ref() == me.as_bytes() =>
        {
            Renewal::Renewed(entry.revision)
        }
        Ok(_) => {
            warn!(partition, error = %update, "Partition lease lost; stopping its worker.");
            Renewal::Lost
        }
        Err(e) => {
            warn!(partition, error = %e, "Partition lease not renewed (the bucket did not answer); trying again next round.");
            Renewal::Unanswered
        }
    }
}

/// Writes the membership key and renews every lease held, every third of a lease period, on
/// its own: a slow round (a takeover loading a large store) never delays a renewal. The
/// renewals of a round run side by side, so a round takes a few round trips however many
/// leases are held, and a lease survives a round that fails altogether. A lease whose renewal
/// finds another owner is reported on `lost`.
async fn renew(
    cluster: Arc<ClusterConfig>,
    leases: kv::Store,
    revisions: Revisions,
    lost: mpsc::UnboundedSender<u32>,
    stop: CancellationToken,
) {
    let me = cluster.node_id.clone();
    let mut every = tokio::time::interval(cluster.lease_ttl / 3);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = every.tick() => {}
        }
        let held: Vec<(u32, u64)> = lock(&revisions).iter().map(|(p, r)| (*p, *r)).collect();
        let membership = leases.put(
            format!("{NODE_PREFIX}{me}"),
            chrono::Utc::now().to_rfc3339().into(),
        );
        let renewals = renew_all(held, |partition, revision| {
            renew_lease(&leases, &me, partition, revision)
        });
        let (membership, renewals) = tokio::join!(membership, renewals);
        if let Err(e) = membership {
            warn!(error = %e, "Cluster membership not renewed.");
        }
        for (partition, renewal) in renewals {
            match renewal {
                Renewal::Renewed(next) => {
                    if let Some(current) = lock(&revisions).get_mut(&partition) {
                        *current = next;
                    }
                }
                Renewal::Lost => {
                    lock(&revisions).remove(&partition);
                    let _ = lost.send(partition);
                }
                Renewal::Unanswered => {}
            }
        }
    }
}

struct LeaseKeeper {
    /// For the live positions each owned partition announces.
    client: async_nats::Client,
    cluster: Arc<ClusterConfig>,
    leases: kv::Store,
    stream: jetstream::stream::Stream,
    context: NodeContext,
    status: Arc<ClusterStatus>,
    owned: BTreeMap<u32, Held>,
    revisions: Revisions,
    /// Partitions being handed over or stopped: their workers drain without holding up the
    /// renewal of the other leases.
    stopping: tokio::task::JoinSet<()>,
    /// The notice handle of each owned partition's pipeline, for the notice relay.
    notices: super::notices::OwnedNotices,
    /// The supervision records as the last round read them, to hand their changes to the
    /// owned partitions (in case a notice was lost); none before the first read.
    supervision: Option<super::resync::SupervisionRecords>,
}

fn lease_key(partition: u32) -> String {
    format!("partitions.{partition}")
}

const NODE_PREFIX: &str = "nodes.";

/// Whether a change in the bucket calls for a round now: a lease handed back or deleted, a
/// node that joined or left. Renewals do not, or the nodes would wake each other forever.
fn wakes(entry: &kv::Entry, known_nodes: &[String]) -> bool {
    let put = entry.operation == kv::Operation::Put;
    if entry.key.starts_with("dispatch.") {
        // Dispatcher leases are taken by their own tasks.
        return false;
    }
    match entry.key.strip_prefix(NODE_PREFIX) {
        Some(node) => !put || !known_nodes.iter().any(|n| n == node),
        None => !put || entry.value.is_empty(),
    }
}

impl LeaseKeeper {
    async fn run(mut self, release: CancellationToken) {
        let round = self.cluster.lease_ttl / 3;
        let mut changes = self.leases.watch_all().await.ok();
        let (lost_tx, mut lost) = mpsc::unbounded_channel();
        let stop_renewing = CancellationToken::new();
        let renewer = tokio::spawn(renew(
            self.cluster.clone(),
            self.leases.clone(),
            self.revisions.clone(),
            lost_tx,
            stop_renewing.clone(),
        ));
        loop {
            self.round().await;
            let sleep = tokio::time::sleep(round);
            tokio::pin!(sleep);
            // A change in the bucket (a lease handed back, a node joining) starts a round
            // soon, not a third of a lease later; changes in a burst make one round.
            loop {
                tokio::select! {
                    _ = release.cancelled() => {
                        stop_renewing.cancel();
                        let _ = renewer.await;
                        self.release_all().await;
                        return;
                    }
                    Some(partition) = lost.recv() => {
                        self.forget(partition);
                        if let Some(held) = self.owned.remove(&partition) {
                            self.stopping.spawn(held.worker.stop());
                        }
                        self.publish_status();
                    }
                    _ = &mut sleep => break,
                    change = async {
                        match changes.as_mut() {
                            Some(c) => c.next().await,
                            None => std::future::pending().await,
                        }
                    } => {
                        match change {
                            Some(Ok(entry)) => {
                                if wakes(&entry, &self.status.nodes()) {
                                    tokio::time::sleep(Duration::from_millis(50)).await;
                                    break;
                                }
                            }
                            Some(Err(_)) => {}
                            None => changes = None,
                        }
                    }
                }
            }
        }
    }

    async fn round(&mut self) {
        while self.stopping.try_join_next().is_some() {}
        let me = self.cluster.node_id.clone();
        let nodes = match self.live_nodes().await {
            Ok(nodes) => nodes,
            Err(e) => {
                warn!(error = %e, "Live nodes not read; keeping the partitions held.");
                return;
            }
        };
        *self
            .status
            .nodes
            .lock()
            .expect("never poisoned: no panics while held") = nodes.clone();
        // Before any partition is taken: one taken below loads its state after this read.
        self.resync_supervision().await;
        let hand_over: Vec<u32> = self
            .owned
            .keys()
            .copied()
            .filter(|p| desired_owner(*p, &nodes) != Some(me.as_str()))
            .collect();
        for partition in hand_over {
            self.release(partition).await;
        }
        let wanted: Vec<u32> = (0..self.cluster.partitions)
            .filter(|p| !self.owned.contains_key(p) && desired_owner(*p, &nodes) == Some(&me))
            .collect();
        let mut taken = Vec::new();
        for partition in wanted {
            if let Some(revision) = self.acquire(partition).await {
                taken.push((partition, revision));
            }
        }
        if !taken.is_empty() {
            self.start_workers(taken).await;
        }
        self.publish_status();
        // Devices, persons and zones may have changed through another node's API.
        if let Err(e) = self
            .context
            .registry
            .refresh(self.context.store.as_ref())
            .await
        {
            warn!(error = %e, "Devices and zones not refreshed from the store.");
        }
    }

    /// Reads the supervision records and hands what changed since the last read to the
    /// owned partitions' pipelines ([`super::resync`]).
    async fn resync_supervision(&mut self) {
        let now = chrono::Utc::now();
        let records = match super::resync::SupervisionRecords::read(
            self.context.store.as_ref(),
            now,
        )
        .await
        {
            Ok(records) => records,
            Err(e) => {
                warn!(error = %e, "Supervision records not re-read from the store; trying again next round.");
                return;
            }
        };
        if let Some(older) = &self.supervision {
            let changes = records.changes_since(older, now);
            let owned = self.notices.lock().unwrap_or_else(|p| p.into_inner());
            for notice in changes {
                let partition = partition_of(&notice.person(), self.cluster.partitions);
                if let Some(notices) = owned.get(&partition) {
                    notices.send(notice);
                    self.context.metrics.cluster_store_notices.inc();
                }
            }
        }
        self.supervision = Some(records);
    }

    async fn live_nodes(&self) -> Result<Vec<String>, ClusterError> {
        let mut keys = self.leases.keys().await.map_err(ClusterError::jetstream)?;
        let mut nodes = BTreeSet::new();
        while let Some(key) = keys.next().await {
            let key = key.map_err(ClusterError::jetstream)?;
            if let Some(node) = key.strip_prefix(NODE_PREFIX) {
                nodes.insert(node.to_owned());
            }
        }
        nodes.insert(self.cluster.node_id.clone());
        Ok(nodes.into_iter().collect())
    }

    async fn acquire(&self, partition: u32) -> Option<u64> {
        let me = self.cluster.node_id.as_bytes();
        let key = lease_key(partition);
        let result = match self.leases.entry(key.clone()).await {
            Ok(None) => self.leases.create(&key, me.to_vec().into()).await.ok(),
            Ok(Some(entry)) => {
                // Free: handed back (empty) or deleted; ours: left by this node's last run.
                let free = entry.operation != kv::Operation::Put
                    || entry.value.is_empty()
                    || entry.value.as_ref() == me;
                if free {
                    self.leases
                        .update(&key, me.to_vec().into(), entry.revision)
                        .await
                        .ok()
                } else {
                    None
                }
            }
            Err(e) => {
                debug!(partition, error = %e, "Lease not read.");
                None
            }
        };
        if result.is_some() {
            info!(partition, "Partition lease taken.");
        }
        result
    }

    /// Loads the store's state once for every partition just taken and starts their workers.
    async fn start_workers(&mut self, taken: Vec<(u32, u64)>) {
        let resume = match Resume::load(self.context.store.as_ref()).await {
            Ok(resume) => resume,
            Err(e) => {
                warn!(error = %e, "Partition state not loaded; handing the leases back.");
                for (partition, revision) in taken {
                    self.empty_lease(partition, revision).await;
                }
                return;
            }
        };
        let partitions = self.cluster.partitions;
        for (partition, revision) in taken {
            let pipeline = Pipeline::spawn_owning(
                self.pipeline_settings(),
                self.context.store.clone(),
                self.context.registry.clone(),
                self.context.metrics.clone(),
                &resume,
                &|person| partition_of(person, partitions) == partition,
                true,
            );
            let notices = pipeline.notices.clone();
            let health = pipeline.health.clone();
            // Subscribed before the worker starts reading, so no commit goes unannounced.
            super::live::spawn_forwarder(
                self.client.clone(),
                self.cluster.positions_subject(partition),
                pipeline.fixes.subscribe(),
                pipeline.alerts.subscribe(),
            );
            match PartitionWorker::start(
                &self.cluster,
                &self.stream,
                partition,
                pipeline,
                self.context.metrics.clone(),
            )
            .await
            {
                Ok(worker) => {
                    lock(&self.revisions).insert(partition, revision);
                    self.status.set_store_health(partition, Some(health));
                    self.notices
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(partition, notices);
                    self.owned.insert(partition, Held { worker });
                }
                Err(e) => {
                    warn!(partition, error = %e, "Partition consumer not opened; handing the lease back.");
                    self.empty_lease(partition, revision).await;
                }
            }
        }
    }

    fn pipeline_settings(&self) -> PipelineSettings {
        let config = &self.context.config;
        let mut fence = config.fence.clone();
        // One partition is a small share of the persons; its order is kept by one engine.
        fence.shards = 1;
        PipelineSettings {
            fence,
            levels: config.levels.clone(),
            store: config.store.clone(),
            channel_capacity: config
                .channel_capacity
                .min(super::owner::READ_AHEAD as usize),
            supervision: config.supervision.clone(),
            clock: crate::supervision::Clock::System,
        }
    }

    /// Hands a partition over: its worker drains (its commits acknowledged), then the lease
    /// is emptied, which wakes the other nodes. This runs beside the rounds, so a slow drain
    /// delays no renewal; a drain longer than the lease lets the lease expire, which another
    /// node then takes as it takes an emptied one.
    async fn release(&mut self, partition: u32) {
        self.forget(partition);
        let Some(held) = self.owned.remove(&partition) else {
            return;
        };
        let revisions = self.revisions.clone();
        let leases = self.leases.clone();
        self.stopping.spawn(async move {
            held.worker.stop().await;
            // Renewed until the drain is over, then emptied at the revision renewed last.
            let revision = lock(&revisions).remove(&partition);
            if let Some(revision) = revision {
                empty_lease(&leases, partition, revision).await;
            }
            info!(partition, "Partition handed over.");
        });
    }

    /// Stops relaying notices to a partition given up and reporting its store writer.
    fn forget(&self, partition: u32) {
        self.status.set_store_health(partition, None);
        self.notices
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&partition);
    }

    async fn empty_lease(&self, partition: u32, revision: u64) {
        empty_lease(&self.leases, partition, revision).await;
    }

    async fn release_all(&mut self) {
        let partitions: Vec<u32> = self.owned.keys().copied().collect();
        // Leave first, so no node hands a partition back to this one meanwhile.
        let _ = self
            .leases
            .delete(format!("{NODE_PREFIX}{}", self.cluster.node_id))
            .await;
        for partition in partitions {
            self.release(partition).await;
        }
        while self.stopping.join_next().await.is_some() {}
        self.publish_status();
    }

    fn publish_status(&self) {
        let owned: BTreeSet<u32> = self.owned.keys().copied().collect();
        let metrics = &self.context.metrics;
        for partition in 0..self.cluster.partitions {
            metrics
                .cluster_partition_owned
                .with_label_values(&[&partition.to_string()])
                .set(i64::from(owned.contains(&partition)));
        }
        *self
            .status
            .owned
            .lock()
            .expect("never poisoned: no panics while held") = owned;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A bucket that takes a twentieth of the lease period to answer each renewal: one at a time,
    /// 64 of them would outlast the lease.
    #[tokio::test(start_paused = true)]
    async fn a_round_of_64_slow_renewals_ends_well_within_the_lease() {
        let lease_ttl = Duration::from_secs(3);
        let in_flight = AtomicUsize::new(0);
        let peak = AtomicUsize::new(0);
        let held: Vec<(u32, u64)> = (0..64).map(|p| (p, u64::from(p) + 100)).collect();
        let started = tokio::time::Instant::now();
        let renewals = renew_all(held, |_, revision| {
            let (in_flight, peak) = (&in_flight, &peak);
            async move {
                let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(lease_ttl / 20).await;
                in_flight.fetch_sub(1, Ordering::SeqCst);
                Renewal::Renewed(revision + 1)
            }
        })
        .await;
        // Virtual time: the clock is paused and moves only as the stand-in sleeps.
        let took = started.elapsed();
        assert!(took < lease_ttl / 3, "the round took {took:?}");
        assert_eq!(peak.load(Ordering::SeqCst), RENEWALS_IN_FLIGHT);
        let mut renewed: Vec<(u32, Renewal)> = renewals;
        renewed.sort_by_key(|(p, _)| *p);
        let expected: Vec<(u32, Renewal)> = (0..64)
            .map(|p| (p, Renewal::Renewed(u64::from(p) + 101)))
            .collect();
        assert_eq!(renewed, expected);
    }
}

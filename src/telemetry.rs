//! Every Prometheus metric the service exports, in one place, with the small helpers stages
//! call so that a log line and its counter change together.
//!
//! Each running service owns its own registry (tests run several in one process). Label values
//! come from small fixed sets (protocol names, alert kinds, reject reasons); never an id.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Instant;

use prometheus::core::Collector;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use tracing::warn;

use crate::model::AlertKind;

/// The counters every decoded frame moves, of one protocol, looked up once: a labelled lookup
/// hashes the label and takes the vector's lock, twice per frame on the hot path otherwise.
pub struct IngestCounters {
    /// `ewall_frames_decoded_total{protocol}`.
    pub frames_decoded: IntCounter,
    /// `ewall_frames_integrity_mismatch_total{protocol}`.
    pub frames_integrity_mismatch: IntCounter,
    /// `ewall_fixes_received_total{protocol}`.
    pub fixes_received: IntCounter,
}

/// The service's metrics.
pub struct Metrics {
    registry: Registry,
    /// [`IngestCounters`] in the order of [`ewall_protocol::Protocol::ALL`].
    ingest: Vec<IngestCounters>,
    /// Frames decoded, by protocol.
    pub frames_decoded: IntCounterVec,
    /// Frames (or garbage runs) rejected, by protocol and reason.
    pub frames_rejected: IntCounterVec,
    /// Frames accepted although their checksum or length field was wrong, by protocol.
    pub frames_integrity_mismatch: IntCounterVec,
    /// Positions received, by protocol.
    pub fixes_received: IntCounterVec,
    /// Positions committed to the store.
    pub fixes_stored: IntCounter,
    /// Positions flagged by the plausibility check, by protocol and reason.
    pub fixes_implausible: IntCounterVec,
    /// Alerts raised, by kind.
    pub alerts_raised: IntCounterVec,
    /// Connections open now, by protocol.
    pub connections_open: IntGaugeVec,
    /// Connections refused or closed by policy, by protocol and reason.
    pub connections_refused: IntCounterVec,
    /// Batch commit latency.
    pub batch_commit_seconds: Histogram,
    /// Positions per committed batch.
    pub batch_size: Histogram,
    /// Failed commit attempts.
    pub commit_failures: IntCounter,
    /// 1 while a store writer cannot reach the database and holds a batch, else 0.
    pub store_unavailable: IntGauge,
    /// Positions in the batches held while the database cannot be reached.
    pub store_held_positions: IntGauge,
    /// Frames (or MQTT publish runs) that found the pipeline's entrance full and waited for
    /// room, by protocol: back-pressure from a slow or unreachable store.
    pub ingest_waits: IntCounterVec,
    /// Time the fence engine spends on one fix.
    pub fence_check_seconds: Histogram,
    /// Downlink commands entering each status (pending when created).
    pub commands: IntCounterVec,
    /// Events handed to a consumer and acknowledged, by channel (mqtt, webhook, sse).
    pub events_delivered: IntCounterVec,
    /// Failed delivery attempts, by channel.
    pub delivery_failures: IntCounterVec,
    /// Webhook deliveries given up on after every attempt.
    pub webhook_dead_letters: IntCounter,
    /// How far each dispatcher is behind the newest event, in feed positions, by consumer
    /// (`mqtt`, `webhook:<name>`: the configured ones, a small fixed set).
    pub dispatch_lag: IntGaugeVec,
    /// Time from receiving the fix that raised an alert to the alert's commit.
    pub fix_to_alert_seconds: Histogram,
    /// Time from an alert's commit to its `alert.raised` event being delivered, by channel.
    pub alert_delivery_seconds: HistogramVec,
    /// When recently committed alerts were committed, by feed position, for
    /// `alert_delivery_seconds`.
    commit_times: Mutex<VecDeque<(i64, Instant)>>,
    /// The store writers cut off from the database (a cluster node runs one per partition)
    /// and the positions they hold together, behind the two store gauges.
    store_cut_off: Mutex<StoreCutOff>,
    /// Cluster mode: 1 for each partition this node owns, 0 for the others, by partition.
    pub cluster_partition_owned: IntGaugeVec,
    /// Cluster mode: messages of an owned partition not yet acknowledged (waiting or in
    /// hand), by partition.
    pub cluster_partition_lag: IntGaugeVec,
    /// Cluster mode: publishes to the fix stream, by result (`acked`, `failed`).
    pub cluster_published: IntCounterVec,
    /// Cluster mode: time from publishing a submission to the fix stream to JetStream's
    /// acknowledgement, which is what the device's acknowledgement waits for.
    pub cluster_publish_seconds: Histogram,
    /// Cluster mode: supervision changes an owned partition was told of from the store's
    /// records rather than (or as well as) by their notice.
    pub cluster_store_notices: IntCounter,
}

/// Committed alerts remembered for the delivery latency: a dispatcher further behind than this
/// many alerts is not timed (its lag shows in `ewall_dispatch_lag_seq`).
const COMMIT_TIMES_KEPT: usize = 4096;

/// Buckets of the alert latency histograms, in seconds.
const ALERT_LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0,
];

/// Buckets of the fix stream's publish latency, in seconds: a local JetStream answers within
/// a millisecond or two, a replicated one within a few network round trips.
const PUBLISH_LATENCY_BUCKETS: [f64; 16] = [
    0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5,
    1.0, 5.0,
];

/// The store writers cut off from the database, and what they hold together.
#[derive(Debug, Default)]
struct StoreCutOff {
    writers: usize,
    held: usize,
}

/// The channels alert events are delivered on, as metric labels.
pub const DELIVERY_CHANNELS: [&str; 3] = ["mqtt", "webhook", "sse"];

impl Metrics {
    /// The per-frame counters of `protocol`.
    pub fn ingest(&self, protocol: ewall_protocol::Protocol) -> &IngestCounters {
        let index = ewall_protocol::Protocol::ALL
            .iter()
            .position(|p| *p == protocol)
            .expect("Protocol::ALL lists every protocol");
        &self.ingest[index]
    }

    /// A fresh registry with every metric registered.
    pub fn new() -> Self {
        let registry = Registry::new();
        let counters = |name: &str, help: &str, labels: &[&str]| {
            register(&registry, IntCounterVec::new(Opts::new(name, help), labels))
        };
        let histogram = |name: &str, help: &str, buckets: Vec<f64>| {
            register(
                &registry,
                Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets)),
            )
        };
        let mut metrics = Metrics {
            ingest: Vec::new(),
            frames_decoded: counters(
                "ewall_frames_decoded_total",
                "Frames decoded, by protocol.",
                &["protocol"],
            ),
            frames_rejected: counters(
                "ewall_frames_rejected_total",
                "Frames or runs of garbage rejected, by protocol and reason.",
                &["protocol", "reason"],
            ),
            frames_integrity_mismatch: counters(
                "ewall_frames_integrity_mismatch_total",
                "Frames accepted with a wrong checksum or length field, by protocol.",
                &["protocol"],
            ),
            fixes_received: counters(
                "ewall_fixes_received_total",
                "Positions received from devices, by protocol.",
                &["protocol"],
            ),
            fixes_implausible: counters(
                "ewall_fixes_implausible_total",
                "Positions stored flagged as implausible or clock-skewed, by protocol and reason.",
                &["protocol", "reason"],
            ),
            fixes_stored: register(
                &registry,
                IntCounter::new(
                    "ewall_fixes_stored_total",
                    "Positions committed to the store.",
                ),
            ),
            alerts_raised: counters(
                "ewall_alerts_total",
                "Alerts raised and committed, by kind.",
                &["kind"],
            ),
            connections_open: register(
                &registry,
                IntGaugeVec::new(
                    Opts::new(
                        "ewall_connections_open",
                        "Device connections open, by protocol.",
                    ),
                    &["protocol"],
                ),
            ),
            connections_refused: counters(
                "ewall_connections_refused_total",
                "Connections refused or closed by policy, by protocol and reason.",
                &["protocol", "reason"],
            ),
            batch_commit_seconds: histogram(
                "ewall_batch_commit_duration_seconds",
                "Time to commit one batch of positions and alerts.",
                vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                ],
            ),
            batch_size: histogram(
                "ewall_batch_size_positions",
                "Positions per committed batch.",
                vec![1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0],
            ),
            commit_failures: register(
                &registry,
                IntCounter::new(
                    "ewall_commit_failures_total",
                    "Failed batch commit attempts.",
                ),
            ),
            store_unavailable: register(
                &registry,
                IntGauge::new(
                    "ewall_store_unavailable",
                    "1 while the database cannot be reached and the store writer holds a batch.",
                ),
            ),
            store_held_positions: register(
                &registry,
                IntGauge::new(
                    "ewall_store_held_positions",
                    "Positions held by the store writer until the database can be reached.",
                ),
            ),
            ingest_waits: counters(
                "ewall_ingest_waits_total",
                "Frames that found the pipeline full and waited for room, by protocol.",
                &["protocol"],
            ),
            fence_check_seconds: histogram(
                "ewall_fence_check_duration_seconds",
                "Time the fence engine spends on one position.",
                vec![
                    1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 1e-3, 1e-2,
                ],
            ),
            commands: counters(
                "ewall_commands_total",
                "Downlink commands entering each status: pending, sent, acknowledged, failed, expired.",
                &["status"],
            ),
            events_delivered: counters(
                "ewall_events_delivered_total",
                "Feed events delivered and acknowledged, by channel.",
                &["channel"],
            ),
            delivery_failures: counters(
                "ewall_delivery_failures_total",
                "Failed attempts to deliver feed events, by channel.",
                &["channel"],
            ),
            webhook_dead_letters: register(
                &registry,
                IntCounter::new(
                    "ewall_webhook_dead_letters_total",
                    "Webhook deliveries dead-lettered after every attempt failed.",
                ),
            ),
            dispatch_lag: register(
                &registry,
                IntGaugeVec::new(
                    Opts::new(
                        "ewall_dispatch_lag_seq",
                        "Feed positions between the newest event and each dispatcher's cursor.",
                    ),
                    &["consumer"],
                ),
            ),
            fix_to_alert_seconds: histogram(
                "ewall_fix_to_alert_duration_seconds",
                "Time from receiving the fix that raised an alert to the alert's commit.",
                ALERT_LATENCY_BUCKETS.to_vec(),
            ),
            alert_delivery_seconds: register(
                &registry,
                HistogramVec::new(
                    HistogramOpts::new(
                        "ewall_alert_delivery_duration_seconds",
                        "Time from an alert's commit to its delivery, by channel.",
                    )
                    .buckets(ALERT_LATENCY_BUCKETS.to_vec()),
                    &["channel"],
                ),
            ),
            commit_times: Mutex::new(VecDeque::with_capacity(64)),
            store_cut_off: Mutex::new(StoreCutOff::default()),
            cluster_partition_owned: register(
                &registry,
                IntGaugeVec::new(
                    Opts::new(
                        "ewall_cluster_partition_owned",
                        "1 for each partition this node owns (cluster mode).",
                    ),
                    &["partition"],
                ),
            ),
            cluster_partition_lag: register(
                &registry,
                IntGaugeVec::new(
                    Opts::new(
                        "ewall_cluster_partition_lag",
                        "Messages of an owned partition not yet acknowledged (cluster mode).",
                    ),
                    &["partition"],
                ),
            ),
            cluster_published: counters(
                "ewall_cluster_published_total",
                "Submissions published to the fix stream, by result (cluster mode).",
                &["result"],
            ),
            cluster_publish_seconds: histogram(
                "ewall_cluster_publish_duration_seconds",
                "Time from publishing a submission to the fix stream to its acknowledgement (cluster mode).",
                PUBLISH_LATENCY_BUCKETS.to_vec(),
            ),
            cluster_store_notices: register(
                &registry,
                IntCounter::new(
                    "ewall_cluster_store_notices_total",
                    "Supervision changes handed to an owned partition from the store's records (cluster mode).",
                ),
            ),
            registry,
        };
        // Series for every protocol and alert kind exist from the start, at zero, so a
        // dashboard's rate() sees the first event instead of a series appearing from nowhere.
        for protocol in ewall_protocol::Protocol::ALL {
            let name = [protocol.name()];
            metrics.connections_open.with_label_values(&name);
            metrics.ingest_waits.with_label_values(&name);
            // Creating the frame counters creates their series.
            let counters = IngestCounters {
                frames_decoded: metrics.frames_decoded.with_label_values(&name),
                frames_integrity_mismatch: metrics
                    .frames_integrity_mismatch
                    .with_label_values(&name),
                fixes_received: metrics.fixes_received.with_label_values(&name),
            };
            metrics.ingest.push(counters);
        }
        for protocol in ewall_protocol::Protocol::ALL {
            for reason in crate::ingest::validate::FAULT_LABELS {
                metrics
                    .fixes_implausible
                    .with_label_values(&[protocol.name(), reason]);
            }
        }
        for kind in AlertKind::ALL {
            metrics.alerts_raised.with_label_values(&[kind.as_str()]);
        }
        for status in ["pending", "sent", "acknowledged", "failed", "expired"] {
            metrics.commands.with_label_values(&[status]);
        }
        for channel in DELIVERY_CHANNELS {
            metrics.events_delivered.with_label_values(&[channel]);
            metrics.delivery_failures.with_label_values(&[channel]);
            metrics.alert_delivery_seconds.with_label_values(&[channel]);
        }
        metrics
    }

    /// Records the commit of the alert at feed position `seq`, `since_fix` after the fix that
    /// raised it was received (`None` for alerts no fix raised: timers, API actions).
    pub fn alert_committed(&self, seq: i64, since_fix: Option<std::time::Duration>) {
        if let Some(latency) = since_fix {
            self.fix_to_alert_seconds.observe(latency.as_secs_f64());
        }
        if let Ok(mut times) = self.commit_times.lock() {
            if times.len() == COMMIT_TIMES_KEPT {
                times.pop_front();
            }
            times.push_back((seq, Instant::now()));
        }
    }

    /// Times the delivery on `channel` of the events at feed positions `seqs` against their
    /// alerts' commits. Events of alerts committed by another process (or long ago) are not
    /// timed.
    pub fn events_delivered_at(&self, channel: &str, seqs: impl IntoIterator<Item = i64>) {
        let Ok(times) = self.commit_times.lock() else {
            return;
        };
        let histogram = self.alert_delivery_seconds.with_label_values(&[channel]);
        for seq in seqs {
            // Positions are pushed in commit order, which is feed order.
            if let Ok(i) = times.binary_search_by_key(&seq, |(s, _)| *s) {
                histogram.observe(times[i].1.elapsed().as_secs_f64());
            }
        }
    }

    /// Counts a committed alert.
    pub fn alert_raised(&self, kind: AlertKind) {
        self.alerts_raised.with_label_values(&[kind.as_str()]).inc();
    }

    /// Counts `n` events delivered on `channel` (one of [`DELIVERY_CHANNELS`]).
    pub fn delivered(&self, channel: &str, n: usize) {
        self.events_delivered
            .with_label_values(&[channel])
            .inc_by(n as u64);
    }

    /// Counts a failed delivery attempt on `channel`.
    pub fn delivery_failed(&self, channel: &str) {
        self.delivery_failures.with_label_values(&[channel]).inc();
    }

    /// Counts a dead-lettered webhook delivery.
    pub fn dead_lettered(&self) {
        self.webhook_dead_letters.inc();
    }

    /// A store writer's part in the store gauges: `before` is what it held while cut off from
    /// the database (`None` when it was not), `now` what it holds now. The gauges combine
    /// every writer: unavailable while any is cut off, the positions all of them hold.
    pub fn store_writer_holds(&self, before: Option<usize>, now: Option<usize>) {
        let mut cut_off = self
            .store_cut_off
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(held) = before {
            cut_off.writers = cut_off.writers.saturating_sub(1);
            cut_off.held = cut_off.held.saturating_sub(held);
        }
        if let Some(held) = now {
            cut_off.writers += 1;
            cut_off.held += held;
        }
        self.store_unavailable.set(i64::from(cut_off.writers > 0));
        self.store_held_positions
            .set(i64::try_from(cut_off.held).unwrap_or(i64::MAX));
    }

    /// The metrics in Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            warn!(error = %e, "Encoding metrics failed.");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Registers a metric built from static definitions.
fn register<M: Collector + Clone + 'static>(
    registry: &Registry,
    metric: prometheus::Result<M>,
) -> M {
    // Names, help texts and labels are compile-time constants and each is registered once
    // per registry, so neither step can fail at run time.
    let metric = metric.expect("static metric definition");
    registry
        .register(Box::new(metric.clone()))
        .expect("metric registered once per registry");
    metric
}

//! `ewall serve`: opens the store, loads the registry, starts the pipeline, binds every
//! listener and the API, and on shutdown stops them in the order that loses nothing.
//!
//! Shutdown order: stop accepting; let each connection finish the frame in hand (its fixes go
//! through the pipeline and are committed, then acknowledged); close the pipeline's entrance so
//! its stages drain one after another; the store writer commits the last batch; the alert
//! dispatchers finish the delivery in hand (what is left goes out after the next start, from
//! their stored cursors); then the API stops, ending the SSE streams. The whole sequence is
//! capped by `shutdown_timeout`, a database that does not answer included.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use ewall_protocol::Protocol;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::alert::dispatch::mqtt::MqttAlertSettings;
use crate::alert::dispatch::webhook::WebhookError;
use crate::alert::dispatch::{DispatchSettings, Dispatchers};
use crate::api::auth::TokenUses;
use crate::api::{self, AppState};
use crate::cluster::node::{ClusterNode, ClusterStatus, NodeContext};
use crate::cluster::ClusterError;
use crate::commands::{CommandDispatcher, LINK_EVENT_QUEUE};
use crate::config::Config;
use crate::descriptors::DescriptorBudget;
use crate::http::limits::BodyLimit;
use crate::http::serve::{load_tls, HttpServer, ServeOptions, TlsError};
use crate::ingest::links::Links;
use crate::ingest::mqtt::commands::MqttCommands;
use crate::ingest::mqtt::{self, MqttError};
use crate::ingest::tcp::TcpIngest;
use crate::ingest::{http as osmand_http, IngestContext};
use crate::pipeline::{Pipeline, PipelineSettings, Resume};
use crate::registry::{Registry, RegistryError};
use crate::store::health::StoreHealth;
use crate::store::{self, StoreError};
use crate::telemetry::Metrics;

/// Why the service could not start.
#[derive(Debug, Error)]
pub enum ServeError {
    /// The data directory could not be created.
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        /// Directory.
        path: String,
        /// OS error.
        source: std::io::Error,
    },
    /// The store could not be opened.
    #[error("cannot open the store: {0}")]
    Store(#[from] StoreError),
    /// The registry could not be loaded.
    #[error("cannot load devices and zones: {0}")]
    Registry(#[from] RegistryError),
    /// The API's TLS certificate or key could not be loaded.
    #[error("cannot set up TLS for the HTTP API: {0}")]
    Tls(#[from] TlsError),
    /// MQTT ingest could not start.
    #[error(transparent)]
    Mqtt(#[from] MqttError),
    /// The alert dispatchers could not be set up.
    #[error("cannot start alert delivery: {0}")]
    Dispatch(#[from] WebhookError),
    /// The MQTT alert publisher's broker address is unusable.
    #[error("config key `mqtt.url`: {0}")]
    MqttUrl(String),
    /// Retention is on and its checkpoint key cannot be read or created.
    #[error("cannot set up retention: {0}")]
    Audit(#[from] crate::audit::AuditError),
    /// Cluster mode could not start (NATS, the stream or the lease bucket).
    #[error("cannot start cluster mode: {0}")]
    Cluster(#[from] ClusterError),
    /// A listener could not bind.
    #[error("cannot listen on {addr} for {what}: {source}")]
    Bind {
        /// What the listener is for.
        what: String,
        /// Address.
        addr: SocketAddr,
        /// OS error.
        source: std::io::Error,
    },
}

/// A started service.
pub struct Running {
    /// Where the API listens.
    pub http_addr: SocketAddr,
    /// Where each enabled device listener listens, by protocol name.
    pub listeners: BTreeMap<&'static str, SocketAddr>,
    /// Cancel to stop the service.
    pub token: CancellationToken,
    /// Shared metrics (for tests and embedding).
    pub metrics: Arc<Metrics>,
    /// Downlink commands to MQTT gateways (`None` when `mqtt.enabled` is off).
    pub mqtt_commands: Option<MqttCommands>,
    task: JoinHandle<bool>,
}

impl Running {
    /// Starts the shutdown sequence.
    pub fn shutdown(&self) {
        self.token.cancel();
    }

    /// Waits until the service has stopped; false when the shutdown timeout cut connections
    /// short (everything handed to the pipeline was still committed).
    pub async fn stopped(self) -> bool {
        match self.task.await {
            Ok(clean) => clean,
            Err(e) => {
                error!(error = %e, "Service task panicked.");
                false
            }
        }
    }
}

async fn bind(what: &str, addr: SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind {
            what: what.to_owned(),
            addr,
            source,
        })
}

/// Starts everything and returns once every listener is bound.
///
/// # Errors
/// [`ServeError`] when the store, the registry or a listener cannot be set up.
pub async fn start(config: Config) -> Result<Running, ServeError> {
    crate::alert::dispatch::webhook::install_tls_provider();
    std::fs::create_dir_all(&config.data_dir).map_err(|source| ServeError::DataDir {
        path: config.data_dir.display().to_string(),
        source,
    })?;
    let store = store::open_with(&config.store_url(), &config.store).await?;
    let registry = Arc::new(Registry::load(store.as_ref()).await?);
    let metrics = Arc::new(Metrics::new());
    let resume = Resume::load(store.as_ref()).await?;
    let dispatch = DispatchSettings {
        mqtt: if config.mqtt.enabled && config.mqtt.publish_alerts {
            let mut settings =
                MqttAlertSettings::from_config(&config.mqtt, config.mqtt.embedded_listen)
                    .map_err(ServeError::MqttUrl)?;
            settings.fields = config.integration.fields.clone();
            Some(settings)
        } else {
            None
        },
        webhooks: config.webhooks.clone(),
    };
    dispatch.claim_cursors(store.as_ref()).await?;
    let mut dispatchers = Dispatchers::prepare(dispatch, store.clone(), metrics.clone())?;
    let pipeline = match &config.cluster {
        None => Processing::Local(Pipeline::spawn(
            PipelineSettings {
                fence: config.fence.clone(),
                levels: config.levels.clone(),
                store: config.store.clone(),
                channel_capacity: config.channel_capacity,
                supervision: config.supervision.clone(),
                clock: crate::supervision::Clock::System,
            },
            store.clone(),
            registry.clone(),
            metrics.clone(),
            &resume,
        )),
        Some(cluster) => Processing::Cluster(
            ClusterNode::start(
                cluster.clone(),
                NodeContext {
                    config: Arc::new(config.clone()),
                    store: store.clone(),
                    registry: registry.clone(),
                    metrics: metrics.clone(),
                },
            )
            .await?,
            Arc::new(StoreHealth::default()),
        ),
    };
    let notices = pipeline.notices();
    let token = CancellationToken::new();
    let links = Arc::new(Links::default());
    let commands = CommandDispatcher::new(store.clone(), links.clone(), metrics.clone());
    let command_relay = CancellationToken::new();
    if let Processing::Cluster(node, _) = &pipeline {
        node.relay_commands(commands.clone(), command_relay.clone())
            .await?;
    }
    let (link_events, link_events_rx) = mpsc::channel(LINK_EVENT_QUEUE);
    // The dispatcher stops once every connection has dropped its event sender, after the
    // listeners have drained.
    let commands_task = tokio::spawn(
        commands
            .clone()
            .run(link_events_rx, CancellationToken::new()),
    );
    let context = Arc::new(
        IngestContext::new(registry.clone(), metrics.clone(), pipeline.submissions())
            .with_commands(links, link_events)
            .with_rules(config.ingest.clone()),
    );
    let tracker = TaskTracker::new();
    let tls = match (&config.http.tls_cert, &config.http.tls_key) {
        (Some(cert), Some(key)) => Some(load_tls(cert, key)?),
        _ => None,
    };
    let caps = connection_caps(&config);
    let mut listeners = BTreeMap::new();
    let mut listener_tasks = Vec::new();
    let mut osmand_task = None;
    for protocol in Protocol::ALL {
        let Some(listener) = config.listeners.get(protocol) else {
            continue;
        };
        let mut listener = listener.clone();
        if !listener.enabled {
            continue;
        }
        listener.max_connections = caps
            .get(protocol.name())
            .copied()
            .unwrap_or(listener.max_connections);
        if protocol == Protocol::Osmand {
            let socket = bind("osmand", listener.listen).await?;
            listeners.insert(protocol.name(), local_addr(&socket, listener.listen));
            let body = BodyLimit {
                max_bytes: listener
                    .max_frame_len
                    .unwrap_or(osmand_http::DEFAULT_MAX_BODY_BYTES),
                read_timeout: config.http.body_read_timeout,
            };
            let server = HttpServer::new(
                socket,
                osmand_http::router(context.clone(), body),
                ServeOptions {
                    name: protocol.name(),
                    max_connections: listener.max_connections,
                    idle_timeout: listener.idle_timeout,
                    header_read_timeout: config.http.header_read_timeout,
                    tls: None,
                },
                metrics.clone(),
            );
            osmand_task = Some(tokio::spawn(server.run(token.clone())));
            continue;
        }
        let ingest = TcpIngest::bind(protocol, listener.clone(), context.clone())
            .await
            .map_err(|source| ServeError::Bind {
                what: protocol.name().to_owned(),
                addr: listener.listen,
                source,
            })?;
        listeners.insert(
            protocol.name(),
            ingest.local_addr().unwrap_or(listener.listen),
        );
        listener_tasks.push(tokio::spawn(ingest.run(token.clone(), tracker.clone())));
    }
    let mut mqtt_task = None;
    let mut mqtt_commands = None;
    if config.mqtt.enabled {
        let mut mqtt_config = config.mqtt.clone();
        if let Some(cap) = caps.get(Protocol::Json.name()) {
            mqtt_config.max_connections = (cap / MQTT_DESCRIPTORS_PER_CONNECTION).max(1);
        }
        let ingest = mqtt::start(&mqtt_config, context.clone(), token.clone()).await?;
        if let Some(addr) = ingest.listen {
            listeners.insert("mqtt", addr);
            // The alert publisher is one more client of the embedded broker, where it is bound.
            dispatchers.use_embedded_broker(addr);
        }
        mqtt_commands = Some(ingest.commands);
        mqtt_task = Some(ingest.task);
    }
    drop(context);
    let api_socket = bind("the HTTP API", config.http.listen).await?;
    let http_addr = local_addr(&api_socket, config.http.listen);
    let api_stop = CancellationToken::new();
    let state = AppState {
        store: store.clone(),
        registry,
        metrics: metrics.clone(),
        token_uses: Arc::new(TokenUses::default()),
        commands,
        shutdown: api_stop.clone(),
        webhooks: config.webhooks.iter().map(|w| w.name.clone()).collect(),
        integration: Arc::new(config.integration.clone()),
        levels: Arc::new(config.levels.clone()),
        default_timezone: config.fence.default_tz(),
        notices,
        supervision: config.supervision.clone(),
        store_health: pipeline.health(),
        live: pipeline.live(),
        console: Arc::new(config.console.clone()),
        cluster: pipeline.cluster_status(),
    };
    let api_server = HttpServer::new(
        api_socket,
        api::router(state, &config.http).merge(crate::console::router(&config.console)),
        ServeOptions {
            name: API_PORT,
            max_connections: caps
                .get(API_PORT)
                .copied()
                .unwrap_or(config.http.max_connections),
            idle_timeout: config.http.idle_timeout,
            header_read_timeout: config.http.header_read_timeout,
            tls,
        },
        metrics.clone(),
    );
    let api_task = tokio::spawn(api_server.run(api_stop.clone()));
    // Started once everything is bound, so a failed start leaves no delivery running.
    let dispatchers = match &pipeline {
        Processing::Local(_) => dispatchers.spawn(),
        // One node at a time delivers each channel, under the channel's lease.
        Processing::Cluster(node, _) => node.spawn_dispatchers(dispatchers.into_channels()),
    };
    if config.audit.retention_days > 0 {
        let key = crate::audit::checkpoint_key(&config.audit, &config.data_dir, true)?
            .expect("created when missing");
        tokio::spawn(crate::audit::run_retention(
            store.clone(),
            config.audit.clone(),
            key,
            token.clone(),
        ));
    }
    if store.token_count().await? == 0 {
        warn!("No API tokens exist yet, so the API refuses every request. Create an admin token with `ewall token create --role admin`, giving it the same --config as this server.");
    }
    info!(http = %http_addr, listeners = ?listeners, "ewall is running.");

    let stop = token.clone();
    let timeout = config.shutdown_timeout;
    let task = tokio::spawn(async move {
        stop.cancelled().await;
        let deadline = tokio::time::Instant::now() + timeout;
        info!("Shutting down: no new connections; finishing frames in hand.");
        let osmand_abort = osmand_task.as_ref().map(|t| t.abort_handle());
        let connections = async {
            for task in listener_tasks {
                let _ = task.await;
            }
            tracker.close();
            tracker.wait().await;
            if let Some(osmand) = osmand_task {
                let _ = osmand.await;
            }
            if let Some(mqtt) = mqtt_task {
                let _ = mqtt.await;
            }
        };
        let mut clean = true;
        if tokio::time::timeout_at(deadline, connections)
            .await
            .is_err()
        {
            clean = false;
            warn!(?timeout, "Connections still busy at the shutdown timeout; their unfinished frames are not acknowledged and the devices will resend.");
            if let Some(osmand) = osmand_abort {
                osmand.abort();
            }
        }
        // What was handed to the pipeline is committed before the process ends, within the
        // deadline: a stalled upload cannot delay it, because closing refuses late submissions,
        // and a database that does not answer delays it only until the deadline (what is not
        // committed by then is not acknowledged, and its devices resend it).
        let store_health = pipeline.health();
        if pipeline.join_by(deadline).await {
            info!("Pipeline drained; last batch committed.");
        } else {
            clean = false;
            if let Some(outage) = store_health.outage() {
                warn!(reason = outage.reason.as_str(), held = outage.held_positions, "Stopped with the database unreachable; the held positions were not acknowledged and the devices will resend them.");
            }
        }
        if tokio::time::timeout_at(deadline, dispatchers.stop())
            .await
            .is_err()
        {
            warn!("Alert deliveries still in progress at the shutdown timeout; they resume from the stored cursors at the next start.");
        }
        // Every connection is gone, so nothing reports to the dispatcher any more.
        commands_task.abort();
        command_relay.cancel();
        api_stop.cancel();
        // API requests in progress get what is left of the timeout. A client that never
        // finishes its request would otherwise keep the process alive for as long as it likes.
        let mut api_task = api_task;
        if tokio::time::timeout_at(deadline, &mut api_task)
            .await
            .is_err()
        {
            warn!("API requests still open at the shutdown timeout; dropping them.");
            api_task.abort();
        }
        info!("Stopped.");
        clean
    });
    Ok(Running {
        http_addr,
        listeners,
        token,
        metrics,
        mqtt_commands,
        task,
    })
}

/// Where the fixes go after ingest: this node's pipeline, or the cluster's stream.
enum Processing {
    Local(Pipeline),
    Cluster(ClusterNode, Arc<StoreHealth>),
}

impl Processing {
    fn submissions(&self) -> crate::pipeline::Entrance {
        match self {
            Processing::Local(p) => p.submissions.clone(),
            Processing::Cluster(node, _) => node.submissions.clone().into(),
        }
    }

    /// In cluster mode the timers run on each partition's owner, to which the notices are
    /// relayed.
    fn notices(&self) -> crate::pipeline::Notices {
        match self {
            Processing::Local(p) => p.notices.clone(),
            Processing::Cluster(node, _) => node.notices.clone(),
        }
    }

    fn health(&self) -> Arc<StoreHealth> {
        match self {
            Processing::Local(p) => p.health.clone(),
            Processing::Cluster(_, health) => health.clone(),
        }
    }

    /// What the positions stream follows: this node's pipeline, or on a cluster node what
    /// every partition's owner announces of its commits ([`crate::cluster::live`]).
    fn live(&self) -> api::positions::LiveFeeds {
        match self {
            Processing::Local(p) => api::positions::LiveFeeds {
                fixes: p.fixes.clone(),
                alerts: p.alerts.clone(),
            },
            Processing::Cluster(node, _) => node.live.clone(),
        }
    }

    fn cluster_status(&self) -> Option<Arc<ClusterStatus>> {
        match self {
            Processing::Local(_) => None,
            Processing::Cluster(node, _) => Some(node.status.clone()),
        }
    }

    /// Drains what was handed over by `deadline`; false when the deadline cut it short.
    async fn join_by(self, deadline: tokio::time::Instant) -> bool {
        match self {
            Processing::Local(p) => p.join_by(deadline).await,
            Processing::Cluster(node, _) => {
                tokio::time::timeout_at(deadline, node.stop()).await.is_ok()
            }
        }
    }
}

/// Descriptors one embedded-broker connection holds in this process: the client's socket, the
/// endpoint's connection to rumqttd, and rumqttd's end of it.
const MQTT_DESCRIPTORS_PER_CONNECTION: usize = 3;

/// The API's name in metrics (`ewall_connections_open{protocol="api"}`) and logs.
pub const API_PORT: &str = "api";

/// Each listener's connection cap, from its `max_connections` and the process's descriptor
/// budget ([`DescriptorBudget`]), by protocol name (and [`API_PORT`]).
fn connection_caps(config: &Config) -> BTreeMap<&'static str, usize> {
    let mut wanted: Vec<(&'static str, usize)> = Protocol::ALL
        .into_iter()
        .filter_map(|p| {
            let listener = config.listeners.get(p).filter(|l| l.enabled)?;
            Some((p.name(), listener.max_connections))
        })
        .collect();
    wanted.push((API_PORT, config.http.max_connections));
    if config.mqtt.enabled && config.mqtt.is_embedded() {
        wanted.push((
            Protocol::Json.name(),
            config
                .mqtt
                .max_connections
                .saturating_mul(MQTT_DESCRIPTORS_PER_CONNECTION),
        ));
    }
    let budget = DescriptorBudget::measure();
    let caps = budget.share(&wanted);
    wanted
        .iter()
        .zip(caps)
        .map(|((name, _), cap)| (*name, cap))
        .collect()
}

fn local_addr(socket: &TcpListener, configured: SocketAddr) -> SocketAddr {
    socket.local_addr().unwrap_or(configured)
}

//! The dispatchers: one task per consumer channel, each with its own cursor over the event
//! feed. [`Dispatchers::spawn`] starts those the configuration asks for; SSE streams are
//! started per HTTP request by the API ([`sse`]).
//!
//! | channel | cursor | acknowledged when |
//! | --- | --- | --- |
//! | [`mqtt`] | `mqtt` in the store | the broker's PUBACK for every message of a batch |
//! | [`webhook`] | `webhook:<name>` in the store | the receiver answers 2xx, or the delivery is dead-lettered |
//! | [`sse`] | the client's `Last-Event-ID` | written to the client's connection |

pub mod mqtt;
pub mod sse;
pub mod webhook;

use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::error;

use crate::store::{Store, StoreError};
use crate::telemetry::Metrics;

/// Events read from the store per batch.
pub const BATCH_LIMIT: u32 = 100;

/// What to start.
#[derive(Debug, Clone, Default)]
pub struct DispatchSettings {
    /// The alert topic publisher, when enabled.
    pub mqtt: Option<mqtt::MqttAlertSettings>,
    /// One dispatcher per configured webhook.
    pub webhooks: Vec<webhook::WebhookConfig>,
}

/// The running dispatchers.
pub struct Dispatchers {
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl DispatchSettings {
    /// The names of the store cursors of every dispatcher configured.
    pub fn consumers(&self) -> Vec<String> {
        let mut consumers: Vec<String> = self.webhooks.iter().map(|w| w.consumer()).collect();
        if self.mqtt.is_some() {
            consumers.push(mqtt::CONSUMER.to_owned());
        }
        consumers
    }

    /// Reads (and so creates) every configured dispatcher's cursor. Called before anything
    /// can raise an alert: a dispatcher seen for the first time starts at the end of the feed,
    /// and that end must be taken before the first event it is meant to deliver.
    ///
    /// # Errors
    /// Store errors.
    pub async fn claim_cursors(&self, store: &dyn Store) -> Result<(), StoreError> {
        for consumer in self.consumers() {
            store.dispatch_cursor(&consumer).await?;
        }
        Ok(())
    }
}

/// Dispatchers built from their settings and not yet running.
pub struct PreparedDispatchers {
    mqtt: Option<mqtt::MqttDispatcher>,
    webhooks: Vec<webhook::WebhookDispatcher>,
    settings: DispatchSettings,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    embedded_broker: Option<std::net::SocketAddr>,
}

/// Starts a fresh dispatcher of one channel, running until the token is cancelled.
pub type StartDispatcher = Arc<dyn Fn(CancellationToken) -> JoinHandle<()> + Send + Sync>;

/// One channel's dispatcher, startable as often as needed: in cluster mode it runs only on
/// the node holding the channel's lease, and again wherever the lease goes next.
pub struct DispatchChannel {
    /// The channel's name in the lease bucket (`mqtt`, `webhook.<name>`).
    pub name: String,
    /// Starts the channel's dispatcher from its stored cursor.
    pub start: StartDispatcher,
}

impl PreparedDispatchers {
    /// Points the MQTT publisher at the embedded broker's bound address (known only once it
    /// listens, e.g. with port 0).
    pub fn use_embedded_broker(&mut self, addr: std::net::SocketAddr) {
        if let Some(mqtt) = &mut self.mqtt {
            mqtt.use_broker(addr);
        }
        self.embedded_broker = Some(addr);
    }

    /// The configured channels, each as a dispatcher that can be started (and started again
    /// after it stopped) rather than one started now.
    pub fn into_channels(self) -> Vec<DispatchChannel> {
        let mut channels = Vec::new();
        if let Some(settings) = self.settings.mqtt {
            let (store, metrics, embedded) = (
                self.store.clone(),
                self.metrics.clone(),
                self.embedded_broker,
            );
            channels.push(DispatchChannel {
                name: mqtt::CONSUMER.to_owned(),
                start: Arc::new(move |stop| {
                    let mut dispatcher =
                        mqtt::MqttDispatcher::new(settings.clone(), store.clone(), metrics.clone());
                    if let Some(addr) = embedded {
                        dispatcher.use_broker(addr);
                    }
                    tokio::spawn(dispatcher.run(stop))
                }),
            });
        }
        // Each was built once by `prepare`, so building it again cannot fail.
        for (config, built) in self.settings.webhooks.into_iter().zip(self.webhooks) {
            drop(built);
            let (store, metrics) = (self.store.clone(), self.metrics.clone());
            channels.push(DispatchChannel {
                name: format!("webhook.{}", config.name),
                start: Arc::new(move |stop| {
                    match webhook::WebhookDispatcher::new(
                        config.clone(),
                        store.clone(),
                        metrics.clone(),
                    ) {
                        Ok(dispatcher) => tokio::spawn(dispatcher.run(stop)),
                        Err(e) => {
                            error!(webhook = %config.name, error = %e, "Webhook dispatcher not built.");
                            tokio::spawn(async {})
                        }
                    }
                }),
            });
        }
        channels
    }

    /// Starts one task per dispatcher.
    pub fn spawn(self) -> Dispatchers {
        let stop = CancellationToken::new();
        let mut tasks = Vec::new();
        if let Some(dispatcher) = self.mqtt {
            tasks.push(tokio::spawn(dispatcher.run(stop.child_token())));
        }
        for dispatcher in self.webhooks {
            tasks.push(tokio::spawn(dispatcher.run(stop.child_token())));
        }
        Dispatchers { stop, tasks }
    }
}

impl Dispatchers {
    /// Dispatchers run by other tasks (one per channel lease in cluster mode), stopped
    /// through `stop`.
    pub fn from_tasks(stop: CancellationToken, tasks: Vec<JoinHandle<()>>) -> Self {
        Dispatchers { stop, tasks }
    }
}

impl Dispatchers {
    /// Builds the dispatchers `settings` ask for, without starting them, so that everything
    /// that can fail fails before the service starts anything else.
    ///
    /// # Errors
    /// When the webhook HTTP client cannot be built or a secret is malformed.
    pub fn prepare(
        settings: DispatchSettings,
        store: Arc<dyn Store>,
        metrics: Arc<Metrics>,
    ) -> Result<PreparedDispatchers, webhook::WebhookError> {
        let mqtt = settings
            .mqtt
            .clone()
            .map(|mqtt| mqtt::MqttDispatcher::new(mqtt, store.clone(), metrics.clone()));
        let webhooks = settings
            .webhooks
            .iter()
            .map(|config| {
                webhook::WebhookDispatcher::new(config.clone(), store.clone(), metrics.clone())
            })
            .collect::<Result<_, _>>()?;
        Ok(PreparedDispatchers {
            mqtt,
            webhooks,
            settings,
            store,
            metrics,
            embedded_broker: None,
        })
    }

    /// Builds and starts the dispatchers `settings` ask for.
    ///
    /// # Errors
    /// As [`Dispatchers::prepare`].
    pub fn spawn(
        settings: DispatchSettings,
        store: Arc<dyn Store>,
        metrics: Arc<Metrics>,
    ) -> Result<Dispatchers, webhook::WebhookError> {
        Ok(Dispatchers::prepare(settings, store, metrics)?.spawn())
    }

    /// Stops every dispatcher once its current delivery is done; what is left is delivered
    /// after the next start, from the stored cursors.
    pub async fn stop(self) {
        self.stop.cancel();
        for task in self.tasks {
            if let Err(e) = task.await {
                error!(error = %e, "Dispatcher panicked.");
            }
        }
    }
}

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
}

impl PreparedDispatchers {
    /// Points the MQTT publisher at the embedded broker's bound address (known only once it
    /// listens, e.g. with port 0).
    pub fn use_embedded_broker(&mut self, addr: std::net::SocketAddr) {
        if let Some(mqtt) = &mut self.mqtt {
            mqtt.use_broker(addr);
        }
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
            .map(|mqtt| mqtt::MqttDispatcher::new(mqtt, store.clone(), metrics.clone()));
        let webhooks = settings
            .webhooks
            .into_iter()
            .map(|config| webhook::WebhookDispatcher::new(config, store.clone(), metrics.clone()))
            .collect::<Result<_, _>>()?;
        Ok(PreparedDispatchers { mqtt, webhooks })
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

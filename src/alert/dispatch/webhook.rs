//! Webhooks: every alert event POSTed to each configured `[[webhooks]]` receiver, signed the
//! Standard Webhooks way, at-least-once and in `seq` order.
//!
//! One dispatcher per webhook delivers one event at a time, in feed order (so in `seq` order
//! per person, and across persons too). A failed attempt (a connection error, a timeout, any
//! status other than 2xx) is retried with exponential back-off and jitter, up to
//! `max_attempts`; then the delivery is dead-lettered and the dispatcher moves on, in one store
//! transaction. Dead letters are listed at `GET /api/v1/webhooks/{name}/deliveries` and
//! redelivered, once each, when someone asks (`POST .../deliveries/{id}/redeliver` or
//! `.../deliveries/redeliver` for all); a redelivery is therefore out of order, and carries its
//! original `seq` and `webhook-id`.
//!
//! Signing (<https://www.standardwebhooks.com/>): the secret is `whsec_` followed by the
//! base64 of the key; each request carries `webhook-id` (the event id: the same on every
//! retry and redelivery, so receivers dedupe by it), `webhook-timestamp` (Unix seconds) and
//! `webhook-signature: v1,<base64 of HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`.

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use chrono::Utc;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Sha256;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::BATCH_LIMIT;
use crate::alert::{cloud_event, select_fields, AlertOutbox, Backoff};
use crate::model::{AlertKind, Event};
use crate::store::{DeliveryState, Store};
use crate::telemetry::Metrics;

/// Prefix of a Standard Webhooks secret.
pub const SECRET_PREFIX: &str = "whsec_";
/// Redeliveries tried per look at the store.
const REDELIVERY_BATCH: u32 = 20;

/// Errors of the webhook layer.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The secret is not `whsec_<base64>` of a key of 24 to 64 bytes.
    #[error("secret must be \"whsec_\" followed by the base64 of a 24 to 64 byte key: {0}")]
    Secret(String),
    /// The HTTP client could not be built.
    #[error("cannot build the webhook HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// Makes ring the process's TLS crypto provider, which every HTTPS client in the process
/// (reqwest is built without a provider of its own) needs before it is built. Idempotent: a
/// second call finds a provider installed, which is as good.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// One `[[webhooks]]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Name in the API paths (`/webhooks/{name}/deliveries`) and the cursor; letters, digits,
    /// `-` and `_`.
    pub name: String,
    /// Where to POST (`https://...`; `http://` for a receiver on a trusted network).
    pub url: String,
    /// `whsec_<base64 key>`, shared with the receiver, which verifies every signature.
    pub secret: String,
    /// Alert kinds sent (their state changes too); empty sends every kind.
    #[serde(default)]
    pub kinds: Vec<AlertKind>,
    /// Alert fields sent; empty sends all. `id`, `seq`, `kind` and `person_id` always go.
    #[serde(default)]
    pub fields: Vec<String>,
    /// Attempts at one delivery before it is dead-lettered.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Longest one attempt may take, connection included.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Wait before the first retry; it doubles (with jitter) after each failure.
    #[serde(default = "default_retry_initial", with = "humantime_serde")]
    pub retry_initial: Duration,
    /// Longest wait between two retries.
    #[serde(default = "default_retry_max", with = "humantime_serde")]
    pub retry_max: Duration,
}

fn default_max_attempts() -> u32 {
    8
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_retry_initial() -> Duration {
    Duration::from_secs(1)
}
fn default_retry_max() -> Duration {
    Duration::from_secs(300)
}

impl WebhookConfig {
    /// The dispatcher's cursor name in the store.
    pub fn consumer(&self) -> String {
        format!("webhook:{}", self.name)
    }

    /// Checks the entry; the error names the key at fault (`name`, `url`, ...).
    ///
    /// # Errors
    /// `(key, problem)`.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err((
                "name",
                format!("{:?} must be letters, digits, '-' or '_'", self.name),
            ));
        }
        match reqwest::Url::parse(&self.url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => {}
            _ => return Err(("url", format!("{:?} is not an http(s) URL", self.url))),
        }
        WebhookSigner::from_secret(&self.secret).map_err(|e| ("secret", e.to_string()))?;
        if self.max_attempts == 0 {
            return Err(("max_attempts", "must be at least 1".into()));
        }
        if self.timeout.is_zero() {
            return Err(("timeout", "must be more than 0s".into()));
        }
        Ok(())
    }

    /// Whether an event goes to this webhook.
    fn wants(&self, event: &Event) -> bool {
        self.kinds.is_empty()
            || event.data["kind"]
                .as_str()
                .and_then(|k| k.parse::<AlertKind>().ok())
                .is_some_and(|k| self.kinds.contains(&k))
    }

    /// The alert as this webhook may see it.
    fn filter(&self, data: &Value) -> Value {
        select_fields(data, &self.fields)
    }
}

/// Signs webhook requests with one secret.
#[derive(Clone)]
pub struct WebhookSigner {
    key: Vec<u8>,
}

impl std::fmt::Debug for WebhookSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSigner { key: <secret> }")
    }
}

impl WebhookSigner {
    /// A signer for `whsec_<base64 key>`.
    ///
    /// # Errors
    /// [`WebhookError::Secret`] for anything else.
    pub fn from_secret(secret: &str) -> Result<Self, WebhookError> {
        let encoded = secret
            .strip_prefix(SECRET_PREFIX)
            .ok_or_else(|| WebhookError::Secret("missing the \"whsec_\" prefix".into()))?;
        let key = BASE64
            .decode(encoded)
            .map_err(|e| WebhookError::Secret(format!("not base64: {e}")))?;
        if !(24..=64).contains(&key.len()) {
            return Err(WebhookError::Secret(format!(
                "the key is {} bytes long",
                key.len()
            )));
        }
        Ok(WebhookSigner { key })
    }

    /// The `webhook-signature` header value for a request.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        // HMAC takes a key of any length, so this cannot fail.
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC accepts keys of any length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
    }
}

/// How one event's delivery ended.
enum Outcome {
    Delivered,
    DeadLettered,
    Stopped,
}

/// Delivers the alert events of the store to one webhook.
pub struct WebhookDispatcher {
    config: WebhookConfig,
    signer: WebhookSigner,
    client: reqwest::Client,
    outbox: AlertOutbox,
    metrics: Arc<Metrics>,
}

impl WebhookDispatcher {
    /// A dispatcher for `config`.
    ///
    /// # Errors
    /// A bad secret, or an HTTP client that cannot be built.
    pub fn new(
        config: WebhookConfig,
        store: Arc<dyn Store>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, WebhookError> {
        install_tls_provider();
        let client = reqwest::Client::builder()
            // A receiver answers; it does not send the delivery elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("ewall/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let outbox = AlertOutbox::new(store, true).with_lag_gauge(
            metrics
                .dispatch_lag
                .with_label_values(&[&config.consumer()]),
        );
        Ok(WebhookDispatcher {
            signer: WebhookSigner::from_secret(&config.secret)?,
            config,
            client,
            outbox,
            metrics,
        })
    }

    /// Runs until `stop`, after the delivery in hand.
    pub async fn run(mut self, stop: CancellationToken) {
        let consumer = self.config.consumer();
        let mut retry = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
        let mut cursor = loop {
            match self.outbox.store().dispatch_cursor(&consumer).await {
                Ok(seq) => break seq,
                Err(e) => {
                    warn!(webhook = %self.config.name, error = %e, "Cannot read the webhook's cursor; retrying.");
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(retry.next_delay()) => {}
                    }
                }
            }
        };
        info!(webhook = %self.config.name, url = %self.config.url, cursor, "Delivering alerts to the webhook.");
        loop {
            self.redeliver_pending(&stop).await;
            let batch = match self.outbox.next_batch(cursor, BATCH_LIMIT, &stop).await {
                Ok(Some(batch)) => batch,
                Ok(None) => break,
                Err(e) => {
                    warn!(webhook = %self.config.name, error = %e, "Cannot read the event feed; retrying.");
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep(retry.next_delay()) => {}
                    }
                    continue;
                }
            };
            retry.reset();
            // Events this webhook does not take move the cursor too; it is written with the
            // next delivery or at the end of the batch.
            let mut unsaved = None;
            for event in batch {
                if !self.config.wants(&event) {
                    cursor = event.seq;
                    unsaved = Some(cursor);
                    continue;
                }
                match self.deliver(&event, &consumer, &stop).await {
                    Outcome::Delivered => {
                        cursor = event.seq;
                        self.save_cursor(&consumer, cursor).await;
                        unsaved = None;
                    }
                    Outcome::DeadLettered => {
                        cursor = event.seq;
                        unsaved = None;
                    }
                    Outcome::Stopped => break,
                }
            }
            if let Some(seq) = unsaved {
                self.save_cursor(&consumer, seq).await;
            }
            if stop.is_cancelled() {
                break;
            }
        }
        debug!(webhook = %self.config.name, "Webhook dispatcher stopped.");
    }

    async fn save_cursor(&self, consumer: &str, seq: i64) {
        if let Err(e) = self.outbox.store().set_dispatch_cursor(consumer, seq).await {
            // The receiver has the event; a restart before the next successful write repeats
            // it, which at-least-once allows (receivers dedupe by webhook-id).
            warn!(webhook = %self.config.name, error = %e, seq, "Cannot store the webhook's cursor.");
        }
    }

    /// Delivers one event with retries, dead-lettering it after `max_attempts`.
    async fn deliver(&self, event: &Event, consumer: &str, stop: &CancellationToken) -> Outcome {
        let mut backoff = Backoff::new(self.config.retry_initial, self.config.retry_max);
        let mut attempt = 0;
        let error = loop {
            attempt += 1;
            match self.send(event).await {
                Ok(()) => {
                    self.metrics.delivered("webhook", 1);
                    self.metrics.events_delivered_at("webhook", [event.seq]);
                    return Outcome::Delivered;
                }
                Err(error) => {
                    self.metrics.delivery_failed("webhook");
                    if attempt >= self.config.max_attempts {
                        break error;
                    }
                    let delay = backoff.next_delay();
                    warn!(webhook = %self.config.name, seq = event.seq, attempt, %error, ?delay, "Webhook delivery failed; retrying.");
                    tokio::select! {
                        _ = stop.cancelled() => return Outcome::Stopped,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        };
        // The dead letter and the cursor move are one transaction; until it commits, the
        // event is not passed over.
        loop {
            match self
                .outbox
                .store()
                .dead_letter(&self.config.name, consumer, event.seq, attempt, &error)
                .await
            {
                Ok(()) => {
                    self.metrics.dead_lettered();
                    warn!(webhook = %self.config.name, seq = event.seq, attempts = attempt, %error, "Webhook delivery dead-lettered; moving on.");
                    return Outcome::DeadLettered;
                }
                Err(e) => {
                    warn!(webhook = %self.config.name, seq = event.seq, error = %e, "Cannot record the dead letter; retrying.");
                    tokio::select! {
                        _ = stop.cancelled() => return Outcome::Stopped,
                        _ = tokio::time::sleep(backoff.next_delay()) => {}
                    }
                }
            }
        }
    }

    /// One attempt at each redelivery someone asked for.
    async fn redeliver_pending(&self, stop: &CancellationToken) {
        let pending = match self
            .outbox
            .store()
            .webhook_deliveries(
                &self.config.name,
                Some(DeliveryState::Pending),
                0,
                REDELIVERY_BATCH,
            )
            .await
        {
            Ok(pending) => pending,
            Err(e) => {
                warn!(webhook = %self.config.name, error = %e, "Cannot read pending redeliveries.");
                return;
            }
        };
        for delivery in pending {
            if stop.is_cancelled() {
                return;
            }
            let outcome = self.send(&delivery.event).await;
            match &outcome {
                Ok(()) => {
                    self.metrics.delivered("webhook", 1);
                    info!(webhook = %self.config.name, seq = delivery.event.seq, "Dead letter redelivered.");
                }
                Err(error) => {
                    self.metrics.delivery_failed("webhook");
                    warn!(webhook = %self.config.name, seq = delivery.event.seq, %error, "Redelivery failed; the delivery is dead again.");
                }
            }
            if let Err(e) = self
                .outbox
                .store()
                .redelivery_done(&self.config.name, delivery.event.seq, outcome)
                .await
            {
                warn!(webhook = %self.config.name, error = %e, "Cannot record the redelivery.");
            }
        }
    }

    /// One signed POST; `Err` says why it does not count as delivered.
    async fn send(&self, event: &Event) -> Result<(), String> {
        let body = cloud_event(event, self.config.filter(&event.data)).to_string();
        let id = event.id.to_string();
        let timestamp = Utc::now().timestamp();
        let signature = self.signer.sign(&id, timestamp, body.as_bytes());
        let response = self
            .client
            .post(&self.config.url)
            .timeout(self.config.timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await
            .map_err(|e| error_chain(&e))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("HTTP {status}"))
        }
    }
}

/// An error with its causes, `a: b: c` (reqwest's own message alone is terse).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn config() -> WebhookConfig {
        WebhookConfig {
            name: "police".into(),
            url: "https://example.org/hook".into(),
            secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
            kinds: Vec::new(),
            fields: Vec::new(),
            max_attempts: 3,
            timeout: Duration::from_secs(1),
            retry_initial: Duration::from_millis(10),
            retry_max: Duration::from_millis(40),
        }
    }

    #[test]
    fn signatures_match_the_standard_webhooks_example() {
        // The example of the Standard Webhooks specification and its reference libraries.
        let signer = WebhookSigner::from_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            signer.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn secrets_must_be_whsec_base64_of_a_real_key() {
        assert!(WebhookSigner::from_secret("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_err());
        assert!(WebhookSigner::from_secret("whsec_not*base64").is_err());
        assert!(
            WebhookSigner::from_secret("whsec_c2hvcnQ=").is_err(),
            "5 bytes"
        );
        assert!(format!(
            "{:?}",
            WebhookSigner::from_secret(&config().secret).unwrap()
        )
        .contains("<secret>"));
    }

    #[test]
    fn validation_names_the_key() {
        assert!(config().validate().is_ok());
        let bad = |change: fn(&mut WebhookConfig)| {
            let mut c = config();
            change(&mut c);
            c.validate().unwrap_err().0
        };
        assert_eq!(bad(|c| c.name = "a b".into()), "name");
        assert_eq!(bad(|c| c.url = "ftp://x".into()), "url");
        assert_eq!(bad(|c| c.url = "not a url".into()), "url");
        assert_eq!(bad(|c| c.secret = "hunter2".into()), "secret");
        assert_eq!(bad(|c| c.max_attempts = 0), "max_attempts");
    }

    #[test]
    fn kinds_and_fields_filter_what_is_sent() {
        let mut c = config();
        let event = |kind: &str| Event {
            seq: 3,
            id: crate::model::new_id(),
            kind: crate::model::EventKind::AlertRaised,
            person_id: crate::model::new_id(),
            alert_id: None,
            time: Utc::now(),
            data: json!({"id": "a", "seq": 3, "kind": kind, "person_id": "p", "note": "n", "severity": "high"}),
        };
        assert!(c.wants(&event("sos")));
        c.kinds = vec![AlertKind::Sos];
        assert!(c.wants(&event("sos")));
        assert!(!c.wants(&event("zone_exit")));

        assert_eq!(
            c.filter(&event("sos").data)["note"],
            "n",
            "no list sends all"
        );
        c.fields = vec!["severity".into()];
        let sent = c.filter(&event("sos").data);
        assert_eq!(
            sent,
            json!({"id": "a", "seq": 3, "kind": "sos", "person_id": "p", "severity": "high"})
        );
    }
}

//! Devices behind MQTT gateways as command links: a device whose positions (or command
//! answers) arrive over MQTT can be told something on `{prefix}/devices/{imei}/commands`.
//!
//! MQTT has no connection per device, so a device counts as reachable while it is heard: from
//! its first publish until it has been silent for `mqtt.gateway_idle_timeout` (as a TCP device
//! is from its login until its connection closes or idles out). While reachable it is
//! registered in ingest's [`Links`] with a [`GatewaySink`], so the command dispatcher publishes
//! its commands at once; when it becomes reachable its queued commands go out; once silent,
//! new commands wait (`pending`) for its next publish and expire as any other.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::commands::MqttCommands;
use crate::ingest::links::{GatewayPublish, GatewaySink, LinkGuard, Links};

/// The transport name commands to gateways are recorded with (`protocol` of the command).
pub const TRANSPORT: &str = "mqtt";

#[async_trait]
impl GatewayPublish for MqttCommands {
    async fn publish(&self, device_id: &str, payload: Vec<u8>) -> Result<(), String> {
        self.send(device_id, payload)
            .await
            .map_err(|e| e.to_string())
    }
}

/// A device heard through a gateway, registered as a link until it falls silent.
struct Presence {
    /// The id the gateway used in its topics, which its commands go back on.
    topic_id: String,
    last_heard: Instant,
    _link: LinkGuard,
}

/// The devices reachable through MQTT gateways now.
pub struct GatewayLinks {
    links: Arc<Links>,
    publisher: Arc<dyn GatewayPublish>,
    idle_timeout: Duration,
    heard: Mutex<HashMap<String, Presence>>,
}

impl GatewayLinks {
    /// Devices registered in `links`, reached through `publisher`, reachable for `idle_timeout`
    /// after each time they are heard.
    pub fn new(
        links: Arc<Links>,
        publisher: Arc<dyn GatewayPublish>,
        idle_timeout: Duration,
    ) -> Self {
        GatewayLinks {
            links,
            publisher,
            idle_timeout,
            heard: Mutex::new(HashMap::new()),
        }
    }

    /// Notes that `device` (its canonical id) was heard on topics naming it `topic_id`, at
    /// `now`. True when it was not reachable before, so its queued commands should go out.
    pub fn heard(&self, device: &str, topic_id: &str, now: Instant) -> bool {
        let mut heard = self.heard.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(presence) = heard.get_mut(device) {
            if presence.topic_id == topic_id {
                presence.last_heard = now;
                return false;
            }
        }
        let sink = GatewaySink::new(TRANSPORT, topic_id, self.publisher.clone());
        let link = self.links.register(device, Arc::new(sink));
        heard.insert(
            device.to_owned(),
            Presence {
                topic_id: topic_id.to_owned(),
                last_heard: now,
                _link: link,
            },
        );
        true
    }

    /// Drops the devices silent for longer than the idle timeout at `now`: their commands
    /// wait for them from then on.
    pub fn forget_silent(&self, now: Instant) {
        let mut heard = self.heard.lock().unwrap_or_else(|p| p.into_inner());
        heard.retain(|_, p| now.duration_since(p.last_heard) < self.idle_timeout);
    }

    /// How often [`GatewayLinks::forget_silent`] should run: often enough that a device is
    /// forgotten within a quarter of the timeout (at most a minute) of falling silent.
    pub fn sweep_interval(&self) -> Duration {
        (self.idle_timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(60))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Nowhere;

    #[async_trait]
    impl GatewayPublish for Nowhere {
        async fn publish(&self, _: &str, _: Vec<u8>) -> Result<(), String> {
            Ok(())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_device_is_reachable_while_heard_and_forgotten_once_silent() {
        let links = Arc::new(Links::default());
        let gateways =
            GatewayLinks::new(links.clone(), Arc::new(Nowhere), Duration::from_secs(600));
        let start = Instant::now();
        assert!(gateways.heard("864717003283581", "864717003283581", start));
        assert_eq!(
            links.get("864717003283581").map(|s| s.transport()),
            Some("mqtt")
        );
        // Heard again within the timeout: nothing new to send.
        tokio::time::advance(Duration::from_secs(500)).await;
        assert!(!gateways.heard("864717003283581", "864717003283581", Instant::now()));
        tokio::time::advance(Duration::from_secs(500)).await;
        gateways.forget_silent(Instant::now());
        assert!(links.get("864717003283581").is_some(), "heard 500 s ago");
        tokio::time::advance(Duration::from_secs(101)).await;
        gateways.forget_silent(Instant::now());
        assert!(links.get("864717003283581").is_none(), "silent for 601 s");
        assert!(gateways.heard("864717003283581", "864717003283581", Instant::now()));
    }
}

//! Downlink to MQTT gateways: publish a command to a device and hear the gateway's replies.
//!
//! Commands go out at QoS 1 on `{prefix}/devices/{imei}/commands`; a gateway answers on
//! `{prefix}/devices/{imei}/commands/reply` (any payload; the command layer above gives it
//! meaning). [`MqttCommands`] works the same with the embedded and an external broker.

use bytes::Bytes;
use rumqttc::{AsyncClient, QoS};
use tokio::sync::broadcast;

use super::Topics;

/// How many replies a slow listener may fall behind before it misses some.
pub const REPLY_CAPACITY: usize = 1024;

/// A gateway's reply to a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandReply {
    /// The device the reply came for (from the topic).
    pub imei: String,
    /// The payload as published.
    pub payload: Bytes,
}

/// Why a command could not be handed to the broker.
#[derive(Debug, thiserror::Error)]
#[error("command not published: {0}")]
pub struct CommandError(String);

/// Publishes commands to gateways and hands out their replies. Cheap to clone.
#[derive(Clone)]
pub struct MqttCommands {
    client: AsyncClient,
    topics: Topics,
    replies: broadcast::Sender<CommandReply>,
}

impl MqttCommands {
    /// Commands through `client`, whose replies arrive on `replies`.
    pub fn new(
        client: AsyncClient,
        topics: Topics,
        replies: broadcast::Sender<CommandReply>,
    ) -> Self {
        MqttCommands {
            client,
            topics,
            replies,
        }
    }

    /// Publishes `payload` to the device's commands topic at QoS 1. Returns once the client has
    /// queued it; the broker then holds it for a gateway with a persistent session.
    ///
    /// # Errors
    /// [`CommandError`] when the MQTT client has stopped.
    pub async fn send(&self, imei: &str, payload: impl Into<Vec<u8>>) -> Result<(), CommandError> {
        self.client
            .publish(
                self.topics.commands(imei),
                QoS::AtLeastOnce,
                false,
                payload.into(),
            )
            .await
            .map_err(|e| CommandError(e.to_string()))
    }

    /// Replies from now on, from every device.
    pub fn replies(&self) -> broadcast::Receiver<CommandReply> {
        self.replies.subscribe()
    }
}

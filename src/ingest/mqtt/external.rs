//! The external broker: ewall as a subscriber of Mosquitto or EMQX (`mqtt.url =
//! "mqtt://host:port"`).
//!
//! ewall connects with a fixed client id and a persistent session (clean session off),
//! subscribes to every device's positions topic at QoS 1 and acknowledges each delivery itself
//! (rumqttc's manual acks), in delivery order, only once the positions it carried are
//! committed. A delivery that was not acknowledged when ewall stopped, and everything the broker
//! queued for the session while ewall was away, is delivered again when ewall reconnects. So
//! responsibility for a position passes from the broker to ewall at the commit; the gateway's
//! own leg (gateway to broker) is as durable as the broker's settings make it (see the README).

use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, Publish, QoS};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::commands::CommandReply;
use super::embedded::MAX_PACKET_BYTES;
use super::{
    answer_refusal, take_command_reply, MqttConfig, MqttError, Outcome, Pending, PositionsHandler,
};

/// Deliveries waiting for their commit before ewall stops reading from the broker.
const PENDING_ACKS: usize = 1024;

/// The connection to the external broker.
pub struct ExternalSubscriber {
    client: AsyncClient,
    eventloop: EventLoop,
    replies: tokio::sync::broadcast::Sender<CommandReply>,
}

impl ExternalSubscriber {
    /// Prepares the client; nothing is sent until [`ExternalSubscriber::run`].
    ///
    /// # Errors
    /// [`MqttError::Config`] when `mqtt.url` is not `mqtt://host:port`.
    pub fn new(
        config: &MqttConfig,
        replies: tokio::sync::broadcast::Sender<CommandReply>,
    ) -> Result<Self, MqttError> {
        let (host, port) = config.external_address().map_err(MqttError::Config)?;
        let mut options = MqttOptions::new(config.client_id.clone(), host, port);
        options.set_clean_session(false);
        options.set_manual_acks(true);
        options.set_keep_alive(Duration::from_secs(30));
        options.set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES);
        let (client, eventloop) = AsyncClient::new(options, 1024);
        Ok(ExternalSubscriber {
            client,
            eventloop,
            replies,
        })
    }

    /// The client, for publishing refusals and commands on the same session.
    pub fn client(&self) -> AsyncClient {
        self.client.clone()
    }

    /// Receives until `token` is cancelled, reconnecting after a broker outage, handing
    /// positions and command replies to `handler`; then stops taking deliveries, acknowledges
    /// those already committed and disconnects.
    pub async fn run(self, handler: Arc<PositionsHandler>, token: CancellationToken) {
        let ExternalSubscriber {
            client,
            mut eventloop,
            replies,
        } = self;
        let (awaiting_tx, awaiting_rx) = mpsc::channel::<(Publish, String, Pending)>(PENDING_ACKS);
        let acks = tokio::spawn(acknowledge(awaiting_rx, client.clone(), handler.clone()));
        let topics = handler.topics().clone();
        let mut connected_once = false;
        loop {
            let event = tokio::select! {
                _ = token.cancelled() => break,
                event = eventloop.poll() => event,
            };
            match event {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    if !connected_once {
                        info!(
                            session_present = ack.session_present,
                            "Connected to the MQTT broker."
                        );
                    } else {
                        info!(
                            session_present = ack.session_present,
                            "Reconnected to the MQTT broker."
                        );
                    }
                    connected_once = true;
                    // Subscribing again on a present session is harmless and covers a broker
                    // that lost the session.
                    for filter in [topics.positions_filter(), topics.command_replies_filter()] {
                        if let Err(e) = client.subscribe(filter, QoS::AtLeastOnce).await {
                            warn!(error = %e, "MQTT subscribe could not be queued.");
                        }
                    }
                }
                Ok(Event::Incoming(Packet::Publish(publish))) => {
                    if let Some(imei) = topics.device_of_positions(&publish.topic) {
                        let imei = imei.to_owned();
                        let pending = handler
                            .submit(&imei, &publish.topic, &publish.payload)
                            .await;
                        if awaiting_tx.send((publish, imei, pending)).await.is_err() {
                            break;
                        }
                    } else {
                        // A command answer is acknowledged once it has been taken.
                        let taken = take_command_reply(&handler, &client, &publish, &replies);
                        let client = client.clone();
                        tokio::spawn(async move {
                            if let Some(taken) = taken {
                                let _ = taken.await;
                            }
                            if let Err(e) = client.ack(&publish).await {
                                debug!(error = %e, "MQTT ack could not be queued.");
                            }
                        });
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    warn!(error = %e, "MQTT broker connection failed; reconnecting in 1 s.");
                    tokio::select! {
                        _ = token.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
        // Deliveries already handed to the pipeline are acknowledged once committed; the
        // event loop is driven meanwhile so the acknowledgements reach the broker.
        drop(awaiting_tx);
        let mut acks = acks;
        let drained = loop {
            tokio::select! {
                _ = &mut acks => break true,
                event = eventloop.poll() => {
                    if event.is_err() {
                        break false;
                    }
                }
            }
        };
        if drained {
            let _ = client.disconnect().await;
            // Let the last acknowledgements and the DISCONNECT go out.
            let flush = async {
                while let Ok(event) = eventloop.poll().await {
                    if matches!(
                        event,
                        rumqttc::Event::Outgoing(rumqttc::Outgoing::Disconnect)
                    ) {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(5), flush).await;
        }
        info!("MQTT subscriber stopped.");
    }
}

/// Acknowledges each delivery once committed, in delivery order.
async fn acknowledge(
    mut awaiting: mpsc::Receiver<(Publish, String, Pending)>,
    client: AsyncClient,
    handler: Arc<PositionsHandler>,
) {
    while let Some((publish, imei, pending)) = awaiting.recv().await {
        match pending.outcome().await {
            Outcome::Committed => {}
            Outcome::Refused(refusal) => {
                answer_refusal(&client, handler.topics(), &imei, &refusal).await;
            }
            Outcome::NotCommitted(reason) => {
                // Left unacknowledged: the broker delivers it again on the next session.
                warn!(device = imei.as_str(), %reason, "MQTT positions not committed; not acknowledged, the broker will deliver them again.");
                continue;
            }
        }
        if let Err(e) = client.ack(&publish).await {
            debug!(error = %e, "MQTT ack could not be queued.");
        }
    }
}

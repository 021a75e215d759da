//! The devices that can be told something right now: one [`CommandSink`] per device with a
//! live connection (or, for MQTT gateways, a topic), registered by the transport that serves
//! it, and the [`LinkEvent`]s ingest reports about them (connected, answered a command).
//!
//! The command dispatcher above ingest looks a device up here to send it a command, and
//! learns from the events when a device connects (so queued commands go out) and when it
//! answers. Ingest knows nothing of stored commands; it only moves them onto the wire.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ewall_protocol::{Command, CommandError, CommandReply, Protocol, ReplyRef};
use tokio::sync::{oneshot, Notify};

/// Longest a command may wait for its connection to take and write it.
pub const DELIVER_TIMEOUT: Duration = Duration::from_secs(15);

/// Why a command did not reach the device.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The connection closed (or is closing); the command should wait for the next one.
    #[error("the device's connection closed")]
    Gone,
    /// The protocol cannot carry this command, or not with these arguments.
    #[error(transparent)]
    Encode(#[from] CommandError),
    /// The write failed or timed out; the connection is being dropped.
    #[error("write failed: {0}")]
    Write(String),
}

/// Somewhere a device's commands can be written: its TCP connection, an MQTT topic. A
/// transport plugs into command dispatch by registering one per reachable device in
/// [`Links`] and reporting answers as [`LinkEvent::Reply`].
#[async_trait]
pub trait CommandSink: Send + Sync {
    /// The name recorded as the command's `protocol` (`gt06`, `jt808`, ..., `mqtt`).
    fn transport(&self) -> &'static str;

    /// What the answer to `command` numbered `tag` will carry, or why this device cannot be
    /// told it. Called before [`CommandSink::deliver`], so the command is known to be sent
    /// before any answer can arrive.
    ///
    /// # Errors
    /// [`CommandError::Unsupported`] (a 422 for the API) or [`CommandError::Invalid`].
    fn reference(&self, command: &Command, tag: u32) -> Result<ReplyRef, CommandError>;

    /// Encodes `command` numbered `tag` for the device and writes it; returns what the device's
    /// answer will carry, once the bytes are handed to the transport.
    ///
    /// # Errors
    /// [`SinkError`] when it was not written.
    async fn deliver(&self, command: &Command, tag: u32) -> Result<ReplyRef, SinkError>;
}

/// A command for a connection task to encode with its session and write.
#[derive(Debug)]
pub struct Outbound {
    /// What to send.
    pub command: Command,
    /// Its number, for the protocol's correlation field.
    pub tag: u32,
    /// Told the outcome once written (or not).
    pub written: oneshot::Sender<Result<ReplyRef, SinkError>>,
}

/// Commands waiting for one connection to write them; more wait in the dispatcher.
pub const OUTBOUND_QUEUE: usize = 16;

/// The [`CommandSink`] of one TCP connection: a short queue its task takes commands from.
///
/// A queue under a lock with two wake-ups rather than a channel: a tokio `mpsc` channel costs
/// each connection about 1.8 KiB when it is made (a block of 32 slots and a cache-padded
/// state), and most connections are never sent a command.
pub struct ConnectionSink {
    protocol: Protocol,
    queue: Mutex<OutboundQueue>,
    /// Woken when a command is queued.
    queued: Notify,
    /// Woken when a command is taken or the connection ends.
    room: Notify,
}

#[derive(Default)]
struct OutboundQueue {
    commands: VecDeque<Outbound>,
    /// The connection has ended: nothing more is taken.
    closed: bool,
}

impl ConnectionSink {
    /// An empty queue for a connection speaking `protocol`.
    pub fn new(protocol: Protocol) -> Self {
        ConnectionSink {
            protocol,
            queue: Mutex::default(),
            queued: Notify::new(),
            room: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, OutboundQueue> {
        // Every change is one push, pop or flag, so a poisoned queue is still whole.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next command queued, waiting for one (what the connection task selects on).
    pub async fn next(&self) -> Outbound {
        loop {
            // Made before the look, so a command queued in between still wakes it.
            let queued = self.queued.notified();
            let taken = self.lock().commands.pop_front();
            if let Some(outbound) = taken {
                self.room.notify_one();
                return outbound;
            }
            queued.await;
        }
    }

    /// Ends the queue when the connection ends: commands queued and not taken learn that the
    /// connection is gone, and later ones are refused.
    pub fn close(&self) {
        let dropped = {
            let mut queue = self.lock();
            queue.closed = true;
            std::mem::take(&mut queue.commands)
        };
        drop(dropped);
        self.room.notify_waiters();
    }
}

#[async_trait]
impl CommandSink for ConnectionSink {
    fn transport(&self) -> &'static str {
        self.protocol.name()
    }

    fn reference(&self, command: &Command, tag: u32) -> Result<ReplyRef, CommandError> {
        ewall_protocol::command::reply_ref(self.protocol, command, tag)
    }

    async fn deliver(&self, command: &Command, tag: u32) -> Result<ReplyRef, SinkError> {
        let (written, outcome) = oneshot::channel();
        let outbound = Outbound {
            command: command.clone(),
            tag,
            written,
        };
        let queue_and_wait = async {
            loop {
                // Made before the look, so room made (or a close) in between still wakes it.
                let room = self.room.notified();
                {
                    let mut queue = self.lock();
                    if queue.closed {
                        return Err(SinkError::Gone);
                    }
                    if queue.commands.len() < OUTBOUND_QUEUE {
                        queue.commands.push_back(outbound);
                        break;
                    }
                }
                room.await;
            }
            self.queued.notify_one();
            outcome.await.map_err(|_| SinkError::Gone)?
        };
        tokio::time::timeout(DELIVER_TIMEOUT, queue_and_wait)
            .await
            .map_err(|_| SinkError::Write(format!("not written within {DELIVER_TIMEOUT:?}")))?
    }
}

/// Publishes a payload to a device behind a gateway transport (the MQTT commands topic).
#[async_trait]
pub trait GatewayPublish: Send + Sync {
    /// Hands `payload` for `device_id` to the transport.
    ///
    /// # Errors
    /// Why it was not handed over (the client has stopped).
    async fn publish(&self, device_id: &str, payload: Vec<u8>) -> Result<(), String>;
}

/// The [`CommandSink`] of a device reached through a gateway: every command goes out as
/// [`gateway_payload`] JSON, and the gateway, which speaks the device's own protocol, decides
/// how to carry it and answers with [`gateway_answer`].
pub struct GatewaySink {
    transport: &'static str,
    device_id: String,
    publisher: Arc<dyn GatewayPublish>,
}

impl GatewaySink {
    /// A sink for `device_id` over `publisher`, recorded as `transport` (`mqtt`).
    pub fn new(
        transport: &'static str,
        device_id: &str,
        publisher: Arc<dyn GatewayPublish>,
    ) -> Self {
        GatewaySink {
            transport,
            device_id: device_id.to_owned(),
            publisher,
        }
    }
}

#[async_trait]
impl CommandSink for GatewaySink {
    fn transport(&self) -> &'static str {
        self.transport
    }

    fn reference(&self, _command: &Command, tag: u32) -> Result<ReplyRef, CommandError> {
        Ok(ReplyRef::Tag(tag))
    }

    async fn deliver(&self, command: &Command, tag: u32) -> Result<ReplyRef, SinkError> {
        let payload = gateway_payload(command, tag).to_string().into_bytes();
        tokio::time::timeout(
            DELIVER_TIMEOUT,
            self.publisher.publish(&self.device_id, payload),
        )
        .await
        .map_err(|_| SinkError::Write(format!("not published within {DELIVER_TIMEOUT:?}")))?
        .map_err(SinkError::Write)?;
        Ok(ReplyRef::Tag(tag))
    }
}

/// The JSON a gateway transport (MQTT, `ewall/v1/devices/{imei}/commands`) publishes for
/// `command` numbered `tag`: `{"tag", "type", "text"?, "interval_s"?}`. The gateway answers
/// with [`gateway_answer`]'s shape, naming the same `tag`; its sink's
/// [`CommandSink::reference`] is then [`ReplyRef::Tag`].
pub fn gateway_payload(command: &Command, tag: u32) -> serde_json::Value {
    let mut payload = serde_json::json!({ "tag": tag, "type": command.kind().name() });
    match command {
        Command::Message { text } => payload["text"] = text.as_str().into(),
        Command::SetInterval { seconds } => payload["interval_s"] = (*seconds).into(),
        Command::Vibrate | Command::LocateNow => {}
    }
    payload
}

/// A gateway's answer to a command: `{"tag": N, "accepted": true|false, "text"?: "..."}`.
///
/// # Errors
/// A message saying what is wrong with the payload (for the gateway's errors topic).
pub fn gateway_answer(payload: &[u8]) -> Result<CommandReply, String> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Answer {
        tag: u32,
        accepted: bool,
        #[serde(default)]
        text: Option<String>,
    }
    let answer: Answer = serde_json::from_slice(payload)
        .map_err(|e| format!("not a command answer {{\"tag\", \"accepted\", \"text\"?}}: {e}"))?;
    Ok(CommandReply {
        reference: ReplyRef::Tag(answer.tag),
        accepted: answer.accepted,
        text: answer.text,
    })
}

/// What ingest tells the command dispatcher.
#[derive(Debug, Clone)]
pub enum LinkEvent {
    /// A device identified itself (and was answered) on a connection that takes commands.
    Connected {
        /// The device.
        device_id: String,
        /// The protocol it spoke.
        protocol: Protocol,
    },
    /// A device was heard on a transport that takes no commands (OsmAnd over HTTP).
    Seen {
        /// The device.
        device_id: String,
        /// The protocol it spoke.
        protocol: Protocol,
    },
    /// A device answered a command.
    Reply {
        /// The device.
        device_id: String,
        /// Its answer.
        reply: CommandReply,
        /// When it arrived.
        received_at: DateTime<Utc>,
    },
}

/// Device id → (registration number, sink).
type SinkMap = HashMap<String, (u64, Arc<dyn CommandSink>)>;

/// Live sinks by device id. A device that reconnects replaces its old entry; the old
/// connection's [`LinkGuard`] then leaves the new one alone.
#[derive(Default)]
pub struct Links {
    sinks: Mutex<SinkMap>,
    next_id: AtomicU64,
}

impl Links {
    fn lock(&self) -> MutexGuard<'_, SinkMap> {
        // Every change is one insert or remove, so a poisoned map is still whole.
        self.sinks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes `sink` the way to reach `device_id` until the returned guard is dropped.
    pub fn register(self: &Arc<Self>, device_id: &str, sink: Arc<dyn CommandSink>) -> LinkGuard {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(device_id.to_owned(), (id, sink));
        LinkGuard {
            links: self.clone(),
            device_id: device_id.to_owned(),
            id,
        }
    }

    /// The way to reach `device_id` now, if it is connected.
    pub fn get(&self, device_id: &str) -> Option<Arc<dyn CommandSink>> {
        self.lock().get(device_id).map(|(_, sink)| sink.clone())
    }

    /// How many devices are reachable.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no device is reachable.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Removes a registration when its connection ends.
pub struct LinkGuard {
    links: Arc<Links>,
    device_id: String,
    id: u64,
}

impl Drop for LinkGuard {
    fn drop(&mut self) {
        let mut sinks = self.links.lock();
        if sinks
            .get(&self.device_id)
            .is_some_and(|(id, _)| *id == self.id)
        {
            sinks.remove(&self.device_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(Protocol);

    #[async_trait]
    impl CommandSink for Fixed {
        fn transport(&self) -> &'static str {
            self.0.name()
        }
        fn reference(&self, _: &Command, tag: u32) -> Result<ReplyRef, CommandError> {
            Ok(ReplyRef::ServerFlag(tag))
        }
        async fn deliver(&self, _: &Command, tag: u32) -> Result<ReplyRef, SinkError> {
            Ok(ReplyRef::ServerFlag(tag))
        }
    }

    #[test]
    fn a_reconnect_replaces_the_link_and_the_old_guard_leaves_it() {
        let links = Arc::new(Links::default());
        let old = links.register("1", Arc::new(Fixed(Protocol::Gt06)));
        let new = links.register("1", Arc::new(Fixed(Protocol::Jt808)));
        drop(old);
        assert_eq!(links.get("1").map(|s| s.transport()), Some("jt808"));
        drop(new);
        assert!(links.get("1").is_none());
        assert!(links.is_empty());
    }

    struct Recorder(Mutex<Vec<(String, Vec<u8>)>>);

    #[async_trait]
    impl GatewayPublish for Recorder {
        async fn publish(&self, device_id: &str, payload: Vec<u8>) -> Result<(), String> {
            self.0.lock().unwrap().push((device_id.to_owned(), payload));
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_gateway_sink_publishes_the_json_and_expects_the_tag_back() {
        let recorder = Arc::new(Recorder(Mutex::new(Vec::new())));
        let sink = GatewaySink::new("mqtt", "860000000000001", recorder.clone());
        assert_eq!(
            sink.reference(&Command::Vibrate, 4).unwrap(),
            ReplyRef::Tag(4)
        );
        assert_eq!(
            sink.deliver(&Command::LocateNow, 4).await.unwrap(),
            ReplyRef::Tag(4)
        );
        let published = recorder.0.lock().unwrap().clone();
        assert_eq!(published.len(), 1);
        assert_eq!(published[0].0, "860000000000001");
        let json: serde_json::Value = serde_json::from_slice(&published[0].1).unwrap();
        assert_eq!(json, serde_json::json!({"tag": 4, "type": "locate_now"}));
    }

    #[test]
    fn gateway_payloads_and_answers() {
        assert_eq!(
            gateway_payload(
                &Command::Message {
                    text: "回家".into()
                },
                7
            ),
            serde_json::json!({"tag": 7, "type": "message", "text": "回家"})
        );
        assert_eq!(
            gateway_payload(&Command::SetInterval { seconds: 30 }, 8),
            serde_json::json!({"tag": 8, "type": "set_interval", "interval_s": 30})
        );
        let answer = gateway_answer(br#"{"tag": 7, "accepted": false, "text": "busy"}"#).unwrap();
        assert_eq!(answer.reference, ReplyRef::Tag(7));
        assert!(!answer.accepted);
        assert!(gateway_answer(br#"{"tag": -1, "accepted": true}"#).is_err());
        assert!(gateway_answer(b"ok").is_err());
    }

    #[tokio::test]
    async fn a_connection_sink_reports_a_closed_connection_as_gone() {
        let sink = ConnectionSink::new(Protocol::Gt06);
        sink.close();
        assert!(matches!(
            sink.deliver(&Command::LocateNow, 1).await,
            Err(SinkError::Gone)
        ));
    }

    #[tokio::test]
    async fn a_connection_sink_hands_commands_over_in_order_and_drops_the_rest_on_close() {
        let sink = Arc::new(ConnectionSink::new(Protocol::Gt06));
        let delivering: Vec<_> = (1..=3)
            .map(|tag| {
                let sink = sink.clone();
                tokio::spawn(async move { sink.deliver(&Command::LocateNow, tag).await })
            })
            .collect();
        // The task takes the first command queued and reports it written.
        let first = sink.next().await;
        first.written.send(Ok(ReplyRef::Tag(first.tag))).unwrap();
        let written: Vec<u32> = vec![first.tag];
        // The others are still queued when the connection ends.
        while sink.lock().commands.len() < 2 {
            tokio::task::yield_now().await;
        }
        sink.close();
        let mut outcomes = Vec::new();
        for task in delivering {
            outcomes.push(task.await.unwrap());
        }
        let ok: Vec<u32> = outcomes
            .iter()
            .filter_map(|o| match o {
                Ok(ReplyRef::Tag(tag)) => Some(*tag),
                _ => None,
            })
            .collect();
        assert_eq!(ok, written);
        assert_eq!(
            outcomes
                .iter()
                .filter(|o| matches!(o, Err(SinkError::Gone)))
                .count(),
            2
        );
    }

    #[tokio::test]
    async fn a_full_connection_sink_waits_for_room() {
        let sink = Arc::new(ConnectionSink::new(Protocol::Gt06));
        let delivering: Vec<_> = (0..OUTBOUND_QUEUE as u32 + 1)
            .map(|tag| {
                let sink = sink.clone();
                tokio::spawn(async move { sink.deliver(&Command::LocateNow, tag).await })
            })
            .collect();
        while sink.lock().commands.len() < OUTBOUND_QUEUE {
            tokio::task::yield_now().await;
        }
        // One more than the queue holds waits until the task takes one.
        for _ in 0..=OUTBOUND_QUEUE {
            let outbound = sink.next().await;
            outbound
                .written
                .send(Ok(ReplyRef::Tag(outbound.tag)))
                .unwrap();
        }
        for task in delivering {
            assert!(task.await.unwrap().is_ok());
        }
    }
}

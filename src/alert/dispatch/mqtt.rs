//! The alert topic: every alert event published at QoS 1 on
//! `{mqtt.topic_prefix}/alerts/{person_id}` (`ewall/v1/alerts/{person_id}` by default) as a
//! CloudEvents envelope, to the embedded broker or the external one.
//!
//! One connection, one batch at a time: the dispatcher publishes up to
//! [`BATCH_LIMIT`](super::BATCH_LIMIT) events, polls the connection until the broker has
//! PUBACKed every one of them, and only then moves its stored cursor to the batch's last `seq`.
//! Any connection error or a missing PUBACK abandons the connection and the batch; the next
//! connection starts again from the stored cursor. The broker may so see a message twice
//! (at-least-once, with the same CloudEvents `id`), never miss one.
//!
//! The police integration subscribes to this topic, so each alert carries only the fields
//! `integration.fields` allows (the operator's `note` is left out by default).

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event as MqttEvent, EventLoop, MqttOptions, Outgoing, Packet, QoS};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::BATCH_LIMIT;
use crate::alert::{cloud_event, select_fields, AlertOutbox, Backoff};
use crate::ingest::mqtt::MqttConfig;
use crate::model::Event;
use crate::store::Store;
use crate::telemetry::Metrics;

/// The dispatcher's cursor name in the store.
pub const CONSUMER: &str = "mqtt";
/// Longest wait for the PUBACKs of a batch before the connection is given up.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(10);

/// Where and how to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttAlertSettings {
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// Topic prefix; the person id is appended (`ewall/v1/alerts`).
    pub topic: String,
    /// MQTT client id.
    pub client_id: String,
    /// Longest wait for the PUBACKs of a batch ([`ACK_TIMEOUT`]).
    pub ack_timeout: Duration,
    /// Alert fields published (empty: all): the police integration subscribes to this topic,
    /// so it carries what `integration.fields` allows.
    pub fields: Vec<String>,
}

impl MqttAlertSettings {
    /// Settings for a broker URL (`mqtt://host:port` or `tcp://host:port`, port 1883 if left out).
    ///
    /// # Errors
    /// A message saying what is wrong with the URL.
    pub fn from_url(url: &str, topic: &str) -> Result<Self, String> {
        let rest = url
            .strip_prefix("mqtt://")
            .or_else(|| url.strip_prefix("tcp://"))
            .ok_or_else(|| format!("{url:?} is not mqtt://host:port"))?;
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) => (
                host,
                port.parse()
                    .map_err(|_| format!("{url:?}: port {port:?} is not a number"))?,
            ),
            None => (rest, 1883),
        };
        if host.is_empty() {
            return Err(format!("{url:?} has no host"));
        }
        Ok(MqttAlertSettings {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port,
            topic: topic.trim_end_matches('/').to_owned(),
            client_id: format!(
                "ewall-alerts-{}",
                &crate::model::new_id().simple().to_string()[..12]
            ),
            ack_timeout: ACK_TIMEOUT,
            fields: Vec::new(),
        })
    }

    /// Settings from the `[mqtt]` section: the external broker, or the embedded one at
    /// `embedded` (its bound address; a wildcard address is reached on the loopback), on
    /// `{topic_prefix}/alerts`.
    ///
    /// # Errors
    /// A message saying what is wrong with `mqtt.url`.
    pub fn from_config(config: &MqttConfig, embedded: SocketAddr) -> Result<Self, String> {
        let topic = format!("{}/alerts", config.topic_prefix);
        if config.is_embedded() {
            let host = match embedded.ip() {
                ip if ip.is_unspecified() && embedded.is_ipv4() => "127.0.0.1".to_owned(),
                ip if ip.is_unspecified() => "[::1]".to_owned(),
                IpAddr::V6(ip) => format!("[{ip}]"),
                IpAddr::V4(ip) => ip.to_string(),
            };
            MqttAlertSettings::from_url(&format!("mqtt://{host}:{}", embedded.port()), &topic)
        } else {
            MqttAlertSettings::from_url(&config.url, &topic)
        }
    }

    /// The topic an event is published on.
    pub fn topic_of(&self, event: &Event) -> String {
        format!("{}/{}", self.topic, event.person_id)
    }
}

/// Publishes alert events to the broker.
pub struct MqttDispatcher {
    settings: MqttAlertSettings,
    outbox: AlertOutbox,
    metrics: Arc<Metrics>,
}

/// Why a connection was given up.
#[derive(Debug, thiserror::Error)]
enum ConnectionLost {
    #[error("{0}")]
    Mqtt(#[from] rumqttc::ConnectionError),
    #[error("{0}")]
    Client(#[from] rumqttc::ClientError),
    #[error("no PUBACK within {0:?}")]
    AckTimeout(Duration),
    #[error("the connection's event loop ended")]
    Closed,
    #[error("stopping")]
    Stopped,
}

impl MqttDispatcher {
    /// A dispatcher publishing the alert events of `store`.
    pub fn new(settings: MqttAlertSettings, store: Arc<dyn Store>, metrics: Arc<Metrics>) -> Self {
        MqttDispatcher {
            settings,
            outbox: AlertOutbox::new(store, true)
                .with_lag_gauge(metrics.dispatch_lag.with_label_values(&[CONSUMER])),
            metrics,
        }
    }

    /// Connects to `addr` instead of the configured broker (the embedded broker, once bound).
    pub fn use_broker(&mut self, addr: SocketAddr) {
        let host = if addr.ip().is_unspecified() {
            if addr.is_ipv4() {
                IpAddr::from([127, 0, 0, 1])
            } else {
                IpAddr::from(std::net::Ipv6Addr::LOCALHOST)
            }
        } else {
            addr.ip()
        };
        self.settings.host = host.to_string();
        self.settings.port = addr.port();
    }

    /// Runs until `stop`: connects, publishes, reconnects with back-off after any failure.
    pub async fn run(mut self, stop: CancellationToken) {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
        let mut cursor = loop {
            match self.outbox.store().dispatch_cursor(CONSUMER).await {
                Ok(seq) => break seq,
                Err(e) => {
                    warn!(error = %e, "Cannot read the MQTT dispatcher's cursor; retrying.");
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(backoff.next_delay()) => {}
                    }
                }
            }
        };
        info!(host = %self.settings.host, port = self.settings.port, topic = %self.settings.topic, cursor, "Publishing alerts over MQTT.");
        while !stop.is_cancelled() {
            match self.connection(&mut cursor, &mut backoff, &stop).await {
                Err(ConnectionLost::Stopped) => break,
                Err(e) => {
                    self.metrics.delivery_failed("mqtt");
                    let delay = backoff.next_delay();
                    warn!(error = %e, ?delay, cursor, "MQTT alert connection lost; reconnecting.");
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
                Ok(()) => {}
            }
        }
        debug!("MQTT dispatcher stopped.");
    }

    /// One connection: publish batches until something fails. `cursor` moves as batches are
    /// acknowledged.
    async fn connection(
        &mut self,
        cursor: &mut i64,
        backoff: &mut Backoff,
        stop: &CancellationToken,
    ) -> Result<(), ConnectionLost> {
        let mut options = MqttOptions::new(
            self.settings.client_id.clone(),
            self.settings.host.clone(),
            self.settings.port,
        );
        options.set_keep_alive(Duration::from_secs(30));
        options.set_inflight(BATCH_LIMIT as u16);
        options.set_max_packet_size(1 << 20, 1 << 20);
        // Requests queue in the client before the event loop sends them; a whole batch fits.
        let (client, event_loop) = AsyncClient::new(options, BATCH_LIMIT as usize + 8);
        let mut events = Poller::spawn(event_loop);
        loop {
            match events.next(stop).await? {
                MqttEvent::Incoming(Packet::ConnAck(_)) => break,
                other => debug!(?other, "MQTT event before CONNACK."),
            }
        }
        backoff.reset();
        loop {
            let batch = tokio::select! {
                batch = self.outbox.next_batch(*cursor, BATCH_LIMIT, stop) => batch,
                // Between batches only pings and their answers come; a broken connection ends
                // this one.
                event = events.next(stop) => {
                    event?;
                    continue;
                }
            };
            let batch = match batch {
                Ok(Some(batch)) => batch,
                Ok(None) => {
                    events.close(client).await;
                    return Err(ConnectionLost::Stopped);
                }
                Err(e) => {
                    warn!(error = %e, "Cannot read the event feed; retrying.");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            let Some(last) = batch.last().map(|e| e.seq) else {
                continue;
            };
            for event in &batch {
                let data = select_fields(&event.data, &self.settings.fields);
                let payload = cloud_event(event, data).to_string();
                client
                    .publish(
                        self.settings.topic_of(event),
                        QoS::AtLeastOnce,
                        false,
                        payload,
                    )
                    .await?;
            }
            // Stopping does not cut a batch short: its PUBACKs are waited for (within the
            // timeout), so the cursor is stored for what the broker already has.
            events
                .await_pubacks(batch.len(), self.settings.ack_timeout)
                .await?;
            *cursor = last;
            self.metrics.delivered("mqtt", batch.len());
            self.metrics
                .events_delivered_at("mqtt", batch.iter().map(|e| e.seq));
            if let Err(e) = self
                .outbox
                .store()
                .set_dispatch_cursor(CONSUMER, last)
                .await
            {
                // The broker has the messages; a restart before the next successful write
                // repeats them, which at-least-once allows.
                warn!(error = %e, seq = last, "Cannot store the MQTT dispatcher's cursor.");
            }
        }
    }
}

/// Polls a connection's event loop in a task of its own and hands its events over a channel.
/// `EventLoop::poll` may be in the middle of writing a packet when it yields to a `select!`, so
/// it must never be dropped half-way; reading a channel can be.
struct Poller {
    events: mpsc::Receiver<Result<MqttEvent, rumqttc::ConnectionError>>,
    task: tokio::task::JoinHandle<()>,
}

impl Poller {
    fn spawn(mut event_loop: EventLoop) -> Poller {
        let (tx, events) = mpsc::channel(2 * BATCH_LIMIT as usize);
        let task = tokio::spawn(async move {
            loop {
                let event = event_loop.poll().await;
                let failed = event.is_err();
                if tx.send(event).await.is_err() || failed {
                    break;
                }
            }
        });
        Poller { events, task }
    }

    /// The next event of the connection; `Stopped` on `stop`.
    async fn next(&mut self, stop: &CancellationToken) -> Result<MqttEvent, ConnectionLost> {
        tokio::select! {
            _ = stop.cancelled() => Err(ConnectionLost::Stopped),
            event = self.events.recv() => match event {
                Some(event) => Ok(event?),
                None => Err(ConnectionLost::Closed),
            },
        }
    }

    /// Waits until `count` QoS 1 publishes have gone out and each has its PUBACK.
    async fn await_pubacks(
        &mut self,
        count: usize,
        timeout: Duration,
    ) -> Result<(), ConnectionLost> {
        let mut sent = 0;
        let mut unacked = HashSet::new();
        let deadline = tokio::time::Instant::now() + timeout;
        while sent < count || !unacked.is_empty() {
            let event = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .map_err(|_| ConnectionLost::AckTimeout(timeout))?
                .ok_or(ConnectionLost::Closed)??;
            match event {
                MqttEvent::Outgoing(Outgoing::Publish(pkid)) => {
                    sent += 1;
                    unacked.insert(pkid);
                }
                MqttEvent::Incoming(Packet::PubAck(ack)) => {
                    unacked.remove(&ack.pkid);
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Sends DISCONNECT and gives the event loop a moment to write it.
    async fn close(mut self, client: AsyncClient) {
        if client.disconnect().await.is_ok() {
            drop(client);
            let _ = tokio::time::timeout(Duration::from_secs(1), &mut self.task).await;
        }
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio::sync::mpsc;

    use super::*;
    use crate::model::{new_id, Alert, AlertKind, AlertState, Severity};
    use crate::store::sqlite::SqliteStore;

    /// A broker that speaks just enough MQTT 3.1.1 for one publisher: CONNACK, PINGRESP, and a
    /// PUBACK for each QoS 1 PUBLISH when `ack` is set. Each PUBLISH's topic and payload go to
    /// the returned channel.
    async fn fake_broker(ack: bool) -> (u16, mpsc::UnboundedReceiver<(String, Vec<u8>)>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    loop {
                        let mut first = [0u8; 1];
                        if socket.read_exact(&mut first).await.is_err() {
                            return;
                        }
                        // Remaining length: up to four 7-bit groups, low group first.
                        let (mut len, mut shift) = (0usize, 0);
                        loop {
                            let mut b = [0u8; 1];
                            socket.read_exact(&mut b).await.unwrap();
                            len |= usize::from(b[0] & 0x7f) << shift;
                            shift += 7;
                            if b[0] & 0x80 == 0 {
                                break;
                            }
                        }
                        let mut body = vec![0u8; len];
                        socket.read_exact(&mut body).await.unwrap();
                        let reply: Vec<u8> = match first[0] >> 4 {
                            1 => vec![0x20, 0x02, 0x00, 0x00], // CONNECT -> CONNACK accepted
                            3 => {
                                // PUBLISH at QoS 1: topic length, topic, packet id, payload.
                                let topic_len = usize::from(u16::from_be_bytes([body[0], body[1]]));
                                let topic =
                                    String::from_utf8(body[2..2 + topic_len].to_vec()).unwrap();
                                let pkid = [body[2 + topic_len], body[3 + topic_len]];
                                let _ = tx.send((topic, body[4 + topic_len..].to_vec()));
                                if ack {
                                    vec![0x40, 0x02, pkid[0], pkid[1]] // PUBACK
                                } else {
                                    Vec::new()
                                }
                            }
                            12 => vec![0xd0, 0x00], // PINGREQ -> PINGRESP
                            14 => return,           // DISCONNECT
                            _ => Vec::new(),
                        };
                        if !reply.is_empty() && socket.write_all(&reply).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (port, rx)
    }

    fn alert(person: crate::model::PersonId) -> Alert {
        Alert {
            id: new_id(),
            seq: 0,
            kind: AlertKind::Tamper,
            person_id: person,
            device_id: None,
            zone_id: None,
            severity: Severity::High,
            time: Utc::now(),
            raised_at: Utc::now(),
            position: None,
            state: AlertState::Open,
            late: false,
            note: None,
            disposition: None,
            acknowledged_at: None,
            verified_at: None,
            disposed_at: None,
            closed_at: None,
            repeat_of: None,
            border: None,
        }
    }

    #[tokio::test]
    async fn the_cursor_moves_only_once_the_broker_has_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("m.db").display());
        let store = SqliteStore::open(&url).await.unwrap();
        store.migrate().await.unwrap();
        let store: Arc<dyn Store> = Arc::new(store);
        let start = store.dispatch_cursor(CONSUMER).await.unwrap();
        let person = new_id();
        let stored = store
            .commit(&[], vec![alert(person), alert(person)])
            .await
            .unwrap();

        // A broker that never acknowledges: everything is published, nothing is passed over.
        let (port, mut published) = fake_broker(false).await;
        let mut settings =
            MqttAlertSettings::from_url(&format!("mqtt://127.0.0.1:{port}"), "t/alerts").unwrap();
        settings.ack_timeout = Duration::from_millis(200);
        let metrics = Arc::new(Metrics::new());
        let stop = CancellationToken::new();
        let task = tokio::spawn(
            MqttDispatcher::new(settings.clone(), store.clone(), metrics.clone()).run(stop.clone()),
        );
        for _ in 0..4 {
            // Both, then both again after the reconnect that the missing PUBACKs cause.
            tokio::time::timeout(Duration::from_secs(10), published.recv())
                .await
                .unwrap()
                .unwrap();
        }
        stop.cancel();
        task.await.unwrap();
        assert_eq!(store.dispatch_cursor(CONSUMER).await.unwrap(), start);
        assert!(metrics.delivery_failures.with_label_values(&["mqtt"]).get() >= 1);

        // A broker that acknowledges: the same events, in order, and the cursor follows.
        let (port, mut published) = fake_broker(true).await;
        settings.port = port;
        let stop = CancellationToken::new();
        let task = tokio::spawn(
            MqttDispatcher::new(settings, store.clone(), metrics.clone()).run(stop.clone()),
        );
        for expected in &stored {
            let (topic, payload) = tokio::time::timeout(Duration::from_secs(10), published.recv())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(topic, format!("t/alerts/{person}"));
            let envelope: serde_json::Value = serde_json::from_slice(&payload).unwrap();
            assert_eq!(envelope["id"], expected.id.to_string());
            assert_eq!(envelope["type"], "org.ewall.alert.tamper");
            assert_eq!(envelope["data"]["seq"], expected.seq);
        }
        let last = stored[1].seq;
        for _ in 0..100 {
            if store.dispatch_cursor(CONSUMER).await.unwrap() == last {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(store.dispatch_cursor(CONSUMER).await.unwrap(), last);
        assert_eq!(
            metrics.events_delivered.with_label_values(&["mqtt"]).get(),
            2
        );
        stop.cancel();
        task.await.unwrap();
    }

    #[test]
    fn broker_urls_parse() {
        let s = MqttAlertSettings::from_url("mqtt://127.0.0.1:1884", "ewall/v1/alerts/").unwrap();
        assert_eq!((s.host.as_str(), s.port), ("127.0.0.1", 1884));
        assert_eq!(s.topic, "ewall/v1/alerts");
        let s = MqttAlertSettings::from_url("tcp://broker", "a").unwrap();
        assert_eq!((s.host.as_str(), s.port), ("broker", 1883));
        assert!(MqttAlertSettings::from_url("http://x", "a").is_err());
        assert!(MqttAlertSettings::from_url("mqtt://x:port", "a").is_err());
        assert!(MqttAlertSettings::from_url("mqtt://:1883", "a").is_err());
    }
}

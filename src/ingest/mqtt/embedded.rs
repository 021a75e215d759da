//! The embedded broker: the MQTT endpoint gateways and subscribers connect to when
//! `mqtt.url = "embedded"`.
//!
//! A broker that answers a QoS 1 publish on receipt cannot promise what ewall's acknowledgement
//! means ("committed"), and rumqttd, like other broker crates, has no hook that holds a PUBACK
//! back. So the work is split:
//!
//! - **rumqttd** runs in the process, listening on a private loopback port, and does all the
//!   publish/subscribe: sessions, subscriptions, retained messages, QoS 1 delivery to
//!   subscribers (alerts on `{prefix}/alerts/{person_id}`, errors, commands).
//! - **This endpoint** listens on `mqtt.embedded_listen`. For each client connection it opens
//!   one connection to rumqttd and relays every packet both ways unchanged, with one exception:
//!   a PUBLISH on a positions topic is not relayed but handed to the pipeline, and its PUBACK
//!   (or PUBREC for QoS 2) is written to the client once the positions are committed. PUBACKs
//!   go out in the order the publishes came in, as MQTT requires.
//!
//! Packets are framed and parsed with rumqttc's MQTT 3.1.1 codec (`mqttbytes::v4`); relayed
//! packets are forwarded as the bytes that came in. An MQTT 5 CONNECT is answered with "refused:
//! unacceptable protocol version". Because rumqttd never sees the publishes answered here, the
//! endpoint pings rumqttd on the client's behalf while a client only publishes positions, so the
//! broker's keep-alive does not drop it; the PINGRESPs to those pings are not passed on.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes::v4::{
    ConnAck, ConnectReturnCode, Packet, PubAck, PubComp, PubRec, Publish,
};
use rumqttc::mqttbytes::{self, FixedHeader, PacketType, QoS};
use rumqttc::{AsyncClient, MqttOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, info_span, warn, Instrument};

use super::{answer_refusal, MqttConfig, MqttError, Outcome, Pending, PositionsHandler};

/// Largest MQTT packet accepted from a client or relayed. Above the position schema's own limit
/// (256 KiB), so an oversize positions payload is answered on the errors topic rather than
/// ending the connection.
pub const MAX_PACKET_BYTES: usize = 2 * 1024 * 1024;

/// How long a new connection has to send its CONNECT.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest a write to a client may take; a client that does not read is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Publishes of one connection waiting for their commit before the endpoint stops reading.
const PENDING_ACKS: usize = 1024;

/// Starts rumqttd on a free loopback port and returns that port once it accepts connections.
///
/// # Errors
/// [`MqttError::Broker`] when no port is free or the broker does not answer within five seconds.
pub async fn start_broker(config: &MqttConfig) -> Result<SocketAddr, MqttError> {
    // rumqttd binds the address itself and cannot report a port it chose, so one is picked
    // here: bound, read and released just before rumqttd binds it.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| MqttError::Broker(format!("no free loopback port: {e}")))?;
    let settings = serde_json::json!({
        "id": 0,
        "router": {
            "max_connections": config.max_connections + 16,
            "max_outgoing_packet_count": 200,
            "max_segment_size": 16 * 1024 * 1024,
            "max_segment_count": 4,
        },
        "v4": {
            "internal": {
                "name": "ewall-internal",
                "listen": addr.to_string(),
                "next_connection_delay_ms": 0,
                "connections": {
                    "connection_timeout_ms": 10_000,
                    "max_payload_size": MAX_PACKET_BYTES,
                    "max_inflight_count": 100,
                    "dynamic_filters": true,
                },
            },
        },
    });
    let broker_config: rumqttd::Config = serde_json::from_value(settings)
        .map_err(|e| MqttError::Broker(format!("broker settings: {e}")))?;
    std::thread::Builder::new()
        .name("mqtt-broker".into())
        .spawn(move || {
            // Runs for the life of the process; rumqttd has no stop, and ewall's endpoint, the
            // only way in from outside, stops with the service.
            if let Err(e) = rumqttd::Broker::new(broker_config).start() {
                tracing::error!(error = %e, "Embedded MQTT broker stopped.");
            }
        })
        .map_err(|e| MqttError::Broker(format!("cannot start its thread: {e}")))?;
    for _ in 0..100 {
        if TcpStream::connect(addr).await.is_ok() {
            return Ok(addr);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(MqttError::Broker(format!("no answer on {addr} within 5 s")))
}

/// An MQTT client of ewall's own, connected straight to rumqttd (refusals, commands).
pub fn internal_client(broker: SocketAddr, client_id: &str) -> (AsyncClient, rumqttc::EventLoop) {
    let mut options = MqttOptions::new(client_id, broker.ip().to_string(), broker.port());
    options.set_keep_alive(Duration::from_secs(30));
    options.set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES);
    AsyncClient::new(options, 256)
}

/// The endpoint on `mqtt.embedded_listen`.
pub struct EmbeddedEndpoint {
    listener: TcpListener,
    broker: SocketAddr,
    handler: Arc<PositionsHandler>,
    client: AsyncClient,
    max_connections: usize,
}

impl EmbeddedEndpoint {
    /// Binds the endpoint; `broker` is rumqttd's address from [`start_broker`], `client` the
    /// internal client refusals are published with.
    ///
    /// # Errors
    /// [`MqttError::Bind`] when the address cannot be bound.
    pub async fn bind(
        config: &MqttConfig,
        broker: SocketAddr,
        handler: Arc<PositionsHandler>,
        client: AsyncClient,
    ) -> Result<Self, MqttError> {
        let listener = TcpListener::bind(config.embedded_listen)
            .await
            .map_err(|source| MqttError::Bind {
                addr: config.embedded_listen,
                source,
            })?;
        Ok(EmbeddedEndpoint {
            listener,
            broker,
            handler,
            client,
            max_connections: config.max_connections,
        })
    }

    /// The address bound (port 0 resolved).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Accepts connections until `token` is cancelled. Each connection then stops reading,
    /// writes the acknowledgements of what it already handed to the pipeline, and closes.
    pub async fn run(self, token: CancellationToken, tracker: TaskTracker) {
        let slots = Arc::new(Semaphore::new(self.max_connections));
        let metrics = self.handler.context.metrics.clone();
        info!(listen = %self.local_addr(), "Listening for MQTT gateways and subscribers.");
        loop {
            let (stream, peer) = tokio::select! {
                _ = token.cancelled() => break,
                accepted = self.listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        warn!(error = %e, "MQTT accept failed.");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                metrics
                    .connections_refused
                    .with_label_values(&["json", "connection_cap"])
                    .inc();
                continue;
            };
            let connection = Connection {
                broker: self.broker,
                handler: self.handler.clone(),
                client: self.client.clone(),
                token: token.clone(),
            };
            tracker.spawn(
                async move {
                    let gauge = connection
                        .handler
                        .context
                        .metrics
                        .connections_open
                        .with_label_values(&["json"]);
                    gauge.inc();
                    match connection.serve(stream).await {
                        Ok(()) => debug!("MQTT connection closed."),
                        Err(reason) => debug!(%reason, "MQTT connection closed."),
                    }
                    gauge.dec();
                    drop(permit);
                }
                .instrument(info_span!("mqtt", %peer, client = tracing::field::Empty)),
            );
        }
        info!("MQTT endpoint stopped.");
    }
}

/// Why a relayed connection ended early.
#[derive(Debug, thiserror::Error)]
enum CloseReason {
    #[error("no CONNECT within {0:?}")]
    NoConnect(Duration),
    #[error("first packet is not a CONNECT")]
    NotConnect,
    #[error("MQTT 3.1.1 only; the client asked for another version")]
    Version,
    #[error("malformed packet: {0}")]
    Malformed(String),
    #[error("broker unreachable: {0}")]
    Broker(std::io::Error),
    #[error("network: {0}")]
    Io(#[from] std::io::Error),
}

/// One client connection and its relay to rumqttd.
struct Connection {
    broker: SocketAddr,
    handler: Arc<PositionsHandler>,
    client: AsyncClient,
    token: CancellationToken,
}

/// A positions publish waiting for its commit before it is acknowledged.
struct AwaitingAck {
    pkid: u16,
    qos: QoS,
    imei: String,
    pending: Pending,
}

/// Reads the next whole packet from `reader` into `buf`; `None` at a clean end of stream.
async fn read_packet(
    reader: &mut OwnedReadHalf,
    buf: &mut BytesMut,
) -> Result<Option<(FixedHeader, Bytes)>, CloseReason> {
    loop {
        match mqttbytes::check(buf.iter(), MAX_PACKET_BYTES) {
            Ok(header) => {
                let frame = buf.split_to(header.frame_length()).freeze();
                return Ok(Some((header, frame)));
            }
            Err(mqttbytes::Error::InsufficientBytes(more)) => buf.reserve(more.max(1024)),
            Err(e) => return Err(CloseReason::Malformed(e.to_string())),
        }
        if reader.read_buf(buf).await? == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(CloseReason::Malformed(
                    "stream ended inside a packet".into(),
                ))
            };
        }
    }
}

/// Length of a packet's fixed header: the type byte and one to four bytes of remaining length
/// (each with its top bit set when another follows).
fn fixed_header_len(frame: &[u8]) -> usize {
    1 + frame
        .iter()
        .skip(1)
        .take(4)
        .position(|b| b & 0x80 == 0)
        .map_or(4, |i| i + 1)
}

fn encode(packet: &Packet) -> Bytes {
    let mut out = BytesMut::new();
    // Acknowledgements are a few bytes, far below any size limit.
    let _ = packet.write(&mut out, MAX_PACKET_BYTES);
    out.freeze()
}

/// Writes whatever arrives on `rx` to the client, in order.
async fn write_to_client(mut writer: OwnedWriteHalf, mut rx: mpsc::Receiver<Bytes>) {
    while let Some(bytes) = rx.recv().await {
        match tokio::time::timeout(WRITE_TIMEOUT, writer.write_all(&bytes)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                debug!(error = %e, "MQTT client write failed.");
                break;
            }
            Err(_) => {
                debug!("MQTT client does not read; closing.");
                break;
            }
        }
    }
    let _ = writer.shutdown().await;
}

impl Connection {
    async fn serve(self, stream: TcpStream) -> Result<(), CloseReason> {
        let _ = stream.set_nodelay(true);
        let (mut client_rd, client_wr) = stream.into_split();
        let mut buf = BytesMut::with_capacity(4096);
        let (header, connect) = match tokio::time::timeout(
            CONNECT_TIMEOUT,
            read_packet(&mut client_rd, &mut buf),
        )
        .await
        {
            Err(_) => return Err(CloseReason::NoConnect(CONNECT_TIMEOUT)),
            Ok(Ok(Some(packet))) => packet,
            Ok(Ok(None)) => return Ok(()),
            Ok(Err(e)) => return Err(e),
        };
        if header.packet_type().ok() != Some(PacketType::Connect) || header.frame_length() < 9 {
            return Err(CloseReason::NotConnect);
        }
        // Protocol name "MQTT" and level 4 is 3.1.1; the codec would misread a level-5
        // CONNECT, so the level is checked on the bytes first.
        let variable = &connect[fixed_header_len(&connect)..];
        let is_v311 = variable.get(..7) == Some(&[0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04][..]);
        let parsed = if is_v311 {
            Packet::read(&mut BytesMut::from(&connect[..]), MAX_PACKET_BYTES)
        } else {
            Err(mqttbytes::Error::InvalidProtocol)
        };
        let keep_alive = match parsed {
            Ok(Packet::Connect(c)) => {
                tracing::Span::current().record("client", c.client_id.as_str());
                c.keep_alive
            }
            Ok(_) => return Err(CloseReason::NotConnect),
            Err(mqttbytes::Error::InvalidProtocol | mqttbytes::Error::InvalidProtocolLevel(_)) => {
                let mut writer = client_wr;
                let refused = encode(&Packet::ConnAck(ConnAck::new(
                    ConnectReturnCode::RefusedProtocolVersion,
                    false,
                )));
                let _ = writer.write_all(&refused).await;
                return Err(CloseReason::Version);
            }
            Err(e) => return Err(CloseReason::Malformed(e.to_string())),
        };
        let backend = TcpStream::connect(self.broker)
            .await
            .map_err(CloseReason::Broker)?;
        let _ = backend.set_nodelay(true);
        let (backend_rd, mut backend_wr) = backend.into_split();
        backend_wr.write_all(&connect).await?;

        let (to_client, client_rx) = mpsc::channel::<Bytes>(256);
        let writer = tokio::spawn(write_to_client(client_wr, client_rx));
        // PINGREQs this endpoint sent to the broker itself, whose PINGRESPs are not relayed.
        let own_pings = Arc::new(AtomicUsize::new(0));
        let closed = CancellationToken::new();
        let relay_back = tokio::spawn(relay_from_broker(
            backend_rd,
            to_client.clone(),
            own_pings.clone(),
            closed.clone(),
        ));
        let (awaiting_tx, awaiting_rx) = mpsc::channel::<AwaitingAck>(PENDING_ACKS);
        let acks = tokio::spawn(acknowledge(
            awaiting_rx,
            to_client.clone(),
            self.handler.clone(),
            self.client.clone(),
            closed.clone(),
        ));

        // Half the client's keep-alive: a client that only publishes positions still shows the
        // broker it is alive.
        let ping_every = Duration::from_secs(u64::from(keep_alive.max(2)) / 2);
        let mut last_to_broker = tokio::time::Instant::now();
        let mut ping = tokio::time::interval(ping_every);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // QoS 2 positions publishes answered here; their PUBREL is answered here too.
        let mut own_qos2: Vec<u16> = Vec::new();
        let result = loop {
            let next = tokio::select! {
                _ = self.token.cancelled() => break Ok(()),
                _ = closed.cancelled() => break Ok(()),
                _ = ping.tick() => {
                    if keep_alive > 0 && last_to_broker.elapsed() >= ping_every {
                        own_pings.fetch_add(1, Ordering::SeqCst);
                        if let Err(e) = backend_wr.write_all(&encode(&Packet::PingReq)).await {
                            break Err(CloseReason::Broker(e));
                        }
                        last_to_broker = tokio::time::Instant::now();
                    }
                    continue;
                }
                next = read_packet(&mut client_rd, &mut buf) => next,
            };
            let (header, frame) = match next {
                Ok(Some(packet)) => packet,
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            };
            match header.packet_type() {
                Ok(PacketType::Publish) => {
                    let publish = match Publish::read(header, frame.clone()) {
                        Ok(publish) => publish,
                        Err(e) => break Err(CloseReason::Malformed(e.to_string())),
                    };
                    if let Some(imei) = self.handler.topics().device_of_positions(&publish.topic) {
                        let imei = imei.to_owned();
                        let pending = self
                            .handler
                            .submit(&imei, &publish.topic, &publish.payload)
                            .await;
                        if publish.qos == QoS::ExactlyOnce {
                            own_qos2.push(publish.pkid);
                        }
                        let awaiting = AwaitingAck {
                            pkid: publish.pkid,
                            qos: publish.qos,
                            imei,
                            pending,
                        };
                        if awaiting_tx.send(awaiting).await.is_err() {
                            break Ok(());
                        }
                        continue;
                    }
                }
                Ok(PacketType::PubRel) => {
                    let pkid = frame
                        .get(2..4)
                        .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
                    if let Some(i) = own_qos2.iter().position(|p| *p == pkid) {
                        own_qos2.swap_remove(i);
                        if to_client
                            .send(encode(&Packet::PubComp(PubComp::new(pkid))))
                            .await
                            .is_err()
                        {
                            break Ok(());
                        }
                        continue;
                    }
                }
                _ => {}
            }
            if let Err(e) = backend_wr.write_all(&frame).await {
                break Err(CloseReason::Broker(e));
            }
            last_to_broker = tokio::time::Instant::now();
        };
        // What was handed to the pipeline is acknowledged before the connection closes.
        drop(awaiting_tx);
        let _ = acks.await;
        relay_back.abort();
        drop(to_client);
        let _ = writer.await;
        let _ = backend_wr.shutdown().await;
        result
    }
}

/// Relays the broker's packets to the client, less the PINGRESPs of the endpoint's own pings.
async fn relay_from_broker(
    mut backend: OwnedReadHalf,
    to_client: mpsc::Sender<Bytes>,
    own_pings: Arc<AtomicUsize>,
    closed: CancellationToken,
) {
    let mut buf = BytesMut::with_capacity(4096);
    loop {
        let (header, frame) = match read_packet(&mut backend, &mut buf).await {
            Ok(Some(packet)) => packet,
            Ok(None) => break,
            Err(e) => {
                debug!(reason = %e, "Broker side of an MQTT connection ended.");
                break;
            }
        };
        if header.packet_type().ok() == Some(PacketType::PingResp)
            && own_pings
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        {
            continue;
        }
        if to_client.send(frame).await.is_err() {
            break;
        }
    }
    closed.cancel();
}

/// Writes each positions publish's acknowledgement once it is committed, in arrival order.
async fn acknowledge(
    mut awaiting: mpsc::Receiver<AwaitingAck>,
    to_client: mpsc::Sender<Bytes>,
    handler: Arc<PositionsHandler>,
    client: AsyncClient,
    closed: CancellationToken,
) {
    while let Some(item) = awaiting.recv().await {
        match item.pending.outcome().await {
            Outcome::Committed => {}
            Outcome::Refused(refusal) => {
                answer_refusal(&client, handler.topics(), &item.imei, &refusal).await;
            }
            Outcome::NotCommitted(reason) => {
                // No acknowledgement. MQTT resends an unacknowledged publish only after a
                // reconnect, so the connection is closed to make the gateway resend now.
                warn!(device = item.imei.as_str(), %reason, "MQTT positions not committed; not acknowledged, closing so the gateway resends.");
                closed.cancel();
                break;
            }
        }
        let ack = match item.qos {
            QoS::AtMostOnce => continue,
            QoS::AtLeastOnce => Packet::PubAck(PubAck::new(item.pkid)),
            QoS::ExactlyOnce => Packet::PubRec(PubRec::new(item.pkid)),
        };
        if to_client.send(encode(&ack)).await.is_err() {
            break;
        }
    }
}

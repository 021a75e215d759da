//! An MQTT gateway and subscriber for the service tests. The gateway speaks MQTT 3.1.1 itself
//! (rumqttc's codec over a socket) so a test sees every PUBACK as it arrives and chooses its
//! packet ids; the subscriber is a plain rumqttc client.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::{SinkExt, StreamExt};
use rumqttc::mqttbytes::v4::{Codec, ConnAck, Connect, ConnectReturnCode, Packet, Publish};
use rumqttc::mqttbytes::QoS;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::codec::Framed;

/// Largest packet the test clients send or take.
const MAX_PACKET: usize = 4 * 1024 * 1024;

/// A gateway connection.
pub struct Gateway {
    framed: Framed<TcpStream, Codec>,
    next_pkid: u16,
}

impl Gateway {
    /// Connects with `client_id` and waits for an accepted CONNACK.
    pub async fn connect(addr: SocketAddr, client_id: &str, clean_session: bool) -> Gateway {
        Gateway::connect_with(addr, client_id, clean_session, 30).await
    }

    /// [`Gateway::connect`] with a keep-alive of `keep_alive_secs`.
    pub async fn connect_with(
        addr: SocketAddr,
        client_id: &str,
        clean_session: bool,
        keep_alive_secs: u16,
    ) -> Gateway {
        let stream = TcpStream::connect(addr).await.unwrap();
        let mut framed = Framed::new(
            stream,
            Codec {
                max_incoming_size: MAX_PACKET,
                max_outgoing_size: MAX_PACKET,
            },
        );
        let mut connect = Connect::new(client_id);
        connect.keep_alive = keep_alive_secs;
        connect.clean_session = clean_session;
        framed.send(Packet::Connect(connect)).await.unwrap();
        let mut gateway = Gateway {
            framed,
            next_pkid: 1,
        };
        match gateway.next_packet().await {
            Packet::ConnAck(ConnAck {
                code: ConnectReturnCode::Success,
                ..
            }) => gateway,
            other => panic!("expected an accepted CONNACK, got {other:?}"),
        }
    }

    /// Publishes without waiting; returns the packet id used (0 for QoS 0).
    pub async fn publish(&mut self, topic: &str, payload: impl Into<Vec<u8>>, qos: QoS) -> u16 {
        let mut publish = Publish::new(topic, qos, payload);
        if qos != QoS::AtMostOnce {
            publish.pkid = self.next_pkid;
            self.next_pkid = self.next_pkid.checked_add(1).unwrap_or(1);
        }
        let pkid = publish.pkid;
        self.framed.send(Packet::Publish(publish)).await.unwrap();
        pkid
    }

    /// The next packet from the server, failing after ten seconds.
    pub async fn next_packet(&mut self) -> Packet {
        tokio::time::timeout(Duration::from_secs(10), self.framed.next())
            .await
            .expect("a packet within 10 s")
            .expect("connection open")
            .expect("a well-formed packet")
    }

    /// The next packet, or `None` once the server has closed the connection (or it broke).
    pub async fn try_next_packet(&mut self) -> Option<Packet> {
        match tokio::time::timeout(Duration::from_secs(30), self.framed.next()).await {
            Ok(Some(Ok(packet))) => Some(packet),
            Ok(_) => None,
            Err(_) => panic!("no packet and no close within 30 s"),
        }
    }

    /// The packet id of the next PUBACK (other packets are skipped).
    pub async fn next_puback(&mut self) -> u16 {
        loop {
            if let Packet::PubAck(ack) = self.next_packet().await {
                return ack.pkid;
            }
        }
    }

    /// Publishes at QoS 1 and waits for its PUBACK.
    pub async fn publish_acked(&mut self, topic: &str, payload: impl Into<Vec<u8>>) {
        let pkid = self.publish(topic, payload, QoS::AtLeastOnce).await;
        assert_eq!(self.next_puback().await, pkid, "acks come in order");
    }

    /// Nothing arrives within `wait`.
    pub async fn quiet_for(&mut self, wait: Duration) -> bool {
        tokio::time::timeout(wait, self.framed.next())
            .await
            .is_err()
    }

    /// Sends raw bytes.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        use tokio::io::AsyncWriteExt;
        self.framed.get_mut().write_all(bytes).await.unwrap();
    }
}

/// Subscribes a rumqttc client to `filter` and returns the publishes it receives.
pub async fn subscriber(
    addr: SocketAddr,
    client_id: &str,
    filter: &str,
) -> mpsc::Receiver<rumqttc::Publish> {
    let mut options = rumqttc::MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
    options.set_max_packet_size(MAX_PACKET, MAX_PACKET);
    let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 64);
    client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
    let (tx, rx) = mpsc::channel(1024);
    let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let _client = client;
        let mut subscribed_tx = Some(subscribed_tx);
        loop {
            match eventloop.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_))) => {
                    if let Some(tx) = subscribed_tx.take() {
                        let _ = tx.send(());
                    }
                }
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                    if tx.send(p).await.is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), subscribed)
        .await
        .expect("SUBACK within 10 s")
        .expect("subscribed");
    rx
}

/// The next publish a subscriber receives, failing after ten seconds.
pub async fn next_publish(rx: &mut mpsc::Receiver<rumqttc::Publish>) -> rumqttc::Publish {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("a publish within 10 s")
        .expect("subscriber running")
}

/// One position object as a gateway would publish it.
pub fn position(time: DateTime<Utc>, lat: f64, lon: f64) -> String {
    format!(
        r#"{{"time": "{}", "lat": {lat}, "lon": {lon}, "accuracy_m": 10}}"#,
        time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    )
}

/// Stored positions of `device` at `time`, read straight from the service's SQLite file.
pub async fn stored_at(pool: &sqlx::SqlitePool, device: &str, time: DateTime<Utc>) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM positions WHERE device_id = ? AND time = ?")
        .bind(device)
        .bind(time.timestamp_micros())
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Stored positions of `device`.
pub async fn stored(pool: &sqlx::SqlitePool, device: &str) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM positions WHERE device_id = ?")
        .bind(device)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Distinct fix times stored for `device`.
pub async fn stored_distinct(pool: &sqlx::SqlitePool, device: &str) -> i64 {
    sqlx::query_scalar("SELECT COUNT(DISTINCT time) FROM positions WHERE device_id = ?")
        .bind(device)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// A read-only pool on the service's database in `data_dir`.
pub async fn read_store(data_dir: &std::path::Path) -> sqlx::SqlitePool {
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(data_dir.join("ewall.db"))
        .read_only(true);
    sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .unwrap()
}

/// The external broker of the CI services (`EWALL_TEST_MQTT_URL`) as its URL and address, or
/// `None` after saying the test is skipped.
pub async fn external_broker() -> Option<(String, SocketAddr)> {
    let Ok(url) = std::env::var("EWALL_TEST_MQTT_URL") else {
        eprintln!("skipped: EWALL_TEST_MQTT_URL is not set (e.g. mqtt://127.0.0.1:1883)");
        return None;
    };
    let rest = url
        .trim_start_matches("mqtt://")
        .trim_start_matches("tcp://");
    let addr = tokio::net::lookup_host(rest.trim_end_matches('/'))
        .await
        .unwrap()
        .next()
        .unwrap();
    Some((url, addr))
}

/// Publishes the position at `time` through an external broker until ewall has stored it: from
/// then on ewall's subscription is in place and the broker keeps every publish for it.
pub async fn await_subscription(
    gateway: &mut Gateway,
    topic: &str,
    store: &sqlx::SqlitePool,
    device: &str,
    time: DateTime<Utc>,
) {
    for _ in 0..100 {
        gateway
            .publish_acked(topic, position(time, 25.5, 112.36))
            .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        if stored_at(store, device, time).await > 0 {
            return;
        }
    }
    panic!("ewall never received a position from the broker");
}

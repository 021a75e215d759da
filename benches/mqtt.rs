//! MQTT positions acknowledged after commit: the whole service (embedded broker, endpoint,
//! pipeline, SQLite) in this process, one gateway connection keeping a window of QoS 1
//! publishes in flight. Each iteration publishes 1,000 positions (100 devices, 10 each) and
//! ends when the last PUBACK arrives, so the figure is positions committed and acknowledged
//! per second.
//!
//! The devices are registered in the store before the service starts; the gateway speaks
//! MQTT 3.1.1 with rumqttc's codec, as the service tests do.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use ewall::config::Config;
use ewall::model::SupervisionLevel;
use ewall::store::NewPerson;
use futures::{SinkExt, StreamExt};
use rumqttc::mqttbytes::v4::{Codec, Connect, Packet, Publish};
use rumqttc::mqttbytes::QoS;
use tokio::net::TcpStream;
use tokio::runtime::Runtime;
use tokio_util::codec::Framed;

const DEVICES: usize = 100;
const POSITIONS: usize = 1000;

fn imei(i: usize) -> String {
    format!("86471702{i:07}")
}

/// Starts the service on a fresh data directory with `DEVICES` registered devices.
async fn service(dir: &std::path::Path) -> ewall::server::Running {
    let mut config = Config {
        data_dir: dir.to_owned(),
        ..Config::default()
    };
    config.http.listen = "127.0.0.1:0".parse().expect("address");
    config.mqtt.embedded_listen = "127.0.0.1:0".parse().expect("address");
    for (_, listener) in [
        ("gt06", &mut config.listeners.gt06),
        ("jt808", &mut config.listeners.jt808),
        ("h02", &mut config.listeners.h02),
        ("watch", &mut config.listeners.watch),
        ("osmand", &mut config.listeners.osmand),
    ] {
        listener.enabled = false;
    }
    let store = ewall::store::open(&config.store_url())
        .await
        .expect("store opens");
    for i in 0..DEVICES {
        let person = store
            .create_person(NewPerson {
                name: format!("wearer {i}"),
                level: SupervisionLevel::Normal,
                timezone: "Asia/Shanghai".into(),
            })
            .await
            .expect("person");
        store
            .create_device(&imei(i), person.id)
            .await
            .expect("device");
    }
    drop(store);
    ewall::server::start(config).await.expect("service starts")
}

async fn connect(addr: std::net::SocketAddr) -> Framed<TcpStream, Codec> {
    let stream = TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let mut framed = Framed::new(
        stream,
        Codec {
            max_incoming_size: 1 << 20,
            max_outgoing_size: 1 << 20,
        },
    );
    framed
        .send(Packet::Connect(Connect::new("bench-gateway")))
        .await
        .expect("CONNECT");
    match framed.next().await {
        Some(Ok(Packet::ConnAck(_))) => framed,
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

/// Publishes `POSITIONS` positions, `per_publish` to a payload, `window` publishes in flight;
/// returns the time until the last PUBACK. `round` keeps fix times distinct across iterations.
async fn publish_all(
    gateway: &mut Framed<TcpStream, Codec>,
    window: usize,
    per_publish: usize,
    round: u64,
) -> Duration {
    let base = Utc.with_ymd_and_hms(2026, 11, 26, 0, 0, 0).unwrap()
        + chrono::Duration::seconds(round as i64 * POSITIONS as i64);
    let payloads: Vec<(String, String)> = (0..POSITIONS / per_publish)
        .map(|p| {
            let device = p % DEVICES;
            let items: Vec<String> = (0..per_publish)
                .map(|k| {
                    let t = base + chrono::Duration::seconds((p * per_publish + k) as i64);
                    format!(
                        r#"{{"time": "{}", "lat": 25.5, "lon": 112.36, "accuracy_m": 10}}"#,
                        t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    )
                })
                .collect();
            (
                format!("ewall/v1/devices/{}/positions", imei(device)),
                format!("[{}]", items.join(",")),
            )
        })
        .collect();
    let started = Instant::now();
    let mut in_flight = VecDeque::new();
    let mut next = 0;
    let mut pkid: u16 = 0;
    while next < payloads.len() || !in_flight.is_empty() {
        while next < payloads.len() && in_flight.len() < window {
            pkid = pkid % 60_000 + 1;
            let (topic, payload) = &payloads[next];
            let mut publish = Publish::new(topic.as_str(), QoS::AtLeastOnce, payload.as_bytes());
            publish.pkid = pkid;
            gateway
                .feed(Packet::Publish(publish))
                .await
                .expect("publish");
            in_flight.push_back(pkid);
            next += 1;
        }
        gateway.flush().await.expect("flush");
        match gateway.next().await {
            Some(Ok(Packet::PubAck(ack))) => {
                assert_eq!(Some(ack.pkid), in_flight.pop_front(), "acks in order");
            }
            other => panic!("expected PUBACK, got {other:?}"),
        }
    }
    started.elapsed()
}

fn acknowledged_after_commit(c: &mut Criterion) {
    let rt = Runtime::new().expect("a tokio runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let running = rt.block_on(service(dir.path()));
    let addr = running.listeners["mqtt"];
    let mut gateway = rt.block_on(connect(addr));
    let mut g = c.benchmark_group("MQTT positions acknowledged after commit, SQLite");
    g.sampling_mode(SamplingMode::Flat);
    g.sample_size(10);
    g.throughput(Throughput::Elements(POSITIONS as u64));
    let mut round = 0;
    for (window, per_publish) in [(1, 1), (10, 1), (100, 1), (10, 10)] {
        let name = format!(
            "one gateway, {window} publishes in flight, {per_publish} position(s) per publish"
        );
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    round += 1;
                    total += rt.block_on(publish_all(&mut gateway, window, per_publish, round));
                }
                total
            })
        });
    }
    g.finish();
    running.shutdown();
    rt.block_on(running.stopped());
}

criterion_group!(benches, acknowledged_after_commit);
criterion_main!(benches);

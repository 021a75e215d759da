//! Alert latency from commit to delivery on each channel: MQTT (PUBACKed publish seen by a
//! subscriber), SSE (event read by a client) and webhook (signed POST received).
//!
//! A program, not a criterion bench: it commits `ALERTS` alerts one at a time through the
//! store (`Store::commit`, as the store writer does), `PACE` apart so each is measured alone
//! rather than behind a backlog, and records for each channel the time from the commit's
//! return to the moment the consumer had the event. It prints p50, p99 and the maximum per
//! channel as JSON. MQTT needs a broker: `EWALL_TEST_MQTT_URL=mqtt://127.0.0.1:1883`; without
//! it the MQTT row is skipped.
//!
//! `cargo bench --bench alert_delivery`

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use chrono::Utc;
use ewall::alert::dispatch::mqtt::MqttAlertSettings;
use ewall::alert::dispatch::webhook::WebhookConfig;
use ewall::alert::dispatch::{DispatchSettings, Dispatchers};
use ewall::api::AppState;
use ewall::model::{new_id, Alert, AlertKind, AlertPosition, AlertState, Severity};
use ewall::registry::Registry;
use ewall::telemetry::Metrics;
use serde_json::{json, Value};

const ALERTS: usize = 300;
const PACE: Duration = Duration::from_millis(20);

/// When each event id reached a consumer.
type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;

async fn webhook_receiver(arrivals: Arrivals) -> String {
    async fn receive(
        State(arrivals): State<Arrivals>,
        headers: HeaderMap,
        _body: Bytes,
    ) -> StatusCode {
        let now = Instant::now();
        if let Some(id) = headers.get("webhook-id").and_then(|v| v.to_str().ok()) {
            arrivals.lock().unwrap().entry(id.to_owned()).or_insert(now);
        }
        StatusCode::NO_CONTENT
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(arrivals);
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/hook")
}

async fn sse_client(api: String, token: String, arrivals: Arrivals) {
    let mut response = reqwest::Client::new()
        .get(format!("{api}/api/v1/alerts/stream?after=0"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let mut buffer = String::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let now = Instant::now();
        buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            for line in block.lines() {
                if let Some(data) = line.strip_prefix("data:") {
                    let envelope: Value = serde_json::from_str(data.trim()).unwrap();
                    let id = envelope["id"].as_str().unwrap().to_owned();
                    arrivals.lock().unwrap().entry(id).or_insert(now);
                }
            }
        }
    }
}

async fn mqtt_watcher(settings: &MqttAlertSettings, arrivals: Arrivals) {
    let options = rumqttc::MqttOptions::new(
        format!("{}-bench", settings.client_id),
        settings.host.clone(),
        settings.port,
    );
    let (client, mut events) = rumqttc::AsyncClient::new(options, 16);
    client
        .subscribe(format!("{}/#", settings.topic), rumqttc::QoS::AtLeastOnce)
        .await
        .unwrap();
    let (ready_tx, ready) = tokio::sync::oneshot::channel();
    let mut ready_tx = Some(ready_tx);
    tokio::spawn(async move {
        let _client = client;
        while let Ok(event) = events.poll().await {
            match event {
                rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_)) => {
                    if let Some(tx) = ready_tx.take() {
                        let _ = tx.send(());
                    }
                }
                rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)) => {
                    let now = Instant::now();
                    let envelope: Value = serde_json::from_slice(&p.payload).unwrap();
                    let id = envelope["id"].as_str().unwrap().to_owned();
                    arrivals.lock().unwrap().entry(id).or_insert(now);
                }
                _ => {}
            }
        }
    });
    ready.await.unwrap();
}

fn alert(person: uuid::Uuid) -> Alert {
    Alert {
        id: new_id(),
        seq: 0,
        kind: AlertKind::ZoneExit,
        person_id: person,
        device_id: Some("864717003283581".into()),
        zone_id: Some(new_id()),
        severity: Severity::High,
        time: Utc::now(),
        raised_at: Utc::now(),
        position: Some(AlertPosition {
            lat: 25.53,
            lon: 112.36,
            accuracy_m: Some(10.0),
        }),
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

fn percentiles(mut micros: Vec<f64>) -> Value {
    micros.sort_by(f64::total_cmp);
    let at = |q: f64| micros[((micros.len() as f64 - 1.0) * q).round() as usize] / 1000.0;
    json!({
        "samples": micros.len(),
        "p50_ms": (at(0.50) * 100.0).round() / 100.0,
        "p99_ms": (at(0.99) * 100.0).round() / 100.0,
        "max_ms": (at(1.0) * 100.0).round() / 100.0,
    })
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let store = ewall::store::open(&format!("sqlite://{}", dir.path().join("b.db").display()))
        .await
        .unwrap();
    let metrics = Arc::new(Metrics::new());
    let channels = ["mqtt", "sse", "webhook"];
    let arrivals: HashMap<&str, Arrivals> =
        channels.iter().map(|c| (*c, Arrivals::default())).collect();

    let hook_url = webhook_receiver(arrivals["webhook"].clone()).await;
    let key = b"bench-receiver-key-of-32-bytes!!";
    let webhook = WebhookConfig {
        name: "bench".into(),
        url: hook_url,
        secret: format!(
            "whsec_{}",
            base64::engine::general_purpose::STANDARD.encode(key)
        ),
        kinds: Vec::new(),
        fields: Vec::new(),
        max_attempts: 3,
        timeout: Duration::from_secs(5),
        retry_initial: Duration::from_millis(50),
        retry_max: Duration::from_secs(1),
    };
    let mqtt = match std::env::var("EWALL_TEST_MQTT_URL") {
        Ok(url) => {
            let topic = format!("ewall-bench/{}/alerts", new_id().simple());
            let settings = MqttAlertSettings::from_url(&url, &topic).unwrap();
            mqtt_watcher(&settings, arrivals["mqtt"].clone()).await;
            Some(settings)
        }
        Err(_) => {
            eprintln!("MQTT skipped: EWALL_TEST_MQTT_URL is not set");
            None
        }
    };
    let settings = DispatchSettings {
        mqtt,
        webhooks: vec![webhook],
    };
    settings.claim_cursors(store.as_ref()).await.unwrap();
    let dispatchers = Dispatchers::spawn(settings, store.clone(), metrics.clone()).unwrap();

    let stop = tokio_util::sync::CancellationToken::new();
    let (_, token) =
        ewall::api::auth::create_token(store.as_ref(), ewall::store::Role::Admin, None)
            .await
            .unwrap();
    let state = AppState {
        store: store.clone(),
        registry: Arc::new(Registry::load(store.as_ref()).await.unwrap()),
        metrics: metrics.clone(),
        shutdown: stop.clone(),
        webhooks: Arc::from(vec!["bench".to_owned()]),
        integration: Arc::default(),
        notices: Default::default(),
        supervision: Default::default(),
        store_health: Arc::default(),
        live: Default::default(),
        console: Arc::default(),
        cluster: None,
        token_uses: Arc::new(ewall::api::auth::TokenUses::default()),
        commands: ewall::commands::CommandDispatcher::new(
            store.clone(),
            Arc::new(ewall::ingest::links::Links::default()),
            metrics.clone(),
        ),
        levels: Arc::default(),
        default_timezone: chrono_tz::Asia::Shanghai,
    };
    let api = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api_url = format!("http://{}", api.local_addr().unwrap());
    let server_stop = stop.clone();
    tokio::spawn(async move {
        axum::serve(
            api,
            ewall::api::router(state, &ewall::api::HttpConfig::default()),
        )
        .with_graceful_shutdown(server_stop.cancelled_owned())
        .await
    });
    tokio::spawn(sse_client(api_url, token, arrivals["sse"].clone()));
    tokio::time::sleep(Duration::from_millis(300)).await;

    let person = new_id();
    let mut committed = HashMap::new();
    for _ in 0..ALERTS {
        let stored = store.commit(&[], vec![alert(person)]).await.unwrap();
        committed.insert(stored[0].id.to_string(), Instant::now());
        tokio::time::sleep(PACE).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut report = serde_json::Map::new();
    for channel in channels {
        let got = arrivals[channel].lock().unwrap().clone();
        if got.is_empty() {
            continue;
        }
        let latencies: Vec<f64> = committed
            .iter()
            .filter_map(|(id, at)| {
                got.get(id)
                    .map(|t| t.duration_since(*at).as_micros() as f64)
            })
            .collect();
        assert_eq!(latencies.len(), ALERTS, "{channel}: every alert arrives");
        report.insert(channel.to_owned(), percentiles(latencies));
    }
    println!("{}", Value::Object(report));
    stop.cancel();
    dispatchers.stop().await;
}

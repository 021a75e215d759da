//! Shared set-up for the service tests: a real service on ephemeral ports with its own
//! temporary data directory, an admin token, and small helpers for the API and for devices.

#![allow(dead_code)]

pub mod binary;
pub mod gateway;
pub mod pg;
pub mod proxy;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ewall::config::Config;
use ewall::server::Running;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use pg::TestDatabase;

/// A running service and a client for its API.
pub struct Service {
    pub running: Option<Running>,
    pub dir: tempfile::TempDir,
    pub http: SocketAddr,
    pub admin_token: String,
    pub client: reqwest::Client,
    /// The PostgreSQL database the service runs on, if not the SQLite file under `dir`;
    /// dropped with the service.
    pub database: Option<TestDatabase>,
}

/// The database a test service runs on.
pub enum Backend {
    /// The embedded default, a file in the test's data directory.
    Sqlite,
    /// A fresh database on the `EWALL_TEST_PG_URL` server.
    Postgres(TestDatabase),
}

impl Backend {
    /// A fresh PostgreSQL database for `test`, or None (after one line saying why) when
    /// `EWALL_TEST_PG_URL` is not set.
    pub async fn postgres(test: &str) -> Option<Backend> {
        TestDatabase::create(test).await.map(Backend::Postgres)
    }
}

/// Points `config` at `database` with a pool small enough for many tests at once.
fn use_database(config: &mut Config, database: &Option<TestDatabase>) {
    if let Some(database) = database {
        config.store.url = database.url.clone();
        config.store.pool_max = 4;
    }
}

/// A configuration with every listener on `127.0.0.1:0` and the data under `dir`.
pub fn test_config(dir: &std::path::Path) -> Config {
    let mut config = Config {
        data_dir: dir.to_owned(),
        shutdown_timeout: Duration::from_secs(20),
        ..Config::default()
    };
    config.http.listen = "127.0.0.1:0".parse().unwrap();
    // The fixture frames carry the dates they were recorded or written on; a window of a
    // century keeps them plausible whenever the tests run (a test of the window sets its own).
    config.ingest.max_fix_age = Duration::from_secs(100 * 365 * 86_400);
    for listener in [
        &mut config.listeners.gt06,
        &mut config.listeners.jt808,
        &mut config.listeners.h02,
        &mut config.listeners.watch,
        &mut config.listeners.osmand,
    ] {
        listener.listen = "127.0.0.1:0".parse().unwrap();
    }
    // The embedded MQTT broker's default port is taken by the machine's own broker in CI.
    config.mqtt.embedded_listen = "127.0.0.1:0".parse().unwrap();
    // Tests that check the alert topic turn it on with a broker and a topic of their own.
    config.mqtt.publish_alerts = false;
    config
}

impl Service {
    /// Starts a service with the default test configuration.
    pub async fn start() -> Service {
        Service::start_with(|_| {}).await
    }

    /// Starts a service after `adjust` has changed the test configuration.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Service {
        Service::start_on_with(Backend::Sqlite, adjust).await
    }

    /// Starts a service with the default test configuration on `backend`.
    pub async fn start_on(backend: Backend) -> Service {
        Service::start_on_with(backend, |_| {}).await
    }

    /// Starts a service on `backend` after `adjust` has changed the test configuration.
    pub async fn start_on_with(backend: Backend, adjust: impl FnOnce(&mut Config)) -> Service {
        let dir = tempfile::tempdir().unwrap();
        let database = match backend {
            Backend::Sqlite => None,
            Backend::Postgres(database) => Some(database),
        };
        let mut config = test_config(dir.path());
        use_database(&mut config, &database);
        adjust(&mut config);
        let store = ewall::store::open_with(&config.store_url(), &config.store)
            .await
            .unwrap();
        let (_, admin_token) = ewall::api::auth::create_token(
            store.as_ref(),
            ewall::store::Role::Admin,
            Some("tests".into()),
        )
        .await
        .unwrap();
        drop(store);
        let running = ewall::server::start(config).await.unwrap();
        Service {
            http: running.http_addr,
            running: Some(running),
            dir,
            admin_token,
            client: reqwest::Client::new(),
            database,
        }
    }

    /// Stops the service and starts it again on the same data directory and database (new
    /// ports).
    pub async fn restart(&mut self) {
        self.restart_with(|_| {}).await;
    }

    /// Stops the service and starts it again on the same data directory (new ports), after
    /// `adjust` has changed the test configuration.
    pub async fn restart_with(&mut self, adjust: impl FnOnce(&mut Config)) {
        self.stop().await;
        let mut config = test_config(self.dir.path());
        use_database(&mut config, &self.database);
        adjust(&mut config);
        let running = ewall::server::start(config).await.unwrap();
        self.http = running.http_addr;
        self.running = Some(running);
    }

    pub fn running(&self) -> &Running {
        self.running.as_ref().expect("service running")
    }

    /// Address of a device listener.
    pub fn listener(&self, protocol: &str) -> SocketAddr {
        self.running().listeners[protocol]
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// Stops the service and waits until it has drained.
    pub async fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown();
            running.stopped().await;
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().to_owned()
    }

    /// An API call with the admin token; returns status and JSON body (Null when empty).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        self.call_as(&self.admin_token.clone(), method, path, body)
            .await
    }

    pub async fn call_as(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .client
            .request(method, self.url(path))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, value)
    }

    pub async fn post(&self, path: &str, body: Value) -> Value {
        let (status, value) = self.call(reqwest::Method::POST, path, Some(body)).await;
        assert!(
            status == 200 || status == 201,
            "POST {path}: {status} {value}"
        );
        value
    }

    pub async fn get(&self, path: &str) -> Value {
        let (status, value) = self.call(reqwest::Method::GET, path, None).await;
        assert_eq!(status, 200, "GET {path}: {value}");
        value
    }

    /// The value of one sample of `/metrics` (`name{labels}`), 0 when it is not there yet.
    pub async fn metric(&self, sample: &str) -> u64 {
        let text = self
            .client
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|line| line.strip_prefix(sample)?.strip_prefix(' '))
            .map_or(0, |v| v.trim().parse().unwrap())
    }

    /// Waits until the sample reaches `expected` and checks it did not go past it (each event
    /// is counted once).
    pub async fn expect_metric(&self, sample: &str, expected: u64) {
        let reached = eventually(|| async {
            let value = self.metric(sample).await;
            (value >= expected).then_some(value)
        })
        .await;
        assert_eq!(reached, expected, "{sample}");
    }

    /// Creates a token with `role` through the API.
    pub async fn token(&self, role: &str) -> String {
        let body = self.post("/api/v1/tokens", json!({ "role": role })).await;
        body["token"].as_str().unwrap().to_owned()
    }

    /// Creates a person, a device bound to them, and assigns the given zones.
    pub async fn person_with_device(&self, imei: &str, zone_ids: &[String]) -> String {
        let person = self
            .post(
                "/api/v1/persons",
                json!({"name": "Test Person", "level": "normal", "timezone": "Asia/Shanghai"}),
            )
            .await;
        let person_id = person["id"].as_str().unwrap().to_owned();
        self.post(
            "/api/v1/devices",
            json!({"imei": imei, "person_id": person_id}),
        )
        .await;
        let (status, body) = self
            .call(
                reqwest::Method::PUT,
                &format!("/api/v1/persons/{person_id}/zones"),
                Some(json!({ "zone_ids": zone_ids })),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        person_id
    }

    /// Creates a circle zone and returns its id.
    pub async fn circle_zone(
        &self,
        name: &str,
        kind: &str,
        lon: f64,
        lat: f64,
        radius_m: f64,
    ) -> String {
        let zone = self
            .post(
                "/api/v1/zones",
                json!({
                    "type": "Feature",
                    "geometry": {"type": "Point", "coordinates": [lon, lat]},
                    "properties": {"name": name, "kind": kind, "crs": "wgs84", "radius_m": radius_m}
                }),
            )
            .await;
        zone["id"].as_str().unwrap().to_owned()
    }

    /// All alerts of a person, in feed order.
    pub async fn alerts_of(&self, person_id: &str) -> Vec<Value> {
        let body = self
            .get(&format!("/api/v1/alerts?person_id={person_id}&limit=1000"))
            .await;
        body["alerts"].as_array().unwrap().clone()
    }

    /// A person's stored track features over all time.
    pub async fn track_of(&self, person_id: &str) -> Vec<Value> {
        let body = self
            .get(&format!(
                "/api/v1/persons/{person_id}/track?from=2000-01-01T00:00:00Z&to=2100-01-01T00:00:00Z"
            ))
            .await;
        body["features"].as_array().unwrap().clone()
    }
}

/// A device connection that writes frames and reads replies.
pub struct Device {
    pub stream: TcpStream,
}

impl Device {
    pub async fn connect(addr: SocketAddr) -> Device {
        Device {
            stream: TcpStream::connect(addr).await.unwrap(),
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Reads exactly `n` bytes, failing after five seconds.
    pub async fn read_exact(&mut self, n: usize) -> Vec<u8> {
        let mut buf = vec![0u8; n];
        tokio::time::timeout(Duration::from_secs(5), self.stream.read_exact(&mut buf))
            .await
            .expect("reply within 5 s")
            .expect("reply bytes");
        buf
    }

    /// Reads until `terminator` has been seen, failing after five seconds.
    pub async fn read_until(&mut self, terminator: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut byte = [0u8; 1];
        while !out.ends_with(terminator) {
            let n = tokio::time::timeout(Duration::from_secs(5), self.stream.read(&mut byte))
                .await
                .expect("reply within 5 s")
                .expect("read");
            assert!(n > 0, "connection closed after {out:02x?}");
            out.push(byte[0]);
        }
        out
    }

    /// Sends a frame and waits for a reply of `reply_len` bytes.
    pub async fn exchange(&mut self, frame: &[u8], reply_len: usize) -> Vec<u8> {
        self.send(frame).await;
        self.read_exact(reply_len).await
    }

    /// True when the server has closed the connection (within five seconds).
    pub async fn closed_by_server(&mut self) -> bool {
        let mut buf = [0u8; 64];
        matches!(
            tokio::time::timeout(Duration::from_secs(5), self.stream.read(&mut buf)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }
}

/// Hex to bytes, whitespace ignored.
pub fn hex(text: &str) -> Vec<u8> {
    let clean: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    ::hex::decode(clean).unwrap()
}

/// Polls `check` until it returns Some, for up to five seconds.
pub async fn eventually<T, F, Fut>(mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..100 {
        if let Some(v) = check().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("condition not met within 5 s");
}

/// A point `metres` north of (lon, lat).
pub fn north_of(lon: f64, lat: f64, metres: f64) -> (f64, f64) {
    (lon, lat + metres / 111_320.0)
}

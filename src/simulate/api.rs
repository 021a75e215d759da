//! The simulator's side of the HTTP API: registering the run's zone, persons and devices before
//! the devices connect (`--register`), and counting the alerts the run raises from the alert
//! stream (`GET /api/v1/alerts/stream`, server-sent events) while it runs.
//!
//! Registration uses the bulk route (`POST /api/v1/persons/bulk`), each request a thousand
//! wearers with their device and zone, a few requests at a time. The alert stream is opened before
//! the first fix is sent and starts from then (no `after`), so it counts this run's alerts and
//! no earlier ones. When the devices run in this process, each alert is also timed from the
//! sending of the fix that raised it ([`SentFixes`]) to its arrival on the stream.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::tally::Histogram;
use super::track::Zone;
use super::SimulateError;

/// Registration requests in flight at once: the store takes one write transaction at a time,
/// so more would only queue there.
pub const CONCURRENT_REQUESTS: usize = 2;

/// Wearers registered by one request: the most `POST /persons/bulk` takes.
pub const BULK_PERSONS: usize = crate::api::bulk_registration::MAX_PERSONS;

/// How long one API request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A client of one service's API.
#[derive(Clone)]
pub struct Api {
    client: reqwest::Client,
    /// `http://host:port/api/v1`.
    base: String,
    token: String,
}

impl Api {
    /// A client of the API at `url` (`http://host:port`, with or without `/api/v1`).
    ///
    /// # Errors
    /// [`SimulateError::Usage`] for a URL that is not http(s), [`SimulateError::Api`] when the
    /// client cannot be built.
    pub fn new(url: &str, token: &str) -> Result<Api, SimulateError> {
        let trimmed = url.trim_end_matches('/');
        if !(trimmed.starts_with("http://") || trimmed.starts_with("https://")) {
            return Err(SimulateError::Usage(format!(
                "--api {url:?} must be an http:// or https:// URL, like http://127.0.0.1:8080"
            )));
        }
        let root = trimmed.strip_suffix("/api/v1").unwrap_or(trimmed);
        crate::alert::dispatch::webhook::install_tls_provider();
        let client = reqwest::Client::builder()
            .connect_timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| SimulateError::Api(format!("building the HTTP client: {e}")))?;
        Ok(Api {
            client,
            base: format!("{root}/api/v1"),
            token: token.to_owned(),
        })
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> Result<Value, SimulateError> {
        let url = format!("{}{path}", self.base);
        let response = self
            .client
            .request(method.clone(), &url)
            .bearer_auth(&self.token)
            .timeout(REQUEST_TIMEOUT)
            .json(&body)
            .send()
            .await
            .map_err(|e| SimulateError::Api(format!("{method} {url}: {e}")))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| SimulateError::Api(format!("{method} {url}: {e}")))?;
        if !status.is_success() {
            // The problem document's detail says why (a duplicate IMEI, a bad token, ...).
            let detail = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v["detail"].as_str().map(str::to_owned))
                .unwrap_or(text);
            return Err(SimulateError::Api(format!(
                "{method} {url}: {status}: {detail}"
            )));
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Creates the run's zone (a circle, inclusion) and returns its id.
    ///
    /// # Errors
    /// [`SimulateError::Api`] when the service refuses it.
    pub async fn create_zone(&self, zone: &Zone, name: &str) -> Result<String, SimulateError> {
        let created = self
            .send(
                reqwest::Method::POST,
                "/zones",
                json!({
                    "type": "Feature",
                    "geometry": {"type": "Point", "coordinates": [zone.lon, zone.lat]},
                    "properties": {"name": name, "kind": "inclusion", "crs": "wgs84", "radius_m": zone.radius_m},
                }),
            )
            .await?;
        id_of(&created, "zone")
    }

    /// Registers one wearer per device of `ids` at `level`, each assigned `zone_id`, through
    /// `POST /persons/bulk`: [`BULK_PERSONS`] wearers a request, [`CONCURRENT_REQUESTS`]
    /// requests at a time; `done` is called with the number registered after each request.
    ///
    /// # Errors
    /// The first refusal (a device already registered, for one); the requests in flight
    /// finish first.
    pub async fn register_all(
        &self,
        ids: impl Iterator<Item = String>,
        level: &str,
        zone_id: &str,
        done: impl Fn(u64),
    ) -> Result<(), SimulateError> {
        let ids: Vec<String> = ids.collect();
        futures::stream::iter(ids.chunks(BULK_PERSONS).map(Ok))
            .try_for_each_concurrent(CONCURRENT_REQUESTS, |chunk| {
                let done = &done;
                async move {
                    let persons: Vec<Value> = chunk
                        .iter()
                        .map(|id| {
                            json!({
                                "name": format!("simulated wearer {id}"),
                                "level": level,
                                "timezone": "Asia/Shanghai",
                                "devices": [{"imei": id}],
                                "zone_ids": [zone_id],
                            })
                        })
                        .collect();
                    self.send(
                        reqwest::Method::POST,
                        "/persons/bulk",
                        json!({ "persons": persons }),
                    )
                    .await?;
                    done(chunk.len() as u64);
                    Ok(())
                }
            })
            .await
    }

    /// Opens the alert stream and counts what it delivers, until the returned watcher is
    /// finished.
    ///
    /// # Errors
    /// [`SimulateError::Api`] when the stream cannot be opened.
    pub async fn watch_alerts(
        &self,
        sent: Option<Arc<SentFixes>>,
    ) -> Result<AlertWatcher, SimulateError> {
        let url = format!("{}/alerts/stream", self.base);
        let response = self
            .client
            .get(&url)
            .bearer_auth(&self.token)
            .header("accept", "text/event-stream")
            .send()
            .await
            .map_err(|e| SimulateError::Api(format!("GET {url}: {e}")))?;
        if !response.status().is_success() {
            return Err(SimulateError::Api(format!(
                "GET {url}: {}",
                response.status()
            )));
        }
        let seen = Arc::new(Mutex::new(AlertsSeen {
            sent,
            ..AlertsSeen::default()
        }));
        let counts = seen.clone();
        let task = tokio::spawn(async move {
            let mut response = response;
            let mut parser = EventParser::default();
            while let Ok(Some(chunk)) = response.chunk().await {
                for event in parser.push(&chunk) {
                    // A poisoned lock means a panic elsewhere; counting stops with it.
                    let Ok(mut seen) = counts.lock() else { return };
                    seen.count(&event);
                }
            }
        });
        Ok(AlertWatcher { seen, task })
    }
}

fn id_of(created: &Value, what: &str) -> Result<String, SimulateError> {
    created["id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| SimulateError::Api(format!("the created {what} has no id: {created}")))
}

/// Sent fixes kept at most this long for an alert to be matched with.
const SENT_KEPT: Duration = Duration::from_secs(60);
/// The table is swept of fixes older than [`SENT_KEPT`] whenever it reaches this size.
const SENT_SWEEP_AT: usize = 1 << 16;

/// When the devices sent their fixes, by device and fix time (the frames carry whole seconds),
/// for timing each alert from the fix that raised it.
#[derive(Debug, Default)]
pub struct SentFixes {
    sent: Mutex<HashMap<(String, i64), Instant>>,
}

impl SentFixes {
    /// Records that `device` sent its fix of `time` at `at`.
    pub fn sent(&self, device: &str, time: DateTime<Utc>, at: Instant) {
        let Ok(mut sent) = self.sent.lock() else {
            return;
        };
        if sent.len() >= SENT_SWEEP_AT {
            sent.retain(|_, sent_at| sent_at.elapsed() < SENT_KEPT);
        }
        sent.insert((device.to_owned(), time.timestamp()), at);
    }

    /// When the fix that raised `alert` (an alert's JSON) was sent, if it was seen.
    fn raising(&self, alert: &Value) -> Option<Instant> {
        let device = alert["device_id"].as_str()?;
        let time: DateTime<Utc> = alert["time"].as_str()?.parse().ok()?;
        let mut sent = self.sent.lock().ok()?;
        sent.remove(&(device.to_owned(), time.timestamp()))
    }
}

/// Alerts counted from the stream.
#[derive(Debug, Default)]
struct AlertsSeen {
    by_kind: BTreeMap<String, u64>,
    last: Option<Instant>,
    sent: Option<Arc<SentFixes>>,
    /// From sending the fix to the alert's arrival, for the alerts whose fix was seen.
    latency: Histogram,
}

impl AlertsSeen {
    fn count(&mut self, event: &SseEvent) {
        if event.event != "alert.raised" {
            return;
        }
        let arrived = Instant::now();
        let envelope = serde_json::from_str::<Value>(&event.data).unwrap_or(Value::Null);
        let alert = &envelope["data"];
        let kind = alert["kind"].as_str().unwrap_or("unknown").to_owned();
        *self.by_kind.entry(kind).or_default() += 1;
        if let Some(sent_at) = self.sent.as_ref().and_then(|s| s.raising(alert)) {
            self.latency.record(arrived - sent_at);
        }
        self.last = Some(arrived);
    }
}

/// What the alert stream showed during a run.
#[derive(Debug, Default)]
pub struct AlertsCounted {
    /// Alerts raised, by kind.
    pub by_kind: BTreeMap<String, u64>,
    /// From sending a fix to the arrival of the alert it raised; empty when the fixes were
    /// sent by other processes.
    pub latency: Histogram,
}

/// The running alert count.
pub struct AlertWatcher {
    seen: Arc<Mutex<AlertsSeen>>,
    task: tokio::task::JoinHandle<()>,
}

impl AlertWatcher {
    /// Waits until no alert has arrived for `quiet` (at most `cap`), since the last fixes'
    /// alerts are delivered a moment after their commit; then stops and returns the counts by
    /// kind and their latencies.
    pub async fn finish(self, quiet: Duration, cap: Duration) -> AlertsCounted {
        let started = Instant::now();
        loop {
            let last = self.seen.lock().ok().and_then(|s| s.last);
            let since = last.map_or(started, |l| l.max(started));
            let now = Instant::now();
            if now >= since + quiet || now >= started + cap {
                break;
            }
            tokio::time::sleep((since + quiet).min(started + cap) - now).await;
        }
        self.task.abort();
        self.seen
            .lock()
            .map(|s| AlertsCounted {
                by_kind: s.by_kind.clone(),
                latency: s.latency.clone(),
            })
            .unwrap_or_default()
    }
}

/// One server-sent event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct SseEvent {
    event: String,
    data: String,
}

/// Cuts server-sent events out of the chunks of a response.
#[derive(Debug, Default)]
struct EventParser {
    buffer: String,
}

impl EventParser {
    fn push(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        self.buffer
            .push_str(&String::from_utf8_lossy(chunk).replace("\r\n", "\n"));
        let mut events = Vec::new();
        while let Some(end) = self.buffer.find("\n\n") {
            let block: String = self.buffer.drain(..end + 2).collect();
            let mut event = SseEvent::default();
            for line in block.lines() {
                if let Some(value) = line.strip_prefix("event:") {
                    event.event = value.trim_start().to_owned();
                } else if let Some(value) = line.strip_prefix("data:") {
                    if !event.data.is_empty() {
                        event.data.push('\n');
                    }
                    event
                        .data
                        .push_str(value.strip_prefix(' ').unwrap_or(value));
                }
            }
            // Keep-alive comments make blocks with neither.
            if !event.event.is_empty() || !event.data.is_empty() {
                events.push(event);
            }
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_cut_across_chunks_and_counted_by_alert_kind() {
        let mut parser = EventParser::default();
        let mut events =
            parser.push(b": keep-alive\n\nid: 3\nevent: alert.raised\ndata: {\"data\": {\"ki");
        assert!(events.is_empty());
        events.extend(
            parser.push(b"nd\": \"zone_exit\"}}\n\nid: 4\nevent: alert.acknowledged\ndata: {}\n\n"),
        );
        assert_eq!(events.len(), 2);
        let mut seen = AlertsSeen::default();
        for event in &events {
            seen.count(event);
        }
        assert_eq!(seen.by_kind, BTreeMap::from([("zone_exit".to_owned(), 1)]));
    }

    #[test]
    fn the_api_url_may_name_the_version() {
        let a = Api::new("http://127.0.0.1:8080/api/v1/", "t").unwrap();
        assert_eq!(a.base, "http://127.0.0.1:8080/api/v1");
        let b = Api::new("http://127.0.0.1:8080", "t").unwrap();
        assert_eq!(b.base, "http://127.0.0.1:8080/api/v1");
        assert!(matches!(
            Api::new("127.0.0.1:8080", "t"),
            Err(SimulateError::Usage(_))
        ));
    }
}

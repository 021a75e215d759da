//! MQTT ingest: positions from device gateways, published as JSON on
//! `{prefix}/devices/{imei}/positions` (the schema is `ewall_protocol::json`).
//!
//! A gateway's QoS 1 publish is acknowledged only once the positions it carried are committed,
//! as every other protocol's acknowledgement is. Two ways in, chosen by `mqtt.url`:
//!
//! - [`embedded`] (the default): ewall serves the MQTT endpoint itself. A real broker (rumqttd)
//!   runs in the process on a private loopback port and does the publish/subscribe; the
//!   endpoint relays every packet to it except publishes on a positions topic, which it answers
//!   itself, with the PUBACK written after the commit.
//! - [`external`]: ewall subscribes to an external broker (Mosquitto, EMQX) with a persistent
//!   session and QoS 1, and acknowledges each delivery after the commit, so what the broker
//!   holds while ewall is down is delivered when it returns.
//!
//! Both hand each publish to [`PositionsHandler`], which decodes it, refuses what cannot be used
//! (counted, logged once per device and minute, answered as problem JSON on
//! `{prefix}/devices/{imei}/errors`, and acknowledged so that it is not redelivered forever)
//! and submits the rest to the pipeline. [`commands::MqttCommands`] publishes downlink commands
//! to gateways; [`gateways::GatewayLinks`] makes each device heard over MQTT reachable for
//! commands, and [`PositionsHandler::command_reply`] turns a gateway's answer on
//! `{prefix}/devices/{imei}/commands/reply` into the command's acknowledgement or failure.
//!
//! Nothing here touches the fence engine or the store: positions go through the pipeline, and
//! coordinates a gateway sent in GCJ-02 are converted there.

pub mod commands;
pub mod embedded;
pub mod external;
pub mod gateways;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use ewall_protocol::{json, Protocol};
use rumqttc::{AsyncClient, QoS};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use commands::{CommandReply, MqttCommands};
use gateways::GatewayLinks;

use super::links::LinkEvent;
use super::{convert, IngestContext, Unstorable};
use crate::identity;
use crate::model::{CommitFailed, Crs, DeviceHeard, Submission};

/// The `[mqtt]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// Whether to take positions over MQTT at all.
    pub enabled: bool,
    /// `embedded`, or `mqtt://host:port` for an external broker.
    pub url: String,
    /// Where the embedded broker listens for gateways and subscribers.
    pub embedded_listen: SocketAddr,
    /// First topic levels of every ewall topic (`{prefix}/devices/{imei}/positions`).
    pub topic_prefix: String,
    /// Client id of ewall's session on an external broker. It must be the same on every
    /// start: the broker keeps the undelivered positions of this session while ewall is down.
    pub client_id: String,
    /// Most gateway connections open at once on the embedded broker.
    pub max_connections: usize,
    /// Publish every alert event on `{topic_prefix}/alerts/{person_id}` (QoS 1, CloudEvents).
    pub publish_alerts: bool,
    /// A device heard over MQTT takes commands on its commands topic until it has been silent
    /// this long; then its commands wait for its next publish.
    #[serde(with = "humantime_serde")]
    pub gateway_idle_timeout: Duration,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            enabled: true,
            url: "embedded".into(),
            embedded_listen: SocketAddr::from(([127, 0, 0, 1], 1883)),
            topic_prefix: "ewall/v1".into(),
            client_id: "ewall".into(),
            max_connections: 10_000,
            publish_alerts: true,
            gateway_idle_timeout: Duration::from_secs(600),
        }
    }
}

impl MqttConfig {
    /// Whether the embedded broker is used.
    pub fn is_embedded(&self) -> bool {
        self.url == "embedded"
    }

    /// `host:port` of an external broker.
    ///
    /// # Errors
    /// A message when the URL is neither `embedded` nor `mqtt://host:port`.
    pub fn external_address(&self) -> Result<(String, u16), String> {
        let rest = self
            .url
            .strip_prefix("mqtt://")
            .or_else(|| self.url.strip_prefix("tcp://"))
            .ok_or_else(|| {
                format!(
                    "{:?} is neither \"embedded\" nor mqtt://host:port",
                    self.url
                )
            })?;
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) => (
                host,
                port.parse::<u16>()
                    .map_err(|_| format!("{port:?} in {:?} is not a port number", self.url))?,
            ),
            None => (rest, 1883),
        };
        if host.is_empty() {
            return Err(format!("{:?} names no host", self.url));
        }
        Ok((host.to_owned(), port))
    }

    /// Checks the values; an error names the key (relative to the section) and the problem.
    ///
    /// # Errors
    /// `(key, problem)` for the first bad value.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if !self.is_embedded() {
            self.external_address().map_err(|e| ("url", e))?;
        }
        let prefix = &self.topic_prefix;
        if prefix.is_empty()
            || prefix.starts_with('/')
            || prefix.ends_with('/')
            || prefix.contains(['+', '#'])
        {
            return Err((
                "topic_prefix",
                format!("{prefix:?} must be topic levels like \"ewall/v1\", without wildcards or a leading or trailing slash"),
            ));
        }
        if self.client_id.is_empty() || self.client_id.len() > 23 {
            return Err((
                "client_id",
                "must be 1 to 23 characters (the MQTT 3.1.1 limit every broker accepts)".into(),
            ));
        }
        if self.max_connections == 0 {
            return Err(("max_connections", "must be at least 1".into()));
        }
        if self.gateway_idle_timeout.is_zero() {
            return Err(("gateway_idle_timeout", "must be longer than zero".into()));
        }
        Ok(())
    }
}

/// The topics under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    prefix: String,
}

impl Topics {
    /// Topics under `prefix` (`ewall/v1`).
    pub fn new(prefix: &str) -> Self {
        Topics {
            prefix: prefix.trim_end_matches('/').to_owned(),
        }
    }

    /// The subscription that matches every device's positions.
    pub fn positions_filter(&self) -> String {
        format!("{}/devices/+/positions", self.prefix)
    }

    /// The IMEI of a positions topic, or `None` for any other topic.
    pub fn device_of_positions<'a>(&self, topic: &'a str) -> Option<&'a str> {
        let imei = topic
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix("/devices/")?
            .strip_suffix("/positions")?;
        (!imei.is_empty() && !imei.contains('/')).then_some(imei)
    }

    /// Where refusals of a device's publishes are answered.
    pub fn errors(&self, imei: &str) -> String {
        format!("{}/devices/{imei}/errors", self.prefix)
    }

    /// Where commands to a device are published.
    pub fn commands(&self, imei: &str) -> String {
        format!("{}/devices/{imei}/commands", self.prefix)
    }

    /// The subscription that matches every device's command replies.
    pub fn command_replies_filter(&self) -> String {
        format!("{}/devices/+/commands/reply", self.prefix)
    }

    /// The IMEI of a command-reply topic, or `None` for any other topic.
    pub fn device_of_command_reply<'a>(&self, topic: &'a str) -> Option<&'a str> {
        let imei = topic
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix("/devices/")?
            .strip_suffix("/commands/reply")?;
        (!imei.is_empty() && !imei.contains('/')).then_some(imei)
    }
}

/// A refused publish, answered on the device's errors topic as RFC 9457 problem details.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Refusal {
    /// A URI naming the problem type.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Short summary.
    pub title: &'static str,
    /// The HTTP status with the same meaning (400, 404, 413).
    pub status: u16,
    /// What was wrong with this publish and what to do.
    pub detail: String,
    /// The topic the refused publish came on.
    pub instance: String,
    /// The metric label of the reason (`not_json`, `invalid_field`, `too_large`,
    /// `unknown_device`).
    #[serde(skip)]
    pub reason: &'static str,
}

impl Refusal {
    fn payload(error: &ewall_protocol::DecodeError, topic: &str) -> Self {
        let reason = json::reason_label(error);
        let (kind, title, status) = match reason {
            "not_json" => ("urn:ewall:problem:not-json", "Payload is not JSON", 400),
            "too_large" => ("urn:ewall:problem:too-large", "Payload too large", 413),
            _ => (
                "urn:ewall:problem:invalid-position",
                "Payload does not follow the position schema",
                400,
            ),
        };
        Refusal {
            kind,
            title,
            status,
            detail: error.to_string(),
            instance: topic.to_owned(),
            reason,
        }
    }

    fn unstorable(error: &Unstorable, topic: &str) -> Self {
        Refusal {
            kind: "urn:ewall:problem:invalid-position",
            title: "Payload does not follow the position schema",
            status: 400,
            detail: error.to_string(),
            instance: topic.to_owned(),
            reason: "unstorable_position",
        }
    }

    fn command_reply(detail: String, topic: &str) -> Self {
        Refusal {
            kind: "urn:ewall:problem:invalid-command-reply",
            title: "Payload is not a command answer",
            status: 400,
            detail,
            instance: topic.to_owned(),
            reason: "invalid_reply",
        }
    }

    fn unknown_device(imei: &str, topic: &str) -> Self {
        Refusal {
            kind: "urn:ewall:problem:unknown-device",
            title: "Device is not registered",
            status: 404,
            detail: format!(
                "device {imei} is not registered; register it with POST /api/v1/devices"
            ),
            instance: topic.to_owned(),
            reason: "unknown_device",
        }
    }

    /// The problem JSON.
    pub fn to_json(&self) -> Vec<u8> {
        // A struct of strings and a number always serialises.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// What became of one positions publish.
#[derive(Debug)]
pub enum Outcome {
    /// Stored: acknowledge.
    Committed,
    /// Refused: answer on the errors topic, then acknowledge (redelivery cannot help).
    Refused(Refusal),
    /// Not stored (the store failed, or ewall is stopping): do not acknowledge, so the gateway
    /// or the broker sends it again.
    NotCommitted(String),
}

/// A publish handed to the pipeline, waiting for its commit.
pub enum Pending {
    /// Decided already (refused, or nothing to store).
    Ready(Outcome),
    /// Submitted; each receiver is told when its part is committed.
    Submitted(Vec<oneshot::Receiver<Result<(), CommitFailed>>>),
}

impl Pending {
    /// Waits for the commit.
    pub async fn outcome(self) -> Outcome {
        match self {
            Pending::Ready(outcome) => outcome,
            Pending::Submitted(notices) => {
                for notice in notices {
                    match notice.await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => return Outcome::NotCommitted(e.to_string()),
                        Err(_) => return Outcome::NotCommitted("pipeline closed".into()),
                    }
                }
                Outcome::Committed
            }
        }
    }
}

/// How long a device's refusals stay quiet after one is logged.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// Most devices whose last logged refusal is remembered.
const REFUSALS_REMEMBERED: usize = 10_000;

/// Decodes positions publishes and submits them; shared by the embedded endpoint and the
/// external subscriber.
pub struct PositionsHandler {
    context: Arc<IngestContext>,
    topics: Topics,
    /// Devices heard here, reachable for commands; `None` when commands are off.
    gateways: Option<Arc<GatewayLinks>>,
    /// Last time a refusal was logged per device, so each device is logged once a minute.
    refusals_logged: Mutex<HashMap<String, Instant>>,
}

impl PositionsHandler {
    /// A handler feeding the pipeline of `context`.
    pub fn new(context: Arc<IngestContext>, topics: Topics) -> Self {
        PositionsHandler {
            context,
            topics,
            gateways: None,
            refusals_logged: Mutex::new(HashMap::new()),
        }
    }

    /// Makes every device heard here reachable for commands through `gateways` (when the
    /// context reports links to a command dispatcher).
    #[must_use]
    pub fn with_gateways(mut self, gateways: Arc<GatewayLinks>) -> Self {
        if self.context.link_events.is_some() {
            self.gateways = Some(gateways);
        }
        self
    }

    /// Notes that a registered device was heard under the topic id `topic_id`; a device that
    /// was not reachable before has its queued commands sent.
    async fn heard(&self, device: &str, topic_id: &str) {
        let Some(gateways) = &self.gateways else {
            return;
        };
        if gateways.heard(device, topic_id, tokio::time::Instant::now()) {
            self.context
                .report(LinkEvent::Connected {
                    device_id: device.to_owned(),
                    protocol: Protocol::Json,
                })
                .await;
        }
    }

    /// Takes a gateway's answer to a command, published on the device's command-reply topic:
    /// `{"tag", "accepted", "text"?}` naming the command's tag. A payload of another shape, or
    /// an answer for a device not registered, is refused (counted, logged once per device and
    /// minute, returned to be answered on the errors topic).
    pub async fn command_reply(
        &self,
        topic_id: &str,
        topic: &str,
        payload: &[u8],
    ) -> Option<Refusal> {
        let protocol = Protocol::Json;
        let reply = match crate::ingest::links::gateway_answer(payload) {
            Ok(reply) => reply,
            Err(e) => {
                let refusal = Refusal::command_reply(e, topic);
                self.context.count_rejected(protocol, refusal.reason);
                self.log_refusal(topic_id, &refusal);
                return Some(refusal);
            }
        };
        if self.context.authorize(protocol, topic_id, "mqtt").is_none() {
            return Some(Refusal::unknown_device(topic_id, topic));
        }
        let device = identity::normalise(topic_id);
        self.heard(device.as_ref(), topic_id).await;
        self.context
            .report(LinkEvent::Reply {
                device_id: device.into_owned(),
                reply,
                received_at: Utc::now(),
            })
            .await;
        None
    }

    /// The topics it answers on.
    pub fn topics(&self) -> &Topics {
        &self.topics
    }

    /// Decodes one publish on a positions topic of `imei` and hands it to the pipeline. Returns
    /// once the pipeline has taken it (waiting here is the back-pressure a full pipeline puts
    /// on a gateway); the commit is awaited on the returned [`Pending`], so that a connection
    /// can read on while earlier publishes commit.
    pub async fn submit(&self, imei: &str, topic: &str, payload: &bytes::Bytes) -> Pending {
        let protocol = Protocol::Json;
        let reports = match json::decode(payload) {
            Ok(reports) => reports,
            Err(e) => {
                let refusal = Refusal::payload(&e, topic);
                self.context.count_rejected(protocol, refusal.reason);
                self.log_refusal(imei, &refusal);
                return Pending::Ready(Outcome::Refused(refusal));
            }
        };
        let Some(person_id) = self.context.authorize(protocol, imei, "mqtt") else {
            return Pending::Ready(Outcome::Refused(Refusal::unknown_device(imei, topic)));
        };
        let topic_id = imei;
        self.context
            .metrics
            .frames_decoded
            .with_label_values(&[protocol.name()])
            .inc();
        let received_at = Utc::now();
        // The id in the registered form, so that the fixes name the device as the registry does.
        let imei = identity::normalise(imei);
        let imei = imei.as_ref();
        self.heard(imei, topic_id).await;
        // Consecutive positions in the same datum travel together; the pipeline converts a
        // submission's coordinates to WGS-84 as a whole. Every run is converted (and screened
        // for plausibility) before any is submitted, so a refused publish leaves nothing behind.
        let mut runs = Vec::new();
        let mut start = 0;
        while start < reports.len() {
            let crs = reports[start].crs;
            let end = reports[start..]
                .iter()
                .position(|r| r.crs != crs)
                .map_or(reports.len(), |n| start + n);
            let mut messages: Vec<_> = reports[start..end]
                .iter()
                .map(|r| r.message.clone())
                .collect();
            for message in &mut messages {
                message.device_id = Some(imei.to_owned());
            }
            start = end;
            let converted = convert(
                protocol,
                imei,
                person_id,
                &messages,
                false,
                received_at,
                self.context.rules(),
            );
            match converted {
                Ok(run) => runs.push((run, crs)),
                Err(e) => {
                    let refusal = Refusal::unstorable(&e, topic);
                    self.context.count_rejected(protocol, refusal.reason);
                    self.log_refusal(imei, &refusal);
                    return Pending::Ready(Outcome::Refused(refusal));
                }
            }
        }
        let mut notices = Vec::new();
        for ((mut fixes, alarms, faults), crs) in runs {
            self.context.count_faults(protocol, &faults);
            // The publish is the frame: every fix of it keeps the payload (shared) as evidence.
            for fix in &mut fixes {
                fix.raw = payload.clone();
            }
            self.context
                .metrics
                .fixes_received
                .with_label_values(&[protocol.name()])
                .inc_by(fixes.len() as u64);
            let (done, committed) = oneshot::channel();
            let heard = fixes.first().map(|f| DeviceHeard {
                device_id: f.device_id.clone(),
                person_id,
                received_at: f.received_at,
            });
            let submission = Submission {
                person_id,
                heard,
                fixes,
                alarms,
                wifi: Vec::new(),
                crs: match crs {
                    json::Crs::Wgs84 => Crs::Wgs84,
                    json::Crs::Gcj02 => Crs::Gcj02,
                },
                done: Some(done),
            };
            if self.context.enter(protocol, submission).await.is_err() {
                return Pending::Ready(Outcome::NotCommitted("pipeline closed".into()));
            }
            notices.push(committed);
        }
        Pending::Submitted(notices)
    }

    /// Logs a refusal at warn level once per device and minute, at debug level otherwise.
    fn log_refusal(&self, imei: &str, refusal: &Refusal) {
        let now = Instant::now();
        let loud = {
            let mut logged = self
                .refusals_logged
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if logged.len() >= REFUSALS_REMEMBERED {
                logged.retain(|_, at| now.duration_since(*at) < REFUSAL_LOG_INTERVAL);
            }
            match logged.get(imei) {
                Some(at) if now.duration_since(*at) < REFUSAL_LOG_INTERVAL => false,
                _ => {
                    logged.insert(imei.to_owned(), now);
                    true
                }
            }
        };
        if loud {
            warn!(
                device = imei,
                reason = refusal.reason,
                detail = refusal.detail.as_str(),
                "MQTT positions refused; answered on the errors topic. Further refusals of this device are logged at debug level for a minute."
            );
        } else {
            debug!(
                device = imei,
                reason = refusal.reason,
                detail = refusal.detail.as_str(),
                "MQTT positions refused."
            );
        }
    }
}

/// Publishes a refusal on the device's errors topic. QoS 1 so a gateway that subscribed with a
/// persistent session sees it after a reconnect; not retained, since it describes one publish.
async fn answer_refusal(client: &AsyncClient, topics: &Topics, imei: &str, refusal: &Refusal) {
    if let Err(e) = client
        .publish(
            topics.errors(imei),
            QoS::AtLeastOnce,
            false,
            refusal.to_json(),
        )
        .await
    {
        warn!(device = imei, error = %e, "Refusal could not be published on the errors topic.");
    }
}

/// Running MQTT ingest.
pub struct MqttIngest {
    /// Where the embedded endpoint listens (`None` with an external broker).
    pub listen: Option<SocketAddr>,
    /// Downlink commands to gateways.
    pub commands: MqttCommands,
    /// Ends once ingest has stopped and acknowledged what it committed.
    pub task: tokio::task::JoinHandle<()>,
}

/// Starts MQTT ingest as configured: the embedded broker and its endpoint, or a subscriber of
/// the external broker. It stops taking positions when `token` is cancelled; `task` ends once
/// the publishes already handed to the pipeline are acknowledged.
///
/// # Errors
/// [`MqttError`] when the broker or the endpoint cannot start.
pub async fn start(
    config: &MqttConfig,
    context: Arc<IngestContext>,
    token: CancellationToken,
) -> Result<MqttIngest, MqttError> {
    let topics = Topics::new(&config.topic_prefix);
    let (replies, _) = broadcast::channel(commands::REPLY_CAPACITY);
    let gateways_for = |commands: &MqttCommands| {
        Arc::new(GatewayLinks::new(
            context.links.clone(),
            Arc::new(commands.clone()),
            config.gateway_idle_timeout,
        ))
    };
    if !config.is_embedded() {
        let subscriber = external::ExternalSubscriber::new(config, replies.clone())?;
        let commands = MqttCommands::new(subscriber.client(), topics.clone(), replies);
        let gateways = gateways_for(&commands);
        let handler = Arc::new(
            PositionsHandler::new(context.clone(), topics).with_gateways(gateways.clone()),
        );
        let sweeper = tokio::spawn(forget_silent_gateways(gateways, token.clone()));
        let subscribed = tokio::spawn(subscriber.run(handler, token));
        let task = tokio::spawn(async move {
            let _ = subscribed.await;
            let _ = sweeper.await;
        });
        return Ok(MqttIngest {
            listen: None,
            commands,
            task,
        });
    }
    let broker = embedded::start_broker(config).await?;
    let (client, eventloop) = embedded::internal_client(broker, "ewall-internal");
    let commands = MqttCommands::new(client.clone(), topics.clone(), replies.clone());
    let gateways = gateways_for(&commands);
    let handler = Arc::new(
        PositionsHandler::new(context.clone(), topics.clone()).with_gateways(gateways.clone()),
    );
    let endpoint =
        embedded::EmbeddedEndpoint::bind(config, broker, handler.clone(), client.clone()).await?;
    let listen = endpoint.local_addr();
    let internal_stop = CancellationToken::new();
    let internal = tokio::spawn(run_internal_client(
        client.clone(),
        eventloop,
        handler,
        replies,
        internal_stop.clone(),
    ));
    let sweeper = tokio::spawn(forget_silent_gateways(gateways, token.clone()));
    let task = tokio::spawn(async move {
        let tracker = TaskTracker::new();
        endpoint.run(token, tracker.clone()).await;
        tracker.close();
        tracker.wait().await;
        // Refusals answered during the drain are out; the internal client can go.
        internal_stop.cancel();
        let _ = internal.await;
        let _ = sweeper.await;
    });
    Ok(MqttIngest {
        listen: Some(listen),
        commands,
        task,
    })
}

/// Forgets gateway devices that fell silent, until `token` is cancelled.
async fn forget_silent_gateways(gateways: Arc<GatewayLinks>, token: CancellationToken) {
    let mut tick = tokio::time::interval(gateways.sweep_interval());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = token.cancelled() => break,
            now = tick.tick() => gateways.forget_silent(now),
        }
    }
}

/// Takes a gateway's command answer off the client's event loop (whose task must keep
/// polling), answering a refused one on the device's errors topic.
fn take_command_reply(
    handler: &Arc<PositionsHandler>,
    client: &AsyncClient,
    publish: &rumqttc::Publish,
    replies: &broadcast::Sender<CommandReply>,
) -> Option<tokio::task::JoinHandle<()>> {
    let imei = handler.topics().device_of_command_reply(&publish.topic)?;
    let _ = replies.send(CommandReply {
        imei: imei.to_owned(),
        payload: publish.payload.clone(),
    });
    let (handler, client, publish, imei) = (
        handler.clone(),
        client.clone(),
        publish.clone(),
        imei.to_owned(),
    );
    Some(tokio::spawn(async move {
        if let Some(refusal) = handler
            .command_reply(&imei, &publish.topic, &publish.payload)
            .await
        {
            answer_refusal(&client, handler.topics(), &imei, &refusal).await;
        }
    }))
}

/// Drives ewall's own client of the embedded broker: publishes refusals and commands, and
/// takes command replies.
async fn run_internal_client(
    client: AsyncClient,
    mut eventloop: rumqttc::EventLoop,
    handler: Arc<PositionsHandler>,
    replies: broadcast::Sender<CommandReply>,
    stop: CancellationToken,
) {
    let topics = handler.topics().clone();
    loop {
        let event = tokio::select! {
            _ = stop.cancelled() => break,
            event = eventloop.poll() => event,
        };
        match event {
            Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => {
                if let Err(e) = client
                    .subscribe(topics.command_replies_filter(), QoS::AtLeastOnce)
                    .await
                {
                    warn!(error = %e, "Subscribing to command replies failed.");
                }
            }
            Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(publish))) => {
                take_command_reply(&handler, &client, &publish, &replies);
            }
            Ok(_) => {}
            Err(e) => {
                debug!(error = %e, "Internal MQTT client disconnected; reconnecting.");
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
            }
        }
    }
    // Refusals still queued get a moment to go out.
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Ok(event) = eventloop.poll().await {
            if matches!(
                event,
                rumqttc::Event::Outgoing(rumqttc::Outgoing::Disconnect)
            ) {
                break;
            }
        }
    })
    .await;
}

/// Why MQTT ingest could not start.
#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    /// The endpoint could not bind.
    #[error("cannot listen on {addr} for MQTT (mqtt.embedded_listen): {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// OS error.
        source: std::io::Error,
    },
    /// The embedded broker did not come up.
    #[error("the embedded MQTT broker did not start: {0}")]
    Broker(String),
    /// The configuration is unusable.
    #[error("mqtt.url: {0}")]
    Config(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_are_built_and_read_under_the_prefix() {
        let topics = Topics::new("ewall/v1");
        assert_eq!(topics.positions_filter(), "ewall/v1/devices/+/positions");
        assert_eq!(
            topics.device_of_positions("ewall/v1/devices/864717003283581/positions"),
            Some("864717003283581")
        );
        for other in [
            "ewall/v1/devices//positions",
            "ewall/v1/devices/a/b/positions",
            "ewall/v1/devices/1/errors",
            "ewall/v2/devices/1/positions",
            "x/ewall/v1/devices/1/positions",
        ] {
            assert_eq!(topics.device_of_positions(other), None, "{other}");
        }
        assert_eq!(topics.errors("1"), "ewall/v1/devices/1/errors");
        assert_eq!(topics.commands("1"), "ewall/v1/devices/1/commands");
        assert_eq!(
            topics.device_of_command_reply("ewall/v1/devices/7/commands/reply"),
            Some("7")
        );
    }

    #[test]
    fn config_checks_the_url_prefix_and_client_id() {
        let ok = MqttConfig::default();
        assert!(ok.validate().is_ok());
        let external = MqttConfig {
            url: "mqtt://127.0.0.1:1884".into(),
            ..MqttConfig::default()
        };
        assert_eq!(
            external.external_address().unwrap(),
            ("127.0.0.1".into(), 1884)
        );
        let bare = MqttConfig {
            url: "mqtt://broker.local".into(),
            ..MqttConfig::default()
        };
        assert_eq!(
            bare.external_address().unwrap(),
            ("broker.local".into(), 1883)
        );
        for (config, key) in [
            (
                MqttConfig {
                    url: "amqp://x".into(),
                    ..MqttConfig::default()
                },
                "url",
            ),
            (
                MqttConfig {
                    url: "mqtt://x:port".into(),
                    ..MqttConfig::default()
                },
                "url",
            ),
            (
                MqttConfig {
                    topic_prefix: "a/+/b".into(),
                    ..MqttConfig::default()
                },
                "topic_prefix",
            ),
            (
                MqttConfig {
                    topic_prefix: "/a".into(),
                    ..MqttConfig::default()
                },
                "topic_prefix",
            ),
            (
                MqttConfig {
                    client_id: String::new(),
                    ..MqttConfig::default()
                },
                "client_id",
            ),
            (
                MqttConfig {
                    max_connections: 0,
                    ..MqttConfig::default()
                },
                "max_connections",
            ),
        ] {
            assert_eq!(config.validate().unwrap_err().0, key, "{config:?}");
        }
    }

    #[test]
    fn refusals_are_problem_json_without_the_metric_label() {
        let error = json::decode(b"{").unwrap_err();
        let refusal = Refusal::payload(&error, "ewall/v1/devices/1/positions");
        assert_eq!(refusal.reason, "not_json");
        let body: serde_json::Value = serde_json::from_slice(&refusal.to_json()).unwrap();
        assert_eq!(body["type"], "urn:ewall:problem:not-json");
        assert_eq!(body["status"], 400);
        assert_eq!(body["instance"], "ewall/v1/devices/1/positions");
        assert!(body["detail"].as_str().unwrap().contains("EOF"), "{body}");
        assert!(body.get("reason").is_none());
    }
}

//! Downlink commands: from the API's request to the device's answer.
//!
//! The [`CommandDispatcher`] stores each command (`pending`), and whenever the device is
//! reachable (a live connection registered in ingest's [`Links`]) marks it `sent` and hands it
//! to the device's [`CommandSink`], which encodes it for the device's protocol and writes it. A
//! device that connects gets its queued commands after its login is answered. The device's
//! answer, matched by the reference the protocol echoes (GT06 server flag, JT/T 808 serial, the
//! watch's keyword), moves it to `acknowledged` (or `failed` when the device refused it). A
//! timer moves every command whose expiry passes unanswered to `expired`.
//!
//! Marking `sent` happens before the write, so an answer can never arrive for a command the
//! store does not yet know was sent; a write that does not happen puts it back to `pending`.
//! New transports (MQTT gateways) plug in by registering a [`CommandSink`] per device.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use ewall_protocol::{Command, CommandError, CommandKind, CommandReply, Protocol};
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::ingest::links::{CommandSink, LinkEvent, Links, SinkError};
use crate::model::{CommandStatus, DeviceCommand};
use crate::store::{Store, StoreError};
use crate::telemetry::Metrics;

/// Longest the expiry timer sleeps before looking again, whatever the next expiry.
const EXPIRY_RECHECK: Duration = Duration::from_secs(60);

/// Most devices whose recorded protocol is remembered.
const RECORDED_PROTOCOLS: usize = 100_000;

/// Capacity of the queue of link events from ingest.
pub const LINK_EVENT_QUEUE: usize = 1024;

/// The protocol-neutral command a stored row asks for.
///
/// # Errors
/// A message when the row's kind or arguments are not a command (a corrupt row).
pub fn command_of(row: &DeviceCommand) -> Result<Command, String> {
    let kind = CommandKind::from_name(&row.kind)
        .ok_or_else(|| format!("unknown command type {:?}", row.kind))?;
    Ok(match kind {
        CommandKind::Message => Command::Message {
            text: row.text.clone().ok_or("a message without text")?,
        },
        CommandKind::Vibrate => Command::Vibrate,
        CommandKind::SetInterval => Command::SetInterval {
            seconds: row.interval_s.ok_or("a set_interval without interval_s")?,
        },
        CommandKind::LocateNow => Command::LocateNow,
    })
}

/// The tag a command goes out with: its store sequence number, as the protocols' correlation
/// fields take it (GT06 uses all 32 bits, JT/T 808 the low 16).
fn tag_of(row: &DeviceCommand) -> u32 {
    row.seq as u32
}

/// Stores commands, sends them when their device is reachable, matches answers and expires
/// what goes unanswered.
pub struct CommandDispatcher {
    store: Arc<dyn Store>,
    links: Arc<Links>,
    metrics: Arc<Metrics>,
    /// Wakes the expiry timer when a command with an earlier expiry may have been added.
    added: Notify,
    /// The protocol last recorded per device, so a device heard on every request (OsmAnd)
    /// costs a write only when its protocol changes.
    recorded: Mutex<HashMap<String, Protocol>>,
    /// Protocols heard but not yet written, which one task writes in the background: a
    /// connection's link event waits for none of them. One entry per device heard, so it is
    /// bounded by the registered devices.
    unrecorded: Mutex<HashMap<String, Protocol>>,
    /// Wakes the task writing `unrecorded`.
    heard: Notify,
    /// One sender at a time per device, so its commands go out in the order they were made
    /// even when a connect and a new command both start sending.
    lanes: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// In cluster mode, where a command for a device connected to another node is announced
    /// (the device's id), so that node sends it.
    peers: std::sync::OnceLock<mpsc::UnboundedSender<String>>,
}

impl CommandDispatcher {
    /// A dispatcher over `store`, reaching devices through `links`.
    pub fn new(store: Arc<dyn Store>, links: Arc<Links>, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(CommandDispatcher {
            store,
            links,
            metrics,
            added: Notify::new(),
            recorded: Mutex::new(HashMap::new()),
            unrecorded: Mutex::new(HashMap::new()),
            heard: Notify::new(),
            lanes: Mutex::new(HashMap::new()),
            peers: std::sync::OnceLock::new(),
        })
    }

    /// Announces on `peers` each command stored for a device not connected here, so that the
    /// node holding its connection sends it (cluster mode). Set once; later calls do nothing.
    pub fn announce_to_peers(&self, peers: mpsc::UnboundedSender<String>) {
        let _ = self.peers.set(peers);
    }

    /// Sends the queued commands of `imei` if it is connected here: what a node does when
    /// another announces a command for the device. False when it is not connected here.
    pub fn deliver_if_connected(self: &Arc<Self>, imei: &str) -> bool {
        if self.links.get(imei).is_none() {
            return false;
        }
        let this = self.clone();
        let device = imei.to_owned();
        tokio::spawn(async move { this.send_pending(&device).await });
        true
    }

    /// Notes the protocol a device was heard with, to be stored by
    /// [`CommandDispatcher::record_protocols`] unless already recorded. Never waits: ten
    /// thousand devices connecting at once are as many store writes, one after another, and
    /// a device's first report is not read before its link event is taken.
    fn note_protocol(&self, imei: &str, protocol: Protocol) {
        let known = self
            .recorded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(imei)
            .copied();
        if known == Some(protocol) {
            return;
        }
        self.unrecorded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(imei.to_owned(), protocol);
        self.heard.notify_one();
    }

    /// Writes the noted protocols one at a time, so that they take turns on the store's
    /// write connection with the position commits rather than queue ahead of them, until
    /// `stop` is cancelled. What is left then is dropped: a device's protocol is noted again
    /// when it next connects, and a store that is going must not hold the stop up with a write
    /// per device.
    async fn record_protocols(&self, stop: CancellationToken) {
        loop {
            let noted: Vec<(String, Protocol)> = self
                .unrecorded
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .drain()
                .collect();
            if noted.is_empty() {
                tokio::select! {
                    () = self.heard.notified() => continue,
                    () = stop.cancelled() => return,
                }
            }
            for (imei, protocol) in noted {
                if stop.is_cancelled() {
                    return;
                }
                self.record_protocol(&imei, protocol).await;
            }
        }
    }

    /// Stores the protocol a device was heard with.
    async fn record_protocol(&self, imei: &str, protocol: Protocol) {
        match self.store.set_device_protocol(imei, protocol.name()).await {
            Ok(()) => {
                let mut recorded = self.recorded.lock().unwrap_or_else(|p| p.into_inner());
                // Bounded like the other per-device memories: forget all rather than grow.
                if recorded.len() >= RECORDED_PROTOCOLS {
                    recorded.clear();
                }
                recorded.insert(imei.to_owned(), protocol);
            }
            Err(e) => warn!(device = imei, error = %e, "Cannot record the device's protocol."),
        }
    }

    /// Forgets what was recorded about a device that was unbound, so that if it is registered
    /// again its protocol is recorded anew.
    pub fn forget(&self, imei: &str) {
        self.recorded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(imei);
        self.unrecorded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(imei);
    }

    /// Whether a device reachable now can be told `command`: `None` when it is not reachable
    /// (the caller then judges by the device's recorded protocol).
    pub fn check_live(&self, imei: &str, command: &Command) -> Option<Result<(), CommandError>> {
        self.links
            .get(imei)
            .map(|sink| sink.reference(command, 0).map(|_| ()))
    }

    /// Stores a new command and, if its device is connected, sends it at once (in the
    /// background: the caller gets the stored command without waiting for the write).
    ///
    /// # Errors
    /// Store errors.
    pub async fn submit(
        self: &Arc<Self>,
        command: DeviceCommand,
    ) -> Result<DeviceCommand, StoreError> {
        let stored = self.store.create_command(&command).await?;
        self.count(CommandStatus::Pending);
        self.added.notify_one();
        if !self.deliver_if_connected(&stored.device_id) {
            if let Some(peers) = self.peers.get() {
                let _ = peers.send(stored.device_id.clone());
            }
        }
        Ok(stored)
    }

    /// Takes commands already stored by another transaction (a broadcast's) and sends each
    /// `pending` one at once to its device if it is connected; the rest stay queued for their
    /// device's next connection, as [`CommandDispatcher::submit`] leaves them.
    pub fn stored(self: &Arc<Self>, commands: &[DeviceCommand]) {
        let mut devices: Vec<&str> = Vec::new();
        for command in commands {
            self.count(command.status);
            if command.status != CommandStatus::Pending {
                continue;
            }
            if !devices.contains(&command.device_id.as_str()) {
                devices.push(&command.device_id);
            }
        }
        self.added.notify_one();
        for device in devices {
            if self.links.get(device).is_some() {
                let this = self.clone();
                let device = device.to_owned();
                tokio::spawn(async move { this.send_pending(&device).await });
            }
        }
    }

    /// Sends every pending command of `imei` over its live link, oldest first.
    async fn send_pending(&self, imei: &str) {
        let lane = self
            .lanes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(imei.to_owned())
            .or_default()
            .clone();
        let turn = lane.lock().await;
        self.send_pending_in_turn(imei).await;
        drop(turn);
        let mut lanes = self.lanes.lock().unwrap_or_else(|p| p.into_inner());
        // The map's and ours: nobody else is waiting for this device's lane.
        if Arc::strong_count(&lane) == 2 {
            lanes.remove(imei);
        }
    }

    /// [`CommandDispatcher::send_pending`] once it holds the device's lane.
    async fn send_pending_in_turn(&self, imei: &str) {
        let Some(sink) = self.links.get(imei) else {
            return;
        };
        let pending = match self.store.pending_commands(imei, Utc::now()).await {
            Ok(pending) => pending,
            Err(e) => {
                warn!(device = imei, error = %e, "Cannot read queued commands; they stay queued.");
                return;
            }
        };
        for row in pending {
            if let Err(e) = self.send_one(sink.as_ref(), &row).await {
                warn!(device = imei, command = %row.id, error = %e, "Command state not saved.");
            }
        }
    }

    /// Sends one pending command: fails it when the protocol cannot carry it, marks it sent,
    /// writes it, and puts it back to pending when the write did not happen.
    async fn send_one(
        &self,
        sink: &dyn CommandSink,
        row: &DeviceCommand,
    ) -> Result<(), StoreError> {
        let transport = sink.transport();
        let now = Utc::now();
        let command = match command_of(row) {
            Ok(command) => command,
            Err(e) => {
                self.finish(row, CommandStatus::Failed, Some(&e), now)
                    .await?;
                return Ok(());
            }
        };
        let reference = match sink.reference(&command, tag_of(row)) {
            Ok(reference) => reference.to_string(),
            Err(e) => {
                info!(device = row.device_id, command = %row.id, error = %e, "Command not supported by the device's protocol; failed.");
                self.finish(row, CommandStatus::Failed, Some(&e.to_string()), now)
                    .await?;
                return Ok(());
            }
        };
        if !self
            .store
            .mark_command_sent(row.id, transport, &reference, now)
            .await?
        {
            // Another dispatch got there first, or it expired meanwhile.
            return Ok(());
        }
        match sink.deliver(&command, tag_of(row)).await {
            Ok(written) => {
                if written.to_string() != reference {
                    // Cannot happen while the sessions derive the reference as `reply_ref`
                    // does; logged rather than trusted, because the answer would not match.
                    warn!(device = row.device_id, expected = reference, written = %written, "Command written with an unexpected reference.");
                }
                self.count(CommandStatus::Sent);
                debug!(device = row.device_id, command = %row.id, "Command sent.");
            }
            Err(SinkError::Encode(e)) => {
                self.finish(row, CommandStatus::Failed, Some(&e.to_string()), Utc::now())
                    .await?;
            }
            Err(e @ (SinkError::Gone | SinkError::Write(_))) => {
                debug!(device = row.device_id, command = %row.id, error = %e, "Command not written; queued again.");
                self.store.unmark_command_sent(row.id).await?;
            }
        }
        Ok(())
    }

    /// Matches a device's answer to the command it names.
    async fn answered(
        &self,
        imei: &str,
        reply: &CommandReply,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let reference = reply.reference.to_string();
        let Some(row) = self.store.command_by_reference(imei, &reference).await? else {
            debug!(
                device = imei,
                reference, "Answer to no command we are waiting on."
            );
            return Ok(());
        };
        let status = if reply.accepted {
            CommandStatus::Acknowledged
        } else {
            CommandStatus::Failed
        };
        let detail = reply
            .text
            .clone()
            .or_else(|| (!reply.accepted).then(|| "the device refused the command".to_owned()));
        if self.finish(&row, status, detail.as_deref(), at).await? {
            info!(device = imei, command = %row.id, status = status.as_str(), "Device answered a command.");
        }
        Ok(())
    }

    /// Ends an open command and counts it; false when it had already ended.
    async fn finish(
        &self,
        row: &DeviceCommand,
        status: CommandStatus,
        detail: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let ended = self
            .store
            .complete_command(row.id, status, detail, at)
            .await?;
        if ended {
            self.count(status);
        }
        Ok(ended)
    }

    fn count(&self, status: CommandStatus) {
        self.metrics
            .commands
            .with_label_values(&[status.as_str()])
            .inc();
    }

    /// Expires what is due and returns when to look next.
    async fn expire_due(&self) -> Duration {
        match self.store.expire_commands(Utc::now()).await {
            Ok(expired) => {
                for row in &expired {
                    self.count(CommandStatus::Expired);
                    info!(device = row.device_id, command = %row.id, "Command expired unanswered.");
                }
            }
            Err(e) => warn!(error = %e, "Cannot expire commands; trying again."),
        }
        match self.store.next_command_expiry().await {
            Ok(Some(next)) => (next - Utc::now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                .min(EXPIRY_RECHECK),
            Ok(None) => EXPIRY_RECHECK,
            Err(_) => Duration::from_secs(1),
        }
    }

    /// Handles link events from ingest and runs the expiry timer until `token` is cancelled
    /// or ingest has gone (its event senders dropped).
    pub async fn run(
        self: Arc<Self>,
        mut events: mpsc::Receiver<LinkEvent>,
        token: CancellationToken,
    ) {
        // A deadline, not a sleep per turn: events arriving more often than the expiry is due
        // (an OsmAnd phone reporting every second) must not keep pushing it back.
        let mut deadline = Instant::now() + self.expire_due().await;
        let stop_recording = CancellationToken::new();
        let recorder = tokio::spawn({
            let this = self.clone();
            let stop = stop_recording.clone();
            async move { this.record_protocols(stop).await }
        });
        loop {
            tokio::select! {
                _ = token.cancelled() => break,
                event = events.recv() => match event {
                    None => break,
                    Some(LinkEvent::Seen { device_id, protocol }) => {
                        self.note_protocol(&device_id, protocol);
                    }
                    Some(LinkEvent::Connected { device_id, protocol }) => {
                        self.note_protocol(&device_id, protocol);
                        // In the background: writing waits on the connection, and other
                        // devices' events must not wait behind it.
                        let this = self.clone();
                        tokio::spawn(async move { this.send_pending(&device_id).await });
                    }
                    Some(LinkEvent::Reply { device_id, reply, received_at }) => {
                        if let Err(e) = self.answered(&device_id, &reply, received_at).await {
                            warn!(device = device_id, error = %e, "Cannot record a command answer.");
                        }
                    }
                },
                _ = self.added.notified() => deadline = Instant::now() + self.expire_due().await,
                _ = tokio::time::sleep_until(deadline) => {
                    deadline = Instant::now() + self.expire_due().await;
                }
            }
        }
        stop_recording.cancel();
        let _ = recorder.await;
        debug!("Command dispatcher stopped.");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(kind: &str) -> DeviceCommand {
        let now = Utc::now();
        DeviceCommand {
            id: crate::model::new_id(),
            seq: 70_000,
            device_id: "1".into(),
            kind: kind.into(),
            text: Some("go home".into()),
            interval_s: Some(30),
            status: CommandStatus::Pending,
            protocol: None,
            reference: None,
            created_at: now,
            expires_at: now,
            sent_at: None,
            completed_at: None,
            reply: None,
            error: None,
        }
    }

    /// A gateway transport that records what it publishes.
    struct Published(std::sync::Mutex<Vec<Vec<u8>>>);

    #[async_trait::async_trait]
    impl crate::ingest::links::GatewayPublish for Published {
        async fn publish(&self, _device_id: &str, payload: Vec<u8>) -> Result<(), String> {
            self.0.lock().unwrap().push(payload);
            Ok(())
        }
    }

    async fn sqlite_store(dir: &tempfile::TempDir) -> Arc<dyn Store> {
        let url = format!("sqlite://{}", dir.path().join("c.db").display());
        let store = crate::store::sqlite::SqliteStore::open(&url).await.unwrap();
        store.migrate().await.unwrap();
        Arc::new(store)
    }

    /// Ten thousand devices connecting at once are ten thousand protocol writes; a connection
    /// reads nothing more until its link event is taken, so the events must be taken while those
    /// writes wait. Here the database's write lock is held by another connection meanwhile:
    /// every event is still taken, and the protocols are stored once the lock is let go.
    #[tokio::test]
    async fn link_events_are_taken_while_the_protocol_writes_wait_for_the_store() {
        use sqlx::{Connection, Executor};
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite_store(&dir).await;
        let person = store
            .create_person(crate::store::NewPerson {
                name: "p".into(),
                level: crate::model::SupervisionLevel::Normal,
                timezone: "Asia/Shanghai".into(),
            })
            .await
            .unwrap();
        for imei in ["dev-0", "dev-7"] {
            store.create_device(imei, person.id).await.unwrap();
        }
        let dispatcher = CommandDispatcher::new(
            store.clone(),
            Arc::new(Links::default()),
            Arc::new(Metrics::new()),
        );
        let (events, rx) = mpsc::channel(LINK_EVENT_QUEUE);
        let token = CancellationToken::new();
        let task = tokio::spawn(dispatcher.clone().run(rx, token.clone()));
        let connected = |i: usize| LinkEvent::Connected {
            device_id: format!("dev-{i}"),
            protocol: Protocol::Gt06,
        };
        let recorded = |imei: &'static str| {
            let store = store.clone();
            async move {
                while store.device(imei).await.unwrap().protocol.as_deref() != Some("gt06") {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        };
        // The dispatcher is past its start (which writes) once one device is recorded.
        events.send(connected(0)).await.unwrap();
        recorded("dev-0").await;

        let url = format!("sqlite://{}", dir.path().join("c.db").display());
        let mut holder = sqlx::SqliteConnection::connect(&url).await.unwrap();
        holder.execute("BEGIN IMMEDIATE").await.unwrap();
        let connect_all = async {
            for i in 1..=LINK_EVENT_QUEUE + 16 {
                events.send(connected(i)).await.unwrap();
            }
        };
        // Only a guard against hanging: the store's busy timeout is 10 s a write, so a
        // dispatcher that waits on each write takes hours over these events.
        assert!(
            tokio::time::timeout(Duration::from_secs(60), connect_all)
                .await
                .is_ok(),
            "link events waited for the protocol writes"
        );
        holder.execute("COMMIT").await.unwrap();
        recorded("dev-7").await;
        token.cancel();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn a_gateway_device_gets_its_queued_command_as_json_and_its_answer_acknowledges_it() {
        use crate::ingest::links::{gateway_answer, GatewaySink};
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite_store(&dir).await;
        let links = Arc::new(Links::default());
        let dispatcher =
            CommandDispatcher::new(store.clone(), links.clone(), Arc::new(Metrics::new()));
        let (events, rx) = mpsc::channel(16);
        let token = CancellationToken::new();
        let task = tokio::spawn(dispatcher.clone().run(rx, token.clone()));

        let mut queued = row("message");
        queued.expires_at = queued.created_at + chrono::TimeDelta::hours(1);
        let queued = dispatcher.submit(queued).await.unwrap();
        // The gateway's transport hears the device and registers it.
        let published = Arc::new(Published(std::sync::Mutex::new(Vec::new())));
        let _link = links.register(
            "1",
            Arc::new(GatewaySink::new("mqtt", "1", published.clone())),
        );
        events
            .send(LinkEvent::Connected {
                device_id: "1".into(),
                protocol: Protocol::Jt808,
            })
            .await
            .unwrap();
        let sent = loop {
            let c = store.command(queued.id).await.unwrap();
            if c.status == CommandStatus::Sent {
                break c;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert_eq!(sent.protocol.as_deref(), Some("mqtt"));
        let payload: serde_json::Value =
            serde_json::from_slice(&published.0.lock().unwrap()[0]).unwrap();
        assert_eq!(payload["type"], "message");
        assert_eq!(payload["text"], "go home");

        let answer = format!(
            r#"{{"tag": {}, "accepted": true, "text": "shown"}}"#,
            payload["tag"]
        );
        events
            .send(LinkEvent::Reply {
                device_id: "1".into(),
                reply: gateway_answer(answer.as_bytes()).unwrap(),
                received_at: Utc::now(),
            })
            .await
            .unwrap();
        let done = loop {
            let c = store.command(queued.id).await.unwrap();
            if c.status != CommandStatus::Sent {
                break c;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert_eq!(done.status, CommandStatus::Acknowledged);
        assert_eq!(done.reply.as_deref(), Some("shown"));
        token.cancel();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn expiry_runs_on_time_while_events_keep_arriving() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("c.db").display());
        let store: Arc<dyn Store> =
            Arc::new(crate::store::sqlite::SqliteStore::open(&url).await.unwrap());
        store.migrate().await.unwrap();
        let dispatcher = CommandDispatcher::new(
            store.clone(),
            Arc::new(Links::default()),
            Arc::new(Metrics::new()),
        );
        let (events, rx) = mpsc::channel(16);
        let token = CancellationToken::new();
        let task = tokio::spawn(dispatcher.clone().run(rx, token.clone()));
        let mut command = row("locate_now");
        command.expires_at = command.created_at + chrono::TimeDelta::milliseconds(500);
        let stored = dispatcher.submit(command).await.unwrap();
        // An OsmAnd phone reporting every 50 ms for 2 s.
        for _ in 0..40 {
            events
                .send(LinkEvent::Seen {
                    device_id: "phone".into(),
                    protocol: Protocol::Osmand,
                })
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            store.command(stored.id).await.unwrap().status,
            CommandStatus::Expired
        );
        token.cancel();
        task.await.unwrap();
    }

    #[test]
    fn rows_become_commands() {
        assert_eq!(
            command_of(&row("message")).unwrap(),
            Command::Message {
                text: "go home".into()
            }
        );
        assert_eq!(
            command_of(&row("set_interval")).unwrap(),
            Command::SetInterval { seconds: 30 }
        );
        assert!(command_of(&row("reboot")).is_err());
        let mut no_text = row("message");
        no_text.text = None;
        assert!(command_of(&no_text).is_err());
        // JT/T 808 takes the low 16 bits of the tag as serial.
        assert_eq!(tag_of(&row("vibrate")), 70_000);
    }
}

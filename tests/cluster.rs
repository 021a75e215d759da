//! Cluster mode against the real NATS JetStream (`EWALL_TEST_NATS_URL`) and the real
//! PostgreSQL (`EWALL_TEST_PG_URL`): nodes as processes of the real binary, GT06 wristbands and
//! JT/T 808 terminals spread over them, each walking out of its permitted zone.
//!
//! - One node killed with SIGKILL mid-run: its partitions are owned again within two lease
//!   periods, its devices reconnect to the others and go on, every acknowledged fix is stored
//!   exactly once and every breach is alerted exactly once.
//! - A node joining a running cluster takes a share of the partitions; stopped with SIGTERM it
//!   hands them back at once, and nothing is lost or doubled meanwhile.
//! - A webhook is delivered by one node at a time (each event once), and by another once its
//!   holder is killed.
//! - A command made through one node reaches a JT/T 808 terminal connected to another and its
//!   answer is recorded; a leave granted through one node reaches the partition's owner, and
//!   so does one whose notice never comes (written to the store alone), from the store.
//! - A fix sent to one node, for a person whose partition a second node owns, shows on the live
//!   positions stream of a third, and so does the breach it leads to.
//! - With the database away, `/readyz` says `degraded` with the reason, and `ready` again once
//!   it is back; nothing acknowledged meanwhile is lost or doubled.
//!
//! Each test has its own database and its own NATS namespace (stream and bucket), deleted at
//! the end. Without either variable a test prints one line and passes as skipped.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::binary::{admin_token, serve};
use common::pg::TestDatabase;
use ewall_protocol::gt06::encode as gt06;
use ewall_protocol::jt808::encode::{self as jt808, Edition, Location};
use ewall_protocol::jt808::framer::unescape;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::Child;
use tokio::sync::watch;

const NATS_VAR: &str = "EWALL_TEST_NATS_URL";
/// Partitions of the test deployments.
const PARTITIONS: u32 = 16;
/// The lease period of the test deployments.
const LEASE_TTL: Duration = Duration::from_secs(3);
/// Devices of each protocol.
const DEVICES_PER_PROTOCOL: usize = 8;
/// Positions each device sends: it walks north out of the zone about half way.
const FIXES: usize = 40;
/// Positions a device sends ahead of its acknowledgements.
const WINDOW: usize = 4;
/// The permitted zone: a circle around the start.
const HOME: (f64, f64) = (112.3, 25.5);
const HOME_RADIUS_M: f64 = 1000.0;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    Gt06,
    Jt808,
}

fn device_id(kind: Kind, i: usize) -> String {
    match kind {
        Kind::Gt06 => {
            let body = format!("8647191{i:07}");
            let check = ewall::identity::luhn_check_digit(&body);
            format!("{body}{check}")
        }
        Kind::Jt808 => format!("1392{i:07}"),
    }
}

/// The NATS namespace of one test, its stream and bucket deleted when dropped.
struct Namespace {
    nats: String,
    name: String,
}

impl Namespace {
    fn create(test: &str) -> Option<Namespace> {
        let Ok(nats) = std::env::var(NATS_VAR) else {
            println!("skipped {test}: {NATS_VAR} is not set");
            return None;
        };
        Some(Namespace {
            nats,
            name: format!("t{}", ewall::model::new_id().simple()),
        })
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let (nats, name) = (self.nats.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let client = async_nats::connect(nats).await?;
                let js = async_nats::jetstream::new(client);
                let _ = js.delete_stream(format!("{name}_EWALL_FIXES")).await;
                let _ = js.delete_stream(format!("KV_{name}_ewall_leases")).await;
                Ok::<_, async_nats::Error>(())
            })
        })
        .join();
    }
}

/// One deployment: its directory, database and namespace.
struct Deployment {
    dir: tempfile::TempDir,
    database: TestDatabase,
    namespace: Namespace,
    token: String,
    client: reqwest::Client,
    /// More configuration, the same on every node.
    extra: String,
    /// Where the nodes reach the store, when not at the database itself (through a proxy).
    store_url: Option<String>,
    /// More lines of the `[store]` section.
    store_extra: String,
}

impl Deployment {
    async fn create(test: &str) -> Option<Deployment> {
        let namespace = Namespace::create(test)?;
        let database = TestDatabase::create(test).await?;
        let dir = tempfile::tempdir().unwrap();
        ewall::alert::dispatch::webhook::install_tls_provider();
        let mut deployment = Deployment {
            dir,
            database,
            namespace,
            token: String::new(),
            client: reqwest::Client::new(),
            extra: String::new(),
            store_url: None,
            store_extra: String::new(),
        };
        let config = deployment.config("a");
        deployment.token = admin_token(&config);
        Some(deployment)
    }

    /// Node `name`'s config: every port ephemeral, the shared store and namespace.
    fn config(&self, name: &str) -> PathBuf {
        let dir = self.dir.path();
        let mut text = format!(
            "data_dir = {:?}\nshutdown_timeout = \"20s\"\n\n[http]\nlisten = \"127.0.0.1:0\"\n\n\
             [mqtt]\nenabled = false\n\n[store]\nurl = {:?}\npool_max = 4\n{}\n\
             [cluster]\nnats_url = {:?}\nnode_id = {name:?}\npartitions = {PARTITIONS}\n\
             lease_ttl = \"{}s\"\nack_wait = \"2s\"\nnamespace = {:?}\n",
            dir.join(name).display().to_string(),
            self.store_url.as_ref().unwrap_or(&self.database.url),
            self.store_extra,
            self.namespace.nats,
            LEASE_TTL.as_secs(),
            self.namespace.name,
        );
        for protocol in ["gt06", "jt808", "h02", "watch", "osmand"] {
            text.push_str(&format!(
                "\n[listeners.{protocol}]\nlisten = \"127.0.0.1:0\"\n"
            ));
        }
        text.push_str(&self.extra);
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, text).unwrap();
        path
    }

    /// The warnings and errors the nodes logged.
    fn warnings(&self) -> String {
        std::fs::read_to_string(self.log())
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("nodes.log")
    }

    /// The node holding a lease of the bucket, if any.
    async fn lease_holder(&self, key: &str) -> Option<String> {
        let client = async_nats::connect(self.namespace.nats.clone())
            .await
            .ok()?;
        let js = async_nats::jetstream::new(client);
        let bucket = js
            .get_key_value(format!("{}_ewall_leases", self.namespace.name))
            .await
            .ok()?;
        let value = bucket.get(key).await.ok()??;
        (!value.is_empty()).then(|| String::from_utf8_lossy(&value).into_owned())
    }

    async fn start(&self, name: &str) -> Node {
        let (child, addresses) = serve(&self.config(name), &self.log()).await;
        Node {
            name: name.to_owned(),
            child,
            http: addresses["http"].as_str().unwrap().to_owned(),
            listeners: HashMap::from([
                (
                    Kind::Gt06,
                    addresses["gt06"].as_str().unwrap().parse().unwrap(),
                ),
                (
                    Kind::Jt808,
                    addresses["jt808"].as_str().unwrap().parse().unwrap(),
                ),
            ]),
        }
    }

    async fn api(&self, node: &Node, method: reqwest::Method, path: &str, body: Value) -> Value {
        let response = self
            .client
            .request(method, format!("http://{}{path}", node.http))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{path}: {status} {body}");
        body
    }

    async fn get(&self, node: &Node, path: &str) -> Value {
        let response = self
            .client
            .get(format!("http://{}{path}", node.http))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{path}");
        response.json().await.unwrap()
    }

    /// Persons with a device each, every one assigned the home zone; device id to person id.
    async fn persons(&self, node: &Node) -> HashMap<String, String> {
        use reqwest::Method;
        let zone = self
            .api(
                node,
                Method::POST,
                "/api/v1/zones",
                json!({
                    "type": "Feature",
                    "geometry": {"type": "Point", "coordinates": [HOME.0, HOME.1]},
                    "properties": {"name": "home", "kind": "inclusion", "crs": "wgs84",
                                   "radius_m": HOME_RADIUS_M}
                }),
            )
            .await;
        let mut persons = HashMap::new();
        for kind in [Kind::Gt06, Kind::Jt808] {
            for i in 0..DEVICES_PER_PROTOCOL {
                let person = self
                    .api(
                        node,
                        Method::POST,
                        "/api/v1/persons",
                        json!({"name": "Wearer", "level": "normal", "timezone": "Asia/Shanghai"}),
                    )
                    .await;
                let person = person["id"].as_str().unwrap().to_owned();
                let id = device_id(kind, i);
                self.api(
                    node,
                    Method::POST,
                    "/api/v1/devices",
                    json!({"imei": id, "person_id": person}),
                )
                .await;
                self.api(
                    node,
                    Method::PUT,
                    &format!("/api/v1/persons/{person}/zones"),
                    json!({"zone_ids": [zone["id"]]}),
                )
                .await;
                persons.insert(id, person);
            }
        }
        persons
    }

    /// Which node owns each partition, from every node's `/readyz`; a node that does not
    /// answer owns nothing.
    async fn owners(&self, nodes: &[&Node]) -> BTreeMap<u32, Vec<String>> {
        let mut owners: BTreeMap<u32, Vec<String>> = BTreeMap::new();
        for node in nodes {
            let Ok(response) = self
                .client
                .get(format!("http://{}/readyz", node.http))
                .timeout(Duration::from_secs(2))
                .send()
                .await
            else {
                continue;
            };
            let Ok(body) = response.json::<Value>().await else {
                continue;
            };
            assert_eq!(body["cluster"]["node_id"], node.name.as_str(), "{body}");
            for p in body["cluster"]["partitions"].as_array().unwrap() {
                owners
                    .entry(p.as_u64().unwrap() as u32)
                    .or_default()
                    .push(node.name.clone());
            }
        }
        owners
    }

    /// Waits until every partition is owned by exactly one of `nodes`, each of which owns
    /// some; returns how long that took.
    async fn settled(&self, nodes: &[&Node], within: Duration) -> Duration {
        let started = Instant::now();
        loop {
            let owners = self.owners(nodes).await;
            let every_once = (0..PARTITIONS).all(|p| owners.get(&p).is_some_and(|o| o.len() == 1));
            let shared = nodes
                .iter()
                .all(|n| owners.values().any(|o| o.contains(&n.name)));
            if every_once && shared {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < within,
                "partitions not settled over {:?} within {within:?}: {owners:?}; log:\n{}",
                nodes.iter().map(|n| &n.name).collect::<Vec<_>>(),
                std::fs::read_to_string(self.log()).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until every device's person has all its fixes stored, then checks each track
    /// is exactly what was sent (each fix once) and each person has exactly one `zone_exit`.
    async fn check_exactly_once(&self, node: &Node, persons: &HashMap<String, String>) {
        let sent: Vec<DateTime<Utc>> = (0..FIXES).map(fix_time).collect();
        let mut wrong = Vec::new();
        for (device, person) in persons {
            let started = Instant::now();
            let times = loop {
                let track = self
                    .get(
                        node,
                        &format!(
                            "/api/v1/persons/{person}/track?from=2000-01-01T00:00:00Z&to=2100-01-01T00:00:00Z"
                        ),
                    )
                    .await;
                let times: Vec<DateTime<Utc>> = track["features"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|f| f["properties"]["time"].as_str().unwrap().parse().unwrap())
                    .collect();
                // Acknowledged means in the stream; the owner commits it soon after.
                if times.len() >= FIXES || started.elapsed() > Duration::from_secs(60) {
                    break times;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            };
            assert_eq!(times, sent, "{device}: every fix stored exactly once");
            let alerts = self
                .get(
                    node,
                    &format!("/api/v1/alerts?person_id={person}&limit=1000"),
                )
                .await;
            let exits = alerts["alerts"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|a| a["kind"] == "zone_exit")
                .count();
            if exits != 1 {
                wrong.push(format!(
                    "{device} (person {person}): {exits} zone_exit alerts"
                ));
            }
        }
        assert!(
            wrong.is_empty(),
            "every breach alerted exactly once, but: {wrong:?}; warnings:\n{}",
            self.warnings()
        );
    }
}

struct Node {
    name: String,
    child: Child,
    http: String,
    listeners: HashMap<Kind, SocketAddr>,
}

impl Node {
    async fn kill(&mut self) {
        self.child.start_kill().unwrap();
        self.child.wait().await.unwrap();
    }

    async fn terminate(&mut self) {
        let pid = self.child.id().expect("running").to_string();
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("exit after SIGTERM")
            .unwrap();
        assert!(status.success(), "{}: {status:?}", self.name);
    }
}

/// When this test run's tracks start: recent, so the fixes are neither stale nor future.
fn track_start() -> DateTime<Utc> {
    static START: std::sync::OnceLock<DateTime<Utc>> = std::sync::OnceLock::new();
    *START.get_or_init(|| {
        let now = Utc::now() - chrono::Duration::hours(1);
        DateTime::from_timestamp(now.timestamp(), 0).unwrap()
    })
}

/// The time of fix `n`: one every 30 s.
fn fix_time(n: usize) -> DateTime<Utc> {
    track_start() + chrono::Duration::seconds(n as i64 * 30)
}

/// Fix `n` of device `i`: 55 m further north each time (walking pace), out of the 1 km zone
/// about half way.
fn location(kind: Kind, id: &str, i: usize, n: usize) -> Vec<u8> {
    let serial = u16::try_from(n + 2).unwrap();
    let (lat, lon) = (HOME.1 + n as f64 * 0.0005, HOME.0 + i as f64 * 1e-5);
    match kind {
        Kind::Gt06 => gt06::location(serial, &gt06::Fix::new(fix_time(n), lat, lon)),
        Kind::Jt808 => jt808::location(
            id,
            Edition::V2013,
            serial,
            &Location::new(fix_time(n), lat, lon),
        ),
    }
}

/// A device connection that yields the serial each acknowledgement answers.
struct Link {
    kind: Kind,
    socket: TcpStream,
    buffer: Vec<u8>,
}

impl Link {
    async fn open(kind: Kind, addr: SocketAddr, id: &str) -> Option<Link> {
        let socket = TcpStream::connect(addr).await.ok()?;
        socket.set_nodelay(true).ok()?;
        let mut link = Link {
            kind,
            socket,
            buffer: Vec::new(),
        };
        if kind == Kind::Gt06 {
            link.socket
                .write_all(&gt06::login(id, 1, None))
                .await
                .ok()?;
            if link.next_ack().await? != 1 {
                return None;
            }
        }
        Some(link)
    }

    async fn next_ack(&mut self) -> Option<u16> {
        loop {
            if let Some(serial) = self.take_ack() {
                return Some(serial);
            }
            let mut chunk = [0u8; 512];
            match tokio::time::timeout(Duration::from_secs(30), self.socket.read(&mut chunk)).await
            {
                Ok(Ok(0)) | Ok(Err(_)) => return None,
                Ok(Ok(n)) => self.buffer.extend_from_slice(&chunk[..n]),
                Err(_) => panic!("no acknowledgement and no close within 30 s"),
            }
        }
    }

    fn take_ack(&mut self) -> Option<u16> {
        match self.kind {
            Kind::Gt06 => {
                if self.buffer.len() < 10 {
                    return None;
                }
                let ack: Vec<u8> = self.buffer.drain(..10).collect();
                Some(u16::from_be_bytes([ack[4], ack[5]]))
            }
            Kind::Jt808 => {
                let end = self.buffer.iter().skip(1).position(|b| *b == 0x7e)? + 1;
                let frame: Vec<u8> = self.buffer.drain(..=end).collect();
                let raw = unescape(&frame).unwrap();
                let content = &raw[1..raw.len() - 2];
                assert_eq!(u16::from_be_bytes([content[0], content[1]]), 0x8001);
                assert_eq!(content[12 + 4], 0, "result 0");
                Some(u16::from_be_bytes([content[12], content[13]]))
            }
        }
    }
}

/// The listeners of each node, `None` once it is gone.
type Nodes = Vec<Option<HashMap<Kind, SocketAddr>>>;

/// What one device saw.
struct Outcome {
    /// The nodes it was connected to, in order.
    nodes: Vec<usize>,
}

/// Sends every fix of device `i`, starting on node `i % nodes`, moving to the next live node
/// whenever its connection drops, until every fix is acknowledged.
async fn run_device(
    kind: Kind,
    i: usize,
    mut nodes: watch::Receiver<Nodes>,
    acks: Arc<AtomicUsize>,
    pace: Duration,
) -> Outcome {
    let id = device_id(kind, i);
    let mut acked = 0;
    let mut on = i;
    let mut visited = Vec::new();
    while acked < FIXES {
        let (index, addr) = loop {
            let current = nodes.borrow_and_update().clone();
            let live = (0..current.len())
                .map(|k| (on + k) % current.len())
                .find_map(|k| current[k].as_ref().map(|l| (k, l[&kind])));
            if let Some(found) = live {
                break found;
            }
            nodes.changed().await.unwrap();
        };
        let Some(mut link) = Link::open(kind, addr, &id).await else {
            on = index + 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        visited.push(index);
        let mut sent = acked;
        while acked < FIXES {
            while sent < FIXES && sent - acked < WINDOW {
                if link
                    .socket
                    .write_all(&location(kind, &id, i, sent))
                    .await
                    .is_err()
                {
                    break;
                }
                sent += 1;
            }
            let Some(serial) = link.next_ack().await else {
                break;
            };
            assert_eq!(
                usize::from(serial),
                acked + 2,
                "{id}: acknowledgements in order"
            );
            acked += 1;
            acks.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(pace).await;
        }
        on = index + 1;
    }
    Outcome { nodes: visited }
}

fn spawn_devices(
    nodes: &watch::Receiver<Nodes>,
    acks: &Arc<AtomicUsize>,
    pace: Duration,
) -> Vec<tokio::task::JoinHandle<Outcome>> {
    [Kind::Gt06, Kind::Jt808]
        .into_iter()
        .flat_map(|kind| (0..DEVICES_PER_PROTOCOL).map(move |i| (kind, i)))
        .map(|(kind, i)| tokio::spawn(run_device(kind, i, nodes.clone(), acks.clone(), pace)))
        .collect()
}

async fn until_acks(acks: &AtomicUsize, n: usize, log: &Path) {
    let started = Instant::now();
    while acks.load(Ordering::Relaxed) < n {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "devices did not get going; log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn finish(devices: Vec<tokio::task::JoinHandle<Outcome>>) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    for device in devices {
        outcomes.push(
            tokio::time::timeout(Duration::from_secs(180), device)
                .await
                .expect("device finishes")
                .unwrap(),
        );
    }
    outcomes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_run_loses_nothing_and_doubles_nothing() {
    let Some(deployment) = Deployment::create("cluster_kill").await else {
        return;
    };
    // The persons exist before the other nodes start (they would learn of them within a
    // lease round anyway).
    let a = deployment.start("a").await;
    let persons = deployment.persons(&a).await;
    let b = deployment.start("b").await;
    let mut c = deployment.start("c").await;
    deployment
        .settled(&[&a, &b, &c], Duration::from_secs(30))
        .await;

    let (nodes_tx, nodes) = watch::channel(vec![
        Some(a.listeners.clone()),
        Some(b.listeners.clone()),
        Some(c.listeners.clone()),
    ]);
    let acks = Arc::new(AtomicUsize::new(0));
    let devices = spawn_devices(&nodes, &acks, Duration::from_millis(40));
    let total = 2 * DEVICES_PER_PROTOCOL * FIXES;
    until_acks(&acks, total / 2, &deployment.log()).await;

    // SIGKILL: no handler runs; its leases stop being renewed and its connections drop.
    let killed_owned: Vec<u32> = deployment.owners(&[&c]).await.into_keys().collect();
    nodes_tx.send_modify(|n| n[2] = None);
    c.kill().await;
    let acked_at_kill = acks.load(Ordering::Relaxed);
    let takeover = deployment.settled(&[&a, &b], 2 * LEASE_TTL).await;
    let outcomes = finish(devices).await;
    let moved = outcomes
        .iter()
        .filter(|o| o.nodes.contains(&2) && o.nodes.len() > 1)
        .count();
    eprintln!(
        "{} devices; {acked_at_kill} of {total} fixes acknowledged at the kill; the killed node's partitions {killed_owned:?} owned again after {takeover:?}; {moved} devices moved off it",
        outcomes.len()
    );
    deployment.check_exactly_once(&a, &persons).await;
    assert!(!killed_owned.is_empty(), "the killed node owned partitions");
    assert!(moved > 0, "devices on the killed node went on elsewhere");
    let (mut a, mut b) = (a, b);
    b.terminate().await;
    a.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_joining_takes_a_share_and_hands_it_back_when_stopped() {
    let Some(deployment) = Deployment::create("cluster_join").await else {
        return;
    };
    let a = deployment.start("a").await;
    let persons = deployment.persons(&a).await;
    let b = deployment.start("b").await;
    deployment.settled(&[&a, &b], Duration::from_secs(30)).await;

    let (_nodes_tx, nodes) =
        watch::channel(vec![Some(a.listeners.clone()), Some(b.listeners.clone())]);
    let acks = Arc::new(AtomicUsize::new(0));
    let devices = spawn_devices(&nodes, &acks, Duration::from_millis(40));
    let total = 2 * DEVICES_PER_PROTOCOL * FIXES;
    until_acks(&acks, total / 5, &deployment.log()).await;

    let mut c = deployment.start("c").await;
    let joined = deployment
        .settled(&[&a, &b, &c], Duration::from_secs(30))
        .await;
    let share: BTreeSet<u32> = deployment.owners(&[&c]).await.into_keys().collect();
    until_acks(&acks, total / 2, &deployment.log()).await;

    // SIGTERM: the node drains its partitions and empties their leases, which wakes the others.
    c.terminate().await;
    let handed_over = deployment.settled(&[&a, &b], LEASE_TTL).await;
    eprintln!(
        "joined node took {share:?} after {joined:?}; after its graceful stop they were owned again in {handed_over:?}"
    );
    assert!(!share.is_empty());
    finish(devices).await;
    deployment.check_exactly_once(&a, &persons).await;
    let (mut a, mut b) = (a, b);
    b.terminate().await;
    a.terminate().await;
}

/// Event `seq` to the number of times it came, and the alert ids the events carried.
type Received = (BTreeMap<i64, usize>, BTreeSet<String>);

/// A webhook receiver that acknowledges everything and counts each event it was sent.
#[derive(Clone, Default)]
struct CountingReceiver {
    received: Arc<std::sync::Mutex<Received>>,
}

impl CountingReceiver {
    async fn start() -> (CountingReceiver, String) {
        let receiver = CountingReceiver::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let state = receiver.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |body: axum::body::Bytes| {
                let state = state.clone();
                async move {
                    let event: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let mut received = state.received.lock().unwrap();
                    *received
                        .0
                        .entry(event["seq"].as_i64().unwrap_or(-1))
                        .or_default() += 1;
                    if let Some(id) = event["data"]["id"].as_str() {
                        received.1.insert(id.to_owned());
                    }
                    axum::http::StatusCode::NO_CONTENT
                }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        (receiver, url)
    }

    fn snapshot(&self) -> Received {
        self.received.lock().unwrap().clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_alert_is_delivered_by_one_node_and_the_webhook_moves_when_its_holder_dies() {
    let Some(mut deployment) = Deployment::create("cluster_dispatch").await else {
        return;
    };
    let (receiver, url) = CountingReceiver::start().await;
    deployment.extra = format!(
        "\n[[webhooks]]\nname = \"receiver\"\nurl = {url:?}\n\
         secret = \"whsec_Y2x1c3Rlci13ZWJob29rLWtleS1vZi0zMi1ieXRlcyE=\"\n\
         retry_initial = \"20ms\"\nretry_max = \"200ms\"\n"
    );
    let a = deployment.start("a").await;
    let persons = deployment.persons(&a).await;
    let b = deployment.start("b").await;
    let c = deployment.start("c").await;
    let mut nodes = [Some(a), Some(b), Some(c)];
    let live = |nodes: &[Option<Node>; 3]| -> Vec<String> {
        nodes.iter().flatten().map(|n| n.name.clone()).collect()
    };
    {
        let all: Vec<&Node> = nodes.iter().flatten().collect();
        deployment.settled(&all, Duration::from_secs(30)).await;
    }
    let key = "dispatch.webhook.receiver";
    let started = Instant::now();
    let holder = loop {
        if let Some(holder) = deployment.lease_holder(key).await {
            break holder;
        }
        assert!(
            started.elapsed() < 2 * LEASE_TTL,
            "nobody took the webhook's lease"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // Every device walks out of its zone; each of the 16 exits is one alert.
    let listeners = |nodes: &[Option<Node>; 3]| -> Nodes {
        nodes
            .iter()
            .map(|n| n.as_ref().map(|n| n.listeners.clone()))
            .collect()
    };
    let (nodes_tx, watch_nodes) = watch::channel(listeners(&nodes));
    let acks = Arc::new(AtomicUsize::new(0));
    let devices = spawn_devices(&watch_nodes, &acks, Duration::from_millis(40));
    finish(devices).await;
    let first = nodes.iter().flatten().next().unwrap();
    deployment.check_exactly_once(first, &persons).await;
    let mut alert_ids = BTreeSet::new();
    for person in persons.values() {
        let alerts = deployment
            .get(
                first,
                &format!("/api/v1/alerts?person_id={person}&limit=1000"),
            )
            .await;
        for alert in alerts["alerts"].as_array().unwrap() {
            alert_ids.insert(alert["id"].as_str().unwrap().to_owned());
        }
    }
    let wait_delivered = |alert_ids: BTreeSet<String>| {
        let receiver = receiver.clone();
        async move {
            let started = Instant::now();
            loop {
                let (_, ids) = receiver.snapshot();
                if alert_ids.is_subset(&ids) {
                    break;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "alerts not delivered: {:?}",
                    alert_ids.difference(&ids).collect::<Vec<_>>()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            // Any repeat from another node would come within a lease round.
            tokio::time::sleep(LEASE_TTL).await;
        }
    };
    wait_delivered(alert_ids.clone()).await;
    let (counts, _) = receiver.snapshot();
    let repeated: Vec<_> = counts.iter().filter(|(_, n)| **n != 1).collect();
    assert!(
        repeated.is_empty(),
        "each event delivered once by one of {:?}, but (seq, times): {repeated:?}",
        live(&nodes)
    );
    let delivered_before = counts.len();

    // The holder dies: another node takes the lease within two lease periods and delivers
    // what comes next (here: the alerts acknowledged through the API) once.
    let index = nodes
        .iter()
        .position(|n| n.as_ref().is_some_and(|n| n.name == holder))
        .unwrap();
    nodes[index].take().unwrap().kill().await;
    nodes_tx.send_replace(listeners(&nodes));
    let started = Instant::now();
    let successor = loop {
        if let Some(next) = deployment.lease_holder(key).await {
            if next != holder {
                break next;
            }
        }
        assert!(
            started.elapsed() < 2 * LEASE_TTL + Duration::from_secs(1),
            "the webhook's lease not taken over from {holder}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let survivor = nodes.iter().flatten().next().unwrap();
    for id in &alert_ids {
        deployment
            .api(
                survivor,
                reqwest::Method::POST,
                &format!("/api/v1/alerts/{id}/ack"),
                json!({"note": "seen"}),
            )
            .await;
    }
    let started = Instant::now();
    loop {
        let (counts, _) = receiver.snapshot();
        if counts.len() >= delivered_before + alert_ids.len() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "acknowledgements not delivered after the takeover by {successor}: {} of {}",
            counts.len() - delivered_before,
            alert_ids.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(LEASE_TTL).await;
    let (counts, _) = receiver.snapshot();
    let repeated: Vec<_> = counts.iter().filter(|(_, n)| **n != 1).collect();
    assert!(
        repeated.is_empty(),
        "each event delivered once after the takeover by {successor}, but (seq, times): {repeated:?}"
    );
    eprintln!(
        "{} events delivered once each; lease moved from {holder} to {successor} in {:?}",
        counts.len(),
        started.elapsed()
    );
    for node in nodes.iter_mut().flatten() {
        node.terminate().await;
    }
}

/// Reads one JT/T 808 frame from a terminal's socket: message id, serial, body.
async fn read_jt808_frame(socket: &mut TcpStream, buffer: &mut Vec<u8>) -> (u16, u16, Vec<u8>) {
    loop {
        if let Some(end) = buffer.iter().skip(1).position(|b| *b == 0x7e) {
            let frame: Vec<u8> = buffer.drain(..=end + 1).collect();
            let raw = unescape(&frame).unwrap();
            let content = &raw[1..raw.len() - 2];
            let id = u16::from_be_bytes([content[0], content[1]]);
            let body_len = usize::from(u16::from_be_bytes([content[2], content[3]]) & 0x03ff);
            let serial = u16::from_be_bytes([content[10], content[11]]);
            return (id, serial, content[12..12 + body_len].to_vec());
        }
        let mut chunk = [0u8; 512];
        let n = tokio::time::timeout(Duration::from_secs(15), socket.read(&mut chunk))
            .await
            .expect("a frame within 15 s")
            .unwrap();
        assert!(n > 0, "the node closed the terminal's connection");
        buffer.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_made_on_one_node_reaches_a_terminal_on_another_and_is_acknowledged() {
    let Some(deployment) = Deployment::create("cluster_commands").await else {
        return;
    };
    let a = deployment.start("a").await;
    deployment.persons(&a).await;
    let b = deployment.start("b").await;
    deployment.settled(&[&a, &b], Duration::from_secs(30)).await;

    // A JT/T 808 terminal registers and authenticates on node b.
    let terminal = device_id(Kind::Jt808, 0);
    let edition = Edition::V2013;
    let mut socket = TcpStream::connect(b.listeners[&Kind::Jt808]).await.unwrap();
    let mut buffer = Vec::new();
    socket
        .write_all(&jt808::registration(
            &terminal, edition, 1, "EWALL", "W1", "T0001", "",
        ))
        .await
        .unwrap();
    let (id, _, body) = read_jt808_frame(&mut socket, &mut buffer).await;
    assert_eq!(id, 0x8100);
    let code = String::from_utf8(body[3..].to_vec()).unwrap();
    socket
        .write_all(&jt808::authentication(&terminal, edition, 2, &code))
        .await
        .unwrap();
    assert_eq!(read_jt808_frame(&mut socket, &mut buffer).await.0, 0x8001);

    // The command is made through node a, which does not hold the terminal's connection.
    let command = deployment
        .api(
            &a,
            reqwest::Method::POST,
            &format!("/api/v1/devices/{terminal}/commands"),
            json!({"type": "set_interval", "interval_s": 30}),
        )
        .await;
    let (id, serial, body) = read_jt808_frame(&mut socket, &mut buffer).await;
    assert_eq!(
        id, 0x8103,
        "the parameter setting reached the terminal on b"
    );
    assert_eq!(body, [1, 0, 0, 0, 0x29, 4, 0, 0, 0, 30]);
    let mut answer = serial.to_be_bytes().to_vec();
    answer.extend_from_slice(&0x8103u16.to_be_bytes());
    answer.push(0);
    socket
        .write_all(&jt808::frame(0x0001, &terminal, edition, 3, &answer))
        .await
        .unwrap();

    // The answer, recorded by b, is what a's API reports.
    let path = format!(
        "/api/v1/devices/{terminal}/commands/{}",
        command["id"].as_str().unwrap()
    );
    let started = Instant::now();
    loop {
        let now = deployment.get(&a, &path).await;
        if now["status"] == "acknowledged" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "command not acknowledged: {now}; warnings:\n{}",
            deployment.warnings()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (mut a, mut b) = (a, b);
    b.terminate().await;
    a.terminate().await;
}

/// How a test's leave reaches the store.
#[derive(Clone, Copy, PartialEq)]
enum Grant {
    /// Through node a's API, which announces it to the owner.
    Api,
    /// Written to the store behind the nodes' backs: no notice is ever sent, as when the
    /// notice is lost on its way.
    StoreOnly,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leave_granted_on_one_node_reaches_the_owner_of_the_persons_partition() {
    if let Some(deployment) = Deployment::create("cluster_notices").await {
        walk_out_during_a_leave(deployment, Grant::Api).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leave_whose_notice_is_lost_reaches_the_owner_from_the_store() {
    if let Some(deployment) = Deployment::create("cluster_lost_notice").await {
        walk_out_during_a_leave(deployment, Grant::StoreOnly).await;
    }
}

/// A counter of a node's `/metrics`.
async fn counter(deployment: &Deployment, node: &Node, name: &str) -> u64 {
    let text = deployment
        .client
        .get(format!("http://{}/metrics", node.http))
        .bearer_auth(&deployment.token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0)
}

/// A leave granted for a person whose partition b owns, then the person's terminal walks out
/// of its zone through a: no breach during the leave, `leave_overdue` from b at its end.
async fn walk_out_during_a_leave(deployment: Deployment, grant: Grant) {
    let a = deployment.start("a").await;
    let persons = deployment.persons(&a).await;
    let b = deployment.start("b").await;
    deployment.settled(&[&a, &b], Duration::from_secs(30)).await;

    // A person whose partition b owns.
    let owned_by_b: BTreeSet<u32> = deployment.owners(&[&b]).await.into_keys().collect();
    let (device, person) = persons
        .iter()
        .filter(|(device, _)| device.starts_with("1392"))
        .find(|(_, person)| {
            let id: uuid::Uuid = person.parse().unwrap();
            owned_by_b.contains(&ewall::cluster::partition_of(&id, PARTITIONS))
        })
        .map(|(d, p)| (d.clone(), p.clone()))
        .expect("b owns some JT/T 808 terminal's person");
    let i: usize = device[4..].parse().unwrap();
    let zones = deployment
        .get(&a, &format!("/api/v1/persons/{person}/zones"))
        .await;
    // The whole walk is inside the leave's window, which ends a few seconds from now.
    let from = track_start() - chrono::Duration::minutes(1);
    let end = Utc::now() + chrono::Duration::seconds(6);
    match grant {
        Grant::Api => {
            deployment
                .api(
                    &a,
                    reqwest::Method::POST,
                    &format!("/api/v1/persons/{person}/leaves"),
                    json!({
                        "from": from.to_rfc3339(),
                        "to": end.to_rfc3339(),
                        "zone_ids": zones["zone_ids"],
                        "reason": "hospital",
                        "approved_by": "officer 7",
                    }),
                )
                .await;
        }
        Grant::StoreOnly => {
            use ewall::store::SupervisionRecords;
            const FROM_STORE: &str = "ewall_cluster_store_notices_total";
            let told_before = counter(&deployment, &b, FROM_STORE).await;
            let store = ewall::store::postgres::PgStore::open(
                &deployment.database.url,
                &ewall::store::StoreConfig::default(),
            )
            .await
            .unwrap();
            let zone_ids = zones["zone_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|z| z.as_str().unwrap().parse().unwrap())
                .collect();
            store
                .create_leave(&ewall::model::LeavePermit {
                    id: uuid::Uuid::new_v4(),
                    person_id: person.parse().unwrap(),
                    from,
                    to: end,
                    zone_ids,
                    reason: "hospital".into(),
                    approved_by: "officer 7".into(),
                    created_at: Utc::now(),
                    cancelled_at: None,
                    ended_at: None,
                })
                .await
                .unwrap();
            // b reads it from the store at its next round.
            let started = Instant::now();
            while counter(&deployment, &b, FROM_STORE).await == told_before {
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "b never read the leave from the store; warnings:\n{}",
                    deployment.warnings()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    // The terminal walks out of its zone (through a, the stream takes it to b).
    let mut link = Link::open(Kind::Jt808, a.listeners[&Kind::Jt808], &device)
        .await
        .unwrap();
    for n in 0..FIXES {
        link.socket
            .write_all(&location(Kind::Jt808, &device, i, n))
            .await
            .unwrap();
        assert_eq!(link.next_ack().await, Some(u16::try_from(n + 2).unwrap()));
    }

    // On leave: no zone_exit; at its end, still out: leave_overdue, raised by b's timer.
    let started = Instant::now();
    let kinds = loop {
        let alerts = deployment
            .get(&a, &format!("/api/v1/alerts?person_id={person}&limit=100"))
            .await;
        let kinds: Vec<String> = alerts["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["kind"].as_str().unwrap().to_owned())
            .collect();
        if !kinds.is_empty() && Utc::now() > end + chrono::Duration::seconds(2) {
            break kinds;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no alert after the leave's end: {kinds:?}; warnings:\n{}",
            deployment.warnings()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(kinds, ["leave_overdue"], "the owner knew of the leave");
    let (mut a, mut b) = (a, b);
    b.terminate().await;
    a.terminate().await;
}

/// Reads server-sent events from `response` until one named `position` satisfies `wanted`.
async fn next_position(
    response: &mut reqwest::Response,
    buffer: &mut String,
    wanted: impl Fn(&Value) -> bool,
) -> Value {
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            while let Some(end) = buffer.find("\n\n") {
                let block: String = buffer.drain(..end + 2).collect();
                if !block.lines().any(|l| l.trim() == "event: position") {
                    continue;
                }
                let data: String = block
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(str::trim)
                    .collect();
                let data: Value = serde_json::from_str(&data).unwrap();
                if wanted(&data) {
                    return data;
                }
            }
            let chunk = response.chunk().await.unwrap().expect("the stream goes on");
            buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await
    .expect("the position within 20 s")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fix_committed_by_one_node_shows_on_the_positions_stream_of_another() {
    let Some(deployment) = Deployment::create("cluster_live").await else {
        return;
    };
    let a = deployment.start("a").await;
    let persons = deployment.persons(&a).await;
    let b = deployment.start("b").await;
    let c = deployment.start("c").await;
    let nodes = [&a, &b, &c];
    deployment.settled(&nodes, Duration::from_secs(30)).await;

    // A GT06 wearer; the node owning the person's partition, one to send through and one to
    // watch from, all three different.
    let owners = deployment.owners(&nodes).await;
    let (device, person) = persons
        .iter()
        .find(|(device, _)| device.starts_with("86"))
        .map(|(d, p)| (d.clone(), p.clone()))
        .unwrap();
    let partition = ewall::cluster::partition_of(&person.parse().unwrap(), PARTITIONS);
    let owner = nodes
        .iter()
        .position(|n| owners[&partition] == [n.name.clone()])
        .unwrap();
    let (sender, watcher) = (nodes[(owner + 1) % 3], nodes[(owner + 2) % 3]);
    let i: usize = device[7..14].parse().unwrap();

    let mut stream = deployment
        .client
        .get(format!("http://{}/api/v1/positions/stream", watcher.http))
        .bearer_auth(&deployment.token)
        .send()
        .await
        .unwrap();
    // The stream follows the live feed from before its headers are sent.
    assert_eq!(stream.status(), 200);
    let mut buffer = String::new();

    let mut link = Link::open(Kind::Gt06, sender.listeners[&Kind::Gt06], &device)
        .await
        .unwrap();
    link.socket
        .write_all(&location(Kind::Gt06, &device, i, 0))
        .await
        .unwrap();
    assert_eq!(link.next_ack().await, Some(2));
    let first = next_position(&mut stream, &mut buffer, |p| {
        p["person_id"] == person.as_str()
    })
    .await;
    assert_eq!(first["device_id"], device.as_str());
    assert_eq!(first["state"], "compliant");
    assert!(
        (first["lat"].as_f64().unwrap() - HOME.1).abs() < 1e-6,
        "{first}"
    );

    // The walk out of the zone: the watcher sees the breach the owner raised.
    for n in 1..FIXES {
        link.socket
            .write_all(&location(Kind::Gt06, &device, i, n))
            .await
            .unwrap();
        assert_eq!(link.next_ack().await, Some(u16::try_from(n + 2).unwrap()));
    }
    let breach = next_position(&mut stream, &mut buffer, |p| {
        p["person_id"] == person.as_str() && p["state"] == "breach"
    })
    .await;
    eprintln!(
        "fix sent to {}, committed by {} (partition {partition}), shown by {}: {breach}",
        sender.name, nodes[owner].name, watcher.name
    );
    drop(stream);
    let (mut a, mut b, mut c) = (a, b, c);
    c.terminate().await;
    b.terminate().await;
    a.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_reports_the_database_going_away_and_coming_back() {
    let Some(mut deployment) = Deployment::create("cluster_outage").await else {
        return;
    };
    let proxy =
        common::proxy::Proxy::start(common::proxy::upstream_of(&deployment.database.url).await)
            .await;
    deployment.store_url = Some(common::proxy::through(&deployment.database.url, proxy.addr));
    deployment.store_extra = "acquire_timeout = \"1s\"\n".into();
    let a = deployment.start("a").await;
    let persons = deployment.persons(&a).await;
    let b = deployment.start("b").await;
    deployment.settled(&[&a, &b], Duration::from_secs(30)).await;
    let readiness = |node: &Node| {
        let request = deployment
            .client
            .get(format!("http://{}/readyz", node.http))
            .timeout(Duration::from_secs(5));
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        }
    };
    assert_eq!(readiness(&a).await.0, 200);

    let (_nodes_tx, nodes) =
        watch::channel(vec![Some(a.listeners.clone()), Some(b.listeners.clone())]);
    let acks = Arc::new(AtomicUsize::new(0));
    let devices = spawn_devices(&nodes, &acks, Duration::from_millis(40));
    let total = 2 * DEVICES_PER_PROTOCOL * FIXES;
    until_acks(&acks, total / 5, &deployment.log()).await;

    proxy.cut();
    let started = Instant::now();
    let body = loop {
        let (status, body) = readiness(&a).await;
        if status == 503 && body["held_positions"].as_u64().unwrap_or(0) > 0 {
            break body;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "not degraded with positions held: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(body["type"], "urn:ewall:problem:degraded", "{body}");
    assert_eq!(body["title"], "degraded", "{body}");
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.contains("cannot reach the database"), "{body}");
    assert!(detail.contains("wait in the fix stream"), "{body}");
    assert!(body["since"].is_string(), "{body}");
    assert_eq!(body["cluster"]["node_id"], "a", "{body}");
    eprintln!("degraded: {body}");

    proxy.restore();
    let started = Instant::now();
    loop {
        let (status, body) = readiness(&a).await;
        if status == 200 {
            assert_eq!(body["status"], "ready", "{body}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "not ready again: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    finish(devices).await;
    deployment.check_exactly_once(&a, &persons).await;
    let (mut a, mut b) = (a, b);
    b.terminate().await;
    a.terminate().await;
}

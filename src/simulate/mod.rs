//! `ewall simulate`: a load generator that plays many devices against a running service and
//! reports what it measured as one JSON summary on stdout.
//!
//! Each simulated device opens its own connection (from its own 127.x.y.z source address when
//! the target is on loopback), logs in the way its protocol does, and then sends one fix every
//! `--interval` (or `--rate` fixes a second), each time waiting for the acknowledgement before
//! the next: the service acknowledges only after the commit, so acknowledged fixes per second
//! is what the service durably stores. The tracks are walks inside one circular zone, a share
//! of them leaving it (`track.rs`); JT/T 808 terminals send every few reports as a blind-area
//! batch. With `--register --api URL --token T` the run first creates the zone, one person per
//! device and the device bindings through the API (`api.rs`); with `--api` it counts the alerts
//! the run raises from the alert stream.
//!
//! A process holds at most as many devices as its open-file limit allows (raised to the hard
//! limit first); a larger run re-executes this command once per share of the devices (the
//! hidden `--shard K/N`), each printing its [`tally::Tally`], and merges them, latency
//! histograms included, into the summary.
//!
//! Layout: `wire.rs` frames and replies, `link.rs` one device's connection, `track.rs` the
//! walks, `api.rs` registration and the alert stream, `tally.rs` counts and latencies,
//! `progress.rs` what a person watching sees.

pub mod api;
pub mod link;
pub mod progress;
pub mod tally;
pub mod track;
pub mod wire;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{watch, Notify, Semaphore};
use tokio::time::Instant;
use tracing::{info, warn};

use api::{AlertsCounted, SentFixes};
use link::{ErrorKind, Link, LinkError};
use progress::{Counters, Display, Snapshot};
use tally::{Histogram, Tally};
use track::{TrackClock, TrackPoint, Walker, Zone};

/// Connections being opened at once while the devices log in, so that ten thousand devices
/// do not all knock at the listener's backlog in the same millisecond.
const CONNECTS_AT_ONCE: usize = 256;
/// Descriptors a process keeps for itself (runtime, stdio, the API client) besides one per
/// device.
const RESERVED_DESCRIPTORS: u64 = 100;
/// Pause after a device's connection failed before it connects again.
const RECONNECT_PAUSE: Duration = Duration::from_secs(1);

/// What the simulated devices speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum LoadProtocol {
    /// GT06 wristbands (TCP).
    Gt06,
    /// JT/T 808 terminals (TCP).
    Jt808,
    /// H02 trackers (TCP, text).
    H02,
    /// Smartwatches, "3G" protocol (TCP, text).
    Watch,
    /// OsmAnd phone apps (HTTP).
    Osmand,
    /// MQTT gateways publishing JSON positions.
    Mqtt,
}

impl LoadProtocol {
    /// The name on the command line and in the summary.
    pub fn as_str(self) -> &'static str {
        match self {
            LoadProtocol::Gt06 => "gt06",
            LoadProtocol::Jt808 => "jt808",
            LoadProtocol::H02 => "h02",
            LoadProtocol::Watch => "watch",
            LoadProtocol::Osmand => "osmand",
            LoadProtocol::Mqtt => "mqtt",
        }
    }

    /// The port a service listens on for it by default.
    pub fn default_port(self) -> u16 {
        match self {
            LoadProtocol::Gt06 => 5023,
            LoadProtocol::Jt808 => 5015,
            LoadProtocol::H02 => 5013,
            LoadProtocol::Watch => 5093,
            LoadProtocol::Osmand => 5055,
            LoadProtocol::Mqtt => 1883,
        }
    }
}

/// One shard of a run spread over several processes: `index` of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This process's share, from 0.
    pub index: u64,
    /// Shares in all.
    pub count: u64,
}

fn parse_shard(text: &str) -> Result<Shard, String> {
    let (index, count) = text
        .split_once('/')
        .ok_or_else(|| format!("{text:?} is not K/N"))?;
    let index: u64 = index.parse().map_err(|_| format!("{text:?} is not K/N"))?;
    let count: u64 = count.parse().map_err(|_| format!("{text:?} is not K/N"))?;
    if count == 0 || index >= count {
        return Err(format!("shard {text:?}: K must be below N"));
    }
    Ok(Shard { index, count })
}

fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text)
        .map_err(|e| format!("{text:?} is not a duration like 10s or 250ms: {e}"))?;
    if d.is_zero() {
        return Err("must be longer than zero".into());
    }
    Ok(d)
}

fn parse_rate(text: &str) -> Result<f64, String> {
    let rate: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of fixes per second"))?;
    if !(rate.is_finite() && rate > 0.0 && rate <= 1000.0) {
        return Err(format!(
            "{text} fixes per device per second: must be above 0 and at most 1000"
        ));
    }
    Ok(rate)
}

fn parse_share(text: &str) -> Result<f64, String> {
    let share: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a share between 0 and 1"))?;
    if !(0.0..=1.0).contains(&share) {
        return Err(format!("{text} is not a share between 0 and 1"));
    }
    Ok(share)
}

/// `ewall simulate`'s flags.
#[derive(Debug, Clone, clap::Args)]
pub struct SimulateArgs {
    /// What the devices speak.
    #[arg(long, value_enum)]
    pub protocol: LoadProtocol,
    /// Devices, each on its own connection.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub devices: u64,
    /// Fixes per device per second (default 1).
    #[arg(long, value_parser = parse_rate, conflicts_with = "interval", allow_negative_numbers = true)]
    pub rate: Option<f64>,
    /// Time between one device's fixes (`10s`, `250ms`), instead of --rate.
    #[arg(long, value_parser = parse_positive_duration)]
    pub interval: Option<Duration>,
    /// How long the devices send fixes, counted once all have logged in.
    #[arg(long, default_value = "10s", value_parser = parse_positive_duration)]
    pub duration: Duration,
    /// The service's listener for the protocol, or the MQTT broker (`host:port`); by default
    /// the protocol's usual port on 127.0.0.1.
    #[arg(long)]
    pub target: Option<String>,
    /// Create the zone, one person per device and the devices through the API first.
    #[arg(long)]
    pub register: bool,
    /// The service's HTTP API (`http://127.0.0.1:8080`): alerts are counted from its alert
    /// stream, and --register creates the devices there.
    #[arg(long)]
    pub api: Option<String>,
    /// An API token (admin or operator to --register; any role to count alerts).
    #[arg(long, env = "EWALL_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Share of the wearers that leave the zone a quarter of the way through the run.
    #[arg(long, default_value_t = 0.1, value_parser = parse_share)]
    pub breach_share: f64,
    /// JT/T 808: every Nth report is a blind-area batch (0: never).
    #[arg(long, default_value_t = 10)]
    pub batch_every: u32,
    /// JT/T 808: positions in a blind-area batch.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(2..=30))]
    pub batch_size: u32,
    /// How long a device waits for an acknowledgement before it counts an error and connects
    /// anew.
    #[arg(long, default_value = "10s", value_parser = parse_positive_duration)]
    pub ack_timeout: Duration,
    /// Index of the first device: ids are derived from it, so runs with different values use
    /// different devices.
    #[arg(long, default_value_t = 0)]
    pub first_device: u64,
    /// Seed of the walks.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Latitude of the zone's centre.
    #[arg(long, default_value_t = 25.515, allow_negative_numbers = true)]
    pub zone_lat: f64,
    /// Longitude of the zone's centre.
    #[arg(long, default_value_t = 112.3625, allow_negative_numbers = true)]
    pub zone_lon: f64,
    /// Radius of the zone, metres.
    #[arg(long, default_value_t = 500.0)]
    pub zone_radius_m: f64,
    /// Supervision level of the registered persons: strict, normal or lenient.
    #[arg(long, default_value = "normal", value_parser = ["strict", "normal", "lenient"])]
    pub level: String,
    /// First topic levels of the MQTT positions topics.
    #[arg(long, default_value = "ewall/v1")]
    pub topic_prefix: String,
    /// Most devices one process runs; by default what its open-file limit allows. More
    /// devices are run by further processes of this command.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub devices_per_process: Option<u64>,
    /// Threads of each simulator process. One costs the least CPU per fix (see
    /// [`runtime`]); on a machine the service and other work share, a second thread gets the
    /// simulator a larger share of the CPU, at a higher cost per fix.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub threads: u16,
    /// This process runs shard K of N of the devices and prints its tally (set by the parent).
    #[arg(long, hide = true, value_parser = parse_shard)]
    pub shard: Option<Shard>,
}

/// Why a run could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    /// Flags that do not fit together.
    #[error("{0}")]
    Usage(String),
    /// The target address does not resolve.
    #[error("--target {0}")]
    Target(String),
    /// The API refused or failed.
    #[error("API: {0}")]
    Api(String),
    /// A shard process failed.
    #[error("shard process: {0}")]
    Shard(String),
}

/// Everything a run needs to know, derived from the flags.
#[derive(Debug, Clone)]
struct Plan {
    protocol: LoadProtocol,
    /// Devices in the whole run.
    devices: u64,
    interval: Duration,
    duration: Duration,
    target: SocketAddr,
    ack_timeout: Duration,
    batch_every: u32,
    batch_size: u32,
    first_device: u64,
    seed: u64,
    zone: Zone,
    /// Fixes each device sends at most.
    planned: u64,
    /// Devices `0..breaching` leave the zone.
    breaching: u64,
    /// The default dwell of the registered persons' level, which the track clock must
    /// outlast for a departure to be confirmed.
    confirmation: crate::fence::Confirmation,
    topic_prefix: String,
}

impl Plan {
    fn device_id(&self, i: u64) -> String {
        wire::device_id(self.protocol, self.first_device + i)
    }
}

async fn plan(args: &SimulateArgs) -> Result<Plan, SimulateError> {
    if args.register && (args.api.is_none() || args.token.is_none()) {
        return Err(SimulateError::Usage(
            "--register needs --api URL and --token T (or EWALL_TOKEN)".into(),
        ));
    }
    if args.api.is_some() && args.token.is_none() {
        return Err(SimulateError::Usage(
            "--api needs --token T (or EWALL_TOKEN): the alert stream takes a token".into(),
        ));
    }
    if !(-85.0..=85.0).contains(&args.zone_lat) || !(-180.0..=180.0).contains(&args.zone_lon) {
        return Err(SimulateError::Usage(format!(
            "--zone-lat {} --zone-lon {}: the centre must be within ±85° latitude and ±180° longitude",
            args.zone_lat, args.zone_lon
        )));
    }
    if !(50.0..=50_000.0).contains(&args.zone_radius_m) {
        return Err(SimulateError::Usage(format!(
            "--zone-radius-m {}: must be 50 to 50000 metres",
            args.zone_radius_m
        )));
    }
    let interval = match (args.rate, args.interval) {
        (_, Some(interval)) => interval,
        (Some(rate), None) => Duration::from_secs_f64(1.0 / rate),
        (None, None) => Duration::from_secs(1),
    };
    let text = args
        .target
        .clone()
        .unwrap_or_else(|| format!("127.0.0.1:{}", args.protocol.default_port()));
    let target = tokio::net::lookup_host(&text)
        .await
        .map_err(|e| SimulateError::Target(format!("{text:?}: {e}")))?
        .min_by_key(|a| a.is_ipv6())
        .ok_or_else(|| SimulateError::Target(format!("{text:?} resolves to no address")))?;
    let planned = (args.duration.as_secs_f64() / interval.as_secs_f64())
        .ceil()
        .max(1.0) as u64;
    let level: crate::model::SupervisionLevel = args
        .level
        .parse()
        .map_err(|_| SimulateError::Usage(format!("--level {:?}", args.level)))?;
    let confirmation = crate::fence::LevelsConfig::default()
        .get(level)
        .confirmation();
    Ok(Plan {
        protocol: args.protocol,
        devices: args.devices,
        interval,
        duration: args.duration,
        target,
        ack_timeout: args.ack_timeout,
        batch_every: args.batch_every,
        batch_size: args.batch_size,
        first_device: args.first_device,
        seed: args.seed,
        zone: Zone {
            lat: args.zone_lat,
            lon: args.zone_lon,
            radius_m: args.zone_radius_m,
        },
        planned,
        breaching: (args.breach_share * args.devices as f64).round() as u64,
        confirmation,
        topic_prefix: args.topic_prefix.trim_end_matches('/').to_owned(),
    })
}

/// The runtime a run is driven by, with `threads` threads (`--threads`), by default one. The
/// simulator shares the machine with the service it loads, and every fix is a write, a read
/// and a wake-up; on one thread those wake-ups are a queue push, where a pool of workers
/// wakes a parked one through a futex or the I/O driver's eventfd and moves tasks between its
/// queues (a third of the simulator's CPU per fix at a fixed rate, `benches/README.md`).
///
/// # Errors
/// When the runtime cannot be started.
pub fn runtime(threads: u16) -> std::io::Result<tokio::runtime::Runtime> {
    if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(usize::from(threads))
            .enable_all()
            .build()
    }
}

/// Runs the simulation and returns what to print on stdout: the summary, or in a shard
/// process its tally.
///
/// # Errors
/// [`SimulateError`] for flags that do not fit, a target that does not resolve, a failed
/// registration or a failed shard. Errors of single devices are counted in the summary.
pub async fn run(args: SimulateArgs) -> Result<Value, SimulateError> {
    let plan = plan(&args).await?;
    if let Some(shard) = args.shard {
        let range = shard_range(plan.devices, shard);
        let counters = Arc::new(Counters::default());
        let display = progress::show(
            Display::Shard,
            counters.clone(),
            range.end - range.start,
            plan.duration,
        );
        let tally = run_devices(&plan, range, counters, None).await;
        display.finish().await;
        return Ok(json!({ "tally": tally }));
    }
    let api = match (&args.api, &args.token) {
        (Some(url), Some(token)) => Some(api::Api::new(url, token)?),
        _ => None,
    };
    if let (true, Some(api)) = (args.register, &api) {
        register(&plan, api, &args.level).await?;
    }
    let per_process = args.devices_per_process.unwrap_or_else(devices_per_process);
    let processes = plan.devices.div_ceil(per_process);
    // Alerts can be timed from their fixes only when those are sent from this process.
    let sent = (api.is_some() && processes <= 1).then(|| Arc::new(SentFixes::default()));
    let alerts = match &api {
        Some(api) => Some(api.watch_alerts(sent.clone()).await?),
        None => None,
    };
    let counters = Arc::new(Counters::default());
    let display = progress::show(Display::Auto, counters.clone(), plan.devices, plan.duration);
    let tally = if processes <= 1 {
        run_devices(&plan, 0..plan.devices, counters, sent).await
    } else {
        info!(
            devices = plan.devices,
            processes, per_process, "Spreading the devices over several processes."
        );
        run_shards(&args, processes, counters).await?
    };
    display.finish().await;
    let alerts = match alerts {
        Some(watcher) => Some(
            watcher
                .finish(Duration::from_secs(1), Duration::from_secs(10))
                .await,
        ),
        None => None,
    };
    Ok(summary(&plan, processes, &tally, alerts))
}

/// The devices of shard `shard` of a run of `devices`.
fn shard_range(devices: u64, shard: Shard) -> Range<u64> {
    let share = |k: u64| (u128::from(devices) * u128::from(k) / u128::from(shard.count)) as u64;
    share(shard.index)..share(shard.index + 1)
}

/// Devices one process can hold: its open-file limit (raised to the hard limit) less what it
/// needs for itself.
fn devices_per_process() -> u64 {
    #[cfg(unix)]
    {
        use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
        let limit = getrlimit(Resource::Nofile);
        if limit.current != limit.maximum {
            let _ = setrlimit(
                Resource::Nofile,
                Rlimit {
                    current: limit.maximum,
                    maximum: limit.maximum,
                },
            );
        }
        match getrlimit(Resource::Nofile).current {
            Some(n) => n.saturating_sub(RESERVED_DESCRIPTORS).max(1),
            None => u64::MAX,
        }
    }
    #[cfg(not(unix))]
    {
        u64::MAX
    }
}

async fn register(plan: &Plan, api: &api::Api, level: &str) -> Result<(), SimulateError> {
    let zone_id = api
        .create_zone(
            &plan.zone,
            &format!("simulated zone {}", Utc::now().format("%Y-%m-%d %H:%M:%S")),
        )
        .await?;
    let done = AtomicU64::new(0);
    let every = (plan.devices / 10).max(1);
    api.register_all(
        (0..plan.devices).map(|i| plan.device_id(i)),
        level,
        &zone_id,
        |count| {
            let before = done.fetch_add(count, Ordering::Relaxed);
            let n = before + count;
            if n / every > before / every || n == plan.devices {
                info!(registered = n, of = plan.devices, "Registering devices.");
            }
        },
    )
    .await
}

/// What the devices of one process share.
struct Shared {
    counters: Arc<Counters>,
    errors: Mutex<BTreeMap<String, u64>>,
    latency: Mutex<Histogram>,
    frames: AtomicU64,
    logged_in: AtomicU64,
    login_attempted: AtomicU64,
    login_notify: Notify,
    connect_slots: Semaphore,
    /// Where breaching devices note their fixes, when the alerts are timed.
    sent_fixes: Option<Arc<SentFixes>>,
}

impl Shared {
    fn error(&self, protocol: LoadProtocol, e: &LinkError) {
        self.counters.errors.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut errors) = self.errors.lock() {
            *errors.entry(e.kind.as_str().to_owned()).or_default() += 1;
        }
        if let Some(suppressed) = crate::log_limit::allow(protocol.as_str(), e.kind.as_str()) {
            warn!(protocol = protocol.as_str(), suppressed, error = %e, "Simulated device error.");
        }
    }
}

/// Runs devices `range` of the plan in this process.
async fn run_devices(
    plan: &Plan,
    range: Range<u64>,
    counters: Arc<Counters>,
    sent_fixes: Option<Arc<SentFixes>>,
) -> Tally {
    let shared = Arc::new(Shared {
        counters,
        errors: Mutex::default(),
        latency: Mutex::default(),
        frames: AtomicU64::new(0),
        logged_in: AtomicU64::new(0),
        login_attempted: AtomicU64::new(0),
        login_notify: Notify::new(),
        connect_slots: Semaphore::new(CONNECTS_AT_ONCE),
        sent_fixes,
    });
    let (start_tx, start_rx) = watch::channel::<Option<Instant>>(None);
    let clock = TrackClock::for_run(plan.planned, Utc::now(), plan.confirmation);
    let begun = Instant::now();
    let mut devices = tokio::task::JoinSet::new();
    let count = range.end - range.start;
    for i in range {
        let plan = plan.clone();
        let shared = shared.clone();
        let start_rx = start_rx.clone();
        devices.spawn(async move { device(&plan, i, clock, &shared, start_rx).await });
    }
    // The measured phase starts once every device has made its first attempt to log in.
    while shared.login_attempted.load(Ordering::Acquire) < count {
        shared.login_notify.notified().await;
    }
    let start = Instant::now();
    let connect_s = (start - begun).as_secs_f64();
    shared.counters.running.store(true, Ordering::Relaxed);
    let _ = start_tx.send(Some(start));
    while devices.join_next().await.is_some() {}
    // The run lasts its duration, or longer when the last acknowledgements came after it.
    let elapsed_s = start.elapsed().max(plan.duration).as_secs_f64();
    let snapshot = shared.counters.snapshot();
    Tally {
        devices: count,
        connected: shared.logged_in.load(Ordering::Relaxed),
        fixes_sent: snapshot.sent,
        fixes_acked: snapshot.acked,
        frames_sent: shared.frames.load(Ordering::Relaxed),
        errors: shared.errors.lock().map(|e| e.clone()).unwrap_or_default(),
        ack_latency: shared.latency.lock().map(|h| h.clone()).unwrap_or_default(),
        elapsed_s,
        connect_s,
    }
}

/// One device: log in, wait for the start, then report until the end of the run.
async fn device(
    plan: &Plan,
    i: u64,
    clock: TrackClock,
    shared: &Shared,
    mut start_rx: watch::Receiver<Option<Instant>>,
) {
    let id = plan.device_id(i);
    let index = plan.first_device + i;
    let source = link::source_address(plan.target, index);
    let mut walker = Walker::new(
        plan.zone,
        plan.seed,
        index,
        clock,
        plan.planned,
        i < plan.breaching,
    );
    let mut ever_logged_in = false;
    let open = || async {
        match tokio::time::timeout(
            plan.ack_timeout,
            Link::open(plan.protocol, &id, plan.target, source, &plan.topic_prefix),
        )
        .await
        {
            Ok(outcome) => outcome,
            Err(_) => Err(LinkError {
                kind: ErrorKind::AckTimeout,
                detail: format!("log-in not answered within {:?}", plan.ack_timeout),
            }),
        }
    };
    let mut link = {
        // Closed only if the run is dropped; then there is nothing left to connect for.
        let permit = shared.connect_slots.acquire().await;
        let outcome = open().await;
        drop(permit);
        match outcome {
            Ok(link) => Some(link),
            Err(e) => {
                shared.error(plan.protocol, &e);
                None
            }
        }
    };
    if link.is_some() {
        ever_logged_in = true;
        shared.logged_in.fetch_add(1, Ordering::Relaxed);
        shared.counters.connected.fetch_add(1, Ordering::Relaxed);
    }
    shared.login_attempted.fetch_add(1, Ordering::AcqRel);
    shared.login_notify.notify_one();
    let start = loop {
        if let Some(start) = *start_rx.borrow_and_update() {
            break start;
        }
        if start_rx.changed().await.is_err() {
            return;
        }
    };
    let end = start + plan.duration;
    // Spread the devices' sends evenly over one interval.
    let phase = plan.interval.mul_f64(i as f64 / plan.devices as f64);
    let mut next_at = start + phase;
    let mut retry_at = start;
    let mut reports: u64 = 0;
    let mut points: Vec<TrackPoint> = Vec::with_capacity(plan.batch_size as usize);
    loop {
        if next_at >= end {
            break;
        }
        // A JT/T 808 terminal's blind-area batch holds the fixes of `batch_size` intervals
        // without signal, sent at the end of them (when that is still within the run).
        let batch = plan.protocol == LoadProtocol::Jt808
            && link.is_some()
            && plan.batch_every > 0
            && reports % u64::from(plan.batch_every) == u64::from(plan.batch_every) - 1
            && next_at + plan.interval * (plan.batch_size - 1) < end;
        let n = if batch { plan.batch_size } else { 1 };
        let send_at = next_at + plan.interval * (n - 1);
        // A closed loop's next send is due already: no timer to set and fire.
        if send_at > Instant::now() {
            tokio::time::sleep_until(send_at).await;
        }
        let Some(current) = link.as_mut() else {
            if Instant::now() < retry_at {
                next_at = retry_at.max(next_at + plan.interval);
                continue;
            }
            match open().await {
                Ok(opened) => {
                    if !ever_logged_in {
                        ever_logged_in = true;
                        shared.logged_in.fetch_add(1, Ordering::Relaxed);
                        shared.counters.connected.fetch_add(1, Ordering::Relaxed);
                    }
                    link = Some(opened);
                }
                Err(e) => {
                    shared.error(plan.protocol, &e);
                    retry_at = Instant::now() + RECONNECT_PAUSE;
                }
            }
            continue;
        };
        points.clear();
        points.extend((0..n).map(|_| walker.next_point()));
        shared
            .counters
            .sent
            .fetch_add(u64::from(n), Ordering::Relaxed);
        shared.frames.fetch_add(1, Ordering::Relaxed);
        let sent_at = Instant::now();
        if let (true, Some(sent)) = (i < plan.breaching, &shared.sent_fixes) {
            for point in &points {
                sent.sent(&id, point.time, sent_at);
            }
        }
        let outcome = match tokio::time::timeout(plan.ack_timeout, current.report(&points)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(LinkError {
                kind: ErrorKind::AckTimeout,
                detail: format!("no acknowledgement within {:?}", plan.ack_timeout),
            }),
        };
        match outcome {
            Ok(()) => {
                let latency = sent_at.elapsed();
                shared
                    .counters
                    .acked
                    .fetch_add(u64::from(n), Ordering::Relaxed);
                if let Ok(mut histogram) = shared.latency.lock() {
                    histogram.record(latency);
                }
            }
            Err(e) => {
                shared.error(plan.protocol, &e);
                link = None;
                retry_at = Instant::now() + RECONNECT_PAUSE;
            }
        }
        reports += 1;
        // A device that fell behind (a slow acknowledgement) goes on from now rather than
        // sending its missed fixes in a burst.
        next_at = (send_at + plan.interval).max(Instant::now());
    }
    if let Some(link) = link {
        link.close(Duration::from_secs(1)).await;
    }
}

/// Re-executes this command once per shard and merges their tallies; their progress lines
/// feed `counters`.
async fn run_shards(
    args: &SimulateArgs,
    processes: u64,
    counters: Arc<Counters>,
) -> Result<Tally, SimulateError> {
    let exe = std::env::current_exe()
        .map_err(|e| SimulateError::Shard(format!("finding this program: {e}")))?;
    let snapshots = Arc::new(Mutex::new(vec![Snapshot::default(); processes as usize]));
    let mut children = tokio::task::JoinSet::new();
    for index in 0..processes {
        let mut command = tokio::process::Command::new(&exe);
        command
            .args(shard_args(
                args,
                Shard {
                    index,
                    count: processes,
                },
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .map_err(|e| SimulateError::Shard(format!("starting shard {index}: {e}")))?;
        let Some(stdout) = child.stdout.take() else {
            return Err(SimulateError::Shard(format!("shard {index} has no stdout")));
        };
        let snapshots = snapshots.clone();
        let counters = counters.clone();
        children.spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            let mut tally = None;
            while let Ok(Some(line)) = lines.next_line().await {
                let Ok(value) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                if let Ok(snapshot) = serde_json::from_value::<Snapshot>(value["progress"].clone())
                {
                    if let Ok(mut all) = snapshots.lock() {
                        all[index as usize] = snapshot;
                        counters.set(progress::sum(&all));
                    }
                } else if let Ok(t) = serde_json::from_value::<Tally>(value["tally"].clone()) {
                    tally = Some(t);
                }
            }
            let status = child.wait().await;
            match (status, tally) {
                (Ok(status), Some(tally)) if status.success() => Ok(tally),
                (Ok(status), _) => Err(SimulateError::Shard(format!(
                    "shard {index} ended with {status} and no tally"
                ))),
                (Err(e), _) => Err(SimulateError::Shard(format!("shard {index}: {e}"))),
            }
        });
    }
    let mut total = Tally::default();
    while let Some(joined) = children.join_next().await {
        let tally = joined.map_err(|e| SimulateError::Shard(e.to_string()))??;
        total.merge(&tally);
    }
    Ok(total)
}

/// The command line of shard `shard`: the run's own flags (not the API's: the parent
/// registers and counts alerts) and `--shard`.
fn shard_args(args: &SimulateArgs, shard: Shard) -> Vec<String> {
    let interval = match (args.rate, args.interval) {
        (_, Some(interval)) => interval,
        (Some(rate), None) => Duration::from_secs_f64(1.0 / rate),
        (None, None) => Duration::from_secs(1),
    };
    let d = |d: Duration| humantime::format_duration(d).to_string();
    let mut out = vec![
        "simulate".to_owned(),
        "--protocol".into(),
        args.protocol.as_str().into(),
        "--devices".into(),
        args.devices.to_string(),
        "--interval".into(),
        d(interval),
        "--duration".into(),
        d(args.duration),
        "--breach-share".into(),
        args.breach_share.to_string(),
        "--batch-every".into(),
        args.batch_every.to_string(),
        "--batch-size".into(),
        args.batch_size.to_string(),
        "--ack-timeout".into(),
        d(args.ack_timeout),
        "--first-device".into(),
        args.first_device.to_string(),
        "--seed".into(),
        args.seed.to_string(),
        format!("--zone-lat={}", args.zone_lat),
        format!("--zone-lon={}", args.zone_lon),
        format!("--zone-radius-m={}", args.zone_radius_m),
        "--topic-prefix".into(),
        args.topic_prefix.clone(),
        "--level".into(),
        args.level.clone(),
        "--threads".into(),
        args.threads.to_string(),
        "--shard".into(),
        format!("{}/{}", shard.index, shard.count),
    ];
    if let Some(target) = &args.target {
        out.extend(["--target".to_owned(), target.clone()]);
    }
    out
}

fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

fn per_second(n: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        (n as f64 / seconds * 10.0).round() / 10.0
    } else {
        0.0
    }
}

/// The JSON summary of a run.
fn summary(plan: &Plan, processes: u64, tally: &Tally, alerts: Option<AlertsCounted>) -> Value {
    let alert_latency = alerts.as_ref().filter(|a| a.latency.count() > 0).map(|a| {
        json!({
            "alerts_timed": a.latency.count(),
            "p50": millis(a.latency.quantile(0.5)),
            "p99": millis(a.latency.quantile(0.99)),
            "max": millis(a.latency.max()),
        })
    });
    json!({
        "protocol": plan.protocol.as_str(),
        "target": plan.target.to_string(),
        "devices": plan.devices,
        "processes": processes.max(1),
        "connected": tally.connected,
        "interval_s": plan.interval.as_secs_f64(),
        "track_step_s": TrackClock::for_run(plan.planned, Utc::now(), plan.confirmation).step.num_seconds(),
        "duration_s": plan.duration.as_secs_f64(),
        "connect_s": (tally.connect_s * 1000.0).round() / 1000.0,
        "elapsed_s": (tally.elapsed_s * 1000.0).round() / 1000.0,
        "fixes_sent": tally.fixes_sent,
        "fixes_acked": tally.fixes_acked,
        "frames_sent": tally.frames_sent,
        "sent_per_second": per_second(tally.fixes_sent, tally.elapsed_s),
        "acked_per_second": per_second(tally.fixes_acked, tally.elapsed_s),
        "ack_latency_ms": {
            "p50": millis(tally.ack_latency.quantile(0.5)),
            "p99": millis(tally.ack_latency.quantile(0.99)),
            "max": millis(tally.ack_latency.max()),
        },
        "errors": tally.errors,
        "breaching_devices": plan.breaching,
        "alerts": alerts.map(|a| a.by_kind),
        "fix_to_alert_ms": alert_latency,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: SimulateArgs,
    }

    #[test]
    fn shards_cover_every_device_once() {
        let mut covered = Vec::new();
        for index in 0..3 {
            covered.extend(shard_range(10, Shard { index, count: 3 }));
        }
        assert_eq!(covered, (0..10).collect::<Vec<_>>());
        assert!(parse_shard("3/3").is_err());
        assert_eq!(parse_shard("1/2"), Ok(Shard { index: 1, count: 2 }));
    }

    #[test]
    fn shard_arguments_parse_back_to_the_same_run() {
        let cli = Cli::try_parse_from([
            "x",
            "--protocol",
            "jt808",
            "--devices",
            "7",
            "--rate",
            "3",
            "--duration",
            "2s",
            "--zone-lat",
            "-33.9",
            "--zone-lon",
            "18.4",
            "--target",
            "localhost:5015",
            "--threads",
            "3",
        ])
        .unwrap();
        let mut again = vec!["x".to_owned()];
        again.extend(
            shard_args(&cli.args, Shard { index: 1, count: 2 })
                .into_iter()
                .skip(1),
        );
        let back = Cli::try_parse_from(again).unwrap().args;
        assert_eq!(back.protocol, LoadProtocol::Jt808);
        assert_eq!(back.devices, 7);
        assert_eq!(back.interval, Some(Duration::from_secs_f64(1.0 / 3.0)));
        assert_eq!(back.zone_lat, -33.9);
        assert_eq!(back.target.as_deref(), Some("localhost:5015"));
        assert_eq!(back.shard, Some(Shard { index: 1, count: 2 }));
        assert_eq!(back.threads, 3);
    }

    #[test]
    fn bad_flags_are_refused_with_the_reason() {
        for (flags, expected) in [
            (&["--devices", "0"][..], "devices"),
            (&["--rate", "0"], "above 0"),
            (&["--rate", "2", "--interval", "1s"], "interval"),
            (&["--breach-share", "1.5"], "share"),
            (&["--duration", "0s"], "longer than zero"),
        ] {
            let mut argv = vec!["x", "--protocol", "gt06"];
            argv.extend(flags);
            let error = Cli::try_parse_from(argv)
                .err()
                .expect("refused")
                .to_string();
            assert!(error.contains(expected), "{flags:?}: {error}");
        }
    }

    #[tokio::test]
    async fn register_without_an_api_is_a_usage_error() {
        let cli = Cli::try_parse_from(["x", "--protocol", "gt06", "--register"]).unwrap();
        let error = plan(&cli.args).await.expect_err("refused").to_string();
        assert!(error.contains("--register needs --api"), "{error}");
    }
}

//! Progress while a run goes: a bar on a terminal (indicatif, on stderr), a plain line every few
//! seconds otherwise, and, in a shard process, a JSON line on stdout every half second for the
//! parent to add up. stdout otherwise carries only the summary, so it can be piped to `jq`.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressFinish, ProgressStyle};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// The running counts of one process (or, in the parent of shards, of all of them).
#[derive(Debug, Default)]
pub struct Counters {
    /// Devices logged in at least once.
    pub connected: AtomicU64,
    /// Fixes sent.
    pub sent: AtomicU64,
    /// Fixes acknowledged.
    pub acked: AtomicU64,
    /// Errors of any kind.
    pub errors: AtomicU64,
    /// Whether the measured phase has begun.
    pub running: AtomicBool,
}

/// The counters at one moment, as a shard reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Devices logged in at least once.
    pub connected: u64,
    /// Fixes sent.
    pub sent: u64,
    /// Fixes acknowledged.
    pub acked: u64,
    /// Errors of any kind.
    pub errors: u64,
    /// Whether the measured phase has begun.
    pub running: bool,
}

impl Counters {
    /// What the counters hold now.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            connected: self.connected.load(Ordering::Relaxed),
            sent: self.sent.load(Ordering::Relaxed),
            acked: self.acked.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            running: self.running.load(Ordering::Relaxed),
        }
    }

    /// Sets the counters to `s` (the sum of the shards' latest reports).
    pub fn set(&self, s: Snapshot) {
        self.connected.store(s.connected, Ordering::Relaxed);
        self.sent.store(s.sent, Ordering::Relaxed);
        self.acked.store(s.acked, Ordering::Relaxed);
        self.errors.store(s.errors, Ordering::Relaxed);
        self.running.store(s.running, Ordering::Relaxed);
    }
}

/// Adds up shard snapshots.
pub fn sum(snapshots: &[Snapshot]) -> Snapshot {
    snapshots.iter().fold(Snapshot::default(), |a, s| Snapshot {
        connected: a.connected + s.connected,
        sent: a.sent + s.sent,
        acked: a.acked + s.acked,
        errors: a.errors + s.errors,
        running: a.running || s.running,
    })
}

/// Where progress goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Display {
    /// The bar, when stderr is a terminal; plain lines otherwise.
    Auto,
    /// JSON lines on stdout, for the parent process.
    Shard,
}

/// Shows `counters` until the returned handle is finished. `devices` and `duration` size the
/// bar's two phases (logging in, then the measured run).
pub fn show(
    display: Display,
    counters: Arc<Counters>,
    devices: u64,
    duration: Duration,
) -> ProgressHandle {
    let task = tokio::spawn(async move {
        match display {
            Display::Shard => loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let line = serde_json::json!({ "progress": counters.snapshot() });
                let mut out = std::io::stdout().lock();
                if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                    return;
                }
            },
            Display::Auto if std::io::stderr().is_terminal() => {
                bar(&counters, devices, duration).await
            }
            Display::Auto => lines(&counters, devices, duration).await,
        }
    });
    ProgressHandle { task }
}

/// The running progress display.
pub struct ProgressHandle {
    task: tokio::task::JoinHandle<()>,
}

impl ProgressHandle {
    /// Stops the display (the bar is cleared by its drop).
    pub async fn finish(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

fn message(s: &Snapshot) -> String {
    format!("sent {} acked {} errors {}", s.sent, s.acked, s.errors)
}

async fn bar(counters: &Counters, devices: u64, duration: Duration) {
    // Cleared when the display stops, so the summary is not printed under a stale bar.
    let bar = ProgressBar::with_draw_target(Some(devices), ProgressDrawTarget::stderr())
        .with_finish(ProgressFinish::AndClear);
    // The templates are constants; a typo would show at the first run.
    let connecting =
        ProgressStyle::with_template("logging in {pos}/{len} devices [{bar:30}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar());
    let running = ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {percent:>3}% {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(connecting);
    let mut started: Option<Instant> = None;
    let total_ms = u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    loop {
        let s = counters.snapshot();
        if s.running && started.is_none() {
            started = Some(Instant::now());
            bar.set_style(running.clone());
            bar.set_length(total_ms);
            bar.reset_elapsed();
        }
        match started {
            Some(at) => {
                let done = u64::try_from(at.elapsed().as_millis()).unwrap_or(u64::MAX);
                bar.set_position(done.min(total_ms));
            }
            None => bar.set_position(s.connected),
        }
        bar.set_message(message(&s));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn lines(counters: &Counters, devices: u64, duration: Duration) {
    let every = if duration > Duration::from_secs(30) {
        Duration::from_secs(5)
    } else {
        Duration::from_secs(1)
    };
    let begun = Instant::now();
    loop {
        tokio::time::sleep(every).await;
        let s = counters.snapshot();
        let phase = if s.running { "running" } else { "logging in" };
        eprintln!(
            "simulate: {:.0} s {phase}: {}/{devices} devices logged in, {}",
            begun.elapsed().as_secs_f64(),
            s.connected,
            message(&s)
        );
    }
}

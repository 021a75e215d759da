//! Rate limiting for log lines an attacker can provoke at will: a bad connection, a refused
//! device, an accept that fails because descriptors ran out.
//!
//! Each (scope, reason) pair, e.g. `("osmand", "accept_failed")`, may log [`BURST`] lines per
//! [`WINDOW`]; further events in that window are counted, not logged, and the next line that
//! is logged for the pair carries the count as its `suppressed` field. Counters are not
//! affected: every event is still counted in `/metrics` by its caller. Time is tokio's, so
//! tests run it paused.
//!
//! ```text
//! if let Some(suppressed) = log_limit::allow("gt06", "accept_failed") {
//!     warn!(protocol = "gt06", suppressed, error = %e, "Accept failed.");
//! }
//! ```

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use tokio::time::Instant;

/// Length of one rate-limit window.
pub const WINDOW: Duration = Duration::from_secs(10);
/// Lines logged per (scope, reason) in one window.
pub const BURST: u32 = 5;

/// Most (scope, reason) pairs tracked; they come from fixed sets, so this is only a backstop.
const MAX_KEYS: usize = 1024;

/// Per-reason windows and what they suppressed.
#[derive(Debug)]
pub struct LogLimiter {
    window: Duration,
    burst: u32,
    state: Mutex<HashMap<(&'static str, &'static str), Window>>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    logged: u32,
    suppressed: u64,
}

impl LogLimiter {
    /// A limiter letting `burst` lines per key through in each `window`.
    pub fn new(window: Duration, burst: u32) -> Self {
        LogLimiter {
            window,
            burst,
            state: Mutex::new(HashMap::new()),
        }
    }

    /// Whether an event of `reason` in `scope` may be logged now: `Some(n)` with the number of
    /// events suppressed since the last line of that key, or `None` to stay quiet.
    pub fn allow(&self, scope: &'static str, reason: &'static str) -> Option<u64> {
        let now = Instant::now();
        // A poisoned lock only means another thread panicked mid-update of plain counters.
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if state.len() >= MAX_KEYS && !state.contains_key(&(scope, reason)) {
            state.clear();
        }
        let window = state.entry((scope, reason)).or_insert(Window {
            started: now,
            logged: 0,
            suppressed: 0,
        });
        if now.duration_since(window.started) >= self.window {
            window.started = now;
            window.logged = 0;
        }
        if window.logged < self.burst {
            window.logged += 1;
            let suppressed = std::mem::take(&mut window.suppressed);
            Some(suppressed)
        } else {
            window.suppressed += 1;
            None
        }
    }
}

/// The process's limiter, with [`WINDOW`] and [`BURST`].
pub fn global() -> &'static LogLimiter {
    static LIMITER: OnceLock<LogLimiter> = OnceLock::new();
    LIMITER.get_or_init(|| LogLimiter::new(WINDOW, BURST))
}

/// [`LogLimiter::allow`] on the process's limiter.
pub fn allow(scope: &'static str, reason: &'static str) -> Option<u64> {
    global().allow(scope, reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_flood_logs_a_burst_per_window_and_then_the_suppressed_count() {
        let limiter = LogLimiter::new(Duration::from_secs(10), 3);
        // Ten accept failures a second for three seconds: 30 events, 3 lines.
        let mut lines = Vec::new();
        for _ in 0..30 {
            if let Some(suppressed) = limiter.allow("gt06", "accept_failed") {
                lines.push(suppressed);
            }
            tokio::time::advance(Duration::from_millis(100)).await;
        }
        assert_eq!(lines, vec![0, 0, 0]);
        // The next window's first line says how many were kept quiet.
        tokio::time::advance(Duration::from_secs(7)).await;
        assert_eq!(limiter.allow("gt06", "accept_failed"), Some(27));
        assert_eq!(limiter.allow("gt06", "accept_failed"), Some(0));
    }

    #[tokio::test(start_paused = true)]
    async fn reasons_and_scopes_are_limited_apart() {
        let limiter = LogLimiter::new(Duration::from_secs(10), 1);
        assert_eq!(limiter.allow("gt06", "accept_failed"), Some(0));
        assert_eq!(limiter.allow("gt06", "accept_failed"), None);
        assert_eq!(limiter.allow("gt06", "stream_error"), Some(0));
        assert_eq!(limiter.allow("h02", "accept_failed"), Some(0));
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(limiter.allow("gt06", "accept_failed"), Some(1));
        assert_eq!(limiter.allow("gt06", "stream_error"), Some(0));
    }
}

//! The process's file-descriptor budget, shared out among the listeners so that one flooded
//! listener cannot take the others down.
//!
//! Every accepted connection costs a descriptor. Left alone, 300 idle connections to the public
//! OsmAnd port on a host with a 256-descriptor limit exhaust the process: the GT06 listener's
//! accepts and the database then fail with "Too many open files". So at start the service
//! raises its soft `RLIMIT_NOFILE` to the hard limit, counts the descriptors already open, keeps
//! a reserve (for the database, the runtime, outgoing connections and accepts that are refused)
//! and gives each listener a cap that keeps the sum of all caps within the rest: a listener
//! gets its configured `max_connections` when the budget allows, and otherwise a max-min fair
//! share (listeners asking for less than an equal share keep what they asked; the remainder is
//! split evenly among the others). A listener at its cap accepts and at once closes further
//! connections, so the kernel's queue never fills either.

use std::time::Duration;

use tracing::{info, warn};

/// Descriptors kept back from the listeners: at least this many ...
const RESERVE_MIN: u64 = 32;
/// ... or this fraction of the limit, whichever is more.
const RESERVE_FRACTION: u64 = 10;

/// What the process may open, measured once at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DescriptorBudget {
    /// The soft limit in force (after raising it), if the platform reports one.
    pub limit: Option<u64>,
    /// Descriptors open when the budget was measured.
    pub open_at_start: u64,
    /// Descriptors kept back from the listeners.
    pub reserve: u64,
}

impl DescriptorBudget {
    /// Raises the soft descriptor limit as far as the hard limit allows and measures the
    /// budget.
    pub fn measure() -> Self {
        let limit = raise_soft_limit();
        let open_at_start = count_open().unwrap_or(RESERVE_MIN);
        DescriptorBudget::from_parts(limit, open_at_start)
    }

    /// A budget for a process with `limit` descriptors, `open_at_start` of them in use.
    pub fn from_parts(limit: Option<u64>, open_at_start: u64) -> Self {
        let reserve = limit.map_or(0, |l| (l / RESERVE_FRACTION).max(RESERVE_MIN));
        DescriptorBudget {
            limit,
            open_at_start,
            reserve,
        }
    }

    /// Descriptors the listeners may hold together; `None` when there is no limit.
    pub fn for_connections(&self) -> Option<u64> {
        self.limit
            .map(|l| l.saturating_sub(self.open_at_start + self.reserve))
    }

    /// The cap each listener gets, in the order of `wanted` (`(name, max_connections)`);
    /// a cap is at least 1, so a starved listener still answers one client at a time.
    pub fn share(&self, wanted: &[(&'static str, usize)]) -> Vec<usize> {
        let requested: Vec<u64> = wanted.iter().map(|(_, w)| *w as u64).collect();
        let Some(available) = self.for_connections() else {
            return wanted.iter().map(|(_, w)| *w).collect();
        };
        let total: u64 = requested.iter().sum();
        if total <= available {
            return wanted.iter().map(|(_, w)| *w).collect();
        }
        let caps = max_min_fair(&requested, available);
        warn!(
            limit = self.limit,
            open_at_start = self.open_at_start,
            reserve = self.reserve,
            requested = total,
            caps = ?wanted.iter().zip(&caps).map(|((name, _), cap)| format!("{name}={cap}")).collect::<Vec<_>>(),
            "The listeners' max_connections add up to more than the open-file limit allows; each listener is capped at its share. Raise the limit (LimitNOFILE= in the systemd unit) to serve more."
        );
        caps.into_iter()
            .map(|c| usize::try_from(c.max(1)).unwrap_or(usize::MAX))
            .collect()
    }
}

/// Max-min fair shares of `available` among `requested`.
fn max_min_fair(requested: &[u64], mut available: u64) -> Vec<u64> {
    let mut caps = vec![0u64; requested.len()];
    let mut open: Vec<usize> = (0..requested.len()).collect();
    // Satisfy the smallest requests first; each round either satisfies one or splits the rest.
    open.sort_by_key(|&i| requested[i]);
    let mut remaining = open.len() as u64;
    for &i in &open {
        let fair = available / remaining.max(1);
        let cap = requested[i].min(fair);
        caps[i] = cap;
        available -= cap;
        remaining -= 1;
    }
    caps
}

/// Sets the soft `RLIMIT_NOFILE` to the hard limit and returns the soft limit in force.
fn raise_soft_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
        let current = getrlimit(Resource::Nofile);
        if current.current != current.maximum {
            let raised = Rlimit {
                current: current.maximum,
                maximum: current.maximum,
            };
            match setrlimit(Resource::Nofile, raised) {
                Ok(()) => info!(
                    from = current.current,
                    to = current.maximum,
                    "Raised the open-file limit to the hard limit."
                ),
                Err(e) => warn!(error = %e, "Could not raise the open-file limit."),
            }
        }
        getrlimit(Resource::Nofile).current
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// Descriptors the process has open now (Linux: entries of /proc/self/fd).
fn count_open() -> Option<u64> {
    let entries = std::fs::read_dir("/proc/self/fd").ok()?;
    // The directory handle itself is one of the entries while it is being read.
    Some(entries.count().saturating_sub(1) as u64)
}

/// How long an accept loop pauses after an accept failed for lack of descriptors (or any other
/// accept error) instead of spinning on it.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_are_the_configured_ones_when_the_budget_allows() {
        let budget = DescriptorBudget::from_parts(Some(1_048_576), 40);
        let caps = budget.share(&[("gt06", 10_000), ("osmand", 10_000), ("api", 1024)]);
        assert_eq!(caps, vec![10_000, 10_000, 1024]);
        let unlimited = DescriptorBudget::from_parts(None, 40);
        assert_eq!(unlimited.share(&[("gt06", 10_000)]), vec![10_000]);
    }

    #[test]
    fn a_small_limit_is_shared_fairly_and_never_overcommitted() {
        // 256 descriptors, 30 open, a reserve of 32: 194 for connections.
        let budget = DescriptorBudget::from_parts(Some(256), 30);
        assert_eq!(budget.reserve, 32);
        assert_eq!(budget.for_connections(), Some(194));
        let wanted = [
            ("gt06", 10_000),
            ("jt808", 10_000),
            ("h02", 10_000),
            ("watch", 10_000),
            ("osmand", 10_000),
            ("api", 20),
        ];
        let caps = budget.share(&wanted);
        // The API asked for less than an equal share and keeps it; the rest is split evenly.
        assert_eq!(caps[5], 20);
        assert!(caps[..5].iter().all(|&c| c == 34 || c == 35), "{caps:?}");
        assert!(caps.iter().sum::<usize>() <= 194);
    }

    #[test]
    fn an_exhausted_budget_still_leaves_one_connection_each() {
        let budget = DescriptorBudget::from_parts(Some(64), 60);
        assert_eq!(budget.share(&[("gt06", 100), ("api", 100)]), vec![1, 1]);
    }

    #[test]
    fn the_open_descriptors_can_be_counted() {
        assert!(count_open().is_some_and(|n| n >= 3));
    }
}

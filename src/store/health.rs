//! What the service knows of its database's availability: the store writer marks an outage
//! when a commit fails because the database cannot be reached and clears it at the next commit
//! that succeeds; `/readyz` reports it (with a probe of its own for the times no batch is being
//! written), and the `ewall_store_unavailable` and `ewall_store_held_positions` gauges follow it.
//!
//! Nothing here waits or touches the database; it is a small piece of shared state, read and
//! written under a lock that is never held across an `.await`.

use std::sync::Mutex;

use chrono::{DateTime, Utc};

/// An outage as the writer sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Outage {
    /// When the first commit failed for want of the database.
    pub since: DateTime<Utc>,
    /// The last error the database gave (passwords redacted by the driver's display).
    pub reason: String,
    /// Positions in the batch the writer is holding until the database answers again.
    pub held_positions: usize,
}

/// The database's availability, shared by the store writer and the API.
#[derive(Debug, Default)]
pub struct StoreHealth {
    outage: Mutex<Option<Outage>>,
}

impl StoreHealth {
    /// Records that a commit of `held_positions` positions failed with `reason` because the
    /// database could not be reached. Returns true when this starts an outage (the caller logs
    /// it loudly once).
    pub fn unavailable(&self, reason: String, held_positions: usize, now: DateTime<Utc>) -> bool {
        let mut outage = self.lock();
        match outage.as_mut() {
            Some(current) => {
                current.reason = reason;
                current.held_positions = held_positions;
                false
            }
            None => {
                *outage = Some(Outage {
                    since: now,
                    reason,
                    held_positions,
                });
                true
            }
        }
    }

    /// Records a successful commit; returns the outage it ends, if there was one.
    pub fn available(&self) -> Option<Outage> {
        self.lock().take()
    }

    /// The outage in progress, if any.
    pub fn outage(&self) -> Option<Outage> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Outage>> {
        // The state is a plain value replaced whole, so a panic elsewhere cannot leave it
        // half-written.
        self.outage
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_starts_once_keeps_its_start_and_ends_at_the_next_commit() {
        let health = StoreHealth::default();
        let t0 = Utc::now();
        assert!(health.unavailable("connection refused".into(), 3, t0));
        let later = t0 + chrono::Duration::seconds(5);
        assert!(!health.unavailable("pool timed out".into(), 7, later));
        let outage = health.outage().unwrap();
        assert_eq!(outage.since, t0);
        assert_eq!(outage.reason, "pool timed out");
        assert_eq!(outage.held_positions, 7);
        assert_eq!(health.available(), Some(outage));
        assert_eq!(health.outage(), None);
        assert_eq!(health.available(), None);
    }
}

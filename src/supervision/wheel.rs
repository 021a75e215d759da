//! The deadline wheel of one engine shard: at most one pending deadline per key, held in a
//! tokio-util [`DelayQueue`] (a hierarchical timing wheel), so a shard with a million devices
//! keeps a million deadlines without ever scanning them.
//!
//! Deadlines are given as wall-clock times (a device's last message plus its offline delay, a
//! leave's end) and armed on tokio's clock for the time remaining, so a test with paused time
//! drives them by advancing tokio's clock. What fires carries the wall-clock time it was set
//! for, which is the time the alert it raises bears: the outcome does not depend on how late
//! the timer was served.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;
use tokio_util::time::{delay_queue, DelayQueue};

/// The longest a deadline is armed for at once; a later one is re-armed when this passes
/// (the timing wheel's range is about two years, and an end date may be further).
const LONGEST_ARM: Duration = Duration::from_secs(30 * 86_400);

struct Entry {
    key: delay_queue::Key,
    at: DateTime<Utc>,
    fires: Instant,
}

/// Pending deadlines by key.
pub struct Wheel<K> {
    queue: DelayQueue<K>,
    entries: HashMap<K, Entry>,
}

impl<K: Clone + Eq + Hash> Default for Wheel<K> {
    fn default() -> Self {
        Wheel {
            queue: DelayQueue::new(),
            entries: HashMap::new(),
        }
    }
}

impl<K: Clone + Eq + Hash> Wheel<K> {
    /// Sets `key`'s deadline to `at` (replacing any other), `now` being the wall-clock time
    /// now. A deadline already past fires at once.
    pub fn set(&mut self, key: K, at: DateTime<Utc>, now: DateTime<Utc>) {
        let wait = (at - now).to_std().unwrap_or(Duration::ZERO);
        let fires = Instant::now() + wait;
        let arm = wait.min(LONGEST_ARM);
        match self.entries.get_mut(&key) {
            Some(entry) => {
                self.queue.reset(&entry.key, arm);
                entry.at = at;
                entry.fires = fires;
            }
            None => {
                let queued = self.queue.insert(key.clone(), arm);
                self.entries.insert(
                    key,
                    Entry {
                        key: queued,
                        at,
                        fires,
                    },
                );
            }
        }
    }

    /// Removes `key`'s deadline, if it has one.
    pub fn cancel(&mut self, key: &K) {
        if let Some(entry) = self.entries.remove(key) {
            self.queue.remove(&entry.key);
        }
    }

    /// `key`'s pending deadline.
    pub fn deadline(&self, key: &K) -> Option<DateTime<Utc>> {
        self.entries.get(key).map(|e| e.at)
    }

    /// How many deadlines are pending.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether none is pending.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The next deadline to pass, with the time it was set for; `None` at once when none is
    /// pending. Cancel-safe: a deadline is handed out only when this returns.
    pub async fn next(&mut self) -> Option<(K, DateTime<Utc>)> {
        loop {
            if self.entries.is_empty() {
                return None;
            }
            let expired = std::future::poll_fn(|cx| self.queue.poll_expired(cx)).await?;
            let key = expired.into_inner();
            let Some(entry) = self.entries.get_mut(&key) else {
                continue;
            };
            let left = entry.fires.saturating_duration_since(Instant::now());
            if !left.is_zero() {
                // Armed for LONGEST_ARM only: arm again for the rest.
                entry.key = self.queue.insert(key, left.min(LONGEST_ARM));
                continue;
            }
            let entry = self.entries.remove(&key).map(|e| e.at);
            return entry.map(|at| (key, at));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn deadlines_fire_in_order_once_and_carry_their_time() {
        let mut wheel = Wheel::default();
        let now = t(0);
        wheel.set("b", t(120), now);
        wheel.set("a", t(60), now);
        wheel.set("c", t(30), now);
        wheel.cancel(&"c");
        // Moving a deadline replaces it.
        wheel.set("b", t(90), now);
        assert_eq!(wheel.len(), 2);
        let started = Instant::now();
        assert_eq!(wheel.next().await, Some(("a", t(60))));
        assert_eq!(started.elapsed(), Duration::from_secs(60));
        assert_eq!(wheel.next().await, Some(("b", t(90))));
        assert_eq!(started.elapsed(), Duration::from_secs(90));
        assert_eq!(wheel.next().await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_past_deadline_fires_at_once_and_a_far_one_is_rearmed() {
        let mut wheel = Wheel::default();
        wheel.set(1, t(-10), t(0));
        let started = Instant::now();
        assert_eq!(wheel.next().await, Some((1, t(-10))));
        assert_eq!(started.elapsed(), Duration::ZERO);
        let far = 3 * 365 * 86_400;
        wheel.set(2, t(far), t(0));
        assert_eq!(wheel.next().await, Some((2, t(far))));
        assert_eq!(started.elapsed(), Duration::from_secs(far as u64));
    }
}

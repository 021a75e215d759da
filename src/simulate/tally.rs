//! What a simulator run counts: fixes sent and acknowledged, errors by kind, and a latency
//! histogram that merges exactly, so that the shards of a run spread over several processes add
//! up to the same figures one process would have reported.
//!
//! The histogram keeps microseconds in log-linear buckets (64 per power of two, so a bucket is
//! at most 1.6 % wide), which is what p50/p99 need and fits any latency in a few thousand
//! counters whatever the number of fixes.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Sub-buckets per power of two.
const SUB_BUCKETS: u64 = 64;
/// log2 of [`SUB_BUCKETS`].
const SUB_BITS: u32 = 6;
/// Buckets enough for any `u64` microseconds.
const BUCKETS: usize = ((64 - SUB_BITS as usize) + 1) * SUB_BUCKETS as usize;

/// A latency histogram in microseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Histogram {
    counts: Vec<u64>,
    count: u64,
    max_us: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            count: 0,
            max_us: 0,
        }
    }
}

fn bucket_of(us: u64) -> usize {
    if us < SUB_BUCKETS {
        return us as usize;
    }
    let exponent = 63 - us.leading_zeros();
    let shift = exponent - SUB_BITS;
    let sub = (us >> shift) & (SUB_BUCKETS - 1);
    ((u64::from(exponent - SUB_BITS + 1)) * SUB_BUCKETS + sub) as usize
}

fn lower_bound(bucket: usize) -> u64 {
    let bucket = bucket as u64;
    if bucket < SUB_BUCKETS {
        return bucket;
    }
    let exponent = bucket / SUB_BUCKETS + u64::from(SUB_BITS) - 1;
    let sub = bucket % SUB_BUCKETS;
    // The bound past the last bucket is 2^64: saturate rather than overflow.
    let bound = u128::from(SUB_BUCKETS + sub) << (exponent - u64::from(SUB_BITS));
    u64::try_from(bound).unwrap_or(u64::MAX)
}

impl Histogram {
    /// Counts one latency.
    pub fn record(&mut self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.counts[bucket_of(us)] += 1;
        self.count += 1;
        self.max_us = self.max_us.max(us);
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.count += other.count;
        self.max_us = self.max_us.max(other.max_us);
    }

    /// Latencies counted.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The largest latency counted, exactly.
    pub fn max(&self) -> Duration {
        Duration::from_micros(self.max_us)
    }

    /// The `q` quantile (0..=1): the middle of the bucket holding that rank, never above the
    /// maximum. Zero for an empty histogram.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.count == 0 {
            return Duration::ZERO;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (bucket, &n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                let low = lower_bound(bucket);
                let high = lower_bound(bucket + 1);
                let middle = low + (high - low) / 2;
                return Duration::from_micros(middle.min(self.max_us));
            }
        }
        self.max()
    }
}

/// The histogram as shards send it to the process that merges them: the non-empty buckets.
impl Serialize for Histogram {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let buckets: Vec<(usize, u64)> = self
            .counts
            .iter()
            .enumerate()
            .filter(|(_, &n)| n > 0)
            .map(|(i, &n)| (i, n))
            .collect();
        (buckets, self.max_us).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Histogram {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (buckets, max_us): (Vec<(usize, u64)>, u64) = Deserialize::deserialize(deserializer)?;
        let mut histogram = Histogram::default();
        for (bucket, n) in buckets {
            let slot = histogram
                .counts
                .get_mut(bucket)
                .ok_or_else(|| serde::de::Error::custom(format!("no bucket {bucket}")))?;
            *slot += n;
            histogram.count += n;
        }
        histogram.max_us = max_us;
        Ok(histogram)
    }
}

/// Everything one process counted; shards print it and the parent adds them up.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Tally {
    /// Devices this process ran.
    pub devices: u64,
    /// Devices that logged in at least once.
    pub connected: u64,
    /// Fixes written to the service.
    pub fixes_sent: u64,
    /// Fixes whose acknowledgement arrived.
    pub fixes_acked: u64,
    /// Frames (or requests, or publishes) written; a JT/T 808 batch is one frame.
    pub frames_sent: u64,
    /// Errors by kind (`connect`, `closed`, `ack_timeout`, `refused`, `bad_reply`, `io`).
    pub errors: BTreeMap<String, u64>,
    /// Time from writing a frame to reading its acknowledgement.
    pub ack_latency: Histogram,
    /// Seconds of the measured phase (from the last login to the end of sending).
    pub elapsed_s: f64,
    /// Seconds the devices took to connect and log in before the measured phase.
    pub connect_s: f64,
}

impl Tally {
    /// Adds `other` (a shard's tally) to this one; the phases ran side by side, so the longest
    /// counts.
    pub fn merge(&mut self, other: &Tally) {
        self.devices += other.devices;
        self.connected += other.connected;
        self.fixes_sent += other.fixes_sent;
        self.fixes_acked += other.fixes_acked;
        self.frames_sent += other.frames_sent;
        for (kind, n) in &other.errors {
            *self.errors.entry(kind.clone()).or_default() += n;
        }
        self.ack_latency.merge(&other.ack_latency);
        self.elapsed_s = self.elapsed_s.max(other.elapsed_s);
        self.connect_s = self.connect_s.max(other.connect_s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_every_value_in_order() {
        let mut previous = 0;
        for us in (0..5000u64).chain([1 << 20, u64::MAX / 3, u64::MAX]) {
            let bucket = bucket_of(us);
            assert!(bucket >= previous, "{us}");
            assert!(bucket < BUCKETS);
            assert!(lower_bound(bucket) <= us, "{us}");
            if bucket + 1 < BUCKETS {
                assert!(lower_bound(bucket + 1) > us, "{us}");
            }
            previous = bucket;
        }
    }

    #[test]
    fn quantiles_are_within_a_bucket_and_merge_exactly() {
        let mut a = Histogram::default();
        let mut b = Histogram::default();
        for ms in 1..=100u64 {
            let target = if ms % 2 == 0 { &mut a } else { &mut b };
            target.record(Duration::from_millis(ms));
        }
        let mut merged = a.clone();
        merged.merge(&b);
        assert_eq!(merged.count(), 100);
        assert_eq!(merged.max(), Duration::from_millis(100));
        let p50 = merged.quantile(0.5).as_secs_f64() * 1000.0;
        assert!((p50 - 50.0).abs() < 1.0, "{p50}");
        let p99 = merged.quantile(0.99).as_secs_f64() * 1000.0;
        assert!((p99 - 99.0).abs() < 1.6, "{p99}");
        let json = serde_json::to_string(&merged).unwrap();
        let back: Histogram = serde_json::from_str(&json).unwrap();
        assert_eq!(back, merged);
        assert_eq!(Histogram::default().quantile(0.99), Duration::ZERO);
    }
}

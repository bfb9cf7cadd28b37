//! Latency statistics: a fixed-size log-linear histogram for the million-sample produce
//! runs, and exact percentiles for the few hundred samples of the disk run.
//!
//! The histogram keeps values below 128 µs exactly and every larger value within 1/64
//! (1.6 %) of its true value, in 3,776 counters (30 KiB) whatever the sample count, so a
//! long run costs no more memory than a short one. Percentiles are nearest-rank.
use std::time::Duration;

use serde::Serialize;

/// Values below this are counted exactly, one counter each.
const EXACT_BELOW: u64 = 128;

/// Bits of each larger value kept below its leading bit: 64 counters per power of two.
const SUB_BUCKET_BITS: u32 = 6;

/// Counters per power of two above `EXACT_BELOW`.
const SUB_BUCKETS: u64 = 1 << SUB_BUCKET_BITS;

/// Counters in all: the exact range, then 64 per power of two from 2^7 to 2^63.
const BUCKETS: usize = EXACT_BELOW as usize + (64 - 7) * SUB_BUCKETS as usize;

const _: () = assert!(EXACT_BELOW == 2 * SUB_BUCKETS);

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct LatencyMs {
    /// Samples summarised.
    pub count: u64,
    /// Arithmetic mean.
    pub mean: f64,
    /// Median (nearest rank).
    pub p50: f64,
    /// 99th percentile (nearest rank).
    pub p99: f64,
    /// Largest sample.
    pub max: f64,
}

/// A log-linear histogram of microsecond values.
#[derive(Debug, Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    count: u64,
    sum_us: u128,
    max_us: u64,
}

impl Default for Histogram {
    fn default() -> Histogram {
        Histogram { counts: vec![0; BUCKETS], count: 0, sum_us: 0, max_us: 0 }
    }
}

impl Histogram {
    /// Counts one value.
    pub fn record(&mut self, value_us: u64) {
        let index = bucket_index(value_us);
        debug_assert!(index < BUCKETS, "bucket {index} of {value_us} µs is past {BUCKETS}");
        self.counts[index] += 1;
        self.count += 1;
        self.sum_us += u128::from(value_us);
        self.max_us = self.max_us.max(value_us);
    }

    /// Adds every value of `other`.
    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.count += other.count;
        self.sum_us += other.sum_us;
        self.max_us = self.max_us.max(other.max_us);
    }

    /// The value at quantile `q` (0 < q <= 1), nearest rank, in microseconds.
    fn quantile_us(&self, q: f64) -> u64 {
        assert!(q > 0.0, "quantile {q} must be above 0");
        assert!(q <= 1.0, "quantile {q} must be at most 1");
        let rank = ((q * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (index, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return bucket_value(index).min(self.max_us);
            }
        }
        self.max_us
    }

    /// Mean and percentiles; all zero when nothing was recorded.
    pub fn summary(&self) -> LatencyMs {
        if self.count == 0 {
            return LatencyMs { count: 0, mean: 0.0, p50: 0.0, p99: 0.0, max: 0.0 };
        }
        LatencyMs {
            count: self.count,
            mean: self.sum_us as f64 / self.count as f64 / 1000.0,
            p50: self.quantile_us(0.50) as f64 / 1000.0,
            p99: self.quantile_us(0.99) as f64 / 1000.0,
            max: self.max_us as f64 / 1000.0,
        }
    }
}

/// The counter of `value_us`.
fn bucket_index(value_us: u64) -> usize {
    if value_us < EXACT_BELOW {
        return value_us as usize;
    }
    let leading_bit = 63 - value_us.leading_zeros();
    let shift = leading_bit - SUB_BUCKET_BITS;
    let top = value_us >> shift;
    debug_assert!(top >= SUB_BUCKETS, "top {top} of {value_us} is below {SUB_BUCKETS}");
    (EXACT_BELOW + u64::from(shift - 1) * SUB_BUCKETS + (top - SUB_BUCKETS)) as usize
}

/// The middle of the values counted by counter `index`.
fn bucket_value(index: usize) -> u64 {
    let index = index as u64;
    if index < EXACT_BELOW {
        return index;
    }
    let shift = (index - EXACT_BELOW) / SUB_BUCKETS + 1;
    let top = (index - EXACT_BELOW) % SUB_BUCKETS + SUB_BUCKETS;
    (top << shift) + (1 << shift) / 2
}

/// Exact mean and nearest-rank percentiles of a small sample set.
pub fn summarise(samples: &[Duration]) -> LatencyMs {
    let mut sorted: Vec<f64> = samples.iter().map(|d| d.as_nanos() as f64 / 1e6).collect();
    sorted.sort_by(f64::total_cmp);
    let Some(&max) = sorted.last() else {
        return LatencyMs { count: 0, mean: 0.0, p50: 0.0, p99: 0.0, max: 0.0 };
    };
    let at = |q: f64| {
        let rank = ((q * sorted.len() as f64).ceil() as usize).max(1);
        sorted[rank - 1]
    };
    LatencyMs {
        count: sorted.len() as u64,
        mean: sorted.iter().sum::<f64>() / sorted.len() as f64,
        p50: at(0.50),
        p99: at(0.99),
        max,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_monotonic() {
        let mut previous = 0;
        for value in 1..100_000u64 {
            let index = bucket_index(value);
            assert!(index == previous || index == previous + 1, "{value}: {previous}->{index}");
            previous = index;
        }
        assert_eq!(bucket_index(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn bucket_values_are_within_one_sixty_fourth() {
        for value in [0, 1, 127, 128, 129, 255, 256, 4_000, 12_345, 1_000_000, 1 << 40] {
            let approx = bucket_value(bucket_index(value));
            let error = approx.abs_diff(value) as f64;
            assert!(error <= value as f64 / 64.0, "{value} -> {approx}");
        }
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut histogram = Histogram::default();
        for value in 1..=100 {
            histogram.record(value);
        }
        let summary = histogram.summary();
        assert_eq!(summary.p50, 0.050);
        assert_eq!(summary.p99, 0.099);
        assert_eq!(summary.max, 0.100);
        let exact: Vec<Duration> = (1..=200).map(Duration::from_millis).collect();
        let summary = summarise(&exact);
        assert_eq!(summary.p50, 100.0);
        assert_eq!(summary.p99, 198.0);
    }

    #[test]
    fn merging_adds_counts() {
        let mut left = Histogram::default();
        let mut right = Histogram::default();
        left.record(1_000);
        right.record(3_000);
        left.merge(&right);
        let summary = left.summary();
        assert_eq!(summary.count, 2);
        assert_eq!(summary.mean, 2.0);
    }
}

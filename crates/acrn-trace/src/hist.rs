//! [`Histogram`]: a small log-linear latency histogram (HdrHistogram-like), bounded memory.

use alloc::boxed::Box;

/// Sub-buckets per power of two (7 bits: a bucket's width is at most 1/128 of its lower bound).
const SUB_BITS: u32 = 7;
const SUB: usize = 1 << SUB_BITS;
/// Chunks: two exact chunks for 0..256, then one per power of two from 2^8 to 2^63.
const CHUNKS: usize = 58;

/// Counts of `u64` values (latencies in ns) in log-linear buckets: values below 256 exactly,
/// larger ones in 128 buckets per power of two, so a reported percentile is within 1/128
/// (0.8 %) of the exact one. Memory: 1 KiB per power of two actually used, at most 58 KiB.
/// `min` and `max` are exact.
#[derive(Debug, Clone)]
pub struct Histogram {
    chunks: [Option<Box<[u64; SUB]>>; CHUNKS],
    count: u64,
    min: u64,
    max: u64,
    sum: u128,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

/// `(chunk, sub-bucket)` of `v`.
fn bucket(v: u64) -> (usize, usize) {
    if v < 2 * SUB as u64 {
        ((v >> SUB_BITS) as usize, (v as usize) & (SUB - 1))
    } else {
        let e = 63 - v.leading_zeros(); // >= 8
        let chunk = (e - SUB_BITS + 1) as usize; // 2..=57
        let sub = ((v >> (e - SUB_BITS)) as usize) & (SUB - 1);
        (chunk, sub)
    }
}

/// Highest value that falls in bucket `(chunk, sub)`.
fn highest(chunk: usize, sub: usize) -> u64 {
    if chunk < 2 {
        (chunk * SUB + sub) as u64
    } else {
        let shift = chunk as u32 - 1; // e - SUB_BITS
        let low = ((SUB + sub) as u64) << shift;
        low + ((1u64 << shift) - 1)
    }
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Histogram {
            chunks: [const { None }; CHUNKS],
            count: 0,
            min: u64::MAX,
            max: 0,
            sum: 0,
        }
    }

    /// Counts one value.
    pub fn record(&mut self, v: u64) {
        let (c, s) = bucket(v);
        let chunk = self.chunks[c].get_or_insert_with(|| Box::new([0u64; SUB]));
        chunk[s] += 1;
        self.count += 1;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        self.sum += u128::from(v);
    }

    /// Number of values counted.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Smallest value, if any.
    pub fn min(&self) -> Option<u64> {
        (self.count > 0).then_some(self.min)
    }

    /// Largest value, if any.
    pub fn max(&self) -> Option<u64> {
        (self.count > 0).then_some(self.max)
    }

    /// Sum of the values (exact).
    pub fn sum(&self) -> u128 {
        self.sum
    }

    /// Mean value, if any (rounded down).
    pub fn mean(&self) -> Option<u64> {
        (self.count > 0).then(|| (self.sum / u128::from(self.count)) as u64)
    }

    /// The value at quantile `per_100k / 100000` (nearest rank: the smallest value `v` such
    /// that at least that fraction of the values are `<= v`), within 1/128 above the exact
    /// one and never outside `min..=max`. `percentile(50_000)` is the median, `99_900` p99.9.
    pub fn percentile(&self, per_100k: u32) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        let q = u128::from(per_100k.min(100_000));
        let rank = ((u128::from(self.count) * q).div_ceil(100_000)).max(1) as u64;
        let mut seen = 0u64;
        for (c, chunk) in self.chunks.iter().enumerate() {
            let Some(chunk) = chunk else { continue };
            for (s, &n) in chunk.iter().enumerate() {
                seen += n;
                if seen >= rank {
                    return Some(highest(c, s).clamp(self.min, self.max));
                }
            }
        }
        Some(self.max)
    }

    /// Non-empty buckets as `(highest value of the bucket, count)`, in increasing order (for
    /// plotting the distribution).
    pub fn buckets(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.chunks.iter().enumerate().flat_map(|(c, chunk)| {
            chunk.iter().flat_map(move |chunk| {
                chunk
                    .iter()
                    .enumerate()
                    .filter(|(_, n)| **n > 0)
                    .map(move |(s, &n)| (highest(c, s), n))
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    /// xorshift64*: a seeded PRNG for reproducible tests.
    fn rng(mut s: u64) -> impl FnMut() -> u64 {
        move || {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            s.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
    }

    fn oracle(sorted: &[u64], per_100k: u32) -> u64 {
        let n = sorted.len() as u128;
        let rank = (n * u128::from(per_100k)).div_ceil(100_000).max(1) as usize;
        sorted[rank - 1]
    }

    #[test]
    fn buckets_cover_every_value_in_order() {
        let mut next = rng(7);
        for _ in 0..100_000 {
            let v = next() >> (next() % 64);
            let (c, s) = bucket(v);
            assert!(c < CHUNKS);
            assert!(highest(c, s) >= v, "v={v}");
            // The bucket's width is at most 1/128 of its values.
            assert!(highest(c, s) - v <= v / 128, "v={v} hi={}", highest(c, s));
        }
        assert_eq!(bucket(u64::MAX), (CHUNKS - 1, SUB - 1));
        assert_eq!(highest(CHUNKS - 1, SUB - 1), u64::MAX);
    }

    #[test]
    fn percentiles_match_a_sorted_vector_within_one_percent() {
        let mut next = rng(42);
        for case in 0..40 {
            let n = 1 + (next() % 20_000) as usize;
            let spread = next() % 40;
            let mut h = Histogram::new();
            let mut v: Vec<u64> = (0..n)
                .map(|_| {
                    // Log-normal-ish latencies: a base and a long tail.
                    let base = 200 + next() % 2_000;
                    base << (next() % (spread + 1)).min(30)
                })
                .collect();
            for &x in &v {
                h.record(x);
            }
            v.sort_unstable();
            assert_eq!(h.count(), n as u64);
            assert_eq!(h.min(), v.first().copied());
            assert_eq!(h.max(), v.last().copied());
            for q in [0, 1, 50_000, 90_000, 99_000, 99_900, 99_990, 100_000] {
                let exact = oracle(&v, q);
                let got = h.percentile(q).unwrap_or(0);
                assert!(
                    got >= exact && got - exact <= exact / 128,
                    "case {case} n={n} q={q}: exact {exact} got {got}"
                );
            }
        }
    }

    #[test]
    fn small_values_are_exact_and_empty_is_none() {
        let mut h = Histogram::new();
        assert_eq!(h.percentile(50_000), None);
        assert_eq!(h.min(), None);
        for v in [5u64, 1, 3, 2, 4] {
            h.record(v);
        }
        assert_eq!(h.percentile(50_000), Some(3));
        assert_eq!(h.percentile(100_000), Some(5));
        assert_eq!(h.percentile(0), Some(1));
        assert_eq!(h.mean(), Some(3));
        let b: Vec<_> = h.buckets().collect();
        assert_eq!(b, [(1, 1), (2, 1), (3, 1), (4, 1), (5, 1)]);
    }
}

//! The harness of the property tests of `acrn-uapi`, `acrn-trace` and `acrn-hsm-emulator`: a
//! seeded PRNG (reproducible: a failure prints its seed and case) and a budget of cases or of
//! seconds. No dependencies, so any crate of the workspace may use it as a dev-dependency.
//!
//! * `ACRN_FUZZ_SEED=N`: the seed (default: each test's own).
//! * `ACRN_FUZZ_SECS=S`: run for `S` seconds instead of the default number of cases.
//!
//! Also the workspace's module-layering checker ([`layering`]): the graph of a crate's modules
//! from the paths its source names, and its cycles (`tests/module_layering.rs` runs it on every
//! library crate).

#![warn(missing_docs)]

pub mod layering;

use std::time::{Duration, Instant};

/// splitmix64: small, fast, good enough for test inputs.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// A value in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    /// One of `xs` (which must not be empty).
    pub fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }
    /// Fills `b` with random bytes.
    pub fn fill(&mut self, b: &mut [u8]) {
        for chunk in b.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// A budget: `ACRN_FUZZ_SECS` seconds if set (the clock is read every `check_every` cases),
/// else `default_cases` cases.
#[derive(Debug)]
pub struct Budget {
    deadline: Option<Instant>,
    cases: u64,
    check_every: u64,
    done: u64,
}

impl Budget {
    /// `default_cases` cases, or `ACRN_FUZZ_SECS` seconds; the clock is read every
    /// `check_every` cases (1: every case, for slow cases).
    pub fn new(default_cases: u64, check_every: u64) -> Budget {
        let secs = std::env::var("ACRN_FUZZ_SECS")
            .ok()
            .and_then(|s| s.parse::<u64>().ok());
        Budget {
            deadline: secs.map(|s| Instant::now() + Duration::from_secs(s)),
            cases: default_cases,
            check_every: check_every.max(1),
            done: 0,
        }
    }
    /// Whether to run another case (counts it).
    pub fn more(&mut self) -> bool {
        let go = match self.deadline {
            Some(d) => self.done % self.check_every != 0 || Instant::now() < d,
            None => self.done < self.cases,
        };
        if go {
            self.done += 1;
        }
        go
    }
    /// Cases run so far.
    pub fn done(&self) -> u64 {
        self.done
    }
}

/// The seed: `ACRN_FUZZ_SEED` if set, else `default`.
pub fn seed(default: u64) -> u64 {
    std::env::var("ACRN_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generator_is_seeded_and_bounded() {
        let (mut a, mut b) = (Rng(7), Rng(7));
        let xs: Vec<u64> = (0..100).map(|_| a.next()).collect();
        let ys: Vec<u64> = (0..100).map(|_| b.next()).collect();
        assert_eq!(xs, ys);
        assert_ne!(Rng(8).next(), Rng(7).next());
        assert!((0..1000).all(|_| a.below(10) < 10));
        assert_eq!(a.below(0), 0);
        let mut buf = [0u8; 13];
        a.fill(&mut buf);
        assert!(buf.iter().any(|&x| x != 0));
    }

    #[test]
    fn a_case_budget_runs_exactly_its_cases() {
        let mut b = Budget {
            deadline: None,
            cases: 5,
            check_every: 1,
            done: 0,
        };
        let mut n = 0;
        while b.more() {
            n += 1;
        }
        assert_eq!(n, 5);
        assert_eq!(b.done(), 5);
    }
}

//! The recorder's stamps: the TSC where the kernel itself keeps `CLOCK_MONOTONIC` on it
//! (x86-64, `constant_tsc` and `nonstop_tsc`, clocksource `tsc`), converted to `CLOCK_MONOTONIC`
//! ns by the writer thread; `clock_gettime(CLOCK_MONOTONIC)` elsewhere. A TSC read costs a
//! fraction of a `clock_gettime` (about 11 ns against 26 to 50 ns in the development VM), and
//! a request takes seven stamps.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::now_ns;

/// Whether [`stamp`] reads the TSC (set once by [`init`], before any recorder exists).
static USE_TSC: AtomicBool = AtomicBool::new(false);
/// ns per TSC tick, measured once.
static NS_PER_TICK: OnceLock<Option<f64>> = OnceLock::new();

#[cfg(target_arch = "x86_64")]
#[inline]
fn tsc() -> u64 {
    // SAFETY: RDTSC has no memory effects and exists on every x86-64 CPU.
    unsafe { core::arch::x86_64::_rdtsc() }
}

#[cfg(not(target_arch = "x86_64"))]
#[inline]
fn tsc() -> u64 {
    now_ns()
}

/// A stamp: TSC ticks or `CLOCK_MONOTONIC` ns (the recorder's calibration converts). Never 0.
#[inline]
pub fn stamp() -> u64 {
    if USE_TSC.load(Ordering::Relaxed) {
        tsc().max(1)
    } else {
        now_ns()
    }
}

fn tsc_trusted() -> bool {
    if !cfg!(target_arch = "x86_64") || std::env::var_os("ACRN_HSM_TRACE_NO_TSC").is_some() {
        return false;
    }
    let flags = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let flags = flags
        .lines()
        .find(|l| l.starts_with("flags"))
        .unwrap_or_default();
    let has = |f: &str| flags.split_whitespace().any(|x| x == f);
    let source =
        std::fs::read_to_string("/sys/devices/system/clocksource/clocksource0/current_clocksource")
            .unwrap_or_default();
    has("constant_tsc") && has("nonstop_tsc") && source.trim() == "tsc"
}

/// A (tsc, CLOCK_MONOTONIC ns) pair read as close together as the two reads allow.
fn pair() -> (u64, u64) {
    let a = tsc();
    let m = now_ns();
    let b = tsc();
    (a / 2 + b / 2 + (a % 2 + b % 2) / 2, m)
}

/// Chooses the stamp clock (once per process) and returns the conversion for a new trace.
pub(crate) fn init() -> Calib {
    let scale = *NS_PER_TICK.get_or_init(|| {
        if !tsc_trusted() {
            return None;
        }
        let (t0, m0) = pair();
        std::thread::sleep(Duration::from_millis(5));
        let (t1, m1) = pair();
        (t1 > t0 && m1 > m0).then(|| (m1 - m0) as f64 / (t1 - t0) as f64)
    });
    USE_TSC.store(scale.is_some(), Ordering::Relaxed);
    let (t, m) = pair();
    Calib {
        scale,
        first: (t, m),
        reference: (t, m),
    }
}

/// Converts stamps to `CLOCK_MONOTONIC` ns: `reference` is a recent (tsc, ns) pair, the scale is
/// refined from the first pair of the trace to the latest as the run goes on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Calib {
    scale: Option<f64>,
    first: (u64, u64),
    reference: (u64, u64),
}

impl Calib {
    /// Takes a new reference pair (cheap; the writer calls it per chunk, at most every ms).
    pub(crate) fn refresh(&mut self) {
        let Some(s) = self.scale else { return };
        let (t, m) = pair();
        if m < self.reference.1 + 1_000_000 {
            return;
        }
        self.reference = (t, m);
        let (t0, m0) = self.first;
        // Over more than 100 ms the measured ratio beats the 5 ms start-up estimate.
        if m > m0 + 100_000_000 && t > t0 {
            self.scale = Some((m - m0) as f64 / (t - t0) as f64);
        } else {
            self.scale = Some(s);
        }
    }

    /// A stamp in ns (0 stays 0: not observed).
    #[inline]
    pub(crate) fn ns(&self, stamp: u64) -> u64 {
        let Some(s) = self.scale else { return stamp };
        if stamp == 0 {
            return 0;
        }
        let (t, m) = self.reference;
        let d = (stamp as i128 - t as i128) as f64 * s;
        (m as f64 + d).round().max(1.0) as u64
    }
}

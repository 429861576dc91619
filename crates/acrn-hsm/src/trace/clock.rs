//! The recorder's stamps: the TSC where the kernel itself keeps `CLOCK_MONOTONIC` on it
//! (x86-64, `constant_tsc` and `nonstop_tsc`, clocksource `tsc`), converted to `CLOCK_MONOTONIC`
//! ns by the writer thread; `clock_gettime(CLOCK_MONOTONIC)` elsewhere. A TSC read costs a
//! fraction of a `clock_gettime` (about 15 ns against 36 to 44 ns in the development VM), and
//! a request takes seven stamps (one of them after an LFENCE).

use std::collections::VecDeque;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// `CLOCK_MONOTONIC` in ns (the trace clock).
#[inline]
pub fn now_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

/// `clock`'s time in ns (0 if `clock_gettime` fails: it cannot for the clocks used here,
/// `CLOCK_MONOTONIC` and `CLOCK_THREAD_CPUTIME_ID`, which Linux always has).
#[inline]
pub(crate) fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a live, writable timespec; on a failure it stays zero.
    unsafe { libc::clock_gettime(clock, &raw mut ts) };
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
}

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

/// The TSC read after every earlier instruction completed (`LFENCE; RDTSC`, Intel SDM, RDTSC).
/// RDTSC alone is not ordered with loads: a stamp taken right after a load that saw another
/// thread's store can read the counter before that load, earlier than the other thread's stamp
/// taken before its store (measured here: up to 200 ticks, in both directions between two
/// threads).
#[cfg(target_arch = "x86_64")]
#[inline]
fn tsc_after_loads() -> u64 {
    // SAFETY: LFENCE orders instructions and has no memory effects; SSE2 is part of x86-64.
    unsafe { core::arch::x86_64::_mm_lfence() };
    tsc()
}

#[cfg(not(target_arch = "x86_64"))]
#[inline]
fn tsc() -> u64 {
    now_ns()
}

#[cfg(not(target_arch = "x86_64"))]
#[inline]
fn tsc_after_loads() -> u64 {
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

/// [`stamp`] for a stamp that must not precede the load just before it, which saw another
/// thread's store (the client's `processing` after its claim: the join checks `processing` not
/// before `pending`): the other thread's stamp before that store is then never later. The
/// LFENCE costs about as much as the read (15 + 13 ns on the development VM), so it is used only
/// where the order is relied on; the vCPU's `complete` is a plain [`stamp`], which the join
/// raises to `notify` when the TSC read ran ahead of the load.
#[inline]
pub fn stamp_after_load() -> u64 {
    if USE_TSC.load(Ordering::Relaxed) {
        tsc_after_loads().max(1)
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

/// A (tsc, CLOCK_MONOTONIC ns) pair read as close together as the two reads allow: the
/// tightest of a few tries (a try the scheduler interrupted between its reads is far apart and
/// would steer the conversion wrong).
fn pair() -> (u64, u64) {
    let mut best: Option<(u64, u64, u64)> = None;
    for _ in 0..8 {
        let a = tsc();
        let m = now_ns();
        let b = tsc();
        let width = b.saturating_sub(a);
        let mid = a / 2 + b / 2 + (a % 2 + b % 2) / 2;
        if best.is_none_or(|(w, _, _)| width < w) {
            best = Some((width, mid, m));
        }
        // A few hundred ticks: no interruption between the reads.
        if width < 2_000 {
            break;
        }
    }
    best.map_or((0, now_ns()), |(_, t, m)| (t, m))
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
    let mut segments = VecDeque::new();
    if let Some(s) = scale {
        segments.push_back(Segment {
            tsc: t,
            ns: m as f64,
            slope: s,
            steer: 0.0,
            scale: s,
        });
    }
    Calib {
        scale,
        first: (t, m),
        last_refresh_ns: m,
        segments,
    }
}

/// From `tsc` on (until the next segment), ns = `ns` + (stamp − `tsc`) × `slope` for the
/// `steer` ticks the segment steers over, then at the trace's `scale`: a segment that is not
/// followed by another (no refresh: the writer had no chunk) does not run ahead of the clock at
/// its steering slope.
#[derive(Debug, Clone, Copy)]
struct Segment {
    tsc: u64,
    ns: f64,
    slope: f64,
    steer: f64,
    scale: f64,
}

impl Segment {
    /// The function's value at `stamp` (continuous and increasing: both slopes are positive).
    #[inline]
    fn at(&self, stamp: u64) -> f64 {
        // As i64, not i128 (whose conversion to f64 is a library call): stamps of one trace are
        // within 2^63 ticks of each other.
        let d = stamp.wrapping_sub(self.tsc) as i64 as f64;
        if d <= self.steer {
            self.ns + d * self.slope
        } else {
            self.ns + self.steer * self.slope + (d - self.steer) * self.scale
        }
    }
}

/// Segments kept for stamps older than the newest one (a vCPU's chunk may hold old stamps):
/// at most one per ms, so about a minute of history.
const SEGMENTS: usize = 65_536;
/// A new segment steers the conversion back to a fresh (tsc, ns) pair over this many ns.
const STEER_NS: f64 = 10_000_000.0;

/// Converts stamps to `CLOCK_MONOTONIC` ns with one **continuous, increasing** function of the
/// TSC (so stamps keep their order: the slices of one vCPU nest, whatever chunk a stamp was
/// converted in): a chain of linear segments. Each refresh (at most every ms) measures a fresh
/// (tsc, ns) pair and starts a segment at the current function's value there, with the slope
/// that reaches the measured clock over the next 10 ms; the scale itself is refined from the
/// trace's first pair to the latest. Jumping to each fresh pair instead would move the function
/// back by the pair's read jitter (hundreds of ns under a hypervisor) and let a request's
/// PENDING stamp convert to before the previous request's FREE.
#[derive(Debug, Clone)]
pub(crate) struct Calib {
    scale: Option<f64>,
    first: (u64, u64),
    last_refresh_ns: u64,
    segments: VecDeque<Segment>,
}

impl Calib {
    /// Takes a new reference pair (cheap; the writer calls it before it sleeps and every 64
    /// chunks; at most every ms).
    pub(crate) fn refresh(&mut self) {
        let Some(s) = self.scale else { return };
        let (t, m) = pair();
        if m < self.last_refresh_ns + 1_000_000 {
            return;
        }
        self.last_refresh_ns = m;
        let (t0, m0) = self.first;
        // Over more than 100 ms the measured ratio beats the 5 ms start-up estimate.
        let scale = if m > m0 + 100_000_000 && t > t0 {
            (m - m0) as f64 / (t - t0) as f64
        } else {
            s
        };
        self.scale = Some(scale);
        let Some(last) = self.segments.back().copied() else {
            return;
        };
        if t <= last.tsc {
            return;
        }
        let here = last.at(t);
        // Reach the measured clock after STEER_NS; the slope stays within 0.98..1.02 x the scale
        // (positive: the function keeps increasing; a correction of at most 200 us per segment).
        let ticks = STEER_NS / scale;
        let slope = (scale + (m as f64 - here) / ticks).clamp(scale * 0.98, scale * 1.02);
        if self.segments.len() == SEGMENTS {
            self.segments.pop_front();
        }
        self.segments.push_back(Segment {
            tsc: t,
            ns: here,
            slope,
            steer: ticks,
            scale,
        });
    }

    /// A record's stamps in ns ([`ns`](Self::ns) of each, the newest segment looked up once).
    #[inline]
    pub(crate) fn ns_all<const N: usize>(&self, stamps: [u64; N]) -> [u64; N] {
        let (Some(_), Some(newest)) = (self.scale, self.segments.back()) else {
            return stamps.map(|t| self.ns(t));
        };
        let newest = *newest;
        // The writer refreshes before it sleeps, so the stamps it converts next are mostly in
        // the newest segment, some in the one before.
        let before = self
            .segments
            .len()
            .checked_sub(2)
            .and_then(|i| self.segments.get(i))
            .copied();
        stamps.map(|t| {
            if t == 0 {
                0
            } else if t >= newest.tsc {
                ((newest.at(t) + 0.5) as u64).max(1)
            } else if let Some(b) = before.filter(|b| t >= b.tsc) {
                ((b.at(t) + 0.5) as u64).max(1)
            } else {
                self.ns(t)
            }
        })
    }

    /// A stamp in ns (0 stays 0: not observed).
    #[inline]
    pub(crate) fn ns(&self, stamp: u64) -> u64 {
        if self.scale.is_none() || stamp == 0 {
            return stamp;
        }
        // The segment in effect at `stamp`: the last one starting at or before it (the first
        // one for older stamps). Most stamps are in the newest segment.
        let seg = match self.segments.back() {
            Some(b) if b.tsc <= stamp => *b,
            _ => {
                let i = self.segments.partition_point(|g| g.tsc <= stamp);
                match self.segments.get(i.saturating_sub(1)) {
                    Some(g) => *g,
                    None => return stamp,
                }
            }
        };
        // Rounded by adding 0.5 (`f64::round` is a library call without SSE4.1); the cast
        // saturates (a negative value gives 0, raised to 1).
        ((seg.at(stamp) + 0.5) as u64).max(1)
    }
}

//! The poll-mode round trip (1 vCPU, the benchmark's workload, the native path) after shifting
//! the heap by a few small allocations before the emulator is built: where the emulator's and
//! the client's hot shared structures land must not change the round trip (docs/performance.md,
//! "False sharing"). Before they were put on cache lines of their own, one layout in three cost
//! ~100 ns more per round trip (300 → 400 ns on the development VM).
//!
//! `cargo run --release -p acrn-hsm-tools --example heap_layout_round_trip [ROUNDS]`
//! prints the p50 per shift, then max/min over the shifts.

use acrn_hsm_tools::bench::{NativeCase, run_native_case};

fn main() {
    let rounds: u32 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(60_000);
    let mut p50s = Vec::new();
    for shift in [0usize, 1, 2, 3, 5, 8, 13] {
        // Allocations of 16..112 bytes, kept alive while the case runs.
        let held: Vec<Vec<u8>> = (0..shift).map(|i| vec![1u8; 16 + (i % 7) * 16]).collect();
        let case = NativeCase {
            vcpus: 1,
            poll: true,
            rounds,
            warmup_rounds: 2_000,
            chunk_rounds: 0,
            max_seconds: 0.0,
            poll_backoff: false,
        };
        let m = match run_native_case(&case) {
            Ok(m) => m,
            Err(e) => {
                eprintln!("heap_layout_round_trip: {e}");
                std::process::exit(1);
            }
        };
        drop(held);
        let mut l = m.latencies;
        l.sort_unstable();
        let p50 = l.get(l.len() / 2).copied().unwrap_or(0);
        println!(
            "heap shifted by {shift:2} allocations: p50 {p50} ns ({} requests)",
            l.len()
        );
        p50s.push(p50);
    }
    let (lo, hi) = (
        p50s.iter().copied().min().unwrap_or(0),
        p50s.iter().copied().max().unwrap_or(0),
    );
    println!(
        "max/min over the shifts: {:.3} ({lo}..{hi} ns)",
        hi as f64 / lo.max(1) as f64
    );
}

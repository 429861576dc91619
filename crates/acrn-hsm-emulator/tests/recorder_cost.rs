//! The recorder's cost on the native path: the same guest workload (MMIO round trips to a
//! native register file; notify mode 2 vCPUs, poll mode 1) without recording, with recording
//! (client and guest sides, to a discarding sink), and with recording to a writer that drops
//! the chunks unread (the hot path alone), runs interleaved, the median of each reported and
//! compared; and, single-threaded, what the stamps and the records cost per request, and the
//! writer thread's CPU time per record.
//!
//! `cargo test --release -p acrn-hsm-emulator --test recorder_cost -- --ignored --nocapture`
//! (`ACRN_RECORDER_COST_RUNS`, `ACRN_RECORDER_COST_REQUESTS` change the defaults 9 and 50000;
//! `ACRN_RECORDER_COST_MODES=poll` measures one mode).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::vm_with;
use std::time::Instant;

use acrn_hsm::GUEST_FLAG_IO_COMPLETION_POLLING;
use acrn_hsm::client::{ClientConfig, Dispatcher, IoreqClient, WakeMode};
use acrn_hsm::devices::RegisterFile;
use acrn_hsm::trace::acrn_trace::{Direction, IoType, TraceRecord};
use acrn_hsm::trace::{TraceRecorder, TraceSetup, now_ns, stamp, stamp_after_load};
use acrn_hsm_emulator::EmulatedExt;
use acrn_hsm_emulator::workload::{Access, Op, Workload};

const REGS: u64 = 0xfeb0_0000;

/// How a run records.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Rec {
    Off,
    On,
    /// Recording, to a writer that drops the chunks unread.
    HotPathOnly,
}

/// One run: requests per second, and the writer's CPU ns per record (recording).
fn run(polling: bool, vcpus: usize, per_vcpu: u64, record: Rec) -> (f64, f64) {
    let flags = if polling {
        GUEST_FLAG_IO_COMPLETION_POLLING
    } else {
        0
    };
    let (_emu, hsm, vm) = vm_with(vcpus as u16, flags);
    let mut d = Dispatcher::new();
    d.add_mmio(REGS, 0x1000, Box::new(RegisterFile::new(0x1000)))
        .unwrap();
    let rec = (record != Rec::Off).then(|| {
        let mut s = TraceSetup::new("cost", vm.vmid(), vcpus as u16, polling, d.trace_devices());
        s.emulated = true;
        if record == Rec::HotPathOnly {
            TraceRecorder::discarding(&s).unwrap()
        } else {
            TraceRecorder::new(std::io::sink(), &s).unwrap()
        }
    });
    let mut client = IoreqClient::new(
        vm.clone(),
        d,
        ClientConfig {
            mode: if polling {
                WakeMode::poll()
            } else {
                WakeMode::Blocking
            },
            recorder: rec.as_ref().map(TraceRecorder::client),
            ..Default::default()
        },
    )
    .unwrap();
    let h = client.handle();
    let t = std::thread::spawn(move || client.run());
    vm.start().unwrap();
    let mut guest = hsm.guest(&vm).unwrap();
    if let Some(r) = &rec {
        guest = guest.with_recorder(r.guest());
    }
    let w = Workload {
        vcpus: (0..vcpus)
            .map(|i| {
                let a = REGS + 0x100 * i as u64;
                vec![Op::Repeat {
                    count: per_vcpu / 2,
                    ops: vec![
                        Op::Mmio {
                            address: a,
                            size: 8,
                            access: Access::Write(i as u64),
                        },
                        Op::Mmio {
                            address: a,
                            size: 8,
                            access: Access::Read { expect: None },
                        },
                    ],
                }]
            })
            .collect(),
    };
    let t0 = Instant::now();
    let r = guest.run(&w).unwrap();
    let secs = t0.elapsed().as_secs_f64();
    drop(guest);
    h.stop();
    t.join().unwrap().unwrap();
    assert!(r.is_clean());
    let mut writer_ns = 0.0;
    if let Some(rec) = rec {
        let s = rec.finish().unwrap();
        if record == Rec::On {
            // Dropped records (a writer starved by a loaded machine) are counted, not lost.
            assert!(
                s.dropped > 0 || s.records == r.issued,
                "{s:?}, {} issued",
                r.issued
            );
            if s.dropped > 0 {
                println!("  (dropped {} records: the writer fell behind)", s.dropped);
            }
            writer_ns = s.writer_cpu_ns as f64 / s.records.max(1) as f64;
        }
    }
    (r.completed as f64 / secs, writer_ns)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// ns per call of `f`, the best of 5 tries of `k` calls (the least disturbed), with a pause
/// between tries (the recorder's writer drains what the try made).
fn per_call(k: u64, mut f: impl FnMut(u64) -> u64) -> f64 {
    let mut best = f64::MAX;
    let mut x = 0u64;
    for _ in 0..5 {
        std::thread::sleep(std::time::Duration::from_millis(20));
        let t0 = Instant::now();
        for i in 0..k {
            x = x.wrapping_add(f(i));
        }
        best = best.min(t0.elapsed().as_nanos() as f64 / k as f64);
    }
    assert_ne!(x, 1);
    best
}

/// `k` requests, 5 times, recorded as the client and the vCPU do (`stamps`: with their 7
/// stamps, else 0s): ns per request (the best try), and the summary.
fn record_requests(k: u64, stamps: bool) -> (f64, acrn_hsm::trace::TraceSummary) {
    let mut s = TraceSetup::new("cost", 1, 1, true, Vec::new());
    s.emulated = true;
    let rec = TraceRecorder::new(std::io::sink(), &s).unwrap();
    let (mut c, g) = (rec.client(), rec.guest());
    let mut v = g.vcpu(0);
    let ns = per_call(k, |i| {
        let st = |f: fn() -> u64| if stamps { f() } else { 0 };
        let pending = st(stamp);
        let mut r = TraceRecord::new(0, IoType::Mmio, Direction::Write, 8, REGS);
        r.value = i;
        r.ts.processing = st(stamp_after_load);
        r.ts.handler_start = st(stamp);
        r.ts.handler_end = st(stamp);
        r.ts.notify = st(stamp);
        c.record(r);
        let complete = st(stamp);
        let free = st(stamp);
        v.record(
            true,
            REGS,
            8,
            false,
            i,
            [pending, complete, free],
            true,
            None,
        );
        i
    });
    drop((c, v, g));
    let sum = rec.finish().unwrap();
    assert!(sum.dropped > 0 || sum.records == sum.joined, "{sum:?}");
    if sum.dropped > 0 {
        println!(
            "  (dropped {} records: the writer fell behind)",
            sum.dropped
        );
    }
    (ns, sum)
}

/// What recording adds to a request on the threads that serve it, whatever the scheduler does:
/// the stamps (ns each), the two records with their 7 stamps (ns per request, to a live
/// writer), and the writer's CPU time per record. Returns the hot path's ns per request.
fn hot_path() -> f64 {
    let k = 20_000u64;
    // First: the first recorder chooses the stamps' clock.
    let (records, _) = record_requests(k, false);
    let clock = per_call(k, |_| now_ns());
    let plain = per_call(k, |_| stamp());
    let fenced = per_call(k, |_| stamp_after_load());
    let (both, sum) = record_requests(k, true);
    println!(
        "stamps: CLOCK_MONOTONIC {clock:.1} ns, stamp() {plain:.1} ns, stamp_after_load() \
         {fenced:.1} ns"
    );
    println!(
        "hot path per request (client + vCPU records, one thread): {both:.1} ns with the 7 \
         stamps, {records:.1} ns without them; writer thread: {:.1} ns CPU per record \
         ({} records, {} dropped)",
        sum.writer_cpu_ns as f64 / sum.records.max(1) as f64,
        sum.records,
        sum.dropped
    );
    both
}

#[test]
#[ignore = "a measurement: run with --release -- --ignored --nocapture"]
fn recorder_cost_on_the_native_path() {
    let runs = env("ACRN_RECORDER_COST_RUNS", 9) as usize;
    let n = env("ACRN_RECORDER_COST_REQUESTS", 50_000);
    let hot = hot_path();
    println!(
        "load average at start: {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    let mut notify_cost = 0.0;
    let modes = std::env::var("ACRN_RECORDER_COST_MODES").unwrap_or_else(|_| "notify,poll".into());
    for (polling, vcpus) in [(false, 2), (true, 1)] {
        let mode = if polling { "poll" } else { "notify" };
        if !modes.split(',').any(|m| m == mode) {
            continue;
        }
        run(polling, vcpus, n / 10, Rec::Off); // warm-up
        let (mut off, mut on, mut hot_only, mut writer) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for i in 0..runs {
            // Interleaved, rotating which goes first.
            let order = [Rec::Off, Rec::On, Rec::HotPathOnly];
            for k in 0..3 {
                let which = order[(i + k) % 3];
                let (rate, w) = run(polling, vcpus, n, which);
                match which {
                    Rec::Off => off.push(rate),
                    Rec::On => {
                        on.push(rate);
                        writer.push(w);
                    }
                    Rec::HotPathOnly => hot_only.push(rate),
                }
            }
        }
        let (m_off, m_on, m_hot) = (median(&mut off), median(&mut on), median(&mut hot_only));
        let cost = 1.0 - m_on / m_off;
        let w = median(&mut writer);
        let round_trip = 1e9 / m_off * vcpus as f64;
        println!(
            "recorder cost, {mode} mode, {vcpus} vCPU(s), {n} requests/vCPU, median of {runs} \
             interleaved: off {m_off:.0} req/s, on {m_on:.0} req/s, ratio on/off {:.3} (cost \
             {:+.1} %); writer dropping the chunks: {m_hot:.0} req/s, ratio {:.3} (cost {:+.1} %)",
            m_on / m_off,
            cost * 100.0,
            m_hot / m_off,
            (1.0 - m_hot / m_off) * 100.0
        );
        println!(
            "  round trip {round_trip:.0} ns without recording; hot path {hot:.0} ns = {:.1} %, \
             writer {w:.0} ns CPU per record = {:.1} % of it; load average now {}",
            hot / round_trip * 100.0,
            w / round_trip * 100.0,
            std::fs::read_to_string("/proc/loadavg")
                .unwrap_or_default()
                .trim()
        );
        if !polling {
            notify_cost = cost;
        }
    }
    // A benchmark, not a speed test: the target is < 5 %, but on a loaded 2-core machine the
    // medians of notify mode move by +-20 % between runs (the hot path is 80 ns of a 25 us round
    // trip), so only a recorder that halves throughput fails here. Poll mode is reported, not
    // checked: with two spinning threads on a 2-core machine (the vCPU and the client), any third
    // runnable thread (the trace writer, another process) measures the scheduler more than the
    // recorder.
    assert!(
        notify_cost < 0.5,
        "recorder cost {:.1} %",
        notify_cost * 100.0
    );
}

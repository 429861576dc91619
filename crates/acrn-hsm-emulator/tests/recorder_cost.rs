//! The recorder's cost on the native path: the same guest workload (MMIO round trips to a
//! native register file, 2 vCPUs) with and without recording (client and guest sides, to a
//! discarding sink), runs interleaved, the median of each reported and compared.
//!
//! `cargo test --release -p acrn-hsm --test recorder_cost -- --ignored --nocapture`
//! (`ACRN_RECORDER_COST_RUNS`, `ACRN_RECORDER_COST_REQUESTS` change the defaults 9 and 50000;
//! `ACRN_RECORDER_COST_MODES=poll` measures one mode).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::vm_with;
use std::time::Instant;

use acrn_hsm::GUEST_FLAG_IO_COMPLETION_POLLING;
use acrn_hsm::client::{ClientConfig, Dispatcher, IoreqClient, WakeMode};
use acrn_hsm::devices::RegisterFile;
use acrn_hsm::trace::{TraceRecorder, TraceSetup};
use acrn_hsm_emulator::EmulatedExt;
use acrn_hsm_emulator::workload::{Access, Op, Workload};

const REGS: u64 = 0xfeb0_0000;

/// Requests per second of one run.
fn run(polling: bool, vcpus: usize, per_vcpu: u64, record: bool) -> f64 {
    let flags = if polling {
        GUEST_FLAG_IO_COMPLETION_POLLING
    } else {
        0
    };
    let (_emu, hsm, vm) = vm_with(vcpus as u16, flags);
    let mut d = Dispatcher::new();
    d.add_mmio(REGS, 0x1000, Box::new(RegisterFile::new(0x1000)))
        .unwrap();
    let rec = record.then(|| {
        let mut s = TraceSetup::new("cost", vm.vmid(), vcpus as u16, polling, d.trace_devices());
        s.emulated = true;
        TraceRecorder::new(std::io::sink(), &s).unwrap()
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
    if let Some(rec) = rec {
        let s = rec.finish().unwrap();
        assert_eq!(s.records, r.issued);
    }
    r.completed as f64 / secs
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

#[test]
#[ignore = "a measurement: run with --release -- --ignored --nocapture"]
fn recorder_cost_on_the_native_path() {
    let runs = env("ACRN_RECORDER_COST_RUNS", 9) as usize;
    let n = env("ACRN_RECORDER_COST_REQUESTS", 50_000);
    // What recording adds per request whatever the scheduler does: 7 clock reads.
    let k = 2_000_000u64;
    let t0 = Instant::now();
    let mut x = 0u64;
    for _ in 0..k {
        x = x.wrapping_add(acrn_hsm::trace::now_ns());
    }
    let clock_ns = t0.elapsed().as_nanos() as f64 / k as f64;
    assert_ne!(x, 0);
    println!(
        "CLOCK_MONOTONIC read: {clock_ns:.1} ns; 7 stamps per request: {:.0} ns",
        7.0 * clock_ns
    );
    let mut notify_cost = 0.0;
    let modes = std::env::var("ACRN_RECORDER_COST_MODES").unwrap_or_else(|_| "notify,poll".into());
    for (polling, vcpus) in [(false, 2), (true, 1)] {
        let mode = if polling { "poll" } else { "notify" };
        if !modes.split(',').any(|m| m == mode) {
            continue;
        }
        run(polling, vcpus, n / 10, false); // warm-up
        let (mut off, mut on) = (Vec::new(), Vec::new());
        for i in 0..runs {
            // Interleaved, alternating which goes first.
            if i % 2 == 0 {
                off.push(run(polling, vcpus, n, false));
                on.push(run(polling, vcpus, n, true));
            } else {
                on.push(run(polling, vcpus, n, true));
                off.push(run(polling, vcpus, n, false));
            }
        }
        let (m_off, m_on) = (median(&mut off), median(&mut on));
        let cost = 1.0 - m_on / m_off;
        println!(
            "recorder cost, {mode} mode, {vcpus} vCPU(s), {n} requests/vCPU, median of {runs}: \
             off {m_off:.0} req/s, on {m_on:.0} req/s, ratio on/off {:.3} (cost {:+.1} %)",
            m_on / m_off,
            cost * 100.0
        );
        if !polling {
            notify_cost = cost;
        }
    }
    // The target is < 5 %; the bound here leaves room for a loaded 2-core CI machine. Poll mode
    // is reported, not checked: with two spinning threads on a 2-core machine (the vCPU and the
    // client), any third runnable thread (the trace writer, another process) measures the
    // scheduler more than the recorder.
    assert!(
        notify_cost < 0.25,
        "recorder cost {:.1} %",
        notify_cost * 100.0
    );
}

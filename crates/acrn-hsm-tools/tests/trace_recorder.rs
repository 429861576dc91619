//! The recorder (crates/acrn-hsm/src/trace): records against the guest's RunResult, the join,
//! in-kernel requests, a 16-vCPU stress, the demo's trace and its replay.
//!
//! `cargo test -p acrn-hsm --test trace_recorder`

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../acrn-hsm-emulator/tests/common/mod.rs"]
mod common;
use common::vm_with;
use std::sync::Arc;

use acrn_hsm::client::{ClientConfig, Dispatcher, IoreqClient, WakeMode};
use acrn_hsm::devices::{PciFunction, RegisterFile};
use acrn_hsm::trace::{KERNEL_DEVICE, TraceRecorder, TraceSetup};
use acrn_hsm::{GUEST_FLAG_IO_COMPLETION_POLLING, VmConfig};
use acrn_hsm_emulator::workload::{Access, Op, Workload};
use acrn_hsm_emulator::{EmulatedExt, Emulator, RunResult};
use acrn_hsm_tools::demo::{self, DemoConfig, DemoMode};
use acrn_hsm_tools::replay::{ReplayDevices, ReplayOptions, replay_trace, workload_from_trace};
use acrn_trace::{
    Direction, GroupBy, IoType, NO_DEVICE, Outcome, Report, TraceReader, TraceRecord,
};

const REGS: u64 = 0xfeb0_0000;

/// A shared `Vec<u8>` sink, so the test can read what the recorder wrote.
#[derive(Clone, Default)]
struct Shared(Arc<std::sync::Mutex<Vec<u8>>>);
impl std::io::Write for Shared {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct Recorded {
    result: RunResult,
    records: Vec<TraceRecord>,
    handled: u64,
}

/// Runs `w` on an emulated VM with a register file at REGS and a PCI function at 00:03.0,
/// recording with the guest side when `guest_side`.
fn record(w: &Workload, polling: bool, guest_side: bool) -> Recorded {
    let flags = if polling {
        GUEST_FLAG_IO_COMPLETION_POLLING
    } else {
        0
    };
    let (_emu, hsm, vm) = vm_with(w.vcpus.len() as u16, flags);
    let mut d = Dispatcher::new();
    d.add_mmio(REGS, 0x1000, Box::new(RegisterFile::new(0x1000)))
        .unwrap();
    d.add_pci(
        acrn_hsm::client::Bdf::new(0, 3, 0),
        Box::new(PciFunction::new(0x8086, 0x1234)),
    )
    .unwrap();
    let mut setup = TraceSetup::new(
        "t",
        vm.vmid(),
        w.vcpus.len() as u16,
        polling,
        d.trace_devices(),
    );
    setup.emulated = true;
    let sink = Shared::default();
    let rec = TraceRecorder::new(sink.clone(), &setup).unwrap();
    let mut client = IoreqClient::new(
        vm.clone(),
        d,
        ClientConfig {
            mode: if polling {
                WakeMode::poll()
            } else {
                WakeMode::Blocking
            },
            recorder: Some(rec.client()),
            ..Default::default()
        },
    )
    .unwrap();
    let h = client.handle();
    let t = std::thread::spawn(move || client.run());
    vm.start().unwrap();
    let mut guest = hsm.guest(&vm).unwrap();
    if guest_side {
        guest = guest.with_recorder(rec.guest());
    }
    let result = guest.run(w).unwrap();
    drop(guest);
    h.stop();
    t.join().unwrap().unwrap();
    let handled = h.stats().handled();
    let sum = rec.finish().unwrap();
    let bytes = sink.0.lock().unwrap().clone();
    let end = acrn_hsm::trace::now_ns();
    let mut r = TraceReader::new(&bytes[..]).unwrap();
    let start = r.header().clock.start_ns;
    let mut records = Vec::new();
    while let Some(x) = r.next_record().unwrap() {
        // Every stamp is CLOCK_MONOTONIC ns within the recording (whatever the stamp clock).
        for t in x.ts.to_array().into_iter().filter(|&t| t != 0) {
            assert!(start <= t && t <= end, "{t} outside {start}..{end}: {x:?}");
        }
        records.push(x);
    }
    assert_eq!(r.footer_count(), Some(records.len() as u64));
    assert_eq!(sum.records, records.len() as u64);
    Recorded {
        result,
        records,
        handled,
    }
}

/// The (type, address, direction) sequence a vCPU's ops make, as records show them: a PCI
/// access is the 0xCF8 write (in the kernel) then the PCICFG access.
fn expected(ops: &[Op], out: &mut Vec<(IoType, u64, Direction)>) {
    let dir = |a: &Access| match a {
        Access::Write(_) => Direction::Write,
        Access::Read { .. } => Direction::Read,
    };
    for op in ops {
        match op {
            Op::Pio { port, access, .. } => out.push((IoType::Pio, u64::from(*port), dir(access))),
            Op::Mmio {
                address, access, ..
            } => out.push((IoType::Mmio, *address, dir(access))),
            Op::Pci {
                bus,
                dev,
                func,
                reg,
                access,
                ..
            } => {
                out.push((IoType::Pio, 0xcf8, Direction::Write));
                out.push((
                    IoType::Pci,
                    acrn_trace::format::pci_address(*bus, *dev, *func, *reg),
                    dir(access),
                ));
            }
            Op::Repeat { count, ops } => {
                for _ in 0..*count {
                    expected(ops, out);
                }
            }
            Op::Delay { .. } | Op::Barrier | Op::Ram { .. } | Op::WaitIrq { .. } => {}
        }
    }
}

fn workload(vcpus: usize, n: u64) -> Workload {
    Workload {
        vcpus: (0..vcpus)
            .map(|i| {
                let a = REGS + 0x100 * i as u64;
                vec![Op::Repeat {
                    count: n,
                    ops: vec![
                        Op::Mmio {
                            address: a,
                            size: 4,
                            access: Access::Write(0x1000 + i as u64),
                        },
                        Op::Mmio {
                            address: a,
                            size: 4,
                            access: Access::Read {
                                expect: Some(0x1000 + i as u64),
                            },
                        },
                        Op::Pci {
                            bus: 0,
                            dev: 3,
                            func: 0,
                            reg: 0,
                            size: 2,
                            access: Access::Read {
                                expect: Some(0x8086),
                            },
                        },
                        // Unclaimed.
                        Op::Pio {
                            port: 0x2f0,
                            size: 1,
                            access: Access::Read { expect: Some(0xff) },
                        },
                    ],
                }]
            })
            .collect(),
    }
}

fn check(w: &Workload, rec: &Recorded) {
    let r = &rec.result;
    assert!(r.is_clean(), "{r:?}");
    assert_eq!(rec.records.len() as u64, r.issued, "one record per request");
    for (v, ops) in w.vcpus.iter().enumerate() {
        let mut want = Vec::new();
        expected(ops, &mut want);
        let got: Vec<_> = rec
            .records
            .iter()
            .filter(|x| usize::from(x.vcpu) == v)
            .map(|x| (x.kind, x.address, x.direction))
            .collect();
        assert_eq!(got.len() as u64, r.vcpus[v].issued, "vcpu {v} count");
        assert_eq!(got, want, "vcpu {v}: per-vCPU order");
    }
    let mut kernel = 0u64;
    for x in &rec.records {
        let t = &x.ts;
        assert!(t.pending != 0 && t.complete != 0 && t.free != 0, "{x:?}");
        assert!(t.pending <= t.complete && t.complete <= t.free, "{x:?}");
        if x.device == KERNEL_DEVICE {
            kernel += 1;
            assert_eq!((x.kind, x.address), (IoType::Pio, 0xcf8), "{x:?}");
            assert_eq!(
                (t.processing, t.handler_start, t.handler_end, t.notify),
                (0, 0, 0, 0)
            );
            continue;
        }
        assert!(t.processing != 0 && t.notify != 0, "{x:?}");
        assert!(t.pending <= t.processing, "{x:?}");
        assert!(t.processing <= t.notify && t.notify <= t.complete, "{x:?}");
        if x.outcome == Outcome::Ok {
            assert_ne!(x.device, NO_DEVICE);
            assert!(t.handler_start != 0 && t.handler_end != 0, "{x:?}");
            assert!(
                t.processing <= t.handler_start
                    && t.handler_start <= t.handler_end
                    && t.handler_end <= t.notify,
                "{x:?}"
            );
        } else {
            assert_eq!(x.outcome, Outcome::Unclaimed, "{x:?}");
            assert_eq!((x.address, x.value), (0x2f0, 0xff));
            assert_eq!((t.handler_start, t.handler_end), (0, 0));
        }
        if x.kind == IoType::Mmio && x.direction == Direction::Read {
            assert_eq!(x.value, 0x1000 + u64::from(x.vcpu), "read value recorded");
        }
    }
    assert_eq!(kernel, r.issued - rec.handled, "in-kernel requests marked");
}

#[test]
fn records_match_the_guest_notify_and_polling() {
    for polling in [false, true] {
        let w = workload(3, 200);
        let rec = record(&w, polling, true);
        check(&w, &rec);
    }
}

#[test]
fn sixteen_vcpus_exactly_one_record_per_request() {
    let w = workload(16, 300);
    let rec = record(&w, false, true);
    check(&w, &rec);
    assert_eq!(rec.result.issued, 16 * 300 * 5);
}

#[test]
fn client_only_records_have_no_guest_stamps() {
    let w = workload(2, 50);
    let rec = record(&w, false, false);
    assert_eq!(rec.records.len() as u64, rec.handled);
    for x in &rec.records {
        assert_eq!((x.ts.pending, x.ts.complete, x.ts.free), (0, 0, 0));
        assert!(
            x.ts.processing != 0 && x.ts.processing <= x.ts.notify,
            "{x:?}"
        );
    }
}

#[test]
fn demo_trace_report_and_replay() {
    let dir = std::env::temp_dir().join(format!("acrn-trace-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("demo.trace");
    for mode in [DemoMode::Notify, DemoMode::Poll] {
        let s = demo::run(
            DemoConfig {
                vcpus: 4,
                requests_per_vcpu: 1500,
                round_requests: 600,
                mode,
                trace: Some(path.clone()),
                ..Default::default()
            },
            |_| {},
        )
        .unwrap();
        assert!(s.is_clean(), "{s:?}");
        let t = s.trace.expect("trace summary");
        let bytes = std::fs::read(&path).unwrap();
        let report =
            Report::from_reader(TraceReader::new(&bytes[..]).unwrap(), GroupBy::Device).unwrap();
        assert_eq!(report.requests, s.issued, "{mode}: one record per request");
        assert_eq!(t.records, s.issued);
        let kernel = report
            .groups
            .iter()
            .find(|g| g.key == "hsm (in kernel)")
            .map_or(0, |g| g.count);
        assert_eq!(kernel, s.issued - s.client.handled(), "{mode}");
        assert_eq!(t.joined, s.client.handled());
        for d in &s.devices {
            let g = report.groups.iter().find(|g| g.key == d.name).unwrap();
            assert_eq!(g.count, d.reads + d.writes, "{mode}: {}", d.name);
        }

        for devices in [ReplayDevices::Recorded, ReplayDevices::Demo] {
            let o = ReplayOptions {
                devices,
                ..Default::default()
            };
            let r = replay_trace(&bytes[..], &o).unwrap();
            assert!(r.is_clean(), "{mode} {devices:?}: {r:?}");
            assert_eq!(r.issued, s.issued);
            assert!(r.checked_reads > 1000);
        }
        assert_eq!(
            replay_trace(&bytes[..], &ReplayOptions::default())
                .unwrap()
                .devices,
            ReplayDevices::Demo
        );

        // A changed read value is caught by the demo's devices.
        let mut bad = bytes.clone();
        let mut rd = TraceReader::new(&bytes[..]).unwrap();
        let hl = rd.header_len() as usize;
        let mut i = 0;
        while let Some(x) = rd.next_record().unwrap() {
            if x.kind == IoType::Mmio && x.direction == Direction::Read && x.outcome == Outcome::Ok
            {
                let at = hl + i * acrn_trace::RECORD_SIZE + 16;
                bad[at] ^= 1;
                break;
            }
            i += 1;
        }
        let r = replay_trace(&bad[..], &ReplayOptions::default()).unwrap();
        assert!(
            !r.is_clean(),
            "{mode}: a changed value must be caught: {r:?}"
        );
        assert_eq!(r.read_mismatches, 1, "{r:?}");
        // A lost request is caught: without the write programming BAR0, the read that checks
        // it sees the sizing mask.
        let mut short = bytes[..hl].to_vec();
        let mut rd = TraceReader::new(&bytes[..]).unwrap();
        let mut dropped = false;
        let mut kept = 0u64;
        while let Some(x) = rd.next_record().unwrap() {
            if !dropped
                && x.kind == IoType::Pci
                && x.direction == Direction::Write
                && x.address == acrn_trace::format::pci_address(0, 3, 0, 0x10)
                && x.value == demo::REGFILE_BASE
            {
                dropped = true;
                continue;
            }
            let mut b = [0u8; acrn_trace::RECORD_SIZE];
            x.encode(&mut b);
            short.extend_from_slice(&b);
            kept += 1;
        }
        assert!(dropped && kept + 1 == s.issued);
        let o = ReplayOptions {
            devices: ReplayDevices::Demo,
            ..Default::default()
        };
        let r = replay_trace(&short[..], &o).unwrap();
        assert!(!r.is_clean(), "{mode}: a lost write must be caught: {r:?}");
        assert!(
            r.samples.iter().any(|s| s.contains("recorded 0xfebf0000")),
            "{r:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn paced_replay_keeps_the_gaps() {
    // A hand-made trace: one vCPU, two writes 20 ms apart.
    let mut d = Dispatcher::new();
    d.add_mmio(REGS, 0x100, Box::new(RegisterFile::new(0x100)))
        .unwrap();
    let setup = TraceSetup::new("paced", 1, 1, false, d.trace_devices());
    let mut w = acrn_trace::TraceWriter::new(Vec::new(), &setup.header()).unwrap();
    for k in 0..2u64 {
        let mut r = TraceRecord::new(0, IoType::Mmio, Direction::Write, 4, REGS);
        r.device = 0;
        r.value = k;
        r.ts.pending = 1_000_000 + k * 20_000_000;
        r.ts.free = r.ts.pending + 5_000;
        w.write_record(&r).unwrap();
    }
    let bytes = w.finish().unwrap();
    let fast = replay_trace(&bytes[..], &ReplayOptions::default()).unwrap();
    let paced = replay_trace(
        &bytes[..],
        &ReplayOptions {
            pace: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(fast.is_clean() && paced.is_clean(), "{fast:?} {paced:?}");
    assert!(paced.elapsed_ms >= 19, "{paced:?}");
    let tw = workload_from_trace(
        &bytes[..],
        &ReplayOptions {
            pace: true,
            ..Default::default()
        },
    )
    .unwrap();
    let delays: Vec<u64> = tw.workload.vcpus[0]
        .iter()
        .filter_map(|o| match o {
            Op::Delay { ns } => Some(*ns),
            _ => None,
        })
        .collect();
    assert_eq!(delays, vec![20_000_000 - 5_000]);
    assert_eq!(tw.phases, 1, "the 20 ms of silence is a phase boundary");
}

#[test]
fn a_reset_mid_run_leaves_a_consistent_trace() {
    use acrn_hsm::VmControl;
    use acrn_hsm::devices::ResetPort;
    for polling in [false, true] {
        let emu = Emulator::new();
        let hsm = emu.open_hsm();
        let vm = Arc::new(
            hsm.create_vm(&VmConfig {
                vcpu_num: 4,
                vm_flag: if polling {
                    GUEST_FLAG_IO_COMPLETION_POLLING
                } else {
                    0
                },
                ..Default::default()
            })
            .unwrap(),
        );
        let control = VmControl::new();
        let mut d = Dispatcher::new();
        d.add_mmio(REGS, 0x1000, Box::new(RegisterFile::new(0x1000)))
            .unwrap();
        d.add_pio(0xcf9, 1, Box::new(ResetPort::new(control.clone())))
            .unwrap();
        let mut setup = TraceSetup::new("reset", vm.vmid(), 4, polling, d.trace_devices());
        setup.emulated = true;
        let sink = Shared::default();
        let rec = TraceRecorder::new(sink.clone(), &setup).unwrap();
        let mut client = IoreqClient::new(
            vm.clone(),
            d,
            ClientConfig {
                mode: if polling {
                    WakeMode::poll()
                } else {
                    WakeMode::Blocking
                },
                control: Some(control),
                recorder: Some(rec.client()),
                ..Default::default()
            },
        )
        .unwrap();
        let h = client.handle();
        let t = std::thread::spawn(move || client.run());
        vm.start().unwrap();
        let mut w = workload(4, 3000);
        w.vcpus[0] = vec![
            Op::Repeat {
                count: 200,
                ops: vec![Op::Mmio {
                    address: REGS,
                    size: 4,
                    access: Access::Write(1),
                }],
            },
            Op::Pio {
                port: 0xcf9,
                size: 1,
                access: Access::Write(0x06),
            },
        ];
        let guest = hsm.guest(&vm).unwrap().with_recorder(rec.guest());
        let result = guest.run(&w).unwrap();
        drop(guest);
        let t0 = std::time::Instant::now();
        while h.stats().resets == 0 && t0.elapsed() < std::time::Duration::from_secs(10) {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(h.stats().resets, 1);
        h.stop();
        t.join().unwrap().unwrap();
        let handled = h.stats().handled();
        let sum = rec.finish().unwrap();
        let bytes = sink.0.lock().unwrap().clone();
        let mut r = TraceReader::new(&bytes[..]).unwrap();
        let mut records = Vec::new();
        while let Some(x) = r.next_record().unwrap() {
            records.push(x);
        }
        // Every guest request is in the trace once, every client record once.
        assert_eq!(
            sum.joined + sum.in_kernel + sum.guest_only,
            result.issued,
            "{sum:?} {result:?}"
        );
        assert_eq!(sum.joined + sum.client_only, handled, "{sum:?}");
        assert_eq!(records.len() as u64, sum.records);
        // The request that triggered the reset: its NOTIFY withheld, cleared.
        let cf9: Vec<_> = records.iter().filter(|x| x.address == 0xcf9).collect();
        assert!(!cf9.is_empty());
        assert!(
            cf9.iter()
                .all(|x| x.outcome == Outcome::Cleared && x.ts.notify == 0),
            "{cf9:?}"
        );
        assert!(
            cf9.iter()
                .any(|x| x.ts.pending != 0 && x.ts.processing != 0),
            "joined: {cf9:?}"
        );
        assert!(result.vcpus.iter().any(|v| v.stopped.is_some()));
    }
}

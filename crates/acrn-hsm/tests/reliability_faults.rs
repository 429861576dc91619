//! Fault scenarios of the ioreq protocol, each with exactly-once accounting: every request a vCPU
//! issued is either completed once (with the value it expects, or the value the protocol says) or
//! aborted by the device model's reset — and no vCPU hangs (every wait is bounded).
//!
//! * the client destroyed mid-flight (a request claimed, not yet NOTIFYed): the slot stays
//!   PROCESSING as in the kernel, the vCPU stays blocked until the DM's reset sequence;
//! * a running `IoreqClient` stopped while a device is inside its handler, then recovered with
//!   `IoreqClient::reset_vm_like_dm` and a new client;
//! * a reset requested by a device mid-run on 8 busy vCPUs (the DM's in-loop sequence: NOTIFY
//!   withheld, PAUSE, CLEAR_VM_IOREQ, reset devices, RESET, START), then the same client serves on;
//! * CLEAR_VM_IOREQ with requests outstanding, on a running VM and in the DM's order (paused).
//!
//! NOTIFY for a slot the client did not claim cannot be written with the client API: see the
//! `compile_fail` examples on `acrn_hsm::client::protocol::Claim`.
//!
//! `cargo test -p acrn-hsm --test reliability_faults`
#![allow(clippy::unwrap_used)] // tests/common uses unwrap
mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use acrn_hsm::client::{PageSlots, protocol};
use acrn_hsm::devices::{FnDevice, RegisterFile, ResetPort};
use acrn_hsm::{ClientConfig, Dispatcher, GuestRun, IoreqClient, RunExit, VmControl};
use common::*;

const POLLING: u64 = acrn_hsm::GUEST_FLAG_IO_COMPLETION_POLLING;
const REGS: u64 = 0xfed0_0000;

fn mmio(address: u64, access: Access) -> Op {
    Op::mmio(address, 8, access)
}

/// Per vCPU `i`: `n` times { write `tag(i)` at its own register, read it back }.
fn rw_workload(vcpus: usize, n: u64) -> Workload {
    Workload {
        vcpus: (0..vcpus)
            .map(|i| {
                let a = REGS + 8 * i as u64;
                let v = 0x5a00_0000_0000_0000 | i as u64;
                vec![Op::Repeat {
                    count: n,
                    ops: vec![mmio(a, Access::Write(v)), mmio(a, Access::expect(v))],
                }]
            })
            .collect(),
    }
}

/// Joins a guest run, failing (instead of hanging) if it does not finish within 10 s.
fn join_bounded(run: GuestRun, what: &str) -> RunResult {
    wait_until(what, || run.is_finished());
    run.join()
}

fn slot_states(vm: &Vm) -> Vec<u32> {
    (0..usize::from(vm.vcpu_num()))
        .map(|i| state(vm, i))
        .collect()
}

/// A register file at `REGS` counting every access it serves.
fn counted_regs(d: &mut Dispatcher) -> Arc<AtomicU64> {
    let served = Arc::new(AtomicU64::new(0));
    let regs = Arc::new(Mutex::new([0u64; 64]));
    let (s1, s2, r1, r2) = (served.clone(), served.clone(), regs.clone(), regs);
    d.add_mmio(
        REGS,
        64 * 8,
        Box::new(FnDevice::new(
            "counted",
            move |off, _| {
                s1.fetch_add(1, Ordering::Relaxed);
                r1.lock().map(|r| r[(off / 8) as usize]).unwrap_or(u64::MAX)
            },
            move |off, _, v| {
                s2.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut r) = r2.lock() {
                    r[(off / 8) as usize] = v;
                }
            },
        )),
    )
    .expect("free range");
    served
}

/// Serves `w` with a fresh client and checks exactly-once accounting of a clean run.
fn serve_clean(hsm: &Hsm, vm: &Arc<Vm>, w: &Workload, mode: WakeMode) {
    let mut d = Dispatcher::new();
    let served = counted_regs(&mut d);
    let mut client = IoreqClient::new(
        vm.clone(),
        d,
        ClientConfig {
            mode,
            ..Default::default()
        },
    )
    .expect("a new client after recovery");
    let h = client.handle();
    let t = std::thread::spawn(move || client.run());
    let r = join_bounded(
        hsm.guest(vm).expect("guest").spawn(w).expect("spawn"),
        "the guest after recovery",
    );
    h.stop();
    assert_eq!(t.join().expect("client thread"), Ok(RunExit::Stopped));
    assert!(r.is_clean(), "{r:?}");
    assert_eq!(r.completed, w.request_count());
    assert_eq!(served.load(Ordering::Relaxed), r.completed, "device side");
    let s = h.stats();
    assert_eq!(s.handled(), r.completed);
    assert_eq!(s.notifies, r.completed, "one NOTIFY per request");
    assert_eq!(s.notify_errors, 0);
}

fn modes() -> [(u64, WakeMode); 3] {
    [
        (0, WakeMode::Blocking),
        (POLLING, WakeMode::Blocking),
        (0, WakeMode::poll()),
    ]
}

#[test]
fn client_destroyed_mid_flight_then_dm_reset_recovers() {
    for (flags, mode) in modes() {
        let (emu, hsm, vm) = vm_with(4, flags);
        vm.create_ioreq_client().expect("client");
        vm.start().expect("start");
        // Each vCPU: one read that the "device model" claims (or not) and never NOTIFYs.
        let w = Workload {
            vcpus: (0..4)
                .map(|i| vec![mmio(REGS + 8 * i, Access::expect(7))])
                .collect(),
        };
        let run = hsm.guest(&vm).expect("guest").spawn(&w).expect("spawn");
        wait_until("4 requests PROCESSING", || {
            slot_states(&vm) == [ACRN_IOREQ_STATE_PROCESSING; 4]
        });
        // Mid-flight: vCPUs 0 and 1 claimed and answered, 2 and 3 not even claimed.
        let mem = PageSlots::new(vm.ioreq_page().clone());
        let claims: Vec<_> = (0..2)
            .map(|i| protocol::claim(&mem, i).expect("PROCESSING slot"))
            .collect();
        for c in &claims {
            protocol::respond(&mem, c, 7);
        }
        vm.destroy_ioreq_client().expect("destroy client");
        // The late NOTIFYs find no client: 0, nothing done (kernel: "no client -> 0").
        for c in claims {
            vm.notify_request_finish(u32::from(protocol::release_for_notify(c)))
                .expect("NOTIFY without a client is 0");
        }
        // As in the kernel the requests stay PROCESSING and the vCPUs blocked.
        assert_eq!(slot_states(&vm), [ACRN_IOREQ_STATE_PROCESSING; 4]);
        assert!(!run.is_finished(), "vCPUs wait for their requests");
        // CLEAR_VM_IOREQ cannot complete them (no default client)...
        vm.pause().expect("pause");
        vm.clear_vm_ioreq().expect("clear");
        assert_eq!(slot_states(&vm), [ACRN_IOREQ_STATE_PROCESSING; 4]);
        // ...RESET_VM aborts them: every vCPU stops, no request completed twice or half.
        vm.reset().expect("reset");
        let r = join_bounded(run, "vCPUs after RESET_VM");
        assert_eq!(r.issued, 4, "{r:?}");
        assert_eq!(r.completed, 0, "{r:?}");
        assert!(r.faults.is_empty() && r.mismatches.is_empty(), "{r:?}");
        for v in &r.vcpus {
            assert_eq!(v.stopped, Some(StopReason::Reset), "{r:?}");
        }
        assert_eq!(slot_states(&vm), [ACRN_IOREQ_STATE_FREE; 4]);
        vm.start().expect("start");
        assert_eq!(emu.vm_state(vm.vmid()), Some(VmState::Running));
        serve_clean(&hsm, &vm, &rw_workload(4, 200), mode);
    }
}

#[test]
fn running_client_stopped_inside_a_handler_then_reset_vm_like_dm() {
    for (flags, mode) in modes() {
        let (_emu, hsm, vm) = vm_with(2, flags);
        let (entered_tx, entered_rx) = mpsc::channel::<()>();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let entered_tx = Mutex::new(entered_tx);
        let release_rx = Mutex::new(release_rx);
        let seen = Arc::new(AtomicU64::new(0));
        let seen2 = seen.clone();
        let mut d = Dispatcher::new();
        // A device whose read at offset 0x10 blocks until the test releases it.
        d.add_mmio(
            0xfee0_0000,
            0x100,
            Box::new(FnDevice::new(
                "slow",
                move |off, _| {
                    seen2.fetch_add(1, Ordering::Relaxed);
                    if off == 0x10 {
                        let _ = entered_tx.lock().map(|t| t.send(()));
                        let _ = release_rx
                            .lock()
                            .map(|r| r.recv_timeout(Duration::from_secs(10)));
                    }
                    0x42
                },
                |_, _, _| {},
            )),
        )
        .expect("range");
        let mut client = IoreqClient::new(
            vm.clone(),
            d,
            ClientConfig {
                mode,
                ..Default::default()
            },
        )
        .expect("client");
        let h = client.handle();
        let t = std::thread::spawn(move || {
            let exit = client.run();
            (exit, client)
        });
        vm.start().expect("start");
        let w = Workload {
            vcpus: vec![
                vec![
                    mmio(0xfee0_0000, Access::expect(0x42)),
                    mmio(0xfee0_0010, Access::expect(0x42)),
                    mmio(0xfee0_0000, Access::expect(0x42)),
                ],
                vec![],
            ],
        };
        let run = hsm.guest(&vm).expect("guest").spawn(&w).expect("spawn");
        entered_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the handler was entered");
        // The device model goes away while its handler runs.
        h.stop();
        release_tx.send(()).expect("release");
        let (exit, mut client) = t.join().expect("client thread");
        assert_eq!(exit, Ok(RunExit::Stopped));
        // A request is left in flight; the vCPU waits on it.
        wait_until("a request left PROCESSING", || {
            state(&vm, 0) == ACRN_IOREQ_STATE_PROCESSING
        });
        assert!(!run.is_finished());
        // Recovery: the DM's reset as one call (PAUSE, CLEAR, devices, RESET, START).
        client
            .reset_vm_like_dm(&[VcpuRegs {
                vcpu_id: 0,
                rip: 0xfff0,
                ..Default::default()
            }])
            .expect("reset_vm_like_dm");
        let r = join_bounded(run, "the vCPU after the DM reset");
        // Blocking mode: stop() destroyed the client, so the handler's NOTIFY was a no-op and
        // the read it served is aborted by the reset. Poll mode: stop() only raises the flag,
        // the NOTIFY completes the read and the third request, never claimed, is aborted.
        let blocking = matches!(mode, WakeMode::Blocking);
        let expected = if blocking { (2, 1) } else { (3, 2) };
        assert_eq!((r.issued, r.completed), expected, "{r:?}");
        // Reset, or (poll mode: the client still existed, so CLEAR completed the request)
        // a zombie freed by the completion while paused.
        assert!(
            matches!(
                r.vcpus[0].stopped,
                Some(StopReason::Reset | StopReason::Paused)
            ),
            "{r:?}"
        );
        assert!(r.mismatches.is_empty() && r.faults.is_empty(), "{r:?}");
        // Device side: two reads served, none twice; exactly one request aborted.
        assert_eq!(seen.load(Ordering::Relaxed), 2);
        assert_eq!(h.stats().handled(), 2);
        assert_eq!(h.stats().notifies, 2);
        drop(client);
        serve_clean(&hsm, &vm, &rw_workload(2, 300), mode);
    }
}

#[test]
fn reset_requested_by_a_device_while_8_vcpus_are_busy() {
    for (flags, mode) in modes() {
        let (emu, hsm, vm) = vm_with(8, flags);
        let control = VmControl::new();
        let mut d = Dispatcher::new();
        d.add_pio(0xcf9, 1, Box::new(ResetPort::new(control.clone())))
            .expect("reset port");
        d.add_mmio(REGS, 0x1000, Box::new(RegisterFile::new(0x1000)))
            .expect("regs");
        let counters = d.counters();
        let mut client = IoreqClient::new(
            vm.clone(),
            d,
            ClientConfig {
                mode,
                control: Some(control),
                ..Default::default()
            },
        )
        .expect("client");
        let h = client.handle();
        let t = std::thread::spawn(move || client.run());
        vm.start().expect("start");
        // vCPU 0 resets the VM after 100 round trips; the others run 2000 each.
        let mut w = rw_workload(8, 2000);
        w.vcpus[0] = vec![
            Op::Repeat {
                count: 100,
                ops: vec![mmio(REGS, Access::Write(1)), mmio(REGS, Access::expect(1))],
            },
            Op::Pio {
                port: 0xcf9,
                size: 1,
                access: Access::Write(0x06),
            },
            mmio(REGS, Access::expect(1)),
        ];
        let r = join_bounded(
            hsm.guest(&vm).expect("guest").spawn(&w).expect("spawn"),
            "8 vCPUs across a reset",
        );
        wait_until("the reset", || h.stats().resets == 1);
        assert!(r.mismatches.is_empty(), "{:?}", r.mismatches);
        assert!(r.faults.is_empty(), "{:?}", r.faults);
        assert_eq!(r.vcpus[0].issued, 201, "the op after the reset never ran");
        assert!(r.vcpus[0].stopped.is_some());
        for (i, v) in r.vcpus.iter().enumerate() {
            // Each vCPU lost at most the one request in flight, and only if it was stopped (a
            // vCPU between two requests when PAUSE came stops without losing one).
            let lost = v.issued - v.completed;
            assert!(lost <= u64::from(v.stopped.is_some()), "vCPU {i}: {v:?}");
            if v.stopped.is_none() {
                assert_eq!(v.completed, 4000, "vCPU {i} finished before the reset");
            }
        }
        let s = h.stats();
        assert_eq!((s.withheld, s.resets), (1, 1));
        // Every request the client claimed was NOTIFYed once, except the withheld one.
        assert_eq!(s.notifies + s.withheld, s.handled(), "{s:?}");
        assert!(
            s.handled() <= r.issued && r.completed <= s.notifies,
            "{s:?} {r:?}"
        );
        let device_side: u64 = counters.iter().map(|c| c.reads() + c.writes()).sum();
        assert_eq!(device_side, s.handled());
        assert_eq!(emu.vm_state(vm.vmid()), Some(VmState::Running));
        assert_eq!(slot_states(&vm), [ACRN_IOREQ_STATE_FREE; 8]);
        // The devices were reset and the same client serves the new boot exactly once.
        let before = h.stats();
        let mut w2 = rw_workload(8, 250);
        w2.vcpus[0].insert(0, mmio(REGS, Access::expect(0)));
        let r2 = join_bounded(
            hsm.guest(&vm).expect("guest").spawn(&w2).expect("spawn"),
            "the new boot",
        );
        assert!(r2.is_clean(), "{r2:?}");
        let after = h.stats();
        assert_eq!(after.handled() - before.handled(), r2.completed);
        assert_eq!(after.notifies - before.notifies, r2.completed);
        h.stop();
        assert_eq!(t.join().expect("client thread"), Ok(RunExit::Stopped));
    }
}

#[test]
fn clear_vm_ioreq_with_requests_outstanding() {
    for flags in [0, POLLING] {
        let (_emu, hsm, vm) = vm_with(4, flags);
        vm.create_ioreq_client().expect("client");
        vm.start().expect("start");
        let mem = PageSlots::new(vm.ioreq_page().clone());
        // Running VM: vCPUs 0 and 1 are claimed and answered (NOTIFY withheld), 2 and 3 are not.
        // CLEAR completes all four without handling: 0/1 read the answer already in the slot,
        // 2/3 the value the slot holds (0: the guest's own read request).
        let w = Workload {
            vcpus: vec![
                vec![mmio(REGS, Access::expect(0xabcd))],
                vec![mmio(REGS + 8, Access::expect(0xabcd))],
                vec![mmio(REGS + 16, Access::expect(0))],
                vec![mmio(REGS + 24, Access::expect(0))],
            ],
        };
        let run = hsm.guest(&vm).expect("guest").spawn(&w).expect("spawn");
        wait_until("4 requests PROCESSING", || {
            slot_states(&vm) == [ACRN_IOREQ_STATE_PROCESSING; 4]
        });
        let claims: Vec<_> = (0..2)
            .map(|i| protocol::claim(&mem, i).expect("claim"))
            .collect();
        for c in &claims {
            protocol::respond(&mem, c, 0xabcd);
        }
        vm.clear_vm_ioreq().expect("clear");
        drop(claims); // withheld: CLEAR completed them; a NOTIFY now would be a stray one.
        let r = join_bounded(run, "vCPUs after CLEAR_VM_IOREQ");
        assert!(r.is_clean(), "each request completed exactly once: {r:?}");
        assert_eq!((r.issued, r.completed), (4, 4));
        // No stray completion or latched event left behind: a full run is clean.
        let dm = spawn_dm(vm.clone(), register_file());
        let big = rw_workload(4, 300);
        let r2 = join_bounded(
            hsm.guest(&vm).expect("guest").spawn(&big).expect("spawn"),
            "the run after CLEAR",
        );
        assert!(r2.is_clean(), "{r2:?}");
        // The DM's order: PAUSE first; outstanding requests are then completed into zombies.
        let w3 = Workload {
            vcpus: (0..4)
                .map(|i| vec![mmio(REGS + 8 * i, Access::expect(0))])
                .collect(),
        };
        vm.destroy_ioreq_client().expect("stop the DM loop");
        let stats = dm.join().expect("dm");
        assert_eq!(stats.notified.iter().sum::<u64>(), r2.completed);
        vm.create_ioreq_client().expect("client");
        let run = hsm.guest(&vm).expect("guest").spawn(&w3).expect("spawn");
        wait_until("4 requests PROCESSING", || {
            slot_states(&vm) == [ACRN_IOREQ_STATE_PROCESSING; 4]
        });
        vm.pause().expect("pause");
        vm.clear_vm_ioreq().expect("clear");
        let r3 = join_bounded(run, "zombie vCPUs after PAUSE + CLEAR");
        assert_eq!((r3.issued, r3.completed), (4, 0), "{r3:?}");
        for v in &r3.vcpus {
            assert_eq!(v.stopped, Some(StopReason::Paused), "{r3:?}");
        }
        assert_eq!(slot_states(&vm), [ACRN_IOREQ_STATE_FREE; 4]);
        vm.destroy_ioreq_client().expect("destroy");
        vm.reset().expect("reset");
        vm.start().expect("start");
        serve_clean(&hsm, &vm, &rw_workload(4, 200), WakeMode::Blocking);
    }
}

#[test]
fn a_vcpu_never_hangs_whatever_the_dm_does() {
    // Every way a device model can leave a request behind ends every vCPU within the bound:
    // stop serving, then each of PAUSE+RESET, PAUSE+DESTROY_VM, or PAUSE and closing the file.
    for how in 0..3 {
        let (_emu, hsm, vm) = vm_with(3, 0);
        vm.create_ioreq_client().expect("client");
        vm.start().expect("start");
        let w = Workload {
            vcpus: (0..3)
                .map(|i| vec![mmio(REGS + 8 * i, Access::expect(0))])
                .collect(),
        };
        let run = hsm.guest(&vm).expect("guest").spawn(&w).expect("spawn");
        wait_until("requests PROCESSING", || {
            slot_states(&vm) == [ACRN_IOREQ_STATE_PROCESSING; 3]
        });
        let t0 = Instant::now();
        let expected = match how {
            0 => {
                vm.pause().expect("pause");
                vm.reset().expect("reset");
                StopReason::Reset
            }
            1 => {
                vm.pause().expect("pause");
                vm.destroy().expect("destroy");
                StopReason::Destroyed
            }
            _ => {
                // The device model exits after PAUSE: closing the file destroys the VM.
                // (Without the PAUSE the hypervisor refuses DESTROY_VM and the VM is orphaned,
                // as in the kernel: `acrn_dev_release` ignores the failure.)
                vm.pause().expect("pause");
                drop(vm);
                drop(hsm);
                StopReason::Destroyed
            }
        };
        let r = join_bounded(run, "vCPUs");
        assert!(t0.elapsed() < Duration::from_secs(5));
        assert_eq!((r.issued, r.completed), (3, 0), "{r:?}");
        for v in &r.vcpus {
            assert_eq!(v.stopped, Some(expected), "case {how}: {r:?}");
        }
    }
}

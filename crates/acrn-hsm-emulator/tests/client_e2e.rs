//! The ioreq client against the emulator: a guest workload over native devices, in both wake
//! modes and both completion modes; stop; malformed slots; the device-model style reset.

use std::sync::Arc;
use std::time::{Duration, Instant};

use acrn_hsm::client::{
    Bdf, ClientConfig, Dispatcher, IoreqClient, RunExit, WakeMode, reset_vm_like_dm,
};
use acrn_hsm::devices::{Bar, PciFunction, RegisterFile, ResetPort, Uart16550};
use acrn_hsm::{GUEST_FLAG_IO_COMPLETION_POLLING, Hsm, VcpuRegs, Vm, VmConfig};
use acrn_hsm_emulator::{Access, EmulatedExt, Emulator, Op, VmState, Workload};
use acrn_uapi::bindings::{
    ACRN_IOREQ_STATE_COMPLETE, ACRN_IOREQ_STATE_FREE, ACRN_IOREQ_TYPE_MMIO, ACRN_IOREQ_TYPE_PORTIO,
};
use acrn_uapi::ioreq::{SLOT_OFFSET_PROCESSED, SLOT_OFFSET_VALUE};

fn vm(vcpus: u16, polling: bool) -> (Emulator, Hsm, Arc<Vm>) {
    let emu = Emulator::new();
    let hsm = emu.open_hsm();
    let vm = hsm
        .create_vm(&VmConfig {
            vcpu_num: vcpus,
            vm_flag: if polling {
                GUEST_FLAG_IO_COMPLETION_POLLING
            } else {
                0
            },
            ..Default::default()
        })
        .expect("create_vm");
    (emu, hsm, Arc::new(vm))
}

fn pci(reg: u16, size: u8, access: Access) -> Op {
    Op::pci(0, 3, 0, reg, size, access)
}

fn devices() -> (Dispatcher, acrn_hsm::devices::UartOutput) {
    let mut d = Dispatcher::new();
    let uart = Uart16550::new();
    let out = uart.output();
    d.add_pio(0x3f8, 8, Box::new(uart)).expect("uart");
    d.add_mmio(0xfed0_0000, 0x1000, Box::new(RegisterFile::new(0x1000)))
        .expect("regs");
    let f = PciFunction::new(0x8086, 0x1234)
        .with_bar(
            0,
            Bar::Mem32 {
                size: 0x1000,
                prefetchable: false,
            },
        )
        .expect("bar");
    d.add_pci(Bdf::new(0, 3, 0), Box::new(f)).expect("pci");
    (d, out)
}

fn small_workload() -> Workload {
    let mut v0 = Vec::new();
    for b in b"hello\n" {
        v0.push(Op::pio(0x3fd, 1, Access::expect(0x60)));
        v0.push(Op::pio(0x3f8, 1, Access::Write(u64::from(*b))));
    }
    v0.push(pci(0, 4, Access::expect(0x1234_8086)));
    v0.push(pci(0x10, 4, Access::Write(0xffff_ffff)));
    v0.push(pci(0x10, 4, Access::expect(0xffff_f000)));
    v0.push(Op::pio(0x1234, 2, Access::expect(0xffff)));
    v0.push(Op::mmio(0xdead_0000, 8, Access::expect(u64::MAX)));
    let mut w = vec![v0];
    for v in 1..4u64 {
        let base = 0xfed0_0000 + v * 0x100;
        w.push(vec![Op::Repeat {
            count: 50,
            ops: vec![
                Op::mmio(base, 8, Access::Write(0x1122_3344_5566_7788 ^ v)),
                Op::mmio(base, 8, Access::expect(0x1122_3344_5566_7788 ^ v)),
                Op::mmio(base + 2, 2, Access::expect(0x5566)),
                Op::mmio(base + 4, 4, Access::expect(0x1122_3344)),
            ],
        }]);
    }
    Workload { vcpus: w }
}

fn run_mode(mode: WakeMode, polling: bool) {
    let (_emu, hsm, vm) = vm(4, polling);
    let (disp, out) = devices();
    let mut client = IoreqClient::new(
        vm.clone(),
        disp,
        ClientConfig {
            mode,
            ..Default::default()
        },
    )
    .expect("client");
    let handle = client.handle();
    let t = std::thread::spawn(move || {
        let r = client.run();
        (r, client)
    });
    vm.start().expect("start");
    let w = small_workload();
    let res = hsm.guest(&vm).expect("guest").run(&w).expect("run");
    handle.stop();
    let (exit, client) = t.join().expect("client thread");
    assert_eq!(exit, Ok(RunExit::Stopped));
    assert!(res.is_clean(), "{mode:?} polling={polling}: {res:?}");
    assert_eq!(res.issued, w.request_count());
    assert_eq!(out.text(), "hello\n");
    let s = client.stats();
    // cf8 writes are completed in the kernel: 3 PCI accesses = 3 cf8 + 3 cfc.
    assert_eq!(s.handled(), w.request_count() - 3);
    assert_eq!(s.notifies, s.handled());
    assert_eq!(s.unclaimed, 2);
    assert_eq!(s.faults, 0);
    assert_eq!(s.pci_reads + s.pci_writes, 3);
    let counters = handle.device_counters();
    assert_eq!(counters[0].name(), "uart16550");
    assert_eq!(counters[0].reads() + counters[0].writes(), 12);
    assert_eq!(counters[1].reads(), 450);
    assert_eq!(counters[1].writes(), 150);
    vm.pause().expect("pause");
}

#[test]
fn blocking_notify_vm() {
    run_mode(WakeMode::Blocking, false);
}

#[test]
fn blocking_polling_vm() {
    run_mode(WakeMode::Blocking, true);
}

#[test]
fn poll_notify_vm() {
    run_mode(WakeMode::poll(), false);
}

#[test]
fn poll_polling_vm() {
    run_mode(WakeMode::poll(), true);
}

#[test]
fn stop_is_prompt_in_both_modes() {
    for mode in [WakeMode::Blocking, WakeMode::poll()] {
        let (_emu, _hsm, vm) = vm(2, false);
        let mut client = IoreqClient::new(
            vm.clone(),
            Dispatcher::new(),
            ClientConfig {
                mode,
                ..Default::default()
            },
        )
        .expect("client");
        let h = client.handle();
        let t = std::thread::spawn(move || client.run());
        let t_start = Instant::now();
        while !h.is_running() {
            assert!(
                t_start.elapsed() < Duration::from_secs(5),
                "the client never started"
            );
            std::thread::yield_now();
        }
        let t0 = Instant::now();
        h.stop();
        assert_eq!(t.join().expect("join"), Ok(RunExit::Stopped));
        assert!(
            t0.elapsed() < Duration::from_millis(500),
            "{mode:?}: {:?}",
            t0.elapsed()
        );
        assert!(!h.is_running());
    }
}

#[test]
fn malformed_slots_are_completed_and_reported() {
    let (emu, _hsm, vm) = vm(4, false);
    let faults = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut d = Dispatcher::new();
    d.add_pio(0x3f8, 8, Box::new(Uart16550::new()))
        .expect("uart");
    let f2 = faults.clone();
    d.set_fault_hook(move |r| f2.lock().expect("lock").push(r.reason));
    let mut client = IoreqClient::new(vm.clone(), d, ClientConfig::default()).expect("client");
    vm.start().expect("start");
    // PIO size 8, MMIO size 3, MMIO range overflow, and an unknown type.
    let page = vm.ioreq_page().clone();
    let reqs = |dir: u64, addr: u64, size: u64| [dir, addr, size, 0, 0, 0, 0, 0];
    emu.raise_request(vm.vmid(), 0, ACRN_IOREQ_TYPE_PORTIO, &reqs(0, 0x3f8, 8))
        .expect("raise");
    emu.raise_request(vm.vmid(), 1, ACRN_IOREQ_TYPE_MMIO, &reqs(0, 0x1000, 3))
        .expect("raise");
    emu.raise_request(
        vm.vmid(),
        2,
        ACRN_IOREQ_TYPE_MMIO,
        &reqs(0, u64::MAX - 2, 8),
    )
    .expect("raise");
    emu.raise_request(vm.vmid(), 3, 7, &reqs(0, 0, 4))
        .expect("raise");
    let n = client.scan_once().expect("scan");
    assert_eq!(n, 4);
    for i in 0..4 {
        let st = page
            .atomic_u32(i * 256 + SLOT_OFFSET_PROCESSED)
            .expect("atomic")
            .load(std::sync::atomic::Ordering::Acquire);
        assert_eq!(st, ACRN_IOREQ_STATE_COMPLETE, "slot {i}");
    }
    let v = |i: usize| {
        page.atomic_u64(i * 256 + SLOT_OFFSET_VALUE)
            .expect("atomic")
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    // Reads answered all ones (PIO: the u32 value field; MMIO: u64).
    assert_eq!(v(0) & 0xffff_ffff, 0xffff_ffff);
    assert_eq!(v(1), u64::MAX);
    assert_eq!(v(2), u64::MAX);
    assert_eq!(v(3), u64::MAX);
    assert_eq!(client.stats().faults, 4);
    assert_eq!(client.stats().notifies, 4);
    assert_eq!(faults.lock().expect("lock").len(), 4);
    // Nothing left to do: a second pass claims nothing (no double NOTIFY).
    assert_eq!(client.scan_once().expect("scan"), 0);
    assert_eq!(client.stats().notifies, 4);
}

#[test]
fn panicking_device_does_not_kill_the_client() {
    let (_emu, hsm, vm) = vm(1, false);
    let mut d = Dispatcher::new();
    d.add_pio(
        0x80,
        1,
        Box::new(acrn_hsm::devices::FnDevice::new(
            "boom",
            |_, _| panic!("device bug"),
            |_, _, _| {},
        )),
    )
    .expect("add");
    let mut client = IoreqClient::new(vm.clone(), d, ClientConfig::default()).expect("client");
    let h = client.handle();
    let t = std::thread::spawn(move || client.run());
    vm.start().expect("start");
    let w = Workload {
        vcpus: vec![vec![
            Op::pio(0x80, 1, Access::expect(0xff)),
            Op::pio(0x80, 1, Access::Write(1)),
            Op::pio(0x80, 1, Access::expect(0xff)),
        ]],
    };
    let r = hsm.guest(&vm).expect("guest").run(&w).expect("run");
    h.stop();
    assert_eq!(t.join().expect("join"), Ok(RunExit::Stopped));
    assert!(r.is_clean(), "{r:?}");
    assert_eq!(h.stats().faults, 2);
    assert_eq!(h.stats().pio_writes, 1);
}

fn regs(vcpu: u16, rip: u64) -> VcpuRegs {
    VcpuRegs {
        vcpu_id: vcpu,
        rip,
        cr0: 0x30,
        ..Default::default()
    }
}

#[test]
fn reset_from_a_device_is_done_like_the_dm() {
    for polling in [false, true] {
        let (emu, hsm, vm) = vm(2, polling);
        let mut d = Dispatcher::new();
        let mut client = {
            let control = acrn_hsm::VmControl::new();
            d.add_pio(0xcf9, 1, Box::new(ResetPort::new(control.clone())))
                .expect("reset port");
            d.add_mmio(0xfed0_0000, 0x100, Box::new(RegisterFile::new(0x100)))
                .expect("regs");
            IoreqClient::new(
                vm.clone(),
                d,
                ClientConfig {
                    reset_regs: vec![regs(0, 0xfff0), regs(1, 0xfff0)],
                    control: Some(control),
                    ..Default::default()
                },
            )
            .expect("client")
        };
        let h = client.handle();
        let t = std::thread::spawn(move || {
            let r = client.run();
            (r, client)
        });
        vm.start().expect("start");
        let guest = hsm.guest(&vm).expect("guest");
        // vCPU 0 writes a register, then resets; the access after the reset never runs.
        let w = Workload {
            vcpus: vec![vec![
                Op::mmio(0xfed0_0000, 4, Access::Write(0xabcd)),
                Op::mmio(0xfed0_0000, 4, Access::expect(0xabcd)),
                Op::pio(0xcf9, 1, Access::Write(0x06)),
                Op::pio(0xcf9, 1, Access::expect(0)),
            ]],
        };
        let r = guest.run(&w).expect("run");
        assert_eq!(r.issued, 3, "polling={polling}: {r:?}");
        assert_eq!(
            r.completed, 2,
            "the reset request's NOTIFY was withheld: {r:?}"
        );
        assert!(r.vcpus[0].stopped.is_some(), "{r:?}");
        // The reset finished: running again, slots FREE, registers set.
        let t0 = Instant::now();
        while h.stats().resets == 0 {
            assert!(t0.elapsed() < Duration::from_secs(5), "no reset");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(emu.vm_state(vm.vmid()), Some(VmState::Running));
        for i in 0..2 {
            let st = vm
                .ioreq_page()
                .atomic_u32(i * 256 + SLOT_OFFSET_PROCESSED)
                .expect("atomic")
                .load(std::sync::atomic::Ordering::Acquire);
            assert_eq!(st, ACRN_IOREQ_STATE_FREE);
        }
        let raw = emu.vcpu_regs(vm.vmid(), 0).expect("regs");
        assert_eq!(
            &raw[160..168],
            &0xfff0u64.to_le_bytes(),
            "rip set after reset"
        );
        assert_eq!(h.stats().withheld, 1);
        // The devices were reset and the same client keeps serving the new boot.
        let w2 = Workload {
            vcpus: vec![vec![
                Op::mmio(0xfed0_0000, 4, Access::expect(0)),
                Op::pio(0xcf9, 1, Access::expect(0)),
            ]],
        };
        let r2 = guest.run(&w2).expect("run");
        assert!(r2.is_clean(), "{r2:?}");
        h.stop();
        let (exit, mut client) = t.join().expect("join");
        assert_eq!(exit, Ok(RunExit::Stopped));
        // The one-call form, outside the loop.
        let mut d = Dispatcher::new();
        reset_vm_like_dm(&vm, None, &mut d, &[regs(1, 0x1000)]).expect("reset");
        assert_eq!(emu.vm_state(vm.vmid()), Some(VmState::Running));
        client.dispatcher_mut();
    }
}

//! The kernel's samples/acrn/vm-sample.c flow against the emulator: create with a 4K-aligned
//! ioreq page, SET_MEMSEG of guest RAM, SET_VCPU_REGS, CREATE_IOREQ_CLIENT, START, the
//! ATTACH / scan / NOTIFY loop (a plain device model), PAUSE, DESTROY — with a guest workload
//! whose reads carry `expect` values.

#![allow(clippy::unwrap_used)]

mod common;
use common::*;

use std::sync::Arc;

#[test]
fn vm_sample_flow_completes_every_request_exactly_once() {
    for flags in [0, GUEST_FLAG_IO_COMPLETION_POLLING] {
        let emu = Emulator::new();
        let hsm = emu.open_hsm();
        let ioreq_page = Arc::new(alloc_page().unwrap());
        assert_eq!(ioreq_page.addr() % 4096, 0);
        let vm = Arc::new(
            hsm.create_vm(&VmConfig {
                vcpu_num: 2,
                uuid: *b"vm-sample\0\0\0\0\0\0\0",
                vm_flag: flags,
                cpu_affinity: 0b11,
                ioreq_page: Some(ioreq_page.clone()),
            })
            .unwrap(),
        );
        assert_eq!(vm.vcpu_num(), 2);
        // Guest RAM: 1 MiB at GPA 0.
        let ram = Arc::new(UserPages::new(1 << 20).unwrap());
        vm.map_ram(0, ram, 7).unwrap();
        // BSP registers (real mode at 0x0, as the sample's guest blob).
        let regs = VcpuRegs {
            vcpu_id: 0,
            cr0: 0x30,
            cs_ar: 0x9b,
            cs_limit: 0xffff,
            rflags: 2,
            ..Default::default()
        };
        vm.set_vcpu_regs(&regs).unwrap();
        vm.create_ioreq_client().unwrap();
        vm.start().unwrap();
        let dm = spawn_dm(vm.clone(), register_file());
        let w = Workload::from_json(
            r#"{"vcpus": [
              [{"repeat": 100, "ops": [
                {"pio": "0x3f8", "size": 1, "write": 65},
                {"pio": "0x3f8", "size": 1, "read": true, "expect": 65},
                {"mmio": "0xfed00000", "size": 4, "write": "0xcafef00d"},
                {"mmio": "0xfed00000", "size": 4, "read": true, "expect": "0xcafef00d"}]},
               {"pci": {"bus": 0, "dev": 3, "func": 0, "reg": 0}, "size": 4, "read": true, "expect": "0x12348086"}],
              [{"repeat": 150, "ops": [
                {"mmio": "0xfed01000", "size": 8, "write": "0x0123456789abcdef"},
                {"mmio": "0xfed01000", "size": 8, "read": true, "expect": "0x0123456789abcdef"}]}]
            ]}"#,
        )
        .unwrap();
        let r = hsm.guest(&vm).unwrap().run(&w).unwrap();
        assert!(r.mismatches.is_empty(), "{:?}", r.mismatches);
        assert!(r.faults.is_empty(), "{:?}", r.faults);
        assert_eq!(r.issued, w.request_count());
        assert_eq!(r.completed, w.request_count());
        assert_eq!(r.latencies_ns.len() as u64, r.completed);
        // vm_exit(): PAUSE, then DESTROY; destroying the VM ends the DM loop (ATTACH -> ENODEV).
        vm.pause().unwrap();
        vm.destroy().unwrap();
        let stats = dm.join().unwrap();
        // Every request the DM saw was notified once; the CF8 write was handled in the kernel.
        assert_eq!(stats.notified, vec![401, 300], "flags {flags:#x}");
        assert_eq!(emu.vm_state(vm.vmid()), Some(VmState::PoweredOff));
        for i in 0..2 {
            assert_eq!(state(&vm, i), ACRN_IOREQ_STATE_FREE);
        }
    }
}

#[test]
fn random_workload_runs_clean_on_polling_and_notification_vms() {
    let ranges = [
        RandomRange {
            space: Space::Pio,
            base: 0x3f8,
            len: 8,
        },
        RandomRange {
            space: Space::Mmio,
            base: 0xfed0_0000,
            len: 0x100,
        },
    ];
    for flags in [0, GUEST_FLAG_IO_COMPLETION_POLLING] {
        let (emu, _hsm, vm) = vm_with(4, flags);
        vm.create_ioreq_client().unwrap();
        vm.start().unwrap();
        let dm = spawn_dm(vm.clone(), register_file());
        let w = Workload::random(42, 4, &ranges, 300).unwrap();
        let r = emu.guest(vm.vmid()).unwrap().run(&w).unwrap();
        assert!(r.is_clean(), "{r:?}");
        assert_eq!(r.completed, 1200);
        vm.destroy_ioreq_client().unwrap();
        assert_eq!(dm.join().unwrap().notified.iter().sum::<u64>(), 1200);
    }
}

#[test]
fn reset_mid_flight_stops_vcpus_and_frees_slots() {
    let (emu, _hsm, vm) = vm_with(2, 0);
    vm.create_ioreq_client().unwrap();
    vm.start().unwrap();
    // No device model: both vCPUs block on their first request.
    let w = Workload::from_json(r#"{"vcpus": [[{"pio": 96, "size": 1, "read": true}], [{"pio": 97, "size": 1, "read": true}]]}"#).unwrap();
    let run = emu.guest(vm.vmid()).unwrap().spawn(&w).unwrap();
    wait_until("both PROCESSING", || {
        state(&vm, 0) == ACRN_IOREQ_STATE_PROCESSING && state(&vm, 1) == ACRN_IOREQ_STATE_PROCESSING
    });
    // The DM's reset sequence: PAUSE -> CLEAR_VM_IOREQ -> RESET.
    vm.pause().unwrap();
    vm.clear_vm_ioreq().unwrap();
    let r = run.join();
    assert_eq!(r.issued, 2);
    assert_eq!(r.completed, 0, "zombie vCPUs do no post-work");
    assert!(
        r.vcpus
            .iter()
            .all(|v| v.stopped == Some(StopReason::Paused))
    );
    vm.reset().unwrap();
    for i in 0..2 {
        assert_eq!(state(&vm, i), ACRN_IOREQ_STATE_FREE);
    }
    // The VM can run again.
    vm.start().unwrap();
    let dm = spawn_dm(vm.clone(), register_file());
    let r = emu.guest(vm.vmid()).unwrap().run(&w).unwrap();
    assert_eq!(r.completed, 2);
    vm.destroy_ioreq_client().unwrap();
    dm.join().unwrap();
}

#[test]
fn guest_run_errors() {
    let (emu, _hsm, vm) = vm_with(1, 0);
    let g = emu.guest(vm.vmid()).unwrap();
    let w = Workload::from_json(r#"{"vcpus": [[{"pio": 96, "size": 1, "read": true}]]}"#).unwrap();
    assert_eq!(g.run(&w).unwrap_err(), Errno::EPERM, "VM not running");
    vm.start().unwrap();
    let two = Workload::from_json(r#"{"vcpus": [[], []]}"#).unwrap();
    assert_eq!(
        g.run(&two).unwrap_err(),
        Errno::EINVAL,
        "more vCPU lists than vCPUs"
    );
    assert_eq!(emu.guest(0x77).unwrap_err(), Errno::ENOENT);
}

#[test]
fn dropping_the_emulator_stops_blocked_vcpus() {
    let run = {
        let (emu, _hsm, vm) = vm_with(1, GUEST_FLAG_IO_COMPLETION_POLLING);
        vm.create_ioreq_client().unwrap();
        vm.start().unwrap();
        let w =
            Workload::from_json(r#"{"vcpus": [[{"pio": 96, "size": 1, "read": true}]]}"#).unwrap();
        let run = emu.guest(vm.vmid()).unwrap().spawn(&w).unwrap();
        wait_until("PROCESSING", || {
            state(&vm, 0) == ACRN_IOREQ_STATE_PROCESSING
        });
        run
    };
    let r = run.join();
    assert_eq!(r.vcpus[0].stopped, Some(StopReason::Shutdown));
}

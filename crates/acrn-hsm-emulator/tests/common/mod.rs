//! Shared helpers: an emulated VM, raw slot access, and a tiny plain device-model loop (the
//! attach / scan / notify loop of samples/acrn/vm-sample.c and the ACRN DM's `vm_loop`).
#![allow(dead_code, unused_imports)]

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

pub use acrn_hsm::*;
pub use acrn_hsm_emulator::*;
pub use acrn_uapi::bindings::{
    ACRN_IOREQ_DIR_READ, ACRN_IOREQ_DIR_WRITE, ACRN_IOREQ_STATE_COMPLETE, ACRN_IOREQ_STATE_FREE,
    ACRN_IOREQ_STATE_PENDING, ACRN_IOREQ_STATE_PROCESSING, ACRN_IOREQ_TYPE_MMIO,
    ACRN_IOREQ_TYPE_PCICFG, ACRN_IOREQ_TYPE_PORTIO,
};
pub use acrn_uapi::ioctl::*;
pub use acrn_uapi::ioreq::{
    SLOT_OFFSET_ADDRESS, SLOT_OFFSET_COMPLETION_POLLING, SLOT_OFFSET_DIRECTION,
    SLOT_OFFSET_KERNEL_HANDLED, SLOT_OFFSET_PCI_BUS, SLOT_OFFSET_PCI_DEV, SLOT_OFFSET_PCI_FUNC,
    SLOT_OFFSET_PCI_REG, SLOT_OFFSET_PROCESSED, SLOT_OFFSET_SIZE, SLOT_OFFSET_TYPE,
    SLOT_OFFSET_VALUE,
};

/// An emulator, a handle on it, and a VM with `vcpus` vCPUs and `flags`.
pub fn vm_with(vcpus: u16, flags: u64) -> (Emulator, Hsm, Arc<Vm>) {
    let emu = Emulator::new();
    let hsm = emu.open_hsm();
    let vm = hsm
        .create_vm(&VmConfig {
            vcpu_num: vcpus,
            vm_flag: flags,
            ..Default::default()
        })
        .expect("create_vm");
    (emu, hsm, Arc::new(vm))
}

pub fn u32_at(vm: &Vm, vcpu: usize, off: usize) -> u32 {
    vm.ioreq_page()
        .atomic_u32(vcpu * 256 + off)
        .unwrap()
        .load(Ordering::Acquire)
}

pub fn set_u32(vm: &Vm, vcpu: usize, off: usize, v: u32) {
    vm.ioreq_page()
        .atomic_u32(vcpu * 256 + off)
        .unwrap()
        .store(v, Ordering::Release)
}

pub fn state(vm: &Vm, vcpu: usize) -> u32 {
    u32_at(vm, vcpu, SLOT_OFFSET_PROCESSED)
}

/// The 64-byte `reqs` of a PIO/MMIO request.
pub fn reqs(dir: u32, addr: u64, size: u64, value: u64) -> [u64; 8] {
    [u64::from(dir), addr, size, value, 0, 0, 0, 0]
}

pub fn raise(emu: &Emulator, vm: &Vm, vcpu: u16, ty: u32, r: [u64; 8]) {
    emu.raise_request(vm.vmid(), vcpu, ty, &r)
        .expect("raise_request");
}

/// One request as the device model saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub vcpu: usize,
    pub ty: u32,
    pub dir: u32,
    pub addr: u64,
    pub size: u64,
    pub value: u64,
    pub bdf: (u32, u32, u32),
    pub reg: u32,
}

#[derive(Debug, Default)]
pub struct DmStats {
    pub notified: Vec<u64>,
    pub seen: Vec<Seen>,
    pub attach_returns: u64,
}

/// A register-file device: writes are stored, reads return the last value written at that
/// (type, address) or the DM default (all ones by size). PCI config reads of 00:03.0 reg 0 return
/// 0x12348086.
pub fn register_file() -> impl FnMut(&Seen) -> u64 + Send + 'static {
    let mut regs: HashMap<(u32, u64), u64> = HashMap::new();
    move |s: &Seen| {
        let mask = if s.size >= 8 {
            u64::MAX
        } else {
            (1u64 << (8 * s.size)) - 1
        };
        if s.ty == ACRN_IOREQ_TYPE_PCICFG {
            return if s.bdf == (0, 3, 0) && s.reg == 0 && s.dir == ACRN_IOREQ_DIR_READ {
                0x1234_8086 & mask
            } else {
                mask
            };
        }
        if s.dir == ACRN_IOREQ_DIR_WRITE {
            regs.insert((s.ty, s.addr), s.value & mask);
            0
        } else {
            regs.get(&(s.ty, s.addr)).copied().unwrap_or(mask) & mask
        }
    }
}

/// The device-model loop: ATTACH; scan every slot for PROCESSING && !kernel_handled; emulate;
/// write the value for reads; NOTIFY. Ends on ENODEV.
pub fn spawn_dm(
    vm: Arc<Vm>,
    mut device: impl FnMut(&Seen) -> u64 + Send + 'static,
) -> JoinHandle<DmStats> {
    std::thread::spawn(move || {
        let n = usize::from(vm.vcpu_num());
        let mut stats = DmStats {
            notified: vec![0; n],
            ..Default::default()
        };
        let page = vm.ioreq_page().clone();
        loop {
            match vm.attach_ioreq_client() {
                Ok(()) => stats.attach_returns += 1,
                Err(e) if e.errno == Errno::ENODEV => break,
                Err(e) => panic!("attach: {e}"),
            }
            for i in 0..n {
                let base = i * 256;
                let p = page.atomic_u32(base + SLOT_OFFSET_PROCESSED).unwrap();
                if p.load(Ordering::Acquire) != ACRN_IOREQ_STATE_PROCESSING {
                    continue;
                }
                let rd32 = |o: usize| page.atomic_u32(base + o).unwrap().load(Ordering::Relaxed);
                let rd64 = |o: usize| page.atomic_u64(base + o).unwrap().load(Ordering::Relaxed);
                if rd32(SLOT_OFFSET_KERNEL_HANDLED) != 0 {
                    continue;
                }
                let ty = rd32(SLOT_OFFSET_TYPE);
                let s = Seen {
                    vcpu: i,
                    ty,
                    dir: rd32(SLOT_OFFSET_DIRECTION),
                    addr: if ty == ACRN_IOREQ_TYPE_PCICFG {
                        0
                    } else {
                        rd64(SLOT_OFFSET_ADDRESS)
                    },
                    size: rd64(SLOT_OFFSET_SIZE),
                    value: if ty == ACRN_IOREQ_TYPE_MMIO {
                        rd64(SLOT_OFFSET_VALUE)
                    } else {
                        u64::from(rd32(SLOT_OFFSET_VALUE))
                    },
                    bdf: (
                        rd32(SLOT_OFFSET_PCI_BUS),
                        rd32(SLOT_OFFSET_PCI_DEV),
                        rd32(SLOT_OFFSET_PCI_FUNC),
                    ),
                    reg: rd32(SLOT_OFFSET_PCI_REG),
                };
                let v = device(&s);
                if s.dir == ACRN_IOREQ_DIR_READ {
                    if ty == ACRN_IOREQ_TYPE_MMIO {
                        page.atomic_u64(base + SLOT_OFFSET_VALUE)
                            .unwrap()
                            .store(v, Ordering::Relaxed);
                    } else {
                        page.atomic_u32(base + SLOT_OFFSET_VALUE)
                            .unwrap()
                            .store(v as u32, Ordering::Relaxed);
                    }
                }
                stats.seen.push(s);
                vm.notify_request_finish(i as u32).expect("notify");
                stats.notified[i] += 1;
            }
        }
        stats
    })
}

pub fn raw(hsm: &Hsm, request: u32) -> std::result::Result<i64, Errno> {
    hsm.ioctl(request, IoctlArg::None)
}

pub fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let t = std::time::Instant::now();
    while !f() {
        assert!(
            t.elapsed() < std::time::Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

pub static SERIAL: Mutex<()> = Mutex::new(());

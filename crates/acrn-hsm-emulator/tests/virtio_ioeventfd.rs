//! A native virtio-pci device's queue notifications through IOEVENTFD ([`QueueNotifier`]) on the
//! emulated HSM, without KVM: a workload publishes chains in guest RAM and writes the notify
//! address; the HSM's in-kernel ioeventfd client completes each write (no ioreq client runs at
//! all), the notifier's worker serves the queue. Every chain is completed exactly once, in both
//! completion modes, and the registration follows DRIVER_OK, BAR moves and resets.

#![allow(clippy::unwrap_used)]

mod common;
use common::*;

use std::sync::Arc;
use std::time::{Duration, Instant};

use acrn_hsm::devices::virtio::{
    NOTIFY_OFFSET, QueueNotifier, STATUS_ACKNOWLEDGE, STATUS_DRIVER, STATUS_DRIVER_OK,
    STATUS_FEATURES_OK, VirtioBar, VirtioPci, VirtioRng, VmInterrupts,
};

const RAM: u64 = 0x10_0000;
const RAM_LEN: u64 = 0x10_0000;
const DESC: u64 = RAM + 0x1000;
const AVAIL: u64 = RAM + 0x2000;
const USED: u64 = RAM + 0x3000;
const BUFS: u64 = RAM + 0x8_0000;
const QSIZE: u16 = 64;
const BAR_A: u64 = 0xfeb0_0000;
const BAR_B: u64 = 0xfea0_0000;

struct Rig {
    emu: Emulator,
    _hsm: Hsm,
    vm: Arc<Vm>,
    _ram: Arc<UserPages>,
    t: VirtioPci,
    bar: VirtioBar,
}

fn rig(polling: bool) -> Rig {
    let flags = if polling {
        GUEST_FLAG_IO_COMPLETION_POLLING
    } else {
        0
    };
    let (emu, hsm, vm) = vm_with(1, flags);
    let ram = Arc::new(UserPages::new(RAM_LEN as usize).unwrap());
    vm.map_ram(RAM, ram.clone(), 7).unwrap();
    let t = VirtioPci::new(
        Box::new(VirtioRng::new()),
        vm.clone(),
        Arc::new(VmInterrupts(vm.clone())),
    );
    let bar = t.bar();
    Rig {
        emu,
        _hsm: hsm,
        vm,
        _ram: ram,
        t,
        bar,
    }
}

impl Rig {
    fn cfg_w(&mut self, reg: u32, size: u8, v: u32) {
        PciDevice::cfg_write(&mut self.t, reg, size, v);
    }
    fn w(&mut self, off: u64, size: u8, v: u64) {
        IoDevice::write(&mut self.bar, off, size, v);
    }
    /// BAR 4 at `base`, memory decoding on.
    fn map_bar(&mut self, base: u64) {
        self.cfg_w(0x20, 4, base as u32);
        self.cfg_w(0x04, 2, 0x2);
    }
    /// The driver's init: features, queue 0 of `QSIZE` at DESC/AVAIL/USED, DRIVER_OK.
    fn start(&mut self) {
        let m = self.vm.memory();
        m.write(AVAIL, &[0u8; 6 + 2 * QSIZE as usize]).unwrap();
        m.write(USED, &[0u8; 6 + 8 * QSIZE as usize]).unwrap();
        self.w(0x14, 1, 0);
        let s1 = STATUS_ACKNOWLEDGE | STATUS_DRIVER;
        self.w(0x14, 1, u64::from(s1));
        self.w(0x08, 4, 1);
        self.w(0x0c, 4, 1); // VIRTIO_F_VERSION_1 (bit 32)
        self.w(0x14, 1, u64::from(s1 | STATUS_FEATURES_OK));
        self.w(0x16, 2, 0);
        self.w(0x18, 2, u64::from(QSIZE));
        self.w(0x20, 8, DESC);
        self.w(0x28, 8, AVAIL);
        self.w(0x30, 8, USED);
        self.w(0x1c, 2, 1);
        self.w(
            0x14,
            1,
            u64::from(s1 | STATUS_FEATURES_OK | STATUS_DRIVER_OK),
        );
    }
    /// Descriptor `i`: one 16-byte device-writable buffer.
    fn put_descs(&self) {
        let m = self.vm.memory();
        for i in 0..u64::from(QSIZE) {
            let mut d = [0u8; 16];
            d[0..8].copy_from_slice(&(BUFS + 16 * i).to_le_bytes());
            d[8..12].copy_from_slice(&16u32.to_le_bytes());
            d[12..14].copy_from_slice(&2u16.to_le_bytes()); // VIRTQ_DESC_F_WRITE
            m.write(DESC + 16 * i, &d).unwrap();
        }
    }
    fn used_idx(&self) -> u16 {
        self.vm.memory().read_le(USED + 2, 2).unwrap() as u16
    }
}

/// `n` chains, each published by the workload (avail ring entry, avail idx) and followed by a
/// notify write; heads cycle through the ring, each reused only after its completion was seen.
fn publish_and_notify(r: &mut Rig, notify: u64, n: u16) -> RunResult {
    let mut ops = Vec::new();
    for k in 0..n {
        let slot = u64::from(k % QSIZE);
        ops.push(Op::Ram {
            address: AVAIL + 4 + 2 * slot,
            size: 2,
            access: Access::Write(u64::from(k % QSIZE)),
        });
        ops.push(Op::Ram {
            address: AVAIL + 2,
            size: 2,
            access: Access::Write(u64::from(k.wrapping_add(1))),
        });
        ops.push(Op::Mmio {
            address: notify,
            size: 2,
            access: Access::Write(0),
        });
    }
    let g = r.emu.guest(r.vm.vmid()).unwrap();
    g.run(&Workload { vcpus: vec![ops] }).unwrap()
}

fn wait_used(r: &Rig, n: u16) {
    let t0 = Instant::now();
    while r.used_idx() != n {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "used idx {} of {n}",
            r.used_idx()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn exactly_once(polling: bool) {
    let mut r = rig(polling);
    let notifier = QueueNotifier::attach(&r.t, r.vm.clone()).unwrap();
    r.put_descs();
    r.map_bar(BAR_A);
    assert_eq!(notifier.registered_at(), None, "not before DRIVER_OK");
    r.start();
    assert_eq!(notifier.registered_at(), Some(BAR_A + NOTIFY_OFFSET));
    r.vm.start().unwrap();
    // Within the ring's size: every head is published once.
    let n = QSIZE;
    let res = publish_and_notify(&mut r, BAR_A + NOTIFY_OFFSET, n);
    assert!(res.is_clean(), "{res:?}");
    wait_used(&r, n);
    // Each head exactly once in the used ring, with the 16 bytes it holds.
    let m = r.vm.memory();
    let mut seen = vec![0u32; usize::from(QSIZE)];
    for k in 0..u64::from(n) {
        let id = m.read_le(USED + 4 + 8 * k, 4).unwrap() as usize;
        let len = m.read_le(USED + 8 + 8 * k, 4).unwrap();
        assert_eq!(len, 16);
        seen[id] += 1;
    }
    assert!(seen.iter().all(|&c| c == 1), "{seen:?}");
    // Nothing more arrives later (no chain served twice).
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(r.used_idx(), n);
    let s = r.t.stats();
    assert_eq!(s.chains, u64::from(n));
    assert_eq!(s.needs_reset, 0);
    let ns = notifier.stats();
    // Every notify went through an eventfd (no ioreq client runs here): the counter folds
    // several into one wake-up at most.
    assert!(ns.wakeups >= 1 && ns.wakeups <= u64::from(n), "{ns:?}");
    assert_eq!(s.notifies, ns.wakeups, "each wake-up served the queue once");
    assert_eq!(ns.errors, 0);
    assert_eq!(ns.registrations, 1);

    // The BAR moves: deassigned at the old address, assigned at the new one.
    r.vm.pause().unwrap();
    r.map_bar(BAR_B);
    assert_eq!(notifier.registered_at(), Some(BAR_B + NOTIFY_OFFSET));
    assert_eq!(notifier.stats().registrations, 2);
    // Decoding off, then on again.
    r.cfg_w(0x04, 2, 0);
    assert_eq!(notifier.registered_at(), None);
    r.cfg_w(0x04, 2, 0x2);
    assert_eq!(notifier.registered_at(), Some(BAR_B + NOTIFY_OFFSET));
    // A virtio reset deassigns; DRIVER_OK again assigns.
    r.w(0x14, 1, 0);
    assert_eq!(notifier.registered_at(), None);
    r.start();
    assert_eq!(notifier.registered_at(), Some(BAR_B + NOTIFY_OFFSET));
    // Served at the new address after a VM reset and a restart.
    r.vm.reset().unwrap();
    r.vm.start().unwrap();
    let res = publish_and_notify(&mut r, BAR_B + NOTIFY_OFFSET, 8);
    assert!(res.is_clean(), "{res:?}");
    wait_used(&r, 8);
    assert_eq!(r.t.stats().chains, u64::from(n) + 8);
    // The platform reset clears the BAR: deassigned.
    PciDevice::reset(&mut r.t);
    assert_eq!(notifier.registered_at(), None);
    r.map_bar(BAR_A);
    r.start();
    assert_eq!(notifier.registered_at(), Some(BAR_A + NOTIFY_OFFSET));
    // Detached: deassigned, and assigning the same eventfds again would be refused otherwise.
    notifier.detach();
    let again = QueueNotifier::attach(&r.t, r.vm.clone()).unwrap();
    assert_eq!(again.registered_at(), Some(BAR_A + NOTIFY_OFFSET));
    assert_eq!(again.stats().errors, 0);
    r.vm.pause().unwrap();
}

#[test]
fn ioeventfd_notifications_complete_every_chain_once_notify_mode() {
    exactly_once(false);
}

#[test]
fn ioeventfd_notifications_complete_every_chain_once_poll_mode() {
    exactly_once(true);
}
